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
mod intake;
mod legs;
mod recall;
mod refer;
mod retrieve;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use tracing::info;

pub use call::{
    Answering, Call, CallState, CallTimer, Due, End, Fork, Identity, Lifecycle, Next, ParkEvent, Phase, Recall,
    RecallBridging, Referrer, Retrieving,
};
use call::{Timers, leave_reason, lifecycle, park_timeout};
pub use intake::{Replaces, parse_replaces};

use super::config::{Config, TenantPolicy};
use super::dialog::{DialogIndex, Leg, Side};
use super::env::WallClock;
use super::ids::{CallId, ExtId, IdMap, Seed};
use super::named::{Name, Named};
use super::notify::Change;
use super::notify::bodies::{LeaveReason, Shown, Spot};
use super::timers::TimerQueue;
use super::tu::{Ctx, Owner};

/// park-info versions start from the seconds since 2025-01-01 at start-up,
/// so that a restarted engine never goes back below a version a phone has
/// seen, while staying far below 2^31 for phones that parse an `int32`.
const VERSION_EPOCH: u64 = 1_735_689_600;

/// Most lifecycle events kept for [`Park::poll_event`]; past it the oldest
/// is dropped and counted, so a host that never polls stays bounded.
const MAX_EVENTS: usize = 65_536;

/// The call timer heap is never compacted below this many entries.
const MIN_COMPACT: usize = 4096;

/// A call timer's entry in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TimerKey {
    call: CallId,
    timer: CallTimer,
}

/// The calls parked on one extension.
#[derive(Debug)]
pub struct Lot {
    /// Oldest first: calls answering, parked, recalling or being retrieved.
    pub calls: Vec<CallId>,
    /// park-info version of the last document sent.
    pub version: u64,
    /// Calls of any state that are of this extension (bridged ones, and
    /// referrers, included): the list lives as long as they do.
    holders: u32,
}

/// Every call of a shard.
pub struct Park {
    /// Boxed: the map's spare buckets then cost a pointer each, not a call.
    calls: IdMap<CallId, Box<Call>>,
    lots: Named<Lot>,
    dialogs: DialogIndex,
    timers: TimerQueue<TimerKey>,
    compact_at: usize,
    events: VecDeque<ParkEvent>,
    /// Calls listed in park-info.
    listed: u64,
    /// Calls bridged.
    bridged: u64,
    /// No extension's park-info version is above this; new lists start here.
    version_floor: u64,
    shutting_down: bool,
    /// Tenants removed by a reload that still had calls here: their calls
    /// can still be retrieved (domain lowercase → old policy).
    retired: Arc<HashMap<Box<str>, TenantPolicy>>,
}

