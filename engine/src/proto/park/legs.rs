//! Requests inside a call's dialogs (BYE, ACK, re-INVITE, UPDATE, INFO,
//! REFER, NOTIFY), the answers to the requests sipark sent on them, and
//! hanging a leg up.

use tracing::{info, warn};

use super::{CallState, End, Park, Phase, park_timeout};
use crate::proto::dialog::{Dialog, Leg, Outgoing, PendingAck, Side, first_contact};
use crate::proto::ids::{CallId, ClientId, ServerId};
use crate::proto::reject::{Intent, Reject};
use crate::proto::sip::Peer;
use crate::proto::sip::parse::{Method, SipMessage};
use crate::proto::sip::sdp;
use crate::proto::tu::{Ctx, Incoming, Owner};
use crate::proto::txn::Response;

impl Park {
    /// An in-dialog request `msg` (server transaction `server`, To tag
    /// `tag`, CSeq `cseq`) from `src`.
    pub fn in_dialog(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Incoming<'_, '_>,
        method: Method<'_>,
        call_id: &[u8],
        tag: &[u8],
        cseq: u32,
    ) {
        let Incoming { src, msg, server } = req;
        let Some(leg) = self.find_dialog(call_id, tag) else {
            cx.reject(server, msg, Reject::NoDialog, Intent::Other);
            return;
        };
        let Some(c) = self.calls.get_mut(&leg.call) else {
            cx.reject(server, msg, Reject::NoDialog, Intent::Other);
            return;
        };
        let bridged = matches!(c.state, CallState::Bridged(_));
        let d = match (leg.side, &mut c.state) {
            (Side::A, _) => &mut c.a,
            (Side::B, CallState::Bridged(br)) => &mut br.b,
            _ => {
                cx.reject(server, msg, Reject::NoDialog, Intent::Other);
                return;
            }
        };
        if cseq < d.remote_cseq {
            cx.reject(server, msg, Reject::CSeqOutOfOrder, Intent::Other);
            return;
        }
        // A BYE while our 2xx still waits for its ACK: the ACK was lost but
        // the peer has moved on, so stop resending the 2xx.
        let lost_ack = if method == Method::Bye { d.pending_ack.take() } else { None };
        d.remote_cseq = cseq;
        d.set_peer(src);
        if let Some(p) = lost_ack {
            cx.txns.acked(cx.env, cx.now, p.server);
        }
        let id = leg.call;
        match method {
            Method::Bye => {
                cx.txns.respond(cx.env, cx.now, server, msg, &Response::new(200, "OK"));
                self.on_bye(cx, leg);
            }
            Method::Refer if bridged => match self.park_code_of(cx, msg) {
                Some(Ok(rest)) => {
                    if let Err(r) = self.refer(cx, msg, server, id, leg.side, &rest) {
                        cx.reject(server, msg, r, Intent::Park);
                    }
                }
                Some(Err(r)) => cx.reject(server, msg, r, Intent::Other),
                None => self.relay(cx, msg, method, server, leg),
            },
            Method::Invite | Method::Update | Method::Info | Method::Notify if bridged => {
                self.relay(cx, msg, method, server, leg);
            }
            Method::Refer => cx.reject(server, msg, Reject::NotBridged, Intent::Other),
            Method::Invite | Method::Update => self.reoffer(cx, msg, method, server, id),
            Method::Info | Method::Options => cx.txns.respond(cx.env, cx.now, server, msg, &Response::new(200, "OK")),
            Method::Other(_) => cx.reject(server, msg, Reject::NotImplemented, Intent::Other),
            _ => cx.reject(server, msg, Reject::MethodNotAllowed, Intent::Other),
        }
    }

    /// Relays `msg` from `leg` of a bridged call to its other leg.
    fn relay(&mut self, cx: &mut Ctx<'_>, msg: &SipMessage<'_>, method: Method<'_>, server: ServerId, leg: Leg) {
        let Some(c) = self.calls.get_mut(&leg.call) else { return };
        let CallState::Bridged(br) = &mut c.state else { return };
        if let Err(r) = br.relay_request(cx, leg, &mut c.a, msg, method, server) {
            cx.reject(server, msg, r, Intent::Other);
        }
    }

