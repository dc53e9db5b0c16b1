//! Small wrappers of the operating system that several parts of the I/O
//! layer (and the binary) share.

use std::io;

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

#[cfg(test)]
mod tests {
    #[test]
    fn random_bytes_differ_between_calls() {
        let (a, b) = (super::random_bytes().expect("getrandom"), super::random_bytes().expect("getrandom"));
        assert_ne!(a, b);
    }
}
