//! The Redis quota store: one counter per caller, user and window, shared by every replica.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Decision, StoreError, WINDOW_SECONDS, window_of};

/// Check and count in one step, atomically on the server: two replicas asking at the same
/// moment can never both get the last unit of a budget. A request that does not fit is not
/// counted, so a refused batch does not use up what smaller requests could still have.
/// The key expires a window after its own ends (slack for replicas' clocks differing).
const TAKE_SCRIPT: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost = tonumber(ARGV[1])
if used + cost > tonumber(ARGV[2]) then
  return {0, used}
end
used = redis.call('INCRBY', KEYS[1], cost)
if used == cost then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, used}
";

/// Prefix of every key this service writes, so it can share a Redis with other users.
pub(super) const KEY_PREFIX: &str = "vod-signer:quota:";

/// The counter replicas lease `random` slot blocks from (see [`RedisStore::lease_slots`]).
pub(super) const RANDOM_SLOTS_KEY: &str = "vod-signer:random-slots";

/// Leases one block atomically. A missing counter (a new Redis, or one restarted without
/// persistence) starts at a random point rather than 0: replicas may still be drawing from
/// blocks leased before the restart, and a restart at 0 would hand those same blocks out again.
const LEASE_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[2])
end
return redis.call('INCRBY', KEYS[1], ARGV[1])
";

/// After a failure, calls skip Redis for this long and apply `on_store_error` at once: when
/// Redis is black-holed, each call would otherwise wait the full timeout.
const FAILURE_COOLDOWN: Duration = Duration::from_millis(500);

pub struct RedisStore {
    connection: ConnectionManager,
    script: redis::Script,
    lease_script: redis::Script,
    timeout: Duration,
    /// `host:port` only: the URL itself may carry a password.
    endpoint: String,
    started: Instant,
    /// Milliseconds after `started` until which Redis is not asked; 0 when healthy.
    cooling_until_ms: AtomicU64,
}

impl RedisStore {
    /// Prepares a store for `url` (`redis://[:password@]host:port[/db]`). No connection is
    /// made yet: the service starts even while Redis is down, and `on_store_error` decides
    /// until it is back. Must be called within a Tokio runtime.
    ///
    /// The error never contains the URL.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(StoreError::Redis)?;
        let endpoint = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // One quick reconnection attempt per call at most; the caller's timeout and the
            // cooldown bound the rest.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(StoreError::Redis)?;
        Ok(RedisStore {
            connection,
            script: redis::Script::new(TAKE_SCRIPT),
            lease_script: redis::Script::new(LEASE_SCRIPT),
            timeout,
            endpoint,
            started: Instant::now(),
            cooling_until_ms: AtomicU64::new(0),
        })
    }

    /// Where the store connects, without credentials.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(super) async fn take(
        &self,
        caller: &str,
        user: &str,
        cost: u32,
        limit: u32,
        now: i64,
    ) -> Result<Decision, StoreError> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        let cooling_until = self.cooling_until_ms.load(Ordering::Relaxed);
        if now_ms < cooling_until {
            return Err(StoreError::CoolingDown(FAILURE_COOLDOWN));
        }
        let (window, retry_after) = window_of(now);
        let key = key(caller, user, window);
        let ttl_ms = (2 * WINDOW_SECONDS * 1000) as u64;
        let mut connection = self.connection.clone();
        let mut invocation = self.script.key(key);
        invocation.arg(cost).arg(limit).arg(ttl_ms);
        let result = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<(i64, i64)>(&mut connection),
        )
        .await;
        let reply = match result {
            Ok(Ok(reply)) => {
                self.cooling_until_ms.store(0, Ordering::Relaxed);
                reply
            }
            Ok(Err(e)) => return Err(self.failed(StoreError::Redis(e))),
            Err(_) => return Err(self.failed(StoreError::Timeout(self.timeout))),
        };
        match reply {
            (1, used) if used >= 0 => Ok(Decision::Allowed { used: used as u64 }),
            (0, _) => Ok(Decision::Exhausted { retry_after }),
            _ => Err(StoreError::UnexpectedReply),
        }
    }

    /// Leases `size` slots of the 32-bit `random` space that no other replica using this Redis
    /// will get: `INCRBY` is atomic on the server, so every lease is a range of its own. Returns
    /// the first slot; the block wraps around 2^32 like the counter it is cut from. The key
    /// never expires: Redis restarting empty only starts the ranges again, and a repeat would
    /// need two equal slots within the same second.
    pub async fn lease_slots(&self, size: u32) -> Result<u32, StoreError> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        if now_ms < self.cooling_until_ms.load(Ordering::Relaxed) {
            return Err(StoreError::CoolingDown(FAILURE_COOLDOWN));
        }
        let mut connection = self.connection.clone();
        let mut invocation = self.lease_script.key(RANDOM_SLOTS_KEY);
        invocation.arg(size).arg(rand::random::<u32>());
        let result = tokio::time::timeout(
            self.timeout,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
        match result {
            Ok(Ok(end)) => {
                self.cooling_until_ms.store(0, Ordering::Relaxed);
                // Truncating to 32 bits is the wrap-around: only the low bits name a slot.
                Ok((end as u64).wrapping_sub(u64::from(size)) as u32)
            }
            Ok(Err(e)) => Err(self.failed(StoreError::Redis(e))),
            Err(_) => Err(self.failed(StoreError::Timeout(self.timeout))),
        }
    }

    fn failed(&self, error: StoreError) -> StoreError {
        let until = self.started.elapsed() + FAILURE_COOLDOWN;
        self.cooling_until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
        error
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `vod-signer:quota:{caller}:{user}:{window}`, with `%` and `:` escaped in the caller and
/// user so that caller `a:b` with user `c` and caller `a` with user `b:c` never share a key.
pub(crate) fn key(caller: &str, user: &str, window: i64) -> String {
    let mut key = String::with_capacity(KEY_PREFIX.len() + caller.len() + user.len() + 24);
    key.push_str(KEY_PREFIX);
    push_escaped(&mut key, caller);
    key.push(':');
    push_escaped(&mut key, user);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(window));
    key
}

fn push_escaped(out: &mut String, part: &str) {
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            c => out.push(c),
        }
    }
}
