//! Invariants checked by the fuzz targets (`cargo fuzz run parse_roundtrip`,
//! `cargo fuzz run shard_datagrams` with a nightly toolchain), and by this
//! crate's unit tests on the parser corpus and seeded mutations, so that CI
//! exercises them without a fuzzer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipark::proto::config::Config;
use sipark::proto::shard::{Seed, Shard, WallClock};
use sipark::proto::sip::parse::{SipMessage, StartLine};

/// The fields a round trip must keep.
#[derive(Debug, PartialEq, Eq)]
struct Fields<'a> {
    start: StartLine<'a>,
    call_id: Option<&'a [u8]>,
    cseq: Option<(u32, &'a [u8])>,
    from_tag: Option<&'a [u8]>,
    to_tag: Option<&'a [u8]>,
    branch: Option<&'a [u8]>,
    headers: usize,
    body: &'a [u8],
}

fn fields<'a>(m: &SipMessage<'a>) -> Fields<'a> {
    Fields {
        start: m.start_line(),
        call_id: m.call_id().ok(),
        cseq: m.cseq().ok().map(|c| (c.seq, c.method.as_bytes())),
        from_tag: m.from_hdr().ok().and_then(|f| f.tag()),
        to_tag: m.to_hdr().ok().and_then(|t| t.tag()),
        branch: m.top_via().ok().and_then(|v| v.branch),
        headers: m.headers().len(),
        body: m.body(),
    }
}

/// Parse, print, parse again: the second parse succeeds and gives the same
/// fields. Panics (for the fuzzer) when it does not.
pub fn parse_roundtrip(data: &[u8]) {
    let Ok(first) = SipMessage::parse(data) else { return };
    let mut printed = Vec::with_capacity(data.len() + 16);
    first.write_to(&mut printed);
    let second = SipMessage::parse(&printed).unwrap_or_else(|e| {
        panic!("reprint of a parsed message fails with {e:?}:\n{}", String::from_utf8_lossy(&printed))
    });
    assert_eq!(fields(&first), fields(&second), "fields changed across a round trip");
}

/// A shard fed the way [`shard_datagrams`] feeds it: datagram `i` comes
/// from [`source`]`(i)`, each after its clock step. [`seeds`] drives one to
/// write inputs that the fuzzer then mutates.
pub struct Driver {
    pub shard: Shard,
    pub now: Instant,
    /// Datagrams fed so far.
    pub fed: u16,
}

/// Where datagram `i` of an input comes from: six addresses in turn.
pub fn source(i: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1 + (i % 3) as u8], 5060 + (i % 2)))
}

impl Driver {
    /// A shard on the default configuration (every domain an open tenant),
    /// its clock and ids fixed, so that the same input runs the same way.
    pub fn new() -> Driver {
        let start = Instant::now();
        let wall = WallClock { at: start, unix: Duration::from_secs(1_795_000_000) };
        Driver { shard: Shard::new(0, 1, Arc::new(Config::default()), wall, Seed::from_u64(0)), now: start, fed: 0 }
    }

    /// Moves the clock `step` × 10 ms, runs the timers, hands `dgram` to the
    /// shard from the next source, and returns what the shard sent.
    pub fn feed(&mut self, step: u8, dgram: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        self.now += Duration::from_millis(u64::from(step) * 10);
        self.shard.handle_timeout(self.now);
        self.shard.handle(self.now, source(self.fed), dgram);
        self.fed = self.fed.wrapping_add(1);
        self.drain()
    }

    /// What the shard sent, its buffers given back; its events dropped.
    pub fn drain(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut sent = Vec::new();
        while let Some(t) = self.shard.poll_transmit() {
            sent.push((t.dst, t.payload.clone()));
            self.shard.recycle(t.payload);
        }
        while self.shard.poll_event().is_some() {}
        sent
    }

    /// Runs the clock to `end`, timer by timer.
    pub fn run_until(&mut self, end: Instant) {
        while let Some(at) = self.shard.poll_timeout().filter(|at| *at <= end) {
            self.now = self.now.max(at);
            self.shard.handle_timeout(self.now);
            self.drain();
        }
    }
}

impl Default for Driver {
    fn default() -> Driver {
        Driver::new()
    }
}

/// Feeds a shard the datagrams encoded in `data` (each: one byte of clock
/// step in 10 ms units, two bytes of length, the bytes) from a few source
/// addresses, then runs its clock two hours on. Nothing may panic, and all
/// state must drain: no transaction, parked call or binding survives.
pub fn shard_datagrams(data: &[u8]) {
    let mut d = Driver::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let step = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let (dgram, tail) = rest[3..].split_at(len);
        rest = tail;
        d.feed(step, dgram);
    }
    let end = d.now + Duration::from_secs(2 * 3600);
    d.run_until(end);
    let s = d.shard.stats();
    assert_eq!(s.transactions.get(), 0, "transactions left after two hours");
    assert_eq!(s.parked.get(), 0, "parked calls left after two hours");
    assert_eq!(s.bindings.get(), 0, "bindings left after two hours");
}

/// Appends one datagram to a [`shard_datagrams`] input.
pub fn frame(out: &mut Vec<u8>, step: u8, dgram: &[u8]) {
    out.push(step);
    out.extend_from_slice(&(dgram.len() as u16).to_be_bytes());
    out.extend_from_slice(dgram);
}

pub mod seeds;

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<Vec<u8>> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/parser/corpus");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        files.iter().map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{p:?}: {e}"))).collect()
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
        let mut m = base.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len());
            match rng.below(4) {
                0 if !m.is_empty() => m[at] = rng.next() as u8,
                1 if !m.is_empty() => {
                    m.remove(at);
                }
                2 => m.insert(at.min(m.len()), b"\r\n:;,<>\" "[rng.below(9)]),
                _ => m.truncate(at),
            }
        }
        m
    }

    #[test]
    fn corpus_round_trips() {
        let corpus = corpus();
        assert!(corpus.len() >= 30, "corpus has {} messages", corpus.len());
        for msg in &corpus {
            assert!(SipMessage::parse(msg).is_ok(), "corpus message does not parse");
            parse_roundtrip(msg);
        }
    }

    #[test]
    fn mutated_corpus_round_trips() {
        let corpus = corpus();
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for _ in 0..20_000 {
            let base = &corpus[rng.below(corpus.len())];
            parse_roundtrip(&mutate(&mut rng, base));
        }
    }

    #[test]
    fn shard_drains_after_corpus_and_mutations() {
        let corpus = corpus();
        let mut rng = Rng(0xfeed_beef_0bad_cafe);
        for round in 0..40 {
            let mut input = Vec::new();
            for _ in 0..60 {
                let base = &corpus[rng.below(corpus.len())];
                let dgram = if round % 4 == 0 { base.clone() } else { mutate(&mut rng, base) };
                frame(&mut input, rng.next() as u8, &dgram);
            }
            shard_datagrams(&input);
        }
    }
}
