//! What a music-on-hold run measured: a table for people, JSON for
//! `cargo xtask bench --moh`.

use std::fmt;

use super::MohConfig;
use super::floor::FloorSent;
use super::rx::{PTIME_NS, RxReport};
use super::scrape::MohMetrics;
use crate::load::Report;
use crate::load::report::{json_str, num};

/// The receiver's figures of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct RxFigures {
    pub window_s: f64,
    pub streams: u64,
    pub streams_silent: u64,
    pub streams_untracked: u64,
    pub packets: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub skipped: u64,
    pub ts_irregular: u64,
    pub socket_drops: u64,
    pub not_rtp: u64,
    pub truncated: u64,
    pub other_size: u64,
    /// Pacing error (|gap − 20 ms|), µs.
    pub pacing_count: u64,
    pub pacing_p50_us: f64,
    pub pacing_p99_us: f64,
    pub pacing_p999_us: f64,
    pub pacing_max_us: f64,
    pub pacing_mean_us: f64,
    /// Time in the receiver's sockets, µs.
    pub wait_p99_us: u64,
    pub wait_max_us: u64,
    pub cpu_s: f64,
}

impl RxFigures {
    pub fn of(r: &RxReport) -> RxFigures {
        let us = |ns: u64| ns as f64 / 1000.0;
        RxFigures {
            window_s: r.window_s,
            streams: r.streams,
            streams_silent: r.streams_silent,
            streams_untracked: r.streams_untracked,
            packets: r.packets,
            lost: r.lost,
            out_of_order: r.out_of_order,
            skipped: r.skipped,
            ts_irregular: r.ts_irregular,
            socket_drops: r.socket_drops,
            not_rtp: r.not_rtp,
            truncated: r.truncated,
            other_size: r.other_size,
            pacing_count: r.pacing.count(),
            pacing_p50_us: us(r.pacing.percentile(50.0)),
            pacing_p99_us: us(r.pacing.percentile(99.0)),
            pacing_p999_us: us(r.pacing.percentile(99.9)),
            pacing_max_us: us(r.pacing.max()),
            pacing_mean_us: r.pacing.mean() / 1000.0,
            wait_p99_us: r.wait.percentile(99.0),
            wait_max_us: r.wait.max(),
            cpu_s: r.cpu_s,
        }
    }

    /// Packets a window of `streams` streams should carry: one per stream
    /// per packet time.
    pub fn expected(&self, streams: u32) -> f64 {
        f64::from(streams) * self.window_s * 1e9 / PTIME_NS as f64
    }

    fn json(&self) -> String {
        format!(
            "{{\"window_s\":{},\"streams\":{},\"streams_silent\":{},\"streams_untracked\":{},\"packets\":{},\
             \"lost\":{},\"out_of_order\":{},\"skipped\":{},\"ts_irregular\":{},\"socket_drops\":{},\"not_rtp\":{},\
             \"truncated\":{},\"other_size\":{},\"pacing\":{{\"count\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\
             \"max_us\":{},\"mean_us\":{}}},\"socket_wait_p99_us\":{},\"socket_wait_max_us\":{},\"receiver_cpu_s\":{}}}",
            num(self.window_s),
            self.streams,
            self.streams_silent,
            self.streams_untracked,
            self.packets,
            self.lost,
            self.out_of_order,
            self.skipped,
            self.ts_irregular,
            self.socket_drops,
            self.not_rtp,
            self.truncated,
            self.other_size,
            self.pacing_count,
            num(self.pacing_p50_us),
            num(self.pacing_p99_us),
            num(self.pacing_p999_us),
            num(self.pacing_max_us),
            num(self.pacing_mean_us),
            self.wait_p99_us,
            self.wait_max_us,
            num(self.cpu_s),
        )
    }
}

/// The floor: what the bare sender did, and what the receiver saw of it.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorFigures {
    pub sent: FloorSent,
    pub rx: RxFigures,
}

/// The park cycles run while the streams played.
#[derive(Debug, Clone, PartialEq)]
pub struct CyclePhase {
    pub report: Report,
    /// The whole phase (registrations, warm-up, cycles, unregistrations).
    pub phase_s: f64,
    /// The music at the receiver over the phase.
    pub music: RxFigures,
    /// The engine's music-on-hold counters over the phase.
    pub engine: Option<MohMetrics>,
}

