//! Parser throughput: sipark's zero-copy parser next to rsip 0.4 on four
//! corpus messages (`cargo bench -p sipark-benches --bench parse`).
//!
//! Two flavours per parser: `parse` (the message alone) and `fields` (the
//! message plus the fields a proxy reads on every datagram: Call-ID, CSeq,
//! top Via branch, From/To tags).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rsip::prelude::*;
use sipark::proto::sip::parse::SipMessage;
use std::hint::black_box;

const MESSAGES: &[(&str, &[u8])] = &[
    ("invite_sdp", include_bytes!("../../tests/parser/corpus/01_invite_polycom.sip")),
    ("notify_park_info", include_bytes!("../../tests/parser/corpus/14_notify_park_info.sip")),
    ("200_ok_sdp", include_bytes!("../../tests/parser/corpus/27_resp_200_invite_sdp.sip")),
    ("register", include_bytes!("../../tests/parser/corpus/10_register_contact_params.sip")),
];

fn sipark_parse(buf: &[u8]) -> usize {
    match SipMessage::parse(buf) {
        Ok(m) => m.headers().len(),
        Err(_) => 0,
    }
}

fn sipark_fields(buf: &[u8]) -> usize {
    let Ok(m) = SipMessage::parse(buf) else {
        return 0;
    };
    let mut n = m.call_id().map_or(0, <[u8]>::len);
    n += m.cseq().map_or(0, |c| c.seq as usize);
    n += m.top_via().ok().and_then(|v| v.branch).map_or(0, <[u8]>::len);
    n += m.from_hdr().ok().and_then(|f| f.tag()).map_or(0, <[u8]>::len);
    n += m.to_hdr().ok().and_then(|t| t.tag()).map_or(0, <[u8]>::len);
    n
}

fn rsip_parse(buf: &[u8]) -> usize {
    match rsip::SipMessage::try_from(buf) {
        Ok(m) => m.headers().iter().count(),
        Err(_) => 0,
    }
}

fn rsip_fields(buf: &[u8]) -> usize {
    let Ok(m) = rsip::SipMessage::try_from(buf) else {
        return 0;
    };
    let mut n = m.call_id_header().map_or(0, |c| c.value().len());
    n += m.cseq_header().ok().and_then(|c| c.seq().ok()).map_or(0, |s| s as usize);
    n += m
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string().len()))
        .unwrap_or(0);
    n += m.from_header().ok().and_then(|f| f.tag().ok().flatten()).map_or(0, |t| t.to_string().len());
    n += m.to_header().ok().and_then(|t| t.tag().ok().flatten()).map_or(0, |t| t.to_string().len());
    n
}

/// A labelled function under test.
type Run = (&'static str, fn(&[u8]) -> usize);

fn bench_parse(c: &mut Criterion) {
    // Fail loudly rather than benchmark the error path.
    for (name, buf) in MESSAGES {
        assert!(sipark_fields(buf) > 0, "sipark cannot parse {name}");
        assert!(rsip_fields(buf) > 0, "rsip cannot parse {name}");
    }
    let runs: [Run; 4] = [
        ("sipark/parse", sipark_parse),
        ("rsip/parse", rsip_parse),
        ("sipark/fields", sipark_fields),
        ("rsip/fields", rsip_fields),
    ];
    for (name, buf) in MESSAGES {
        let mut g = c.benchmark_group(format!("parse/{name}"));
        g.throughput(Throughput::Bytes(buf.len() as u64));
        for (label, f) in runs {
            g.bench_with_input(BenchmarkId::from_parameter(label), buf, |b, buf| b.iter(|| f(black_box(buf))));
        }
        g.finish();
    }
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
