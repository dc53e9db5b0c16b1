//! Park, NOTIFY, retrieve, bridge, hang-up; tenants and limits.

use sipark::proto::config::{Config, TenantMode, parse_tenants};

use crate::fixtures::{ACME, BETA, assert_media_of, origin};
use crate::harness::{START_UTC, Sim, ms, secs};
use crate::phone::Notify;

/// Checks the headers of a park-info NOTIFY sent to `watcher`.
fn check_notify_headers(sim: &Sim, n: &Notify, watcher: usize, ext: &str, domain: &str) {
    let p = &sim.phones[watcher];
    let m = &n.msg;
    assert_eq!(m.ruri(), p.contact_uri(), "NOTIFY Request-URI must be the contact: {m:?}");
    assert_eq!(m.header("Event").as_deref(), Some("park-info"), "{m:?}");
    assert_eq!(m.header("Subscription-State").as_deref(), Some("active"), "{m:?}");
    assert_eq!(m.header("Content-Type").as_deref(), Some("application/park-info+xml"), "{m:?}");
    let from = m.header("From").unwrap_or_default();
    assert!(from.starts_with(&format!("<sip:park@{domain}>;tag=")), "NOTIFY From: {from:?}");
    assert_eq!(m.header("To"), Some(format!("<sip:{ext}@{domain}>")), "{m:?}");
    assert_eq!(m.cseq(), (1, "NOTIFY".to_owned()), "{m:?}");
    assert!(m.branch().starts_with("z9hG4bKsp"), "sipark's branch: {m:?}");
    let contact = m.contact_uri().unwrap_or_default();
    assert!(contact.starts_with("sip:sp") && contact.ends_with(".sipark@127.0.0.1:5060"), "Contact {contact:?}");
    let info = n.info();
    assert_eq!(info.extension, ext, "{info:?}");
    assert_eq!(info.domain, domain, "{info:?}");
}

