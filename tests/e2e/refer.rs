//! REFER on a call sipark bridges, end to end with SIPp peers over UDP on loopback against the
//! real binary: a REFER to the park code parks the other leg with no new INVITE (202, sipfrag
//! NOTIFYs, hold re-INVITE, park-info NOTIFY naming the referrer as parker), any other REFER is
//! relayed as a blind transfer (REFER, 202 and NOTIFY across), and a refused REFER keeps the
//! bridge. The sans-IO side is proven on the virtual clock in tests/sim/refer.rs; here the
//! scenarios are tests/sipp/rf_*.xml (plus phone.xml, retrieve.xml and cc_refused.xml).

use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::Duration;

use crate::callcontrol::{has_line, media_of, refused, wait_log};
use crate::harness::{Ctx, DOMAIN, Engine, Sipp, SippSpec, Variant};
use crate::sip::{Msg, uri_of};
use crate::{
    SEC, assert_versions_increase, check_notify, check_parked_call, check_reinvite, check_terminated, notifies_of,
    only_call, retrieve_spec, sipark_origin, sipp_phone,
};

/// rf_parked.xml: `caller` 101 parked at *68103 by 102, then by `mode` (park, relay, refuse).
fn parked_spec(ctx: &Ctx, engine: &Engine, host: u8, mode: &str) -> SippSpec {
    SippSpec::uac("rf_parked.xml", ctx.addr(host), engine.addr)
        .service("*68103")
        .key("caller", "101")
        .key("parker", "102")
        .key("mode", mode)
}

/// rf_referrer.xml: 104 retrieves *88103, then REFERs to `refer_to` and expects `mode`'s outcome
/// (in mode refuse, then also REFERs to *68105, which must be full, and to *68bad!).
fn referrer_spec(ctx: &Ctx, engine: &Engine, host: u8, refer_to: &str, mode: &str) -> SippSpec {
    SippSpec::uac("rf_referrer.xml", ctx.addr(host), engine.addr)
        .key("ruri", &format!("sip:*88103@{DOMAIN}"))
        .key("caller", "104")
        .key("refer_to", refer_to)
        .key("mode", mode)
        .key("full_ext", "105")
        .pause_ms(300)
}

fn firsts(got: &[Msg]) -> Vec<&str> {
    got.iter().map(Msg::first_line).collect()
}

/// Position and message of the response with `status` whose CSeq is `cseq` in `got`.
fn response<'a>(got: &'a [Msg], status: u16, cseq: &str, who: &str) -> (usize, &'a Msg) {
    got.iter()
        .enumerate()
        .find(|(_, m)| m.status() == Some(status) && m.header("CSeq") == Some(cseq))
        .unwrap_or_else(|| panic!("{who}: no {status} to {cseq}; received {:#?}", firsts(got)))
}

/// The requests of `method` in `got` with their positions, retransmissions (same Call-ID and
/// CSeq) dropped, in order.
fn requests<'a>(got: &'a [Msg], method: &str) -> Vec<(usize, &'a Msg)> {
    let mut out: Vec<(usize, &Msg)> = Vec::new();
    for (i, m) in got.iter().enumerate().filter(|(_, m)| m.method() == Some(method)) {
        if !out.iter().any(|(_, o)| o.header("CSeq") == m.header("CSeq") && o.header("Call-ID") == m.header("Call-ID"))
        {
            out.push((i, m));
        }
    }
    out
}

