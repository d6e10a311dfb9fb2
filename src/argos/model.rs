//! The Argos submission model: a typed, borrowed view beside the raw JSON.
//!
//! Submissions travel through the engine as `serde_json::Value`, exactly as the
//! API sent them: rules, scripts and templates read paths in that value, and
//! fields the vendor's table does not list (the sample already has
//! `address_street2`, `ocrResult`, `liveness`) must stay reachable. The typed
//! view exists so Rust code can read the documented fields with their types
//! (numbers that arrive as strings, case-varying enums, two timestamp formats)
//! without re-implementing that leniency at every call site.
//!
//! Why a *borrowed* view: [`Submission<'a>`] is deserialized from `&'a Value`
//! (serde_json implements `Deserializer<'de> for &'de Value`), so its strings
//! are `Cow::Borrowed` slices of the raw value and nothing is copied. The raw
//! value is the single source of truth, so a submission round-trips to JSON
//! with every unknown field intact by construction; [`Submission::unknown_fields`]
//! lists what the table does not describe. Every field is optional, unknown enum
//! values are kept as text (`Other`), and a timestamp that does not parse keeps
//! its text (the vendor's own samples carry the placeholder
//! `YYYY-MM-DD-HH-MM-SS-ZZZ`).

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Helpers the pipeline and the rule engine call on the raw value.
// ---------------------------------------------------------------------------

/// Parses an Argos timestamp as UTC: `YYYY-MM-DD-HH-MM-SS-ZZZ` (the last part is
/// milliseconds; also accepted without it) or RFC 3339 (any offset, converted).
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    // Argos format: all-digit groups separated by '-'. Parsing by hand is
    // cheaper than chrono's format parser and this runs once per submission.
    let mut parts = [0u32; 7];
    let mut n = 0;
    for piece in s.split('-') {
        if n == 7 || piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[n] = piece.parse().ok()?;
        n += 1;
    }
    if n < 6 {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(parts[0] as i32, parts[1], parts[2])?;
    let millis = if n == 7 { parts[6] } else { 0 };
    if millis > 999 {
        return None;
    }
    let dt: NaiveDateTime = date.and_hms_milli_opt(parts[3], parts[4], parts[5], millis)?;
    Some(Utc.from_utc_datetime(&dt))
}

/// Writes a time the way Argos does: `YYYY-MM-DD-HH-MM-SS-ZZZ` (UTC, milliseconds).
pub fn format_argos_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d-%H-%M-%S-%3f").to_string()
}

/// Parses a `YYYY-MM-DD` date field (`date_of_birth`, `idcard_expireDate`, ...).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// The time a submission version is about: `updated_at`, else `created_at`.
/// Rules use this, never the wall clock, so replaying a file gives the same answers.
pub fn event_time(v: &Value) -> Option<DateTime<Utc>> {
    let k = Keys::of(v);
    k.updated_at()
        .and_then(parse_timestamp)
        .or_else(|| k.created_at().and_then(parse_timestamp))
}

/// [`event_time`] and `submission_id` read from a submission's text without
/// building its value: `backfill` orders a large day by them and then parses
/// it a slice at a time. `None` when either is missing or unreadable, or the
/// text repeats one of the keys (the caller then orders by the parsed value).
pub fn order_key(raw: &serde_json::value::RawValue) -> Option<(DateTime<Utc>, String)> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        submission_id: AnyStr<'a>,
        #[serde(borrow, default)]
        updated_at: AnyStr<'a>,
        #[serde(borrow, default)]
        created_at: AnyStr<'a>,
    }
    let head: Head<'_> = serde_json::from_str(raw.get()).ok()?;
    let t = (head.updated_at.0.as_deref().and_then(parse_timestamp))
        .or_else(|| head.created_at.0.as_deref().and_then(parse_timestamp))?;
    Some((t, head.submission_id.0?.into_owned()))
}

