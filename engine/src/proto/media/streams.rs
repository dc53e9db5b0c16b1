//! A shard's music-on-hold streams: one per parked call that was answered
//! with music, paced by a wheel of one-millisecond slots, each stream
//! latched to the address its phone really sends from (symmetric RTP).
//!
//! Invariants kept here:
//! * a call has at most one stream ([`Streams::start`] replaces);
//! * every live stream is in the wheel exactly once, under its next due
//!   tick; a stopped stream's entries are recognised by its slot's
//!   generation and dropped when their slot comes round (within 64 ticks);
//! * a stream is in `by_dest` under its destination, and in `waiting`
//!   under its signalling source's address until it is latched.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::HashMap;

use super::audio::Audio;
use super::rtp::{HEADER, Header};
use crate::proto::ids::CallId;
use crate::proto::sip::sdp::Codec;

/// Slots of the pacing wheel, one per millisecond: more than the longest
/// packet time (60 ms), so a stream is never due a whole turn ahead.
const WHEEL: usize = 64;

/// Samples per millisecond at 8 kHz.
const SAMPLES_PER_MS: u32 = 8;

/// What a stream starts with.
#[derive(Debug, Clone)]
pub struct Start {
    pub codec: Codec,
    /// Milliseconds of audio per packet (10–60).
    pub ptime_ms: u16,
    /// Where the SDP said to send (`None`: nowhere usable until latched).
    pub dest: Option<SocketAddr>,
    /// The address the call's signalling came from: media from it latches
    /// a stream whose SDP address is not where the phone sends from (NAT).
    pub peer_ip: IpAddr,
    pub audio: Arc<Audio>,
    /// Randomness for the SSRC, the first sequence number and timestamp.
    pub random: u64,
}

/// Why [`Streams::start`] started nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The shard runs its most streams.
    Full,
}

/// What a datagram that arrived on the media socket was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// RTP from a stream's phone, which now has its destination there.
    Latched,
    /// RTP from a stream's destination already latched.
    Known,
    /// RTP from an address no stream waits for.
    Unknown,
    /// RTP from an address several unlatched streams could be: which one
    /// cannot be told, so none latches.
    Ambiguous,
    /// RTCP or not RTP at all.
    NotRtp,
}

/// One stream.
#[derive(Debug)]
struct Stream {
    audio: Arc<Audio>,
    codec: Codec,
    ptime: u8,
    dest: Option<SocketAddr>,
    latched: bool,
    peer_ip: IpAddr,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    /// Where in the music's loop the next packet starts.
    at: usize,
    /// No packet sent yet: the first carries the marker bit.
    first: bool,
    /// The tick its next packet is due.
    due: u64,
}

impl Stream {
    fn samples(&self) -> u32 {
        u32::from(self.ptime) * SAMPLES_PER_MS
    }

    /// Moves on by `frames` packets' worth of audio and time.
    fn advance(&mut self, frames: u64) {
        let samples = u64::from(self.samples()) * frames;
        self.timestamp = self.timestamp.wrapping_add(samples as u32);
        self.at = ((self.at as u64 + samples) % self.audio.len().max(1) as u64) as usize;
        self.due += u64::from(self.ptime) * frames;
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    stream: Option<Stream>,
}

/// A batch of RTP packets to send: their bytes back to back, and each
/// one's destination and place.
#[derive(Debug)]
pub struct Packets {
    bytes: Vec<u8>,
    items: Vec<(SocketAddr, u32, u16)>,
    limit: usize,
}

impl Packets {
    /// An empty batch that takes at most `limit` packets.
    pub fn with_limit(limit: usize) -> Packets {
        Packets { bytes: Vec::with_capacity(limit * 172), items: Vec::with_capacity(limit), limit: limit.max(1) }
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.limit
    }

    /// The packet `i`: its destination and bytes.
    pub fn get(&self, i: usize) -> Option<(SocketAddr, &[u8])> {
        let &(dst, start, len) = self.items.get(i)?;
        let start = start as usize;
        Some((dst, &self.bytes[start..start + usize::from(len)]))
    }

    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Appends one packet of `s` to `dst`.
    fn push(&mut self, dst: SocketAddr, s: &Stream) {
        let start = self.bytes.len();
        let header = Header {
            marker: s.first,
            payload_type: s.codec.payload_type(),
            seq: s.seq,
            timestamp: s.timestamp,
            ssrc: s.ssrc,
        };
        header.write(&mut self.bytes);
        let samples = s.samples() as usize;
        self.bytes.resize(start + HEADER + samples, 0);
        s.audio.fill(s.codec, s.at, &mut self.bytes[start + HEADER..]);
        self.items.push((dst, start as u32, (HEADER + samples) as u16));
    }
}

/// Counts of what the streams did, read by the shard into its stats.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub packets: u64,
    /// Packets not sent because their time had passed (the worker was late
    /// by more than a packet time): their audio and timestamps are skipped.
    pub skipped: u64,
    /// Packets due to a stream with no destination yet.
    pub unaddressed: u64,
}

