//! Round-trip and robustness properties over the corpus.
//!
//! * Parsing is a pure function of the bytes: the same bytes give the same
//!   fields, and a message rebuilt from the parsed start line, header lines
//!   and body parses to the same fields again.
//! * Every prefix of a corpus message is rejected or parses the same way the
//!   contract says (no blank line yet: error; body cut: `BodyTruncated`).
//! * A bounded, deterministic mutation loop never makes the parser or any
//!   accessor panic or loop.

use crate::expect::load_corpus;
use crate::util::{Rng, header_end, show};
use sipark::proto::route::owner;
use sipark::proto::sip::parse::{CSeq, Contact, HeaderName, NameAddr, ParseError, SipMessage, StartLine, Uri, Via};
use std::panic::{AssertUnwindSafe, catch_unwind};

type Bytes = Vec<u8>;

#[derive(Debug, PartialEq)]
struct ViaF {
    transport: Bytes,
    host: Bytes,
    port: Option<u16>,
    branch: Option<Bytes>,
    received: Option<Bytes>,
    rport: Option<Option<u16>>,
}

#[derive(Debug, PartialEq)]
struct AddrF {
    display: Option<Bytes>,
    uri: Bytes,
    user: Option<Bytes>,
    host: Bytes,
    port: Option<u16>,
    uri_params: Bytes,
    params: Bytes,
    tag: Option<Bytes>,
}

/// Everything the parser exposes, owned, so that two parses of different
/// buffers can be compared.
#[derive(Debug, PartialEq)]
struct Fields {
    start: (Bytes, Bytes, Option<u16>),
    headers: Vec<(HeaderName, Bytes)>,
    call_id: Result<Bytes, ParseError>,
    cseq: Result<(u32, Bytes), ParseError>,
    vias: Vec<Result<ViaF, ParseError>>,
    from: Result<AddrF, ParseError>,
    to: Result<AddrF, ParseError>,
    contacts: Vec<Result<Option<AddrF>, ParseError>>,
    record_routes: Vec<Result<AddrF, ParseError>>,
    routes: Vec<Result<AddrF, ParseError>>,
    referred_by: Option<Result<AddrF, ParseError>>,
    refer_to: Option<Result<AddrF, ParseError>>,
    numbers: [Option<Result<u32, ParseError>>; 3],
    content_type: Option<Bytes>,
    event: Option<Bytes>,
    body: Bytes,
}

fn via_f(v: Via<'_>) -> ViaF {
    ViaF {
        transport: v.transport.to_vec(),
        host: v.host.to_vec(),
        port: v.port,
        branch: v.branch.map(<[u8]>::to_vec),
        received: v.received.map(<[u8]>::to_vec),
        rport: v.rport,
    }
}

fn addr_f(a: NameAddr<'_>) -> AddrF {
    AddrF {
        display: a.display.map(<[u8]>::to_vec),
        uri: a.uri.raw.to_vec(),
        user: a.uri.user.map(<[u8]>::to_vec),
        host: a.uri.host.to_vec(),
        port: a.uri.port,
        uri_params: a.uri.params.to_vec(),
        params: a.params.to_vec(),
        tag: a.tag().map(<[u8]>::to_vec),
    }
}

fn cseq_f(c: CSeq<'_>) -> (u32, Bytes) {
    (c.seq, c.method.as_bytes().to_vec())
}

