//! The robustness table: is the forgotten knowledge really gone? For every attack the results
//! carry (records `attack/NAME/RECORD`, written by the runner's `[attacks]` stage — e.g.
//! `quantize:int4`, round-to-nearest 4-bit weights, Zhang et al. 2025), each headline row's
//! forget-side value after the attack and its **gap**: value after the attack − the oracle's
//! value after the *same* attack, in the same world (mean over worlds; with two or more worlds
//! a 95 % bootstrap interval over worlds). The oracle never saw the forget data, so whatever
//! the attack brings back in a method beyond what it does to the oracle is leftover knowledge;
//! the gap before the attack (value − oracle's, unattacked) is shown beside it. Beside them,
//! the membership-inference table ([`membership_table`]): each MIA AUC against the oracle's.

use crate::aggregate::BOOTSTRAP;
use crate::fmt_num;
use crate::render::{Cell, Emphasis, Table};
use crate::results::REFERENCE_RETRAIN;
use crate::tables::{Stat, Summary, SummaryRow};

/// Forget-side records shown (those the results have, after the attack too).
pub const RECORDS: &[&str] =
    &["mc_accuracy/forget", "tofu_prob_forget", "tofu_truth_ratio_forget", "kl_to_oracle/forget", "mink_auc"];

/// Prefix of the relearning attack's names: `relearn@K` is the model after K fine-tuning steps
/// on the taught forget entities, scored on the held ones (`relearn@0`: before the attack).
pub const RELEARN: &str = "relearn@";

/// The attacks a summary has results for, by name (`quantize:int4`), each with a table: of the
/// relearning attack only its last step (`relearn@K`, K the largest; the curve is a figure).
pub fn attacks(s: &Summary) -> Vec<String> {
    let mut names: Vec<String> = s
        .columns
        .iter()
        .filter_map(|c| c.record.strip_prefix("attack/")?.split_once('/').map(|(a, _)| a.to_owned()))
        .filter(|a| !a.starts_with(RELEARN))
        .collect();
    names.sort();
    names.dedup();
    if let Some(&last) = relearn_steps(s).last().filter(|&&k| k > 0) {
        names.push(format!("{RELEARN}{last}"));
    }
    names
}

/// The relearning steps a summary has records for (`attack/relearn@K/…`), sorted; 0 (the
/// held part before the attack) included when recorded.
pub fn relearn_steps(s: &Summary) -> Vec<usize> {
    let mut steps: Vec<usize> = s
        .columns
        .iter()
        .filter_map(|c| c.record.strip_prefix("attack/")?.strip_prefix(RELEARN)?.split_once('/')?.0.parse().ok())
        .collect();
    steps.sort_unstable();
    steps.dedup();
    steps
}

/// The strongest membership attack of a row: (metric, AUC − oracle's, its interval).
type Strongest<'a> = (&'a str, f64, Option<(f64, f64)>);

/// The record a row's value after `attack` is compared with "before": the record itself, or
/// for the relearning attack the same held part before the attack (`attack/relearn@0/RECORD`).
fn before_key(attack: &str, record: &str) -> String {
    if attack.starts_with(RELEARN) {
        format!("attack/{RELEARN}0/{record}")
    } else {
        record.to_owned()
    }
}

/// Per-world gap a − b over the worlds both have, with its mean and (≥ 2 worlds) interval.
fn gap(a: &Stat, b: &Stat) -> Option<(f64, Option<(f64, f64)>)> {
    let per_world: Vec<f64> = a.world_means.iter().filter_map(|(w, x)| Some(x - b.world_means.get(w)?)).collect();
    if per_world.is_empty() {
        return None;
    }
    let mean = per_world.iter().sum::<f64>() / per_world.len() as f64;
    let interval = (per_world.len() >= 2)
        .then(|| {
            let clusters: Vec<Vec<f64>> = per_world.iter().map(|g| vec![*g]).collect();
            stats::cluster_bootstrap_mean_ci(&clusters, &BOOTSTRAP).ok().map(|i| (i.lo, i.hi))
        })
        .flatten();
    Some((mean, interval))
}

fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", fmt_num(x))
    } else {
        fmt_num(x)
    }
}

/// The first two cells of a robustness row: the method (references muted) and its utility gate.
fn row_head(r: &SummaryRow) -> Vec<Cell> {
    vec![
        Cell::with(
            if r.is_reference { r.label() } else { r.method.clone() },
            if r.is_reference { Emphasis::Muted } else { Emphasis::None },
        ),
        crate::tables::gate_cell(&r.gate),
    ]
}

