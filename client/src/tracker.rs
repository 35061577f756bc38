//! Calls to the `UploadTracker` service: what became of the uploads a caller's tracked
//! signatures allowed.

use std::time::Duration;

use futures_util::Stream;
use futures_util::stream;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::client::SignerClient;
use crate::error::Error;
use crate::proto;
use crate::proto::upload_tracker_client::UploadTrackerClient;
use crate::uploads::{Upload, UploadChange, UploadPage, WatchFrom};

impl SignerClient {
    /// The upload record `upload_id` names (from
    /// [`IssuedSignature::upload_id`](crate::IssuedSignature::upload_id)). Another caller's
    /// or an unknown id is [`Error::Other`] with code `NotFound`.
    ///
    /// ```no_run
    /// # async fn run(client: vod_signer_client::SignerClient) -> Result<(), vod_signer_client::Error> {
    /// let upload = client.get_upload("u1AbC").await?;
    /// println!("{} is {}", upload.upload_id, upload.state.as_str());
    /// # Ok(()) }
    /// ```
    pub async fn get_upload(&self, upload_id: &str) -> Result<Upload, Error> {
        let message = proto::GetUploadRequest {
            upload_id: upload_id.to_owned(),
        };
        let upload = self
            .call(
                message,
                self.default_deadline(),
                |channel, request| async move {
                    UploadTrackerClient::new(channel).get_upload(request).await
                },
            )
            .await?;
        Ok(Upload::from_proto(upload))
    }

    /// One page of `user_id`'s uploads issued by this caller, newest first. `page_size` 0 lets
    /// the service choose; pass the previous page's `next_page_token` for the next page.
    ///
    /// ```no_run
    /// # async fn run(client: vod_signer_client::SignerClient) -> Result<(), vod_signer_client::Error> {
    /// let mut token = None;
    /// loop {
    ///     let page = client.list_uploads("alice", 100, token.as_deref()).await?;
    ///     for upload in &page.uploads {
    ///         println!("{} {}", upload.upload_id, upload.state.as_str());
    ///     }
    ///     match page.next_page_token {
    ///         Some(next) => token = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list_uploads(
        &self,
        user_id: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<UploadPage, Error> {
        let message = proto::ListUploadsRequest {
            user_id: user_id.to_owned(),
            page_size,
            page_token: page_token.unwrap_or_default().to_owned(),
        };
        let page = self
            .call(
                message,
                self.default_deadline(),
                |channel, request| async move {
                    UploadTrackerClient::new(channel)
                        .list_uploads(request)
                        .await
                },
            )
            .await?;
        Ok(UploadPage::from_proto(page))
    }

    /// Every change to this caller's uploads (only `user_id`'s, when given), as it happens.
    ///
    /// The stream reconnects by itself when the connection or the server goes away, waiting
    /// between attempts as the client's [`RetryPolicy`](crate::RetryPolicy) says, and resumes
    /// exactly after the last change it delivered, so nothing is lost or repeated. Before the
    /// first change arrives there is no position to resume from: a reconnect then starts again
    /// at the current end ([`WatchFrom::Now`]) or at the cursor given. The stream ends after
    /// yielding an error that retrying cannot fix (e.g. `PermissionDenied`, or `OutOfRange`
    /// for a cursor older than the service's retention), or when the retry policy's
    /// `max_attempts` consecutive attempts failed.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// use vod_signer_client::WatchFrom;
    ///
    /// # async fn run(client: vod_signer_client::SignerClient) -> Result<(), vod_signer_client::Error> {
    /// let changes = client.watch_uploads(WatchFrom::Now, None);
    /// let mut changes = std::pin::pin!(changes);
    /// while let Some(change) = changes.next().await {
    ///     let change = change?;
    ///     println!("{} -> {}", change.upload.upload_id, change.upload.state.as_str());
    ///     // Persist `change.cursor` to resume with `WatchFrom::After` after a restart.
    /// }
    /// # Ok(()) }
    /// ```
    pub fn watch_uploads(
        &self,
        from: WatchFrom,
        user_id: Option<String>,
    ) -> impl Stream<Item = Result<UploadChange, Error>> + Send + 'static {
        let state = Watch {
            client: self.clone(),
            after_cursor: match from {
                WatchFrom::Now => String::new(),
                WatchFrom::After(cursor) => cursor,
            },
            user_id: user_id.unwrap_or_default(),
            open: None,
            failed_attempts: 0,
            done: false,
        };
        stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
    }
}

/// The state of one watch between items.
struct Watch {
    client: SignerClient,
    /// The last delivered change's cursor (or the starting one); empty: "from now".
    after_cursor: String,
    user_id: String,
    open: Option<Streaming<proto::UploadChange>>,
    /// Attempts that failed since the last change was delivered.
    failed_attempts: u32,
    done: bool,
}

impl Watch {
    /// The next item, or `None` once the stream is over.
    async fn next(&mut self) -> Option<Result<UploadChange, Error>> {
        if self.done {
            return None;
        }
        loop {
            let Some(open) = self.open.as_mut() else {
                match self.connect().await {
                    Ok(streaming) => self.open = Some(streaming),
                    Err(error) => {
                        if let Some(stop) = self.after_failure(error).await {
                            return Some(Err(stop));
                        }
                    }
                }
                continue;
            };
            match open.message().await {
                Ok(Some(change)) => {
                    self.failed_attempts = 0;
                    self.after_cursor.clone_from(&change.cursor);
                    return Some(Ok(UploadChange::from_proto(change)));
                }
                // The server ended the stream (it is shutting down): go to another replica.
                Ok(None) => {
                    self.open = None;
                    let error = Error::Unavailable {
                        message: "the service ended the watch".to_owned(),
                    };
                    if let Some(stop) = self.after_failure(error).await {
                        return Some(Err(stop));
                    }
                }
                Err(status) => {
                    self.open = None;
                    let error = match Error::from_status(status) {
                        // A stream that broke halfway (connection reset, server killed) is a
                        // lost connection, whatever HTTP/2 error tonic reports it as.
                        Error::Transport { message } => Error::Unavailable { message },
                        other => other,
                    };
                    if let Some(stop) = self.after_failure(error).await {
                        return Some(Err(stop));
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<Streaming<proto::UploadChange>, Error> {
        let request = self.client.authorized(proto::WatchUploadsRequest {
            after_cursor: self.after_cursor.clone(),
            user_id: self.user_id.clone(),
        })?;
        let channel: Channel = self.client.next_channel();
        // Only the opening is bounded: the stream itself is meant to stay open.
        let mut tracker = UploadTrackerClient::new(channel);
        let opening = tracker.watch_uploads(request);
        match tokio::time::timeout(self.client.default_deadline(), opening).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(status)),
            Err(_) => Err(Error::Unavailable {
                message: format!(
                    "the watch did not open within {:?}",
                    self.client.default_deadline()
                ),
            }),
        }
    }

    /// Waits before the next attempt, or returns the error that ends the stream.
    async fn after_failure(&mut self, error: Error) -> Option<Error> {
        self.failed_attempts += 1;
        let policy = self.client.retry_policy();
        if !error.is_retryable() || !policy.allows_attempt(self.failed_attempts + 1) {
            self.done = true;
            return Some(error);
        }
        let wait: Duration = policy.backoff(self.failed_attempts);
        tokio::time::sleep(wait).await;
        None
    }
}
