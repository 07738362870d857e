//! The bytes on disk: segment headers and record frames.
//!
//! Every integer is little-endian with a fixed width. A segment is a
//! preallocated, zero-filled file: a 64-byte header, then records, each
//! starting at a multiple of 8, then zeros. A record is a 24-byte header and
//! its body:
//!
//! ```text
//! 0..4   body length (u32)
//! 4      kind (u8, chosen by the caller)
//! 5..8   zero
//! 8..16  LSN (u64; the first record is LSN 1, each next one adds 1)
//! 16..20 crc of the previous record (u32): the hash chain
//! 20..24 crc32c of bytes 0..20 and the body (u32)
//! ```
//!
//! The chain makes a record valid only after its own predecessor, so a stale
//! record that happens to survive where a newer one was torn is not mistaken
//! for part of the log.

use crate::error::Corruption;

/// Identifies a mercato log segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MRCTWAL\0";
/// Bumped whenever the layout of a segment, a record or a snapshot (its
/// trailer or the engine's archive inside it) changes. Version 2: a
/// snapshot's accounts no longer list their order ids. Version 3: lock
/// and saga records and a snapshot's table of them; two-phase records
/// naming their order; order and hold changes naming their lines.
pub const FORMAT_VERSION: u32 = 3;
pub const SEGMENT_HEADER_BYTES: usize = 64;
pub const RECORD_HEADER_BYTES: usize = 24;
/// Records start at offsets that are multiples of this, so that a scan for
/// valid records after a damaged one only has to try aligned offsets.
pub const RECORD_ALIGN_BYTES: usize = 8;
/// The largest body a record may have. An order of `order_lines_max` lines is
/// a few hundred bytes; this bound keeps one bad length field from making a
/// reader allocate or skip gigabytes.
pub const RECORD_BODY_BYTES_MAX: usize = 64 * 1024;

const _: () = assert!(SEGMENT_HEADER_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(RECORD_HEADER_BYTES % RECORD_ALIGN_BYTES == 0);

/// Log sequence number: the position of a record in its shard's log, from 1.
pub type Lsn = u64;

/// Which log a segment belongs to, written into every segment header and
/// checked against the opener's idea of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogId {
    pub shard: u16,
    pub shards: u16,
}

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u32,
    pub log: LogId,
    /// LSN of the first record the segment holds (or will hold).
    pub first_lsn: Lsn,
    /// Crc of the record before `first_lsn`, 0 at the start of the log; it
    /// carries the hash chain across segments, even once older ones are gone.
    pub prev_crc: u32,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..14].copy_from_slice(&self.log.shard.to_le_bytes());
        b[14..16].copy_from_slice(&self.log.shards.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[24..28].copy_from_slice(&self.prev_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[0..28]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, Corruption> {
        if b.len() < SEGMENT_HEADER_BYTES {
            return Err(Corruption::SegmentHeader);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(Corruption::SegmentMagic);
        }
        if crc32c::crc32c(&b[0..28]) != u32_at(b, 28) {
            return Err(Corruption::SegmentHeader);
        }
        Ok(SegmentHeader {
            version: u32_at(b, 8),
            log: LogId {
                shard: u16::from_le_bytes([b[12], b[13]]),
                shards: u16::from_le_bytes([b[14], b[15]]),
            },
            first_lsn: u64_at(b, 16),
            prev_crc: u32_at(b, 24),
        })
    }
}

/// Bytes a record with a body of `body_len` bytes takes, padding included.
pub fn frame_bytes(body_len: usize) -> usize {
    (RECORD_HEADER_BYTES + body_len).next_multiple_of(RECORD_ALIGN_BYTES)
}

/// Appends one framed record to `buf` and returns its crc, the next record's
/// `prev`. `buf`'s length must be a multiple of the alignment.
pub fn encode_record(buf: &mut Vec<u8>, kind: u8, lsn: Lsn, prev: u32, body: &[u8]) -> u32 {
    debug_assert!(body.len() <= RECORD_BODY_BYTES_MAX);
    debug_assert_eq!(buf.len() % RECORD_ALIGN_BYTES, 0);
    let start = buf.len();
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&[kind, 0, 0, 0]);
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.extend_from_slice(&prev.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[start..start + 20]), body);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.extend_from_slice(body);
    buf.resize(start + frame_bytes(body.len()), 0);
    crc
}

