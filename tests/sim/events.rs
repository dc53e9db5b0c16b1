//! Park-lifecycle events (`Shard::poll_event`): one per change of a call's
//! place in the park, in order, whatever path the change took, and the
//! counters that follow from them. Also: the same seed gives the same run,
//! byte for byte.

use sipark::proto::config::Config;
use sipark::proto::shard::Lifecycle::{self, *};

use crate::fixtures::{ACME, Office};
use crate::harness::{Net, Sim, ms, secs};

/// The events of every call, in call order (the order each first appeared).
fn per_call(sim: &Sim) -> Vec<Vec<Lifecycle>> {
    let mut calls: Vec<(sipark::proto::ids::CallId, Vec<Lifecycle>)> = Vec::new();
    for e in sim.lifecycle() {
        match calls.iter_mut().find(|(c, _)| *c == e.call) {
            Some((_, v)) => v.push(e.what),
            None => calls.push((e.call, vec![e.what])),
        }
    }
    calls.into_iter().map(|(_, v)| v).collect()
}

fn office(seed: u64) -> (Sim, Office) {
    let mut sim = Sim::new(2, Config::default(), seed);
    let o = sim.office(ACME);
    (sim, o)
}

#[test]
fn park_retrieve_and_the_bridged_hangup() {
    let (mut sim, o) = office(71);
    sim.park_by_bob(&o, o.alice);
    assert_eq!(per_call(&sim), [vec![Parked]], "an answered park is not parked until its ACK");
    let (call, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(200));
    assert_eq!(per_call(&sim), [vec![Parked, RetrieveStarted, Retrieved]]);
    sim.hangup(o.carol, call);
    sim.run_for(secs(1));
    assert_eq!(per_call(&sim), [vec![Parked, RetrieveStarted, Retrieved]], "a bridged call has left the park");
    assert_eq!((sim.stat(|s| s.parks.get()), sim.stat(|s| s.retrieves.get())), (1, 1));
}

#[test]
fn a_refused_retrieve_parks_the_call_again_and_the_party_hangs_up() {
    let (mut sim, o) = office(72);
    let call = sim.park_by_bob(&o, o.alice);
    sim.phones[o.alice].reinvite_answer = Some(486);
    let (_, r) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(r.code(), Some(480), "{r:?}");
    sim.hangup(o.alice, call);
    assert_eq!(per_call(&sim), [vec![Parked, RetrieveStarted, RetrieveFailed, HungUp]]);
    assert_eq!(sim.stat(|s| s.hangups.get()), 1);
    assert_eq!(sim.stat(|s| s.retrieves_failed.get()), 1);
}

#[test]
fn recall_answered_and_recall_unanswered() {
    let (mut sim, o) = office(73);
    sim.park_by_bob(&o, o.alice);
    // Bob's first device answers the recall.
    sim.run_until(secs(310), |s| !s.phones[o.bob[0]].incoming().is_empty());
    sim.run_for(secs(2));
    assert_eq!(per_call(&sim), [vec![Parked, RecallStarted, RecallAnswered]]);

    let (mut sim, o) = office(74);
    for b in o.bob {
        sim.phones[b].auto_answer = false;
    }
    sim.park_by_bob(&o, o.alice);
    sim.run_for(secs(340));
    assert_eq!(per_call(&sim), [vec![Parked, RecallStarted, TimedOut]]);
    assert_eq!((sim.stat(|s| s.recalls.get()), sim.stat(|s| s.park_timeouts.get())), (1, 1));
}

#[test]
fn a_cancelled_or_unacked_park_was_never_parked() {
    let (mut sim, o) = office(75);
    sim.phones[o.alice].acks_to_skip = u32::MAX;
    let bob = sim.phones[o.bob[0]].party();
    sim.start_park(o.alice, ACME, "103", Some(&bob));
    sim.run_for(secs(40));
    assert!(sim.lifecycle().is_empty(), "{:?}", sim.lifecycle());
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
}

#[test]
fn shutdown_ends_parked_calls_oldest_first() {
    let (mut sim, o) = office(76);
    let first = sim.park_by_bob(&o, o.alice);
    let second = sim.park_by_bob(&o, o.dave);
    sim.shutdown_all();
    sim.run_for(ms(500));
    assert_eq!(per_call(&sim), [vec![Parked, Shutdown], vec![Parked, Shutdown]]);
    let ends: Vec<_> = sim.lifecycle().into_iter().filter(|e| e.what == Shutdown).map(|e| e.call).collect();
    assert!(ends[0] < ends[1], "in call order: {ends:?}");
    let bye_at = |p: usize, c: usize| sim.phones[p].calls[c].byes.first().map(|m| m.at);
    let (a, d) = (bye_at(o.alice, first), bye_at(o.dave, second));
    assert!(a.is_some() && a <= d, "the oldest parked call gets its BYE first: {a:?} {d:?}");
}

/// A scenario with loss, duplication and reordering that goes through
/// park, retrieve, recall and hang-ups; returns every datagram sipark sent.
fn scenario(shard_seed: u64, net_seed: u64) -> Vec<(std::net::SocketAddr, Vec<u8>)> {
    let mut sim = Sim::with_seeds(2, Config::default(), net_seed, shard_seed);
    sim.sent = Some(Vec::new());
    let o = sim.office(ACME);
    sim.net = Net { loss: 0.05, dup: 0.05, reorder: ms(30), ..Net::default() };
    sim.park_by_bob(&o, o.alice);
    sim.park_by_bob(&o, o.dave);
    sim.retrieve(o.carol, "sip:*88103@acme.example");
    sim.run_for(secs(400));
    sim.sent.take().unwrap_or_default()
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let a = scenario(5, 77);
    let b = scenario(5, 77);
    assert!(a.len() > 20, "the scenario sent {} datagrams", a.len());
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(
            x,
            y,
            "datagram {i} differs:\n{}\n---\n{}",
            String::from_utf8_lossy(&x.1),
            String::from_utf8_lossy(&y.1)
        );
    }
    let c = scenario(6, 77);
    assert_ne!(a, c, "another shard seed gives other tags and Call-IDs");
}
