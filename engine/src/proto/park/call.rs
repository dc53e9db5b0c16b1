//! A call and its states: each state carries only what is valid in it
//! (a retriever exists only while retrieving, a second dialog only once
//! there is a second party), and names the timers it runs. What a change
//! from one state to another means (its lifecycle event, why a call left
//! its extension's list) is derived here from the pair of states.

use std::time::{Duration, Instant};

use crate::proto::bridge::Bridge;
use crate::proto::dialog::{Dialog, Side};
use crate::proto::env::Tag;
use crate::proto::ids::{CallId, ClientId, ServerId};
use crate::proto::named::{Name, write_key};
use crate::proto::notify::bodies::{LeaveReason, Party, Shown};
use crate::proto::sip::parse::NameAddr;

/// `secs` in the 32 bits a call keeps them in (Unix seconds until 2106;
/// timeouts of 136 years).
pub fn secs32(secs: u64) -> u32 {
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// Where a call is parked and who parked it, in one allocation: the key
/// of its extension (`ext@tenant`, [`write_key`]), then the parker's URI
/// and display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    text: Box<[u8]>,
    /// The `@` of the key, the key's end, the parker's URI's end.
    at: u16,
    key_end: u16,
    uri_end: u16,
    parker: bool,
}

impl Home {
    /// Extension `ext` of `tenant`, parked by `parker` (the park's
    /// Referred-By) if known. The text is at most 64 KiB: a parker whose
    /// display name would pass that is kept without it, and one whose URI
    /// would is not kept (a key is at most 64 + 1 + 253 bytes).
    pub fn new(tenant: &[u8], ext: &[u8], parker: Option<Party<'_>>) -> Home {
        let room = usize::from(u16::MAX).saturating_sub(ext.len() + 1 + tenant.len());
        let parker = parker.filter(|p| p.uri.len() <= room);
        let (uri, display) = parker.map_or((&b""[..], &b""[..]), |p| (p.uri, p.display.unwrap_or_default()));
        let display = if uri.len() + display.len() <= room { display } else { &b""[..] };
        let mut text = Vec::with_capacity(ext.len() + 1 + tenant.len() + uri.len() + display.len());
        write_key(&mut text, tenant, ext);
        let key_end = text.len();
        text.extend_from_slice(uri);
        let uri_end = text.len();
        text.extend_from_slice(display);
        let end = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        Home {
            at: end(ext.len()),
            key_end: end(key_end),
            uri_end: end(uri_end),
            parker: parker.is_some(),
            text: text.into(),
        }
    }

    /// `ext@tenant`, tenant lowercased: the same for every call of the
    /// extension.
    pub fn key(&self) -> &[u8] {
        &self.text[..self.key_end as usize]
    }

    pub fn name(&self) -> Name<'_> {
        let key = self.key();
        Name { ext: &key[..self.at as usize], tenant: &key[self.at as usize + 1..] }
    }

    pub fn tenant(&self) -> &[u8] {
        self.name().tenant
    }

    /// The parker (Referred-By of the park).
    pub fn parker(&self) -> Option<Party<'_>> {
        let (key_end, uri_end) = (self.key_end as usize, self.uri_end as usize);
        let display = &self.text[uri_end..];
        self.parker
            .then(|| Party { uri: &self.text[key_end..uri_end], display: (!display.is_empty()).then_some(display) })
    }
}

/// A call that entered the park.
#[derive(Debug)]
pub struct Call {
    /// Public id: the `call=` of the retrieve URI.
    pub id: CallId,
    /// Its extension and its parker. The parked party is not stored: it
    /// is the park INVITE's From, the remote party of dialog `a`
    /// ([`Call::parked`]).
    pub home: Home,
    /// Unix seconds.
    pub parked_at: u32,
    pub timeout_secs: u32,
    /// The park-info version of its extension's list: the same in every
    /// call of the extension ([`super::Park`] keeps it so).
    pub(super) version: u32,
    /// When it last joined its extension's list: the list is in this order.
    pub(super) joined: u64,
    /// The parked party's dialog.
    pub a: Dialog,
    pub(super) state: CallState,
    /// Its hold SDP offers music on hold ([`super::Park::hold_sdp`]): it
    /// hears a stream while [`Phase::hears_music`].
    pub(super) music: bool,
}

