//! The shard: everything one worker owns (registrations, parked calls,
//! dialogs, transactions, timers, the NOTIFY queue), behind a sans-IO API in
//! the style of `quinn-proto`:
//!
//! * getters: [`Shard::id`], [`Shard::stats`], [`Shard::is_drained`];
//! * `handle_*`: [`Shard::handle`], [`Shard::handle_message`],
//!   [`Shard::handle_timeout`], [`Shard::shutdown`] feed input and `now`;
//! * `poll_*`: [`Shard::poll_transmit`] and [`Shard::poll_timeout`] pull the
//!   work out. [`Shard::recycle`] gives a sent buffer back to the pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Config;
use super::stats::ShardStats;

/// A message to send: a datagram, or a message on the stream connection
/// to `dst` (the I/O layer reuses the peer's connection, or opens one).
#[derive(Debug)]
pub struct Transmit {
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

/// Maps the monotonic clock to wall-clock time (for `parked-at`): the
/// caller reads both clocks once, at start-up.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub at: Instant,
    /// Time since the Unix epoch at `at`.
    pub unix: Duration,
}

impl WallClock {
    /// Seconds since the Unix epoch at `now`.
    pub fn unix_secs(&self, now: Instant) -> u64 {
        (self.unix + now.saturating_duration_since(self.at)).as_secs()
    }
}

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};

use hashbrown::{HashMap, HashTable};
use tracing::{debug, info, warn};

use super::auth::{Authenticator, Request as AuthRequest, Verdict};
use super::bodies::BodyKind;
use super::config::{Admission, NotifySet, RecallTo};
use super::park::{
    Binding, Call, CallState, CallView, Extension, Fork, Identity, LeaveReason, Leg, Recall, Retriever, parse_token,
    write_token,
};
use super::sip::parse::{Contact, HeaderName, Method, NameAddr, SipMessage, StartLine, Uri};
use super::sip::sdp::{self, Origin};
use super::sip::write::{branch_id, finish, header, request_head, response_head, write_branch, write_contact_uri};
use super::sip::{Peer, Transport};
use super::timers::TimerQueue;
use super::txn::{ClientState, ClientTxn, Kind, ResponseEffect, ServerState, ServerTxn, TimerAction};

/// Maps keyed by attacker-chosen bytes (Call-IDs, branches, AORs) use a
/// keyed SipHash, so collisions cannot be forced.
type KeyedMap<K, V> = HashMap<K, V, RandomState>;

/// Methods answered in `Allow`.
const ALLOW: &[u8] = b"INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, REFER, NOTIFY";

/// Headers a relayed request keeps besides its body: INFO's package,
/// REFER's target and referrer, and the refer subscription's NOTIFYs.
const RELAYED_HEADERS: [&str; 6] =
    ["Info-Package", "Refer-To", "Referred-By", "Event", "Subscription-State", "Refer-Sub"];

/// How long the leg of a party whose REFER parked its call is kept for
/// its BYE before sipark hangs it up.
const REFERRER_LINGER: Duration = Duration::from_secs(32);

/// A timer's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Server(u64),
    Client(u64),
    Call(u64),
    Ext(u64),
}

/// Who waits on a server transaction.
struct ServerEntry {
    txn: ServerTxn,
    /// Key in `server_index`.
    key: Box<[u8]>,
    /// The request, kept only when its final answer waits on another leg.
    request: Vec<u8>,
    /// The call whose leg this INVITE created or refreshed, if any.
    call: Option<u64>,
}

/// What a client transaction's outcome feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientOwner {
    /// A park-info NOTIFY for an extension.
    Notify,
    /// The re-INVITE of the parked leg for a retrieve.
    Retrieve { call: u64 },
    /// The re-INVITE of the parked leg for an answered recall.
    RecallBridge { call: u64 },
    /// A re-INVITE putting the parked leg back on hold.
    Rehold { call: u64 },
    /// One recall branch.
    Recall { call: u64 },
    /// A request relayed from one bridged leg to the other.
    Relay { call: u64 },
    /// BYE, CANCEL: nobody waits on the outcome.
    Detached,
}

/// A request relayed between the bridged legs of a call: its server
/// transaction on the leg it came from.
struct Relay {
    server: u64,
    from: Side,
    /// An INVITE or UPDATE: an offer/answer exchange, one at a time.
    offer: bool,
}

struct ClientEntry {
    txn: ClientTxn,
    owner: ClientOwner,
    /// An INVITE to CANCEL as soon as it has a provisional response: a
    /// CANCEL may not be sent before one (§9.1).
    cancel_pending: bool,
}

/// Which leg of a call a dialog is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// One shard: the tenants with `shard_of(domain, n) == id`, and all their
/// state. See the module documentation for the API shape.
pub struct Shard {
    id: u16,
    n: u16,
    cfg: Arc<Config>,
    wall: WallClock,
    stats: Arc<ShardStats>,
    out: VecDeque<Transmit>,
    pool: Vec<Vec<u8>>,
    /// Every deadline; lingering transactions sit in its FIFOs, so
    /// `timers.fifo_len()` is how many there are.
    timers: TimerQueue<TimerKey>,
    /// Heap size that triggers the next [`Shard::compact_timers`].
    compact_at: usize,
    next_id: u64,
    rng: u64,
    server: HashMap<u64, ServerEntry>,
    server_index: KeyedMap<Box<[u8]>, u64>,
    client: HashMap<u64, ClientEntry>,
    /// Dialog index: `(Call-ID, local tag)` → call and side. The table
    /// holds only `(call, side)`; the key bytes are the leg's own, hashed
    /// with `dialog_hasher` (keyed) and compared in place, so a parked call
    /// costs no copy of them here.
    dialogs: HashTable<(u64, Side)>,
    dialog_hasher: RandomState,
    /// Boxed: the map's spare buckets then cost a pointer each, not a `Call`.
    calls: HashMap<u64, Box<Call>>,
    exts: HashMap<u64, Extension>,
    /// `ext@tenant` (tenant lowercase) → extension id.
    ext_index: KeyedMap<Box<[u8]>, u64>,
    /// No extension's park-info version is above this; new extensions start here.
    version_floor: u64,
    bindings: usize,
    /// Calls listed in park-info (kept incrementally: `parked()` adds,
    /// `depart()` removes).
    listed: u64,
    /// Calls in `CallState::Bridged`.
    bridged: u64,
    /// Delayed-offer retrieves whose parked leg's 2xx waits for the
    /// retriever's ACK to bring the answer: call → the re-INVITE's client
    /// transaction.
    awaiting_answer: HashMap<u64, (u64, u32)>,
    /// Relayed requests by their client transaction.
    relays: HashMap<u64, Relay>,
    /// The offer/answer exchange in progress on a bridged call (client
    /// transaction of the relayed INVITE or UPDATE); another offer from
    /// either side meanwhile is glare, answered 491 (RFC 3261 §14.1,
    /// RFC 3311 §5.2).
    offers: HashMap<u64, u64>,
    /// A relayed re-INVITE's 2xx waits for the ACK of the leg it came
    /// from: call → (client transaction, its CSeq, that leg).
    relay_acks: HashMap<u64, (u64, u32, Side)>,
    shutting_down: bool,
    /// `<sip:sp<id>.sipark@advertise>` per transport (indexed by
    /// [`Transport::index`]), written once.
    contacts: [Arc<[u8]>; 3],
    /// The advertised `host:port` per transport, for Via.
    vias: [Arc<str>; 3],
    /// The advertised host, for SDP origins.
    host: Arc<str>,
    /// Tenants removed by a reload that still had calls here: their
    /// calls can still be retrieved (domain lowercase → old policy).
    retired: Arc<HashMap<Box<str>, super::config::TenantPolicy>>,
    /// Digest challenges and checks (nonce key from the config).
    auth: Authenticator,
    /// Outbound-proxy mode: where requests to extensions go, and the
    /// `Route` they carry (`<proxy;lr>`).
    proxy: Option<(Peer, Arc<[u8]>)>,
    scratch: Vec<u8>,
    key: Vec<u8>,
}

/// One device (or, in outbound-proxy mode, one extension at the proxy)
/// that a NOTIFY or recall INVITE goes to.
struct DeviceTarget {
    /// Request-URI: the registered contact, or `sip:<ext>@<tenant>`.
    uri: Box<[u8]>,
    dst: Peer,
    /// The `Route` value to write, if any (Path, or the outbound proxy).
    route: Option<Arc<[u8]>>,
    /// Index, in the names asked for, of the extension whose device this
    /// is (the To user).
    name: usize,
    /// The documents this device is sent, if a User-Agent rule decided.
    notify: Option<NotifySet>,
}

/// park-info versions start from the seconds since 2025-01-01 at start-up,
/// so that a restarted engine never goes back below a version a phone has
/// seen, while staying far below 2^31 for phones that parse an `int32`.
const VERSION_EPOCH: u64 = 1_735_689_600;

/// How many times a retrieve re-INVITE refused 491 is sent again.
const MAX_GLARE_RETRIES: u8 = 3;

/// The timer heap is never compacted below this many entries.
const MIN_COMPACT: usize = 4096;

/// Pool buffers are trimmed back to this capacity so one huge message does
/// not pin memory forever.
const POOL_BUF_CAP: usize = 4096;
const POOL_MAX: usize = 1024;

impl Shard {
    /// A shard with id `id` of `n_shards`, created at `now` (the shard
    /// keeps no state that depends on it yet; the argument keeps every
    /// sans-IO entry point taking the caller's clock).
    pub fn new(id: u16, n_shards: u16, cfg: Arc<Config>, wall: WallClock, now: Instant) -> Shard {
        let _ = now;
        let seed = (wall.unix.as_nanos() as u64) ^ (u64::from(id) << 48) ^ 0x9e37_79b9_7f4a_7c15;
        Shard {
            id,
            n: n_shards.max(1),
            wall,
            stats: Arc::new(ShardStats::default()),
            out: VecDeque::new(),
            pool: Vec::new(),
            timers: TimerQueue::default(),
            compact_at: MIN_COMPACT,
            // Start ids from the clock so call tokens differ across restarts.
            next_id: (wall.unix.as_secs() & 0xf_ffff) << 20,
            rng: seed | 1,
            server: HashMap::new(),
            server_index: KeyedMap::default(),
            client: HashMap::new(),
            dialogs: HashTable::new(),
            dialog_hasher: RandomState::new(),
            calls: HashMap::new(),
            exts: HashMap::new(),
            ext_index: KeyedMap::default(),
            version_floor: wall.unix.as_secs().saturating_sub(VERSION_EPOCH),
            bindings: 0,
            listed: 0,
            bridged: 0,
            awaiting_answer: HashMap::new(),
            relays: HashMap::new(),
            offers: HashMap::new(),
            relay_acks: HashMap::new(),
            shutting_down: false,
            contacts: [Transport::Udp, Transport::Tcp, Transport::Tls].map(|t| {
                let mut c = Vec::with_capacity(64);
                c.push(b'<');
                write_contact_uri(&mut c, id, t, cfg.advertise_of(t));
                c.push(b'>');
                c.into()
            }),
            vias: [Transport::Udp, Transport::Tcp, Transport::Tls].map(|t| cfg.advertise_of(t).into()),
            host: advertise_host(&cfg.advertise).into(),
            retired: Arc::default(),
            auth: Authenticator::new(cfg.nonce_secret, cfg.nonce_validity),
            proxy: cfg.outbound_proxy.as_ref().map(|p| {
                let lr = Uri::parse(p.uri.as_bytes()).is_ok_and(|u| u.param(b"lr").is_some());
                let route = format!("<{}{}>", p.uri, if lr { "" } else { ";lr" });
                (p.peer, route.into_bytes().into())
            }),
            cfg,
            scratch: Vec::new(),
            key: Vec::new(),
        }
    }

    /// A reloaded configuration (SIGHUP). Only the tenants part may differ
    /// from the running one: the advertised addresses, nonce secret and
    /// limits are fixed at start. Nothing in progress is touched: a
    /// removed tenant takes no new parks or registrations, and its calls
    /// already parked here can still be retrieved until they end.
    pub fn reconfigure(&mut self, now: Instant, cfg: Arc<Config>) {
        let _ = now;
        // Tenants gone from the new file that still have calls here keep
        // their old policy for retrieves (and, in `retired`, nothing else).
        let mut retired: HashMap<Box<str>, super::config::TenantPolicy> = HashMap::new();
        for e in self.exts.values().filter(|e| !e.calls.is_empty()) {
            let domain = e.tenant.to_ascii_lowercase();
            if cfg.tenant(domain.as_bytes()).is_some() || retired.contains_key(domain.as_str()) {
                continue;
            }
            let old = self.cfg.tenant(domain.as_bytes()).or_else(|| self.retired.get(domain.as_str()));
            if let Some(p) = old {
                retired.insert(domain.into(), p.clone());
            }
        }
        if !retired.is_empty() {
            info!(shard = self.id, tenants = retired.len(), "removed tenants keep their parked calls until they end");
        }
        self.retired = Arc::new(retired);
        self.cfg = cfg;
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    /// How many shards the engine runs (this one included).
    pub fn shards(&self) -> u16 {
        self.n
    }

    pub fn stats(&self) -> &Arc<ShardStats> {
        &self.stats
    }

    /// Parses and handles one datagram from `src`.
    pub fn handle(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        self.handle_from(now, Peer::udp(src), data);
    }

    /// Parses and handles one message from `src` (a datagram, or one
    /// message framed out of a stream connection).
    pub fn handle_from(&mut self, now: Instant, src: Peer, data: &[u8]) {
        match SipMessage::parse(data) {
            Ok(msg) => self.handle_message_from(now, src, &msg),
            Err(e) => {
                // Framing errors leave no header that can be trusted to build
                // a response from (typed header errors are answered 400 in
                // `on_request`): count and drop.
                self.stats.parse_errors.inc();
                self.stats.dropped.inc();
                tracing::debug!(shard = self.id, peer = %src, error = e.reason(), "unparsable datagram dropped");
            }
        }
    }

    /// Handles one parsed datagram from `src`.
    pub fn handle_message(&mut self, now: Instant, src: SocketAddr, msg: &SipMessage<'_>) {
        self.handle_message_from(now, Peer::udp(src), msg);
    }

    /// Handles one parsed message from `src`.
    pub fn handle_message_from(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>) {
        match msg.method() {
            None => self.on_response(now, src, msg),
            Some(method) => self.on_request(now, src, msg, method),
        }
        self.update_gauges();
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, key)) = self.timers.pop_due(now) {
            match key {
                TimerKey::Server(id) => self.server_timer(now, id, at),
                TimerKey::Client(id) => self.client_timer(now, id, at),
                TimerKey::Call(id) => self.call_timer(now, id, at),
                TimerKey::Ext(id) => self.ext_timer(now, id, at),
            }
        }
        self.update_gauges();
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// Gives a sent datagram's buffer back for reuse.
    pub fn recycle(&mut self, mut payload: Vec<u8>) {
        if self.pool.len() < POOL_MAX {
            payload.clear();
            payload.shrink_to(POOL_BUF_CAP);
            self.pool.push(payload);
        }
    }

