//! Prometheus metrics: a [`Collector`] that reads every worker's
//! [`ShardStats`] at scrape time, and a minimal HTTP/1.1 server for
//! `GET /metrics` on a plain thread (one connection at a time).
//!
//! Each stat `x` becomes `sipark_x` (counters: `sipark_x_total`) with one
//! sample per worker (`worker="i"`); sum them in PromQL
//! (`sum(rate(sipark_parks_total[1m]))`). There is deliberately no
//! unlabelled total beside them, which `sum()` would count twice. Reading a
//! stat is a relaxed atomic load; nothing here takes a lock a worker could
//! wait on.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tracing::{debug, warn};

use super::shared::{CloseReason, DropReason, StreamStats};
use crate::proto::stats::{Kind, ShardStats};

/// Largest request head accepted.
const MAX_REQUEST: usize = 8192;
/// Per-connection read/write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the accept loop checks for shutdown.
const POLL_MS: i32 = 200;
/// Content type of the OpenMetrics text that prometheus-client writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Exposes every worker's [`ShardStats`].
#[derive(Debug)]
pub struct ShardCollector {
    stats: Vec<Arc<ShardStats>>,
}

impl ShardCollector {
    pub fn new(stats: Vec<Arc<ShardStats>>) -> ShardCollector {
        ShardCollector { stats }
    }
}

/// One stat across all workers.
struct Series {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    values: Vec<u64>,
}

impl Collector for ShardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut series: Vec<Series> = Vec::new();
        for (w, stats) in self.stats.iter().enumerate() {
            let mut i = 0;
            stats.each(|name, kind, help, value| {
                if w == 0 {
                    series.push(Series { name, kind, help, values: Vec::with_capacity(self.stats.len()) });
                }
                if let Some(s) = series.get_mut(i) {
                    s.values.push(value);
                }
                i += 1;
            });
        }
        let labels: Vec<[(&str, String); 1]> = (0..self.stats.len()).map(|w| [("worker", w.to_string())]).collect();
        for s in &series {
            let mtype = match s.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut metric = encoder.encode_descriptor(s.name, s.help, None, mtype)?;
            for (v, l) in s.values.iter().zip(&labels) {
                let mut m = metric.encode_family(l)?;
                match s.kind {
                    Kind::Counter => m.encode_counter::<NoLabelSet, _, u64>(v, None)?,
                    // Gauges are i64 in OpenMetrics; a u64 past i64::MAX is clamped.
                    Kind::Gauge => m.encode_gauge(&i64::try_from(*v).unwrap_or(i64::MAX))?,
                }
            }
        }
        Ok(())
    }
}

/// The data path's own figures: XDP verdicts (summed over CPUs by the
/// kernel map's reader), steering outcomes, and the engine-wide fraction of
/// datagrams handed across shards.
pub struct DatapathCollector {
    pub stats: Vec<Arc<ShardStats>>,
    pub xdp: Option<crate::bpf::XdpStats>,
    pub steer: Option<crate::bpf::SteerStats>,
}

impl std::fmt::Debug for DatapathCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatapathCollector")
            .field("xdp", &self.xdp.is_some())
            .field("steer", &self.steer.is_some())
            .finish()
    }
}

impl Collector for DatapathCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (mut handed, mut received) = (0u64, 0u64);
        for s in &self.stats {
            handed += s.handoffs_out.get();
            received += s.datagrams_in.get();
        }
        let ratio = if received == 0 { 0.0 } else { handed as f64 / received as f64 };
        let mut m = encoder.encode_descriptor(
            "handoff_ratio",
            "Fraction of received datagrams handed to another worker since start (steering misses); \
             windowed: sum(rate(sipark_handoffs_out_total[1m])) / sum(rate(sipark_datagrams_in_total[1m]))",
            None,
            MetricType::Gauge,
        )?;
        m.encode_gauge(&ratio)?;
        if let Some(xdp) = &self.xdp {
            match xdp.read() {
                Ok(counts) => {
                    let mut metric = encoder.encode_descriptor(
                        "xdp_packets",
                        "Frames seen by the XDP program, by verdict and reason",
                        None,
                        MetricType::Counter,
                    )?;
                    let abi = (crate::bpf::abi::REASON_NAMES.iter()).zip(crate::bpf::abi::REASON_ACTIONS);
                    for ((reason, action), v) in abi.zip(counts) {
                        let labels = [("action", action), ("reason", *reason)];
                        metric.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                    }
                }
                Err(e) => debug!(error = %e, "cannot read the XDP counters"),
            }
        }
        if let Some(steer) = &self.steer {
            match steer.read() {
                Ok((steered, fallback)) => {
                    let mut metric = encoder.encode_descriptor(
                        "steer_datagrams",
                        "Datagrams the sk_reuseport program delivered to their owner's socket (steered) or left \
                         to the kernel's hash (fallback)",
                        None,
                        MetricType::Counter,
                    )?;
                    for (outcome, v) in [("steered", steered), ("fallback", fallback)] {
                        metric
                            .encode_family(&[("outcome", outcome)])?
                            .encode_counter::<NoLabelSet, _, u64>(&v, None)?;
                    }
                }
                Err(e) => debug!(error = %e, "cannot read the steering counters"),
            }
        }
        Ok(())
    }
}

