use super::*;
use proptest::prelude::*;

/// Names 0 to 2 are locks; name 3 is a semaphore of two permits.
const NAMES: u8 = 4;

fn permits_of(name: u8) -> u32 {
    if name == 3 { 2 } else { 1 }
}

#[derive(Clone, Debug)]
enum Op {
    Acquire {
        name: u8,
        owner: u64,
        session: u64,
        bind: bool,
        ttl: u64,
        wait: u8,
    },
    Release {
        name: u8,
        stale: bool,
    },
    Renew {
        name: u8,
        ttl: u64,
    },
    Cancel,
    Later(u64),
    EndSession(u64),
    Fence {
        name: u8,
        back: u64,
    },
    /// A restart: the durable state only, through its image, then every
    /// lease renewed for its whole time.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NAMES, 0u64..4, 0u64..3, any::<bool>(), 1u64..50, 0u8..3)
            .prop_map(|(name, owner, session, bind, ttl, wait)| Op::Acquire { name, owner, session, bind, ttl, wait }),
        3 => (0..NAMES, any::<bool>()).prop_map(|(name, stale)| Op::Release { name, stale }),
        1 => (0..NAMES, 1u64..50).prop_map(|(name, ttl)| Op::Renew { name, ttl }),
        1 => Just(Op::Cancel),
        3 => (1u64..30).prop_map(Op::Later),
        1 => (0u64..3).prop_map(Op::EndSession),
        2 => (0..NAMES, 0u64..3).prop_map(|(name, back)| Op::Fence { name, back }),
        1 => Just(Op::Restart),
    ]
}

/// A lock as the model sees it: its holders (token, owner, until), the
/// last token, and the waiters' tickets in order.
#[derive(Default)]
struct Model {
    holders: Vec<(u64, u64, TimestampMs)>,
    last: u64,
    queue: Vec<u64>,
}

