//! The report's figures (issue 14, item 5): at most [`MAX_FIGURES`] for the whole report, each
//! an inline-able SVG string with a title and a caption saying how to read it, and those a paper
//! would use (`paper`) also as PNG of [`SIZE`] pixels ([`write_png_of`]). Per model, when its
//! data exists:
//! 1. the TOFU trade-off: forget quality (log10 when all values are positive) vs model utility,
//!    one mark per headline method with interval whiskers in x and y, θ_D and the oracle(s) as
//!    labelled reference marks, the legend in a column right of the plotting area;
//! 2. MSA's α × β heat map: each cell the forget-side distance to the oracle, its value written
//!    in it, the closest cell outlined, a colour bar;
//! 3. the checkpoint-distance curve: MSA's forget-side metric vs how many checkpoints before
//!    exposure its θ_0 was, with whiskers, the oracle's line (and its noise-floor band) and θ_D's;
//! 4. the relearning curves (`[attacks] relearn`): a forget-side metric on the held forget
//!    entities over the relearning steps, one line per headline method, the oracle's and θ_D's
//!    lines as references (`crate::robustness::relearn_steps`);
//! 5. per-metric dot plots ([`DotMetric`], at most [`MAX_DOT_PLOTS`] per model): a row per
//!    headline method and reference, dot = mean, whisker = interval, the oracle's line.
//!
//! Every chart is drawn by one function generic over the plotters backend, once into an SVG
//! string and, on demand, again into RGB pixels encoded with the `png` crate. Text is laid out
//! and rasterised with DejaVu Sans, embedded in the binary (`assets/DejaVuSans.ttf`) and
//! registered as the family `sans-serif`, so no system fonts are needed and the SVG names only
//! that family. Reference lines and bands are drawn as filled rectangles and marks as circles,
//! rectangles or polygons, so inside the plotting area a two-point `<polyline>` is a whisker
//! (or, in the checkpoint curve, a segment of the line through MSA's points).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::fmt_num;
use crate::results::{is_paper_msa, Target, REFERENCE_FINAL, REFERENCE_RETRAIN, REFERENCE_RETRAIN_ALT};
use crate::tables::{params_text, Stat, Summary, SummaryRow};

/// Width and height of every figure, in SVG user units and in PNG pixels.
pub const SIZE: (u32, u32) = (800, 520);

/// At most this many figures in a report. When there are more, [`figures`] drops dot plots
/// first (the last [`DotMetric`] first, later models before earlier ones), then relearning
/// curves, then checkpoint curves, then heat maps, then trade-offs (later models first).
pub const MAX_FIGURES: usize = 8;

/// At most this many dot plots per model (the first [`DotMetric`]s with data).
pub const MAX_DOT_PLOTS: usize = 4;

const MODEL_UTILITY: &str = "tofu_model_utility";
const FORGET_QUALITY: &str = "tofu_forget_quality";
/// The forget-side records of the heat map and the checkpoint curve, the first one present.
const FORGET_RECORDS: [&str; 2] = ["mc_accuracy/forget", "kl_to_oracle/forget"];
/// `kl_to_oracle/*` is itself a distance to the oracle (the oracle's own value is 0).
const KL_PREFIX: &str = "kl_to_oracle";

/// One figure of the report.
#[derive(Clone, Debug)]
pub struct Figure {
    /// File stem, e.g. "tradeoff_tiny" (safe characters only, see [`safe`]).
    pub stem: String,
    pub title: String,
    /// One or two sentences saying how to read it (what the whiskers are, what the marks are).
    pub caption: String,
    /// The SVG document: starts with `<svg`, ends with `</svg>`, no XML prolog, no external
    /// references, text in the font family `sans-serif` only.
    pub svg: String,
    /// A figure a paper would use: the caller also writes it as PNG with [`write_png_of`].
    pub paper: bool,
    /// What to draw again for the PNG.
    chart: Chart,
}

/// A metric shown as a dot plot: `record` is a metric name of the summaries (e.g.
/// `mc_accuracy/forget`), `label` its name on the figure, `log` a log10 x axis.
#[derive(Clone, Debug)]
pub struct DotMetric {
    pub record: String,
    pub label: String,
    pub log: bool,
}

/// The report's figures for every model, in order of model then kind (trade-off, heat map,
/// checkpoint curve, dot plots), at most [`MAX_FIGURES`] in all (see there which go first).
/// `is_headline` picks the method rows shown in the trade-off and dot plots (references are
/// always shown and never asked about); it also picks which setting of the other parameters
/// the heat map and the checkpoint curve hold fixed (a headline MSA row's, else the most common).
pub fn figures(
    summaries: &[Summary],
    is_headline: &dyn Fn(&SummaryRow) -> bool,
    dots: &[DotMetric],
) -> Result<Vec<Figure>> {
    register_font()?;
    // (priority: kind, dot plot, model; plan)
    let mut planned: Vec<((u8, usize, usize), Plan)> = Vec::new();
    for (m, s) in summaries.iter().enumerate() {
        let looks = Looks::of(s, is_headline);
        let mut add = |kind: u8, sub: usize, plan: Option<Plan>| {
            planned.extend(plan.map(|plan| ((kind, sub, m), plan)));
        };
        add(0, 0, plan_tradeoff(s, &looks));
        add(1, 0, plan_heat_map(s, is_headline));
        add(2, 0, plan_curve(s, is_headline));
        add(3, 0, plan_relearn(s, &looks));
        let mut n = 0;
        for d in dots {
            if n == MAX_DOT_PLOTS {
                break;
            }
            if let Some(p) = plan_dots(s, &looks, d) {
                add(4, n, Some(p));
                n += 1;
            }
        }
    }
    planned.sort_by_key(|(priority, _)| *priority);
    planned.truncate(MAX_FIGURES);
    planned.sort_by_key(|&((kind, dot, model), _)| (model, kind, dot));
    planned
        .into_iter()
        .map(|(_, p)| {
            let svg = render_svg(&p.chart).with_context(|| format!("figure {}", p.stem))?;
            Ok(Figure { stem: p.stem, title: p.title, caption: p.caption, svg, paper: p.paper, chart: p.chart })
        })
        .collect()
}

/// Draws `figure` again with the bitmap backend and writes it at `path` as an 8-bit RGB PNG of
/// [`SIZE`] pixels.
pub fn write_png_of(figure: &Figure, path: &Path) -> Result<()> {
    register_font()?;
    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        figure.chart.draw(&root).map_err(|e| anyhow!("{}: cannot draw {}: {e}", path.display(), figure.stem))?;
    }
    write_png(path, &rgb, SIZE)
}

/// `latest-clean` → 0, `distance:k` → k; anything else (a step, a folder) → none.
pub fn checkpoint_distance(value: &serde_json::Value) -> Option<f64> {
    let s = value.as_str()?;
    if s == "latest-clean" {
        return Some(0.0);
    }
    s.strip_prefix("distance:")?.trim().parse::<u32>().ok().map(f64::from)
}

/// `s` with every character other than ASCII letters, digits, `-`, `_` and `.` replaced by `_`
/// (file stems).
pub fn safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect()
}

// ---------------------------------------------------------------------------------------------
// What each figure shows (data only, no drawing).

/// A figure before it is drawn.
struct Plan {
    stem: String,
    title: String,
    caption: String,
    paper: bool,
    chart: Chart,
}

/// The data of one figure, kept to draw it on any backend.
#[derive(Clone, Debug)]
enum Chart {
    Tradeoff(Tradeoff),
    Heat(Heat),
    Curve(Curve),
    Dots(Dots),
    Relearn(RelearnCurves),
}

/// How a row is marked: a colour and a mark shape.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Look {
    color: RGBColor,
    mark: Mark,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mark {
    Circle,
    Square,
    Triangle,
    Diamond,
    Star,
    Cross,
}

/// Okabe–Ito's colour-blind-safe colours (without its yellow and black) and a brown; black and
/// grey are the references'.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(140, 86, 75),
];
const METHOD_MARKS: [Mark; 4] = [Mark::Circle, Mark::Square, Mark::Triangle, Mark::Diamond];
const INK: RGBColor = RGBColor(20, 20, 20);
const GREY: RGBColor = RGBColor(120, 120, 120);
const GRID: RGBColor = RGBColor(228, 228, 228);
const FRAME: RGBColor = RGBColor(90, 90, 90);

/// The headline method rows of a summary (in table order) with their looks and legend labels,
/// and the references present (θ_D, the oracle, the second oracle) with theirs.
struct Looks<'a> {
    methods: Vec<(&'a SummaryRow, Look, String)>,
    references: Vec<(&'a SummaryRow, Look)>,
}

impl<'a> Looks<'a> {
    fn of(s: &'a Summary, is_headline: &dyn Fn(&SummaryRow) -> bool) -> Self {
        let rows: Vec<&SummaryRow> = s.rows.iter().filter(|r| !r.is_reference && is_headline(r)).collect();
        let methods = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let look = Look { color: PALETTE[i % PALETTE.len()], mark: METHOD_MARKS[i % METHOD_MARKS.len()] };
                (*r, look, short_label(r, &rows))
            })
            .collect();
        let mut references: Vec<(&SummaryRow, Look)> =
            s.rows.iter().filter_map(|r| Some((r, reference_look(r)?))).collect();
        references.sort_by_key(|(r, _)| reference_rank(r));
        Looks { methods, references }
    }
}

