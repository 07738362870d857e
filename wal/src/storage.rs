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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::pace::Pacer;

/// Opens and creates segment files.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// A new file of `len` bytes, all written as zeros so that later syncs
    /// only push data (a sparse file would make every sync update the
    /// block map too). The zeros are paced (see `pace`) and spread over
    /// time as `spread` asks, so that they do not hold up the logs' syncs.
    /// Fails if the file exists.
    fn create(&self, path: &Path, len: u64, spread: &Spread) -> io::Result<Box<dyn LogFile>>;
    /// An existing file, for appending where a recovered log ends.
    fn open(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Make a directory's entries (created, renamed or removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Rename a file; durable once its directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
}

/// One open segment.
pub trait LogFile: Send {
    /// Write all of `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the data written so far survives a crash once this returns.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// How a new segment's zeros are spread over time. A log's sync waits for
/// every write the device holds, so zeros written as fast as the device
/// takes them make every sync of that time slow: 4 to 11 ms each, for a
/// quarter of a second after each rollover, on this machine. Spread out,
/// each sync meets one chunk at most, now and then.
#[derive(Debug, Clone, Default)]
pub struct Spread {
    /// Finish no sooner than this after starting, unless hurried. Zero
    /// writes the zeros as fast as write-back allows.
    pub over: Duration,
    /// Set, and the creating thread unparked, when the file is needed now:
    /// the rest of the zeros go out without pauses. (`std`'s atomic, not
    /// the loom facade's: the creating thread is a plain thread that no
    /// loom model runs.)
    pub hurry: Arc<AtomicBool>,
}

impl Spread {
    /// Pause until `done` of `len` bytes (`len` > 0) are due, if that is
    /// later than now.
    fn rest(&self, started: Instant, done: u64, len: u64) {
        let due = self.over.mul_f64(done as f64 / len as f64);
        // A park may end early for no reason, so look again each time.
        while !self.hurry.load(Ordering::Acquire) {
            match due.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                _ => return,
            }
        }
    }
}

/// Zeros written per call while preallocating: small, so that a log's sync
/// that meets one of them while the zeros are spread out waits for little.
const ZERO_CHUNK_BYTES: usize = 256 << 10;

#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

impl Storage for OsStorage {
    fn create(&self, path: &Path, len: u64, spread: &Spread) -> io::Result<Box<dyn LogFile>> {
        let started = Instant::now();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        let zeros = vec![0u8; ZERO_CHUNK_BYTES];
        let mut pacer = Pacer::default();
        let mut left = len;
        while left > 0 {
            let n = left.min(ZERO_CHUNK_BYTES as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
            pacer.written(&f, len - left)?;
            spread.rest(started, len - left, len);
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
    fn create(&self, path: &Path, len: u64, spread: &Spread) -> io::Result<Box<dyn LogFile>> {
        let inner = OsStorage.create(path, len, spread)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: u64 = 4 * ZERO_CHUNK_BYTES as u64;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("mercato-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn assert_zeros(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.len() as u64, LEN);
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn spread_zeros_take_at_least_the_time_asked() {
        let dir = scratch("spread");
        let spread = Spread {
            over: Duration::from_millis(300),
            ..Spread::default()
        };
        let started = Instant::now();
        OsStorage.create(&dir.join("f"), LEN, &spread).unwrap();
        assert!(started.elapsed() >= spread.over, "{:?}", started.elapsed());
        assert_zeros(&dir.join("f"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_hurried_spare_stops_pausing() {
        let dir = scratch("hurry");
        let spread = Spread {
            over: Duration::from_secs(3600),
            ..Spread::default()
        };
        let hurry = spread.hurry.clone();
        let path = dir.join("f");
        let (done, finished) = std::sync::mpsc::channel();
        let worker = {
            let path = path.clone();
            std::thread::spawn(move || {
                let created = OsStorage.create(&path, LEN, &spread).map(drop);
                done.send(created).unwrap();
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            finished.try_recv().is_err(),
            "an hour's spread ended at once"
        );
        hurry.store(true, Ordering::Release);
        worker.thread().unpark();
        let created = finished.recv_timeout(Duration::from_secs(60));
        assert!(created.expect("the hurried spare kept pausing").is_ok());
        worker.join().unwrap();
        assert_zeros(&path);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
