//! Where records go once applied: nowhere, into memory for tests, or into the
//! write-ahead log (`durable::journal`).

use crate::record::Record;

/// How far a journal's records are safe, in its own sequence numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Number of the last record appended.
    pub last: u64,
    /// Replies that depend on records up to here may be released.
    pub replies_upto: u64,
    /// Messages to other shards that depend on records up to here may be sent.
    pub sends_upto: u64,
}

impl Progress {
    /// Cached views that depend on records up to here may be published: as
    /// soon as either a reply or a message about them may go out, since
    /// whoever hears of a change must find it cached.
    pub fn views_upto(&self) -> u64 {
        self.replies_upto.max(self.sends_upto)
    }

    /// A journal whose records are as safe as they will ever be at once.
    pub const IMMEDIATE: Progress = Progress {
        last: 0,
        replies_upto: u64::MAX,
        sends_upto: u64::MAX,
    };
}

/// Takes each shard's records, in order, as the shard loop produces them.
pub trait Journal: Send {
    fn append(&mut self, records: &mut Vec<Record>);
    /// Records a shard encoded as it committed them
    /// (`Shard::encode_records`, `durable::codec::encode_framed`); `bytes`
    /// comes back empty. A journal that keeps values decodes them.
    fn append_encoded(&mut self, bytes: &mut Vec<u8>) {
        let mut records = crate::durable::codec::decode_framed(bytes).collect();
        bytes.clear();
        self.append(&mut records);
    }
    /// End of a loop turn: start making what was appended durable.
    fn submit(&mut self) {}
    fn progress(&self) -> Progress {
        Progress::IMMEDIATE
    }
    /// Records up to here are synced: they survive a power cut, whatever
    /// the durability policy promises callers. A snapshot may cover only
    /// these, or a cut could leave it ahead of the log.
    fn synced(&self) -> u64 {
        u64::MAX
    }
    /// The journal can no longer make anything durable.
    fn failed(&self) -> bool {
        false
    }
    /// Bytes appended but not yet taken towards the disk.
    fn backlog_bytes(&self) -> usize {
        0
    }
    /// The shard loop found nothing to do (`true`) or has work again
    /// (`false`): a log holding a sync back for more records starts it when
    /// the loop goes idle.
    fn producer_idle(&self, _idle: bool) {}
}

/// Drops records: a purely in-memory engine. (Such an engine also tells its
/// shards not to hand records out at all; see `Shard::discard_records`.)
#[derive(Debug, Default)]
pub struct NullJournal;

impl Journal for NullJournal {
    fn append(&mut self, records: &mut Vec<Record>) {
        records.clear();
    }
}

/// Keeps every record, so tests can replay a shard and compare.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    pub records: Vec<Record>,
}

impl Journal for MemoryJournal {
    fn append(&mut self, records: &mut Vec<Record>) {
        self.records.append(records);
    }
}
