//! Intrusive doubly linked lists over one arena of nodes, the bookkeeping both
//! policies share. Nodes are named by `u32` indices rather than pointers, so
//! the arena is one `Vec`; a node's generation lets a stale [`Handle`] from a
//! read buffer be recognised and ignored after its slot is reused.

use crate::prefetch::prefetch;

const NIL: u32 = u32::MAX;

/// Which list a node is on; ARC uses all four, LRU only `T1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    T1 = 0,
    T2 = 1,
    B1 = 2,
    B2 = 3,
    Free = 4,
}

/// A node's index and generation, packed so a read buffer can hold it in one
/// `u64`. The generation starts at 1, so 0 never names a node and can mark an
/// empty buffer slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Handle(pub(crate) u64);

impl Handle {
    fn new(index: u32, generation: u32) -> Self {
        Handle((u64::from(generation) << 32) | u64::from(index))
    }

    pub(crate) fn index(self) -> u32 {
        self.0 as u32
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// What every move touches: 16 bytes, so a hit's move reads and writes
/// few cache lines. Keys and weights live apart in `Cold`, read only when an
/// entry arrives, leaves or changes lists.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
    generation: u32,
    tag: Tag,
}

#[derive(Debug)]
struct Cold<K> {
    key: Option<K>,
    weight: u64,
}

/// One list's ends and totals. `head` is the most recently used end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ends {
    head: u32,
    tail: u32,
    pub(crate) len: usize,
    pub(crate) weight: u64,
}

impl Ends {
    const EMPTY: Ends = Ends {
        head: NIL,
        tail: NIL,
        len: 0,
        weight: 0,
    };
}

/// The arena and the four lists.
#[derive(Debug)]
pub(crate) struct Lists<K> {
    links: Vec<Link>,
    cold: Vec<Cold<K>>,
    free: Vec<u32>,
    ends: [Ends; 4],
}

impl<K> Lists<K> {
    pub(crate) fn new() -> Self {
        Lists {
            links: Vec::new(),
            cold: Vec::new(),
            free: Vec::new(),
            ends: [Ends::EMPTY; 4],
        }
    }

    pub(crate) fn ends(&self, tag: Tag) -> Ends {
        self.ends[tag as usize]
    }

    /// The node a handle names, if that node is still the one it named.
    pub(crate) fn live(&self, handle: Handle) -> Option<Tag> {
        let link = self.links.get(handle.index() as usize)?;
        (link.generation == handle.generation() && link.tag != Tag::Free).then_some(link.tag)
    }

    pub(crate) fn key(&self, handle: Handle) -> &K {
        self.key_at(handle.index())
    }

    /// The key of the live node at `index`.
    pub(crate) fn key_at(&self, index: u32) -> &K {
        self.cold[index as usize]
            .key
            .as_ref()
            .expect("a live node has a key")
    }

    /// The handle of the live node at `index`.
    pub(crate) fn handle_at(&self, index: u32) -> Handle {
        Handle::new(index, self.links[index as usize].generation)
    }

    /// Puts a new node at the head of `tag`.
    pub(crate) fn push(&mut self, key: K, weight: u64, tag: Tag) -> Handle {
        let index = match self.free.pop() {
            Some(index) => {
                self.cold[index as usize] = Cold {
                    key: Some(key),
                    weight,
                };
                index
            }
            None => {
                let index = u32::try_from(self.links.len()).expect("fewer than 2^32 - 1 nodes");
                assert!(index != NIL, "a cache holds fewer than 2^32 - 1 nodes");
                self.links.push(Link {
                    prev: NIL,
                    next: NIL,
                    generation: 1,
                    tag: Tag::Free,
                });
                self.cold.push(Cold {
                    key: Some(key),
                    weight,
                });
                index
            }
        };
        self.link_head(index, tag);
        self.ends[tag as usize].weight += weight;
        Handle::new(index, self.links[index as usize].generation)
    }

    /// Asks the CPU to fetch the node and key at the tail of `tag`, which
    /// the next eviction will read: that comes with a later insert, so the
    /// lines arrive while the requests between run.
    pub(crate) fn prefetch_tail(&self, tag: Tag) {
        let at = self.ends[tag as usize].tail as usize;
        if let (Some(link), Some(cold)) = (self.links.get(at), self.cold.get(at)) {
            prefetch(link);
            prefetch(cold);
        }
    }

    /// Asks the CPU to fetch the link of the node `handle` names.
    pub(crate) fn prefetch_node(&self, handle: Handle) {
        if let Some(link) = self.links.get(handle.index() as usize) {
            prefetch(link);
        }
    }

    /// Asks the CPU to fetch the links on either side of the node `handle`
    /// names, which unlinking it writes.
    pub(crate) fn prefetch_neighbours(&self, handle: Handle) {
        if let Some(link) = self.links.get(handle.index() as usize) {
            for at in [link.prev, link.next] {
                if let Some(side) = self.links.get(at as usize) {
                    prefetch(side);
                }
            }
        }
    }