proptest! {
    /// Random acquires (try, bounded and unbounded waits, bound to their
    /// session or not), releases with the right token and stale ones,
    /// renewals, cancels, time, ended sessions, fences and restarts,
    /// checked step by step: never more holders than permits, tokens
    /// strictly increasing, waiters served first come first served, stale
    /// tokens refused with nothing changed, and the records alone
    /// rebuilding the durable state.
    #[test]
    fn locks_keep_their_promises(ops in prop::collection::vec(op(), 1..300)) {
        let mut locks = Locks::default();
        let mut replayed = Locks::default();
        let mut models: Vec<Model> = (0..NAMES).map(|_| Model::default()).collect();
        // Each waiting ticket's name and session.
        let mut waiting: IdMap<u64, (u8, u64)> = IdMap::default();
        let mut now = 1_000;
        let mut ticket = 0;
        for op in ops {
            let mut out = LockOut::default();
            match op {
                Op::Acquire { name, owner, session, bind, ttl, wait } => {
                    ticket += 1;
                    let wait = match wait { 0 => Wait::Try, 1 => Wait::Until(now + 20), _ => Wait::Forever };
                    let owner = Owner { id: owner, conn: Some(session), bind };
                    let req = Acquire { owner, permits: permits_of(name), ttl_ms: ttl, wait, ticket };
                    match locks.acquire(&[name], req, now, &mut out) {
                        Ok(Some((_, until))) => prop_assert_eq!(until, now + ttl),
                        Ok(None) => {
                            prop_assert!(wait != Wait::Try);
                            waiting.insert(ticket, (name, session));
                            models[usize::from(name)].queue.push(ticket);
                        }
                        Err(LockError::Busy { .. }) => prop_assert_eq!(wait, Wait::Try),
                        Err(e) => prop_assert!(false, "acquire refused: {e}"),
                    }
                }
                Op::Release { name, stale } => {
                    let m = &models[usize::from(name)];
                    let token = match m.holders.first() {
                        Some(h) if !stale => h.0,
                        _ => m.last.saturating_sub(1),
                    };
                    let held = m.holders.iter().any(|h| h.0 == token && h.2 > now);
                    let before = locks.durable();
                    let r = locks.release(&[name], token, now, &mut out);
                    if held {
                        prop_assert!(r.is_ok(), "{r:?}");
                    } else {
                        prop_assert!(r.is_err());
                        // A refusal changes nothing, beyond leases that
                        // ran out on their own.
                        if out.records.is_empty() {
                            prop_assert_eq!(before, locks.durable());
                        }
                    }
                }
                Op::Renew { name, ttl } => {
                    let m = &models[usize::from(name)];
                    if let Some(&(token, _, until)) = m.holders.first() && until > now {
                        prop_assert_eq!(locks.renew(&[name], token, ttl, now, &mut out), Ok(now + ttl));
                    } else if !m.holders.iter().any(|h| h.2 > now) {
                        prop_assert!(locks.renew(&[name], m.last, ttl, now, &mut out).is_err());
                    }
                }
                Op::Cancel => {
                    if let Some((&t, &(name, _))) = waiting.iter().min_by_key(|(t, _)| **t) {
                        prop_assert_eq!(locks.cancel(&[name], t, now, &mut out), Ok(()));
                        waiting.remove(&t);
                        models[usize::from(name)].queue.retain(|&q| q != t);
                    }
                    prop_assert_eq!(locks.cancel(&[0], u64::MAX, now, &mut out).is_err(), true);
                }
                Op::Later(ms) => {
                    now += ms;
                    locks.tick(now, &mut out);
                }
                Op::EndSession(s) => {
                    // Its waiters leave without a word.
                    waiting.retain(|t, (name, session)| {
                        let mine = *session == s;
                        if mine {
                            models[usize::from(*name)].queue.retain(|q| q != t);
                        }
                        !mine
                    });
                    locks.end_session(s, now, &mut out);
                }
                Op::Fence { name, back } => {
                    let m = &models[usize::from(name)];
                    let token = m.last.saturating_sub(back);
                    let ok = locks.check_fence(&[name], token).is_ok();
                    let expected = if permits_of(name) == 1 {
                        token == m.last && m.last > 0
                    } else {
                        m.holders.iter().any(|h| h.0 == token)
                    };
                    prop_assert_eq!(ok, expected, "fence {} against last {}", token, m.last);
                }
                Op::Restart => {
                    // Waits are answered never: their callers hear the
                    // connection close and retry.
                    for m in &mut models {
                        m.queue.clear();
                    }
                    waiting.clear();
                    let mut fresh = Locks::default();
                    for r in locks.image() {
                        fresh.restore(&r);
                    }
                    locks = fresh;
                    locks.restart(now, &mut out);
                }
            }
            // Fold what happened into the models, in order.
            for r in &out.records {
                replayed.apply(r);
                match r {
                    LockRecord::Granted { name, token, expires_at, owner, permits, .. } => {
                        let m = &mut models[usize::from(name[0])];
                        prop_assert!(*token > m.last, "tokens strictly increase");
                        prop_assert!(m.holders.len() < *permits as usize, "more holders than permits");
                        m.last = *token;
                        m.holders.push((*token, *owner, *expires_at));
                    }
                    LockRecord::Renewed { name, token, expires_at, .. } => {
                        let m = &mut models[usize::from(name[0])];
                        let h = m.holders.iter_mut().find(|h| h.0 == *token);
                        prop_assert!(h.is_some(), "renewed a lease nobody holds");
                        h.unwrap().2 = *expires_at;
                    }
                    LockRecord::Ended { name, token } => {
                        let m = &mut models[usize::from(name[0])];
                        let at = m.holders.iter().position(|h| h.0 == *token);
                        prop_assert!(at.is_some(), "ended a lease nobody holds");
                        m.holders.remove(at.unwrap());
                    }
                    LockRecord::Known { .. } => prop_assert!(false, "Known is for snapshots"),
                }
            }
            let ended: Vec<u64> = (out.notices.iter())
                .filter_map(|(_, n)| match n { Notice::WaitEnded { ticket, .. } => Some(*ticket), _ => None })
                .collect();
            for (_, n) in &out.notices {
                match n {
                    Notice::Granted { ticket: t, token, .. } => {
                        let (name, _) = waiting.remove(t).expect("a waiting ticket");
                        let m = &mut models[usize::from(name)];
                        // First come, first served: every ticket ahead of
                        // it left the queue.
                        let at = m.queue.iter().position(|q| q == t).expect("queued");
                        prop_assert!(m.queue[..at].iter().all(|q| ended.contains(q)), "served out of order");
                        m.queue.drain(..=at);
                        prop_assert!(m.holders.iter().any(|h| h.0 == *token));
                    }
                    Notice::WaitEnded { ticket: t, .. } => {
                        if let Some((name, _)) = waiting.remove(t) {
                            models[usize::from(name)].queue.retain(|q| q != t);
                        }
                    }
                    Notice::Lost { name, token, .. } => {
                        prop_assert!(!models[usize::from(name[0])].holders.iter().any(|h| h.0 == *token));
                    }
                }
            }
            for (i, m) in models.iter().enumerate() {
                let seen = locks.inspect(&[i as u8], now).ok();
                let mut holders: Vec<_> = m.holders.clone();
                holders.sort_unstable();
                prop_assert_eq!(seen.as_ref().map_or(vec![], |s| s.holders.clone()), holders);
                prop_assert_eq!(seen.map_or(0, |s| s.waiters), m.queue.len());
            }
            if !matches!(op, Op::Restart) {
                prop_assert_eq!(replayed.durable(), locks.durable(), "the records rebuild the state");
            } else {
                replayed = locks.clone();
            }
        }
    }
}