/// One record as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub kind: u8,
    pub lsn: Lsn,
    pub prev: u32,
    pub crc: u32,
    pub body: &'a [u8],
}

impl RecordRef<'_> {
    /// Bytes this record takes in its segment, padding included.
    pub fn frame_bytes(&self) -> usize {
        frame_bytes(self.body.len())
    }
}

/// Why the bytes at some offset are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotARecord {
    /// All zeros: the unwritten rest of a segment.
    Zeros,
    /// Something else: a torn or damaged record.
    Damaged,
}

/// Reads the record that starts at `b[0]`, checking its own length, padding
/// and crc (not its place in the chain, which only the caller knows).
pub fn decode_record(b: &[u8]) -> Result<RecordRef<'_>, NotARecord> {
    if b.len() < RECORD_HEADER_BYTES {
        return Err(if b.iter().all(|&x| x == 0) {
            NotARecord::Zeros
        } else {
            NotARecord::Damaged
        });
    }
    let header = &b[..RECORD_HEADER_BYTES];
    if header.iter().all(|&x| x == 0) {
        return Err(NotARecord::Zeros);
    }
    let len = u32_at(b, 0) as usize;
    if len > RECORD_BODY_BYTES_MAX || b[5..8] != [0, 0, 0] {
        return Err(NotARecord::Damaged);
    }
    let end = RECORD_HEADER_BYTES + len;
    if frame_bytes(len) > b.len() {
        return Err(NotARecord::Damaged);
    }
    let body = &b[RECORD_HEADER_BYTES..end];
    let crc = u32_at(b, 20);
    if crc32c::crc32c_append(crc32c::crc32c(&b[0..20]), body) != crc {
        return Err(NotARecord::Damaged);
    }
    if b[end..frame_bytes(len)].iter().any(|&x| x != 0) {
        return Err(NotARecord::Damaged);
    }
    Ok(RecordRef {
        kind: b[4],
        lsn: u64_at(b, 8),
        prev: u32_at(b, 16),
        crc,
        body,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_with_its_padding() {
        for len in [0usize, 1, 7, 8, 9, 100, RECORD_BODY_BYTES_MAX] {
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            let mut buf = Vec::new();
            let crc = encode_record(&mut buf, 9, 42, 0xdead_beef, &body);
            assert_eq!(buf.len(), frame_bytes(len));
            assert_eq!(buf.len() % RECORD_ALIGN_BYTES, 0);
            let r = decode_record(&buf).expect("valid");
            assert_eq!((r.kind, r.lsn, r.prev, r.crc), (9, 42, 0xdead_beef, crc));
            assert_eq!(r.body, &body[..]);
        }
    }

    #[test]
    fn every_flipped_bit_of_a_record_is_caught() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 3, 7, 11, b"seven bytes and then some");
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&bad).is_err(), "bit {bit} flipped unnoticed");
        }
    }

    #[test]
    fn zeros_are_the_end_not_damage() {
        assert_eq!(decode_record(&[0; 64]), Err(NotARecord::Zeros));
        assert_eq!(decode_record(&[0; 3]), Err(NotARecord::Zeros));
        assert_eq!(decode_record(&[1, 0, 0]), Err(NotARecord::Damaged));
    }

    #[test]
    fn a_segment_header_round_trips_and_checks_itself() {
        let h = SegmentHeader {
            version: FORMAT_VERSION,
            log: LogId {
                shard: 3,
                shards: 4,
            },
            first_lsn: 1234,
            prev_crc: 99,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        let mut bad = b;
        bad[17] ^= 1;
        assert_eq!(SegmentHeader::decode(&bad), Err(Corruption::SegmentHeader));
        let mut bad = b;
        bad[0] = b'X';
        assert_eq!(SegmentHeader::decode(&bad), Err(Corruption::SegmentMagic));
    }
}
