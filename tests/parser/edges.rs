//! RFC 3261 corners that real equipment produces, one message each.

use crate::util::{show, text};
use sipark::proto::sip::parse::{Contact, HeaderName, Method, NameAddr, ParseError, SipMessage, Uri};

fn msg(headers: &str) -> Vec<u8> {
    let mut s = String::from("OPTIONS sip:acme.example SIP/2.0\r\n");
    for l in headers.lines() {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s.into_bytes()
}

const MIN: &str = "Via: SIP/2.0/UDP 192.0.2.8:5060;branch=z9hG4bKedge\n\
                   From: <sip:a@acme.example>;tag=f1\n\
                   To: <sip:b@acme.example>\n\
                   Call-ID: edge@192.0.2.8\n\
                   CSeq: 1 OPTIONS";

fn parse(b: &[u8]) -> SipMessage<'_> {
    SipMessage::parse(b).unwrap_or_else(|e| panic!("{e:?} on:\n{}", show(b)))
}

fn t(b: Option<&[u8]>) -> Option<String> {
    b.map(text)
}

/// RFC 3261 20.10: in an addr-spec without `<>`, parameters after the URI
/// are header parameters (a tag, an expires), not URI parameters.
#[test]
fn addr_spec_params_belong_to_the_header() {
    let na = NameAddr::parse(b"sip:101@acme.example;tag=abc123").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(t(na.tag()).as_deref(), Some("abc123"));
    assert_eq!(text(na.uri.raw), "sip:101@acme.example");
    assert_eq!(na.uri.param(b"tag"), None);

    let b = msg(&format!(
        "{}\nContact: sip:103@192.0.2.34:5062;expires=60",
        MIN.replace("From: <sip:a@acme.example>;tag=f1", "From: sip:a@acme.example;tag=f1")
    ));
    let m = parse(&b);
    let from = m.from_hdr().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(t(from.tag()).as_deref(), Some("f1"));
    let c: Vec<_> = m.contacts().collect();
    let Some(Ok(Contact::Addr(c))) = c.first().copied() else { panic!("contacts: {c:?}") };
    assert_eq!(c.param(b"expires"), Some(Some(&b"60"[..])));
    assert_eq!(c.uri.port, Some(5062));
}

#[test]
fn uri_params_and_header_params_are_kept_apart() {
    let na = NameAddr::parse(b"<sip:103@192.0.2.34;expires=5;transport=udp>;expires=60;q=0.5")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(na.param(b"expires"), Some(Some(&b"60"[..])));
    assert_eq!(na.uri.param(b"expires"), Some(Some(&b"5"[..])));
    assert_eq!(na.param(b"transport"), None);
    assert_eq!(na.param(b"q"), Some(Some(&b"0.5"[..])));
}

#[test]
fn display_names() {
    for (raw, display, uri) in [
        (&b"Bob Smith <sip:102@acme.example>"[..], Some("Bob Smith"), "sip:102@acme.example"),
        (b"\"a <b>; c\" <sip:102@acme.example>", Some("a <b>; c"), "sip:102@acme.example"),
        (b"<sip:102@acme.example>", None, "sip:102@acme.example"),
        (b"<sips:102@acme.example:5061>", None, "sips:102@acme.example:5061"),
    ] {
        let na = NameAddr::parse(raw).unwrap_or_else(|e| panic!("{}: {e:?}", show(raw)));
        assert_eq!(t(na.display).as_deref(), display, "{}", show(raw));
        assert_eq!(text(na.uri.raw), uri, "{}", show(raw));
    }
    // An empty quoted name: either reading ("no name" or "empty name") is fine.
    let na = NameAddr::parse(b"\"\" <sip:102@acme.example>").unwrap_or_else(|e| panic!("{e:?}"));
    assert!(na.display.is_none_or(<[u8]>::is_empty), "{:?}", na.display);
    assert_eq!(text(na.uri.raw), "sip:102@acme.example");
}

