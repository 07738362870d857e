//! mercato's write-ahead log (not written yet; see the durability issue).
//!
//! This crate will hold a segmented, preallocated log per shard whose records
//! carry a length, a type, an LSN, the previous record's checksum and a crc32c;
//! group commit through a flusher thread that publishes the durable LSN; rkyv
//! snapshots loaded through memmap2; and recovery that truncates a torn tail and
//! refuses corruption. It knows bytes and LSNs, never orders: the engine's
//! `Journal` trait is where the two meet.
#![forbid(unsafe_code)]
