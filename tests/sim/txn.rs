//! Stateless answers, transaction timers on the wire, and shutdown.

use std::time::Duration;

use sipark::proto::config::Config;

use crate::fixtures::ACME;
use crate::harness::{Sim, ms, secs};
use crate::phone::NotifyPolicy;
use crate::wire::Msg;

/// Sends `raw` from `phone` and returns the first response that comes
/// back carrying `branch` (or `None` within `max`).
pub(crate) fn exchange(sim: &mut Sim, phone: usize, raw: String, branch: &str, max: Duration) -> Option<Msg> {
    let before = sim.phones[phone].received.len();
    sim.phones[phone].send_raw(raw.into_bytes());
    let found = |s: &Sim| {
        s.phones[phone].received[before..].iter().find(|m| m.code().is_some() && m.text().contains(branch)).cloned()
    };
    sim.run_until(max, |s| found(s).is_some());
    found(sim)
}

/// A request from `phone` to sipark, as text, with the usual headers.
pub(crate) fn raw_request(
    sim: &Sim,
    phone: usize,
    method: &str,
    ruri: &str,
    branch: &str,
    to_tag: Option<&str>,
    extra: &str,
) -> String {
    let p = &sim.phones[phone];
    let to = match to_tag {
        Some(t) => format!("<{ruri}>;tag={t}"),
        None => format!("<{ruri}>"),
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\nMax-Forwards: 70\r\nFrom: {};tag=raw{}\r\nTo: {to}\r\nCall-ID: raw-{branch}@{}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n",
        p.addr,
        p.party(),
        p.id,
        p.ip()
    )
}

fn expect_response(sim: &mut Sim, phone: usize, raw: String, branch: &str) -> Msg {
    exchange(sim, phone, raw.clone(), branch, secs(2))
        .unwrap_or_else(|| panic!("no response to:\n{raw}\n{}", sim.trace()))
}

#[test]
fn options_subscribe_unknown_method_and_unknown_dialog() {
    let mut sim = Sim::new(2, Config::default(), 41);
    let p = sim.add_phone("104", ACME, Some("Carol"));

    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKopt1", None, "");
    let r = expect_response(&mut sim, p, raw, "z9hG4bKopt1");
    assert_eq!(r.code(), Some(200), "{r:?}");
    let allow = r.header("Allow").unwrap_or_default();
    for m in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER"] {
        assert!(allow.contains(m), "Allow lists {m}: {allow:?}");
    }
    // RFC 3581: rport filled in, received added.
    let via = r.header("Via").unwrap_or_default();
    let port = sim.phones[p].addr.port();
    assert!(via.contains(&format!("rport={port}")), "{via}");
    assert!(via.contains(&format!("received={}", sim.phones[p].ip())), "{via}");

    let raw = raw_request(
        &sim,
        p,
        "SUBSCRIBE",
        "sip:103@acme.example",
        "z9hG4bKsub1",
        None,
        "Event: park-info\r\nExpires: 600\r\n",
    );
    let r = expect_response(&mut sim, p, raw, "z9hG4bKsub1");
    assert_eq!(r.code(), Some(489), "SUBSCRIBE: {r:?}");

    let raw = raw_request(&sim, p, "FOO", "sip:acme.example", "z9hG4bKfoo1", None, "");
    let r = expect_response(&mut sim, p, raw, "z9hG4bKfoo1");
    assert_eq!(r.code(), Some(501), "unknown method: {r:?}");
    assert!(r.header("Allow").is_some_and(|a| a.contains("INVITE")), "501 carries Allow: {r:?}");

    let raw = raw_request(&sim, p, "BYE", "sip:sp0.sipark@127.0.0.1:5060", "z9hG4bKbye1", Some("nosuchdialog"), "");
    let r = expect_response(&mut sim, p, raw, "z9hG4bKbye1");
    assert_eq!(r.code(), Some(481), "BYE in an unknown dialog: {r:?}");

    let sdp = "v=0\r\no=x 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let mut raw = raw_request(
        &sim,
        p,
        "INVITE",
        "sip:sp1.sipark@127.0.0.1:5060",
        "z9hG4bKinv1",
        Some("nosuchdialog"),
        "Contact: <sip:104@127.0.0.9:5099>\r\nContent-Type: application/sdp\r\n",
    );
    raw = raw.replace("Content-Length: 0\r\n\r\n", &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
    let r = expect_response(&mut sim, p, raw, "z9hG4bKinv1");
    assert_eq!(r.code(), Some(481), "re-INVITE in an unknown dialog: {r:?}");

    // Through the phone's own client transaction (retransmitted until answered), with loss.
    sim.net.loss = 0.3;
    let now = sim.now;
    let t = sim.phones[p].request(now, "MESSAGE", "sip:103@acme.example", &[], Some(("text/plain", "hi")));
    let r = sim.final_of(p, t, secs(40));
    assert_eq!(r.code(), Some(405), "{r:?}");
    sim.net.loss = 0.0;

    // A retransmission of the same request gets the same answer again.
    let raw = raw_request(&sim, p, "FOO", "sip:acme.example", "z9hG4bKfoo1", None, "");
    let r2 = expect_response(&mut sim, p, raw, "z9hG4bKfoo1");
    assert_eq!(r2.code(), Some(501));
}

