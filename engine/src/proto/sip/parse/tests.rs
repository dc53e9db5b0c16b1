use super::*;

/// `req!(name, bytes, |msg| { checks })` parses and runs the checks;
/// `req!(name, bytes, Err(e))` expects the parse to fail with `e`.
macro_rules! req {
    ($name:ident, $buf:expr, |$msg:ident| $body:block) => {
        #[test]
        fn $name() {
            let buf: &[u8] = $buf;
            let $msg = SipMessage::parse(buf)
                .unwrap_or_else(|e| panic!("parse failed with {e:?} on {:?}", String::from_utf8_lossy(buf)));
            exercise(&$msg);
            $body
        }
    };
    ($name:ident, $buf:expr, Err($err:expr)) => {
        #[test]
        fn $name() {
            let buf: &[u8] = $buf;
            match SipMessage::parse(buf) {
                Err(e) => assert_eq!(e, $err, "on {:?}", String::from_utf8_lossy(buf)),
                Ok(m) => panic!("expected {:?}, parsed {m:?}", $err),
            }
        }
    };
}

/// Calls every accessor and walks every iterator; checks the framing
/// invariants. Used on everything that parses (also in the fuzz test).
fn exercise(m: &SipMessage<'_>) {
    let buf = m.as_bytes();
    let range = buf.as_ptr_range();
    let inside = |s: &[u8]| s.is_empty() || (range.start <= s.as_ptr() && s.as_ptr_range().end <= range.end);
    assert!(inside(m.body()), "body outside the datagram");
    assert!(m.headers().len() <= MAX_HEADERS);
    for h in m.headers() {
        assert!(inside(h.value) && inside(h.raw_name));
        assert!(!h.raw_name.is_empty(), "empty header name in {m:?}");
        assert_eq!(h.value, trim(h.value), "untrimmed value");
        assert_eq!(h.name, HeaderName::from_bytes(h.raw_name));
    }
    if let Some(Ok(cl)) = m.content_length() {
        assert_eq!(m.body().len(), cl as usize, "body length != Content-Length");
    }
    assert_eq!(m.is_request(), m.method().is_some());
    assert_eq!(m.is_request(), m.request_uri().is_some());
    assert_eq!(m.is_request(), m.status().is_none());
    if let Some(Ok(u)) = m.request_uri().map(Uri::parse) {
        check_uri(&u);
    }
    let _ = m.start_line();
    let _ = m.reason_phrase();
    let _ = m.call_id().map_err(|e| e.reason());
    let _ = m.cseq().map(|c| c.method.as_bytes());
    let _ = m.top_via();
    for v in m.vias().flatten() {
        let _ = v.param(b"branch");
        assert!(inside(v.raw));
    }
    for na in [m.from_hdr(), m.to_hdr()].into_iter().flatten() {
        check_name_addr(&na);
    }
    for c in m.contacts().flatten() {
        if let Contact::Addr(na) = c {
            check_name_addr(&na);
        }
    }
    for na in m.record_routes().chain(m.routes()).flatten() {
        check_name_addr(&na);
    }
    for na in [m.referred_by(), m.refer_to()].into_iter().flatten().flatten() {
        check_name_addr(&na);
    }
    let _ = (m.max_forwards(), m.expires(), m.content_length());
    let _ = (m.content_type(), m.event(), m.event_param(b"id"));
    let _ = m.header_raw(b"Session-Expires");
    for name in HeaderName::ALL {
        let _ = m.header(*name);
        let _ = m.header_values(*name).count();
    }
}

fn check_uri(u: &Uri<'_>) {
    let _ = (u.param(b"transport"), u.param(b"lr"), u.param(b""));
    assert!(u.scheme.len() < u.raw.len());
}

fn check_name_addr(na: &NameAddr<'_>) {
    let _ = (na.tag(), na.param(b"expires"), na.param(b"q"));
    check_uri(&na.uri);
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice A.\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

req!(invite_request, INVITE, |m| {
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.request_uri(), Some(&b"sip:bob@biloxi.example.com"[..]));
    assert_eq!(m.status(), None);
    assert_eq!(m.headers().len(), 9);
    assert_eq!(m.headers()[1].name, HeaderName::MaxForwards);
    assert_eq!(m.headers()[1].raw_name, b"Max-Forwards");
    assert_eq!(m.call_id(), Ok(&b"a84b4c76e66710@pc33.atlanta.example.com"[..]));
    assert_eq!(m.cseq(), Ok(CSeq { seq: 314159, method: Method::Invite }));
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, b"UDP");
    assert_eq!(via.host, b"pc33.atlanta.example.com");
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.branch, Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(via.rport, Some(None));
    assert_eq!(via.received, None);
    let from = m.from_hdr().unwrap();
    assert_eq!(from.display, Some(&b"Alice A."[..]));
    assert_eq!(from.tag(), Some(&b"1928301774"[..]));
    assert_eq!(from.uri.user, Some(&b"alice"[..]));
    let to = m.to_hdr().unwrap();
    assert_eq!(to.display, Some(&b"Bob"[..]));
    assert_eq!(to.tag(), None);
    assert_eq!(to.params, b"");
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    assert_eq!(m.content_length(), Some(Ok(4)));
    assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
    assert_eq!(m.expires(), None);
    assert_eq!(m.event(), None);
    assert_eq!(m.body(), b"v=0\n");
    let c: Vec<_> = m.contacts().collect();
    assert_eq!(c.len(), 1);
    match c[0] {
        Ok(Contact::Addr(na)) => assert_eq!(na.uri.host, b"pc33.atlanta.example.com"),
        other => panic!("contact {other:?}"),
    }
    assert_eq!(m.routes().count(), 0);
    assert!(m.referred_by().is_none() && m.refer_to().is_none());
});

