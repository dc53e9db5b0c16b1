//! Park timeout: recall to the parker's devices, or hang-up.

use std::time::Duration;

use sipark::proto::config::Config;

use crate::fixtures::{ACME, Office, assert_media_of};
use crate::harness::{Sim, ms, secs};
use crate::phone::CallState;

/// Parks Alice with Bob as parker; returns (call, time the park was confirmed).
fn park_alice(sim: &mut Sim, o: &Office) -> (usize, Duration) {
    let call = sim.park_by_bob(o, o.alice);
    let at = sim.phones[o.alice].calls[call].confirmed_at.unwrap_or_default();
    (call, at)
}

/// Waits for both of Bob's devices to ring with the recall; returns the
/// incoming call index on each.
fn wait_recall(sim: &mut Sim, o: &Office, max: Duration) -> [usize; 2] {
    let ok = sim.run_until(max, |s| o.bob.iter().all(|&b| !s.phones[b].incoming().is_empty()));
    assert!(ok, "both of the parker's devices should get the recall INVITE\n{}", sim.trace());
    let mut out = [0; 2];
    for (i, &b) in o.bob.iter().enumerate() {
        let inc = sim.phones[b].incoming();
        assert_eq!(inc.len(), 1, "one recall INVITE per device: {:?}", sim.phones[b].calls);
        out[i] = inc[0];
    }
    out
}

#[test]
fn recall_answered_by_one_device_bridges_and_cancels_the_other() {
    let mut sim = Sim::new(2, Config::default(), 21);
    let o = sim.office(ACME);
    for b in o.bob {
        sim.phones[b].auto_answer = false;
    }
    let (call, parked_at) = park_alice(&mut sim, &o);
    sim.wait_notifies(o.watch[0], 1, secs(2));
    let v = sim.last_notify(o.watch[0]).info().version;

    let rc = wait_recall(&mut sim, &o, secs(310));
    for (i, &b) in o.bob.iter().enumerate() {
        let p = &sim.phones[b];
        let inv = p.calls[rc[i]].invite.clone().unwrap_or_else(|| panic!("no INVITE kept"));
        let dt = inv.at.saturating_sub(parked_at);
        assert!(dt >= secs(300) && dt < secs(301), "recall at the park timeout, got {dt:?} after parking");
        assert_eq!(inv.ruri(), p.contact_uri(), "recall goes to each registered contact: {inv:?}");
        assert!(inv.body().is_empty(), "recall INVITE has no SDP: {inv:?}");
        let from = inv.header("From").unwrap_or_default();
        assert!(from.contains("sip:101@acme.example") && from.contains("tag="), "From is the parked party: {from}");
        let to = inv.header("To").unwrap_or_default();
        assert!(to.contains("sip:102@acme.example") && !to.contains("tag="), "To is the parker: {to}");
        assert!(inv.branch().starts_with("z9hG4bKsp"));
    }
    assert_eq!(sim.stat(|s| s.recalls.get()), 1);
    // Still listed while recalling: no NOTIFY yet.
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 1);

    // Device 0 answers.
    let now = sim.now;
    assert!(sim.phones[o.bob[0]].answer(now, rc[0]));
    let ok = sim.run_until(secs(10), |s| !s.phones[o.bob[1]].calls[rc[1]].cancels.is_empty());
    assert!(ok, "the other device gets CANCEL\n{}", sim.trace());
    sim.run_for(secs(2));
    sim.assert_call_state(o.bob[1], rc[1], CallState::Cancelled);

    // The parked leg was re-INVITEd with the answering device's offer.
    let a = &sim.phones[o.alice].calls[call];
    assert_eq!(a.reinvites.len(), 1, "{:?}", a.reinvites);
    assert_media_of(&sim, &a.reinvites[0].body(), o.bob[0], "re-INVITE of the parked leg on recall");
    // The answering device's ACK carries the parked leg's answer.
    let b0 = &sim.phones[o.bob[0]].calls[rc[0]];
    assert_eq!(b0.state, CallState::Confirmed, "{b0:?}");
    let ack = b0.acks.first().cloned().unwrap_or_else(|| panic!("no ACK at the answering device\n{}", sim.trace()));
    assert_media_of(&sim, &ack.body(), o.alice, "ACK to the recalled device");
    assert_eq!(ack.header("Content-Type").as_deref(), Some("application/sdp"), "{ack:?}");

    // NOTIFY: recalled.
    for w in o.watch {
        sim.wait_notifies(w, 2, secs(2));
        let info = sim.last_notify(w).info().clone();
        assert_eq!(info.version, v + 1, "{info:?}");
        assert!(info.parked().is_empty(), "{info:?}");
        assert_eq!(info.terminated().len(), 1);
        assert_eq!(info.terminated()[0].reason.as_deref(), Some("recalled"), "{info:?}");
    }
    assert_eq!(sim.stat(|s| s.recalls_answered.get()), 1);
    assert_eq!(sim.stat(|s| s.bridged.get()), 1);
    assert_eq!(sim.stat(|s| s.parked.get()), 0);

    // Bridged: Bob hangs up, Alice gets BYE.
    let bye = sim.hangup(o.bob[0], rc[0]);
    assert_eq!(bye.code(), Some(200), "{bye:?}");
    sim.wait_bye(o.alice, call, secs(2));
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);
    assert_eq!(sim.stat(|s| s.park_timeouts.get()), 0);
}

