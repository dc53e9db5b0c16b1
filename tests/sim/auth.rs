//! Digest authentication (RFC 8760, MD5 and SHA-256) and trusted peers on
//! REGISTER and on park and retrieve INVITEs.

use sipark::proto::auth::{Algorithm, DigestInput, authorization};
use sipark::proto::config::{Config, parse_tenants};

use crate::fixtures::{ACME, BETA, Office};
use crate::harness::{Sim, ms, secs};
use crate::wire::Msg;

/// acme has credentials for 101 (Alice), 103 and 104 (Carol), and trusts
/// Bob's and 103's devices (127.0.0.3 to .6 in `Sim::office`); beta has
/// its own 101 with another password.
pub(crate) fn config() -> Config {
    let text = format!(
        r#"
        [[tenant]]
        domain = "{ACME}"
        trust = ["127.0.0.3", "127.0.0.4", "127.0.0.5/32", "127.0.0.6"]
        users = {{ "101" = "alice-pw", "103" = "w-pw", "104" = "carol-pw" }}
        [[tenant]]
        domain = "{BETA}"
        users = {{ "101" = "beta-pw" }}
        "#
    );
    let base = Config::default();
    let (defaults, tenants) = parse_tenants(&text, base.defaults.clone()).unwrap_or_else(|e| panic!("{e}"));
    Config { defaults, tenants, nonce_secret: [7; 32], ..base }
}

/// The `nonce` of the challenge for `alg` in a 401.
pub(crate) fn nonce_of(r: &Msg, alg: &str) -> String {
    let ch = r
        .headers("WWW-Authenticate")
        .into_iter()
        .find(|h| h.contains(&format!("algorithm={alg}")))
        .unwrap_or_else(|| panic!("no {alg} challenge in {r:?}"));
    let start = ch.find("nonce=\"").map(|i| i + 7).unwrap_or_else(|| panic!("no nonce in {ch}"));
    ch[start..].split('"').next().unwrap_or_default().to_owned()
}

/// An `Authorization` header answering `nonce` as `user` with `password`.
pub(crate) fn creds(
    alg: Algorithm,
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
) -> String {
    creds_nc(alg, user, realm, password, method, uri, nonce, 1)
}

/// [`creds`] with nonce count `nc`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn creds_nc(
    alg: Algorithm,
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: u32,
) -> String {
    let nc = format!("{nc:08x}");
    let input = DigestInput {
        username: user.as_bytes(),
        realm: realm.as_bytes(),
        password: password.as_bytes(),
        method: method.as_bytes(),
        uri: uri.as_bytes(),
        nonce: nonce.as_bytes(),
        nc: nc.as_bytes(),
        cnonce: b"0a4f113b",
        qop: b"auth",
    };
    format!("Authorization: {}", String::from_utf8_lossy(&authorization(alg, &input)))
}

/// Sends an INVITE from `phone` to `ruri` with `extra` headers; returns
/// the call and its final response.
pub(crate) fn invite(sim: &mut Sim, phone: usize, ruri: &str, extra: &[String]) -> (usize, Msg) {
    let now = sim.now;
    let call = sim.phones[phone].invite(now, ruri, extra, true);
    let txn = sim.phones[phone].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(phone, txn, secs(40));
    sim.run_for(ms(200));
    (call, r)
}

/// Parks Alice (untrusted) on 103, authenticating with `password`.
fn park_as_alice(sim: &mut Sim, o: &Office, password: &str, alg: Algorithm, alg_name: &str) -> (usize, Msg) {
    let ruri = "sip:*68103@acme.example";
    let bob = sim.phones[o.bob[0]].party();
    let referred = format!("Referred-By: {bob}");
    let (_, r) = invite(sim, o.alice, ruri, std::slice::from_ref(&referred));
    assert_eq!(r.code(), Some(401), "an untrusted park INVITE is challenged: {r:?}");
    let nonce = nonce_of(&r, alg_name);
    let auth = creds(alg, "101", ACME, password, "INVITE", ruri, &nonce);
    invite(sim, o.alice, ruri, &[referred, auth])
}

#[test]
fn register_is_challenged_with_sha256_then_md5_and_both_answers_work() {
    let mut sim = Sim::new(2, config(), 61);
    let p = sim.add_phone("101", ACME, None);
    let r = sim.register_ok(p, 3600);
    assert_eq!(r.code(), Some(401), "{r:?}");
    let ch = r.headers("WWW-Authenticate");
    assert_eq!(ch.len(), 2, "{r:?}");
    assert!(ch[0].contains("algorithm=SHA-256") && ch[1].contains("algorithm=MD5"), "SHA-256 first: {ch:?}");
    for c in &ch {
        assert!(c.contains("realm=\"acme.example\"") && c.contains("qop=\"auth\"") && !c.contains("stale"), "{c}");
    }
    assert_eq!(nonce_of(&r, "SHA-256"), nonce_of(&r, "MD5"), "one nonce for both");

    let contact = format!("<{}>", sim.phones[p].contact_uri());
    // One nonce serves both, with a rising nonce count.
    for (nc, alg, name) in [(1, Algorithm::Sha256, "SHA-256"), (2, Algorithm::Md5, "MD5")] {
        let auth = creds_nc(alg, "101", ACME, "alice-pw", "REGISTER", "sip:acme.example", &nonce_of(&r, name), nc);
        let ok = sim.register_with(p, &[&contact], &[&auth]);
        assert_eq!(ok.code(), Some(200), "{name}: {ok:?}\n{}", sim.trace());
        assert!(ok.header("Contact").is_some_and(|c| c.contains(&sim.phones[p].contact_uri())), "{ok:?}");
    }
    assert_eq!(sim.stat(|s| s.auth_challenges.get()), 1);
}

