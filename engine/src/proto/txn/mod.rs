//! The transaction layer (RFC 3261 §17, with the 2xx handling of
//! RFC 6026): every server and client transaction of a shard, matched,
//! retransmitted, lingering and ended here, and nowhere else.
//!
//! [`Transactions`] owns the tables and the timers. Above it, the dialog
//! layer and the transaction users (registrar, park, bridge, notifier)
//! answer requests through [`Transactions::respond`] and start requests
//! through [`Transactions::start`]; this layer builds CANCEL (§9.1) and the
//! ACK of a non-2xx final response (§17.1.1.3) itself, from the fields it
//! recorded when the request was written ([`Head`]), and reports typed
//! events back to each client transaction's owner `O`: a provisional or
//! final response ([`ClientEvent`]), a timeout, a retransmission, or a 2xx
//! of sipark's that was never ACKed ([`TxnEvent`]).
//!
//! The state machines themselves are [`server::ServerTxn`] and
//! [`client::ClientTxn`]: state plus deadlines, with times from the caller.
//!
//! | timer | transaction | value (UDP) | meaning |
//! |---|---|---|---|
//! | A | INVITE client | T1, doubling | retransmit the request |
//! | B | INVITE client | 64·T1 | give up |
//! | D | INVITE client | 32 s | absorb final-response retransmissions |
//! | E | non-INVITE client | T1, doubling up to T2 | retransmit the request |
//! | F | non-INVITE client | 64·T1 | give up |
//! | K | non-INVITE client | T4 | absorb response retransmissions |
//! | G | INVITE server | T1, doubling up to T2 | retransmit the final response (also 2xx, §13.3.1.4) |
//! | H | INVITE server | 64·T1 | give up waiting for the ACK |
//! | I | INVITE server | T4 | absorb ACK retransmissions |
//! | J | non-INVITE server | 64·T1 | absorb request retransmissions |
//! | L/M | INVITE server/client | 64·T1 | RFC 6026 Accepted state |

pub mod client;
mod key;
pub mod server;

use std::time::{Duration, Instant};

use hashbrown::HashTable;

pub use client::{ClientState, ClientTxn, ResponseEffect};
pub use key::RequestKey;
pub use server::{ServerState, ServerTxn};

use super::env::Env;
use super::ids::{CallId, ClientId, IdMap, Keyed, ServerId};
use super::sip::Peer;
use super::sip::parse::{HeaderName, Method, SipMessage};
use super::sip::write::{
    Head, ResponseTemplate, branch_id, finish, header, response_head, write_cancel, write_non_2xx_ack,
};
use super::timers::{TimerQueue, sparse};

/// What a timer asks the owner to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Nothing is due (a stale timer entry).
    Nothing,
    /// Send the stored message again.
    Retransmit,
    /// The transaction is over; `timed_out` if it ended without the answer
    /// it was waiting for (Timer B, F, H, or no ACK for a 2xx).
    Terminate { timed_out: bool },
}

/// INVITE or not: the two families of §17.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invite,
    NonInvite,
}

/// Longest a server transaction waits for its final response: long enough
/// for sipark's own INVITE to another leg to run its Timer C.
pub const SERVER_GUARD: Duration = TIMER_C;

/// How long an INVITE client waits in Proceeding before giving up (Timer C
/// of §16.6, used here for sipark's own INVITEs).
pub const TIMER_C: Duration = Duration::from_secs(180);
/// Timer D for UDP.
pub const TIMER_D: Duration = Duration::from_secs(32);

/// Removals between two checks for capacity to give back.
const GIVE_BACK_EVERY: u32 = 256;

/// The timer heap is never compacted below this many entries.
const MIN_COMPACT: usize = 4096;

/// A timer's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Server(ServerId),
    Client(ClientId),
}

struct ServerEntry {
    txn: ServerTxn,
    /// Key in the index: [`RequestKey::write`] in its method class.
    key: Box<[u8]>,
    /// Its hash in the index.
    hash: u64,
    /// What a final answer that waits on another leg needs of the request
    /// (kept only until then).
    kept: Option<Box<Kept>>,
    /// The call this INVITE created or refreshed a leg of, told when a 2xx
    /// of sipark's is never ACKed.
    call: Option<CallId>,
}

