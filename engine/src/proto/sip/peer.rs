//! Where a message comes from or goes: address and transport.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

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

/// A [`Peer`] in 24 bytes, for what is kept per call (a `SocketAddr` alone
/// takes 32): the address, its port, an IPv6 scope, the family and the
/// transport. An IPv6 flow label is not kept; sipark sends with none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedPeer {
    ip: [u8; 16],
    scope_id: u32,
    port: u16,
    v6: bool,
    transport: Transport,
}

impl PackedPeer {
    pub fn new(peer: Peer) -> PackedPeer {
        let (ip, scope_id, v6) = match peer.addr {
            SocketAddr::V4(a) => {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&a.ip().octets());
                (ip, 0, false)
            }
            SocketAddr::V6(a) => (a.ip().octets(), a.scope_id(), true),
        };
        PackedPeer { ip, scope_id, port: peer.addr.port(), v6, transport: peer.transport }
    }

    pub fn get(&self) -> Peer {
        let addr = if self.v6 {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(self.ip), self.port, 0, self.scope_id))
        } else {
            let [a, b, c, d, ..] = self.ip;
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(a, b, c, d), self.port))
        };
        Peer { addr, transport: self.transport }
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_peer_gives_back_the_peer() {
        for (addr, transport) in [
            ("192.0.2.7:5060", Transport::Udp),
            ("[2001:db8::1]:5061", Transport::Tls),
            ("[fe80::1%3]:5062", Transport::Tcp),
            ("[::ffff:192.0.2.7]:5060", Transport::Udp),
        ] {
            let peer = Peer { addr: addr.parse().expect("addr"), transport };
            assert_eq!(PackedPeer::new(peer).get(), peer, "{addr}");
        }
        assert_eq!(size_of::<PackedPeer>(), 24);
    }
}
