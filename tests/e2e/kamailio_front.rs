//! sipark behind Kamailio run with the example configurations a carrier starts from,
//! docs/deploy/kamailio.cfg and docs/deploy/kamailio-path.cfg, exactly as shipped (addresses
//! given with `-A NAME=VALUE`, plus `-A WITH_TRACE` for the `KAMTRACE|...` log lines the test
//! reads back; see tests/e2e/kamailio.rs for how Kamailio is run).
//!
//! * Outbound-proxy mode: Kamailio is the tenant's registrar; sipark runs with
//!   `--outbound-proxy sip:KAMAILIO --trust KAMAILIO/32` and sends each park-info NOTIFY (and
//!   recall INVITE) as one request to `sip:<ext>@<tenant>` with a Route naming Kamailio, which
//!   consumes it, looks the extension up and forks to every registered device.
//! * Path (RFC 3327): Kamailio is an edge proxy in front of sipark's own registrar; it adds a
//!   Path (with the phone's source address as `received=`) to each REGISTER, and relays the
//!   requests sipark sends along that Path to the phone.
//!
//! Needs `kamailio` (scripts/install-deps.sh installs it); without it the tests fail saying so.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Ctx, DOMAIN, Engine, Sipp, SippSpec, Variant};
use crate::kamailio::{Kamailio, kamailio_bin};
use crate::sip::{Msg, ParkInfo, Request, Udp, park_info_of, uri_of};

const SEC: Duration = Duration::from_secs(1);

/// A configuration file of docs/deploy/.
fn deploy_config(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("docs").join("deploy").join(file)
}

/// Starts Kamailio on `kam` with docs/deploy/`file`, sipark at `engine` and the test tenant.
fn start_kamailio(ctx: &Ctx, kam: SocketAddr, file: &str, engine: SocketAddr) -> Kamailio {
    let sipark = format!("SIPARK_DU=\"sip:{engine}\"");
    let tenant = format!("TENANT_DOMAIN=\"{DOMAIN}\"");
    Kamailio::start_with(ctx, kam, &deploy_config(file), &[sipark.as_str(), tenant.as_str(), "WITH_TRACE"])
}

/// REGISTERs `ext`@DOMAIN at `kam` from the UDP address `local` (bound for this transaction
/// only, so that a SIPp phone can take the address afterwards) with Contact `contact` and
/// the `extra` headers; returns the final response and its source.
fn register_from(local: SocketAddr, kam: SocketAddr, ext: &str, contact: &str, extra: &[&str]) -> (Msg, SocketAddr) {
    let sock = UdpSocket::bind(local).unwrap_or_else(|e| panic!("cannot bind {local} to register from: {e}"));
    let udp = Udp { sock, addr: local };
    let mut req = Request::new("REGISTER", &format!("sip:{DOMAIN}"), local, ext, &format!("<sip:{ext}@{DOMAIN}>"))
        .header(&format!("Contact: <{contact}>;expires=300"));
    for h in extra {
        req = req.header(h);
    }
    udp.send(kam, &req.render());
    udp.expect(&format!("final response to REGISTER {ext} from {local}"), 5 * SEC, |m| {
        m.status().is_some_and(|s| s >= 200) && m.header("Call-ID") == Some(req.call_id.as_str())
    })
}

/// The contact URIs a REGISTER response lists (comma-separated values split).
fn listed_contacts(m: &Msg) -> Vec<String> {
    m.headers("Contact").iter().flat_map(|v| v.split(',')).map(|c| uri_of(c.trim()).to_string()).collect()
}

/// A SIPp phone (phone.xml) on `addr` answering `notifies` NOTIFYs.
fn sipp_phone(ctx: &Ctx, label: &str, addr: SocketAddr, notifies: u32) -> Sipp {
    Sipp::spawn(ctx, label, SippSpec::uas("phone.xml", addr).calls(notifies).timeout_s(30))
}

