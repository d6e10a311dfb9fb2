//! A seeded, deterministic generator of realistic Argos submissions.
//!
//! The simulator's backlog, its live arrivals, the rule engine's benchmark and
//! the 10,000-submission evaluation test all draw from here, so the mix must
//! look like a real account: mostly approved; rejections with the vendor's
//! codes; AML mostly `Not Screened` with a few red flags; 1-3 attempts with
//! liveness and face scores; and, at low realistic rates, the patterns the
//! shipped rules look for (shared `applicant_id`s across emails, repeat
//! `too_many_retry` offenders, low liveness, expired IDs, failed bank checks,
//! blacklisted countries, under-age applicants). The same seed and base time
//! always give the same sequence: every random choice comes from one ChaCha
//! stream, and the clock is the generator's own, never the wall clock.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use crate::argos::model::format_argos_timestamp;

const KO_SURNAMES: &[&str] = &[
    "김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오",
];
const KO_GIVEN: &[&str] = &[
    "민준", "서연", "지호", "하은", "도윤", "서준", "지우", "예린", "현우", "수아", "건우", "지민",
];
const LATIN_FIRST: &[&str] = &[
    "John", "Maria", "Lucas", "Ana", "Wei", "Ahmed", "Sofia", "Minh", "Carlos", "Emma", "Rahul",
    "Fatima", "Jose", "Anna", "Kenji", "Chidi",
];
const LATIN_LAST: &[&str] = &[
    "Smith", "Silva", "Nguyen", "Garcia", "Muller", "Rossi", "Santos", "Kumar", "Tanaka", "Okafor",
    "Brown", "Pereira", "Reyes", "Wang",
];
const WORDS: &[&str] = &[
    "sky", "river", "blue", "tiger", "moon", "star", "kim", "lee", "park", "alex", "jin", "nova",
    "rain", "sun", "mint", "leo",
];
const DOMAINS: &[&str] = &[
    "gmail.com",
    "naver.com",
    "daum.net",
    "yahoo.com",
    "outlook.com",
    "kakao.com",
];
/// Nationalities with rough weights (per mille) for a Korean-facing service.
const NATIONS: &[(&str, u32)] = &[
    ("KOR", 520),
    ("USA", 70),
    ("VNM", 60),
    ("PHL", 50),
    ("IDN", 40),
    ("JPN", 40),
    ("BRA", 40),
    ("IND", 40),
    ("DEU", 30),
    ("GBR", 30),
    ("NGA", 30),
    ("CHN", 45),
];
/// Countries a typical policy refuses.
const BLACKLIST: &[&str] = &["PRK", "IRN", "SYR", "CUB"];
const CITIES: &[(&str, &str, &str)] = &[
    ("Seoul", "Seoul", "04524"),
    ("Busan", "Busan", "48058"),
    ("Incheon", "Incheon", "21999"),
    ("Daegu", "Daegu", "41911"),
    ("Seongnam", "Gyeonggi-do", "13529"),
];
const BANKS: &[&str] = &["004", "088", "020", "011", "081", "090"];

/// The vendor's rejection codes with their comments.
pub const REJECTION_CODES: &[(&str, &str)] = &[
    (
        "id_image_invalidImage",
        "ID document not detected. Please take a picture of your ID document.",
    ),
    (
        "id_image_invalidId",
        "Invalid ID document. Please resubmit with another ID document.",
    ),
    (
        "id_image_error",
        "Fail to upload the ID image. Please resubmit the KYC process.",
    ),
    (
        "id_image_badImage",
        "Fail to read the ID image. Please take a clear picture of your ID document.",
    ),
    (
        "id_info_dataMismatch",
        "The entered information does not match with your ID document.",
    ),
    (
        "id_info_blacklist",
        "According to the policy, we do not accept KYC from {country}.",
    ),
    (
        "id_info_notOfAge",
        "We do not accept KYC anyone under {13} years old.",
    ),
    ("too_many_retry", "Multiple invalid KYC attempts"),
    (
        "blacklistCountry",
        "According to the policy, we do not accept KYC from {country}.",
    ),
    (
        "under_ageLimit",
        "We do not accept KYC anyone under {13} years old.",
    ),
    (
        "invalid_acceptedID",
        "Inacceptable ID type. Please resubmit with another ID, check the valid ID on the submission page.",
    ),
    (
        "address_image_invalidImage",
        "Invalid proof of address. Proof of address must include your full name and address. ex)utility bill, bank statement, residency certificate, etc.",
    ),
    (
        "address_image_error",
        "Fail to upload proof of address image. Please retry.",
    ),
    (
        "address_image_badImage",
        "Fail to read the image. Please take a clear picture of your proof of address.",
    ),
    (
        "address_info_expiredDocument",
        "Expired proof of address. The proof of address should be issued within 6 months.",
    ),
    (
        "address_info_dataMismatch",
        "Entered information does not match with your proof of address.",
    ),
    ("timeout", "KYC rejected due to timeout"),
    (
        "other",
        "Selfie does not match the ID photo (reviewer note)",
    ),
];

