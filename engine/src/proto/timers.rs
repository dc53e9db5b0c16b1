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

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

/// At most this many distinct FIFO spans; others go to the heap.
const MAX_SPANS: usize = 8;

/// Tables below this many slots keep their capacity.
pub(crate) const MIN_SHRINK: usize = 1024;

/// Is a table of `cap` slots holding `len` three-quarters empty? It then
/// shrinks to twice `len`, so a table shrinks again only after it has
/// halved once more, and grows again only after it has doubled: each
/// rehash is paid for by as many inserts or removals as it moves entries.
pub fn sparse(len: usize, cap: usize) -> bool {
    cap > MIN_SHRINK && len < cap / 4
}

/// How far before the first deadline the epoch is put, so that a later
/// deadline earlier than the first (a caller whose clock stepped back, a
/// shorter timer set later) rarely needs a rebase.
const EPOCH_MARGIN: Duration = Duration::from_secs(3600);

/// Deadlines keyed by `K`.
///
/// A deadline is kept as nanoseconds since the queue's epoch (8 bytes,
/// where an `Instant` takes 16): an entry keyed by an id is 16 bytes. The
/// epoch is set before the first deadline; a deadline before it moves the
/// epoch back and every entry with it (O(n), and only for a deadline more
/// than [`EPOCH_MARGIN`] before the first).
#[derive(Debug)]
pub struct TimerQueue<K> {
    epoch: Option<Instant>,
    /// The last instant [`TimerQueue::pop_due`] was asked about, in ticks
    /// (a shard pops until nothing is due, with the same `now`).
    last_now: Option<(Instant, u64)>,
    /// The last deadline [`TimerQueue::peek`] gave, as an instant (asked
    /// after every datagram, it rarely changes between two).
    last_peek: Cell<Option<(u64, Instant)>>,
    heap: BinaryHeap<Reverse<(u64, K)>>,
    fifos: Vec<(Duration, VecDeque<(u64, K)>)>,
    fifo_len: usize,
}

