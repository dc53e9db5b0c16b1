//! Typed accessors on selected corpus files: the parts the engine relies on
//! (park/retrieve URIs, Referred-By, contacts and their params, compact and
//! odd forms, IPv6, quoted display names, multi-value Via).

use crate::expect::corpus_file;
use crate::util::{ok, parse_ok, text, unbracket};
use sipark::proto::route::{Owner, owner, shard_of};
use sipark::proto::sip::parse::{Contact, HeaderName, NameAddr, SipMessage, Uri, Via};

fn contacts<'a>(name: &str, m: &SipMessage<'a>) -> Vec<Contact<'a>> {
    m.contacts().enumerate().map(|(i, c)| c.unwrap_or_else(|e| panic!("{name}: Contact #{i}: {e:?}"))).collect()
}

fn addr<'a>(name: &str, c: Contact<'a>) -> NameAddr<'a> {
    match c {
        Contact::Addr(a) => a,
        Contact::Star => panic!("{name}: unexpected Contact: *"),
    }
}

fn vias<'a>(name: &str, m: &SipMessage<'a>) -> Vec<Via<'a>> {
    m.vias().enumerate().map(|(i, v)| v.unwrap_or_else(|e| panic!("{name}: Via #{i}: {e:?}"))).collect()
}

fn s(b: Option<&[u8]>) -> Option<String> {
    b.map(text)
}

#[test]
fn park_invite_referred_by_and_feature_code() {
    let name = "07_invite_park.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let ruri = ok(name, "Uri::parse(ruri)", Uri::parse(m.request_uri().unwrap_or_default()));
    assert_eq!(text(ruri.scheme), "sip");
    assert_eq!(s(ruri.user).as_deref(), Some("*68103"));
    assert_eq!(text(ruri.host), "acme.example");
    assert_eq!(ruri.port, None);
    let rb = m.referred_by().unwrap_or_else(|| panic!("{name}: no Referred-By"));
    let rb = ok(name, "referred_by()", rb);
    assert_eq!(s(rb.display).as_deref(), Some("Bob"));
    assert_eq!(s(rb.uri.user).as_deref(), Some("102"));
    assert_eq!(text(rb.uri.host), "acme.example");
    let from = ok(name, "from_hdr()", m.from_hdr());
    assert_eq!(s(from.display).as_deref(), Some("Alice"));
    assert_eq!(text(from.uri.raw), "sip:101@acme.example");
    assert_eq!(m.content_type().map(text).as_deref(), Some("application/sdp"));
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    assert!(m.refer_to().is_none(), "{name}: no Refer-To in this message");
    assert_eq!(owner(&m, 4), Owner::Shard(shard_of(b"acme.example", 4)));
}

#[test]
fn retrieve_invite_call_param() {
    let name = "08_invite_retrieve.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let ruri = ok(name, "Uri::parse(ruri)", Uri::parse(m.request_uri().unwrap_or_default()));
    assert_eq!(s(ruri.user).as_deref(), Some("*88103"));
    assert_eq!(text(ruri.host), "acme.example");
    assert_eq!(text(ruri.params), ";call=k3x9f2");
    assert_eq!(ruri.param(b"call"), Some(Some(&b"k3x9f2"[..])));
    assert_eq!(ruri.param(b"CALL"), Some(Some(&b"k3x9f2"[..])), "param names are case-insensitive");
    assert_eq!(ruri.param(b"cal"), None);
    assert_eq!(ruri.param(b"user"), None);
    let to = ok(name, "to_hdr()", m.to_hdr());
    assert_eq!(to.uri.param(b"call"), Some(Some(&b"k3x9f2"[..])), "To URI param inside <>");
    assert_eq!(to.tag(), None);
    assert_eq!(text(to.params), "", "To has no header params");
}

