//! The report's tables: the long table (one row per cell × metric, CSV and Parquet) and the
//! paper-style tables (one per model: configurations × metrics, mean ± sample standard
//! deviation over seeds, the best method row per column in bold), in Markdown and LaTeX.
//!
//! "Best" respects each metric's direction (higher / lower / closer to a target) and is chosen
//! among the method rows only: θ_D ("final") and the oracle ("retrain") are references, shown
//! first and never marked. Failed cells contribute no values; they are listed separately.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::results::{CellFile, Direction, Status};
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
    let mut out = String::from("sweep,cell,method,kind,params,model,seed,metric,value,direction\n");
    for r in rows {
        let value = r.value.map(|v| format!("{v}")).unwrap_or_default();
        let fields = [
            r.sweep.as_str(),
            &r.cell,
            &r.method,
            &r.kind,
            &r.params,
            &r.model,
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

/// The Parquet schema of the long table: the CSV's columns with their types. `seed` is an
/// unsigned 64-bit integer; `value` is the only nullable column (null where the CSV is empty).
pub const LONG_PARQUET_SCHEMA: &str = "message long {
    REQUIRED BYTE_ARRAY sweep (STRING);
    REQUIRED BYTE_ARRAY cell (STRING);
    REQUIRED BYTE_ARRAY method (STRING);
    REQUIRED BYTE_ARRAY kind (STRING);
    REQUIRED BYTE_ARRAY params (STRING);
    REQUIRED BYTE_ARRAY model (STRING);
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
                let seeds: Vec<i64> = rows.iter().map(|r| r.seed as i64).collect();
                col.typed::<Int64Type>().write_batch(&seeds, None, None)
            }
            7 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.metric), None, None),
            8 => {
                // Definition level 1 = present, 0 = null; only present values are passed.
                let present: Vec<f64> = rows.iter().filter_map(|r| r.value).collect();
                let levels: Vec<i16> = rows.iter().map(|r| i16::from(r.value.is_some())).collect();
                col.typed::<DoubleType>().write_batch(&present, Some(&levels), None)
            }
            9 => col.typed::<ByteArrayType>().write_batch(&strings(|r| &r.direction), None, None),
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

