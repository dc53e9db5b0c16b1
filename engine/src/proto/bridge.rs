//! The bridge: sipark as a B2BUA between the two legs of a bridged call
//! (RFC 3725 once the retrieve or recall is done). It relays re-INVITE,
//! UPDATE, INFO, REFER and NOTIFY from one leg to the other with that leg's
//! own CSeq and sipark's SDP origin towards it, carries answers across,
//! ACKs a relayed 2xx when the leg it came from ACKs, and answers glare
//! with 491 (RFC 3261 §14.1, RFC 3311 §5.2).
//!
//! Everything a bridged call needs beyond its two dialogs lives in its
//! [`Bridge`], inside the call's bridged state.

use std::time::Instant;

use tracing::warn;

use super::dialog::{Dialog, Leg, Outgoing, PendingAck, Side, first_contact};
use super::ids::{ClientId, ServerId};
use super::reject::Reject;
use super::sip::parse::{Method, SipMessage, StartLine};
use super::sip::sdp;
use super::tu::{Ctx, Owner, Relay};
use super::txn::Response;

/// Headers a relayed request keeps besides its body: INFO's package,
/// REFER's target and referrer, and the refer subscription's NOTIFYs.
const RELAYED_HEADERS: [&str; 6] =
    ["Info-Package", "Refer-To", "Referred-By", "Event", "Subscription-State", "Refer-Sub"];

/// A relayed re-INVITE's 2xx, waiting for the ACK of the leg it came
/// from to be ACKed in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayAck {
    pub invite: ClientId,
    pub cseq: u32,
    /// The leg the re-INVITE came from.
    pub from: Side,
}

/// After a delayed-offer retrieve: the parked leg's 2xx, waiting for the
/// retriever's ACK to bring the answer (RFC 3725 flow III).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwaitingAnswer {
    pub reinvite: ClientId,
    pub cseq: u32,
}

/// A bridged call's state beyond the parked party's dialog.
#[derive(Debug)]
pub struct Bridge {
    /// The other party's dialog.
    pub b: Dialog,
    /// `--max-call-duration`: sipark sees no media, so this bounds what a
    /// lost BYE leaves behind.
    pub max_at: Instant,
    /// The last SDP sipark sent on each leg (A, B), to answer a session
    /// refresh and to keep the version when nothing changed.
    last_sdp: [Box<[u8]>; 2],
    /// The offer/answer exchange being relayed; another offer from either
    /// side meanwhile is glare.
    pub offer: Option<ClientId>,
    pub relay_ack: Option<RelayAck>,
    pub awaiting_answer: Option<AwaitingAnswer>,
}

fn index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

impl Bridge {
    /// What sipark sends each leg once `a` has answered the re-INVITE
    /// that offered it `b`'s SDP with `a_answer`: to A, `b`'s offer under
    /// A's origin; to B, the answer under B's origin with its version up.
    pub fn sdp(a: &Dialog, b: &Dialog, a_answer: &[u8], host: &str) -> [Vec<u8>; 2] {
        let mut to_a = Vec::with_capacity(b.remote_sdp().len() + 32);
        sdp::rewrite_origin(&mut to_a, b.remote_sdp(), a.origin(), host);
        let mut origin = b.origin();
        origin.version += 1;
        let mut to_b = Vec::with_capacity(a_answer.len() + 32);
        sdp::rewrite_origin(&mut to_b, a_answer, origin, host);
        [to_a, to_b]
    }

    /// The bridge of `b`, once [`Bridge::sdp`]'s `sent` went out (`b`'s
    /// origin version goes up with it).
    pub fn new(mut b: Dialog, max_at: Instant, sent: [Vec<u8>; 2]) -> Bridge {
        b.bump_origin();
        let [to_a, to_b] = sent;
        Bridge { b, max_at, last_sdp: [to_a.into(), to_b.into()], offer: None, relay_ack: None, awaiting_answer: None }
    }

    /// Is an offer/answer exchange under way?
    pub fn busy(&self) -> bool {
        self.offer.is_some() || self.relay_ack.is_some()
    }

    /// The last SDP sipark sent on `side`.
    pub fn last_sdp(&self, side: Side) -> &[u8] {
        &self.last_sdp[index(side)]
    }

