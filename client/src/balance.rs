//! Choosing a shard for a read: the [`Balancer`] policies and passive health.
//!
//! Writes always go to their owner. A read that any shard can serve goes to
//! the shard a balancer picks among those that are up. Policies see each
//! shard's weight and its requests outstanding from this client; they keep
//! whatever state they need themselves, so one client shares one balancer
//! behind a lock.

/// What a balancer knows of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Relative share of reads; 0 takes none.
    pub weight: u32,
    /// Requests this client has sent it and not yet had answered.
    pub outstanding: u32,
    /// Passive health says it may be used.
    pub up: bool,
}

impl Peer {
    fn usable(&self) -> bool {
        self.up && self.weight > 0
    }
}

/// Picks the shard for the next read, or `None` when none is usable.
pub trait Balancer: Send {
    fn pick(&mut self, peers: &[Peer]) -> Option<usize>;
}

/// A small xorshift generator: the balancer needs speed and spread, not
/// unpredictability.
#[derive(Clone, Debug)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((u128::from(self.0) * n as u128) >> 64) as usize
    }
}

fn usable(peers: &[Peer]) -> impl Iterator<Item = usize> + '_ {
    peers
        .iter()
        .enumerate()
        .filter(|(_, p)| p.usable())
        .map(|(i, _)| i)
}

/// Uniformly at random among usable shards, ignoring weights.
#[derive(Clone, Debug)]
pub struct Random(XorShift);

impl Random {
    pub fn new(seed: u64) -> Self {
        Random(XorShift::new(seed))
    }
}

impl Balancer for Random {
    fn pick(&mut self, peers: &[Peer]) -> Option<usize> {
        let n = usable(peers).count();
        if n == 0 {
            return None;
        }
        usable(peers).nth(self.0.below(n))
    }
}

/// Each usable shard in turn, ignoring weights.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl Balancer for RoundRobin {
    fn pick(&mut self, peers: &[Peer]) -> Option<usize> {
        let n = peers.len();
        for step in 0..n {
            let i = (self.next + step) % n;
            if peers[i].usable() {
                self.next = i + 1;
                return Some(i);
            }
        }
        None
    }
}

/// nginx's smooth weighted round-robin: every pick adds each usable shard's
/// weight to its current value, takes the largest, and takes the total of
/// the weights back off the winner. Over any window a shard's share follows
/// its weight, and a heavy shard's picks are spread out rather than bunched:
/// weights {5, 1, 1} give a a b a c a a.
#[derive(Clone, Debug, Default)]
pub struct SmoothWeighted {
    current: Vec<i64>,
}

