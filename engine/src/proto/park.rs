//! Park state: legs, parked calls and their states, extensions, and the
//! `park-info` body (docs/park-info.md).
//!
//! Each state of a call is its own enum variant carrying only what is valid
//! in it (a retriever exists only while retrieving, a second leg only once
//! bridged), so impossible combinations do not compile.

use std::io::Write;
use std::time::Instant;

use super::bodies::xml_text;
use super::sip::Peer;
use super::sip::parse::NameAddr;
use super::sip::sdp::Origin;

/// A party as shown in park-info: URI and optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uri: Box<[u8]>,
    pub display: Option<Box<[u8]>>,
}

impl Identity {
    pub fn as_party(&self) -> Party<'_> {
        Party { uri: &self.uri, display: self.display.as_deref() }
    }
}

/// A party, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party<'a> {
    pub uri: &'a [u8],
    pub display: Option<&'a [u8]>,
}

/// One dialog sipark holds with a peer (RFC 3261 §12).
#[derive(Debug)]
pub struct Leg {
    pub call_id: Box<[u8]>,
    pub local_tag: Box<[u8]>,
    /// sipark's party as it goes in From of requests sipark sends (without tag).
    pub local: Box<[u8]>,
    /// The peer's party as it goes in To (with the peer's tag).
    pub remote: Box<[u8]>,
    /// The peer's Contact URI: Request-URI of in-dialog requests.
    pub remote_target: Box<[u8]>,
    /// Route set, in the order the Route headers are written.
    pub route_set: Box<[Box<[u8]>]>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
    /// Where the peer's requests came from (or where its responses came from).
    pub peer: Peer,
    /// sipark's SDP origin towards this leg.
    pub origin: Origin,
    /// The last SDP sipark sent on this leg once bridged, to answer a
    /// session refresh. Empty while the call is parked: the hold answer is
    /// derived from `remote_sdp` and `origin` when needed
    /// ([`super::sip::sdp::hold_answer`]), which saves its bytes on every
    /// parked call.
    pub last_sdp: Box<[u8]>,
    /// The last SDP the peer sent on this leg.
    pub remote_sdp: Box<[u8]>,
    /// A 2xx to the peer's INVITE waiting for its ACK: (server txn, CSeq).
    pub pending_ack: Option<(u64, u32)>,
}

/// Why a call left the park, as written in `reason=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    Retrieved,
    Hangup,
    Recalled,
    Timeout,
    Shutdown,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Retrieved => "retrieved",
            LeaveReason::Hangup => "hangup",
            LeaveReason::Recalled => "recalled",
            LeaveReason::Timeout => "timeout",
            LeaveReason::Shutdown => "shutdown",
        }
    }
}

/// The retriever's side while its INVITE waits for the parked leg's answer.
#[derive(Debug)]
pub struct Retriever {
    /// The retriever's INVITE server transaction.
    pub txn: u64,
    pub leg: Leg,
    /// The retriever CANCELled before the bridge completed.
    pub cancelled: bool,
    /// The retriever's INVITE had no SDP: the parked leg is re-INVITEd
    /// without one, its offer goes to the retriever in the 200, and the
    /// retriever's ACK brings the answer back (RFC 3725 flow III).
    pub delayed: bool,
    /// Times the re-INVITE was sent again after a 491 (glare).
    pub retries: u8,
}

/// One branch of a recall (one registered contact of the parker).
#[derive(Debug)]
pub struct Fork {
    /// The INVITE client transaction.
    pub txn: u64,
    pub call_id: Box<[u8]>,
    pub local_tag: Box<[u8]>,
    /// A final response arrived, or the fork was CANCELled.
    pub done: bool,
}

/// A recall in progress: its branches, and the stage still to come.
#[derive(Debug)]
pub struct Recall {
    pub forks: Vec<Fork>,
    /// `parker-then-group`: when the recall ring group joins.
    pub group_at: Option<Instant>,
    /// End of the recall window: nobody answered, the park ends.
    pub ends_at: Instant,
}

