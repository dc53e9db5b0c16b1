//! sipark-load against an in-process sipark (2 workers, 127.0.0.1:0):
//! 300 closed-loop cycles over 20 tenants × 3 extensions × 2 devices must
//! all complete, and the engine's own counters must agree with the cycle's
//! datagram count (7 + 2·devices each way).

use std::net::SocketAddr;
use std::time::Duration;

use sipark::io::{Engine, IoChoice, IoOptions, SteerChoice};
use sipark::proto::config::Config;
use sipark::proto::stats::ShardStats;
use sipark_benches::load::{self, EngineCpu, LoadConfig, Mode, SelfCpu};

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