/// The sequence number of a message's CSeq.
fn cseq_num(m: &Msg) -> u32 {
    m.header("CSeq")
        .and_then(|c| c.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad CSeq in:\n{}", m.raw))
}

/// A dialog as the SIPp UAC at one end sees it, from the 200 OK to its INVITE.
struct Dialog {
    call_id: String,
    /// sipark's tag (To of the 200).
    sipark_tag: String,
    /// The SIPp side's tag (From).
    own_tag: String,
}

impl Dialog {
    fn of(ok: &Msg) -> Dialog {
        let field =
            |v: Option<String>, what: &str| v.unwrap_or_else(|| panic!("no {what} in the INVITE's 200:\n{}", ok.raw));
        Dialog {
            call_id: field(ok.header("Call-ID").map(str::to_string), "Call-ID"),
            sipark_tag: field(ok.tag_of("To"), "To tag"),
            own_tag: field(ok.tag_of("From"), "From tag"),
        }
    }

    /// Asserts that `m`, a request sipark sent the SIPp side (at `ip`, user `user`), is in this
    /// dialog, from sipark (its Via), to the SIPp side's Contact.
    fn check_request(&self, m: &Msg, user: &str, ip: Ipv4Addr, engine: SocketAddr, what: &str) {
        let ctx = || format!("{what}:\n{}", m.raw);
        assert_eq!(m.header("Call-ID"), Some(self.call_id.as_str()), "Call-ID of the dialog; {}", ctx());
        assert_eq!(m.tag_of("From"), Some(self.sipark_tag.clone()), "From tag = sipark's; {}", ctx());
        assert_eq!(m.tag_of("To"), Some(self.own_tag.clone()), "To tag = the peer's; {}", ctx());
        assert!(
            m.request_uri().is_some_and(|u| u.starts_with(&format!("sip:{user}@{ip}:"))),
            "Request-URI must be the peer's Contact; {}",
            ctx()
        );
        assert!(
            m.header("Via").is_some_and(|v| v.starts_with(&format!("SIP/2.0/UDP {engine};"))),
            "Via must be sipark's; {}",
            ctx()
        );
    }

    /// Asserts that `m`, sipark's response to an in-dialog request of the SIPp side, carries the
    /// dialog's tags.
    fn check_response(&self, m: &Msg, what: &str) {
        assert_eq!(m.header("Call-ID"), Some(self.call_id.as_str()), "{what}: Call-ID:\n{}", m.raw);
        assert_eq!(m.tag_of("To"), Some(self.sipark_tag.clone()), "{what}: To tag = sipark's:\n{}", m.raw);
        assert_eq!(m.tag_of("From"), Some(self.own_tag.clone()), "{what}: From tag = the peer's:\n{}", m.raw);
    }
}

/// Asserts a refer-subscription NOTIFY: Event refer, sipfrag body whose first line is `frag`,
/// Subscription-State `state`.
fn check_sipfrag(m: &Msg, frag: &str, state: &str, what: &str) {
    let ctx = || format!("{what}:\n{}", m.raw);
    assert_eq!(
        m.header("Event").map(|e| e.split(';').next().unwrap_or_default().trim()),
        Some("refer"),
        "Event: refer; {}",
        ctx()
    );
    assert_eq!(m.header("Content-Type"), Some("message/sipfrag;version=2.0"), "Content-Type; {}", ctx());
    assert_eq!(m.header("Subscription-State"), Some(state), "Subscription-State; {}", ctx());
    assert_eq!(m.body().lines().next().map(str::trim_end), Some(frag), "sipfrag body; {}", ctx());
}

/// The phone of 103 saw the call of 101 parked by 102 and then retrieved (exactly 2 NOTIFYs).
fn check_103_parked_then_retrieved(phone: Sipp, phone_addr: SocketAddr, engine: &Engine) {
    let phone = phone.wait();
    phone.assert_ok(2);
    let notes = notifies_of(phone.received());
    assert_eq!(notes.len(), 2, "103's phone must get exactly 2 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "103", phone_addr, engine.addr);
    }
    let c = only_call(&notes[0].1, "parked", &notes[0].0);
    check_parked_call(c, &notes[0].0, "101", "102", "103");
    check_terminated(&notes[1].1, &notes[1].0, &c.id, "retrieved");
    assert!(notes[1].1.parked().is_empty(), "nothing parked on 103 any more:\n{}", notes[1].0.raw);
    assert_versions_increase(&notes);
}

// ---------------------------------------------------------------------------------------------
// 1. REFER to *68105 on a bridged call: 202 + sipfrag NOTIFYs to the referrer, the other leg is
//    parked on 105 by a hold re-INVITE (no new INVITE, no BYE), and a third party retrieves it
// ---------------------------------------------------------------------------------------------

pub fn refer_parks_the_other_leg(v: Variant) {
    let ctx = Ctx::new("refer_parks_the_other_leg", 75, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (mut phone103, addr103) = sipp_phone(&ctx, &engine, 2, "103", 2);
    let (mut phone105, addr105) = sipp_phone(&ctx, &engine, 3, "105", 2);

    // A (101) parked on 103, retrieved by B (104), who then REFERs A to *68105.
    let mut a = Sipp::spawn(&ctx, "parkedA", parked_spec(&ctx, &engine, 4, "park"));
    phone103.wait_requests("NOTIFY", 1, 10 * SEC);
    let b = Sipp::spawn(&ctx, "referrerB", referrer_spec(&ctx, &engine, 5, &format!("sip:*68105@{DOMAIN}"), "park"));
    let b = b.wait();
    b.assert_ok(1);

    // B: 202, then the two sipfrag NOTIFYs in its own dialog, then its BYE answered.
    let got = b.received();
    let (_, ok) = response(&got, 200, "1 INVITE", "referrer B");
    let dialog = Dialog::of(ok);
    let (at202, accepted) = response(&got, 202, "2 REFER", "referrer B");
    dialog.check_response(accepted, "202 to the REFER");
    let notifies = requests(&got, "NOTIFY");
    assert_eq!(
        notifies.len(),
        2,
        "B must get exactly 2 NOTIFYs: {:#?}",
        notifies.iter().map(|(_, m)| &m.raw).collect::<Vec<_>>()
    );
    for (i, (pos, m)) in notifies.iter().enumerate() {
        dialog.check_request(m, "104", ctx.ip(5), engine.addr, &format!("NOTIFY {i} to the referrer"));
        assert!(*pos > at202, "NOTIFY {i} must follow the 202: {:#?}", firsts(&got));
    }
    check_sipfrag(notifies[0].1, "SIP/2.0 100 Trying", "active;expires=60", "first NOTIFY");
    check_sipfrag(notifies[1].1, "SIP/2.0 200 OK", "terminated;reason=noresource", "second NOTIFY");
    assert!(
        cseq_num(notifies[1].1) > cseq_num(notifies[0].1),
        "NOTIFY CSeq must grow:\n{}\n---\n{}",
        notifies[0].1.raw,
        notifies[1].1.raw
    );
    let (_, bye_ok) = response(&got, 200, "6 BYE", "referrer B");
    dialog.check_response(bye_ok, "200 to B's BYE");

    // 105's phone is told: A parked there, with B as parker.
    let notes = notifies_of(phone105.wait_requests("NOTIFY", 1, 10 * SEC));
    let (m, info) = &notes[0];
    check_notify(m, "105", addr105, engine.addr);
    let parked = only_call(info, "parked", m).clone();
    check_parked_call(&parked, m, "101", "104", "105");
    assert_eq!(info.calls.len(), 1, "one call on 105:\n{}", m.raw);

    // A was put on hold and its ACK came; B's BYE did not reach it.
    wait_log(&mut a, "the hold re-INVITE and its ACK", 10 * SEC, |g| requests(g, "ACK").len() >= 2);
    thread::sleep(Duration::from_millis(300));
    let early = a.received();
    assert!(
        !early.iter().any(|m| m.method() == Some("BYE")),
        "the parked leg must not get a BYE when the referrer hangs up: {:#?}",
        firsts(&early)
    );
    // Nothing is left on 103.
    refused(&ctx, &engine, "retrieve103", 6, &format!("sip:*88103@{DOMAIN}"), DOMAIN, "X-E2e: refer", 404);

    // C (106) retrieves *88105: A is re-INVITEd with C's SDP.
    let c = Sipp::spawn(
        &ctx,
        "retrieverC",
        retrieve_spec(&ctx, &engine, 7, &format!("sip:*88105@{DOMAIN}"), "106").key("hangup", "1"),
    );
    let c = c.wait();
    c.assert_ok(1);
    let got = c.received();
    let (_, ok) = response(&got, 200, "1 INVITE", "retriever C");
    assert!(has_line(ok, &media_of(ctx.ip(4))), "C gets A's SDP (media on {}):\n{}", ctx.ip(4), ok.raw);
    sipark_origin(ok, engine.addr);

    let a = a.wait();
    a.assert_ok(1);
    let got = a.received();
    check_reinvite(&got, "101", "103", ctx.ip(4), engine.addr);
    let (_, park_ok) = response(&got, 200, "1 INVITE", "parked A");
    let (session, v0) = sipark_origin(park_ok, engine.addr);
    let invites = requests(&got, "INVITE");
    assert_eq!(
        invites.len(),
        3,
        "A: retrieve, hold, retrieve (and no new INVITE dialog): {:#?}",
        invites.iter().map(|(_, m)| &m.raw).collect::<Vec<_>>()
    );
    let adialog = Dialog::of(park_ok);
    for (i, (_, m)) in invites.iter().enumerate() {
        adialog.check_request(m, "101", ctx.ip(4), engine.addr, &format!("re-INVITE {i} to A"));
    }
    assert!(
        has_line(invites[0].1, &media_of(ctx.ip(5))),
        "first re-INVITE: B's media ({}):\n{}",
        ctx.ip(5),
        invites[0].1.raw
    );
    let hold = invites[1].1;
    let (s, v) = sipark_origin(hold, engine.addr);
    assert_eq!((s.as_str(), v), (session.as_str(), v0 + 2), "hold re-INVITE: same session, version + 1:\n{}", hold.raw);
    assert!(
        (has_line(hold, "a=inactive") || has_line(hold, "a=sendonly"))
            && hold.body().lines().any(|l| l.starts_with("m=audio 9 "))
            && has_line(hold, &media_of(engine.addr.ip())),
        "hold SDP (sipark's c=, m=audio 9, a=inactive or a=sendonly):\n{}",
        hold.raw
    );
    assert!(
        !hold.body().contains("sipark-e2e") && !hold.body().contains(&ctx.ip(5).to_string()),
        "nothing of B's (or anyone's) session in the hold offer:\n{}",
        hold.raw
    );
    let again = invites[2].1;
    let (s, v) = sipark_origin(again, engine.addr);
    assert_eq!((s.as_str(), v), (session.as_str(), v0 + 3), "C's re-INVITE: same session, version + 1:\n{}", again.raw);
    assert!(
        has_line(again, "s=sipark-e2e-retriever") && has_line(again, &media_of(ctx.ip(7))),
        "C's re-INVITE offers C's media ({}):\n{}",
        ctx.ip(7),
        again.raw
    );
    assert!(
        cseq_num(invites[0].1) < cseq_num(invites[1].1) && cseq_num(invites[1].1) < cseq_num(invites[2].1),
        "re-INVITE CSeqs must grow: {:#?}",
        invites.iter().map(|(_, m)| m.header("CSeq")).collect::<Vec<_>>()
    );
    assert_eq!(requests(&got, "ACK").len(), 3, "one ACK per re-INVITE: {:#?}", firsts(&got));
    let byes = requests(&got, "BYE");
    assert_eq!(byes.len(), 1, "A gets one BYE, after C hung up: {:#?}", firsts(&got));
    assert!(byes[0].0 > invites[2].0, "A's BYE must come after C's re-INVITE: {:#?}", firsts(&got));
    adialog.check_request(byes[0].1, "101", ctx.ip(4), engine.addr, "BYE to A");

    check_103_parked_then_retrieved(phone103, addr103, &engine);
    let phone105 = phone105.wait();
    phone105.assert_ok(2);
    let notes = notifies_of(phone105.received());
    assert_eq!(notes.len(), 2, "105's phone must get exactly 2 NOTIFYs");
    for (m, _) in &notes {
        check_notify(m, "105", addr105, engine.addr);
    }
    check_terminated(&notes[1].1, &notes[1].0, &parked.id, "retrieved");
    assert_versions_increase(&notes);

    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 2. Any other REFER is a blind transfer: relayed to the other leg, its 202 and its NOTIFY
//    relayed back
// ---------------------------------------------------------------------------------------------

pub fn refer_relayed_blind_transfer(v: Variant) {
    let ctx = Ctx::new("refer_relayed_blind_transfer", 76, v);
    let mut engine = Engine::start(&ctx, &["--no-pin"]);
    let (mut phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);
    let target = format!("sip:200@{DOMAIN}");

    let a = Sipp::spawn(&ctx, "parkedA", parked_spec(&ctx, &engine, 3, "relay"));
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    let b = Sipp::spawn(&ctx, "referrerB", referrer_spec(&ctx, &engine, 4, &target, "relay"));
    let b = b.wait();
    b.assert_ok(1);
    let a = a.wait();
    a.assert_ok(1);

    // A got the REFER in its own dialog, from sipark, with B's target and referrer.
    let got = a.received();
    let (_, park_ok) = response(&got, 200, "1 INVITE", "parked A");
    let adialog = Dialog::of(park_ok);
    let invites = requests(&got, "INVITE");
    assert_eq!(invites.len(), 1, "A: only the retrieve re-INVITE: {:#?}", firsts(&got));
    let refers = requests(&got, "REFER");
    assert_eq!(refers.len(), 1, "A must get the REFER once: {:#?}", firsts(&got));
    let (at_refer, refer) = refers[0];
    adialog.check_request(refer, "101", ctx.ip(3), engine.addr, "REFER relayed to A");
    let rctx = || format!("REFER relayed to A:\n{}", refer.raw);
    assert_eq!(refer.header("Refer-To"), Some(format!("<{target}>").as_str()), "Refer-To; {}", rctx());
    assert_eq!(
        refer.header("Referred-By").map(uri_of),
        Some(format!("sip:104@{DOMAIN}").as_str()),
        "Referred-By; {}",
        rctx()
    );
    let contact = uri_of(refer.header("Contact").unwrap_or_default());
    assert!(
        contact.starts_with("sip:") && contact.contains(&format!("@{}", engine.addr)),
        "Contact must be sipark's (@{}); {}",
        engine.addr,
        rctx()
    );
    assert_eq!(refer.cseq_method(), Some("REFER"), "{}", rctx());
    assert!(
        cseq_num(refer) > cseq_num(invites[0].1),
        "the REFER takes the next CSeq of sipark's side of A's dialog (re-INVITE had {}); {}",
        cseq_num(invites[0].1),
        rctx()
    );
    assert!(!refer.raw.contains(&ctx.ip(4).to_string()), "nothing of B's addresses leaks to A; {}", rctx());
    let (at_ok, notify_ok) = response(&got, 200, "2 NOTIFY", "parked A");
    assert!(at_ok > at_refer, "{:#?}", firsts(&got));
    assert_eq!(notify_ok.header("Call-ID"), Some(adialog.call_id.as_str()), "200 to A's NOTIFY:\n{}", notify_ok.raw);
    let byes = requests(&got, "BYE");
    assert_eq!(byes.len(), 1, "A gets B's BYE: {:#?}", firsts(&got));
    adialog.check_request(byes[0].1, "101", ctx.ip(3), engine.addr, "BYE to A");

    // B got A's 202 and then A's NOTIFY, in B's dialog.
    let got = b.received();
    let (_, ok) = response(&got, 200, "1 INVITE", "referrer B");
    let bdialog = Dialog::of(ok);
    let (at202, accepted) = response(&got, 202, "2 REFER", "referrer B");
    bdialog.check_response(accepted, "202 relayed to B");
    let notifies = requests(&got, "NOTIFY");
    assert_eq!(notifies.len(), 1, "B must get A's NOTIFY once: {:#?}", firsts(&got));
    let (at_notify, notify) = notifies[0];
    assert!(at_notify > at202, "the NOTIFY follows the 202: {:#?}", firsts(&got));
    bdialog.check_request(notify, "104", ctx.ip(4), engine.addr, "NOTIFY relayed to B");
    check_sipfrag(notify, "SIP/2.0 200 OK", "terminated;reason=noresource", "NOTIFY relayed to B");
    assert!(
        !notify.raw.contains(&adialog.call_id) && !notify.raw.contains(&ctx.ip(3).to_string()),
        "nothing of A's dialog leaks to B:\n{}",
        notify.raw
    );
    let (_, bye_ok) = response(&got, 200, "6 BYE", "referrer B");
    bdialog.check_response(bye_ok, "200 to B's BYE");

    check_103_parked_then_retrieved(phone, phone_addr, &engine);
    engine.terminate_cleanly(12 * SEC);
}

// ---------------------------------------------------------------------------------------------
// 3. Refusals: REFER on a dialog that is only parked (403); on the bridged call, REFER to another
//    tenant's park code (403), to a full extension (486), to no valid extension (404). The bridge
//    stays: a re-INVITE and the BYE still cross it
// ---------------------------------------------------------------------------------------------

pub fn refer_refused_keeps_bridge(v: Variant) {
    let ctx = Ctx::new("refer_refused_keeps_bridge", 77, v);
    let mut engine = Engine::start(&ctx, &["--no-pin", "--max-parks-per-ext", "1"]);
    let (mut phone, phone_addr) = sipp_phone(&ctx, &engine, 2, "103", 2);

    // 105 is full: X (106) is parked there (and stays until the engine shuts down).
    let mut x = Sipp::spawn(&ctx, "parkedX", crate::parked_spec(&ctx, &engine, 5, "106", "102", "105"));
    wait_log(&mut x, "X's park 200 OK", 10 * SEC, |g| {
        g.iter().any(|m| m.status() == Some(200) && m.header("CSeq") == Some("1 INVITE"))
    });
    // A REFERs while it is only parked: 403, and it stays parked.
    let mut a = Sipp::spawn(&ctx, "parkedA", parked_spec(&ctx, &engine, 3, "refuse"));
    phone.wait_requests("NOTIFY", 1, 10 * SEC);
    wait_log(&mut a, "the answer to the parked leg's REFER", 10 * SEC, |g| {
        g.iter().any(|m| m.status().is_some() && m.header("CSeq") == Some("2 REFER"))
    });
    let b = Sipp::spawn(&ctx, "referrerB", referrer_spec(&ctx, &engine, 4, "sip:*68103@beta.example", "refuse"));
    let b = b.wait();
    b.assert_ok(1);
    let a = a.wait();
    a.assert_ok(1);

    let got = b.received();
    let (_, ok) = response(&got, 200, "1 INVITE", "referrer B");
    let bdialog = Dialog::of(ok);
    for (code, cseq, what) in
        [(403, "2 REFER", "another tenant"), (486, "3 REFER", "full"), (404, "4 REFER", "bad ext")]
    {
        let (_, refusal) = response(&got, code, cseq, "referrer B");
        bdialog.check_response(refusal, &format!("{code} to B's REFER ({what})"));
        let finals: Vec<&str> = got
            .iter()
            .filter(|m| m.header("CSeq") == Some(cseq) && m.status().is_some_and(|s| s >= 200))
            .map(Msg::first_line)
            .collect();
        assert!(
            finals.iter().all(|l| l.starts_with(&format!("SIP/2.0 {code} "))),
            "B's REFER ({what}) must only be answered {code}: {finals:#?}"
        );
    }
    assert!(requests(&got, "NOTIFY").is_empty(), "a refused REFER is reported by no NOTIFY: {:#?}", firsts(&got));
    let (_, reok) = response(&got, 200, "5 INVITE", "referrer B");
    bdialog.check_response(reok, "200 to B's re-INVITE");
    sipark_origin(reok, engine.addr);
    assert!(
        has_line(reok, "s=sipark-e2e-parked") && has_line(reok, &media_of(ctx.ip(3))),
        "B's re-INVITE is answered by A (media on {}):\n{}",
        ctx.ip(3),
        reok.raw
    );
    let (_, bye_ok) = response(&got, 200, "6 BYE", "referrer B");
    bdialog.check_response(bye_ok, "200 to B's BYE");

    let got = a.received();
    let (_, park_ok) = response(&got, 200, "1 INVITE", "parked A");
    let adialog = Dialog::of(park_ok);
    let (_, a403) = response(&got, 403, "2 REFER", "parked A");
    adialog.check_response(a403, "403 to A's REFER while parked");
    let (session, v0) = sipark_origin(park_ok, engine.addr);
    check_reinvite(&got, "101", "103", ctx.ip(3), engine.addr);
    let invites = requests(&got, "INVITE");
    assert_eq!(invites.len(), 2, "A: the retrieve and B's relayed re-INVITE, no hold: {:#?}", firsts(&got));
    let relayed = invites[1].1;
    adialog.check_request(relayed, "101", ctx.ip(3), engine.addr, "B's re-INVITE relayed to A");
    let (s, v) = sipark_origin(relayed, engine.addr);
    assert_eq!(
        (s.as_str(), v),
        (session.as_str(), v0 + 2),
        "relayed re-INVITE: sipark's origin, + 1:\n{}",
        relayed.raw
    );
    assert!(
        has_line(relayed, "s=sipark-e2e-reoffer")
            && has_line(relayed, &media_of(ctx.ip(4)))
            && !has_line(relayed, "a=inactive"),
        "the relayed re-INVITE carries B's new offer (media on {}), not a hold:\n{}",
        ctx.ip(4),
        relayed.raw
    );
    assert!(requests(&got, "REFER").is_empty(), "a refused REFER is not relayed: {:#?}", firsts(&got));
    assert_eq!(requests(&got, "ACK").len(), 2, "one ACK per re-INVITE: {:#?}", firsts(&got));
    let byes = requests(&got, "BYE");
    assert_eq!(byes.len(), 1, "B's BYE reaches A: {:#?}", firsts(&got));
    adialog.check_request(byes[0].1, "101", ctx.ip(3), engine.addr, "BYE to A");

    // Nothing was parked by any REFER: 103 saw the park and the retrieve only, and X is still
    // the only call on 105 (no re-INVITE; its BYE comes with the shutdown).
    check_103_parked_then_retrieved(phone, phone_addr, &engine);
    let early = x.received();
    assert!(
        !early.iter().any(|m| m.method().is_some()),
        "X must not have been touched by the refused REFERs: {:#?}",
        firsts(&early)
    );
    engine.terminate_cleanly(12 * SEC);
    let x = x.wait();
    x.assert_ok(1);
    let got = x.received();
    assert_eq!(requests(&got, "BYE").len(), 1, "X is hung up by the shutdown, still parked: {:#?}", firsts(&got));
}
