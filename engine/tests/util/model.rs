//! The oracle: one shop in plain ordered maps, no shards, no messages,
//! written from DESIGN.md's rules and nothing else. The sharded engine must
//! answer every command exactly as this does.

use std::collections::BTreeMap;

use mercato_engine::order_lines::OrderLines;
use mercato_engine::shard::fingerprint;
use mercato_engine::{
    AccountView, Command, Line, OrderState, OrderView, Outcome, Payment, Reject, Reply, SkuView,
};

const LINES_MAX: usize = 64;
const TTL_MS_MAX: u64 = 30 * 24 * 3600 * 1000;
const LIST_MAX: u32 = 1000;
/// What one page of orders may hold (the engine's `LIST_PAGE_BYTES_MAX`).
const LIST_PAGE_BYTES_MAX: usize = 64 << 10;

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub skus: BTreeMap<u64, SkuView>,
    pub balances: BTreeMap<u64, u64>,
    pub orders: BTreeMap<(u64, u128), (OrderView, u64)>,
    /// Each account's order ids in the order they were placed.
    pub placed: BTreeMap<u64, Vec<u128>>,
    pub limit_count: BTreeMap<(u64, u64), u32>,
    pub rejected: BTreeMap<(u64, u128), (u64, Reject)>,
}

impl Model {
    fn release(&mut self, account: u64, lines: &[Line], from_sold: bool, back_on_sale: bool) {
        for l in lines {
            let s = self.skus.get_mut(&l.sku).unwrap();
            if from_sold {
                if back_on_sale {
                    s.sold -= l.qty;
                    s.available += l.qty;
                }
            } else {
                s.reserved -= l.qty;
                s.available += l.qty;
            }
            if let Some(n) = self.limit_count.get_mut(&(l.sku, account)) {
                *n = n.saturating_sub(l.qty);
                if *n == 0 {
                    self.limit_count.remove(&(l.sku, account));
                }
            }
        }
    }

    pub fn expire(&mut self, now: u64) {
        let due: Vec<_> = self
            .orders
            .iter()
            .filter(|(_, (o, _))| o.state == OrderState::Reserved && o.expires_at <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            let o = &mut self.orders.get_mut(&k).unwrap().0;
            o.state = OrderState::Expired;
            let lines = o.lines.clone();
            self.release(k.0, &lines.to_vec(), false, false);
        }
    }

