//! The report's tables: the long table (one row per cell × metric, CSV and Parquet) and the
//! full table of each model (configurations × metric records, the appendix), from which the
//! headline ([`crate::headline`]), the claims ([`crate::claims`]) and the figures are drawn.
//!
//! Each record is a [`Column`] with the target its metric declared (`evals::registry`, recorded
//! in every cell): **toward the oracle** (forget side: read as Δ, the distance to the exact
//! retrain oracle, against the noise floor — lower is not better: over-unlearning misses
//! too), **higher / lower is better** (retain and general side), or **informational**.
//! Duplicates (a record that repeats another) are left out of the tables.
//!
//! "Best" (bold) is chosen only among method rows that pass the **utility gate**
//! ([`crate::options::Options::gate`]: by default model utility ≥ 0.9 × θ_D's and general
//! perplexity ≤ 1.5 × θ_D's, in the same world): the smallest Δ in toward-the-oracle columns,
//! the best value in the others, none in informational ones. A gate-passing row whose Δ is at
//! most the noise floor (the second oracle's Δ) is "≈ oracle": indistinguishable from
//! retraining. θ_D ("final"), the oracle ("retrain") and the second oracle ("retrain_alt")
//! are references, shown first and never marked; the row "noise floor (two oracles)" follows
//! them. Failed cells contribute no values; they are listed separately.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::aggregate::{aggregate, groups, Basis, Group, BOOTSTRAP};
use crate::options::{GateCriterion, Options};
use crate::render::{Cell, Emphasis, Table};
use crate::results::{CellFile, Scale, Status, Target, REFERENCE_FINAL, REFERENCE_RETRAIN, REFERENCE_RETRAIN_ALT};
use crate::{fmt_num, format_param};

/// One row of the long table.
#[derive(Clone, Debug, PartialEq)]
pub struct LongRow {
    pub sweep: String,
    pub cell: String,
    pub method: String,
    pub kind: String,
    /// `k=v;k=v`, keys sorted.
    pub params: String,
    pub model: String,
    pub world_seed: u64,
    pub seed: u64,
    pub metric: String,
    /// `None` for a non-finite value.
    pub value: Option<f64>,
    pub direction: String,
    /// How the record is judged (`toward_oracle`, `higher_is_better`, ...): as the cell
    /// recorded it, else as `evals::registry` declares it, else empty.
    pub target: String,
}

/// The long table of all successful cells, sorted by (cell, metric).
pub fn long_rows(cells: &[CellFile]) -> Vec<LongRow> {
    let mut rows = Vec::new();
    for c in cells.iter().filter(|c| c.status == Status::Ok) {
        let params: Vec<String> = c.cell.params.iter().map(|(k, v)| format!("{k}={}", format_param(v))).collect();
        for (metric, m) in &c.metrics {
            rows.push(LongRow {
                sweep: c.sweep.clone(),
                cell: c.cell.id.clone(),
                method: c.cell.method.clone(),
                kind: c.cell.kind.clone(),
                params: params.join(";"),
                model: c.cell.model.clone(),
                world_seed: c.cell.world_seed,
                seed: c.cell.seed,
                metric: metric.clone(),
                value: m.finite_value(),
                direction: m.direction.as_str(),
                target: m
                    .target
                    .or_else(|| evals::registry::record_info(metric).map(|(_, r)| r.target))
                    .map_or_else(String::new, |t| t.as_str().to_owned()),
            });
        }
    }
    rows
}

/// The columns of the long table, in order (CSV header and Parquet schema).
pub const LONG_COLUMNS: &[&str] = &[
    "sweep",
    "cell",
    "method",
    "kind",
    "params",
    "model",
    "world_seed",
    "seed",
    "metric",
    "value",
    "direction",
    "target",
];

/// Writes the long table as CSV (RFC 4180 quoting by the `csv` crate; an empty `value` is a
/// non-finite one, an empty `target` a record no cell and no registry entry declares).
pub fn write_long_csv(rows: &[LongRow], path: &Path) -> Result<()> {
    let ctx = || format!("{}: cannot write", path.display());
    let mut w = csv::Writer::from_path(path).with_context(ctx)?;
    w.write_record(LONG_COLUMNS).with_context(ctx)?;
    for r in rows {
        let value = r.value.map(|v| format!("{v}")).unwrap_or_default();
        w.write_record([
            r.sweep.as_str(),
            &r.cell,
            &r.method,
            &r.kind,
            &r.params,
            &r.model,
            &r.world_seed.to_string(),
            &r.seed.to_string(),
            &r.metric,
            &value,
            &r.direction,
            &r.target,
        ])
        .with_context(ctx)?;
    }
    w.flush().with_context(ctx)
}

