//! Nonce counts (RFC 7616 §3.4 and §5.12, RFC 8760): what each nonce has
//! been used for, so that a nonce answers at most one wrong response and a
//! nonce count is never accepted twice (docs/decisions/0019).
//!
//! Nonces themselves stay stateless (an HMAC, [`super::Authenticator`]); a
//! nonce gets an entry here only once a response to it is checked, so a
//! flood of challenges costs no memory. The table is bounded: entries end
//! with their nonce's validity, and past the cap the entry of the oldest
//! nonce is evicted (counted) and every nonce issued up to it that has no
//! entry is from then on answered [`Reuse::Forgotten`]: a fresh challenge,
//! never a second chance to guess.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::proto::ids::Keyed;

/// One nonce sipark issued: its issue time (Unix seconds) and the salt
/// that makes it unique among those issued in the same second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NonceId {
    /// Unix seconds when it was issued.
    pub issued: u64,
    /// The random part.
    pub salt: u64,
}

/// Why credentials were not checked, although their nonce is authentic and
/// fresh: the shard challenges again, with a new nonce and without `stale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// A response to this nonce was already wrong: it answers no second one.
    Spent,
    /// The nonce count is not above the last one accepted for this nonce
    /// (a replay, or a client that reuses its count).
    Replayed,
    /// The table was full and this nonce's entry (or the entry of a later
    /// nonce) was evicted: what it was used for is not known any more.
    Forgotten,
}

/// What one nonce was used for.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    /// The highest nonce count accepted (0: none yet).
    nc: u32,
    /// A response to it was wrong.
    failed: bool,
}

/// The nonce-count table of one shard.
#[derive(Debug)]
pub struct NonceCounts {
    entries: hashbrown::HashMap<NonceId, Count, Keyed>,
    /// Every key of `entries`, the oldest issue time on top.
    by_issue: BinaryHeap<Reverse<NonceId>>,
    cap: usize,
    validity: u64,
    /// The newest nonce evicted so far: an entry-less nonce not after it
    /// may have been used.
    forgotten: Option<NonceId>,
    evicted: u64,
}

impl NonceCounts {
    /// A table of at most `cap` nonces (at least 1), each kept for
    /// `validity` after it was issued (the validity nonces are accepted
    /// for). `hasher` keys the table.
    pub fn new(cap: usize, validity: Duration, hasher: Keyed) -> NonceCounts {
        NonceCounts {
            entries: hashbrown::HashMap::with_hasher(hasher),
            by_issue: BinaryHeap::new(),
            cap: cap.max(1),
            validity: validity.as_secs(),
            forgotten: None,
            evicted: 0,
        }
    }

    /// Whether a response to `id` with nonce count `nc` may be checked.
    pub fn check(&self, id: NonceId, nc: u32) -> Result<(), Reuse> {
        match self.entries.get(&id) {
            Some(c) if c.failed => Err(Reuse::Spent),
            Some(c) if nc <= c.nc => Err(Reuse::Replayed),
            Some(_) => Ok(()),
            None if self.forgotten.is_some_and(|f| id <= f) => Err(Reuse::Forgotten),
            // A first use: counts start at 1 (RFC 7616 §3.4).
            None if nc == 0 => Err(Reuse::Replayed),
            None => Ok(()),
        }
    }

    /// A right response to `id` with count `nc` (which [`NonceCounts::check`]
    /// allowed), at `now_unix`.
    pub fn accepted(&mut self, id: NonceId, nc: u32, now_unix: u64) {
        let c = self.entry(id, now_unix);
        c.nc = c.nc.max(nc);
    }

    /// A wrong response to `id`, at `now_unix`: the nonce is spent.
    pub fn failed(&mut self, id: NonceId, now_unix: u64) {
        self.entry(id, now_unix).failed = true;
    }

