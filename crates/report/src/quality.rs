//! The "World quality" table at the top of `index.md`: one row per (model, world seed) from
//! `RESULTS_DIR/world_quality/*.json` ([`crate::results::load_world_quality`]) — θ_D's and the
//! oracle's forget/retain multiple-choice accuracy and ROUGE, the oracle's Min-K% AUC, tokens
//! trained, wall time and the quality gate — with a WARNING line above it when any world's
//! gate is "failed" or "disabled" (its results then rest on a world not known to be usable).

use std::fmt::Write as _;

use crate::fmt_num;
use crate::render::{Cell, Emphasis, Table};
use crate::results::WorldQuality;

/// The WARNING line, when any world's gate is not "passed".
pub fn warning(records: &[WorldQuality]) -> Option<String> {
    let flagged: Vec<&WorldQuality> = records.iter().filter(|q| q.gate_warning()).collect();
    if flagged.is_empty() {
        return None;
    }
    let list: Vec<String> = flagged
        .iter()
        .map(|q| {
            let why = if q.failures.is_empty() { String::new() } else { format!(": {}", q.failures.join("; ")) };
            format!("`{}` world {} gate {}{}", q.model, q.world_seed, q.gate, why)
        })
        .collect();
    Some(format!(
        "WARNING: {} of {} world(s) did not pass the quality gate — {}.",
        flagged.len(),
        records.len(),
        list.join("; ").replace('\n', " ")
    ))
}

/// The table: one row per (model, world seed).
pub fn table(records: &[WorldQuality]) -> Table {
    let mut t = Table::new(
        &[
            "model",
            "world seed",
            "θ_D MC forget",
            "θ_D MC retain",
            "θ_D ROUGE forget",
            "θ_D ROUGE retain",
            "oracle MC forget",
            "oracle MC retain",
            "oracle ROUGE forget",
            "oracle ROUGE retain",
            "oracle Min-K% AUC",
            "tokens trained",
            "wall time (s)",
            "gate",
        ],
        &[false, true, true, true, true, true, true, true, true, true, true, true, true, false],
    );
    let num = |x: Option<f64>| Cell::plain(x.map_or("–".to_owned(), fmt_num));
    for q in records {
        t.rows.push(vec![
            Cell::plain(q.model.clone()),
            Cell::plain(q.world_seed.to_string()),
            num(q.theta_d.mc_forget),
            num(q.theta_d.mc_retain),
            num(q.theta_d.rouge_forget),
            num(q.theta_d.rouge_retain),
            num(q.oracle.mc_forget),
            num(q.oracle.mc_retain),
            num(q.oracle.rouge_forget),
            num(q.oracle.rouge_retain),
            num(q.oracle.mink_auc),
            Cell::plain(q.tokens_trained.map_or("–".to_owned(), |t| t.to_string())),
            Cell::plain(q.seconds.map_or("–".to_owned(), |s| format!("{s:.1}"))),
            Cell::with(q.gate.clone(), if q.gate_warning() { Emphasis::Alert } else { Emphasis::None }),
        ]);
    }
    t.note = "The gate: θ_D ≥ 0.95 MC accuracy and ≥ 0.8 ROUGE-L recall on forget and retain QA (it learned its \
              facts); the oracle ≥ 0.95 on retain and ≤ 0.30 on forget (it never saw them); the oracle's Min-K% AUC, \
              forget vs held-out documents, within 0.5 ± 0.08."
        .into();
    t
}

/// The Markdown section body (no heading): the warning, then the table; empty when there are
/// no records.
pub fn markdown(records: &[WorldQuality]) -> String {
    if records.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    if let Some(w) = warning(records) {
        let _ = writeln!(out, "**{w}**\n");
    }
    out.push_str(&table(records).markdown());
    out
}