#[test]
fn bad_requests_get_400_with_a_reason() {
    let mut sim = Sim::new(2, Config::default(), 42);
    let p = sim.add_phone("104", ACME, Some("Carol"));

    // CSeq method does not match.
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKcseq1", None, "")
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    let r = expect_response(&mut sim, p, raw, "z9hG4bKcseq1");
    assert_eq!(r.code(), Some(400), "{r:?}");
    assert_eq!(r.reason(), "CSeq method does not match", "a reason that says what is wrong: {r:?}");

    // Unreadable CSeq.
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKcseq2", None, "")
        .replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS");
    let r = expect_response(&mut sim, p, raw, "z9hG4bKcseq2");
    assert_eq!(r.code(), Some(400), "{r:?}");
    assert_eq!(r.reason(), "Bad CSeq header", "{r:?}");

    // Max-Forwards: 0 on a request that may be relayed to a bridge's
    // other leg (in a dialog); out of one, sipark is the endpoint
    // (tests/sim/conformance.rs).
    let raw = raw_request(&sim, p, "BYE", "sip:sp0.sipark@127.0.0.1:5060", "z9hG4bKmf0", Some("nosuchdialog"), "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    let r = expect_response(&mut sim, p, raw, "z9hG4bKmf0");
    assert_eq!(r.code(), Some(483), "{r:?}");
}

#[test]
fn malformed_via_gets_400_bad_via_header() {
    let mut sim = Sim::new(1, Config::default(), 43);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    // The top Via has a non-numeric rport: the Via does not parse, but the
    // request is otherwise readable and its source address is known.
    let addr = sim.phones[p].addr;
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKvia1", None, "").replace(
        &format!("Via: SIP/2.0/UDP {addr};branch=z9hG4bKvia1;rport"),
        &format!("Via: SIP/2.0/UDP {addr};rport=abc;branch=z9hG4bKvia1"),
    );
    let r = exchange(&mut sim, p, raw.clone(), "z9hG4bKvia1", secs(2));
    let r = r.unwrap_or_else(|| {
        panic!(
            "no answer to a request with a malformed Via (parse_errors={}, dropped={}):\n{raw}",
            sim.stat(|s| s.parse_errors.get()),
            sim.stat(|s| s.dropped.get())
        )
    });
    assert_eq!(r.code(), Some(400), "{r:?}");
    assert_eq!(r.reason(), "Bad Via header", "{r:?}");
}

