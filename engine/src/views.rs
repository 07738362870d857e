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
//! - **Program order on a connection.** The server forwards a read to the
//!   owner while the same connection has a write in flight (in an earlier
//!   batch or earlier in the same one), so pipelined reads see the writes
//!   sent before them. An embedded `Handle::submit` batch always runs at the
//!   owners; only `Handle::get_sku` and `Handle::get_account` read the cache.

use crate::cache::{Cache, CacheStats};
use crate::types::{AccountId, AccountView, SkuId, SkuView};

/// The two view caches.
#[derive(Debug)]
pub struct Views {
    pub skus: Cache<SkuId, SkuView>,
    pub accounts: Cache<AccountId, AccountView>,
}

/// One view to publish: `fill` for an owner's answer to a miss (inserted),
/// otherwise a refresh after a change (only if the view is cached).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ViewUpdate {
    Sku { view: SkuView, fill: bool },
    Account { view: AccountView, fill: bool },
}

impl Views {
    /// Views of up to `entries` SKUs and `entries` accounts, LRU.
    pub fn new(entries: u64) -> Self {
        Views {
            skus: Cache::builder(entries).build(),
            accounts: Cache::builder(entries).build(),
        }
    }

    pub(crate) fn publish(&self, updates: &[ViewUpdate]) {
        for u in updates {
            match *u {
                ViewUpdate::Sku { view, fill: true } => {
                    let _ = self.skus.insert(view.id, view);
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
            }
        }
    }

    /// (SKU views, account views) counters.
    pub fn stats(&self) -> (CacheStats, CacheStats) {
        (self.skus.stats(), self.accounts.stats())
    }
}
