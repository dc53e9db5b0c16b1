//! Digest authentication and trusted peers end to end (docs/decisions/0013-digest-auth.md), the
//! real binary over UDP on loopback. The sans-IO side of the same rules is proven on a virtual
//! clock in tests/sim/auth.rs.
//!
//! SIPp 3.6 answers a 401 itself (`[authentication]`), but knows only MD5 and reads only the
//! first challenge, and sipark offers SHA-256 first: it stops with "authentication must use MD5
//! or AKAv1-MD5". So a SIPp phone registers through [`Md5Only`], a relay that drops the SHA-256
//! challenge on the way back, which makes SIPp the MD5-only phone that RFC 8760 expects to pick
//! the second challenge. SIPp 3.6 also writes the digest `uri` as `sip:<the address it sends
//! to>` unless started with `-auth_uri`, so it cannot answer a challenge to a park or retrieve
//! INVITE (whose digest `uri` must be the Request-URI, `sip:*68103@acme.example`): those are
//! answered by Rust UAs, with a digest computed here from RFC 7616 (and checked against
//! `sipark::proto::auth::response`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sha2::Digest as _;
use sipark::proto::auth::{Algorithm, DigestInput};

use crate::harness::{Ctx, DOMAIN, Engine, Sipp, SippSpec, Variant, distinct_requests, free_tcp, metric_sum, scrape};
use crate::sip::{self, Msg, Request, Udp, sdp, uri_of};
use crate::{
    RustPark, SEC, ack_non_2xx, assert_versions_increase, check_notify, check_parked_call, check_reinvite,
    check_terminated, notifies_of, only_call, parked_spec, retrieve_spec, sipp_phone,
};

/// Credentials of the tenant in every test that has users.
const USERS: &str = r#"users = { "101" = "alice-pw", "103" = "w-pw", "104" = "carol-pw" }"#;

/// Writes a tenants file with the one tenant DOMAIN, its users and `extra` lines; returns its
/// path.
fn tenants_file(ctx: &Ctx, extra: &str) -> String {
    let path = ctx.path("tenants.toml");
    let text = format!("[[tenant]]\ndomain = \"{DOMAIN}\"\n{USERS}\n{extra}\n");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_str().unwrap_or_else(|| panic!("non-UTF-8 path {}", path.display())).to_string()
}

