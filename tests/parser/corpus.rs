//! The corpus itself, and the message-level table test over it.

use crate::expect::{EXPECT, Start, expect_for, load_corpus};
use crate::util::{header_end, ok, parse_ok, text, within};
use sipark::proto::sip::parse::{Contact, SipMessage, StartLine};

/// Content-Length as written in the file (full or compact name), found
/// without the parser under test.
fn declared_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            std::str::from_utf8(line[colon + 1..].trim_ascii()).ok()?.parse().ok()
        } else {
            None
        }
    })
}

#[test]
fn corpus_files_are_well_formed() {
    for f in load_corpus() {
        let b = &f.bytes;
        for (i, &c) in b.iter().enumerate() {
            if c == b'\n' {
                assert!(i > 0 && b[i - 1] == b'\r', "{}: bare LF at byte {i}", f.name);
            }
            if c == b'\r' {
                assert!(b.get(i + 1) == Some(&b'\n'), "{}: bare CR at byte {i}", f.name);
            }
        }
        let end = header_end(b).unwrap_or_else(|| panic!("{}: no blank line", f.name));
        let cl = declared_length(&b[..end]).unwrap_or_else(|| panic!("{}: no Content-Length header", f.name));
        assert_eq!(cl, b.len() - end, "{}: Content-Length does not match the body", f.name);
        for bad in [&b"example.org"[..], b"example.net"] {
            assert!(!b.windows(bad.len()).any(|w| w == bad), "{}: use example.com / acme.example only", f.name);
        }
    }
}

#[test]
fn expectation_table_covers_the_corpus_exactly() {
    let corpus = load_corpus();
    for f in &corpus {
        expect_for(&f.name);
    }
    for e in EXPECT {
        assert!(corpus.iter().any(|f| f.name == e.file), "expect::EXPECT names {} which is not in the corpus", e.file);
    }
    assert_eq!(corpus.len(), EXPECT.len(), "duplicate entries in expect::EXPECT");
}

/// Every corpus file parses, and the fields match the hand-written table.
#[test]
fn corpus_parses_to_expected_fields() {
    for f in load_corpus() {
        let name = f.name.as_str();
        let e = expect_for(name);
        let m = parse_ok(name, &f.bytes);
        check_against(name, &m, e);
    }
}

pub fn check_against(name: &str, m: &SipMessage<'_>, e: &crate::expect::Expect) {
    match (e.start, m.start_line()) {
        (Start::Req { method, uri }, StartLine::Request { method: got, uri: got_uri }) => {
            assert_eq!(text(got.as_bytes()), method, "{name}: method");
            assert_eq!(text(got_uri), uri, "{name}: Request-URI");
            assert_eq!(m.method(), Some(got), "{name}: method()");
            assert_eq!(m.request_uri(), Some(got_uri), "{name}: request_uri()");
            assert_eq!(m.status(), None, "{name}: status() of a request");
        }
        (Start::Resp(code), StartLine::Response { code: got, reason }) => {
            assert_eq!(got, code, "{name}: status code");
            assert_eq!(m.status(), Some(code), "{name}: status()");
            assert_eq!(m.method(), None, "{name}: method() of a response");
            assert_eq!(m.request_uri(), None, "{name}: request_uri() of a response");
            assert!(!reason.is_empty(), "{name}: empty reason phrase");
            assert!(
                !reason.contains(&b'\r') && !reason.contains(&b'\n'),
                "{name}: reason phrase {} runs past the line",
                text(reason)
            );
        }
        (want, got) => panic!("{name}: start line {got:?}, want {want:?}"),
    }
    let call_id = ok(name, "call_id()", m.call_id());
    assert_eq!(text(call_id), e.call_id, "{name}: Call-ID");
    let cseq = ok(name, "cseq()", m.cseq());
    assert_eq!(cseq.seq, e.cseq.0, "{name}: CSeq number");
    assert_eq!(text(cseq.method.as_bytes()), e.cseq.1, "{name}: CSeq method");
    let from = ok(name, "from_hdr()", m.from_hdr());
    assert_eq!(from.tag().map(text).as_deref(), e.from_tag, "{name}: From tag");
    let to = ok(name, "to_hdr()", m.to_hdr());
    assert_eq!(to.tag().map(text).as_deref(), e.to_tag, "{name}: To tag");
    let via = ok(name, "top_via()", m.top_via());
    assert_eq!(via.branch.map(text).as_deref(), Some(e.branch), "{name}: top Via branch");
    assert_eq!(text(via.transport), "UDP", "{name}: top Via transport");

    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias.len(), e.vias, "{name}: number of Via values: {vias:?}");
    for (i, v) in vias.iter().enumerate() {
        let v = v.unwrap_or_else(|err| panic!("{name}: Via #{i} failed: {err:?}"));
        assert!(v.branch.is_some(), "{name}: Via #{i} has no branch");
    }
    assert_eq!(vias.first().copied().map(|v| v.ok()), Some(Some(via)), "{name}: vias() must start with top_via()");

    let contacts: Vec<_> = m.contacts().collect();
    assert_eq!(contacts.len(), e.contacts, "{name}: number of Contact values: {contacts:?}");
    for (i, c) in contacts.iter().enumerate() {
        match c {
            Ok(Contact::Star) => {}
            Ok(Contact::Addr(na)) => {
                assert!(
                    na.uri.scheme.eq_ignore_ascii_case(b"sip"),
                    "{name}: Contact #{i} scheme {}",
                    text(na.uri.scheme)
                );
                assert!(!na.uri.host.is_empty(), "{name}: Contact #{i} empty host");
            }
            Err(err) => panic!("{name}: Contact #{i} failed: {err:?}"),
        }
    }

    // Body: exactly the bytes after the blank line (Content-Length matches in
    // every corpus file), and borrowed from the datagram.
    let buf = m.as_bytes();
    let end = header_end(buf).unwrap_or(buf.len());
    assert_eq!(m.body(), &buf[end..], "{name}: body");
    assert!(within(buf, m.body()), "{name}: body is not a slice of the datagram");
    assert_eq!(m.content_length().map(|r| r.ok()), Some(Some(m.body().len() as u32)), "{name}: content_length()");
    for s in [call_id, via.raw, from.raw, to.raw] {
        assert!(within(buf, s), "{name}: {} is not borrowed from the datagram", text(s));
    }
}
