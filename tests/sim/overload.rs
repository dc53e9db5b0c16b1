//! Overload control (docs/decisions/0021-overload-control.md): the shard
//! is told the receive path's queueing delay (`Shard::handle_load`, which
//! the I/O layer calls with each batch); over the bound it answers new
//! out-of-dialog work 503 with Retry-After and keeps serving what finishes
//! work already admitted.

use std::time::Duration;

use sipark::proto::config::Config;
use sipark::proto::overload::{Bounds, SHARE_ONE, admission_hash, admission_key};

use crate::fixtures::{ACME, Office};
use crate::harness::{Sim, ms, secs};
use crate::phone::CallState;
use crate::wire::Msg;

/// The bounds these tests run with: overloaded from 4 ms (at once: no
/// window), everything admitted again at 2 ms, the state left after 1 s
/// under 2 ms.
fn bounds() -> Bounds {
    Bounds { high: ms(4), low: ms(2), window: Duration::ZERO, hold: secs(1), retry_after: (4, 8) }
}

fn config() -> Config {
    let mut cfg = Config::default();
    cfg.limits.overload = Some(bounds());
    cfg
}

impl Sim {
    /// Tells every shard the queueing delay `delay`, now.
    fn load(&mut self, delay: Duration) {
        let now = self.now;
        for s in &mut self.shards {
            s.handle_load(now, delay);
        }
    }

    /// Starts a park of `phone`'s call on 103 by the office's Bob and
    /// returns the call and its INVITE's final response.
    fn try_park(&mut self, o: &Office, phone: usize) -> (usize, Msg) {
        let bob = self.phones[o.bob[0]].party();
        let call = self.start_park(phone, ACME, "103", Some(&bob));
        let txn = self.phones[phone].calls[call].invite_txn.unwrap_or_default();
        (call, self.final_of(phone, txn, secs(40)))
    }

    fn try_register(&mut self, phone: usize) -> Msg {
        self.register_ok(phone, 3600)
    }
}

/// Sends `n` REGISTERs of `phone` and checks that each is answered as the
/// admission hash of its Call-ID and CSeq says, with `refused` of
/// `SHARE_ONE` refused; returns how many were shed.
fn by_the_hash(sim: &mut Sim, phone: usize, n: usize, refused: u32) -> u64 {
    let key = admission_key(&config().nonce_secret);
    let mut shed = 0;
    for i in 0..n {
        let r = sim.try_register(phone);
        let call_id = r.header("Call-ID").unwrap_or_else(|| panic!("no Call-ID in {r:?}"));
        let cseq: u32 = r
            .header("CSeq")
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no CSeq in {r:?}"));
        let hash = admission_hash(key, call_id.trim().as_bytes(), cseq);
        if hash >> 16 < refused {
            assert_shed(&r, &format!("REGISTER {i}, hash {hash:#010x}"));
            let to = r.header("To").unwrap_or_default();
            assert!(to.ends_with(&format!(";tag=ovl-{hash:08x}")), "the tag XDP writes too: {to}");
            shed += 1;
        } else {
            assert_eq!(r.code(), Some(200), "REGISTER {i}, hash {hash:#010x}: {r:?}");
        }
    }
    shed
}

/// A 503 of overload control: its Retry-After, within the configured range.
fn assert_shed(r: &Msg, what: &str) -> u32 {
    assert_eq!(r.code(), Some(503), "{what}: {r:?}");
    assert_eq!(r.reason(), "Service Unavailable", "{what}");
    let secs: u32 = r
        .header("Retry-After")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After in {r:?}"));
    assert!((4..=8).contains(&secs), "{what}: Retry-After {secs} outside 4..=8");
    secs
}

#[test]
fn over_the_bound_new_parks_retrieves_and_registers_get_503_with_retry_after() {
    let mut sim = Sim::new(1, config(), 61);
    let o = sim.office(ACME);
    sim.park_by_bob(&o, o.alice);
    sim.load(ms(5));
    assert_eq!(sim.stat(|s| s.overloaded.get()), 1);
    assert_eq!(sim.stat(|s| s.overload_entered.get()), 1);
    assert_eq!(sim.stat(|s| s.queue_delay_us.get()), 5000);

    let (_, r) = sim.try_park(&o, o.dave);
    assert_shed(&r, "park");
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_shed(&r, "retrieve over the high bound");
    let r = sim.try_register(o.carol);
    assert_shed(&r, "REGISTER");
    // OPTIONS is how proxies see whether sipark is up: always answered.
    let now = sim.now;
    let txn = sim.phones[o.carol].request(now, "OPTIONS", "sip:acme.example", &[], None);
    assert_eq!(sim.final_of(o.carol, txn, secs(2)).code(), Some(200), "OPTIONS is not shed");

    assert_eq!(sim.stat(|s| s.requests_shed.get()), 3);
    assert_eq!(sim.stat(|s| s.overload_rejects.get()), 0, "the caps' counter is apart");
    assert_eq!(sim.stat(|s| s.parks.get()), 1, "only the park from before");
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
    assert_eq!(sim.stat(|s| s.retrieves.get()), 0);
    // Refused statelessly: nothing at work, only the OPTIONS lingers.
    sim.run_for(ms(100));
    assert_eq!(sim.stat(|s| s.transactions.get()), 0);
}

