//! RFC 3261 conformance of the front door, one rule per test (the RFC 4475
//! messages themselves run against the real binary in tests/e2e/torture.rs):
//! transaction matching without a magic cookie and with sent-by, 416, 501,
//! answers built from headers that do not parse, duplicated headers, a
//! datagram shorter than its Content-Length, 505, Max-Forwards of zero, and
//! the registrar's 404 and 400.

use sipark::proto::config::{Config, parse_tenants};

use crate::fixtures::ACME;
use crate::harness::{Sim, ms, secs};
use crate::txn::{exchange, raw_request};
use crate::wire::Msg;

/// Sends `raw` from `phone`; the first response that contains `needle`.
fn answer(sim: &mut Sim, phone: usize, raw: &str, needle: &str) -> Msg {
    exchange(sim, phone, raw.to_owned(), needle, secs(2))
        .unwrap_or_else(|| panic!("no response with {needle:?} to:\n{raw}\n{}", sim.trace()))
}

/// Every response `phone` received that contains `needle`.
fn answers(sim: &Sim, phone: usize, needle: &str) -> Vec<Msg> {
    sim.phones[phone].received.iter().filter(|m| m.code().is_some() && m.text().contains(needle)).cloned().collect()
}

/// An INVITE from `phone` to `ruri` whose top Via has no branch (RFC 2543).
fn invite_2543(sim: &Sim, phone: usize, ruri: &str, call_id: &str) -> String {
    let p = &sim.phones[phone];
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {}\r\nFrom: {};tag=f2543\r\nTo: <{ruri}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 56 INVITE\r\nContact: <sip:{}@{}>\r\nContent-Length: 0\r\n\r\n",
        p.addr,
        p.party(),
        p.user,
        p.addr
    )
}

#[test]
fn without_a_magic_cookie_the_request_fields_match_the_transaction() {
    let mut sim = Sim::new(2, Config::default(), 61);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    // No park code: 404, kept until ACKed (Timer G retransmits it).
    let invite = invite_2543(&sim, p, "sip:UserB@acme.example", "inv2543.1");
    let r = answer(&mut sim, p, &invite, "inv2543.1");
    assert_eq!(r.code(), Some(404), "{r:?}");
    let tag = r.to_tag().unwrap_or_else(|| panic!("a final response has a To tag: {r:?}"));
    // The INVITE again is a retransmission: the same 404, same tag.
    sim.phones[p].send_raw(invite.clone().into_bytes());
    sim.run_for(ms(100));
    let all = answers(&sim, p, "inv2543.1");
    assert!(all.len() >= 2 && all.iter().all(|m| m.to_tag().as_deref() == Some(&tag)), "{all:?}");
    // Its ACK (same fields, sipark's To tag) ends the retransmissions.
    let ack = invite
        .replacen("INVITE sip:UserB", "ACK sip:UserB", 1)
        .replace("CSeq: 56 INVITE", "CSeq: 56 ACK")
        .replace("To: <sip:UserB@acme.example>", &format!("To: <sip:UserB@acme.example>;tag={tag}"));
    sim.phones[p].send_raw(ack.into_bytes());
    sim.run_for(ms(50));
    let acked = answers(&sim, p, "inv2543.1").len();
    sim.run_for(secs(10));
    assert_eq!(answers(&sim, p, "inv2543.1").len(), acked, "no 404 retransmission after the ACK\n{}", sim.trace());
    // Another CSeq number is another transaction: a 404 with a new tag.
    let again = invite.replace("CSeq: 56 INVITE", "CSeq: 57 INVITE");
    let r = answer(&mut sim, p, &again, "CSeq: 57");
    assert_ne!(r.to_tag(), Some(tag), "{r:?}");
    // badbranch: the magic cookie alone is no RFC 3261 branch either.
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bK", None, "");
    assert_eq!(answer(&mut sim, p, &raw, "raw-z9hG4bK@").code(), Some(200));
}

#[test]
fn the_same_branch_from_another_sent_by_is_another_transaction() {
    let mut sim = Sim::new(1, Config::default(), 62);
    let a = sim.add_phone("104", ACME, Some("Carol"));
    let b = sim.add_phone("105", ACME, Some("Dan"));
    let raw_a = raw_request(&sim, a, "OPTIONS", "sip:acme.example", "z9hG4bKsame", None, "");
    let ra = answer(&mut sim, a, &raw_a, "z9hG4bKsame");
    // The same branch, Call-ID and CSeq, from another client (its own Via).
    let raw_b = raw_request(&sim, b, "OPTIONS", "sip:acme.example", "z9hG4bKsame", None, "").replace(
        &format!("Call-ID: raw-z9hG4bKsame@{}", sim.phones[b].ip()),
        &format!("Call-ID: raw-z9hG4bKsame@{}", sim.phones[a].ip()),
    );
    let rb = answer(&mut sim, b, &raw_b, "z9hG4bKsame");
    assert_eq!((ra.code(), rb.code()), (Some(200), Some(200)));
    assert_ne!(ra.to_tag(), rb.to_tag(), "two transactions, two answers:\n{ra:?}\n{rb:?}");
    assert_eq!(answers(&sim, a, "z9hG4bKsame").len(), 1, "nothing of b's went to a");
}