/// Everything a music-on-hold run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct MohReport {
    pub target: String,
    pub streams: u32,
    pub rtp_sockets: usize,
    /// The receive buffer each socket got, bytes.
    pub rcvbuf_bytes: usize,
    pub warmup_s: f64,
    pub window_s: f64,
    pub parked: u64,
    pub park_failed: u64,
    /// Final error responses to the park INVITEs, (status, count).
    pub park_refusals: Vec<(u16, u64)>,
    pub park_s: f64,
    /// Calls the engine hung up while parked.
    pub calls_lost: u64,
    pub parked_at_end: u64,
    pub hangup_ok: u64,
    pub hangup_failed: u64,
    pub hangup_s: f64,
    pub engine_cpu_s: Option<f64>,
    /// The engine's counters over the window (`--engine-metrics`).
    pub engine: Option<MohMetrics>,
    pub rx: Option<RxFigures>,
    pub cycles: Option<CyclePhase>,
    pub floor: Option<FloorFigures>,
    /// The engine's streams gauge after the hang-up, before the floor.
    pub streams_after_hangup: Option<f64>,
    pub metrics_errors: Vec<String>,
}

impl MohReport {
    pub(super) fn new(cfg: &MohConfig) -> MohReport {
        MohReport {
            target: cfg.load.target.to_string(),
            streams: cfg.streams,
            rtp_sockets: cfg.rtp_sockets,
            rcvbuf_bytes: 0,
            warmup_s: cfg.warmup.as_secs_f64(),
            window_s: cfg.window.as_secs_f64(),
            parked: 0,
            park_failed: 0,
            park_refusals: Vec::new(),
            park_s: 0.0,
            calls_lost: 0,
            parked_at_end: 0,
            hangup_ok: 0,
            hangup_failed: 0,
            hangup_s: 0.0,
            engine_cpu_s: None,
            engine: None,
            rx: None,
            cycles: None,
            floor: None,
            streams_after_hangup: None,
            metrics_errors: Vec::new(),
        }
    }

    /// Packets the engine sent in the window: its own count (handed to the
    /// socket, less those the kernel refused) when its metrics were read,
    /// else what the receiver got.
    pub fn packets_sent(&self) -> Option<f64> {
        match (&self.engine, &self.rx) {
            (Some(m), _) => Some(m.packets - m.send_errors),
            (None, Some(rx)) => Some(rx.packets as f64),
            (None, None) => None,
        }
    }

    /// Packets per second of the window.
    pub fn packets_per_s(&self) -> Option<f64> {
        self.packets_sent().filter(|_| self.window_s > 0.0).map(|p| p / self.window_s)
    }

    /// Packets sent per engine CPU-second.
    pub fn packets_per_engine_cpu_s(&self) -> Option<f64> {
        let cpu = self.engine_cpu_s.filter(|s| *s > 0.0)?;
        Some(self.packets_sent()? / cpu)
    }

    /// The engine's packets per CPU-second over the floor's.
    pub fn floor_ratio(&self) -> Option<f64> {
        let floor = self.floor.as_ref()?.sent.per_cpu_s().filter(|f| *f > 0.0)?;
        Some(self.packets_per_engine_cpu_s()? / floor)
    }

    /// Park cycles per engine CPU-second in the cycle phase, less the CPU
    /// the music took in the window (its rate times the cycle window).
    pub fn cycles_per_engine_cpu_s_net(&self) -> Option<f64> {
        let c = self.cycles.as_ref()?;
        let music = self.engine_cpu_s? / self.window_s.max(1e-9);
        let cpu = c.report.engine_cpu_s? - music * c.report.window_s;
        (cpu > 0.0).then(|| c.report.cycles_ok as f64 / cpu)
    }

    /// Whether every call was parked, stayed parked, and was heard in the
    /// window, and every cycle of the cycle phase completed.
    pub fn clean(&self) -> bool {
        let all = u64::from(self.streams);
        self.parked == all
            && self.calls_lost == 0
            && self.rx.as_ref().is_some_and(|r| r.streams == all)
            && self.cycles.as_ref().is_none_or(|c| c.report.cycles_failed == 0 && c.report.cycles_ok > 0)
    }

