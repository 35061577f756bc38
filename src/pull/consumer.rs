//! The reliable-callback consumer: one loop per replica that pulls events from VOD's queue,
//! stores each through the same intake as a PUSH, and confirms only what was stored.
//!
//! Order is what makes it lossless: an event is confirmed only after [`Tracker::receive`]
//! returned (durable), so a crash at any point leaves it in VOD's queue, to come back within
//! 30 s to this replica or another, where the store's deduplication makes it a no-op.
//! Shutdown interrupts only the long poll and the backoff sleeps, never the store-then-confirm
//! step, so the loop stops having confirmed everything it stored.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::backoff::{Backoff, BackoffPolicy};
use super::unix_now;
use crate::metrics::PullMetrics;
use crate::tracking::{Delivery, Receipt, ReceivedEvent, Tracker};
use crate::vod_api::{ApiClient, ApiError, ErrorClass, EventHandle, HandleBatch, PulledEvent};

/// Timings of the consumer. [`Default`] holds Tencent's numbers; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct PullTiming {
    /// Client timeout of `PullEvents`: VOD holds a poll up to 5 s, Tencent says to wait 10 s.
    pub pull_timeout: Duration,
    /// Timeout of one `ConfirmEvents`.
    pub confirm_timeout: Duration,
    /// How long after the pull a confirm may still be tried: VOD's window is 30 s, and a
    /// confirm that arrives after it only earns error 4000.
    pub confirm_window: Duration,
    /// Pulled batches being stored and confirmed at once while the next poll runs.
    pub batches_in_flight: usize,
    pub backoff: BackoffPolicy,
}

impl Default for PullTiming {
    fn default() -> Self {
        PullTiming {
            pull_timeout: Duration::from_secs(10),
            confirm_timeout: Duration::from_secs(5),
            confirm_window: Duration::from_secs(25),
            batches_in_flight: 4,
            backoff: BackoffPolicy::default(),
        }
    }
}

/// What one consumer needs.
#[derive(Clone)]
pub struct Consumer {
    api: ApiClient,
    tracker: Tracker,
    metrics: Arc<crate::metrics::Metrics>,
    timing: PullTiming,
}

/// The outcome of handing one pulled batch to the store.
struct Stored {
    handles: Vec<EventHandle>,
    failures: usize,
}

/// What became of one pulled batch.
struct BatchOutcome {
    store_failures: usize,
    confirmed_all: bool,
}

/// The pull times of the events this consumer owes a confirm, for the age metric.
#[derive(Default)]
struct Unconfirmed {
    /// One entry per batch being stored and confirmed.
    in_hand: HashMap<tokio::task::Id, Instant>,
    /// The oldest pull of a batch handed back to VOD (not stored, or not confirmed), and until
    /// when it counts: VOD holds those events as delivered until its confirm window passes,
    /// then delivers them again, to this replica or another, where they are counted anew.
    /// Without the end, one failed confirm would keep the age growing for ever.
    handed_back: Option<(Instant, Instant)>,
}

impl Unconfirmed {
    fn pulled(&mut self, batch: tokio::task::Id, pulled_at: Instant) {
        self.in_hand.insert(batch, pulled_at);
    }

    /// Records a finished batch; true when the store refused some of its events.
    fn settle(
        &mut self,
        done: Result<(tokio::task::Id, BatchOutcome), tokio::task::JoinError>,
        window: Duration,
    ) -> bool {
        let (id, store_failing, settled) = match done {
            Ok((id, outcome)) => (
                id,
                outcome.store_failures > 0,
                outcome.store_failures == 0 && outcome.confirmed_all,
            ),
            Err(e) => {
                tracing::error!(error = %e, "a pulled batch's task failed; VOD delivers it again");
                (e.id(), true, false)
            }
        };
        if let Some(pulled_at) = self.in_hand.remove(&id)
            && !settled
        {
            let until = pulled_at + window;
            self.handed_back = Some(match self.handed_back {
                Some((oldest, end)) => (oldest.min(pulled_at), end.max(until)),
                None => (pulled_at, until),
            });
        }
        store_failing
    }

