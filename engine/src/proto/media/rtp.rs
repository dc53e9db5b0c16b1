//! The RTP fixed header (RFC 3550 §5.1), written and recognised.

/// Bytes of the fixed header sipark writes (no CSRC, no extension).
pub const HEADER: usize = 12;

/// One packet's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

impl Header {
    /// Appends the 12 header bytes: version 2, no padding, no extension,
    /// no CSRC.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }

    /// Reads the fixed header of an RTP packet; `None` for anything that is
    /// not RTP version 2 with a whole header, or is RTCP (RFC 5761 §4:
    /// second byte 192–223).
    pub fn read(packet: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER] = packet.get(..HEADER)?.try_into().ok()?;
        if b[0] >> 6 != 2 || is_rtcp(packet) {
            return None;
        }
        Some(Header {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7f,
            seq: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

/// Whether `packet` is RTCP: version 2 and a packet type in 192–223 (the
/// range RFC 5761 §4 keeps apart from RTP payload types).
pub fn is_rtcp(packet: &[u8]) -> bool {
    matches!(packet, [first, second, ..] if first >> 6 == 2 && (192..=223).contains(second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_written_as_rfc_3550_lays_it_out() {
        let h = Header { marker: true, payload_type: 8, seq: 0x1234, timestamp: 0xdead_beef, ssrc: 0x0102_0304 };
        let mut out = Vec::new();
        h.write(&mut out);
        assert_eq!(out, [0x80, 0x88, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4]);
        assert_eq!(Header::read(&out), Some(h));
        let plain = Header { marker: false, payload_type: 0, ..h };
        out.clear();
        plain.write(&mut out);
        assert_eq!(out[1], 0x00);
        assert_eq!(Header::read(&out), Some(plain));
    }

    #[test]
    fn rtcp_and_other_bytes_are_not_rtp() {
        // A receiver report: version 2, packet type 201.
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(is_rtcp(&rr));
        assert_eq!(Header::read(&rr), None);
        assert_eq!(Header::read(&[0x80, 0, 0, 1]), None, "short");
        assert_eq!(Header::read(b"SIP/2.0 200 OK\r\n"), None, "version 1");
        assert!(!is_rtcp(&[0x80, 0x08]));
        assert!(!is_rtcp(&[0x80]));
    }
}
