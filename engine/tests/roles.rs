//! Tokens with roles against a real `mercato serve --tokens-file`: every
//! request kind, sent by a token of every role, is refused `Forbidden`
//! exactly when its role is below what the kind needs (the table below,
//! written out here apart from the server's), and a refused write
//! changes nothing. A missing or wrong token is refused at the handshake.

mod util;

use mercato_client::{Client, ClientConfig, ClientError, wire};
use util::{Server, TempDir};

const ADMIN: &str = "admin-0123456789abcdef";
const TRADER: &str = "trader-0123456789abcdef";
const READER: &str = "reader-0123456789abcdef";

/// A name per request kind; the match has no catch-all, so a new kind does
/// not compile until it is in the table.
fn kind(r: &wire::Request) -> &'static str {
    use wire::Request as R;
    match r {
        R::PutSku { .. } => "PutSku",
        R::Restock { .. } => "Restock",
        R::Deposit { .. } => "Deposit",
        R::Withdraw { .. } => "Withdraw",
        R::PlaceOrder { .. } => "PlaceOrder",
        R::Pay { .. } => "Pay",
        R::Cancel { .. } => "Cancel",
        R::Refund { .. } => "Refund",
        R::GetSku { .. } => "GetSku",
        R::GetAccount { .. } => "GetAccount",
        R::GetOrder { .. } => "GetOrder",
        R::ListOrders { .. } => "ListOrders",
        R::CacheSet { .. } => "CacheSet",
        R::CacheGet { .. } => "CacheGet",
        R::CacheDel { .. } => "CacheDel",
        R::CacheStats => "CacheStats",
        R::Info => "Info",
        R::LockAcquire { .. } => "LockAcquire",
        R::LockRenew { .. } => "LockRenew",
        R::LockRelease { .. } => "LockRelease",
        R::LockInspect { .. } => "LockInspect",
        R::LockCancel { .. } => "LockCancel",
        R::Fenced { write, .. } => match write.as_ref() {
            wire::FencedWrite::PutSku { .. } => "Fenced PutSku",
            wire::FencedWrite::Restock { .. } => "Fenced Restock",
            wire::FencedWrite::Deposit { .. } => "Fenced Deposit",
            wire::FencedWrite::Withdraw { .. } => "Fenced Withdraw",
            wire::FencedWrite::PlaceOrder { .. } => "Fenced PlaceOrder",
            wire::FencedWrite::Pay { .. } => "Fenced Pay",
            wire::FencedWrite::Cancel { .. } => "Fenced Cancel",
            wire::FencedWrite::Refund { .. } => "Fenced Refund",
            wire::FencedWrite::CacheSet { .. } => "Fenced CacheSet",
        },
        R::SagaBegin { .. } => "SagaBegin",
        R::SagaStep { .. } => "SagaStep",
        R::SagaAbort { .. } => "SagaAbort",
        R::SagaEnd { .. } => "SagaEnd",
        R::SagaGet { .. } => "SagaGet",
        R::SagaList { .. } => "SagaList",
        R::Subscribe { .. } => "Subscribe",
        R::FeedAck { .. } => "FeedAck",
        R::Unsubscribe => "Unsubscribe",
        R::SubscriptionList => "SubscriptionList",
        R::SubscriptionDrop { .. } => "SubscriptionDrop",
    }
}

/// The roles as the README gives them: reader reads and follows the feed,
/// trader also trades, takes locks and runs sagas, admin does the rest.
fn needs(kind: &str) -> wire::Role {
    match kind {
        "GetSku" | "GetAccount" | "GetOrder" | "ListOrders" | "CacheGet" | "CacheStats"
        | "Info" | "LockInspect" | "SagaGet" | "SagaList" | "Subscribe" | "FeedAck"
        | "Unsubscribe" | "SubscriptionList" => wire::Role::Reader,
        "PlaceOrder" | "Pay" | "Cancel" | "CacheSet" | "CacheDel" | "LockAcquire" | "LockRenew"
        | "LockRelease" | "LockCancel" | "SagaBegin" | "SagaStep" | "SagaAbort" | "SagaEnd"
        | "Fenced PlaceOrder" | "Fenced Pay" | "Fenced Cancel" | "Fenced CacheSet" => {
            wire::Role::Trader
        }
        "PutSku" | "Restock" | "Deposit" | "Withdraw" | "Refund" | "SubscriptionDrop"
        | "Fenced PutSku" | "Fenced Restock" | "Fenced Deposit" | "Fenced Withdraw"
        | "Fenced Refund" => wire::Role::Admin,
        other => panic!("{other} is not in the table"),
    }
}

