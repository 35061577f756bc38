//! A Tencent Cloud API 3.0 client for the few VOD actions the event receiver needs.
//!
//! No maintained Rust SDK covers VOD: the TC3 crates on crates.io are single releases that
//! take the SecretKey as a plain `String` (never wiped) and pin older `hmac`/`sha2` than this
//! project's, so the signature ([`tc3`], pure and tested against Tencent's published example)
//! is written here over the RustCrypto crates already used for upload signatures, and the
//! transport is hyper's client with rustls (ring), as the server already uses.

mod actions;
mod client;
mod error;
pub mod tc3;

pub use actions::{EventHandle, HandleBatch, MAX_EVENTS_PER_CALL, PulledEvent, TaskDetail};
pub use client::{
    ApiClient, ApiClientError, ApiSettings, DEFAULT_ENDPOINT, VOD_SERVICE, VOD_VERSION,
    check_endpoint,
};
pub use error::{ApiError, ErrorClass};
pub use tc3::ApiCredential;
