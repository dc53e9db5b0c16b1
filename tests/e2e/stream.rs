//! SIP over TCP and TLS against the real engine: Rust peers on stream connections (their own
//! framing, independent of sipark's), SIPp with `-t t1`, and a rustls client for TLS with a
//! certificate made at test time (rcgen).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use crate::harness::{Ctx, DOMAIN, Engine, Variant, sipp_bin, tail};
use crate::sip::{Msg, Request, park_info_of, response, sdp, unique, uri_of};

const SEC: Duration = Duration::from_secs(1);

// Each test runs with the io_uring backend (stream messages wake ring workers with MsgRingData)
// and with mmsg (eventfd wake-ups).
macro_rules! variants {
    ($($name:ident),* $(,)?) => {
        mod default {
            $( #[test] fn $name() { super::$name(super::Variant::Default) } )*
        }
        mod mmsg {
            $( #[test] fn $name() { super::$name(super::Variant::Mmsg) } )*
        }
    };
}

variants!(
    tcp_register_park_notify_retrieve,
    tcp_framing_and_limits,
    sipp_over_tcp,
    tls_register_park_notify,
    outbound_tcp_and_tls_connections,
);

/// A byte stream a peer talks SIP over: a TCP socket or a rustls client stream.
trait Wire: Read + Write + Send {
    fn set_timeout(&mut self, d: Duration);
}

impl Wire for TcpStream {
    fn set_timeout(&mut self, d: Duration) {
        self.set_read_timeout(Some(d.max(Duration::from_millis(1)))).expect("read timeout");
    }
}

impl Wire for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn set_timeout(&mut self, d: Duration) {
        self.sock.set_read_timeout(Some(d.max(Duration::from_millis(1)))).expect("read timeout");
    }
}

impl Wire for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn set_timeout(&mut self, d: Duration) {
        self.sock.set_read_timeout(Some(d.max(Duration::from_millis(1)))).expect("read timeout");
    }
}

/// One SIP endpoint on one stream connection.
struct Peer {
    wire: Box<dyn Wire>,
    buf: Vec<u8>,
    local: SocketAddr,
    /// "TCP" or "TLS" (the Via token).
    proto: &'static str,
    name: String,
}

/// A TCP socket bound to 127.0.NET.host (SO_REUSEADDR, so that a listener can take its port
/// once it is closed) and connected to `to`.
fn tcp_from(ctx: &Ctx, host: u8, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.bind(&SocketAddr::new(ctx.ip(host).into(), 0).into()).unwrap_or_else(|e| panic!("bind 127.0.x.{host}: {e}"));
    s.connect_timeout(&to.into(), 5 * SEC).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    let s: TcpStream = s.into();
    s.set_nodelay(true).expect("nodelay");
    s
}

impl Peer {
    fn tcp(ctx: &Ctx, host: u8, to: SocketAddr, name: &str) -> Peer {
        let s = tcp_from(ctx, host, to);
        let local = s.local_addr().expect("local addr");
        Peer { wire: Box::new(s), buf: Vec::new(), local, proto: "TCP", name: name.to_string() }
    }

