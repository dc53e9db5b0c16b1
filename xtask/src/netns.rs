//! Two network namespaces joined by a veth pair, for the benches that run sipark with `--xdp`
//! (`--guessing`, `--overload ... --xdp`): sipark in namespace A with its XDP program on A's end
//! of the pair, the traffic from namespace B, so that every datagram crosses the interface the
//! program is attached to (on loopback it would not). Root only; built with `ip` (iproute2).
//!
//! xtask itself stays in the host's namespace, where A's addresses cannot be reached:
//! [`Netns::http_get_from_b`] runs this binary again inside B (`ip netns exec`) for one HTTP
//! request, as the hidden task [`HTTP_GET_TASK`].

use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{root, stop_engine};

/// The hidden `cargo xtask` task that [`Netns::http_get_from_b`] runs inside namespace B:
/// `xtask <HTTP_GET_TASK> ADDR PATH` prints the body of `GET PATH` from ADDR.
pub(crate) const HTTP_GET_TASK: &str = "netns-http-get";

/// Longest interface name the kernel takes (`IFNAMSIZ` less the NUL).
const MAX_IFNAME: usize = 15;

/// Two network namespaces joined by a veth pair; deleted on drop (which deletes the pair too).
#[derive(Debug)]
pub(crate) struct Netns {
    /// The namespace sipark runs in.
    pub a: String,
    /// The namespace its peers run in.
    pub b: String,
    /// The veth end in A (where `--xdp` attaches).
    pub if_a: String,
    /// The veth end in B.
    pub if_b: String,
    net: [u8; 3],
}

/// The names of a pair for one use: namespaces `spk<ns_tag><pid>{a,b}` and interfaces
/// `<if_tag><pid>{a,b}`, so that two benches, or two runs of one, never take the same.
fn names(ns_tag: &str, if_tag: &str, pid: u32) -> [String; 4] {
    [format!("spk{ns_tag}{pid}a"), format!("spk{ns_tag}{pid}b"), format!("{if_tag}{pid}a"), format!("{if_tag}{pid}b")]
}

/// Runs `ip ARGS`; the error says which command failed and why.
pub(crate) fn ip(args: &[&str]) -> Result<(), String> {
    match Command::new("ip").args(args).stdin(Stdio::null()).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("cannot run `ip` (iproute2): {e}")),
    }
}

impl Netns {
    /// Creates the namespaces and the pair, named for one use by `ns_tag` (`guess`, `ovl`) and
    /// `if_tag` (`vg`, `vo`), with A at `10.<octet>.x.1/24` and B at `.2`. Whatever was made is
    /// deleted again when a step fails.
    pub(crate) fn new(ns_tag: &str, if_tag: &str, octet: u8) -> Result<Netns, String> {
        let pid = std::process::id();
        let [a, b, if_a, if_b] = names(ns_tag, if_tag, pid);
        if if_a.len() > MAX_IFNAME {
            return Err(format!("interface name {if_a} is longer than {MAX_IFNAME} bytes"));
        }
        ip(&["netns", "add", &a])?;
        // From here on, drop deletes A (and B once it exists).
        let n = Netns { a, b, if_a, if_b, net: [10, octet, u8::try_from(pid % 250).unwrap_or(0) + 1] };
        ip(&["netns", "add", &n.b])?;
        ip(&["link", "add", &n.if_a, "netns", &n.a, "type", "veth", "peer", "name", &n.if_b, "netns", &n.b])?;
        ip(&["-n", &n.a, "addr", "add", &format!("{}/24", n.host(1)), "dev", &n.if_a])?;
        ip(&["-n", &n.b, "addr", "add", &format!("{}/24", n.host(2)), "dev", &n.if_b])?;
        for (ns, dev) in [(&n.a, n.if_a.as_str()), (&n.b, n.if_b.as_str()), (&n.a, "lo"), (&n.b, "lo")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(n)
    }

    /// Host `h` of the pair's /24: 1 is A's end, 2 is B's.
    pub(crate) fn host(&self, h: u8) -> String {
        format!("{}.{}.{}.{h}", self.net[0], self.net[1], self.net[2])
    }

    /// Host `h` of the pair's /24 with `port`.
    pub(crate) fn addr(&self, h: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([self.net[0], self.net[1], self.net[2], h], port))
    }