impl Balancer for SmoothWeighted {
    fn pick(&mut self, peers: &[Peer]) -> Option<usize> {
        self.current.resize(peers.len(), 0);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in usable(peers) {
            let w = i64::from(peers[i].weight);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}

/// The usable shard with the fewest outstanding requests per unit of
/// weight; ties go to the lower index.
#[derive(Clone, Debug, Default)]
pub struct LeastOutstanding;

fn less_loaded(a: &Peer, b: &Peer) -> bool {
    // a.outstanding / a.weight < b.outstanding / b.weight, without division.
    u64::from(a.outstanding) * u64::from(b.weight) < u64::from(b.outstanding) * u64::from(a.weight)
}

impl Balancer for LeastOutstanding {
    fn pick(&mut self, peers: &[Peer]) -> Option<usize> {
        usable(peers).fold(None, |best, i| match best {
            Some(b) if !less_loaded(&peers[i], &peers[b]) => Some(b),
            _ => Some(i),
        })
    }
}

/// Power of two choices: two usable shards at random, the less loaded of
/// them. Nearly as good as least-outstanding, without looking at every shard
/// and without every client herding onto the same one.
#[derive(Clone, Debug)]
pub struct PowerOfTwo(XorShift);

impl PowerOfTwo {
    pub fn new(seed: u64) -> Self {
        PowerOfTwo(XorShift::new(seed))
    }
}

impl Balancer for PowerOfTwo {
    fn pick(&mut self, peers: &[Peer]) -> Option<usize> {
        let n = usable(peers).count();
        match n {
            0 => None,
            1 => usable(peers).next(),
            _ => {
                let a = self.0.below(n);
                let b = (a + 1 + self.0.below(n - 1)) % n;
                let a = usable(peers).nth(a)?;
                let b = usable(peers).nth(b)?;
                Some(if less_loaded(&peers[b], &peers[a]) {
                    b
                } else {
                    a
                })
            }
        }
    }
}

/// The balancing policies a [`ClientConfig`](crate::ClientConfig) can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Random,
    RoundRobin,
    SmoothWeighted,
    LeastOutstanding,
    PowerOfTwo,
}

impl Policy {
    pub fn balancer(self, seed: u64) -> Box<dyn Balancer> {
        match self {
            Policy::Random => Box::new(Random::new(seed)),
            Policy::RoundRobin => Box::<RoundRobin>::default(),
            Policy::SmoothWeighted => Box::<SmoothWeighted>::default(),
            Policy::LeastOutstanding => Box::new(LeastOutstanding),
            Policy::PowerOfTwo => Box::new(PowerOfTwo::new(seed)),
        }
    }
}

/// Each policy under the name flags and config files give it.
const POLICY_NAMES: [(&str, Policy); 5] = [
    ("random", Policy::Random),
    ("round-robin", Policy::RoundRobin),
    ("smooth-weighted", Policy::SmoothWeighted),
    ("least-outstanding", Policy::LeastOutstanding),
    ("power-of-two", Policy::PowerOfTwo),
];

impl std::str::FromStr for Policy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match POLICY_NAMES.iter().find(|(name, _)| *name == s) {
            Some(&(_, policy)) => Ok(policy),
            None => {
                let names: Vec<&str> = POLICY_NAMES.iter().map(|(name, _)| *name).collect();
                Err(format!(
                    "unknown balancing policy {s:?}: one of {}",
                    names.join(", ")
                ))
            }
        }
    }
}

/// The weight a shard gets from the load it reports in its answers: the
/// less it has queued, the more reads it gets. Never 0, so a busy shard
/// still gets some and keeps reporting.
pub fn weight_from_load(load: u32) -> u32 {
    (1_000 / load.saturating_add(1)).max(1)
}

/// Passive health, as nginx's `max_fails` and `fail_timeout`: a shard that
/// fails `max_fails` times within `fail_timeout_ms` is left alone for
/// `fail_timeout_ms`, then tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub max_fails: u32,
    pub fail_timeout_ms: u64,
    fails: u32,
    window_started_ms: u64,
    down_until_ms: u64,
}

impl Health {
    pub fn new(max_fails: u32, fail_timeout_ms: u64) -> Self {
        Health {
            max_fails,
            fail_timeout_ms,
            fails: 0,
            window_started_ms: 0,
            down_until_ms: 0,
        }
    }

    pub fn is_up(&self, now_ms: u64) -> bool {
        self.max_fails == 0 || now_ms >= self.down_until_ms
    }

    pub fn success(&mut self) {
        self.fails = 0;
    }