/// Mean and sample standard deviation (n − 1) of the finite values over seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    pub mean: f64,
    /// `None` with fewer than two values.
    pub std: Option<f64>,
    pub n: usize,
    /// Best method row in its column.
    pub best: bool,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (n >= 2).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Some(Stat { mean, std, n, best: false })
    }

    fn text(&self) -> String {
        match self.std {
            Some(s) => format!("{} ± {}", fmt_num(self.mean), fmt_num(s)),
            None => fmt_num(self.mean),
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
    /// Seeds with a successful result.
    pub seeds: usize,
    /// By metric name.
    pub stats: BTreeMap<String, Stat>,
}

impl SummaryRow {
    /// `msa (alpha=1.5, beta=0)`, `final (θ_D)`, `retrain (oracle)`.
    pub fn label(&self) -> String {
        match (self.is_reference, self.method.as_str()) {
            (true, "final") => "final (θ_D)".into(),
            (true, "retrain") => "retrain (oracle)".into(),
            _ if self.params.is_empty() => self.method.clone(),
            _ => format!("{} ({})", self.method, params_text(&self.params, ", ")),
        }
    }
}

/// The paper-style table of one model.
#[derive(Clone, Debug)]
pub struct Summary {
    pub model: String,
    /// Metric columns, by name, with their direction.
    pub metrics: Vec<(String, Direction)>,
    /// References first (final, retrain), then methods by name and parameters.
    pub rows: Vec<SummaryRow>,
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
    // model → (row key) → (row, metric → values)
    let mut models: BTreeMap<&str, Vec<(SummaryRow, BTreeMap<String, Vec<f64>>)>> = BTreeMap::new();
    let mut directions: BTreeMap<&str, BTreeMap<String, Direction>> = BTreeMap::new();
    for c in cells.iter().filter(|c| c.status == Status::Ok) {
        let rows = models.entry(&c.cell.model).or_default();
        let pos = rows.iter().position(|(r, _)| r.method == c.cell.method && r.params == c.cell.params);
        let pos = pos.unwrap_or_else(|| {
            rows.push((
                SummaryRow {
                    method: c.cell.method.clone(),
                    kind: c.cell.kind.clone(),
                    params: c.cell.params.clone(),
                    is_reference: c.cell.is_reference(),
                    seeds: 0,
                    stats: BTreeMap::new(),
                },
                BTreeMap::new(),
            ));
            rows.len() - 1
        });
        rows[pos].0.seeds += 1;
        for (name, m) in &c.metrics {
            rows[pos].1.entry(name.clone()).or_default().push(m.value.unwrap_or(f64::NAN));
            directions.entry(&c.cell.model).or_default().entry(name.clone()).or_insert(m.direction);
        }
    }
    let mut out = Vec::new();
    for (model, rows) in models {
        let metrics: Vec<(String, Direction)> = directions.remove(model).unwrap_or_default().into_iter().collect();
        let mut rows: Vec<SummaryRow> = rows
            .into_iter()
            .map(|(mut row, values)| {
                row.stats = values.iter().filter_map(|(k, v)| Some((k.clone(), Stat::of(v)?))).collect();
                row
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
        out.push(Summary { model: model.to_owned(), metrics, rows });
    }
    out
}

fn row_order(a: &SummaryRow, b: &SummaryRow) -> Ordering {
    let rank = |r: &SummaryRow| match (r.is_reference, r.method.as_str()) {
        (true, "final") => 0,
        (true, "retrain") => 1,
        (true, _) => 2,
        _ => 3,
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

/// Markdown: one `### Model NAME` section with a table per model.
pub fn markdown(summaries: &[Summary]) -> String {
    let mut out = String::new();
    for s in summaries {
        let _ = writeln!(out, "### Model `{}`\n", s.model);
        let mut header = String::from("| method | seeds |");
        let mut rule = String::from("|---|---:|");
        for (m, d) in &s.metrics {
            let _ = write!(header, " {m} {} |", d.arrow());
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for r in &s.rows {
            let mut line = format!("| {} | {} |", r.label().replace('|', "\\|"), r.seeds);
            for (m, _) in &s.metrics {
                let cell = match r.stats.get(m) {
                    Some(st) if st.best => format!("**{}**", st.text()),
                    Some(st) => st.text(),
                    None => "–".into(),
                };
                let _ = write!(line, " {cell} |");
            }
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    out
}

/// LaTeX: one `table` (booktabs) per model; best in `\textbf`.
pub fn latex(summaries: &[Summary]) -> String {
    let mut out = String::from("% Generated by `bench report`; needs \\usepackage{booktabs}.\n");
    for s in summaries {
        let _ = writeln!(out, "\\begin{{table}}[t]\n\\centering\n\\small");
        let _ = writeln!(out, "\\begin{{tabular}}{{lr{}}}\n\\toprule", "r".repeat(s.metrics.len()));
        let mut header = String::from("Method & Seeds");
        for (m, d) in &s.metrics {
            let arrow = match d {
                Direction::HigherIsBetter => "$\\uparrow$".to_owned(),
                Direction::LowerIsBetter => "$\\downarrow$".to_owned(),
                Direction::CloserTo(t) => format!("$\\rightarrow {}$", fmt_num(*t)),
            };
            let _ = write!(header, " & {} {arrow}", latex_escape(m));
        }
        let _ = writeln!(out, "{header} \\\\\n\\midrule");
        let mut references_done = false;
        for r in &s.rows {
            if !r.is_reference && !references_done {
                references_done = true;
                if s.rows.iter().any(|x| x.is_reference) {
                    let _ = writeln!(out, "\\midrule");
                }
            }
            let label = match (r.is_reference, r.method.as_str()) {
                (true, "final") => "final ($\\theta_D$)".to_owned(),
                (true, "retrain") => "retrain (oracle)".to_owned(),
                _ => latex_escape(&r.label()),
            };
            let mut line = format!("{label} & {}", r.seeds);
            for (m, _) in &s.metrics {
                let cell = match r.stats.get(m) {
                    Some(st) => {
                        let t = match st.std {
                            Some(sd) => format!("{} $\\pm$ {}", fmt_num(st.mean), fmt_num(sd)),
                            None => fmt_num(st.mean),
                        };
                        if st.best {
                            format!("\\textbf{{{t}}}")
                        } else {
                            t
                        }
                    }
                    None => "--".into(),
                };
                let _ = write!(line, " & {cell}");
            }
            let _ = writeln!(out, "{line} \\\\");
        }
        let _ = writeln!(
            out,
            "\\bottomrule\n\\end{{tabular}}\n\\caption{{Model {}: mean $\\pm$ std over seeds; best method per column in bold.}}\n\\end{{table}}\n",
            latex_escape(&s.model)
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