    fn tls(ctx: &Ctx, host: u8, to: SocketAddr, roots: &Arc<rustls::RootCertStore>, name: &str) -> Peer {
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), ServerName::IpAddress(to.ip().into()))
            .unwrap_or_else(|e| panic!("TLS client: {e}"));
        let s = tcp_from(ctx, host, to);
        let local = s.local_addr().expect("local addr");
        let mut stream = rustls::StreamOwned::new(conn, s);
        stream.sock.set_write_timeout(Some(5 * SEC)).expect("write timeout");
        stream.sock.set_read_timeout(Some(5 * SEC)).expect("read timeout");
        // Complete the handshake now, so that a certificate problem shows up here.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap_or_else(|e| panic!("TLS handshake with {to}: {e}"));
        }
        Peer { wire: Box::new(stream), buf: Vec::new(), local, proto: "TLS", name: name.to_string() }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.wire.write_all(bytes).unwrap_or_else(|e| panic!("{}: write: {e}", self.name));
        self.wire.flush().unwrap_or_else(|e| panic!("{}: flush: {e}", self.name));
    }

    /// Sends a request rendered by `sip::Request` with this peer's transport in Via.
    fn send_req(&mut self, req: &Request) {
        let text = req.render().replacen("SIP/2.0/UDP", &format!("SIP/2.0/{}", self.proto), 1);
        self.send_raw(text.as_bytes());
    }

    /// Reads more bytes until `deadline`: false on timeout, panics on EOF.
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        self.wire.set_timeout(left);
        let mut chunk = [0u8; 16384];
        match self.wire.read(&mut chunk) {
            Ok(0) => {
                panic!("{}: connection closed by sipark; unread: {:?}", self.name, String::from_utf8_lossy(&self.buf))
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => false,
            Err(e) => panic!("{}: read: {e}", self.name),
        }
    }

    /// The next complete message in the buffer (keep-alive CRLFs skipped), framed by this test's
    /// own reading of Content-Length.
    fn take_message(&mut self) -> Option<Msg> {
        let skip = self.buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        let rest = &self.buf[skip..];
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let cl: usize = head
            .split("\r\n")
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("{}: sipark sent a message without Content-Length:\n{head}", self.name));
        if rest.len() < head_end + cl {
            return None;
        }
        let text = String::from_utf8_lossy(&rest[..head_end + cl]).into_owned();
        self.buf.drain(..skip + head_end + cl);
        Some(Msg::new(text))
    }

    fn recv(&mut self, deadline: Instant) -> Option<Msg> {
        loop {
            if let Some(m) = self.take_message() {
                return Some(m);
            }
            if !self.fill(deadline) && Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// The next message satisfying `pred` within `limit`; others are listed in the panic.
    fn expect(&mut self, what: &str, limit: Duration, pred: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + limit;
        let mut skipped = Vec::new();
        while let Some(m) = self.recv(deadline) {
            if pred(&m) {
                return m;
            }
            skipped.push(m.first_line().to_string());
        }
        panic!("{}: no {what} within {limit:?}; received instead: {skipped:?}", self.name);
    }

    fn expect_final(&mut self, req: &Request) -> Msg {
        let (id, method) = (req.call_id.clone(), req.method.clone());
        self.expect(&format!("final response to {method}"), 5 * SEC, |m| {
            m.status().is_some_and(|s| s >= 200)
                && m.header("Call-ID") == Some(id.as_str())
                && m.cseq_method() == Some(&method)
        })
    }

    /// The next NOTIFY, answered 200 OK on this connection.
    fn next_notify(&mut self, limit: Duration) -> Msg {
        let m = self.expect("NOTIFY", limit, |m| m.method() == Some("NOTIFY"));
        self.send_raw(response(&m, 200, "OK", Some("e2etcp"), &[]).as_bytes());
        m
    }
}

/// `uri` with `;transport=tcp`, or as `sips:` for TLS.
fn contact_uri(proto: &str, user: &str, at: SocketAddr) -> String {
    match proto {
        "TLS" => format!("sips:{user}@{at}"),
        _ => format!("sip:{user}@{at};transport=tcp"),
    }
}

/// REGISTER `ext` with a Contact on this connection; checks the 200 comes back on it.
fn register(p: &mut Peer, ext: &str) {
    let req = Request::new("REGISTER", &format!("sip:{DOMAIN}"), p.local, ext, &format!("<sip:{ext}@{DOMAIN}>"))
        .header(&format!("Contact: <{}>;expires=300", contact_uri(p.proto, ext, p.local)));
    p.send_req(&req);
    let ok = p.expect_final(&req);
    assert_eq!(ok.status(), Some(200), "REGISTER over {} on the same connection:\n{}", p.proto, ok.raw);
    let via = ok.header("Via").unwrap_or_default();
    assert!(via.starts_with(&format!("SIP/2.0/{} {}", p.proto, p.local)), "Via echoed:\n{}", ok.raw);
}

/// What a park leaves the parked leg with.
struct Parked {
    invite: Request,
    remote: String,
    to: String,
}

/// Parks a call from `p` at *68`ext` (INVITE with SDP and Referred-By, 200, ACK).
fn park(p: &mut Peer, ext: &str, caller: &str, parker: &str) -> Parked {
    let uri = format!("sip:*68{ext}@{DOMAIN}");
    let invite = Request::new("INVITE", &uri, p.local, caller, &format!("<{uri}>"))
        .header(&format!("Contact: <{}>", contact_uri(p.proto, caller, p.local)))
        .header(&format!("Referred-By: <sip:{parker}@{DOMAIN}>"))
        .sdp(&sdp(p.local, "e2e"));
    p.send_req(&invite);
    let ok = p.expect_final(&invite);
    assert_eq!(ok.status(), Some(200), "park over {}:\n{}", p.proto, ok.raw);
    assert!(ok.body().contains("a=inactive"), "park answer is a=inactive:\n{}", ok.raw);
    let remote = uri_of(ok.header("Contact").unwrap_or_default()).to_string();
    check_sipark_contact(&remote, p.proto, &ok);
    let parked = Parked { remote, to: ok.header("To").unwrap_or_default().to_string(), invite };
    let ack = parked.in_dialog("ACK", 1);
    p.send_req(&ack);
    parked
}

impl Parked {
    fn in_dialog(&self, method: &str, cseq: u32) -> Request {
        let mut r = Request::new(method, &self.remote, self.invite.via, "x", &self.to);
        r.from = self.invite.from.clone();
        r.call_id = self.invite.call_id.clone();
        r.cseq = cseq;
        r
    }
}

/// sipark's Contact URI on a stream: `;transport=tcp` for TCP, `sips:` for TLS.
fn check_sipark_contact(uri: &str, proto: &str, m: &Msg) {
    let ok = match proto {
        "TLS" => uri.starts_with("sips:sp") && uri.contains(".sipark@"),
        _ => uri.starts_with("sip:sp") && uri.contains(".sipark@") && uri.ends_with(";transport=tcp"),
    };
    assert!(ok, "sipark's Contact {uri:?} must name the {proto} transport in:\n{}", m.raw);
}

/// The NOTIFY must come from sipark over this transport, listing the call parked by `parker`.
fn check_stream_notify(m: &Msg, proto: &str, engine_adv: &str) -> String {
    let via = m.header("Via").unwrap_or_default();
    assert!(
        via.starts_with(&format!("SIP/2.0/{proto} {engine_adv};")) && via.contains("branch=z9hG4bKsp"),
        "NOTIFY Via must be `SIP/2.0/{proto} {engine_adv};branch=z9hG4bKsp...`:\n{}",
        m.raw
    );
    check_sipark_contact(uri_of(m.header("Contact").unwrap_or_default()), proto, m);
    m.header("Call-ID").unwrap_or_default().to_string()
}

/// A 2xx to `req` with an SDP body and a Contact.
fn ok_with_sdp(req: &Msg, contact: &str, body: &str) -> String {
    response(req, 200, "OK", Some("e2eparked"), &[&format!("Contact: <{contact}>")]).replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
    )
}

