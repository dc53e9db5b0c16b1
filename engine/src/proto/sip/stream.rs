//! Sans-IO framing of SIP over a byte stream (TCP, TLS; RFC 3261 §18.3).
//!
//! A [`Framer`] is one connection's receive buffer. The I/O layer reads
//! into [`Framer::spare`] and calls [`Framer::advance`] (or
//! [`Framer::push`]), then takes events with [`Framer::next_frame`] until it
//! returns `Ok(None)`:
//!
//! * [`Frame::Message`]: one whole message (header section and the
//!   `Content-Length` bytes of body), borrowed from the buffer, no copy;
//! * [`Frame::Ping`]: a CRLFCRLF keep-alive (RFC 5626 §4.4.1), to be
//!   answered with [`PONG`].
//!
//! Single CRLFs between messages (a peer's pong, or padding) are skipped.
//! A message is cut at the blank line ending its header section plus
//! `Content-Length` (also the compact `l:`); a message without
//! `Content-Length` has no body. RFC 3261 §18.3 says the header MUST be
//! present on a stream; treating its absence as 0, as Kamailio does, lets a
//! body-less request from a sloppy peer through and cannot mis-frame one
//! that follows (a body without the header would have been unreadable
//! anyway). A message whose header section and body together would exceed
//! the cap ([`DEFAULT_MAX_MESSAGE`] unless set), or whose `Content-Length`
//! is not a number or is given twice with different values, is a
//! [`FrameError`]: the framing is lost and the connection must be closed.
//!
//! The buffer never holds more than the cap plus one read's worth of bytes,
//! and bytes are scanned once however they are split across reads.

use memchr::memmem;

/// Largest message (header section and body) accepted by default: the
/// largest UDP payload, so that anything sipark can receive on UDP it can
/// receive on a stream too.
pub const DEFAULT_MAX_MESSAGE: usize = 65_535;
/// The answer to a [`Frame::Ping`] (RFC 5626 §4.4.1).
pub const PONG: &[u8] = b"\r\n";
/// The keep-alive ping.
pub const PING: &[u8] = b"\r\n\r\n";
/// A buffer this much larger than its data is shrunk once it is empty.
const SHRINK_ABOVE: usize = 16 * 1024;

/// One event out of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One complete message.
    Message(&'a [u8]),
    /// A CRLFCRLF keep-alive: answer with [`PONG`].
    Ping,
}

/// The stream cannot be framed any further: close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message would be larger than the cap.
    #[error("message larger than {max} bytes")]
    TooLarge { max: usize },
    /// `Content-Length` is not a decimal number.
    #[error("unreadable Content-Length")]
    BadContentLength,
    /// Two `Content-Length` headers with different values.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
}

/// One connection's receive buffer and framing state.
#[derive(Debug)]
pub struct Framer {
    /// `buf[start..end]` holds the unconsumed bytes; `buf.len()` is the
    /// allocated size (zero-filled beyond `end`).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes of the current message (from `start`) already searched for
    /// the end of the header section without finding it.
    scanned: usize,
    /// Length of the current message once its header section is complete.
    want: Option<usize>,
    max: usize,
    /// Set once a [`FrameError`] was returned: every later call returns it.
    failed: Option<FrameError>,
    /// After a Content-Length error: where the header section of the message
    /// that cannot be framed is in `buf` (it can still be answered 400).
    failed_head: Option<std::ops::Range<usize>>,
}

