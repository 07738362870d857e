//! Reading a shard's log back, validating every record as it goes.
//!
//! The reader tells a torn tail from corruption by what follows the first
//! bad record. A crash can only damage the end of what was being written,
//! and a segment is either zero-filled ahead of use or recycled, so after a
//! torn record there are only zeros or records of the segment's earlier
//! life, whose LSNs are all below the first LSN its header names. Any valid
//! record of this life further on means the damage is in the middle of the
//! log: the reader refuses, naming the file and byte offset, and changes
//! nothing. A torn tail is reported and, when asked, zeroed so that
//! appending resumes where the valid log ends. A record of the earlier life
//! where the next one was due is the clean end of the log.

use std::path::{Path, PathBuf};

use crate::error::{Corruption, WalError};
use crate::format::{
    FORMAT_VERSION, LogId, Lsn, NotARecord, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES, RecordRef,
    SEGMENT_HEADER_BYTES, SegmentHeader, decode_record,
};
use crate::segment::list_segments;

/// A visitor's failure to make sense of a record that passed its checksum.
pub type VisitError = Box<dyn std::error::Error + Send + Sync>;

/// What was cut off the end of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    pub offset: u64,
    /// Bytes between `offset` and the last non-zero byte after it.
    pub bytes: u64,
}

/// Where the valid log ends: what a writer needs to carry on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEnd {
    /// LSN the next record gets.
    pub next_lsn: Lsn,
    /// Crc of the last record, the next one's `prev`.
    pub last_crc: u32,
    /// The last segment and the offset after its last valid record, if any
    /// segment exists.
    pub tail: Option<(PathBuf, u64)>,
    pub torn: Option<TornTail>,
    /// Records handed to the visitor.
    pub visited: u64,
    /// Bytes of segment files read.
    pub bytes_read: u64,
}

/// How to read.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// Visit records from this LSN on; earlier ones are validated and skipped.
    pub from_lsn: Lsn,
    /// Stop after this LSN, without looking further: for reading the closed
    /// part of a log that is still being written.
    pub to_lsn: Lsn,
    /// Zero a torn tail on disk (recovery). Without it nothing is written
    /// (checks, dumps, audits).
    pub repair: bool,
}

