//! Handing a collection's spare capacity back once it is mostly empty:
//! after a storm, maps sized for its peak would otherwise keep that memory
//! for the daemon's whole life.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

/// Below this capacity the buffer is not worth a reallocation.
const MIN_CAPACITY: usize = 64;

fn worth(len: usize, capacity: usize) -> bool {
    capacity > MIN_CAPACITY && len * 4 < capacity
}

pub fn map<K: Hash + Eq, V>(m: &mut HashMap<K, V>) {
    if worth(m.len(), m.capacity()) {
        m.shrink_to_fit();
    }
}

pub fn deque<T>(d: &mut VecDeque<T>) {
    if worth(d.len(), d.capacity()) {
        d.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_only_a_mostly_empty_large_map() {
        let mut m: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let peak = m.capacity();
        map(&mut m);
        assert_eq!(m.capacity(), peak, "a full map keeps its buffer");
        m.retain(|k, _| *k < 100);
        map(&mut m);
        assert!(m.capacity() < peak / 10, "{} of {peak}", m.capacity());
        let mut small: HashMap<u32, u32> = (0..10).map(|i| (i, i)).collect();
        small.clear();
        let c = small.capacity();
        map(&mut small);
        assert_eq!(small.capacity(), c, "small buffers are left alone");
        let mut d: VecDeque<u32> = (0..10_000).collect();
        d.truncate(10);
        deque(&mut d);
        assert!(d.capacity() < 100);
    }
}
