//! The online password-guessing attack of issue 13, as a benchmark
//! (`sipark-guess`, `cargo xtask bench --guessing`; docs/decisions/0019).
//!
//! One UDP socket, one source address. Each of `window` slots (a Call-ID of
//! its own) runs in lock step: a REGISTER without credentials fetches a
//! challenge, then REGISTERs with guessed passwords follow on that nonce,
//! as fast as answers come. A `403` is an answered guess; a `401` (sipark
//! no longer checks a second guess on a nonce) hands a fresh nonce, which
//! the next guess uses, as an attacker told to re-fetch a challenge would.
//! A request without an answer within the timeout is given up and the slot
//! sends the next one.
//!
//! The engine's metrics are read at the start, as soon as they show a ban
//! (polled every 100 ms), and at the end: what happened after the ban (how
//! many guesses the engine checked, how many datagrams reached a worker,
//! how many XDP dropped) comes from them, not from the attacker's view.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use sipark::proto::auth::{Algorithm, DigestInput, authorization};

/// What to attack, and how.
#[derive(Debug, Clone)]
pub struct GuessConfig {
    pub target: SocketAddr,
    /// The address the socket binds (port 0).
    pub bind: std::net::IpAddr,
    pub domain: String,
    pub user: String,
    pub duration: Duration,
    /// Requests in flight (one per slot).
    pub window: usize,
    /// A request unanswered this long is given up.
    pub timeout: Duration,
    /// The engine's metrics endpoint.
    pub metrics: Option<SocketAddr>,
}

/// The engine's counters that tell the story, summed over its workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `sipark_auth_failures_total`: credentials checked and refused.
    pub failures: u64,
    /// `sipark_auth_bans_total`.
    pub bans: u64,
    /// `sipark_datagrams_in_total`: datagrams that reached a worker.
    pub datagrams_in: u64,
    /// `sipark_auth_banned_drops_total`: dropped by a shard as banned.
    pub banned_drops: u64,
    /// `sipark_xdp_packets_total{reason="banned"}`.
    pub xdp_banned: u64,
}

impl Snapshot {
    /// Reads the counters out of an OpenMetrics text.
    pub fn parse(text: &str) -> Snapshot {
        let mut s = Snapshot::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(v) = value.trim().parse::<f64>() else { continue };
            let v = v as u64;
            let name = series.split('{').next().unwrap_or(series);
            match name {
                "sipark_auth_failures_total" => s.failures += v,
                "sipark_auth_bans_total" => s.bans += v,
                "sipark_datagrams_in_total" => s.datagrams_in += v,
                "sipark_auth_banned_drops_total" => s.banned_drops += v,
                "sipark_xdp_packets_total" if series.contains("reason=\"banned\"") => s.xdp_banned += v,
                _ => {}
            }
        }
        s
    }

    /// `self - earlier`, counter by counter.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            failures: self.failures.saturating_sub(earlier.failures),
            bans: self.bans.saturating_sub(earlier.bans),
            datagrams_in: self.datagrams_in.saturating_sub(earlier.datagrams_in),
            banned_drops: self.banned_drops.saturating_sub(earlier.banned_drops),
            xdp_banned: self.xdp_banned.saturating_sub(earlier.xdp_banned),
        }
    }
}

/// `GET /metrics` from `addr`.
pub fn scrape(addr: SocketAddr) -> std::io::Result<Snapshot> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: sipark\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(Snapshot::parse(&text))
}

/// What the attack saw and what the engine counted.
#[derive(Debug, Clone, Default)]
pub struct GuessReport {
    pub elapsed: Duration,
    /// Guesses sent (REGISTERs with credentials).
    pub sent: u64,
    /// Guesses answered 403.
    pub answered: u64,
    /// Challenges received (401).
    pub challenges: u64,
    /// Requests given up (no answer in time).
    pub unanswered: u64,
    /// The guessed password, if one was right.
    pub found: Option<String>,
    /// The last answer before the engine fell silent for good (from the start).
    pub last_answer: Option<Duration>,
    /// When the metrics first showed a ban (from the start), within 100 ms.
    pub ban_seen: Option<Duration>,
    /// Guesses sent after `ban_seen`, and the answers to anything after it.
    pub sent_after_ban: u64,
    pub answers_after_ban: u64,
    /// Metrics at the start, at `ban_seen`, at the end.
    pub start: Option<Snapshot>,
    pub at_ban: Option<Snapshot>,
    pub end: Option<Snapshot>,
}

