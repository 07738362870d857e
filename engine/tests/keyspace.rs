//! The cache keyspace: embedded through `Handle`, and over TCP through the
//! client, where any shard serves it (`tests/cli.rs` drives `mercato-cli`). Bad keys and values
//! get a typed rejection, change nothing, and the server keeps serving.

mod util;

use std::sync::Arc;

use mercato_client::{Client, ClientConfig, wire};
use mercato_engine::cache::PolicyKind;
use mercato_engine::keyspace::budget_bytes_min;
use mercato_engine::limits::{
    CACHE_ENTRY_OVERHEAD_BYTES, CACHE_KEY_BYTES_MAX, CACHE_VALUE_BYTES_MAX,
};
use mercato_engine::{Config, Engine, EngineError, ManualClock, OpenError, Reject};
use util::Server;

#[test]
fn set_get_del_and_ttl_embedded() {
    let clock = Arc::new(ManualClock::new(1_000));
    let engine = Engine::open(Config {
        clock: clock.clone(),
        ..Config::with_shards(2)
    })
    .unwrap();
    let h = engine.handle();
    assert_eq!(h.cache_get(b"a").unwrap(), None);
    h.cache_set(b"a", &b"apple"[..], 0).unwrap();
    h.cache_set(b"b", &b"banana"[..], 100).unwrap();
    assert_eq!(h.cache_get(b"a").unwrap().as_deref(), Some(&b"apple"[..]));
    assert_eq!(h.cache_get(b"b").unwrap().as_deref(), Some(&b"banana"[..]));
    clock.advance(100);
    assert_eq!(h.cache_get(b"b").unwrap(), None, "past its TTL");
    assert!(h.cache_del(b"a").unwrap());
    assert!(!h.cache_del(b"a").unwrap());
    assert_eq!(h.cache_get(b"a").unwrap(), None);
    let s = h.cache_stats();
    assert_eq!((s.hits, s.misses, s.inserts, s.expirations), (2, 3, 2, 1));
    assert_eq!((s.entries, s.policy), (0, PolicyKind::Lru));
    engine.shutdown();
}

#[test]
fn bad_keys_and_values_are_refused_and_change_nothing() {
    let engine = Engine::open(Config::with_shards(1)).unwrap();
    let h = engine.handle();
    h.cache_set(b"k", &b"v"[..], 0).unwrap();
    let long_key = vec![b'k'; CACHE_KEY_BYTES_MAX + 1];
    assert_eq!(
        h.cache_set(&long_key, &b"v"[..], 0),
        Err(Reject::InvalidKey {
            len: long_key.len() as u64,
            max: CACHE_KEY_BYTES_MAX as u64
        })
    );
    assert!(matches!(
        h.cache_get(b""),
        Err(Reject::InvalidKey { len: 0, .. })
    ));
    let big = vec![0u8; CACHE_VALUE_BYTES_MAX + 1];
    assert_eq!(
        h.cache_set(b"k", big.clone(), 0),
        Err(Reject::ValueTooLarge {
            len: big.len() as u64,
            max: CACHE_VALUE_BYTES_MAX as u64
        })
    );
    assert_eq!(
        h.cache_get(b"k").unwrap().as_deref(),
        Some(&b"v"[..]),
        "the old value stands"
    );
    assert_eq!(h.cache_stats().inserts, 1);
    engine.shutdown();
}

#[test]
fn the_budget_bounds_memory_and_evicts_by_policy() {
    let budget = budget_bytes_min();
    for policy in [PolicyKind::Lru, PolicyKind::Arc] {
        let engine = Engine::open(Config {
            cache_budget_bytes: budget,
            cache_policy: policy,
            ..Config::with_shards(2)
        })
        .unwrap();
        let h = engine.handle();
        let value = vec![7u8; 64 << 10];
        for i in 0..64u32 {
            h.cache_set(&i.to_le_bytes(), value.clone(), 0).unwrap();
            let s = h.cache_stats();
            assert!(s.weight <= budget, "{policy:?}: {} over {budget}", s.weight);
        }
        let s = h.cache_stats();
        let per_entry = 4 + value.len() as u64 + CACHE_ENTRY_OVERHEAD_BYTES;
        assert_eq!(s.entries, budget / per_entry, "{policy:?}");
        assert_eq!(s.evictions, 64 - s.entries);
        assert_eq!(s.policy, policy);
        assert!(
            h.cache_get(&63u32.to_le_bytes()).unwrap().is_some(),
            "the newest stays"
        );
        assert!(
            h.cache_get(&0u32.to_le_bytes()).unwrap().is_none(),
            "the oldest went"
        );
        engine.shutdown();
    }
    let too_small = Engine::open(Config {
        cache_budget_bytes: budget - 1,
        ..Config::with_shards(1)
    });
    assert!(matches!(
        too_small,
        Err(OpenError::Engine(EngineError::InvalidConfig { .. }))
    ));
}

#[test]
fn any_shard_serves_the_keyspace_over_tcp() {
    let server = Server::start(3, &["--cache-policy", "arc"]);
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    // Keys spread over all three shards' connections; each shard answers
    // from the one shared keyspace.
    for i in 0..60u32 {
        let key = format!("key-{i}");
        c.cache_set(key.as_bytes(), &i.to_le_bytes(), 0)
            .unwrap()
            .unwrap();
    }
    let mut served_by = [0; 3];
    for i in 0..60u32 {
        let key = format!("key-{i}");
        let r = wire::Request::CacheGet {
            key: key.into_bytes(),
        };
        served_by[c.owner(&r) as usize] += 1;
        let got = c.submit(vec![r]).unwrap().pop().unwrap();
        assert_eq!(
            got,
            wire::Answer::Done(wire::Reply::Value(Some(i.to_le_bytes().to_vec())))
        );
    }
    assert!(
        served_by.iter().all(|&n| n > 0),
        "every shard served some: {served_by:?}"
    );
    assert_eq!(c.cache_del(b"key-1").unwrap(), Ok(true));
    assert_eq!(c.cache_get(b"key-1").unwrap(), Ok(None));
    // A bad key in a batch is refused alone; the rest of the batch runs.
    let answers = c
        .submit(vec![
            wire::Request::CacheSet {
                key: Vec::new(),
                value: b"x".to_vec(),
                ttl_ms: 0,
            },
            wire::Request::CacheGet {
                key: b"key-2".to_vec(),
            },
            wire::Request::PutSku {
                sku: 1,
                price: 10,
                per_user_limit: 0,
            },
        ])
        .unwrap();
    assert_eq!(
        answers[0],
        wire::Answer::Rejected(wire::Reject::InvalidKey {
            len: 0,
            max: CACHE_KEY_BYTES_MAX as u64
        })
    );
    assert_eq!(
        answers[1],
        wire::Answer::Done(wire::Reply::Value(Some(2u32.to_le_bytes().to_vec())))
    );
    assert!(matches!(
        answers[2],
        wire::Answer::Done(wire::Reply::Sku(_))
    ));
    let s = c.cache_stats().unwrap();
    assert_eq!((s.entries, s.inserts, s.policy), (59, 60, 1));
    assert_eq!(s.hits, 61);
}
