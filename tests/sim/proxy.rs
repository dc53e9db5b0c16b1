//! Deployment behind a proxy: outbound-proxy mode (NOTIFYs and recalls to
//! `sip:<ext>@<domain>` through the proxy) and Path (RFC 3327) on the
//! embedded registrar.

use std::net::SocketAddr;

use sipark::proto::config::{Config, OutboundProxy};
use sipark::proto::sip::{Peer, Transport};

use crate::fixtures::ACME;
use crate::harness::{Sim, ms, secs};
use crate::phone::CallState;

/// The address `Sim::add_phone` gives its first phone, which plays the proxy.
const PROXY: &str = "127.0.0.2:5062";

fn proxy_config(uri: &str) -> Config {
    let addr: SocketAddr = PROXY.parse().expect("proxy address");
    let proxy = OutboundProxy { peer: Peer { addr, transport: Transport::Udp }, uri: uri.into() };
    Config { outbound_proxy: Some(proxy), ..Config::default() }
}

#[test]
fn outbound_proxy_gets_one_notify_per_extension_and_the_recall() {
    let mut sim = Sim::new(2, proxy_config("sip:127.0.0.2:5062"), 51);
    let proxy = sim.add_phone("proxy", ACME, None);
    let alice = sim.add_phone("alice", ACME, Some("Alice"));
    assert_eq!(sim.phones[proxy].addr.to_string(), PROXY);
    // The parked extension has a device registered at sipark too: in
    // outbound-proxy mode it is not used, the proxy forks.
    let own = sim.add_phone("103", ACME, None);
    assert_eq!(sim.register_ok(own, 3600).code(), Some(200));

    let call = sim.park(alice, ACME, "103", Some("<sip:101@acme.example>"));
    sim.wait_notifies(proxy, 1, secs(2));
    sim.run_for(ms(500));
    let n = sim.phones[proxy].notifies.clone();
    assert_eq!(n.len(), 1, "one NOTIFY per extension, to the proxy: {n:?}\n{}", sim.trace());
    let m = &n[0].msg;
    assert_eq!(m.ruri(), "sip:103@acme.example", "{m:?}");
    assert_eq!(m.header("Route").as_deref(), Some("<sip:127.0.0.2:5062;lr>"), "{m:?}");
    assert_eq!(m.header("To").as_deref(), Some("<sip:103@acme.example>"), "{m:?}");
    assert_eq!(m.header("Event").as_deref(), Some("park-info"), "{m:?}");
    assert_eq!(n[0].info().calls.len(), 1, "{:?}", n[0].info());
    assert!(sim.phones[own].notifies.is_empty(), "no NOTIFY straight to the registered contact");

    // The park times out: the recall rings sip:101@acme through the proxy.
    let ok = sim.run_until(secs(310), |s| !s.phones[proxy].incoming().is_empty());
    assert!(ok, "recall INVITE through the proxy\n{}", sim.trace());
    let rc = sim.phones[proxy].incoming()[0];
    let inv = sim.phones[proxy].calls[rc].invite.clone().expect("INVITE kept");
    assert_eq!(inv.ruri(), "sip:101@acme.example", "{inv:?}");
    assert_eq!(inv.header("Route").as_deref(), Some("<sip:127.0.0.2:5062;lr>"), "{inv:?}");
    // The proxy's side answers: the parked call is bridged to it.
    sim.run_for(secs(2));
    sim.assert_call_state(proxy, rc, CallState::Confirmed);
    assert_eq!(sim.phones[alice].calls[call].reinvites.len(), 1, "parked leg re-INVITEd on recall");
}

#[test]
fn outbound_proxy_uri_with_lr_and_transport_is_kept() {
    let mut cfg = proxy_config("sip:127.0.0.2:5062;transport=udp;lr");
    cfg.defaults.recall_to = sipark::proto::config::RecallTo::Parker;
    let mut sim = Sim::new(1, cfg, 52);
    let proxy = sim.add_phone("proxy", ACME, None);
    let alice = sim.add_phone("alice", ACME, None);
    sim.park(alice, ACME, "104", Some("<sip:101@acme.example>"));
    sim.wait_notifies(proxy, 1, secs(2));
    let m = &sim.phones[proxy].notifies[0].msg;
    assert_eq!(m.header("Route").as_deref(), Some("<sip:127.0.0.2:5062;transport=udp;lr>"), "{m:?}");
}

#[test]
fn path_is_stored_used_as_route_and_echoed_when_supported() {
    let mut sim = Sim::new(2, Config::default(), 53);
    // Phone 0 plays the edge proxy; phone 1 is the device behind it,
    // whose REGISTER the proxy relays (the sim sends it from the device's
    // own address; the binding's requests must go to the Path's first hop).
    let edge = sim.add_phone("edge", ACME, None);
    let dev = sim.add_phone("103", ACME, None);
    let alice = sim.add_phone("alice", ACME, None);
    let contact = sim.phones[dev].contact_uri();
    let path = "<sip:127.0.0.2:5062;lr;received=sip:10.9.9.9:5060>";
    let r = sim.register_with(dev, &[&format!("<{contact}>")], &[&format!("Path: {path}"), "Supported: path"]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(r.header("Path").as_deref(), Some(path), "Path echoed to a UA that supports it: {r:?}");

    sim.park(alice, ACME, "103", Some("<sip:101@acme.example>"));
    sim.wait_notifies(edge, 1, secs(2));
    let m = &sim.phones[edge].notifies[0].msg;
    assert_eq!(m.ruri(), contact, "Request-URI is the registered contact: {m:?}");
    assert_eq!(m.header("Route").as_deref(), Some(path), "Route is the Path: {m:?}");
    assert!(sim.phones[dev].notifies.is_empty(), "nothing goes around the edge proxy");

    // Without `Supported: path` the Path is still used, but not echoed.
    let r = sim.register_with(dev, &[&format!("<{contact}>")], &[&format!("Path: {path}")]);
    assert_eq!(r.code(), Some(200), "{r:?}");
    assert_eq!(r.header("Path"), None, "{r:?}");
}
