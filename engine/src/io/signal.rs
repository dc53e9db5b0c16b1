//! SIGINT/SIGTERM handling without signal handlers: the signals are
//! blocked in every thread (a mask set before the workers are spawned is
//! inherited; workers block them again themselves), and the main thread
//! takes them synchronously with `sigtimedwait`.

use std::io;
use std::time::Duration;

/// The shutdown signals: SIGINT and SIGTERM.
fn shutdown_set() -> libc::sigset_t {
    // SAFETY: all-zero is valid storage for sigemptyset to initialise.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t; the signal numbers are
    // valid, so these calls cannot fail.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    set
}

/// Blocks SIGINT and SIGTERM on the calling thread. Call it on the main
/// thread before spawning any thread so every thread inherits the mask.
pub fn block() -> io::Result<()> {
    let set = shutdown_set();
    // SAFETY: `set` is initialised; the old mask is not wanted (null).
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(rc)) }
}

/// Waits up to `timeout` for SIGINT or SIGTERM (which must be blocked, see
/// [`block`]). Returns the signal's name, or `None` on timeout.
pub fn wait(timeout: Duration) -> Option<&'static str> {
    let set = shutdown_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: `set` and `ts` are initialised and outlive the call; the
    // siginfo out-pointer may be null.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGINT => Some("SIGINT"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => None, // EAGAIN (timeout) or EINTR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_signal_is_taken_by_wait() {
        // Runs on its own thread so the mask change stays there.
        let got = std::thread::spawn(|| {
            block().expect("block signals");
            assert_eq!(wait(Duration::from_millis(10)), None, "no signal pending yet");
            // SAFETY: sending SIGINT to this very thread, where it is blocked,
            // so it stays pending until sigtimedwait takes it.
            let rc = unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGINT) };
            assert_eq!(rc, 0, "pthread_kill");
            wait(Duration::from_secs(2))
        })
        .join()
        .expect("signal thread");
        assert_eq!(got, Some("SIGINT"));
    }
}
