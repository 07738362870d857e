//! Where records go once applied. The write-ahead log will implement
//! [`Journal`]; until then the engine runs with one of the in-memory journals.

use crate::record::Record;

/// Takes each shard's records, in order, once per loop turn.
pub trait Journal: Send {
    fn append(&mut self, records: &mut Vec<Record>);
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