/// A string, or `None` for any other JSON value (as [`Keys`] reads fields).
#[derive(Default)]
struct AnyStr<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for AnyStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AnyStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AnyStr(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(AnyStr(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(AnyStr(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(AnyStr(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// `submission_id` of a raw submission, if it is a string.
pub fn submission_id(v: &Value) -> Option<&str> {
    v.get("submission_id").and_then(Value::as_str)
}

/// Cheap accessors to the keys the pipeline groups and orders by, read straight
/// from the raw value (no deserialization, no allocation).
#[derive(Clone, Copy)]
pub struct Keys<'a>(&'a Value);

impl<'a> Keys<'a> {
    pub fn of(v: &'a Value) -> Self {
        Keys(v)
    }
    fn top(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).and_then(Value::as_str)
    }
    pub fn submission_id(&self) -> Option<&'a str> {
        self.top("submission_id")
    }
    pub fn applicant_id(&self) -> Option<&'a str> {
        self.top("applicant_id")
    }
    pub fn email(&self) -> Option<&'a str> {
        self.top("email")
    }
    pub fn userid(&self) -> Option<&'a str> {
        self.top("userid")
    }
    pub fn created_at(&self) -> Option<&'a str> {
        self.top("created_at")
    }
    pub fn updated_at(&self) -> Option<&'a str> {
        self.top("updated_at")
    }
    /// `kyc.result` as written (case varies: compare with [`KycResult::parse`]).
    pub fn kyc_result(&self) -> Option<&'a str> {
        self.0.get("kyc")?.get("result")?.as_str()
    }
}

impl fmt::Debug for Keys<'_> {
    // Only identifiers, never the personal data of the submission.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("submission_id", &self.submission_id())
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Lenient scalar types.
// ---------------------------------------------------------------------------

/// Text borrowed from the raw value when it is a string; numbers and booleans
/// (integrators send `"cf1": 12`) are kept as their JSON text.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number that may arrive as a JSON number or as a numeric string (`"99"`).
/// A string that is not a number is kept as text so the view never fails on it.
#[derive(Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Num<'a> {
    Value(f64),
    NotANumber(Cow<'a, str>),
}

impl Num<'_> {
    pub fn value(&self) -> Option<f64> {
        match self {
            Num::Value(v) => Some(*v),
            Num::NotANumber(_) => None,
        }
    }
}

impl fmt::Debug for Num<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::Value(v) => write!(f, "{v}"),
            Num::NotANumber(s) => write!(f, "NotANumber({s:?})"),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Num<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = Text::deserialize(d)?;
        Ok(match t.0.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Num::Value(v),
            _ => Num::NotANumber(t.0),
        })
    }
}

/// A timestamp: its text as sent, and its UTC value when the text parses.
#[derive(Clone, PartialEq, Serialize)]
pub struct Stamp<'a> {
    pub text: Cow<'a, str>,
    pub utc: Option<DateTime<Utc>>,
}

impl fmt::Debug for Stamp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.utc {
            Some(t) => write!(
                f,
                "{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
            None => write!(f, "Unparsed({:?})", self.text),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Stamp<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = Text::deserialize(d)?;
        let utc = parse_timestamp(&t.0);
        Ok(Stamp { text: t.0, utc })
    }
}

/// Declares a case-insensitive enum that keeps unknown values as text.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => [$($text:literal),+]),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        pub enum $name {
            $($variant,)+
            /// A value the documentation does not list, kept as sent.
            Other(String),
        }

        impl $name {
            /// Reads the value ignoring ASCII case; unknown values become `Other`.
            pub fn parse(s: &str) -> Self {
                let t = s.trim();
                $( if [$($text),+].iter().any(|x| x.eq_ignore_ascii_case(t)) {
                    return $name::$variant;
                } )+
                $name::Other(s.to_owned())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let t = Text::deserialize(d)?;
                Ok($name::parse(&t.0))
            }
        }
    };
}

text_enum!(
    /// `kyc.result`.
    KycResult {
        Incomplete => ["incomplete"],
        Pending => ["pending"],
        Approved => ["approved"],
        Rejected => ["rejected"],
    }
);

