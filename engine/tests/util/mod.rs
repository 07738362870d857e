//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

pub mod model;
pub mod strategy;

use mercato_engine::{Command, PlaceOrder};
use strategy::Space;

/// Move a command generated over `Space::small()` into `sp`'s ids.
pub fn rebase(cmd: Command, sp: Space) -> Command {
    let small = Space::small();
    let sku = |s: u64| s - small.sku_base + sp.sku_base;
    let acct = |a: u64| a - small.account_base + sp.account_base;
    match cmd {
        Command::PutSku {
            sku: s,
            price,
            per_user_limit,
        } => Command::PutSku {
            sku: sku(s),
            price,
            per_user_limit,
        },
        Command::Restock { sku: s, qty } => Command::Restock { sku: sku(s), qty },
        Command::Deposit { account, amount } => Command::Deposit {
            account: acct(account),
            amount,
        },
        Command::Withdraw { account, amount } => Command::Withdraw {
            account: acct(account),
            amount,
        },
        Command::PlaceOrder(p) => Command::PlaceOrder(PlaceOrder {
            account: acct(p.account),
            lines: p
                .lines
                .into_iter()
                .map(|mut l| {
                    l.sku = sku(l.sku);
                    l
                })
                .collect(),
            ..p
        }),
        Command::Pay { account, order } => Command::Pay {
            account: acct(account),
            order,
        },
        Command::Cancel { account, order } => Command::Cancel {
            account: acct(account),
            order,
        },
        Command::Refund {
            account,
            order,
            restock,
        } => Command::Refund {
            account: acct(account),
            order,
            restock,
        },
        Command::GetSku { sku: s } => Command::GetSku { sku: sku(s) },
        Command::GetAccount { account } => Command::GetAccount {
            account: acct(account),
        },
        Command::GetOrder { account, order } => Command::GetOrder {
            account: acct(account),
            order,
        },
        Command::ListOrders {
            account,
            after,
            limit,
        } => Command::ListOrders {
            account: acct(account),
            after,
            limit,
        },
        other => other,
    }
}