#[test]
fn park_notify_retrieve_bridge_then_retriever_hangs_up() {
    let mut sim = Sim::new(3, Config::default(), 1);
    let o = sim.office(ACME);
    let bob = sim.phones[o.bob[0]].party();
    let call = sim.park(o.alice, ACME, "103", Some(&bob));

    // The park INVITE: 200 straight away, sipark's Contact and a hold answer.
    let a = &sim.phones[o.alice];
    let txn = &a.txns[a.calls[call].invite_txn.unwrap_or_default()];
    assert!(txn.provisional().is_empty(), "park INVITE must not get 100 Trying: {:?}", txn.responses);
    let ok = txn.final_response().cloned().unwrap_or_else(|| panic!("no final: {txn:?}"));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert!(ok.to_tag().is_some(), "200 needs a To tag: {ok:?}");
    let contact = ok.contact_uri().unwrap_or_default();
    assert!(contact.starts_with("sip:sp") && contact.ends_with(".sipark@127.0.0.1:5060"), "Contact {contact:?}");
    let answer = ok.body();
    let (ouser, osess, over) = origin(&answer);
    assert_eq!(ouser, "sipark", "{answer}");
    assert!(answer.contains("m=audio 9 RTP/AVP 0 8\r\n"), "same m-line, port 9: {answer}");
    assert!(answer.contains("a=inactive"), "{answer}");
    assert!(!answer.contains("sendrecv"), "{answer}");
    assert_eq!(sim.stat(|s| s.parks.get()), 1);
    assert_eq!(sim.stat(|s| s.parked.get()), 1);

    // Both devices of 103 got the same park-info document.
    let mut version = 0;
    for w in o.watch {
        sim.wait_notifies(w, 1, secs(2));
        assert_eq!(sim.phones[w].notifies.len(), 1, "exactly one NOTIFY per park");
        let n = sim.last_notify(w).clone();
        check_notify_headers(&sim, &n, w, "103", ACME);
        let info = n.info();
        if version == 0 {
            version = info.version;
        }
        assert_eq!(info.version, version, "both devices see the same version");
        assert_eq!(info.calls.len(), 1, "{info:?}");
        let c = &info.calls[0];
        assert_eq!(c.state, "parked");
        assert_eq!(c.reason, None);
        assert_eq!(c.parked_uri.as_deref(), Some("sip:101@acme.example"));
        assert_eq!(c.parked_display.as_deref(), Some("Alice"));
        assert_eq!(c.parker_uri.as_deref(), Some("sip:102@acme.example"));
        assert_eq!(c.parker_display.as_deref(), Some("Bob"));
        assert_eq!(c.timeout.as_deref(), Some("300"));
        assert_eq!(c.parked_at.as_deref(), Some(START_UTC));
        assert_eq!(c.retrieve_uri, Some(format!("sip:*88103@acme.example;call={}", c.id)), "{c:?}");
    }

    // Retrieve with *88103.
    let (r, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "retrieve: {ok:?}\n{}", sim.trace());
    let ctx = &sim.phones[o.carol].txns[sim.phones[o.carol].calls[r].invite_txn.unwrap_or_default()];
    assert!(ctx.provisional().contains(&100), "retrieve gets 100 Trying: {:?}", ctx.responses);
    assert_media_of(&sim, &ok.body(), o.alice, "retriever's 200");
    let contact = ok.contact_uri().unwrap_or_default();
    assert!(contact.starts_with("sip:sp") && contact.contains(".sipark@"), "Contact {contact:?}");

    // The parked leg got one re-INVITE, in the park dialog, with the retriever's media.
    let a = &sim.phones[o.alice];
    let ac = &a.calls[call];
    assert_eq!(ac.reinvites.len(), 1, "{:?}", ac.reinvites);
    let re = &ac.reinvites[0];
    assert_eq!(re.ruri(), a.contact_uri(), "re-INVITE goes to the parked leg's Contact: {re:?}");
    assert_eq!(re.call_id(), ac.call_id);
    assert_eq!(re.to_tag().as_deref(), Some(ac.local_tag.as_str()), "To tag = parked leg's tag: {re:?}");
    assert_eq!(re.tag_from(), ac.remote_tag, "From tag = sipark's tag of the park dialog: {re:?}");
    assert_eq!(re.cseq().1, "INVITE");
    let body = re.body();
    assert_media_of(&sim, &body, o.carol, "re-INVITE to the parked leg");
    let (_, sess, ver) = origin(&body);
    assert_eq!(sess, osess, "same origin session towards the parked leg");
    assert_eq!(ver, over + 1, "origin version +1 towards the parked leg");
    assert!(!ac.acks.is_empty(), "sipark ACKs the parked leg's 200");

    // NOTIFY: terminated, retrieved, no <retrieve>, version +1.
    for w in o.watch {
        sim.wait_notifies(w, 2, secs(2));
        let info = sim.last_notify(w).info().clone();
        assert_eq!(info.version, version + 1, "{info:?}");
        assert!(info.parked().is_empty(), "{info:?}");
        let t = info.terminated();
        assert_eq!(t.len(), 1, "{info:?}");
        assert_eq!(t[0].reason.as_deref(), Some("retrieved"));
        assert_eq!(t[0].retrieve_uri, None);
    }
    assert_eq!(sim.stat(|s| s.retrieves.get()), 1);
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    assert_eq!(sim.stat(|s| s.bridged.get()), 1);

    // The retriever hangs up: the parked leg gets BYE.
    let bye = sim.hangup(o.carol, r);
    assert_eq!(bye.code(), Some(200), "{bye:?}");
    sim.wait_bye(o.alice, call, secs(2));
    let a = &sim.phones[o.alice];
    let b = &a.calls[call].byes[0];
    assert_eq!(b.ruri(), a.contact_uri());
    assert_eq!(b.call_id(), a.calls[call].call_id);
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);
    // No more NOTIFYs: the call left the park already.
    sim.run_for(secs(5));
    for w in o.watch {
        assert_eq!(sim.phones[w].notifies.len(), 2, "{:?}", sim.phones[w].notifies);
    }
    assert!(sim.stray.is_empty(), "sipark sent to addresses no phone has: {:?}", sim.stray);
}

#[test]
fn bridged_parked_side_hangs_up_and_retriever_gets_bye() {
    let mut sim = Sim::new(2, Config::default(), 2);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let (r, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    let bye = sim.hangup(o.alice, call);
    assert_eq!(bye.code(), Some(200), "{bye:?}");
    sim.wait_bye(o.carol, r, secs(2));
    let c = &sim.phones[o.carol];
    let b = &c.calls[r].byes[0];
    assert_eq!(b.ruri(), c.contact_uri(), "BYE to the retriever's Contact: {b:?}");
    assert_eq!(b.call_id(), c.calls[r].call_id);
    assert_eq!(b.to_tag().as_deref(), Some(c.calls[r].local_tag.as_str()));
    assert_eq!(b.tag_from(), c.calls[r].remote_tag);
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);
    assert_eq!(sim.stat(|s| s.hangups.get()), 0, "a bridged call's hang-up is not a parked hang-up");
}

