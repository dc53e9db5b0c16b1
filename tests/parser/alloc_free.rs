//! Parsing and the hot-path accessors allocate nothing. Allocations are
//! counted by the test binary's global allocator, for the current thread
//! only, so tests running in parallel do not interfere.

use crate::count_allocs;
use crate::expect::load_corpus;
use crate::util::show;
use sipark::proto::route::{Owner, owner};
use sipark::proto::sip::parse::{Contact, HeaderName, ParseError, SipMessage, Uri};
use std::hint::black_box;

fn len(b: Option<&[u8]>) -> u64 {
    b.map_or(0, |b| b.len() as u64)
}

/// What the engine does with every datagram before it knows anything else.
fn hot_path(buf: &[u8]) -> Result<u64, ParseError> {
    let m = SipMessage::parse(black_box(buf))?;
    let mut acc = match owner(&m, 4) {
        Owner::Shard(s) => u64::from(s) + 1,
        Owner::Local => 0,
    };
    acc += m.call_id()?.len() as u64;
    let cseq = m.cseq()?;
    acc += u64::from(cseq.seq);
    let via = m.top_via()?;
    acc += len(via.branch) + via.host.len() as u64 + u64::from(via.port.unwrap_or(0));
    let from = m.from_hdr()?;
    acc += len(from.tag()) + from.uri.host.len() as u64;
    let to = m.to_hdr()?;
    acc += len(to.tag()) + len(to.uri.user);
    for c in m.contacts() {
        match c? {
            Contact::Star => acc += 1,
            Contact::Addr(a) => {
                acc += a.uri.host.len() as u64 + len(a.param(b"expires").flatten());
            }
        }
    }
    if let Some(raw) = m.request_uri() {
        let uri = Uri::parse(raw)?;
        acc += len(uri.user) + uri.host.len() as u64 + len(uri.param(b"call").flatten());
    }
    Ok(black_box(acc))
}

/// Every other accessor of the contract (parse.rs promises that nothing in
/// the parser allocates).
fn other_accessors(buf: &[u8]) -> Result<u64, ParseError> {
    let m = SipMessage::parse(black_box(buf))?;
    let mut acc = m.headers().len() as u64 + m.body().len() as u64 + m.as_bytes().len() as u64;
    for v in m.vias() {
        let v = v?;
        acc += len(v.received) + u64::from(v.rport.flatten().unwrap_or(0));
    }
    for r in m.record_routes().chain(m.routes()) {
        acc += r?.uri.params.len() as u64;
    }
    for r in [m.referred_by(), m.refer_to()].into_iter().flatten() {
        let r = r?;
        acc += len(r.display) + len(r.uri.headers) + len(r.param(b"x").flatten());
    }
    for n in [m.max_forwards(), m.expires(), m.content_length()].into_iter().flatten() {
        acc += u64::from(n?);
    }
    acc += len(m.content_type()) + len(m.event()) + len(m.header(HeaderName::Supported));
    Ok(black_box(acc))
}

#[test]
fn counter_sees_allocations() {
    let (v, n) = count_allocs(|| black_box(Vec::<u8>::with_capacity(16)));
    drop(v);
    assert!(n >= 1, "the counting allocator missed an allocation");
    let (_, n) = count_allocs(|| black_box(3u64) * 7);
    assert_eq!(n, 0, "the counting allocator counted nothing as something");
}

fn assert_alloc_free(what: &str, f: fn(&[u8]) -> Result<u64, ParseError>) {
    for file in load_corpus() {
        let buf = file.bytes.as_slice();
        // Warm up once, so that one-time lazy initialisation (if any) is not
        // counted as a per-message cost.
        let _ = f(buf);
        let (r, n) = count_allocs(|| f(buf));
        assert!(r.is_ok(), "{}: {what} failed with {r:?}, so it was not fully measured", file.name);
        assert_eq!(n, 0, "{}: {what} made {n} allocation(s) on:\n{}", file.name, show(buf));
    }
}

#[test]
fn hot_path_allocates_nothing() {
    assert_alloc_free("parse + owner + hot-path accessors", hot_path);
}

#[test]
fn other_accessors_allocate_nothing() {
    assert_alloc_free("the other accessors", other_accessors);
}
