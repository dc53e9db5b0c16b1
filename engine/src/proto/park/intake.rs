//! Out-of-dialog INVITEs to the feature codes: which extension a park or
//! retrieve is for, group park, the park itself (answered 200 with a hold
//! SDP; the ACK parks the call, in `legs`), CANCEL, and Replaces.

use super::{Answering, Call, CallState, Home, Park};
use crate::proto::config::{TenantPolicy, is_extension};
use crate::proto::dialog::{Dialog, PendingAck, Side, first_contact};
use crate::proto::ids::{CallId, ServerId};
use crate::proto::notify::bodies::Party;
use crate::proto::reject::Reject;
use crate::proto::sip::parse::Uri;
use crate::proto::sip::sdp;
use crate::proto::sip::write::ALLOW;
use crate::proto::tu::{Ctx, Incoming};
use crate::proto::txn::Response;

/// A feature code's rest that means the requester's own extension:
/// nothing, `#`, or `#` escaped (`*68`, `*68#`, `*68%23`).
pub fn names_own_extension(rest: &[u8]) -> bool {
    matches!(rest, b"" | b"#" | b"%23")
}

/// A `Replaces` header (RFC 3891), read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaces<'a> {
    pub call_id: &'a [u8],
    pub to_tag: &'a [u8],
    pub from_tag: &'a [u8],
    pub early_only: bool,
}

/// Reads a `Replaces` value: a Call-ID, both tags, maybe `early-only`.
pub fn parse_replaces(value: &[u8]) -> Result<Replaces<'_>, Reject> {
    let mut parts = value.split(|&b| b == b';').map(<[u8]>::trim_ascii);
    let call_id = parts.next().unwrap_or_default();
    let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
    for p in parts {
        match p.iter().position(|&b| b == b'=') {
            Some(i) if p[..i].trim_ascii().eq_ignore_ascii_case(b"to-tag") => to_tag = Some(p[i + 1..].trim_ascii()),
            Some(i) if p[..i].trim_ascii().eq_ignore_ascii_case(b"from-tag") => {
                from_tag = Some(p[i + 1..].trim_ascii());
            }
            None if p.eq_ignore_ascii_case(b"early-only") => early_only = true,
            _ => {}
        }
    }
    match (to_tag, from_tag) {
        (Some(to_tag), Some(from_tag)) if !call_id.is_empty() => Ok(Replaces { call_id, to_tag, from_tag, early_only }),
        _ => Err(Reject::BadReplaces),
    }
}

impl Park {
    /// An out-of-dialog INVITE to `ruri` of `tenant` (whose policy is
    /// `policy`; `removed` when a reload removed the tenant), its sender
    /// admitted. The feature code alone (`*68`, `*68#`, `*68%23`) means
    /// the requester's own extension: the parker's (Referred-By) for a
    /// park, the caller's (From) for a retrieve. The group code parks on
    /// the parker's park group.
    pub fn invite(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Incoming<'_, '_>,
        ruri: &Uri<'_>,
        policy: &TenantPolicy,
        removed: bool,
    ) -> Result<(), Reject> {
        let msg = req.msg;
        let cfg = std::sync::Arc::clone(&cx.env.cfg);
        let tenant = ruri.host;
        let user = ruri.user.unwrap_or_default();
        if removed && !user.starts_with(cfg.retrieve_fac.as_bytes()) {
            // A tenant removed by a reload: its parked calls can still be
            // retrieved, nothing new is parked.
            return Err(Reject::UnknownTenant);
        }
        let (park, rest) = if let Some(rest) = user.strip_prefix(cfg.park_fac.as_bytes()) {
            (true, rest)
        } else if let Some(rest) = user.strip_prefix(cfg.retrieve_fac.as_bytes()) {
            (false, rest)
        } else if let Some(rest) = user.strip_prefix(cfg.group_park_fac.as_bytes())
            && names_own_extension(rest)
        {
            return self.group_park(cx, req, tenant, policy);
        } else {
            return Err(Reject::NotFound);
        };
        // A retriever is a user of the tenant whose call it takes (the
        // parked party, by contrast, may be anyone: a call from another
        // tenant of the same carrier can be parked).
        if !park && !msg.from_hdr().is_ok_and(|f| f.uri.host.eq_ignore_ascii_case(tenant)) {
            return Err(Reject::NotOfTenant);
        }
        let ext = if names_own_extension(rest) {
            let own = if park { msg.referred_by() } else { Some(msg.from_hdr()) };
            match own {
                None => return Err(Reject::SelfParkNeedsReferredBy),
                Some(Ok(na)) if na.uri.host.eq_ignore_ascii_case(tenant) => match na.uri.user {
                    Some(e) if is_extension(e) => e,
                    _ => return Err(Reject::OwnExtensionUnknown),
                },
                // Another tenant's party, or an unreadable header: never act
                // on an extension of the Request-URI's tenant for it.
                Some(_) => return Err(Reject::NotOfTenant),
            }
        } else if is_extension(rest) {
            rest
        } else {
            return Err(Reject::NotFound);
        };
        if park {
            self.park(cx, req, tenant, ext, policy)
        } else {
            let token = ruri.param(b"call").flatten();
            let want = match token {
                Some(t) => Some(CallId::from_token(t).ok_or(Reject::NoParkedCall)?),
                None => None,
            };
            self.retrieve(cx, req, tenant, ext, want)
        }
    }