#[test]
fn recall_unanswered_hangs_up_the_parked_leg() {
    let mut sim = Sim::new(2, Config::default(), 22);
    let o = sim.office(ACME);
    for b in o.bob {
        sim.phones[b].auto_answer = false;
    }
    let (call, parked_at) = park_alice(&mut sim, &o);
    let rc = wait_recall(&mut sim, &o, secs(310));
    sim.wait_bye(o.alice, call, secs(40));
    let bye = sim.phones[o.alice].calls[call].byes[0].clone();
    let dt = bye.at.saturating_sub(parked_at);
    assert!(dt >= secs(330) && dt < secs(331), "BYE after park + recall timeout, got {dt:?}");
    sim.run_for(secs(2));
    for (i, &b) in o.bob.iter().enumerate() {
        let c = &sim.phones[b].calls[rc[i]];
        assert_eq!(c.cancels.len(), 1, "ringing devices get CANCEL: {c:?}");
        assert_eq!(c.state, CallState::Cancelled);
    }
    for w in o.watch {
        let info = sim.last_notify(w).info().clone();
        assert!(info.parked().is_empty(), "{info:?}");
        assert_eq!(info.terminated().len(), 1, "{info:?}");
        assert_eq!(info.terminated()[0].reason.as_deref(), Some("timeout"), "{info:?}");
    }
    assert_eq!(sim.stat(|s| s.park_timeouts.get()), 1);
    assert_eq!(sim.stat(|s| s.recalls_answered.get()), 0);
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
}

#[test]
fn recall_refused_by_every_device_hangs_up_at_once() {
    let mut sim = Sim::new(1, Config::default(), 23);
    let o = sim.office(ACME);
    for b in o.bob {
        sim.phones[b].auto_answer = false;
    }
    let (call, parked_at) = park_alice(&mut sim, &o);
    let rc = wait_recall(&mut sim, &o, secs(310));
    let now = sim.now;
    for (i, &b) in o.bob.iter().enumerate() {
        assert!(sim.phones[b].reject(now, rc[i], 486));
    }
    sim.wait_bye(o.alice, call, secs(5));
    let dt = sim.phones[o.alice].calls[call].byes[0].at.saturating_sub(parked_at);
    assert!(dt < secs(302), "every branch refused: hang up without waiting for the recall timeout ({dt:?})");
    sim.run_for(secs(1));
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert_eq!(info.terminated()[0].reason.as_deref(), Some("timeout"), "{info:?}");
}

#[test]
fn parker_unregistered_gets_bye_at_park_timeout() {
    let mut sim = Sim::new(2, Config::default(), 24);
    let o = sim.office(ACME);
    let r = sim.register_ok(o.bob[0], 0);
    assert_eq!(r.headers("Contact").len(), 1, "the other device stays: {r:?}");
    let r = sim.register_ok(o.bob[1], 0);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert!(r.headers("Contact").is_empty(), "no bindings left: {r:?}");
    let (call, parked_at) = park_alice(&mut sim, &o);
    sim.wait_bye(o.alice, call, secs(310));
    let dt = sim.phones[o.alice].calls[call].byes[0].at.saturating_sub(parked_at);
    assert!(dt >= secs(300) && dt < secs(301), "BYE right at the park timeout, got {dt:?}");
    sim.run_for(secs(1));
    for b in o.bob {
        assert!(sim.phones[b].incoming().is_empty(), "no recall to unregistered devices");
    }
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert_eq!(info.terminated()[0].reason.as_deref(), Some("timeout"), "{info:?}");
    assert_eq!(sim.stat(|s| s.recalls.get()), 0);
    assert_eq!(sim.stat(|s| s.park_timeouts.get()), 1);
}

#[test]
fn unknown_parker_is_omitted_and_times_out() {
    let mut sim = Sim::new(1, Config::default(), 25);
    let o = sim.office(ACME);
    let call = sim.park(o.alice, ACME, "103", None);
    let parked_at = sim.phones[o.alice].calls[call].confirmed_at.unwrap_or_default();
    let info = sim.last_notify(o.watch[0]).info().clone();
    let c = &info.parked()[0];
    assert_eq!(c.parker_uri, None, "<parker> omitted when unknown: {info:?}");
    assert!(!sim.last_notify(o.watch[0]).msg.body().contains("<parker"), "no <parker> element");
    sim.wait_bye(o.alice, call, secs(310));
    let dt = sim.phones[o.alice].calls[call].byes[0].at.saturating_sub(parked_at);
    assert!(dt >= secs(300) && dt < secs(301), "{dt:?}");
    let _ = ms(0);
}

