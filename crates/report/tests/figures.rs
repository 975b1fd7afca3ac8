//! The report's figures (`plots::figures`) on summaries built by hand: which figures come out,
//! that each SVG is self-contained and well formed, where the legend and the reference labels
//! are, whiskers exactly where intervals are, at most eight figures, and the PNG writer.
//!
//! Set `REPORT_FIGURES_DIR` to keep the PNGs of the realistic summary there (to look at them).

use std::collections::BTreeMap;
use std::path::Path;

use report::aggregate::Basis;
use report::plots::{figures, write_png_of, DotMetric, Figure, MAX_FIGURES, SIZE};
use report::results::{Scale, Target};
use report::tables::{Column, Gate, NoiseFloor, Stat, Summary, SummaryRow};
use serde_json::{json, Value};

type Interval = Option<(f64, f64)>;

fn stat(mean: f64, interval: Interval) -> Stat {
    Stat {
        mean,
        std: None,
        n: 6,
        worlds: 3,
        interval,
        basis: Basis::Examples,
        best: false,
        world_means: BTreeMap::from([(0, mean)]),
        distance: None,
        within_floor: false,
    }
}

fn row(method: &str, kind: &str, params: &[(&str, Value)], stats: &[(&str, f64, Interval)]) -> SummaryRow {
    SummaryRow {
        method: method.into(),
        kind: kind.into(),
        params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        is_reference: matches!(method, "final" | "retrain" | "retrain_alt"),
        runs: 6,
        worlds: 3,
        stats: stats.iter().map(|&(m, mean, i)| (m.to_owned(), stat(mean, i))).collect(),
        gate: Gate::NotMeasured,
        headline: false,
        unlearn_seconds: None,
        trained_tokens: None,
        cached_finetunes: false,
    }
}

fn col(record: &str, target: Target) -> Column {
    let scale = if record.starts_with("perplexity") { Scale::Log } else { Scale::Linear };
    Column { record: record.into(), target, scale, label: record.into() }
}

const MU: &str = "tofu_model_utility";
const FQ: &str = "tofu_forget_quality";
const MC: &str = "mc_accuracy/forget";
const KL: &str = "kl_to_oracle/forget";
const PPL: &str = "perplexity/forget";

fn around(v: f64, w: f64) -> Interval {
    Some((v - w, v + w))
}

/// Metrics in the order `MU, FQ, MC, KL, PPL` with intervals of half-width `w`·value where
/// `w > 0`, none otherwise.
fn five(mu: f64, fq: f64, mc: f64, kl: f64, ppl: f64, w: f64) -> Vec<(&'static str, f64, Interval)> {
    let i = |v: f64| {
        if w > 0.0 {
            around(v, (v * w).max(0.005))
        } else {
            None
        }
    };
    let fq_i = if w > 0.0 { Some((fq * 0.2, (fq * 3.0).min(1.0))) } else { None };
    vec![(MU, mu, i(mu)), (FQ, fq, fq_i), (MC, mc, i(mc)), (KL, kl, i(kl)), (PPL, ppl, i(ppl))]
}

fn msa_params(alpha: f64, beta: f64, checkpoint: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("alpha", json!(alpha)),
        ("beta", json!(beta)),
        ("checkpoint", json!(checkpoint)),
        ("epochs", json!(5)),
        ("lr", json!(0.001)),
    ]
}