#[test]
fn notify_timer_e_then_timer_f_and_481_is_not_retried() {
    let mut sim = Sim::new(2, Config::default(), 44);
    let o = sim.office(ACME);
    sim.phones[o.watch[0]].notify_policy = NotifyPolicy::Ignore;
    sim.phones[o.watch[1]].notify_policy = NotifyPolicy::Answer(481);
    sim.park_by_bob(&o, o.alice);
    let t0 = sim.phones[o.watch[0]].requests("NOTIFY").first().map(|m| m.at).unwrap_or_else(|| panic!("no NOTIFY"));
    sim.run_for(secs(31));
    assert_eq!(sim.stat(|s| s.notifies_failed.get()), 1, "the 481 only, Timer F not yet");
    sim.run_for(secs(3));
    assert_eq!(sim.stat(|s| s.notifies_failed.get()), 2, "Timer F fired at 64*T1");
    sim.run_for(secs(20));

    let copies: Vec<u128> = sim.phones[o.watch[0]].requests("NOTIFY").iter().map(|m| (m.at - t0).as_millis()).collect();
    assert_eq!(copies, vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500], "Timer E schedule");
    let same: Vec<String> = sim.phones[o.watch[0]].requests("NOTIFY").iter().map(|m| m.branch()).collect();
    assert!(same.windows(2).all(|w| w[0] == w[1]), "retransmissions reuse the branch: {same:?}");
    assert_eq!(sim.phones[o.watch[1]].requests("NOTIFY").len(), 1, "a 481 is final: no retransmission");
    assert_eq!(sim.stat(|s| s.notifies_sent.get()), 2);
    assert_eq!(sim.stat(|s| s.notifies_retransmitted.get()), 10);
}

#[test]
fn park_2xx_is_retransmitted_until_ack() {
    let mut sim = Sim::new(2, Config::default(), 45);
    let o = sim.office(ACME);
    sim.phones[o.alice].acks_to_skip = 3;
    let bob = sim.phones[o.bob[0]].party();
    let call = sim.start_park(o.alice, ACME, "103", Some(&bob));
    sim.run_for(secs(2));
    assert_eq!(sim.stat(|s| s.parks.get()), 0, "not parked before the ACK");
    assert!(sim.phones[o.watch[0]].notifies.is_empty(), "no NOTIFY before the ACK");
    sim.run_for(secs(10));
    let oks: Vec<u128> = sim.phones[o.alice].responses(200).iter().map(|m| m.at.as_millis()).collect();
    let first = oks[0];
    let rel: Vec<u128> = oks.iter().map(|t| t - first).collect();
    assert_eq!(rel, vec![0, 500, 1500, 3500], "Timer G: T1 doubling, stops at the ACK: {rel:?}");
    assert_eq!(sim.stat(|s| s.parks.get()), 1, "parked on the ACK");
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 1);
    assert!(sim.phones[o.alice].calls[call].byes.is_empty());
}

#[test]
fn never_acked_park_2xx_ends_with_bye_after_64_t1() {
    let mut sim = Sim::new(2, Config::default(), 46);
    let o = sim.office(ACME);
    sim.phones[o.alice].acks_to_skip = u32::MAX;
    let bob = sim.phones[o.bob[0]].party();
    let call = sim.start_park(o.alice, ACME, "103", Some(&bob));
    sim.wait_bye(o.alice, call, secs(40));
    let oks: Vec<Duration> =
        sim.phones[o.alice].responses(200).iter().filter(|m| m.cseq().1 == "INVITE").map(|m| m.at).collect();
    let first = oks[0];
    let rel: Vec<u128> = oks.iter().map(|t| (*t - first).as_millis()).collect();
    assert_eq!(rel, vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500], "Timer G capped at T2");
    let bye_at = sim.phones[o.alice].calls[call].byes[0].at - first;
    assert!(bye_at >= secs(32) && bye_at < secs(32) + ms(100), "BYE at 64*T1: {bye_at:?}");
    sim.run_for(secs(60));
    assert_eq!(sim.stat(|s| s.parks.get()), 0);
    assert!(sim.phones[o.watch[0]].notifies.is_empty(), "never parked, never listed");
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    assert_eq!(sim.stat(|s| s.transactions.get()), 0);
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(404), "{r:?}");
}

