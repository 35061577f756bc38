//! How long streams stay open, per connection and for health `Watch` over all connections.
//!
//! A stream is open from its arrival until hyper drops its response body (the answer was
//! sent, or the stream was reset). A connection with no open stream is idle: at shutdown it
//! is closed at once instead of waiting for its client (see `connections`). A health `Watch`
//! stays open until its client leaves, so watches are bounded on their own
//! (`[transport] max_health_watches`) and do not keep their connection from counting as idle
//! at shutdown: the NOT_SERVING update they get is their notice.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use hyper::body::{Bytes, Incoming};
use tokio::sync::Notify;
use tonic::Status;
use tonic::codegen::http::{Request, Response};
use tonic::transport::server::TcpConnectInfo;

use super::connection_places::Voucher;
use crate::metrics::MeteredBody;

const WATCH_PATH: &str = "/grpc.health.v1.Health/Watch";

/// The open streams of one connection.
#[derive(Debug, Default)]
pub(super) struct ConnectionStreams {
    open: AtomicUsize,
    idle: Notify,
}

impl ConnectionStreams {
    /// Completes once no stream is open (at once if none is).
    pub(super) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a stream closing in between still wakes us.
            notified.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn is_idle(&self) -> bool {
        self.open.load(Ordering::Acquire) == 0
    }
}

/// The health watches open over all connections, and how many may be.
#[derive(Debug)]
pub(super) struct Watches {
    open: AtomicUsize,
    max: usize,
}

impl Watches {
    pub(super) fn new(max: usize) -> Arc<Watches> {
        Arc::new(Watches {
            open: AtomicUsize::new(0),
            max,
        })
    }
}

/// What an open stream counts against, released when its response body is dropped.
pub(super) enum Guard {
    Stream(Arc<ConnectionStreams>),
    Watch(Arc<Watches>),
}

impl Drop for Guard {
    fn drop(&mut self) {
        match self {
            Guard::Stream(streams) => {
                if streams.open.fetch_sub(1, Ordering::AcqRel) == 1 {
                    streams.idle.notify_waiters();
                }
            }
            Guard::Watch(watches) => {
                watches.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// The response body of every stream: the inner body and the count it holds.
pub(super) struct GuardedBody {
    inner: MeteredBody,
    _guard: Guard,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The service of one connection: counts its streams in front of `S`, and tells each
/// request its peer (tonic's [`TcpConnectInfo`], read by `Request::remote_addr`) and the
/// connection's [`Voucher`].
#[derive(Clone)]
pub(super) struct Streams<S> {
    inner: S,
    connection: Arc<ConnectionStreams>,
    watches: Arc<Watches>,
    peer: TcpConnectInfo,
    voucher: Voucher,
}

impl<S> Streams<S> {
    pub(super) fn new(
        inner: S,
        connection: Arc<ConnectionStreams>,
        watches: Arc<Watches>,
        peer: TcpConnectInfo,
        voucher: Voucher,
    ) -> Self {
        Streams {
            inner,
            connection,
            watches,
            peer,
            voucher,
        }
    }
}

impl<S> hyper::service::Service<Request<Incoming>> for Streams<S>
where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<MeteredBody>,
            Error = Infallible,
            Future: Unpin,
        >,
{
    type Response = Response<GuardedBody>;
    type Error = Infallible;
    type Future = Counted<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        request.extensions_mut().insert(self.voucher.clone());
        let guard = if request.uri().path() == WATCH_PATH {
            let before = self.watches.open.fetch_add(1, Ordering::Relaxed);
            let guard = Guard::Watch(self.watches.clone());
            if before >= self.watches.max {
                let status = Status::resource_exhausted(format!(
                    "the server has as many health watches open as it allows ({}, [transport] max_health_watches); use Check, or watch again later",
                    self.watches.max
                ));
                return Counted::Refused(Some(status.into_http().map(|body| GuardedBody {
                    inner: MeteredBody::unwatched(body),
                    _guard: guard,
                })));
            }
            guard
        } else {
            self.connection.open.fetch_add(1, Ordering::AcqRel);
            Guard::Stream(self.connection.clone())
        };
        Counted::Call {
            future: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

/// The future of a counted stream; its guard moves into the response body.
pub(super) enum Counted<F> {
    Call { future: F, guard: Option<Guard> },
    Refused(Option<Response<GuardedBody>>),
}

impl<F> Future for Counted<F>
where
    F: Future<Output = Result<Response<MeteredBody>, Infallible>> + Unpin,
{
    type Output = Result<Response<GuardedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Counted::Refused(response) => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            Counted::Call { future, guard } => {
                let Ok(response) = std::task::ready!(Pin::new(future).poll(cx));
                let guard = guard.take().expect("polled after completion");
                Poll::Ready(Ok(response.map(|inner| GuardedBody {
                    inner,
                    _guard: guard,
                })))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_once_its_last_stream_closes() {
        let streams = Arc::new(ConnectionStreams::default());
        tokio::time::timeout(std::time::Duration::from_secs(1), streams.idle())
            .await
            .expect("no stream: idle at once");
        streams.open.fetch_add(2, Ordering::AcqRel);
        let (a, b) = (
            Guard::Stream(streams.clone()),
            Guard::Stream(streams.clone()),
        );
        let waiter = tokio::spawn({
            let streams = streams.clone();
            async move { streams.idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one stream is still open");
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("idle after the last stream")
            .unwrap();
    }
}
