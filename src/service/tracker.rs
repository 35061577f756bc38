//! The `vod.signer.v1.UploadTracker` gRPC service: a thin adapter over [`Tracker`].
//!
//! Same bearer-token authentication as `UploadSigner`; a caller needs `can_track` and sees
//! only the uploads it issued. Every failure goes through [`ServiceError`] and its one table.

use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::{ConfigSnapshot, ServiceError, Violation, authenticate, upload_convert};
use crate::proto::v1 as pb;
use crate::proto::v1::upload_tracker_server::UploadTracker;
use crate::tracking::{MAX_PAGE_SIZE, Tracker, UploadId, WatchStart};

/// The `UploadTracker` implementation.
pub(crate) struct TrackerService {
    shared: Arc<ArcSwap<ConfigSnapshot>>,
    /// `None` without `[tracking]`: then no caller has `can_track` either.
    tracker: Option<Tracker>,
    /// Turns true when the server starts shutting down; open watches then end.
    draining: watch::Receiver<bool>,
}

impl TrackerService {
    pub(crate) fn new(
        shared: Arc<ArcSwap<ConfigSnapshot>>,
        tracker: Option<Tracker>,
        draining: watch::Receiver<bool>,
    ) -> Self {
        TrackerService {
            shared,
            tracker,
            draining,
        }
    }

    /// The calling caller's name, once it is known to be allowed to track.
    fn authorize(&self, metadata: &MetadataMap) -> Result<(String, &Tracker), ServiceError> {
        let shared = self.shared.load();
        let caller = authenticate(&shared.callers, metadata)?;
        caller.check_can_track()?;
        let tracker = self
            .tracker
            .as_ref()
            .ok_or(ServiceError::TrackingNotConfigured)?;
        Ok((caller.name().to_owned(), tracker))
    }
}

fn required(field: &'static str, value: &str) -> Result<(), ServiceError> {
    if value.is_empty() {
        return Err(ServiceError::InvalidArgument(vec![Violation::new(
            field,
            "is required",
        )]));
    }
    Ok(())
}

type ChangeStream = Pin<Box<dyn Stream<Item = Result<pb::UploadChange, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl UploadTracker for TrackerService {
    async fn get_upload(
        &self,
        request: Request<pb::GetUploadRequest>,
    ) -> Result<Response<pb::Upload>, Status> {
        let (caller, tracker) = self.authorize(request.metadata())?;
        let upload_id = &request.get_ref().upload_id;
        required("upload_id", upload_id)?;
        UploadId::parse(upload_id).map_err(|e| {
            ServiceError::InvalidArgument(vec![Violation::new("upload_id", e.to_string())])
        })?;
        let upload = tracker
            .get_upload(&caller, upload_id)
            .await
            .map_err(ServiceError::from)?
            .ok_or_else(|| ServiceError::UploadNotFound {
                upload_id: upload_id.clone(),
            })?;
        Ok(Response::new(upload_convert::upload(upload)))
    }

    async fn list_uploads(
        &self,
        request: Request<pb::ListUploadsRequest>,
    ) -> Result<Response<pb::ListUploadsResponse>, Status> {
        let (caller, tracker) = self.authorize(request.metadata())?;
        let message = request.get_ref();
        required("user_id", &message.user_id)?;
        // 0 leaves the size to the tracker; too large is refused rather than silently cut.
        let page_size = message.page_size;
        if page_size > MAX_PAGE_SIZE {
            return Err(ServiceError::InvalidArgument(vec![Violation::new(
                "page_size",
                format!("must be at most {MAX_PAGE_SIZE}, got {page_size}"),
            )])
            .into());
        }
        let page_token = Some(message.page_token.as_str()).filter(|t| !t.is_empty());
        let page = tracker
            .list_uploads(&caller, &message.user_id, page_size, page_token)
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(pb::ListUploadsResponse {
            uploads: page
                .uploads
                .into_iter()
                .map(upload_convert::upload)
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    type WatchUploadsStream = ChangeStream;

    async fn watch_uploads(
        &self,
        request: Request<pb::WatchUploadsRequest>,
    ) -> Result<Response<ChangeStream>, Status> {
        let (caller, tracker) = self.authorize(request.metadata())?;
        let message = request.into_inner();
        let start = if message.after_cursor.is_empty() {
            WatchStart::Now
        } else {
            WatchStart::After(message.after_cursor)
        };
        let user_id = Some(message.user_id).filter(|u| !u.is_empty());
        let mut draining = self.draining.clone();
        // A watch would otherwise hold a graceful shutdown for its whole grace period; ended
        // cleanly, its client resumes from its last cursor elsewhere.
        let drained = async move {
            let _ = draining.wait_for(|draining| *draining).await;
        };
        let changes = tracker
            .watch(&caller, start, user_id)
            .await
            .map_err(|e| Status::from(ServiceError::from(e)))?
            .map(|item| {
                item.map(upload_convert::change)
                    .map_err(|e| Status::from(ServiceError::from(e)))
            })
            .take_until(drained);
        Ok(Response::new(Box::pin(changes)))
    }
}
