//! I/O tests against the real `sipark` binary: two workers on an
//! ephemeral loopback port, OPTIONS answered through the io_uring loop,
//! hand-offs between workers (MsgRing wake-ups), the metrics endpoint,
//! SIGTERM handling and exit codes; `--bare-io` (bare.rs); overload
//! control's 503s under a flood (overload.rs).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sipark::proto::route::shard_of;

mod bare;
mod moh;
mod overload;
mod reload;
mod stream;

const BIN: &str = env!("CARGO_BIN_EXE_sipark");
const GRACE_SECS: u64 = 2;

/// A running `sipark`; killed on drop if still alive.
struct Sipark {
    child: Child,
    listen: SocketAddr,
    metrics: SocketAddr,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// The value of `key=` in a text log line.
fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    Some(line[at..].split_whitespace().next()?.trim_matches('"').to_owned())
}

impl Sipark {
    /// Starts sipark with two workers (unless `extra` names `--workers`)
    /// and `extra`.
    fn start(extra: &[&str]) -> Sipark {
        let workers = extra.iter().position(|a| *a == "--workers").and_then(|i| extra.get(i + 1)).copied();
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--no-pin", "--metrics", "127.0.0.1:0"])
            .args(if workers.is_some() { &[][..] } else { &["--workers", "2"][..] })
            .args(["--shutdown-grace", &GRACE_SECS.to_string()])
            // No music on hold unless a test asks for it: a flood of parks
            // would stream to addresses nobody listens on.
            .args(if extra.contains(&"--moh") { &[][..] } else { &["--moh", "off"][..] })
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
        let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr pipe"));
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Sipark {
            child,
            listen: "0.0.0.0:0".parse().expect("addr"),
            metrics: "0.0.0.0:0".parse().expect("addr"),
            log,
            seen: Vec::new(),
        };
        let line = p.wait_log("sipark started", Duration::from_secs(10));
        p.listen =
            field(&line, "listen").and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no listen= in {line:?}"));
        p.metrics =
            field(&line, "metrics").and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no metrics= in {line:?}"));
        assert_ne!(p.listen.port(), 0, "port 0 must be resolved: {line}");
        let workers = format!("workers={}", workers.unwrap_or("2"));
        assert!(line.contains(&workers), "start line names the workers ({workers}): {line}");
        let backend = if extra.contains(&"mmsg") { "io=recvmmsg/sendmmsg" } else { "io=io_uring" };
        assert!(line.contains(backend), "start line names the io backend ({backend}): {line}");
        assert!(line.contains("steering="), "start line says whether steering is on: {line}");
        assert!(line.contains("tenants="), "start line names the tenants mode: {line}");
        p
    }

    /// Waits for a log line containing `needle`; panics with the log so far.
    fn wait_log(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!("no log line with {needle:?} within {timeout:?}; log:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap_or_else(|_| panic!("pid out of range"));
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig})");
    }

    /// Waits for exit up to `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => return None,
                Err(e) => panic!("try_wait: {e}"),
            }
        }
    }

    fn scrape(&self) -> String {
        let mut s = TcpStream::connect(self.metrics).unwrap_or_else(|e| panic!("connect {}: {e}", self.metrics));
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: sipark\r\n\r\n").expect("write request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read response");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "metrics status: {out}");
        out
    }
}

impl Drop for Sipark {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Value of a sample line `name value` (exact series) in exposition text.
/// The value of `series` (a name with its labels), or, for a bare name,
/// the sum over every `worker` label.
fn sample(text: &str, series: &str) -> u64 {
    let values: Vec<u64> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(series)?;
            let value = match rest.strip_prefix("{worker=\"") {
                Some(labelled) if !series.contains('{') => labelled.split_once("\"} ")?.1,
                _ => rest.strip_prefix(' ')?,
            };
            value.trim().parse().ok()
        })
        .collect();
    assert!(!values.is_empty(), "no sample {series:?} in:\n{text}");
    values.iter().sum()
}

