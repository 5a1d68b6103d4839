//! A compact sorted array with a small sorted delta merged into it, like
//! the token index's (`crate::index`): lookups binary-search a bucket of
//! the main array (a directory by the key's first 16 bits) and the delta;
//! inserts merge into the delta, and the delta into the main array once it
//! holds more than an eighth of it. Slots of removed entries stay until
//! that merge drops them (lookups check liveness themselves).

/// A slot: ordered by its key first, bucketed by the key's first 16 bits.
pub(super) trait Keyed: Copy + Ord {
    fn bucket(&self) -> u16;
    fn id(&self) -> u32;
}

/// Buckets of the directory: one per value of the key's first 16 bits.
const BUCKETS: usize = 1 << 16;
/// The delta is merged into the main array past this size or an eighth of it.
const DELTA_MIN: usize = 1 << 14;

pub(super) struct Sorted<T> {
    main: Vec<T>,
    /// `starts[b]..starts[b + 1]`: the slots of `main` in bucket `b`.
    starts: Vec<u32>,
    delta: Vec<T>,
}

impl<T: Keyed> Sorted<T> {
    /// Builds from unsorted slots, dropping duplicates and dead ones.
    pub(super) fn build(mut slots: Vec<T>, live: impl Fn(u32) -> bool) -> Sorted<T> {
        slots.retain(|s| live(s.id()));
        slots.sort_unstable();
        slots.dedup();
        slots.shrink_to_fit();
        let mut s = Sorted {
            main: slots,
            starts: Vec::new(),
            delta: Vec::new(),
        };
        s.index();
        s
    }

    fn index(&mut self) {
        let mut starts = vec![0u32; BUCKETS + 1];
        for s in &self.main {
            starts[usize::from(s.bucket()) + 1] += 1;
        }
        for b in 0..BUCKETS {
            starts[b + 1] += starts[b];
        }
        self.starts = starts;
    }

    /// Adds slots (in any order); merges the delta into the main array when
    /// it has grown past its share.
    pub(super) fn insert(&mut self, mut new: Vec<T>, live: impl Fn(u32) -> bool) {
        if new.is_empty() {
            return;
        }
        new.sort_unstable();
        self.delta = merge(std::mem::take(&mut self.delta), new, |_| true);
        if self.delta.len() > DELTA_MIN.max(self.main.len() / 8) {
            self.compact(live);
        }
    }

    /// Merges the delta into the main array, dropping dead slots.
    pub(super) fn compact(&mut self, live: impl Fn(u32) -> bool) {
        let main = std::mem::take(&mut self.main);
        let delta = std::mem::take(&mut self.delta);
        self.main = merge(main, delta, live);
        self.main.shrink_to_fit();
        self.index();
    }

    /// Calls `f` for every slot from `probe` on (in key order within the
    /// main array, then within the delta) while `same` holds.
    pub(super) fn find(&self, probe: &T, same: impl Fn(&T) -> bool, mut f: impl FnMut(&T)) {
        let b = usize::from(probe.bucket());
        let main = &self.main[self.starts[b] as usize..self.starts[b + 1] as usize];
        for part in [main, &self.delta[..]] {
            let at = part.partition_point(|s| s < probe);
            part[at..].iter().take_while(|s| same(s)).for_each(&mut f);
        }
    }

    /// Every slot, main array then delta.
    pub(super) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.main.iter().chain(self.delta.iter())
    }

    /// Bytes held on the heap.
    pub(super) fn heap_bytes(&self) -> usize {
        (self.main.capacity() + self.delta.capacity()) * std::mem::size_of::<T>()
            + self.starts.capacity() * 4
    }
}

/// Merges two sorted vectors into one, without duplicates, keeping the
/// slots whose id is live.
fn merge<T: Keyed>(a: Vec<T>, b: Vec<T>, live: impl Fn(u32) -> bool) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (i.peek(), j.peek()) {
            (Some(x), Some(y)) if x <= y => i.next(),
            (Some(_), Some(_)) => j.next(),
            (Some(_), None) => i.next(),
            (None, Some(_)) => j.next(),
            (None, None) => break,
        };
        let s = next.expect("peeked");
        if live(s.id()) && out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
    struct S(u32, u32);
    impl Keyed for S {
        fn bucket(&self) -> u16 {
            (self.0 >> 16) as u16
        }
        fn id(&self) -> u32 {
            self.1
        }
    }

    fn found(s: &Sorted<S>, k: u32) -> Vec<u32> {
        let mut v = Vec::new();
        s.find(&S(k, 0), |x| x.0 == k, |x| v.push(x.1));
        v.sort();
        v
    }

    #[test]
    fn finds_in_main_and_delta_before_and_after_a_merge() {
        let mut s = Sorted::build(vec![S(5 << 16, 1), S(9, 2), S(9, 3), S(9, 3)], |_| true);
        s.insert(vec![S(9, 4), S(5 << 16, 5)], |_| true);
        assert_eq!(found(&s, 9), vec![2, 3, 4]);
        assert_eq!(found(&s, 5 << 16), vec![1, 5]);
        s.compact(|id| id != 3);
        assert_eq!(found(&s, 9), vec![2, 4]);
        assert_eq!(found(&s, 7), Vec::<u32>::new());
        let many: Vec<S> = (0..DELTA_MIN as u32 + 10).map(|i| S(i * 7919, i)).collect();
        s.insert(many, |_| true);
        assert!(s.delta.is_empty(), "a delta past its share is merged");
        assert_eq!(found(&s, 7919 * 3), vec![3]);
    }
}