text_enum!(
    /// `aml.risk_level_summary` and `aml.matches[].risk_level`.
    RiskLevel {
        NotScreened => ["not screened"],
        High => ["high"],
        Medium => ["medium"],
        Low => ["low"],
    }
);

text_enum!(
    /// `aml.currentstatus`.
    AmlStatus {
        NotScreened => ["not screened"],
        RedFlag => ["red flag"],
    }
);

text_enum!(
    /// `reviewer`: AI review or a human.
    Reviewer {
        System => ["system"],
        Agent => ["agent"],
    }
);

text_enum!(
    /// `data.gender`.
    Gender {
        Male => ["male"],
        Female => ["female"],
    }
);

text_enum!(
    /// `data.idType` (the vendor page misspells `drivers_licensem`; both read).
    IdType {
        Passport => ["passport"],
        GovernmentId => ["government_id"],
        DriversLicense => ["drivers_license", "drivers_licensem"],
        ResidencePermit => ["residence permit", "residence_permit"],
        VehicleRegistrationCertificate => ["vehicle registration certificate"],
        Visa => ["visa"],
        Aadhaar => ["aadhaar"],
        Pancard => ["pancard"],
    }
);

text_enum!(
    /// `success` / `fail` of a verification or a bank check.
    Outcome {
        Success => ["success"],
        Fail => ["fail", "failed", "failure"],
    }
);

text_enum!(
    /// `bank_verification.type`.
    BankCheckType {
        Occupancy => ["occupancy"],
        NameCheck => ["namecheck"],
    }
);

// ---------------------------------------------------------------------------
// The submission.
// ---------------------------------------------------------------------------

/// The typed view of one submission. Every field is optional; see the module doc.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Submission<'a> {
    #[serde(borrow)]
    pub submission_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub applicant_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub email: Option<Text<'a>>,
    #[serde(borrow)]
    pub userid: Option<Text<'a>>,
    pub reviewer: Option<Reviewer>,
    #[serde(borrow)]
    pub created_at: Option<Stamp<'a>>,
    #[serde(borrow)]
    pub updated_at: Option<Stamp<'a>>,
    #[serde(borrow)]
    pub pending_at: Option<Stamp<'a>>,
    #[serde(borrow)]
    pub kyc_result_at: Option<Stamp<'a>>,
    #[serde(borrow, rename = "tokenId")]
    pub token_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub data: Option<Data<'a>>,
    #[serde(borrow)]
    pub additional_list: Option<Vec<AdditionalItem<'a>>>,
    #[serde(borrow)]
    pub kyc: Option<Kyc<'a>>,
    #[serde(borrow)]
    pub aml: Option<Aml<'a>>,
    #[serde(borrow)]
    pub bank_verification: Option<BankVerification<'a>>,
    #[serde(borrow, rename = "id_LivenessScore")]
    pub id_liveness_score: Option<IdLivenessScore<'a>>,
    #[serde(borrow, rename = "Injection_action")]
    pub injection_action: Option<InjectionAction<'a>>,
}

/// Top-level keys the vendor's table documents (used to list the others).
pub const KNOWN_FIELDS: &[&str] = &[
    "submission_id",
    "applicant_id",
    "email",
    "userid",
    "reviewer",
    "created_at",
    "updated_at",
    "pending_at",
    "kyc_result_at",
    "tokenId",
    "data",
    "additional_list",
    "kyc",
    "aml",
    "bank_verification",
    "id_LivenessScore",
    "Injection_action",
];

/// `data.*` keys the vendor's table documents.
pub const KNOWN_DATA_FIELDS: &[&str] = &[
    "name",
    "gender",
    "nationality",
    "date_of_birth",
    "ip_address",
    "idType",
    "idcard_issuingCountry",
    "idcard_issueDate",
    "idcard_expireDate",
    "identityNumber",
    "documentNumber",
    "address_city",
    "address_country",
    "address_state",
    "address_street",
    "address_zipcode",
    "address_globalCode",
    "address_compoundCode",
    "address_formatted",
    "address_input",
    "address_detail",
    "cf1",
    "cf2",
    "cf3",
];

