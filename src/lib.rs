//! vod-signer: issues and verifies Tencent Cloud VOD client-upload signatures.
//!
//! - [`signature`]: the pure signing core (no I/O).
//! - [`cli`]: the `vod-signer` command line.

pub mod cli;
pub mod signature;
