//! A gRPC load generator for `vod-signer` (and the bare `echo_server` example), loopback only.
//!
//! Calls are made over raw HTTP/2 (the `h2` crate, as h2load would: the request is encoded
//! once, nothing is buffered on the way), so the generator leaves as much of the machine as it
//! can to the server it loads. They go over `--connections` connections, `--concurrency` at a time, for
//! `--warmup` then `--duration` seconds (only the second part is recorded). Two modes:
//!
//! - closed loop (default): every worker sends its next call as soon as the last one returns,
//!   so the service runs at saturation; latency is measured per call.
//! - open loop (`--rate R`): calls are scheduled at fixed times `start + i / R`, whatever the
//!   service does. Latency is measured from the time a call *should* have been sent, so a
//!   service that stalls is charged for the calls that queued behind the stall (no coordinated
//!   omission). A worker that was idle and woke up late from tokio's millisecond timer is not
//!   charged for the timer's lateness: that delay is the generator's, not the service's.
//!
//! Results are counted by gRPC status code. Latency percentiles are reported separately for
//! successful calls and for refused ones (`RESOURCE_EXHAUSTED`/`UNAVAILABLE`), which should be
//! refused fast. The last line, `RESULT key=value ...`, is for scripts (`scripts/bench.sh`).
//!
//! ```text
//! cargo run --release --example loadgen -- --target 127.0.0.1:50051 --token "$TOKEN" \
//!     --connections 4 --concurrency 64 --duration 10
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use http::{HeaderMap, Request};
use prost::Message;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tonic::Code;
use vod_signer::proto::v1 as pb;

#[derive(Debug, Parser)]
#[command(about = "gRPC load generator for vod-signer (loopback only)")]
struct Args {
    /// The server; only loopback addresses are accepted.
    #[arg(long, default_value = "127.0.0.1:50051")]
    target: SocketAddr,
    /// Bearer token sent as `authorization: Bearer <token>` (none for the echo server).
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Which call to make.
    #[arg(long, value_enum, default_value_t = Rpc::Issue)]
    rpc: Rpc,
    /// HTTP/2 connections to open.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight at once (closed loop), or at most (open loop).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop at this many calls per second; closed loop without it.
    #[arg(long)]
    rate: Option<f64>,
    /// Recorded seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unrecorded seconds before, to warm up connections and allocators.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Deadline of each call, sent as `grpc-timeout` and enforced locally too.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Signatures per `IssueSignatureBatch` call.
    #[arg(long, default_value_t = 100)]
    batch_count: u32,
    /// `procedure` of the issued signatures (must be allowed by the caller's policy).
    #[arg(long, default_value = "QCVB_SimpleProcessFile")]
    procedure: String,
    /// A name for this run, repeated in the RESULT line.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Rpc {
    Issue,
    Batch,
    Verify,
}

/// One call as it goes on the wire, built once: the request head (path and metadata) and the
/// length-prefixed protobuf body, shared by every call of the run.
#[derive(Clone)]
struct Call {
    head: Arc<http::request::Parts>,
    body: Bytes,
}

impl Call {
    fn new(args: &Args, method: &str, message: &impl Message) -> Self {
        let mut request = Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/vod.signer.v1.UploadSigner/{method}",
                args.target
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            // The deadline the server enforces (the generator enforces it too).
            .header("grpc-timeout", format!("{}m", args.timeout_ms));
        if let Some(token) = &args.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let (head, ()) = request.body(()).expect("valid request head").into_parts();
        // gRPC framing: a zero byte (not compressed), the length, the message.
        let mut body = BytesMut::with_capacity(5 + message.encoded_len());
        body.put_u8(0);
        body.put_u32(message.encoded_len() as u32);
        message.encode(&mut body).expect("enough capacity");
        Call {
            head: Arc::new(head),
            body: body.freeze(),
        }
    }
}

/// Per-worker results, merged at the end (no sharing while the load runs).
struct Tally {
    ok: Histogram<u64>,
    refused: Histogram<u64>,
    codes: BTreeMap<i32, u64>,
}

impl Tally {
    fn new() -> Tally {
        // Nanoseconds, 1 ns to 100 s, 3 significant digits.
        let histogram = || Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("bounds");
        Tally {
            ok: histogram(),
            refused: histogram(),
            codes: BTreeMap::new(),
        }
    }