req!(
    response_multi_via_and_record_route,
    b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1, SIP/2.0/TCP p2.example.com:5070;branch=z9hG4bK2\r\n\
v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK3;received=192.0.2.7;rport=6000\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
Record-Route: <sip:p3.example.com;lr>\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
    |m| {
        assert_eq!(m.status(), Some(200));
        assert_eq!(m.reason_phrase(), Some(&b"OK"[..]));
        assert_eq!(m.method(), None);
        let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].branch, Some(&b"z9hG4bK1"[..]));
        assert_eq!(vias[1].transport, b"TCP");
        assert_eq!(vias[1].port, Some(5070));
        assert_eq!(vias[1].raw, b"SIP/2.0/TCP p2.example.com:5070;branch=z9hG4bK2");
        assert_eq!(vias[2].received, Some(&b"192.0.2.7"[..]));
        assert_eq!(vias[2].rport, Some(Some(6000)));
        assert_eq!(m.top_via().unwrap(), vias[0]);
        let lower: Vec<_> = m.lower_vias().map(Result::unwrap).collect();
        assert_eq!(lower, vias[1..]);
        let rr: Vec<_> = m.record_routes().map(|r| s(r.unwrap().uri.host)).collect();
        assert_eq!(rr, ["p1.example.com", "p2.example.com", "p3.example.com"]);
        assert_eq!(m.to_hdr().unwrap().tag(), Some(&b"2"[..]));
        assert_eq!(m.body(), b"");
    }
);

req!(response_empty_reason, b"SIP/2.0 100\r\nCall-ID: x\r\n\r\n", |m| {
    assert_eq!(m.status(), Some(100));
    assert_eq!(m.reason_phrase(), Some(&b""[..]));
});

req!(response_reason_with_spaces_and_utf8, "sip/2.0 486 Busy Here – désolé \r\n\r\n".as_bytes(), |m| {
    assert_eq!(m.status(), Some(486));
    assert_eq!(m.reason_phrase(), Some("Busy Here – désolé".as_bytes()));
});

req!(
    compact_forms,
    b"REGISTER sip:example.com SIP/2.0\r\n\
v: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\
f: <sip:a@example.com>;tag=9\r\n\
t: <sip:a@example.com>\r\n\
i: cid1\r\n\
m: <sip:a@10.0.0.1>;expires=60\r\n\
l: 0\r\n\
c: text/plain\r\n\
e: gzip\r\n\
k: path\r\n\
s: hello\r\n\
r: <sip:park@example.com>\r\n\
b: <sip:carol@example.com>\r\n\
o: refer;id=7\r\n\
u: dialog\r\n\
x: 1800\r\n\
\r\n",
    |m| {
        use HeaderName as H;
        let names: Vec<_> = m.headers().iter().map(|h| h.name).collect();
        assert_eq!(
            names,
            [
                H::Via,
                H::From,
                H::To,
                H::CallId,
                H::Contact,
                H::ContentLength,
                H::ContentType,
                H::Other,
                H::Supported,
                H::Other,
                H::ReferTo,
                H::ReferredBy,
                H::Event,
                H::Other,
                H::Other
            ]
        );
        assert_eq!(m.call_id(), Ok(&b"cid1"[..]));
        assert_eq!(m.content_length(), Some(Ok(0)));
        assert_eq!(m.content_type(), Some(&b"text/plain"[..]));
        assert_eq!(m.header(H::Supported), Some(&b"path"[..]));
        assert_eq!(m.refer_to().unwrap().unwrap().uri.user, Some(&b"park"[..]));
        assert_eq!(m.referred_by().unwrap().unwrap().uri.user, Some(&b"carol"[..]));
        assert_eq!(m.event(), Some(&b"refer"[..]));
        assert_eq!(m.event_param(b"ID"), Some(Some(&b"7"[..])));
        assert_eq!(m.header_raw(b"Content-Encoding"), Some(&b"gzip"[..]));
        assert_eq!(m.header_raw(b"subject"), Some(&b"hello"[..]));
        assert_eq!(m.header_raw(b"Allow-Events"), Some(&b"dialog"[..]));
        assert_eq!(m.header_raw(b"SESSION-EXPIRES"), Some(&b"1800"[..]));
        assert_eq!(m.header_raw(b"x"), Some(&b"1800"[..]));
        assert_eq!(m.header_raw(b"i"), Some(&b"cid1"[..]));
        assert_eq!(m.header_raw(b"X-Nope"), None);
        match m.contacts().next() {
            Some(Ok(Contact::Addr(na))) => {
                assert_eq!(na.param(b"expires"), Some(Some(&b"60"[..])))
            }
            other => panic!("contact {other:?}"),
        }
    }
);

req!(
    odd_spacing_and_case,
    b"OPTIONS sip:h SIP/2.0\r\n\
via  :   SIP / 2.0 / UDP   h.example : 5062 ; branch = z9hG4bKa ; RPORT = 7 \r\n\
CALL-id:abc@h  \r\n\
cseq:   12    OPTIONS  \r\n\
max-forwards:\t0\t\r\n\
Expires :  3600\r\n\
FROM\t: sip:a@h ; tag = t1\r\n\
\r\n",
    |m| {
        let v = m.top_via().unwrap();
        assert_eq!(v.host, b"h.example");
        assert_eq!(v.port, Some(5062));
        assert_eq!(v.branch, Some(&b"z9hG4bKa"[..]));
        assert_eq!(v.rport, Some(Some(7)));
        assert_eq!(m.headers()[0].raw_name, b"via");
        assert_eq!(m.call_id(), Ok(&b"abc@h"[..]));
        assert_eq!(m.cseq().unwrap().seq, 12);
        assert_eq!(m.cseq().unwrap().method, Method::Options);
        assert_eq!(m.max_forwards(), Some(Ok(0)));
        assert_eq!(m.expires(), Some(Ok(3600)));
        let from = m.from_hdr().unwrap();
        assert_eq!(from.display, None);
        assert_eq!(from.tag(), Some(&b"t1"[..]));
        assert_eq!(from.uri.params, b"");
    }
);

