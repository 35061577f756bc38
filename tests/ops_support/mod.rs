//! Helpers for the `ops_*` tests: a real Redis, and (in the server tests) a real server.
#![allow(dead_code)]

pub mod redis;
