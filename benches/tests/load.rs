//! sipark-load against an in-process sipark (2 workers, 127.0.0.1:0):
//! 300 closed-loop cycles over 20 tenants × 3 extensions × 2 devices must
//! all complete, and the engine's own counters must agree with the cycle's
//! datagram count (7 + 2·devices each way). The floor (`load::floor`)
//! against an in-process bare engine (`Serve::Bare`) completes its cycles
//! with the cycle's sizes.
//! Calls parked with music (`load::moh`) hear every packet, and its floor
//! sends as many.

use std::net::SocketAddr;
use std::time::Duration;

use sipark::io::{Engine, IoChoice, IoOptions, Serve, SteerChoice};
use sipark::proto::config::Config;
use sipark::proto::stats::ShardStats;
use sipark_benches::load::floor::{self, CycleShape};
use sipark_benches::load::{self, EngineCpu, LoadConfig, Mode, SelfCpu, moh};

/// Sum of one counter over every worker.
fn total(engine: &Engine, f: impl Fn(&ShardStats) -> u64) -> u64 {
    engine.stats().iter().map(|s| f(s)).sum()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    datagrams_in: u64,
    datagrams_out: u64,
    parks: u64,
    retrieves: u64,
    hangups: u64,
    notifies_sent: u64,
    notifies_failed: u64,
    registrations: u64,
    retransmissions: u64,
    parse_errors: u64,
    dropped: u64,
}

fn snapshot(e: &Engine) -> Snapshot {
    Snapshot {
        datagrams_in: total(e, |s| s.datagrams_in.get()),
        datagrams_out: total(e, |s| s.datagrams_out.get()),
        parks: total(e, |s| s.parks.get()),
        retrieves: total(e, |s| s.retrieves.get()),
        hangups: total(e, |s| s.hangups.get()),
        notifies_sent: total(e, |s| s.notifies_sent.get()),
        notifies_failed: total(e, |s| s.notifies_failed.get()),
        registrations: total(e, |s| s.registrations.get()),
        retransmissions: total(e, |s| s.retransmissions.get()),
        parse_errors: total(e, |s| s.parse_errors.get()),
        dropped: total(e, |s| s.dropped.get()),
    }
}

/// The engine's counters once they have caught up with what the generator
/// saw (a worker counts a send when it reaps the completion, which can be
/// after the peer already has the datagram), or after 5 s.
fn settled(engine: &Engine, before: &Snapshot, report: &load::Report) -> Snapshot {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = snapshot(engine);
        let caught_up = now.datagrams_in - before.datagrams_in >= report.datagrams_sent_total
            && now.datagrams_out - before.datagrams_out >= report.datagrams_received_total;
        if caught_up || std::time::Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start_engine() -> Engine {
    let opts = IoOptions {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("listen address: {e}")),
        workers: 2,
        pin: false,
        metrics: None,
        shutdown_grace: Duration::from_secs(1),
        io: IoChoice::Auto,
        steer: SteerChoice::Auto,
        xdp: None,
        serve: Serve::Sip,
        media: None,
    };
    Engine::start(&opts, |bound: SocketAddr| Config { advertise: bound.to_string(), ..Config::default() })
        .unwrap_or_else(|e| panic!("sipark did not start: {e}"))
}