impl Call {
    /// A call in its first state (its list version and place are the
    /// park's to set).
    pub fn new(id: CallId, home: Home, parked_at: u32, timeout_secs: u32, a: Dialog, state: CallState) -> Call {
        Call { id, home, parked_at, timeout_secs, version: 0, joined: 0, a, state, music: false }
    }

    /// The parked party: URI and display name of dialog `a`'s peer.
    pub fn parked(&self) -> Party<'_> {
        match NameAddr::parse(self.a.remote()) {
            Ok(na) => Party { uri: na.uri.raw, display: na.display.filter(|d| !d.is_empty()) },
            Err(_) => Party { uri: self.a.remote(), display: None },
        }
    }

    pub fn state(&self) -> &CallState {
        &self.state
    }

    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    /// On its extension's list: answering, parked, recalling or being
    /// retrieved. A call a change is ending (its state taken out) is on
    /// none.
    pub fn on_list(&self) -> bool {
        !matches!(self.state, CallState::Taken) && self.phase().on_list()
    }

    /// The dialog of `side`, where the call has one indexed.
    pub fn leg(&self, side: Side) -> Option<&Dialog> {
        match side {
            Side::A => Some(&self.a),
            Side::B => self.state.indexed_b(),
        }
    }

    /// What park-info and the other documents show of this call.
    pub fn shown(&self, left: Option<LeaveReason>) -> Shown<'_> {
        let (parked, remote_tag) = match NameAddr::parse(self.a.remote()) {
            Ok(na) => (Party { uri: na.uri.raw, display: na.display.filter(|d| !d.is_empty()) }, na.tag()),
            Err(_) => (Party { uri: self.a.remote(), display: None }, None),
        };
        Shown {
            call: self.id,
            left,
            parked_at: u64::from(self.parked_at),
            timeout_secs: u64::from(self.timeout_secs),
            parked,
            parker: self.home.parker(),
            call_id: self.a.call_id(),
            local_tag: self.a.local_tag(),
            remote_tag,
        }
    }
}

/// The park INVITE was answered 200; the ACK parks the call.
#[derive(Debug)]
pub struct Answering {
    pub invite: ServerId,
    /// A CANCEL crossed the 200: the ACK ends the call instead.
    pub cancelled: bool,
}

/// One branch of a recall (one device of the parker or the ring group).
#[derive(Debug)]
pub struct Fork {
    /// The INVITE client transaction.
    pub txn: ClientId,
    pub call_id: Box<[u8]>,
    pub tag: Tag,
    /// The Request-URI: the device's contact.
    pub uri: Box<[u8]>,
    /// A final response arrived, or the branch was CANCELled.
    pub done: bool,
}

/// A recall in progress: its branches, and the stage still to come.
#[derive(Debug)]
pub struct Recall {
    pub forks: Vec<Fork>,
    /// The From party of every branch (without its tag).
    pub from: Box<[u8]>,
    /// `parker-then-group`: when the recall ring group joins.
    pub group_at: Option<Instant>,
    /// End of the recall window: nobody answered, the park ends.
    pub ends_at: Instant,
}

/// A retriever's INVITE waits on the re-INVITE of the parked leg.
#[derive(Debug)]
pub struct Retrieving {
    /// The retriever's INVITE server transaction.
    pub invite: ServerId,
    /// The retriever's dialog, confirmed by the 200 it waits for.
    pub b: Dialog,
    pub reinvite: ClientId,
    /// The retriever CANCELled before the bridge completed.
    pub cancelled: bool,
    /// The retriever's INVITE had no SDP (RFC 3725 flow III).
    pub delayed: bool,
    /// Times the re-INVITE was sent again after a 491 (glare).
    pub retries: u8,
    /// After a 491: when the re-INVITE goes again (§14.1).
    pub retry_at: Option<Instant>,
}