req!(bare_lf_line_ends, b"BYE sip:b@h SIP/2.0\nCall-ID: lf\nCSeq: 2 BYE\nContent-Length: 2\n\nhi", |m| {
    assert_eq!(m.method(), Some(Method::Bye));
    assert_eq!(m.call_id(), Ok(&b"lf"[..]));
    assert_eq!(m.body(), b"hi");
});

req!(leading_crlf_is_skipped, b"\r\n\r\nACK sip:b@h SIP/2.0\r\nCall-ID: k\r\n\r\n", |m| {
    assert_eq!(m.method(), Some(Method::Ack));
});

req!(
    folding,
    b"INVITE sip:b@h SIP/2.0\r\n\
Subject: I know you're there,\r\n   pick up the phone\r\n\
Via: SIP/2.0/UDP h1\r\n\t;branch=z9hG4bKf\r\n\
Contact: <sip:a@h1>,\r\n <sip:b@h2>\r\n\
CSeq: 5\r\n INVITE\r\n\
Call-ID: f\r\n\r\n",
    |m| {
        assert_eq!(m.header_raw(b"subject"), Some(&b"I know you're there,\r\n   pick up the phone"[..]));
        let v = m.top_via().unwrap();
        assert_eq!(v.branch, Some(&b"z9hG4bKf"[..]));
        let hosts: Vec<_> = m
            .contacts()
            .map(|c| match c {
                Ok(Contact::Addr(na)) => s(na.uri.host),
                other => panic!("contact {other:?}"),
            })
            .collect();
        assert_eq!(hosts, ["h1", "h2"]);
        assert_eq!(m.cseq().unwrap().seq, 5);
        assert_eq!(m.headers().len(), 5);
    }
);

req!(
    multi_value_contacts_respect_quotes_and_angles,
    b"REGISTER sip:h SIP/2.0\r\n\
Contact: \"Doe, John\" <sip:j@x?h=1,2>;q=0.5, sip:y@z;expires=30\r\n\
Contact: <sip:w@v;lr>;+sip.instance=\"<urn:uuid:1,2>\"\r\n\
m: *\r\n\r\n",
    |m| {
        let c: Vec<_> = m.contacts().map(Result::unwrap).collect();
        assert_eq!(c.len(), 4, "{c:?}");
        let Contact::Addr(a) = c[0] else { panic!("{c:?}") };
        assert_eq!(a.display, Some(&b"Doe, John"[..]));
        assert_eq!(a.uri.headers, Some(&b"h=1,2"[..]));
        assert_eq!(a.param(b"Q"), Some(Some(&b"0.5"[..])));
        let Contact::Addr(b) = c[1] else { panic!("{c:?}") };
        assert_eq!(b.uri.host, b"z");
        assert_eq!(b.uri.params, b"");
        assert_eq!(b.params, b";expires=30");
        let Contact::Addr(d) = c[2] else { panic!("{c:?}") };
        assert_eq!(d.param(b"+sip.instance"), Some(Some(&b"\"<urn:uuid:1,2>\""[..])));
        assert_eq!(d.uri.param(b"lr"), Some(None));
        assert_eq!(c[3], Contact::Star);
    }
);

req!(
    routes_across_headers,
    b"BYE sip:b@h SIP/2.0\r\nRoute: <sip:r1;lr>\r\nRoute: <sip:r2;lr>,<sip:r3;lr>\r\n\r\n",
    |m| {
        let r: Vec<_> = m.routes().map(|r| s(r.unwrap().uri.host)).collect();
        assert_eq!(r, ["r1", "r2", "r3"]);
    }
);

req!(content_length_extra_bytes_ignored, b"MESSAGE sip:b@h SIP/2.0\r\nContent-Length: 3\r\n\r\nabcdef", |m| {
    assert_eq!(m.body(), b"abc");
});

req!(no_content_length_takes_rest, b"MESSAGE sip:b@h SIP/2.0\r\nCall-ID: q\r\n\r\nabc\r\ndef", |m| {
    assert_eq!(m.body(), b"abc\r\ndef");
    assert_eq!(m.content_length(), None);
});

req!(unknown_method_and_headers, b"FOO-BAR sip:b@h SIP/2.0\r\nX-Custom: 1\r\nCSeq: 3 FOO-BAR\r\n\r\n", |m| {
    assert_eq!(m.method(), Some(Method::Other(b"FOO-BAR")));
    assert_eq!(m.cseq().unwrap().method, Method::Other(b"FOO-BAR"));
    assert_eq!(m.headers()[0].name, HeaderName::Other);
    assert_eq!(m.header_raw(b"x-custom"), Some(&b"1"[..]));
});

req!(lowercase_method_is_other, b"invite sip:b@h SIP/2.0\r\n\r\n", |m| {
    assert_eq!(m.method(), Some(Method::Other(b"invite")));
});

req!(exactly_max_headers, &many_headers(MAX_HEADERS), |m| {
    assert_eq!(m.headers().len(), MAX_HEADERS);
});

