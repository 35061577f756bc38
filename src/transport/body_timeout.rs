//! `[transport] request_body_timeout_ms`: a call's request message must arrive soon after its
//! headers.
//!
//! A stream that sends headers and then nothing would otherwise keep its place among the calls
//! in flight until the call timeout. The request body is wrapped; once its deadline passes
//! before the body is complete, reading it fails with DEADLINE_EXCEEDED, which tonic answers
//! as the call's status, and the rest of the stream is reset.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use hyper::body::{Bytes, Incoming};
use tonic::Status;

/// The request body of every call, as the routes see it.
pub(super) struct TimedBody {
    inner: Incoming,
    /// `None`: no deadline (streaming calls such as reflection, whose client sends messages
    /// over time).
    deadline: Option<Instant>,
    limit: Duration,
    /// Armed the first time the body is seen to wait: a unary request usually arrives with its
    /// headers and never touches the timer wheel.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    pub(super) fn new(inner: Incoming, arrival: Instant, limit: Option<Duration>) -> Self {
        TimedBody {
            inner,
            deadline: limit.map(|limit| arrival + limit),
            limit: limit.unwrap_or_default(),
            timer: None,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                return Poll::Ready(frame.map(|f| f.map_err(|e| Status::from_error(e.into()))));
            }
            Poll::Pending => {}
        }
        let Some(deadline) = this.deadline else {
            return Poll::Pending;
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.deadline = None;
        Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
            "the request message did not arrive within {} ms of the call's headers ([transport] request_body_timeout_ms)",
            this.limit.as_millis()
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
