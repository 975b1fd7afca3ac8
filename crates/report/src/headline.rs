//! The headline table of one model, like a paper's main table: the references (θ_D, the
//! oracle, the second oracle) and **one row per method** — its headline point, the one chosen
//! on the validation world ([`crate::options::Options::headline`]; grid points go to the
//! appendix and the figures) — in at most [`MAX_COLUMNS`] columns:
//!
//! - the method and its utility gate;
//! - forget-side columns, toward the oracle, in the order of [`FORGET_COLUMNS`] (those the
//!   results have, as many as fit): the value, its interval, and Δ (the distance to the
//!   oracle), "≈ oracle" within the noise floor; TOFU forget quality as its KS p-value with the
//!   KS statistic D;
//! - utility as a ratio to the oracle's (the first of [`UTILITY_COLUMNS`] present), general
//!   perplexity as a ratio to the oracle's;
//! - the method's own wall time (the `unlearn` stage: fine-tuning, arithmetic, or training).
//!
//! Bold marks the best headline row per column among those that pass the utility gate — chosen
//! among headline rows only, so a grid point never wins on the test world.

use std::fmt::Write as _;

use crate::fmt_num;
use crate::render::{Cell, Emphasis, Table};
use crate::results::{Scale, Target, REFERENCE_RETRAIN};
use crate::tables::{cell_text, gate_cell, Summary, SummaryRow};

/// Columns of the headline table, the method's included.
pub const MAX_COLUMNS: usize = 8;

/// Forget-side records, in order of preference (the paper's three accuracies, then the
/// forget-set metrics of each world kind).
pub const FORGET_COLUMNS: &[&str] = &[
    "mc_accuracy/forget",
    "kl_to_oracle/forget",
    "tofu_forget_quality",
    "acc_forget",
    "acc_recover",
    "acc_retain",
    "restor_clean_acc",
    "truthfulqa_mc2",
    "toxigen",
    "toxigen_likelihood",
    "mink_auc",
    "muse_verbmem",
    "tofu_prob_forget",
];

/// Utility records, the first present is shown as a ratio to the oracle's.
pub const UTILITY_COLUMNS: &[&str] = &["tofu_model_utility", "mc_accuracy/retain", "perplexity/retain"];

/// The general-text perplexity record, shown as a ratio to the oracle's.
pub const GENERAL_PERPLEXITY: &str = "perplexity/general";

/// What one headline column shows.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A toward-the-oracle (or other) record as in the full table.
    Value(String),
    /// Forget quality: KS p-value and its statistic D.
    ForgetQuality,
    /// A record as a ratio to the oracle's mean.
    RatioToOracle(String),
    /// The `unlearn` stage's mean seconds.
    Seconds,
}

/// The headline columns of a summary (the method and gate columns not included).
pub fn columns(s: &Summary) -> Vec<(String, Kind)> {
    let has = |r: &str| s.column(r).is_some();
    let mut tail = Vec::new();
    if let Some(u) = UTILITY_COLUMNS.iter().find(|u| has(u)) {
        let label = s.column(u).map_or(u.to_string(), |c| c.label.clone());
        tail.push((format!("{label} ÷ oracle's"), Kind::RatioToOracle(u.to_string())));
    }
    if has(GENERAL_PERPLEXITY) {
        tail.push(("general perplexity ÷ oracle's".to_owned(), Kind::RatioToOracle(GENERAL_PERPLEXITY.into())));
    }
    if s.rows.iter().any(|r| !r.is_reference && r.unlearn_seconds.is_some()) {
        tail.push(("unlearning cost: wall time (s) · tokens trained".to_owned(), Kind::Seconds));
    }
    let room = MAX_COLUMNS.saturating_sub(2 + tail.len());
    let mut out: Vec<(String, Kind)> = Vec::new();
    for r in FORGET_COLUMNS.iter().filter(|r| has(r)) {
        if out.len() == room {
            break;
        }
        let col = s.column(r).expect("present");
        if *r == "tofu_forget_quality" {
            out.push(("forget quality: KS p (D) ↑".to_owned(), Kind::ForgetQuality));
        } else {
            out.push((col.header(s), Kind::Value(r.to_string())));
        }
    }
    out.extend(tail);
    out
}

