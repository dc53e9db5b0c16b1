//! Online password guessing (docs/decisions/0019-password-guessing.md) on
//! the virtual clock: a nonce answers one wrong response and each nonce
//! count once; failures count against the source's budget (a ban, which
//! doubles on repeat and ends) and the user's (a lock, which spares the
//! user's own devices); trusted peers are never banned; park, retrieve and
//! Replaces INVITEs count like REGISTERs; a ban reaches every shard.

use std::time::Duration;

use sipark::proto::auth::Algorithm;
use sipark::proto::config::Config;
use sipark::proto::route::shard_of;

use crate::auth::{config, creds, creds_nc, invite, nonce_of};
use crate::fixtures::{ACME, BETA};
use crate::harness::{Sim, ms, secs};
use crate::wire::Msg;

const REG_URI: &str = "sip:acme.example";

/// Sends a REGISTER of `phone`'s contact with `extra` headers; its final
/// response, or `None` when nothing answered (Timer F).
fn try_register(sim: &mut Sim, phone: usize, extra: &[&str]) -> Option<Msg> {
    let now = sim.now;
    let contact = vec![format!("<{}>", sim.phones[phone].contact_uri())];
    let e: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let txn = sim.phones[phone].register(now, &contact, &e);
    sim.run_until(secs(40), |s| s.phones[phone].txns[txn].done());
    let t = &sim.phones[phone].txns[txn];
    assert!(t.done(), "phone {phone}: REGISTER neither answered nor timed out\n{}", sim.trace());
    t.final_response().cloned()
}

/// A fresh MD5 nonce for `phone` (a REGISTER without credentials).
fn challenge(sim: &mut Sim, phone: usize) -> String {
    let r = try_register(sim, phone, &[]).unwrap_or_else(|| panic!("phone {phone}: no challenge\n{}", sim.trace()));
    assert_eq!(r.code(), Some(401), "{r:?}");
    nonce_of(&r, "MD5")
}

/// One guess: a fresh challenge, then a REGISTER of `user@domain` with
/// `password`. The final response, or `None` when unanswered.
fn guess(sim: &mut Sim, phone: usize, domain: &str, user: &str, password: &str) -> Option<Msg> {
    let r = try_register(sim, phone, &[])?;
    assert_eq!(r.code(), Some(401), "{r:?}");
    let uri = format!("sip:{domain}");
    let auth = creds(Algorithm::Md5, user, domain, password, "REGISTER", &uri, &nonce_of(&r, "MD5"));
    try_register(sim, phone, &[&auth])
}

fn forbidden(r: Option<Msg>, what: &str) {
    let r = r.unwrap_or_else(|| panic!("{what}: unanswered"));
    assert_eq!((r.code(), r.reason()), (Some(403), "Forbidden".to_owned()), "{what}: {r:?}");
}

/// Adds untrusted phones until one gets an address outside 127.0.0.3-.6
/// (acme's trusted peers); returns it.
fn untrusted(sim: &mut Sim, user: &str, domain: &str) -> usize {
    loop {
        let p = sim.add_phone(user, domain, None);
        if !(1..=4).contains(&p) {
            return p;
        }
    }
}

#[test]
fn a_nonce_answers_one_wrong_response() {
    let mut sim = Sim::new(1, config(), 301);
    let p = untrusted(&mut sim, "101", ACME);
    let nonce = challenge(&mut sim, p);
    let wrong = creds(Algorithm::Md5, "101", ACME, "guess-1", "REGISTER", REG_URI, &nonce);
    forbidden(try_register(&mut sim, p, &[&wrong]), "the first wrong response");
    // The same nonce again, with another guess or even the right password:
    // not checked, a fresh challenge (not stale).
    for (pw, nc) in [("guess-2", 2), ("alice-pw", 3)] {
        let auth = creds_nc(Algorithm::Md5, "101", ACME, pw, "REGISTER", REG_URI, &nonce, nc);
        let r = try_register(&mut sim, p, &[&auth]).unwrap_or_else(|| panic!("{pw}: unanswered"));
        assert_eq!(r.code(), Some(401), "{pw} on a spent nonce: {r:?}");
        assert!(r.headers("WWW-Authenticate").iter().all(|h| !h.contains("stale")), "{r:?}");
        assert_ne!(nonce_of(&r, "MD5"), nonce, "a new nonce");
    }
    assert_eq!(sim.stat(|s| s.auth_failures.get()), 1, "one guess was checked");
    assert_eq!(sim.stat(|s| s.auth_nonce_reuses.get()), 2);
    // Every challenge has a nonce of its own, even within one second.
    let (a, b) = (challenge(&mut sim, p), challenge(&mut sim, p));
    assert_ne!(a, b);
    let right = creds(Algorithm::Md5, "101", ACME, "alice-pw", "REGISTER", REG_URI, &a);
    let r = try_register(&mut sim, p, &[&right]).unwrap_or_else(|| panic!("unanswered"));
    assert_eq!(r.code(), Some(200), "the right password on a fresh nonce: {r:?}");
    assert!(sim.bans.is_empty());
}

