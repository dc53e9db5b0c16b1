//! The floor of the music-on-hold bench: a bare batched UDP sender doing
//! what sipark's worker does for music on hold, and nothing else. It sends
//! the same packets (172 bytes: a 12-byte RTP header and 160 bytes) at the
//! same rate pattern (one packet per stream every 20 ms, the streams spread
//! evenly over the 20 milliseconds, paced by a 1 ms tick), in the same
//! batches (`sendmmsg` of 64, `MSG_DONTWAIT`, a packet the kernel refuses
//! counted and dropped), from one socket with the engine's send buffer, to
//! the same receivers, on one thread pinned to one core. Its own CPU time
//! per packet sent is the floor of the engine's.
//!
//! It writes a header per packet and copies a fixed payload: no audio is
//! encoded, no stream table is kept, no SIP is read.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use sipark::proto::media::rtp::Header;

use super::rx::{PACKET, SAMPLES, realtime_ns};
use crate::load::SelfCpu;
use crate::load::net::to_raw;

/// Packets per `sendmmsg`: the engine's batch (`sipark::io::batch::BATCH`).
pub const BATCH: usize = sipark::io::batch::BATCH;
/// Ticks per packet time (1 ms ticks, 20 ms packets).
const TICKS: u64 = 20;
/// The engine's media socket send buffer (`io::media`).
const SNDBUF: libc::c_int = 1 << 20;
/// The payload type sent (PCMU, as the engine chooses for the bench's offer).
const PCMU: u8 = 0;

/// What the floor sends, where, on which core, and when it measures.
#[derive(Debug, Clone)]
pub struct FloorPlan {
    pub streams: u32,
    /// Stream `i` goes to `dests[i % len]`.
    pub dests: Vec<SocketAddr>,
    pub bind: IpAddr,
    /// The core to pin the sending thread to.
    pub cpu: Option<usize>,
    /// The measured window, `CLOCK_REALTIME` ns; sending starts at once
    /// and stops at its end.
    pub start_ns: u64,
    pub end_ns: u64,
}

/// What the floor did.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorSent {
    /// Packets handed to the kernel in the window, and in all.
    pub packets: u64,
    pub total: u64,
    /// Packets the kernel refused (counted and dropped, as the engine does).
    pub send_errors: u64,
    /// The sending thread's CPU time in the window.
    pub cpu_s: f64,
    pub window_s: f64,
    /// Ticks begun more than 1 ms late.
    pub late_ticks: u64,
    /// Why the thread could not be pinned, if it could not.
    pub pin_error: Option<String>,
}

impl FloorSent {
    /// Packets per CPU-second of the sending thread.
    pub fn per_cpu_s(&self) -> Option<f64> {
        (self.cpu_s > 0.0).then(|| self.packets as f64 / self.cpu_s)
    }
}

fn pin(cpu: usize) -> Result<(), String> {
    sipark::io::sys::pin_to_cpu(cpu).map_err(|e| format!("cpu {cpu}: {e}"))
}

fn monotonic() -> libc::timespec {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts
}

fn plus_ms(t: libc::timespec, ms: u64) -> libc::timespec {
    let ns = t.tv_nsec as u64 + (ms % 1000) * 1_000_000;
    libc::timespec {
        tv_sec: t.tv_sec + (ms / 1000 + ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as _,
    }
}

/// Nanoseconds from `a` to `b` (0 when `b` is earlier).
fn ns_between(a: libc::timespec, b: libc::timespec) -> u64 {
    let ns = |t: libc::timespec| (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64);
    ns(b).saturating_sub(ns(a))
}

/// One stream's header state.
#[derive(Debug, Clone, Copy)]
struct Stream {
    dest: u32,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    first: bool,
}

/// The send batch: packets back to back, and their headers.
struct Batch {
    bytes: Box<[u8]>,
    iov: Box<[libc::iovec]>,
    msgs: Box<[libc::mmsghdr]>,
    names: Box<[libc::sockaddr_storage]>,
    name_lens: Box<[libc::socklen_t]>,
    header: Vec<u8>,
    n: usize,
}

impl Batch {
    fn new(dests: &[SocketAddr]) -> Batch {
        let (names, name_lens): (Vec<_>, Vec<_>) = dests.iter().map(|d| to_raw(*d)).unzip();
        Batch {
            bytes: vec![0u8; BATCH * PACKET].into_boxed_slice(),
            // SAFETY: all-zero iovec and mmsghdr values are valid (null
            // pointers, zero lengths).
            iov: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            // SAFETY: as above.
            msgs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            names: names.into_boxed_slice(),
            name_lens: name_lens.into_boxed_slice(),
            header: Vec::with_capacity(16),
            n: 0,
        }
    }

    /// Writes `s`'s next packet; the payload bytes are left as they are.
    fn push(&mut self, s: &Stream) {
        self.header.clear();
        Header { marker: s.first, payload_type: PCMU, seq: s.seq, timestamp: s.timestamp, ssrc: s.ssrc }
            .write(&mut self.header);
        let k = self.n;
        let at = k * PACKET;
        self.bytes[at..at + self.header.len()].copy_from_slice(&self.header);
        self.iov[k] = libc::iovec { iov_base: self.bytes[at..].as_mut_ptr().cast(), iov_len: PACKET };
        let h = &mut self.msgs[k].msg_hdr;
        h.msg_name = std::ptr::addr_of_mut!(self.names[s.dest as usize]).cast();
        h.msg_namelen = self.name_lens[s.dest as usize];
        h.msg_iov = std::ptr::addr_of_mut!(self.iov[k]);
        h.msg_iovlen = 1;
        self.n += 1;
    }

    /// Sends the batch as the engine does: one `sendmmsg` after another,
    /// a refused packet dropped. Returns (sent, refused).
    fn send(&mut self, fd: libc::c_int) -> (u64, u64) {
        let (mut done, mut sent, mut refused) = (0, 0, 0);
        while done < self.n {
            // SAFETY: headers `done..n` point at their own iovecs, at bytes of
            // `self.bytes` and at entries of `self.names`, none of which moves
            // or is touched during the call; the kernel only reads them.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.msgs.as_mut_ptr().add(done),
                    (self.n - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                done += r as usize;
                sent += r as u64;
            } else if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                done += 1;
                refused += 1;
            }
        }
        self.n = 0;
        (sent, refused)
    }
}