fn fields(m: &SipMessage<'_>) -> Fields {
    let start = match m.start_line() {
        StartLine::Request { method, uri } => (method.as_bytes().to_vec(), uri.to_vec(), None),
        StartLine::Response { code, reason } => (Vec::new(), reason.to_vec(), Some(code)),
    };
    Fields {
        start,
        headers: m.headers().iter().map(|h| (h.name, h.value.to_vec())).collect(),
        call_id: m.call_id().map(<[u8]>::to_vec),
        cseq: m.cseq().map(cseq_f),
        vias: m.vias().map(|v| v.map(via_f)).collect(),
        from: m.from_hdr().map(addr_f),
        to: m.to_hdr().map(addr_f),
        contacts: m
            .contacts()
            .map(|c| {
                c.map(|c| match c {
                    Contact::Star => None,
                    Contact::Addr(a) => Some(addr_f(a)),
                })
            })
            .collect(),
        record_routes: m.record_routes().map(|r| r.map(addr_f)).collect(),
        routes: m.routes().map(|r| r.map(addr_f)).collect(),
        referred_by: m.referred_by().map(|r| r.map(addr_f)),
        refer_to: m.refer_to().map(|r| r.map(addr_f)),
        numbers: [m.max_forwards(), m.expires(), m.content_length()],
        content_type: m.content_type().map(<[u8]>::to_vec),
        event: m.event().map(<[u8]>::to_vec),
        body: m.body().to_vec(),
    }
}

/// The message written back from what the parser saw.
fn rebuild(m: &SipMessage<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.write_to(&mut out);
    out
}

#[test]
fn reparse_gives_identical_fields() {
    for f in load_corpus() {
        let name = &f.name;
        let a = SipMessage::parse(&f.bytes).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let copy = f.bytes.clone();
        let b = SipMessage::parse(&copy).unwrap_or_else(|e| panic!("{name} (copy): {e:?}"));
        let fa = fields(&a);
        assert_eq!(fa, fields(&b), "{name}: parsing a copy of the bytes changed the fields");
        assert_eq!(fa, fields(&a), "{name}: accessors are not repeatable");

        let rebuilt = rebuild(&a);
        let c = SipMessage::parse(&rebuilt)
            .unwrap_or_else(|e| panic!("{name}: the rebuilt message does not parse ({e:?}):\n{}", show(&rebuilt)));
        assert_eq!(fa, fields(&c), "{name}: rebuilt message parses differently:\n{}", show(&rebuilt));
        // Rebuilding is a fixed point after one step.
        assert_eq!(rebuild(&c), rebuilt, "{name}: rebuild is not stable");
    }
}

#[test]
fn every_prefix_is_rejected_or_truncated() {
    for f in load_corpus() {
        let name = &f.name;
        let full = f.bytes.as_slice();
        let end = header_end(full).unwrap_or_else(|| panic!("{name}: no blank line"));
        for cut in 0..full.len() {
            let got = SipMessage::parse(&full[..cut]);
            if cut < end {
                assert!(got.is_err(), "{name}: prefix of {cut} bytes (headers not complete) was accepted");
            } else {
                assert_eq!(got.err(), Some(ParseError::BodyTruncated), "{name}: prefix of {cut} bytes cuts the body");
            }
        }
    }
}

/// Calls everything there is to call on `buf`; returns a checksum so the
/// work is not optimised away. Every iterator is bounded: it must end
/// within as many items as there are bytes.
fn exercise(buf: &[u8]) -> usize {
    let Ok(m) = SipMessage::parse(buf) else {
        return 0;
    };
    let bound = buf.len() + 1;
    let mut acc = m.headers().len() + m.body().len();
    acc += m.call_id().map_or(0, <[u8]>::len);
    acc += m.cseq().map_or(0, |c| c.seq as usize);
    acc += m.top_via().map_or(0, |v| v.host.len());
    let n = m.vias().take(bound + 1).count();
    assert!(n <= bound, "vias() did not end");
    let n = m.contacts().take(bound + 1).count();
    assert!(n <= bound, "contacts() did not end");
    let n = m.record_routes().take(bound + 1).count();
    assert!(n <= bound, "record_routes() did not end");
    let n = m.routes().take(bound + 1).count();
    assert!(n <= bound, "routes() did not end");
    for r in [m.from_hdr(), m.to_hdr()].into_iter().chain(m.referred_by()).chain(m.refer_to()).flatten() {
        acc += r.tag().map_or(0, <[u8]>::len);
        acc += r.param(b"expires").flatten().map_or(0, <[u8]>::len);
        acc += r.uri.param(b"lr").map_or(0, |v| v.map_or(1, <[u8]>::len));
    }
    for n in [m.max_forwards(), m.expires(), m.content_length()].into_iter().flatten().flatten() {
        acc += n as usize;
    }
    acc += m.content_type().map_or(0, <[u8]>::len) + m.event().map_or(0, <[u8]>::len);
    if let Some(raw) = m.request_uri()
        && let Ok(u) = Uri::parse(raw)
    {
        acc += u.param(b"call").flatten().map_or(0, <[u8]>::len);
    }
    for h in m.headers() {
        // The typed parsers on every raw value, whatever header it is.
        if let Ok(a) = NameAddr::parse(h.value) {
            acc += a.params.len();
        }
        if let Ok(u) = Uri::parse(h.value) {
            acc += u.host.len();
        }
    }
    for n in [1u16, 4, 64] {
        acc += match owner(&m, n) {
            sipark::proto::route::Owner::Shard(s) => {
                assert!(s < n, "owner() named shard {s} of {n}");
                s as usize
            }
            sipark::proto::route::Owner::Local => 0,
        };
    }
    acc
}

