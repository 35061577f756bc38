//! Prometheus metrics, served as text at `/metrics` on their own address (`metrics_listen`),
//! apart from the gRPC port so a scraper never needs a caller token or a client certificate.
//!
//! | metric | labels |
//! | --- | --- |
//! | `vod_signer_grpc_requests_total` | `grpc_service`, `grpc_method`, `grpc_code` |
//! | `vod_signer_grpc_request_duration_seconds` (histogram) | `grpc_service`, `grpc_method` |
//! | `vod_signer_signatures_issued_total` | `caller` |
//! | `vod_signer_verifications_total` | `outcome` (`VALID` or the failure, e.g. `EXPIRED`) |
//! | `vod_signer_quota_rejections_total` | `caller` |
//! | `vod_signer_quota_store_errors_total` | `store`, `on_store_error` |
//! | `vod_signer_config_reloads_total` | `result` (`ok`, `failed`) |
//! | `vod_signer_tls_handshake_failures_total` | `reason` (`error`, `timeout`) |
//! | `vod_signer_calls_shed_total` | `reason` (`in_flight`, `queue_delay`) |
//! | `vod_signer_log_write_failures_total` | |
//! | `vod_signer_log_lines_dropped_total` | |
//! | `vod_signer_connections_closed_total` | `reason` (`max_connections`, `handshake_timeout`) |
//! | PULL consumer and reconciliation | see `PullMetrics` |
//! | `vod_signer_events_received_total` | `event_type` (`NewFileUpload`, `ProcedureStateChanged`, `legacy`, `other`, `none`), `outcome` |
//!
//! Label sets that are fixed enums are resolved once into handles (gRPC method × code and
//! method durations on first use, verification outcomes up front). Per-caller counters are
//! found through the family by a label holding the caller's name as the configuration's own
//! `Arc<str>`, so counting a call never allocates; cardinality is bounded by the callers
//! configured.

mod grpc;
mod http;
mod pull;

use std::fmt;
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub(crate) use grpc::{CallRecorder, MeteredBody};
pub(crate) use http::serve_metrics;
pub(crate) use pull::PullMetrics;

use crate::logging::SinkHealth;
use crate::signature::VerifyFailure;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    grpc_service: &'static str,
    grpc_method: &'static str,
    grpc_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: &'static str,
    grpc_method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallerLabels {
    caller: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    store: &'static str,
    on_store_error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event_type: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShedLabels {
    reason: &'static str,
}

/// Why the server refused a call to protect the others (`UNAVAILABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shed {
    /// `[transport] max_concurrent_requests` calls were already in flight.
    InFlight,
    /// The call waited longer than `[transport] max_queue_delay_ms` to be started.
    QueueDelay,
}

impl Shed {
    pub const ALL: [Shed; 2] = [Shed::InFlight, Shed::QueueDelay];

    pub fn as_str(self) -> &'static str {
        match self {
            Shed::InFlight => "in_flight",
            Shed::QueueDelay => "queue_delay",
        }
    }
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 1.2 s: a call is microseconds of work, the tail is the network and
    // queueing, and anything above a second is an incident whatever its exact value.
    Histogram::new(exponential_buckets(0.000_05, 2.5, 12))
}

/// Every metric of one server. Cheap to share (`Arc<Metrics>`).
pub struct Metrics {
    registry: Registry,
    requests: Family<GrpcLabels, Counter>,
    request_handles: [[OnceLock<Counter>; grpc::CODES]; grpc::METHODS],
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
    duration_handles: [OnceLock<Histogram>; grpc::METHODS],
    issued: Family<CallerLabels, Counter>,
    verifications: [Counter; 1 + VerifyFailure::ALL.len()],
    quota_rejections: Family<CallerLabels, Counter>,
    quota_store_errors: Family<StoreErrorLabels, Counter>,
    reloads_ok: Counter,
    reloads_failed: Counter,
    handshake_errors: Counter,
    handshake_timeouts: Counter,
    shed: [Counter; Shed::ALL.len()],
    refused_connections: Counter,
    evicted_connections: Counter,
    silent_connections: Counter,
    pull: PullMetrics,
    events: Family<EventLabels, Counter>,
}

