//! Locks over TCP with the client crate against a real `mercato serve`:
//! a queued acquire granted by a notice when the holder releases, a bound
//! lease freed when its connection closes, a lost lease told without
//! polling, fenced writes (engine state and the keyspace) refused once
//! stale, and bad input refused while the server serves on.

mod util;

use std::time::{Duration, Instant};

use mercato_client::{Acquired, Client, ClientConfig, LockOptions, wire};
use util::Server;

fn within<T>(ms: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn stale(r: &Result<wire::Reply, wire::Reject>) -> bool {
    matches!(r, Err(wire::Reject::Lock(wire::LockReject::Stale { .. })))
}

#[test]
fn locks_over_tcp_wait_bind_lose_and_fence() {
    let server = Server::start(2, &[]);
    let a = Client::connect(server.main, ClientConfig::default()).unwrap();
    let b = Client::connect(server.main, ClientConfig::default()).unwrap();

    // A holds; B queues and is granted by notice once A releases.
    let held = a.lock(b"x", LockOptions::new(60_000)).unwrap().unwrap();
    assert_eq!(held.token(), 1);
    let busy = b.lock(b"x", LockOptions::new(60_000)).unwrap();
    assert!(matches!(
        busy,
        Err(wire::Reject::Lock(wire::LockReject::Busy { token: 1 }))
    ));
    let Acquired::Queued(ticket) = b
        .lock_ticket(b"x", LockOptions::new(60_000).wait_ms(10_000))
        .unwrap()
        .unwrap()
    else {
        panic!("the lock is held: the acquire queues");
    };
    assert!(ticket.try_get().is_none());
    let info = a.lock_inspect(b"x").unwrap().unwrap();
    assert_eq!((info.holders.len(), info.waiters), (1, 1));
    let left = info.holders[0].remaining_ms;
    assert!(
        left > 50_000 && left <= 60_000,
        "{left} ms of the lease left"
    );
    held.release().unwrap().unwrap();
    let second = ticket.wait().unwrap().unwrap();
    assert_eq!(second.token(), 2);

    // The old holder's fenced writes are refused now, on either shard;
    // the new holder's go ahead.
    for account in [1u64, 2, 3] {
        let write = || wire::FencedWrite::Deposit {
            account,
            amount: 10,
        };
        assert!(stale(&a.fenced(b"x", 1, write()).unwrap()));
        assert!(matches!(
            second.fenced(write()).unwrap(),
            Ok(wire::Reply::Account(v)) if v.balance == 10
        ));
    }
    let set = |token| wire::FencedWrite::CacheSet {
        key: b"k".to_vec(),
        value: vec![token as u8],
        ttl_ms: 0,
    };
    assert!(stale(&a.fenced(b"x", 1, set(1)).unwrap()));
    assert_eq!(a.cache_get(b"k").unwrap().unwrap(), None);
    assert!(matches!(
        b.fenced(b"x", 2, set(2)).unwrap(),
        Ok(wire::Reply::Stored)
    ));
    assert_eq!(a.cache_get(b"k").unwrap().unwrap(), Some(vec![2]));
    drop(second);

    // A short lease runs out: its guard hears so without asking.
    let short = a.lock(b"y", LockOptions::new(100)).unwrap().unwrap();
    assert!(within(5_000, || short.is_lost().then_some(())).is_some());

    // A bound lease ends when its client's connection closes.
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    let bound = c
        .lock(b"z", LockOptions::new(600_000).bind())
        .unwrap()
        .unwrap();
    let token = bound.token();
    std::mem::forget(bound);
    drop(c);
    let next = within(5_000, || {
        a.lock(b"z", LockOptions::new(1_000)).unwrap().ok()
    });
    assert_eq!(next.map(|g| g.token()), Some(token + 1));

    // Bad input gets a typed refusal, and the server serves on.
    let long = vec![b'n'; wire::LOCK_NAME_BYTES_MAX + 1];
    let refusals = [
        a.lock(&long, LockOptions::new(10)).unwrap().err(),
        a.lock(b"w", LockOptions::new(0)).unwrap().err(),
        a.lock(b"w", LockOptions::new(10).permits(0)).unwrap().err(),
        a.lock_release(b"never", 1).unwrap().err(),
        a.lock_release(b"x", 1).unwrap().err(),
    ];
    use wire::LockReject as L;
    let want = [
        L::InvalidName {
            len: long.len() as u64,
        },
        L::InvalidTtl { ttl_ms: 0 },
        L::InvalidPermits { permits: 0 },
        L::Unknown,
        L::Stale { token: 1, last: 2 },
    ];
    for (got, want) in refusals.into_iter().zip(want) {
        assert_eq!(got, Some(wire::Reject::Lock(want)));
    }
    assert!(a.get_account(1).unwrap().is_ok());
}
