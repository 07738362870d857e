//! Records to bytes and back, for the write-ahead log.
//!
//! Hand-written and fixed-width little-endian, one kind byte per record
//! variant: a record is encoded on the shard thread for every change, so
//! the format is kept to plain copies. Changing any layout here means a new
//! `mercato_wal::format::FORMAT_VERSION`.

use crate::error::Reject;
use crate::lock::{LockError, LockRecord};
use crate::message::TxId;
use crate::record::{NewOrder, Record, Settle};
use crate::saga::{SagaError, SagaRecord, SagaState, StepState};
use crate::types::{Line, OrderKey, OrderState, Payment};

/// A record body that does not decode: only a bug or a foreign log gets here,
/// since the log checked the bytes' checksum first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record of kind {kind}: {what}")]
pub struct DecodeError {
    pub kind: u8,
    pub what: &'static str,
}

/// The kind byte of an `OrderRejected` body; snapshots store remembered
/// rejections in that form.
pub const ORDER_REJECTED: u8 = kind::ORDER_REJECTED;

mod kind {
    pub const SKU_PUT: u8 = 1;
    pub const RESTOCKED: u8 = 2;
    pub const DEPOSITED: u8 = 3;
    pub const WITHDREW: u8 = 4;
    pub const ORDER_PLACED: u8 = 5;
    pub const ORDER_COMMITTED: u8 = 6;
    pub const ORDER_REJECTED: u8 = 7;
    pub const PAID: u8 = 8;
    pub const CANCELLED: u8 = 9;
    pub const EXPIRED: u8 = 10;
    pub const REFUNDED: u8 = 11;
    pub const PREPARED: u8 = 12;
    pub const HOLD_COMMITTED: u8 = 13;
    pub const HOLD_ABORTED: u8 = 14;
    pub const STOCK_SETTLED: u8 = 15;
    pub const STOCK_CORRECTED: u8 = 16;
    pub const PURCHASES_CORRECTED: u8 = 17;
    pub const LOCK_GRANTED: u8 = 18;
    pub const LOCK_RENEWED: u8 = 19;
    pub const LOCK_ENDED: u8 = 20;
    pub const LOCK_KNOWN: u8 = 21;
    pub const SAGA_BEGUN: u8 = 22;
    pub const SAGA_STEP_STARTED: u8 = 23;
    pub const SAGA_STEP_DONE: u8 = 24;
    pub const SAGA_STEP_FAILED: u8 = 25;
    pub const SAGA_ABORTED: u8 = 26;
    pub const SAGA_STEP_COMPENSATED: u8 = 27;
    pub const SAGA_ENDED: u8 = 28;
}

/// Bytes before each body in [`encode_framed`]'s output: the kind, then
/// the body's length as a little-endian u32.
const FRAMED_HEAD_BYTES: usize = 5;

/// Appends `r` to `out` as its kind, its body's length and its body: many
/// records in one buffer, for [`framed`] to take apart. Only the shard and
/// its journal see this form; the log frames each body its own way.
pub fn encode_framed(r: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAMED_HEAD_BYTES]);
    let kind = encode(r, out);
    let len = (out.len() - start - FRAMED_HEAD_BYTES) as u32;
    out[start] = kind;
    out[start + 1..start + FRAMED_HEAD_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// The (kind, body) pairs [`encode_framed`] wrote into `bytes`, in order.
pub fn framed(mut bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (head, rest) = bytes.split_at_checked(FRAMED_HEAD_BYTES)?;
        let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes")) as usize;
        let (body, rest) = rest.split_at(len);
        bytes = rest;
        Some((head[0], body))
    })
}

/// The records [`encode_framed`] wrote into `bytes`, decoded. Only for
/// bytes this process encoded: anything else is a bug, and panics.
pub fn decode_framed(bytes: &[u8]) -> impl Iterator<Item = Record> + '_ {
    framed(bytes).map(|(kind, body)| decode(kind, body).expect("a record this process encoded"))
}