#[test]
fn request_uri_of_another_scheme_gets_416() {
    let mut sim = Sim::new(1, Config::default(), 63);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    for (i, ruri) in ["nobodyKnowsThisScheme:totallyopaquecontent", "soap.beep://192.0.2.103:3002"].iter().enumerate() {
        let branch = format!("z9hG4bKscheme{i}");
        let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", &branch, None, "").replacen(
            "OPTIONS sip:acme.example",
            &format!("OPTIONS {ruri}"),
            1,
        );
        let r = answer(&mut sim, p, &raw, &branch);
        assert_eq!((r.code(), r.reason().as_str()), (Some(416), "Unsupported URI Scheme"), "{ruri}: {r:?}");
    }
    // Brackets are no scheme at all (ltgtruri): 400.
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKltgt", None, "").replacen(
        "OPTIONS sip:acme.example",
        "OPTIONS <sip:acme.example>",
        1,
    );
    assert_eq!(answer(&mut sim, p, &raw, "z9hG4bKltgt").code(), Some(400));
}

#[test]
fn unknown_methods_get_501_and_known_ones_405_both_with_allow() {
    let mut sim = Sim::new(1, Config::default(), 64);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    // mismatch02: an unknown method whose CSeq names another still gets 501.
    let raw = raw_request(&sim, p, "NEWMETHOD", "sip:acme.example", "z9hG4bKnew", None, "")
        .replace("CSeq: 1 NEWMETHOD", "CSeq: 1 INVITE");
    let r = answer(&mut sim, p, &raw, "z9hG4bKnew");
    assert_eq!((r.code(), r.reason().as_str()), (Some(501), "Not Implemented"), "{r:?}");
    assert!(r.header("Allow").is_some_and(|a| a.contains("REGISTER")), "{r:?}");
    let raw = raw_request(&sim, p, "PUBLISH", "sip:acme.example", "z9hG4bKpub", None, "");
    let r = answer(&mut sim, p, &raw, "z9hG4bKpub");
    assert_eq!(r.code(), Some(405), "{r:?}");
    assert!(r.header("Allow").is_some_and(|a| a.contains("REGISTER")), "{r:?}");
    // In a dialog too (no such dialog is needed to know the method).
    let raw = raw_request(&sim, p, "NEWMETHOD", "sip:acme.example", "z9hG4bKnewd", Some("t1"), "");
    assert_eq!(answer(&mut sim, p, &raw, "z9hG4bKnewd").code(), Some(481));
}

#[test]
fn headers_that_do_not_parse_are_copied_into_the_answer() {
    let mut sim = Sim::new(1, Config::default(), 65);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    // unksm2 as an OPTIONS: To and From of other schemes are addresses
    // like any other; the answer copies them.
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKisbn", None, "")
        .replace("To: <sip:acme.example>", "To: isbn:2983792873");
    let r = answer(&mut sim, p, &raw, "z9hG4bKisbn");
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert!(r.header("To").is_some_and(|t| t.starts_with("isbn:2983792873;tag=")), "{r:?}");
    // quotbal: a To that cannot be read gets 400, with the To as received
    // and no tag added to it.
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKquot", None, "")
        .replace("To: <sip:acme.example>", "To: \"Mr. J. User <sip:j.user@acme.example>");
    let r = answer(&mut sim, p, &raw, "z9hG4bKquot");
    assert_eq!((r.code(), r.reason().as_str()), (Some(400), "Bad To header"), "{r:?}");
    assert_eq!(r.header("To").as_deref(), Some("\"Mr. J. User <sip:j.user@acme.example>"), "{r:?}");
    // insuf: no Call-ID, From or To: 400 all the same, with what there is.
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKinsuf", None, "");
    let raw: String = raw
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("To:") && !l.starts_with("From:") && !l.starts_with("Call-ID:"))
        .collect();
    let r = answer(&mut sim, p, &raw, "z9hG4bKinsuf");
    assert_eq!(r.code(), Some(400), "{r:?}");
    assert!(r.header("To").is_none() && r.header("CSeq").as_deref() == Some("1 OPTIONS"), "{r:?}");
}

/// Turns a good request into one that is not well formed.
type Spoil = fn(String) -> String;

