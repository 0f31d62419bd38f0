//! What a client's JSON body may hold, checked once at the edge for every endpoint, so that
//! whatever Hearth accepts it can store in PostgreSQL and serve back to every client:
//!
//! - numbers within ±(2^53 − 1), the range canonical JSON allows and JavaScript clients read
//!   exactly. A bigger number (`1.7976931348623157e308`, an integer with 30 digits) is never
//!   what a Matrix client means, and one stored in a to-device message, a key or a profile
//!   used to break other users' reads. Fractions within the range stay allowed here: room tags'
//!   `order` is one, and account data and to-device contents are the client's own JSON. Where
//!   the spec requires canonical JSON (events, signed keys) the domain refuses fractions too;
//! - nesting at most [`MAX_DEPTH`] levels deep, so that a stored value placed inside a response
//!   (a `/sync` adds about eight levels) stays within the 128 levels serde_json-based clients
//!   parse;
//! - no U+0000 in any string or key: PostgreSQL's text and jsonb cannot hold it.
//!
//! The walk builds nothing (no `Value`), so it costs one pass over the bytes.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// How many arrays and objects a body may nest, its own outermost one included.
pub(crate) const MAX_DEPTH: usize = 64;

/// The largest magnitude of a number a body may hold: 2^53 − 1.
pub(crate) const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a body was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Valid JSON holding something Hearth does not accept (`M_BAD_JSON`).
    Unacceptable(String),
    /// Not JSON at all. Left to the endpoint's parser, which knows whether it reads a body.
    NotJson(String),
}

/// Checks a JSON text against the rules in the module documentation.
pub(crate) fn check(json: &[u8]) -> Result<(), Refusal> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let walked = Node { depth: 0 }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    walked.map_err(|error| {
        // serde_json reports a number beyond the double range as a syntax error, but the text
        // is JSON by the grammar: what it holds is what is refused.
        if error.is_data() || error.to_string().starts_with("number out of range") {
            Refusal::Unacceptable(error.to_string())
        } else {
            Refusal::NotJson(error.to_string())
        }
    })
}

/// A value at `depth` (the top-level value is at 0).
#[derive(Clone, Copy)]
struct Node {
    depth: usize,
}

impl Node {
    fn child<E: de::Error>(self) -> Result<Node, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!("JSON may not nest deeper than {MAX_DEPTH} levels")));
        }
        Ok(Node { depth: self.depth + 1 })
    }
}

impl<'de> DeserializeSeed<'de> for Node {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn out_of_range<E: de::Error>(number: impl fmt::Display) -> E {
    E::custom(format_args!("the number {number} is outside ±(2^53 - 1), the range Matrix JSON allows"))
}

fn no_nul<E: de::Error>(text: &str) -> Result<(), E> {
    if text.contains('\0') { Err(E::custom("strings may not contain U+0000")) } else { Ok(()) }
}

impl<'de> Visitor<'de> for Node {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        if value.unsigned_abs() > MAX_SAFE_INTEGER { Err(out_of_range(value)) } else { Ok(()) }
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        if value > MAX_SAFE_INTEGER { Err(out_of_range(value)) } else { Ok(()) }
    }

    /// serde_json gives fractions, exponents and integers too long for 64 bits as doubles.
    #[allow(clippy::cast_precision_loss)] // 2^53 - 1 is exact as a double
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<(), E> {
        if value.abs() <= MAX_SAFE_INTEGER as f64 { Ok(()) } else { Err(out_of_range(value)) }
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        no_nul(text)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let child = self.child()?;
        while seq.next_element_seed(child)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let child = self.child()?;
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(child)?;
        }
        Ok(())
    }
}

/// An object's key.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        no_nul(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> bool {
        matches!(check(json.as_bytes()), Err(Refusal::Unacceptable(_)))
    }

    #[test]
    fn numbers_beyond_the_safe_range_are_refused() {
        for json in [
            "1.7976931348623157e308",
            r#"{"a": [9007199254740992]}"#,
            "-9007199254740992",
            "123456789012345678901234567890",
            "1e400",
            "9.1e15",
            r#"{"k": 18446744073709551615}"#,
        ] {
            assert!(refused(json), "{json} is refused");
        }
        for json in ["9007199254740991", "-9007199254740991", "0.5", "-0", "1e15", r#"{"order": 0.25}"#] {
            assert_eq!(check(json.as_bytes()), Ok(()), "{json} is accepted");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(at_limit.as_bytes()), Ok(()));
        let deeper = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(refused(&deeper));
        // Deeper than serde_json's own limit: still refused as unacceptable, not as "not JSON".
        let much_deeper = format!("{}{}", "{\"a\":".repeat(500), "}".repeat(500));
        assert!(refused(&much_deeper));
    }

    #[test]
    fn nul_is_refused_in_strings_and_keys_but_not_as_text() {
        assert!(refused(r#"{"a": "x\u0000y"}"#));
        assert!(refused(r#"{"a\u0000": 1}"#));
        assert!(refused(r#"["\u0000"]"#));
        // An escaped backslash followed by "u0000" is ordinary text.
        assert_eq!(check(br#"{"a": "\\u0000"}"#), Ok(()));
    }

    #[test]
    fn what_is_not_json_is_told_apart() {
        assert!(matches!(check(b"{\"a\": "), Err(Refusal::NotJson(_))));
        assert!(matches!(check(b"not json"), Err(Refusal::NotJson(_))));
        assert!(matches!(check(b"{} {}"), Err(Refusal::NotJson(_))));
    }
}
