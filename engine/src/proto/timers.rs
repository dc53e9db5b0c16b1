//! The shard's timer queue: a binary heap for deadlines of any length, and
//! FIFO queues for deadlines that are always the same span after the
//! moment they are set.
//!
//! Most timers a busy shard holds are the second kind: a finished
//! transaction lingers a fixed span to absorb retransmissions (Timer J and
//! RFC 6026 Timer L for 64·T1, Timer K and I for T4, Timer D for 32 s). A
//! deadline `now + span` pushed at a non-decreasing `now` is never earlier
//! than the one before it in the same queue, so each such queue is sorted
//! by construction: push and pop are O(1), and no heap entry is spent on
//! it. Should a caller's clock ever step back, an entry fires late by at
//! most the step, never early, because only the front is compared.
//!
//! Entries are never removed in place. The owner checks, when an entry
//! fires, that it is still its deadline (lazy deletion); heap entries that
//! went stale are dropped by [`TimerQueue::retain_heap`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// At most this many distinct FIFO spans; others go to the heap.
const MAX_SPANS: usize = 8;

/// Deadlines keyed by `K`.
#[derive(Debug)]
pub struct TimerQueue<K> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
    fifos: Vec<(Duration, VecDeque<(Instant, K)>)>,
    fifo_len: usize,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue { heap: BinaryHeap::new(), fifos: Vec::new(), fifo_len: 0 }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    /// Queues `key` at `at`, in the heap.
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// Queues `key` at `now + span` in the FIFO for `span` (the heap when
    /// there are already [`MAX_SPANS`] other spans). Returns true when it
    /// went to a FIFO.
    pub fn push_after(&mut self, now: Instant, span: Duration, key: K) -> bool {
        let at = now + span;
        let i = match self.fifos.iter().position(|(s, _)| *s == span) {
            Some(i) => i,
            None if self.fifos.len() < MAX_SPANS => {
                self.fifos.push((span, VecDeque::new()));
                self.fifos.len() - 1
            }
            None => {
                self.push(at, key);
                return false;
            }
        };
        self.fifos[i].1.push_back((at, key));
        self.fifo_len += 1;
        true
    }

    /// The earliest deadline queued.
    pub fn peek(&self) -> Option<Instant> {
        let heap = self.heap.peek().map(|Reverse((at, _))| *at);
        self.fifos.iter().filter_map(|(_, q)| q.front().map(|(at, _)| *at)).chain(heap).min()
    }

    /// Removes and returns the earliest entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        let heap = self.heap.peek().map(|Reverse((at, _))| *at);
        match self.earliest_fifo() {
            Some((i, at)) if at <= now && heap.is_none_or(|h| at <= h) => self.pop_fifo(i),
            _ if heap.is_some_and(|h| h <= now) => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Removes and returns the FIFO entry with the earliest deadline, due
    /// or not (for evicting the oldest lingering entry).
    pub fn pop_oldest_fifo(&mut self) -> Option<(Instant, K)> {
        let (i, _) = self.earliest_fifo()?;
        self.pop_fifo(i)
    }

    /// Entries in the FIFOs.
    pub fn fifo_len(&self) -> usize {
        self.fifo_len
    }

    /// Entries in the heap, stale ones included.
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the heap entries for which `live(at, key)` holds.
    pub fn retain_heap(&mut self, mut live: impl FnMut(Instant, K) -> bool) {
        self.heap.retain(|Reverse((at, key))| live(*at, *key));
    }

    fn earliest_fifo(&self) -> Option<(usize, Instant)> {
        self.fifos
            .iter()
            .enumerate()
            .filter_map(|(i, (_, q))| q.front().map(|(at, _)| (i, *at)))
            .min_by_key(|(_, at)| *at)
    }

    fn pop_fifo(&mut self, i: usize) -> Option<(Instant, K)> {
        let e = self.fifos.get_mut(i)?.1.pop_front()?;
        self.fifo_len -= 1;
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut TimerQueue<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| q.pop_due(now).map(|(_, k)| k)).collect()
    }

    #[test]
    fn heap_and_fifos_pop_in_deadline_order() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = TimerQueue::default();
        q.push_after(t0, ms(300), 1); // 300
        q.push(t0 + ms(100), 2); // 100
        q.push_after(t0 + ms(10), ms(50), 3); // 60
        q.push_after(t0 + ms(20), ms(300), 4); // 320
        q.push(t0 + ms(310), 5); // 310
        assert_eq!(q.fifo_len(), 3);
        assert_eq!(q.heap_len(), 2);
        assert_eq!(q.peek(), Some(t0 + ms(60)));
        assert_eq!(drain(&mut q, t0 + ms(59)), Vec::<u32>::new());
        assert_eq!(drain(&mut q, t0 + ms(305)), vec![3, 2, 1]);
        assert_eq!(q.peek(), Some(t0 + ms(310)));
        assert_eq!(drain(&mut q, t0 + ms(1000)), vec![5, 4]);
        assert_eq!((q.fifo_len(), q.peek()), (0, None));
    }

    #[test]
    fn oldest_fifo_entry_is_evicted_first_whatever_its_span() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = TimerQueue::default();
        q.push_after(t0, s(32), 1);
        q.push_after(t0 + s(1), s(5), 2);
        q.push_after(t0 + s(2), s(32), 3);
        assert_eq!(q.pop_oldest_fifo(), Some((t0 + s(6), 2)));
        assert_eq!(q.pop_oldest_fifo(), Some((t0 + s(32), 1)));
        assert_eq!(q.fifo_len(), 1);
    }

    #[test]
    fn spans_beyond_the_limit_go_to_the_heap() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        for i in 0..MAX_SPANS as u32 + 2 {
            q.push_after(t0, Duration::from_millis(u64::from(i) + 1), i);
        }
        assert_eq!((q.fifo_len(), q.heap_len()), (MAX_SPANS, 2));
        let order = drain(&mut q, t0 + Duration::from_secs(1));
        assert_eq!(order, (0..MAX_SPANS as u32 + 2).collect::<Vec<_>>());
    }

    #[test]
    fn retain_heap_drops_stale_entries_only_from_the_heap() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.push(t0, 1);
        q.push(t0, 2);
        q.push_after(t0, Duration::from_secs(1), 3);
        q.retain_heap(|_, k| k != 1);
        assert_eq!(q.heap_len(), 1);
        assert_eq!(drain(&mut q, t0 + Duration::from_secs(2)), vec![2, 3]);
    }
}
