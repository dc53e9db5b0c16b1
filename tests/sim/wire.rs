//! A received datagram, with accessors built on sipark's own parser.

use std::time::Duration;

use sipark::proto::sip::parse::{HeaderName, NameAddr, SipMessage};

/// One datagram as a phone received it (or a request it kept).
#[derive(Clone)]
pub struct Msg {
    pub raw: Vec<u8>,
    /// When it arrived, since the start of the simulation.
    pub at: Duration,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[t={:?}]\n{}", self.at, self.text())
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Msg {
    pub fn new(raw: Vec<u8>, at: Duration) -> Msg {
        Msg { raw, at }
    }

    /// The parsed message; panics (with the text) if sipark's parser refuses it.
    pub fn parse(&self) -> SipMessage<'_> {
        SipMessage::parse(&self.raw).unwrap_or_else(|e| panic!("unparseable message ({e:?}):\n{}", self.text()))
    }

    pub fn text(&self) -> String {
        lossy(&self.raw)
    }

    pub fn code(&self) -> Option<u16> {
        SipMessage::parse(&self.raw).ok()?.status()
    }

    pub fn reason(&self) -> String {
        SipMessage::parse(&self.raw).ok().and_then(|m| m.reason_phrase()).map(lossy).unwrap_or_default()
    }

    pub fn method(&self) -> Option<String> {
        SipMessage::parse(&self.raw).ok()?.method().map(|m| lossy(m.as_bytes()))
    }

    pub fn ruri(&self) -> String {
        self.parse().request_uri().map(lossy).unwrap_or_default()
    }

    /// First value of the header `name` (any spelling, compact forms too).
    pub fn header(&self, name: &str) -> Option<String> {
        self.parse().header_raw(name.as_bytes()).map(lossy)
    }

    /// Every line's value of the header `name` (known names only), in order.
    pub fn headers(&self, name: &str) -> Vec<String> {
        let want = HeaderName::from_bytes(name.as_bytes());
        let msg = self.parse();
        msg.headers()
            .iter()
            .filter(|h| {
                if want == HeaderName::Other {
                    h.raw_name.eq_ignore_ascii_case(name.as_bytes())
                } else {
                    h.name == want
                }
            })
            .map(|h| lossy(h.value))
            .collect()
    }

    pub fn body(&self) -> String {
        lossy(self.parse().body())
    }

    pub fn call_id(&self) -> String {
        self.parse().call_id().map(lossy).unwrap_or_default()
    }

    pub fn cseq(&self) -> (u32, String) {
        let c = self.parse().cseq().unwrap_or_else(|e| panic!("bad CSeq ({e:?}) in\n{}", self.text()));
        (c.seq, lossy(c.method.as_bytes()))
    }

    pub fn branch(&self) -> String {
        self.parse().top_via().ok().and_then(|v| v.branch).map(lossy).unwrap_or_default()
    }

    pub fn tag_from(&self) -> Option<String> {
        self.parse().from_hdr().ok()?.tag().map(lossy)
    }

    pub fn to_tag(&self) -> Option<String> {
        self.parse().to_hdr().ok()?.tag().map(lossy)
    }

    /// URI of the first Contact.
    pub fn contact_uri(&self) -> Option<String> {
        let v = self.header("Contact")?;
        NameAddr::parse(v.as_bytes()).ok().map(|na| lossy(na.uri.raw))
    }
}