impl<'a> Submission<'a> {
    /// Builds the view over a raw submission without copying its strings.
    /// Fails only when a documented field has an impossible shape (an object
    /// where text is expected); the message names the submission.
    pub fn from_value(v: &'a Value) -> Result<Self, ModelError> {
        Submission::deserialize(v).map_err(|e| ModelError {
            submission_id: submission_id(v).map(str::to_owned),
            message: e.to_string(),
        })
    }

    /// Keys of the raw submission (top level, and `data.` prefixed) that the
    /// vendor's table does not list. They are still in the raw value.
    pub fn unknown_fields(raw: &'a Value) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(obj) = raw.as_object() {
            for k in obj.keys() {
                if !KNOWN_FIELDS.contains(&k.as_str()) {
                    out.push(k.clone());
                }
            }
        }
        if let Some(obj) = raw.get("data").and_then(Value::as_object) {
            for k in obj.keys() {
                if !KNOWN_DATA_FIELDS.contains(&k.as_str()) {
                    out.push(format!("data.{k}"));
                }
            }
        }
        out
    }

    /// `updated_at`, else `created_at`, when they parse.
    pub fn event_time(&self) -> Option<DateTime<Utc>> {
        self.updated_at
            .as_ref()
            .and_then(|s| s.utc)
            .or_else(|| self.created_at.as_ref().and_then(|s| s.utc))
    }

    /// `kyc.result`, if present.
    pub fn kyc_result(&self) -> Option<&KycResult> {
        self.kyc.as_ref()?.result.as_ref()
    }
}

/// Why a raw submission has no typed view.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("submission {}: {message}", submission_id.as_deref().unwrap_or("(without submission_id)"))]
pub struct ModelError {
    pub submission_id: Option<String>,
    pub message: String,
}

/// `data`: identity, ID document, address, custom values.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Data<'a> {
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    pub gender: Option<Gender>,
    #[serde(borrow)]
    pub nationality: Option<Text<'a>>,
    #[serde(borrow)]
    pub date_of_birth: Option<Text<'a>>,
    #[serde(borrow)]
    pub ip_address: Option<Text<'a>>,
    #[serde(rename = "idType")]
    pub id_type: Option<IdType>,
    #[serde(borrow, rename = "idcard_issuingCountry")]
    pub idcard_issuing_country: Option<Text<'a>>,
    #[serde(borrow, rename = "idcard_issueDate")]
    pub idcard_issue_date: Option<Text<'a>>,
    #[serde(borrow, rename = "idcard_expireDate")]
    pub idcard_expire_date: Option<Text<'a>>,
    /// Personal data: masked in Debug.
    #[serde(borrow, rename = "identityNumber")]
    pub identity_number: Option<Text<'a>>,
    /// Personal data: masked in Debug.
    #[serde(borrow, rename = "documentNumber")]
    pub document_number: Option<Text<'a>>,
    #[serde(borrow)]
    pub address_city: Option<Text<'a>>,
    #[serde(borrow)]
    pub address_country: Option<Text<'a>>,
    #[serde(borrow)]
    pub address_state: Option<Text<'a>>,
    #[serde(borrow)]
    pub address_street: Option<Text<'a>>,
    #[serde(borrow)]
    pub address_zipcode: Option<Text<'a>>,
    #[serde(borrow, rename = "address_globalCode")]
    pub address_global_code: Option<Text<'a>>,
    #[serde(borrow, rename = "address_compoundCode")]
    pub address_compound_code: Option<Text<'a>>,
    #[serde(borrow)]
    pub address_formatted: Option<Text<'a>>,
    #[serde(borrow)]
    pub address_input: Option<Text<'a>>,
    #[serde(borrow)]
    pub address_detail: Option<Text<'a>>,
    #[serde(borrow)]
    pub cf1: Option<Text<'a>>,
    #[serde(borrow)]
    pub cf2: Option<Text<'a>>,
    #[serde(borrow)]
    pub cf3: Option<Text<'a>>,
}

