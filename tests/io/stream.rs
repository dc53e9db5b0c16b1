//! The stream front against the real binary: TCP messages reach the owning worker at once
//! (MsgRing or eventfd wake-up from the stream thread, not the 500 ms idle wait), `--no-tcp`,
//! and the stream flags' validation.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, Sipark, domains_per_shard, header, sample};

/// OPTIONS over TCP from `local`.
fn options_tcp(domain: &str, local: std::net::SocketAddr, call_id: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/TCP {local};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{domain}>;tag=io-tcp\r\n\
         To: <sip:{domain}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Reads one response (sipark always sends Content-Length: 0 for OPTIONS' 200) from `s`.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            buf.drain(..end + 4);
            return text;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no response over TCP within 2 s; have {:?}", String::from_utf8_lossy(buf));
        s.set_read_timeout(Some(left)).expect("timeout");
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => panic!("sipark closed the TCP connection"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn tcp_wakes_the_owner(extra: &[&str]) {
    let sp = Sipark::start(extra);
    let by_shard = domains_per_shard(1);
    let mut s = TcpStream::connect(sp.listen).unwrap_or_else(|e| panic!("connect TCP {}: {e}", sp.listen));
    s.set_nodelay(true).expect("nodelay");
    let local = s.local_addr().expect("local addr");
    let mut buf = Vec::new();
    for (shard, domains) in by_shard.iter().enumerate() {
        let mut rtts = Vec::new();
        for i in 0..7 {
            // Let every worker go idle, so that only a wake-up can rouse the owner.
            std::thread::sleep(Duration::from_millis(30));
            let cid = format!("tcp-wake-{shard}-{i}");
            let t0 = Instant::now();
            s.write_all(&options_tcp(&domains[0], local, &cid)).expect("write");
            let resp = read_response(&mut s, &mut buf);
            rtts.push(t0.elapsed());
            assert!(resp.starts_with("SIP/2.0 200 "), "expected 200:\n{resp}");
            assert_eq!(header(&resp, "Call-ID"), Some(cid.as_str()), "answer in order:\n{resp}");
            let via = header(&resp, "Via").unwrap_or_default();
            assert!(via.starts_with(&format!("SIP/2.0/TCP {local}")), "Via echoed:\n{resp}");
        }
        rtts.sort();
        let median = rtts[rtts.len() / 2];
        assert!(
            median < Duration::from_millis(100),
            "shard {shard}: median TCP round trip {median:?} (all {rtts:?}); the owner waited for a timeout"
        );
    }
    let text = sp.scrape();
    assert_eq!(sample(&text, "sipark_stream_messages_in_total{transport=\"tcp\"}"), 14, "{text}");
    assert_eq!(sample(&text, "sipark_stream_connections{transport=\"tcp\"}"), 1, "{text}");
    assert_eq!(sample(&text, "sipark_stream_accepted_total{transport=\"tcp\"}"), 1, "{text}");
}

#[test]
fn tcp_messages_wake_their_owner_promptly() {
    tcp_wakes_the_owner(&["--steer", "off"]);
}

#[test]
fn tcp_messages_wake_their_owner_promptly_mmsg() {
    tcp_wakes_the_owner(&["--steer", "off", "--io", "mmsg"]);
}

#[test]
fn no_tcp_means_no_listener() {
    let mut sp = Sipark::start(&["--no-tcp"]);
    let line = sp.wait_log("sipark started", Duration::from_secs(1));
    assert!(line.contains("tcp=off") && line.contains("tls=off"), "start line: {line}");
    match TcpStream::connect_timeout(&sp.listen, Duration::from_secs(2)) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "connect to {}: {e}", sp.listen),
        Ok(_) => panic!("--no-tcp, yet {} accepts TCP", sp.listen),
    }
    let text = sp.scrape();
    assert!(!text.contains("sipark_stream_"), "no stream series without a stream thread:\n{text}");
}

#[test]
fn stream_flags_are_validated() {
    let dir = std::env::temp_dir().join(format!("sipark-io-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write junk");
    let junk = junk.to_string_lossy().into_owned();
    let cases: &[&[&str]] = &[
        &["--tls-listen", "127.0.0.1:0"],
        &["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"],
        &["--tls-advertise", "sip.example:5061"],
        &["--tls-listen", "127.0.0.1:0", "--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"],
        &["--tls-listen", "127.0.0.1:0", "--tls-cert", &junk, "--tls-key", &junk],
        &["--tls-ca", &junk],
        &["--max-connections", "0"],
        &["--tcp-idle-timeout", "0"],
        &["--max-message-size", "100"],
        &["--max-message-size", "65535", "--max-write-backlog", "1000"],
        &["--tls-handshake-timeout", "0"],
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
        assert!(stderr.contains("--"), "{args:?} names the flag:\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A message whose Content-Length conflicts ends the framing (RFC 4475 mcl01): it is answered
/// 400 from its header section, nothing more is read, and the connection closes once the 400 is
/// out, even while the peer goes on writing.
#[test]
fn conflicting_content_length_over_tcp_is_answered_400_then_closed() {
    let sp = Sipark::start(&[]);
    let mut s = TcpStream::connect(sp.listen).unwrap_or_else(|e| panic!("connect TCP {}: {e}", sp.listen));
    let local = s.local_addr().expect("local addr");
    let mut msg = options_tcp("acme.example", local, "mcl-io");
    let head_end = msg.len() - 2;
    msg.splice(head_end..head_end, b"l: 7\r\n".iter().copied());
    s.write_all(&msg).expect("write");
    // The peer goes on writing: bytes that can no longer be framed.
    let mut writer = s.try_clone().expect("clone");
    let feeding = std::thread::spawn(move || {
        for _ in 0..50 {
            if writer.write_all(b"more bytes that belong to no message\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut closed = false;
    let mut chunk = [0u8; 4096];
    while t0.elapsed() < Duration::from_secs(3) {
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let _ = feeding.join();
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("SIP/2.0 400 "), "a 400 first:\n{text}");
    assert_eq!(header(&text, "Call-ID"), Some("mcl-io"), "{text}");
    assert!(closed, "then the connection closes, within 3 s:\n{text}");
    assert!(t0.elapsed() < Duration::from_secs(2), "closed {:?} after the message", t0.elapsed());
    let metrics = sp.scrape();
    assert_eq!(sample(&metrics, "sipark_stream_closed_total{reason=\"error\"}"), 1, "{metrics}");
}
