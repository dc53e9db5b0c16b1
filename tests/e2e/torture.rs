//! The 49 RFC 4475 torture messages (tests/rfc4475/, byte-exact), each sent to the real binary
//! over UDP and over TCP, and each answer checked beside what the RFC says of it.
//!
//! The engine runs on its embedded defaults: every domain is an open tenant, so each request
//! reaches the rule that decides it (docs/decisions/0020-rfc-4475-conformance.md gives the
//! reasoning for every row). Where sipark answers otherwise than the RFC's first suggestion, the
//! row says why: a UAS checks the Request-URI (§8.2.2.1: `user@example.com` names no park
//! service, 404) before the body (§8.2.3, the 415 of invut and the 406 of sdp01), and the
//! registrar refuses an address-of-record that is no extension (§10.3 step 5, 404) before it would
//! look at a contact.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sipark::proto::sip::parse::{Method, SipMessage};
use sipark::proto::txn::RequestKey;

use crate::harness::{Ctx, Engine, Variant};

/// What sipark must do with one message on one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Answer with this status.
    Status(u16),
    /// Answer nothing (a response nobody waits for, or a stream that waits for more bytes).
    Nothing,
    /// Close the connection without an answer.
    Closed,
    /// Answer with this status, then close the connection: the stream's
    /// framing is lost after this message.
    Closes(u16),
    /// Answer two requests found on the stream.
    Two(u16, u16),
}

use Want::{Closed, Closes, Nothing, Status, Two};

struct Case {
    /// The file in tests/rfc4475, without `.dat`.
    name: &'static str,
    /// What RFC 4475 says of it.
    rfc: &'static str,
    udp: Want,
    tcp: Want,
}

const fn case(name: &'static str, rfc: &'static str, udp: Want, tcp: Want) -> Case {
    Case { name, rfc, udp, tcp }
}

const fn same(name: &'static str, rfc: &'static str, want: Want) -> Case {
    case(name, rfc, want, want)
}