    /// The next instant [`Shard::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    /// Starts a graceful shutdown: new parks get 503, parked calls are hung
    /// up with a `shutdown` NOTIFY, bridged calls are left alone.
    pub fn shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let ids: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.state, CallState::Parked | CallState::Recalling { .. }))
            .map(|(id, _)| *id)
            .collect();
        info!(shard = self.id, parked = ids.len(), "shutting down: hanging up parked calls");
        for id in ids {
            self.cancel_forks(id);
            self.leave_park(now, id, LeaveReason::Shutdown, true);
        }
        // Referrers still waiting to hang up after a REFER park.
        let referrers: Vec<u64> =
            self.calls.iter().filter(|(_, c)| matches!(c.state, CallState::Referrer)).map(|(id, _)| *id).collect();
        for id in referrers {
            self.bye(now, id, Side::A);
            self.forget_call(id);
        }
        self.update_gauges();
    }

    /// After [`Shard::shutdown`]: nothing parked remains and every NOTIFY
    /// and BYE has had its answer (or its Timer F).
    pub fn is_drained(&self) -> bool {
        self.shutting_down
            && self.calls.values().all(|c| matches!(c.state, CallState::Bridged { .. }))
            && self.client.values().all(|c| !c.txn.pending())
    }

    // ----- plumbing ------------------------------------------------------

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: tags and Call-IDs need to be unique, not secret.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn new_tag(&mut self) -> Box<[u8]> {
        let r = self.random();
        format!("{r:016x}").into_boxed_str().into_boxed_bytes()
    }

    fn new_call_id(&mut self) -> Box<[u8]> {
        let r = self.random();
        let id = self.fresh_id();
        format!("{r:016x}-{}-{id:x}@sipark", self.id).into_boxed_str().into_boxed_bytes()
    }

    /// sipark's Contact (with angle brackets) for a peer on `transport`.
    fn contact(&self, transport: Transport) -> Arc<[u8]> {
        Arc::clone(&self.contacts[transport.index()])
    }

    fn buf(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(1500))
    }

    fn send(&mut self, dst: Peer, bytes: &[u8]) {
        let mut payload = self.buf();
        payload.extend_from_slice(bytes);
        self.push(dst, payload);
    }

    fn push(&mut self, dst: Peer, payload: Vec<u8>) {
        self.out.push_back(Transmit { dst: dst.addr, transport: dst.transport, payload });
    }

    fn schedule(&mut self, at: Option<Instant>, key: TimerKey) {
        let Some(at) = at else { return };
        self.timers.push(at, key);
        if self.timers.heap_len() > self.compact_at {
            self.compact_timers();
        }
    }

    /// Queues a transaction's deadline after a change at `now` moved it
    /// from `before` to `after`. A `lingering` transaction goes to the
    /// timer FIFOs, and past `max_lingering` the oldest lingering one is
    /// ended early. An unchanged deadline is already queued.
    fn schedule_txn(
        &mut self,
        now: Instant,
        key: TimerKey,
        before: Option<Instant>,
        after: Option<Instant>,
        lingering: bool,
    ) {
        if before == after {
            return;
        }
        match after {
            Some(at) if lingering && at >= now => {
                self.timers.push_after(now, at - now, key);
                while self.timers.fifo_len() > self.cfg.limits.max_lingering {
                    let Some((at, key)) = self.timers.pop_oldest_fifo() else { break };
                    self.evict_txn(key, at);
                }
            }
            _ => self.schedule(after, key),
        }
    }

    /// Ends lingering transaction `key` before its time (its deadline is
    /// `at`), to keep the shard under `max_lingering`. A retransmission
    /// that arrives later is taken as a new request (absorbed by the
    /// dialog for an ACK or BYE, answered again for a REGISTER).
    fn evict_txn(&mut self, key: TimerKey, at: Instant) {
        let evicted = match key {
            TimerKey::Server(id) if self.server.get(&id).is_some_and(|e| e.txn.deadline() == Some(at)) => {
                if let Some(e) = self.server.remove(&id) {
                    self.server_index.remove(&e.key);
                }
                true
            }
            TimerKey::Client(id) if self.client.get(&id).is_some_and(|e| e.txn.deadline() == Some(at)) => {
                self.client.remove(&id);
                true
            }
            _ => false,
        };
        if evicted {
            self.stats.transactions_evicted.inc();
        }
    }

    /// Transactions that still have work to do: the ones counted against
    /// `max_transactions` (lingering ones have their own cap).
    fn live_transactions(&self) -> usize {
        (self.server.len() + self.client.len()).saturating_sub(self.timers.fifo_len())
    }

    /// Drops heap entries whose owner is gone or has moved its deadline
    /// (a bridged call that ended, a refreshed binding). Amortised O(1): it
    /// runs when the heap has doubled since the last compaction.
    fn compact_timers(&mut self) {
        let mut timers = std::mem::take(&mut self.timers);
        timers.retain_heap(|at, key| self.timer_live(key, at));
        self.timers = timers;
        self.compact_at = (2 * self.timers.heap_len()).max(MIN_COMPACT);
    }

    /// Is the heap entry `(at, key)` still its owner's deadline?
    fn timer_live(&self, key: TimerKey, at: Instant) -> bool {
        match key {
            TimerKey::Server(id) => self.server.get(&id).is_some_and(|e| e.txn.deadline() == Some(at)),
            TimerKey::Client(id) => self.client.get(&id).is_some_and(|e| e.txn.deadline() == Some(at)),
            TimerKey::Call(id) => self.calls.get(&id).is_some_and(|c| c.deadline == Some(at)),
            TimerKey::Ext(id) => self.exts.get(&id).is_some_and(|e| e.timer_at == Some(at)),
        }
    }

    fn update_gauges(&self) {
        let s = &self.stats;
        s.transactions.set(self.live_transactions() as u64);
        s.transactions_lingering.set(self.timers.fifo_len() as u64);
        s.bindings.set(self.bindings as u64);
        s.parked.set(self.listed);
        s.bridged.set(self.bridged);
    }

    fn find_dialog(&self, call_id: &[u8], local_tag: &[u8]) -> Option<(u64, Side)> {
        let hash = self.dialog_hasher.hash_one((call_id, local_tag));
        let calls = &self.calls;
        self.dialogs
            .find(hash, |&(call, side)| {
                calls
                    .get(&call)
                    .and_then(|c| leg_of(c, side))
                    .is_some_and(|l| *l.call_id == *call_id && *l.local_tag == *local_tag)
            })
            .copied()
    }

    /// Indexes the dialog of `side` of `call`, which must already be in
    /// `calls` with that leg in place.
    fn add_dialog(&mut self, call: u64, side: Side) {
        let (calls, hasher) = (&self.calls, &self.dialog_hasher);
        let hash_of = |&(call, side): &(u64, Side)| {
            let leg = calls.get(&call).and_then(|c| leg_of(c, side));
            leg.map_or(0, |l| hasher.hash_one((&*l.call_id, &*l.local_tag)))
        };
        let hash = hash_of(&(call, side));
        self.dialogs.insert_unique(hash, (call, side), hash_of);
    }

    /// Unindexes the dialog of `side` of `call`, whose leg is `leg`.
    fn remove_dialog(&mut self, call: u64, side: Side, leg: &Leg) {
        let hash = self.dialog_hasher.hash_one((&*leg.call_id, &*leg.local_tag));
        if let Ok(e) = self.dialogs.find_entry(hash, |&e| e == (call, side)) {
            e.remove();
        }
    }

    // ----- stateless answers ---------------------------------------------

    /// Answers `req` without a transaction (for requests that cannot have one).
    fn reply_stateless(&mut self, src: Peer, req: &SipMessage<'_>, code: u16, reason: &str) {
        let tag = self.new_tag();
        let mut out = self.buf();
        if response_head(&mut out, req, src.addr, code, reason, Some(&tag)) {
            finish(&mut out, "", b"");
            self.push(src, out);
        } else {
            self.stats.dropped.inc();
            self.recycle(out);
        }
    }

    /// Sends a response to the request of server transaction `txn`.
    /// `extra` writes additional headers; `body` is `(content type, bytes)`.
    #[allow(clippy::too_many_arguments)]
    fn reply(
        &mut self,
        now: Instant,
        txn: u64,
        req: &SipMessage<'_>,
        code: u16,
        reason: &str,
        to_tag: Option<&[u8]>,
        extra: &[(&str, &[u8])],
        body: Option<(&str, &[u8])>,
    ) {
        let Some(entry) = self.server.get(&txn) else { return };
        let dst = entry.txn.dst;
        // Every final response gets a To tag (§8.2.6.2); a provisional one
        // only when the caller gives the dialog's tag.
        let own_tag;
        let to_tag = match to_tag {
            None if code > 100 => {
                own_tag = self.new_tag();
                Some(&*own_tag)
            }
            t => t,
        };
        let mut out = self.buf();
        if !response_head(&mut out, req, dst.addr, code, reason, to_tag) {
            self.stats.dropped.inc();
            self.recycle(out);
            return;
        }
        for (name, value) in extra {
            header(&mut out, name, value);
        }
        let (ctype, body) = body.unwrap_or(("", b""));
        finish(&mut out, ctype, body);
        let t = self.cfg.timers;
        if let Some(entry) = self.server.get_mut(&txn) {
            let before = entry.txn.deadline();
            entry.txn.sent(now, code, &out, &t);
            let (after, lingering) = (entry.txn.deadline(), entry.txn.lingering());
            self.schedule_txn(now, TimerKey::Server(txn), before, after, lingering);
        }
        self.push(dst, out);
    }

    /// Replies to a request whose original bytes were kept in its server
    /// transaction (the final answer waited on another leg).
    #[allow(clippy::too_many_arguments)]
    fn reply_later(
        &mut self,
        now: Instant,
        txn: u64,
        code: u16,
        reason: &str,
        to_tag: Option<&[u8]>,
        extra: &[(&str, &[u8])],
        body: Option<(&str, &[u8])>,
    ) {
        let Some(entry) = self.server.get_mut(&txn) else { return };
        if entry.txn.is_final() {
            return;
        }
        let request = std::mem::take(&mut entry.request);
        if let Ok(req) = SipMessage::parse(&request) {
            self.reply(now, txn, &req, code, reason, to_tag, extra, body);
        }
        // Kept only until the final answer: a lingering transaction answers
        // retransmissions from its stored response.
        if let Some(entry) = self.server.get_mut(&txn)
            && !entry.txn.is_final()
        {
            entry.request = request;
        }
    }

    /// The ACK for server transaction `id` arrived: stop retransmitting and
    /// queue its end timer.
    fn server_acked(&mut self, now: Instant, id: u64) {
        let t = self.cfg.timers;
        let Some(e) = self.server.get_mut(&id) else { return };
        let before = e.txn.deadline();
        if e.txn.ack(now, &t) {
            let (after, lingering) = (e.txn.deadline(), e.txn.lingering());
            self.schedule_txn(now, TimerKey::Server(id), before, after, lingering);
        }
    }

    /// Sends the last response of server transaction `id` again.
    fn resend_response(&mut self, id: u64) {
        let Some(e) = self.server.get(&id) else { return };
        if e.txn.response.is_empty() {
            return;
        }
        let mut payload = self.pool.pop().unwrap_or_default();
        payload.extend_from_slice(&e.txn.response);
        let dst = e.txn.dst;
        self.push(dst, payload);
        self.stats.retransmissions.inc();
    }

    /// Sends the request (or, with `ack`, the ACK) of client transaction `id` again.
    fn resend_request(&mut self, id: u64, ack: bool) {
        let Some(e) = self.client.get(&id) else { return };
        let bytes = if ack { &e.txn.ack } else { &e.txn.request };
        if bytes.is_empty() {
            return;
        }
        let mut payload = self.pool.pop().unwrap_or_default();
        payload.extend_from_slice(bytes);
        let dst = e.txn.dst;
        self.push(dst, payload);
    }

    // ----- requests -----------------------------------------------------

    fn on_request(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, method: Method<'_>) {
        let (Ok(cseq), Ok(via), Ok(_), Ok(to), Ok(call_id)) =
            (msg.cseq(), msg.top_via(), msg.from_hdr(), msg.to_hdr(), msg.call_id())
        else {
            self.stats.parse_errors.inc();
            if method != Method::Ack {
                let reason = [
                    msg.cseq().err(),
                    msg.top_via().err(),
                    msg.from_hdr().err(),
                    msg.to_hdr().err(),
                    msg.call_id().err(),
                ]
                .into_iter()
                .flatten()
                .next()
                .map_or("Bad Request", |e| e.reason());
                self.reply_stateless(src, msg, 400, reason);
            }
            return;
        };
        if let Some(Err(e)) = msg.vias().find(Result::is_err) {
            self.stats.parse_errors.inc();
            if method != Method::Ack {
                self.reply_stateless(src, msg, 400, e.reason());
            }
            return;
        }
        let ruri_ok = msg.request_uri().is_some_and(|u| Uri::parse(u).is_ok());
        if !ruri_ok || (cseq.method != method && method != Method::Ack && method != Method::Cancel) {
            self.stats.parse_errors.inc();
            if method != Method::Ack {
                let reason = if ruri_ok { "CSeq method does not match" } else { "Bad Request-URI" };
                self.reply_stateless(src, msg, 400, reason);
            }
            return;
        }
        let Some(branch) = via.branch.filter(|b| b.len() > 7 && b[..7].eq_ignore_ascii_case(b"z9hG4bK")) else {
            self.stats.parse_errors.inc();
            if method != Method::Ack {
                self.reply_stateless(src, msg, 400, "Missing RFC 3261 branch");
            }
            return;
        };

        // Transaction matching (§17.2.3): branch plus method, ACK with INVITE.
        let class: &[u8] = match method {
            Method::Ack | Method::Invite => b"INVITE",
            m => m.as_bytes(),
        };
        self.key.clear();
        self.key.extend_from_slice(branch);
        self.key.push(b'|');
        self.key.extend_from_slice(class);
        let existing = self.server_index.get(self.key.as_slice()).copied();

        if method == Method::Ack {
            match existing {
                Some(id) if self.server.get(&id).is_some_and(|e| e.txn.state == ServerState::Completed) => {
                    self.server_acked(now, id);
                }
                _ => self.on_dialog_ack(now, src, msg, call_id, to.tag(), cseq.seq),
            }
            return;
        }
        if method == Method::Cancel {
            self.key.truncate(branch.len() + 1);
            self.key.extend_from_slice(b"INVITE");
            let invite = self.server_index.get(self.key.as_slice()).copied();
            self.on_cancel(now, src, msg, invite);
            return;
        }
        if let Some(id) = existing {
            // A retransmission: absorb it, repeating the last response.
            self.resend_response(id);
            return;
        }
        if let Some(Ok(0)) = msg.max_forwards() {
            self.reply_stateless(src, msg, 483, "Too Many Hops");
            return;
        }
        // sipark supports no SIP extension a request may require (§8.2.2.3):
        // not `timer` either (docs/decisions/0015-session-timers.md).
        let mut unsupported: Vec<u8> = Vec::new();
        for tag in msg.header_values(HeaderName::Require).flat_map(|v| v.split(|&b| b == b',')) {
            let tag = tag.trim_ascii();
            if !tag.is_empty() && unsupported.len() < 200 {
                if !unsupported.is_empty() {
                    unsupported.extend_from_slice(b", ");
                }
                unsupported.extend_from_slice(tag);
            }
        }
        if !unsupported.is_empty() && method != Method::Cancel {
            let tag = self.new_tag();
            let mut out = self.buf();
            if response_head(&mut out, msg, src.addr, 420, "Bad Extension", Some(&tag)) {
                header(&mut out, "Unsupported", &unsupported);
                finish(&mut out, "", b"");
                self.push(src, out);
            }
            return;
        }
        if self.live_transactions() >= self.cfg.limits.max_transactions {
            self.stats.overload_rejects.inc();
            let tag = self.new_tag();
            let mut out = self.buf();
            if response_head(&mut out, msg, src.addr, 503, "Service Unavailable", Some(&tag)) {
                header(&mut out, "Retry-After", b"5");
                finish(&mut out, "", b"");
                self.push(src, out);
            }
            return;
        }
        let kind = if method == Method::Invite { Kind::Invite } else { Kind::NonInvite };
        let txn = self.fresh_id();
        let key: Box<[u8]> = self.key.as_slice().into();
        self.server_index.insert(key.clone(), txn);
        let t = self.cfg.timers;
        let server_txn = ServerTxn::new(kind, src, now, &t);
        self.server.insert(txn, ServerEntry { txn: server_txn, key, request: Vec::new(), call: None });
        match to.tag() {
            Some(tag) => self.on_in_dialog(now, src, msg, method, txn, call_id, tag, cseq.seq),
            None => self.on_new_request(now, src, msg, method, txn),
        }
        // Most requests are answered at once, and their response queued
        // the end timer; only one still waiting needs its guard.
        if let Some(e) = self.server.get(&txn)
            && !e.txn.is_final()
        {
            let guard = e.txn.deadline();
            self.schedule(guard, TimerKey::Server(txn));
        }
    }

    /// An out-of-dialog request with its new server transaction `txn`.
    fn on_new_request(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, method: Method<'_>, txn: u64) {
        match method {
            Method::Invite => self.on_invite(now, src, msg, txn),
            Method::Register => self.on_register(now, src, msg, txn),
            Method::Options => {
                let allow = [("Allow", ALLOW), ("Accept", b"application/sdp".as_slice())];
                self.reply(now, txn, msg, 200, "OK", None, &allow, None);
            }
            Method::Subscribe | Method::Notify => {
                // No event package can be subscribed to: park-info is sent
                // unsolicited, so there is no Allow-Events to list.
                self.reply(now, txn, msg, 489, "Bad Event", None, &[], None);
            }
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.reply(now, txn, msg, 481, "Call/Transaction Does Not Exist", None, &[], None);
            }
            _ => self.reply(now, txn, msg, 405, "Method Not Allowed", None, &[("Allow", ALLOW)], None),
        }
    }

    fn on_cancel(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, invite_txn: Option<u64>) {
        let Some(inv) = invite_txn.filter(|id| self.server.contains_key(id)) else {
            self.reply_stateless(src, msg, 481, "Call/Transaction Does Not Exist");
            return;
        };
        self.reply_stateless(src, msg, 200, "OK");
        let Some(entry) = self.server.get(&inv) else { return };
        if entry.txn.is_final() {
            // A CANCEL that crossed the park's 200: the caller gave up, so
            // nothing is parked; the ACK that follows ends the call.
            if let Some(call_id) = entry.call
                && let Some(call) = self.calls.get_mut(&call_id)
                && let CallState::Answering { txn, cancelled } = &mut call.state
                && *txn == inv
            {
                *cancelled = true;
                self.stats.parks_rejected.inc();
            }
            return;
        }
        // Only a retrieve INVITE waits for another leg; everything else is
        // answered at once, so only it can still be cancelled.
        if let Some(call_id) = entry.call
            && let Some(call) = self.calls.get_mut(&call_id)
            && let CallState::Retrieving { retriever, .. } = &mut call.state
            && retriever.txn == inv
        {
            retriever.cancelled = true;
        }
        self.reply_later(now, inv, 487, "Request Terminated", None, &[], None);
    }

    // ----- INVITE: park and retrieve -------------------------------------

    fn on_invite(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, txn: u64) {
        let Some(ruri) = msg.request_uri().and_then(|u| Uri::parse(u).ok()) else { return };
        if let Some(replaces) = msg.header_raw(b"Replaces") {
            self.on_replaces(now, src, msg, txn, replaces);
            return;
        }
        let cfg = Arc::clone(&self.cfg);
        let retired;
        let live = cfg.tenant(ruri.host);
        let removed = live.is_none();
        let policy = match live {
            Some(p) => p,
            None => {
                retired = Arc::clone(&self.retired);
                match retired_policy(&retired, ruri.host) {
                    Some(p) => p,
                    None => {
                        self.stats.parks_rejected.inc();
                        self.reply(now, txn, msg, 404, "Unknown Tenant", None, &[], None);
                        return;
                    }
                }
            }
        };
        let caller = msg.from_hdr().ok().and_then(|f| f.uri.user);
        if !self.admit(now, src, msg, txn, ruri.host, policy, caller.unwrap_or_default()) {
            return;
        }
        let user = ruri.user.unwrap_or_default();
        let parking = user.starts_with(cfg.park_fac.as_bytes());
        if removed && (parking || !user.starts_with(cfg.retrieve_fac.as_bytes())) {
            // A tenant removed by a reload: its parked calls can still be
            // retrieved, nothing new is parked.
            if parking {
                self.stats.parks_rejected.inc();
            }
            self.reply(now, txn, msg, 404, "Unknown Tenant", None, &[], None);
            return;
        }
        // The feature code alone (`*68`, `*68#`, `*68%23`) means the
        // requester's own extension: the parker's (Referred-By) for a park,
        // the caller's (From) for a retrieve. The group code parks on the
        // parker's park group.
        let (park, rest) = if let Some(rest) = user.strip_prefix(cfg.park_fac.as_bytes()) {
            (true, rest)
        } else if let Some(rest) = user.strip_prefix(cfg.retrieve_fac.as_bytes()) {
            (false, rest)
        } else if let Some(rest) = user.strip_prefix(cfg.group_park_fac.as_bytes())
            && names_own_extension(rest)
        {
            self.on_group_park(now, src, msg, txn, ruri.host, policy);
            return;
        } else {
            self.reply(now, txn, msg, 404, "Not Found", None, &[], None);
            return;
        };
        // A retriever is a user of the tenant whose call it takes (the
        // parked party, by contrast, may be anyone: a call from another
        // tenant of the same carrier can be parked).
        if !park && !msg.from_hdr().is_ok_and(|f| f.uri.host.eq_ignore_ascii_case(ruri.host)) {
            self.stats.retrieves_failed.inc();
            self.reply(now, txn, msg, 403, "Not An Extension Of This Tenant", None, &[], None);
            return;
        }
        let ext = if names_own_extension(rest) {
            let own = if park { msg.referred_by() } else { Some(msg.from_hdr()) };
            match own {
                None => {
                    self.stats.parks_rejected.inc();
                    self.reply(now, txn, msg, 400, "Self Park Needs Referred-By", None, &[], None);
                    return;
                }
                Some(Ok(na)) if na.uri.host.eq_ignore_ascii_case(ruri.host) => match na.uri.user {
                    Some(e) if valid_ext(e) => e,
                    _ => {
                        self.reply(now, txn, msg, 404, "Own Extension Unknown", None, &[], None);
                        return;
                    }
                },
                // Another tenant's party, or an unreadable header: never
                // act on an extension of the Request-URI's tenant for it.
                Some(_) => {
                    if park {
                        self.stats.parks_rejected.inc();
                    }
                    self.reply(now, txn, msg, 403, "Not An Extension Of This Tenant", None, &[], None);
                    return;
                }
            }
        } else if valid_ext(rest) {
            rest
        } else {
            self.reply(now, txn, msg, 404, "Not Found", None, &[], None);
            return;
        };
        if park {
            self.on_park(now, src, msg, txn, ruri.host, ext, policy);
        } else {
            let token = ruri.param(b"call").flatten();
            self.on_retrieve(now, src, msg, txn, ruri.host, ext, token);
        }
    }

    /// An INVITE with `Replaces` (RFC 3891) naming a parked call's dialog
    /// (Call-ID, sipark's tag as `to-tag`, the parked party's as
    /// `from-tag`; the two tags are also accepted the other way round, as
    /// some phones write them): it retrieves that call. The caller must be
    /// of the parked call's tenant.
    fn on_replaces(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, txn: u64, value: &[u8]) {
        let mut parts = value.split(|&b| b == b';').map(<[u8]>::trim_ascii);
        let call_id = parts.next().unwrap_or_default();
        let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
        for p in parts {
            match p.iter().position(|&b| b == b'=') {
                Some(i) if p[..i].trim_ascii().eq_ignore_ascii_case(b"to-tag") => {
                    to_tag = Some(p[i + 1..].trim_ascii())
                }
                Some(i) if p[..i].trim_ascii().eq_ignore_ascii_case(b"from-tag") => {
                    from_tag = Some(p[i + 1..].trim_ascii());
                }
                None if p.eq_ignore_ascii_case(b"early-only") => early_only = true,
                _ => {}
            }
        }
        let (Some(to_tag), Some(from_tag)) = (to_tag, from_tag) else {
            self.reply(now, txn, msg, 400, "Bad Replaces header", None, &[], None);
            return;
        };
        if call_id.is_empty() {
            self.reply(now, txn, msg, 400, "Bad Replaces header", None, &[], None);
            return;
        }
        // Authenticated as a user of the caller's tenant (From host), before
        // anything about the named dialog is told.
        let Ok(from) = msg.from_hdr() else { return };
        let cfg = Arc::clone(&self.cfg);
        let retired = Arc::clone(&self.retired);
        let Some(policy) = cfg.tenant(from.uri.host).or_else(|| retired_policy(&retired, from.uri.host)) else {
            self.stats.retrieves_failed.inc();
            self.reply(now, txn, msg, 403, "Not An Extension Of This Tenant", None, &[], None);
            return;
        };
        if !self.admit(now, src, msg, txn, from.uri.host, policy, from.uri.user.unwrap_or_default()) {
            return;
        }
        let found = [(to_tag, from_tag), (from_tag, to_tag)].into_iter().find_map(|(ours, theirs)| {
            let (call, side) = self.find_dialog(call_id, ours)?;
            let c = self.calls.get(&call)?;
            let remote_tag = NameAddr::parse(&c.a.remote).ok()?.tag()?;
            (side == Side::A && remote_tag == theirs).then_some(call)
        });
        let Some(call) = found else {
            self.stats.retrieves_failed.inc();
            self.reply(now, txn, msg, 481, "Call/Transaction Does Not Exist", None, &[], None);
            return;
        };
        let Some(c) = self.calls.get(&call) else { return };
        if early_only || !matches!(c.state, CallState::Parked | CallState::Recalling { .. }) {
            // Confirmed and no longer (or not yet) waiting in the park.
            self.stats.retrieves_failed.inc();
            self.reply(now, txn, msg, 486, "Busy Here", None, &[], None);
            return;
        }
        let Some(e) = self.exts.get(&c.ext) else { return };
        let (tenant, ext) = (e.tenant.clone(), e.ext.clone());
        let same_tenant = msg.from_hdr().is_ok_and(|f| f.uri.host.eq_ignore_ascii_case(tenant.as_bytes()));
        if !same_tenant {
            self.stats.retrieves_failed.inc();
            self.reply(now, txn, msg, 403, "Not An Extension Of This Tenant", None, &[], None);
            return;
        }
        let mut token = Vec::with_capacity(13);
        write_token(&mut token, call);
        self.on_retrieve(now, src, msg, txn, tenant.as_bytes(), ext.as_bytes(), Some(&token));
    }

    /// Whether an out-of-dialog REGISTER or INVITE from `src` for `tenant`,
    /// acting as `user` (the To user of a REGISTER, the From user of an
    /// INVITE), may go on (docs/decisions/0013-digest-auth.md). When not,
    /// it has been answered: 401 with fresh challenges (none or unusable
    /// credentials for this realm, unknown nonce; `stale=true` for an
    /// expired one), 403 (wrong password or unknown user, a user acting as
    /// someone else, a source outside the trusted peers of a tenant with no
    /// credentials), 400 (credentials that cannot be read).
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &mut self,
        now: Instant,
        src: Peer,
        msg: &SipMessage<'_>,
        txn: u64,
        tenant: &[u8],
        policy: &super::config::TenantPolicy,
        user: &[u8],
    ) -> bool {
        match self.cfg.admission(policy, src.addr.ip()) {
            Admission::Trusted | Admission::Open => return true,
            Admission::Refused => {
                self.stats.auth_failures.inc();
                debug!(src = %src.addr, "request from outside the trusted peers refused");
                self.reply(now, txn, msg, 403, "Source Not Trusted", None, &[], None);
                return false;
            }
            Admission::Digest => {}
        }
        let realm = tenant.to_ascii_lowercase();
        let (Some(method), Some(uri)) = (msg.method(), msg.request_uri()) else { return false };
        let req = AuthRequest { method: method.as_bytes(), uri, realm: &realm };
        let unix = self.wall.unix_secs(now);
        let mut stale = false;
        let creds = msg.headers().iter().filter(|h| h.raw_name.eq_ignore_ascii_case(b"Authorization")).take(4);
        for h in creds {
            let verdict = self.auth.verify(h.value, &req, unix, |u| {
                std::str::from_utf8(u).ok().and_then(|u| policy.users.get(u)).map(|p| &*p.0)
            });
            match verdict {
                Verdict::Ok(name) if name == user => return true,
                Verdict::Ok(_) => {
                    self.stats.auth_failures.inc();
                    self.reply(now, txn, msg, 403, "Authenticated As Another User", None, &[], None);
                    return false;
                }
                Verdict::WrongPassword | Verdict::UnknownUser => {
                    self.stats.auth_failures.inc();
                    debug!(src = %src.addr, "digest authentication failed");
                    self.reply(now, txn, msg, 403, "Forbidden", None, &[], None);
                    return false;
                }
                Verdict::Malformed(reason) => {
                    self.reply(now, txn, msg, 400, reason, None, &[], None);
                    return false;
                }
                Verdict::Stale => stale = true,
                Verdict::UnknownNonce | Verdict::WrongRealm => {}
            }
        }
        self.stats.auth_challenges.inc();
        let [sha, md5] = self.auth.challenges(&realm, unix, stale);
        let extra = [("WWW-Authenticate", &sha[..]), ("WWW-Authenticate", &md5[..])];
        self.reply(now, txn, msg, 401, "Unauthorized", None, &extra, None);
        false
    }

    /// `*58`: parks on the first member of the parker's park group that
    /// holds no parked call, in the group's order.
    fn on_group_park(
        &mut self,
        now: Instant,
        src: Peer,
        msg: &SipMessage<'_>,
        txn: u64,
        tenant: &[u8],
        policy: &super::config::TenantPolicy,
    ) {
        let parker = match msg.referred_by() {
            None => {
                self.stats.parks_rejected.inc();
                self.reply(now, txn, msg, 400, "Group Park Needs Referred-By", None, &[], None);
                return;
            }
            Some(Ok(na)) if na.uri.host.eq_ignore_ascii_case(tenant) => na.uri.user.unwrap_or_default(),
            Some(_) => {
                self.stats.parks_rejected.inc();
                self.reply(now, txn, msg, 403, "Not An Extension Of This Tenant", None, &[], None);
                return;
            }
        };
        let Some(group) = policy.group_of(parker) else {
            self.stats.parks_rejected.inc();
            self.reply(now, txn, msg, 404, "Parker Is In No Park Group", None, &[], None);
            return;
        };
        let free = group.iter().find(|m| {
            self.find_ext(tenant, m.as_bytes()).and_then(|id| self.exts.get(&id)).is_none_or(|e| e.calls.is_empty())
        });
        let Some(member) = free else {
            self.stats.parks_rejected.inc();
            self.reply(now, txn, msg, 486, "Park Group Full", None, &[], None);
            return;
        };
        self.on_park(now, src, msg, txn, tenant, member.as_bytes(), policy);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_park(
        &mut self,
        now: Instant,
        src: Peer,
        msg: &SipMessage<'_>,
        txn: u64,
        tenant: &[u8],
        ext: &[u8],
        policy: &super::config::TenantPolicy,
    ) {
        if self.shutting_down {
            self.stats.parks_rejected.inc();
            self.reply(now, txn, msg, 503, "Shutting Down", None, &[], None);
            return;
        }
        let offer = sdp::is_sdp(msg.body());
        if !offer && !msg.body().is_empty() {
            self.stats.parks_rejected.inc();
            self.reply(now, txn, msg, 415, "Unsupported Media Type", None, &[("Accept", b"application/sdp")], None);
            return;
        }
        let Some(target) = first_contact(msg) else {
            self.stats.parks_rejected.inc();
            self.reply(now, txn, msg, 400, "Missing Contact header", None, &[], None);
            return;
        };
        let ext_id = self.ext_id(tenant, ext);
        if !self.room_to_park(now, txn, msg, ext_id, policy) {
            return;
        }
        // Checked readable by `on_request`.
        let Ok(cseq) = msg.cseq() else { return };
        let parker = match msg.referred_by() {
            Some(Ok(rb)) => Some(identity(&rb)),
            _ => None,
        };
        let mut a = self.uas_leg(msg, src, target);
        a.pending_ack = Some((txn, cseq.seq));
        // An offer gets the hold answer; no offer (delayed offer) gets
        // sipark's hold offer, answered in the ACK.
        let mut answer = Vec::with_capacity(msg.body().len() + 32);
        if offer {
            sdp::hold_answer(&mut answer, msg.body(), a.origin, &self.host);
        } else {
            sdp::hold_offer(&mut answer, a.origin, &self.host);
        }
        let id = self.fresh_id();
        let contact = self.contact(src.transport);
        let tag = a.local_tag.clone();
        self.calls.insert(
            id,
            Box::new(Call {
                id,
                ext: ext_id,
                parker,
                parked_at: self.wall.unix_secs(now),
                timeout_secs: policy.park_timeout.as_secs(),
                a,
                state: CallState::Answering { txn, cancelled: false },
                deadline: None,
            }),
        );
        self.add_dialog(id, Side::A);
        if let Some(e) = self.exts.get_mut(&ext_id) {
            e.calls.push(id);
        }
        if let Some(e) = self.server.get_mut(&txn) {
            e.call = Some(id);
        }
        self.reply(
            now,
            txn,
            msg,
            200,
            "OK",
            Some(&tag),
            &[("Contact", &contact), ("Allow", ALLOW)],
            Some(("application/sdp", &answer)),
        );
    }

    /// Whether extension `ext_id` and the shard can take one more parked
    /// call; if not, the request has been answered (486 for a full
    /// extension, 503 at the shard's limits).
    fn room_to_park(
        &mut self,
        now: Instant,
        txn: u64,
        msg: &SipMessage<'_>,
        ext_id: u64,
        policy: &super::config::TenantPolicy,
    ) -> bool {
        let count = self.exts.get(&ext_id).map_or(0, |e| e.calls.len());
        if count >= policy.max_parks_per_ext as usize {
            self.stats.parks_rejected.inc();
            self.reply(now, txn, msg, 486, "Extension Park Full", None, &[], None);
        } else if self.calls.len() >= self.cfg.limits.max_parked || self.dialogs.len() >= self.cfg.limits.max_dialogs {
            self.stats.overload_rejects.inc();
            self.reply(now, txn, msg, 503, "Park Capacity Reached", None, &[("Retry-After", b"30")], None);
        } else {
            return true;
        }
        self.drop_ext_if_idle(ext_id);
        false
    }

    #[allow(clippy::too_many_arguments)]
    fn on_retrieve(
        &mut self,
        now: Instant,
        src: Peer,
        msg: &SipMessage<'_>,
        txn: u64,
        tenant: &[u8],
        ext: &[u8],
        token: Option<&[u8]>,
    ) {
        let ext_id = self.find_ext(tenant, ext);
        let retrievable = |c: &Call| matches!(c.state, CallState::Parked | CallState::Recalling { .. });
        let call_id = ext_id.and_then(|eid| {
            let e = self.exts.get(&eid)?;
            match token {
                Some(t) => {
                    let want = parse_token(t)?;
                    e.calls.iter().copied().find(|c| *c == want && self.calls.get(c).is_some_and(|c| retrievable(c)))
                }
                None => e.calls.iter().copied().find(|c| self.calls.get(c).is_some_and(|c| retrievable(c))),
            }
        });
        let Some(call_id) = call_id else {
            self.stats.retrieves_failed.inc();
            self.reply(now, txn, msg, 404, "No Parked Call", None, &[], None);
            return;
        };
        let delayed = msg.body().is_empty();
        if !delayed && !sdp::is_sdp(msg.body()) {
            self.stats.retrieves_failed.inc();
            self.reply(now, txn, msg, 415, "Unsupported Media Type", None, &[("Accept", b"application/sdp")], None);
            return;
        }
        let Some(target) = first_contact(msg) else {
            self.reply(now, txn, msg, 400, "Missing Contact header", None, &[], None);
            return;
        };
        self.reply(now, txn, msg, 100, "Trying", None, &[], None);
        self.cancel_forks(call_id);
        let b = self.uas_leg(msg, src, target);
        if let Some(e) = self.server.get_mut(&txn) {
            e.request = msg.as_bytes().to_vec();
            e.call = Some(call_id);
        }
        let offer = msg.body();
        let Some(reinvite) = self.reinvite(now, call_id, offer, true, |call| ClientOwner::Retrieve { call }) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&call_id) {
            call.deadline = None;
            let retriever = Box::new(Retriever { txn, leg: b, cancelled: false, delayed, retries: 0 });
            call.state = CallState::Retrieving { retriever, reinvite };
        }
    }

    /// The dialog sipark creates as UAS by answering the INVITE `msg` from
    /// `src` (§12.1.1): a fresh local tag and SDP origin, the route set from
    /// Record-Route, the peer's Contact `target` as remote target.
    fn uas_leg(&mut self, msg: &SipMessage<'_>, src: Peer, target: Box<[u8]>) -> Leg {
        let local_tag = self.new_tag();
        let session = self.random();
        Leg {
            call_id: msg.call_id().unwrap_or_default().into(),
            local_tag,
            local: msg.to_hdr().map(|t| t.raw).unwrap_or_default().into(),
            remote: msg.from_hdr().map(|f| f.raw).unwrap_or_default().into(),
            remote_target: target,
            route_set: msg.record_routes().filter_map(Result::ok).map(|r| r.raw.into()).collect(),
            local_cseq: 0,
            remote_cseq: msg.cseq().map_or(0, |c| c.seq),
            peer: src,
            origin: Origin::new(session),
            last_sdp: Box::default(),
            remote_sdp: msg.body().into(),
            pending_ack: None,
        }
    }

    /// Sends leg A of `call` a re-INVITE carrying `sdp` (rewritten to
    /// sipark's origin for A when `rewrite`). Returns the client transaction.
    fn reinvite(
        &mut self,
        now: Instant,
        call: u64,
        body: &[u8],
        rewrite: bool,
        owner: impl FnOnce(u64) -> ClientOwner,
    ) -> Option<u64> {
        let host = Arc::clone(&self.host);
        let c = self.calls.get_mut(&call)?;
        c.a.origin.version += 1;
        let mut sdp_out = Vec::with_capacity(body.len() + 32);
        if rewrite {
            sdp::rewrite_origin(&mut sdp_out, body, c.a.origin, &host);
        } else {
            sdp_out.extend_from_slice(body);
        }
        c.a.local_cseq += 1;
        let cseq = c.a.local_cseq;
        let owner = owner(call);
        // An empty body asks the parked leg for an offer (delayed offer).
        let body = (!sdp_out.is_empty()).then_some(("application/sdp", sdp_out.as_slice()));
        Some(self.send_in_dialog(now, call, Side::A, "INVITE", cseq, body, owner))
    }

    /// Builds and sends an in-dialog request on `side` of `call`, creating a
    /// client transaction (except for ACK, which returns 0).
    #[allow(clippy::too_many_arguments)]
    fn send_in_dialog(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        method: &str,
        cseq: u32,
        body: Option<(&str, &[u8])>,
        owner: ClientOwner,
    ) -> u64 {
        self.send_in_dialog_with(now, call, side, method, cseq, &[], body, owner)
    }

    /// [`Shard::send_in_dialog`] with extra headers.
    #[allow(clippy::too_many_arguments)]
    fn send_in_dialog_with(
        &mut self,
        now: Instant,
        call: u64,
        side: Side,
        method: &str,
        cseq: u32,
        extra: &[(&str, &[u8])],
        body: Option<(&str, &[u8])>,
        owner: ClientOwner,
    ) -> u64 {
        let txn = self.fresh_id();
        let mut branch = Vec::with_capacity(32);
        write_branch(&mut branch, self.id, txn);
        let Some(c) = self.calls.get(&call) else { return 0 };
        let leg = match (side, &c.state) {
            (Side::A, _) => &c.a,
            (Side::B, CallState::Bridged { b } | CallState::RecallBridging { b, .. }) => b,
            (Side::B, CallState::Retrieving { retriever, .. }) => &retriever.leg,
            _ => return 0,
        };
        let mut out = Vec::with_capacity(800);
        let dst = leg_destination(leg);
        let (via, contact) = (&self.vias[dst.transport.index()], &self.contacts[dst.transport.index()]);
        write_leg_request_with(&mut out, leg, method, cseq, (dst.transport, via), &branch, contact, extra, body);
        self.send(dst, &out);
        if method == "ACK" {
            return 0;
        }
        let kind = if method == "INVITE" { Kind::Invite } else { Kind::NonInvite };
        let t = self.cfg.timers;
        let tx = ClientTxn::new(kind, dst, out, now, &t);
        let at = tx.deadline();
        self.client.insert(txn, ClientEntry { txn: tx, owner, cancel_pending: false });
        self.schedule(at, TimerKey::Client(txn));
        txn
    }

    // ----- ACK, in-dialog requests ---------------------------------------

    fn on_dialog_ack(
        &mut self,
        now: Instant,
        src: Peer,
        msg: &SipMessage<'_>,
        call_id: &[u8],
        to_tag: Option<&[u8]>,
        cseq: u32,
    ) {
        let Some(tag) = to_tag else {
            self.stats.dropped.inc();
            return;
        };
        let Some((call, side)) = self.find_dialog(call_id, tag) else {
            self.stats.dropped.inc();
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else { return };
        let leg = match (side, &mut c.state) {
            (Side::A, _) => &mut c.a,
            (Side::B, CallState::Bridged { b }) => b,
            _ => return,
        };
        leg.peer = src;
        let Some((txn, seq)) = leg.pending_ack else { return };
        if seq != cseq {
            return;
        }
        leg.pending_ack = None;
        // The answer to sipark's offer, when the INVITE had none.
        let answer = sdp::is_sdp(msg.body()).then(|| msg.body());
        if let Some(sdp) = answer
            && leg.remote_sdp.is_empty()
        {
            leg.remote_sdp = sdp.into();
        }
        let no_media = leg.remote_sdp.is_empty();
        let state = match c.state {
            CallState::Answering { cancelled, .. } => Some(cancelled),
            _ => None,
        };
        self.server_acked(now, txn);
        match state {
            Some(true) => {
                info!(call, "park cancelled before its ACK: hanging up");
                self.bye(now, call, Side::A);
                self.forget_call(call);
            }
            Some(false) if no_media => {
                warn!(call, "park ACK brought no SDP answer: hanging up");
                self.stats.parks_rejected.inc();
                self.bye(now, call, Side::A);
                self.forget_call(call);
            }
            Some(false) => self.parked(now, call),
            None if self.relay_acks.get(&call).is_some_and(|r| r.2 == side) => {
                self.relay_ack(call, side, answer);
            }
            None if side == Side::B => self.answer_from_retriever(now, call, answer),
            None => {}
        }
    }

    /// The leg that sent a relayed re-INVITE ACKed our 2xx: ACK the other
    /// leg's 2xx, carrying the answer across when the ACK has one.
    fn relay_ack(&mut self, call: u64, from: Side, answer: Option<&[u8]>) {
        let Some((txn, cseq, _)) = self.relay_acks.remove(&call) else { return };
        let host = Arc::clone(&self.host);
        let to = other_side(from);
        let mut body = Vec::new();
        if let Some(sdp) = answer
            && let Some(c) = self.calls.get_mut(&call)
            && let CallState::Bridged { b } = &mut c.state
        {
            let (x, y) = if from == Side::A { (&mut c.a, &mut **b) } else { (&mut **b, &mut c.a) };
            x.remote_sdp = sdp.into();
            rewrite_for(&mut body, sdp, y, &host);
        }
        let body = (!body.is_empty()).then_some(("application/sdp", body.as_slice()));
        self.ack_2xx_seq(call, to, txn, cseq, body);
    }

    /// A call ends while the parked leg's 2xx still waits for the
    /// retriever's answer: ACK it with a hold answer, so that the BYE that
    /// follows goes on a confirmed dialog.
    fn settle_awaiting(&mut self, call: u64) {
        let Some((reinvite, cseq)) = self.awaiting_answer.remove(&call) else { return };
        let host = Arc::clone(&self.host);
        let Some(c) = self.calls.get_mut(&call) else { return };
        c.a.origin.version += 1;
        let mut hold = Vec::new();
        sdp::hold_answer(&mut hold, &c.a.remote_sdp, c.a.origin, &host);
        let body = (!hold.is_empty()).then_some(("application/sdp", hold.as_slice()));
        self.ack_2xx_seq(call, Side::A, reinvite, cseq, body);
    }

    /// The retriever's ACK arrived. After a delayed-offer retrieve it
    /// carries the answer to the parked leg's offer: ACK the parked leg's
    /// 2xx with it. Without an answer, the session cannot be set up: both
    /// legs are hung up.
    fn answer_from_retriever(&mut self, now: Instant, call: u64, answer: Option<&[u8]>) {
        let Some(&(reinvite, cseq)) = self.awaiting_answer.get(&call) else { return };
        let host = Arc::clone(&self.host);
        let Some(c) = self.calls.get_mut(&call) else { return };
        let CallState::Bridged { b } = &mut c.state else { return };
        let Some(answer) = answer else {
            warn!(call, "delayed-offer retrieve: the ACK brought no SDP answer; hanging up");
            self.bye(now, call, Side::A);
            self.bye(now, call, Side::B);
            self.forget_call(call);
            return;
        };
        self.awaiting_answer.remove(&call);
        b.remote_sdp = answer.into();
        let mut to_a = Vec::with_capacity(answer.len() + 32);
        sdp::rewrite_origin(&mut to_a, answer, c.a.origin, &host);
        c.a.last_sdp = to_a.as_slice().into();
        self.ack_2xx_seq(call, Side::A, reinvite, cseq, Some(("application/sdp", &to_a)));
    }

    /// The park INVITE's 2xx was ACKed: the call is parked.
    fn parked(&mut self, now: Instant, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        if self.shutting_down {
            // Accepted just before shutdown: hang up without ever listing it.
            self.bye(now, call, Side::A);
            self.forget_call(call);
            return;
        }
        c.state = CallState::Parked;
        self.listed += 1;
        let timeout = Duration::from_secs(c.timeout_secs);
        c.deadline = Some(now + timeout);
        let deadline = c.deadline;
        let ext = c.ext;
        self.schedule(deadline, TimerKey::Call(call));
        self.stats.parks.inc();
        if let (Some(c), Some(e)) = (self.calls.get(&call), self.exts.get(&ext)) {
            let mut token = Vec::new();
            write_token(&mut token, c.id);
            info!(
                tenant = %e.tenant,
                extension = %e.ext,
                call = %String::from_utf8_lossy(&token),
                parked = %String::from_utf8_lossy(c.parked().uri),
                parker = %c.parker.as_ref().map_or("unknown".into(), |p| String::from_utf8_lossy(&p.uri)),
                "call parked"
            );
        }
        self.ext_changed(now, ext, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_in_dialog(
        &mut self,
        now: Instant,
        src: Peer,
        msg: &SipMessage<'_>,
        method: Method<'_>,
        txn: u64,
        call_id: &[u8],
        tag: &[u8],
        cseq: u32,
    ) {
        let Some((call, side)) = self.find_dialog(call_id, tag) else {
            self.reply(now, txn, msg, 481, "Call/Transaction Does Not Exist", None, &[], None);
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            self.reply(now, txn, msg, 481, "Call/Transaction Does Not Exist", None, &[], None);
            return;
        };
        let bridged = matches!(c.state, CallState::Bridged { .. });
        let leg = match (side, &mut c.state) {
            (Side::A, _) => &mut c.a,
            (Side::B, CallState::Bridged { b }) => b,
            _ => {
                self.reply(now, txn, msg, 481, "Call/Transaction Does Not Exist", None, &[], None);
                return;
            }
        };
        if cseq < leg.remote_cseq {
            self.reply(now, txn, msg, 500, "CSeq Out of Order", None, &[], None);
            return;
        }
        // A BYE while our 2xx still waits for its ACK: the ACK was lost but
        // the peer has moved on, so stop resending the 2xx.
        let lost_ack = if method == Method::Bye { leg.pending_ack.take() } else { None };
        leg.remote_cseq = cseq;
        leg.peer = src;
        if let Some((pending, _)) = lost_ack {
            self.server_acked(now, pending);
        }
        match method {
            Method::Bye => {
                self.reply(now, txn, msg, 200, "OK", None, &[], None);
                self.on_bye(now, call, side);
            }
            Method::Refer if bridged => self.on_refer(now, msg, txn, call, side),
            Method::Invite | Method::Update | Method::Info | Method::Notify if bridged => {
                self.relay_request(now, msg, method, txn, call, side);
            }
            Method::Refer => self.reply(now, txn, msg, 403, "Call Is Not Bridged", None, &[], None),
            Method::Invite | Method::Update => self.on_reoffer(now, msg, method, txn, call, side),
            Method::Info | Method::Options => self.reply(now, txn, msg, 200, "OK", None, &[], None),
            _ => self.reply(now, txn, msg, 405, "Method Not Allowed", None, &[("Allow", ALLOW)], None),
        }
    }

    /// A REFER on a bridged call. To the park feature code of the call's
    /// tenant (`*68<ext>`, or `*68` alone for the referrer's own extension):
    /// the other leg is parked on that extension at once, with no new
    /// INVITE (it is re-INVITEd to hold), and the REFER is answered 202 and
    /// reported in sipfrag NOTIFYs (RFC 3515): `100 Trying`, then `200 OK`
    /// (or the error), subscription terminated. The referrer's leg then
    /// waits for its BYE. Any other REFER is relayed to the other leg.
    fn on_refer(&mut self, now: Instant, msg: &SipMessage<'_>, txn: u64, call: u64, from: Side) {
        let Some(Ok(refer_to)) = msg.refer_to() else {
            self.reply(now, txn, msg, 400, "Bad Refer-To header", None, &[], None);
            return;
        };
        let cfg = Arc::clone(&self.cfg);
        let Some(rest) = refer_to.uri.user.and_then(|u| u.strip_prefix(cfg.park_fac.as_bytes())) else {
            self.relay_request(now, msg, Method::Refer, txn, call, from);
            return;
        };
        let Some(c) = self.calls.get(&call) else { return };
        let Some(tenant) = self.exts.get(&c.ext).map(|e| e.tenant.clone()) else { return };
        let policy = cfg.tenant(tenant.as_bytes());
        let (Some(policy), true) = (policy, refer_to.uri.host.eq_ignore_ascii_case(tenant.as_bytes())) else {
            self.stats.parks_rejected.inc();
            self.reply(now, txn, msg, 403, "Not An Extension Of This Tenant", None, &[], None);
            return;
        };
        // The referrer: Referred-By when it is of this tenant, else the peer of its leg.
        let referrer_leg = match (from, &c.state) {
            (Side::A, _) => &c.a,
            (Side::B, CallState::Bridged { b }) => &**b,
            _ => return,
        };
        let parker = match msg.referred_by() {
            Some(Ok(rb)) if rb.uri.host.eq_ignore_ascii_case(tenant.as_bytes()) => identity(&rb),
            _ => match NameAddr::parse(&referrer_leg.remote) {
                Ok(na) => Identity { uri: na.uri.raw.into(), display: None },
                Err(_) => Identity { uri: referrer_leg.remote.clone(), display: None },
            },
        };
        let ext: Vec<u8> = if names_own_extension(rest) {
            match Uri::parse(&parker.uri).ok().filter(|u| u.host.eq_ignore_ascii_case(tenant.as_bytes())) {
                Some(Uri { user: Some(u), .. }) if valid_ext(u) => u.to_vec(),
                _ => {
                    self.reply(now, txn, msg, 404, "Own Extension Unknown", None, &[], None);
                    return;
                }
            }
        } else if valid_ext(rest) {
            rest.to_vec()
        } else {
            self.reply(now, txn, msg, 404, "Not Found", None, &[], None);
            return;
        };
        if self.shutting_down {
            self.reply(now, txn, msg, 503, "Shutting Down", None, &[], None);
            return;
        }
        if self.offers.contains_key(&call) || self.relay_acks.contains_key(&call) {
            // An offer/answer exchange is under way on the bridge.
            self.reply(now, txn, msg, 491, "Request Pending", None, &[], None);
            return;
        }
        let ext_id = self.ext_id(tenant.as_bytes(), &ext);
        if !self.room_to_park(now, txn, msg, ext_id, policy) {
            return;
        }
        let contact = self.server.get(&txn).map(|e| self.contact(e.txn.dst.transport));
        let extra: Vec<(&str, &[u8])> = contact.iter().map(|c| ("Contact", &c[..])).collect();
        self.reply(now, txn, msg, 202, "Accepted", None, &extra, None);

        // Split the bridge: the other leg becomes the parked leg (A) of a
        // new call; the referrer's leg becomes a call of its own that only
        // waits for its BYE.
        let Some(mut c) = self.calls.remove(&call) else { return };
        let CallState::Bridged { b } = std::mem::replace(&mut c.state, CallState::Referrer) else {
            self.calls.insert(call, c);
            return;
        };
        self.remove_dialog(call, Side::A, &c.a);
        self.remove_dialog(call, Side::B, &b);
        self.bridged = self.bridged.saturating_sub(1);
        let (referrer, parked) = if from == Side::A { (std::mem::replace(&mut c.a, *b), c.a) } else { (*b, c.a) };
        let (park_id, ref_id) = (self.fresh_id(), self.fresh_id());
        let old_ext = c.ext;
        self.calls.insert(
            park_id,
            Box::new(Call {
                id: park_id,
                ext: ext_id,
                parker: Some(parker),
                parked_at: self.wall.unix_secs(now),
                timeout_secs: policy.park_timeout.as_secs(),
                a: parked,
                state: CallState::Answering { txn: 0, cancelled: false },
                deadline: None,
            }),
        );
        self.add_dialog(park_id, Side::A);
        if let Some(e) = self.exts.get_mut(&ext_id) {
            e.calls.push(park_id);
        }
        let deadline = now + REFERRER_LINGER;
        self.calls.insert(
            ref_id,
            Box::new(Call {
                id: ref_id,
                ext: old_ext,
                parker: None,
                parked_at: self.wall.unix_secs(now),
                timeout_secs: 0,
                a: referrer,
                state: CallState::Referrer,
                deadline: Some(deadline),
            }),
        );
        self.add_dialog(ref_id, Side::A);
        self.schedule(Some(deadline), TimerKey::Call(ref_id));
        self.drop_ext_if_idle(old_ext);
        self.parked(now, park_id);
        // The parked leg stops sending media to the referrer: hold.
        if let Some(c) = self.calls.get(&park_id) {
            let mut origin = c.a.origin;
            origin.version += 1;
            let mut hold = Vec::new();
            if sdp::hold_answer(&mut hold, &c.a.remote_sdp, origin, &self.host) {
                self.reinvite(now, park_id, &hold, false, |call| ClientOwner::Rehold { call });
            }
        }
        for (frag, state) in [
            (&b"SIP/2.0 100 Trying\r\n"[..], &b"active;expires=60"[..]),
            (b"SIP/2.0 200 OK\r\n", b"terminated;reason=noresource"),
        ] {
            let Some(leg) = self.calls.get_mut(&ref_id).map(|c| &mut c.a) else { return };
            leg.local_cseq += 1;
            let cseq = leg.local_cseq;
            let extra = [("Event", &b"refer"[..]), ("Subscription-State", state)];
            let body = Some(("message/sipfrag;version=2.0", frag));
            self.send_in_dialog_with(now, ref_id, Side::A, "NOTIFY", cseq, &extra, body, ClientOwner::Detached);
        }
    }

    /// Relays a re-INVITE, UPDATE or INFO from the bridged leg `from` to
    /// the other leg, with that leg's own CSeq numbering, rewriting an SDP
    /// offer to sipark's origin towards it. The answer comes back in
    /// [`Shard::relay_answered`]. A second offer while one is in progress,
    /// from either side, is glare: 491, and the sender retries after the
    /// §14.1 delay.
    fn relay_request(
        &mut self,
        now: Instant,
        msg: &SipMessage<'_>,
        method: Method<'_>,
        txn: u64,
        call: u64,
        from: Side,
    ) {
        let offer = matches!(method, Method::Invite | Method::Update);
        if offer && (self.offers.contains_key(&call) || self.relay_acks.contains_key(&call)) {
            self.reply(now, txn, msg, 491, "Request Pending", None, &[], None);
            return;
        }
        let host = Arc::clone(&self.host);
        let to = other_side(from);
        let Some(c) = self.calls.get_mut(&call) else { return };
        let CallState::Bridged { b } = &mut c.state else { return };
        let (x, y) = if from == Side::A { (&mut c.a, &mut **b) } else { (&mut **b, &mut c.a) };
        if offer && let Some(target) = first_contact(msg) {
            x.remote_target = target;
        }
        let mut body = Vec::new();
        let ctype = if sdp::is_sdp(msg.body()) {
            rewrite_for(&mut body, msg.body(), y, &host);
            "application/sdp"
        } else {
            body.extend_from_slice(msg.body());
            msg.content_type().and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("application/octet-stream")
        };
        y.local_cseq += 1;
        let cseq = y.local_cseq;
        let kept: Vec<(&str, Vec<u8>)> = RELAYED_HEADERS
            .iter()
            .filter_map(|name| msg.header_raw(name.as_bytes()).map(|v| (*name, v.to_vec())))
            .collect();
        if method == Method::Invite {
            self.reply(now, txn, msg, 100, "Trying", None, &[], None);
        }
        if let Some(e) = self.server.get_mut(&txn) {
            e.request = msg.as_bytes().to_vec();
            e.call = Some(call);
        }
        let extra: Vec<(&str, &[u8])> = kept.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        let body = (!body.is_empty()).then_some((ctype, body.as_slice()));
        let name = std::str::from_utf8(method.as_bytes()).unwrap_or("INFO");
        let ctxn = self.send_in_dialog_with(now, call, to, name, cseq, &extra, body, ClientOwner::Relay { call });
        self.relays.insert(ctxn, Relay { server: txn, from, offer });
        if offer {
            self.offers.insert(call, ctxn);
        }
    }

    /// The final answer to a relayed request (`code` 0: it timed out):
    /// sent back to the leg the request came from, with an SDP answer
    /// rewritten to sipark's origin towards it. A re-INVITE's 2xx is ACKed
    /// once that leg ACKs ours, so that an answer in its ACK (the re-INVITE
    /// had no offer) goes across.
    fn relay_answered(&mut self, now: Instant, call: u64, txn: u64, code: u16, msg: Option<&SipMessage<'_>>) {
        let Some(relay) = self.relays.remove(&txn) else { return };
        if self.offers.get(&call) == Some(&txn) {
            self.offers.remove(&call);
        }
        let cseq = self.request_cseq(txn);
        let host = Arc::clone(&self.host);
        let invite = self.client.get(&txn).is_some_and(|e| e.txn.kind == Kind::Invite);
        let Some(msg) = msg else {
            self.reply_later(now, relay.server, 408, "Request Timeout", None, &[], None);
            return;
        };
        let reason = match msg.start_line() {
            StartLine::Response { reason, .. } => String::from_utf8_lossy(reason).into_owned(),
            StartLine::Request { .. } => String::new(),
        };
        let offered = self
            .server
            .get(&relay.server)
            .and_then(|e| SipMessage::parse(&e.request).ok().map(|r| r.body().to_vec()))
            .unwrap_or_default();
        let Some(c) = self.calls.get_mut(&call) else {
            self.reply_later(now, relay.server, 481, "Call/Transaction Does Not Exist", None, &[], None);
            return;
        };
        let CallState::Bridged { b } = &mut c.state else {
            self.reply_later(now, relay.server, 481, "Call/Transaction Does Not Exist", None, &[], None);
            return;
        };
        let (x, y) = if relay.from == Side::A { (&mut c.a, &mut **b) } else { (&mut **b, &mut c.a) };
        let mut body = Vec::new();
        let mut ctype = "";
        if (200..300).contains(&code) {
            if relay.offer
                && let Some(target) = first_contact(msg)
            {
                y.remote_target = target;
            }
            if sdp::is_sdp(msg.body()) {
                y.remote_sdp = msg.body().into();
                rewrite_for(&mut body, msg.body(), x, &host);
                ctype = "application/sdp";
            } else if !msg.body().is_empty() {
                body.extend_from_slice(msg.body());
                ctype = msg.content_type().and_then(|t| std::str::from_utf8(t).ok()).unwrap_or("");
            }
            if relay.offer && sdp::is_sdp(&offered) {
                x.remote_sdp = offered.into();
            }
            if invite {
                x.pending_ack = Some((relay.server, x.remote_cseq));
                if let Some(cseq) = cseq {
                    self.relay_acks.insert(call, (txn, cseq, relay.from));
                }
            }
        }
        let transport = x.peer.transport;
        let contact = self.contact(transport);
        let extra: &[(&str, &[u8])] =
            if relay.offer && (200..300).contains(&code) { &[("Contact", &contact)] } else { &[] };
        let body = (!body.is_empty()).then_some((ctype, body.as_slice()));
        let reason = if reason.is_empty() { "Relayed" } else { reason.as_str() };
        self.reply_later(now, relay.server, code, reason, None, extra, body);
    }

    /// A re-INVITE or UPDATE from a leg. While parked the answer is hold;
    /// once bridged the session is kept as it is (relaying offers between
    /// the legs is the call-control work of a later issue).
    fn on_reoffer(&mut self, now: Instant, msg: &SipMessage<'_>, method: Method<'_>, txn: u64, call: u64, side: Side) {
        let host = Arc::clone(&self.host);
        let Some(c) = self.calls.get_mut(&call) else { return };
        let busy = matches!(
            (&c.state, side),
            (CallState::Retrieving { .. } | CallState::RecallBridging { .. } | CallState::Answering { .. }, _)
        );
        if busy {
            self.reply(now, txn, msg, 491, "Request Pending", None, &[("Retry-After", b"1")], None);
            return;
        }
        let leg = match (side, &mut c.state) {
            (Side::A, _) => &mut c.a,
            (Side::B, CallState::Bridged { b }) => b,
            _ => return,
        };
        if let Some(target) = first_contact(msg) {
            leg.remote_target = target;
        }
        let parked = matches!(c.state, CallState::Parked | CallState::Recalling { .. });
        let leg = match (side, &mut c.state) {
            (Side::A, _) => &mut c.a,
            (Side::B, CallState::Bridged { b }) => b,
            _ => return,
        };
        if sdp::is_sdp(msg.body()) {
            leg.remote_sdp = msg.body().into();
            if parked {
                leg.origin.version += 1;
            }
        }
        if method == Method::Invite {
            leg.pending_ack = Some((txn, leg.remote_cseq));
        }
        // A parked leg is answered with its hold SDP, derived afresh; a
        // bridged one with the last SDP sipark sent it.
        let answer: Vec<u8> = if parked {
            let mut hold = Vec::with_capacity(leg.remote_sdp.len() + 32);
            if !sdp::hold_answer(&mut hold, &leg.remote_sdp, leg.origin, &host) {
                hold.clear();
            }
            hold
        } else {
            leg.last_sdp.to_vec()
        };
        let transport = leg.peer.transport;
        let body = (!answer.is_empty()).then_some(("application/sdp", answer.as_slice()));
        let contact = self.contact(transport);
        self.reply(now, txn, msg, 200, "OK", None, &[("Contact", &contact)], body);
    }

    fn on_bye(&mut self, now: Instant, call: u64, side: Side) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        match &c.state {
            CallState::Answering { .. } => {
                self.forget_call(call);
            }
            CallState::Parked | CallState::Recalling { .. } => {
                self.cancel_forks(call);
                self.stats.hangups.inc();
                self.leave_park(now, call, LeaveReason::Hangup, false);
            }
            CallState::Retrieving { retriever, .. } => {
                let rtxn = retriever.txn;
                self.reply_later(now, rtxn, 480, "Parked Party Hung Up", None, &[], None);
                self.stats.hangups.inc();
                self.leave_park(now, call, LeaveReason::Hangup, false);
            }
            CallState::RecallBridging { .. } | CallState::Bridged { .. } => {
                let other = if side == Side::A { Side::B } else { Side::A };
                self.bye(now, call, other);
                self.forget_call(call);
            }
            CallState::Referrer => self.forget_call(call),
        }
    }

    /// Sends BYE on `side` of `call`.
    fn bye(&mut self, now: Instant, call: u64, side: Side) {
        if side == Side::A {
            // A 2xx of the parked leg still waiting for the retriever's
            // answer is ACKed first, so the BYE is on a confirmed dialog.
            self.settle_awaiting(call);
        }
        let Some(c) = self.calls.get_mut(&call) else { return };
        let leg = match (side, &mut c.state) {
            (Side::A, _) => &mut c.a,
            (Side::B, CallState::Bridged { b } | CallState::RecallBridging { b, .. }) => b,
            (Side::B, CallState::Retrieving { retriever, .. }) => &mut retriever.leg,
            _ => return,
        };
        leg.local_cseq += 1;
        let cseq = leg.local_cseq;
        self.send_in_dialog(now, call, side, "BYE", cseq, None, ClientOwner::Detached);
    }

    /// Removes `call` and its dialogs, without any signalling.
    fn forget_call(&mut self, call: u64) {
        self.settle_awaiting(call);
        self.offers.remove(&call);
        self.relay_acks.remove(&call);
        let Some(c) = self.calls.remove(&call) else { return };
        if let CallState::Bridged { .. } = c.state {
            self.bridged = self.bridged.saturating_sub(1);
        }
        self.remove_dialog(call, Side::A, &c.a);
        if let CallState::Bridged { b } | CallState::RecallBridging { b, .. } = &c.state {
            self.remove_dialog(call, Side::B, b);
        }
        if let Some(e) = self.exts.get_mut(&c.ext) {
            e.calls.retain(|x| *x != call);
        }
        self.drop_ext_if_idle(c.ext);
    }

    /// `call` leaves the park for `reason`: optionally BYE leg A, NOTIFY the
    /// extension, forget the call.
    fn leave_park(&mut self, now: Instant, call: u64, reason: LeaveReason, bye_a: bool) {
        let Some(c) = self.calls.get(&call) else { return };
        let listed = c.state.listed();
        let ext = c.ext;
        if bye_a {
            self.bye(now, call, Side::A);
        }
        if listed {
            self.depart(now, call, ext, reason);
        }
        self.forget_call(call);
    }

    /// `call` leaves the list of extension `ext`: log it, and NOTIFY the
    /// new state with the call shown once as terminated. The call itself
    /// stays (bridged, or about to be forgotten by the caller).
    fn depart(&mut self, now: Instant, call: u64, ext: u64, reason: LeaveReason) {
        self.listed = self.listed.saturating_sub(1);
        self.log_leave(call, reason);
        if let Some(e) = self.exts.get_mut(&ext) {
            e.calls.retain(|x| *x != call);
        }
        self.ext_changed(now, ext, Some((call, reason)));
        self.drop_ext_if_idle(ext);
    }

    fn log_leave(&self, call: u64, reason: LeaveReason) {
        let Some(c) = self.calls.get(&call) else { return };
        let Some(e) = self.exts.get(&c.ext) else { return };
        let mut token = Vec::new();
        write_token(&mut token, c.id);
        info!(
            tenant = %e.tenant,
            extension = %e.ext,
            call = %String::from_utf8_lossy(&token),
            reason = reason.as_str(),
            "call left the park"
        );
    }

    // ----- responses ------------------------------------------------------

    fn on_response(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>) {
        let Some(id) = msg.top_via().ok().and_then(|v| v.branch).and_then(branch_id) else {
            self.stats.dropped.inc();
            return;
        };
        if msg.cseq().is_ok_and(|c| c.method == Method::Cancel) {
            // The answer to one of sipark's CANCELs (same branch as the
            // INVITE); the INVITE's own 487 is what matters.
            return;
        }
        let (Some(code), Some(entry)) = (msg.status(), self.client.get_mut(&id)) else {
            self.stats.dropped.inc();
            return;
        };
        let t = self.cfg.timers;
        let before = entry.txn.deadline();
        let effect = entry.txn.on_response(now, code, &t);
        let (after, lingering) = (entry.txn.deadline(), entry.txn.lingering());
        let owner = entry.owner;
        self.schedule_txn(now, TimerKey::Client(id), before, after, lingering);
        match effect {
            ResponseEffect::Retransmission => self.resend_request(id, true),
            ResponseEffect::Provisional { .. } => {
                if self.client.get(&id).is_some_and(|e| e.cancel_pending) {
                    if let Some(e) = self.client.get_mut(&id) {
                        e.cancel_pending = false;
                    }
                    self.cancel(id);
                }
            }
            ResponseEffect::Final => {
                let is_invite = self.client.get(&id).is_some_and(|e| e.txn.kind == Kind::Invite);
                if is_invite && code >= 300 {
                    self.ack_non_2xx(id, msg);
                }
                self.client_final(now, src, id, owner, code, msg);
                // Only a recall branch's request is read again (to end a
                // branch whose 2xx comes too late); the others linger
                // without theirs.
                if !matches!(owner, ClientOwner::Recall { .. })
                    && let Some(e) = self.client.get_mut(&id)
                {
                    e.txn.request = Vec::new();
                }
            }
        }
    }

    /// ACK for a non-2xx final response: same branch, part of the INVITE
    /// transaction (§17.1.1.3).
    fn ack_non_2xx(&mut self, id: u64, resp: &SipMessage<'_>) {
        let Some(e) = self.client.get_mut(&id) else { return };
        let Ok(req) = SipMessage::parse(&e.txn.request) else { return };
        let (Some(uri), Some(via), Some(from), Ok(call_id), Ok(cseq), Some(to)) = (
            req.request_uri(),
            req.header(HeaderName::Via),
            req.header(HeaderName::From),
            req.call_id(),
            req.cseq(),
            resp.header(HeaderName::To),
        ) else {
            return;
        };
        let mut ack = Vec::with_capacity(400);
        ack.extend_from_slice(b"ACK ");
        ack.extend_from_slice(uri);
        ack.extend_from_slice(b" SIP/2.0\r\n");
        header(&mut ack, "Via", via);
        header(&mut ack, "Max-Forwards", b"70");
        for r in req.routes().filter_map(Result::ok) {
            header(&mut ack, "Route", r.raw);
        }
        header(&mut ack, "From", from);
        header(&mut ack, "To", to);
        header(&mut ack, "Call-ID", call_id);
        let mut cs = Vec::new();
        let _ = std::io::Write::write_fmt(&mut cs, format_args!("{} ACK", cseq.seq));
        header(&mut ack, "CSeq", &cs);
        finish(&mut ack, "", b"");
        let dst = e.txn.dst;
        e.txn.ack.clone_from(&ack);
        self.send(dst, &ack);
    }

    fn client_final(&mut self, now: Instant, src: Peer, id: u64, owner: ClientOwner, code: u16, msg: &SipMessage<'_>) {
        match owner {
            ClientOwner::Notify => {
                if code >= 300 {
                    self.stats.notifies_failed.inc();
                    if matches!(code, 481 | 489 | 501) {
                        warn!(code, peer = %src, "device refused park-info NOTIFY");
                    }
                }
            }
            ClientOwner::Detached => {}
            ClientOwner::Rehold { call } => {
                if (200..300).contains(&code) {
                    self.ack_2xx(call, Side::A, id, None);
                }
            }
            ClientOwner::Retrieve { call } => self.retrieve_answered(now, call, id, code, msg),
            ClientOwner::Recall { call } => self.recall_answered(now, src, call, id, code, msg),
            ClientOwner::RecallBridge { call } => self.recall_bridged(now, call, id, code, msg),
            ClientOwner::Relay { call } => self.relay_answered(now, call, id, code, Some(msg)),
        }
    }

    /// ACKs a 2xx on `side` of `call` for the INVITE of client transaction
    /// `txn`, keeping the ACK for 2xx retransmissions.
    fn ack_2xx(&mut self, call: u64, side: Side, txn: u64, body: Option<(&str, &[u8])>) {
        let Some(cseq) = self.request_cseq(txn) else { return };
        self.ack_2xx_seq(call, side, txn, cseq, body);
    }

    /// The CSeq number of client transaction `txn`'s request, while the
    /// request is still kept.
    fn request_cseq(&self, txn: u64) -> Option<u32> {
        self.client.get(&txn).and_then(|e| SipMessage::parse(&e.txn.request).ok()?.cseq().ok().map(|c| c.seq))
    }

    /// [`Shard::ack_2xx`] for an INVITE whose CSeq was `cseq`.
    fn ack_2xx_seq(&mut self, call: u64, side: Side, txn: u64, cseq: u32, body: Option<(&str, &[u8])>) {
        let Some(c) = self.calls.get(&call) else { return };
        let leg = match (side, &c.state) {
            (Side::A, _) => &c.a,
            (Side::B, CallState::Bridged { b } | CallState::RecallBridging { b, .. }) => b,
            _ => return,
        };
        let mut branch = Vec::with_capacity(32);
        let ack_id = self.next_id + 1;
        write_branch(&mut branch, self.id, ack_id);
        self.next_id += 1;
        let mut out = Vec::with_capacity(600);
        let dst = leg_destination(leg);
        let (via, contact) = (&self.vias[dst.transport.index()], &self.contacts[dst.transport.index()]);
        write_leg_request(&mut out, leg, "ACK", cseq, (dst.transport, via), &branch, contact, body);
        self.send(dst, &out);
        if let Some(e) = self.client.get_mut(&txn) {
            e.txn.ack = out;
        }
    }

    fn retrieve_answered(&mut self, now: Instant, call: u64, txn: u64, code: u16, msg: &SipMessage<'_>) {
        let Some(c) = self.calls.get(&call) else {
            if (200..300).contains(&code) {
                // The call went away meanwhile: nothing to bridge.
            }
            return;
        };
        let CallState::Retrieving { retriever, reinvite } = &c.state else { return };
        if *reinvite != txn {
            return;
        }
        let (rtxn, cancelled, delayed, retries) =
            (retriever.txn, retriever.cancelled, retriever.delayed, retriever.retries);
        if (200..300).contains(&code) {
            let has_sdp = sdp::is_sdp(msg.body());
            if let Some(c) = self.calls.get_mut(&call) {
                if let Some(target) = first_contact(msg) {
                    c.a.remote_target = target;
                }
                if has_sdp {
                    c.a.remote_sdp = msg.body().into();
                }
            }
            if delayed && (cancelled || !has_sdp) {
                // The parked leg offered (or failed to): answer with hold
                // in the ACK, and it stays parked.
                let host = Arc::clone(&self.host);
                let mut hold = Vec::new();
                if let Some(c) = self.calls.get_mut(&call) {
                    c.a.origin.version += 1;
                    sdp::hold_answer(&mut hold, &c.a.remote_sdp, c.a.origin, &host);
                }
                let body = (!hold.is_empty()).then_some(("application/sdp", hold.as_slice()));
                self.ack_2xx(call, Side::A, txn, body);
                if !has_sdp {
                    self.reply_later(now, rtxn, 488, "Parked Party Made No Offer", None, &[], None);
                }
                self.back_to_parked(now, call);
                self.stats.retrieves_failed.inc();
                return;
            }
            if !delayed {
                self.ack_2xx(call, Side::A, txn, None);
            }
            if cancelled {
                // The retriever gave up: put the parked leg back on hold.
                self.back_to_parked(now, call);
                let remote = self.calls.get(&call).map(|c| c.a.remote_sdp.clone()).unwrap_or_default();
                let host = Arc::clone(&self.host);
                if let Some(c) = self.calls.get_mut(&call) {
                    let mut hold = Vec::new();
                    let mut origin = c.a.origin;
                    origin.version += 1;
                    if sdp::hold_answer(&mut hold, &remote, origin, &host) {
                        self.reinvite(now, call, &hold, false, |call| ClientOwner::Rehold { call });
                    }
                }
                self.stats.retrieves_failed.inc();
                return;
            }
            let host = Arc::clone(&self.host);
            let delayed_cseq = if delayed { self.request_cseq(txn) } else { None };
            let Some(c) = self.calls.get_mut(&call) else { return };
            let CallState::Retrieving { retriever, .. } = std::mem::replace(&mut c.state, CallState::Parked) else {
                return;
            };
            let mut b = retriever.leg;
            let contact = Arc::clone(&self.contacts[b.peer.transport.index()]);
            b.origin.version += 1;
            // Delayed offer: `b.remote_sdp` is empty, so only the parked
            // leg's offer goes to the retriever; the answer comes in its ACK.
            let answer = bridge_sdp(&mut c.a, &mut b, msg.body(), &host);
            if let Some(cseq) = delayed_cseq {
                self.awaiting_answer.insert(call, (txn, cseq));
            }
            let tag = b.local_tag.clone();
            b.pending_ack = Some((rtxn, b.remote_cseq));
            let ext = c.ext;
            c.state = CallState::Bridged { b: Box::new(b) };
            self.bridged += 1;
            c.deadline = Some(now + self.cfg.limits.max_call_duration);
            let at = c.deadline;
            self.schedule(at, TimerKey::Call(call));
            self.add_dialog(call, Side::B);
            self.stats.retrieves.inc();
            self.depart(now, call, ext, LeaveReason::Retrieved);
            self.reply_later(
                now,
                rtxn,
                200,
                "OK",
                Some(&tag),
                &[("Contact", &contact), ("Allow", ALLOW)],
                Some(("application/sdp", &answer)),
            );
            self.drop_ext_if_idle(ext);
        } else if code == 491 && !cancelled && retries < MAX_GLARE_RETRIES {
            // Glare with a re-INVITE of the parked party's: try again after
            // the §14.1 delay. sipark does not own the parked leg's
            // Call-ID, so the delay is 0 to 2 s in 10 ms steps.
            let delay = Duration::from_millis(10 * (self.random() % 201));
            let Some(c) = self.calls.get_mut(&call) else { return };
            if let CallState::Retrieving { retriever, .. } = &mut c.state {
                retriever.retries += 1;
            }
            c.deadline = Some(now + delay);
            let at = c.deadline;
            self.schedule(at, TimerKey::Call(call));
        } else {
            self.stats.retrieves_failed.inc();
            let gone = matches!(code, 408 | 481) || code == 0;
            if gone {
                self.reply_later(now, rtxn, 480, "Parked Party Unavailable", None, &[], None);
                self.stats.hangups.inc();
                self.leave_park(now, call, LeaveReason::Hangup, false);
            } else {
                let reason = if code == 491 { "Request Pending" } else { "Parked Party Refused" };
                let answer = if code == 491 { 491 } else { 480 };
                self.reply_later(now, rtxn, answer, reason, None, &[], None);
                self.back_to_parked(now, call);
            }
        }
    }

    /// The §14.1 delay after a 491 passed: send the retrieve re-INVITE
    /// again, with the retriever's offer (none for a delayed offer).
    fn retry_retrieve(&mut self, now: Instant, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        c.deadline = None;
        let CallState::Retrieving { retriever, .. } = &c.state else { return };
        if retriever.cancelled {
            let rtxn = retriever.txn;
            self.reply_later(now, rtxn, 487, "Request Terminated", None, &[], None);
            self.back_to_parked(now, call);
            return;
        }
        let offer = retriever.leg.remote_sdp.clone();
        let Some(reinvite) = self.reinvite(now, call, &offer, true, |call| ClientOwner::Retrieve { call }) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(&call)
            && let CallState::Retrieving { reinvite: r, .. } = &mut c.state
        {
            *r = reinvite;
        }
    }

    /// A retrieve failed or was abandoned: the call is parked again, with
    /// a fresh park timeout.
    fn back_to_parked(&mut self, now: Instant, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        c.state = CallState::Parked;
        c.deadline = Some(now + Duration::from_secs(c.timeout_secs));
        let at = c.deadline;
        self.schedule(at, TimerKey::Call(call));
    }

    // ----- recall ---------------------------------------------------------

    fn call_timer(&mut self, now: Instant, call: u64, at: Instant) {
        let Some(c) = self.calls.get(&call) else { return };
        if c.deadline != Some(at) {
            return;
        }
        match c.state {
            CallState::Parked => self.start_recall(now, call),
            CallState::Bridged { .. } => {
                warn!(call, "bridged call reached the maximum call duration: hanging up both legs");
                self.bye(now, call, Side::A);
                self.bye(now, call, Side::B);
                self.forget_call(call);
            }
            CallState::Recalling { ref recall } if recall.group_at.is_some() => self.recall_group_joins(now, call),
            CallState::Retrieving { .. } => self.retry_retrieve(now, call),
            CallState::Referrer => {
                self.bye(now, call, Side::A);
                self.forget_call(call);
            }
            CallState::Recalling { .. } => {
                info!(call, "recall unanswered");
                self.cancel_forks(call);
                self.stats.park_timeouts.inc();
                self.leave_park(now, call, LeaveReason::Timeout, true);
            }
            _ => {}
        }
    }

    fn start_recall(&mut self, now: Instant, call: u64) {
        let cfg = Arc::clone(&self.cfg);
        let Some(c) = self.calls.get(&call) else { return };
        let tenant = self.exts.get(&c.ext).map(|e| e.tenant.clone()).unwrap_or_default();
        // A tenant removed by a reload keeps its old policy for its last calls.
        let retired = Arc::clone(&self.retired);
        let policy = cfg
            .tenant(tenant.as_bytes())
            .or_else(|| retired_policy(&retired, tenant.as_bytes()))
            .unwrap_or(&cfg.defaults);
        let parker = c.parker.as_ref().and_then(|p| {
            let uri = Uri::parse(&p.uri).ok()?;
            uri.host.eq_ignore_ascii_case(tenant.as_bytes()).then_some(uri.user?.to_vec())
        });
        let group = || policy.recall_group.iter().map(|e| e.as_bytes().to_vec()).collect::<Vec<_>>();
        let (first, mut group_at) = match policy.recall_to {
            RecallTo::Parker => (parker.into_iter().collect(), None),
            RecallTo::Group => (group(), None),
            RecallTo::ParkerThenGroup => (parker.into_iter().collect(), Some(now + policy.recall_group_delay)),
        };
        let ends_at = now + cfg.recall_timeout;
        let mut forks = self.ring_recall(now, call, &tenant, &first, policy);
        if forks.is_empty() && group_at.is_some() {
            // Nobody to ring first: the group rings at once.
            forks = self.ring_recall(now, call, &tenant, &group(), policy);
            group_at = None;
        }
        if group_at.is_some_and(|g| g >= ends_at) {
            group_at = None;
        }
        if forks.is_empty() && group_at.is_none() {
            info!(call, "park timeout: nobody to recall is registered");
            self.stats.park_timeouts.inc();
            self.leave_park(now, call, LeaveReason::Timeout, true);
            return;
        }
        self.stats.recalls.inc();
        let deadline = group_at.unwrap_or(ends_at);
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Recalling { recall: Box::new(Recall { forks, group_at, ends_at }) };
            c.deadline = Some(deadline);
        }
        self.schedule(Some(deadline), TimerKey::Call(call));
        info!(call, "park timeout: recalling");
    }

    /// `parker-then-group`: the recall ring group joins the recall (at its
    /// delay, or when every branch to the parker has failed).
    fn recall_group_joins(&mut self, now: Instant, call: u64) {
        let cfg = Arc::clone(&self.cfg);
        let Some(c) = self.calls.get(&call) else { return };
        let tenant = self.exts.get(&c.ext).map(|e| e.tenant.clone()).unwrap_or_default();
        let retired = Arc::clone(&self.retired);
        let policy = cfg
            .tenant(tenant.as_bytes())
            .or_else(|| retired_policy(&retired, tenant.as_bytes()))
            .unwrap_or(&cfg.defaults);
        let group: Vec<Vec<u8>> = policy.recall_group.iter().map(|e| e.as_bytes().to_vec()).collect();
        let forks = self.ring_recall(now, call, &tenant, &group, policy);
        let Some(c) = self.calls.get_mut(&call) else { return };
        let CallState::Recalling { recall } = &mut c.state else { return };
        recall.group_at = None;
        recall.forks.extend(forks);
        let (ends_at, idle) = (recall.ends_at, recall.forks.iter().all(|f| f.done));
        c.deadline = Some(ends_at);
        if idle {
            info!(call, "recall: nobody answered and the ring group has no device");
            self.stats.park_timeouts.inc();
            self.leave_park(now, call, LeaveReason::Timeout, true);
            return;
        }
        self.schedule(Some(ends_at), TimerKey::Call(call));
    }

    /// Sends a recall INVITE of `call` to every registered device of the
    /// extensions `exts` of `tenant`; returns the branches.
    fn ring_recall(
        &mut self,
        now: Instant,
        call: u64,
        tenant: &str,
        exts: &[Vec<u8>],
        policy: &super::config::TenantPolicy,
    ) -> Vec<Fork> {
        let names: Vec<&[u8]> = exts.iter().map(|e| &e[..]).collect();
        let targets = self.device_targets(now, tenant, &names, None);
        let Some(c) = self.calls.get(&call) else { return Vec::new() };
        // The parked party, shown as a recall: `"[Recall] Alice" <sip:...>`.
        let mut from = Vec::with_capacity(96);
        let parked = c.parked();
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
        let mut forks = Vec::with_capacity(targets.len());
        let mut to = Vec::with_capacity(64);
        for DeviceTarget { uri, dst, route, name, .. } in targets {
            to.clear();
            to.extend_from_slice(b"<sip:");
            to.extend_from_slice(names[name]);
            to.push(b'@');
            to.extend_from_slice(tenant.as_bytes());
            to.push(b'>');
            let contact = self.contact(dst.transport);
            let txn = self.fresh_id();
            let tag = self.new_tag();
            let call_id = self.new_call_id();
            let mut branch = Vec::with_capacity(32);
            write_branch(&mut branch, self.id, txn);
            let mut out = Vec::with_capacity(700);
            request_head(&mut out, "INVITE", &uri, dst.transport, &self.vias[dst.transport.index()], &branch);
            if let Some(r) = &route {
                header(&mut out, "Route", r);
            }
            out.extend_from_slice(b"From: ");
            out.extend_from_slice(&from);
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(&tag);
            out.extend_from_slice(b"\r\n");
            header(&mut out, "To", &to);
            header(&mut out, "Call-ID", &call_id);
            header(&mut out, "CSeq", b"1 INVITE");
            header(&mut out, "Contact", &contact);
            header(&mut out, "Allow", ALLOW);
            if !policy.alert_info.is_empty() {
                header(&mut out, "Alert-Info", policy.alert_info.as_bytes());
            }
            header(&mut out, "Subject", b"Park recall");
            finish(&mut out, "", b"");
            self.send(dst, &out);
            let t = self.cfg.timers;
            let tx = ClientTxn::new(Kind::Invite, dst, out, now, &t);
            let at = tx.deadline();
            self.client
                .insert(txn, ClientEntry { txn: tx, owner: ClientOwner::Recall { call }, cancel_pending: false });
            self.schedule(at, TimerKey::Client(txn));
            forks.push(Fork { txn, call_id, local_tag: tag, done: false });
        }
        forks
    }

    /// CANCELs every fork of a recalling `call` that is still ringing.
    fn cancel_forks(&mut self, call: u64) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        let CallState::Recalling { recall } = &mut c.state else { return };
        let pending: Vec<u64> = recall
            .forks
            .iter_mut()
            .filter(|f| !f.done)
            .map(|f| {
                f.done = true;
                f.txn
            })
            .collect();
        for txn in pending {
            self.cancel(txn);
        }
    }

    /// Sends CANCEL for INVITE client transaction `txn` (§9.1), or, if it
    /// has had no provisional response yet, as soon as it has one.
    fn cancel(&mut self, txn: u64) {
        let Some(e) = self.client.get_mut(&txn) else { return };
        if !e.txn.pending() {
            return;
        }
        if e.txn.state == ClientState::Calling {
            e.cancel_pending = true;
            return;
        }
        let Ok(req) = SipMessage::parse(&e.txn.request) else { return };
        let (Some(uri), Some(via), Some(from), Some(to), Ok(call_id), Ok(cseq)) = (
            req.request_uri(),
            req.header(HeaderName::Via),
            req.header(HeaderName::From),
            req.header(HeaderName::To),
            req.call_id(),
            req.cseq(),
        ) else {
            return;
        };
        let mut out = Vec::with_capacity(400);
        out.extend_from_slice(b"CANCEL ");
        out.extend_from_slice(uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        header(&mut out, "Via", via);
        header(&mut out, "Max-Forwards", b"70");
        // The INVITE's Route, so the CANCEL takes its path (§9.1).
        for r in req.routes().filter_map(Result::ok) {
            header(&mut out, "Route", r.raw);
        }
        header(&mut out, "From", from);
        header(&mut out, "To", to);
        header(&mut out, "Call-ID", call_id);
        let mut cs = Vec::new();
        let _ = std::io::Write::write_fmt(&mut cs, format_args!("{} CANCEL", cseq.seq));
        header(&mut out, "CSeq", &cs);
        finish(&mut out, "", b"");
        let dst = e.txn.dst;
        self.send(dst, &out);
        // CANCEL shares the INVITE's branch, so its responses would match the
        // INVITE's transaction id; it is sent once and not tracked.
    }

    fn recall_answered(&mut self, now: Instant, src: Peer, call: u64, txn: u64, code: u16, msg: &SipMessage<'_>) {
        let winner = (200..300).contains(&code)
            && self.calls.get(&call).is_some_and(|c| matches!(c.state, CallState::Recalling { .. }))
            && sdp::is_sdp(msg.body());
        if (200..300).contains(&code) && !winner {
            // Too late (another device won, or the call is gone), or no SDP
            // offer to bridge with: confirm and end this branch.
            self.ack_and_bye_fork(now, src, txn, msg);
            self.fork_done(now, call, txn);
            return;
        }
        if !winner {
            self.fork_done(now, call, txn);
            return;
        }
        let session = self.random();
        let local = self
            .client
            .get(&txn)
            .and_then(|e| {
                let req = SipMessage::parse(&e.txn.request).ok()?;
                let from = req.from_hdr().ok()?;
                let cut = from.raw.len() - from.params.len();
                Some(from.raw[..cut].to_vec().into_boxed_slice())
            })
            .unwrap_or_default();
        let Some(c) = self.calls.get_mut(&call) else { return };
        let CallState::Recalling { recall } = std::mem::replace(&mut c.state, CallState::Parked) else { return };
        let Some(fork) = recall.forks.iter().find(|f| f.txn == txn) else {
            c.state = CallState::Recalling { recall };
            return;
        };
        let (Ok(to), Some(target)) = (msg.to_hdr(), first_contact(msg)) else { return };
        let mut route_set: Vec<Box<[u8]>> = msg.record_routes().filter_map(Result::ok).map(|r| r.raw.into()).collect();
        route_set.reverse();
        let b = Leg {
            call_id: fork.call_id.clone(),
            local_tag: fork.local_tag.clone(),
            local,
            remote: to.raw.into(),
            remote_target: target,
            route_set: route_set.into(),
            local_cseq: 1,
            remote_cseq: 0,
            peer: src,
            origin: Origin::new(session),
            last_sdp: Box::default(),
            remote_sdp: msg.body().into(),
            pending_ack: None,
        };
        let others: Vec<u64> = recall.forks.iter().filter(|f| f.txn != txn && !f.done).map(|f| f.txn).collect();
        c.state = CallState::Recalling { recall };
        for other in others {
            self.cancel(other);
        }
        self.stats.recalls_answered.inc();
        let ext = self.calls.get(&call).map_or(0, |c| c.ext);
        self.depart(now, call, ext, LeaveReason::Recalled);
        let offer = msg.body().to_vec();
        let Some(c) = self.calls.get_mut(&call) else { return };
        c.deadline = None;
        c.state = CallState::RecallBridging { b: Box::new(b), fork_txn: txn, reinvite: 0 };
        self.add_dialog(call, Side::B);
        if let Some(reinvite) = self.reinvite(now, call, &offer, true, |call| ClientOwner::RecallBridge { call })
            && let Some(c) = self.calls.get_mut(&call)
            && let CallState::RecallBridging { reinvite: r, .. } = &mut c.state
        {
            *r = reinvite;
        }
    }

    /// Confirms and immediately ends a recall branch that answered too late.
    fn ack_and_bye_fork(&mut self, now: Instant, src: Peer, txn: u64, msg: &SipMessage<'_>) {
        let Some(e) = self.client.get(&txn) else { return };
        let Ok(req) = SipMessage::parse(&e.txn.request) else { return };
        let (Some(from), Ok(call_id), Some(to), Some(target)) =
            (req.header(HeaderName::From), req.call_id(), msg.header(HeaderName::To), first_contact(msg))
        else {
            return;
        };
        let mut route_set: Vec<Box<[u8]>> = msg.record_routes().filter_map(Result::ok).map(|r| r.raw.into()).collect();
        route_set.reverse();
        let from_na = NameAddr::parse(from).ok();
        let (local, local_tag): (Box<[u8]>, Box<[u8]>) = match from_na {
            Some(f) => (f.raw[..f.raw.len() - f.params.len()].into(), f.tag().unwrap_or_default().into()),
            None => return,
        };
        let leg = Leg {
            call_id: call_id.into(),
            local_tag,
            local,
            remote: to.into(),
            remote_target: target,
            route_set: route_set.into(),
            local_cseq: 1,
            remote_cseq: 0,
            peer: src,
            origin: Origin::new(0),
            last_sdp: Box::default(),
            remote_sdp: Box::default(),
            pending_ack: None,
        };
        let dst = leg_destination(&leg);
        let contact = self.contact(dst.transport);
        for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
            let id = self.fresh_id();
            let mut branch = Vec::with_capacity(32);
            write_branch(&mut branch, self.id, id);
            let mut out = Vec::with_capacity(600);
            let via = (dst.transport, &*self.vias[dst.transport.index()]);
            write_leg_request(&mut out, &leg, method, cseq, via, &branch, &contact, None);
            self.send(dst, &out);
            if method == "ACK" {
                if let Some(e) = self.client.get_mut(&txn) {
                    e.txn.ack = out;
                }
            } else {
                let t = self.cfg.timers;
                let tx = ClientTxn::new(Kind::NonInvite, dst, out, now, &t);
                let at = tx.deadline();
                self.client.insert(id, ClientEntry { txn: tx, owner: ClientOwner::Detached, cancel_pending: false });
                self.schedule(at, TimerKey::Client(id));
            }
        }
    }

    /// A recall branch ended without winning; if it was the last, the call
    /// times out.
    fn fork_done(&mut self, now: Instant, call: u64, txn: u64) {
        let Some(c) = self.calls.get_mut(&call) else { return };
        let CallState::Recalling { recall } = &mut c.state else { return };
        if let Some(f) = recall.forks.iter_mut().find(|f| f.txn == txn) {
            f.done = true;
        }
        if recall.forks.iter().all(|f| f.done) && recall.group_at.is_some() {
            // Every branch to the parker failed: the group need not wait.
            self.recall_group_joins(now, call);
        } else if recall.forks.iter().all(|f| f.done) {
            info!(call, "every recall branch failed");
            self.stats.park_timeouts.inc();
            self.leave_park(now, call, LeaveReason::Timeout, true);
        }
    }

    fn recall_bridged(&mut self, now: Instant, call: u64, txn: u64, code: u16, msg: &SipMessage<'_>) {
        let Some(c) = self.calls.get(&call) else { return };
        let CallState::RecallBridging { fork_txn, reinvite, .. } = &c.state else { return };
        if *reinvite != txn {
            return;
        }
        let fork_txn = *fork_txn;
        if (200..300).contains(&code) {
            let host = Arc::clone(&self.host);
            self.ack_2xx(call, Side::A, txn, None);
            let Some(c) = self.calls.get_mut(&call) else { return };
            c.a.remote_sdp = msg.body().into();
            let CallState::RecallBridging { mut b, .. } = std::mem::replace(&mut c.state, CallState::Parked) else {
                return;
            };
            b.origin.version += 1;
            let answer = bridge_sdp(&mut c.a, &mut b, msg.body(), &host);
            c.state = CallState::Bridged { b };
            self.bridged += 1;
            c.deadline = Some(now + self.cfg.limits.max_call_duration);
            let at = c.deadline;
            self.schedule(at, TimerKey::Call(call));
            self.ack_2xx(call, Side::B, fork_txn, Some(("application/sdp", &answer)));
        } else {
            // The parked leg refused or is gone: confirm and end the recall
            // leg, and end the parked leg too.
            if let Some(c) = self.calls.get_mut(&call)
                && let CallState::RecallBridging { b, .. } = std::mem::replace(&mut c.state, CallState::Parked)
            {
                c.state = CallState::Bridged { b };
                self.bridged += 1;
            }
            self.ack_2xx(call, Side::B, fork_txn, None);
            self.bye(now, call, Side::B);
            if !matches!(code, 408 | 481) {
                self.bye(now, call, Side::A);
            }
            self.forget_call(call);
        }
    }

    // ----- timers ---------------------------------------------------------

    fn server_timer(&mut self, now: Instant, id: u64, at: Instant) {
        let t = self.cfg.timers;
        let Some(e) = self.server.get_mut(&id) else { return };
        if e.txn.deadline() != Some(at) {
            return;
        }
        match e.txn.on_timer(now, &t) {
            TimerAction::Nothing => {}
            TimerAction::Retransmit => {
                let at = e.txn.deadline();
                self.resend_response(id);
                self.schedule(at, TimerKey::Server(id));
            }
            TimerAction::Terminate { timed_out } => {
                let e = self.server.remove(&id);
                if let Some(e) = e {
                    self.server_index.remove(&e.key);
                    if timed_out && (200..300).contains(&e.txn.final_code) {
                        self.no_ack(now, e.call, id);
                    }
                }
            }
        }
    }

    /// A 2xx sipark sent was never ACKed (§13.3.1.4): end the session.
    fn no_ack(&mut self, now: Instant, call: Option<u64>, txn: u64) {
        let Some(call) = call else { return };
        let Some(c) = self.calls.get(&call) else { return };
        match &c.state {
            CallState::Answering { txn: t, .. } if *t == txn => {
                warn!(call, "park 200 OK never ACKed");
                self.bye(now, call, Side::A);
                self.forget_call(call);
            }
            CallState::Bridged { b }
                if b.pending_ack.is_some_and(|(t, _)| t == txn) || c.a.pending_ack.is_some_and(|(t, _)| t == txn) =>
            {
                warn!(call, "retrieve 200 OK never ACKed");
                self.bye(now, call, Side::A);
                self.bye(now, call, Side::B);
                self.forget_call(call);
            }
            _ => {}
        }
    }

    fn client_timer(&mut self, now: Instant, id: u64, at: Instant) {
        let t = self.cfg.timers;
        let Some(e) = self.client.get_mut(&id) else { return };
        if e.txn.deadline() != Some(at) {
            return;
        }
        match e.txn.on_timer(now, &t) {
            TimerAction::Nothing => {}
            TimerAction::Retransmit => {
                let at = e.txn.deadline();
                if e.owner == ClientOwner::Notify {
                    self.stats.notifies_retransmitted.inc();
                }
                self.stats.retransmissions.inc();
                self.resend_request(id, false);
                self.schedule(at, TimerKey::Client(id));
            }
            TimerAction::Terminate { timed_out } => {
                let Some(e) = self.client.remove(&id) else { return };
                if !timed_out {
                    return;
                }
                match e.owner {
                    ClientOwner::Notify => {
                        self.stats.notifies_failed.inc();
                        warn!(peer = %e.txn.dst, "park-info NOTIFY timed out (Timer F)");
                    }
                    ClientOwner::Retrieve { call } => {
                        // Reinstate the transaction record so the handler can
                        // match it, then treat the silence as 408.
                        self.client.insert(id, e);
                        self.timeout_final(now, id, call, true);
                    }
                    ClientOwner::RecallBridge { call } => {
                        self.client.insert(id, e);
                        self.timeout_final(now, id, call, false);
                    }
                    ClientOwner::Recall { call } => self.fork_done(now, call, id),
                    ClientOwner::Relay { call } => {
                        self.client.insert(id, e);
                        self.relay_answered(now, call, id, 0, None);
                    }
                    ClientOwner::Rehold { .. } | ClientOwner::Detached => {}
                }
                self.client.remove(&id);
            }
        }
    }

    fn timeout_final(&mut self, now: Instant, txn: u64, call: u64, retrieve: bool) {
        if retrieve {
            let Some(c) = self.calls.get(&call) else { return };
            let CallState::Retrieving { retriever, reinvite } = &c.state else { return };
            if *reinvite != txn {
                return;
            }
            let rtxn = retriever.txn;
            self.stats.retrieves_failed.inc();
            self.reply_later(now, rtxn, 480, "Parked Party Unavailable", None, &[], None);
            self.stats.hangups.inc();
            self.leave_park(now, call, LeaveReason::Hangup, false);
        } else {
            let Some(c) = self.calls.get_mut(&call) else { return };
            let CallState::RecallBridging { reinvite, fork_txn, .. } = &c.state else { return };
            if *reinvite != txn {
                return;
            }
            let fork_txn = *fork_txn;
            if let CallState::RecallBridging { b, .. } = std::mem::replace(&mut c.state, CallState::Parked) {
                c.state = CallState::Bridged { b };
                self.bridged += 1;
            }
            self.ack_2xx(call, Side::B, fork_txn, None);
            self.bye(now, call, Side::B);
            self.forget_call(call);
        }
    }

    fn ext_timer(&mut self, now: Instant, id: u64, at: Instant) {
        let Some(e) = self.exts.get_mut(&id) else { return };
        if e.timer_at != Some(at) {
            return;
        }
        e.timer_at = None;
        let before = e.bindings.len();
        e.bindings.retain(|b| b.expires_at > now);
        self.bindings -= before - e.bindings.len();
        self.schedule_ext(id);
        self.drop_ext_if_idle(id);
    }

    /// Finds the extension's earliest expiry and queues a timer for it
    /// unless one at or before it is already queued.
    fn schedule_ext(&mut self, id: u64) {
        let Some(e) = self.exts.get_mut(&id) else { return };
        let Some(deadline) = e.bindings.iter().map(|b| b.expires_at).min() else { return };
        if e.timer_at.is_none_or(|t| deadline < t) {
            e.timer_at = Some(deadline);
            self.schedule(Some(deadline), TimerKey::Ext(id));
        }
    }

    // ----- extensions, NOTIFY ----------------------------------------------

    fn ext_key(&mut self, tenant: &[u8], ext: &[u8]) {
        self.key.clear();
        self.key.extend_from_slice(ext);
        self.key.push(b'@');
        self.key.extend(tenant.iter().map(u8::to_ascii_lowercase));
    }

    fn find_ext(&mut self, tenant: &[u8], ext: &[u8]) -> Option<u64> {
        self.ext_key(tenant, ext);
        self.ext_index.get(self.key.as_slice()).copied()
    }

    /// The extension's id, creating it if needed.
    fn ext_id(&mut self, tenant: &[u8], ext: &[u8]) -> u64 {
        if let Some(id) = self.find_ext(tenant, ext) {
            return id;
        }
        let id = self.fresh_id();
        let key: Box<[u8]> = self.key.as_slice().into();
        self.ext_index.insert(key, id);
        let tenant = String::from_utf8_lossy(tenant).to_ascii_lowercase().into_boxed_str();
        let ext = String::from_utf8_lossy(ext).into_owned().into_boxed_str();
        self.exts.insert(
            id,
            Extension {
                tenant,
                ext,
                bindings: Vec::new(),
                calls: Vec::new(),
                version: self.version_floor,
                timer_at: None,
            },
        );
        id
    }

    fn drop_ext_if_idle(&mut self, id: u64) {
        let Some(e) = self.exts.get(&id) else { return };
        if !e.bindings.is_empty() || !e.calls.is_empty() {
            return;
        }
        let key = format!("{}@{}", e.ext, e.tenant);
        self.ext_index.remove(key.as_bytes());
        self.exts.remove(&id);
    }

    /// The extension's state changed: bump its version and NOTIFY every
    /// contact. `left` is the call that just left, shown once as terminated.
    fn ext_changed(&mut self, now: Instant, ext: u64, left: Option<(u64, LeaveReason)>) {
        let Some(e) = self.exts.get_mut(&ext) else { return };
        e.version += 1;
        self.version_floor = self.version_floor.max(e.version);
        self.notify_ext(now, ext, left, None);
    }

    /// Sends the extension's current park-info document to every contact
    /// (or only to the contact `only`, for a resync).
    fn notify_ext(&mut self, now: Instant, ext: u64, left: Option<(u64, LeaveReason)>, only: Option<&[u8]>) {
        let mut names = self.watcher_names(ext, left.map(|(id, _)| id));
        let cfg = Arc::clone(&self.cfg);
        let Some(e) = self.exts.get(&ext) else { return };
        let default_set = cfg.tenant(e.tenant.as_bytes()).map_or(cfg.defaults.notify, |p| p.notify);
        // Every device that shows this extension's parks: its own, then
        // its watchers' (park group members, parkers), each addressed to
        // the device's own AOR, each with the documents it understands.
        names.insert(0, e.ext.as_bytes().into());
        let tenant = e.tenant.clone();
        let names: Vec<&[u8]> = names.iter().map(|n| &n[..]).collect();
        let targets = self.device_targets(now, &tenant, &names, only);
        let Some(e) = self.exts.get(&ext) else { return };
        let mut union = NotifySet::default();
        for t in &targets {
            union.0 |= t.notify.unwrap_or(default_set).0;
        }
        if targets.is_empty() || union.0 == 0 {
            return;
        }
        // One document of each kind some device needs, written once.
        let mut docs: [Vec<u8>; 3] = Default::default();
        for (i, kind) in BodyKind::ALL.into_iter().enumerate() {
            if !union.contains(kind) {
                continue;
            }
            let body = &mut docs[i];
            if kind == BodyKind::ParkInfo {
                *body = std::mem::take(&mut self.scratch);
                body.clear();
            }
            let listed = e.calls.iter().filter_map(|id| self.calls.get(id)).filter(|c| c.state.listed());
            let departed = left.and_then(|(id, r)| Some(CallView { call: self.calls.get(&id)?, left: Some(r) }));
            let views = listed.map(|call| CallView { call, left: None }).chain(departed);
            kind.write(body, e, &cfg.retrieve_fac, views);
        }
        let mut from = Vec::with_capacity(64);
        from.extend_from_slice(b"<sip:park@");
        from.extend_from_slice(e.tenant.as_bytes());
        from.extend_from_slice(b">;tag=");
        let mut to = Vec::with_capacity(64);
        let sends = targets.iter().flat_map(|t| {
            let set = t.notify.unwrap_or(default_set);
            BodyKind::ALL.into_iter().enumerate().filter(move |(_, k)| set.contains(*k)).map(move |(i, k)| (t, i, k))
        });
        for (DeviceTarget { uri, dst, route, name, .. }, i, kind) in sends {
            let (dst, body) = (*dst, &docs[i]);
            to.clear();
            to.extend_from_slice(b"<sip:");
            to.extend_from_slice(names[*name]);
            to.push(b'@');
            to.extend_from_slice(tenant.as_bytes());
            to.push(b'>');
            let contact = self.contact(dst.transport);
            if self.live_transactions() >= self.cfg.limits.max_transactions {
                self.stats.overload_rejects.inc();
                self.stats.notifies_failed.inc();
                continue;
            }
            let txn = self.fresh_id();
            let tag = self.new_tag();
            let call_id = self.new_call_id();
            let mut branch = Vec::with_capacity(32);
            write_branch(&mut branch, self.id, txn);
            let mut out = Vec::with_capacity(700 + body.len());
            request_head(&mut out, "NOTIFY", uri, dst.transport, &self.vias[dst.transport.index()], &branch);
            if let Some(r) = route {
                header(&mut out, "Route", r);
            }
            out.extend_from_slice(b"From: ");
            out.extend_from_slice(&from);
            out.extend_from_slice(&tag);
            out.extend_from_slice(b"\r\n");
            header(&mut out, "To", &to);
            header(&mut out, "Call-ID", &call_id);
            header(&mut out, "CSeq", b"1 NOTIFY");
            header(&mut out, "Contact", &contact);
            header(&mut out, "Event", kind.event().as_bytes());
            header(&mut out, "Subscription-State", b"active");
            finish(&mut out, kind.content_type(), body);
            self.send(dst, &out);
            self.stats.notifies_sent.inc();
            let t = self.cfg.timers;
            let tx = ClientTxn::new(Kind::NonInvite, dst, out, now, &t);
            let at = tx.deadline();
            self.client.insert(txn, ClientEntry { txn: tx, owner: ClientOwner::Notify, cancel_pending: false });
            self.schedule(at, TimerKey::Client(txn));
        }
        let [park_info, ..] = docs;
        if park_info.capacity() > 0 {
            self.scratch = park_info;
        }
    }

    /// The extensions (other than `ext`) whose devices are told of `ext`'s
    /// parks: the members of its park group, and, when the tenant asks for
    /// it, the parkers of the calls shown (`left` included). Only
    /// extensions of the same tenant, and only those sipark knows.
    fn watcher_names(&self, ext: u64, left: Option<u64>) -> Vec<Box<[u8]>> {
        let Some(e) = self.exts.get(&ext) else { return Vec::new() };
        let cfg = Arc::clone(&self.cfg);
        let Some(policy) = cfg.tenant(e.tenant.as_bytes()) else { return Vec::new() };
        let mut names: Vec<Box<[u8]>> = Vec::new();
        if let Some(group) = policy.group_of(e.ext.as_bytes()) {
            names.extend(group.iter().filter(|m| m.as_bytes() != e.ext.as_bytes()).map(|m| m.as_bytes().into()));
        }
        if policy.notify_parker {
            let shown = e.calls.iter().copied().chain(left).filter_map(|id| self.calls.get(&id));
            for c in shown {
                let Some(p) = c.parker.as_ref().and_then(|p| Uri::parse(&p.uri).ok()) else { continue };
                if let Some(user) = p.user
                    && p.host.eq_ignore_ascii_case(e.tenant.as_bytes())
                    && user != e.ext.as_bytes()
                    && !names.iter().any(|n| **n == *user)
                {
                    names.push(user.into());
                }
            }
        }
        names
    }

    /// Where sipark's out-of-dialog requests to the extensions `names` of
    /// `tenant` go. In outbound-proxy mode: one request per extension,
    /// `sip:<ext>@<tenant>` through the proxy, which forks it. Else one
    /// per live binding sipark's registrar holds (only the contact `only`
    /// when given), with the binding's Path as Route.
    fn device_targets(
        &mut self,
        now: Instant,
        tenant: &str,
        names: &[&[u8]],
        only: Option<&[u8]>,
    ) -> Vec<DeviceTarget> {
        let mut out = Vec::new();
        if let Some((proxy, route)) = &self.proxy {
            if only.is_some() {
                return out;
            }
            for (i, name) in names.iter().enumerate() {
                let mut uri = Vec::with_capacity(8 + name.len() + tenant.len());
                uri.extend_from_slice(b"sip:");
                uri.extend_from_slice(name);
                uri.push(b'@');
                uri.extend_from_slice(tenant.as_bytes());
                let (dst, route) = (*proxy, Some(route.clone()));
                out.push(DeviceTarget { uri: uri.into(), dst, route, name: i, notify: None });
            }
            return out;
        }
        for (i, name) in names.iter().enumerate() {
            let Some(e) = self.find_ext(tenant.as_bytes(), name).and_then(|id| self.exts.get(&id)) else { continue };
            for b in e.bindings.iter().filter(|b| only.is_none_or(|o| *o == *b.uri) && b.expires_at > now) {
                out.push(DeviceTarget {
                    uri: b.uri.clone(),
                    dst: b.flow,
                    route: b.path.clone(),
                    name: i,
                    notify: b.notify,
                });
            }
        }
        out
    }

    // ----- registrar ------------------------------------------------------

    fn on_register(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, txn: u64) {
        let (Ok(to), Ok(call_id)) = (msg.to_hdr(), msg.call_id()) else { return };
        let Some(user) = to.uri.user.filter(|u| valid_ext(u)) else {
            self.reply(now, txn, msg, 400, "To URI has no extension", None, &[], None);
            return;
        };
        let tenant = to.uri.host;
        let cfg = Arc::clone(&self.cfg);
        let Some(policy) = cfg.tenant(tenant) else {
            self.reply(now, txn, msg, 404, "Unknown Tenant", None, &[], None);
            return;
        };
        if !self.admit(now, src, msg, txn, tenant, policy, user) {
            return;
        }
        let header_expires = match msg.expires() {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                self.reply(now, txn, msg, 400, "Bad Expires header", None, &[], None);
                return;
            }
            None => None,
        };
        // Validate everything before changing anything.
        let mut changes: Vec<(&[u8], u32)> = Vec::new();
        let mut star = false;
        for c in msg.contacts() {
            match c {
                Ok(Contact::Star) => star = true,
                Ok(Contact::Addr(na)) => {
                    let exp = match na.param(b"expires") {
                        Some(Some(v)) => match std::str::from_utf8(v).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
                            Some(v) => v,
                            None => {
                                self.reply(now, txn, msg, 400, "Bad expires parameter", None, &[], None);
                                return;
                            }
                        },
                        _ => header_expires.unwrap_or(self.cfg.default_expires),
                    };
                    changes.push((na.uri.raw, exp));
                }
                Err(e) => {
                    self.reply(now, txn, msg, 400, e.reason(), None, &[], None);
                    return;
                }
            }
        }
        if star && (!changes.is_empty() || header_expires != Some(0)) {
            self.reply(now, txn, msg, 400, "Contact * needs Expires: 0 alone", None, &[], None);
            return;
        }
        if changes.iter().any(|(_, e)| *e != 0 && *e < self.cfg.min_expires) {
            let min = self.cfg.min_expires.to_string();
            self.reply(now, txn, msg, 423, "Interval Too Brief", None, &[("Min-Expires", min.as_bytes())], None);
            return;
        }
        let ext_id = self.ext_id(tenant, user);
        let Some(e) = self.exts.get(&ext_id) else { return };
        let after = {
            let mut n = e.bindings.len();
            for (uri, exp) in &changes {
                let exists = e.bindings.iter().any(|b| *b.uri == **uri);
                match (exists, *exp) {
                    (true, 0) => n -= 1,
                    (false, 0) | (true, _) => {}
                    (false, _) => n += 1,
                }
            }
            n
        };
        if !star && after > self.cfg.max_contacts as usize {
            self.reply(now, txn, msg, 403, "Too Many Contacts", None, &[], None);
            self.drop_ext_if_idle(ext_id);
            return;
        }
        if after > e.bindings.len() && self.bindings + (after - e.bindings.len()) > self.cfg.limits.max_bindings {
            self.stats.overload_rejects.inc();
            self.reply(now, txn, msg, 503, "Registrar Full", None, &[("Retry-After", b"60")], None);
            self.drop_ext_if_idle(ext_id);
            return;
        }
        let max = self.cfg.max_expires;
        // A device whose User-Agent matches a rule gets that rule's documents.
        let notify = msg.header(HeaderName::UserAgent).and_then(|ua| {
            let policy = cfg.tenant(tenant)?;
            policy.notify_ua.iter().find(|(p, _)| super::config::glob_match(p.as_bytes(), ua)).map(|(_, set)| *set)
        });
        // RFC 3327: the proxies on the way in, which requests to these
        // contacts must go back through.
        let mut path: Vec<u8> = Vec::new();
        for h in msg.headers().iter().filter(|h| h.raw_name.eq_ignore_ascii_case(b"Path")) {
            if !path.is_empty() {
                path.extend_from_slice(b", ");
            }
            path.extend_from_slice(h.value);
        }
        if path.len() > 2048 {
            self.reply(now, txn, msg, 400, "Path Too Long", None, &[], None);
            self.drop_ext_if_idle(ext_id);
            return;
        }
        let flow = first_hop(Some(&path).filter(|p| !p.is_empty()).map(|p| &p[..]), src);
        let path: Option<Arc<[u8]>> = (!path.is_empty()).then(|| path.into());
        let Some(e) = self.exts.get_mut(&ext_id) else { return };
        let before = e.bindings.len();
        let mut resync: Vec<Box<[u8]>> = Vec::new();
        if star {
            e.bindings.clear();
        }
        for (uri, exp) in changes {
            let pos = e.bindings.iter().position(|b| *b.uri == *uri);
            if exp == 0 {
                if let Some(p) = pos {
                    e.bindings.remove(p);
                }
                continue;
            }
            let expires_at = now + Duration::from_secs(u64::from(exp.min(max)));
            match pos {
                Some(p) => {
                    let b = &mut e.bindings[p];
                    if *b.call_id != *call_id {
                        resync.push(uri.into());
                        b.call_id = call_id.into();
                    }
                    b.flow = flow;
                    b.path.clone_from(&path);
                    b.notify = notify;
                    b.expires_at = expires_at;
                }
                None => {
                    resync.push(uri.into());
                    let (uri, call_id) = (uri.into(), call_id.into());
                    let path = path.clone();
                    e.bindings.push(Binding { uri, flow, expires_at, call_id, notify, path });
                }
            }
        }
        self.bindings = self.bindings + e.bindings.len() - before;
        // 200 OK lists every current binding (§10.3 step 8).
        let mut contacts: Vec<Vec<u8>> = Vec::with_capacity(e.bindings.len());
        for b in &e.bindings {
            let mut v = Vec::with_capacity(b.uri.len() + 20);
            v.push(b'<');
            v.extend_from_slice(&b.uri);
            let left = b.expires_at.saturating_duration_since(now).as_secs();
            let _ = std::io::Write::write_fmt(&mut v, format_args!(">;expires={left}"));
            contacts.push(v);
        }
        let has_calls = e.calls.iter().any(|c| self.calls.get(c).is_some_and(|c| c.state.listed()));
        self.schedule_ext(ext_id);
        self.stats.registrations.inc();
        let mut extra: Vec<(&str, &[u8])> = contacts.iter().map(|c| ("Contact", c.as_slice())).collect();
        // The Path is echoed to a UA that supports it (RFC 3327 §5.3).
        let supports_path = msg
            .header_values(HeaderName::Supported)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"path"));
        if supports_path && let Some(p) = &path {
            extra.push(("Path", p));
        }
        self.reply(now, txn, msg, 200, "OK", None, &extra, None);
        // A new device is sent what it shows at once: its extension's
        // parks and its park group's.
        let mut shown: Vec<u64> = Vec::new();
        if has_calls {
            shown.push(ext_id);
        }
        if !resync.is_empty()
            && let Some(group) = cfg.tenant(tenant).and_then(|p| p.group_of(user))
        {
            for m in group.iter().filter(|m| m.as_bytes() != user) {
                if let Some(id) = self.find_ext(tenant, m.as_bytes())
                    && self
                        .exts
                        .get(&id)
                        .is_some_and(|e| e.calls.iter().any(|c| self.calls.get(c).is_some_and(|c| c.state.listed())))
                {
                    shown.push(id);
                }
            }
        }
        for id in shown {
            for uri in &resync {
                self.notify_ext(now, id, None, Some(uri));
            }
        }
        self.drop_ext_if_idle(ext_id);
    }
}

