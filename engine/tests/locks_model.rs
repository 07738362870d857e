//! Locks through the whole engine against a reference model: random
//! acquires (bound to a session or not), releases with the right token or
//! a stale one, renewals, sessions ending, time passing on a `ManualClock`,
//! fenced deposits on either shard, and restarts of a durable engine (from
//! the log, or from a checkpoint). After every step each lock's holders
//! and last token, and each account's balance, are what the model says:
//! at most one holder, tokens that only grow across restarts, every
//! fenced write from a stale token refused and none from the current one,
//! and every lease given its whole time again by a restart.

mod util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mercato_engine::command::{LockCommand, LockWait};
use mercato_engine::{Command, Config, Engine, ManualClock, Reply, Session};
use proptest::prelude::*;
use util::{TempDir, durable_config};

const NAMES: u8 = 4;
const SESSIONS: usize = 2;
const ACCOUNTS: u64 = 4;

#[derive(Clone, Debug)]
enum Op {
    Acquire {
        name: u8,
        session: usize,
        bind: bool,
        ttl: u64,
    },
    Release {
        name: u8,
        stale: bool,
    },
    Renew {
        name: u8,
        ttl: u64,
    },
    EndSession(usize),
    Later(u64),
    Fence {
        name: u8,
        back: u64,
        account: u64,
    },
    Restart {
        checkpoint: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NAMES, 0..SESSIONS, any::<bool>(), 1u64..80)
            .prop_map(|(name, session, bind, ttl)| Op::Acquire { name, session, bind, ttl }),
        3 => (0..NAMES, any::<bool>()).prop_map(|(name, stale)| Op::Release { name, stale }),
        1 => (0..NAMES, 1u64..80).prop_map(|(name, ttl)| Op::Renew { name, ttl }),
        1 => (0..SESSIONS).prop_map(Op::EndSession),
        3 => (1u64..50).prop_map(Op::Later),
        3 => (0..NAMES, 0u64..3, 0..ACCOUNTS).prop_map(|(name, back, account)| Op::Fence { name, back, account }),
        1 => any::<bool>().prop_map(|checkpoint| Op::Restart { checkpoint }),
    ]
}

/// A lease as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Held {
    token: u64,
    owner: u64,
    /// The model's session it is bound to, if any.
    bound: Option<usize>,
    ttl: u64,
    until: u64,
}

#[derive(Default)]
struct Model {
    held: Vec<Option<Held>>,
    last: Vec<u64>,
    balance: Vec<u64>,
}

impl Model {
    /// Leases past their end end, as the engine ends them before
    /// anything else touches their lock.
    fn expire(&mut self, name: usize, now: u64) {
        if self.held[name].is_some_and(|h| h.until <= now) {
            self.held[name] = None;
        }
    }
}

fn name(n: u8) -> Vec<u8> {
    format!("lock-{n}").into_bytes()
}

struct Live {
    engine: Engine,
    sessions: Vec<Option<Session>>,
}