#[test]
fn kamailio_proxied_routes_and_vias() {
    let name = "06_invite_kamailio_proxied.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let rr: Vec<_> = m.record_routes().map(|r| ok(name, "record_routes()", r)).collect();
    let rr_uris: Vec<_> = rr.iter().map(|r| text(r.uri.raw)).collect();
    assert_eq!(
        rr_uris,
        [
            "sip:198.51.100.2;lr;ftag=Ds8Lm2Qp;did=4f1.b2a1",
            "sip:192.0.2.1;r2=on;lr;ftag=Ds8Lm2Qp;did=4f1.b2a1",
            "sip:198.51.100.1;r2=on;lr;ftag=Ds8Lm2Qp;did=4f1.b2a1",
        ]
    );
    assert_eq!(rr[0].uri.param(b"lr"), Some(None), "`lr` is a flag param");
    assert_eq!(rr[1].uri.param(b"r2"), Some(Some(&b"on"[..])));
    let routes: Vec<_> = m.routes().map(|r| ok(name, "routes()", r)).collect();
    assert_eq!(routes.len(), 1);
    assert_eq!(text(routes[0].uri.host), "192.0.2.90");
    let v = vias(name, &m);
    assert_eq!(v.len(), 3);
    assert_eq!(text(v[0].host), "198.51.100.2");
    assert_eq!(v[0].port, None);
    assert_eq!(v[0].rport, None);
    assert_eq!(text(v[2].host), "192.0.2.77");
    assert_eq!(v[2].port, Some(5060));
    assert_eq!(s(v[2].received).as_deref(), Some("192.0.2.77"));
    assert_eq!(v[2].rport, Some(Some(5060)));
    assert_eq!(s(v[2].branch).as_deref(), Some("z9hG4bKPjx7Ug3Wc0oNf2"));
    let c = addr(name, contacts(name, &m)[0]);
    assert_eq!(s(c.display).as_deref(), Some("Grace"));
    assert_eq!(c.uri.port, Some(5060));
    assert_eq!(c.uri.param(b"ob"), Some(None));
    assert_eq!(m.max_forwards(), Some(Ok(68)));
}

#[test]
fn register_contact_params_with_quoted_angle_brackets() {
    let name = "10_register_contact_params.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let c = contacts(name, &m);
    assert_eq!(c.len(), 1);
    let c = addr(name, c[0]);
    assert_eq!(text(c.uri.raw), "sip:103@192.0.2.34:5062;transport=udp");
    assert_eq!(c.uri.port, Some(5062));
    assert_eq!(c.uri.param(b"transport"), Some(Some(&b"udp"[..])));
    assert_eq!(c.param(b"expires"), Some(Some(&b"600"[..])));
    assert_eq!(c.param(b"reg-id"), Some(Some(&b"1"[..])), "param after a quoted value holding <>");
    assert!(c.param(b"+sip.instance").is_some_and(|v| v.is_some_and(|v| {
        v.windows(b"urn:uuid:00000000-0000-1000-8000-805ec0a1b2c3".len())
            .any(|w| w == b"urn:uuid:00000000-0000-1000-8000-805ec0a1b2c3")
    })));
    assert_eq!(m.expires(), None, "no Expires header");
    let to = ok(name, "to_hdr()", m.to_hdr());
    assert_eq!(to.uri.port, Some(5060));
    assert_eq!(owner(&m, 4), Owner::Shard(shard_of(b"acme.example", 4)));
}

#[test]
fn register_multiple_contacts_across_lines() {
    let name = "11_register_multi_contact.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let c: Vec<_> = contacts(name, &m).into_iter().map(|c| addr(name, c)).collect();
    assert_eq!(c.len(), 3);
    assert_eq!(text(c[0].uri.host), "192.0.2.41");
    assert_eq!(c[0].param(b"q"), Some(Some(&b"0.9"[..])));
    assert_eq!(c[0].param(b"expires"), Some(Some(&b"1200"[..])));
    assert_eq!(text(c[1].uri.host), "192.0.2.42");
    assert_eq!(c[1].uri.port, Some(5070));
    assert_eq!(c[1].param(b"EXPIRES"), Some(Some(&b"600"[..])));
    assert_eq!(s(c[2].display).as_deref(), Some("Desk, 104"), "comma inside a quoted display name");
    assert_eq!(text(unbracket(c[2].uri.host)), "2001:db8::41");
    assert_eq!(c[2].uri.port, Some(5060));
    assert_eq!(c[2].param(b"expires"), Some(Some(&b"300"[..])));
    assert_eq!(m.expires(), Some(Ok(1800)));
}

#[test]
fn register_star_contact() {
    let name = "12_register_star.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    assert_eq!(contacts(name, &m), [Contact::Star]);
    assert_eq!(m.expires(), Some(Ok(0)));
}