/// A feature code's rest that means the requester's own extension:
/// nothing, `#`, or `#` escaped (`*68`, `*68#`, `*68%23`).
fn names_own_extension(rest: &[u8]) -> bool {
    matches!(rest, b"" | b"#" | b"%23")
}

/// The policy a tenant removed by a reload keeps for its last calls.
fn retired_policy<'a>(
    retired: &'a HashMap<Box<str>, super::config::TenantPolicy>,
    domain: &[u8],
) -> Option<&'a super::config::TenantPolicy> {
    if retired.is_empty() {
        return None;
    }
    let d = std::str::from_utf8(domain).ok()?.to_ascii_lowercase();
    retired.get(d.as_str())
}

/// The host part of `host[:port]` / `[v6]:port`.
fn advertise_host(adv: &str) -> &str {
    if let Some(rest) = adv.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    adv.rsplit_once(':').map_or(adv, |(h, _)| h)
}

/// Extensions are non-empty and made of characters a dial plan would use.
fn valid_ext(ext: &[u8]) -> bool {
    !ext.is_empty() && ext.len() <= 64 && ext.iter().all(|b| b.is_ascii_alphanumeric() || b"+-_.".contains(b))
}

/// Bridges legs `a` and `b` once `a` has answered the re-INVITE that
/// offered it `b`'s SDP with `b_answer`: records on each leg the SDP sipark
/// sent it (for session refreshes) and returns the answer for `b`.
fn bridge_sdp(a: &mut Leg, b: &mut Leg, b_answer: &[u8], host: &str) -> Vec<u8> {
    let mut to_a = Vec::with_capacity(b.remote_sdp.len() + 32);
    sdp::rewrite_origin(&mut to_a, &b.remote_sdp, a.origin, host);
    a.last_sdp = to_a.into();
    let mut to_b = Vec::with_capacity(b_answer.len() + 32);
    sdp::rewrite_origin(&mut to_b, b_answer, b.origin, host);
    b.last_sdp = to_b.as_slice().into();
    to_b
}