#[test]
fn uri_forms() {
    let u = Uri::parse(b"sip:alice@acme.example:5070;transport=udp;lr?Subject=hi&Priority=urgent")
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(text(u.scheme), "sip");
    assert_eq!(t(u.user).as_deref(), Some("alice"));
    assert_eq!(text(u.host), "acme.example");
    assert_eq!(u.port, Some(5070));
    assert_eq!(text(u.params), ";transport=udp;lr");
    assert_eq!(u.param(b"lr"), Some(None));
    assert_eq!(t(u.headers).as_deref(), Some("Subject=hi&Priority=urgent"));

    let u = Uri::parse(b"sip:acme.example").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(u.user, None);
    assert_eq!(text(u.host), "acme.example");

    // Schemes are case-insensitive (RFC 3261 19.1.4).
    let u = Uri::parse(b"SIP:103@Acme.Example").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(text(u.host), "Acme.Example");

    for bad in [
        &b""[..],
        b"sip:",
        b"http:",
        b"sip:alice@",
        b"sip:alice@acme.example:99999",
        b"sip:alice@acme.example:",
        b"sip:[2001:db8::1",
    ] {
        assert!(Uri::parse(bad).is_err(), "Uri::parse accepted {}", show(bad));
    }
}

/// RFC 3261 7.1: "The SIP-Version string is case-insensitive".
#[test]
fn sip_version_is_case_insensitive() {
    let b = msg(MIN);
    let b = text(&b).replacen("SIP/2.0\r\n", "sip/2.0\r\n", 1).into_bytes();
    let m = parse(&b);
    assert_eq!(m.method(), Some(Method::Options));
}

/// Header names, compact ones included, are case-insensitive (RFC 3261 7.3.1).
#[test]
fn compact_names_are_case_insensitive() {
    let b = msg("V: SIP/2.0/UDP 192.0.2.8:5060;branch=z9hG4bKedge\n\
                 F: <sip:a@acme.example>;tag=f1\n\
                 T: <sip:b@acme.example>\n\
                 I: edge@192.0.2.8\n\
                 CSEQ: 1 OPTIONS\n\
                 M: <sip:a@192.0.2.8>");
    let m = parse(&b);
    assert_eq!(m.call_id().map(text).ok().as_deref(), Some("edge@192.0.2.8"));
    assert_eq!(m.top_via().ok().and_then(|v| v.branch).map(text).as_deref(), Some("z9hG4bKedge"));
    assert_eq!(m.contacts().count(), 1);
    assert_eq!(m.cseq().map(|c| c.seq), Ok(1));
}

#[test]
fn tabs_and_trailing_whitespace_are_lws() {
    let b = msg("Via:\tSIP/2.0/UDP\t192.0.2.8:5060;branch=z9hG4bKedge\n\
                 From:\t<sip:a@acme.example>;tag=f1\n\
                 To: <sip:b@acme.example>\n\
                 Call-ID: edge@192.0.2.8   \n\
                 CSeq:\t7\tOPTIONS");
    let m = parse(&b);
    assert_eq!(m.call_id().map(text).ok().as_deref(), Some("edge@192.0.2.8"));
    let c = m.cseq().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!((c.seq, c.method), (7, Method::Options));
    assert_eq!(m.top_via().map(|v| v.port), Ok(Some(5060)));
}

#[test]
fn param_names_are_case_insensitive() {
    let b = msg(&MIN
        .replace(";branch=z9hG4bKedge", ";BRANCH=z9hG4bKedge;RPort;Received=192.0.2.9")
        .replace(";tag=f1", ";TAG=f1"));
    let m = parse(&b);
    let v = m.top_via().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(t(v.branch).as_deref(), Some("z9hG4bKedge"));
    assert_eq!(v.rport, Some(None));
    assert_eq!(t(v.received).as_deref(), Some("192.0.2.9"));
    assert_eq!(m.from_hdr().ok().and_then(|f| f.tag()).map(text).as_deref(), Some("f1"));
}

#[test]
fn star_contact_with_spaces() {
    let b = msg(&format!("{MIN}\nContact:   *   \nExpires: 0"));
    let m = parse(&b);
    let c: Vec<_> = m.contacts().collect();
    assert_eq!(c, [Ok(Contact::Star)]);
}

#[test]
fn cseq_method_is_case_sensitive() {
    let b = msg(&MIN.replace("CSeq: 1 OPTIONS", "CSeq: 1 options"));
    let m = parse(&b);
    assert_eq!(m.cseq().map(|c| c.method), Ok(Method::Other(b"options")));
}

