//! The cache keyspace: byte keys and values with an optional TTL, under a
//! memory budget, shared by every shard. Any shard (and any embedding
//! thread) serves it directly from the shared [`Cache`]; nothing of it is
//! logged, so it starts empty after a restart, as a cache should.
//!
//! An entry weighs its key and value bytes plus
//! [`CACHE_ENTRY_OVERHEAD_BYTES`], an estimate of the table slot, the policy
//! node and the second copy of the key, so the budget bounds memory rather
//! than payload.

use bytes::Bytes;

use crate::cache::{Cache, CacheStats, PolicyKind};
use crate::clock::Clock;
use crate::error::Reject;
use crate::limits::{CACHE_ENTRY_OVERHEAD_BYTES, CACHE_KEY_BYTES_MAX, CACHE_VALUE_BYTES_MAX};

/// The shared keyspace.
#[derive(Debug)]
pub struct Keyspace {
    cache: Cache<Box<[u8]>, Bytes>,
}

// The weigher's signature is fixed by `Cache<Box<[u8]>, _>`.
#[allow(clippy::borrowed_box)]
fn weigh(key: &Box<[u8]>, value: &Bytes) -> u64 {
    (key.len() + value.len()) as u64 + CACHE_ENTRY_OVERHEAD_BYTES
}

impl Keyspace {
    pub fn new(budget_bytes: u64, policy: PolicyKind, clock: std::sync::Arc<dyn Clock>) -> Self {
        Keyspace {
            cache: Cache::builder(budget_bytes)
                .policy(policy)
                .weigher(weigh)
                .clock(clock)
                .build(),
        }
    }

    /// Stores `value` under `key` for `ttl_ms` (0: until evicted).
    pub fn set(&self, key: &[u8], value: Bytes, ttl_ms: u64) -> Result<(), Reject> {
        check_key(key)?;
        if value.len() > CACHE_VALUE_BYTES_MAX {
            return Err(Reject::ValueTooLarge {
                len: value.len() as u64,
                max: CACHE_VALUE_BYTES_MAX as u64,
            });
        }
        // The budget holds at least two of the largest entries (checked when
        // the engine opens), so an entry within the limits always fits.
        self.cache
            .insert_with_ttl(key.into(), value, ttl_ms)
            .map_err(|e| Reject::ValueTooLarge {
                len: e.weight,
                max: e.capacity,
            })
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, Reject> {
        check_key(key)?;
        Ok(self.cache.get(key))
    }

    /// Removes `key`; true if it held a live value.
    pub fn del(&self, key: &[u8]) -> Result<bool, Reject> {
        check_key(key)?;
        Ok(self.cache.remove(key).is_some())
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }

    pub fn policy(&self) -> PolicyKind {
        self.cache.policy()
    }
}

fn check_key(key: &[u8]) -> Result<(), Reject> {
    if key.is_empty() || key.len() > CACHE_KEY_BYTES_MAX {
        return Err(Reject::InvalidKey {
            len: key.len() as u64,
            max: CACHE_KEY_BYTES_MAX as u64,
        });
    }
    Ok(())
}

/// The smallest budget `Config` accepts: two of the largest entries.
pub const fn budget_bytes_min() -> u64 {
    2 * ((CACHE_KEY_BYTES_MAX + CACHE_VALUE_BYTES_MAX) as u64 + CACHE_ENTRY_OVERHEAD_BYTES)
}
