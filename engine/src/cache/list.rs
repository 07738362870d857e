//! Intrusive doubly linked lists over one arena of nodes, the bookkeeping both
//! policies share. Nodes are named by `u32` indices rather than pointers, so
//! the arena is one `Vec` and needs no unsafe code; a node's generation lets a
//! stale [`Handle`] from a read buffer be recognised and ignored after its
//! slot is reused.

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

    fn index(self) -> u32 {
        self.0 as u32
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

#[derive(Debug)]
struct Node<K> {
    key: Option<K>,
    prev: u32,
    next: u32,
    generation: u32,
    weight: u64,
    tag: Tag,
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
    nodes: Vec<Node<K>>,
    free: Vec<u32>,
    ends: [Ends; 4],
}

impl<K> Lists<K> {
    pub(crate) fn new() -> Self {
        Lists {
            nodes: Vec::new(),
            free: Vec::new(),
            ends: [Ends::EMPTY; 4],
        }
    }

    pub(crate) fn ends(&self, tag: Tag) -> Ends {
        self.ends[tag as usize]
    }

    /// The node a handle names, if that node is still the one it named.
    pub(crate) fn live(&self, handle: Handle) -> Option<Tag> {
        let node = self.nodes.get(handle.index() as usize)?;
        (node.generation == handle.generation() && node.tag != Tag::Free).then_some(node.tag)
    }

    pub(crate) fn key(&self, handle: Handle) -> &K {
        self.nodes[handle.index() as usize]
            .key
            .as_ref()
            .expect("a live node has a key")
    }

    /// Puts a new node at the head of `tag`.
    pub(crate) fn push(&mut self, key: K, weight: u64, tag: Tag) -> Handle {
        let index = match self.free.pop() {
            Some(index) => {
                let node = &mut self.nodes[index as usize];
                node.key = Some(key);
                node.weight = weight;
                index
            }
            None => {
                let index = u32::try_from(self.nodes.len()).expect("fewer than 2^32 - 1 nodes");
                assert!(index != NIL, "a cache holds fewer than 2^32 - 1 nodes");
                self.nodes.push(Node {
                    key: Some(key),
                    prev: NIL,
                    next: NIL,
                    generation: 1,
                    weight,
                    tag: Tag::Free,
                });
                index
            }
        };
        self.link_head(index, tag);
        Handle::new(index, self.nodes[index as usize].generation)
    }

    /// The least recently used node of `tag`.
    pub(crate) fn tail(&self, tag: Tag) -> Option<Handle> {
        let index = self.ends[tag as usize].tail;
        (index != NIL).then(|| Handle::new(index, self.nodes[index as usize].generation))
    }

    /// Moves a live node to the head of `tag` (which may be its own list).
    pub(crate) fn move_to(&mut self, handle: Handle, tag: Tag) {
        let index = handle.index();
        // Hot keys are hit again and again: most moves are of the head.
        if self.ends[tag as usize].head == index {
            return;
        }
        self.unlink(index);
        self.link_head(index, tag);
    }

    pub(crate) fn set_weight(&mut self, handle: Handle, weight: u64) {
        let node = &mut self.nodes[handle.index() as usize];
        let ends = &mut self.ends[node.tag as usize];
        ends.weight = ends.weight - node.weight + weight;
        node.weight = weight;
    }

    /// Unlinks and frees a node, giving its key back.
    pub(crate) fn remove(&mut self, handle: Handle) -> K {
        let index = handle.index();
        self.unlink(index);
        let node = &mut self.nodes[index as usize];
        node.tag = Tag::Free;
        node.generation = node.generation.wrapping_add(1).max(1);
        self.free.push(index);
        node.key.take().expect("a live node has a key")
    }

    /// Frees every node. Generations move on rather than restart, so a hit
    /// buffered before the clear cannot name a node made after it.
    pub(crate) fn clear(&mut self) {
        self.free.clear();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            node.key = None;
            node.tag = Tag::Free;
            node.generation = node.generation.wrapping_add(1).max(1);
            self.free.push(index as u32);
        }
        self.ends = [Ends::EMPTY; 4];
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next, tag, weight) = {
            let n = &self.nodes[index as usize];
            (n.prev, n.next, n.tag, n.weight)
        };
        debug_assert!(tag != Tag::Free, "unlinking a free node");
        let ends = &mut self.ends[tag as usize];
        if prev == NIL {
            ends.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            ends.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        ends.len -= 1;
        ends.weight -= weight;
        self.nodes[index as usize].tag = Tag::Free;
    }

    fn link_head(&mut self, index: u32, tag: Tag) {
        let ends = &mut self.ends[tag as usize];
        let old_head = ends.head;
        ends.head = index;
        if old_head == NIL {
            ends.tail = index;
        }
        ends.len += 1;
        let weight = {
            let node = &mut self.nodes[index as usize];
            node.prev = NIL;
            node.next = old_head;
            node.tag = tag;
            node.weight
        };
        self.ends[tag as usize].weight += weight;
        if old_head != NIL {
            self.nodes[old_head as usize].prev = index;
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
            out.push(lists.nodes[at as usize].key.unwrap());
            at = lists.nodes[at as usize].next;
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
