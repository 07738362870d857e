//! Synthetic shop workloads shared by `mercato demo` and `mercato-load`:
//! a small fast RNG, a Zipf sampler, bulk catalog loading, and a latency
//! recorder. Kept in the engine so both binaries drive it the same way.

use std::time::Instant;

use crate::command::Command;
use crate::limits::BATCH_LEN_MAX;
use crate::runtime::Handle;

/// xorshift64*: fast, seedable, good enough to pick ids.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Through splitmix so nearby seeds give unrelated streams; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf over ranks `1..=n` with exponent `s`, sampled in constant time by
/// rejection-inversion (Hörmann and Derflinger, 1996), so a million-SKU
/// catalog needs no million-entry table.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    cut: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Self {
        assert!(n >= 1 && s > 0.0);
        let mut z = Zipf {
            n: n as f64,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            cut: 0.0,
        };
        z.h_x1 = z.big_h(1.5) - 1.0;
        z.h_n = z.big_h(z.n + 0.5);
        z.cut = 2.0 - z.big_h_inv(z.big_h(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    /// An antiderivative of `h`, written so it stays exact as `s` nears 1.
    fn big_h(&self, x: f64) -> f64 {
        let lx = x.ln();
        expm1_over_x((1.0 - self.s) * lx) * lx
    }

    fn big_h_inv(&self, x: f64) -> f64 {
        let t = (x * (1.0 - self.s)).max(-1.0);
        (log1p_over_x(t) * x).exp()
    }

    /// A rank in `1..=n`; rank 1 is the most popular.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        loop {
            let u = self.h_n + rng.unit() * (self.h_x1 - self.h_n);
            let x = self.big_h_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.cut || u >= self.big_h(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

fn expm1_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x / 3.0)
    }
}

fn log1p_over_x(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x / 3.0)
    }
}

/// Run commands in full batches from `threads` threads, calling `tick` with
/// the number done after each batch. Fails on the first rejection: loading a
/// catalog must succeed entirely.
pub fn load(
    h: &Handle,
    threads: usize,
    total: u64,
    make: impl Fn(u64) -> Command + Sync,
    tick: impl Fn(u64) + Sync,
) -> Result<(), String> {
    let per = total.div_ceil(threads as u64);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (h, make, tick) = (h.clone(), &make, &tick);
                s.spawn(move || -> Result<(), String> {
                    let (from, to) = (t * per, ((t + 1) * per).min(total));
                    let mut i = from;
                    while i < to {
                        let end = (i + BATCH_LEN_MAX as u64 / 4).min(to);
                        let batch: Vec<Command> = (i..end).map(make).collect();
                        for answer in h.submit_waiting(batch).map_err(|e| e.to_string())? {
                            answer.map_err(|r| format!("loading failed: {r}"))?;
                        }
                        tick(end - i);
                        i = end;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| "a loader panicked".to_string())?)
    })
}

/// Per-request latency in microseconds.
pub struct Latency {
    pub hist: hdrhistogram::Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            hist: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }
}

impl Latency {
    /// Every request of a batch waited for the whole batch.
    pub fn record_batch(&mut self, started: Instant, requests: u64) {
        let us = started.elapsed().as_micros().clamp(1, 60_000_000) as u64;
        let _ = self.hist.record_n(us, requests);
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.hist.add(&other.hist);
    }

    pub fn p(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }
}

/// A count from the environment variable `name`, else `default`: how the
/// crash and power-loss tests take their long modes.
pub fn env_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A seed from the environment variable `name`, to replay a run, else one
/// from the clock; the caller prints it so a failure can be replayed.
pub fn env_seed(name: &str) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_matches_its_distribution() {
        let (n, s) = (1000u64, 0.99);
        let z = Zipf::new(n, s);
        let mut rng = Rng::new(7);
        let draws = 400_000;
        let mut counts = vec![0u64; n as usize + 1];
        for _ in 0..draws {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k));
            counts[k as usize] += 1;
        }
        let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for k in [1u64, 2, 10, 100] {
            let want = draws as f64 * (k as f64).powf(-s) / norm;
            let got = counts[k as usize] as f64;
            assert!(
                (got - want).abs() < 0.05 * want + 30.0,
                "rank {k}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn rng_below_stays_in_range() {
        let mut r = Rng::new(1);
        assert!((0..10_000).all(|_| r.below(3) < 3));
        let mean: f64 = (0..10_000).map(|_| r.unit()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