fn comment_of(code: &str) -> &'static str {
    REJECTION_CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, m)| *m)
        .unwrap_or("")
}

/// One person behind one or more submissions.
#[derive(Debug, Clone)]
struct Person {
    applicant_id: String,
    name: String,
    gender: &'static str,
    nationality: &'static str,
    dob: NaiveDate,
    email: String,
    userid: Option<String>,
}

/// How a submission ends up; chosen before its fields are written.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    Approved,
    Rejected(&'static str),
    Pending,
    Incomplete,
}

/// Deterministic submission source. See the module doc.
pub struct Generator {
    rng: ChaCha8Rng,
    clock: DateTime<Utc>,
    mean_gap_ms: i64,
    counter: u64,
    people: Vec<Person>,
    /// Repeat offenders still to come back: (person index, visits left).
    offenders: Vec<(usize, u32)>,
}

impl Generator {
    /// Starts the clock at `base_time`; submissions are spaced ~60s apart.
    pub fn new(seed: u64, base_time: DateTime<Utc>) -> Self {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            clock: base_time,
            mean_gap_ms: 60_000,
            counter: 0,
            people: Vec::new(),
            offenders: Vec::new(),
        }
    }

    /// Sets the mean gap between consecutive `created_at` values.
    pub fn with_mean_gap(mut self, gap: std::time::Duration) -> Self {
        self.mean_gap_ms = gap.as_millis().min(i64::MAX as u128) as i64;
        self
    }

    /// The generator's clock: `created_at` of the last submission.
    pub fn clock(&self) -> DateTime<Utc> {
        self.clock
    }

    /// A draw from the generator's stream (used for choices around a
    /// submission, such as whether a live arrival starts pending).
    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    /// The next submission, its `created_at` a random gap after the previous one.
    pub fn next_submission(&mut self) -> Value {
        let gap = if self.mean_gap_ms > 0 {
            self.rng.random_range(0..=2 * self.mean_gap_ms)
        } else {
            0
        };
        self.clock += Duration::milliseconds(gap);
        let t = self.clock;
        self.submission_at(t)
    }

    /// A submission created at `t` (live arrivals use the wall clock here).
    pub fn submission_at(&mut self, t: DateTime<Utc>) -> Value {
        self.counter += 1;
        let rng = &mut self.rng;

        // Who submits: a returning repeat offender, the same person under a new
        // email (duplicate applicant), or someone new.
        let returning = !self.offenders.is_empty() && rng.random_bool(0.12);
        let duplicate = !self.people.is_empty() && rng.random_bool(0.03);
        let (person_idx, fate_forced) = if returning {
            let i = rng.random_range(0..self.offenders.len());
            let (p, left) = self.offenders[i];
            if left <= 1 {
                self.offenders.swap_remove(i);
            } else {
                self.offenders[i].1 = left - 1;
            }
            (p, Some(Fate::Rejected("too_many_retry")))
        } else if duplicate {
            // Same face, name and birth date under another email: Argos gives
            // the same applicant_id.
            let p = rng.random_range(0..self.people.len());
            let mut clone = self.people[p].clone();
            clone.email = new_email(rng);
            if rng.random_bool(0.5) {
                clone.userid = None;
            }
            self.people.push(clone);
            (self.people.len() - 1, None)
        } else {
            let p = new_person(rng, t);
            self.people.push(p);
            (self.people.len() - 1, None)
        };

        let person = self.people[person_idx].clone();
        let fate = match fate_forced {
            Some(f) => f,
            None => choose_fate(rng, &person, t),
        };
        if fate == Fate::Rejected("too_many_retry") && fate_forced.is_none() && rng.random_bool(0.3)
        {
            // This one will be back, rejected again, within hours.
            self.offenders.push((person_idx, rng.random_range(2..=3)));
        }
        let id = submission_id(rng);
        build(rng, &id, &person, fate, t)
    }

    /// Turns a freshly generated submission into its `pending` first version
    /// and returns it; the argument keeps the decided version, which the
    /// simulator publishes later with [`decide`].
    pub fn pending_version(decided: &Value) -> Value {
        let mut v = decided.clone();
        let created = v.get("created_at").cloned().unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            obj.remove("kyc_result_at");
            obj.insert("pending_at".into(), created.clone());
            obj.insert("updated_at".into(), created);
            if let Some(kyc) = obj.get_mut("kyc").and_then(Value::as_object_mut) {
                kyc.insert("result".into(), json!("pending"));
                kyc.remove("comment");
                kyc.remove("commentCode");
            }
        }
        v
    }
}