impl Data<'_> {
    /// `idcard_expireDate` as a date, when it is one.
    pub fn id_expiry(&self) -> Option<NaiveDate> {
        self.idcard_expire_date
            .as_ref()
            .and_then(|t| parse_date(&t.0))
    }
}

fn masked(t: &Option<Text<'_>>) -> Option<&'static str> {
    t.as_ref().map(|_| "[MASKED]")
}

impl fmt::Debug for Data<'_> {
    // Written by hand so that identity and document numbers never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Data")
            .field("name", &self.name)
            .field("gender", &self.gender)
            .field("nationality", &self.nationality)
            .field("date_of_birth", &self.date_of_birth)
            .field("ip_address", &self.ip_address)
            .field("id_type", &self.id_type)
            .field("idcard_issuing_country", &self.idcard_issuing_country)
            .field("idcard_issue_date", &self.idcard_issue_date)
            .field("idcard_expire_date", &self.idcard_expire_date)
            .field("identity_number", &masked(&self.identity_number))
            .field("document_number", &masked(&self.document_number))
            .field("address_city", &self.address_city)
            .field("address_country", &self.address_country)
            .field("address_state", &self.address_state)
            .field("address_street", &self.address_street)
            .field("address_zipcode", &self.address_zipcode)
            .field("address_global_code", &self.address_global_code)
            .field("address_compound_code", &self.address_compound_code)
            .field("address_formatted", &self.address_formatted)
            .field("address_input", &self.address_input)
            .field("address_detail", &self.address_detail)
            .field("cf1", &self.cf1)
            .field("cf2", &self.cf2)
            .field("cf3", &self.cf3)
            .finish()
    }
}

/// One answer of the dashboard's additional form.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AdditionalItem<'a> {
    #[serde(borrow)]
    pub answer: Option<Text<'a>>,
    #[serde(borrow, rename = "inputValue")]
    pub input_value: Option<Text<'a>>,
    #[serde(borrow, rename = "blockType")]
    pub block_type: Option<Text<'a>>,
}

/// `kyc`: the result, rejection reasons and attempts.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Kyc<'a> {
    pub result: Option<KycResult>,
    #[serde(borrow)]
    pub comment: Option<Vec<Text<'a>>>,
    #[serde(borrow, rename = "commentCode")]
    pub comment_code: Option<Vec<Text<'a>>>,
    #[serde(borrow)]
    pub attempts: Option<Vec<Attempt<'a>>>,
}

/// One try at liveness, face detection, face compare and ID verification.
/// `verification` and `verificationParams` stay raw: the vendor gives no schema.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Attempt<'a> {
    #[serde(borrow, rename = "attemptCnt")]
    pub attempt_cnt: Option<Num<'a>>,
    #[serde(borrow, rename = "idBarcodeResult")]
    pub id_barcode_result: Option<Text<'a>>,
    #[serde(borrow, rename = "ocrResult")]
    pub ocr_result: Option<Text<'a>>,
    #[serde(rename = "verificationResult")]
    pub verification_result: Option<Outcome>,
    #[serde(borrow, rename = "errorCode")]
    pub error_code: Option<Text<'a>>,
    #[serde(borrow, rename = "errorMsg")]
    pub error_msg: Option<Text<'a>>,
    #[serde(borrow, rename = "step1Time1st")]
    pub step1_time_1st: Option<Stamp<'a>>,
    #[serde(borrow, rename = "step1Time2nd")]
    pub step1_time_2nd: Option<Stamp<'a>>,
    #[serde(borrow, rename = "step1Time3rd")]
    pub step1_time_3rd: Option<Stamp<'a>>,
    #[serde(borrow, rename = "step2Time1st")]
    pub step2_time_1st: Option<Stamp<'a>>,
    #[serde(borrow, rename = "step2Time2nd")]
    pub step2_time_2nd: Option<Stamp<'a>>,
    #[serde(borrow, rename = "step2Time3rd")]
    pub step2_time_3rd: Option<Stamp<'a>>,
    #[serde(borrow, rename = "retryMsg")]
    pub retry_msg: Option<Vec<Text<'a>>>,
    #[serde(borrow, rename = "retryCode")]
    pub retry_code: Option<Vec<Text<'a>>>,
    #[serde(borrow, rename = "faceSimilarityScore")]
    pub face_similarity_score: Option<Num<'a>>,
    #[serde(borrow, rename = "selfieImage")]
    pub selfie_image: Option<Text<'a>>,
    #[serde(borrow, rename = "livenessScore")]
    pub liveness_score: Option<Num<'a>>,
    #[serde(borrow)]
    pub liveness: Option<Liveness<'a>>,
}

