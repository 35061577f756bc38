//! A tower layer that counts every gRPC call by method and status code and times it.
//!
//! It sits outside the services, so calls refused before reaching them (unknown methods,
//! load shedding, timeouts) are counted too. A gRPC status travels in the response headers
//! when the call fails before any message ("trailers-only"), otherwise in the trailers at the
//! end of the body; the layer reads whichever comes, and a body dropped before its trailers
//! (the client went away) counts as `CANCELLED`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{HeaderMap, Request, Response};

use super::Metrics;

/// The methods counted under their own name; anything else is `unknown`. Fixed, so a client
/// sending random paths cannot grow the label set.
pub(super) const METHOD_NAMES: [(&str, &str); 8] = [
    ("vod.signer.v1.UploadSigner", "IssueSignature"),
    ("vod.signer.v1.UploadSigner", "VerifySignature"),
    ("vod.signer.v1.UploadSigner", "IssueSignatureBatch"),
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

/// Adds [`MetricsService`] around the gRPC routes (`Server::builder().layer(..)`).
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> tower_layer::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request<Body>> for MetricsService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let call = Call {
            metrics: self.metrics.clone(),
            method: method_index(request.uri().path()),
            started: Instant::now(),
            finished: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut call = call;
            match response.await {
                Ok(response) => {
                    if let Some(code) = status_in(response.headers()) {
                        call.finish(code);
                        return Ok(response);
                    }
                    let (parts, body) = response.into_parts();
                    let body = MeteredBody {
                        inner: body,
                        call: Some(call),
                    };
                    Ok(Response::from_parts(parts, Body::new(body)))
                }
                Err(e) => {
                    // The transport answers such errors itself, without a gRPC status.
                    call.finish(UNKNOWN);
                    Err(e)
                }
            }
        })
    }
}

/// One call being measured; recorded exactly once, as `CANCELLED` if dropped unfinished.
struct Call {
    metrics: Arc<Metrics>,
    method: usize,
    started: Instant,
    finished: bool,
}

impl Call {
    fn finish(&mut self, code: usize) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.metrics.request_counter(self.method, code).inc();
        self.metrics
            .duration_histogram(self.method)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELLED);
    }
}

/// The response body, watched for the trailers that carry the status.
struct MeteredBody {
    inner: Body,
    call: Option<Call>,
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
                    call.finish(status_in(trailers).unwrap_or(UNKNOWN));
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                if let Some(mut call) = self.call.take() {
                    call.finish(UNKNOWN);
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
