//! Queue-delay shedding, a tower layer in front of the gRPC routes.
//!
//! A call is started when its task is first polled, and the time since its arrival (see
//! `admission`) is how long it queued in the runtime. Once waits have stayed above
//! `[transport] max_queue_delay_ms` for [`SHED_AFTER`], the server is past saturation: a bounded
//! call that waited that long is refused with UNAVAILABLE instead of started. A refusal costs
//! a fraction of a call, so the calls behind it wait less. Short bursts are served in full.
//! Health and reflection are never shed: a probe must still reach an overloaded server.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{Request, Response};
use tower_layer::Layer;

use super::admission::Arrival;
use crate::metrics::{Metrics, Shed};

/// How long waits must stay above `max_queue_delay` before calls are shed. A burst (a BFF
/// fanning out a thousand calls at once) queues briefly and drains: that queue is useful and
/// its calls are served. A queue that stays is overload, and only shedding drains it. This is
/// CoDel's idea (Nichols and Jacobson, 2012) and its default interval.
const SHED_AFTER: Duration = Duration::from_millis(100);

/// The queue's state, shared by every connection.
#[derive(Debug)]
struct QueueDelay {
    /// Longest wait between arrival and start; `None` sheds nothing.
    max: Option<Duration>,
    /// Since when (nanoseconds after `epoch`, plus one so that 0 means "not") every call
    /// started has waited longer than `max`.
    too_long_since: AtomicU64,
    epoch: Instant,
    metrics: Arc<Metrics>,
}

impl QueueDelay {
    /// Whether a call that waited `waited` (until `now`) is shed rather than started.
    fn shed(&self, waited: Duration, now: Instant) -> bool {
        let Some(max) = self.max else {
            return false;
        };
        if waited <= max {
            // The queue drained at least this far: the next long wait starts a new episode.
            if self.too_long_since.load(Ordering::Relaxed) != 0 {
                self.too_long_since.store(0, Ordering::Relaxed);
            }
            return false;
        }
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64 + 1;
        match self
            .too_long_since
            .compare_exchange(0, now_ns, Ordering::Relaxed, Ordering::Relaxed)
        {
            // The first long wait of an episode: served, the episode's clock starts.
            Ok(_) => false,
            Err(since) => Duration::from_nanos(now_ns.saturating_sub(since)) >= SHED_AFTER,
        }
    }
}

/// Sheds bounded calls that queued too long; see the module documentation.
#[derive(Debug, Clone)]
pub(super) struct ShedLayer {
    queue: Arc<QueueDelay>,
}

impl ShedLayer {
    pub(super) fn new(max_queue_delay: Option<Duration>, metrics: Arc<Metrics>) -> Self {
        ShedLayer {
            queue: Arc::new(QueueDelay {
                max: max_queue_delay,
                too_long_since: AtomicU64::new(0),
                epoch: Instant::now(),
                metrics,
            }),
        }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shedding<S>;

    fn layer(&self, inner: S) -> Shedding<S> {
        Shedding {
            inner,
            queue: self.queue.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Shedding<S> {
    inner: S,
    queue: Arc<QueueDelay>,
}

impl<S, B> Service<Request<B>> for Shedding<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    /// Called when the call starts: the time since its arrival is its wait.
    fn call(&mut self, request: Request<B>) -> ShedFuture<S::Future> {
        if let Some(arrival) = request.extensions().get::<Arrival>()
            && arrival.bounded
        {
            let now = Instant::now();
            let waited = now.saturating_duration_since(arrival.at);
            if self.queue.shed(waited, now) {
                self.queue.metrics.call_shed(Shed::QueueDelay);
                let status = Status::unavailable(format!(
                    "the server is overloaded: this call waited {} ms to be started; retry with backoff",
                    waited.as_millis()
                ));
                return ShedFuture::Refused(Some(status.into_http()));
            }
        }
        ShedFuture::Started(self.inner.call(request))
    }
}

pub(super) enum ShedFuture<F> {
    Refused(Option<Response<Body>>),
    Started(F),
}

impl<F> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ShedFuture::Refused(response) => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            ShedFuture::Started(future) => Pin::new(future).poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max: Option<Duration>) -> QueueDelay {
        QueueDelay {
            max,
            too_long_since: AtomicU64::new(0),
            epoch: Instant::now(),
            metrics: Arc::new(Metrics::new()),
        }
    }

    const MAX: Duration = Duration::from_millis(20);
    const LONG: Duration = Duration::from_millis(30);
    const SHORT: Duration = Duration::from_millis(5);

    #[test]
    fn a_burst_shorter_than_the_interval_is_served() {
        let queue = queue(Some(MAX));
        let t0 = queue.epoch + Duration::from_secs(1);
        for ms in [0, 10, 50, 99] {
            assert!(!queue.shed(LONG, t0 + Duration::from_millis(ms)), "{ms} ms");
        }
        // The queue drained: a short wait ends the episode, and the next one starts afresh.
        assert!(!queue.shed(SHORT, t0 + Duration::from_millis(99)));
        assert!(!queue.shed(LONG, t0 + Duration::from_millis(150)));
        assert!(!queue.shed(LONG, t0 + Duration::from_millis(240)));
    }

    #[test]
    fn a_standing_queue_is_shed_until_it_drains() {
        let queue = queue(Some(MAX));
        let t0 = queue.epoch + Duration::from_secs(1);
        assert!(!queue.shed(LONG, t0));
        assert!(queue.shed(LONG, t0 + SHED_AFTER));
        assert!(queue.shed(LONG, t0 + SHED_AFTER + Duration::from_millis(1)));
        // A call that waited no longer than the bound is served and ends the episode.
        assert!(!queue.shed(MAX, t0 + SHED_AFTER + Duration::from_millis(2)));
        assert!(!queue.shed(LONG, t0 + SHED_AFTER + Duration::from_millis(3)));
    }

    #[test]
    fn without_a_bound_nothing_is_shed() {
        let queue = queue(None);
        let t0 = queue.epoch;
        for s in 0..5 {
            assert!(!queue.shed(Duration::from_secs(10), t0 + Duration::from_secs(s)));
        }
    }
}
