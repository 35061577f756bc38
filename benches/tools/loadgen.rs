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
//! Results are counted by outcome: the gRPC status the server sent (`Ok`, `ResourceExhausted`,
//! ...), from the response headers or trailers, whenever a complete response arrived; otherwise
//! `Reset:<REASON>` (the server reset the stream before a status), `GoAway:<REASON>` (it closed
//! the connection), `MissingStatus` (a response without `grpc-status`), or `LocalError:<kind>`
//! for the generator's own failures (`timeout`: no answer within the deadline plus 1 s; `io`,
//! `protocol`, `open_stream`, `send_body`, `h2`), which are never reported as a gRPC code. Latency
//! percentiles are reported separately for successful calls and for refused ones
//! (`RESOURCE_EXHAUSTED`/`UNAVAILABLE`, or `Reset:REFUSED_STREAM`), which should be refused fast.
//! `NotSent` counts open-loop calls of the recorded window that were never sent because the
//! generator gave up catching up 10 s after the end (overload), so `rate` is still the
//! offered rate. `ok_rate` counts OK calls *scheduled* in the recorded window, `ok_done_rate` OK answers that
//! *arrived* in it; they differ when an open loop falls behind and drains its backlog late.
//! The last line, `RESULT key=value ...`, is for scripts (`scripts/bench.sh`).
//!
//! ```text
//! cargo run --release --example loadgen -- --target 127.0.0.1:50051 --token "$TOKEN" \
//!     --connections 4 --concurrency 64 --duration 10
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use h2::Reason;
use h2::client::{ResponseFuture, SendRequest};
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
    codes: BTreeMap<Outcome, u64>,
    /// OK answers that arrived inside the recorded window, whenever they were scheduled: what
    /// the server delivered. An open loop that falls behind drains its backlog after the
    /// window, so its `ok` (calls *scheduled* in the window) can exceed what the server did.
    ok_done_in_window: u64,
}

impl Tally {
    fn new() -> Tally {
        // Nanoseconds, 1 ns to 100 s, 3 significant digits.
        let histogram = || Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("bounds");
        Tally {
            ok: histogram(),
            refused: histogram(),
            codes: BTreeMap::new(),
            ok_done_in_window: 0,
        }
    }

