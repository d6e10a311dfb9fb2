//! Reading submissions from text: JSON Lines, a JSON array, or Argos response
//! bodies (`{"Items": [...]}`), in any mix, as `eval` and rule tests take them.

use serde_json::Value;

/// One submission and where it came from, for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct InputItem {
    /// 1-based position among all submissions of the input.
    pub item: usize,
    /// Line where the JSON value holding it starts.
    pub line: usize,
    pub submission: Value,
}

/// Parses `text` (named `name` in messages). Errors name the line and
/// column, or the item, and say what is wrong.
pub fn parse_submissions(name: &str, text: &str) -> Result<Vec<InputItem>, String> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    // Lines are counted incrementally: counting from the start for every
    // value would make a large dump quadratic.
    let (mut counted_to, mut line) = (0, 1);
    loop {
        let start = stream.byte_offset();
        let value = match stream.next() {
            None => break,
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(format!(
                    "{name}:{}:{}: invalid JSON: {}",
                    e.line(),
                    e.column(),
                    strip_pos(&e.to_string())
                ));
            }
        };
        // The value starts after any whitespace following `start`.
        let skipped = text[start..].len() - text[start..].trim_start().len();
        line += text[counted_to..start + skipped].matches('\n').count();
        counted_to = start + skipped;
        let items = match value {
            Value::Array(items) => items,
            Value::Object(mut m) if m.contains_key("Items") => match m.remove("Items") {
                Some(Value::Array(items)) => items,
                _ => return Err(format!("{name}:{line}: `Items` is not a list")),
            },
            v @ Value::Object(_) => vec![v],
            other => {
                return Err(format!(
                    "{name}:{line}: expected a submission (a JSON object), a list of them or an Argos response, found {}",
                    kind(&other)
                ));
            }
        };
        for submission in items {
            let item = out.len() + 1;
            if !submission.is_object() {
                return Err(format!(
                    "{name}:{line}: item {item}: expected a submission (a JSON object), found {}",
                    kind(&submission)
                ));
            }
            out.push(InputItem {
                item,
                line,
                submission,
            });
        }
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// serde_json appends " at line L column C", which the prefix already says.
fn strip_pos(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_forms() {
        let text = "{\"submission_id\": \"a\"}\n\n{\"submission_id\": \"b\"}\n[{\"submission_id\": \"c\"}]\n{\"Items\": [{\"submission_id\": \"d\"}, {\"submission_id\": \"e\"}], \"nextpageKey\": {}}\n";
        let items = parse_submissions("in", text).unwrap();
        let ids: Vec<_> = items
            .iter()
            .map(|i| {
                (
                    i.item,
                    i.line,
                    i.submission["submission_id"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                (1, 1, "a"),
                (2, 3, "b"),
                (3, 4, "c"),
                (4, 5, "d"),
                (5, 5, "e")
            ]
        );
    }

    #[test]
    fn errors_name_the_place() {
        assert_eq!(
            parse_submissions("in.jsonl", "{\"a\": 1}\n{\"a\": }\n").unwrap_err(),
            "in.jsonl:2:7: invalid JSON: expected value"
        );
        assert_eq!(
            parse_submissions("in.jsonl", "{\"a\": 1}\n[1]\n").unwrap_err(),
            "in.jsonl:2: item 2: expected a submission (a JSON object), found a number"
        );
    }
}
