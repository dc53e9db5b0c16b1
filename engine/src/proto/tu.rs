//! What the transaction users of a shard (park services, bridge,
//! notifier, registrar) share: the context through which they reach the
//! layers below ([`Ctx`]), and the names they give their client
//! transactions ([`Owner`]), which the transaction layer stores and hands
//! back with each event without knowing what they mean.

use std::time::Instant;

use super::dialog::{Dialog, Outgoing, Side};
use super::env::Env;
use super::ids::{CallId, ClientId, ServerId};
use super::media::streams::Streams;
use super::notify::Notifier;
use super::registrar::Registrar;
use super::reject::{Intent, Reject};
use super::sip::Peer;
use super::sip::parse::SipMessage;
use super::sip::write::write_branch;
use super::txn::{Kind, Response, Transactions};

/// A request a transaction user handles: where it came from, the message,
/// and the server transaction that answers it.
#[derive(Clone, Copy)]
pub struct Incoming<'a, 'm> {
    pub src: Peer,
    pub msg: &'a SipMessage<'m>,
    pub server: ServerId,
}

/// The lower layers a transaction user borrows for one input.
pub struct Ctx<'a> {
    pub now: Instant,
    pub env: &'a mut Env,
    pub txns: &'a mut Transactions<Owner>,
    pub registrar: &'a mut Registrar,
    pub notifier: &'a mut Notifier,
    /// The music-on-hold streams.
    pub media: &'a mut Streams,
}

impl Ctx<'_> {
    /// Answers the request `req` of `server` with `reject`, counted as a
    /// refusal of a request made for `intent`.
    pub fn reject(&mut self, server: ServerId, req: &SipMessage<'_>, reject: Reject, intent: Intent) {
        self.count(reject, intent);
        let mut scratch = Vec::new();
        let header = reject.header(&mut scratch);
        let (code, reason) = reject.status();
        let resp = Response::new(code, reason).headers(header.as_slice());
        self.txns.respond(self.env, self.now, server, req, &resp);
    }

    /// Answers the request kept for `server` with `reject`
    /// ([`Transactions::respond_later`]), counted as for `intent`.
    pub fn reject_later(&mut self, server: ServerId, reject: Reject, intent: Intent) {
        if self.txns.is_final(server) {
            return;
        }
        self.count(reject, intent);
        let (code, reason) = reject.status();
        self.txns.respond_later(self.env, self.now, server, &Response::new(code, reason));
    }

    /// Sends `req` on `dialog` with its next CSeq, in a new client
    /// transaction for `owner`.
    pub fn request(&mut self, dialog: &mut Dialog, req: &Outgoing<'_>, owner: Owner) -> ClientId {
        dialog.local_cseq += 1;
        let id = self.env.ids.client();
        let mut branch = Vec::with_capacity(32);
        write_branch(&mut branch, self.env.shard, id.get());
        let mut out = Vec::with_capacity(800);
        let head = dialog.write(self.env, &mut out, dialog.local_cseq, &branch, req);
        let kind = if req.method == "INVITE" { Kind::Invite } else { Kind::NonInvite };
        self.txns.start(self.env, self.now, id, kind, dialog.destination(), out, head, owner);
        id
    }

    /// ACKs the 2xx to sipark's INVITE `invite` (CSeq `cseq`) on `dialog`
    /// (§13.2.2.4), and keeps the ACK for the 2xx's retransmissions.
    pub fn ack(&mut self, dialog: &Dialog, invite: Option<ClientId>, cseq: u32, body: Option<(&str, &[u8])>) {
        // An ACK has no transaction; its branch is unique all the same.
        let mut branch = Vec::with_capacity(32);
        write_branch(&mut branch, self.env.shard, self.env.ids.client().get());
        let mut out = Vec::with_capacity(600);
        dialog.write(self.env, &mut out, cseq, &branch, &Outgoing { method: "ACK", headers: &[], body });
        self.txns.ack_2xx(self.env, invite, dialog.destination(), out);
    }

    fn count(&self, reject: Reject, intent: Intent) {
        if let Some(c) = reject.counter(intent, &self.env.stats) {
            c.inc();
        }
    }
}

/// The owner of a client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A park-info NOTIFY (the notifier).
    Notify,
    /// The re-INVITE of the parked leg for a retrieve.
    Retrieve { call: CallId },
    /// The re-INVITE of the parked leg for an answered recall.
    RecallBridge { call: CallId },
    /// A re-INVITE putting the parked leg back on hold.
    Rehold { call: CallId },
    /// One recall branch.
    Recall { call: CallId },
    /// A request relayed from one bridged leg to the other (the bridge).
    Relay(Relay),
    /// BYE, sipfrag NOTIFY: nobody waits on the outcome.
    Detached,
}

/// A request relayed between the bridged legs of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relay {
    pub call: CallId,
    /// Its server transaction on the leg it came from.
    pub server: ServerId,
    pub from: Side,
    /// An INVITE or UPDATE: an offer/answer exchange, one at a time.
    pub offer: bool,
    /// An INVITE, whose 2xx needs an ACK.
    pub invite: bool,
}
