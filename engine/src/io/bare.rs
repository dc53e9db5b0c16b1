//! The bare responder behind the hidden `--bare-io` flag: what a worker
//! serves instead of its shard when `cargo xtask bench` measures the floor,
//! the CPU the worker I/O path costs with no SIP at all (no parse, no shard).
//!
//! It runs on the same path as the engine: the same sockets, backend
//! (io_uring or mmsg), workers and pinning, and the same transmit path (its
//! replies are [`Transmit`]s, taken by the backend as it takes the shard's,
//! and their buffers come back through [`Bare::recycle`] into a pool).
//!
//! The format is tiny. A request is any datagram of at least
//! [`HEADER`] bytes whose first two bytes are the length of the reply it
//! asks for, big-endian, 1 to [`MAX_REPLY`]. The reply goes to the
//! request's source; it is that many bytes: the request's first
//! `min(ECHO, request length, reply length)` bytes (so a client can put a tag
//! after the length and match replies to requests), then zeros. Any other
//! datagram is dropped and counted in `sipark_dropped_total`.
//!
//! Since it answers anything with up to [`MAX_REPLY`] bytes, `sipark`
//! refuses `--bare-io` on an address other than loopback.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::proto::shard::Transmit;
use crate::proto::sip::Transport;

/// Bytes of the request header: the wanted reply length (u16, big-endian).
pub const HEADER: usize = 2;
/// Bytes of the request copied to the start of its reply, at most.
pub const ECHO: usize = 16;
/// Longest reply asked for that is answered.
pub const MAX_REPLY: usize = 8192;
/// Reply buffers kept for reuse.
const POOL_MAX: usize = 4096;

/// The reply length a request asks for, or `None` when it is not a valid
/// request (too short, or asking for 0 or more than [`MAX_REPLY`] bytes).
pub fn wanted(request: &[u8]) -> Option<usize> {
    let &[hi, lo, ..] = request else {
        return None;
    };
    let n = usize::from(u16::from_be_bytes([hi, lo]));
    (1..=MAX_REPLY).contains(&n).then_some(n)
}

/// Writes a request of `size` bytes (at least [`HEADER`] + `tag.len()`)
/// asking for a reply of `reply` bytes, with `tag` right after the length
/// and zeros after it: what a client sends.
pub fn request(out: &mut Vec<u8>, reply: u16, tag: &[u8], size: usize) {
    out.clear();
    out.extend_from_slice(&reply.to_be_bytes());
    out.extend_from_slice(tag);
    if out.len() < size {
        out.resize(size, 0);
    }
}

/// A worker's responder: replies waiting to be sent, and spare buffers.
#[derive(Debug, Default)]
pub struct Bare {
    out: VecDeque<Transmit>,
    pool: Vec<Vec<u8>>,
}

impl Bare {
    pub fn new() -> Bare {
        Bare { out: VecDeque::with_capacity(1024), pool: Vec::with_capacity(1024) }
    }

    /// Queues the reply to one datagram from `src`; `false` when it is not
    /// a request (nothing is queued).
    pub fn handle(&mut self, src: SocketAddr, data: &[u8]) -> bool {
        let Some(n) = wanted(data) else {
            return false;
        };
        let mut payload = self.pool.pop().unwrap_or_default();
        payload.clear();
        payload.extend_from_slice(&data[..n.min(ECHO).min(data.len())]);
        payload.resize(n, 0);
        self.out.push_back(Transmit { dst: src, transport: Transport::Udp, payload });
        true
    }

    /// The next reply to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Gives a sent reply's buffer back for reuse.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        if self.pool.len() < POOL_MAX {
            self.pool.push(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40_000))
    }

    #[test]
    fn a_request_asks_for_its_reply_length() {
        let mut r = Vec::new();
        request(&mut r, 900, b"tag-0001", 400);
        assert_eq!(r.len(), 400);
        assert_eq!(wanted(&r), Some(900));
        assert_eq!(&r[2..10], b"tag-0001");
        request(&mut r, 5, b"a-longer-tag", 3);
        assert_eq!(r.len(), 14, "never shorter than the header and tag");
        assert_eq!(wanted(&[0x01]), None, "too short");
        assert_eq!(wanted(&[0, 0, 7]), None, "asks for nothing");
        assert_eq!(wanted(&[0x20, 0x01]), None, "asks for more than MAX_REPLY");
        assert_eq!(wanted(b"OPTIONS sip:x SIP/2.0\r\n"), None, "SIP is not a request");
        assert_eq!(wanted(&[0x20, 0x00]), Some(MAX_REPLY));
    }

    #[test]
    fn replies_have_the_asked_size_echo_the_start_and_go_back_to_the_source() {
        let mut b = Bare::new();
        let mut r = Vec::new();
        let mut expected = Vec::new();
        for (reply, size) in [(1u16, 300usize), (16, 16), (700, 1200), (8192, 40)] {
            request(&mut r, reply, b"0123456789ABCD", size);
            assert!(b.handle(addr(), &r));
            let mut want = r[..usize::from(reply).min(ECHO)].to_vec();
            want.resize(usize::from(reply), 0);
            expected.push(want);
        }
        assert!(!b.handle(addr(), b"junk that asks for too much"));
        let mut got = Vec::new();
        while let Some(t) = b.poll_transmit() {
            assert_eq!((t.dst, t.transport), (addr(), Transport::Udp));
            got.push(t.payload.clone());
            b.recycle(t.payload);
        }
        assert_eq!(got, expected);
        // The last buffer given back (8192 bytes) is the next one used.
        request(&mut r, 10, b"", 10);
        assert!(b.handle(addr(), &r));
        assert_eq!(b.poll_transmit().map(|t| t.payload.capacity() >= 8192), Some(true));
    }
}
