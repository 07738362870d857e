//! Writing and removing large files without stalling the logs' syncs.
//!
//! A log's `fdatasync` ends with a flush of the device's write cache, and
//! that flush waits for every write the device holds, whoever made it. A
//! file written into the page cache in one go and synced at the end hands
//! the device all of its bytes at once: while the 64 MiB of zeros of a
//! spare segment went out that way, both logs' syncs took 27 to 70 ms
//! instead of about 0.2 (`strace -T` of a durable carts run; BENCHMARKS.md,
//! "The spare segment's zeros, paced"). A [`Pacer`] starts the write-back
//! of each piece as soon as it is written and waits whenever more than
//! [`PACE_WINDOW_BYTES`] of the file are still on their way, so a log's sync
//! waits behind a few milliseconds of someone else's bytes at most. (A
//! spare's zeros are also spread out in time; see `storage::Spread`.)
//!
//! Removing a large file has the same effect where the filesystem trims
//! freed blocks as it frees them (mounted with `discard`, as this machine's
//! root is): deleting 256 MiB at once held another file's syncs for up to
//! 65 ms. Files used to be freed a few MiB at a time by shrinking them in
//! place, but a tool reading a live data directory (`mercato audit`, `wal
//! check`) may have a snapshot mapped, and a mapped file that shrinks kills
//! its reader with SIGBUS. So a file is never changed after its rename,
//! only unlinked whole ([`remove_whole`]): a reader that has it open keeps
//! all of it until it closes, and the price is that stall, once per
//! snapshot, on filesystems that discard.
//!
//! Only Linux has `sync_file_range`; elsewhere a pacer does nothing and the
//! final sync takes everything at once, as before.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Bytes of one paced file that may be in write-back at once. Four MiB
/// take the device about 10 ms at the 400 MiB/s this machine's disk
/// sustains (computed), and keep the writer streaming rather than waiting
/// per piece: waiting for each 1 MiB on its own cost the log bench 15% of
/// its rate.
pub(crate) const PACE_WINDOW_BYTES: u64 = 4 << 20;

/// Tracks how much of one file has been handed to write-back, and how much
/// of that is known to be written.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    started: u64,
    waited: u64,
}

impl Pacer {
    /// `file` now holds its bytes up to `end`: start writing back what is
    /// new, and wait for what lies more than a window behind `end`. Still
    /// needs an `fsync` at the end: this makes nothing durable.
    pub(crate) fn written(&mut self, file: &File, end: u64) -> io::Result<()> {
        if end > self.started {
            start_write_back(file, self.started, end - self.started)?;
            self.started = end;
        }
        let behind = end.saturating_sub(PACE_WINDOW_BYTES);
        if behind > self.waited {
            wait_write_back(file, self.waited, behind - self.waited)?;
            self.waited = behind;
        }
        Ok(())
    }
}

/// What a file being removed a step at a time is renamed to first. Readers
/// ignore the name, so a crash halfway leaves a file that nobody takes for
/// a damaged segment or snapshot, and the next removal sweeps it.
pub(crate) const DROPPING_SUFFIX: &str = ".dropping";
/// The name `path` takes while it is removed.
pub(crate) fn dropping_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(DROPPING_SUFFIX);
    path.with_file_name(name)
}

/// Remove the file at `path` (already renamed out of readers' way) in one
/// unlink, never shrinking it first: whoever has it open or mapped keeps
/// every byte of it until they close it.
pub(crate) fn remove_whole(path: &Path) -> io::Result<()> {
    std::fs::remove_file(path)
}

#[cfg(target_os = "linux")]
fn start_write_back(file: &File, offset: u64, len: u64) -> io::Result<()> {
    sync_file_range(file, offset, len, libc::SYNC_FILE_RANGE_WRITE)
}

#[cfg(target_os = "linux")]
fn wait_write_back(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use libc::{SYNC_FILE_RANGE_WAIT_AFTER, SYNC_FILE_RANGE_WAIT_BEFORE, SYNC_FILE_RANGE_WRITE};
    let all = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    sync_file_range(file, offset, len, all)
}

#[cfg(target_os = "linux")]
fn sync_file_range(file: &File, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    #[allow(unsafe_code)]
    // SAFETY: the descriptor stays open while `file` is borrowed, and the
    // call reads and writes no memory of this process.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn start_write_back(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn wait_write_back(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_paced_file_holds_what_was_written() {
        let dir = std::env::temp_dir().join(format!("mercato-pace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("paced");
        let mut file = File::create(&path).unwrap();
        let mut pacer = Pacer::default();
        let piece: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
        let pieces = 2 * PACE_WINDOW_BYTES / piece.len() as u64 + 1;
        for i in 1..=pieces {
            file.write_all(&piece).unwrap();
            pacer.written(&file, i * piece.len() as u64).unwrap();
        }
        assert_eq!(pacer.started, pieces * piece.len() as u64);
        assert_eq!(pacer.waited, pacer.started - PACE_WINDOW_BYTES);
        file.sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len() as u64, pieces * piece.len() as u64);
        assert!(back.chunks(piece.len()).all(|c| c == piece.as_slice()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_removed_file_stays_whole_for_whoever_has_it_open() {
        let dir = std::env::temp_dir().join(format!("mercato-remove-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dropping_name(&dir.join("big.wal"));
        assert!(path.to_str().unwrap().ends_with(".wal.dropping"));
        let bytes: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = File::open(&path).unwrap();
        remove_whole(&path).unwrap();
        assert!(!path.exists());
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut back).unwrap();
        assert!(back == bytes, "the open file changed under its reader");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
