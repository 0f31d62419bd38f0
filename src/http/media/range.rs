//! `Range: bytes=…` (RFC 9110 §14): one range is served as 206; several, or one that cannot be
//! read, is answered with the whole file (a server may ignore `Range`); one that starts past
//! the end is 416.

use std::ops::Range;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ranged {
    Whole,
    Part(Range<u64>),
    Unsatisfiable,
}

pub(super) fn parse(header: Option<&str>, size: u64) -> Ranged {
    let Some(spec) = header.and_then(|value| value.trim().strip_prefix("bytes=")) else { return Ranged::Whole };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Ranged::Whole };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // The last `n` bytes.
        return match last.parse::<u64>() {
            Ok(0) => Ranged::Unsatisfiable,
            Ok(_) if size == 0 => Ranged::Unsatisfiable,
            Ok(suffix) => Ranged::Part(size.saturating_sub(suffix)..size),
            Err(_) => Ranged::Whole,
        };
    }
    let Ok(start) = first.parse::<u64>() else { return Ranged::Whole };
    let end = if last.is_empty() {
        size
    } else {
        match last.parse::<u64>() {
            Ok(last) if last >= start => last.saturating_add(1).min(size),
            _ => return Ranged::Whole,
        }
    };
    if start >= size {
        return Ranged::Unsatisfiable;
    }
    Ranged::Part(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse(None, 10), Ranged::Whole);
        assert_eq!(parse(Some("bytes=0-3"), 10), Ranged::Part(0..4));
        assert_eq!(parse(Some("bytes=4-"), 10), Ranged::Part(4..10));
        assert_eq!(parse(Some("bytes=-3"), 10), Ranged::Part(7..10));
        assert_eq!(parse(Some("bytes=-30"), 10), Ranged::Part(0..10));
        assert_eq!(parse(Some("bytes=5-100"), 10), Ranged::Part(5..10));
        assert_eq!(parse(Some("bytes=10-"), 10), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Ranged::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-1,4-5"), 10), Ranged::Whole);
        assert_eq!(parse(Some("bytes=5-2"), 10), Ranged::Whole);
        assert_eq!(parse(Some("items=0-1"), 10), Ranged::Whole);
        assert_eq!(parse(Some("bytes=x-1"), 10), Ranged::Whole);
    }
}
