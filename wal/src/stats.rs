//! Counters for an operator's metrics. Each is written by one thread only
//! (a shard, or a log's flusher) and read by whoever scrapes, so an update
//! is a plain load and store on a line no other writer touches: no locked
//! instruction and no cache line bouncing between cores on the hot path.
//! A scrape may see one counter a step ahead of another; each on its own
//! only grows.

use crate::sync::{AtomicU64, Ordering};

/// A count that only its one writer changes.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Only from the counter's one writer: two writers would lose counts.
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_add(n), Ordering::Relaxed);
    }

    /// Only from the counter's one writer.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of a latency histogram's buckets, in microseconds: from
/// what a sync on a fast NVMe disk or an answer on a quiet server takes to
/// what no operator should see. Past the last is the `+Inf` bucket.
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    1_000_000, 5_000_000,
];

/// Latencies in fixed buckets, with one writer (see the module's note).
#[derive(Debug)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last is past every bound.
    buckets: [Counter; LATENCY_BOUNDS_US.len() + 1],
    sum_us: Counter,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| Counter::default()),
            sum_us: Counter::default(),
        }
    }
}

/// A histogram as a scrape reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramCounts {
    /// Per bucket of [`LATENCY_BOUNDS_US`] and then `+Inf`, not cumulative.
    pub buckets: Vec<u64>,
    pub sum_us: u64,
}

impl HistogramCounts {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl Histogram {
    /// `n` observations of `us` microseconds each (a batch's answers all
    /// wait as long as the batch).
    #[inline]
    pub fn observe_n(&self, us: u64, n: u64) {
        let at = LATENCY_BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[at].add(n);
        self.sum_us.add(us.saturating_mul(n));
    }

    pub fn counts(&self) -> HistogramCounts {
        HistogramCounts {
            buckets: self.buckets.iter().map(Counter::get).collect(),
            sum_us: self.sum_us.get(),
        }
    }
}

/// What a log's flusher did, for metrics.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub syncs: Counter,
    /// Records the syncs made durable.
    pub records_synced: Counter,
    pub bytes_written: Counter,
    pub sync_latency: Histogram,
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_latency_falls_in_the_first_bucket_that_holds_it() {
        let h = Histogram::default();
        h.observe_n(10, 1);
        h.observe_n(11, 2);
        h.observe_n(9_000_000, 1);
        let c = h.counts();
        assert_eq!(c.buckets[0], 1);
        assert_eq!(c.buckets[1], 2);
        assert_eq!(*c.buckets.last().unwrap(), 1);
        assert_eq!(c.count(), 4);
        assert_eq!(c.sum_us, 10 + 22 + 9_000_000);
    }
}