    /// A re-INVITE or UPDATE from the parked party of `id`, which is not
    /// bridged: while parked the answer is hold; between states it is 491.
    fn reoffer(&mut self, cx: &mut Ctx<'_>, msg: &SipMessage<'_>, method: Method<'_>, server: ServerId, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        let phase = c.state.phase();
        if matches!(phase, Phase::Retrieving | Phase::RecallBridging | Phase::Answering) {
            cx.reject(server, msg, Reject::Busy491, Intent::Other);
            return;
        }
        let parked = phase.retrievable();
        let a = &mut c.a;
        if let Some(target) = first_contact(msg) {
            a.set_remote_target(target);
        }
        if sdp::is_sdp(msg.body()) {
            a.set_remote_sdp(&sdp::hold_basis(msg.body()));
            if parked {
                a.bump_origin();
            }
        }
        if method == Method::Invite {
            a.pending_ack = Some(PendingAck { server, cseq: a.remote_cseq });
        }
        let (transport, moved) = (a.transport(), sdp::is_sdp(msg.body()));
        // A parked leg is answered with its hold SDP, derived afresh; a
        // referrer with the last SDP sipark sent it.
        let answer: Vec<u8> = match &c.state {
            CallState::Referrer(r) => r.last_sdp.to_vec(),
            _ => {
                let mut hold = Vec::with_capacity(c.a.remote_sdp().len() + 32);
                if !Self::hold_sdp(cx, &mut hold, c, c.a.origin()) {
                    hold.clear();
                }
                hold
            }
        };
        let contact = cx.env.local.contact(transport).to_vec();
        let headers = [("Contact", &contact[..])];
        let resp = Response::new(200, "OK").headers(&headers).sdp(&answer);
        cx.txns.respond(cx.env, cx.now, server, msg, &resp);
        if moved {
            self.music_moves(cx, id);
        }
    }

    /// `leg` hung up (its BYE was answered).
    fn on_bye(&mut self, cx: &mut Ctx<'_>, leg: Leg) {
        let id = leg.call;
        let Some(c) = self.calls.get(&id) else { return };
        match &c.state {
            CallState::Answering(_) | CallState::Referrer(_) => {
                self.end(cx, id, End::Gone);
            }
            CallState::Parked { .. } | CallState::Recalling(_) => {
                self.cancel_forks(cx, id);
                self.end(cx, id, End::Hangup);
            }
            CallState::Retrieving(r) => {
                let invite = r.invite;
                cx.reject_later(invite, Reject::PartyHungUp, Intent::Retrieve);
                self.end(cx, id, End::Hangup);
            }
            CallState::RecallBridging(_) | CallState::Bridged(_) => {
                self.bye(cx, id, leg.side.other());
                self.end(cx, id, End::Gone);
            }
            CallState::Taken => {}
        }
    }