#[test]
fn closed_loop_cycles_complete_and_match_engine_counters() {
    let engine = start_engine();
    let before = snapshot(&engine);

    const CYCLES: u64 = 300;
    const DEVICES: u32 = 2;
    let (tenants, extensions) = (20u32, 3u32);
    let mut cfg = LoadConfig::new(engine.local_addr());
    cfg.tenants = tenants;
    cfg.extensions = extensions;
    cfg.devices = DEVICES;
    cfg.mode = Mode::Closed { concurrency: 8 };
    cfg.cycles = Some(CYCLES);
    cfg.timeout = Duration::from_secs(60);
    cfg.sockets = 4;
    cfg.seed = 7;
    cfg.engine_cpu = EngineCpu::Threads { pid: std::process::id(), prefix: "sipark-w".into() };
    cfg.self_cpu = SelfCpu::Thread;

    let report = load::run(&cfg).unwrap_or_else(|e| panic!("load run failed: {e}"));
    println!("{report}");
    let after = settled(&engine, &before, &report);
    let json = report.to_json();

    let devices = u64::from(tenants * extensions * DEVICES);
    assert_eq!(report.registered, devices, "every device registers: {report:#?}");
    assert_eq!(report.registration_failed, 0, "{report:#?}");
    assert_eq!(report.unregistered, devices, "every binding is removed at the end: {report:#?}");
    assert_eq!(report.cycles_failed, 0, "no cycle may fail: {:?}\n{report}", report.failures);
    assert_eq!(report.cycles_ok, CYCLES, "{report}");
    assert_eq!(report.cycles_started, CYCLES, "{report}");
    assert!(report.failures.is_empty(), "{:?}", report.failures);

    // Latencies: one park and one retrieve sample per cycle, one NOTIFY
    // sample per device per cycle, all ordered and below the 32 s give-up.
    assert_eq!(report.park_200.count, CYCLES, "{:?}", report.park_200);
    assert_eq!(report.retrieve_200.count, CYCLES, "{:?}", report.retrieve_200);
    assert_eq!(report.park_notify.count, CYCLES * u64::from(DEVICES), "{:?}", report.park_notify);
    for (name, l) in [("park", report.park_200), ("notify", report.park_notify), ("retrieve", report.retrieve_200)] {
        assert!(l.p50_us <= l.p99_us && l.p99_us <= l.p999_us && l.p999_us <= l.max_us, "{name}: {l:?}");
        assert!(l.max_us > 0 && l.max_us < 32_000_000, "{name}: {l:?}");
    }

    // The engine saw exactly what the generator sent, and sent exactly what
    // it received (loopback loses nothing; nobody else talks to it).
    let d_in = after.datagrams_in - before.datagrams_in;
    let d_out = after.datagrams_out - before.datagrams_out;
    assert_eq!(d_in, report.datagrams_sent_total, "engine in vs generator sent\n{report}");
    assert_eq!(d_out, report.datagrams_received_total, "engine out vs generator received\n{report}");

    // Per cycle: 7 + 2·D datagrams each way, plus retransmissions.
    let per_way = CYCLES * (7 + 2 * u64::from(DEVICES));
    assert_eq!(
        report.datagrams_sent - report.retransmissions_sent - report.stray_answered,
        per_way,
        "datagrams sent in the window, less our retransmissions and answers to strays\n{report}"
    );
    assert_eq!(
        report.datagrams_received - report.duplicates_received - report.stray,
        per_way,
        "datagrams received in the window, less the engine's retransmissions\n{report}"
    );
    let engine_retrans = after.retransmissions - before.retransmissions;
    assert!(
        report.datagrams_received - per_way <= engine_retrans + report.stray,
        "extra datagrams from the engine must be its retransmissions ({engine_retrans})\n{report}"
    );
    assert!(report.datagrams_per_cycle >= 2.0 * (7.0 + 2.0 * f64::from(DEVICES)), "{report}");

    // The engine's own view of the cycles.
    assert_eq!(after.parks - before.parks, CYCLES, "{after:?}");
    assert_eq!(after.retrieves - before.retrieves, CYCLES, "{after:?}");
    assert_eq!(after.notifies_sent - before.notifies_sent, CYCLES * 2 * u64::from(DEVICES), "{after:?}");
    assert_eq!(after.notifies_failed, before.notifies_failed, "{after:?}");
    assert_eq!(after.parse_errors, before.parse_errors, "the generator's messages all parse: {after:?}");
    assert!(after.registrations - before.registrations >= devices, "{after:?}");
    assert_eq!(total(&engine, |s| s.bindings.get()), 0, "bindings left after the clean-up");
    assert_eq!(total(&engine, |s| s.parked.get()), 0, "calls left parked");
    assert_eq!(total(&engine, |s| s.bridged.get()), 0, "calls left bridged");

    // CPU: both sides measured, and the headline figure follows from them.
    let engine_cpu = report.engine_cpu_s.unwrap_or_else(|| panic!("engine CPU not measured\n{report}"));
    assert!(engine_cpu > 0.0, "{report}");
    assert!(report.generator_cpu_s > 0.0, "{report}");
    let headline = report.cycles_per_engine_cpu_s.unwrap_or_else(|| panic!("no headline figure\n{report}"));
    assert!((headline - CYCLES as f64 / engine_cpu).abs() < 1e-6 * headline, "{report}");

    // The JSON carries the same figures.
    for needle in [
        format!("\"cycles_ok\":{CYCLES}"),
        "\"cycles_failed\":0".to_owned(),
        format!("\"datagrams_sent\":{}", report.datagrams_sent),
        format!("\"p99_us\":{}", report.retrieve_200.p99_us),
    ] {
        assert!(json.contains(&needle), "JSON lacks {needle}: {json}");
    }
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");

    engine.shutdown();
    engine.join().unwrap_or_else(|e| panic!("engine worker failed: {e}"));
}