/// The rows of the headline: references, then each method's headline row.
pub fn rows(s: &Summary) -> Vec<&SummaryRow> {
    s.rows.iter().filter(|r| r.headline).collect()
}

/// How a column ranks a row (smaller is better); `None`: not ranked.
fn badness(s: &Summary, kind: &Kind, r: &SummaryRow) -> Option<f64> {
    match kind {
        Kind::Value(rec) => s.column(rec)?.badness(r.stats.get(rec)?),
        Kind::ForgetQuality => r.stats.get("tofu_forget_quality").map(|st| -st.mean),
        // utility: closer to the oracle's is better only up to 1; higher ratios are fine
        Kind::RatioToOracle(rec) => {
            let ratio = ratio_to_oracle(s, r, rec)?.0;
            let col = s.column(rec)?;
            Some(if col.target == Target::LowerIsBetter { ratio } else { -ratio })
        }
        Kind::Seconds => r.unlearn_seconds.filter(|_| !r.cached_finetunes),
    }
}

fn ratio_to_oracle(s: &Summary, r: &SummaryRow, rec: &str) -> Option<(f64, Option<(f64, f64)>)> {
    let o = s.row(REFERENCE_RETRAIN)?.stats.get(rec)?;
    let st = r.stats.get(rec)?;
    let ratio = crate::tables::world_ratio(st, o)?;
    let interval = st.interval.filter(|_| o.mean != 0.0).map(|(lo, hi)| (lo / o.mean, hi / o.mean));
    Some((ratio, interval))
}

/// The headline table of one model.
pub fn table(s: &Summary) -> Table {
    let cols = columns(s);
    let mut header = vec!["method".to_owned(), "utility gate".to_owned()];
    header.extend(cols.iter().map(|(h, _)| h.clone()));
    let mut t = Table {
        right: [false, false].into_iter().chain(cols.iter().map(|_| true)).collect(),
        header,
        ..Default::default()
    };
    let rows = rows(s);
    let methods: Vec<&&SummaryRow> = rows.iter().filter(|r| !r.is_reference).collect();
    // best among gate-passing headline method rows
    let best: Vec<Option<f64>> = cols
        .iter()
        .map(|(_, k)| {
            methods.iter().filter(|r| r.gate.passes()).filter_map(|r| badness(s, k, r)).min_by(f64::total_cmp)
        })
        .collect();
    let references = rows.iter().filter(|r| r.is_reference).count();
    for (i, r) in rows.iter().enumerate() {
        // the method's name; its parameters in the note (and as hover text in HTML)
        let name = Cell {
            text: if r.is_reference { r.label() } else { r.method.clone() },
            emphasis: if r.is_reference { Emphasis::Muted } else { Emphasis::None },
            title: (!r.is_reference && !r.params.is_empty()).then(|| r.label()),
        };
        let mut line = vec![name, gate_cell(&r.gate)];
        for ((_, kind), best) in cols.iter().zip(&best) {
            let is_best = !r.is_reference
                && r.gate.passes()
                && matches!((badness(s, kind, r), best), (Some(b), Some(best)) if b <= best + 1e-12 * best.abs().max(1.0));
            let text = match kind {
                Kind::Value(rec) => match (s.column(rec), r.stats.get(rec)) {
                    (Some(col), Some(st)) => cell_text(col, st),
                    _ => "–".into(),
                },
                Kind::ForgetQuality => match r.stats.get("tofu_forget_quality") {
                    Some(st) => {
                        let d = r
                            .stats
                            .get("tofu_forget_quality/ks_statistic")
                            .map(|d| format!(" (D {})", fmt_num(d.mean)));
                        format!("{}{}", st.text(), d.unwrap_or_default())
                    }
                    None => "–".into(),
                },
                Kind::RatioToOracle(rec) => match ratio_to_oracle(s, r, rec) {
                    Some((v, Some((lo, hi)))) => format!("{} [{}, {}]", fmt_num(v), fmt_num(lo), fmt_num(hi)),
                    Some((v, None)) => fmt_num(v),
                    None => "–".into(),
                },
                Kind::Seconds => match r.unlearn_seconds.filter(|_| !r.is_reference) {
                    Some(x) => {
                        let cached = if r.cached_finetunes { " + cached fine-tunes" } else { "" };
                        let tokens = r.trained_tokens.map_or("–".to_owned(), fmt_count);
                        format!("{x:.1}{cached} · {tokens}")
                    }
                    None => "–".into(),
                },
            };
            line.push(Cell::with(text, if is_best { Emphasis::Strong } else { Emphasis::None }));
        }
        t.rows.push(line);
        if i + 1 == references {
            t.rules_after.push(i);
        }
    }
    t.note = note(s, &cols);
    let points: Vec<String> = methods.iter().filter(|r| !r.params.is_empty()).map(|r| r.label()).collect();
    if !points.is_empty() {
        let _ = write!(t.note, " Headline points: {}.", points.join("; "));
    }
    t
}

