//! The registrar (RFC 3261 §10.3) and the location service: the
//! registered devices of each `ext@tenant`, their expiry, and where a
//! request for an extension goes (its devices, or the outbound proxy).
//!
//! [`Registrar::register`] applies a REGISTER whose sender was admitted;
//! answering it and telling new devices what is parked is the caller's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::{Config, NotifySet, glob_match};
use super::env::Env;
use super::ids::{ExtId, Keyed};
use super::named::{Name, Named};
use super::reject::Reject;
use super::sip::Peer;
use super::sip::parse::{Contact, HeaderName, SipMessage, Uri};
use super::timers::TimerQueue;

/// Longest Path (all values joined) kept for a binding.
const MAX_PATH: usize = 2048;

/// A registered contact.
#[derive(Debug)]
pub struct Binding {
    pub uri: Box<[u8]>,
    /// Source of the REGISTER (address and transport), or the first hop
    /// of its Path: where requests for this contact go.
    pub flow: Peer,
    pub expires_at: Instant,
    pub call_id: Box<[u8]>,
    /// The documents this device is sent, when its User-Agent matched a
    /// `notify_ua` rule; `None` follows the tenant's `notify`.
    pub notify: Option<NotifySet>,
    /// The REGISTER's `Path` values (RFC 3327), comma-joined: the Route of
    /// every request sipark sends this contact.
    pub path: Option<Arc<[u8]>>,
}

/// The bindings of one extension.
#[derive(Debug, Default)]
pub struct Aor {
    pub bindings: Vec<Binding>,
    /// The earliest expiry timer already queued; a new one is queued only
    /// when a binding expires sooner, so refreshes do not pile up entries.
    expiry_at: Option<Instant>,
}

/// What an accepted REGISTER changed.
#[derive(Debug)]
pub struct Registered {
    pub ext: ExtId,
    /// A `Contact` value per current binding, with its `expires` (§10.3 step 8).
    pub contacts: Vec<Vec<u8>>,
    /// The Path, to echo to a UA that supports it (RFC 3327 §5.3).
    pub path: Option<Arc<[u8]>>,
    /// Contacts new to the extension, or back with a new Call-ID: devices
    /// to send what they show at once.
    pub fresh: Vec<Box<[u8]>>,
}

/// One device (or, in outbound-proxy mode, one extension at the proxy)
/// that a NOTIFY or recall INVITE goes to.
#[derive(Debug)]
pub struct Target {
    /// Request-URI: the registered contact, or `sip:<ext>@<tenant>`.
    pub uri: Box<[u8]>,
    pub dst: Peer,
    /// The `Route` value to write, if any (Path, or the outbound proxy).
    pub route: Option<Arc<[u8]>>,
    /// Index, in the names asked for, of the extension this device is of.
    pub name: usize,
    /// The documents this device is sent, if a User-Agent rule decided.
    pub notify: Option<NotifySet>,
}

/// Every binding of a shard.
pub struct Registrar {
    aors: Named<Aor>,
    timers: TimerQueue<ExtId>,
    bindings: usize,
    /// Outbound-proxy mode: where requests to extensions go.
    proxy: Option<ProxyRoute>,
}

/// The outbound proxy as requests to it are written.
struct ProxyRoute {
    peer: Peer,
    /// The `Route` every request carries (`<proxy;lr>`).
    route: Arc<[u8]>,
}

impl Registrar {
    pub fn new(cfg: &Config, hasher: Keyed) -> Registrar {
        Registrar {
            aors: Named::new(hasher),
            timers: TimerQueue::default(),
            bindings: 0,
            proxy: cfg.outbound_proxy.as_ref().map(|p| {
                let lr = Uri::parse(p.uri.as_bytes()).is_ok_and(|u| u.param(b"lr").is_some());
                let route = format!("<{}{}>", p.uri, if lr { "" } else { ";lr" });
                ProxyRoute { peer: p.peer, route: route.into_bytes().into() }
            }),
        }
    }

    /// Bindings held.
    pub fn bindings(&self) -> usize {
        self.bindings
    }

