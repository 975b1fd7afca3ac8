//! The reporter behind `bench report RESULTS_DIR --out reports/NAME`: reads every cell result
//! a sweep left (see [`results`]) and the report options (`RESULTS_DIR/report.json`, the
//! config's `[report]` table: [`options`]) and writes
//! - `index.html`: the report as one self-contained page ([`html`]): the world-quality table
//!   ([`quality`], with a WARNING for any world whose gate failed or was off), the headline
//!   ([`headline`]: one row per method at its validation-chosen point, ≤ 8 columns, distances
//!   to the oracle against the noise floor, best only among rows passing the utility gate), when
//!   the world is a paper benchmark (TOFU) the reproduction table ([`paper`]: the MSA paper's
//!   columns and rows, its published numbers beside ours in a column group of their own), the
//!   claims ([`claims`]: verdicts on the paper's and the summary's claims), ≤ 8 figures
//!   ([`plots`], inline SVG), then the appendix: the full table of every metric and grid point
//!   ([`tables::full_table`]), the pairwise comparisons ([`compare`]) and failed cells;
//! - `index.md` (the same, figures linked) and `tables.md` / `tables.tex` (headline,
//!   reproduction, claims, full tables, comparisons): every table is one [`render::Table`]
//!   rendered three ways;
//! - `plots/*.svg`, and `plots/*.png` for the figures a paper would use (800 × 520);
//! - `long.csv` and `long.parquet`: one row per cell × metric (sweep, cell, method, kind,
//!   params, model, world_seed, seed, metric, value, direction, target); in Parquet the strings are
//!   UTF-8, `world_seed` and `seed` unsigned 64-bit integers and `value` a nullable f64 (null
//!   where the CSV is empty: a missing or non-finite value).
//!
//! What a reader must know (no oracle row, one seed, failed cells, metrics whose cells disagree
//! on their target, methods without a headline point) is said at the top of the page and of
//! `index.md` and returned in [`BuildSummary::notes`] for `bench report` to print.
//!
//! A folder whose cells were made under different configurations (their fingerprints disagree:
//! the same cell key twice, or one world's or one row's cells on a field they share) is refused
//! with a message naming the cells, files and field, rather than mixed into one table
//! ([`results::check_one_configuration`]).
//!
//! Invariant: no dependency on candle or on other project crates except `stats` (pure
//! statistics) and `evals` (the metric declarations; no model code); the cell JSON layout is
//! mirrored in [`results`]. Data work is plain Rust, and
//! the same results folder gives the same report, intervals included (fixed bootstrap seed).
//!
//! Why not polars: polars 0.55.2 with only its `parquet` feature pulls in 173 crates; its clean
//! release build took 23 min 44 s of CPU (35 min wall on the shared 2-core machine), so at
//! least 12 min on two idle cores, more than this crate is worth to CI. Parquet is instead
//! written with the `parquet` crate's low-level column writer (no arrow, no compression codecs:
//! 35 crates); `parquet`, `png` and plotters (SVG and bitmap backends, `ab_glyph`) together
//! build from clean in 2 min 10 s of CPU. PNGs are encoded with `png`
//! directly rather than plotters' `image` encoder (fewer crates); text in both plot formats is
//! laid out with DejaVu Sans, embedded from `assets/`.

pub mod aggregate;
pub mod claims;
pub mod compare;
pub mod headline;
pub mod html;
pub mod options;
pub mod paper;
pub mod plots;
pub mod quality;
pub mod render;
pub mod results;
pub mod robustness;
pub mod tables;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use options::Options;
use render::Table;
use results::Status;

/// What [`build`] wrote.
#[derive(Clone, Debug)]
pub struct BuildSummary {
    pub cells_ok: usize,
    pub cells_failed: usize,
    /// Every file written, `index.html` last.
    pub files: Vec<PathBuf>,
    /// What a reader must know (no oracle, one seed, targets that disagree, …): in the report,
    /// and for `bench report` to print on stderr.
    pub notes: Vec<String>,
}

/// Reads the cell results under `results_dir` (see [`results::load_cells`]) and the report
/// options (`results_dir/report.json`, else the defaults) and writes the report into
/// `out_dir` (created if needed; files of an earlier report are overwritten).
pub fn build(results_dir: &Path, out_dir: &Path) -> Result<BuildSummary> {
    build_with(results_dir, out_dir, &Options::load(results_dir)?)
}

