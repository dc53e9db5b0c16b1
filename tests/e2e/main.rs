//! End-to-end tests: the real `sipark` binary on loopback, driven by SIPp scenarios
//! (tests/sipp/*.xml) and Rust UDP endpoints. Needs `sipp` on PATH (scripts/install-deps.sh);
//! without it every test fails with a message saying so. The music-on-hold test (`moh`) also
//! runs baresip phones and captures `lo` with a packet socket, so it needs `baresip` and root.
//!
//! Each test owns a 127.0.NET.0/24 network (see `harness`), so they run in parallel.

mod auth;
mod baresip;
mod callcontrol;
mod harness;
mod kamailio;
mod kamailio_front;
mod moh;
mod refer;
mod reload;
mod sip;
mod sniff;
mod stream;
mod torture;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use auth::{
    auth_acl_miss_is_refused, auth_digest_answers, auth_guesser_is_banned,
    auth_reload_trusting_a_banned_source_lifts_its_ban, auth_sipp_phone_registers_with_md5,
    auth_wrong_password_never_parks_or_retrieves,
};
use callcontrol::{
    callcontrol_cancel_park, callcontrol_cancel_retrieve, callcontrol_delayed_offer_park,
    callcontrol_delayed_offer_retrieve, callcontrol_replaces_retrieve,
};
use harness::{Ctx, DOMAIN, Engine, Sipp, SippSpec, Variant, distinct_requests, register_with_sipp};
use kamailio::park_and_retrieve_through_kamailio;
use kamailio_front::{
    kamailio_edge_proxy_path, kamailio_registrar_forks_park_notify, kamailio_registrar_routes_recall,
};
use moh::moh_baresip_hears_music_until_retrieved;
use refer::{refer_parks_the_other_leg, refer_refused_keeps_bridge, refer_relayed_blind_transfer};
use reload::{
    reload_adds_and_removes_tenants, reload_bad_file_keeps_config, reload_tls_certificates,
    reload_tls_tenant_certificates_only,
};
use sip::{Agent, Msg, ParkInfo, Request, park_info_of, response, sdp, uri_of};
use torture::torture_messages_over_udp_and_tcp;

const SEC: Duration = Duration::from_secs(1);

// Every test runs three times: as root with the defaults (io_uring, steering), with `--io mmsg`,
// and restricted the way a locked-down container is (see `Variant::Restricted`).
macro_rules! variants {
    ($($name:ident),* $(,)?) => {
        mod default {
            $( #[test] fn $name() { super::$name(super::Variant::Default) } )*
        }
        mod mmsg {
            $( #[test] fn $name() { super::$name(super::Variant::Mmsg) } )*
        }
        mod restricted {
            $( #[test] fn $name() { super::$name(super::Variant::Restricted) } )*
        }
    };
}

variants!(
    torture_messages_over_udp_and_tcp,
    park_notify_then_hangup,
    park_retrieve_bridge_bye_both_ways,
    retrieve_by_notify_uri,
    park_timeout_recall_answered,
    park_timeout_without_answer,
    thousand_park_cycles,
    options_subscribe_unknown_method,
    registrar_and_error_responses,
    sigterm_while_parked,
    final_responses_have_to_tag,
    notify_retransmitted_until_answered,
    strict_tenants_file,
    park_and_retrieve_through_kamailio,
    kamailio_registrar_forks_park_notify,
    kamailio_registrar_routes_recall,
    kamailio_edge_proxy_path,
    callcontrol_replaces_retrieve,
    callcontrol_delayed_offer_park,
    callcontrol_delayed_offer_retrieve,
    callcontrol_cancel_retrieve,
    callcontrol_cancel_park,
    reload_adds_and_removes_tenants,
    reload_bad_file_keeps_config,
    reload_tls_certificates,
    reload_tls_tenant_certificates_only,
    refer_parks_the_other_leg,
    refer_relayed_blind_transfer,
    refer_refused_keeps_bridge,
    auth_sipp_phone_registers_with_md5,
    auth_digest_answers,
    auth_wrong_password_never_parks_or_retrieves,
    auth_acl_miss_is_refused,
    auth_guesser_is_banned,
    auth_reload_trusting_a_banned_source_lifts_its_ban,
    moh_baresip_hears_music_until_retrieved,
);

/// Checks the headers wire.md prescribes for a park-info NOTIFY sent to the contact `contact`
/// of `ext`@DOMAIN by the engine at `engine`.
fn check_notify(m: &Msg, ext: &str, contact: SocketAddr, engine: SocketAddr) {
    let ctx = || format!("in NOTIFY:\n{}", m.raw);
    assert_eq!(
        m.request_uri(),
        Some(format!("sip:{ext}@{contact}").as_str()),
        "Request-URI must be the registered Contact {}",
        ctx()
    );
    let via = m.header("Via").unwrap_or_default();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP {engine};")) && via.contains("branch=z9hG4bKsp"),
        "Via must be sipark's (`SIP/2.0/UDP {engine};branch=z9hG4bKsp...`) {}",
        ctx()
    );
    let from = m.header("From").unwrap_or_default();
    assert_eq!(uri_of(from), format!("sip:park@{DOMAIN}"), "From {}", ctx());
    assert!(m.tag_of("From").is_some(), "From needs a tag {}", ctx());
    assert_eq!(uri_of(m.header("To").unwrap_or_default()), format!("sip:{ext}@{DOMAIN}"), "To {}", ctx());
    assert_eq!(m.header("CSeq"), Some("1 NOTIFY"), "CSeq {}", ctx());
    let contact_uri = uri_of(m.header("Contact").unwrap_or_default());
    let ok_contact = contact_uri
        .strip_prefix("sip:sp")
        .and_then(|r| r.strip_suffix(&format!(".sipark@{engine}")))
        .is_some_and(|shard| !shard.is_empty() && shard.bytes().all(|b| b.is_ascii_digit()));
    assert!(ok_contact, "Contact must be <sip:sp<shard>.sipark@{engine}> {}", ctx());
    assert_eq!(
        m.header("Event").map(|e| e.split(';').next().unwrap_or_default().trim()),
        Some("park-info"),
        "Event {}",
        ctx()
    );
    assert!(
        m.header("Subscription-State").is_some_and(|s| s.starts_with("active")),
        "Subscription-State: active {}",
        ctx()
    );
    assert_eq!(m.header("Content-Type"), Some("application/park-info+xml"), "Content-Type {}", ctx());
    let info = park_info_of(m);
    assert_eq!(info.extension, ext, "park-info extension {}", ctx());
    assert_eq!(info.domain, DOMAIN, "park-info domain {}", ctx());
}

/// The one call of a park-info document that has `state` (panics unless exactly one).
fn only_call<'a>(info: &'a ParkInfo, state: &str, m: &Msg) -> &'a sip::ParkCall {
    let calls: Vec<_> = info.calls.iter().filter(|c| c.state == state).collect();
    assert_eq!(calls.len(), 1, "expected exactly one call with state=\"{state}\" in NOTIFY:\n{}", m.raw);
    calls[0]
}

