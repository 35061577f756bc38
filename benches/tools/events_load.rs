//! Load for the event receiver (issue 12), driven by `scripts/bench_events.sh`.
//!
//! 1. Intake: issues `--uploads` tracked signatures (IssueSignatureBatch, 100 a call, one call
//!    at a time) and reports how many a second, then POSTs one signed NewFileUpload per upload
//!    over `--connections` keep-alive HTTP/1.1 connections, as fast as the answers come.
//!    Reports events/s answered 200.
//! 2. Watch latency: opens WatchUploads, then POSTs `--latency-events` more NewFileUploads one
//!    at a time (`--latency-rate` per second) and measures, per upload, the time from the 200
//!    to the change arriving on the watch.
//!
//! Secrets come from the environment, never the command line: `BENCH_TOKEN` (the caller's
//! bearer token), `BENCH_PATH_TOKEN`, `BENCH_SIGN_KEY` (optional).
//!
//! With `BENCH_SERVER_PID` set (a server on this machine), it also reports the server's CPU
//! time per event over the intake phase alone, read from `/proc` (`BENCH_CLK_TCK`: clock ticks
//! per second, default 100).
//!
//! Prints `RESULT key=value ...` on stdout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use md5::Digest as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tonic::Request;
use tonic::transport::Channel;
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;
use vod_signer::proto::v1::upload_tracker_client::UploadTrackerClient;