impl<K: Ord + Copy> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            epoch: None,
            last_now: None,
            last_peek: Cell::new(None),
            heap: BinaryHeap::new(),
            fifos: Vec::new(),
            fifo_len: 0,
        }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    /// `at` in ticks since the epoch, which it moves back if it must.
    fn tick(&mut self, at: Instant) -> u64 {
        let before = |at: Instant| at.checked_sub(EPOCH_MARGIN).unwrap_or(at);
        let mut epoch = *self.epoch.get_or_insert_with(|| before(at));
        if at < epoch {
            epoch = before(at);
            self.rebase(epoch);
        }
        nanos(at - epoch)
    }

    /// The instant of `tick` (`None` before the first deadline set the
    /// epoch, when no entry exists).
    fn instant(&self, tick: u64) -> Option<Instant> {
        self.epoch.map(|epoch| epoch + Duration::from_nanos(tick))
    }

    /// Moves the epoch back to `to`, and every entry with it.
    fn rebase(&mut self, to: Instant) {
        let Some(epoch) = self.epoch.replace(to) else { return };
        self.last_now = None;
        self.last_peek.set(None);
        let shift = nanos(epoch - to);
        let heap = std::mem::take(&mut self.heap).into_vec();
        self.heap = heap.into_iter().map(|Reverse((t, k))| Reverse((t.saturating_add(shift), k))).collect();
        for (_, q) in &mut self.fifos {
            for (t, _) in q.iter_mut() {
                *t = t.saturating_add(shift);
            }
        }
    }

    /// Queues `key` at `at`, in the heap.
    pub fn push(&mut self, at: Instant, key: K) {
        let t = self.tick(at);
        self.heap.push(Reverse((t, key)));
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
        let t = match self.last_now {
            // The common case: `now` is the instant the queue was last
            // asked about, already in ticks.
            Some((last, t)) if last == now => t.saturating_add(nanos(span)),
            _ => self.tick(at),
        };
        self.fifos[i].1.push_back((t, key));
        self.fifo_len += 1;
        true
    }

    /// The earliest deadline queued.
    pub fn peek(&self) -> Option<Instant> {
        let heap = self.heap.peek().map(|Reverse((t, _))| *t);
        let t = self.fifos.iter().filter_map(|(_, q)| q.front().map(|(t, _)| *t)).chain(heap).min()?;
        match self.last_peek.get() {
            Some((last, at)) if last == t => Some(at),
            _ => {
                let at = self.instant(t)?;
                self.last_peek.set(Some((t, at)));
                Some(at)
            }
        }
    }

    /// Removes and returns the earliest entry due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        let now = match (self.last_now, self.epoch) {
            (Some((last, t)), _) if last == now => t,
            (_, Some(epoch)) if now >= epoch => {
                let t = nanos(now - epoch);
                self.last_now = Some((now, t));
                t
            }
            _ => return None,
        };
        let heap = self.heap.peek().map(|Reverse((t, _))| *t);
        let (t, key) = match self.earliest_fifo() {
            Some((i, t)) if t <= now && heap.is_none_or(|h| t <= h) => self.pop_fifo(i),
            _ if heap.is_some_and(|h| h <= now) => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }?;
        Some((self.instant(t)?, key))
    }

    /// Removes and returns the FIFO entry with the earliest deadline, due
    /// or not (for evicting the oldest lingering entry).
    pub fn pop_oldest_fifo(&mut self) -> Option<(Instant, K)> {
        let (i, _) = self.earliest_fifo()?;
        let (t, key) = self.pop_fifo(i)?;
        Some((self.instant(t)?, key))
    }

    /// Entries in the FIFOs.
    pub fn fifo_len(&self) -> usize {
        self.fifo_len
    }

    /// Entries the heap and the FIFOs have room for.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.heap.capacity() + self.fifos.iter().map(|(_, q)| q.capacity()).sum::<usize>()
    }

    /// Entries in the heap, stale ones included.
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the heap entries for which `live(at, key)` holds.
    pub fn retain_heap(&mut self, mut live: impl FnMut(Instant, K) -> bool) {
        let Some(epoch) = self.epoch else { return };
        self.heap.retain(|Reverse((t, key))| live(epoch + Duration::from_nanos(*t), *key));
    }

    /// Gives back the capacity the heap and the FIFOs kept from a busier
    /// moment, once one is three-quarters empty ([`sparse`]).
    pub fn give_back(&mut self) {
        if sparse(self.heap.len(), self.heap.capacity()) {
            self.heap.shrink_to(2 * self.heap.len());
        }
        for (_, q) in &mut self.fifos {
            if sparse(q.len(), q.capacity()) {
                q.shrink_to(2 * q.len());
            }
        }
    }

    fn earliest_fifo(&self) -> Option<(usize, u64)> {
        self.fifos.iter().enumerate().filter_map(|(i, (_, q))| q.front().map(|(t, _)| (i, *t))).min_by_key(|(_, t)| *t)
    }

    fn pop_fifo(&mut self, i: usize) -> Option<(u64, K)> {
        let e = self.fifos.get_mut(i)?.1.pop_front()?;
        self.fifo_len -= 1;
        Some(e)
    }
}

/// A span in nanoseconds (saturating: 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut TimerQueue<u32>, now: Instant) -> Vec<u32> {
        std::iter::from_fn(|| q.pop_due(now).map(|(_, k)| k)).collect()
    }

    #[test]
    fn a_deadline_before_the_epoch_moves_it_and_keeps_every_instant() {
        let t0 = Instant::now();
        let h = Duration::from_secs(3600);
        let mut q = TimerQueue::default();
        q.push(t0 + 3 * h, 1);
        q.push_after(t0 + 3 * h, Duration::from_secs(32), 2);
        q.push(t0, 3); // before the epoch (t0 + 2h): a rebase
        q.push_after(t0, Duration::from_millis(1), 4);
        assert_eq!(q.peek(), Some(t0));
        let all: Vec<_> = std::iter::from_fn(|| q.pop_due(t0 + 4 * h)).collect();
        assert_eq!(
            all,
            vec![
                (t0, 3),
                (t0 + Duration::from_millis(1), 4),
                (t0 + 3 * h, 1),
                (t0 + 3 * h + Duration::from_secs(32), 2)
            ]
        );
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
