//! Typed client for the `vod-signer` service, which issues and verifies Tencent Cloud VOD
//! client-upload signatures for internal backends.
//!
//! - [`SignerClient`]: built from one or more `http://`/`https://` endpoints with a bearer token
//!   (fixed, or a [`TokenProvider`] for rotation), optional TLS and mutual TLS, a connect
//!   timeout and a default per-call deadline. Calls are spread round robin over the endpoints
//!   and retried with jittered exponential backoff on UNAVAILABLE, within the call's deadline.
//! - [`IssueRequest`] in, [`IssuedSignature`] out; [`Verification`] for checks.
//! - [`Error`]: one variant per kind of failure, each message starting with the kind.
//! - [`SignerClient::get_upload`], [`SignerClient::list_uploads`] and
//!   [`SignerClient::watch_uploads`] (a [`Stream`](futures_util::Stream) that reconnects and
//!   resumes by itself): what became of the uploads of tracked signatures.
//! - [`bff`]: the JSON bodies an app-facing backend sends to Tencent's upload SDKs.
//!
//! ```no_run
//! use std::time::Duration;
//! use vod_signer_client::{BearerToken, Error, IssueRequest, SignerClient};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = SignerClient::builder()
//!     .endpoint("https://signer.internal:50051")
//!     .tls_ca_pem(std::fs::read("/etc/signer/ca.pem")?)
//!     .bearer_token(BearerToken::new(std::env::var("SIGNER_TOKEN")?)?)
//!     .build()?;
//!
//! let request = IssueRequest::for_user("u-1")
//!     .procedure("LongVideoPreset")
//!     .validity(Duration::from_secs(600))
//!     .one_time();
//! match client.issue(request).await {
//!     Ok(issued) => println!("{}", issued.signature.expose_secret()),
//!     Err(Error::QuotaExhausted { retry_after, .. }) => println!("later: {retry_after:?}"),
//!     Err(other) => eprintln!("{other}"),
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod bff;
mod client;
mod error;
mod request;
mod response;
mod retry;
mod token;
mod tracker;
mod uploads;

// The README's examples run as doctests, so the crate's front page cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The generated `vod.signer.v1` messages and raw tonic client, for what the typed API does not
/// cover. Prefer [`SignerClient`]: it adds authentication, deadlines and retries.
#[allow(missing_docs)]
pub mod proto {
    tonic::include_proto!("vod.signer.v1");
}

pub use client::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_DEADLINE, MAX_BATCH, MAX_DEADLINE, SignerClient,
    SignerClientBuilder,
};
pub use error::{Error, FieldViolation};
pub use request::{IssueRequest, MAX_VALIDITY, TaskNotifyMode, UploadParams};
pub use response::{
    IssuedSignature, Signature, SignatureContents, Verification, VerifyFailure, unix_seconds,
};
pub use retry::RetryPolicy;
pub use token::{BearerToken, TokenError, TokenProvider};
pub use uploads::{
    Upload, UploadChange, UploadFailure, UploadPage, UploadState, UploadedFile, WatchFrom,
};
