//! Broken messages give the right `ParseError` variant; start-line and body
//! edge cases.

use crate::util::show;
use sipark::proto::sip::parse::{HeaderName, MAX_HEADERS, Method, ParseError, SipMessage, StartLine, Uri};

const BASE: &[&str] = &[
    "INVITE sip:*68103@acme.example SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKerr01;rport",
    "Max-Forwards: 70",
    "From: \"Alice\" <sip:101@acme.example>;tag=e1",
    "To: <sip:*68103@acme.example>",
    "Call-ID: err-0001@192.0.2.21",
    "CSeq: 1 INVITE",
    "Contact: <sip:101@192.0.2.21:5060>",
    "Expires: 120",
    "Content-Type: application/sdp",
];
const BODY: &str =
    "v=0\r\no=- 1 1 IN IP4 192.0.2.21\r\ns=-\r\nc=IN IP4 192.0.2.21\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

/// Builds a message from `BASE` after `edit`, with a correct Content-Length
/// appended unless `edit` left one in.
fn build(edit: impl FnOnce(&mut Vec<String>), body: &str) -> Vec<u8> {
    let mut lines: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
    edit(&mut lines);
    if !lines.iter().any(|l| l.to_ascii_lowercase().starts_with("content-length")) {
        lines.push(format!("Content-Length: {}", body.len()));
    }
    let mut out = String::new();
    for l in &lines {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

fn replace(prefix: &'static str, with: &'static str) -> impl FnOnce(&mut Vec<String>) {
    move |lines| {
        let i = lines
            .iter()
            .position(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix}"));
        lines[i] = with.to_string();
    }
}

fn remove(prefix: &'static str) -> impl FnOnce(&mut Vec<String>) {
    move |lines| lines.retain(|l| !l.starts_with(prefix))
}

fn start(line: &'static str) -> impl FnOnce(&mut Vec<String>) {
    move |lines| lines[0] = line.to_string()
}

/// The first error a receiver would meet: the parse itself, then the
/// mandatory headers and the numeric ones, then every Via and Contact value.
fn first_error(buf: &[u8]) -> Option<ParseError> {
    let m = match SipMessage::parse(buf) {
        Err(e) => return Some(e),
        Ok(m) => m,
    };
    m.call_id()
        .err()
        .or(m.cseq().err())
        .or(m.top_via().err())
        .or(m.from_hdr().err())
        .or(m.to_hdr().err())
        .or(m.content_length().and_then(Result::err))
        .or(m.max_forwards().and_then(Result::err))
        .or(m.expires().and_then(Result::err))
        .or(m.vias().find_map(Result::err))
        .or(m.contacts().find_map(Result::err))
}

#[test]
fn base_message_is_valid() {
    let b = build(|_| {}, BODY);
    assert_eq!(first_error(&b), None, "{}", show(&b));
    let m = SipMessage::parse(&b).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(m.body(), BODY.as_bytes());
    assert_eq!(m.expires(), Some(Ok(120)));
}

use HeaderName as H;
use ParseError as E;

#[test]
fn broken_messages_give_the_right_error() {
    let pad = |n: usize| {
        move |lines: &mut Vec<String>| {
            for i in 0..n {
                lines.push(format!("X-Pad-{i}: {i}"));
            }
        }
    };
    // (what, message, acceptable errors)
    let cases: Vec<(&str, Vec<u8>, &[ParseError])> = vec![
        ("truncated body", build(replace("Content-Type", "Content-Length: 300"), BODY), &[E::BodyTruncated]),
        (
            "body one byte short",
            {
                let mut b = build(|_| {}, BODY);
                b.pop();
                b
            },
            &[E::BodyTruncated],
        ),
        (
            "no blank line",
            {
                let mut b = build(|_| {}, "");
                b.truncate(b.len() - 2);
                b
            },
            &[E::Incomplete],
        ),
        (
            "no blank line, no final CRLF",
            {
                let mut b = build(|_| {}, "");
                b.truncate(b.len() - 4);
                b
            },
            &[E::Incomplete],
        ),
        (
            "cut inside a header",
            b"INVITE sip:*68103@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.".to_vec(),
            &[E::Incomplete],
        ),
        ("start line: one token", build(start("HELLO"), BODY), &[E::StartLine]),
        // A parser may skip leading CRLFs (RFC 3261 7.5) and then meet `Via: ...`
        // as its start line, whose third word is no SIP version.
        ("start line: empty", build(start(""), BODY), &[E::StartLine, E::Version]),
        ("request version SIP/3.0", build(start("INVITE sip:*68103@acme.example SIP/3.0"), BODY), &[E::Version]),
        ("request version HTTP/1.1", build(start("OPTIONS sip:acme.example HTTP/1.1"), BODY), &[E::Version]),
        ("status code four digits", build(start("SIP/2.0 2000 OK"), BODY), &[E::StatusCode]),
        ("status code with a letter", build(start("SIP/2.0 2x0 OK"), BODY), &[E::StatusCode]),
        ("status code two digits", build(start("SIP/2.0 20 OK"), BODY), &[E::StatusCode]),
        ("CSeq not a number", build(replace("CSeq", "CSeq: abc INVITE"), BODY), &[E::Invalid(H::CSeq)]),
        ("CSeq without method", build(replace("CSeq", "CSeq: 1"), BODY), &[E::Invalid(H::CSeq)]),
        ("CSeq overflows 32 bits", build(replace("CSeq", "CSeq: 4294967296 INVITE"), BODY), &[E::Invalid(H::CSeq)]),
        ("CSeq negative", build(replace("CSeq", "CSeq: -1 INVITE"), BODY), &[E::Invalid(H::CSeq)]),
        ("CSeq empty", build(replace("CSeq", "CSeq:"), BODY), &[E::Invalid(H::CSeq)]),
        ("Via garbage", build(replace("Via", "Via: garbage"), BODY), &[E::Invalid(H::Via)]),
        ("Via without sent-by", build(replace("Via", "Via: SIP/2.0/UDP"), BODY), &[E::Invalid(H::Via)]),
        (
            "Via without transport",
            build(replace("Via", "Via: SIP/2.0 192.0.2.21:5060;branch=z9hG4bKx"), BODY),
            &[E::Invalid(H::Via)],
        ),
        (
            "Via port out of range",
            build(replace("Via", "Via: SIP/2.0/UDP 192.0.2.21:70000;branch=z9hG4bKx"), BODY),
            &[E::Invalid(H::Via)],
        ),
        (
            "Via port not numeric",
            build(replace("Via", "Via: SIP/2.0/UDP 192.0.2.21:50a0;branch=z9hG4bKx"), BODY),
            &[E::Invalid(H::Via)],
        ),
        (
            "second Via value bad",
            build(replace("Via", "Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKx, nonsense"), BODY),
            &[E::Invalid(H::Via)],
        ),
        ("header without colon", build(replace("Max-Forwards", "Max-Forwards 70"), BODY), &[E::HeaderLine]),
        ("header name with a space inside", build(replace("Max-Forwards", "Max Forwards: 70"), BODY), &[E::HeaderLine]),
        ("empty header name", build(replace("Max-Forwards", ": 70"), BODY), &[E::HeaderLine]),
        ("65 header lines", build(pad(MAX_HEADERS + 1 - (BASE.len() - 1) - 1), BODY), &[E::TooManyHeaders]),
        ("100 header lines", build(pad(100), BODY), &[E::TooManyHeaders]),
        ("missing Call-ID", build(remove("Call-ID"), BODY), &[E::Missing(H::CallId)]),
        ("missing CSeq", build(remove("CSeq"), BODY), &[E::Missing(H::CSeq)]),
        ("missing Via", build(remove("Via"), BODY), &[E::Missing(H::Via)]),
        ("missing From", build(remove("From"), BODY), &[E::Missing(H::From)]),
        ("missing To", build(remove("To"), BODY), &[E::Missing(H::To)]),
        (
            "Content-Length not a number",
            build(replace("Content-Type", "Content-Length: abc"), BODY),
            &[E::Invalid(H::ContentLength)],
        ),
        (
            "Content-Length negative",
            build(replace("Content-Type", "Content-Length: -5"), BODY),
            &[E::Invalid(H::ContentLength)],
        ),
        (
            "From with unclosed <",
            build(replace("From", "From: <sip:101@acme.example;tag=e1"), BODY),
            &[E::Invalid(H::From)],
        ),
        ("To that is no URI", build(replace("To", "To: <nonsense>"), BODY), &[E::Invalid(H::To)]),
        (
            "Max-Forwards not a number",
            build(replace("Max-Forwards", "Max-Forwards: many"), BODY),
            &[E::Invalid(H::MaxForwards)],
        ),
        ("Expires not a number", build(replace("Expires", "Expires: soon"), BODY), &[E::Invalid(H::Expires)]),
        (
            "Contact unclosed",
            build(replace("Contact", "Contact: <sip:101@192.0.2.21:5060"), BODY),
            &[E::Invalid(H::Contact)],
        ),
    ];
    let mut failures = Vec::new();
    for (what, msg, want) in &cases {
        let got = first_error(msg);
        if !got.is_some_and(|g| want.contains(&g)) {
            failures.push(format!("{what}: got {got:?}, want one of {want:?}\n  input: {}", show(msg)));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn exactly_max_headers_is_accepted() {
    let b = build(
        |lines| {
            // BASE's headers (all but its start line), Content-Length and the
            // padding make MAX_HEADERS.
            for i in 0..MAX_HEADERS - (BASE.len() - 1) - 1 {
                lines.push(format!("X-Pad-{i}: {i}"));
            }
        },
        BODY,
    );
    let m = SipMessage::parse(&b).unwrap_or_else(|e| panic!("{MAX_HEADERS} headers: {e:?}"));
    assert_eq!(m.headers().len(), MAX_HEADERS);
    assert_eq!(m.body(), BODY.as_bytes());
}

#[test]
fn unparseable_request_uri_is_reported() {
    let b = build(start("INVITE not-a-uri SIP/2.0"), BODY);
    match SipMessage::parse(&b) {
        Err(e) => assert_eq!(e, E::RequestUri, "{}", show(&b)),
        Ok(m) => {
            let raw = m.request_uri().unwrap_or_else(|| panic!("request without URI"));
            assert!(Uri::parse(raw).is_err(), "Uri::parse accepted {}", show(raw));
        }
    }
}

#[test]
fn empty_and_junk_datagrams_are_errors() {
    for junk in [
        &b""[..],
        b"\r\n",
        b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\0\0\0\0",
        b"SIP/2.0\r\n\r\n",
        b"INVITE\r\n\r\n",
    ] {
        assert!(SipMessage::parse(junk).is_err(), "accepted {}", show(junk));
    }
}

#[test]
fn reason_phrases() {
    assert_eq!(E::Invalid(H::Via).reason(), "Bad Via header");
    assert_eq!(E::Missing(H::CallId).reason(), "Missing Call-ID header");
    let all = [
        E::StartLine,
        E::RequestUri,
        E::Version,
        E::StatusCode,
        E::HeaderLine,
        E::TooManyHeaders,
        E::Incomplete,
        E::BodyTruncated,
        E::Missing(H::Via),
        E::Missing(H::From),
        E::Missing(H::To),
        E::Missing(H::CSeq),
        E::Invalid(H::CSeq),
        E::Invalid(H::From),
        E::Invalid(H::Contact),
        E::Invalid(H::ContentLength),
    ];
    for e in all {
        let r = e.reason();
        assert!(!r.is_empty(), "{e:?}: empty reason");
        // It goes on the wire as a 400 reason phrase (RFC 3261 25.1).
        assert!(
            r.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "{e:?}: reason {r:?} is not a safe reason phrase"
        );
    }
    // Errors about a header name the header, so they differ from each other.
    let named: Vec<_> = all.iter().filter(|e| matches!(e, E::Missing(_) | E::Invalid(_))).collect();
    let distinct: std::collections::HashSet<_> = named.iter().map(|e| e.reason()).collect();
    assert_eq!(distinct.len(), named.len(), "reasons should name the header: {named:?}");
}

#[test]
fn start_line_methods_and_responses() {
    for (name, want) in [
        ("INVITE", Method::Invite),
        ("ACK", Method::Ack),
        ("BYE", Method::Bye),
        ("CANCEL", Method::Cancel),
        ("REGISTER", Method::Register),
        ("OPTIONS", Method::Options),
        ("NOTIFY", Method::Notify),
        ("SUBSCRIBE", Method::Subscribe),
        ("REFER", Method::Refer),
        ("INFO", Method::Info),
        ("UPDATE", Method::Update),
        ("PRACK", Method::Prack),
        ("MESSAGE", Method::Message),
        ("PUBLISH", Method::Publish),
        ("FOO", Method::Other(b"FOO")),
    ] {
        let line = format!("{name} sip:acme.example SIP/2.0");
        let b = build(|l| l[0] = line.clone(), BODY);
        let m = SipMessage::parse(&b).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(m.method(), Some(want), "{name}");
        assert_eq!(show(want.as_bytes()), name);
        assert_eq!(m.request_uri(), Some(&b"sip:acme.example"[..]));
    }
    // Method names are case-sensitive (RFC 3261 7.1): `invite` is not INVITE.
    let b = build(start("invite sip:acme.example SIP/2.0"), BODY);
    if let Ok(m) = SipMessage::parse(&b) {
        assert_eq!(m.method(), Some(Method::Other(b"invite")));
    }
    let b = build(start("SIP/2.0 480 Temporarily Unavailable"), BODY);
    let m = SipMessage::parse(&b).unwrap_or_else(|e| panic!("480: {e:?}"));
    assert_eq!(m.start_line(), StartLine::Response { code: 480, reason: b"Temporarily Unavailable" });
}

#[test]
fn body_follows_content_length() {
    // Extra bytes after the declared body are not part of it.
    let mut b = build(|_| {}, BODY);
    b.extend_from_slice(b"trailing junk");
    let m = SipMessage::parse(&b).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(m.body(), BODY.as_bytes());

    // Content-Length: 0 with bytes after the blank line: empty body.
    let mut b = build(remove("Content-Type"), "");
    b.extend_from_slice(b"v=0\r\n");
    let m = SipMessage::parse(&b).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(m.body(), b"");

    // No Content-Length (allowed over UDP): the rest of the datagram.
    let b = format!("{}\r\n\r\n{BODY}", BASE.join("\r\n")).into_bytes();
    let m = SipMessage::parse(&b).unwrap_or_else(|e| panic!("{e:?}: {}", show(&b)));
    assert_eq!(m.content_length(), None);
    assert_eq!(m.body(), BODY.as_bytes());
}
