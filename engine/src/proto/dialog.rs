//! The dialog layer (RFC 3261 §12): the dialogs sipark holds with its
//! peers, built once, from the request sipark answers (UAS) or from the
//! 2xx to an INVITE of sipark's (UAC); the requests written inside them;
//! and the index that finds a dialog from an in-dialog request.
//!
//! A [`Dialog`] lives in the call that uses it (its usage, in pjsip's
//! words): the parked party's in the call itself, the other party's in the
//! state that has one. The [`DialogIndex`] maps `(Call-ID, local tag)` to
//! that place, a [`Leg`]; it keeps no copy of the key bytes, which it reads
//! back through the caller's lookup.

use hashbrown::HashTable;

use super::env::{Env, Tag};
use super::ids::{CallId, Keyed, ServerId};
use super::sip::parse::{Contact, NameAddr, SipMessage};
use super::sip::peer::PackedPeer;
use super::sip::sdp::Origin;
use super::sip::write::{Head, Request, Routes, route_values, write_request, write_routes};
use super::sip::{Peer, Transport};
use super::timers::sparse;

/// Which leg of a call a dialog is: `A` the parked party's, `B` the
/// other party's (the retriever, or the parker a recall reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// Where a dialog lives: one leg of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    pub call: CallId,
    pub side: Side,
}

/// A 2xx to the peer's INVITE, waiting for its ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingAck {
    pub server: ServerId,
    pub cseq: u32,
}

/// The parts of a dialog's [`Text`], in the order they are stored.
const CALL_ID: usize = 0;
const LOCAL: usize = 1;
const REMOTE: usize = 2;
const TARGET: usize = 3;
const ROUTES: usize = 4;
const SDP: usize = 5;
const PARTS: usize = 6;

/// The text of a dialog, in one allocation: Call-ID, sipark's party, the
/// peer's party, the peer's target, the route set (as the `Route` lines
/// it is written as) and the peer's last SDP. A part that changes (a
/// target refresh, a new SDP) writes the whole text again.
#[derive(Debug, Clone)]
struct Text {
    buf: Box<[u8]>,
    /// Where each part but the last ends.
    ends: [u32; PARTS - 1],
}

impl Text {
    fn new(parts: [&[u8]; PARTS]) -> Text {
        let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; PARTS - 1];
        for (i, part) in parts.into_iter().enumerate() {
            buf.extend_from_slice(part);
            if let Some(end) = ends.get_mut(i) {
                *end = u32::try_from(buf.len()).unwrap_or(u32::MAX);
            }
        }
        Text { buf: buf.into(), ends }
    }

    fn part(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let end = self.ends.get(i).map_or(self.buf.len(), |e| *e as usize);
        self.buf.get(start..end).unwrap_or_default()
    }

    /// The same text with part `i` replaced by `new`.
    fn with(&self, i: usize, new: &[u8]) -> Text {
        Text::new(std::array::from_fn(|j| if j == i { new } else { self.part(j) }))
    }
}

/// One dialog sipark holds with a peer (§12), and the session state of
/// the INVITE usage on it (SDP origin, the peer's last SDP).
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Call-ID, parties, target, route set and the peer's last SDP.
    text: Text,
    /// sipark's tag ([`Dialog::local_tag`]), as its 64 bits.
    tag: u64,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// Where the peer's requests came from (or where its responses came
    /// from): where in-dialog requests go unless the route set says else.
    peer: PackedPeer,
    /// A 2xx to the peer's INVITE waiting for its ACK.
    pub pending_ack: Option<PendingAck>,
    /// The version of sipark's SDP origin towards this peer; its session
    /// id is the local tag's bits ([`Dialog::origin`]).
    sdp_version: u32,
}

