//! Appending: the shard frames records, a flusher thread writes and syncs them.
//!
//! [`Log`] lives on the shard thread and never touches a file. Its flusher
//! owns the open segment, creates the next one ahead of time on a helper
//! thread (zero-filling 64 MiB takes tens of milliseconds, which would
//! otherwise stall every commit waiting behind a rollover), and publishes how
//! far the log is written and synced. After a failed write or sync it stops
//! for good: the log is poisoned and nothing after the last published LSN is
//! ever reported durable.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::WalError;
use crate::format::{
    FORMAT_VERSION, LogId, Lsn, RECORD_BODY_BYTES_MAX, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
    SegmentHeader, encode_record, frame_bytes,
};
use crate::handoff::{Batch, Handoff, Roll, Taken};
use crate::reader::LogEnd;
use crate::segment::{SPARE_SEGMENT_NAME, list_recycled, segment_name};
use crate::storage::{LogFile, OsStorage, Spread, Storage};

pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// A segment must hold its header and the largest record.
pub const SEGMENT_BYTES_MIN: u64 = 128 << 10;
/// See [`LogOptions::group_commit_wait_us`]; BENCHMARKS.md has the figures
/// behind the default.
pub const GROUP_COMMIT_WAIT_US_DEFAULT: u64 = 2_000;
/// Longest `interval=<ms>` accepted: past a minute, "durable" means little.
pub const SYNC_INTERVAL_MS_MAX: u64 = 60_000;

/// Longest time a spare segment's zeros are spread over (half the time the
/// last segment took to fill, up to this). Past it they are already a
/// trickle of 6.4 MiB/s for a default segment.
pub const SPARE_SPREAD_MS_MAX: u64 = 10_000;

const _: () =
    assert!(SEGMENT_BYTES_MIN as usize >= SEGMENT_HEADER_BYTES + 24 + RECORD_BODY_BYTES_MAX);

/// When records count as safe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// After `fdatasync`: survives power loss. Replies wait for it.
    #[default]
    Always,
    /// Written at once, synced at most this many milliseconds later.
    Interval { ms: u64 },
    /// Written, never synced: survives the process dying, not the machine.
    Never,
}

impl FromStr for Durability {
    type Err = WalError;

    fn from_str(s: &str) -> Result<Self, WalError> {
        let bad = WalError::InvalidOption {
            what: "durability is always, never or interval=<ms> with 1..=60000 ms",
        };
        match s {
            "always" => Ok(Durability::Always),
            "never" => Ok(Durability::Never),
            _ => {
                let ms = s
                    .strip_prefix("interval=")
                    .and_then(|ms| ms.parse::<u64>().ok())
                    .ok_or(bad)?;
                if ms == 0 || ms > SYNC_INTERVAL_MS_MAX {
                    return Err(WalError::InvalidOption {
                        what: "durability is always, never or interval=<ms> with 1..=60000 ms",
                    });
                }
                Ok(Durability::Interval { ms })
            }
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::Interval { ms } => write!(f, "interval={ms}"),
            Durability::Never => f.write_str("never"),
        }
    }
}

/// How to run a log.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub segment_bytes: u64,
    pub durability: Durability,
    pub storage: Arc<dyn Storage>,
    /// Under `always`, the least time from one sync's start to the next
    /// while the shard keeps appending: the flusher writes what it took,
    /// then holds the sync back until this much has passed since the last
    /// one started, so that it carries more records. The hold ends as soon
    /// as the shard's loop finds nothing to do ([`Log::producer_idle`]):
    /// nothing more is coming then, and waiting would only add latency.
    /// Each sync costs the machine context switches and a device round trip
    /// whatever it carries; on a 2-core machine those cycles come out of
    /// the shards'.
    pub group_commit_wait_us: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            durability: Durability::Always,
            storage: Arc::new(OsStorage),
            group_commit_wait_us: GROUP_COMMIT_WAIT_US_DEFAULT,
        }
    }
}

/// Called by the flusher after it publishes progress, to wake the shard.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// What anyone may watch of a log while its shard appends: its LSNs and
/// its flusher's counters.
#[derive(Clone, Debug)]
pub struct LogMonitor {
    handoff: Arc<Handoff>,
}

impl LogMonitor {
    pub fn written_lsn(&self) -> Lsn {
        self.handoff.written_lsn()
    }

    pub fn synced_lsn(&self) -> Lsn {
        self.handoff.synced_lsn()
    }

    pub fn stats(&self) -> &crate::stats::SyncStats {
        &self.handoff.stats
    }

    /// Why the log failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.handoff.failure()
    }
}

