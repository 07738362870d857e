//! A near-cache: SKU and account views kept in the client, filled on
//! reads and invalidated by the change feed, as Redis's client-side
//! caching with `CLIENT TRACKING` does.
//!
//! A thread follows the feed (from `Now`, SKU, stock and balance events
//! only) and drops each key an event names. A read that misses asks the
//! key's owner and fills the cache only if no invalidation of that key
//! arrived since the read began, so once an invalidation has arrived the
//! cache never serves the value it replaced. While the feed is down the
//! cache serves nothing; when it comes back it starts empty.
//!
//! What it cannot promise: a write's invalidation arrives some time after
//! the write commits (the feed's lag), and until then a read may see the
//! value before the write. `NearCache::lag` reports how long that was.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use mercato_protocol as wire;

use crate::client::{CallResult, Client};

/// How long the follower waits for a batch before it looks at `stop`.
const FOLLOW_POLL_MS: u64 = 50;
/// How long it waits before subscribing again after the feed went down.
const RESUBSCRIBE_PAUSE_MS: u64 = 100;

/// A key's cached view, if any, and the number of its last invalidation:
/// one entry, so that a fill and an invalidation of the key are ordered
/// by its lock.
#[derive(Clone, Copy)]
struct Slot<V> {
    view: Option<V>,
    mark: u64,
}

struct Inner {
    skus: DashMap<u64, Slot<wire::SkuView>>,
    accounts: DashMap<u64, Slot<wire::AccountView>>,
    /// Invalidations so far, numbering them.
    invalidations: AtomicU64,
    /// The feed is live: the cache may serve.
    live: AtomicBool,
    stop: AtomicBool,
    entries_max: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Inner {
    fn invalidate(&self, sku: Option<u64>, account: Option<u64>) {
        let n = self.invalidations.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(s) = sku {
            invalidate(&self.skus, s, n);
        }
        if let Some(a) = account {
            invalidate(&self.accounts, a, n);
        }
    }

    fn flush(&self) {
        let n = self.invalidations.fetch_add(1, Ordering::SeqCst) + 1;
        // Every fill under way began before this mark, and is dropped.
        for mut slot in self.skus.iter_mut() {
            *slot = Slot {
                view: None,
                mark: n,
            };
        }
        for mut slot in self.accounts.iter_mut() {
            *slot = Slot {
                view: None,
                mark: n,
            };
        }
    }
}

fn invalidate<V>(map: &DashMap<u64, Slot<V>>, key: u64, n: u64) {
    let mut slot = map.entry(key).or_insert(Slot {
        view: None,
        mark: 0,
    });
    slot.view = None;
    slot.mark = slot.mark.max(n);
}

/// The cached view of `key`, if the cache may serve it.
fn cached<V: Copy>(map: &DashMap<u64, Slot<V>>, key: u64) -> Option<V> {
    map.get(&key).and_then(|s| s.view)
}

/// Caches `view`, read after invalidation number `began`, unless an
/// invalidation of its key came since (under the key's lock).
fn fill<V>(map: &DashMap<u64, Slot<V>>, key: u64, view: V, began: u64, room: bool) {
    if !room && !map.contains_key(&key) {
        return;
    }
    let mut slot = map.entry(key).or_insert(Slot {
        view: None,
        mark: 0,
    });
    if slot.mark <= began {
        slot.view = Some(view);
    }
}

/// Counters of a near-cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NearStats {
    pub hits: u64,
    pub misses: u64,
    pub invalidations: u64,
    pub entries: usize,
}

/// A client-side cache of views (see the module's documentation).
pub struct NearCache {
    inner: Arc<Inner>,
    follower: Option<JoinHandle<()>>,
}

fn keys_of(event: &wire::FeedEvent) -> (Option<u64>, Option<u64>) {
    use wire::FeedEvent as E;
    match event {
        E::SkuPut { sku, .. } | E::Stock { sku, .. } | E::StockSet { sku, .. } => {
            (Some(*sku), None)
        }
        E::SkuCopy(v) => (Some(v.id), None),
        E::Balance { account, .. } => (None, Some(*account)),
        E::AccountCopy(v) => (None, Some(v.id)),
        _ => (None, None),
    }
}