/// The method's name, and in parentheses the parameters in which it differs from the other
/// shown rows of the same method.
fn short_label(r: &SummaryRow, shown: &[&SummaryRow]) -> String {
    let same: Vec<&&SummaryRow> = shown.iter().filter(|o| o.method == r.method).collect();
    if same.len() < 2 {
        return r.method.clone();
    }
    let differing: Params = r
        .params
        .iter()
        .filter(|(k, v)| same.iter().any(|o| o.params.get(*k) != Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if differing.is_empty() {
        r.label()
    } else {
        format!("{} ({})", r.method, params_text(&differing, ", "))
    }
}

fn reference_rank(r: &SummaryRow) -> u8 {
    match r.method.as_str() {
        REFERENCE_FINAL => 0,
        REFERENCE_RETRAIN => 1,
        _ => 2,
    }
}

/// θ_D: a black cross; the oracle: a black star; the second oracle: a grey star.
fn reference_look(r: &SummaryRow) -> Option<Look> {
    if !r.is_reference {
        return None;
    }
    match r.method.as_str() {
        REFERENCE_FINAL => Some(Look { color: INK, mark: Mark::Cross }),
        REFERENCE_RETRAIN => Some(Look { color: INK, mark: Mark::Star }),
        REFERENCE_RETRAIN_ALT => Some(Look { color: GREY, mark: Mark::Star }),
        _ => None,
    }
}

/// The label written next to a reference mark.
fn reference_tag(r: &SummaryRow) -> &'static str {
    match r.method.as_str() {
        REFERENCE_FINAL => "θ_D",
        REFERENCE_RETRAIN => "oracle",
        _ => "2nd oracle",
    }
}

fn find_reference<'a>(s: &'a Summary, method: &str) -> Option<&'a SummaryRow> {
    s.rows.iter().find(|r| r.is_reference && r.method == method)
}

/// A mark with its whiskers, in plotted coordinates (log10 already applied where the axis is
/// logarithmic; a whisker end may be −∞, drawn to the axis).
#[derive(Clone, Debug)]
struct Point {
    look: Look,
    x: f64,
    y: f64,
    x_span: Option<(f64, f64)>,
    y_span: Option<(f64, f64)>,
}

#[derive(Clone, Debug)]
struct Tradeoff {
    title: String,
    y_log: bool,
    /// Headline methods, with their legend labels.
    methods: Vec<(String, Point)>,
    /// (legend label, tag next to the mark, point).
    references: Vec<(String, &'static str, Point)>,
}

fn plan_tradeoff(s: &Summary, looks: &Looks) -> Option<Plan> {
    fn pair(r: &SummaryRow) -> Option<(&Stat, &Stat)> {
        Some((r.stats.get(MODEL_UTILITY)?, r.stats.get(FORGET_QUALITY)?))
    }
    let methods: Vec<(String, Look, &Stat, &Stat)> = looks
        .methods
        .iter()
        .filter_map(|(r, look, label)| pair(r).map(|(u, q)| (label.clone(), *look, u, q)))
        .collect();
    let references: Vec<(&SummaryRow, Look, &Stat, &Stat)> =
        looks.references.iter().filter_map(|&(r, look)| pair(r).map(|(u, q)| (r, look, u, q))).collect();
    if methods.is_empty() && references.is_empty() {
        return None;
    }
    let y_log = methods.iter().map(|m| m.3).chain(references.iter().map(|r| r.3)).all(|q| q.mean > 0.0);
    let fy = |v: f64| {
        if !y_log {
            v
        } else if v > 0.0 {
            v.log10()
        } else {
            f64::NEG_INFINITY
        }
    };
    let point = |look: Look, u: &Stat, q: &Stat| Point {
        look,
        x: u.mean,
        y: fy(q.mean),
        x_span: u.interval,
        y_span: q.interval.map(|(lo, hi)| (fy(lo), fy(hi))),
    };
    let chart = Tradeoff {
        title: format!("Forget quality vs model utility ({})", s.model),
        y_log,
        methods: methods.iter().map(|(label, look, u, q)| (label.clone(), point(*look, u, q))).collect(),
        references: references
            .iter()
            .map(|(r, look, u, q)| (r.label(), reference_tag(r), point(*look, u, q)))
            .collect(),
    };
    let alt = if references.iter().any(|r| r.0.method == REFERENCE_RETRAIN_ALT) {
        ", grey ★ the second oracle (another data-order seed)"
    } else {
        ""
    };
    let caption = format!(
        "TOFU's forget quality (a KS p-value{}) against model utility, one mark per headline method: marks are means \
         over world seeds, whiskers 95 % cluster-bootstrap intervals on both axes (none where a row has one run). \
         ★ is the oracle (retrain, the goal){alt}, ✕ θ_D (final, before unlearning); up and right is better.",
        if y_log { ", log scale" } else { "" }
    );
    Some(Plan {
        stem: safe(&format!("tradeoff_{}", s.model)),
        title: chart.title.clone(),
        caption,
        paper: true,
        chart: Chart::Tradeoff(chart),
    })
}

type Params = BTreeMap<String, serde_json::Value>;

/// A row with the values of some of its parameters.
type Keyed<'a> = (&'a SummaryRow, Vec<f64>);

/// The paper's MSA rows ([`is_paper_msa`]: kind `msa` without a variant, not references) with the values of parameters `keys`, by `x_of`; rows
/// without all of them are left out.
fn msa_rows<'a>(s: &'a Summary, keys: &[&str], x_of: &dyn Fn(&serde_json::Value) -> Option<f64>) -> Vec<Keyed<'a>> {
    s.rows
        .iter()
        .filter(|r| !r.is_reference && is_paper_msa(&r.kind, &r.params))
        .filter_map(|r| Some((r, keys.iter().map(|k| x_of(r.params.get(*k)?)).collect::<Option<Vec<f64>>>()?)))
        .collect()
}

