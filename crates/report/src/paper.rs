//! The reproduction table: when a model's world is a paper benchmark ([`BENCHMARKS`]: TOFU,
//! `world.kind = "tofu"`, and RESTOR, `world.kind = "restor"`), the report shows, right after
//! the headline, the MSA paper's table (Rezaei et al., ICLR 2026, "Revisiting the Past: Data
//! Unlearning with Model State History", arXiv 2506.20941) as the paper lays it out — our
//! values in its columns and order ([`Benchmark::columns`]: TOFU's Acc_forget, Acc_recover,
//! Acc_retain, MU, FQ; RESTOR's Acc, TOFU-prob, MU), one row per method at its headline point
//! plus θ_D and the oracle — and beside them, as a separate column group, the paper's
//! published numbers for the matching row ([`ROW_OF_METHOD`]).
//!
//! The paper's numbers ([`PAPER_TABLES`]) are typed in from `paper-numbers.md`, a **secondary
//! source** (summaries of the paper's v2/v3, not the PDF; presumed model Llama-3.2-1B-Instruct),
//! so they are labelled "paper (secondary source, unverified)" and every number keeps where it
//! came from ([`PaperTable::source`] and the row's name: hover text in HTML, the "paper row"
//! column everywhere). Replace them here when the paper's own tables can be read.
//!
//! The columns are comparable in meaning, not in value: the paper's Acc_* are judged by GPT-4o,
//! ours by the deterministic ROUGE-L closest-candidate judge (`evals::judge`); the paper's
//! "ideal" model is a separately trained retain model, our retrain row is the exact oracle.
//! RESTOR's Acc (the share of questions answered correctly) is ours as 1 − `acc_forget` (the
//! share whose ground truth is the closest candidate to the model's answer).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::render::{Cell, ColumnGroup, Emphasis, Table};
use crate::results::{CellFile, REFERENCE_FINAL, REFERENCE_RETRAIN};
use crate::tables::{Summary, SummaryRow};

/// One column of a paper table: our record, the paper's name, and whether ours is shown as
/// 1 − the record (RESTOR's Acc = 1 − `acc_forget`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Column {
    pub record: &'static str,
    pub name: &'static str,
    pub complement: bool,
}

const fn col(record: &'static str, name: &'static str) -> Column {
    Column { record, name, complement: false }
}

/// A paper benchmark: its world kind, the paper's columns in its order (ours may add some at
/// the end that the paper does not report) and what the caption says about them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Benchmark {
    /// `resolved_config.world.kind`.
    pub world: &'static str,
    pub columns: &'static [Column],
    /// How many of `columns` (the first ones) the paper reports.
    pub paper_columns: usize,
    /// The columns in words (caption).
    pub columns_note: &'static str,
    /// What the caption adds about the paper's numbers.
    pub paper_note: &'static str,
}

/// The benchmarks the paper reports that our worlds reproduce.
pub const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        world: "tofu",
        columns: &[
            col("acc_forget", "Acc_forget"),
            col("acc_recover", "Acc_recover"),
            col("acc_retain", "Acc_retain"),
            col("tofu_model_utility", "MU"),
            col("tofu_forget_quality", "FQ"),
        ],
        paper_columns: 4,
        columns_note: "MU = TOFU model utility (tofu_model_utility), FQ = TOFU forget quality (tofu_forget_quality, \
                       the KS p-value)",
        paper_note: "The paper reports no FQ there.",
    },
    Benchmark {
        world: "restor",
        columns: &[
            Column { record: "acc_forget", name: "Acc", complement: true },
            col("tofu_prob_retain", "TOFU-prob"),
            col("tofu_model_utility", "MU"),
        ],
        paper_columns: 3,
        columns_note: "Acc = 1 − acc_forget (the share of the corrupted entities' questions whose ground truth is \
                       the closest candidate to the model's answer), TOFU-prob = TOFU answer probability on the \
                       retain questions (tofu_prob_retain), MU = TOFU model utility (tofu_model_utility)",
        paper_note: "The paper gives Acc in percent (divided by 100 here) and does not say which corruption mix it \
                     used (our source does not): its numbers are shown beside every mix.",
    },
];

/// The benchmark of a world kind.
pub fn benchmark(world: &str) -> Option<&'static Benchmark> {
    BENCHMARKS.iter().find(|b| b.world == world)
}

/// Our method (row) name → the paper's row name.
pub const ROW_OF_METHOD: &[(&str, &str)] = &[
    (REFERENCE_FINAL, "Final (θ_D)"),
    (REFERENCE_RETRAIN, "Ideal (retain model)"),
    ("msa_instruct", "MSA_instruct"),
    ("msa_base", "MSA_base"),
    ("npo", "NPO"),
    ("rmu", "RMU"),
    ("gradient_difference", "GradDiff"),
];

