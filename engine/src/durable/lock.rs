//! One engine per data directory at a time.
//!
//! Two engines on one directory would both append to the same log segments,
//! each from its own idea of the next LSN, and both snapshot and remove
//! segments: the log would be corrupt at the next open, and acknowledged
//! orders lost. So an engine takes an exclusive `flock` on `DIR/LOCK`
//! before recovery touches anything and holds it until it has stopped. The
//! kernel releases it when the process ends, however it ends, so a
//! `kill -9` leaves nothing to clean up. The read-only tools (`mercato
//! audit`, `mercato wal check` and `dump`, `mercato-load --verify-acks`)
//! take no lock: they change nothing, and reading a directory an engine is
//! writing shows them at most a torn tail, which they report.

use std::path::{Path, PathBuf};

use crate::error::OpenError;

pub const LOCK_NAME: &str = "LOCK";

/// The lock on a data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    /// Closing the file is what releases the lock.
    _file: std::fs::File,
    pub path: PathBuf,
}

/// Take the lock on `dir`, creating the directory and its lock file if
/// need be; [`OpenError::Locked`] if another open engine holds it.
pub fn lock(dir: &Path) -> Result<DirLock, OpenError> {
    let path = dir.join(LOCK_NAME);
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| OpenError::Io { op, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", &path))?;
    try_lock(&file).map_err(|source| match source.kind() {
        std::io::ErrorKind::WouldBlock => OpenError::Locked { path: path.clone() },
        _ => OpenError::Io {
            op: "lock",
            path: path.clone(),
            source,
        },
    })?;
    Ok(DirLock { _file: file, path })
}

/// An exclusive lock on `file`'s open file description, without waiting.
#[cfg(unix)]
#[allow(unsafe_code)]
fn try_lock(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` takes the descriptor of `file`, which is open for the
    // whole call, and an integer; it touches no memory of ours.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere the directory is not locked: the engine targets Linux.
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
        drop(first);
        let again = lock(&dir).expect("free again once dropped");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