/// A model like the study's `tiny`: the three references, six methods, MSA over five checkpoint
/// distances (α = β = 0.5) and over a 3 × 3 α × β grid at distance 0. Interval half-widths are
/// `w` of the value (0: no intervals at all); gradient ascent has one run (no interval) anyway.
fn study_like(model: &str, w: f64) -> Summary {
    let mut rows = vec![
        row("final", "reference", &[], &five(0.654, 1.42e-8, 0.992, 1.432, 1.282, w)),
        row("retrain", "reference", &[], &five(0.670, 1.0, 0.196, 0.0, 11.951, w)),
        row("retrain_alt", "reference", &[], &five(0.647, 0.927, 0.246, 0.702, 15.845, w)),
        row(
            "gradient_ascent",
            "gradient_ascent",
            &[("epochs", json!(1)), ("lr", json!(0.0003))],
            &five(0.544, 1.35e-5, 0.575, 1.537, 5.471, 0.0),
        ),
        row(
            "gradient_difference",
            "gradient_difference",
            &[("epochs", json!(2)), ("lambda", json!(1)), ("lr", json!(0.0001)), ("retain_loss", json!("nll"))],
            &five(0.633, 1.74e-7, 0.896, 1.177, 1.746, w),
        ),
        row("npo", "npo", &[("beta", json!(0.5))], &five(0.626, 3.26e-4, 0.463, 0.987, 4.610, w)),
        row("rmu", "rmu", &[("alpha", json!(10))], &five(0.630, 0.004, 0.600, 1.014, 5.517, w)),
        row("simnpo", "simnpo", &[("beta", json!(2.5))], &five(0.624, 0.006, 0.358, 1.638, 17.447, w)),
        row("task_negation", "task_negation", &[("alpha", json!(0.5))], &five(0.549, 4.54e-5, 0.769, 1.235, 2.852, w)),
    ];
    let by_distance = [
        (0.634, 1.71e-7, 0.923),
        (0.620, 3.79e-8, 0.977),
        (0.638, 3.15e-7, 0.979),
        (0.640, 1.24e-7, 0.987),
        (0.646, 3.79e-8, 0.985),
    ];
    for (k, &(mu, fq, mc)) in by_distance.iter().enumerate() {
        let p = msa_params(0.5, 0.5, &format!("distance:{k}"));
        rows.push(row("msa", "msa", &p, &five(mu, fq, mc, 0.8 + 0.15 * k as f64, 2.0 - 0.15 * k as f64, w)));
    }
    for (a, alpha) in [0.25, 0.5, 1.0].into_iter().enumerate() {
        for (b, beta) in [0.0, 0.5, 1.0].into_iter().enumerate() {
            if (alpha, beta) == (0.5, 0.5) {
                continue;
            }
            let mc = 0.95 - 0.22 * a as f64 - 0.08 * b as f64;
            let p = msa_params(alpha, beta, "distance:0");
            rows.push(row("msa", "msa", &p, &five(0.64 - 0.03 * a as f64, 1e-7, mc, 0.9 - 0.1 * a as f64, 2.0, w)));
        }
    }
    let columns = vec![
        col(MU, Target::HigherIsBetter),
        col(FQ, Target::HigherIsBetter),
        col(MC, Target::TowardOracle),
        col(KL, Target::TowardOracle),
        col(PPL, Target::TowardOracle),
    ];
    let noise = BTreeMap::from([
        (MC.to_owned(), 0.058),
        (KL.to_owned(), 0.702),
        (PPL.to_owned(), 4.148),
        (MU.to_owned(), 0.04),
    ]);
    Summary {
        model: model.into(),
        columns,
        rows,
        noise_floor: Some(NoiseFloor { worlds: 3, values: noise }),
        notes: vec![],
    }
}

/// Every non-MSA method, and MSA at α = β = 0.5 from the latest clean checkpoint.
fn headline(r: &SummaryRow) -> bool {
    r.method != "msa"
        || (r.params.get("checkpoint") == Some(&json!("distance:0"))
            && r.params.get("alpha") == Some(&json!(0.5))
            && r.params.get("beta") == Some(&json!(0.5)))
}

fn dots() -> Vec<DotMetric> {
    vec![
        DotMetric { record: MC.into(), label: "MC accuracy on the forget set".into(), log: false },
        DotMetric { record: PPL.into(), label: "perplexity on the forget set".into(), log: true },
    ]
}

fn by_stem<'a>(figs: &'a [Figure], stem: &str) -> &'a Figure {
    figs.iter().find(|f| f.stem == stem).unwrap_or_else(|| panic!("no figure {stem}"))
}

// A small reader of the SVGs plotters writes: one element per line, attributes in double quotes.

/// The elements `<tag …>` of `svg`: their attributes and, for `<text>`, the text (unescaped).
fn elements(svg: &str, tag: &str) -> Vec<(BTreeMap<String, String>, String)> {
    let open = format!("<{tag} ");
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i + open.len()..];
        let end = rest.find('>').unwrap();
        let mut attrs = BTreeMap::new();
        let mut a = rest[..end].trim_end_matches('/');
        while let Some(eq) = a.find("=\"") {
            let key = a[..eq].trim().to_owned();
            let close = a[eq + 2..].find('"').unwrap();
            attrs.insert(key, a[eq + 2..eq + 2 + close].to_owned());
            a = &a[eq + 2 + close + 1..];
        }
        let text = if tag == "text" {
            let body = &rest[end + 1..];
            unescape(body[..body.find("</text>").unwrap()].trim())
        } else {
            String::new()
        };
        out.push((attrs, text));
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