    /// The least recently used node of `tag`.
    pub(crate) fn tail(&self, tag: Tag) -> Option<Handle> {
        let index = self.ends[tag as usize].tail;
        (index != NIL).then(|| Handle::new(index, self.links[index as usize].generation))
    }

    /// Moves a live node to the head of `tag` (which may be its own list).
    pub(crate) fn move_to(&mut self, handle: Handle, tag: Tag) {
        let index = handle.index();
        // Hot keys are hit again and again: most moves are of the head.
        if self.ends[tag as usize].head == index {
            return;
        }
        let from = self.links[index as usize].tag;
        self.unlink(index);
        self.link_head(index, tag);
        if from != tag {
            let weight = self.cold[index as usize].weight;
            self.ends[from as usize].weight -= weight;
            self.ends[tag as usize].weight += weight;
        }
    }

    pub(crate) fn set_weight(&mut self, handle: Handle, weight: u64) {
        let index = handle.index() as usize;
        let tag = self.links[index].tag;
        let ends = &mut self.ends[tag as usize];
        ends.weight = ends.weight - self.cold[index].weight + weight;
        self.cold[index].weight = weight;
    }

    /// Unlinks and frees a node, giving its key back.
    pub(crate) fn remove(&mut self, handle: Handle) -> K {
        let index = handle.index();
        let tag = self.links[index as usize].tag;
        self.unlink(index);
        let cold = &mut self.cold[index as usize];
        self.ends[tag as usize].weight -= cold.weight;
        let link = &mut self.links[index as usize];
        link.tag = Tag::Free;
        link.generation = link.generation.wrapping_add(1).max(1);
        self.free.push(index);
        cold.key.take().expect("a live node has a key")
    }

    /// Frees every node. Generations move on rather than restart, so a hit
    /// buffered before the clear cannot name a node made after it.
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        for (index, (link, cold)) in self.links.iter_mut().zip(&mut self.cold).enumerate() {
            cold.key = None;
            link.tag = Tag::Free;
            link.generation = link.generation.wrapping_add(1).max(1);
            self.free.push(index as u32);
        }
        self.ends = [Ends::EMPTY; 4];
    }

    /// Takes a node out of its list; the list's weight is the caller's.
    fn unlink(&mut self, index: u32) {
        let Link {
            prev, next, tag, ..
        } = self.links[index as usize];
        debug_assert!(tag != Tag::Free, "unlinking a free node");
        let ends = &mut self.ends[tag as usize];
        if prev == NIL {
            ends.head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            ends.tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
        ends.len -= 1;
        self.links[index as usize].tag = Tag::Free;
    }

    /// Puts a node at the head of `tag`; the list's weight is the caller's.
    fn link_head(&mut self, index: u32, tag: Tag) {
        let ends = &mut self.ends[tag as usize];
        let old_head = ends.head;
        ends.head = index;
        if old_head == NIL {
            ends.tail = index;
        }
        ends.len += 1;
        let link = &mut self.links[index as usize];
        link.prev = NIL;
        link.next = old_head;
        link.tag = tag;
        if old_head != NIL {
            self.links[old_head as usize].prev = index;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(lists: &Lists<u32>, tag: Tag) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = lists.ends(tag).head;
        while at != NIL {
            out.push(lists.cold[at as usize].key.unwrap());
            at = lists.links[at as usize].next;
        }
        out
    }

    #[test]
    fn lists_keep_order_and_totals() {
        let mut l = Lists::new();
        let a = l.push(1, 10, Tag::T1);
        let b = l.push(2, 20, Tag::T1);
        let c = l.push(3, 30, Tag::T2);
        assert_eq!(keys(&l, Tag::T1), [2, 1]);
        l.move_to(a, Tag::T1);
        assert_eq!(keys(&l, Tag::T1), [1, 2]);
        l.move_to(b, Tag::T2);
        assert_eq!(keys(&l, Tag::T2), [2, 3]);
        assert_eq!(l.ends(Tag::T2).weight, 50);
        assert_eq!(l.ends(Tag::T1).weight, 10);
        assert_eq!(l.tail(Tag::T2), Some(c));
        assert_eq!(l.remove(c), 3);
        assert_eq!(l.live(c), None, "a freed handle is stale");
        let d = l.push(4, 1, Tag::B1);
        assert_eq!(d.index(), c.index(), "the slot is reused");
        assert_ne!(d, c, "with a new generation");
        assert_eq!(l.live(d), Some(Tag::B1));
        assert_eq!((l.ends(Tag::T2).len, l.ends(Tag::T2).weight), (1, 20));
        l.set_weight(b, 5);
        assert_eq!(l.ends(Tag::T2).weight, 5);
    }
}
