//! Where segments live and what they are called.
//!
//! A shard's log is the files `<first LSN, 20 digits>.wal` in its directory,
//! in LSN order. A segment only gets its name once its header is on disk, so
//! a named segment always has a readable header; files being prepared carry
//! other names and are ignored (and removed) by readers.

use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::Lsn;

pub const SEGMENT_SUFFIX: &str = ".wal";
/// A file waiting to become the next segment: zero-filled, or recycled.
pub const SPARE_SEGMENT_NAME: &str = "spare.wal-tmp";

/// A segment a snapshot made unnecessary, kept to become a later segment
/// instead of zero-filling a new file, as PostgreSQL recycles WAL files:
/// `recycled-<its old first LSN>.wal-tmp`. Its old records stay in it, and
/// readers take them for the end of the log: each has an LSN below the
/// first LSN its new header names (`reader`).
pub(crate) const RECYCLED_PREFIX: &str = "recycled-";
pub(crate) const RECYCLED_SUFFIX: &str = ".wal-tmp";
/// Recycled segments a log keeps at most. A snapshot frees the segments
/// written since the one before; two are enough for the rollovers until
/// the next, and the rest are removed.
pub(crate) const RECYCLED_SEGMENTS_MAX: usize = 2;

pub(crate) fn recycled_name(first_lsn: Lsn) -> String {
    format!("{RECYCLED_PREFIX}{first_lsn:020}{RECYCLED_SUFFIX}")
}

/// The recycled segments in `dir`, oldest first.
pub(crate) fn list_recycled(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    list_by_lsn(dir, RECYCLED_PREFIX, RECYCLED_SUFFIX)
}

pub fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// The segments in `dir`, ascending by first LSN. A missing directory has none.
pub fn list_segments(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    list_by_lsn(dir, "", SEGMENT_SUFFIX)
}

/// Files in `dir` named `<prefix><LSN, 20 digits><suffix>`, ascending by LSN.
/// Anything else in the directory is ignored.
pub(crate) fn list_by_lsn(
    dir: &Path,
    prefix: &str,
    suffix: &str,
) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(WalError::io("list", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        let name = entry.file_name();
        let lsn = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(suffix))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<Lsn>().ok());
        if let Some(lsn) = lsn {
            out.push((lsn, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_lsn_and_strangers_are_ignored() {
        let dir = std::env::temp_dir().join(format!("mercato-seg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            segment_name(100),
            segment_name(9),
            "notes.txt".into(),
            SPARE_SEGMENT_NAME.into(),
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let found: Vec<Lsn> = list_segments(&dir)
            .unwrap()
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        assert_eq!(found, vec![9, 100]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(list_segments(&dir).unwrap().is_empty());
    }
}