/// A request whose final answer comes later.
struct Kept {
    response: ResponseTemplate,
    /// Its body, when asked to keep it (a relayed offer).
    body: Box<[u8]>,
}

struct ClientEntry<O> {
    txn: ClientTxn,
    owner: O,
    /// Keep the request past the final response ([`Transactions::keep_sent`]).
    keep: bool,
    /// An INVITE to CANCEL as soon as it has a provisional response: a
    /// CANCEL may not be sent before one (§9.1).
    cancel_pending: bool,
}

/// A response a transaction user sends.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub code: u16,
    pub reason: &'a str,
    /// The To tag when the request had none: the dialog's local tag. A
    /// final response without one gets a fresh tag (§8.2.6.2).
    pub tag: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
    /// `(content type, bytes)`.
    pub body: Option<(&'a str, &'a [u8])>,
}

impl<'a> Response<'a> {
    pub const fn new(code: u16, reason: &'a str) -> Response<'a> {
        Response { code, reason, tag: None, headers: &[], body: None }
    }

    pub fn tag(self, tag: &'a [u8]) -> Response<'a> {
        Response { tag: Some(tag), ..self }
    }

    pub fn headers(self, headers: &'a [(&'a str, &'a [u8])]) -> Response<'a> {
        Response { headers, ..self }
    }

    /// An SDP body, or none when `sdp` is empty.
    pub fn sdp(self, sdp: &'a [u8]) -> Response<'a> {
        Response { body: (!sdp.is_empty()).then_some(("application/sdp", sdp)), ..self }
    }

    pub fn body(self, body: Option<(&'a str, &'a [u8])>) -> Response<'a> {
        Response { body, ..self }
    }
}

/// A response to one of sipark's requests, as its owner hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Provisional(u16),
    /// The first final response (or a 2xx from another fork).
    Final(u16),
}

/// What [`Transactions::on_response`] reports.
#[derive(Debug, Clone, Copy)]
pub struct ClientEvent<O> {
    pub id: ClientId,
    pub owner: O,
    pub reply: Reply,
}

/// The fields of a request sipark sent, as it wrote them.
#[derive(Debug, Clone, Copy)]
pub struct Sent<'a> {
    pub uri: &'a [u8],
    /// sipark's From party, without the tag.
    pub from_party: &'a [u8],
    pub from_tag: &'a [u8],
    pub call_id: &'a [u8],
    pub cseq: u32,
}

/// What a transaction timer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEvent<O> {
    /// The client transaction ended without a final response (Timer B or F).
    TimedOut { id: ClientId, owner: O },
    /// The client transaction sent its request again (Timer A or E).
    Retransmitted { owner: O },
    /// A 2xx sipark sent for `call`'s INVITE was never ACKed (§13.3.1.4).
    NotAcked { server: ServerId, call: CallId },
}

/// How a request matched (§17.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// No transaction has this key and method: a new request.
    New,
    /// A retransmission: absorbed, and the last response sent again.
    Retransmission,
    /// The ACK of a non-2xx final response: absorbed.
    Ack,
}

/// Every transaction of a shard. `O` names the owner of a client
/// transaction; this layer only hands it back.
pub struct Transactions<O> {
    server: IdMap<ServerId, ServerEntry>,
    /// Server transactions by their key ([`ServerEntry::key`], kept once,
    /// in the entry), hashed with `hasher` (peer-chosen branches).
    index: HashTable<ServerId>,
    hasher: Keyed,
    /// The hash of `key`, once written.
    key_hash: Option<u64>,
    client: IdMap<ClientId, ClientEntry<O>>,
    /// Every deadline; lingering transactions sit in its FIFOs, so
    /// `timers.fifo_len()` is how many there are.
    timers: TimerQueue<Key>,
    /// Heap size that triggers the next compaction.
    compact_at: usize,
    /// Removals until the tables are next checked for capacity to give back.
    give_back_in: u32,
    /// The index key last looked up (hashed in `key_hash`), and the one
    /// being written.
    key: Vec<u8>,
    next_key: Vec<u8>,
}