fn num(attrs: &BTreeMap<String, String>, key: &str) -> f64 {
    attrs[key].parse().unwrap_or_else(|_| panic!("{key}={} is not a number", attrs[key]))
}

/// Texts as (x, y, text).
fn texts(svg: &str) -> Vec<(f64, f64, String)> {
    elements(svg, "text").into_iter().map(|(a, t)| (num(&a, "x"), num(&a, "y"), t)).collect()
}

/// The plotting area: the largest unfilled rectangle, as (x0, y0, x1, y1).
fn frame(svg: &str) -> (f64, f64, f64, f64) {
    elements(svg, "rect")
        .into_iter()
        .filter(|(a, _)| a["fill"] == "none")
        .map(|(a, _)| {
            let (x, y) = (num(&a, "x"), num(&a, "y"));
            (x, y, x + num(&a, "width"), y + num(&a, "height"))
        })
        .max_by(|a, b| ((a.2 - a.0) * (a.3 - a.1)).total_cmp(&((b.2 - b.0) * (b.3 - b.1))))
        .expect("a frame around the plotting area")
}

/// Two-point polylines strictly inside the plotting area: the whiskers (axes and tick marks
/// are on or outside the frame; reference lines and bands are rectangles).
fn whisker_lines(svg: &str) -> usize {
    let (x0, y0, x1, y1) = frame(svg);
    elements(svg, "polyline")
        .into_iter()
        .filter(|(a, _)| {
            let pts: Vec<(f64, f64)> = a["points"]
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect();
            pts.len() == 2 && pts.iter().all(|&(x, y)| x > x0 && x < x1 && y > y0 && y < y1)
        })
        .count()
}

/// Starts with `<svg`, ends with `</svg>`, tags balanced, nothing external, fonts by family
/// `sans-serif` only.
#[track_caller]
fn check_svg(f: &Figure) {
    let svg = &f.svg;
    assert!(svg.starts_with("<svg "), "{}: {}", f.stem, &svg[..40.min(svg.len())]);
    assert!(svg.ends_with("</svg>"), "{}", f.stem);
    assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
    for bad in ["<?xml", "<!DOCTYPE", "href=", "url(", "<image", "<script", "@import", "<style"] {
        assert!(!svg.contains(bad), "{}: contains {bad}", f.stem);
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg.as_str();
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').unwrap_or_else(|| panic!("{}: unclosed tag", f.stem));
        let tag = &rest[..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "{}: unbalanced </{name}>", f.stem);
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap());
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "{}: unclosed {stack:?}", f.stem);
    for (a, _) in elements(svg, "text") {
        assert_eq!(a["font-family"], "sans-serif", "{}", f.stem);
    }
    assert!(!f.title.is_empty() && f.caption.len() > 40, "{}: {:?}", f.stem, f.caption);
    assert!(f.stem.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{}", f.stem);
}