/// Asserts a freshly parked call as listed in a NOTIFY.
fn check_parked_call(c: &sip::ParkCall, m: &Msg, caller: &str, parker: &str, ext: &str) {
    let ctx = || format!("in NOTIFY:\n{}", m.raw);
    assert_eq!(c.state, "parked", "{}", ctx());
    assert!(c.reason.is_none(), "a parked call has no reason {}", ctx());
    assert_eq!(c.parked_uri.as_deref(), Some(format!("sip:{caller}@{DOMAIN}").as_str()), "<parked uri> {}", ctx());
    assert_eq!(c.parker_uri.as_deref(), Some(format!("sip:{parker}@{DOMAIN}").as_str()), "<parker uri> {}", ctx());
    assert_eq!(
        c.retrieve_uri.as_deref(),
        Some(format!("sip:*88{ext}@{DOMAIN};call={}", c.id).as_str()),
        "<retrieve uri> must be sip:*88{ext}@{DOMAIN};call=<id> {}",
        ctx()
    );
}

/// Asserts the call `id` is listed as terminated with `reason` (and no retrieve URI).
fn check_terminated(info: &ParkInfo, m: &Msg, id: &str, reason: &str) {
    let c = info.call(id).unwrap_or_else(|| panic!("call {id} missing from NOTIFY:\n{}", m.raw));
    assert_eq!(c.state, "terminated", "call {id} in NOTIFY:\n{}", m.raw);
    assert_eq!(c.reason.as_deref(), Some(reason), "call {id} reason in NOTIFY:\n{}", m.raw);
    assert!(c.retrieve_uri.is_none(), "a terminated call has no <retrieve> in NOTIFY:\n{}", m.raw);
}

/// Starts a SIPp phone (phone.xml) for `ext` on 127.0.NET.host: registers it with
/// register.xml from the same address, then listens for `notifies` NOTIFYs.
fn sipp_phone(ctx: &Ctx, engine: &Engine, host: u8, ext: &str, notifies: u32) -> (Sipp, SocketAddr) {
    let addr = ctx.addr(host);
    register_with_sipp(ctx, engine, &format!("register{ext}"), addr, ext);
    let phone =
        Sipp::spawn(ctx, &format!("phone{ext}"), SippSpec::uas("phone.xml", addr).calls(notifies).timeout_s(60));
    (phone, addr)
}

/// parked.xml: a caller parked at `ext` by `parker`.
fn parked_spec(ctx: &Ctx, engine: &Engine, host: u8, caller: &str, parker: &str, ext: &str) -> SippSpec {
    SippSpec::uac("parked.xml", ctx.addr(host), engine.addr)
        .service(&format!("*68{ext}"))
        .key("caller", caller)
        .key("parker", parker)
        .key("hangup", "0")
        .pause_ms(200)
}

/// retrieve.xml with Request-URI `ruri`.
fn retrieve_spec(ctx: &Ctx, engine: &Engine, host: u8, ruri: &str, caller: &str) -> SippSpec {
    SippSpec::uac("retrieve.xml", ctx.addr(host), engine.addr)
        .key("ruri", ruri)
        .key("caller", caller)
        .key("hangup", "0")
        .pause_ms(200)
}

/// (session id, version) of sipark's `o=sipark <sess> <ver> IN IP4 <host>` line in `m`'s SDP.
fn sipark_origin(m: &Msg, engine: SocketAddr) -> (String, u64) {
    let line = m.body().lines().find(|l| l.starts_with("o=")).unwrap_or_else(|| panic!("no o= line in:\n{}", m.raw));
    let f: Vec<&str> = line[2..].split_whitespace().collect();
    assert!(
        f.len() == 6 && f[0] == "sipark" && f[3] == "IN" && f[5] == engine.ip().to_string(),
        "o= must be sipark's origin `o=sipark <sess> <ver> IN IP4 {}`:\n{}",
        engine.ip(),
        m.raw
    );
    let ver = f[2].parse().unwrap_or_else(|e| panic!("o= version not a number ({e}):\n{}", m.raw));
    (f[1].to_string(), ver)
}

/// Checks the re-INVITE sipark sent the parked leg (messages as logged by parked.xml, which
/// parked `caller` from `parked_ip` at *68`ext`): in the park dialog with From/To swapped,
/// Request-URI = the parked leg's Contact, and sipark's origin with the version + 1.
fn check_reinvite(got: &[Msg], caller: &str, ext: &str, parked_ip: std::net::Ipv4Addr, engine: SocketAddr) {
    let ok = got
        .iter()
        .find(|m| m.status() == Some(200) && m.header("CSeq") == Some("1 INVITE"))
        .expect("the park's 200 OK in the parked leg's log");
    let reinvite = got.iter().find(|m| m.method() == Some("INVITE")).expect("the re-INVITE in the parked leg's log");
    let ctx = || format!("re-INVITE:\n{}\n--- park 200 OK:\n{}", reinvite.raw, ok.raw);
    assert!(
        reinvite.request_uri().is_some_and(|u| u.starts_with(&format!("sip:{caller}@{parked_ip}:"))),
        "Request-URI must be the parked leg's Contact; {}",
        ctx()
    );
    assert_eq!(reinvite.header("Call-ID"), ok.header("Call-ID"), "same dialog; {}", ctx());
    assert_eq!(reinvite.tag_of("From"), ok.tag_of("To"), "From tag = sipark's tag; {}", ctx());
    assert_eq!(uri_of(reinvite.header("From").unwrap_or_default()), format!("sip:*68{ext}@{DOMAIN}"), "{}", ctx());
    assert_eq!(uri_of(reinvite.header("To").unwrap_or_default()), format!("sip:{caller}@{DOMAIN}"), "{}", ctx());
    assert_eq!(reinvite.tag_of("To"), ok.tag_of("From"), "To tag = the parked leg's tag; {}", ctx());
    assert!(
        reinvite.header("Via").is_some_and(|v| v.starts_with(&format!("SIP/2.0/UDP {engine};"))),
        "Via must be sipark's; {}",
        ctx()
    );
    let (sess0, v0) = sipark_origin(ok, engine);
    let (sess1, v1) = sipark_origin(reinvite, engine);
    assert_eq!(sess1, sess0, "same o= session id on the parked leg; {}", ctx());
    assert_eq!(v1, v0 + 1, "o= version + 1 in the re-INVITE; {}", ctx());
}

