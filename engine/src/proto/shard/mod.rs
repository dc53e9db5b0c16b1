//! The shard: everything one worker owns, behind a sans-IO API in the
//! style of `quinn-proto`. It integrates the layers and owns one of each:
//!
//! * [`Transactions`] (the transaction layer, `proto/txn`);
//! * the [`Registrar`] and its location service;
//! * the [`Park`] services (park, retrieve, recall, REFER, over one table
//!   of calls, with their dialogs and the [`crate::proto::bridge`]);
//! * the [`Notifier`];
//! * [`Env`]: the shard's identity, configuration, counters, ids and
//!   random numbers, and the messages waiting to be sent.
//!
//! The API:
//! * getters: [`Shard::id`], [`Shard::shards`], [`Shard::stats`],
//!   [`Shard::is_drained`];
//! * one input method per kind of input: [`Shard::handle`] (a message, as
//!   bytes or parsed), [`Shard::handle_timeout`], [`Shard::handle_load`]
//!   (the receive path's queueing delay, for overload control),
//!   [`Shard::shutdown`], [`Shard::reconfigure`];
//! * `poll_*`: [`Shard::poll_transmit`], [`Shard::poll_timeout`],
//!   [`Shard::poll_event`] and [`Shard::poll_ban`] pull the work out;
//!   [`Shard::recycle`] gives a sent buffer back;
//! * bans: [`Shard::drop_if_banned`] (asked first, by the I/O layer as
//!   well), [`Shard::import_ban`] (a ban another worker decided).
//!
//! What a message meets first (checks, transaction matching, admission,
//! dispatch to the layer that owns it) is in `front`; overload control's
//! refusals (docs/decisions/0021-overload-control.md) in `shed`.

mod front;
mod shed;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use super::auth::{Authenticator, NonceCounts};
use super::config::Config;
use super::env::Env;
pub use super::env::{Transmit, WallClock};
use super::guard::Guard;
pub use super::guard::{Ban, Source};
use super::ids::Keyed;
pub use super::ids::Seed;
pub use super::media::streams::Packets;
use super::media::streams::{Received, Streams};
use super::notify::Notifier;
use super::overload::{Controller, Refused, admission_key};
use super::park::Park;
pub use super::park::{Lifecycle, ParkEvent};
use super::registrar::Registrar;
use super::sip::Peer;
use super::sip::parse::SipMessage;
use super::stats::ShardStats;
use super::tu::{Ctx, Owner};
use super::txn::Transactions;
pub use shed::ShedShare;

/// A message given to [`Shard::handle`]: its bytes, or the message
/// already parsed (by the worker that routed it).
#[derive(Clone, Copy)]
pub enum Input<'a, 'b> {
    Bytes(&'b [u8]),
    Parsed(&'a SipMessage<'b>),
}

impl<'b> From<&'b [u8]> for Input<'_, 'b> {
    fn from(b: &'b [u8]) -> Self {
        Input::Bytes(b)
    }
}

impl<'b> From<&'b Vec<u8>> for Input<'_, 'b> {
    fn from(b: &'b Vec<u8>) -> Self {
        Input::Bytes(b)
    }
}

impl<'b, const N: usize> From<&'b [u8; N]> for Input<'_, 'b> {
    fn from(b: &'b [u8; N]) -> Self {
        Input::Bytes(b)
    }
}

impl<'a, 'b> From<&'a SipMessage<'b>> for Input<'a, 'b> {
    fn from(m: &'a SipMessage<'b>) -> Self {
        Input::Parsed(m)
    }
}

/// Which layer's timer is due first, after the transactions' (at the
/// same instant, the first variant runs first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Call,
    Binding,
}

/// One shard: the tenants with `shard_of(domain, n) == id`, and all their
/// state. See the module documentation for the API shape.
pub struct Shard {
    shards: u16,
    env: Env,
    txns: Transactions<Owner>,
    registrar: Registrar,
    notifier: Notifier,
    park: Park,
    /// Music on hold: the streams of this shard's parked calls.
    media: Streams,
    /// Digest challenges and checks (nonce key from the config).
    auth: Authenticator,
    /// What each nonce was used for (ADR 0019).
    nonces: NonceCounts,
    /// Failure budgets, bans and user locks (ADR 0019).
    guard: Guard,
    /// Overload control: whether the worker keeps up.
    overload: Controller,
    /// Requests overload control refused lately, by branch.
    refused: Refused,
    /// The keys of `refused`'s fingerprints.
    refused_keys: Keyed,
    /// The key of the admission hash, the same in every shard and in XDP.
    admission_key: u32,
    /// The refused share last handed to the I/O layer for XDP.
    published: Option<shed::Published>,
    /// XDP applies the refused share to new INVITEs over UDP.
    nic_screens: bool,
    shutting_down: bool,
}

