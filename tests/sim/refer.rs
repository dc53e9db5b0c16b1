//! REFER on a call sipark anchors: to the park code it parks the other leg
//! with no new INVITE (202, sipfrag NOTIFYs); any other REFER is relayed.

use sipark::proto::config::{Config, parse_tenants};

use crate::fixtures::{ACME, BETA, Office};
use crate::harness::{Sim, ms, secs};
use crate::phone::CallState;
use crate::wire::Msg;

/// Parks Alice (by Bob) on 103 and has Carol retrieve her; returns (Alice's
/// call, Carol's call).
fn bridged(sim: &mut Sim, o: &Office) -> (usize, usize) {
    let a = sim.park_by_bob(o, o.alice);
    let (c, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    sim.run_for(ms(300));
    (a, c)
}

/// Sends a REFER on `phone`'s `call` to `target`; returns the final response.
fn refer(sim: &mut Sim, phone: usize, call: usize, target: &str, referred_by: Option<&str>) -> Msg {
    let now = sim.now;
    let mut extra = vec![format!("Refer-To: <{target}>")];
    extra.extend(referred_by.map(|r| format!("Referred-By: {r}")));
    let t = sim.phones[phone].in_dialog(now, call, "REFER", &extra);
    let r = sim.final_of(phone, t, secs(5));
    sim.run_for(ms(300));
    r
}

/// The sipfrag NOTIFYs `phone` received: (status line, Subscription-State).
fn sipfrags(sim: &Sim, phone: usize) -> Vec<(String, String)> {
    sim.phones[phone]
        .notifies
        .iter()
        .filter(|n| n.msg.header("Event").as_deref() == Some("refer"))
        .map(|n| {
            let m = &n.msg;
            assert!(m.header("Content-Type").is_some_and(|t| t.starts_with("message/sipfrag")), "{m:?}");
            (m.body().lines().next().unwrap_or_default().to_owned(), m.header("Subscription-State").unwrap_or_default())
        })
        .collect()
}

#[test]
fn refer_to_the_park_code_parks_the_other_leg_without_an_invite() {
    let mut sim = Sim::new(2, Config::default(), 91);
    let o = sim.office(ACME);
    let (a, c) = bridged(&mut sim, &o);
    let before = sim.phones[o.watch[0]].notifies.len();
    let invites_to_alice = sim.phones[o.alice].calls.len();

    let carol = sim.phones[o.carol].party();
    let r = refer(&mut sim, o.carol, c, "sip:*68103@acme.example", Some(&carol));
    assert_eq!(r.code(), Some(202), "{r:?}");
    assert!(r.header("Contact").is_some_and(|c| c.contains("sipark@")), "202 carries sipark's Contact: {r:?}");
    let frags = sipfrags(&sim, o.carol);
    assert_eq!(
        frags,
        vec![
            ("SIP/2.0 100 Trying".to_owned(), "active;expires=60".to_owned()),
            ("SIP/2.0 200 OK".to_owned(), "terminated;reason=noresource".to_owned())
        ],
        "{}",
        sim.trace()
    );
    // Alice is still in her original dialog, put on hold by a re-INVITE.
    assert_eq!(sim.phones[o.alice].calls.len(), invites_to_alice, "no new INVITE to the parked party");
    let re = sim.phones[o.alice].calls[a].reinvites.clone();
    assert_eq!(re.len(), 2, "retrieve re-INVITE, then hold: {re:?}");
    let hold = re[1].body();
    assert!(hold.contains("a=inactive") || hold.contains("a=sendonly"), "hold SDP: {hold}");
    assert!(hold.contains("o=sipark"), "{hold}");
    sim.assert_call_state(o.alice, a, CallState::Confirmed);
    // 103's devices are told, with Carol as parker.
    sim.wait_notifies(o.watch[0], before + 1, secs(2));
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert_eq!(info.calls.len(), 1, "{info:?}");
    assert!(
        info.calls[0].parker_uri.as_deref().unwrap_or_default().contains("sip:104@acme.example"),
        "parker is the referrer: {info:?}"
    );
    assert!(info.calls[0].parked_uri.as_deref().unwrap_or_default().contains("sip:101@acme.example"), "{info:?}");
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);

    // Carol hangs up her leg: Alice stays parked.
    assert_eq!(sim.hangup(o.carol, c).code(), Some(200));
    sim.run_for(secs(1));
    sim.assert_call_state(o.alice, a, CallState::Confirmed);
    assert!(sim.phones[o.alice].calls[a].byes.is_empty());

    // And Dave retrieves her.
    let (_, ok) = sim.retrieve(o.dave, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}\n{}", sim.trace());
    assert_eq!(sim.phones[o.alice].calls[a].reinvites.len(), 3);
    assert_eq!(sim.stat(|s| s.bridged.get()), 1);
}