impl<O: Copy> Transactions<O> {
    /// Empty tables; `hasher` keys the index of branches (peer-chosen).
    pub fn new(hasher: Keyed) -> Transactions<O> {
        Transactions {
            server: IdMap::default(),
            index: HashTable::new(),
            hasher,
            key_hash: None,
            client: IdMap::default(),
            timers: TimerQueue::default(),
            compact_at: MIN_COMPACT,
            give_back_in: GIVE_BACK_EVERY,
            key: Vec::new(),
            next_key: Vec::new(),
        }
    }

    /// Transactions still at work: the ones counted against
    /// `max_transactions` (lingering ones have their own cap).
    pub fn live(&self) -> usize {
        (self.server.len() + self.client.len()).saturating_sub(self.timers.fifo_len())
    }

    /// Finished transactions kept to absorb retransmissions.
    pub fn lingering(&self) -> usize {
        self.timers.fifo_len()
    }

    /// Does any client transaction still wait for its final response?
    pub fn any_pending(&self) -> bool {
        self.client.values().any(|c| c.txn.pending())
    }

    /// Writes the index key of `key` in `class`, and its hash (kept while
    /// the key stays the same: a new request is looked up, then created,
    /// under one key).
    fn index_key(&mut self, key: &RequestKey<'_>, class: Method<'_>) {
        self.next_key.clear();
        key.write(class, &mut self.next_key);
        if self.next_key == self.key && self.key_hash.is_some() {
            return;
        }
        std::mem::swap(&mut self.key, &mut self.next_key);
        self.key_hash = Some(self.hasher.bytes(&self.key));
    }

    fn key_hash(&self) -> u64 {
        self.key_hash.unwrap_or_else(|| self.hasher.bytes(&self.key))
    }

