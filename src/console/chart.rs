//! Charts as inline SVG, drawn on the server: a funnel's bars, a line over time. No script,
//! no style attribute (the CSP allows neither inline), colours by class from the stylesheet;
//! every label goes through maud's escaping like any other text.

use maud::{Markup, html};

const WIDTH: f64 = 560.0;
const LABEL: f64 = 150.0;
const ROW: f64 = 24.0;

/// One bar: its label, its value, and a class for its colour (`sent`, `failed`, ...).
pub(super) struct Bar {
    pub label: String,
    pub value: i64,
    pub class: &'static str,
}

/// Horizontal bars, one per row, scaled to the largest; the value written at each bar's end.
pub(super) fn bars(title: &str, rows: &[Bar]) -> Markup {
    let max = rows.iter().map(|r| r.value).max().unwrap_or(0).max(1) as f64;
    let height = ROW * rows.len() as f64 + 4.0;
    let span = WIDTH - LABEL - 60.0;
    html! {
        svg.chart.bars xmlns="http://www.w3.org/2000/svg" role="img" width=(WIDTH) height=(height)
            viewBox={ "0 0 " (WIDTH) " " (height) } {
            title { (title) }
            @for (i, r) in rows.iter().enumerate() {
                @let y = ROW * i as f64 + 2.0;
                @let w = (r.value.max(0) as f64 / max * span).max(if r.value > 0 { 1.0 } else { 0.0 });
                text.label x=(LABEL - 6.0) y=(y + ROW * 0.65) text-anchor="end" { (r.label) }
                rect class=(r.class) x=(LABEL) y=(y + 3.0) width=(fmt(w)) height=(ROW - 6.0) rx="2" {}
                text.value x=(fmt(LABEL + w + 6.0)) y=(y + ROW * 0.65) { (r.value) }
            }
        }
    }
}

/// A line through `points` (label under each point, value above), between `lo` and `hi`.
pub(super) fn line(title: &str, points: &[(String, f64)], lo: f64, hi: f64) -> Markup {
    let (w, h, pad) = (WIDTH, 160.0, 28.0);
    let n = points.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            w / 2.0
        } else {
            pad + (w - 2.0 * pad) * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| {
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        h - pad - (h - 2.0 * pad) * t.clamp(0.0, 1.0)
    };
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| format!("{},{}", fmt(x(i)), fmt(y(*v))))
        .collect();
    let zero = (lo < 0.0 && hi > 0.0).then(|| y(0.0));
    html! {
        svg.chart.line xmlns="http://www.w3.org/2000/svg" role="img" width=(w) height=(h)
            viewBox={ "0 0 " (w) " " (h) } {
            title { (title) }
            line.axis x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) {}
            @if let Some(z) = zero { line.zero x1=(pad) y1=(fmt(z)) x2=(w - pad) y2=(fmt(z)) {} }
            @if points.len() > 1 { polyline.series points=(path.join(" ")) {} }
            @for (i, (label, v)) in points.iter().enumerate() {
                circle.point cx=(fmt(x(i))) cy=(fmt(y(*v))) r="3" {}
                text.value x=(fmt(x(i))) y=(fmt(y(*v) - 8.0)) text-anchor="middle" { (fmt_value(*v)) }
                text.label x=(fmt(x(i))) y=(h - 8.0) text-anchor="middle" { (label) }
            }
        }
    }
}

/// Small vertical bars for a series (sends per minute): no labels but the extremes.
pub(super) fn spark(title: &str, values: &[i64]) -> Markup {
    let (w, h) = (WIDTH, 60.0);
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = w / values.len().max(1) as f64;
    html! {
        svg.chart.spark xmlns="http://www.w3.org/2000/svg" role="img" width=(w) height=(h + 14.0)
            viewBox={ "0 0 " (w) " " (h + 14.0) } {
            title { (title) }
            @for (i, v) in values.iter().enumerate() {
                @let bh = (*v as f64 / max * h).max(if *v > 0 { 1.0 } else { 0.0 });
                rect.sent x=(fmt(step * i as f64)) y=(fmt(h - bh)) width=(fmt((step - 1.0).max(1.0))) height=(fmt(bh)) {}
            }
            text.label x="0" y=(h + 12.0) { "max " (max as i64) "/min" }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{:.1}", v)
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "funnel",
            &[
                Bar {
                    label: "planned".into(),
                    value: 200,
                    class: "planned",
                },
                Bar {
                    label: "<sent>".into(),
                    value: 100,
                    class: "sent",
                },
                Bar {
                    label: "none".into(),
                    value: 0,
                    class: "failed",
                },
            ],
        )
        .into_string();
        assert!(svg.contains("width=\"350.0\""), "{svg}");
        assert!(svg.contains("width=\"175.0\""), "{svg}");
        assert!(svg.contains("&lt;sent&gt;"), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
        let l = line(
            "nps",
            &[("W1".into(), -20.0), ("W2".into(), 40.0)],
            -100.0,
            100.0,
        )
        .into_string();
        assert!(l.contains("polyline"), "{l}");
        assert!(l.contains(">-20<"), "{l}");
    }
}