#[test]
fn refer_from_the_parked_side_parks_the_retriever_and_own_code_means_the_referrer() {
    let mut sim = Sim::new(1, Config::default(), 92);
    let o = sim.office(ACME);
    let (a, c) = bridged(&mut sim, &o);
    // Alice (101) refers Carol to `*68`: parked on Alice's own extension.
    let r = refer(&mut sim, o.alice, a, "sip:*68@acme.example", None);
    assert_eq!(r.code(), Some(202), "{r:?}");
    assert_eq!(sipfrags(&sim, o.alice).last().map(|f| f.0.clone()), Some("SIP/2.0 200 OK".to_owned()));
    let re = &sim.phones[o.carol].calls[c].reinvites;
    assert_eq!(re.len(), 1, "Carol's leg re-INVITEd to hold: {re:?}");
    // Alice's extension 101 has nobody registered; a retrieve from it works.
    let (_, ok) = sim.retrieve(o.dave, "sip:*88101@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}\n{}", sim.trace());
    assert_eq!(sim.phones[o.carol].calls[c].reinvites.len(), 2);
    // The referrer that never hangs up is hung up by sipark.
    sim.run_for(secs(33));
    assert!(!sim.phones[o.alice].calls[a].byes.is_empty(), "referrer leg ended\n{}", sim.trace());
}

#[test]
fn refer_park_refusals_keep_the_bridge() {
    let text = format!("[[tenant]]\ndomain = \"{ACME}\"\nmax_parks_per_ext = 1\n[[tenant]]\ndomain = \"{BETA}\"\n");
    let base = Config::default();
    let (defaults, tenants) = parse_tenants(&text, base.defaults.clone()).unwrap_or_else(|e| panic!("{e}"));
    let mut sim = Sim::new(2, Config { defaults, tenants, ..base }, 93);
    let o = sim.office(ACME);
    let b = sim.office(BETA);
    let (a, c) = bridged(&mut sim, &o);
    // Another call parked on 105 fills it (max 1).
    sim.park(o.dave, ACME, "105", Some("<sip:102@acme.example>"));
    let cases = [("sip:*68103@beta.example", 403), ("sip:*68105@acme.example", 486), ("sip:*68bad!@acme.example", 404)];
    for (target, code) in cases {
        let r = refer(&mut sim, o.carol, c, target, None);
        assert_eq!(r.code(), Some(code), "{target}: {r:?}");
    }
    assert_eq!(sim.stat(|s| s.bridged.get()), 1, "still bridged");
    assert!(sim.phones[b.watch[0]].notifies.is_empty(), "beta untouched");
    assert_eq!(sim.phones[o.alice].calls[a].reinvites.len(), 1, "no hold re-INVITE");
    // REFER on a dialog that is only parked: refused.
    let dave_call = sim.phones[o.dave].calls.len() - 1;
    let r = refer(&mut sim, o.dave, dave_call, "sip:*68103@acme.example", None);
    assert_eq!(r.code(), Some(403), "{r:?}");
}

#[test]
fn other_refers_and_their_notifies_are_relayed() {
    let mut sim = Sim::new(2, Config::default(), 94);
    let o = sim.office(ACME);
    let (a, c) = bridged(&mut sim, &o);
    let carol = sim.phones[o.carol].party();
    let r = refer(&mut sim, o.carol, c, "sip:200@acme.example", Some(&carol));
    assert_eq!(r.code(), Some(202), "Alice's 202 relayed back: {r:?}");
    let got = sim.phones[o.alice].calls[a].in_dialog.clone();
    let refer_msg = got.iter().find(|m| m.method().as_deref() == Some("REFER")).expect("REFER relayed to Alice");
    assert_eq!(refer_msg.header("Refer-To").as_deref(), Some("<sip:200@acme.example>"), "{refer_msg:?}");
    assert!(refer_msg.header("Referred-By").is_some_and(|r| r.contains("sip:104@")), "{refer_msg:?}");
    assert!(refer_msg.header("Contact").is_some(), "REFER carries sipark's Contact: {refer_msg:?}");
    // Alice reports the transfer; the NOTIFY goes to Carol.
    let now = sim.now;
    let extra = vec!["Event: refer".to_owned(), "Subscription-State: terminated;reason=noresource".to_owned()];
    let t =
        sim.phones[o.alice].in_dialog_with(now, a, "NOTIFY", &extra, Some(("message/sipfrag", "SIP/2.0 200 OK\r\n")));
    assert_eq!(sim.final_of(o.alice, t, secs(5)).code(), Some(200));
    sim.run_for(ms(300));
    assert_eq!(
        sipfrags(&sim, o.carol),
        vec![("SIP/2.0 200 OK".to_owned(), "terminated;reason=noresource".to_owned())],
        "{}",
        sim.trace()
    );
}
