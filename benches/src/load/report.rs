//! What a run measured: a table for people, JSON for plots.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::driver::Counters;
use super::hist::Histogram;
use super::net::NetStats;
use super::{Failure, LoadConfig, Mode};

/// Percentiles of one latency, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    /// The summary of `h` (recorded in µs).
    pub fn of(h: &Histogram) -> Latency {
        Latency {
            count: h.count(),
            p50_us: h.percentile(50.0),
            p99_us: h.percentile(99.0),
            p999_us: h.percentile(99.9),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// The figures of one run. Cycle figures cover the measured window (the
/// cycle phase) only.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub target: String,
    /// `open` or `closed`.
    pub mode: &'static str,
    pub rate_target: Option<f64>,
    pub concurrency: Option<u32>,
    /// Seconds of unrecorded cycles before the window.
    pub warmup_s: f64,
    pub tenants: u32,
    pub extensions: u32,
    pub devices: u32,
    pub sockets: usize,
    pub registered: u64,
    pub registration_failed: u64,
    pub registration_s: f64,
    pub unregistered: u64,
    pub unregistration_failed: u64,
    pub cleanup_error: Option<String>,
    pub cycles_started: u64,
    pub cycles_ok: u64,
    pub cycles_failed: u64,
    /// Open loop: starts skipped because no slot or idle extension was free.
    pub cycles_not_started: u64,
    /// Cycles whose park INVITE was refused 503 (overload control).
    pub cycles_shed_park: u64,
    /// Cycles whose retrieve was refused 503 after the park was admitted
    /// (the parked party then hung up).
    pub cycles_shed_retrieve: u64,
    /// Failed cycles by cause (label, count), non-zero only.
    pub failures: Vec<(&'static str, u64)>,
    /// Final error responses to our cycle requests, (status, count).
    pub refusals: Vec<(u16, u64)>,
    pub window_s: f64,
    /// Completed cycles per second of the window.
    pub rate_achieved: f64,
    /// Our retransmissions in the window (requests and 2xx).
    pub retransmissions_sent: u64,
    /// Engine retransmissions received in the window.
    pub duplicates_received: u64,
    /// Messages in the window that matched nothing current.
    pub stray: u64,
    /// Answers we sent to stray requests in the window.
    pub stray_answered: u64,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    /// Sent + received in the window, per completed cycle.
    pub datagrams_per_cycle: f64,
    /// Whole run (registration and clean-up included).
    pub datagrams_sent_total: u64,
    pub datagrams_received_total: u64,
    pub send_dropped: u64,
    pub truncated: u64,
    /// Park INVITE sent → its 200 received.
    pub park_200: Latency,
    /// Park 200 received → each device's park-info NOTIFY received.
    pub park_notify: Latency,
    /// Retrieve INVITE sent → its 200 received.
    pub retrieve_200: Latency,
    /// Whole completed cycles: park INVITE sent → the last BYE answer.
    pub cycle: Latency,
    /// Refused requests: INVITE sent → its 503 received.
    pub shed_503: Latency,
    /// Of those, the 503s sent by the engine's XDP program.
    pub shed_503_nic: Latency,
    pub engine_cpu_s: Option<f64>,
    pub generator_cpu_s: f64,
    /// The headline: completed cycles per engine CPU-second.
    pub cycles_per_engine_cpu_s: Option<f64>,
    /// Its inverse: engine CPU microseconds per completed cycle.
    pub engine_cpu_us_per_cycle: Option<f64>,
    pub cycles_per_generator_cpu_s: f64,
    /// The background parked calls and the engine's memory.
    pub background: Background,
}

/// The background parked calls (`--background-parked`) and the engine's
/// resident memory around them. Counts cover the whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Background {
    /// Calls asked for.
    pub requested: u32,
    /// Calls parked (200 received, ACKed).
    pub ok: u64,
    /// Calls that could not be parked: `refused + no_answer`.
    pub failed: u64,
    pub refused: u64,
    pub no_answer: u64,
    /// Parked calls the engine hung up during the run.
    pub lost: u64,
    /// Final error responses to background INVITEs, (status, count).
    pub refusals: Vec<(u16, u64)>,
    /// Still parked when the cycles ended.
    pub parked_at_end: u64,
    /// Time to park them all (first INVITE to last answer).
    pub park_s: f64,
    pub parks_per_s: f64,
    /// Engine CPU while parking them.
    pub park_engine_cpu_s: Option<f64>,
    /// Wait between the parks and the cycles (the same wait comes before
    /// the parks, after the registrations).
    pub settle_s: f64,
    pub hangup_ok: u64,
    pub hangup_failed: u64,
    pub hangup_s: f64,
    /// Engine `VmRSS`, bytes: before the background parks (after the
    /// registrations and a settle), right after them, after the settle (just before the
    /// cycles), after the cycles, and after the hang-ups and unregistrations.
    pub rss_before: Option<u64>,
    pub rss_parked: Option<u64>,
    pub rss_after: Option<u64>,
    pub rss_end: Option<u64>,
    pub rss_cleanup: Option<u64>,
    /// `(rss_after - rss_before) / ok`.
    pub rss_per_call: Option<f64>,
}

/// What the run measured about the background calls, for [`Report::build`].
#[derive(Debug, Clone, Default)]
pub struct BackgroundInputs {
    pub requested: u32,
    pub refusals: Vec<(u16, u64)>,
    pub parked_at_end: u64,
    pub park_time: Duration,
    pub park_engine_cpu: Option<Duration>,
    pub settle: Duration,
    pub hangup_time: Duration,
    pub rss_before: Option<u64>,
    pub rss_parked: Option<u64>,
    pub rss_after: Option<u64>,
    pub rss_end: Option<u64>,
    pub rss_cleanup: Option<u64>,
}

/// What [`Report::build`] needs.
pub struct Inputs<'a> {
    pub cfg: &'a LoadConfig,
    pub registration: Duration,
    pub window: Duration,
    /// Counters at the start and end of the window, and at the very end.
    pub c0: Counters,
    pub c1: Counters,
    pub c_end: Counters,
    pub net0: NetStats,
    pub net1: NetStats,
    pub net_end: NetStats,
    pub engine_cpu: Option<Duration>,
    pub gen_cpu: Duration,
    pub h_park: &'a Histogram,
    pub h_notify: &'a Histogram,
    pub h_retrieve: &'a Histogram,
    pub h_cycle: &'a Histogram,
    pub h_shed: &'a Histogram,
    pub h_shed_nic: &'a Histogram,
    pub cleanup_error: Option<String>,
    pub background: BackgroundInputs,
}

