//! Hand-written SVG line charts for `cargo xtask bench --sweep` (std only): a title and
//! subtitle, two axes with ticks and labels, a light grid, per series a polyline (optional) and
//! point markers (filled or hollow), dashed horizontal guide lines (goals) and a legend to the
//! right of the plot.

use std::fmt::Write as _;

/// How the y axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    Linear,
    /// Base 10; values that are not positive are left out.
    Log,
}

/// One point; `note` is written next to its marker.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub x: f64,
    pub y: f64,
    pub note: Option<String>,
}

/// One series of the chart. Its points are drawn in the order given (joined by a line when
/// `line`); `hollow` markers are white inside. `color` is any SVG colour.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    /// The legend entry; `\n` starts a new line.
    pub name: String,
    pub points: Vec<Point>,
    pub color: &'static str,
    pub line: bool,
    pub hollow: bool,
}

/// A dashed horizontal line at `value` (a goal), named in the legend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Guide {
    pub value: f64,
    pub label: String,
}

/// A line chart. The x axis is linear and starts at 0; the y axis starts at 0 when linear.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    pub title: String,
    /// A smaller line under the title (empty: none).
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub y_scale: Scale,
    pub series: Vec<Series>,
    pub guides: Vec<Guide>,
}

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 60.0;
/// Colours for series: blue, red, green, orange.
pub(crate) const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"];
/// Most ticks a linear axis aims for.
const LINEAR_TICKS: usize = 6;
/// Most decades a log axis spans (values beyond are clamped to its range).
const MAX_DECADES: i32 = 12;

/// Ticks of a linear axis covering `[lo, hi]`: multiples of a step of 1, 2 or 5 times a power
/// of ten, about `target` of them, the first at or below `lo` and the last at or above `hi`.
pub(crate) fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) if hi > lo => (lo, hi),
        (true, true) => (lo, lo + 1.0),
        _ => (0.0, 1.0),
    };
    let raw = (hi - lo) / target.max(2) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    // Bounded: (last - first) is about `target`, at most a few more.
    let n = ((last - first) as i64).clamp(1, 1000);
    // Snap away binary noise such as 0.6000000000000001 (to the step's decimals).
    let scale = 10f64.powi((-step.log10().floor()).clamp(0.0, 15.0) as i32);
    (0..=n).map(|i| ((first + i as f64) * step * scale).round() / scale).collect()
}

/// Ticks of a log axis covering `[lo, hi]` (both positive): every power of ten from the one at
/// or below `lo` to the one at or above `hi`, plus 2 and 5 times each when the range spans at
/// most two decades.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let lo = if lo.is_finite() && lo > 0.0 { lo } else { 1.0 };
    let hi = if hi.is_finite() && hi > lo { hi } else { lo };
    let d0 = lo.log10().floor() as i32;
    let mut d1 = (hi.log10().ceil() as i32).min(d0 + MAX_DECADES);
    if d1 <= d0 {
        d1 = d0 + 1;
    }
    let mut ticks = Vec::new();
    for d in d0..=d1 {
        let p = 10f64.powi(d);
        ticks.push(p);
        if d1 - d0 <= 2 && d < d1 {
            ticks.push(2.0 * p);
            ticks.push(5.0 * p);
        }
    }
    ticks
}

/// A tick label: thousands separated by commas, small numbers with the decimals they need.
pub(crate) fn format_tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let a = v.abs();
    if a >= 1000.0 && (v - v.round()).abs() < 1e-9 {
        let digits = format!("{}", a.round() as u64);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        return if v < 0.0 { format!("-{out}") } else { out };
    }
    let decimals = if a >= 1.0 { 2 } else { ((-a.log10().floor()) as usize + 2).min(9) };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    s.to_string()
}

/// Escapes text for SVG content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Whether a point can be drawn on an axis of `scale`.
fn drawable(p: &Point, scale: Scale) -> bool {
    p.x.is_finite() && p.y.is_finite() && p.x >= 0.0 && (scale == Scale::Linear || p.y > 0.0)
}

/// Maps data values to pixels.
struct Frame {
    x_hi: f64,
    y_lo: f64,
    y_hi: f64,
    scale: Scale,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + x / self.x_hi * (WIDTH - LEFT - RIGHT)
    }
    fn py(&self, y: f64) -> f64 {
        let t = match self.scale {
            Scale::Linear => (y - self.y_lo) / (self.y_hi - self.y_lo),
            Scale::Log => (y.log10() - self.y_lo.log10()) / (self.y_hi.log10() - self.y_lo.log10()),
        };
        HEIGHT - BOTTOM - t.clamp(0.0, 1.0) * (HEIGHT - TOP - BOTTOM)
    }
}

