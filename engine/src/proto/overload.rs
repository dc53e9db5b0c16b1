//! Overload control (docs/decisions/0021-overload-control.md): whether a
//! worker keeps up with what it receives, and which new out-of-dialog
//! requests it admits while it does not.
//!
//! The signal is the receive path's queueing delay: the I/O layer stamps
//! each datagram with the kernel's receive time and hands the shard, once
//! per batch, how long the oldest datagram of the batch waited before the
//! worker picked it up ([`Controller::on_delay`]). A worker that keeps up
//! drains its socket every turn, so the delay stays at the length of one
//! turn; one that does not builds a standing queue, and the delay grows
//! with it, long before clients retransmit.
//!
//! The rule, with two bounds `low < high`:
//!
//! * **Entering.** A worker is overloaded once the delay has stayed at or
//!   over `high` for `window` (CoDel's test for a standing queue, RFC
//!   8289): a burst, or a stall of the worker that its next turns soon
//!   drain, does not count.
//! * **Shedding.** While overloaded, new work ([`Work::New`]: parks,
//!   REGISTER, any other new out-of-dialog request but OPTIONS) is admitted
//!   in the fraction `(high − delay) / (high − low)`, clamped to `0..=1`:
//!   all of it at or under `low`, none at or over `high`. Which requests
//!   make up the share is decided by a keyed hash of the Call-ID
//!   ([`admission_hash`]), the same rule the XDP program applies with the
//!   share the worker publishes (docs/decisions/0022-overload-503-in-xdp.md):
//!   a request XDP admitted is admitted here too, a retransmission gets the
//!   answer its first copy got, and the choice repeats bit for bit in the
//!   simulation. Work that finishes what was
//!   admitted ([`Work::Finishing`]: retrieves, which end a parked call) is
//!   refused only while the delay is at or over `high`.
//! * **Leaving** (hysteresis). The state ends once the delay has stayed
//!   under `low` for `hold`. Until then, shedding starts at `low`, not at
//!   `high`, so admission does not swing between all and nothing.
//!
//! A refused request is answered 503 statelessly; its branch is kept in
//! [`Refused`] for as long as its client may retransmit it, so that a
//! retransmission is refused again rather than admitted late.

use std::time::{Duration, Instant};

/// The bounds of overload control (`--overload-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Queueing delay at which a worker becomes overloaded (once it has
    /// lasted `window`), and over which it admits no new work at all.
    pub high: Duration,
    /// Queueing delay at or under which all work is admitted; the delay
    /// must stay under it for `hold` before the overloaded state ends.
    pub low: Duration,
    /// How long the delay must stay at or over `high` before the worker is
    /// overloaded.
    pub window: Duration,
    /// How long the delay must stay under `low` before the state ends.
    pub hold: Duration,
    /// `Retry-After` of the 503, seconds: drawn uniformly from
    /// `retry_after.0..=retry_after.1` for each refusal, so that refused
    /// clients do not all come back at once (RFC 3261 §21.5.4).
    pub retry_after: (u32, u32),
}

impl Default for Bounds {
    /// The defaults of the flags (docs/decisions/0021-overload-control.md).
    fn default() -> Self {
        Bounds {
            high: Duration::from_millis(5),
            low: Duration::from_millis(1),
            window: Duration::from_millis(20),
            hold: Duration::from_secs(1),
            retry_after: (4, 8),
        }
    }
}

/// What a new out-of-dialog request would start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// New work: a park, a REGISTER, anything but a retrieve.
    New,
    /// A retrieve: it finishes a park that was admitted (and frees it).
    Finishing,
    /// New work the XDP program has already admitted by the share
    /// (docs/decisions/0022-overload-503-in-xdp.md): refused again only at
    /// or over the high bound, as a retrieve is. Applying the share twice
    /// would admit its square.
    Screened,
}

/// A change of state, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The worker no longer keeps up: shedding starts.
    Entered,
    /// The delay stayed under the low bound for the hold time.
    Left,
}

/// The overloaded state, while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Overloaded {
    /// Since when the delay has been under the low bound, if it is.
    calm_since: Option<Instant>,
}

