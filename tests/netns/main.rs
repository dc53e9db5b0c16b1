//! Network-namespace tests of sipark's data path: the XDP pre-filter on a
//! veth interface and sk_reuseport steering, against the real binary.
//!
//! Each test builds its own pair of namespaces joined by a veth pair (see
//! [`topo`]), runs sipark in namespace A with `ip netns exec`, sends traffic
//! from namespace B, and reads sipark's metrics from B. They need root
//! (namespaces, veth, BPF) and fail, never skip, without it.

mod engine;
mod metrics;
mod overload;
mod sip;
mod topo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use engine::Engine;
use metrics::{DATAGRAMS_IN, HANDOFFS_IN, HANDOFFS_OUT, Metrics, STEER, XDP};
use sip::{Client, Req, collect, garbage, invite, options, register, send, settle};
use sipark::proto::route::shard_of;
use topo::Topo;

/// Writes a tenants file into the test's artifact directory.
fn tenants_file(test: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("netns").join(format!("{test}-tenants"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let path = dir.join("tenants.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// Sends every request once, a few at a time (a veth's ring holds 256
/// frames; nothing may be lost on the way in for the counts to be exact).
fn send_paced(clients: &[Client], dst: SocketAddr, reqs: &mut [Req]) {
    for (i, r) in reqs.iter_mut().enumerate() {
        send(clients, dst, r);
        if i % 8 == 7 {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Counter growth between two scrapes.
fn grew(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let (b, a) = (before.sum(name, labels), after.sum(name, labels));
    assert!(a >= b, "counter {name}{labels:?} went down: {b} -> {a}");
    a - b
}

fn xdp_grew(before: &Metrics, after: &Metrics, action: &str, reason: &str) -> u64 {
    grew(before, after, XDP, &[("action", action), ("reason", reason)])
}

/// Strict tenants, scanners, garbage and blocklisted sources are dropped in
/// XDP: their counters grow by exactly what was sent, and the workers'
/// sockets see only the valid requests.
#[test]
fn xdp_drops_never_reach_userspace() {
    const N: usize = 24;
    let topo = Topo::new('x', 201);
    // .3 is blocked on the command line, .4 in the tenants file.
    let file = tenants_file(
        "xdp_drops",
        &format!("block = [\"{}/32\"]\n\n[[tenant]]\ndomain = \"acme.example\"\n", topo.host(4)),
    );
    let blocked_cli = format!("{}/32", topo.host(3));
    let file_s = file.to_string_lossy().into_owned();
    let mut sp = Engine::start(
        &topo,
        "xdp_drops",
        &["--xdp", &topo.if_a, "--tenants", &file_s, "--block", &blocked_cli],
        "acme.example",
    );
    sp.wait_log("XDP filter attached", Duration::from_secs(1));
    assert!(!sp.started.contains("xdp=off"), "started with --xdp, yet: {}", sp.started);
    let dst = sp.sip;
    let m0 = sp.scrape(&topo);
    assert!(m0.try_sum(XDP, &[]).is_some(), "--xdp is on, yet the metrics have no {XDP} family:\n{}", m0.text);

    // Traffic that XDP must drop, from sockets that send nothing else.
    let droppers = Client::many(&topo, 2, 4);
    let blocked = [Client::bind(&topo, 3), Client::bind(&topo, 4)];
    for (i, g) in garbage(N).iter().enumerate() {
        droppers[i % droppers.len()].send(dst, g);
        if i % 8 == 7 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    let mut dropped: Vec<Req> = Vec::new();
    for i in 0..N {
        let c = i % droppers.len();
        let id = format!("unknown-{i}@netns");
        let bytes = if i % 2 == 0 {
            options("unknown.example", droppers[c].local, &id, None)
        } else {
            invite("unknown.example", droppers[c].local, &id)
        };
        dropped.push(Req::new(c, id, bytes));
    }
    let scanners = ["friendly-scanner", "sipvicious 0.3.4", "sipcli/v1.8"];
    for i in 0..N {
        let c = i % droppers.len();
        let id = format!("scanner-{i}@netns");
        dropped.push(Req::new(c, id.clone(), options("acme.example", droppers[c].local, &id, Some(scanners[i % 3]))));
    }
    send_paced(&droppers, dst, &mut dropped);
    let mut blocked_reqs: Vec<Req> = (0..N)
        .map(|i| {
            let c = i % 2;
            let id = format!("blocked-{i}@netns");
            Req::new(c, id.clone(), options("acme.example", blocked[c].local, &id, None))
        })
        .collect();
    send_paced(&blocked, dst, &mut blocked_reqs);

    // Then valid requests, which must be answered.
    let valid_clients = Client::many(&topo, 2, 2);
    let mut valid: Vec<Req> = (0..6)
        .map(|i| {
            let c = i % 2;
            let id = format!("valid-{i}@netns");
            Req::new(c, id.clone(), options("acme.example", valid_clients[c].local, &id, None))
        })
        .collect();
    send_paced(&valid_clients, dst, &mut valid);
    let missing = settle(&valid_clients, dst, &mut valid, Duration::from_secs(5), Some(Duration::from_secs(1)));
    assert_eq!(missing, 0, "{missing} of {} valid OPTIONS for acme.example unanswered", valid.len());
    for r in &valid {
        assert_eq!(r.status, Some(200), "valid OPTIONS {} answered {:?}", r.call_id, r.status);
    }
    // Anything dropped that had reached sipark would have been answered
    // (404, 200) by now: the valid ones, sent later, were.
    thread::sleep(Duration::from_millis(200));
    collect(&droppers, &mut dropped);
    collect(&blocked, &mut blocked_reqs);
    for r in dropped.iter().chain(&blocked_reqs) {
        assert_eq!(r.status, None, "{} should have been dropped in XDP, but sipark answered it", r.call_id);
    }
    for c in &droppers {
        let late = c.recv_all();
        assert!(late.is_empty(), "{} datagrams came back for garbage sent from {}", late.len(), c.local);
    }

    let m1 = sp.scrape(&topo);
    let valid_sent: u32 = valid.iter().map(|r| r.sends).sum();
    let n = N as u64;
    let got = [
        ("not_sip", xdp_grew(&m0, &m1, "drop", "not_sip")),
        ("unknown_tenant", xdp_grew(&m0, &m1, "drop", "unknown_tenant")),
        ("scanner", xdp_grew(&m0, &m1, "drop", "scanner")),
        ("blocklist", xdp_grew(&m0, &m1, "drop", "blocklist")),
        ("rate_limited", xdp_grew(&m0, &m1, "drop", "rate_limited")),
        ("pass", xdp_grew(&m0, &m1, "pass", "pass")),
    ];
    let want = [
        ("not_sip", n),
        ("unknown_tenant", n),
        ("scanner", n),
        ("blocklist", n),
        ("rate_limited", 0),
        ("pass", u64::from(valid_sent)),
    ];
    assert_eq!(got, want, "XDP counter growth by reason (got, want); metrics:\n{}", m1.text);
    let into_userspace = grew(&m0, &m1, DATAGRAMS_IN, &[]);
    eprintln!("xdp_drops: XDP growth {got:?}; datagrams_in +{into_userspace}; valid sent {valid_sent}");
    assert_eq!(
        into_userspace,
        u64::from(valid_sent),
        "the workers' sockets received {into_userspace} datagrams; only the {valid_sent} valid ones were sent \
         past XDP; metrics:\n{}",
        m1.text
    );
    sp.stop();
}

/// A tenant over its rate is cut in XDP while another tenant, sending at
/// the same time from the same host, is fully served.
#[test]
fn rate_limited_tenant_is_cut_while_another_is_served() {
    const RATE: u64 = 20;
    const ROUNDS: usize = 30;
    const NOISY_PER_ROUND: usize = 10;
    let topo = Topo::new('r', 202);
    let file = tenants_file(
        "rate",
        "[[tenant]]\ndomain = \"noisy.example\"\nrate = 20\nburst = 20\n\n\
         [[tenant]]\ndomain = \"quiet.example\"\nrate = 100000\nburst = 100000\n",
    );
    let file_s = file.to_string_lossy().into_owned();
    let mut sp = Engine::start(&topo, "rate", &["--xdp", &topo.if_a, "--tenants", &file_s], "quiet.example");
    assert!(!sp.started.contains("xdp=off"), "started with --xdp, yet: {}", sp.started);
    let dst = sp.sip;
    let m0 = sp.scrape(&topo);

    let noisy_clients = Client::many(&topo, 2, NOISY_PER_ROUND);
    let quiet_clients = Client::many(&topo, 2, 3);
    let mut noisy: Vec<Req> = (0..ROUNDS * NOISY_PER_ROUND)
        .map(|i| {
            let c = i % NOISY_PER_ROUND;
            let id = format!("noisy-{i}@netns");
            Req::new(c, id.clone(), options("noisy.example", noisy_clients[c].local, &id, None))
        })
        .collect();
    let mut quiet: Vec<Req> = (0..ROUNDS)
        .map(|i| {
            let c = i % quiet_clients.len();
            let id = format!("quiet-{i}@netns");
            Req::new(c, id.clone(), options("quiet.example", quiet_clients[c].local, &id, None))
        })
        .collect();
    let first = Instant::now();
    let mut last = first;
    for round in 0..ROUNDS {
        // Ten back to back for the noisy tenant, one for the quiet one.
        for r in &mut noisy[round * NOISY_PER_ROUND..(round + 1) * NOISY_PER_ROUND] {
            send(&noisy_clients, dst, r);
        }
        last = Instant::now();
        send(&quiet_clients, dst, &mut quiet[round]);
        collect(&noisy_clients, &mut noisy);
        collect(&quiet_clients, &mut quiet);
        thread::sleep(Duration::from_millis(10));
    }
    let elapsed = last - first;
    // No re-sends: a quiet request lost anywhere is a failure.
    let quiet_missing = settle(&quiet_clients, dst, &mut quiet, Duration::from_secs(3), None);
    let unanswered: Vec<&str> = quiet.iter().filter(|r| r.status.is_none()).map(|r| r.call_id.as_str()).collect();
    assert_eq!(quiet_missing, 0, "quiet.example requests unanswered while noisy.example was limited: {unanswered:?}");
    for r in &quiet {
        assert_eq!(r.status, Some(200), "quiet request {} answered {:?}", r.call_id, r.status);
    }
    // The noisy ones that passed are answered promptly; give them a moment.
    settle(&noisy_clients, dst, &mut noisy, Duration::from_millis(500), None);
    let answered = noisy.iter().filter(|r| r.status.is_some()).count() as u64;
    for r in noisy.iter().filter(|r| r.status.is_some()) {
        assert_eq!(r.status, Some(200), "noisy request {} answered {:?}", r.call_id, r.status);
    }
    // GCRA: the burst (20, or 21 counting the first request at a full
    // bucket), then RATE per second; a few more for the cross-CPU race the
    // program allows.
    let most = RATE + 1 + (RATE as f64 * elapsed.as_secs_f64()).ceil() as u64 + 5;
    assert!(
        (RATE..=most).contains(&answered),
        "noisy.example (rate 20/s, burst 20) got {answered} of {} answered over {elapsed:?}; expected 20..={most}",
        noisy.len()
    );

    let m1 = sp.scrape(&topo);
    let limited = xdp_grew(&m0, &m1, "drop", "rate_limited");
    let noisy_sent = noisy.len() as u64;
    eprintln!(
        "rate: noisy {answered}/{noisy_sent} answered over {elapsed:?} (bound {most}), rate_limited +{limited}; \
         quiet {}/{} answered",
        quiet.len(),
        quiet.len()
    );
    assert!(limited > 0, "no rate_limited drops counted; metrics:\n{}", m1.text);
    assert_eq!(
        limited + answered,
        noisy_sent,
        "every noisy request is either answered or counted rate_limited ({limited} + {answered} != {noisy_sent})"
    );
    let passed = xdp_grew(&m0, &m1, "pass", "pass");
    assert_eq!(passed, answered + quiet.len() as u64, "XDP passes = noisy answered + quiet; metrics:\n{}", m1.text);
    assert_eq!(grew(&m0, &m1, DATAGRAMS_IN, &[]), passed, "the workers received exactly what XDP passed");
    assert_eq!(xdp_grew(&m0, &m1, "drop", "unknown_tenant"), 0, "both tenants are listed");
    sp.stop();
}

/// What one steering run saw.
struct SteerRun {
    sent: u64,
    datagrams_in: Vec<u64>,
    handoffs_out: Vec<u64>,
    handoffs_in: Vec<u64>,
    steered: Option<u64>,
    fallback: Option<u64>,
    metrics: String,
}

/// Runs sipark with `--steer MODE` (open mode, no XDP), sends OPTIONS for
/// 200 domains and REGISTERs for 50 from 40 source ports, and checks that
/// every one is answered 200.
fn steer_run(topo: &Topo, mode: &str) -> SteerRun {
    const CLIENTS: usize = 40;
    let mut sp = Engine::start(topo, &format!("steer_{mode}"), &["--steer", mode], "probe.example");
    let want = if mode == "on" { "steering=true" } else { "steering=false" };
    assert!(sp.started.contains(want), "--steer {mode}: the start line lacks {want}: {}", sp.started);
    let dst = sp.sip;
    let m0 = sp.scrape(topo);
    let clients = Client::many(topo, 2, CLIENTS);
    let mut reqs: Vec<Req> = Vec::new();
    for i in 0..200 {
        let c = i % CLIENTS;
        let id = format!("steer-{mode}-o{i}@netns");
        reqs.push(Req::new(c, id.clone(), options(&format!("t{i}.example"), clients[c].local, &id, None)));
        if i % 4 == 0 {
            let c = (i * 7 + 3) % CLIENTS;
            let id = format!("steer-{mode}-r{i}@netns");
            let user = format!("u{i}");
            reqs.push(Req::new(c, id.clone(), register(&format!("t{i}.example"), &user, clients[c].local, &id)));
        }
    }
    send_paced(&clients, dst, &mut reqs);
    let missing = settle(&clients, dst, &mut reqs, Duration::from_secs(6), Some(Duration::from_secs(1)));
    let unanswered: Vec<&str> =
        reqs.iter().filter(|r| r.status.is_none()).take(10).map(|r| r.call_id.as_str()).collect();
    assert_eq!(missing, 0, "--steer {mode}: {missing} of {} unanswered, e.g. {unanswered:?}", reqs.len());
    for r in &reqs {
        assert_eq!(r.status, Some(200), "--steer {mode}: {} answered {:?}", r.call_id, r.status);
    }
    let m1 = sp.scrape(topo);
    let d = |name: &str| -> Vec<u64> {
        let (b, a) = (m0.per_worker(name, 2), m1.per_worker(name, 2));
        b.iter().zip(&a).map(|(b, a)| a.saturating_sub(*b)).collect()
    };
    let steer_grew = |outcome: &str| -> Option<u64> {
        let a = m1.try_sum(STEER, &[("outcome", outcome)])?;
        Some(a.saturating_sub(m0.try_sum(STEER, &[("outcome", outcome)]).unwrap_or(0)))
    };
    let run = SteerRun {
        sent: reqs.iter().map(|r| u64::from(r.sends)).sum(),
        datagrams_in: d(DATAGRAMS_IN),
        // Absolute: nothing since start-up may have been handed over.
        handoffs_out: m1.per_worker(HANDOFFS_OUT, 2),
        handoffs_in: m1.per_worker(HANDOFFS_IN, 2),
        steered: steer_grew("steered"),
        fallback: steer_grew("fallback"),
        metrics: m1.text.clone(),
    };
    sp.stop();
    eprintln!(
        "--steer {mode}: sent {}, datagrams_in {:?}, handoffs out {:?} in {:?}, steered {:?}, fallback {:?}",
        run.sent, run.datagrams_in, run.handoffs_out, run.handoffs_in, run.steered, run.fallback
    );
    run
}

/// With `--steer on`, the sk_reuseport program delivers every datagram to
/// the worker owning its shard: both workers get traffic and none is handed
/// over. With `--steer off`, the same traffic needs hand-offs.
#[test]
fn steering_delivers_each_datagram_to_its_owner() {
    // The traffic must span both shards for either half to mean anything.
    let owners: Vec<u16> = (0..200).map(|i| shard_of(format!("t{i}.example").as_bytes(), 2)).collect();
    let on_0 = owners.iter().filter(|s| **s == 0).count();
    assert!((50..=150).contains(&on_0), "domains t0..t199.example: {on_0} of 200 on shard 0");

    let topo = Topo::new('s', 203);
    let on = steer_run(&topo, "on");
    let ctx = &on.metrics;
    assert_eq!(on.datagrams_in.iter().sum::<u64>(), on.sent, "every datagram received once\n{ctx}");
    assert!(on.datagrams_in.iter().all(|n| *n > 0), "both workers received traffic: {:?}\n{ctx}", on.datagrams_in);
    assert_eq!(on.handoffs_out, vec![0, 0], "--steer on: hand-offs out per worker\n{ctx}");
    assert_eq!(on.handoffs_in, vec![0, 0], "--steer on: hand-offs in per worker\n{ctx}");
    let steered = on.steered.unwrap_or_else(|| panic!("--steer on, yet no {STEER} family:\n{ctx}"));
    assert!(steered >= on.sent, "steered grew by {steered}, {} datagrams sent\n{ctx}", on.sent);
    assert_eq!(on.fallback, Some(0), "no datagram of this traffic needs the kernel's hash\n{ctx}");

    // The control: without steering the kernel's hash spreads the sources,
    // and about half of the requests land on the wrong worker.
    let off = steer_run(&topo, "off");
    let ctx = &off.metrics;
    assert_eq!(off.datagrams_in.iter().sum::<u64>(), off.sent, "every datagram received once\n{ctx}");
    let out: u64 = off.handoffs_out.iter().sum();
    let inn: u64 = off.handoffs_in.iter().sum();
    assert!(out > 0, "--steer off: no hand-offs, so the steered run proves nothing\n{ctx}");
    assert_eq!(out, inn, "--steer off: every hand-off arrived\n{ctx}");
    assert_eq!(off.steered.unwrap_or(0), 0, "--steer off, yet datagrams were steered\n{ctx}");
}