#[test]
fn a_study_like_model_gets_the_four_kinds_of_figure() {
    let figs = figures(&[study_like("tiny", 0.1)], &headline, &dots()).unwrap();
    let stems: Vec<&str> = figs.iter().map(|f| f.stem.as_str()).collect();
    assert_eq!(
        stems,
        [
            "tradeoff_tiny",
            "msa_grid_tiny",
            "checkpoint_distance_tiny",
            "dots_tiny_mc_accuracy_forget",
            "dots_tiny_perplexity_forget"
        ]
    );
    assert_eq!(figs.iter().map(|f| f.paper).collect::<Vec<_>>(), [true, true, true, false, false]);
    for f in &figs {
        check_svg(f);
    }
    // The heat map writes each cell's distance |mc − oracle|: α = 1, β = 1 is |0.43 − 0.196|.
    let heat: Vec<String> = texts(&by_stem(&figs, "msa_grid_tiny").svg).into_iter().map(|t| t.2).collect();
    assert!(heat.contains(&"0.234".to_owned()), "{heat:?}");
    assert!(heat.contains(&"0.727".to_owned()), "the headline cell α = β = 0.5: |0.923 − 0.196|; {heat:?}");
    // The checkpoint curve labels its reference lines.
    let curve: Vec<String> = texts(&by_stem(&figs, "checkpoint_distance_tiny").svg).into_iter().map(|t| t.2).collect();
    for want in ["oracle 0.196", "θ_D 0.992", "oracle (retrain)", "θ_D (final)", "oracle ± noise floor"] {
        assert!(curve.iter().any(|t| t == want), "{want} missing in {curve:?}");
    }
    // A dot plot has a row label per headline method and reference.
    let dots: Vec<String> =
        texts(&by_stem(&figs, "dots_tiny_mc_accuracy_forget").svg).into_iter().map(|t| t.2).collect();
    for want in
        ["final (θ_D)", "retrain (oracle)", "retrain_alt (second oracle)", "gradient_ascent", "msa", "task_negation"]
    {
        assert!(dots.iter().any(|t| t == want), "{want} missing in {dots:?}");
    }

    if let Ok(dir) = std::env::var("REPORT_FIGURES_DIR") {
        for f in &figs {
            write_png_of(f, &Path::new(&dir).join(format!("{}.png", f.stem))).unwrap();
            std::fs::write(Path::new(&dir).join(format!("{}.svg", f.stem)), &f.svg).unwrap();
        }
    }
}

#[test]
fn tradeoff_labels_the_references_and_keeps_its_legend_right_of_the_plot() {
    let figs = figures(&[study_like("tiny", 0.1)], &headline, &[]).unwrap();
    let svg = &by_stem(&figs, "tradeoff_tiny").svg;
    let (x0, y0, x1, y1) = frame(svg);
    let inside = |t: &(f64, f64, String)| t.0 > x0 && t.0 < x1 && t.1 > y0 && t.1 < y1;
    let all = texts(svg);
    let find = |s: &str| all.iter().filter(|t| t.2 == s).collect::<Vec<_>>();
    // Tags next to the reference marks, inside the plotting area.
    for tag in ["oracle", "θ_D", "2nd oracle"] {
        assert_eq!(find(tag).iter().filter(|t| inside(t)).count(), 1, "{tag} next to its mark: {all:?}");
    }
    // The legend: every method and reference, left-aligned right of the plotting area.
    for label in
        ["final (θ_D)", "retrain (oracle)", "retrain_alt (second oracle)", "gradient_ascent", "npo", "msa", "simnpo"]
    {
        let hits = find(label);
        assert_eq!(hits.len(), 1, "{label}: {all:?}");
        assert!(hits[0].0 > x1, "legend text {label} at x = {} is not right of the plot (right edge {x1})", hits[0].0);
    }
    // No text over the plotting area but the tags.
    let over: Vec<&String> = all.iter().filter(|t| inside(t)).map(|t| &t.2).collect();
    assert_eq!(over.len(), 3, "{over:?}");
    // The y axis is log10 forget quality, its ticks written as values.
    assert!(all.iter().any(|t| t.2.contains("log scale")));
    assert!(all.iter().any(|t| t.2 == "1e-6" || t.2 == "1e-4"), "{all:?}");
}

#[test]
fn whiskers_are_drawn_exactly_when_intervals_exist() {
    let with = figures(&[study_like("tiny", 0.1)], &headline, &dots()).unwrap();
    let without = figures(&[study_like("tiny", 0.0)], &headline, &dots()).unwrap();
    assert_eq!(with.len(), without.len());
    // Trade-off: 7 headline methods, gradient ascent without intervals, and 3 references, two
    // whiskers each (x and y), each a line and two caps.
    let tradeoff = whisker_lines(&by_stem(&with, "tradeoff_tiny").svg);
    assert_eq!(tradeoff, 3 * 2 * (6 + 3), "trade-off whisker lines");
    assert_eq!(whisker_lines(&by_stem(&without, "tradeoff_tiny").svg), 0);
    // Dot plot: one whisker per row (gradient ascent has none): 3 references + 6 methods.
    assert_eq!(whisker_lines(&by_stem(&with, "dots_tiny_mc_accuracy_forget").svg), 3 * 9);
    assert_eq!(whisker_lines(&by_stem(&without, "dots_tiny_mc_accuracy_forget").svg), 0);
    // Checkpoint curve: 5 whiskers plus the 4 segments of the line through the points.
    assert_eq!(whisker_lines(&by_stem(&with, "checkpoint_distance_tiny").svg), 3 * 5);
    assert_eq!(whisker_lines(&by_stem(&without, "checkpoint_distance_tiny").svg), 0);
}