/// NOTIFYs (distinct Call-IDs) a SIPp phone received, parsed, in arrival order.
fn notifies_of(msgs: Vec<Msg>) -> Vec<(Msg, ParkInfo)> {
    distinct_requests(msgs, "NOTIFY")
        .into_iter()
        .map(|m| {
            let info = park_info_of(&m);
            (m, info)
        })
        .collect()
}

fn assert_versions_increase(notes: &[(Msg, ParkInfo)]) {
    for w in notes.windows(2) {
        assert_eq!(
            w[1].1.version,
            w[0].1.version + 1,
            "park-info version must grow by 1 per change:\n{}\n---\n{}",
            w[0].0.raw,
            w[1].0.raw
        );
    }
}

// ---------------------------------------------------------------------------------------------
// a. park -> NOTIFY -> hangup -> NOTIFY terminated
// ---------------------------------------------------------------------------------------------

fn park_notify_then_hangup(v: Variant) {
    let ctx = Ctx::new("park_notify_then_hangup", 11, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);

    let caller = Sipp::spawn(
        &ctx,
        "caller",
        SippSpec::uac("park_hangup.xml", ctx.addr(3), engine.addr)
            .service("*68103")
            .key("caller", "101")
            .key("parker", "102")
            .pause_ms(300),
    );
    caller.wait().assert_ok(1);
    let phone = phone.wait();
    phone.assert_ok(2);

    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 2, "phone must get exactly 2 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let (m1, i1) = &notes[0];
    let parked = only_call(i1, "parked", m1);
    check_parked_call(parked, m1, "101", "102", "103");
    assert_eq!(parked.parked_display.as_deref(), Some("Alice"), "display in:\n{}", m1.raw);
    assert_eq!(parked.timeout.as_deref(), Some("300"), "default park timeout in:\n{}", m1.raw);
    assert_eq!(i1.calls.len(), 1, "one call in:\n{}", m1.raw);
    let (m2, i2) = &notes[1];
    check_terminated(i2, m2, &parked.id, "hangup");
    assert!(i2.parked().is_empty(), "nothing parked any more:\n{}", m2.raw);
    assert_versions_increase(&notes);

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// b. park -> retrieve *88103 -> bridge -> BYE (retriever hangs up, then parked party hangs up)
// ---------------------------------------------------------------------------------------------

fn park_retrieve_bridge_bye_both_ways(v: Variant) {
    let ctx = Ctx::new("park_retrieve_bridge_bye_both_ways", 12, v);
    let _engine = Engine::start(&ctx, &["--no-pin"]);
    let engine = &_engine;
    let (mut phone, phone_addr) = sipp_phone(&ctx, engine, 2, "103", 4);
    let ruri = format!("sip:*88103@{DOMAIN}");

    // Round 1: the retriever hangs up; sipark sends BYE to the parked leg.
    let parked = Sipp::spawn(&ctx, "parked1", parked_spec(&ctx, engine, 3, "101", "102", "103"));
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    let retriever = Sipp::spawn(&ctx, "retriever1", retrieve_spec(&ctx, engine, 4, &ruri, "104").key("hangup", "1"));
    retriever.wait().assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);
    let got = parked.received();
    check_reinvite(&got, "101", "103", ctx.ip(3), engine.addr);
    assert!(
        got.iter().any(|m| m.method() == Some("BYE")),
        "parked leg 1 must get sipark's BYE after the retriever hung up"
    );
    phone.wait_requests("NOTIFY", 2, 10 * SEC);

    // Round 2: the parked party hangs up; sipark sends BYE to the retriever.
    let parked = Sipp::spawn(&ctx, "parked2", parked_spec(&ctx, engine, 5, "105", "102", "103").key("hangup", "1"));
    phone.wait_requests("NOTIFY", 3, 10 * SEC);
    let retriever = Sipp::spawn(&ctx, "retriever2", retrieve_spec(&ctx, engine, 6, &ruri, "106"));
    let retriever = retriever.wait();
    retriever.assert_ok(1);
    assert!(
        retriever.received().iter().any(|m| m.method() == Some("BYE")),
        "retriever 2 must get sipark's BYE after the parked party hung up"
    );
    let parked = parked.wait();
    parked.assert_ok(1);
    check_reinvite(&parked.received(), "105", "103", ctx.ip(5), engine.addr);

    let phone = phone.wait();
    phone.assert_ok(4);
    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 4);
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c1 = only_call(&notes[0].1, "parked", &notes[0].0);
    check_parked_call(c1, &notes[0].0, "101", "102", "103");
    check_terminated(&notes[1].1, &notes[1].0, &c1.id, "retrieved");
    let c2 = only_call(&notes[2].1, "parked", &notes[2].0);
    check_parked_call(c2, &notes[2].0, "105", "102", "103");
    assert_ne!(c1.id, c2.id, "call ids must differ");
    check_terminated(&notes[3].1, &notes[3].0, &c2.id, "retrieved");
    assert_versions_increase(&notes);
}

// ---------------------------------------------------------------------------------------------
// c. retrieve exactly the call named by the <retrieve> URI of a NOTIFY
// ---------------------------------------------------------------------------------------------

