//! Signal handling without signal handlers: SIGINT, SIGTERM and SIGHUP are
//! blocked in every thread (a mask set before the workers are spawned is
//! inherited; workers block them again themselves), and the main thread
//! takes them synchronously with `sigtimedwait`.
//!
//! SIGINT and SIGTERM start the graceful shutdown; SIGHUP reloads the
//! tenants file and the TLS certificates.

use std::io;
use std::time::Duration;

use tracing::warn;

/// A signal [`wait`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: shut down.
    Int,
    /// SIGTERM: shut down.
    Term,
    /// SIGHUP: reload the configuration files.
    Hup,
}

impl Signal {
    /// The signal's name, e.g. `SIGTERM`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Int => "SIGINT",
            Signal::Term => "SIGTERM",
            Signal::Hup => "SIGHUP",
        }
    }

    /// Whether the signal asks sipark to stop.
    pub fn is_shutdown(self) -> bool {
        matches!(self, Signal::Int | Signal::Term)
    }
}

/// The signals taken synchronously: SIGINT, SIGTERM and SIGHUP.
fn taken_set() -> libc::sigset_t {
    // SAFETY: all-zero is valid storage for sigemptyset to initialise.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t; the signal numbers are
    // valid, so these calls cannot fail.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
    }
    set
}

/// Blocks SIGINT, SIGTERM and SIGHUP on the calling thread. Call it on the
/// main thread before spawning any thread so every thread inherits the mask.
pub fn block() -> io::Result<()> {
    let set = taken_set();
    // SAFETY: `set` is initialised; the old mask is not wanted (null).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

/// Waits up to `timeout` for SIGINT, SIGTERM or SIGHUP (which must be
/// blocked, see [`block`]). Returns the signal, or `None` on timeout.
pub fn wait(timeout: Duration) -> Option<Signal> {
    let set = taken_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: `set` and `ts` are initialised and outlive the call; the
    // siginfo out-pointer may be null.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGINT => Some(Signal::Int),
        libc::SIGTERM => Some(Signal::Term),
        libc::SIGHUP => Some(Signal::Hup),
        _ => None, // EAGAIN (timeout) or EINTR
    }
}

/// Blocks SIGINT and SIGTERM on the calling thread (a worker or the
/// stream thread), so that only the thread waiting for them (the main
/// thread) receives them; a failure is logged, not fatal.
pub fn block_shutdown_signals() {
    if let Err(e) = block() {
        // The target this line had when it was written in `worker`.
        warn!(target: "sipark::io::worker", error = %e, "cannot block SIGINT/SIGTERM on a worker thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `sig` to the calling thread.
    fn raise_here(sig: libc::c_int) {
        // SAFETY: sending a signal to this very thread, where it is blocked,
        // so it stays pending until sigtimedwait takes it.
        let rc = unsafe { libc::pthread_kill(libc::pthread_self(), sig) };
        assert_eq!(rc, 0, "pthread_kill({sig})");
    }

    #[test]
    fn blocked_signals_are_taken_by_wait() {
        // Runs on its own thread so the mask change stays there.
        let got = std::thread::spawn(|| {
            block().expect("block signals");
            assert_eq!(wait(Duration::from_millis(10)), None, "no signal pending yet");
            raise_here(libc::SIGHUP);
            let hup = wait(Duration::from_secs(2));
            raise_here(libc::SIGINT);
            let int = wait(Duration::from_secs(2));
            raise_here(libc::SIGTERM);
            let term = wait(Duration::from_secs(2));
            (hup, int, term)
        })
        .join()
        .expect("signal thread");
        assert_eq!(got, (Some(Signal::Hup), Some(Signal::Int), Some(Signal::Term)));
        assert!(!Signal::Hup.is_shutdown() && Signal::Int.is_shutdown() && Signal::Term.is_shutdown());
        assert_eq!(Signal::Hup.name(), "SIGHUP");
    }
}