impl Dialog {
    /// The dialog sipark creates as UAS by answering the INVITE `msg` from
    /// `src` (§12.1.1): local tag `tag`, route set from Record-Route, the
    /// peer's Contact `target` as remote target, `remote_sdp` what is kept
    /// of the request's SDP.
    pub fn uas(msg: &SipMessage<'_>, src: Peer, target: &[u8], tag: Tag, remote_sdp: &[u8]) -> Dialog {
        let call_id = msg.call_id().unwrap_or_default();
        let local = msg.to_hdr().map(|t| t.raw).unwrap_or_default();
        let remote = msg.from_hdr().map(|f| f.raw).unwrap_or_default();
        let mut routes = Vec::new();
        write_routes(&mut routes, msg.record_routes().filter_map(Result::ok).map(|r| r.raw));
        Dialog {
            text: Text::new([call_id, local, remote, target, &routes, remote_sdp]),
            tag: tag.bits(),
            local_cseq: 0,
            remote_cseq: msg.cseq().map_or(0, |c| c.seq),
            peer: PackedPeer::new(src),
            pending_ack: None,
            sdp_version: 1,
        }
    }

    /// The dialog a 2xx `resp` from `src` creates for sipark's INVITE
    /// (§12.1.2), which went out with `call_id`, From `local` (without its
    /// tag) and tag `tag`, CSeq 1, to `request_uri`. The remote target is
    /// the 2xx's Contact, or `request_uri` when it has none (a 2xx without
    /// Contact breaks §12.1.2, but the dialog must still be ACKed and ended).
    /// `None` when the 2xx's To cannot be read.
    pub fn uac(
        resp: &SipMessage<'_>,
        src: Peer,
        call_id: &[u8],
        local: &[u8],
        tag: Tag,
        request_uri: &[u8],
    ) -> Option<Dialog> {
        let remote = resp.to_hdr().ok()?.raw;
        let target = first_contact(resp).unwrap_or(request_uri);
        let mut route_set: Vec<&[u8]> = resp.record_routes().filter_map(Result::ok).map(|r| r.raw).collect();
        route_set.reverse();
        let mut routes = Vec::new();
        write_routes(&mut routes, route_set);
        Some(Dialog {
            text: Text::new([call_id, local, remote, target, &routes, resp.body()]),
            tag: tag.bits(),
            local_cseq: 1,
            remote_cseq: 0,
            peer: PackedPeer::new(src),
            pending_ack: None,
            sdp_version: 1,
        })
    }

    pub fn call_id(&self) -> &[u8] {
        self.text.part(CALL_ID)
    }

    /// sipark's party as it goes in From of requests sipark sends (without tag).
    pub fn local(&self) -> &[u8] {
        self.text.part(LOCAL)
    }

    /// The peer's party as it goes in To (with the peer's tag).
    pub fn remote(&self) -> &[u8] {
        self.text.part(REMOTE)
    }

    /// The peer's Contact URI: the Request-URI of in-dialog requests.
    pub fn remote_target(&self) -> &[u8] {
        self.text.part(TARGET)
    }

    /// The route set, in the order the Route headers are written.
    pub fn route_set(&self) -> impl Iterator<Item = &[u8]> {
        route_values(self.text.part(ROUTES))
    }

    /// The last SDP the peer sent (for a parked leg, its hold basis).
    pub fn remote_sdp(&self) -> &[u8] {
        self.text.part(SDP)
    }

    /// Keeps `sdp` as the peer's last SDP.
    pub fn set_remote_sdp(&mut self, sdp: &[u8]) {
        if sdp != self.remote_sdp() {
            self.text = self.text.with(SDP, sdp);
        }
    }

    /// Where the peer's requests came from (or its responses): where
    /// in-dialog requests go unless the route set says else.
    pub fn peer(&self) -> Peer {
        self.peer.get()
    }

    /// The peer's transport.
    pub fn transport(&self) -> Transport {
        self.peer.transport()
    }

    /// The peer was last heard from `src`.
    pub fn set_peer(&mut self, src: Peer) {
        self.peer = PackedPeer::new(src);
    }

