//! Reliable (PULL) mode against the VOD API stand-in (`tests/it/support/pull/standin.rs`): the
//! consumer stores before it confirms, survives restarts, shares a queue with another
//! consumer, and copes with failed confirms, timed-out polls and refused credentials;
//! reconciliation moves stuck uploads to READY or FAILED.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::pull::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::oneshot;
use vod_signer::metrics::Metrics;
use vod_signer::pull::{BackoffPolicy, Consumer, PullTiming, Reconciler};
use vod_signer::tracking::{Tracker, UploadId, UploadState, WatchStart};
use vod_signer::vod_api::ApiClient;

/// A stand-in that ends an empty poll after 200 ms and takes confirms within `confirm_window`.
async fn standin(confirm_window: Duration) -> StandIn {
    StandIn::start(StandInTiming {
        long_poll: Duration::from_millis(200),
        confirm_window,
    })
    .await
}

/// A consumer task and the means to stop it gracefully or kill it.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts a consumer of `api`'s queue into `tracker`.
    fn consume(
        api: ApiClient,
        tracker: &Tracker,
        metrics: &Arc<Metrics>,
        timing: PullTiming,
    ) -> Running {
        Running::start(Consumer::new(api, tracker.clone(), metrics.clone(), timing))
    }

    fn start(consumer: Consumer) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(consumer.run(async move {
            let _ = stopped.await;
        }));
        Running {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the consumer stops promptly")
            .expect("the consumer does not panic");
    }

    /// A crash: the task is dropped wherever it is, without confirming anything.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Collects the tracker's changes for [`CALLER`] from now on, per upload id.
struct ChangeLog {
    changes: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ChangeLog {
    async fn start(tracker: &Tracker) -> ChangeLog {
        let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = changes.clone();
        let mut stream = Box::pin(tracker.watch(CALLER, WatchStart::Now, None).await.unwrap());
        let task = tokio::spawn(async move {
            while let Some(change) = stream.next().await {
                let change = change.expect("the watch keeps working");
                sink.lock()
                    .unwrap()
                    .push((change.upload.upload_id.to_string(), change.event_type));
            }
        });
        ChangeLog { changes, task }
    }

    fn per_upload(&self) -> HashMap<String, Vec<String>> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (id, event_type) in self.changes.lock().unwrap().iter() {
            map.entry(id.clone()).or_default().push(event_type.clone());
        }
        map
    }

    fn len(&self) -> usize {
        self.changes.lock().unwrap().len()
    }
}

impl Drop for ChangeLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn queue_uploads(standin: &StandIn, tracker: &Tracker, n: usize) -> Vec<UploadId> {
    let ids = issue(tracker, n, None).await;
    for (i, id) in ids.iter().enumerate() {
        standin.push_event(new_file_upload(id, &format!("52858907842735{i:05}"), ""));
    }
    ids
}

async fn assert_each_uploaded_once(tracker: &Tracker, ids: &[UploadId], log: &ChangeLog) {
    // The watch may lag its commits a little; wait for every change to show.
    eventually(Duration::from_secs(10), "a change per upload", || {
        log.len() >= ids.len()
    })
    .await;
    // Give a doubled change the chance to show too before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let per_upload = log.per_upload();
    for id in ids {
        let upload = tracker
            .get_upload(CALLER, &id.to_string())
            .await
            .unwrap()
            .expect("the upload exists");
        assert_eq!(upload.state, UploadState::Ready, "{id}: nothing lost");
        assert_eq!(
            per_upload.get(&id.to_string()).map(Vec::len),
            Some(1),
            "{id}: exactly one change, nothing doubled"
        );
    }
    assert_eq!(log.len(), ids.len(), "no change for anything else");
}

