//! The report figures, each written as `figures/<name>.png` (1000×600) and `.svg`.
//!
//! Every figure is a plain data struct implementing [`Figure`], whose `draw` is generic over the
//! plotters backend, so the PNG and the SVG come from the same code.

use super::logs::CurvePoint;
use super::tables::ALL_SETS;
use super::wins::RatioBin;
use crate::util::write_atomic;
use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::OnceLock;

pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 600;
const FONT: &str = "sans-serif";

/// The figure names, in report order, with a one-line caption each.
pub const FIGURES: [(&str, &str); 8] = [
    ("win_rates", "Pooled win rate of each policy pair per prompt set (95% bootstrap CI; dashed line = 0.5)"),
    ("refusal_rates", "Pooled refusal rate per policy and prompt set (error bars: min–max over seeds)"),
    (
        "length_hist",
        "Distribution of response length per policy (all seeds and prompt sets; `reference`: one \
         reference answer per prompt, where the data has them)",
    ),
    (
        "length_over_ppo",
        "Mean response length during PPO per reward model (mean over seeds; band: min–max; black: \
         mean reference length of the evaluation prompts, where the data has references)",
    ),
    (
        "win_vs_length_ratio",
        "Win rate of `ppo_seq2seq` vs `ppo_scalar` against ln((len_seq2seq + 1) / (len_scalar + 1)), \
         every (seed, prompt) of the in-distribution sets in 7 equal-count bins",
    ),
    ("ppo_curves", "PPO training curves per reward model (mean over seeds; band: min–max)"),
    ("rm_accuracy", "Preference-pair accuracy per model (bar: mean over seeds; dots: seeds)"),
    ("train_loss", "Training loss per stage (mean over seeds; band: min–max)"),
];

/// Drawn when the run measured the seq2seq RM while it trained (`seq2seq_rm.curve_every`).
pub const RM_CURVE_FIGURE: (&str, &str) = (
    "rm_curve",
    "Seq2seq RM on held-out pairs while it trains: how much of chosen and of rejected inputs it copies, \
     and where it first departs (mean over seeds; band: min–max). Rejected copied as much as chosen: the \
     divergence rule pays for length",
);

