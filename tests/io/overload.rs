//! Overload control through the real binary (docs/decisions/0021): one
//! worker with a bound of 1 ms on its receive path's queueing delay, a
//! flood of park INVITEs from one socket, and a call parked before the
//! flood. New requests get 503 with Retry-After; the parked call's BYE,
//! queued behind the flood, is still answered 200.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use super::{Sipark, header, in_dialog, park_invite, sample};

/// Park INVITEs in the flood.
const FLOOD: usize = 3000;

const SDP: &str =
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

/// The status code and CSeq method of a response.
fn status(resp: &str) -> (u16, String) {
    let code = resp.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let method = header(resp, "CSeq").and_then(|c| c.split_whitespace().nth(1)).unwrap_or_default().to_owned();
    (code, method)
}

/// Parks one call before the flood (a request the idle worker picks up
/// late enough can itself be shed: then again, with a new transaction).
/// Returns its id and its 200.
fn park_one(sp: &Sipark, sock: &UdpSocket) -> (String, String) {
    let local = sock.local_addr().expect("local addr");
    let mut buf = [0u8; 9000];
    for attempt in 0..20 {
        let id = format!("held{attempt}");
        sock.send_to(&park_invite(local, 103, &id, SDP), sp.listen).expect("send park");
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let Ok((n, _)) = sock.recv_from(&mut buf) else { continue };
            let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
            match status(&resp) {
                (200, m) if m == "INVITE" => {
                    sock.send_to(&in_dialog(local, &resp, &id, "ACK", 1, &format!("{id}a")), sp.listen)
                        .expect("send ACK");
                    return (id, resp);
                }
                (503, _) => break,
                (c, _) if c >= 300 => panic!("park refused:\n{resp}"),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no park admitted in 20 attempts");
}

/// Counts one answer to the flood: a 503 (with a Retry-After of the
/// default range) or a 200.
fn count(buf: &[u8], shed: &mut usize, admitted: &mut usize) {
    let resp = String::from_utf8_lossy(buf);
    match status(&resp) {
        (503, _) => {
            let retry: u32 = header(&resp, "Retry-After").and_then(|v| v.parse().ok()).unwrap_or(0);
            assert!((4..=8).contains(&retry), "Retry-After of the default range:\n{resp}");
            *shed += 1;
        }
        (200, _) => *admitted += 1,
        _ => {}
    }
}

fn flood_sheds_new_work_and_serves_the_bye(extra: &[&str]) {
    let mut args =
        vec!["--workers", "1", "--overload-delay-ms", "1", "--overload-resume-ms", "1", "--overload-window-ms", "0"];
    args.extend_from_slice(extra);
    let sp = Sipark::start(&args);
    let held = UdpSocket::bind("127.0.0.1:0").expect("bind");
    held.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let (id, ok) = park_one(&sp, &held);
    std::thread::sleep(Duration::from_millis(100));

    let flood = UdpSocket::bind("127.0.0.1:0").expect("bind");
    flood.set_nonblocking(true).expect("nonblocking");
    let local = flood.local_addr().expect("local addr");
    let mut buf = [0u8; 9000];
    let (mut shed, mut admitted) = (0, 0);
    for i in 0..FLOOD {
        let ext = 1000 + u32::try_from(i).unwrap_or(0);
        // A full send buffer drops this one; the flood goes on.
        let _ = flood.send_to(&park_invite(local, ext, &format!("flood{i}"), SDP), sp.listen);
        while let Ok((n, _)) = flood.recv_from(&mut buf) {
            count(&buf[..n], &mut shed, &mut admitted);
        }
    }
    // The parked call's BYE, queued behind the flood.
    let bye = in_dialog(held.local_addr().expect("local addr"), &ok, &id, "BYE", 2, &format!("{id}b"));
    held.send_to(&bye, sp.listen).expect("send BYE");
    let end = Instant::now() + Duration::from_secs(20);
    let mut resend = Instant::now() + Duration::from_millis(500);
    let mut bye_answer = None;
    while Instant::now() < end && (bye_answer.is_none() || shed == 0) {
        while let Ok((n, _)) = flood.recv_from(&mut buf) {
            count(&buf[..n], &mut shed, &mut admitted);
        }
        if bye_answer.is_none() {
            if let Ok((n, _)) = held.recv_from(&mut buf) {
                let resp = String::from_utf8_lossy(&buf[..n]).into_owned();
                if status(&resp).1 == "BYE" {
                    bye_answer = Some(resp);
                }
            } else if Instant::now() >= resend {
                held.send_to(&bye, sp.listen).expect("resend BYE");
                resend = Instant::now() + Duration::from_millis(500);
            }
        }
    }
    let bye_answer = bye_answer.unwrap_or_else(|| panic!("no answer to the parked call's BYE within 20 s"));
    assert_eq!(status(&bye_answer).0, 200, "the in-dialog BYE is served:\n{bye_answer}");
    assert!(shed > 0, "no 503 among the answers to {FLOOD} park INVITEs ({admitted} admitted)");

    let text = sp.scrape();
    assert!(sample(&text, "sipark_requests_shed_total") >= shed as u64, "{text}");
    assert!(sample(&text, "sipark_overload_entered_total") >= 1, "{text}");
    assert_eq!(sample(&text, "sipark_overload_rejects_total"), 0, "the caps' counter is apart:\n{text}");
    assert!(sample(&text, "sipark_hangups_total") >= 1, "the parked call ended by its BYE:\n{text}");
}

#[test]
fn a_flood_gets_503_while_an_in_dialog_bye_is_answered() {
    flood_sheds_new_work_and_serves_the_bye(&[]);
}

/// The same on the mmsg backend, which reads the stamps from `recvmmsg`.
#[test]
fn a_flood_gets_503_while_an_in_dialog_bye_is_answered_mmsg() {
    flood_sheds_new_work_and_serves_the_bye(&["--io", "mmsg"]);
}
