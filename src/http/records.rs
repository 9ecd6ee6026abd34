//! Records as JSON, both ways.
//!
//! **In** (produce): `{"key"?, "value"?, "timestamp"?, "partition"?, "headers"?, "encoding"?,
//! "key_base64"?, "value_base64"?}`.
//! - `value`: a string is stored as its UTF-8 bytes; with `"encoding":"base64"` it is base64 and
//!   stored decoded; any other JSON value (object, number…) is stored as its compact JSON text;
//!   absent or `null` is an empty value. `value_base64` gives binary values directly (not
//!   together with `value`). `key` / `key_base64` likewise (`encoding` applies to the value only).
//! - `timestamp`: Unix nanoseconds (integer) or an RFC 3339 string; absent: arrival time.
//! - `headers`: an object of name → UTF-8 string.
//!
//! **Out** (fetch, poll): `{"partition","offset","timestamp","timestamp_ns","key","key_base64",
//! "value","value_base64","headers":[{"name","value","value_base64"}]}`. `value` (and `key`,
//! header `value`) is the UTF-8 text when the bytes are valid UTF-8, else `null`; the `_base64`
//! fields always hold the exact bytes (standard alphabet, padded).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use crate::broker::{ConsumedRecord, ProduceRecord, Record};
use crate::rfc3339;

/// How `value` is encoded in a produced record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    #[serde(alias = "utf-8")]
    Utf8,
    Base64,
}

/// A timestamp as sent: Unix nanoseconds or RFC 3339.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TimestampIn {
    UnixNanos(i64),
    Rfc3339(String),
}

/// One record of a produce request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_base64: Option<String>,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default)]
    pub value_base64: Option<String>,
    #[serde(default)]
    pub encoding: Encoding,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub partition: Option<u32>,
    #[serde(default)]
    pub timestamp: Option<TimestampIn>,
}

/// The batch form of a produce request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchIn {
    /// Each checked to be an object, then read as a [`RecordIn`].
    pub records: Vec<Value>,
}

impl RecordIn {
    /// The broker record, stamped with `now` (Unix ns) when it has no timestamp, so the
    /// response can say which timestamp was stored.
    ///
    /// # Errors
    /// `InvalidRequest` for bad base64, a bad timestamp, or two forms of one field.
    pub fn into_record(self, now: i64) -> Result<ProduceRecord, ApiError> {
        let key = match (self.key, self.key_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid("give key or key_base64, not both"));
            }
            (Some(k), None) => Bytes::from(k),
            (None, Some(b)) => decode("key_base64", &b)?,
            (None, None) => Bytes::new(),
        };
        let value = match (self.value, self.value_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid("give value or value_base64, not both"));
            }
            (None, Some(b)) => decode("value_base64", &b)?,
            (None | Some(Value::Null), None) => Bytes::new(),
            (Some(Value::String(s)), None) => match self.encoding {
                Encoding::Utf8 => Bytes::from(s),
                Encoding::Base64 => decode("value", &s)?,
            },
            (Some(other), None) => match self.encoding {
                Encoding::Utf8 => Bytes::from(other.to_string()),
                Encoding::Base64 => {
                    return Err(ApiError::invalid(
                        "with \"encoding\":\"base64\" the value must be a base64 string",
                    ));
                }
            },
        };
        let timestamp = match self.timestamp {
            None => now,
            Some(TimestampIn::UnixNanos(ns)) => ns,
            Some(TimestampIn::Rfc3339(s)) => rfc3339::parse_unix_ns(&s)
                .map_err(|e| ApiError::invalid(format!("timestamp: {e}")))?,
        };
        Ok(ProduceRecord {
            key,
            value,
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| (k, Bytes::from(v)))
                .collect(),
            timestamp: Some(timestamp),
            partition: self.partition,
        })
    }
}