#[test]
fn retrieve_uri_from_notify_takes_that_call_and_star88_the_oldest() {
    let mut sim = Sim::new(2, Config::default(), 3);
    let o = sim.office(ACME);
    let erin = sim.add_phone("106", ACME, Some("Erin"));
    let alice_call = sim.park_by_bob(&o, o.alice);
    let dave_call = sim.park_by_bob(&o, o.dave);
    sim.wait_notifies(o.watch[0], 2, secs(2));
    let info = sim.last_notify(o.watch[0]).info().clone();
    let parked = info.parked();
    assert_eq!(parked.len(), 2, "{info:?}");
    assert_eq!(parked[0].parked_uri.as_deref(), Some("sip:101@acme.example"), "oldest first: {info:?}");
    assert_eq!(parked[1].parked_uri.as_deref(), Some("sip:105@acme.example"), "{info:?}");
    assert_ne!(parked[0].id, parked[1].id);
    let dave_uri = parked[1].retrieve_uri.clone().unwrap_or_default();
    let dave_id = parked[1].id.clone();

    // The second call's URI takes the second call.
    let (r, ok) = sim.retrieve(o.carol, &dave_uri);
    assert_eq!(ok.code(), Some(200), "retrieve {dave_uri}: {ok:?}");
    assert_eq!(sim.phones[o.dave].calls[dave_call].reinvites.len(), 1, "Dave's call was retrieved");
    assert!(sim.phones[o.alice].calls[alice_call].reinvites.is_empty(), "Alice's call stays parked");
    assert_media_of(&sim, &ok.body(), o.dave, "200 for the URI retrieve");
    sim.wait_notifies(o.watch[0], 3, secs(2));
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert_eq!(info.parked().len(), 1, "{info:?}");
    assert_eq!(info.parked()[0].parked_uri.as_deref(), Some("sip:101@acme.example"));
    assert_eq!(info.terminated().len(), 1);
    assert_eq!(info.terminated()[0].parked_uri.as_deref(), Some("sip:105@acme.example"));
    let gone = info.call(&dave_id).unwrap_or_else(|| panic!("call {dave_id} listed once more: {info:?}"));
    assert_eq!(gone.reason.as_deref(), Some("retrieved"));

    // The same URI again: that call is gone.
    let (_, again) = sim.retrieve(erin, &dave_uri);
    assert_eq!(again.code(), Some(404), "retrieving a retrieved call: {again:?}");

    // *88 takes the oldest (Alice's).
    let (_, ok) = sim.retrieve(erin, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(sim.phones[o.alice].calls[alice_call].reinvites.len(), 1);
    assert_media_of(&sim, &ok.body(), o.alice, "*88 200");
    let _ = r;
}

#[test]
fn star88_with_two_parked_takes_the_oldest() {
    let mut sim = Sim::new(1, Config::default(), 4);
    let o = sim.office(ACME);
    let alice_call = sim.park_by_bob(&o, o.alice);
    sim.run_for(secs(3));
    let dave_call = sim.park_by_bob(&o, o.dave);
    let (_, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(sim.phones[o.alice].calls[alice_call].reinvites.len(), 1, "oldest (Alice) retrieved");
    assert!(sim.phones[o.dave].calls[dave_call].reinvites.is_empty(), "Dave stays parked");
}

#[test]
fn parked_party_hangs_up() {
    let mut sim = Sim::new(2, Config::default(), 5);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    sim.wait_notifies(o.watch[0], 1, secs(2));
    let v = sim.last_notify(o.watch[0]).info().version;
    let bye = sim.hangup(o.alice, call);
    assert_eq!(bye.code(), Some(200), "{bye:?}");
    for w in o.watch {
        sim.wait_notifies(w, 2, secs(2));
        let info = sim.last_notify(w).info().clone();
        assert_eq!(info.version, v + 1, "{info:?}");
        assert!(info.parked().is_empty(), "no parked call left: {info:?}");
        assert_eq!(info.calls.len(), 1, "{info:?}");
        assert_eq!(info.calls[0].state, "terminated");
        assert_eq!(info.calls[0].reason.as_deref(), Some("hangup"));
    }
    assert_eq!(sim.stat(|s| s.hangups.get()), 1);
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    // Nothing to retrieve now.
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(404), "{r:?}");
    // And no timer fires later for the gone call.
    sim.run_for(secs(400));
    assert!(sim.phones[o.bob[0]].incoming().is_empty(), "no recall for a hung-up call");
    for w in o.watch {
        assert_eq!(sim.phones[w].notifies.len(), 2);
    }
}

#[test]
fn concurrent_retrieves_exactly_one_wins() {
    let mut sim = Sim::new(2, Config::default(), 6);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let now = sim.now;
    let c1 = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    let c2 = sim.phones[o.dave].invite(now, "sip:*88103@acme.example", &[], true);
    let t1 = sim.phones[o.carol].calls[c1].invite_txn.unwrap_or_default();
    let t2 = sim.phones[o.dave].calls[c2].invite_txn.unwrap_or_default();
    let r1 = sim.final_of(o.carol, t1, secs(40));
    let r2 = sim.final_of(o.dave, t2, secs(40));
    let codes = [r1.code().unwrap_or(0), r2.code().unwrap_or(0)];
    let wins = codes.iter().filter(|c| (200..300).contains(*c)).count();
    assert_eq!(wins, 1, "exactly one retrieve wins: {codes:?}\n{r1:?}\n{r2:?}");
    assert!(codes.iter().all(|&c| c >= 200), "both get a final: {codes:?}");
    sim.run_for(secs(2));
    assert_eq!(sim.phones[o.alice].calls[call].reinvites.len(), 1, "one re-INVITE of the parked leg");
    assert_eq!(sim.stat(|s| s.retrieves.get()), 1);
}

#[test]
fn retransmitted_park_invite_parks_once() {
    let mut sim = Sim::new(2, Config::default(), 7);
    let o = sim.office(ACME);
    let bob = sim.phones[o.bob[0]].party();
    let call = sim.start_park(o.alice, ACME, "103", Some(&bob));
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    // Same bytes (same branch) twice more: at once, and after the 200 went out.
    sim.phones[o.alice].retransmit(txn);
    sim.run_for(ms(30));
    sim.phones[o.alice].retransmit(txn);
    sim.run_for(secs(3));
    let oks = sim.phones[o.alice].responses(200);
    assert!(oks.len() >= 2, "the retransmissions are answered with the 200 again: {oks:?}");
    let tags: Vec<_> = oks.iter().map(|m| m.to_tag()).collect();
    assert!(tags.windows(2).all(|w| w[0] == w[1]), "one To tag, one dialog: {tags:?}");
    assert_eq!(sim.stat(|s| s.parks.get()), 1);
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert_eq!(info.parked().len(), 1, "{info:?}");
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 1, "one park, one NOTIFY");
    assert!(sim.stat(|s| s.retransmissions.get()) >= 1, "absorbed retransmissions are counted");
}

