//! The engine's music-on-hold counters, read from its Prometheus endpoint
//! (`sipark --metrics ADDR`): a plain HTTP/1.1 GET, and the samples of a
//! series summed over its labels (one per worker).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long one scrape may take.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read.
const MAX_BODY: u64 = 8 << 20;

/// `GET /metrics` from `addr`: the body of a 200 answer.
pub fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut text = String::new();
    s.take(MAX_BODY).read_to_string(&mut text).map_err(|e| format!("read from {addr}: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{addr}: no HTTP head in the answer"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{addr}: {}", head.lines().next().unwrap_or_default()));
    }
    Ok(body.to_owned())
}

/// The sum of every sample of series `name` (exactly that name, with or
/// without labels); `None` when it has none.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let value = match rest.as_bytes().first() {
            Some(b'{') => rest.rsplit_once('}').map(|(_, v)| v),
            Some(b' ') => Some(rest),
            _ => None,
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse::<f64>().ok()) {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// The engine's music-on-hold figures at one moment (every worker's summed).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MohMetrics {
    /// Streams running (a gauge).
    pub streams: f64,
    pub started: f64,
    pub refused: f64,
    /// Packets handed to the media socket, skipped (the worker late by
    /// more than a packet time), due with nowhere to go, refused by the
    /// kernel.
    pub packets: f64,
    pub skipped: f64,
    pub unaddressed: f64,
    pub send_errors: f64,
}

impl MohMetrics {
    /// Reads them from a metrics text; an error names a missing series
    /// (an engine without music on hold has none).
    pub fn parse(text: &str) -> Result<MohMetrics, String> {
        let need = |n: &str| sum(text, n).ok_or_else(|| format!("no {n} in the engine's metrics"));
        Ok(MohMetrics {
            streams: need("sipark_moh_streams")?,
            started: need("sipark_moh_streams_started_total")?,
            refused: need("sipark_moh_refused_total")?,
            packets: need("sipark_moh_packets_total")?,
            skipped: need("sipark_moh_packets_skipped_total")?,
            unaddressed: need("sipark_moh_packets_unaddressed_total")?,
            send_errors: need("sipark_moh_send_errors_total")?,
        })
    }

    /// Scrapes `addr` and reads them.
    pub fn read(addr: SocketAddr) -> Result<MohMetrics, String> {
        MohMetrics::parse(&scrape(addr)?)
    }

    /// The counters' growth since `earlier`; the gauge is this one's.
    pub fn since(&self, earlier: &MohMetrics) -> MohMetrics {
        MohMetrics {
            streams: self.streams,
            started: self.started - earlier.started,
            refused: self.refused - earlier.refused,
            packets: self.packets - earlier.packets,
            skipped: self.skipped - earlier.skipped,
            unaddressed: self.unaddressed - earlier.unaddressed,
            send_errors: self.send_errors - earlier.send_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP sipark_moh_packets RTP packets\n# TYPE sipark_moh_packets counter\n\
        sipark_moh_packets_total{worker=\"0\"} 1000\nsipark_moh_packets_total{worker=\"1\"} 500\n\
        sipark_moh_packets_skipped_total{worker=\"0\"} 3\nsipark_moh_packets_skipped_total{worker=\"1\"} 0\n\
        sipark_moh_packets_unaddressed_total{worker=\"0\"} 0\nsipark_moh_streams{worker=\"0\"} 7\n\
        sipark_moh_streams{worker=\"1\"} 2\nsipark_moh_streams_started_total{worker=\"0\"} 9\n\
        sipark_moh_refused_total{worker=\"0\"} 1\nsipark_moh_send_errors_total{worker=\"0\"} 4\n\
        sipark_moh_streams_created 5\n# EOF\n";

    #[test]
    fn series_are_summed_over_workers_by_exact_name() {
        assert_eq!(sum(TEXT, "sipark_moh_packets_total"), Some(1500.0));
        assert_eq!(sum(TEXT, "sipark_moh_streams"), Some(9.0), "not _started_total nor _created");
        assert_eq!(sum(TEXT, "sipark_moh_nothing"), None);
        assert_eq!(sum("x 1\nx{a=\"}\"} 2\n", "x"), Some(3.0));
        let m = MohMetrics::parse(TEXT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((m.streams, m.packets, m.skipped, m.send_errors, m.refused), (9.0, 1500.0, 3.0, 4.0, 1.0));
        let later = MohMetrics { packets: 2500.0, streams: 1.0, ..m };
        let d = later.since(&m);
        assert_eq!((d.packets, d.streams, d.skipped), (1000.0, 1.0, 0.0));
        let err = MohMetrics::parse("sipark_parked 1\n").err().unwrap_or_default();
        assert!(err.contains("sipark_moh_streams"), "{err}");
    }

    #[test]
    fn a_scrape_reads_the_body_of_a_200() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = std::thread::spawn(move || {
            for answer in ["HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nx_total 1", "HTTP/1.1 404 Not Found\r\n\r\n"] {
                let (mut s, _) = l.accept().unwrap_or_else(|e| panic!("{e}"));
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer.as_bytes());
            }
        });
        assert_eq!(scrape(addr), Ok("x_total 1".to_owned()));
        let err = scrape(addr).err().unwrap_or_default();
        assert!(err.contains("404"), "{err}");
        let _ = server.join();
    }
}
