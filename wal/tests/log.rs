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

fn recycled_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("recycled-")
        })
        .count()
}

/// Segments a snapshot covers are kept and become the log's next segments
/// without being zero-filled; their old records read as the end of the log,
/// not as damage, and a record torn over them is cut as on a fresh file.
#[test]
fn recycled_segments_are_reused_and_their_old_records_end_the_log() {
    let dir = TempDir::new("recycled");
    write(&dir.0, 6_000, small_segments());
    let segments = list_segments(&dir.0).unwrap();
    assert!(segments.len() >= 4, "{} segments", segments.len());
    // A snapshot at the end of the second-to-last segment covers all but
    // the last: two are kept, the rest removed.
    let covered = segments.last().unwrap().0 - 1;
    let old_segment = std::fs::read(&segments[0].1).unwrap();
    let dropped = mercato_wal::snapshot::drop_covered(&dir.0, covered).unwrap();
    assert_eq!(dropped.segments, segments.len() - 1);
    assert_eq!(recycled_files(&dir.0), 2);
    assert_eq!(list_segments(&dir.0).unwrap().len(), 1);

    let from = ReadOptions {
        from_lsn: covered + 1,
        ..REPAIR
    };
    let (_, end) = read_all(&dir.0, from).unwrap();
    let mut log = Log::start(&dir.0, ID, &end, small_segments(), Arc::new(|| {})).unwrap();
    // Enough for one rollover into a recycled segment, which then holds
    // new records followed by old ones.
    let last = end.next_lsn + 2_500;
    for i in end.next_lsn..last {
        assert_eq!(log.append((i % 5) as u8, &body(i)).unwrap(), i);
    }
    log.close().unwrap();
    assert!(recycled_files(&dir.0) < 2, "a recycled segment was taken");
    let (got, end) = read_all(&dir.0, from).unwrap();
    assert_eq!(got, expected(covered + 1..last));
    assert_eq!(end.torn, None, "old records are the end, not a torn tail");
    let (path, stop) = end.tail.clone().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes[stop as usize..].iter().any(|&b| b != 0),
        "the last segment is a recycled one, old records after the new"
    );

    // A torn last record over old records: cut, and appending goes on.
    let frame = (24 + body(last - 1).len()).next_multiple_of(8);
    let start = stop as usize - frame;
    let mut torn = bytes.clone();
    torn[start + 20] ^= 0x40;
    std::fs::write(&path, &torn).unwrap();
    let (got, end) = read_all(&dir.0, from).unwrap();
    assert_eq!(got, expected(covered + 1..last - 1));
    assert_eq!(end.torn.as_ref().map(|t| t.offset), Some(start as u64));
    let mut log = Log::start(&dir.0, ID, &end, small_segments(), Arc::new(|| {})).unwrap();
    assert_eq!(log.append(0, &body(last - 1)).unwrap(), last - 1);
    log.close().unwrap();
    let (got, end) = read_all(&dir.0, from).unwrap();
    assert_eq!(got.len() as u64, last - 1 - covered);
    assert_eq!(end.torn, None);

    // A cut just after a rollover into a recycled segment: its new header
    // is on disk, then nothing but its old records. That is the end of the
    // log, not damage, and appending goes on there.
    let header = mercato_wal::format::SegmentHeader {
        version: mercato_wal::format::FORMAT_VERSION,
        log: ID,
        first_lsn: end.next_lsn,
        prev_crc: end.last_crc,
    };
    let mut rolled = old_segment;
    rolled[..header.encode().len()].copy_from_slice(&header.encode());
    let rolled_path = dir.0.join(mercato_wal::segment_name(end.next_lsn));
    std::fs::write(&rolled_path, &rolled).unwrap();
    let (again, after) = read_all(&dir.0, from).unwrap();
    assert_eq!(again, got);
    assert_eq!((after.next_lsn, after.torn), (end.next_lsn, None));
    assert_eq!(after.tail, Some((rolled_path.clone(), 64)));
    // The same cut with the record before it torn: a torn tail still, since
    // the later segment holds no record of its own life.
    let (path, stop) = end.tail.clone().unwrap();
    let start = stop as usize - (24 + body(end.next_lsn - 1).len()).next_multiple_of(8);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[start + 20] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (cut, torn) = read_all(
        &dir.0,
        ReadOptions {
            repair: false,
            ..from
        },
    )
    .unwrap();
    assert_eq!(cut.len(), got.len() - 1);
    assert_eq!(torn.torn.map(|t| t.offset), Some(start as u64));
}

/// Power cuts through a log that rolls into recycled segments, at syncs
/// spread over the whole run (rollovers included): every record synced
/// before the cut survives, what follows is a clean or torn end and never
/// damage, and the log carries on from there.
#[test]
fn power_cuts_over_recycled_segments_keep_every_synced_record() {
    use mercato_wal::power_loss::PowerLossStorage;
    let mut used_recycled = 0;
    for i in 0..24u64 {
        let dir = TempDir::new(&format!("recycled-cut-{i}"));
        // Old lives of different lengths, so that new records end a
        // recycled segment at places where its old records did not.
        write(&dir.0, 6_000 + i * 37, small_segments());
        let covered = list_segments(&dir.0).unwrap().last().unwrap().0 - 1;
        mercato_wal::snapshot::drop_covered(&dir.0, covered).unwrap();
        let from = ReadOptions {
            from_lsn: covered + 1,
            ..REPAIR
        };
        let (_, end) = read_all(&dir.0, from).unwrap();
        let storage = Arc::new(PowerLossStorage::new(1 + i * 9, i));
        let opts = LogOptions {
            storage: storage.clone(),
            ..small_segments()
        };
        let mut log = Log::start(&dir.0, ID, &end, opts, Arc::new(|| {})).unwrap();
        let mut synced = end.next_lsn - 1;
        for lsn in end.next_lsn..end.next_lsn + 5_000 {
            if log.append((lsn % 5) as u8, &body(lsn)).is_err() {
                break;
            }
            if lsn % 10 == 0 {
                log.submit();
                synced = synced.max(log.durable_lsn());
            }
        }
        let _ = log.close();
        storage.cut_now();
        storage.apply().unwrap();
        used_recycled += usize::from(recycled_files(&dir.0) < 2);
        let (got, after) =
            read_all(&dir.0, from).unwrap_or_else(|e| panic!("cut at sync {}: {e}", 1 + i * 9));
        assert!(
            after.next_lsn > synced,
            "cut at sync {}: synced to {synced}, recovered to {}",
            1 + i * 9,
            after.next_lsn - 1
        );
        assert_eq!(got, expected(covered + 1..after.next_lsn));
        // And the log goes on from there.
        let mut log = Log::start(&dir.0, ID, &after, small_segments(), Arc::new(|| {})).unwrap();
        assert_eq!(
            log.append(0, &body(after.next_lsn)).unwrap(),
            after.next_lsn
        );
        log.close().unwrap();
        let (again, _) = read_all(&dir.0, from).unwrap();
        assert_eq!(again.len(), got.len() + 1);
    }
    assert!(used_recycled > 0, "no run reached a recycled segment");
}