/// plotters' ab_glyph text backend has no built-in fonts: register DejaVu Sans once per process.
fn ensure_font() -> Result<()> {
    static FONT_OK: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    FONT_OK
        .get_or_init(|| {
            plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "cannot load the DejaVu Sans font".to_string())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Plotting errors carry backend-specific types; flatten them into anyhow.
fn pe<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

pub trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Render a figure to `<dir>/figures/<name>.png` and `.svg` (both via `write_atomic`).
pub fn save(dir: &Path, name: &str, fig: &impl Figure) -> Result<()> {
    save_sized(dir, name, fig, (WIDTH, HEIGHT))
}

/// [`save`] at another size (the paper-level figures have more categories).
pub fn save_sized(dir: &Path, name: &str, fig: &impl Figure, (w, h): (u32, u32)) -> Result<()> {
    ensure_font()?;
    let fig_dir = dir.join("figures");
    std::fs::create_dir_all(&fig_dir).with_context(|| format!("cannot create {}", fig_dir.display()))?;

    // The bitmap backend can only encode PNG to a path; render to a scratch file, then move the
    // bytes into place atomically.
    let scratch = fig_dir.join(format!(".{name}.render.png"));
    {
        let root = BitMapBackend::new(&scratch, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        fig.draw(&root).with_context(|| format!("drawing figure {name}.png"))?;
        root.present().map_err(pe)?;
    }
    let png = std::fs::read(&scratch).with_context(|| format!("cannot read {}", scratch.display()));
    let _ = std::fs::remove_file(&scratch);
    write_atomic(&fig_dir.join(format!("{name}.png")), &png?)?;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(pe)?;
        fig.draw(&root).with_context(|| format!("drawing figure {name}.svg"))?;
        root.present().map_err(pe)?;
    }
    write_atomic(&fig_dir.join(format!("{name}.svg")), svg.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Colours and labels

/// The legend box every line chart here draws: white, framed, in a corner.
fn legend_box<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_size: u32,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, font_size))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(pe)?;
    Ok(())
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Fixed colours for the names that recur across figures, palette order otherwise.
fn color_for(name: &str, idx: usize) -> RGBColor {
    match name {
        "sft" => RGBColor(127, 127, 127),
        "ppo_scalar" | "scalar" | "scalar_rm" => RGBColor(255, 127, 14),
        "ppo_seq2seq" | "seq2seq" | "seq2seq_rm" => RGBColor(31, 119, 180),
        "judge" => RGBColor(148, 103, 189),
        "reference" => RGBColor(0, 0, 0),
        "benign" | "summary" => RGBColor(44, 160, 44),
        "harmful" => RGBColor(214, 39, 40),
        // OOD sets never take the in-distribution sets' green and red (which palette order gave
        // them); the pairs that appear together differ
        "ood_alpaca" | "ood_tasks" => RGBColor(23, 190, 207),
        "ood_harmful" | "ood_templates" => RGBColor(148, 103, 189),
        "ood_topics" => RGBColor(140, 86, 75),
        ALL_SETS => RGBColor(80, 80, 80),
        _ => PALETTE[idx % PALETTE.len()],
    }
}

/// Draw a centred "no data" note (used when an input table has no rows for a figure).
fn no_data<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str) -> Result<()> {
    let (w, h) = root.dim_in_pixel();
    root.draw(&Text::new(title.to_string(), (20, 20), (FONT, 24).into_font())).map_err(pe)?;
    root.draw(&Text::new("no data".to_string(), (w as i32 / 2 - 40, h as i32 / 2), (FONT, 22).into_font())).map_err(pe)?;
    Ok(())
}

/// A chart over the whole figure with its caption (the bar, histogram and ratio charts' layout).
fn plot<'a, DB: DrawingBackend, X: plotters::coord::ranged1d::AsRangedCoord, Y: plotters::coord::ranged1d::AsRangedCoord>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    caption_size: u32,
    x: X,
    y: Y,
) -> Result<ChartContext<'a, DB, Cartesian2d<X::CoordDescType, Y::CoordDescType>>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, (FONT, caption_size)).margin(15).x_label_area_size(50).y_label_area_size(70);
    b.build_cartesian_2d(x, y).map_err(pe)
}

/// A legend entry that is a short line in `color`.
fn line_legend(color: RGBColor, width: u32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(width))
}

// ---------------------------------------------------------------------------------------------
// Grouped bar chart (win rates, refusal rates, RM accuracy)

#[derive(Clone, Debug)]
pub struct Bar {
    pub value: f64,
    /// Error bar (low, high), drawn if finite.
    pub err: Option<(f64, f64)>,
    /// Individual points (e.g. per-seed values) drawn over the bar.
    pub points: Vec<f64>,
}

#[derive(Clone, Debug)]
pub struct BarChart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub categories: Vec<String>,
    /// (series name, colour key, one optional bar per category)
    pub series: Vec<(String, String, Vec<Option<Bar>>)>,
    pub y_max: f64,
    /// A dashed reference line (value, legend label).
    pub hline: Option<(f64, String)>,
    /// How to print a bar's value above it (default: two decimals).
    pub value_label: Option<fn(f64) -> String>,
}

