//! One conformance suite, run against both stores (SQLite in a temp dir, and a real
//! PostgreSQL started for the test), plus the PostgreSQL-only cases: two replicas on one
//! database, and an outage.

#[allow(dead_code)]
use crate::support::postgres;

use std::time::Duration;

use crate::support::events::*;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use vod_signer::config::{PostgresUrl, StoreLocation, TrackingSettings};
use vod_signer::tracking::{
    Delivery, FileState, NewUpload, Receipt, ReceivedEvent, Tracker, TrackingError, UploadChange,
    UploadId, UploadState, WatchStart,
};

const CALLER: &str = "upload-bff";
/// An hour ago, fixed for the whole run: recent enough that the tracker's own expiry and
/// retention tasks (which use the real clock) leave the test's records alone.
static T0: std::sync::LazyLock<i64> = std::sync::LazyLock::new(|| {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now - 3600
});

/// A watch from the start of a fresh store's feed.
fn from_start() -> WatchStart {
    WatchStart::After("c0".into())
}

/// A store that can be opened again (a restart).
trait Backend {
    fn settings(&self) -> TrackingSettings;
    async fn open(&self) -> Tracker {
        Tracker::open(&self.settings())
            .await
            .expect("the store opens")
    }
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    async fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Backend for Sqlite {
    fn settings(&self) -> TrackingSettings {
        TrackingSettings::new(StoreLocation::Sqlite(self.dir.path().join("uploads.db")))
    }
}

struct Postgres {
    server: postgres::PostgresServer,
}

impl Postgres {
    async fn new() -> Postgres {
        let server = tokio::task::spawn_blocking(postgres::PostgresServer::start)
            .await
            .unwrap();
        Postgres { server }
    }
}

impl Backend for Postgres {
    fn settings(&self) -> TrackingSettings {
        TrackingSettings::new(StoreLocation::Postgres(PostgresUrl::new(self.server.url())))
    }
}

fn new_upload(user_id: &str, issued_at: i64, procedure: bool) -> NewUpload {
    NewUpload {
        upload_id: UploadId::generate(),
        caller: CALLER.into(),
        user_id: user_id.into(),
        issued_at,
        expires_at: issued_at + 86_400,
        procedure: procedure.then(|| "review".into()),
        source_context: Some("caller's own".into()),
        session_context: None,
        one_time: !procedure,
    }
}

async fn receive(tracker: &Tracker, body: &Value, received_at: i64) -> Receipt {
    receive_via(tracker, body, received_at, Delivery::Push).await
}

/// Records `upload` as issued, then receives its upload event (file `file_id`, no procedure)
/// at `received_at`.
async fn issue_and_receive(
    tracker: &Tracker,
    upload: &NewUpload,
    file_id: &str,
    received_at: i64,
) -> Receipt {
    tracker.record_issued(vec![upload.clone()]).await.unwrap();
    receive(
        tracker,
        &new_file_upload(upload.upload_id.as_str(), file_id, None),
        received_at,
    )
    .await
}

/// Receives the upload event of each of `uploads` (file `f<index>`, no procedure) at
/// `received_at`, all at once, each on a task of its own; every one must be applied.
async fn receive_all_at_once(tracker: &Tracker, uploads: &[NewUpload], received_at: i64) {
    let mut tasks = Vec::new();
    for (i, upload) in uploads.iter().enumerate() {
        let tracker = tracker.clone();
        let body = new_file_upload(upload.upload_id.as_str(), &format!("f{i}"), None);
        tasks.push(tokio::spawn(async move {
            receive(&tracker, &body, received_at).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Receipt::Applied);
    }
}

async fn receive_via(
    tracker: &Tracker,
    body: &Value,
    received_at: i64,
    delivery: Delivery,
) -> Receipt {
    tracker
        .receive(ReceivedEvent {
            raw: bytes(body),
            received_at,
            delivery,
        })
        .await
        .expect("the event is stored")
}

async fn state_of(tracker: &Tracker, upload: &NewUpload) -> UploadState {
    tracker
        .get_upload(CALLER, upload.upload_id.as_str())
        .await
        .unwrap()
        .expect("the upload is tracked")
        .state
}

async fn next_change<S>(changes: &mut S) -> UploadChange
where
    S: Stream<Item = Result<UploadChange, TrackingError>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(5), changes.next())
        .await
        .expect("a change within 5 s")
        .expect("the stream goes on")
        .expect("no error")
}

async fn no_change<S>(changes: &mut S)
where
    S: Stream<Item = Result<UploadChange, TrackingError>> + Unpin,
{
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(1500), changes.next()).await {
        panic!("expected no change, got {item:?}");
    }
}

mod cases {
    use super::*;

    pub async fn an_upload_without_a_procedure_is_ready_on_arrival(b: &impl Backend) {
        let tracker = b.open().await;
        let upload = new_upload("u1", *T0, false);
        tracker.record_issued(vec![upload.clone()]).await.unwrap();
        assert_eq!(state_of(&tracker, &upload).await, UploadState::Issued);
        let id = upload.upload_id.as_str();
        assert_eq!(
            receive(
                &tracker,
                &new_file_upload(id, "5285890784273533167", None),
                *T0 + 10
            )
            .await,
            Receipt::Applied
        );
        let got = tracker.get_upload(CALLER, id).await.unwrap().unwrap();
        assert_eq!(got.state, UploadState::Ready);
        assert_eq!(got.files.len(), 1);
        assert_eq!(got.files[0].file_id, "5285890784273533167");
        assert!(got.files[0].media_url.is_some());
        assert_eq!(got.source_context.as_deref(), Some("caller's own"));
        assert_eq!(got.updated_at, *T0 + 10);
        // Another caller does not see it; a malformed id is just not found.
        assert_eq!(tracker.get_upload("someone-else", id).await.unwrap(), None);
        assert_eq!(tracker.get_upload(CALLER, "../etc").await.unwrap(), None);
    }

