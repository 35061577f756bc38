//! The integration tests, as one binary: one module per topic, one harness (`support`, built on
//! `vod_signer::testing`, which the dev-dependency on this package turns on).

mod support;

// The signing core.
mod core_foreign;
mod core_oracle;
mod core_properties;
mod core_vectors;

// The command line.
mod cli_issue;
mod cli_sign_verify;

// The gRPC service.
mod service_calls;
mod service_config;
mod service_hardening;
mod service_lifecycle;
mod service_overload;
mod service_refusal_log;

// Operations.
mod audit;
mod connections;
mod deploy;
mod metrics;
mod quota;
mod quota_server;
mod random;
mod reload;
mod tls;
mod transport;

// Event notifications and upload tracking.
mod events_parse;
mod events_pull;
mod events_pull_postgres;
mod events_pull_server;
mod pull_drain_bench;
mod receiver_binary;
mod receiver_http;
mod receiver_postgres;
mod tracking_state;
mod tracking_store;

// The client crate.
mod client;

// Rules about the code itself.
mod module_graph;
mod release_has_no_hooks;
