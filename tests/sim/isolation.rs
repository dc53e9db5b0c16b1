//! Tenant isolation across the call-control paths: group park, REFER park,
//! Replaces, retrieve and recall in tenant A never touch tenant B, which has
//! the same extensions, groups and a parked call of its own.

use sipark::proto::config::{Config, parse_tenants};

use crate::fixtures::{ACME, BETA, Office};
use crate::harness::{Sim, ms, secs};
use crate::wire::Msg;

fn config() -> Config {
    let tenant = |d: &str, timeout: u32| {
        format!(
            "[[tenant]]\ndomain = \"{d}\"\npark_timeout = {timeout}\npark_groups = [[\"102\", \"103\", \"105\"]]\n\
             recall_to = \"parker-then-group\"\nrecall_group = [\"103\"]\nrecall_group_delay = 5\nnotify_parker = true\n"
        )
    };
    let text = tenant(ACME, 60) + &tenant(BETA, 3600);
    let base = Config::default();
    let (defaults, tenants) = parse_tenants(&text, base.defaults.clone()).unwrap_or_else(|e| panic!("{e}"));
    Config { defaults, tenants, ..base }
}

/// What tenant B's phones have seen: NOTIFYs, calls, re-INVITEs, BYEs per phone.
fn seen(sim: &Sim, o: &Office) -> Vec<(usize, usize, usize, usize)> {
    [o.alice, o.bob[0], o.bob[1], o.watch[0], o.watch[1], o.carol, o.dave]
        .iter()
        .map(|&p| {
            let ph = &sim.phones[p];
            let reinvites = ph.calls.iter().map(|c| c.reinvites.len()).sum();
            let byes = ph.calls.iter().map(|c| c.byes.len()).sum();
            (ph.notifies.len(), ph.calls.len(), reinvites, byes)
        })
        .collect()
}

fn invite(sim: &mut Sim, phone: usize, ruri: &str, extra: &[String]) -> Msg {
    let now = sim.now;
    let call = sim.phones[phone].invite(now, ruri, extra, true);
    let txn = sim.phones[phone].calls[call].invite_txn.unwrap_or_default();
    let r = sim.final_of(phone, txn, secs(40));
    sim.run_for(ms(200));
    r
}

#[test]
fn every_path_in_one_tenant_leaves_the_other_untouched() {
    // One shard, so that a cross-tenant lookup would find the other's state.
    let mut sim = Sim::new(1, config(), 111);
    let a = sim.office(ACME);
    let b = sim.office(BETA);
    let b_call = sim.park_by_bob(&b, b.alice);
    sim.run_for(secs(1));
    let before = seen(&sim, &b);
    let b_party = sim.phones[b.alice].calls[b_call].clone();

    // Group park in acme: on 102, the first member holding no call.
    let bob = sim.phones[a.bob[0]].party();
    let r = invite(&mut sim, a.alice, "sip:*58@acme.example", &[format!("Referred-By: {bob}")]);
    assert_eq!(r.code(), Some(200), "group park in acme: {r:?}");
    // Retrieve, with an acme From, of beta's extension: refused.
    let r = invite(&mut sim, a.carol, "sip:*88103@beta.example", &[]);
    assert_eq!(r.code(), Some(403), "{r:?}");
    // The retrieve URI of beta's call, from acme: refused.
    let uri = sim.last_notify(b.watch[0]).info().calls[0].retrieve_uri.clone().expect("retrieve URI");
    let r = invite(&mut sim, a.carol, &uri, &[]);
    assert_eq!(r.code(), Some(403), "{r:?}");
    // Replaces naming beta's parked dialog, from acme: refused.
    let replaces = format!(
        "Replaces: {};to-tag={};from-tag={}",
        b_party.call_id,
        b_party.remote_tag.clone().unwrap_or_default(),
        b_party.local_tag
    );
    let r = invite(&mut sim, a.carol, "sip:103@acme.example", &[replaces]);
    assert_eq!(r.code(), Some(403), "{r:?}");
    // acme's call bridged, then REFERred into beta's park: refused.
    let (c, ok) = sim.retrieve(a.carol, "sip:*88102@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}\n{}", sim.trace());
    let now = sim.now;
    let t = sim.phones[a.carol].in_dialog(now, c, "REFER", &["Refer-To: <sip:*68103@beta.example>".to_owned()]);
    assert_eq!(sim.final_of(a.carol, t, secs(5)).code(), Some(403));
    // REFER park inside acme works, and its park times out into a recall
    // (parker, then the group) within acme.
    let t = sim.phones[a.carol].in_dialog(now, c, "REFER", &["Refer-To: <sip:*68105@acme.example>".to_owned()]);
    assert_eq!(sim.final_of(a.carol, t, secs(5)).code(), Some(202));
    sim.hangup(a.carol, c);
    // Carol, the referrer, has no device: the recall group (103) rings at once.
    let ok = sim.run_until(secs(70), |s| !s.phones[a.watch[0]].incoming().is_empty());
    assert!(ok, "acme's recall rings acme's recall group\n{}", sim.trace());
    sim.run_for(secs(40));

    assert_eq!(seen(&sim, &b), before, "beta's phones saw nothing of acme's traffic\n{}", sim.trace());
    // And beta's call is still parked, retrievable by beta.
    let (_, ok) = sim.retrieve(b.carol, "sip:*88103@beta.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}");
    assert_eq!(sim.phones[b.alice].calls[b_call].reinvites.len(), 1);
}
