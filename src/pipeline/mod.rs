//! The daemon pipeline: poll -> detect changes -> evaluate -> commit -> deliver.
pub mod state;