impl Park {
    pub fn new(wall: WallClock, seed: &Seed) -> Park {
        Park {
            calls: IdMap::default(),
            lots: Named::new(seed.hasher(3)),
            dialogs: DialogIndex::new(seed.hasher(4)),
            timers: TimerQueue::default(),
            compact_at: MIN_COMPACT,
            events: VecDeque::new(),
            listed: 0,
            bridged: 0,
            version_floor: wall.unix.as_secs().saturating_sub(VERSION_EPOCH),
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
        self.calls.get(&id).map(|c| &**c)
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
        for (_, name, lot) in self.lots.iter() {
            let domain = name.tenant_str();
            if lot.calls.is_empty() || new.tenant(name.tenant).is_some() || retired.contains_key(domain) {
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

    /// The name of extension `ext`.
    pub fn lot_name(&self, ext: ExtId) -> Option<Name<'_>> {
        self.lots.name(ext)
    }

    /// The calls on extension `ext` of `tenant`, oldest first.
    pub fn lot_calls(&mut self, tenant: &[u8], ext: &[u8]) -> &[CallId] {
        match self.lots.find(tenant, ext).and_then(|id| self.lots.get(id)) {
            Some(lot) => &lot.calls,
            None => &[],
        }
    }

    /// The extension `ext` of `tenant` if anything listed in park-info is
    /// parked on it.
    pub fn showing(&mut self, tenant: &[u8], ext: &[u8]) -> Option<ExtId> {
        let id = self.lots.find(tenant, ext)?;
        let lot = self.lots.get(id)?;
        lot.calls.iter().any(|c| self.calls.get(c).is_some_and(|c| c.phase().listed())).then_some(id)
    }

    // ----- the one place a call changes -----------------------------------

    /// Adds the call `make` builds (in its first state) on extension `ext`
    /// of `tenant`.
    fn insert(&mut self, cx: &mut Ctx<'_>, tenant: &[u8], ext: &[u8], make: impl FnOnce(ExtId) -> Call) -> CallId {
        let floor = self.version_floor;
        let lot = self.lots.find_or_insert(&mut cx.env.ids, tenant, ext, || Lot {
            calls: Vec::new(),
            version: floor,
            holders: 0,
        });
        let call = make(lot);
        let id = call.id;
        self.calls.insert(id, Box::new(call));
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
        let (to, new_timers, ext) = {
            let call = self.calls.get(&id)?;
            let to = end.is_none().then(|| call.state.phase());
            (to, if end.is_none() { call.state.timers() } else { [None, None] }, call.ext)
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
        // Timers.
        if new_timers != old_timers {
            for due in new_timers.into_iter().flatten().filter(|d| !old_timers.contains(&Some(*d))) {
                self.timers.push(due.at, TimerKey { call: id, timer: due.timer });
            }
            if self.timers.heap_len() > self.compact_at {
                self.compact();
            }
        }
        // The extension's list, and its NOTIFY.
        let on_list = |p: Option<Phase>| p.is_some_and(Phase::on_list);
        if let Some(lot) = self.lots.get_mut(ext) {
            if on_list(from) && !on_list(to) {
                lot.calls.retain(|c| *c != id);
            }
            if !on_list(from) && on_list(to) {
                // Most extensions hold one call: no room for more until asked.
                lot.calls.reserve_exact(1);
                lot.calls.push(id);
            }
            lot.holders = lot.holders + u32::from(from.is_none()) - u32::from(end.is_some());
        }
        let what = lifecycle(from, to, end);
        if let Some(what) = what {
            self.count(cx, id, what);
        }
        match (listed(from), listed(to)) {
            (false, true) => self.changed(cx, ext, None),
            (true, false) => self.changed(cx, ext, Some((id, leave_reason(to, end)))),
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
        }
        if self.lots.get(ext).is_some_and(|l| l.holders == 0) {
            self.lots.remove(ext);
        }
        ended
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
        let (Some(c), Some(name)) = (self.calls.get(&id), self.calls.get(&id).and_then(|c| self.lots.name(c.ext)))
        else {
            return;
        };
        match what {
            Lifecycle::Parked => info!(
                tenant = name.tenant_str(),
                extension = name.ext_str(),
                call = %id.token(),
                parked = %String::from_utf8_lossy(c.parked().uri),
                parker = %c.parker.as_ref().map_or("unknown".into(), |p| String::from_utf8_lossy(p.uri())),
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

    /// The list of `ext` changed: bump its version and NOTIFY its devices.
    /// `left` is the call that just left, shown once as terminated.
    fn changed(&mut self, cx: &mut Ctx<'_>, ext: ExtId, left: Option<(CallId, LeaveReason)>) {
        let Some(lot) = self.lots.get_mut(ext) else { return };
        lot.version += 1;
        self.version_floor = self.version_floor.max(lot.version);
        self.notify(cx, ext, left, None);
    }

    /// Sends the current documents of `ext` to every device that shows it
    /// (or only to the contact `only`, for a device that just registered).
    pub fn notify(&mut self, cx: &mut Ctx<'_>, ext: ExtId, left: Option<(CallId, LeaveReason)>, only: Option<&[u8]>) {
        let cfg = Arc::clone(&cx.env.cfg);
        let Some((name, lot)) = self.lots.entry(ext) else { return };
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
                let shown =
                    lot.calls.iter().copied().chain(left.map(|(id, _)| id)).filter_map(|id| self.calls.get(&id));
                for c in shown {
                    let Some(uri) = c.parker.as_ref().and_then(|p| super::sip::parse::Uri::parse(p.uri()).ok()) else {
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
        let listed = lot.calls.iter().filter_map(|id| self.calls.get(id)).filter(|c| c.phase().listed());
        let departed = left.and_then(|(id, r)| Some(self.calls.get(&id)?.shown(Some(r))));
        let calls: Vec<Shown<'_>> = listed.map(|c| c.shown(None)).chain(departed).collect();
        let change = Change {
            spot: Spot { ext: name.ext, tenant: name.tenant, version: lot.version },
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
        let Some((at, TimerKey { call: id, timer })) = self.timers.pop_due(cx.now) else { return };
        let live = self.calls.get(&id).is_some_and(|c| c.state.timers().contains(&Some(Due { at, timer })));
        if !live {
            return;
        }
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
        self.timers.retain_heap(|at, k| {
            calls.get(&k.call).is_some_and(|c| c.state.timers().contains(&Some(Due { at, timer: k.timer })))
        });
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
