//! Hit ratios, single-threaded, of mercato's LRU and ARC and of moka,
//! quick_cache and `lru`, over the OLTP trace of the ARC paper (Megiddo and
//! Modha, FAST 2003), a Zipf trace and a scan-heavy one. Each request is a
//! `get`; a miss inserts. Prints a Markdown table.
//!
//! `cargo bench -p mercato-benches --bench cache_hit_ratio [-- SEGMENTS]`
//! (the segmented columns' count, 16 unless given).

use std::num::NonZeroUsize;

use mercato_benches::trace;
use mercato_engine::cache::{Cache, PolicyKind};

/// How often moka is asked to apply its buffered work: it admits and evicts
/// in batches, and a hit-ratio run should see its policy, not its lag.
const MOKA_PENDING_EVERY: usize = 64;

/// Segments of the segmented columns unless the command line names a
/// count, as in `benches/cache.rs`.
const SEGMENTS_DEFAULT: usize = 16;

fn mercato(keys: &[u64], size: u64, policy: PolicyKind, segments: usize) -> f64 {
    let cache = Cache::<u64, ()>::builder(size)
        .policy(policy)
        .segments(segments)
        .build();
    let mut hits = 0;
    for &k in keys {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, ()).unwrap();
        }
    }
    ratio(hits, keys.len())
}

fn moka(keys: &[u64], size: u64) -> f64 {
    let cache = moka::sync::Cache::<u64, ()>::new(size);
    let mut hits = 0;
    for (i, &k) in keys.iter().enumerate() {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, ());
        }
        if i % MOKA_PENDING_EVERY == 0 {
            cache.run_pending_tasks();
        }
    }
    ratio(hits, keys.len())
}

fn quick(keys: &[u64], size: u64) -> f64 {
    let mut cache = quick_cache::unsync::Cache::<u64, ()>::new(size as usize);
    let mut hits = 0;
    for &k in keys {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, ());
        }
    }
    ratio(hits, keys.len())
}

fn lru(keys: &[u64], size: u64) -> f64 {
    let mut cache = lru::LruCache::<u64, ()>::new(NonZeroUsize::new(size as usize).unwrap());
    let mut hits = 0;
    for &k in keys {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.put(k, ());
        }
    }
    ratio(hits, keys.len())
}

fn ratio(hits: usize, requests: usize) -> f64 {
    100.0 * hits as f64 / requests as f64
}

fn main() {
    // `cargo bench` passes `--bench`; a number is the segment count.
    let segments = (std::env::args().skip(1))
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(SEGMENTS_DEFAULT);
    let oltp = trace::oltp().expect("read ../shared/traces/OLTP.lis.zst");
    let zipf = trace::zipf(1_000_000, 0.9, 2_000_000, 3);
    // The key distribution of the ~80% group of `benches/cache.rs`.
    let zipf_bench = trace::zipf(500_000, 1.0, 2_000_000, 7);
    let scan = trace::scan_heavy(1_000_000, 2_000_000, 20_000, 50_000, 5);
    let rows: [(&str, &[u64], &[u64]); 4] = [
        (
            "OLTP (ARC paper)",
            &oltp,
            &[1_000, 2_000, 5_000, 10_000, 15_000],
        ),
        ("Zipf 0.9, 1M keys", &zipf, &[10_000, 100_000]),
        ("Zipf 1.0, 500k keys", &zipf_bench, &[100_000]),
        (
            "Zipf 0.9 + 50k-key scan every 20k",
            &scan,
            &[10_000, 100_000],
        ),
    ];
    println!(
        "| trace | entries | mercato LRU | mercato ARC | LRU, {segments} segments | ARC, {segments} segments | moka | quick_cache | lru |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, keys, sizes) in rows {
        for &size in sizes {
            println!(
                "| {name} | {size} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                mercato(keys, size, PolicyKind::Lru, 1),
                mercato(keys, size, PolicyKind::Arc, 1),
                mercato(keys, size, PolicyKind::Lru, segments),
                mercato(keys, size, PolicyKind::Arc, segments),
                moka(keys, size),
                quick(keys, size),
                lru(keys, size),
            );
        }
    }
}