/// A shard's streams.
#[derive(Debug)]
pub struct Streams {
    /// Tick 0 (set by the first stream).
    epoch: Option<Instant>,
    /// The next tick [`Streams::poll`] serves.
    cursor: u64,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    limit: usize,
    by_call: HashMap<CallId, u32>,
    by_dest: HashMap<SocketAddr, u32>,
    waiting: HashMap<IpAddr, Vec<u32>>,
    wheel: Vec<Vec<(u32, u32)>>,
    tally: Tally,
}

impl Streams {
    /// No stream yet; at most `limit` at once.
    pub fn new(limit: usize) -> Streams {
        Streams {
            epoch: None,
            cursor: 0,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            limit,
            by_call: HashMap::new(),
            by_dest: HashMap::new(),
            waiting: HashMap::new(),
            wheel: (0..WHEEL).map(|_| Vec::new()).collect(),
            tally: Tally::default(),
        }
    }

    /// Streams running.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Whether one more stream may start.
    pub fn has_room(&self) -> bool {
        self.live < self.limit
    }

    /// Whether `call` has a stream.
    pub fn has(&self, call: CallId) -> bool {
        self.by_call.contains_key(&call)
    }

    /// The counts so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Where `call`'s stream sends, and whether it was latched.
    pub fn destination(&self, call: CallId) -> Option<(Option<SocketAddr>, bool)> {
        let s = self.stream(*self.by_call.get(&call)?)?;
        Some((s.dest, s.latched))
    }

    fn stream(&self, idx: u32) -> Option<&Stream> {
        self.slots.get(idx as usize)?.stream.as_ref()
    }

    fn tick_of(&self, now: Instant) -> u64 {
        self.epoch.map_or(0, |e| now.saturating_duration_since(e).as_millis() as u64)
    }

    /// Starts `call`'s stream at `now` (replacing one it had). Its first
    /// packet goes in the least busy millisecond of its first packet time,
    /// so that calls parked together do not send together.
    pub fn start(&mut self, now: Instant, call: CallId, s: Start) -> Result<(), Refused> {
        self.stop(call);
        if self.live >= self.limit {
            return Err(Refused::Full);
        }
        if self.live == 0 {
            // Nothing was due: the wheel starts again from now.
            let epoch = *self.epoch.get_or_insert(now);
            self.cursor = now.saturating_duration_since(epoch).as_millis() as u64;
        }
        let ptime = u8::try_from(s.ptime_ms.clamp(10, 60)).unwrap_or(20);
        let base = self.cursor.max(self.tick_of(now));
        let due = (base..base + u64::from(ptime)).min_by_key(|t| self.wheel[(t % WHEEL as u64) as usize].len());
        let due = due.unwrap_or(base);
        let r = s.random;
        let stream = Stream {
            codec: s.codec,
            ptime,
            dest: s.dest,
            latched: false,
            peer_ip: s.peer_ip,
            ssrc: r as u32,
            seq: (r >> 32) as u16,
            timestamp: ((r >> 48) as u32).wrapping_mul(0x9e37_79b9),
            at: 0,
            first: true,
            due,
            audio: s.audio,
        };
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[idx as usize];
        slot.stream = Some(stream);
        self.wheel[(due % WHEEL as u64) as usize].push((idx, slot.generation));
        if let Some(d) = s.dest {
            self.by_dest.insert(d, idx);
        }
        self.waiting.entry(s.peer_ip).or_default().push(idx);
        self.by_call.insert(call, idx);
        self.live += 1;
        Ok(())
    }

    /// Stops `call`'s stream; false if it had none.
    pub fn stop(&mut self, call: CallId) -> bool {
        let Some(idx) = self.by_call.remove(&call) else { return false };
        let slot = &mut self.slots[idx as usize];
        let Some(s) = slot.stream.take() else { return false };
        slot.generation = slot.generation.wrapping_add(1);
        if let Some(d) = s.dest
            && self.by_dest.get(&d) == Some(&idx)
        {
            self.by_dest.remove(&d);
        }
        if !s.latched {
            self.unwait(s.peer_ip, idx);
        }
        self.free.push(idx);
        self.live -= 1;
        if self.live == 0 {
            self.by_dest = HashMap::new();
            self.waiting = HashMap::new();
        }
        true
    }

    fn unwait(&mut self, ip: IpAddr, idx: u32) {
        if let Some(list) = self.waiting.get_mut(&ip) {
            list.retain(|&i| i != idx);
            if list.is_empty() {
                self.waiting.remove(&ip);
            }
        }
    }