    /// Sends BYE on `side` of `id`.
    pub(super) fn bye(&mut self, cx: &mut Ctx<'_>, id: CallId, side: Side) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        let d: &mut Dialog = match (side, &mut c.state) {
            (Side::A, CallState::Bridged(br)) => {
                // A 2xx of the parked leg still waiting for the retriever's
                // answer is ACKed first, so the BYE is on a confirmed dialog.
                br.settle_awaiting(cx, &mut c.a);
                &mut c.a
            }
            (Side::A, _) => &mut c.a,
            (Side::B, CallState::Bridged(br)) => &mut br.b,
            (Side::B, CallState::RecallBridging(r)) => &mut r.b,
            (Side::B, CallState::Retrieving(r)) => &mut r.b,
            _ => return,
        };
        cx.request(d, &Outgoing::BYE, Owner::Detached);
    }

    /// An ACK from `src` for a 2xx of sipark's in a call's dialog (To tag
    /// `tag`, CSeq `cseq`).
    pub fn on_ack(
        &mut self,
        cx: &mut Ctx<'_>,
        src: Peer,
        msg: &SipMessage<'_>,
        call_id: &[u8],
        tag: Option<&[u8]>,
        cseq: u32,
    ) {
        let Some(leg) = tag.and_then(|t| self.find_dialog(call_id, t)) else {
            cx.env.stats.dropped.inc();
            return;
        };
        let id = leg.call;
        let Some(c) = self.calls.get_mut(&id) else { return };
        let d = match (leg.side, &mut c.state) {
            (Side::A, _) => &mut c.a,
            (Side::B, CallState::Bridged(br)) => &mut br.b,
            _ => return,
        };
        d.set_peer(src);
        let Some(pending) = d.pending_ack.filter(|p| p.cseq == cseq) else { return };
        d.pending_ack = None;
        // The answer to sipark's offer, when the INVITE had none.
        let answer = sdp::is_sdp(msg.body()).then(|| msg.body());
        if let Some(sdp) = answer
            && d.remote_sdp().is_empty()
        {
            if leg.side == Side::A {
                d.set_remote_sdp(&sdp::hold_basis(sdp));
            } else {
                d.set_remote_sdp(sdp);
            }
        }
        let no_media = d.remote_sdp().is_empty();
        cx.txns.acked(cx.env, cx.now, pending.server);
        enum Then {
            Hangup,
            Park,
            RelayAck,
            Answer,
        }
        let then = match &c.state {
            CallState::Answering(a) if a.cancelled => {
                info!(call = %id.token(), "park cancelled before its ACK: hanging up");
                Then::Hangup
            }
            CallState::Answering(_) if no_media => {
                warn!(call = %id.token(), "park ACK brought no SDP answer: hanging up");
                cx.env.stats.parks_rejected.inc();
                Then::Hangup
            }
            // Accepted just before shutdown: hung up, never listed.
            CallState::Answering(_) if self.shutting_down => Then::Hangup,
            CallState::Answering(_) => Then::Park,
            CallState::Bridged(br) if br.relay_ack.is_some_and(|r| r.from == leg.side) => Then::RelayAck,
            CallState::Bridged(_) if leg.side == Side::B => Then::Answer,
            _ => return,
        };
        match then {
            Then::Hangup => {
                self.bye(cx, id, Side::A);
                self.end(cx, id, End::Gone);
            }
            Then::Park => {
                let timeout_at = cx.now + park_timeout(c);
                self.set(cx, id, CallState::Parked { timeout_at });
            }
            Then::RelayAck => {
                if let CallState::Bridged(br) = &mut c.state {
                    br.relay_ack(cx, &mut c.a, leg.side, answer);
                }
            }
            Then::Answer => {
                let ok = match &mut c.state {
                    CallState::Bridged(br) => br.answer_from_retriever(cx, &mut c.a, answer),
                    _ => true,
                };
                if !ok {
                    self.bye(cx, id, Side::A);
                    self.bye(cx, id, Side::B);
                    self.end(cx, id, End::Gone);
                }
            }
        }
    }

    /// A 2xx sipark sent for `server`, an INVITE of `id`'s, was never ACKed
    /// (§13.3.1.4): end the session.
    pub fn not_acked(&mut self, cx: &mut Ctx<'_>, server: ServerId, id: CallId) {
        let Some(c) = self.calls.get(&id) else { return };
        let pending = |d: &Dialog| d.pending_ack.is_some_and(|p| p.server == server);
        match &c.state {
            CallState::Answering(a) if a.invite == server => {
                warn!(call = %id.token(), "park 200 OK never ACKed");
                self.bye(cx, id, Side::A);
                self.end(cx, id, End::Gone);
            }
            CallState::Bridged(br) if pending(&br.b) || pending(&c.a) => {
                warn!(call = %id.token(), "retrieve 200 OK never ACKed");
                self.bye(cx, id, Side::A);
                self.bye(cx, id, Side::B);
                self.end(cx, id, End::Gone);
            }
            _ => {}
        }
    }

    /// A bridged call reached `--max-call-duration`.
    pub(super) fn max_duration(&mut self, cx: &mut Ctx<'_>, id: CallId) {
        warn!(call = %id.token(), "bridged call reached the maximum call duration: hanging up both legs");
        self.bye(cx, id, Side::A);
        self.bye(cx, id, Side::B);
        self.end(cx, id, End::Gone);
    }

    /// The final answer `code` (from `src`) to the request `txn` that
    /// sipark sent for `owner`.
    pub fn on_final(
        &mut self,
        cx: &mut Ctx<'_>,
        src: Peer,
        txn: ClientId,
        owner: Owner,
        code: u16,
        msg: &SipMessage<'_>,
    ) {
        match owner {
            Owner::Rehold { call } => {
                if (200..300).contains(&code)
                    && let Some(c) = self.calls.get(&call)
                {
                    let cseq = cx.txns.cseq(txn).unwrap_or(c.a.local_cseq);
                    cx.ack(&c.a, Some(txn), cseq, None);
                }
            }
            Owner::Retrieve { call } => self.retrieve_answered(cx, call, txn, code, msg),
            Owner::Recall { call } => self.recall_answered(cx, src, call, txn, code, msg),
            Owner::RecallBridge { call } => self.recall_bridged(cx, call, txn, code, msg),
            Owner::Relay(relay) => self.relay_answered(cx, relay, txn, Some((code, msg))),
            Owner::Notify | Owner::Detached => {}
        }
    }

    /// The request `txn` sipark sent for `owner` got no final answer.
    pub fn on_timeout(&mut self, cx: &mut Ctx<'_>, txn: ClientId, owner: Owner) {
        match owner {
            Owner::Retrieve { call } => self.retrieve_timed_out(cx, call, txn),
            Owner::RecallBridge { call } => self.recall_bridge_timed_out(cx, call, txn),
            Owner::Recall { call } => self.fork_done(cx, call, txn),
            Owner::Relay(relay) => self.relay_answered(cx, relay, txn, None),
            Owner::Rehold { .. } | Owner::Notify | Owner::Detached => {}
        }
    }

    /// The answer to a relayed request, for the bridge of its call.
    fn relay_answered(
        &mut self,
        cx: &mut Ctx<'_>,
        relay: crate::proto::tu::Relay,
        txn: ClientId,
        answer: Option<(u16, &SipMessage<'_>)>,
    ) {
        match self.calls.get_mut(&relay.call) {
            Some(c) if matches!(c.state, CallState::Bridged(_)) => {
                if let CallState::Bridged(br) = &mut c.state {
                    br.relay_answered(cx, &mut c.a, relay, txn, answer);
                }
            }
            _ => {
                let resp = match answer {
                    None => Response::new(408, "Request Timeout"),
                    Some(_) => Response::new(481, "Call/Transaction Does Not Exist"),
                };
                cx.txns.respond_later(cx.env, cx.now, relay.server, &resp);
            }
        }
    }
}
