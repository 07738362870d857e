//! proptest strategies: random commands over small id spaces, so that
//! commands collide on SKUs, accounts and order ids and every path is taken.

use mercato_engine::{Command, LineRequest, Payment, PlaceOrder};
use proptest::prelude::*;

/// Ids a generated command may use: `base + 0..count` for each kind.
#[derive(Clone, Copy, Debug)]
pub struct Space {
    pub sku_base: u64,
    pub skus: u64,
    pub account_base: u64,
    pub accounts: u64,
    pub orders: u128,
}

impl Space {
    pub fn small() -> Self {
        Space {
            sku_base: 0,
            skus: 6,
            account_base: 1000,
            accounts: 4,
            orders: 10,
        }
    }
}

fn payment() -> impl Strategy<Value = Payment> {
    prop_oneof![
        3 => Just(Payment::Immediate),
        2 => prop_oneof![Just(0u64), 1..40u64, Just(u64::MAX)].prop_map(|ttl_ms| Payment::Deferred { ttl_ms }),
    ]
}

pub fn command(sp: Space) -> impl Strategy<Value = Command> {
    let sku = (0..sp.skus).prop_map(move |s| sp.sku_base + s);
    let acct = (0..sp.accounts).prop_map(move |a| sp.account_base + a);
    let order = 0..sp.orders;
    let line = (
        sku.clone(),
        0..4u32,
        proptest::option::weighted(0.2, 0..6u64),
    )
        .prop_map(|(sku, qty, expected_unit_price)| LineRequest {
            sku,
            qty,
            expected_unit_price,
        });
    prop_oneof![
        2 => (sku.clone(), prop_oneof![0..6u64, Just(u64::MAX / 2)], 0..3u32)
            .prop_map(|(sku, price, per_user_limit)| Command::PutSku { sku, price, per_user_limit }),
        2 => (sku.clone(), prop_oneof![0..8u32, Just(u32::MAX)]).prop_map(|(sku, qty)| Command::Restock { sku, qty }),
        2 => (acct.clone(), prop_oneof![0..60u64, Just(u64::MAX)])
            .prop_map(|(account, amount)| Command::Deposit { account, amount }),
        1 => (acct.clone(), 0..30u64).prop_map(|(account, amount)| Command::Withdraw { account, amount }),
        8 => (order.clone(), acct.clone(), proptest::collection::vec(line, 0..4), payment())
            .prop_map(|(id, account, lines, payment)| Command::PlaceOrder(PlaceOrder { id, account, lines, payment })),
        2 => (acct.clone(), order.clone()).prop_map(|(account, order)| Command::Pay { account, order }),
        2 => (acct.clone(), order.clone()).prop_map(|(account, order)| Command::Cancel { account, order }),
        2 => (acct.clone(), order.clone(), any::<bool>())
            .prop_map(|(account, order, restock)| Command::Refund { account, order, restock }),
        1 => sku.prop_map(|sku| Command::GetSku { sku }),
        1 => acct.clone().prop_map(|account| Command::GetAccount { account }),
        1 => (acct.clone(), order.clone()).prop_map(|(account, order)| Command::GetOrder { account, order }),
        1 => (acct, proptest::option::of(order), 0..4u32)
            .prop_map(|(account, after, limit)| Command::ListOrders { account, after, limit }),
    ]
}

/// A command with the milliseconds that pass before it.
pub fn timed_commands(sp: Space, len: usize) -> impl Strategy<Value = Vec<(u64, Command)>> {
    proptest::collection::vec((0..15u64, command(sp)), 1..len)
}
