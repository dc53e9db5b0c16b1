//! SIGHUP reloads of the tenants file and the TLS certificates, against the real engine: a tenant
//! added starts being served, a tenant removed refuses new parks while the calls already parked
//! in it finish (hang-up, retrieve, their NOTIFYs), a file that does not load leaves everything as
//! it was, and the TLS listener picks each tenant's own certificate by SNI and re-reads them all.
//!
//! Networks 127.0.90.0/24 to 127.0.93.0/24 (plus the variants' offsets).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use crate::harness::{Ctx, DOMAIN, Engine, Sipp, Variant};
use crate::sip::{self, Agent, Msg, Request, Udp, sdp};
use crate::{RustPark, ack_non_2xx, check_terminated, only_call, parked_spec, retrieve_spec};

const SEC: Duration = Duration::from_secs(1);
/// The tenant a reload adds.
const BETA: &str = "beta.example";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The pid of the engine listening on `engine.addr` (the harness keeps its `Child` to itself):
/// the process whose command line has `--listen <addr>`, which only this test's engine has.
pub(crate) fn pid_of(engine: &Engine) -> libc::pid_t {
    let want = engine.addr.to_string();
    let dirs = std::fs::read_dir("/proc").unwrap_or_else(|e| panic!("cannot read /proc: {e}"));
    for d in dirs.flatten() {
        let Some(pid) = d.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(d.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.windows(2).any(|w| w[0] == b"--listen" && w[1] == want.as_bytes())
            && args.first().is_some_and(|a| a.ends_with(b"sipark"))
        {
            return pid;
        }
    }
    panic!("no sipark process with --listen {want} in /proc");
}

fn sighup(pid: libc::pid_t) {
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our engine, still running
    // (the harness reaps it only when the test ends).
    let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill({pid}, SIGHUP): {}", std::io::Error::last_os_error());
}

/// Sends SIGHUP and waits until the engine logged `needle` one more time than before; returns
/// that log line.
pub(crate) fn reload(engine: &Engine, pid: libc::pid_t, needle: &str) -> String {
    let before = engine.log().matches(needle).count();
    sighup(pid);
    let deadline = Instant::now() + 5 * SEC;
    loop {
        let log = engine.log();
        if log.matches(needle).count() > before {
            let line = log.lines().rfind(|l| l.contains(needle)).unwrap_or_default();
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no new {needle:?} within 5 s of SIGHUP; engine log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tenants file serving `domains` (with a short park timeout for none of them: the defaults).
fn tenants_toml(domains: &[&str]) -> String {
    domains.iter().map(|d| format!("[[tenant]]\ndomain = \"{d}\"\n\n")).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn path_arg(path: &Path) -> String {
    path.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display())).to_string()
}

/// An address on 127.0.NET.host whose TCP port is free right now.
fn free_tcp(ctx: &Ctx, host: u8) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ctx.ip(host).into(), 0)).expect("bind TCP");
    l.local_addr().expect("local addr")
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("metrics {addr}: {e}"));
    s.set_read_timeout(Some(5 * SEC)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read metrics");
    out
}

fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series:?} in:\n{text}"))
}

/// REGISTER `ext`@`domain` with a Contact at `me`; returns the final response.
fn register_at(me: &Udp, engine: SocketAddr, ext: &str, domain: &str) -> Msg {
    let mut reg = sip::register(me.addr, ext, 300);
    reg.uri = format!("sip:{domain}");
    reg.to = format!("<sip:{ext}@{domain}>");
    me.transact(engine, &reg)
}

/// A park INVITE to *68`ext`@`domain` from `me`; returns the final response (ACKed if it is not
/// a 2xx).
fn try_park(me: &Udp, engine: SocketAddr, ext: &str, domain: &str) -> Msg {
    let uri = format!("sip:*68{ext}@{domain}");
    let req = Request::new("INVITE", &uri, me.addr, "101", &format!("<{uri}>"))
        .header(&format!("Contact: <sip:101@{}>", me.addr))
        .header(&format!("Referred-By: <sip:102@{domain}>"))
        .sdp(&sdp(me.addr, "e2e"));
    let resp = me.transact(engine, &req);
    if resp.status().is_some_and(|s| s >= 300) {
        me.send(engine, &ack_non_2xx(&req, &resp));
    }
    resp
}

