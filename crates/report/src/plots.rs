//! Plots with plotters, each drawn once by `Chart::draw` (generic over the backend) and
//! written twice: SVG (text as `<text>` elements) and PNG (plotters' bitmap backend, encoded
//! with the `png` crate). Text is laid out and rasterised with DejaVu Sans, embedded in the
//! binary (`assets/DejaVuSans.ttf`), so no system fonts are needed:
//! - the TOFU trade-off: forget quality vs model utility, one marker set per method;
//! - MSA's α/β grid: a metric vs α, one line per value of the other hyperparameters;
//! - the checkpoint-distance curve: a metric vs how many checkpoints before exposure MSA's θ_0
//!   was (`checkpoint = "latest-clean"` is distance 0, `"distance:k"` is k);
//! - training / unlearning loss curves, one plot per method.
//!
//! Each function returns the written SVG file names (relative to the plots folder); each has a
//! PNG of [`SIZE`] pixels with the same stem next to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::format_param;
use crate::results::{CellFile, Status};
use crate::tables::{params_text, Summary, SummaryRow};

/// A named series of (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// Width and height of every plot, in SVG user units and in PNG pixels.
pub const SIZE: (u32, u32) = (800, 520);

/// DejaVu Sans (Bitstream Vera licence, see `assets/LICENSE-DejaVu.txt`): plotters' `ab_glyph`
/// text layout needs a font, and there may be no system fonts where the report is built.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers [`FONT`] as plotters' `sans-serif` once per process.
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    anyhow::ensure!(ok, "the embedded DejaVu Sans font is not a valid TrueType font");
    Ok(())
}

/// One chart: `series` with markers always, and lines through the points when `lines`.
struct Chart<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    series: &'a [Series],
    lines: bool,
}

impl Chart<'_> {
    /// Draws the chart on any plotters backend (SVG, bitmap); the one place the drawing is.
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let (xr, yr) = ranges(self.series);
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(xr, yr)?;
        chart.configure_mesh().x_desc(self.x_desc).y_desc(self.y_desc).draw()?;
        for (i, (name, points)) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            if self.lines {
                chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))?;
            }
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?
                .label(name.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()
    }
}

/// Draws `series` in one chart, written twice: as SVG at `svg_path` and as PNG next to it (same
/// stem, `.png`). Lines through the points when `lines`, markers always.
pub fn draw_chart(
    svg_path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    lines: bool,
) -> Result<()> {
    register_font()?;
    let chart = Chart { title, x_desc, y_desc, series, lines };
    let err = |p: &Path, e: &dyn std::fmt::Display| anyhow!("{}: cannot draw plot: {e}", p.display());
    chart.draw(&SVGBackend::new(svg_path, SIZE).into_drawing_area()).map_err(|e| err(svg_path, &e))?;

    let png_path = svg_path.with_extension("png");
    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    chart.draw(&BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area()).map_err(|e| err(&png_path, &e))?;
    write_png(&png_path, &rgb, SIZE)
}

/// Encodes 8-bit RGB pixels, row by row from the top, as a PNG file.
fn write_png(path: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().with_context(|| format!("{}: cannot write PNG header", path.display()))?;
    writer.write_image_data(rgb).with_context(|| format!("{}: cannot write PNG pixels", path.display()))?;
    writer.finish().with_context(|| format!("{}: cannot finish PNG", path.display()))
}

fn ranges(series: &[Series]) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let pts = series.iter().flat_map(|(_, p)| p.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    // Extra room at the top keeps the legend (upper right) off the data.
    let y = padded(y0, y1);
    let room = (y.end - y.start) * 0.35;
    (padded(x0, x1), y.start..(y.end + room))
}

fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) * 0.08 } else { lo.abs().max(1.0) * 0.1 };
    (lo - pad)..(hi + pad)
}

fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

/// Forget quality vs model utility (TOFU's trade-off), one file per model that has both
/// metrics. Forget quality (a KS p-value) is plotted as log10 when every value is positive.
pub fn tradeoff(summaries: &[Summary], dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for s in summaries {
        let mean = |r: &SummaryRow, m: &str| r.stats.get(m).map(|st| st.mean);
        let pairs: Vec<(&SummaryRow, f64, f64)> = s
            .rows
            .iter()
            .filter_map(|r| Some((r, mean(r, "tofu_model_utility")?, mean(r, "tofu_forget_quality")?)))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let log = pairs.iter().all(|&(_, _, fq)| fq > 0.0);
        let mut by_method: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (r, mu, fq) in pairs {
            let name = if r.is_reference { r.label() } else { r.method.clone() };
            by_method.entry(name).or_default().push((mu, if log { fq.log10() } else { fq }));
        }
        let series: Vec<Series> = by_method.into_iter().collect();
        let file = format!("tradeoff_{}.svg", safe(&s.model));
        let y = if log { "log10 forget quality" } else { "forget quality" };
        draw_chart(
            &dir.join(&file),
            &format!("Forget quality vs model utility ({})", s.model),
            "model utility",
            y,
            &series,
            false,
        )?;
        files.push(file);
    }
    Ok(files)
}

