//! Recall: at the park timeout sipark rings the parker's devices (and, per
//! tenant, a ring group), bridges the parked call to the first that
//! answers with an offer, CANCELs the others, and hangs the parked party up
//! when nobody answers within the recall window (docs/decisions/0005).

use tracing::{info, warn};

use super::{CallState, End, Fork, Next, Park, Recall, RecallBridging};
use crate::proto::bridge::Bridge;
use crate::proto::config::{RecallTo, TenantPolicy};
use crate::proto::dialog::{Dialog, Outgoing, Side};
use crate::proto::env::Tag;
use crate::proto::ids::{CallId, ClientId};
use crate::proto::sip::Peer;
use crate::proto::sip::parse::{SipMessage, Uri};
use crate::proto::sip::sdp;
use crate::proto::sip::write::{Request, Routes, write_branch, write_request};
use crate::proto::tu::{Ctx, Owner};
use crate::proto::txn::Kind;

impl Park {
    /// The tenant of `id` and its policy (a tenant removed by a reload
    /// keeps its old one for its last calls; the defaults otherwise).
    fn tenant_of(&self, cx: &Ctx<'_>, id: CallId) -> Option<(Vec<u8>, TenantPolicy)> {
        let c = self.calls.get(&id)?;
        let tenant = c.home.tenant().to_vec();
        let policy = self.policy(&cx.env.cfg, &tenant).unwrap_or(&cx.env.cfg.defaults).clone();
        Some((tenant, policy))
    }

    /// The park timeout of `id` passed: ring whom the tenant recalls.
    pub(super) fn start_recall(&mut self, cx: &mut Ctx<'_>, id: CallId) {
        let Some((tenant, policy)) = self.tenant_of(cx, id) else { return };
        let Some(c) = self.calls.get(&id) else { return };
        let parker = c.home.parker().and_then(|p| {
            let uri = Uri::parse(p.uri).ok()?;
            uri.host.eq_ignore_ascii_case(&tenant).then_some(uri.user?.to_vec())
        });
        let from = recall_from(c.parked(), &policy);
        let group = || policy.recall_group.iter().map(|e| e.as_bytes().to_vec()).collect::<Vec<_>>();
        let (first, mut group_at) = match policy.recall_to {
            RecallTo::Parker => (parker.into_iter().collect(), None),
            RecallTo::Group => (group(), None),
            RecallTo::ParkerThenGroup => (parker.into_iter().collect(), Some(cx.now + policy.recall_group_delay)),
        };
        let ends_at = cx.now + cx.env.cfg.recall_timeout;
        let mut forks = self.ring(cx, id, &tenant, &first, &policy, &from);
        if forks.is_empty() && group_at.is_some() {
            // Nobody to ring first: the group rings at once.
            forks = self.ring(cx, id, &tenant, &group(), &policy, &from);
            group_at = None;
        }
        if group_at.is_some_and(|g| g >= ends_at) {
            group_at = None;
        }
        if forks.is_empty() && group_at.is_none() {
            info!(call = %id.token(), "park timeout: nobody to recall is registered");
            self.bye(cx, id, Side::A);
            self.end(cx, id, End::Timeout);
            return;
        }
        let recall = Recall { forks, from: from.into(), group_at, ends_at };
        self.set(cx, id, CallState::Recalling(Box::new(recall)));
        info!(call = %id.token(), "park timeout: recalling");
    }

    /// `parker-then-group`: the recall ring group joins the recall (at its
    /// delay, or when every branch to the parker has failed).
    pub(super) fn recall_group_joins(&mut self, cx: &mut Ctx<'_>, id: CallId) {
        let Some((tenant, policy)) = self.tenant_of(cx, id) else { return };
        let Some(CallState::Recalling(r)) = self.calls.get(&id).map(|c| &c.state) else { return };
        let from = r.from.clone();
        let group: Vec<Vec<u8>> = policy.recall_group.iter().map(|e| e.as_bytes().to_vec()).collect();
        let forks = self.ring(cx, id, &tenant, &group, &policy, &from);
        let mut idle = false;
        self.change(cx, id, |old| match old {
            CallState::Recalling(mut r) => {
                r.group_at = None;
                r.forks.extend(forks);
                idle = r.forks.iter().all(|f| f.done);
                Next::To(CallState::Recalling(r))
            }
            other => Next::To(other),
        });
        if idle {
            info!(call = %id.token(), "recall: nobody answered and the ring group has no device");
            self.bye(cx, id, Side::A);
            self.end(cx, id, End::Timeout);
        }
    }

    /// The recall window of `id` ended unanswered.
    pub(super) fn recall_unanswered(&mut self, cx: &mut Ctx<'_>, id: CallId) {
        info!(call = %id.token(), "recall unanswered");
        self.cancel_forks(cx, id);
        self.bye(cx, id, Side::A);
        self.end(cx, id, End::Timeout);
    }

