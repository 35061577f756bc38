//! VOD event notifications: parsing their bodies and checking the `SignKey` callback
//! authentication.
//!
//! Pure: no I/O, no async runtime, no transport. The HTTP receiver and the pull loop adapt it;
//! the tracker (`crate::tracking`) stores and applies what it parses.

mod auth;
mod dedupe;
mod locate;
mod notification;

pub use auth::{
    CallbackAuthError, MAX_T_AHEAD_SECONDS, SignKey, SignKeyError, T_SKEW_SECONDS, verify_sign,
};
pub use dedupe::dedupe_key;
pub use locate::{SignLocation, SignedPair, locate_sign};
pub use notification::{
    EventParseError, FileUpload, Notification, ProcedureChange, ProcedureStatus, Subtask,
    SubtaskStatus, parse,
};