/// The parameters of `r` other than `keys`.
fn others(r: &SummaryRow, keys: &[&str]) -> Params {
    r.params.iter().filter(|(k, _)| !keys.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Of the settings of the other parameters under which `ok` holds for the rows, a headline
/// row's, else the one with the most rows (the first on ties); with its rows.
fn pick_setting<'a>(
    rows: &[Keyed<'a>],
    keys: &[&str],
    is_headline: &dyn Fn(&SummaryRow) -> bool,
    ok: &dyn Fn(&[Keyed<'a>]) -> bool,
) -> Option<(Params, Vec<Keyed<'a>>)> {
    let mut settings: Vec<(Params, Vec<Keyed>)> = Vec::new();
    for (r, x) in rows {
        let o = others(r, keys);
        match settings.iter_mut().find(|(k, _)| *k == o) {
            Some((_, v)) => v.push((r, x.clone())),
            None => settings.push((o, vec![(r, x.clone())])),
        }
    }
    settings.retain(|(_, v)| ok(v));
    let headline = settings.iter().position(|(_, v)| v.iter().any(|(r, _)| is_headline(r)));
    let most = (0..settings.len()).rev().max_by_key(|&i| settings[i].1.len());
    let i = headline.or(most)?;
    Some(settings.swap_remove(i))
}

fn distinct(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v
}

/// The first of [`FORGET_RECORDS`] some row has.
fn forget_record<'a>(rows: impl Iterator<Item = &'a SummaryRow> + Clone) -> Option<&'static str> {
    FORGET_RECORDS.into_iter().find(|rec| rows.clone().any(|r| r.stats.contains_key(*rec)))
}

#[derive(Clone, Debug)]
struct Heat {
    title: String,
    /// The other parameters, fixed.
    subtitle: String,
    alphas: Vec<f64>,
    betas: Vec<f64>,
    /// `cells[b][a]`: the distance at (alphas[a], betas[b]).
    cells: Vec<Vec<Option<f64>>>,
    /// What a cell is, for the colour bar.
    value_desc: String,
    noise_floor: Option<f64>,
}

fn plan_heat_map(s: &Summary, is_headline: &dyn Fn(&SummaryRow) -> bool) -> Option<Plan> {
    const KEYS: [&str; 2] = ["alpha", "beta"];
    let rows = msa_rows(s, &KEYS, &|v| v.as_f64());
    let grid = |v: &[Keyed]| {
        distinct(v.iter().map(|(_, x)| x[0])).len() >= 2 && distinct(v.iter().map(|(_, x)| x[1])).len() >= 2
    };
    let (fixed, rows) = pick_setting(&rows, &KEYS, is_headline, &grid)?;
    // The first forget-side record the rows have and its oracle value (a KL to the oracle: 0).
    let (record, oracle) = FORGET_RECORDS.into_iter().find_map(|record| {
        rows.iter().any(|(r, _)| r.stats.contains_key(record)).then_some(())?;
        let oracle = match record.starts_with(KL_PREFIX) {
            true => 0.0,
            false => find_reference(s, REFERENCE_RETRAIN)?.stats.get(record)?.mean,
        };
        Some((record, oracle))
    })?;
    let is_kl = record.starts_with(KL_PREFIX);
    let (alphas, betas) = (distinct(rows.iter().map(|(_, x)| x[0])), distinct(rows.iter().map(|(_, x)| x[1])));
    let mut cells = vec![vec![None; alphas.len()]; betas.len()];
    for (r, x) in &rows {
        let (Some(a), Some(b)) = (alphas.iter().position(|&v| v == x[0]), betas.iter().position(|&v| v == x[1])) else {
            continue;
        };
        cells[b][a] = r.stats.get(record).map(|st| (st.mean - oracle).abs());
    }
    let value_desc = if is_kl { record.to_owned() } else { format!("|{record} − oracle|") };
    let setting = if fixed.is_empty() { "none".to_owned() } else { params_text(&fixed, ", ") };
    let noise_floor = s.noise_floor.as_ref().and_then(|nf| nf.values.get(record).copied());
    let caption = format!(
        "MSA over α (columns) × β (rows), other parameters fixed ({setting}): each cell is {} (means over world \
         seeds); lower is closer to retraining, and the closest cell is outlined.{}",
        if is_kl {
            format!("MSA's {record}, its forget-side KL divergence to the oracle")
        } else {
            format!("|MSA's {record} − the oracle's|")
        },
        match noise_floor {
            Some(nf) =>
                format!(" The noise floor (|retrain_alt − retrain| = {}) is marked on the colour bar.", fmt_num(nf)),
            None => String::new(),
        }
    );
    let chart = Heat {
        title: format!("MSA α × β: distance to the oracle ({})", s.model),
        subtitle: format!("{record}; fixed: {setting}"),
        alphas,
        betas,
        cells,
        value_desc,
        noise_floor,
    };
    Some(Plan {
        stem: safe(&format!("msa_grid_{}", s.model)),
        title: chart.title.clone(),
        caption,
        paper: true,
        chart: Chart::Heat(chart),
    })
}

#[derive(Clone, Debug)]
struct Curve {
    title: String,
    y_desc: String,
    series: String,
    /// Distinct distances (ticks).
    xs: Vec<f64>,
    /// Sorted by x.
    points: Vec<Point>,
    oracle: Option<f64>,
    noise_floor: Option<f64>,
    final_value: Option<f64>,
}

fn plan_curve(s: &Summary, is_headline: &dyn Fn(&SummaryRow) -> bool) -> Option<Plan> {
    const KEYS: [&str; 1] = ["checkpoint"];
    let rows = msa_rows(s, &KEYS, &checkpoint_distance);
    let curve = |v: &[Keyed]| distinct(v.iter().map(|(_, x)| x[0])).len() >= 2;
    let (fixed, rows) = pick_setting(&rows, &KEYS, is_headline, &curve)?;
    let record = forget_record(rows.iter().map(|(r, _)| *r))?;
    let look = Look { color: PALETTE[0], mark: Mark::Circle };
    let mut points: Vec<Point> = rows
        .iter()
        .filter_map(|(r, x)| {
            let st = r.stats.get(record)?;
            Some(Point { look, x: x[0], y: st.mean, x_span: None, y_span: st.interval })
        })
        .collect();
    if distinct(points.iter().map(|p| p.x)).len() < 2 {
        return None;
    }
    points.sort_by(|a, b| a.x.total_cmp(&b.x));
    let value = |method: &str| find_reference(s, method).and_then(|r| r.stats.get(record)).map(|st| st.mean);
    let oracle = value(REFERENCE_RETRAIN).or(record.starts_with(KL_PREFIX).then_some(0.0));
    let noise_floor = oracle.and(s.noise_floor.as_ref().and_then(|nf| nf.values.get(record).copied()));
    let setting = if fixed.is_empty() { String::new() } else { params_text(&fixed, ", ") };
    let caption = format!(
        "MSA's {record} against how many checkpoints before the forget set's exposure its θ_0 was (0 = the latest \
         clean checkpoint){}: marks are means over world seeds, whiskers 95 % cluster-bootstrap intervals (none where \
         a row has one run). The solid line is the oracle (retrain){}; the dashed line is θ_D (final).",
        if setting.is_empty() { String::new() } else { format!(", other parameters fixed ({setting})") },
        if noise_floor.is_some() {
            ", the grey band the oracle ± the noise floor |retrain_alt − retrain|"
        } else {
            ""
        }
    );
    let chart = Curve {
        title: format!("MSA vs checkpoint distance ({})", s.model),
        y_desc: format!("{record}{}", direction_text(s, record)),
        series: if setting.is_empty() { "msa".to_owned() } else { format!("msa ({setting})") },
        xs: distinct(points.iter().map(|p| p.x)),
        points,
        oracle,
        noise_floor,
        final_value: value(REFERENCE_FINAL),
    };
    Some(Plan {
        stem: safe(&format!("checkpoint_distance_{}", s.model)),
        title: chart.title.clone(),
        caption,
        paper: true,
        chart: Chart::Curve(chart),
    })
}

/// The relearning curves: one line per headline method and reference, x = relearning steps,
/// y = a forget-side record on the held forget entities (`attack/relearn@K/RECORD`).
#[derive(Clone, Debug)]
struct RelearnCurves {
    title: String,
    y_desc: String,
    /// Distinct steps (ticks).
    xs: Vec<f64>,
    /// (legend label, look, dashed, points sorted by x); references first (in the legend;
    /// drawn last, on top of the methods' lines).
    series: Vec<(String, Look, bool, Vec<Point>)>,
    references: usize,
}

/// The held-part records the relearning figure can show, the first one present.
const RELEARN_RECORDS: [&str; 3] = ["mc_accuracy/forget", "tofu_prob_forget", "perplexity/forget"];

fn plan_relearn(s: &Summary, looks: &Looks) -> Option<Plan> {
    let steps = crate::robustness::relearn_steps(s);
    if steps.len() < 2 {
        return None;
    }
    let key = |step: usize, record: &str| format!("attack/{}{step}/{record}", crate::robustness::RELEARN);
    let record = RELEARN_RECORDS.iter().copied().find(|r| steps.iter().all(|&k| s.column(&key(k, r)).is_some()))?;
    let points = |r: &SummaryRow, look: Look| -> Vec<Point> {
        steps
            .iter()
            .filter_map(|&k| {
                let st = r.stats.get(key(k, record).as_str())?;
                st.mean.is_finite().then_some(Point {
                    look,
                    x: k as f64,
                    y: st.mean,
                    x_span: None,
                    y_span: st.interval,
                })
            })
            .collect()
    };
    let mut series = Vec::new();
    for &(r, look) in &looks.references {
        let dashed = r.method == REFERENCE_FINAL;
        let look = if dashed { Look { color: GREY, ..look } } else { look };
        let pts = points(r, look);
        if pts.len() >= 2 {
            series.push((r.label(), look, dashed, pts));
        }
    }
    let references = series.len();
    for (r, look, label) in &looks.methods {
        let pts = points(r, *look);
        if pts.len() >= 2 {
            series.push((label.clone(), *look, false, pts));
        }
    }
    if series.len() == references {
        return None;
    }
    let y_desc = format!("{record} on the held forget entities{}", direction_text(s, record));
    let caption = format!(
        "The relearning attack: each model fine-tuned on the forget documents of part of the forget entities (the same \
         documents and batches for every line), scored after 0 (the model itself), {} steps on the OTHER forget \
         entities, which the attack never trained on: {record}, marks are means over world seeds, whiskers 95 % \
         cluster-bootstrap intervals (none with one run). The oracle (black) never saw the forget data, so its line is \
         what relearning teaches a model that truly does not know; θ_D (grey, dashed) never forgot. A method's line \
         rising above the oracle's is hidden knowledge coming back.",
        steps.iter().filter(|&&k| k > 0).map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
    );
    let chart = RelearnCurves {
        title: format!("Relearning attack ({})", s.model),
        y_desc,
        xs: steps.iter().map(|&k| k as f64).collect(),
        series,
        references,
    };
    Some(Plan {
        stem: safe(&format!("relearn_{}", s.model)),
        title: chart.title.clone(),
        caption,
        paper: true,
        chart: Chart::Relearn(chart),
    })
}

fn draw_relearn<DB: DrawingBackend>(c: &RelearnCurves, root: &Area<DB>) -> Drawn<DB> {
    draw_title(root, &c.title)?;
    let (w, _) = root.dim_in_pixel();
    let ys: Vec<f64> = c.series.iter().flat_map(|(_, _, _, pts)| pts.iter().flat_map(|p| point_extent(p).1)).collect();
    let xr = {
        let s = span(c.xs.iter().copied(), 0.0);
        let pad = ((s.end - s.start) * 0.04).max(0.4);
        (s.start - pad)..(s.end + pad)
    };
    let area = root.margin(TITLE_H, 0, 0, LEGEND_W);
    let mut chart = ChartBuilder::on(&area)
        .margin(8)
        .margin_right(14)
        .x_label_area_size(50)
        .y_label_area_size(78)
        .build_cartesian_2d(xr, span(ys, 0.1))?;
    draw_mesh(&mut chart, "relearning steps (0 = the model before the attack)", &c.y_desc, 0, 8)?;
    let frame = frame_of(&chart);
    let ticks: Vec<(f64, String)> = c.xs.iter().map(|&x| (x, value_text(x))).collect();
    draw_x_ticks(root, &chart, frame, &ticks)?;
    draw_frame(root, frame)?;
    let order = (c.references..c.series.len()).chain(0..c.references.min(c.series.len()));
    for (_, look, dashed, pts) in order.map(|i| &c.series[i]) {
        let centres: Vec<(i32, i32)> = pts.iter().map(|p| chart.backend_coord(&(p.x, p.y))).collect();
        for pair in centres.windows(2) {
            if *dashed {
                let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                let len = (((x1 - x0) as f64).powi(2) + ((y1 - y0) as f64).powi(2)).sqrt().max(1.0);
                let n = (len / 14.0).ceil() as i32;
                for k in 0..n {
                    let (a, b) = (k as f64 / n as f64, ((k as f64 + 0.6) / n as f64).min(1.0));
                    let at = |t: f64| (x0 + ((x1 - x0) as f64 * t) as i32, y0 + ((y1 - y0) as f64 * t) as i32);
                    root.draw(&PathElement::new(vec![at(a), at(b)], look.color.stroke_width(2)))?;
                }
            } else {
                root.draw(&PathElement::new(pair.to_vec(), look.color.stroke_width(2)))?;
            }
        }
        for (p, &at) in pts.iter().zip(&centres) {
            draw_whiskers(root, &chart, p)?;
            draw_mark(root, at, *look, MARK_R)?;
        }
    }
    let entries: Vec<(Swatch, String)> = c
        .series
        .iter()
        .map(|(label, look, dashed, _)| {
            let label = if *dashed { format!("{label}, dashed") } else { label.clone() };
            (Swatch::Mark(*look), label)
        })
        .collect();
    draw_legend(root, w as i32 - LEGEND_W + 6, TITLE_H + 10, LEGEND_W - 10, &entries)
}

#[derive(Clone, Debug)]
struct DotRow {
    label: String,
    look: Look,
    mean: f64,
    interval: Option<(f64, f64)>,
}

#[derive(Clone, Debug)]
struct Dots {
    title: String,
    x_desc: String,
    log: bool,
    /// References first, then methods (top to bottom).
    rows: Vec<DotRow>,
    references: usize,
    oracle: Option<f64>,
    noise_floor: Option<f64>,
}

fn plan_dots(s: &Summary, looks: &Looks, d: &DotMetric) -> Option<Plan> {
    let row = |r: &SummaryRow, look: Look, label: String| {
        r.stats.get(&d.record).map(|st| DotRow { label, look, mean: st.mean, interval: st.interval })
    };
    let refs: Vec<DotRow> = looks.references.iter().filter_map(|&(r, look)| row(r, look, r.label())).collect();
    let methods: Vec<DotRow> =
        looks.methods.iter().filter_map(|(r, look, label)| row(r, *look, label.clone())).collect();
    if methods.is_empty() {
        return None;
    }
    let oracle = find_reference(s, REFERENCE_RETRAIN).and_then(|r| r.stats.get(&d.record)).map(|st| st.mean);
    let noise_floor = oracle.and(s.noise_floor.as_ref().and_then(|nf| nf.values.get(&d.record).copied()));
    let caption = format!(
        "{}: dots are means over world seeds, whiskers 95 % cluster-bootstrap intervals (none where a row has one \
         run){}{}.",
        d.label,
        match (oracle, noise_floor) {
            (Some(_), Some(_)) if d.log => {
                "; the vertical line is the oracle's mean, the grey band the oracle ×/÷ e^(noise floor), the noise \
                 floor being |ln retrain_alt − ln retrain|"
            }
            (Some(_), Some(_)) =>
                "; the vertical line is the oracle's mean, the grey band ± the noise floor |retrain_alt − retrain|",
            (Some(_), None) => "; the vertical line is the oracle's mean",
            _ => "",
        },
        if d.log { "; log scale (values ≤ 0 are listed, not drawn)" } else { "" }
    );
    let chart = Dots {
        title: format!("{} ({})", d.label, s.model),
        x_desc: format!("{}{}{}", d.label, direction_text(s, &d.record), if d.log { ", log scale" } else { "" }),
        log: d.log,
        references: refs.len(),
        rows: refs.into_iter().chain(methods).collect(),
        oracle,
        noise_floor,
    };
    Some(Plan {
        stem: safe(&format!("dots_{}_{}", s.model, d.record)),
        title: chart.title.clone(),
        caption,
        paper: false,
        chart: Chart::Dots(chart),
    })
}

/// ` (↑ better)`, ` (↓ better)`, ` (→ oracle)` from the target the column declares.
fn direction_text(s: &Summary, record: &str) -> String {
    match s.column(record).map(|c| c.target) {
        Some(Target::HigherIsBetter) => " (↑ better)".into(),
        Some(Target::LowerIsBetter) => " (↓ better)".into(),
        Some(Target::TowardOracle) => " (→ oracle)".into(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing, generic over the backend.

type Area<DB> = DrawingArea<DB, Shift>;
type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;
type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Height of the title band.
const TITLE_H: i32 = 40;
/// Width of the legend column right of the plotting area.
const LEGEND_W: i32 = 232;
const MARK_R: i32 = 5;

impl Chart {
    /// The one place each chart is drawn, on any plotters backend (SVG, bitmap).
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> Drawn<DB> {
        root.fill(&WHITE)?;
        match self {
            Chart::Tradeoff(t) => draw_tradeoff(t, root)?,
            Chart::Heat(h) => draw_heat(h, root)?,
            Chart::Curve(c) => draw_curve(c, root)?,
            Chart::Dots(d) => draw_dots(d, root)?,
            Chart::Relearn(r) => draw_relearn(r, root)?,
        }
        root.present()
    }
}

fn render_svg(chart: &Chart) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        chart.draw(&root).map_err(|e| anyhow!("cannot draw the SVG: {e}"))?;
    }
    svg.truncate(svg.trim_end().len());
    Ok(svg)
}

fn font(size: f64) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&INK)
}

fn anchored<'a>(style: TextStyle<'a>, h: HPos, v: VPos) -> TextStyle<'a> {
    style.pos(Pos::new(h, v))
}

