//! Admission of calls, decided where HTTP/2 hands the server a new stream.
//!
//! hyper calls [`Admission::call`] on the connection's task the moment a stream opens; the
//! returned future then runs as a task of its own. That moment is the call's arrival, and
//! everything between it and the first poll of the future is time spent queued in the
//! runtime. Stock tonic only sees a call once its task runs, so on an overloaded server it
//! can neither count the calls waiting nor tell how long they waited, and the queue grows
//! until clients time out. Here, for `UploadSigner` calls:
//!
//! - at arrival, the `authorization` header is checked: a call without a known bearer token
//!   is answered UNAUTHENTICATED there and then, before its message is read, so it never
//!   holds a place that a known caller needs;
//! - a known caller's call takes a place among `[transport] max_concurrent_requests` (calls
//!   accepted and not yet answered, queued or running) and its connection's share
//!   (`max_concurrent_requests_per_connection`; see `slots`). A connection over its share is
//!   refused at once; a call that finds every shared place taken waits for one, for at most
//!   `max_queue_delay_ms` (or its deadline), and is then refused;
//! - its request message must arrive within `request_body_timeout_ms` (see `body_timeout`);
//! - at its first poll, a call that waited longer than `[transport] max_queue_delay_ms` is
//!   refused instead of started, once waits have stayed that long for [`SHED_AFTER`]: the
//!   server is then past saturation, and a refusal costs a fraction of a call, so the calls
//!   behind it wait less. Short bursts are served in full.
//!
//! Both refusals are `UNAVAILABLE`, the code gRPC defines for a transient condition to retry
//! with backoff: clients (ours does) back off or try another replica. (`RESOURCE_EXHAUSTED`
//! stays what it means to callers here: their per-user quota is used up.) Health
//! and reflection are never refused: a probe must still reach an overloaded server.
//!
//! Every call also gets its deadline here: the client's `grpc-timeout`, capped by `[transport]
//! call_timeout_seconds`, counted from arrival. A call whose deadline passed while it was
//! queued is answered `DEADLINE_EXCEEDED` without being started; one still running at its
//! deadline is cancelled with the same code. The timer is only armed once a call is seen to
//! wait (a Redis quota check, a test gate): the common call completes in its first poll and
//! never touches the timer wheel.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::body::Incoming;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tonic::transport::server::TcpConnectInfo;

use super::body_timeout::TimedBody;
use super::grpc_timeout;
use super::slots::{self, ConnectionShare, SharedPlaces, Slot, Taken, Waiting};
use crate::logging::RateLimit;
use crate::metrics::{CallRecorder, MeteredBody, Metrics, Shed};
use crate::proto::v1::upload_signer_server::SERVICE_NAME;
use crate::service::{ConfigSnapshot, ServiceError};

/// The limits [`Admission`] applies.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// `UploadSigner` calls accepted and not yet answered; `None` sets no bound.
    pub max_in_flight: Option<usize>,
    /// Longest wait between arrival and start for an `UploadSigner` call; `None` sets none.
    pub max_queue_delay: Option<Duration>,
    /// Cap on every call's deadline.
    pub call_timeout: Duration,
    /// `UploadSigner` calls one connection may have in flight; `None` sets no bound.
    pub max_in_flight_per_connection: Option<usize>,
    /// How long a call's request message may take to arrive after its headers.
    pub request_body_timeout: Duration,
}

struct AdmissionState {
    places: SharedPlaces,
    limits: Limits,
    /// The callers, as the last (re)load left them.
    snapshot: Arc<ArcSwap<ConfigSnapshot>>,
    metrics: Arc<Metrics>,
    /// Unknown callers are refused here, before the service could log them; a client retrying
    /// a bad token in a loop gets one line a second, not one per call.
    unauthenticated_log: RateLimit,
    /// Since when (nanoseconds after `epoch`, plus one so that 0 means "not") every call
    /// started has waited longer than `max_queue_delay`.
    queued_too_long_since: AtomicU64,
    epoch: Instant,
}

/// How long waits must stay above `max_queue_delay` before calls are shed. A burst (a BFF
/// fanning out a thousand calls at once) queues briefly and drains: that queue is useful and
/// its calls are served. A queue that stays is overload, and only shedding drains it. This is
/// CoDel's idea (Nichols and Jacobson, 2012) and its default interval.
const SHED_AFTER: Duration = Duration::from_millis(100);