/// One request of every kind.
fn every_kind() -> Vec<wire::Request> {
    use wire::Request as R;
    let line = || wire::LineRequest {
        sku: 1,
        qty: 1,
        expected_unit_price: None,
    };
    let fenced = |write| R::Fenced {
        lock: b"fence".to_vec(),
        token: 1,
        write: Box::new(write),
    };
    vec![
        R::PutSku {
            sku: 9,
            price: 1,
            per_user_limit: 0,
        },
        R::Restock { sku: 1, qty: 5 },
        R::Deposit {
            account: 1,
            amount: 5,
        },
        R::Withdraw {
            account: 1,
            amount: 5,
        },
        R::PlaceOrder {
            id: 77,
            account: 1,
            lines: vec![line()],
            payment: wire::Payment::Deferred { ttl_ms: 60_000 },
        },
        R::Pay {
            account: 1,
            order: 78,
        },
        R::Cancel {
            account: 1,
            order: 78,
        },
        R::Refund {
            account: 1,
            order: 78,
            restock: true,
        },
        R::GetSku { sku: 1 },
        R::GetAccount { account: 1 },
        R::GetOrder {
            account: 1,
            order: 78,
        },
        R::ListOrders {
            account: 1,
            after: None,
            limit: 10,
        },
        R::CacheSet {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl_ms: 0,
        },
        R::CacheGet { key: b"k".to_vec() },
        R::CacheDel { key: b"k".to_vec() },
        R::CacheStats,
        R::Info,
        R::LockAcquire {
            name: b"l".to_vec(),
            owner: 1,
            permits: 1,
            ttl_ms: 10_000,
            wait: wire::LockWait::Try,
            bind: false,
        },
        R::LockRenew {
            name: b"l".to_vec(),
            token: 999,
            ttl_ms: 10_000,
        },
        R::LockRelease {
            name: b"l".to_vec(),
            token: 999,
        },
        R::LockInspect {
            name: b"l".to_vec(),
        },
        R::LockCancel {
            name: b"l".to_vec(),
            ticket: 999,
        },
        fenced(wire::FencedWrite::PutSku {
            sku: 9,
            price: 1,
            per_user_limit: 0,
        }),
        fenced(wire::FencedWrite::Restock { sku: 1, qty: 5 }),
        fenced(wire::FencedWrite::Deposit {
            account: 1,
            amount: 5,
        }),
        fenced(wire::FencedWrite::Withdraw {
            account: 1,
            amount: 5,
        }),
        fenced(wire::FencedWrite::PlaceOrder {
            id: 79,
            account: 1,
            lines: vec![line()],
            payment: wire::Payment::Immediate,
        }),
        fenced(wire::FencedWrite::Pay {
            account: 1,
            order: 78,
        }),
        fenced(wire::FencedWrite::Cancel {
            account: 1,
            order: 78,
        }),
        fenced(wire::FencedWrite::Refund {
            account: 1,
            order: 78,
            restock: false,
        }),
        fenced(wire::FencedWrite::CacheSet {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ttl_ms: 0,
        }),
        R::SagaBegin {
            id: 5,
            name: b"s".to_vec(),
            payload: Vec::new(),
        },
        R::SagaStep {
            id: 6,
            step: 0,
            phase: wire::StepPhase::Started {
                name: b"charge".to_vec(),
            },
        },
        R::SagaAbort { id: 6 },
        R::SagaEnd { id: 6 },
        R::SagaGet { id: 6 },
        R::SagaList {
            shard: 0,
            after: None,
            limit: 10,
            unfinished: false,
        },
        R::Subscribe {
            name: None,
            start: wire::FeedStart::Now,
            filter: wire::FeedFilter::default(),
        },
        R::FeedAck {
            positions: vec![1, 1],
        },
        R::Unsubscribe,
        R::SubscriptionList,
        R::SubscriptionDrop { name: "x".into() },
    ]
}