    /// The class a request matches in: ACK with its INVITE.
    fn class(method: Method<'_>) -> Method<'_> {
        match method {
            Method::Ack | Method::Invite => Method::Invite,
            m => m,
        }
    }

    // ----- server transactions ------------------------------------------

    /// Matches a request with matching key `key` (§17.2.3) and
    /// absorbs what is not new: a retransmission gets the last response
    /// again, the ACK of a non-2xx is taken. An ACK that matches nothing
    /// (a 2xx's ACK) is [`Match::New`]: it belongs to the dialog.
    pub fn on_request(&mut self, env: &mut Env, now: Instant, method: Method<'_>, key: &RequestKey<'_>) -> Match {
        self.index_key(key, Self::class(method));
        let Some(id) = self.find_key() else { return Match::New };
        if method == Method::Ack {
            let completed = self.server.get(&id).is_some_and(|e| e.txn.state == ServerState::Completed);
            if !completed {
                return Match::New;
            }
            self.acked(env, now, id);
            return Match::Ack;
        }
        self.resend_response(env, id);
        Match::Retransmission
    }

    /// The INVITE transaction a CANCEL with key `key` names, if it exists
    /// (§9.2: the same branch and sent-by, or RFC 2543 fields).
    pub fn invite_of_cancel(&mut self, key: &RequestKey<'_>) -> Option<ServerId> {
        self.index_key(key, Method::Invite);
        self.find_key()
    }

    /// The server transaction whose key is the one [`Self::index_key`] wrote.
    fn find_key(&self) -> Option<ServerId> {
        let (server, key) = (&self.server, self.key.as_slice());
        let found = self.index.find(self.key_hash(), |id| server.get(id).is_some_and(|e| *e.key == *key));
        found.copied()
    }

    /// Drops `id`, indexed under `hash`, from the index.
    fn unindex(&mut self, id: ServerId, hash: u64) {
        if let Ok(e) = self.index.find_entry(hash, |x| *x == id) {
            e.remove();
        }
    }

    /// Starts the server transaction of a new request (not ACK) from `src`.
    pub fn create(
        &mut self,
        env: &mut Env,
        now: Instant,
        src: Peer,
        method: Method<'_>,
        key: &RequestKey<'_>,
    ) -> ServerId {
        let id = env.ids.server();
        self.index_key(key, Self::class(method));
        let key: Box<[u8]> = self.key.as_slice().into();
        let hash = self.key_hash();
        let kind = if method == Method::Invite { Kind::Invite } else { Kind::NonInvite };
        let txn = ServerTxn::new(kind, src, now, &env.cfg.timers);
        self.server.insert(id, ServerEntry { txn, key, hash, kept: None, call: None });
        let server = &self.server;
        self.index.insert_unique(hash, id, |id| server.get(id).map_or(0, |e| e.hash));
        id
    }

    /// Queues the guard timer of a transaction still unanswered after the
    /// request was handled (most are answered at once, and their response
    /// queued the end timer).
    pub fn guard(&mut self, id: ServerId) {
        if let Some(e) = self.server.get(&id)
            && !e.txn.is_final()
        {
            let at = e.txn.deadline();
            self.schedule(at, Key::Server(id));
        }
    }

    /// Where the responses of `id` go.
    pub fn source(&self, id: ServerId) -> Option<Peer> {
        self.server.get(&id).map(|e| e.txn.dst)
    }

    /// Has `id` sent its final response?
    pub fn is_final(&self, id: ServerId) -> bool {
        self.server.get(&id).is_some_and(|e| e.txn.is_final())
    }

    /// The call whose leg the INVITE `id` created or refreshed.
    pub fn call(&self, id: ServerId) -> Option<CallId> {
        self.server.get(&id).and_then(|e| e.call)
    }

    /// Ties the INVITE `id` to `call` (for CANCEL, and a 2xx never ACKed).
    pub fn set_call(&mut self, id: ServerId, call: CallId) {
        if let Some(e) = self.server.get_mut(&id) {
            e.call = Some(call);
        }
    }

    /// Keeps what the final response to `req`, the request of `id`, needs
    /// (and its body, with `body`), until that response, which waits on
    /// another leg ([`Transactions::respond_later`]).
    pub fn keep_request(&mut self, id: ServerId, req: &SipMessage<'_>, body: bool) {
        let Some(e) = self.server.get_mut(&id) else { return };
        if let Some(response) = ResponseTemplate::of(req, e.txn.dst.addr) {
            let body = if body { req.body().into() } else { Box::default() };
            e.kept = Some(Box::new(Kept { response, body }));
        }
    }

    /// The body kept for `id`.
    pub fn kept_body(&self, id: ServerId) -> Option<&[u8]> {
        self.server.get(&id)?.kept.as_ref().map(|k| &*k.body)
    }

    /// Sends `resp` to the request `req` of transaction `id`.
    pub fn respond(&mut self, env: &mut Env, now: Instant, id: ServerId, req: &SipMessage<'_>, resp: &Response<'_>) {
        let Some(entry) = self.server.get(&id) else { return };
        let own = Self::own_tag(env, resp);
        let tag = resp.tag.or(own.as_deref());
        let mut out = env.out.buf();
        if !response_head(&mut out, req, entry.txn.dst.addr, resp.code, resp.reason, tag) {
            env.stats.dropped.inc();
            env.out.recycle(out);
            return;
        }
        self.finish_response(env, now, id, resp, out);
    }

    /// Sends `resp` to the request kept for `id` ([`Transactions::keep_request`]),
    /// unless `id` has already sent its final response. The template is
    /// dropped with the final response: a lingering transaction answers
    /// retransmissions from the response it stored.
    pub fn respond_later(&mut self, env: &mut Env, now: Instant, id: ServerId, resp: &Response<'_>) {
        let Some(entry) = self.server.get_mut(&id) else { return };
        if entry.txn.is_final() {
            return;
        }
        let Some(kept) = entry.kept.take() else { return };
        let own = Self::own_tag(env, resp);
        let mut out = env.out.buf();
        kept.response.write(&mut out, resp.code, resp.reason, resp.tag.or(own.as_deref()));
        if resp.code < 200
            && let Some(entry) = self.server.get_mut(&id)
        {
            entry.kept = Some(kept);
        }
        self.finish_response(env, now, id, resp, out);
    }

    /// A fresh To tag for `resp` when it is final and the caller gave none
    /// (§8.2.6.2); a provisional response only carries the dialog's tag,
    /// when the caller gives it.
    fn own_tag(env: &mut Env, resp: &Response<'_>) -> Option<crate::proto::env::Tag> {
        (resp.tag.is_none() && resp.code > 100).then(|| env.tag())
    }

    /// `out` holds the status line and copied headers of `resp` for `id`:
    /// the rest is written, recorded in the transaction and sent.
    fn finish_response(&mut self, env: &mut Env, now: Instant, id: ServerId, resp: &Response<'_>, mut out: Vec<u8>) {
        for (name, value) in resp.headers {
            header(&mut out, name, value);
        }
        let (ctype, body) = resp.body.unwrap_or(("", b""));
        finish(&mut out, ctype, body);
        let t = env.cfg.timers;
        let Some(entry) = self.server.get_mut(&id) else { return };
        let dst = entry.txn.dst;
        let before = entry.txn.deadline();
        entry.txn.sent(now, resp.code, &out, &t);
        let (after, lingering) = (entry.txn.deadline(), entry.txn.lingering());
        self.reschedule(env, now, Key::Server(id), before, after, lingering);
        env.out.push(dst, out);
    }

    /// The ACK for the INVITE `id` arrived: stop retransmitting and queue
    /// its end timer.
    pub fn acked(&mut self, env: &mut Env, now: Instant, id: ServerId) {
        let t = env.cfg.timers;
        let Some(e) = self.server.get_mut(&id) else { return };
        let before = e.txn.deadline();
        if e.txn.ack(now, &t) {
            let (after, lingering) = (e.txn.deadline(), e.txn.lingering());
            self.reschedule(env, now, Key::Server(id), before, after, lingering);
        }
    }

    fn resend_response(&mut self, env: &mut Env, id: ServerId) {
        let Some(e) = self.server.get(&id) else { return };
        if e.txn.response.is_empty() {
            return;
        }
        env.out.send(e.txn.dst, &e.txn.response);
        env.stats.retransmissions.inc();
    }

    // ----- client transactions ------------------------------------------

    /// Sends `request` (whose fields are `head`, and whose branch names
    /// `id`) to `dst` and starts its transaction for `owner`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        env: &mut Env,
        now: Instant,
        id: ClientId,
        kind: Kind,
        dst: Peer,
        request: Vec<u8>,
        head: Head,
        owner: O,
    ) {
        env.out.send(dst, &request);
        let txn = ClientTxn::new(kind, dst, request, head, now, &env.cfg.timers);
        let at = txn.deadline();
        self.client.insert(id, ClientEntry { txn, owner, keep: false, cancel_pending: false });
        self.schedule(at, Key::Client(id));
    }