#[test]
fn register_quoted_param_with_commas_is_one_contact() {
    let name = "13_register_auth.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let c = contacts(name, &m);
    assert_eq!(c.len(), 1, "commas inside methods=\"...\" must not split the Contact");
    let c = addr(name, c[0]);
    assert_eq!(c.param(b"expires"), Some(Some(&b"0"[..])));
    assert_eq!(text(c.uri.raw), "sip:101@192.0.2.21:5060");
    assert_eq!(m.expires(), Some(Ok(3600)));
}

#[test]
fn notify_park_info() {
    let name = "14_notify_park_info.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    assert_eq!(m.event().map(text).as_deref(), Some("park-info"));
    assert_eq!(m.header(HeaderName::SubscriptionState).map(text).as_deref(), Some("active"));
    assert_eq!(m.content_type().map(text).as_deref(), Some("application/park-info+xml"));
    assert!(m.body().starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<park-info "));
    assert!(m.body().ends_with(b"</park-info>\r\n"));
    let c = addr(name, contacts(name, &m)[0]);
    assert_eq!(s(c.uri.user).as_deref(), Some("sp2.sipark"));
    assert_eq!(s(m.top_via().ok().and_then(|v| v.branch)).as_deref(), Some("z9hG4bKsp2.4f1a9c0e77d3b210"));
    assert_eq!(m.top_via().ok().and_then(|v| v.rport), Some(None), "bare ;rport");
}

#[test]
fn subscribe_event_token_only() {
    let name = "15_subscribe.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    assert_eq!(m.event().map(text).as_deref(), Some("park-info"), "event() stops at ';'");
    assert_eq!(m.header(HeaderName::Event).map(text).as_deref(), Some("park-info;id=1"));
    assert_eq!(m.expires(), Some(Ok(3600)));
    let name = "44_notify_message_summary.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    assert_eq!(m.event().map(text).as_deref(), Some("message-summary"));
}

#[test]
fn routing_of_messages_addressed_to_sipark() {
    for (name, want) in [
        ("17_bye_to_sipark.sip", Owner::Shard(2)),
        ("19_ack_in_dialog.sip", Owner::Shard(1)),
        ("32_resp_503_retry.sip", Owner::Shard(3)),
        ("34_resp_200_notify.sip", Owner::Shard(1)),
        // A response whose branch is not sipark's: no shard can be named.
        ("27_resp_200_invite_sdp.sip", Owner::Local),
        // REGISTER routes by the To host, lower-cased header names or not.
        ("38_lowercase_headers.sip", Owner::Shard(shard_of(b"acme.example", 4))),
    ] {
        let buf = corpus_file(name);
        let m = parse_ok(name, &buf);
        assert_eq!(owner(&m, 4), want, "{name}: owner(&msg, 4)");
    }
    let name = "19_ack_in_dialog.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let r: Vec<_> = m.routes().map(|r| ok(name, "routes()", r)).collect();
    assert_eq!(r.len(), 2);
    assert_eq!(text(r[1].uri.host), "192.0.2.1");
    assert_eq!(s(r[0].uri.params.get(..4)).as_deref(), Some(";r2="));
}

#[test]
fn refer_to_and_referred_by() {
    let name = "22_refer_park.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let rt = ok(name, "refer_to()", m.refer_to().unwrap_or_else(|| panic!("{name}: no Refer-To")));
    assert_eq!(text(rt.uri.raw), "sip:*68103@acme.example");
    assert_eq!(s(rt.uri.user).as_deref(), Some("*68103"));
    let rb = ok(name, "referred_by()", m.referred_by().unwrap_or_else(|| panic!("{name}: no Referred-By")));
    assert_eq!(s(rb.display).as_deref(), Some("Bob"));
    assert_eq!(m.event().map(text).as_deref(), Some("refer"));

    let name = "23_refer_replaces.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let rt = ok(name, "refer_to()", m.refer_to().unwrap_or_else(|| panic!("{name}: no Refer-To")));
    assert_eq!(s(rt.uri.user).as_deref(), Some("106"));
    assert_eq!(text(rt.uri.host), "acme.example");
    assert_eq!(
        s(rt.uri.headers).as_deref(),
        Some("Replaces=3f1a9b2c-6d4e%40192.0.2.10%3Bto-tag%3Das6c1d2e3f%3Bfrom-tag%3D0b7e5c9d")
    );
    let rb = ok(name, "referred_by()", m.referred_by().unwrap_or_else(|| panic!("{name}: no Referred-By")));
    assert_eq!(rb.display, None);
}

#[test]
fn compact_forms() {
    let name = "35_compact_invite.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let kinds: Vec<_> = m.headers().iter().map(|h| (text(h.raw_name), h.name)).collect();
    for (raw, want) in [
        ("v", HeaderName::Via),
        ("f", HeaderName::From),
        ("t", HeaderName::To),
        ("i", HeaderName::CallId),
        ("m", HeaderName::Contact),
        ("k", HeaderName::Supported),
        ("c", HeaderName::ContentType),
        ("l", HeaderName::ContentLength),
    ] {
        assert!(
            kinds.iter().any(|(r, n)| r == raw && *n == want),
            "{name}: compact `{raw}` should be {want:?}; headers: {kinds:?}"
        );
    }
    assert_eq!(m.header(HeaderName::CallId).map(text).as_deref(), Some("compact-5f4e3d2c@192.0.2.88"));
    assert_eq!(m.content_type().map(text).as_deref(), Some("application/sdp"));
    assert_eq!(s(ok(name, "from_hdr()", m.from_hdr()).display).as_deref(), Some("Ivan"));
    assert_eq!(m.header(HeaderName::Supported).map(text).as_deref(), Some("replaces"));

    let name = "36_compact_refer.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let rt = ok(name, "refer_to()", m.refer_to().unwrap_or_else(|| panic!("{name}: `r:` is Refer-To")));
    assert_eq!(s(rt.uri.user).as_deref(), Some("*68103"));
    let rb = ok(name, "referred_by()", m.referred_by().unwrap_or_else(|| panic!("{name}: `b:` is Referred-By")));
    assert_eq!(s(rb.uri.user).as_deref(), Some("102"));
    assert_eq!(m.event().map(text).as_deref(), Some("refer"), "`o:` is Event");
    assert_eq!(m.content_length(), Some(Ok(0)));
}

#[test]
fn odd_spacing() {
    let name = "37_odd_spacing.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let v = ok(name, "top_via()", m.top_via());
    assert_eq!(text(v.transport), "UDP");
    assert_eq!(text(v.host), "192.0.2.99");
    assert_eq!(v.port, Some(5060));
    assert_eq!(s(v.branch).as_deref(), Some("z9hG4bKodd77"));
    assert_eq!(v.rport, Some(None));
    let from = ok(name, "from_hdr()", m.from_hdr());
    assert_eq!(s(from.display).as_deref(), Some("Odd"));
    assert_eq!(text(from.uri.raw), "sip:odd@acme.example");
    let to = ok(name, "to_hdr()", m.to_hdr());
    assert_eq!(text(to.uri.raw), "sip:acme.example");
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    assert_eq!(m.content_length(), Some(Ok(0)));
    let names: Vec<_> = m.headers().iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
            HeaderName::ContentLength
        ],
        "whitespace before ':' must not hide the header name"
    );
}

