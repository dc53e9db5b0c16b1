//! Call control end to end (issue 5), with SIPp peers over UDP on loopback against the real
//! binary: retrieve by `Replaces` (RFC 3891), delayed offer on the park and on the retrieve, and
//! CANCEL of a retrieve and of a park. The sans-IO side of the same behaviour is proven on a
//! virtual clock in tests/sim/offer.rs and tests/sim/park.rs; here the scenarios are
//! tests/sipp/cc_*.xml (plus parked.xml, retrieve.xml and park_hangup.xml).

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Ctx, DOMAIN, Engine, Sipp, SippSpec, Variant, distinct_requests};
use crate::sip::Msg;
use crate::{
    SEC, assert_versions_increase, check_notify, check_parked_call, check_reinvite, check_terminated, notifies_of,
    only_call, parked_spec, retrieve_spec, sipark_origin, sipp_phone,
};

/// The dialog of a parked call as its parked leg sees it, from the park's 200 OK.
struct ParkDialog {
    call_id: String,
    /// sipark's tag (To of the 200).
    sipark_tag: String,
    /// The parked party's tag (From).
    parked_tag: String,
}

impl ParkDialog {
    fn of(ok: &Msg) -> ParkDialog {
        let field =
            |v: Option<String>, what: &str| v.unwrap_or_else(|| panic!("no {what} in the park 200:\n{}", ok.raw));
        ParkDialog {
            call_id: field(ok.header("Call-ID").map(str::to_string), "Call-ID"),
            sipark_tag: field(ok.tag_of("To"), "To tag"),
            parked_tag: field(ok.tag_of("From"), "From tag"),
        }
    }

    /// The value of a Replaces header naming this dialog from sipark's side (RFC 3891 §3:
    /// to-tag is the tag of the UA whose dialog is replaced, here sipark).
    fn replaces(&self) -> String {
        format!("{};to-tag={};from-tag={}", self.call_id, self.sipark_tag, self.parked_tag)
    }
}

/// Polls the message log of a running SIPp until `done` holds for what it received (panics
/// after `limit`, or if SIPp exits first).
pub(crate) fn wait_log(sipp: &mut Sipp, what: &str, limit: Duration, done: impl Fn(&[Msg]) -> bool) -> Vec<Msg> {
    let deadline = Instant::now() + limit;
    loop {
        let got = sipp.received();
        if done(&got) {
            return got;
        }
        let firsts: Vec<String> = got.iter().map(|m| m.first_line().to_string()).collect();
        assert!(!sipp.has_exited(), "SIPp exited before {what}; it received {firsts:#?}");
        assert!(Instant::now() < deadline, "no {what} within {limit:?}; SIPp received {firsts:#?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The response with `status` whose CSeq is `cseq` (e.g. "1 INVITE") in `got`.
fn response<'a>(got: &'a [Msg], status: u16, cseq: &str, who: &str) -> &'a Msg {
    got.iter().find(|m| m.status() == Some(status) && m.header("CSeq") == Some(cseq)).unwrap_or_else(|| {
        let firsts: Vec<&str> = got.iter().map(Msg::first_line).collect();
        panic!("{who}: no {status} to {cseq}; received {firsts:#?}")
    })
}

/// The requests of `method` in `got`, retransmissions (same CSeq) dropped, in order.
fn requests<'a>(got: &'a [Msg], method: &str) -> Vec<&'a Msg> {
    let mut out: Vec<&Msg> = Vec::new();
    for m in got.iter().filter(|m| m.method() == Some(method)) {
        if !out.iter().any(|o| o.header("CSeq") == m.header("CSeq") && o.header("Call-ID") == m.header("Call-ID")) {
            out.push(m);
        }
    }
    out
}

pub(crate) fn has_line(m: &Msg, line: &str) -> bool {
    m.body().lines().any(|l| l.trim_end() == line)
}

/// The connection line SIPp (or sipark) on `ip` writes in its SDP.
pub(crate) fn media_of(ip: impl std::fmt::Display) -> String {
    format!("c=IN IP4 {ip}")
}

/// (session, version) of sipark's origin, with the session checked against `session`.
fn version_in(m: &Msg, engine: SocketAddr, session: &str, what: &str) -> u64 {
    let (s, v) = sipark_origin(m, engine);
    assert_eq!(s, session, "{what}: o= session id of the parked leg must not change:\n{}", m.raw);
    v
}