#[test]
fn wrong_password_unknown_user_and_another_users_credentials_are_403() {
    let mut sim = Sim::new(1, config(), 62);
    let p = sim.add_phone("101", ACME, None);
    let contact = format!("<{}>", sim.phones[p].contact_uri());
    let cases = [
        ("101", "wrong", "Forbidden"),
        ("999", "alice-pw", "Forbidden"),
        // 104's good credentials cannot register 101.
        ("104", "carol-pw", "Authenticated As Another User"),
    ];
    for (user, pw, reason) in cases {
        // A fresh challenge each time: a nonce answers one wrong response.
        let nonce = nonce_of(&sim.register_ok(p, 3600), "MD5");
        let auth = creds(Algorithm::Md5, user, ACME, pw, "REGISTER", "sip:acme.example", &nonce);
        let r = sim.register_with(p, &[&contact], &[&auth]);
        assert_eq!((r.code(), r.reason()), (Some(403), reason.to_owned()), "{user}/{pw}: {r:?}");
    }
    assert_eq!(sim.stat(|s| s.bindings.get()), 0, "nothing registered");
    assert_eq!(sim.stat(|s| s.auth_failures.get()), 3);
}

#[test]
fn a_wrong_password_never_parks_and_the_right_one_does() {
    let mut sim = Sim::new(2, config(), 63);
    let o = sim.office(ACME);
    let (call, r) = park_as_alice(&mut sim, &o, "not-it", Algorithm::Sha256, "SHA-256");
    assert_eq!(r.code(), Some(403), "{r:?}");
    sim.run_for(secs(1));
    assert_eq!(sim.stat(|s| s.parks.get()), 0);
    assert!(sim.phones[o.watch[0]].notifies.is_empty(), "no NOTIFY for a refused park");
    assert!(sim.phones[o.alice].calls[call].reinvites.is_empty());

    let (_, r) = park_as_alice(&mut sim, &o, "alice-pw", Algorithm::Sha256, "SHA-256");
    assert_eq!(r.code(), Some(200), "{r:?}\n{}", sim.trace());
    sim.wait_notifies(o.watch[0], 1, secs(2));
    assert_eq!(sim.last_notify(o.watch[0]).info().calls.len(), 1);
}

#[test]
fn a_wrong_password_never_retrieves() {
    let mut sim = Sim::new(2, config(), 64);
    let o = sim.office(ACME);
    let (_, r) = park_as_alice(&mut sim, &o, "alice-pw", Algorithm::Md5, "MD5");
    assert_eq!(r.code(), Some(200), "{r:?}");
    let ruri = "sip:*88103@acme.example";
    let challenge = |sim: &mut Sim| {
        let (_, r) = invite(sim, o.carol, ruri, &[]);
        assert_eq!(r.code(), Some(401), "{r:?}");
        nonce_of(&r, "MD5")
    };
    for pw in ["alice-pw", "wrong"] {
        let nonce = challenge(&mut sim);
        let (_, r) = invite(&mut sim, o.carol, ruri, &[creds(Algorithm::Md5, "104", ACME, pw, "INVITE", ruri, &nonce)]);
        assert_eq!(r.code(), Some(403), "{pw}: {r:?}");
    }
    let nonce = challenge(&mut sim);
    // Credentials for another Request-URI do not retrieve either (400: the
    // digest uri must name the Request-URI).
    let other = creds(Algorithm::Md5, "104", ACME, "carol-pw", "INVITE", "sip:*88104@acme.example", &nonce);
    let (_, r) = invite(&mut sim, o.carol, ruri, &[other]);
    assert_eq!(r.code(), Some(400), "{r:?}");
    assert_eq!(sim.stat(|s| s.retrieves.get()), 0);
    assert_eq!(sim.stat(|s| s.parked.get()), 1, "still parked");
    assert!(sim.phones[o.alice].calls.iter().all(|c| c.reinvites.is_empty()), "the parked leg was not touched");

    let (rc, r) =
        invite(&mut sim, o.carol, ruri, &[creds(Algorithm::Md5, "104", ACME, "carol-pw", "INVITE", ruri, &nonce)]);
    assert_eq!(r.code(), Some(200), "{r:?}\n{}", sim.trace());
    assert_eq!(sim.stat(|s| s.retrieves.get()), 1);
    let _ = rc;
}

