//! Helpers for the `ops_*` tests: a real Redis, a real server started from a configuration
//! file, and test certificates.
#![allow(dead_code)]

pub mod postgres;
pub mod redis;
pub mod server;
