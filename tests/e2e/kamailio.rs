//! sipark behind a real SIP proxy: Kamailio (Debian package `kamailio`, 5.6) with the minimal
//! record-routing configuration in tests/kamailio/kamailio.cfg. The parked caller and the
//! retriever only talk to the proxy; sipark must keep the proxy in its dialogs' route sets
//! (Record-Route in its 200 OKs, Route on the requests it originates, sent to the first Route
//! hop). Kamailio logs one `KAMTRACE|...` line per request or reply it receives and per request
//! it sends, which is how the test sees what sipark put on the wire towards the proxy.
//!
//! Needs `kamailio` (scripts/install-deps.sh installs it); without it the test fails saying so.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Ctx, DOMAIN, Engine, Sipp, SippSpec, Variant, tail, wait_for_options};
use crate::sip::{self, Agent, Msg, ParkInfo, park_info_of, uri_of};

const SEC: Duration = Duration::from_secs(1);

/// How long Kamailio may take to answer its first OPTIONS.
const KAMAILIO_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the kamailio binary (Debian installs it in /usr/sbin, which is not on every user's
/// PATH); panics with a clear message when it is not installed: the test must never pass
/// without running.
pub(crate) fn kamailio_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let cand = dir.join("kamailio");
        if cand.is_file() {
            return cand;
        }
    }
    panic!(
        "`kamailio` (Kamailio SIP proxy, Debian package `kamailio`) is not installed: the \
         end-to-end test of sipark behind a proxy needs it. Run scripts/install-deps.sh \
         (or `cargo xtask test`, which runs it)."
    );
}

fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("tests").join("kamailio").join("kamailio.cfg")
}

/// Sends `sig` to the whole process group `child` leads (Kamailio's main process and the
/// workers it forked).
fn signal_group(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions. `child` was spawned with
    // `process_group(0)`, so `-pid` names the group it leads, which holds only that Kamailio
    // and its children; the leader has not been reaped (we still hold its `Child`), so its
    // pid (and thus the group id) cannot have been reused.
    unsafe {
        libc::kill(-pid, sig);
    }
}

/// One `KAMTRACE|kind|...` line of Kamailio's log (see kamailio.cfg for the fields).
#[derive(Clone, Debug)]
pub(crate) struct Trace {
    pub(crate) line: String,
    fields: Vec<String>,
}

impl Trace {
    pub(crate) fn kind(&self) -> &str {
        self.field(0)
    }

    pub(crate) fn field(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", String::as_str)
    }

    /// The value of a trailing `name=value` field.
    pub(crate) fn named(&self, name: &str) -> &str {
        let prefix = format!("{name}=");
        self.fields.iter().find_map(|f| f.strip_prefix(&prefix)).unwrap_or("")
    }

    /// rx-req: method, source, Request-URI, Call-ID, CSeq, route=, rr=
    /// rx-rpl: status, source, Call-ID, CSeq, rr=, contact=
    /// tx-req: method, destination, Call-ID, CSeq
    pub(crate) fn is(&self, kind: &str, first: &str, peer: SocketAddr, call_id: &str) -> bool {
        let call_field = if kind == "rx-req" { 4 } else { 3 };
        self.kind() == kind
            && self.field(1) == first
            && self.field(2) == peer.to_string()
            && self.field(call_field) == call_id
    }

    pub(crate) fn cseq(&self) -> &str {
        self.field(if self.kind() == "rx-req" { 5 } else { 4 })
    }
}

/// A running Kamailio in the foreground (`-DD -E`) in its own process group; stopped on drop.
pub(crate) struct Kamailio {
    child: Option<Child>,
    pub(crate) addr: SocketAddr,
    log: PathBuf,
}

impl Kamailio {
    /// Starts Kamailio on 127.0.NET.host (a free UDP port), relaying park and retrieve
    /// requests to `sipark`, and waits until it answers OPTIONS.
    fn start(ctx: &Ctx, host: u8, sipark: SocketAddr) -> Kamailio {
        let define = format!("SIPARK_DU=\"sip:{sipark}\"");
        Kamailio::start_with(ctx, ctx.addr(host), &config_path(), &[define.as_str()])
    }