#[test]
fn open_loop_holds_its_rate_with_one_device_per_extension() {
    let engine = start_engine();
    let before = snapshot(&engine);
    const CYCLES: u64 = 100;
    let mut cfg = LoadConfig::new(engine.local_addr());
    cfg.tenants = 10;
    cfg.extensions = 4;
    cfg.devices = 1;
    cfg.mode = Mode::Open { rate: 400.0 };
    cfg.cycles = Some(CYCLES);
    cfg.timeout = Duration::from_secs(60);
    cfg.sockets = 2;
    cfg.self_cpu = SelfCpu::Thread;
    let report = load::run(&cfg).unwrap_or_else(|e| panic!("load run failed: {e}"));
    println!("{report}");
    let after = settled(&engine, &before, &report);
    assert_eq!((report.cycles_ok, report.cycles_failed), (CYCLES, 0), "{report}");
    assert_eq!(report.cycles_not_started, 0, "{report}");
    // 100 starts 2.5 ms apart: the window is about 0.25 s.
    assert!(report.window_s >= 0.24, "open loop ran ahead of its schedule: {report}");
    assert!(report.rate_achieved > 150.0 && report.rate_achieved < 420.0, "{report}");
    assert_eq!(report.park_notify.count, CYCLES, "one device: one NOTIFY sample per cycle");
    assert_eq!(report.datagrams_sent - report.retransmissions_sent - report.stray_answered, CYCLES * 9, "{report}");
    assert_eq!(after.datagrams_in - before.datagrams_in, report.datagrams_sent_total, "{report}");
    assert_eq!(after.parks - before.parks, CYCLES);
    assert_eq!(report.engine_cpu_s, None, "no engine CPU source was given");
    assert_eq!(report.cycles_per_engine_cpu_s, None);
    engine.shutdown();
    engine.join().unwrap_or_else(|e| panic!("engine worker failed: {e}"));
}