fn per(n: u64, d: f64) -> f64 {
    if d > 0.0 { n as f64 / d } else { 0.0 }
}

impl Report {
    /// Computes the figures.
    pub fn build(i: Inputs<'_>) -> Report {
        let (c0, c1) = (i.c0, i.c1);
        let window_s = i.window.as_secs_f64();
        let ok = c1.ok - c0.ok;
        let sent = i.net1.sent - i.net0.sent;
        let received = i.net1.received - i.net0.received;
        let engine_cpu_s = i.engine_cpu.map(|d| d.as_secs_f64());
        let gen_s = i.gen_cpu.as_secs_f64();
        let failures = Failure::ALL
            .iter()
            .map(|f| (f.label(), c1.failures[*f as usize] - c0.failures[*f as usize]))
            .filter(|(_, n)| *n > 0)
            .collect();
        let bg = &i.background;
        let ce = &i.c_end;
        let background = Background {
            requested: bg.requested,
            ok: ce.bg_ok,
            failed: ce.bg_refused + ce.bg_no_answer,
            refused: ce.bg_refused,
            no_answer: ce.bg_no_answer,
            lost: ce.bg_lost,
            refusals: bg.refusals.clone(),
            parked_at_end: bg.parked_at_end,
            park_s: bg.park_time.as_secs_f64(),
            parks_per_s: per(ce.bg_ok, bg.park_time.as_secs_f64()),
            park_engine_cpu_s: bg.park_engine_cpu.map(|d| d.as_secs_f64()),
            settle_s: bg.settle.as_secs_f64(),
            hangup_ok: ce.bg_bye_ok,
            hangup_failed: ce.bg_bye_failed,
            hangup_s: bg.hangup_time.as_secs_f64(),
            rss_before: bg.rss_before,
            rss_parked: bg.rss_parked,
            rss_after: bg.rss_after,
            rss_end: bg.rss_end,
            rss_cleanup: bg.rss_cleanup,
            rss_per_call: match (bg.rss_before, bg.rss_after) {
                (Some(a), Some(b)) if ce.bg_ok > 0 => Some((b as f64 - a as f64) / ce.bg_ok as f64),
                _ => None,
            },
        };
        let (mode, rate_target, concurrency) = match i.cfg.mode {
            Mode::Open { rate } => ("open", Some(rate), None),
            Mode::Closed { concurrency } => ("closed", None, Some(concurrency)),
        };
        Report {
            target: i.cfg.target.to_string(),
            mode,
            rate_target,
            concurrency,
            warmup_s: i.cfg.warmup.as_secs_f64(),
            tenants: i.cfg.tenants,
            extensions: i.cfg.extensions,
            devices: i.cfg.devices,
            sockets: i.cfg.sockets,
            registered: c1.registered,
            registration_failed: c1.registration_failed,
            registration_s: i.registration.as_secs_f64(),
            unregistered: i.c_end.unregistered,
            unregistration_failed: i.c_end.unregistration_failed,
            cleanup_error: i.cleanup_error,
            cycles_started: c1.started - c0.started,
            cycles_ok: ok,
            cycles_failed: c1.failed - c0.failed,
            cycles_not_started: c1.not_started - c0.not_started,
            cycles_shed_park: c1.shed_parks - c0.shed_parks,
            cycles_shed_retrieve: c1.shed_retrieves - c0.shed_retrieves,
            failures,
            refusals: (0..c1.refusals.len())
                .map(|i| (300 + i as u16, c1.refusals[i] - c0.refusals[i]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            window_s,
            rate_achieved: per(ok, window_s),
            retransmissions_sent: c1.retransmissions - c0.retransmissions,
            duplicates_received: c1.duplicates - c0.duplicates,
            stray: c1.stray - c0.stray,
            stray_answered: c1.stray_answered - c0.stray_answered,
            datagrams_sent: sent,
            datagrams_received: received,
            datagrams_per_cycle: if ok > 0 { (sent + received) as f64 / ok as f64 } else { 0.0 },
            datagrams_sent_total: i.net_end.sent,
            datagrams_received_total: i.net_end.received,
            send_dropped: i.net_end.send_dropped,
            truncated: i.net_end.truncated,
            park_200: Latency::of(i.h_park),
            park_notify: Latency::of(i.h_notify),
            retrieve_200: Latency::of(i.h_retrieve),
            cycle: Latency::of(i.h_cycle),
            shed_503: Latency::of(i.h_shed),
            shed_503_nic: Latency::of(i.h_shed_nic),
            engine_cpu_s,
            generator_cpu_s: gen_s,
            cycles_per_engine_cpu_s: engine_cpu_s.filter(|s| *s > 0.0).map(|s| ok as f64 / s),
            engine_cpu_us_per_cycle: engine_cpu_s.filter(|_| ok > 0).map(|s| s * 1e6 / ok as f64),
            cycles_per_generator_cpu_s: per(ok, gen_s),
            background,
        }
    }

    /// The figures as one JSON object.
    pub fn to_json(&self) -> String {
        let mut o = String::with_capacity(2048);
        let opt_f = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), num);
        let lat = |l: &Latency| {
            format!(
                "{{\"count\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"mean_us\":{}}}",
                l.count,
                l.p50_us,
                l.p99_us,
                l.p999_us,
                l.max_us,
                num(l.mean_us)
            )
        };
        let failures: Vec<String> = self.failures.iter().map(|(k, v)| format!("{}:{v}", json_str(k))).collect();
        let refusals: Vec<String> = self.refusals.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        let _ = write!(
            o,
            "{{\"target\":{},\"mode\":{},\"rate_target\":{},\"concurrency\":{},\"warmup_s\":{},\"tenants\":{},\"extensions\":{},\
             \"devices\":{},\"sockets\":{},\"registered\":{},\"registration_failed\":{},\"registration_s\":{},\
             \"unregistered\":{},\"unregistration_failed\":{},\"cleanup_error\":{},\"cycles_started\":{},\
             \"cycles_ok\":{},\"cycles_failed\":{},\"cycles_not_started\":{},\"cycles_shed_park\":{},\"cycles_shed_retrieve\":{},\"failures\":{{{}}},\"refusals\":{{{}}},\"window_s\":{},\
             \"rate_achieved\":{},\"retransmissions_sent\":{},\"duplicates_received\":{},\"stray\":{},\"stray_answered\":{},\
             \"datagrams_sent\":{},\"datagrams_received\":{},\"datagrams_per_cycle\":{},\
             \"datagrams_sent_total\":{},\"datagrams_received_total\":{},\"send_dropped\":{},\"truncated\":{},\
             \"park_200\":{},\"park_notify\":{},\"retrieve_200\":{},\"cycle\":{},\"shed_503\":{},\"shed_503_nic\":{},\"engine_cpu_s\":{},\"generator_cpu_s\":{},\
             \"cycles_per_engine_cpu_s\":{},\"engine_cpu_us_per_cycle\":{},\"cycles_per_generator_cpu_s\":{},{}}}",
            json_str(&self.target),
            json_str(self.mode),
            opt_f(self.rate_target),
            self.concurrency.map_or_else(|| "null".to_owned(), |c| c.to_string()),
            num(self.warmup_s),
            self.tenants,
            self.extensions,
            self.devices,
            self.sockets,
            self.registered,
            self.registration_failed,
            num(self.registration_s),
            self.unregistered,
            self.unregistration_failed,
            self.cleanup_error.as_deref().map_or_else(|| "null".to_owned(), json_str),
            self.cycles_started,
            self.cycles_ok,
            self.cycles_failed,
            self.cycles_not_started,
            self.cycles_shed_park,
            self.cycles_shed_retrieve,
            failures.join(","),
            refusals.join(","),
            num(self.window_s),
            num(self.rate_achieved),
            self.retransmissions_sent,
            self.duplicates_received,
            self.stray,
            self.stray_answered,
            self.datagrams_sent,
            self.datagrams_received,
            num(self.datagrams_per_cycle),
            self.datagrams_sent_total,
            self.datagrams_received_total,
            self.send_dropped,
            self.truncated,
            lat(&self.park_200),
            lat(&self.park_notify),
            lat(&self.retrieve_200),
            lat(&self.cycle),
            lat(&self.shed_503),
            lat(&self.shed_503_nic),
            opt_f(self.engine_cpu_s),
            num(self.generator_cpu_s),
            opt_f(self.cycles_per_engine_cpu_s),
            opt_f(self.engine_cpu_us_per_cycle),
            num(self.cycles_per_generator_cpu_s),
            self.background.json_members(),
        );
        o
    }
}

