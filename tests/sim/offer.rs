//! Delayed offer (park and retrieve INVITEs without SDP) and CANCEL races.

use sipark::proto::config::Config;

use crate::fixtures::{ACME, assert_media_of, origin};
use crate::harness::{Sim, ms, secs};

#[test]
fn park_without_sdp_gets_a_hold_offer_and_the_ack_answer_parks_it() {
    let mut sim = Sim::new(2, Config::default(), 71);
    let o = sim.office(ACME);
    let bob = sim.phones[o.bob[0]].party();
    let now = sim.now;
    let extra = vec![format!("Referred-By: {bob}")];
    let call = sim.phones[o.alice].invite(now, "sip:*68103@acme.example", &extra, false);
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let ok = sim.final_of(o.alice, txn, secs(5));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    let offer = ok.body();
    assert_eq!(ok.header("Content-Type").as_deref(), Some("application/sdp"));
    assert_eq!(origin(&offer).0, "sipark", "sipark's own offer: {offer}");
    assert!(offer.contains("m=audio 9 RTP/AVP") && offer.contains("a=inactive"), "a hold offer: {offer}");
    sim.run_for(ms(300));
    assert_eq!(sim.stat(|s| s.parked.get()), 1, "parked once the ACK brought the answer\n{}", sim.trace());
    assert_eq!(sim.last_notify(o.watch[0]).info().parked().len(), 1);
    // The answer is what a retrieve and a session refresh work from.
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_media_of(&sim, &r.body(), o.alice, "retrieve of a delayed-offer park");
    let re = &sim.phones[o.alice].calls[call].reinvites;
    assert_eq!(re.len(), 1);
    assert_media_of(&sim, &re[0].body(), o.carol, "re-INVITE to the parked party");
}

#[test]
fn park_without_sdp_and_an_ack_without_answer_parks_nothing() {
    let mut sim = Sim::new(1, Config::default(), 72);
    let o = sim.office(ACME);
    sim.phones[o.alice].answer_in_ack = false;
    let now = sim.now;
    let call = sim.phones[o.alice].invite(now, "sip:*68103@acme.example", &[], false);
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(o.alice, txn, secs(5)).code(), Some(200));
    sim.wait_bye(o.alice, call, secs(2));
    assert_eq!(sim.stat(|s| s.parks.get()), 0);
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    assert!(sim.phones[o.watch[0]].notifies.is_empty(), "nothing was parked, nothing announced");
}

#[test]
fn park_body_that_is_not_sdp_gets_415() {
    let mut sim = Sim::new(1, Config::default(), 73);
    let o = sim.office(ACME);
    let now = sim.now;
    let extra = vec!["Content-Type: text/plain".to_owned()];
    let call = sim.phones[o.alice].invite(now, "sip:*68103@acme.example", &extra, false);
    // Replace the body: the helper sends none, so inject one by hand.
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let req = String::from_utf8_lossy(&sim.phones[o.alice].txns[txn].request).into_owned();
    let odd = req.replace("Content-Length: 0\r\n\r\n", "Content-Length: 5\r\n\r\nhello");
    let odd = odd.replace("z9hG4bK", "z9hG4bKodd");
    sim.phones[o.alice].send_raw(odd.into_bytes());
    sim.run_for(ms(200));
    let got: Vec<u16> = sim.phones[o.alice].received.iter().filter_map(|m| m.code()).collect();
    assert!(got.contains(&415), "a non-SDP body is refused 415: {got:?}\n{}", sim.trace());
}