    /// sipark's SDP origin towards this peer: a session id as random as
    /// the local tag (its bits, 63 of them) and the version of the last
    /// description sipark sent.
    pub fn origin(&self) -> Origin {
        Origin { session: Origin::new(self.tag).session, version: u64::from(self.sdp_version) }
    }

    /// The origin of a new description towards this peer: its version up.
    pub fn bump_origin(&mut self) -> Origin {
        self.sdp_version = self.sdp_version.wrapping_add(1);
        self.origin()
    }

    /// sipark's tag in this dialog.
    pub fn local_tag(&self) -> Tag {
        Tag::from_bits(self.tag)
    }

    /// The peer's tag.
    pub fn remote_tag(&self) -> Option<&[u8]> {
        NameAddr::parse(self.remote()).ok()?.tag()
    }

    /// A target refresh (§12.2): the peer's new Contact.
    pub fn set_remote_target(&mut self, target: &[u8]) {
        if target != self.remote_target() {
            self.text = self.text.with(TARGET, target);
        }
    }

    /// Is this the dialog of `(call_id, local_tag)`?
    pub fn is(&self, call_id: &[u8], local_tag: &[u8]) -> bool {
        *self.local_tag() == *local_tag && self.call_id() == call_id
    }

    /// Where in-dialog requests go: the first Route hop when it is an IP
    /// literal, else the address the peer last used (symmetric
    /// signalling, which also works for phones behind NAT).
    pub fn destination(&self) -> Peer {
        first_hop(self.route_set().next(), self.peer.get())
    }

    /// Writes the in-dialog request `req` with CSeq `cseq` and branch
    /// `branch` (§12.2.1.1) into `out`.
    pub fn write(&self, env: &Env, out: &mut Vec<u8>, cseq: u32, branch: &[u8], req: &Outgoing<'_>) -> Head {
        let dst = self.destination();
        let with_contact = matches!(req.method, "INVITE" | "UPDATE" | "REFER" | "NOTIFY");
        write_request(
            out,
            &Request {
                method: req.method,
                uri: self.remote_target(),
                transport: dst.transport,
                advertise: env.local.via(dst.transport),
                branch,
                routes: Routes::Block(self.text.part(ROUTES)),
                from: self.local(),
                from_tag: &self.local_tag(),
                to: self.remote(),
                call_id: self.call_id(),
                cseq,
                contact: with_contact.then(|| env.local.contact(dst.transport)),
                allow: with_contact,
                headers: req.headers,
                body: req.body,
            },
        )
    }
}

/// A request sipark sends inside a dialog: its method, the headers it
/// carries after Contact, and its body.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub method: &'a str,
    pub headers: &'a [(&'a str, &'a [u8])],
    /// `(content type, bytes)`.
    pub body: Option<(&'a str, &'a [u8])>,
}

impl<'a> Outgoing<'a> {
    pub const BYE: Outgoing<'static> = Outgoing { method: "BYE", headers: &[], body: None };

    pub const fn new(method: &'a str) -> Outgoing<'a> {
        Outgoing { method, headers: &[], body: None }
    }
}

/// A [`Leg`] in 8 bytes, as the dialog index keeps it: the call id, and
/// the side in the top bit (ids stay below 2^63: [`crate::proto::ids::Ids`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot(u64);

const SIDE_B: u64 = 1 << 63;

impl Slot {
    fn of(leg: Leg) -> Slot {
        Slot(leg.call.get() | if leg.side == Side::B { SIDE_B } else { 0 })
    }