/// A pixel box, for keeping labels apart.
#[derive(Clone, Copy, Debug)]
struct Px {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl Px {
    fn around((x, y): (i32, i32), r: i32) -> Px {
        Px { x0: x - r, y0: y - r, x1: x + r, y1: y + r }
    }
    fn overlap_area(&self, o: &Px) -> i64 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0) as i64;
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0) as i64;
        w * h
    }
    fn inside(&self, o: &Px) -> bool {
        self.x0 >= o.x0 && self.x1 <= o.x1 && self.y0 >= o.y0 && self.y1 <= o.y1
    }
}

fn text_size<DB: DrawingBackend>(
    root: &Area<DB>,
    text: &str,
    style: &TextStyle,
) -> Result<(i32, i32), DrawingAreaErrorKind<DB::ErrorType>> {
    let (w, h) = root.estimate_text_size(text, style)?;
    Ok((w as i32, h as i32))
}

fn draw_title<DB: DrawingBackend>(root: &Area<DB>, title: &str) -> Drawn<DB> {
    let (w, _) = root.dim_in_pixel();
    let style = anchored(font(19.0), HPos::Center, VPos::Top);
    root.draw_text(&fit(root, title, &style, w as i32 - 20)?, &style, (w as i32 / 2, 10))
}

/// `text`, shortened with an ellipsis to at most `max_w` pixels.
fn fit<DB: DrawingBackend>(
    root: &Area<DB>,
    text: &str,
    style: &TextStyle,
    max_w: i32,
) -> Result<String, DrawingAreaErrorKind<DB::ErrorType>> {
    if text_size(root, text, style)?.0 <= max_w {
        return Ok(text.to_owned());
    }
    let chars: Vec<char> = text.chars().collect();
    for n in (1..chars.len()).rev() {
        let s: String = chars[..n].iter().collect::<String>() + "…";
        if text_size(root, &s, style)?.0 <= max_w {
            return Ok(s);
        }
    }
    Ok("…".into())
}

/// `text` broken at spaces into lines of at most `max_w` pixels, at most `max_lines` (the last
/// shortened with an ellipsis).
fn wrap<DB: DrawingBackend>(
    root: &Area<DB>,
    text: &str,
    style: &TextStyle,
    max_w: i32,
    max_lines: usize,
) -> Result<Vec<String>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let candidate = if current.is_empty() { word.to_owned() } else { format!("{current} {word}") };
        if current.is_empty() || text_size(root, &candidate, style)?.0 <= max_w {
            current = candidate;
        } else {
            lines.push(std::mem::replace(&mut current, word.to_owned()));
        }
    }
    lines.push(current);
    if lines.len() > max_lines {
        let rest = lines.split_off(max_lines - 1).join(" ");
        lines.push(rest);
    }
    lines.iter().map(|l| fit(root, l, style, max_w)).collect()
}