fn retrieve_by_notify_uri(v: Variant) {
    let ctx = Ctx::new("retrieve_by_notify_uri", 13, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let phone = Agent::phone(ctx.udp(2));
    let mut seen = Vec::new();
    let reg = phone.transact(engine.addr, &sip::register(phone.addr, "103", 300));
    assert_eq!(reg.status(), Some(200), "REGISTER:\n{}", reg.raw);

    // Two parked calls: A (older) and B.
    let a = Sipp::spawn(&ctx, "parkedA", parked_spec(&ctx, &engine, 3, "201", "102", "103"));
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    check_notify(&m, "103", phone.addr, engine.addr);
    let call_a = only_call(&info, "parked", &m).clone();
    check_parked_call(&call_a, &m, "201", "102", "103");
    let v1 = info.version;

    let mut b = Sipp::spawn(&ctx, "parkedB", parked_spec(&ctx, &engine, 4, "202", "102", "103"));
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    assert_eq!(info.version, v1 + 1, "version +1:\n{}", m.raw);
    assert_eq!(info.parked().len(), 2, "both calls listed as parked:\n{}", m.raw);
    let call_b = info
        .parked()
        .into_iter()
        .find(|c| c.id != call_a.id)
        .cloned()
        .unwrap_or_else(|| panic!("call B missing:\n{}", m.raw));
    check_parked_call(&call_b, &m, "202", "102", "103");
    assert_eq!(info.calls[0].id, call_a.id, "parked calls are listed oldest first:\n{}", m.raw);

    // A phone that registers now immediately gets the current state (same version).
    let late = Agent::phone(ctx.udp(9));
    let reg = late.transact(engine.addr, &sip::register(late.addr, "103", 300));
    assert_eq!(reg.status(), Some(200), "REGISTER:\n{}", reg.raw);
    let mut late_seen = Vec::new();
    let (lm, linfo) = late.next_notify(&mut late_seen, 5 * SEC);
    check_notify(&lm, "103", late.addr, engine.addr);
    assert_eq!(linfo.version, info.version, "state NOTIFY on REGISTER:\n{}", lm.raw);
    assert_eq!(linfo.parked().len(), 2, "state NOTIFY on REGISTER:\n{}", lm.raw);
    // ... and stops getting NOTIFYs once it unregisters.
    let unreg = late.transact(engine.addr, &sip::register(late.addr, "103", 0));
    assert_eq!(unreg.status(), Some(200), "unREGISTER:\n{}", unreg.raw);
    assert!(
        unreg.headers("Contact").iter().all(|c| !c.contains(&late.addr.to_string())),
        "removed binding still listed:\n{}",
        unreg.raw
    );

    // Retrieve B (the newer one) by its URI: B is bridged, A stays parked.
    let uri_b = call_b.retrieve_uri.clone().expect("retrieve uri");
    let r = Sipp::spawn(&ctx, "retrieverB", retrieve_spec(&ctx, &engine, 5, &uri_b, "104").key("hangup", "1"));
    r.wait().assert_ok(1);
    b.wait_requests("BYE", 1, 5 * SEC);
    let b = b.wait();
    b.assert_ok(1);
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    assert_eq!(info.version, v1 + 2, "version +1:\n{}", m.raw);
    check_terminated(&info, &m, &call_b.id, "retrieved");
    let still = only_call(&info, "parked", &m);
    assert_eq!(still.id, call_a.id, "A must still be parked:\n{}", m.raw);
    // (Retransmissions of the NOTIFY it already answered do not count.)
    let deadline = Instant::now() + Duration::from_millis(300);
    while let Some(m) = late.try_next(deadline.saturating_duration_since(Instant::now())) {
        let old = m.method() == Some("NOTIFY") && late_seen.iter().any(|id| Some(id.as_str()) == m.header("Call-ID"));
        assert!(old, "an unregistered contact must not get new requests, got:\n{}", m.raw);
    }

    // Retrieve A by its URI.
    let uri_a = call_a.retrieve_uri.clone().expect("retrieve uri");
    let r = Sipp::spawn(&ctx, "retrieverA", retrieve_spec(&ctx, &engine, 6, &uri_a, "104").key("hangup", "1"));
    r.wait().assert_ok(1);
    a.wait().assert_ok(1);
    let (m, info) = phone.next_notify(&mut seen, 10 * SEC);
    check_terminated(&info, &m, &call_a.id, "retrieved");
    assert!(info.parked().is_empty(), "nothing parked:\n{}", m.raw);

    // Nothing parked any more: *88103 -> 404.
    let req =
        Request::new("INVITE", &format!("sip:*88103@{DOMAIN}"), phone.addr, "104", &format!("<sip:*88103@{DOMAIN}>"))
            .header(&format!("Contact: <sip:104@{}>", phone.addr))
            .sdp(&sdp(phone.addr, "e2e"));
    let resp = phone.transact(engine.addr, &req);
    assert_eq!(resp.status(), Some(404), "retrieve with nothing parked:\n{}", resp.raw);
    phone.send(engine.addr, &ack_non_2xx(&req, &resp));

    engine.terminate_cleanly(12 * SEC);
}

/// A call parked from a Rust socket (INVITE *68<ext> with SDP, 200 OK, ACK).
struct RustPark {
    invite: Request,
    /// sipark's Contact: the Request-URI of in-dialog requests.
    remote: String,
    /// The To header of the 200 OK (with sipark's tag).
    to: String,
}

impl RustPark {
    fn park(me: &sip::Udp, engine: SocketAddr, ext: &str, caller: &str, parker: &str) -> RustPark {
        let uri = format!("sip:*68{ext}@{DOMAIN}");
        let invite = Request::new("INVITE", &uri, me.addr, caller, &format!("<{uri}>"))
            .header(&format!("Contact: <sip:{caller}@{}>", me.addr))
            .header(&format!("Referred-By: <sip:{parker}@{DOMAIN}>"))
            .sdp(&sdp(me.addr, "e2e"));
        me.send(engine, &invite.render());
        // wire.md: the park is answered 200 OK directly, without 100 Trying.
        let (ok, _) = me.expect("response to the park INVITE", 5 * SEC, |m| {
            m.status().is_some() && m.header("Call-ID") == Some(invite.call_id.as_str())
        });
        assert_eq!(ok.status(), Some(200), "park (no 100 Trying first):\n{}", ok.raw);
        assert!(ok.body().contains("a=inactive"), "park answer must be a=inactive:\n{}", ok.raw);
        sipark_origin(&ok, engine);
        assert!(ok.header("Via").is_some_and(|v| v.contains(&invite.branch)), "Via echoed:\n{}", ok.raw);
        let park = RustPark {
            remote: uri_of(ok.header("Contact").unwrap_or_default()).to_string(),
            to: ok.header("To").unwrap_or_default().to_string(),
            invite,
        };
        me.send(engine, &park.in_dialog("ACK", 1).render());
        park
    }

    /// A request in the park dialog from the parked leg.
    fn in_dialog(&self, method: &str, cseq: u32) -> Request {
        let mut r = Request::new(method, &self.remote, self.invite.via, "x", &self.to);
        r.from = self.invite.from.clone();
        r.call_id = self.invite.call_id.clone();
        r.cseq = cseq;
        r
    }

    fn bye(&self, me: &sip::Udp, engine: SocketAddr) -> Msg {
        me.transact(engine, &self.in_dialog("BYE", 2))
    }
}

/// The ACK for a non-2xx final response to INVITE `req` (same branch, To with the tag).
fn ack_non_2xx(req: &Request, resp: &Msg) -> String {
    format!(
        "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={};rport\r\nFrom: {}\r\nTo: {}\r\n\
         Call-ID: {}\r\nCSeq: {} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        req.uri,
        req.via,
        req.branch,
        req.from,
        resp.header("To").unwrap_or_default(),
        req.call_id,
        req.cseq
    )
}

// ---------------------------------------------------------------------------------------------
// d. park timeout -> recall answered by the parker's phone
// ---------------------------------------------------------------------------------------------

fn park_timeout_recall_answered(v: Variant) {
    let ctx = Ctx::new("park_timeout_recall_answered", 14, v);
    let mut engine = Engine::start(&ctx, &["--no-pin", "--park-timeout", "2", "--recall-timeout", "5"]);
    let (phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);
    let parker_addr = ctx.addr(3);
    register_with_sipp(&ctx, &engine, "register102", parker_addr, "102");
    let recall = Sipp::spawn(
        &ctx,
        "recall102",
        SippSpec::uas("recall.xml", parker_addr).key("caller", "102").key("hangup", "1").pause_ms(300),
    );

    let started = Instant::now();
    let parked = Sipp::spawn(&ctx, "parked", parked_spec(&ctx, &engine, 4, "101", "102", "103"));
    let recall = recall.wait();
    recall.assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "recall came after {:?}, before the 2 s park timeout",
        started.elapsed()
    );

    let got = recall.received();
    let invite = got.iter().find(|m| m.method() == Some("INVITE")).expect("recall INVITE");
    assert_eq!(
        uri_of(invite.header("From").unwrap_or_default()),
        format!("sip:101@{DOMAIN}"),
        "recall From must be the parked party:\n{}",
        invite.raw
    );
    assert_eq!(
        uri_of(invite.header("To").unwrap_or_default()),
        format!("sip:102@{DOMAIN}"),
        "recall To must be the parker:\n{}",
        invite.raw
    );
    assert!(invite.body().is_empty(), "recall INVITE has no SDP:\n{}", invite.raw);
    let got = parked.received();
    check_reinvite(&got, "101", "103", ctx.ip(4), engine.addr);
    assert!(
        got.iter().any(|m| m.method() == Some("BYE")),
        "the parked leg must get BYE when the recalled parker hangs up"
    );

    let phone = phone.wait();
    phone.assert_ok(2);
    let notes = notifies_of(phone.received());
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c = only_call(&notes[0].1, "parked", &notes[0].0);
    assert_eq!(c.timeout.as_deref(), Some("2"), "timeout attr:\n{}", notes[0].0.raw);
    check_terminated(&notes[1].1, &notes[1].0, &c.id, "recalled");
    assert_versions_increase(&notes);

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// d2. park timeout without a recall answer: parker unregistered, or ringing past the recall
//     timeout -> BYE to the parked leg, NOTIFY reason="timeout"
// ---------------------------------------------------------------------------------------------

fn park_timeout_without_answer(v: Variant) {
    let ctx = Ctx::new("park_timeout_without_answer", 15, v);
    let _engine = Engine::start(&ctx, &["--no-pin", "--park-timeout", "1", "--recall-timeout", "2"]);
    let engine = &_engine;
    let phone103 = Agent::phone(ctx.udp(2));
    let phone104 = Agent::phone(ctx.udp(3));
    // The parker 102 rings but never answers; it answers CANCEL as a phone would.
    let parker = Agent::spawn(
        ctx.udp(4),
        Box::new(|udp, m, from| match m.method() {
            Some("INVITE") => udp.send(from, &response(m, 180, "Ringing", Some("e2eparker"), &[])),
            Some("CANCEL") => {
                udp.send(from, &response(m, 200, "OK", Some("e2eparker"), &[]));
                let mut inv = m.clone();
                inv.raw = inv.raw.replacen("CANCEL", "INVITE", 1).replace(" CANCEL\r\n", " INVITE\r\n");
                udp.send(from, &response(&inv, 487, "Request Terminated", Some("e2eparker"), &[]));
            }
            Some("NOTIFY" | "OPTIONS" | "BYE") => {
                udp.send(from, &response(m, 200, "OK", Some("e2eparker"), &[]));
            }
            _ => {}
        }),
    );
    for (agent, ext) in [(&phone103, "103"), (&phone104, "104"), (&parker, "102")] {
        let reg = agent.transact(engine.addr, &sip::register(agent.addr, ext, 300));
        assert_eq!(reg.status(), Some(200), "REGISTER {ext}:\n{}", reg.raw);
    }

    let started = Instant::now();
    // A: parked at 103 by 109, who is not registered: no recall possible.
    let a = Sipp::spawn(&ctx, "parkedA", parked_spec(&ctx, engine, 5, "101", "109", "103"));
    // B: parked at 104 by 102, whose phone rings forever.
    let b = Sipp::spawn(&ctx, "parkedB", parked_spec(&ctx, engine, 6, "105", "102", "104"));

    let recall = parker.expect("recall INVITE", 10 * SEC, |m| m.method() == Some("INVITE"));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "recall after {:?}, before the 1 s park timeout",
        started.elapsed()
    );
    assert_eq!(uri_of(recall.header("From").unwrap_or_default()), format!("sip:105@{DOMAIN}"));
    assert_eq!(uri_of(recall.header("To").unwrap_or_default()), format!("sip:102@{DOMAIN}"));
    assert!(recall.body().is_empty(), "recall INVITE has no SDP:\n{}", recall.raw);

    let a = a.wait();
    a.assert_ok(1);
    let b = b.wait();
    b.assert_ok(1);
    for (out, who) in [(&a, "A"), (&b, "B")] {
        let got = out.received();
        assert!(got.iter().any(|m| m.method() == Some("BYE")), "parked leg {who} must get BYE");
        assert!(!got.iter().any(|m| m.method() == Some("INVITE")), "parked leg {who} must not be re-INVITEd");
    }
    assert!(
        b.elapsed >= Duration::from_millis(2800),
        "B ended after {:?}, before park timeout + recall timeout (3 s)",
        b.elapsed
    );

    // The ringing recall is given up with CANCEL (same transaction), and our 487 is ACKed.
    let cancel = parker.expect("CANCEL of the recall", 5 * SEC, |m| m.method() == Some("CANCEL"));
    assert_eq!(cancel.header("Call-ID"), recall.header("Call-ID"), "CANCEL:\n{}", cancel.raw);
    assert_eq!(cancel.header("Via"), recall.header("Via"), "CANCEL must match the INVITE's branch:\n{}", cancel.raw);
    parker.expect("ACK of the 487", 5 * SEC, |m| m.method() == Some("ACK"));
    for (agent, ext, caller, parker_ext) in [(&phone103, "103", "101", "109"), (&phone104, "104", "105", "102")] {
        let mut seen = Vec::new();
        let (m1, i1) = agent.next_notify(&mut seen, 5 * SEC);
        check_notify(&m1, ext, agent.addr, engine.addr);
        let c = only_call(&i1, "parked", &m1);
        check_parked_call(c, &m1, caller, parker_ext, ext);
        let (m2, i2) = agent.next_notify(&mut seen, 5 * SEC);
        check_terminated(&i2, &m2, &c.id, "timeout");
    }
}