/// Moves a decision dated after `t` back to `t`. The generator dates a
/// decision seconds to minutes after creation; a service publishes it only
/// once made, so nothing served may carry an `updated_at` in the future (a
/// poller ordering by event time would otherwise see time run backwards).
pub fn published_by(v: &mut Value, t: DateTime<Utc>) {
    let late = crate::argos::model::event_time(v).is_some_and(|u| u > t);
    if late && let Some(obj) = v.as_object_mut() {
        let ts = json!(format_argos_timestamp(t));
        obj.insert("updated_at".into(), ts.clone());
        if obj.contains_key("kyc_result_at") {
            obj.insert("kyc_result_at".into(), ts);
        }
    }
}

/// Stamps the decided version with the decision time: `updated_at` and
/// `kyc_result_at` move, and `pending_at` stays from the pending version.
pub fn decide(decided: &mut Value, pending_at: &Value, at: DateTime<Utc>) {
    let ts = json!(format_argos_timestamp(at));
    if let Some(obj) = decided.as_object_mut() {
        obj.insert("pending_at".into(), pending_at.clone());
        obj.insert("updated_at".into(), ts.clone());
        let result = obj
            .get("kyc")
            .and_then(|k| k.get("result"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if result.eq_ignore_ascii_case("approved") || result.eq_ignore_ascii_case("rejected") {
            obj.insert("kyc_result_at".into(), ts);
        }
    }
}

fn submission_id(rng: &mut ChaCha8Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..14)
        .map(|_| *ALNUM.choose(rng).unwrap() as char)
        .collect()
}

fn applicant_id(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}",
        rng.random::<u32>(),
        rng.random::<u16>(),
        rng.random::<u16>()
    )
}

fn new_email(rng: &mut ChaCha8Rng) -> String {
    format!(
        "{}{}{}@{}",
        WORDS.choose(rng).unwrap(),
        WORDS.choose(rng).unwrap(),
        rng.random_range(1..9999),
        DOMAINS.choose(rng).unwrap()
    )
}

fn new_person(rng: &mut ChaCha8Rng, t: DateTime<Utc>) -> Person {
    let r: f64 = rng.random();
    let nationality: &'static str = if r < 0.006 {
        BLACKLIST.choose(rng).unwrap()
    } else {
        let total: u32 = NATIONS.iter().map(|(_, w)| w).sum();
        let mut pick = rng.random_range(0..total);
        let mut chosen = NATIONS[0].0;
        for (n, w) in NATIONS {
            if pick < *w {
                chosen = n;
                break;
            }
            pick -= w;
        }
        chosen
    };
    let korean = nationality == "KOR" || (nationality == "CHN" && rng.random_bool(0.3));
    let name = if korean {
        format!(
            "{}{}",
            KO_SURNAMES.choose(rng).unwrap(),
            KO_GIVEN.choose(rng).unwrap()
        )
    } else {
        format!(
            "{} {}",
            LATIN_FIRST.choose(rng).unwrap(),
            LATIN_LAST.choose(rng).unwrap()
        )
    };
    // About 0.8% are under 13 (the vendor's age limit).
    let age_years = if rng.random_bool(0.008) {
        rng.random_range(9..13)
    } else {
        rng.random_range(18..70)
    };
    let dob = t.date_naive() - Duration::days(age_years * 365 + rng.random_range(0..365));
    Person {
        applicant_id: applicant_id(rng),
        name,
        gender: if rng.random_bool(0.5) {
            "male"
        } else {
            "female"
        },
        nationality,
        dob,
        email: new_email(rng),
        userid: if rng.random_bool(0.8) {
            Some(format!("user-{:06}", rng.random_range(0..1_000_000)))
        } else {
            None
        },
    }
}