    pub fn failure(&mut self, now_ms: u64) {
        if self.max_fails == 0 {
            return;
        }
        if now_ms.saturating_sub(self.window_started_ms) >= self.fail_timeout_ms {
            self.fails = 0;
            self.window_started_ms = now_ms;
        }
        self.fails += 1;
        if self.fails >= self.max_fails {
            self.down_until_ms = now_ms + self.fail_timeout_ms;
            self.fails = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(weights: &[u32]) -> Vec<Peer> {
        weights
            .iter()
            .map(|&weight| Peer {
                weight,
                outstanding: 0,
                up: true,
            })
            .collect()
    }

    fn picks(b: &mut dyn Balancer, p: &[Peer], n: usize) -> Vec<usize> {
        (0..n).map(|_| b.pick(p).unwrap()).collect()
    }

    #[test]
    fn smooth_weighted_gives_nginx_sequence() {
        let mut b = SmoothWeighted::default();
        let seq: String = picks(&mut b, &peers(&[5, 1, 1]), 14)
            .into_iter()
            .map(|i| (b'a' + i as u8) as char)
            .collect();
        assert_eq!(seq, "aabacaaaabacaa");
    }

    #[test]
    fn smooth_weighted_follows_weights_and_skips_the_down() {
        let mut b = SmoothWeighted::default();
        let mut p = peers(&[3, 2, 0, 1]);
        let mut count = [0; 4];
        for i in picks(&mut b, &p, 600) {
            count[i] += 1;
        }
        assert_eq!(count, [300, 200, 0, 100]);
        p[0].up = false;
        assert!(picks(&mut b, &p, 30).iter().all(|&i| i != 0 && i != 2));
    }

    #[test]
    fn round_robin_cycles_over_the_usable() {
        let mut b = RoundRobin::default();
        let mut p = peers(&[1, 1, 1]);
        assert_eq!(picks(&mut b, &p, 6), vec![0, 1, 2, 0, 1, 2]);
        p[1].up = false;
        assert_eq!(picks(&mut b, &p, 4), vec![0, 2, 0, 2]);
        p[0].up = false;
        p[2].up = false;
        assert_eq!(b.pick(&p), None);
    }

    #[test]
    fn least_outstanding_weighs_by_weight() {
        let mut p = peers(&[1, 2, 1]);
        p[0].outstanding = 3;
        p[1].outstanding = 5; // 2.5 per unit of weight
        p[2].outstanding = 3;
        assert_eq!(LeastOutstanding.pick(&p), Some(1));
        p[1].outstanding = 6; // 3 per unit: a tie goes to the lowest index
        assert_eq!(LeastOutstanding.pick(&p), Some(0));
    }

    #[test]
    fn power_of_two_prefers_the_less_loaded_and_spreads() {
        let mut b = PowerOfTwo::new(7);
        let mut p = peers(&[1, 1, 1, 1]);
        p[3].outstanding = 100;
        let mut count = [0; 4];
        for i in picks(&mut b, &p, 4_000) {
            count[i] += 1;
        }
        // Shard 3 wins only when drawn against itself, which never happens.
        assert_eq!(count[3], 0);
        assert!(count[..3].iter().all(|&c| c > 1_000), "{count:?}");
    }

    #[test]
    fn random_stays_among_the_usable() {
        let mut b = Random::new(3);
        let mut p = peers(&[1, 1, 1]);
        p[1].up = false;
        let got = picks(&mut b, &p, 1_000);
        assert!(got.iter().all(|&i| i != 1));
        assert!(got.contains(&0) && got.contains(&2));
    }

    #[test]
    fn health_takes_a_failing_shard_out_for_a_while() {
        let mut h = Health::new(3, 1_000);
        h.failure(10);
        h.failure(20);
        assert!(h.is_up(30));
        h.failure(30);
        assert!(!h.is_up(31) && !h.is_up(1_029));
        assert!(h.is_up(1_030));
        // Failures spread wider than the window do not add up.
        let mut h = Health::new(2, 100);
        h.failure(0);
        h.failure(150);
        assert!(h.is_up(151));
        // A success clears the count.
        let mut h = Health::new(2, 100);
        h.failure(200);
        h.success();
        h.failure(210);
        assert!(h.is_up(211));
        h.failure(220);
        assert!(!h.is_up(221));
    }

    #[test]
    fn load_turns_into_weight() {
        assert_eq!(weight_from_load(0), 1_000);
        assert!(weight_from_load(10) > weight_from_load(100));
        assert_eq!(weight_from_load(u32::MAX), 1);
    }

    #[test]
    fn policies_parse_by_name_and_unknown_names_are_refused() {
        let names = [
            "random",
            "round-robin",
            "smooth-weighted",
            "least-outstanding",
            "power-of-two",
        ];
        let parsed: Vec<Policy> = names.iter().map(|n| n.parse().unwrap()).collect();
        assert_eq!(parsed[1], Policy::RoundRobin);
        assert_eq!(parsed[4], Policy::PowerOfTwo);
        let up = peers(&[1, 1]);
        for p in parsed {
            assert!(p.balancer(7).pick(&up).is_some_and(|i| i < 2), "{p:?}");
        }
        let err = "fastest".parse::<Policy>().unwrap_err();
        assert!(
            err.contains("unknown balancing policy \"fastest\""),
            "{err}"
        );
    }
}