/// "Unknown tenant": 404 (or 403).
fn assert_refused(resp: &Msg, what: &str) {
    assert!(matches!(resp.status(), Some(404 | 403)), "{what}: expected 404 or 403:\n{}", resp.raw);
}

// ---------------------------------------------------------------------------------------------
// A tenant added is served; a tenant removed takes no new parks, its parked calls finish
// ---------------------------------------------------------------------------------------------

pub(crate) fn reload_adds_and_removes_tenants(v: Variant) {
    let ctx = Ctx::new("reload_adds_and_removes_tenants", 90, v);
    let file = ctx.path("tenants.toml");
    write(&file, &tenants_toml(&[DOMAIN]));
    let metrics = free_tcp(&ctx, 1);
    let (file_s, metrics_s) = (path_arg(&file), metrics.to_string());
    let mut engine = Engine::start(&ctx, &["--no-pin", "--tenants", &file_s, "--metrics", &metrics_s]);
    let pid = pid_of(&engine);
    let me = ctx.udp(2);
    assert_refused(&register_at(&me, engine.addr, "103", BETA), "REGISTER for beta before the reload");

    // Two calls parked at 103@acme, watched by a phone: A from SIPp (to be retrieved), B from a
    // Rust leg (to hang up).
    let phone = Agent::phone(ctx.udp(3));
    let reg = phone.transact(engine.addr, &sip::register(phone.addr, "103", 300));
    assert_eq!(reg.status(), Some(200), "REGISTER 103@acme:\n{}", reg.raw);
    let mut seen = Vec::new();
    let a = Sipp::spawn(&ctx, "parkedA", parked_spec(&ctx, &engine, 4, "201", "102", "103"));
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    let call_a = only_call(&info, "parked", &m).clone();
    let leg = ctx.udp(5);
    let b = RustPark::park(&leg, engine.addr, "103", "105", "102");
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    assert_eq!(info.parked().len(), 2, "both calls parked:\n{}", m.raw);
    let call_b = info.parked().into_iter().find(|c| c.id != call_a.id).cloned().expect("call B");

    // The reload: acme out, beta in.
    write(&file, &tenants_toml(&[BETA]));
    let line = reload(&engine, pid, "configuration reloaded");
    assert!(line.contains("1 tenant"), "the reload line counts the tenants: {line}");

    let reg = register_at(&me, engine.addr, "103", BETA);
    assert_eq!(reg.status(), Some(200), "REGISTER for beta after the reload:\n{}", reg.raw);
    let park = try_park(&ctx.udp(6), engine.addr, "103", BETA);
    assert_eq!(park.status(), Some(200), "beta takes parks after the reload:\n{}", park.raw);
    assert_refused(&try_park(&ctx.udp(7), engine.addr, "103", DOMAIN), "park for acme after its removal");
    assert_refused(&register_at(&me, engine.addr, "104", DOMAIN), "REGISTER for acme after its removal");

    // The calls parked in acme are still there: B hangs up (200, and a NOTIFY says so) ...
    let bye = b.bye(&leg, engine.addr);
    assert_eq!(bye.status(), Some(200), "BYE from a call parked in a removed tenant:\n{}", bye.raw);
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    check_terminated(&info, &m, &call_b.id, "hangup");
    assert_eq!(only_call(&info, "parked", &m).id, call_a.id, "A is still parked:\n{}", m.raw);

    // ... and A is retrieved by its URI: bridged, then hung up by the retriever.
    let uri_a = call_a.retrieve_uri.clone().expect("retrieve uri");
    let r = Sipp::spawn(&ctx, "retrieverA", retrieve_spec(&ctx, &engine, 8, &uri_a, "104").key("hangup", "1"));
    r.wait().assert_ok(1);
    a.wait().assert_ok(1);
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    check_terminated(&info, &m, &call_a.id, "retrieved");
    assert!(info.parked().is_empty(), "nothing parked in acme any more:\n{}", m.raw);

    let text = scrape(metrics);
    assert_eq!(sample(&text, "sipark_config_reloads_total{result=\"ok\"}"), 1, "{text}");
    assert_eq!(sample(&text, "sipark_config_reloads_total{result=\"error\"}"), 0, "{text}");
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// A file that does not load: logged, counted, and the running configuration stays
// ---------------------------------------------------------------------------------------------

pub(crate) fn reload_bad_file_keeps_config(v: Variant) {
    let ctx = Ctx::new("reload_bad_file_keeps_config", 91, v);
    let file = ctx.path("tenants.toml");
    write(&file, &tenants_toml(&[DOMAIN]));
    let metrics = free_tcp(&ctx, 1);
    let (file_s, metrics_s) = (path_arg(&file), metrics.to_string());
    let mut engine = Engine::start(&ctx, &["--no-pin", "--tenants", &file_s, "--metrics", &metrics_s]);
    let pid = pid_of(&engine);
    let me = ctx.udp(2);

    let broken: [(&str, String); 3] = [
        ("not TOML", format!("{}[[tenant]\ndomain = \"{BETA}\"\n", tenants_toml(&[DOMAIN]))),
        ("a duplicate tenant", tenants_toml(&[DOMAIN, BETA, DOMAIN])),
        (
            "a certificate without its key",
            format!("{}[[tenant]]\ndomain = \"{BETA}\"\ntls_cert = \"beta.pem\"\n", tenants_toml(&[DOMAIN])),
        ),
    ];
    for (what, text) in &broken {
        write(&file, text);
        let line = reload(&engine, pid, "reload failed");
        assert!(line.contains("ERROR"), "{what}: the failure is logged at error level: {line}");
        assert!(line.contains(&file_s), "{what}: the error names the file: {line}");
        // The old configuration stays: acme served, beta not.
        let reg = register_at(&me, engine.addr, "103", DOMAIN);
        assert_eq!(reg.status(), Some(200), "{what}: acme still served:\n{}", reg.raw);
        assert_refused(&register_at(&me, engine.addr, "104", BETA), &format!("{what}: beta not added"));
    }
    let text = scrape(metrics);
    assert_eq!(sample(&text, "sipark_config_reloads_total{result=\"error\"}"), 3, "{text}");
    assert_eq!(sample(&text, "sipark_config_reloads_total{result=\"ok\"}"), 0, "{text}");

    // Fixed: the next SIGHUP applies it.
    write(&file, &tenants_toml(&[DOMAIN, BETA]));
    let line = reload(&engine, pid, "configuration reloaded");
    assert!(line.contains("2 tenants"), "{line}");
    let reg = register_at(&me, engine.addr, "104", BETA);
    assert_eq!(reg.status(), Some(200), "beta served after the good reload:\n{}", reg.raw);
    let text = scrape(metrics);
    assert_eq!(sample(&text, "sipark_config_reloads_total{result=\"ok\"}"), 1, "{text}");
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// TLS: the tenant's certificate by SNI, the default for other names, re-read on SIGHUP
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for `names`, written as PEM to `<stem>.pem` and `<stem>.key`
/// under the test's directory; returns its DER.
fn make_cert(ctx: &Ctx, stem: &str, names: &[&str]) -> CertificateDer<'static> {
    let ck = rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>())
        .unwrap_or_else(|e| panic!("rcgen: {e}"));
    write(&ctx.path(&format!("{stem}.pem")), &ck.cert.pem());
    write(&ctx.path(&format!("{stem}.key")), &ck.signing_key.serialize_pem());
    ck.cert.der().clone()
}