/// Appends `r`'s body to `out` and returns its kind.
pub fn encode(r: &Record, out: &mut Vec<u8>) -> u8 {
    let mut w = Writer(out);
    match r {
        Record::SkuPut {
            sku,
            price,
            per_user_limit,
        } => {
            w.u64(*sku);
            w.u64(*price);
            w.u32(*per_user_limit);
            kind::SKU_PUT
        }
        Record::Restocked { sku, qty } => {
            w.u64(*sku);
            w.u32(*qty);
            kind::RESTOCKED
        }
        Record::Deposited { account, amount } => {
            w.u64(*account);
            w.u64(*amount);
            kind::DEPOSITED
        }
        Record::Withdrew { account, amount } => {
            w.u64(*account);
            w.u64(*amount);
            kind::WITHDREW
        }
        Record::OrderPlaced(o) => {
            w.order(o);
            kind::ORDER_PLACED
        }
        Record::OrderCommitted { order, tx } => {
            w.order(order);
            w.tx(*tx);
            kind::ORDER_COMMITTED
        }
        Record::OrderRejected {
            key,
            fingerprint,
            reject,
        } => {
            w.key(*key);
            w.u64(*fingerprint);
            w.reject(reject);
            kind::ORDER_REJECTED
        }
        Record::Paid { key, lines } => {
            w.key(*key);
            w.lines(lines.iter());
            kind::PAID
        }
        Record::Cancelled { key, lines } => {
            w.key(*key);
            w.lines(lines.iter());
            kind::CANCELLED
        }
        Record::Expired { key, lines } => {
            w.key(*key);
            w.lines(lines.iter());
            kind::EXPIRED
        }
        Record::Refunded {
            key,
            restock,
            lines,
        } => {
            w.key(*key);
            w.u8(u8::from(*restock));
            w.lines(lines.iter());
            kind::REFUNDED
        }
        Record::Prepared {
            tx,
            account,
            order,
            lines,
        } => {
            w.tx(*tx);
            w.u64(*account);
            w.u128(*order);
            w.lines(lines.iter());
            kind::PREPARED
        }
        Record::HoldCommitted {
            tx,
            immediate,
            account,
            order,
            lines,
        } => {
            w.tx(*tx);
            w.u8(u8::from(*immediate));
            w.u64(*account);
            w.u128(*order);
            w.lines(lines.iter());
            kind::HOLD_COMMITTED
        }
        Record::HoldAborted {
            tx,
            account,
            order,
            lines,
        } => {
            w.tx(*tx);
            w.u64(*account);
            w.u128(*order);
            w.lines(lines.iter());
            kind::HOLD_ABORTED
        }
        Record::StockSettled {
            account,
            order,
            lines,
            settle,
        } => {
            w.u64(*account);
            w.u128(*order);
            w.u8(match settle {
                Settle::Sell => 0,
                Settle::Release { expired: false } => 1,
                Settle::Return { restock: false } => 2,
                Settle::Return { restock: true } => 3,
                Settle::Release { expired: true } => 4,
            });
            w.u8(lines.len() as u8);
            for &(sku, qty) in lines.iter() {
                w.u64(sku);
                w.u32(qty);
            }
            kind::STOCK_SETTLED
        }
        Record::StockCorrected {
            sku,
            available,
            reserved,
            sold,
        } => {
            w.u64(*sku);
            w.u32(*available);
            w.u32(*reserved);
            w.u32(*sold);
            kind::STOCK_CORRECTED
        }
        Record::PurchasesCorrected { sku, account, qty } => {
            w.u64(*sku);
            w.u64(*account);
            w.u32(*qty);
            kind::PURCHASES_CORRECTED
        }
        Record::Lock(l) => match l {
            LockRecord::Granted {
                name,
                permits,
                token,
                owner,
                session,
                ttl_ms,
                expires_at,
            } => {
                w.name(name);
                w.u32(*permits);
                w.u64(*token);
                w.u64(*owner);
                // Sessions are numbered from 1.
                w.u64(session.unwrap_or(0));
                w.u64(*ttl_ms);
                w.u64(*expires_at);
                kind::LOCK_GRANTED
            }
            LockRecord::Renewed {
                name,
                token,
                ttl_ms,
                expires_at,
            } => {
                w.name(name);
                w.u64(*token);
                w.u64(*ttl_ms);
                w.u64(*expires_at);
                kind::LOCK_RENEWED
            }
            LockRecord::Ended { name, token } => {
                w.name(name);
                w.u64(*token);
                kind::LOCK_ENDED
            }
            LockRecord::Known {
                name,
                permits,
                last_token,
            } => {
                w.name(name);
                w.u32(*permits);
                w.u64(*last_token);
                kind::LOCK_KNOWN
            }
        },
        Record::Saga(s) => match s {
            SagaRecord::Begun {
                id,
                name,
                payload,
                at,
            } => {
                w.u128(*id);
                w.name(name);
                w.name(payload);
                w.u64(*at);
                kind::SAGA_BEGUN
            }
            SagaRecord::StepStarted { id, step, name } => {
                w.u128(*id);
                w.u16(*step);
                w.name(name);
                kind::SAGA_STEP_STARTED
            }
            SagaRecord::StepDone { id, step, data } => {
                w.u128(*id);
                w.u16(*step);
                w.name(data);
                kind::SAGA_STEP_DONE
            }
            SagaRecord::StepFailed { id, step } => {
                w.u128(*id);
                w.u16(*step);
                kind::SAGA_STEP_FAILED
            }
            SagaRecord::Aborted { id } => {
                w.u128(*id);
                kind::SAGA_ABORTED
            }
            SagaRecord::StepCompensated { id, step } => {
                w.u128(*id);
                w.u16(*step);
                kind::SAGA_STEP_COMPENSATED
            }
            SagaRecord::Ended { id, committed, at } => {
                w.u128(*id);
                w.u8(u8::from(*committed));
                w.u64(*at);
                kind::SAGA_ENDED
            }
        },
    }
}

