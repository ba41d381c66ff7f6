//! Charts as SVG drawn on the server: readable without JavaScript, styled only through classes
//! (the page's CSP allows no inline style). Every text that comes from data is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

/// Text and attribute values inside SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One bar of a run chart: its value, a CSS class (the status), a tooltip.
pub struct Bar {
    pub value: f64,
    pub class: &'static str,
    pub title: String,
}

const W: f64 = 420.0;
const H: f64 = 150.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 12.0;

/// A round number at or above `v` for the axis top.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if step * mag >= v {
            return step * mag;
        }
    }
    10.0 * mag
}

/// Bars per run, oldest left, with an optional limit drawn as a dashed line (the timeout).
/// `unit` formats axis values.
pub fn bars(
    title: &str,
    bars: &[Bar],
    limit: Option<(f64, String)>,
    unit: &dyn Fn(f64) -> String,
) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    if bars.is_empty() {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{}" y="{}">no runs yet</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return svg;
    }
    let data_max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    // The limit stays on the chart only while it is within reach of the data (x4), so a 1-hour
    // timeout does not flatten 2-second runs.
    let (shown_limit, far_limit) = match limit {
        Some((l, label)) if l <= data_max * 4.0 || data_max == 0.0 => (Some((l, label)), None),
        other => (None, other),
    };
    let top = nice_max(data_max.max(shown_limit.as_ref().map_or(0.0, |l| l.0)));
    let plot_h = H - TOP - BOTTOM;
    let plot_w = W - LEFT - 8.0;
    let y = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}">{}</text>"#,
            W - 8.0,
            LEFT - 4.0,
            y(v) + 3.0,
            esc(&unit(v)),
            y = y(v)
        );
    }
    let slot = plot_w / bars.len() as f64;
    let bw = (slot * 0.8).clamp(1.0, 18.0);
    for (i, b) in bars.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bw) / 2.0;
        let top_y = y(b.value);
        let h = (TOP + plot_h - top_y).max(if b.value > 0.0 { 1.0 } else { 0.0 });
        let _ = write!(
            svg,
            r#"<rect class="bar {}" x="{x:.1}" y="{:.1}" width="{bw:.1}" height="{h:.1}"><title>{}</title></rect>"#,
            b.class,
            TOP + plot_h - h,
            esc(&b.title)
        );
    }
    if let Some((l, label)) = shown_limit {
        let _ = write!(
            svg,
            r#"<line class="limit" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="limit-label" x="{}" y="{:.1}">{}</text>"#,
            W - 8.0,
            W - 10.0,
            y(l) - 3.0,
            esc(&label),
            y = y(l)
        );
    }
    if let Some((_, label)) = far_limit {
        // Far above the runs: named, not drawn, so the runs stay readable.
        let _ = write!(
            svg,
            r#"<text class="limit-label" x="{}" y="{}">↑ {} (off the scale)</text>"#,
            W - 10.0,
            TOP + 8.0,
            esc(&label)
        );
    }
    let _ = write!(
        svg,
        r#"<text class="axis start" x="{LEFT}" y="{}">older</text><text class="axis end" x="{}" y="{}">newest</text></svg>"#,
        H - 4.0,
        W - 8.0,
        H - 4.0
    );
    svg
}

/// Successes and failures per day, stacked.
pub fn per_day(days: &[(String, u64, u64)]) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="runs per day"><title>successes and failures per day</title>"#
    );
    let max = days.iter().map(|d| d.1 + d.2).max().unwrap_or(0) as f64;
    // Whole numbers on the axis: the middle line of a top of 1 would say 0.5 runs.
    let top = (nice_max(max).max(2.0) / 2.0).ceil() * 2.0;
    let plot_h = H - TOP - BOTTOM;
    let plot_w = W - LEFT - 8.0;
    let y = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    for i in 0..=2 {
        let v = top * f64::from(i) / 2.0;
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="axis" x="{}" y="{:.1}">{}</text>"#,
            W - 8.0,
            LEFT - 4.0,
            y(v) + 3.0,
            if v.fract() == 0.0 {
                format!("{v}")
            } else {
                format!("{v:.1}")
            },
            y = y(v)
        );
    }
    let slot = plot_w / days.len().max(1) as f64;
    let bw = (slot * 0.7).max(1.0);
    for (i, (day, ok, bad)) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bw) / 2.0;
        let ok_top = y(*ok as f64);
        let _ = write!(
            svg,
            r#"<rect class="bar success" x="{x:.1}" y="{ok_top:.1}" width="{bw:.1}" height="{:.1}"><title>{day}: {ok} succeeded</title></rect>"#,
            TOP + plot_h - ok_top,
            day = esc(day)
        );
        let bad_top = y((*ok + *bad) as f64);
        let _ = write!(
            svg,
            r#"<rect class="bar failed" x="{x:.1}" y="{bad_top:.1}" width="{bw:.1}" height="{:.1}"><title>{day}: {bad} failed or timed out</title></rect>"#,
            ok_top - bad_top,
            day = esc(day)
        );
        if i % 2 == 0 || days.len() <= 8 {
            let _ = write!(
                svg,
                r#"<text class="axis mid" x="{:.1}" y="{}">{}</text>"#,
                x + bw / 2.0,
                H - 4.0,
                esc(day.get(5..).unwrap_or(day))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Seconds for an axis: `250ms`, `1.5s`, `2m`, `1.5h`.
pub fn secs(v: f64) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    };
    if v == 0.0 {
        "0".into()
    } else if v < 1.0 {
        format!("{:.0}ms", v * 1000.0)
    } else if v < 120.0 {
        format!("{}s", trim(v))
    } else if v < 7200.0 {
        format!("{}m", trim(v / 60.0))
    } else {
        format!("{}h", trim(v / 3600.0))
    }
}

