//! Durability: the engine's side of the write-ahead log. Records become log
//! bodies in [`codec`]; `journal` feeds them to a shard's log; [`recovery`]
//! rebuilds the shards from a data directory; [`marker`] fixes the format
//! and shard count of a directory.
//!
//! A data directory holds `MERCATO` (the marker) and one `shard-<i>/` per
//! shard with that shard's log segments.

pub(crate) mod checkpoint;
pub mod codec;
mod image;
pub(crate) mod journal;
pub mod lock;
pub mod marker;
pub mod recovery;
pub mod retention;
pub mod snapshot;

pub use recovery::{RecoveryReport, ShardRecovery};
pub use snapshot::{Compacted, Compactor, compact};