impl GuessReport {
    /// Answered guesses per second before the ban (over the whole run
    /// when there was none).
    pub fn answered_per_sec(&self) -> f64 {
        let t = self.last_answer.filter(|_| self.ban_seen.is_some()).unwrap_or(self.elapsed);
        self.answered as f64 / t.as_secs_f64().max(1e-9)
    }

    /// What the engine counted from the ban to the end, and over how long.
    pub fn after_ban(&self) -> Option<(Duration, Snapshot)> {
        let (seen, at, end) = (self.ban_seen?, self.at_ban?, self.end?);
        Some((self.elapsed.saturating_sub(seen), end.since(&at)))
    }
}

/// One lock-step slot.
struct Slot {
    call_id: String,
    tag: String,
    cseq: u32,
    nonce: Option<String>,
    /// The CSeq in flight, and when it was sent.
    pending: Option<(u32, Instant)>,
    /// The password guessed in flight, if any.
    guessing: Option<String>,
}

/// The `nonce` of the first challenge in a 401.
pub fn nonce_in(msg: &str) -> Option<&str> {
    let at = msg.find("nonce=\"")? + 7;
    msg[at..].split('"').next()
}

/// A header's value (first occurrence, name case-insensitive, compact
/// forms not needed: sipark writes long names).
fn header<'m>(msg: &'m str, name: &str) -> Option<&'m str> {
    msg.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Runs the attack for `cfg.duration`.
pub fn run(cfg: &GuessConfig) -> std::io::Result<GuessReport> {
    let sock = UdpSocket::bind(SocketAddr::new(cfg.bind, 0))?;
    let me = sock.local_addr()?;
    probe(&sock, cfg.target, &cfg.domain)?;
    sock.set_read_timeout(Some(Duration::from_millis(2)))?;
    let pid = std::process::id();
    let mut slots: Vec<Slot> = (0..cfg.window.max(1))
        .map(|i| Slot {
            call_id: format!("guess-{pid}-{i}@{me}"),
            tag: format!("g{pid}x{i}"),
            cseq: 0,
            nonce: None,
            pending: None,
            guessing: None,
        })
        .collect();
    let by_call: HashMap<String, usize> = slots.iter().enumerate().map(|(i, s)| (s.call_id.clone(), i)).collect();
    let mut rep = GuessReport { start: cfg.metrics.and_then(|m| scrape(m).ok()), ..GuessReport::default() };
    let start = Instant::now();
    let mut next_scrape = start;
    let mut candidate: u64 = 0;
    let mut buf = vec![0u8; 65536];
    let uri = format!("sip:{}", cfg.domain);
    while start.elapsed() < cfg.duration {
        let now = Instant::now();
        for s in slots.iter_mut() {
            if let Some((_, at)) = s.pending {
                if now.duration_since(at) < cfg.timeout {
                    continue;
                }
                s.pending = None;
                rep.unanswered += 1;
            }
            s.cseq += 1;
            let creds = s.nonce.as_deref().map(|nonce| {
                let password = format!("{:06}", candidate % 1_000_000);
                candidate += 1;
                let input = DigestInput {
                    username: cfg.user.as_bytes(),
                    realm: cfg.domain.as_bytes(),
                    password: password.as_bytes(),
                    method: b"REGISTER",
                    uri: uri.as_bytes(),
                    nonce: nonce.as_bytes(),
                    nc: b"00000001",
                    cnonce: b"6b8b4567",
                    qop: b"auth",
                };
                let value = String::from_utf8_lossy(&authorization(Algorithm::Md5, &input)).into_owned();
                (password, value)
            });
            let auth = creds.as_ref().map_or(String::new(), |(_, v)| format!("Authorization: {v}\r\n"));
            let msg = format!(
                "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKg{pid}x{}x{};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@{dom}>;tag={tag}\r\nTo: <sip:{user}@{dom}>\r\n\
                 Call-ID: {cid}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{me}>;expires=60\r\n\
                 {auth}Content-Length: 0\r\n\r\n",
                s.tag,
                s.cseq,
                user = cfg.user,
                dom = cfg.domain,
                tag = s.tag,
                cid = s.call_id,
                cseq = s.cseq,
            );
            // A send error (a full buffer) counts as unanswered at the timeout.
            let _ = sock.send_to(msg.as_bytes(), cfg.target);
            s.guessing = creds.as_ref().map(|(p, _)| p.clone());
            if creds.is_some() {
                rep.sent += 1;
                if rep.ban_seen.is_some() {
                    rep.sent_after_ban += 1;
                }
            }
            s.pending = Some((s.cseq, now));
        }
        // Answers, until the socket has none for 2 ms.
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            if from != cfg.target {
                continue;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            let Some(code) = text.strip_prefix("SIP/2.0 ").and_then(|r| r.get(..3)).and_then(|c| c.parse::<u16>().ok())
            else {
                continue;
            };
            if code < 200 {
                continue;
            }
            let slot = header(&text, "Call-ID").and_then(|c| by_call.get(c).copied());
            let cseq = header(&text, "CSeq").and_then(|c| c.split_whitespace().next()).and_then(|c| c.parse().ok());
            let Some(s) = slot.map(|i| &mut slots[i]) else { continue };
            if s.pending.map(|(c, _)| c) != cseq {
                continue;
            }
            s.pending = None;
            rep.last_answer = Some(start.elapsed());
            if rep.ban_seen.is_some() {
                rep.answers_after_ban += 1;
            }
            match code {
                401 => {
                    rep.challenges += 1;
                    s.nonce = nonce_in(&text).map(str::to_owned);
                }
                403 => rep.answered += 1,
                200 => rep.found = s.guessing.clone(),
                _ => {}
            }
        }
        if let Some(m) = cfg.metrics
            && rep.ban_seen.is_none()
            && Instant::now() >= next_scrape
        {
            next_scrape = Instant::now() + Duration::from_millis(100);
            if let Ok(snap) = scrape(m)
                && rep.start.is_some_and(|s| snap.bans > s.bans)
            {
                rep.ban_seen = Some(start.elapsed());
                rep.at_ban = Some(snap);
            }
        }
    }
    rep.elapsed = start.elapsed();
    rep.end = cfg.metrics.and_then(|m| scrape(m).ok());
    Ok(rep)
}