    pub async fn a_procedure_moves_through_processing_to_ready(b: &impl Backend) {
        let tracker = b.open().await;
        let upload = new_upload("u1", *T0, true);
        let id = upload.upload_id.as_str().to_owned();
        tracker.record_issued(vec![upload.clone()]).await.unwrap();
        let mut changes = Box::pin(tracker.watch(CALLER, from_start(), None).await.unwrap());
        receive(&tracker, &new_file_upload(&id, "f1", Some("t1")), *T0 + 1).await;
        let change = next_change(&mut changes).await;
        assert_eq!(
            (change.event_type.as_str(), change.upload.state),
            ("NewFileUpload", UploadState::Uploaded)
        );
        receive(
            &tracker,
            &procedure_changed(Some(&id), "f1", "t1", "PROCESSING"),
            *T0 + 2,
        )
        .await;
        let change = next_change(&mut changes).await;
        assert_eq!(change.upload.state, UploadState::Processing);
        receive(
            &tracker,
            &procedure_changed(Some(&id), "f1", "t1", "FINISH"),
            *T0 + 3,
        )
        .await;
        let change = next_change(&mut changes).await;
        assert_eq!(
            (
                change.event_type.as_str(),
                change.upload.state,
                change.received_at
            ),
            ("ProcedureStateChanged", UploadState::Ready, *T0 + 3)
        );
        assert_eq!(state_of(&tracker, &upload).await, UploadState::Ready);
    }

    pub async fn a_failed_procedure_reports_the_failing_subtask(b: &impl Backend) {
        let tracker = b.open().await;
        let upload = new_upload("u1", *T0, true);
        let id = upload.upload_id.as_str().to_owned();
        tracker.record_issued(vec![upload.clone()]).await.unwrap();
        receive(&tracker, &new_file_upload(&id, "f1", Some("t1")), *T0 + 1).await;
        let mut finish = procedure_changed(Some(&id), "f1", "t1", "FINISH");
        fail_first_subtask(&mut finish, "FailedOperation.Codec", "bad codec");
        receive(&tracker, &finish, *T0 + 2).await;
        let got = tracker.get_upload(CALLER, &id).await.unwrap().unwrap();
        assert_eq!(got.state, UploadState::Failed);
        let failure = got.failure.unwrap();
        assert_eq!(
            (
                failure.subtask_type.as_str(),
                failure.err_code_ext.as_str(),
                failure.message.as_str()
            ),
            ("Transcode", "FailedOperation.Codec", "bad codec")
        );
    }

    pub async fn duplicates_and_redeliveries_are_one_event(b: &impl Backend) {
        let tracker = b.open().await;
        let upload = new_upload("u1", *T0, false);
        let id = upload.upload_id.as_str().to_owned();
        tracker.record_issued(vec![upload.clone()]).await.unwrap();
        let mut changes = Box::pin(tracker.watch(CALLER, from_start(), None).await.unwrap());
        let body = new_file_upload(&id, "f1", None);
        assert_eq!(receive(&tracker, &body, *T0 + 1).await, Receipt::Applied);
        next_change(&mut changes).await;
        // The same event again: as a PUSH retry, and pulled (EventHandle, explicit nulls).
        assert_eq!(receive(&tracker, &body, *T0 + 5).await, Receipt::Duplicate);
        let mut pulled = body.clone();
        pulled["EventHandle"] = "handle-1".into();
        pulled["ProcedureStateChangeEvent"] = Value::Null;
        assert_eq!(
            receive_via(&tracker, &pulled, *T0 + 40, Delivery::Pull).await,
            Receipt::Duplicate
        );
        no_change(&mut changes).await;
        assert_eq!(
            tracker
                .get_upload(CALLER, &id)
                .await
                .unwrap()
                .unwrap()
                .updated_at,
            *T0 + 1
        );
    }

    pub async fn a_procedure_event_before_its_upload_waits_for_it(b: &impl Backend) {
        let tracker = b.open().await;
        // Matched through SessionContext: attached at once, applied when the file arrives.
        let by_session = new_upload("u1", *T0, true);
        let id = by_session.upload_id.as_str().to_owned();
        // Matched through FileId only: kept unmatched until its upload arrives.
        let by_file = new_upload("u1", *T0, true);
        let id2 = by_file.upload_id.as_str().to_owned();
        tracker
            .record_issued(vec![by_session.clone(), by_file.clone()])
            .await
            .unwrap();
        assert_eq!(
            receive(
                &tracker,
                &procedure_changed(Some(&id), "f1", "t1", "FINISH"),
                *T0 + 1
            )
            .await,
            Receipt::Applied
        );
        assert_eq!(state_of(&tracker, &by_session).await, UploadState::Issued);
        assert_eq!(
            receive(
                &tracker,
                &procedure_changed(None, "f2", "t2", "FINISH"),
                *T0 + 1
            )
            .await,
            Receipt::Unmatched
        );
        receive(&tracker, &new_file_upload(&id, "f1", Some("t1")), *T0 + 2).await;
        receive(&tracker, &new_file_upload(&id2, "f2", Some("t2")), *T0 + 2).await;
        assert_eq!(state_of(&tracker, &by_session).await, UploadState::Ready);
        assert_eq!(state_of(&tracker, &by_file).await, UploadState::Ready);
        // A later PROCESSING does not undo the FINISH.
        receive(
            &tracker,
            &procedure_changed(Some(&id), "f1", "t1", "PROCESSING"),
            *T0 + 3,
        )
        .await;
        assert_eq!(state_of(&tracker, &by_session).await, UploadState::Ready);
    }

