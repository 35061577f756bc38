//! A gate that holds `IssueSignature` calls until the test lets them through.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;

use crate::service::IssueHook;

/// Holds every `IssueSignature` call at its start until released, so a test can keep a call
/// in flight (graceful shutdown, deadlines, overload) without timing tricks.
#[derive(Debug)]
pub struct IssueGate {
    arrived: Semaphore,
    released: Semaphore,
}

impl IssueGate {
    pub fn new() -> Arc<IssueGate> {
        Arc::new(IssueGate {
            arrived: Semaphore::new(0),
            released: Semaphore::new(0),
        })
    }

    /// Waits until a call has reached the gate.
    pub async fn wait_for_arrival(&self) {
        self.arrived
            .acquire()
            .await
            .expect("the gate's semaphores are never closed")
            .forget();
    }

    /// Lets `n` held (or future) calls through.
    pub fn release(&self, n: usize) {
        self.released.add_permits(n);
    }
}

impl IssueHook for IssueGate {
    fn before_issue(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.arrived.add_permits(1);
            self.released
                .acquire()
                .await
                .expect("the gate's semaphores are never closed")
                .forget();
        })
    }
}