    /// The figures as one JSON object.
    pub fn to_json(&self) -> String {
        let opt = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), num);
        let metrics = |m: &Option<MohMetrics>| {
            m.as_ref().map_or_else(
                || "null".to_owned(),
                |m| {
                    format!(
                        "{{\"streams\":{},\"started\":{},\"refused\":{},\"packets\":{},\"skipped\":{},\
                         \"unaddressed\":{},\"send_errors\":{}}}",
                        num(m.streams),
                        num(m.started),
                        num(m.refused),
                        num(m.packets),
                        num(m.skipped),
                        num(m.unaddressed),
                        num(m.send_errors)
                    )
                },
            )
        };
        let floor = self.floor.as_ref().map_or_else(
            || "null".to_owned(),
            |f| {
                format!(
                    "{{\"packets\":{},\"packets_total\":{},\"send_errors\":{},\"cpu_s\":{},\"window_s\":{},\
                     \"late_ticks\":{},\"pin_error\":{},\"packets_per_cpu_s\":{},\"rx\":{}}}",
                    f.sent.packets,
                    f.sent.total,
                    f.sent.send_errors,
                    num(f.sent.cpu_s),
                    num(f.sent.window_s),
                    f.sent.late_ticks,
                    f.sent.pin_error.as_deref().map_or_else(|| "null".to_owned(), json_str),
                    opt(f.sent.per_cpu_s()),
                    f.rx.json()
                )
            },
        );
        let cycles = self.cycles.as_ref().map_or_else(
            || "null".to_owned(),
            |c| {
                format!(
                    "{{\"phase_s\":{},\"rx\":{},\"engine_moh\":{},\"run\":{}}}",
                    num(c.phase_s),
                    c.music.json(),
                    metrics(&c.engine),
                    c.report.to_json()
                )
            },
        );
        let errors: Vec<String> = self.metrics_errors.iter().map(|e| json_str(e)).collect();
        let refusals: Vec<String> = self.park_refusals.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!(
            "{{\"target\":{},\"mode\":\"moh\",\"streams\":{},\"rtp_sockets\":{},\"rcvbuf_bytes\":{},\"warmup_s\":{},\
             \"window_s\":{},\"parked\":{},\"park_failed\":{},\"park_refusals\":{{{}}},\"park_s\":{},\
             \"calls_lost\":{},\"parked_at_end\":{},\
             \"hangup_ok\":{},\"hangup_failed\":{},\"hangup_s\":{},\"engine_cpu_s\":{},\"engine_moh\":{},\
             \"packets_sent\":{},\"packets_per_s\":{},\"packets_per_engine_cpu_s\":{},\"floor_packets_per_cpu_s\":{},\
             \"floor_ratio\":{},\"rx\":{},\"floor\":{},\"cycles\":{},\"cycles_per_engine_cpu_s\":{},\
             \"cycles_per_engine_cpu_s_net\":{},\"streams_after_hangup\":{},\"metrics_errors\":[{}],\"clean\":{}}}",
            json_str(&self.target),
            self.streams,
            self.rtp_sockets,
            self.rcvbuf_bytes,
            num(self.warmup_s),
            num(self.window_s),
            self.parked,
            self.park_failed,
            refusals.join(","),
            num(self.park_s),
            self.calls_lost,
            self.parked_at_end,
            self.hangup_ok,
            self.hangup_failed,
            num(self.hangup_s),
            opt(self.engine_cpu_s),
            metrics(&self.engine),
            opt(self.packets_sent()),
            opt(self.packets_per_s()),
            opt(self.packets_per_engine_cpu_s()),
            opt(self.floor.as_ref().and_then(|f| f.sent.per_cpu_s())),
            opt(self.floor_ratio()),
            self.rx.as_ref().map_or_else(|| "null".to_owned(), RxFigures::json),
            floor,
            cycles,
            opt(self.cycles.as_ref().and_then(|c| c.report.cycles_per_engine_cpu_s)),
            opt(self.cycles_per_engine_cpu_s_net()),
            opt(self.streams_after_hangup),
            errors.join(","),
            self.clean(),
        )
    }
}