/// One row of a paper table: its numbers in the benchmark's paper columns, as published
/// (percentages divided by 100).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PaperRow {
    pub name: &'static str,
    pub values: &'static [f64],
}

/// A forget split a paper table covers.
pub const ANY_SPLIT: &str = "*";

/// One table of the paper, for one benchmark world and forget split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PaperTable {
    /// `resolved_config.world.kind`.
    pub world: &'static str,
    /// `resolved_config.world.forget`, or [`ANY_SPLIT`] when the paper does not say.
    pub split: &'static str,
    /// The table's name in the caption: "TOFU forget01".
    pub title: &'static str,
    /// Where the numbers were read: "paper-numbers.md, TOFU forget01 table".
    pub source: &'static str,
    pub rows: &'static [PaperRow],
}

impl PaperTable {
    pub fn row(&self, name: &str) -> Option<&PaperRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Where one number came from: "paper-numbers.md, TOFU forget01 table, row NPO".
    pub fn provenance(&self, row: &PaperRow) -> String {
        format!("{}, row {}", self.source, row.name)
    }
}

const fn row(name: &'static str, values: &'static [f64]) -> PaperRow {
    PaperRow { name, values }
}

/// The paper's TOFU and RESTOR tables, typed in from `paper-numbers.md` (secondary source,
/// unverified; model presumed Llama-3.2-1B-Instruct; Acc_* judged by GPT-4o). TOFU: forget05
/// is not among them; the forget10 table has no Final or Ideal rows. RESTOR: Acc, TOFU-prob,
/// MU; no Final row; the corruption mix is not given.
pub const PAPER_TABLES: &[PaperTable] = &[
    PaperTable {
        world: "tofu",
        split: "forget01",
        title: "TOFU forget01",
        source: "paper-numbers.md, TOFU forget01 table",
        rows: &[
            row("Final (θ_D)", &[0.15, 0.13, 0.89, 0.48]),
            row("Ideal (retain model)", &[0.93, 0.98, 1.00, 0.54]),
            row("MSA_instruct", &[0.63, 0.38, 0.86, 0.47]),
            row("MSA_base", &[0.78, 0.45, 0.83, 0.48]),
            row("NPO", &[0.50, 0.25, 0.86, 0.47]),
            row("RMU", &[0.70, 0.30, 0.86, 0.47]),
            row("GradDiff", &[0.50, 0.25, 0.88, 0.47]),
        ],
    },
    PaperTable {
        world: "tofu",
        split: "forget10",
        title: "TOFU forget10",
        source: "paper-numbers.md, TOFU forget10 table",
        rows: &[
            row("MSA_instruct", &[0.81, 0.41, 0.81, 0.47]),
            row("MSA_base", &[0.77, 0.37, 0.77, 0.44]),
            row("NPO", &[0.66, 0.24, 0.78, 0.47]),
            row("RMU", &[0.84, 0.06, 0.87, 0.47]),
            row("GradDiff", &[0.44, 0.24, 0.84, 0.48]),
        ],
    },
    PaperTable {
        world: "restor",
        split: ANY_SPLIT,
        title: "RESTOR",
        source: "paper-numbers.md, RESTOR table",
        rows: &[
            row("Ideal (retain model)", &[0.4618, 0.87, 0.60]),
            row("MSA_instruct", &[0.4608, 0.77, 0.56]),
            row("MSA_base", &[0.4361, 0.62, 0.54]),
            row("NPO", &[0.3865, 0.46, 0.49]),
            row("RMU", &[0.3168, 0.38, 0.45]),
            row("GradDiff", &[0.2407, 0.30, 0.45]),
        ],
    },
];

/// The label of the paper's column group.
pub const PAPER_GROUP: &str = "paper (secondary source, unverified)";

/// The section's title.
pub const TITLE: &str = "Reproduction: the MSA paper's table";

/// The paper's table for a world kind and split, if we have its numbers.
pub fn paper_table(world: &str, split: &str) -> Option<&'static PaperTable> {
    PAPER_TABLES.iter().find(|t| t.world == world && (t.split == split || t.split == ANY_SPLIT))
}

/// The paper's row name for one of our methods.
pub fn paper_row_name(method: &str) -> Option<&'static str> {
    ROW_OF_METHOD.iter().find(|(m, _)| *m == method).map(|(_, r)| *r)
}

/// A model's benchmark world: its kind and the forget splits its cells ran on.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchmarkWorld {
    pub kind: String,
    /// Sorted; one in a sweep (several only when folders of different splits are merged).
    pub splits: Vec<String>,
}