/// The record of kind `kind` whose body is `body`.
pub fn decode(kind: u8, body: &[u8]) -> Result<Record, DecodeError> {
    let mut r = Reader { b: body, kind };
    let record = match kind {
        kind::SKU_PUT => Record::SkuPut {
            sku: r.u64()?,
            price: r.u64()?,
            per_user_limit: r.u32()?,
        },
        kind::RESTOCKED => Record::Restocked {
            sku: r.u64()?,
            qty: r.u32()?,
        },
        kind::DEPOSITED => Record::Deposited {
            account: r.u64()?,
            amount: r.u64()?,
        },
        kind::WITHDREW => Record::Withdrew {
            account: r.u64()?,
            amount: r.u64()?,
        },
        kind::ORDER_PLACED => Record::OrderPlaced(r.order()?),
        kind::ORDER_COMMITTED => Record::OrderCommitted {
            order: r.order()?,
            tx: r.tx()?,
        },
        kind::ORDER_REJECTED => Record::OrderRejected {
            key: r.key()?,
            fingerprint: r.u64()?,
            reject: r.reject()?,
        },
        kind::PAID => Record::Paid {
            key: r.key()?,
            lines: r.lines()?.into(),
        },
        kind::CANCELLED => Record::Cancelled {
            key: r.key()?,
            lines: r.lines()?.into(),
        },
        kind::EXPIRED => Record::Expired {
            key: r.key()?,
            lines: r.lines()?.into(),
        },
        kind::REFUNDED => Record::Refunded {
            key: r.key()?,
            restock: r.flag()?,
            lines: r.lines()?.into(),
        },
        kind::PREPARED => Record::Prepared {
            tx: r.tx()?,
            account: r.u64()?,
            order: r.u128()?,
            lines: r.lines()?.into(),
        },
        kind::HOLD_COMMITTED => Record::HoldCommitted {
            tx: r.tx()?,
            immediate: r.flag()?,
            account: r.u64()?,
            order: r.u128()?,
            lines: r.lines()?.into(),
        },
        kind::HOLD_ABORTED => Record::HoldAborted {
            tx: r.tx()?,
            account: r.u64()?,
            order: r.u128()?,
            lines: r.lines()?.into(),
        },
        kind::STOCK_SETTLED => {
            let account = r.u64()?;
            let order = r.u128()?;
            let settle = match r.u8()? {
                0 => Settle::Sell,
                1 => Settle::Release { expired: false },
                2 => Settle::Return { restock: false },
                3 => Settle::Return { restock: true },
                4 => Settle::Release { expired: true },
                _ => return Err(r.bad("unknown settle")),
            };
            let n = r.u8()?;
            let lines = (0..n)
                .map(|_| Ok((r.u64()?, r.u32()?)))
                .collect::<Result<Box<[_]>, DecodeError>>()?;
            Record::StockSettled {
                account,
                order,
                lines,
                settle,
            }
        }
        kind::STOCK_CORRECTED => Record::StockCorrected {
            sku: r.u64()?,
            available: r.u32()?,
            reserved: r.u32()?,
            sold: r.u32()?,
        },
        kind::PURCHASES_CORRECTED => Record::PurchasesCorrected {
            sku: r.u64()?,
            account: r.u64()?,
            qty: r.u32()?,
        },
        kind::LOCK_GRANTED => Record::Lock(LockRecord::Granted {
            name: r.name()?,
            permits: r.u32()?,
            token: r.u64()?,
            owner: r.u64()?,
            session: Some(r.u64()?).filter(|&s| s != 0),
            ttl_ms: r.u64()?,
            expires_at: r.u64()?,
        }),
        kind::LOCK_RENEWED => Record::Lock(LockRecord::Renewed {
            name: r.name()?,
            token: r.u64()?,
            ttl_ms: r.u64()?,
            expires_at: r.u64()?,
        }),
        kind::LOCK_ENDED => Record::Lock(LockRecord::Ended {
            name: r.name()?,
            token: r.u64()?,
        }),
        kind::LOCK_KNOWN => Record::Lock(LockRecord::Known {
            name: r.name()?,
            permits: r.u32()?,
            last_token: r.u64()?,
        }),
        kind::SAGA_BEGUN => Record::Saga(SagaRecord::Begun {
            id: r.u128()?,
            name: r.name()?,
            payload: r.name()?,
            at: r.u64()?,
        }),
        kind::SAGA_STEP_STARTED => Record::Saga(SagaRecord::StepStarted {
            id: r.u128()?,
            step: r.u16()?,
            name: r.name()?,
        }),
        kind::SAGA_STEP_DONE => Record::Saga(SagaRecord::StepDone {
            id: r.u128()?,
            step: r.u16()?,
            data: r.name()?,
        }),
        kind::SAGA_STEP_FAILED => Record::Saga(SagaRecord::StepFailed {
            id: r.u128()?,
            step: r.u16()?,
        }),
        kind::SAGA_ABORTED => Record::Saga(SagaRecord::Aborted { id: r.u128()? }),
        kind::SAGA_STEP_COMPENSATED => Record::Saga(SagaRecord::StepCompensated {
            id: r.u128()?,
            step: r.u16()?,
        }),
        kind::SAGA_ENDED => Record::Saga(SagaRecord::Ended {
            id: r.u128()?,
            committed: r.flag()?,
            at: r.u64()?,
        }),
        _ => return Err(r.bad("unknown kind")),
    };
    if !r.b.is_empty() {
        return Err(r.bad("trailing bytes"));
    }
    Ok(record)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn name(&mut self, name: &[u8]) {
        self.u16(name.len() as u16);
        self.0.extend_from_slice(name);
    }
    fn key(&mut self, k: OrderKey) {
        self.u64(k.account);
        self.u128(k.id());
    }
    fn tx(&mut self, tx: TxId) {
        self.u16(tx.coordinator);
        self.u64(tx.seq);
    }
    fn lines(&mut self, lines: impl ExactSizeIterator<Item = Line>) {
        // Validation bounds an order to ORDER_LINES_MAX, which fits a byte.
        self.u8(lines.len() as u8);
        for l in lines {
            self.u64(l.sku);
            self.u32(l.qty);
            self.u64(l.unit_price);
        }
    }
    fn order(&mut self, o: &NewOrder) {
        self.key(o.key);
        self.lines(o.lines.iter());
        self.u64(o.total);
        match o.payment {
            Payment::Immediate => self.u64(0),
            // Validation keeps a TTL at least 1.
            Payment::Deferred { ttl_ms } => self.u64(ttl_ms),
        }
        self.u64(o.created_at);
        self.u64(o.fingerprint);
    }
    fn reject(&mut self, r: &Reject) {
        match *r {
            Reject::OutOfStock {
                sku,
                available,
                requested,
            } => {
                self.u8(0);
                self.u64(sku);
                self.u32(available);
                self.u32(requested);
            }
            Reject::InsufficientFunds {
                account,
                balance,
                needed,
            } => {
                self.u8(1);
                self.u64(account);
                self.u64(balance);
                self.u64(needed);
            }
            Reject::PerUserLimit {
                sku,
                limit,
                already,
                requested,
            } => {
                self.u8(2);
                self.u64(sku);
                self.u32(limit);
                self.u32(already);
                self.u32(requested);
            }
            Reject::PriceChanged {
                sku,
                expected,
                actual,
            } => {
                self.u8(3);
                self.u64(sku);
                self.u64(expected);
                self.u64(actual);
            }
            Reject::UnknownSku { sku } => {
                self.u8(4);
                self.u64(sku);
            }
            Reject::UnknownAccount { account } => {
                self.u8(5);
                self.u64(account);
            }
            Reject::UnknownOrder { account, order } => {
                self.u8(6);
                self.u64(account);
                self.u128(order);
            }
            Reject::InvalidState { order, state } => {
                self.u8(7);
                self.u128(order);
                self.u8(state_code(state));
            }
            Reject::TooManyLines { count, max } => {
                self.u8(8);
                self.u64(count as u64);
                self.u64(max as u64);
            }
            Reject::EmptyOrder => self.u8(9),
            Reject::ZeroQuantity { sku } => {
                self.u8(10);
                self.u64(sku);
            }
            Reject::DuplicateSku { sku } => {
                self.u8(11);
                self.u64(sku);
            }
            Reject::InvalidTtl { ttl_ms, max_ms } => {
                self.u8(12);
                self.u64(ttl_ms);
                self.u64(max_ms);
            }
            Reject::ZeroAmount => self.u8(13),
            Reject::BalanceOverflow {
                account,
                balance,
                amount,
            } => {
                self.u8(14);
                self.u64(account);
                self.u64(balance);
                self.u64(amount);
            }
            Reject::StockOverflow { sku, stocked, qty } => {
                self.u8(15);
                self.u64(sku);
                self.u32(stocked);
                self.u32(qty);
            }
            Reject::TotalOverflow => self.u8(16),
            Reject::IdempotencyConflict { order } => {
                self.u8(17);
                self.u128(order);
            }
            Reject::InvalidLimit { limit, max } => {
                self.u8(18);
                self.u32(limit);
                self.u32(max);
            }
            Reject::ShardUnavailable { shard } => {
                self.u8(19);
                self.u16(shard);
            }
            // Keyspace rejections are never logged; they have codes so that
            // every rejection encodes.
            Reject::InvalidKey { len, max } => {
                self.u8(20);
                self.u64(len);
                self.u64(max);
            }
            Reject::ValueTooLarge { len, max } => {
                self.u8(21);
                self.u64(len);
                self.u64(max);
            }
            // Never logged either: a lock refusal changes nothing.
            Reject::Lock(e) => {
                self.u8(22);
                let (code, a, b) = lock_error_parts(e);
                self.u8(code);
                self.u64(a);
                self.u64(b);
            }
            // A feed refusal is never logged, and its data is not kept.
            Reject::Feed(_) => self.u8(24),
            // Nor is a refusal by role, decided before any shard sees it.
            Reject::Forbidden { .. } => self.u8(25),
            Reject::Saga(e) => {
                self.u8(23);
                let (code, a, b) = saga_error_parts(e);
                self.u8(code);
                self.u64(a);
                self.u64(b);
            }
        }
    }
}

