//! The Argos API: submission model, client, encrypted mode.
