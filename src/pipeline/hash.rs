//! Content hash of a submission version, independent of key order.
//!
//! Argos does not promise a key order, so the hash walks objects with their
//! keys sorted: the same content always gives the same hash, and any change
//! of any value (a result, a timestamp, a new field) gives a new one.

use std::io::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn content_hash(v: &Value) -> String {
    // The canonical bytes are gathered first and hashed in one call: SHA-256
    // over one buffer is several times faster than over ~200 small updates,
    // and the bytes (so the hashes already in stores) are the same.
    let mut buf = Vec::with_capacity(2048);
    feed(&mut buf, v);
    hex::encode(Sha256::digest(&buf))
}

fn feed(h: &mut Vec<u8>, v: &Value) {
    // A type tag before each value keeps `"1"` and `1`, `[]` and `{}` apart.
    match v {
        Value::Null => h.push(b'n'),
        Value::Bool(b) => h.push(if *b { b't' } else { b'f' }),
        Value::Number(n) => {
            h.push(b'#');
            write!(h, "{n}").expect("writing to a Vec cannot fail");
            h.push(b';');
        }
        Value::String(s) => {
            h.push(b's');
            h.extend_from_slice(&(s.len() as u64).to_le_bytes());
            h.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            h.push(b'[');
            h.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                feed(h, item);
            }
        }
        Value::Object(map) => {
            h.push(b'{');
            h.extend_from_slice(&(map.len() as u64).to_le_bytes());
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, v) in entries {
                h.extend_from_slice(&(k.len() as u64).to_le_bytes());
                h.extend_from_slice(k.as_bytes());
                feed(h, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The hash is stored: changing its bytes would make every stored
    /// version look changed after an upgrade. This value is from the first
    /// implementation (one SHA-256 update per token).
    #[test]
    fn hash_is_stable_across_versions() {
        let v: Value = serde_json::from_str(
            r#"{"submission_id":"s-1","kyc":{"result":"rejected","commentCode":["too_many_retry"],"attempts":[{"livenessScore":42.5},{"livenessScore":-1e3}]},"n":null,"b":true,"f":false,"u":18446744073709551615,"i":-7,"e":"é\"\n"}"#,
        )
        .unwrap();
        assert_eq!(
            content_hash(&v),
            "1c146c3f53e5bc7aae30645ac3b53ec76829638f41aa89c744115b3f27633676"
        );
    }

    #[test]
    fn key_order_does_not_matter_but_content_does() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":"1","y":[1,2]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"y":[1,2],"x":"1"},"a":1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"a":1,"b":{"x":1,"y":[1,2]}}))
        );
        assert_ne!(
            content_hash(&json!({"a":[]})),
            content_hash(&json!({"a":{}}))
        );
        assert_ne!(
            content_hash(&json!({"ab":"c"})),
            content_hash(&json!({"a":"bc"}))
        );
    }
}
