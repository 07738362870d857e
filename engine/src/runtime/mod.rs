//! The thread-per-core runtime around the pure shards: one worker thread per
//! shard, bounded mailboxes between them, and the [`Handle`] callers use.

mod collector;
mod doorbell;
mod engine;
mod feed;
mod gate;
mod handle;
mod net;
pub mod ring;
mod route;
mod sagas;
mod session;
mod worker;

pub use collector::Collector;
pub use doorbell::Doorbell;
pub use engine::{Config, Engine, JournalMode, ServeConfig, Stopped};
pub use feed::{Feed, FeedError, FeedStart};
pub use gate::{Gate, Pass};
pub use handle::{CallResult, Handle, Ticket};
pub use session::{Lease, Session};
