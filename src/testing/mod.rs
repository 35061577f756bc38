//! Test support, compiled only with the `testsuite` feature (the integration tests turn it on;
//! a normal build of the binary has none of this).
//!
//! - [`TestServer`]: a real server on loopback ports inside the test process, built from a
//!   [`Config`](crate::config::Config), with the hooks a test may need (a manual clock, a gate
//!   that holds issuance, metrics and event listeners, short pull timings, a reload handle).
//! - [`ManualClock`] and [`IssueGate`]: the two hooks the service itself knows of.
//! - Small helpers shared by the tests ([`sha256_hex`], [`authed`], [`series`], ...).

mod clock;
mod gate;
mod helpers;
mod server;

pub use clock::ManualClock;
pub use gate::IssueGate;
pub use helpers::{
    HttpResponse, authed, bind_retrying, config_from, free_addr, http_get, http_request, series,
    sha256_hex,
};
pub use server::{TestServer, TestServerBuilder};