/// `kyc.attempts[].liveness`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Liveness<'a> {
    #[serde(borrow)]
    pub score: Option<Num<'a>>,
    #[serde(borrow)]
    pub probability: Option<Num<'a>>,
    #[serde(borrow)]
    pub quality: Option<Num<'a>>,
}

/// `aml`: screening summary and matches (`raw_data` stays in the raw value).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Aml<'a> {
    pub risk_level_summary: Option<RiskLevel>,
    pub currentstatus: Option<AmlStatus>,
    #[serde(borrow)]
    pub matches: Option<Vec<AmlMatch<'a>>>,
}

/// One AML match (only with a red flag).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AmlMatch<'a> {
    pub risk_level: Option<RiskLevel>,
    #[serde(borrow)]
    pub argos_number: Option<Text<'a>>,
    #[serde(borrow)]
    pub resource_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub score: Option<Num<'a>>,
    #[serde(borrow)]
    pub risk_icons: Option<Vec<Text<'a>>>,
}

/// Korean bank-account verification.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct BankVerification<'a> {
    pub result: Option<Outcome>,
    #[serde(rename = "type")]
    pub check_type: Option<BankCheckType>,
    #[serde(borrow)]
    pub bank_code: Option<Text<'a>>,
    /// Personal data: masked in Debug.
    #[serde(borrow)]
    pub account_number: Option<Text<'a>>,
    #[serde(borrow)]
    pub retry_count: Option<Num<'a>>,
}

impl fmt::Debug for BankVerification<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BankVerification")
            .field("result", &self.result)
            .field("check_type", &self.check_type)
            .field("bank_code", &self.bank_code)
            .field("account_number", &masked(&self.account_number))
            .field("retry_count", &self.retry_count)
            .finish()
    }
}

/// ID-card liveness scores (anti-spoofing option).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct IdLivenessScore<'a> {
    #[serde(borrow, rename = "Screen_play")]
    pub screen_play: Option<Num<'a>>,
    #[serde(borrow, rename = "Paper_printed")]
    pub paper_printed: Option<Num<'a>>,
    #[serde(borrow, rename = "Replace_portraits")]
    pub replace_portraits: Option<Num<'a>>,
}

/// Injection-attack process record.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct InjectionAction<'a> {
    #[serde(borrow, rename = "type")]
    pub action_type: Option<Text<'a>>,
    #[serde(borrow)]
    pub time: Option<Stamp<'a>>,
}

