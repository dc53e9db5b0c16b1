//! The notifier: out-of-dialog NOTIFYs that tell devices what is parked
//! (docs/park-info.md). Each change is written once per document kind a
//! device needs ([`bodies`]), then sent to every device in its own
//! non-INVITE client transaction.
//!
//! Who is told, and what the documents list, is the caller's to say (the
//! park knows its calls and watchers, the registrar the devices): this
//! module writes and sends.

pub mod bodies;

use std::time::Instant;

use tracing::warn;

use super::config::{BodyKind, NotifySet};
use super::env::Env;
use super::registrar::Target;
use super::sip::Peer;
use super::sip::write::{Request, Routes, write_branch, write_request};
use super::txn::{Kind, Transactions};
use bodies::{Shown, Spot};

/// One change to tell: the extension, the calls to list, and who hears.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub spot: Spot<'a>,
    /// Parked calls oldest first, then at most the one that just left.
    pub calls: &'a [Shown<'a>],
    /// The extensions whose devices are told (each device is addressed to
    /// its own extension, `To: <sip:name@tenant>`).
    pub names: &'a [&'a [u8]],
    pub targets: &'a [Target],
    /// The documents of a device that no User-Agent rule decided for.
    pub documents: NotifySet,
}

/// Writes and sends park-info NOTIFYs.
#[derive(Debug, Default)]
pub struct Notifier {
    /// One buffer per document kind, kept between changes.
    docs: [Vec<u8>; 3],
    /// From, To, branch and Call-ID of the NOTIFY being written, kept
    /// between changes.
    scratch: [Vec<u8>; 4],
}

impl Notifier {
    /// Sends `change` to its devices, each NOTIFY in a client transaction
    /// owned by `owner`. Past `max_transactions` a NOTIFY is skipped and
    /// counted as failed.
    pub fn send<O: Copy>(
        &mut self,
        env: &mut Env,
        txns: &mut Transactions<O>,
        now: Instant,
        owner: O,
        change: &Change<'_>,
        retrieve_fac: &str,
    ) {
        let mut union = NotifySet::default();
        for t in change.targets {
            union.0 |= t.notify.unwrap_or(change.documents).0;
        }
        if change.targets.is_empty() || union.0 == 0 {
            return;
        }
        for (i, kind) in BodyKind::ALL.into_iter().enumerate() {
            if union.contains(kind) {
                self.docs[i].clear();
                bodies::write(kind, &mut self.docs[i], &change.spot, retrieve_fac, change.calls.iter().copied());
            }
        }
        let tenant = change.spot.tenant;
        let [from, to, branch, call_id] = &mut self.scratch;
        from.clear();
        from.extend_from_slice(b"<sip:park@");
        from.extend_from_slice(tenant);
        from.push(b'>');
        for t in change.targets {
            let set = t.notify.unwrap_or(change.documents);
            for (i, kind) in BodyKind::ALL.into_iter().enumerate().filter(|(_, k)| set.contains(*k)) {
                if txns.live() >= env.cfg.limits.max_transactions {
                    env.stats.overload_rejects.inc();
                    env.stats.notifies_failed.inc();
                    continue;
                }
                to.clear();
                to.extend_from_slice(b"<sip:");
                to.extend_from_slice(change.names.get(t.name).copied().unwrap_or_default());
                to.push(b'@');
                to.extend_from_slice(tenant);
                to.push(b'>');
                let id = env.ids.client();
                let tag = env.tag();
                call_id.clear();
                env.write_call_id(call_id);
                branch.clear();
                write_branch(branch, env.shard, id.get());
                let body = &self.docs[i];
                let mut out = Vec::with_capacity(700 + body.len());
                let head = write_request(
                    &mut out,
                    &Request {
                        method: "NOTIFY",
                        uri: &t.uri,
                        transport: t.dst.transport,
                        advertise: env.local.via(t.dst.transport),
                        branch,
                        routes: t.route.as_deref().map_or(Routes::None, Routes::One),
                        from,
                        from_tag: &tag,
                        to,
                        call_id,
                        cseq: 1,
                        contact: Some(env.local.contact(t.dst.transport)),
                        allow: false,
                        headers: &[("Event", kind.event().as_bytes()), ("Subscription-State", b"active")],
                        body: Some((kind.content_type(), body)),
                    },
                );
                txns.start(env, now, id, Kind::NonInvite, t.dst, out, head, owner);
                env.stats.notifies_sent.inc();
            }
        }
    }

    /// A device answered a NOTIFY with `code`.
    pub fn on_final(env: &Env, code: u16, src: Peer) {
        if code >= 300 {
            env.stats.notifies_failed.inc();
            if matches!(code, 481 | 489 | 501) {
                warn!(code, peer = %src, "device refused park-info NOTIFY");
            }
        }
    }

    /// A NOTIFY got no answer (Timer F).
    pub fn on_timeout(env: &Env) {
        env.stats.notifies_failed.inc();
        warn!("park-info NOTIFY timed out (Timer F)");
    }
}