fn req(ttl_ms: u64, wait: Wait, ticket: u64) -> Acquire {
    Acquire {
        owner: Owner {
            id: 1,
            conn: Some(1),
            bind: false,
        },
        permits: 1,
        ttl_ms,
        wait,
        ticket,
    }
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut locks = Locks::default();
    let mut out = LockOut::default();
    let long = vec![b'x'; LOCK_NAME_BYTES_MAX + 1];
    let refused = [
        (
            locks.acquire(&long, req(10, Wait::Try, 1), 0, &mut out),
            LockError::InvalidName {
                len: LOCK_NAME_BYTES_MAX + 1,
            },
        ),
        (
            locks.acquire(b"", req(10, Wait::Try, 1), 0, &mut out),
            LockError::InvalidName { len: 0 },
        ),
        (
            locks.acquire(b"a", req(0, Wait::Try, 1), 0, &mut out),
            LockError::InvalidTtl { ttl_ms: 0 },
        ),
        (
            locks.acquire(b"a", req(LEASE_MS_MAX + 1, Wait::Try, 1), 0, &mut out),
            LockError::InvalidTtl {
                ttl_ms: LEASE_MS_MAX + 1,
            },
        ),
        (
            locks.acquire(
                b"a",
                Acquire {
                    permits: 0,
                    ..req(10, Wait::Try, 1)
                },
                0,
                &mut out,
            ),
            LockError::InvalidPermits { permits: 0 },
        ),
    ];
    for (got, want) in refused {
        assert_eq!(got, Err(want));
    }
    assert_eq!(
        locks.release(b"nobody", 1, 0, &mut out),
        Err(LockError::Unknown)
    );
    assert_eq!(locks.inspect(b"nobody", 0), Err(LockError::Unknown));
    assert!(out.records.is_empty() && out.notices.is_empty());
    assert_eq!(locks.len(), 0, "a refused acquire makes no lock");
    assert_eq!(
        locks.acquire(b"a", req(10, Wait::Try, 1), 0, &mut out),
        Ok(Some((1, 10)))
    );
    assert_eq!(
        locks.acquire(
            b"a",
            Acquire {
                permits: 3,
                ..req(10, Wait::Try, 1)
            },
            0,
            &mut out
        ),
        Err(LockError::PermitsMismatch { permits: 1 })
    );
    for t in 0..LOCK_WAITERS_MAX as u64 {
        let r = locks.acquire(b"a", req(10, Wait::Forever, 2 + t), 0, &mut out);
        assert_eq!(r, Ok(None));
    }
    assert_eq!(
        locks.acquire(b"a", req(10, Wait::Forever, 9_999), 0, &mut out),
        Err(LockError::TooManyWaiters)
    );
    let before = locks.durable();
    assert_eq!(
        locks.release(b"a", 7, 0, &mut out),
        Err(LockError::NotHeld),
        "a token never granted"
    );
    assert_eq!(
        locks.renew(b"a", 0, 10, 0, &mut out),
        Err(LockError::NotHeld)
    );
    assert_eq!(
        locks.cancel(b"a", 9_999, 0, &mut out),
        Err(LockError::UnknownTicket)
    );
    assert_eq!(locks.durable(), before);
    let info = locks.inspect(b"a", 0).unwrap();
    assert_eq!(info.holders, vec![(1, 1, 10)]);
    assert_eq!(info.waiters, LOCK_WAITERS_MAX);
}

#[test]
fn a_fence_hold_keeps_the_next_grant_back_until_it_ends() {
    let mut locks = Locks::default();
    let mut out = LockOut::default();
    assert_eq!(
        locks.acquire(b"a", req(10, Wait::Try, 1), 0, &mut out),
        Ok(Some((1, 10)))
    );
    assert_eq!(locks.hold_fence(b"a", 1), Ok(()));
    assert_eq!(locks.release(b"a", 1, 1, &mut out), Ok(()));
    // Free, but a write fenced by token 1 is not decided yet.
    assert_eq!(
        locks.acquire(b"a", req(10, Wait::Try, 2), 2, &mut out),
        Err(LockError::Busy { token: 1 })
    );
    assert_eq!(
        locks.acquire(b"a", req(10, Wait::Forever, 3), 2, &mut out),
        Ok(None)
    );
    out.notices.clear();
    locks.end_fence_hold(b"a", 3, &mut out);
    assert_eq!(
        out.notices,
        vec![(
            1,
            Notice::Granted {
                ticket: 3,
                name: b"a".to_vec().into(),
                token: 2,
                expires_at: 13
            }
        )]
    );
    assert_eq!(
        locks.check_fence(b"a", 1),
        Err(LockError::Stale { token: 1, last: 2 })
    );
}

#[test]
fn a_restart_gives_every_lease_its_whole_time_again() {
    let mut locks = Locks::default();
    let mut out = LockOut::default();
    assert_eq!(
        locks.acquire(b"a", req(100, Wait::Try, 1), 0, &mut out),
        Ok(Some((1, 100)))
    );
    let mut fresh = Locks::default();
    for r in locks.image() {
        fresh.restore(&r);
    }
    assert_eq!(fresh, locks);
    let mut out = LockOut::default();
    // Down for 90 ms: the lease had 10 left, and gets 100 again.
    fresh.restart(90, &mut out);
    assert_eq!(fresh.inspect(b"a", 90).unwrap().holders, vec![(1, 1, 190)]);
    assert_eq!(out.records.len(), 1);
}
