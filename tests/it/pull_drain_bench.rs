//! The measurement behind `scripts/bench_pull.sh`: how fast one consumer drains VOD's queue
//! (the stand-in's) into the SQLite tracker. Ignored by `cargo test`: it asserts nothing about
//! time, it prints a `RESULT` line for the script (run it with `--release --ignored`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::pull::*;
use tokio::sync::oneshot;
use vod_signer::metrics::Metrics;
use vod_signer::pull::{Consumer, PullTiming};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by scripts/bench_pull.sh"]
async fn drain_the_queue() {
    let events = env_or("PULL_BENCH_EVENTS", 20_000);
    let standin = StandIn::start(StandInTiming {
        long_poll: Duration::from_millis(500),
        confirm_window: Duration::from_secs(30),
    })
    .await;
    let dir = TrackerDir::new();
    let tracker = dir.open().await;
    // Tracked uploads, so every event is correlated and applied, as in production.
    let ids = issue(&tracker, events, None).await;
    for (i, id) in ids.iter().enumerate() {
        standin.push_event(new_file_upload(
            id,
            &format!("{}", 5_285_890_784_000_000u64 + i as u64),
            "",
        ));
    }
    let metrics = Arc::new(Metrics::new());
    let consumer = Consumer::new(
        api_client(&standin.endpoint(), STANDIN_SECRET_KEY),
        tracker.clone(),
        metrics,
        PullTiming::default(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let started = Instant::now();
    let task = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    while standin.unconfirmed() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    task.await.unwrap();
    let rate = events as f64 / elapsed.as_secs_f64();
    let redelivered = standin.deliveries() - events as u64;
    println!(
        "RESULT pull_drain events={events} seconds={:.3} events_per_second={rate:.0} redelivered={redelivered}",
        elapsed.as_secs_f64()
    );
}
