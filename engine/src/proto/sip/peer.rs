//! Where a message comes from or goes: address and transport.

use std::net::SocketAddr;

/// The transport a message arrived on or leaves on (RFC 3261 §18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The token in Via's sent-protocol (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// A stream transport: no retransmissions of requests or of non-2xx
    /// responses (§17.1.1.2, §17.2.1).
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }

    /// Index into per-transport tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The transport a URI asks for: `sips:` or `;transport=tls` is TLS,
    /// `;transport=tcp` TCP, anything else `None` (the default applies).
    pub fn of_uri(uri: &super::parse::Uri<'_>) -> Option<Transport> {
        if uri.scheme.eq_ignore_ascii_case(b"sips") {
            return Some(Transport::Tls);
        }
        match uri.param(b"transport").flatten() {
            Some(t) if t.eq_ignore_ascii_case(b"tcp") => Some(Transport::Tcp),
            Some(t) if t.eq_ignore_ascii_case(b"tls") => Some(Transport::Tls),
            Some(t) if t.eq_ignore_ascii_case(b"udp") => Some(Transport::Udp),
            _ => None,
        }
    }
}

/// Where a message came from or goes: address and transport (a flow, in
/// RFC 5626's words). Responses and in-dialog requests to a stream peer
/// reuse its connection (the I/O layer keeps them by address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: Transport,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer { addr, transport: Transport::Udp }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.transport {
            Transport::Udp => write!(f, "{}", self.addr),
            t => write!(f, "{}/{}", self.addr, t.via_token()),
        }
    }
}
