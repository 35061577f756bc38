//! The `/metrics` HTTP endpoint (HTTP/1.1, plain text, no authentication: bind it to an
//! address only the scraper reaches).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use super::Metrics;

/// The content type of the OpenMetrics text format, which Prometheus negotiates and reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
#[error("the metrics endpoint failed: {0}")]
pub(crate) struct MetricsServerError(#[source] std::io::Error);

/// Serves `GET /metrics` on `listener` until `shutdown` completes. Any other path is 404.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsServerError> {
    let app = Router::new()
        .route("/metrics", get(exposition))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(MetricsServerError)
}

async fn exposition(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.encode(),
    )
}