impl Framer {
    /// A framer accepting messages of at most `max` bytes (at least 1).
    pub fn new(max: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            want: None,
            max: max.max(1),
            failed: None,
            failed_head: None,
        }
    }

    /// The cap on one message.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes received and not yet framed.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Free space for the next read, at least `min` bytes (and at least 1).
    /// Moves the unconsumed bytes to the front first when that makes room.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        let min = min.max(1);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > SHRINK_ABOVE.max(min) {
                self.buf = Vec::new();
            }
        } else if self.buf.len() - self.end < min && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < min {
            self.buf.resize(self.end + min, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`Framer::spare`] as received (clamped to it).
    pub fn advance(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// After [`FrameError::BadContentLength`] or
    /// [`FrameError::ConflictingContentLength`]: the header section of the
    /// message whose end cannot be found. It is complete, so a response can
    /// still be built from it (RFC 4475 ncl, mcl01: 400, then the
    /// connection closes, since nothing after it can be framed).
    pub fn failed_head(&self) -> Option<&[u8]> {
        self.failed_head.clone().and_then(|r| self.buf.get(r))
    }

    /// Copies `data` in (for callers that do not read into [`Framer::spare`]).
    pub fn push(&mut self, data: &[u8]) {
        let dst = self.spare(data.len());
        dst[..data.len()].copy_from_slice(data);
        self.advance(data.len());
    }

    /// The next event, `Ok(None)` when more bytes are needed, or the error
    /// that ends the connection (returned again on every later call).
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.step() {
            Ok(Some(Step::Ping)) => Ok(Some(Frame::Ping)),
            Ok(Some(Step::Message(from, to))) => Ok(Some(Frame::Message(&self.buf[from..to]))),
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e);
                Err(e)
            }
        }
    }

    fn step(&mut self) -> Result<Option<Step>, FrameError> {
        if self.want.is_none() && self.scanned == 0 {
            // Between messages: keep-alives and stray line ends.
            loop {
                let b = &self.buf[self.start..self.end];
                if b.starts_with(PING) {
                    self.start += PING.len();
                    return Ok(Some(Step::Ping));
                }
                match b.first() {
                    None => return Ok(None),
                    Some(b'\r' | b'\n') => {
                        // "\r", "\r\n", "\r\n\r" may still become a ping.
                        if PING.starts_with(b) {
                            return Ok(None);
                        }
                        self.start += if b.starts_with(b"\r\n") { 2 } else { 1 };
                    }
                    Some(_) => break,
                }
            }
        }
        let avail = self.end - self.start;
        let want = match self.want {
            Some(w) => w,
            None => {
                let Some(head) = self.find_head_end() else {
                    if avail > self.max {
                        return Err(FrameError::TooLarge { max: self.max });
                    }
                    return Ok(None);
                };
                let cl = content_length(&self.buf[self.start..self.start + head]).inspect_err(|_| {
                    self.failed_head = Some(self.start..self.start + head);
                })?;
                let total = head.checked_add(cl).filter(|&t| t <= self.max);
                let total = total.ok_or(FrameError::TooLarge { max: self.max })?;
                self.want = Some(total);
                total
            }
        };
        if avail < want {
            return Ok(None);
        }
        let from = self.start;
        self.start += want;
        self.want = None;
        self.scanned = 0;
        Ok(Some(Step::Message(from, from + want)))
    }

    /// Length of the header section including its blank line, once it is
    /// complete. Resumes where the previous search stopped.
    fn find_head_end(&mut self) -> Option<usize> {
        let msg = &self.buf[self.start..self.end];
        // Back up 3 bytes: the terminator may straddle the previous read.
        let from = self.scanned.saturating_sub(3);
        let hay = &msg[from..];
        let crlf = memmem::find(hay, b"\r\n\r\n").map(|i| from + i + 4);
        // Bare-LF line ends are accepted by the parser too.
        let lf = memmem::find(hay, b"\n\n").map(|i| from + i + 2);
        let end = match (crlf, lf) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if end.is_none() {
            // Keep at least one byte marked so that the search resumes
            // (and the keep-alive check is skipped) next time.
            self.scanned = msg.len().max(1);
        }
        end
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Ping,
    Message(usize, usize),
}

