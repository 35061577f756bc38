//! vod-signer: issues and verifies Tencent Cloud VOD client-upload signatures.
//!
//! - [`signature`]: the pure signing core (no I/O).
//! - [`cli`]: the `vod-signer` command line.
//! - `server`: the gRPC service, assembled from [`config`], `policy`, [`service`] and the
//!   generated [`proto`] code, and served by `transport` (connections, TLS, admission).
//! - [`quota`] and [`metrics`]: per-user issuance quotas and the Prometheus endpoint.
//! - [`events`]: VOD event notification bodies and their `SignKey` authentication (pure).
//! - [`tracking`]: upload records, their states, the stores and the change feed.
//! - [`vod_api`]: the VOD API 3.0 client (TC3-signed); [`pull`]: reliable-mode consumer and
//!   reconciliation built on it.
//! - `receiver`: the HTTP endpoint VOD posts its event notifications to.
//! - `testing` (only with the `testsuite` feature): the test harness.
//!
//! Only what the binary, the tests, the benches and the tools use is public; the modules in
//! plain code above (and everything else not needed outside) are private to the crate.

pub mod cli;
pub mod config;
pub mod events;
pub mod logging;
pub mod metrics;
pub(crate) mod policy;
pub mod proto;
pub mod pull;
pub mod quota;
pub(crate) mod receiver;
pub(crate) mod server;
pub mod service;
pub mod signature;
#[cfg(feature = "testsuite")]
pub mod testing;
pub mod tracking;
mod transport;
pub mod vod_api;