#[test]
fn retry_after_is_drawn_from_its_range() {
    let mut sim = Sim::new(1, config(), 62);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    sim.load(ms(5));
    let values: Vec<u32> = (0..24).map(|i| assert_shed(&sim.try_register(p), &format!("REGISTER {i}"))).collect();
    assert!(values.iter().any(|&v| v != values[0]), "spread, not one value: {values:?}");
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 24);
}

#[test]
fn a_parked_call_is_hung_up_and_its_notifies_answered_while_overloaded() {
    let mut sim = Sim::new(1, config(), 63);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    let notifies = sim.phones[o.watch[0]].notifies.len();
    sim.load(ms(50));
    // In-dialog BYE of the parked call; the clearing NOTIFYs' 200s are
    // responses: both served.
    let r = sim.hangup(o.alice, call);
    assert_eq!(r.code(), Some(200), "{r:?}");
    sim.run_for(secs(1));
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    assert_eq!(sim.stat(|s| s.hangups.get()), 1);
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), notifies + 1, "the clearing NOTIFY");
    assert_eq!(sim.stat(|s| s.notifies_failed.get()), 0, "its 200s were taken");
    assert_eq!(sim.stat(|s| s.notifies_retransmitted.get()), 0);
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 0);
}

#[test]
fn an_admitted_park_is_completed_by_its_ack_while_overloaded() {
    let mut sim = Sim::new(1, config(), 64);
    let o = sim.office(ACME);
    let bob = sim.phones[o.bob[0]].party();
    let call = sim.start_park(o.alice, ACME, "103", Some(&bob));
    // The 200 is on its way back: overload starts before the ACK arrives.
    sim.expect(secs(1), "the park's 200", |s| s.phones[o.alice].calls[call].state == CallState::Confirmed);
    assert_eq!(sim.stat(|s| s.parks.get()), 0, "the ACK is still on the wire");
    sim.load(ms(50));
    sim.run_for(ms(200));
    assert_eq!(sim.stat(|s| s.parks.get()), 1, "the ACK completed the park");
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 0);
}

#[test]
fn a_retrieve_under_way_completes_while_overloaded() {
    let mut sim = Sim::new(1, config(), 65);
    let o = sim.office(ACME);
    let parked = sim.park_by_bob(&o, o.alice);
    let now = sim.now;
    let call = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    // The parked leg has the re-INVITE and answers it; its 200 (a
    // response), sipark's 200 to Carol and her ACK all arrive overloaded.
    sim.expect(secs(1), "the re-INVITE", |s| !s.phones[o.alice].calls[parked].reinvites.is_empty());
    sim.load(ms(50));
    let txn = sim.phones[o.carol].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(o.carol, txn, secs(5));
    assert_eq!(r.code(), Some(200), "{r:?}");
    sim.run_for(ms(200));
    assert_eq!(sim.stat(|s| s.retrieves.get()), 1);
    assert_eq!(sim.stat(|s| s.bridged.get()), 1);
    // In-dialog requests of the bridged call are relayed: BYE.
    let r = sim.hangup(o.carol, call);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 0);
}

#[test]
fn a_pending_retrieve_is_cancelled_while_overloaded() {
    let mut sim = Sim::new(1, config(), 66);
    let o = sim.office(ACME);
    let parked = sim.park_by_bob(&o, o.alice);
    sim.phones[o.alice].reinvite_answer = None;
    let now = sim.now;
    let call = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
    sim.expect(secs(1), "the re-INVITE", |s| !s.phones[o.alice].calls[parked].reinvites.is_empty());
    sim.load(ms(50));
    let now = sim.now;
    let cancel = sim.phones[o.carol].cancel(now, call);
    assert_eq!(sim.final_of(o.carol, cancel, secs(2)).code(), Some(200), "CANCEL is served");
    let txn = sim.phones[o.carol].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(o.carol, txn, secs(5)).code(), Some(487));
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 0);
}