fn connect(server: &Server, token: Option<&str>) -> Result<Client, ClientError> {
    let config = ClientConfig {
        auth_token: token.map(String::from),
        ..ClientConfig::default()
    };
    Client::connect(server.main, config)
}

#[test]
fn every_request_kind_is_refused_below_its_role_and_changes_nothing() {
    let dir = TempDir::new("roles");
    let tokens = dir.0.join("tokens");
    std::fs::create_dir_all(&dir.0).unwrap();
    // The trader's token is given by its SHA-256 only.
    let trader_digest: String = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(TRADER.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect()
    };
    std::fs::write(
        &tokens,
        format!("# role token\nadmin {ADMIN}\ntrader sha256:{trader_digest}\nreader {READER}\n"),
    )
    .unwrap();
    let server = Server::start(2, &["--tokens-file", tokens.to_str().unwrap()]);

    let admin = connect(&server, Some(ADMIN)).unwrap();
    admin.put_sku(1, 100, 0).unwrap().unwrap();
    admin.restock(1, 50).unwrap().unwrap();
    admin.deposit(1, 10_000).unwrap().unwrap();
    let sku_before = admin.get_sku(1).unwrap().unwrap();
    let balance_before = admin.get_account(1).unwrap().unwrap().balance;

    let requests = every_kind();
    let mut kinds: Vec<&str> = requests.iter().map(kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), requests.len(), "one request per kind");
    for (role, token) in [
        (wire::Role::Reader, READER),
        (wire::Role::Trader, TRADER),
        (wire::Role::Admin, ADMIN),
    ] {
        let c = connect(&server, Some(token)).unwrap();
        for r in &requests {
            let k = kind(r);
            // One at a time, so a refusal is its own and not its batch's.
            let answers = c.submit(vec![r.clone()]).unwrap();
            let forbidden = matches!(
                &answers[0],
                wire::Answer::Rejected(wire::Reject::Forbidden { role: got, needs })
                    if *got == role && *needs == self::needs(k)
            );
            assert_eq!(
                forbidden,
                needs(k) > role,
                "{k} from a {role:?} token: {:?}",
                answers[0]
            );
        }
        if role < wire::Role::Admin {
            // Nothing the refused writes asked for happened: no units or
            // money came or went, no SKU was put. (A trader's own order
            // holds a unit, deferred, without paying.)
            let sku = admin.get_sku(1).unwrap().unwrap();
            assert_eq!(
                sku.available + sku.reserved + sku.sold,
                50,
                "{role:?}: {sku:?}"
            );
            assert_eq!(sku.price, sku_before.price);
            assert_eq!(
                admin.get_account(1).unwrap().unwrap().balance,
                balance_before
            );
            assert!(admin.get_sku(9).unwrap().is_err(), "no SKU 9 was put");
            if role == wire::Role::Reader {
                assert_eq!(sku, sku_before, "a reader changed nothing");
            }
        }
    }
}

#[test]
fn a_missing_or_wrong_token_is_refused_at_the_handshake() {
    let dir = TempDir::new("roles-handshake");
    std::fs::create_dir_all(&dir.0).unwrap();
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("reader {READER}\n")).unwrap();
    let server = Server::start(1, &["--tokens-file", tokens.to_str().unwrap()]);
    for token in [None, Some("reader-0123456789abcdeX"), Some("reader")] {
        let err = connect(&server, token).err().expect("refused");
        assert!(err.to_string().contains("auth"), "{token:?}: {err}");
    }
    let c = connect(&server, Some(READER)).unwrap();
    assert!(c.get_sku(1).unwrap().is_err(), "a reader reads");
}

#[test]
fn a_bad_tokens_file_stops_the_server_with_its_line() {
    let dir = TempDir::new("roles-bad");
    std::fs::create_dir_all(&dir.0).unwrap();
    let tokens = dir.0.join("tokens");
    std::fs::write(&tokens, format!("admin {ADMIN}\nroot {TRADER}\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mercato"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tokens-file"])
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2"), "{err}");
}
