//! VOD event notifications: parsing their bodies and checking the `SignKey` callback
//! authentication.
//!
//! Pure: no I/O, no async runtime, no transport. The HTTP receiver and the pull loop adapt it;
//! the tracker (`crate::tracking`) stores and applies what it parses.

mod auth;
mod dedupe;
mod locate;
mod notification;

pub use auth::{CallbackAuthError, SignKey, verify_sign};
pub use dedupe::dedupe_key;
pub(crate) use locate::outside_body as locate_sign_outside_body;
pub use locate::{SignLocation, SignedPair, locate_sign};
pub use notification::{EventParseError, Notification, ProcedureStatus, SubtaskStatus, parse};
pub(crate) use notification::{FileUpload, ProcedureChange, parse_body, parse_keyed};
