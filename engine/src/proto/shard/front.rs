//! What a message meets first: the answer to a request that could be read
//! but is not well formed, the checks every request passes (headers that
//! must be readable, a Request-URI scheme sipark serves, Max-Forwards,
//! Require, the transaction cap), transaction matching (RFC 3261 §17.2.3,
//! RFC 2543 fields without a magic cookie), admission (trusted peers and
//! digest authentication, docs/decisions/0013), and dispatch to the layer
//! that owns it. Responses go to the transaction layer, and from there to
//! the owner of their client transaction. docs/decisions/0020 gives the
//! answers to the RFC 4475 messages.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::Shard;
use crate::proto::auth::{Lookup, Request as AuthRequest, Verdict, is_digest};
use crate::proto::config::{Admission, TenantPolicy, is_extension};
use crate::proto::ids::ServerId;
use crate::proto::notify::Notifier;
use crate::proto::park::parse_replaces;
use crate::proto::reject::{Intent, Reject};
use crate::proto::sip::Peer;
use crate::proto::sip::parse::{HeaderName, Method, ParseError, SipMessage};
use crate::proto::sip::write::{ALLOW, finish, header, response_head};
use crate::proto::tu::{Incoming, Owner};
use crate::proto::txn::{Match, Reply, RequestKey, Response, TxnEvent};

impl Shard {
    /// Answers `req` without a transaction (for requests that cannot have
    /// one, or must not get one).
    pub(super) fn reply_stateless(
        &mut self,
        src: Peer,
        req: &SipMessage<'_>,
        code: u16,
        reason: &str,
        extra: &[(&str, &[u8])],
    ) {
        let tag = self.env.tag();
        self.reply_stateless_tagged(src, req, code, reason, &tag, extra);
    }

    /// [`Shard::reply_stateless`] with the To tag `tag` (for a To without one).
    pub(super) fn reply_stateless_tagged(
        &mut self,
        src: Peer,
        req: &SipMessage<'_>,
        code: u16,
        reason: &str,
        tag: &[u8],
        extra: &[(&str, &[u8])],
    ) {
        let mut out = self.env.out.buf();
        if response_head(&mut out, req, src.addr, code, reason, Some(tag)) {
            for (name, value) in extra {
                header(&mut out, name, value);
            }
            finish(&mut out, "", b"");
            self.env.out.push(src, out);
        } else {
            self.env.stats.dropped.inc();
            self.env.out.recycle(out);
        }
    }

    /// A message that was read but is not well formed ([`ParseError`] after
    /// the header section: an unsupported SIP version, white space in the
    /// Request-URI, a duplicated header, a bad Content-Length, a datagram
    /// shorter than its Content-Length):
    /// a request is answered 505 or 400 naming the fault (never an ACK), a
    /// response dropped. Both are counted.
    pub(super) fn on_malformed(&mut self, src: Peer, msg: &SipMessage<'_>, error: ParseError) {
        self.env.stats.parse_errors.inc();
        match msg.method() {
            Some(method) if method != Method::Ack => {
                let (code, reason) = error.answer();
                self.reply_stateless(src, msg, code, reason, &[]);
            }
            _ => self.env.stats.dropped.inc(),
        }
    }

    /// A request must carry readable Via, From, To, Call-ID and CSeq, a
    /// Request-URI of a scheme sipark serves, and a CSeq method that is its
    /// own (an unknown method goes on, to be answered 501). Returns its
    /// transaction key, or answers 400 or 416 (never an ACK) and returns
    /// `None`.
    fn checked<'m>(&mut self, src: Peer, msg: &SipMessage<'m>, method: Method<'_>) -> Option<RequestKey<'m>> {
        let (code, reason) = match (msg.cseq(), msg.top_via(), msg.from_hdr(), msg.to_hdr(), msg.call_id()) {
            (Ok(cseq), Ok(_), Ok(_), Ok(_), Ok(_)) => {
                // The top Via parsed above; the others must parse too.
                if let Some(Err(e)) = msg.lower_vias().find(Result::is_err) {
                    (400, e.reason())
                } else {
                    match msg.request_uri_parsed() {
                        None => (400, "Bad Request-URI"),
                        // §8.2.2.1 (RFC 4475 unkscm, novelsc).
                        Some(uri) if !uri.is_supported() => (416, "Unsupported URI Scheme"),
                        Some(_)
                            if cseq.method != method
                                && !matches!(method, Method::Ack | Method::Cancel | Method::Other(_)) =>
                        {
                            (400, "CSeq method does not match")
                        }
                        Some(_) => match RequestKey::of(msg) {
                            Some(key) => return Some(key),
                            None => (400, "Bad Request"),
                        },
                    }
                }
            }
            (cseq, via, from, to, call_id) => {
                let e = [cseq.err(), via.err(), from.err(), to.err(), call_id.err()].into_iter().flatten().next();
                (400, e.map_or("Bad Request", |e| e.reason()))
            }
        };
        self.env.stats.parse_errors.inc();
        if method != Method::Ack {
            self.reply_stateless(src, msg, code, reason, &[]);
        }
        None
    }

