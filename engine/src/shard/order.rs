//! `place_order`: validation, idempotency, the single-shard fast path and the
//! coordinator's side of two-phase commit.

use std::hash::Hasher;

use super::{Output, PendingTx, Shard, ShardSet, Token};
use crate::command::{PlaceOrder, Reply};
use crate::error::Reject;
use crate::hash::{IdHasher, shard_of};
use crate::limits::{ORDER_LINES_MAX, ORDER_TTL_MS_MAX};
use crate::message::{OneOrMany, PeerMsg, TxId, Vote};
use crate::order_lines::OrderLines;
use crate::record::{NewOrder, Record};
use crate::types::{Line, LineRequest, Money, OrderKey, Payment, ShardId, TimestampMs};

/// Hash of what a retry must repeat exactly: lines, price guards and payment.
pub fn fingerprint(lines: &[LineRequest], payment: Payment) -> u64 {
    let mut h = IdHasher::default();
    for l in lines {
        h.write_u64(l.sku);
        h.write_u32(l.qty);
        match l.expected_unit_price {
            Some(p) => {
                h.write_u8(1);
                h.write_u64(p);
            }
            None => h.write_u8(0),
        }
    }
    match payment {
        Payment::Immediate => h.write_u8(0),
        Payment::Deferred { ttl_ms } => {
            h.write_u8(1);
            h.write_u64(ttl_ms);
        }
    }
    h.finish()
}

/// Checks that need no state. These failures are not remembered: the same
/// request fails the same way every time.
fn validate(p: &PlaceOrder) -> Result<(), Reject> {
    if p.lines.is_empty() {
        return Err(Reject::EmptyOrder);
    }
    if p.lines.len() > ORDER_LINES_MAX {
        return Err(Reject::TooManyLines {
            count: p.lines.len(),
            max: ORDER_LINES_MAX,
        });
    }
    for (i, l) in p.lines.iter().enumerate() {
        if l.qty == 0 {
            return Err(Reject::ZeroQuantity { sku: l.sku });
        }
        // Orders have at most 64 lines, so the quadratic scan beats a set.
        if p.lines[..i].iter().any(|m| m.sku == l.sku) {
            return Err(Reject::DuplicateSku { sku: l.sku });
        }
    }
    if let Payment::Deferred { ttl_ms } = p.payment {
        if ttl_ms == 0 || ttl_ms > ORDER_TTL_MS_MAX {
            return Err(Reject::InvalidTtl {
                ttl_ms,
                max_ms: ORDER_TTL_MS_MAX,
            });
        }
    }
    Ok(())
}

fn total_of(lines: impl IntoIterator<Item = Line>) -> Result<Money, Reject> {
    lines.into_iter().try_fold(0u64, |acc, l| {
        l.unit_price
            .checked_mul(u64::from(l.qty))
            .and_then(|x| acc.checked_add(x))
            .ok_or(Reject::TotalOverflow)
    })
}