#[test]
fn lowercase_header_names() {
    let name = "38_lowercase_headers.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    assert_eq!(m.max_forwards(), Some(Ok(70)));
    assert_eq!(m.content_length(), Some(Ok(0)));
    let c = addr(name, contacts(name, &m)[0]);
    assert_eq!(c.param(b"expires"), Some(Some(&b"120"[..])));
    assert_eq!(s(ok(name, "to_hdr()", m.to_hdr()).uri.user).as_deref(), Some("155"));
}

#[test]
fn ipv6_hosts() {
    let name = "39_ipv6_invite.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let ruri = ok(name, "Uri::parse(ruri)", Uri::parse(m.request_uri().unwrap_or_default()));
    assert_eq!(text(unbracket(ruri.host)), "2001:db8::50");
    assert_eq!(ruri.port, Some(5060));
    assert_eq!(s(ruri.user).as_deref(), Some("112"));
    let v = ok(name, "top_via()", m.top_via());
    assert_eq!(text(unbracket(v.host)), "2001:db8::10");
    assert_eq!(v.port, Some(5060));
    assert_eq!(v.rport, Some(None));
    let c = addr(name, contacts(name, &m)[0]);
    assert_eq!(text(unbracket(c.uri.host)), "2001:db8::10");
    assert_eq!(c.uri.port, Some(5060));
    assert_eq!(owner(&m, 4), Owner::Shard(shard_of(ruri.host, 4)));
}