    fn leg(self) -> Option<Leg> {
        let side = if self.0 & SIDE_B != 0 { Side::B } else { Side::A };
        CallId::new(self.0 & !SIDE_B).map(|call| Leg { call, side })
    }
}

/// The dialog index: `(Call-ID, local tag)` → the [`Leg`] holding the
/// dialog. Keyed SipHash, as a peer chooses Call-IDs.
pub struct DialogIndex {
    table: HashTable<Slot>,
    hasher: Keyed,
}

impl DialogIndex {
    pub fn new(hasher: Keyed) -> DialogIndex {
        DialogIndex { table: HashTable::new(), hasher }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn hash_of(&self, call_id: &[u8], local_tag: &[u8]) -> u64 {
        self.hasher.pair(call_id, local_tag)
    }

    /// The hash `dialog` is indexed under (for [`DialogIndex::remove_hashed`]
    /// once the dialog itself is gone).
    pub fn hash(&self, dialog: &Dialog) -> u64 {
        self.hash_of(dialog.call_id(), &dialog.local_tag())
    }

    /// Removes `leg`, indexed under `hash`.
    pub fn remove_hashed(&mut self, hash: u64, leg: Leg) {
        let slot = Slot::of(leg);
        if let Ok(e) = self.table.find_entry(hash, |&s| s == slot) {
            e.remove();
        }
    }

    /// The leg whose dialog is `(call_id, local_tag)`; `lookup` reads a
    /// leg's dialog.
    pub fn find<'d>(
        &self,
        call_id: &[u8],
        local_tag: &[u8],
        lookup: impl Fn(Leg) -> Option<&'d Dialog>,
    ) -> Option<Leg> {
        let hash = self.hash_of(call_id, local_tag);
        let found = self.table.find(hash, |s| s.leg().and_then(&lookup).is_some_and(|d| d.is(call_id, local_tag)));
        found.and_then(|s| s.leg())
    }

    /// Indexes `dialog`, held by `leg`; `lookup` reads the dialogs of the
    /// legs already indexed (when the table grows).
    pub fn insert<'d>(&mut self, leg: Leg, dialog: &Dialog, lookup: impl Fn(Leg) -> Option<&'d Dialog>) {
        let hash = self.hash(dialog);
        let hasher = self.hasher;
        self.table.insert_unique(hash, Slot::of(leg), |s| {
            s.leg().and_then(&lookup).map_or(0, |d| hasher.pair(d.call_id(), &d.local_tag()))
        });
    }

    /// Gives back the capacity a busier moment left, once three-quarters
    /// empty ([`sparse`]); `lookup` reads the dialogs of the legs indexed.
    pub fn give_back<'d>(&mut self, lookup: impl Fn(Leg) -> Option<&'d Dialog>) {
        if sparse(self.table.len(), self.table.capacity()) {
            let hasher = self.hasher;
            let len = self.table.len();
            self.table.shrink_to(2 * len, |s| {
                s.leg().and_then(&lookup).map_or(0, |d| hasher.pair(d.call_id(), &d.local_tag()))
            });
        }
    }

    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Removes `leg`, whose dialog is `dialog`.
    pub fn remove(&mut self, leg: Leg, dialog: &Dialog) {
        self.remove_hashed(self.hash(dialog), leg);
    }

    /// Moves the index entry of `dialog` from `from` to `to` (a dialog
    /// that changes hands, as when a REFER splits a bridge).
    pub fn rehome(&mut self, from: Leg, to: Leg, dialog: &Dialog) {
        let hash = self.hash(dialog);
        let from = Slot::of(from);
        if let Some(s) = self.table.find_mut(hash, |&s| s == from) {
            *s = Slot::of(to);
        }
    }
}

/// The URI of the first Contact of `msg` that sipark can send a request
/// to (SIP, SIPS or tel).
pub fn first_contact<'m>(msg: &SipMessage<'m>) -> Option<&'m [u8]> {
    msg.contacts().find_map(|c| match c {
        Ok(Contact::Addr(na)) if na.uri.is_supported() => Some(na.uri.raw),
        _ => None,
    })
}

