//! Cache traces: the OLTP trace of the ARC paper (Megiddo and Modha, FAST
//! 2003) from `../shared/traces/`, and synthetic Zipf and scan-heavy ones,
//! each expanded to one key per request.

use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;

/// Where the OLTP trace lives: `../shared/traces/` beside the repository.
pub fn oltp_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/OLTP.lis.zst")
}

/// The OLTP trace, one key per request (914,145 of them).
pub fn oltp() -> io::Result<Vec<u64>> {
    let file = std::fs::File::open(oltp_path())?;
    let decoder = ruzstd::decoding::StreamingDecoder::new(BufReader::new(file))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let mut keys = Vec::with_capacity(1 << 20);
    for line in BufReader::new(decoder).lines() {
        let line = line?;
        let mut fields = line.split_ascii_whitespace().map(str::parse::<u64>);
        let (Some(Ok(start)), Some(Ok(count))) = (fields.next(), fields.next()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a trace line: {line:?}"),
            ));
        };
        keys.extend(start..start + count);
    }
    Ok(keys)
}

/// `len` keys drawn from `0..keys` with Zipf exponent `s`, from a seed.
pub fn zipf(keys: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    // The inverse of the cumulative weights, searched by bisection.
    let mut cumulative = Vec::with_capacity(keys as usize);
    let mut total = 0.0;
    for rank in 1..=keys {
        total += 1.0 / (rank as f64).powf(s);
        cumulative.push(total);
    }
    let mut rng = SplitMix(seed);
    // Scatter ranks over the key space, so hot keys do not share a hash stripe.
    (0..len)
        .map(|_| {
            let u = rng.unit() * total;
            let rank = cumulative.partition_point(|&c| c < u) as u64;
            rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1
        })
        .collect()
}

/// A Zipf trace broken every `period` requests by a scan of `scan_len`
/// keys never seen before: what a catalogue export does to a product cache.
pub fn scan_heavy(keys: u64, len: usize, period: usize, scan_len: usize, seed: u64) -> Vec<u64> {
    let hot = zipf(keys, 0.9, len, seed);
    let mut out = Vec::with_capacity(len + len / period * scan_len);
    let mut fresh = u64::MAX / 2;
    for chunk in hot.chunks(period) {
        out.extend_from_slice(chunk);
        out.extend((0..scan_len as u64).map(|i| fresh + i));
        fresh += scan_len as u64;
    }
    out
}

/// A small, seeded generator, so traces are the same on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