#[test]
fn quoted_display_names_with_commas_and_escapes() {
    let name = "40_display_quotes_commas.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let from = ok(name, "from_hdr()", m.from_hdr());
    assert_eq!(s(from.display).as_deref(), Some(r#"Smith, John \"JJ\" Jr."#), "raw, unquoted, escapes kept");
    assert_eq!(text(from.uri.raw), "sip:114@acme.example");
    assert_eq!(from.tag().map(text).as_deref(), Some("q1x"));
    let to = ok(name, "to_hdr()", m.to_hdr());
    assert_eq!(s(to.display).as_deref(), Some("O'Brien, Pat"));
    let c = contacts(name, &m);
    assert_eq!(c.len(), 1, "comma in a display name must not split the Contact");
    let c = addr(name, c[0]);
    assert_eq!(s(c.display).as_deref(), Some("Smith, John"));
    assert_eq!(c.uri.port, Some(5060));
    let rb = ok(name, "referred_by()", m.referred_by().unwrap_or_else(|| panic!("{name}: no Referred-By")));
    assert_eq!(s(rb.display).as_deref(), Some("Doe, Jane"));
    assert_eq!(s(rb.uri.user).as_deref(), Some("116"));
}

#[test]
fn multi_value_via_in_one_header() {
    let name = "41_multi_via_one_header.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let v = vias(name, &m);
    let branches: Vec<_> = v.iter().map(|v| s(v.branch)).collect();
    assert_eq!(
        branches,
        [Some(String::from("z9hG4bKmv1.0")), Some(String::from("z9hG4bKmv2")), Some(String::from("z9hG4bKmv3"))]
    );
    assert_eq!(text(v[0].host), "198.51.100.2");
    assert_eq!(text(v[1].host), "192.0.2.77");
    assert_eq!(v[1].port, Some(5060));
    assert_eq!(s(v[1].received).as_deref(), Some("192.0.2.77"));
    assert_eq!(v[1].rport, Some(Some(5060)));
    assert_eq!(text(v[2].host), "192.0.2.3");
    assert_eq!(ok(name, "top_via()", m.top_via()), v[0]);
}

#[test]
fn folded_header_lines() {
    let name = "42_folded_headers.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    let to = ok(name, "to_hdr() (value folded onto the next line)", m.to_hdr());
    assert_eq!(text(to.uri.raw), "sip:117@acme.example");
    assert_eq!(to.tag(), None);
    let subject = m
        .headers()
        .iter()
        .find(|h| h.raw_name.eq_ignore_ascii_case(b"subject"))
        .unwrap_or_else(|| panic!("{name}: Subject header missing: folded lines were split"));
    assert!(subject.value.starts_with(b"I know you're there,"));
    assert!(subject.value.ends_with(b"and talk to me!"), "{}", text(subject.value));
    assert_eq!(m.headers().len(), 9, "continuation lines are not headers of their own");
    assert_eq!(m.body(), b"Are you there?\r\n");
}

#[test]
fn responses_carry_reason_and_headers() {
    let name = "28_resp_401_challenge.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    match m.start_line() {
        sipark::proto::sip::parse::StartLine::Response { code, reason } => {
            assert_eq!(code, 401);
            assert_eq!(text(reason), "Unauthorized");
        }
        other => panic!("{name}: {other:?}"),
    }
    let www = m
        .headers()
        .iter()
        .find(|h| h.raw_name == b"WWW-Authenticate")
        .unwrap_or_else(|| panic!("{name}: no WWW-Authenticate"));
    assert_eq!(www.name, HeaderName::Other);
    assert!(www.value.starts_with(b"Digest realm=\"acme.example\""));

    let name = "26_resp_183_sdp.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    assert_eq!(m.header(HeaderName::Require).map(text).as_deref(), Some("100rel"));
    assert!(m.body().starts_with(b"v=0\r\n"));

    let name = "03_invite_cisco.sip";
    let buf = corpus_file(name);
    let m = parse_ok(name, &buf);
    assert_eq!(m.expires(), Some(Ok(180)));
    assert_eq!(m.max_forwards(), Some(Ok(69)));
    let ruri = ok(name, "Uri::parse(ruri)", Uri::parse(m.request_uri().unwrap_or_default()));
    assert_eq!(s(ruri.user).as_deref(), Some("+15555550142"));
    assert_eq!(ruri.port, Some(5060));
    assert_eq!(ruri.param(b"transport"), Some(Some(&b"udp"[..])));
}