#[test]
fn delayed_offer_retrieve_carries_the_offer_and_the_ack_answer_across() {
    let mut sim = Sim::new(2, Config::default(), 74);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let now = sim.now;
    let r = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], false);
    let txn = sim.phones[o.carol].calls[r].invite_txn.unwrap_or_default();
    let ok = sim.final_of(o.carol, txn, secs(10));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    // The parked leg was asked for an offer, and it reached the retriever.
    let re = sim.phones[o.alice].calls[call].reinvites.clone();
    assert_eq!(re.len(), 1);
    assert!(re[0].body().is_empty(), "re-INVITE without SDP: {:?}", re[0]);
    assert_media_of(&sim, &ok.body(), o.alice, "the parked party's offer in the retriever's 200");
    sim.run_for(ms(500));
    // The retriever's answer came back in the parked leg's ACK.
    let acks = &sim.phones[o.alice].calls[call].acks;
    let last = acks.last().unwrap_or_else(|| panic!("no ACK at the parked leg\n{}", sim.trace()));
    assert_media_of(&sim, &last.body(), o.carol, "the retriever's answer in the ACK");
    assert_eq!(sim.stat(|s| s.retrieves.get()), 1);
    assert_eq!(sim.stat(|s| s.bridged.get()), 1);
    // A hang-up on either side ends both.
    sim.hangup(o.carol, r);
    sim.wait_bye(o.alice, call, secs(2));
}

#[test]
fn delayed_offer_retrieve_without_answer_in_the_ack_ends_the_call() {
    let mut sim = Sim::new(1, Config::default(), 75);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    sim.phones[o.carol].answer_in_ack = false;
    let now = sim.now;
    let r = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], false);
    let txn = sim.phones[o.carol].calls[r].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(o.carol, txn, secs(10)).code(), Some(200));
    sim.wait_bye(o.alice, call, secs(2));
    sim.wait_bye(o.carol, r, secs(2));
    // The parked leg's 2xx was ACKed before its BYE.
    assert!(!sim.phones[o.alice].calls[call].acks.is_empty(), "ACK before BYE");
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);
}

#[test]
fn cancelled_delayed_offer_retrieve_answers_hold_in_the_ack_and_stays_parked() {
    let mut sim = Sim::new(1, Config::default(), 76);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let now = sim.now;
    let r = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], false);
    sim.phones[o.carol].cancel(now, r);
    let txn = sim.phones[o.carol].calls[r].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(o.carol, txn, secs(10)).code(), Some(487));
    sim.run_for(secs(1));
    let a = &sim.phones[o.alice].calls[call];
    assert_eq!(a.reinvites.len(), 1, "no second re-INVITE: the hold answer went in the ACK");
    let ack = a.acks.last().unwrap_or_else(|| panic!("no ACK\n{}", sim.trace()));
    assert!(ack.body().contains("a=inactive"), "hold answer in the ACK: {ack:?}");
    assert!(a.byes.is_empty());
    assert_eq!(sim.stat(|s| s.parked.get()), 1, "still parked");
    let (_, ok) = sim.retrieve(o.dave, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200));
}

#[test]
fn cancel_crossing_the_park_200_parks_nothing() {
    let mut sim = Sim::new(2, Config::default(), 77);
    let o = sim.office(ACME);
    // The phone holds its ACK until the first 2xx retransmission, and
    // CANCELs in between: the CANCEL reaches sipark before the ACK.
    sim.phones[o.alice].acks_to_skip = 1;
    let bob = sim.phones[o.bob[0]].party();
    let call = sim.start_park(o.alice, ACME, "103", Some(&bob));
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(o.alice, txn, secs(5)).code(), Some(200));
    let now = sim.now;
    let c = sim.phones[o.alice].cancel(now, call);
    sim.run_for(secs(2));
    assert_eq!(sim.phones[o.alice].txns[c].final_code, Some(200), "CANCEL is answered 200");
    sim.wait_bye(o.alice, call, secs(2));
    assert_eq!(sim.stat(|s| s.parks.get()), 0, "never parked\n{}", sim.trace());
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    for w in o.watch {
        assert!(sim.phones[w].notifies.is_empty(), "no NOTIFY for a call that was never parked");
    }
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(404), "nothing to retrieve: {r:?}");
}
