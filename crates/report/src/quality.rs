//! The "World quality" table at the top of `index.md`: one row per (model, world seed) from
//! `RESULTS_DIR/world_quality/*.json` ([`crate::results::load_world_quality`]) — θ_D's and the
//! oracle's forget/retain multiple-choice accuracy and ROUGE, the oracle's Min-K% AUC, tokens
//! trained, wall time and the quality gate — with a WARNING line above it when any world's
//! gate is "failed" or "disabled" (its results then rest on a world not known to be usable).

use std::fmt::Write as _;

use crate::fmt_num;
use crate::results::WorldQuality;

/// The Markdown section body (no heading); empty when there are no records.
pub fn markdown(records: &[WorldQuality]) -> String {
    if records.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let flagged: Vec<&WorldQuality> = records.iter().filter(|q| q.gate_warning()).collect();
    if !flagged.is_empty() {
        let list: Vec<String> = flagged
            .iter()
            .map(|q| {
                let why = if q.failures.is_empty() { String::new() } else { format!(": {}", q.failures.join("; ")) };
                format!("`{}` world {} gate {}{}", q.model, q.world_seed, q.gate, why)
            })
            .collect();
        let _ = writeln!(
            out,
            "**WARNING: {} of {} world(s) did not pass the quality gate** — {}.\n",
            flagged.len(),
            records.len(),
            list.join("; ").replace('\n', " ")
        );
    }
    out.push_str(
        "| model | world seed | θ_D MC forget | θ_D MC retain | θ_D ROUGE forget | θ_D ROUGE retain | \
         oracle MC forget | oracle MC retain | oracle ROUGE forget | oracle ROUGE retain | oracle Min-K% AUC | \
         tokens trained | wall time (s) | gate |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let num = |x: Option<f64>| x.map_or("–".to_owned(), fmt_num);
    for q in records {
        let gate = if q.gate_warning() { format!("**{}**", q.gate) } else { q.gate.clone() };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            q.model,
            q.world_seed,
            num(q.theta_d.mc_forget),
            num(q.theta_d.mc_retain),
            num(q.theta_d.rouge_forget),
            num(q.theta_d.rouge_retain),
            num(q.oracle.mc_forget),
            num(q.oracle.mc_retain),
            num(q.oracle.rouge_forget),
            num(q.oracle.rouge_retain),
            num(q.oracle.mink_auc),
            q.tokens_trained.map_or("–".to_owned(), |t| t.to_string()),
            q.seconds.map_or("–".to_owned(), |s| format!("{s:.1}")),
            gate
        );
    }
    out.push('\n');
    out
}
