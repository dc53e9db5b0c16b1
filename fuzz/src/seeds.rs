//! Seed inputs for `shard_datagrams` that reach deep states: a whole park
//! cycle (register, park, NOTIFY answered, retrieve by 3PCC, bridged, hung
//! up), written by driving a [`Driver`] as the fuzz target will, and
//! answering what the shard sends with what a phone would. Random bytes
//! rarely get past a start line; mutations of these get to the dialogs.

use std::net::SocketAddr;

use sipark::proto::sip::parse::{HeaderName, SipMessage};

use crate::{Driver, frame, source};

/// The phone of extension 103 (input slot 0), the parked caller (slot 1)
/// and the retriever (slot 2).
const DEVICE: u16 = 0;
const CALLER: u16 = 1;
const RETRIEVER: u16 = 2;

const SDP_CALLER: &str = "v=0\r\no=caller 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
                          m=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
const SDP_RETRIEVER: &str = "v=0\r\no=desk 7 7 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n\
                             m=audio 4100 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

/// An input being written, and everything the shard sent so far.
struct Script {
    driver: Driver,
    input: Vec<u8>,
    sent: Vec<(SocketAddr, Vec<u8>)>,
}

impl Script {
    fn new() -> Script {
        Script { driver: Driver::new(), input: Vec::new(), sent: Vec::new() }
    }

    /// Sends `dgram` from the party in input slot `slot` (0 to 5), after
    /// empty datagrams (dropped) that bring the turn round to it.
    fn send(&mut self, slot: u16, dgram: &[u8]) {
        while self.driver.fed % 6 != slot {
            frame(&mut self.input, 0, b"");
            let out = self.driver.feed(0, b"");
            self.sent.extend(out);
        }
        frame(&mut self.input, 1, dgram);
        let out = self.driver.feed(1, dgram);
        self.sent.extend(out);
    }

    /// The last message the shard sent to `slot` that starts with `start`.
    fn last_to(&self, slot: u16, start: &str) -> Vec<u8> {
        let to = source(slot);
        self.sent
            .iter()
            .rev()
            .find(|(dst, m)| *dst == to && m.starts_with(start.as_bytes()))
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| panic!("the shard sent no {start:?} to {to}"))
    }
}

/// The value of header `name` in `msg`.
fn value<'a>(msg: &'a SipMessage<'_>, name: HeaderName) -> &'a str {
    msg.header(name).and_then(|v| std::str::from_utf8(v).ok()).unwrap_or_default()
}

/// A phone's answer to `req` (sent by sipark): Vias, From, To (with
/// `tag`), Call-ID and CSeq copied, then `extra` lines and `sdp`.
fn answer(req: &[u8], code: &str, tag: &str, extra: &str, sdp: &str) -> Vec<u8> {
    let m = SipMessage::parse(req).unwrap_or_else(|e| panic!("the shard sent a message that does not parse: {e}"));
    let mut out = format!("SIP/2.0 {code}\r\n");
    for via in m.header_values(HeaderName::Via) {
        out.push_str(&format!("Via: {}\r\n", String::from_utf8_lossy(via)));
    }
    let to = value(&m, HeaderName::To);
    let to = if to.contains(";tag=") { to.to_owned() } else { format!("{to};tag={tag}") };
    out.push_str(&format!(
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}",
        value(&m, HeaderName::From),
        value(&m, HeaderName::CallId),
        value(&m, HeaderName::CSeq)
    ));
    if sdp.is_empty() {
        out.push_str("Content-Length: 0\r\n\r\n");
    } else {
        out.push_str(&format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()));
    }
    out.into_bytes()
}

/// The To tag and the Contact URI of a 2xx.
fn dialog_of(ok: &[u8]) -> (String, String) {
    let m = SipMessage::parse(ok).unwrap_or_else(|e| panic!("2xx does not parse: {e}"));
    let tag = m.to_hdr().ok().and_then(|t| t.tag()).map(|t| String::from_utf8_lossy(t).into_owned());
    let contact = m.contacts().find_map(|c| match c {
        Ok(sipark::proto::sip::parse::Contact::Addr(a)) => Some(String::from_utf8_lossy(a.uri.raw).into_owned()),
        _ => None,
    });
    (tag.unwrap_or_default(), contact.unwrap_or_else(|| "sip:sipark@127.0.0.1".into()))
}

/// A phone's side of a dialog with sipark: what its in-dialog requests say.
struct Leg {
    /// sipark's Contact.
    target: String,
    via: SocketAddr,
    from: String,
    /// To, with sipark's tag.
    to: String,
    call_id: String,
}

