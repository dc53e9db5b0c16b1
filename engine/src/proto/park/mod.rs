//! The park services: park, retrieve, recall and REFER park, over one
//! table of calls.
//!
//! Every change of a call's state goes through [`Park::change`] (a call
//! that appears goes through [`Park::insert`]), and both end in
//! [`Park::settle`], the one place that derives everything a change
//! implies from the pair (old state, new state): the parked and bridged
//! gauges, the lifecycle event ([`ParkEvent`]) and the counters that
//! follow from it, the call's named timers, its dialogs in the dialog
//! index, its place on its extension's list, and the park-info NOTIFY when
//! the list changed. A state is taken out once per change; while a change
//! runs the call holds [`CallState::Taken`], a variant no handler matches
//! and a debug assertion checks never survives.
//!
//! The services themselves are in `intake` (park INVITEs and the ACK that
//! parks), `retrieve`, `recall`, `refer`, and `legs` (requests inside a
//! call's dialogs, BYE, shutdown).

mod call;
mod calls;
mod exts;
mod intake;
mod legs;
mod recall;
mod refer;
mod retrieve;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use tracing::info;

pub use call::{
    Answering, Call, CallState, CallTimer, Due, End, Fork, Home, Lifecycle, Next, ParkEvent, Phase, Recall,
    RecallBridging, Referrer, Retrieving,
};
use call::{Timers, leave_reason, lifecycle, park_timeout};
use exts::Exts;
pub use intake::{Replaces, parse_replaces};

use super::config::{Config, TenantPolicy};
use super::dialog::{DialogIndex, Leg, Side};
use super::env::WallClock;
use super::ids::{CallId, Seed};
use super::media::streams::{Refused, Start};
use super::named::write_key;
use super::notify::Change;
use super::notify::bodies::{LeaveReason, Shown, Spot};
use super::sip::sdp::{self, Origin};
use super::timers::TimerQueue;
use super::tu::{Ctx, Owner};
use calls::Calls;

/// park-info versions start from the seconds since 2025-01-01 at start-up,
/// so that a restarted engine never goes back below a version a phone has
/// seen, while staying far below 2^31 for phones that parse an `int32`.
const VERSION_EPOCH: u64 = 1_735_689_600;

/// Most lifecycle events kept for [`Park::poll_event`]; past it the oldest
/// is dropped and counted, so a host that never polls stays bounded.
const MAX_EVENTS: usize = 65_536;

/// The call timer heap is never compacted below this many entries.
const MIN_COMPACT: usize = 4096;

/// Calls ended between two checks for capacity to give back.
const GIVE_BACK_EVERY: u32 = 256;

/// Every call of a shard.
pub struct Park {
    /// Boxed: the map's spare buckets then cost a pointer each, not a call.
    calls: Calls,
    /// The calls of each extension. An extension's list is its calls
    /// answering, parked, recalling or being retrieved, in the order they
    /// joined it ([`Call::joined`]); its park-info version is in each of
    /// its calls.
    exts: Exts,
    /// The order calls join their lists in.
    joins: u64,
    dialogs: DialogIndex,
    /// Each call timer's deadline, keyed by its call: which timer it is
    /// comes from the call's state when it fires (16 bytes an entry).
    timers: TimerQueue<CallId>,
    compact_at: usize,
    /// Calls ended until the tables are next checked for capacity to give
    /// back.
    give_back_in: u32,
    events: VecDeque<ParkEvent>,
    /// Calls listed in park-info.
    listed: u64,
    /// Calls bridged.
    bridged: u64,
    /// No extension's park-info version is above this; new lists start here.
    version_floor: u32,
    shutting_down: bool,
    /// Tenants removed by a reload that still had calls here: their calls
    /// can still be retrieved (domain lowercase → old policy).
    retired: Arc<HashMap<Box<str>, TenantPolicy>>,
}