    /// The dialog of `side`, given the parked party's `a`.
    pub fn leg<'d>(&'d mut self, a: &'d mut Dialog, side: Side) -> &'d mut Dialog {
        match side {
            Side::A => a,
            Side::B => &mut self.b,
        }
    }

    /// Writes `sdp` under `side`'s origin, as the SDP sent next on that
    /// leg. The version goes up only when the description differs from the
    /// last one sent there (RFC 3264 §8), so a relayed session refresh
    /// stays the same session description.
    fn rewrite(&mut self, a: &mut Dialog, side: Side, out: &mut Vec<u8>, sdp: &[u8], host: &str) {
        let i = index(side);
        let leg = match side {
            Side::A => a,
            Side::B => &mut self.b,
        };
        sdp::rewrite_origin(out, sdp, leg.origin(), host);
        if *out == *self.last_sdp[i] {
            return;
        }
        out.clear();
        leg.bump_origin();
        sdp::rewrite_origin(out, sdp, leg.origin(), host);
        self.last_sdp[i] = out.as_slice().into();
    }

    /// A call ends while the parked leg's 2xx still waits for the
    /// retriever's answer: ACK it with a hold answer, so that the BYE that
    /// follows goes on a confirmed dialog.
    pub fn settle_awaiting(&mut self, cx: &mut Ctx<'_>, a: &mut Dialog) {
        let Some(w) = self.awaiting_answer.take() else { return };
        a.bump_origin();
        let mut hold = Vec::new();
        sdp::hold_answer(&mut hold, a.remote_sdp(), a.origin(), &cx.env.local.host);
        let body = (!hold.is_empty()).then_some(("application/sdp", hold.as_slice()));
        cx.ack(a, Some(w.reinvite), w.cseq, body);
    }

    /// The retriever's ACK arrived after a delayed-offer retrieve with
    /// `answer` to the parked leg's offer: ACK the parked leg's 2xx with
    /// it. `false` when it brought none: the session cannot be set up.
    pub fn answer_from_retriever(&mut self, cx: &mut Ctx<'_>, a: &mut Dialog, answer: Option<&[u8]>) -> bool {
        let Some(w) = self.awaiting_answer else { return true };
        let Some(answer) = answer else {
            warn!("delayed-offer retrieve: the ACK brought no SDP answer; hanging up");
            return false;
        };
        self.awaiting_answer = None;
        self.b.set_remote_sdp(answer);
        let mut to_a = Vec::with_capacity(answer.len() + 32);
        sdp::rewrite_origin(&mut to_a, answer, a.origin(), &cx.env.local.host);
        self.last_sdp[0] = to_a.as_slice().into();
        cx.ack(a, Some(w.reinvite), w.cseq, Some(("application/sdp", &to_a)));
        true
    }

    /// Relays the re-INVITE, UPDATE, INFO, REFER or NOTIFY `msg` (server
    /// transaction `server`) from `leg` to the other leg. The answer
    /// comes back in [`Bridge::relay_answered`].
    pub fn relay_request(
        &mut self,
        cx: &mut Ctx<'_>,
        Leg { call, side: from }: Leg,
        a: &mut Dialog,
        msg: &SipMessage<'_>,
        method: Method<'_>,
        server: ServerId,
    ) -> Result<(), Reject> {
        let offer = matches!(method, Method::Invite | Method::Update);
        if offer && self.busy() {
            return Err(Reject::Glare);
        }
        let to = from.other();
        if offer && let Some(target) = first_contact(msg) {
            self.leg(a, from).set_remote_target(target);
        }
        let mut body = Vec::new();
        let ctype = if sdp::is_sdp(msg.body()) {
            self.rewrite(a, to, &mut body, msg.body(), &cx.env.local.host);
            "application/sdp"
        } else {
            body.extend_from_slice(msg.body());
            msg.content_type().and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("application/octet-stream")
        };
        let kept: Vec<(&str, &[u8])> =
            RELAYED_HEADERS.iter().filter_map(|name| msg.header_raw(name.as_bytes()).map(|v| (*name, v))).collect();
        if method == Method::Invite {
            cx.txns.respond(cx.env, cx.now, server, msg, &Response::new(100, "Trying"));
        }
        cx.txns.keep_request(server, msg, offer);
        cx.txns.set_call(server, call);
        let body = (!body.is_empty()).then_some((ctype, body.as_slice()));
        let name = std::str::from_utf8(method.as_bytes()).unwrap_or("INFO");
        let relay = Relay { call, server, from, offer, invite: method == Method::Invite };
        let leg = self.leg(a, to);
        let id = cx.request(leg, &Outgoing { method: name, headers: &kept, body }, Owner::Relay(relay));
        if offer {
            self.offer = Some(id);
        }
        Ok(())
    }

