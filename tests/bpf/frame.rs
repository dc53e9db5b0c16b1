//! A small builder of Ethernet frames for the XDP tests: Ethernet (+ VLAN
//! tags), IPv4 (with options, fragments) or IPv6 (with a hop-by-hop
//! header), then UDP or TCP. Checksums are left zero (XDP does not check
//! them).

use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Frame {
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4 option bytes (padded with NOPs to a multiple of 4).
    pub ip_options: usize,
    /// IPv4 fragment offset (8-byte units) and more-fragments flag.
    pub frag: (u16, bool),
    /// IPv6: put a hop-by-hop extension header before UDP.
    pub hop_by_hop: bool,
    pub tcp: bool,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

pub const SIP_PORT: u16 = 5060;

impl Frame {
    /// UDP from 192.0.2.1:40000 to 198.51.100.1:5060.
    pub fn udp4(payload: &[u8]) -> Frame {
        Frame {
            vlans: Vec::new(),
            src: "192.0.2.1".parse().expect("v4"),
            dst: "198.51.100.1".parse().expect("v4"),
            ip_options: 0,
            frag: (0, false),
            hop_by_hop: false,
            tcp: false,
            sport: 40000,
            dport: SIP_PORT,
            payload: payload.to_vec(),
        }
    }

    /// UDP from 2001:db8::1 to 2001:db8::2 port 5060.
    pub fn udp6(payload: &[u8]) -> Frame {
        Frame {
            src: "2001:db8::1".parse().expect("v6"),
            dst: "2001:db8::2".parse().expect("v6"),
            ..Frame::udp4(payload)
        }
    }

    pub fn from(mut self, src: &str) -> Frame {
        self.src = src.parse().unwrap_or_else(|e| panic!("address {src}: {e}"));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut l4 = Vec::new();
        if self.tcp {
            l4.extend_from_slice(&self.sport.to_be_bytes());
            l4.extend_from_slice(&self.dport.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            l4.extend_from_slice(&self.sport.to_be_bytes());
            l4.extend_from_slice(&self.dport.to_be_bytes());
            l4.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(&self.payload);
        let proto = if self.tcp { 6 } else { 17 };

        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        for (i, vid) in self.vlans.iter().enumerate() {
            // Outer tag 802.1ad when there are two, else 802.1Q.
            let tpid: u16 = if self.vlans.len() > 1 && i == 0 { 0x88a8 } else { 0x8100 };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend_from_slice(&0x0800u16.to_be_bytes());
                let opts = self.ip_options.div_ceil(4) * 4;
                let ihl = (20 + opts) / 4;
                let tot = (20 + opts + l4.len()) as u16;
                let frag = self.frag.0 | if self.frag.1 { 0x2000 } else { 0 };
                f.push(0x40 | ihl as u8);
                f.push(0);
                f.extend_from_slice(&tot.to_be_bytes());
                f.extend_from_slice(&[0x12, 0x34]);
                f.extend_from_slice(&frag.to_be_bytes());
                f.extend_from_slice(&[64, proto, 0, 0]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                f.extend(std::iter::repeat_n(1u8, opts)); // NOP options
                f.extend_from_slice(&l4);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend_from_slice(&0x86ddu16.to_be_bytes());
                let mut ext = Vec::new();
                let next = if self.hop_by_hop {
                    ext.extend_from_slice(&[proto, 0, 1, 4, 0, 0, 0, 0]); // PadN
                    0
                } else {
                    proto
                };
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
                f.extend_from_slice(&[next, 64]);
                f.extend_from_slice(&s.octets());
                f.extend_from_slice(&d.octets());
                f.extend_from_slice(&ext);
                f.extend_from_slice(&l4);
            }
            _ => panic!("mixed address families {} -> {}", self.src, self.dst),
        }
        f
    }
}

/// An out-of-dialog request to `ruri` with the given User-Agent.
pub fn request(method: &str, ruri: &str, ua: Option<&str>) -> Vec<u8> {
    let mut m = format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:40000;branch=z9hG4bK-test-1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@client.example>;tag=a1\r\n\
         To: <{ruri}>\r\n\
         Call-ID: c1@client.example\r\n\
         CSeq: 1 {method}\r\n"
    );
    if let Some(ua) = ua {
        m.push_str(&format!("User-Agent: {ua}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}

/// A 200 response whose top Via branch is `branch`.
pub fn response(branch: &str, ua: Option<&str>) -> Vec<u8> {
    let mut m = format!(
        "SIP/2.0 200 OK\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\n\
         From: <sip:park@sipark.example>;tag=p1\r\n\
         To: <sip:bob@acme.example>;tag=b1\r\n\
         Call-ID: c2@sipark.example\r\n\
         CSeq: 1 OPTIONS\r\n"
    );
    if let Some(ua) = ua {
        m.push_str(&format!("User-Agent: {ua}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m.into_bytes()
}
