//! The whole-engine invariant audit of DESIGN.md:
//! 1. stock is conserved per SKU and never negative;
//! 2. money is conserved: balances plus revenue equal deposits minus withdrawals;
//! 3. every order is applied on all of its shards or on none: the stock the
//!    SKU shards hold reserved or sold is exactly what the orders say.
//!
//! Each shard reports an [`AuditPart`] of its own state; [`audit`] merges them.
//! Checks 1 and 2 hold after every step. Check 3 needs a quiet engine, with no
//! message between shards in flight, which the message counters tell.

use crate::hash::IdMap;
use crate::shard::Shard;
use crate::types::{OrderState, Qty, ShardId, SkuId};

/// One shard's figures for the audit.
#[derive(Clone, Debug, Default)]
pub struct AuditPart {
    pub shard: ShardId,
    /// (sku, stocked, available, reserved, sold)
    pub skus: Vec<(SkuId, Qty, Qty, Qty, Qty)>,
    pub accounts: u64,
    pub orders: u64,
    pub orders_by_state: [u64; 5],
    pub balances: u128,
    pub revenue: u128,
    pub deposited: u128,
    pub withdrawn: u128,
    /// Units the orders (and holds) on this shard say each SKU holds reserved.
    pub expect_reserved: IdMap<SkuId, u64>,
    /// Units the orders on this shard say each SKU has sold.
    pub expect_sold: IdMap<SkuId, u64>,
    /// Units of limited SKUs that live orders hold, as the SKU shard counts them.
    pub purchases: IdMap<SkuId, u64>,
    /// Units of each SKU in live (`Reserved` or `Paid`) orders and holds.
    pub live: IdMap<SkuId, u64>,
    pub holds: u64,
    /// Two-phase orders this shard coordinates that still wait for votes.
    pub pending: u64,
    pub sent: Vec<u64>,
    pub received: Vec<u64>,
}

fn state_index(s: OrderState) -> usize {
    match s {
        OrderState::Reserved => 0,
        OrderState::Paid => 1,
        OrderState::Cancelled => 2,
        OrderState::Expired => 3,
        OrderState::Refunded => 4,
    }
}

impl AuditPart {
    pub(crate) fn of(shard: &Shard) -> AuditPart {
        let st = &shard.state;
        let mut p = AuditPart {
            shard: shard.id(),
            accounts: st.accounts.len() as u64,
            orders: st.orders.len() as u64,
            revenue: st.revenue,
            deposited: st.deposited,
            withdrawn: st.withdrawn,
            holds: st.holds.len() as u64,
            pending: shard.pending.len() as u64,
            sent: shard.sent.clone(),
            received: shard.received.clone(),
            ..AuditPart::default()
        };
        p.skus = st
            .skus
            .iter()
            .map(|(&id, s)| (id, s.stocked, s.available, s.reserved, s.sold))
            .collect();
        p.balances = st.accounts.values().map(|a| u128::from(a.balance)).sum();
        for o in st.orders.values() {
            p.orders_by_state[state_index(o.state)] += 1;
            for l in o.lines.iter() {
                let q = u64::from(l.qty);
                match o.state {
                    OrderState::Reserved => *p.expect_reserved.entry(l.sku).or_default() += q,
                    OrderState::Paid => *p.expect_sold.entry(l.sku).or_default() += q,
                    OrderState::Refunded if !o.restocked => {
                        *p.expect_sold.entry(l.sku).or_default() += q
                    }
                    _ => {}
                }
                if matches!(o.state, OrderState::Reserved | OrderState::Paid) {
                    *p.live.entry(l.sku).or_default() += q;
                }
            }
        }
        for h in st.holds.values() {
            for l in h.lines.iter() {
                *p.expect_reserved.entry(l.sku).or_default() += u64::from(l.qty);
                *p.live.entry(l.sku).or_default() += u64::from(l.qty);
            }
        }
        for (&(sku, _), &n) in st.purchases.iter() {
            *p.purchases.entry(sku).or_default() += u64::from(n);
        }
        p
    }
}

/// A broken invariant, with the figures that show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    StockNotConserved {
        sku: SkuId,
        stocked: Qty,
        available: Qty,
        reserved: Qty,
        sold: Qty,
    },
    MoneyNotConserved {
        balances_plus_revenue: u128,
        deposited_minus_withdrawn: i128,
    },
    ReservedMismatch {
        sku: SkuId,
        on_sku: u64,
        by_orders: u64,
    },
    SoldMismatch {
        sku: SkuId,
        on_sku: u64,
        by_orders: u64,
    },
    LimitCountExceedsLive {
        sku: SkuId,
        counted: u64,
        live: u64,
    },
    OrderForUnknownSku {
        sku: SkuId,
    },
    OrphanHolds {
        holds: u64,
    },
}