impl Shard {
    pub(crate) fn place_order(
        &mut self,
        token: Token,
        p: PlaceOrder,
        now: TimestampMs,
        out: &mut Output,
    ) {
        if let Err(r) = validate(&p) {
            out.replies.push((token, Err(r)));
            return;
        }
        let key = OrderKey::new(p.account, p.id);
        let fp = fingerprint(&p.lines, p.payment);
        if let Some(answer) = self.seen_before(key, fp, token) {
            if let Some(outcome) = answer {
                out.replies.push((token, outcome));
            }
            return;
        }
        let Some(account) = self.state.accounts.get(&p.account) else {
            let reject = Reject::UnknownAccount { account: p.account };
            self.reject(key, fp, reject, [token], out);
            return;
        };
        let balance = account.balance;

        if p.lines.iter().all(|l| self.owns(l.sku)) {
            let result = self.price_order(p.account, &p.lines).and_then(|lines| {
                let total = total_of(lines.iter())?;
                if p.payment == Payment::Immediate && balance < total {
                    return Err(Reject::InsufficientFunds {
                        account: p.account,
                        balance,
                        needed: total,
                    });
                }
                Ok((lines, total))
            });
            match result {
                Ok((lines, total)) => {
                    let order = NewOrder {
                        key,
                        lines,
                        total,
                        payment: p.payment,
                        created_at: now,
                        fingerprint: fp,
                    };
                    out.replies.push((token, Ok(Reply::Order(order.view()))));
                    self.commit(Record::OrderPlaced(order), out);
                }
                Err(r) => self.reject(key, fp, r, [token], out),
            }
            return;
        }

        let tx = TxId {
            coordinator: self.id,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        // Each line's shard, once, on the stack; participants in ascending order.
        let mut owners = [0 as ShardId; ORDER_LINES_MAX];
        for (owner, l) in owners.iter_mut().zip(&p.lines) {
            *owner = shard_of(l.sku, self.shards);
        }
        let owners = &mut owners[..p.lines.len()];
        let mut participants = ShardSet::default();
        owners.iter().for_each(|&s| participants.insert(s));
        let lines = OrderLines::collect(p.lines.iter().map(|l| Line {
            sku: l.sku,
            qty: l.qty,
            unit_price: 0,
        }));
        self.pending.insert(
            tx,
            PendingTx {
                key,
                lines,
                payment: p.payment,
                fingerprint: fp,
                created_at: now,
                votes_missing: participants.iter().count() as u16,
                voted_yes: ShardSet::default(),
                reject: None,
                waiter: token,
                more_waiters: Vec::new(),
            },
        );
        self.pending_keys.insert(key, tx);
        for s in participants.iter() {
            let lines = share_of(&p.lines, s, self.shards);
            if s == self.id {
                let vote = self.prepare(tx, p.account, p.id, &lines, out);
                self.on_vote(tx, s, vote, now, out);
            } else {
                self.send(
                    s,
                    PeerMsg::Prepare {
                        tx,
                        account: p.account,
                        order: p.id,
                        lines,
                    },
                    out,
                );
            }
        }
    }

    /// `Some(Some(answer))` for a retry of a decided order, `Some(None)` when the
    /// caller was queued behind the same order still in flight, `None` if new.
    fn seen_before(
        &mut self,
        key: OrderKey,
        fp: u64,
        token: Token,
    ) -> Option<Option<crate::command::Outcome>> {
        let conflict = Err(Reject::IdempotencyConflict { order: key.id() });
        if let Some(o) = self.state.orders.get(&key) {
            let same = o.fingerprint == fp;
            return Some(Some(if same {
                self.order_view(key).map(Reply::Order)
            } else {
                conflict
            }));
        }
        if let Some(&(first_fp, reject)) = self.state.rejected.get(&key) {
            return Some(Some(if first_fp == fp {
                Err(reject)
            } else {
                conflict
            }));
        }
        if let Some(tx) = self.pending_keys.get(&key) {
            let pending = self.pending.get_mut(tx).expect("pending key has its tx");
            if pending.fingerprint == fp {
                pending.more_waiters.push(token);
                return Some(None);
            }
            return Some(Some(conflict));
        }
        None
    }

    /// Check every line and price it, failing on the first bad one. Sized up
    /// front: collecting through a `Result` would over-allocate and then
    /// shrink with a realloc on every order.
    pub(crate) fn price_lines(
        &self,
        account: u64,
        lines: &[LineRequest],
    ) -> Result<Box<[Line]>, Reject> {
        let mut priced = Vec::with_capacity(lines.len());
        for l in lines {
            let unit_price = self.check_line(account, l)?;
            priced.push(Line {
                sku: l.sku,
                qty: l.qty,
                unit_price,
            });
        }
        Ok(priced.into_boxed_slice())
    }

    /// `price_lines` with a single line kept out of the heap: it lives in
    /// the order-table entry, or in the participant's hold.
    // Inlined into both callers: called out of line it cost the one-line
    // order path about 30 instructions (callgrind).
    #[inline(always)]
    pub(crate) fn price_order(
        &self,
        account: u64,
        lines: &[LineRequest],
    ) -> Result<OrderLines, Reject> {
        match lines {
            [l] => Ok(OrderLines::One {
                sku: l.sku,
                qty: l.qty,
                unit_price: self.check_line(account, l)?,
            }),
            _ => self.price_lines(account, lines).map(OrderLines::from),
        }
    }

    /// The line checks, in the order the reference model makes them.
    pub(crate) fn check_line(&self, account: u64, l: &LineRequest) -> Result<Money, Reject> {
        let s = self
            .state
            .skus
            .get(&l.sku)
            .ok_or(Reject::UnknownSku { sku: l.sku })?;
        if let Some(expected) = l.expected_unit_price {
            if expected != s.price {
                return Err(Reject::PriceChanged {
                    sku: l.sku,
                    expected,
                    actual: s.price,
                });
            }
        }
        if s.per_user_limit > 0 {
            let already = self
                .state
                .purchases
                .get(&(l.sku, account))
                .copied()
                .unwrap_or(0);
            if u64::from(already) + u64::from(l.qty) > u64::from(s.per_user_limit) {
                return Err(Reject::PerUserLimit {
                    sku: l.sku,
                    limit: s.per_user_limit,
                    already,
                    requested: l.qty,
                });
            }
        }
        if s.available < l.qty {
            return Err(Reject::OutOfStock {
                sku: l.sku,
                available: s.available,
                requested: l.qty,
            });
        }
        Ok(s.price)
    }

    fn reject(
        &mut self,
        key: OrderKey,
        fingerprint: u64,
        reject: Reject,
        waiters: impl IntoIterator<Item = Token>,
        out: &mut Output,
    ) {
        self.commit(
            Record::OrderRejected {
                key,
                fingerprint,
                reject,
            },
            out,
        );
        for t in waiters {
            out.replies.push((t, Err(reject)));
        }
    }

    /// Drop every two-phase order waiting for votes and return its callers:
    /// for a shard whose log failed, which can commit nothing more. Votes
    /// that still come find no order and are answered by presumed abort.
    pub fn abandon_pending(&mut self) -> Vec<Token> {
        self.pending_keys.clear();
        self.pending
            .drain()
            .flat_map(|(_, p)| std::iter::once(p.waiter).chain(p.more_waiters))
            .collect()
    }

    pub(crate) fn on_vote(
        &mut self,
        tx: TxId,
        from: ShardId,
        vote: Vote,
        now: TimestampMs,
        out: &mut Output,
    ) {
        let shards = self.shards;
        let Some(p) = self.pending.get_mut(&tx) else {
            // Presumed abort: a vote for a transaction we no longer know.
            if let Vote::Yes(_) = vote {
                self.decide_at(from, tx, false, false, out);
            }
            return;
        };
        p.votes_missing -= 1;
        match vote {
            Vote::Yes(prices) => {
                let mine = p
                    .lines
                    .prices_mut()
                    .filter(|&(sku, _)| shard_of(sku, shards) == from);
                for ((_, slot), &price) in mine.zip(prices.iter()) {
                    *slot = price;
                }
                p.voted_yes.insert(from);
            }
            Vote::No(reject) => {
                // Report the earliest failing line, as a single shard checking
                // the lines in order would.
                let at = reject_sku(&reject)
                    .and_then(|sku| p.lines.iter().position(|l| l.sku == sku))
                    .unwrap_or(usize::MAX);
                if p.reject.is_none_or(|(i, _)| at < i) {
                    p.reject = Some((at, reject));
                }
            }
            Vote::Fenced => {
                // A participant saw this transaction decided already, which
                // only a reused sequence number can cause: none is reused
                // while the engine runs, and recovery must restart sequences
                // above every participant's fence. Abort; nothing was held.
                let r = Reject::IdempotencyConflict { order: p.key.id() };
                p.reject.get_or_insert((usize::MAX, r));
            }
        }
        if p.votes_missing == 0 {
            let p = self.pending.remove(&tx).expect("pending tx");
            self.pending_keys.remove(&p.key);
            self.finish(tx, p, now, out);
        }
    }

    fn finish(&mut self, tx: TxId, p: PendingTx, now: TimestampMs, out: &mut Output) {
        let _ = now;
        let PendingTx {
            key,
            lines,
            payment,
            fingerprint,
            created_at,
            voted_yes,
            reject,
            waiter,
            more_waiters,
            ..
        } = p;
        let decision = match reject {
            Some((_, r)) => Err(r),
            None => total_of(lines.iter()).and_then(|total| {
                let balance = self
                    .state
                    .accounts
                    .get(&key.account)
                    .map_or(0, |a| a.balance);
                if payment == Payment::Immediate && balance < total {
                    Err(Reject::InsufficientFunds {
                        account: key.account,
                        balance,
                        needed: total,
                    })
                } else {
                    Ok(total)
                }
            }),
        };
        let immediate = payment == Payment::Immediate;
        // Either decision changes the SKU views of every shard that holds
        // stock for this order.
        if let Some(t) = &mut self.touched {
            let (me, shards) = (self.id, self.shards);
            t.remote.extend(lines.iter().map(|l| l.sku).filter(|&sku| {
                shard_of(sku, shards) != me && voted_yes.contains(shard_of(sku, shards))
            }));
        }
        match decision {
            Ok(total) => {
                let order = NewOrder {
                    key,
                    lines,
                    total,
                    payment,
                    created_at,
                    fingerprint,
                };
                let view = Ok(Reply::Order(order.view()));
                // The commit point: once this record is durable the order exists.
                self.commit(Record::OrderCommitted { order, tx }, out);
                for s in voted_yes.iter() {
                    self.decide_at(s, tx, true, immediate, out);
                }
                // The first caller gets the view itself; only callers queued
                // behind a retry pay for a copy.
                let first = out.replies.len();
                out.replies.push((waiter, view));
                for t in more_waiters {
                    let copy = out.replies[first].1.clone();
                    out.replies.push((t, copy));
                }
            }
            Err(r) => {
                for s in voted_yes.iter() {
                    self.decide_at(s, tx, false, immediate, out);
                }
                let waiters = std::iter::once(waiter).chain(more_waiters);
                self.reject(key, fingerprint, r, waiters, out);
            }
        }
    }

    fn decide_at(&mut self, s: ShardId, tx: TxId, commit: bool, immediate: bool, out: &mut Output) {
        if s == self.id {
            self.decide(tx, commit, immediate, out);
        } else {
            self.send(
                s,
                PeerMsg::Decide {
                    tx,
                    commit,
                    immediate,
                },
                out,
            );
        }
    }
}

/// The lines of an order that `shard` owns, in order. Counted first so a
/// buffer is allocated once at its size (collecting a `filter` would grow
/// it and then shrink it with a realloc for every Prepare), and only for
/// more than one line.
fn share_of(lines: &[LineRequest], shard: ShardId, shards: u16) -> OneOrMany<LineRequest> {
    let on_shard = |l: &&LineRequest| shard_of(l.sku, shards) == shard;
    let n = lines.iter().filter(on_shard).count();
    if n == 1 {
        let line = lines.iter().find(on_shard).expect("the one line");
        return OneOrMany::One(*line);
    }
    let mut mine = Vec::with_capacity(n);
    mine.extend(lines.iter().filter(on_shard).copied());
    OneOrMany::Many(mine.into_boxed_slice())
}

/// The SKU a participant's rejection is about, to order rejections by line.
fn reject_sku(r: &Reject) -> Option<u64> {
    match *r {
        Reject::OutOfStock { sku, .. }
        | Reject::PerUserLimit { sku, .. }
        | Reject::PriceChanged { sku, .. }
        | Reject::UnknownSku { sku } => Some(sku),
        _ => None,
    }
}