#[test]
fn background_parked_calls_stay_parked_and_do_not_disturb_the_cycles() {
    let engine = start_engine();
    let before = snapshot(&engine);
    const CYCLES: u64 = 200;
    const BACKGROUND: u32 = 200;
    const DEVICES: u32 = 2;
    let mut cfg = LoadConfig::new(engine.local_addr());
    cfg.tenants = 16;
    cfg.extensions = 4;
    cfg.devices = DEVICES;
    cfg.mode = Mode::Closed { concurrency: 8 };
    cfg.cycles = Some(CYCLES);
    cfg.timeout = Duration::from_secs(90);
    cfg.sockets = 4;
    cfg.seed = 11;
    cfg.background_parked = BACKGROUND;
    cfg.background_window = 64;
    // Short, so that the test stays quick; the cycles must still all pass.
    cfg.background_settle = Some(Duration::from_millis(200));
    cfg.engine_cpu = EngineCpu::Threads { pid: std::process::id(), prefix: "sipark-w".into() };
    cfg.self_cpu = SelfCpu::Thread;

    let report = load::run(&cfg).unwrap_or_else(|e| panic!("load run failed: {e}"));
    println!("{report}");
    let after = settled(&engine, &before, &report);
    let json = report.to_json();
    let b = &report.background;

    assert_eq!((report.cycles_ok, report.cycles_failed), (CYCLES, 0), "{:?}\n{report}", report.failures);
    assert_eq!(b.requested, BACKGROUND, "{b:?}");
    assert_eq!((b.ok, b.failed, b.lost), (u64::from(BACKGROUND), 0, 0), "every background call parks: {b:?}");
    assert_eq!(b.parked_at_end, u64::from(BACKGROUND), "all still parked after the cycles: {b:?}");
    assert_eq!((b.hangup_ok, b.hangup_failed), (u64::from(BACKGROUND), 0), "all hung up at the end: {b:?}");
    assert!(b.clean(), "{b:?}");
    assert!(b.park_s > 0.0 && b.park_s < 30.0 && b.parks_per_s > 0.0, "{b:?}");
    assert!((b.settle_s - 0.2).abs() < 1e-9, "{b:?}");
    assert!(b.park_engine_cpu_s.is_some(), "engine CPU while parking: {b:?}");
    for (name, v) in [("before", b.rss_before), ("parked", b.rss_parked), ("after", b.rss_after), ("end", b.rss_end)] {
        assert!(v.is_some_and(|v| v > 1 << 20), "engine RSS {name}: {b:?}");
    }
    assert!(b.rss_per_call.is_some_and(f64::is_finite), "{b:?}");

    // The background calls sent no NOTIFY (no device on their extensions):
    // the cycles saw exactly their own datagrams, and the engine's NOTIFYs
    // are the cycles' alone.
    let per_way = CYCLES * (7 + 2 * u64::from(DEVICES));
    assert_eq!(report.datagrams_sent - report.retransmissions_sent - report.stray_answered, per_way, "{report}");
    assert_eq!(report.datagrams_received - report.duplicates_received - report.stray, per_way, "{report}");
    assert_eq!(after.notifies_sent - before.notifies_sent, CYCLES * 2 * u64::from(DEVICES), "{after:?}");
    assert_eq!(after.parks - before.parks, CYCLES + u64::from(BACKGROUND), "{after:?}");
    assert_eq!(after.hangups - before.hangups, u64::from(BACKGROUND), "the BYEs ended the background calls");
    assert_eq!(total(&engine, |s| s.parked.get()), 0, "calls left parked after the hang-up");
    assert_eq!(total(&engine, |s| s.bindings.get()), 0, "bindings left after the clean-up");
    assert_eq!(after.parse_errors, before.parse_errors, "{after:?}");

    // The headline covers the cycle window only.
    let engine_cpu = report.engine_cpu_s.unwrap_or_else(|| panic!("engine CPU not measured\n{report}"));
    let headline = report.cycles_per_engine_cpu_s.unwrap_or_else(|| panic!("no headline\n{report}"));
    assert!((headline - CYCLES as f64 / engine_cpu).abs() < 1e-6 * headline, "{report}");
    let us = report.engine_cpu_us_per_cycle.unwrap_or_else(|| panic!("no µs per cycle\n{report}"));
    assert!((us * headline - 1e6).abs() < 1e-3, "{us} µs vs {headline}/s");

    for needle in [
        format!("\"background_parked\":{BACKGROUND}"),
        format!("\"background_ok\":{BACKGROUND}"),
        "\"background_failed\":0".to_owned(),
        "\"background_lost\":0".to_owned(),
        format!("\"background_hangup_ok\":{BACKGROUND}"),
        "\"background_hangup_failed\":0".to_owned(),
        format!("\"engine_rss_before_bytes\":{}", b.rss_before.unwrap_or_default()),
        format!("\"engine_rss_after_bytes\":{}", b.rss_after.unwrap_or_default()),
        format!("\"engine_rss_end_bytes\":{}", b.rss_end.unwrap_or_default()),
        "\"background_park_s\":".to_owned(),
        "\"engine_rss_bytes_per_background_call\":".to_owned(),
        "\"engine_cpu_us_per_cycle\":".to_owned(),
        "\"cycles_failed\":0".to_owned(),
    ] {
        assert!(json.contains(&needle), "JSON lacks {needle}: {json}");
    }
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    let text = report.to_string();
    assert!(text.contains("background parked 200 of 200") && text.contains("engine RSS"), "{text}");

    engine.shutdown();
    engine.join().unwrap_or_else(|e| panic!("engine worker failed: {e}"));
}