/// A recall was answered; the parked leg is being re-INVITEd.
#[derive(Debug)]
pub struct RecallBridging {
    /// The dialog of the branch that answered.
    pub b: Dialog,
    /// That branch's INVITE, whose 2xx is ACKed once the parked leg answers.
    pub fork: ClientId,
    pub reinvite: ClientId,
}

/// The leg of a party whose REFER parked the other side of its call.
#[derive(Debug)]
pub struct Referrer {
    /// sipark hangs up if the referrer has not by then.
    pub hangup_at: Instant,
    /// The last SDP sipark sent this leg, to answer a session refresh.
    pub last_sdp: Box<[u8]>,
}

/// Where a call is in its life. Each state carries what is valid in it.
#[derive(Debug)]
pub enum CallState {
    Answering(Answering),
    /// Parked until the park timeout.
    Parked {
        timeout_at: Instant,
    },
    /// The park timeout passed; the recall's devices are ringing.
    Recalling(Box<Recall>),
    Retrieving(Box<Retrieving>),
    RecallBridging(Box<RecallBridging>),
    /// Bridged to the retriever or the recalled parker; sipark stays a B2BUA.
    Bridged(Box<Bridge>),
    /// Waits for the referrer's BYE after its REFER parked the other side.
    Referrer(Box<Referrer>),
    /// Only inside [`Park::change`]: the state was taken out.
    Taken,
}

/// The name of a state, for what depends on the state alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Answering,
    Parked,
    Recalling,
    Retrieving,
    RecallBridging,
    Bridged,
    Referrer,
}

impl Phase {
    /// Shown as parked in park-info.
    pub fn listed(self) -> bool {
        matches!(self, Phase::Parked | Phase::Recalling | Phase::Retrieving)
    }

    /// On its extension's list (counted against `max_parks_per_ext`).
    pub fn on_list(self) -> bool {
        self.listed() || self == Phase::Answering
    }

    /// Its parked party hears music on hold (if the call has it): from the
    /// park until a retrieve or an answered recall bridges it (the parked
    /// leg's 200 to their re-INVITE), or the call ends.
    pub fn hears_music(self) -> bool {
        matches!(self, Phase::Parked | Phase::Recalling | Phase::Retrieving | Phase::RecallBridging)
    }

    /// Can be retrieved.
    pub fn retrievable(self) -> bool {
        matches!(self, Phase::Parked | Phase::Recalling)
    }

    /// Its second dialog is in the dialog index.
    pub(super) fn indexes_b(self) -> bool {
        matches!(self, Phase::Bridged | Phase::RecallBridging)
    }
}

/// A named call timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallTimer {
    /// The park timeout: the recall starts.
    ParkTimeout,
    /// `parker-then-group`: the ring group joins the recall.
    RecallGroup,
    /// The recall window ends.
    RecallEnd,
    /// A retrieve re-INVITE refused 491 goes again.
    GlareRetry,
    /// `--max-call-duration` of a bridged call.
    MaxDuration,
    /// A referrer that never hung up is hung up.
    ReferrerHangup,
}

/// A timer a state runs: which, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: Instant,
    pub timer: CallTimer,
}

/// The timers of a state (at most two run at once: a recall's group and end).
pub(super) type Timers = [Option<Due>; 2];

impl CallState {
    pub fn phase(&self) -> Phase {
        match self {
            CallState::Answering(_) => Phase::Answering,
            CallState::Parked { .. } => Phase::Parked,
            CallState::Recalling(_) => Phase::Recalling,
            CallState::Retrieving(_) => Phase::Retrieving,
            CallState::RecallBridging(_) => Phase::RecallBridging,
            CallState::Bridged(_) => Phase::Bridged,
            CallState::Referrer(_) => Phase::Referrer,
            CallState::Taken => {
                debug_assert!(false, "a call's state was read while taken out");
                Phase::Referrer
            }
        }
    }

