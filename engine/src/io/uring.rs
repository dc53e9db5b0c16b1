//! io_uring building blocks for the workers: ring set-up, the provided
//! buffer ring that multishot receives fill, the slab of in-flight sends,
//! `user_data` tags, and `sockaddr` conversions (which the mmsg backend
//! uses too). A leaf: it imports no other module of `io`; the backend that
//! drives these is [`super::uring_worker`].
//!
//! Kernel requirements (each op names the first kernel that has it):
//!
//! | feature                                   | kernel |
//! |-------------------------------------------|--------|
//! | `IORING_OP_SENDMSG` / `RECVMSG`           | 5.3    |
//! | `IORING_FEAT_EXT_ARG` (`submit_with_args`)| 5.11   |
//! | `IORING_OP_MSG_RING` (`MsgRingData`)      | 5.18   |
//! | `IORING_REGISTER_PBUF_RING` (buf ring)    | 5.19   |
//! | `IORING_SETUP_SINGLE_ISSUER`              | 6.0    |
//! | multishot `RECVMSG` (`RecvMsgMulti`)      | 6.0    |
//! | `IORING_SETUP_DEFER_TASKRUN`              | 6.1    |
//!
//! # Buffer lifetime rule
//!
//! Memory handed to the kernel belongs to the kernel until the CQE that
//! ends the operation: a send's `msghdr`, `iovec`, address and payload stay
//! untouched in their [`SendSlab`] slot until the send's CQE; the buffer ring
//! and its buffers stay mapped until the ring is gone. A *provided* buffer
//! is the kernel's while it sits on the buffer ring; it becomes ours when a
//! receive CQE names its id, and stays ours until we put it back on the
//! ring with [`BufRing::recycle`] (after the datagram has been handled or
//! copied). [`BufRing::publish`] makes recycled buffers visible to the
//! kernel.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

/// `user_data` of the multishot receive.
pub const UD_RECV: u64 = 1 << 56;
/// `user_data` of a send; the low 32 bits are the slab slot.
pub const UD_SEND: u64 = 2 << 56;
/// `user_data` of a `MsgRingData` arriving from another ring (a wake-up).
pub const UD_WAKE: u64 = 3 << 56;
/// `user_data` of the sender-side completion of our own `MsgRingData`.
pub const UD_MSG_SENT: u64 = 4 << 56;
/// `user_data` of an `AsyncCancel` (its own completion).
pub const UD_CANCEL: u64 = 5 << 56;
/// Mask selecting the tag of a `user_data`.
pub const UD_TAG_MASK: u64 = 0xff << 56;

/// How a worker ring was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingMode {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (kernel 6.1+).
    DeferTaskrun,
    /// `SINGLE_ISSUER` only (kernel 6.0).
    SingleIssuer,
    /// No set-up flags.
    Plain,
}

impl RingMode {
    /// Human name for logs.
    pub fn name(self) -> &'static str {
        match self {
            RingMode::DeferTaskrun => "single_issuer+defer_taskrun",
            RingMode::SingleIssuer => "single_issuer",
            RingMode::Plain => "plain",
        }
    }
}