fn rx_lines(f: &mut fmt::Formatter<'_>, r: &RxFigures, streams: u32) -> fmt::Result {
    writeln!(
        f,
        "  received             {} packets of {:.0} expected, {} streams of {streams} ({} silent, {} untracked)",
        r.packets,
        r.expected(streams),
        r.streams,
        r.streams_silent,
        r.streams_untracked
    )?;
    writeln!(
        f,
        "  lost                 {} (of which the receiver's sockets dropped {}); {} out of order; {} packet times \
         skipped; {} odd timestamps",
        r.lost, r.socket_drops, r.out_of_order, r.skipped, r.ts_irregular
    )?;
    writeln!(
        f,
        "  pacing error         |gap - 20 ms| p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms ({} gaps)",
        r.pacing_p50_us / 1000.0,
        r.pacing_p99_us / 1000.0,
        r.pacing_p999_us / 1000.0,
        r.pacing_max_us / 1000.0,
        r.pacing_count
    )?;
    writeln!(
        f,
        "  receiver             {:.2} CPU-s; waits in its sockets p99 {} µs, max {} µs; {} not RTP, {} cut, {} \
         not 172 B",
        r.cpu_s, r.wait_p99_us, r.wait_max_us, r.not_rtp, r.truncated, r.other_size
    )
}

impl fmt::Display for MohReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: Option<f64>, prec: usize| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"));
        writeln!(f, "sipark-load --moh-streams {} against {}", self.streams, self.target)?;
        let refusals: Vec<String> = self.park_refusals.iter().map(|(k, v)| format!("{v}×{k}")).collect();
        writeln!(
            f,
            "  calls                {} parked in {:.2} s, {} failed{}, {} hung up by the engine; {} hung up \
             after ({} failed) in {:.2} s",
            self.parked,
            self.park_s,
            self.park_failed,
            if refusals.is_empty() { String::new() } else { format!(" ({})", refusals.join(", ")) },
            self.calls_lost,
            self.hangup_ok,
            self.hangup_failed,
            self.hangup_s
        )?;
        writeln!(
            f,
            "  window               {:.1} s after {:.1} s of music; {} RTP sockets of {} KiB",
            self.window_s,
            self.warmup_s,
            self.rtp_sockets,
            self.rcvbuf_bytes / 1024
        )?;
        writeln!(
            f,
            "  engine               {} packets/s sent, {} CPU-s: {} packets per engine CPU-s",
            opt(self.packets_per_s(), 0),
            opt(self.engine_cpu_s, 2),
            opt(self.packets_per_engine_cpu_s(), 0)
        )?;
        if let Some(m) = &self.engine {
            writeln!(
                f,
                "  engine counters      {:.0} streams, {:.0} packets, {:.0} skipped, {:.0} unaddressed, {:.0} send \
                 errors, {:.0} refused",
                m.streams, m.packets, m.skipped, m.unaddressed, m.send_errors, m.refused
            )?;
        }
        if let Some(r) = &self.rx {
            rx_lines(f, r, self.streams)?;
        }
        if let Some(fl) = &self.floor {
            writeln!(
                f,
                "floor: a bare sendmmsg sender{}, same packets, rate and receivers, engine idle",
                fl.sent.pin_error.as_ref().map_or_else(String::new, |e| format!(" (NOT pinned: {e})"))
            )?;
            writeln!(
                f,
                "  sender               {} packets in {:.2} CPU-s: {} packets per CPU-s; {} refused, {} late ticks",
                fl.sent.packets,
                fl.sent.cpu_s,
                opt(fl.sent.per_cpu_s(), 0),
                fl.sent.send_errors,
                fl.sent.late_ticks
            )?;
            rx_lines(f, &fl.rx, self.streams)?;
            writeln!(f, "  engine / floor       {}", opt(self.floor_ratio().map(|r| r * 100.0), 1) + " %")?;
        }
        if let Some(c) = &self.cycles {
            let r = &c.report;
            writeln!(f, "park cycles while the music played ({:.1} s phase):", c.phase_s)?;
            writeln!(
                f,
                "  cycles               {} ok, {} failed, {:.0}/s; {} per engine CPU-s ({} net of the music)",
                r.cycles_ok,
                r.cycles_failed,
                r.rate_achieved,
                opt(r.cycles_per_engine_cpu_s, 0),
                opt(self.cycles_per_engine_cpu_s_net(), 0)
            )?;
            if let Some(m) = &c.engine {
                writeln!(
                    f,
                    "  engine counters      {:.0} streams, {:.0} packets, {:.0} skipped, {:.0} send errors",
                    m.streams, m.packets, m.skipped, m.send_errors
                )?;
            }
            rx_lines(f, &c.music, self.streams)?;
        }
        for e in &self.metrics_errors {
            writeln!(f, "  metrics              {e}")?;
        }
        Ok(())
    }
}
