//! The harness of the integration tests. The server itself is `vod_signer::testing::TestServer`;
//! these modules hold what a group of tests shares on top of it (configurations, fixtures, the
//! VOD API stand-in, real Redis and PostgreSQL instances).
#![allow(dead_code)] // each test module uses a different part

pub mod client;
pub mod events;
pub mod ops;
pub mod params;
pub mod postgres;
pub mod process;
pub mod pull;
pub mod receiver;
pub mod redis;
pub mod reference;
pub mod service;
pub mod vectors;
