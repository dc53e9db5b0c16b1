//! What every layer of a shard shares: who the shard is (its id, its
//! advertised addresses), the configuration, the counters, the id counter
//! and random numbers, and the queue of messages to send. Layers reach it
//! as `&mut Env`; it knows nothing of them, so it is the leaf every layer
//! may import.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Config;
use super::ids::{Ids, Rng, Seed};
use super::sip::write::{hex16, push_dec, push_hex, push_hex16, write_contact_uri};
use super::sip::{Peer, Transport};
use super::stats::ShardStats;

/// A message to send: a datagram, or a message on the stream connection
/// to `dst` (the I/O layer reuses the peer's connection, or opens one).
#[derive(Debug)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

/// Maps the monotonic clock to wall-clock time (for `parked-at`): the
/// caller reads both clocks once, at start-up.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub at: Instant,
    /// Time since the Unix epoch at `at`.
    pub unix: Duration,
}

impl WallClock {
    /// Seconds since the Unix epoch at `now`.
    pub fn unix_secs(&self, now: Instant) -> u64 {
        (self.unix + now.saturating_duration_since(self.at)).as_secs()
    }
}

/// Pool buffers are trimmed back to this capacity so one huge message does
/// not pin memory forever.
const POOL_BUF_CAP: usize = 4096;
/// Most buffers kept for reuse.
const POOL_MAX: usize = 1024;

/// Messages waiting to be sent, and sent buffers kept for reuse.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Transmit>,
    pool: Vec<Vec<u8>>,
}

impl Outbox {
    /// An empty buffer, from the pool when it has one.
    pub fn buf(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(1500))
    }

    /// Queues `payload` for `dst`.
    pub fn push(&mut self, dst: Peer, payload: Vec<u8>) {
        self.queue.push_back(Transmit { dst: dst.addr, transport: dst.transport, payload });
    }

    /// Queues a copy of `bytes` for `dst`.
    pub fn send(&mut self, dst: Peer, bytes: &[u8]) {
        let mut payload = self.buf();
        payload.extend_from_slice(bytes);
        self.push(dst, payload);
    }

    pub fn pop(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }

    /// Takes a sent buffer back.
    pub fn recycle(&mut self, mut payload: Vec<u8>) {
        if self.pool.len() < POOL_MAX {
            payload.clear();
            payload.shrink_to(POOL_BUF_CAP);
            self.pool.push(payload);
        }
    }
}

/// How sipark names itself on each transport.
#[derive(Debug)]
pub struct Local {
    /// `<sip:sp<id>.sipark@advertise>` per transport (indexed by
    /// [`Transport::index`]), written once.
    contacts: [Box<[u8]>; 3],
    /// The advertised `host:port` per transport, for Via.
    vias: [Box<str>; 3],
    /// The advertised host, for SDP origins.
    pub host: Box<str>,
    /// Where this shard's media socket is reached (the `c=`/`m=` of its
    /// music on hold); `None`: no media socket, no music.
    pub media: Option<std::net::SocketAddr>,
}

impl Local {
    fn new(shard: u16, cfg: &Config) -> Local {
        let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
        Local {
            contacts: all.map(|t| {
                let mut c = Vec::with_capacity(64);
                c.push(b'<');
                write_contact_uri(&mut c, shard, t, cfg.advertise_of(t));
                c.push(b'>');
                c.into()
            }),
            vias: all.map(|t| cfg.advertise_of(t).into()),
            host: advertise_host(&cfg.advertise).into(),
            media: None,
        }
    }

    /// sipark's Contact (with angle brackets) for a peer on `transport`.
    pub fn contact(&self, transport: Transport) -> &[u8] {
        &self.contacts[transport.index()]
    }

    /// sipark's `host:port` for Via on `transport`.
    pub fn via(&self, transport: Transport) -> &str {
        &self.vias[transport.index()]
    }
}

/// The host part of `host[:port]` / `[v6]:port`.
pub fn advertise_host(adv: &str) -> &str {
    if let Some(rest) = adv.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    adv.rsplit_once(':').map_or(adv, |(h, _)| h)
}

/// A tag sipark wrote: 16 lowercase hexadecimal digits, kept inline
/// (64 random bits, which a dialog keeps as a `u64`: [`Tag::bits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag([u8; 16]);

impl Tag {
    /// The tag that writes `bits`.
    pub fn from_bits(bits: u64) -> Tag {
        Tag(hex16(bits))
    }

    /// The 64 bits this tag writes.
    pub fn bits(&self) -> u64 {
        self.0.iter().fold(0, |n, &d| (n << 4) | u64::from(hex_digit(d).unwrap_or(0)))
    }

