//! The reporter behind `bench report RESULTS_DIR --out reports/NAME`: reads every cell result
//! a sweep left (see [`results`]) and writes
//! - `long.csv` and `long.parquet`: one row per cell × metric (sweep, cell, method, kind,
//!   params, model, world_seed, seed, metric, value, direction); in Parquet the strings are
//!   UTF-8, `world_seed` and `seed` unsigned 64-bit integers and `value` a nullable f64 (null
//!   where the CSV is empty: a missing or non-finite value);
//! - `tables.md` / `tables.tex`: the paper-style tables, methods × metrics, the mean over world
//!   seeds with its 95 % cluster bootstrap interval ([`aggregate`]; one run: the value, no
//!   interval), best per column marked, rows for θ_D ("final"), the oracle ("retrain") and,
//!   when there is one, the second oracle ("retrain_alt") with the noise floor
//!   |retrain_alt − retrain|; then the "Comparisons" section ([`compare`]): MSA against each
//!   other method on forget-side distances to the oracle, paired intervals, Wilcoxon p-values
//!   and Holm's correction;
//! - `plots/*.svg` and `plots/*.png` (same stems, 800 × 520): forget quality vs model utility
//!   (TOFU's trade-off), MSA's α/β grid, the checkpoint-distance curve, loss curves;
//! - `index.md`, which shows all of it (linking the SVGs) and lists failed cells separately,
//!   and starts with the "World quality" table ([`quality`]) when the results folder has
//!   `world_quality/*.json`, with a WARNING line for any world whose gate failed or was off.
//!
//! A folder whose cells were made under different configurations (their fingerprints disagree:
//! the same cell key twice, or one world's or one row's cells on a field they share) is refused
//! with a message naming the cells, files and field, rather than mixed into one table
//! ([`results::check_one_configuration`]).
//!
//! Invariant: no dependency on candle or on other project crates except `stats` (pure
//! statistics); the cell JSON layout is mirrored in [`results`]. Data work is plain Rust, and
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
pub mod compare;
pub mod plots;
pub mod quality;
pub mod results;
pub mod tables;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use results::Status;

/// What [`build`] wrote.
#[derive(Clone, Debug)]
pub struct BuildSummary {
    pub cells_ok: usize,
    pub cells_failed: usize,
    /// Every file written, `index.md` last.
    pub files: Vec<PathBuf>,
}

/// Reads the cell results under `results_dir` (see [`results::load_cells`]) and writes the
/// report into `out_dir` (created if needed; files of an earlier report are overwritten).
pub fn build(results_dir: &Path, out_dir: &Path) -> Result<BuildSummary> {
    let cells = results::load_cells(results_dir)?;
    let world_quality = results::load_world_quality(results_dir)?;
    let plots_dir = out_dir.join("plots");
    std::fs::create_dir_all(&plots_dir).with_context(|| format!("{}: cannot create", plots_dir.display()))?;
    let mut files = Vec::new();

    let long = tables::long_rows(&cells);
    let csv = out_dir.join("long.csv");
    tables::write_long_csv(&long, &csv)?;
    files.push(csv);
    let parquet = out_dir.join("long.parquet");
    tables::write_long_parquet(&long, &parquet)?;
    files.push(parquet);

    let summaries = tables::summarise(&cells);
    // The paper-style tables show the headline metrics; sub-values (`metric/sub`) go to a
    // second, full table in tables.md and to long.csv.
    let headline = tables::headline(&summaries);
    let md_tables = tables::markdown(&headline);
    let failed = tables::failed_markdown(&cells);
    let comparisons = format!("## Comparisons\n\n{}", compare::markdown(&compare::comparisons(&cells)));
    let full = if headline.iter().zip(&summaries).any(|(h, s)| h.metrics.len() != s.metrics.len()) {
        format!("\n## All metrics, with sub-values\n\n{}", tables::markdown(&summaries))
    } else {
        String::new()
    };
    write(
        &out_dir.join("tables.md"),
        &format!("{md_tables}{full}\n{comparisons}\n## Failed cells\n\n{failed}"),
        &mut files,
    )?;
    write(&out_dir.join("tables.tex"), &tables::latex(&headline), &mut files)?;

    let tradeoff = plots::tradeoff(&summaries, &plots_dir)?;
    let grid = plots::msa_grid(&summaries, &plots_dir)?;
    let distance = plots::checkpoint_curves(&summaries, &plots_dir)?;
    let losses = plots::loss_curves(&cells, &plots_dir)?;
    for f in tradeoff.iter().chain(&grid).chain(&distance).chain(&losses) {
        let svg = plots_dir.join(f);
        files.push(svg.with_extension("png"));
        files.push(svg);
    }

    let cells_ok = cells.iter().filter(|c| c.status == Status::Ok).count();
    let cells_failed = cells.len() - cells_ok;
    let mut sweeps: Vec<&str> = cells.iter().map(|c| c.sweep.as_str()).collect();
    sweeps.dedup();

    let mut index =
        format!("# Report: {}\n\n", if sweeps.is_empty() { "(no cells)".into() } else { sweeps.join(", ") });
    let _ = writeln!(
        index,
        "From `{}`: {} cells, {cells_ok} ok, {cells_failed} failed.\n",
        results_dir.display(),
        cells.len()
    );
    if !world_quality.is_empty() {
        let _ = write!(index, "## World quality\n\n{}", quality::markdown(&world_quality));
    }
    index.push_str("## Files\n\n- [long.csv](long.csv), [long.parquet](long.parquet): every cell × metric\n- [tables.md](tables.md), [tables.tex](tables.tex): the tables below\n\n");
    index.push_str("## Tables\n\nMean over world seeds [95 % cluster bootstrap interval] (see the note under each table); the best method per column is in bold (↑ higher is better, ↓ lower, → closer to the value). `final` is θ_D, `retrain` the oracle, `retrain_alt` a second oracle (another data-order seed).\n\n");
    index.push_str(&md_tables);
    index.push_str(&comparisons);
    index.push('\n');
    let sections: [(&str, &[String]); 4] = [
        ("Forget quality vs model utility", &tradeoff),
        ("MSA α/β grid", &grid),
        ("Checkpoint distance (MSA's θ_0)", &distance),
        ("Loss curves", &losses),
    ];
    index.push_str("## Plots\n\nEach SVG below has a PNG of the same name next to it in `plots/`.\n\n");
    for (title, list) in sections {
        let _ = writeln!(index, "### {title}\n");
        if list.is_empty() {
            index.push_str("(no data for this plot)\n\n");
        }
        for f in list {
            let _ = writeln!(index, "![{f}](plots/{f})\n");
        }
    }
    let _ = write!(index, "## Failed cells\n\n{failed}");
    write(&out_dir.join("index.md"), &index, &mut files)?;
    Ok(BuildSummary { cells_ok, cells_failed, files })
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
