//! REGISTER handling, binding expiry, NOTIFY resync and park-info versions.

use sipark::proto::config::Config;
use sipark::proto::sip::parse::NameAddr;

use crate::fixtures::ACME;
use crate::harness::{Sim, secs};
use crate::wire::Msg;

/// The bindings a 200 OK lists: (URI, expires).
fn bindings(r: &Msg) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for v in r.headers("Contact") {
        for one in v.split(',') {
            let na = NameAddr::parse(one.trim().as_bytes()).unwrap_or_else(|e| panic!("bad Contact {one:?}: {e:?}"));
            let exp = na
                .param(b"expires")
                .flatten()
                .and_then(|e| std::str::from_utf8(e).ok()?.parse().ok())
                .unwrap_or_else(|| panic!("Contact without expires in 200: {one:?}"));
            out.push((String::from_utf8_lossy(na.uri.raw).into_owned(), exp));
        }
    }
    out.sort();
    out
}

fn expires_of(b: &[(String, u32)], uri: &str) -> u32 {
    b.iter().find(|(u, _)| u == uri).map(|(_, e)| *e).unwrap_or_else(|| panic!("{uri} not bound: {b:?}"))
}

#[test]
fn register_expires_refresh_removal_and_limits() {
    let cfg = Config { max_contacts: 3, ..Config::default() };
    let mut sim = Sim::new(2, cfg, 31);
    let p = sim.add_phone("103", ACME, None);
    let c: Vec<String> = (1..=4).map(|i| format!("sip:103@127.0.0.50:{}", 5070 + i)).collect();

    // expires parameter.
    let r = sim.register_with(p, &[&format!("<{}>;expires=120", c[0])], &[]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(bindings(&r), vec![(c[0].clone(), 120)], "{r:?}");

    // Expires header; the first binding is listed too.
    let r = sim.register_with(p, &[&format!("<{}>", c[1])], &["Expires: 300"]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    let b = bindings(&r);
    assert_eq!(b.len(), 2, "{r:?}");
    assert!((119..=120).contains(&expires_of(&b, &c[0])), "{b:?}");
    assert_eq!(expires_of(&b, &c[1]), 300);

    // Parameter beats header; over the maximum is clamped.
    let r = sim.register_with(p, &[&format!("<{}>;expires=7200", c[2])], &["Expires: 100"]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(expires_of(&bindings(&r), &c[2]), 3600, "clamped to 3600: {r:?}");

    // Refresh: same contact, new expiry, no new binding.
    let r = sim.register_with(p, &[&format!("<{}>;expires=600", c[0])], &[]);
    let b = bindings(&r);
    assert_eq!(b.len(), 3, "{r:?}");
    assert_eq!(expires_of(&b, &c[0]), 600);

    // Too brief: 423 with Min-Expires, nothing changes.
    let r = sim.register_with(p, &[&format!("<{}>;expires=30", c[3])], &[]);
    assert_eq!(r.code(), Some(423), "{r:?}");
    assert_eq!(r.header("Min-Expires").as_deref(), Some("60"), "{r:?}");

    // One contact too many: 403.
    let r = sim.register_with(p, &[&format!("<{}>", c[3])], &[]);
    assert_eq!(r.code(), Some(403), "{r:?}");

    // A query (no Contact) lists the three bindings.
    let r = sim.register_with(p, &[], &[]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(bindings(&r).len(), 3, "{r:?}");
    assert_eq!(sim.stat(|s| s.bindings.get()), 3);

    // expires=0 removes one.
    let r = sim.register_with(p, &[&format!("<{}>;expires=0", c[1])], &[]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    let uris: Vec<String> = bindings(&r).into_iter().map(|(u, _)| u).collect();
    assert_eq!(uris, vec![c[0].clone(), c[2].clone()], "{r:?}");

    // Two contacts in one header, comma-separated.
    let r = sim.register_with(p, &[&format!("<{}>;expires=90, <{}>;expires=0", c[1], c[2])], &[]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    let b = bindings(&r);
    assert_eq!(b.len(), 2, "{r:?}");
    assert_eq!(expires_of(&b, &c[1]), 90);

    // Contact: * needs Expires: 0.
    let r = sim.register_with(p, &["*"], &[]);
    assert_eq!(r.code(), Some(400), "Contact: * without Expires: 0: {r:?}");
    let r = sim.register_with(p, &["*"], &["Expires: 0"]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert!(bindings(&r).is_empty(), "{r:?}");
    assert_eq!(sim.stat(|s| s.bindings.get()), 0);
    assert_eq!(sim.stat(|s| s.registrations.get()), 8, "every 200 counted");
}

#[test]
fn binding_expiry_runs_on_the_virtual_clock() {
    let mut sim = Sim::new(2, Config::default(), 32);
    let o = sim.office(ACME);
    let r = sim.register_ok(o.watch[1], 60);
    assert_eq!(r.code(), Some(200));
    assert_eq!(sim.stat(|s| s.bindings.get()), 4);
    sim.run_for(secs(59));
    assert_eq!(sim.stat(|s| s.bindings.get()), 4, "not expired yet");
    sim.run_for(secs(2));
    assert_eq!(sim.stat(|s| s.bindings.get()), 3, "the 60 s binding expired");
    sim.park_by_bob(&o, o.alice);
    sim.run_for(secs(2));
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 1);
    assert!(sim.phones[o.watch[1]].notifies.is_empty(), "no NOTIFY to an expired contact");
    // A query shows the one left.
    let r = sim.register_with(o.watch[0], &[], &[]);
    assert_eq!(bindings(&r).len(), 1, "{r:?}");
}

#[test]
fn registering_device_gets_current_state_at_once() {
    let mut sim = Sim::new(3, Config::default(), 33);
    let o = sim.office(ACME);
    sim.park_by_bob(&o, o.alice);
    sim.park_by_bob(&o, o.dave);
    sim.wait_notifies(o.watch[0], 2, secs(2));
    let v = sim.last_notify(o.watch[0]).info().version;

    let newbie = sim.add_phone("103", ACME, None);
    let r = sim.register_ok(newbie, 600);
    assert_eq!(r.code(), Some(200));
    sim.wait_notifies(newbie, 1, secs(1));
    let n = sim.last_notify(newbie).clone();
    assert_eq!(n.msg.ruri(), sim.phones[newbie].contact_uri());
    let info = n.info();
    assert_eq!(info.version, v, "resync repeats the current version: {info:?}");
    assert_eq!(info.parked().len(), 2, "{info:?}");
    assert!(info.terminated().is_empty(), "{info:?}");
    // Nobody else was disturbed, and a refresh does not resync again.
    sim.run_for(secs(1));
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 2);
    let r = sim.register_ok(newbie, 600);
    assert_eq!(r.code(), Some(200));
    let r = sim.register_ok(o.watch[0], 3600);
    assert_eq!(r.code(), Some(200));
    sim.run_for(secs(2));
    assert_eq!(sim.phones[newbie].notifies.len(), 1, "refresh (same Call-ID) is not a new device");
    assert_eq!(sim.phones[o.watch[0]].notifies.len(), 2);
}

#[test]
fn no_resync_when_nothing_is_parked() {
    let mut sim = Sim::new(1, Config::default(), 34);
    let _o = sim.office(ACME);
    let newbie = sim.add_phone("103", ACME, None);
    sim.register_ok(newbie, 600);
    sim.run_for(secs(2));
    assert!(sim.phones[newbie].notifies.is_empty(), "{:?}", sim.phones[newbie].notifies);
    assert_eq!(sim.stat(|s| s.notifies_sent.get()), 0);
}

#[test]
fn version_goes_up_by_one_per_change() {
    let mut sim = Sim::new(2, Config::default(), 35);
    let o = sim.office(ACME);
    let alice = sim.park_by_bob(&o, o.alice);
    let dave = sim.park_by_bob(&o, o.dave);
    // A park on another extension does not touch 103's version.
    let erin = sim.add_phone("106", ACME, Some("Erin"));
    sim.park(erin, ACME, "109", None);
    let (_, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200));
    let bye = sim.hangup(o.dave, dave);
    assert_eq!(bye.code(), Some(200));
    let newbie = sim.add_phone("103", ACME, None);
    sim.register_ok(newbie, 600);
    sim.run_for(secs(2));

    for w in o.watch {
        let versions: Vec<u64> = sim.phones[w].notifies.iter().map(|n| n.info().version).collect();
        assert_eq!(versions.len(), 4, "park, park, retrieve, hangup: {versions:?}");
        for pair in versions.windows(2) {
            assert_eq!(pair[1], pair[0] + 1, "version +1 per change: {versions:?}");
        }
    }
    let last = sim.last_notify(o.watch[0]).info().clone();
    assert!(last.parked().is_empty(), "{last:?}");
    // The newcomer registered after the last change: nothing parked, no resync.
    assert!(sim.phones[newbie].notifies.is_empty());
    let _ = alice;
}

#[test]
fn notify_follows_the_registration_source_address() {
    let mut sim = Sim::new(2, Config::default(), 36);
    let o = sim.office(ACME);
    // A second phone re-registers watch[0]'s contact URI from its own address
    // (as after a NAT rebinding): requests for that contact now go there.
    let moved = sim.add_phone("103", ACME, None);
    let uri = sim.phones[o.watch[0]].contact_uri();
    let r = sim.register_with(moved, &[&format!("<{uri}>;expires=600")], &[]);
    assert_eq!(r.code(), Some(200));
    assert_eq!(bindings(&r).len(), 2, "same URI, so still two bindings: {r:?}");
    sim.park_by_bob(&o, o.alice);
    sim.run_for(secs(1));
    assert!(sim.phones[o.watch[0]].notifies.is_empty(), "old address no longer used");
    assert_eq!(sim.phones[moved].notifies.len(), 1, "NOTIFY goes to the newest source address");
    assert_eq!(sim.phones[moved].notifies[0].msg.ruri(), uri, "Request-URI is the contact");
}