    /// One of sipark's tags, read back: `None` for anything sipark would
    /// not have written.
    pub fn parse(bytes: &[u8]) -> Option<Tag> {
        let t: [u8; 16] = bytes.try_into().ok()?;
        t.iter().all(|&d| hex_digit(d).is_some()).then_some(Tag(t))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn hex_digit(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    }
}

impl std::ops::Deref for Tag {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// What every layer of one shard shares.
#[derive(Debug)]
pub struct Env {
    pub shard: u16,
    pub cfg: Arc<Config>,
    pub stats: Arc<ShardStats>,
    pub wall: WallClock,
    pub ids: Ids,
    pub rng: Rng,
    pub out: Outbox,
    pub local: Local,
}

impl Env {
    pub fn new(shard: u16, cfg: Arc<Config>, wall: WallClock, seed: &Seed) -> Env {
        Env {
            shard,
            stats: Arc::new(ShardStats::default()),
            wall,
            // Ids start from the clock, so call tokens differ across restarts.
            ids: Ids::starting_at((wall.unix.as_secs() & 0xf_ffff) << 20),
            rng: seed.rng(),
            out: Outbox::default(),
            local: Local::new(shard, &cfg),
            cfg,
        }
    }

    /// A fresh tag.
    pub fn tag(&mut self) -> Tag {
        Tag::from_bits(self.rng.next_u64())
    }

    /// A fresh Call-ID for a dialog sipark starts.
    pub fn call_id(&mut self) -> Box<[u8]> {
        let mut out = Vec::with_capacity(48);
        self.write_call_id(&mut out);
        out.into()
    }

    /// Appends a fresh Call-ID ([`Env::call_id`]) to `out`.
    pub fn write_call_id(&mut self, out: &mut Vec<u8>) {
        let r = self.rng.next_u64();
        let n = self.ids.client().get();
        push_hex16(out, r);
        out.push(b'-');
        push_dec(out, u64::from(self.shard));
        out.push(b'-');
        push_hex(out, n);
        out.extend_from_slice(b"@sipark");
    }

    /// A random number (SDP session ids, retry delays).
    pub fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Unix seconds at `now`.
    pub fn unix(&self, now: Instant) -> u64 {
        self.wall.unix_secs(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_its_64_bits_written_in_hex() {
        for bits in [0, 1, 0x0123_4567_89ab_cdef, u64::MAX] {
            let t = Tag::from_bits(bits);
            assert_eq!(t.bits(), bits);
            assert_eq!(Tag::parse(t.as_bytes()), Some(t));
        }
        assert_eq!(Tag::from_bits(0x0123_4567_89ab_cdef).as_bytes(), b"0123456789abcdef");
        assert_eq!(Tag::parse(b"0123456789ABCDEF"), None, "sipark writes lowercase");
        assert_eq!(Tag::parse(b"0123456789abcdeg"), None);
        assert_eq!(Tag::parse(b"0123456789abcde"), None);
    }

    #[test]
    fn tags_and_call_ids_are_unique_and_repeat_with_the_seed() {
        let wall = WallClock { at: Instant::now(), unix: Duration::from_secs(1_795_543_200) };
        let mut a = Env::new(3, Arc::new(Config::default()), wall, &Seed::from_u64(1));
        let mut b = Env::new(3, Arc::new(Config::default()), wall, &Seed::from_u64(1));
        let (t1, t2) = (a.tag(), a.tag());
        assert_ne!(t1, t2);
        assert!(t1.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(b.tag(), t1, "same seed, same tags");
        let id = a.call_id();
        let text = std::str::from_utf8(&id).expect("ascii");
        assert!(text.contains("-3-") && text.ends_with("@sipark"), "{text}");
        assert_ne!(a.call_id(), id);
    }

    #[test]
    fn contacts_and_vias_per_transport() {
        let wall = WallClock { at: Instant::now(), unix: Duration::ZERO };
        let env = Env::new(2, Arc::new(Config::default()), wall, &Seed::from_u64(1));
        assert_eq!(env.local.contact(Transport::Udp), b"<sip:sp2.sipark@127.0.0.1:5060>");
        assert_eq!(env.local.contact(Transport::Tls), b"<sips:sp2.sipark@127.0.0.1:5061>");
        assert_eq!(env.local.via(Transport::Tcp), "127.0.0.1:5060");
        assert_eq!(&*env.local.host, "127.0.0.1");
        assert_eq!(advertise_host("[::1]:5060"), "::1");
    }
}
