//! Lossy, duplicating, reordering networks, and fuzzed input.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sipark::proto::config::Config;

use crate::fixtures::{ACME, Office};
use crate::harness::{ALPHABET, Rng, Sim, ms, mutate_once, secs};
use crate::phone::CallState;

/// Runs `n` park → retrieve → BYE cycles; every one must complete.
fn cycles(sim: &mut Sim, o: &Office, n: usize) {
    let bob = sim.phones[o.bob[0]].party();
    for i in 0..n {
        let what = |step: &str| format!("cycle {i}: {step}");
        let call = sim.start_park(o.alice, ACME, "103", Some(&bob));
        let parks = i as u64 + 1;
        sim.expect(secs(120), &what("park confirmed and ACK received"), |s| {
            s.phones[o.alice].calls[call].state == CallState::Confirmed && s.stat(|st| st.parks.get()) == parks
        });
        let now = sim.now;
        let r = sim.phones[o.carol].invite(now, "sip:*88103@acme.example", &[], true);
        sim.expect(secs(120), &what("retrieve answered"), |s| {
            !matches!(s.phones[o.carol].calls[r].state, CallState::Calling | CallState::Ringing)
        });
        sim.assert_call_state(o.carol, r, CallState::Confirmed);
        assert_eq!(sim.phones[o.alice].calls[call].reinvites.len(), 1, "{}", what("one re-INVITE"));
        let now = sim.now;
        let bye = sim.phones[o.carol].bye(now, r);
        sim.expect(secs(120), &what("BYE answered and parked leg hung up"), |s| {
            s.phones[o.carol].txns[bye].done() && !s.phones[o.alice].calls[call].byes.is_empty()
        });
        assert_eq!(sim.phones[o.carol].txns[bye].final_code, Some(200), "{}", what("BYE 200"));
    }
    // Let every retransmission and timer run out.
    sim.run_for(secs(70));
    assert_eq!(sim.stat(|s| s.parks.get()), n as u64);
    assert_eq!(sim.stat(|s| s.retrieves.get()), n as u64);
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    assert_eq!(sim.stat(|s| s.bridged.get()), 0);
    for w in o.watch {
        let mut versions: Vec<u64> = sim.phones[w].notifies.iter().map(|n| n.info().version).collect();
        versions.sort_unstable();
        versions.dedup();
        assert_eq!(versions.len(), 2 * n, "every change reached device {w} (NOTIFYs are retransmitted)");
        let newest = sim.phones[w].notifies.iter().max_by_key(|n| n.info().version).map(|n| n.info().clone());
        let newest = newest.unwrap_or_else(|| panic!("no NOTIFY"));
        assert!(newest.parked().is_empty(), "newest state: nothing parked: {newest:?}");
    }
    assert_eq!(sim.stat(|s| s.transactions.get()), 0, "no transaction left behind after every timer ran");
    assert!(sim.stray.is_empty(), "sipark sent to addresses no phone has: {:?}", sim.stray);
}

#[test]
fn twenty_percent_loss_every_cycle_completes() {
    let mut sim = Sim::new(3, Config::default(), 51);
    let o = sim.office(ACME);
    sim.net.loss = 0.2;
    cycles(&mut sim, &o, 30);
    assert!(sim.stat(|s| s.retransmissions.get()) > 0, "loss must have forced retransmissions");
}

#[test]
fn duplication_and_reordering_every_cycle_completes() {
    let mut sim = Sim::new(2, Config::default(), 52);
    let o = sim.office(ACME);
    sim.net.dup = 0.3;
    sim.net.reorder = ms(40);
    cycles(&mut sim, &o, 30);
}

#[test]
fn loss_duplication_and_reordering_together() {
    let mut sim = Sim::new(4, Config::default(), 53);
    let o = sim.office(ACME);
    sim.net.loss = 0.1;
    sim.net.dup = 0.1;
    sim.net.reorder = ms(25);
    cycles(&mut sim, &o, 15);
}