#[test]
fn duplicated_datagrams_never_park_twice() {
    let mut sim = Sim::new(2, Config::default(), 8);
    let o = sim.office(ACME);
    sim.net.dup = 1.0;
    let call = sim.park_by_bob(&o, o.alice);
    sim.run_for(secs(2));
    assert_eq!(sim.stat(|s| s.parks.get()), 1);
    for w in o.watch {
        let n = &sim.phones[w].notifies;
        assert_eq!(n.len(), 1, "duplicates of a NOTIFY are one NOTIFY: {n:?}");
        assert_eq!(n[0].info().parked().len(), 1);
    }
    let (r, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(sim.phones[o.alice].calls[call].reinvites.len(), 1);
    let bye = sim.hangup(o.carol, r);
    assert_eq!(bye.code(), Some(200));
    sim.wait_bye(o.alice, call, secs(2));
    assert_eq!(sim.stat(|s| s.retrieves.get()), 1);
}

#[test]
fn tenants_with_the_same_extensions_are_isolated() {
    let mut sim = Sim::new(4, Config::default(), 9);
    let a = sim.office(ACME);
    let b = sim.office(BETA);
    let a_call = sim.park_by_bob(&a, a.alice);
    sim.run_for(secs(1));
    for w in a.watch {
        assert_eq!(sim.phones[w].notifies.len(), 1);
        assert_eq!(sim.last_notify(w).info().domain, ACME);
    }
    for w in b.watch {
        assert!(sim.phones[w].notifies.is_empty(), "beta's 103 hears nothing of acme: {:?}", sim.phones[w].notifies);
    }
    // *88103 in beta finds nothing.
    let (_, r) = sim.retrieve(b.carol, "sip:*88103@beta.example");
    assert_eq!(r.code(), Some(404), "{r:?}");
    assert!(sim.phones[a.alice].calls[a_call].reinvites.is_empty());

    // Park in beta: only beta's devices hear of it.
    let b_call = sim.park_by_bob(&b, b.alice);
    sim.run_for(secs(1));
    for w in b.watch {
        assert_eq!(sim.phones[w].notifies.len(), 1);
        let info = sim.last_notify(w).info().clone();
        assert_eq!(info.domain, BETA);
        assert_eq!(info.parked().len(), 1, "beta's list has only beta's call: {info:?}");
        assert_eq!(info.parked()[0].parked_uri.as_deref(), Some("sip:101@beta.example"));
        assert_eq!(info.parked()[0].parker_uri.as_deref(), Some("sip:102@beta.example"));
    }
    for w in a.watch {
        assert_eq!(sim.phones[w].notifies.len(), 1, "acme hears nothing of beta");
    }
    // Retrieving in acme takes acme's call, not beta's.
    let (_, ok) = sim.retrieve(a.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(sim.phones[a.alice].calls[a_call].reinvites.len(), 1);
    assert!(sim.phones[b.alice].calls[b_call].reinvites.is_empty());
    // A retrieve URI of acme's call tried in beta's domain finds nothing.
    let info = sim.last_notify(b.watch[0]).info().clone();
    let beta_token = info.parked()[0].id.clone();
    let (_, r) = sim.retrieve(a.dave, &format!("sip:*88103@acme.example;call={beta_token}"));
    assert_eq!(r.code(), Some(404), "beta's call token used in acme: {r:?}");
    assert!(sim.phones[b.alice].calls[b_call].reinvites.is_empty());
}

#[test]
fn extension_full_gets_486() {
    let mut cfg = Config::default();
    cfg.defaults.max_parks_per_ext = 2;
    let mut sim = Sim::new(2, cfg, 10);
    let o = sim.office(ACME);
    let erin = sim.add_phone("106", ACME, Some("Erin"));
    sim.park_by_bob(&o, o.alice);
    sim.park_by_bob(&o, o.dave);
    let call = sim.start_park(erin, ACME, "103", None);
    let txn = sim.phones[erin].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(erin, txn, secs(40));
    assert_eq!(r.code(), Some(486), "{r:?}");
    assert_eq!(sim.stat(|s| s.parks_rejected.get()), 1);
    assert_eq!(sim.stat(|s| s.parks.get()), 2);
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 2, "a refused park changes nothing");
    // Another extension is not full.
    sim.park(erin, ACME, "109", None);
    // After a retrieve there is room again.
    let (_, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200));
    let call = sim.start_park(erin, ACME, "103", None);
    let txn = sim.phones[erin].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(erin, txn, secs(40)).code(), Some(200));
}