/// One entry of `GET /v3/submission/applicant`: a submission judged to be the
/// same person.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApplicantEntry {
    #[serde(default)]
    pub submission_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// `nextpageKey` of a list response: the last item of the page.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub struct NextPageKey {
    pub id: String,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_both_formats() {
        let a = parse_timestamp("2024-03-05-07-08-09-123").unwrap();
        assert_eq!(a.to_rfc3339(), "2024-03-05T07:08:09.123+00:00");
        let b = parse_timestamp("2024-03-05T16:08:09.123+09:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            parse_timestamp("2024-03-05-07-08-09").unwrap().to_rfc3339(),
            "2024-03-05T07:08:09+00:00"
        );
        assert_eq!(parse_timestamp("YYYY-MM-DD-HH-MM-SS-ZZZ"), None);
        assert_eq!(parse_timestamp("2024-02-30-00-00-00-000"), None);
        assert_eq!(parse_timestamp("2024-03-05-07-08-09-1234"), None);
        assert_eq!(format_argos_timestamp(a), "2024-03-05-07-08-09-123");
    }

    #[test]
    fn event_time_prefers_updated_at() {
        let v = json!({"created_at": "2024-01-01-00-00-00-000", "updated_at": "2024-01-02-00-00-00-000"});
        assert_eq!(
            event_time(&v).unwrap().to_rfc3339(),
            "2024-01-02T00:00:00+00:00"
        );
        let v = json!({"created_at": "2024-01-01-00-00-00-000"});
        assert_eq!(
            event_time(&v).unwrap().to_rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        assert_eq!(event_time(&json!({})), None);
    }

    #[test]
    fn lenient_values_and_borrowing() {
        let v = json!({
            "submission_id": "s1",
            "kyc": {"result": "APPROVED", "attempts": [{"attemptCnt": "2", "livenessScore": 99, "faceSimilarityScore": "n/a"}]},
            "aml": {"risk_level_summary": "High", "currentstatus": "red flag", "matches": [{"risk_level": "CRITICAL"}]},
            "data": {"idType": "drivers_licensem", "cf1": 12}
        });
        let s = Submission::from_value(&v).unwrap();
        assert!(matches!(
            s.submission_id.as_ref().unwrap().0,
            Cow::Borrowed("s1")
        ));
        assert_eq!(s.kyc_result(), Some(&KycResult::Approved));
        let a = &s.kyc.as_ref().unwrap().attempts.as_ref().unwrap()[0];
        assert_eq!(a.attempt_cnt.as_ref().unwrap().value(), Some(2.0));
        assert_eq!(a.liveness_score.as_ref().unwrap().value(), Some(99.0));
        assert_eq!(a.face_similarity_score.as_ref().unwrap().value(), None);
        let aml = s.aml.as_ref().unwrap();
        assert_eq!(aml.risk_level_summary, Some(RiskLevel::High));
        assert_eq!(aml.currentstatus, Some(AmlStatus::RedFlag));
        assert_eq!(
            aml.matches.as_ref().unwrap()[0].risk_level,
            Some(RiskLevel::Other("CRITICAL".into()))
        );
        let d = s.data.as_ref().unwrap();
        assert_eq!(d.id_type, Some(IdType::DriversLicense));
        assert_eq!(d.cf1.as_ref().unwrap().as_str(), "12");
    }

    #[test]
    fn impossible_shape_names_the_submission() {
        let v = json!({"submission_id": "s9", "email": {"x": 1}});
        let e = Submission::from_value(&v).unwrap_err();
        assert_eq!(
            e.to_string(),
            "submission s9: invalid type: map, expected text"
        );
    }

    #[test]
    fn debug_masks_personal_numbers() {
        let v = json!({"data": {"identityNumber": "900101-1234567", "documentNumber": "M1234"},
                       "bank_verification": {"account_number": "110-123-456789"}});
        let s = Submission::from_value(&v).unwrap();
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("1234567"), "{dbg}");
        assert!(!dbg.contains("M1234"), "{dbg}");
        assert!(!dbg.contains("456789"), "{dbg}");
        assert!(dbg.contains("[MASKED]"));
    }

    #[test]
    fn keys_accessors() {
        let v = json!({"submission_id": "a", "applicant_id": "p", "email": "e@x", "userid": "u",
                       "created_at": "c", "kyc": {"result": "pending"}});
        let k = Keys::of(&v);
        assert_eq!(
            (
                k.submission_id(),
                k.applicant_id(),
                k.email(),
                k.userid(),
                k.created_at(),
                k.kyc_result()
            ),
            (
                Some("a"),
                Some("p"),
                Some("e@x"),
                Some("u"),
                Some("c"),
                Some("pending")
            )
        );
        assert_eq!(submission_id(&v), Some("a"));
    }
}
