//! The report's tables: the long table (one row per cell × metric, CSV and Parquet) and the
//! paper-style tables (one per model: configurations × metrics, each cell the mean over world
//! seeds with its 95 % cluster bootstrap interval `mean [lo, hi]` — see [`crate::aggregate`];
//! a row of one run shows its value and the footnote says "1 run: no interval" — the best
//! method row per column in bold), in Markdown and LaTeX.
//!
//! "Best" respects each metric's direction (higher / lower / closer to a target) and is chosen
//! among the method rows only: θ_D ("final"), the oracle ("retrain") and the second oracle
//! ("retrain_alt") are references, shown first and never marked. With a second oracle, the
//! row "noise floor (two oracles)" follows them: |retrain_alt − retrain| per metric, averaged
//! over worlds. Failed cells contribute no values; they are listed separately.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::aggregate::{aggregate, groups, Basis, Group, BOOTSTRAP};
use crate::results::{CellFile, Direction, Status, REFERENCE_FINAL, REFERENCE_RETRAIN, REFERENCE_RETRAIN_ALT};
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
                value: m.value.filter(|v| v.is_finite()),
                direction: m.direction.as_str(),
            });
        }
    }
    rows
}

/// Writes the long table as CSV (RFC 4180 quoting; an empty `value` is a non-finite one).
pub fn write_long_csv(rows: &[LongRow], path: &Path) -> Result<()> {
    let mut out = String::from("sweep,cell,method,kind,params,model,world_seed,seed,metric,value,direction\n");
    for r in rows {
        let value = r.value.map(|v| format!("{v}")).unwrap_or_default();
        let fields = [
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
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("{}: cannot write", path.display()))
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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One table cell: the mean over world seeds (of each world's mean over method seeds), the
/// 95 % cluster bootstrap interval when more than one run contributes (see
/// [`crate::aggregate`]), and the sample standard deviation over runs (kept for callers; the
/// tables show the interval).
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
    /// Best method row in its column.
    pub best: bool,
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
        Some(Stat { mean, std: sample_std(&v, mean), n, worlds: 1, interval: None, basis: Basis::Runs, best: false })
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
    /// By metric name.
    pub stats: BTreeMap<String, Stat>,
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

/// The noise floor of a distance to the oracle: |retrain_alt − retrain| per metric, averaged
/// over the worlds that have both oracles.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseFloor {
    /// Worlds with both a retrain and a retrain_alt run.
    pub worlds: usize,
    /// By metric name (metrics with a finite value in both oracles of at least one world).
    pub values: BTreeMap<String, f64>,
}

/// The paper-style table of one model.
#[derive(Clone, Debug)]
pub struct Summary {
    pub model: String,
    /// Metric columns, by name, with their direction.
    pub metrics: Vec<(String, Direction)>,
    /// References first (final, retrain, retrain_alt), then methods by name and parameters.
    pub rows: Vec<SummaryRow>,
    /// When a retrain_alt row exists.
    pub noise_floor: Option<NoiseFloor>,
}

/// The same summaries with only the headline metrics (names without a `/` sub-value part).
pub fn headline(summaries: &[Summary]) -> Vec<Summary> {
    summaries
        .iter()
        .map(|s| Summary {
            metrics: s.metrics.iter().filter(|(n, _)| !n.contains('/')).cloned().collect(),
            ..s.clone()
        })
        .collect()
}

/// Aggregates the successful cells into one [`Summary`] per model (models by name).
pub fn summarise(cells: &[CellFile]) -> Vec<Summary> {
    let mut models: BTreeMap<&str, Vec<Group>> = BTreeMap::new();
    let mut directions: BTreeMap<&str, BTreeMap<String, Direction>> = BTreeMap::new();
    for g in groups(cells) {
        for c in &g.cells {
            for (name, m) in &c.metrics {
                directions.entry(g.model).or_default().entry(name.clone()).or_insert(m.direction);
            }
        }
        models.entry(g.model).or_default().push(g);
    }
    let mut out = Vec::new();
    for (model, groups) in models {
        let metrics: Vec<(String, Direction)> = directions.remove(model).unwrap_or_default().into_iter().collect();
        let mut rows: Vec<SummaryRow> = groups
            .iter()
            .map(|g| {
                let stats = metrics
                    .iter()
                    .filter_map(|(name, _)| {
                        let by_world = g.by_world(name);
                        let agg = aggregate(&by_world)?;
                        let values: Vec<f64> =
                            by_world.values().flatten().filter_map(|m| m.value).filter(|v| v.is_finite()).collect();
                        let stat = Stat {
                            mean: agg.mean,
                            std: sample_std(&values, values.iter().sum::<f64>() / values.len() as f64),
                            n: agg.runs,
                            worlds: agg.worlds,
                            interval: agg.interval,
                            basis: agg.basis,
                            best: false,
                        };
                        Some((name.clone(), stat))
                    })
                    .collect();
                SummaryRow {
                    method: g.method.to_owned(),
                    kind: g.kind.to_owned(),
                    params: g.params.clone(),
                    is_reference: g.is_reference,
                    runs: g.cells.len(),
                    worlds: g.worlds(),
                    stats,
                }
            })
            .collect();
        rows.sort_by(row_order);
        for (metric, dir) in &metrics {
            let best = rows
                .iter()
                .filter(|r| !r.is_reference)
                .filter_map(|r| r.stats.get(metric))
                .map(|s| dir.badness(s.mean))
                .min_by(f64::total_cmp);
            if let Some(best) = best {
                for row in rows.iter_mut().filter(|r| !r.is_reference) {
                    if let Some(s) = row.stats.get_mut(metric) {
                        s.best = dir.badness(s.mean) <= best + 1e-12 * best.abs().max(1.0);
                    }
                }
            }
        }
        let noise_floor = noise_floor(&groups, &metrics);
        out.push(Summary { model: model.to_owned(), metrics, rows, noise_floor });
    }
    out
}

/// |retrain_alt − retrain| per metric and world (each side the mean of its finite runs in that
/// world), averaged over the worlds that have both; `None` without a retrain_alt group.
fn noise_floor(groups: &[Group], metrics: &[(String, Direction)]) -> Option<NoiseFloor> {
    let find = |name: &str| groups.iter().find(|g| g.is_reference && g.method == name);
    let (oracle, alt) = (find(REFERENCE_RETRAIN), find(REFERENCE_RETRAIN_ALT)?);
    let world_set = |g: &Group| g.cells.iter().map(|c| c.cell.world_seed).collect::<std::collections::BTreeSet<_>>();
    let worlds = oracle.map_or(0, |o| world_set(o).intersection(&world_set(alt)).count());
    let mut values = BTreeMap::new();
    if let Some(oracle) = oracle {
        for (metric, _) in metrics {
            let world_means = |g: &Group| -> BTreeMap<u64, f64> {
                g.by_world(metric)
                    .into_iter()
                    .filter_map(|(w, ms)| {
                        let v: Vec<f64> = ms.iter().filter_map(|m| m.value).filter(|v| v.is_finite()).collect();
                        (!v.is_empty()).then(|| (w, v.iter().sum::<f64>() / v.len() as f64))
                    })
                    .collect()
            };
            let (o, a) = (world_means(oracle), world_means(alt));
            let gaps: Vec<f64> = o.iter().filter_map(|(w, x)| Some((a.get(w)? - x).abs())).collect();
            if !gaps.is_empty() {
                values.insert(metric.clone(), gaps.iter().sum::<f64>() / gaps.len() as f64);
            }
        }
    }
    Some(NoiseFloor { worlds, values })
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

/// The footnote under a model's table: how the numbers were made, which metrics were
/// bootstrapped over run values, which rows have one run (no interval), what the noise floor is.
fn footnote(s: &Summary) -> String {
    let mut out = format!(
        "Mean over world seeds (each world: the mean over its method seeds) [{:.0} % interval: two-level percentile \
         bootstrap, clusters = world seeds, examples = per-example values averaged over a world's method seeds; \
         {} replicates, seed {}].",
        BOOTSTRAP.level * 100.0,
        BOOTSTRAP.replicates,
        BOOTSTRAP.seed
    );
    let mut by_runs: Vec<&str> = s
        .metrics
        .iter()
        .filter(|(m, _)| {
            s.rows.iter().any(|r| r.stats.get(m).is_some_and(|st| st.interval.is_some() && st.basis == Basis::Runs))
        })
        .map(|(m, _)| m.as_str())
        .collect();
    by_runs.dedup();
    if !by_runs.is_empty() {
        let _ = write!(
            out,
            " Bootstrapped over run values (no usable per-example values: none, the value is not their mean, or one \
             per world): {}.",
            by_runs.join(", ")
        );
    }
    let single: Vec<String> = s.rows.iter().filter(|r| r.runs == 1).map(|r| r.label()).collect();
    if !single.is_empty() {
        let _ = write!(out, " 1 run: no interval ({}).", single.join("; "));
    }
    if let Some(nf) = &s.noise_floor {
        let _ = write!(
            out,
            " {}: |retrain_alt − retrain|, the second oracle (another data-order seed) against the oracle, mean over \
             the {} world(s) with both: a distance to the oracle below it is noise.",
            NOISE_FLOOR_LABEL, nf.worlds
        );
    }
    out
}

/// Markdown: one `### Model NAME` section with a table per model and its footnote.
pub fn markdown(summaries: &[Summary]) -> String {
    let mut out = String::new();
    for s in summaries {
        let _ = writeln!(out, "### Model `{}`\n", s.model);
        let mut header = String::from("| method | worlds | runs |");
        let mut rule = String::from("|---|---:|---:|");
        for (m, d) in &s.metrics {
            let _ = write!(header, " {m} {} |", d.arrow());
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        let references = s.rows.iter().filter(|r| r.is_reference).count();
        for (i, r) in s.rows.iter().enumerate() {
            let mut line = format!("| {} | {} | {} |", r.label().replace('|', "\\|"), r.worlds, r.runs);
            for (m, _) in &s.metrics {
                let cell = match r.stats.get(m) {
                    Some(st) if st.best => format!("**{}**", st.text()),
                    Some(st) => st.text(),
                    None => "–".into(),
                };
                let _ = write!(line, " {cell} |");
            }
            let _ = writeln!(out, "{line}");
            if i + 1 == references {
                if let Some(nf) = &s.noise_floor {
                    let mut line = format!("| *{NOISE_FLOOR_LABEL}* | {} | – |", nf.worlds);
                    for (m, _) in &s.metrics {
                        let cell = nf.values.get(m).map_or("–".into(), |v| format!("*{}*", fmt_num(*v)));
                        let _ = write!(line, " {cell} |");
                    }
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        let _ = writeln!(out, "\n{}\n", footnote(s));
    }
    out
}

/// LaTeX: one `table` (booktabs) per model; best in `\textbf`; the footnote as the caption.
pub fn latex(summaries: &[Summary]) -> String {
    let mut out = String::from("% Generated by `bench report`; needs \\usepackage{booktabs}.\n");
    for s in summaries {
        let _ = writeln!(out, "\\begin{{table}}[t]\n\\centering\n\\small");
        let _ = writeln!(out, "\\begin{{tabular}}{{lrr{}}}\n\\toprule", "r".repeat(s.metrics.len()));
        let mut header = String::from("Method & Worlds & Runs");
        for (m, d) in &s.metrics {
            let arrow = match d {
                Direction::HigherIsBetter => "$\\uparrow$".to_owned(),
                Direction::LowerIsBetter => "$\\downarrow$".to_owned(),
                Direction::CloserTo(t) => format!("$\\rightarrow {}$", fmt_num(*t)),
            };
            let _ = write!(header, " & {} {arrow}", latex_escape(m));
        }
        let _ = writeln!(out, "{header} \\\\\n\\midrule");
        let references = s.rows.iter().filter(|r| r.is_reference).count();
        for (i, r) in s.rows.iter().enumerate() {
            let label = match (r.is_reference, r.method.as_str()) {
                (true, REFERENCE_FINAL) => "final ($\\theta_D$)".to_owned(),
                _ => latex_escape(&r.label()),
            };
            let mut line = format!("{label} & {} & {}", r.worlds, r.runs);
            for (m, _) in &s.metrics {
                let cell = match r.stats.get(m) {
                    Some(st) if st.best => format!("\\textbf{{{}}}", st.text()),
                    Some(st) => st.text(),
                    None => "--".into(),
                };
                let _ = write!(line, " & {cell}");
            }
            let _ = writeln!(out, "{line} \\\\");
            if i + 1 == references {
                if let Some(nf) = &s.noise_floor {
                    let mut line = format!("\\emph{{{}}} & {} & --", NOISE_FLOOR_LABEL, nf.worlds);
                    for (m, _) in &s.metrics {
                        let cell = nf.values.get(m).map_or("--".into(), |v| format!("\\emph{{{}}}", fmt_num(*v)));
                        let _ = write!(line, " & {cell}");
                    }
                    let _ = writeln!(out, "{line} \\\\");
                }
                if i + 1 < s.rows.len() {
                    let _ = writeln!(out, "\\midrule");
                }
            }
        }
        let _ = writeln!(
            out,
            "\\bottomrule\n\\end{{tabular}}\n\\caption{{Model {}. {} Best method per column in bold.}}\n\\end{{table}}\n",
            latex_escape(&s.model),
            latex_escape(&footnote(s))
        );
    }
    out
}

fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '_' | '%' | '&' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            'θ' => out.push_str("$\\theta$"),
            '−' => out.push_str("$-$"),
            '|' => out.push_str("$|$"),
            '×' => out.push_str("$\\times$"),
            c => out.push(c),
        }
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