#[test]
fn requests_that_read_but_are_not_well_formed_are_answered() {
    let mut sim = Sim::new(2, Config::default(), 66);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    let base = |sim: &Sim, branch: &str| raw_request(sim, p, "OPTIONS", "sip:acme.example", branch, None, "");
    let cases: [(&str, Spoil, u16, &str); 7] = [
        ("z9hG4bKdupcid", |r| r.replace("CSeq: 1", "Call-ID: other@h\r\nCSeq: 1"), 400, "Duplicate Call-ID header"),
        (
            "z9hG4bKdupcseq",
            |r| r.replace("CSeq: 1 OPTIONS\r\n", "CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\n"),
            400,
            "Duplicate CSeq header",
        ),
        (
            "z9hG4bKdupcl",
            |r| r.replace("Content-Length: 0\r\n", "Content-Length: 0\r\nl: 5\r\n"),
            400,
            "Conflicting Content-Length headers",
        ),
        ("z9hG4bKncl", |r| r.replace("Content-Length: 0", "Content-Length: -999"), 400, "Bad Content-Length header"),
        (
            "z9hG4bKclerr",
            |r| r.replace("Content-Length: 0\r\n\r\n", "Content-Length: 9999\r\n\r\nv=0\r\n"),
            400,
            "Body shorter than Content-Length",
        ),
        ("z9hG4bKvers", |r| r.replacen("SIP/2.0\r\n", "SIP/7.0\r\n", 1), 505, "Version Not Supported"),
        (
            "z9hG4bKlws",
            |r| r.replacen("sip:acme.example SIP/2.0", "sip:acme.example; lr SIP/2.0", 1),
            400,
            "Bad Request-URI",
        ),
    ];
    for (branch, spoil, code, reason) in cases {
        let raw = spoil(base(&sim, branch));
        let r = answer(&mut sim, p, &raw, branch);
        assert_eq!((r.code(), r.reason().as_str()), (Some(code), reason), "{raw}\n{r:?}");
    }
    assert_eq!(sim.stat(|s| s.parse_errors.get()), 7);
    // The same value twice is one Content-Length, and an ACK gets no answer.
    let raw =
        base(&sim, "z9hG4bKsamecl").replace("Content-Length: 0\r\n", "Content-Length: 0\r\nContent-Length: 0\r\n");
    assert_eq!(answer(&mut sim, p, &raw, "z9hG4bKsamecl").code(), Some(200));
    let raw = raw_request(&sim, p, "ACK", "sip:acme.example", "z9hG4bKackdup", Some("t"), "")
        .replace("CSeq: 1 ACK\r\n", "CSeq: 1 ACK\r\nCSeq: 2 ACK\r\n");
    assert!(exchange(&mut sim, p, raw, "z9hG4bKackdup", secs(1)).is_none());
}

#[test]
fn max_forwards_zero_is_served_out_of_a_dialog() {
    let mut sim = Sim::new(1, Config::default(), 67);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKzeromf", None, "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    assert_eq!(answer(&mut sim, p, &raw, "z9hG4bKzeromf").code(), Some(200));
}

#[test]
fn registrar_answers_404_for_no_address_of_the_tenant_and_400_for_no_sip_uri() {
    let mut sim = Sim::new(1, Config::default(), 68);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    let register = |sim: &Sim, branch: &str, to: &str| {
        raw_request(
            sim,
            p,
            "REGISTER",
            "sip:acme.example",
            branch,
            None,
            &format!("Contact: <sip:104@{}>\r\n", sim.phones[p].addr),
        )
        .replace("To: <sip:acme.example>", &format!("To: {to}"))
    };
    // escnull: a user that is no extension of the tenant.
    let raw = register(&sim, "z9hG4bKnull", "sip:null-%00-null@acme.example");
    assert_eq!(answer(&mut sim, p, &raw, "z9hG4bKnull").code(), Some(404));
    // unksm2: the address-of-record must be a SIP or SIPS URI (§10.2).
    let raw = register(&sim, "z9hG4bKisbn", "isbn:2983792873");
    let r = answer(&mut sim, p, &raw, "z9hG4bKisbn");
    assert_eq!((r.code(), r.reason().as_str()), (Some(400), "To is not a SIP URI"), "{r:?}");
    // A contact of a scheme sipark cannot send its NOTIFYs to.
    let raw = register(&sim, "z9hG4bKname", "<sip:104@acme.example>")
        .replace(&format!("Contact: <sip:104@{}>", sim.phones[p].addr), "Contact: <name:John_Smith>");
    let r = answer(&mut sim, p, &raw, "z9hG4bKname");
    assert_eq!((r.code(), r.reason().as_str()), (Some(400), "Unsupported Contact URI scheme"), "{r:?}");
}

#[test]
fn registrar_that_authenticates_challenges_an_unknown_scheme() {
    // regaut01: credentials of a scheme nobody knows are no credentials.
    let text = format!("[[tenant]]\ndomain = \"{ACME}\"\nusers = {{ \"104\" = \"carol-pw\" }}\n");
    let base = Config::default();
    let (defaults, tenants) = parse_tenants(&text, base.defaults.clone()).unwrap_or_else(|e| panic!("{e}"));
    let mut sim = Sim::new(1, Config { defaults, tenants, nonce_secret: [9; 32], ..base }, 69);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    let raw = raw_request(
        &sim,
        p,
        "REGISTER",
        "sip:acme.example",
        "z9hG4bKaut",
        None,
        &format!(
            "Contact: <sip:104@{}>\r\nAuthorization: NoOneKnowsThisScheme opaque-data=here\r\n",
            sim.phones[p].addr
        ),
    )
    .replace("To: <sip:acme.example>", "To: <sip:104@acme.example>");
    let r = answer(&mut sim, p, &raw, "z9hG4bKaut");
    assert_eq!(r.code(), Some(401), "{r:?}");
    assert_eq!(r.headers("WWW-Authenticate").len(), 2, "{r:?}");
}