    fn record(&mut self, code: Code, latency: Duration) {
        let ns = (latency.as_nanos() as u64).clamp(1, 100_000_000_000);
        match code {
            Code::Ok => self.ok.record(ns).expect("clamped"),
            Code::ResourceExhausted | Code::Unavailable => {
                self.refused.record(ns).expect("clamped")
            }
            _ => {}
        }
        *self.codes.entry(code as i32).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.ok.add(other.ok).expect("same bounds");
        self.refused.add(other.refused).expect("same bounds");
        for (code, n) in other.codes {
            *self.codes.entry(code).or_default() += n;
        }
    }
}

/// How long after the end a worker behind its open-loop schedule may go on.
const GIVE_UP_AFTER: Duration = Duration::from_secs(10);

struct Schedule {
    /// Recording starts here (after the warm-up) ...
    measure_from: Instant,
    /// ... and no call starts after this.
    stop_at: Instant,
    /// Open loop: the interval between intended send times, and the next slot to take.
    period: Option<Duration>,
    next_slot: AtomicU64,
    start: Instant,
}

fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    let value = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(Code::from(value))
}

/// One call over raw HTTP/2, the way h2load would make it: no client-side encoding, no
/// buffering task, so the generator takes as little of the machine's CPU as it can.
async fn call(client: &h2::client::SendRequest<Bytes>, call: &Call, timeout: Duration) -> Code {
    let exchange = async {
        let mut request = Request::new(());
        *request.method_mut() = call.head.method.clone();
        *request.uri_mut() = call.head.uri.clone();
        *request.headers_mut() = call.head.headers.clone();
        let mut client = client.clone().ready().await?;
        let (response, mut send) = client.send_request(request, false)?;
        send.send_data(call.body.clone(), true)?;
        let (head, mut body) = response.await?.into_parts();
        // A trailers-only response (every error) carries the status in its headers.
        if let Some(code) = grpc_status(&head.headers) {
            return Ok(code);
        }
        while let Some(chunk) = body.data().await {
            let chunk = chunk?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await?;
        Ok::<_, h2::Error>(
            trailers
                .as_ref()
                .and_then(grpc_status)
                .unwrap_or(Code::Unknown),
        )
    };
    match tokio::time::timeout(timeout + Duration::from_secs(1), exchange).await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) if e.is_remote() || e.reason().is_some() => Code::Unavailable,
        Ok(Err(_)) => Code::Internal,
        Err(_) => Code::DeadlineExceeded,
    }
}

async fn worker(
    client: h2::client::SendRequest<Bytes>,
    message: Call,
    timeout: Duration,
    schedule: Arc<Schedule>,
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let (intended, timer_lateness) = match schedule.period {
            None => (Instant::now(), Duration::ZERO),
            Some(period) => {
                let slot = schedule.next_slot.fetch_add(1, Ordering::Relaxed);
                let intended = schedule.start + period.mul_f64(slot as f64);
                if intended > schedule.stop_at {
                    break;
                }
                if Instant::now() < intended {
                    tokio::time::sleep_until(intended).await;
                    (intended, Instant::now() - intended)
                } else {
                    (intended, Duration::ZERO)
                }
            }
        };
        // Bounded in time even if the service stalls: a worker far behind its open-loop
        // schedule stops catching up 10 s after the end.
        if intended > schedule.stop_at || Instant::now() > schedule.stop_at + GIVE_UP_AFTER {
            break;
        }
        let code = call(&client, &message, timeout).await;
        if intended >= schedule.measure_from {
            tally.record(code, intended.elapsed().saturating_sub(timer_lateness));
        }
    }
    tally
}