/// One worker's overload state: fed the queueing delay, asked whether a
/// request is admitted.
#[derive(Debug, Clone)]
pub struct Controller {
    /// `None`: overload control is off, everything is admitted.
    bounds: Option<Bounds>,
    state: Option<Overloaded>,
    /// Not overloaded: since when the delay has been at or over the high
    /// bound, if it is.
    above_since: Option<Instant>,
    /// The last delay measured.
    delay: Duration,
    /// When the last delay was measured.
    at: Option<Instant>,
    /// Time spent overloaded, in all.
    overloaded_for: Duration,
}

/// The whole of a share: shares of new work are in `1 / SHARE_ONE`
/// (`SIPARK_SHED_ONE` in ebpf/sipark.h).
pub const SHARE_ONE: u32 = 1 << 16;

/// The admission hash of a request with Call-ID `call_id` and CSeq number
/// `cseq`, under `key` (`sipark_admission_hash` in ebpf/sipark.h, which
/// the BPF tests hold to this): FNV-1a 32 over the Call-ID's first 255
/// bytes, as received, started from the FNV offset basis xor `key`, then
/// over the CSeq number's four bytes, least significant first, then
/// MurmurHash3's `fmix32`. A new request is refused when the top 16 bits
/// are under the refused share ([`Controller::refused_share`]). The CSeq
/// makes each new request of a call (a phone's REGISTER refresh) a draw of
/// its own; a retransmission gets its first copy's answer.
pub fn admission_hash(key: u32, call_id: &[u8], cseq: u32) -> u32 {
    let mut h = crate::proto::route::FNV_OFFSET ^ key;
    let seq = cseq.to_le_bytes();
    for &b in call_id.iter().take(crate::proto::route::MAX_DOMAIN_HASHED).chain(&seq) {
        h ^= u32::from(b);
        h = h.wrapping_mul(crate::proto::route::FNV_PRIME);
    }
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The key of [`admission_hash`] for a process whose secret is `secret`
/// (its digest nonce key): one-way, so that what an attacker learns of
/// the key by watching which Call-IDs are refused tells nothing of the
/// nonce key; the same in every shard and in the XDP program.
pub fn admission_key(secret: &[u8; 32]) -> u32 {
    use std::hash::Hasher as _;
    let mut k = [0u8; 8];
    k.copy_from_slice(&secret[..8]);
    let k0 = u64::from_le_bytes(k);
    k.copy_from_slice(&secret[8..16]);
    let k1 = u64::from_le_bytes(k);
    let mut h = siphasher::sip::SipHasher13::new_with_keys(k0, k1);
    h.write(b"sipark overload admission key");
    h.finish() as u32
}

impl Controller {
    /// A controller with `bounds` (`None`: never overloaded).
    pub fn new(bounds: Option<Bounds>) -> Controller {
        Controller {
            bounds,
            state: None,
            above_since: None,
            delay: Duration::ZERO,
            at: None,
            overloaded_for: Duration::ZERO,
        }
    }

    /// The delay measured at `now`: how long the oldest datagram of the
    /// batch just received waited (zero when nothing was waiting). Returns
    /// the change of state it caused, if any.
    pub fn on_delay(&mut self, now: Instant, delay: Duration) -> Option<Change> {
        let b = self.bounds?;
        if self.state.is_some()
            && let Some(at) = self.at
        {
            self.overloaded_for += now.saturating_duration_since(at);
        }
        self.delay = delay;
        self.at = Some(now);
        match &mut self.state {
            None if delay >= b.high => {
                let since = *self.above_since.get_or_insert(now);
                if now.saturating_duration_since(since) < b.window {
                    return None;
                }
                self.above_since = None;
                self.state = Some(Overloaded { calm_since: None });
                Some(Change::Entered)
            }
            None => {
                self.above_since = None;
                None
            }
            Some(o) if delay < b.low => {
                let since = *o.calm_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= b.hold {
                    self.state = None;
                    return Some(Change::Left);
                }
                None
            }
            Some(o) => {
                o.calm_since = None;
                None
            }
        }
    }

    /// Whether a request that would start `work`, whose [`admission_hash`]
    /// is `hash`, is admitted now.
    pub fn admits(&self, work: Work, hash: u32) -> bool {
        let (Some(b), Some(_)) = (self.bounds, self.state) else { return true };
        match work {
            Work::Finishing | Work::Screened => self.delay < b.high,
            Work::New => hash >> 16 >= self.refused_share(),
        }
    }

    /// The share of new work refused now, in `1 / SHARE_ONE`: 0 unless
    /// overloaded. What the worker publishes to the XDP program.
    pub fn refused_share(&self) -> u32 {
        match (self.bounds, self.state) {
            (Some(b), Some(_)) => SHARE_ONE - admitted_share(&b, self.delay),
            _ => 0,
        }
    }

    /// Whether the worker is overloaded.
    pub fn is_overloaded(&self) -> bool {
        self.state.is_some()
    }

    /// The last delay measured.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Time spent overloaded since the start.
    pub fn overloaded_for(&self) -> Duration {
        self.overloaded_for
    }

    /// The bounds, when overload control is on.
    pub fn bounds(&self) -> Option<&Bounds> {
        self.bounds.as_ref()
    }
}

/// The share of new work admitted at `delay` while overloaded, in
/// `1 / SHARE_ONE`: all at or under `low`, none at or over `high`,
/// linear between.
fn admitted_share(b: &Bounds, delay: Duration) -> u32 {
    if delay <= b.low {
        return SHARE_ONE;
    }
    if delay >= b.high || b.high <= b.low {
        return 0;
    }
    let span = (b.high - b.low).as_nanos();
    let left = (b.high - delay).as_nanos();
    u32::try_from(left * u128::from(SHARE_ONE) / span).unwrap_or(SHARE_ONE)
}

/// Slots of [`Refused`]: 32,768 refusals (16 bytes each, 512 KiB, taken
/// at the first refusal).
pub const REFUSED_SLOTS: usize = 1 << 15;

/// Requests refused lately, by a keyed fingerprint of their branch and
/// source, so that a retransmission of one is refused again rather than
/// admitted once the worker keeps up again (a client that lost the 503, or
/// whose copies were still queued, would otherwise get a 503 and then a 200
/// for one transaction). A direct-mapped table of fixed size: a refusal takes the
/// slot its fingerprint names, and forgets (evicts) whatever refusal was
/// there; the caller counts those. Nothing else is kept per refusal.
#[derive(Debug, Clone, Default)]
pub struct Refused {
    /// `(fingerprint, until)`, `until` in milliseconds since `base`; an
    /// empty slot has `until == 0`.
    slots: Vec<(u64, u64)>,
    base: Option<Instant>,
    /// Until when (ms since `base`) any slot may hold a live refusal.
    live_until: u64,
}

impl Refused {
    fn ms(&self, now: Instant) -> u64 {
        self.base.map_or(0, |b| u64::try_from(now.saturating_duration_since(b).as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether any refusal may still be remembered at `now` (when not,
    /// [`Refused::contains`] is false for every fingerprint).
    pub fn any(&self, now: Instant) -> bool {
        self.base.is_some() && self.ms(now) < self.live_until
    }

    /// Remembers the refusal of `fp` at `now` for `keep`. Returns whether
    /// this forgot another refusal still within its time.
    pub fn insert(&mut self, now: Instant, fp: u64, keep: Duration) -> bool {
        if self.slots.is_empty() {
            self.slots = vec![(0, 0); REFUSED_SLOTS];
        }
        let base = *self.base.get_or_insert(now);
        let at = u64::try_from(now.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX);
        let until = at.saturating_add(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX)).max(1);
        self.live_until = self.live_until.max(until);
        let slot = &mut self.slots[(fp as usize) & (REFUSED_SLOTS - 1)];
        let evicted = slot.1 > at && slot.0 != fp;
        *slot = (fp, until);
        evicted
    }

    /// Whether `fp` was refused and is still remembered at `now`.
    pub fn contains(&self, now: Instant, fp: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let slot = self.slots[(fp as usize) & (REFUSED_SLOTS - 1)];
        slot.0 == fp && slot.1 > self.ms(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bounds() -> Bounds {
        Bounds { high: ms(4), low: ms(2), window: Duration::ZERO, hold: ms(100), retry_after: (4, 8) }
    }

    /// How many of `n` new requests are admitted, their admission hashes
    /// spread evenly over the whole range.
    fn admitted(c: &mut Controller, n: usize) -> usize {
        (0..n as u64).filter(|i| c.admits(Work::New, ((i << 32) / n as u64) as u32)).count()
    }

    #[test]
    fn off_admits_everything_at_any_delay() {
        let mut c = Controller::new(None);
        let t = Instant::now();
        assert_eq!(c.on_delay(t, Duration::from_secs(5)), None);
        assert!(!c.is_overloaded());
        assert_eq!(admitted(&mut c, 10), 10);
        assert!(c.admits(Work::Finishing, 0));
    }

    #[test]
    fn the_high_bound_enters_and_sheds_all_new_work() {
        let mut c = Controller::new(Some(bounds()));
        let t = Instant::now();
        assert_eq!(c.on_delay(t, ms(3)), None, "under the high bound: still keeping up");
        assert_eq!(admitted(&mut c, 10), 10);
        assert_eq!(c.on_delay(t + ms(1), ms(4)), Some(Change::Entered));
        assert!(c.is_overloaded());
        assert_eq!(admitted(&mut c, 10), 0);
        assert!(!c.admits(Work::Finishing, u32::MAX), "over the high bound, retrieves are refused too");
    }

    #[test]
    fn only_a_delay_that_lasts_the_window_enters() {
        let mut c = Controller::new(Some(Bounds { window: ms(20), ..bounds() }));
        let t = Instant::now();
        // A stall: the next turns drain it within the window.
        assert_eq!(c.on_delay(t, ms(30)), None);
        assert_eq!(c.on_delay(t + ms(10), ms(8)), None);
        assert_eq!(c.on_delay(t + ms(19), ms(4)), None);
        assert_eq!(c.on_delay(t + ms(20), ms(1)), None);
        assert_eq!(admitted(&mut c, 10), 10, "not overloaded: nothing shed");
        // A standing queue: at or over the bound for the whole window.
        assert_eq!(c.on_delay(t + ms(30), ms(5)), None);
        assert_eq!(c.on_delay(t + ms(45), ms(9)), None);
        assert_eq!(c.on_delay(t + ms(50), ms(4)), Some(Change::Entered));
        assert_eq!(admitted(&mut c, 10), 0);
    }

    #[test]
    fn between_the_bounds_an_overloaded_worker_admits_a_share() {
        let mut c = Controller::new(Some(bounds()));
        let t = Instant::now();
        c.on_delay(t, ms(10));
        // 3 ms is halfway between 2 and 4: every other new request.
        assert_eq!(c.on_delay(t + ms(1), ms(3)), None);
        assert_eq!(admitted(&mut c, 100), 50);
        assert!(c.admits(Work::Finishing, 0), "retrieves pass under the high bound");
        // A quarter of the way down from the high bound: one in four.
        c.on_delay(t + ms(2), Duration::from_micros(3500));
        assert_eq!(admitted(&mut c, 100), 25);
        c.on_delay(t + ms(3), ms(2));
        assert_eq!(admitted(&mut c, 10), 10, "at the low bound, all");
    }

    #[test]
    fn the_state_ends_only_after_the_hold_under_the_low_bound() {
        let mut c = Controller::new(Some(bounds()));
        let t = Instant::now();
        c.on_delay(t, ms(5));
        assert_eq!(c.on_delay(t + ms(10), ms(1)), None);
        assert_eq!(c.on_delay(t + ms(60), ms(1)), None);
        // A delay over the low bound restarts the hold.
        assert_eq!(c.on_delay(t + ms(100), ms(3)), None);
        assert_eq!(c.on_delay(t + ms(150), ms(1)), None);
        assert_eq!(c.on_delay(t + ms(249), ms(1)), None);
        assert!(c.is_overloaded());
        assert_eq!(c.on_delay(t + ms(250), ms(1)), Some(Change::Left));
        assert!(!c.is_overloaded());
        // Normal again: a delay between the bounds admits everything.
        c.on_delay(t + ms(251), ms(3));
        assert_eq!(admitted(&mut c, 10), 10);
        assert_eq!(c.overloaded_for(), ms(250));
    }

    #[test]
    fn the_share_is_linear_and_clamped() {
        let b = bounds();
        assert_eq!(admitted_share(&b, ms(1)), SHARE_ONE);
        assert_eq!(admitted_share(&b, ms(2)), SHARE_ONE);
        assert_eq!(admitted_share(&b, ms(3)), SHARE_ONE / 2);
        assert_eq!(admitted_share(&b, ms(4)), 0);
        assert_eq!(admitted_share(&b, ms(400)), 0);
        let flat = Bounds { low: ms(4), ..b };
        assert_eq!(admitted_share(&flat, ms(4)), SHARE_ONE);
        assert_eq!(admitted_share(&flat, Duration::from_micros(4001)), 0);
    }

    #[test]
    fn the_refused_share_is_what_admits_refuses() {
        let mut c = Controller::new(Some(bounds()));
        let t = Instant::now();
        assert_eq!(c.refused_share(), 0, "not overloaded");
        c.on_delay(t, ms(10));
        assert_eq!(c.refused_share(), SHARE_ONE);
        c.on_delay(t + ms(1), Duration::from_micros(3500));
        let r = c.refused_share();
        assert_eq!(r, SHARE_ONE * 3 / 4);
        assert!(!c.admits(Work::New, (r - 1) << 16 | 0xffff), "top bits just under the share: refused");
        assert!(c.admits(Work::New, r << 16), "at the share: admitted");
    }

    #[test]
    fn the_admission_hash_is_keyed_and_spreads_call_ids() {
        // Values from an implementation of its own (Python); tests/bpf/shed.rs
        // holds the kernel's sipark_admission_hash to this function.
        assert_eq!(admission_hash(0, b"", 0), 0x4997_eb7b);
        assert_eq!(admission_hash(0x5eed_0001, b"c1@client.example", 1), 0xbbac_6131);
        assert_ne!(admission_hash(0, b"a@b", 1), admission_hash(1, b"a@b", 1), "keyed");
        assert_ne!(admission_hash(0, b"a@b", 1), admission_hash(0, b"a@b", 2), "each CSeq a draw");
        // Only the first 255 bytes of the Call-ID count.
        let long = [b'x'; 300];
        assert_eq!(admission_hash(7, &long, 1), admission_hash(7, &long[..255], 1));
        // The top 16 bits of sequential Call-IDs fill the range evenly:
        // each quarter gets a quarter, within 4% (over 3 standard
        // deviations of a fair draw).
        let mut quarters = [0u32; 4];
        for i in 0..20_000 {
            quarters[(admission_hash(0x1234_5678, format!("{i}-1@192.0.2.1").as_bytes(), 1) >> 30) as usize] += 1;
        }
        assert!(quarters.iter().all(|&q| (4800..=5200).contains(&q)), "{quarters:?}");
        assert_ne!(admission_key(&[0; 32]), admission_key(&[1; 32]));
    }

    #[test]
    fn refusals_are_remembered_for_their_time_and_evict_by_slot() {
        let mut r = Refused::default();
        let t = Instant::now();
        assert!(!r.any(t));
        assert!(!r.contains(t, 7));
        assert!(!r.insert(t, 7, ms(100)));
        assert!(r.any(t + ms(99)));
        assert!(r.contains(t + ms(99), 7));
        assert!(!r.contains(t + ms(100), 7), "forgotten after its time");
        assert!(!r.any(t + ms(100)));
        assert!(!r.contains(t, 8));
        // Another fingerprint on the same slot takes it: counted as evicted.
        let twin = 7 + REFUSED_SLOTS as u64;
        assert!(r.insert(t + ms(1), twin, ms(100)));
        assert!(!r.contains(t + ms(2), 7));
        assert!(r.contains(t + ms(2), twin));
        // A slot whose refusal has expired is taken without eviction.
        assert!(!r.insert(t + ms(500), 7, ms(100)));
    }
}