/// Where a parked call is in its life.
#[derive(Debug)]
pub enum CallState {
    /// The park INVITE was answered 200; waiting for the ACK (which
    /// carries the answer when the INVITE had no offer). `cancelled`: a
    /// CANCEL crossed the 200, so the ACK ends the call instead of parking it.
    Answering { txn: u64, cancelled: bool },
    /// Parked; holds the park timeout.
    Parked,
    /// Park timeout passed; the recall's devices are ringing.
    Recalling { recall: Box<Recall> },
    /// A retriever's INVITE is waiting on the re-INVITE of the parked leg.
    /// The second leg is boxed in this and the next states, so that a
    /// parked call does not carry its room.
    Retrieving { retriever: Box<Retriever>, reinvite: u64 },
    /// A recall was answered; waiting on the re-INVITE of the parked leg.
    RecallBridging { b: Box<Leg>, fork_txn: u64, reinvite: u64 },
    /// Bridged to `b` (retriever or recalled parker); sipark stays a B2BUA.
    Bridged { b: Box<Leg> },
    /// The leg of a party whose REFER parked the other side of its call
    /// (as leg `a`): sipark waits for its BYE after the sipfrag NOTIFYs,
    /// and hangs up itself at the deadline. Never listed.
    Referrer,
}

impl CallState {
    /// Is the call shown as parked in park-info?
    pub fn listed(&self) -> bool {
        matches!(self, CallState::Parked | CallState::Recalling { .. } | CallState::Retrieving { .. })
    }
}

/// A call that entered the park.
#[derive(Debug)]
pub struct Call {
    /// Public id, the `call=` of the retrieve URI.
    pub id: u64,
    /// The extension it is parked on.
    pub ext: u64,
    /// The parker (Referred-By). The parked party is not stored: it is
    /// the park INVITE's From, kept as `a.remote` ([`Call::parked`]).
    pub parker: Option<Identity>,
    /// Unix seconds.
    pub parked_at: u64,
    pub timeout_secs: u64,
    /// The parked party's leg.
    pub a: Leg,
    pub state: CallState,
    /// The call's next timer (park timeout or recall timeout).
    pub deadline: Option<Instant>,
}

impl Call {
    /// The parked party: URI and display name of leg A's peer.
    pub fn parked(&self) -> Party<'_> {
        match NameAddr::parse(&self.a.remote) {
            Ok(na) => Party { uri: na.uri.raw, display: na.display.filter(|d| !d.is_empty()) },
            Err(_) => Party { uri: &self.a.remote, display: None },
        }
    }
}

/// A registered contact.
#[derive(Debug)]
pub struct Binding {
    pub uri: Box<[u8]>,
    /// Source of the REGISTER (address and transport): where requests for
    /// this contact go.
    pub flow: Peer,
    pub expires_at: Instant,
    pub call_id: Box<[u8]>,
    /// The documents this device is sent, when its User-Agent matched a
    /// `notify_ua` rule; `None` follows the tenant's `notify`.
    pub notify: Option<super::config::NotifySet>,
    /// The REGISTER's `Path` values (RFC 3327), comma-joined: the Route
    /// of every request sipark sends this contact.
    pub path: Option<std::sync::Arc<[u8]>>,
}

/// One extension of one tenant: its bindings and its parked calls.
#[derive(Debug)]
pub struct Extension {
    pub tenant: Box<str>,
    pub ext: Box<str>,
    pub bindings: Vec<Binding>,
    /// Calls parked here (any state before bridged), oldest first.
    pub calls: Vec<u64>,
    /// park-info version of the last state sent.
    pub version: u64,
    /// The earliest expiry timer already queued for this extension; a new
    /// one is queued only when a binding expires sooner, so refreshes do not
    /// pile up timer entries.
    pub timer_at: Option<Instant>,
}

/// Writes `call=` tokens: base-36 of the call id.
pub fn write_token(out: &mut Vec<u8>, mut id: u64) {
    let mut digits = [0u8; 13];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(id % 36) as usize];
        id /= 36;
        if id == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Reads a `call=` token.