/// Reads every segment of `log` in `dir`, in order, calling `visit` for each
/// record at or after `opts.from_lsn`, and `progress` with the bytes read
/// after each segment.
pub fn read_log(
    dir: &Path,
    log: LogId,
    opts: ReadOptions,
    mut visit: impl FnMut(RecordRef<'_>) -> Result<(), VisitError>,
    mut progress: impl FnMut(u64),
) -> Result<LogEnd, WalError> {
    let segments = list_segments(dir)?;
    let mut end = LogEnd {
        next_lsn: 1,
        last_crc: 0,
        tail: None,
        torn: None,
        visited: 0,
        bytes_read: 0,
    };
    let mut started = false;
    // One buffer for every segment: a fresh one each time would have the
    // kernel zero a segment's worth of new memory per segment read.
    let mut bytes = Vec::new();
    for (i, (_, path)) in segments.iter().enumerate() {
        read_into(path, &mut bytes).map_err(|e| WalError::io("read", path, e))?;
        end.bytes_read += bytes.len() as u64;
        let header = SegmentHeader::decode(&bytes).map_err(|what| corrupt(path, 0, what))?;
        check_header(path, &header, log)?;
        if !started {
            started = true;
            if header.first_lsn > opts.from_lsn {
                return Err(corrupt(
                    path,
                    0,
                    Corruption::SegmentGap {
                        expected: opts.from_lsn,
                        found: header.first_lsn,
                    },
                ));
            }
            end.next_lsn = header.first_lsn;
            end.last_crc = header.prev_crc;
        } else if header.first_lsn != end.next_lsn {
            return Err(corrupt(
                path,
                0,
                Corruption::SegmentGap {
                    expected: end.next_lsn,
                    found: header.first_lsn,
                },
            ));
        } else if header.prev_crc != end.last_crc {
            return Err(corrupt(
                path,
                0,
                Corruption::Chain {
                    expected: end.last_crc,
                    found: header.prev_crc,
                },
            ));
        }
        let mut offset = SEGMENT_HEADER_BYTES;
        let stop = loop {
            let problem = match decode_record(&bytes[offset..]) {
                // Left from the segment's life before it was recycled:
                // the end of what this life wrote, like zeros.
                Ok(r) if r.lsn < header.first_lsn => break None,
                Ok(r) if r.lsn != end.next_lsn => Corruption::Lsn {
                    expected: end.next_lsn,
                    found: r.lsn,
                },
                Ok(r) if r.prev != end.last_crc => Corruption::Chain {
                    expected: end.last_crc,
                    found: r.prev,
                },
                Ok(r) => {
                    if r.lsn > opts.to_lsn {
                        end.tail = Some((path.clone(), offset as u64));
                        progress(end.bytes_read);
                        return Ok(end);
                    }
                    if r.lsn >= opts.from_lsn {
                        visit(r).map_err(|source| WalError::Unreadable {
                            path: path.clone(),
                            offset: offset as u64,
                            lsn: r.lsn,
                            source,
                        })?;
                        end.visited += 1;
                    }
                    end.next_lsn += 1;
                    end.last_crc = r.crc;
                    offset += r.frame_bytes();
                    continue;
                }
                Err(NotARecord::Zeros) => break None,
                Err(NotARecord::Damaged) => Corruption::Record,
            };
            break Some(problem);
        };
        // Whatever stopped the reading, nothing valid may follow it.
        let later = &segments[i + 1..];
        if valid_record_after(&bytes, offset, end.next_lsn).is_some() {
            let what = stop.unwrap_or(Corruption::Record);
            return Err(corrupt(path, offset as u64, what));
        }
        if let Some(problem) = stop {
            if later_segments_hold_records(later, log)? {
                return Err(corrupt(path, offset as u64, problem));
            }
            let last_nonzero = bytes.iter().rposition(|&b| b != 0).unwrap_or(offset);
            let torn = TornTail {
                path: path.clone(),
                offset: offset as u64,
                bytes: (last_nonzero + 1).saturating_sub(offset) as u64,
            };
            if opts.repair {
                zero_tail(path, offset as u64, torn.bytes)?;
                for (_, p) in later {
                    std::fs::remove_file(p).map_err(|e| WalError::io("remove", p, e))?;
                }
            }
            end.torn = Some(torn);
            end.tail = Some((path.clone(), offset as u64));
            progress(end.bytes_read);
            return Ok(end);
        }
        end.tail = Some((path.clone(), offset as u64));
        progress(end.bytes_read);
    }
    Ok(end)
}

fn check_header(path: &Path, h: &SegmentHeader, log: LogId) -> Result<(), WalError> {
    if h.version != FORMAT_VERSION {
        return Err(WalError::WrongVersion {
            path: path.to_path_buf(),
            found: h.version,
            supported: FORMAT_VERSION,
        });
    }
    if h.log != log {
        return Err(WalError::WrongLog {
            path: path.to_path_buf(),
            shard: log.shard,
            shards: log.shards,
            found_shard: h.log.shard,
            found_shards: h.log.shards,
        });
    }
    Ok(())
}

/// The offset of a record after `from` in `bytes` that checks out on its own
/// and claims an LSN at or past `lsn_min`, if any.
fn valid_record_after(bytes: &[u8], from: usize, lsn_min: Lsn) -> Option<usize> {
    let mut at = from + RECORD_ALIGN_BYTES;
    while at + RECORD_HEADER_BYTES <= bytes.len() {
        let word = &bytes[at..at + RECORD_ALIGN_BYTES];
        if word.iter().any(|&b| b != 0) {
            if let Ok(r) = decode_record(&bytes[at..]) {
                if r.lsn >= lsn_min {
                    return Some(at);
                }
            }
        }
        at += RECORD_ALIGN_BYTES;
    }
    None
}

/// The file at `path` into `buf`, in place of what `buf` held.
fn read_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    buf.clear();
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    buf.reserve(usize::try_from(len).unwrap_or(0));
    file.read_to_end(buf)?;
    Ok(())
}

fn later_segments_hold_records(later: &[(Lsn, PathBuf)], log: LogId) -> Result<bool, WalError> {
    for (_, path) in later {
        let bytes = std::fs::read(path).map_err(|e| WalError::io("read", path, e))?;
        // Records of a recycled segment's earlier life do not count.
        let first_lsn = match SegmentHeader::decode(&bytes) {
            Ok(h) if h.log == log => h.first_lsn,
            _ => continue,
        };
        if valid_record_after(&bytes, SEGMENT_HEADER_BYTES - RECORD_ALIGN_BYTES, first_lsn)
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn zero_tail(path: &Path, offset: u64, len: u64) -> Result<(), WalError> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io("open", path, e))?;
    f.write_all_at(&vec![0u8; len as usize], offset)
        .map_err(|e| WalError::io("truncate torn tail of", path, e))?;
    f.sync_data().map_err(|e| WalError::io("sync", path, e))
}

fn corrupt(path: &Path, offset: u64, what: Corruption) -> WalError {
    WalError::Corrupt {
        path: path.to_path_buf(),
        offset,
        what,
    }
}
