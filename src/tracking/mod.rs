//! Upload tracking: a record per issued signature, the VOD events applied to it, and the
//! feed of changes that callers watch.
//!
//! - [`UploadId`]: the id that travels as the signature's `sourceContext`/`sessionContext`.
//! - [`state`]: the pure derivation of an upload's state from the set of its events.
//! - [`Tracker`]: the façade the receiver, the gRPC service and the pull loop call; it owns
//!   a store (`store`: SQLite or PostgreSQL), group-commits received events, and runs the
//!   expiry sweeper and retention in the background.

mod cursor;
mod error;
mod model;
pub mod state;
mod store;
mod tracker;
mod upload_id;
mod watch;

pub use error::TrackingError;
pub(crate) use model::PendingProcedure;
pub use model::{
    Delivery, FileState, NewUpload, Receipt, ReceivedEvent, Upload, UploadChange, UploadPage,
    UploadState, UploadedFile, WatchStart,
};
pub(crate) use tracker::MAX_PAGE_SIZE;
pub use tracker::Tracker;
pub use upload_id::UploadId;
