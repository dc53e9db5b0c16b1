//! Park groups (`*58`), recall alternates (ring group, delay, Alert-Info,
//! display prefix) and parker notification, all from the tenants file.

use std::time::Duration;

use sipark::proto::config::{Config, parse_tenants};

use crate::fixtures::{ACME, BETA, Office};
use crate::harness::{Sim, ms, secs};
use crate::phone::CallState;

/// A config serving acme and beta with `acme` as extra tenant settings.
fn config(acme: &str) -> Config {
    let text = format!(
        "[defaults]\npark_timeout = 60\n[[tenant]]\ndomain = \"{ACME}\"\n{acme}\n[[tenant]]\ndomain = \"{BETA}\"\n"
    );
    let base = Config::default();
    let (defaults, tenants) = parse_tenants(&text, base.defaults.clone()).unwrap_or_else(|e| panic!("{e}"));
    Config { defaults, tenants, recall_timeout: secs(30), ..base }
}

/// Adds and registers a phone for `user@domain`.
fn registered(sim: &mut Sim, user: &str, domain: &str) -> usize {
    let p = sim.add_phone(user, domain, None);
    let r = sim.register_ok(p, 3600);
    assert_eq!(r.code(), Some(200), "REGISTER {user}: {r:?}");
    p
}

/// Starts a `*58` group park of `phone`'s call, Referred-By `parker`;
/// returns the final response and the call.
fn group_park(sim: &mut Sim, phone: usize, domain: &str, ruri_user: &str, parker: &str) -> (u16, usize) {
    let now = sim.now;
    let extra = vec![format!("Referred-By: {parker}")];
    let call = sim.phones[phone].invite(now, &format!("sip:{ruri_user}@{domain}"), &extra, true);
    let txn = sim.phones[phone].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(phone, txn, secs(40));
    sim.run_for(ms(300));
    (r.code().unwrap_or_default(), call)
}

/// The extension named by each park-info NOTIFY `phone` got, in order.
fn notified_exts(sim: &Sim, phone: usize) -> Vec<String> {
    sim.phones[phone].notifies.iter().map(|n| n.info().extension.clone()).collect()
}