/// Writes `sdp` under `leg`'s origin, as the SDP sent next on that leg.
/// The version goes up only when the description differs from the last
/// one sent there (RFC 3264 §8), so a relayed session refresh stays the
/// same session description.
fn rewrite_for(out: &mut Vec<u8>, sdp: &[u8], leg: &mut Leg, host: &str) {
    sdp::rewrite_origin(out, sdp, leg.origin, host);
    if *out == *leg.last_sdp {
        return;
    }
    out.clear();
    leg.origin.version += 1;
    sdp::rewrite_origin(out, sdp, leg.origin, host);
    leg.last_sdp = out.as_slice().into();
}

fn other_side(side: Side) -> Side {
    match side {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

/// The leg of `side` of `c`, where it has one.
fn leg_of(c: &Call, side: Side) -> Option<&Leg> {
    match (side, &c.state) {
        (Side::A, _) => Some(&c.a),
        (Side::B, CallState::Bridged { b } | CallState::RecallBridging { b, .. }) => Some(b),
        (Side::B, CallState::Retrieving { retriever, .. }) => Some(&retriever.leg),
        (Side::B, _) => None,
    }
}

fn identity(na: &NameAddr<'_>) -> Identity {
    Identity { uri: na.uri.raw.into(), display: na.display.filter(|d| !d.is_empty()).map(Into::into) }
}

/// The URI of the first Contact of `msg`.
fn first_contact(msg: &SipMessage<'_>) -> Option<Box<[u8]>> {
    msg.contacts().find_map(|c| match c {
        Ok(Contact::Addr(na)) => Some(na.uri.raw.into()),
        _ => None,
    })
}

/// Where in-dialog requests on `leg` go: the first Route hop when it is an
/// IP literal, else the address the peer last used (symmetric signalling,
/// which also works for phones behind NAT).
fn leg_destination(leg: &Leg) -> Peer {
    first_hop(leg.route_set.first().map(|r| &r[..]), leg.peer)
}

/// The first hop of a Route value (`<uri>` or several, comma-separated)
/// when its host is an IP literal, else `peer`. A first hop that is `peer`
/// itself keeps `peer`'s flow, so a stream connection is reused.
fn first_hop(route: Option<&[u8]>, peer: Peer) -> Peer {
    route
        .and_then(|r| {
            // Several values: only the first matters; a comma inside <...> is part of it.
            let end = r.iter().position(|&b| b == b'>').map_or(r.len(), |i| i + 1);
            NameAddr::parse(r[..end].trim_ascii()).ok()
        })
        .and_then(|na| {
            let host = std::str::from_utf8(na.uri.host).ok()?;
            let ip: std::net::IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
            let transport = Transport::of_uri(&na.uri).unwrap_or(peer.transport);
            let port = na.uri.port.unwrap_or(if transport == Transport::Tls { 5061 } else { 5060 });
            let addr = SocketAddr::new(ip, port);
            Some(if addr == peer.addr { peer } else { Peer { addr, transport } })
        })
        .unwrap_or(peer)
}

/// Writes an in-dialog request on `leg` (§12.2.1.1).
#[allow(clippy::too_many_arguments)]
fn write_leg_request(
    out: &mut Vec<u8>,
    leg: &Leg,
    method: &str,
    cseq: u32,
    (transport, advertise): (Transport, &str),
    branch: &[u8],
    contact: &[u8],
    body: Option<(&str, &[u8])>,
) {
    write_leg_request_with(out, leg, method, cseq, (transport, advertise), branch, contact, &[], body);
}

/// [`write_leg_request`] with `extra` headers (a relayed request's
/// `Info-Package`, for instance).
#[allow(clippy::too_many_arguments)]
fn write_leg_request_with(
    out: &mut Vec<u8>,
    leg: &Leg,
    method: &str,
    cseq: u32,
    (transport, advertise): (Transport, &str),
    branch: &[u8],
    contact: &[u8],
    extra: &[(&str, &[u8])],
    body: Option<(&str, &[u8])>,
) {
    request_head(out, method, &leg.remote_target, transport, advertise, branch);
    for r in &leg.route_set {
        header(out, "Route", r);
    }
    out.extend_from_slice(b"From: ");
    out.extend_from_slice(&leg.local);
    out.extend_from_slice(b";tag=");
    out.extend_from_slice(&leg.local_tag);
    out.extend_from_slice(b"\r\n");
    header(out, "To", &leg.remote);
    header(out, "Call-ID", &leg.call_id);
    let mut cs = Vec::with_capacity(16);
    let _ = std::io::Write::write_fmt(&mut cs, format_args!("{cseq} {method}"));
    header(out, "CSeq", &cs);
    if matches!(method, "INVITE" | "UPDATE" | "REFER" | "NOTIFY") {
        header(out, "Contact", contact);
        header(out, "Allow", ALLOW);
    }
    for (name, value) in extra {
        header(out, name, value);
    }
    let (ctype, body) = body.unwrap_or(("", b""));
    finish(out, ctype, body);
}
