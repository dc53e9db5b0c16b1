//! The `sipark` binary: flags, logging, signals. The flags become a plan
//! in [`sipark::cli`]; the work is in [`sipark::io::Engine`].
//!
//! Exit status: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when the
//! engine cannot start or a worker fails, 2 for bad flags or configuration.
//!
//! SIGHUP re-reads the tenants file and the TLS certificates and hands them
//! to the running engine; a file that does not load leaves everything as
//! it was (docs/decisions/0016-reload.md).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use sipark::cli::{self, Args, System};
use sipark::io::{Engine, Serve, signal};
use tracing::{error, info, warn};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse(); // exits 2 on bad flags
    cli::init_logging(args.log_format);
    let plan = match cli::plan(&args, &System) {
        Ok(p) => p,
        Err(e) => {
            error!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any thread exists, so that every thread inherits the mask and
    // only sigtimedwait below sees SIGINT/SIGTERM/SIGHUP.
    if let Err(e) = signal::block() {
        error!("cannot block SIGINT/SIGTERM/SIGHUP: {e}");
        return ExitCode::from(1);
    }
    let mut advertise = String::new();
    let mut engine = match Engine::start_with(&plan.io, &plan.streams, |bound| {
        let cfg = plan.config(bound);
        advertise.clone_from(&cfg.advertise);
        cfg
    }) {
        Ok(e) => e,
        Err(e) => {
            error!("cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    if plan.io.serve == Serve::Bare {
        warn!("--bare-io: no SIP is served; every datagram is answered with the size it asks for (benchmarks only)");
    }
    info!(
        listen = %engine.local_addr(),
        advertise = %advertise,
        workers = plan.io.workers,
        pinned = plan.io.pin,
        io = %engine.io_mode(),
        steering = engine.steering(),
        xdp = %plan.xdp_desc,
        tenants = %plan.tenants_desc,
        metrics = %engine.metrics_addr().map_or_else(|| "off".to_owned(), |a| a.to_string()),
        tcp = %engine.tcp_addr().map_or_else(|| "off".to_owned(), |a| a.to_string()),
        tls = %engine.tls_addr().map_or_else(|| "off".to_owned(), |a| a.to_string()),
        advertise_tls = engine.advertise_tls().unwrap_or("-"),
        "sipark started"
    );

    let mut failed = false;
    loop {
        match signal::wait(Duration::from_millis(200)) {
            Some(signal::Signal::Hup) => cli::reload(&args, &System, &mut engine),
            Some(sig) => {
                info!(signal = sig.name(), grace_s = plan.io.shutdown_grace.as_secs(), "shutting down");
                break;
            }
            None => {}
        }
        engine.maintain(Instant::now());
        if engine.worker_exited() {
            error!("a worker stopped unexpectedly; shutting down");
            failed = true;
            break;
        }
    }
    engine.shutdown();
    // Workers exit within the grace period (plus their exit wait); a
    // second signal ends the process at once.
    let started = Instant::now();
    while !engine.all_exited() {
        match signal::wait(Duration::from_millis(100)) {
            Some(signal::Signal::Hup) => info!("SIGHUP during shutdown: ignored"),
            Some(sig) => {
                warn!(signal = sig.name(), "second signal: exiting without draining");
                std::process::exit(1);
            }
            None => {}
        }
        if started.elapsed() > plan.io.shutdown_grace + Duration::from_secs(5) {
            warn!("workers did not stop in time; exiting");
            std::process::exit(1);
        }
    }
    match engine.join() {
        Ok(()) if !failed => {
            info!("shutdown complete");
            ExitCode::SUCCESS
        }
        Ok(()) => ExitCode::from(1),
        Err(e) => {
            error!("worker failed: {e}");
            ExitCode::from(1)
        }
    }
}