    /// The pull time of the oldest event still owed a confirm, if any.
    fn oldest(&mut self, now: Instant) -> Option<Instant> {
        if self.handed_back.is_some_and(|(_, until)| until <= now) {
            self.handed_back = None;
        }
        self.in_hand
            .values()
            .copied()
            .chain(self.handed_back.map(|(oldest, _)| oldest))
            .min()
    }
}

impl Consumer {
    pub fn new(
        api: ApiClient,
        tracker: Tracker,
        metrics: Arc<crate::metrics::Metrics>,
        timing: PullTiming,
    ) -> Self {
        Consumer {
            api,
            tracker,
            metrics,
            timing,
        }
    }

    fn metrics(&self) -> &PullMetrics {
        self.metrics.pull()
    }

    /// Pulls until `shutdown` resolves, then returns once nothing stored is left unconfirmed.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut work = pin!(self.run_until(stop_rx));
        let stopping = tokio::select! {
            () = shutdown => true,
            () = &mut work => false,
        };
        if stopping {
            // The loop finishes its current store-and-confirm step and stops at the next poll.
            let _ = stop_tx.send(true);
            work.await;
        }
    }

    async fn run_until(&self, mut stop: watch::Receiver<bool>) {
        tracing::info!(endpoint = %self.api.endpoint(), "pulling VOD events (reliable callback)");
        let mut backoff = Backoff::new(self.timing.backoff);
        // Batches being stored and confirmed while the next poll runs: the round trips to
        // VOD and the store's commits overlap instead of adding up.
        let mut batches: JoinSet<BatchOutcome> = JoinSet::new();
        let mut unconfirmed = Unconfirmed::default();
        let window = self.timing.confirm_window;
        loop {
            let mut store_failing = false;
            while let Some(done) = batches.try_join_next_with_id() {
                store_failing |= unconfirmed.settle(done, window);
            }
            if batches.len() >= self.timing.batches_in_flight.max(1)
                && let Some(done) = batches.join_next_with_id().await
            {
                store_failing |= unconfirmed.settle(done, window);
            }
            self.report_unconfirmed(unconfirmed.oldest(Instant::now()));
            if store_failing {
                // The store is failing: pulling more now would only fetch events that cannot
                // be stored either. They stay in VOD's queue meanwhile.
                let wait = backoff.after(None);
                if self.sleep_or_stop(wait, &mut stop).await {
                    break;
                }
                continue;
            }
            let pulled = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break,
                result = self.api.pull_events(self.timing.pull_timeout) => result,
            };
            let events = match pulled {
                Ok(events) => events,
                Err(error) => {
                    self.api_failed("PullEvents", &error);
                    let wait = backoff.after(Some(&error));
                    if self.sleep_or_stop(wait, &mut stop).await {
                        break;
                    }
                    continue;
                }
            };
            backoff.reset();
            if events.is_empty() {
                continue;
            }
            let pulled_at = Instant::now();
            self.metrics().pulled(events.len() as u64);
            let consumer = self.clone();
            let batch = batches.spawn(async move {
                let stored = consumer.store(events).await;
                let confirmed_all = consumer.confirm(stored.handles, pulled_at).await;
                BatchOutcome {
                    store_failures: stored.failures,
                    confirmed_all,
                }
            });
            unconfirmed.pulled(batch.id(), pulled_at);
        }
        // Stopping: every batch in hand is stored and confirmed before returning.
        while let Some(done) = batches.join_next_with_id().await {
            unconfirmed.settle(done, window);
        }
        self.report_unconfirmed(None);
    }

    /// Stores every event of one pull at once (the store commits concurrent events together).
    async fn store(&self, events: Vec<PulledEvent>) -> Stored {
        let received_at = unix_now();
        let mut tasks = JoinSet::new();
        for event in events {
            let tracker = self.tracker.clone();
            tasks.spawn(async move {
                let outcome = tracker
                    .receive(ReceivedEvent {
                        raw: event.raw,
                        received_at,
                        delivery: Delivery::Pull,
                    })
                    .await
                    .map_err(|e| e.to_string());
                (event.handle, event.event_type, outcome)
            });
        }
        let mut stored = Stored {
            handles: Vec::with_capacity(tasks.len()),
            failures: 0,
        };
        while let Some(joined) = tasks.join_next().await {
            // A panicking store task is a bug; its event counts as not stored (not confirmed).
            let (handle, event_type, outcome) = match joined {
                Ok(result) => result,
                Err(e) => (None, String::new(), Err(format!("store task failed: {e}"))),
            };
            match outcome {
                Ok(receipt) => {
                    if receipt == Receipt::Duplicate {
                        self.metrics().duplicate();
                    }
                    match handle {
                        Some(handle) => stored.handles.push(handle),
                        None => tracing::warn!(
                            event_type,
                            "a pulled event has no EventHandle: stored, but it cannot be confirmed"
                        ),
                    }
                }
                Err(error) => {
                    stored.failures += 1;
                    self.metrics().store_failed();
                    tracing::warn!(
                        event_type,
                        error = %error,
                        "cannot store a pulled event; it is not confirmed, so VOD delivers it again"
                    );
                }
            }
        }
        stored
    }

    /// Confirms `handles` in calls of at most 16, retrying a failed call while the confirm
    /// window lasts. True when every handle was confirmed.
    async fn confirm(&self, handles: Vec<EventHandle>, pulled_at: Instant) -> bool {
        let mut all = true;
        for batch in HandleBatch::split(handles) {
            let mut backoff = Backoff::new(self.timing.backoff);
            loop {
                match self
                    .api
                    .confirm_events(&batch, self.timing.confirm_timeout)
                    .await
                {
                    Ok(()) => {
                        self.metrics().confirmed(batch.len() as u64);
                        break;
                    }
                    Err(error) => {
                        self.api_failed("ConfirmEvents", &error);
                        if error.class() == ErrorClass::InvalidParameter {
                            // Error 4000: the window passed. The events are stored, so their
                            // redelivery will be a duplicate, confirmed then.
                            tracing::warn!(
                                events = batch.len(),
                                "confirm came too late; VOD will deliver these stored events again"
                            );
                            all = false;
                            break;
                        }
                        let wait = backoff.after(Some(&error));
                        if pulled_at.elapsed() + wait >= self.timing.confirm_window {
                            tracing::warn!(
                                events = batch.len(),
                                "giving up confirming within the window; VOD will deliver these stored events again"
                            );
                            all = false;
                            break;
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        all
    }

    fn api_failed(&self, action: &'static str, error: &ApiError) {
        self.metrics().api_error(action, error.class());
        match error.class() {
            ErrorClass::AuthFailure => tracing::error!(
                action,
                code = error.code(),
                error = %error,
                "VOD refused the API credentials: check [events.pull] api_secret_id and its key \
                 (or the active [[keys]] entry) and the system clock; retrying with backoff"
            ),
            ErrorClass::RequestLimitExceeded => tracing::warn!(
                action,
                "VOD's request limit (100/s) was exceeded; slowing down"
            ),
            _ => tracing::warn!(action, code = error.code(), error = %error, "VOD API call failed"),
        }
    }

    fn report_unconfirmed(&self, since: Option<Instant>) {
        self.metrics()
            .oldest_unconfirmed_age(since.map_or(0, |t| t.elapsed().as_secs()));
    }

    /// Sleeps `wait`; true when asked to stop meanwhile.
    async fn sleep_or_stop(&self, wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => true,
            () = tokio::time::sleep(wait) => false,
        }
    }
}
