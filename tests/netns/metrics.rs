//! A reader for the Prometheus/OpenMetrics text sipark serves.

/// One sample line: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// One scrape: every sample line.
pub struct Metrics {
    pub text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the body of an HTTP response (headers are skipped).
    pub fn parse(http: &str) -> Metrics {
        let body = http.split_once("\r\n\r\n").map_or(http, |(_, b)| b);
        let mut samples = Vec::new();
        for line in body.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = match line.rsplit_once(' ') {
                Some(p) => p,
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            samples.push((name.to_owned(), labels, value));
        }
        Metrics { text: body.to_owned(), samples }
    }

    /// Sum of every sample of `name` whose labels include all of `want`;
    /// `None` when there is no such sample at all.
    pub fn try_sum(&self, name: &str, want: &[(&str, &str)]) -> Option<u64> {
        let mut found = false;
        let mut sum = 0u64;
        for (n, labels, v) in &self.samples {
            if n == name && want.iter().all(|(k, w)| labels.iter().any(|(lk, lv)| lk == k && lv == w)) {
                found = true;
                // Counters are integers; the float is exact below 2^53.
                sum += *v as u64;
            }
        }
        found.then_some(sum)
    }

    /// [`Metrics::try_sum`] that panics (with the scrape) when absent.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> u64 {
        self.try_sum(name, want).unwrap_or_else(|| panic!("no sample {name}{want:?} in the metrics:\n{}", self.text))
    }

    /// Per-worker value of `name` for workers 0..n.
    pub fn per_worker(&self, name: &str, n: usize) -> Vec<u64> {
        (0..n).map(|w| self.sum(name, &[("worker", &w.to_string())])).collect()
    }
}

/// `a="x",b="y"` (values without escaped quotes, which sipark never writes).
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    // Bounded by the input length: every round consumes at least one byte.
    while let Some((k, tail)) = rest.split_once("=\"") {
        let Some((v, after)) = tail.split_once('"') else {
            break;
        };
        out.push((k.trim_start_matches(',').trim().to_owned(), v.to_owned()));
        rest = after;
    }
    out
}

/// The XDP verdict counters, by `action` and `reason`.
pub const XDP: &str = "sipark_xdp_packets_total";
pub const DATAGRAMS_IN: &str = "sipark_datagrams_in_total";
pub const HANDOFFS_OUT: &str = "sipark_handoffs_out_total";
pub const HANDOFFS_IN: &str = "sipark_handoffs_in_total";
pub const STEER: &str = "sipark_steer_datagrams_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_sums() {
        let m = Metrics::parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n# TYPE x counter\nx_total{worker=\"0\"} 3\n\
             x_total{worker=\"1\"} 4\ny_total{action=\"drop\",reason=\"not_sip\"} 7\n# EOF\n",
        );
        assert_eq!(m.sum("x_total", &[]), 7);
        assert_eq!(m.per_worker("x_total", 2), vec![3, 4]);
        assert_eq!(m.sum("y_total", &[("reason", "not_sip")]), 7);
        assert_eq!(m.try_sum("y_total", &[("reason", "scanner")]), None);
        assert_eq!(m.try_sum("z_total", &[]), None);
    }
}
