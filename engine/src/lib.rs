//! mercato's trading engine: stock, wallets and orders in memory, sharded one
//! shard per core, with every sale all-or-nothing.
//!
//! - [`shard::Shard`] is the pure state machine of one shard: commands and
//!   messages in, replies, messages and log [`record::Record`]s out. No I/O,
//!   no threads; the clock is an argument.
//! - [`runtime`] runs one thread per shard, joined by bounded single-producer
//!   rings, with two-phase commit for orders whose SKUs live on other shards.
//! - [`Handle`] is the embedded API: one blocking method per command, and
//!   [`Handle::submit`] for batches.
//! - [`audit`] checks the invariants of DESIGN.md across all shards.
//! - [`lock`] holds named locks and semaphores with leases and fencing
//!   tokens, and [`saga`] the durable progress of sagas; both live in the
//!   shards' logs like the shop's state ([`Handle::session`],
//!   [`Handle::fenced`], [`Handle::saga_begin`]).
//!
//! ```
//! use mercato_engine::{Config, Engine, LineRequest, Payment, Reject};
//!
//! let engine = Engine::open(Config::with_shards(2)).unwrap();
//! let shop = engine.handle();
//! shop.put_sku(7, 1_999, 1).unwrap().unwrap(); // price in cents, one per buyer
//! shop.restock(7, 10).unwrap().unwrap();
//! shop.deposit(42, 5_000).unwrap().unwrap();
//!
//! let order = shop.place_order(1, 42, vec![LineRequest::new(7, 1)], Payment::Immediate);
//! assert_eq!(order.unwrap().unwrap().total, 1_999);
//! // A second unit breaks the per-user limit; nothing changes.
//! let again = shop.place_order(2, 42, vec![LineRequest::new(7, 1)], Payment::Immediate);
//! assert!(matches!(again.unwrap(), Err(Reject::PerUserLimit { .. })));
//!
//! assert!(shop.audit().unwrap().ok());
//! engine.shutdown();
//! ```

#![deny(unsafe_code)]

pub mod access;
#[cfg(feature = "mimalloc")]
pub mod alloc;
pub mod audit;
pub mod cache;
pub mod clock;
pub mod command;
pub mod durable;
pub mod error;
pub mod feed;
pub mod hash;
pub mod journal;
pub mod keyspace;
pub mod limits;
pub mod lock;
pub mod message;
pub mod metrics;
pub mod order_lines;
mod prefetch;
pub mod record;
pub mod runtime;
pub mod saga;
pub mod server;
pub mod shard;
pub mod sim;
mod sync;
pub mod types;
pub mod views;
pub mod workload;

pub use audit::{AuditReport, Violation};
pub use clock::{Clock, ManualClock, SystemClock};
pub use command::{Command, Outcome, PlaceOrder, Reply};
pub use error::{EngineError, OpenError, Reject};
pub use mercato_wal::Durability;
pub use runtime::{
    Config, Engine, Feed, FeedError, FeedStart, Handle, JournalMode, Lease, ServeConfig, Session,
    Stopped,
};
pub use types::*;

/// The process's resident set in bytes, from `/proc/self/statm` (Linux);
/// 0 where that cannot be read.
pub(crate) fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    #[allow(unsafe_code)]
    // SAFETY: sysconf reads a configuration value; it takes no pointers
    // and touches no memory of ours.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}