impl Figure for BarChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let has_bar = self.series.iter().any(|s| s.2.iter().any(|b| b.is_some()));
        if self.categories.is_empty() || !has_bar {
            return no_data(root, &self.title);
        }
        let n = self.categories.len();
        let y_top = self.y_max_clear_of_legend(root.dim_in_pixel());
        let mut chart = plot(root, &self.title, 24, CategoryAxis { n }, 0.0..y_top)?;
        let cats = &self.categories;
        let tick_cap = if self.y_max > 1.2 { self.y_max } else { 1.0 };
        // shrink the category labels when many long ones share the axis (~0.6 em per character)
        let longest = cats.iter().map(|c| c.chars().count()).max().unwrap_or(1).max(1) as f64;
        let plot_px = root.dim_in_pixel().0 as f64 - 120.0;
        let label_px = (plot_px / n as f64 / (0.6 * longest)).clamp(8.0, 15.0);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .x_desc(&self.x_desc)
            .y_desc(&self.y_desc)
            .label_style((FONT, 15))
            .x_label_style((FONT, label_px))
            .axis_desc_style((FONT, 17))
            .x_label_formatter(&|x| cats.get(x.round().max(0.0) as usize).cloned().unwrap_or_default())
            // the headroom above the data (1 for rates; for the legend) gets no tick labels
            .y_label_formatter(&|y| {
                if y_top > tick_cap && *y > tick_cap + 1e-9 { String::new() } else { format!("{y:.1}") }
            })
            .draw()
            .map_err(pe)?;

        let ns = self.series.len().max(1);
        let width = 0.8 / ns as f64;
        for (si, (name, key, bars)) in self.series.iter().enumerate() {
            let color = color_for(key, si);
            let x_of = |ci: usize| ci as f64 - 0.4 + width * (si as f64 + 0.5);
            let rects = bars.iter().enumerate().filter_map(|(ci, b)| {
                let b = b.as_ref().filter(|b| b.value.is_finite())?;
                let x = x_of(ci);
                let top = b.value.clamp(0.0, y_top);
                Some(Rectangle::new([(x - width * 0.45, 0.0), (x + width * 0.45, top)], color.mix(0.85).filled()))
            });
            chart
                .draw_series(rects)
                .map_err(pe)?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
            for (ci, b) in bars.iter().enumerate() {
                let Some(b) = b else { continue };
                let x = x_of(ci);
                if let Some((lo, hi)) = b.err.filter(|(l, h)| l.is_finite() && h.is_finite()) {
                    let cap = width * 0.15;
                    let segs = [vec![(x, lo), (x, hi)], vec![(x - cap, lo), (x + cap, lo)], vec![(x - cap, hi), (x + cap, hi)]];
                    chart.draw_series(segs.into_iter().map(|s| PathElement::new(s, BLACK.stroke_width(2)))).map_err(pe)?;
                }
                if b.value.is_finite() {
                    let top = b.err.map_or(b.value, |(_, h)| if h.is_finite() { h.max(b.value) } else { b.value });
                    let y = (top + y_top * 0.015).min(y_top);
                    let text = self.value_label.map_or(format!("{:.2}", b.value), |f| f(b.value));
                    let style = (FONT, 13).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
                    chart.draw_series(std::iter::once(Text::new(text, (x, y), style))).map_err(pe)?;
                }
                chart
                    .draw_series(b.points.iter().filter(|p| p.is_finite()).map(|p| Circle::new((x, *p), 4, BLACK.mix(0.8).filled())))
                    .map_err(pe)?;
            }
        }
        if let Some((v, label)) = &self.hline {
            chart
                .draw_series(DashedLineSeries::new(vec![(-0.5, *v), (n as f64 - 0.5, *v)], 10, 6, BLACK.stroke_width(2)))
                .map_err(pe)?
                .label(label.clone())
                .legend(line_legend(BLACK, 2));
        }
        legend_box(&mut chart, SeriesLabelPosition::UpperRight, 15)?;
        Ok(())
    }
}

impl BarChart {
    /// The top of the y axis: `y_max`, raised where needed so that the value labels end below the
    /// legend box in the upper right (about 20 px per entry; the plot is the figure less about
    /// 110 px of caption, axis labels and margins).
    fn y_max_clear_of_legend(&self, (_, h): (u32, u32)) -> f64 {
        let highest = self
            .series
            .iter()
            .flat_map(|s| s.2.iter().flatten())
            .map(|b| b.err.map_or(b.value, |(_, hi)| if hi.is_finite() { hi.max(b.value) } else { b.value }))
            .filter(|v| v.is_finite())
            .fold(0.0_f64, f64::max);
        let entries = self.series.len() + self.hline.is_some() as usize;
        let plot_px = (h as f64 - 110.0).max(100.0);
        let legend_frac = ((20 * entries + 30) as f64 / plot_px).min(0.6);
        // the label sits 1.5% of the axis above its bar and is about 16 px tall
        let label_top = highest + 16.0 / plot_px * self.y_max + 0.015 * self.y_max;
        self.y_max.max(label_top / (1.0 - legend_frac))
    }
}

/// A continuous x axis over [-0.5, n - 0.5] whose ticks sit exactly on the category centres
/// 0..n, so bars can be offset within a category while labels stay centred. (plotters' own
/// `with_key_points` wrapper loses the f64 label formatter, hence this small axis type.)
struct CategoryAxis {
    n: usize,
}

