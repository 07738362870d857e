//! The log end to end on real files: round trips, rollover, torn tails at
//! every offset, flipped bits, foreign directories and injected disk faults.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mercato_wal::storage::{FaultyStorage, Storage};
use mercato_wal::{
    Corruption, Durability, Log, LogEnd, LogId, LogOptions, ReadOptions, SEGMENT_BYTES_MIN,
    WalError, list_segments, read_log,
};

const ID: LogId = LogId {
    shard: 1,
    shards: 3,
};
const REPAIR: ReadOptions = ReadOptions {
    from_lsn: 1,
    to_lsn: u64::MAX,
    repair: true,
};
const LOOK: ReadOptions = ReadOptions {
    from_lsn: 1,
    to_lsn: u64::MAX,
    repair: false,
};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("mercato-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn body(i: u64) -> Vec<u8> {
    // Varied lengths so records straddle every alignment.
    (0..(i % 97) as usize)
        .map(|j| (i as usize * 31 + j) as u8)
        .collect()
}

/// (kind, LSN, body) of each record read.
type Records = Vec<(u8, u64, Vec<u8>)>;

fn read_all(dir: &Path, opts: ReadOptions) -> Result<(Records, LogEnd), WalError> {
    let mut got = Vec::new();
    let end = read_log(
        dir,
        ID,
        opts,
        |r| {
            got.push((r.kind, r.lsn, r.body.to_vec()));
            Ok(())
        },
        |_| {},
    )?;
    Ok((got, end))
}

fn write(dir: &Path, n: u64, opts: LogOptions) -> LogEnd {
    let (_, end) = read_all(dir, REPAIR).unwrap();
    let mut log = Log::start(dir, ID, &end, opts, Arc::new(|| {})).unwrap();
    for i in end.next_lsn..end.next_lsn + n {
        assert_eq!(log.append((i % 5) as u8, &body(i)).unwrap(), i);
        if i % 10 == 0 {
            log.submit();
        }
    }
    log.close().unwrap();
    read_all(dir, LOOK).unwrap().1
}

fn expected(range: std::ops::Range<u64>) -> Records {
    range.map(|i| ((i % 5) as u8, i, body(i))).collect()
}

fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes: SEGMENT_BYTES_MIN,
        ..LogOptions::default()
    }
}

#[test]
fn records_round_trip_across_restarts() {
    let dir = TempDir::new("round-trip");
    write(&dir.0, 100, LogOptions::default());
    let end = write(&dir.0, 50, LogOptions::default());
    assert_eq!(end.next_lsn, 151);
    let (got, end) = read_all(&dir.0, LOOK).unwrap();
    assert_eq!(got, expected(1..151));
    assert_eq!(end.torn, None);
    let (tail, _) = read_all(
        &dir.0,
        ReadOptions {
            from_lsn: 120,
            to_lsn: u64::MAX,
            repair: false,
        },
    )
    .unwrap();
    assert_eq!(tail, expected(120..151));
}

#[test]
fn segments_roll_over_and_chain() {
    let dir = TempDir::new("rollover");
    // ~60 bytes a record, 128 KiB segments: several rollovers.
    write(&dir.0, 6_000, small_segments());
    let segments = list_segments(&dir.0).unwrap();
    assert!(segments.len() >= 3, "{} segments", segments.len());
    assert_eq!(segments[0].0, 1);
    write(&dir.0, 3_000, small_segments());
    let (got, _) = read_all(&dir.0, LOOK).unwrap();
    assert_eq!(got, expected(1..9_001));
}

/// The last segment's bytes and where its last record starts.
fn last_record(dir: &Path) -> (PathBuf, Vec<u8>, usize, usize) {
    let (_, end) = read_all(dir, LOOK).unwrap();
    let (path, stop) = end.tail.unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let len = body(end.next_lsn - 1).len();
    let frame = (24 + len).next_multiple_of(8);
    (path, bytes, stop as usize - frame, stop as usize)
}

#[test]
fn a_torn_last_record_is_cut_at_every_offset() {
    let dir = TempDir::new("torn");
    write(&dir.0, 20, small_segments());
    let (path, pristine, start, stop) = last_record(&dir.0);
    // Past the body there is only padding, which is zero anyway.
    let data_end = start + 24 + body(20).len();
    assert!(data_end <= stop);
    for cut in start..data_end {
        // Zeros after the cut, as in a preallocated file, and also a file
        // that simply ends there.
        for shorten in [false, true] {
            let mut bytes = pristine.clone();
            bytes[cut..].fill(0);
            if shorten {
                bytes.truncate(cut);
            }
            std::fs::write(&path, &bytes).unwrap();
            let (got, end) = read_all(&dir.0, REPAIR).unwrap();
            assert_eq!(got, expected(1..20), "cut at {cut}");
            let torn = cut > start;
            assert_eq!(end.torn.is_some(), torn, "cut at {cut}");
            if torn {
                assert_eq!(end.torn.as_ref().unwrap().offset, start as u64);
            }
            // The repaired log appends where the valid part stops.
            let mut log = Log::start(&dir.0, ID, &end, small_segments(), Arc::new(|| {})).unwrap();
            assert_eq!(log.append(0, &body(20)).unwrap(), 20);
            log.close().unwrap();
            let (got, end) = read_all(&dir.0, LOOK).unwrap();
            assert_eq!(got, expected(1..21), "cut at {cut}");
            assert_eq!(end.torn, None);
        }
    }
}