/// The benchmark world of `model`'s cells: `None` unless some cell's world kind is one of
/// [`BENCHMARKS`].
pub fn benchmark_world(cells: &[CellFile], model: &str) -> Option<BenchmarkWorld> {
    let mine = || cells.iter().filter(|c| c.cell.model == model);
    let kind = mine().filter_map(|c| c.world_kind()).find(|k| benchmark(k).is_some())?;
    let splits: BTreeSet<&str> =
        mine().filter(|c| c.world_kind() == Some(kind)).filter_map(|c| c.world_split()).collect();
    Some(BenchmarkWorld { kind: kind.to_owned(), splits: splits.into_iter().map(str::to_owned).collect() })
}

/// The rows of the table: θ_D, the oracle, then each method's headline row — those with a
/// paper row in the paper's order, then the others by name.
pub fn rows(s: &Summary) -> Vec<&SummaryRow> {
    let headline = crate::headline::rows(s);
    let rank = |r: &SummaryRow| {
        let i = ROW_OF_METHOD.iter().position(|(m, _)| *m == r.method);
        (i.unwrap_or(ROW_OF_METHOD.len()), r.method.clone())
    };
    let mut out: Vec<&SummaryRow> = headline
        .into_iter()
        .filter(|r| !r.is_reference || r.method == REFERENCE_FINAL || r.method == REFERENCE_RETRAIN)
        .collect();
    out.sort_by_key(|r| (!r.is_reference, rank(r)));
    out
}

/// The reproduction tables, one per model whose world is a paper benchmark: (sub-heading,
/// table). Empty when no model's is.
pub fn tables(cells: &[CellFile], summaries: &[Summary]) -> Vec<(String, Table)> {
    summaries
        .iter()
        .filter_map(|s| {
            let world = benchmark_world(cells, &s.model)?;
            let bench = benchmark(&world.kind)?;
            Some((format!("Model `{}`", s.model), table(s, bench, &world)))
        })
        .collect()
}

/// Our value of a column: `mean [lo, hi]`, or 1 − it for a complement column.
fn our_value(st: &crate::tables::Stat, c: &Column) -> String {
    if !c.complement {
        return st.text();
    }
    let mut flipped = st.clone();
    flipped.mean = 1.0 - st.mean;
    flipped.interval = st.interval.map(|(lo, hi)| (1.0 - hi, 1.0 - lo));
    flipped.text()
}

/// One model's reproduction table: the method, our values of the benchmark's columns, and,
/// when the paper has a table for the split, the paper group (its row name, then its numbers).
pub fn table(s: &Summary, bench: &Benchmark, world: &BenchmarkWorld) -> Table {
    let paper = match world.splits.as_slice() {
        [split] => paper_table(&world.kind, split),
        _ => None,
    };
    let (columns, n_paper) = (bench.columns, bench.paper_columns);
    let mut header = vec!["method".to_owned()];
    header.extend(columns.iter().map(|c| c.name.to_string()));
    let mut groups = vec![ColumnGroup { label: "ours: mean [95 % interval]".into(), first: 1, len: columns.len() }];
    if paper.is_some() {
        groups.push(ColumnGroup { label: PAPER_GROUP.into(), first: header.len(), len: n_paper + 1 });
        header.push(format!("{PAPER_GROUP}: row"));
        header.extend(columns[..n_paper].iter().map(|c| format!("paper {}", c.name)));
    }
    // numbers right-aligned; the method and the paper's row name left
    let mut right = vec![false];
    right.extend(columns.iter().map(|_| true));
    if paper.is_some() {
        right.push(false);
        right.extend((0..n_paper).map(|_| true));
    }
    let mut t = Table { header, right, groups, ..Default::default() };
    let rows = rows(s);
    let mut unmatched = Vec::new();
    for r in &rows {
        let name = if r.is_reference { r.label() } else { r.method.clone() };
        let mut line = vec![Cell {
            text: name,
            emphasis: if r.is_reference { Emphasis::Muted } else { Emphasis::None },
            title: (!r.is_reference && !r.params.is_empty()).then(|| r.label()),
        }];
        for c in columns {
            line.push(r.stats.get(c.record).map_or_else(|| Cell::plain("–"), |st| Cell::plain(our_value(st, c))));
        }
        if let Some(p) = paper {
            match paper_row_name(&r.method).and_then(|n| p.row(n)) {
                Some(pr) => {
                    let source = p.provenance(pr);
                    line.push(Cell { text: pr.name.into(), emphasis: Emphasis::None, title: Some(source.clone()) });
                    for (v, c) in pr.values.iter().zip(columns) {
                        line.push(Cell {
                            text: format!("{v:.2}"),
                            emphasis: Emphasis::None,
                            title: Some(format!("{source}, column {}", c.name)),
                        });
                    }
                }
                None => {
                    if !r.is_reference {
                        unmatched.push(r.method.clone());
                    }
                    line.extend((0..=n_paper).map(|_| Cell::plain("–")));
                }
            }
        }
        t.rows.push(line);
    }
    if let Some(last_reference) = rows.iter().rposition(|r| r.is_reference) {
        t.rules_after.push(last_reference);
    }
    t.note = note(s, bench, world, paper, &unmatched);
    t
}