    pub async fn one_signature_can_bring_several_files(b: &impl Backend) {
        let tracker = b.open().await;
        let upload = new_upload("u1", *T0, false);
        let id = upload.upload_id.as_str().to_owned();
        tracker.record_issued(vec![upload.clone()]).await.unwrap();
        for (i, file) in ["f1", "f2", "f3"].iter().enumerate() {
            receive(&tracker, &new_file_upload(&id, file, None), *T0 + i as i64).await;
        }
        let got = tracker.get_upload(CALLER, &id).await.unwrap().unwrap();
        let files: Vec<(&str, FileState)> = got
            .files
            .iter()
            .map(|f| (f.file_id.as_str(), f.state))
            .collect();
        assert_eq!(
            files,
            [
                ("f1", FileState::Ready),
                ("f2", FileState::Ready),
                ("f3", FileState::Ready)
            ]
        );
    }

    pub async fn unknown_foreign_and_legacy_events_are_kept_not_applied(b: &impl Backend) {
        let tracker = b.open().await;
        let pull_complete = fixture("F5-pull-complete-push.json");
        assert_eq!(
            receive(&tracker, &pull_complete, *T0).await,
            Receipt::Ignored {
                event_type: "PullComplete".into()
            }
        );
        assert_eq!(
            receive(&tracker, &pull_complete, *T0).await,
            Receipt::Duplicate,
            "it was stored"
        );
        let legacy = fixture("F7-legacy-2.0-new-file-upload.json");
        assert_eq!(receive(&tracker, &legacy, *T0).await, Receipt::Legacy);
        assert_eq!(receive(&tracker, &legacy, *T0).await, Receipt::Duplicate);
        // An upload another system made (empty SourceContext) or a foreign context.
        let foreign = fixture("F1-new-file-upload-push.json");
        assert_eq!(receive(&tracker, &foreign, *T0).await, Receipt::Unmatched);
        let mut foreign = new_file_upload("{\"UserId\":1}", "f9", None);
        assert_eq!(receive(&tracker, &foreign, *T0).await, Receipt::Unmatched);
        foreign["FileUploadEvent"]["MediaBasicInfo"]["SourceInfo"]["SourceContext"] =
            UploadId::generate().to_string().into();
        assert_eq!(receive(&tracker, &foreign, *T0).await, Receipt::Unmatched);
        let err = tracker
            .receive(ReceivedEvent {
                raw: b"nope".to_vec(),
                received_at: *T0,
                delivery: Delivery::Push,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, TrackingError::InvalidEvent(_)), "{err:?}");
    }

    pub async fn reconciled_events_say_so_in_the_change(b: &impl Backend) {
        let tracker = b.open().await;
        let upload = new_upload("u1", *T0, true);
        let id = upload.upload_id.as_str().to_owned();
        tracker.record_issued(vec![upload.clone()]).await.unwrap();
        receive(&tracker, &new_file_upload(&id, "f1", Some("t1")), *T0 + 1).await;
        let mut changes = Box::pin(tracker.watch(CALLER, from_start(), None).await.unwrap());
        assert_eq!(next_change(&mut changes).await.event_type, "NewFileUpload");
        let body = procedure_changed(Some(&id), "f1", "t1", "FINISH");
        assert_eq!(
            receive_via(&tracker, &body, *T0 + 2, Delivery::Reconciled).await,
            Receipt::Applied
        );
        let change = next_change(&mut changes).await;
        assert_eq!(
            (change.event_type.as_str(), change.upload.state),
            ("Reconciled", UploadState::Ready)
        );
    }