impl Shard {
    /// Shard `id` of `shards`. `seed` is all the entropy it uses: the keys
    /// of its hash maps and its tags, so that the same seed and inputs give
    /// the same outputs (the I/O layer draws it from the operating system).
    pub fn new(id: u16, shards: u16, cfg: Arc<Config>, wall: WallClock, seed: Seed) -> Shard {
        let env = Env::new(id, Arc::clone(&cfg), wall, &seed);
        Shard {
            shards: shards.max(1),
            txns: Transactions::new(seed.hasher(1)),
            registrar: Registrar::new(&cfg, seed.hasher(2)),
            notifier: Notifier::default(),
            park: Park::new(wall, &seed),
            media: Streams::new(cfg.music.max_streams as usize),
            auth: Authenticator::new(cfg.nonce_secret, cfg.nonce_validity),
            nonces: NonceCounts::new(cfg.limits.max_nonce_counts, cfg.nonce_validity, seed.hasher(5)),
            guard: Guard::new(cfg.guard, cfg.limits.max_guarded, seed.hasher(6), Arc::clone(&env.stats)),
            overload: Controller::new(cfg.limits.overload),
            refused: Refused::default(),
            refused_keys: seed.hasher(7),
            admission_key: admission_key(&cfg.nonce_secret),
            published: None,
            nic_screens: false,
            env,
            shutting_down: false,
        }
    }

    pub fn id(&self) -> u16 {
        self.env.shard
    }

    /// How many shards the engine runs (this one included).
    pub fn shards(&self) -> u16 {
        self.shards
    }

    pub fn stats(&self) -> &Arc<ShardStats> {
        &self.env.stats
    }

    /// The lower layers, lent to a transaction user for one input.
    fn parts(&mut self, now: Instant) -> (Ctx<'_>, &mut Park) {
        let cx = Ctx {
            now,
            env: &mut self.env,
            txns: &mut self.txns,
            registrar: &mut self.registrar,
            notifier: &mut self.notifier,
            media: &mut self.media,
        };
        (cx, &mut self.park)
    }