#[test]
fn strict_tenants_refuse_unknown_domains() {
    let mut cfg = Config::default();
    let text = "[[tenant]]\ndomain = \"Acme.Example\"\npark_timeout = 120\n";
    let (defaults, mode) = parse_tenants(text, cfg.defaults).unwrap_or_else(|e| panic!("tenants: {e}"));
    assert!(matches!(mode, TenantMode::Strict(_)));
    cfg.defaults = defaults;
    cfg.tenants = mode;
    let mut sim = Sim::new(2, cfg, 12);
    let o = sim.office(ACME);
    let stranger = sim.add_phone("101", "other.example", Some("Mallory"));
    let call = sim.start_park(stranger, "other.example", "103", None);
    let txn = sim.phones[stranger].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(stranger, txn, secs(40));
    assert_eq!(r.code(), Some(404), "unknown tenant park: {r:?}");
    let r = sim.register_ok(stranger, 600);
    assert_eq!(r.code(), Some(404), "unknown tenant REGISTER: {r:?}");
    // The served tenant works, with its own park timeout.
    sim.park_by_bob(&o, o.alice);
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert_eq!(info.parked()[0].timeout.as_deref(), Some("120"), "{info:?}");
    assert_eq!(sim.stat(|s| s.parks_rejected.get()), 1);
}

#[test]
fn acked_2xx_transactions_are_released() {
    let mut sim = Sim::new(1, Config::default(), 13);
    let o = sim.office(ACME);
    sim.park_by_bob(&o, o.alice);
    // Far past 64*T1 (Timer L of RFC 6026) after the ACK of the park 200.
    sim.run_for(secs(40));
    assert_eq!(
        sim.stat(|s| s.transactions.get()),
        0,
        "the park INVITE's server transaction (2xx ACKed via the dialog) must end after 64*T1"
    );
    let (r, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200));
    sim.run_for(secs(40));
    assert_eq!(sim.stat(|s| s.transactions.get()), 0, "the retrieve INVITE's server transaction must end too");
    sim.hangup(o.carol, r);
    sim.run_for(secs(40));
    assert_eq!(sim.stat(|s| s.transactions.get()), 0);
}

