//! Retrieve by third-party call control (RFC 3725): the parked leg is
//! re-INVITEd with the retriever's offer (flow I) or without one (flow III,
//! delayed offer), and its answer goes to the retriever in the 200. A 491
//! from the parked leg is retried after the §14.1 delay.

use std::time::Duration;

use super::{CallState, End, Next, Park, Retrieving, park_timeout};
use crate::proto::bridge::{AwaitingAnswer, Bridge};
use crate::proto::dialog::{Dialog, Outgoing, PendingAck, first_contact};
use crate::proto::ids::{CallId, ClientId};
use crate::proto::reject::{Intent, Reject};
use crate::proto::sip::parse::SipMessage;
use crate::proto::sip::sdp;
use crate::proto::sip::write::ALLOW;
use crate::proto::tu::{Ctx, Incoming, Owner};
use crate::proto::txn::Response;

/// How many times a retrieve re-INVITE refused 491 is sent again.
const MAX_GLARE_RETRIES: u8 = 3;

impl Park {
    /// The retriever's INVITE `msg` (server transaction `server`) takes the
    /// call `want`, or the oldest retrievable one, on `ext` of `tenant`.
    pub(super) fn retrieve(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Incoming<'_, '_>,
        tenant: &[u8],
        ext: &[u8],
        want: Option<CallId>,
    ) -> Result<(), Reject> {
        let Incoming { src, msg, server } = req;
        let id = self
            .exts
            .calls_of(tenant, ext, &self.calls)
            .filter(|c| want.is_none_or(|w| w == c.id) && c.on_list() && c.phase().retrievable())
            .min_by_key(|c| c.joined)
            .map(|c| c.id)
            .ok_or(Reject::NoParkedCall)?;
        let delayed = msg.body().is_empty();
        if !delayed && !sdp::is_sdp(msg.body()) {
            return Err(Reject::UnsupportedMedia);
        }
        let target = first_contact(msg).ok_or(Reject::MissingContact)?;
        cx.txns.respond(cx.env, cx.now, server, msg, &Response::new(100, "Trying"));
        self.cancel_forks(cx, id);
        let tag = cx.env.tag();
        let b = Dialog::uas(msg, src, target, tag, msg.body());
        cx.txns.keep_request(server, msg, false);
        cx.txns.set_call(server, id);
        let Some(reinvite) = self.reinvite(cx, id, msg.body(), true, Owner::Retrieve { call: id }) else {
            return Ok(());
        };
        let retrieving =
            Retrieving { invite: server, b, reinvite, cancelled: false, delayed, retries: 0, retry_at: None };
        self.set(cx, id, CallState::Retrieving(Box::new(retrieving)));
        Ok(())
    }

    /// Sends the parked leg of `id` a re-INVITE carrying `body` (rewritten
    /// to sipark's origin towards it when `rewrite`; none asks it for an
    /// offer). Returns the client transaction.
    pub(super) fn reinvite(
        &mut self,
        cx: &mut Ctx<'_>,
        id: CallId,
        body: &[u8],
        rewrite: bool,
        owner: Owner,
    ) -> Option<ClientId> {
        let c = self.calls.get_mut(&id)?;
        c.a.bump_origin();
        let mut sdp_out = Vec::with_capacity(body.len() + 32);
        if rewrite {
            sdp::rewrite_origin(&mut sdp_out, body, c.a.origin(), &cx.env.local.host);
        } else {
            sdp_out.extend_from_slice(body);
        }
        let body = (!sdp_out.is_empty()).then_some(("application/sdp", sdp_out.as_slice()));
        Some(cx.request(&mut c.a, &Outgoing { method: "INVITE", headers: &[], body }, owner))
    }

    /// A re-INVITE putting the parked leg of `id` back on hold, derived
    /// from the last SDP it sent.
    pub(super) fn rehold(&mut self, cx: &mut Ctx<'_>, id: CallId) {
        let Some(c) = self.calls.get(&id) else { return };
        let mut origin = c.a.origin();
        origin.version += 1;
        let mut hold = Vec::new();
        if Self::hold_sdp(cx, &mut hold, c, origin) {
            self.reinvite(cx, id, &hold, false, Owner::Rehold { call: id });
        }
    }

    /// A retrieve failed or was abandoned: the call is parked again, with a
    /// fresh park timeout.
    pub(super) fn back_to_parked(&mut self, cx: &mut Ctx<'_>, id: CallId) {
        let Some(c) = self.calls.get(&id) else { return };
        let timeout_at = cx.now + park_timeout(c);
        self.set(cx, id, CallState::Parked { timeout_at });
    }