#[test]
fn a_flipped_bit_in_the_last_record_is_a_torn_tail() {
    let dir = TempDir::new("flip-last");
    write(&dir.0, 20, small_segments());
    let (path, pristine, start, stop) = last_record(&dir.0);
    for bit in start * 8..stop * 8 {
        let mut bytes = pristine.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &bytes).unwrap();
        let (got, end) = read_all(&dir.0, LOOK).unwrap();
        assert_eq!(got, expected(1..20), "bit {bit}");
        let torn = end.torn.expect("detected");
        assert_eq!((torn.path, torn.offset), (path.clone(), start as u64));
        // Looking did not repair anything.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn a_flipped_bit_in_a_middle_record_refuses_to_open() {
    let dir = TempDir::new("flip-middle");
    write(&dir.0, 20, small_segments());
    let (path, pristine, start, _) = last_record(&dir.0);
    // Somewhere inside records 1..19, every bit of a stretch of them.
    for bit in (64 * 8..start * 8).step_by(7) {
        let mut bytes = pristine.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&path, &bytes).unwrap();
        match read_all(&dir.0, REPAIR) {
            Err(WalError::Corrupt {
                path: p, offset, ..
            }) => {
                assert_eq!(p, path);
                assert!(offset >= 64 && (offset as usize) < start, "offset {offset}");
            }
            other => panic!("bit {bit}: {:?}", other.map(|(g, _)| g.len())),
        }
        // Refusing changed nothing.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}

#[test]
fn a_zeroed_middle_record_is_corruption_not_the_end() {
    let dir = TempDir::new("zeroed-middle");
    write(&dir.0, 20, small_segments());
    let (path, mut bytes, _, _) = last_record(&dir.0);
    bytes[64..64 + 24].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        read_all(&dir.0, LOOK),
        Err(WalError::Corrupt { offset: 64, .. })
    ));
}

#[test]
fn a_missing_middle_segment_is_corruption() {
    let dir = TempDir::new("gap");
    write(&dir.0, 6_000, small_segments());
    let segments = list_segments(&dir.0).unwrap();
    std::fs::remove_file(&segments[1].1).unwrap();
    assert!(matches!(
        read_all(&dir.0, LOOK),
        Err(WalError::Corrupt {
            what: Corruption::SegmentGap { .. },
            ..
        })
    ));
}

#[test]
fn a_log_of_another_shard_layout_is_refused() {
    let dir = TempDir::new("foreign");
    write(&dir.0, 3, LogOptions::default());
    let other = LogId {
        shard: 1,
        shards: 4,
    };
    let err = read_log(&dir.0, other, LOOK, |_| Ok(()), |_| {}).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::WrongLog {
                shards: 4,
                found_shards: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn durability_parses_and_rejects_nonsense() {
    assert_eq!("always".parse::<Durability>().unwrap(), Durability::Always);
    assert_eq!("never".parse::<Durability>().unwrap(), Durability::Never);
    assert_eq!(
        "interval=5".parse::<Durability>().unwrap(),
        Durability::Interval { ms: 5 }
    );
    for bad in [
        "",
        "sometimes",
        "interval=",
        "interval=0",
        "interval=99999999",
        "interval=-1",
    ] {
        assert!(bad.parse::<Durability>().is_err(), "{bad}");
    }
}

/// Appends until the flusher fails, then checks that the durable LSN never
/// passed what truly reached the disk, and that the log stays poisoned.
fn poisoned_by(setup: impl Fn(&FaultyStorage), name: &str) {
    let dir = TempDir::new(name);
    let storage = FaultyStorage::default();
    let opts = LogOptions {
        storage: Arc::new(storage.clone()) as Arc<dyn Storage>,
        ..small_segments()
    };
    let (_, end) = read_all(&dir.0, REPAIR).unwrap();
    let mut log = Log::start(&dir.0, ID, &end, opts, Arc::new(|| {})).unwrap();
    setup(&storage);
    let mut durable_seen = 0;
    for i in 1..=2_000u64 {
        log.append((i % 5) as u8, &body(i)).unwrap();
        log.submit();
        durable_seen = durable_seen.max(log.durable_lsn());
        if log.failure().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
    let err = log.close().unwrap_err();
    assert!(matches!(err, WalError::Poisoned(_)), "{err}");
    // Whatever was reported durable is on disk and reads back.
    let (got, _) = read_all(&dir.0, LOOK).unwrap();
    assert!(
        got.len() as u64 >= durable_seen,
        "{} < {durable_seen}",
        got.len()
    );
    assert_eq!(got, expected(1..got.len() as u64 + 1));
}

#[test]
fn a_failed_fsync_poisons_the_log() {
    poisoned_by(
        |s| {
            s.faults
                .fail_sync_at
                .store(s.faults.syncs() + 5, Ordering::SeqCst)
        },
        "eio",
    );
}

#[test]
fn a_short_write_poisons_the_log() {
    poisoned_by(
        |s| {
            s.faults
                .short_write_at
                .store(s.faults.writes() + 5, Ordering::SeqCst)
        },
        "short",
    );
}

#[test]
fn no_space_poisons_the_log() {
    poisoned_by(
        |s| {
            s.faults
                .no_space_at
                .store(s.faults.writes() + 5, Ordering::SeqCst)
        },
        "enospc",
    );
}