/// A metric vs one numeric-valued parameter `x_param` of the rows of kind `kind`, one line per
/// combination of the other parameters; `x_of` maps the parameter's value to x. One file per
/// (model, metric) with at least two distinct x values.
fn param_curves(
    summaries: &[Summary],
    dir: &Path,
    kind: &str,
    x_param: &str,
    x_of: &dyn Fn(&serde_json::Value) -> Option<f64>,
    prefix: &str,
    x_desc: &str,
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for s in summaries {
        let rows: Vec<(&SummaryRow, f64)> =
            s.rows.iter().filter(|r| r.kind == kind).filter_map(|r| Some((r, x_of(r.params.get(x_param)?)?))).collect();
        let mut xs: Vec<f64> = rows.iter().map(|&(_, x)| x).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        if xs.len() < 2 {
            continue;
        }
        for metric in s.columns.iter().map(|c| &c.record) {
            let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for &(r, x) in &rows {
                if let Some(st) = r.stats.get(metric) {
                    let mut others = r.params.clone();
                    others.remove(x_param);
                    let name = format!("{} {}", r.method, params_text(&others, ", "));
                    lines.entry(name.trim().to_owned()).or_default().push((x, st.mean));
                }
            }
            if lines.is_empty() {
                continue;
            }
            let series: Vec<Series> = lines
                .into_iter()
                .map(|(n, mut p)| {
                    p.sort_by(|a, b| a.0.total_cmp(&b.0));
                    (n, p)
                })
                .collect();
            let file = format!("{prefix}_{}_{}.svg", safe(&s.model), safe(metric));
            draw_chart(
                &dir.join(&file),
                &format!("{metric} vs {x_desc} ({kind}, {})", s.model),
                x_desc,
                metric,
                &series,
                true,
            )?;
            files.push(file);
        }
    }
    Ok(files)
}

/// MSA's α/β grid: each metric vs α, a line per (β, checkpoint, …).
pub fn msa_grid(summaries: &[Summary], dir: &Path) -> Result<Vec<String>> {
    param_curves(summaries, dir, "msa", "alpha", &|v| v.as_f64(), "msa_grid", "alpha")
}

/// `latest-clean` → 0, `distance:k` → k; anything else (a step, a folder) → none.
pub fn checkpoint_distance(value: &serde_json::Value) -> Option<f64> {
    let s = value.as_str()?;
    if s == "latest-clean" {
        return Some(0.0);
    }
    s.strip_prefix("distance:")?.trim().parse::<u32>().ok().map(f64::from)
}

/// Each metric vs how many checkpoints before exposure MSA's θ_0 was.
pub fn checkpoint_curves(summaries: &[Summary], dir: &Path) -> Result<Vec<String>> {
    param_curves(
        summaries,
        dir,
        "msa",
        "checkpoint",
        &checkpoint_distance,
        "checkpoint_distance",
        "checkpoints before exposure",
    )
}

/// Loss curves, one file per (model, method), a line per cell × curve (at most 24 lines).
pub fn loss_curves(cells: &[CellFile], dir: &Path) -> Result<Vec<String>> {
    let mut groups: BTreeMap<(String, String), Vec<Series>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.status == Status::Ok) {
        for (curve, pts) in &c.loss_curves {
            let pts: Vec<(f64, f64)> =
                pts.iter().filter_map(|&(step, loss)| Some((step as f64, loss.filter(|l| l.is_finite())?))).collect();
            if pts.is_empty() {
                continue;
            }
            let params: Vec<String> = c.cell.params.iter().map(|(k, v)| format!("{k}={}", format_param(v))).collect();
            let world = if c.cell.world_seed == 0 { String::new() } else { format!(" world={}", c.cell.world_seed) };
            let name = format!("{curve} {}{world} seed={}", params.join(","), c.cell.seed);
            groups.entry((c.cell.model.clone(), c.cell.method.clone())).or_default().push((name, pts));
        }
    }
    let mut files = Vec::new();
    for ((model, method), mut series) in groups {
        series.truncate(24);
        let file = format!("loss_{}_{}.svg", safe(&model), safe(&method));
        draw_chart(&dir.join(&file), &format!("Loss curves: {method} ({model})"), "step", "loss", &series, true)?;
        files.push(file);
    }
    Ok(files)
}