/// Sends OPTIONS for `domain` (an XDP filter in strict mode drops other
/// hosts) until the engine answers (15 s at most).
fn probe(sock: &UdpSocket, target: SocketAddr, domain: &str) -> std::io::Result<()> {
    let me = sock.local_addr()?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    for n in 1u32.. {
        if start.elapsed() > Duration::from_secs(15) {
            break;
        }
        let options = format!(
            "OPTIONS sip:ping@{domain} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{me}>;tag=probe\r\nTo: <sip:ping@{domain}>\r\n\
             Call-ID: probe-{n}@{me}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(options.as_bytes(), target)?;
        if let Ok((len, from)) = sock.recv_from(&mut buf)
            && from == target
            && buf[..len].starts_with(b"SIP/2.0 ")
        {
            return Ok(());
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{target} did not answer OPTIONS within 15 s")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_over_workers_and_reasons_kept_apart() {
        let text = "# HELP x\nsipark_auth_failures_total{worker=\"0\"} 3\nsipark_auth_failures_total{worker=\"1\"} 4\n\
                    sipark_datagrams_in_total{worker=\"0\"} 10\nsipark_auth_bans_total{worker=\"1\"} 1\n\
                    sipark_xdp_packets_total{action=\"drop\",reason=\"banned\"} 7\n\
                    sipark_xdp_packets_total{action=\"pass\",reason=\"pass\"} 9\n";
        let s = Snapshot::parse(text);
        assert_eq!(s, Snapshot { failures: 7, bans: 1, datagrams_in: 10, banned_drops: 0, xdp_banned: 7 });
        let later = Snapshot { failures: 9, ..s };
        assert_eq!(later.since(&s).failures, 2);
    }

    #[test]
    fn nonce_and_headers_are_read_from_a_challenge() {
        let m = "SIP/2.0 401 Unauthorized\r\nCall-ID: a@b\r\nCSeq: 7 REGISTER\r\n\
                 WWW-Authenticate: Digest realm=\"x\", nonce=\"abc\", algorithm=SHA-256\r\n\r\n";
        assert_eq!(nonce_in(m), Some("abc"));
        assert_eq!(header(m, "call-id"), Some("a@b"));
        assert_eq!(header(m, "CSeq"), Some("7 REGISTER"));
    }
}
