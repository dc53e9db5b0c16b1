//! `Xdp::attach` for real: in a private network namespace (its own `lo`,
//! so nothing else on the machine sees the program), datagrams to the SIP
//! port are filtered and counted, and dropping the `Xdp` detaches it.

use std::io;
use std::net::UdpSocket;
use std::time::Duration;

use sipark::bpf::abi::reason;
use sipark::bpf::{DEFAULT_SCANNERS, Xdp, XdpConfig, XdpMode};

use crate::frame::request;
use crate::require_bpf;

const PORT: u16 = 5060;

/// Moves the calling thread into a new network namespace and brings its
/// loopback interface up.
fn private_netns() {
    // SAFETY: unshare takes no pointers; it only changes the calling
    // thread's namespace membership.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET) (needs root): {}", io::Error::last_os_error());
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: fd is a socket we own; ifr is a valid, NUL-terminated ifreq
    // that outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) };
    assert_eq!(rc, 0, "SIOCGIFFLAGS lo: {}", io::Error::last_os_error());
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) };
    assert_eq!(rc, 0, "SIOCSIFFLAGS lo up: {}", io::Error::last_os_error());
    // SAFETY: fd is ours and not used afterwards.
    unsafe { libc::close(fd) };
}

/// Sends `msg` to the SIP port and says whether it arrived.
fn arrives(rx: &UdpSocket, tx: &UdpSocket, msg: &[u8]) -> bool {
    tx.send_to(msg, ("127.0.0.1", PORT)).unwrap_or_else(|e| panic!("send: {e}"));
    let mut buf = [0u8; 2048];
    match rx.recv_from(&mut buf) {
        Ok((n, _)) => {
            assert_eq!(&buf[..n], msg, "other bytes arrived");
            true
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => false,
        Err(e) => panic!("recv: {e}"),
    }
}

#[test]
fn xdp_filters_real_traffic_in_a_private_netns() {
    require_bpf();
    let worker = std::thread::spawn(|| {
        private_netns();
        let rx = UdpSocket::bind(("127.0.0.1", PORT)).unwrap_or_else(|e| panic!("bind :{PORT}: {e}"));
        rx.set_read_timeout(Some(Duration::from_millis(300))).unwrap_or_else(|e| panic!("timeout: {e}"));
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind client: {e}"));
        let known = request("INVITE", "sip:alice@acme.example", Some("Phone/1"));
        let unknown = request("INVITE", "sip:alice@evil.example", Some("Phone/1"));
        let scanner = request("OPTIONS", "sip:100@acme.example", Some("friendly-scanner"));
        assert!(arrives(&rx, &tx, &unknown), "without XDP everything arrives");

        let cfg = XdpConfig {
            ifaces: vec!["lo".to_owned()],
            mode: XdpMode::Auto,
            ports: vec![PORT],
            strict: true,
            tenants: vec![("acme.example".to_owned(), None)],
            default_rate: None,
            block: Vec::new(),
            scanners: DEFAULT_SCANNERS.iter().map(|s| (*s).to_owned()).collect(),
            shards: 1,
            shed: None,
        };
        let xdp = Xdp::attach(&cfg).unwrap_or_else(|e| panic!("attaching XDP to lo: {e}"));
        let modes = xdp.modes();
        assert_eq!(modes.len(), 1, "one interface: {modes:?}");
        assert_eq!(modes[0].0, "lo", "{modes:?}");
        println!("XDP on lo: {:?} mode", modes[0].1);
        let stats = xdp.stats();
        let read = |what: &str| stats.read().unwrap_or_else(|e| panic!("{what}: reading XDP counters: {e}"));
        assert_eq!(read("fresh")[reason::PASS], 0, "fresh counters");

        assert!(arrives(&rx, &tx, &known), "a known tenant's INVITE must arrive");
        assert!(!arrives(&rx, &tx, &unknown), "an unknown tenant's INVITE must be dropped");
        assert!(!arrives(&rx, &tx, &scanner), "a scanner must be dropped");
        assert!(!arrives(&rx, &tx, b"\r\n\r\n"), "a keep-alive must be dropped");
        let c = read("after traffic");
        assert_eq!(c[reason::PASS], 1, "pass: {c:?}");
        assert_eq!(c[reason::DROP_UNKNOWN_TENANT], 1, "unknown_tenant: {c:?}");
        assert_eq!(c[reason::DROP_SCANNER], 1, "scanner: {c:?}");
        assert_eq!(c[reason::DROP_NOT_SIP], 1, "not_sip: {c:?}");

        // Readable from another thread.
        let s2 = stats.clone();
        let other = std::thread::spawn(move || s2.read().map(|c| c[reason::PASS]));
        let pass = other.join().unwrap_or_else(|_| panic!("reader thread panicked"));
        assert_eq!(
            pass.unwrap_or_else(|e| panic!("read from another thread: {e}")),
            1,
            "pass seen from another thread"
        );

        drop(xdp);
        assert!(arrives(&rx, &tx, &unknown), "after the Xdp is dropped, nothing is filtered");
        assert_eq!(read("after detach")[reason::DROP_UNKNOWN_TENANT], 1, "no counting after detach");
    });
    if let Err(e) = worker.join() {
        std::panic::resume_unwind(e);
    }
}