#[test]
fn corrupting_network_never_breaks_the_engine() {
    let mut sim = Sim::new(3, Config::default(), 54);
    let o = sim.office(ACME);
    let erin = sim.add_phone("106", ACME, Some("Erin"));
    sim.net.corrupt = 0.25;
    sim.net.loss = 0.05;
    sim.net.reorder = ms(20);
    let bob = sim.phones[o.bob[0]].party();
    let mut rng = Rng::new(54);
    // A bounded random mix of everything, on live dialogs, with corrupted datagrams.
    for round in 0..100 {
        let now = sim.now;
        match rng.below(7) {
            0 | 1 => {
                let p = [o.alice, o.dave, erin][rng.below(3) as usize];
                let ext = ["103", "109"][rng.below(2) as usize];
                sim.phones[p].invite(
                    now,
                    &format!("sip:*68{ext}@acme.example"),
                    &[format!("Referred-By: {bob}")],
                    true,
                );
            }
            2 => {
                let p = [o.carol, erin][rng.below(2) as usize];
                let ruri = match sim.phones[o.watch[0]].last_notify().and_then(|n| n.info.clone()) {
                    Some(i) if rng.chance(0.5) && !i.parked().is_empty() => {
                        i.parked()[0].retrieve_uri.clone().unwrap_or_default()
                    }
                    _ => "sip:*88103@acme.example".to_owned(),
                };
                sim.phones[p].invite(now, &ruri, &[], true);
            }
            3 => {
                // Hang up some confirmed call.
                let p = [o.alice, o.dave, erin, o.carol][rng.below(4) as usize];
                let live: Vec<usize> = (0..sim.phones[p].calls.len())
                    .filter(|&c| {
                        sim.phones[p].calls[c].state == CallState::Confirmed
                            && sim.phones[p].calls[c].remote_target.is_some()
                    })
                    .collect();
                if let Some(&c) = live.get(rng.below(live.len().max(1) as u64) as usize) {
                    sim.phones[p].bye(now, c);
                }
            }
            4 => {
                let w = o.watch[rng.below(2) as usize];
                sim.phones[w].register_self(now, 60 + rng.below(600) as u32);
            }
            5 => {
                let p = [o.alice, o.dave][rng.below(2) as usize];
                let live: Vec<usize> = (0..sim.phones[p].calls.len())
                    .filter(|&c| {
                        sim.phones[p].calls[c].state == CallState::Confirmed
                            && sim.phones[p].calls[c].remote_target.is_some()
                    })
                    .collect();
                if let Some(&c) = live.first() {
                    sim.phones[p].reinvite(now, c);
                }
            }
            _ => {}
        }
        sim.run_for(ms(rng.below(8_000)));
        assert!(sim.stat(|s| s.transactions.get()) < 1000, "round {round}: transactions unbounded");
    }
    assert!(sim.corrupted > 30, "the network corrupted only {} datagrams", sim.corrupted);
    // Everything ends: hang up whatever is still up, then let every timer run.
    sim.net = crate::harness::Net::default();
    for p in [o.alice, o.dave, erin, o.carol, o.bob[0], o.bob[1]] {
        let live: Vec<usize> = (0..sim.phones[p].calls.len())
            .filter(|&c| {
                sim.phones[p].calls[c].state == CallState::Confirmed && sim.phones[p].calls[c].remote_target.is_some()
            })
            .collect();
        for c in live {
            let now = sim.now;
            sim.phones[p].bye(now, c);
        }
    }
    sim.run_for(AFTER_EVERYTHING);
    assert_eq!(sim.stat(|s| s.parked.get()), 0, "parked calls left after every timeout");
    assert_eq!(sim.stat(|s| s.bindings.get()), 0, "bindings left after their expiry");
    assert_eq!(sim.stat(|s| s.transactions.get()), 0, "transactions left after every timer");
    assert_eq!(sim.stat(|s| s.bridged.get()), 0, "bridged calls outlive max_call_duration");
    for s in &sim.shards {
        assert_eq!(s.poll_timeout(), None, "shard {} still has timers", s.id());
    }
}

/// Longer than every timer: registrations (<= 1 h), park and recall, and
/// the cap on a bridged call's duration (`Limits::max_call_duration`).
const AFTER_EVERYTHING: std::time::Duration = std::time::Duration::from_secs(14 * 3600);

// ----- fuzzing --------------------------------------------------------------

/// Records what phones send to sipark during a busy scenario: parks,
/// NOTIFY answers, a retrieve, hang-ups, a recall answered, registrations.
fn record_corpus(n: u16) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut sim = Sim::new(n, Config::default(), 60);
    sim.capture = Some(Vec::new());
    let o = sim.office(ACME);
    for b in o.bob {
        sim.phones[b].auto_answer = false;
    }
    sim.park_by_bob(&o, o.alice);
    let dave = sim.park_by_bob(&o, o.dave);
    let (r, _) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    sim.hangup(o.carol, r);
    let now = sim.now;
    let q = sim.phones[o.dave].in_dialog(now, dave, "OPTIONS", &[]);
    sim.final_of(o.dave, q, secs(5));
    sim.register_with(o.watch[0], &["*"], &["Expires: 0"]);
    sim.register_with(
        o.watch[0],
        &["<sip:103@127.0.0.99:5099>;expires=120", "<sip:103@127.0.0.98:5098>"],
        &["Expires: 600"],
    );
    // Dave's park times out: the recall rings Bob's devices; one answers.
    sim.expect(secs(320), "recall", |s| !s.phones[o.bob[0]].incoming().is_empty());
    let now = sim.now;
    let c = sim.phones[o.bob[0]].incoming()[0];
    sim.phones[o.bob[0]].answer(now, c);
    sim.run_for(secs(5));
    let bye = sim.hangup(o.bob[0], c);
    assert_eq!(bye.code(), Some(200), "{bye:?}");
    sim.wait_bye(o.dave, dave, secs(5));
    sim.capture.take().unwrap_or_default()
}

