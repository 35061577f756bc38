//! Admission of calls, decided where HTTP/2 hands the server a new stream.
//!
//! hyper calls [`Admission::call`] on the connection's task the moment a stream opens; the
//! returned future then runs as a task of its own. That moment is the call's arrival, and
//! everything between it and the first poll of the future is time spent queued in the
//! runtime. Stock tonic only sees a call once its task runs, so on an overloaded server it
//! can neither count the calls waiting nor tell how long they waited, and the queue grows
//! until clients time out. Here, at arrival:
//!
//! - the arrival time goes into the request ([`Arrival`]), for the layers behind admission:
//!   `shed` (a call that queued too long is refused) and `deadline` (`grpc-timeout`);
//! - an `UploadSigner` call's `authorization` header is checked: a call without a known bearer
//!   token is answered UNAUTHENTICATED there and then, before its message is read, so it never
//!   holds a place that a known caller needs. A known caller's token (here, or on an
//!   `UploadTracker` call) vouches for its connection, which then keeps its place at
//!   `max_connections` (see `connection_places`);
//! - a known caller's call takes a place among `[transport] max_concurrent_requests` (calls
//!   accepted and not yet answered, queued or running) and its connection's share
//!   (`max_concurrent_requests_per_connection`; see `slots`). A connection over its share is
//!   refused at once; a call that finds every shared place taken waits for one, for at most
//!   `max_queue_delay_ms` (or its deadline), and is then refused;
//! - its request message must arrive within `request_body_timeout_ms` (see `body_timeout`).
//!
//! Refusals are `UNAVAILABLE`, the code gRPC defines for a transient condition to retry with
//! backoff: clients (ours does) back off or try another replica. (`RESOURCE_EXHAUSTED` stays
//! what it means to callers here: their per-user quota is used up.) Health and reflection are
//! never refused: a probe must still reach an overloaded server. Every call is measured from
//! its arrival to its status, refused or not.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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
use super::connection_places::Voucher;
use super::deadline::{deadline_exceeded, deadline_of};
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
    /// Longest wait for a place; `None` waits up to the call's deadline.
    pub max_queue_delay: Option<Duration>,
    /// Cap on every call's deadline, which also bounds the wait for a place.
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
}

/// When a call arrived, in its request's extensions. `bounded`: it holds a place among
/// `max_concurrent_requests` (an `UploadSigner` call).
#[derive(Debug, Clone, Copy)]
pub(super) struct Arrival {
    pub at: Instant,
    pub bounded: bool,
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

/// A known caller used the request's connection: it keeps its place at `max_connections`.
fn vouch<B>(request: &Request<B>) {
    if let Some(voucher) = request.extensions().get::<Voucher>() {
        voucher.vouch();
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
            vouch(&request);
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
            // `UploadTracker` authenticates in its service; a known caller's watch must still
            // keep its connection from being evicted.
            if request
                .extensions()
                .get::<Voucher>()
                .is_some_and(|voucher| !voucher.is_vouched())
            {
                let authorization = request.headers().get("authorization").map(|v| v.as_bytes());
                if authorization.is_some()
                    && state
                        .snapshot
                        .load()
                        .callers
                        .authenticate(authorization)
                        .is_ok()
                {
                    vouch(&request);
                }
            }
            None
        };
        let body_limit = (!is_client_streaming(path)).then_some(state.limits.request_body_timeout);
        let bounded = slot.is_some() || waiting.is_some();
        let mut request = request.map(|body| TimedBody::new(body, arrival, body_limit));
        request.extensions_mut().insert(Arrival {
            at: arrival,
            bounded,
        });
        let request = Some(request);
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
    /// Answered without the routes (refused, or past its deadline while waiting).
    Answered(Option<Response<MeteredBody>>),
}

/// The future of one call, from arrival to the response headers.
pub(super) struct AdmittedCall<S: Service<Request<TimedBody>>> {
    stage: Stage<S>,
    arrival: Instant,
    /// Armed when the call has to wait for a place.
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
                    let Stage::Waiting {
                        request: Some(request),
                        ..
                    } = &this.stage
                    else {
                        unreachable!("a waiting call has its request")
                    };
                    let limits = &this.state.limits;
                    let deadline =
                        deadline_of(request.headers(), this.arrival, limits.call_timeout);
                    let limit = limits
                        .max_queue_delay
                        .map_or(deadline, |max| (this.arrival + max).min(deadline));
                    let timer = this
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(limit.into())));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.timer = None;
                    let waited = this.arrival.elapsed();
                    let status = if Instant::now() >= deadline {
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
                    // Started: the layers behind (shedding, the deadline) decide from here.
                    // Routes are always ready; this is the tower contract, not a wait.
                    if let Err(never) = ready!(routes.poll_ready(cx)) {
                        match never {}
                    }
                    let request = request.take().expect("a queued call has its request");
                    this.stage = Stage::Running(routes.call(request));
                }
                Stage::Running(future) => {
                    let Ok(response) = ready!(Pin::new(&mut *future).poll(cx));
                    // The place is free as soon as the answer is decided.
                    this.slot = None;
                    let recorder = this.recorder.take().expect("recorded once");
                    return Poll::Ready(Ok(recorder.watch(response)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