/// cc_refused.xml: an INVITE to `ruri` from `caller`@`from_domain` with the header line `hdr`,
/// which must be refused with `expect`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refused(
    ctx: &Ctx,
    engine: &Engine,
    label: &str,
    host: u8,
    ruri: &str,
    from_domain: &str,
    hdr: &str,
    expect: u16,
) {
    let spec = SippSpec::uac("cc_refused.xml", ctx.addr(host), engine.addr)
        .key("ruri", ruri)
        .key("caller", "104")
        .key("from_domain", from_domain)
        .key("hdr", hdr)
        .key("expect", &expect.to_string());
    let out = Sipp::spawn(ctx, label, spec).wait();
    out.assert_ok(1);
    let got = out.received();
    let finals: Vec<&Msg> = got.iter().filter(|m| m.status().is_some_and(|s| s >= 200)).collect();
    assert!(
        !finals.is_empty() && finals.iter().all(|m| m.status() == Some(expect)),
        "{label}: expected only {expect} as final response, got {:#?}",
        finals.iter().map(|m| m.first_line()).collect::<Vec<_>>()
    );
    assert!(finals[0].tag_of("To").is_some(), "{label}: a final response needs a To tag:\n{}", finals[0].raw);
}

// ---------------------------------------------------------------------------------------------
// 1. INVITE with Replaces retrieves exactly the named parked call; unknown dialog 481, another
//    tenant's caller 403
// ---------------------------------------------------------------------------------------------