#[test]
fn a_replayed_nonce_count_is_challenged() {
    let mut sim = Sim::new(1, config(), 302);
    let p = untrusted(&mut sim, "101", ACME);
    let eve = untrusted(&mut sim, "101", ACME);
    let nonce = challenge(&mut sim, p);
    let with = |nc| creds_nc(Algorithm::Sha256, "101", ACME, "alice-pw", "REGISTER", REG_URI, &nonce, nc);
    let code = |sim: &mut Sim, phone: usize, auth: &str| try_register(sim, phone, &[auth]).and_then(|r| r.code());
    assert_eq!(code(&mut sim, p, &with(1)), Some(200));
    assert_eq!(code(&mut sim, p, &with(1)), Some(401), "nc 1 again");
    assert_eq!(code(&mut sim, eve, &with(1)), Some(401), "nc 1 replayed from elsewhere");
    assert_eq!(code(&mut sim, p, &with(2)), Some(200));
    assert_eq!(code(&mut sim, eve, &with(2)), Some(401), "nc 2 replayed");
    assert_eq!(code(&mut sim, p, &with(5)), Some(200), "a count may skip ahead");
    assert_eq!(code(&mut sim, p, &with(4)), Some(401), "but not go back");
    assert_eq!(sim.stat(|s| s.auth_nonce_reuses.get()), 4);
    assert_eq!(sim.stat(|s| s.auth_failures.get()), 0, "a replay is no failure");
    assert_eq!(sim.stat(|s| s.registrations.get()), 3);
}

#[test]
fn five_failures_ban_the_source_until_the_ban_ends() {
    let mut sim = Sim::new(1, config(), 303);
    let guesser = untrusted(&mut sim, "101", ACME);
    let carol = untrusted(&mut sim, "104", ACME);
    for i in 0..5 {
        forbidden(guess(&mut sim, guesser, ACME, "101", &format!("{i:06}")), "a guess within the budget");
    }
    assert_eq!(sim.bans.len(), 1, "one ban");
    let (_, at, ban) = sim.bans[0];
    assert_eq!((ban.duration, ban.offence), (secs(60), 1));
    assert_eq!(ban.source.to_string(), sim.phones[guesser].addr.ip().to_string());
    assert_eq!(sim.stat(|s| s.auth_bans.get()), 1);
    assert_eq!(sim.stat(|s| s.auth_bans_active.get()), 1);

    // Banned: nothing is answered, not even a challenge; each
    // retransmission is dropped unread.
    let sent = sim.server_sent;
    assert!(try_register(&mut sim, guesser, &[]).is_none(), "a banned source gets no answer");
    assert_eq!(sim.server_sent, sent, "nothing was sent to it");
    let drops = sim.stat(|s| s.auth_banned_drops.get());
    assert!(drops >= 5, "the REGISTER and its retransmissions were dropped: {drops}");
    assert_eq!(sim.stat(|s| s.auth_failures.get()), 5, "nothing more was checked");
    // Another user from another address is unaffected.
    let r = guess(&mut sim, carol, ACME, "104", "carol-pw").unwrap_or_else(|| panic!("carol unanswered"));
    assert_eq!(r.code(), Some(200), "{r:?}");

    // The ban ends 60 s after it began.
    assert_eq!(ban.until, sim.start + at + secs(60));
    sim.run_for(ban.until.saturating_duration_since(sim.now) + ms(1));
    assert_eq!(sim.stat(|s| s.auth_bans_active.get()), 0);
    let r = try_register(&mut sim, guesser, &[]).unwrap_or_else(|| panic!("unanswered after the ban"));
    assert_eq!(r.code(), Some(401), "answered again: {r:?}");
}

