//! loom models of the concurrent primitives mercato writes itself, run
//! against the real code: the engine's `sync` facade swaps in loom's atomics,
//! locks and cells under `--cfg loom`.
//!
//! - `tests/ring.rs`: the single-producer, single-consumer mailbox between shards;
//! - `tests/doorbell.rs`: waking a sleeping shard without a lost wake-up;
//! - `tests/reply.rs`: the hand-off of answers from shard threads to a waiting
//!   caller, and the shutdown gate that guarantees every caller an answer.
//! - `tests/flusher.rs`: the hand-off of log buffers from a shard to its
//!   flusher thread and the publication of the durable LSN.
//! - `tests/cache.rs`: the cache's lock-free hit path against its drainer,
//!   and eviction racing get, insert and remove.
//!
//! Run them with:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p mercato-loom-tests --release --target-dir target/loom
//! ```
//!
//! Without `--cfg loom` the test files compile to nothing.
