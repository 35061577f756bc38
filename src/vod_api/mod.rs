//! A Tencent Cloud API 3.0 client for the few VOD actions the event receiver needs.
//!
//! No maintained Rust SDK covers VOD: the TC3 crates on crates.io are single releases that
//! take the SecretKey as a plain `String` (never wiped) and pin older `hmac`/`sha2` than this
//! project's, so the signature (`tc3`, pure and tested against Tencent's published example)
//! is written here over the RustCrypto crates already used for upload signatures, and the
//! transport is hyper's client with rustls (ring), as the server already uses.

mod actions;
mod client;
mod error;
pub(crate) mod tc3;

pub use actions::EventHandle;
pub(crate) use actions::{HandleBatch, PulledEvent};
pub use client::{ApiClient, ApiSettings};
pub(crate) use client::{ApiClientError, DEFAULT_ENDPOINT, check_endpoint};
pub(crate) use error::{ApiError, ErrorClass};
pub use tc3::ApiCredential;