// ---------------------------------------------------------------------------------------------
// e. 1,000 park/hangup cycles, 2,000 NOTIFYs
// ---------------------------------------------------------------------------------------------

fn thousand_park_cycles(v: Variant) {
    let ctx = Ctx::new("thousand_park_cycles", 16, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (phone, _) = sipp_phone(&ctx, &engine, 2, "103", 2000);
    let started = Instant::now();
    // At most 6 calls at once keeps the extension below its default limit of 8 parks.
    let callers = Sipp::spawn(
        &ctx,
        "callers",
        SippSpec::uac("park_hangup.xml", ctx.addr(3), engine.addr)
            .service("*68103")
            .key("caller", "101")
            .key("parker", "102")
            .calls(1000)
            .rate(200, 1000)
            .limit(6)
            .pause_ms(10)
            .timeout_s(60),
    );
    callers.wait().assert_ok(1000);
    let phone = phone.wait();
    phone.assert_ok(2000);
    eprintln!("1000 park cycles + 2000 NOTIFYs in {:?}", started.elapsed());

    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 2000, "distinct NOTIFYs received by the phone");
    let mut parked_ids = std::collections::HashSet::new();
    let mut hung_up = std::collections::HashSet::new();
    for (m, info) in &notes {
        for c in &info.calls {
            match c.state.as_str() {
                "parked" => {
                    parked_ids.insert(c.id.clone());
                }
                "terminated" => {
                    assert_eq!(c.reason.as_deref(), Some("hangup"), "in:\n{}", m.raw);
                    assert!(hung_up.insert(c.id.clone()), "call {} terminated twice", c.id);
                }
                other => panic!("unexpected state {other} in:\n{}", m.raw),
            }
        }
    }
    assert_eq!(parked_ids.len(), 1000, "distinct parked call ids");
    assert_eq!(hung_up.len(), 1000, "distinct terminated call ids");
    let mut versions: Vec<u64> = notes.iter().map(|(_, i)| i.version).collect();
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 2000, "every NOTIFY has its own version");

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// f. OPTIONS 200, SUBSCRIBE 489, unknown method 501; registrar and error responses
// ---------------------------------------------------------------------------------------------

