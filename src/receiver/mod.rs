//! The HTTP receiver of VOD's PUSH event notifications: `POST /vod/events/<token>`.
//!
//! A thin adapter: the path token is checked (in constant time, never logged), the body read
//! (at most [`MAX_EVENT_BYTES`]), parsed and authenticated with the `SignKey` by
//! [`crate::events`], and handed to the [`Tracker`], which answers only once it is durable.
//! Only then is the answer `200 {"code":0}`. Every refusal is a [`ReceiveError`], mapped to
//! its status in one table.

mod error;

use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::net::TcpListener;

pub(crate) use error::ReceiveError;

use crate::config::PathToken;
use crate::events::{self, CallbackAuthError, Notification, SignKey};
use crate::metrics::Metrics;
use crate::service::Clock;
use crate::tracking::{Delivery, Receipt, ReceivedEvent, Tracker, TrackingError};

/// Largest body accepted. VOD's largest documented bodies (a ProcedureStateChanged with every
/// subtask's output) are a few tens of KiB; a MiB leaves room without inviting abuse.
pub(crate) const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Where VOD posts: this prefix, then the path token.
pub(crate) const EVENTS_PATH_PREFIX: &str = "/vod/events/";

/// What the receiver needs; shared by every request.
pub(crate) struct Receiver {
    tracker: Tracker,
    /// The path token and SignKey in effect; a configuration reload replaces them together.
    credentials: ArcSwap<Credentials>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

/// How a callback proves it comes from VOD: its path, and its `Sign`/`T` when a SignKey is set.
pub(crate) struct Credentials {
    pub path_token: PathToken,
    pub sign_key: Option<SignKey>,
}

impl Receiver {
    pub(crate) fn new(
        tracker: Tracker,
        credentials: Credentials,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Self {
        Receiver {
            tracker,
            credentials: ArcSwap::from_pointee(credentials),
            metrics,
            clock,
        }
    }

    /// Takes effect for the next request: a callback already being read is checked against
    /// the credentials it started with.
    pub(crate) fn replace_credentials(&self, credentials: Credentials) {
        self.credentials.store(Arc::new(credentials));
    }
}

/// The receiver's routes: every path goes to one handler, which answers 404 for anything but
/// the configured one, so a wrong token and a wrong path look the same.
pub(crate) fn router(receiver: Arc<Receiver>) -> Router {
    Router::new().fallback(handle).with_state(receiver)
}

/// Serves the receiver on `listener` until `shutdown` completes; requests in flight finish.
pub(crate) async fn serve_events(
    listener: TcpListener,
    receiver: Arc<Receiver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(receiver))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The `event_type` label: a fixed set, so a sender cannot grow it.
fn type_label(notification: &Notification) -> &'static str {
    match notification {
        Notification::NewFileUpload(_) => "NewFileUpload",
        Notification::ProcedureStateChanged(_) => "ProcedureStateChanged",
        Notification::Legacy { .. } => "legacy",
        Notification::Other { .. } => "other",
    }
}

async fn handle(State(receiver): State<Arc<Receiver>>, request: Request) -> Response {
    let mut event_type = "none";
    let outcome = receive(&receiver, request, &mut event_type).await;
    match outcome {
        Ok(label) => {
            receiver.metrics.event_received(event_type, label);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"code":0}"#,
            )
                .into_response()
        }
        Err(error) => {
            receiver.metrics.event_received(event_type, error.outcome());
            match &error {
                // Probes of random paths are not worth a log line each.
                ReceiveError::NotFound | ReceiveError::MethodNotAllowed => {}
                ReceiveError::StoreUnavailable | ReceiveError::Internal(_) => {
                    tracing::error!(%error, event_type, "event notification not stored");
                }
                _ => tracing::warn!(%error, event_type, "event notification refused"),
            }
            error.into_response()
        }
    }
}

/// Everything between the request and the answer; `Ok` holds the metric outcome.
async fn receive(
    receiver: &Receiver,
    request: Request,
    event_type: &mut &'static str,
) -> Result<&'static str, ReceiveError> {
    let token = request
        .uri()
        .path()
        .strip_prefix(EVENTS_PATH_PREFIX)
        .ok_or(ReceiveError::NotFound)?;
    let credentials = receiver.credentials.load_full();
    if !credentials.path_token.matches(token) {
        return Err(ReceiveError::NotFound);
    }
    if request.method() != Method::POST {
        return Err(ReceiveError::MethodNotAllowed);
    }
    let query = request.uri().query().map(str::to_owned);
    let (parts, body) = request.into_parts();
    let raw = read_body(&parts.headers, body).await?;
    let mut parsed = events::parse_body(&raw)?;
    *event_type = type_label(&parsed.notification);
    if let Some(key) = &credentials.sign_key {
        authenticate(
            key,
            parsed.sign.take(),
            query.as_deref(),
            &parts.headers,
            receiver.clock.now(),
        )?;
    }
    let (notification, dedupe_key) = parsed.into_keyed();
    let event = ReceivedEvent {
        raw,
        received_at: receiver.clock.now(),
        delivery: Delivery::Push,
    };
    let receipt = receiver
        .tracker
        .receive_parsed(event, notification, dedupe_key)
        .await
        .map_err(|e| match e {
            TrackingError::Unavailable(_) => ReceiveError::StoreUnavailable,
            other => ReceiveError::Internal(other.to_string()),
        })?;
    Ok(match receipt {
        Receipt::Applied => "applied",
        Receipt::Duplicate => "duplicate",
        Receipt::Unmatched => "unmatched",
        Receipt::Ignored { .. } => "ignored",
        Receipt::Legacy => {
            tracing::info!(
                "legacy 2.0-format event notification stored; only 3.0 events update uploads \
                 (set the 3.0 NotificationUrl in ModifyEventConfig)"
            );
            "legacy"
        }
    })
}

/// The body, refused early when its declared length is too large and cut off when the
/// stream runs past the limit.
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, ReceiveError> {
    let too_large = ReceiveError::TooLarge {
        limit: MAX_EVENT_BYTES,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_EVENT_BYTES as u64) {
        return Err(too_large);
    }
    match Limited::new(body, MAX_EVENT_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
        Err(e) => Err(ReceiveError::Unreadable(e.to_string())),
    }
}

/// Checks the `Sign`/`T` pair wherever the callback carries it (`in_body`: the pair of the
/// body's own fields); nothing is stored without it.
fn authenticate(
    key: &SignKey,
    in_body: Option<events::SignedPair>,
    query: Option<&str>,
    headers: &HeaderMap,
    now: i64,
) -> Result<(), ReceiveError> {
    let pair = events::locate_sign_outside_body(in_body, query, |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
    .ok_or(CallbackAuthError::Missing)?;
    let t = pair.t.ok_or(CallbackAuthError::MalformedT)?;
    events::verify_sign(key, &pair.sign, t, now)?;
    tracing::debug!(
        location = pair.location.as_str(),
        "event notification authenticated"
    );
    Ok(())
}
