//! Snapshot files: a caller's bytes at an LSN, written atomically and read
//! back through a memory map.
//!
//! A snapshot is `snapshot-<LSN, 20 digits>.snap`: the caller's bytes (the
//! engine writes an rkyv archive), then a 16-byte trailer of magic, format
//! version and a crc32c of the bytes. rkyv validation checks structure, not
//! values; the crc catches a flipped bit in a balance. The file is written to
//! a temporary name, synced, renamed and the directory synced, so a crash
//! leaves the old snapshot or the new one, never half of one.

use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{FORMAT_VERSION, Lsn};
use crate::pace::{DROPPING_SUFFIX, Pacer, dropping_name, remove_whole};
use crate::segment::{
    RECYCLED_SEGMENTS_MAX, list_by_lsn, list_recycled, list_segments, recycled_name,
};

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".snap";
const TMP_NAME: &str = "snapshot.tmp";
const MAGIC: [u8; 8] = *b"MRCTSNAP";
pub const TRAILER_BYTES: usize = 16;

pub fn snapshot_name(lsn: Lsn) -> String {
    format!("{PREFIX}{lsn:020}{SUFFIX}")
}

/// The snapshots in `dir`, ascending by LSN.
pub fn list_snapshots(dir: &Path) -> Result<Vec<(Lsn, PathBuf)>, WalError> {
    list_by_lsn(dir, PREFIX, SUFFIX)
}

/// Bytes a snapshot is written in: big enough that a write call per
/// buffer costs nothing next to the copy, small enough that the compactor
/// does not hold a second copy of a snapshot that may be gigabytes.
pub const SNAPSHOT_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Where a snapshot's bytes go as they are produced: to the temporary
/// file, a buffer at a time, with the crc32c kept up as they pass and the
/// write-back paced so that a snapshot of gigabytes does not hold up the
/// logs' syncs (see `pace`).
pub struct SnapshotWriter {
    file: std::fs::File,
    buffer: Vec<u8>,
    crc: u32,
    bytes: u64,
    pacer: Pacer,
}

impl SnapshotWriter {
    fn drain(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        self.crc = crc32c::crc32c_append(self.crc, &self.buffer);
        self.file.write_all(&self.buffer)?;
        self.bytes += self.buffer.len() as u64;
        self.buffer.clear();
        self.pacer.written(&self.file, self.bytes)
    }
}