fn metric(metrics: &Metrics, line_prefix: &str) -> u64 {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_restart_mid_stream_loses_nothing_and_doubles_nothing() {
    let standin = standin(Duration::from_millis(800)).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let log = ChangeLog::start(&tracker).await;
    let ids = queue_uploads(&standin, &tracker, 120).await;
    let metrics = Arc::new(Metrics::new());
    let api = api_client(&standin.endpoint(), STANDIN_SECRET_KEY);
    let timing = PullTiming {
        confirm_window: Duration::from_millis(600),
        ..fast_timing()
    };

    // First run: killed mid-stream, wherever it is (possibly between store and confirm).
    let first = Running::consume(api.clone(), &tracker, &metrics, timing);
    eventually(Duration::from_secs(10), "some events confirmed", || {
        standin.confirmed().len() >= 20
    })
    .await;
    first.kill().await;
    assert!(standin.unconfirmed() > 0, "the crash came mid-stream");
    // Let the watch catch up with the first run's commits, then keep what it saw.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_restart = log.per_upload();
    drop(log);
    drop(tracker);

    // Second run, on the tracker reopened from its file: a restarted process.
    let tracker = dir.open().await;
    let log = ChangeLog::start(&tracker).await;
    let second = Running::consume(api.clone(), &tracker, &metrics, timing);
    queue_drained(&standin, Duration::from_secs(20)).await;
    second.stop().await;

    let mut confirmed = standin.confirmed();
    confirmed.sort_unstable();
    confirmed.dedup();
    assert_eq!(confirmed.len(), ids.len(), "every event confirmed once");
    eventually(Duration::from_secs(10), "a change per upload", || {
        before_restart.values().map(Vec::len).sum::<usize>() + log.len() >= ids.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_restart = log.per_upload();
    for id in &ids {
        let upload = tracker
            .get_upload(CALLER, &id.to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(upload.state, UploadState::Ready, "{id}: nothing lost");
        let key = id.to_string();
        let changes = before_restart.get(&key).map_or(0, Vec::len)
            + after_restart.get(&key).map_or(0, Vec::len);
        assert_eq!(
            changes, 1,
            "{id}: one change across the restart, nothing doubled"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_confirms_everything_it_stored() {
    let standin = StandIn::start(StandInTiming::default()).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let ids = queue_uploads(&standin, &tracker, 64).await;
    let metrics = Arc::new(Metrics::new());
    let running = Running::consume(
        api_client(&standin.endpoint(), STANDIN_SECRET_KEY),
        &tracker,
        &metrics,
        fast_timing(),
    );
    eventually(Duration::from_secs(10), "a first batch confirmed", || {
        !standin.confirmed().is_empty()
    })
    .await;
    running.stop().await;
    // Every event the consumer received was stored and confirmed before it returned. A poll
    // cut short by the stop may have been answered after the consumer stopped listening:
    // those events (one poll's worth at most) were never received, and VOD redelivers them.
    let received = metric(&metrics, "vod_signer_events_pulled_total");
    assert!(received > 0);
    assert_eq!(received as usize, standin.confirmed().len());
    assert!(
        standin.in_flight() <= 16,
        "{} in flight",
        standin.in_flight()
    );
    assert!(standin.confirmed().len() <= ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_one_queue_without_duplicate_changes() {
    let standin = standin(Duration::from_millis(700)).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let log = ChangeLog::start(&tracker).await;
    let ids = queue_uploads(&standin, &tracker, 100).await;
    // Two confirms fail, and the one after them arrives past the queue's window, so some
    // events come back, possibly to the other consumer. Failures alone are not enough: a fast
    // machine retries them to success within the window, and nothing comes back.
    standin.inject("ConfirmEvents", Fault::Error("InternalError"), 2);
    standin.inject("ConfirmEvents", Fault::Delay(Duration::from_millis(900)), 1);
    let metrics = Arc::new(Metrics::new());
    let timing = PullTiming {
        confirm_window: Duration::from_millis(50),
        ..fast_timing()
    };
    let api = api_client(&standin.endpoint(), STANDIN_SECRET_KEY);
    let a = Running::consume(api.clone(), &tracker, &metrics, timing);
    let b = Running::consume(api.clone(), &tracker, &metrics, timing);
    queue_drained(&standin, Duration::from_secs(20)).await;
    a.stop().await;
    b.stop().await;

    assert_each_uploaded_once(&tracker, &ids, &log).await;
    assert!(
        standin.deliveries() > ids.len() as u64,
        "some events were delivered twice"
    );
    assert!(metric(&metrics, "vod_signer_events_pulled_duplicates_total") >= 1);
    let regions: std::collections::HashSet<_> = standin
        .seen_action("PullEvents")
        .iter()
        .map(|s| s.region.clone())
        .collect();
    assert_eq!(
        regions.into_iter().collect::<Vec<_>>(),
        [Some("ap-guangzhou".to_owned())],
        "X-TC-Region is sent when configured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_late_confirm_means_redelivery_then_a_duplicate_not_a_loss() {
    let standin = standin(Duration::from_millis(400)).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let log = ChangeLog::start(&tracker).await;
    let ids = queue_uploads(&standin, &tracker, 10).await;
    // The first confirm fails outright; the second arrives after the window (error 4000).
    standin.inject("ConfirmEvents", Fault::Error("InternalError"), 1);
    standin.inject("ConfirmEvents", Fault::Delay(Duration::from_millis(600)), 1);
    let metrics = Arc::new(Metrics::new());
    let running = Running::consume(
        api_client(&standin.endpoint(), STANDIN_SECRET_KEY),
        &tracker,
        &metrics,
        fast_timing(),
    );
    queue_drained(&standin, Duration::from_secs(20)).await;
    running.stop().await;

    assert_each_uploaded_once(&tracker, &ids, &log).await;
    assert!(
        standin
            .seen_action("ConfirmEvents")
            .iter()
            .any(|s| s.error.as_deref() == Some("InvalidParameterValue")),
        "a confirm came too late and got error 4000"
    );
    assert!(metric(&metrics, "vod_signer_events_pulled_duplicates_total") >= 10);
    assert!(
        metrics.encode().contains(
            r#"vod_signer_vod_api_errors_total{action="ConfirmEvents",code="InvalidParameter"} 1"#
        ),
        "{}",
        metrics.encode()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_that_times_out_is_retried() {
    let standin = StandIn::start(StandInTiming::default()).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let log = ChangeLog::start(&tracker).await;
    standin.inject("PullEvents", Fault::Hang(Duration::from_secs(5)), 1);
    let ids = queue_uploads(&standin, &tracker, 5).await;
    let metrics = Arc::new(Metrics::new());
    let timing = PullTiming {
        pull_timeout: Duration::from_millis(500),
        ..fast_timing()
    };
    let started = Instant::now();
    let running = Running::consume(
        api_client(&standin.endpoint(), STANDIN_SECRET_KEY),
        &tracker,
        &metrics,
        timing,
    );
    queue_drained(&standin, Duration::from_secs(10)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the consumer gave up on the hanging poll instead of waiting for it"
    );
    running.stop().await;
    assert_each_uploaded_once(&tracker, &ids, &log).await;
    assert!(
        metrics
            .encode()
            .contains(r#"vod_signer_vod_api_errors_total{action="PullEvents",code="Timeout"} 1"#)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn refused_credentials_are_logged_clearly_and_retried_slowly() {
    let capture = LogCapture::default();
    let _guard = capture.install();
    let standin = StandIn::start(StandInTiming::default()).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let _ids = queue_uploads(&standin, &tracker, 3).await;
    let metrics = Arc::new(Metrics::new());
    // A wrong SecretKey: the stand-in's own TC3 check refuses every call.
    let wrong_key = "not-the-standin-key";
    let running = Running::consume(
        api_client(&standin.endpoint(), wrong_key),
        &tracker,
        &metrics,
        fast_timing(),
    );
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    running.stop().await;

    let pulls = standin.seen_action("PullEvents");
    assert!(!pulls.is_empty());
    assert!(
        pulls
            .iter()
            .all(|s| s.error.as_deref() == Some("AuthFailure.SignatureFailure"))
    );
    // auth_failure is 500 ms (jittered down to no less than 250 ms): at most ~8 in 2 s,
    // where a tight loop would have made hundreds.
    assert!(pulls.len() <= 9, "{} pulls in 2 s", pulls.len());
    assert_eq!(standin.unconfirmed(), 3, "nothing was taken");
    let logs = capture.text();
    assert!(
        logs.contains("VOD refused the API credentials"),
        "a clear log line: {logs}"
    );
    assert!(logs.contains("AuthFailure.SignatureFailure"));
    assert!(
        !logs.contains(wrong_key),
        "the SecretKey never reaches a log line"
    );
    assert!(
        metrics
            .encode()
            .contains(r#"vod_signer_vod_api_errors_total{action="PullEvents",code="AuthFailure"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_limit_exceeded_slows_the_consumer_down() {
    let standin = StandIn::start(StandInTiming::default()).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let ids = queue_uploads(&standin, &tracker, 3).await;
    standin.inject("PullEvents", Fault::Error("RequestLimitExceeded"), 3);
    let metrics = Arc::new(Metrics::new());
    let timing = PullTiming {
        backoff: BackoffPolicy {
            rate_limited: Duration::from_millis(300),
            ..fast_timing().backoff
        },
        ..fast_timing()
    };
    let running = Running::consume(
        api_client(&standin.endpoint(), STANDIN_SECRET_KEY),
        &tracker,
        &metrics,
        timing,
    );
    queue_drained(&standin, Duration::from_secs(10)).await;
    running.stop().await;
    let pulls = standin.seen_action("PullEvents");
    let refused: Vec<_> = pulls
        .iter()
        .filter(|s| s.error.as_deref() == Some("RequestLimitExceeded"))
        .collect();
    assert_eq!(refused.len(), 3);
    for pair in pulls.windows(2).take(3) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(150),
            "after RequestLimitExceeded the next call waited only {gap:?}"
        );
    }
    assert_eq!(standin.confirmed().len(), ids.len());
}

async fn stuck_upload(
    standin: &StandIn,
    tracker: &Tracker,
    file_id: &str,
    task_id: &str,
) -> UploadId {
    let id = issue(tracker, 1, Some("review")).await.remove(0);
    let receipt = tracker
        .receive(vod_signer::tracking::ReceivedEvent {
            raw: serde_json::to_vec(&new_file_upload(&id, file_id, task_id)).unwrap(),
            received_at: unix_now(),
            delivery: vod_signer::tracking::Delivery::Push,
        })
        .await
        .unwrap();
    assert_eq!(receipt, vod_signer::tracking::Receipt::Applied);
    let upload = tracker
        .get_upload(CALLER, &id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        upload.state,
        UploadState::Uploaded,
        "waiting for its procedure"
    );
    let _ = standin;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_moves_stuck_uploads_to_ready_or_failed() {
    let standin = StandIn::start(StandInTiming::default()).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let ready = stuck_upload(&standin, &tracker, "5285890784246860001", "task-ready").await;
    let failed = stuck_upload(&standin, &tracker, "5285890784246860002", "task-failed").await;
    let running = stuck_upload(&standin, &tracker, "5285890784246860003", "task-running").await;

    standin.set_task(
        "task-ready",
        json!({"TaskType": "Procedure", "Status": "FINISH",
               "ProcedureTask": finished_procedure_task("5285890784246860001", "task-ready")}),
    );
    let mut failing = finished_procedure_task("5285890784246860002", "task-failed");
    failing["MediaProcessResultSet"][0]["TranscodeTask"]["Status"] = json!("FAIL");
    failing["MediaProcessResultSet"][0]["TranscodeTask"]["ErrCodeExt"] =
        json!("InternalError.TranscodeFailed");
    failing["MediaProcessResultSet"][0]["TranscodeTask"]["Message"] = json!("transcode failed");
    standin.set_task(
        "task-failed",
        json!({"TaskType": "Procedure", "Status": "FINISH", "ProcedureTask": failing}),
    );
    let mut processing = finished_procedure_task("5285890784246860003", "task-running");
    processing["Status"] = json!("PROCESSING");
    standin.set_task(
        "task-running",
        json!({"TaskType": "Procedure", "Status": "PROCESSING", "ProcedureTask": processing}),
    );

    let log = ChangeLog::start(&tracker).await;
    let metrics = Arc::new(Metrics::new());
    let reconciler = Reconciler::new(
        api_client(&standin.endpoint(), STANDIN_SECRET_KEY),
        tracker.clone(),
        metrics.clone(),
        NonZeroU32::new(1).unwrap(),
        fast_timing().backoff,
    );
    // Not due yet: younger than reconcile_after_seconds.
    let early = reconciler.pass().await.unwrap();
    assert_eq!(early.checked, 0, "nothing is checked before it is due");

    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let report = reconciler.pass().await.unwrap();
    assert_eq!(report.checked, 3);
    assert_eq!(report.fixed, 2);

    let get = |id: UploadId| {
        let tracker = tracker.clone();
        async move {
            tracker
                .get_upload(CALLER, &id.to_string())
                .await
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(get(ready.clone()).await.state, UploadState::Ready);
    let failed_upload = get(failed.clone()).await;
    assert_eq!(failed_upload.state, UploadState::Failed);
    let failure = failed_upload.failure.expect("the failing subtask is named");
    assert_eq!(failure.subtask_type, "Transcode");
    assert_eq!(failure.err_code_ext, "InternalError.TranscodeFailed");
    assert_eq!(get(running.clone()).await.state, UploadState::Uploaded);

    eventually(Duration::from_secs(5), "two reconciled changes", || {
        log.len() >= 2
    })
    .await;
    let per_upload = log.per_upload();
    assert_eq!(per_upload[&ready.to_string()], ["Reconciled"]);
    assert_eq!(per_upload[&failed.to_string()], ["Reconciled"]);

    // A second pass fixes nothing more: the fixed uploads are no longer due.
    let again = reconciler.pass().await.unwrap();
    assert_eq!(again.fixed, 0);
    assert_eq!(
        again.checked, 1,
        "only the still-running task is checked again"
    );
    assert_eq!(metric(&metrics, "vod_signer_reconciliation_fixes_total"), 2);
    assert_eq!(
        metric(&metrics, "vod_signer_reconciliation_checks_total"),
        3 + 1
    );
}

/// `vod_signer_events_oldest_unconfirmed_age_seconds`: it rises while pulled events wait for
/// their confirm, and returns to 0 once nothing is owed, also after a batch was handed back
/// to VOD by failed confirms and came back (it used to keep growing for ever after that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_unconfirmed_age_rises_while_owed_and_returns_to_zero() {
    const AGE: &str = "vod_signer_events_oldest_unconfirmed_age_seconds";
    let standin = standin(Duration::from_secs(4)).await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    let metrics = Arc::new(Metrics::new());
    let timing = PullTiming {
        confirm_timeout: Duration::from_secs(3),
        confirm_window: Duration::from_millis(3_500),
        ..fast_timing()
    };
    let consumer = Running::consume(
        api_client(&standin.endpoint(), STANDIN_SECRET_KEY),
        &tracker,
        &metrics,
        timing,
    );

    // A confirm that takes 2.5 s: the age shows it while the consumer keeps polling.
    standin.inject(
        "ConfirmEvents",
        Fault::Delay(Duration::from_millis(2_500)),
        1,
    );
    let first = queue_uploads(&standin, &tracker, 3).await;
    eventually(Duration::from_secs(5), "an age of 1 s or more", || {
        metric(&metrics, AGE) >= 1
    })
    .await;
    eventually(Duration::from_secs(10), "the slow confirm done", || {
        standin.confirmed().len() == first.len()
    })
    .await;
    eventually(Duration::from_secs(2), "the age back to 0", || {
        metric(&metrics, AGE) == 0
    })
    .await;

    // Confirms that fail until the consumer's window has passed: the batch is handed back,
    // VOD delivers it again after its own window, and the second delivery is confirmed.
    standin.inject("ConfirmEvents", Fault::Error("InternalError"), 1_000);
    let second = queue_uploads(&standin, &tracker, 3).await;
    eventually(
        Duration::from_secs(5),
        "the first delivery given up",
        || {
            metric(
                &metrics,
                "vod_signer_vod_api_errors_total{action=\"ConfirmEvents\"",
            ) >= 3
        },
    )
    .await;
    tokio::time::sleep(timing.confirm_window).await;
    standin.clear_faults();
    eventually(Duration::from_secs(10), "the redelivery confirmed", || {
        standin.confirmed().len() == first.len() + second.len()
    })
    .await;
    assert!(standin.deliveries() > (first.len() + second.len()) as u64);
    // Nothing is owed any more; the handed-back batch stops counting after its window.
    eventually(
        timing.confirm_window + Duration::from_secs(2),
        "the age back to 0",
        || metric(&metrics, AGE) == 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(metric(&metrics, AGE), 0, "and it stays 0");
    consumer.stop().await;
}
