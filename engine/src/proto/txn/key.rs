//! What a request is matched to its server transaction on (RFC 3261
//! §17.2.3): the top Via's branch and sent-by when the branch carries the
//! RFC 3261 magic cookie, else the request's own identifying fields, as an
//! RFC 2543 element would (wsinv, longreq and inv2543 of RFC 4475 have no
//! magic cookie; badbranch has only the cookie).

use crate::proto::sip::parse::{Method, SipMessage};

/// The RFC 3261 magic cookie that starts a branch (§8.1.1.7).
const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// The matching key of a request, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKey<'a> {
    /// An RFC 3261 branch (the magic cookie and more), and the sent-by of
    /// the same top Via: two clients that pick the same branch do not
    /// match each other's transactions.
    Branch { branch: &'a [u8], host: &'a [u8], port: Option<u16> },
    /// No RFC 3261 branch: the Request-URI, the From tag, Call-ID, the
    /// CSeq number and the whole top Via, and the To tag except for INVITE
    /// and its ACK and CANCEL (whose To tag is the one sipark added to its
    /// answer, or none).
    Rfc2543 {
        request_uri: &'a [u8],
        from_tag: &'a [u8],
        to_tag: &'a [u8],
        call_id: &'a [u8],
        cseq: u32,
        top_via: &'a [u8],
    },
}

impl<'a> RequestKey<'a> {
    /// The key of `req`, whose top Via, CSeq, Call-ID, From and To parsed;
    /// `None` when one of them did not.
    pub fn of(req: &SipMessage<'a>) -> Option<RequestKey<'a>> {
        let via = req.top_via().ok()?;
        if let Some(branch) = via
            .branch
            .filter(|b| b.len() > MAGIC_COOKIE.len() && b[..MAGIC_COOKIE.len()].eq_ignore_ascii_case(MAGIC_COOKIE))
        {
            return Some(RequestKey::Branch { branch, host: via.host, port: via.port });
        }
        Some(RequestKey::Rfc2543 {
            request_uri: req.request_uri()?,
            from_tag: req.from_hdr().ok()?.tag().unwrap_or_default(),
            to_tag: req.to_hdr().ok()?.tag().unwrap_or_default(),
            call_id: req.call_id().ok()?,
            cseq: req.cseq().ok()?.seq,
            top_via: via.raw,
        })
    }

    /// What names the request among those of its source: its branch, or
    /// without one its Call-ID (for a layer that remembers requests by
    /// source, as overload control remembers the ones it refused).
    pub fn id(&self) -> &'a [u8] {
        match *self {
            RequestKey::Branch { branch, .. } => branch,
            RequestKey::Rfc2543 { call_id, .. } => call_id,
        }
    }

    /// Writes the bytes of this key in the class of `method` (ACK and
    /// CANCEL look in INVITE's) into `out`: a kind byte, then each part with
    /// its length, so that no two keys write the same bytes. The branch
    /// form, met by every request, is written in four copies.
    pub(super) fn write(&self, class: Method<'_>, out: &mut Vec<u8>) {
        // Header values are shorter than a datagram: their lengths fit in 16 bits.
        let len16 = |p: &[u8]| (p.len() as u16).to_le_bytes();
        match *self {
            RequestKey::Branch { branch, host, port } => {
                let [b0, b1] = len16(branch);
                let [h0, h1] = len16(host);
                let [p0, p1] = port.unwrap_or(0).to_le_bytes();
                out.extend_from_slice(&[b'B', b0, b1, h0, h1, p0, p1]);
                out.extend_from_slice(branch);
                out.extend_from_slice(host);
            }
            RequestKey::Rfc2543 { request_uri, from_tag, to_tag, call_id, cseq, top_via } => {
                out.push(b'O');
                let to_tag = if class == Method::Invite { &[][..] } else { to_tag };
                for part in [request_uri, from_tag, to_tag, call_id, &cseq.to_le_bytes(), top_via] {
                    out.extend_from_slice(&len16(part));
                    out.extend_from_slice(part);
                }
            }
        }
        // The class is last: what precedes it has its own lengths.
        out.extend_from_slice(class.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_bytes(raw: &str, class: Method<'_>) -> Vec<u8> {
        let msg = SipMessage::parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{e}: {raw}"));
        let key = RequestKey::of(&msg).unwrap_or_else(|| panic!("no key: {raw}"));
        let mut out = Vec::new();
        key.write(class, &mut out);
        out
    }

    fn request(method: &str, via: &str, to_tag: &str) -> String {
        format!(
            "{method} sip:*68103@acme.example SIP/2.0\r\nVia: {via}\r\nFrom: <sip:101@acme.example>;tag=f1\r\n\
             To: <sip:*68103@acme.example>{to_tag}\r\nCall-ID: c1\r\nCSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[test]
    fn an_rfc_3261_branch_matches_with_its_sent_by() {
        let a = key_bytes(&request("INVITE", "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKx", ""), Method::Invite);
        let same = key_bytes(&request("INVITE", "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKx", ""), Method::Invite);
        let other_host = key_bytes(&request("INVITE", "SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bKx", ""), Method::Invite);
        let other_port = key_bytes(&request("INVITE", "SIP/2.0/UDP 10.0.0.1:5064;branch=z9hG4bKx", ""), Method::Invite);
        assert_eq!(a, same);
        assert_ne!(a, other_host);
        assert_ne!(a, other_port);
        assert_ne!(a, key_bytes(&request("INVITE", "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKx", ""), Method::Bye));
    }

    #[test]
    fn without_the_magic_cookie_the_request_fields_are_the_key() {
        // inv2543: no branch at all; badbranch: the cookie alone.
        for via in ["SIP/2.0/UDP 10.0.0.1:5062", "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK"] {
            let invite = request("INVITE", via, "");
            let key = SipMessage::parse(invite.as_bytes()).ok().and_then(|m| RequestKey::of(&m));
            assert!(matches!(key, Some(RequestKey::Rfc2543 { cseq: 7, .. })), "{key:?}");
            // The ACK of a non-2xx carries sipark's To tag, and matches.
            let ack = request("ACK", via, ";tag=sp1");
            assert_eq!(key_bytes(&invite, Method::Invite), key_bytes(&ack, Method::Invite));
            // Another CSeq number, Call-ID or top Via is another transaction.
            let other = invite.replace("CSeq: 7", "CSeq: 8");
            assert_ne!(key_bytes(&invite, Method::Invite), key_bytes(&other, Method::Invite));
            let other = invite.replace("Call-ID: c1", "Call-ID: c2");
            assert_ne!(key_bytes(&invite, Method::Invite), key_bytes(&other, Method::Invite));
            let other = invite.replace("10.0.0.1:5062", "10.0.0.1:5063");
            assert_ne!(key_bytes(&invite, Method::Invite), key_bytes(&other, Method::Invite));
        }
        // Outside INVITE the To tag is part of the key.
        let bye = request("BYE", "SIP/2.0/UDP 10.0.0.1:5062", ";tag=a");
        let other = request("BYE", "SIP/2.0/UDP 10.0.0.1:5062", ";tag=b");
        assert_ne!(key_bytes(&bye, Method::Bye), key_bytes(&other, Method::Bye));
    }
}
