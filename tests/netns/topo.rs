//! The topology every test runs on: two fresh network namespaces joined by a
//! veth pair, torn down by a drop guard even when the test fails.
//!
//! ```text
//!   namespace A (sipark)                 namespace B (clients)
//!   vA 10.S.T.1/24  <------ veth ------>  vB 10.S.T.2/24 (+ extra hosts)
//! ```
//!
//! Code runs "in" a namespace on a scoped thread that has called
//! `setns(CLONE_NEWNET)`: the switch affects only that thread, and a socket
//! keeps the namespace it was created in, so sockets made there can be used
//! from any thread afterwards.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// Where `ip netns add` mounts the namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// Prefix of every namespace these tests create (`spk<pid><tag>a|b`).
const PREFIX: &str = "spk";

/// Two namespaces and a veth pair; deleted on drop.
pub struct Topo {
    /// Namespace where sipark runs.
    pub ns_a: String,
    /// Namespace the traffic comes from.
    pub ns_b: String,
    /// The veth end in A (where XDP attaches).
    pub if_a: String,
    /// The veth end in B.
    pub if_b: String,
    /// 10.S.T.0/24
    net: [u8; 3],
}

/// Panics unless the tests can work at all: root, `ip`, namespace support.
pub fn require_privileges() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the netns tests need root (namespaces, veth, XDP and BPF need CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_BPF): \
         run `sudo -E cargo test -p sipark --test netns` (euid is {euid})"
    );
    let out = Command::new("ip").arg("-V").stdin(Stdio::null()).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!("`ip -V` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("the netns tests need iproute2's `ip` on PATH (apt-get install iproute2): {e}"),
    }
    assert!(
        std::path::Path::new("/proc/self/ns/net").exists(),
        "this kernel has no network namespaces (/proc/self/ns/net is missing)"
    );
}

/// Runs `ip ARGS`; panics with its stderr when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// `ip ARGS`, ignoring failure (for teardown).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip").args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// Deletes namespaces left by earlier runs of these tests whose process is
/// gone (a run killed by SIGKILL skips its drop guards).
fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let Ok(pid) = digits.parse::<u32>() else {
            continue;
        };
        // The rest must be exactly <tag letter><a|b>: only our own names.
        if rest.len() != digits.len() + 2 || pid == std::process::id() {
            continue;
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            ip_quiet(&["netns", "del", &name]);
        }
    }
}

impl Topo {
    /// Creates the namespaces and the veth pair for the test tagged `tag`
    /// (one lowercase letter, unique per test) on network 10.`octet`.X.0/24.
    pub fn new(tag: char, octet: u8) -> Topo {
        require_privileges();
        assert!(tag.is_ascii_lowercase(), "tag {tag:?} must be one lowercase letter");
        sweep_stale();
        let pid = std::process::id();
        let ns_a = format!("{PREFIX}{pid}{tag}a");
        let ns_b = format!("{PREFIX}{pid}{tag}b");
        // Interface names are at most 15 bytes: "v" + 7 pid digits + 2.
        let if_a = format!("v{pid}{tag}a");
        let if_b = format!("v{pid}{tag}b");
        assert!(if_a.len() <= 15, "interface name {if_a} too long");
        // A per-run third octet, so that two concurrent runs never look alike
        // in a packet capture (namespaces keep them apart anyway).
        let third = u8::try_from(pid % 250).unwrap_or(0) + 1;
        let topo = Topo { ns_a, ns_b, if_a, if_b: if_b.clone(), net: [10, octet, third] };
        // Leftovers from an earlier process with the same pid.
        ip_quiet(&["netns", "del", &topo.ns_a]);
        ip_quiet(&["netns", "del", &topo.ns_b]);
        ip(&["netns", "add", &topo.ns_a]);
        // From here on, the guard deletes what was made even if a step fails.
        ip(&["netns", "add", &topo.ns_b]);
        ip(&[
            "link", "add", &topo.if_a, "netns", &topo.ns_a, "type", "veth", "peer", "name", &if_b, "netns", &topo.ns_b,
        ]);
        let a = format!("{}/24", topo.host(1));
        let b = format!("{}/24", topo.host(2));
        ip(&["-n", &topo.ns_a, "addr", "add", &a, "dev", &topo.if_a]);
        ip(&["-n", &topo.ns_b, "addr", "add", &b, "dev", &if_b]);
        for extra in [3, 4] {
            let addr = format!("{}/24", topo.host(extra));
            ip(&["-n", &topo.ns_b, "addr", "add", &addr, "dev", &if_b]);
        }
        ip(&["-n", &topo.ns_a, "link", "set", "lo", "up"]);
        ip(&["-n", &topo.ns_b, "link", "set", "lo", "up"]);
        ip(&["-n", &topo.ns_a, "link", "set", &topo.if_a, "up"]);
        ip(&["-n", &topo.ns_b, "link", "set", &if_b, "up"]);
        topo
    }

    /// 10.S.T.`host`: 1 is sipark (A); 2, 3 and 4 are addresses of B.
    pub fn host(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }

    /// Runs `f` on a thread inside namespace `ns` and returns its result;
    /// a panic in `f` is re-raised here with its message.
    pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("{NETNS_DIR}/{ns}");
        let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open namespace {path}: {e}"));
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                // SAFETY: setns(2) on an fd we own (open for this call);
                // CLONE_NEWNET switches only the calling thread's network
                // namespace, which is this scoped thread's alone.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns({path}, CLONE_NEWNET): {}", std::io::Error::last_os_error());
                f()
            });
            h.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload))
        })
    }

    /// [`Topo::in_ns`] for namespace B.
    pub fn in_b<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        Topo::in_ns(&self.ns_b, f)
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        // Deleting a namespace destroys its end of the veth pair, and with
        // it the other end. Processes still inside keep it alive until they
        // exit; the engine guard is dropped (and waited for) before this.
        ip_quiet(&["netns", "del", &self.ns_a]);
        ip_quiet(&["netns", "del", &self.ns_b]);
        for ns in [&self.ns_a, &self.ns_b] {
            if std::path::Path::new(&format!("{NETNS_DIR}/{ns}")).exists() {
                eprintln!("warning: namespace {ns} could not be deleted");
            }
        }
    }
}
