//! An order's priced lines: one held in place, more in their own allocation.
//!
//! Most orders in a sale have one line. Held in the order-table entry, that
//! line costs 8 bytes more than a boxed slice's pointer and length, and
//! saves a 32-byte allocation that would stay for the order's whole life,
//! and the fresh memory it is carved from. The enum is 24 bytes: the tag
//! and the quantity share the first word.

use crate::message::OneOrMany;
use crate::types::{Line, Money, Qty, SkuId};

/// An order's lines with their unit prices, as the shard stores them and as
/// `OrderView` answers them: read them with [`OrderLines::iter`] (lines by
/// value, in the order given) or copy them out with [`OrderLines::to_vec`].
#[derive(Clone, PartialEq, Eq)]
pub enum OrderLines {
    One {
        sku: SkuId,
        qty: Qty,
        unit_price: Money,
    },
    /// Never exactly one line (see `From`), so equal lines compare equal.
    Many(Box<[Line]>),
}

const _: () = assert!(std::mem::size_of::<OrderLines>() == 24);

impl From<Box<[Line]>> for OrderLines {
    fn from(lines: Box<[Line]>) -> Self {
        match *lines {
            [l] => OrderLines::one(l),
            _ => OrderLines::Many(lines),
        }
    }
}

impl OrderLines {
    /// The lines, by value, in the order the order gave them.
    pub fn iter(&self) -> Lines<'_> {
        match *self {
            OrderLines::One {
                sku,
                qty,
                unit_price,
            } => Lines {
                single: Some(Line {
                    sku,
                    qty,
                    unit_price,
                }),
                rest: [].iter(),
            },
            OrderLines::Many(ref lines) => Lines {
                single: None,
                rest: lines.iter(),
            },
        }
    }

    /// Lines from an iterator that knows its length: one is held in place.
    pub fn collect(lines: impl ExactSizeIterator<Item = Line>) -> Self {
        match OneOrMany::collect(lines) {
            OneOrMany::One(l) => OrderLines::one(l),
            OneOrMany::Many(lines) => OrderLines::Many(lines),
        }
    }

    fn one(l: Line) -> Self {
        OrderLines::One {
            sku: l.sku,
            qty: l.qty,
            unit_price: l.unit_price,
        }
    }

    /// Each line's SKU and a place to write its price, in order.
    pub fn prices_mut(&mut self) -> impl Iterator<Item = (SkuId, &mut Money)> {
        let (one, many) = match self {
            OrderLines::One {
                sku, unit_price, ..
            } => (Some((*sku, unit_price)), &mut [][..]),
            OrderLines::Many(lines) => (None, &mut lines[..]),
        };
        one.into_iter()
            .chain(many.iter_mut().map(|l| (l.sku, &mut l.unit_price)))
    }

    pub fn to_vec(&self) -> Vec<Line> {
        self.iter().collect()
    }

    pub fn len(&self) -> usize {
        self.iter().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The lines by value: a line held in place has no slice to borrow from.
#[derive(Clone)]
pub struct Lines<'a> {
    single: Option<Line>,
    rest: std::slice::Iter<'a, Line>,
}

impl Iterator for Lines<'_> {
    type Item = Line;

    fn next(&mut self) -> Option<Line> {
        self.single.take().or_else(|| self.rest.next().copied())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rest.len() + usize::from(self.single.is_some());
        (n, Some(n))
    }
}

impl ExactSizeIterator for Lines<'_> {}

impl std::fmt::Debug for OrderLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: u64) -> Line {
        Line {
            sku,
            qty: sku as u32 + 1,
            unit_price: sku * 10,
        }
    }

    #[test]
    fn lines_come_back_as_given_in_either_form() {
        for n in 0..5u64 {
            let given: Vec<Line> = (0..n).map(line).collect();
            let stored = OrderLines::from(given.clone().into_boxed_slice());
            assert_eq!(matches!(stored, OrderLines::One { .. }), n == 1);
            assert_eq!(stored.to_vec(), given);
            assert_eq!(stored.iter().len(), given.len());
            assert_eq!(format!("{stored:?}"), format!("{given:?}"));
            let again = OrderLines::from(given.into_boxed_slice());
            assert_eq!(again, stored);
        }
        for n in 0..4u64 {
            let mut lines = OrderLines::collect((0..n as u32).map(|i| line(u64::from(i))));
            assert_eq!(
                lines,
                OrderLines::from((0..n).map(line).collect::<Box<[_]>>())
            );
            for (i, (sku, price)) in lines.prices_mut().enumerate() {
                assert_eq!(sku, i as u64);
                *price = 1_000 + sku;
            }
            assert!(lines.iter().all(|l| l.unit_price == 1_000 + l.sku));
        }
        let a = OrderLines::from(vec![line(1)].into_boxed_slice());
        let b = OrderLines::from(vec![line(2)].into_boxed_slice());
        assert_ne!(a, b);
    }
}