impl Metrics {
    /// Metrics whose log-output counters nobody increments (no log sink of ours).
    pub fn new() -> Metrics {
        Metrics::build(Counter::default(), Counter::default())
    }

    /// Metrics that also expose the failures of the log output `sink`.
    pub fn with_log_sink(sink: &SinkHealth) -> Metrics {
        Metrics::build(sink.failed_writes().clone(), sink.dropped_lines().clone())
    }

    fn build(log_write_failures: Counter, log_lines_dropped: Counter) -> Metrics {
        let mut registry = Registry::with_prefix("vod_signer");
        let requests = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "grpc_requests",
            "gRPC calls handled, by method and status code",
            requests.clone(),
        );
        let durations: Family<MethodLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "grpc_request_duration",
            "Time from receiving a gRPC call to sending its status",
            Unit::Seconds,
            durations.clone(),
        );
        let issued = Family::<CallerLabels, Counter>::default();
        registry.register(
            "signatures_issued",
            "Signatures issued, by caller",
            issued.clone(),
        );
        let verification_family = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "verifications",
            "Signatures checked, by outcome (VALID or the failure)",
            verification_family.clone(),
        );
        // Registered up front so every outcome shows, at 0 until it happens: an alert on
        // BAD_SIGNATURE should not depend on one having been seen already.
        let verifications = std::array::from_fn(|i| {
            let outcome = match i {
                0 => "VALID",
                i => VerifyFailure::ALL[i - 1].as_str(),
            };
            verification_family.get_or_create_owned(&OutcomeLabels { outcome })
        });
        let quota_rejections = Family::<CallerLabels, Counter>::default();
        registry.register(
            "quota_rejections",
            "Issuance refused over a per-user quota, by caller",
            quota_rejections.clone(),
        );
        let quota_store_errors = Family::<StoreErrorLabels, Counter>::default();
        registry.register(
            "quota_store_errors",
            "Quota checks the store could not answer, by store and what was done instead",
            quota_store_errors.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP), by result",
            reloads.clone(),
        );
        let reloads_ok = reloads.get_or_create_owned(&ReloadLabels { result: "ok" });
        let reloads_failed = reloads.get_or_create_owned(&ReloadLabels { result: "failed" });
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed (e.g. a client without the required certificate) or timed out",
            handshakes.clone(),
        );
        let handshake_errors = handshakes.get_or_create_owned(&HandshakeLabels { reason: "error" });
        let handshake_timeouts =
            handshakes.get_or_create_owned(&HandshakeLabels { reason: "timeout" });
        let shed_family = Family::<ShedLabels, Counter>::default();
        registry.register(
            "calls_shed",
            "Calls refused with UNAVAILABLE because the server was overloaded, by reason",
            shed_family.clone(),
        );
        let shed = Shed::ALL.map(|reason| {
            shed_family.get_or_create_owned(&ShedLabels {
                reason: reason.as_str(),
            })
        });
        registry.register(
            "log_write_failures",
            "Writes of log lines (audit lines included) that the output refused; issuance stops meanwhile",
            log_write_failures,
        );
        registry.register(
            "log_lines_dropped",
            "Log lines discarded because the output was broken and the buffer full",
            log_lines_dropped,
        );
        // Same label name as the handshake failures: one `reason`.
        let closed = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections closed by the server to protect it: over max_connections, evicted for a newcomer before a known caller used them, or silent past the handshake timeout",
            closed.clone(),
        );
        let refused_connections = closed.get_or_create_owned(&HandshakeLabels {
            reason: "max_connections",
        });
        let evicted_connections =
            closed.get_or_create_owned(&HandshakeLabels { reason: "evicted" });
        let silent_connections = closed.get_or_create_owned(&HandshakeLabels {
            reason: "handshake_timeout",
        });
        let pull = PullMetrics::default();
        pull.register(&mut registry);
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events_received",
            "VOD event notifications received over HTTP, by event type (a fixed set; unknown types \
             count as `other`) and outcome",
            events.clone(),
        );
        Metrics {
            registry,
            requests,
            request_handles: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            durations,
            duration_handles: std::array::from_fn(|_| OnceLock::new()),
            issued,
            verifications,
            quota_rejections,
            quota_store_errors,
            reloads_ok,
            reloads_failed,
            handshake_errors,
            handshake_timeouts,
            shed,
            refused_connections,
            evicted_connections,
            silent_connections,
            pull,
            events,
        }
    }

    /// The exposition in the text format (OpenMetrics 1.0, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// `caller` is the configuration's own name (a reference count is taken, nothing is
    /// copied).
    pub fn signatures_issued(&self, caller: &Arc<str>, count: u64) {
        self.issued
            .get_or_create(&caller_labels(caller))
            .inc_by(count);
    }

    /// One verification; `failure` is `None` for a valid signature.
    pub fn verified(&self, failure: Option<VerifyFailure>) {
        let index = match failure {
            None => 0,
            Some(failure) => {
                1 + VerifyFailure::ALL
                    .iter()
                    .position(|f| *f == failure)
                    .expect("ALL lists every failure")
            }
        };
        self.verifications[index].inc();
    }

    pub fn quota_rejected(&self, caller: &Arc<str>) {
        self.quota_rejections
            .get_or_create(&caller_labels(caller))
            .inc();
    }

    pub fn quota_store_error(&self, store: &'static str, on_store_error: &'static str) {
        self.quota_store_errors
            .get_or_create(&StoreErrorLabels {
                store,
                on_store_error,
            })
            .inc();
    }

    /// A TLS handshake that did not complete: `timed_out`, or refused by either side.
    pub fn tls_handshake_failed(&self, timed_out: bool) {
        if timed_out {
            self.handshake_timeouts.inc();
        } else {
            self.handshake_errors.inc();
        }
    }

    /// A connection closed as soon as it was accepted: `max_connections` were open.
    pub fn connection_refused(&self) {
        self.refused_connections.inc();
    }

    /// A connection that no known caller had used yet, closed to make room for a newcomer at
    /// `max_connections`.
    pub fn connection_evicted(&self) {
        self.evicted_connections.inc();
    }

    /// A connection closed because its client sent no HTTP/2 preface (or did not finish its
    /// TLS handshake) in time.
    pub fn connection_silent(&self) {
        self.silent_connections.inc();
    }

    /// A call refused to protect the others; its status is counted by its `CallRecorder`.
    pub(crate) fn call_shed(&self, reason: Shed) {
        self.shed[reason as usize].inc();
    }

    /// One event notification answered. `event_type` and `outcome` come from fixed sets in
    /// the receiver, so a sender cannot grow the label set.
    pub fn event_received(&self, event_type: &'static str, outcome: &'static str) {
        self.events
            .get_or_create(&EventLabels {
                event_type,
                outcome,
            })
            .inc();
    }

    pub fn config_reloaded(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_failed.inc();
        }
    }

    /// The reliable (PULL) consumer's and reconciliation's metrics.
    pub fn pull(&self) -> &PullMetrics {
        &self.pull
    }

    fn request_counter(&self, method: usize, code: usize) -> &Counter {
        self.request_handles[method][code].get_or_init(|| {
            let (grpc_service, grpc_method) = grpc::METHOD_NAMES[method];
            self.requests.get_or_create_owned(&GrpcLabels {
                grpc_service,
                grpc_method,
                grpc_code: grpc::CODE_NAMES[code],
            })
        })
    }

    fn duration_histogram(&self, method: usize) -> &Histogram {
        self.duration_handles[method].get_or_init(|| {
            let (grpc_service, grpc_method) = grpc::METHOD_NAMES[method];
            self.durations.get_or_create_owned(&MethodLabels {
                grpc_service,
                grpc_method,
            })
        })
    }
}

fn caller_labels(caller: &Arc<str>) -> CallerLabels {
    CallerLabels {
        caller: Arc::clone(caller),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
