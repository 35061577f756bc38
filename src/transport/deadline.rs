//! Every call's deadline, a tower layer in front of the gRPC routes.
//!
//! The deadline is the client's `grpc-timeout`, capped by `[transport] call_timeout_seconds`,
//! counted from the call's arrival (see `admission`). A call whose deadline passed while it was
//! queued is answered DEADLINE_EXCEEDED without being started; one still running at its
//! deadline is dropped (which cancels it, e.g. a quota check) and answered with the same code.
//! The timer is only armed once a call is seen to wait (a Redis quota check, a test gate): the
//! common call completes in its first poll and never touches the timer wheel.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tower_layer::Layer;

use super::admission::Arrival;
use super::grpc_timeout;

/// The deadline of a call that arrived at `arrival` with `headers`, given the server's cap.
pub(super) fn deadline_of(
    headers: &HeaderMap,
    arrival: Instant,
    call_timeout: Duration,
) -> Instant {
    let budget =
        grpc_timeout::client_timeout(headers).map_or(call_timeout, |t| t.min(call_timeout));
    arrival + budget
}

/// The answer to a call whose deadline passed after `waited`.
pub(super) fn deadline_exceeded(waited: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "the call's deadline passed after {} ms (its grpc-timeout, capped by the server's call timeout)",
        waited.as_millis()
    ))
}

/// Gives every call its deadline; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub(super) struct DeadlineLayer {
    call_timeout: Duration,
}

impl DeadlineLayer {
    pub(super) fn new(call_timeout: Duration) -> Self {
        DeadlineLayer { call_timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            call_timeout: self.call_timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Deadline<S> {
    inner: S,
    call_timeout: Duration,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> DeadlineFuture<S::Future> {
        let now = Instant::now();
        let arrival = request
            .extensions()
            .get::<Arrival>()
            .map_or(now, |arrival| arrival.at);
        let deadline = deadline_of(request.headers(), arrival, self.call_timeout);
        if now >= deadline {
            let waited = now.saturating_duration_since(arrival);
            return DeadlineFuture::Answered(Some(deadline_exceeded(waited).into_http()));
        }
        DeadlineFuture::Running {
            inner: self.inner.call(request),
            arrival,
            deadline,
            timer: None,
        }
    }
}

pub(super) enum DeadlineFuture<F> {
    Running {
        inner: F,
        arrival: Instant,
        deadline: Instant,
        /// Armed the first time the call is seen to wait.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    },
    Answered(Option<Response<Body>>),
}

impl<F> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let DeadlineFuture::Running {
            inner,
            arrival,
            deadline,
            timer,
        } = this
        else {
            let DeadlineFuture::Answered(response) = this else {
                unreachable!("the other variant")
            };
            return Poll::Ready(Ok(response.take().expect("polled after completion")));
        };
        if let Poll::Ready(response) = Pin::new(&mut *inner).poll(cx) {
            return Poll::Ready(response);
        }
        // Still running: from now on the deadline needs a timer.
        let deadline = *deadline;
        let timer =
            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let waited = arrival.elapsed();
        // Dropping the routes' future cancels the call.
        *this = DeadlineFuture::Answered(None);
        Poll::Ready(Ok(deadline_exceeded(waited).into_http()))
    }
}
