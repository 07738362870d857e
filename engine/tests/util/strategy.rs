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
        // Mostly deadlines the test outlives (a minute), so that reserved
        // orders can be paid or cancelled; `u64::MAX` is past the longest
        // allowed and refused.
        2 => prop_oneof![1 => Just(0u64), 1 => 1..40u64, 3 => Just(60_000u64), 1 => Just(u64::MAX)].prop_map(|ttl_ms| Payment::Deferred { ttl_ms }),
    ]
}

pub fn command(sp: Space) -> impl Strategy<Value = Command> {
    let sku = (0..sp.skus).prop_map(move |s| sp.sku_base + s);
    let acct = (0..sp.accounts).prop_map(move |a| sp.account_base + a);
    let order = 0..sp.orders;
    let line = (
        sku.clone(),
        prop_oneof![1 => Just(0u32), 5 => 1..4u32],
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
        8 => (order.clone(), acct.clone(), prop_oneof![1 => proptest::collection::vec(line.clone(), 0..1), 6 => proptest::collection::vec(line, 1..4)], payment())
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

/// An order placed on credit (a minute to pay) and then taken through its
/// life at once: paid, cancelled, paid then refunded, or left reserved (for
/// a later random command, or for the final tick of the interleaved runs,
/// which expires it). Random `Pay`, `Cancel` and `Refund` commands seldom
/// name an order that exists, so without these the lifecycle went almost
/// untested by the model.
fn order_life(sp: Space) -> impl Strategy<Value = Vec<Command>> {
    let sku = (0..sp.skus).prop_map(move |s| sp.sku_base + s);
    let line = (sku, 1..4u32).prop_map(|(sku, qty)| LineRequest {
        sku,
        qty,
        expected_unit_price: None,
    });
    (
        0..sp.orders,
        (0..sp.accounts).prop_map(move |a| sp.account_base + a),
        proptest::collection::vec(line, 1..4),
        0..4u8,
        any::<bool>(),
    )
        .prop_map(|(id, account, lines, then, restock)| {
            let mut cmds = vec![Command::PlaceOrder(PlaceOrder {
                id,
                account,
                lines,
                payment: Payment::Deferred { ttl_ms: 60_000 },
            })];
            let order = id;
            match then {
                0 => cmds.push(Command::Pay { account, order }),
                1 => cmds.push(Command::Cancel { account, order }),
                2 => cmds.extend([
                    Command::Pay { account, order },
                    Command::Refund {
                        account,
                        order,
                        restock,
                    },
                ]),
                _ => {}
            }
            cmds
        })
}

/// A command with the milliseconds that pass before it.
pub fn timed_commands(sp: Space, len: usize) -> impl Strategy<Value = Vec<(u64, Command)>> {
    let step = prop_oneof![
        6 => command(sp).prop_map(|c| vec![c]),
        1 => order_life(sp),
    ];
    proptest::collection::vec((0..15u64, step), 1..len).prop_map(|steps| {
        steps
            .into_iter()
            .flat_map(|(dt, cmds)| {
                // The commands of one order's life follow each other at once.
                cmds.into_iter()
                    .enumerate()
                    .map(move |(i, c)| (if i == 0 { dt } else { 0 }, c))
            })
            .collect()
    })
}

/// Commands that put every SKU of `sp` on sale with stock and give every
/// account money, so that the random commands after them place, pay,
/// cancel and refund orders often. Without them most generated orders name
/// a SKU nobody put or an account with nothing in it, and are refused:
/// counted over 256 runs, 26 orders were placed and none was paid.
pub fn stocked_shop(sp: Space) -> Vec<(u64, Command)> {
    let mut setup = Vec::new();
    for s in 0..sp.skus {
        let sku = sp.sku_base + s;
        setup.push((
            0,
            Command::PutSku {
                sku,
                price: 1 + s % 5,
                per_user_limit: 0,
            },
        ));
        setup.push((0, Command::Restock { sku, qty: 40 }));
    }
    for a in 0..sp.accounts {
        let account = sp.account_base + a;
        setup.push((
            0,
            Command::Deposit {
                account,
                amount: 400,
            },
        ));
    }
    setup
}

/// A cheap seeded pick of `0..n` (xorshift), for the order in which a
/// test delivers messages.
pub fn picker(seed: u64) -> impl FnMut(usize) -> usize {
    let mut rng = seed | 1;
    move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    }
}