/// The audit's summary.
#[derive(Clone, Debug, Default)]
pub struct AuditReport {
    pub shards: usize,
    pub skus: u64,
    pub accounts: u64,
    pub orders: u64,
    /// Orders by state: Reserved, Paid, Cancelled, Expired, Refunded.
    pub orders_by_state: [u64; 5],
    pub units_stocked: u64,
    pub units_available: u64,
    pub units_reserved: u64,
    pub units_sold: u64,
    pub balances: u128,
    pub revenue: u128,
    pub deposited: u128,
    pub withdrawn: u128,
    /// No message between shards was in flight, so check 3 ran.
    pub quiescent: bool,
    pub violations: Vec<Violation>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Whether every message any shard sent has been received and no
/// coordinator waits for votes: then every hold should have been decided.
pub fn quiescent(parts: &[AuditPart]) -> bool {
    parts.iter().all(|from| {
        parts
            .iter()
            .all(|to| from.sent[to.shard as usize] == to.received[from.shard as usize])
    }) && parts.iter().all(|p| p.pending == 0)
}

/// Merge every shard's part and check the invariants.
pub fn audit(parts: &[AuditPart]) -> AuditReport {
    let mut r = AuditReport {
        shards: parts.len(),
        quiescent: quiescent(parts),
        ..Default::default()
    };
    let mut expect_reserved: IdMap<SkuId, u64> = IdMap::default();
    let mut expect_sold: IdMap<SkuId, u64> = IdMap::default();
    let mut live: IdMap<SkuId, u64> = IdMap::default();
    let mut holds = 0;
    for p in parts {
        r.accounts += p.accounts;
        r.orders += p.orders;
        for (a, b) in r.orders_by_state.iter_mut().zip(p.orders_by_state) {
            *a += b;
        }
        r.balances += p.balances;
        r.revenue += p.revenue;
        r.deposited += p.deposited;
        r.withdrawn += p.withdrawn;
        holds += p.holds;
        for (&sku, &q) in &p.expect_reserved {
            *expect_reserved.entry(sku).or_default() += q;
        }
        for (&sku, &q) in &p.expect_sold {
            *expect_sold.entry(sku).or_default() += q;
        }
        for (&sku, &q) in &p.live {
            *live.entry(sku).or_default() += q;
        }
    }
    let mut known: IdMap<SkuId, ()> = IdMap::default();
    for p in parts {
        for &(sku, stocked, available, reserved, sold) in &p.skus {
            known.insert(sku, ());
            r.skus += 1;
            r.units_stocked += u64::from(stocked);
            r.units_available += u64::from(available);
            r.units_reserved += u64::from(reserved);
            r.units_sold += u64::from(sold);
            let sum = u64::from(available) + u64::from(reserved) + u64::from(sold);
            if sum != u64::from(stocked) {
                r.violations.push(Violation::StockNotConserved {
                    sku,
                    stocked,
                    available,
                    reserved,
                    sold,
                });
            }
            if r.quiescent {
                let by_orders = expect_reserved.get(&sku).copied().unwrap_or(0);
                if by_orders != u64::from(reserved) {
                    r.violations.push(Violation::ReservedMismatch {
                        sku,
                        on_sku: reserved.into(),
                        by_orders,
                    });
                }
                let by_orders = expect_sold.get(&sku).copied().unwrap_or(0);
                if by_orders != u64::from(sold) {
                    r.violations.push(Violation::SoldMismatch {
                        sku,
                        on_sku: sold.into(),
                        by_orders,
                    });
                }
            }
        }
        for (&sku, &counted) in &p.purchases {
            let live = live.get(&sku).copied().unwrap_or(0);
            if r.quiescent && counted > live {
                r.violations
                    .push(Violation::LimitCountExceedsLive { sku, counted, live });
            }
        }
    }
    for sku in expect_reserved.keys().chain(expect_sold.keys()) {
        if !known.contains_key(sku) {
            r.violations
                .push(Violation::OrderForUnknownSku { sku: *sku });
        }
    }
    let have = r.balances + r.revenue;
    let should = r.deposited as i128 - r.withdrawn as i128;
    if have as i128 != should {
        r.violations.push(Violation::MoneyNotConserved {
            balances_plus_revenue: have,
            deposited_minus_withdrawn: should,
        });
    }
    if r.quiescent && holds > 0 {
        r.violations.push(Violation::OrphanHolds { holds });
    }
    r
}