#[test]
fn group_park_hunts_in_order_and_every_member_is_notified() {
    let mut sim = Sim::new(2, config(r#"park_groups = [["103", "106", "102"], ["200"]]"#), 61);
    let o = sim.office(ACME);
    let m106 = registered(&mut sim, "106", ACME);
    let bob = sim.phones[o.bob[0]].party();

    let (code, _) = group_park(&mut sim, o.alice, ACME, "*58", &bob);
    assert_eq!(code, 200, "first group park\n{}", sim.trace());
    // Parked on 103, the first member; every member's devices are told.
    for p in [o.watch[0], o.watch[1], m106, o.bob[0], o.bob[1]] {
        assert_eq!(notified_exts(&sim, p), ["103"], "phone {p} (a group member)\n{}", sim.trace());
        let n = sim.last_notify(p);
        let to = n.msg.header("To").unwrap_or_default();
        let own = format!("sip:{}@{ACME}", sim.phones[p].user);
        assert!(to.contains(&own), "NOTIFY To is the recipient's own AOR {own}: {to}");
        assert_eq!(n.info().parked().len(), 1);
    }
    assert!(sim.phones[o.carol].notifies.is_empty(), "104 is in no group");

    // 103 now holds a call: the next park hunts on to 106, then to 102.
    let (code, _) = group_park(&mut sim, o.dave, ACME, "*58%23", &bob);
    assert_eq!(code, 200);
    assert_eq!(notified_exts(&sim, m106), ["103", "106"]);
    assert_eq!(notified_exts(&sim, o.watch[0]), ["103", "106"]);
    let c1 = sim.add_phone("108", ACME, None);
    let (code, _) = group_park(&mut sim, c1, ACME, "*58#", &bob);
    assert_eq!(code, 200);
    assert_eq!(notified_exts(&sim, o.bob[0]), ["103", "106", "102"]);

    // Every member holds a call.
    let extra = sim.add_phone("107", ACME, None);
    let (code, _) = group_park(&mut sim, extra, ACME, "*58", &bob);
    assert_eq!(code, 486, "a full group refuses\n{}", sim.trace());
    assert_eq!(sim.stat(|s| s.parked.get()), 3);
}

#[test]
fn group_park_refusals_and_tenant_isolation() {
    let mut sim = Sim::new(2, config(r#"park_groups = [["103", "102"]]"#), 62);
    let o = sim.office(ACME);
    let b = sim.office(BETA);
    // A parker in no group.
    let carol = sim.phones[o.carol].party();
    let (code, _) = group_park(&mut sim, o.alice, ACME, "*58", &carol);
    assert_eq!(code, 404, "parker in no park group");
    // beta's 102 parks with acme's group code on beta: beta has no groups.
    let beta_bob = sim.phones[b.bob[0]].party();
    let (code, _) = group_park(&mut sim, b.alice, BETA, "*58", &beta_bob);
    assert_eq!(code, 404, "beta has no park groups, whatever acme has");
    // A beta parker on acme's group code: refused, nothing of acme touched.
    let (code, _) = group_park(&mut sim, b.dave, ACME, "*58", &beta_bob);
    assert_eq!(code, 403, "another tenant's parker");
    // No Referred-By at all.
    let now = sim.now;
    let call = sim.phones[o.dave].invite(now, &format!("sip:*58@{ACME}"), &[], true);
    let txn = sim.phones[o.dave].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(o.dave, txn, secs(5)).code(), Some(400));
    assert_eq!(sim.stat(|s| s.parked.get()), 0);
    for p in [o.watch[0], o.bob[0], b.watch[0], b.bob[0]] {
        assert!(sim.phones[p].notifies.is_empty(), "phone {p} notified of nothing\n{}", sim.trace());
    }
}

#[test]
fn group_member_registering_gets_the_groups_parks() {
    let mut sim = Sim::new(1, config(r#"park_groups = [["103", "106"]]"#), 63);
    let o = sim.office(ACME);
    sim.park_by_bob(&o, o.alice);
    let late = registered(&mut sim, "106", ACME);
    sim.run_for(ms(300));
    assert_eq!(notified_exts(&sim, late), ["103"], "a new group member's device is sent 103's parks");
    assert_eq!(sim.last_notify(late).info().parked().len(), 1);
}

#[test]
fn notify_parker_sends_the_parker_the_park_info() {
    let mut sim = Sim::new(2, config("notify_parker = true"), 64);
    let o = sim.office(ACME);
    let call = sim.park_by_bob(&o, o.alice);
    for p in o.bob {
        assert_eq!(notified_exts(&sim, p), ["103"], "the parker's device {p}\n{}", sim.trace());
        let to = sim.last_notify(p).msg.header("To").unwrap_or_default();
        assert!(to.contains("sip:102@"), "addressed to the parker: {to}");
    }
    // The parker also learns that the call left.
    sim.hangup(o.alice, call);
    for p in o.bob {
        let n = sim.last_notify(p);
        assert_eq!(n.info().terminated().len(), 1, "phone {p}: {:?}", n.info());
    }
    // Without the option, the parker is not told.
    let mut plain = Sim::new(1, config(""), 65);
    let q = plain.office(ACME);
    plain.park_by_bob(&q, q.alice);
    assert!(plain.phones[q.bob[0]].notifies.is_empty());
}

/// Parks Alice on 103 by Bob and runs to the park timeout (60 s).
fn park_and_time_out(sim: &mut Sim, o: &Office) -> usize {
    let call = sim.park_by_bob(o, o.alice);
    sim.run_for(secs(60));
    call
}

#[test]
fn recall_to_group_rings_only_the_ring_group_with_alert_info_and_prefix() {
    let acme = "recall_to = \"group\"\nrecall_group = [\"106\", \"107\"]\nrecall_prefix = \"[Recall] \"";
    let mut sim = Sim::new(2, config(acme), 66);
    let o = sim.office(ACME);
    let ring = [registered(&mut sim, "106", ACME), registered(&mut sim, "107", ACME)];
    for p in ring {
        sim.phones[p].auto_answer = false;
    }
    park_and_time_out(&mut sim, &o);
    let ok = sim.run_until(secs(2), |s| ring.iter().all(|&p| !s.phones[p].incoming().is_empty()));
    assert!(ok, "both ring-group devices ring\n{}", sim.trace());
    for b in o.bob {
        assert!(sim.phones[b].incoming().is_empty(), "recall_to = group: the parker does not ring");
    }
    for p in ring {
        let inv = sim.phones[p].calls[sim.phones[p].incoming()[0]].invite.clone().unwrap_or_else(|| panic!("INVITE"));
        assert_eq!(inv.header("Alert-Info").as_deref(), Some("<urn:alert:service:recall:transfer>"));
        let from = inv.header("From").unwrap_or_default();
        assert!(from.starts_with("\"[Recall] Alice\" <sip:101@acme.example>"), "From: {from}");
        let to = inv.header("To").unwrap_or_default();
        assert!(to.contains(&format!("sip:{}@{ACME}", sim.phones[p].user)), "To is the device's AOR: {to}");
    }
    // 107 answers: bridged to Alice, 106 is cancelled.
    let now = sim.now;
    let inc = sim.phones[ring[1]].incoming()[0];
    assert!(sim.phones[ring[1]].answer(now, inc));
    let ok = sim.run_until(secs(5), |s| s.phones[ring[1]].calls[inc].state == CallState::Confirmed);
    assert!(ok, "the ring-group device is bridged\n{}", sim.trace());
    sim.run_for(secs(1));
    let c106 = sim.phones[ring[0]].incoming()[0];
    assert!(!sim.phones[ring[0]].calls[c106].cancels.is_empty(), "the other branch is cancelled");
    assert_eq!(sim.stat(|s| s.recalls_answered.get()), 1);
}

#[test]
fn parker_then_group_adds_the_group_after_the_delay_then_times_out() {
    let acme =
        "recall_to = \"parker-then-group\"\nrecall_group = [\"106\"]\nrecall_group_delay = 10\nalert_info = \"\"";
    let mut sim = Sim::new(2, config(acme), 67);
    let o = sim.office(ACME);
    let m106 = registered(&mut sim, "106", ACME);
    for p in [o.bob[0], o.bob[1], m106] {
        sim.phones[p].auto_answer = false;
    }
    let call = park_and_time_out(&mut sim, &o);
    let ok = sim.run_until(secs(2), |s| o.bob.iter().all(|&b| !s.phones[b].incoming().is_empty()));
    assert!(ok, "the parker rings first\n{}", sim.trace());
    let first = sim.phones[o.bob[0]].incoming()[0];
    let t0 = sim.phones[o.bob[0]].calls[first].invite.as_ref().map(|m| m.at).unwrap_or_default();
    sim.run_for(secs(9));
    assert!(sim.phones[m106].incoming().is_empty(), "the group waits for its delay");
    let ok = sim.run_until(secs(2), |s| !s.phones[m106].incoming().is_empty());
    assert!(ok, "the group joins after 10 s\n{}", sim.trace());
    let inv = sim.phones[m106].calls[sim.phones[m106].incoming()[0]].invite.clone().unwrap_or_else(|| panic!("INVITE"));
    assert!(inv.header("Alert-Info").is_none(), "alert_info = \"\" sends none: {inv:?}");
    let joined = inv.at.saturating_sub(t0);
    assert!(joined >= secs(10) && joined < secs(11), "group joined {joined:?} after the recall");
    // Nobody answers: the park ends with `timeout` 30 s after the recall started.
    sim.wait_bye(o.alice, call, secs(25));
    let n = sim.last_notify(o.watch[0]);
    assert_eq!(n.info().terminated().first().and_then(|c| c.reason.clone()).as_deref(), Some("timeout"));
    let ended = sim.phones[o.alice].calls[call].byes[0].at.saturating_sub(t0);
    assert!(ended >= secs(29) && ended < secs(32), "recall window is 30 s, ended after {ended:?}");
    for p in [o.bob[0], o.bob[1], m106] {
        let c = sim.phones[p].incoming()[0];
        assert!(!sim.phones[p].calls[c].cancels.is_empty(), "phone {p}'s branch is cancelled");
    }
}

#[test]
fn parker_then_group_skips_the_delay_when_the_parker_refuses() {
    let acme = "recall_to = \"parker-then-group\"\nrecall_group = [\"106\"]\nrecall_group_delay = 20";
    let mut sim = Sim::new(1, config(acme), 68);
    let o = sim.office(ACME);
    let m106 = registered(&mut sim, "106", ACME);
    for p in [o.bob[0], o.bob[1]] {
        sim.phones[p].auto_answer = false;
    }
    park_and_time_out(&mut sim, &o);
    let ok = sim.run_until(secs(2), |s| o.bob.iter().all(|&b| !s.phones[b].incoming().is_empty()));
    assert!(ok, "the parker rings first");
    let now = sim.now;
    for b in o.bob {
        let c = sim.phones[b].incoming()[0];
        assert!(sim.phones[b].reject(now, c, 486));
    }
    let ok = sim.run_until(Duration::from_millis(500), |s| !s.phones[m106].incoming().is_empty());
    assert!(ok, "the group rings as soon as every parker branch failed\n{}", sim.trace());
    // 106 auto-answers: the recall is bridged to it.
    let ok = sim.run_until(secs(5), |s| s.stat(|st| st.recalls_answered.get()) == 1);
    assert!(ok, "answered by the ring group\n{}", sim.trace());
}

#[test]
fn notify_documents_follow_the_tenant_and_the_user_agent() {
    let acme = "notify = [\"park-info\", \"dialog-info\"]\n\
                [[tenant.notify_ua]]\npattern = \"Yealink*\"\nnotify = [\"broadworks\"]\n\
                [[tenant.notify_ua]]\npattern = \"Silent*\"\nnotify = []";
    let mut sim = Sim::new(2, config(acme), 69);
    let o = sim.office(ACME);
    let yealink = sim.add_phone("103", ACME, None);
    let contact = sim.phones[yealink].contact_uri();
    let r = sim.register_with(yealink, &[&format!("<{contact}>")], &["User-Agent: Yealink SIP-T54W 96.86.0.100"]);
    assert_eq!(r.code(), Some(200));
    let silent = sim.add_phone("103", ACME, None);
    let contact = sim.phones[silent].contact_uri();
    let r = sim.register_with(silent, &[&format!("<{contact}>")], &["User-Agent: SilentPhone 1.0"]);
    assert_eq!(r.code(), Some(200));
    // beta keeps the default: park-info only.
    let b = sim.office(BETA);
    sim.park_by_bob(&o, o.alice);
    sim.park_by_bob(&b, b.alice);
    let kinds = |sim: &Sim, p: usize| -> Vec<(String, String)> {
        sim.phones[p]
            .notifies
            .iter()
            .map(|n| (n.msg.header("Event").unwrap_or_default(), n.msg.header("Content-Type").unwrap_or_default()))
            .collect()
    };
    let both = vec![
        ("park-info".to_owned(), "application/park-info+xml".to_owned()),
        ("dialog".to_owned(), "application/dialog-info+xml".to_owned()),
    ];
    assert_eq!(kinds(&sim, o.watch[0]), both, "the tenant's list, one NOTIFY per document");
    assert_eq!(
        kinds(&sim, yealink),
        [("call-info".to_owned(), "application/x-broadworks-callpark-info+xml".to_owned())],
        "a matching User-Agent gets its rule's documents instead"
    );
    assert!(kinds(&sim, silent).is_empty(), "an empty rule sends nothing");
    assert_eq!(kinds(&sim, b.watch[0]), [("park-info".to_owned(), "application/park-info+xml".to_owned())]);
    let dialog = &sim.phones[o.watch[0]].notifies[1].msg.body();
    assert!(
        dialog.contains("entity=\"sip:103@acme.example\"") && dialog.contains("<state>confirmed</state>"),
        "{dialog}"
    );
    let bw = sim.phones[yealink].notifies[0].msg.body();
    assert!(bw.contains("<x-broadworks-callpark-info") && bw.contains("sip:101@acme.example"), "{bw}");
}

#[test]
fn one_extension_rule_for_registrations_parks_and_the_tenants_file() {
    // Extensions a dial plan names: letters, digits and `+ - _ .`, up to
    // 64 characters. The tenants file, REGISTER and the feature codes
    // accept the same ones.
    let long = "e".repeat(64);
    let groups = format!(r#"park_groups = [["alice.smith", "bob_2", "{long}"]]"#);
    let mut sim = Sim::new(2, config(&groups), 66);
    let alice = registered(&mut sim, "alice.smith", ACME);
    let bob = registered(&mut sim, "bob_2", ACME);
    let caller = sim.add_phone("+15551230000", ACME, None);
    let parker = sim.phones[bob].party();
    let (code, _) = group_park(&mut sim, caller, ACME, "*58", &parker);
    assert_eq!(code, 200, "group park with a member named alice.smith\n{}", sim.trace());
    assert_eq!(notified_exts(&sim, alice), ["alice.smith"]);
    assert_eq!(notified_exts(&sim, bob), ["alice.smith"]);
    // The same rule on the feature code: a 64-character extension parks,
    // a 65-character one is not an extension.
    let other = sim.add_phone("201", ACME, None);
    let (code, _) = group_park(&mut sim, other, ACME, &format!("*68{long}"), &parker);
    assert_eq!(code, 200, "*68 with a 64-character extension\n{}", sim.trace());
    let third = sim.add_phone("202", ACME, None);
    let (code, _) = group_park(&mut sim, third, ACME, &format!("*68{long}e"), &parker);
    assert_eq!(code, 404, "65 characters are not an extension");
    // And on REGISTER: no address of the tenant (RFC 3261 §10.3 step 5).
    let too_long = sim.add_phone(&format!("{long}e"), ACME, None);
    assert_eq!(sim.register_ok(too_long, 3600).code(), Some(404));
    // The tenants file refuses what is not an extension.
    let bad = format!("[[tenant]]\ndomain = \"{ACME}\"\npark_groups = [[\"{long}e\"]]\n");
    assert!(parse_tenants(&bad, Config::default().defaults).is_err(), "65 characters in a park group");
    let bad = format!("[[tenant]]\ndomain = \"{ACME}\"\nrecall_group = [\"a b\"]\n");
    assert!(parse_tenants(&bad, Config::default().defaults).is_err(), "a space is not in an extension");
}
