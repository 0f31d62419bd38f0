//! JSON columns read so that one stored value which cannot be parsed costs only itself.
//!
//! PostgreSQL's jsonb keeps numbers as exact decimals and prints them in full:
//! `1.7976931348623157e308` comes back as 309 digits, which serde_json's (fast, approximate)
//! float parser refuses as "number out of range". Decoded as plain `serde_json::Value`, such
//! a value failed every read of it, and with it every `/sync` of the user it was sent to,
//! every `/keys/claim` of the key's device, every `GET /profile`… for good. The JSON edge
//! now refuses numbers beyond ±(2^53 − 1) (`http::json_body`); what was stored before is
//! read through [`StoredJson`]:
//!
//! - a number the fast parser refuses is re-read exactly (by the standard library) and given
//!   back in the shortest form that is the same double, so the value is served as it was sent;
//! - a value that still cannot be read is logged and left out (`None`): a list answers with
//!   everything else, a single value as absent. It never fails the whole answer.

use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::{Decode, Postgres, Type};

/// A jsonb (or json) value, or `None` when the stored text could not be parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StoredJson(Option<Value>);

impl StoredJson {
    /// The value, or `None` (already logged) when it could not be read.
    pub(crate) fn into_value(self) -> Option<Value> {
        self.0
    }

    pub(crate) fn as_value(&self) -> Option<&Value> {
        self.0.as_ref()
    }
}

impl From<Value> for StoredJson {
    fn from(value: Value) -> Self {
        StoredJson(Some(value))
    }
}

impl Type<Postgres> for StoredJson {
    fn type_info() -> PgTypeInfo {
        <Value as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Value as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for StoredJson {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Postgres>>::decode(value)?;
        // jsonb's binary form is a version byte (1) and the text.
        let text = text.strip_prefix('\u{1}').unwrap_or(text);
        let error = match serde_json::from_str(text) {
            Ok(value) => return Ok(StoredJson(Some(value))),
            Err(error) => error,
        };
        match with_exact_numbers(text).and_then(|repaired| serde_json::from_str(&repaired).ok()) {
            Some(value) => {
                tracing::warn!(%error, "a stored JSON value held numbers re-read exactly");
                Ok(StoredJson(Some(value)))
            }
            None => {
                tracing::error!(%error, "a stored JSON value cannot be read; it is left out of the answer");
                Ok(StoredJson(None))
            }
        }
    }
}

/// `json` with every number serde_json cannot parse replaced by the shortest text of the
/// double it denotes (`1.7976931348623157e308`); `None` if one denotes no finite double.
fn with_exact_numbers(json: &str) -> Option<String> {
    let bytes = json.as_bytes();
    let mut repaired = String::with_capacity(json.len());
    let (mut copied, mut at) = (0, 0);
    while at < bytes.len() {
        match bytes[at] {
            b'"' => {
                at += 1;
                while at < bytes.len() && bytes[at] != b'"' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                at += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while at < bytes.len() && matches!(bytes[at], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    at += 1;
                }
                let number = &json[start..at];
                if serde_json::from_str::<serde_json::Number>(number).is_err() {
                    let exact = number.parse::<f64>().ok().filter(|double| double.is_finite())?;
                    repaired.push_str(&json[copied..start]);
                    repaired.push_str(&format!("{exact:e}"));
                    copied = at;
                }
            }
            _ => at += 1,
        }
    }
    repaired.push_str(&json[copied.min(json.len())..]);
    Some(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_jsonb_prints_in_full_are_read_back_exactly() {
        let max = format!("{{\"x\": [17976931348623157{}, \"1{}\"]}}", "0".repeat(292), "0".repeat(400));
        assert!(serde_json::from_str::<Value>(&max).is_err(), "the fast parser refuses it");
        let repaired = with_exact_numbers(&max).expect("repairable");
        let value: Value = serde_json::from_str(&repaired).expect("readable");
        assert_eq!(value["x"][0].as_f64(), Some(f64::MAX));
        // Strings are left alone, even when they look like numbers.
        assert_eq!(value["x"][1].as_str().map(str::len), Some(401));
        // A number beyond every double cannot be served as it was sent.
        assert_eq!(with_exact_numbers(&format!("[1{}]", "0".repeat(400))), None);
    }
}