    /// Sends a recall INVITE of `id` to every registered device of the
    /// extensions `exts` of `tenant`; returns the branches.
    fn ring(
        &mut self,
        cx: &mut Ctx<'_>,
        id: CallId,
        tenant: &[u8],
        exts: &[Vec<u8>],
        policy: &TenantPolicy,
        from: &[u8],
    ) -> Vec<Fork> {
        let names: Vec<&[u8]> = exts.iter().map(|e| &e[..]).collect();
        let targets = cx.registrar.targets(cx.now, tenant, &names, None);
        let mut forks = Vec::with_capacity(targets.len());
        let mut to = Vec::with_capacity(64);
        let mut headers: Vec<(&str, &[u8])> = Vec::with_capacity(2);
        if !policy.alert_info.is_empty() {
            headers.push(("Alert-Info", policy.alert_info.as_bytes()));
        }
        headers.push(("Subject", b"Park recall"));
        for t in targets {
            to.clear();
            to.extend_from_slice(b"<sip:");
            to.extend_from_slice(names[t.name]);
            to.push(b'@');
            to.extend_from_slice(tenant);
            to.push(b'>');
            let txn = cx.env.ids.client();
            let tag = cx.env.tag();
            let call_id = cx.env.call_id();
            let mut branch = Vec::with_capacity(32);
            write_branch(&mut branch, cx.env.shard, txn.get());
            let mut out = Vec::with_capacity(700);
            let head = write_request(
                &mut out,
                &Request {
                    method: "INVITE",
                    uri: &t.uri,
                    transport: t.dst.transport,
                    advertise: cx.env.local.via(t.dst.transport),
                    branch: &branch,
                    routes: t.route.as_deref().map_or(Routes::None, Routes::One),
                    from,
                    from_tag: &tag,
                    to: &to,
                    call_id: &call_id,
                    cseq: 1,
                    contact: Some(cx.env.local.contact(t.dst.transport)),
                    allow: true,
                    headers: &headers,
                    body: None,
                },
            );
            cx.txns.start(cx.env, cx.now, txn, Kind::Invite, t.dst, out, head, Owner::Recall { call: id });
            // A 2xx after this branch lost still needs its ACK and BYE.
            cx.txns.keep_sent(txn);
            forks.push(Fork { txn, call_id, tag, uri: t.uri, done: false });
        }
        forks
    }

    /// CANCELs every branch of a recalling `id` that is still ringing.
    pub(super) fn cancel_forks(&mut self, cx: &mut Ctx<'_>, id: CallId) {
        let Some(CallState::Recalling(r)) = self.calls.get_mut(&id).map(|c| &mut c.state) else { return };
        for f in r.forks.iter_mut().filter(|f| !f.done) {
            f.done = true;
            cx.txns.cancel(cx.env, f.txn);
        }
    }

    /// A final answer `code` to the recall branch `txn` of `id`, from `src`.
    /// The first 2xx with an SDP offer wins; a 2xx that comes too late, or
    /// without an offer, is ACKed and ended.
    pub(super) fn recall_answered(
        &mut self,
        cx: &mut Ctx<'_>,
        src: Peer,
        id: CallId,
        txn: ClientId,
        code: u16,
        msg: &SipMessage<'_>,
    ) {
        let ok = (200..300).contains(&code);
        let recalling = self.calls.get(&id).is_some_and(|c| matches!(c.state, CallState::Recalling(_)));
        if !(ok && recalling && sdp::is_sdp(msg.body())) {
            if ok {
                // Too late (another device won, or the call is gone), or no
                // SDP offer to bridge with: confirm and end this branch.
                self.ack_and_bye(cx, src, txn, msg);
            }
            self.fork_done(cx, id, txn);
            return;
        }
        let Some(CallState::Recalling(r)) = self.calls.get(&id).map(|c| &c.state) else { return };
        let Some(fork) = r.forks.iter().find(|f| f.txn == txn) else { return };
        let Some(b) = Dialog::uac(msg, src, &fork.call_id, &r.from, fork.tag, &fork.uri) else {
            warn!(call = %id.token(), "recall 200 OK without a readable To: branch ended");
            self.fork_done(cx, id, txn);
            return;
        };
        let others: Vec<ClientId> = r.forks.iter().filter(|f| f.txn != txn && !f.done).map(|f| f.txn).collect();
        for other in others {
            cx.txns.cancel(cx.env, other);
        }
        let Some(reinvite) = self.reinvite(cx, id, msg.body(), true, Owner::RecallBridge { call: id }) else { return };
        let bridging = RecallBridging { b, fork: txn, reinvite };
        self.set(cx, id, CallState::RecallBridging(Box::new(bridging)));
    }