/// A mark of radius about `r` centred at `c` (pixels).
fn draw_mark<DB: DrawingBackend>(root: &Area<DB>, (x, y): (i32, i32), look: Look, r: i32) -> Drawn<DB> {
    let style = look.color.filled();
    let poly = |pts: Vec<(f64, f64)>| -> Vec<(i32, i32)> {
        pts.into_iter().map(|(dx, dy)| (x + dx.round() as i32, y + dy.round() as i32)).collect()
    };
    let r = r as f64;
    match look.mark {
        Mark::Circle => root.draw(&Circle::new((x, y), r as i32, style)),
        Mark::Square => {
            let h = (r * 0.9).round() as i32;
            root.draw(&Rectangle::new([(x - h, y - h), (x + h, y + h)], style))
        }
        Mark::Triangle => {
            let a = r * 1.25;
            root.draw(&Polygon::new(poly(vec![(0.0, -a), (a * 0.95, a * 0.7), (-a * 0.95, a * 0.7)]), style))
        }
        Mark::Diamond => {
            let a = r * 1.25;
            root.draw(&Polygon::new(poly(vec![(0.0, -a), (a, 0.0), (0.0, a), (-a, 0.0)]), style))
        }
        Mark::Star => {
            let (outer, inner) = (r * 1.75, r * 0.75);
            let pts = (0..10)
                .map(|i| {
                    let rad = if i % 2 == 0 { outer } else { inner };
                    let t = -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::PI / 5.0;
                    (rad * t.cos(), rad * t.sin())
                })
                .collect();
            root.draw(&Polygon::new(poly(pts), style))
        }
        Mark::Cross => {
            // A plus sign turned by 45°.
            let (a, b) = (r * 1.45, r * 0.38);
            let plus = [
                (b, a),
                (b, b),
                (a, b),
                (a, -b),
                (b, -b),
                (b, -a),
                (-b, -a),
                (-b, -b),
                (-a, -b),
                (-a, b),
                (-b, b),
                (-b, a),
            ];
            let s = std::f64::consts::FRAC_1_SQRT_2;
            root.draw(&Polygon::new(poly(plus.iter().map(|&(px, py)| ((px - py) * s, (px + py) * s)).collect()), style))
        }
    }
}

/// The plotting area's pixel box.
fn frame_of<DB: DrawingBackend>(chart: &Chart2d<DB>) -> Px {
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    Px { x0: xs.start, y0: ys.start, x1: xs.end - 1, y1: ys.end - 1 }
}

/// The frame around the plotting area: the one unfilled rectangle of a figure.
fn draw_frame<DB: DrawingBackend>(root: &Area<DB>, f: Px) -> Drawn<DB> {
    root.draw(&Rectangle::new([(f.x0, f.y0), (f.x1, f.y1)], FRAME.stroke_width(1)))
}

/// A line along an axis as a filled rectangle (so that it is not a `<polyline>`).
fn draw_bar<DB: DrawingBackend>(
    root: &Area<DB>,
    a: (i32, i32),
    b: (i32, i32),
    thick: i32,
    color: RGBAColor,
) -> Drawn<DB> {
    let (lo, hi) = (thick / 2, thick - thick / 2);
    let rect = if a.1 == b.1 {
        [(a.0.min(b.0), a.1 - lo), (a.0.max(b.0), a.1 + hi)]
    } else {
        [(a.0 - lo, a.1.min(b.1)), (a.0 + hi, a.1.max(b.1))]
    };
    root.draw(&Rectangle::new(rect, color.filled()))
}

/// A whisker from `a` to `b` (pixels, horizontal or vertical) with end caps; none shorter than
/// two pixels.
fn draw_whisker<DB: DrawingBackend>(root: &Area<DB>, a: (i32, i32), b: (i32, i32), color: RGBColor) -> Drawn<DB> {
    if (a.0 - b.0).abs() + (a.1 - b.1).abs() < 2 {
        return Ok(());
    }
    let style = color.mix(0.9).stroke_width(2);
    root.draw(&PathElement::new(vec![a, b], style))?;
    let cap = 4;
    for p in [a, b] {
        let (c0, c1) =
            if a.1 == b.1 { ((p.0, p.1 - cap), (p.0, p.1 + cap)) } else { ((p.0 - cap, p.1), (p.0 + cap, p.1)) };
        root.draw(&PathElement::new(vec![c0, c1], style))?;
    }
    Ok(())
}

/// The x and y whiskers of `p`, clamped to the axes.
fn draw_whiskers<DB: DrawingBackend>(root: &Area<DB>, chart: &Chart2d<DB>, p: &Point) -> Drawn<DB> {
    let (xr, yr) = (chart.x_range(), chart.y_range());
    let cx = |v: f64| v.clamp(xr.start, xr.end);
    let cy = |v: f64| v.clamp(yr.start, yr.end);
    if let Some((lo, hi)) = p.x_span {
        draw_whisker(root, chart.backend_coord(&(cx(lo), p.y)), chart.backend_coord(&(cx(hi), p.y)), p.look.color)?;
    }
    if let Some((lo, hi)) = p.y_span {
        draw_whisker(root, chart.backend_coord(&(p.x, cy(lo))), chart.backend_coord(&(p.x, cy(hi))), p.look.color)?;
    }
    Ok(())
}

/// The pixel boxes of `p`'s whiskers (clamped like [`draw_whiskers`]), for keeping labels off.
fn whisker_boxes<DB: DrawingBackend>(chart: &Chart2d<DB>, p: &Point) -> Vec<Px> {
    let (xr, yr) = (chart.x_range(), chart.y_range());
    let mut out = Vec::new();
    if let Some((lo, hi)) = p.x_span {
        let (a, b) = (
            chart.backend_coord(&(lo.clamp(xr.start, xr.end), p.y)),
            chart.backend_coord(&(hi.clamp(xr.start, xr.end), p.y)),
        );
        out.push(Px { x0: a.0.min(b.0), y0: a.1 - 4, x1: a.0.max(b.0), y1: a.1 + 4 });
    }
    if let Some((lo, hi)) = p.y_span {
        let (a, b) = (
            chart.backend_coord(&(p.x, lo.clamp(yr.start, yr.end))),
            chart.backend_coord(&(p.x, hi.clamp(yr.start, yr.end))),
        );
        out.push(Px { x0: a.0 - 4, y0: a.1.min(b.1), x1: a.0 + 4, y1: a.1.max(b.1) });
    }
    out
}

/// Writes `text` at the first of `boxes` (top-left corners) inside `frame` that overlaps least
/// with what is `taken` (the first on ties), and records its box.
fn place_text<DB: DrawingBackend>(
    root: &Area<DB>,
    text: &str,
    style: &TextStyle,
    corners: &[(i32, i32)],
    frame: Px,
    taken: &mut Vec<Px>,
) -> Drawn<DB> {
    let (w, h) = text_size(root, text, style)?;
    let inner = Px { x0: frame.x0 + 2, y0: frame.y0 + 2, x1: frame.x1 - 2, y1: frame.y1 - 2 };
    let boxes: Vec<Px> = corners.iter().map(|&(x0, y0)| Px { x0, y0, x1: x0 + w, y1: y0 + h }).collect();
    let clash = |b: &Px| -> i64 { taken.iter().map(|t| b.overlap_area(t)).sum() };
    let chosen = boxes.iter().filter(|b| b.inside(&inner)).min_by_key(|b| clash(b)).copied().unwrap_or(boxes[0]);
    taken.push(chosen);
    root.draw_text(text, &anchored(style.clone(), HPos::Left, VPos::Top), (chosen.x0, chosen.y0))
}

/// A mark's label `gap` pixels from its centre `at`: right, left, above, below, then the
/// diagonals, the one that overlaps least with what is `taken`.
fn place_label<DB: DrawingBackend>(
    root: &Area<DB>,
    text: &str,
    style: &TextStyle,
    at: (i32, i32),
    gap: i32,
    frame: Px,
    taken: &mut Vec<Px>,
) -> Drawn<DB> {
    let (w, h) = text_size(root, text, style)?;
    let (x, y) = at;
    let corners = [
        (x + gap, y - h / 2),
        (x - gap - w, y - h / 2),
        (x - w / 2, y - gap - h),
        (x - w / 2, y + gap),
        (x + gap - 4, y - gap - h + 4),
        (x + gap - 4, y + gap - 4),
        (x - gap - w + 4, y - gap - h + 4),
        (x - gap - w + 4, y + gap - 4),
    ];
    place_text(root, text, style, &corners, frame, taken)
}

/// The label of a horizontal line at pixel height `y`: just above or below it, at the right
/// end, the left end or in between, where it overlaps least with what is `taken`.
fn place_line_label<DB: DrawingBackend>(
    root: &Area<DB>,
    text: &str,
    style: &TextStyle,
    y: i32,
    frame: Px,
    taken: &mut Vec<Px>,
) -> Drawn<DB> {
    let (w, h) = text_size(root, text, style)?;
    let mut xs = vec![frame.x1 - 8 - w, frame.x0 + 8];
    xs.extend((1..8).map(|k| frame.x0 + (frame.x1 - frame.x0 - w) * k / 8));
    let corners: Vec<(i32, i32)> = xs.iter().flat_map(|&x| [(x, y - 4 - h), (x, y + 5)]).collect();
    place_text(root, text, style, &corners, frame, taken)
}

/// What a legend entry shows left of its text.
enum Swatch {
    Mark(Look),
    Line(RGBColor, bool),
    Band,
}