#[test]
fn retrieve_2xx_is_retransmitted_until_ack() {
    let mut sim = Sim::new(2, Config::default(), 47);
    let o = sim.office(ACME);
    sim.park_by_bob(&o, o.alice);
    sim.phones[o.carol].acks_to_skip = 2;
    let now = sim.now;
    let r = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    sim.run_for(secs(10));
    let oks: Vec<u128> = sim.phones[o.carol]
        .responses(200)
        .iter()
        .filter(|m| m.cseq().1 == "INVITE")
        .map(|m| m.at.as_millis())
        .collect();
    let rel: Vec<u128> = oks.iter().map(|t| t - oks[0]).collect();
    assert_eq!(rel, vec![0, 500, 1500], "{rel:?}");
    let bye = sim.hangup(o.carol, r);
    assert_eq!(bye.code(), Some(200));
}

#[test]
fn shutdown_hangs_up_parked_calls_and_refuses_new_parks() {
    let mut sim = Sim::new(2, Config::default(), 48);
    let o = sim.office(ACME);
    let erin = sim.add_phone("106", ACME, Some("Erin"));
    let alice = sim.park_by_bob(&o, o.alice);
    let dave = sim.park_by_bob(&o, o.dave);
    let (r, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200));
    sim.wait_notifies(o.watch[0], 3, secs(2));
    let v = sim.last_notify(o.watch[0]).info().version;
    assert!(!sim.is_drained(), "not drained before shutdown");

    sim.shutdown_all();
    assert!(!sim.is_drained(), "BYE and NOTIFY still unanswered");
    sim.wait_bye(o.dave, dave, secs(2));
    for w in o.watch {
        sim.wait_notifies(w, 4, secs(2));
        let info = sim.last_notify(w).info().clone();
        assert_eq!(info.version, v + 1, "{info:?}");
        assert!(info.parked().is_empty(), "{info:?}");
        assert_eq!(info.terminated()[0].reason.as_deref(), Some("shutdown"), "{info:?}");
        assert_eq!(info.terminated()[0].parked_uri.as_deref(), Some("sip:105@acme.example"));
    }
    let call = sim.start_park(erin, ACME, "103", None);
    let txn = sim.phones[erin].calls[call].invite_txn.unwrap_or_default();
    let r503 = sim.final_of(erin, txn, secs(5));
    assert_eq!(r503.code(), Some(503), "new park while shutting down: {r503:?}");
    sim.run_for(secs(1));
    assert!(sim.is_drained(), "drained once NOTIFY and BYE are answered");
    assert_eq!(sim.stat(|s| s.parked.get()), 0);

    // The bridged call is left alone and still works.
    assert!(sim.phones[o.alice].calls[alice].byes.is_empty());
    assert_eq!(sim.stat(|s| s.bridged.get()), 1);
    let bye = sim.hangup(o.carol, r);
    assert_eq!(bye.code(), Some(200));
    sim.wait_bye(o.alice, alice, secs(2));
}

#[test]
fn shutdown_drains_even_when_devices_never_answer() {
    let mut sim = Sim::new(1, Config::default(), 49);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    for w in o.watch {
        sim.phones[w].notify_policy = NotifyPolicy::Ignore;
    }
    sim.shutdown_all();
    sim.wait_bye(o.alice, call, secs(1));
    sim.run_for(secs(31));
    assert!(!sim.is_drained(), "NOTIFYs still retransmitting");
    sim.run_for(secs(2));
    assert!(sim.is_drained(), "Timer F ends the wait");
}