/// Sends until the window's end; pins the calling thread first (run it on
/// a thread of its own).
pub fn run(plan: &FloorPlan) -> io::Result<FloorSent> {
    if plan.dests.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no receivers"));
    }
    let pin_error = plan.cpu.map(pin).and_then(Result::err);
    let sock = UdpSocket::bind(SocketAddr::new(plan.bind, 0))?;
    sock.set_nonblocking(true)?;
    let fd = sock.as_raw_fd();
    // SAFETY: `v` is a valid c_int for the duration of the call.
    unsafe {
        let v = SNDBUF;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            std::ptr::addr_of!(v).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    // Stream i is due in millisecond i % 20 of each packet time.
    let mut slots: Vec<Vec<Stream>> = (0..TICKS).map(|_| Vec::new()).collect();
    for i in 0..plan.streams {
        slots[(u64::from(i) % TICKS) as usize].push(Stream {
            dest: i % plan.dests.len() as u32,
            ssrc: 0xf100_0000 ^ i,
            seq: (i as u16).wrapping_mul(7),
            timestamp: i.wrapping_mul(0x9e37_79b9),
            first: true,
        });
    }
    let mut batch = Batch::new(&plan.dests);
    let (mut total, mut errors, mut late_ticks) = (0u64, 0u64, 0u64);
    let mut window: Option<(u64, std::time::Duration)> = None;
    let mut counted = None;
    let begin = monotonic();
    for tick in 0u64.. {
        let due = plus_ms(begin, tick);
        // SAFETY: `due` is a valid timespec; no remainder is asked for (TIMER_ABSTIME).
        while unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &due, std::ptr::null_mut()) }
            == libc::EINTR
        {}
        let now = realtime_ns();
        if window.is_none() && now >= plan.start_ns {
            window = Some((total, SelfCpu::Thread.read()));
        }
        if now >= plan.end_ns {
            let cpu = SelfCpu::Thread.read();
            counted = window.map(|(sent0, cpu0)| (total - sent0, cpu.saturating_sub(cpu0)));
            break;
        }
        late_ticks += u64::from(ns_between(due, monotonic()) > 1_000_000);
        for s in &mut slots[(tick % TICKS) as usize] {
            if batch.n == BATCH {
                let (sent, refused) = batch.send(fd);
                total += sent;
                errors += refused;
            }
            batch.push(s);
            s.first = false;
            s.seq = s.seq.wrapping_add(1);
            s.timestamp = s.timestamp.wrapping_add(SAMPLES);
        }
        if batch.n > 0 {
            let (sent, refused) = batch.send(fd);
            total += sent;
            errors += refused;
        }
    }
    let (packets, cpu) = counted.unwrap_or_default();
    Ok(FloorSent {
        packets,
        total,
        send_errors: errors,
        cpu_s: cpu.as_secs_f64(),
        window_s: plan.end_ns.saturating_sub(plan.start_ns) as f64 / 1e9,
        late_ticks,
        pin_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_sends_every_stream_every_20_ms_in_rtp() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        rx.set_read_timeout(Some(std::time::Duration::from_millis(500))).unwrap_or_else(|e| panic!("{e}"));
        let now = realtime_ns();
        let plan = FloorPlan {
            streams: 3,
            dests: vec![rx.local_addr().unwrap_or_else(|e| panic!("{e}"))],
            bind: "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}")),
            cpu: None,
            start_ns: now,
            end_ns: now + 200_000_000,
        };
        let sent = run(&plan).unwrap_or_else(|e| panic!("{e}"));
        // 200 ms: 10 packet times of 3 streams, give or take one at either edge.
        assert!((27..=33).contains(&sent.packets), "{sent:?}");
        assert_eq!(sent.send_errors, 0);
        let mut buf = [0u8; 512];
        let mut seen = std::collections::HashMap::new();
        for _ in 0..sent.total {
            let n = rx.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(n, PACKET);
            let h = Header::read(&buf[..n]).unwrap_or_else(|| panic!("not RTP"));
            let (seq, ts) = seen.entry(h.ssrc).or_insert((h.seq.wrapping_sub(1), h.timestamp.wrapping_sub(SAMPLES)));
            assert_eq!((h.seq, h.timestamp), (seq.wrapping_add(1), ts.wrapping_add(SAMPLES)));
            *seq = h.seq;
            *ts = h.timestamp;
        }
        assert_eq!(seen.len(), 3);
    }
}