fn many_headers(n: usize) -> Vec<u8> {
    let mut v = b"OPTIONS sip:h SIP/2.0\r\n".to_vec();
    for i in 0..n {
        v.extend_from_slice(format!("X-H{i}: {i}\r\n").as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    v
}

// Framing errors, one per variant.
req!(err_empty, b"", Err(ParseError::Incomplete));
req!(err_only_crlf, b"\r\n\r\n", Err(ParseError::Incomplete));
req!(err_no_line_end, b"INVITE sip:a@b SIP/2.0", Err(ParseError::Incomplete));
req!(err_no_blank_line, b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n", Err(ParseError::Incomplete));
req!(err_unterminated_header, b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x", Err(ParseError::Incomplete));
req!(err_half_blank_line, b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r", Err(ParseError::Incomplete));
req!(err_garbage, b"HELLO\r\n\r\n", Err(ParseError::StartLine));
req!(err_binary, b"\x00\x01\x02\xff\n\n", Err(ParseError::StartLine));
req!(err_method_not_token, b"INV<TE sip:a@b SIP/2.0\r\n\r\n", Err(ParseError::StartLine));
req!(err_no_version, b"INVITE sip:a@b\r\n\r\n", Err(ParseError::StartLine));
req!(err_empty_uri, b"INVITE  SIP/2.0\r\n\r\n", Err(ParseError::RequestUri));
req!(err_uri_ctl, b"INVITE sip:a\tb SIP/2.0\r\n\r\n", Err(ParseError::RequestUri));
req!(err_req_version, b"INVITE sip:a@b SIP/3.0\r\n\r\n", Err(ParseError::Version));
req!(err_req_trailing, b"INVITE sip:a@b SIP/2.0 x\r\n\r\n", Err(ParseError::Version));
req!(err_resp_version, b"SIP/1.0 200 OK\r\n\r\n", Err(ParseError::Version));
req!(err_code_4_digits, b"SIP/2.0 2000 OK\r\n\r\n", Err(ParseError::StatusCode));
req!(err_code_2_digits, b"SIP/2.0 20 OK\r\n\r\n", Err(ParseError::StatusCode));
req!(err_code_letters, b"SIP/2.0 2x0 OK\r\n\r\n", Err(ParseError::StatusCode));
req!(err_code_range, b"SIP/2.0 099 Low\r\n\r\n", Err(ParseError::StatusCode));
req!(err_code_missing, b"SIP/2.0\r\n\r\n", Err(ParseError::StatusCode));
req!(err_header_no_colon, b"INVITE sip:a@b SIP/2.0\r\nCall-ID x\r\n\r\n", Err(ParseError::HeaderLine));
req!(err_header_empty_name, b"INVITE sip:a@b SIP/2.0\r\n: x\r\n\r\n", Err(ParseError::HeaderLine));
req!(err_header_bad_name, b"INVITE sip:a@b SIP/2.0\r\nCall ID: x\r\n\r\n", Err(ParseError::HeaderLine));
// A known name with a byte that is not a token character in it, whether
// or not the byte could pass for a letter or `-` by its 0x20 bit.
req!(err_header_known_name_bad_byte, b"INVITE sip:a@b SIP/2.0\r\nC@ll-ID: x\r\n\r\n", Err(ParseError::HeaderLine));
req!(err_header_known_name_cr, b"INVITE sip:a@b SIP/2.0\r\nCall\rID: x\r\n\r\n", Err(ParseError::HeaderLine));
req!(err_header_name_high_byte, b"INVITE sip:a@b SIP/2.0\r\nX-\xe9t\xe9: x\r\n\r\n", Err(ParseError::HeaderLine));
req!(err_header_name_del, b"INVITE sip:a@b SIP/2.0\r\nVia\x7f: x\r\n\r\n", Err(ParseError::HeaderLine));
req!(err_header_name_cut, b"INVITE sip:a@b SIP/2.0\r\nSupported", Err(ParseError::Incomplete));
req!(err_header_bad_name_cut, b"INVITE sip:a@b SIP/2.0\r\nSupp{rted", Err(ParseError::HeaderLine));
#[test]
fn a_call_id_is_visible_ascii_throughout() {
    let long = "a".repeat(40);
    for (call_id, ok) in [
        (&b"c1@192.0.2.1"[..], true),
        (long.as_bytes(), true),
        (b"!~", true),
        (b"abcdefghij\x7f", false),
        (b"abcdefghijklmnop\x80q", false),
        (b"abcdefgh\x01", false),
        (b"ab\xc3\xa9", false),
    ] {
        let mut raw = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: ".to_vec();
        raw.extend_from_slice(call_id);
        raw.extend_from_slice(b"\r\n\r\n");
        let m = SipMessage::parse(&raw).unwrap();
        let want = if ok { Ok(call_id) } else { Err(ParseError::Invalid(HeaderName::CallId)) };
        assert_eq!(m.call_id(), want, "{}", String::from_utf8_lossy(call_id));
    }
}

#[test]
fn lower_vias_read_past_an_unreadable_top_via() {
    let raw = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP ;;, SIP/2.0/UDP h;branch=z9hG4bK2\r\nVia: bogus\r\n\r\n";
    let m = SipMessage::parse(raw).unwrap();
    assert!(m.top_via().is_err());
    let lower: Vec<_> = m.lower_vias().collect();
    assert_eq!(lower.len(), 2);
    assert_eq!(lower[0].unwrap().branch, Some(&b"z9hG4bK2"[..]));
    assert!(lower[1].is_err());
}

req!(err_fold_first, b"INVITE sip:a@b SIP/2.0\r\n folded: x\r\n\r\n", Err(ParseError::HeaderLine));
req!(err_bare_cr, b"INVITE sip:a@b SIP/2.0\r\nA: b\r\n\rX\r\n\r\n", Err(ParseError::HeaderLine));
req!(err_too_many, &many_headers(MAX_HEADERS + 1), Err(ParseError::TooManyHeaders));
req!(err_body_truncated, b"MESSAGE sip:b@h SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", Err(ParseError::BodyTruncated));
req!(
    err_content_length_letters,
    b"MESSAGE sip:b@h SIP/2.0\r\nContent-Length: ten\r\n\r\n",
    Err(ParseError::Invalid(HeaderName::ContentLength))
);
req!(
    err_content_length_overflow,
    b"MESSAGE sip:b@h SIP/2.0\r\nl: 99999999999999999999\r\n\r\n",
    Err(ParseError::Invalid(HeaderName::ContentLength))
);
req!(
    err_content_length_negative,
    b"MESSAGE sip:b@h SIP/2.0\r\nContent-Length: -1\r\n\r\n",
    Err(ParseError::Invalid(HeaderName::ContentLength))
);

/// Accessor errors on a message whose framing is fine.
#[test]
fn accessor_errors() {
    let m = SipMessage::parse(b"OPTIONS sip:h SIP/2.0\r\n\r\n").unwrap();
    assert_eq!(m.call_id(), Err(ParseError::Missing(HeaderName::CallId)));
    assert_eq!(m.cseq(), Err(ParseError::Missing(HeaderName::CSeq)));
    assert_eq!(m.top_via(), Err(ParseError::Missing(HeaderName::Via)));
    assert_eq!(m.from_hdr(), Err(ParseError::Missing(HeaderName::From)));
    assert_eq!(m.to_hdr(), Err(ParseError::Missing(HeaderName::To)));
    assert_eq!(m.vias().count(), 0);
    assert_eq!(m.contacts().count(), 0);
    assert!(m.max_forwards().is_none() && m.expires().is_none());

    let bad = b"OPTIONS sip:h SIP/2.0\r\n\
Call-ID: has space\r\n\
CSeq: 99999999999 OPTIONS\r\n\
Via: SIP/2.0/UDP\r\n\
From: <sip:a@b\r\n\
To: <sip:x@>\r\n\
Contact: <sip:a@b>, junk\r\n\
Route: <sip:r>;lr junk\r\n\
Record-Route: \r\n\
Referred-By: nothing\r\n\
Refer-To: <sip:a@[zz]>\r\n\
Max-Forwards: 7 0\r\n\
Expires: 4294967296\r\n\
\r\n";
    let m = SipMessage::parse(bad).unwrap();
    exercise(&m);
    use HeaderName as H;
    use ParseError::Invalid;
    assert_eq!(m.call_id(), Err(Invalid(H::CallId)));
    assert_eq!(m.cseq(), Err(Invalid(H::CSeq)));
    assert_eq!(m.top_via(), Err(Invalid(H::Via)));
    assert_eq!(m.from_hdr(), Err(Invalid(H::From)));
    assert_eq!(m.to_hdr(), Err(Invalid(H::To)));
    let c: Vec<_> = m.contacts().collect();
    assert!(matches!(c[..], [Ok(Contact::Addr(_)), Err(Invalid(H::Contact))]), "{c:?}");
    assert_eq!(m.routes().next(), Some(Err(Invalid(H::Route))));
    assert_eq!(m.record_routes().next(), Some(Err(Invalid(H::RecordRoute))));
    assert_eq!(m.referred_by(), Some(Err(Invalid(H::ReferredBy))));
    assert_eq!(m.refer_to(), Some(Err(Invalid(H::ReferTo))));
    assert_eq!(m.max_forwards(), Some(Err(Invalid(H::MaxForwards))));
    assert_eq!(m.expires(), Some(Err(Invalid(H::Expires))));
    assert_eq!(m.expires().unwrap().unwrap_err().reason(), "Bad Expires header");
}

#[test]
fn cseq_forms() {
    let ok = |v: &[u8], seq, method| assert_eq!(CSeq::parse(v), Ok(CSeq { seq, method }), "{:?}", s(v));
    ok(b"1 INVITE", 1, Method::Invite);
    ok(b" 4294967295\tACK ", u32::MAX, Method::Ack);
    ok(b"0 FOO", 0, Method::Other(b"FOO"));
    for bad in [&b""[..], b"INVITE", b"1", b"1INVITE", b"4294967296 INVITE", b"-1 INVITE", b"1 INVITE x", b"1 IN<V"] {
        assert_eq!(CSeq::parse(bad), Err(ParseError::Invalid(HeaderName::CSeq)), "{:?}", s(bad));
    }
}

#[test]
fn reasons() {
    use HeaderName as H;
    use ParseError as E;
    let cases = [
        (E::StartLine, "Bad Request Line"),
        (E::RequestUri, "Bad Request-URI"),
        (E::Version, "Bad SIP Version"),
        (E::StatusCode, "Bad Status Code"),
        (E::HeaderLine, "Bad Header Line"),
        (E::TooManyHeaders, "Too Many Headers"),
        (E::Incomplete, "Incomplete Message"),
        (E::BodyTruncated, "Body shorter than Content-Length"),
        (E::Missing(H::CallId), "Missing Call-ID header"),
        (E::Missing(H::Other), "Missing header"),
        (E::Invalid(H::Via), "Bad Via header"),
        (E::Invalid(H::CSeq), "Bad CSeq header"),
        (E::Invalid(H::Other), "Bad header"),
    ];
    for (e, want) in cases {
        assert_eq!(e.reason(), want);
        assert_eq!(e.to_string(), want);
    }
    for h in HeaderName::ALL {
        let r = ParseError::Invalid(*h).reason();
        assert_eq!(r, format!("Bad {} header", h.as_str()));
        // Reason phrases go on the wire: printable ASCII only.
        assert!(r.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }
}

#[test]
fn header_names_round_trip() {
    assert_eq!(HeaderName::ALL.len(), 22);
    for h in HeaderName::ALL {
        let n = h.as_str();
        assert_eq!(HeaderName::from_bytes(n.as_bytes()), *h, "{n}");
        assert_eq!(HeaderName::from_bytes(n.to_ascii_uppercase().as_bytes()), *h);
        assert_eq!(HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()), *h);
        // Every byte counts: one changed anywhere is another name.
        for i in 0..n.len() {
            let mut m = n.as_bytes().to_vec();
            m[i] = if m[i] == b'q' { b'z' } else { b'q' };
            assert_ne!(HeaderName::from_bytes(&m), *h, "{:?}", s(&m));
        }
    }
    assert_eq!(HeaderName::Other.as_str(), "");
    for other in [&b""[..], b"e", b"s", b"u", b"x", b"Vias", b"Call_ID", b"\xff", b"z"] {
        assert_eq!(HeaderName::from_bytes(other), HeaderName::Other, "{:?}", s(other));
    }
    assert_eq!(HeaderName::from_bytes(b"I"), HeaderName::CallId);
    assert_eq!(HeaderName::from_bytes(b"O"), HeaderName::Event);
}

#[test]
fn methods_round_trip() {
    let all = [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Register,
        Method::Options,
        Method::Notify,
        Method::Subscribe,
        Method::Refer,
        Method::Info,
        Method::Update,
        Method::Prack,
        Method::Message,
        Method::Publish,
    ];
    for m in all {
        assert_eq!(Method::from_bytes(m.as_bytes()), m);
        assert!(matches!(Method::from_bytes(m.as_bytes().to_ascii_lowercase().leak()), Method::Other(_)));
    }
    assert_eq!(Method::Other(b"X").as_bytes(), b"X");
}

#[test]
fn uri_forms() {
    let u = Uri::parse(b"sip:alice:secret@atlanta.example.com:5061;transport=tcp;lr?subject=x&h=y").unwrap();
    assert_eq!(u.scheme, b"sip");
    assert_eq!(u.user, Some(&b"alice"[..]));
    assert_eq!(u.host, b"atlanta.example.com");
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.params, b";transport=tcp;lr");
    assert_eq!(u.headers, Some(&b"subject=x&h=y"[..]));
    assert_eq!(u.param(b"TRANSPORT"), Some(Some(&b"tcp"[..])));
    assert_eq!(u.param(b"lr"), Some(None));
    assert_eq!(u.param(b"maddr"), None);

    let u = Uri::parse(b"SIPS:[2001:db8::1]:5061").unwrap();
    assert_eq!(u.scheme, b"SIPS");
    assert_eq!(u.user, None);
    assert_eq!(u.host, b"[2001:db8::1]");
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.params, b"");
    assert_eq!(u.headers, None);

    let u = Uri::parse(b"sip:*68103@park.example.com;user=phone").unwrap();
    assert_eq!(u.user, Some(&b"*68103"[..]));
    assert_eq!(u.param(b"user"), Some(Some(&b"phone"[..])));

    let u = Uri::parse(b"sip:#31%23x@10.1.2.3").unwrap();
    assert_eq!(u.user, Some(&b"#31%23x"[..]));
    assert_eq!(u.host, b"10.1.2.3");
    assert_eq!(u.port, None);

    let u = Uri::parse(b"sip:+1-201-555;phone-context=example.com@gw.example.com;user=phone").unwrap();
    assert_eq!(u.user, Some(&b"+1-201-555;phone-context=example.com"[..]));
    assert_eq!(u.host, b"gw.example.com");

    let u = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap();
    assert_eq!(u.scheme, b"tel");
    assert_eq!(u.user, Some(&b"+1-201-555-0123"[..]));
    assert_eq!(u.host, b"");
    assert_eq!(u.param(b"phone-context"), Some(Some(&b"example.com"[..])));
    assert_eq!(Uri::parse(b"TEL:*68").unwrap().user, Some(&b"*68"[..]));

    let u = Uri::parse(b"sip:host?Replaces=abc%40h%3Bto-tag%3D1").unwrap();
    assert_eq!(u.params, b"");
    assert_eq!(u.headers, Some(&b"Replaces=abc%40h%3Bto-tag%3D1"[..]));
    assert_eq!(Uri::parse(b"sip:h:65535").unwrap().port, Some(65535));

    for bad in [
        &b""[..],
        b"sip:",
        b"sip:@h",
        b"sip:a@",
        b"sip:a@h:",
        b"sip:a@h:65536",
        b"sip:a@h:123456",
        b"sip:a@h:5x",
        b"sip:a@[]",
        b"sip:a@[zz::1]",
        b"sip:a@[::1",
        b"sip:a b@h",
        b"sip:a@h;=x",
        b"sip:a@h;x=",
        b"sip:a@h/x",
        b"sip:a%2@h",
        b"sip:a%zz@h",
        b"sip:<a>@h",
        b"1http://example.com",
        b"ht tp://example.com",
        b"mailto:",
        b":x",
        b"tel:",
        b"tel:+",
        b"tel:12z",
        b"sip:a@h\xff",
    ] {
        assert_eq!(Uri::parse(bad), Err(ParseError::RequestUri), "{:?}", s(bad));
    }

    // Other schemes (RFC 4475 unkscm, novelsc, unksm2) are kept whole.
    for other in
        [&b"http://example.com"[..], b"mailto:a@b", b"sipx:a@h", b"soap.beep://192.0.2.103:3002", b"isbn:2983792873"]
    {
        let u = Uri::parse(other).unwrap_or_else(|e| panic!("{e}: {:?}", s(other)));
        assert_eq!((u.user, u.host, u.port, u.params, u.headers, u.raw), (None, &b""[..], None, &b""[..], None, other));
        assert!(!u.is_sip() && !u.is_supported(), "{:?}", s(other));
    }
    assert_eq!(Uri::parse(b"sipx:a@h").unwrap().scheme, b"sipx");
    assert!(Uri::parse(b"SIPS:a@h").unwrap().is_sip());
    assert!(Uri::parse(b"tel:+1").unwrap().is_supported() && !Uri::parse(b"tel:+1").unwrap().is_sip());
}

#[test]
fn name_addr_forms() {
    let n = NameAddr::parse(b"\"Bob \\\"B\\\" <x>\" <sip:bob@h>;tag=abc;foo").unwrap();
    assert_eq!(n.display, Some(&b"Bob \\\"B\\\" <x>"[..]));
    assert_eq!(n.uri.user, Some(&b"bob"[..]));
    assert_eq!(n.tag(), Some(&b"abc"[..]));
    assert_eq!(n.param(b"FOO"), Some(None));
    assert_eq!(n.params, b";tag=abc;foo");

    let n = NameAddr::parse(b"  Bob Smith   <sip:bob@h;lr> ; TAG=z ").unwrap();
    assert_eq!(n.display, Some(&b"Bob Smith"[..]));
    assert_eq!(n.uri.param(b"lr"), Some(None));
    assert_eq!(n.tag(), Some(&b"z"[..]));
    assert_eq!(n.raw, b"Bob Smith   <sip:bob@h;lr> ; TAG=z");

    let n = NameAddr::parse(b"<sip:h>").unwrap();
    assert_eq!(n.display, None);
    assert_eq!(n.params, b"");
    assert_eq!(n.tag(), None);

    let n = NameAddr::parse(b"\"\" <sip:h>").unwrap();
    assert_eq!(n.display, None);

    let n = NameAddr::parse(b"Jos\xc3\xa9 <sip:j@h>").unwrap();
    assert_eq!(n.display, Some(&b"Jos\xc3\xa9"[..]));

    // Bare addr-spec: the params after the URI are header params.
    let n = NameAddr::parse(b"sip:a@b;tag=x;transport=udp").unwrap();
    assert_eq!(n.uri.raw, b"sip:a@b");
    assert_eq!(n.uri.params, b"");
    assert_eq!(n.tag(), Some(&b"x"[..]));
    assert_eq!(n.param(b"transport"), Some(Some(&b"udp"[..])));

    let n = NameAddr::parse(b"<sip:a@b;transport=udp>;tag=x").unwrap();
    assert_eq!(n.uri.param(b"transport"), Some(Some(&b"udp"[..])));
    assert_eq!(n.param(b"transport"), None);

    let n = NameAddr::parse(b"<sip:park@h?Replaces=a%40b%3Bto-tag%3D1>").unwrap();
    assert_eq!(n.uri.headers, Some(&b"Replaces=a%40b%3Bto-tag%3D1"[..]));

    let n = NameAddr::parse(b"<tel:+15551234>;tag=1").unwrap();
    assert_eq!(n.uri.user, Some(&b"+15551234"[..]));

    let n = NameAddr::parse(b"<sip:a@b>;p=\"x;y\";tag=t").unwrap();
    assert_eq!(n.param(b"p"), Some(Some(&b"\"x;y\""[..])));
    assert_eq!(n.tag(), Some(&b"t"[..]));

    let n = NameAddr::parse(b"<http://www.example.com>;tag=3234233").unwrap();
    assert_eq!(
        (n.uri.scheme, n.uri.raw, n.tag()),
        (&b"http"[..], &b"http://www.example.com"[..], Some(&b"3234233"[..]))
    );

    for bad in [
        &b""[..],
        b"<>",
        b"<sip:a@b",
        b"\"unterminated <sip:a@b>",
        b"\"Bob\" sip:a@b",
        b"<sip:a@b> junk",
        b"<sip:a@b>;tag=",
        b"<sip:a@b>;tag=a b",
        b"<sip:a@b>;=x",
        b"<sip:a@b>;p=\"open",
        b"Bo\x01b <sip:a@b>",
        b"nothing",
        b"<mailto:>",
    ] {
        assert_eq!(NameAddr::parse(bad), Err(ParseError::Invalid(HeaderName::Other)), "{:?}", s(bad));
    }
}

#[test]
fn via_forms() {
    let v = Via::parse(b"SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKx;received=2001:db8::7;rport=1;ttl=16").unwrap();
    assert_eq!(v.host, b"[2001:db8::9]");
    assert_eq!(v.port, Some(5060));
    assert_eq!(v.received, Some(&b"2001:db8::7"[..]));
    assert_eq!(v.rport, Some(Some(1)));
    assert_eq!(v.param(b"TTL"), Some(Some(&b"16"[..])));
    assert_eq!(v.param(b"maddr"), None);

    let v = Via::parse(b"sip/2.0/tls 192.0.2.1").unwrap();
    assert_eq!(v.transport, b"tls");
    assert_eq!(v.host, b"192.0.2.1");
    assert_eq!(v.port, None);
    assert_eq!(v.branch, None);
    assert_eq!(v.rport, None);
    assert_eq!(v.param(b"branch"), None);

    let v = Via::parse(b"SIP/2.0/UDP h;branch=\"q;x\";rport").unwrap();
    assert_eq!(v.branch, Some(&b"\"q;x\""[..]));
    assert_eq!(v.rport, Some(None));

    for bad in [
        &b""[..],
        b"SIP/2.0/UDP",
        b"SIP/2.0/UDP ",
        b"SIP/2.0 UDP h",
        b"SIP/3.0/UDP h",
        b"XIP/2.0/UDP h",
        b"SIP/2.0/UDPh",
        b"SIP/2.0/UDP h:",
        b"SIP/2.0/UDP h:99999",
        b"SIP/2.0/UDP h junk",
        b"SIP/2.0/UDP h;branch",
        b"SIP/2.0/UDP h;branch=",
        b"SIP/2.0/UDP h;rport=70000",
        b"SIP/2.0/UDP h;rport=x",
        b"SIP/2.0/UDP h;received",
        b"SIP/2.0/UDP h;=1",
        b"SIP/2.0/UDP [::1",
    ] {
        assert_eq!(Via::parse(bad), Err(ParseError::Invalid(HeaderName::Via)), "{:?}", s(bad));
    }
}

#[test]
fn comma_split() {
    let parts: Vec<_> = CommaSplit::new(b" a , \"b,c\" <d,e>;f , ,g,").map(s).collect();
    assert_eq!(parts, ["a", "\"b,c\" <d,e>;f", "", "g", ""]);
    let parts: Vec<_> = CommaSplit::new(b"\"esc\\\",\" x, \"open").map(s).collect();
    assert_eq!(parts, ["\"esc\\\",\" x", "\"open"]);
    assert_eq!(CommaSplit::new(b"").map(s).collect::<Vec<_>>(), [""]);
}

// -----------------------------------------------------------------
// Robustness: every prefix of every seed, and seeded random mutations.

const SEEDS: &[&[u8]] = &[
    INVITE,
    b"SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP p1:5060;branch=z9hG4bK1;received=1.2.3.4, SIP/2.0/UDP [::1]:5;rport=5\r\n\
Record-Route: <sip:p1;lr>, \"x, y\" <sip:p2;lr>\r\n\
From: \"A\" <sip:a@x>;tag=1\r\nTo: sip:b@y;tag=2\r\nCall-ID: c@h\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:b@10.0.0.2:5060;transport=udp>;expires=3600\r\nContent-Length: 0\r\n\r\n",
    b"REFER sip:sp3.k2@10.0.0.1 SIP/2.0\nv: SIP/2.0/UDP h\n ;branch=z9hG4bKsp3.1\n\
r: <sip:*68103@park.example.com?Replaces=a%40b%3Bto-tag%3D1>\nb: <sip:carol@h>\n\
o: refer;id=9\nRoute: <sip:r1;lr>,<sip:r2;lr>\nf: tel:+1555;tag=q\nt: <sip:x@y>\n\
i: z\nk: replaces\nExpires: 60\nMax-Forwards: 69\nl: 3\n\nabcEXTRA",
    b"REGISTER sip:example.com SIP/2.0\r\nContact: *\r\nm: <sip:a@b>;q=0.1, sip:c@d;expires=0\r\n\
Via  :  SIP / 2.0 / TCP  h : 1 ; branch = z9hG4bKw\r\nx: 1800;refresher=uac\r\nSubject: a,\r\n\tb\r\n\r\n",
];

#[test]
fn seeds_parse_and_every_prefix_is_safe() {
    for seed in SEEDS {
        let m = SipMessage::parse(seed).unwrap_or_else(|e| panic!("seed failed {e:?}: {:?}", s(seed)));
        exercise(&m);
        for cut in 0..seed.len() {
            if let Ok(m) = SipMessage::parse(&seed[..cut]) {
                exercise(&m);
            }
        }
    }
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

#[test]
fn mutations_never_panic() {
    const SPECIAL: &[u8] = b"\r\n \t:;,<>\"\\@[]?=/%*#0123456789\x00\xff";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0usize;
    let mut buf = Vec::with_capacity(4096);
    for _ in 0..20_000 {
        buf.clear();
        buf.extend_from_slice(SEEDS[rng.below(SEEDS.len())]);
        for _ in 0..1 + rng.below(4) {
            let len = buf.len();
            let pos = rng.below(len + 1);
            let byte = if rng.below(2) == 0 { SPECIAL[rng.below(SPECIAL.len())] } else { rng.next() as u8 };
            match rng.below(6) {
                0 if pos < len => buf[pos] = byte,
                1 => buf.insert(pos, byte),
                2 if pos < len => {
                    let end = (pos + 1 + rng.below(8)).min(len);
                    buf.drain(pos..end);
                }
                3 => buf.truncate(pos),
                4 if pos < len => {
                    let end = (pos + 1 + rng.below(40)).min(len);
                    let chunk = buf[pos..end].to_vec();
                    let at = rng.below(buf.len() + 1);
                    buf.splice(at..at, chunk);
                }
                _ => {
                    // Long digit runs to probe overflow.
                    let at = rng.below(len + 1);
                    buf.splice(at..at, std::iter::repeat_n(b'9', 1 + rng.below(30)));
                }
            }
        }
        if let Ok(m) = SipMessage::parse(&buf) {
            parsed += 1;
            exercise(&m);
        }
        // Typed parsers directly on arbitrary slices too.
        let a = rng.below(buf.len() + 1);
        let b = a + rng.below(buf.len() - a + 1);
        let slice = &buf[a..b];
        let _ = Uri::parse(slice);
        let _ = NameAddr::parse(slice).map(|n| (n.tag(), n.param(b"x")));
        let _ = Via::parse(slice).map(|v| v.param(b"x"));
        let _ = Contact::parse(slice);
        let _ = CSeq::parse(slice);
        let _ = CommaSplit::new(slice).count();
    }
    // The mutations must leave enough messages intact to exercise the
    // accessors, and break enough to exercise the errors.
    assert!(parsed > 2_000 && parsed < 19_000, "parsed {parsed} of 20000");
}