/// Checks that `m`, a park-info NOTIFY for `ext` received by a phone, came from sipark
/// (`engine`) through the proxy (`kam`): Request-URI `ruri` (the phone's registered contact),
/// the proxy's Via on top of sipark's and nothing else, no Route left (the proxy consumed its
/// own entry), sipark's From/To/Event; returns the parsed body.
fn check_notify_via_proxy(m: &Msg, ext: &str, ruri: &str, kam: SocketAddr, engine: SocketAddr) -> ParkInfo {
    let ctx = || format!("in the NOTIFY the phone received:\n{}", m.raw);
    assert_eq!(m.request_uri(), Some(ruri), "Request-URI must be the phone's registered contact {}", ctx());
    let vias = m.headers("Via");
    assert!(
        vias.len() == 2
            && vias[0].starts_with(&format!("SIP/2.0/UDP {kam};"))
            && vias[1].starts_with(&format!("SIP/2.0/UDP {engine};"))
            && vias[1].contains("branch=z9hG4bKsp"),
        "the NOTIFY must come from sipark ({engine}) through the proxy ({kam}): Vias {vias:?} {}",
        ctx()
    );
    assert!(m.header("Route").is_none(), "the proxy must have removed its Route entry {}", ctx());
    assert_eq!(uri_of(m.header("From").unwrap_or_default()), format!("sip:park@{DOMAIN}"), "From {}", ctx());
    assert!(m.tag_of("From").is_some_and(|t| !t.is_empty()), "From needs a tag {}", ctx());
    assert_eq!(uri_of(m.header("To").unwrap_or_default()), format!("sip:{ext}@{DOMAIN}"), "To {}", ctx());
    assert!(m.tag_of("To").is_none(), "an out-of-dialog NOTIFY has no To tag {}", ctx());
    assert_eq!(
        m.header("Event").map(|e| e.split(';').next().unwrap_or_default().trim()),
        Some("park-info"),
        "Event {}",
        ctx()
    );
    let info = park_info_of(m);
    assert_eq!(info.extension, ext, "park-info extension {}", ctx());
    assert_eq!(info.domain, DOMAIN, "park-info domain {}", ctx());
    info
}