#[rustfmt::skip]
const CASES: [Case; 49] = [
    // 3.1.1 Valid messages: every element accepts them.
    same("wsinv", "3.1.1.1 valid; no magic cookie: RFC 2543 matching. Has a To tag: no such dialog", Status(481)),
    same("intmeth", "3.1.1.2 valid; unknown method: 501", Status(501)),
    same("esc01", "3.1.1.3 valid; the user names no park service", Status(404)),
    same("escnull", "3.1.1.4 valid; the AOR is no extension (§10.3 step 5)", Status(404)),
    same("esc02", "3.1.1.5 valid; an endpoint rejects the unknown method with 501", Status(501)),
    same("lwsdisp", "3.1.1.6 accepted as well formed", Status(200)),
    same("longreq", "3.1.1.7 valid, no magic cookie; the user names no park service", Status(404)),
    case("dblreq", "3.1.1.8 the REGISTER is handled, the octets after it ignored (UDP); two messages on a stream",
         Status(200), Two(200, 404)),
    same("semiuri", "3.1.1.9 valid", Status(200)),
    same("transports", "3.1.1.10 valid", Status(200)),
    same("mpart01", "3.1.1.11 valid; MESSAGE is known and not accepted: 405", Status(405)),
    same("unreason", "3.1.1.12 valid response; no transaction waits for it", Nothing),
    same("noreason", "3.1.1.13 valid response; no transaction waits for it", Nothing),
    // 3.1.2 Invalid messages.
    same("badinv01", "3.1.2.1 400", Status(400)),
    case("clerr", "3.1.2.2 400 over UDP; a stream waits for the rest", Status(400), Nothing),
    case("ncl", "3.1.2.3 an error; a stream's framing is lost: 400, then close", Status(400), Closes(400)),
    same("scalar02", "3.1.2.4 400 for the CSeq", Status(400)),
    same("scalarlg", "3.1.2.5 a response: discarded", Nothing),
    same("quotbal", "3.1.2.6 400", Status(400)),
    same("ltgtruri", "3.1.2.7 400", Status(400)),
    same("lwsruri", "3.1.2.8 400", Status(400)),
    same("lwsstart", "3.1.2.9 may be rejected as malformed", Status(400)),
    same("trws", "3.1.2.10 may be rejected, or the spaces ignored (they are)", Status(200)),
    same("escruri", "3.1.2.11 may be rejected, or the headers ignored (they are): no park service", Status(404)),
    same("baddate", "3.1.2.12 may be rejected, or the Date ignored (it is): no park service", Status(404)),
    same("regbadct", "3.1.2.13 may be rejected, or the brackets inferred (they are)", Status(200)),
    same("badaspec", "3.1.2.14 may be rejected, or the spaces ignored (they are)", Status(200)),
    same("baddn", "3.1.2.15 (this copy ends without the blank line after the headers: incomplete)", Nothing),
    same("badvers", "3.1.2.16 505", Status(505)),
    same("mismatch01", "3.1.2.17 400", Status(400)),
    same("mismatch02", "3.1.2.18 501 (400 acceptable)", Status(501)),
    same("bigcode", "3.1.2.19 a response: dropped", Nothing),
    // 3.2 Transaction layer.
    same("badbranch", "3.2.1 400, or RFC 2543 matching (used)", Status(200)),
    // 3.3 Application layer.
    same("insuf", "3.3.1 400", Status(400)),
    same("unkscm", "3.3.2 416", Status(416)),
    same("novelsc", "3.3.3 416", Status(416)),
    same("unksm2", "3.3.4 a registrar rejects a To that is no SIP URI with 400", Status(400)),
    same("bext01", "3.3.5 420 with Unsupported", Status(420)),
    same("invut", "3.3.6 415; the Request-URI (§8.2.2.1) names no park service first", Status(404)),
    same("regaut01", "3.3.7 401 from a registrar that authenticates; this tenant is open", Status(200)),
    same("multi01", "3.3.8 400", Status(400)),
    case("mcl01", "3.3.9 an error; a stream's framing is lost: 400, then close", Status(400), Closes(400)),
    same("bcast", "3.3.10 a response: discarded", Nothing),
    same("zeromf", "3.3.11 an endpoint serves it as if Max-Forwards were positive", Status(200)),
    same("cparam01", "3.3.12 succeeds", Status(200)),
    same("cparam02", "3.3.13 succeeds", Status(200)),
    same("regescrt", "3.3.14 succeeds", Status(200)),
    same("sdp01", "3.3.15 406; the Request-URI (§8.2.2.1) names no park service first", Status(404)),
    // 3.4 Backward compatibility.
    same("inv2543", "3.4.1 accepted, RFC 2543 matching; the user names no park service", Status(404)),
];

/// The engines' T1: a finished transaction is gone 64·T1 later.
const T1_MS: u64 = 5;

/// How long a message that gets no answer is waited on.
const QUIET: Duration = Duration::from_millis(400);
/// How long an answer may take.
const ANSWER: Duration = Duration::from_secs(3);

