//! Small helpers shared by the parser tests.

use sipark::proto::sip::parse::{ParseError, SipMessage};

/// Escaped form of bytes for dumping whole messages in failure output.
pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// Bytes as text, unescaped, for comparing single values.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses a corpus message, panicking with context if it fails.
pub fn parse_ok<'a>(name: &str, buf: &'a [u8]) -> SipMessage<'a> {
    SipMessage::parse(buf)
        .unwrap_or_else(|e| panic!("{name}: SipMessage::parse failed with {e:?} ({}) on:\n{}", e.reason(), show(buf)))
}

/// Unwraps an accessor result with context.
pub fn ok<T>(name: &str, what: &str, r: Result<T, ParseError>) -> T {
    r.unwrap_or_else(|e| panic!("{name}: {what} failed with {e:?} ({})", e.reason()))
}

/// Strips the brackets of an IPv6 reference, if any (the contract does not
/// say whether `host` keeps them).
pub fn unbracket(h: &[u8]) -> &[u8] {
    h.strip_prefix(b"[").and_then(|h| h.strip_suffix(b"]")).unwrap_or(h)
}

/// True if `part` lies inside `whole` (zero-copy: the parser hands out
/// slices of the datagram, not copies).
pub fn within(whole: &[u8], part: &[u8]) -> bool {
    let w = whole.as_ptr_range();
    let p = part.as_ptr_range();
    part.is_empty() || (p.start >= w.start && p.end <= w.end)
}

/// Byte offset just after the first blank line, if any.
pub fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Tiny deterministic PRNG (xorshift64*), so the mutation loop is
/// reproducible without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
