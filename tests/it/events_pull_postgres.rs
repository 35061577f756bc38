//! Two replicas pulling from one VOD queue into one PostgreSQL tracking store (issue 13:
//! "several replicas pulling from one app at once produce no duplicate change and lose no
//! event"). Both are real servers (`serve_with`), the queue is the stand-in with a short
//! confirm window, and some confirms fail, so events come back, often to the other replica.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::postgres::PostgresServer;
use crate::support::pull::standin::{Fault, StandIn, StandInTiming};
use crate::support::pull::{fast_timing, queue_drained};
use crate::support::receiver::*;
use sqlx::Row;
use vod_signer::proto::v1 as pb;
use vod_signer::pull::PullTiming;

/// Distinct events (one NewFileUpload per upload).
const UPLOADS: usize = 60;
/// Of those, how many are also queued a second time (VOD delivering the same event twice).
const QUEUED_TWICE: usize = 15;

/// One replica: Tencent's timings shortened, a confirm that fails is not retried (so its
/// events are redelivered), and `/metrics` on its own port.
async fn replica(config: vod_signer::config::Config) -> (TestServer, SocketAddr) {
    let server = TestServer::builder(config)
        .events()
        .metrics()
        .pull_timing(PullTiming {
            confirm_window: Duration::from_millis(50),
            ..fast_timing()
        })
        .start()
        .await;
    let metrics = server.metrics_addr.expect("metrics are served");
    (server, metrics)
}

/// One counter of a replica's `/metrics`, 0 when absent.
async fn counter(metrics: SocketAddr, name: &str) -> u64 {
    let response = http_request(metrics, "GET", "/metrics", &[], b"").await;
    assert_eq!(response.status, 200, "{}", response.body);
    response
        .body
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_pull_one_queue_into_one_database_without_loss_or_doubles() {
    let pg = PostgresServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let standin = StandIn::serve(
        listener,
        StandInTiming {
            long_poll: Duration::from_millis(200),
            confirm_window: Duration::from_millis(700),
        },
        SECRET_ID,
        SECRET_KEY,
    );
    let dir = EventsDir::new();
    // Reconciliation off: only pulled events make changes here.
    let text = dir.toml(&pg.url(), true).replacen(
        "[tracking]\n",
        "[tracking]\nreconcile_after_seconds = 0\n",
        1,
    );
    let text = format!(
        "{text}\n[events.pull]\nendpoint = \"{}\"\n",
        standin.endpoint()
    );
    let (a, metrics_a) = replica(dir.config(&text)).await;
    let (b, metrics_b) = replica(dir.config(&text)).await;

    let mut ids = Vec::with_capacity(UPLOADS);
    for i in 0..UPLOADS {
        // Issued on either replica: one database.
        let server = if i % 2 == 0 { &a } else { &b };
        let issued = issue(server, TRACKED, "quinn", pb::UploadParams::default())
            .await
            .unwrap();
        ids.push(issued.upload_id);
    }
    let mut watch_b = watch(&b, TRACKED).await;

    // The next four confirms fail: unless a retry confirms them within the window, those
    // events come back, to either replica.
    standin.inject("ConfirmEvents", Fault::Error("InternalError"), 4);
    let events: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| f1_for(id, &format!("52858907842736{i:05}"), None))
        .collect();
    // In small rounds, so both replicas' long polls are woken and take a share.
    let queued: Vec<_> = events
        .iter()
        .chain(events.iter().take(QUEUED_TWICE))
        .collect();
    for round in queued.chunks(8) {
        for event in round {
            standin.push_event((*event).clone());
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // Every change watched on replica b, until each upload has one.
    let mut changes: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while changes.len() < UPLOADS {
        let change = tokio::time::timeout_at(deadline, watch_b.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {UPLOADS} uploads changed on replica b",
                    changes.len()
                )
            })
            .unwrap()
            .unwrap();
        let upload = change.upload.unwrap();
        assert_eq!(state(&upload), pb::UploadState::Ready, "{upload:?}");
        changes
            .entry(upload.upload_id)
            .or_default()
            .push(change.event_type);
    }
    queue_drained(&standin, Duration::from_secs(20)).await;
    // Give a doubled change the time to show before counting.
    let extra = tokio::time::timeout(Duration::from_millis(500), watch_b.message()).await;
    assert!(extra.is_err(), "a change beyond one per upload: {extra:?}");
    let expected: HashSet<&String> = ids.iter().collect();
    assert_eq!(changes.keys().collect::<HashSet<_>>(), expected);
    for (id, types) in &changes {
        assert_eq!(types, &["NewFileUpload"], "{id}: exactly one change");
    }

    let pulled_a = counter(metrics_a, "vod_signer_events_pulled_total").await;
    let pulled_b = counter(metrics_b, "vod_signer_events_pulled_total").await;
    let duplicates_a = counter(metrics_a, "vod_signer_events_pulled_duplicates_total").await;
    let duplicates_b = counter(metrics_b, "vod_signer_events_pulled_duplicates_total").await;
    eprintln!(
        "pulled a={pulled_a} b={pulled_b}, duplicates a={duplicates_a} b={duplicates_b}, \
         deliveries {}",
        standin.deliveries()
    );
    assert!(
        pulled_a > 0 && pulled_b > 0,
        "both replicas pulled: a={pulled_a} b={pulled_b}"
    );
    // What a stored as new reached the watcher on b.
    assert!(
        pulled_a > duplicates_a,
        "replica a applied none of the changes b's watcher saw"
    );
    assert!(
        standin.deliveries() > (UPLOADS + QUEUED_TWICE) as u64,
        "some events were delivered again"
    );
    assert!(
        duplicates_a + duplicates_b >= (QUEUED_TWICE as u64),
        "each event queued twice is a duplicate the second time"
    );
    a.stop().await;
    b.stop().await;

    // The database itself: each event once, each upload one change.
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let events_stored: Vec<(Option<String>, String)> =
        sqlx::query("SELECT upload_id, delivery FROM events")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(events_stored.len(), UPLOADS, "{events_stored:?}");
    assert!(events_stored.iter().all(|(_, d)| d == "pull"));
    let event_uploads: HashSet<String> = events_stored.into_iter().filter_map(|e| e.0).collect();
    assert_eq!(
        event_uploads.iter().collect::<HashSet<_>>(),
        expected,
        "one stored event per upload"
    );
    let per_upload: Vec<(String, i64)> =
        sqlx::query("SELECT upload_id, count(*) FROM changes GROUP BY upload_id")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(per_upload.len(), UPLOADS);
    assert!(
        per_upload.iter().all(|(_, n)| *n == 1),
        "a doubled change in the feed: {per_upload:?}"
    );
    pool.close().await;
}
