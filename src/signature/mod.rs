//! The signing core: Tencent Cloud VOD client-upload signatures, made and checked.
//!
//! `signature = base64(HMAC-SHA1(SecretKey, original) ‖ original)`, where `original` is a URL
//! query string of the upload's parameters. This module is pure computation (no network, no
//! files, no async runtime) so the CLI, the gRPC service, benchmarks and tests share it as is.
//!
//! ```
//! use vod_signer::signature::*;
//!
//! let key = SigningKey::new(
//!     SecretId::new("AKIDexample").unwrap(),
//!     &SecretKey::from_string("not-a-real-key".into()).unwrap(),
//! );
//! let ring = KeyRing::single(key);
//! let request = SignRequest::new(Validity::from_secs(600).unwrap(), UploadParams::default()).unwrap();
//! let issued = ring.active().sign(&request, 1_700_000_000, Random(7)).unwrap();
//! let params = ring
//!     .verify(issued.signature.as_str(), 1_700_000_100, VerifyOptions::default())
//!     .unwrap();
//! assert_eq!(params.random, Random(7));
//! ```

mod decode;
mod encode;
mod error;
mod key_ring;
mod params;
mod query;
mod random;
mod secret;
mod sign;
mod verify;

pub(crate) use error::{ParamError, VerifyError};
pub use error::{ParamName, VerifyFailure};
pub(crate) use key_ring::KeyRingError;
pub use key_ring::{KeyRing, SigningKey};
pub use params::{
    MAX_PROCEDURE_CHARS, MAX_SESSION_CONTEXT_CHARS, MAX_SOURCE_CONTEXT_CHARS, MAX_VALIDITY_SECONDS,
    Procedure, Random, SecretId, SessionContext, SignRequest, SignedParams, SourceContext,
    StorageRegion, TaskNotifyMode, TaskPriority, UploadParams, Validity,
};
pub(crate) use random::{InstanceId, InstanceSlots, MAX_INSTANCE_ID, UniqueRandom};
pub use secret::SecretKey;
pub use sign::{IssuedSignature, Signature, fingerprint};
pub use verify::{DEFAULT_CLOCK_SKEW_SECONDS, VerifyOptions};
