//! One batch of C message headers for `recvmmsg`/`sendmmsg`, shared by
//! the mmsg backend and the media sockets.

use std::ptr;

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

impl Default for Batch {
    fn default() -> Batch {
        Batch::new()
    }
}