impl NearCache {
    /// A near-cache for `client`'s reads, of at most `entries_max` views
    /// of each kind (past it, reads go on to the server unfilled).
    pub fn new(client: Arc<Client>, entries_max: usize) -> NearCache {
        let inner = Arc::new(Inner {
            skus: DashMap::new(),
            accounts: DashMap::new(),
            invalidations: AtomicU64::new(0),
            live: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            entries_max,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        let follower = {
            let inner = inner.clone();
            std::thread::spawn(move || follow(&client, &inner))
        };
        NearCache {
            inner,
            follower: Some(follower),
        }
    }

    /// Whether the cache follows the feed now (and so may serve).
    pub fn live(&self) -> bool {
        self.inner.live.load(Ordering::SeqCst)
    }

    pub fn get_sku(&self, client: &Client, sku: u64) -> CallResult<wire::SkuView> {
        let i = &self.inner;
        if i.live.load(Ordering::SeqCst)
            && let Some(v) = cached(&i.skus, sku)
        {
            i.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Ok(v));
        }
        i.misses.fetch_add(1, Ordering::Relaxed);
        let began = i.invalidations.load(Ordering::SeqCst);
        let got = client.get_sku(sku)?;
        if let Ok(v) = &got
            && i.live.load(Ordering::SeqCst)
        {
            fill(&i.skus, sku, *v, began, i.skus.len() < i.entries_max);
        }
        Ok(got)
    }

    pub fn get_account(&self, client: &Client, account: u64) -> CallResult<wire::AccountView> {
        let i = &self.inner;
        if i.live.load(Ordering::SeqCst)
            && let Some(v) = cached(&i.accounts, account)
        {
            i.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Ok(v));
        }
        i.misses.fetch_add(1, Ordering::Relaxed);
        let began = i.invalidations.load(Ordering::SeqCst);
        let got = client.get_account(account)?;
        if let Ok(v) = &got
            && i.live.load(Ordering::SeqCst)
        {
            let room = i.accounts.len() < i.entries_max;
            fill(&i.accounts, account, *v, began, room);
        }
        Ok(got)
    }

    pub fn stats(&self) -> NearStats {
        let i = &self.inner;
        NearStats {
            hits: i.hits.load(Ordering::Relaxed),
            misses: i.misses.load(Ordering::Relaxed),
            invalidations: i.invalidations.load(Ordering::Relaxed),
            entries: (i.skus.iter().filter(|s| s.view.is_some()).count())
                + (i.accounts.iter().filter(|s| s.view.is_some()).count()),
        }
    }

    /// How long after `since` the cache learned that `account` changed
    /// (its invalidation arrived), waiting up to `wait`; for measuring the
    /// feed's lag from a write's acknowledgement at `since`.
    pub fn lag(
        &self,
        account: u64,
        seen_before: u64,
        since: Instant,
        wait: Duration,
    ) -> Option<Duration> {
        let until = since + wait;
        loop {
            let mark = self.inner.accounts.get(&account).map_or(0, |s| s.mark);
            if mark > seen_before {
                return Some(since.elapsed());
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// The invalidation number now: pass it to `lag` before a write.
    pub fn mark(&self) -> u64 {
        self.inner.invalidations.load(Ordering::SeqCst)
    }
}

impl Drop for NearCache {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(f) = self.follower.take() {
            let _ = f.join();
        }
    }
}

/// The follower: subscribe, drop what each event names, and start over
/// (empty) whenever the feed goes down.
fn follow(client: &Client, inner: &Inner) {
    let filter = wire::FeedFilter {
        kinds: wire::FEED_KIND_SKU | wire::FEED_KIND_STOCK | wire::FEED_KIND_BALANCE,
        skus: Vec::new(),
        accounts: Vec::new(),
    };
    while !inner.stop.load(Ordering::SeqCst) {
        let stream = match client.subscribe(None, wire::FeedStart::Now, filter.clone()) {
            Ok(Ok(s)) => s,
            _ => {
                std::thread::sleep(Duration::from_millis(RESUBSCRIBE_PAUSE_MS));
                continue;
            }
        };
        inner.flush();
        inner.live.store(true, Ordering::SeqCst);
        loop {
            if inner.stop.load(Ordering::SeqCst) {
                return;
            }
            match stream.next(Duration::from_millis(FOLLOW_POLL_MS)) {
                Ok(Some(batch)) if batch.error.is_none() => {
                    for item in &batch.items {
                        let (sku, account) = keys_of(&item.event);
                        inner.invalidate(sku, account);
                    }
                }
                Ok(None) => {}
                // Ended or disconnected: what the cache holds can no longer
                // be kept right.
                _ => break,
            }
        }
        inner.live.store(false, Ordering::SeqCst);
        inner.flush();
    }
}
