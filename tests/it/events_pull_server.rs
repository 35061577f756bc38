//! `[events.pull]` wired into the real server: PULL alone, PULL and PUSH into one intake, the
//! API credentials defaulting to the active `[[keys]]` entry, reconciliation from
//! `[tracking] reconcile_after_seconds`, and a stop that leaves nothing stored unconfirmed.

use std::time::Duration;

use crate::support::pull::standin::{StandIn, StandInTiming};
use crate::support::pull::{
    STANDIN_SECRET_ID, STANDIN_SECRET_KEY, eventually, fast_timing, finished_procedure_task,
};
use crate::support::receiver::*;
use serde_json::json;
use vod_signer::proto::v1 as pb;

/// The stand-in knows the test configuration's active key: `[events.pull]` names no
/// credentials of its own, so that key is used.
async fn standin() -> StandIn {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    StandIn::serve(listener, StandInTiming::default(), SECRET_ID, SECRET_KEY)
}

fn with_pull(base: String, standin: &StandIn, tracking_extra: &str) -> String {
    // `[tracking]` is the first table of the base text; extra keys go right under it.
    let base = base.replacen(
        "[tracking]\n",
        &format!("[tracking]\n{tracking_extra}\n"),
        1,
    );
    format!(
        "{base}\n[events.pull]\nendpoint = \"{}\"\nregion = \"ap-guangzhou\"\nsub_app_id = 1500000001\n",
        standin.endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulled_and_pushed_events_feed_one_intake() {
    let standin = standin().await;
    let dir = EventsDir::new();
    let config = dir.config(&with_pull(
        dir.toml("sqlite:uploads.db", true),
        &standin,
        "reconcile_after_seconds = 0",
    ));
    let server = TestServer::builder(config)
        .events()
        .pull_timing(fast_timing())
        .start()
        .await;
    let issued = issue(&server, TRACKED, "alice", pb::UploadParams::default())
        .await
        .unwrap();
    let upload_id = issued.upload_id.clone();
    assert!(!upload_id.is_empty());

    // The event arrives by PULL...
    let event = f1_for(&upload_id, "5285890784273533167", None);
    standin.push_event(event.clone());
    wait_for_state(&server, &upload_id, pb::UploadState::Ready).await;
    // ...and the same event by PUSH too: stored once, answered 200.
    let response = server.post_event(&signed(event, now() + 600)).await;
    assert_eq!(response.status, 200, "{}", response.body);

    eventually(Duration::from_secs(5), "the pulled event confirmed", || {
        standin.confirmed().len() == 1
    })
    .await;
    server.stop().await;
    assert_eq!(standin.in_flight(), 0);
    let pulls = standin.seen_action("PullEvents");
    assert!(
        pulls.iter().all(|s| s.error.is_none()),
        "TC3 signatures accepted"
    );
    assert_eq!(pulls[0].region.as_deref(), Some("ap-guangzhou"));
    assert_eq!(pulls[0].body["SubAppId"], json!(1_500_000_001u64));
    assert!(
        standin.seen_action("DescribeTaskDetail").is_empty(),
        "reconcile_after_seconds = 0 turns reconciliation off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_alone_needs_no_listener_and_reconciles_stuck_uploads() {
    let standin = standin().await;
    let dir = EventsDir::new();
    // No `listen`, no path token: no HTTP receiver at all.
    let base = dir.toml("sqlite:uploads.db", false).replace(
        "listen = \"127.0.0.1:0\"\npath_token_file = \"path-token\"\n",
        "",
    );
    assert!(!base.contains("path_token_file"));
    let config = dir.config(&with_pull(base, &standin, "reconcile_after_seconds = 1"));
    assert!(config.events.as_ref().is_some_and(|e| e.listen.is_none()));
    let server = TestServer::builder(config)
        .events()
        .pull_timing(fast_timing())
        .start()
        .await;

    let issued = issue(
        &server,
        TRACKED,
        "alice",
        pb::UploadParams {
            procedure: Some("review".to_owned()),
            ..pb::UploadParams::default()
        },
    )
    .await
    .unwrap();
    let upload_id = issued.upload_id;
    let file_id = "5285890784246869930";
    standin.push_event(f1_for(&upload_id, file_id, Some("task-1")));
    wait_for_state(&server, &upload_id, pb::UploadState::Uploaded).await;

    // The procedure's event never comes; VOD knows the task finished.
    standin.set_task(
        "task-1",
        json!({"TaskType": "Procedure", "Status": "FINISH",
               "ProcedureTask": finished_procedure_task(file_id, "task-1")}),
    );
    let mut ready = None;
    for _ in 0..250 {
        let upload = get_upload(&server, TRACKED, &upload_id).await.unwrap();
        if state(&upload) == pb::UploadState::Ready {
            ready = Some(upload);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready.is_some(), "reconciliation made the upload READY");
    assert!(!standin.seen_action("DescribeTaskDetail").is_empty());
    server.stop().await;
}

/// The common deployment: PUSH only, no `[events.pull]`. Reconciliation still runs, against
/// `[tracking.reconcile_api]` with that section's own credentials (the stand-in refuses the
/// signing key), and fixes one upload stuck in UPLOADED and one stuck in PROCESSING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_only_reconciles_stuck_uploads_through_its_own_api_section() {
    let standin = StandIn::start(StandInTiming::default()).await;
    let dir = EventsDir::new();
    std::fs::write(
        dir.path().join("api-key"),
        format!("{STANDIN_SECRET_KEY}\n"),
    )
    .unwrap();
    let text = dir.toml("sqlite:uploads.db", true).replacen(
        "[tracking]\n",
        "[tracking]\nreconcile_after_seconds = 1\n",
        1,
    );
    let text = format!(
        "{text}\n[tracking.reconcile_api]\nendpoint = \"{}\"\nregion = \"ap-guangzhou\"\n\
         api_secret_id = \"{STANDIN_SECRET_ID}\"\napi_secret_key_file = \"api-key\"\n",
        standin.endpoint()
    );
    let config = dir.config(&text);
    assert!(config.pull.is_none(), "no PULL consumer");
    let server = TestServer::builder(config)
        .events()
        .pull_timing(fast_timing())
        .start()
        .await;

    let review = || pb::UploadParams {
        procedure: Some("review".to_owned()),
        ..pb::UploadParams::default()
    };
    let uploaded = issue(&server, TRACKED, "alice", review())
        .await
        .unwrap()
        .upload_id;
    let processing = issue(&server, TRACKED, "alice", review())
        .await
        .unwrap()
        .upload_id;
    let mut watch = watch(&server, TRACKED).await;

    // Both uploads arrive by PUSH; their procedures' final events never come.
    let (uploaded_file, processing_file) = ("5285890784246860011", "5285890784246860012");
    for (id, file, task) in [
        (&uploaded, uploaded_file, "task-uploaded"),
        (&processing, processing_file, "task-processing"),
    ] {
        let response = server
            .post_event(&signed(f1_for(id, file, Some(task)), now() + 600))
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
    }
    let mut running = f3_for(&processing, processing_file);
    running["ProcedureStateChangeEvent"]["TaskId"] = json!("task-processing");
    running["ProcedureStateChangeEvent"]["Status"] = json!("PROCESSING");
    let response = server.post_event(&signed(running, now() + 600)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    wait_for_state(&server, &uploaded, pb::UploadState::Uploaded).await;
    wait_for_state(&server, &processing, pb::UploadState::Processing).await;

    // VOD knows both tasks finished: one succeeded, one failed.
    standin.set_task(
        "task-uploaded",
        json!({"TaskType": "Procedure", "Status": "FINISH",
               "ProcedureTask": finished_procedure_task(uploaded_file, "task-uploaded")}),
    );
    let mut failing = finished_procedure_task(processing_file, "task-processing");
    failing["MediaProcessResultSet"][0]["TranscodeTask"]["Status"] = json!("FAIL");
    failing["MediaProcessResultSet"][0]["TranscodeTask"]["ErrCodeExt"] =
        json!("InternalError.TranscodeFailed");
    standin.set_task(
        "task-processing",
        json!({"TaskType": "Procedure", "Status": "FINISH", "ProcedureTask": failing}),
    );

    // Every change, until both uploads' reconciled changes were seen.
    let mut changes: Vec<(String, pb::UploadState, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while changes.iter().filter(|c| c.2 == "Reconciled").count() < 2 {
        let change = tokio::time::timeout_at(deadline, watch.message())
            .await
            .unwrap_or_else(|_| panic!("no reconciliation within 15 s; changes: {changes:?}"))
            .unwrap()
            .unwrap();
        let upload = change.upload.unwrap();
        changes.push((upload.upload_id.clone(), state(&upload), change.event_type));
    }
    let reconciled = |id: &str| {
        changes
            .iter()
            .filter(|c| c.0 == id && c.2 == "Reconciled")
            .map(|c| c.1)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        reconciled(&uploaded),
        [pb::UploadState::Ready],
        "{changes:?}"
    );
    assert_eq!(
        reconciled(&processing),
        [pb::UploadState::Failed],
        "{changes:?}"
    );
    let failed = get_upload(&server, TRACKED, &processing).await.unwrap();
    let failure = failed.failure.expect("the failing subtask is named");
    assert_eq!(failure.err_code_ext, "InternalError.TranscodeFailed");

    let described = standin.seen_action("DescribeTaskDetail");
    assert!(
        described.iter().all(|s| s.error.is_none()),
        "signed with [tracking.reconcile_api]'s key: {described:?}"
    );
    assert_eq!(described[0].region.as_deref(), Some("ap-guangzhou"));
    assert!(
        standin.seen_action("PullEvents").is_empty(),
        "no consumer without [events.pull]"
    );
    server.stop().await;
}

/// The consumer and the reconciler keep the API client they started with, so a reload that
/// changes their API settings says they wait for a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_reports_changed_api_settings_as_pending_a_restart() {
    let standin = StandIn::start(StandInTiming::default()).await;
    let dir = EventsDir::new();
    let section = |endpoint: &str| {
        format!(
            "{}\n[tracking.reconcile_api]\nendpoint = \"{endpoint}\"\n",
            dir.toml("sqlite:uploads.db", true)
        )
    };
    let config = dir.config(&section(&standin.endpoint()));
    let server = TestServer::builder(config)
        .events()
        .pull_timing(fast_timing())
        .start()
        .await;
    let handle = &server.reload;

    // The same settings again: nothing pending.
    let same = handle.reload().await.unwrap();
    assert!(
        same.pending_restart.is_empty(),
        "{:?}",
        same.pending_restart
    );
    dir.config(&section("http://127.0.0.1:9"));
    let moved = handle.reload().await.unwrap();
    assert_eq!(
        moved.pending_restart.len(),
        1,
        "{:?}",
        moved.pending_restart
    );
    assert!(
        moved.pending_restart[0].starts_with("reconciliation API"),
        "{:?}",
        moved.pending_restart
    );
    let with_pull = format!(
        "{}\n[events.pull]\nendpoint = \"{}\"\n",
        section(&standin.endpoint()),
        standin.endpoint()
    );
    dir.config(&with_pull);
    let pulling = handle.reload().await.unwrap();
    assert!(
        pulling.pending_restart.contains(&"events.pull"),
        "{:?}",
        pulling.pending_restart
    );

    // Back to the start-up settings, then only the SecretKey rotated under the same SecretId:
    // the reconciler still signs with the old one.
    dir.config(&section(&standin.endpoint()));
    let back = handle.reload().await.unwrap();
    assert!(
        back.pending_restart.is_empty(),
        "{:?}",
        back.pending_restart
    );
    std::fs::write(dir.path().join("secret-key"), "rotated-secret-key-same-id").unwrap();
    let rotated = handle.reload().await.unwrap();
    assert!(
        rotated
            .pending_restart
            .iter()
            .any(|field| field.starts_with("reconciliation API")),
        "{:?}",
        rotated.pending_restart
    );
    server.stop().await;
}