#[test]
fn never_more_than_eight_figures() {
    let many: Vec<DotMetric> = (0..10)
        .map(|i| DotMetric {
            record: [MU, FQ, MC, KL, PPL][i % 5].into(),
            label: format!("metric {i}"),
            log: i % 2 == 0,
        })
        .collect();
    // One model: three paper figures and at most four dot plots.
    let one = figures(&[study_like("a", 0.1)], &headline, &many).unwrap();
    assert_eq!(one.len(), 3 + 4);
    // Three models: 3 trade-offs + 3 heat maps = 6, then checkpoint curves of the first two; no
    // dot plot.
    let models = [study_like("a", 0.1), study_like("b", 0.1), study_like("c", 0.0)];
    let figs = figures(&models, &headline, &many).unwrap();
    assert!(figs.len() <= MAX_FIGURES);
    let stems: Vec<&str> = figs.iter().map(|f| f.stem.as_str()).collect();
    assert_eq!(
        stems,
        [
            "tradeoff_a",
            "msa_grid_a",
            "checkpoint_distance_a",
            "tradeoff_b",
            "msa_grid_b",
            "checkpoint_distance_b",
            "tradeoff_c",
            "msa_grid_c"
        ]
    );
    for f in &figs {
        check_svg(f);
    }
}

#[test]
fn figures_only_where_their_data_is() {
    // References and one method with only model utility and forget quality: the trade-off, and
    // a dot plot for a record it has; no MSA figures.
    let s = Summary {
        model: "m/x".into(),
        columns: vec![col(MU, Target::HigherIsBetter), col(FQ, Target::HigherIsBetter)],
        rows: vec![
            row("final", "reference", &[], &[(MU, 0.6, None), (FQ, 0.0, None)]),
            row("retrain", "reference", &[], &[(MU, 0.62, None), (FQ, 1.0, None)]),
            row("npo", "npo", &[], &[(MU, 0.5, None), (FQ, 0.3, None)]),
        ],
        noise_floor: None,
        notes: vec![],
    };
    let dot = DotMetric { record: FQ.into(), label: "forget quality".into(), log: true };
    let missing = DotMetric { record: MC.into(), label: "mc".into(), log: false };
    let figs = figures(&[s], &|_| true, &[missing, dot]).unwrap();
    let stems: Vec<&str> = figs.iter().map(|f| f.stem.as_str()).collect();
    assert_eq!(stems, ["tradeoff_m_x", "dots_m_x_tofu_forget_quality"]);
    for f in &figs {
        check_svg(f);
    }
    // θ_D's forget quality 0: a linear axis, and on the log dot plot a listed, undrawn value.
    assert!(!texts(&figs[0].svg).iter().any(|t| t.2.contains("log scale")));
    assert!(texts(&figs[1].svg).iter().any(|t| t.2 == "0 (≤ 0)"));
    assert!(figures(&[], &|_| true, &[]).unwrap().is_empty());
}

#[test]
fn the_png_writer_draws_the_figure_at_its_size() {
    let figs = figures(&[study_like("tiny", 0.1)], &headline, &dots()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in &figs {
        let path = dir.path().join(format!("{}.png", f.stem));
        write_png_of(f, &path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().unwrap();
        let info = reader.info();
        assert_eq!((info.width, info.height), SIZE, "{}", f.stem);
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        // White background, some dark text and some colour.
        assert_eq!(&pixels[..3], &[255, 255, 255], "{}", f.stem);
        let px: Vec<&[u8]> = pixels.chunks(3).collect();
        assert!(px.iter().filter(|p| p.iter().all(|&c| c < 80)).count() > 500, "{}: little text", f.stem);
        assert!(px.iter().any(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 100), "{}: no colour", f.stem);
    }
}
