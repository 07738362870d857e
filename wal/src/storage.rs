//! The file layer under the log, behind a trait so tests can make it fail.
//!
//! [`OsStorage`] is the real one. [`FaultyStorage`] wraps it and fails the
//! n-th write or sync the way disks do: an fsync error, a short write, or no
//! space left, so tests can check that nothing is acknowledged that did not
//! reach the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Opens and creates segment files.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// A new file of `len` bytes, all written as zeros so that later syncs
    /// only push data (a sparse file would make every sync update the
    /// block map too). Fails if the file exists.
    fn create(&self, path: &Path, len: u64) -> io::Result<Box<dyn LogFile>>;
    /// An existing file, for appending where a recovered log ends.
    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Make a directory's entries (created, renamed or removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One open segment.
pub trait LogFile: Send {
    /// Write all of `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the data written so far survives a crash once this returns.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// Zeros written per call while preallocating.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn create(&self, path: &Path, len: u64) -> io::Result<Box<dyn LogFile>> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let zeros = vec![0u8; ZERO_CHUNK_BYTES];
        let mut left = len;
        while left > 0 {
            let n = left.min(ZERO_CHUNK_BYTES as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        Ok(Box::new(OsFile(f)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(OsFile(f)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

struct OsFile(File);

impl LogFile for OsFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

/// Which operation fails, counted from 1 across every file of a storage.
/// 0 means never.
#[derive(Debug, Default)]
pub struct Faults {
    pub fail_sync_at: AtomicU64,
    pub short_write_at: AtomicU64,
    pub no_space_at: AtomicU64,
    /// Every write takes at least this long: a slow disk, to widen the
    /// window in which what waits for the log is still waiting.
    pub write_delay_ms: AtomicU64,
    syncs: AtomicU64,
    writes: AtomicU64,
}

impl Faults {
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

/// [`OsStorage`] with failures on cue.
#[derive(Debug, Clone, Default)]
pub struct FaultyStorage {
    pub faults: Arc<Faults>,
}

impl Storage for FaultyStorage {
    fn create(&self, path: &Path, len: u64) -> io::Result<Box<dyn LogFile>> {
        let inner = OsStorage.create(path, len)?;
        Ok(Box::new(FaultyFile {
            inner,
            faults: self.faults.clone(),
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let inner = OsStorage.open(path)?;
        Ok(Box::new(FaultyFile {
            inner,
            faults: self.faults.clone(),
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsStorage.sync_dir(dir)
    }
}

struct FaultyFile {
    inner: Box<dyn LogFile>,
    faults: Arc<Faults>,
}

impl LogFile for FaultyFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let n = self.faults.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.faults.no_space_at.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        if n == self.faults.short_write_at.load(Ordering::SeqCst) {
            // Half the bytes land, then the device gives up, as write(2)
            // may report after a partial transfer.
            self.inner.write_at(&buf[..buf.len() / 2], offset)?;
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write (injected)",
            ));
        }
        let delay_ms = self.faults.write_delay_ms.load(Ordering::SeqCst);
        if delay_ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        }
        self.inner.write_at(buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let n = self.faults.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.faults.fail_sync_at.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync_data()
    }
}