#[test]
fn finished_transactions_linger_outside_the_limit_and_the_oldest_are_evicted() {
    let mut cfg = Config::default();
    cfg.limits.max_transactions = 5;
    cfg.limits.max_lingering = 8;
    let mut sim = Sim::new(1, cfg, 43);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    // 20 answered requests in a row: each lingers 64*T1 after its 200, but
    // only requests still at work count against max_transactions (5).
    let mut first = Vec::new();
    for i in 0..20 {
        let branch = format!("z9hG4bKlinger{i}");
        let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", &branch, None, "");
        let r = expect_response(&mut sim, p, raw, &branch);
        assert_eq!(r.code(), Some(200), "OPTIONS {i} under a limit of 5 live transactions: {r:?}");
        first.push(r);
    }
    assert_eq!(sim.stat(|s| s.overload_rejects.get()), 0);
    assert_eq!(sim.stat(|s| s.transactions.get()), 0, "nothing is at work");
    assert_eq!(sim.stat(|s| s.transactions_lingering.get()), 8, "capped at max_lingering");
    assert_eq!(sim.stat(|s| s.transactions_evicted.get()), 12, "the 12 oldest ended early");

    // A retransmission of a lingering request is absorbed: the same
    // response (same To tag) comes back, counted as a retransmission.
    let to_tag = |m: &Msg| m.header("To").unwrap_or_default().to_string();
    let retrans = sim.stat(|s| s.retransmissions.get());
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKlinger19", None, "");
    let again = expect_response(&mut sim, p, raw, "z9hG4bKlinger19");
    assert_eq!(to_tag(&again), to_tag(&first[19]), "absorbed by the lingering transaction");
    assert_eq!(sim.stat(|s| s.retransmissions.get()), retrans + 1);
    // One whose transaction was evicted is a new request: a new answer.
    let raw = raw_request(&sim, p, "OPTIONS", "sip:acme.example", "z9hG4bKlinger0", None, "");
    let again = expect_response(&mut sim, p, raw, "z9hG4bKlinger0");
    assert_eq!(again.code(), Some(200));
    assert_ne!(to_tag(&again), to_tag(&first[0]), "answered by a new transaction");
    assert_eq!(sim.stat(|s| s.retransmissions.get()), retrans + 1);
    assert_eq!(sim.stat(|s| s.transactions_evicted.get()), 13);

    // Timer J ends the rest.
    sim.run_for(secs(40));
    assert_eq!(sim.stat(|s| s.transactions_lingering.get()), 0);
    assert_eq!(sim.stat(|s| s.transactions.get()), 0);
}

#[test]
fn work_beyond_max_transactions_still_gets_503() {
    let mut cfg = Config::default();
    cfg.limits.max_transactions = 2;
    let mut sim = Sim::new(1, cfg, 44);
    let o = sim.office(ACME);
    // A retrieve waits on the parked leg's answer: its INVITE stays at
    // work. Make the parked leg slow so two retrieves are outstanding.
    sim.park_by_bob(&o, o.alice);
    sim.phones[o.alice].reinvite_answer = None;
    let now = sim.now;
    sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    sim.run_for(ms(100));
    let live = sim.stat(|s| s.transactions.get());
    assert!(live >= 2, "the retrieve INVITE and the re-INVITE are at work: {live}");
    let raw = raw_request(&sim, o.dave, "OPTIONS", "sip:acme.example", "z9hG4bKover1", None, "");
    let r = expect_response(&mut sim, o.dave, raw, "z9hG4bKover1");
    assert_eq!(r.code(), Some(503), "{r:?}");
    assert_eq!(r.header("Retry-After").as_deref(), Some("5"));
    assert_eq!(sim.stat(|s| s.overload_rejects.get()), 1);
}

#[test]
fn acked_park_invite_retransmission_is_absorbed_without_an_answer() {
    let mut sim = Sim::new(1, Config::default(), 45);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let txn = sim.phones[o.alice].calls[call].invite_txn.expect("park INVITE transaction");
    let invite = sim.phones[o.alice].txns[txn].request.clone();
    let received = sim.phones[o.alice].received.len();
    let notifies = sim.phones[o.watch[0]].notifies.len();
    // RFC 6026 §7.1: after the ACK, a late copy of the INVITE is absorbed
    // by the Accepted transaction; it is neither answered nor parked again.
    sim.phones[o.alice].send_raw(invite);
    sim.run_for(secs(2));
    assert_eq!(sim.phones[o.alice].received.len(), received, "no answer to the absorbed INVITE");
    assert_eq!(sim.stat(|s| s.parks.get()), 1);
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), notifies, "no second park-info");
    assert!(sim.stat(|s| s.transactions_lingering.get()) > 0, "the park INVITE lingers");
}
