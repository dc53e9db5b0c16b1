//! Lossy, duplicating, reordering networks, and fuzzed input.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use sipark::proto::config::Config;

use crate::fixtures::{ACME, Office};
use crate::harness::{Rng, Sim, ms, secs};
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
    assert_eq!(sim.stat(|s| s.transactions.get()), 0, "no transaction left behind");
    for w in o.watch {
        let mut versions: Vec<u64> = sim.phones[w].notifies.iter().map(|n| n.info().version).collect();
        versions.sort_unstable();
        versions.dedup();
        assert_eq!(versions.len(), 2 * n, "every change reached device {w} (NOTIFYs are retransmitted)");
        let newest = sim.phones[w].notifies.iter().max_by_key(|n| n.info().version).map(|n| n.info().clone());
        let newest = newest.unwrap_or_else(|| panic!("no NOTIFY"));
        assert!(newest.parked().is_empty(), "newest state: nothing parked: {newest:?}");
    }
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

// ----- fuzzing --------------------------------------------------------------

const ALPHABET: &[u8] = b":;,<>@=\"\\ \t\r\n/.*%?-_+0123456789abcdefzABCDEFZ\x00\xff";

/// One random change to `msg`.
fn mutate_once(rng: &mut Rng, msg: &mut Vec<u8>, corpus: &[(SocketAddr, Vec<u8>)]) {
    let len = msg.len();
    let pos = |rng: &mut Rng| rng.below(len as u64 + 1) as usize;
    match rng.below(11) {
        0 => {
            for _ in 0..=rng.below(8) {
                if !msg.is_empty() {
                    let i = rng.below(msg.len() as u64) as usize;
                    msg[i] = ALPHABET[rng.below(ALPHABET.len() as u64) as usize];
                }
            }
        }
        1 => msg.truncate(pos(rng)),
        2 => {
            let at = pos(rng).min(msg.len());
            let n = 1 + rng.below(16) as usize;
            let ins: Vec<u8> = (0..n).map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize]).collect();
            msg.splice(at..at, ins);
        }
        3 | 4 => {
            // Delete (3) or duplicate (4) a line.
            let lines: Vec<usize> = std::iter::once(0).chain(msg.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1)).collect();
            let k = rng.below(lines.len() as u64) as usize;
            let start = lines[k].min(msg.len());
            let end = lines.get(k + 1).copied().unwrap_or(msg.len()).min(msg.len());
            let line = msg[start..end].to_vec();
            if rng.below(2) == 0 && start < end {
                msg.drain(start..end);
            } else {
                msg.splice(start..start, line);
            }
        }
        5 => {
            // Splice a line from another message in.
            let other = &corpus[rng.below(corpus.len() as u64) as usize].1;
            let lines: Vec<&[u8]> = other.split(|&b| b == b'\n').collect();
            let line = lines[rng.below(lines.len() as u64) as usize];
            let at = msg.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
            let mut ins = line.to_vec();
            ins.push(b'\n');
            msg.splice(at..at, ins);
        }
        6 => {
            let text = String::from_utf8_lossy(msg).into_owned();
            let n = match rng.below(4) {
                0 => u64::from(u32::MAX),
                1 => 99_999_999_999,
                _ => rng.below(3000),
            };
            let re = text.replacen("Content-Length: ", &format!("Content-Length: {n}"), 1);
            *msg = re.into_bytes();
        }
        7 => {
            let text = String::from_utf8_lossy(msg).replace("\r\n", "\n");
            *msg = text.into_bytes();
        }
        8 => {
            let n = rng.below(1500) as usize;
            *msg = (0..n).map(|_| rng.below(256) as u8).collect();
        }
        9 => {
            // Change a tag, branch or number somewhere.
            let text = String::from_utf8_lossy(msg).into_owned();
            let keys = ["tag=", "branch=z9hG4bK", "CSeq: ", "expires=", "call=", "Expires: "];
            let key = keys[rng.below(keys.len() as u64) as usize];
            let re = text.replacen(key, &format!("{key}{}", rng.below(100)), 1);
            *msg = re.into_bytes();
        }
        _ => {
            // A very long header value.
            let at = msg.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
            let mut ins = b"X-Junk: ".to_vec();
            ins.extend(std::iter::repeat_n(b'a', 2000 + rng.below(60_000) as usize));
            ins.extend_from_slice(b"\r\n");
            msg.splice(at..at, ins);
        }
    }
}

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
    sim.register_with(o.watch[0], &["<sip:103@127.0.0.99:5099>;expires=120", "<sip:103@127.0.0.98:5098>"], &["Expires: 600"]);
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
        if rng.chance(0.6) {
            for _ in 0..=rng.below(3) {
                mutate_once(&mut rng, &mut data, &corpus);
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
    // Run far past every timer: park, recall, registrations (<= 3600 s).
    sim.run_for(secs(4000));
    let stats = |f: fn(&sipark::proto::stats::ShardStats) -> u64| sim.stat(f);
    assert_eq!(stats(|s| s.transactions.get()), 0, "transactions left after every timer ran");
    assert_eq!(stats(|s| s.parked.get()), 0, "parked calls left");
    assert_eq!(stats(|s| s.bindings.get()), 0, "bindings left after their expiry");
    for s in &sim.shards {
        assert_eq!(s.poll_timeout(), None, "shard {} still has timers after everything ended", s.id());
    }
    assert!(sim.server_sent <= 40 * fed, "sipark sent {} datagrams for {fed} fed", sim.server_sent);
    assert!(sent > 0, "the fuzz must get answers at all");
    // Bridged calls have no timer; they may stay, but only as many as retrieves.
    assert!(stats(|s| s.bridged.get()) <= stats(|s| s.retrieves.get() + s.recalls_answered.get()));
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