pub fn parse_token(token: &[u8]) -> Option<u64> {
    if token.is_empty() || token.len() > 13 {
        return None;
    }
    token.iter().try_fold(0u64, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            b'A'..=b'Z' => c - b'A' + 10,
            _ => return None,
        };
        acc.checked_mul(36)?.checked_add(u64::from(d))
    })
}

/// Writes a Unix time as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian).
pub fn write_utc(out: &mut Vec<u8>, unix: u64) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil-from-days (H. Hinnant), valid far beyond any clock we will see.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let _ = write!(out, "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60);
}

fn write_party(out: &mut Vec<u8>, element: &str, who: Party<'_>) {
    let _ = write!(out, "    <{element} uri=\"");
    xml_text(out, who.uri);
    out.push(b'"');
    if let Some(d) = who.display {
        out.extend_from_slice(b" display=\"");
        xml_text(out, d);
        out.push(b'"');
    }
    out.extend_from_slice(b"/>\n");
}

/// What the body needs to know of one call.
pub struct CallView<'a> {
    pub call: &'a Call,
    /// `Some` for the call that just left.
    pub left: Option<LeaveReason>,
}

/// Writes the park-info document for `ext` listing `calls`.
pub fn write_park_info<'a>(
    out: &mut Vec<u8>,
    ext: &Extension,
    retrieve_fac: &str,
    calls: impl Iterator<Item = CallView<'a>>,
) {
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<park-info xmlns=\"urn:sipark:park-info\" version=\"{}\" extension=\"",
        ext.version
    );
    xml_text(out, ext.ext.as_bytes());
    out.extend_from_slice(b"\" domain=\"");
    xml_text(out, ext.tenant.as_bytes());
    out.extend_from_slice(b"\">\n");
    for view in calls {
        let c = view.call;
        out.extend_from_slice(b"  <call id=\"");
        write_token(out, c.id);
        match view.left {
            None => out.extend_from_slice(b"\" state=\"parked\""),
            Some(r) => {
                let _ = write!(out, "\" state=\"terminated\" reason=\"{}\"", r.as_str());
            }
        }
        out.extend_from_slice(b" parked-at=\"");
        write_utc(out, c.parked_at);
        let _ = writeln!(out, "\" timeout=\"{}\">", c.timeout_secs);
        write_party(out, "parked", c.parked());
        if let Some(p) = &c.parker {
            write_party(out, "parker", p.as_party());
        }
        if view.left.is_none() {
            out.extend_from_slice(b"    <retrieve uri=\"sip:");
            xml_text(out, retrieve_fac.as_bytes());
            xml_text(out, ext.ext.as_bytes());
            out.push(b'@');
            xml_text(out, ext.tenant.as_bytes());
            out.extend_from_slice(b";call=");
            write_token(out, c.id);
            out.extend_from_slice(b"\"/>\n");
        }
        out.extend_from_slice(b"  </call>\n");
    }
    out.extend_from_slice(b"</park-info>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for id in [0u64, 1, 35, 36, 123_456_789, u64::MAX] {
            let mut out = Vec::new();
            write_token(&mut out, id);
            assert_eq!(parse_token(&out), Some(id), "{}", String::from_utf8_lossy(&out));
        }
        assert_eq!(parse_token(b""), None);
        assert_eq!(parse_token(b"k3x-9"), None);
        assert_eq!(parse_token(b"zzzzzzzzzzzzz"), None, "overflow");
    }

    #[test]
    fn utc_dates() {
        let cases = [
            (0u64, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_795_543_200, "2026-11-24T18:00:00Z"),
            (4_102_444_799, "2099-12-31T23:59:59Z"),
        ];
        for (unix, want) in cases {
            let mut out = Vec::new();
            write_utc(&mut out, unix);
            assert_eq!(String::from_utf8(out).expect("ascii"), want);
        }
    }
}
