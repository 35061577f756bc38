//! A gRPC load generator for `vod-signer` (and the bare `echo_server` example), loopback only.
//!
//! Calls go over `--connections` HTTP/2 connections, `--concurrency` at a time, for
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

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use tokio::time::Instant;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use vod_signer::proto::v1 as pb;
use vod_signer::proto::v1::upload_signer_client::UploadSignerClient;

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

/// What one call sends: the message is built once and cloned per call.
#[derive(Clone)]
enum Call {
    Issue(pb::IssueSignatureRequest),
    Batch(pb::IssueSignatureBatchRequest),
    Verify(pb::VerifySignatureRequest),
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

async fn call(
    client: &mut UploadSignerClient<Channel>,
    call: &Call,
    token: Option<&MetadataValue<tonic::metadata::Ascii>>,
    timeout: Duration,
) -> Code {
    fn prepare<T>(
        message: T,
        token: Option<&MetadataValue<tonic::metadata::Ascii>>,
        timeout: Duration,
    ) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        request
    }
    let result = tokio::time::timeout(timeout + Duration::from_secs(1), async {
        match call {
            Call::Issue(m) => client
                .issue_signature(prepare(m.clone(), token, timeout))
                .await
                .map(drop),
            Call::Batch(m) => client
                .issue_signature_batch(prepare(m.clone(), token, timeout))
                .await
                .map(drop),
            Call::Verify(m) => client
                .verify_signature(prepare(m.clone(), token, timeout))
                .await
                .map(drop),
        }
    })
    .await;
    match result {
        Ok(Ok(())) => Code::Ok,
        Ok(Err(status)) => status.code(),
        Err(_) => Code::DeadlineExceeded,
    }
}

async fn worker(
    mut client: UploadSignerClient<Channel>,
    message: Call,
    token: Option<MetadataValue<tonic::metadata::Ascii>>,
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
        let code = call(&mut client, &message, token.as_ref(), timeout).await;
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
    let token = args
        .token
        .as_deref()
        .map(|t| MetadataValue::try_from(format!("Bearer {t}")))
        .transpose()?;
    let timeout = Duration::from_millis(args.timeout_ms);

    let endpoint = Endpoint::from_shared(format!("http://{}", args.target))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // Each `connect` opens its own HTTP/2 connection.
        channels.push(endpoint.connect().await?);
    }

    let message = match args.rpc {
        Rpc::Issue => Call::Issue(issue_request(&args.procedure)),
        Rpc::Batch => Call::Batch(pb::IssueSignatureBatchRequest {
            request: Some(issue_request(&args.procedure)),
            count: args.batch_count,
        }),
        Rpc::Verify => {
            // Verify a real signature: ask the service for one first.
            let mut client = UploadSignerClient::new(channels[0].clone());
            let mut request = Request::new(issue_request(&args.procedure));
            if let Some(token) = &token {
                request
                    .metadata_mut()
                    .insert("authorization", token.clone());
            }
            let signature = client
                .issue_signature(request)
                .await?
                .into_inner()
                .signature;
            Call::Verify(pb::VerifySignatureRequest { signature })
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
            let client = UploadSignerClient::new(channels[i % channels.len()].clone())
                .max_decoding_message_size(16 * 1024 * 1024);
            tokio::spawn(worker(
                client,
                message.clone(),
                token.clone(),
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