/// The shard's end of one log.
pub struct Log {
    handoff: Arc<Handoff>,
    batch: Batch,
    next_lsn: Lsn,
    last_crc: u32,
    /// Bytes of the current segment used, counting records not yet written.
    segment_used: u64,
    segment_bytes: u64,
    durability: Durability,
    flusher: Option<JoinHandle<()>>,
}

impl Log {
    /// Resume appending where `end` (from reading the log back) says the log
    /// stops, creating the directory and first segment if there are none.
    pub fn start(
        dir: &Path,
        log: LogId,
        end: &LogEnd,
        opts: LogOptions,
        notify: Notify,
    ) -> Result<Log, WalError> {
        if opts.segment_bytes < SEGMENT_BYTES_MIN {
            return Err(WalError::InvalidOption {
                what: "segment_bytes must be at least 128 KiB",
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| WalError::io("create", dir, e))?;
        let spare = dir.join(SPARE_SEGMENT_NAME);
        match std::fs::remove_file(&spare) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(WalError::io("remove", &spare, e));
            }
            _ => {}
        }
        let last = end.next_lsn - 1;
        let handoff = Arc::new(Handoff::starting_after(last));
        let mut flusher = Flusher {
            dir: dir.to_path_buf(),
            log,
            storage: opts.storage.clone(),
            handoff: handoff.clone(),
            file: None,
            offset: 0,
            segment_bytes: opts.segment_bytes,
            durability: opts.durability,
            notify,
            spare: None,
            segment_opened: Instant::now(),
            written: last,
            synced: last,
            last_sync: Instant::now(),
            wait: Duration::from_micros(opts.group_commit_wait_us),
        };
        let segment_used = match &end.tail {
            Some((path, offset)) => {
                let file = opts
                    .storage
                    .open(path)
                    .map_err(|e| WalError::io("open", path, e))?;
                flusher.file = Some(file);
                flusher.offset = *offset;
                *offset
            }
            None => {
                flusher
                    .roll(Roll {
                        at: 0,
                        first_lsn: end.next_lsn,
                        prev_crc: end.last_crc,
                    })
                    .map_err(|e| WalError::io("create first segment in", dir, e))?;
                SEGMENT_HEADER_BYTES as u64
            }
        };
        flusher.prepare_spare(Duration::ZERO);
        let thread = std::thread::Builder::new()
            .name(format!("mercato-wal-{}", log.shard))
            .spawn(move || flusher.run())
            .map_err(|e| WalError::io("spawn flusher for", dir, e))?;
        Ok(Log {
            handoff,
            batch: Batch::default(),
            next_lsn: end.next_lsn,
            last_crc: end.last_crc,
            segment_used,
            segment_bytes: opts.segment_bytes,
            durability: opts.durability,
            flusher: Some(thread),
        })
    }

