//! `Shard::reconfigure` (SIGHUP): new tenants start, removed tenants take
//! no new parks or registrations, and their parked calls finish.

use std::sync::Arc;

use sipark::proto::config::{Config, parse_tenants};

use crate::fixtures::{ACME, BETA};
use crate::harness::{Sim, ms, secs};

fn config(domains: &[&str], extra: &str) -> Config {
    let text: String = domains.iter().map(|d| format!("[[tenant]]\ndomain = \"{d}\"\n{extra}\n")).collect();
    let base = Config::default();
    let (defaults, tenants) = parse_tenants(&text, base.defaults.clone()).unwrap_or_else(|e| panic!("{e}"));
    Config { defaults, tenants, ..base }
}

fn reload(sim: &mut Sim, cfg: Config) {
    let cfg = Arc::new(cfg);
    let now = sim.now;
    for s in &mut sim.shards {
        s.reconfigure(now, Arc::clone(&cfg));
    }
    sim.cfg = cfg;
}

#[test]
fn a_removed_tenant_keeps_its_parked_calls_and_a_new_one_starts() {
    let mut sim = Sim::new(2, config(&[ACME], "park_timeout = 100"), 101);
    let o = sim.office(ACME);
    let a = sim.park_by_bob(&o, o.alice);
    let d = sim.park(o.dave, ACME, "104", Some("<sip:102@acme.example>"));
    let gamma = sim.add_phone("101", "gamma.example", None);
    assert_eq!(sim.register_ok(gamma, 3600).code(), Some(404), "not a tenant yet");

    reload(&mut sim, config(&[BETA, "gamma.example"], ""));
    assert_eq!(sim.register_ok(gamma, 3600).code(), Some(200), "a new tenant starts");
    // acme takes nothing new...
    let late = sim.add_phone("106", ACME, None);
    let call = sim.start_park(late, ACME, "105", Some("<sip:102@acme.example>"));
    let txn = sim.phones[late].calls[call].invite_txn.unwrap_or_default();
    assert_eq!(sim.final_of(late, txn, secs(5)).code(), Some(404));
    assert_eq!(sim.register_ok(late, 3600).code(), Some(404));
    // ...but its parked calls are still there: one is retrieved,
    let (_, ok) = sim.retrieve(o.carol, "sip:*88103@acme.example");
    assert_eq!(ok.code(), Some(200), "{ok:?}\n{}", sim.trace());
    assert_eq!(sim.phones[o.alice].calls[a].reinvites.len(), 1);
    // the other is recalled at its old park timeout (100 s, the removed
    // tenant's, not the default 300 s) to the parker's devices.
    let ok = sim.run_until(secs(101), |s| !s.phones[o.bob[0]].incoming().is_empty());
    assert!(ok, "recall of the removed tenant's call\n{}", sim.trace());
    assert!(sim.phones[o.dave].calls[d].byes.is_empty());
    sim.run_for(ms(500));
    assert_eq!(sim.stat(|s| s.parks.get()), 2, "no third park");
}