fn message(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/rfc4475/{name}.dat", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The status code of a response's first line.
fn status_of(resp: &[u8]) -> Option<u16> {
    let line = resp.split(|&b| b == b'\n').next()?;
    let code = line.strip_prefix(b"SIP/2.0 ")?.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Sends `msg` from a fresh socket (so that a retransmitted answer to an earlier message cannot
/// be taken for this one's) and says what came back.
fn over_udp(ctx: &Ctx, engine: SocketAddr, msg: &[u8], want: Want) -> (Want, String) {
    let sock = UdpSocket::bind((ctx.ip(2), 0)).unwrap_or_else(|e| panic!("bind: {e}"));
    sock.send_to(msg, engine).unwrap_or_else(|e| panic!("send: {e}"));
    let mut buf = vec![0u8; 65_536];
    let wait = |d: Duration| sock.set_read_timeout(Some(d)).unwrap_or_else(|e| panic!("timeout: {e}"));
    wait(if want == Nothing { QUIET } else { ANSWER });
    match sock.recv(&mut buf) {
        Ok(n) => {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            (status_of(&buf[..n]).map_or(Nothing, Status), text)
        }
        Err(_) => (Nothing, String::new()),
    }
}

/// Sends `msg` on a fresh connection and reads until `want` can be told: the answers, the end
/// of the stream, or silence.
fn over_tcp(ctx: &Ctx, engine: SocketAddr, msg: &[u8], want: Want) -> (Want, String) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .unwrap_or_else(|e| panic!("socket: {e}"));
    sock.bind(&SocketAddr::from((ctx.ip(2), 0)).into()).unwrap_or_else(|e| panic!("bind: {e}"));
    sock.connect(&engine.into()).unwrap_or_else(|e| panic!("connect {engine}: {e}"));
    let mut s: TcpStream = sock.into();
    s.write_all(msg).unwrap_or_else(|e| panic!("write: {e}"));
    let answers = match want {
        Two(..) => 2,
        Status(_) | Closes(_) => 1,
        Nothing | Closed => 0,
    };
    // After the answer of a message that ends the framing, the close.
    let then_close = matches!(want, Closes(_));
    let deadline = Instant::now() + if answers == 0 { QUIET } else { ANSWER };
    let mut got = Vec::new();
    let mut closed = false;
    let mut buf = [0u8; 8192];
    loop {
        let heads = got.windows(4).filter(|w| *w == b"\r\n\r\n").count();
        let left = deadline.saturating_duration_since(Instant::now());
        if (answers > 0 && heads >= answers && !then_close) || left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap_or_else(|e| panic!("timeout: {e}"));
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let codes: Vec<u16> = text.split("SIP/2.0 ").skip(1).filter_map(|r| r.get(..3)?.parse().ok()).collect();
    let seen = match codes[..] {
        [] if closed => Closed,
        [] => Nothing,
        [a] if closed && then_close => Closes(a),
        [a] => Status(a),
        [a, b] => Two(a, b),
        _ => Nothing,
    };
    (seen, text)
}

pub fn torture_messages_over_udp_and_tcp(v: Variant) {
    let ctx = Ctx::new("torture_messages_over_udp_and_tcp", 47, v);
    // One engine per transport: a message sent again over TCP has the branch and sent-by of its
    // UDP twin, and would be absorbed as its retransmission (§17.2.3).
    let t1 = T1_MS.to_string();
    let flags = ["--t1-ms", &t1, "--t2-ms", "40"];
    let udp_engine = Engine::start_logging_to(&ctx, "engine-udp.log", &flags);
    let tcp_engine = Engine::start_logging_to(&ctx, "engine-tcp.log", &flags);
    let mut wrong = Vec::new();
    // Several messages of the archive share a branch, sent-by and method (cparam01 and cparam02,
    // for one): by §17.2.3 the second is a retransmission of the first while its transaction
    // lasts. Such a message waits until the first one's transaction is over.
    let mut keys: Vec<String> = Vec::new();
    for c in &CASES {
        let msg = message(c.name);
        let key = SipMessage::parse(&msg).ok().and_then(|m| {
            let class = match m.method()? {
                Method::Ack | Method::Cancel => Method::Invite,
                other => other,
            };
            Some(format!("{:?} {class:?}", RequestKey::of(&m)?))
        });
        if let Some(key) = key {
            if keys.contains(&key) {
                std::thread::sleep(Duration::from_millis(64 * T1_MS + 300));
                keys.clear();
            }
            keys.push(key);
        }
        let (udp, text) = over_udp(&ctx, udp_engine.addr, &msg, c.udp);
        if udp != c.udp {
            wrong.push(format!("{} over UDP: got {udp:?}, want {:?} (RFC 4475 {})\n{text}", c.name, c.udp, c.rfc));
        }
        let (tcp, text) = over_tcp(&ctx, tcp_engine.addr, &msg, c.tcp);
        if tcp != c.tcp {
            wrong.push(format!("{} over TCP: got {tcp:?}, want {:?} (RFC 4475 {})\n{text}", c.name, c.tcp, c.rfc));
        }
    }
    assert!(wrong.is_empty(), "{} of {} checks differ:\n{}", wrong.len(), 2 * CASES.len(), wrong.join("\n"));
    for engine in [&udp_engine, &tcp_engine] {
        let log = engine.log();
        assert!(!log.contains("panicked"), "engine log shows a panic:\n{}", crate::harness::tail(&log, 4000));
    }
}

#[test]
fn every_file_of_the_archive_has_a_row() {
    let dir = format!("{}/../tests/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".dat").map(str::to_owned))
        .collect();
    files.sort();
    let mut rows: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    rows.sort();
    assert_eq!(files, rows);
}