    /// Frame one record into the pending batch and return its LSN. Nothing
    /// reaches the flusher before [`Log::submit`].
    pub fn append(&mut self, kind: u8, body: &[u8]) -> Result<Lsn, WalError> {
        if body.len() > RECORD_BODY_BYTES_MAX {
            return Err(WalError::RecordTooLarge {
                len: body.len(),
                max: RECORD_BODY_BYTES_MAX,
            });
        }
        let frame = frame_bytes(body.len()) as u64;
        if self.segment_used + frame > self.segment_bytes {
            self.batch.rolls.push(Roll {
                at: self.batch.bytes.len(),
                first_lsn: self.next_lsn,
                prev_crc: self.last_crc,
            });
            self.segment_used = SEGMENT_HEADER_BYTES as u64;
        }
        let lsn = self.next_lsn;
        self.last_crc = encode_record(&mut self.batch.bytes, kind, lsn, self.last_crc, body);
        self.batch.last_lsn = lsn;
        self.segment_used += frame;
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Hand the records appended so far to the flusher.
    pub fn submit(&mut self) {
        self.handoff.offer(&mut self.batch);
    }

    /// The shard's loop went idle (`true`) or has work again (`false`);
    /// see [`LogOptions::group_commit_wait_us`].
    pub fn producer_idle(&self, idle: bool) {
        self.handoff.producer_idle(idle);
    }

    pub fn monitor(&self) -> LogMonitor {
        LogMonitor {
            handoff: self.handoff.clone(),
        }
    }

    /// LSN of the last record appended.
    pub fn last_lsn(&self) -> Lsn {
        self.next_lsn - 1
    }

    /// Records up to here reached the file (survive the process dying).
    pub fn written_lsn(&self) -> Lsn {
        self.handoff.written_lsn()
    }

    /// Records up to here were synced (survive power loss).
    pub fn synced_lsn(&self) -> Lsn {
        self.handoff.synced_lsn()
    }

    /// Records up to here are as safe as the durability policy promises.
    pub fn durable_lsn(&self) -> Lsn {
        match self.durability {
            Durability::Always => self.synced_lsn(),
            Durability::Interval { .. } | Durability::Never => self.written_lsn(),
        }
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Bytes appended and not yet taken by the flusher.
    pub fn backlog_bytes(&self) -> usize {
        self.batch.bytes.len() + self.handoff.pending_bytes()
    }

    /// The failure that poisoned the log, if one did.
    pub fn failure(&self) -> Option<WalError> {
        self.handoff.failure().map(WalError::Poisoned)
    }

    /// Write and sync everything appended, whatever the policy, then stop the
    /// flusher.
    pub fn close(mut self) -> Result<Lsn, WalError> {
        self.stop();
        match self.failure() {
            Some(e) => Err(e),
            None => Ok(self.synced_lsn()),
        }
    }

    fn stop(&mut self) {
        self.submit();
        self.handoff.close();
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Flusher {
    dir: PathBuf,
    log: LogId,
    storage: Arc<dyn Storage>,
    handoff: Arc<Handoff>,
    file: Option<Box<dyn LogFile>>,
    offset: u64,
    segment_bytes: u64,
    durability: Durability,
    notify: Notify,
    spare: Option<SpareJob>,
    /// When the open segment was started (or reopened).
    segment_opened: Instant,
    written: Lsn,
    synced: Lsn,
    last_sync: Instant,
    wait: Duration,
}

impl Flusher {
    fn run(mut self) {
        let mut batch = Batch::default();
        loop {
            let timeout = match self.durability {
                Durability::Interval { ms } if self.written > self.synced => {
                    Some(Duration::from_millis(ms).saturating_sub(self.last_sync.elapsed()))
                }
                _ => None,
            };
            let taken = self.handoff.take(&mut batch, timeout);
            let mut result = match taken {
                Taken::Records => self.write_batch(&mut batch),
                Taken::Idle | Taken::Closed => Ok(()),
            };
            if result.is_ok() && taken == Taken::Records && self.durability == Durability::Always {
                let left = self.wait.saturating_sub(self.last_sync.elapsed());
                if !left.is_zero() {
                    self.handoff.gather(left);
                    if self.handoff.try_take(&mut batch) {
                        result = self.write_batch(&mut batch);
                    }
                }
            }
            let due = match self.durability {
                Durability::Always => true,
                Durability::Interval { ms } => {
                    self.last_sync.elapsed() >= Duration::from_millis(ms)
                }
                Durability::Never => false,
            };
            let result = result.and_then(|()| {
                if (due || taken == Taken::Closed) && self.written > self.synced {
                    self.sync()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = result {
                self.handoff
                    .poison(format!("log of shard {}: {e}", self.log.shard));
                (self.notify)();
                return;
            }
            self.handoff.publish(self.written, self.synced);
            (self.notify)();
            if taken == Taken::Closed {
                if let Some(spare) = self.spare.take() {
                    let _ = spare.finish();
                }
                let _ = std::fs::remove_file(self.dir.join(SPARE_SEGMENT_NAME));
                return;
            }
        }
    }

    fn write_batch(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        self.write(batch)?;
        self.written = batch.last_lsn;
        self.handoff.recycle(batch);
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let started = Instant::now();
        self.file.as_mut().expect("an open segment").sync_data()?;
        let stats = &self.handoff.stats;
        stats.syncs.add(1);
        stats.records_synced.add(self.written - self.synced);
        let us = started.elapsed().as_micros();
        stats
            .sync_latency
            .observe_n(u64::try_from(us).unwrap_or(u64::MAX), 1);
        self.synced = self.written;
        self.last_sync = started;
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> std::io::Result<()> {
        let mut start = 0;
        for roll in &batch.rolls {
            self.write_chunk(&batch.bytes[start..roll.at])?;
            // A recycled segment's old records must not follow the last new
            // one: the reader would find half a record there, and take it
            // for damage before a later segment.
            let rest = self.segment_bytes - self.offset;
            self.write_zeros(rest)?;
            // Everything before the new segment is synced before the new
            // segment gets a record, so a reader finding records in a later
            // segment knows the earlier ones are whole.
            self.written = roll.first_lsn - 1;
            self.sync()?;
            self.roll(*roll)?;
            start = roll.at;
        }
        self.write_chunk(&batch.bytes[start..])?;
        if batch.bytes.is_empty() {
            return Ok(());
        }
        // Ends the log cleanly where a recycled segment has old records
        // ahead: a zero record header reads as the end (`reader`). A cut
        // that loses it leaves those records after the last whole one,
        // which reads as a torn tail, as it is.
        let rest = self.segment_bytes - self.offset;
        self.write_zeros(rest.min(RECORD_HEADER_BYTES as u64))
    }

    /// Zeros at the write position, which stays where it is.
    fn write_zeros(&mut self, len: u64) -> std::io::Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        let file = self.file.as_mut().expect("an open segment");
        let mut at = self.offset;
        let mut left = len;
        while left > 0 {
            let n = left.min(ZEROS.len() as u64);
            file.write_at(&ZEROS[..n as usize], at)?;
            at += n;
            left -= n;
        }
        Ok(())
    }

    fn write_chunk(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        debug_assert!(self.offset + bytes.len() as u64 <= self.segment_bytes);
        self.file
            .as_mut()
            .expect("an open segment")
            .write_at(bytes, self.offset)?;
        self.offset += bytes.len() as u64;
        self.handoff.stats.bytes_written.add(bytes.len() as u64);
        Ok(())
    }

    /// Start a new segment for records from `roll.first_lsn`: the spare file
    /// gets its header, is synced, and only then takes its real name.
    fn roll(&mut self, roll: Roll) -> std::io::Result<()> {
        let spare_path = self.dir.join(SPARE_SEGMENT_NAME);
        let mut file = match self.spare.take() {
            Some(spare) => spare.finish()?,
            None => self
                .storage
                .create(&spare_path, self.segment_bytes, &Spread::default())?,
        };
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            log: self.log,
            first_lsn: roll.first_lsn,
            prev_crc: roll.prev_crc,
        };
        file.write_at(&header.encode(), 0)?;
        file.sync_data()?;
        self.storage
            .rename(&spare_path, &self.dir.join(segment_name(roll.first_lsn)))?;
        self.storage.sync_dir(&self.dir)?;
        self.file = Some(file);
        self.offset = SEGMENT_HEADER_BYTES as u64;
        let filled = self.segment_opened.elapsed();
        self.segment_opened = Instant::now();
        self.prepare_spare((filled / 2).min(Duration::from_millis(SPARE_SPREAD_MS_MAX)));
        Ok(())
    }

    /// Take a recycled segment as the next one if there is one; else
    /// start zeroing a new file on a helper thread, spread over `over`
    /// unless a rollover needs it sooner.
    fn prepare_spare(&mut self, over: Duration) {
        if self.spare.is_some() {
            return;
        }
        let path = self.dir.join(SPARE_SEGMENT_NAME);
        if let Some(file) = self.take_recycled(&path) {
            self.spare = Some(SpareJob::Recycled(file));
            return;
        }
        let storage = self.storage.clone();
        let len = self.segment_bytes;
        let spread = Spread {
            over,
            ..Spread::default()
        };
        let hurry = spread.hurry.clone();
        let thread = std::thread::spawn(move || storage.create(&path, len, &spread));
        self.spare = Some(SpareJob::Zeroing { thread, hurry });
    }

    /// The oldest recycled segment of this log's size, renamed to `spare`
    /// and opened. Its header is rewritten before it takes a segment's name
    /// (`roll`); its old records stay, below the new header's first LSN.
    /// One of another size (the segment size changed) is removed. Any
    /// failure leaves zero-filling a new file to do the job.
    fn take_recycled(&self, spare: &Path) -> Option<Box<dyn LogFile>> {
        for (_, path) in list_recycled(&self.dir).ok()? {
            let fits = std::fs::metadata(&path).is_ok_and(|m| m.len() == self.segment_bytes);
            if !fits {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            self.storage.rename(&path, spare).ok()?;
            return self.storage.open(spare).ok();
        }
        None
    }
}

/// The next segment: being zeroed by a helper thread, or a recycled one.
enum SpareJob {
    Zeroing {
        thread: JoinHandle<std::io::Result<Box<dyn LogFile>>>,
        hurry: Arc<AtomicBool>,
    },
    Recycled(Box<dyn LogFile>),
}

impl SpareJob {
    /// The spare segment, hurried along if it is still being written.
    fn finish(self) -> std::io::Result<Box<dyn LogFile>> {
        match self {
            SpareJob::Zeroing { thread, hurry } => {
                hurry.store(true, Ordering::Release);
                thread.thread().unpark();
                thread
                    .join()
                    .map_err(|_| std::io::Error::other("spare segment thread panicked"))?
            }
            SpareJob::Recycled(file) => Ok(file),
        }
    }
}