fn options_subscribe_unknown_method(v: Variant) {
    let ctx = Ctx::new("options_subscribe_unknown_method", 17, v);
    // Default flags (CPU pinning on).
    let mut engine = Engine::start(&ctx, &[]);
    let me = ctx.udp(2);
    let to = format!("<sip:103@{DOMAIN}>");

    let req = Request::new("OPTIONS", &format!("sip:{DOMAIN}"), me.addr, "101", &to);
    let resp = me.transact(engine.addr, &req);
    assert_eq!(resp.status(), Some(200), "OPTIONS:\n{}", resp.raw);
    assert_eq!(
        resp.header("Via").map(|v| v.contains(&req.branch)),
        Some(true),
        "response must echo the Via:\n{}",
        resp.raw
    );

    let req = Request::new("SUBSCRIBE", &format!("sip:103@{DOMAIN}"), me.addr, "101", &to)
        .header("Event: presence")
        .header("Expires: 60")
        .header(&format!("Contact: <sip:101@{}>", me.addr));
    let resp = me.transact(engine.addr, &req);
    assert_eq!(resp.status(), Some(489), "SUBSCRIBE:\n{}", resp.raw);

    let req = Request::new("PUBLISHX", &format!("sip:103@{DOMAIN}"), me.addr, "101", &to);
    let resp = me.transact(engine.addr, &req);
    assert_eq!(resp.status(), Some(501), "unknown method:\n{}", resp.raw);
    let allow = resp.header("Allow").unwrap_or_default().to_ascii_uppercase();
    for m in ["INVITE", "ACK", "BYE", "REGISTER", "OPTIONS"] {
        assert!(allow.contains(m), "Allow must list {m}:\n{}", resp.raw);
    }

    engine.terminate_cleanly(12 * SEC);
}

