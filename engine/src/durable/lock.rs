//! One engine per data directory at a time.
//!
//! Two engines on one directory would both append to the same log segments,
//! each from its own idea of the next LSN, and both snapshot and remove
//! segments: the log would be corrupt at the next open, and acknowledged
//! orders lost. So an engine locks `DIR/LOCK` before recovery touches
//! anything and holds the lock until it has stopped.
//!
//! The lock is a POSIX record lock (`fcntl(F_SETLK)`), which belongs to the
//! process: the kernel drops it when the process ends, however it ends, so
//! a `kill -9` leaves nothing to clean up, and a child the process forks
//! does not share it. (A `flock` is shared with every child that holds a
//! copy of the descriptor: a child forked by another thread, in the moment
//! before its `exec` closes that copy, kept a closed engine's directory
//! locked, and a reopen failed: the lock test of `tests/storage_cli.rs`
//! did, in 3 runs of 12, while another test spawned processes.)
//! Since a process never conflicts with its own record locks, engines of
//! the same process are kept apart by a table of the directories it holds,
//! keyed by device and inode so that two paths to one directory count as
//! one; the table is looked at before the file is opened, because closing
//! any descriptor of a locked file releases the process's lock on it.
//!
//! The read-only tools (`mercato audit`, `mercato wal check` and `dump`,
//! `mercato-load --verify-acks`) take no lock: they change nothing, and
//! reading a directory an engine is writing shows them at most a torn
//! tail, which they report.

use std::path::Path;
use std::sync::Mutex;

use crate::error::OpenError;

pub const LOCK_NAME: &str = "LOCK";

/// Device and inode of each data directory an engine of this process holds.
static HELD: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// The lock on a data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    /// Closing the file is what releases the record lock; it is closed
    /// before the table forgets the directory, or another engine of this
    /// process could lock it in between and lose that lock to this close.
    file: Option<std::fs::File>,
    key: (u64, u64),
}

impl Drop for DirLock {
    fn drop(&mut self) {
        drop(self.file.take());
        HELD.lock().expect("lock table").retain(|&k| k != self.key);
    }
}

/// Take the lock on `dir`, creating the directory and its lock file if
/// need be; [`OpenError::Locked`] if another open engine holds it, in this
/// process or another.
pub fn lock(dir: &Path) -> Result<DirLock, OpenError> {
    let path = dir.join(LOCK_NAME);
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let key = identity(dir).map_err(io("stat", dir))?;
    let mut held = HELD.lock().expect("lock table");
    if held.contains(&key) {
        return Err(OpenError::Locked { path });
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", &path))?;
    try_lock(&file).map_err(|source| match source.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::PermissionDenied => {
            OpenError::Locked { path: path.clone() }
        }
        _ => OpenError::Io {
            op: "lock",
            path: path.clone(),
            source,
        },
    })?;
    held.push(key);
    Ok(DirLock {
        file: Some(file),
        key,
    })
}

#[cfg(unix)]
fn identity(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir)?;
    Ok((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(dir: &Path) -> std::io::Result<(u64, u64)> {
    // Without inodes, the canonical path's hash stands in.
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    std::fs::canonicalize(dir)?.hash(&mut h);
    Ok((0, h.finish()))
}

/// A write lock on the whole of `file` for this process, without waiting.
#[cfg(unix)]
#[allow(unsafe_code)]
fn try_lock(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero `flock` is a valid value of that plain C struct;
    // the fields that matter are set below (start 0 and length 0 cover
    // the whole file).
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = libc::F_WRLCK as _;
    range.l_whence = libc::SEEK_SET as _;
    // SAFETY: `fcntl(F_SETLK)` reads the one `flock` passed, which lives on
    // this stack for the call, and the descriptor of `file`, open for the
    // whole call.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &range) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere only this process's engines are kept apart: the engine
/// targets Linux.
#[cfg(not(unix))]
fn try_lock(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("mercato-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = lock(&dir).expect("a fresh directory locks");
        match lock(&dir) {
            Err(OpenError::Locked { path }) => assert_eq!(path, dir.join(LOCK_NAME)),
            other => panic!("expected Locked, got {other:?}"),
        }
        // Another path to the same directory is the same directory.
        let alias = dir.join(".");
        assert!(matches!(lock(&alias), Err(OpenError::Locked { .. })));
        drop(first);
        let again = lock(&dir).expect("free again once dropped");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