    /// The timers this state runs.
    pub(super) fn timers(&self) -> Timers {
        match self {
            CallState::Parked { timeout_at } => [Some(Due { at: *timeout_at, timer: CallTimer::ParkTimeout }), None],
            CallState::Recalling(r) => [
                r.group_at.map(|at| Due { at, timer: CallTimer::RecallGroup }),
                Some(Due { at: r.ends_at, timer: CallTimer::RecallEnd }),
            ],
            CallState::Retrieving(r) => [r.retry_at.map(|at| Due { at, timer: CallTimer::GlareRetry }), None],
            CallState::Bridged(b) => [Some(Due { at: b.max_at, timer: CallTimer::MaxDuration }), None],
            CallState::Referrer(r) => [Some(Due { at: r.hangup_at, timer: CallTimer::ReferrerHangup }), None],
            CallState::Answering(_) | CallState::RecallBridging(_) | CallState::Taken => [None, None],
        }
    }

    /// The timer this state runs at `at`, if any (a recall's group and
    /// end, when at the same instant, fire in that order: the group's
    /// firing clears it).
    pub(super) fn timer_at(&self, at: Instant) -> Option<CallTimer> {
        self.timers().into_iter().flatten().find(|d| d.at == at).map(|d| d.timer)
    }

    /// The second dialog, when it is in the dialog index.
    pub(super) fn indexed_b(&self) -> Option<&Dialog> {
        match self {
            CallState::Bridged(b) => Some(&b.b),
            CallState::RecallBridging(r) => Some(&r.b),
            _ => None,
        }
    }
}

/// How a call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// A party hung up or could not be reached.
    Hangup,
    /// The recall went unanswered.
    Timeout,
    /// The engine shut down.
    Shutdown,
    /// The call was not (or no longer) in the park: a park that never
    /// completed, a bridged call, a referrer.
    Gone,
}

/// What a change makes of a call.
#[derive(Debug)]
pub enum Next {
    To(CallState),
    End(End),
}

/// A park-lifecycle change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// The call entered the park (its ACK arrived, or a REFER parked it).
    Parked,
    RetrieveStarted,
    /// A retrieve failed or was abandoned: parked again.
    RetrieveFailed,
    Retrieved,
    RecallStarted,
    RecallAnswered,
    HungUp,
    TimedOut,
    Shutdown,
}

/// One park-lifecycle event ([`super::shard::Shard::poll_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkEvent {
    pub call: CallId,
    pub what: Lifecycle,
}

/// The lifecycle event of a change, if it is one.
pub(super) fn lifecycle(from: Option<Phase>, to: Option<Phase>, end: Option<End>) -> Option<Lifecycle> {
    use Phase::*;
    Some(match (from, to) {
        (None | Some(Answering), Some(Parked)) => Lifecycle::Parked,
        (Some(Parked | Recalling), Some(Retrieving)) => Lifecycle::RetrieveStarted,
        (Some(Retrieving), Some(Parked)) => Lifecycle::RetrieveFailed,
        (Some(Retrieving), Some(Bridged)) => Lifecycle::Retrieved,
        (Some(Parked), Some(Recalling)) => Lifecycle::RecallStarted,
        (Some(Recalling), Some(RecallBridging)) => Lifecycle::RecallAnswered,
        (Some(p), None) if p.listed() => match end {
            Some(End::Timeout) => Lifecycle::TimedOut,
            Some(End::Shutdown) => Lifecycle::Shutdown,
            _ => Lifecycle::HungUp,
        },
        _ => return None,
    })
}

/// Why a call that leaves its extension's list left, for the NOTIFY.
pub(super) fn leave_reason(to: Option<Phase>, end: Option<End>) -> LeaveReason {
    match (to, end) {
        (Some(Phase::RecallBridging), _) => LeaveReason::Recalled,
        (Some(_), _) => LeaveReason::Retrieved,
        (None, Some(End::Timeout)) => LeaveReason::Timeout,
        (None, Some(End::Shutdown)) => LeaveReason::Shutdown,
        (None, _) => LeaveReason::Hangup,
    }
}

/// How long a call stays parked before its recall.
pub(super) fn park_timeout(call: &Call) -> Duration {
    Duration::from_secs(u64::from(call.timeout_secs))
}