    /// A datagram from `src` arrived on the media socket: RTP from a
    /// stream's phone latches that stream to `src` (RFC 4961's symmetric
    /// RTP: what gets back through the phone's NAT). A stream is found by
    /// its destination, else among the unlatched streams whose signalling
    /// came from `src`'s address: the one whose SDP port is `src`'s, else
    /// the only one.
    pub fn received(&mut self, src: SocketAddr, packet: &[u8]) -> Received {
        if Header::read(packet).is_none() {
            return Received::NotRtp;
        }
        let idx = match self.by_dest.get(&src) {
            Some(&idx) => idx,
            None => {
                let Some(list) = self.waiting.get(&src.ip()) else { return Received::Unknown };
                let same_port = list
                    .iter()
                    .copied()
                    .find(|&i| self.stream(i).and_then(|s| s.dest).is_some_and(|d| d.port() == src.port()));
                match (same_port, list.as_slice()) {
                    (Some(i), _) | (None, &[i]) => i,
                    _ => return Received::Ambiguous,
                }
            }
        };
        let Some(s) = self.slots.get_mut(idx as usize).and_then(|s| s.stream.as_mut()) else {
            return Received::Unknown;
        };
        if s.latched && s.dest == Some(src) {
            return Received::Known;
        }
        let (old, ip, was_latched) = (s.dest.replace(src), s.peer_ip, s.latched);
        s.latched = true;
        if let Some(d) = old
            && d != src
            && self.by_dest.get(&d) == Some(&idx)
        {
            self.by_dest.remove(&d);
        }
        self.by_dest.insert(src, idx);
        if !was_latched {
            self.unwait(ip, idx);
        }
        Received::Latched
    }

    /// The first instant [`Streams::poll`] has a packet to send.
    pub fn next_due(&self) -> Option<Instant> {
        let epoch = self.epoch?;
        if self.live == 0 {
            return None;
        }
        let tick = (self.cursor..self.cursor + WHEEL as u64)
            .find(|t| !self.wheel[(t % WHEEL as u64) as usize].is_empty())
            .unwrap_or(self.cursor);
        Some(epoch + Duration::from_millis(tick))
    }

    /// Writes into `out` the packets due by `now`, until `out` is full (the
    /// rest wait for the next call). A stream more than a packet time late
    /// (the worker stalled) skips the packets whose time has passed rather
    /// than sending them in a burst.
    pub fn poll(&mut self, now: Instant, out: &mut Packets) {
        if self.live == 0 {
            return;
        }
        let now_tick = self.tick_of(now);
        if now_tick >= self.cursor + WHEEL as u64 {
            // Whole turns of the wheel passed: every slot comes round once.
            self.cursor = now_tick + 1 - WHEEL as u64;
        }
        while self.cursor <= now_tick {
            let b = (self.cursor % WHEEL as u64) as usize;
            // The slot is walked in the order its streams joined it, so that
            // each stream keeps its place in the millisecond from one packet
            // to the next (a stack would reverse the order every round, and
            // every gap would be off by up to a tick's sending time). What
            // goes back into this same slot waits in `later`, after it.
            let mut slot = std::mem::take(&mut self.wheel[b]);
            let mut later = Vec::new();
            let mut done = 0;
            for &(idx, generation) in &slot {
                if out.is_full() {
                    break;
                }
                done += 1;
                let entry = &mut self.slots[idx as usize];
                let Some(s) = entry.stream.as_mut().filter(|_| entry.generation == generation) else { continue };
                if s.due > self.cursor {
                    // Due a turn later (started far ahead of a late cursor).
                    later.push((idx, generation));
                    continue;
                }
                let ptime = u64::from(s.ptime);
                let late = (now_tick - s.due) / ptime;
                if late > 0 {
                    s.advance(late);
                    self.tally.skipped += late;
                }
                match s.dest {
                    Some(dst) => {
                        out.push(dst, s);
                        s.first = false;
                        s.seq = s.seq.wrapping_add(1);
                        self.tally.packets += 1;
                    }
                    None => self.tally.unaddressed += 1,
                }
                s.advance(1);
                let next = (s.due % WHEEL as u64) as usize;
                if next == b {
                    later.push((idx, generation));
                } else {
                    self.wheel[next].push((idx, generation));
                }
            }
            // The rest of the slot (the batch filled) keeps its order, then
            // what came back to it; the emptied vector keeps its capacity.
            slot.drain(..done);
            slot.append(&mut later);
            self.wheel[b] = slot;
            if out.is_full() {
                // The next poll goes on from this slot.
                return;
            }
            self.cursor += 1;
        }
    }
}

#[cfg(test)]
mod tests;