/// An address on 127.0.NET.host whose TCP port is free right now.
fn free_tcp(ctx: &Ctx, host: u8) -> SocketAddr {
    let l = TcpListener::bind(SocketAddr::new(ctx.ip(host).into(), 0)).expect("bind TCP");
    l.local_addr().expect("local addr")
}

// ---------------------------------------------------------------------------------------------
// TCP: register, park, NOTIFY on the phone's own connection, retrieve
// ---------------------------------------------------------------------------------------------

fn tcp_register_park_notify_retrieve(v: Variant) {
    let ctx = Ctx::new("tcp_register_park_notify_retrieve", 61, v);
    let engine = Engine::start(&ctx, &["--no-pin"]);
    let adv = engine.addr.to_string();
    let mut phone = Peer::tcp(&ctx, 2, engine.addr, "phone103");
    register(&mut phone, "103");

    let mut leg = Peer::tcp(&ctx, 3, engine.addr, "parked101");
    let parked = park(&mut leg, "103", "101", "102");

    // The park-info NOTIFY arrives on the phone's own connection (skip a state NOTIFY sent on
    // REGISTER, which lists nothing parked).
    let deadline = Instant::now() + 10 * SEC;
    let (notify, info) = loop {
        let m = phone.next_notify(deadline.saturating_duration_since(Instant::now()));
        let info = park_info_of(&m);
        if !info.parked().is_empty() {
            break (m, info);
        }
    };
    check_stream_notify(&notify, "TCP", &adv);
    assert_eq!(
        notify.request_uri().map(|u| u.contains(&phone.local.to_string())),
        Some(true),
        "NOTIFY goes to the registered contact:\n{}",
        notify.raw
    );
    let call = &info.parked()[0];
    assert_eq!(call.parked_uri.as_deref(), Some(format!("sip:101@{DOMAIN}").as_str()), "{}", notify.raw);
    assert_eq!(call.parker_uri.as_deref(), Some(format!("sip:102@{DOMAIN}").as_str()), "{}", notify.raw);
    let id = call.id.clone();

    // Retrieve over a third connection: sipark re-INVITEs the parked leg on its connection.
    let mut retriever = Peer::tcp(&ctx, 4, engine.addr, "retriever104");
    let ruri = format!("sip:*88103@{DOMAIN}");
    let retrieve = Request::new("INVITE", &ruri, retriever.local, "104", &format!("<{ruri}>"))
        .header(&format!("Contact: <{}>", contact_uri("TCP", "104", retriever.local)))
        .sdp(&sdp(retriever.local, "retriever"));
    retriever.send_req(&retrieve);
    let reinvite = leg.expect("re-INVITE of the parked leg", 5 * SEC, |m| m.method() == Some("INVITE"));
    assert!(
        reinvite.header("Via").is_some_and(|v| v.starts_with(&format!("SIP/2.0/TCP {adv};"))),
        "re-INVITE over TCP:\n{}",
        reinvite.raw
    );
    assert_eq!(reinvite.header("Call-ID"), Some(parked.invite.call_id.as_str()), "in the park dialog");
    assert!(reinvite.body().contains("s=retriever"), "re-INVITE carries the retriever's SDP:\n{}", reinvite.raw);
    leg.send_raw(ok_with_sdp(&reinvite, &contact_uri("TCP", "101", leg.local), &sdp(leg.local, "parked")).as_bytes());
    let ok = retriever.expect_final(&retrieve);
    assert_eq!(ok.status(), Some(200), "retrieve over TCP:\n{}", ok.raw);
    assert!(ok.body().contains("s=parked"), "retrieve answer carries the parked leg's SDP:\n{}", ok.raw);
    check_sipark_contact(uri_of(ok.header("Contact").unwrap_or_default()), "TCP", &ok);
    let mut ack = Request::new("ACK", uri_of(ok.header("Contact").unwrap_or_default()), retriever.local, "104", "");
    ack.from = retrieve.from.clone();
    ack.to = ok.header("To").unwrap_or_default().to_string();
    ack.call_id = retrieve.call_id.clone();
    ack.cseq = 1;
    retriever.send_req(&ack);
    leg.expect("ACK of the re-INVITE", 5 * SEC, |m| m.method() == Some("ACK"));

    let m = phone.next_notify(10 * SEC);
    check_stream_notify(&m, "TCP", &adv);
    let info = park_info_of(&m);
    let c = info.call(&id).unwrap_or_else(|| panic!("call {id} missing:\n{}", m.raw));
    assert_eq!((c.state.as_str(), c.reason.as_deref()), ("terminated", Some("retrieved")), "{}", m.raw);

    // The retriever hangs up: sipark BYEs the parked leg on its connection.
    let bye = Request { cseq: 2, method: "BYE".into(), branch: format!("z9hG4bKbye{}", unique()), ..ack };
    retriever.send_req(&bye);
    let ok = retriever.expect_final(&bye);
    assert_eq!(ok.status(), Some(200), "BYE:\n{}", ok.raw);
    let bye = leg.expect("BYE", 5 * SEC, |m| m.method() == Some("BYE"));
    leg.send_raw(response(&bye, 200, "OK", None, &[]).as_bytes());
}

