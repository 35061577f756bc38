//! Store-level intake throughput: how many events per second `Tracker::receive` stores and
//! applies when many callers send at once (group commit), on SQLite and on PostgreSQL.
//!
//! `cargo bench --bench tracking_intake [-- EVENTS [CONCURRENCY]]` (defaults 20000 and 256).
//! PostgreSQL is started for the run like the tests do (needs the server installed); set
//! `TRACKING_BENCH_SKIP_POSTGRES=1` to measure SQLite only. Each event is a NewFileUpload for
//! its own tracked upload, so every event is a real write: insert, correlate, derive, change.

#[allow(dead_code)]
#[path = "../tests/it/support/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use vod_signer::config::{PostgresUrl, StoreLocation, TrackingSettings};
use vod_signer::tracking::{Delivery, NewUpload, Receipt, ReceivedEvent, Tracker, UploadId};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(20_000);
    let concurrency = args.get(1).copied().unwrap_or(256);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let sqlite = TrackingSettings::new(StoreLocation::Sqlite(dir.path().join("bench.db")));
    let rate = runtime.block_on(measure(&sqlite, events, concurrency));
    println!(
        "tracking_intake sqlite: {events} events, {concurrency} concurrent: {rate:.0} events/s"
    );

    if std::env::var_os("TRACKING_BENCH_SKIP_POSTGRES").is_none() {
        let server = postgres::PostgresServer::start();
        let pg = TrackingSettings::new(StoreLocation::Postgres(PostgresUrl::new(server.url())));
        let rate = runtime.block_on(measure(&pg, events, concurrency));
        println!(
            "tracking_intake postgres: {events} events, {concurrency} concurrent: {rate:.0} events/s"
        );
    }
}

async fn measure(settings: &TrackingSettings, events: usize, concurrency: usize) -> f64 {
    let tracker = Tracker::open(settings).await.expect("the store opens");
    let now = 1_800_000_000;
    let uploads: Vec<NewUpload> = (0..events)
        .map(|i| NewUpload {
            upload_id: UploadId::generate(),
            caller: "bench".into(),
            user_id: format!("user{}", i % 1000),
            issued_at: now,
            expires_at: now + 3600,
            procedure: None,
            source_context: None,
            session_context: None,
            one_time: true,
        })
        .collect();
    for chunk in uploads.chunks(1000) {
        tracker.record_issued(chunk.to_vec()).await.unwrap();
    }
    // Bodies are built before the clock starts: the bench measures the tracker, not serde.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        uploads
            .iter()
            .enumerate()
            .map(|(i, u)| {
                serde_json::to_vec(&json!({
                    "EventType": "NewFileUpload",
                    "FileUploadEvent": {
                        "FileId": format!("{}", 5_285_890_784_273_533_167_u64 - i as u64),
                        "MediaBasicInfo": {
                            "Name": "clip", "Type": "mp4",
                            "MediaUrl": "http://example.invalid/v.mp4",
                            "SourceInfo": { "SourceType": "Upload",
                                            "SourceContext": u.upload_id.as_str() }
                        },
                        "ProcedureTaskId": "", "ReviewAudioVideoTaskId": "", "MetaData": null
                    }
                }))
                .unwrap()
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (tracker, bodies, next) = (tracker.clone(), bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(raw) = bodies.get(i) else { return };
                let receipt = tracker
                    .receive(ReceivedEvent {
                        raw: raw.clone(),
                        received_at: now + 1,
                        delivery: Delivery::Push,
                    })
                    .await
                    .expect("stored");
                assert_eq!(receipt, Receipt::Applied);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    events as f64 / elapsed.as_secs_f64()
}