fn fuzz(n: u16, seed: u64, rounds: usize) {
    let corpus = record_corpus(n);
    assert!(corpus.len() > 30, "corpus too small: {}", corpus.len());
    let mut sim = Sim::new(n, Config::default(), seed);
    let mut rng = Rng::new(seed);
    let mut fed = 0u64;
    let mut i = 0;
    while fed < rounds as u64 {
        // Mostly replay the recorded conversation in order (so later
        // messages meet the state earlier ones created), mutated often.
        let (src, base) = if rng.chance(0.8) {
            let c = &corpus[i % corpus.len()];
            i += 1;
            c.clone()
        } else {
            corpus[rng.below(corpus.len() as u64) as usize].clone()
        };
        let mut data = base;
        if rng.chance(0.5) {
            // A fresh branch: a new transaction rather than a retransmission.
            let text = String::from_utf8_lossy(&data).replace("branch=z9hG4bK-p", &format!("branch=z9hG4bK-f{fed}p"));
            data = text.into_bytes();
        }
        if rng.chance(0.6) {
            for _ in 0..=rng.below(3) {
                let donor = &corpus[rng.below(corpus.len() as u64) as usize].1;
                mutate_once(&mut rng, &mut data, donor);
            }
        }
        let src = if rng.chance(0.2) {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + rng.below(50) as u8)), 5000 + rng.below(20) as u16)
        } else {
            src
        };
        sim.inject(src, &data);
        fed += 1;
        if rng.chance(0.05) {
            sim.run_for(ms(rng.below(3000)));
        }
        let t = sim.stat(|s| s.transactions.get());
        assert!(t <= fed, "more transactions ({t}) than datagrams fed ({fed})");
        assert!(sim.stat(|s| s.parked.get() + s.bridged.get()) <= fed);
    }
    let sent = sim.server_sent;
    assert!(sim.stat(|s| s.registrations.get()) > 0, "valid replays must register");
    assert!(sim.stat(|s| s.parse_errors.get()) > 0, "mutations must hit the parser");
    // Run far past every timer.
    sim.run_for(AFTER_EVERYTHING);
    let stats = |f: fn(&sipark::proto::stats::ShardStats) -> u64| sim.stat(f);
    assert_eq!(stats(|s| s.transactions.get()), 0, "transactions left after every timer ran");
    assert_eq!(stats(|s| s.parked.get()), 0, "parked calls left");
    assert_eq!(stats(|s| s.bindings.get()), 0, "bindings left after their expiry");
    for s in &sim.shards {
        assert_eq!(s.poll_timeout(), None, "shard {} still has timers after everything ended", s.id());
    }
    assert!(sim.server_sent <= 40 * fed, "sipark sent {} datagrams for {fed} fed", sim.server_sent);
    assert!(sent > 0, "the fuzz must get answers at all");
    assert_eq!(stats(|s| s.bridged.get()), 0, "bridged calls outlive max_call_duration");
}

#[test]
fn fuzzed_datagrams_one_shard() {
    fuzz(1, 71, 6000);
}

#[test]
fn fuzzed_datagrams_routed_over_three_shards() {
    fuzz(3, 72, 6000);
}

#[test]
fn random_garbage_is_dropped_or_answered() {
    let mut sim = Sim::new(2, Config::default(), 73);
    let mut rng = Rng::new(73);
    let src: SocketAddr = "127.0.0.77:5077".parse().unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..3000 {
        let n = rng.below(600) as usize;
        let mut data: Vec<u8> = (0..n).map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize]).collect();
        if rng.chance(0.3) {
            let mut head = b"INVITE sip:*68103@acme.example SIP/2.0\r\n".to_vec();
            head.append(&mut data);
            data = head;
        }
        sim.inject(src, &data);
    }
    sim.run_for(secs(100));
    assert_eq!(sim.stat(|s| s.transactions.get()), 0);
    assert!(sim.stat(|s| s.parse_errors.get() + s.dropped.get()) > 0);
}
