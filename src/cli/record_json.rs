//! The JSON shape of a record, shared by `consume --format json`, `produce --json` and
//! `inspect --records --json`, so one command's output is the next one's input:
//!
//! ```json
//! {"headers":{"trace":"/wE="},"headers_base64":["trace"],"key":"user-1","offset":7,
//!  "partition":0,"timestamp_ns":1767225600000000000,"value":"hello"}
//! ```
//! (keys in alphabetical order).
//! Bytes appear as text when they are valid UTF-8, else as standard base64 with a flag:
//! `"key_base64":true`, `"value_base64":true`, or the header's name in `"headers_base64"`.
//! On input, `value` may also be any other JSON value, which is sent as its JSON text;
//! `partition` and `timestamp_ns` are optional; other fields (such as `offset`) are ignored.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::proto as pb;

/// Text for UTF-8 bytes, else base64 and `true`.
fn text_or_base64(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), false),
        Err(_) => (STANDARD.encode(bytes), true),
    }
}

/// A stored record as a JSON object.
pub fn record_to_json(
    partition: u32,
    offset: u64,
    timestamp_ns: i64,
    key: &[u8],
    value: &[u8],
    headers: &[(&str, &[u8])],
) -> Value {
    let mut obj = Map::new();
    obj.insert("partition".into(), json!(partition));
    obj.insert("offset".into(), json!(offset));
    obj.insert("timestamp_ns".into(), json!(timestamp_ns));
    for (name, bytes) in [("key", key), ("value", value)] {
        let (text, b64) = text_or_base64(bytes);
        obj.insert(name.into(), Value::String(text));
        if b64 {
            obj.insert(format!("{name}_base64"), Value::Bool(true));
        }
    }
    let mut sorted: Vec<_> = headers.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut hdrs = Map::new();
    let mut b64_names = Vec::new();
    for (name, bytes) in sorted {
        let (text, b64) = text_or_base64(bytes);
        hdrs.insert(name.to_string(), Value::String(text));
        if b64 {
            b64_names.push(Value::String(name.to_string()));
        }
    }
    obj.insert("headers".into(), Value::Object(hdrs));
    if !b64_names.is_empty() {
        obj.insert("headers_base64".into(), Value::Array(b64_names));
    }
    Value::Object(obj)
}

/// A record received from the broker as JSON.
pub fn proto_record_to_json(r: &pb::Record) -> Value {
    let headers: Vec<(&str, &[u8])> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_ref()))
        .collect();
    record_to_json(
        r.partition,
        r.offset,
        r.timestamp_ns,
        &r.key,
        &r.value,
        &headers,
    )
}

fn flag(obj: &Map<String, Value>, name: &str) -> Result<bool, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("\"{name}\" must be true or false")),
    }
}

fn decode_text(field: &str, text: &str, base64: bool) -> Result<Bytes, String> {
    if base64 {
        STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|e| format!("\"{field}\" is not valid base64: {e}"))
    } else {
        Ok(Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// Parses one JSON line into a record to produce.
///
/// # Errors
/// A message saying which field is wrong.
pub fn producer_record_from_json(line: &str) -> Result<pb::ProducerRecord, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("expected a JSON object like {\"key\":\"k\",\"value\":\"v\"}".into());
    };
    let key = match obj.get("key") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) => decode_text("key", s, flag(&obj, "key_base64")?)?,
        Some(_) => return Err("\"key\" must be a string".into()),
    };
    let value = match obj.get("value") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) => decode_text("value", s, flag(&obj, "value_base64")?)?,
        Some(other) => Bytes::from(other.to_string()),
    };
    let b64_headers: Vec<&str> = match obj.get("headers_base64") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|n| {
                n.as_str()
                    .ok_or("\"headers_base64\" must list header names")
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("\"headers_base64\" must be an array of header names".into()),
    };
    let mut headers = HashMap::new();
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (name, v) in h {
                let Value::String(s) = v else {
                    return Err(format!("header {name:?} must be a string"));
                };
                let field = format!("headers.{name}");
                let bytes = decode_text(&field, s, b64_headers.contains(&name.as_str()))?;
                headers.insert(name.clone(), bytes);
            }
        }
        Some(_) => return Err("\"headers\" must be an object of strings".into()),
    }
    let partition = match obj.get("partition") {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .ok_or("\"partition\" must be a small non-negative integer")?,
        ),
    };
    let timestamp_ns = match obj.get("timestamp_ns") {
        None | Some(Value::Null) => None,
        Some(t) => Some(t.as_i64().ok_or("\"timestamp_ns\" must be an integer")?),
    };
    Ok(pb::ProducerRecord {
        key,
        value,
        headers,
        timestamp_ns,
        partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_valid_input() {
        let v = record_to_json(
            2,
            7,
            -1,
            b"k",
            b"\xff\x00",
            &[("trace", b"\xff\x01"), ("a", b"text")],
        );
        assert_eq!(v["value_base64"], json!(true));
        assert!(v.get("key_base64").is_none());
        assert_eq!(v["headers_base64"], json!(["trace"]));
        let back = producer_record_from_json(&v.to_string()).unwrap();
        assert_eq!(back.key, Bytes::from_static(b"k"));
        assert_eq!(back.value, Bytes::from_static(b"\xff\x00"));
        assert_eq!(back.headers["trace"], Bytes::from_static(b"\xff\x01"));
        assert_eq!(back.headers["a"], Bytes::from_static(b"text"));
        assert_eq!(back.partition, Some(2));
        assert_eq!(back.timestamp_ns, Some(-1));
    }

    #[test]
    fn values_may_be_json_and_errors_name_the_field() {
        let r = producer_record_from_json(r#"{"value":{"a":1}}"#).unwrap();
        assert_eq!(r.value, Bytes::from_static(br#"{"a":1}"#));
        assert!(r.key.is_empty() && r.partition.is_none());
        for (line, needle) in [
            ("[1]", "object"),
            ("{", "JSON"),
            (r#"{"key":1}"#, "key"),
            (r#"{"partition":-1}"#, "partition"),
            (r#"{"value":"!","value_base64":true}"#, "base64"),
            (r#"{"headers":{"h":1}}"#, "header"),
        ] {
            let err = producer_record_from_json(line).unwrap_err();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