#[test]
fn between_the_bounds_retrieves_pass_while_new_parks_are_shed() {
    let mut sim = Sim::new(1, config(), 67);
    let o = sim.office(ACME);
    sim.park_by_bob(&o, o.alice);
    sim.load(ms(9));
    // Just under the high bound: almost no new work, but a retrieve ends a
    // parked call and is admitted.
    sim.load(Duration::from_micros(3990));
    let (_, r) = sim.try_park(&o, o.dave);
    assert_shed(&r, "park between the bounds");
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(sim.stat(|s| s.retrieves.get()), 1);
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 1);
}

#[test]
fn admission_resumes_under_the_low_bound_and_the_state_ends_after_the_hold() {
    let mut sim = Sim::new(1, config(), 68);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    let codes = |sim: &mut Sim, n: usize| -> Vec<u16> {
        (0..n).map(|_| sim.try_register(p).code().unwrap_or_default()).collect()
    };
    // Normal: under the high bound, everything is admitted.
    sim.load(ms(3));
    assert_eq!(codes(&mut sim, 4), [200; 4]);
    assert_eq!(sim.stat(|s| s.overloaded.get()), 0);
    sim.load(ms(4));
    assert_eq!(codes(&mut sim, 2), [503; 2], "at the high bound: overloaded");
    // Overloaded, halfway between the bounds: half of the requests, those
    // whose admission hash (Call-ID and CSeq) falls in the upper half.
    sim.load(ms(3));
    let halfway = by_the_hash(&mut sim, p, 8, SHARE_ONE / 2);
    assert!((1..8).contains(&halfway), "{halfway} of 8 shed: some, not all");
    // At the low bound, all of them, though the state lasts.
    sim.load(ms(2));
    assert_eq!(codes(&mut sim, 3), [200; 3]);
    assert_eq!(sim.stat(|s| s.overloaded.get()), 1);
    // Under the low bound for less than the hold: still overloaded, so a
    // delay between the bounds sheds again (and restarts the hold).
    sim.load(ms(1));
    sim.run_for(ms(900));
    sim.load(ms(1));
    sim.load(ms(3));
    let again = by_the_hash(&mut sim, p, 4, SHARE_ONE / 2);
    sim.load(ms(1));
    sim.run_for(ms(999));
    sim.load(ms(1));
    assert_eq!(sim.stat(|s| s.overloaded.get()), 1, "999 ms under the low bound");
    sim.run_for(ms(1));
    sim.load(ms(1));
    assert_eq!(sim.stat(|s| s.overloaded.get()), 0, "the hold is over");
    // Normal again: between the bounds admits everything.
    sim.load(ms(3));
    assert_eq!(codes(&mut sim, 4), [200; 4]);
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 2 + halfway + again);
    assert_eq!(sim.stat(|s| s.overload_entered.get()), 1, "one episode: no flapping");
    assert!(sim.stat(|s| s.overloaded_us.get()) >= 1_900_000, "the two holds and more, overloaded");
}

#[test]
fn a_refused_invite_retransmitted_later_is_refused_again() {
    let mut sim = Sim::new(1, config(), 69);
    let o = sim.office(ACME);
    sim.load(ms(5));
    let (call, r) = sim.try_park(&o, o.alice);
    assert_shed(&r, "park");
    // The worker keeps up again and the state ends.
    sim.load(Duration::ZERO);
    sim.run_for(secs(2));
    sim.load(Duration::ZERO);
    assert_eq!(sim.stat(|s| s.overloaded.get()), 0);
    // A copy of the refused INVITE (its 503 lost, or the copy queued):
    // refused again, not parked late.
    let txn = sim.phones[o.alice].calls[call].invite_txn.unwrap_or_default();
    let before = sim.phones[o.alice].txns[txn].responses.len();
    sim.phones[o.alice].retransmit(txn);
    sim.run_for(ms(100));
    let responses = &sim.phones[o.alice].txns[txn].responses;
    assert_eq!(responses.len(), before + 1, "answered again");
    assert_shed(&responses[before], "the retransmission");
    assert_eq!(sim.stat(|s| s.shed_again.get()), 1);
    assert_eq!(sim.stat(|s| s.parks.get()), 0);
    // A new park is admitted.
    let (_, r) = sim.try_park(&o, o.dave);
    assert_eq!(r.code(), Some(200), "{r:?}");
    // After 64·T1 no copy can come any more: the refusal is forgotten.
    sim.run_for(secs(33));
    sim.load(Duration::ZERO);
    sim.phones[o.alice].retransmit(txn);
    sim.run_for(ms(100));
    let last = sim.phones[o.alice].txns[txn].responses.last().cloned();
    assert_eq!(last.and_then(|m| m.code()), Some(200), "admitted as a new request");
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 2);
}

