//! Health follows the audit log: `UploadSigner` is NOT_SERVING while audit lines cannot be
//! written (the service refuses issuance meanwhile), so balancers route to replicas that can
//! record what they issue.

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::logging::SinkHealth;
use crate::proto::v1::upload_signer_server::SERVICE_NAME;

/// Reports every change of `sink`'s health, and logs it, until aborted.
pub(super) async fn follow(sink: SinkHealth, health: HealthReporter) {
    let mut changes = sink.subscribe();
    let mut first = true;
    loop {
        let healthy = *changes.borrow_and_update();
        let status = if healthy {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status(SERVICE_NAME, status).await;
        if healthy && !first {
            tracing::info!("log output writable; audit lines flow and issuance is on");
        } else if !healthy {
            // Queued for the output it describes; it appears if that output recovers.
            tracing::error!(
                error = sink.last_error().as_deref().unwrap_or("unknown"),
                failed_writes = sink.failed_writes().get(),
                "cannot write log lines: issuance refused (UNAVAILABLE) and health NOT_SERVING until writes succeed"
            );
        }
        first = false;
        if changes.changed().await.is_err() {
            return;
        }
    }
}