#[test]
fn retriever_cancel_puts_the_call_back_on_hold() {
    let mut sim = Sim::new(2, Config::default(), 14);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let v = sim.last_notify(o.watch[0]).info().version;
    let now = sim.now;
    let r = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    // CANCEL right behind the INVITE: it arrives before the parked leg's 200.
    let c = sim.phones[o.carol].cancel(now, r);
    let inv = sim.phones[o.carol].calls[r].invite_txn.unwrap_or_default();
    let fin = sim.final_of(o.carol, inv, secs(10));
    assert_eq!(fin.code(), Some(487), "a CANCELled retrieve ends 487: {fin:?}");
    assert_eq!(sim.phones[o.carol].txns[c].final_code, Some(200), "CANCEL itself gets 200");
    sim.run_for(secs(2));
    let a = &sim.phones[o.alice].calls[call];
    assert_eq!(a.reinvites.len(), 2, "retrieve re-INVITE, then back on hold: {:?}", a.reinvites);
    let hold = a.reinvites[1].body();
    assert!(hold.contains("a=inactive"), "hold offer: {hold}");
    assert!(!a.reinvites[1].body().contains(&sim.phones[o.carol].media_markers()[1]), "no retriever media: {hold}");
    assert!(a.byes.is_empty(), "the parked leg stays");
    // Still parked, and retrievable.
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
    assert_eq!(sim.stat(|s| s.retrieves.get()), 0);
    let notes = &sim.phones[o.watch[0]].notifies;
    assert_eq!(notes.len(), 1, "the call never left the list, nothing to announce: {notes:?}");
    assert_eq!(notes[0].info().version, v);
    let (_, ok) = sim.retrieve(o.dave, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_media_of(&sim, &ok.body(), o.alice, "retrieve after a cancelled one");
}

#[test]
fn parked_leg_refusing_the_reinvite_fails_the_retrieve_and_stays_parked() {
    let mut sim = Sim::new(2, Config::default(), 15);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    sim.phones[o.alice].reinvite_answer = Some(488);
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(480), "parked leg refused: {r:?}");
    assert_eq!(sim.stat(|s| s.retrieves_failed.get()), 1);
    assert_eq!(sim.stat(|s| s.parked.get()), 1, "still parked");
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 1, "no change announced");
    assert!(sim.phones[o.alice].calls[call].byes.is_empty());
    sim.phones[o.alice].reinvite_answer = Some(200);
    let (_, ok) = sim.retrieve(o.dave, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_media_of(&sim, &ok.body(), o.alice, "second retrieve");
}

#[test]
fn parked_leg_silent_on_reinvite_ends_the_call_after_timer_b() {
    let mut sim = Sim::new(2, Config::default(), 16);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    sim.phones[o.alice].reinvite_answer = None;
    let now = sim.now;
    let r = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    let txn = sim.phones[o.carol].calls[r].invite_txn.unwrap_or_default();
    let fin = sim.final_of(o.carol, txn, secs(60));
    assert_eq!(fin.code(), Some(480), "{fin:?}");
    let waited = fin.at - sim.phones[o.carol].txns[txn].responses[0].at;
    assert!(waited >= secs(31) && waited < secs(33), "Timer B (64*T1) on the re-INVITE: {waited:?}");
    let copies = sim.phones[o.alice].requests("INVITE").len();
    assert_eq!(copies, 7, "re-INVITE sent with Timer A retransmissions (1 + 6)");
    sim.run_for(secs(1));
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert!(info.parked().is_empty(), "{info:?}");
    assert_eq!(info.terminated()[0].reason.as_deref(), Some("hangup"), "{info:?}");
    let _ = call;
}

#[test]
fn parked_party_hangs_up_during_a_retrieve() {
    let mut sim = Sim::new(2, Config::default(), 17);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    sim.phones[o.alice].reinvite_answer = None;
    let now = sim.now;
    let r = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    sim.run_for(secs(1));
    let bye = sim.hangup(o.alice, call);
    assert_eq!(bye.code(), Some(200), "{bye:?}");
    let txn = sim.phones[o.carol].calls[r].invite_txn.unwrap_or_default();
    let fin = sim.final_of(o.carol, txn, secs(5));
    assert_eq!(fin.code(), Some(480), "{fin:?}");
    sim.run_for(secs(1));
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert_eq!(info.terminated()[0].reason.as_deref(), Some("hangup"), "{info:?}");
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    assert_eq!(sim.stat(|s| s.hangups.get()), 1);
}

#[test]
fn reinvite_from_the_parked_party_gets_a_hold_answer() {
    let mut sim = Sim::new(1, Config::default(), 18);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let first = sim.phones[o.alice].txns[sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default()]
        .final_response()
        .map(|m| m.body())
        .unwrap_or_default();
    let (_, sess, ver) = origin(&first);
    let now = sim.now;
    let t = sim.phones[o.alice].reinvite(now, call);
    let r = sim.final_of(o.alice, t, secs(5));
    assert_eq!(r.code(), Some(200), "{r:?}");
    let body = r.body();
    assert!(body.contains("a=inactive"), "hold answer: {body}");
    let (user, s2, v2) = origin(&body);
    assert_eq!((user.as_str(), s2.as_str()), ("sipark", sess.as_str()), "same origin: {body}");
    assert_eq!(v2, ver + 1, "origin version +1 for a new answer: {body}");
    // A refresh without SDP gets the same hold SDP again, version unchanged
    // (it is derived from the parked party's last offer, not stored).
    let now = sim.now;
    let t = sim.phones[o.alice].in_dialog(now, call, "INVITE", &[]);
    let r = sim.final_of(o.alice, t, secs(5));
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(r.body(), body, "same hold answer for a refresh without SDP");
    // In-dialog OPTIONS too.
    let now = sim.now;
    let q = sim.phones[o.alice].in_dialog(now, call, "OPTIONS", &[]);
    assert_eq!(sim.final_of(o.alice, q, secs(5)).code(), Some(200));
    sim.run_for(secs(2));
    assert_eq!(sim.stat(|s| s.parked.get()), 1, "still parked");
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 1, "nothing changed for the watchers");
    // And the call is still retrievable.
    let (_, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    // Once bridged, a refresh from the parked party is answered with the
    // retriever's media as sipark last offered it, not with hold.
    let offered = sim.phones[o.alice].calls[call].reinvites.last().map(|m| m.body()).unwrap_or_default();
    assert!(offered.contains("m=audio") && !offered.contains("a=inactive"), "bridging offer: {offered}");
    let now = sim.now;
    let t = sim.phones[o.alice].in_dialog(now, call, "INVITE", &[]);
    let r = sim.final_of(o.alice, t, secs(5));
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(r.body(), offered, "the SDP sipark last sent this leg");
}