impl std::io::Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len() + bytes.len() > SNAPSHOT_WRITE_BUFFER_BYTES {
            self.drain()?;
        }
        if bytes.len() >= SNAPSHOT_WRITE_BUFFER_BYTES {
            self.crc = crc32c::crc32c_append(self.crc, bytes);
            self.file.write_all(bytes)?;
            self.bytes += bytes.len() as u64;
            self.pacer.written(&self.file, self.bytes)?;
        } else {
            self.buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    /// Nothing: the buffer is drained once, when the snapshot is complete.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Write `bytes` as the snapshot at `lsn`, atomically.
pub fn write_snapshot(dir: &Path, lsn: Lsn, bytes: &[u8]) -> Result<PathBuf, WalError> {
    write_snapshot_with(dir, lsn, |w| std::io::Write::write_all(w, bytes)).map(|(path, _)| path)
}

/// Write the snapshot at `lsn` atomically, its bytes produced by `fill` as
/// it goes, so that a snapshot never needs a buffer of its whole size (the
/// compactor used to serialize into one, and the kernel's zeroing of that
/// fresh memory was a sixth of its time). Returns the path and the size
/// without the trailer.
pub fn write_snapshot_with(
    dir: &Path,
    lsn: Lsn,
    fill: impl FnOnce(&mut SnapshotWriter) -> std::io::Result<()>,
) -> Result<(PathBuf, u64), WalError> {
    use std::io::Write;
    let tmp = dir.join(TMP_NAME);
    let file = std::fs::File::create(&tmp).map_err(|e| WalError::io("create", &tmp, e))?;
    let mut w = SnapshotWriter {
        file,
        buffer: Vec::with_capacity(SNAPSHOT_WRITE_BUFFER_BYTES),
        crc: 0,
        bytes: 0,
        pacer: Pacer::default(),
    };
    let written = fill(&mut w).and_then(|()| w.drain()).and_then(|()| {
        let mut trailer = [0u8; TRAILER_BYTES];
        trailer[0..8].copy_from_slice(&MAGIC);
        trailer[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        trailer[12..16].copy_from_slice(&w.crc.to_le_bytes());
        w.file.write_all(&trailer)?;
        w.file.sync_all()
    });
    written.map_err(|e| WalError::io("write", &tmp, e))?;
    let path = dir.join(snapshot_name(lsn));
    std::fs::rename(&tmp, &path).map_err(|e| WalError::io("rename", &path, e))?;
    sync_dir(dir)?;
    Ok((path, w.bytes))
}

/// A snapshot mapped into memory with its trailer checked.
pub struct MappedSnapshot {
    map: memmap2::Mmap,
    pub path: PathBuf,
}

impl MappedSnapshot {
    /// The caller's bytes, without the trailer; page-aligned.
    pub fn bytes(&self) -> &[u8] {
        &self.map[..self.map.len() - TRAILER_BYTES]
    }
}

/// Map the snapshot at `path` and check its trailer.
pub fn map_snapshot(path: &Path) -> Result<MappedSnapshot, WalError> {
    let bad = |what: &str| WalError::BadSnapshot {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let f = std::fs::File::open(path).map_err(|e| WalError::io("open", path, e))?;
    // SAFETY: a snapshot file is written under a temporary name and never
    // changed after its rename: not written, not shrunk. Old ones are
    // renamed aside and unlinked whole (`drop_covered`), which leaves the
    // inode and every byte of it to whoever has it mapped, so a tool
    // reading a live server's directory keeps a valid map too. The map is
    // read-only, so no reference into it can see a change. (Only someone
    // outside mercato truncating the file could break this.)
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&f) }.map_err(|e| WalError::io("map", path, e))?;
    if map.len() < TRAILER_BYTES {
        return Err(bad("shorter than its trailer"));
    }
    let (body, trailer) = map.split_at(map.len() - TRAILER_BYTES);
    if trailer[0..8] != MAGIC {
        return Err(bad("no snapshot trailer"));
    }
    let version = u32::from_le_bytes(trailer[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(WalError::WrongVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let crc = u32::from_le_bytes(trailer[12..16].try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    Ok(MappedSnapshot {
        map,
        path: path.to_path_buf(),
    })
}

/// What [`drop_covered`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub segments: usize,
    pub snapshots: usize,
}

/// Remove what the snapshot at `lsn` makes unnecessary: segments whose
/// records all precede or equal it (the last segment always stays, it is
/// where appending goes on) and older snapshots. Up to
/// `RECYCLED_SEGMENTS_MAX` segments are kept for the log to reuse
/// (`segment.rs`); the rest, and old snapshots, are renamed out of readers'
/// way at once, then unlinked whole (see `pace`: never shrunk, since a
/// reader may have one mapped), with anything an earlier removal left
/// behind.
pub fn drop_covered(dir: &Path, lsn: Lsn) -> Result<Dropped, WalError> {
    drop_covered_keeping(dir, lsn, Lsn::MAX)
}

/// [`drop_covered`], keeping every segment that holds a record at or after
/// `keep_from` (a reader still needs them: the change feed's durable
/// subscriptions).
pub fn drop_covered_keeping(dir: &Path, lsn: Lsn, keep_from: Lsn) -> Result<Dropped, WalError> {
    let mut dropped = Dropped::default();
    let mut doomed = leftovers(dir)?;
    let mut recycled = list_recycled(dir)?.len();
    let mut renamed = false;
    let mut set_aside = |path: &Path| -> Result<(), WalError> {
        let to = dropping_name(path);
        std::fs::rename(path, &to).map_err(|e| WalError::io("rename", path, e))?;
        doomed.push(to);
        Ok(())
    };
    let segments = list_segments(dir)?;
    for pair in segments.windows(2) {
        let (_, path) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first <= lsn + 1 && next_first <= keep_from {
            if recycled < RECYCLED_SEGMENTS_MAX {
                let to = path.with_file_name(recycled_name(pair[0].0));
                std::fs::rename(path, &to).map_err(|e| WalError::io("rename", path, e))?;
                recycled += 1;
                renamed = true;
            } else {
                set_aside(path)?;
            }
            dropped.segments += 1;
        }
    }
    for (at, path) in list_snapshots(dir)? {
        if at < lsn {
            set_aside(&path)?;
            dropped.snapshots += 1;
        }
    }
    if doomed.is_empty() {
        if renamed {
            sync_dir(dir)?;
        }
        return Ok(dropped);
    }
    // The new names are durable before any file goes.
    sync_dir(dir)?;
    for path in &doomed {
        remove_whole(path).map_err(|e| WalError::io("remove", path, e))?;
    }
    sync_dir(dir)?;
    Ok(dropped)
}

/// Files an interrupted removal left in `dir`.
fn leftovers(dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("list", dir, e))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("list", dir, e))?;
        if entry
            .file_name()
            .to_string_lossy()
            .ends_with(DROPPING_SUFFIX)
        {
            out.push(entry.path());
        }
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| WalError::io("sync", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_and_catches_damage() {
        let dir = std::env::temp_dir().join(format!("mercato-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let path = write_snapshot(&dir, 42, &bytes).unwrap();
        assert_eq!(list_snapshots(&dir).unwrap(), vec![(42, path.clone())]);
        assert_eq!(map_snapshot(&path).unwrap().bytes(), &bytes[..]);
        for at in [0, 5_000, 9_999, 10_005, 10_013] {
            let mut bad = std::fs::read(&path).unwrap();
            bad[at] ^= 4;
            std::fs::write(&path, &bad).unwrap();
            assert!(map_snapshot(&path).is_err(), "flip at {at}");
            bad[at] ^= 4;
            std::fs::write(&path, &bad).unwrap();
        }
        write_snapshot(&dir, 50, &bytes).unwrap();
        let leftover = dir.join(format!("{}{DROPPING_SUFFIX}", crate::segment_name(1)));
        std::fs::write(&leftover, b"half of a segment").unwrap();
        let d = drop_covered(&dir, 50).unwrap();
        assert_eq!(d.snapshots, 1);
        assert_eq!(list_snapshots(&dir).unwrap().len(), 1);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(snapshot_name(50))]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_written_in_pieces_equals_one_written_at_once() {
        let dir = std::env::temp_dir().join(format!("mercato-snap-pieces-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let buffer = SNAPSHOT_WRITE_BUFFER_BYTES;
        let bytes: Vec<u8> = (0..3 * buffer + 123)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        // Pieces smaller than the buffer, one that crosses its end, and
        // one larger than the buffer, which bypasses it.
        let cuts = [
            0,
            7,
            1_000,
            buffer - 5,
            buffer + 9,
            2 * buffer + 20,
            bytes.len(),
        ];
        let whole = write_snapshot(&dir, 1, &bytes).unwrap();
        let (pieces, len) = write_snapshot_with(&dir, 2, |w| {
            cuts.windows(2)
                .try_for_each(|c| std::io::Write::write_all(w, &bytes[c[0]..c[1]]))
        })
        .unwrap();
        assert_eq!(len, bytes.len() as u64);
        assert_eq!(
            std::fs::read(&whole).unwrap(),
            std::fs::read(&pieces).unwrap()
        );
        assert_eq!(map_snapshot(&pieces).unwrap().bytes(), &bytes[..]);

        let failed = write_snapshot_with(&dir, 3, |_| Err(std::io::Error::other("full")));
        assert!(matches!(failed, Err(WalError::Io { .. })), "{failed:?}");
        assert_eq!(
            list_snapshots(&dir).unwrap().len(),
            2,
            "a failed write leaves no snapshot"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A tool pointed at a live directory (`mercato audit`) maps the newest
    /// snapshot; the server then writes a newer one and drops the old. The
    /// old file used to be shrunk in place a few MiB at a time, and the
    /// tool died of SIGBUS reading its map. Now every byte stays readable.
    #[test]
    fn a_mapped_snapshot_stays_whole_while_a_newer_one_drops_it() {
        let dir = std::env::temp_dir().join(format!("mercato-snap-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes: Vec<u8> = (0..(12u32 << 20)).map(|i| (i * 13 % 251) as u8).collect();
        let old = write_snapshot(&dir, 10, &bytes).unwrap();
        let mapped = map_snapshot(&old).unwrap();
        write_snapshot(&dir, 20, b"newer").unwrap();
        let d = drop_covered(&dir, 20).unwrap();
        assert_eq!(d.snapshots, 1);
        assert!(!old.exists());
        // Touch every page of the old map.
        assert!(mapped.bytes() == &bytes[..], "the mapped snapshot changed");
        drop(mapped);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