/// The first hop of a Route value (`<uri>` or several, comma-separated)
/// when its host is an IP literal, else `peer`. A first hop that is `peer`
/// itself keeps `peer`'s flow, so a stream connection is reused.
pub fn first_hop(route: Option<&[u8]>, peer: Peer) -> Peer {
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
            let addr = std::net::SocketAddr::new(ip, port);
            Some(if addr == peer.addr { peer } else { Peer { addr, transport } })
        })
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ids::Seed;

    fn peer() -> Peer {
        Peer::udp("10.0.0.1:5062".parse().expect("addr"))
    }

    const INVITE: &[u8] = b"INVITE sip:*68103@acme.example SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKp1\r\n\
        Record-Route: <sip:10.0.0.9;lr>\r\n\
        From: \"Alice\" <sip:alice@acme.example>;tag=a1\r\n\
        To: <sip:*68103@acme.example>\r\nCall-ID: c1\r\nCSeq: 4 INVITE\r\n\
        Contact: <sip:alice@10.0.0.1:5062>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";

    fn tag(s: &[u8; 16]) -> Tag {
        Tag::parse(s).expect("a tag sipark writes")
    }

    #[test]
    fn a_uas_dialog_takes_its_parts_from_the_request() {
        let msg = SipMessage::parse(INVITE).expect("parse");
        let t = tag(b"0123456789abcdef");
        let d = Dialog::uas(&msg, peer(), b"sip:alice@10.0.0.1:5062", t, msg.body());
        assert_eq!(d.call_id(), b"c1");
        assert_eq!(d.local(), b"<sip:*68103@acme.example>");
        assert_eq!(d.remote(), b"\"Alice\" <sip:alice@acme.example>;tag=a1");
        assert_eq!(d.remote_tag(), Some(&b"a1"[..]));
        assert_eq!(d.remote_target(), b"sip:alice@10.0.0.1:5062");
        assert_eq!(d.remote_cseq, 4);
        assert_eq!(d.route_set().collect::<Vec<_>>(), [&b"<sip:10.0.0.9;lr>"[..]]);
        assert_eq!(d.remote_sdp(), b"v=0\n");
        assert_eq!(d.destination().addr, "10.0.0.9:5060".parse().expect("addr"), "an IP first hop is used");
        assert!(d.is(b"c1", &t));
        assert!(!d.is(b"c2", &t));
    }

    #[test]
    fn a_target_refresh_keeps_the_other_parts() {
        let msg = SipMessage::parse(INVITE).expect("parse");
        let mut d = Dialog::uas(&msg, peer(), b"sip:alice@10.0.0.1:5062", tag(b"0123456789abcdef"), msg.body());
        d.set_remote_target(b"sip:alice@192.0.2.7:5070;transport=tcp");
        assert_eq!(d.remote_target(), b"sip:alice@192.0.2.7:5070;transport=tcp");
        assert_eq!((d.call_id(), d.local()), (&b"c1"[..], &b"<sip:*68103@acme.example>"[..]));
    }

    #[test]
    fn a_uac_dialog_without_contact_targets_the_request_uri() {
        let ok = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsp0.1\r\n\
            Record-Route: <sip:10.0.0.8;lr>\r\nRecord-Route: <sip:10.0.0.9;lr>\r\n\
            From: <sip:park@acme.example>;tag=s1\r\nTo: <sip:101@acme.example>;tag=d9\r\n\
            Call-ID: r1@sipark\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let msg = SipMessage::parse(ok).expect("parse");
        let t = tag(b"0123456789abcdef");
        let d = Dialog::uac(&msg, peer(), b"r1@sipark", b"<sip:park@acme.example>", t, b"sip:101@10.0.0.1")
            .expect("a dialog");
        assert_eq!(d.remote_target(), b"sip:101@10.0.0.1");
        assert_eq!(d.remote(), b"<sip:101@acme.example>;tag=d9");
        assert_eq!(d.local_cseq, 1);
        let hops: Vec<&[u8]> = d.route_set().collect();
        assert_eq!(hops, [&b"<sip:10.0.0.9;lr>"[..], b"<sip:10.0.0.8;lr>"], "reversed (§12.1.2)");
    }

    #[test]
    fn a_route_set_is_written_as_received_and_read_back_whole() {
        // Two values in one header and one more, the first with a folded
        // display name: each goes out as its own Route line, unchanged.
        let inv = b"INVITE sip:*68103@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK1\r\n\
            Record-Route: \"Edge\r\n proxy\" <sip:10.0.0.7;lr>, <sip:10.0.0.8;lr>\r\nRecord-Route: <sip:p.example;lr>\r\n\
            From: <sip:alice@acme.example>;tag=a1\r\nTo: <sip:*68103@acme.example>\r\nCall-ID: c1\r\n\
            CSeq: 4 INVITE\r\nContent-Length: 0\r\n\r\n";
        let msg = SipMessage::parse(inv).expect("parse");
        let mut d = Dialog::uas(&msg, peer(), b"sip:alice@10.0.0.1:5062", tag(b"0123456789abcdef"), b"");
        let want: [&[u8]; 3] = [b"\"Edge\r\n proxy\" <sip:10.0.0.7;lr>", b"<sip:10.0.0.8;lr>", b"<sip:p.example;lr>"];
        assert_eq!(d.route_set().collect::<Vec<_>>(), want);
        assert_eq!(d.destination().addr, "10.0.0.7:5060".parse().expect("addr"));
        d.set_remote_sdp(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n");
        assert_eq!(d.route_set().collect::<Vec<_>>(), want, "a new SDP keeps the route set");
        assert_eq!((d.call_id(), d.remote_target()), (&b"c1"[..], &b"sip:alice@10.0.0.1:5062"[..]));
        let seed = Seed::from_u64(1);
        let wall = crate::proto::env::WallClock { at: std::time::Instant::now(), unix: std::time::Duration::ZERO };
        let env = Env::new(0, std::sync::Arc::default(), wall, &seed);
        let mut out = Vec::new();
        d.write(&env, &mut out, 5, b"z9hG4bKsp0.1", &Outgoing::BYE);
        let text = String::from_utf8_lossy(&out);
        let routes: Vec<&str> = text.split("\r\n").filter(|l| l.starts_with("Route:")).collect();
        assert_eq!(routes, ["Route: \"Edge", "Route: <sip:10.0.0.8;lr>", "Route: <sip:p.example;lr>"]);
        assert!(text.contains("Route: \"Edge\r\n proxy\" <sip:10.0.0.7;lr>\r\nRoute: <sip:10.0.0.8;lr>\r\n"));
    }

    #[test]
    fn the_index_finds_rehomes_and_forgets_legs() {
        let msg = SipMessage::parse(INVITE).expect("parse");
        let d = Dialog::uas(&msg, peer(), b"sip:alice@10.0.0.1:5062", tag(b"0123456789abcdef"), msg.body());
        let t = d.local_tag();
        let mut index = DialogIndex::new(Seed::from_u64(3).hasher(9));
        let (a, b) = (
            Leg { call: CallId::new(1).expect("id"), side: Side::A },
            Leg { call: CallId::new((1 << 63) - 1).expect("id"), side: Side::B },
        );
        index.insert(a, &d, |_| Some(&d));
        assert_eq!(index.find(b"c1", &t, |_| Some(&d)), Some(a));
        assert_eq!(index.find(b"c1", b"other", |_| Some(&d)), None);
        index.rehome(a, b, &d);
        assert_eq!(index.find(b"c1", &t, |_| Some(&d)), Some(b), "the largest id and side B are kept whole");
        index.remove(b, &d);
        assert!(index.is_empty());
    }

    #[test]
    fn first_hops() {
        let p = peer();
        assert_eq!(first_hop(None, p), p);
        assert_eq!(first_hop(Some(b"<sip:proxy.example;lr>"), p), p, "a name is not resolved");
        let tls = first_hop(Some(b"<sips:192.0.2.1;lr>, <sip:x>"), p);
        assert_eq!((tls.addr, tls.transport), ("192.0.2.1:5061".parse().expect("addr"), Transport::Tls));
    }
}
