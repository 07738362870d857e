//! The decoder against hostile input: arbitrary bytes, in arbitrary pieces,
//! never panic it and never make it allocate past its limit; valid batches
//! round-trip; any flipped bit of a frame is caught.

use bytes::BytesMut;
use mercato_protocol::*;
use proptest::prelude::*;

fn request() -> impl Strategy<Value = Request> {
    let line =
        (any::<u64>(), any::<u32>(), any::<Option<u64>>()).prop_map(|(sku, qty, p)| LineRequest {
            sku,
            qty,
            expected_unit_price: p,
        });
    let payment = prop_oneof![
        Just(Payment::Immediate),
        any::<u64>().prop_map(|ttl_ms| Payment::Deferred { ttl_ms })
    ];
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(sku, price, per_user_limit)| {
            Request::PutSku {
                sku,
                price,
                per_user_limit,
            }
        }),
        (any::<u64>(), any::<u32>()).prop_map(|(sku, qty)| Request::Restock { sku, qty }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(account, amount)| Request::Deposit { account, amount }),
        (
            any::<u128>(),
            any::<u64>(),
            proptest::collection::vec(line, 0..5),
            payment
        )
            .prop_map(|(id, account, lines, payment)| Request::PlaceOrder {
                id,
                account,
                lines,
                payment
            }),
        (any::<u64>(), any::<u128>(), any::<bool>()).prop_map(|(account, order, restock)| {
            Request::Refund {
                account,
                order,
                restock,
            }
        }),
        (any::<u64>(), any::<Option<u128>>(), any::<u32>()).prop_map(|(account, after, limit)| {
            Request::ListOrders {
                account,
                after,
                limit,
            }
        }),
    ]
}

fn feed(d: &FrameDecoder, bytes: &[u8], cuts: &[usize]) -> Vec<Result<Frame, FrameError>> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let end = c.clamp(at, bytes.len());
        buf.extend_from_slice(&bytes[at..end]);
        at = end;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
            assert!(buf.capacity() <= d.frame_bytes_max + HEADER_BYTES + bytes.len());
        }
    }
    out
}

fn parse_any(f: &Frame) {
    // Whatever the kind says, a body that is not its type is an error, not a panic.
    let _ = Hello::from_body(&f.body);
    let _ = Welcome::from_body(&f.body);
    let _ = Requests::from_body(&f.body);
    let _ = Answers::from_body(&f.body);
    let _ = ErrorBody::from_body(&f.body);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..2_048),
        cuts in proptest::collection::vec(0..2_048usize, 0..8),
        with_header in any::<bool>(),
    ) {
        let d = FrameDecoder { frame_bytes_max: 1_024 };
        // Half the cases start with a valid header prefix so the decoder
        // gets past the magic and meets bad lengths, kinds and bodies.
        let mut input = if with_header { b"MRCT\x01\x00".to_vec() } else { Vec::new() };
        input.extend_from_slice(&bytes);
        for f in feed(&d, &input, &cuts).into_iter().flatten() {
            parse_any(&f);
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic_a_body_parser(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let f = Frame { kind: Kind::Requests, request_id: 0, body: bytes.into() };
        parse_any(&f);
    }

    #[test]
    fn a_batch_round_trips_through_any_split(
        requests in proptest::collection::vec(request(), 0..20),
        id in any::<u64>(),
        cuts in proptest::collection::vec(0..4_096usize, 0..6),
    ) {
        let batch = Requests { requests };
        let mut wire = BytesMut::new();
        encode_frame(&mut wire, Kind::Requests, id, &batch.to_body());
        encode_frame(&mut wire, Kind::Requests, id + 1, &batch.to_body());
        let mut cuts = cuts;
        cuts.sort();
        let got = feed(&FrameDecoder::default(), &wire, &cuts);
        prop_assert_eq!(got.len(), 2);
        for (i, f) in got.into_iter().enumerate() {
            let f = f.unwrap();
            prop_assert_eq!(f.request_id, id + i as u64);
            prop_assert_eq!(Requests::from_body(&f.body).unwrap(), batch.clone());
        }
    }
}

#[test]
fn every_flipped_bit_of_a_frame_is_caught() {
    let body = Requests {
        requests: vec![
            Request::GetSku { sku: 7 },
            Request::Deposit {
                account: 1,
                amount: 2,
            },
        ],
    }
    .to_body();
    let mut wire = BytesMut::new();
    encode_frame(&mut wire, Kind::Requests, 42, &body);
    let d = FrameDecoder::default();
    for bit in 0..wire.len() * 8 {
        let mut bad = wire.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        match d.decode(&mut bad) {
            Err(_) | Ok(None) => {}
            Ok(Some(f)) => panic!("bit {bit}: decoded {f:?}"),
        }
    }
}

#[test]
fn every_message_type_round_trips() {
    let hello = Hello {
        version: VERSION,
        auth_token: Some("s3cret".into()),
        client: "test".into(),
    };
    assert_eq!(Hello::from_body(&hello.to_body()).unwrap(), hello);
    let welcome = Welcome {
        version: VERSION,
        shards: 2,
        shard_hash: 1,
        shard: 1,
        ports: vec![7071, 7072],
        frame_bytes_max: 1 << 20,
        batch_len_max: 4096,
        in_flight_max: 1024,
        order_lines_max: 64,
        answer_bytes_max: 16 << 20,
    };
    assert_eq!(Welcome::from_body(&welcome.to_body()).unwrap(), welcome);
    let answers = Answers {
        load: 17,
        answers: vec![
            Answer::Done(Reply::Order(OrderView {
                id: u128::MAX,
                account: 3,
                lines: vec![Line {
                    sku: 1,
                    qty: 2,
                    unit_price: 3,
                }],
                total: 6,
                state: OrderState::Paid,
                created_at: 9,
                expires_at: 0,
                restocked: false,
            })),
            Answer::Rejected(Reject::OutOfStock {
                sku: 1,
                available: 0,
                requested: 2,
            }),
            Answer::Failed {
                code: ErrorCode::Busy as u16,
            },
        ],
    };
    assert_eq!(Answers::from_body(&answers.to_body()).unwrap(), answers);
    let err = ErrorBody {
        code: ErrorCode::AuthFailed as u16,
        message: "wrong token".into(),
    };
    assert_eq!(ErrorBody::from_body(&err.to_body()).unwrap(), err);
    // A body of one type is not taken for another.
    assert!(Welcome::from_body(&hello.to_body()).is_err());
}