fn registrar_and_error_responses(v: Variant) {
    let ctx = Ctx::new("registrar_and_error_responses", 19, v);
    let mut engine = Engine::start(&ctx, &["--no-pin", "--max-parks-per-ext", "1"]);
    let me = ctx.udp(2);
    let mine = format!("sip:103@{}", me.addr);
    let listed = |m: &Msg| -> Option<u32> {
        m.headers("Contact").iter().find_map(|c| {
            if uri_of(c) != mine {
                return None;
            }
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("expires"))
                .and_then(|(_, v)| v.trim().parse().ok())
        })
    };

    // Expiry below the minimum -> 423 with Min-Expires: 60.
    let resp = me.transact(engine.addr, &sip::register(me.addr, "103", 30));
    assert_eq!(resp.status(), Some(423), "REGISTER expires=30:\n{}", resp.raw);
    assert_eq!(resp.header("Min-Expires"), Some("60"), "Min-Expires:\n{}", resp.raw);

    let resp = me.transact(engine.addr, &sip::register(me.addr, "103", 60));
    assert_eq!(resp.status(), Some(200), "REGISTER expires=60:\n{}", resp.raw);
    let e = listed(&resp).unwrap_or_else(|| panic!("binding not listed:\n{}", resp.raw));
    assert!((55..=60).contains(&e), "expires {e}:\n{}", resp.raw);

    // Over 3600 is clamped.
    let resp = me.transact(engine.addr, &sip::register(me.addr, "103", 7200));
    assert_eq!(resp.status(), Some(200), "REGISTER expires=7200:\n{}", resp.raw);
    let e = listed(&resp).unwrap_or_else(|| panic!("binding not listed:\n{}", resp.raw));
    assert!((3590..=3600).contains(&e), "expires {e} must be clamped to 3600:\n{}", resp.raw);

    // Contact: * with Expires: 0 removes every binding.
    let mut req = sip::register(me.addr, "103", 0);
    req.extra = vec!["Contact: *".into(), "Expires: 0".into()];
    let resp = me.transact(engine.addr, &req);
    assert_eq!(resp.status(), Some(200), "REGISTER *:\n{}", resp.raw);
    assert!(listed(&resp).is_none(), "binding still listed:\n{}", resp.raw);

    // Retrieve with nothing parked -> 404.
    let invite = |uri: &str, body: Option<&str>| {
        let mut r = Request::new("INVITE", uri, me.addr, "101", &format!("<{uri}>"))
            .header(&format!("Contact: <sip:101@{}>", me.addr))
            .header(&format!("Referred-By: <sip:102@{DOMAIN}>"));
        if let Some(b) = body {
            r = r.sdp(b);
        }
        r
    };
    let park_uri = format!("sip:*68103@{DOMAIN}");
    let req = invite(&format!("sip:*88103@{DOMAIN}"), Some(&sdp(me.addr, "e2e")));
    let resp = me.transact(engine.addr, &req);
    assert_eq!(resp.status(), Some(404), "retrieve, nothing parked:\n{}", resp.raw);
    me.send(engine.addr, &ack_non_2xx(&req, &resp));

    // Park with a body that is not SDP -> 415 (no body at all is a
    // delayed offer, answered 200 with sipark's offer: tests/sim/offer.rs).
    let mut req = invite(&park_uri, None).header("Content-Type: text/plain");
    req.body = "hello".into();
    let resp = me.transact(engine.addr, &req);
    assert_eq!(resp.status(), Some(415), "park with a text/plain body:\n{}", resp.raw);
    assert_eq!(resp.header("Accept"), Some("application/sdp"), "{}", resp.raw);
    me.send(engine.addr, &ack_non_2xx(&req, &resp));

    // Park one call (the extension's limit is 1), then a second one -> 486.
    let first = RustPark::park(&me, engine.addr, "103", "101", "102");
    let req2 = invite(&park_uri, Some(&sdp(me.addr, "e2e")));
    let resp = me.transact(engine.addr, &req2);
    assert_eq!(resp.status(), Some(486), "second park over the limit of 1:\n{}", resp.raw);
    me.send(engine.addr, &ack_non_2xx(&req2, &resp));

    // Hang up the parked call.
    let resp = first.bye(&me, engine.addr);
    assert_eq!(resp.status(), Some(200), "BYE of the parked call:\n{}", resp.raw);
    let remote = first.remote.clone();

    // A request in a dialog that does not exist -> 481.
    let mut stray = Request::new("BYE", &remote, me.addr, "101", &format!("<sip:103@{DOMAIN}>;tag=nosuchdialog"));
    stray.cseq = 7;
    let resp = me.transact(engine.addr, &stray);
    assert_eq!(resp.status(), Some(481), "BYE outside any dialog:\n{}", resp.raw);

    // Unparseable but answerable (CSeq method does not match the request's) -> 400.
    let mut bad = Request::new("OPTIONS", &format!("sip:{DOMAIN}"), me.addr, "101", "<sip:x@acme.example>");
    bad.extra.push("X-E2e: cseq mismatch".into());
    let text = bad.render().replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    me.send(engine.addr, &text);
    let (resp, _) = me.expect("400 to a request with a mismatched CSeq", 5 * SEC, |m| {
        m.status().is_some() && m.header("Call-ID") == Some(bad.call_id.as_str())
    });
    assert_eq!(resp.status(), Some(400), "CSeq method mismatch:\n{}", resp.raw);

    // Still alive and well.
    let resp = me.transact(
        engine.addr,
        &Request::new("OPTIONS", &format!("sip:{DOMAIN}"), me.addr, "101", "<sip:x@acme.example>"),
    );
    assert_eq!(resp.status(), Some(200));
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// g. SIGTERM while a call is parked
// ---------------------------------------------------------------------------------------------

fn sigterm_while_parked(v: Variant) {
    let ctx = Ctx::new("sigterm_while_parked", 18, v);
    let mut engine = Engine::start(&ctx, &["--no-pin", "--shutdown-grace", "5"]);
    let (mut phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);
    let parked = Sipp::spawn(&ctx, "parked", parked_spec(&ctx, &engine, 3, "101", "102", "103"));
    phone.wait_requests("NOTIFY", 1, 10 * SEC);

    let t0 = Instant::now();
    engine.sigterm();
    let parked = parked.wait();
    parked.assert_ok(1);
    let got = parked.received();
    assert!(got.iter().any(|m| m.method() == Some("BYE")), "the parked leg must get BYE on shutdown");
    let phone = phone.wait();
    phone.assert_ok(2);
    let status = engine.wait_exit(10 * SEC);
    let took = t0.elapsed();
    assert!(status.success(), "sipark exited with {status} after SIGTERM");
    assert!(took <= Duration::from_millis(6500), "shutdown took {took:?} (grace 5 s)");

    let notes = notifies_of(phone.received());
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c = only_call(&notes[0].1, "parked", &notes[0].0);
    check_terminated(&notes[1].1, &notes[1].0, &c.id, "shutdown");
    let log = engine.log();
    assert!(!log.contains("panicked"), "engine log shows a panic:\n{}", harness::tail(&log, 4000));
}

// ---------------------------------------------------------------------------------------------
// RFC 3261 §8.2.6.2: every final response sipark generates outside a dialog carries a To tag
// ---------------------------------------------------------------------------------------------