    fn record(&mut self, outcome: Outcome, latency: Duration) {
        let ns = (latency.as_nanos() as u64).clamp(1, 100_000_000_000);
        if outcome == Outcome::Status(Code::Ok as i32) {
            self.ok.record(ns).expect("clamped");
        } else if outcome.is_refusal() {
            self.refused.record(ns).expect("clamped");
        }
        *self.codes.entry(outcome).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.ok.add(other.ok).expect("same bounds");
        self.refused.add(other.refused).expect("same bounds");
        self.ok_done_in_window += other.ok_done_in_window;
        for (outcome, n) in other.codes {
            *self.codes.entry(outcome).or_default() += n;
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

impl Schedule {
    /// When the workers have stopped: the open-loop slots of the recorded window that no
    /// worker took, all of them behind schedule when they gave up.
    fn untaken_slots_in_window(&self) -> u64 {
        let Some(period) = self.period else {
            return 0;
        };
        let mut untaken = 0;
        for slot in self.next_slot.load(Ordering::Relaxed).. {
            // The same arithmetic as the workers', so a slot is in or out for both alike.
            let intended = self.start + period.mul_f64(slot as f64);
            if intended > self.stop_at {
                break;
            }
            if intended >= self.measure_from {
                untaken += 1;
            }
        }
        untaken
    }
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

/// What became of one call. Ordered so that the report lists statuses first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// The server's `grpc-status` (a `tonic::Code` as i32: `Code` has no `Ord`).
    Status(i32),
    /// A complete response without `grpc-status`: the server broke the gRPC protocol.
    MissingStatus,
    /// The server reset the stream (RST_STREAM) before a status arrived; the HTTP/2 error code
    /// (u32: `Reason` has no `Ord`).
    Reset(u32),
    /// The server closed the connection (GOAWAY) before a status arrived; the error code.
    GoAway(u32),
    /// The generator failed on its own side and saw no status. Kept apart from the gRPC codes
    /// so that a local failure never reads as the server's answer.
    Local(LocalError),
    /// Open loop: a call scheduled in the recorded window that was never sent, because the
    /// generator was still that far behind its schedule `GIVE_UP_AFTER` the end. Counted so
    /// that an overloaded run still shows all the load it was offered.
    NotSent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LocalError {
    /// No answer within the call's deadline plus 1 s.
    Timeout,
    /// The connection failed with an I/O error.
    Io,
    /// Our h2 found the server breaking HTTP/2 and reset the stream or the connection.
    Protocol,
    /// The stream could not be opened (`send_request` refused it).
    OpenStream,
    /// The request body could not be sent, and no status came back after all.
    SendBody,
    /// Any other error h2 raised on our side.
    H2,
}

impl Outcome {
    /// Refusals, which a service under overload should return fast: the gRPC codes for "try
    /// again later" and HTTP/2's own "stream not processed".
    fn is_refusal(self) -> bool {
        const EXHAUSTED: i32 = Code::ResourceExhausted as i32;
        const UNAVAILABLE: i32 = Code::Unavailable as i32;
        match self {
            Outcome::Status(code) => code == EXHAUSTED || code == UNAVAILABLE,
            Outcome::Reset(reason) => Reason::from(reason) == Reason::REFUSED_STREAM,
            _ => false,
        }
    }

    /// Classifies an h2 error seen before any status; `ours` names what we were doing, for
    /// errors our own side raised (a user error, or the reset we sent).
    fn from_h2(e: &h2::Error, ours: LocalError) -> Outcome {
        match e.reason() {
            _ if e.is_io() => Outcome::Local(LocalError::Io),
            Some(reason) if e.is_remote() && e.is_go_away() => Outcome::GoAway(reason.into()),
            Some(reason) if e.is_remote() => Outcome::Reset(reason.into()),
            _ if e.is_library() => Outcome::Local(LocalError::Protocol),
            _ => Outcome::Local(ours),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status(code) => write!(f, "{:?}", Code::from(*code)),
            Outcome::MissingStatus => f.write_str("MissingStatus"),
            Outcome::NotSent => f.write_str("NotSent"),
            Outcome::Reset(reason) => write!(f, "Reset:{:?}", Reason::from(*reason)),
            Outcome::GoAway(reason) => write!(f, "GoAway:{:?}", Reason::from(*reason)),
            Outcome::Local(kind) => {
                let kind = match kind {
                    LocalError::Timeout => "timeout",
                    LocalError::Io => "io",
                    LocalError::Protocol => "protocol",
                    LocalError::OpenStream => "open_stream",
                    LocalError::SendBody => "send_body",
                    LocalError::H2 => "h2",
                };
                write!(f, "LocalError:{kind}")
            }
        }
    }
}

/// One call over raw HTTP/2, the way h2load would make it: no client-side encoding, no
/// buffering task, so the generator takes as little of the machine's CPU as it can.
async fn call(client: &SendRequest<Bytes>, call: &Call, timeout: Duration) -> Outcome {
    let exchange = async {
        let mut request = Request::new(());
        *request.method_mut() = call.head.method.clone();
        *request.uri_mut() = call.head.uri.clone();
        *request.headers_mut() = call.head.headers.clone();
        let opened = match client.clone().ready().await {
            Ok(mut client) => client.send_request(request, false),
            Err(e) => Err(e),
        };
        match opened {
            Ok((response, send)) => finish(response, send, call.body.clone()).await,
            Err(e) => Outcome::from_h2(&e, LocalError::OpenStream),
        }
    };
    tokio::time::timeout(timeout + Duration::from_secs(1), exchange)
        .await
        .unwrap_or(Outcome::Local(LocalError::Timeout))
}

/// Sends the request body on an opened stream and reads the answer.
///
/// The server's answer decides the outcome, even when sending the body failed: a server may
/// answer before reading the body, then reset the stream with RST_STREAM(NO_ERROR) to say it
/// wants no more (RFC 9113 section 8.1; h2 does this for every server, tonic's included, that
/// refuses a call without reading its message). If both frames arrive between `send_request`
/// and `send_data` (this thread preempted in between), the stream is already closed and
/// `send_data` fails although a complete response is waiting in h2's buffer.
async fn finish(response: ResponseFuture, mut send: h2::SendStream<Bytes>, body: Bytes) -> Outcome {
    let ours = match send.send_data(body, true) {
        Ok(()) => LocalError::H2,
        Err(_) => {
            // A closed stream ignores this; an open one must not wait for a body that will
            // never come.
            send.send_reset(Reason::CANCEL);
            LocalError::SendBody
        }
    };
    let (head, mut body) = match response.await {
        Ok(response) => response.into_parts(),
        Err(e) => return Outcome::from_h2(&e, ours),
    };
    // A trailers-only response (every error) carries the status in its headers.
    if let Some(code) = grpc_status(&head.headers) {
        return Outcome::Status(code as i32);
    }
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Err(e) => return Outcome::from_h2(&e, ours),
        }
    }
    match body.trailers().await {
        Ok(trailers) => trailers
            .as_ref()
            .and_then(grpc_status)
            .map_or(Outcome::MissingStatus, |code| Outcome::Status(code as i32)),
        Err(e) => Outcome::from_h2(&e, ours),
    }
}

async fn worker(
    client: SendRequest<Bytes>,
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
        if intended > schedule.stop_at {
            break;
        }
        // Bounded in time even if the service stalls: a worker far behind its open-loop
        // schedule stops catching up 10 s after the end.
        if Instant::now() > schedule.stop_at + GIVE_UP_AFTER {
            if intended >= schedule.measure_from {
                *tally.codes.entry(Outcome::NotSent).or_default() += 1;
            }
            break;
        }
        let outcome = call(&client, &message, timeout).await;
        let done = Instant::now();
        if outcome == Outcome::Status(Code::Ok as i32)
            && (schedule.measure_from..=schedule.stop_at).contains(&done)
        {
            tally.ok_done_in_window += 1;
        }
        if intended >= schedule.measure_from {
            tally.record(outcome, intended.elapsed().saturating_sub(timer_lateness));
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
    let untaken = schedule.untaken_slots_in_window();
    if untaken > 0 {
        *tally.codes.entry(Outcome::NotSent).or_default() += untaken;
    }

    let calls: u64 = tally.codes.values().sum();
    let ok = tally.ok.len();
    let rate = calls as f64 / args.duration;
    let ok_rate = ok as f64 / args.duration;
    let ok_done_rate = tally.ok_done_in_window as f64 / args.duration;
    let per_call = if args.rpc == Rpc::Batch {
        u64::from(args.batch_count)
    } else {
        1
    };
    let codes: Vec<String> = tally
        .codes
        .iter()
        .map(|(outcome, n)| format!("{outcome}:{n}"))
        .collect();
    let mode = match args.rate {
        Some(r) => format!("open loop at {r:.0}/s"),
        None => "closed loop".into(),
    };
    println!(
        "{} {:?}: {mode}, {} connections, {} in flight, {:.1} s recorded",
        args.label, args.rpc, args.connections, args.concurrency, args.duration
    );
    println!(
        "  calls {calls} ({rate:.0}/s), ok {ok} ({ok_rate:.0}/s), \
         ok answered inside the window {ok_done_rate:.0}/s"
    );
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
         ok_done_rate={ok_done_rate:.0} signatures_per_s={:.0} p50_us={} p90_us={} p99_us={} \
         p999_us={} max_us={} refused={} refused_p99_us={} codes={}",
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A bare h2 server on a loopback port, answering by path:
    /// - `/refuse`: a trailers-only RESOURCE_EXHAUSTED at once, without reading the request
    ///   body; dropping the unread body makes h2 follow it with RST_STREAM(NO_ERROR), as tonic
    ///   does when it refuses a call early;
    /// - `/reset`: RST_STREAM(REFUSED_STREAM) and no response;
    /// - anything else: reads the body, answers one empty message and `grpc-status: 0`.
    async fn connect_to_test_server() -> SendRequest<Bytes> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut connection = h2::server::handshake(tcp).await.unwrap();
            while let Some(Ok((request, respond))) = connection.accept().await {
                tokio::spawn(answer(request, respond));
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        client
    }

    async fn answer(
        request: Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
    ) {
        let head = || {
            http::Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .unwrap()
        };
        match request.uri().path() {
            "/refuse" => {
                let mut refusal = head();
                refusal
                    .headers_mut()
                    .insert("grpc-status", "8".parse().unwrap());
                respond.send_response(refusal, true).unwrap();
            }
            "/reset" => respond.send_reset(Reason::REFUSED_STREAM),
            _ => {
                let mut body = request.into_body();
                while let Some(chunk) = body.data().await {
                    let _ = body.flow_control().release_capacity(chunk.unwrap().len());
                }
                let mut send = respond.send_response(head(), false).unwrap();
                send.send_data(Bytes::from_static(&[0; 5]), false).unwrap();
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                send.send_trailers(trailers).unwrap();
            }
        }
    }

    fn test_call(path: &str) -> Call {
        let (head, ()) = Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1{path}"))
            .body(())
            .unwrap()
            .into_parts();
        Call {
            head: Arc::new(head),
            body: Bytes::from_static(&[0; 5]),
        }
    }

    fn request(call: &Call) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = call.head.method.clone();
        *request.uri_mut() = call.head.uri.clone();
        request
    }

    /// The `Internal` codes seen against a server refusing calls without reading them: when
    /// its answer and RST_STREAM(NO_ERROR) arrive between `send_request` and `send_data`,
    /// sending the body fails. The call was answered all the same, and counts as answered.
    #[tokio::test]
    async fn an_answer_before_the_body_counts_with_its_status() {
        let client = connect_to_test_server().await;
        let refuse = test_call("/refuse");
        let open = || {
            let (response, mut send) = client
                .clone()
                .send_request(request(&refuse), false)
                .unwrap();
            async move {
                // Hold the body back until the server has answered and reset the stream: the
                // window the generator's thread can be preempted in.
                let reason = std::future::poll_fn(|cx| send.poll_reset(cx))
                    .await
                    .unwrap();
                assert_eq!(reason, Reason::NO_ERROR);
                (response, send)
            }
        };

        let (_, mut send) = open().await;
        assert!(
            send.send_data(refuse.body.clone(), true).is_err(),
            "h2 refuses a body on a stream the server has reset"
        );

        let (response, send) = open().await;
        let outcome = finish(response, send, refuse.body.clone()).await;
        assert_eq!(outcome, Outcome::Status(Code::ResourceExhausted as i32));
        assert!(outcome.is_refusal());
    }

    #[tokio::test]
    async fn outcomes_of_whole_calls() {
        let client = connect_to_test_server().await;
        let timeout = Duration::from_secs(5);
        let ok = call(&client, &test_call("/ok"), timeout).await;
        assert_eq!(ok, Outcome::Status(Code::Ok as i32));
        let refused = call(&client, &test_call("/refuse"), timeout).await;
        assert_eq!(refused.to_string(), "ResourceExhausted");
        let reset = call(&client, &test_call("/reset"), timeout).await;
        assert_eq!(reset.to_string(), "Reset:REFUSED_STREAM");
        assert!(reset.is_refusal());
    }

    #[test]
    fn open_loop_slots_never_sent_are_counted() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let schedule = Schedule {
            measure_from: start + ms(10),
            stop_at: start + ms(20),
            period: Some(ms(1)),
            // Workers gave up after taking slots 0 to 14: 15 to 20 are in the window.
            next_slot: AtomicU64::new(15),
            start,
        };
        assert_eq!(schedule.untaken_slots_in_window(), 6);
        schedule.next_slot.store(5, Ordering::Relaxed);
        assert_eq!(schedule.untaken_slots_in_window(), 11, "slots 10 to 20");
        let closed_loop = Schedule {
            period: None,
            ..schedule
        };
        assert_eq!(closed_loop.untaken_slots_in_window(), 0);
    }

    #[test]
    fn local_errors_are_not_grpc_codes() {
        let label = Outcome::Local(LocalError::SendBody).to_string();
        assert_eq!(label, "LocalError:send_body");
        assert_eq!(
            Outcome::Local(LocalError::Timeout).to_string(),
            "LocalError:timeout"
        );
        assert!(!Outcome::Local(LocalError::Timeout).is_refusal());
    }
}
