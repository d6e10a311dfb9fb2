//! Content hash of a submission version, independent of key order.
//!
//! Argos does not promise a key order, so the hash walks objects with their
//! keys sorted: the same content always gives the same hash, and any change
//! of any value (a result, a timestamp, a new field) gives a new one.

use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn content_hash(v: &Value) -> String {
    let mut h = Sha256::new();
    feed(&mut h, v);
    hex::encode(h.finalize())
}

fn feed(h: &mut Sha256, v: &Value) {
    // A type tag before each value keeps `"1"` and `1`, `[]` and `{}` apart.
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            h.update(b"#");
            h.update(n.to_string().as_bytes());
            h.update(b";");
        }
        Value::String(s) => {
            h.update(b"s");
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"[");
            h.update((items.len() as u64).to_le_bytes());
            for item in items {
                feed(h, item);
            }
        }
        Value::Object(map) => {
            h.update(b"{");
            h.update((map.len() as u64).to_le_bytes());
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            for k in keys {
                h.update((k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                feed(h, &map[k.as_str()]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