    /// `*58`: parks on the first member of the parker's park group that
    /// holds no call, in the group's order.
    fn group_park(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Incoming<'_, '_>,
        tenant: &[u8],
        policy: &TenantPolicy,
    ) -> Result<(), Reject> {
        let msg = req.msg;
        let parker = match msg.referred_by() {
            None => return Err(Reject::GroupParkNeedsReferredBy),
            Some(Ok(na)) if na.uri.host.eq_ignore_ascii_case(tenant) => na.uri.user.unwrap_or_default(),
            Some(_) => return Err(Reject::NotOfTenant),
        };
        let group = policy.group_of(parker).ok_or(Reject::NoParkGroup)?;
        let free = group.iter().find(|m| self.list_len(tenant, m.as_bytes()) == 0);
        let member = free.ok_or(Reject::ParkGroupFull)?;
        self.park(cx, req, tenant, member.as_bytes(), policy)
    }

    /// Whether extension `ext` of `tenant` and the shard can take one more
    /// call: 486 for a full extension, 503 at the shard's limits.
    pub(super) fn room(
        &mut self,
        cx: &Ctx<'_>,
        tenant: &[u8],
        ext: &[u8],
        policy: &TenantPolicy,
    ) -> Result<(), Reject> {
        let limits = cx.env.cfg.limits;
        if self.list_len(tenant, ext) >= policy.max_parks_per_ext as usize {
            Err(Reject::ExtensionParkFull)
        } else if self.calls.len() >= limits.max_parked || self.dialogs.len() >= limits.max_dialogs {
            Err(Reject::ParkCapacity)
        } else {
            Ok(())
        }
    }