    pub(super) fn on_request(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, method: Method<'_>) {
        let Some(key) = self.checked(src, msg, method) else { return };
        // Checked readable above.
        let (Ok(cseq), Ok(to), Ok(call_id)) = (msg.cseq(), msg.to_hdr(), msg.call_id()) else { return };
        match method {
            Method::Cancel => {
                match self.txns.invite_of_cancel(&key) {
                    Some(invite) => {
                        self.reply_stateless(src, msg, 200, "OK", &[]);
                        let (mut cx, park) = self.parts(now);
                        park.cancel(&mut cx, invite);
                    }
                    None => self.reply_stateless(src, msg, 481, "Call/Transaction Does Not Exist", &[]),
                }
                return;
            }
            Method::Ack => {
                if self.txns.on_request(&mut self.env, now, method, &key) == Match::New {
                    let (mut cx, park) = self.parts(now);
                    park.on_ack(&mut cx, src, msg, call_id, to.tag(), cseq.seq);
                }
                return;
            }
            _ => {}
        }
        if self.txns.on_request(&mut self.env, now, method, &key) != Match::New {
            return;
        }
        // sipark is the endpoint of an out-of-dialog request, which it
        // serves as if Max-Forwards were positive (RFC 4475 zeromf); an
        // in-dialog one may be relayed to the other leg of a bridge.
        if let (Some(Ok(0)), Some(_)) = (msg.max_forwards(), to.tag()) {
            self.reply_stateless(src, msg, 483, "Too Many Hops", &[]);
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
        if !unsupported.is_empty() {
            self.reply_stateless(src, msg, 420, "Bad Extension", &[("Unsupported", &unsupported)]);
            return;
        }
        // Overload control (`shed.rs`): only new out-of-dialog work.
        if to.tag().is_none() && self.shed(now, src, msg, method, &key) {
            return;
        }
        if self.txns.live() >= self.env.cfg.limits.max_transactions {
            self.env.stats.overload_rejects.inc();
            self.reply_stateless(src, msg, 503, "Service Unavailable", &[("Retry-After", b"5")]);
            return;
        }
        let server = self.txns.create(&mut self.env, now, src, method, &key);
        match to.tag() {
            Some(tag) => {
                let (mut cx, park) = self.parts(now);
                park.in_dialog(&mut cx, Incoming { src, msg, server }, method, call_id, tag, cseq.seq);
            }
            None => self.out_of_dialog(now, src, msg, method, server),
        }
        // Most requests are answered at once, and their response queued the
        // end timer; only one still waiting needs its guard.
        self.txns.guard(server);
    }

    /// An out-of-dialog request with its new server transaction `server`.
    fn out_of_dialog(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, method: Method<'_>, server: ServerId) {
        let reject = match method {
            Method::Invite => return self.on_invite(now, src, msg, server),
            Method::Register => return self.on_register(now, src, msg, server),
            Method::Options => {
                let allow = [("Allow", ALLOW), ("Accept", b"application/sdp".as_slice())];
                self.txns.respond(&mut self.env, now, server, msg, &Response::new(200, "OK").headers(&allow));
                return;
            }
            // No event package can be subscribed to: park-info is sent
            // unsolicited, so there is no Allow-Events to list.
            Method::Subscribe | Method::Notify => Reject::BadEvent,
            Method::Bye | Method::Info | Method::Update | Method::Prack => Reject::NoDialog,
            Method::Other(_) => Reject::NotImplemented,
            _ => Reject::MethodNotAllowed,
        };
        let (mut cx, _) = self.parts(now);
        cx.reject(server, msg, reject, Intent::Other);
    }

    /// What an out-of-dialog INVITE to `user` is for, for counting its refusal.
    pub(super) fn intent(&self, user: &[u8], replaces: bool) -> Intent {
        let cfg = &self.env.cfg;
        if replaces || user.starts_with(cfg.retrieve_fac.as_bytes()) {
            Intent::Retrieve
        } else if user.starts_with(cfg.park_fac.as_bytes()) || user.starts_with(cfg.group_park_fac.as_bytes()) {
            Intent::Park
        } else {
            Intent::Other
        }
    }

    /// An INVITE to a feature code: the tenant and its policy, admission,
    /// then the park services.
    fn on_invite(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, server: ServerId) {
        let Some(ruri) = msg.request_uri_parsed() else { return };
        let replaces = msg.header_raw(b"Replaces");
        let intent = self.intent(ruri.user.unwrap_or_default(), replaces.is_some());
        let cfg = Arc::clone(&self.env.cfg);
        let result = match replaces {
            Some(value) => self.on_replaces(now, src, msg, server, value, &cfg),
            None => match self.park.detached_policy(&cfg, ruri.host) {
                None => Err(Reject::UnknownTenant),
                Some(policy) => {
                    let removed = matches!(policy, Cow::Owned(_));
                    let user = msg.from_hdr().ok().and_then(|f| f.uri.user).unwrap_or_default();
                    if !self.admit(now, Incoming { src, msg, server }, ruri.host, &policy, user, intent) {
                        return;
                    }
                    let (mut cx, park) = self.parts(now);
                    park.invite(&mut cx, Incoming { src, msg, server }, &ruri, &policy, removed)
                }
            },
        };
        if let Err(r) = result {
            let (mut cx, _) = self.parts(now);
            cx.reject(server, msg, r, intent);
        }
    }

    /// An INVITE with Replaces: read it, admit the caller as a user of its
    /// From tenant, then the park's retrieve.
    fn on_replaces(
        &mut self,
        now: Instant,
        src: Peer,
        msg: &SipMessage<'_>,
        server: ServerId,
        value: &[u8],
        cfg: &crate::proto::config::Config,
    ) -> Result<(), Reject> {
        let replaces = parse_replaces(value)?;
        let Ok(from) = msg.from_hdr() else { return Ok(()) };
        // Authenticated as a user of the caller's tenant (From host), before
        // anything about the named dialog is told.
        let policy = self.park.detached_policy(cfg, from.uri.host).ok_or(Reject::NotOfTenant)?;
        let user = from.uri.user.unwrap_or_default();
        if !self.admit(now, Incoming { src, msg, server }, from.uri.host, &policy, user, Intent::Retrieve) {
            return Ok(());
        }
        let (mut cx, park) = self.parts(now);
        park.replaces(&mut cx, Incoming { src, msg, server }, &replaces)
    }

    /// Whether an out-of-dialog REGISTER or INVITE from `src` for `tenant`,
    /// acting as `user` (the To user of a REGISTER, the From user of an
    /// INVITE), may go on (docs/decisions/0013-digest-auth.md). When not,
    /// it has been answered: 401 with fresh challenges (none or unusable
    /// credentials for this realm, unknown nonce, a nonce that may not be
    /// used again; `stale=true` for an expired one), 403 (wrong password or
    /// unknown user, a locked user, a user acting as someone else, a source
    /// outside the trusted peers of a tenant with no credentials), 400
    /// (credentials that cannot be read). Failures count against the
    /// source's and the user's budgets (docs/decisions/0019).
    fn admit(
        &mut self,
        now: Instant,
        req: Incoming<'_, '_>,
        tenant: &[u8],
        policy: &TenantPolicy,
        user: &[u8],
        intent: Intent,
    ) -> bool {
        let Incoming { src, msg, server } = req;
        let refuse = |shard: &mut Shard, r: Reject| {
            let (mut cx, _) = shard.parts(now);
            cx.reject(server, msg, r, intent);
            false
        };
        match self.env.cfg.admission(policy, src.addr.ip()) {
            Admission::Trusted | Admission::Open => return true,
            Admission::Refused => {
                debug!(src = %src.addr, "request from outside the trusted peers refused");
                return refuse(self, Reject::SourceNotTrusted);
            }
            Admission::Digest => {}
        }
        let realm = tenant.to_ascii_lowercase();
        let (Some(method), Some(uri)) = (msg.method(), msg.request_uri()) else { return false };
        let req = AuthRequest { method: method.as_bytes(), uri, realm: &realm };
        let unix = self.env.unix(now);
        let ip = src.addr.ip();
        let mut stale = false;
        // Credentials of another scheme are none (RFC 4475 regaut01).
        let creds = msg
            .headers()
            .iter()
            .filter(|h| h.raw_name.eq_ignore_ascii_case(b"Authorization") && is_digest(h.value))
            .take(4);
        for h in creds {
            let guard = &self.guard;
            let verdict = self.auth.verify(h.value, &req, unix, &mut self.nonces, |u| {
                match std::str::from_utf8(u).ok().and_then(|name| policy.users.get(name)) {
                    Some(_) if guard.refuses(&realm, u, ip, now) => Lookup::Refused,
                    Some(p) => Lookup::Password(&p.0),
                    None => Lookup::Unknown,
                }
            });
            match verdict {
                Verdict::Ok(name) if name == user => {
                    self.guard.success(now, &realm, &name, ip);
                    return true;
                }
                Verdict::Ok(_) => return refuse(self, Reject::AnotherUser),
                Verdict::WrongPassword(name) => {
                    debug!(src = %src.addr, "digest authentication failed");
                    let cfg = Arc::clone(&self.env.cfg);
                    self.guard.failure(now, ip, Some((&realm, &name)), &cfg);
                    return refuse(self, Reject::Forbidden);
                }
                Verdict::UnknownUser => {
                    debug!(src = %src.addr, "digest authentication failed");
                    let cfg = Arc::clone(&self.env.cfg);
                    self.guard.failure(now, ip, None, &cfg);
                    return refuse(self, Reject::Forbidden);
                }
                Verdict::Refused => {
                    self.env.stats.auth_locked_refusals.inc();
                    return refuse(self, Reject::Forbidden);
                }
                Verdict::Malformed(reason) => return refuse(self, Reject::BadCredentials(reason)),
                Verdict::Stale => stale = true,
                Verdict::Reused(_) => self.env.stats.auth_nonce_reuses.inc(),
                Verdict::UnknownNonce | Verdict::WrongRealm => {}
            }
        }
        self.env.stats.auth_challenges.inc();
        let salt = self.env.random();
        let [sha, md5] = self.auth.challenges(&realm, unix, salt, stale);
        let extra = [("WWW-Authenticate", &sha[..]), ("WWW-Authenticate", &md5[..])];
        self.txns.respond(&mut self.env, now, server, msg, &Response::new(401, "Unauthorized").headers(&extra));
        false
    }

    /// A REGISTER: its extension and tenant, admission, the registrar, the
    /// 200 with every binding, and what a new device shows at once: its
    /// extension's parks and its park group's.
    fn on_register(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>, server: ServerId) {
        let Ok(to) = msg.to_hdr() else { return };
        let result = (|| {
            if !to.uri.is_sip() {
                return Err(Reject::ToNotSip);
            }
            let tenant = to.uri.host;
            let cfg = Arc::clone(&self.env.cfg);
            let policy = cfg.tenant(tenant).ok_or(Reject::UnknownTenant)?;
            let user = to.uri.user.filter(|u| is_extension(u)).ok_or(Reject::NoExtension)?;
            if !self.admit(now, Incoming { src, msg, server }, tenant, policy, user, Intent::Other) {
                return Ok(());
            }
            let r = self.registrar.register(&mut self.env, now, msg, src, tenant, user)?;
            let mut extra: Vec<(&str, &[u8])> = r.contacts.iter().map(|c| ("Contact", c.as_slice())).collect();
            // The Path is echoed to a UA that supports it (RFC 3327 §5.3).
            let supports_path = msg
                .header_values(HeaderName::Supported)
                .flat_map(|v| v.split(|&b| b == b','))
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"path"));
            if supports_path && let Some(p) = &r.path {
                extra.push(("Path", p));
            }
            self.txns.respond(&mut self.env, now, server, msg, &Response::new(200, "OK").headers(&extra));
            if r.fresh.is_empty() {
                return Ok(());
            }
            let mut shown = Vec::new();
            shown.extend(self.park.showing(tenant, user));
            if let Some(group) = policy.group_of(user) {
                for m in group.iter().filter(|m| m.as_bytes() != user) {
                    shown.extend(self.park.showing(tenant, m.as_bytes()));
                }
            }
            let (mut cx, park) = self.parts(now);
            for ext in shown {
                for uri in &r.fresh {
                    park.notify(&mut cx, ext, None, Some(uri));
                }
            }
            Ok(())
        })();
        if let Err(r) = result {
            let (mut cx, _) = self.parts(now);
            cx.reject(server, msg, r, Intent::Other);
        }
    }

    pub(super) fn on_response(&mut self, now: Instant, src: Peer, msg: &SipMessage<'_>) {
        let Some(ev) = self.txns.on_response(&mut self.env, now, msg) else { return };
        let Reply::Final(code) = ev.reply else { return };
        if ev.owner == Owner::Notify {
            Notifier::on_final(&self.env, code, src);
            return;
        }
        let (mut cx, park) = self.parts(now);
        park.on_final(&mut cx, src, ev.id, ev.owner, code, msg);
    }

    pub(super) fn on_txn_event(&mut self, now: Instant, ev: TxnEvent<Owner>) {
        match ev {
            TxnEvent::Retransmitted { owner: Owner::Notify } => self.env.stats.notifies_retransmitted.inc(),
            TxnEvent::Retransmitted { .. } => {}
            TxnEvent::TimedOut { owner: Owner::Notify, .. } => Notifier::on_timeout(&self.env),
            TxnEvent::TimedOut { id, owner } => {
                let (mut cx, park) = self.parts(now);
                park.on_timeout(&mut cx, id, owner);
            }
            TxnEvent::NotAcked { server, call } => {
                let (mut cx, park) = self.parts(now);
                park.not_acked(&mut cx, server, call);
            }
        }
    }
}
