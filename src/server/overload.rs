//! Overload protection for the `UploadSigner` service: at most `[transport]
//! max_concurrent_requests` calls are handled at once, and a call over the bound is answered
//! `RESOURCE_EXHAUSTED` at once instead of waiting its turn.
//!
//! Handling a call is microseconds of CPU, so calls pile up inside the service only when they
//! wait: on the Redis quota store, or on a runtime too busy to poll them. A queue there only
//! turns into late answers that clients have given up on; a fast refusal lets them back off or
//! go to another replica. Health and reflection are not wrapped: a probe must still get an
//! answer from an overloaded server.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http;
use tonic::server::NamedService;

/// Wraps a gRPC service with a bound on its calls in flight, shared by every connection.
#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    in_flight: Arc<AtomicUsize>,
    max: usize,
}

impl<S> InFlightLimit<S> {
    pub fn new(inner: S, max: usize) -> Self {
        InFlightLimit {
            inner,
            in_flight: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }
}

impl<S: NamedService> NamedService for InFlightLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, R> Service<R> for InFlightLimit<S>
where
    S: Service<R, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Limited<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // One atomic add per call; no lock, no allocation.
        let slot = Slot(self.in_flight.clone());
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max {
            drop(slot);
            let status = Status::resource_exhausted(
                "the server is handling as many calls as it is configured for; retry with backoff",
            );
            return Limited::Refused(Some(status.into_http()));
        }
        Limited::Running(self.inner.call(request), slot)
    }
}

/// A place among the calls in flight, given back when the call's future completes or is dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The future of a call: refused on the spot, or running with its slot held.
#[derive(Debug)]
pub enum Limited<F> {
    Refused(Option<http::Response<Body>>),
    Running(F, Slot),
}

impl<F> Future for Limited<F>
where
    F: Future<Output = Result<http::Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<http::Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Limited::Refused(response) => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            Limited::Running(future, _slot) => Pin::new(future).poll(cx),
        }
    }
}