    pub async fn awaiting_procedure_lists_unfinished_tasks(b: &impl Backend) {
        let tracker = b.open().await;
        let waiting = new_upload("u1", *T0, true);
        let done = new_upload("u1", *T0, true);
        tracker
            .record_issued(vec![waiting.clone(), done.clone()])
            .await
            .unwrap();
        let (w, d) = (waiting.upload_id.as_str(), done.upload_id.as_str());
        receive(&tracker, &new_file_upload(w, "fw", Some("tw")), *T0 + 1).await;
        receive(&tracker, &new_file_upload(d, "fd", Some("td")), *T0 + 1).await;
        receive(
            &tracker,
            &procedure_changed(Some(d), "fd", "td", "FINISH"),
            *T0 + 2,
        )
        .await;
        // *T0 is long past, so both qualify by age; only the unfinished one is listed.
        let pending = tracker.awaiting_procedure(60, 100).await.unwrap();
        let listed: Vec<(&str, &str, &str)> = pending
            .iter()
            .map(|p| (p.upload_id.as_str(), p.file_id.as_str(), p.task_id.as_str()))
            .collect();
        assert_eq!(listed, [(w, "fw", "tw")]);
        // Younger than the threshold: not yet.
        assert!(
            tracker
                .awaiting_procedure(u32::MAX, 100)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn expired_signatures_move_to_expired(b: &impl Backend) {
        let tracker = b.open().await;
        let stale = new_upload("u1", *T0, false);
        let used = new_upload("u1", *T0, false);
        tracker
            .record_issued(vec![stale.clone(), used.clone()])
            .await
            .unwrap();
        receive(
            &tracker,
            &new_file_upload(used.upload_id.as_str(), "f1", None),
            *T0 + 1,
        )
        .await;
        let mut changes = Box::pin(tracker.watch(CALLER, from_start(), None).await.unwrap());
        assert_eq!(
            tracker.expire_due(stale.expires_at).await.unwrap(),
            0,
            "not before expiry"
        );
        assert_eq!(tracker.expire_due(stale.expires_at + 1).await.unwrap(), 1);
        assert_eq!(
            tracker.expire_due(stale.expires_at + 2).await.unwrap(),
            0,
            "once"
        );
        assert_eq!(
            next_change(&mut changes).await.upload.upload_id,
            used.upload_id
        );
        let change = next_change(&mut changes).await;
        assert_eq!(
            (
                change.upload.upload_id.as_str(),
                change.event_type.as_str(),
                change.upload.state
            ),
            (stale.upload_id.as_str(), "Expired", UploadState::Expired)
        );
        assert_eq!(state_of(&tracker, &used).await, UploadState::Ready);
    }

    /// Expiry reaches an upload still ISSUED even when more than one sweep's worth of uploads
    /// that did arrive fall due before it.
    pub async fn expiry_reaches_due_uploads_behind_many_that_arrived(b: &impl Backend) {
        let tracker = b.open().await;
        let arrived: Vec<NewUpload> = (0..1_050).map(|_| new_upload("u1", *T0, false)).collect();
        let mut stale = new_upload("u1", *T0, false);
        stale.expires_at += 10;
        tracker.record_issued(arrived.clone()).await.unwrap();
        tracker.record_issued(vec![stale.clone()]).await.unwrap();
        receive_all_at_once(&tracker, &arrived, *T0 + 1).await;
        assert_eq!(tracker.expire_due(stale.expires_at + 1).await.unwrap(), 1);
        assert_eq!(state_of(&tracker, &stale).await, UploadState::Expired);
        assert_eq!(state_of(&tracker, &arrived[0]).await, UploadState::Ready);
    }

    pub async fn list_uploads_pages_newest_first(b: &impl Backend) {
        let tracker = b.open().await;
        let mut issued: Vec<NewUpload> = (0..5).map(|i| new_upload("u1", *T0 + i, false)).collect();
        issued.push(new_upload("u2", *T0 + 9, false));
        tracker.record_issued(issued.clone()).await.unwrap();
        let first = tracker.list_uploads(CALLER, "u1", 2, None).await.unwrap();
        let ids = |page: &vod_signer::tracking::UploadPage| -> Vec<i64> {
            page.uploads.iter().map(|u| u.issued_at).collect()
        };
        assert_eq!(ids(&first), [*T0 + 4, *T0 + 3]);
        let second = tracker
            .list_uploads(CALLER, "u1", 2, first.next_page_token.as_deref())
            .await
            .unwrap();
        assert_eq!(ids(&second), [*T0 + 2, *T0 + 1]);
        let third = tracker
            .list_uploads(CALLER, "u1", 2, second.next_page_token.as_deref())
            .await
            .unwrap();
        assert_eq!((ids(&third), third.next_page_token), (vec![*T0], None));
        assert!(
            tracker
                .list_uploads("other", "u1", 0, None)
                .await
                .unwrap()
                .uploads
                .is_empty()
        );
        assert_eq!(
            tracker
                .list_uploads(CALLER, "u1", 2, Some("garbage"))
                .await
                .unwrap_err(),
            TrackingError::InvalidPageToken
        );
    }

    pub async fn watch_resumes_exactly_after_a_cursor_also_after_a_restart(b: &impl Backend) {
        let tracker = b.open().await;
        let uploads: Vec<NewUpload> = (0..4).map(|i| new_upload("u1", *T0 + i, false)).collect();
        tracker.record_issued(uploads.clone()).await.unwrap();
        let mut changes = Box::pin(tracker.watch(CALLER, from_start(), None).await.unwrap());
        for (i, u) in uploads.iter().enumerate() {
            receive(
                &tracker,
                &new_file_upload(u.upload_id.as_str(), &format!("f{i}"), None),
                *T0 + 10,
            )
            .await;
        }
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(next_change(&mut changes).await);
        }
        let order: Vec<&str> = seen.iter().map(|c| c.upload.upload_id.as_str()).collect();
        let expected: Vec<&str> = uploads.iter().map(|u| u.upload_id.as_str()).collect();
        assert_eq!(order, expected);
        drop(changes);
        let resume_at = seen[1].cursor.clone();
        let mut resumed = Box::pin(
            tracker
                .watch(CALLER, WatchStart::After(resume_at.clone()), None)
                .await
                .unwrap(),
        );
        assert_eq!(next_change(&mut resumed).await.cursor, seen[2].cursor);
        assert_eq!(next_change(&mut resumed).await.cursor, seen[3].cursor);
        drop(resumed);
        drop(tracker);
        // A new process on the same store.
        let reopened = b.open().await;
        let mut resumed = Box::pin(
            reopened
                .watch(CALLER, WatchStart::After(resume_at), None)
                .await
                .unwrap(),
        );
        assert_eq!(
            next_change(&mut resumed).await.upload.upload_id,
            uploads[2].upload_id
        );
        assert_eq!(
            next_change(&mut resumed).await.upload.upload_id,
            uploads[3].upload_id
        );
        no_change(&mut resumed).await;
        // The user filter, and another caller's feed.
        let mut filtered = Box::pin(
            reopened
                .watch(CALLER, WatchStart::After("c0".into()), Some("u2".into()))
                .await
                .unwrap(),
        );
        no_change(&mut filtered).await;
        let mut theirs = Box::pin(
            reopened
                .watch("other", WatchStart::After("c0".into()), None)
                .await
                .unwrap(),
        );
        no_change(&mut theirs).await;
        // From the end: nothing old, then what comes next.
        let mut live = Box::pin(reopened.watch(CALLER, WatchStart::Now, None).await.unwrap());
        let started = tokio::time::timeout(Duration::from_millis(300), live.next()).await;
        assert!(started.is_err(), "nothing before the end: {started:?}");
        let late = new_upload("u1", *T0 + 20, false);
        issue_and_receive(&reopened, &late, "f9", *T0 + 21).await;
        assert_eq!(
            next_change(&mut live).await.upload.upload_id,
            late.upload_id
        );
        let bad = reopened
            .watch(CALLER, WatchStart::After("x".into()), None)
            .await
            .err();
        assert_eq!(bad, Some(TrackingError::InvalidCursor));
    }

    pub async fn retention_prunes_and_old_cursors_expire(b: &impl Backend) {
        let tracker = b.open().await;
        let old = new_upload("u1", *T0, false);
        tracker.record_issued(vec![old.clone()]).await.unwrap();
        let mut changes = Box::pin(tracker.watch(CALLER, from_start(), None).await.unwrap());
        receive(
            &tracker,
            &new_file_upload(old.upload_id.as_str(), "f1", None),
            *T0 + 1,
        )
        .await;
        let old_cursor = next_change(&mut changes).await.cursor;
        drop(changes);
        // 30 days later (the default retention) plus a bit.
        let later = *T0 + 31 * 86_400;
        let report = tracker.prune(later).await.unwrap();
        assert_eq!((report.uploads, report.events, report.changes), (1, 1, 1));
        assert_eq!(
            tracker
                .get_upload(CALLER, old.upload_id.as_str())
                .await
                .unwrap(),
            None
        );
        let before_it = format!("c{}", old_cursor[1..].parse::<i64>().unwrap() - 1);
        let expired = tracker
            .watch(CALLER, WatchStart::After(before_it), None)
            .await
            .err();
        assert_eq!(expired, Some(TrackingError::CursorExpired));
        // New changes go on after the pruned part.
        let fresh = new_upload("u1", later, false);
        issue_and_receive(&tracker, &fresh, "f2", later + 1).await;
        let first_kept = format!("c{}", old_cursor[1..].parse::<i64>().unwrap());
        let mut changes = Box::pin(
            tracker
                .watch(CALLER, WatchStart::After(first_kept), None)
                .await
                .unwrap(),
        );
        assert_eq!(
            next_change(&mut changes).await.upload.upload_id,
            fresh.upload_id
        );
    }

    pub async fn watch_now_starts_when_asked_not_when_polled(b: &impl Backend) {
        let tracker = b.open().await;
        let before = new_upload("u1", *T0, false);
        issue_and_receive(&tracker, &before, "f1", *T0 + 1).await;
        let mut live = Box::pin(tracker.watch(CALLER, WatchStart::Now, None).await.unwrap());
        // Written after the watch was asked for, before it is first polled.
        let after = new_upload("u1", *T0 + 2, false);
        issue_and_receive(&tracker, &after, "f2", *T0 + 3).await;
        assert_eq!(
            next_change(&mut live).await.upload.upload_id,
            after.upload_id
        );
        no_change(&mut live).await;
    }

    pub async fn a_live_watcher_behind_retention_is_told(b: &impl Backend) {
        let tracker = b.open().await;
        let old = new_upload("u1", *T0, false);
        tracker.record_issued(vec![old.clone()]).await.unwrap();
        let mut behind = Box::pin(tracker.watch(CALLER, from_start(), None).await.unwrap());
        receive(
            &tracker,
            &new_file_upload(old.upload_id.as_str(), "f1", None),
            *T0 + 1,
        )
        .await;
        // The watcher has not read that change when retention removes it.
        let later = *T0 + 31 * 86_400;
        tracker.prune(later).await.unwrap();
        let fresh = new_upload("u1", later, false);
        issue_and_receive(&tracker, &fresh, "f2", later + 1).await;
        let next = tokio::time::timeout(Duration::from_secs(5), behind.next())
            .await
            .expect("an answer, not a wait");
        assert_eq!(next, Some(Err(TrackingError::CursorExpired)));
        assert_eq!(behind.next().await, None);
    }

    pub async fn concurrent_receives_are_all_stored(b: &impl Backend) {
        let tracker = b.open().await;
        let uploads: Vec<NewUpload> = (0..200).map(|i| new_upload("u1", *T0 + i, false)).collect();
        tracker.record_issued(uploads.clone()).await.unwrap();
        receive_all_at_once(&tracker, &uploads, *T0 + 1).await;
        for upload in &uploads {
            assert_eq!(state_of(&tracker, upload).await, UploadState::Ready);
        }
    }

    pub async fn record_issued_refuses_a_tracked_id(b: &impl Backend) {
        let tracker = b.open().await;
        let upload = new_upload("u1", *T0, false);
        tracker.record_issued(vec![upload.clone()]).await.unwrap();
        let other = new_upload("u1", *T0, false);
        assert_eq!(
            tracker
                .record_issued(vec![other.clone(), upload.clone()])
                .await,
            Err(TrackingError::DuplicateUploadId(
                upload.upload_id.to_string()
            ))
        );
        // All or nothing: the new one of that call was not kept.
        assert_eq!(
            tracker
                .get_upload(CALLER, other.upload_id.as_str())
                .await
                .unwrap(),
            None
        );
    }
}

macro_rules! suite {
    ($module:ident, $backend:ident, [$($case:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = $backend::new().await;
                    cases::$case(&backend).await;
                }
            )*
        }
    };
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        suite!(sqlite, Sqlite, [$($case),*]);
        suite!(postgres_store, Postgres, [$($case),*]);
    };
}