    /// The parked leg's final answer `code` to the retrieve re-INVITE `txn`.
    pub(super) fn retrieve_answered(
        &mut self,
        cx: &mut Ctx<'_>,
        id: CallId,
        txn: ClientId,
        code: u16,
        msg: &SipMessage<'_>,
    ) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        let CallState::Retrieving(r) = &c.state else { return };
        if r.reinvite != txn {
            return;
        }
        let (invite, cancelled, delayed, retries) = (r.invite, r.cancelled, r.delayed, r.retries);
        if (200..300).contains(&code) {
            let has_sdp = sdp::is_sdp(msg.body());
            if let Some(target) = first_contact(msg) {
                c.a.set_remote_target(target);
            }
            if has_sdp {
                c.a.set_remote_sdp(&sdp::hold_basis(msg.body()));
            }
            let cseq = cx.txns.cseq(txn).unwrap_or(c.a.local_cseq);
            if delayed && (cancelled || !has_sdp) {
                // The parked leg offered (or failed to): answer with hold in
                // the ACK, and it stays parked.
                c.a.bump_origin();
                let mut hold = Vec::new();
                Self::hold_sdp(cx, &mut hold, c, c.a.origin());
                let body = (!hold.is_empty()).then_some(("application/sdp", hold.as_slice()));
                cx.ack(&c.a, Some(txn), cseq, body);
                if has_sdp {
                    cx.env.stats.retrieves_failed.inc();
                } else {
                    cx.reject_later(invite, Reject::PartyMadeNoOffer, Intent::Retrieve);
                }
                self.back_to_parked(cx, id);
                return;
            }
            if !delayed {
                cx.ack(&c.a, Some(txn), cseq, None);
            }
            if cancelled {
                // The retriever gave up: put the parked leg back on hold.
                self.back_to_parked(cx, id);
                self.rehold(cx, id);
                cx.env.stats.retrieves_failed.inc();
                return;
            }
            self.bridge_retriever(cx, id, txn, cseq, msg.body());
        } else if code == 491 && !cancelled && retries < MAX_GLARE_RETRIES {
            // Glare with a re-INVITE of the parked party's: try again after
            // the §14.1 delay. sipark does not own the parked leg's Call-ID,
            // so the delay is 0 to 2 s in 10 ms steps.
            let retry_at = cx.now + Duration::from_millis(10 * (cx.env.random() % 201));
            self.change(cx, id, |old| match old {
                CallState::Retrieving(mut r) => {
                    r.retries += 1;
                    r.retry_at = Some(retry_at);
                    Next::To(CallState::Retrieving(r))
                }
                other => Next::To(other),
            });
        } else if matches!(code, 408 | 481) {
            cx.reject_later(invite, Reject::PartyUnavailable, Intent::Retrieve);
            self.end(cx, id, End::Hangup);
        } else {
            let reject = if code == 491 { Reject::PartyGlare } else { Reject::PartyRefused };
            cx.reject_later(invite, reject, Intent::Retrieve);
            self.back_to_parked(cx, id);
        }
    }

    /// The parked leg of `id` answered the retrieve re-INVITE `txn` (CSeq
    /// `cseq`) with `answer`: the retriever's dialog joins it in a bridge,
    /// and the retriever gets its 200.
    fn bridge_retriever(&mut self, cx: &mut Ctx<'_>, id: CallId, txn: ClientId, cseq: u32, answer: &[u8]) {
        let Some(c) = self.calls.get(&id) else { return };
        let CallState::Retrieving(r) = &c.state else { return };
        // Delayed offer: the retriever sent no SDP, so only the parked leg's
        // offer goes to it; the answer comes in its ACK.
        let sent = Bridge::sdp(&c.a, &r.b, answer, &cx.env.local.host);
        let to_b = sent[1].clone();
        let (invite, tag, transport, delayed) = (r.invite, r.b.local_tag(), r.b.transport(), r.delayed);
        let max_at = cx.now + cx.env.cfg.limits.max_call_duration;
        self.change(cx, id, |old| match old {
            CallState::Retrieving(r) => {
                let mut b = r.b;
                b.pending_ack = Some(PendingAck { server: invite, cseq: b.remote_cseq });
                let mut bridge = Bridge::new(b, max_at, sent);
                if delayed {
                    bridge.awaiting_answer = Some(AwaitingAnswer { reinvite: txn, cseq });
                }
                Next::To(CallState::Bridged(Box::new(bridge)))
            }
            other => Next::To(other),
        });
        let contact = cx.env.local.contact(transport).to_vec();
        let headers = [("Contact", &contact[..]), ("Allow", ALLOW)];
        let resp = Response::new(200, "OK").tag(&tag).headers(&headers).body(Some(("application/sdp", &to_b)));
        cx.txns.respond_later(cx.env, cx.now, invite, &resp);
    }

    /// The §14.1 delay after a 491 passed: send the retrieve re-INVITE
    /// again, with the retriever's offer (none for a delayed offer).
    pub(super) fn retry_retrieve(&mut self, cx: &mut Ctx<'_>, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        let CallState::Retrieving(r) = &mut c.state else { return };
        r.retry_at = None;
        if r.cancelled {
            let invite = r.invite;
            cx.txns.respond_later(cx.env, cx.now, invite, &Response::new(487, "Request Terminated"));
            self.back_to_parked(cx, id);
            return;
        }
        let offer = r.b.remote_sdp().to_vec();
        let Some(reinvite) = self.reinvite(cx, id, &offer, true, Owner::Retrieve { call: id }) else { return };
        if let Some(c) = self.calls.get_mut(&id)
            && let CallState::Retrieving(r) = &mut c.state
        {
            r.reinvite = reinvite;
        }
    }

    /// The retrieve re-INVITE `txn` of `id` got no answer (Timer B).
    pub(super) fn retrieve_timed_out(&mut self, cx: &mut Ctx<'_>, id: CallId, txn: ClientId) {
        let Some(CallState::Retrieving(r)) = self.calls.get(&id).map(|c| &c.state) else { return };
        if r.reinvite != txn {
            return;
        }
        let invite = r.invite;
        cx.reject_later(invite, Reject::PartyUnavailable, Intent::Retrieve);
        self.end(cx, id, End::Hangup);
    }
}