#[test]
fn a_delay_shorter_than_the_window_sheds_nothing() {
    let mut cfg = Config::default();
    cfg.limits.overload = Some(Bounds { window: ms(50), ..bounds() });
    let mut sim = Sim::new(1, cfg, 71);
    let p = sim.add_phone("104", ACME, Some("Carol"));
    // A stall the next turns drain: over the bound for 40 ms only.
    sim.load(ms(30));
    sim.run_for(ms(40));
    sim.load(ms(6));
    assert_eq!(sim.try_register(p).code(), Some(200), "a burst is not overload");
    sim.load(ms(1));
    // A standing queue: over the bound for the whole window.
    sim.load(ms(5));
    sim.run_for(ms(50));
    sim.load(ms(5));
    assert_shed(&sim.try_register(p), "after the window");
    assert_eq!(sim.stat(|s| s.overload_entered.get()), 1);
}

#[test]
fn with_overload_control_off_nothing_is_shed() {
    let mut cfg = Config::default();
    cfg.limits.overload = None;
    let mut sim = Sim::new(1, cfg, 70);
    let o = sim.office(ACME);
    sim.load(secs(5));
    let (_, r) = sim.try_park(&o, o.alice);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(sim.stat(|s| s.overloaded.get()), 0);
    assert_eq!(sim.stat(|s| s.requests_shed.get()), 0);
}

#[test]
fn the_refused_share_is_handed_out_for_xdp_when_it_changes_and_renewed() {
    let mut sim = Sim::new(1, config(), 70);
    let t1 = Config::default().timers.t1;
    let poll = |sim: &mut Sim| {
        let now = sim.now;
        sim.shards[0].poll_shed(now).map(|s| (s.refuse, s.ack_for))
    };
    sim.load(ms(1));
    assert_eq!(poll(&mut sim), None, "nothing refused, nothing to tell");
    sim.load(ms(9));
    assert_eq!(poll(&mut sim), Some((SHARE_ONE, 64 * t1)), "overloaded: all new work refused");
    assert_eq!(poll(&mut sim), None, "told once");
    sim.load(ms(3));
    assert_eq!(poll(&mut sim), Some((SHARE_ONE / 2, 64 * t1)), "halfway: half");
    sim.run_for(32 * t1 - ms(1));
    sim.load(ms(3));
    assert_eq!(poll(&mut sim), None, "the ACK window still holds");
    sim.run_for(ms(1));
    sim.load(ms(3));
    assert_eq!(poll(&mut sim), Some((SHARE_ONE / 2, 64 * t1)), "renewed before the ACK window ends");
    sim.load(ms(1));
    sim.run_for(secs(1));
    sim.load(ms(1));
    assert_eq!(sim.stat(|s| s.overloaded.get()), 0);
    assert_eq!(poll(&mut sim), Some((0, 64 * t1)), "no longer refusing: told at once");
    assert_eq!(poll(&mut sim), None);
}

#[test]
fn with_xdp_screening_a_new_invite_is_refused_only_over_the_high_bound() {
    let mut sim = Sim::new(1, config(), 71);
    let o = sim.office(ACME);
    let p = sim.add_phone("105", ACME, Some("Erin"));
    sim.shards[0].set_nic_screening(true);
    sim.load(ms(9));
    // Just under the high bound the share refuses almost everything: XDP
    // has applied it to INVITEs already, so the shard does not again.
    sim.load(Duration::from_micros(3990));
    let (_, r) = sim.try_park(&o, o.dave);
    assert_eq!(r.code(), Some(200), "a park XDP let through: {r:?}");
    // REGISTERs are not screened by XDP in every mode: the share applies.
    let shed = by_the_hash(&mut sim, p, 8, SHARE_ONE - SHARE_ONE / 200);
    assert!(shed >= 6, "{shed} of 8 REGISTERs refused at a 99.5% share");
    // At the high bound, everything new is refused.
    sim.load(ms(4));
    let (_, r) = sim.try_park(&o, o.alice);
    assert_shed(&r, "park at the high bound");
}