both!(
    an_upload_without_a_procedure_is_ready_on_arrival,
    a_procedure_moves_through_processing_to_ready,
    a_failed_procedure_reports_the_failing_subtask,
    duplicates_and_redeliveries_are_one_event,
    a_procedure_event_before_its_upload_waits_for_it,
    one_signature_can_bring_several_files,
    unknown_foreign_and_legacy_events_are_kept_not_applied,
    reconciled_events_say_so_in_the_change,
    awaiting_procedure_lists_unfinished_tasks,
    expired_signatures_move_to_expired,
    expiry_reaches_due_uploads_behind_many_that_arrived,
    list_uploads_pages_newest_first,
    watch_resumes_exactly_after_a_cursor_also_after_a_restart,
    retention_prunes_and_old_cursors_expire,
    watch_now_starts_when_asked_not_when_polled,
    a_live_watcher_behind_retention_is_told,
    concurrent_receives_are_all_stored,
    record_issued_refuses_a_tracked_id,
);

/// Several replicas on one PostgreSQL database.
mod postgres_replicas {
    use super::*;

    /// A batch commits without waiting for its flush; until a flushing transaction has marked
    /// the feed durable past it, no watcher may see its changes (a crash could take them back
    /// and hand their positions to others).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_not_yet_marked_durable_is_not_served() {
        let db = Postgres::new().await;
        let tracker = db.open().await;
        let first = new_upload("u1", *T0, false);
        let second = new_upload("u1", *T0 + 1, false);
        assert_eq!(
            issue_and_receive(&tracker, &first, "f1", *T0 + 2).await,
            Receipt::Applied
        );
        // What an unflushed batch leaves behind: a committed change past `durable_through`.
        db.server.psql(
            "INSERT INTO changes (upload_id, caller, user_id, event_type, received_at, snapshot)
             SELECT upload_id, caller, user_id, 'Unflushed', received_at, snapshot
             FROM changes ORDER BY position LIMIT 1",
        );
        let mut changes = Box::pin(tracker.watch(CALLER, from_start(), None).await.unwrap());
        assert_eq!(next_change(&mut changes).await.event_type, "NewFileUpload");
        no_change(&mut changes).await;