/// One row of the timeline: a job, its priority, its fire instants, a link.
pub struct Lane {
    pub label: String,
    pub href: String,
    pub priority: u8,
    pub fires: Vec<DateTime<Utc>>,
}

/// The next 24 hours: a row per job, a tick per fire (a band where they are denser than a pixel).
pub fn timeline(from: DateTime<Utc>, hours: i64, lanes: &[Lane], tz: chrono_tz::Tz) -> String {
    const ROW: f64 = 18.0;
    const LABEL: f64 = 180.0;
    let h = TOP + ROW * lanes.len().max(1) as f64 + BOTTOM + 4.0;
    let w = 960.0;
    let plot_w = w - LABEL - 8.0;
    let span = (hours * 3600) as f64;
    let x = |t: DateTime<Utc>| LABEL + plot_w * ((t - from).num_seconds() as f64 / span);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart timeline" viewBox="0 0 {w} {h}" role="img" aria-label="timeline"><title>what fires in the next {hours} hours</title>"#
    );
    for i in 0..=hours {
        let t = from + chrono::Duration::hours(i);
        let xx = x(t);
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{xx:.1}" x2="{xx:.1}" y1="{TOP}" y2="{:.1}"/>"#,
            h - BOTTOM
        );
        if i % 3 == 0 {
            let _ = write!(
                svg,
                r#"<text class="axis mid" x="{xx:.1}" y="{:.1}">{}</text>"#,
                h - 6.0,
                t.with_timezone(&tz).format("%H:%M")
            );
        }
    }
    if lanes.is_empty() {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{}" y="{}">nothing fires in this window</text>"#,
            w / 2.0,
            TOP + 12.0
        );
    }
    for (row, lane) in lanes.iter().enumerate() {
        let y = TOP + ROW * row as f64;
        let _ = write!(
            svg,
            r#"<a href="{}"><text class="lane" x="4" y="{:.1}">{} <tspan class="pri">p{}</tspan></text></a>"#,
            esc(&lane.href),
            y + 13.0,
            esc(&lane.label),
            lane.priority
        );
        let _ = write!(
            svg,
            r#"<line class="lane-line" x1="{LABEL}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/>"#,
            w - 8.0,
            y + 9.0,
            y + 9.0
        );
        let mut last_px = f64::NEG_INFINITY;
        for t in &lane.fires {
            let px = x(*t);
            if px - last_px < 1.0 {
                continue; // denser than a pixel: the ticks already drawn show it
            }
            last_px = px;
            let _ = write!(
                svg,
                r#"<rect class="tick p{}" x="{:.1}" y="{:.1}" width="2" height="12"><title>{} at {}</title></rect>"#,
                lane.priority.min(10),
                px - 1.0,
                y + 3.0,
                esc(&lane.label),
                t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z")
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_the_limit_is_drawn() {
        let svg = bars(
            "d",
            &[Bar {
                value: 2.0,
                class: "success",
                title: "<script>".into(),
            }],
            Some((5.0, "timeout 5s".into())),
            &|v| format!("{v}s"),
        );
        assert!(svg.contains("&lt;script&gt;"));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains(r#"class="limit""#));
        assert!(!svg.contains("style="), "the CSP allows no inline style");
    }

    #[test]
    fn a_far_limit_is_left_off() {
        let svg = bars(
            "d",
            &[Bar {
                value: 1.0,
                class: "success",
                title: String::new(),
            }],
            Some((3600.0, "timeout 1h".into())),
            &|v| format!("{v}"),
        );
        assert!(!svg.contains(r#"class="limit""#));
        assert!(svg.contains("timeout 1h (off the scale)"));
    }

    #[test]
    fn axis_durations_read_well() {
        assert_eq!(secs(0.0), "0");
        assert_eq!(secs(0.25), "250ms");
        assert_eq!(secs(1.5), "1.5s");
        assert_eq!(secs(30.0), "30s");
        assert_eq!(secs(300.0), "5m");
        assert_eq!(secs(5400.0), "90m");
        assert_eq!(secs(36000.0), "10h");
    }

    #[test]
    fn nice_axis_tops() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(120.0), 200.0);
        assert_eq!(nice_max(2.2), 2.5);
    }
}