/// Creates a worker ring with `sq_entries` submission and `cq_entries`
/// completion entries, trying `SINGLE_ISSUER | DEFER_TASKRUN` first and
/// falling back (on `EINVAL`, an older kernel) to fewer flags.
///
/// With `SINGLE_ISSUER` only the creating thread may submit, so this must
/// run on the worker thread that will drive the ring.
pub fn new_ring(sq_entries: u32, cq_entries: u32) -> io::Result<(IoUring, RingMode)> {
    let attempts = [RingMode::DeferTaskrun, RingMode::SingleIssuer, RingMode::Plain];
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for mode in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(cq_entries);
        match mode {
            RingMode::DeferTaskrun => {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            RingMode::SingleIssuer => {
                b.setup_single_issuer();
            }
            RingMode::Plain => {}
        }
        match b.build(sq_entries) {
            Ok(ring) => {
                if !ring.params().is_feature_ext_arg() {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "io_uring lacks IORING_FEAT_EXT_ARG (kernel 5.11+ needed)",
                    ));
                }
                return Ok((ring, mode));
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// An anonymous, page-aligned, zeroed memory mapping.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping at a kernel-chosen address
        // touches no existing memory; the result is checked below.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing
        // refers to the mapping any more (owners drop it last).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Layout of `struct io_uring_buf` (the kernel's buffer ring entry). The
/// ring's tail lives in the `resv` field of entry 0.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

/// A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, kernel 5.19):
/// `entries` buffers of `buf_size` bytes each, registered under one buffer
/// group id. We own the memory (two anonymous mappings).
#[derive(Debug)]
pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_size: u32,
    /// Our copy of the tail; [`BufRing::publish`] stores it for the kernel.
    tail: u16,
    bgid: u16,
}

// SAFETY: BufRing owns its mappings exclusively; the raw pointers are not
// shared with other threads (only with the kernel).
unsafe impl Send for BufRing {}

impl BufRing {
    /// Maps the ring and buffers, and fills the ring with every buffer.
    /// `entries` must be a power of two no larger than 32768.
    pub fn new(entries: u16, buf_size: u32, bgid: u16) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two <= 32768",
            ));
        }
        let ring = Mapping::new(usize::from(entries) * size_of::<RingEntry>())?;
        let bufs = Mapping::new(usize::from(entries) * buf_size as usize)?;
        let mut br = BufRing { ring, bufs, entries, buf_size, tail: 0, bgid };
        for bid in 0..entries {
            br.recycle(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Registers the ring with `uring` under this buffer group.
    ///
    /// # Safety
    ///
    /// `self` must outlive every operation of `uring` that selects buffers
    /// from this group: keep it alive until those operations have completed
    /// or the ring is closed (declare it after the ring in the owning struct
    /// so that the ring drops first, or unregister it).
    pub unsafe fn register(&self, uring: &IoUring) -> io::Result<()> {
        // SAFETY: the ring mapping holds `entries` entries and lives as
        // long as the caller promises above.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(self.ring.ptr.as_ptr() as u64, self.entries, self.bgid, 0)
        }
    }

    /// Buffer group id.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Size of each buffer.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// The first `len` bytes of buffer `bid`, which a receive CQE just gave
    /// us. Returns `None` for an id or length out of range.
    pub fn buffer(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.entries || len > self.buf_size as usize {
            return None;
        }
        let off = usize::from(bid) * self.buf_size as usize;
        // SAFETY: `off + len` is within the buffers mapping (checked
        // above). Buffer `bid` was handed to us by a CQE, so the kernel will
        // not write it until we recycle it, which needs `&mut self` and thus
        // ends this borrow first.
        Some(unsafe { std::slice::from_raw_parts(self.bufs.ptr.as_ptr().add(off), len) })
    }

    /// Puts buffer `bid` back at the tail of the ring (not yet visible to
    /// the kernel: see [`BufRing::publish`]). Only call this for a buffer
    /// that is ours (named by a CQE, not yet recycled), or during set-up.
    pub fn recycle(&mut self, bid: u16) {
        if bid >= self.entries {
            return;
        }
        let idx = usize::from(self.tail & (self.entries - 1));
        let addr = self.bufs.ptr.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_size);
        // SAFETY: `idx < entries`, so the entry is inside the ring mapping.
        // The slot at our (unpublished) tail is not read by the kernel until
        // the tail moves past it. Only `addr`, `len` and `bid` are written;
        // `resv` of entry 0 is the shared tail and is left alone.
        unsafe {
            let e = self.ring.ptr.as_ptr().cast::<RingEntry>().add(idx);
            ptr::addr_of_mut!((*e).addr).write(addr);
            ptr::addr_of_mut!((*e).len).write(self.buf_size);
            ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publishes every recycled buffer to the kernel (a release store of
    /// the tail).
    pub fn publish(&self) {
        // SAFETY: entry 0's `resv` field is the ring tail, which the kernel
        // reads with acquire semantics; the mapping is 16-byte aligned so
        // the u16 is aligned, and all accesses to it go through atomics.
        unsafe {
            let e = self.ring.ptr.as_ptr().cast::<RingEntry>();
            let tail = AtomicU16::from_ptr(ptr::addr_of_mut!((*e).resv));
            tail.store(self.tail, Ordering::Release);
        }
    }
}

/// One in-flight send: everything `sendmsg` points to, at a stable address.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    payload: Option<Vec<u8>>,
}

/// A fixed slab of send slots. Slots live in one boxed slice that is never
/// resized, so the pointers inside a `msghdr` stay valid until its CQE.
pub struct SendSlab {
    slots: Box<[SendSlot]>,
    free: Vec<u32>,
}

// SAFETY: the raw pointers in the slots only point into the slab itself
// and the owned payloads; the slab is not shared between threads.
unsafe impl Send for SendSlab {}

impl std::fmt::Debug for SendSlab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendSlab").field("capacity", &self.slots.len()).field("in_flight", &self.in_flight()).finish()
    }
}

impl SendSlab {
    /// A slab of `n` slots, all free.
    pub fn new(n: u32) -> SendSlab {
        let slots: Box<[SendSlot]> = (0..n)
            .map(|_| SendSlot {
                // SAFETY: msghdr, iovec and sockaddr_storage are plain C
                // structs for which all-zero is a valid value.
                hdr: unsafe { std::mem::zeroed() },
                // SAFETY: as above.
                iov: unsafe { std::mem::zeroed() },
                // SAFETY: as above.
                addr: unsafe { std::mem::zeroed() },
                payload: None,
            })
            .collect();
        SendSlab { slots, free: (0..n).rev().collect() }
    }

