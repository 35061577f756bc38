//! Where the slots behind `random` come from (the signing key turns a slot into `random`,
//! the same way on every replica that holds it). What makes one-time signatures safe across a
//! fleet is that no two replicas ever use the same slot:
//!
//! - [`RandomSlots::Leased`]: blocks of [`LEASE_SIZE`] slots leased from the shared Redis
//!   (`INCRBY`), when a Redis quota store is configured and no `instance_id` is set;
//! - [`RandomSlots::Instance`]: the slot space split by the configured `instance_id`;
//! - [`RandomSlots::Process`]: neither; unique within this process only.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::quota::{QuotaStore, Quotas, StoreError};
use crate::signature::{InstanceId, InstanceSlots};

/// Slots per lease: one Redis round trip per this many issuances on a replica.
pub(super) const LEASE_SIZE: u32 = 65_536;

/// The slot source of one server.
#[derive(Debug)]
pub enum RandomSlots {
    /// A counter from a random start: no repeat within this process.
    Process(AtomicU32),
    Instance(InstanceSlots),
    Leased(LeasedSlots),
}

/// Why no slot could be handed out.
#[derive(Debug, thiserror::Error)]
#[error("cannot lease a block of `random` values from redis: {0}")]
pub struct LeaseError(#[source] pub StoreError);

impl RandomSlots {
    pub fn process() -> Self {
        RandomSlots::Process(AtomicU32::new(rand::random()))
    }

    pub fn instance(id: InstanceId) -> Self {
        RandomSlots::Instance(InstanceSlots::new(id))
    }

    /// Leases from the Redis store of `quotas`; `None` if its store is in-process.
    pub fn leased(quotas: Arc<Quotas>) -> Option<Self> {
        matches!(quotas.store(), QuotaStore::Redis(_)).then(|| {
            RandomSlots::Leased(LeasedSlots {
                quotas,
                block: std::sync::Mutex::new(0..0),
                leasing: tokio::sync::Mutex::new(()),
                fallback: AtomicU32::new(rand::random()),
            })
        })
    }

    /// What is guaranteed, for the start-up log line.
    pub fn guarantee(&self) -> String {
        match self {
            RandomSlots::Process(_) => "unique within this process only".to_owned(),
            RandomSlots::Instance(slots) => format!(
                "unique across replicas with distinct instance_id (this one: {})",
                slots.id().get()
            ),
            RandomSlots::Leased(_) => {
                "unique across replicas sharing redis (leased blocks)".to_owned()
            }
        }
    }

    /// `count` slots no one else uses. When leasing fails, a one-time signature is refused
    /// (a repeat would make VOD refuse an upload), while other signatures, which may repeat
    /// harmlessly, take slots from this process's own counter.
    pub async fn take(&self, count: u32, one_time: bool) -> Result<Vec<u32>, LeaseError> {
        let counter = match self {
            RandomSlots::Process(counter) => counter,
            RandomSlots::Instance(slots) => return Ok((0..count).map(|_| slots.next()).collect()),
            RandomSlots::Leased(leased) => match leased.take(count).await {
                Ok(slots) => return Ok(slots),
                Err(error) if one_time => return Err(error),
                Err(_) => &leased.fallback,
            },
        };
        let first = counter.fetch_add(count, Ordering::Relaxed);
        Ok((0..count).map(|i| first.wrapping_add(i)).collect())
    }
}

/// Slots leased from Redis, a block at a time.
pub struct LeasedSlots {
    quotas: Arc<Quotas>,
    /// What is left of the current block (as u64: a block may cross 2^32, and wraps then).
    block: std::sync::Mutex<Range<u64>>,
    /// One lease at a time: calls that find the block empty wait for the lease in flight.
    leasing: tokio::sync::Mutex<()>,
    /// For signatures that are not one-time while Redis cannot be reached.
    fallback: AtomicU32,
}

impl std::fmt::Debug for LeasedSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeasedSlots").finish_non_exhaustive()
    }
}

impl LeasedSlots {
    fn take_from_block(&self, slots: &mut Vec<u32>, count: u32) {
        let mut block = self
            .block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while slots.len() < count as usize {
            match block.next() {
                Some(slot) => slots.push(slot as u32),
                None => break,
            }
        }
    }

    async fn take(&self, count: u32) -> Result<Vec<u32>, LeaseError> {
        let mut slots = Vec::with_capacity(count as usize);
        loop {
            self.take_from_block(&mut slots, count);
            if slots.len() == count as usize {
                return Ok(slots);
            }
            let _leasing = self.leasing.lock().await;
            // Another call may have leased while this one waited.
            if !self
                .block
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_empty()
            {
                continue;
            }
            let first = self
                .quotas
                .store()
                .lease_slots(LEASE_SIZE)
                .await
                .map_err(LeaseError)?;
            let first = u64::from(first);
            *self
                .block
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                first..first + u64::from(LEASE_SIZE);
        }
    }
}