struct Args {
    grpc: String,
    events: SocketAddr,
    uploads: usize,
    connections: usize,
    latency_events: usize,
    latency_rate: u32,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        grpc: String::new(),
        events: "127.0.0.1:0".parse().unwrap(),
        uploads: 20_000,
        connections: 32,
        latency_events: 500,
        latency_rate: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--grpc" => args.grpc = value.clone(),
            "--events" => args.events = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--uploads" => args.uploads = number()?,
            "--connections" => args.connections = number()?,
            "--latency-events" => args.latency_events = number()?,
            "--latency-rate" => args.latency_rate = number()? as u32,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.grpc.is_empty() {
        return Err("--grpc is required".into());
    }
    Ok(args)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn authed<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A NewFileUpload body for `upload_id`, with `Sign`/`T` when a SignKey is given.
fn event_body(upload_id: &str, file_id: u64, signed: Option<&(i64, String)>) -> Vec<u8> {
    let auth = match signed {
        Some((t, sign)) => format!(r#","T":{t},"Sign":"{sign}""#),
        None => String::new(),
    };
    format!(
        r#"{{"EventType":"NewFileUpload","FileUploadEvent":{{"FileId":"{file_id}","MediaBasicInfo":{{"Name":"bench","Type":"mp4","MediaUrl":"http://vod.example/{file_id}.mp4","CoverUrl":"","SourceInfo":{{"SourceType":"Upload","SourceContext":"{upload_id}"}}}},"ProcedureTaskId":"","MetaData":{{"Size":1048576,"Duration":12.5}}}}{auth}}}"#
    )
    .into_bytes()
}

/// One keep-alive HTTP/1.1 connection: a POST, then its status (the body is read and dropped).
struct HttpConnection {
    stream: BufReader<TcpStream>,
    host: String,
}

impl HttpConnection {
    async fn open(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(HttpConnection {
            stream: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    async fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

async fn issue_uploads(
    signer: &mut UploadSignerClient<Channel>,
    token: &str,
    user: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let n = (count - ids.len()).min(100) as u32;
        let batch = signer
            .issue_signature_batch(authed(
                token,
                pb::IssueSignatureBatchRequest {
                    request: Some(pb::IssueSignatureRequest {
                        user_id: user.into(),
                        validity_seconds: 3600,
                        params: None,
                    }),
                    count: n,
                },
            ))
            .await
            .expect("tracked signatures are issued")
            .into_inner();
        ids.extend(batch.signatures.into_iter().map(|s| s.upload_id));
    }
    assert!(
        ids.iter().all(|id| !id.is_empty()),
        "the caller must have track_uploads"
    );
    ids
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("events_load: {e}");
            std::process::exit(2);
        }
    };
    let token = env("BENCH_TOKEN").expect("BENCH_TOKEN is set");
    let path = format!(
        "/vod/events/{}",
        env("BENCH_PATH_TOKEN").expect("BENCH_PATH_TOKEN is set")
    );
    let signed = env("BENCH_SIGN_KEY").map(|key| {
        let t = now() + 900;
        let sign = hex::encode(md5::Md5::digest(format!("{key}{t}").as_bytes()));
        (t, sign)
    });
    let channel = Channel::from_shared(args.grpc.clone())
        .unwrap()
        .connect()
        .await
        .expect("the gRPC endpoint answers");
    let mut signer = UploadSignerClient::new(channel.clone());

    // Intake.
    let issue_started = Instant::now();
    let ids = issue_uploads(&mut signer, &token, "bench-intake", args.uploads).await;
    let issued_per_s = ids.len() as f64 / issue_started.elapsed().as_secs_f64();
    eprintln!(
        "issue: {} tracked signatures at {issued_per_s:.0}/s",
        ids.len()
    );
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        ids.iter()
            .enumerate()
            .map(|(i, id)| event_body(id, 7_000_000_000_000 + i as u64, signed.as_ref()))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let server_pid = env("BENCH_SERVER_PID");
    let cpu_before = server_pid.as_deref().and_then(cpu_seconds);
    let own_before = cpu_seconds("self");
    let machine_before = machine_ticks();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (bodies, next, failures, path) =
            (bodies.clone(), next.clone(), failures.clone(), path.clone());
        let addr = args.events;
        tasks.push(tokio::spawn(async move {
            let mut connection = HttpConnection::open(addr)
                .await
                .expect("receiver reachable");
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                match connection.post(&path, body).await {
                    Ok(200) => {}
                    Ok(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        connection = HttpConnection::open(addr).await.expect("reconnect");
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = server_pid.as_deref().and_then(cpu_seconds);
    let own_after = cpu_seconds("self");
    let machine_after = machine_ticks();
    let failed = failures.load(Ordering::Relaxed);
    let intake_rate = (bodies.len() - failed) as f64 / elapsed;
    // Unlike events/s, CPU per event hardly moves when other work shares the cores.
    let cpu_us_per_event = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => {
            format!("{:.0}", (after - before) * 1e6 / bodies.len() as f64)
        }
        _ => "-".to_owned(),
    };
    let load_cpu_us_per_event = match (own_before, own_after) {
        (Some(before), Some(after)) => {
            format!("{:.0}", (after - before) * 1e6 / bodies.len() as f64)
        }
        _ => "-".to_owned(),
    };
    // Whether the cores were the limit: the share of all CPU time that was busy.
    let machine_busy_pct = match (machine_before, machine_after) {
        (Some((busy0, all0)), Some((busy1, all1))) if all1 > all0 => {
            format!("{:.0}", (busy1 - busy0) * 100.0 / (all1 - all0))
        }
        _ => "-".to_owned(),
    };
    eprintln!(
        "intake: {} events in {elapsed:.2} s over {} connections: {intake_rate:.0} events/s answered 200, {failed} not 200",
        bodies.len(),
        args.connections
    );

    // Watch latency.
    let ids = issue_uploads(&mut signer, &token, "bench-latency", args.latency_events).await;
    let answered: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut watch = UploadTrackerClient::new(channel)
        .watch_uploads(authed(
            &token,
            pb::WatchUploadsRequest {
                after_cursor: String::new(),
                user_id: "bench-latency".into(),
            },
        ))
        .await
        .expect("the watch opens")
        .into_inner();
    let watcher = {
        let arrived = arrived.clone();
        let expected = ids.len();
        tokio::spawn(async move {
            while let Ok(Some(change)) = watch.message().await {
                let at = Instant::now();
                let id = change.upload.map(|u| u.upload_id).unwrap_or_default();
                let mut arrived = arrived.lock().await;
                arrived.entry(id).or_insert(at);
                if arrived.len() >= expected {
                    break;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut connection = HttpConnection::open(args.events).await.unwrap();
    let gap = Duration::from_secs_f64(1.0 / f64::from(args.latency_rate.max(1)));
    let mut tick = tokio::time::interval(gap);
    for (i, id) in ids.iter().enumerate() {
        tick.tick().await;
        let body = event_body(id, 8_000_000_000_000 + i as u64, signed.as_ref());
        let status = connection.post(&path, &body).await.unwrap();
        assert_eq!(status, 200);
        answered.lock().await.insert(id.clone(), Instant::now());
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), watcher).await;
    let answered = answered.lock().await;
    let arrived = arrived.lock().await;
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let mut missing = 0;
    for (id, ok_at) in answered.iter() {
        match arrived.get(id) {
            // A change that arrived before the 200 was read counts as 0.
            Some(at) => latency
                .record(at.saturating_duration_since(*ok_at).as_micros() as u64)
                .unwrap(),
            None => missing += 1,
        }
    }
    eprintln!(
        "watch: {} changes, after the 200: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {missing} never seen",
        latency.len(),
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max()),
    );
    println!(
        "RESULT events={} connections={} issued_per_s={issued_per_s:.0} events_per_s={intake_rate:.0} cpu_us_per_event={cpu_us_per_event} load_cpu_us_per_event={load_cpu_us_per_event} machine_busy_pct={machine_busy_pct} not_200={failed} watch_changes={} watch_p50_ms={:.2} watch_p99_ms={:.2} watch_max_ms={:.2} watch_missing={missing}",
        bodies.len(),
        args.connections,
        latency.len(),
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        ms(latency.max()),
    );
}

/// Busy and total clock ticks of all CPUs so far (the `cpu` line of `/proc/stat`; idle and
/// iowait count as not busy).
fn machine_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let all: f64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((all - idle, all))
}

/// User plus system CPU time of process `pid` (or `self`) so far, in seconds (Linux `/proc`).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // Clock ticks per second: `getconf CLK_TCK`, which the script passes; 100 on Linux.
    let per_second: f64 = env("BENCH_CLK_TCK")
        .and_then(|t| t.parse().ok())
        .unwrap_or(100.0);
    Some(ticks / per_second)
}