/// A TLS handshake with `addr` from 127.0.NET.`host` asking for `sni`, trusting only `trust`.
/// Returns the certificate sipark presented, or the handshake's error.
fn handshake(
    ctx: &Ctx,
    host: u8,
    addr: SocketAddr,
    sni: &str,
    trust: &CertificateDer<'static>,
) -> Result<CertificateDer<'static>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap_or_else(|e| panic!("trust anchor: {e}"));
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap_or_else(|e| panic!("server name {sni}: {e}"));
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap_or_else(|e| panic!("TLS client: {e}"));
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::new(ctx.ip(host).into(), 0).into()).unwrap_or_else(|e| panic!("bind: {e}"));
    s.connect_timeout(&addr.into(), 5 * SEC).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut sock: TcpStream = s.into();
    sock.set_read_timeout(Some(5 * SEC)).expect("read timeout");
    sock.set_write_timeout(Some(5 * SEC)).expect("write timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
    }
    let chain = conn.peer_certificates().unwrap_or_else(|| panic!("handshake done without a certificate"));
    Ok(chain[0].clone().into_owned())
}

/// Handshakes with `sni` trusting `want`, and checks that `want` is what sipark presented.
fn expect_cert(ctx: &Ctx, host: u8, addr: SocketAddr, sni: &str, want: &CertificateDer<'static>, what: &str) {
    let got = handshake(ctx, host, addr, sni, want).unwrap_or_else(|e| panic!("{what}: handshake for {sni}: {e}"));
    assert!(got == *want, "{what}: sipark presented another certificate for SNI {sni}");
}

