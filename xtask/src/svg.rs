//! Hand-written SVG charts for the evaluation report: a grouped bar chart and a line chart.
//!
//! Every chart has a title, a y axis with rounded ticks and grid lines, category (or x) labels
//! and a legend; bars carry their value above them. The output is plain SVG text with no
//! scripts or external resources, so it renders in a browser and on GitHub. Missing values
//! (`None`, NaN, infinities) are left out rather than drawn, and an empty chart says "no data"
//! instead of dividing by zero.

use std::fmt::Write as _;

/// Width of one chart panel, in pixels.
pub const WIDTH: f64 = 720.0;
/// Height of one chart panel, in pixels.
pub const HEIGHT: f64 = 400.0;

/// Colours of the series, in order (repeated when there are more series).
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#76b7b2", "#b07aa1", "#edc948", "#9c755f",
];

/// Space left of the plot area (y tick labels and the y axis title).
const MARGIN_LEFT: f64 = 64.0;
/// Space above the plot area (the chart title).
const MARGIN_TOP: f64 = 48.0;
/// Space below the plot area (category labels and the x axis title).
const MARGIN_BOTTOM: f64 = 60.0;
/// Width of the legend column right of the plot area.
const LEGEND_WIDTH: f64 = 180.0;
/// Legend names longer than this many characters are shortened with an ellipsis.
const LEGEND_CHARS: usize = 24;

/// One legend entry of a bar chart: a value per category (`None` where there is none).
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Legend text.
    pub name: String,
    /// `values[i]` belongs to the chart's `categories[i]`; missing trailing values count as
    /// `None`.
    pub values: Vec<Option<f64>>,
}

/// A grouped bar chart: one group per category, one bar per series in each group.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title above the chart.
    pub title: String,
    /// Title of the y axis.
    pub y_label: String,
    /// Labels of the groups along the x axis.
    pub categories: Vec<String>,
    /// The bars of each group, in legend order.
    pub series: Vec<BarSeries>,
    /// Top of the y axis; `None` picks a rounded value above the largest bar.
    pub y_max: Option<f64>,
}

/// One line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSeries {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points; they are drawn in order of x.
    pub points: Vec<(f64, f64)>,
}

/// A line chart with numeric x and y axes.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Title above the chart.
    pub title: String,
    /// Title of the x axis.
    pub x_label: String,
    /// Title of the y axis.
    pub y_label: String,
    /// The lines, in legend order.
    pub series: Vec<LineSeries>,
    /// Top of the y axis; `None` picks a rounded value above the largest point.
    pub y_max: Option<f64>,
}

/// Escapes text for use in SVG (XML) content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// One grouped bar chart as a complete SVG document.
pub fn bar_chart(chart: &BarChart) -> String {
    stacked_bar_charts(std::slice::from_ref(chart))
}

/// Several grouped bar charts stacked vertically in one SVG document, one panel each. No chart
/// at all gives one empty panel that says "no data".
pub fn stacked_bar_charts(charts: &[BarChart]) -> String {
    let panels = charts.len().max(1);
    let mut out = open_document(HEIGHT * panels as f64);
    if charts.is_empty() {
        no_data_panel(&mut out, "", 0.0);
    }
    for (index, chart) in charts.iter().enumerate() {
        draw_bar_chart(&mut out, chart, HEIGHT * index as f64);
    }
    out.push_str("</svg>\n");
    out
}

/// A line chart as a complete SVG document.
pub fn line_chart(chart: &LineChart) -> String {
    let mut out = open_document(HEIGHT);
    draw_line_chart(&mut out, chart);
    out.push_str("</svg>\n");
    out
}

/// The y axis: from 0 to `max` in steps of `step`, labelled with `decimals` decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Scale {
    max: f64,
    step: f64,
    decimals: usize,
}

impl Scale {
    /// A scale reaching `fixed` when given, otherwise just above `data_max`, with about five
    /// steps of 1, 2, 2.5 or 5 times a power of ten. Non-positive or non-finite inputs give
    /// the scale 0..1.
    fn new(fixed: Option<f64>, data_max: f64) -> Self {
        let target = fixed
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(data_max);
        if !(target.is_finite() && target > 0.0) {
            return Scale {
                max: 1.0,
                step: 0.2,
                decimals: 1,
            };
        }
        let raw = target / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let normalised = raw / magnitude;
        let multiple = [1.0, 2.0, 2.5, 5.0, 10.0]
            .into_iter()
            .find(|&m| normalised <= m + 1e-9)
            .unwrap_or(10.0);
        let step = multiple * magnitude;
        let steps = (target / step - 1e-9).ceil().max(1.0);
        Scale {
            max: steps * step,
            step,
            decimals: decimals_of(step),
        }
    }

