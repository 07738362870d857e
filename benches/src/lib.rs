//! mercato's benchmarks.
//!
//! - `benches/state_machine.rs`: criterion benches of one shard's pure state
//!   machine (no threads, no I/O).
//! - `mercato-load`: a load generator that drives a whole engine with the
//!   flash-sale, carts and mixed workloads and prints throughput and latency
//!   percentiles, as text or one JSON object. `--target embedded` runs the
//!   engine in-process; the network issue adds `tcp://HOST:PORT`.
//! - `mercato-mem`: bytes of memory per SKU, per account and per 3-line order.
//! - `benches/cache.rs`: criterion, the caches' get and insert throughput
//!   against moka, quick_cache and `lru`; `benches/cache_hit_ratio.rs`: their
//!   hit ratios over the OLTP trace and synthetic ones ([`trace`]).
//! - `mercato-order-path`: the bare order path, to count its instructions
//!   under callgrind.
//!
//! `BENCHMARKS.md` at the repository root holds the figures and the commands.

pub mod trace;