impl Background {
    /// The figures as JSON object members (no braces).
    fn json_members(&self) -> String {
        let opt_u = |v: Option<u64>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
        let opt_f = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), num);
        let refusals: Vec<String> = self.refusals.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!(
            "\"background_parked\":{},\"background_ok\":{},\"background_failed\":{},\"background_refused\":{},\
             \"background_no_answer\":{},\"background_lost\":{},\"background_refusals\":{{{}}},\
             \"background_parked_at_end\":{},\"background_park_s\":{},\"background_parks_per_s\":{},\
             \"background_park_engine_cpu_s\":{},\"background_settle_s\":{},\"background_hangup_ok\":{},\
             \"background_hangup_failed\":{},\"background_hangup_s\":{},\"engine_rss_before_bytes\":{},\
             \"engine_rss_parked_bytes\":{},\"engine_rss_after_bytes\":{},\"engine_rss_end_bytes\":{},\
             \"engine_rss_cleanup_bytes\":{},\"engine_rss_bytes_per_background_call\":{}",
            self.requested,
            self.ok,
            self.failed,
            self.refused,
            self.no_answer,
            self.lost,
            refusals.join(","),
            self.parked_at_end,
            num(self.park_s),
            num(self.parks_per_s),
            opt_f(self.park_engine_cpu_s),
            num(self.settle_s),
            self.hangup_ok,
            self.hangup_failed,
            num(self.hangup_s),
            opt_u(self.rss_before),
            opt_u(self.rss_parked),
            opt_u(self.rss_after),
            opt_u(self.rss_end),
            opt_u(self.rss_cleanup),
            opt_f(self.rss_per_call),
        )
    }

    /// Whether every background call was parked and stayed parked.
    pub fn clean(&self) -> bool {
        self.failed == 0 && self.lost == 0 && self.ok == u64::from(self.requested)
    }
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "n/a".to_owned(), |b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)))
}