    /// The tick values 0, step, ..., max (computed by index so they do not drift).
    fn ticks(&self) -> Vec<f64> {
        let count = (self.max / self.step).round() as usize;
        (0..=count).map(|i| i as f64 * self.step).collect()
    }
}

/// The fewest decimals (at most 6) that write `step` exactly enough for tick labels.
fn decimals_of(step: f64) -> usize {
    (0..6)
        .find(|&d| {
            let scaled = step * 10f64.powi(d as i32);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(6)
}

/// A number for display; "n/a" for NaN and infinities so they never reach the text.
fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".to_owned()
    }
}

/// Shortens long legend text with an ellipsis.
fn shorten(text: &str) -> String {
    if text.chars().count() <= LEGEND_CHARS {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(LEGEND_CHARS - 1).collect();
        format!("{kept}…")
    }
}

/// The colour of series `index`.
fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// The SVG start tag and a white background, for a document `height` pixels tall.
fn open_document(height: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect class="background" x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    out
}

/// The plot area of a panel whose top edge is at `offset`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Frame {
    fn at(offset: f64) -> Self {
        Frame {
            left: MARGIN_LEFT,
            top: offset + MARGIN_TOP,
            right: WIDTH - LEGEND_WIDTH,
            bottom: offset + HEIGHT - MARGIN_BOTTOM,
        }
    }

    fn width(&self) -> f64 {
        self.right - self.left
    }

    fn height(&self) -> f64 {
        self.bottom - self.top
    }

    /// The pixel row of `value` on `scale` (clamped to the plot area).
    fn y_of(&self, value: f64, scale: &Scale) -> f64 {
        self.bottom - (value / scale.max).clamp(0.0, 1.0) * self.height()
    }
}

/// Draws the title, the y axis with its ticks and grid lines, the y axis title and the x axis
/// line of a panel.
fn draw_axes(out: &mut String, title: &str, y_label: &str, frame: &Frame, scale: &Scale) {
    let _ = writeln!(
        out,
        r#"<text class="title" x="{:.1}" y="{:.1}" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        frame.top - MARGIN_TOP + 26.0,
        escape(title)
    );
    for tick in scale.ticks() {
        let y = frame.y_of(tick, scale);
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/>"##,
            frame.left, frame.right
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            frame.left - 6.0,
            y + 4.0,
            number(tick, scale.decimals)
        );
    }
    let middle = (frame.top + frame.bottom) / 2.0;
    let _ = writeln!(
        out,
        r#"<text x="16" y="{middle:.1}" text-anchor="middle" transform="rotate(-90 16 {middle:.1})">{}</text>"#,
        escape(y_label)
    );
    let _ = writeln!(
        out,
        r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#333333"/>"##,
        frame.left, frame.top, frame.bottom
    );
    let _ = writeln!(
        out,
        r##"<line x1="{0:.1}" y1="{2:.1}" x2="{1:.1}" y2="{2:.1}" stroke="#333333"/>"##,
        frame.left, frame.right, frame.bottom
    );
}

/// Draws the legend right of the plot area: a colour swatch and a name per entry.
fn draw_legend<'a>(out: &mut String, names: impl Iterator<Item = &'a str>, frame: &Frame) {
    for (index, name) in names.enumerate() {
        let y = frame.top + 20.0 * index as f64;
        let _ = writeln!(
            out,
            r#"<rect class="swatch" x="{:.1}" y="{y:.1}" width="12" height="12" fill="{}"/>"#,
            frame.right + 16.0,
            colour(index)
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            frame.right + 34.0,
            y + 10.0,
            escape(&shorten(name))
        );
    }
}

/// Draws "no data" in the middle of the plot area.
fn draw_no_data(out: &mut String, frame: &Frame) {
    let _ = writeln!(
        out,
        r##"<text class="no-data" x="{:.1}" y="{:.1}" text-anchor="middle" fill="#777777">no data</text>"##,
        (frame.left + frame.right) / 2.0,
        (frame.top + frame.bottom) / 2.0
    );
}

