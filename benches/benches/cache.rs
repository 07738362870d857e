//! mercato's caches against moka, quick_cache and `lru` behind a `Mutex`, in
//! the same groups so one run compares them: `get` throughput at about 100%
//! and about 80% hit ratio on Zipf-distributed keys (a miss inserts, as a
//! read-through cache does), and `insert` throughput into a full cache, on 1
//! and 2 threads. Every cache holds `CAPACITY` `u64 -> u64` entries.
//! mercato's runs once exact (one segment) and split into 16 and into 256
//! segments (about 390 entries each), the configuration for many threads.
//!
//! `cargo bench -p mercato-benches --bench cache`

use std::num::NonZeroUsize;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mercato_benches::trace;
use mercato_engine::cache::{Cache, PolicyKind};

#[global_allocator]
static ALLOC: mercato_engine::alloc::Mimalloc = mercato_engine::alloc::Mimalloc;

const CAPACITY: u64 = 100_000;
/// Operations one thread runs per criterion iteration.
const OPS_PER_ITER: usize = 10_000;
/// Keys drawn per thread, cycled through; long enough not to fit in L2.
const TRACE_LEN: usize = 1 << 20;
const ZIPF_S: f64 = 1.0;
/// Key spaces giving about 100% (every key fits) and about 80% hits with
/// `ZIPF_S` at `CAPACITY` (`benches/cache_hit_ratio.rs` prints what each
/// cache reaches on this distribution).
const KEYS_ALL_FIT: u64 = CAPACITY / 2;
const KEYS_80_PERCENT: u64 = 500_000;

trait Subject: Sync {
    fn get(&self, key: u64) -> Option<u64>;
    fn insert(&self, key: u64, value: u64);
}

impl Subject for Cache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        Cache::insert(self, key, value).unwrap();
    }
}

impl Subject for moka::sync::Cache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        moka::sync::Cache::insert(self, key, value);
    }
}

impl Subject for quick_cache::sync::Cache<u64, u64> {
    fn get(&self, key: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &key)
    }
    fn insert(&self, key: u64, value: u64) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
}

impl Subject for Mutex<lru::LruCache<u64, u64>> {
    fn get(&self, key: u64) -> Option<u64> {
        self.lock().unwrap().get(&key).copied()
    }
    fn insert(&self, key: u64, value: u64) {
        self.lock().unwrap().put(key, value);
    }
}

/// Builds one empty cache under test.
type Maker = Box<dyn Fn() -> Box<dyn Subject>>;

/// mercato's cache with `policy`, split into `segments`.
fn mercato(policy: PolicyKind, segments: usize) -> Maker {
    Box::new(move || {
        Box::new(
            Cache::<u64, u64>::builder(CAPACITY)
                .policy(policy)
                .segments(segments)
                .build(),
        )
    })
}

fn subjects() -> Vec<(&'static str, Maker)> {
    vec![
        ("mercato-lru", mercato(PolicyKind::Lru, 1)),
        ("mercato-arc", mercato(PolicyKind::Arc, 1)),
        ("mercato-lru-seg16", mercato(PolicyKind::Lru, 16)),
        ("mercato-arc-seg16", mercato(PolicyKind::Arc, 16)),
        ("mercato-lru-seg256", mercato(PolicyKind::Lru, 256)),
        ("mercato-arc-seg256", mercato(PolicyKind::Arc, 256)),
        (
            "moka",
            Box::new(|| Box::new(moka::sync::Cache::<u64, u64>::new(CAPACITY))),
        ),
        (
            "quick_cache",
            Box::new(|| Box::new(quick_cache::sync::Cache::<u64, u64>::new(CAPACITY as usize))),
        ),
        (
            "lru-mutex",
            Box::new(|| {
                Box::new(Mutex::new(lru::LruCache::new(
                    NonZeroUsize::new(CAPACITY as usize).unwrap(),
                )))
            }),
        ),
    ]
}

/// Runs `iters` rounds of `OPS_PER_ITER` operations on each of `threads`
/// threads at once, each thread on its own slice of keys; returns the wall time.
fn run(threads: usize, iters: u64, keys: &[Vec<u64>], op: &(dyn Fn(u64) + Sync)) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (start, keys) = (&start, &keys[t]);
            s.spawn(move || {
                start.wait();
                let mut at = 0;
                for _ in 0..iters * OPS_PER_ITER as u64 {
                    op(keys[at]);
                    at = (at + 1) & (TRACE_LEN - 1);
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // The scope joins the threads before it returns.
        began
    })
    .elapsed()
}

fn prefill(subject: &dyn Subject, keys: &[Vec<u64>]) {
    for &k in keys.iter().flatten().take(4 * CAPACITY as usize) {
        if subject.get(k).is_none() {
            subject.insert(k, k);
        }
    }
}

fn get(c: &mut Criterion) {
    for (label, key_space) in [("hit100", KEYS_ALL_FIT), ("hit80", KEYS_80_PERCENT)] {
        let keys: Vec<Vec<u64>> = (0..2)
            .map(|t| trace::zipf(key_space, ZIPF_S, TRACE_LEN, 7 + t))
            .collect();
        let mut group = c.benchmark_group(format!("cache_get_{label}"));
        group
            .sample_size(20)
            .measurement_time(Duration::from_secs(3));
        for threads in [1, 2] {
            group.throughput(Throughput::Elements((threads * OPS_PER_ITER) as u64));
            for (name, make) in subjects() {
                let subject = make();
                prefill(subject.as_ref(), &keys);
                let read_through = |k: u64| {
                    if subject.get(k).is_none() {
                        subject.insert(k, k);
                    }
                };
                group.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                    b.iter_custom(|iters| run(threads, iters, &keys, &read_through))
                });
            }
        }
        group.finish();
    }
}

fn insert(c: &mut Criterion) {
    let keys: Vec<Vec<u64>> = (0..2)
        .map(|t| trace::zipf(KEYS_80_PERCENT, ZIPF_S, TRACE_LEN, 17 + t))
        .collect();
    let mut group = c.benchmark_group("cache_insert");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    for threads in [1, 2] {
        group.throughput(Throughput::Elements((threads * OPS_PER_ITER) as u64));
        for (name, make) in subjects() {
            let subject = make();
            prefill(subject.as_ref(), &keys);
            let insert = |k: u64| subject.insert(k, k);
            group.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| run(threads, iters, &keys, &insert))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, get, insert);
criterion_main!(benches);
