//! The command line: the flags ([`Args`]) turned into a [`Plan`] (the I/O
//! and stream options, the XDP filter and the shards' [`Config`]), and the
//! SIGHUP reload ([`reload`]); and the logging set-up ([`init_logging`]).
//! The `sipark` binary only wires these to [`crate::io::Engine`] and the
//! signals.
//!
//! Nothing here binds a socket or reads the clock. What a plan reads
//! besides the flags (the tenants file, certificates, the outbound proxy's
//! address, the nonce key, the core count) comes through [`Sources`]:
//! [`System`] in the binary, in-memory files in the tests.
//!
//! Log lines written here keep the binary's target (`sipark`), as when
//! this code was the binary's.
//!
//! [`Config`]: crate::proto::config::Config

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

mod args;
mod plan;
mod reload;
mod sources;
#[cfg(test)]
mod tests;

pub use args::{Args, IoArg, LogFormat, SteerArg, XdpModeArg};
pub use plan::{Plan, plan};
pub use reload::{Reloaded, reload, reload_plan};
pub use sources::{Sources, System};

/// The target of the log lines written here: the binary's.
const LOG: &str = "sipark";

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), as text (in
/// colour on a terminal) or JSON lines.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}
