//! Read-through SKU and account views: any shard, and any embedding thread,
//! answers `get_sku` and `get_account` from a cache all shards share. A miss
//! goes to the owner shard, which answers and fills the cache; after each
//! turn the owner refreshes the entries its commands changed.
//!
//! What a reader gets:
//! - **Only released state.** The owner publishes a turn's views when it
//!   releases that turn's replies, so under `durability=always` a cached view
//!   never shows a change that is not yet synced, just as the owner's own
//!   answers never do.
//! - **Read-your-writes.** A turn's views are published before its replies
//!   are delivered, so a read that starts after a write was acknowledged sees
//!   that write or a later state, from any thread, connection or shard.
//! - **Monotonic per view.** Only the owner writes a view, in turn order, so
//!   one SKU's or account's cached view never goes back in time.
//! - **Settlements on other shards.** A two-phase order is acknowledged by
//!   its account's shard before the SKU shards turn its holds into sales
//!   (or release them, on cancel, expiry, refund or abort). So that a reader
//!   after the acknowledgment does not find the SKU's view from before, the
//!   acknowledging shard marks those SKUs unsettled and drops their cached
//!   views before it sends the Decide or Settle; until the SKU's shard has
//!   applied and published the settlement, reads of them go to it (it takes
//!   messages before requests, so they see the settlement), and no answer
//!   of its fills the cache.
//! - **Program order per caller.** A read goes to its owner while the same
//!   caller has a write in flight, earlier in the same batch or in an
//!   earlier one not yet answered, so pipelined reads see the writes sent
//!   before them. The caller is a connection for the server and a `Handle`
//!   value when embedded (its tickets; a clone is a new caller).
//! - **Only reads that looked fill.** A read that went to its owner because
//!   of a write before it does not fill the cache on the way back, so a
//!   workload whose reads follow writes does not pay for a cache it cannot
//!   use.

use std::sync::Mutex;

use crate::cache::{Cache, CacheStats};
use crate::hash::IdMap;
use crate::types::{AccountId, AccountView, SkuId, SkuView};

/// Stripes of the unsettled-SKU counts, so shards marking and settling
/// different SKUs rarely meet on a lock.
const UNSETTLED_STRIPES: usize = 16;

const _: () = assert!(UNSETTLED_STRIPES.is_power_of_two());

/// The two view caches.
#[derive(Debug)]
pub struct Views {
    pub skus: Cache<SkuId, SkuView>,
    pub accounts: Cache<AccountId, AccountView>,
    /// SKUs with settlements sent and not yet published by their shard, and
    /// how many. Taken around a SKU fill, so a fill and a mark never cross.
    unsettled: Box<[Mutex<IdMap<SkuId, u32>>]>,
}

/// One view to publish: `fill` for an owner's answer to a miss (inserted),
/// otherwise a refresh after a change (only if the view is cached).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ViewUpdate {
    Sku {
        view: SkuView,
        fill: bool,
    },
    Account {
        view: AccountView,
        fill: bool,
    },
    /// This shard published a settlement that another shard marked.
    Settled {
        sku: SkuId,
    },
}

impl Views {
    /// Views of up to `entries` SKUs and `entries` accounts, LRU.
    pub fn new(entries: u64) -> Self {
        Views {
            skus: Cache::builder(entries).build(),
            accounts: Cache::builder(entries).build(),
            unsettled: (0..UNSETTLED_STRIPES)
                .map(|_| Mutex::new(IdMap::default()))
                .collect(),
        }
    }

    fn stripe(&self, sku: SkuId) -> &Mutex<IdMap<SkuId, u32>> {
        let at = crate::hash::shard_of(sku, UNSETTLED_STRIPES as u16) as usize;
        &self.unsettled[at]
    }

    /// A shard is about to send settlements for these SKUs: their cached
    /// views are stale until the owners publish them.
    pub(crate) fn mark_unsettled(&self, skus: &[SkuId]) {
        for &sku in skus {
            let mut counts = self.stripe(sku).lock().expect("unsettled lock");
            *counts.entry(sku).or_insert(0) += 1;
            // Look before locking the cache: hot SKUs are mostly unsettled
            // and absent already.
            if self.skus.peek(&sku).is_some() {
                self.skus.remove(&sku);
            }
        }
    }

    pub(crate) fn publish(&self, updates: &[ViewUpdate]) {
        for u in updates {
            match *u {
                ViewUpdate::Sku { view, fill: true } => {
                    let counts = self.stripe(view.id).lock().expect("unsettled lock");
                    if !counts.contains_key(&view.id) {
                        let _ = self.skus.insert(view.id, view);
                    }
                }
                ViewUpdate::Sku { view, fill: false } => {
                    self.skus.refresh(&view.id, view);
                }
                ViewUpdate::Account { view, fill: true } => {
                    let _ = self.accounts.insert(view.id, view);
                }
                ViewUpdate::Account { view, fill: false } => {
                    self.accounts.refresh(&view.id, view);
                }
                ViewUpdate::Settled { sku } => {
                    let mut counts = self.stripe(sku).lock().expect("unsettled lock");
                    if let Some(n) = counts.get_mut(&sku) {
                        *n -= 1;
                        if *n == 0 {
                            counts.remove(&sku);
                        }
                    }
                }
            }
        }
    }

    /// (SKU views, account views) counters.
    pub fn stats(&self) -> (CacheStats, CacheStats) {
        (self.skus.stats(), self.accounts.stats())
    }
}
