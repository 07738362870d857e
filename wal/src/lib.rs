//! mercato's write-ahead log: segmented, checksummed, group-committed.
//!
//! Each shard has one log in its own directory: preallocated segment files
//! whose records carry a length, a type, an LSN, the previous record's
//! checksum (a hash chain) and a crc32c (see [`format`](mod@format)). The shard appends
//! through a [`Log`], which never blocks on the disk; a flusher thread writes,
//! syncs and publishes the durable LSN. [`read_log`] reads a log back,
//! validating as it goes, and tells a torn tail (cut off and reported) from
//! corruption (refused with file and offset). [`snapshot`] writes and loads
//! the files that let old segments go. The crate knows bytes and LSNs, never
//! orders: the engine decides what a record's body means.
//!
//! ```
//! use std::sync::Arc;
//! use mercato_wal::{Durability, Log, LogId, LogOptions, ReadOptions, read_log};
//!
//! let dir = std::env::temp_dir().join(format!("mercato-wal-doc-{}", std::process::id()));
//! let id = LogId { shard: 0, shards: 1 };
//! let opts = ReadOptions { from_lsn: 1, to_lsn: u64::MAX, repair: true };
//! let end = read_log(&dir, id, opts, |_| Ok(()), |_| {}).unwrap();
//! let mut log = Log::start(&dir, id, &end, LogOptions::default(), Arc::new(|| {})).unwrap();
//! let lsn = log.append(7, b"hello").unwrap();
//! log.submit();
//! assert_eq!(log.close().unwrap(), lsn); // closing syncs everything
//!
//! let mut bodies = Vec::new();
//! read_log(&dir, id, opts, |r| Ok(bodies.push(r.body.to_vec())), |_| {}).unwrap();
//! assert_eq!(bodies, vec![b"hello".to_vec()]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
// Two unsafe calls: mapping snapshot files (`snapshot::map_snapshot`) and
// pacing the write-back of large files (`pace::sync_file_range`).
#![deny(unsafe_code)]

mod error;
pub mod format;
#[doc(hidden)]
pub mod handoff;
mod pace;
pub mod power_loss;
mod reader;
mod segment;
pub mod snapshot;
pub mod stats;
pub mod storage;
mod sync;
mod tail;
mod writer;

pub use error::{Corruption, WalError};
pub use format::{LogId, Lsn, RecordRef};
pub use reader::{LogEnd, ReadOptions, TornTail, VisitError, read_log};
pub use segment::{list_segments, segment_name};
pub use tail::{Tail, TailError};
pub use writer::{
    Durability, GROUP_COMMIT_WAIT_US_DEFAULT, Log, LogMonitor, LogOptions, Notify,
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN,
};