#[test]
fn record_route_is_honoured_for_requests_to_the_parked_leg() {
    let mut sim = Sim::new(1, Config::default(), 19);
    let o = sim.office(ACME);
    let proxy = sim.add_phone("proxy", ACME, None);
    let paddr = sim.phones[proxy].addr;
    let bob = sim.phones[o.bob[0]].party();
    let now = sim.now;
    let rr = format!("Record-Route: <sip:{paddr};lr>");
    let call = sim.phones[o.alice].invite(now, "sip:*68103@acme.example", &[format!("Referred-By: {bob}"), rr], true);
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let ok = sim.final_of(o.alice, txn, secs(5));
    assert_eq!(ok.code(), Some(200));
    sim.run_for(secs(1));
    assert_eq!(sim.stat(|s| s.parks.get()), 1);
    let now = sim.now;
    sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    sim.run_for(secs(1));
    let got = sim.phones[proxy].requests("INVITE");
    assert!(!got.is_empty(), "the re-INVITE goes to the first Route hop\n{}", sim.trace());
    let inv = got[0];
    assert_eq!(inv.ruri(), sim.phones[o.alice].contact_uri(), "Request-URI is still the remote target: {inv:?}");
    assert_eq!(inv.header("Route"), Some(format!("<sip:{paddr};lr>")), "{inv:?}");
    assert!(sim.phones[o.alice].calls[call].reinvites.is_empty(), "not sent straight to the phone");
    // RFC 3261 §12.1.1: the 2xx to a dialog-creating INVITE copies Record-Route.
    assert_eq!(ok.header("Record-Route"), Some(format!("<sip:{paddr};lr>")), "200 echoes Record-Route: {ok:?}");
}

#[test]
fn bridged_call_is_hung_up_after_max_call_duration() {
    let mut cfg = Config::default();
    cfg.limits.max_call_duration = secs(2 * 3600);
    let mut sim = Sim::new(2, cfg, 20);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let (r, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200));
    let bridged_at = sim.now;
    sim.run_for(secs(2 * 3600 - 10));
    assert!(sim.phones[o.alice].calls[call].byes.is_empty(), "not before the cap");
    assert_eq!(sim.stat(|s| s.bridged.get()), 1);
    sim.wait_bye(o.alice, call, secs(20));
    sim.wait_bye(o.carol, r, secs(1));
    let held = sim.now - bridged_at;
    assert!(held >= secs(2 * 3600 - 1) && held <= secs(2 * 3600 + 1), "{held:?}");
    sim.run_for(secs(40));
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);
}