impl Leg {
    fn request(&self, method: &str, branch: &str, cseq: u32) -> Vec<u8> {
        let Leg { target, via, from, to, call_id } = self;
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }
}

/// A `shard_datagrams` input that registers 103, parks a call on it,
/// answers the park-info NOTIFYs, retrieves the call with `*88103`, lets
/// the parked party answer sipark's re-INVITE, and hangs up the bridged
/// call from the parked side.
pub fn park_cycle() -> Vec<u8> {
    let mut s = Script::new();
    let (device, caller, retriever) = (source(DEVICE), source(CALLER), source(RETRIEVER));
    s.send(
        DEVICE,
        format!(
            "REGISTER sip:acme.example SIP/2.0\r\nVia: SIP/2.0/UDP {device};branch=z9hG4bKreg1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:103@acme.example>;tag=r1\r\nTo: <sip:103@acme.example>\r\n\
             Call-ID: reg1@{device}\r\nCSeq: 1 REGISTER\r\nContact: <sip:103@{device}>\r\nExpires: 600\r\n\
             Content-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    );
    // The park: the caller blind-transferred to *68103 by 101.
    s.send(
        CALLER,
        format!(
            "INVITE sip:*68103@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP {caller};branch=z9hG4bKpark1;rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Caller\" <sip:5551234@acme.example>;tag=c1\r\n\
             To: <sip:*68103@acme.example>\r\nCall-ID: park1@{caller}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:5551234@{caller}>\r\nReferred-By: <sip:101@acme.example>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP_CALLER}",
            SDP_CALLER.len()
        )
        .as_bytes(),
    );
    let (tag, target) = dialog_of(&s.last_to(CALLER, "SIP/2.0 200"));
    let parked = Leg {
        target,
        via: caller,
        from: "\"Caller\" <sip:5551234@acme.example>;tag=c1".into(),
        to: format!("<sip:*68103@acme.example>;tag={tag}"),
        call_id: format!("park1@{caller}"),
    };
    s.send(CALLER, &parked.request("ACK", "z9hG4bKack1", 1));
    let notify = s.last_to(DEVICE, "NOTIFY");
    s.send(DEVICE, &answer(&notify, "200 OK", "dev1", "", ""));
    // The retrieve, from another desk of the tenant.
    s.send(
        RETRIEVER,
        format!(
            "INVITE sip:*88103@acme.example SIP/2.0\r\nVia: SIP/2.0/UDP {retriever};branch=z9hG4bKret1;rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:104@acme.example>;tag=d1\r\nTo: <sip:*88103@acme.example>\r\n\
             Call-ID: ret1@{retriever}\r\nCSeq: 1 INVITE\r\nContact: <sip:104@{retriever}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP_RETRIEVER}",
            SDP_RETRIEVER.len()
        )
        .as_bytes(),
    );
    let reinvite = s.last_to(CALLER, "INVITE");
    s.send(CALLER, &answer(&reinvite, "200 OK", "c1", &format!("Contact: <sip:5551234@{caller}>\r\n"), SDP_CALLER));
    let (tag, target) = dialog_of(&s.last_to(RETRIEVER, "SIP/2.0 200"));
    let retrieving = Leg {
        target,
        via: retriever,
        from: "<sip:104@acme.example>;tag=d1".into(),
        to: format!("<sip:*88103@acme.example>;tag={tag}"),
        call_id: format!("ret1@{retriever}"),
    };
    s.send(RETRIEVER, &retrieving.request("ACK", "z9hG4bKack2", 1));
    let notify = s.last_to(DEVICE, "NOTIFY");
    s.send(DEVICE, &answer(&notify, "200 OK", "dev1", "", ""));
    // The parked party hangs up the bridged call; sipark relays the BYE.
    s.send(CALLER, &parked.request("BYE", "z9hG4bKbye1", 2));
    let bye = s.last_to(RETRIEVER, "BYE");
    s.send(RETRIEVER, &answer(&bye, "200 OK", "d1", "", ""));
    s.input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_park_cycle_parks_retrieves_and_ends() {
        let input = park_cycle();
        // Replayed by the target's own loop, the input does what it says.
        let mut d = Driver::new();
        let mut rest = &input[..];
        while rest.len() >= 3 {
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            d.feed(rest[0], &rest[3..3 + len]);
            rest = &rest[3 + len..];
        }
        let s = d.shard.stats();
        let got = [s.registrations.get(), s.parks.get(), s.retrieves.get(), s.bridged.get(), s.parked.get()];
        assert_eq!(got, [1, 1, 1, 0, 0], "registrations, parks, retrieves, bridged, parked");
        assert_eq!(s.notifies_failed.get(), 0);
        crate::shard_datagrams(&input);
    }
}