/// A lock error as a code and two numbers, and back.
pub(crate) fn lock_error_parts(e: LockError) -> (u8, u64, u64) {
    match e {
        LockError::InvalidName { len } => (0, len as u64, 0),
        LockError::InvalidTtl { ttl_ms } => (1, ttl_ms, 0),
        LockError::InvalidPermits { permits } => (2, u64::from(permits), 0),
        LockError::PermitsMismatch { permits } => (3, u64::from(permits), 0),
        LockError::Busy { token } => (4, token, 0),
        LockError::TooManyWaiters => (5, 0, 0),
        LockError::Timeout => (6, 0, 0),
        LockError::Stale { token, last } => (7, token, last),
        LockError::NotHeld => (8, 0, 0),
        LockError::Unknown => (9, 0, 0),
        LockError::UnknownTicket => (10, 0, 0),
        LockError::NotFenceable => (11, 0, 0),
        LockError::NoSession => (12, 0, 0),
    }
}

pub(crate) fn lock_error_of(code: u8, a: u64, b: u64) -> Option<LockError> {
    Some(match code {
        0 => LockError::InvalidName { len: a as usize },
        1 => LockError::InvalidTtl { ttl_ms: a },
        2 => LockError::InvalidPermits { permits: a as u32 },
        3 => LockError::PermitsMismatch { permits: a as u32 },
        4 => LockError::Busy { token: a },
        5 => LockError::TooManyWaiters,
        6 => LockError::Timeout,
        7 => LockError::Stale { token: a, last: b },
        8 => LockError::NotHeld,
        9 => LockError::Unknown,
        10 => LockError::UnknownTicket,
        11 => LockError::NotFenceable,
        12 => LockError::NoSession,
        _ => return None,
    })
}