/// The legend: a column starting at (`x0`, `y0`), `width` pixels wide, entries top to bottom
/// (text wrapped to three lines; what does not fit is counted in a last line).
fn draw_legend<DB: DrawingBackend>(
    root: &Area<DB>,
    x0: i32,
    y0: i32,
    width: i32,
    entries: &[(Swatch, String)],
) -> Drawn<DB> {
    let (_, h) = root.dim_in_pixel();
    let style = anchored(font(13.0), HPos::Left, VPos::Top);
    let line_h = 16;
    let text_x = x0 + 26;
    let mut y = y0;
    for (i, (swatch, text)) in entries.iter().enumerate() {
        let lines = wrap(root, text, &style, width - 30, 3)?;
        let need = lines.len() as i32 * line_h;
        if y + need > h as i32 - 24 && i + 1 < entries.len() {
            let more = format!("… and {} more", entries.len() - i);
            return root.draw_text(&more, &style, (text_x, y));
        }
        let mid = (x0 + 10, y + line_h / 2);
        match swatch {
            Swatch::Mark(look) => draw_mark(root, mid, *look, MARK_R)?,
            Swatch::Line(color, dashed) => {
                if *dashed {
                    for k in 0..3 {
                        let x = x0 + k * 8;
                        draw_bar(root, (x, mid.1), (x + 5, mid.1), 2, color.to_rgba())?;
                    }
                } else {
                    draw_bar(root, (x0, mid.1), (x0 + 21, mid.1), 2, color.to_rgba())?;
                }
            }
            Swatch::Band => {
                root.draw(&Rectangle::new([(x0, mid.1 - 6), (x0 + 21, mid.1 + 6)], band_color().filled()))?
            }
        }
        for (k, l) in lines.iter().enumerate() {
            root.draw_text(l, &style, (text_x, y + k as i32 * line_h))?;
        }
        y += need + 7;
    }
    Ok(())
}

fn band_color() -> RGBAColor {
    RGBColor(0, 0, 0).mix(0.1)
}

/// `lo..hi` of the finite values, padded by `pad` of the width each side (a single value: ±10 %
/// of it, or ±0.5 around 0); `0..1` without values.
fn span(values: impl IntoIterator<Item = f64>, pad: f64) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return 0.0..1.0;
    }
    let p = if hi > lo {
        (hi - lo) * pad
    } else if lo == 0.0 {
        0.5
    } else {
        lo.abs() * 0.1
    };
    (lo - p)..(hi + p)
}

/// The noise-floor band around the oracle's value `o`: `o ± nf`, but not below 0 when no value
/// shown is negative (a distance, an accuracy).
fn noise_band(o: f64, nf: f64, values: &[f64]) -> (f64, f64) {
    let non_negative = o >= 0.0 && values.iter().all(|v| !v.is_finite() || *v >= 0.0);
    (if non_negative { (o - nf).max(0.0) } else { o - nf }, o + nf)
}

fn point_extent(p: &Point) -> (Vec<f64>, Vec<f64>) {
    let mut xs = vec![p.x];
    let mut ys = vec![p.y];
    xs.extend(p.x_span.into_iter().flat_map(|(a, b)| [a, b]));
    ys.extend(p.y_span.into_iter().flat_map(|(a, b)| [a, b]));
    (xs, ys)
}

/// A number on an axis: integers without a decimal point, else at most 3 significant digits
/// (`1e-8`, `2.5e-6` below 0.001 or from 10 000).
fn tick_text(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if (1e-3..1e4).contains(&a) {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{x:.decimals$}");
        return if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s };
    }
    let e = a.log10().floor();
    let m = x / 10f64.powf(e);
    if (m - m.round()).abs() < 1e-6 {
        format!("{}e{}", m.round(), e)
    } else {
        format!("{m:.1}e{e}")
    }
}

/// A grid parameter's value as in cell keys: `0.25`, `1`.
fn value_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// A round step near `raw`: 1, 2 or 5 times a power of ten.
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|s| *s >= raw).unwrap_or(10.0 * p)
}

/// Ticks (positions on the axis, labels) of a log10 axis over `r` (in log10): 1-2-5 in each
/// decade for up to about two decades, powers of ten beyond (every k-th for many decades), and
/// round linear values for less than a fifth of a decade.
fn log_ticks(r: &Range<f64>) -> Vec<(f64, String)> {
    let decades = r.end - r.start;
    let mults: &[f64] = if decades <= 1.2 {
        &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0]
    } else if decades <= 2.5 {
        &[1.0, 2.0, 5.0]
    } else if decades <= 4.0 {
        &[1.0, 3.0]
    } else {
        &[1.0]
    };
    let every = if decades > 8.0 { (decades / 6.0).ceil() as i64 } else { 1 };
    let mut out = Vec::new();
    for e in r.start.floor() as i64..=r.end.ceil() as i64 {
        if e.rem_euclid(every) != 0 {
            continue;
        }
        for m in mults {
            let v = e as f64 + m.log10();
            if v >= r.start && v <= r.end {
                out.push((v, tick_text(10f64.powf(v))));
            }
        }
    }
    if out.len() < 3 {
        let (lo, hi) = (10f64.powf(r.start), 10f64.powf(r.end));
        let step = nice_step((hi - lo) / 5.0);
        out = (((lo / step).ceil() as i64)..=((hi / step).floor() as i64))
            .map(|k| k as f64 * step)
            .filter(|x| *x > 0.0)
            .map(|x| (x.log10(), tick_text(x)))
            .collect();
    }
    out
}

/// Our own ticks on the x axis (grid line, tick mark, label below the frame).
fn draw_x_ticks<DB: DrawingBackend>(
    root: &Area<DB>,
    chart: &Chart2d<DB>,
    frame: Px,
    ticks: &[(f64, String)],
) -> Drawn<DB> {
    let style = anchored(font(13.0), HPos::Center, VPos::Top);
    let y = chart.y_range().start;
    for (v, text) in ticks {
        let (px, _) = chart.backend_coord(&(*v, y));
        draw_bar(root, (px, frame.y0), (px, frame.y1), 1, GRID.to_rgba())?;
        draw_bar(root, (px, frame.y1), (px, frame.y1 + 5), 1, FRAME.to_rgba())?;
        root.draw_text(text, &style, (px, frame.y1 + 8))?;
    }
    Ok(())
}

/// Our own ticks on the y axis (grid line, tick mark, label left of the frame).
fn draw_y_ticks<DB: DrawingBackend>(
    root: &Area<DB>,
    chart: &Chart2d<DB>,
    frame: Px,
    ticks: &[(f64, String)],
) -> Drawn<DB> {
    let style = anchored(font(13.0), HPos::Right, VPos::Center);
    let x = chart.x_range().start;
    for (v, text) in ticks {
        let (_, py) = chart.backend_coord(&(x, *v));
        draw_bar(root, (frame.x0, py), (frame.x1, py), 1, GRID.to_rgba())?;
        draw_bar(root, (frame.x0 - 5, py), (frame.x0, py), 1, FRAME.to_rgba())?;
        root.draw_text(text, &style, (frame.x0 - 8, py))?;
    }
    Ok(())
}

/// The mesh: light grid at the labelled ticks, tick labels 13 px, axis descriptions 15 px; an
/// axis with 0 labels gets neither (the caller draws its own ticks).
fn draw_mesh<DB: DrawingBackend>(
    chart: &mut Chart2d<DB>,
    x_desc: &str,
    y_desc: &str,
    x_labels: usize,
    y_labels: usize,
) -> Drawn<DB> {
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style(font(15.0))
        .label_style(font(13.0))
        .bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .axis_style(FRAME)
        .x_labels(x_labels)
        .y_labels(y_labels);
    if x_labels == 0 {
        mesh.disable_x_mesh();
    }
    if y_labels == 0 {
        mesh.disable_y_mesh();
    }
    let fmt = |v: &f64| tick_text(*v);
    mesh.x_label_formatter(&fmt).y_label_formatter(&fmt);
    mesh.draw()
}