/// The Parquet schema of the long table: the CSV's columns with their types. `world_seed` and
/// `seed` are unsigned 64-bit integers; `value` is the only nullable column (null where the CSV is empty).
pub const LONG_PARQUET_SCHEMA: &str = "message long {
    REQUIRED BYTE_ARRAY sweep (STRING);
    REQUIRED BYTE_ARRAY cell (STRING);
    REQUIRED BYTE_ARRAY method (STRING);
    REQUIRED BYTE_ARRAY kind (STRING);
    REQUIRED BYTE_ARRAY params (STRING);
    REQUIRED BYTE_ARRAY model (STRING);
    REQUIRED INT64 world_seed (INTEGER(64, false));
    REQUIRED INT64 seed (INTEGER(64, false));
    REQUIRED BYTE_ARRAY metric (STRING);
    OPTIONAL DOUBLE value;
    REQUIRED BYTE_ARRAY direction (STRING);
    REQUIRED BYTE_ARRAY target (STRING);
}";

/// Writes the long table as Parquet (one uncompressed row group, [`LONG_PARQUET_SCHEMA`]), the
/// same rows and columns as [`write_long_csv`].
pub fn write_long_parquet(rows: &[LongRow], path: &Path) -> Result<()> {
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;

    let ctx = |what: &str| format!("{}: cannot write Parquet {what}", path.display());
    let schema = parquet::schema::parser::parse_message_type(LONG_PARQUET_SCHEMA).with_context(|| ctx("schema"))?;
    let file = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    let props = std::sync::Arc::new(WriterProperties::builder().build());
    let mut writer =
        SerializedFileWriter::new(file, std::sync::Arc::new(schema), props).with_context(|| ctx("header"))?;
    let mut group = writer.next_row_group().with_context(|| ctx("row group"))?;
    let strings = |f: fn(&LongRow) -> &str| rows.iter().map(|r| ByteArray::from(f(r))).collect::<Vec<_>>();
    let mut column = 0;
    while let Some(mut col) = group.next_column().with_context(|| ctx("column"))? {
        let written = match column {
            0 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.sweep), None, None),
            1 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.cell), None, None),
            2 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.method), None, None),
            3 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.kind), None, None),
            4 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.params), None, None),
            5 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.model), None, None),
            // Parquet keeps an unsigned 64-bit integer in INT64's bits (two's complement).
            6 => {
                let seeds: Vec<i64> = rows.iter().map(|r| r.world_seed as i64).collect();
                col.typed::<Int64Type>().write_batch(&seeds, None, None)
            }
            7 => {
                let seeds: Vec<i64> = rows.iter().map(|r| r.seed as i64).collect();
                col.typed::<Int64Type>().write_batch(&seeds, None, None)
            }
            8 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.metric), None, None),
            9 => {
                // Definition level 1 = present, 0 = null; only present values are passed.
                let present: Vec<f64> = rows.iter().filter_map(|r| r.value).collect();
                let levels: Vec<i16> = rows.iter().map(|r| i16::from(r.value.is_some())).collect();
                col.typed::<DoubleType>().write_batch(&present, Some(&levels), None)
            }
            10 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.direction), None, None),
            11 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.target), None, None),
            _ => anyhow::bail!("{}: the Parquet schema has more columns than the long table", path.display()),
        };
        written.with_context(|| ctx(&format!("column {column}")))?;
        col.close().with_context(|| ctx(&format!("column {column}")))?;
        column += 1;
    }
    group.close().with_context(|| ctx("row group"))?;
    writer.close().with_context(|| ctx("footer"))?;
    Ok(())
}

/// One table cell: the mean over world seeds (of each world's mean over method seeds), the
/// 95 % cluster bootstrap interval when more than one run contributes (see
/// [`crate::aggregate`]), the sample standard deviation over runs (kept for callers; the
/// tables show the interval), and how the cell compares with the oracle.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    /// Sample standard deviation (n − 1) over the runs; `None` with fewer than two.
    pub std: Option<f64>,
    /// Runs with a finite value.
    pub n: usize,
    /// World seeds among them.
    pub worlds: usize,
    /// (lo, hi); `None` with one run ("1 run: no interval").
    pub interval: Option<(f64, f64)>,
    /// What the interval resampled inside a world.
    pub basis: Basis,
    /// Best row in its column among the rows that pass the utility gate.
    pub best: bool,
    /// Each world's mean over its runs.
    pub world_means: BTreeMap<u64, f64>,
    /// Toward-the-oracle columns: mean over the worlds shared with the oracle of |value −
    /// oracle's| (on the column's scale: |ln v − ln o| for perplexities).
    pub distance: Option<f64>,
    /// `distance` ≤ the noise floor (two oracles' distance): indistinguishable from retraining.
    pub within_floor: bool,
}