// ---------------------------------------------------------------------------------------------
// TCP framing and limits: split writes, pipelining, ping/pong, oversize, idle timeout
// ---------------------------------------------------------------------------------------------

fn options_text(proto: &str, local: SocketAddr, call_id: &str) -> String {
    format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/{proto} {local};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@{DOMAIN}>;tag=t{call_id}\r\nTo: <sip:{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Waits for the peer's connection to be closed by sipark; returns how long it took.
fn wait_closed(s: &mut TcpStream, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(t0.elapsed());
        assert!(!left.is_zero(), "sipark did not close the connection within {limit:?}");
        s.set_read_timeout(Some(left)).expect("timeout");
        match s.read(&mut buf) {
            Ok(0) => return t0.elapsed(),
            Ok(n) => panic!("expected the connection closed, got {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => return t0.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
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

fn tcp_framing_and_limits(v: Variant) {
    let ctx = Ctx::new("tcp_framing_and_limits", 62, v);
    let metrics = free_tcp(&ctx, 1);
    let metrics_s = metrics.to_string();
    let mut engine = Engine::start(
        &ctx,
        &["--no-pin", "--tcp-idle-timeout", "1", "--max-message-size", "4096", "--metrics", &metrics_s],
    );

    // A message split across many small writes.
    let mut p = Peer::tcp(&ctx, 2, engine.addr, "split");
    let text = options_text("TCP", p.local, "split1");
    for chunk in text.as_bytes().chunks(7) {
        p.send_raw(chunk);
        std::thread::sleep(Duration::from_millis(2));
    }
    let ok = p.expect("200 to the split OPTIONS", 5 * SEC, |m| m.header("Call-ID") == Some("split1"));
    assert_eq!(ok.status(), Some(200), "{}", ok.raw);

    // Two messages in one write, then a CRLFCRLF ping: two 200s in order, then one CRLF.
    let mut two = options_text("TCP", p.local, "pipe1");
    two.push_str(&options_text("TCP", p.local, "pipe2"));
    p.send_raw(two.as_bytes());
    let a = p.expect("first pipelined 200", 5 * SEC, |_| true);
    let b = p.expect("second pipelined 200", 5 * SEC, |_| true);
    assert_eq!((a.header("Call-ID"), b.header("Call-ID")), (Some("pipe1"), Some("pipe2")), "{}\n{}", a.raw, b.raw);
    assert!(p.buf.is_empty(), "nothing else arrived: {:?}", String::from_utf8_lossy(&p.buf));
    p.send_raw(b"\r\n\r\n");
    let deadline = Instant::now() + 2 * SEC;
    while p.buf.len() < 2 && p.fill(deadline) {}
    assert_eq!(p.buf, b"\r\n", "a CRLFCRLF ping gets exactly one CRLF pong");
    p.buf.clear();

    // Oversize: the header section passes 4096 bytes before it ends: closed at once.
    let mut big = tcp_from(&ctx, 3, engine.addr);
    let head = format!("OPTIONS sip:{DOMAIN} SIP/2.0\r\nX-Pad: {}", "a".repeat(5000));
    // sipark may close while the write is under way; only the close matters.
    let _ = big.write_all(head.as_bytes());
    wait_closed(&mut big, 3 * SEC);

    // Idle: a connection with no traffic is closed after about --tcp-idle-timeout (1 s).
    let mut idle = tcp_from(&ctx, 4, engine.addr);
    let took = wait_closed(&mut idle, 5 * SEC);
    assert!(took >= Duration::from_millis(800), "idle connection closed after only {took:?}");

    let text = scrape(metrics);
    assert!(sample(&text, "sipark_stream_closed_total{reason=\"oversize\"}") >= 1, "{text}");
    assert!(sample(&text, "sipark_stream_closed_total{reason=\"idle\"}") >= 1, "{text}");
    assert!(sample(&text, "sipark_stream_pings_total") >= 1, "{text}");
    assert!(sample(&text, "sipark_stream_messages_in_total{transport=\"tcp\"}") >= 3, "{text}");
    assert!(sample(&text, "sipark_stream_accepted_total{transport=\"tcp\"}") >= 3, "{text}");
    assert_eq!(sample(&text, "sipark_stream_dropped_total{reason=\"inbox_full\"}"), 0, "{text}");
    assert!(text.contains("# TYPE sipark_stream_connections gauge"), "{text}");

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// SIPp over TCP (-t t1): register.xml, then park_hangup.xml
// ---------------------------------------------------------------------------------------------

/// Runs one SIPp client scenario over TCP to `engine`; panics with its logs unless it exits 0.
fn sipp_tcp(ctx: &Ctx, label: &str, scenario: &str, host: u8, engine: SocketAddr, args: &[&str]) {
    let scen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sipp").join(scenario);
    let errors = ctx.path(&format!("{label}.errors.log"));
    let messages = ctx.path(&format!("{label}.messages.log"));
    let mut cmd = Command::new(sipp_bin());
    cmd.arg("-sf").arg(&scen);
    cmd.args(["-t", "t1", "-nostdin", "-m", "1", "-timeout", "20s", "-timeout_error"]);
    cmd.arg("-i").arg(ctx.ip(host).to_string());
    cmd.args(["-key", "domain", DOMAIN]);
    cmd.args(args);
    cmd.arg("-trace_err").arg("-error_file").arg(&errors);
    cmd.arg("-trace_msg").arg("-message_file").arg(&messages);
    cmd.arg(engine.to_string());
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run sipp: {e}"));
    if out.status.code() != Some(0) {
        let read = |p: &Path| std::fs::read(p).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        panic!(
            "sipp {label} over TCP exited {:?}\n--- stdout ---\n{}\n--- errors ---\n{}\n--- messages ---\n{}",
            out.status.code(),
            tail(&String::from_utf8_lossy(&out.stdout), 3000),
            tail(&read(&errors), 3000),
            tail(&read(&messages), 4000)
        );
    }
}

fn sipp_over_tcp(v: Variant) {
    let ctx = Ctx::new("sipp_over_tcp", 63, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let inf = ctx.path("reg.inf.csv");
    std::fs::write(&inf, format!("SEQUENTIAL\n103;{DOMAIN};\n")).expect("write injection file");
    let inf = inf.to_string_lossy().into_owned();
    sipp_tcp(&ctx, "register", "register.xml", 2, engine.addr, &["-inf", &inf]);
    sipp_tcp(
        &ctx,
        "park_hangup",
        "park_hangup.xml",
        3,
        engine.addr,
        &["-s", "*68103", "-key", "caller", "101", "-key", "parker", "102", "-d", "200"],
    );
    let log = engine.log();
    assert!(log.contains(&format!("tcp={}", engine.addr)), "start line names the TCP listener:\n{log}");
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// TLS: REGISTER, park, NOTIFY over TLS with sips: Contact
// ---------------------------------------------------------------------------------------------

fn tls_register_park_notify(v: Variant) {
    let ctx = Ctx::new("tls_register_park_notify", 64, v);
    let tls_addr = free_tcp(&ctx, 1);
    let ck = rcgen::generate_simple_self_signed(vec![tls_addr.ip().to_string(), "sipark.test".to_string()])
        .unwrap_or_else(|e| panic!("rcgen: {e}"));
    let (cert_path, key_path) = (ctx.path("cert.pem"), ctx.path("key.pem"));
    std::fs::write(&cert_path, ck.cert.pem()).expect("write cert");
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).expect("write key");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ck.cert.der().to_vec())).expect("trust the test certificate");
    let roots = Arc::new(roots);

    let tls_s = tls_addr.to_string();
    let (cert_s, key_s) = (cert_path.to_string_lossy().into_owned(), key_path.to_string_lossy().into_owned());
    let engine = Engine::start(&ctx, &["--no-pin", "--tls-listen", &tls_s, "--tls-cert", &cert_s, "--tls-key", &key_s]);
    let log = engine.log();
    assert!(log.contains(&format!("tls={tls_addr}")), "start line names the TLS listener:\n{log}");

    let mut phone = Peer::tls(&ctx, 2, tls_addr, &roots, "tls-phone103");
    register(&mut phone, "103");
    let mut leg = Peer::tls(&ctx, 3, tls_addr, &roots, "tls-parked101");
    let parked = park(&mut leg, "103", "101", "102");

    let deadline = Instant::now() + 10 * SEC;
    let notify = loop {
        let m = phone.next_notify(deadline.saturating_duration_since(Instant::now()));
        if !park_info_of(&m).parked().is_empty() {
            break m;
        }
    };
    // advertise_tls defaults to the TLS listen address.
    check_stream_notify(&notify, "TLS", &tls_s);
    let info = park_info_of(&notify);
    assert_eq!(info.parked()[0].parked_uri.as_deref(), Some(format!("sip:101@{DOMAIN}").as_str()), "{}", notify.raw);

    // The parked party hangs up over TLS: 200 on its connection, and a NOTIFY for the phone.
    let bye = parked.in_dialog("BYE", 2);
    leg.send_req(&bye);
    let ok = leg.expect_final(&bye);
    assert_eq!(ok.status(), Some(200), "BYE over TLS:\n{}", ok.raw);
    let m = phone.next_notify(10 * SEC);
    check_stream_notify(&m, "TLS", &tls_s);
    assert!(park_info_of(&m).parked().is_empty(), "nothing parked after the hangup:\n{}", m.raw);
}

// ---------------------------------------------------------------------------------------------
// Outbound: no connection to a registered flow any more -> sipark connects (TCP; TLS with
// --tls-ca, verifying the peer's certificate for its IP address)
// ---------------------------------------------------------------------------------------------

/// Waits up to `limit` for one connection on `l`.
fn accept_within(l: &TcpListener, limit: Duration) -> TcpStream {
    l.set_nonblocking(true).expect("nonblocking listener");
    let deadline = Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking");
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "sipark did not connect to {:?} within {limit:?}", l.local_addr());
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A listener on exactly `addr` (SO_REUSEADDR: the port was just used by a closed client).
fn listen_on(addr: SocketAddr) -> TcpListener {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    s.set_reuse_address(true).expect("SO_REUSEADDR");
    s.bind(&addr.into()).unwrap_or_else(|e| panic!("listen on {addr} (the closed phone's address): {e}"));
    s.listen(8).expect("listen");
    s.into()
}

fn outbound_tcp_and_tls_connections(v: Variant) {
    let ctx = Ctx::new("outbound_tcp_and_tls_connections", 65, v);
    let tls_addr = free_tcp(&ctx, 1);
    // One certificate for sipark (127.0.NET.1) and for the TLS phone (127.0.NET.5).
    let ck = rcgen::generate_simple_self_signed(vec![ctx.ip(1).to_string(), ctx.ip(5).to_string()])
        .unwrap_or_else(|e| panic!("rcgen: {e}"));
    let (cert_path, key_path) = (ctx.path("cert.pem"), ctx.path("key.pem"));
    std::fs::write(&cert_path, ck.cert.pem()).expect("write cert");
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).expect("write key");
    let cert_der = CertificateDer::from(ck.cert.der().to_vec());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der.clone()).expect("trust the test certificate");
    let roots = Arc::new(roots);
    let (tls_s, cert_s, key_s) =
        (tls_addr.to_string(), cert_path.to_string_lossy().into_owned(), key_path.to_string_lossy().into_owned());
    let engine = Engine::start(
        &ctx,
        &["--no-pin", "--tls-listen", &tls_s, "--tls-cert", &cert_s, "--tls-key", &key_s, "--tls-ca", &cert_s],
    );

    // 103 registers over TCP and 105 over TLS, then both hang up their connections.
    let mut p103 = Peer::tcp(&ctx, 2, engine.addr, "phone103");
    register(&mut p103, "103");
    let mut p105 = Peer::tls(&ctx, 5, tls_addr, &roots, "phone105");
    register(&mut p105, "105");
    let (a103, a105) = (p103.local, p105.local);
    drop(p103);
    drop(p105);
    // Let sipark see both closes, so that it has no connection to either flow left.
    std::thread::sleep(Duration::from_millis(300));
    let l103 = listen_on(a103);
    let l105 = listen_on(a105);

    // Park on both: each NOTIFY makes sipark open a connection to the registered flow.
    let mut leg = Peer::tcp(&ctx, 3, engine.addr, "parker");
    park(&mut leg, "103", "101", "102");
    let sock = accept_within(&l103, 10 * SEC);
    let mut phone = Peer {
        local: sock.local_addr().expect("addr"),
        wire: Box::new(sock),
        buf: Vec::new(),
        proto: "TCP",
        name: "phone103-accepted".into(),
    };
    let m = phone.next_notify(5 * SEC);
    check_stream_notify(&m, "TCP", &engine.addr.to_string());
    assert!(!park_info_of(&m).parked().is_empty(), "the park is listed:\n{}", m.raw);

    let mut leg2 = Peer::tcp(&ctx, 4, engine.addr, "parker2");
    park(&mut leg2, "105", "106", "102");
    let sock = accept_within(&l105, 10 * SEC);
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert_der],
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).expect("key"),
        )
        .unwrap_or_else(|e| panic!("server config: {e}"));
    let conn = rustls::ServerConnection::new(Arc::new(server)).expect("TLS server");
    let mut phone = Peer {
        local: sock.local_addr().expect("addr"),
        wire: Box::new(rustls::StreamOwned::new(conn, sock)),
        buf: Vec::new(),
        proto: "TLS",
        name: "phone105-accepted".into(),
    };
    let m = phone.next_notify(5 * SEC);
    check_stream_notify(&m, "TLS", &tls_s);
    assert!(!park_info_of(&m).parked().is_empty(), "the park is listed:\n{}", m.raw);
}
