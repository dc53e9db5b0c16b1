//! One stream connection of the stream thread (see the module above): its
//! socket, TLS state, framer and write queue ([`Conn`]); the framing of what
//! it reads ([`frames`]) and the hand-off of each message to its owner
//! ([`Deliver`]); and a connection whose framing is lost, which answers and
//! closes ([`Closing`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Instant;

use rustls::Connection;
use tracing::{debug, warn};

use super::{READ_CHUNK, READS_PER_EVENT, WARN_EVERY, WRITEV_MAX, slot};
use crate::io::shared::{CloseReason, DropReason, Handoff, Peers, StreamStats, inc};
use crate::proto::route::{self, Owner};
use crate::proto::sip::Transport;
use crate::proto::sip::parse::SipMessage;
use crate::proto::sip::stream::{Frame, FrameError, Framer, PONG};

/// One connection.
pub(super) struct Conn {
    pub(super) sock: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) transport: Transport,
    pub(super) generation: u32,
    pub(super) tls: Option<Box<Connection>>,
    /// Outbound connect still in progress.
    pub(super) connecting: bool,
    pub(super) framer: Framer,
    /// Messages (and pongs) waiting to be written, oldest first; the first
    /// `out_off` bytes of the front one are already written.
    pub(super) out: VecDeque<Vec<u8>>,
    pub(super) out_off: usize,
    pub(super) out_bytes: usize,
    /// Last byte read or written.
    pub(super) last: Instant,
    pub(super) opened: Instant,
    /// EPOLLOUT is in the interest set.
    pub(super) epollout: bool,
    /// EPOLLIN is out of the interest set (closing).
    pub(super) reading_off: bool,
    /// The framing is lost (RFC 4475 ncl, mcl01): nothing more is read;
    /// the connection closes once the shard's answer is written, or at the
    /// deadline.
    pub(super) closing: Option<Closing>,
}

/// A connection that closes once its last answer is out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Closing {
    pub(super) reason: CloseReason,
    pub(super) by: Instant,
    /// Something was queued since the framing was lost.
    pub(super) answered: bool,
}