    /// Starts Kamailio with the configuration file `config` on `addr` (UDP), each of `defines`
    /// given as `-A` (`NAME` or `NAME=VALUE`), and waits until it answers OPTIONS.
    pub(crate) fn start_with(ctx: &Ctx, addr: SocketAddr, config: &Path, defines: &[&str]) -> Kamailio {
        let bin = kamailio_bin();
        let log = ctx.path("kamailio.log");
        let run_dir = ctx.path("kamailio.run");
        std::fs::create_dir_all(&run_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", run_dir.display()));
        let out = std::fs::File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log fd");
        let mut cmd = Command::new(&bin);
        cmd.arg("-f").arg(config);
        // Foreground, log to stderr, only the test's address, small memory, no pid file.
        cmd.args(["-DD", "-E", "-n", "2", "-m", "32", "-M", "8"]);
        cmd.arg("-l").arg(format!("udp:{addr}"));
        for d in defines {
            cmd.arg("-A").arg(d);
        }
        cmd.arg("-w").arg(&ctx.dir).arg("-Y").arg(&run_dir);
        cmd.current_dir(&ctx.dir).stdin(Stdio::null()).stdout(out).stderr(err);
        // Its own process group, so that drop can stop the forked workers too.
        cmd.process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut kam = Kamailio { child: Some(child), addr, log };
        kam.wait_ready(ctx);
        kam
    }

    fn wait_ready(&mut self, ctx: &Ctx) {
        let (addr, log) = (self.addr, self.log.clone());
        let child = self.child.as_mut().expect("kamailio running");
        let log_tail = || {
            let text = std::fs::read(&log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
            format!("; its log:\n{}", tail(&text, 4000))
        };
        wait_for_options(ctx, 251, addr, KAMAILIO_READY_TIMEOUT, child, "kamailio", log_tail);
    }

    fn log_text(&self) -> String {
        std::fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// Every KAMTRACE line logged so far, in order.
    pub(crate) fn traces(&self) -> Vec<Trace> {
        self.log_text()
            .lines()
            .filter_map(|l| {
                let at = l.find("KAMTRACE|")?;
                let line = l[at..].to_string();
                let fields = line.split('|').skip(1).map(str::to_string).collect();
                Some(Trace { line, fields })
            })
            .collect()
    }

    /// The first trace satisfying `pred`, waiting at most `limit` for Kamailio to log it.
    pub(crate) fn expect_trace(&self, what: &str, limit: Duration, pred: impl Fn(&Trace) -> bool) -> Trace {
        let deadline = Instant::now() + limit;
        loop {
            let traces = self.traces();
            if let Some(t) = traces.iter().find(|t| pred(t)) {
                return t.clone();
            }
            if Instant::now() > deadline {
                let lines: Vec<&str> = traces.iter().map(|t| t.line.as_str()).collect();
                panic!("kamailio ({}) logged no {what} within {limit:?}; it logged:\n{}", self.addr, lines.join("\n"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal_group(&child, libc::SIGTERM);
            let deadline = Instant::now() + 5 * SEC;
            while !matches!(child.try_wait(), Ok(Some(_)) | Err(_)) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            // Whatever is left of the group (a worker that ignored SIGTERM, or everything).
            signal_group(&child, libc::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The response with `status` to the request with CSeq `cseq` among `got`.
fn response_in<'a>(got: &'a [Msg], status: u16, cseq: &str, who: &str) -> &'a Msg {
    got.iter()
        .find(|m| m.status() == Some(status) && m.header("CSeq") == Some(cseq))
        .unwrap_or_else(|| panic!("no {status} for `{cseq}` in the {who}'s log"))
}

/// The Record-Route of `m`, which must be exactly one entry naming the proxy (loose routing).
fn proxy_record_route<'a>(m: &'a Msg, kam: SocketAddr, what: &str) -> &'a str {
    let rr = m.headers("Record-Route");
    assert_eq!(rr.len(), 1, "{what} must carry exactly the proxy's Record-Route:\n{}", m.raw);
    let uri = uri_of(rr[0]);
    assert!(
        uri.starts_with(&format!("sip:{kam};")) && uri.split(';').any(|p| p == "lr" || p.starts_with("lr=")),
        "{what}: Record-Route must be the proxy's <sip:{kam};lr...>:\n{}",
        m.raw
    );
    rr[0]
}

/// Checks that a request sipark sent reached the SIPp leg through the proxy: the proxy's Via
/// on top of sipark's, and no Route left (the proxy consumed its own entry).
fn check_via_proxy(m: &Msg, kam: SocketAddr, engine: SocketAddr, what: &str) {
    let vias = m.headers("Via");
    assert!(
        vias.len() == 2
            && vias[0].starts_with(&format!("SIP/2.0/UDP {kam};"))
            && vias[1].starts_with(&format!("SIP/2.0/UDP {engine};"))
            && vias[1].contains("branch=z9hG4bKsp"),
        "{what} must come from sipark ({engine}) through the proxy ({kam}): Vias {vias:?} in:\n{}",
        m.raw
    );
    assert!(m.header("Route").is_none(), "{what}: the proxy must have removed its Route entry:\n{}", m.raw);
}

/// The first park-info NOTIFY (new Call-ID) `phone` receives within `limit`. Fails early, and
/// saying why, if the proxy refuses an in-dialog request for want of a Route (e.g. the park's
/// 200 OK lacked the Record-Route) or if the parked caller's SIPp ends first. Hands the still
/// running SIPp back.
fn park_notify(
    phone: &Agent,
    seen: &mut Vec<String>,
    kam: &Kamailio,
    mut parked: Sipp,
    limit: Duration,
) -> (Msg, ParkInfo, Sipp) {
    let deadline = Instant::now() + limit;
    let mut skipped = Vec::new();
    while Instant::now() < deadline {
        if let Some(m) = phone.try_next(Duration::from_millis(50)) {
            let id = m.header("Call-ID").unwrap_or_default().to_string();
            if m.method() == Some("NOTIFY") && !seen.contains(&id) {
                seen.push(id);
                let info = park_info_of(&m);
                return (m, info, parked);
            }
            skipped.push(m.first_line().to_string());
        }
        if let Some(t) = kam.traces().into_iter().find(|t| t.kind() == "no-route") {
            panic!(
                "the proxy refused an in-dialog request without a Route header (did sipark's \
                 200 OK carry the Record-Route?): {}",
                t.line
            );
        }
        if parked.has_exited() {
            parked.wait().assert_ok(1);
            panic!("the parked caller's SIPp ended before the phone was told of the park");
        }
    }
    panic!("the phone got no park-info NOTIFY within {limit:?}; received instead: {skipped:?}");
}

pub fn park_and_retrieve_through_kamailio(v: Variant) {
    // Fail first, and clearly, when the proxy is missing.
    kamailio_bin();
    let ctx = Ctx::new("park_and_retrieve_through_kamailio", 41, v);
    let engine = Engine::start(&ctx, &["--no-pin"]);
    let kam = Kamailio::start(&ctx, 2, engine.addr);

    // A phone for extension 103, registered directly with sipark: its NOTIFYs say when the call
    // is parked (so that the retrieve cannot overtake the park's ACK) and when it leaves.
    let phone = Agent::phone(ctx.udp(5));
    let reg = phone.transact(engine.addr, &sip::register(phone.addr, "103", 300));
    assert_eq!(reg.status(), Some(200), "REGISTER:\n{}", reg.raw);
    let mut seen = Vec::new();

    // The parked caller talks only to the proxy.
    let parked_addr = ctx.addr(3);
    let parked = Sipp::spawn(
        &ctx,
        "parked",
        SippSpec::uac("kam_parked.xml", parked_addr, kam.addr)
            .service("*68103")
            .key("caller", "101")
            .key("parker", "102")
            .key("hangup", "0")
            .timeout_s(10),
    );
    let (m, info, parked) = park_notify(&phone, &mut seen, &kam, parked, 10 * SEC);
    let call = crate::only_call(&info, "parked", &m).clone();
    crate::check_parked_call(&call, &m, "101", "102", "103");

    // The retriever, also only through the proxy, hangs up 200 ms after the bridge.
    let retriever_addr = ctx.addr(4);
    let retriever = Sipp::spawn(
        &ctx,
        "retriever",
        SippSpec::uac("kam_retrieve.xml", retriever_addr, kam.addr)
            .key("ruri", &format!("sip:*88103@{DOMAIN}"))
            .key("caller", "104")
            .key("hangup", "1")
            .pause_ms(200)
            .timeout_s(10),
    );
    let retriever = retriever.wait();
    retriever.assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    crate::check_terminated(&info, &m, &call.id, "retrieved");

    // --- The parked leg's view (messages that came out of the proxy). ---
    let got = parked.received();
    let ok = response_in(&got, 200, "1 INVITE", "parked leg");
    let park_call_id = ok.header("Call-ID").unwrap_or_default().to_string();
    let park_rr = proxy_record_route(ok, kam.addr, "the park's 200 OK").to_string();
    let reinvite = got
        .iter()
        .find(|m| m.method() == Some("INVITE"))
        .unwrap_or_else(|| panic!("no re-INVITE in the parked leg's log"));
    let ctx_re = || format!("re-INVITE:\n{}\n--- park 200 OK:\n{}", reinvite.raw, ok.raw);
    assert_eq!(
        reinvite.request_uri(),
        Some(format!("sip:101@{parked_addr}").as_str()),
        "the re-INVITE's Request-URI must be the parked leg's Contact; {}",
        ctx_re()
    );
    assert_eq!(reinvite.header("Call-ID"), Some(park_call_id.as_str()), "same dialog; {}", ctx_re());
    assert_eq!(reinvite.tag_of("From"), ok.tag_of("To"), "From tag = sipark's tag; {}", ctx_re());
    assert_eq!(reinvite.tag_of("To"), ok.tag_of("From"), "To tag = the parked leg's tag; {}", ctx_re());
    check_via_proxy(reinvite, kam.addr, engine.addr, "the re-INVITE");
    let (sess0, v0) = crate::sipark_origin(ok, engine.addr);
    let (sess1, v1) = crate::sipark_origin(reinvite, engine.addr);
    assert!(sess1 == sess0 && v1 == v0 + 1, "same o= session, version + 1; {}", ctx_re());
    let bye = got
        .iter()
        .find(|m| m.method() == Some("BYE"))
        .unwrap_or_else(|| panic!("the parked leg got no BYE after the retriever hung up"));
    assert_eq!(bye.header("Call-ID"), Some(park_call_id.as_str()), "BYE in the park dialog:\n{}", bye.raw);
    check_via_proxy(bye, kam.addr, engine.addr, "sipark's BYE to the parked leg");

    // --- The retriever's view. ---
    let rgot = retriever.received();
    let rok = response_in(&rgot, 200, "1 INVITE", "retriever");
    let retr_call_id = rok.header("Call-ID").unwrap_or_default().to_string();
    proxy_record_route(rok, kam.addr, "sipark's 200 OK to the retriever");
    response_in(&rgot, 200, "2 BYE", "retriever");

    // --- What sipark sent to the proxy, as the proxy logged it. ---
    let limit = 2 * SEC;
    let t = kam.expect_trace("200 OK from sipark for the park INVITE", limit, |t| {
        t.is("rx-rpl", "200", engine.addr, &park_call_id) && t.cseq() == "1 INVITE"
    });
    assert_eq!(t.named("rr"), park_rr, "the park's 200 OK as sipark sent it must carry the Record-Route: {}", t.line);
    let t = kam.expect_trace("200 OK from sipark for the retrieve INVITE", limit, |t| {
        t.is("rx-rpl", "200", engine.addr, &retr_call_id) && t.cseq() == "1 INVITE"
    });
    assert!(
        uri_of(t.named("rr")).starts_with(&format!("sip:{};", kam.addr)),
        "sipark's 200 OK to the retriever must carry the Record-Route: {}",
        t.line
    );
    // sipark's requests in the park dialog: sent to the proxy, with the proxy as Route.
    for (method, what) in
        [("INVITE", "sipark's re-INVITE"), ("ACK", "sipark's ACK of the re-INVITE"), ("BYE", "sipark's BYE")]
    {
        let t = kam.expect_trace(&format!("{what} from {}", engine.addr), limit, |t| {
            t.is("rx-req", method, engine.addr, &park_call_id)
        });
        assert_eq!(t.named("route"), park_rr, "{what} must carry Route: {park_rr}; the proxy received: {}", t.line);
        assert_eq!(
            t.field(3),
            format!("sip:101@{parked_addr}"),
            "{what}'s Request-URI must be the parked leg's Contact: {}",
            t.line
        );
        kam.expect_trace(&format!("{what} relayed to the parked leg {parked_addr}"), limit, |t| {
            t.is("tx-req", method, parked_addr, &park_call_id)
        });
    }
    // The SIPp legs used their route sets too: ACKs and the retriever's BYE went via Route.
    for (method, from, call_id, to_user) in [
        ("ACK", parked_addr, &park_call_id, "park ACK"),
        ("ACK", retriever_addr, &retr_call_id, "retrieve ACK"),
        ("BYE", retriever_addr, &retr_call_id, "retriever's BYE"),
    ] {
        let t = kam.expect_trace(&format!("{to_user} from {from}"), limit, |t| t.is("rx-req", method, from, call_id));
        assert!(
            uri_of(t.named("route")).starts_with(&format!("sip:{};", kam.addr)),
            "{to_user} must carry the proxy's Route: {}",
            t.line
        );
        kam.expect_trace(&format!("{to_user} relayed to sipark {}", engine.addr), limit, |t| {
            t.is("tx-req", method, engine.addr, call_id)
        });
    }
    let stray: Vec<String> = kam.traces().into_iter().filter(|t| t.kind() == "no-route").map(|t| t.line).collect();
    assert!(stray.is_empty(), "in-dialog requests without a Route reached the proxy:\n{}", stray.join("\n"));

    drop(kam);
    let mut engine = engine;
    engine.terminate_cleanly(12 * SEC);
}