    pub fn exec(&mut self, cmd: &Command, now: u64) -> Outcome {
        match cmd.clone() {
            Command::PutSku {
                sku,
                price,
                per_user_limit,
            } => {
                let s = self.skus.entry(sku).or_insert(SkuView {
                    id: sku,
                    price: 0,
                    available: 0,
                    reserved: 0,
                    sold: 0,
                    per_user_limit: 0,
                });
                s.price = price;
                s.per_user_limit = per_user_limit;
                Ok(Reply::Sku(*s))
            }
            Command::Restock { sku, qty } => {
                let s = self.skus.get_mut(&sku).ok_or(Reject::UnknownSku { sku })?;
                if qty == 0 {
                    return Err(Reject::ZeroQuantity { sku });
                }
                let stocked = s.available + s.reserved + s.sold;
                if stocked.checked_add(qty).is_none() {
                    return Err(Reject::StockOverflow { sku, stocked, qty });
                }
                s.available += qty;
                Ok(Reply::Sku(*s))
            }
            Command::Deposit { account, amount } => {
                if amount == 0 {
                    return Err(Reject::ZeroAmount);
                }
                let balance = self.balances.get(&account).copied().unwrap_or(0);
                let new = balance.checked_add(amount).ok_or(Reject::BalanceOverflow {
                    account,
                    balance,
                    amount,
                })?;
                self.balances.insert(account, new);
                Ok(Reply::Account(AccountView {
                    id: account,
                    balance: new,
                }))
            }
            Command::Withdraw { account, amount } => {
                let b = self
                    .balances
                    .get_mut(&account)
                    .ok_or(Reject::UnknownAccount { account })?;
                if amount == 0 {
                    return Err(Reject::ZeroAmount);
                }
                if *b < amount {
                    return Err(Reject::InsufficientFunds {
                        account,
                        balance: *b,
                        needed: amount,
                    });
                }
                *b -= amount;
                Ok(Reply::Account(AccountView {
                    id: account,
                    balance: *b,
                }))
            }
            Command::PlaceOrder(p) => {
                if p.lines.is_empty() {
                    return Err(Reject::EmptyOrder);
                }
                if p.lines.len() > LINES_MAX {
                    return Err(Reject::TooManyLines {
                        count: p.lines.len(),
                        max: LINES_MAX,
                    });
                }
                for (i, l) in p.lines.iter().enumerate() {
                    if l.qty == 0 {
                        return Err(Reject::ZeroQuantity { sku: l.sku });
                    }
                    if p.lines[..i].iter().any(|m| m.sku == l.sku) {
                        return Err(Reject::DuplicateSku { sku: l.sku });
                    }
                }
                if let Payment::Deferred { ttl_ms } = p.payment {
                    if ttl_ms == 0 || ttl_ms > TTL_MS_MAX {
                        return Err(Reject::InvalidTtl {
                            ttl_ms,
                            max_ms: TTL_MS_MAX,
                        });
                    }
                }
                let key = (p.account, p.id);
                let fp = fingerprint(&p.lines, p.payment);
                if let Some((o, first)) = self.orders.get(&key) {
                    return if *first == fp {
                        Ok(Reply::Order(o.clone()))
                    } else {
                        Err(Reject::IdempotencyConflict { order: p.id })
                    };
                }
                if let Some((first, r)) = self.rejected.get(&key) {
                    return Err(if *first == fp {
                        *r
                    } else {
                        Reject::IdempotencyConflict { order: p.id }
                    });
                }
                let result = self.try_place(&p, now);
                match result {
                    Ok(view) => {
                        self.orders.insert(key, (view.clone(), fp));
                        self.placed.entry(p.account).or_default().push(p.id);
                        Ok(Reply::Order(view))
                    }
                    Err(r) => {
                        self.rejected.insert(key, (fp, r));
                        Err(r)
                    }
                }
            }
            Command::Pay { account, order } => {
                let (o, total) = self.reserved(account, order)?;
                let b = self.balances.get_mut(&account).unwrap();
                if *b < total {
                    return Err(Reject::InsufficientFunds {
                        account,
                        balance: *b,
                        needed: total,
                    });
                }
                *b -= total;
                for l in o.lines.iter() {
                    let s = self.skus.get_mut(&l.sku).unwrap();
                    s.reserved -= l.qty;
                    s.sold += l.qty;
                }
                let o = &mut self.orders.get_mut(&(account, order)).unwrap().0;
                o.state = OrderState::Paid;
                Ok(Reply::Order(o.clone()))
            }
            Command::Cancel { account, order } => {
                let (o, _) = self.reserved(account, order)?;
                self.release(account, &o.lines.to_vec(), false, false);
                let o = &mut self.orders.get_mut(&(account, order)).unwrap().0;
                o.state = OrderState::Cancelled;
                Ok(Reply::Order(o.clone()))
            }
            Command::Refund {
                account,
                order,
                restock,
            } => {
                let (o, _) = self
                    .orders
                    .get(&(account, order))
                    .ok_or(Reject::UnknownOrder { account, order })?;
                if o.state != OrderState::Paid {
                    return Err(Reject::InvalidState {
                        order,
                        state: o.state,
                    });
                }
                let o = o.clone();
                let b = self.balances.get_mut(&account).unwrap();
                *b = b.checked_add(o.total).ok_or(Reject::BalanceOverflow {
                    account,
                    balance: *b,
                    amount: o.total,
                })?;
                self.release(account, &o.lines.to_vec(), true, restock);
                let o = &mut self.orders.get_mut(&(account, order)).unwrap().0;
                o.state = OrderState::Refunded;
                o.restocked = restock;
                Ok(Reply::Order(o.clone()))
            }
            Command::GetSku { sku } => self
                .skus
                .get(&sku)
                .map(|s| Reply::Sku(*s))
                .ok_or(Reject::UnknownSku { sku }),
            Command::GetAccount { account } => self
                .balances
                .get(&account)
                .map(|&balance| {
                    Reply::Account(AccountView {
                        id: account,
                        balance,
                    })
                })
                .ok_or(Reject::UnknownAccount { account }),
            Command::GetOrder { account, order } => self
                .orders
                .get(&(account, order))
                .map(|(o, _)| Reply::Order(o.clone()))
                .ok_or(Reject::UnknownOrder { account, order }),
            Command::ListOrders {
                account,
                after,
                limit,
            } => {
                if !self.balances.contains_key(&account) {
                    return Err(Reject::UnknownAccount { account });
                }
                if limit == 0 || limit > LIST_MAX {
                    return Err(Reject::InvalidLimit {
                        limit,
                        max: LIST_MAX,
                    });
                }
                // Newest first, going on after `after`, which must be one
                // of the account's orders.
                let ids = self.placed.get(&account).map_or(&[][..], Vec::as_slice);
                let end = match after {
                    None => ids.len(),
                    Some(order) => ids
                        .iter()
                        .position(|&id| id == order)
                        .ok_or(Reject::UnknownOrder { account, order })?,
                };
                // At most `limit` orders and, past the first, at most a
                // page's bytes of them.
                let mut orders: Vec<OrderView> = Vec::new();
                let mut bytes = 0;
                for &id in ids[..end].iter().rev() {
                    let o = &self.orders[&(account, id)].0;
                    let size = mercato_protocol::order_view_bytes(o.lines.len());
                    if orders.len() == limit as usize
                        || (!orders.is_empty() && bytes + size > LIST_PAGE_BYTES_MAX)
                    {
                        break;
                    }
                    bytes += size;
                    orders.push(o.clone());
                }
                let more = orders.len() < end;
                Ok(Reply::Orders { orders, more })
            }
            other => panic!("the model does not know {other:?}"),
        }
    }