#[test]
fn background_parks_the_engine_refuses_are_counted_as_failed() {
    // One shard that holds at most 5 parked calls: of 10 background parks,
    // 5 succeed and 5 get 503, and then the cycles' parks are refused too.
    let opts = IoOptions {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("listen address: {e}")),
        workers: 1,
        pin: false,
        metrics: None,
        shutdown_grace: Duration::from_secs(1),
        io: IoChoice::Auto,
        steer: SteerChoice::Auto,
        xdp: None,
        serve: Serve::Sip,
        media: None,
    };
    let engine = Engine::start(&opts, |bound: SocketAddr| {
        let mut c = Config { advertise: bound.to_string(), ..Config::default() };
        c.limits.max_parked = 5;
        c
    })
    .unwrap_or_else(|e| panic!("sipark did not start: {e}"));
    let mut cfg = LoadConfig::new(engine.local_addr());
    cfg.tenants = 2;
    cfg.extensions = 2;
    cfg.devices = 1;
    cfg.mode = Mode::Closed { concurrency: 1 };
    cfg.cycles = Some(2);
    cfg.timeout = Duration::from_secs(60);
    cfg.sockets = 2;
    cfg.background_parked = 10;
    cfg.background_window = 1;
    cfg.background_settle = Some(Duration::ZERO);
    cfg.self_cpu = SelfCpu::Thread;
    let report = load::run(&cfg).unwrap_or_else(|e| panic!("load run failed: {e}"));
    println!("{report}");
    let b = &report.background;
    assert_eq!((b.ok, b.refused, b.failed, b.no_answer), (5, 5, 5, 0), "{b:?}");
    assert_eq!(b.refusals, vec![(503, 5)], "{b:?}");
    assert!(!b.clean(), "a run with refused background parks is not clean: {b:?}");
    assert_eq!((b.hangup_ok, b.hangup_failed), (5, 0), "the parked ones are hung up: {b:?}");
    assert_eq!(report.cycles_failed, 2, "the engine is full, so the cycles' parks fail too\n{report}");
    assert_eq!(report.failures, vec![("park_refused", 2)], "{report}");
    let json = report.to_json();
    for needle in ["\"background_failed\":5", "\"background_refusals\":{\"503\":5}", "\"background_ok\":5"] {
        assert!(json.contains(needle), "JSON lacks {needle}: {json}");
    }
    assert_eq!(total(&engine, |s| s.parked.get()), 0, "calls left parked");
    engine.shutdown();
    engine.join().unwrap_or_else(|e| panic!("engine worker failed: {e}"));
}