#[test]
fn a_repeat_offence_doubles_the_ban() {
    let mut sim = Sim::new(1, config(), 304);
    let guesser = untrusted(&mut sim, "101", ACME);
    for round in 0..3u32 {
        for i in 0..5 {
            forbidden(guess(&mut sim, guesser, ACME, "101", &format!("r{round}-{i}")), "within the budget");
        }
        let (_, _, ban) = *sim.bans.last().unwrap_or_else(|| panic!("round {round}: no ban"));
        assert_eq!(sim.bans.len() as u32, round + 1);
        assert_eq!((ban.duration, ban.offence), (secs(60 << round), round + 1), "round {round}");
        // Still banned a second before the end: a REGISTER then is dropped.
        sim.run_for(ban.until.saturating_duration_since(sim.now) - secs(1));
        let drops = sim.stat(|s| s.auth_banned_drops.get());
        let now = sim.now;
        let txn = sim.phones[guesser].register_self(now, 60);
        sim.run_for(ms(500));
        assert!(sim.phones[guesser].txns[txn].responses.is_empty(), "round {round}: banned to the end");
        assert_eq!(sim.stat(|s| s.auth_banned_drops.get()), drops + 1, "round {round}");
        // Answered just after (a retransmission of that REGISTER, too).
        sim.run_for(ban.until.saturating_duration_since(sim.now) + ms(1));
        let r =
            try_register(&mut sim, guesser, &[]).unwrap_or_else(|| panic!("round {round}: unanswered after the end"));
        assert_eq!(r.code(), Some(401), "round {round}: {r:?}");
    }
}

#[test]
fn trusted_peers_are_never_banned() {
    // 127.0.0.3 is one of acme's trusted peers; from there it guesses
    // beta's passwords (beta trusts nobody, so it is challenged).
    let mut sim = Sim::new(1, config(), 305);
    let _first = sim.add_phone("101", ACME, None);
    let peer = sim.add_phone("101", BETA, None);
    assert_eq!(sim.phones[peer].addr.ip().to_string(), "127.0.0.3");
    for i in 0..12 {
        forbidden(guess(&mut sim, peer, BETA, "101", &format!("{i:06}")), "a trusted peer's guess");
    }
    assert!(sim.bans.is_empty(), "{:?}", sim.bans);
    assert_eq!(sim.stat(|s| s.auth_bans.get()), 0);
    assert_eq!(sim.stat(|s| s.auth_failures.get()), 12);
}

#[test]
fn park_retrieve_and_replaces_guesses_count_too() {
    let mut sim = Sim::new(1, config(), 306);
    let guesser = untrusted(&mut sim, "101", ACME);
    let referred = "Referred-By: <sip:102@acme.example>".to_owned();
    let replaces = "Replaces: abc@10.0.0.1;to-tag=1;from-tag=2".to_owned();
    let attempts: [(&str, Vec<String>); 5] = [
        ("sip:*68103@acme.example", vec![referred.clone()]),
        ("sip:*68103@acme.example", vec![referred]),
        ("sip:*88103@acme.example", vec![]),
        ("sip:*88103@acme.example", vec![]),
        ("sip:103@acme.example", vec![replaces]),
    ];
    for (i, (ruri, extra)) in attempts.iter().enumerate() {
        let (_, r) = invite(&mut sim, guesser, ruri, extra);
        assert_eq!(r.code(), Some(401), "{ruri}: challenged first: {r:?}");
        let mut with = extra.clone();
        with.push(creds(
            Algorithm::Sha256,
            "101",
            ACME,
            &format!("guess-{i}"),
            "INVITE",
            ruri,
            &nonce_of(&r, "SHA-256"),
        ));
        let (_, r) = invite(&mut sim, guesser, ruri, &with);
        assert_eq!((r.code(), r.reason()), (Some(403), "Forbidden".to_owned()), "{ruri}: {r:?}");
        assert_eq!(sim.bans.len(), usize::from(i == 4), "after guess {i}");
    }
    // The next park INVITE is dropped: no answer at all.
    let now = sim.now;
    let call = sim.phones[guesser].invite(now, "sip:*68103@acme.example", &[], true);
    let txn = sim.phones[guesser].calls[call].invite_txn.unwrap_or_default();
    sim.run_for(secs(40));
    assert!(sim.phones[guesser].txns[txn].responses.is_empty(), "a banned source's INVITE is not answered");
    assert_eq!(sim.stat(|s| s.parks.get()) + sim.stat(|s| s.retrieves.get()), 0);
}