fn saga_state_code(s: SagaState) -> u64 {
    match s {
        SagaState::Running => 0,
        SagaState::Compensating => 1,
        SagaState::Committed => 2,
        SagaState::Compensated => 3,
    }
}

fn step_state_code(s: StepState) -> u64 {
    match s {
        StepState::Started => 0,
        StepState::Done => 1,
        StepState::Failed => 2,
        StepState::Compensated => 3,
    }
}

/// A saga error as a code and two numbers, and back.
fn saga_error_parts(e: SagaError) -> (u8, u64, u64) {
    match e {
        SagaError::InvalidName { len } => (0, len as u64, 0),
        SagaError::DataTooLarge { len } => (1, len as u64, 0),
        SagaError::Unknown => (2, 0, 0),
        SagaError::Conflict => (3, 0, 0),
        SagaError::TooManySteps => (4, 0, 0),
        SagaError::OutOfOrder { step, next } => (5, u64::from(step), u64::from(next)),
        SagaError::StepMismatch { step } => (6, u64::from(step), 0),
        SagaError::WrongState { state } => (7, saga_state_code(state), 0),
        SagaError::WrongStepState { step, state } => (8, u64::from(step), step_state_code(state)),
        SagaError::NotReady => (9, 0, 0),
        SagaError::InvalidLimit { limit, max } => (10, u64::from(limit), u64::from(max)),
        SagaError::NoSuchShard { shard } => (11, u64::from(shard), 0),
    }
}