impl Stat {
    /// Mean and sample standard deviation of the finite values, taken as runs of one world (no
    /// interval).
    pub fn of(values: &[f64]) -> Option<Stat> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        Some(Stat {
            mean,
            std: sample_std(&v, mean),
            n,
            worlds: 1,
            interval: None,
            basis: Basis::Runs,
            best: false,
            world_means: BTreeMap::from([(0, mean)]),
            distance: None,
            within_floor: false,
        })
    }

    /// `mean [lo, hi]`, or the mean alone without an interval.
    pub fn text(&self) -> String {
        match self.interval {
            Some((lo, hi)) => format!("{} [{}, {}]", fmt_num(self.mean), fmt_num(lo), fmt_num(hi)),
            None => fmt_num(self.mean),
        }
    }
}

fn sample_std(v: &[f64], mean: f64) -> Option<f64> {
    let n = v.len();
    (n >= 2).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt())
}

/// Whether a row passes the utility gate ([`crate::options::Options::gate`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// θ_D and the oracles are not gated.
    Reference,
    /// Every measured criterion passes (the list: each criterion with its ratio).
    Pass(Vec<String>),
    /// At least one criterion fails (the failing ones with their ratios).
    Fail(Vec<String>),
    /// None of the criteria could be measured (their metrics, or θ_D's row, are missing).
    NotMeasured,
}

impl Gate {
    pub fn passes(&self) -> bool {
        matches!(self, Gate::Pass(_))
    }

    /// "pass", "✗ fail: …", "not measured", "reference".
    pub fn text(&self) -> String {
        match self {
            Gate::Reference => "reference".into(),
            Gate::Pass(_) => "pass".into(),
            Gate::Fail(why) => format!("✗ {}", why.join("; ")),
            Gate::NotMeasured => "not measured".into(),
        }
    }
}

/// One configuration (method at one grid point, or a reference) of one model.
#[derive(Clone, Debug)]
pub struct SummaryRow {
    pub method: String,
    pub kind: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub is_reference: bool,
    /// Successful runs (world seeds × method seeds).
    pub runs: usize,
    /// Distinct world seeds among them.
    pub worlds: usize,
    /// By column (record) name.
    pub stats: BTreeMap<String, Stat>,
    pub gate: Gate,
    /// The method's headline row (one per method; see [`crate::options::Options::headline`]);
    /// references are headline rows too.
    pub headline: bool,
    /// Mean seconds of the method's own work (the `unlearn` stage) over the runs.
    pub unlearn_seconds: Option<f64>,
    /// Mean tokens the method trained on (forward and backward passes; the runs'
    /// `method/count/finetune_tokens`), when every run recorded it.
    pub trained_tokens: Option<f64>,
    /// Some run reused fine-tunes cached by another cell (MSA and task negation cache them per
    /// θ_0: the run's time is then the arithmetic alone, not comparable with the others).
    pub cached_finetunes: bool,
}

impl SummaryRow {
    /// `msa (alpha=1.5, beta=0)`, `final (θ_D)`, `retrain (oracle)`, `retrain_alt (second oracle)`.
    pub fn label(&self) -> String {
        match (self.is_reference, self.method.as_str()) {
            (true, REFERENCE_FINAL) => "final (θ_D)".into(),
            (true, REFERENCE_RETRAIN) => "retrain (oracle)".into(),
            (true, REFERENCE_RETRAIN_ALT) => "retrain_alt (second oracle)".into(),
            _ if self.params.is_empty() => self.method.clone(),
            _ => format!("{} ({})", self.method, params_text(&self.params, ", ")),
        }
    }
}

/// A column of the tables: one metric record with its declared target.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub record: String,
    pub target: Target,
    pub scale: Scale,
    /// A name that explains itself ("forget MC accuracy").
    pub label: String,
}

impl Column {
    /// How a cell of this column ranks (smaller is better): Δ toward the oracle, the value by
    /// its direction otherwise; `None` for informational columns (never ranked).
    pub fn badness(&self, st: &Stat) -> Option<f64> {
        match self.target {
            Target::TowardOracle => st.distance,
            Target::HigherIsBetter => Some(-st.mean),
            Target::LowerIsBetter => Some(st.mean),
            Target::Informational | Target::Duplicate => None,
        }
    }

    /// The header: the label, what it is read against, and the oracle's value and the noise
    /// floor when there are: `forget MC accuracy (→ oracle 0.196, floor 0.058)`.
    pub fn header(&self, s: &Summary) -> String {
        let oracle = s.oracle_mean(&self.record);
        let floor = s.noise_floor.as_ref().and_then(|nf| nf.values.get(&self.record));
        let scale = if self.scale == Scale::Log { "; log scale" } else { "" };
        match self.target {
            Target::TowardOracle => match (oracle, floor) {
                (Some(o), Some(f)) => format!("{} (→ oracle {}, floor {}{scale})", self.label, fmt_num(o), fmt_num(*f)),
                (Some(o), None) => format!("{} (→ oracle {}{scale})", self.label, fmt_num(o)),
                _ => format!("{} (→ oracle)", self.label),
            },
            Target::HigherIsBetter => format!("{} ↑", self.label),
            Target::LowerIsBetter => format!("{} ↓", self.label),
            Target::Informational | Target::Duplicate => format!("{} (info)", self.label),
        }
    }
}

