//! Reading a sweep's cell results: `RESULTS_DIR/cells/*.json` as written by the `runner`
//! crate's result store (schema version 1). This crate does not depend on `runner`, so the
//! layout is mirrored here — only the fields the report needs; unknown fields are ignored so
//! that additions to the schema do not break old reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The cell JSON layout this crate reads.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Deserialize)]
pub struct CellFile {
    pub schema_version: u32,
    #[serde(default)]
    pub sweep: String,
    pub cell: CellInfo,
    pub status: Status,
    #[serde(default)]
    pub error_chain: Vec<String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricFile>,
    /// (step, loss); a non-finite loss is stored as null.
    #[serde(default)]
    pub loss_curves: BTreeMap<String, Vec<(u64, Option<f64>)>>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CellInfo {
    pub id: String,
    #[serde(default)]
    pub key: String,
    pub method: String,
    pub kind: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub model: String,
    pub seed: u64,
}

impl CellInfo {
    /// The reference rows: "final" (θ_D) and "retrain" (the oracle).
    pub fn is_reference(&self) -> bool {
        self.kind == "reference"
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
}

/// Which way a metric improves.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
    CloserTo(f64),
}

impl Direction {
    /// Distance from the ideal: smaller is better.
    pub fn badness(self, v: f64) -> f64 {
        match self {
            Direction::HigherIsBetter => -v,
            Direction::LowerIsBetter => v,
            Direction::CloserTo(t) => (v - t).abs(),
        }
    }

    /// Short form used in tables: ↑, ↓ or →t.
    pub fn arrow(self) -> String {
        match self {
            Direction::HigherIsBetter => "↑".into(),
            Direction::LowerIsBetter => "↓".into(),
            Direction::CloserTo(t) => format!("→{}", crate::fmt_num(t)),
        }
    }

    pub fn as_str(self) -> String {
        match self {
            Direction::HigherIsBetter => "higher_is_better".into(),
            Direction::LowerIsBetter => "lower_is_better".into(),
            Direction::CloserTo(t) => format!("closer_to:{t}"),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct MetricFile {
    pub direction: Direction,
    /// null (non-finite) becomes `None`.
    pub value: Option<f64>,
}

/// Every cell result under `results_dir`: `results_dir/cells/*.json` if that folder exists;
/// otherwise `results_dir/*/cells/*.json` (several sweeps merged); otherwise
/// `results_dir/*.json`. Temporary files of interrupted writes (`.NAME.tmp…`) are skipped.
/// Sorted by (sweep, cell id).
pub fn load_cells(results_dir: &Path) -> Result<Vec<CellFile>> {
    if !results_dir.is_dir() {
        bail!("{}: no such results folder", results_dir.display());
    }
    let mut dirs = Vec::new();
    if results_dir.join("cells").is_dir() {
        dirs.push(results_dir.join("cells"));
    } else {
        for sub in sorted_entries(results_dir)? {
            if sub.join("cells").is_dir() {
                dirs.push(sub.join("cells"));
            }
        }
        if dirs.is_empty() {
            dirs.push(results_dir.to_path_buf());
        }
    }
    let mut cells = Vec::new();
    for dir in dirs {
        for path in sorted_entries(&dir)? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") || !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let cell: CellFile = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a cell result (schema {SCHEMA_VERSION})", path.display()))?;
            if cell.schema_version != SCHEMA_VERSION {
                bail!("{}: schema_version {} (this report reads {SCHEMA_VERSION})", path.display(), cell.schema_version);
            }
            cells.push(cell);
        }
    }
    cells.sort_by(|a, b| (&a.sweep, &a.cell.id).cmp(&(&b.sweep, &b.cell.id)));
    Ok(cells)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        out.push(entry.with_context(|| format!("{}: cannot list", dir.display()))?.path());
    }
    out.sort();
    Ok(out)
}