    /// Confirms and at once ends a recall branch `txn` whose 2xx `msg`
    /// came from `src` too late, or without an offer.
    fn ack_and_bye(&mut self, cx: &mut Ctx<'_>, src: Peer, txn: ClientId, msg: &SipMessage<'_>) {
        let Some(sent) = cx.txns.sent(txn) else { return };
        let Some(tag) = Tag::parse(sent.from_tag) else { return };
        let Some(mut d) = Dialog::uac(msg, src, sent.call_id, sent.from_party, tag, sent.uri) else { return };
        cx.ack(&d, Some(txn), 1, None);
        cx.request(&mut d, &Outgoing::BYE, Owner::Detached);
    }

    /// A recall branch of `id` ended without winning; if it was the last,
    /// the group joins, or the call times out.
    pub(super) fn fork_done(&mut self, cx: &mut Ctx<'_>, id: CallId, txn: ClientId) {
        let Some(CallState::Recalling(r)) = self.calls.get_mut(&id).map(|c| &mut c.state) else { return };
        if let Some(f) = r.forks.iter_mut().find(|f| f.txn == txn) {
            f.done = true;
        }
        if !r.forks.iter().all(|f| f.done) {
            return;
        }
        if r.group_at.is_some() {
            // Every branch to the parker failed: the group need not wait.
            self.recall_group_joins(cx, id);
        } else {
            info!(call = %id.token(), "every recall branch failed");
            self.bye(cx, id, Side::A);
            self.end(cx, id, End::Timeout);
        }
    }

    /// The parked leg of `id` answered the re-INVITE `txn` that offered it
    /// the recalled device's SDP: bridge them, or end both legs.
    pub(super) fn recall_bridged(
        &mut self,
        cx: &mut Ctx<'_>,
        id: CallId,
        txn: ClientId,
        code: u16,
        msg: &SipMessage<'_>,
    ) {
        let Some(c) = self.calls.get_mut(&id) else { return };
        let CallState::RecallBridging(r) = &c.state else { return };
        if r.reinvite != txn {
            return;
        }
        let fork = r.fork;
        let fork_cseq = cx.txns.cseq(fork).unwrap_or(1);
        if !(200..300).contains(&code) {
            // The parked leg refused or is gone: confirm and end the recall
            // leg, and end the parked leg too.
            let CallState::RecallBridging(r) = &mut c.state else { return };
            cx.ack(&r.b, Some(fork), fork_cseq, None);
            cx.request(&mut r.b, &Outgoing::BYE, Owner::Detached);
            if !matches!(code, 408 | 481) {
                self.bye(cx, id, Side::A);
            }
            self.end(cx, id, End::Gone);
            return;
        }
        let cseq = cx.txns.cseq(txn).unwrap_or(c.a.local_cseq);
        cx.ack(&c.a, Some(txn), cseq, None);
        c.a.set_remote_sdp(&sdp::hold_basis(msg.body()));
        let CallState::RecallBridging(r) = &c.state else { return };
        let sent = Bridge::sdp(&c.a, &r.b, msg.body(), &cx.env.local.host);
        let to_b = sent[1].clone();
        let max_at = cx.now + cx.env.cfg.limits.max_call_duration;
        self.change(cx, id, |old| match old {
            CallState::RecallBridging(r) => Next::To(CallState::Bridged(Box::new(Bridge::new(r.b, max_at, sent)))),
            other => Next::To(other),
        });
        if let Some(CallState::Bridged(br)) = self.calls.get(&id).map(|c| &c.state) {
            cx.ack(&br.b, Some(fork), fork_cseq, Some(("application/sdp", &to_b)));
        }
    }

    /// The re-INVITE `txn` of the parked leg of `id` after a recall got no
    /// answer: the recalled device's leg is confirmed and ended.
    pub(super) fn recall_bridge_timed_out(&mut self, cx: &mut Ctx<'_>, id: CallId, txn: ClientId) {
        let Some(CallState::RecallBridging(r)) = self.calls.get_mut(&id).map(|c| &mut c.state) else { return };
        if r.reinvite != txn {
            return;
        }
        let fork_cseq = cx.txns.cseq(r.fork).unwrap_or(1);
        cx.ack(&r.b, Some(r.fork), fork_cseq, None);
        cx.request(&mut r.b, &Outgoing::BYE, Owner::Detached);
        self.end(cx, id, End::Gone);
    }
}

/// The parked party shown as a recall: `"[Recall] Alice" <sip:...>`.
fn recall_from(parked: crate::proto::notify::bodies::Party<'_>, policy: &TenantPolicy) -> Vec<u8> {
    let mut from = Vec::with_capacity(96);
    let display = parked.display.map(|d| d.strip_prefix(b"\"").and_then(|d| d.strip_suffix(b"\"")).unwrap_or(d));
    if display.is_some() || !policy.recall_prefix.is_empty() {
        from.push(b'"');
        from.extend_from_slice(policy.recall_prefix.as_bytes());
        from.extend_from_slice(display.unwrap_or(b"").trim_ascii());
        from.extend_from_slice(b"\" ");
    }
    from.push(b'<');
    from.extend_from_slice(parked.uri);
    from.push(b'>');
    from
}