/// The reason phrase of a response.
fn reason(m: &Msg) -> &str {
    m.first_line().splitn(3, ' ').nth(2).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Digest, client side
// ---------------------------------------------------------------------------------------------

/// One `WWW-Authenticate` value, picked apart.
#[derive(Debug)]
struct Challenge {
    algorithm: String,
    realm: String,
    nonce: String,
    qop: String,
    stale: bool,
}

/// The `name=value` parameters of a `Digest ...` header value, quotes removed (the values sipark
/// writes hold no commas).
fn digest_params(value: &str) -> Vec<(String, String)> {
    let rest = value.strip_prefix("Digest ").unwrap_or_else(|| panic!("not a Digest value: {value}"));
    rest.split(',')
        .filter_map(|p| p.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
        .collect()
}

fn challenges(resp: &Msg) -> Vec<Challenge> {
    resp.headers("WWW-Authenticate")
        .into_iter()
        .map(|v| {
            let p = digest_params(v);
            let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
            Challenge {
                algorithm: get("algorithm"),
                realm: get("realm"),
                nonce: get("nonce"),
                qop: get("qop"),
                stale: get("stale").eq_ignore_ascii_case("true"),
            }
        })
        .collect()
}

/// Checks a challenge as ADR 0013 describes it and returns its nonce: 401, two
/// `WWW-Authenticate` values, SHA-256 first and then MD5, one nonce for both, the tenant domain
/// as realm, `qop="auth"`, and `stale=true` on both exactly when `stale`.
fn check_challenge(resp: &Msg, stale: bool, what: &str) -> String {
    assert_eq!(resp.status(), Some(401), "{what}: expected a challenge:\n{}", resp.raw);
    let ch = challenges(resp);
    let algs: Vec<&str> = ch.iter().map(|c| c.algorithm.as_str()).collect();
    assert_eq!(algs, ["SHA-256", "MD5"], "{what}: two challenges, SHA-256 first:\n{}", resp.raw);
    for c in &ch {
        assert_eq!(c.realm, DOMAIN, "{what}: realm is the tenant domain:\n{}", resp.raw);
        assert_eq!(c.qop, "auth", "{what}: qop=\"auth\":\n{}", resp.raw);
        assert_eq!(c.stale, stale, "{what}: stale=true only for an expired nonce:\n{}", resp.raw);
        assert!(
            c.nonce.len() == 64 && c.nonce.bytes().all(|b| b.is_ascii_hexdigit()),
            "{what}: nonce of 64 hex digits (issue time, salt, tag):\n{}",
            resp.raw
        );
    }
    assert_eq!(ch[0].nonce, ch[1].nonce, "{what}: one nonce for both challenges:\n{}", resp.raw);
    assert!(resp.tag_of("To").is_some(), "{what}: a 401 needs a To tag:\n{}", resp.raw);
    ch[0].nonce.clone()
}

fn hex_hash(alg: Algorithm, text: &str) -> String {
    let bytes = match alg {
        Algorithm::Md5 => md5::Md5::digest(text.as_bytes()).to_vec(),
        Algorithm::Sha256 => sha2::Sha256::digest(text.as_bytes()).to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An `Authorization` header line answering `nonce` for `method` `uri` as `user` with
/// `password` (RFC 7616 §3.4.1, qop=auth), computed here; the same `response` must come out of
/// sipark's client helper.
fn credentials(alg: Algorithm, user: &str, password: &str, method: &str, uri: &str, nonce: &str) -> String {
    credentials_nc(alg, user, password, method, uri, nonce, 1)
}

/// [`credentials`] with nonce count `nc` (a nonce may be used again with a higher count).
fn credentials_nc(alg: Algorithm, user: &str, password: &str, method: &str, uri: &str, nonce: &str, nc: u32) -> String {
    let (nc, cnonce, qop) = (format!("{nc:08x}"), format!("e2e{:08x}", sip::unique()), "auth");
    let nc = nc.as_str();
    let ha1 = hex_hash(alg, &format!("{user}:{DOMAIN}:{password}"));
    let ha2 = hex_hash(alg, &format!("{method}:{uri}"));
    let response = hex_hash(alg, &format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"));
    let input = DigestInput {
        username: user.as_bytes(),
        realm: DOMAIN.as_bytes(),
        password: password.as_bytes(),
        method: method.as_bytes(),
        uri: uri.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: nc.as_bytes(),
        cnonce: cnonce.as_bytes(),
        qop: qop.as_bytes(),
    };
    assert_eq!(
        sipark::proto::auth::response(alg, &input),
        response,
        "sipark's client helper disagrees with RFC 7616 for {} {user} {method} {uri}",
        alg.token()
    );
    // Another parameter order than sipark's own helper writes.
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={}, cnonce=\"{cnonce}\", qop={qop}, nc={nc}",
        alg.token()
    )
}

/// `req` again with CSeq + 1, a fresh branch and `auth` as its only credentials (a client
/// answering a challenge in the same Call-ID).
fn retry(req: &Request, auth: &str) -> Request {
    let mut r = req.clone();
    r.cseq += 1;
    r.branch = format!("z9hG4bKau{}x{}", sip::unique(), std::process::id());
    r.extra.retain(|h| !h.starts_with("Authorization:"));
    r.extra.push(auth.to_string());
    r
}

/// `req` again without credentials, sent: the fresh nonce of the challenge it gets, and the
/// request (to retry with credentials). A nonce answers one wrong response
/// (docs/decisions/0019), so each guess needs one of these.
fn fresh_nonce(me: &Udp, engine: SocketAddr, req: &Request, what: &str) -> (Request, String) {
    let mut r = retry(req, "");
    r.extra.retain(|h| !h.is_empty());
    let nonce = check_challenge(&attempt(me, engine, &r), false, what);
    (r, nonce)
}

/// Sends `req` and returns its final response; a non-2xx final response to an INVITE is ACKed.
fn attempt(me: &Udp, engine: SocketAddr, req: &Request) -> Msg {
    let resp = me.transact(engine, req);
    if req.method == "INVITE" && resp.status().is_some_and(|s| s >= 300) {
        me.send(engine, &ack_non_2xx(req, &resp));
    }
    resp
}

/// A park INVITE for `*68<ext>` from `caller`, parked by 102, with an SDP offer.
fn park_invite(me: &Udp, ext: &str, caller: &str) -> Request {
    let uri = format!("sip:*68{ext}@{DOMAIN}");
    Request::new("INVITE", &uri, me.addr, caller, &format!("<{uri}>"))
        .header(&format!("Contact: <sip:{caller}@{}>", me.addr))
        .header(&format!("Referred-By: <sip:102@{DOMAIN}>"))
        .sdp(&sdp(me.addr, "e2e"))
}

/// A retrieve INVITE for `ruri` from `caller` with an offer parked.xml accepts.
fn retrieve_invite(me: &Udp, ruri: &str, caller: &str) -> Request {
    Request::new("INVITE", ruri, me.addr, caller, &format!("<{ruri}>"))
        .header(&format!("Contact: <sip:{caller}@{}>", me.addr))
        .sdp(&sdp(me.addr, "sipark-e2e-retriever"))
}

/// ACKs the 2xx `ok` to `req`; returns the dialog.
fn confirm(me: &Udp, engine: SocketAddr, req: &Request, ok: &Msg) -> RustPark {
    let dialog = RustPark {
        remote: uri_of(ok.header("Contact").unwrap_or_default()).to_string(),
        to: ok.header("To").unwrap_or_default().to_string(),
        invite: req.clone(),
    };
    me.send(engine, &dialog.in_dialog("ACK", req.cseq).render());
    dialog
}

/// Hangs up a dialog from [`confirm`]; panics unless the BYE gets 200.
fn hang_up(me: &Udp, engine: SocketAddr, dialog: &RustPark) {
    let resp = me.transact(engine, &dialog.in_dialog("BYE", dialog.invite.cseq + 1));
    assert_eq!(resp.status(), Some(200), "BYE:\n{}", resp.raw);
}

// ---------------------------------------------------------------------------------------------
// The MD5-only relay in front of a SIPp phone
// ---------------------------------------------------------------------------------------------

/// Most datagrams an [`Md5Only`] keeps for the test.
const RELAY_LOG_MAX: usize = 256;

/// A UDP relay between one SIPp (`sipp`) and sipark, on the SIPp's own IP: what the SIPp sends
/// to the relay goes on to sipark from the relay's socket, and what sipark sends to the relay
/// goes back to the SIPp, less the `WWW-Authenticate` lines that offer SHA-256. Every datagram
/// is kept (the first [`RELAY_LOG_MAX`]) as it was before any change.
struct Md5Only {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<(bool, Msg)>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Md5Only {
    fn start(udp: Udp, sipp: SocketAddr, engine: SocketAddr) -> Md5Only {
        let addr = udp.addr;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (Arc::clone(&log), Arc::clone(&stop));
        let handle = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Some((m, from)) = udp.recv_until(Instant::now() + Duration::from_millis(50)) else { continue };
                let from_engine = from == engine;
                if from_engine {
                    let kept: Vec<&str> = m
                        .raw
                        .split("\r\n")
                        .filter(|l| {
                            let lower = l.to_ascii_lowercase();
                            !(lower.starts_with("www-authenticate:") && lower.contains("algorithm=sha-256"))
                        })
                        .collect();
                    // Errors (SIPp gone) only mean the datagram is lost, as on a network.
                    let _ = udp.sock.send_to(kept.join("\r\n").as_bytes(), sipp);
                } else if from == sipp {
                    let _ = udp.sock.send_to(m.raw.as_bytes(), engine);
                }
                let mut log = log2.lock().unwrap_or_else(|e| e.into_inner());
                if log.len() < RELAY_LOG_MAX {
                    log.push((from_engine, m));
                }
            }
        });
        Md5Only { addr, log, stop, handle: Some(handle) }
    }

    /// The datagrams relayed so far: (from sipark?, message as received).
    fn log(&self) -> Vec<(bool, Msg)> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Md5Only {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A SIPp phone for `ext` on 127.0.NET.host behind an [`Md5Only`] relay: au_register.xml
/// registers it (401, a wrong password 403, the right one 200), then phone.xml answers
/// `notifies` NOTIFYs, which reach it through the relay (sipark sends to the flow that
/// registered). Returns the phone, its address, the relay and what the register run received.
fn sipp_phone_md5(
    ctx: &Ctx,
    engine: &Engine,
    host: u8,
    ext: &str,
    password: &str,
    notifies: u32,
) -> (Sipp, SocketAddr, Md5Only, Vec<Msg>) {
    // The relay's port is taken before SIPp's is picked, so they cannot be the same.
    let relay_udp = ctx.udp(host);
    let addr = ctx.addr(host);
    let relay = Md5Only::start(relay_udp, addr, engine.addr);
    let key = |pw: &str| format!("[authentication username={ext} password={pw}]");
    let inf = format!("SEQUENTIAL\n{ext};{DOMAIN};{};{};\n", key(&format!("not-{password}")), key(password));
    let reg = Sipp::spawn(
        ctx,
        &format!("register{ext}"),
        SippSpec::uac("au_register.xml", addr, relay.addr).inf(&inf).timeout_s(15),
    )
    .wait();
    reg.assert_ok(1);
    let phone =
        Sipp::spawn(ctx, &format!("phone{ext}"), SippSpec::uas("phone.xml", addr).calls(notifies).timeout_s(60));
    (phone, addr, relay, reg.received())
}

/// Panics if the SIPp `phone` received any NOTIFY.
fn assert_no_notify(phone: &Sipp, after: &str) {
    let got = distinct_requests(phone.received(), "NOTIFY");
    assert!(
        got.is_empty(),
        "no NOTIFY may follow {after}; the phone got:\n{}",
        got.iter().map(|m| m.raw.as_str()).collect::<Vec<_>>().join("\n---\n")
    );
}

// ---------------------------------------------------------------------------------------------
// 1. A SIPp phone registers with digest (SIPp's MD5), and gets the NOTIFYs of a park that a
//    Rust UA authenticated with SHA-256
// ---------------------------------------------------------------------------------------------

pub(crate) fn auth_sipp_phone_registers_with_md5(v: Variant) {
    let ctx = Ctx::new("auth_sipp_phone_registers_with_md5", 95, v);
    let tenants = tenants_file(&ctx, "");
    let mut engine = Engine::start(&ctx, &["--no-pin", "--tenants", &tenants]);
    let (mut phone, phone_addr, relay, got) = sipp_phone_md5(&ctx, &engine, 2, "103", "w-pw", 2);

    // sipark challenged with SHA-256 then MD5; SIPp saw only the MD5 one and answered it.
    let log = relay.log();
    let from_sipark = |cseq: &str| {
        log.iter()
            .find(|(e, m)| *e && m.status().is_some() && m.header("CSeq") == Some(cseq))
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("no response to {cseq} went through the relay"))
    };
    let from_sipp = |cseq: &str| {
        log.iter()
            .find(|(e, m)| !*e && m.method() == Some("REGISTER") && m.header("CSeq") == Some(cseq))
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("SIPp sent no {cseq}"))
    };
    let nonce = check_challenge(&from_sipark("1 REGISTER"), false, "REGISTER without credentials");
    let seen = got.iter().find(|m| m.status() == Some(401)).expect("SIPp got the 401");
    let seen: Vec<Challenge> = challenges(seen);
    assert!(seen.len() == 1 && seen[0].algorithm == "MD5", "the relay leaves SIPp only the MD5 challenge: {seen:?}");
    // The wrong password spends the nonce: the right one on it is challenged again, unchecked,
    // and then the right one on the fresh nonce registers.
    let fresh = check_challenge(&from_sipark("3 REGISTER"), false, "the right password on a spent nonce");
    assert_ne!(fresh, nonce, "a fresh nonce");
    let steps = [
        ("2 REGISTER", &nonce, 403, "Forbidden"),
        ("3 REGISTER", &nonce, 401, "Unauthorized"),
        ("4 REGISTER", &fresh, 200, "OK"),
    ];
    for (cseq, nonce, status, why) in steps {
        let req = from_sipp(cseq);
        let auth = req.header("Authorization").unwrap_or_else(|| panic!("{cseq} without credentials:\n{}", req.raw));
        let p = digest_params(auth);
        let has = |k: &str, v: &str| p.iter().any(|(n, x)| n == k && x.eq_ignore_ascii_case(v));
        assert!(
            has("algorithm", "MD5")
                && has("username", "103")
                && has("realm", DOMAIN)
                && has("nonce", nonce)
                && has("uri", &format!("sip:{}", relay.addr)),
            "SIPp's MD5 answer to sipark's challenge:\n{}",
            req.raw
        );
        let resp = from_sipark(cseq);
        assert_eq!((resp.status(), reason(&resp)), (Some(status), why), "{cseq}:\n{}", resp.raw);
    }

    // A Rust UA (untrusted, like everyone here) parks 101 at 103 with SHA-256.
    let leg = ctx.udp(3);
    let req = park_invite(&leg, "103", "101");
    let nonce = check_challenge(&attempt(&leg, engine.addr, &req), false, "park INVITE");
    let req = retry(&req, &credentials(Algorithm::Sha256, "101", "alice-pw", "INVITE", &req.uri, &nonce));
    let ok = attempt(&leg, engine.addr, &req);
    assert_eq!(ok.status(), Some(200), "park with SHA-256 credentials:\n{}", ok.raw);
    assert!(ok.body().contains("a=inactive"), "park answer must be a=inactive:\n{}", ok.raw);
    let park = confirm(&leg, engine.addr, &req, &ok);
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    hang_up(&leg, engine.addr, &park);

    let phone = phone.wait();
    phone.assert_ok(2);
    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 2, "phone must get exactly 2 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c = only_call(&notes[0].1, "parked", &notes[0].0);
    check_parked_call(c, &notes[0].0, "101", "102", "103");
    check_terminated(&notes[1].1, &notes[1].0, &c.id, "hangup");
    assert_versions_increase(&notes);
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 2. What sipark answers to each kind of credentials (REGISTER from a Rust UA), and the
//    counters it exports for them
// ---------------------------------------------------------------------------------------------

pub(crate) fn auth_digest_answers(v: Variant) {
    let ctx = Ctx::new("auth_digest_answers", 96, v);
    let tenants = tenants_file(&ctx, "");
    let metrics = free_tcp(&ctx, 1);
    let metrics_s = metrics.to_string();
    // Nonces live 3 s, so that an expired one can be shown.
    let mut engine =
        Engine::start(&ctx, &["--no-pin", "--tenants", &tenants, "--nonce-validity", "3", "--metrics", &metrics_s]);
    let me = ctx.udp(2);
    let mine = format!("sip:101@{}", me.addr);
    let listed = |m: &Msg| m.headers("Contact").iter().any(|c| uri_of(c) == mine);
    let (mut challenged, mut refused) = (0u64, 0u64);

    let mut req = sip::register(me.addr, "101", 300);
    let first = attempt(&me, engine.addr, &req);
    let nonce = check_challenge(&first, false, "REGISTER without credentials");
    challenged += 1;
    assert!(!listed(&first), "nothing registered by a challenged REGISTER:\n{}", first.raw);

    // The right password, with either algorithm and the one nonce, the count rising: 200.
    for (nc, alg) in [(1, Algorithm::Sha256), (2, Algorithm::Md5)] {
        req = retry(&req, &credentials_nc(alg, "101", "alice-pw", "REGISTER", &req.uri, &nonce, nc));
        let resp = attempt(&me, engine.addr, &req);
        assert_eq!(resp.status(), Some(200), "{}:\n{}", alg.token(), resp.raw);
        assert!(listed(&resp), "{}: binding listed:\n{}", alg.token(), resp.raw);
    }
    // The same count again (a replay): a fresh challenge, unchecked.
    req = retry(&req, &credentials_nc(Algorithm::Md5, "101", "alice-pw", "REGISTER", &req.uri, &nonce, 2));
    check_challenge(&attempt(&me, engine.addr, &req), false, "a replayed nonce count");
    challenged += 1;

    // Good credentials of another user, a wrong password, an unknown user: 403 (each on a fresh
    // nonce).
    for (user, pw, why) in [
        ("104", "carol-pw", "Authenticated As Another User"),
        ("101", "not-alice", "Forbidden"),
        ("999", "alice-pw", "Forbidden"),
    ] {
        let (r, nonce) = fresh_nonce(&me, engine.addr, &req, "a fresh nonce");
        challenged += 1;
        req = retry(&r, &credentials(Algorithm::Sha256, user, pw, "REGISTER", &r.uri, &nonce));
        let resp = attempt(&me, engine.addr, &req);
        assert_eq!((resp.status(), reason(&resp)), (Some(403), why), "{user}/{pw}:\n{}", resp.raw);
        assert!(resp.headers("WWW-Authenticate").is_empty(), "a 403 challenges nothing:\n{}", resp.raw);
        refused += 1;
    }

    // Unreadable credentials, and credentials for another Request-URI: 400.
    req = retry(&req, "Authorization: Digest username=\"101\", realm=");
    let resp = attempt(&me, engine.addr, &req);
    assert_eq!(resp.status(), Some(400), "unreadable credentials:\n{}", resp.raw);
    let other = credentials(Algorithm::Md5, "101", "alice-pw", "REGISTER", "sip:beta.example", &nonce);
    req = retry(&req, &other);
    let resp = attempt(&me, engine.addr, &req);
    assert_eq!(resp.status(), Some(400), "digest uri is not the Request-URI:\n{}", resp.raw);

    // A nonce sipark never issued: a fresh challenge, not stale.
    let forged = "00000000690f5a2000112233445566778899aabbccddeeff00112233445566778899aabb";
    req = retry(&req, &credentials(Algorithm::Sha256, "101", "alice-pw", "REGISTER", &req.uri, forged));
    let resp = attempt(&me, engine.addr, &req);
    let fresh = check_challenge(&resp, false, "unknown nonce");
    assert_ne!(fresh, forged);
    challenged += 1;

    // The first nonce, once expired, with the right password: stale=true and a fresh nonce, which
    // works.
    thread::sleep(Duration::from_millis(4500));
    req = retry(&req, &credentials(Algorithm::Md5, "101", "alice-pw", "REGISTER", &req.uri, &nonce));
    let resp = attempt(&me, engine.addr, &req);
    let fresh = check_challenge(&resp, true, "expired nonce");
    assert_ne!(fresh, nonce, "a stale challenge carries a new nonce:\n{}", resp.raw);
    challenged += 1;
    req = retry(&req, &credentials(Algorithm::Md5, "101", "alice-pw", "REGISTER", &req.uri, &fresh));
    let resp = attempt(&me, engine.addr, &req);
    assert_eq!(resp.status(), Some(200), "the fresh nonce:\n{}", resp.raw);
    assert!(listed(&resp), "binding listed:\n{}", resp.raw);

    let text = scrape(metrics);
    assert_eq!(metric_sum(&text, "sipark_auth_challenges_total"), challenged, "401s sent:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_auth_failures_total"), refused, "403s for credentials:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_registrations_total"), 3, "REGISTERs accepted:\n{text}");
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 3. A wrong password never parks or retrieves anything; the right one does
// ---------------------------------------------------------------------------------------------

pub(crate) fn auth_wrong_password_never_parks_or_retrieves(v: Variant) {
    let ctx = Ctx::new("auth_wrong_password_never_parks_or_retrieves", 97, v);
    // The parked leg's address (127.0.NET.5) is trusted: it parks without a challenge.
    let tenants = tenants_file(&ctx, &format!("trust = [\"{}/32\"]", ctx.ip(5)));
    let metrics = free_tcp(&ctx, 1);
    let metrics_s = metrics.to_string();
    let mut engine = Engine::start(&ctx, &["--no-pin", "--tenants", &tenants, "--metrics", &metrics_s]);
    let (mut phone, phone_addr, _relay, _) = sipp_phone_md5(&ctx, &engine, 2, "103", "w-pw", 2);
    let ruri = format!("sip:*88103@{DOMAIN}");

    // A park with a wrong password, and with another user's good credentials: 403, nothing
    // parked, nothing announced.
    let parker = ctx.udp(3);
    let mut req = park_invite(&parker, "103", "101");
    for (user, pw, why) in [("101", "not-alice", "Forbidden"), ("104", "carol-pw", "Authenticated As Another User")] {
        let (r, nonce) = fresh_nonce(&parker, engine.addr, &req, "park INVITE");
        req = retry(&r, &credentials(Algorithm::Sha256, user, pw, "INVITE", &r.uri, &nonce));
        let resp = attempt(&parker, engine.addr, &req);
        assert_eq!((resp.status(), reason(&resp)), (Some(403), why), "park as {user}/{pw}:\n{}", resp.raw);
    }
    // The right credentials of a retriever find nothing to retrieve.
    let retriever = ctx.udp(4);
    let mut rreq = retrieve_invite(&retriever, &ruri, "104");
    let rnonce = check_challenge(&attempt(&retriever, engine.addr, &rreq), false, "retrieve INVITE");
    rreq = retry(&rreq, &credentials(Algorithm::Md5, "104", "carol-pw", "INVITE", &ruri, &rnonce));
    let resp = attempt(&retriever, engine.addr, &rreq);
    assert_eq!(resp.status(), Some(404), "retrieve after the refused parks:\n{}", resp.raw);
    thread::sleep(Duration::from_millis(500));
    assert_no_notify(&phone, "the refused parks");

    // A call parked from the trusted address (no challenge).
    let parked = Sipp::spawn(&ctx, "parked", parked_spec(&ctx, &engine, 5, "105", "102", "103"));
    phone.wait_requests("NOTIFY", 1, 10 * SEC);

    // A wrong password, and another user's good credentials, do not retrieve it: 403, and the
    // parked leg is never re-INVITEd.
    let mut rreq = retrieve_invite(&retriever, &ruri, "104");
    for (user, pw, why) in [("104", "not-carol", "Forbidden"), ("101", "alice-pw", "Authenticated As Another User")] {
        let (r, rnonce) = fresh_nonce(&retriever, engine.addr, &rreq, "retrieve INVITE");
        rreq = retry(&r, &credentials(Algorithm::Sha256, user, pw, "INVITE", &ruri, &rnonce));
        let resp = attempt(&retriever, engine.addr, &rreq);
        assert_eq!((resp.status(), reason(&resp)), (Some(403), why), "retrieve as {user}/{pw}:\n{}", resp.raw);
    }
    thread::sleep(Duration::from_millis(500));
    let invites: Vec<Msg> = parked.received().into_iter().filter(|m| m.method() == Some("INVITE")).collect();
    assert!(
        invites.is_empty(),
        "a refused retrieve must not touch the parked leg, it got:\n{}",
        invites.iter().map(|m| m.raw.as_str()).collect::<Vec<_>>().join("\n---\n")
    );
    assert_eq!(distinct_requests(phone.received(), "NOTIFY").len(), 1, "still just the park's NOTIFY");

    // The right password retrieves it (on a fresh nonce: the last one answered a wrong response).
    let (r, rnonce) = fresh_nonce(&retriever, engine.addr, &rreq, "retrieve INVITE");
    rreq = retry(&r, &credentials(Algorithm::Sha256, "104", "carol-pw", "INVITE", &ruri, &rnonce));
    let ok = attempt(&retriever, engine.addr, &rreq);
    assert_eq!(ok.status(), Some(200), "retrieve with the right password:\n{}", ok.raw);
    let media = format!("c=IN IP4 {}", ctx.ip(5));
    assert!(
        ok.body().contains("s=sipark-e2e-parked") && ok.body().lines().any(|l| l.trim_end() == media),
        "the retriever gets the parked leg's SDP:\n{}",
        ok.raw
    );
    let call = confirm(&retriever, engine.addr, &rreq, &ok);
    hang_up(&retriever, engine.addr, &call);
    let parked = parked.wait();
    parked.assert_ok(1);
    let got = parked.received();
    check_reinvite(&got, "105", "103", ctx.ip(5), engine.addr);
    assert!(got.iter().any(|m| m.method() == Some("BYE")), "the parked leg gets BYE when the retriever hangs up");

    let phone = phone.wait();
    phone.assert_ok(2);
    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 2, "phone must get exactly 2 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c = only_call(&notes[0].1, "parked", &notes[0].0);
    check_parked_call(c, &notes[0].0, "105", "102", "103");
    assert_eq!(notes[0].1.calls.len(), 1, "only the trusted park is listed:\n{}", notes[0].0.raw);
    check_terminated(&notes[1].1, &notes[1].0, &c.id, "retrieved");
    assert_versions_increase(&notes);

    let text = scrape(metrics);
    assert_eq!(metric_sum(&text, "sipark_parks_total"), 1, "calls parked:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_retrieves_total"), 1, "calls retrieved:\n{text}");
    // Challenged: the phone's REGISTER twice (the second time for the right password on the
    // nonce of its wrong one), each park and retrieve attempt once (two parks, the retrieve of
    // nothing, three retrieves); refused: SIPp's wrong password, two parks and two retrieves.
    assert_eq!(metric_sum(&text, "sipark_auth_challenges_total"), 8, "401s sent:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_auth_failures_total"), 5, "403s for credentials:\n{text}");
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 4. Trusted peers and no credentials: a source outside the list is refused
// ---------------------------------------------------------------------------------------------

pub(crate) fn auth_acl_miss_is_refused(v: Variant) {
    let ctx = Ctx::new("auth_acl_miss_is_refused", 98, v);
    // No tenants file: the default tenant has no users, and only 127.0.NET.2 is trusted.
    let trust = format!("{}/32", ctx.ip(2));
    let mut engine = Engine::start(&ctx, &["--no-pin", "--trust", &trust]);
    // From .2: REGISTER 200 (register.xml checks it) and a phone for the NOTIFYs.
    let (mut phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);
    let ruri = format!("sip:*88103@{DOMAIN}");

    // From .3: REGISTER, park and retrieve are refused.
    let stranger = ctx.udp(3);
    let resp = attempt(&stranger, engine.addr, &sip::register(stranger.addr, "103", 300));
    assert_eq!((resp.status(), reason(&resp)), (Some(403), "Source Not Trusted"), "REGISTER:\n{}", resp.raw);
    assert!(resp.headers("WWW-Authenticate").is_empty(), "no users, no challenge:\n{}", resp.raw);
    let spec = SippSpec::uac("cc_refused.xml", ctx.addr(3), engine.addr)
        .key("ruri", &format!("sip:*68103@{DOMAIN}"))
        .key("caller", "101")
        .key("from_domain", DOMAIN)
        .key("hdr", &format!("Referred-By: <sip:102@{DOMAIN}>"))
        .key("expect", "403");
    let refused = Sipp::spawn(&ctx, "refused_park", spec).wait();
    refused.assert_ok(1);
    let got = refused.received();
    let fin = got.iter().find(|m| m.status().is_some_and(|s| s >= 200)).expect("a final response to the park");
    assert_eq!(reason(fin), "Source Not Trusted", "park from outside the trusted peers:\n{}", fin.raw);
    thread::sleep(Duration::from_millis(300));
    assert_no_notify(&phone, "the refused park");

    // From .2, a park goes through; from .3 its retrieve is refused; from .2 it is retrieved.
    let parked = Sipp::spawn(&ctx, "parked", parked_spec(&ctx, &engine, 2, "101", "102", "103"));
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    let resp = attempt(&stranger, engine.addr, &retrieve_invite(&stranger, &ruri, "104"));
    assert_eq!((resp.status(), reason(&resp)), (Some(403), "Source Not Trusted"), "retrieve:\n{}", resp.raw);
    let retriever = Sipp::spawn(&ctx, "retriever", retrieve_spec(&ctx, &engine, 2, &ruri, "104").key("hangup", "1"));
    retriever.wait().assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);
    check_reinvite(&parked.received(), "101", "103", ctx.ip(2), engine.addr);

    let phone = phone.wait();
    phone.assert_ok(2);
    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 2, "phone must get exactly 2 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c = only_call(&notes[0].1, "parked", &notes[0].0);
    check_parked_call(c, &notes[0].0, "101", "102", "103");
    check_terminated(&notes[1].1, &notes[1].0, &c.id, "retrieved");
    // The refused REGISTER left no binding: nothing was sent to .3 but responses.
    while let Some((m, _)) = stranger.recv_until(Instant::now() + Duration::from_millis(200)) {
        assert!(m.status().is_some(), "the refused REGISTER must not bind .3, which got:\n{}", m.raw);
    }
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 5. A password guesser is banned: dropped unread, logged once, counted; another user from
//    another address still registers; the ban ends (docs/decisions/0019-password-guessing.md)
// ---------------------------------------------------------------------------------------------

pub(crate) fn auth_guesser_is_banned(v: Variant) {
    let ctx = Ctx::new("auth_guesser_is_banned", 94, v);
    let tenants = tenants_file(&ctx, "");
    let metrics = free_tcp(&ctx, 1);
    let metrics_s = metrics.to_string();
    // The default budget (5 failures in 60 s) and a 3-second ban, so that its end can be shown.
    let mut engine =
        Engine::start(&ctx, &["--no-pin", "--tenants", &tenants, "--metrics", &metrics_s, "--auth-ban", "3"]);
    let guesser = ctx.udp(3);
    let mut req = sip::register(guesser.addr, "101", 300);

    // Five guesses, each on a fresh nonce, each refused; the fifth bans the source.
    for i in 0..5 {
        let (r, nonce) = fresh_nonce(&guesser, engine.addr, &req, "a guess's challenge");
        req = retry(&r, &credentials(Algorithm::Md5, "101", &format!("{i:06}"), "REGISTER", &r.uri, &nonce));
        let resp = attempt(&guesser, engine.addr, &req);
        assert_eq!((resp.status(), reason(&resp)), (Some(403), "Forbidden"), "guess {i}:\n{}", resp.raw);
    }
    let banned_at = Instant::now();
    // Banned: nothing is answered, not even a challenge, nor the right password.
    let mut silent = retry(&req, "");
    silent.extra.retain(|h| !h.is_empty());
    guesser.send(engine.addr, &silent.render());
    let right =
        retry(&req, &credentials(Algorithm::Md5, "101", "alice-pw", "REGISTER", &req.uri, "0".repeat(64).as_str()));
    guesser.send(engine.addr, &right.render());
    let got = guesser.recv_until(Instant::now() + Duration::from_millis(800));
    assert!(got.is_none(), "a banned source must get no answer, got:\n{}", got.map(|(m, _)| m.raw).unwrap_or_default());

    // Carol, from another address, registers as usual.
    let carol = ctx.udp(4);
    let creq = sip::register(carol.addr, "104", 300);
    let (r, nonce) = fresh_nonce(&carol, engine.addr, &creq, "Carol's challenge");
    let creq = retry(&r, &credentials(Algorithm::Sha256, "104", "carol-pw", "REGISTER", &r.uri, &nonce));
    let ok = attempt(&carol, engine.addr, &creq);
    assert_eq!(ok.status(), Some(200), "Carol registers while the guesser is banned:\n{}", ok.raw);

    let text = scrape(metrics);
    assert_eq!(metric_sum(&text, "sipark_auth_bans_total"), 1, "one ban:\n{text}");
    // Both workers hold it (the other one was told), however the datagrams were steered.
    assert_eq!(metric_sum(&text, "sipark_auth_bans_shared_total"), 1, "shared with the other worker:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_auth_bans_active"), 2, "in force in both workers:\n{text}");
    assert!(metric_sum(&text, "sipark_auth_banned_drops_total") >= 2, "the guesser's requests dropped:\n{text}");
    assert_eq!(metric_sum(&text, "sipark_auth_failures_total"), 5, "only the five guesses were checked:\n{text}");
    let log = engine.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("source banned")).collect();
    assert_eq!(lines.len(), 1, "one log line per ban:\n{log}");
    assert!(lines[0].contains(&ctx.ip(3).to_string()) && lines[0].contains("WARN"), "{}", lines[0]);

    // Three seconds after the ban, the source is answered again.
    thread::sleep(Duration::from_secs(3).saturating_sub(banned_at.elapsed()) + Duration::from_millis(300));
    let (_, _) = fresh_nonce(&guesser, engine.addr, &req, "after the ban");
    let text = scrape(metrics);
    assert_eq!(metric_sum(&text, "sipark_auth_bans_active"), 0, "the ban ended:\n{text}");
    engine.terminate_cleanly(12 * SEC);
}