    /// Nonces with an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no nonce has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries evicted for the cap since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// `id`'s entry, made if needed: expired entries go first, then, at
    /// the cap, the oldest nonce's.
    fn entry(&mut self, id: NonceId, now_unix: u64) -> &mut Count {
        if !self.entries.contains_key(&id) {
            while let Some(Reverse(top)) = self.by_issue.peek().copied() {
                if top.issued.saturating_add(self.validity) >= now_unix {
                    break;
                }
                self.by_issue.pop();
                self.entries.remove(&top);
            }
            while self.entries.len() >= self.cap {
                let Some(Reverse(oldest)) = self.by_issue.pop() else { break };
                self.entries.remove(&oldest);
                self.forgotten = Some(self.forgotten.map_or(oldest, |f| f.max(oldest)));
                self.evicted += 1;
            }
            self.by_issue.push(Reverse(id));
        }
        self.entries.entry(id).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ids::Seed;

    fn table(cap: usize) -> NonceCounts {
        NonceCounts::new(cap, Duration::from_secs(300), Seed::from_u64(1).hasher(9))
    }

    const fn id(issued: u64, salt: u64) -> NonceId {
        NonceId { issued, salt }
    }

    #[test]
    fn counts_must_rise_and_one_failure_spends_a_nonce() {
        let mut t = table(10);
        let a = id(1000, 1);
        assert_eq!(t.check(a, 0), Err(Reuse::Replayed), "counts start at 1");
        assert_eq!(t.check(a, 1), Ok(()));
        t.accepted(a, 1, 1000);
        assert_eq!(t.check(a, 1), Err(Reuse::Replayed));
        assert_eq!(t.check(a, 3), Ok(()), "a count may skip");
        t.accepted(a, 3, 1001);
        assert_eq!(t.check(a, 2), Err(Reuse::Replayed), "but never go back");
        t.failed(a, 1002);
        assert_eq!(t.check(a, 4), Err(Reuse::Spent));
        // Another salt, the same second: another nonce.
        assert_eq!(t.check(id(1000, 2), 1), Ok(()));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn entries_end_with_the_validity() {
        let mut t = table(10);
        t.failed(id(1000, 1), 1000);
        t.failed(id(1100, 1), 1100);
        // At 1300 the first is still valid (issued + 300), at 1301 it is not.
        t.accepted(id(1300, 1), 1, 1300);
        assert_eq!(t.len(), 3);
        t.accepted(id(1301, 1), 1, 1301);
        assert_eq!(t.len(), 3, "the nonce of 1000 left when the one of 1301 came");
        assert_eq!(t.check(id(1100, 1), 1), Err(Reuse::Spent));
        assert_eq!(t.evicted(), 0, "expiry is no eviction");
        // An expired entry gone is not "forgotten": the shard answers its
        // nonce stale before looking here.
        assert_eq!(t.check(id(1000, 1), 1), Ok(()));
    }

    #[test]
    fn past_the_cap_the_oldest_goes_and_older_nonces_are_forgotten() {
        let mut t = table(3);
        for (i, issued) in [1005u64, 1001, 1003].into_iter().enumerate() {
            t.failed(id(issued, i as u64), 1010);
        }
        t.accepted(id(1004, 7), 1, 1010);
        assert_eq!((t.len(), t.evicted()), (3, 1));
        // 1001 was evicted: it, and any entry-less nonce up to it, is
        // forgotten; later ones are not.
        assert_eq!(t.check(id(1001, 1), 5), Err(Reuse::Forgotten));
        assert_eq!(t.check(id(1000, 99), 1), Err(Reuse::Forgotten));
        assert_eq!(t.check(id(1001, 0), 1), Err(Reuse::Forgotten), "same second, smaller salt");
        assert_eq!(t.check(id(1001, 2), 1), Ok(()), "same second, larger salt: never seen");
        assert_eq!(t.check(id(1002, 0), 1), Ok(()));
        assert_eq!(t.check(id(1003, 2), 1), Err(Reuse::Spent), "kept");
        // Bounded whatever arrives.
        for n in 0..1000u64 {
            t.failed(id(2000 + n, n), 2000 + n);
            assert!(t.len() <= 3);
        }
        assert!(t.by_issue.len() == t.entries.len());
    }
}
