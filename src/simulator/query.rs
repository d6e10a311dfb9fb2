//! What the simulated `GET /v3/submission` answers, as a pure function of
//! the stored submissions and the query parameters.
//!
//! Kept apart from the HTTP layer so the semantics the client relies on
//! (filters, newest-first order, `nextpageKey`, `request_type` projections,
//! 400 on bad parameters) are checked without a server, and so the server
//! stays a thin adapter. Decisions where the vendor is silent are those of
//! `docs/argos-api.md`: days are UTC, `count` defaults to 50 everywhere.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use crate::argos::model::parse_timestamp;

/// Page size when `count` is absent.
pub const DEFAULT_COUNT: usize = 50;

/// A parameter problem, answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam(pub String);

/// The parsed parameters of a list request.
#[derive(Debug, Default)]
pub struct Params {
    pub submission_id: Option<String>,
    pub userid: Option<String>,
    pub email: Option<String>,
    pub count: usize,
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    pub request_type: Option<String>,
    pub after: Option<(DateTime<Utc>, String)>,
}

fn date(name: &str, v: &str) -> Result<NaiveDate, BadParam> {
    if v.len() != 8 {
        return Err(BadParam(format!("{name} must be YYYYMMDD, got `{v}`")));
    }
    NaiveDate::parse_from_str(v, "%Y%m%d")
        .map_err(|_| BadParam(format!("{name} must be YYYYMMDD, got `{v}`")))
}

impl Params {
    /// Reads query parameters; unknown ones are ignored, as a gateway would.
    pub fn parse(q: &HashMap<String, String>) -> Result<Params, BadParam> {
        let mut p = Params {
            submission_id: q.get("submission_id").cloned(),
            userid: q.get("userid").cloned(),
            email: q.get("email").cloned(),
            count: DEFAULT_COUNT,
            ..Params::default()
        };
        if let Some(c) = q.get("count") {
            p.count = c
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| BadParam(format!("count must be a positive number, got `{c}`")))?;
        }
        if let Some(v) = q.get("start_date") {
            p.start = Some(date("start_date", v)?);
        }
        if let Some(v) = q.get("end_date") {
            p.end = Some(date("end_date", v)?);
        }
        if let Some(t) = q.get("request_type") {
            if !matches!(t.as_str(), "kyc" | "aml" | "data" | "others") {
                return Err(BadParam(format!(
                    "request_type must be one of kyc, aml, data, others, got `{t}`"
                )));
            }
            p.request_type = Some(t.clone());
        }
        match (q.get("nextpage_id"), q.get("nextpage_date")) {
            (None, None) => {}
            (Some(id), Some(d)) => {
                let t = parse_timestamp(d)
                    .ok_or_else(|| BadParam(format!("nextpage_date is not a timestamp: `{d}`")))?;
                p.after = Some((t, id.clone()));
            }
            _ => {
                return Err(BadParam(
                    "nextpage_id and nextpage_date must be sent together".into(),
                ));
            }
        }
        Ok(p)
    }
}

/// Sort key of a submission: newest first by (created_at, submission_id).
pub fn order_key(v: &Value) -> (Option<DateTime<Utc>>, &str) {
    (
        v.get("created_at")
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
        v.get("submission_id").and_then(Value::as_str).unwrap_or(""),
    )
}

fn field_eq(v: &Value, key: &str, want: &Option<String>) -> bool {
    match want {
        None => true,
        Some(w) => v.get(key).and_then(Value::as_str) == Some(w.as_str()),
    }
}

/// Owned sort key: (created_at, submission_id). Newest first = descending.
pub type OrderKey = (Option<DateTime<Utc>>, String);

/// Owned form of [`order_key`], for indexes.
pub fn owned_order_key(v: &Value) -> OrderKey {
    let (t, id) = order_key(v);
    (t, id.to_owned())
}

/// The answer body for `subs` (in any order) and `p`.
pub fn answer(subs: &[Value], p: &Params) -> Value {
    let mut sorted: Vec<&Value> = subs.iter().collect();
    sorted.sort_by_cached_key(|v| std::cmp::Reverse(owned_order_key(v)));
    answer_sorted(sorted.into_iter(), p)
}

/// The answer body, given the submissions newest first. Stops after one item
/// past the page, so the server can feed it from an ordered index (starting
/// below the `nextpageKey`) without sorting on every request.
pub fn answer_sorted<'a>(newest_first: impl Iterator<Item = &'a Value>, p: &Params) -> Value {
    let after = p.after.as_ref().map(|(t, id)| (Some(*t), id.as_str()));
    let mut hits: Vec<&Value> = Vec::with_capacity(p.count.min(1000) + 1);
    for v in newest_first {
        if !(field_eq(v, "submission_id", &p.submission_id)
            && field_eq(v, "userid", &p.userid)
            && field_eq(v, "email", &p.email))
        {
            continue;
        }
        if after.is_some() || p.start.is_some() || p.end.is_some() {
            let key = order_key(v);
            if after.is_some_and(|a| key >= a) {
                continue;
            }
            if p.start.is_some() || p.end.is_some() {
                let Some(day) = key.0.map(|t| t.date_naive()) else {
                    continue;
                };
                if p.start.is_some_and(|s| day < s) {
                    // Newest first: everything after this is older still. Without
                    // this stop, the last page of each day scanned the whole backlog.
                    break;
                }
                if p.end.is_some_and(|e| day > e) {
                    continue;
                }
            }
        }
        hits.push(v);
        if hits.len() > p.count {
            break;
        }
    }
    let more = hits.len() > p.count;
    hits.truncate(p.count);
    let items: Vec<Value> = hits
        .iter()
        .map(|v| project(v, p.request_type.as_deref()))
        .collect();
    let mut body = Map::new();
    let next = if more { hits.last() } else { None };
    body.insert("Items".into(), Value::Array(items));
    if let Some(last) = next {
        body.insert(
            "nextpageKey".into(),
            json!({"id": last["submission_id"], "created_at": last["created_at"]}),
        );
    }
    Value::Object(body)
}

