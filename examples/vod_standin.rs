//! A local stand-in for VOD's event queue (PullEvents/ConfirmEvents/DescribeTaskDetail), to try
//! reliable (PULL) mode without a Tencent account. It is the tests' stand-in
//! (`tests/it/support/pull/standin.rs`), accepting the development key of `serve --dev`.
//!
//! ```text
//! cargo run --example vod_standin -- 127.0.0.1:9100
//! ```
//! Each line on standard input is queued as one event (a 3.0 event body, e.g. a fixture from
//! `../shared/vectors/vod-events/` on one line); `[events.pull] endpoint =
//! "http://127.0.0.1:9100"` makes vod-signer pull it.

#[path = "../tests/it/support/pull/standin.rs"]
#[allow(dead_code)]
mod standin;

use std::io::BufRead;

use standin::{StandIn, StandInTiming};
use vod_signer::config::{DEV_SECRET_ID, DEV_SECRET_KEY};

#[tokio::main]
async fn main() {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("vod_standin: cannot listen on {listen}: {e}");
            std::process::exit(2);
        }
    };
    // VOD's own timings: a 5 s long poll, a 30 s confirm window.
    let timing = StandInTiming {
        long_poll: std::time::Duration::from_secs(5),
        confirm_window: std::time::Duration::from_secs(30),
    };
    let standin = StandIn::serve(listener, timing, DEV_SECRET_ID, DEV_SECRET_KEY);
    eprintln!(
        "VOD API stand-in on {} (key {DEV_SECRET_ID}); one event body per stdin line is queued",
        standin.endpoint()
    );
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    // After standard input closes, what is queued is served until Ctrl-C.
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            line = lines_rx.recv(), if stdin_open => match line {
                Some(line) if line.trim().is_empty() => {}
                Some(line) => match serde_json::from_str::<serde_json::Value>(&line) {
                    Ok(event @ serde_json::Value::Object(_)) => {
                        let id = standin.push_event(event);
                        eprintln!("queued event {id}");
                    }
                    _ => eprintln!("not a JSON object, ignored"),
                },
                None => stdin_open = false,
            },
        }
    }
}
