//! The log's one error type. A [`WalError`] is always a system failure: the
//! log never judges the records it carries.

use std::path::PathBuf;

/// What is wrong with bytes that should be a segment or a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    #[error("the segment does not start with mercato's magic number")]
    SegmentMagic,
    #[error("the segment header is short or fails its checksum")]
    SegmentHeader,
    #[error("a record fails its checksum or framing")]
    Record,
    #[error("record has LSN {found}, expected {expected}")]
    Lsn { expected: u64, found: u64 },
    #[error(
        "record does not chain to the one before it (prev crc {found:#010x}, expected {expected:#010x})"
    )]
    Chain { expected: u32, found: u32 },
    #[error("segment starts at LSN {found}, expected {expected}")]
    SegmentGap { expected: u64, found: u64 },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A bad record followed by valid ones, or a bad header: not a torn
    /// write, so nothing is repaired and the log refuses to open.
    #[error("corrupt log {path} at byte {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: Corruption,
    },
    /// The directory was written by another layout of shards.
    #[error(
        "{path} belongs to shard {found_shard} of {found_shards}, but this engine opened it as shard {shard} of {shards}"
    )]
    WrongLog {
        path: PathBuf,
        shard: u16,
        shards: u16,
        found_shard: u16,
        found_shards: u16,
    },
    #[error("{path} has format version {found}; this build reads version {supported}")]
    WrongVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    /// A write or sync failed earlier; the log takes nothing more, because
    /// what reached the disk is no longer known.
    #[error("the log is poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// A record passed its checksum but its reader could not use it.
    #[error("record {lsn} in {path} at byte {offset} could not be read: {source}")]
    Unreadable {
        path: PathBuf,
        offset: u64,
        lsn: u64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid log option: {what}")]
    InvalidOption { what: &'static str },
    #[error("record body of {len} bytes exceeds the {max}-byte limit")]
    RecordTooLarge { len: usize, max: usize },
    #[error("snapshot {path} is invalid: {what}")]
    BadSnapshot { path: PathBuf, what: String },
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