    /// Whether a slot is free.
    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Slots in flight.
    pub fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Fills a free slot with `payload` for `dst` and returns its index and
    /// a pointer to its `msghdr`, valid until [`SendSlab::complete`] for that
    /// index. Returns the payload back if no slot is free.
    pub fn prepare(&mut self, dst: SocketAddr, payload: Vec<u8>) -> Result<(u32, *const libc::msghdr), Vec<u8>> {
        let Some(idx) = self.free.pop() else {
            return Err(payload);
        };
        let slot = &mut self.slots[idx as usize];
        let addr_len = write_sockaddr(dst, &mut slot.addr);
        let payload = slot.payload.insert(payload);
        slot.iov = libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: payload.len() };
        // SAFETY: all-zero is a valid msghdr (no control data, no flags).
        slot.hdr = unsafe { std::mem::zeroed() };
        slot.hdr.msg_name = ptr::addr_of_mut!(slot.addr).cast();
        slot.hdr.msg_namelen = addr_len;
        slot.hdr.msg_iov = ptr::addr_of_mut!(slot.iov);
        slot.hdr.msg_iovlen = 1;
        Ok((idx, ptr::addr_of!(slot.hdr)))
    }

    /// Frees slot `idx` after its CQE and returns its payload. `None` for
    /// an index that is not in flight.
    pub fn complete(&mut self, idx: u32) -> Option<Vec<u8>> {
        let slot = self.slots.get_mut(idx as usize)?;
        let payload = slot.payload.take()?;
        self.free.push(idx);
        Some(payload)
    }
}