fn saga_error_of(code: u8, a: u64, b: u64) -> Option<SagaError> {
    let saga_state = |c| {
        [
            SagaState::Running,
            SagaState::Compensating,
            SagaState::Committed,
            SagaState::Compensated,
        ]
        .get(c as usize)
        .copied()
    };
    let step_state = |c| {
        [
            StepState::Started,
            StepState::Done,
            StepState::Failed,
            StepState::Compensated,
        ]
        .get(c as usize)
        .copied()
    };
    Some(match code {
        0 => SagaError::InvalidName { len: a as usize },
        1 => SagaError::DataTooLarge { len: a as usize },
        2 => SagaError::Unknown,
        3 => SagaError::Conflict,
        4 => SagaError::TooManySteps,
        5 => SagaError::OutOfOrder {
            step: a as u16,
            next: b as u16,
        },
        6 => SagaError::StepMismatch { step: a as u16 },
        7 => SagaError::WrongState {
            state: saga_state(a)?,
        },
        8 => SagaError::WrongStepState {
            step: a as u16,
            state: step_state(b)?,
        },
        9 => SagaError::NotReady,
        10 => SagaError::InvalidLimit {
            limit: a as u32,
            max: b as u32,
        },
        11 => SagaError::NoSuchShard { shard: a as u16 },
        _ => return None,
    })
}

/// An order state as one byte, in the log and in snapshots.
pub(crate) fn state_code(s: OrderState) -> u8 {
    match s {
        OrderState::Reserved => 0,
        OrderState::Paid => 1,
        OrderState::Cancelled => 2,
        OrderState::Expired => 3,
        OrderState::Refunded => 4,
    }
}

