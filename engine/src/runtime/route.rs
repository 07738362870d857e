//! Splitting one caller's batch among the shards that own its commands, and
//! answering from the view caches the reads that may be. The embedded
//! [`Handle`](super::Handle) and the network threads both split this way, so
//! both give readers the same guarantees (see [`views`](crate::views)).

use crate::command::{Command, Reply};
use crate::types::{AccountId, SkuId};
use crate::views::Views;

/// A read that missed the view cache: its owner fills the cache after
/// answering. Reads that never looked (behind a write) fill nothing, so a
/// workload that cannot use the cache does not pay to keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Missed {
    Sku(SkuId),
    Account(AccountId),
}

/// The commands one shard gets from a batch.
#[derive(Default)]
pub(crate) struct Part {
    /// Each command with its slot in the caller's collector.
    pub cmds: Vec<(u32, Command)>,
    pub missed: Vec<Missed>,
}

pub(crate) struct Split {
    pub parts: Vec<Part>,
    /// The shard whose thread splits, if any: it reads its own state more
    /// cheaply than the shared cache, so its reads never look there.
    home: Option<usize>,
    /// The caller had a write in flight before this batch.
    writes_before: bool,
    /// Whether this batch holds a write. A read after a write, here or
    /// before, waits its turn at the owner so that it sees it.
    pub writes: bool,
}

impl Split {
    /// `writes_before`: the caller has an earlier write still in flight.
    pub fn new(shards: usize, home: Option<usize>, writes_before: bool) -> Self {
        Split {
            parts: (0..shards).map(|_| Part::default()).collect(),
            home,
            writes_before,
            writes: false,
        }
    }

    /// Routes the command in `slot` to its owner, or answers it from the
    /// views and returns the answer.
    pub fn add(&mut self, views: Option<&Views>, slot: u32, cmd: Command) -> Option<Reply> {
        let owner = cmd.owner(self.parts.len() as u16) as usize;
        let mut missed = None;
        let look = !(self.writes_before || self.writes) && self.home != Some(owner);
        if let (Some(views), true) = (views, look) {
            match cmd {
                Command::GetSku { sku } => match views.skus.get(&sku) {
                    Some(view) => return Some(Reply::Sku(view)),
                    None => missed = Some(Missed::Sku(sku)),
                },
                Command::GetAccount { account } => match views.accounts.get(&account) {
                    Some(view) => return Some(Reply::Account(view)),
                    None => missed = Some(Missed::Account(account)),
                },
                _ => {}
            }
        }
        self.writes |= !cmd.is_read();
        let part = &mut self.parts[owner];
        part.missed.extend(missed);
        part.cmds.push((slot, cmd));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SkuView;

    fn sku_view(id: SkuId) -> SkuView {
        SkuView {
            id,
            price: 1,
            available: 1,
            reserved: 0,
            sold: 0,
            per_user_limit: 0,
        }
    }

    #[test]
    fn reads_before_a_write_use_the_views_and_reads_after_it_do_not() {
        let views = Views::new(16);
        let _ = views.skus.insert(7, sku_view(7));
        let mut split = Split::new(2, None, false);
        assert_eq!(
            split.add(Some(&views), 0, Command::GetSku { sku: 7 }),
            Some(Reply::Sku(sku_view(7)))
        );
        assert_eq!(split.add(Some(&views), 1, Command::GetSku { sku: 8 }), None);
        let deposit = Command::Deposit {
            account: 1,
            amount: 5,
        };
        assert_eq!(split.add(Some(&views), 2, deposit), None);
        assert_eq!(split.add(Some(&views), 3, Command::GetSku { sku: 7 }), None);
        let queued: Vec<u32> = (split.parts.iter())
            .flat_map(|p| p.cmds.iter().map(|(slot, _)| *slot))
            .collect();
        let mut sorted = queued.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![1, 2, 3], "the hit was answered, not queued");
        let missed: Vec<Missed> = split.parts.iter().flat_map(|p| p.missed.clone()).collect();
        assert_eq!(
            missed,
            vec![Missed::Sku(8)],
            "only a read that looked fills"
        );
        assert!(split.writes);
    }

    #[test]
    fn a_write_in_flight_sends_every_read_to_its_owner() {
        let views = Views::new(16);
        let _ = views.skus.insert(7, sku_view(7));
        let mut split = Split::new(1, None, true);
        assert_eq!(split.add(Some(&views), 0, Command::GetSku { sku: 7 }), None);
        assert!(split.parts[0].missed.is_empty());
        assert!(!split.writes, "the batch itself holds no write");
    }

    #[test]
    fn a_shard_reads_what_it_owns_itself() {
        let views = Views::new(16);
        let _ = views.skus.insert(7, sku_view(7));
        let owner = Command::GetSku { sku: 7 }.owner(2) as usize;
        let mut at_owner = Split::new(2, Some(owner), false);
        assert_eq!(
            at_owner.add(Some(&views), 0, Command::GetSku { sku: 7 }),
            None
        );
        assert!(at_owner.parts[owner].missed.is_empty());
        let mut elsewhere = Split::new(2, Some(1 - owner), false);
        assert!((elsewhere.add(Some(&views), 0, Command::GetSku { sku: 7 })).is_some());
    }
}
