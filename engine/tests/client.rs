//! The client crate against a real `mercato serve`: every call, a batch
//! spread over shards, many threads sharing one client, and a `place_order`
//! whose connection drops after the server got it: the client resends under
//! the same id and the order exists once; reads spread by a balancer, which
//! still see the client's own writes.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mercato_client::balance::Policy;
use mercato_client::{Client, ClientConfig, ClientError, wire};
use util::Server;

fn line(sku: u64, qty: u32) -> wire::LineRequest {
    wire::LineRequest {
        sku,
        qty,
        expected_unit_price: None,
    }
}

#[test]
fn every_call_through_the_client() {
    let server = Server::start(3, &[]);
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    assert_eq!(c.shards(), 3);
    for sku in 0..6 {
        assert_eq!(c.put_sku(sku, 100, 2).unwrap().unwrap().id, sku);
        assert_eq!(c.restock(sku, 10).unwrap().unwrap().available, 10);
    }
    assert_eq!(c.deposit(1, 10_000).unwrap().unwrap().balance, 10_000);
    assert_eq!(c.withdraw(1, 1_000).unwrap().unwrap().balance, 9_000);
    let lines: Vec<_> = (0..6).map(|s| line(s, 1)).collect();
    let o = c
        .place_order(7, 1, lines.clone(), wire::Payment::Immediate)
        .unwrap()
        .unwrap();
    assert_eq!((o.state, o.total), (wire::OrderState::Paid, 600));
    let d = c
        .place_order(8, 1, lines, wire::Payment::Deferred { ttl_ms: 60_000 })
        .unwrap()
        .unwrap();
    assert_eq!(d.state, wire::OrderState::Reserved);
    assert_eq!(c.pay(1, 8).unwrap().unwrap().state, wire::OrderState::Paid);
    assert_eq!(
        c.refund(1, 8, true).unwrap().unwrap().state,
        wire::OrderState::Refunded
    );
    let e = c
        .place_order(
            9,
            1,
            vec![line(0, 1)],
            wire::Payment::Deferred { ttl_ms: 60_000 },
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        c.cancel(1, e.id).unwrap().unwrap().state,
        wire::OrderState::Cancelled
    );
    assert_eq!(c.get_order(1, 7).unwrap().unwrap(), o);
    assert_eq!(c.list_orders(1, None, 10).unwrap().unwrap().orders.len(), 3);
    assert_eq!(c.get_sku(0).unwrap().unwrap().sold, 1);
    assert_eq!(c.get_account(1).unwrap().unwrap().balance, 9_000 - 600);
    // The per-user limit is 2 and account 1 holds one unit of SKU 0 live.
    let over = c
        .place_order(10, 1, vec![line(0, 2)], wire::Payment::Immediate)
        .unwrap();
    assert!(
        matches!(over, Err(wire::Reject::PerUserLimit { sku: 0, .. })),
        "{over:?}"
    );
    // A batch over all shards comes back in order.
    let reqs: Vec<_> = (0..6).map(|sku| wire::Request::GetSku { sku }).collect();
    let answers = c.submit(reqs).unwrap();
    for (sku, a) in answers.iter().enumerate() {
        assert!(matches!(a, wire::Answer::Done(wire::Reply::Sku(v)) if v.id == sku as u64));
    }
}

#[test]
fn many_threads_share_one_client() {
    let server = Server::start(3, &[]);
    let c = Arc::new(Client::connect(server.main, ClientConfig::default()).unwrap());
    c.put_sku(1, 10, 0).unwrap().unwrap();
    c.restock(1, 100_000).unwrap().unwrap();
    std::thread::scope(|s| {
        for t in 0..6u64 {
            let c = c.clone();
            s.spawn(move || {
                c.deposit(100 + t, 1_000_000).unwrap().unwrap();
                for i in 0..200u128 {
                    let o = c.place_order(i, 100 + t, vec![line(1, 1)], wire::Payment::Immediate);
                    assert_eq!(o.unwrap().unwrap().total, 10);
                }
            });
        }
    });
    assert_eq!(c.get_sku(1).unwrap().unwrap().sold, 1_200);
}