impl Live {
    fn session(&mut self, s: usize) -> &Session {
        let h = self.engine.handle();
        self.sessions[s].get_or_insert_with(|| h.session())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_engine_keeps_the_lock_models_promises(ops in prop::collection::vec(op(), 1..50)) {
        let dir = TempDir::new("locks-model");
        let clock = Arc::new(ManualClock::new(1_000));
        let config = || Config {
            clock: clock.clone(),
            ..durable_config(&dir.0, 2)
        };
        let open = || Live {
            engine: Engine::open(config()).unwrap(),
            sessions: (0..SESSIONS).map(|_| None).collect(),
        };
        let mut live = open();
        let mut m = Model {
            held: vec![None; NAMES as usize],
            last: vec![0; NAMES as usize],
            balance: vec![0; ACCOUNTS as usize],
        };
        let mut now = 1_000;
        for op in ops {
            let h = live.engine.handle();
            match op {
                Op::Acquire { name: n, session, bind, ttl } => {
                    let sid = live.session(session).id();
                    let i = usize::from(n);
                    m.expire(i, now);
                    let cmd = LockCommand::Acquire {
                        name: name(n).into(),
                        owner: session as u64,
                        permits: 1,
                        ttl_ms: ttl,
                        wait: LockWait::Try,
                        session: Some(sid),
                        bind,
                    };
                    let got = h.call(Command::Lock(cmd)).unwrap();
                    match m.held[i] {
                        None => {
                            let token = m.last[i] + 1;
                            prop_assert_eq!(got, Ok(Reply::LockGranted { token, expires_at: now + ttl }));
                            m.last[i] = token;
                            m.held[i] = Some(Held { token, owner: session as u64, bound: bind.then_some(session), ttl, until: now + ttl });
                        }
                        Some(_) => prop_assert!(got.is_err(), "granted while held: {:?}", got),
                    }
                }
                Op::Release { name: n, stale } => {
                    let i = usize::from(n);
                    m.expire(i, now);
                    let token = match m.held[i] {
                        Some(h) if !stale => h.token,
                        _ => m.last[i].saturating_sub(1),
                    };
                    let ok = m.held[i].is_some_and(|h| h.token == token);
                    let r = h.lock_release(&name(n), token).unwrap();
                    prop_assert_eq!(r.is_ok(), ok, "release {} of {:?}: {:?}", token, m.held[i], r);
                    if ok {
                        m.held[i] = None;
                    }
                }
                Op::Renew { name: n, ttl } => {
                    let i = usize::from(n);
                    m.expire(i, now);
                    let token = m.held[i].map_or(m.last[i], |h| h.token);
                    let r = h.lock_renew(&name(n), token, ttl).unwrap();
                    match &mut m.held[i] {
                        Some(held) => {
                            prop_assert_eq!(r, Ok(now + ttl));
                            held.until = now + ttl;
                            held.ttl = ttl;
                        }
                        None => prop_assert!(r.is_err()),
                    }
                }
                Op::EndSession(s) => {
                    // Dropping it ends it on every shard, ahead of what
                    // this thread asks next.
                    live.sessions[s] = None;
                    for held in &mut m.held {
                        if held.is_some_and(|h| h.bound == Some(s)) {
                            *held = None;
                        }
                    }
                    // A bound lease of an ended session is a lease of
                    // nobody's now; the next session under this index is
                    // a new one.
                }
                Op::Later(ms) => {
                    clock.advance(ms);
                    now += ms;
                    for i in 0..NAMES as usize {
                        m.expire(i, now);
                    }
                    // The shards end due leases on their own; wait until
                    // they have.
                    let until = Instant::now() + Duration::from_secs(10);
                    loop {
                        let due = (0..NAMES).any(|n| match h.lock_inspect(&name(n)).unwrap() {
                            Ok(info) => info.holders.iter().any(|&(_, _, at)| at <= now),
                            Err(_) => false,
                        });
                        if !due {
                            break;
                        }
                        prop_assert!(Instant::now() < until, "a due lease never ended");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                Op::Fence { name: n, back, account } => {
                    let i = usize::from(n);
                    let token = m.last[i].saturating_sub(back);
                    let ok = token > 0 && token == m.last[i];
                    let r = h.fenced(&name(n), token, Command::Deposit { account, amount: 1 }).unwrap();
                    prop_assert_eq!(r.is_ok(), ok, "fence {} against {}: {:?}", token, m.last[i], r);
                    if ok {
                        m.balance[account as usize] += 1;
                    }
                }
                Op::Restart { checkpoint } => {
                    if checkpoint {
                        live.engine.checkpoint_now().unwrap();
                    }
                    // As a crash: no session says goodbye. Their bound
                    // leases outlive them and run out with their time.
                    for s in live.sessions.drain(..).flatten() {
                        std::mem::forget(s);
                    }
                    drop(h);
                    live.engine.shutdown();
                    live = open();
                    for held in m.held.iter_mut().flatten() {
                        held.bound = None;
                        held.until = held.until.max(now + held.ttl);
                    }
                }
            }
            // Compare every lock and balance with the model.
            let h = live.engine.handle();
            for n in 0..NAMES {
                let i = usize::from(n);
                match h.lock_inspect(&name(n)).unwrap() {
                    Ok(info) => {
                        prop_assert_eq!(info.last_token, m.last[i], "lock {}", n);
                        let live_holders: Vec<_> = info.holders.iter().filter(|&&(_, _, at)| at > now).copied().collect();
                        let want: Vec<_> = m.held[i].iter().map(|h| (h.token, h.owner, h.until)).collect();
                        prop_assert_eq!(live_holders, want, "lock {}", n);
                    }
                    Err(_) => prop_assert_eq!(m.last[i], 0, "lock {} unknown", n),
                }
            }
            for a in 0..ACCOUNTS {
                let balance = h.get_account(a).unwrap().map_or(0, |v| v.balance);
                prop_assert_eq!(balance, m.balance[a as usize], "account {}", a);
            }
        }
        live.engine.shutdown();
    }
}