    fn reserved(&self, account: u64, order: u128) -> Result<(OrderView, u64), Reject> {
        let (o, _) = self
            .orders
            .get(&(account, order))
            .ok_or(Reject::UnknownOrder { account, order })?;
        if o.state != OrderState::Reserved {
            return Err(Reject::InvalidState {
                order,
                state: o.state,
            });
        }
        Ok((o.clone(), o.total))
    }

    fn try_place(&mut self, p: &mercato_engine::PlaceOrder, now: u64) -> Result<OrderView, Reject> {
        let balance = *self
            .balances
            .get(&p.account)
            .ok_or(Reject::UnknownAccount { account: p.account })?;
        let mut lines = Vec::new();
        for l in &p.lines {
            let s = self
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
            let already = self
                .limit_count
                .get(&(l.sku, p.account))
                .copied()
                .unwrap_or(0);
            if s.per_user_limit > 0 && already as u64 + l.qty as u64 > s.per_user_limit as u64 {
                return Err(Reject::PerUserLimit {
                    sku: l.sku,
                    limit: s.per_user_limit,
                    already,
                    requested: l.qty,
                });
            }
            if s.available < l.qty {
                return Err(Reject::OutOfStock {
                    sku: l.sku,
                    available: s.available,
                    requested: l.qty,
                });
            }
            lines.push(Line {
                sku: l.sku,
                qty: l.qty,
                unit_price: s.price,
            });
        }
        let mut total: u64 = 0;
        for l in &lines {
            total = l
                .unit_price
                .checked_mul(l.qty as u64)
                .and_then(|x| total.checked_add(x))
                .ok_or(Reject::TotalOverflow)?;
        }
        let immediate = p.payment == Payment::Immediate;
        if immediate && balance < total {
            return Err(Reject::InsufficientFunds {
                account: p.account,
                balance,
                needed: total,
            });
        }
        for l in &lines {
            let s = self.skus.get_mut(&l.sku).unwrap();
            s.available -= l.qty;
            if immediate {
                s.sold += l.qty;
            } else {
                s.reserved += l.qty;
            }
            if s.per_user_limit > 0 {
                *self.limit_count.entry((l.sku, p.account)).or_default() += l.qty;
            }
        }
        if immediate {
            *self.balances.get_mut(&p.account).unwrap() -= total;
        }
        let (state, expires_at) = match p.payment {
            Payment::Immediate => (OrderState::Paid, 0),
            Payment::Deferred { ttl_ms } => (OrderState::Reserved, now + ttl_ms),
        };
        Ok(OrderView {
            id: p.id,
            account: p.account,
            lines: OrderLines::collect(lines.into_iter()),
            total,
            state,
            created_at: now,
            expires_at,
            restocked: false,
        })
    }
}