/// A finite JSON number (non-finite values become null).
pub(crate) fn num(v: f64) -> String {
    if v.is_finite() { format!("{}", (v * 1e6).round() / 1e6) } else { "null".to_owned() }
}

pub(crate) fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match (self.rate_target, self.concurrency) {
            (Some(r), _) => format!("open loop, {r} cycles/s"),
            (_, Some(c)) => format!("closed loop, {c} in flight"),
            _ => self.mode.to_owned(),
        };
        let mode = if self.warmup_s > 0.0 { format!("{mode}, after {} s of warm-up", self.warmup_s) } else { mode };
        writeln!(f, "sipark-load against {} ({mode})", self.target)?;
        writeln!(
            f,
            "  population        {} tenants x {} extensions x {} devices = {} registered ({} failed) in {:.2} s",
            self.tenants, self.extensions, self.devices, self.registered, self.registration_failed, self.registration_s
        )?;
        writeln!(f, "  cycles ok         {}", self.cycles_ok)?;
        writeln!(f, "  cycles failed     {}", self.cycles_failed)?;
        for (k, v) in &self.failures {
            writeln!(f, "    {k:<22}{v}")?;
        }
        if !self.refusals.is_empty() {
            let r: Vec<String> = self.refusals.iter().map(|(c, n)| format!("{c} x{n}")).collect();
            writeln!(f, "  refusals          {}", r.join(", "))?;
        }
        if self.cycles_shed_park + self.cycles_shed_retrieve > 0 {
            writeln!(
                f,
                "  cycles shed 503   {} at the park, {} at the retrieve (overload control)",
                self.cycles_shed_park, self.cycles_shed_retrieve
            )?;
        }
        if self.cycles_not_started > 0 {
            writeln!(f, "  not started       {} (no free slot or idle extension)", self.cycles_not_started)?;
        }
        writeln!(f, "  window            {:.3} s", self.window_s)?;
        writeln!(f, "  rate achieved     {:.1} cycles/s", self.rate_achieved)?;
        writeln!(
            f,
            "  retransmissions   {} sent by us, {} received from the engine; {} stray",
            self.retransmissions_sent, self.duplicates_received, self.stray
        )?;
        writeln!(
            f,
            "  datagrams         {} sent, {} received = {:.2} per cycle",
            self.datagrams_sent, self.datagrams_received, self.datagrams_per_cycle
        )?;
        writeln!(f, "  latency (ms)             count      p50      p99    p99.9      max")?;
        for (name, l) in [
            ("park INVITE -> 200", &self.park_200),
            ("park 200 -> NOTIFY", &self.park_notify),
            ("retrieve INVITE -> 200", &self.retrieve_200),
            ("whole cycle", &self.cycle),
            ("INVITE -> 503 (shed)", &self.shed_503),
            ("  of which from XDP", &self.shed_503_nic),
        ] {
            writeln!(
                f,
                "    {name:<22}{:>8} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                l.count,
                ms(l.p50_us),
                ms(l.p99_us),
                ms(l.p999_us),
                ms(l.max_us)
            )?;
        }
        match self.engine_cpu_s {
            Some(s) => writeln!(f, "  engine CPU        {s:.3} s")?,
            None => writeln!(f, "  engine CPU        not measured (no --engine-pid)")?,
        }
        writeln!(
            f,
            "  generator CPU     {:.3} s ({:.0} cycles per generator CPU-second)",
            self.generator_cpu_s, self.cycles_per_generator_cpu_s
        )?;
        match (self.cycles_per_engine_cpu_s, self.engine_cpu_us_per_cycle) {
            (Some(v), Some(us)) => writeln!(f, "  park cycles per engine CPU-second: {v:.0} ({us:.1} µs per cycle)")?,
            (Some(v), None) => writeln!(f, "  park cycles per engine CPU-second: {v:.0}")?,
            _ => writeln!(f, "  park cycles per engine CPU-second: n/a")?,
        }
        let b = &self.background;
        if b.requested > 0 {
            let cpu = match b.park_engine_cpu_s {
                Some(s) if b.ok > 0 && s > 0.0 => format!(", engine {:.1} µs CPU per park", s * 1e6 / b.ok as f64),
                _ => String::new(),
            };
            writeln!(
                f,
                "  background parked {} of {} ({} refused, {} unanswered, {} hung up by the engine) in {:.2} s \
                 ({:.0}/s{cpu}); settled {:.1} s before and after; {} still parked after the cycles",
                b.ok, b.requested, b.refused, b.no_answer, b.lost, b.park_s, b.parks_per_s, b.settle_s, b.parked_at_end
            )?;
            if !b.refusals.is_empty() {
                let r: Vec<String> = b.refusals.iter().map(|(c, n)| format!("{c} x{n}")).collect();
                writeln!(f, "    refusals          {}", r.join(", "))?;
            }
            writeln!(f, "  background hang-up {} ok, {} failed in {:.2} s", b.hangup_ok, b.hangup_failed, b.hangup_s)?;
        }
        if b.rss_before.is_some() {
            let per = b.rss_per_call.map_or_else(String::new, |v| format!("; {v:.0} bytes per background call"));
            writeln!(
                f,
                "  engine RSS (MiB)  {} before, {} parked, {} settled, {} after the cycles, {} cleaned up{per}",
                mb(b.rss_before),
                mb(b.rss_parked),
                mb(b.rss_after),
                mb(b.rss_end),
                mb(b.rss_cleanup)
            )?;
        }
        if self.send_dropped > 0 || self.truncated > 0 {
            writeln!(
                f,
                "  socket trouble    {} sends dropped, {} datagrams truncated",
                self.send_dropped, self.truncated
            )?;
        }
        if let Some(e) = &self.cleanup_error {
            writeln!(f, "  clean-up          {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_and_numbers() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(num(2.0), "2");
    }
}