#[test]
fn empty_call_id_is_invalid() {
    let b = msg(&MIN.replace("Call-ID: edge@192.0.2.8", "Call-ID:"));
    let m = parse(&b);
    assert!(m.call_id().is_err(), "empty Call-ID accepted");
}

#[test]
fn numeric_headers_reject_overflow() {
    let b = msg(&format!("{MIN}\nMax-Forwards: 99999999999\nExpires: 4294967296"));
    let m = parse(&b);
    assert!(matches!(m.max_forwards(), Some(Err(_))), "{:?}", m.max_forwards());
    assert!(matches!(m.expires(), Some(Err(_))), "{:?}", m.expires());
    let b = msg(&format!("{MIN}\nExpires: 0060"));
    assert_eq!(parse(&b).expires(), Some(Ok(60)));
}

#[test]
fn header_lookup_returns_the_first_occurrence() {
    let b = msg(&format!("{MIN}\nSupported: path\nSupported: timer"));
    let m = parse(&b);
    assert_eq!(t(m.header(HeaderName::Supported)).as_deref(), Some("path"));
    assert_eq!(m.header(HeaderName::ReferTo), None);
    // A header that may appear once does not get a second value (RFC 4475 multi01).
    let b = msg(&format!("{MIN}\nEvent: park-info\nEvent: dialog"));
    let e = SipMessage::parse(&b).err();
    assert_eq!(e, Some(ParseError::Duplicate(HeaderName::Event)), "{}", show(&b));
}

#[test]
fn ipv6_via_received_and_uri() {
    let b = msg(&MIN.replace(
        "Via: SIP/2.0/UDP 192.0.2.8:5060;branch=z9hG4bKedge",
        "Via: SIP/2.0/UDP [2001:db8::8]:5070;branch=z9hG4bKedge;received=2001:db8::9;rport=5071",
    ));
    let m = parse(&b);
    let v = m.top_via().unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(text(crate::util::unbracket(v.host)), "2001:db8::8");
    assert_eq!(v.port, Some(5070));
    assert_eq!(t(v.received).as_deref(), Some("2001:db8::9"));
    assert_eq!(v.rport, Some(Some(5071)));
    let u = Uri::parse(b"sip:[2001:db8::8]").unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(text(crate::util::unbracket(u.host)), "2001:db8::8");
    assert_eq!(u.port, None);
}

/// Folding (RFC 3261 7.3.1) inside typed values: a Via split after `;`, and
/// a Contact list split after the comma.
#[test]
fn folding_inside_typed_values() {
    let b =
        msg("Via: SIP/2.0/UDP 192.0.2.15:5060;\n  branch=z9hG4bKfold1,\n SIP/2.0/UDP 192.0.2.16;branch=z9hG4bKfold2\n\
                 From: <sip:a@acme.example>;tag=f1\n\
                 To: <sip:b@acme.example>\n\
                 Call-ID: edge@192.0.2.8\n\
                 CSeq: 1 OPTIONS\n\
                 Contact: <sip:a@192.0.2.15>;expires=30,\n\t<sip:a@192.0.2.16>;expires=40");
    let m = parse(&b);
    let branches: Vec<_> = m.vias().map(|v| v.ok().and_then(|v| v.branch).map(text)).collect();
    assert_eq!(branches, [Some(String::from("z9hG4bKfold1")), Some(String::from("z9hG4bKfold2"))]);
    let expires: Vec<_> = m
        .contacts()
        .map(|c| match c {
            Ok(Contact::Addr(a)) => a.param(b"expires").flatten().map(text),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(expires, [Some(String::from("30")), Some(String::from("40"))]);
}

#[test]
fn content_length_overflow_is_rejected() {
    let b = msg(MIN);
    let b = text(&b).replace("Content-Length: 0", "Content-Length: 99999999999").into_bytes();
    let r = SipMessage::parse(&b)
        .err()
        .or_else(|| SipMessage::parse(&b).ok().and_then(|m| m.content_length()).and_then(Result::err));
    assert!(
        matches!(
            r,
            Some(sipark::proto::sip::parse::ParseError::Invalid(HeaderName::ContentLength))
                | Some(sipark::proto::sip::parse::ParseError::BodyTruncated)
        ),
        "{r:?}"
    );
}