/// `request_type` projection: one part plus `submission_id`, or `others`
/// = everything but `kyc`, `aml` and `data`.
pub fn project(v: &Value, request_type: Option<&str>) -> Value {
    let Some(rt) = request_type else {
        return v.clone();
    };
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    if rt == "others" {
        for (k, x) in obj {
            if !matches!(k.as_str(), "kyc" | "aml" | "data") {
                out.insert(k.clone(), x.clone());
            }
        }
    } else {
        if let Some(id) = obj.get("submission_id") {
            out.insert("submission_id".into(), id.clone());
        }
        if let Some(part) = obj.get(rt) {
            out.insert(rt.into(), part.clone());
        }
    }
    Value::Object(out)
}

/// `GET /v3/submission/applicant`: `[{submission_id, email}]`, oldest first.
pub fn applicant(subs: &[Value], applicant_id: &str) -> Value {
    let mut hits: Vec<&Value> = subs
        .iter()
        .filter(|v| v.get("applicant_id").and_then(Value::as_str) == Some(applicant_id))
        .collect();
    hits.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    Value::Array(
        hits.iter()
            .map(|v| json!({"submission_id": v["submission_id"], "email": v["email"]}))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: &str, created: &str, userid: &str) -> Value {
        json!({"submission_id": id, "created_at": created, "userid": userid, "email": format!("{id}@x"),
               "kyc": {"result": "approved"}, "aml": {}, "data": {"name": "n"}, "reviewer": "system"})
    }

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_newest_first_with_ties() {
        let subs = vec![
            sub("a", "2025-01-01-00-00-00-000", "u1"),
            sub("b", "2025-01-01-00-00-00-000", "u1"),
            sub("c", "2025-01-02-00-00-00-000", "u2"),
        ];
        let p = Params::parse(&q(&[("count", "2")])).unwrap();
        let a = answer(&subs, &p);
        let ids: Vec<&str> = a["Items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["submission_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["c", "b"]);
        assert_eq!(
            a["nextpageKey"],
            json!({"id": "b", "created_at": "2025-01-01-00-00-00-000"})
        );
        let p = Params::parse(&q(&[
            ("count", "2"),
            ("nextpage_id", "b"),
            ("nextpage_date", "2025-01-01-00-00-00-000"),
        ]))
        .unwrap();
        let a = answer(&subs, &p);
        assert_eq!(a, json!({"Items": [subs[0]]}));
    }

    #[test]
    fn filters_and_projection() {
        let subs = vec![
            sub("a", "2025-01-01-23-59-59-999", "u1"),
            sub("b", "2025-01-02-00-00-00-000", "u1"),
            sub("c", "2025-01-03-00-00-00-000", "u2"),
        ];
        let ids = |a: Value| -> Vec<String> {
            a["Items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["submission_id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            ids(answer(
                &subs,
                &Params::parse(&q(&[("userid", "u1")])).unwrap()
            )),
            ["b", "a"]
        );
        assert_eq!(
            ids(answer(
                &subs,
                &Params::parse(&q(&[("start_date", "20250102"), ("end_date", "20250102")]))
                    .unwrap()
            )),
            ["b"]
        );
        assert_eq!(
            ids(answer(
                &subs,
                &Params::parse(&q(&[("email", "c@x")])).unwrap()
            )),
            ["c"]
        );
        let a = answer(
            &subs,
            &Params::parse(&q(&[("submission_id", "a"), ("request_type", "kyc")])).unwrap(),
        );
        assert_eq!(
            a,
            json!({"Items": [{"submission_id": "a", "kyc": {"result": "approved"}}]})
        );
        let a = answer(
            &subs,
            &Params::parse(&q(&[("submission_id", "a"), ("request_type", "others")])).unwrap(),
        );
        let keys: Vec<&String> = a["Items"][0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            ["submission_id", "created_at", "userid", "email", "reviewer"]
        );
    }

    #[test]
    fn bad_params() {
        let e = |pairs: &[(&str, &str)]| Params::parse(&q(pairs)).unwrap_err().0;
        assert_eq!(
            e(&[("count", "ten")]),
            "count must be a positive number, got `ten`"
        );
        assert_eq!(
            e(&[("start_date", "2025-01-01")]),
            "start_date must be YYYYMMDD, got `2025-01-01`"
        );
        assert_eq!(
            e(&[("request_type", "all")]),
            "request_type must be one of kyc, aml, data, others, got `all`"
        );
        assert_eq!(
            e(&[("nextpage_id", "x")]),
            "nextpage_id and nextpage_date must be sent together"
        );
    }
}