/// A count to three significant digits: 950, 1.23k, 17.2k, 172k, 3.41M, 1.20G.
pub fn fmt_count(x: f64) -> String {
    let three = |v: f64, unit: &str| {
        let digits = if v.abs() < 10.0 {
            2
        } else if v.abs() < 100.0 {
            1
        } else {
            0
        };
        format!("{v:.digits$}{unit}")
    };
    match x.abs() {
        a if a < 1e3 => format!("{x:.0}"),
        a if a < 1e6 => three(x / 1e3, "k"),
        a if a < 1e9 => three(x / 1e6, "M"),
        _ => three(x / 1e9, "G"),
    }
}

fn note(s: &Summary, cols: &[(String, Kind)]) -> String {
    let mut out = String::from(
        "One row per method at its headline point (chosen on the validation world; every grid point is in the \
         appendix). Mean over world seeds [95 % cluster bootstrap interval]. → oracle columns are read as Δ, the \
         distance to the oracle, against the noise floor (the second oracle's Δ): lower is not better. Ratios are \
         the mean over worlds of value ÷ oracle's (interval: the row's interval ÷ the oracle's mean). Bold: best \
         among the headline rows that pass the utility gate; \"≈ oracle\": within the noise floor.",
    );
    if cols.iter().any(|(_, k)| matches!(k, Kind::Value(r) if s.column(r).is_some_and(|c| c.scale == Scale::Log))) {
        out.push_str(" Δln: distance of logarithms (a factor).");
    }
    if s.rows.iter().all(|r| r.runs <= 1) {
        out.push_str(" One run per row: no intervals — a smoke test, not a result.");
    }
    if cols.iter().any(|(_, k)| matches!(k, Kind::Seconds)) {
        out.push_str(
            " Cost: the method's own wall time (ranked) and the tokens it trained on, forward and backward (MSA and \
             task negation: their fine-tunes' tokens, cached or not; the gradient methods: every forget and retain \
             batch); forward-only passes (NPO's reference, RMU's frozen activations, MSA's calibration) are not \
             counted; \"–\": not recorded by the run.",
        );
    }
    if s.rows.iter().any(|r| r.headline && r.cached_finetunes) {
        out.push_str(
            " \"+ cached fine-tunes\": the run reused fine-tuned models cached by another cell (MSA and task \
             negation cache them per θ_0), so its time is the arithmetic alone and is not ranked.",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fmt_count;

    #[test]
    fn counts_print_three_significant_digits() {
        assert_eq!(fmt_count(950.0), "950");
        assert_eq!(fmt_count(1234.0), "1.23k");
        assert_eq!(fmt_count(17180.0), "17.2k");
        assert_eq!(fmt_count(171_800.0), "172k");
        assert_eq!(fmt_count(3_410_000.0), "3.41M");
        assert_eq!(fmt_count(1.2e9), "1.20G");
    }
}