    /// Handles one message from `src`: a datagram, or one message framed
    /// out of a stream connection. A request that could be read but is not
    /// well formed is answered (505, 400); other unparsable bytes are
    /// counted and dropped (nothing in them can be trusted to answer with).
    pub fn handle<'a, 'b: 'a>(&mut self, now: Instant, src: impl Into<Peer>, input: impl Into<Input<'a, 'b>>) {
        let src = src.into();
        if self.drop_if_banned(now, src.addr.ip()) {
            return;
        }
        match input.into() {
            Input::Parsed(msg) => self.message(now, src, msg),
            Input::Bytes(data) => {
                let mut slot = None;
                let error = match SipMessage::parse_in(data, &mut slot) {
                    Ok(msg) => {
                        self.message(now, src, msg);
                        None
                    }
                    Err(e) => Some(e),
                };
                match (error, &slot) {
                    (None, _) => {}
                    (Some(e), Some(msg)) => self.on_malformed(src, msg, e),
                    (Some(e), None) => {
                        self.env.stats.parse_errors.inc();
                        self.env.stats.dropped.inc();
                        tracing::debug!(shard = self.env.shard, peer = %src, error = e.reason(), "unparsable datagram dropped");
                    }
                }
            }
        }
        self.update_gauges();
    }

    fn message(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>) {
        match msg.method() {
            None => self.on_response(now, src, msg),
            Some(method) => self.on_request(now, src, msg, method),
        }
    }

    /// Whether `ip`'s source is banned (ADR 0019); if so, its datagram is
    /// counted as dropped and must not be handled. [`Shard::handle`] asks
    /// first; the I/O layer may ask before it routes a datagram, since
    /// every shard learns every ban ([`Shard::import_ban`]).
    #[inline]
    pub fn drop_if_banned(&mut self, now: Instant, ip: std::net::IpAddr) -> bool {
        let banned = self.guard.is_banned(ip, now);
        if banned {
            self.env.stats.auth_banned_drops.inc();
        }
        banned
    }

    /// The next ban this shard decided, for the I/O layer to apply in XDP
    /// and to hand to the other workers.
    pub fn poll_ban(&mut self) -> Option<Ban> {
        self.guard.poll_ban()
    }

    /// The next source whose ban a reload lifted (it is trusted now): the
    /// I/O layer takes it out of the XDP ban map. Every shard lifts its own
    /// copy of the ban on the same reload.
    pub fn poll_lifted(&mut self) -> Option<Source> {
        self.guard.poll_lifted()
    }

    /// A ban another worker decided: from now on this shard drops that
    /// source too.
    pub fn import_ban(&mut self, now: Instant, ban: Ban) {
        self.guard.import(now, ban);
        self.update_gauges();
    }

    /// Runs every timer due at `now`, the earliest first (transactions
    /// first at the same instant, then calls, then bindings).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.guard.next_timeout().is_some_and(|t| t <= now) {
            self.guard.handle_timeout(now);
        }
        'next: loop {
            let due = [(self.park.next_timeout(), Due::Call), (self.registrar.next_timeout(), Due::Binding)]
                .into_iter()
                .filter_map(|(at, d)| at.filter(|at| *at <= now).map(|at| (at, d)))
                .min();
            // The transaction timers due up to the first of the others run
            // here. Most end a transaction or find their entry stale, and
            // tell no layer above: only an event can change the other
            // queues, and then they are looked at again.
            let upto = due.map_or(now, |(at, _)| at);
            while self.txns.next_timeout().is_some_and(|at| at <= upto) {
                if let Some(ev) = self.txns.handle_timer(&mut self.env, now) {
                    self.on_txn_event(now, ev);
                    continue 'next;
                }
            }
            let Some((_, due)) = due else { break };
            match due {
                Due::Call => {
                    let (mut cx, park) = self.parts(now);
                    park.handle_timer(&mut cx);
                }
                Due::Binding => self.registrar.handle_timer(now),
            }
        }
        self.update_gauges();
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.env.out.pop()
    }

    /// Gives a sent message's buffer back for reuse.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        self.env.out.recycle(payload);
    }

    /// The next instant [`Shard::handle_timeout`] should be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.txns.next_timeout(), self.park.next_timeout(), self.registrar.next_timeout(), self.guard.next_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// This shard's media socket is reached at `addr` (the I/O layer bound
    /// it): parks from now on may get music on hold, streamed from there.
    pub fn set_media(&mut self, addr: SocketAddr) {
        self.env.local.media = Some(addr);
    }

    /// Whether any music-on-hold stream is playing.
    pub fn media_active(&self) -> bool {
        !self.media.is_empty()
    }

    /// The next instant [`Shard::poll_media`] has packets to send.
    pub fn media_timeout(&self) -> Option<Instant> {
        self.media.next_due()
    }

    /// Writes into `out` the music-on-hold packets due by `now` (until
    /// `out` is full), for the I/O layer to send from the media socket.
    pub fn poll_media(&mut self, now: Instant, out: &mut Packets) {
        let before = self.media.tally();
        self.media.poll(now, out);
        let after = self.media.tally();
        let s = &self.env.stats;
        s.moh_packets.add(after.packets - before.packets);
        s.moh_packets_skipped.add(after.skipped - before.skipped);
        s.moh_packets_unaddressed.add(after.unaddressed - before.unaddressed);
    }

    /// A datagram from `src` on the media socket: RTP from a parked phone
    /// latches its stream to that address; everything else is counted and
    /// dropped.
    pub fn handle_media(&mut self, src: SocketAddr, packet: &[u8]) {
        let s = &self.env.stats;
        match self.media.received(src, packet) {
            Received::Latched => s.moh_latched.inc(),
            Received::Known => {}
            Received::Unknown | Received::Ambiguous | Received::NotRtp => s.media_dropped.inc(),
        }
    }

    /// The next park-lifecycle event (parked, retrieved, recalled, hung
    /// up, …), in the order they happened.
    pub fn poll_event(&mut self) -> Option<ParkEvent> {
        self.park.poll_event()
    }

    /// Starts a graceful shutdown: new parks get 503, parked calls are hung
    /// up with a `shutdown` NOTIFY, bridged calls are left alone.
    pub fn shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        let id = self.env.shard;
        let (mut cx, park) = self.parts(now);
        let parked = park.shutdown(&mut cx);
        info!(shard = id, parked, "shutting down: parked calls hung up");
        self.update_gauges();
    }

    /// After [`Shard::shutdown`]: nothing parked remains and every NOTIFY
    /// and BYE has had its answer (or its Timer F).
    pub fn is_drained(&self) -> bool {
        self.shutting_down && self.park.drained() && !self.txns.any_pending()
    }

    /// A reloaded configuration (SIGHUP). Only the tenants part may differ
    /// from the running one: the advertised addresses, nonce secret and
    /// limits are fixed at start. Nothing in progress is touched: a removed
    /// tenant takes no new parks or registrations, and its calls already
    /// parked here can still be retrieved until they end.
    pub fn reconfigure(&mut self, now: Instant, cfg: Arc<Config>) {
        let retired = self.park.reconfigure(&self.env.cfg, &cfg);
        if retired > 0 {
            info!(shard = self.env.shard, tenants = retired, "removed tenants keep their parked calls until they end");
        }
        let lifted = self.guard.lift_trusted(now, &cfg);
        if lifted > 0 {
            info!(shard = self.env.shard, sources = lifted, "bans lifted: the new configuration trusts these sources");
            self.update_gauges();
        }
        self.env.cfg = cfg;
    }

    fn update_gauges(&self) {
        let s = &self.env.stats;
        s.transactions.set(self.txns.live() as u64);
        s.transactions_lingering.set(self.txns.lingering() as u64);
        s.bindings.set(self.registrar.bindings() as u64);
        s.parked.set(self.park.listed());
        s.moh_streams.set(self.media.len() as u64);
        s.bridged.set(self.park.bridged());
        s.auth_bans_active.set(self.guard.active_bans());
        s.auth_nonce_evictions.set(self.nonces.evicted());
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Peer {
        Peer::udp(addr)
    }
}