fn final_responses_have_to_tag(v: Variant) {
    let ctx = Ctx::new("final_responses_have_to_tag", 20, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let me = ctx.udp(2);
    let to = format!("<sip:103@{DOMAIN}>");
    let mut checks: Vec<(&str, Request)> = vec![
        ("OPTIONS", Request::new("OPTIONS", &format!("sip:{DOMAIN}"), me.addr, "101", &to)),
        (
            "SUBSCRIBE",
            Request::new("SUBSCRIBE", &format!("sip:103@{DOMAIN}"), me.addr, "101", &to)
                .header("Event: presence")
                .header(&format!("Contact: <sip:101@{}>", me.addr)),
        ),
        ("unknown method", Request::new("PUBLISHX", &format!("sip:103@{DOMAIN}"), me.addr, "101", &to)),
        ("REGISTER expires=30", sip::register(me.addr, "103", 30)),
        ("REGISTER", sip::register(me.addr, "103", 300)),
        (
            "park without SDP",
            Request::new("INVITE", &format!("sip:*68103@{DOMAIN}"), me.addr, "101", &to)
                .header(&format!("Contact: <sip:101@{}>", me.addr)),
        ),
    ];
    checks.push((
        "retrieve with nothing parked",
        Request::new("INVITE", &format!("sip:*88103@{DOMAIN}"), me.addr, "104", &to)
            .header(&format!("Contact: <sip:104@{}>", me.addr))
            .sdp(&sdp(me.addr, "e2e")),
    ));
    let mut missing = Vec::new();
    for (what, req) in &checks {
        let resp = me.transact(engine.addr, req);
        if req.method == "INVITE" {
            me.send(engine.addr, &ack_non_2xx(req, &resp));
        }
        if resp.tag_of("To").is_none_or(|t| t.is_empty()) {
            missing.push(format!("{what} -> {}", resp.first_line()));
        }
    }
    assert!(missing.is_empty(), "final responses without a To tag (RFC 3261 §8.2.6.2): {missing:#?}");
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// NOTIFY is retransmitted (Timer E) until it gets a final response
// ---------------------------------------------------------------------------------------------

fn notify_retransmitted_until_answered(v: Variant) {
    let ctx = Ctx::new("notify_retransmitted_until_answered", 21, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let phone = ctx.udp(2);
    let leg = ctx.udp(3);
    let reg = phone.transact(engine.addr, &sip::register(phone.addr, "103", 300));
    assert_eq!(reg.status(), Some(200), "REGISTER:\n{}", reg.raw);

    let park = RustPark::park(&leg, engine.addr, "103", "101", "102");
    let is_notify = |m: &Msg| m.method() == Some("NOTIFY");
    let (first, from) = phone.expect("NOTIFY", 5 * SEC, is_notify);
    let t0 = Instant::now();
    check_notify(&first, "103", phone.addr, engine.addr);
    // Not answered: the same request comes again after about T1 (500 ms).
    let (again, _) = phone.expect("NOTIFY retransmission", 5 * SEC, is_notify);
    let gap = t0.elapsed();
    assert_eq!(again.raw, first.raw, "a retransmission repeats the request byte for byte");
    assert!(
        gap >= Duration::from_millis(350) && gap <= Duration::from_millis(1500),
        "first retransmission after {gap:?}, expected about T1 = 500 ms"
    );
    phone.send(from, &response(&again, 200, "OK", Some("e2ephone"), &[]));
    // Answered: no more copies.
    let deadline = Instant::now() + Duration::from_millis(1500);
    if let Some((m, _)) = phone.recv_until(deadline) {
        panic!("nothing expected after the 200 OK, got:\n{}", m.raw);
    }

    let resp = park.bye(&leg, engine.addr);
    assert_eq!(resp.status(), Some(200), "BYE:\n{}", resp.raw);
    let (m, from) = phone.expect("NOTIFY terminated", 5 * SEC, is_notify);
    phone.send(from, &response(&m, 200, "OK", Some("e2ephone"), &[]));
    let info = park_info_of(&m);
    let id = park_info_of(&first).calls[0].id.clone();
    check_terminated(&info, &m, &id, "hangup");
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// Strict tenants (--tenants FILE): unknown domains get 404, listed ones their own policy
// ---------------------------------------------------------------------------------------------

fn strict_tenants_file(v: Variant) {
    let ctx = Ctx::new("strict_tenants_file", 22, v);
    let file = ctx.path("tenants.toml");
    std::fs::write(
        &file,
        format!("[defaults]\nmax_parks_per_ext = 4\n\n[[tenant]]\ndomain = \"{DOMAIN}\"\npark_timeout = 1\n"),
    )
    .expect("write tenants file");
    let file = file.to_str().expect("utf-8 path").to_string();
    let mut engine = Engine::start(&ctx, &["--no-pin", "--tenants", &file, "--recall-timeout", "2"]);
    let me = ctx.udp(2);

    // Not a tenant: REGISTER and park are refused with 404.
    let mut reg = sip::register(me.addr, "103", 300);
    reg.uri = "sip:beta.example".into();
    reg.to = "<sip:103@beta.example>".into();
    reg.extra = vec![format!("Contact: <sip:103@{}>;expires=300", me.addr)];
    let resp = me.transact(engine.addr, &reg);
    assert_eq!(resp.status(), Some(404), "REGISTER for an unknown tenant:\n{}", resp.raw);
    let uri = "sip:*68103@beta.example";
    let req = Request::new("INVITE", uri, me.addr, "101", &format!("<{uri}>"))
        .header(&format!("Contact: <sip:101@{}>", me.addr))
        .sdp(&sdp(me.addr, "e2e"));
    let resp = me.transact(engine.addr, &req);
    assert_eq!(resp.status(), Some(404), "park for an unknown tenant:\n{}", resp.raw);
    me.send(engine.addr, &ack_non_2xx(&req, &resp));

    // The tenant's own park timeout (1 s, not the CLI's 300 s): with the parker unregistered
    // the parked leg is hung up right after it.
    let phone = Agent::phone(ctx.udp(3));
    let reg = phone.transact(engine.addr, &sip::register(phone.addr, "103", 300));
    assert_eq!(reg.status(), Some(200), "REGISTER:\n{}", reg.raw);
    let leg = ctx.udp(4);
    let t0 = Instant::now();
    let _park = RustPark::park(&leg, engine.addr, "103", "101", "109");
    let mut seen = Vec::new();
    let (m, info) = phone.next_notify(&mut seen, 5 * SEC);
    let c = only_call(&info, "parked", &m).clone();
    assert_eq!(c.timeout.as_deref(), Some("1"), "the tenant's park timeout:\n{}", m.raw);
    let (bye, from) = leg.expect("BYE after the park timeout", 8 * SEC, |m| m.method() == Some("BYE"));
    leg.send(from, &response(&bye, 200, "OK", None, &[]));
    assert!(t0.elapsed() >= Duration::from_millis(900), "BYE after {:?}, before the 1 s timeout", t0.elapsed());
    let (m, info) = phone.next_notify(&mut seen, 5 * SEC);
    check_terminated(&info, &m, &c.id, "timeout");
    engine.terminate_cleanly(12 * SEC);
}
