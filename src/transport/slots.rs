//! Places among the `UploadSigner` calls in flight: `max_concurrent_requests` shared by every
//! connection, and each connection's share of them (`max_concurrent_requests_per_connection`).
//!
//! A call that finds every shared place taken waits for one, first come first served (the
//! caller of [`take`] bounds the wait). Refusing it at once would cost as much work as serving
//! it, and a client in a closed loop sends the next call at once: under overload refusals
//! then crowd out the calls that are served. A connection over its share is refused at once,
//! since waiting would let one connection queue in front of everyone else; with the default
//! settings HTTP/2 (`max_concurrent_streams`) holds a client back before it gets there.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

/// The places shared by every connection; `None` sets no bound.
pub(super) type SharedPlaces = Option<Arc<Semaphore>>;

pub(super) fn shared_places(max_in_flight: Option<usize>) -> SharedPlaces {
    max_in_flight.map(|max| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))))
}

/// One connection's calls in flight, and how many it may have.
#[derive(Debug)]
pub(super) struct ConnectionShare {
    in_flight: AtomicUsize,
    max: Option<usize>,
}

impl ConnectionShare {
    pub(super) fn new(max: Option<usize>) -> Arc<ConnectionShare> {
        Arc::new(ConnectionShare {
            in_flight: AtomicUsize::new(0),
            max,
        })
    }
}

/// A connection's place for one call, given back when dropped.
struct Counted(Arc<ConnectionShare>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A place among the calls in flight (shared and the connection's own), given back when
/// dropped.
pub(super) struct Slot {
    _shared: Option<OwnedSemaphorePermit>,
    _connection: Counted,
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A call waiting for a shared place; it already counts against its connection's share.
pub(super) struct Waiting {
    acquire: Acquire,
    connection: Option<Counted>,
}

impl Waiting {
    /// The place, once one is free. Only the wait allocates, never a call that finds one.
    pub(super) fn poll_slot(&mut self, cx: &mut Context<'_>) -> Poll<Slot> {
        match self.acquire.as_mut().poll(cx) {
            Poll::Ready(Ok(permit)) => Poll::Ready(Slot {
                _shared: Some(permit),
                _connection: self
                    .connection
                    .take()
                    .expect("polled after the place was taken"),
            }),
            // The semaphore is never closed: it lives as long as the server.
            Poll::Ready(Err(_)) => Poll::Pending,
            Poll::Pending => Poll::Pending,
        }
    }
}

pub(super) enum Taken {
    Slot(Slot),
    /// Every shared place is taken: wait for one.
    Wait(Waiting),
    /// The connection has its whole share in flight.
    ConnectionFull,
}

/// Takes a place for a call arriving on `connection`. The common case is two atomic
/// operations, no lock and no allocation.
pub(super) fn take(shared: &SharedPlaces, connection: &Arc<ConnectionShare>) -> Taken {
    let before = connection.in_flight.fetch_add(1, Ordering::Relaxed);
    // Created before the check, so a refusal gives its count back through `Drop`.
    let counted = Counted(connection.clone());
    if connection.max.is_some_and(|max| before >= max) {
        return Taken::ConnectionFull;
    }
    let Some(semaphore) = shared else {
        return Taken::Slot(Slot {
            _shared: None,
            _connection: counted,
        });
    };
    // Fair: while calls wait, a newcomer never takes a freed place before them.
    match semaphore.clone().try_acquire_owned() {
        Ok(permit) => Taken::Slot(Slot {
            _shared: Some(permit),
            _connection: counted,
        }),
        Err(_) => Taken::Wait(Waiting {
            acquire: Box::pin(semaphore.clone().acquire_owned()),
            connection: Some(counted),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight(connection: &ConnectionShare) -> usize {
        connection.in_flight.load(Ordering::Relaxed)
    }

    #[test]
    fn places_are_given_back_on_drop_and_refusals_hold_none() {
        let shared = shared_places(Some(10));
        let connection = ConnectionShare::new(Some(2));
        let Taken::Slot(a) = take(&shared, &connection) else {
            panic!("first place")
        };
        let Taken::Slot(b) = take(&shared, &connection) else {
            panic!("second place")
        };
        assert!(matches!(take(&shared, &connection), Taken::ConnectionFull));
        assert_eq!(in_flight(&connection), 2);
        // Another connection still gets places.
        let other = ConnectionShare::new(Some(2));
        assert!(matches!(take(&shared, &other), Taken::Slot(_)));
        drop(a);
        let Taken::Slot(c) = take(&shared, &connection) else {
            panic!("a place was freed")
        };
        drop((b, c));
        assert_eq!(in_flight(&connection), 0);
        assert_eq!(shared.as_ref().unwrap().available_permits(), 10);
    }

    #[tokio::test]
    async fn a_call_that_finds_every_place_taken_waits_for_the_next_one() {
        let shared = shared_places(Some(1));
        let connection = ConnectionShare::new(None);
        let Taken::Slot(first) = take(&shared, &connection) else {
            panic!("first place")
        };
        let Taken::Wait(mut waiting) = take(&shared, &connection) else {
            panic!("the second call waits")
        };
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(waiting.poll_slot(&mut cx).is_pending());
        assert_eq!(in_flight(&connection), 2, "a waiting call counts");
        drop(first);
        let Poll::Ready(second) = waiting.poll_slot(&mut cx) else {
            panic!("the freed place goes to the waiting call")
        };
        drop(second);
        drop(waiting);
        assert_eq!(in_flight(&connection), 0);
        assert_eq!(shared.as_ref().unwrap().available_permits(), 1);
    }

    #[test]
    fn without_bounds_every_call_gets_a_place() {
        let connection = ConnectionShare::new(None);
        let slots: Vec<_> = (0..1000).map(|_| take(&None, &connection)).collect();
        assert!(slots.iter().all(|t| matches!(t, Taken::Slot(_))));
    }
}