#[test]
fn a_guessed_user_is_locked_but_its_own_devices_still_register() {
    let mut sim = Sim::new(1, config(), 307);
    let alice = untrusted(&mut sim, "101", ACME);
    let r = guess(&mut sim, alice, ACME, "101", "alice-pw").unwrap_or_else(|| panic!("unanswered"));
    assert_eq!(r.code(), Some(200), "Alice's phone authenticates once: {r:?}");
    // Ten sources guess one password each: no source reaches its budget,
    // the user reaches its own (10).
    for i in 0..10 {
        let p = untrusted(&mut sim, "101", ACME);
        forbidden(guess(&mut sim, p, ACME, "101", &format!("{i:06}")), "a spread guess");
    }
    assert!(sim.bans.is_empty(), "no source was banned: {:?}", sim.bans);
    assert_eq!(sim.stat(|s| s.auth_user_locks.get()), 1);
    // A new source, even with the right password, is refused unchecked.
    let newcomer = untrusted(&mut sim, "101", ACME);
    forbidden(guess(&mut sim, newcomer, ACME, "101", "alice-pw"), "a new source while the user is locked");
    assert_eq!(sim.stat(|s| s.auth_locked_refusals.get()), 1);
    // Alice's own phone still registers, and other users are unaffected.
    let r = guess(&mut sim, alice, ACME, "101", "alice-pw").unwrap_or_else(|| panic!("unanswered"));
    assert_eq!(r.code(), Some(200), "the user's own device: {r:?}");
    let carol = untrusted(&mut sim, "104", ACME);
    let r = guess(&mut sim, carol, ACME, "104", "carol-pw").unwrap_or_else(|| panic!("unanswered"));
    assert_eq!(r.code(), Some(200), "another user: {r:?}");
    // Once the lock is over (60 s), the new source gets in.
    sim.run_for(secs(61));
    let r = guess(&mut sim, newcomer, ACME, "101", "alice-pw").unwrap_or_else(|| panic!("unanswered"));
    assert_eq!(r.code(), Some(200), "after the lock: {r:?}");
}

#[test]
fn a_ban_reaches_every_shard() {
    // Shards with acme and beta on different ones.
    let n = (2u16..16).find(|&n| shard_of(ACME.as_bytes(), n) != shard_of(BETA.as_bytes(), n)).expect("a split");
    let mut sim = Sim::new(n, config(), 308);
    let guesser = untrusted(&mut sim, "101", ACME);
    let other = untrusted(&mut sim, "101", ACME);
    for i in 0..5 {
        forbidden(guess(&mut sim, guesser, ACME, "101", &format!("{i:06}")), "within the budget");
    }
    let acme_shard = usize::from(shard_of(ACME.as_bytes(), n));
    let beta_shard = usize::from(shard_of(BETA.as_bytes(), n));
    assert_eq!(sim.bans.iter().map(|b| b.0).collect::<Vec<_>>(), [acme_shard], "acme's shard banned it");
    sim.run_for(ms(50));
    // The same source now registers at beta, whose shard drops it too;
    // from another source the same REGISTER is challenged.
    let register = |from: std::net::SocketAddr, branch: &str| {
        format!(
            "REGISTER sip:beta.example SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{branch}\r\n\
             From: <sip:101@beta.example>;tag=g1\r\nTo: <sip:101@beta.example>\r\nCall-ID: {branch}@guess\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:101@{from}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let beta = sim.shards[beta_shard].stats().clone();
    assert_eq!((beta.auth_bans_shared.get(), beta.auth_bans_active.get(), beta.auth_banned_drops.get()), (1, 1, 0));
    let (g, o) = (sim.phones[guesser].addr, sim.phones[other].addr);
    let sent = sim.server_sent;
    sim.inject(g, register(g, "b1").as_bytes());
    sim.run_for(ms(50));
    assert_eq!((sim.server_sent, beta.auth_banned_drops.get()), (sent, 1), "dropped by beta's shard");
    sim.inject(o, register(o, "b2").as_bytes());
    sim.run_for(ms(50));
    assert_eq!((sim.server_sent, beta.auth_challenges.get()), (sent + 1, 1), "another source is challenged");
    assert_eq!(sim.stat(|s| s.auth_bans.get()), 1, "decided once");
}

#[test]
fn budgets_follow_the_policy() {
    // --auth-failures 2 --auth-ban 10: the second failure bans for 10 s.
    let mut cfg: Config = config();
    cfg.guard.source_failures = 2;
    cfg.guard.ban = secs(10);
    let mut sim = Sim::new(1, cfg, 309);
    let guesser = untrusted(&mut sim, "101", ACME);
    forbidden(guess(&mut sim, guesser, ACME, "101", "a"), "first");
    forbidden(guess(&mut sim, guesser, ACME, "101", "b"), "second");
    assert_eq!(sim.bans.len(), 1);
    assert_eq!(sim.bans[0].2.duration, secs(10));
    // Failures are counted in a window from the first one: two failures
    // further apart than the window do not ban.
    let mut cfg: Config = config();
    cfg.guard.source_failures = 2;
    cfg.guard.window = Duration::from_secs(5);
    let mut sim = Sim::new(1, cfg, 310);
    let slow = untrusted(&mut sim, "101", ACME);
    for i in 0..4 {
        forbidden(guess(&mut sim, slow, ACME, "101", &format!("slow-{i}")), "a slow guess");
        sim.run_for(secs(6));
    }
    assert!(sim.bans.is_empty());
}
