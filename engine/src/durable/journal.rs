//! The write-ahead log as the engine's [`Journal`]: records are encoded on the
//! shard thread and framed into the log's buffer; the flusher does the rest.

use mercato_wal::{Durability, Log};

use super::codec;
use crate::journal::{Journal, Progress};
use crate::record::Record;

pub(crate) struct WalJournal {
    log: Log,
    body: Vec<u8>,
    /// Set when an append itself failed (a record too large, which
    /// validation makes impossible); the log is treated as poisoned.
    broken: bool,
}

impl WalJournal {
    pub(crate) fn new(log: Log) -> Self {
        WalJournal {
            log,
            body: Vec::with_capacity(256),
            broken: false,
        }
    }

    /// Sync everything and stop the flusher.
    pub(crate) fn close(self) -> Result<(), mercato_wal::WalError> {
        self.log.close().map(|_| ())
    }
}

impl Journal for WalJournal {
    fn append(&mut self, records: &mut Vec<Record>) {
        for r in records.drain(..) {
            if self.broken {
                continue;
            }
            self.body.clear();
            let kind = codec::encode(&r, &mut self.body);
            if self.log.append(kind, &self.body).is_err() {
                self.broken = true;
            }
        }
    }

    fn append_encoded(&mut self, bytes: &mut Vec<u8>) {
        if !self.broken {
            for (kind, body) in codec::framed(bytes) {
                if self.log.append(kind, body).is_err() {
                    self.broken = true;
                    break;
                }
            }
        }
        bytes.clear();
    }

    fn submit(&mut self) {
        self.log.submit();
    }

    fn progress(&self) -> Progress {
        let durable = self.log.durable_lsn();
        Progress {
            last: self.log.last_lsn(),
            replies_upto: match self.log.durability() {
                Durability::Always => durable,
                // Replies go out at once; the policy allows losing the last
                // moments of acknowledged work to a crash.
                Durability::Interval { .. } | Durability::Never => u64::MAX,
            },
            // Messages to other shards always wait for their records: a
            // peer must never act on a change this shard could lose while
            // the peer keeps its own.
            sends_upto: durable,
        }
    }

    fn synced(&self) -> u64 {
        self.log.synced_lsn()
    }

    fn failed(&self) -> bool {
        self.broken || self.log.failure().is_some()
    }

    fn backlog_bytes(&self) -> usize {
        self.log.backlog_bytes()
    }

    fn producer_idle(&self, idle: bool) {
        self.log.producer_idle(idle);
    }
}