impl Park {
    pub fn new(wall: WallClock, seed: &Seed) -> Park {
        Park {
            calls: Calls::default(),
            exts: Exts::new(seed.hasher(3)),
            joins: 0,
            dialogs: DialogIndex::new(seed.hasher(4)),
            timers: TimerQueue::default(),
            compact_at: MIN_COMPACT,
            give_back_in: GIVE_BACK_EVERY,
            events: VecDeque::new(),
            listed: 0,
            bridged: 0,
            version_floor: call::secs32(wall.unix.as_secs().saturating_sub(VERSION_EPOCH)),
            shutting_down: false,
            retired: Arc::default(),
        }
    }

    /// Calls listed in park-info.
    pub fn listed(&self) -> u64 {
        self.listed
    }

    /// Calls bridged.
    pub fn bridged(&self) -> u64 {
        self.bridged
    }

    /// Calls of any state.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Dialogs in the index.
    pub fn dialogs(&self) -> usize {
        self.dialogs.len()
    }

    pub fn call(&self, id: CallId) -> Option<&Call> {
        self.calls.get(&id)
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The next lifecycle event.
    pub fn poll_event(&mut self) -> Option<ParkEvent> {
        self.events.pop_front()
    }

    /// The policy of `tenant`: from `cfg`, else the one it had before a
    /// reload removed it (its parked calls keep it).
    pub fn policy<'c>(&'c self, cfg: &'c Config, tenant: &[u8]) -> Option<&'c TenantPolicy> {
        cfg.tenant(tenant).or_else(|| self.retired_policy(tenant))
    }

    /// [`Park::policy`], held apart from the park: borrowed from `cfg`, or
    /// a copy of the policy a reload retired (rare), so that the caller may
    /// go on to change the park.
    pub fn detached_policy<'c>(&self, cfg: &'c Config, tenant: &[u8]) -> Option<Cow<'c, TenantPolicy>> {
        match cfg.tenant(tenant) {
            Some(p) => Some(Cow::Borrowed(p)),
            None => self.retired_policy(tenant).cloned().map(Cow::Owned),
        }
    }

    /// The policy a tenant removed by a reload keeps for its last calls.
    pub fn retired_policy(&self, tenant: &[u8]) -> Option<&TenantPolicy> {
        if self.retired.is_empty() {
            return None;
        }
        let d = std::str::from_utf8(tenant).ok()?.to_ascii_lowercase();
        self.retired.get(d.as_str())
    }

    /// A reloaded configuration replaces `old`: tenants gone from it that
    /// still have calls here keep `old`'s policy for those calls.
    pub fn reconfigure(&mut self, old: &Config, new: &Config) -> usize {
        let mut retired: HashMap<Box<str>, TenantPolicy> = HashMap::new();
        for c in self.calls.values().filter(|c| c.on_list()) {
            let name = c.home.name();
            let domain = name.tenant_str();
            if new.tenant(name.tenant).is_some() || retired.contains_key(domain) {
                continue;
            }
            if let Some(p) = self.policy(old, name.tenant) {
                retired.insert(domain.into(), p.clone());
            }
        }
        let n = retired.len();
        self.retired = Arc::new(retired);
        n
    }

    /// The leg whose dialog is `(call_id, local_tag)`.
    pub fn find_dialog(&self, call_id: &[u8], local_tag: &[u8]) -> Option<Leg> {
        let calls = &self.calls;
        self.dialogs.find(call_id, local_tag, |leg| calls.get(&leg.call).and_then(|c| c.leg(leg.side)))
    }

    /// The list of extension `ext` of `tenant`, oldest first.
    pub fn list_of(&self, tenant: &[u8], ext: &[u8]) -> Vec<CallId> {
        let mut key = Vec::new();
        write_key(&mut key, tenant, ext);
        self.list(&key).iter().map(|c| c.id).collect()
    }

    /// How many calls the list of extension `ext` of `tenant` has.
    fn list_len(&mut self, tenant: &[u8], ext: &[u8]) -> usize {
        self.exts.calls_of(tenant, ext, &self.calls).filter(|c| c.on_list()).count()
    }

    /// A call listed in park-info on extension `ext` of `tenant`, if any:
    /// [`Park::notify`] finds the extension through it.
    pub fn showing(&mut self, tenant: &[u8], ext: &[u8]) -> Option<CallId> {
        self.exts.calls_of(tenant, ext, &self.calls).find(|c| c.on_list() && c.phase().listed()).map(|c| c.id)
    }

    /// The list of the extension whose key is `key`, oldest first.
    fn list(&self, key: &[u8]) -> Vec<&Call> {
        let mut list: Vec<&Call> = self.exts.calls(key, &self.calls).filter(|c| c.on_list()).collect();
        list.sort_unstable_by_key(|c| c.joined);
        list
    }

    // ----- the one place a call changes -----------------------------------

    /// Adds `call`, in its first state. It takes its extension's
    /// park-info version: its other calls', or the floor for a new list.
    fn insert(&mut self, cx: &mut Ctx<'_>, mut call: Call) -> CallId {
        call.version =
            self.exts.calls(call.home.key(), &self.calls).map(|c| c.version).max().unwrap_or(self.version_floor);
        let id = call.id;
        self.exts.insert(&call, &self.calls);
        self.calls.insert(Box::new(call));
        self.settle(cx, id, None, [None, None], None, None);
        id
    }

    /// Changes `id`'s state to what `f` makes of the current one. The
    /// state is taken out for `f` and the result put back (or the call
    /// removed, and returned, when `f` ends it); then everything the
    /// change implies follows ([`Park::settle`]).
    fn change(&mut self, cx: &mut Ctx<'_>, id: CallId, f: impl FnOnce(CallState) -> Next) -> Option<Box<Call>> {
        let Park { calls, dialogs, .. } = self;
        let call = calls.get_mut(&id)?;
        let old = std::mem::replace(&mut call.state, CallState::Taken);
        let (from, timers) = (old.phase(), old.timers());
        let b_hash = old.indexed_b().map(|b| dialogs.hash(b));
        match f(old) {
            Next::To(state) => {
                debug_assert!(!matches!(state, CallState::Taken), "a change put back no state");
                call.state = state;
                self.settle(cx, id, Some(from), timers, b_hash, None)
            }
            Next::End(end) => self.settle(cx, id, Some(from), timers, b_hash, Some(end)),
        }
    }

    /// Changes `id` to `state`, whatever it was.
    fn set(&mut self, cx: &mut Ctx<'_>, id: CallId, state: CallState) {
        self.change(cx, id, |_| Next::To(state));
    }

    /// Ends `id`.
    fn end(&mut self, cx: &mut Ctx<'_>, id: CallId, end: End) -> Option<Box<Call>> {
        self.change(cx, id, |_| Next::End(end))
    }

    /// Everything a change of `id` from `from` (`None`: it just appeared;
    /// `old_timers`, and the hash of its indexed second dialog `b_hash`)
    /// to its current state, or to its end, implies. Returns the call when
    /// it ended.
    fn settle(
        &mut self,
        cx: &mut Ctx<'_>,
        id: CallId,
        from: Option<Phase>,
        old_timers: Timers,
        b_hash: Option<u64>,
        end: Option<End>,
    ) -> Option<Box<Call>> {
        let (to, new_timers) = {
            let call = self.calls.get(&id)?;
            let to = end.is_none().then(|| call.state.phase());
            (to, if end.is_none() { call.state.timers() } else { [None, None] })
        };
        // The dialog index.
        let calls = &self.calls;
        let lookup = |leg: Leg| calls.get(&leg.call).and_then(|c| c.leg(leg.side));
        if from.is_none()
            && let Some(c) = calls.get(&id)
        {
            self.dialogs.insert(Leg { call: id, side: Side::A }, &c.a, lookup);
        }
        let (had_b, has_b) = (from.is_some_and(Phase::indexes_b), to.is_some_and(Phase::indexes_b));
        if had_b
            && !has_b
            && let Some(h) = b_hash
        {
            self.dialogs.remove_hashed(h, Leg { call: id, side: Side::B });
        }
        if has_b
            && !had_b
            && let Some(b) = calls.get(&id).and_then(|c| c.state.indexed_b())
        {
            self.dialogs.insert(Leg { call: id, side: Side::B }, b, lookup);
        }
        // Gauges.
        let listed = |p: Option<Phase>| p.is_some_and(Phase::listed);
        let bridged = |p: Option<Phase>| p == Some(Phase::Bridged);
        self.listed = self.listed + u64::from(listed(to)) - u64::from(listed(from));
        self.bridged = self.bridged + u64::from(bridged(to)) - u64::from(bridged(from));
        // Music on hold.
        let music = |p: Option<Phase>| p.is_some_and(Phase::hears_music);
        match (music(from), music(to)) {
            (false, true) => self.music_starts(cx, id),
            (true, false) => {
                cx.media.stop(id);
            }
            _ => {}
        }
        // Timers.
        if new_timers != old_timers {
            for due in new_timers.into_iter().flatten().filter(|d| !old_timers.contains(&Some(*d))) {
                self.timers.push(due.at, id);
            }
            if self.timers.heap_len() > self.compact_at {
                self.compact();
            }
        }
        // The extension's list (a call joining goes last), and its NOTIFY.
        let on_list = |p: Option<Phase>| p.is_some_and(Phase::on_list);
        if !on_list(from)
            && on_list(to)
            && let Some(c) = self.calls.get_mut(&id)
        {
            c.joined = self.joins;
            self.joins += 1;
        }
        let what = lifecycle(from, to, end);
        if let Some(what) = what {
            self.count(cx, id, what);
        }
        match (listed(from), listed(to)) {
            (false, true) => self.changed(cx, id, None),
            (true, false) => self.changed(cx, id, Some((id, leave_reason(to, end)))),
            _ => {}
        }
        if let Some(what) = what {
            if self.events.len() >= MAX_EVENTS {
                self.events.pop_front();
                cx.env.stats.park_events_dropped.inc();
            }
            self.events.push_back(ParkEvent { call: id, what });
        }
        // The end.
        let ended = end.and_then(|_| self.calls.remove(&id));
        if let Some(c) = &ended {
            self.dialogs.remove(Leg { call: id, side: Side::A }, &c.a);
            self.exts.remove(c);
            self.give_back();
        }
        ended
    }

    /// Starts the music of call `id` if it has music and its parked leg's
    /// SDP offers a codec it can be sent in; a shard already running its
    /// most streams counts the refusal (the call stays on hold in silence).
    fn music_starts(&self, cx: &mut Ctx<'_>, id: CallId) {
        let Some(c) = self.calls.get(&id).filter(|c| c.music) else { return };
        let Some(choice) = sdp::music_choice(c.a.remote_sdp()) else { return };
        let cfg = Arc::clone(&cx.env.cfg);
        let Some(audio) = self.policy(&cfg, c.home.tenant()).and_then(|p| cfg.music_of(p)) else { return };
        let start = Start {
            codec: choice.codec,
            ptime_ms: choice.ptime_ms,
            dest: choice.dest,
            peer_ip: c.a.peer().addr.ip(),
            audio: Arc::clone(audio),
            random: cx.env.random(),
        };
        match cx.media.start(cx.now, id, start) {
            Ok(()) => cx.env.stats.moh_streams_started.inc(),
            Err(Refused::Full) => cx.env.stats.moh_refused.inc(),
        }
    }

    /// The music of call `id` follows its parked leg's new SDP (a re-INVITE
    /// moved its media), if it is playing.
    fn music_moves(&self, cx: &mut Ctx<'_>, id: CallId) {
        if cx.media.has(id) {
            cx.media.stop(id);
            self.music_starts(cx, id);
        }
    }

    /// Whether a call parked now under `policy` gets music on hold: the
    /// shard has a media socket and room for one more stream, and the
    /// tenant has music. A full shard counts the refusal.
    fn music_allowed(cx: &Ctx<'_>, policy: &TenantPolicy) -> bool {
        if cx.env.local.media.is_none() || cx.env.cfg.music_of(policy).is_none() {
            return false;
        }
        let room = cx.media.has_room();
        if !room {
            cx.env.stats.moh_refused.inc();
        }
        room
    }

    /// Writes the SDP that holds the parked leg of `c`, answering the last
    /// SDP it sent, with sipark's origin `origin`: music (`a=sendonly`
    /// from the shard's media address) when the call has music and that
    /// SDP offers G.711 over RTP/AVP, else every stream `a=inactive`.
    /// False when there is nothing to answer.
    pub(super) fn hold_sdp(cx: &Ctx<'_>, out: &mut Vec<u8>, c: &Call, origin: Origin) -> bool {
        let (remote, host) = (c.a.remote_sdp(), &cx.env.local.host);
        if c.music
            && let Some(media) = cx.env.local.media
            && let Some(m) = sdp::music_choice(remote)
            && sdp::music_answer(out, remote, origin, host, media, &m)
        {
            return true;
        }
        sdp::hold_answer(out, remote, origin, host)
    }

    /// Gives back the capacity the tables of calls, extensions, dialogs
    /// and call timers kept from a busier moment, once three-quarters empty
    /// (checked every [`GIVE_BACK_EVERY`] calls ended): a burst of parked
    /// calls does not stay resident after it has left.
    fn give_back(&mut self) {
        self.give_back_in -= 1;
        if self.give_back_in > 0 {
            return;
        }
        self.give_back_in = GIVE_BACK_EVERY;
        self.calls.give_back();
        self.exts.give_back(&self.calls);
        let calls = &self.calls;
        self.dialogs.give_back(|leg| calls.get(&leg.call).and_then(|c| c.leg(leg.side)));
        self.timers.give_back();
    }

    /// The counters and the log line of a lifecycle event.
    fn count(&self, cx: &Ctx<'_>, id: CallId, what: Lifecycle) {
        let s = &cx.env.stats;
        match what {
            Lifecycle::Parked => s.parks.inc(),
            Lifecycle::Retrieved => s.retrieves.inc(),
            Lifecycle::RecallStarted => s.recalls.inc(),
            Lifecycle::RecallAnswered => s.recalls_answered.inc(),
            Lifecycle::HungUp => s.hangups.inc(),
            Lifecycle::TimedOut => s.park_timeouts.inc(),
            Lifecycle::RetrieveStarted | Lifecycle::RetrieveFailed | Lifecycle::Shutdown => {}
        }
        let Some(c) = self.calls.get(&id) else { return };
        let name = c.home.name();
        match what {
            Lifecycle::Parked => info!(
                tenant = name.tenant_str(),
                extension = name.ext_str(),
                call = %id.token(),
                parked = %String::from_utf8_lossy(c.parked().uri),
                parker = %c.home.parker().map_or("unknown".into(), |p| String::from_utf8_lossy(p.uri)),
                "call parked"
            ),
            Lifecycle::Retrieved
            | Lifecycle::RecallAnswered
            | Lifecycle::HungUp
            | Lifecycle::TimedOut
            | Lifecycle::Shutdown => {
                info!(tenant = name.tenant_str(), extension = name.ext_str(), call = %id.token(), event = ?what, "call left the park")
            }
            _ => {}
        }
    }

    // ----- notifications --------------------------------------------------

    /// The list of the extension of call `via` changed: bump its version
    /// (in each of its calls) and NOTIFY its devices. `left` is the call
    /// that just left, shown once as terminated.
    fn changed(&mut self, cx: &mut Ctx<'_>, via: CallId, left: Option<(CallId, LeaveReason)>) {
        let Some(version) = self.calls.get(&via).map(|c| c.version.saturating_add(1)) else { return };
        self.exts.each_mut(via, &mut self.calls, |c| c.version = version);
        self.version_floor = self.version_floor.max(version);
        self.notify(cx, via, left, None);
    }

    /// Sends the current documents of the extension of call `via` to every
    /// device that shows it (or only to the contact `only`, for a device
    /// that just registered).
    pub fn notify(&mut self, cx: &mut Ctx<'_>, via: CallId, left: Option<(CallId, LeaveReason)>, only: Option<&[u8]>) {
        let cfg = Arc::clone(&cx.env.cfg);
        let Some(via) = self.calls.get(&via) else { return };
        let (name, version) = (via.home.name(), via.version);
        let list = self.list(via.home.key());
        let policy = cfg.tenant(name.tenant);
        // Every device that shows this extension's parks: its own, then its
        // watchers' (park group members, parkers), each addressed to the
        // device's own extension, each with the documents it understands.
        let mut names: Vec<&[u8]> = vec![name.ext];
        if let Some(p) = policy {
            if let Some(group) = p.group_of(name.ext) {
                names.extend(group.iter().map(|m| m.as_bytes()).filter(|m| *m != name.ext));
            }
            if p.notify_parker {
                let shown = list.iter().copied().chain(left.and_then(|(id, _)| self.calls.get(&id)));
                for c in shown {
                    let Some(uri) = c.home.parker().and_then(|p| super::sip::parse::Uri::parse(p.uri).ok()) else {
                        continue;
                    };
                    if let Some(user) = uri.user
                        && uri.host.eq_ignore_ascii_case(name.tenant)
                        && user != name.ext
                        && !names.contains(&user)
                    {
                        names.push(user);
                    }
                }
            }
        }
        let targets = cx.registrar.targets(cx.now, name.tenant, &names, only);
        if targets.is_empty() {
            return;
        }
        let listed = list.iter().filter(|c| c.phase().listed());
        let departed = left.and_then(|(id, r)| Some(self.calls.get(&id)?.shown(Some(r))));
        let calls: Vec<Shown<'_>> = listed.map(|c| c.shown(None)).chain(departed).collect();
        let change = Change {
            spot: Spot { ext: name.ext, tenant: name.tenant, version: u64::from(version) },
            calls: &calls,
            names: &names,
            targets: &targets,
            documents: policy.map_or(cfg.defaults.notify, |p| p.notify),
        };
        cx.notifier.send(cx.env, cx.txns, cx.now, Owner::Notify, &change, &cfg.retrieve_fac);
    }

    // ----- timers ---------------------------------------------------------

    /// The next instant [`Park::handle_timer`] has work.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    /// Runs the earliest call timer due at `now`, if it is still its call's.
    pub fn handle_timer(&mut self, cx: &mut Ctx<'_>) {
        let Some((at, id)) = self.timers.pop_due(cx.now) else { return };
        let Some(timer) = self.calls.get(&id).and_then(|c| c.state.timer_at(at)) else { return };
        match timer {
            CallTimer::ParkTimeout => self.start_recall(cx, id),
            CallTimer::RecallGroup => self.recall_group_joins(cx, id),
            CallTimer::RecallEnd => self.recall_unanswered(cx, id),
            CallTimer::GlareRetry => self.retry_retrieve(cx, id),
            CallTimer::MaxDuration => self.max_duration(cx, id),
            CallTimer::ReferrerHangup => {
                self.bye(cx, id, Side::A);
                self.end(cx, id, End::Gone);
            }
        }
    }

    /// Drops heap entries whose call is gone or no longer runs them.
    fn compact(&mut self) {
        let calls = &self.calls;
        self.timers.retain_heap(|at, id| calls.get(&id).is_some_and(|c| c.state.timer_at(at).is_some()));
        self.compact_at = (2 * self.timers.heap_len()).max(MIN_COMPACT);
    }

    // ----- shutdown -------------------------------------------------------

    /// Starts a graceful shutdown: parked calls are hung up with a
    /// `shutdown` NOTIFY (oldest first), referrers are hung up, bridged
    /// calls are left alone. Returns how many parked calls were hung up.
    pub fn shutdown(&mut self, cx: &mut Ctx<'_>) -> usize {
        self.shutting_down = true;
        let mut parked: Vec<CallId> = self.calls.values().filter(|c| c.phase().retrievable()).map(|c| c.id).collect();
        parked.sort_unstable();
        for &id in &parked {
            self.cancel_forks(cx, id);
            self.bye(cx, id, Side::A);
            self.end(cx, id, End::Shutdown);
        }
        let mut referrers: Vec<CallId> =
            self.calls.values().filter(|c| c.phase() == Phase::Referrer).map(|c| c.id).collect();
        referrers.sort_unstable();
        for id in referrers {
            self.bye(cx, id, Side::A);
            self.end(cx, id, End::Gone);
        }
        parked.len()
    }

    /// After [`Park::shutdown`]: only bridged calls are left.
    pub fn drained(&self) -> bool {
        self.shutting_down && self.calls.values().all(|c| c.phase() == Phase::Bridged)
    }
}

#[cfg(test)]
mod tests;