    /// The final answer to a relayed request (`None`: it timed out): sent
    /// back to the leg the request came from, with an SDP answer rewritten
    /// to sipark's origin towards it. A re-INVITE's 2xx is ACKed once that
    /// leg ACKs ours ([`Bridge::relay_ack`]), so that an answer in its ACK
    /// goes across.
    pub fn relay_answered(
        &mut self,
        cx: &mut Ctx<'_>,
        a: &mut Dialog,
        relay: Relay,
        id: ClientId,
        answer: Option<(u16, &SipMessage<'_>)>,
    ) {
        if self.offer == Some(id) {
            self.offer = None;
        }
        let Some((code, msg)) = answer else {
            cx.txns.respond_later(cx.env, cx.now, relay.server, &Response::new(408, "Request Timeout"));
            return;
        };
        let reason = match msg.start_line() {
            StartLine::Response { reason, .. } => String::from_utf8_lossy(reason).into_owned(),
            StartLine::Request { .. } => String::new(),
        };
        let offered = cx.txns.kept_body(relay.server).map(<[u8]>::to_vec).unwrap_or_default();
        let (from, to) = (relay.from, relay.from.other());
        let mut body = Vec::new();
        let mut ctype = "";
        if (200..300).contains(&code) {
            let y = self.leg(a, to);
            if relay.offer
                && let Some(target) = first_contact(msg)
            {
                y.set_remote_target(target);
            }
            if sdp::is_sdp(msg.body()) {
                y.set_remote_sdp(msg.body());
                self.rewrite(a, from, &mut body, msg.body(), &cx.env.local.host);
                ctype = "application/sdp";
            } else if !msg.body().is_empty() {
                body.extend_from_slice(msg.body());
                ctype = msg.content_type().and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("");
            }
            let x = self.leg(a, from);
            if relay.offer && sdp::is_sdp(&offered) {
                x.set_remote_sdp(&offered);
            }
            if relay.invite {
                x.pending_ack = Some(PendingAck { server: relay.server, cseq: x.remote_cseq });
                if let Some(cseq) = cx.txns.cseq(id) {
                    self.relay_ack = Some(RelayAck { invite: id, cseq, from });
                }
            }
        }
        let transport = self.leg(a, from).transport();
        // Copied: `respond_later` borrows the environment mutably.
        let contact = cx.env.local.contact(transport).to_vec();
        let extra: &[(&str, &[u8])] =
            if relay.offer && (200..300).contains(&code) { &[("Contact", &contact)] } else { &[] };
        let body = (!body.is_empty()).then_some((ctype, body.as_slice()));
        let reason = if reason.is_empty() { "Relayed" } else { reason.as_str() };
        let resp = Response::new(code, reason).headers(extra).body(body);
        cx.txns.respond_later(cx.env, cx.now, relay.server, &resp);
    }

    /// The leg `from`, which sent a relayed re-INVITE, ACKed our 2xx with
    /// `answer` (if it carried one): ACK the other leg's 2xx, carrying the
    /// answer across.
    pub fn relay_ack(&mut self, cx: &mut Ctx<'_>, a: &mut Dialog, from: Side, answer: Option<&[u8]>) {
        let Some(r) = self.relay_ack.take() else { return };
        let to = from.other();
        let mut body = Vec::new();
        if let Some(sdp) = answer {
            self.leg(a, from).set_remote_sdp(sdp);
            self.rewrite(a, to, &mut body, sdp, &cx.env.local.host);
        }
        let body = (!body.is_empty()).then_some(("application/sdp", body.as_slice()));
        let leg = self.leg(a, to);
        cx.ack(leg, Some(r.invite), r.cseq, body);
    }
}
