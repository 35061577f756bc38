//! Counting every gRPC call by method and status code, and timing it.
//!
//! A gRPC status travels in the response headers
//! when the call fails before any message ("trailers-only"), otherwise in the trailers at the
//! end of the body; the layer reads whichever comes, and a body dropped before its trailers
//! (the client went away) counts as `CANCELLED`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Response};

use super::Metrics;

/// The methods counted under their own name; anything else is `unknown`. Fixed, so a client
/// sending random paths cannot grow the label set.
pub(super) const METHOD_NAMES: [(&str, &str); 11] = [
    ("vod.signer.v1.UploadSigner", "IssueSignature"),
    ("vod.signer.v1.UploadSigner", "VerifySignature"),
    ("vod.signer.v1.UploadSigner", "IssueSignatureBatch"),
    ("vod.signer.v1.UploadTracker", "GetUpload"),
    ("vod.signer.v1.UploadTracker", "ListUploads"),
    ("vod.signer.v1.UploadTracker", "WatchUploads"),
    ("grpc.health.v1.Health", "Check"),
    ("grpc.health.v1.Health", "Watch"),
    (
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
    ),
    ("unknown", "unknown"),
];
pub(super) const METHODS: usize = METHOD_NAMES.len();
const UNKNOWN_METHOD: usize = METHODS - 1;

/// gRPC status codes by number, as the gRPC specification names them.
pub(super) const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
pub(super) const CODES: usize = CODE_NAMES.len();
const CANCELLED: usize = 1;
const UNKNOWN: usize = 2;

fn method_index(path: &str) -> usize {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return UNKNOWN_METHOD;
    };
    METHOD_NAMES
        .iter()
        .position(|&(s, m)| s == service && m == method)
        .unwrap_or(UNKNOWN_METHOD)
}

/// The `grpc-status` in `headers`, if present; an unparseable value counts as `UNKNOWN`.
fn status_in(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&c| c < CODES)
        .unwrap_or(UNKNOWN);
    Some(code)
}

/// One gRPC call being measured, from its arrival to its status. The server starts one when
/// HTTP/2 hands it a stream, so calls refused before reaching a service (load shedding,
/// deadlines, unknown methods) are counted too. Recorded exactly once; dropped unfinished (the
/// client went away) it counts as `CANCELLED`.
pub(crate) struct CallRecorder {
    metrics: Arc<Metrics>,
    method: usize,
    started: Instant,
    finished: bool,
}

impl CallRecorder {
    pub(crate) fn new(metrics: Arc<Metrics>, path: &str, started: Instant) -> Self {
        CallRecorder {
            metrics,
            method: method_index(path),
            started,
            finished: false,
        }
    }

    /// The call ended with `code` without a response from a service.
    pub(crate) fn finish(mut self, code: tonic::Code) {
        self.record(code as usize);
    }

    /// The service answered: the status is in `response`'s headers (trailers-only) or will be
    /// in the trailers at the end of its body, which is watched for them. The body is wrapped
    /// in place, not boxed again.
    pub(crate) fn watch(mut self, response: Response<Body>) -> Response<MeteredBody> {
        if let Some(code) = status_in(response.headers()) {
            self.record(code);
            return response.map(MeteredBody::unwatched);
        }
        response.map(|inner| MeteredBody {
            inner,
            call: Some(self),
        })
    }

    fn record(&mut self, code: usize) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.metrics.request_counter(self.method, code).inc();
        self.metrics
            .duration_histogram(self.method)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for CallRecorder {
    fn drop(&mut self) {
        self.record(CANCELLED);
    }
}

/// A response body, watched for the trailers that carry the status (when they are still to
/// come).
pub(crate) struct MeteredBody {
    inner: Body,
    call: Option<CallRecorder>,
}

impl MeteredBody {
    /// A body whose call has been recorded already.
    pub(crate) fn unwatched(inner: Body) -> Self {
        MeteredBody { inner, call: None }
    }
}

impl HttpBody for MeteredBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut call) = self.call.take()
                {
                    call.record(status_in(trailers).unwrap_or(UNKNOWN));
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(mut call) = self.call.take() {
                    call.record(UNKNOWN);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_a_fixed_set_of_methods() {
        assert_eq!(
            METHOD_NAMES[method_index("/vod.signer.v1.UploadSigner/IssueSignature")],
            ("vod.signer.v1.UploadSigner", "IssueSignature")
        );
        assert_eq!(
            METHOD_NAMES[method_index("/grpc.health.v1.Health/Check")],
            ("grpc.health.v1.Health", "Check")
        );
        for path in [
            "/",
            "",
            "/x/y",
            "/vod.signer.v1.UploadSigner/Nope",
            "no-slash/x",
        ] {
            assert_eq!(method_index(path), UNKNOWN_METHOD, "{path}");
        }
    }

    #[test]
    fn status_codes_are_read_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(status_in(&headers), None);
        headers.insert("grpc-status", "8".parse().unwrap());
        assert_eq!(
            CODE_NAMES[status_in(&headers).unwrap()],
            "RESOURCE_EXHAUSTED"
        );
        headers.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(status_in(&headers), Some(UNKNOWN));
    }
}