fn age_at(dob: NaiveDate, t: DateTime<Utc>) -> i32 {
    let d = t.date_naive();
    let mut age = d.year() - dob.year();
    if (d.month(), d.day()) < (dob.month(), dob.day()) {
        age -= 1;
    }
    age
}

fn choose_fate(rng: &mut ChaCha8Rng, p: &Person, t: DateTime<Utc>) -> Fate {
    if BLACKLIST.contains(&p.nationality) {
        return Fate::Rejected(if rng.random_bool(0.5) {
            "blacklistCountry"
        } else {
            "id_info_blacklist"
        });
    }
    if age_at(p.dob, t) < 13 {
        return Fate::Rejected(if rng.random_bool(0.5) {
            "under_ageLimit"
        } else {
            "id_info_notOfAge"
        });
    }
    let r: f64 = rng.random();
    if r < 0.80 {
        Fate::Approved
    } else if r < 0.95 {
        const CODES: &[(&str, u32)] = &[
            ("too_many_retry", 20),
            ("id_image_badImage", 15),
            ("id_info_dataMismatch", 12),
            ("id_image_invalidImage", 8),
            ("id_image_invalidId", 5),
            ("id_image_error", 3),
            ("invalid_acceptedID", 5),
            ("address_image_invalidImage", 2),
            ("address_image_error", 1),
            ("address_image_badImage", 1),
            ("address_info_expiredDocument", 2),
            ("address_info_dataMismatch", 2),
            ("timeout", 6),
            ("other", 8),
        ];
        let total: u32 = CODES.iter().map(|(_, w)| w).sum();
        let mut pick = rng.random_range(0..total);
        for (c, w) in CODES {
            if pick < *w {
                return Fate::Rejected(c);
            }
            pick -= w;
        }
        Fate::Rejected("other")
    } else if r < 0.99 {
        Fate::Pending
    } else {
        Fate::Incomplete
    }
}

/// Six decimals, like the vendor's sample (`8.097455`); short decimals also
/// survive a text round trip exactly, which keeps content hashes stable.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn ts(t: DateTime<Utc>) -> Value {
    Value::String(format_argos_timestamp(t))
}

/// Upper, title or lower case, as the API itself mixes them.
fn some_case(rng: &mut ChaCha8Rng, s: &str) -> String {
    match rng.random_range(0..3) {
        0 => s.to_uppercase(),
        1 => {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str().to_lowercase().as_str())
                .unwrap_or_default()
        }
        _ => s.to_lowercase(),
    }
}