pub(crate) fn reload_tls_certificates(v: Variant) {
    let ctx = Ctx::new("reload_tls_certificates", 92, v);
    let default = make_cert(&ctx, "default", &["sipark.test", "other.example"]);
    let acme_v1 = make_cert(&ctx, "acme", &[DOMAIN]);
    let file = ctx.path("tenants.toml");
    // Relative paths: from the tenants file's directory.
    let with_cert = format!(
        "[[tenant]]\ndomain = \"{DOMAIN}\"\ntls_cert = \"acme.pem\"\ntls_key = \"acme.key\"\n\n[[tenant]]\ndomain = \"{BETA}\"\n"
    );
    write(&file, &with_cert);
    let tls = free_tcp(&ctx, 1);
    let (file_s, tls_s) = (path_arg(&file), tls.to_string());
    let (cert_s, key_s) = (path_arg(&ctx.path("default.pem")), path_arg(&ctx.path("default.key")));
    let mut engine = Engine::start(
        &ctx,
        &["--no-pin", "--tenants", &file_s, "--tls-listen", &tls_s, "--tls-cert", &cert_s, "--tls-key", &key_s],
    );
    let pid = pid_of(&engine);

    expect_cert(&ctx, 2, tls, DOMAIN, &acme_v1, "tenant with its own certificate");
    expect_cert(&ctx, 2, tls, "ACME.Example", &acme_v1, "SNI in another case");
    expect_cert(&ctx, 2, tls, "other.example", &default, "unknown name: the --tls-cert default");
    assert!(
        handshake(&ctx, 2, tls, BETA, &acme_v1).is_err(),
        "beta has no certificate of its own: it must not get acme's"
    );

    // New certificate files, then SIGHUP: new handshakes get the new one.
    let acme_v2 = make_cert(&ctx, "acme", &[DOMAIN]);
    assert!(acme_v2 != acme_v1, "rcgen made the same certificate twice");
    reload(&engine, pid, "configuration reloaded");
    let deadline = Instant::now() + 5 * SEC;
    // The stream thread takes the new set on its next turn, right after the log line.
    while handshake(&ctx, 2, tls, DOMAIN, &acme_v2).is_err() {
        assert!(Instant::now() < deadline, "acme's new certificate not presented within 5 s of the reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    expect_cert(&ctx, 2, tls, DOMAIN, &acme_v2, "after the reload");
    assert!(handshake(&ctx, 2, tls, DOMAIN, &acme_v1).is_err(), "the old certificate is gone");
    expect_cert(&ctx, 2, tls, "other.example", &default, "the default after the reload");

    // A key that does not load: the reload fails and the current certificates stay.
    write(&ctx.path("acme.key"), "not a key\n");
    let line = reload(&engine, pid, "reload failed");
    assert!(line.contains("acme.key") || line.contains(DOMAIN), "the error names the tenant or file: {line}");
    expect_cert(&ctx, 2, tls, DOMAIN, &acme_v2, "after a failed reload");

    // A SIP request still works over TLS with the tenant's name (REGISTER for acme over TLS).
    let ok = tls_register(&ctx, tls, &acme_v2);
    assert_eq!(ok.status(), Some(200), "REGISTER over TLS with SNI {DOMAIN}:\n{}", ok.raw);
    engine.terminate_cleanly(12 * SEC);
}

/// REGISTER 103@acme over a TLS connection with SNI acme.example; returns the response.
fn tls_register(ctx: &Ctx, addr: SocketAddr, trust: &CertificateDer<'static>) -> Msg {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).expect("trust anchor");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from(DOMAIN).expect("name"))
        .unwrap_or_else(|e| panic!("TLS client: {e}"));
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.bind(&SocketAddr::new(ctx.ip(3).into(), 0).into()).expect("bind");
    s.connect_timeout(&addr.into(), 5 * SEC).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let sock: TcpStream = s.into();
    let local = sock.local_addr().expect("local addr");
    sock.set_read_timeout(Some(5 * SEC)).expect("read timeout");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let req = Request::new("REGISTER", &format!("sip:{DOMAIN}"), local, "103", &format!("<sip:103@{DOMAIN}>"))
        .header(&format!("Contact: <sips:103@{local}>;expires=300"));
    let text = req.render().replacen("SIP/2.0/UDP", "SIP/2.0/TLS", 1);
    tls.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("TLS write: {e}"));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + 5 * SEC;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let m = Msg::new(String::from_utf8_lossy(&buf[..end + 4]).into_owned());
            if m.status().is_some_and(|s| s >= 200) {
                return m;
            }
            buf.drain(..end + 4);
            continue;
        }
        assert!(Instant::now() < deadline, "no response over TLS within 5 s");
        match tls.read(&mut chunk) {
            Ok(0) => panic!("sipark closed the TLS connection"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("TLS read: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS with tenant certificates only (no --tls-cert): other names fail the handshake
// ---------------------------------------------------------------------------------------------

pub(crate) fn reload_tls_tenant_certificates_only(v: Variant) {
    let ctx = Ctx::new("reload_tls_tenant_certificates_only", 93, v);
    let acme = make_cert(&ctx, "acme", &[DOMAIN]);
    let beta = make_cert(&ctx, "beta", &[BETA]);
    let file = ctx.path("tenants.toml");
    let (acme_pem, acme_key) = (path_arg(&ctx.path("acme.pem")), path_arg(&ctx.path("acme.key")));
    write(&file, &format!("[[tenant]]\ndomain = \"{DOMAIN}\"\ntls_cert = \"{acme_pem}\"\ntls_key = \"{acme_key}\"\n"));
    let tls = free_tcp(&ctx, 1);
    let (file_s, tls_s) = (path_arg(&file), tls.to_string());
    let mut engine = Engine::start(&ctx, &["--no-pin", "--tenants", &file_s, "--tls-listen", &tls_s]);
    let pid = pid_of(&engine);
    let log = engine.log();
    assert!(log.contains("no --tls-cert"), "start-up says what happens without a default:\n{log}");

    expect_cert(&ctx, 2, tls, DOMAIN, &acme, "the tenant's certificate");
    let e = handshake(&ctx, 2, tls, "other.example", &acme).expect_err("a name without a certificate must fail");
    assert!(!e.is_empty());
    assert!(handshake(&ctx, 2, tls, BETA, &beta).is_err(), "beta has no certificate yet");

    // A reload gives beta its own certificate.
    let (beta_pem, beta_key) = (path_arg(&ctx.path("beta.pem")), path_arg(&ctx.path("beta.key")));
    write(
        &file,
        &format!(
            "[[tenant]]\ndomain = \"{DOMAIN}\"\ntls_cert = \"{acme_pem}\"\ntls_key = \"{acme_key}\"\n\n\
             [[tenant]]\ndomain = \"{BETA}\"\ntls_cert = \"{beta_pem}\"\ntls_key = \"{beta_key}\"\n"
        ),
    );
    reload(&engine, pid, "configuration reloaded");
    let deadline = Instant::now() + 5 * SEC;
    while handshake(&ctx, 2, tls, BETA, &beta).is_err() {
        assert!(Instant::now() < deadline, "beta's certificate not presented within 5 s of the reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    expect_cert(&ctx, 2, tls, DOMAIN, &acme, "acme after the reload");

    // A file without any certificate would leave the listener with none: refused, kept.
    write(&file, &tenants_toml(&[DOMAIN, BETA]));
    let line = reload(&engine, pid, "reload failed");
    assert!(line.contains("no certificate"), "{line}");
    expect_cert(&ctx, 2, tls, BETA, &beta, "beta after the refused reload");
    engine.terminate_cleanly(12 * SEC);
}