fn options(domain: &str, local: SocketAddr, call_id: &str, branch: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{domain}>;tag=io-test\r\n\
         To: <sip:{domain}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The tenant of the park tests.
const DOMAIN: &str = "acme.example";

/// A park INVITE from 101 for extension `ext`, Referred-By 102, offering
/// `sdp`.
fn park_invite(local: SocketAddr, ext: u32, id: &str, sdp: &str) -> Vec<u8> {
    format!(
        "INVITE sip:*68{ext}@{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:101@{DOMAIN}>;tag=f{id}\r\n\
         To: <sip:*68{ext}@{DOMAIN}>\r\n\
         Call-ID: {id}@io-test\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:101@{local}>\r\n\
         Referred-By: <sip:102@{DOMAIN}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

/// An in-dialog request of the park `id` whose 200 is `ok`.
fn in_dialog(local: SocketAddr, ok: &str, id: &str, method: &str, cseq: u32, branch: &str) -> Vec<u8> {
    let to = header(ok, "To").unwrap_or_else(|| panic!("no To in:\n{ok}"));
    let contact = header(ok, "Contact").unwrap_or_else(|| panic!("no Contact in:\n{ok}"));
    let target = contact.trim_start_matches('<').split('>').next().unwrap_or_default();
    format!(
        "{method} {target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:101@{DOMAIN}>;tag=f{id}\r\n\
         To: {to}\r\n\
         Call-ID: {id}@io-test\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The first value of header `name` (case-insensitive; full form).
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").skip(1).take_while(|l| !l.is_empty()).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Checks one OPTIONS response; returns its Call-ID.
fn check_200(resp: &str, want_branch: Option<&str>) -> String {
    assert!(resp.starts_with("SIP/2.0 200 "), "expected 200, got:\n{resp}");
    let via = header(resp, "Via").unwrap_or_else(|| panic!("no Via in:\n{resp}"));
    let branch = via
        .split(';')
        .find_map(|p| p.trim().strip_prefix("branch="))
        .unwrap_or_else(|| panic!("no branch in Via {via:?}"));
    if let Some(b) = want_branch {
        assert_eq!(branch, b, "Via branch echoed:\n{resp}");
    }
    let cseq = header(resp, "CSeq").unwrap_or_else(|| panic!("no CSeq in:\n{resp}"));
    assert_eq!(cseq, "1 OPTIONS", "CSeq echoed");
    header(resp, "Call-ID").unwrap_or_else(|| panic!("no Call-ID in:\n{resp}")).to_owned()
}

#[test]
fn options_answered_with_matching_via_and_call_id() {
    let sp = Sipark::start(&[]);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    sock.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let local = sock.local_addr().expect("local addr");
    let req = options("acme.example", local, "io-one@test", "z9hG4bKio-one");
    let mut buf = [0u8; 9000];
    let mut got = None;
    for _ in 0..3 {
        sock.send_to(&req, sp.listen).expect("send OPTIONS");
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            got = Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            break;
        }
    }
    let (resp, from) = got.unwrap_or_else(|| panic!("no answer to OPTIONS from {}", sp.listen));
    assert_eq!(from, sp.listen, "answer comes from the listen address");
    assert_eq!(check_200(&resp, Some("z9hG4bKio-one")), "io-one@test");
    let via = header(&resp, "Via").unwrap_or_default();
    assert!(via.contains(&format!("rport={}", local.port())), "rport filled in: {via}");
}

/// Sends 100 client sockets x one OPTIONS for a domain of each shard, waits until all 200 are
/// answered (resending the unanswered every 2 s, for at most 10 s), and returns the metrics.
fn burst_of_options(sp: &Sipark) -> String {
    // Domains of both shards; every client socket sends one of each, so
    // whichever worker its 4-tuple hashes to, one request must be handed
    // over to the other worker.
    let by_shard = domains_per_shard(100);

    struct Client {
        sock: UdpSocket,
        reqs: Vec<(String, Vec<u8>)>, // (call-id, datagram)
        answered: Vec<bool>,
    }
    let mut clients: Vec<Client> = (0..100)
        .map(|i| {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
            sock.set_nonblocking(true).expect("nonblocking");
            let local = sock.local_addr().expect("local");
            let reqs = (0..2)
                .map(|s| {
                    let cid = format!("burst-{i}-{s}@test");
                    let req = options(&by_shard[s][i], local, &cid, &format!("z9hG4bKb{i}x{s}"));
                    (cid, req)
                })
                .collect();
            Client { sock, reqs, answered: vec![false; 2] }
        })
        .collect();
    for c in &clients {
        for (_, r) in &c.reqs {
            c.sock.send_to(r, sp.listen).expect("send burst");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut resend_at = Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 9000];
    loop {
        for c in &mut clients {
            while let Ok((n, _)) = c.sock.recv_from(&mut buf) {
                let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
                let cid = check_200(&resp, None);
                let idx = c.reqs.iter().position(|(id, _)| *id == cid);
                let idx = idx.unwrap_or_else(|| panic!("answer for unknown Call-ID {cid:?}"));
                c.answered[idx] = true;
            }
        }
        let missing: usize = clients.iter().map(|c| c.answered.iter().filter(|a| !**a).count()).sum();
        if missing == 0 {
            break;
        }
        let now = Instant::now();
        assert!(now < deadline, "{missing} of 200 OPTIONS unanswered after 10 s");
        if now >= resend_at {
            for c in &clients {
                for ((_, r), done) in c.reqs.iter().zip(&c.answered) {
                    if !done {
                        c.sock.send_to(r, sp.listen).expect("resend");
                    }
                }
            }
            resend_at = now + Duration::from_secs(2);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    sp.scrape()
}

#[test]
fn burst_over_many_domains_and_sockets_is_all_answered_with_handoffs() {
    let mut sp = Sipark::start(&["--steer", "off"]);
    let text = burst_of_options(&sp);
    let out = sample(&text, "sipark_handoffs_out_total");
    let inn = sample(&text, "sipark_handoffs_in_total");
    assert!(out >= 100, "each client forced at least one hand-off: {out}\n{text}");
    assert_eq!(out, inn, "every hand-off arrived\n{text}");
    assert_eq!(sample(&text, "sipark_handoffs_dropped_total"), 0, "{text}");
    assert!(sample(&text, "sipark_datagrams_in_total") >= 200, "{text}");
    assert!(sample(&text, "sipark_datagrams_out_total") >= 200, "{text}");
    for w in 0..2 {
        let series = format!("sipark_datagrams_out_total{{worker=\"{w}\"}}");
        assert!(sample(&text, &series) >= 100, "worker {w} answered its shard's domains\n{text}");
    }
    assert!(text.contains("# TYPE sipark_handoffs_out counter"), "{text}");
    assert!(!text.contains("sipark_steer_datagrams"), "no steering counters with --steer off\n{text}");

    sp.signal(libc::SIGTERM);
    let status = sp.wait_exit(Duration::from_secs(GRACE_SECS + 5)).unwrap_or_else(|| panic!("no exit after SIGTERM"));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}

#[test]
fn steering_delivers_every_datagram_to_its_owner() {
    let mut sp = Sipark::start(&["--steer", "on"]);
    let text = burst_of_options(&sp);
    assert_eq!(sample(&text, "sipark_handoffs_out_total"), 0, "steered: nothing handed over\n{text}");
    let ratio: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("sipark_handoff_ratio "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sipark_handoff_ratio gauge in:\n{text}"));
    assert!(ratio < 1e-9, "hand-off ratio {ratio} with steering on\n{text}");
    for w in 0..2 {
        let series = format!("sipark_datagrams_in_total{{worker=\"{w}\"}}");
        assert!(sample(&text, &series) >= 100, "worker {w} received its own shard's requests\n{text}");
    }
    let steered = sample(&text, "sipark_steer_datagrams_total{outcome=\"steered\"}");
    assert!(steered >= 200, "the program chose the socket of every OPTIONS: {steered}\n{text}");
    sp.signal(libc::SIGTERM);
    let status = sp.wait_exit(Duration::from_secs(GRACE_SECS + 5)).unwrap_or_else(|| panic!("no exit after SIGTERM"));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}

/// Domains owned by shard 0 and shard 1 of 2: `count` of each.
fn domains_per_shard(count: usize) -> [Vec<String>; 2] {
    let mut by_shard: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for k in 0..100_000 {
        let d = format!("t{k}.example");
        let s = usize::from(shard_of(d.as_bytes(), 2));
        if by_shard[s].len() < count {
            by_shard[s].push(d);
        }
        if by_shard.iter().all(|v| v.len() == count) {
            break;
        }
    }
    assert!(by_shard.iter().all(|v| v.len() == count), "found domains for both shards");
    by_shard
}

/// A hand-off must wake the owning worker at once (MsgRing), not when its
/// idle wait (500 ms) runs out. One client socket always lands on the same
/// worker, so for one of the two domains every request is a hand-off.
#[test]
fn handoff_wakes_the_owner_promptly() {
    handoff_wakes_the_owner(&["--steer", "off"]);
}

/// The same with the mmsg backend, whose workers sleep in ppoll and are woken through an eventfd.
#[test]
fn handoff_wakes_the_owner_promptly_mmsg() {
    handoff_wakes_the_owner(&["--steer", "off", "--io", "mmsg"]);
}

fn handoff_wakes_the_owner(extra: &[&str]) {
    let sp = Sipark::start(extra);
    let by_shard = domains_per_shard(1);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    sock.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let local = sock.local_addr().expect("local addr");
    let mut buf = [0u8; 9000];
    for (s, domains) in by_shard.iter().enumerate() {
        let mut rtts = Vec::new();
        for i in 0..7 {
            // Let the owner go idle, so that only a wake-up can rouse it.
            std::thread::sleep(Duration::from_millis(30));
            let cid = format!("wake-{s}-{i}@test");
            let req = options(&domains[0], local, &cid, &format!("z9hG4bKw{s}x{i}"));
            let t0 = Instant::now();
            sock.send_to(&req, sp.listen).expect("send");
            let (n, _) =
                sock.recv_from(&mut buf).unwrap_or_else(|e| panic!("no answer for shard {s} request {i}: {e}"));
            rtts.push(t0.elapsed());
            let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert_eq!(check_200(&resp, None), cid);
        }
        rtts.sort();
        let median = rtts[rtts.len() / 2];
        assert!(
            median < Duration::from_millis(100),
            "shard {s}: median round trip {median:?} (all {rtts:?}); a hand-off waited for a timeout"
        );
    }
    let text = sp.scrape();
    assert!(sample(&text, "sipark_handoffs_out_total") >= 7, "one domain was handed off:\n{text}");
}

#[test]
fn sigterm_exits_zero_within_grace() {
    let mut sp = Sipark::start(&[]);
    let t0 = Instant::now();
    sp.signal(libc::SIGTERM);
    let status = sp
        .wait_exit(Duration::from_secs(GRACE_SECS + 3))
        .unwrap_or_else(|| panic!("still running {GRACE_SECS}+3 s after SIGTERM"));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    assert!(t0.elapsed() < Duration::from_secs(GRACE_SECS + 1), "took {:?}", t0.elapsed());
    sp.wait_log("shutdown complete", Duration::from_secs(2));
    sp.wait_log("SIGTERM", Duration::from_secs(1));
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let mut sp = Sipark::start(&["--log-format", "text"]);
    sp.signal(libc::SIGINT);
    let status = sp.wait_exit(Duration::from_secs(GRACE_SECS + 3)).unwrap_or_else(|| panic!("no exit after SIGINT"));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn bad_flags_and_config_exit_2() {
    let cases: &[&[&str]] = &[
        &["--workers", "0"],
        &["--listen", "not-an-address"],
        &["--tenants", "/nonexistent/sipark-tenants.toml"],
        &["--park-fac", "*68", "--retrieve-fac", "*68"],
        &["--t1-ms", "0"],
        &["--no-such-flag"],
        &["--io", "epoll"],
        &["--steer", "maybe"],
        &["--tenant-rate", "100"],
        &["--block", "10.0.0.0/8"],
        &["--xdp", "lo", "--block", "10.0.0.0/40"],
        &["--xdp", "lo", "--tenant-rate", "0"],
        // 11 built-in signatures + 6 > the 16 slots of the map.
        &[
            "--xdp",
            "lo",
            "--scanner-ua",
            "a1",
            "--scanner-ua",
            "b2",
            "--scanner-ua",
            "c3",
            "--scanner-ua",
            "d4",
            "--scanner-ua",
            "e5",
            "--scanner-ua",
            "f6",
        ],
        &["--xdp", "an-interface-name-too-long"],
    ];
    for args in cases {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(*args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {BIN}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} must exit 2; stderr:\n{stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?} explains itself");
    }
}

#[test]
fn bad_tenants_file_exits_2_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("sipark-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("tenants.toml");
    std::fs::write(&path, "[[tenant]]\ndomain = 'a b'\n").expect("write tenants");
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--tenants"])
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {BIN}: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("not a domain name"), "names the problem:\n{stderr}");
}