    /// Parks the caller of `msg` on `ext` of `tenant`: 200 with the hold
    /// answer (or, without an offer, sipark's hold offer), and the ACK
    /// completes the park.
    fn park(
        &mut self,
        cx: &mut Ctx<'_>,
        req: Incoming<'_, '_>,
        tenant: &[u8],
        ext: &[u8],
        policy: &TenantPolicy,
    ) -> Result<(), Reject> {
        let Incoming { src, msg, server } = req;
        if self.shutting_down {
            return Err(Reject::ShuttingDown);
        }
        let offer = sdp::is_sdp(msg.body());
        if !offer && !msg.body().is_empty() {
            return Err(Reject::UnsupportedMedia);
        }
        let target = first_contact(msg).ok_or(Reject::MissingContact)?;
        self.room(cx, tenant, ext, policy)?;
        let cseq = msg.cseq().map_or(0, |c| c.seq);
        let referred_by = msg.referred_by().and_then(Result::ok);
        let parker =
            referred_by.as_ref().map(|rb| Party { uri: rb.uri.raw, display: rb.display.filter(|d| !d.is_empty()) });
        let tag = cx.env.tag();
        // The parked leg keeps what its hold answers need of its SDP.
        let mut a = Dialog::uas(msg, src, target, tag, &sdp::hold_basis(msg.body()));
        a.pending_ack = Some(PendingAck { server, cseq });
        // Music on hold when the offer has a codec to send it in (or, with
        // no offer, in sipark's own offer); else a hold with no media.
        let music = (!offer || sdp::music_choice(msg.body()).is_some()) && Self::music_allowed(cx, policy);
        let mut answer = Vec::with_capacity(msg.body().len() + 32);
        let (id, parked_at) = (cx.env.ids.call(), super::call::secs32(cx.env.unix(cx.now)));
        let timeout_secs = super::call::secs32(policy.park_timeout.as_secs());
        let answering = CallState::Answering(Answering { invite: server, cancelled: false });
        let (origin, host) = (a.origin(), &cx.env.local.host);
        let mut call = Call::new(id, Home::new(tenant, ext, parker), parked_at, timeout_secs, a, answering);
        call.music = music;
        match (offer, cx.env.local.media.filter(|_| music)) {
            (true, _) => {
                Self::hold_sdp(cx, &mut answer, &call, origin);
            }
            (false, Some(media)) => sdp::music_offer(&mut answer, origin, host, media),
            (false, None) => sdp::hold_offer(&mut answer, origin, host),
        }
        self.insert(cx, call);
        cx.txns.set_call(server, id);
        let contact = cx.env.local.contact(src.transport).to_vec();
        let headers = [("Contact", &contact[..]), ("Allow", ALLOW)];
        let resp = Response::new(200, "OK").tag(&tag).headers(&headers).body(Some(("application/sdp", &answer)));
        cx.txns.respond(cx.env, cx.now, server, msg, &resp);
        Ok(())
    }

    /// A CANCEL for the INVITE `invite` was answered 200. An INVITE still
    /// unanswered (only a retrieve waits on another leg) gets 487; a park
    /// whose 200 the CANCEL crossed ends at its ACK (RFC 3261 §9.2).
    pub fn cancel(&mut self, cx: &mut Ctx<'_>, invite: ServerId) {
        let call = cx.txns.call(invite).and_then(|id| self.calls.get_mut(&id));
        if cx.txns.is_final(invite) {
            if let Some(c) = call
                && let CallState::Answering(a) = &mut c.state
                && a.invite == invite
            {
                a.cancelled = true;
                cx.env.stats.parks_rejected.inc();
            }
            return;
        }
        if let Some(c) = call
            && let CallState::Retrieving(r) = &mut c.state
            && r.invite == invite
        {
            r.cancelled = true;
        }
        cx.txns.respond_later(cx.env, cx.now, invite, &Response::new(487, "Request Terminated"));
    }

    /// An INVITE with `Replaces` naming a parked call's dialog (Call-ID,
    /// sipark's tag as `to-tag`, the parked party's as `from-tag`; the two
    /// tags are also accepted the other way round, as some phones write
    /// them): it retrieves that call. The caller, admitted as a user of its
    /// From tenant, must be of the parked call's tenant.
    pub fn replaces(&mut self, cx: &mut Ctx<'_>, req: Incoming<'_, '_>, r: &Replaces<'_>) -> Result<(), Reject> {
        let msg = req.msg;
        let found = [(r.to_tag, r.from_tag), (r.from_tag, r.to_tag)].into_iter().find_map(|(ours, theirs)| {
            let leg = self.find_dialog(r.call_id, ours)?;
            let c = self.calls.get(&leg.call)?;
            (leg.side == Side::A && c.a.remote_tag() == Some(theirs)).then_some(leg.call)
        });
        let id = found.ok_or(Reject::ReplacesNoDialog)?;
        let c = self.calls.get(&id).ok_or(Reject::ReplacesNoDialog)?;
        if r.early_only || !c.phase().retrievable() {
            // Confirmed and no longer (or not yet) waiting in the park.
            return Err(Reject::Busy);
        }
        let name = c.home.name();
        let (tenant, ext) = (name.tenant.to_vec(), name.ext.to_vec());
        if !msg.from_hdr().is_ok_and(|f| f.uri.host.eq_ignore_ascii_case(&tenant)) {
            return Err(Reject::NotOfTenant);
        }
        self.retrieve(cx, req, &tenant, &ext, Some(id))
    }
}