fn issue_request(procedure: &str) -> pb::IssueSignatureRequest {
    pb::IssueSignatureRequest {
        user_id: "user-48151623".into(),
        validity_seconds: 0,
        params: Some(pb::UploadParams {
            procedure: Some(procedure.into()),
            source_context: Some(r#"{"uploadId":"9f1c2a7e-0d4b","app":"ios"}"#.into()),
            one_time_valid: true,
            ..Default::default()
        }),
    }
}

fn micros(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if !args.target.ip().is_loopback() {
        return Err(format!("refusing to load {}: loopback addresses only", args.target).into());
    }
    if args.connections == 0 || args.concurrency == 0 {
        return Err("--connections and --concurrency must be at least 1".into());
    }
    let timeout = Duration::from_millis(args.timeout_ms);

    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let tcp = TcpStream::connect(args.target).await?;
        tcp.set_nodelay(true)?;
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, Bytes>(tcp)
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        connections.push(client);
    }

    let token = args.token.as_deref();
    let issue = issue_request(&args.procedure);
    let message = match args.rpc {
        Rpc::Issue => Call::new(&args, "IssueSignature", &issue),
        Rpc::Batch => Call::new(
            &args,
            "IssueSignatureBatch",
            &pb::IssueSignatureBatchRequest {
                request: Some(issue),
                count: args.batch_count,
            },
        ),
        Rpc::Verify => {
            // Verify a real signature: ask the service for one first, with tonic's client.
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", args.target))?
                    .connect()
                    .await?;
            let mut client = pb::upload_signer_client::UploadSignerClient::new(channel);
            let mut request = tonic::Request::new(issue);
            if let Some(token) = token {
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse()?);
            }
            let signature = client
                .issue_signature(request)
                .await?
                .into_inner()
                .signature;
            Call::new(
                &args,
                "VerifySignature",
                &pb::VerifySignatureRequest { signature },
            )
        }
    };

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let schedule = Arc::new(Schedule {
        measure_from,
        stop_at: measure_from + Duration::from_secs_f64(args.duration),
        period: args.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
        next_slot: AtomicU64::new(0),
        start,
    });
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            tokio::spawn(worker(
                connections[i % connections.len()].clone(),
                message.clone(),
                timeout,
                schedule.clone(),
            ))
        })
        .collect();
    let mut tally = Tally::new();
    for w in workers {
        tally.merge(w.await?);
    }

    let calls: u64 = tally.codes.values().sum();
    let ok = tally.ok.len();
    let rate = calls as f64 / args.duration;
    let ok_rate = ok as f64 / args.duration;
    let per_call = if args.rpc == Rpc::Batch {
        u64::from(args.batch_count)
    } else {
        1
    };
    let codes: Vec<String> = tally
        .codes
        .iter()
        .map(|(&code, n)| format!("{:?}:{n}", Code::from(code)))
        .collect();
    let mode = match args.rate {
        Some(r) => format!("open loop at {r:.0}/s"),
        None => "closed loop".into(),
    };
    println!(
        "{} {:?}: {mode}, {} connections, {} in flight, {:.1} s recorded",
        args.label, args.rpc, args.connections, args.concurrency, args.duration
    );
    println!("  calls {calls} ({rate:.0}/s), ok {ok} ({ok_rate:.0}/s)");
    if per_call > 1 {
        println!("  signatures {:.0}/s", ok_rate * per_call as f64);
    }
    let q = |h: &Histogram<u64>, p: f64| micros(h.value_at_quantile(p));
    println!(
        "  ok latency us: p50 {} p90 {} p99 {} p99.9 {} max {}",
        q(&tally.ok, 0.5),
        q(&tally.ok, 0.9),
        q(&tally.ok, 0.99),
        q(&tally.ok, 0.999),
        micros(tally.ok.max())
    );
    if !tally.refused.is_empty() {
        println!(
            "  refused latency us: p50 {} p99 {} max {}",
            q(&tally.refused, 0.5),
            q(&tally.refused, 0.99),
            micros(tally.refused.max())
        );
    }
    println!("  status {}", codes.join(" "));
    println!(
        "RESULT label={} rpc={:?} calls={calls} rate={rate:.0} ok={ok} ok_rate={ok_rate:.0} \
         signatures_per_s={:.0} p50_us={} p90_us={} p99_us={} p999_us={} max_us={} \
         refused={} refused_p99_us={} codes={}",
        args.label,
        args.rpc,
        ok_rate * per_call as f64,
        q(&tally.ok, 0.5),
        q(&tally.ok, 0.9),
        q(&tally.ok, 0.99),
        q(&tally.ok, 0.999),
        micros(tally.ok.max()),
        tally.refused.len(),
        q(&tally.refused, 0.99),
        codes.join(",")
    );
    Ok(())
}
