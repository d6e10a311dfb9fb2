//! The durable state store.