fn decode(field: &str, text: &str) -> Result<Bytes, ApiError> {
    BASE64
        .decode(text)
        .map(Bytes::from)
        .map_err(|e| ApiError::invalid(format!("{field} is not valid base64: {e}")))
}

/// A record read back.
#[derive(Debug, Clone, Serialize)]
pub struct RecordOut {
    pub partition: u32,
    pub offset: u64,
    pub timestamp: String,
    pub timestamp_ns: i64,
    pub key: Option<String>,
    pub key_base64: String,
    pub value: Option<String>,
    pub value_base64: String,
    pub headers: Vec<HeaderOut>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeaderOut {
    pub name: String,
    pub value: Option<String>,
    pub value_base64: String,
}

impl RecordOut {
    pub fn new(partition: u32, r: &Record) -> Self {
        Self {
            partition,
            offset: r.offset,
            timestamp: rfc3339::format_unix_ns(r.timestamp),
            timestamp_ns: r.timestamp,
            key: text(&r.key),
            key_base64: BASE64.encode(&r.key),
            value: text(&r.value),
            value_base64: BASE64.encode(&r.value),
            headers: r
                .headers
                .iter()
                .map(|(name, v)| HeaderOut {
                    name: name.clone(),
                    value: text(v),
                    value_base64: BASE64.encode(v),
                })
                .collect(),
        }
    }
}

impl From<&ConsumedRecord> for RecordOut {
    fn from(c: &ConsumedRecord) -> Self {
        Self::new(c.partition, &c.record)
    }
}

fn text(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ProduceRecord, ApiError> {
        serde_json::from_str::<RecordIn>(json)
            .map_err(|e| ApiError::invalid(e.to_string()))?
            .into_record(7)
    }

    #[test]
    fn value_forms() {
        let r = parse(r#"{"key":"k","value":"hello"}"#).unwrap();
        assert_eq!(
            (&r.key[..], &r.value[..], r.timestamp),
            (&b"k"[..], &b"hello"[..], Some(7))
        );
        let r = parse(r#"{"value":"AAEC/w==","encoding":"base64"}"#).unwrap();
        assert_eq!(&r.value[..], &[0, 1, 2, 255]);
        let r = parse(r#"{"value_base64":"AAEC/w==","key_base64":"/w=="}"#).unwrap();
        assert_eq!(
            (&r.key[..], &r.value[..]),
            (&[255u8][..], &[0, 1, 2, 255][..])
        );
        let r = parse(r#"{"value":{"a":[1,2]}}"#).unwrap();
        assert_eq!(&r.value[..], br#"{"a":[1,2]}"#);
        let r = parse(r#"{"timestamp":"1970-01-01T00:00:01Z","headers":{"h":"v"}}"#).unwrap();
        assert_eq!(r.timestamp, Some(1_000_000_000));
        assert!(r.value.is_empty());
        assert_eq!(r.headers, vec![("h".to_string(), Bytes::from("v"))]);
        for bad in [
            r#"{"value":"x","value_base64":"eA=="}"#,
            r#"{"value":"%%%","encoding":"base64"}"#,
            r#"{"value":1,"encoding":"base64"}"#,
            r#"{"timestamp":"yesterday"}"#,
            r#"{"vaule":"typo"}"#,
            r#"{"encoding":"rot13"}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(ApiError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn output_is_lossless() {
        let rec = Record {
            offset: 3,
            timestamp: 1_500_000_000,
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(&[0xff, 0x00]),
            headers: vec![("h".into(), Bytes::from_static(b"v"))],
        };
        let out = serde_json::to_value(RecordOut::new(1, &rec)).unwrap();
        assert_eq!(out["value"], Value::Null);
        assert_eq!(out["value_base64"], "/wA=");
        assert_eq!(out["key"], "k");
        assert_eq!(out["timestamp"], "1970-01-01T00:00:01.5Z");
        assert_eq!(out["headers"][0]["value"], "v");
    }
}
