//! A bridged call: re-INVITE, UPDATE and INFO relayed between the legs with
//! each leg's own CSeq, glare answered 491, and the retrieve re-INVITE sent
//! again after the §14.1 delay when it meets glare.

use sipark::proto::config::Config;

use crate::fixtures::{ACME, Office, assert_media_of};
use crate::harness::{Sim, ms, secs};

/// Parks Alice (by Bob) and has Carol retrieve her; returns (Alice's call,
/// Carol's call).
fn bridged(sim: &mut Sim, o: &Office) -> (usize, usize) {
    let a = sim.park_by_bob(o, o.alice);
    let (c, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    (a, c)
}

#[test]
fn reinvites_are_relayed_both_ways_with_per_leg_cseq() {
    let mut sim = Sim::new(2, Config::default(), 81);
    let o = sim.office(ACME);
    let (a, c) = bridged(&mut sim, &o);
    // Alice's leg already carried the retrieve re-INVITE (CSeq 1 from sipark).
    assert_eq!(sim.phones[o.alice].calls[a].reinvites.len(), 1);

    let now = sim.now;
    let t = sim.phones[o.alice].reinvite(now, a);
    let ok = sim.final_of(o.alice, t, secs(5));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_media_of(&sim, &ok.body(), o.carol, "Carol's answer relayed to Alice");
    sim.run_for(ms(300));
    let got = sim.phones[o.carol].calls[c].reinvites.clone();
    assert_eq!(got.len(), 1, "Carol got the re-INVITE\n{}", sim.trace());
    assert_media_of(&sim, &got[0].body(), o.alice, "Alice's offer relayed to Carol");
    assert_eq!(got[0].cseq(), (1, "INVITE".to_owned()), "CSeq numbered on Carol's leg");
    let acks = &sim.phones[o.carol].calls[c].acks;
    assert!(acks.iter().any(|m| m.cseq().0 == 1), "Alice's ACK went across: {acks:?}");

    let now = sim.now;
    let t = sim.phones[o.carol].reinvite(now, c);
    assert_eq!(sim.final_of(o.carol, t, secs(5)).code(), Some(200));
    sim.run_for(ms(300));
    let re = &sim.phones[o.alice].calls[a].reinvites;
    assert_eq!(re.len(), 2);
    assert_eq!(re[1].cseq().0, 2, "Alice's leg continues its own numbering");
    assert_media_of(&sim, &re[1].body(), o.carol, "Carol's offer relayed to Alice");
    assert_eq!(sim.stat(|s| s.bridged.get()), 1);
}

#[test]
fn info_and_update_are_relayed_with_their_answers() {
    let mut sim = Sim::new(2, Config::default(), 82);
    let o = sim.office(ACME);
    let (a, c) = bridged(&mut sim, &o);
    let now = sim.now;
    let dtmf = "Signal=5\r\nDuration=160\r\n";
    let extra = vec!["Info-Package: dtmf".to_owned()];
    let t = sim.phones[o.carol].in_dialog_with(now, c, "INFO", &extra, Some(("application/dtmf-relay", dtmf)));
    assert_eq!(sim.final_of(o.carol, t, secs(5)).code(), Some(200));
    let info =
        sim.phones[o.alice].calls[a].in_dialog.last().cloned().unwrap_or_else(|| panic!("no INFO\n{}", sim.trace()));
    assert_eq!(info.method().as_deref(), Some("INFO"));
    assert_eq!(info.body(), dtmf);
    assert_eq!(info.header("Content-Type").as_deref(), Some("application/dtmf-relay"));
    assert_eq!(info.header("Info-Package").as_deref(), Some("dtmf"));
    // The far end's refusal comes back as it is.
    sim.phones[o.alice].info_answer = 415;
    let now = sim.now;
    let t = sim.phones[o.carol].in_dialog_with(now, c, "INFO", &[], Some(("application/x-odd", "x")));
    assert_eq!(sim.final_of(o.carol, t, secs(5)).code(), Some(415));
    // UPDATE with an offer: relayed, answered with the other side's media.
    let now = sim.now;
    let sdp = sim.phones[o.alice].calls[a].local_sdp.clone();
    let t = sim.phones[o.alice].in_dialog_with(now, a, "UPDATE", &[], Some(("application/sdp", &sdp)));
    let ok = sim.final_of(o.alice, t, secs(5));
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_media_of(&sim, &ok.body(), o.carol, "UPDATE answer");
    let up = sim.phones[o.carol].calls[c].in_dialog.last().cloned().unwrap_or_else(|| panic!("no UPDATE"));
    assert_eq!(up.method().as_deref(), Some("UPDATE"));
    assert_media_of(&sim, &up.body(), o.alice, "UPDATE offer");
}

#[test]
fn glare_on_a_bridged_call_is_answered_491_and_the_refusal_is_relayed() {
    let mut sim = Sim::new(2, Config::default(), 83);
    let o = sim.office(ACME);
    let (a, c) = bridged(&mut sim, &o);
    // Both sides re-INVITE at the same instant: the first to arrive is
    // relayed, the second is glare.
    let now = sim.now;
    let ta = sim.phones[o.alice].reinvite(now, a);
    let tc = sim.phones[o.carol].reinvite(now, c);
    let fa = sim.final_of(o.alice, ta, secs(5)).code();
    let fc = sim.final_of(o.carol, tc, secs(5)).code();
    let mut codes = [fa, fc];
    codes.sort();
    assert_eq!(codes, [Some(200), Some(491)], "one goes through, the other meets glare\n{}", sim.trace());
    // The side refused retries later (§14.1) and goes through.
    sim.run_for(secs(2));
    let (p, call) = if fa == Some(491) { (o.alice, a) } else { (o.carol, c) };
    let now = sim.now;
    let t = sim.phones[p].reinvite(now, call);
    assert_eq!(sim.final_of(p, t, secs(5)).code(), Some(200));
    // A 491 from the far end goes back to the sender unchanged.
    sim.phones[o.carol].reinvite_answer = Some(491);
    sim.run_for(ms(300));
    let now = sim.now;
    let t = sim.phones[o.alice].reinvite(now, a);
    assert_eq!(sim.final_of(o.alice, t, secs(5)).code(), Some(491));
    assert_eq!(sim.stat(|s| s.bridged.get()), 1, "the call stays up");
}

#[test]
fn retrieve_meeting_glare_is_sent_again_after_the_delay() {
    let mut sim = Sim::new(1, Config::default(), 84);
    let o = sim.office(ACME);
    let a = sim.park_by_bob(&o, o.alice);
    sim.phones[o.alice].reinvite_script.extend([491, 491]);
    let (_, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "bridged on the third try\n{}", sim.trace());
    let re = &sim.phones[o.alice].calls[a].reinvites;
    assert_eq!(re.len(), 3, "two 491s, then 200");
    for w in re.windows(2) {
        let gap = w[1].at.saturating_sub(w[0].at);
        assert!(gap <= secs(2) + ms(100), "retried within the §14.1 delay (0-2 s), gap {gap:?}");
    }
    assert_eq!(re[2].cseq().0, 3, "each try is a new transaction on the leg");
    // Glare that never clears: the retriever gets 491 and the call stays parked.
    let mut sim = Sim::new(1, Config::default(), 85);
    let o = sim.office(ACME);
    sim.park_by_bob(&o, o.alice);
    sim.phones[o.alice].reinvite_answer = Some(491);
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(491), "{r:?}");
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
}
