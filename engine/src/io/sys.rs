//! Small wrappers of the operating system that several parts of the I/O
//! layer (and the command line) share: the kernel's randomness, eventfds,
//! CPU affinity. A leaf: it imports no other module of `io`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// 32 random bytes from the kernel (`getrandom(2)`): the digest nonce key
/// of the process, and each shard's [`crate::proto::ids::Seed`].
pub fn random_bytes() -> io::Result<[u8; 32]> {
    let mut key = [0u8; 32];
    let mut filled = 0;
    while filled < key.len() {
        let tail = &mut key[filled..];
        // SAFETY: the pointer and length describe `tail`, which lives across the call.
        let n = unsafe { libc::getrandom(tail.as_mut_ptr().cast(), tail.len(), 0) };
        if n > 0 {
            filled += n as usize;
        } else {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    Ok(key)
}

/// Asks the kernel to stamp every datagram `socket` receives with its
/// receive time (`SO_TIMESTAMPNS`: an `SCM_TIMESTAMPNS` control message,
/// `CLOCK_REALTIME`), for overload control's queueing delay.
pub fn enable_rx_timestamps(socket: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int and its size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            std::ptr::addr_of!(on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates a non-blocking eventfd.
pub fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; a negative return is an error.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `n` to an eventfd's counter. A full counter (`EAGAIN`) already
/// means "wake up", so it counts as success.
pub fn eventfd_add(fd: &OwnedFd, n: u64) -> io::Result<()> {
    let v = n.to_ne_bytes();
    // SAFETY: `v` is 8 readable bytes, as eventfd writes require.
    let rc = unsafe { libc::write(fd.as_raw_fd(), v.as_ptr().cast(), v.len()) };
    if rc == 8 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EAGAIN) { Ok(()) } else { Err(e) }
}

/// Resets an eventfd's counter (non-blocking read).
pub fn eventfd_clear(fd: &OwnedFd) {
    let mut v = [0u8; 8];
    // SAFETY: `v` is 8 writable bytes; the fd is non-blocking, so an
    // empty counter returns EAGAIN, which is fine.
    let _ = unsafe { libc::read(fd.as_raw_fd(), v.as_mut_ptr().cast(), v.len()) };
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cpu index past CPU_SETSIZE"));
    }
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE`, so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: all-zero is an empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c < CPU_SETSIZE`, inside `set`.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_bytes_differ_between_calls() {
        let (a, b) = (super::random_bytes().expect("getrandom"), super::random_bytes().expect("getrandom"));
        assert_ne!(a, b);
    }
}