fn draw_tradeoff<DB: DrawingBackend>(t: &Tradeoff, root: &Area<DB>) -> Drawn<DB> {
    draw_title(root, &t.title)?;
    let (w, _) = root.dim_in_pixel();
    let points: Vec<&Point> = t.methods.iter().map(|(_, p)| p).chain(t.references.iter().map(|(_, _, p)| p)).collect();
    let (xs, ys): (Vec<Vec<f64>>, Vec<Vec<f64>>) = points.iter().map(|p| point_extent(p)).unzip();
    let (xr, yr) = (span(xs.into_iter().flatten(), 0.08), span(ys.into_iter().flatten(), 0.1));
    let area = root.margin(TITLE_H, 0, 0, LEGEND_W);
    let mut chart = ChartBuilder::on(&area)
        .margin(8)
        .margin_right(14)
        .x_label_area_size(50)
        .y_label_area_size(78)
        .build_cartesian_2d(xr, yr)?;
    let y_desc = if t.y_log { "forget quality (KS p-value, log scale) ↑" } else { "forget quality (KS p-value) ↑" };
    draw_mesh(&mut chart, "model utility ↑", y_desc, 8, if t.y_log { 0 } else { 8 })?;
    let frame = frame_of(&chart);
    if t.y_log {
        draw_y_ticks(root, &chart, frame, &log_ticks(&chart.y_range()))?;
    }
    draw_frame(root, frame)?;
    let mut taken: Vec<Px> = Vec::new();
    for p in &points {
        draw_whiskers(root, &chart, p)?;
        taken.extend(whisker_boxes(&chart, p));
    }
    for (_, p) in &t.methods {
        let c = chart.backend_coord(&(p.x, p.y));
        draw_mark(root, c, p.look, MARK_R)?;
        taken.push(Px::around(c, MARK_R + 2));
    }
    // References on top, larger, each with its tag.
    let centres: Vec<(i32, i32)> = t.references.iter().map(|(_, _, p)| chart.backend_coord(&(p.x, p.y))).collect();
    for ((_, _, p), &c) in t.references.iter().zip(&centres) {
        draw_mark(root, c, p.look, MARK_R + 2)?;
        taken.push(Px::around(c, MARK_R + 7));
    }
    let tag_style = font(14.0);
    for ((_, tag, p), &c) in t.references.iter().zip(&centres) {
        place_label(root, tag, &tag_style.color(&p.look.color), c, MARK_R + 9, frame, &mut taken)?;
    }
    let entries: Vec<(Swatch, String)> = t
        .methods
        .iter()
        .map(|(label, p)| (Swatch::Mark(p.look), label.clone()))
        .chain(t.references.iter().map(|(label, _, p)| (Swatch::Mark(p.look), label.clone())))
        .collect();
    draw_legend(root, w as i32 - LEGEND_W + 6, TITLE_H + 10, LEGEND_W - 10, &entries)
}

/// A perceptually ordered colour map (viridis, five stops), `t` in 0..=1.
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] =
        [(253.0, 231.0, 37.0), (94.0, 201.0, 98.0), (33.0, 145.0, 140.0), (59.0, 82.0, 139.0), (68.0, 1.0, 84.0)];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + (y - x) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn draw_heat<DB: DrawingBackend>(h: &Heat, root: &Area<DB>) -> Drawn<DB> {
    draw_title(root, &h.title)?;
    let (w, hgt) = root.dim_in_pixel();
    let (w, hgt) = (w as i32, hgt as i32);
    let sub = anchored(font(13.0).color(&RGBColor(80, 80, 80)), HPos::Center, VPos::Top);
    root.draw_text(&fit(root, &h.subtitle, &sub, w - 40)?, &sub, (w / 2, TITLE_H - 6))?;
    let bar_w = 150;
    let grid = Px { x0: 92, y0: TITLE_H + 26, x1: w - bar_w - 24, y1: hgt - 62 };
    let (na, nb) = (h.alphas.len() as i32, h.betas.len() as i32);
    let (cw, ch) = ((grid.x1 - grid.x0) / na, (grid.y1 - grid.y0) / nb);
    let grid = Px { x1: grid.x0 + cw * na, y1: grid.y0 + ch * nb, ..grid };
    let values: Vec<f64> = h.cells.iter().flatten().flatten().copied().filter(|v| v.is_finite()).collect();
    let (vmin, vmax) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let t_of = |v: f64| {
        if vmax > vmin {
            (v - vmin) / (vmax - vmin)
        } else {
            0.5
        }
    };
    let best = values.iter().copied().fold(f64::INFINITY, f64::min);
    let value_style = anchored(font(14.0), HPos::Center, VPos::Center);
    let tick_style = font(13.0);
    let mut best_box = None;
    for (b, row) in h.cells.iter().enumerate() {
        // Largest β at the top.
        let y0 = grid.y1 - (b as i32 + 1) * ch;
        for (a, cell) in row.iter().enumerate() {
            let x0 = grid.x0 + a as i32 * cw;
            let bx = Px { x0, y0, x1: x0 + cw, y1: y0 + ch };
            let centre = (x0 + cw / 2, y0 + ch / 2);
            match cell {
                Some(v) if v.is_finite() => {
                    let c = viridis(t_of(*v));
                    root.draw(&Rectangle::new([(bx.x0, bx.y0), (bx.x1, bx.y1)], c.filled()))?;
                    let luminance = 0.299 * c.0 as f64 + 0.587 * c.1 as f64 + 0.114 * c.2 as f64;
                    let ink = if luminance < 140.0 { WHITE } else { INK };
                    root.draw_text(&fmt_num(*v), &value_style.color(&ink), centre)?;
                    if *v == best && best_box.is_none() {
                        best_box = Some(bx);
                    }
                }
                _ => {
                    root.draw(&Rectangle::new([(bx.x0, bx.y0), (bx.x1, bx.y1)], RGBColor(240, 240, 240).filled()))?;
                    root.draw_text("no data", &value_style.color(&GREY), centre)?;
                }
            }
        }
    }
    // Cell borders in white, then the closest cell outlined.
    for a in 1..na {
        draw_bar(root, (grid.x0 + a * cw, grid.y0), (grid.x0 + a * cw, grid.y1), 2, WHITE.to_rgba())?;
    }
    for b in 1..nb {
        draw_bar(root, (grid.x0, grid.y0 + b * ch), (grid.x1, grid.y0 + b * ch), 2, WHITE.to_rgba())?;
    }
    if let Some(bx) = best_box {
        for k in 0..3 {
            root.draw(&Rectangle::new([(bx.x0 + k, bx.y0 + k), (bx.x1 - k, bx.y1 - k)], INK.stroke_width(1)))?;
        }
    }
    // Axis ticks and descriptions.
    let below = anchored(tick_style.clone(), HPos::Center, VPos::Top);
    for (a, v) in h.alphas.iter().enumerate() {
        root.draw_text(&value_text(*v), &below, (grid.x0 + a as i32 * cw + cw / 2, grid.y1 + 6))?;
    }
    let left = anchored(tick_style.clone(), HPos::Right, VPos::Center);
    for (b, v) in h.betas.iter().enumerate() {
        root.draw_text(&value_text(*v), &left, (grid.x0 - 8, grid.y1 - b as i32 * ch - ch / 2))?;
    }
    let desc = font(15.0);
    root.draw_text(
        "α (alpha)",
        &anchored(desc.clone(), HPos::Center, VPos::Top),
        ((grid.x0 + grid.x1) / 2, grid.y1 + 28),
    )?;
    let rotated = anchored(desc.transform(FontTransform::Rotate270), HPos::Center, VPos::Top);
    root.draw_text("β (beta)", &rotated, (24, (grid.y0 + grid.y1) / 2))?;
    // Colour bar: far (dark) at the top, close (light) at the bottom.
    let bar = Px { x0: w - bar_w, y0: grid.y0 + 34, x1: w - bar_w + 20, y1: grid.y1 };
    let head = anchored(font(13.0), HPos::Left, VPos::Top);
    for (k, l) in wrap(root, &h.value_desc, &head, bar_w - 8, 2)?.iter().enumerate() {
        root.draw_text(l, &head, (bar.x0 - 6, grid.y0 + k as i32 * 16))?;
    }
    let steps = 60;
    for i in 0..steps {
        let y0 = bar.y1 - (bar.y1 - bar.y0) * (i + 1) / steps;
        let y1 = bar.y1 - (bar.y1 - bar.y0) * i / steps;
        root.draw(&Rectangle::new([(bar.x0, y0), (bar.x1, y1)], viridis(i as f64 / (steps - 1) as f64).filled()))?;
    }
    let y_of = |v: f64| bar.y1 - ((bar.y1 - bar.y0) as f64 * t_of(v)).round() as i32;
    let right = anchored(tick_style, HPos::Left, VPos::Center);
    let ticks: Vec<f64> =
        if vmax > vmin { (0..5).map(|i| vmin + (vmax - vmin) * i as f64 / 4.0).collect() } else { vec![vmin] };
    for v in ticks {
        let y = y_of(v);
        draw_bar(root, (bar.x1, y), (bar.x1 + 4, y), 1, INK.to_rgba())?;
        root.draw_text(&fmt_num(v), &right, (bar.x1 + 7, y))?;
    }
    if let Some(nf) = h.noise_floor {
        let note = anchored(font(12.0), HPos::Left, VPos::Top);
        if nf >= vmin && nf <= vmax && vmax > vmin {
            let y = y_of(nf);
            draw_bar(root, (bar.x0 - 4, y), (bar.x1 + 4, y), 2, RGBColor(220, 0, 0).to_rgba())?;
            root.draw_text(
                "noise floor",
                &anchored(font(12.0).color(&RGBColor(200, 0, 0)), HPos::Right, VPos::Center),
                (bar.x0 - 6, y),
            )?;
        } else {
            root.draw_text(&format!("noise floor {}", fmt_num(nf)), &note, (bar.x0 - 6, bar.y1 + 8))?;
        }
    }
    Ok(())
}

