//! SIGHUP against the real binary: with nothing to reload it only says so, and with `--xdp` a
//! reload changes the XDP filter's tenant set and blocklist in place: a tenant added passes at once, a tenant
//! removed keeps passing until its parked calls can no longer exist, then is dropped.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::{Sipark, options, sample};

/// Sends OPTIONS for `domain` and says whether any response came back within `wait`.
fn answered(sock: &UdpSocket, to: SocketAddr, domain: &str, n: &mut u32, wait: Duration) -> bool {
    *n += 1;
    let cid = format!("io-reload-{n}@test");
    let local = sock.local_addr().expect("local addr");
    sock.send_to(&options(domain, local, &cid, &format!("z9hG4bKreload{n}")), to).expect("send OPTIONS");
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.recv_from(&mut buf) {
            Ok((k, _)) => {
                let text = String::from_utf8_lossy(&buf[..k]);
                if text.starts_with("SIP/2.0 ") && text.contains(&cid) {
                    return true;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return false,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

#[test]
fn sighup_without_files_reloads_nothing_and_keeps_serving() {
    let mut sp = Sipark::start(&[]);
    sp.signal(libc::SIGHUP);
    sp.wait_log("nothing to reload", Duration::from_secs(5));
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    let mut n = 0;
    assert!(answered(&sock, sp.listen, "acme.example", &mut n, Duration::from_secs(2)), "OPTIONS after SIGHUP");
    let text = sp.scrape();
    assert_eq!(sample(&text, "sipark_config_reloads_total{result=\"ok\"}"), 0, "{text}");
    assert_eq!(sample(&text, "sipark_config_reloads_total{result=\"error\"}"), 0, "{text}");
    sp.signal(libc::SIGTERM);
    let status = sp.wait_exit(Duration::from_secs(super::GRACE_SECS + 3)).unwrap_or_else(|| panic!("no exit"));
    assert_eq!(status.code(), Some(0), "SIGTERM after SIGHUP still shuts down cleanly");
}

/// Moves the calling thread into a new network namespace with its loopback up, so that the XDP
/// program this test attaches to `lo` is seen by nothing else on the machine.
fn private_netns() {
    // SAFETY: unshare takes no pointers; it only changes the calling thread's namespaces.
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
    // SAFETY: fd is a socket we own; ifr is a valid, NUL-terminated ifreq that outlives the call.
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

#[test]
fn sighup_updates_the_xdp_tenant_set_in_place() {
    if let Err(e) = sipark::bpf::objects_built() {
        panic!("this test needs the BPF objects, which were not built: {e}");
    }
    let dir = std::env::temp_dir().join(format!("sipark-io-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("tenants.toml");
    // 127.0.0.2 is blocked until the reload, whose file has no `block`.
    std::fs::write(&file, "block = [\"127.0.0.2/32\"]\n\n[[tenant]]\ndomain = \"acme.example\"\n")
        .expect("write tenants");
    let file_s = file.to_string_lossy().into_owned();
    // The engine and every socket of the test live in a namespace of their own (the child
    // inherits the thread's).
    let outcome = std::thread::spawn(move || {
        private_netns();
        // A removed tenant stays in the filter for park timeout + recall timeout + 64*T1:
        // 1 s + 1 s + 1.28 s here.
        let mut sp = Sipark::start(&[
            "--xdp",
            "lo",
            "--tenants",
            &file_s,
            "--park-timeout",
            "1",
            "--recall-timeout",
            "1",
            "--t1-ms",
            "20",
        ]);
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        let blocked = UdpSocket::bind("127.0.0.2:0").expect("bind client on 127.0.0.2");
        let wait = Duration::from_millis(700);
        let mut n = 0;
        assert!(answered(&sock, sp.listen, "acme.example", &mut n, wait), "acme passes before the reload");
        assert!(!answered(&sock, sp.listen, "beta.example", &mut n, wait), "XDP drops beta before the reload");
        assert!(!answered(&blocked, sp.listen, "acme.example", &mut n, wait), "XDP drops 127.0.0.2 (block)");
        let text = sp.scrape();
        let unknown = "sipark_xdp_packets_total{action=\"drop\",reason=\"unknown_tenant\"}";
        let blocklist = "sipark_xdp_packets_total{action=\"drop\",reason=\"blocklist\"}";
        assert_eq!(sample(&text, unknown), 1, "{text}");
        assert_eq!(sample(&text, blocklist), 1, "{text}");

        std::fs::write(&file, "[[tenant]]\ndomain = \"beta.example\"\n").expect("rewrite tenants");
        let t0 = Instant::now();
        sp.signal(libc::SIGHUP);
        sp.wait_log("configuration reloaded", Duration::from_secs(5));
        sp.wait_log("removed tenants stay in the XDP filter", Duration::from_secs(1));
        assert!(answered(&sock, sp.listen, "beta.example", &mut n, wait), "beta passes right after the reload");
        assert!(answered(&sock, sp.listen, "acme.example", &mut n, wait), "acme passes while it retires");
        assert!(answered(&blocked, sp.listen, "beta.example", &mut n, wait), "127.0.0.2 is no longer blocked");
        sp.wait_log("removed tenants taken out of the XDP filter", Duration::from_secs(10));
        let retired = t0.elapsed();
        assert!(retired >= Duration::from_millis(3200), "acme retired after {retired:?}, before its calls could end");
        assert!(!answered(&sock, sp.listen, "acme.example", &mut n, wait), "XDP drops acme once it has retired");
        assert!(answered(&sock, sp.listen, "beta.example", &mut n, wait), "beta still passes");
        let text = sp.scrape();
        assert_eq!(sample(&text, unknown), 2, "{text}");
        assert_eq!(sample(&text, blocklist), 1, "{text}");
        assert_eq!(sample(&text, "sipark_config_reloads_total{result=\"ok\"}"), 1, "{text}");
        sp.signal(libc::SIGTERM);
        sp.wait_exit(Duration::from_secs(super::GRACE_SECS + 3)).and_then(|s| s.code())
    })
    .join();
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Ok(code) => assert_eq!(code, Some(0), "exit status after SIGTERM"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
