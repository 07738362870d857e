//! Following a log while it is written: read the records from an LSN on,
//! up to a bound the caller knows is durable, and later on from where the
//! last read stopped, without reading the log from its start again.
//!
//! The change feed reads shards' logs this way. A tail holds its segment
//! open, so a segment deleted meanwhile stays readable; one recycled and
//! written again under it shows records out of order, which is reported
//! as `TailError::Lost`, as is an LSN older than every segment kept.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{
    LogId, Lsn, NotARecord, RECORD_BODY_BYTES_MAX, RECORD_HEADER_BYTES, RecordRef,
    SEGMENT_HEADER_BYTES, SegmentHeader, decode_record, frame_bytes,
};
use crate::segment::list_segments;

/// Bytes a tail reads from its segment at a time, at least: records are
/// small, so one read takes many.
const TAIL_READ_BYTES: usize = 256 << 10;

/// Why a tail cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// The records it needs are no longer kept: the oldest segment starts
    /// after them, or the segment it read was recycled under it.
    #[error("records from LSN {lsn} are no longer kept (the oldest kept is {oldest})")]
    Lost { lsn: Lsn, oldest: Lsn },
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// A reader that follows one log.
pub struct Tail {
    dir: PathBuf,
    log: LogId,
    file: File,
    path: PathBuf,
    /// Where the next record starts in the segment.
    offset: u64,
    next_lsn: Lsn,
    buf: Vec<u8>,
    /// `buf` holds the segment's bytes from `buf_at` on.
    buf_at: u64,
}

fn oldest(dir: &Path) -> Result<Lsn, WalError> {
    Ok(list_segments(dir)?.first().map_or(1, |&(lsn, _)| lsn))
}

impl Tail {
    /// A tail whose first record is `from` (or the first record after it
    /// that exists yet).
    pub fn open(dir: &Path, log: LogId, from: Lsn) -> Result<Tail, TailError> {
        let segments = list_segments(dir)?;
        let Some((first, path)) = segments
            .iter()
            .rev()
            .find(|(first, _)| *first <= from.max(1))
        else {
            let oldest = segments.first().map_or(1, |&(lsn, _)| lsn);
            return Err(TailError::Lost { lsn: from, oldest });
        };
        let mut t = Tail::at_segment(dir, log, path, *first)?;
        // Skip to `from`, through the segment's records before it.
        t.read(from.saturating_sub(1), |_| Ok(()))?;
        Ok(t)
    }