fn draw_curve<DB: DrawingBackend>(c: &Curve, root: &Area<DB>) -> Drawn<DB> {
    draw_title(root, &c.title)?;
    let (w, _) = root.dim_in_pixel();
    let mut ys: Vec<f64> = c.points.iter().flat_map(|p| point_extent(p).1).collect();
    ys.extend(c.final_value);
    ys.extend(c.oracle);
    let band = c.oracle.zip(c.noise_floor).map(|(o, nf)| noise_band(o, nf, &ys));
    ys.extend(band.iter().flat_map(|b| [b.0, b.1]));
    let xr = {
        let s = span(c.xs.iter().copied(), 0.0);
        (s.start - 0.4)..(s.end + 0.4)
    };
    let area = root.margin(TITLE_H, 0, 0, LEGEND_W);
    let mut chart = ChartBuilder::on(&area)
        .margin(8)
        .margin_right(14)
        .x_label_area_size(50)
        .y_label_area_size(78)
        .build_cartesian_2d(xr, span(ys, 0.1))?;
    draw_mesh(&mut chart, "checkpoints before exposure (MSA's θ_0; 0 = latest clean)", &c.y_desc, 0, 8)?;
    let frame = frame_of(&chart);
    let ticks: Vec<(f64, String)> = c.xs.iter().map(|&x| (x, value_text(x))).collect();
    draw_x_ticks(root, &chart, frame, &ticks)?;
    let y_px = |v: f64| chart.backend_coord(&(chart.x_range().start, v)).1;
    let mut taken: Vec<Px> = Vec::new();
    if let Some((lo, hi)) = band {
        let yr = chart.y_range();
        let (a, b) = (y_px(hi.min(yr.end)), y_px(lo.max(yr.start)));
        root.draw(&Rectangle::new([(frame.x0 + 1, a), (frame.x1 - 1, b)], band_color().filled()))?;
    }
    if let Some(f) = c.final_value {
        let y = y_px(f);
        let mut x = frame.x0 + 1;
        while x < frame.x1 {
            draw_bar(root, (x, y), ((x + 8).min(frame.x1 - 1), y), 2, GREY.to_rgba())?;
            x += 14;
        }
        taken.push(Px { x0: frame.x0, y0: y - 2, x1: frame.x1, y1: y + 2 });
    }
    if let Some(o) = c.oracle {
        let y = y_px(o);
        draw_bar(root, (frame.x0 + 1, y), (frame.x1 - 1, y), 2, INK.to_rgba())?;
        taken.push(Px { x0: frame.x0, y0: y - 2, x1: frame.x1, y1: y + 2 });
    }
    draw_frame(root, frame)?;
    let centres: Vec<(i32, i32)> = c.points.iter().map(|p| chart.backend_coord(&(p.x, p.y))).collect();
    root.draw(&PathElement::new(centres.clone(), c.points[0].look.color.stroke_width(2)))?;
    for (p, &at) in c.points.iter().zip(&centres) {
        draw_whiskers(root, &chart, p)?;
        taken.extend(whisker_boxes(&chart, p));
        draw_mark(root, at, p.look, MARK_R)?;
        taken.push(Px::around(at, MARK_R + 3));
    }
    // The line between the marks, as small boxes, so that labels avoid it.
    for pair in centres.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        for k in 0..=16 {
            taken.push(Px::around((x0 + (x1 - x0) * k / 16, y0 + (y1 - y0) * k / 16), 3));
        }
    }
    let label = font(13.0);
    if let Some(o) = c.oracle {
        place_line_label(root, &format!("oracle {}", fmt_num(o)), &label, y_px(o), frame, &mut taken)?;
    }
    if let Some(f) = c.final_value {
        place_line_label(
            root,
            &format!("θ_D {}", fmt_num(f)),
            &label.color(&RGBColor(70, 70, 70)),
            y_px(f),
            frame,
            &mut taken,
        )?;
    }
    let mut entries = vec![(Swatch::Mark(c.points[0].look), c.series.clone())];
    if c.oracle.is_some() {
        entries.push((Swatch::Line(INK, false), "oracle (retrain)".to_owned()));
    }
    if c.noise_floor.is_some() {
        entries.push((Swatch::Band, "oracle ± noise floor".to_owned()));
    }
    if c.final_value.is_some() {
        entries.push((Swatch::Line(GREY, true), "θ_D (final)".to_owned()));
    }
    draw_legend(root, w as i32 - LEGEND_W + 6, TITLE_H + 10, LEGEND_W - 10, &entries)
}

/// The dot plot's left column (row labels) is as wide as its longest label within these
/// bounds; the right column (values) is fixed.
const ROW_LABEL_W: Range<i32> = 110..280;
const VALUE_W: i32 = 84;

fn draw_dots<DB: DrawingBackend>(d: &Dots, root: &Area<DB>) -> Drawn<DB> {
    draw_title(root, &d.title)?;
    let fx = |v: f64| {
        if !d.log {
            v
        } else if v > 0.0 {
            v.log10()
        } else {
            f64::NEG_INFINITY
        }
    };
    let mut values: Vec<f64> = d
        .rows
        .iter()
        .flat_map(|r| [Some(r.mean), r.interval.map(|i| i.0), r.interval.map(|i| i.1)])
        .flatten()
        .collect();
    values.extend(d.oracle);
    // on a log scale the noise floor is a distance of logarithms: the band is o ×/÷ e^nf
    let band = d.oracle.zip(d.noise_floor).map(|(o, nf)| {
        if d.log {
            (o * (-nf).exp(), o * nf.exp())
        } else {
            noise_band(o, nf, &values)
        }
    });
    values.extend(band.iter().flat_map(|b| [b.0, b.1]));
    let xs: Vec<f64> = values.into_iter().map(fx).collect();
    let n = d.rows.len();
    let label_style = anchored(font(13.0), HPos::Right, VPos::Center);
    let mut label_w = ROW_LABEL_W.start;
    for r in &d.rows {
        label_w = label_w.max(text_size(root, &r.label, &label_style)?.0 + 24);
    }
    let label_w = label_w.min(ROW_LABEL_W.end);
    let area = root.margin(TITLE_H + 22, 0, label_w, VALUE_W);
    let mut chart = ChartBuilder::on(&area)
        .margin(6)
        .x_label_area_size(50)
        .y_label_area_size(0)
        .build_cartesian_2d(span(xs, 0.06), -0.6..(n as f64 - 0.4))?;
    draw_mesh(&mut chart, &d.x_desc, "", if d.log { 0 } else { 8 }, 0)?;
    let frame = frame_of(&chart);
    if d.log {
        draw_x_ticks(root, &chart, frame, &log_ticks(&chart.x_range()))?;
    }
    let xr = chart.x_range();
    let x_px = |v: f64| chart.backend_coord(&(v.clamp(xr.start, xr.end), 0.0)).0;
    // Row i from the top sits at y = n − 1 − i.
    let y_px = |i: usize| chart.backend_coord(&(xr.start, (n - 1 - i) as f64)).1;
    if let Some(o) = d.oracle {
        if let Some((lo, hi)) = band {
            let (a, b) = (x_px(fx(lo).max(xr.start)), x_px(fx(hi)));
            root.draw(&Rectangle::new([(a, frame.y0 + 1), (b, frame.y1 - 1)], band_color().filled()))?;
        }
        if fx(o).is_finite() {
            let x = x_px(fx(o));
            draw_bar(root, (x, frame.y0), (x, frame.y1), 2, INK.to_rgba())?;
        }
        let text = match d.noise_floor {
            Some(nf) if d.log => format!("oracle {} ×/÷ {} (noise floor)", fmt_num(o), fmt_num(nf.exp())),
            Some(nf) => format!("oracle {} ± {} (noise floor)", fmt_num(o), fmt_num(nf)),
            None => format!("oracle {}", fmt_num(o)),
        };
        let style = font(13.0);
        let (tw, _) = text_size(root, &text, &style)?;
        let cx = if fx(o).is_finite() { x_px(fx(o)) } else { frame.x0 };
        let x0 = (cx - tw / 2).clamp(frame.x0, (frame.x1 - tw).max(frame.x0));
        root.draw_text(&text, &anchored(style, HPos::Left, VPos::Bottom), (x0, frame.y0 - 5))?;
    }
    if d.references > 0 && d.references < n {
        let y = (y_px(d.references - 1) + y_px(d.references)) / 2;
        draw_bar(root, (frame.x0 + 1, y), (frame.x1 - 1, y), 1, RGBColor(190, 190, 190).to_rgba())?;
    }
    draw_frame(root, frame)?;
    let value_style = anchored(font(13.0), HPos::Left, VPos::Center);
    for (i, r) in d.rows.iter().enumerate() {
        let y = y_px(i);
        root.draw_text(&fit(root, &r.label, &label_style, label_w - 16)?, &label_style, (frame.x0 - 8, y))?;
        let shown = fx(r.mean).is_finite();
        let value = if shown { fmt_num(r.mean) } else { format!("{} (≤ 0)", fmt_num(r.mean)) };
        root.draw_text(&value, &value_style, (frame.x1 + 8, y))?;
        if let Some((lo, hi)) = r.interval {
            let (lo, hi) = (fx(lo), fx(hi));
            if hi.is_finite() {
                draw_whisker(root, (x_px(lo.max(xr.start)), y), (x_px(hi), y), r.look.color)?;
            }
        }
        if shown {
            let big = if r.look.mark == Mark::Star || r.look.mark == Mark::Cross { 2 } else { 0 };
            draw_mark(root, (x_px(fx(r.mean)), y), r.look, MARK_R + big)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Font and PNG.

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

// ---------------------------------------------------------------------------------------------
// Transitional: today's lib.rs still writes the old per-metric plots. Delete this module and its
// `pub use` once lib.rs calls [`figures`] and [`write_png_of`].