fn build(rng: &mut ChaCha8Rng, id: &str, p: &Person, fate: Fate, created: DateTime<Utc>) -> Value {
    let mut s = Map::new();
    let decided_at = created + Duration::seconds(rng.random_range(5..240));

    // --- data ---
    let mut data = Map::new();
    data.insert("name".into(), json!(p.name));
    data.insert("gender".into(), json!(p.gender));
    data.insert("nationality".into(), json!(p.nationality));
    data.insert(
        "date_of_birth".into(),
        json!(p.dob.format("%Y-%m-%d").to_string()),
    );
    data.insert(
        "ip_address".into(),
        json!(format!(
            "{}.{}.{}.{}",
            rng.random_range(1..224),
            rng.random_range(0..256),
            rng.random_range(0..256),
            rng.random_range(1..255)
        )),
    );
    let id_type = if p.nationality == "KOR" {
        *[
            "government_id",
            "government_id",
            "drivers_license",
            "passport",
        ]
        .choose(rng)
        .unwrap()
    } else {
        *[
            "passport",
            "passport",
            "residence permit",
            "drivers_license",
            "government_id",
        ]
        .choose(rng)
        .unwrap()
    };
    data.insert("idType".into(), json!(id_type));
    data.insert("idcard_issuingCountry".into(), json!(p.nationality));
    let issue = created.date_naive() - Duration::days(rng.random_range(30..3000));
    data.insert(
        "idcard_issueDate".into(),
        json!(issue.format("%Y-%m-%d").to_string()),
    );
    // ~1% expired, ~1.5% expiring within 30 days, the rest valid for years.
    let r: f64 = rng.random();
    let expire = if r < 0.01 {
        created.date_naive() - Duration::days(rng.random_range(1..400))
    } else if r < 0.025 {
        created.date_naive() + Duration::days(rng.random_range(0..30))
    } else {
        created.date_naive() + Duration::days(rng.random_range(200..3650))
    };
    data.insert(
        "idcard_expireDate".into(),
        json!(expire.format("%Y-%m-%d").to_string()),
    );
    if p.nationality == "KOR" {
        let g = match (p.gender, p.dob.year() >= 2000) {
            ("male", false) => 1,
            ("female", false) => 2,
            ("male", true) => 3,
            _ => 4,
        };
        data.insert(
            "identityNumber".into(),
            json!(format!(
                "{}-{}{:06}",
                p.dob.format("%y%m%d"),
                g,
                rng.random_range(0..1_000_000)
            )),
        );
        let (city, state, zip) = *CITIES.choose(rng).unwrap();
        data.insert("address_city".into(), json!(city));
        data.insert("address_country".into(), json!("KOR"));
        data.insert("address_state".into(), json!(state));
        data.insert(
            "address_street".into(),
            json!(format!(
                "{}-gil {}",
                rng.random_range(1..80),
                rng.random_range(1..200)
            )),
        );
        data.insert("address_zipcode".into(), json!(zip));
        if rng.random_bool(0.3) {
            // Not in the vendor's table, but in its sample: must survive.
            data.insert(
                "address_street2".into(),
                json!(format!("{}ho", rng.random_range(101..1500))),
            );
        }
    }
    data.insert(
        "documentNumber".into(),
        json!(format!(
            "{}{:08}",
            ["M", "S", "R"].choose(rng).unwrap(),
            rng.random_range(0..100_000_000)
        )),
    );
    if rng.random_bool(0.3) {
        data.insert(
            "cf1".into(),
            json!(format!("campaign-{}", rng.random_range(1..20))),
        );
    }
    s.insert("data".into(), Value::Object(data));

    // --- identity of the submission ---
    s.insert("email".into(), json!(p.email));
    s.insert("submission_id".into(), json!(id));
    s.insert("applicant_id".into(), json!(p.applicant_id));
    if let Some(u) = &p.userid {
        s.insert("userid".into(), json!(u));
    }
    s.insert("created_at".into(), ts(created));
    let agent = matches!(fate, Fate::Rejected("other")) || rng.random_bool(0.08);
    s.insert(
        "reviewer".into(),
        json!(if agent { "agent" } else { "system" }),
    );
    if rng.random_bool(0.05) {
        s.insert(
            "tokenId".into(),
            json!(format!("tok_{:016x}", rng.random::<u64>())),
        );
    }

    // --- kyc ---
    let mut kyc = Map::new();
    let result = match fate {
        Fate::Approved => "approved",
        Fate::Rejected(_) => "rejected",
        Fate::Pending => "pending",
        Fate::Incomplete => "Incomplete",
    };
    kyc.insert("result".into(), json!(result));
    if let Fate::Rejected(code) = fate {
        kyc.insert("comment".into(), json!([comment_of(code)]));
        kyc.insert("commentCode".into(), json!([code]));
    }
    let n_attempts = match fate {
        Fate::Rejected("too_many_retry") => 3,
        Fate::Incomplete => 1,
        _ => *[1, 1, 1, 1, 2, 2, 3].choose(rng).unwrap(),
    };
    // ~1% of people fail liveness on every attempt (a spoof or a bad camera).
    let low_liveness = rng.random_bool(0.01);
    let face_retries = matches!(fate, Fate::Rejected("too_many_retry")) && rng.random_bool(0.5);
    let mut attempts = Vec::new();
    for i in 1..=n_attempts {
        let last = i == n_attempts;
        let mut a = Map::new();
        a.insert("attemptCnt".into(), json!(i));
        let t1 = created - Duration::seconds(((n_attempts - i + 1) * 40) as i64);
        a.insert("step1Time1st".into(), ts(t1));
        a.insert("ocrResult".into(), json!("success"));
        a.insert(
            "verificationResult".into(),
            json!(if rng.random_bool(0.97) {
                "success"
            } else {
                "fail"
            }),
        );
        a.insert("step2Time1st".into(), ts(t1 + Duration::seconds(15)));
        let liveness: i64 = if low_liveness {
            rng.random_range(5..50)
        } else if last || rng.random_bool(0.5) {
            rng.random_range(80..=100)
        } else {
            rng.random_range(30..80)
        };
        a.insert("livenessScore".into(), json!(liveness));
        a.insert(
            "liveness".into(),
            json!({"score": round6(rng.random_range(0.5..9.5)), "probability": round6(rng.random_range(0.5..1.0)), "quality": round6(rng.random_range(0.3..1.0))}),
        );
        let passed = last && fate != Fate::Rejected("too_many_retry") && !low_liveness;
        let face: i64 = if passed || (!face_retries && rng.random_bool(0.8)) {
            rng.random_range(70..100)
        } else {
            rng.random_range(0..40)
        };
        a.insert("faceSimilarityScore".into(), json!(face));
        a.insert(
            "selfieImage".into(),
            json!(format!("https://selfie.argosidentity.com/{id}/{i}.jpg")),
        );
        if !passed {
            let (code, msg) = if face < 40 {
                (
                    "face_compare_underscore",
                    "The face doesn’t match. Please retry with another face image.",
                )
            } else {
                (
                    "liveness_error",
                    "Liveness fail: Face is too close to one or more borders. Please retry.",
                )
            };
            a.insert("retryMsg".into(), json!([msg]));
            a.insert("retryCode".into(), json!([code]));
        }
        attempts.push(Value::Object(a));
    }
    kyc.insert("attempts".into(), Value::Array(attempts));
    s.insert("kyc".into(), Value::Object(kyc));

    // --- aml: mostly not screened; ~2.5% red flags ---
    let mut aml = Map::new();
    if rng.random_bool(0.025) {
        let n = rng.random_range(1..=3);
        let mut matches = Vec::new();
        let mut worst = 3;
        for _ in 0..n {
            let lvl = *[
                (0, "HIGH"),
                (1, "MEDIUM"),
                (1, "MEDIUM"),
                (2, "LOW"),
                (2, "LOW"),
            ]
            .choose(rng)
            .unwrap();
            worst = worst.min(lvl.0);
            matches.push(json!({
                "risk_level": lvl.1,
                "argos_number": format!("AML-{:08}", rng.random_range(0..100_000_000)),
                "resource_id": format!("{:024x}", rng.random::<u128>() >> 32),
                "score": rng.random_range(60..100),
                "risk_icons": [*["PEP", "SAN", "AM", "RRE"].choose(rng).unwrap()],
            }));
        }
        let summary = ["high", "medium", "low"][worst];
        aml.insert("raw_data".into(), json!({"provider": "sim", "hits": n}));
        aml.insert("matches".into(), Value::Array(matches));
        aml.insert("risk_level_summary".into(), json!(some_case(rng, summary)));
        aml.insert("currentstatus".into(), json!("Red Flag"));
    } else {
        aml.insert("risk_level_summary".into(), json!("Not Screened"));
        aml.insert("currentstatus".into(), json!("Not Screened"));
    }
    s.insert("aml".into(), Value::Object(aml));

    // --- bank verification: some Korean applicants, ~10% of those fail ---
    if p.nationality == "KOR" && rng.random_bool(0.2) {
        let fail = rng.random_bool(0.1);
        s.insert(
            "bank_verification".into(),
            json!({
                "result": if fail { "fail" } else { "success" },
                "type": "occupancy",
                "bank_code": *BANKS.choose(rng).unwrap(),
                "account_number": format!("{}-{:03}-{:06}", rng.random_range(100..999), rng.random_range(0..1000), rng.random_range(0..1_000_000)),
                "retry_count": if fail { rng.random_range(1..4) } else { 0 },
            }),
        );
    }
    if rng.random_bool(0.1) {
        s.insert(
            "id_LivenessScore".into(),
            json!({"Screen_play": rng.random_range(0..100), "Paper_printed": rng.random_range(0..100), "Replace_portraits": rng.random_range(0..100)}),
        );
    }
    if rng.random_bool(0.005) {
        s.insert(
            "Injection_action".into(),
            json!({"type": "virtual_camera", "time": ts(created)}),
        );
    }

    // --- timestamps of the decision ---
    match fate {
        Fate::Pending => {
            s.insert("pending_at".into(), ts(created));
            s.insert("updated_at".into(), ts(created));
        }
        Fate::Incomplete => {
            s.insert("updated_at".into(), ts(created));
        }
        _ => {
            s.insert("updated_at".into(), ts(decided_at));
            s.insert("kyc_result_at".into(), ts(decided_at));
        }
    }
    Value::Object(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn deterministic_for_seed_and_base_time() {
        let a: Vec<Value> = {
            let mut g = Generator::new(7, base());
            (0..50).map(|_| g.next_submission()).collect()
        };
        let mut g = Generator::new(7, base());
        let b: Vec<Value> = (0..50).map(|_| g.next_submission()).collect();
        assert_eq!(a, b);
        let mut g = Generator::new(8, base());
        assert_ne!(a[0], g.next_submission());
    }

    #[test]
    fn realistic_mix_over_10000() {
        let mut g = Generator::new(1, base());
        let subs: Vec<Value> = (0..10_000).map(|_| g.next_submission()).collect();
        // Text round trip is exact (no float drift), so content hashes are stable.
        for s in subs.iter().step_by(7) {
            assert_eq!(&serde_json::from_str::<Value>(&s.to_string()).unwrap(), s);
        }
        let count = |f: &dyn Fn(&Value) -> bool| subs.iter().filter(|s| f(s)).count();
        let result = |s: &Value| s["kyc"]["result"].as_str().unwrap().to_lowercase();
        let code = |s: &Value, c: &str| {
            s["kyc"]["commentCode"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == c))
        };
        let approved = count(&|s| result(s) == "approved");
        let red = count(&|s| s["aml"]["currentstatus"] == "Red Flag");
        let tmr = count(&|s| code(s, "too_many_retry"));
        let blacklist = count(&|s| code(s, "blacklistCountry") || code(s, "id_info_blacklist"));
        let underage = count(&|s| code(s, "under_ageLimit") || code(s, "id_info_notOfAge"));
        let no_userid = count(&|s| s.get("userid").is_none());
        let bank_fail = count(&|s| s["bank_verification"]["result"] == "fail");
        let low_liveness = count(&|s| {
            s["kyc"]["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["livenessScore"].as_i64().unwrap() < 50)
        });
        eprintln!(
            "10k mix: approved {approved}, red flag {red}, too_many_retry {tmr}, blacklist {blacklist}, \
             under age {underage}, without userid {no_userid}, bank fail {bank_fail}, low liveness {low_liveness}"
        );
        assert!((7000..8500).contains(&approved), "approved {approved}");
        assert!((150..400).contains(&red), "red flags {red}");
        assert!((250..800).contains(&tmr), "too_many_retry {tmr}");
        assert!((20..120).contains(&blacklist), "blacklist {blacklist}");
        assert!((20..150).contains(&underage), "under age {underage}");
        assert!(
            (1000..3000).contains(&no_userid),
            "without userid {no_userid}"
        );
        assert!((20..400).contains(&bank_fail), "bank fail {bank_fail}");
        assert!(
            (30..300).contains(&low_liveness),
            "low liveness {low_liveness}"
        );
        // Shared applicant ids across emails.
        let mut by_app: std::collections::HashMap<&str, std::collections::HashSet<&str>> =
            Default::default();
        for s in &subs {
            by_app
                .entry(s["applicant_id"].as_str().unwrap())
                .or_default()
                .insert(s["email"].as_str().unwrap());
        }
        let shared = by_app.values().filter(|e| e.len() > 1).count();
        assert!(
            (100..600).contains(&shared),
            "shared applicant ids {shared}"
        );
        // Repeat offenders: >= 3 too_many_retry under one userid.
        let mut by_user: std::collections::HashMap<&str, usize> = Default::default();
        for s in subs.iter().filter(|s| code(s, "too_many_retry")) {
            if let Some(u) = s["userid"].as_str() {
                *by_user.entry(u).or_default() += 1;
            }
        }
        let repeaters = by_user.values().filter(|n| **n >= 3).count();
        assert!(repeaters >= 10, "repeat offenders {repeaters}");
        // Case variety of the AML summary.
        let summaries: std::collections::HashSet<&str> = subs
            .iter()
            .filter_map(|s| s["aml"]["risk_level_summary"].as_str())
            .collect();
        assert!(summaries.contains("HIGH") || summaries.contains("High"));
    }
}
