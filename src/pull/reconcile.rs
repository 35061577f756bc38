//! Reconciliation: some events never come (a task flow whose notify mode is `None`, an app
//! left in the wrong mode, an outage longer than the queue's 4 days). A tracked upload whose
//! procedure has had no final event for `reconcile_after_seconds` is looked up with
//! `DescribeTaskDetail`, and a finished task is applied as if its event had arrived, through
//! the same intake, marked `Reconciled`.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::backoff::{Backoff, BackoffPolicy};
use super::unix_now;
use crate::metrics::{Metrics, PullMetrics};
use crate::tracking::{Delivery, PendingProcedure, Receipt, ReceivedEvent, Tracker};
use crate::vod_api::{ApiClient, ApiError, ErrorClass};

/// Uploads checked per pass; the rest wait for the next pass (DescribeTaskDetail allows
/// about 100 calls/s, and a pass should not starve the consumer of that budget).
const UPLOADS_PER_PASS: u32 = 50;
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The periodic reconciliation job of one replica.
#[derive(Clone)]
pub struct Reconciler {
    api: ApiClient,
    tracker: Tracker,
    metrics: Arc<Metrics>,
    after_seconds: NonZeroU32,
    backoff: BackoffPolicy,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub checked: u32,
    pub fixed: u32,
}

impl Reconciler {
    pub fn new(
        api: ApiClient,
        tracker: Tracker,
        metrics: Arc<Metrics>,
        after_seconds: NonZeroU32,
        backoff: BackoffPolicy,
    ) -> Self {
        Reconciler {
            api,
            tracker,
            metrics,
            after_seconds,
            backoff,
        }
    }

    fn metrics(&self) -> &PullMetrics {
        self.metrics.pull()
    }

    /// How often a pass runs: often enough that an upload is fixed soon after it becomes due,
    /// rarely enough that a long threshold does not mean constant queries.
    pub fn interval(&self) -> Duration {
        (Duration::from_secs(u64::from(self.after_seconds.get())) / 2)
            .clamp(Duration::from_millis(250), Duration::from_secs(60))
    }

    /// Runs passes until `shutdown` resolves, which also interrupts a pass in progress.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let mut backoff = Backoff::new(self.backoff);
        let mut wait = self.interval();
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
            // A pass is cut short by the drain too: what it has not applied yet is still due,
            // and is checked by whichever replica passes next.
            let passed = tokio::select! {
                () = &mut shutdown => return,
                passed = self.pass() => passed,
            };
            wait = match passed {
                Ok(_) => {
                    backoff.reset();
                    self.interval()
                }
                Err(PassError::Api(error)) => backoff.after(Some(&error)).max(self.interval()),
                Err(PassError::Store(error)) => {
                    tracing::warn!(error = %error, "reconciliation cannot read the upload store");
                    backoff.after(None).max(self.interval())
                }
            };
        }
    }

    /// Checks the uploads that are due, once. Stops at the first failed API call (the rest
    /// are due again at the next pass).
    pub async fn pass(&self) -> Result<PassReport, PassError> {
        let due = self
            .tracker
            .awaiting_procedure(self.after_seconds.get(), UPLOADS_PER_PASS)
            .await
            .map_err(|e| PassError::Store(e.to_string()))?;
        let mut report = PassReport::default();
        for pending in due {
            self.metrics().reconciliation_checked();
            report.checked += 1;
            let detail = match self
                .api
                .describe_task_detail(&pending.task_id, DESCRIBE_TIMEOUT)
                .await
            {
                Ok(detail) => detail,
                Err(error) => {
                    self.metrics()
                        .api_error("DescribeTaskDetail", error.class());
                    if error.class() == ErrorClass::ResourceNotFound {
                        tracing::warn!(
                            upload_id = %pending.upload_id,
                            task_id = pending.task_id,
                            "reconciliation: VOD does not know this task"
                        );
                        continue;
                    }
                    tracing::warn!(error = %error, "reconciliation: DescribeTaskDetail failed");
                    return Err(PassError::Api(error));
                }
            };
            let Some(task) = detail.procedure_task else {
                continue;
            };
            if task.get("Status").and_then(Value::as_str) != Some("FINISH") {
                // Still running at VOD: nothing to fix yet; it is due again next pass.
                continue;
            }
            match self.apply(&pending, task).await {
                Ok(Receipt::Applied) => {
                    self.metrics().reconciliation_fixed();
                    report.fixed += 1;
                    tracing::info!(
                        upload_id = %pending.upload_id,
                        task_id = pending.task_id,
                        "reconciliation applied the final state of a task whose event never came"
                    );
                }
                Ok(_) => {}
                Err(error) => return Err(PassError::Store(error)),
            }
        }
        Ok(report)
    }

    async fn apply(
        &self,
        pending: &PendingProcedure,
        mut task: Map<String, Value>,
    ) -> Result<Receipt, String> {
        // DescribeTaskDetail's ProcedureTask is the event's payload; it may lack the session
        // context, so name the upload it was looked up for.
        let has_context = task
            .get("SessionContext")
            .and_then(Value::as_str)
            .is_some_and(|c| !c.is_empty());
        if !has_context {
            task.insert(
                "SessionContext".to_owned(),
                Value::from(pending.upload_id.to_string()),
            );
        }
        if task.get("FileId").is_none_or(Value::is_null) {
            task.insert("FileId".to_owned(), Value::from(pending.file_id.as_str()));
        }
        let mut body = Map::new();
        body.insert("EventType".to_owned(), Value::from("ProcedureStateChanged"));
        body.insert("ProcedureStateChangeEvent".to_owned(), Value::Object(task));
        self.tracker
            .receive(ReceivedEvent {
                raw: serde_json::to_vec(&body).expect("a JSON map always serializes"),
                received_at: unix_now(),
                delivery: Delivery::Reconciled,
            })
            .await
            .map_err(|e| e.to_string())
    }
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Api(ApiError),
    #[error("upload store: {0}")]
    Store(String),
}