impl Ranged for CategoryAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let (lo, hi) = (-0.5, self.n as f64 - 0.5);
        let frac = (v - lo) / (hi - lo);
        limit.0 + ((limit.1 - limit.0) as f64 * frac + 1e-3).floor() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        // only bold points (labels); no light grid lines between categories
        if hint.weight().allow_light_points() { Vec::new() } else { (0..self.n).map(|i| i as f64).collect() }
    }

    fn range(&self) -> std::ops::Range<f64> {
        -0.5..self.n as f64 - 0.5
    }
}

// ---------------------------------------------------------------------------------------------
// Length histogram

#[derive(Clone, Debug)]
pub struct LengthHist {
    pub bin_width: f64,
    /// (policy, fraction of responses per bin starting at 0)
    pub series: Vec<(String, Vec<f64>)>,
}

impl Figure for LengthHist {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let title = "Response length distribution per policy";
        if self.series.is_empty() {
            return no_data(root, title);
        }
        let n_bins = self.series.iter().map(|s| s.1.len()).max().unwrap_or(1);
        let x_max = n_bins as f64 * self.bin_width;
        let y_max = self.series.iter().flat_map(|s| s.1.iter().copied()).fold(0.0, f64::max).max(1e-3) * 1.15;
        let mut chart = plot(root, title, 24, 0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("response length (tokens)")
            .y_desc("fraction of responses")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .draw()
            .map_err(pe)?;
        for (si, (policy, fracs)) in self.series.iter().enumerate() {
            let color = color_for(policy, si);
            // step outline: each bin contributes its left and right edge at its height
            let mut pts = vec![(0.0, 0.0)];
            for (b, f) in fracs.iter().enumerate() {
                pts.push((b as f64 * self.bin_width, *f));
                pts.push(((b + 1) as f64 * self.bin_width, *f));
            }
            pts.push((fracs.len() as f64 * self.bin_width, 0.0));
            chart.draw_series(std::iter::once(Polygon::new(pts.clone(), color.mix(0.12).filled()))).map_err(pe)?;
            chart.draw_series(LineSeries::new(pts, color.stroke_width(2))).map_err(pe)?.label(policy.clone()).legend(line_legend(color, 3));
        }
        legend_box(&mut chart, SeriesLabelPosition::UpperRight, 15)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Small multiples of curves (PPO metrics, training losses)

#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    /// (line label, colour key, points)
    pub lines: Vec<(String, String, Vec<CurvePoint>)>,
}

#[derive(Clone, Debug)]
pub struct Panels {
    pub title: String,
    pub x_desc: String,
    pub cols: usize,
    pub panels: Vec<Panel>,
}

fn padded(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 1e-12 { span * 0.08 } else { lo.abs().max(1.0) * 0.1 };
    (lo - pad, hi + pad)
}

impl Figure for Panels {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let has_data = self.panels.iter().any(|p| p.lines.iter().any(|l| !l.2.is_empty()));
        if !has_data {
            return no_data(root, &self.title);
        }
        let body = root.titled(&self.title, (FONT, 22)).map_err(pe)?;
        let cols = self.cols.max(1);
        let rows = self.panels.len().div_ceil(cols).max(1);
        let areas = body.split_evenly((rows, cols));
        for (pi, (panel, area)) in self.panels.iter().zip(areas.iter()).enumerate() {
            let pts = || panel.lines.iter().flat_map(|l| l.2.iter());
            if pts().next().is_none() {
                area.draw(&Text::new(format!("{}: no data", panel.title), (10, 10), (FONT, 14).into_font())).map_err(pe)?;
                continue;
            }
            let x_lo = pts().map(|p| p.step).min().unwrap_or(0) as f64;
            let mut x_hi = pts().map(|p| p.step).max().unwrap_or(1) as f64;
            if x_hi <= x_lo {
                x_hi = x_lo + 1.0;
            }
            let (y_lo, y_hi) =
                padded(pts().map(|p| p.min).fold(f64::INFINITY, f64::min), pts().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max));
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, (FONT, 16))
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(55)
                .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
                .map_err(pe)?;
            chart
                .configure_mesh()
                .x_labels(5)
                .y_labels(5)
                .light_line_style(WHITE)
                .x_desc(&self.x_desc)
                .label_style((FONT, 11))
                .axis_desc_style((FONT, 12))
                .y_label_formatter(&|y| format_tick(*y, y_hi - y_lo))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .draw()
                .map_err(pe)?;
            for (li, (label, key, points)) in panel.lines.iter().enumerate() {
                let color = color_for(key, li);
                // faint min–max band across seeds
                if points.len() > 1 && points.iter().any(|p| p.max > p.min) {
                    let mut band: Vec<(f64, f64)> = points.iter().map(|p| (p.step as f64, p.max)).collect();
                    band.extend(points.iter().rev().map(|p| (p.step as f64, p.min)));
                    chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled()))).map_err(pe)?;
                }
                if points.len() == 1 {
                    // a single logged step has no line to draw; show it as a dot
                    let p = points[0];
                    chart.draw_series(std::iter::once(Circle::new((p.step as f64, p.mean), 3, color.filled()))).map_err(pe)?;
                }
                let line = points.iter().map(|p| (p.step as f64, p.mean));
                chart
                    .draw_series(LineSeries::new(line, color.stroke_width(2)))
                    .map_err(pe)?
                    .label(label.clone())
                    .legend(line_legend(color, 3));
            }
            // one legend is enough (all panels share the same lines), and only if there are several
            if pi == 0 && panel.lines.len() > 1 {
                legend_box(&mut chart, SeriesLabelPosition::UpperRight, 12)?;
            }
        }
        Ok(())
    }
}

