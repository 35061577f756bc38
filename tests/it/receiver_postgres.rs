//! The receiver and tracker on PostgreSQL, each test with its own real server: an outage of
//! the store (503 and UNAVAILABLE, then success once it is back) and two replicas sharing one
//! database (a change received by one reaches a watcher on the other within a second).

#[allow(dead_code)] // the harness is shared; this file uses part of it
use crate::support::postgres;

use std::time::{Duration, Instant};

use tonic::Code;

use crate::support::receiver::*;
use postgres::PostgresServer;
use vod_signer::proto::v1 as pb;

const FILE_ID: &str = "5285890784273533167";

fn pg_config(dir: &EventsDir, pg: &PostgresServer) -> vod_signer::config::Config {
    dir.config(&dir.toml(&pg.url(), true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_answers_503_and_unavailable_then_recovers() {
    let mut pg = PostgresServer::start();
    let dir = EventsDir::new();
    let server = start_events(pg_config(&dir, &pg)).await;
    let id = issue_tracked(&server, "olga").await;
    let body = signed(f1_for(&id, FILE_ID, None), now() + 600);

    pg.stop();
    let response = server.post_event(&body).await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(!response.body.contains("postgres://"), "{}", response.body);
    let refused = issue(&server, TRACKED, "olga", pb::UploadParams::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let refused = get_upload(&server, TRACKED, &id).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    pg.restart();
    // The pool reconnects on its own; until it has, answers stay 503 (never 200 unstored).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = server.post_event(&body).await;
        match response.status {
            200 => break,
            503 if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("{other}: {}", response.body),
        }
    }
    let upload = wait_for_state(&server, &id, pb::UploadState::Ready).await;
    assert_eq!(upload.files[0].file_id, FILE_ID);
    // Issuing works again, durably.
    let again = issue(&server, TRACKED, "olga", pb::UploadParams::default())
        .await
        .unwrap();
    assert!(!again.upload_id.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_share_uploads_and_changes() {
    let pg = PostgresServer::start();
    let dir = EventsDir::new();
    let a = start_events(pg_config(&dir, &pg)).await;
    let b = start_events(pg_config(&dir, &pg)).await;

    let id = issue_tracked(&a, "pia").await;
    let on_b = get_upload(&b, TRACKED, &id).await.unwrap();
    assert_eq!(state(&on_b), pb::UploadState::Issued);

    let mut watch_b = watch(&b, TRACKED).await;

    let response = post_signed(&a, f1_for(&id, FILE_ID, None)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    let answered = Instant::now();
    // The contract's bound for a change to reach the other replicas.
    let change = tokio::time::timeout(Duration::from_secs(1), watch_b.message())
        .await
        .unwrap_or_else(|_| panic!("no change on replica b within 1 s of the 200 on a"))
        .unwrap()
        .unwrap();
    eprintln!("replica a -> watcher on b: {:?}", answered.elapsed());
    let upload = change.upload.unwrap();
    assert_eq!(upload.upload_id, id);
    assert_eq!(state(&upload), pb::UploadState::Ready);

    // A cursor from one replica resumes on the other.
    let second = issue_tracked(&b, "pia").await;
    let response = post_signed(&b, f1_for(&second, "5285890784246869930", None)).await;
    assert_eq!(response.status, 200);
    let mut resumed_on_a = resume_watch(&a, TRACKED, change.cursor).await;
    let next = next_change(&mut resumed_on_a).await;
    assert_eq!(next.upload.unwrap().upload_id, second);

    let on_b = next_change(&mut watch_b).await;
    assert_eq!(on_b.upload.unwrap().upload_id, second);

    // The same event delivered to the other replica is the same event: no new change.
    let replay = signed(f1_for(&id, FILE_ID, None), now() + 300);
    assert_eq!(b.post_event(&replay).await.status, 200);
    let extra = tokio::time::timeout(Duration::from_millis(500), watch_b.message()).await;
    assert!(extra.is_err(), "a replay made a change: {extra:?}");
    a.stop().await;
    b.stop().await;
}