    fn at_segment(dir: &Path, log: LogId, path: &Path, first: Lsn) -> Result<Tail, TailError> {
        let file = File::open(path).map_err(|e| WalError::io("open", path, e))?;
        let mut header = vec![0u8; SEGMENT_HEADER_BYTES];
        file.read_exact_at(&mut header, 0)
            .map_err(|e| WalError::io("read", path, e))?;
        let h = SegmentHeader::decode(&header).map_err(|what| WalError::Corrupt {
            path: path.to_path_buf(),
            offset: 0,
            what,
        })?;
        if h.first_lsn != first || h.log != log {
            return Err(TailError::Lost {
                lsn: first,
                oldest: oldest(dir)?,
            });
        }
        Ok(Tail {
            dir: dir.to_path_buf(),
            log,
            file,
            path: path.to_path_buf(),
            offset: SEGMENT_HEADER_BYTES as u64,
            next_lsn: first,
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    /// The LSN of the next record this tail reads.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// Bytes of the segment from `self.offset` on, at least `want` of them
    /// if the file has them.
    fn bytes(&mut self, want: usize) -> Result<&[u8], WalError> {
        let have = (self.buf_at + self.buf.len() as u64).saturating_sub(self.offset) as usize;
        if self.offset < self.buf_at || have < want || self.buf.is_empty() {
            let len = want.max(TAIL_READ_BYTES);
            self.buf.resize(len, 0);
            let mut got = 0;
            while got < len {
                let n = (self.file)
                    .read_at(&mut self.buf[got..], self.offset + got as u64)
                    .map_err(|e| WalError::io("read", &self.path, e))?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            self.buf.truncate(got);
            self.buf_at = self.offset;
        }
        let from = (self.offset - self.buf_at) as usize;
        Ok(&self.buf[from..])
    }

    /// Visits every record after the last one read, up to LSN `upto`
    /// (which the caller knows is written whole), moving to the next
    /// segment at the end of one. Returns how many it visited.
    pub fn read(
        &mut self,
        upto: Lsn,
        mut visit: impl FnMut(RecordRef<'_>) -> Result<(), WalError>,
    ) -> Result<usize, TailError> {
        let mut visited = 0;
        while self.next_lsn <= upto {
            let bytes = self.bytes(RECORD_HEADER_BYTES)?;
            let len = if bytes.len() >= RECORD_HEADER_BYTES {
                u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize
            } else {
                0
            };
            let next = self.next_lsn;
            // Past a segment's last record may lie anything (a recycled
            // segment's old bytes, out of step with the new records): a
            // length no record has is not read, only judged.
            let want = if len <= RECORD_BODY_BYTES_MAX {
                frame_bytes(len)
            } else {
                RECORD_HEADER_BYTES
            };
            let bytes = self.bytes(want)?;
            enum Then {
                Read(u64),
                NextSegment,
            }
            let then = match decode_record(bytes) {
                Ok(r) if r.lsn == next => {
                    let step = r.frame_bytes() as u64;
                    visit(r)?;
                    Then::Read(step)
                }
                // Anything else ends this segment's records: the caller
                // asks only for what is written, so `next_lsn` starts the
                // next segment. Past the end lie zeros, or a recycled
                // segment's old bytes; if this segment was itself recycled
                // and written again under the tail, no segment starts at
                // `next_lsn` and it is lost.
                Ok(_) | Err(NotARecord::Zeros | NotARecord::Damaged) => Then::NextSegment,
            };
            // What the buffer held may predate the writer's latest bytes:
            // read the file again before taking an end for one.
            let stale = self.buf_at != self.offset;
            if stale && !matches!(then, Then::Read(_)) {
                self.buf.clear();
                self.buf_at = self.offset;
                continue;
            }
            match then {
                Then::Read(step) => {
                    self.offset += step;
                    self.next_lsn += 1;
                    visited += 1;
                }
                Then::NextSegment => self.next_segment()?,
            }
        }
        Ok(visited)
    }

    fn next_segment(&mut self) -> Result<(), TailError> {
        let segments = list_segments(&self.dir)?;
        let Some((first, path)) = segments.iter().find(|(first, _)| *first == self.next_lsn) else {
            // Not written yet, though the caller said it was: or gone.
            return Err(TailError::Lost {
                lsn: self.next_lsn,
                oldest: segments.first().map_or(1, |&(lsn, _)| lsn),
            });
        };
        let (first, path) = (*first, path.clone());
        *self = Tail::at_segment(&self.dir.clone(), self.log, &path, first)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, Log, LogOptions, ReadOptions, SEGMENT_BYTES_MIN, read_log};
    use std::sync::Arc;

    /// A new log of one shard, in the smallest segments, synced always.
    fn small_log(name: &str) -> (PathBuf, LogId, Log) {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let id = LogId {
            shard: 0,
            shards: 1,
        };
        let opts = ReadOptions {
            from_lsn: 1,
            to_lsn: u64::MAX,
            repair: true,
        };
        let end = read_log(&dir, id, opts, |_| Ok(()), |_| {}).unwrap();
        let log_opts = LogOptions {
            segment_bytes: SEGMENT_BYTES_MIN,
            durability: Durability::Always,
            ..LogOptions::default()
        };
        let log = Log::start(&dir, id, &end, log_opts, Arc::new(|| {})).unwrap();
        (dir, id, log)
    }

    #[test]
    fn a_tail_follows_a_log_through_its_segments_while_it_is_written() {
        let (dir, id, mut log) = small_log("mercato-tail");
        let body = |i: u64| format!("record {i} {}", "x".repeat((i % 300) as usize)).into_bytes();
        let mut tail: Option<Tail> = None;
        let mut seen = Vec::new();
        let mut last = 0;
        for round in 0..40u64 {
            for i in 0..500 {
                last = log.append(7, &body(round * 500 + i)).unwrap();
            }
            log.submit();
            while log.synced_lsn() < last {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let t = tail.get_or_insert_with(|| Tail::open(&dir, id, 1).unwrap());
            // Only as far as is synced, and in pieces.
            t.read(last - 100, |r| {
                seen.push(r.body.to_vec());
                Ok(())
            })
            .unwrap();
        }
        let t = tail.as_mut().unwrap();
        t.read(last, |r| {
            seen.push(r.body.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len() as u64, last);
        assert!(seen.iter().enumerate().all(|(i, b)| *b == body(i as u64)));
        assert!(
            list_segments(&dir).unwrap().len() > 3,
            "it crossed segments"
        );
        // A tail from the middle starts there.
        let mut mid = Tail::open(&dir, id, 7_777).unwrap();
        let mut first = None;
        mid.read(7_777, |r| {
            first = Some(r.lsn);
            Ok(())
        })
        .unwrap();
        assert_eq!(first, Some(7_777));
        // Nothing from before the oldest segment once it is gone.
        let segments = list_segments(&dir).unwrap();
        std::fs::remove_file(&segments[0].1).unwrap();
        assert!(matches!(
            Tail::open(&dir, id, 1),
            Err(TailError::Lost { lsn: 1, .. })
        ));
        log.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Past a segment's last record a recycled segment holds its old
    /// bytes, out of step with the new records: the tail takes them for
    /// the end and goes on in the next segment, without reading a length
    /// they happen to spell.
    #[test]
    fn a_tail_goes_past_old_bytes_after_a_segments_last_record() {
        let (dir, id, mut log) = small_log("mercato-tail-old");
        let mut last = 0;
        while list_segments(&dir).unwrap().len() < 3 {
            for _ in 0..100 {
                last = log.append(7, &[0x5a; 200]).unwrap();
            }
            log.submit();
            while log.synced_lsn() < last {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        // Fill the first segment's unused end as an old segment's would be:
        // bytes whose first word reads as a length of gigabytes.
        let (_, path) = list_segments(&dir).unwrap()[0].clone();
        let bytes = std::fs::read(&path).unwrap();
        let mut at = SEGMENT_HEADER_BYTES;
        while let Ok(r) = decode_record(&bytes[at..]) {
            at += r.frame_bytes();
        }
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let old = vec![0xf7u8; bytes.len() - at];
        file.write_all_at(&old, at as u64).unwrap();
        let mut tail = Tail::open(&dir, id, 1).unwrap();
        let mut seen = 0u64;
        tail.read(last, |r| {
            seen += 1;
            assert_eq!(r.lsn, seen);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, last);
        assert!(
            tail.buf.len() <= TAIL_READ_BYTES,
            "it read what the old bytes spelled"
        );
        log.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