/// The stream transports' figures (one stream thread: no `worker` label).
#[derive(Debug)]
pub struct StreamCollector {
    pub stats: Arc<StreamStats>,
}

impl Collector for StreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let by_transport: [(&str, &str, &[std::sync::atomic::AtomicU64; 2]); 4] = [
            ("stream_accepted", "TCP/TLS connections accepted", &s.accepted),
            ("stream_opened", "TCP/TLS connections sipark opened to a peer", &s.opened),
            ("stream_messages_in", "Messages framed out of TCP/TLS connections and handed to a worker", &s.messages_in),
            ("stream_messages_out", "Messages queued on a TCP/TLS connection", &s.messages_out),
        ];
        {
            let mut m =
                encoder.encode_descriptor("stream_connections", "Open TCP/TLS connections", None, MetricType::Gauge)?;
            for (t, v) in ["tcp", "tls"].iter().zip(&s.connections) {
                let v = i64::try_from(load(v)).unwrap_or(i64::MAX);
                m.encode_family(&[("transport", *t)])?.encode_gauge(&v)?;
            }
        }
        for (name, help, values) in by_transport {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (t, v) in ["tcp", "tls"].iter().zip(values) {
                m.encode_family(&[("transport", *t)])?.encode_counter::<NoLabelSet, _, u64>(&load(v), None)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "stream_closed",
                "TCP/TLS connections closed, by reason (limit: refused past --max-connections)",
                None,
                MetricType::Counter,
            )?;
            for r in CloseReason::ALL {
                m.encode_family(&[("reason", r.label())])?.encode_counter::<NoLabelSet, _, u64>(&s.closed(r), None)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "stream_dropped",
                "TCP/TLS messages dropped, by reason",
                None,
                MetricType::Counter,
            )?;
            for r in DropReason::ALL {
                m.encode_family(&[("reason", r.label())])?.encode_counter::<NoLabelSet, _, u64>(&s.dropped(r), None)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "stream_pings",
            "CRLFCRLF keep-alives answered with CRLF (RFC 5626)",
            None,
            MetricType::Counter,
        )?;
        m.encode_counter::<NoLabelSet, _, u64>(&load(&s.pings), None)?;
        Ok(())
    }
}

/// Configuration reloads (SIGHUP), counted by the main thread.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub ok: AtomicU64,
    pub error: AtomicU64,
}

/// `sipark_config_reloads_total{result="ok|error"}`.
#[derive(Debug)]
pub struct ReloadCollector {
    pub stats: Arc<ReloadStats>,
}

impl Collector for ReloadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(
            "config_reloads",
            "Reloads of the tenants file and TLS certificates (SIGHUP): ok, or error (the old configuration stays)",
            None,
            MetricType::Counter,
        )?;
        for (result, v) in [("ok", &self.stats.ok), ("error", &self.stats.error)] {
            m.encode_family(&[("result", result)])?
                .encode_counter::<NoLabelSet, _, u64>(&v.load(Ordering::Relaxed), None)?;
        }
        Ok(())
    }
}

/// A registry named `sipark` holding the shard, stream and data-path
/// collectors.
pub fn registry(
    stats: Vec<Arc<ShardStats>>,
    stream: Option<Arc<StreamStats>>,
    xdp: Option<crate::bpf::XdpStats>,
    steer: Option<crate::bpf::SteerStats>,
) -> Registry {
    let mut r = Registry::with_prefix("sipark");
    r.register_collector(Box::new(ShardCollector::new(stats.clone())));
    if let Some(stats) = stream {
        r.register_collector(Box::new(StreamCollector { stats }));
    }
    r.register_collector(Box::new(DatapathCollector { stats, xdp, steer }));
    r
}

/// The exposition text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        warn!(error = %e, "metrics encoding failed");
    }
    out
}

/// Serves `GET /metrics` on `listener` until `stop` is set.
pub fn serve(listener: TcpListener, registry: Registry, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: `pfd` is one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
        if rc <= 0 {
            continue; // timeout or EINTR
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = handle(stream, &registry) {
                    debug!(%peer, error = %e, "metrics connection failed");
                }
            }
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head_only: bool },
    NotFound,
    BadMethod,
    BadRequest,
}

fn route(head: &[u8]) -> Route {
    let line_end = head.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(head.len());
    let mut parts = head[..line_end].split(|&b| b == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Route::BadRequest;
    };
    if parts.next().is_some() || !version.starts_with(b"HTTP/1.") {
        return Route::BadRequest;
    }
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Route::BadMethod,
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or(target);
    if path == b"/metrics" { Route::Metrics { head_only } } else { Route::NotFound }
}