/// Tick label with a precision that suits the axis span (about five ticks), scientific notation
/// for very large or very small magnitudes.
fn format_tick(y: f64, span: f64) -> String {
    if y.abs() < span * 1e-9 {
        return "0".into();
    }
    if y.abs() >= 1e5 || span < 1e-4 {
        return format!("{y:.2e}");
    }
    let step = span / 5.0;
    let decimals = if step >= 1.0 { 0 } else { (-step.log10()).ceil().clamp(0.0, 6.0) as usize };
    format!("{y:.decimals$}")
}

/// Win rate against the length ratio, one line per (experiment, size).
#[derive(Clone, Debug)]
pub struct RatioChart {
    pub title: String,
    /// (line label, bins)
    pub series: Vec<(String, Vec<RatioBin>)>,
}

impl Figure for RatioChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        if self.series.is_empty() {
            return no_data(root, &self.title);
        }
        let xs = || self.series.iter().flat_map(|s| s.1.iter().map(|b| b.log_ratio));
        let (x_lo, x_hi) = padded(xs().fold(0.0, f64::min), xs().fold(0.0, f64::max));
        let mut chart = plot(root, &self.title, 22, x_lo..x_hi, 0.0..1.05)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc("ln((len_seq2seq + 1) / (len_scalar + 1)), mean in bin")
            .y_desc("win rate of ppo_seq2seq")
            .x_label_formatter(&|x| format_tick(*x, x_hi - x_lo))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 17))
            .draw()
            .map_err(pe)?;
        // guides: no preference (0.5) and equal length (0)
        let guide = BLACK.mix(0.6).stroke_width(1);
        chart.draw_series(DashedLineSeries::new(vec![(x_lo, 0.5), (x_hi, 0.5)], 8, 6, guide)).map_err(pe)?;
        chart.draw_series(DashedLineSeries::new(vec![(0.0, 0.0), (0.0, 1.05)], 8, 6, guide)).map_err(pe)?;
        for (si, (label, bins)) in self.series.iter().enumerate() {
            let color = if self.series.len() == 1 { color_for("ppo_seq2seq", 0) } else { PALETTE[si % PALETTE.len()] };
            let pts: Vec<(f64, f64)> = bins.iter().map(|b| (b.log_ratio, b.win_rate)).collect();
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 5, color.filled()))).map_err(pe)?;
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(pe)?
                .label(format!("{label} (~{} points per bin)", bins.first().map_or(0, |b| b.n)))
                .legend(line_legend(color, 3));
        }
        legend_box(&mut chart, SeriesLabelPosition::UpperLeft, 15)?;
        Ok(())
    }
}