pub fn callcontrol_replaces_retrieve(v: Variant) {
    let ctx = Ctx::new("callcontrol_replaces_retrieve", 70, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (mut phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 4);

    // Two calls parked at 103: A (older, the one *88103 would take) and B.
    let mut a = Sipp::spawn(&ctx, "parkedA", parked_spec(&ctx, &engine, 3, "101", "102", "103"));
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    let mut b = Sipp::spawn(&ctx, "parkedB", parked_spec(&ctx, &engine, 4, "105", "102", "103"));
    phone.wait_requests("NOTIFY", 2, 10 * SEC);
    let got = wait_log(&mut b, "B's park 200 OK", 5 * SEC, |g| {
        g.iter().any(|m| m.status() == Some(200) && m.header("CSeq") == Some("1 INVITE"))
    });
    let dialog = ParkDialog::of(response(&got, 200, "1 INVITE", "parked B"));
    let tenant_uri = format!("sip:103@{DOMAIN}");

    // A Call-ID that names no dialog: 481.
    let unknown = format!(
        "Replaces: nosuch-{}@e2e;to-tag={};from-tag={}",
        std::process::id(),
        dialog.sipark_tag,
        dialog.parked_tag
    );
    refused(&ctx, &engine, "unknown", 6, &tenant_uri, DOMAIN, &unknown, 481);
    // The right dialog, but asked for by a caller of another tenant: 403.
    let replaces = format!("Replaces: {}", dialog.replaces());
    refused(&ctx, &engine, "other_tenant", 6, &tenant_uri, "beta.example", &replaces, 403);
    // Neither refusal touched a parked leg.
    for (s, who) in [(&a, "A"), (&b, "B")] {
        let got = s.received();
        assert!(
            !got.iter().any(|m| m.method() == Some("INVITE")),
            "parked leg {who} was re-INVITEd by a refused Replaces: {:#?}",
            got.iter().map(Msg::first_line).collect::<Vec<_>>()
        );
    }

    // The right dialog from a caller of the tenant, with a Request-URI that is no feature code:
    // B (not the oldest) is bridged with the retriever.
    let retriever = Sipp::spawn(
        &ctx,
        "retrieverB",
        SippSpec::uac("cc_replaces.xml", ctx.addr(5), engine.addr)
            .key("ruri", &tenant_uri)
            .key("caller", "104")
            .key("replaces", &dialog.replaces())
            .pause_ms(200),
    );
    let retriever = retriever.wait();
    retriever.assert_ok(1);
    let got = retriever.received();
    let ok = response(&got, 200, "1 INVITE", "retriever");
    sipark_origin(ok, engine.addr);
    assert!(
        has_line(ok, "s=sipark-e2e-parked") && has_line(ok, &media_of(ctx.ip(4))),
        "the retriever's 200 must carry B's SDP (media on {}):\n{}",
        ctx.ip(4),
        ok.raw
    );
    assert!(ok.tag_of("To").is_some(), "200 without To tag:\n{}", ok.raw);
    // sipark relays the retriever's BYE to B.
    let b = b.wait();
    b.assert_ok(1);
    let got = b.received();
    check_reinvite(&got, "105", "103", ctx.ip(4), engine.addr);
    let reinvite = requests(&got, "INVITE")[0];
    assert!(
        has_line(reinvite, "s=sipark-e2e-retriever") && has_line(reinvite, &media_of(ctx.ip(5))),
        "B's re-INVITE must offer the retriever's media ({}):\n{}",
        ctx.ip(5),
        reinvite.raw
    );
    let bye = requests(&got, "BYE");
    assert_eq!(bye.len(), 1, "B must get sipark's BYE once the retriever hung up");
    assert_eq!(bye[0].header("Call-ID"), Some(dialog.call_id.as_str()), "BYE in B's dialog:\n{}", bye[0].raw);

    // A was not touched and is still parked: *88103 now takes it.
    assert!(!a.received().iter().any(|m| m.method() == Some("INVITE")), "A must not be re-INVITEd by B's retrieve");
    let r = Sipp::spawn(
        &ctx,
        "retrieverA",
        retrieve_spec(&ctx, &engine, 7, &format!("sip:*88103@{DOMAIN}"), "106").key("hangup", "1"),
    );
    r.wait().assert_ok(1);
    wait_log(&mut a, "A's BYE", 5 * SEC, |g| g.iter().any(|m| m.method() == Some("BYE")));
    let a = a.wait();
    a.assert_ok(1);
    check_reinvite(&a.received(), "101", "103", ctx.ip(3), engine.addr);

    let phone = phone.wait();
    phone.assert_ok(4);
    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 4, "phone must get exactly 4 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let ca = only_call(&notes[0].1, "parked", &notes[0].0).clone();
    check_parked_call(&ca, &notes[0].0, "101", "102", "103");
    let (m, info) = &notes[1];
    assert_eq!(info.parked().len(), 2, "A and B parked:\n{}", m.raw);
    let cb = info.parked().into_iter().find(|c| c.id != ca.id).cloned().expect("B listed");
    check_parked_call(&cb, m, "105", "102", "103");
    let (m, info) = &notes[2];
    check_terminated(info, m, &cb.id, "retrieved");
    assert_eq!(only_call(info, "parked", m).id, ca.id, "A still parked after B's Replaces retrieve:\n{}", m.raw);
    let (m, info) = &notes[3];
    check_terminated(info, m, &ca.id, "retrieved");
    assert!(info.parked().is_empty(), "nothing parked:\n{}", m.raw);
    assert_versions_increase(&notes);

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 2a. Park INVITE without SDP: sipark's hold offer in the 200, the answer in the ACK parks it
// ---------------------------------------------------------------------------------------------

pub fn callcontrol_delayed_offer_park(v: Variant) {
    let ctx = Ctx::new("callcontrol_delayed_offer_park", 71, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (mut phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);

    let parked = Sipp::spawn(
        &ctx,
        "parked",
        SippSpec::uac("cc_parked_delayed.xml", ctx.addr(3), engine.addr)
            .service("*68103")
            .key("caller", "101")
            .key("parker", "102"),
    );
    // Parked (announced) once the ACK brought the answer.
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    let retriever = Sipp::spawn(
        &ctx,
        "retriever",
        retrieve_spec(&ctx, &engine, 4, &format!("sip:*88103@{DOMAIN}"), "104").key("hangup", "1"),
    );
    let retriever = retriever.wait();
    retriever.assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);

    let got = parked.received();
    let ok = response(&got, 200, "1 INVITE", "parked leg");
    assert_eq!(ok.header("Content-Type"), Some("application/sdp"), "the park 200 carries an offer:\n{}", ok.raw);
    let (session, v0) = sipark_origin(ok, engine.addr);
    assert!(
        ok.body().lines().any(|l| l.starts_with("m=audio 9 RTP/AVP ")) && has_line(ok, "a=inactive"),
        "sipark's hold offer (m=audio 9, a=inactive):\n{}",
        ok.raw
    );
    assert!(!ok.body().contains("sipark-e2e"), "nothing of the parked party's in sipark's own offer:\n{}", ok.raw);
    check_reinvite(&got, "101", "103", ctx.ip(3), engine.addr);
    let reinvite = requests(&got, "INVITE")[0];
    assert_eq!(version_in(reinvite, engine.addr, &session, "re-INVITE"), v0 + 1);
    assert!(
        has_line(reinvite, "s=sipark-e2e-retriever") && has_line(reinvite, &media_of(ctx.ip(4))),
        "the re-INVITE offers the retriever's media ({}):\n{}",
        ctx.ip(4),
        reinvite.raw
    );
    assert_eq!(requests(&got, "BYE").len(), 1, "the parked leg gets BYE when the retriever hangs up");

    let got = retriever.received();
    let ok = response(&got, 200, "1 INVITE", "retriever");
    assert!(
        has_line(ok, "s=sipark-e2e-parked") && has_line(ok, &media_of(ctx.ip(3))),
        "the retriever gets the parked leg's SDP (media on {}):\n{}",
        ctx.ip(3),
        ok.raw
    );
    sipark_origin(ok, engine.addr);

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
    assert_versions_increase(&notes);

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 2b. Retrieve INVITE without SDP: the parked leg is asked for an offer, the retriever answers in
//     its ACK, and the answer reaches the parked leg in sipark's ACK
// ---------------------------------------------------------------------------------------------

pub fn callcontrol_delayed_offer_retrieve(v: Variant) {
    let ctx = Ctx::new("callcontrol_delayed_offer_retrieve", 72, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (mut phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);

    let parked = Sipp::spawn(
        &ctx,
        "parked",
        SippSpec::uac("cc_parked_offer.xml", ctx.addr(3), engine.addr)
            .service("*68103")
            .key("caller", "101")
            .key("parker", "102"),
    );
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    let retriever = Sipp::spawn(
        &ctx,
        "retriever",
        SippSpec::uac("cc_retrieve_delayed.xml", ctx.addr(4), engine.addr)
            .key("ruri", &format!("sip:*88103@{DOMAIN}"))
            .key("caller", "104")
            .pause_ms(200),
    );
    let retriever = retriever.wait();
    retriever.assert_ok(1);
    let parked = parked.wait();
    parked.assert_ok(1);

    let got = parked.received();
    let park_ok = response(&got, 200, "1 INVITE", "parked leg");
    let (session, v0) = sipark_origin(park_ok, engine.addr);
    let reinvites = requests(&got, "INVITE");
    assert_eq!(reinvites.len(), 1, "one re-INVITE");
    let reinvite = reinvites[0];
    let ctx_msg = || format!("re-INVITE:\n{}\n--- park 200 OK:\n{}", reinvite.raw, park_ok.raw);
    assert!(reinvite.body().is_empty(), "a delayed-offer retrieve re-INVITEs without SDP; {}", ctx_msg());
    assert!(reinvite.header("Content-Type").is_none(), "no body, no Content-Type; {}", ctx_msg());
    assert_eq!(reinvite.header("Call-ID"), park_ok.header("Call-ID"), "in the park dialog; {}", ctx_msg());
    assert_eq!(reinvite.tag_of("From"), park_ok.tag_of("To"), "From tag = sipark's; {}", ctx_msg());
    assert_eq!(reinvite.tag_of("To"), park_ok.tag_of("From"), "To tag = the parked leg's; {}", ctx_msg());
    // sipark's ACK of the parked leg's 200 (which carried the offer) brings the retriever's
    // answer, under the parked leg's own origin.
    let cseq = reinvite.header("CSeq").unwrap_or_default().replace("INVITE", "ACK");
    let ack = got
        .iter()
        .find(|m| m.method() == Some("ACK") && m.header("CSeq") == Some(cseq.as_str()))
        .unwrap_or_else(|| panic!("no ACK ({cseq}) of the parked leg's 200; {}", ctx_msg()));
    assert_eq!(ack.header("Content-Type"), Some("application/sdp"), "the ACK carries the answer:\n{}", ack.raw);
    assert_eq!(version_in(ack, engine.addr, &session, "ACK"), v0 + 1, "o= version + 1 in the ACK:\n{}", ack.raw);
    assert!(
        has_line(ack, "s=sipark-e2e-retriever") && has_line(ack, &media_of(ctx.ip(4))),
        "the ACK carries the retriever's answer (media on {}):\n{}",
        ctx.ip(4),
        ack.raw
    );
    assert_eq!(requests(&got, "BYE").len(), 1, "the parked leg gets BYE when the retriever hangs up");

    // The retriever got the parked leg's offer in its 200, under sipark's origin.
    let got = retriever.received();
    let ok = response(&got, 200, "1 INVITE", "retriever");
    sipark_origin(ok, engine.addr);
    assert!(
        has_line(ok, "s=sipark-e2e-parked") && has_line(ok, &media_of(ctx.ip(3))),
        "the retriever's 200 carries the parked leg's offer (media on {}):\n{}",
        ctx.ip(3),
        ok.raw
    );

    let phone = phone.wait();
    phone.assert_ok(2);
    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 2, "phone must get exactly 2 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c = only_call(&notes[0].1, "parked", &notes[0].0);
    check_terminated(&notes[1].1, &notes[1].0, &c.id, "retrieved");
    assert_versions_increase(&notes);

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 3a. CANCEL of a retrieve before it is bridged: 200 + 487 to the retriever, the parked leg goes
//     back on hold and stays parked
// ---------------------------------------------------------------------------------------------

pub fn callcontrol_cancel_retrieve(v: Variant) {
    let ctx = Ctx::new("callcontrol_cancel_retrieve", 73, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (mut phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);
    let ruri = format!("sip:*88103@{DOMAIN}");

    // The parked leg answers the first re-INVITE 3 s late (100 Trying at once).
    let mut parked = Sipp::spawn(
        &ctx,
        "parked",
        SippSpec::uac("cc_parked_slow.xml", ctx.addr(3), engine.addr)
            .service("*68103")
            .key("caller", "101")
            .key("parker", "102")
            .pause_ms(3000),
    );
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    // The retriever CANCELs 200 ms after its 100 Trying, long before the parked leg answers.
    let r1 = Sipp::spawn(
        &ctx,
        "retriever1",
        SippSpec::uac("cc_retrieve_cancel.xml", ctx.addr(4), engine.addr)
            .key("ruri", &ruri)
            .key("caller", "104")
            .pause_ms(200),
    );
    let r1 = r1.wait();
    r1.assert_ok(1);
    let got = r1.received();
    response(&got, 200, "1 CANCEL", "retriever 1");
    let t487 = response(&got, 487, "1 INVITE", "retriever 1");
    assert!(t487.tag_of("To").is_some(), "487 without To tag:\n{}", t487.raw);
    assert!(
        !got.iter().any(|m| m.status() == Some(200) && m.cseq_method() == Some("INVITE")),
        "a CANCELled retrieve must not be answered 200: {:#?}",
        got.iter().map(Msg::first_line).collect::<Vec<_>>()
    );
    assert!(
        r1.elapsed < Duration::from_millis(2500),
        "the 487 must not wait for the parked leg's late 200 (retriever done after {:?})",
        r1.elapsed
    );

    // The parked leg's late 200 is ACKed, then it is re-INVITEd back on hold; wait for that
    // exchange to finish (sipark's second ACK) before the next retrieve.
    wait_log(&mut parked, "the hold re-INVITE and its ACK", 10 * SEC, |g| requests(g, "ACK").len() >= 2);

    let r2 = Sipp::spawn(&ctx, "retriever2", retrieve_spec(&ctx, &engine, 5, &ruri, "106").key("hangup", "1"));
    let r2 = r2.wait();
    r2.assert_ok(1);
    let got = r2.received();
    let ok = response(&got, 200, "1 INVITE", "retriever 2");
    assert!(has_line(ok, &media_of(ctx.ip(3))), "retriever 2 gets the parked leg's SDP:\n{}", ok.raw);
    let parked = parked.wait();
    parked.assert_ok(1);

    let got = parked.received();
    let park_ok = response(&got, 200, "1 INVITE", "parked leg");
    let (session, v0) = sipark_origin(park_ok, engine.addr);
    let invites = requests(&got, "INVITE");
    assert_eq!(
        invites.len(),
        3,
        "retrieve, back on hold, retrieve: {:#?}",
        invites.iter().map(|m| &m.raw).collect::<Vec<_>>()
    );
    let acks = requests(&got, "ACK");
    assert_eq!(acks.len(), 3, "one ACK per re-INVITE: {:#?}", acks.iter().map(|m| &m.raw).collect::<Vec<_>>());
    check_reinvite(&got, "101", "103", ctx.ip(3), engine.addr);
    assert!(has_line(invites[0], &media_of(ctx.ip(4))), "first re-INVITE: retriever 1's media:\n{}", invites[0].raw);
    // The late 200 is ACKed without a body (the re-INVITE carried the offer).
    assert!(acks[0].body().is_empty(), "ACK of the cancelled retrieve's 200 has no body:\n{}", acks[0].raw);
    // Back on hold: sipark's hold offer, nothing of retriever 1's, version + 1 again.
    let hold = invites[1];
    assert_eq!(version_in(hold, engine.addr, &session, "hold re-INVITE"), v0 + 2, "{}", hold.raw);
    assert!(
        has_line(hold, "a=inactive")
            && hold.body().lines().any(|l| l.starts_with("m=audio 9 RTP/AVP "))
            && has_line(hold, &media_of(engine.addr.ip())),
        "hold offer (sipark's c=, m=audio 9, a=inactive):\n{}",
        hold.raw
    );
    assert!(
        !hold.body().contains(&ctx.ip(4).to_string()) && !hold.body().contains("sipark-e2e"),
        "nothing of retriever 1's (or anyone's) session in the hold offer:\n{}",
        hold.raw
    );
    assert_eq!(hold.header("Call-ID"), park_ok.header("Call-ID"), "hold re-INVITE in the park dialog");
    // The second retrieve: retriever 2's media, version + 1.
    let again = invites[2];
    assert_eq!(version_in(again, engine.addr, &session, "second retrieve re-INVITE"), v0 + 3, "{}", again.raw);
    assert!(has_line(again, &media_of(ctx.ip(5))), "second re-INVITE: retriever 2's media:\n{}", again.raw);
    assert_eq!(requests(&got, "BYE").len(), 1, "BYE once retriever 2 hung up");

    // The cancelled retrieve never took the call off the list: 2 NOTIFYs in all.
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
    assert_versions_increase(&notes);

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 3b. A park INVITE CANCELled after its 200, before the ACK: nothing is parked
// ---------------------------------------------------------------------------------------------

pub fn callcontrol_cancel_park(v: Variant) {
    let ctx = Ctx::new("callcontrol_cancel_park", 74, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);

    let caller = Sipp::spawn(
        &ctx,
        "cancelled",
        SippSpec::uac("cc_park_cancel.xml", ctx.addr(3), engine.addr)
            .service("*68103")
            .key("caller", "101")
            .key("parker", "102"),
    );
    let caller = caller.wait();
    caller.assert_ok(1);
    let got = caller.received();
    let ok = response(&got, 200, "1 INVITE", "cancelled caller");
    response(&got, 200, "1 CANCEL", "cancelled caller");
    // sipark hangs up the dialog its 2xx created, as soon as the ACK confirms it.
    let byes = requests(&got, "BYE");
    assert_eq!(byes.len(), 1, "one BYE: {:#?}", got.iter().map(Msg::first_line).collect::<Vec<_>>());
    let bye = byes[0];
    assert_eq!(bye.header("Call-ID"), ok.header("Call-ID"), "BYE in the park dialog:\n{}", bye.raw);
    assert_eq!(bye.tag_of("From"), ok.tag_of("To"), "BYE From tag = sipark's:\n{}", bye.raw);
    assert_eq!(bye.tag_of("To"), ok.tag_of("From"), "BYE To tag = the caller's:\n{}", bye.raw);
    assert!(
        bye.request_uri().is_some_and(|u| u.starts_with(&format!("sip:101@{}:", ctx.ip(3)))),
        "BYE to the caller's Contact:\n{}",
        bye.raw
    );

    // Nothing to retrieve, nothing announced.
    refused(&ctx, &engine, "retrieve", 4, &format!("sip:*88103@{DOMAIN}"), DOMAIN, "X-E2e: none", 404);
    let early = distinct_requests(phone.received(), "NOTIFY");
    assert!(
        early.is_empty(),
        "a park CANCELled before its ACK must not be announced, phone got:\n{}",
        early.iter().map(|m| m.raw.as_str()).collect::<Vec<_>>().join("\n---\n")
    );

    // The phone does get NOTIFYs: the first one it ever gets is for the next park.
    let next = Sipp::spawn(
        &ctx,
        "next",
        SippSpec::uac("park_hangup.xml", ctx.addr(5), engine.addr)
            .service("*68103")
            .key("caller", "105")
            .key("parker", "102")
            .pause_ms(300),
    );
    next.wait().assert_ok(1);
    let phone = phone.wait();
    phone.assert_ok(2);
    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 2, "phone must get exactly 2 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c = only_call(&notes[0].1, "parked", &notes[0].0);
    check_parked_call(c, &notes[0].0, "105", "102", "103");
    assert_eq!(notes[0].1.calls.len(), 1, "only the new call is listed:\n{}", notes[0].0.raw);
    check_terminated(&notes[1].1, &notes[1].0, &c.id, "hangup");
    assert_versions_increase(&notes);

    engine.terminate_cleanly(12 * SEC);
}
