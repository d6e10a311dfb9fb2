//! The parse-only ceiling of issue 8: how many submissions per second
//! `serde_json` alone turns into `Value`s, on the very pages a backfill reads.
//!
//! The end-to-end figure means little without it: the engine cannot read
//! faster than it parses. So this downloads the same pages `backfill` asks
//! for (one query per UTC day, pages of `--count`, following `nextpageKey`),
//! keeps the raw bodies, then times only `serde_json::from_slice` over them.
//!
//! `cargo bench --bench ceiling -- --url http://127.0.0.1:PORT --from YYYYMMDD --to YYYYMMDD`
//! prints one line: `ceiling: N submissions, B bytes, S submissions/s (best of R)`.

use std::time::Instant;

use chrono::NaiveDate;
use kyc_sentinel::argos::client::ListQuery;
use kyc_sentinel::argos::model::NextPageKey;
use serde_json::Value;

struct Args {
    url: String,
    key: String,
    from: NaiveDate,
    to: NaiveDate,
    count: u32,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: String::new(),
        key: "sim-key".into(),
        from: NaiveDate::MIN,
        to: NaiveDate::MIN,
        count: 100,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` adds `--bench`; ignore flags we do not know.
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let day = |s: String| {
            NaiveDate::parse_from_str(&s, "%Y%m%d").unwrap_or_else(|e| panic!("bad day {s}: {e}"))
        };
        match flag.as_str() {
            "--url" => a.url = val(),
            "--key" => a.key = val(),
            "--from" => a.from = day(val()),
            "--to" => a.to = day(val()),
            "--count" => a.count = val().parse().expect("--count is a number"),
            "--rounds" => a.rounds = val().parse().expect("--rounds is a number"),
            _ => {}
        }
    }
    assert!(!a.url.is_empty(), "--url is required");
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    let http = kyc_sentinel::util::http_client().build().unwrap();
    let mut bodies: Vec<bytes::Bytes> = Vec::new();
    for day in a.from.iter_days().take_while(|d| *d <= a.to) {
        let mut q = ListQuery {
            start_date: Some(day),
            end_date: Some(day),
            count: Some(a.count),
            ..ListQuery::default()
        };
        loop {
            let body = http
                .get(format!("{}/v3/submission", a.url.trim_end_matches('/')))
                .header("x-api-key", &a.key)
                .query(&q.params(a.count))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .unwrap_or_else(|e| panic!("GET page of {day}: {e}"))
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("body of a page of {day}: {e}"));
            // The key is read outside the timed loop: paging is not parsing.
            let v: Value = serde_json::from_slice(&body).expect("a page is JSON");
            bodies.push(body);
            match v.get("nextpageKey") {
                Some(k) if !k.is_null() => {
                    q.next = Some(serde_json::from_value::<NextPageKey>(k.clone()).expect("key"))
                }
                _ => break,
            }
        }
    }
    let bytes: usize = bodies.iter().map(|b| b.len()).sum();
    let mut best = f64::MAX;
    let mut n = 0usize;
    for _ in 0..a.rounds.max(1) {
        let t = Instant::now();
        n = 0;
        for b in &bodies {
            let v: Value = serde_json::from_slice(b).expect("a page is JSON");
            n += v["Items"].as_array().map_or(0, Vec::len);
            drop(std::hint::black_box(v));
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "ceiling: {n} submissions, {bytes} bytes, {:.0} submissions/s (best of {})",
        n as f64 / best,
        a.rounds.max(1)
    );
}