fn handle(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = [0u8; MAX_REQUEST];
    let mut len = 0;
    let complete = loop {
        if len == buf.len() {
            break false;
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            break false;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || buf[..len].windows(2).any(|w| w == b"\n\n") {
            break true;
        }
    };
    let r = if complete { route(&buf[..len]) } else { Route::BadRequest };
    let (status, ctype, body, head_only) = match r {
        Route::Metrics { head_only } => ("200 OK", CONTENT_TYPE, render(registry), head_only),
        Route::NotFound => ("404 Not Found", "text/plain", "not found\n".to_owned(), false),
        Route::BadMethod => ("405 Method Not Allowed", "text/plain", "GET only\n".to_owned(), false),
        Route::BadRequest => ("400 Bad Request", "text/plain", "bad request\n".to_owned(), false),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("405") {
        resp.push_str("Allow: GET, HEAD\r\n");
    }
    resp.push_str("\r\n");
    if !head_only {
        resp.push_str(&body);
    }
    stream.write_all(resp.as_bytes())?;
    stream.flush()?;
    if !complete {
        // Closing with unread input would reset the connection and could
        // destroy the answer: half-close, then discard a bounded amount.
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut left = 8 * MAX_REQUEST;
        while left > 0 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\n\r\n"), Route::Metrics { head_only: false });
        assert_eq!(route(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics { head_only: true });
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::BadMethod);
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\xff\xfe"), Route::BadRequest);
    }

    #[test]
    fn per_worker_series_without_double_counted_totals() {
        let a = Arc::new(ShardStats::default());
        let b = Arc::new(ShardStats::default());
        a.handoffs_out.add(3);
        b.handoffs_out.add(4);
        b.parked.set(2);
        a.datagrams_in.add(10);
        b.datagrams_in.add(4);
        let text = render(&registry(vec![a, b], None, None, None));
        for line in [
            "# TYPE sipark_handoffs_out counter",
            "sipark_handoffs_out_total{worker=\"0\"} 3",
            "sipark_handoffs_out_total{worker=\"1\"} 4",
            "# TYPE sipark_parked gauge",
            "sipark_parked{worker=\"1\"} 2",
            "sipark_datagrams_in_total{worker=\"0\"} 10",
            "# TYPE sipark_handoff_ratio gauge",
            "sipark_handoff_ratio 0.5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "no EOF marker:\n{text}");
        assert!(!text.contains("sipark_xdp_") && !text.contains("sipark_steer_"), "no BPF series without BPF:\n{text}");
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("sipark_") && !l.contains("worker=") && !l.starts_with("sipark_handoff_ratio ")),
            "an unlabelled count would be double-counted by sum():\n{text}"
        );
    }

    #[test]
    fn stream_series_by_transport_and_reason() {
        let s = Arc::new(StreamStats::default());
        s.connections[1].store(3, Ordering::Relaxed);
        s.accepted[0].store(7, Ordering::Relaxed);
        s.closed[CloseReason::ALL.iter().position(|r| *r == CloseReason::Oversize).unwrap_or(0)]
            .store(2, Ordering::Relaxed);
        s.dropped[0].store(5, Ordering::Relaxed);
        let text = render(&registry(vec![Arc::new(ShardStats::default())], Some(s), None, None));
        for line in [
            "# TYPE sipark_stream_connections gauge",
            "sipark_stream_connections{transport=\"tls\"} 3",
            "sipark_stream_connections{transport=\"tcp\"} 0",
            "sipark_stream_accepted_total{transport=\"tcp\"} 7",
            "sipark_stream_closed_total{reason=\"oversize\"} 2",
            "sipark_stream_closed_total{reason=\"idle\"} 0",
            "sipark_stream_dropped_total{reason=\"inbox_full\"} 5",
            "sipark_stream_pings_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        let none = render(&registry(vec![Arc::new(ShardStats::default())], None, None, None));
        assert!(!none.contains("sipark_stream_"), "no stream series without the stream thread:\n{none}");
    }

    #[test]
    fn reload_counts_by_result() {
        let stats = Arc::new(ReloadStats::default());
        stats.ok.store(3, Ordering::Relaxed);
        stats.error.store(1, Ordering::Relaxed);
        let mut reg = registry(vec![Arc::new(ShardStats::default())], None, None, None);
        reg.register_collector(Box::new(ReloadCollector { stats }));
        let text = render(&reg);
        for line in [
            "# TYPE sipark_config_reloads counter",
            "sipark_config_reloads_total{result=\"ok\"} 3",
            "sipark_config_reloads_total{result=\"error\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn http_server_answers_and_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stats = Arc::new(ShardStats::default());
        stats.datagrams_in.add(5);
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let stop = stop.clone();
            let reg = registry(vec![stats], None, None, None);
            std::thread::spawn(move || serve(listener, reg, stop))
        };
        let get = |req: &str| -> String {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            s.write_all(req.as_bytes()).expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            out
        };
        let ok = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("\nsipark_datagrams_in_total{worker=\"0\"} 5\n"), "{ok}");
        let nf = get("GET /nope HTTP/1.1\r\n\r\n");
        assert!(nf.starts_with("HTTP/1.1 404"), "{nf}");
        let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_REQUEST));
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        // The server may close before reading everything; only the answer matters.
        let _ = s.write_all(big.as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        drop(s);
        assert!(out.starts_with("HTTP/1.1 400"), "oversized request: {out:?}");
        stop.store(true, Ordering::Release);
        t.join().expect("server thread");
    }
}
