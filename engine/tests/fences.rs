//! Two-phase messages out of order, repeated, or for transactions nobody
//! remembers. FIFO rings never produce these today; recovery and the network
//! will, so the participant's fences are tested here directly.

use mercato_engine::message::{OneOrMany, PeerMsg, TxId, Vote};
use mercato_engine::shard::{Output, Shard};
use mercato_engine::{Command, LineRequest, Reply, SkuView};

const ACCOUNT: u64 = 9;

/// A SKU that shard 1 of 2 owns.
fn sku() -> u64 {
    (0..)
        .find(|&x| mercato_engine::hash::shard_of(x, 2) == 1)
        .unwrap()
}

/// Shard 1 of 2, owning `sku()` with 10 units at 300.
fn participant() -> Shard {
    let mut s = Shard::new(1, 2);
    let mut out = Output::default();
    s.apply(
        0,
        Command::PutSku {
            sku: sku(),
            price: 300,
            per_user_limit: 0,
        },
        0,
        &mut out,
    );
    s.apply(
        0,
        Command::Restock {
            sku: sku(),
            qty: 10,
        },
        0,
        &mut out,
    );
    s
}

fn stock(s: &mut Shard) -> SkuView {
    let mut out = Output::default();
    s.apply(0, Command::GetSku { sku: sku() }, 0, &mut out);
    match out.replies.pop() {
        Some((_, Ok(Reply::Sku(v)))) => v,
        other => panic!("{other:?}"),
    }
}

fn prepare(s: &mut Shard, tx: TxId, qty: u32) -> Vote {
    let mut out = Output::default();
    let lines = OneOrMany::One(LineRequest::new(sku(), qty));
    s.deliver(
        0,
        PeerMsg::Prepare {
            tx,
            account: ACCOUNT,
            order: u128::from(tx.seq),
            lines,
        },
        0,
        &mut out,
    );
    match out.sends.pop() {
        Some((0, PeerMsg::Vote { tx: t, vote })) if t == tx => vote,
        other => panic!("expected a vote, got {other:?}"),
    }
}

fn decide(s: &mut Shard, tx: TxId, commit: bool) -> Output {
    let mut out = Output::default();
    s.deliver(
        0,
        PeerMsg::Decide {
            tx,
            commit,
            immediate: true,
        },
        0,
        &mut out,
    );
    out
}

#[test]
fn a_cancel_that_overtakes_its_try_fences_the_try_out() {
    let mut s = participant();
    let tx = TxId {
        coordinator: 0,
        seq: 1,
    };
    let out = decide(&mut s, tx, false);
    assert!(out.records.is_empty(), "nothing was held, nothing to undo");
    assert_eq!(prepare(&mut s, tx, 2), Vote::Fenced);
    assert_eq!(stock(&mut s).available, 10, "the fenced Try held nothing");
    assert_eq!(
        prepare(&mut s, tx, 2),
        Vote::Fenced,
        "a repeat of the fenced Try is refused too"
    );
    assert_eq!(s.in_flight(), 0);
    // A later transaction passes, and its watermark takes over from the fence.
    assert!(matches!(
        prepare(
            &mut s,
            TxId {
                coordinator: 0,
                seq: 2
            },
            1
        ),
        Vote::Yes(_)
    ));
    assert_eq!(prepare(&mut s, tx, 2), Vote::Fenced);
    assert_eq!(stock(&mut s).available, 9);
}

#[test]
fn a_repeated_try_holds_once_and_votes_the_same() {
    let mut s = participant();
    let tx = TxId {
        coordinator: 0,
        seq: 1,
    };
    assert_eq!(prepare(&mut s, tx, 3), Vote::Yes(OneOrMany::One(300)));
    assert_eq!(prepare(&mut s, tx, 3), Vote::Yes(OneOrMany::One(300)));
    let v = stock(&mut s);
    assert_eq!((v.available, v.reserved), (7, 3));
    decide(&mut s, tx, true);
    let v = stock(&mut s);
    assert_eq!((v.available, v.reserved, v.sold), (7, 0, 3));
}

#[test]
fn a_late_try_after_the_decision_is_refused() {
    let mut s = participant();
    let tx = TxId {
        coordinator: 0,
        seq: 4,
    };
    assert!(matches!(prepare(&mut s, tx, 2), Vote::Yes(_)));
    decide(&mut s, tx, true);
    assert_eq!(
        prepare(&mut s, tx, 2),
        Vote::Fenced,
        "a duplicate Try must not sell twice"
    );
    // An older transaction of the same coordinator is late too.
    assert_eq!(
        prepare(
            &mut s,
            TxId {
                coordinator: 0,
                seq: 2
            },
            1
        ),
        Vote::Fenced
    );
    let v = stock(&mut s);
    assert_eq!((v.available, v.reserved, v.sold), (8, 0, 2));
}

#[test]
fn a_repeated_decision_changes_nothing() {
    let mut s = participant();
    let tx = TxId {
        coordinator: 0,
        seq: 1,
    };
    assert!(matches!(prepare(&mut s, tx, 2), Vote::Yes(_)));
    decide(&mut s, tx, false);
    let again = decide(&mut s, tx, false);
    assert!(again.records.is_empty());
    let again = decide(&mut s, tx, true);
    assert!(
        again.records.is_empty(),
        "a commit after the abort is ignored"
    );
    assert_eq!(stock(&mut s).available, 10);
}

#[test]
fn a_yes_vote_for_an_unknown_transaction_is_answered_with_abort() {
    // Presumed abort: a coordinator that does not know the transaction tells
    // the voter to release whatever it holds.
    let mut coordinator = Shard::new(0, 2);
    let mut out = Output::default();
    let tx = TxId {
        coordinator: 0,
        seq: 77,
    };
    coordinator.deliver(
        1,
        PeerMsg::Vote {
            tx,
            vote: Vote::Yes(OneOrMany::One(1)),
        },
        0,
        &mut out,
    );
    assert_eq!(
        out.sends,
        vec![(
            1,
            PeerMsg::Decide {
                tx,
                commit: false,
                immediate: false
            }
        )]
    );
    assert!(out.records.is_empty());
}