/// Forwards bytes both ways; the first time the client sends a PlaceOrder
/// frame it drops the connection after passing the request on, so the
/// server runs it but the client never hears back.
fn flaky_proxy(to: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    let seen = dropped.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = TcpStream::connect(to).unwrap();
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = s2.read(&mut buf) {
                    if n == 0 || c2.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            let dropped = dropped.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 || server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    // A Requests frame (kind 3) big enough to be an order,
                    // not the one-request GetSku of the handshake's check.
                    if n >= 24 && buf[6] == 3 && n > 80 && !dropped.swap(true, Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        let _ = server.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn a_retried_order_after_a_dropped_connection_is_placed_once() {
    let server = Server::start(3, &[]);
    let direct = Client::connect(server.main, ClientConfig::default()).unwrap();
    direct.put_sku(5, 300, 0).unwrap().unwrap();
    direct.restock(5, 10).unwrap().unwrap();
    direct.deposit(42, 10_000).unwrap().unwrap();
    let config = ClientConfig {
        shard_aware: false,
        timeout_ms: 2_000,
        ..ClientConfig::default()
    };
    let (proxy, dropped) = flaky_proxy(server.main);
    let via_proxy = Client::connect(proxy, config).unwrap();
    let lines = vec![wire::LineRequest {
        sku: 5,
        qty: 2,
        expected_unit_price: Some(300),
    }];
    let o = via_proxy
        .place_order(u128::MAX - 1, 42, lines, wire::Payment::Immediate)
        .unwrap()
        .unwrap();
    assert!(
        dropped.load(Ordering::SeqCst),
        "the proxy never dropped the order"
    );
    assert_eq!(o.total, 600);
    assert_eq!(
        direct
            .list_orders(42, None, 10)
            .unwrap()
            .unwrap()
            .orders
            .len(),
        1
    );
    assert_eq!(direct.get_sku(5).unwrap().unwrap().sold, 2);
    assert_eq!(
        direct.get_account(42).unwrap().unwrap().balance,
        10_000 - 600
    );
}

#[test]
fn pipelining_waits_for_room_under_the_servers_in_flight_limit() {
    let server = Server::start(2, &["--in-flight-max", "64"]);
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    assert_eq!(c.welcome().in_flight_max, 64);
    c.put_sku(1, 10, 0).unwrap().unwrap();
    // 20 tickets of 32 reads: 640 requests, ten times what one connection
    // may have unanswered. The server would close a connection that sent
    // them all at once; the client holds back instead.
    let tickets: Vec<_> = (0..20)
        .map(|_| {
            let reads = (0..32).map(|_| wire::Request::GetSku { sku: 1 }).collect();
            c.submit_ticket(reads).unwrap()
        })
        .collect();
    for t in tickets {
        let answers = t.wait().unwrap();
        assert_eq!(answers.len(), 32);
        assert!(answers.iter().all(|a| matches!(a, wire::Answer::Done(_))));
    }
}

#[test]
fn balanced_reads_spread_over_the_shards_and_see_the_clients_writes() {
    let server = Server::start(2, &[]);
    let config = ClientConfig {
        read_balance: Some(Policy::RoundRobin),
        ..ClientConfig::default()
    };
    let c = Client::connect(server.main, config).unwrap();
    c.put_sku(1, 10, 0).unwrap().unwrap();
    c.restock(1, 5).unwrap().unwrap();
    let before = c.sent();
    for _ in 0..20 {
        assert_eq!(c.get_sku(1).unwrap().unwrap().available, 5);
    }
    let after = c.sent();
    let spread: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(spread, vec![10, 10], "round-robin over both shards");
    // A read pipelined behind an unanswered write of this client goes to
    // the owner, so it sees the write, whichever shard round-robin is at.
    for round in 0..100u32 {
        let write = (c.submit_ticket(vec![wire::Request::Restock { sku: 1, qty: 1 }])).unwrap();
        let read = (c.submit_ticket(vec![wire::Request::GetSku { sku: 1 }])).unwrap();
        let seen = read.wait().unwrap();
        let wire::Answer::Done(wire::Reply::Sku(v)) = &seen[0] else {
            panic!("round {round}: {seen:?}");
        };
        assert_eq!(v.available, 6 + round, "round {round}");
        write.wait().unwrap();
        // Once acknowledged, any shard's answer has it.
        assert_eq!(c.get_sku(1).unwrap().unwrap().available, 6 + round);
    }
}

#[test]
fn read_weights_must_match_the_shards() {
    let server = Server::start(2, &[]);
    let config = ClientConfig {
        read_balance: Some(Policy::SmoothWeighted),
        read_weights: Some(vec![1, 2, 3]),
        ..ClientConfig::default()
    };
    match Client::connect(server.main, config) {
        Err(ClientError::Config { what }) => assert!(what.contains("3 read weights for 2 shards")),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let config = ClientConfig {
        read_balance: Some(Policy::SmoothWeighted),
        read_weights: Some(vec![3, 1]),
        ..ClientConfig::default()
    };
    let c = Client::connect(server.main, config).unwrap();
    c.put_sku(7, 10, 0).unwrap().unwrap();
    let before = c.sent();
    for _ in 0..40 {
        assert_eq!(c.get_sku(7).unwrap().unwrap().price, 10);
    }
    let after = c.sent();
    let spread: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    assert_eq!(spread, vec![30, 10], "shares follow the static weights");
}

/// The client used to merge concurrent callers by count alone and read
/// answers with a fixed 1 MiB limit: five callers each setting a 256 KiB
/// value made one frame the server refused, and five reading them back
/// made one answer the client could not read. Now callers are merged
/// within the frame and answer bytes the server announces.
#[test]
fn callers_with_large_values_are_merged_within_the_servers_byte_limits() {
    let server = Server::start(1, &["--cache-budget-bytes", "67108864"]);
    let c = Arc::new(Client::connect(server.main, ClientConfig::default()).unwrap());
    let w = c.welcome().clone();
    let value = |i: usize| vec![i as u8; wire::CACHE_VALUE_BYTES_MAX - 64];
    for round in 0..3 {
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let key = format!("big-{round}-{i}");
                    c.cache_set(key.as_bytes(), &value(i), 0).unwrap().unwrap();
                    let got = c.cache_get(key.as_bytes()).unwrap().unwrap();
                    assert_eq!(got.as_deref(), Some(&value(i)[..]), "{key}");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    // A single batch that could not fit is refused by the client itself,
    // with the limit it would pass, and the connection goes on.
    let sets: Vec<wire::Request> = (0..8)
        .map(|i| wire::Request::CacheSet {
            key: vec![i],
            value: value(0),
            ttl_ms: 0,
        })
        .collect();
    match c.submit(sets) {
        Err(ClientError::BatchTooLarge { what, max, .. }) => {
            assert_eq!((what, max), ("request", w.frame_bytes_max as usize));
        }
        other => panic!("{other:?}"),
    }
    let gets: Vec<wire::Request> = (0..100)
        .map(|i| wire::Request::CacheGet { key: vec![i] })
        .collect();
    match c.submit(gets) {
        Err(ClientError::BatchTooLarge { what, max, .. }) => {
            assert_eq!((what, max), ("answer", w.answer_bytes_max as usize));
        }
        other => panic!("{other:?}"),
    }
    assert!(c.cache_get(b"big-0-1").unwrap().unwrap().is_some());
}

/// A server that answers with the wrong kind of reply, or with fewer
/// answers than requests. The client used to `unreachable!` or `expect` on
/// such answers: a wrong server could panic its client. Each now comes
/// back as `ClientError::Protocol`.
#[test]
fn a_wrong_answer_from_a_server_is_an_error_not_a_panic() {
    use bytes::BytesMut;
    use mercato_client::wire::{Body, FrameDecoder, Kind, encode_frame};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = BytesMut::new();
                let d = FrameDecoder::default();
                let mut chunk = [0u8; 65536];
                let mut answered = 0;
                loop {
                    while let Ok(Some(f)) = d.decode(&mut buf) {
                        let mut out = BytesMut::new();
                        match f.kind {
                            Kind::Hello => {
                                let w = wire::Welcome {
                                    version: wire::VERSION,
                                    shards: 1,
                                    shard_hash: 1,
                                    shard: 0,
                                    ports: vec![addr.port()],
                                    frame_bytes_max: 1 << 20,
                                    batch_len_max: 16,
                                    in_flight_max: 16,
                                    order_lines_max: 64,
                                    answer_bytes_max: 16 << 20,
                                };
                                encode_frame(&mut out, Kind::Welcome, f.request_id, &w.to_body());
                            }
                            _ => {
                                // First a reply of the wrong kind, then none.
                                answered += 1;
                                let answers = if answered == 1 {
                                    vec![wire::Answer::Done(wire::Reply::Stored)]
                                } else {
                                    vec![]
                                };
                                let a = wire::Answers { load: 0, answers };
                                encode_frame(&mut out, Kind::Answers, f.request_id, &a.to_body());
                            }
                        }
                        if s.write_all(&out).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    let c = Client::connect(
        addr,
        ClientConfig {
            place_order_retries: 0,
            ..ClientConfig::default()
        },
    )
    .unwrap();
    assert!(matches!(c.get_sku(1), Err(ClientError::Protocol { .. })));
    assert!(matches!(c.get_sku(1), Err(ClientError::Protocol { .. })));
}

/// The server closes idle connections (`--idle-timeout-ms`); the client
/// library finds the connection gone and opens a new one on its next call,
/// so an application that pauses is not broken by it.
#[test]
fn a_client_outlives_the_servers_idle_timeout() {
    let server = Server::start(2, &["--idle-timeout-ms", "200"]);
    let c = Client::connect(server.main, ClientConfig::default()).unwrap();
    c.put_sku(5, 100, 0).unwrap().unwrap();
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(c.get_sku(5).unwrap().unwrap().id, 5);
    }
}