impl Conn {
    /// A connection just accepted or connecting (`connecting`: EPOLLOUT is
    /// in its interest set until the connect completes).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        sock: TcpStream,
        peer: SocketAddr,
        transport: Transport,
        generation: u32,
        tls: Option<Box<Connection>>,
        connecting: bool,
        max_message: usize,
        now: Instant,
    ) -> Conn {
        Conn {
            sock,
            peer,
            transport,
            generation,
            tls,
            connecting,
            framer: Framer::new(max_message),
            out: VecDeque::new(),
            out_off: 0,
            out_bytes: 0,
            last: now,
            opened: now,
            epollout: connecting,
            reading_off: false,
            closing: None,
        }
    }

    pub(super) fn handshaking(&self) -> bool {
        self.connecting || self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// Whether the socket's writability matters now. Queued plaintext waits
    /// for the end of a TLS handshake without EPOLLOUT (which would fire
    /// at once, level-triggered, the whole time).
    pub(super) fn wants_out(&self) -> bool {
        if self.connecting {
            return true;
        }
        match self.tls.as_deref() {
            Some(t) => t.wants_write() || (!t.is_handshaking() && !self.out.is_empty()),
            None => !self.out.is_empty(),
        }
    }

    pub(super) fn enqueue(&mut self, payload: Vec<u8>) {
        self.out_bytes += payload.len();
        self.out.push_back(payload);
    }

    /// Whether a closing connection has written its answer.
    pub(super) fn answered(&self) -> bool {
        self.closing.is_some_and(|c| c.answered) && self.out.is_empty()
    }

    /// Drops `n` written bytes from the front of `out`.
    pub(super) fn consume(&mut self, mut n: usize) {
        self.out_bytes = self.out_bytes.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.out.front() else {
                return;
            };
            let left = front.len() - self.out_off;
            if n < left {
                self.out_off += n;
                return;
            }
            n -= left;
            self.out_off = 0;
            self.out.pop_front();
        }
    }

    /// Reads what the socket has, frames it, and delivers the messages.
    pub(super) fn on_readable(&mut self, d: &mut Deliver<'_>, now: Instant) -> Result<(), CloseReason> {
        for _ in 0..READS_PER_EVENT {
            let got = match self.tls.as_deref_mut() {
                None => {
                    let buf = self.framer.spare(READ_CHUNK);
                    match self.sock.read(buf) {
                        Ok(0) => return Err(CloseReason::Peer),
                        Ok(n) => {
                            self.framer.advance(n);
                            true
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            debug!(peer = %self.peer, error = %e, "stream read failed");
                            return Err(CloseReason::Error);
                        }
                    }
                }
                Some(tls) => {
                    let eof = match tls.read_tls(&mut self.sock) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            debug!(peer = %self.peer, error = %e, "TLS read failed");
                            return Err(CloseReason::Error);
                        }
                    };
                    if let Err(e) = tls.process_new_packets() {
                        debug!(peer = %self.peer, error = %e, "TLS error");
                        // Send the alert rustls queued, if the socket takes it.
                        let _ = tls.write_tls(&mut self.sock);
                        return Err(CloseReason::Error);
                    }
                    self.last = now;
                    // Plaintext, a read at a time so the buffer stays bounded.
                    loop {
                        let buf = self.framer.spare(READ_CHUNK);
                        match tls.reader().read(buf) {
                            Ok(0) => return Err(CloseReason::Peer), // close_notify
                            Ok(n) => {
                                self.framer.advance(n);
                                frames(
                                    &mut self.framer,
                                    &mut self.out,
                                    &mut self.out_bytes,
                                    self.peer,
                                    self.transport,
                                    d,
                                )?;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                debug!(peer = %self.peer, error = %e, "TLS plaintext read failed");
                                return Err(CloseReason::Error);
                            }
                        }
                    }
                    if eof {
                        return Err(CloseReason::Peer);
                    }
                    continue;
                }
            };
            if !got {
                return Ok(());
            }
            self.last = now;
            frames(&mut self.framer, &mut self.out, &mut self.out_bytes, self.peer, self.transport, d)?;
        }
        Ok(())
    }

    /// Writes as much of `out` as the socket takes.
    pub(super) fn flush(&mut self, now: Instant) -> Result<(), CloseReason> {
        if self.connecting {
            return Ok(());
        }
        if self.tls.is_some() {
            return self.flush_tls(now);
        }
        while !self.out.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITEV_MAX];
            let mut k = 0;
            for (i, b) in self.out.iter().take(WRITEV_MAX).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &b[self.out_off..] } else { b });
                k = i + 1;
            }
            match self.sock.write_vectored(&slices[..k]) {
                Ok(0) => return Err(CloseReason::Error),
                Ok(n) => {
                    self.last = now;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "stream write failed");
                    return Err(CloseReason::Error);
                }
            }
        }
        Ok(())
    }

    /// Moves queued plaintext into rustls one message at a time (only when
    /// its own send buffer has drained) and writes the records out.
    pub(super) fn flush_tls(&mut self, now: Instant) -> Result<(), CloseReason> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(());
        };
        loop {
            if !tls.wants_write() {
                if tls.is_handshaking() {
                    return Ok(());
                }
                let Some(front) = self.out.front() else {
                    return Ok(());
                };
                let len = front.len();
                match tls.writer().write(&front[self.out_off..]) {
                    Ok(0) => return Ok(()), // rustls is full; wait for the socket
                    Ok(n) => {
                        self.out_bytes = self.out_bytes.saturating_sub(n);
                        self.out_off += n;
                        if self.out_off >= len {
                            self.out_off = 0;
                            self.out.pop_front();
                        }
                    }
                    Err(e) => {
                        debug!(peer = %self.peer, error = %e, "TLS write failed");
                        return Err(CloseReason::Error);
                    }
                }
                continue;
            }
            match tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(CloseReason::Error),
                Ok(_) => self.last = now,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "TLS write failed");
                    return Err(CloseReason::Error);
                }
            }
        }
    }
}