#[test]
fn retrieve_while_recalling_cancels_the_recall() {
    let mut sim = Sim::new(2, Config::default(), 26);
    let o = sim.office(ACME);
    for b in o.bob {
        sim.phones[b].auto_answer = false;
    }
    let (call, _) = park_alice(&mut sim, &o);
    let rc = wait_recall(&mut sim, &o, secs(310));
    let (_, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "a call being recalled can still be retrieved: {ok:?}");
    sim.run_for(secs(2));
    for (i, &b) in o.bob.iter().enumerate() {
        let c = &sim.phones[b].calls[rc[i]];
        assert_eq!(c.cancels.len(), 1, "recall branches are CANCELled: {c:?}");
    }
    assert_eq!(sim.phones[o.alice].calls[call].reinvites.len(), 1);
    let info = sim.last_notify(o.watch[0]).info().clone();
    assert_eq!(info.terminated()[0].reason.as_deref(), Some("retrieved"), "{info:?}");
    // No recall timeout fires later.
    sim.run_for(secs(60));
    assert!(sim.phones[o.alice].calls[call].byes.is_empty(), "the bridged call stays up");
}

#[test]
fn recall_answered_by_both_devices_second_gets_ack_and_bye() {
    let mut sim = Sim::new(1, Config::default(), 27);
    let o = sim.office(ACME);
    let (call, _) = park_alice(&mut sim, &o);
    // Both devices answer at once (auto-answer).
    let rc = wait_recall(&mut sim, &o, secs(310));
    sim.run_for(secs(3));
    let c0 = &sim.phones[o.bob[0]].calls[rc[0]];
    let c1 = &sim.phones[o.bob[1]].calls[rc[1]];
    let (winner, loser) = if c0.byes.is_empty() { (o.bob[0], o.bob[1]) } else { (o.bob[1], o.bob[0]) };
    let (wc, lc) = if winner == o.bob[0] { (rc[0], rc[1]) } else { (rc[1], rc[0]) };
    assert!(c0.byes.is_empty() != c1.byes.is_empty(), "exactly one device is hung up: {c0:?}\n{c1:?}");
    let l = &sim.phones[loser].calls[lc];
    assert!(!l.acks.is_empty(), "the late 200 is ACKed before the BYE: {l:?}");
    assert_eq!(l.byes.len(), 1);
    let w = &sim.phones[winner].calls[wc];
    assert_eq!(w.state, CallState::Confirmed, "{w:?}");
    assert_media_of(&sim, &w.acks[0].body(), o.alice, "winner's ACK");
    assert_eq!(sim.phones[o.alice].calls[call].reinvites.len(), 1);
    assert_media_of(&sim, &sim.phones[o.alice].calls[call].reinvites[0].body(), winner, "parked leg's re-INVITE");
    assert_eq!(sim.stat(|s| s.recalls_answered.get()), 1);
}

#[test]
fn recall_200_without_contact_still_bridges_acks_and_cancels_the_other_device() {
    // RFC 3261 §12.1.2 makes the Contact of a 2xx the remote target; a
    // phone that leaves it out must not stall the recall: the dialog
    // targets the Request-URI the INVITE went to (the device's contact).
    let mut sim = Sim::new(2, Config::default(), 27);
    let o = sim.office(ACME);
    for b in o.bob {
        sim.phones[b].auto_answer = false;
    }
    sim.phones[o.bob[0]].omit_contact = true;
    let (call, _) = park_alice(&mut sim, &o);
    let rc = wait_recall(&mut sim, &o, secs(310));
    let now = sim.now;
    assert!(sim.phones[o.bob[0]].answer(now, rc[0]));
    let ok = sim.run_until(secs(10), |s| {
        s.phones[o.bob[0]].calls[rc[0]].state == CallState::Confirmed
            && !s.phones[o.bob[1]].calls[rc[1]].cancels.is_empty()
    });
    assert!(ok, "the 200 without Contact is ACKed and the other device CANCELled\n{}", sim.trace());
    assert_eq!(sim.phones[o.alice].calls[call].reinvites.len(), 1, "the parked leg is re-INVITEd");
    assert_eq!(sim.stat(|s| s.recalls_answered.get()), 1);
    assert_eq!((sim.stat(|s| s.bridged.get()), sim.stat(|s| s.parked.get())), (1, 0));
    // Bridged: Alice hangs up, and the BYE reaches the device at the URI
    // the recall INVITE went to.
    let bye = sim.hangup(o.alice, call);
    assert_eq!(bye.code(), Some(200), "{bye:?}");
    let ok = sim.run_until(secs(5), |s| !s.phones[o.bob[0]].calls[rc[0]].byes.is_empty());
    assert!(ok, "the recalled device gets the BYE\n{}", sim.trace());
    let b = &sim.phones[o.bob[0]];
    assert_eq!(b.calls[rc[0]].byes[0].ruri(), b.contact_uri());
    sim.run_for(secs(40));
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);
    assert_eq!(sim.stat(|s| s.transactions.get()), 0, "nothing left waiting");
    assert_eq!(sim.stat(|s| s.park_timeouts.get()), 0, "the recall does not start again");
}