#[test]
fn nothing_listening_fails_registration_within_the_hard_stop() {
    // A bound but silent socket: every REGISTER goes unanswered.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    let mut cfg = LoadConfig::new(silent.local_addr().unwrap_or_else(|e| panic!("{e}")));
    cfg.tenants = 2;
    cfg.extensions = 2;
    cfg.devices = 1;
    cfg.mode = Mode::Closed { concurrency: 1 };
    cfg.cycles = Some(1);
    cfg.t1 = Duration::from_millis(5);
    cfg.timeout = Duration::from_secs(10);
    cfg.sockets = 1;
    let started = std::time::Instant::now();
    match load::run(&cfg) {
        Err(load::LoadError::Setup(msg)) => assert!(msg.contains("no device could register"), "{msg}"),
        other => panic!("expected a set-up error, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn bad_configurations_are_refused() {
    let target: SocketAddr = "127.0.0.1:5060".parse().unwrap_or_else(|e| panic!("{e}"));
    let base = LoadConfig::new(target);
    assert_eq!(base.validate(), Ok(()));
    let mut c = base.clone();
    c.mode = Mode::Closed { concurrency: 6000 };
    assert!(matches!(load::run(&c), Err(load::LoadError::Config(m)) if m.contains("half the extensions")));
    let mut c = base.clone();
    c.devices = 65;
    assert!(matches!(c.validate(), Err(load::LoadError::Config(_))));
    let mut c = base.clone();
    c.cycles = None;
    c.duration = None;
    assert!(matches!(c.validate(), Err(load::LoadError::Config(_))));
    let mut c = base;
    c.mode = Mode::Open { rate: f64::NAN };
    assert!(matches!(c.validate(), Err(load::LoadError::Config(_))));
}

#[test]
fn warm_up_cycles_run_at_the_engine_but_stay_out_of_the_figures() {
    let engine = start_engine();
    let before = snapshot(&engine);

    const CYCLES: u64 = 100;
    let mut cfg = LoadConfig::new(engine.local_addr());
    cfg.tenants = 10;
    cfg.extensions = 3;
    cfg.devices = 1;
    cfg.mode = Mode::Closed { concurrency: 4 };
    cfg.cycles = Some(CYCLES);
    cfg.warmup = Duration::from_millis(500);
    cfg.timeout = Duration::from_secs(60);
    cfg.sockets = 2;
    cfg.engine_cpu = EngineCpu::Threads { pid: std::process::id(), prefix: "sipark-w".into() };
    cfg.self_cpu = SelfCpu::Thread;

    let report = load::run(&cfg).unwrap_or_else(|e| panic!("load run failed: {e}"));
    let after = settled(&engine, &before, &report);
    assert_eq!(report.cycles_failed, 0, "{report}");
    assert_eq!(
        (report.cycles_started, report.cycles_ok),
        (CYCLES, CYCLES),
        "the window counts its own cycles: {report}"
    );
    assert_eq!(report.park_200.count, CYCLES, "warm-up latencies are forgotten: {:?}", report.park_200);
    assert_eq!(report.park_notify.count, CYCLES, "{:?}", report.park_notify);
    let parks = after.parks - before.parks;
    assert!(parks > CYCLES, "the warm-up's cycles reached the engine too: {parks} parks");
    assert_eq!(report.warmup_s, 0.5);
    assert!(report.to_json().contains("\"warmup_s\":0.5"), "{}", report.to_json());
    assert!(report.to_string().contains("after 0.5 s of warm-up"), "{report}");
}

#[test]
fn floor_cycles_against_a_bare_engine_have_the_cycles_sizes() {
    let opts = IoOptions {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("listen address: {e}")),
        workers: 2,
        pin: false,
        metrics: None,
        shutdown_grace: Duration::from_secs(1),
        io: IoChoice::Auto,
        steer: SteerChoice::Off,
        xdp: None,
        serve: Serve::Bare,
        media: None,
    };
    let engine = Engine::start(&opts, |bound: SocketAddr| Config { advertise: bound.to_string(), ..Config::default() })
        .unwrap_or_else(|e| panic!("bare sipark did not start: {e}"));
    let before = snapshot(&engine);
    const CYCLES: u64 = 300;
    let mut cfg = LoadConfig::new(engine.local_addr());
    cfg.tenants = 20;
    cfg.extensions = 3;
    cfg.devices = 2;
    cfg.mode = Mode::Closed { concurrency: 8 };
    cfg.cycles = Some(CYCLES);
    cfg.timeout = Duration::from_secs(60);
    cfg.sockets = 4;
    cfg.engine_cpu = EngineCpu::Threads { pid: std::process::id(), prefix: "sipark-w".into() };
    cfg.self_cpu = SelfCpu::Thread;
    let shape = CycleShape::from_memory(&cfg, 8).unwrap_or_else(|e| panic!("shape: {e}"));
    assert_eq!((shape.ins.len(), shape.outs.len()), (11, 11), "{shape:?}");

    let report = floor::run(&cfg, &shape).unwrap_or_else(|e| panic!("floor run failed: {e}"));
    println!("{report}");
    assert_eq!((report.cycles_ok, report.cycles_failed, report.cycles_started), (CYCLES, 0, CYCLES), "{report}");
    // Loopback loses nothing: each cycle is 11 exchanges, plus any resent ones.
    assert_eq!(report.datagrams_sent - report.retransmissions, CYCLES * 11, "{report}");
    assert_eq!(report.datagrams_received - report.stray, CYCLES * 11, "{report}");
    let after = settled_bare(&engine, &before, report.datagrams_sent);
    assert_eq!(after.datagrams_in - before.datagrams_in, report.datagrams_sent, "{after:?}");
    assert_eq!(after.datagrams_out - before.datagrams_out, report.datagrams_sent, "{after:?}");
    assert_eq!((after.dropped, after.parse_errors, after.parks), (before.dropped, 0, 0), "no SIP: {after:?}");
    assert!(report.engine_cpu_s.is_some_and(|s| s >= 0.0), "{report}");
    let json = report.to_json();
    for needle in [format!("\"cycles_ok\":{CYCLES}"), "\"datagrams_in_per_cycle\":11".to_owned()] {
        assert!(json.contains(&needle), "JSON lacks {needle}: {json}");
    }
    engine.shutdown();
    engine.join().unwrap_or_else(|e| panic!("engine worker failed: {e}"));
}

/// The bare engine's counters once every reply's send has been counted, or after 5 s.
fn settled_bare(engine: &Engine, before: &Snapshot, sent: u64) -> Snapshot {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = snapshot(engine);
        if now.datagrams_out - before.datagrams_out >= sent || std::time::Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An in-process engine with music on hold (sipark's tune, an ephemeral
/// media socket per worker) and its metrics on `metrics`.
fn start_engine_with_music(workers: u16, metrics: SocketAddr) -> Engine {
    let opts = IoOptions {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("listen address: {e}")),
        workers,
        pin: false,
        metrics: Some(metrics),
        shutdown_grace: Duration::from_secs(1),
        io: IoChoice::Auto,
        steer: SteerChoice::Auto,
        xdp: None,
        serve: Serve::Sip,
        media: Some(sipark::io::media::MediaOptions { listen: None, port: 0, advertise: None }),
    };
    Engine::start(&opts, |bound: SocketAddr| Config { advertise: bound.to_string(), ..Config::default() })
        .unwrap_or_else(|e| panic!("sipark did not start: {e}"))
}

#[test]
fn parked_calls_hear_every_packet_of_their_music_and_the_floor_sends_as_many() {
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("a free TCP port: {e}"));
    let engine = start_engine_with_music(2, metrics);
    const STREAMS: u32 = 60;
    let mut load = LoadConfig::new(engine.local_addr());
    load.tenants = 10;
    load.extensions = 3;
    load.devices = 1;
    load.sockets = 2;
    load.mode = Mode::Closed { concurrency: 4 };
    load.background_window = 16;
    load.engine_cpu = EngineCpu::Threads { pid: std::process::id(), prefix: "sipark-w".into() };
    load.self_cpu = SelfCpu::Thread;
    let mut cfg = moh::MohConfig::new(load, STREAMS);
    cfg.window = Duration::from_secs(2);
    cfg.warmup = Duration::from_millis(500);
    cfg.rtp_sockets = 3;
    cfg.cycle_seconds = Duration::from_secs(1);
    cfg.floor_cpu = None;
    cfg.metrics = Some(metrics);

    let r = moh::run(&cfg).unwrap_or_else(|e| panic!("moh run failed: {e}"));
    println!("{r}");
    assert_eq!((r.parked, r.park_failed, r.calls_lost), (u64::from(STREAMS), 0, 0), "{r}");
    assert_eq!((r.hangup_ok, r.hangup_failed), (u64::from(STREAMS), 0), "{r}");
    assert!(r.clean(), "{r}");
    let rx = r.rx.as_ref().unwrap_or_else(|| panic!("no receiver figures\n{r}"));
    // 60 streams × 50 packets/s × 2 s; a test machine may be busy, so the
    // pacing is only bounded, and a late worker's skipped packets allowed.
    assert_eq!(rx.streams, u64::from(STREAMS), "{r}");
    assert_eq!((rx.lost, rx.socket_drops, rx.not_rtp, rx.other_size), (0, 0, 0, 0), "{r}");
    let expected = rx.expected(STREAMS);
    assert_eq!(expected, 6000.0);
    assert!((rx.packets + rx.skipped) as f64 >= expected - 2.0 * f64::from(STREAMS), "{r}");
    assert!(rx.packets as f64 <= expected + 2.0 * f64::from(STREAMS), "{r}");
    assert!(rx.pacing_count > 0 && rx.pacing_p50_us < 20_000.0, "{r}");
    // The engine's own counters agree with the receiver's.
    let m = r.engine.unwrap_or_else(|| panic!("no engine counters: {:?}\n{r}", r.metrics_errors));
    assert_eq!(m.streams, f64::from(STREAMS), "{r}");
    assert_eq!((m.send_errors, m.unaddressed, m.refused), (0.0, 0.0, 0.0), "{r}");
    assert!((m.packets - rx.packets as f64).abs() <= 2.0 * f64::from(STREAMS), "{r}");
    // Measured, though 60 streams may take less than one clock tick (10 ms)
    // of the worker's CPU in 2 s, which /proc then reads as 0.
    assert!(r.engine_cpu_s.is_some_and(|s| s >= 0.0), "{r}");
    assert_eq!(r.streams_after_hangup, Some(0.0), "{r}");
    // The cycles ran while the music played, and the music went on.
    let c = r.cycles.as_ref().unwrap_or_else(|| panic!("no cycle phase\n{r}"));
    assert!(c.report.cycles_ok > 0 && c.report.cycles_failed == 0, "{r}");
    assert_eq!((c.music.streams, c.music.lost), (u64::from(STREAMS), 0), "{r}");
    // The floor sent the same streams to the same receivers.
    let f = r.floor.as_ref().unwrap_or_else(|| panic!("no floor\n{r}"));
    assert_eq!((f.rx.streams, f.rx.lost, f.sent.send_errors), (u64::from(STREAMS), 0, 0), "{r}");
    assert!((f.sent.packets as f64 - expected).abs() <= 2.0 * f64::from(STREAMS), "{r}");
    assert!(f.sent.cpu_s > 0.0, "{r}");
    assert_eq!(r.floor_ratio().is_some(), r.packets_per_engine_cpu_s().is_some(), "{r}");
    let json = r.to_json();
    for needle in [format!("\"streams\":{STREAMS}"), "\"mode\":\"moh\"".to_owned(), "\"clean\":true".to_owned()] {
        assert!(json.contains(&needle), "JSON lacks {needle}: {json}");
    }
    engine.shutdown();
    engine.join().unwrap_or_else(|e| panic!("engine worker failed: {e}"));
}