        // The next batch's flush covers everything committed before it.
        assert_eq!(
            issue_and_receive(&tracker, &second, "f2", *T0 + 3).await,
            Receipt::Applied
        );
        assert_eq!(next_change(&mut changes).await.event_type, "Unflushed");
        let last = next_change(&mut changes).await;
        assert_eq!(last.upload.upload_id, second.upload_id);
    }

    /// Text columns of our tables whose collation is not "C".
    const NOT_C: &str = "SELECT count(*) FROM pg_attribute
        WHERE attrelid IN ('uploads'::regclass, 'events'::regclass, 'changes'::regclass)
          AND attnum > 0 AND NOT attisdropped AND atttypid = 'text'::regtype
          AND attcollation <> 'pg_catalog.\"C\"'::regcollation";

    /// Tables created before their text columns used the "C" collation move to it when a
    /// replica starts, and keep what they hold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tables_of_an_older_schema_move_to_the_c_collation() {
        let db = Postgres::new().await;
        let tracker = db.open().await;
        assert_eq!(db.server.psql_value(NOT_C), "0");
        let upload = new_upload("u1", *T0, false);
        assert_eq!(
            issue_and_receive(&tracker, &upload, "f1", *T0 + 1).await,
            Receipt::Applied
        );
        drop(tracker);
        // What the tables looked like before: every text column in the database's default
        // (and no column computed from them yet).
        db.server.psql(
            r#"ALTER TABLE uploads DROP COLUMN awaiting_procedure;
            DO $$ DECLARE c record; BEGIN
                FOR c IN SELECT attrelid::regclass AS rel, attname AS col FROM pg_attribute
                    WHERE attrelid IN ('uploads'::regclass, 'events'::regclass,
                                       'changes'::regclass)
                      AND attnum > 0 AND NOT attisdropped AND atttypid = 'text'::regtype
                LOOP
                    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE TEXT COLLATE "default"',
                                   c.rel, c.col);
                END LOOP; END $$"#,
        );
        assert_ne!(db.server.psql_value(NOT_C), "0");

        let tracker = db.open().await;
        assert_eq!(db.server.psql_value(NOT_C), "0");
        assert_eq!(state_of(&tracker, &upload).await, UploadState::Ready);
        let body = new_file_upload(upload.upload_id.as_str(), "f1", None);
        let again = receive(&tracker, &body, *T0 + 2).await;
        assert_eq!(again, Receipt::Duplicate);
    }

    /// Indexes of `uploads` that cover (in their key or their predicate) a column that
    /// applying an event changes: any one of them turns the update into a non-HOT one, which
    /// writes an entry into every index.
    const INDEXES_ON_MOVING_COLUMNS: &str = "SELECT count(*) FROM pg_indexes
        WHERE tablename = 'uploads'
          AND indexdef ~ '\\m(state|updated_at|snapshot|expired_at)\\M'";

    /// The storage options of `uploads`.
    const FILLFACTOR: &str = "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class WHERE relname = 'uploads'";

    /// Receiving an event rewrites the upload's row in place: no index covers what it changes
    /// (the row's pages keep room for the new version), so every update is heap-only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applying_events_updates_uploads_in_place() {
        let db = Postgres::new().await;
        let tracker = db.open().await;
        assert_eq!(db.server.psql_value(INDEXES_ON_MOVING_COLUMNS), "0");
        assert_eq!(db.server.psql_value(FILLFACTOR), "fillfactor=40");
        let uploads: Vec<NewUpload> = (0..20).map(|i| new_upload("u1", *T0 + i, false)).collect();
        tracker.record_issued(uploads.clone()).await.unwrap();
        for (i, upload) in uploads.iter().enumerate() {
            let body = new_file_upload(upload.upload_id.as_str(), &format!("f{i}"), None);
            assert_eq!(receive(&tracker, &body, *T0 + 30).await, Receipt::Applied);
        }
        // The writer's backend reports its statistics within a second or so of going idle.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let counts = loop {
            let counts = db.server.psql_value(
                "SELECT n_tup_upd || ' ' || n_tup_hot_upd FROM pg_stat_user_tables
                 WHERE relname = 'uploads'",
            );
            if counts.starts_with("20 ") || std::time::Instant::now() > deadline {
                break counts;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(counts, "20 20", "updates, of which heap-only");
    }

    /// A database written before the expiry queue and `awaiting_procedure` existed: the first
    /// replica to start fills both from what the uploads hold, and drops the state indexes.
    /// A replica of that older version still running meanwhile (a rolling upgrade) inserts
    /// uploads as it did; the database queues and classifies them all the same.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_older_schema_keeps_its_pending_expiries_and_procedures() {
        let db = Postgres::new().await;
        let tracker = db.open().await;
        let pending = new_upload("u1", *T0, false);
        let processing = new_upload("u1", *T0, true);
        let done = new_upload("u1", *T0, false);
        tracker
            .record_issued(vec![pending.clone(), processing.clone()])
            .await
            .unwrap();
        issue_and_receive(&tracker, &done, "fd", *T0 + 1).await;
        let p = processing.upload_id.as_str();
        receive(&tracker, &new_file_upload(p, "fp", Some("tp")), *T0 + 1).await;
        drop(tracker);
        db.server.psql(
            "DROP TRIGGER uploads_queue_expiry ON uploads;
             DROP FUNCTION vod_signer_queue_expiry();
             DROP TABLE upload_expiry;
             DROP INDEX uploads_awaiting_procedure;
             DROP INDEX uploads_by_issued;
             ALTER TABLE uploads DROP COLUMN awaiting_procedure;
             ALTER TABLE uploads RESET (fillfactor);
             CREATE INDEX uploads_by_state ON uploads (state, expires_at);
             CREATE INDEX uploads_by_updated ON uploads (updated_at);",
        );
        assert_eq!(db.server.psql_value(INDEXES_ON_MOVING_COLUMNS), "2");
        assert_eq!(db.server.psql_value(FILLFACTOR), "");

        let tracker = db.open().await;
        assert_eq!(db.server.psql_value(INDEXES_ON_MOVING_COLUMNS), "0");
        assert_eq!(db.server.psql_value(FILLFACTOR), "fillfactor=40");
        // The older version's insert, with its column list and nothing else.
        let old_writer = new_upload("u1", *T0, true);
        db.server.psql(&format!(
            "INSERT INTO uploads (upload_id, caller, user_id, issued_at, expires_at, procedure,
                source_context, session_context, one_time, state, updated_at, snapshot)
             VALUES ('{}', '{CALLER}', 'u1', {}, {}, 'review', NULL, NULL, false, 'issued', {},
                '{{}}')",
            old_writer.upload_id, old_writer.issued_at, old_writer.expires_at, old_writer.issued_at
        ));
        let awaiting = format!(
            "SELECT awaiting_procedure FROM uploads WHERE upload_id = '{}'",
            old_writer.upload_id
        );
        assert_eq!(db.server.psql_value(&awaiting), "t");

        let due = tracker.awaiting_procedure(60, 100).await.unwrap();
        let due: Vec<&str> = due.iter().map(|d| d.upload_id.as_str()).collect();
        assert_eq!(due, [p]);
        assert_eq!(tracker.expire_due(pending.expires_at + 1).await.unwrap(), 2);
        assert_eq!(state_of(&tracker, &pending).await, UploadState::Expired);
        assert_eq!(state_of(&tracker, &old_writer).await, UploadState::Expired);
        assert_eq!(db.server.psql_value(&awaiting), "f");
        assert_eq!(state_of(&tracker, &done).await, UploadState::Ready);
        assert_eq!(state_of(&tracker, &processing).await, UploadState::Uploaded);
    }

    /// An operator may turn `synchronous_commit` off for a database or role to speed up other
    /// clients. The commits that issue an upload and that publish a batch (and so let it be
    /// answered) must still wait for the flush.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_wait_for_the_flush_whatever_the_database_default() {
        let db = Postgres::new().await;
        db.server
            .psql("ALTER DATABASE postgres SET synchronous_commit = off");
        assert_eq!(db.server.psql_value("SHOW synchronous_commit"), "off");
        let tracker = db.open().await;
        // Each statement that issues or publishes notes the setting its commit will use.
        db.server.psql(
            "CREATE TABLE commit_settings (target TEXT, setting TEXT);
             CREATE FUNCTION note_commit_setting() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO commit_settings
                 VALUES (TG_TABLE_NAME, current_setting('synchronous_commit'));
                 RETURN NULL;
             END $$;
             CREATE TRIGGER note_issue AFTER INSERT ON uploads
                 FOR EACH STATEMENT EXECUTE FUNCTION note_commit_setting();
             CREATE TRIGGER note_publish AFTER UPDATE ON feed
                 FOR EACH STATEMENT EXECUTE FUNCTION note_commit_setting();",
        );
        let upload = new_upload("u1", *T0, false);
        assert_eq!(
            issue_and_receive(&tracker, &upload, "f1", *T0 + 1).await,
            Receipt::Applied
        );
        assert_eq!(
            db.server.psql_value(
                "SELECT string_agg(DISTINCT target || '=' || setting, ','
                     ORDER BY target || '=' || setting) FROM commit_settings"
            ),
            "feed=on,uploads=on"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_share_dedupe_and_see_each_others_changes() {
        let db = Postgres::new().await;
        let (one, two) = (db.open().await, db.open().await);
        let uploads: Vec<NewUpload> = (0..20).map(|i| new_upload("u1", *T0 + i, false)).collect();
        one.record_issued(uploads.clone()).await.unwrap();
        let mut on_two = Box::pin(two.watch(CALLER, from_start(), None).await.unwrap());
        let body = new_file_upload(uploads[0].upload_id.as_str(), "f0", None);
        assert_eq!(receive(&one, &body, *T0 + 1).await, Receipt::Applied);
        let change = next_change(&mut on_two).await;
        assert_eq!(change.upload.upload_id, uploads[0].upload_id);
        // The same event at the other replica (a PULL redelivery to another consumer).
        assert_eq!(receive(&two, &body, *T0 + 31).await, Receipt::Duplicate);
        // Each remaining event sent to both replicas at once: stored and applied once.
        let mut tasks = Vec::new();
        for (i, upload) in uploads.iter().enumerate().skip(1) {
            let body = new_file_upload(upload.upload_id.as_str(), &format!("f{i}"), None);
            for replica in [one.clone(), two.clone()] {
                let body = body.clone();
                tasks.push(tokio::spawn(async move {
                    receive(&replica, &body, *T0 + 2).await
                }));
            }
        }
        let mut applied = 0;
        for task in tasks {
            match task.await.unwrap() {
                Receipt::Applied => applied += 1,
                Receipt::Duplicate => {}
                other => panic!("unexpected receipt {other:?}"),
            }
        }
        assert_eq!(applied, 19);
        // The watcher on replica two sees each upload once, in position order.
        let mut seen = Vec::new();
        let mut last = 0;
        for _ in 1..20 {
            let change = next_change(&mut on_two).await;
            let position: i64 = change.cursor[1..].parse().unwrap();
            assert!(position > last, "positions increase");
            last = position;
            seen.push(change.upload.upload_id);
        }
        seen.sort();
        let mut expected: Vec<UploadId> =
            uploads[1..].iter().map(|u| u.upload_id.clone()).collect();
        expected.sort();
        assert_eq!(seen, expected);
        no_change(&mut on_two).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_outage_is_unavailable_then_heals() {
        let mut db = Postgres::new().await;
        let tracker = db.open().await;
        let upload = new_upload("u1", *T0, false);
        tracker.record_issued(vec![upload.clone()]).await.unwrap();
        tokio::task::block_in_place(|| db.server.stop());
        let body = new_file_upload(upload.upload_id.as_str(), "f1", None);
        let during = tracker
            .receive(ReceivedEvent {
                raw: bytes(&body),
                received_at: *T0 + 1,
                delivery: Delivery::Push,
            })
            .await;
        assert!(
            matches!(during, Err(TrackingError::Unavailable(_))),
            "{during:?}"
        );
        assert!(matches!(
            tracker.get_upload(CALLER, upload.upload_id.as_str()).await,
            Err(TrackingError::Unavailable(_))
        ));
        tokio::task::block_in_place(|| db.server.restart());
        // The pool reconnects by itself; the sender's retry then succeeds.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let receipt = loop {
            let result = tracker
                .receive(ReceivedEvent {
                    raw: bytes(&body),
                    received_at: *T0 + 2,
                    delivery: Delivery::Push,
                })
                .await;
            match result {
                Ok(receipt) => break receipt,
                Err(TrackingError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the store did not come back: {e}"),
            }
        };
        assert_eq!(
            receipt,
            Receipt::Applied,
            "nothing was stored during the outage"
        );
        assert_eq!(state_of(&tracker, &upload).await, UploadState::Ready);
    }
}
