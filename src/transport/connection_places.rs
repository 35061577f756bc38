//! `max_connections`, and which connection gives way when every place is taken.
//!
//! A bound on open connections alone lets anyone who can open sockets keep every real caller
//! out: sockets that never speak, that send only the HTTP/2 preface, or that send only calls
//! without a token each hold a place until a timeout closes them, and are reopened at once.
//! So a connection is *vouched for* once it carries a call from a known caller (admission
//! checks the bearer token). When every place is taken, a new connection takes the place of
//! the oldest connection not vouched for, which is closed at once; only when every open
//! connection is vouched for is the new one refused. A real client's new connection is vouched
//! for within its first round trip, so it is the youngest candidate for eviction, and it would
//! take `max_connections` further sockets before its first call to push it out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The `max_connections` places, shared by the accept loop and every connection.
pub(super) struct ConnectionPlaces {
    max: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: usize,
    next_id: u64,
    /// Open connections not vouched for yet, oldest first.
    unvouched: BTreeMap<u64, Arc<Eviction>>,
}

/// How a connection is told that it gave its place away.
#[derive(Default)]
struct Eviction {
    done: AtomicBool,
    notify: Notify,
}

/// What `take` gave a new connection.
pub(super) enum Taken {
    /// A free place.
    Free(ConnectionPlace),
    /// The place of the oldest connection not vouched for, which is being closed.
    Evicted(ConnectionPlace),
    /// Every place is taken by a connection vouched for.
    Full,
}

impl ConnectionPlaces {
    pub(super) fn new(max: usize) -> Arc<ConnectionPlaces> {
        Arc::new(ConnectionPlaces {
            max,
            state: Mutex::new(State::default()),
        })
    }

    /// A place for a connection just accepted.
    pub(super) fn take(self: &Arc<Self>) -> Taken {
        let mut state = self.lock();
        let evicted = if state.open < self.max {
            state.open += 1;
            false
        } else if let Some((_, oldest)) = state.unvouched.pop_first() {
            // The place passes to the newcomer as it is: `open` stays the same, and the
            // evicted connection's `Drop` knows not to free it again.
            oldest.done.store(true, Ordering::Release);
            oldest.notify.notify_one();
            true
        } else {
            return Taken::Full;
        };
        let id = state.next_id;
        state.next_id += 1;
        let eviction = Arc::new(Eviction::default());
        state.unvouched.insert(id, eviction.clone());
        let place = ConnectionPlace {
            id,
            places: self.clone(),
            eviction,
            vouched: Arc::new(AtomicBool::new(false)),
        };
        if evicted {
            Taken::Evicted(place)
        } else {
            Taken::Free(place)
        }
    }

    /// Open connections, as counted against `max_connections`.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a count and a map, each updated in one step: still consistent after
        // a panic elsewhere while the lock was held.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One connection's place, held for as long as the connection is open.
pub(super) struct ConnectionPlace {
    id: u64,
    places: Arc<ConnectionPlaces>,
    eviction: Arc<Eviction>,
    vouched: Arc<AtomicBool>,
}

impl ConnectionPlace {
    /// Completes when a newer connection has taken this place; the connection must then
    /// close. Never completes once the connection is vouched for.
    pub(super) async fn evicted(&self) {
        self.eviction.notify.notified().await;
    }

    /// The handle the connection's requests carry, for admission to vouch with.
    pub(super) fn voucher(&self) -> Voucher {
        Voucher {
            id: self.id,
            places: self.places.clone(),
            vouched: self.vouched.clone(),
        }
    }
}

impl Drop for ConnectionPlace {
    fn drop(&mut self) {
        let mut state = self.places.lock();
        if !self.eviction.done.load(Ordering::Acquire) {
            state.open -= 1;
            state.unvouched.remove(&self.id);
        }
    }
}

/// In every request's extensions: lets admission vouch for the connection it came on.
#[derive(Clone)]
pub(crate) struct Voucher {
    id: u64,
    places: Arc<ConnectionPlaces>,
    vouched: Arc<AtomicBool>,
}

impl Voucher {
    /// Whether the connection is vouched for already (then `vouch` has nothing to do).
    pub(crate) fn is_vouched(&self) -> bool {
        self.vouched.load(Ordering::Relaxed)
    }

    /// A known caller has used the connection: it is no longer evicted for newcomers.
    pub(crate) fn vouch(&self) {
        // Every call of a known caller comes here: a plain load keeps the common case from
        // writing the shared flag.
        if self.is_vouched() || self.vouched.swap(true, Ordering::Relaxed) {
            return;
        }
        // Already evicted (the race is lost): the connection is closing anyway.
        self.places.lock().unvouched.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn place(taken: Taken) -> ConnectionPlace {
        match taken {
            Taken::Free(place) | Taken::Evicted(place) => place,
            Taken::Full => panic!("no place"),
        }
    }

    async fn is_evicted(place: &ConnectionPlace) -> bool {
        tokio::time::timeout(Duration::from_millis(50), place.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_newcomer_evicts_the_oldest_connection_not_vouched_for() {
        let places = ConnectionPlaces::new(3);
        let oldest = place(places.take());
        let vouched = place(places.take());
        vouched.voucher().vouch();
        let younger = place(places.take());
        assert_eq!(places.open(), 3);

        let newcomer = match places.take() {
            Taken::Evicted(place) => place,
            _ => panic!("the newcomer should evict"),
        };
        assert!(is_evicted(&oldest).await, "the oldest unvouched goes first");
        assert!(!is_evicted(&younger).await);
        assert!(!is_evicted(&vouched).await);
        drop(oldest);
        assert_eq!(places.open(), 3, "an evicted place passed to the newcomer");

        assert!(matches!(places.take(), Taken::Evicted(_)));
        assert!(is_evicted(&younger).await);
        drop(younger);
        // The second newcomer was dropped at once: its place is free again.
        assert_eq!(places.open(), 2);
        newcomer.voucher().vouch();
        assert!(matches!(places.take(), Taken::Free(_)));
        assert_eq!(
            places.open(),
            2,
            "the free place was dropped with the Taken"
        );
    }

    #[tokio::test]
    async fn when_every_connection_is_vouched_for_a_newcomer_is_refused() {
        let places = ConnectionPlaces::new(2);
        let a = place(places.take());
        let b = place(places.take());
        a.voucher().vouch();
        b.voucher().vouch();
        assert!(matches!(places.take(), Taken::Full));
        drop(a);
        assert_eq!(places.open(), 1);
        assert!(matches!(places.take(), Taken::Free(_)));
    }

    #[tokio::test]
    async fn vouching_after_eviction_does_not_free_the_place_twice() {
        let places = ConnectionPlaces::new(1);
        let first = place(places.take());
        let voucher = first.voucher();
        let second = place(places.take());
        voucher.vouch();
        drop(first);
        assert_eq!(places.open(), 1);
        drop(second);
        assert_eq!(places.open(), 0);
    }
}