fn note(
    s: &Summary,
    bench: &Benchmark,
    world: &BenchmarkWorld,
    paper: Option<&PaperTable>,
    unmatched: &[String],
) -> String {
    let splits = if world.splits.is_empty() { "(no split recorded)".to_owned() } else { world.splits.join(", ") };
    let mut out = format!(
        "The MSA paper's columns in its order (Rezaei et al., ICLR 2026, arXiv 2506.20941), world {} {splits}. Ours: \
         one row per method at its headline point (as in the Headline), θ_D and the oracle first, then the methods \
         in the paper's row order; mean over world seeds [95 % cluster bootstrap interval]; {}; \"–\": the metric \
         was not run.",
        world.kind, bench.columns_note
    );
    match (paper, world.splits.as_slice()) {
        (Some(p), _) => {
            let _ = write!(
                out,
                " Paper columns (\"{PAPER_GROUP}\"): the numbers of the paper's {} table, typed in from \
                 paper-numbers.md, which read them from summaries of the paper (v2/v3), not from the PDF (one \
                 leaderboard lists other MSA numbers), for Llama-3.2-1B-Instruct (presumed: compare only with that \
                 model); the group's first column names the paper's row each number comes from (source of each number: \
                 {}, row …; hover in HTML). {} Rows: final → Final (θ_D), retrain → Ideal (retain \
                 model), msa_instruct → MSA_instruct, msa_base → MSA_base, npo → NPO, rmu → RMU, \
                 gradient_difference → GradDiff.",
                p.title, p.source, bench.paper_note
            );
            let missing: Vec<&str> = [REFERENCE_FINAL, REFERENCE_RETRAIN]
                .iter()
                .filter_map(|m| paper_row_name(m))
                .filter(|n| p.row(n).is_none())
                .map(|n| if n.starts_with("Ideal") { "Ideal" } else { n })
                .collect();
            if !missing.is_empty() {
                let _ = write!(
                    out,
                    " The paper's {} table has no {} row{}: \"–\".",
                    p.title,
                    missing.join(" or "),
                    if missing.len() > 1 { "s" } else { "" }
                );
            }
            if !unmatched.is_empty() {
                let _ = write!(out, " No paper row (\"–\"): {}.", unmatched.join(", "));
            }
            out.push_str(
                " Comparable in meaning, not in value: the paper's Acc_* are judged by GPT-4o, ours by the \
                 deterministic ROUGE-L closest-candidate judge (evals::judge); the paper's \"ideal\" model is a \
                 separately trained retain model, our retrain row is the exact oracle.",
            );
        }
        (None, [_]) => {
            let covered: Vec<&str> = PAPER_TABLES.iter().filter(|t| t.world == world.kind).map(|t| t.title).collect();
            let _ = write!(
                out,
                " The paper numbers we have (paper-numbers.md: {}) do not cover {splits}: no paper columns.",
                covered.join(", ")
            );
        }
        (None, []) => out.push_str(" The cells record no forget split: no paper columns."),
        (None, _) => {
            out.push_str(" The cells come from several forget splits: no paper columns (report each split on its own).")
        }
    }
    if s.rows.iter().all(|r| r.runs <= 1) {
        out.push_str(" One run per row: no intervals — a smoke test, not a result.");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_paper_row_has_one_number_per_paper_column() {
        for t in PAPER_TABLES {
            let b = benchmark(t.world).unwrap();
            for r in t.rows {
                assert_eq!(r.values.len(), b.paper_columns, "{} {}", t.title, r.name);
            }
        }
        // RESTOR's table covers every mix (the paper does not name its own)
        assert_eq!(paper_table("restor", "mix_a3").unwrap().title, "RESTOR");
    }

    #[test]
    fn every_mapped_row_is_in_the_forget01_table() {
        let t = paper_table("tofu", "forget01").unwrap();
        for (method, row) in ROW_OF_METHOD {
            assert!(t.row(row).is_some(), "{method} → {row}");
        }
        assert_eq!(t.provenance(t.row("NPO").unwrap()), "paper-numbers.md, TOFU forget01 table, row NPO");
        assert!(paper_table("tofu", "forget05").is_none());
        assert!(paper_table("tofu", "forget10").unwrap().row("Final (θ_D)").is_none());
    }
}
