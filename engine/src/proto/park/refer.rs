//! REFER park (docs/decisions/0017): a REFER on a bridged call whose
//! Refer-To is the park feature code parks the other leg in place, with no
//! new INVITE: it is re-INVITEd to hold, the REFER is answered 202 and
//! reported in sipfrag NOTIFYs (RFC 3515), and the referrer's leg waits
//! for its BYE.

use std::time::Duration;

use super::intake::names_own_extension;
use super::{Call, CallState, End, Home, Next, Park, Referrer};
use crate::proto::bridge::Bridge;
use crate::proto::config::is_extension;
use crate::proto::dialog::{Outgoing, Side};
use crate::proto::ids::{CallId, ServerId};
use crate::proto::notify::bodies::Party;
use crate::proto::reject::Reject;
use crate::proto::sip::parse::{NameAddr, SipMessage, Uri};
use crate::proto::tu::{Ctx, Owner};
use crate::proto::txn::Response;

/// How long the leg of a party whose REFER parked its call is kept for
/// its BYE before sipark hangs it up.
const REFERRER_LINGER: Duration = Duration::from_secs(32);

impl Park {
    /// What follows the park feature code in the REFER's Refer-To: `None`
    /// when it names something else (the REFER is relayed).
    pub(super) fn park_code_of(&self, cx: &Ctx<'_>, msg: &SipMessage<'_>) -> Option<Result<Vec<u8>, Reject>> {
        let refer_to = match msg.refer_to() {
            Some(Ok(r)) => r,
            _ => return Some(Err(Reject::BadReferTo)),
        };
        let rest = refer_to.uri.user?.strip_prefix(cx.env.cfg.park_fac.as_bytes())?;
        Some(Ok(rest.to_vec()))
    }

    /// Parks the leg of bridged call `id` other than `from`, whose REFER
    /// `msg` (server transaction `server`) names the park feature code
    /// followed by `rest`.
    pub(super) fn refer(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &SipMessage<'_>,
        server: ServerId,
        id: CallId,
        from: Side,
        rest: &[u8],
    ) -> Result<(), Reject> {
        let cfg = std::sync::Arc::clone(&cx.env.cfg);
        let Some(Ok(refer_to)) = msg.refer_to() else { return Err(Reject::BadReferTo) };
        let c = self.calls.get(&id).ok_or(Reject::NoDialog)?;
        let tenant = c.home.tenant().to_vec();
        let policy = cfg.tenant(&tenant).filter(|_| refer_to.uri.host.eq_ignore_ascii_case(&tenant));
        let policy = policy.ok_or(Reject::NotOfTenant)?;
        let CallState::Bridged(br) = &c.state else { return Err(Reject::NotBridged) };
        // The referrer: Referred-By when it is of this tenant, else the peer of its leg.
        let referrer_leg = if from == Side::A { &c.a } else { &br.b };
        // Kept (the bridge is taken apart below): its URI and display name.
        let (parker_uri, parker_display): (Vec<u8>, Option<Vec<u8>>) = match msg.referred_by() {
            Some(Ok(rb)) if rb.uri.host.eq_ignore_ascii_case(&tenant) => {
                (rb.uri.raw.to_vec(), rb.display.filter(|d| !d.is_empty()).map(<[u8]>::to_vec))
            }
            _ => match NameAddr::parse(referrer_leg.remote()) {
                Ok(na) => (na.uri.raw.to_vec(), None),
                Err(_) => (referrer_leg.remote().to_vec(), None),
            },
        };
        let ext: Vec<u8> = if names_own_extension(rest) {
            match Uri::parse(&parker_uri).ok().filter(|u| u.host.eq_ignore_ascii_case(&tenant)) {
                Some(Uri { user: Some(u), .. }) if is_extension(u) => u.to_vec(),
                _ => return Err(Reject::OwnExtensionUnknown),
            }
        } else if is_extension(rest) {
            rest.to_vec()
        } else {
            return Err(Reject::NotFound);
        };
        if self.shutting_down {
            return Err(Reject::ShuttingDown);
        }
        if br.busy() {
            // An offer/answer exchange is under way on the bridge.
            return Err(Reject::Glare);
        }
        self.room(cx, &tenant, &ext, policy)?;
        let transport = cx.txns.source(server).map(|p| p.transport).unwrap_or_default();
        let contact = cx.env.local.contact(transport).to_vec();
        cx.txns.respond(cx.env, cx.now, server, msg, &Response::new(202, "Accepted").headers(&[("Contact", &contact)]));

        // Split the bridge: the other leg becomes the parked leg of a new
        // call; the referrer's leg becomes a call of its own that only
        // waits for its BYE.
        let mut bridge: Option<Box<Bridge>> = None;
        let old = self.change(cx, id, |old| match old {
            CallState::Bridged(b) => {
                bridge = Some(b);
                Next::End(End::Gone)
            }
            other => Next::To(other),
        });
        let (Some(old), Some(bridge)) = (old, bridge) else { return Ok(()) };
        let last_sdp = bridge.last_sdp(from).into();
        let (a, b) = (old.a, bridge.b);
        let (referrer, parked) = if from == Side::A { (a, b) } else { (b, a) };
        let (park_id, ref_id) = (cx.env.ids.call(), cx.env.ids.call());
        let (now, unix) = (cx.now, super::call::secs32(cx.env.unix(cx.now)));
        let timeout = policy.park_timeout;
        let parker = Party { uri: &parker_uri, display: parker_display.as_deref() };
        let (timeout_secs, parked_state) =
            (super::call::secs32(timeout.as_secs()), CallState::Parked { timeout_at: now + timeout });
        let mut call =
            Call::new(park_id, Home::new(&tenant, &ext, Some(parker)), unix, timeout_secs, parked, parked_state);
        call.music = Self::music_allowed(cx, policy);
        self.insert(cx, call);
        let referrer_state = CallState::Referrer(Box::new(Referrer { hangup_at: now + REFERRER_LINGER, last_sdp }));
        self.insert(cx, Call::new(ref_id, Home::new(&tenant, &ext, None), unix, 0, referrer, referrer_state));
        // The parked leg stops sending media to the referrer: hold.
        self.rehold(cx, park_id);
        for (frag, state) in [
            (&b"SIP/2.0 100 Trying\r\n"[..], &b"active;expires=60"[..]),
            (b"SIP/2.0 200 OK\r\n", b"terminated;reason=noresource"),
        ] {
            let Some(c) = self.calls.get_mut(&ref_id) else { break };
            let extra = [("Event", &b"refer"[..]), ("Subscription-State", state)];
            let body = Some(("message/sipfrag;version=2.0", frag));
            cx.request(&mut c.a, &Outgoing { method: "NOTIFY", headers: &extra, body }, Owner::Detached);
        }
        Ok(())
    }
}
