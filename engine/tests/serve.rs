//! `mercato serve` as a real process on ephemeral ports, spoken to with raw
//! protocol frames: every command, an order across shards, bad input of
//! every kind answered and closed while a healthy client goes on being
//! served, a client that never reads cut off without slowing the others,
//! answers bounded before they are built, silent sockets timed out, and a
//! clean exit on SIGTERM that answers what it reads meanwhile.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use mercato_protocol::{self as wire, Body, ErrorCode, FrameDecoder, Kind, encode_frame};
use util::Server;

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    next_id: u64,
}

impl Client {
    fn raw(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            stream,
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    fn connect(addr: SocketAddr, token: Option<&str>) -> (Client, wire::Welcome) {
        let mut c = Client::raw(addr);
        let hello = wire::Hello {
            version: wire::VERSION,
            auth_token: token.map(String::from),
            client: "serve test".into(),
        };
        c.send(Kind::Hello, 0, &hello.to_body());
        let f = c.frame().expect("a welcome");
        assert_eq!(f.kind, Kind::Welcome);
        (c, wire::Welcome::from_body(&f.body).unwrap())
    }

    fn send(&mut self, kind: Kind, id: u64, body: &[u8]) {
        let mut out = BytesMut::new();
        encode_frame(&mut out, kind, id, body);
        self.stream.write_all(&out).unwrap();
    }

    /// The next frame, or `None` once the server closed the connection.
    fn frame(&mut self) -> Option<wire::Frame> {
        // Answers may be as large as the server's default answer budget.
        let d = FrameDecoder {
            frame_bytes_max: 16 << 20,
        };
        loop {
            if let Some(f) = d.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn call(&mut self, requests: Vec<wire::Request>) -> Vec<wire::Answer> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(Kind::Requests, id, &wire::Requests { requests }.to_body());
        let f = self.frame().expect("answers");
        assert_eq!((f.kind, f.request_id), (Kind::Answers, id));
        wire::Answers::from_body(&f.body).unwrap().answers
    }
}

fn done(a: &wire::Answer) -> &wire::Reply {
    match a {
        wire::Answer::Done(r) => r,
        other => panic!("{other:?}"),
    }
}

fn shop(c: &mut Client) {
    let mut reqs = Vec::new();
    for sku in 0..8 {
        reqs.push(wire::Request::PutSku {
            sku,
            price: 100 + sku,
            per_user_limit: 0,
        });
        reqs.push(wire::Request::Restock { sku, qty: 1_000 });
    }
    for account in 0..8 {
        reqs.push(wire::Request::Deposit {
            account,
            amount: 1_000_000,
        });
    }
    for a in c.call(reqs) {
        done(&a);
    }
}

#[test]
fn every_command_and_a_cross_shard_order_over_tcp() {
    let server = Server::start(2, &[]);
    let (mut c, welcome) = Client::connect(server.main, None);
    assert_eq!(welcome.shards, 2);
    assert_eq!(welcome.ports, server.ports);
    shop(&mut c);
    // Lines on both shards: SKUs 0..8 spread over two shards.
    let lines: Vec<wire::LineRequest> = (0..8)
        .map(|sku| wire::LineRequest {
            sku,
            qty: 1,
            expected_unit_price: None,
        })
        .collect();
    let answers = c.call(vec![
        wire::Request::PlaceOrder {
            id: 1,
            account: 3,
            lines: lines.clone(),
            payment: wire::Payment::Immediate,
        },
        wire::Request::PlaceOrder {
            id: 2,
            account: 3,
            lines,
            payment: wire::Payment::Deferred { ttl_ms: 60_000 },
        },
        wire::Request::PlaceOrder {
            id: 3,
            account: 4,
            lines: vec![wire::LineRequest {
                sku: 1,
                qty: 1,
                expected_unit_price: None,
            }],
            payment: wire::Payment::Deferred { ttl_ms: 60_000 },
        },
    ]);
    // A two-phase order is answered when it commits; a payment for it in
    // the same batch would find it still pending, so it comes next.
    let mut later = c.call(vec![
        wire::Request::Pay {
            account: 3,
            order: 2,
        },
        wire::Request::Refund {
            account: 3,
            order: 2,
            restock: true,
        },
        wire::Request::Cancel {
            account: 4,
            order: 3,
        },
        wire::Request::Withdraw {
            account: 5,
            amount: 10,
        },
        wire::Request::GetSku { sku: 0 },
        wire::Request::GetAccount { account: 3 },
        wire::Request::GetOrder {
            account: 3,
            order: 1,
        },
        wire::Request::ListOrders {
            account: 3,
            after: None,
            limit: 10,
        },
        wire::Request::GetSku { sku: 99 },
    ]);
    let mut answers = answers;
    answers.insert(2, later.remove(0));
    answers.insert(3, later.remove(0));
    answers.insert(5, later.remove(0));
    answers.extend(later);
    let total: u64 = (0..8).map(|s| 100 + s).sum();
    assert!(
        matches!(done(&answers[0]), wire::Reply::Order(o) if o.state == wire::OrderState::Paid && o.total == total)
    );
    assert!(
        matches!(done(&answers[3]), wire::Reply::Order(o) if o.state == wire::OrderState::Refunded)
    );
    assert!(
        matches!(done(&answers[5]), wire::Reply::Order(o) if o.state == wire::OrderState::Cancelled)
    );
    assert!(matches!(done(&answers[6]), wire::Reply::Account(a) if a.balance == 1_000_000 - 10));
    assert!(matches!(done(&answers[7]), wire::Reply::Sku(s) if s.sold == 1));
    assert!(matches!(done(&answers[8]), wire::Reply::Account(a) if a.balance == 1_000_000 - total));
    assert!(
        matches!(done(&answers[10]), wire::Reply::Orders { orders, more: false } if orders.len() == 2)
    );
    assert_eq!(
        answers[11],
        wire::Answer::Rejected(wire::Reject::UnknownSku { sku: 99 })
    );
    // A shard-aware connection answers the same.
    let shard_addr = SocketAddr::from(([127, 0, 0, 1], server.ports[1]));
    let (mut direct, w) = Client::connect(shard_addr, None);
    assert_eq!(w.shard, 1);
    assert_eq!(
        done(
            &direct.call(vec![wire::Request::GetOrder {
                account: 3,
                order: 1
            }])[0]
        ),
        done(&answers[9])
    );
}

#[test]
fn bad_input_is_answered_and_closed_while_others_are_served() {
    let server = Server::start(2, &["--auth-token", "s3cret"]);
    let (mut healthy, _) = Client::connect(server.main, Some("s3cret"));
    shop(&mut healthy);
    let garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let mut huge = BytesMut::new();
    encode_frame(&mut huge, Kind::Hello, 0, b"");
    huge[8..12].copy_from_slice(&(64u32 << 20).to_le_bytes());
    let mut bad_sum = BytesMut::new();
    encode_frame(&mut bad_sum, Kind::Hello, 0, b"abc");
    bad_sum[23] ^= 1;
    let mut not_rkyv = BytesMut::new();
    encode_frame(&mut not_rkyv, Kind::Hello, 0, b"\xff\xff\xff");
    let mut unknown = BytesMut::new();
    encode_frame(&mut unknown, Kind::Hello, 0, b"");
    unknown[6] = 42;
    let wrong_token = {
        let h = wire::Hello {
            version: wire::VERSION,
            auth_token: Some("guess".into()),
            client: String::new(),
        };
        let mut b = BytesMut::new();
        encode_frame(&mut b, Kind::Hello, 0, &h.to_body());
        b
    };
    let cases: Vec<(Vec<u8>, Option<ErrorCode>)> = vec![
        (garbage, Some(ErrorCode::BadMagic)),
        (huge.to_vec(), Some(ErrorCode::FrameTooLarge)),
        (bad_sum.to_vec(), Some(ErrorCode::BadChecksum)),
        (not_rkyv.to_vec(), Some(ErrorCode::BadBody)),
        (unknown.to_vec(), Some(ErrorCode::UnknownKind)),
        (wrong_token.to_vec(), Some(ErrorCode::AuthFailed)),
        // Half a header, then close: nothing to answer.
        (b"MRCT\x01\x00\x03".to_vec(), None),
    ];
    for (bytes, code) in cases {
        let mut bad = Client::raw(server.main);
        bad.stream.write_all(&bytes).unwrap();
        match code {
            None => drop(bad),
            Some(code) => {
                let f = bad.frame().expect("an error frame");
                assert_eq!(f.kind, Kind::Error);
                assert_eq!(
                    wire::ErrorBody::from_body(&f.body).unwrap().code,
                    code as u16
                );
                assert!(bad.frame().is_none(), "{code:?}: the connection stays open");
            }
        }
        // The healthy client is still served.
        let a = healthy.call(vec![wire::Request::GetSku { sku: 1 }]);
        assert!(matches!(done(&a[0]), wire::Reply::Sku(s) if s.id == 1));
    }
}

/// Ask the server to stop, as an operator's `kill` would.
fn sigterm(server: &Server) {
    let pid = server.child.id();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A shop whose account 1 has 1,000 orders, so that listing them makes
/// big answers.
fn account_with_many_orders(healthy: &mut Client) {
    shop(healthy);
    for chunk in 0..4u128 {
        let orders = (0..250u128)
            .map(|i| wire::Request::PlaceOrder {
                id: chunk * 250 + i,
                account: 1,
                lines: vec![wire::LineRequest {
                    sku: (i % 8) as u64,
                    qty: 1,
                    expected_unit_price: None,
                }],
                payment: wire::Payment::Immediate,
            })
            .collect();
        for a in healthy.call(orders) {
            done(&a);
        }
    }
}

fn lists(n: usize) -> Vec<u8> {
    wire::Requests {
        requests: (0..n)
            .map(|_| wire::Request::ListOrders {
                account: 1,
                after: None,
                limit: 1000,
            })
            .collect(),
    }
    .to_body()
}

#[test]
fn a_client_that_never_reads_stops_being_read_then_is_cut_off_and_others_go_on() {
    let server = Server::start(
        2,
        &["--answer-bytes-max", "1048576", "--idle-timeout-ms", "1000"],
    );
    let (mut healthy, _) = Client::connect(server.main, None);
    account_with_many_orders(&mut healthy);
    let (mut stalled, _) = Client::connect(server.main, None);
    // Tens of megabytes of answers, far past the socket buffers, from few
    // enough requests to stay under the in-flight limit: only the answer
    // budget can stop this client.
    let batch = lists(8);
    stalled
        .stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sent = 0;
    for id in 1..=100u64 {
        let mut out = BytesMut::new();
        encode_frame(&mut out, Kind::Requests, id, &batch);
        // Once its answers fill the budget, the server stops reading this
        // client; these small frames may still all fit its socket buffer.
        if stalled.stream.write_all(&out).is_err() {
            break;
        }
        sent += 1;
        if id % 10 == 0 {
            let a = healthy.call(vec![wire::Request::GetSku { sku: 2 }]);
            assert!(matches!(done(&a[0]), wire::Reply::Sku(_)));
        }
    }
    let a = healthy.call(vec![wire::Request::GetAccount { account: 1 }]);
    assert!(matches!(done(&a[0]), wire::Reply::Account(_)));
    // Read nothing until the server has given up on the staller: its
    // answers have waited a whole idle timeout (1 s, looked at every
    // 100 ms) by then. A reader that keeps pace is never cut off, and the
    // healthy client, which keeps talking, is never idle.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(250));
        let a = healthy.call(vec![wire::Request::GetSku { sku: 2 }]);
        assert!(matches!(done(&a[0]), wire::Reply::Sku(_)));
    }
    // What it can still read is answers, then a close: not an error frame,
    // and not a wait for more.
    let mut answers = 0;
    while let Some(f) = stalled.frame() {
        assert_eq!(f.kind, Kind::Answers, "cut off for another reason");
        answers += 1;
    }
    assert!(answers < sent, "every answer arrived: nothing was cut off");
    let a = healthy.call(vec![wire::Request::GetSku { sku: 3 }]);
    assert!(matches!(done(&a[0]), wire::Reply::Sku(_)));
}

#[test]
fn a_batch_whose_answers_could_be_huge_is_refused_before_it_runs() {
    let server = Server::start(2, &[]);
    let (mut healthy, welcome) = Client::connect(server.main, None);
    assert_eq!(welcome.answer_bytes_max, 16 << 20);
    account_with_many_orders(&mut healthy);
    // 4,096 pages of the largest size: gigabytes, if a shard built them.
    let (mut greedy, _) = Client::connect(server.main, None);
    greedy.send(Kind::Requests, 7, &lists(4096));
    let f = greedy.frame().expect("an error frame");
    assert_eq!((f.kind, f.request_id), (Kind::Error, 7));
    let e = wire::ErrorBody::from_body(&f.body).unwrap();
    assert_eq!(e.code, ErrorCode::AnswerTooLarge as u16);
    assert!(e.message.contains("answer_bytes_max"), "{}", e.message);
    assert!(greedy.frame().is_none(), "the connection stays open");
    // Many large cache reads, the same.
    let (mut greedy, _) = Client::connect(server.main, None);
    let gets = wire::Requests {
        requests: (0..100)
            .map(|i| wire::Request::CacheGet {
                key: format!("k{i}").into_bytes(),
            })
            .collect(),
    };
    greedy.send(Kind::Requests, 8, &gets.to_body());
    let f = greedy.frame().expect("an error frame");
    let e = wire::ErrorBody::from_body(&f.body).unwrap();
    assert_eq!(e.code, ErrorCode::AnswerTooLarge as u16);
    // A page that fits is cut by bytes, and says there is more.
    let (mut fair, _) = Client::connect(server.main, None);
    let a = fair.call(vec![wire::Request::ListOrders {
        account: 1,
        after: None,
        limit: 1000,
    }]);
    let wire::Reply::Orders { orders, more } = done(&a[0]) else {
        panic!("{a:?}");
    };
    assert!(orders.len() < 1000 && *more, "{} orders", orders.len());
    // Paging on from the last id reaches every order, each once.
    let mut seen: Vec<u128> = orders.iter().map(|o| o.id).collect();
    loop {
        let a = fair.call(vec![wire::Request::ListOrders {
            account: 1,
            after: seen.last().copied(),
            limit: 1000,
        }]);
        let wire::Reply::Orders { orders, more } = done(&a[0]) else {
            panic!("{a:?}");
        };
        seen.extend(orders.iter().map(|o| o.id));
        if !more {
            break;
        }
    }
    seen.sort_unstable();
    assert!(
        seen == (0..1000u128).collect::<Vec<_>>(),
        "{} ids",
        seen.len()
    );
    // The server kept serving.
    let a = healthy.call(vec![wire::Request::GetSku { sku: 1 }]);
    assert!(matches!(done(&a[0]), wire::Reply::Sku(_)));
}

#[test]
fn info_reports_the_servers_health() {
    let server = Server::start(2, &[]);
    let (mut c, _) = Client::connect(server.main, None);
    let (_other, _) = Client::connect(server.main, None);
    let a = c.call(vec![wire::Request::Info]);
    let wire::Reply::Info(info) = done(&a[0]) else {
        panic!("{a:?}");
    };
    assert_eq!(
        (info.shards, info.snapshot_failures, info.failed_logs),
        (2, 0, 0)
    );
    assert!(info.snapshot_error.is_empty());
    assert!(info.connections >= 2, "{info:?}");
}

#[test]
fn silent_sockets_cannot_hold_the_connection_slots() {
    let server = Server::start(1, &["--conns-max", "4", "--handshake-timeout-ms", "500"]);
    let shard = SocketAddr::from(([127, 0, 0, 1], server.ports[0]));
    // Four sockets that never say a word fill the shard.
    let mut silent: Vec<Client> = (0..4).map(|_| Client::raw(shard)).collect();
    std::thread::sleep(Duration::from_millis(100));
    // A fifth is told why it is turned away, then closed.
    let mut late = Client::raw(shard);
    let f = late.frame().expect("a refusal");
    assert_eq!(f.kind, Kind::Error);
    assert_eq!(
        wire::ErrorBody::from_body(&f.body).unwrap().code,
        ErrorCode::TooManyConnections as u16
    );
    assert!(late.frame().is_none());
    // The silent ones are closed at their handshake deadline, with a reason.
    for s in &mut silent {
        let f = s.frame().expect("a timeout");
        assert_eq!(
            wire::ErrorBody::from_body(&f.body).unwrap().code,
            ErrorCode::HandshakeTimeout as u16
        );
        assert!(s.frame().is_none());
    }
    // Their slots are free again.
    let (mut c, _) = Client::connect(shard, None);
    let a = c.call(vec![wire::Request::GetSku { sku: 1 }]);
    assert!(matches!(a[0], wire::Answer::Rejected(_)));
}

#[test]
fn requests_read_while_stopping_are_answered_shutdown() {
    let mut server = Server::start(1, &[]);
    let (mut busy, _) = Client::connect(server.main, None);
    account_with_many_orders(&mut busy);
    let (mut late, _) = Client::connect(server.main, None);
    // A client that does not read its answers holds the drain open (for at
    // most its 10 s bound), so the server is still reading when `late`
    // sends.
    busy.send(Kind::Requests, 1, &lists(100));
    std::thread::sleep(Duration::from_millis(200));
    sigterm(&server);
    // `serve` looks for the signal every 50 ms.
    std::thread::sleep(Duration::from_millis(300));
    let a = late.call(vec![
        wire::Request::GetSku { sku: 1 },
        wire::Request::Deposit {
            account: 9,
            amount: 5,
        },
    ]);
    let shutdown = wire::Answer::Failed {
        code: ErrorCode::Shutdown as u16,
    };
    assert_eq!(a, vec![shutdown.clone(), shutdown]);
    // The busy client reads its answers; then the drain ends.
    let f = busy.frame().expect("its answers");
    assert_eq!((f.kind, f.request_id), (Kind::Answers, 1));
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_cleanly() {
    let mut server = Server::start(2, &[]);
    let (mut c, _) = Client::connect(server.main, None);
    shop(&mut c);
    // Batches the server has read when the signal comes. Four frames of 120
    // orders go in one write of about 46 KB: less than a fresh loopback
    // connection's receive window and one segment, so they reach the server
    // together, and it reads and dispatches all four before it answers the
    // first. (Frames of 1,500 orders, 144 KB each, did not fit: the server
    // could answer the first before it had read the last, and a signal then
    // left those unread, which is not a request in flight.)
    let frames = 4u64;
    let orders_per_frame = 120u128;
    let mut out = BytesMut::new();
    for f in 0..frames {
        let orders: Vec<wire::Request> = (0..orders_per_frame)
            .map(|i| {
                let id = u128::from(f) * orders_per_frame + i;
                wire::Request::PlaceOrder {
                    id,
                    account: (id % 8) as u64,
                    lines: vec![wire::LineRequest {
                        sku: (id % 8) as u64,
                        qty: 1,
                        expected_unit_price: None,
                    }],
                    payment: wire::Payment::Immediate,
                }
            })
            .collect();
        let body = wire::Requests { requests: orders }.to_body();
        encode_frame(&mut out, Kind::Requests, 100 + f, &body);
    }
    assert!(
        out.len() < 60_000,
        "{} bytes: more than one window",
        out.len()
    );
    c.stream.write_all(&out).unwrap();
    let check = |frame: wire::Frame, f: u64| {
        assert_eq!((frame.kind, frame.request_id), (Kind::Answers, 100 + f));
        let answers = wire::Answers::from_body(&frame.body).unwrap().answers;
        assert_eq!(answers.len(), orders_per_frame as usize);
        // Every order ran: placed, or refused once stock ran out; none was
        // turned away because the server was stopping.
        assert!(
            answers
                .iter()
                .all(|a| !matches!(a, wire::Answer::Failed { .. }))
        );
    };
    check(c.frame().expect("the first batch is answered"), 0);
    sigterm(&server);
    for f in 1..frames {
        check(
            c.frame()
                .expect("every batch read before the signal is answered"),
            f,
        );
    }
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start(2, &[]);
    let (mut c, _) = Client::connect(server.main, None);
    shop(&mut c);
    sigterm(&server);
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit}");
}

#[test]
fn a_toml_file_configures_the_server_and_flags_win() {
    let dir = std::env::temp_dir().join(format!("mercato-serve-toml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mercato.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\nshards = 3\nauth_token = \"from-file\"\nin_flight_max = 64\n\
         orders_capacity = 100000\npurchases_capacity = 1000\nrejections_capacity = 1000\nheap_prefault_mb = 8\n",
    )
    .unwrap();
    let server =
        Server::start_with(&["serve", "--config", file.to_str().unwrap(), "--shards", "2"]);
    let (_, welcome) = Client::connect(server.main, Some("from-file"));
    assert_eq!((welcome.shards, welcome.in_flight_max), (2, 64));
    drop(server);
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nshardz = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mercato"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shardz"));
    std::fs::remove_dir_all(&dir).unwrap();
}