/// One table per attack of one model; empty when the results have no attack.
pub fn tables(s: &Summary) -> Vec<(String, Table)> {
    let Some(oracle) = s.row(REFERENCE_RETRAIN) else { return vec![] };
    let mut out = Vec::new();
    for attack in attacks(s) {
        let records: Vec<&str> = RECORDS
            .iter()
            .copied()
            .filter(|r| {
                s.column(&before_key(&attack, r)).is_some() && s.column(&format!("attack/{attack}/{r}")).is_some()
            })
            .collect();
        if records.is_empty() {
            continue;
        }
        let mut header = vec!["method".to_owned(), "utility gate".to_owned()];
        for r in &records {
            let label = s.column(r).map_or(r.to_string(), |c| c.label.clone());
            header.push(format!("{label}: after attack (gap to oracle after; gap before)"));
        }
        let mut t = Table {
            right: [false, false].into_iter().chain(records.iter().map(|_| true)).collect(),
            header,
            ..Default::default()
        };
        let rows: Vec<_> = s.rows.iter().filter(|r| r.headline).collect();
        let references = rows.iter().filter(|r| r.is_reference).count();
        for (i, r) in rows.iter().enumerate() {
            let mut line = row_head(r);
            for rec in &records {
                let after_key = format!("attack/{attack}/{rec}");
                let text = match (r.stats.get(after_key.as_str()), oracle.stats.get(after_key.as_str())) {
                    (Some(after), Some(o_after)) => {
                        let mut text = after.text();
                        if let Some((g, ci)) = gap(after, o_after) {
                            let ci = ci.map_or(String::new(), |(lo, hi)| format!(" [{}, {}]", signed(lo), signed(hi)));
                            text.push_str(&format!(" (gap {}{ci}", signed(g)));
                            let bk = before_key(&attack, rec);
                            let before = r
                                .stats
                                .get(bk.as_str())
                                .zip(oracle.stats.get(bk.as_str()))
                                .and_then(|(b, o)| gap(b, o));
                            if let Some((gb, _)) = before {
                                text.push_str(&format!("; before {}", signed(gb)));
                            }
                            text.push(')');
                        }
                        text
                    }
                    _ => "–".into(),
                };
                line.push(Cell::plain(text));
            }
            t.rows.push(line);
            if i + 1 == references {
                t.rules_after.push(i);
            }
        }
        let relearn = attack.strip_prefix(RELEARN).map(|k| {
            format!(
                "Relearning attack: {k} fine-tuning steps on the forget documents of part of the forget entities \
                 (the same part and batches for every row), scored on the OTHER forget entities only, which the attack \
                 did not train on; \"before\": the same held part before the attack (step 0). A gap to the oracle after \
                 relearning is knowledge that was hidden, not removed. "
            )
        });
        t.note = format!(
            "{}After the attack {attack}, scored with the same metrics. Gap: the row's value after the attack − the \
             oracle's value after the same attack, mean over worlds{}; the oracle never saw the forget data, so a \
             gap that grows under the attack is knowledge the attack brought back. \"before\": the same gap without \
             the attack.",
            relearn.unwrap_or_default(),
            if rows.iter().any(|r| r.worlds >= 2) { " [95 % bootstrap interval over worlds]" } else { "" }
        );
        out.push((format!("Model `{}`, attack {attack}", s.model), t));
    }
    out.extend(membership_table(s));
    out
}

/// Membership-inference AUCs (forget vs held-out documents) the membership table reads, those
/// the results have.
pub const MIA: &[&str] =
    &["mink_auc", "mia_loss_auc", "mia_zlib_auc", "mia_minkpp_auc", "mia_reference_auc", "mia_gradnorm_auc"];

/// The membership-inference table of one model: per headline row each attack's AUC with its gap
/// to the oracle's AUC (the oracle never saw the forget documents, so its AUC is what "no
/// membership" reads as on these documents, ≈ 0.5), and the strongest attack: the one whose
/// gap is largest in absolute value, with its interval over worlds. `None` without an oracle
/// row or an MIA metric.
pub fn membership_table(s: &Summary) -> Option<(String, Table)> {
    let oracle = s.row(REFERENCE_RETRAIN)?;
    let metrics: Vec<&str> =
        MIA.iter().copied().filter(|m| s.column(m).is_some() && oracle.stats.contains_key(*m)).collect();
    if metrics.is_empty() {
        return None;
    }
    let mut header = vec!["method".to_owned(), "utility gate".to_owned()];
    for m in &metrics {
        header.push(format!("{} (− oracle's)", s.column(m).map_or(m.to_string(), |c| c.label.clone())));
    }
    header.push("strongest attack: AUC − oracle's".to_owned());
    let mut t = Table {
        right: [false, false].into_iter().chain(metrics.iter().map(|_| true)).chain([true]).collect(),
        header,
        ..Default::default()
    };
    let rows: Vec<_> = s.rows.iter().filter(|r| r.headline).collect();
    let references = rows.iter().filter(|r| r.is_reference).count();
    for (i, r) in rows.iter().enumerate() {
        let mut line = row_head(r);
        let mut strongest: Option<Strongest> = None;
        for m in &metrics {
            let text = match (r.stats.get(*m), oracle.stats.get(*m)) {
                (Some(v), Some(o)) => match gap(v, o) {
                    Some((g, ci)) => {
                        if strongest.is_none_or(|(_, best, _)| g.abs() > best.abs()) {
                            strongest = Some((m, g, ci));
                        }
                        format!("{} ({})", v.text(), signed(g))
                    }
                    None => v.text(),
                },
                _ => "–".into(),
            };
            line.push(Cell::plain(text));
        }
        line.push(Cell::plain(match strongest {
            Some((m, g, ci)) => {
                let label = s.column(m).map_or(m.to_string(), |c| c.label.clone());
                let ci = ci.map_or(String::new(), |(lo, hi)| format!(" [{}, {}]", signed(lo), signed(hi)));
                format!("{label}: {}{ci}", signed(g))
            }
            None => "–".into(),
        }));
        t.rows.push(line);
        if i + 1 == references {
            t.rules_after.push(i);
        }
    }
    t.note = format!(
        "Membership inference, forget documents (members) vs held-out documents of the same kind (non-members): \
         ROC AUC of each attack, and in parentheses its gap to the oracle's AUC in the same world (mean over \
         worlds). The oracle never saw the forget documents, so its AUC is the reference, not 0.5; a positive gap \
         is membership signal the method left. Strongest attack: the one with the largest |gap|{}.",
        if rows.iter().any(|r| r.worlds >= 2) { ", with its 95 % bootstrap interval over worlds" } else { "" }
    );
    Some((format!("Model `{}`, membership inference", s.model), t))
}

/// Whether any summary has attack results.
pub fn any(summaries: &[Summary]) -> bool {
    summaries.iter().any(|s| !attacks(s).is_empty())
}