/// A panel with a title and axes from 0 to 1 and no data.
fn no_data_panel(out: &mut String, title: &str, offset: f64) {
    let frame = Frame::at(offset);
    let scale = Scale::new(None, 0.0);
    draw_axes(out, title, "", &frame, &scale);
    draw_no_data(out, &frame);
}

/// Draws one grouped bar chart in the panel whose top edge is at `offset`.
fn draw_bar_chart(out: &mut String, chart: &BarChart, offset: f64) {
    let frame = Frame::at(offset);
    let value = |series: &BarSeries, category: usize| -> Option<f64> {
        series
            .values
            .get(category)
            .copied()
            .flatten()
            .filter(|v| v.is_finite())
    };
    let data_max = chart
        .series
        .iter()
        .flat_map(|s| (0..chart.categories.len()).filter_map(|c| value(s, c)))
        .fold(0.0f64, f64::max);
    let scale = Scale::new(chart.y_max, data_max);
    draw_axes(out, &chart.title, &chart.y_label, &frame, &scale);
    if chart.categories.is_empty() || chart.series.is_empty() {
        draw_no_data(out, &frame);
        draw_legend(out, chart.series.iter().map(|s| s.name.as_str()), &frame);
        return;
    }
    let group_width = frame.width() / chart.categories.len() as f64;
    let bar_width = group_width * 0.8 / chart.series.len() as f64;
    let label_size = if bar_width < 22.0 { 8 } else { 10 };
    let decimals = if scale.max >= 10.0 { 1 } else { 2 };
    for (category, label) in chart.categories.iter().enumerate() {
        let group_left = frame.left + group_width * category as f64;
        let _ = writeln!(
            out,
            r#"<text class="category" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            group_left + group_width / 2.0,
            frame.bottom + 18.0,
            escape(label)
        );
        for (index, series) in chart.series.iter().enumerate() {
            let Some(v) = value(series, category) else {
                continue;
            };
            let x = group_left + group_width * 0.1 + bar_width * index as f64;
            let y = frame.y_of(v, &scale);
            let _ = writeln!(
                out,
                r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                (bar_width - 2.0).max(1.0),
                frame.bottom - y,
                colour(index),
                escape(&series.name),
                number(v, decimals)
            );
            let _ = writeln!(
                out,
                r#"<text class="value" x="{:.1}" y="{:.1}" text-anchor="middle" font-size="{label_size}">{}</text>"#,
                x + bar_width / 2.0 - 1.0,
                y - 4.0,
                number(v, decimals)
            );
        }
    }
    draw_legend(out, chart.series.iter().map(|s| s.name.as_str()), &frame);
}

/// Draws the line chart in the single panel of its document.
fn draw_line_chart(out: &mut String, chart: &LineChart) {
    let frame = Frame::at(0.0);
    let points: Vec<Vec<(f64, f64)>> = chart
        .series
        .iter()
        .map(|s| {
            let mut p: Vec<(f64, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            p.sort_by(|a, b| a.0.total_cmp(&b.0));
            p
        })
        .collect();
    let all = || points.iter().flatten();
    let data_max = all().map(|p| p.1).fold(0.0f64, f64::max);
    let scale = Scale::new(chart.y_max, data_max);
    draw_axes(out, &chart.title, &chart.y_label, &frame, &scale);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        (frame.left + frame.right) / 2.0,
        frame.bottom + 40.0,
        escape(&chart.x_label)
    );
    draw_legend(out, chart.series.iter().map(|s| s.name.as_str()), &frame);
    let x_min = all().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if !(x_min.is_finite() && x_max.is_finite()) {
        draw_no_data(out, &frame);
        return;
    }
    // A single x value sits in the middle; otherwise the x range fills the plot area with a
    // small inset so the end points and their labels stay inside.
    let inset = 20.0;
    let span = x_max - x_min;
    let x_of = |x: f64| {
        if span > 0.0 {
            frame.left + inset + (x - x_min) / span * (frame.width() - 2.0 * inset)
        } else {
            (frame.left + frame.right) / 2.0
        }
    };
    let x_scale = Scale::new(None, span.max(1.0));
    let x_step = if span > 0.0 {
        x_scale.step.max(if is_integral(x_min) { 1.0 } else { 0.0 })
    } else {
        1.0
    };
    let x_decimals = decimals_of(x_step).max(decimals_of(x_min));
    let tick_count = if span > 0.0 {
        (span / x_step + 1e-9).floor() as usize
    } else {
        0
    };
    for i in 0..=tick_count {
        let x = x_min + i as f64 * x_step;
        let _ = writeln!(
            out,
            r#"<text class="category" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x_of(x),
            frame.bottom + 18.0,
            number(x, x_decimals)
        );
    }
    let labelled = points.iter().map(Vec::len).sum::<usize>() <= 40;
    for (index, line) in points.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        let path: Vec<String> = line
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), frame.y_of(y, &scale)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline class="line" points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            path.join(" "),
            colour(index)
        );
        for &(x, y) in line {
            let (px, py) = (x_of(x), frame.y_of(y, &scale));
            let _ = writeln!(
                out,
                r#"<circle class="point" cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{}"><title>{}: {}</title></circle>"#,
                colour(index),
                escape(&chart.series[index].name),
                number(y, 1)
            );
            if labelled {
                let _ = writeln!(
                    out,
                    r#"<text class="value" x="{px:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                    py - 7.0,
                    number(y, 1)
                );
            }
        }
    }
}