impl AdmissionState {
    /// Whether a call that waited `waited` (until `now`) is shed rather than started.
    fn shed(&self, waited: Duration, now: Instant) -> bool {
        let Some(max) = self.limits.max_queue_delay else {
            return false;
        };
        if waited <= max {
            // The queue drained at least this far: the next long wait starts a new episode.
            if self.queued_too_long_since.load(Ordering::Relaxed) != 0 {
                self.queued_too_long_since.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        match self.queued_too_long_since.compare_exchange(
            0,
            now_ns,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            // The first long wait of an episode: served, the episode's clock starts.
            Ok(_) => false,
            Err(since) => Duration::from_nanos(now_ns.saturating_sub(since)) >= SHED_AFTER,
        }
    }
}

/// The hyper service of a connection: admission in front of the gRPC routes `S`.
pub(super) struct Admission<S> {
    routes: S,
    state: Arc<AdmissionState>,
    /// This connection's share of the places.
    connection: Arc<ConnectionShare>,
}

impl<S: Clone> Clone for Admission<S> {
    fn clone(&self) -> Self {
        Admission {
            routes: self.routes.clone(),
            state: self.state.clone(),
            connection: self.connection.clone(),
        }
    }
}

impl<S: Clone> Admission<S> {
    pub(super) fn new(
        routes: S,
        limits: Limits,
        snapshot: Arc<ArcSwap<ConfigSnapshot>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Admission {
            routes,
            connection: ConnectionShare::new(limits.max_in_flight_per_connection),
            state: Arc::new(AdmissionState {
                places: slots::shared_places(limits.max_in_flight),
                limits,
                snapshot,
                metrics,
                unauthenticated_log: RateLimit::new(Duration::from_secs(1)),
                queued_too_long_since: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// The service for a new connection: the same places and routes, a share of its own.
    pub(super) fn for_connection(&self) -> Self {
        Admission {
            routes: self.routes.clone(),
            state: self.state.clone(),
            connection: ConnectionShare::new(self.state.limits.max_in_flight_per_connection),
        }
    }
}

/// Whether `path` is a call of the service that admission bounds.
fn is_bounded(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(SERVICE_NAME))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` is a streaming call whose client sends messages over time, so its request
/// body has no deadline of its own. Every other call here sends one message.
fn is_client_streaming(path: &str) -> bool {
    path.starts_with("/grpc.reflection.")
}

impl<S> hyper::service::Service<Request<Incoming>> for Admission<S>
where
    S: Service<Request<TimedBody>, Response = Response<Body>, Error = Infallible> + Clone + Unpin,
    S::Future: Unpin,
{
    type Response = Response<MeteredBody>;
    type Error = Infallible;
    type Future = AdmittedCall<S>;

    fn call(&self, request: Request<Incoming>) -> AdmittedCall<S> {
        let arrival = Instant::now();
        let state = &self.state;
        let path = request.uri().path();
        let recorder = CallRecorder::new(state.metrics.clone(), path, arrival);
        let mut waiting = None;
        let slot = if is_bounded(path) {
            // Before any place is taken: an unknown caller must not hold one.
            let authorization = request.headers().get("authorization").map(|v| v.as_bytes());
            if let Err(error) = state.snapshot.load().callers.authenticate(authorization) {
                if let Some(suppressed) = state.unauthenticated_log.due() {
                    let peer = request
                        .extensions()
                        .get::<TcpConnectInfo>()
                        .and_then(|info| info.remote_addr);
                    tracing::warn!(
                        method = path.rsplit('/').next().unwrap_or(path),
                        peer = ?peer,
                        reason = %error,
                        similar_not_logged = suppressed,
                        "call refused: authentication failed"
                    );
                }
                let status = Status::from(ServiceError::from(error));
                return AdmittedCall::answered(status, recorder, arrival, state);
            }
            match slots::take(&state.places, &self.connection) {
                Taken::Slot(slot) => Some(slot),
                Taken::Wait(wait) => {
                    waiting = Some(wait);
                    None
                }
                Taken::ConnectionFull => {
                    state.metrics.call_shed(Shed::InFlight);
                    let status = Status::unavailable(
                        "this connection has as many calls in flight as one connection may ([transport] max_concurrent_requests_per_connection); retry with backoff",
                    );
                    return AdmittedCall::answered(status, recorder, arrival, state);
                }
            }
        } else {
            None
        };
        let body_limit = (!is_client_streaming(path)).then_some(state.limits.request_body_timeout);
        let budget = grpc_timeout::client_timeout(request.headers())
            .map_or(state.limits.call_timeout, |t| {
                t.min(state.limits.call_timeout)
            });
        let request = Some(request.map(|body| TimedBody::new(body, arrival, body_limit)));
        let routes = self.routes.clone();
        AdmittedCall {
            stage: match waiting {
                Some(wait) => Stage::Waiting {
                    routes,
                    request,
                    wait,
                },
                None => Stage::Queued { routes, request },
            },
            arrival,
            deadline: arrival + budget,
            timer: None,
            recorder: Some(recorder),
            slot,
            state: state.clone(),
        }
    }
}

enum Stage<S: Service<Request<TimedBody>>> {
    /// Every shared place was taken at arrival: waits for one (see `slots`).
    Waiting {
        routes: S,
        request: Option<Request<TimedBody>>,
        wait: Waiting,
    },
    /// Accepted, not yet polled: the request waits in the runtime's queue.
    Queued {
        routes: S,
        request: Option<Request<TimedBody>>,
    },
    Running(S::Future),
    /// Answered without the routes (refused, or past its deadline).
    Answered(Option<Response<MeteredBody>>),
}

/// The future of one call, from arrival to the response headers.
pub(super) struct AdmittedCall<S: Service<Request<TimedBody>>> {
    stage: Stage<S>,
    arrival: Instant,
    deadline: Instant,
    /// Armed the first time the call is seen to wait.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    recorder: Option<CallRecorder>,
    /// The place this call holds among those in flight (bounded calls only).
    slot: Option<Slot>,
    state: Arc<AdmissionState>,
}

impl<S: Service<Request<TimedBody>>> AdmittedCall<S> {
    fn answered(
        status: Status,
        recorder: CallRecorder,
        arrival: Instant,
        state: &Arc<AdmissionState>,
    ) -> Self {
        recorder.finish(status.code());
        AdmittedCall {
            stage: Stage::Answered(Some(status.into_http().map(MeteredBody::unwatched))),
            arrival,
            deadline: arrival,
            timer: None,
            recorder: None,
            slot: None,
            state: state.clone(),
        }
    }

    fn answer(&mut self, status: Status) -> Response<MeteredBody> {
        if let Some(recorder) = self.recorder.take() {
            recorder.finish(status.code());
        }
        // The place is free as soon as the answer is decided.
        self.slot = None;
        status.into_http::<Body>().map(MeteredBody::unwatched)
    }
}

fn deadline_exceeded(waited: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "the call's deadline passed after {} ms (its grpc-timeout, capped by the server's call timeout)",
        waited.as_millis()
    ))
}

impl<S> Future for AdmittedCall<S>
where
    S: Service<Request<TimedBody>, Response = Response<Body>, Error = Infallible> + Unpin,
    S::Future: Unpin,
{
    type Output = Result<Response<MeteredBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            match &mut this.stage {
                Stage::Answered(response) => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
                Stage::Waiting { wait, .. } => {
                    if let Poll::Ready(slot) = wait.poll_slot(cx) {
                        this.slot = Some(slot);
                        this.timer = None;
                        let waited = std::mem::replace(&mut this.stage, Stage::Answered(None));
                        if let Stage::Waiting {
                            routes, request, ..
                        } = waited
                        {
                            this.stage = Stage::Queued { routes, request };
                        }
                        continue;
                    }
                    // The wait for a place is bounded like the runtime's queue, and by the
                    // call's deadline.
                    let limit = this
                        .state
                        .limits
                        .max_queue_delay
                        .map_or(this.deadline, |max| (this.arrival + max).min(this.deadline));
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(limit.into())));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.timer = None;
                    let waited = this.arrival.elapsed();
                    let status = if Instant::now() >= this.deadline {
                        deadline_exceeded(waited)
                    } else {
                        this.state.metrics.call_shed(Shed::InFlight);
                        Status::unavailable(format!(
                            "the server is handling as many calls as it is configured for ([transport] max_concurrent_requests); this call waited {} ms for a place; retry with backoff",
                            waited.as_millis()
                        ))
                    };
                    let response = this.answer(status);
                    this.stage = Stage::Answered(Some(response));
                }
                Stage::Queued { routes, request } => {
                    let now = Instant::now();
                    let waited = now.saturating_duration_since(this.arrival);
                    if now >= this.deadline {
                        let response = this.answer(deadline_exceeded(waited));
                        this.stage = Stage::Answered(Some(response));
                        continue;
                    }
                    let shed = this.slot.is_some() && this.state.shed(waited, now);
                    if shed {
                        this.state.metrics.call_shed(Shed::QueueDelay);
                        let response = this.answer(Status::unavailable(format!(
                            "the server is overloaded: this call waited {} ms to be started; retry with backoff",
                            waited.as_millis()
                        )));
                        this.stage = Stage::Answered(Some(response));
                        continue;
                    }
                    // Routes are always ready; this is the tower contract, not a wait.
                    if let Err(never) = ready!(routes.poll_ready(cx)) {
                        match never {}
                    }
                    let request = request.take().expect("a queued call has its request");
                    this.stage = Stage::Running(routes.call(request));
                }
                Stage::Running(future) => {
                    match Pin::new(&mut *future).poll(cx) {
                        Poll::Ready(Ok(response)) => {
                            this.slot = None;
                            let recorder = this.recorder.take().expect("recorded once");
                            return Poll::Ready(Ok(recorder.watch(response)));
                        }
                        Poll::Ready(Err(never)) => match never {},
                        Poll::Pending => {}
                    }
                    // Still running: from now on the deadline needs a timer.
                    let deadline = this.deadline;
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    // Dropping the service's future cancels the call (e.g. a quota check).
                    let response = this.answer(deadline_exceeded(this.arrival.elapsed()));
                    this.stage = Stage::Answered(Some(response));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(max_queue_delay: Option<Duration>) -> AdmissionState {
        let limits = Limits {
            max_in_flight: Some(2),
            max_queue_delay,
            call_timeout: Duration::from_secs(1),
            max_in_flight_per_connection: None,
            request_body_timeout: Duration::from_secs(1),
        };
        AdmissionState {
            places: slots::shared_places(limits.max_in_flight),
            limits,
            snapshot: Arc::new(ArcSwap::from_pointee(ConfigSnapshot {
                keys: crate::signature::KeyRing::single(crate::signature::SigningKey::new(
                    crate::signature::SecretId::new("AKIDadmissionTest").unwrap(),
                    &crate::signature::SecretKey::from_string("k".repeat(32)).unwrap(),
                )),
                callers: crate::policy::Callers::default(),
                verify_options: Default::default(),
            })),
            metrics: Arc::new(Metrics::new()),
            unauthenticated_log: RateLimit::new(Duration::from_secs(1)),
            queued_too_long_since: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    const MAX: Duration = Duration::from_millis(20);
    const LONG: Duration = Duration::from_millis(30);
    const SHORT: Duration = Duration::from_millis(5);

    #[test]
    fn a_burst_shorter_than_the_interval_is_served() {
        let state = state(Some(MAX));
        let t0 = state.epoch + Duration::from_secs(1);
        for ms in [0, 10, 50, 99] {
            assert!(!state.shed(LONG, t0 + Duration::from_millis(ms)), "{ms} ms");
        }
        // The queue drained: a short wait ends the episode, and the next one starts afresh.
        assert!(!state.shed(SHORT, t0 + Duration::from_millis(99)));
        assert!(!state.shed(LONG, t0 + Duration::from_millis(150)));
        assert!(!state.shed(LONG, t0 + Duration::from_millis(240)));
    }

    #[test]
    fn a_standing_queue_is_shed_until_it_drains() {
        let state = state(Some(MAX));
        let t0 = state.epoch + Duration::from_secs(1);
        assert!(!state.shed(LONG, t0));
        assert!(state.shed(LONG, t0 + SHED_AFTER));
        assert!(state.shed(LONG, t0 + SHED_AFTER + Duration::from_millis(1)));
        // A call that waited no longer than the bound is served and ends the episode.
        assert!(!state.shed(MAX, t0 + SHED_AFTER + Duration::from_millis(2)));
        assert!(!state.shed(LONG, t0 + SHED_AFTER + Duration::from_millis(3)));
    }

    #[test]
    fn without_a_bound_nothing_is_shed() {
        let state = state(None);
        let t0 = state.epoch;
        for s in 0..5 {
            assert!(!state.shed(Duration::from_secs(10), t0 + Duration::from_secs(s)));
        }
    }

    #[test]
    fn only_upload_signer_calls_are_bounded() {
        assert!(is_bounded("/vod.signer.v1.UploadSigner/IssueSignature"));
        assert!(is_bounded("/vod.signer.v1.UploadSigner/Anything"));
        assert!(!is_bounded("/vod.signer.v1.UploadSignerX/IssueSignature"));
        assert!(!is_bounded("/grpc.health.v1.Health/Check"));
        assert!(!is_bounded(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_bounded(""));
    }
}