    /// Keeps `id`'s request until the transaction ends, not only until its
    /// final response, for an owner that may still need its fields
    /// ([`Transactions::sent`]): a recall branch answered too late.
    pub fn keep_sent(&mut self, id: ClientId) {
        if let Some(e) = self.client.get_mut(&id) {
            e.keep = true;
        }
    }

    /// The fields of `id`'s request, while it is kept.
    pub fn sent(&self, id: ClientId) -> Option<Sent<'_>> {
        let e = self.client.get(&id)?;
        let (req, head) = (&e.txn.request, &e.txn.head);
        (!req.is_empty()).then(|| Sent {
            uri: head.uri.of(req),
            from_party: head.from_party.of(req),
            from_tag: head.from_tag.of(req),
            call_id: head.call_id.of(req),
            cseq: head.cseq,
        })
    }

    /// The CSeq number of `id`'s request.
    pub fn cseq(&self, id: ClientId) -> Option<u32> {
        self.client.get(&id).map(|e| e.txn.head.cseq)
    }

    /// Sends the ACK of a 2xx to the INVITE `id` (written by the dialog
    /// layer) and keeps it for the 2xx's retransmissions.
    pub fn ack_2xx(&mut self, env: &mut Env, id: Option<ClientId>, dst: Peer, ack: Vec<u8>) {
        env.out.send(dst, &ack);
        if let Some(e) = id.and_then(|id| self.client.get_mut(&id)) {
            e.txn.ack = ack;
        }
    }

    /// Sends CANCEL for the INVITE `id` (§9.1), or, while it has had no
    /// provisional response, as soon as it has one. CANCEL shares the
    /// INVITE's branch; it is sent once and not tracked (its response
    /// matters less than the INVITE's 487).
    pub fn cancel(&mut self, env: &mut Env, id: ClientId) {
        let Some(e) = self.client.get_mut(&id) else { return };
        if !e.txn.pending() {
            return;
        }
        if e.txn.state == ClientState::Calling {
            e.cancel_pending = true;
            return;
        }
        let mut out = env.out.buf();
        write_cancel(&mut out, &e.txn.request, &e.txn.head);
        env.out.push(e.txn.dst, out);
    }

    /// A response from `src`: matched by the branch sipark wrote, absorbed
    /// when it is a retransmission (the ACK goes again), answered with an
    /// ACK when it is a non-2xx final to an INVITE, and reported.
    pub fn on_response(&mut self, env: &mut Env, now: Instant, msg: &SipMessage<'_>) -> Option<ClientEvent<O>> {
        let Some(id) = msg.top_via().ok().and_then(|v| v.branch).and_then(branch_id).and_then(ClientId::new) else {
            env.stats.dropped.inc();
            return None;
        };
        if msg.cseq().is_ok_and(|c| c.method == Method::Cancel) {
            // The answer to one of sipark's CANCELs (same branch as the
            // INVITE); the INVITE's own 487 is what matters.
            return None;
        }
        let (Some(code), Some(entry)) = (msg.status(), self.client.get_mut(&id)) else {
            env.stats.dropped.inc();
            return None;
        };
        let t = env.cfg.timers;
        let before = entry.txn.deadline();
        let effect = entry.txn.on_response(now, code, &t);
        let (after, lingering, owner) = (entry.txn.deadline(), entry.txn.lingering(), entry.owner);
        self.reschedule(env, now, Key::Client(id), before, after, lingering);
        let entry = self.client.get_mut(&id)?;
        match effect {
            ResponseEffect::Retransmission => {
                if !entry.txn.ack.is_empty() {
                    env.out.send(entry.txn.dst, &entry.txn.ack);
                }
                None
            }
            ResponseEffect::Provisional { .. } => {
                if std::mem::take(&mut entry.cancel_pending) {
                    self.cancel(env, id);
                }
                Some(ClientEvent { id, owner, reply: Reply::Provisional(code) })
            }
            ResponseEffect::Final => {
                if entry.txn.kind == Kind::Invite && code >= 300 {
                    let to = msg.header(HeaderName::To).unwrap_or_default();
                    let mut ack = Vec::with_capacity(400);
                    write_non_2xx_ack(&mut ack, &entry.txn.request, &entry.txn.head, to);
                    env.out.send(entry.txn.dst, &ack);
                    entry.txn.ack = ack;
                }
                // Nothing is built from the request any more.
                if !entry.keep {
                    entry.txn.request = Vec::new();
                }
                Some(ClientEvent { id, owner, reply: Reply::Final(code) })
            }
        }
    }

    // ----- timers ---------------------------------------------------------

    /// The next instant [`Transactions::handle_timer`] has work.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    /// Runs the earliest timer due at `now`, if any; reports what its
    /// owner must hear.
    pub fn handle_timer(&mut self, env: &mut Env, now: Instant) -> Option<TxnEvent<O>> {
        let (at, key) = self.timers.pop_due(now)?;
        let t = env.cfg.timers;
        match key {
            Key::Server(id) => {
                let e = self.server.get_mut(&id)?;
                if e.txn.deadline() != Some(at) {
                    return None;
                }
                match e.txn.on_timer(now, &t) {
                    TimerAction::Nothing => None,
                    TimerAction::Retransmit => {
                        let at = e.txn.deadline();
                        self.resend_response(env, id);
                        self.schedule(at, Key::Server(id));
                        None
                    }
                    TimerAction::Terminate { timed_out } => {
                        let e = self.server.remove(&id)?;
                        self.unindex(id, e.hash);
                        self.give_back();
                        let not_acked = timed_out && (200..300).contains(&e.txn.final_code);
                        e.call.filter(|_| not_acked).map(|call| TxnEvent::NotAcked { server: id, call })
                    }
                }
            }
            Key::Client(id) => {
                let e = self.client.get_mut(&id)?;
                if e.txn.deadline() != Some(at) {
                    return None;
                }
                match e.txn.on_timer(now, &t) {
                    TimerAction::Nothing => None,
                    TimerAction::Retransmit => {
                        let (at, dst, owner) = (e.txn.deadline(), e.txn.dst, e.owner);
                        if !e.txn.request.is_empty() {
                            env.out.send(dst, &e.txn.request);
                        }
                        env.stats.retransmissions.inc();
                        self.schedule(at, Key::Client(id));
                        Some(TxnEvent::Retransmitted { owner })
                    }
                    TimerAction::Terminate { timed_out } => {
                        let e = self.client.remove(&id)?;
                        self.give_back();
                        timed_out.then_some(TxnEvent::TimedOut { id, owner: e.owner })
                    }
                }
            }
        }
    }

    fn schedule(&mut self, at: Option<Instant>, key: Key) {
        let Some(at) = at else { return };
        self.timers.push(at, key);
        if self.timers.heap_len() > self.compact_at {
            self.compact();
        }
    }

    /// Queues a transaction's deadline after a change at `now` moved it
    /// from `before` to `after`. A `lingering` transaction goes to the
    /// timer FIFOs, and past `max_lingering` the oldest lingering one is
    /// ended early. An unchanged deadline is already queued.
    fn reschedule(
        &mut self,
        env: &mut Env,
        now: Instant,
        key: Key,
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
                while self.timers.fifo_len() > env.cfg.limits.max_lingering {
                    let Some((at, key)) = self.timers.pop_oldest_fifo() else { break };
                    self.evict(env, key, at);
                }
            }
            _ => self.schedule(after, key),
        }
    }

    /// Ends lingering transaction `key` before its time (its deadline is
    /// `at`), to keep the shard under `max_lingering`. A retransmission
    /// that arrives later is taken as a new request (absorbed by the
    /// dialog for an ACK or BYE, answered again for a REGISTER).
    fn evict(&mut self, env: &mut Env, key: Key, at: Instant) {
        let evicted = match key {
            Key::Server(id) if self.server.get(&id).is_some_and(|e| e.txn.deadline() == Some(at)) => {
                if let Some(e) = self.server.remove(&id) {
                    self.unindex(id, e.hash);
                }
                true
            }
            Key::Client(id) if self.client.get(&id).is_some_and(|e| e.txn.deadline() == Some(at)) => {
                self.client.remove(&id);
                true
            }
            _ => false,
        };
        if evicted {
            env.stats.transactions_evicted.inc();
        }
    }

    /// Gives back the capacity the tables kept from a busier moment, once
    /// they are three-quarters empty ([`sparse`]): a burst of load does not
    /// stay resident after it has passed. Checked every
    /// [`GIVE_BACK_EVERY`] removals.
    fn give_back(&mut self) {
        self.give_back_in -= 1;
        if self.give_back_in > 0 {
            return;
        }
        self.give_back_in = GIVE_BACK_EVERY;
        if sparse(self.server.len(), self.server.capacity()) {
            self.server.shrink_to(2 * self.server.len());
        }
        if sparse(self.index.len(), self.index.capacity()) {
            let server = &self.server;
            self.index.shrink_to(2 * self.index.len(), |id| server.get(id).map_or(0, |e| e.hash));
        }
        if sparse(self.client.len(), self.client.capacity()) {
            self.client.shrink_to(2 * self.client.len());
        }
        self.timers.give_back();
    }

    /// Drops heap entries whose transaction is gone or has moved its
    /// deadline. Amortised O(1): it runs when the heap has doubled since
    /// the last compaction.
    fn compact(&mut self) {
        let (server, client) = (&self.server, &self.client);
        self.timers.retain_heap(|at, key| match key {
            Key::Server(id) => server.get(&id).is_some_and(|e| e.txn.deadline() == Some(at)),
            Key::Client(id) => client.get(&id).is_some_and(|e| e.txn.deadline() == Some(at)),
        });
        self.compact_at = (2 * self.timers.heap_len()).max(MIN_COMPACT);
    }
}

#[cfg(test)]
mod tests;