/// Whether `value` is a whole number.
fn is_integral(value: f64) -> bool {
    value.is_finite() && value.fract() == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(categories: &[&str], series: &[(&str, &[Option<f64>])]) -> BarChart {
        BarChart {
            title: "Scores <test> & \"more\"".into(),
            y_label: "score".into(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
            series: series
                .iter()
                .map(|(name, values)| BarSeries {
                    name: name.to_string(),
                    values: values.to_vec(),
                })
                .collect(),
            y_max: Some(100.0),
        }
    }

    /// The checks every document must pass.
    fn assert_well_formed(svg: &str) {
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert!(!svg.contains("NaN"), "{svg}");
        assert!(!svg.contains("inf"), "{svg}");
        // Every element opened is closed (self-closing or with an end tag).
        for tag in ["text", "rect", "line", "polyline", "circle", "title"] {
            let opened =
                svg.matches(&format!("<{tag} ")).count() + svg.matches(&format!("<{tag}>")).count();
            let closed = svg.matches(&format!("</{tag}>")).count();
            let self_closed = svg
                .split(&format!("<{tag} "))
                .skip(1)
                .filter(|rest| {
                    let end = rest.find('>').unwrap_or(rest.len());
                    rest[..end].ends_with('/')
                })
                .count();
            assert_eq!(opened, closed + self_closed, "<{tag}> in {svg}");
        }
    }

    #[test]
    fn escapes_xml_special_characters() {
        assert_eq!(
            escape(r#"a & b < c > d "e" 'f'"#),
            "a &amp; b &lt; c &gt; d &quot;e&quot; &apos;f&apos;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn bar_chart_draws_one_rect_per_bar_and_escapes_labels() {
        let chart = bars(
            &["textcraft", "web<shop>"],
            &[
                ("bc & co", &[Some(12.0), Some(30.5)]),
                ("agent-r", &[Some(78.0), None]),
                ("\"quoted\"", &[Some(0.0), Some(100.0)]),
            ],
        );
        let svg = bar_chart(&chart);
        assert_well_formed(&svg);
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 5);
        assert_eq!(svg.matches(r#"<rect class="swatch""#).count(), 3);
        for text in [
            "Scores &lt;test&gt; &amp; &quot;more&quot;",
            "web&lt;shop&gt;",
            "bc &amp; co",
            "&quot;quoted&quot;",
            ">78.0<",
            ">100<",
        ] {
            assert!(svg.contains(text), "{text} missing in {svg}");
        }
    }

    #[test]
    fn empty_and_all_zero_bar_charts_do_not_divide_by_zero() {
        let cases = [
            bars(&[], &[]),
            bars(&["a"], &[]),
            bars(&[], &[("m", &[])]),
            bars(&["a", "b"], &[("m", &[Some(0.0), Some(0.0)])]),
            bars(&["a", "b"], &[("m", &[None, Some(f64::NAN)])]),
            bars(&["a"], &[("m", &[Some(f64::INFINITY)])]),
        ];
        for mut chart in cases {
            for y_max in [Some(100.0), None, Some(0.0), Some(f64::NAN)] {
                chart.y_max = y_max;
                let svg = bar_chart(&chart);
                assert_well_formed(&svg);
            }
        }
        let svg = bar_chart(&bars(&[], &[]));
        assert!(svg.contains("no data"));
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 0);
        let zeros = bar_chart(&bars(&["a", "b"], &[("m", &[Some(0.0), Some(0.0)])]));
        assert_eq!(zeros.matches(r#"<rect class="bar""#).count(), 2);
    }

    #[test]
    fn stacked_charts_make_one_document_with_one_panel_each() {
        let charts = vec![
            bars(&["x", "y"], &[("len 1", &[Some(3.2), Some(0.5)])]),
            bars(&["x"], &[("len 1", &[Some(1.0)]), ("len 2", &[Some(0.25)])]),
        ];
        let svg = stacked_bar_charts(&charts);
        assert_well_formed(&svg);
        assert!(svg.contains(r#"height="800""#));
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 4);
        assert_eq!(svg.matches(r#"class="title""#).count(), 2);
        let empty = stacked_bar_charts(&[]);
        assert_well_formed(&empty);
        assert!(empty.contains("no data"));
    }

    #[test]
    fn line_chart_draws_each_series() {
        let chart = LineChart {
            title: "Iterations".into(),
            x_label: "iteration".into(),
            y_label: "score".into(),
            series: vec![
                LineSeries {
                    name: "run-a (agent-r)".into(),
                    points: vec![(2.0, 30.0), (0.0, 10.0), (1.0, 20.0)],
                },
                LineSeries {
                    name: "run <b>".into(),
                    points: vec![(0.0, 5.0), (1.0, f64::NAN)],
                },
            ],
            y_max: Some(100.0),
        };
        let svg = line_chart(&chart);
        assert_well_formed(&svg);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches(r#"<circle class="point""#).count(), 4);
        assert!(svg.contains("run &lt;b&gt;"));
        assert!(svg.contains("run-a (agent-r)"));
        // Points are joined in order of x.
        let first = svg.find("<polyline").unwrap();
        let points = &svg[first..svg[first..].find("/>").unwrap() + first];
        let xs: Vec<f64> = points
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .split(' ')
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    }

    #[test]
    fn empty_and_degenerate_line_charts_are_well_formed() {
        let make = |series: Vec<LineSeries>, y_max| LineChart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series,
            y_max,
        };
        let line = |points: Vec<(f64, f64)>| LineSeries {
            name: "s".into(),
            points,
        };
        let cases = [
            make(vec![], Some(100.0)),
            make(vec![line(vec![])], None),
            make(vec![line(vec![(0.0, 0.0)])], None),
            make(vec![line(vec![(3.0, 0.0), (3.0, 0.0)])], None),
            make(vec![line(vec![(f64::NAN, 1.0)])], Some(100.0)),
            make(vec![line(vec![(0.0, 0.0), (100.0, 0.0)])], None),
        ];
        for chart in cases {
            assert_well_formed(&line_chart(&chart));
        }
        assert!(line_chart(&make(vec![], None)).contains("no data"));
    }

    #[test]
    fn scales_are_rounded_and_cover_the_data() {
        let fixed = Scale::new(Some(100.0), 42.0);
        assert_eq!((fixed.max, fixed.step, fixed.decimals), (100.0, 20.0, 0));
        assert_eq!(fixed.ticks(), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        for (data, max) in [(3.2, 4.0), (7.7, 8.0), (0.4, 0.4), (12.0, 12.5), (1.0, 1.0)] {
            let scale = Scale::new(None, data);
            assert!((scale.max - max).abs() < 1e-9, "{data}: {scale:?}");
            assert!(scale.max >= data);
            assert!(scale.ticks().len() <= 7, "{data}: {scale:?}");
        }
        for degenerate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let scale = Scale::new(None, degenerate);
            assert_eq!(scale.max, 1.0);
            assert!(scale.ticks().iter().all(|t| t.is_finite()));
        }
        assert_eq!(decimals_of(0.25), 2);
        assert_eq!(number(f64::NAN, 1), "n/a");
    }
}