#[test]
fn self_park_uses_the_parkers_extension_and_self_retrieve_the_callers() {
    let mut sim = Sim::new(2, Config::default(), 61);
    let o = sim.office(ACME);
    let bob = sim.phones[o.bob[0]].party();
    // `*68`, `*68#` and `*68%23` with Bob (102) as parker all park on 102.
    let mut calls = Vec::new();
    for (i, (phone, fac_rest)) in [(o.alice, ""), (o.carol, "#"), (o.dave, "%23")].into_iter().enumerate() {
        calls.push((phone, sim.park(phone, ACME, fac_rest, Some(&bob))));
        sim.wait_notifies(o.bob[0], i + 1, secs(2));
        let info = sim.last_notify(o.bob[0]).info().clone();
        assert_eq!(info.extension, "102", "parked on the parker's own extension: {info:?}");
        assert_eq!(info.parked().len(), i + 1, "{info:?}");
    }
    assert!(sim.phones[o.watch[0]].notifies.is_empty(), "nothing was parked on 103");
    assert_eq!(sim.stat(|s| s.parks.get()), 3);
    // `*88` from Bob's other device (From 102) retrieves the oldest of 102.
    let (_, ok) = sim.retrieve(o.bob[1], "sip:*88@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    sim.run_for(secs(1));
    assert_eq!(sim.phones[calls[0].0].calls[calls[0].1].reinvites.len(), 1, "Alice's call, parked first");
    let (_, ok) = sim.retrieve(o.bob[1], "sip:*88%23@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(sim.stat(|s| s.retrieves.get()), 2);
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
}

#[test]
fn self_park_without_a_parker_or_from_another_tenant_is_refused() {
    let mut sim = Sim::new(1, Config::default(), 62);
    let o = sim.office(ACME);
    let stranger = sim.add_phone("102", BETA, Some("Mallory"));
    // No Referred-By: no way to know whose extension.
    let call = sim.start_park(o.alice, ACME, "", None);
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(o.alice, txn, secs(5));
    assert_eq!((r.code(), r.reason()), (Some(400), "Self Park Needs Referred-By".to_owned()), "{r:?}");
    // A parker of another tenant never names an extension of this one.
    let mallory = sim.phones[stranger].party();
    let call = sim.start_park(o.alice, ACME, "#", Some(&mallory));
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(o.alice, txn, secs(5));
    assert_eq!(r.code(), Some(403), "{r:?}");
    // And a self-retrieve from another tenant's phone touches nothing here.
    sim.park_by_bob(&o, o.carol);
    let (_, r) = sim.retrieve(stranger, "sip:*88@acme.example");
    assert_eq!(r.code(), Some(403), "{r:?}");
    assert_eq!(sim.stat(|s| s.parks.get()), 1);
    assert_eq!(sim.stat(|s| s.parked.get()), 1, "Carol's call is still parked");
    assert_eq!(sim.stat(|s| s.parks_rejected.get()), 2);
}

#[test]
fn require_timer_is_refused_420() {
    let mut sim = Sim::new(1, Config::default(), 19);
    let o = sim.office(ACME);
    let now = sim.now;
    let extra = vec!["Require: timer".to_owned(), "Session-Expires: 1800".to_owned()];
    let call = sim.phones[o.alice].invite(now, "sip:*68103@acme.example", &extra, true);
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(o.alice, txn, secs(5));
    assert_eq!(r.code(), Some(420), "{r:?}");
    assert_eq!(r.header("Unsupported").as_deref(), Some("timer"));
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    // Supported (not Required) timers are fine: no Session-Expires in the answer.
    let extra = vec!["Supported: timer".to_owned(), "Session-Expires: 1800".to_owned()];
    let call = sim.phones[o.dave].invite(now, "sip:*68103@acme.example", &extra, true);
    let txn = sim.phones[o.dave].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(o.dave, txn, secs(5));
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert!(r.header("Session-Expires").is_none() && r.header("Require").is_none(), "{r:?}");
}

#[test]
fn invite_with_replaces_retrieves_the_named_parked_call() {
    let mut sim = Sim::new(2, Config::default(), 20);
    let o = sim.office(ACME);
    let first = sim.park_by_bob(&o, o.alice);
    let second = sim.park_by_bob(&o, o.dave);
    let d = sim.phones[o.dave].calls[second].clone();
    let sipark_tag = d.remote_tag.clone().unwrap_or_default();
    let replaces = format!("Replaces: {};to-tag={sipark_tag};from-tag={}", d.call_id, d.local_tag);
    // Another tenant's phone naming the call: refused, nothing touched.
    let b = sim.add_phone("104", BETA, None);
    let now = sim.now;
    let call = sim.phones[b].invite(now, "sip:*88103@beta.example", std::slice::from_ref(&replaces), true);
    let txn = sim.phones[b].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(b, txn, secs(5)).code(), Some(403));
    // Unknown dialog: 481.
    let now = sim.now;
    let bad = vec![format!("Replaces: {};to-tag=nope;from-tag={}", d.call_id, d.local_tag)];
    let call = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &bad, true);
    let txn = sim.phones[o.carol].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(o.carol, txn, secs(5)).code(), Some(481));
    // The right dialog: Dave's call (not the oldest) is retrieved.
    let now = sim.now;
    let call = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", std::slice::from_ref(&replaces), true);
    let txn = sim.phones[o.carol].calls[call].invite_txn.unwrap_or_default();
    let ok = sim.final_of(o.carol, txn, secs(5));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_media_of(&sim, &ok.body(), o.dave, "Replaces names Dave's call");
    assert!(sim.phones[o.alice].calls[first].reinvites.is_empty(), "Alice stays parked");
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
    // The same dialog again: bridged now, so 486.
    let now = sim.now;
    let call = sim.phones[o.bob[0]].invite(now, "sip:*88103@acme.example", &[replaces], true);
    let txn = sim.phones[o.bob[0]].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(o.bob[0], txn, secs(5)).code(), Some(486));
}
