//! The Argos API: submission model, client, encrypted mode.
//!
//! - [`model`]: the typed, borrowed view of a raw submission and the helpers
//!   the pipeline calls on raw values (timestamps, ids, event time).
//! - [`crypto`]: the cipher of Argos encrypted mode (AES-256-ECB, see its
//!   warning about ECB).
//! - [`client`]: the REST client (pagination, retries, rate limit, call count,
//!   bounds on pages and answer sizes, no redirects).
//! - [`page`]: a list answer read item by item (a bad item is set aside).
//! - [`budget`]: the daily API budget, counted before each call.
//! - [`webhook`]: an Argos webhook body (plain or encrypted) read into a typed event.

pub mod budget;
pub mod client;
pub mod crypto;
pub mod model;
pub mod page;
pub mod webhook;

pub use budget::CallBudget;
pub use client::{
    ArgosClient, ArgosError, ClientConfig, DateFormat, ListQuery, Page, RawPage, RequestType,
};
pub use model::{
    ApplicantEntry, Keys, NextPageKey, Submission, event_time, format_argos_timestamp,
    parse_timestamp, submission_id,
};
pub use page::Unreadable;