/// The order state whose byte is `code`.
pub(crate) fn state_of(code: u8) -> Option<OrderState> {
    Some(match code {
        0 => OrderState::Reserved,
        1 => OrderState::Paid,
        2 => OrderState::Cancelled,
        3 => OrderState::Expired,
        4 => OrderState::Refunded,
        _ => return None,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    kind: u8,
}

impl Reader<'_> {
    fn bad(&self, what: &'static str) -> DecodeError {
        DecodeError {
            kind: self.kind,
            what,
        }
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        if self.b.len() < N {
            return Err(self.bad("body too short"));
        }
        let (head, rest) = self.b.split_at(N);
        self.b = rest;
        Ok(head.try_into().expect("N bytes"))
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad("flag is neither 0 nor 1")),
        }
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.take()?))
    }
    fn name(&mut self) -> Result<Box<[u8]>, DecodeError> {
        let n = usize::from(self.u16()?);
        if self.b.len() < n {
            return Err(self.bad("body too short"));
        }
        let (name, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(name.into())
    }
    fn key(&mut self) -> Result<OrderKey, DecodeError> {
        Ok(OrderKey::new(self.u64()?, self.u128()?))
    }
    fn tx(&mut self) -> Result<TxId, DecodeError> {
        Ok(TxId {
            coordinator: self.u16()?,
            seq: self.u64()?,
        })
    }
    fn lines(&mut self) -> Result<Box<[Line]>, DecodeError> {
        let n = self.u8()?;
        (0..n)
            .map(|_| {
                Ok(Line {
                    sku: self.u64()?,
                    qty: self.u32()?,
                    unit_price: self.u64()?,
                })
            })
            .collect()
    }
    fn order(&mut self) -> Result<NewOrder, DecodeError> {
        let key = self.key()?;
        let lines = self.lines()?;
        let total = self.u64()?;
        let payment = match self.u64()? {
            0 => Payment::Immediate,
            ttl_ms => Payment::Deferred { ttl_ms },
        };
        Ok(NewOrder {
            key,
            lines: lines.into(),
            total,
            payment,
            created_at: self.u64()?,
            fingerprint: self.u64()?,
        })
    }
    fn state(&mut self) -> Result<OrderState, DecodeError> {
        let code = self.u8()?;
        state_of(code).ok_or_else(|| self.bad("unknown order state"))
    }
    fn reject(&mut self) -> Result<Reject, DecodeError> {
        Ok(match self.u8()? {
            0 => Reject::OutOfStock {
                sku: self.u64()?,
                available: self.u32()?,
                requested: self.u32()?,
            },
            1 => Reject::InsufficientFunds {
                account: self.u64()?,
                balance: self.u64()?,
                needed: self.u64()?,
            },
            2 => Reject::PerUserLimit {
                sku: self.u64()?,
                limit: self.u32()?,
                already: self.u32()?,
                requested: self.u32()?,
            },
            3 => Reject::PriceChanged {
                sku: self.u64()?,
                expected: self.u64()?,
                actual: self.u64()?,
            },
            4 => Reject::UnknownSku { sku: self.u64()? },
            5 => Reject::UnknownAccount {
                account: self.u64()?,
            },
            6 => Reject::UnknownOrder {
                account: self.u64()?,
                order: self.u128()?,
            },
            7 => Reject::InvalidState {
                order: self.u128()?,
                state: self.state()?,
            },
            8 => Reject::TooManyLines {
                count: self.u64()? as usize,
                max: self.u64()? as usize,
            },
            9 => Reject::EmptyOrder,
            10 => Reject::ZeroQuantity { sku: self.u64()? },
            11 => Reject::DuplicateSku { sku: self.u64()? },
            12 => Reject::InvalidTtl {
                ttl_ms: self.u64()?,
                max_ms: self.u64()?,
            },
            13 => Reject::ZeroAmount,
            14 => Reject::BalanceOverflow {
                account: self.u64()?,
                balance: self.u64()?,
                amount: self.u64()?,
            },
            15 => Reject::StockOverflow {
                sku: self.u64()?,
                stocked: self.u32()?,
                qty: self.u32()?,
            },
            16 => Reject::TotalOverflow,
            17 => Reject::IdempotencyConflict {
                order: self.u128()?,
            },
            18 => Reject::InvalidLimit {
                limit: self.u32()?,
                max: self.u32()?,
            },
            19 => Reject::ShardUnavailable { shard: self.u16()? },
            20 => Reject::InvalidKey {
                len: self.u64()?,
                max: self.u64()?,
            },
            21 => Reject::ValueTooLarge {
                len: self.u64()?,
                max: self.u64()?,
            },
            22 => {
                let (code, a, b) = (self.u8()?, self.u64()?, self.u64()?);
                Reject::Lock(
                    lock_error_of(code, a, b).ok_or_else(|| self.bad("unknown lock error"))?,
                )
            }
            24 => Reject::Feed(crate::error::FeedReject::Storage),
            25 => Reject::Forbidden {
                role: crate::access::Role::Reader,
                needs: crate::access::Role::Admin,
            },
            23 => {
                let (code, a, b) = (self.u8()?, self.u64()?, self.u64()?);
                Reject::Saga(
                    saga_error_of(code, a, b).ok_or_else(|| self.bad("unknown saga error"))?,
                )
            }
            _ => return Err(self.bad("unknown rejection")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OrderKey {
        OrderKey::new(77, u128::MAX - 5)
    }

    fn order(payment: Payment) -> NewOrder {
        NewOrder {
            key: key(),
            lines: vec![
                Line {
                    sku: 1,
                    qty: 2,
                    unit_price: 300,
                },
                Line {
                    sku: u64::MAX,
                    qty: u32::MAX,
                    unit_price: 1,
                },
            ]
            .into_boxed_slice()
            .into(),
            total: 601,
            payment,
            created_at: 1_700_000_000_000,
            fingerprint: 0xfeed,
        }
    }

    fn rejects() -> Vec<Reject> {
        vec![
            Reject::OutOfStock {
                sku: 1,
                available: 2,
                requested: 3,
            },
            Reject::InsufficientFunds {
                account: 1,
                balance: 2,
                needed: 3,
            },
            Reject::PerUserLimit {
                sku: 1,
                limit: 2,
                already: 3,
                requested: 4,
            },
            Reject::PriceChanged {
                sku: 1,
                expected: 2,
                actual: 3,
            },
            Reject::UnknownSku { sku: 9 },
            Reject::UnknownAccount { account: 9 },
            Reject::UnknownOrder {
                account: 9,
                order: 1 << 100,
            },
            Reject::InvalidState {
                order: 5,
                state: OrderState::Refunded,
            },
            Reject::TooManyLines { count: 65, max: 64 },
            Reject::EmptyOrder,
            Reject::ZeroQuantity { sku: 3 },
            Reject::DuplicateSku { sku: 3 },
            Reject::InvalidTtl {
                ttl_ms: 0,
                max_ms: 10,
            },
            Reject::ZeroAmount,
            Reject::BalanceOverflow {
                account: 1,
                balance: u64::MAX,
                amount: 1,
            },
            Reject::StockOverflow {
                sku: 1,
                stocked: u32::MAX,
                qty: 1,
            },
            Reject::TotalOverflow,
            Reject::IdempotencyConflict { order: 12 },
            Reject::InvalidLimit {
                limit: 0,
                max: 1000,
            },
            Reject::ShardUnavailable { shard: 3 },
            Reject::Lock(LockError::Stale { token: 3, last: 9 }),
            Reject::Lock(LockError::InvalidName { len: 300 }),
            Reject::Saga(SagaError::WrongStepState {
                step: 3,
                state: StepState::Failed,
            }),
            Reject::Saga(SagaError::WrongState {
                state: SagaState::Compensating,
            }),
        ]
    }

    fn every_record() -> Vec<Record> {
        let tx = TxId {
            coordinator: 3,
            seq: u64::MAX,
        };
        let mut all = vec![
            Record::SkuPut {
                sku: 1,
                price: 2,
                per_user_limit: 3,
            },
            Record::Restocked { sku: 1, qty: 9 },
            Record::Deposited {
                account: 4,
                amount: 5,
            },
            Record::Withdrew {
                account: 4,
                amount: 5,
            },
            Record::OrderPlaced(order(Payment::Immediate)),
            Record::OrderCommitted {
                order: order(Payment::Deferred { ttl_ms: 60_000 }),
                tx,
            },
            Record::Paid {
                key: key(),
                lines: order(Payment::Immediate).lines,
            },
            Record::Cancelled {
                key: key(),
                lines: order(Payment::Immediate).lines,
            },
            Record::Expired {
                key: key(),
                lines: order(Payment::Immediate).lines,
            },
            Record::Refunded {
                key: key(),
                restock: true,
                lines: order(Payment::Immediate).lines,
            },
            Record::Prepared {
                tx,
                account: 8,
                order: u128::MAX - 1,
                lines: order(Payment::Immediate).lines,
            },
            Record::HoldCommitted {
                tx,
                immediate: true,
                account: 8,
                order: 3,
                lines: order(Payment::Immediate).lines,
            },
            Record::HoldAborted {
                tx,
                account: 8,
                order: 3,
                lines: order(Payment::Immediate).lines,
            },
            Record::StockCorrected {
                sku: 1,
                available: 2,
                reserved: 3,
                sold: 4,
            },
            Record::PurchasesCorrected {
                sku: 1,
                account: 2,
                qty: 0,
            },
        ];
        for settle in [
            Settle::Sell,
            Settle::Release { expired: false },
            Settle::Release { expired: true },
            Settle::Return { restock: true },
            Settle::Return { restock: false },
        ] {
            all.push(Record::StockSettled {
                account: 2,
                order: 1 << 90,
                lines: vec![(1, 2), (3, 4)].into(),
                settle,
            });
        }
        for reject in rejects() {
            all.push(Record::OrderRejected {
                key: key(),
                fingerprint: 6,
                reject,
            });
        }
        let name: Box<[u8]> = b"a lock".to_vec().into();
        all.extend(
            [
                LockRecord::Granted {
                    name: name.clone(),
                    permits: 3,
                    token: 9,
                    owner: 4,
                    session: Some(77),
                    ttl_ms: 10,
                    expires_at: 99,
                },
                LockRecord::Granted {
                    name: name.clone(),
                    permits: 1,
                    token: 9,
                    owner: 4,
                    session: None,
                    ttl_ms: 10,
                    expires_at: 99,
                },
                LockRecord::Renewed {
                    name: name.clone(),
                    token: 9,
                    ttl_ms: 5,
                    expires_at: 100,
                },
                LockRecord::Ended {
                    name: name.clone(),
                    token: 9,
                },
                LockRecord::Known {
                    name: name.clone(),
                    permits: 2,
                    last_token: 12,
                },
            ]
            .map(Record::Lock),
        );
        let id = u128::MAX - 5;
        all.extend(
            [
                SagaRecord::Begun {
                    id,
                    name: name.clone(),
                    payload: vec![1, 2, 3].into(),
                    at: 7,
                },
                SagaRecord::StepStarted {
                    id,
                    step: 2,
                    name: name.clone(),
                },
                SagaRecord::StepDone {
                    id,
                    step: 2,
                    data: vec![9; 1024].into(),
                },
                SagaRecord::StepFailed { id, step: 1 },
                SagaRecord::Aborted { id },
                SagaRecord::StepCompensated { id, step: 0 },
                SagaRecord::Ended {
                    id,
                    committed: true,
                    at: 8,
                },
            ]
            .map(Record::Saga),
        );
        all
    }

    #[test]
    fn every_record_round_trips() {
        for r in every_record() {
            let mut body = Vec::new();
            let kind = encode(&r, &mut body);
            assert_eq!(decode(kind, &body), Ok(r));
        }
    }

    #[test]
    fn framed_records_come_back_in_order_with_their_bodies() {
        let all = every_record();
        let mut bytes = Vec::new();
        for r in &all {
            encode_framed(r, &mut bytes);
        }
        let back: Vec<(u8, Vec<u8>)> = framed(&bytes).map(|(k, b)| (k, b.to_vec())).collect();
        assert_eq!(back.len(), all.len());
        for (r, (kind, body)) in all.iter().zip(&back) {
            let mut expected = Vec::new();
            assert_eq!((encode(r, &mut expected), &expected), (*kind, body));
            assert_eq!(decode(*kind, body).as_ref(), Ok(r));
        }
        assert_eq!(decode_framed(&bytes).collect::<Vec<_>>(), all);
        assert_eq!(framed(&[]).count(), 0);
    }

    #[test]
    fn short_long_or_unknown_bodies_are_refused() {
        for r in every_record() {
            let mut body = Vec::new();
            let kind = encode(&r, &mut body);
            for cut in 0..body.len() {
                assert!(decode(kind, &body[..cut]).is_err(), "{r:?} cut at {cut}");
            }
            body.push(0);
            assert!(decode(kind, &body).is_err());
        }
        assert!(decode(0, &[]).is_err());
        assert!(decode(200, &[1, 2, 3]).is_err());
    }
}
