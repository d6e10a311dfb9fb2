//! The analyst console (issue 17): server-rendered pages on the API's
//! listener where people sign in, find, understand, act on and close alerts
//! under their own names.

pub mod identity;