#[test]
fn stale_and_forged_nonces_are_challenged_again() {
    let mut sim = Sim::new(1, config(), 65);
    let p = sim.add_phone("101", ACME, None);
    let r = sim.register_ok(p, 3600);
    let nonce = nonce_of(&r, "MD5");
    let contact = format!("<{}>", sim.phones[p].contact_uri());
    // Past the nonce's validity (300 s): the right digest is stale.
    sim.run_for(secs(301));
    let auth = creds(Algorithm::Md5, "101", ACME, "alice-pw", "REGISTER", "sip:acme.example", &nonce);
    let r = sim.register_with(p, &[&contact], &[&auth]);
    assert_eq!(r.code(), Some(401), "{r:?}");
    assert!(r.headers("WWW-Authenticate").iter().all(|h| h.ends_with("stale=true")), "{r:?}");
    assert_ne!(nonce_of(&r, "MD5"), nonce, "a fresh nonce");
    // A nonce this engine never issued: challenged, not stale.
    let forged = "00000000690f5a2000112233445566778899aabbccddeeff";
    let auth = creds(Algorithm::Md5, "101", ACME, "alice-pw", "REGISTER", "sip:acme.example", forged);
    let r = sim.register_with(p, &[&contact], &[&auth]);
    assert_eq!(r.code(), Some(401), "{r:?}");
    assert!(r.headers("WWW-Authenticate").iter().all(|h| !h.contains("stale")), "{r:?}");
    // Unreadable credentials: 400.
    let r = sim.register_with(p, &[&contact], &["Authorization: Digest username=\"101\", realm="]);
    assert_eq!(r.code(), Some(400), "{r:?}");
    assert_eq!(sim.stat(|s| s.bindings.get()), 0);
}

#[test]
fn another_tenants_credentials_and_nonce_do_not_work() {
    let mut sim = Sim::new(2, config(), 66);
    let a = sim.add_phone("101", ACME, None);
    let b = sim.add_phone("101", BETA, None);
    let rb = sim.register_ok(b, 3600);
    assert_eq!(rb.code(), Some(401));
    assert!(rb.headers("WWW-Authenticate")[0].contains("realm=\"beta.example\""), "{rb:?}");
    let beta_nonce = nonce_of(&rb, "MD5");
    let contact = format!("<{}>", sim.phones[a].contact_uri());
    // beta's password, realm and nonce, sent to acme: a challenge for
    // acme's realm, nothing registered.
    let auth = creds(Algorithm::Md5, "101", BETA, "beta-pw", "REGISTER", "sip:acme.example", &beta_nonce);
    let r = sim.register_with(a, &[&contact], &[&auth]);
    assert_eq!(r.code(), Some(401), "{r:?}");
    assert!(r.headers("WWW-Authenticate")[0].contains("realm=\"acme.example\""), "{r:?}");
    // beta's nonce with acme's realm: not issued for acme, challenged.
    let auth = creds(Algorithm::Md5, "101", ACME, "alice-pw", "REGISTER", "sip:acme.example", &beta_nonce);
    let r = sim.register_with(a, &[&contact], &[&auth]);
    assert_eq!(r.code(), Some(401), "{r:?}");
    assert_eq!(sim.stat(|s| s.bindings.get()), 0);
}

#[test]
fn trusted_peers_skip_auth_and_an_acl_miss_is_refused() {
    // Global trust for 127.0.0.2 (the first phone); beta has no users, so
    // with trusted peers configured every other source is refused.
    let text =
        format!("[[tenant]]\ndomain = \"{ACME}\"\n[[tenant]]\ndomain = \"{BETA}\"\ntrust = [\"127.0.0.4/32\"]\n");
    let base = Config::default();
    let (defaults, tenants) = parse_tenants(&text, base.defaults.clone()).unwrap_or_else(|e| panic!("{e}"));
    let trust = vec!["127.0.0.2".parse().expect("cidr")];
    let mut sim = Sim::new(2, Config { defaults, tenants, trust, ..base }, 67);
    let proxy = sim.add_phone("101", ACME, None);
    let stranger = sim.add_phone("102", ACME, None);
    let beta_proxy = sim.add_phone("101", BETA, None);
    assert_eq!(sim.register_ok(proxy, 3600).code(), Some(200), "globally trusted");
    let r = sim.register_ok(stranger, 3600);
    assert_eq!((r.code(), r.reason()), (Some(403), "Source Not Trusted".to_owned()), "{r:?}");
    assert_eq!(sim.register_ok(beta_proxy, 3600).code(), Some(200), "trusted by beta's own list");
    // A park from outside the ACL parks nothing.
    let (_, r) = invite(&mut sim, stranger, "sip:*68103@acme.example", &["Referred-By: <sip:101@acme.example>".into()]);
    assert_eq!(r.code(), Some(403), "{r:?}");
    let (_, r) = invite(&mut sim, proxy, "sip:*68103@acme.example", &["Referred-By: <sip:101@acme.example>".into()]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(sim.stat(|s| s.parks.get()), 1);
    // The stranger cannot retrieve it either.
    let (_, r) = invite(&mut sim, stranger, "sip:*88103@acme.example", &[]);
    assert_eq!(r.code(), Some(403), "{r:?}");
    assert_eq!(sim.stat(|s| s.parked.get()), 1);
}