    /// The extension `user` of `tenant`, if it has bindings.
    pub fn find(&mut self, tenant: &[u8], user: &[u8]) -> Option<ExtId> {
        self.aors.find(tenant, user)
    }

    /// Applies the REGISTER `msg` from `src` for `user` of `tenant` (§10.3
    /// steps 5 to 8): validates every contact before changing anything.
    pub fn register(
        &mut self,
        env: &mut Env,
        now: Instant,
        msg: &SipMessage<'_>,
        src: Peer,
        tenant: &[u8],
        user: &[u8],
    ) -> Result<Registered, Reject> {
        let cfg = Arc::clone(&env.cfg);
        let header_expires = match msg.expires() {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => return Err(Reject::BadExpires),
            None => None,
        };
        let mut changes: Vec<(&[u8], u32)> = Vec::new();
        let mut star = false;
        for c in msg.contacts() {
            match c {
                Ok(Contact::Star) => star = true,
                // sipark sends its NOTIFYs to the contacts it keeps.
                Ok(Contact::Addr(na)) if !na.uri.is_supported() => return Err(Reject::UnsupportedContact),
                Ok(Contact::Addr(na)) => {
                    let exp = match na.param(b"expires") {
                        Some(Some(v)) => std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.trim().parse::<u32>().ok())
                            .ok_or(Reject::BadExpiresParam)?,
                        _ => header_expires.unwrap_or(cfg.default_expires),
                    };
                    changes.push((na.uri.raw, exp));
                }
                Err(e) => return Err(Reject::BadRequest(e.reason())),
            }
        }
        if star && (!changes.is_empty() || header_expires != Some(0)) {
            return Err(Reject::StarNeedsZero);
        }
        if changes.iter().any(|(_, e)| *e != 0 && *e < cfg.min_expires) {
            return Err(Reject::IntervalTooBrief(cfg.min_expires));
        }
        let existing = self.aors.find(tenant, user);
        let current: &[Binding] = existing.and_then(|id| self.aors.get(id)).map_or(&[], |a| &a.bindings);
        let after = {
            let mut n = current.len();
            for (uri, exp) in &changes {
                let exists = current.iter().any(|b| *b.uri == **uri);
                match (exists, *exp) {
                    (true, 0) => n -= 1,
                    (false, 0) | (true, _) => {}
                    (false, _) => n += 1,
                }
            }
            n
        };
        if !star && after > cfg.max_contacts as usize {
            return Err(Reject::TooManyContacts);
        }
        if after > current.len() && self.bindings + (after - current.len()) > cfg.limits.max_bindings {
            return Err(Reject::RegistrarFull);
        }
        // RFC 3327: the proxies on the way in, which requests to these
        // contacts must go back through.
        let mut path: Vec<u8> = Vec::new();
        for h in msg.headers().iter().filter(|h| h.raw_name.eq_ignore_ascii_case(b"Path")) {
            if !path.is_empty() {
                path.extend_from_slice(b", ");
            }
            path.extend_from_slice(h.value);
        }
        if path.len() > MAX_PATH {
            return Err(Reject::PathTooLong);
        }
        let flow = super::dialog::first_hop(Some(&path).filter(|p| !p.is_empty()).map(|p| &p[..]), src);
        let path: Option<Arc<[u8]>> = (!path.is_empty()).then(|| path.into());
        // A device whose User-Agent matches a rule gets that rule's documents.
        let notify = msg.header(HeaderName::UserAgent).and_then(|ua| {
            let policy = cfg.tenant(tenant)?;
            policy.notify_ua.iter().find(|(p, _)| glob_match(p.as_bytes(), ua)).map(|(_, set)| *set)
        });
        let call_id = msg.call_id().unwrap_or_default();
        let ext = self.aors.find_or_insert(&mut env.ids, tenant, user, Aor::default);
        let Some(aor) = self.aors.get_mut(ext) else { return Err(Reject::RegistrarFull) };
        let before = aor.bindings.len();
        let mut fresh: Vec<Box<[u8]>> = Vec::new();
        if star {
            aor.bindings.clear();
        }
        for (uri, exp) in changes {
            let pos = aor.bindings.iter().position(|b| *b.uri == *uri);
            if exp == 0 {
                if let Some(p) = pos {
                    aor.bindings.remove(p);
                }
                continue;
            }
            let expires_at = now + Duration::from_secs(u64::from(exp.min(cfg.max_expires)));
            match pos {
                Some(p) => {
                    let b = &mut aor.bindings[p];
                    if *b.call_id != *call_id {
                        fresh.push(uri.into());
                        b.call_id = call_id.into();
                    }
                    b.flow = flow;
                    b.path.clone_from(&path);
                    b.notify = notify;
                    b.expires_at = expires_at;
                }
                None => {
                    fresh.push(uri.into());
                    let path = path.clone();
                    aor.bindings.push(Binding {
                        uri: uri.into(),
                        flow,
                        expires_at,
                        call_id: call_id.into(),
                        notify,
                        path,
                    });
                }
            }
        }
        self.bindings = self.bindings + aor.bindings.len() - before;
        let contacts = aor
            .bindings
            .iter()
            .map(|b| {
                let mut v = Vec::with_capacity(b.uri.len() + 20);
                v.push(b'<');
                v.extend_from_slice(&b.uri);
                v.extend_from_slice(b">;expires=");
                super::sip::write::push_dec(&mut v, b.expires_at.saturating_duration_since(now).as_secs());
                v
            })
            .collect();
        self.schedule(ext);
        self.drop_if_idle(ext);
        env.stats.registrations.inc();
        Ok(Registered { ext, contacts, path, fresh })
    }

    /// Queues the extension's earliest expiry, unless one at or before it
    /// is already queued.
    fn schedule(&mut self, ext: ExtId) {
        let Some(aor) = self.aors.get_mut(ext) else { return };
        let Some(at) = aor.bindings.iter().map(|b| b.expires_at).min() else { return };
        if aor.expiry_at.is_none_or(|t| at < t) {
            aor.expiry_at = Some(at);
            self.timers.push(at, ext);
        }
    }

    fn drop_if_idle(&mut self, ext: ExtId) {
        if self.aors.get(ext).is_some_and(|a| a.bindings.is_empty()) {
            self.aors.remove(ext);
        }
    }

    /// The next instant [`Registrar::handle_timer`] has work.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    /// Runs the earliest expiry timer due at `now`: its expired bindings go.
    pub fn handle_timer(&mut self, now: Instant) {
        let Some((at, ext)) = self.timers.pop_due(now) else { return };
        let Some(aor) = self.aors.get_mut(ext) else { return };
        if aor.expiry_at != Some(at) {
            return;
        }
        aor.expiry_at = None;
        let before = aor.bindings.len();
        aor.bindings.retain(|b| b.expires_at > now);
        self.bindings -= before - aor.bindings.len();
        self.schedule(ext);
        self.drop_if_idle(ext);
    }

    /// Where sipark's out-of-dialog requests to the extensions `names` of
    /// `tenant` go. In outbound-proxy mode: one request per extension,
    /// `sip:<ext>@<tenant>` through the proxy, which forks it. Else one per
    /// live binding (only the contact `only` when given), with the
    /// binding's Path as Route.
    pub fn targets(&mut self, now: Instant, tenant: &[u8], names: &[&[u8]], only: Option<&[u8]>) -> Vec<Target> {
        let mut out = Vec::new();
        if let Some(ProxyRoute { peer: proxy, route }) = &self.proxy {
            if only.is_some() {
                return out;
            }
            for (i, name) in names.iter().enumerate() {
                let mut uri = Vec::with_capacity(8 + name.len() + tenant.len());
                uri.extend_from_slice(b"sip:");
                uri.extend_from_slice(name);
                uri.push(b'@');
                uri.extend_from_slice(tenant);
                out.push(Target { uri: uri.into(), dst: *proxy, route: Some(route.clone()), name: i, notify: None });
            }
            return out;
        }
        for (i, name) in names.iter().enumerate() {
            let Some(aor) = self.aors.find(tenant, name).and_then(|id| self.aors.get(id)) else { continue };
            for b in aor.bindings.iter().filter(|b| only.is_none_or(|o| *o == *b.uri) && b.expires_at > now) {
                out.push(Target { uri: b.uri.clone(), dst: b.flow, route: b.path.clone(), name: i, notify: b.notify });
            }
        }
        out
    }

    /// The bindings of `ext`, and its name.
    pub fn aor(&self, ext: ExtId) -> Option<(Name<'_>, &Aor)> {
        self.aors.entry(ext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::env::WallClock;
    use crate::proto::ids::Seed;

    fn env() -> Env {
        let wall = WallClock { at: Instant::now(), unix: Duration::from_secs(1_795_543_200) };
        Env::new(0, Arc::new(Config::default()), wall, &Seed::from_u64(2))
    }

    fn register(contacts: &str, call_id: &str) -> Vec<u8> {
        format!(
            "REGISTER sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKr\r\n\
             From: <sip:103@acme.example>;tag=r\r\nTo: <sip:103@acme.example>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 REGISTER\r\n{contacts}Content-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn peer() -> Peer {
        Peer::udp("10.0.0.1:5062".parse().expect("addr"))
    }

    #[test]
    fn bindings_are_added_refreshed_expired_and_the_extension_forgotten() {
        let (mut env, now) = (env(), Instant::now());
        let mut reg = Registrar::new(&env.cfg, Seed::from_u64(2).hasher(1));
        let msg = register("Contact: <sip:103@10.0.0.1:5062>;expires=60\r\nContact: <sip:103@10.0.0.2>\r\n", "c1");
        let r = reg.register(&mut env, now, &SipMessage::parse(&msg).expect("parse"), peer(), b"Acme.Example", b"103");
        let r = r.expect("accepted");
        assert_eq!(r.fresh.len(), 2);
        assert_eq!(r.contacts[0], b"<sip:103@10.0.0.1:5062>;expires=60");
        assert_eq!(r.contacts[1], b"<sip:103@10.0.0.2>;expires=3600");
        assert_eq!(reg.bindings(), 2);
        let again =
            reg.register(&mut env, now, &SipMessage::parse(&msg).expect("parse"), peer(), b"acme.example", b"103");
        assert!(again.expect("refresh").fresh.is_empty(), "same Call-ID: a refresh, nothing to resend");
        let t = reg.targets(now, b"acme.example", &[b"103"], None);
        assert_eq!(t.len(), 2);
        while let Some(at) = reg.next_timeout().filter(|at| *at <= now + Duration::from_secs(61)) {
            reg.handle_timer(at);
        }
        assert_eq!(reg.bindings(), 1, "the 60 s binding expired");
        while let Some(at) = reg.next_timeout() {
            reg.handle_timer(at);
        }
        assert_eq!((reg.bindings(), reg.find(b"acme.example", b"103")), (0, None), "idle extensions are dropped");
    }

    #[test]
    fn refusals_change_nothing() {
        let (mut env, now) = (env(), Instant::now());
        let mut reg = Registrar::new(&env.cfg, Seed::from_u64(2).hasher(1));
        let cases: [(&str, Reject); 4] = [
            ("Contact: <sip:103@10.0.0.1>;expires=10\r\n", Reject::IntervalTooBrief(60)),
            ("Contact: <sip:103@10.0.0.1>;expires=x\r\n", Reject::BadExpiresParam),
            ("Contact: *\r\n", Reject::StarNeedsZero),
            ("Expires: nine\r\nContact: <sip:103@10.0.0.1>\r\n", Reject::BadExpires),
        ];
        for (contacts, want) in cases {
            let msg = register(contacts, "c1");
            let got =
                reg.register(&mut env, now, &SipMessage::parse(&msg).expect("parse"), peer(), b"a.example", b"103");
            assert_eq!(got.err(), Some(want), "{contacts}");
        }
        let many: String = (0..11).map(|i| format!("Contact: <sip:103@10.0.0.{i}>\r\n")).collect();
        let msg = register(&many, "c1");
        let got = reg.register(&mut env, now, &SipMessage::parse(&msg).expect("parse"), peer(), b"a.example", b"103");
        assert_eq!(got.err(), Some(Reject::TooManyContacts));
        assert_eq!((reg.bindings(), reg.find(b"a.example", b"103")), (0, None));
    }
}