/// Takes every event out of `framer`: messages to their owners, pongs for
/// pings.
pub(super) fn frames(
    framer: &mut Framer,
    out: &mut VecDeque<Vec<u8>>,
    out_bytes: &mut usize,
    peer: SocketAddr,
    transport: Transport,
    d: &mut Deliver<'_>,
) -> Result<(), CloseReason> {
    loop {
        match framer.next_frame() {
            Ok(Some(Frame::Message(m))) => d.deliver(peer, transport, m),
            Ok(Some(Frame::Ping)) => {
                inc(&d.stats.pings);
                *out_bytes += PONG.len();
                out.push_back(PONG.to_vec());
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                // A header section that is complete but whose end of body
                // cannot be found still gets its 400 from the shard.
                if let Some(head) = framer.failed_head() {
                    d.deliver(peer, transport, head);
                }
                d.warn(|| warn!(%peer, transport = transport.via_token(), error = %e, "closing stream connection"));
                return Err(match e {
                    FrameError::TooLarge { .. } => CloseReason::Oversize,
                    FrameError::BadContentLength | FrameError::ConflictingContentLength => CloseReason::Error,
                });
            }
        }
    }
}

/// Rate-limits one kind of warning.
#[derive(Debug)]
pub(super) struct Throttle {
    pub(super) next: Option<Instant>,
    pub(super) suppressed: u64,
}

impl Throttle {
    pub(super) fn new() -> Throttle {
        Throttle { next: None, suppressed: 0 }
    }

    /// Runs `log` unless one ran less than [`WARN_EVERY`] ago; returns how
    /// many were suppressed since the last one that ran.
    pub(super) fn run(&mut self, now: Instant, log: impl FnOnce(u64)) {
        if self.next.is_some_and(|t| now < t) {
            self.suppressed += 1;
            return;
        }
        log(std::mem::take(&mut self.suppressed));
        self.next = Some(now + WARN_EVERY);
    }
}

/// Hands framed messages to their owners.
pub(super) struct Deliver<'a> {
    pub(super) peers: &'a Peers,
    pub(super) n: u16,
    pub(super) stats: &'a StreamStats,
    /// Workers to wake at the end of this turn.
    pub(super) wake: &'a mut [bool],
    pub(super) throttle: &'a mut Throttle,
    pub(super) now: Instant,
}

impl Deliver<'_> {
    pub(super) fn deliver(&mut self, peer: SocketAddr, transport: Transport, data: &[u8]) {
        // Unparsable messages go to worker 0, whose shard counts them.
        let owner = match SipMessage::parse_in(data, &mut None) {
            Ok(m) => match route::owner(m, self.n) {
                Owner::Shard(s) => s,
                Owner::Local => 0,
            },
            Err(_) => 0,
        };
        let s = usize::from(owner.min(self.n.saturating_sub(1)));
        let Some(inbox) = self.peers.inboxes.get(s) else {
            return;
        };
        match inbox.queue.push(Handoff { src: peer, transport, data: data.into() }) {
            Ok(()) => {
                inc(&self.stats.messages_in[slot(transport)]);
                if !inbox.notified.swap(true, Ordering::SeqCst)
                    && let Some(w) = self.wake.get_mut(s)
                {
                    *w = true;
                }
            }
            Err(_) => self.stats.count_drop(DropReason::InboxFull, 1),
        }
    }

    pub(super) fn warn(&mut self, log: impl FnOnce()) {
        self.throttle.run(self.now, |_| log());
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn conn_consume_tracks_partial_writes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let sock = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        let now = Instant::now();
        let mut c = Conn::new(sock, addr, Transport::Tcp, 1, None, false, 100, now);
        c.enqueue(b"abc".to_vec());
        c.enqueue(b"defg".to_vec());
        c.consume(2);
        assert_eq!((c.out.len(), c.out_off, c.out_bytes), (2, 2, 5));
        c.consume(3);
        assert_eq!((c.out.len(), c.out_off, c.out_bytes), (1, 2, 2));
        c.consume(2);
        assert!(c.out.is_empty() && c.out_off == 0 && c.out_bytes == 0);
        c.enqueue(b"xyz".to_vec());
        c.flush(now).unwrap_or_else(|r| panic!("flush: {r:?}"));
        assert!(c.out.is_empty(), "a small write goes out at once");
        let (mut s, _) = listener.accept().unwrap_or_else(|e| panic!("{e}"));
        let mut got = [0u8; 3];
        s.read_exact(&mut got).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&got, b"xyz");
    }
}
