//! Why a request is refused, and how each refusal goes on the wire: its
//! status, reason phrase, extra headers and the counter it bumps, decided
//! here for every refusal (as rustls maps each error to its alert in one
//! place). Handlers return a [`Reject`]; the shard sends it.

use super::sip::write::ALLOW;
use super::stats::{Counter, ShardStats};

/// What a refused request was for, which decides the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// A park (`*68…`, `*58`, a park REFER): `parks_rejected`.
    Park,
    /// A retrieve (`*88…`, a retrieve URI, Replaces): `retrieves_failed`.
    Retrieve,
    /// Anything else: no counter of its own.
    Other,
}

/// A refusal, with the SIP status it is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// 400 with this reason: a header that cannot be read.
    BadRequest(&'static str),
    /// 481: no such dialog or transaction.
    NoDialog,
    /// 405, with `Allow`: a method sipark knows and does not accept here.
    MethodNotAllowed,
    /// 501, with `Allow`: a method sipark does not know (§8.2.1).
    NotImplemented,
    /// 489: no event package can be subscribed to.
    BadEvent,
    /// 500: an in-dialog request older than the last one (§12.2.2).
    CSeqOutOfOrder,
    /// 491: an offer/answer exchange is under way (§14.1).
    Glare,
    /// 491 with `Retry-After: 1`: the call is between states.
    Busy491,
    /// 487: the request was CANCELled.
    Terminated,
    /// 408: the other leg never answered a relayed request.
    RequestTimeout,
    /// 415, with `Accept: application/sdp`.
    UnsupportedMedia,
    /// 400: no Contact to reach the requester at.
    MissingContact,
    /// 403: REFER on a call that is not bridged.
    NotBridged,

    /// 404: the Request-URI's domain is not a tenant here.
    UnknownTenant,
    /// 404: the Request-URI names no feature code or no extension.
    NotFound,
    /// 403: a party of another tenant acts on this tenant's extensions.
    NotOfTenant,
    /// 404: `*68`/`*88` alone, and the requester's extension cannot be read.
    OwnExtensionUnknown,
    /// 400: `*68` alone needs Referred-By to name the parker.
    SelfParkNeedsReferredBy,
    /// 400: `*58` needs Referred-By to name the parker.
    GroupParkNeedsReferredBy,
    /// 404: `*58` from an extension in no park group.
    NoParkGroup,
    /// 486: every member of the park group holds a call.
    ParkGroupFull,
    /// 486: the extension holds its most parked calls.
    ExtensionParkFull,
    /// 503 with `Retry-After: 30`: the shard holds its most calls or dialogs.
    ParkCapacity,
    /// 503: the engine is shutting down.
    ShuttingDown,
    /// 404: nothing retrievable is parked there.
    NoParkedCall,
    /// 481: Replaces names no parked call's dialog.
    ReplacesNoDialog,
    /// 486: the call named by Replaces is no longer (or not yet) parked.
    Busy,
    /// 400: Replaces without both tags or a Call-ID.
    BadReplaces,
    /// 400: REFER whose Refer-To cannot be read.
    BadReferTo,

    /// 480: the parked party hung up while being retrieved.
    PartyHungUp,
    /// 480: the parked party did not answer the retrieve re-INVITE.
    PartyUnavailable,
    /// 480: the parked party refused the retrieve re-INVITE.
    PartyRefused,
    /// 491: the parked party's own re-INVITE kept crossing the retrieve's.
    PartyGlare,
    /// 488: the parked party answered a delayed-offer retrieve without an offer.
    PartyMadeNoOffer,

    /// 404: a REGISTER whose To is no address of the tenant: it names no
    /// extension (§10.3 step 5).
    NoExtension,
    /// 400: a REGISTER whose To is not a SIP or SIPS URI (§10.2).
    ToNotSip,
    /// 400: a Contact of a scheme sipark cannot send requests to.
    UnsupportedContact,
    /// 400: a REGISTER's Expires header cannot be read.
    BadExpires,
    /// 400: a Contact's `expires` parameter cannot be read.
    BadExpiresParam,
    /// 400: `Contact: *` with other contacts or a non-zero Expires.
    StarNeedsZero,
    /// 423 with `Min-Expires`: shorter than the registrar allows.
    IntervalTooBrief(u32),
    /// 403: more contacts than an extension may have.
    TooManyContacts,
    /// 503 with `Retry-After: 60`: the shard holds its most bindings.
    RegistrarFull,
    /// 400: the Path headers are longer than sipark keeps.
    PathTooLong,

    /// 403: the source is not a trusted peer and the tenant has no credentials.
    SourceNotTrusted,
    /// 403: good credentials of another user than the one acting.
    AnotherUser,
    /// 403: a wrong password or an unknown user.
    Forbidden,
    /// 400 with this reason: credentials that cannot be read.
    BadCredentials(&'static str),
}

impl Reject {
    /// The status code and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        use Reject::*;
        match self {
            BadRequest(r) | BadCredentials(r) => (400, r),
            NoDialog | ReplacesNoDialog => (481, "Call/Transaction Does Not Exist"),
            MethodNotAllowed => (405, "Method Not Allowed"),
            NotImplemented => (501, "Not Implemented"),
            BadEvent => (489, "Bad Event"),
            CSeqOutOfOrder => (500, "CSeq Out of Order"),
            Glare | Busy491 | PartyGlare => (491, "Request Pending"),
            Terminated => (487, "Request Terminated"),
            RequestTimeout => (408, "Request Timeout"),
            UnsupportedMedia => (415, "Unsupported Media Type"),
            MissingContact => (400, "Missing Contact header"),
            NotBridged => (403, "Call Is Not Bridged"),
            UnknownTenant => (404, "Unknown Tenant"),
            NotFound => (404, "Not Found"),
            NotOfTenant => (403, "Not An Extension Of This Tenant"),
            OwnExtensionUnknown => (404, "Own Extension Unknown"),
            SelfParkNeedsReferredBy => (400, "Self Park Needs Referred-By"),
            GroupParkNeedsReferredBy => (400, "Group Park Needs Referred-By"),
            NoParkGroup => (404, "Parker Is In No Park Group"),
            ParkGroupFull => (486, "Park Group Full"),
            ExtensionParkFull => (486, "Extension Park Full"),
            ParkCapacity => (503, "Park Capacity Reached"),
            ShuttingDown => (503, "Shutting Down"),
            NoParkedCall => (404, "No Parked Call"),
            Busy => (486, "Busy Here"),
            BadReplaces => (400, "Bad Replaces header"),
            BadReferTo => (400, "Bad Refer-To header"),
            PartyHungUp => (480, "Parked Party Hung Up"),
            PartyUnavailable => (480, "Parked Party Unavailable"),
            PartyRefused => (480, "Parked Party Refused"),
            PartyMadeNoOffer => (488, "Parked Party Made No Offer"),
            NoExtension => (404, "Not Found"),
            ToNotSip => (400, "To is not a SIP URI"),
            UnsupportedContact => (400, "Unsupported Contact URI scheme"),
            BadExpires => (400, "Bad Expires header"),
            BadExpiresParam => (400, "Bad expires parameter"),
            StarNeedsZero => (400, "Contact * needs Expires: 0 alone"),
            IntervalTooBrief(_) => (423, "Interval Too Brief"),
            TooManyContacts => (403, "Too Many Contacts"),
            RegistrarFull => (503, "Registrar Full"),
            PathTooLong => (400, "Path Too Long"),
            SourceNotTrusted => (403, "Source Not Trusted"),
            AnotherUser => (403, "Authenticated As Another User"),
            Forbidden => (403, "Forbidden"),
        }
    }

    /// The extra header the refusal carries, if any; `scratch` holds a
    /// value written for it.
    pub fn header(self, scratch: &mut Vec<u8>) -> Option<(&'static str, &[u8])> {
        Some(match self {
            Reject::MethodNotAllowed | Reject::NotImplemented => ("Allow", ALLOW),
            Reject::UnsupportedMedia => ("Accept", b"application/sdp"),
            Reject::ParkCapacity => ("Retry-After", b"30"),
            Reject::RegistrarFull => ("Retry-After", b"60"),
            Reject::Busy491 => ("Retry-After", b"1"),
            Reject::IntervalTooBrief(min) => {
                scratch.clear();
                super::sip::write::push_dec(scratch, u64::from(min));
                ("Min-Expires", scratch)
            }
            _ => return None,
        })
    }

    /// The counter this refusal bumps when it answers a request made for `intent`.
    pub fn counter(self, intent: Intent, stats: &ShardStats) -> Option<&Counter> {
        use Reject::*;
        match self {
            ParkCapacity | RegistrarFull => Some(&stats.overload_rejects),
            SourceNotTrusted | AnotherUser | Forbidden => Some(&stats.auth_failures),
            // Protocol-level answers, whatever the request was for.
            BadCredentials(_) | NoDialog | MethodNotAllowed | NotImplemented | BadEvent | CSeqOutOfOrder | Glare
            | Busy491 | Terminated | RequestTimeout | NotBridged | BadRequest(_) => None,
            _ => match intent {
                Intent::Park => Some(&stats.parks_rejected),
                Intent::Retrieve => Some(&stats.retrieves_failed),
                Intent::Other => None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_status_headers_and_counter() {
        let stats = ShardStats::default();
        assert_eq!(Reject::ParkCapacity.status(), (503, "Park Capacity Reached"));
        let mut scratch = Vec::new();
        assert_eq!(Reject::IntervalTooBrief(60).header(&mut scratch), Some(("Min-Expires", &b"60"[..])));
        assert_eq!(Reject::NotFound.header(&mut scratch), None);
        let count = |r: Reject, i: Intent| r.counter(i, &stats).map(|c| c as *const Counter);
        assert_eq!(count(Reject::NotOfTenant, Intent::Park), Some(&stats.parks_rejected as *const _));
        assert_eq!(count(Reject::NotOfTenant, Intent::Retrieve), Some(&stats.retrieves_failed as *const _));
        assert_eq!(count(Reject::ParkCapacity, Intent::Park), Some(&stats.overload_rejects as *const _));
        assert_eq!(count(Reject::Forbidden, Intent::Retrieve), Some(&stats.auth_failures as *const _));
        assert_eq!(count(Reject::NotFound, Intent::Other), None);
        assert_eq!(count(Reject::Glare, Intent::Park), None);
    }
}