/// The noise floor of a distance to the oracle: |retrain_alt − retrain| per column (on the
/// column's scale), averaged over the worlds that have both oracles.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseFloor {
    /// Worlds with both a retrain and a retrain_alt run.
    pub worlds: usize,
    /// By column (record) name.
    pub values: BTreeMap<String, f64>,
}

/// The paper-style table of one model.
#[derive(Clone, Debug)]
pub struct Summary {
    pub model: String,
    /// Columns: toward-the-oracle first, then higher / lower is better, then informational;
    /// by record name within each.
    pub columns: Vec<Column>,
    /// References first (final, retrain, retrain_alt), then methods by name and parameters.
    pub rows: Vec<SummaryRow>,
    /// When a retrain_alt row exists.
    pub noise_floor: Option<NoiseFloor>,
    /// What a reader must know about this table (no oracle, no gate, methods without a
    /// headline point, …); also printed on stderr by `bench report`.
    pub notes: Vec<String>,
}

impl Summary {
    pub fn row(&self, method: &str) -> Option<&SummaryRow> {
        self.rows.iter().find(|r| r.is_reference && r.method == method)
    }

    /// The oracle's mean of a column.
    pub fn oracle_mean(&self, record: &str) -> Option<f64> {
        self.row(REFERENCE_RETRAIN)?.stats.get(record).map(|s| s.mean)
    }

    pub fn column(&self, record: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.record == record)
    }
}