/// The chart as a standalone SVG document. Points that cannot be drawn (not finite, negative x,
/// or not positive on a log axis) are left out.
pub(crate) fn render(chart: &Chart) -> String {
    let scale = chart.y_scale;
    let points = || chart.series.iter().flat_map(|s| s.points.iter()).filter(|p| drawable(p, scale));
    let x_max = points().map(|p| p.x).fold(0.0, f64::max);
    let x_ticks = linear_ticks(0.0, if x_max > 0.0 { x_max } else { 1.0 }, LINEAR_TICKS);
    let guide_values =
        chart.guides.iter().map(|g| g.value).filter(|v| v.is_finite() && (scale == Scale::Linear || *v > 0.0));
    let ys: Vec<f64> = points().map(|p| p.y).chain(guide_values).collect();
    let y_ticks = match scale {
        Scale::Linear => {
            let hi = ys.iter().copied().fold(0.0, f64::max);
            let lo = ys.iter().copied().fold(0.0, f64::min);
            // 5% headroom, so that a value on the top tick is not drawn on the frame.
            linear_ticks(lo, if hi > lo { hi + 0.05 * (hi - lo) } else { lo + 1.0 }, LINEAR_TICKS)
        }
        Scale::Log => {
            let lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = ys.iter().copied().fold(0.0, f64::max);
            if lo.is_finite() { log_ticks(lo, hi) } else { log_ticks(1.0, 10.0) }
        }
    };
    let first = |t: &[f64], d: f64| t.first().copied().unwrap_or(d);
    let last = |t: &[f64], d: f64| t.last().copied().unwrap_or(d);
    let frame = Frame {
        x_hi: last(&x_ticks, 1.0),
        y_lo: first(&y_ticks, if scale == Scale::Log { 1.0 } else { 0.0 }),
        y_hi: last(&y_ticks, 10.0),
        scale,
    };
    let (plot_l, plot_r, plot_t, plot_b) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);

    let mut o = String::with_capacity(8192);
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        esc(&chart.title)
    );
    if !chart.subtitle.is_empty() {
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="48" text-anchor="middle" fill="#444">{}</text>"##,
            WIDTH / 2.0,
            esc(&chart.subtitle)
        );
    }

    // Grid, ticks and tick labels.
    let _ = writeln!(o, r##"<g class="x-ticks" stroke="#ddd">"##);
    for &t in &x_ticks {
        let x = frame.px(t);
        let _ = writeln!(o, r#"<line x1="{x:.1}" y1="{plot_t:.1}" x2="{x:.1}" y2="{plot_b:.1}"/>"#);
    }
    let _ = writeln!(o, "</g>");
    let _ = writeln!(o, r##"<g class="y-ticks" stroke="#ddd">"##);
    for &t in &y_ticks {
        let y = frame.py(t);
        let _ = writeln!(o, r#"<line x1="{plot_l:.1}" y1="{y:.1}" x2="{plot_r:.1}" y2="{y:.1}"/>"#);
    }
    let _ = writeln!(o, "</g>");
    let _ = writeln!(o, r#"<g class="x-labels" text-anchor="middle">"#);
    for &t in &x_ticks {
        let _ = writeln!(o, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, frame.px(t), plot_b + 18.0, esc(&format_tick(t)));
    }
    let _ = writeln!(o, "</g>");
    let _ = writeln!(o, r#"<g class="y-labels" text-anchor="end">"#);
    for &t in &y_ticks {
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            plot_l - 8.0,
            frame.py(t) + 4.0,
            esc(&format_tick(t))
        );
    }
    let _ = writeln!(o, "</g>");

    // Axes and their labels.
    let _ = writeln!(
        o,
        r#"<path d="M{plot_l:.1},{plot_t:.1} V{plot_b:.1} H{plot_r:.1}" fill="none" stroke="black" stroke-width="1"/>"#
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (plot_l + plot_r) / 2.0,
        HEIGHT - 18.0,
        esc(&chart.x_label)
    );
    let (yl_x, yl_y) = (20.0, (plot_t + plot_b) / 2.0);
    let _ = writeln!(
        o,
        r#"<text x="{yl_x:.1}" y="{yl_y:.1}" text-anchor="middle" transform="rotate(-90 {yl_x:.1} {yl_y:.1})">{}</text>"#,
        esc(&chart.y_label)
    );

    // Guides (dashed).
    for g in &chart.guides {
        if !g.value.is_finite() || (scale == Scale::Log && g.value <= 0.0) {
            continue;
        }
        let y = frame.py(g.value);
        let _ = writeln!(
            o,
            r##"<line class="guide" x1="{plot_l:.1}" y1="{y:.1}" x2="{plot_r:.1}" y2="{y:.1}" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"/>"##
        );
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            plot_r - 4.0,
            y - 5.0,
            esc(&g.label)
        );
    }

    // Series: polyline, then markers with a tooltip and an optional note.
    for s in &chart.series {
        let color = esc(s.color);
        let fill = if s.hollow { "white".to_string() } else { color.clone() };
        let pts: Vec<&Point> = s.points.iter().filter(|p| drawable(p, scale)).collect();
        let _ = writeln!(o, r#"<g class="series" stroke="{color}" fill="{color}">"#);
        if s.line && pts.len() > 1 {
            let coords: Vec<String> =
                pts.iter().map(|p| format!("{:.1},{:.1}", frame.px(p.x), frame.py(p.y))).collect();
            let _ = writeln!(o, r#"<polyline points="{}" fill="none" stroke-width="2"/>"#, coords.join(" "));
        }
        for p in &pts {
            let (x, y) = (frame.px(p.x), frame.py(p.y));
            let _ = writeln!(
                o,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="4" fill="{fill}" stroke-width="1.5"><title>{}: x {}, y {}</title></circle>"#,
                esc(&s.name.replace('\n', " ")),
                esc(&format_tick(p.x)),
                esc(&format_tick(p.y))
            );
            if let Some(note) = &p.note {
                // Towards the middle of the plot, so that it stays inside.
                let (nx, anchor) = if x < (plot_l + plot_r) / 2.0 { (x + 6.0, "start") } else { (x - 6.0, "end") };
                let _ = writeln!(
                    o,
                    r#"<text x="{nx:.1}" y="{:.1}" text-anchor="{anchor}" stroke="none" fill="black">{}</text>"#,
                    y - 8.0,
                    esc(note)
                );
            }
        }
        let _ = writeln!(o, "</g>");
    }

    // Legend, right of the plot.
    let lx = plot_r + 20.0;
    let mut ly = plot_t + 10.0;
    let _ = writeln!(o, r#"<g class="legend">"#);
    for s in &chart.series {
        let color = esc(s.color);
        let fill = if s.hollow { "white".to_string() } else { color.clone() };
        if s.line {
            let _ = writeln!(
                o,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"/>"#,
                lx + 24.0
            );
        }
        let _ = writeln!(
            o,
            r#"<circle cx="{:.1}" cy="{ly:.1}" r="4" fill="{fill}" stroke="{color}" stroke-width="1.5"/>"#,
            lx + 12.0
        );
        for (k, line) in s.name.split('\n').enumerate() {
            let _ =
                writeln!(o, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, lx + 30.0, ly + 4.0 + 14.0 * k as f64, esc(line));
        }
        ly += 22.0 + 14.0 * s.name.matches('\n').count() as f64;
    }
    for g in &chart.guides {
        let _ = writeln!(
            o,
            r##"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="#555" stroke-width="1.5" stroke-dasharray="6 4"/>"##,
            lx + 24.0
        );
        let _ = writeln!(o, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, lx + 30.0, ly + 4.0, esc(&g.label));
        ly += 22.0;
    }
    let _ = writeln!(o, "</g>");
    let _ = writeln!(o, "</svg>");
    o
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks that `svg` is well-formed XML as far as this module writes it (declaration,
    /// elements, attributes, text with entity references): tags nest and close, attribute
    /// values are quoted, text holds no raw `<` or stray `&`. Returns the element names in order.
    pub(crate) fn check_well_formed(svg: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = svg.trim_start();
        rest = match rest.strip_prefix("<?xml") {
            Some(r) => &r[r.find("?>").ok_or("unterminated declaration")? + 2..],
            None => rest,
        };
        let mut seen_root = false;
        loop {
            let lt = rest.find('<');
            let text = &rest[..lt.unwrap_or(rest.len())];
            check_text(text)?;
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            let Some(lt) = lt else { break };
            let gt = rest[lt..].find('>').ok_or("unterminated tag")? + lt;
            let tag = &rest[lt + 1..gt];
            rest = &rest[gt + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let (body, empty) = match tag.strip_suffix('/') {
                Some(b) => (b, true),
                None => (tag, false),
            };
            let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
            let name = &body[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                return Err(format!("bad element name in <{tag}>"));
            }
            check_attributes(&body[name_end..])?;
            if stack.is_empty() {
                if seen_root {
                    return Err(format!("second root <{name}>"));
                }
                seen_root = true;
            }
            names.push(name.to_string());
            if !empty {
                stack.push(name.to_string());
            }
        }
        if !stack.is_empty() {
            return Err(format!("unclosed elements {stack:?}"));
        }
        if !seen_root {
            return Err("no root element".into());
        }
        Ok(names)
    }

    fn check_text(text: &str) -> Result<(), String> {
        let mut rest = text;
        while let Some(amp) = rest.find('&') {
            let semi = rest[amp..].find(';').ok_or_else(|| format!("stray & in {text:?}"))? + amp;
            let entity = &rest[amp + 1..semi];
            if !["amp", "lt", "gt", "quot", "apos"].contains(&entity) {
                return Err(format!("unknown entity &{entity}; in {text:?}"));
            }
            rest = &rest[semi + 1..];
        }
        if text.contains('>') {
            return Err(format!("raw > in text {text:?}"));
        }
        Ok(())
    }

    fn check_attributes(mut s: &str) -> Result<(), String> {
        let mut seen = Vec::new();
        loop {
            s = s.trim_start();
            if s.is_empty() {
                return Ok(());
            }
            let eq = s.find('=').ok_or_else(|| format!("attribute without value in {s:?}"))?;
            let name = &s[..eq];
            if name.is_empty() || name.contains(char::is_whitespace) || seen.contains(&name) {
                return Err(format!("bad or repeated attribute name {name:?}"));
            }
            seen.push(name);
            let value = s[eq + 1..].strip_prefix('"').ok_or_else(|| format!("unquoted value of {name}"))?;
            let close = value.find('"').ok_or_else(|| format!("unterminated value of {name}"))?;
            check_text(&value[..close])?;
            if value[..close].contains('<') {
                return Err(format!("raw < in value of {name}"));
            }
            s = &value[close + 1..];
        }
    }

    fn pt(x: f64, y: f64) -> Point {
        Point { x, y, note: None }
    }

    fn series(name: &str, points: Vec<Point>, line: bool, hollow: bool) -> Series {
        Series { name: name.into(), points, color: COLORS[0], line, hollow }
    }

    fn chart(scale: Scale) -> Chart {
        Chart {
            title: "p99 <latency> & \"rate\"".into(),
            subtitle: "8 s per run".into(),
            x_label: "achieved park cycles/s".into(),
            y_label: "ms".into(),
            y_scale: scale,
            series: vec![
                series("park 200 → NOTIFY p99", vec![pt(1000.0, 0.2), pt(3000.0, 0.4), pt(5000.0, 12.0)], true, false),
                series(
                    "retrieve p99\nsecond line",
                    vec![
                        pt(1000.0, 0.3),
                        Point { x: 3000.0, y: 0.5, note: Some("closed loop".into()) },
                        pt(5000.0, 0.0),
                        pt(f64::NAN, 1.0),
                    ],
                    false,
                    true,
                ),
            ],
            guides: vec![Guide { value: 1.0, label: "goal: 1 ms".into() }],
        }
    }

    #[test]
    fn svg_is_well_formed_with_one_marker_per_drawable_point() {
        for (scale, drawn) in [(Scale::Log, 5), (Scale::Linear, 6)] {
            let svg = render(&chart(scale));
            let names = check_well_formed(&svg).unwrap_or_else(|e| panic!("{scale:?}: malformed SVG: {e}\n{svg}"));
            assert_eq!(names.first().map(String::as_str), Some("svg"), "{scale:?}");
            let circles = names.iter().filter(|n| *n == "circle").count();
            // One marker per drawable point, plus one legend marker per series.
            assert_eq!(circles, drawn + 2, "{scale:?}: circles in\n{svg}");
            assert_eq!(names.iter().filter(|n| *n == "polyline").count(), 1, "{scale:?}: only the first has a line");
            assert_eq!(svg.matches(r#"fill="white" stroke-width"#).count(), drawn - 3, "{scale:?}: hollow markers");
            assert!(svg.contains(">second line</text>") && svg.contains(">8 s per run</text>"), "{scale:?}");
            assert_eq!(svg.matches("stroke-dasharray").count(), 2, "{scale:?}: guide line and its legend entry");
            assert!(svg.contains("p99 &lt;latency&gt; &amp; &quot;rate&quot;"), "{scale:?}: escaped title");
            assert!(svg.contains(">closed loop</text>"), "{scale:?}: note");
            assert!(svg.contains(">goal: 1 ms</text>"), "{scale:?}: guide label");
        }
    }

    #[test]
    fn polyline_points_keep_their_order_and_stay_inside_the_plot() {
        let svg = render(&chart(Scale::Log));
        let line = svg.lines().find(|l| l.starts_with("<polyline")).unwrap_or_else(|| panic!("no polyline in\n{svg}"));
        let coords = line.split('"').nth(1).unwrap_or_else(|| panic!("no points in {line}"));
        let xy: Vec<(f64, f64)> = coords
            .split(' ')
            .map(|c| {
                let (x, y) = c.split_once(',').unwrap_or_else(|| panic!("bad coordinate {c}"));
                (x.parse().unwrap_or_else(|_| panic!("{x}")), y.parse().unwrap_or_else(|_| panic!("{y}")))
            })
            .collect();
        assert_eq!(xy.len(), 3, "{line}");
        assert!(xy.windows(2).all(|w| w[0].0 < w[1].0), "x ascending as given: {xy:?}");
        for (x, y) in &xy {
            assert!((LEFT..=WIDTH - RIGHT).contains(x) && (TOP..=HEIGHT - BOTTOM).contains(y), "({x}, {y}) outside");
        }
        // Higher latency is higher up (smaller pixel y).
        assert!(xy[2].1 < xy[0].1, "{xy:?}");
    }

    #[test]
    fn log_axis_labels_cover_the_data_and_the_goal() {
        let svg = render(&chart(Scale::Log));
        let labels: Vec<&str> = svg
            .split(r#"<g class="y-labels" text-anchor="end">"#)
            .nth(1)
            .and_then(|s| s.split("</g>").next())
            .unwrap_or_else(|| panic!("no y labels in\n{svg}"))
            .lines()
            .filter_map(|l| l.split('>').nth(1)?.split('<').next())
            .collect();
        assert_eq!(labels, ["0.1", "1", "10", "100"], "{svg}");
    }

    #[test]
    fn empty_chart_still_renders() {
        let c = Chart { series: vec![series("none", vec![], true, false)], guides: vec![], ..chart(Scale::Log) };
        let svg = render(&c);
        let names = check_well_formed(&svg).unwrap_or_else(|e| panic!("malformed: {e}\n{svg}"));
        assert_eq!(names.iter().filter(|n| *n == "circle").count(), 1, "legend marker only");
    }

    #[test]
    fn checker_rejects_malformed_documents() {
        for bad in ["<svg><g></svg>", "<svg a=1/>", "<svg>a & b</svg>", "<svg/><svg/>", "<svg>x</g>", "text<svg/>"] {
            assert!(check_well_formed(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(check_well_formed(r#"<svg a="1"><g/>x &amp; y</svg>"#), Ok(vec!["svg".into(), "g".into()]));
    }

    #[test]
    fn linear_ticks_are_round_and_cover_the_range() {
        assert_eq!(linear_ticks(0.0, 9_500.0, 6), [0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0]);
        assert_eq!(linear_ticks(0.0, 1.0, 5), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(linear_ticks(0.0, 27_000.0, 6), [0.0, 5000.0, 10000.0, 15000.0, 20000.0, 25000.0, 30000.0]);
        let t = linear_ticks(0.0, 0.3, 6);
        assert_eq!(
            t.iter().map(|v| format_tick(*v)).collect::<Vec<_>>(),
            ["0", "0.05", "0.1", "0.15", "0.2", "0.25", "0.3"]
        );
        // Degenerate input still gives an increasing axis.
        for (lo, hi) in [(5.0, 5.0), (f64::NAN, 1.0), (3.0, 1.0)] {
            let t = linear_ticks(lo, hi, 6);
            assert!(t.len() >= 2 && t.windows(2).all(|w| w[0] < w[1]), "{lo}..{hi}: {t:?}");
        }
    }

    #[test]
    fn log_ticks_are_decades_with_2_and_5_on_short_ranges() {
        assert_eq!(log_ticks(0.12, 3.0), [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]);
        assert_eq!(log_ticks(0.05, 400.0), [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(log_ticks(1.0, 1.0), [1.0, 2.0, 5.0, 10.0]);
        assert_eq!(log_ticks(1e-30, 1e30).len(), (MAX_DECADES + 1) as usize, "bounded");
        assert_eq!(log_ticks(-1.0, f64::NAN), [1.0, 2.0, 5.0, 10.0]);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(15_000.0), "15,000");
        assert_eq!(format_tick(1_234_567.0), "1,234,567");
        assert_eq!(format_tick(2.5), "2.5");
        assert_eq!(format_tick(100.0), "100");
        assert_eq!(format_tick(0.05), "0.05");
        assert_eq!(format_tick(0.001), "0.001");
        assert_eq!(format_tick(-2000.0), "-2,000");
    }
}