/// The `Content-Length` (or `l`) of a complete header section, 0 when
/// there is none. A value that is not a number, or two that differ (RFC
/// 4475 mcl01), leave no way to find where the message ends.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    let mut found: Option<u64> = None;
    // Skip the start line, and the continuation lines of folded values.
    for line in head.split(|&b| b == b'\n').skip(1).filter(|l| !matches!(l.first(), Some(b' ' | b'\t'))) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
            return Err(FrameError::BadContentLength);
        }
        let n = value.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        if found.is_some_and(|f| f != n) {
            return Err(FrameError::ConflictingContentLength);
        }
        found = Some(n);
    }
    usize::try_from(found.unwrap_or(0)).map_err(|_| FrameError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"OPTIONS sip:acme.example SIP/2.0\r\n\
        Via: SIP/2.0/TCP 127.0.0.1:5000;branch=z9hG4bK1\r\n\
        Call-ID: a@b\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    fn invite_with_body() -> Vec<u8> {
        let body = b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n";
        let mut m = format!(
            "INVITE sip:*68103@acme.example SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5000;branch=z9hG4bK2\r\n\
             Call-ID: c@d\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\nl: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        m.extend_from_slice(body);
        m
    }

    /// One event, owned: a message, `None` for a ping, or the error.
    type Event = Result<Option<Vec<u8>>, FrameError>;

    /// Everything the framer yields for `chunks`, as owned events; the
    /// error, if any, last.
    fn run(f: &mut Framer, chunks: &[&[u8]]) -> (Vec<Event>, usize) {
        let mut out = Vec::new();
        for c in chunks {
            f.push(c);
            loop {
                match f.next_frame() {
                    Ok(Some(Frame::Message(m))) => out.push(Ok(Some(m.to_vec()))),
                    Ok(Some(Frame::Ping)) => out.push(Ok(None)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return (out, f.buffered());
                    }
                }
            }
        }
        (out, f.buffered())
    }

    fn messages(events: &[Event]) -> Vec<Vec<u8>> {
        events.iter().filter_map(|e| e.clone().ok().flatten()).collect()
    }

    #[test]
    fn one_message_one_chunk() {
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let (ev, left) = run(&mut f, &[REQ]);
        assert_eq!(ev, vec![Ok(Some(REQ.to_vec()))]);
        assert_eq!(left, 0);
    }

    #[test]
    fn pipelined_messages_in_one_chunk_with_keepalives_between() {
        let inv = invite_with_body();
        let mut all = Vec::new();
        all.extend_from_slice(REQ);
        all.extend_from_slice(&inv);
        all.extend_from_slice(b"\r\n"); // a pong: skipped
        all.extend_from_slice(PING);
        all.extend_from_slice(REQ);
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let (ev, left) = run(&mut f, &[&all]);
        assert_eq!(ev, vec![Ok(Some(REQ.to_vec())), Ok(Some(inv.clone())), Ok(None), Ok(Some(REQ.to_vec()))]);
        assert_eq!(left, 0);
        // Each framed message parses with the engine's parser, body and all.
        let m = crate::proto::sip::parse::SipMessage::parse(&inv).unwrap_or_else(|e| panic!("parse: {}", e.reason()));
        assert!(m.body().starts_with(b"v=0"), "body kept");
    }

    #[test]
    fn byte_at_a_time() {
        let inv = invite_with_body();
        let mut all = PING.to_vec();
        all.extend_from_slice(&inv);
        all.extend_from_slice(REQ);
        let chunks: Vec<&[u8]> = all.chunks(1).collect();
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let (ev, left) = run(&mut f, &chunks);
        assert_eq!(ev, vec![Ok(None), Ok(Some(inv)), Ok(Some(REQ.to_vec()))]);
        assert_eq!(left, 0);
    }

    /// A small deterministic generator (xorshift) for the split points.
    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    #[test]
    fn random_splits_yield_the_same_messages() {
        let inv = invite_with_body();
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for i in 0..20 {
            let m = if i % 3 == 0 { inv.clone() } else { REQ.to_vec() };
            if i % 4 == 1 {
                stream.extend_from_slice(PING);
            }
            stream.extend_from_slice(&m);
            want.push(m);
        }
        let mut seed = 0x1234_5678_9abc_def1u64;
        for round in 0..300 {
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let n = 1 + (xorshift(&mut seed) % 700) as usize;
                let to = (at + n).min(stream.len());
                chunks.push(&stream[at..to]);
                at = to;
            }
            let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
            let (ev, left) = run(&mut f, &chunks);
            assert!(ev.iter().all(Result::is_ok), "round {round}: no error expected: {ev:?}");
            assert_eq!(messages(&ev), want, "round {round}: same messages whatever the split");
            assert_eq!(ev.iter().filter(|e| matches!(e, Ok(None))).count(), 5, "round {round}: every ping seen");
            assert_eq!(left, 0, "round {round}");
        }
    }

    #[test]
    fn partial_message_waits() {
        let inv = invite_with_body();
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let (ev, left) = run(&mut f, &[&inv[..inv.len() - 1]]);
        assert!(ev.is_empty(), "{ev:?}");
        assert_eq!(left, inv.len() - 1);
        let (ev, left) = run(&mut f, &[&inv[inv.len() - 1..]]);
        assert_eq!(ev, vec![Ok(Some(inv))]);
        assert_eq!(left, 0);
    }

    #[test]
    fn lone_crlf_waits_then_is_skipped() {
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let (ev, left) = run(&mut f, &[b"\r\n"]);
        assert!(ev.is_empty(), "a CRLF may still become a ping: {ev:?}");
        assert_eq!(left, 2);
        let (ev, left) = run(&mut f, &[REQ]);
        assert_eq!(ev, vec![Ok(Some(REQ.to_vec()))], "a single CRLF (pong) is skipped");
        assert_eq!(left, 0);
    }

    #[test]
    fn missing_content_length_means_no_body() {
        let msg = b"OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n";
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let (ev, _) = run(&mut f, &[msg, REQ]);
        assert_eq!(ev, vec![Ok(Some(msg.to_vec())), Ok(Some(REQ.to_vec()))]);
    }

    #[test]
    fn oversize_header_section_is_an_error_without_buffering_it_all() {
        let mut f = Framer::new(1000);
        let head = b"OPTIONS sip:a SIP/2.0\r\nX: ";
        let filler = vec![b'a'; 100];
        let (ev, _) = run(&mut f, &[head]);
        assert!(ev.is_empty());
        let mut err = None;
        for i in 0..20 {
            f.push(&filler);
            match f.next_frame() {
                Ok(None) => {}
                Err(e) => {
                    err = Some((i, e));
                    break;
                }
                Ok(Some(x)) => panic!("unexpected frame {x:?}"),
            }
        }
        let (i, e) = err.unwrap_or_else(|| panic!("2 KB of header never hit the 1000-byte cap"));
        assert_eq!(e, FrameError::TooLarge { max: 1000 });
        assert!(i <= 10, "error as soon as the cap is passed (after {i} chunks)");
        assert_eq!(f.next_frame(), Err(e), "the error sticks");
    }

    #[test]
    fn oversize_content_length_is_an_error_before_the_body_arrives() {
        let msg = b"MESSAGE sip:a SIP/2.0\r\nContent-Length: 70000\r\n\r\n";
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        let (ev, _) = run(&mut f, &[msg]);
        assert_eq!(ev, vec![Err(FrameError::TooLarge { max: DEFAULT_MAX_MESSAGE })]);
        // Exactly at the cap is fine.
        let head = b"MESSAGE sip:a SIP/2.0\r\nContent-Length: 60\r\n\r\n";
        let mut f = Framer::new(head.len() + 60);
        let mut m = head.to_vec();
        m.extend_from_slice(&[b'x'; 60]);
        let (ev, _) = run(&mut f, &[&m]);
        assert_eq!(ev, vec![Ok(Some(m))]);
    }

    #[test]
    fn bad_content_length_is_an_error() {
        for cl in ["abc", "-1", "", "99999999999", "1 2"] {
            let msg = format!("MESSAGE sip:a SIP/2.0\r\nContent-Length: {cl}\r\n\r\n");
            let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
            let (ev, _) = run(&mut f, &[msg.as_bytes()]);
            assert_eq!(ev, vec![Err(FrameError::BadContentLength)], "Content-Length {cl:?}");
            assert_eq!(f.failed_head(), Some(msg.as_bytes()), "the head can still be answered");
        }
    }

    #[test]
    fn a_message_after_a_good_one_keeps_its_head_when_its_length_conflicts() {
        let ok = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 0\r\n\r\n".to_vec();
        let head = b"INVITE sip:a SIP/2.0\r\nContent-Length: 3\r\nl: 4\r\n\r\n".to_vec();
        let mut f = Framer::new(DEFAULT_MAX_MESSAGE);
        assert_eq!(f.failed_head(), None);
        let mut stream = ok.clone();
        stream.extend_from_slice(&head);
        stream.extend_from_slice(b"abcd");
        let (ev, _) = run(&mut f, &[&stream]);
        assert_eq!(ev, vec![Ok(Some(ok)), Err(FrameError::ConflictingContentLength)]);
        assert_eq!(f.failed_head(), Some(&head[..]));
    }

    #[test]
    fn garbage_never_panics_and_stays_bounded() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..200 {
            let mut f = Framer::new(4096);
            let mut data = Vec::new();
            for _ in 0..(xorshift(&mut seed) % 20_000) {
                // Bias towards the bytes that matter to framing.
                let b = match xorshift(&mut seed) % 8 {
                    0 => b'\r',
                    1 => b'\n',
                    2 => b':',
                    3 => b'l',
                    4 => b'0' + (xorshift(&mut seed) % 10) as u8,
                    _ => xorshift(&mut seed) as u8,
                };
                data.push(b);
            }
            let mut at = 0;
            'feed: while at < data.len() {
                let n = 1 + (xorshift(&mut seed) % 2000) as usize;
                let to = (at + n).min(data.len());
                f.push(&data[at..to]);
                at = to;
                loop {
                    match f.next_frame() {
                        Ok(Some(Frame::Message(m))) => assert!(m.len() <= 4096, "round {round}: {} bytes", m.len()),
                        Ok(Some(Frame::Ping)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
                assert!(f.buffered() <= 4096 + 2000, "round {round}: {} bytes buffered", f.buffered());
            }
        }
    }

    #[test]
    fn buffer_is_reused_and_shrunk() {
        let mut f = Framer::new(200_000);
        let big = format!("MESSAGE sip:a SIP/2.0\r\nContent-Length: 100000\r\n\r\n{}", "x".repeat(100_000));
        let (ev, _) = run(&mut f, &[big.as_bytes()]);
        assert_eq!(ev.len(), 1);
        assert!(f.buf.len() >= 100_000);
        let _ = f.spare(100);
        assert!(f.buf.len() <= SHRINK_ABOVE, "an empty buffer gives its memory back: {}", f.buf.len());
    }
}