const SPECIAL: &[u8] = b":;,<>\"\\@= \t\r\n[]?%/0\x00\xff";

fn mutate(rng: &mut Rng, buf: &mut Vec<u8>) {
    let ops = 1 + rng.below(4);
    for _ in 0..ops {
        if buf.is_empty() {
            buf.push(b'x');
        }
        let at = rng.below(buf.len());
        match rng.below(8) {
            0 => buf[at] = rng.next_u64() as u8,
            1 => buf[at] = SPECIAL[rng.below(SPECIAL.len())],
            2 => buf.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
            3 => {
                let end = (at + 1 + rng.below(16)).min(buf.len());
                buf.drain(at..end);
            }
            4 => {
                // Duplicate a short range (repeats params, separators, lines).
                let end = (at + 1 + rng.below(24)).min(buf.len());
                let piece = buf[at..end].to_vec();
                let to = rng.below(buf.len());
                buf.splice(to..to, piece);
            }
            5 => buf.truncate(at),
            6 => {
                // Digits: huge numbers in CSeq, ports, Content-Length.
                let digits = b"99999999999999999999";
                let n = 1 + rng.below(digits.len());
                buf.splice(at..at, digits[..n].iter().copied());
            }
            _ => {
                // Swap two bytes.
                let other = rng.below(buf.len());
                buf.swap(at, other);
            }
        }
    }
}

#[test]
fn mutated_input_never_panics() {
    const PER_FILE: usize = 1000;
    let corpus = load_corpus();
    let mut rng = Rng::new(0x5151_a8c0_ffee_2025);
    let mut parsed = 0usize;
    for f in &corpus {
        for i in 0..PER_FILE {
            let mut buf = f.bytes.clone();
            mutate(&mut rng, &mut buf);
            let r = catch_unwind(AssertUnwindSafe(|| exercise(&buf)));
            match r {
                Ok(n) => parsed += usize::from(n > 0),
                Err(_) => panic!("{} mutation #{i} panicked (see the panic message above) on:\n{}", f.name, show(&buf)),
            }
        }
    }
    // The loop must exercise the accessors, not just the rejection path.
    let total = corpus.len() * PER_FILE;
    assert!(
        parsed * 5 >= total,
        "only {parsed} of {total} mutated messages parsed; mutations too destructive to test accessors"
    );
}

#[test]
fn splicing_corpus_messages_never_panics() {
    // Header sections of one message glued to others: duplicate and
    // conflicting headers, bodies of the wrong type.
    let corpus = load_corpus();
    let mut rng = Rng::new(0x0dd_5eed);
    for _ in 0..2000 {
        let a = &corpus[rng.below(corpus.len())].bytes;
        let b = &corpus[rng.below(corpus.len())].bytes;
        let cut_a = rng.below(a.len() + 1);
        let cut_b = rng.below(b.len() + 1);
        let mut buf = a[..cut_a].to_vec();
        buf.extend_from_slice(&b[cut_b..]);
        let r = catch_unwind(AssertUnwindSafe(|| exercise(&buf)));
        assert!(r.is_ok(), "splice panicked on:\n{}", show(&buf));
    }
}