/// [`build`] with the given options.
pub fn build_with(results_dir: &Path, out_dir: &Path, options: &Options) -> Result<BuildSummary> {
    let cells = results::load_cells(results_dir)?;
    let world_quality = results::load_world_quality(results_dir)?;
    let plots_dir = out_dir.join("plots");
    if plots_dir.is_dir() {
        // figures of an earlier report would otherwise linger beside the new ones
        for entry in std::fs::read_dir(&plots_dir).with_context(|| format!("{}: cannot list", plots_dir.display()))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "svg" || e == "png") {
                std::fs::remove_file(&path).with_context(|| format!("{}: cannot remove", path.display()))?;
            }
        }
    }
    std::fs::create_dir_all(&plots_dir).with_context(|| format!("{}: cannot create", plots_dir.display()))?;
    let mut files = Vec::new();

    let long = tables::long_rows(&cells);
    let csv = out_dir.join("long.csv");
    tables::write_long_csv(&long, &csv)?;
    files.push(csv);
    let parquet = out_dir.join("long.parquet");
    tables::write_long_parquet(&long, &parquet)?;
    files.push(parquet);

    let cells_ok = cells.iter().filter(|c| c.status == Status::Ok).count();
    let cells_failed = cells.len() - cells_ok;
    let summaries = tables::summarise(&cells, options);
    let claims = claims::claims(&cells, &summaries);
    let comparisons = compare::comparisons(&cells);

    let mut notes: Vec<String> = Vec::new();
    if cells.is_empty() {
        notes.push(format!("{}: no cell results: nothing to report", results_dir.display()));
    } else if cells_ok == 0 {
        notes.push(format!("all {} cells failed: no table (their errors are under Failed cells)", cells.len()));
    }
    if cells_failed > 0 && cells_ok > 0 {
        notes.push(format!("{cells_failed} cell(s) failed and contribute no values (see Failed cells)"));
    }
    for s in &summaries {
        for n in &s.notes {
            let n = if summaries.len() > 1 { format!("model `{}`: {n}", s.model) } else { n.clone() };
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        if s.rows.iter().all(|r| r.runs <= 1) && !s.rows.is_empty() {
            let n = format!(
                "model `{}`: one run per row (one world, one seed): no intervals, and claims cannot be tested beyond noise — a smoke test, not a result",
                s.model
            );
            notes.push(n);
        }
    }
    let warning = quality::warning(&world_quality);

    // figures
    let figures = figures(&summaries, &plots_dir)?;
    for f in &figures {
        files.push(plots_dir.join(&f.file));
        if let Some(png) = &f.png {
            files.push(plots_dir.join(png));
        }
    }

    // tables
    let headline_tables: Vec<(String, Table)> =
        summaries.iter().map(|s| (format!("Model `{}`", s.model), headline::table(s))).collect();
    let full_tables: Vec<(String, Table)> =
        summaries.iter().map(|s| (format!("Model `{}`", s.model), tables::full_table(s))).collect();
    let paper_tables = paper::tables(&cells, &summaries);
    let claims_table = claims::table(&claims);
    let robustness_tables: Vec<(String, Table)> = summaries.iter().flat_map(robustness::tables).collect();
    let comparisons_md = compare::markdown(&comparisons);
    let failed = tables::failed_markdown(&cells);

    let mut md = String::from("## Headline\n\n");
    for (h, t) in &headline_tables {
        let _ = write!(md, "### {h}\n\n{}", t.markdown());
    }
    paper_markdown(&mut md, &paper_tables);
    let _ = write!(md, "## Claims\n\n{}", claims_table.markdown());
    if !robustness_tables.is_empty() {
        md.push_str("## Robustness: attacks on the unlearned models\n\n");
        for (h, t) in &robustness_tables {
            let _ = write!(md, "### {h}\n\n{}", t.markdown());
        }
    }
    md.push_str("## All metrics and grid points\n\n");
    for (h, t) in &full_tables {
        let _ = write!(md, "### {h}\n\n{}", t.markdown());
    }
    let _ = write!(md, "## Comparisons (every MSA grid point against every other row)\n\n{comparisons_md}\n## Failed cells\n\n{failed}");
    write(&out_dir.join("tables.md"), &md, &mut files)?;

    let mut tex = String::from("% Generated by `bench report`; needs \\usepackage{booktabs}.\n");
    for ((h, t), s) in headline_tables.iter().zip(&summaries) {
        let _ = write!(tex, "{}", t.latex(&format!("Headline, model {}. ", s.model)));
        let _ = h;
    }
    for (h, t) in &paper_tables {
        tex.push_str(&t.latex(&format!("{}, {}. ", paper::TITLE, h.replace('`', ""))));
    }
    tex.push_str(&claims_table.latex("Claims. "));
    for (_, t) in &full_tables {
        tex.push_str(&t.latex("All metrics and grid points. "));
    }
    write(&out_dir.join("tables.tex"), &tex, &mut files)?;

    let mut sweeps: Vec<&str> = cells.iter().map(|c| c.sweep.as_str()).collect();
    sweeps.dedup();
    let title = format!("Report: {}", if sweeps.is_empty() { "(no cells)".into() } else { sweeps.join(", ") });
    let meta = format!(
        "From {}: {} cells, {cells_ok} ok, {cells_failed} failed. final = θ_D (the model that saw the forget data), \
         retrain = the exact oracle (trained without it), retrain_alt = a second oracle (another data order) whose \
         distance to the oracle is the noise floor.",
        results_dir.display(),
        cells.len()
    );

    // index.md
    let mut index = format!("# {title}\n\n{meta}\n\n");
    if let Some(w) = &warning {
        let _ = writeln!(index, "**{w}**\n");
    }
    if !notes.is_empty() {
        index.push_str("Read first:\n\n");
        for n in &notes {
            let _ = writeln!(index, "- {n}");
        }
        index.push('\n');
    }
    if !world_quality.is_empty() {
        let _ = write!(index, "## World quality\n\n{}", quality::table(&world_quality).markdown());
    }
    index.push_str("## Headline\n\n");
    for (h, t) in &headline_tables {
        let _ = write!(index, "### {h}\n\n{}", t.markdown());
    }
    paper_markdown(&mut index, &paper_tables);
    let _ = write!(index, "## Claims\n\n{}", claims_table.markdown());
    if !robustness_tables.is_empty() {
        index.push_str("## Robustness: attacks on the unlearned models\n\n");
        for (h, t) in &robustness_tables {
            let _ = write!(index, "### {h}\n\n{}", t.markdown());
        }
    }
    index.push_str("## Figures\n\n");
    if figures.is_empty() {
        index.push_str("(no data for any figure)\n\n");
    }
    for (i, f) in figures.iter().enumerate() {
        let _ =
            writeln!(index, "**Figure {}. {}** {}\n\n![{}](plots/{})\n", i + 1, f.title, f.caption, f.title, f.file);
    }
    index.push_str(
        "## Appendix\n\nEvery metric and grid point, the pairwise comparisons and failed cells: [tables.md](tables.md) \
         ([tables.tex](tables.tex)); every cell × metric: [long.csv](long.csv), [long.parquet](long.parquet); this \
         report as one page: [index.html](index.html).\n",
    );
    write(&out_dir.join("index.md"), &index, &mut files)?;

    // index.html
    let mut sections = Vec::new();
    if !world_quality.is_empty() {
        sections.push(html::Section {
            id: "quality",
            title: "World quality".into(),
            paragraphs: vec![],
            tables: vec![(None, quality::table(&world_quality))],
            raw: String::new(),
        });
    }
    sections.push(html::Section {
        id: "headline",
        title: "Headline".into(),
        paragraphs: vec![],
        tables: headline_tables.iter().map(|(h, t)| (Some(h.replace('`', "")), t.clone())).collect(),
        raw: String::new(),
    });
    if !paper_tables.is_empty() {
        sections.push(html::Section {
            id: "reproduction",
            title: paper::TITLE.into(),
            paragraphs: vec![],
            tables: paper_tables.iter().map(|(h, t)| (Some(h.replace('`', "")), t.clone())).collect(),
            raw: String::new(),
        });
    }
    sections.push(html::Section {
        id: "claims",
        title: "Claims".into(),
        paragraphs: vec![],
        tables: vec![(None, claims_table.clone())],
        raw: String::new(),
    });
    if !robustness_tables.is_empty() {
        sections.push(html::Section {
            id: "robustness",
            title: "Robustness".into(),
            paragraphs: vec![],
            tables: robustness_tables.iter().map(|(h, t)| (Some(h.replace('`', "")), t.clone())).collect(),
            raw: String::new(),
        });
    }
    let page_figures: Vec<html::PageFigure> =
        figures.iter().map(|f| html::PageFigure { title: &f.title, caption: &f.caption, svg: &f.svg }).collect();
    let mut appendix_tables: Vec<(Option<String>, Table)> = full_tables
        .iter()
        .map(|(h, t)| (Some(format!("All metrics and grid points: {}", h.replace('`', ""))), t.clone()))
        .collect();
    appendix_tables.push((
        Some("Comparisons (every MSA grid point against every other row)".into()),
        compare::table(&comparisons),
    ));
    let failed_items: Vec<String> = cells
        .iter()
        .filter(|c| c.status == Status::Failed)
        .map(|c| format!("{} — {}", c.cell.id, c.error_chain.join(": ").replace('\n', " ")))
        .collect();
    let mut raw = String::from("<h3>Failed cells</h3>\n");
    if failed_items.is_empty() {
        raw.push_str("<p>No failed cells.</p>\n");
    } else {
        raw.push_str(&html::list(&failed_items));
    }
    raw.push_str(
        "<h3>Files</h3><p>tables.md and tables.tex (these tables), long.csv and long.parquet (every cell × metric), \
         plots/ (the figures as SVG; PNG for the paper figures).</p>\n",
    );
    sections.push(html::Section {
        id: "appendix",
        title: "Appendix".into(),
        paragraphs: vec![],
        tables: appendix_tables,
        raw,
    });
    let mut page_warnings: Vec<String> = warning.into_iter().collect();
    page_warnings.extend(notes.iter().cloned());
    let page = html::page(&title, &meta, &page_warnings, &sections, &page_figures);
    write(&out_dir.join("index.html"), &page, &mut files)?;
    Ok(BuildSummary { cells_ok, cells_failed, files, notes })
}