    /// Starts `binary ARGS` in namespace A with its stdout and stderr in `log_path`, and waits up
    /// to `limit` for its log to say "sipark started". `ip netns exec` execs the command in
    /// place: the child's pid is sipark's. On failure the engine is stopped.
    pub(crate) fn start_engine(
        &self,
        binary: &Path,
        args: &[OsString],
        log_path: &Path,
        limit: Duration,
    ) -> Result<Child, String> {
        let log = std::fs::File::create(log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let err = log.try_clone().map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut engine = Command::new("ip")
            .args(["netns", "exec", &self.a])
            .arg(binary)
            .args(args)
            .current_dir(root())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {} in {}: {e}", binary.display(), self.a))?;
        eprintln!("xtask: sipark (pid {}) in namespace {}, log in {}", engine.id(), self.a, log_path.display());
        if let Err(e) = wait_log(log_path, "sipark started", &mut engine, limit) {
            stop_engine(&mut engine, Duration::from_secs(5));
            return Err(e);
        }
        Ok(engine)
    }

    /// The body of `GET path` from `addr`, asked from namespace B (by this binary, run again
    /// there as [`HTTP_GET_TASK`]).
    pub(crate) fn http_get_from_b(&self, addr: SocketAddr, path: &str) -> Result<String, String> {
        let me = std::env::current_exe().map_err(|e| format!("cannot find xtask's own binary: {e}"))?;
        let out = Command::new("ip")
            .args(["netns", "exec", &self.b])
            .arg(me)
            .args([HTTP_GET_TASK, &addr.to_string(), path])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `ip netns exec {}`: {e}", self.b))?;
        if !out.status.success() {
            return Err(format!("GET {path} from {addr}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        String::from_utf8(out.stdout).map_err(|_| format!("GET {path} from {addr}: the body is not UTF-8"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// Waits until `log` has `needle`, `child` exits or `limit` passes.
fn wait_log(log: &Path, needle: &str, child: &mut Child, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(log) {
            let _ = f.read_to_string(&mut text);
        }
        if text.contains(needle) {
            return Ok(());
        }
        if let Ok(Some(s)) = child.try_wait() {
            return Err(format!("sipark exited during start-up ({s}); see {}", log.display()));
        }
        if start.elapsed() > limit {
            return Err(format!("no {needle:?} in {} within {limit:?}", log.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether this process runs as root (namespaces and XDP need it).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").ok().is_some_and(|s| {
        s.lines().any(|l| l.strip_prefix("Uid:").is_some_and(|u| u.split_whitespace().nth(1) == Some("0")))
    })
}

/// Largest response [`http_get`] reads.
const MAX_RESPONSE: u64 = 16 << 20;

/// `GET path` from `addr` over HTTP/1.0 (one connection, 5 s at most for each step): the body
/// of a 200 response.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let limit = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(limit)).and_then(|()| s.set_write_timeout(Some(limit))).map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut raw).map_err(|e| format!("read from {addr}: {e}"))?;
    body_of(&String::from_utf8_lossy(&raw))
}

/// The body of an HTTP response, which must be a 200.
fn body_of(response: &str) -> Result<String, String> {
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no end of the response head")?;
    let status = head.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(body.to_owned()),
        _ => Err(format!("answered `{status}`")),
    }
}

/// The hidden task: `xtask netns-http-get ADDR PATH` prints the body to stdout, an error to
/// stderr (exit code 1).
pub(crate) fn http_get_task(args: &[OsString]) -> std::process::ExitCode {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let result = match args[..] {
        [addr, path] => addr.parse().map_err(|e| format!("{addr}: {e}")).and_then(|a| http_get(a, path)),
        _ => Err(format!("usage: cargo xtask {HTTP_GET_TASK} ADDR PATH")),
    };
    match result {
        Ok(body) => {
            print!("{body}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_per_use_and_fit_an_interface() {
        let guess = names("guess", "vg", 4_194_304);
        let ovl = names("ovl", "vo", 4_194_304);
        assert_eq!(guess, ["spkguess4194304a", "spkguess4194304b", "vg4194304a", "vg4194304b"].map(String::from));
        assert!(guess.iter().all(|g| !ovl.contains(g)), "{guess:?} {ovl:?}");
        // The largest pid Linux hands out (PID_MAX_LIMIT) still gives a legal interface name.
        assert!(ovl[2].len() <= MAX_IFNAME && ovl[3].len() <= MAX_IFNAME, "{ovl:?}");
    }

    #[test]
    fn a_response_body_is_taken_only_from_a_200() {
        assert_eq!(body_of("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\na\r\nb"), Ok("a\r\nb".into()));
        assert_eq!(
            body_of("HTTP/1.1 404 Not Found\r\n\r\nnot found\n"),
            Err("answered `HTTP/1.1 404 Not Found`".into())
        );
        assert!(body_of("HTTP/1.1 200 OK\r\n").is_err(), "a cut-off head");
    }
}