/// Writes `addr` as a C socket address into `out`; returns its length.
pub fn write_sockaddr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: all-zero is a valid sockaddr_storage.
    *out = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned
            // for sockaddr_in.
            unsafe { ptr::write(ptr::from_mut(out).cast::<libc::sockaddr_in>(), sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned
            // for sockaddr_in6.
            unsafe { ptr::write(ptr::from_mut(out).cast::<libc::sockaddr_in6>(), sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a C socket address from raw bytes (as a multishot receive lays
/// it out). `None` if it is neither a whole IPv4 nor IPv6 address.
pub fn read_sockaddr(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flow = u32::from_ne_bytes(b.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
            let v6 = SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope);
            // A v4-mapped peer on a dual-stack socket is shown as IPv4.
            match v6.ip().to_ipv4_mapped() {
                Some(v4) => Some(SocketAddr::V4(SocketAddrV4::new(v4, port))),
                None => Some(SocketAddr::V6(v6)),
            }
        }
        _ => None,
    }
}

/// Room for the one control message a receive asks for: the kernel's
/// receive time (`SCM_TIMESTAMPNS`, a `timespec`), aligned as
/// `CMSG_SPACE` aligns it.
pub const RX_STAMP_SPACE: usize = cmsg_align(size_of::<libc::cmsghdr>()) + cmsg_align(size_of::<libc::timespec>());

/// `CMSG_ALIGN`: rounds up to the alignment of a control message header.
const fn cmsg_align(n: usize) -> usize {
    (n + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// The kernel's receive time of a datagram (time since the Unix epoch,
/// `CLOCK_REALTIME`), from its control messages as `recvmsg` lays them
/// out: the `SCM_TIMESTAMPNS` message that `SO_TIMESTAMPNS` asks for.
/// `None` if there is none (or it is cut short).
pub fn rx_stamp(control: &[u8]) -> Option<std::time::Duration> {
    let hdr = size_of::<libc::cmsghdr>();
    let mut at = 0;
    while let Some(head) = control.get(at..at + hdr) {
        // SAFETY: `head` is `size_of::<cmsghdr>()` bytes of plain data;
        // the read is unaligned and cmsghdr has no invalid bit patterns.
        let h: libc::cmsghdr = unsafe { ptr::read_unaligned(head.as_ptr().cast()) };
        let len = h.cmsg_len as usize;
        if len < hdr {
            return None;
        }
        let data = control.get(at + cmsg_align(hdr)..at + len)?;
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_TIMESTAMPNS {
            let ts = data.get(..size_of::<libc::timespec>())?;
            // SAFETY: as above, for a timespec.
            let ts: libc::timespec = unsafe { ptr::read_unaligned(ts.as_ptr().cast()) };
            let (secs, nanos) = (u64::try_from(ts.tv_sec).ok()?, u32::try_from(ts.tv_nsec).ok()?);
            return Some(std::time::Duration::new(secs, nanos));
        }
        at += cmsg_align(len);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control buffer holding `msgs` (level, type, data), laid out as the
    /// kernel lays it out.
    fn control(msgs: &[(i32, i32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (level, ty, data) in msgs {
            let hdr = size_of::<libc::cmsghdr>();
            // SAFETY: all-zero is a valid cmsghdr.
            let mut h: libc::cmsghdr = unsafe { std::mem::zeroed() };
            h.cmsg_len = (cmsg_align(hdr) + data.len()) as _;
            h.cmsg_level = *level;
            h.cmsg_type = *ty;
            // SAFETY: `h` is plain data; its bytes are read as bytes.
            let bytes = unsafe { std::slice::from_raw_parts(ptr::addr_of!(h).cast::<u8>(), hdr) };
            out.extend_from_slice(bytes);
            out.resize(cmsg_align(out.len()), 0);
            out.extend_from_slice(data);
            out.resize(cmsg_align(out.len()), 0);
        }
        out
    }

    fn timespec(secs: i64, nanos: i64) -> Vec<u8> {
        let ts = libc::timespec { tv_sec: secs as _, tv_nsec: nanos as _ };
        // SAFETY: `ts` is plain data; its bytes are read as bytes.
        unsafe { std::slice::from_raw_parts(ptr::addr_of!(ts).cast::<u8>(), size_of::<libc::timespec>()) }.to_vec()
    }

    #[test]
    fn the_receive_stamp_is_found_among_control_messages() {
        use std::time::Duration;
        let ts = timespec(1_795_543_200, 123_456_789);
        let one = control(&[(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts)]);
        assert_eq!(one.len(), RX_STAMP_SPACE, "one stamp fills the room asked for");
        assert_eq!(rx_stamp(&one), Some(Duration::new(1_795_543_200, 123_456_789)));
        let two = control(&[
            (libc::IPPROTO_IP, libc::IP_TTL, &[64, 0, 0, 0]),
            (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts),
        ]);
        assert_eq!(rx_stamp(&two), Some(Duration::new(1_795_543_200, 123_456_789)));
        assert_eq!(rx_stamp(&[]), None);
        assert_eq!(rx_stamp(&one[..RX_STAMP_SPACE - 1]), None, "cut short");
        let other = control(&[(libc::IPPROTO_IP, libc::IP_TTL, &[64, 0, 0, 0])]);
        assert_eq!(rx_stamp(&other), None);
        let negative = control(&[(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &timespec(-1, 0))]);
        assert_eq!(rx_stamp(&negative), None);
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in ["127.0.0.1:5060", "10.1.2.3:1", "[::1]:5070", "[fe80::1%3]:9"] {
            let addr: SocketAddr = a.parse().unwrap_or_else(|e| panic!("{a}: {e}"));
            // SAFETY: all-zero is a valid sockaddr_storage.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let len = write_sockaddr(addr, &mut ss);
            // SAFETY: `ss` is a live sockaddr_storage of at least `len` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(ptr::addr_of!(ss).cast::<u8>(), len as usize) };
            assert_eq!(read_sockaddr(bytes), Some(addr), "round trip of {a}");
        }
        assert_eq!(read_sockaddr(&[]), None);
        assert_eq!(read_sockaddr(&[2, 0, 0]), None, "truncated AF_INET");
        assert_eq!(read_sockaddr(&[0xff; 28]), None, "unknown family");
    }

    #[test]
    fn send_slab_bounds() {
        let mut slab = SendSlab::new(2);
        let dst: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let (a, _) = slab.prepare(dst, vec![1]).expect("slot a");
        let (b, hdr) = slab.prepare(dst, vec![2, 3]).expect("slot b");
        assert_ne!(a, b);
        // SAFETY: `hdr` points into the slab, which is alive and unchanged.
        let h = unsafe { &*hdr };
        assert_eq!(h.msg_iovlen, 1);
        assert_eq!(h.msg_namelen as usize, size_of::<libc::sockaddr_in>());
        match slab.prepare(dst, vec![9]) {
            Err(p) => assert_eq!(p, vec![9]),
            Ok(_) => panic!("a full slab accepted a send"),
        }
        assert_eq!(slab.complete(b), Some(vec![2, 3]));
        assert_eq!(slab.complete(b), None, "double completion");
        assert_eq!(slab.complete(99), None, "out of range");
        assert_eq!(slab.in_flight(), 1);
    }

    #[test]
    fn buf_ring_hands_out_and_takes_back() {
        let mut br = BufRing::new(4, 64, 7).expect("buf ring");
        assert_eq!(br.bgid(), 7);
        assert_eq!(br.tail, 4, "all buffers on the ring");
        assert_eq!(br.buffer(3, 64).map(<[u8]>::len), Some(64));
        assert!(br.buffer(4, 1).is_none(), "bid out of range");
        assert!(br.buffer(0, 65).is_none(), "len out of range");
        br.recycle(2);
        br.recycle(9); // ignored
        assert_eq!(br.tail, 5);
    }
}