/// A figure written under `plots/`.
struct WrittenFigure {
    title: String,
    caption: String,
    /// The SVG file name.
    file: String,
    /// The PNG file name, for paper figures.
    png: Option<String>,
    svg: String,
}

/// Forget-side records shown as dot plots (the first [`plots::MAX_DOT_PLOTS`] a model has).
pub const DOT_RECORDS: &[&str] = &[
    "mc_accuracy/forget",
    "kl_to_oracle/forget",
    "perplexity/forget",
    "tofu_truth_ratio_forget",
    "mink_auc",
    "restor_clean_acc",
    "truthfulqa_mc2",
    "toxigen",
    "toxigen_likelihood",
];

/// The report's figures ([`plots::figures`]), each written as SVG, paper figures also as PNG.
fn figures(summaries: &[tables::Summary], plots_dir: &Path) -> Result<Vec<WrittenFigure>> {
    let mut dots: Vec<plots::DotMetric> = Vec::new();
    for r in DOT_RECORDS {
        if let Some(c) = summaries.iter().find_map(|s| s.column(r)) {
            dots.push(plots::DotMetric {
                record: r.to_string(),
                label: c.label.clone(),
                log: c.scale == results::Scale::Log,
            });
        }
    }
    dots.truncate(plots::MAX_DOT_PLOTS);
    let mut out = Vec::new();
    for f in plots::figures(summaries, &|r: &tables::SummaryRow| r.headline, &dots)? {
        let file = format!("{}.svg", f.stem);
        let path = plots_dir.join(&file);
        std::fs::write(&path, &f.svg).with_context(|| format!("{}: cannot write", path.display()))?;
        let png = if f.paper {
            let name = format!("{}.png", f.stem);
            plots::write_png_of(&f, &plots_dir.join(&name))?;
            Some(name)
        } else {
            None
        };
        out.push(WrittenFigure { title: f.title, caption: f.caption, file, png, svg: f.svg });
    }
    Ok(out)
}

/// The reproduction section ([`paper`]), when a model's world is a paper benchmark.
fn paper_markdown(out: &mut String, tables: &[(String, Table)]) {
    if tables.is_empty() {
        return;
    }
    let _ = write!(out, "## {}\n\n", paper::TITLE);
    for (h, t) in tables {
        let _ = write!(out, "### {h}\n\n{}", t.markdown());
    }
}

fn write(path: &Path, text: &str, files: &mut Vec<PathBuf>) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    files.push(path.to_path_buf());
    Ok(())
}

/// Numbers in tables: 3 decimals, or 3 significant digits in scientific notation when the
/// magnitude is below 0.001 or at least 100000; 0 as `0`.
pub fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if !x.is_finite() {
        format!("{x}")
    } else if x.abs() < 1e-3 || x.abs() >= 1e5 {
        format!("{x:.2e}")
    } else {
        format!("{x:.3}")
    }
}

/// A hyperparameter value as in cell keys: whole numbers without a decimal point.
pub fn format_param(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            (None, Some(f)) => format!("{f:?}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}