/// The records' targets: what the cells recorded (they must agree), else `evals::registry`.
/// Returns the columns by record name, and messages for records left out of the tables (the
/// long table keeps them): cells that disagree on a record's target, records no metric declares.
pub fn resolve_columns(cells: &[CellFile]) -> (BTreeMap<String, Column>, Vec<String>) {
    let mut seen: BTreeMap<&str, BTreeMap<String, Vec<&CellFile>>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.status == Status::Ok) {
        for (name, m) in &c.metrics {
            let key = match (m.target, m.scale) {
                (Some(t), s) => format!("{}{}", t.as_str(), if s == Some(Scale::Log) { " (log scale)" } else { "" }),
                (None, _) => String::new(),
            };
            seen.entry(name).or_default().entry(key).or_default().push(c);
        }
    }
    let mut columns = BTreeMap::new();
    let mut problems = Vec::new();
    let mut undeclared = Vec::new();
    for (name, by_target) in seen {
        let recorded: Vec<(&String, &Vec<&CellFile>)> = by_target.iter().filter(|(k, _)| !k.is_empty()).collect();
        if recorded.len() > 1 {
            let what: Vec<String> = recorded
                .iter()
                .map(|(t, cs)| format!("{} cell(s) say {t} (e.g. {})", cs.len(), cs[0].path.display()))
                .collect();
            problems.push(format!(
                "metric `{name}` left out of the tables: its cells disagree on its target ({}); the results come from \
                 different versions of the metric — rerun the sweep",
                what.join(", ")
            ));
            continue;
        }
        let declared = evals::registry::record_info(name);
        let (target, scale) = match recorded.first() {
            Some((_, cs)) => {
                let m = &cs[0].metrics[name];
                (m.target.unwrap_or(Target::Informational), m.scale.unwrap_or(Scale::Linear))
            }
            None => match declared {
                Some((_, r)) => (r.target, r.scale),
                None => {
                    undeclared.push(name.to_owned());
                    continue;
                }
            },
        };
        let mut label = declared.map_or_else(|| name.to_owned(), |(_, r)| r.label.to_owned());
        if let Some((attack, _)) = name.strip_prefix("attack/").and_then(|r| r.split_once('/')) {
            label = format!("{label} after {attack}");
        }
        columns.insert(name.to_owned(), Column { record: name.to_owned(), target, scale, label });
    }
    if !undeclared.is_empty() {
        problems.push(format!(
            "left out of the tables (in long.csv only): {} — no target recorded in the cells and none declared in \
             evals::registry (records of an older version, e.g. the forget-split duplicates `mc_accuracy`, \
             `kl_to_oracle`, `perplexity`)",
            undeclared.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    (columns, problems)
}

fn target_rank(t: Target) -> u8 {
    match t {
        Target::TowardOracle => 0,
        Target::HigherIsBetter | Target::LowerIsBetter => 1,
        Target::Informational => 2,
        Target::Duplicate => 3,
    }
}

/// Aggregates the successful cells into one [`Summary`] per model (models by name): columns
/// with their targets ([`resolve_columns`]; duplicates left out), rows with their statistics,
/// the noise floor, the utility gate of each method row, the distances to the oracle, and the
/// best rows. `problems` from [`resolve_columns`] go into every summary's notes.
pub fn summarise(cells: &[CellFile], options: &Options) -> Vec<Summary> {
    let (all_columns, problems) = resolve_columns(cells);
    let mut models: BTreeMap<&str, Vec<Group>> = BTreeMap::new();
    for g in groups(cells) {
        models.entry(g.model).or_default().push(g);
    }
    let mut out = Vec::new();
    for (model, groups) in models {
        let present: std::collections::BTreeSet<&String> =
            groups.iter().flat_map(|g| g.cells.iter().flat_map(|c| c.metrics.keys())).collect();
        let mut columns: Vec<Column> = all_columns
            .values()
            .filter(|c| present.contains(&c.record) && c.target != Target::Duplicate)
            .cloned()
            .collect();
        columns.sort_by(|a, b| target_rank(a.target).cmp(&target_rank(b.target)).then_with(|| a.record.cmp(&b.record)));
        let mut rows: Vec<SummaryRow> = groups.iter().map(|g| summary_row(g, &columns)).collect();
        rows.sort_by(row_order);
        let mut s = Summary { model: model.to_owned(), columns, rows, noise_floor: None, notes: problems.clone() };
        s.noise_floor = noise_floor(&s);
        apply_gate(&mut s, options);
        mark_headline(&mut s, options);
        score_against_oracle(&mut s);
        out.push(s);
    }
    out
}

fn summary_row(g: &Group, columns: &[Column]) -> SummaryRow {
    let stats = columns
        .iter()
        .filter_map(|col| {
            let by_world = g.by_world(&col.record);
            let agg = aggregate(&by_world)?;
            let values: Vec<f64> =
                by_world.values().flatten().filter_map(|m| m.finite_value()).filter(|v| v.is_finite()).collect();
            let world_means = by_world
                .iter()
                .filter_map(|(w, ms)| {
                    let v: Vec<f64> = ms.iter().filter_map(|m| m.finite_value()).filter(|v| v.is_finite()).collect();
                    (!v.is_empty()).then(|| (*w, v.iter().sum::<f64>() / v.len() as f64))
                })
                .collect();
            let stat = Stat {
                mean: agg.mean,
                std: sample_std(&values, values.iter().sum::<f64>() / values.len() as f64),
                n: agg.runs,
                worlds: agg.worlds,
                interval: agg.interval,
                basis: agg.basis,
                best: false,
                world_means,
                distance: None,
                within_floor: false,
            };
            Some((col.record.clone(), stat))
        })
        .collect();
    let secs: Vec<f64> = g.cells.iter().filter_map(|c| c.timings.stages.get("unlearn").copied()).collect();
    let tokens: Vec<f64> =
        g.cells.iter().filter_map(|c| c.timings.stages.get("method/count/finetune_tokens").copied()).collect();
    SummaryRow {
        method: g.method.to_owned(),
        kind: g.kind.to_owned(),
        params: g.params.clone(),
        is_reference: g.is_reference,
        runs: g.cells.len(),
        worlds: g.worlds(),
        stats,
        gate: if g.is_reference { Gate::Reference } else { Gate::NotMeasured },
        headline: g.is_reference,
        unlearn_seconds: (!secs.is_empty()).then(|| secs.iter().sum::<f64>() / secs.len() as f64),
        trained_tokens: (!tokens.is_empty() && tokens.len() == g.cells.len())
            .then(|| tokens.iter().sum::<f64>() / tokens.len() as f64),
        cached_finetunes: g.cells.iter().any(|c| {
            c.timings.stages.contains_key("method/combine") && !c.timings.stages.contains_key("method/finetune_forget")
        }),
    }
}

/// |a − b| on a column's scale (`None` for a non-positive value on a log scale).
pub fn scaled_distance(scale: Scale, a: f64, b: f64) -> Option<f64> {
    match scale {
        Scale::Linear => Some((a - b).abs()),
        Scale::Log if a > 0.0 && b > 0.0 => Some((a.ln() - b.ln()).abs()),
        Scale::Log => None,
    }
}

/// Mean over the worlds both have of the scaled distance between two rows' world means.
pub fn world_distance(scale: Scale, a: &Stat, b: &Stat) -> Option<f64> {
    let d: Vec<f64> =
        a.world_means.iter().filter_map(|(w, x)| scaled_distance(scale, *x, *b.world_means.get(w)?)).collect();
    (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
}

/// Mean over the worlds both have of a's world mean over b's.
pub fn world_ratio(a: &Stat, b: &Stat) -> Option<f64> {
    let r: Vec<f64> = a
        .world_means
        .iter()
        .filter_map(|(w, x)| {
            let y = *b.world_means.get(w)?;
            (y != 0.0).then(|| x / y)
        })
        .filter(|r| r.is_finite())
        .collect();
    (!r.is_empty()).then(|| r.iter().sum::<f64>() / r.len() as f64)
}

fn noise_floor(s: &Summary) -> Option<NoiseFloor> {
    let alt = s.row(REFERENCE_RETRAIN_ALT)?;
    let oracle = s.row(REFERENCE_RETRAIN);
    let worlds = oracle.map_or(0, |o| {
        let ow: std::collections::BTreeSet<u64> =
            o.stats.values().flat_map(|st| st.world_means.keys().copied()).collect();
        let aw: std::collections::BTreeSet<u64> =
            alt.stats.values().flat_map(|st| st.world_means.keys().copied()).collect();
        ow.intersection(&aw).count()
    });
    let mut values = BTreeMap::new();
    if let Some(o) = oracle {
        for col in &s.columns {
            if let (Some(a), Some(b)) = (alt.stats.get(&col.record), o.stats.get(&col.record)) {
                if let Some(d) = world_distance(col.scale, a, b) {
                    values.insert(col.record.clone(), d);
                }
            }
        }
    }
    Some(NoiseFloor { worlds, values })
}

fn apply_gate(s: &mut Summary, options: &Options) {
    let Some(final_row) = s.row(REFERENCE_FINAL).cloned() else {
        s.notes.push("no θ_D (final) row: the utility gate cannot be applied, so no row is marked best".into());
        return;
    };
    let measured: Vec<&GateCriterion> =
        options.gate.iter().filter(|c| final_row.stats.contains_key(&c.metric)).collect();
    let missing: Vec<String> =
        options.gate.iter().filter(|c| !final_row.stats.contains_key(&c.metric)).map(|c| c.describe()).collect();
    if measured.is_empty() {
        s.notes.push(format!(
            "utility gate not measured ({}: not in the results), so no row is marked best; set [report] gate to \
             criteria on metrics this sweep scores",
            if missing.is_empty() { "no criteria".to_owned() } else { missing.join("; ") }
        ));
    } else if !missing.is_empty() {
        s.notes.push(format!("utility gate criteria not measured (not in the results): {}", missing.join("; ")));
    }
    for row in s.rows.iter_mut().filter(|r| !r.is_reference) {
        let mut passed = Vec::new();
        let mut failed = Vec::new();
        for c in &measured {
            let ratio = row.stats.get(&c.metric).and_then(|st| world_ratio(st, &final_row.stats[&c.metric]));
            match ratio {
                Some(r) if c.passes(r) => passed.push(format!("{}: {} × θ_D's", c.metric, fmt_num(r))),
                Some(r) => failed.push(format!("{} {} × θ_D's", c.metric, fmt_num(r))),
                None => failed.push(format!("{} not measured", c.metric)),
            }
        }
        row.gate = if measured.is_empty() {
            Gate::NotMeasured
        } else if failed.is_empty() {
            Gate::Pass(passed)
        } else {
            Gate::Fail(failed)
        };
    }
}

fn mark_headline(s: &mut Summary, options: &Options) {
    let mut methods: Vec<String> = s.rows.iter().filter(|r| !r.is_reference).map(|r| r.method.clone()).collect();
    methods.dedup();
    for method in methods {
        let idx: Vec<usize> =
            (0..s.rows.len()).filter(|&i| !s.rows[i].is_reference && s.rows[i].method == method).collect();
        let chosen: Vec<usize> = match options.headline.get(&method) {
            Some(_) => {
                idx.iter().copied().filter(|&i| options.is_headline(&method, &s.rows[i].params) == Some(true)).collect()
            }
            None if idx.len() == 1 => idx.clone(),
            None => {
                s.notes.push(format!(
                    "{method}: {} grid points and no headline point declared ([report] headline.{method} = {{ PARAM = \
                     VALUE }}, the point chosen on the validation world): it appears in the appendix and the figures only",
                    idx.len()
                ));
                continue;
            }
        };
        match chosen.as_slice() {
            [one] => s.rows[*one].headline = true,
            [] => s.notes.push(format!(
                "{method}: no grid point matches the declared headline point {}: it appears in the appendix only",
                params_text(&options.headline[&method], ", ")
            )),
            many => s.notes.push(format!(
                "{method}: {} grid points match the declared headline point {} (name more parameters): it appears in \
                 the appendix only",
                many.len(),
                params_text(&options.headline[&method], ", ")
            )),
        }
    }
}

/// Distances to the oracle, the noise-floor marks and the best rows (among gate-passing method
/// rows only: toward-the-oracle columns by the smallest distance, the others by their direction).
fn score_against_oracle(s: &mut Summary) {
    let oracle = s.row(REFERENCE_RETRAIN).cloned();
    if oracle.is_none() && s.columns.iter().any(|c| c.target == Target::TowardOracle) {
        s.notes.push(
            "no oracle (retrain) row: toward-the-oracle columns show their values without distances and no row is \
             marked best in them"
                .into(),
        );
    }
    let floor = s.noise_floor.clone();
    if floor.is_none() && oracle.is_some() {
        s.notes.push(
            "no second oracle (world.noise_floor = false): distances to the oracle cannot be read against a noise \
             floor, so no row is marked indistinguishable from retraining"
                .into(),
        );
    }
    for col in s.columns.clone() {
        if col.target == Target::TowardOracle {
            let Some(o) = oracle.as_ref().and_then(|o| o.stats.get(&col.record)) else { continue };
            let f = floor.as_ref().and_then(|nf| nf.values.get(&col.record)).copied();
            for row in s.rows.iter_mut().filter(|r| !(r.is_reference && r.method == REFERENCE_RETRAIN)) {
                let gated = row.gate.passes();
                if let Some(st) = row.stats.get_mut(&col.record) {
                    st.distance = world_distance(col.scale, st, o);
                    st.within_floor = gated && matches!((st.distance, f), (Some(d), Some(f)) if d <= f + 1e-12);
                }
            }
        }
        let badness = |st: &Stat| col.badness(st);
        let best = s
            .rows
            .iter()
            .filter(|r| r.gate.passes())
            .filter_map(|r| r.stats.get(&col.record).and_then(badness))
            .min_by(f64::total_cmp);
        if let Some(best) = best {
            for row in s.rows.iter_mut().filter(|r| r.gate.passes()) {
                if let Some(st) = row.stats.get_mut(&col.record) {
                    st.best = badness(st).is_some_and(|b| b <= best + 1e-12 * best.abs().max(1.0));
                }
            }
        }
    }
}

fn row_order(a: &SummaryRow, b: &SummaryRow) -> Ordering {
    let rank = |r: &SummaryRow| match (r.is_reference, r.method.as_str()) {
        (true, REFERENCE_FINAL) => 0,
        (true, REFERENCE_RETRAIN) => 1,
        (true, REFERENCE_RETRAIN_ALT) => 2,
        (true, _) => 3,
        _ => 4,
    };
    rank(a).cmp(&rank(b)).then_with(|| a.method.cmp(&b.method)).then_with(|| cmp_params(&a.params, &b.params))
}

/// Parameters compared key by key, numbers numerically (before strings).
pub fn cmp_params(a: &BTreeMap<String, serde_json::Value>, b: &BTreeMap<String, serde_json::Value>) -> Ordering {
    for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
        let o = ka.cmp(kb).then_with(|| match (va.as_f64(), vb.as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => format_param(va).cmp(&format_param(vb)),
        });
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

pub(crate) fn params_text(params: &BTreeMap<String, serde_json::Value>, sep: &str) -> String {
    params.iter().map(|(k, v)| format!("{k}={}", format_param(v))).collect::<Vec<_>>().join(sep)
}

/// The label of the noise-floor row.
pub const NOISE_FLOOR_LABEL: &str = "noise floor (two oracles)";

/// How a summary cell reads: `mean [lo, hi]`, then for toward-the-oracle columns `Δ d` (the
/// distance to the oracle) and `≈ oracle` when within the noise floor.
pub fn cell_text(col: &Column, st: &Stat) -> String {
    let mut t = st.text();
    // (a distance to the oracle itself, e.g. KL, has the oracle at 0: its Δ is its value)
    if let Some(d) = st.distance.filter(|d| (d - st.mean).abs() > 1e-12 * d.abs().max(1.0)) {
        let _ = write!(t, " · Δ{}{}", if col.scale == Scale::Log { "ln " } else { " " }, fmt_num(d));
    }
    if st.within_floor {
        t.push_str(" ≈ oracle");
    }
    t
}

/// The full table of one model (every column but the attacks' — see [`crate::robustness`] —,
/// every row; the appendix).
pub fn full_table(s: &Summary) -> Table {
    let columns: Vec<&Column> = s.columns.iter().filter(|c| !c.record.starts_with("attack/")).collect();
    let mut header: Vec<String> = vec!["method".into(), "worlds".into(), "runs".into(), "utility gate".into()];
    header.extend(columns.iter().map(|c| c.header(s)));
    let mut t = Table {
        right: [false, true, true, false].into_iter().chain(columns.iter().map(|_| true)).collect(),
        header,
        ..Default::default()
    };
    let references = s.rows.iter().filter(|r| r.is_reference).count();
    for (i, r) in s.rows.iter().enumerate() {
        let mut line = vec![
            Cell::with(r.label(), if r.is_reference { Emphasis::Muted } else { Emphasis::None }),
            Cell::plain(r.worlds.to_string()),
            Cell::plain(r.runs.to_string()),
            gate_cell(&r.gate),
        ];
        for col in &columns {
            line.push(match r.stats.get(&col.record) {
                Some(st) => Cell::with(cell_text(col, st), if st.best { Emphasis::Strong } else { Emphasis::None }),
                None => Cell::plain("–"),
            });
        }
        t.rows.push(line);
        if i + 1 == references {
            if let Some(nf) = &s.noise_floor {
                let mut line = vec![
                    Cell::with(NOISE_FLOOR_LABEL, Emphasis::Muted),
                    Cell::plain(nf.worlds.to_string()),
                    Cell::plain("–"),
                    Cell::plain(""),
                ];
                for col in &columns {
                    let v = nf.values.get(&col.record).filter(|_| col.target == Target::TowardOracle);
                    line.push(v.map_or(Cell::plain("–"), |v| Cell::with(fmt_num(*v), Emphasis::Muted)));
                }
                t.rows.push(line);
            }
            t.rules_after.push(t.rows.len() - 1);
        }
    }
    t.note = footnote(s);
    t
}

pub(crate) fn gate_cell(g: &Gate) -> Cell {
    match g {
        Gate::Fail(_) => Cell { text: "✗ fail".into(), emphasis: Emphasis::Alert, title: Some(g.text()) },
        Gate::Pass(why) => Cell { text: "pass".into(), emphasis: Emphasis::None, title: Some(why.join("; ")) },
        Gate::NotMeasured => Cell::plain("not measured"),
        Gate::Reference => Cell::plain(""),
    }
}

/// The note under a model's full table: how the numbers were made, which columns were
/// bootstrapped over run values, which rows have one run (no interval), what the marks mean.
fn footnote(s: &Summary) -> String {
    let mut out = format!(
        "Mean over world seeds (each world: the mean over its method seeds) [{:.0} % interval: two-level percentile \
         bootstrap, clusters = world seeds, examples = per-example values averaged over a world's method seeds; \
         {} replicates, seed {}]. Columns marked → oracle are judged by Δ, the distance to the oracle (mean over \
         worlds of |value − oracle's|; on a log scale |ln value − ln oracle's|), not by how low they are; ↑/↓ \
         columns by their value. Bold: the best row among those that pass the utility gate; \"≈ oracle\": a \
         gate-passing row whose Δ is within the noise floor, indistinguishable from retraining.",
        BOOTSTRAP.level * 100.0,
        BOOTSTRAP.replicates,
        BOOTSTRAP.seed
    );
    let by_runs: Vec<&str> = s
        .columns
        .iter()
        .filter(|c| {
            s.rows
                .iter()
                .any(|r| r.stats.get(&c.record).is_some_and(|st| st.interval.is_some() && st.basis == Basis::Runs))
        })
        .map(|c| c.record.as_str())
        .collect();
    if !by_runs.is_empty() {
        let _ = write!(
            out,
            " Bootstrapped over run values (no usable per-example values: none, the value is not their mean, or one \
             per world): {}.",
            by_runs.join(", ")
        );
    }
    if s.rows.iter().all(|r| r.runs <= 1) {
        out.push_str(" Every row is one run: no intervals (a smoke test, not a result: add world or method seeds).");
    } else {
        let single: Vec<String> = s.rows.iter().filter(|r| r.runs == 1).map(|r| r.label()).collect();
        if !single.is_empty() {
            let _ = write!(out, " 1 run: no interval ({}).", single.join("; "));
        }
    }
    if let Some(nf) = &s.noise_floor {
        let _ = write!(
            out,
            " {}: Δ of the second oracle (another data-order seed) to the oracle, mean over the {} world(s) with \
             both: a distance below it is noise.",
            NOISE_FLOOR_LABEL, nf.worlds
        );
    }
    out
}

/// Markdown list of failed cells with their error chains.
pub fn failed_markdown(cells: &[CellFile]) -> String {
    let failed: Vec<&CellFile> = cells.iter().filter(|c| c.status == Status::Failed).collect();
    if failed.is_empty() {
        return "No failed cells.\n".into();
    }
    let mut out = format!("{} failed cell(s):\n\n", failed.len());
    for c in failed {
        let chain = if c.error_chain.is_empty() { "(no error recorded)".to_owned() } else { c.error_chain.join(": ") };
        let _ = writeln!(out, "- `{}` — {}", c.cell.id, chain.replace('\n', " "));
    }
    out
}