/// A reload whose tenants file trusts a banned source lifts its ban at once, in every worker
/// and in the XDP map (ADR 0019): an operator who trusts a peer after it was banned does not
/// wait the ban out.
pub(crate) fn auth_reload_trusting_a_banned_source_lifts_its_ban(v: Variant) {
    let ctx = Ctx::new("auth_reload_trusting_a_banned_source_lifts_its_ban", 99, v);
    let tenants = tenants_file(&ctx, "");
    let metrics = free_tcp(&ctx, 1);
    let metrics_s = metrics.to_string();
    let mut engine = Engine::start(&ctx, &["--no-pin", "--tenants", &tenants, "--metrics", &metrics_s]);
    let guesser = ctx.udp(3);
    let mut req = sip::register(guesser.addr, "101", 300);
    for i in 0..5 {
        let (r, nonce) = fresh_nonce(&guesser, engine.addr, &req, "a guess's challenge");
        req = retry(&r, &credentials(Algorithm::Md5, "101", &format!("{i:06}"), "REGISTER", &r.uri, &nonce));
        let resp = attempt(&guesser, engine.addr, &req);
        assert_eq!(resp.status(), Some(403), "guess {i}:\n{}", resp.raw);
    }
    let mut probe = retry(&req, "");
    probe.extra.retain(|h| !h.is_empty());
    guesser.send(engine.addr, &probe.render());
    let got = guesser.recv_until(Instant::now() + Duration::from_millis(800));
    assert!(got.is_none(), "banned: no answer, got:\n{}", got.map(|(m, _)| m.raw).unwrap_or_default());

    // The same file, now trusting the guesser's address; the ban's 60 s are far from over.
    tenants_file(&ctx, &format!("trust = [\"{}/32\"]", ctx.ip(3)));
    let line = crate::reload::reload(&engine, crate::reload::pid_of(&engine), "bans lifted");
    assert!(line.contains("sources=1"), "{line}");
    guesser.send(engine.addr, &probe.render());
    let got = guesser.recv_until(Instant::now() + 2 * SEC);
    let (answer, _) =
        got.unwrap_or_else(|| panic!("a trusted source is answered after the reload; log:\n{}", engine.log()));
    assert!(answer.status().is_some(), "{}", answer.raw);
    // Every worker applies the reload at its next turn (it was woken for it).
    let deadline = Instant::now() + 2 * SEC;
    loop {
        let text = scrape(metrics);
        if metric_sum(&text, "sipark_auth_bans_active") == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the ban is still in force in a worker 2 s after the reload:\n{text}");
        thread::sleep(Duration::from_millis(50));
    }
    engine.terminate_cleanly(12 * SEC);
}
