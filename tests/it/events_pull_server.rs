//! `[events.pull]` wired into the real server: PULL alone, PULL and PUSH into one intake, the
//! API credentials defaulting to the active `[[keys]]` entry, reconciliation from
//! `[tracking] reconcile_after_seconds`, and a stop that leaves nothing stored unconfirmed.

use std::time::Duration;

use crate::support::pull::standin::{StandIn, StandInTiming};
use crate::support::pull::{eventually, finished_procedure_task};
use crate::support::receiver::*;
use serde_json::json;
use vod_signer::proto::v1 as pb;
use vod_signer::pull::{BackoffPolicy, PullTiming};

fn fast_timing() -> PullTiming {
    PullTiming {
        pull_timeout: Duration::from_secs(2),
        confirm_timeout: Duration::from_secs(1),
        confirm_window: Duration::from_millis(1_500),
        batches_in_flight: 4,
        backoff: BackoffPolicy {
            base: Duration::from_millis(20),
            max: Duration::from_millis(200),
            rate_limited: Duration::from_millis(100),
            auth_failure: Duration::from_millis(500),
        },
    }
}

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