/// The `n`-th (from 0) distinct NOTIFY `phone` received, waiting at most `limit`; fails early
/// (with its log) if the parked caller's SIPp ends first.
fn nth_notify(phone: &mut Sipp, label: &str, n: usize, limit: Duration, parked: &mut Sipp) -> Msg {
    let deadline = Instant::now() + limit;
    loop {
        let got = crate::harness::distinct_requests(phone.received(), "NOTIFY");
        if let Some(m) = got.into_iter().nth(n) {
            return m;
        }
        if parked.has_exited() {
            panic!("the parked caller's SIPp ended before {label} got NOTIFY #{}", n + 1);
        }
        if phone.has_exited() {
            panic!("{label}'s SIPp ended before NOTIFY #{}", n + 1);
        }
        if Instant::now() > deadline {
            panic!("{label} got no NOTIFY #{} within {limit:?}", n + 1);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the proxy logged that it received the request `method` (Call-ID `call_id`) from
/// sipark with `route` as its whole Route header and `ruri` as Request-URI, and relayed it
/// to each of `to`.
fn check_proxy_relayed(
    kam: &Kamailio,
    engine: SocketAddr,
    method: &str,
    call_id: &str,
    route: &str,
    ruri: &str,
    to: &[SocketAddr],
) {
    let limit = 2 * SEC;
    let t = kam.expect_trace(&format!("{method} {call_id} from sipark {engine}"), limit, |t| {
        t.is("rx-req", method, engine, call_id)
    });
    assert_eq!(
        t.named("route"),
        route,
        "sipark's {method} must carry exactly Route: {route}; the proxy got: {}",
        t.line
    );
    assert_eq!(t.field(3), ruri, "sipark's {method} Request-URI; the proxy got: {}", t.line);
    for dst in to {
        kam.expect_trace(&format!("{method} {call_id} relayed to {dst}"), limit, |t| {
            t.is("tx-req", method, *dst, call_id)
        });
    }
}

/// Checks that sipark got the answers to its NOTIFY `call_id` back through the proxy: the
/// proxy received them from `phones`, and sipark stopped retransmitting (Timer E would have
/// sent it again at least 3 times in the `since` that has passed, 2 s or more, had no answer
/// reached it; one retransmission is allowed for a slow answer).
fn check_notify_answered(kam: &Kamailio, engine: SocketAddr, call_id: &str, phones: &[SocketAddr], since: Instant) {
    for p in phones {
        kam.expect_trace(&format!("200 from {p} to NOTIFY {call_id}"), 2 * SEC, |t| {
            t.is("rx-rpl", "200", *p, call_id) && t.cseq() == "1 NOTIFY"
        });
    }
    let wait = (since + 2 * SEC).saturating_duration_since(Instant::now());
    thread::sleep(wait);
    let sent: Vec<String> =
        kam.traces().into_iter().filter(|t| t.is("rx-req", "NOTIFY", engine, call_id)).map(|t| t.line).collect();
    assert!(
        !sent.is_empty() && sent.len() <= 2,
        "sipark must send NOTIFY {call_id} once and stop when the 200 comes back through the proxy; \
         the proxy received it {} times:\n{}",
        sent.len(),
        sent.join("\n")
    );
}

/// The parked caller (kam_parked.xml) on `addr`, parked at *68`ext` by 102 through `kam`;
/// `hangup` "1": it hangs up after the bridge, "0": it waits for sipark's BYE.
fn parked_via(ctx: &Ctx, addr: SocketAddr, kam: SocketAddr, ext: &str, hangup: &str) -> Sipp {
    Sipp::spawn(
        ctx,
        "parked",
        SippSpec::uac("kam_parked.xml", addr, kam)
            .service(&format!("*68{ext}"))
            .key("caller", "101")
            .key("parker", "102")
            .key("hangup", hangup)
            .pause_ms(200)
            .timeout_s(20),
    )
}

/// The park's 200 OK as the parked leg received it must carry exactly the proxy's
/// Record-Route (sipark adds none).
fn check_park_record_route(parked: &[Msg], kam: SocketAddr) {
    let ok = parked
        .iter()
        .find(|m| m.status() == Some(200) && m.header("CSeq") == Some("1 INVITE"))
        .unwrap_or_else(|| panic!("no 200 OK for the park INVITE in the parked leg's log"));
    let rr = ok.headers("Record-Route");
    assert!(
        rr.len() == 1 && uri_of(rr[0]).starts_with(&format!("sip:{kam};")) && uri_of(rr[0]).contains(";lr"),
        "the park's 200 OK must carry exactly the proxy's Record-Route <sip:{kam};lr...>:\n{}",
        ok.raw
    );
}

// ---------------------------------------------------------------------------------------------
// Outbound-proxy mode: Kamailio is the registrar (docs/deploy/kamailio.cfg)
// ---------------------------------------------------------------------------------------------

pub fn kamailio_registrar_forks_park_notify(v: Variant) {
    kamailio_bin();
    let ctx = Ctx::new("kamailio_registrar_forks_park_notify", 80, v);
    let kam_addr = ctx.addr(2);
    let proxy = format!("sip:{kam_addr}");
    let trust = format!("{}/32", kam_addr.ip());
    let engine = Engine::start(&ctx, &["--no-pin", "--outbound-proxy", &proxy, "--trust", &trust]);
    let kam = start_kamailio(&ctx, kam_addr, "kamailio.cfg", engine.addr);

    // Two devices of extension 103 register at Kamailio (not at sipark).
    let (a, b) = (ctx.addr(5), ctx.addr(6));
    let (ca, cb) = (format!("sip:103@{a}"), format!("sip:103@{b}"));
    for (local, contact, want) in [(a, &ca, vec![ca.clone()]), (b, &cb, vec![ca.clone(), cb.clone()])] {
        let (resp, from) = register_from(local, kam.addr, "103", contact, &[]);
        assert_eq!(resp.status(), Some(200), "REGISTER of {contact} at Kamailio:\n{}", resp.raw);
        assert_eq!(from, kam.addr, "the 200 to REGISTER must come from Kamailio:\n{}", resp.raw);
        let mut listed = listed_contacts(&resp);
        listed.sort();
        assert_eq!(listed, want, "Kamailio's 200 to REGISTER of {contact} must list 103's contacts:\n{}", resp.raw);
    }
    let to_sipark: Vec<String> =
        kam.traces().into_iter().filter(|t| t.kind() == "tx-req" && t.field(1) == "REGISTER").map(|t| t.line).collect();
    assert!(to_sipark.is_empty(), "Kamailio is the registrar here; it relayed REGISTERs:\n{}", to_sipark.join("\n"));
    let mut phone_a = sipp_phone(&ctx, "phoneA", a, 2);
    let mut phone_b = sipp_phone(&ctx, "phoneB", b, 2);

    // A call is parked at *68103 through Kamailio.
    let mut parked = parked_via(&ctx, ctx.addr(3), kam.addr, "103", "0");
    let na = nth_notify(&mut phone_a, "phone A", 0, 10 * SEC, &mut parked);
    let nb = nth_notify(&mut phone_b, "phone B", 0, 10 * SEC, &mut parked);
    let first_at = Instant::now();
    let ia = check_notify_via_proxy(&na, "103", &ca, kam.addr, engine.addr);
    let ib = check_notify_via_proxy(&nb, "103", &cb, kam.addr, engine.addr);
    // One NOTIFY from sipark, forked by Kamailio: same Call-ID, same sipark branch and body.
    let call_id = na.header("Call-ID").unwrap_or_default().to_string();
    assert!(
        nb.header("Call-ID") == Some(call_id.as_str()) && na.headers("Via")[1] == nb.headers("Via")[1],
        "both devices must get the same NOTIFY (one request forked by the proxy):\n{}\n---\n{}",
        na.raw,
        nb.raw
    );
    assert_eq!(na.body(), nb.body(), "the forked NOTIFYs' bodies differ:\n{}\n---\n{}", na.raw, nb.raw);
    let call = crate::only_call(&ia, "parked", &na).clone();
    crate::check_parked_call(&call, &na, "101", "102", "103");
    assert_eq!(ia.version, ib.version, "same park-info version on both devices");
    let route = format!("<{proxy};lr>");
    check_proxy_relayed(&kam, engine.addr, "NOTIFY", &call_id, &route, &format!("sip:103@{DOMAIN}"), &[a, b]);
    check_notify_answered(&kam, engine.addr, &call_id, &[a, b], first_at);

    // Retrieve exactly that call by the <retrieve> URI of the NOTIFY, through Kamailio; the
    // retriever hangs up after the bridge.
    let retrieve_uri = call.retrieve_uri.clone().unwrap_or_default();
    let retriever = Sipp::spawn(
        &ctx,
        "retriever",
        SippSpec::uac("kam_retrieve.xml", ctx.addr(4), kam.addr)
            .key("ruri", &retrieve_uri)
            .key("caller", "104")
            .key("hangup", "1")
            .pause_ms(200)
            .timeout_s(15),
    );
    retriever.wait().assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);
    check_park_record_route(&parked.received(), kam.addr);
    assert!(
        parked.received().iter().any(|m| m.method() == Some("BYE")),
        "the parked leg must get sipark's BYE (through Kamailio) after the retriever hung up"
    );

    // Both devices are told the call left the park.
    let phone_a = phone_a.wait();
    phone_a.assert_ok(2);
    let phone_b = phone_b.wait();
    phone_b.assert_ok(2);
    let mut ids = Vec::new();
    for (phone, contact, label) in [(&phone_a, &ca, "phone A"), (&phone_b, &cb, "phone B")] {
        let notes = crate::harness::distinct_requests(phone.received(), "NOTIFY");
        assert_eq!(notes.len(), 2, "{label} must get exactly 2 NOTIFYs (parked, retrieved)");
        let m = &notes[1];
        let info = check_notify_via_proxy(m, "103", contact, kam.addr, engine.addr);
        crate::check_terminated(&info, m, &call.id, "retrieved");
        assert_eq!(info.version, ia.version + 1, "park-info version + 1 in:\n{}", m.raw);
        ids.push(m.header("Call-ID").unwrap_or_default().to_string());
    }
    assert_eq!(ids[0], ids[1], "the second NOTIFY must also be one request forked to both devices");
    check_proxy_relayed(&kam, engine.addr, "NOTIFY", &ids[0], &route, &format!("sip:103@{DOMAIN}"), &[a, b]);

    drop(kam);
    let mut engine = engine;
    engine.terminate_cleanly(12 * SEC);
}

/// The recall of a call parked too long goes the same way as the NOTIFYs: sipark sends the
/// INVITE to sip:<parker>@<tenant> through Kamailio, which record-routes it and sends it to the
/// parker's registered device; the recalled dialog keeps Kamailio in its route set both ways.
pub fn kamailio_registrar_routes_recall(v: Variant) {
    kamailio_bin();
    let ctx = Ctx::new("kamailio_registrar_routes_recall", 82, v);
    let kam_addr = ctx.addr(2);
    // The proxy URI with an explicit transport this time (the Route is then
    // <sip:KAMAILIO;transport=udp;lr>, which Kamailio recognises as its own just the same).
    let proxy = format!("sip:{kam_addr};transport=udp");
    let trust = format!("{}/32", kam_addr.ip());
    let flags =
        ["--no-pin", "--outbound-proxy", &proxy, "--trust", &trust, "--park-timeout", "2", "--recall-timeout", "5"];
    let engine = Engine::start(&ctx, &flags);
    let kam = start_kamailio(&ctx, kam_addr, "kamailio.cfg", engine.addr);

    // 103 watches the park; 102, the parker, is recalled. Both registered at Kamailio only.
    let (p103, p102) = (ctx.addr(5), ctx.addr(6));
    let (c103, c102) = (format!("sip:103@{p103}"), format!("sip:102@{p102}"));
    for (local, ext, contact) in [(p103, "103", &c103), (p102, "102", &c102)] {
        let (resp, _) = register_from(local, kam.addr, ext, contact, &[]);
        assert_eq!(resp.status(), Some(200), "REGISTER of {contact} at Kamailio:\n{}", resp.raw);
    }
    let phone = sipp_phone(&ctx, "phone103", p103, 2);
    let recall = Sipp::spawn(
        &ctx,
        "recall102",
        SippSpec::uas("kf_recall.xml", p102).key("caller", "102").key("hangup", "1").pause_ms(300).timeout_s(20),
    );

    let started = Instant::now();
    let parked = parked_via(&ctx, ctx.addr(3), kam.addr, "103", "0");
    let recall = recall.wait();
    recall.assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "recall came after {:?}, before the 2 s park timeout",
        started.elapsed()
    );
    check_park_record_route(&parked.received(), kam.addr);
    assert!(
        parked.received().iter().any(|m| m.method() == Some("BYE")),
        "the parked leg must get sipark's BYE (through Kamailio) when the recalled parker hangs up"
    );

    // The recall INVITE as the parker's device received it.
    let got = recall.received();
    let invite = got
        .iter()
        .find(|m| m.method() == Some("INVITE"))
        .unwrap_or_else(|| panic!("no recall INVITE in the parker's log"));
    let ctx_inv = || format!("in the recall INVITE:\n{}", invite.raw);
    assert_eq!(invite.request_uri(), Some(c102.as_str()), "Request-URI: the parker's contact {}", ctx_inv());
    let vias = invite.headers("Via");
    assert!(
        vias.len() == 2
            && vias[0].starts_with(&format!("SIP/2.0/UDP {};", kam.addr))
            && vias[1].starts_with(&format!("SIP/2.0/UDP {};", engine.addr)),
        "the recall must come from sipark through Kamailio: Vias {vias:?} {}",
        ctx_inv()
    );
    assert!(invite.header("Route").is_none(), "Kamailio must have removed its Route entry {}", ctx_inv());
    let rr = invite.headers("Record-Route");
    assert!(
        rr.len() == 1 && uri_of(rr[0]).starts_with(&format!("sip:{};", kam.addr)),
        "the recall must carry exactly Kamailio's Record-Route (sipark adds none) {}",
        ctx_inv()
    );
    let rr = rr[0].to_string();
    assert_eq!(uri_of(invite.header("From").unwrap_or_default()), format!("sip:101@{DOMAIN}"), "From {}", ctx_inv());
    assert_eq!(uri_of(invite.header("To").unwrap_or_default()), format!("sip:102@{DOMAIN}"), "To {}", ctx_inv());
    let call_id = invite.header("Call-ID").unwrap_or_default().to_string();
    let route = format!("<{proxy};lr>");
    check_proxy_relayed(&kam, engine.addr, "INVITE", &call_id, &route, &format!("sip:102@{DOMAIN}"), &[p102]);
    // sipark's ACK of the 200 follows the route set; so does the parker's BYE.
    let t =
        kam.expect_trace("sipark's ACK of the recall's 200", 2 * SEC, |t| t.is("rx-req", "ACK", engine.addr, &call_id));
    assert_eq!(t.named("route"), rr, "sipark's ACK must carry the recall's route set: {}", t.line);
    assert_eq!(t.field(3), c102, "sipark's ACK goes to the parker's Contact: {}", t.line);
    kam.expect_trace("the ACK relayed to the parker", 2 * SEC, |t| t.is("tx-req", "ACK", p102, &call_id));
    let t = kam.expect_trace("the parker's BYE", 2 * SEC, |t| t.is("rx-req", "BYE", p102, &call_id));
    assert_eq!(t.named("route"), rr, "the parker's BYE carries the route set: {}", t.line);
    kam.expect_trace("the parker's BYE relayed to sipark", 2 * SEC, |t| t.is("tx-req", "BYE", engine.addr, &call_id));

    // 103 was told of the park and of the recall.
    let phone = phone.wait();
    phone.assert_ok(2);
    let notes = crate::harness::distinct_requests(phone.received(), "NOTIFY");
    assert_eq!(notes.len(), 2, "103 must get exactly 2 NOTIFYs (parked, recalled)");
    let info = check_notify_via_proxy(&notes[0], "103", &c103, kam.addr, engine.addr);
    let call = crate::only_call(&info, "parked", &notes[0]).clone();
    assert_eq!(call.timeout.as_deref(), Some("2"), "timeout attribute in:\n{}", notes[0].raw);
    let info = check_notify_via_proxy(&notes[1], "103", &c103, kam.addr, engine.addr);
    crate::check_terminated(&info, &notes[1], &call.id, "recalled");

    drop(kam);
    let mut engine = engine;
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// Path: Kamailio is an edge proxy in front of sipark's registrar (docs/deploy/kamailio-path.cfg)
// ---------------------------------------------------------------------------------------------

pub fn kamailio_edge_proxy_path(v: Variant) {
    kamailio_bin();
    let ctx = Ctx::new("kamailio_edge_proxy_path", 81, v);
    let kam_addr = ctx.addr(2);
    let trust = format!("{}/32", kam_addr.ip());
    let engine = Engine::start(&ctx, &["--no-pin", "--trust", &trust]);
    let kam = start_kamailio(&ctx, kam_addr, "kamailio-path.cfg", engine.addr);

    // A phone "behind NAT": its Contact names an address where nothing listens (127.0.N.99);
    // only the source address of its REGISTER, which Kamailio puts in the Path as received=,
    // reaches it.
    let phone = ctx.addr(5);
    let contact = format!("sip:103@{}:{}", ctx.ip(99), phone.port());
    let (resp, from) = register_from(phone, kam.addr, "103", &contact, &["Supported: path"]);
    assert_eq!(resp.status(), Some(200), "REGISTER through Kamailio to sipark:\n{}", resp.raw);
    assert_eq!(from, kam.addr, "the 200 to REGISTER must come back from Kamailio:\n{}", resp.raw);
    assert_eq!(listed_contacts(&resp), vec![contact.clone()], "sipark's 200 must list the contact:\n{}", resp.raw);
    let path = format!("<sip:{};lr;received=sip:{phone}>", kam.addr);
    assert_eq!(
        resp.headers("Path"),
        vec![path.as_str()],
        "sipark's 200 must echo Kamailio's Path to a UA with Supported: path:\n{}",
        resp.raw
    );
    let reg_id = resp.header("Call-ID").unwrap_or_default().to_string();
    kam.expect_trace("the REGISTER relayed to sipark", 2 * SEC, |t| t.is("tx-req", "REGISTER", engine.addr, &reg_id));

    let mut sipp = sipp_phone(&ctx, "phone103", phone, 2);
    let mut parked = parked_via(&ctx, ctx.addr(3), kam.addr, "103", "0");
    let n1 = nth_notify(&mut sipp, "the phone", 0, 10 * SEC, &mut parked);
    let first_at = Instant::now();
    let info = check_notify_via_proxy(&n1, "103", &contact, kam.addr, engine.addr);
    let call = crate::only_call(&info, "parked", &n1).clone();
    crate::check_parked_call(&call, &n1, "101", "102", "103");
    let call_id = n1.header("Call-ID").unwrap_or_default().to_string();
    // sipark sent it to Kamailio with the Path as Route and the contact as Request-URI;
    // Kamailio sent it to the phone's real address.
    check_proxy_relayed(&kam, engine.addr, "NOTIFY", &call_id, &path, &contact, &[phone]);
    check_notify_answered(&kam, engine.addr, &call_id, &[phone], first_at);

    // Retrieve through Kamailio; the retriever hangs up after the bridge.
    let retriever = Sipp::spawn(
        &ctx,
        "retriever",
        SippSpec::uac("kam_retrieve.xml", ctx.addr(4), kam.addr)
            .key("ruri", &format!("sip:*88103@{DOMAIN}"))
            .key("caller", "104")
            .key("hangup", "1")
            .pause_ms(200)
            .timeout_s(15),
    );
    retriever.wait().assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);
    check_park_record_route(&parked.received(), kam.addr);

    let sipp = sipp.wait();
    sipp.assert_ok(2);
    let notes = crate::harness::distinct_requests(sipp.received(), "NOTIFY");
    assert_eq!(notes.len(), 2, "the phone must get exactly 2 NOTIFYs (parked, retrieved)");
    let m = &notes[1];
    let info = check_notify_via_proxy(m, "103", &contact, kam.addr, engine.addr);
    crate::check_terminated(&info, m, &call.id, "retrieved");
    let id = m.header("Call-ID").unwrap_or_default().to_string();
    check_proxy_relayed(&kam, engine.addr, "NOTIFY", &id, &path, &contact, &[phone]);

    drop(kam);
    let mut engine = engine;
    engine.terminate_cleanly(12 * SEC);
}
