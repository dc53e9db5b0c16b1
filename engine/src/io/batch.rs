//! One batch of C message headers for `recvmmsg`/`sendmmsg`, shared by
//! the mmsg backend and the media sockets.

use std::net::SocketAddr;
use std::ptr;

use super::uring::{read_sockaddr, write_sockaddr};

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 64;

/// One batch of C message headers with their address and iovec storage.
/// Boxed slices that are never resized, so the pointers set up in
/// [`Batch::new`] stay valid for the batch's life.
pub struct Batch {
    pub hdrs: Box<[libc::mmsghdr]>,
    pub names: Box<[libc::sockaddr_storage]>,
    pub iovs: Box<[libc::iovec]>,
}

impl Batch {
    pub fn new() -> Batch {
        // SAFETY: mmsghdr, sockaddr_storage and iovec are plain C structs
        // for which all-zero is a valid value.
        let zeroed = || unsafe { std::mem::zeroed() };
        let mut b = Batch {
            hdrs: (0..BATCH).map(|_| zeroed()).collect(),
            // SAFETY: as above.
            names: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
            // SAFETY: as above.
            iovs: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
        };
        for i in 0..BATCH {
            b.hdrs[i].msg_hdr.msg_name = ptr::addr_of_mut!(b.names[i]).cast();
            b.hdrs[i].msg_hdr.msg_iov = ptr::addr_of_mut!(b.iovs[i]);
            b.hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        b
    }
}

impl Batch {
    /// Readies every header for a `recvmmsg`: room for a whole address,
    /// `control` bytes of control messages, no flags.
    pub fn rearm(&mut self, control: usize) {
        for h in self.hdrs.iter_mut() {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = control;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// Points header `i` at `bytes`, to go to `dst` in the next
    /// `sendmmsg` (which only reads them; they must stay put until it
    /// returns).
    pub fn point(&mut self, i: usize, dst: SocketAddr, bytes: &[u8]) {
        self.hdrs[i].msg_hdr.msg_namelen = write_sockaddr(dst, &mut self.names[i]);
        self.iovs[i] = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
        self.hdrs[i].msg_len = 0;
    }

    /// The `i`-th datagram of the last `recvmmsg`: its source, and its
    /// length when the kernel did not cut it to fit `buf_size`.
    pub fn received(&self, i: usize, buf_size: usize) -> (Option<SocketAddr>, Option<usize>) {
        let h = &self.hdrs[i];
        let name_len = (h.msg_hdr.msg_namelen as usize).min(size_of::<libc::sockaddr_storage>());
        // SAFETY: `names[i]` is a whole sockaddr_storage; its first
        // `name_len` bytes may be read as bytes.
        let name = unsafe { std::slice::from_raw_parts(ptr::addr_of!(self.names[i]).cast::<u8>(), name_len) };
        let len = h.msg_len as usize;
        let whole = h.msg_hdr.msg_flags & libc::MSG_TRUNC == 0 && len <= buf_size;
        (read_sockaddr(name), whole.then_some(len))
    }
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}
