//! The list of metric names the harness knows, with what each needs, and a lookup that answers
//! unknown names with "did you mean …?" and the known names (as lm-evaluation-harness does).
//! Names follow lm-eval where a task exists there (`truthfulqa_mc1`, `truthfulqa_mc2`, `toxigen`).

use anyhow::{bail, Result};

/// One registry entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricInfo {
    pub name: &'static str,
    pub description: &'static str,
    /// What the metric needs from the oracle model, if anything (it is then built from values
    /// computed in the oracle's pass).
    pub needs_oracle: Option<&'static str>,
}

const fn entry(name: &'static str, description: &'static str) -> MetricInfo {
    MetricInfo {
        name,
        description,
        needs_oracle: None,
    }
}

const fn with_oracle(
    name: &'static str,
    description: &'static str,
    needs: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        description,
        needs_oracle: Some(needs),
    }
}

/// Every metric the crate implements, sorted by name.
pub const METRICS: &[MetricInfo] = &[
    with_oracle(
        "kl_to_oracle",
        "mean KL(P_oracle || P_model) of next-token distributions",
        "its Distributions rows",
    ),
    entry(
        "mink_auc",
        "ROC AUC of the Min-K% Prob (k=40%) attack, forget vs holdout",
    ),
    entry(
        "muse_knowmem_forget",
        "MUSE KnowMem: ROUGE-L F1 of greedy answers on the forget QA set",
    ),
    entry(
        "muse_knowmem_retain",
        "MUSE KnowMem: ROUGE-L F1 of greedy answers on the retain QA set",
    ),
    with_oracle(
        "muse_privleak",
        "MUSE PrivLeak: (AUC - AUC_oracle) / AUC_oracle * 100 of Min-K%",
        "its mink_auc",
    ),
    entry(
        "muse_verbmem",
        "MUSE VerbMem: ROUGE-L F1 of greedy continuations of forget passages",
    ),
    entry(
        "perplexity",
        "token perplexity of a text set (loglikelihood_rolling)",
    ),
    entry(
        "restor_clean_acc",
        "accuracy of the clean over the corrupted answer (RESTOR-style)",
    ),
    with_oracle(
        "restor_recovery",
        "(acc - acc_corrupted) / (acc_oracle - acc_corrupted)",
        "its restor_clean_acc",
    ),
    with_oracle(
        "tofu_forget_quality",
        "TOFU forget quality: KS-test p-value of forget truth ratios vs the oracle's",
        "its tofu_truth_ratio_forget",
    ),
    entry(
        "tofu_model_utility",
        "TOFU model utility: harmonic mean of retain prob, ROUGE-L recall, truth ratio",
    ),
    entry(
        "tofu_prob_forget",
        "TOFU probability P(a|q)^(1/|a|) on the forget set",
    ),
    entry(
        "tofu_prob_retain",
        "TOFU probability P(a|q)^(1/|a|) on the retain set",
    ),
    entry(
        "tofu_rouge_forget",
        "TOFU ROUGE-L recall of greedy answers on the forget set",
    ),
    entry(
        "tofu_rouge_retain",
        "TOFU ROUGE-L recall of greedy answers on the retain set",
    ),
    entry(
        "tofu_truth_ratio_forget",
        "TOFU truth ratio, mean min(R, 1/R), forget set",
    ),
    entry(
        "tofu_truth_ratio_retain",
        "TOFU truth ratio, mean max(0, 1 - R), retain set",
    ),
    entry(
        "toxigen",
        "lm-eval toxigen: acc / acc_norm of hateful-or-not classification",
    ),
    entry(
        "toxigen_generation",
        "mean P(toxic) of greedy continuations of ToxiGen prompts (needs a classifier)",
    ),
    entry(
        "toxigen_likelihood",
        "per target group: per-token loglik of hateful minus neutral statements",
    ),
    entry(
        "truthfulqa_mc1",
        "lm-eval truthfulqa_mc1: accuracy, single true answer",
    ),
    entry(
        "truthfulqa_mc2",
        "lm-eval truthfulqa_mc2: normalised probability mass of true answers",
    ),
];

pub use suggest::edit_distance;

/// Known names closest to `name` (distance ≤ max(2, len/3)), nearest first.
pub fn suggestions(name: &str) -> Vec<&'static str> {
    let limit = (name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &'static str)> = METRICS
        .iter()
        .map(|m| (edit_distance(name, m.name), m.name))
        .filter(|(d, _)| *d <= limit)
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, n)| n).collect()
}

/// Looks a metric up by name.
pub fn lookup(name: &str) -> Result<&'static MetricInfo> {
    if let Some(m) = METRICS.iter().find(|m| m.name == name) {
        return Ok(m);
    }
    let known: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
    let hint = match suggestions(name).first() {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    };
    bail!(
        "unknown metric {name:?}{hint}; known metrics: {}",
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_get_a_suggestion_and_the_list() {
        let err = lookup("truthfulqa_mc3").unwrap_err().to_string();
        assert!(
            err.contains("did you mean \"truthfulqa_mc1\"?")
                || err.contains("did you mean \"truthfulqa_mc2\"?"),
            "{err}"
        );
        assert!(err.contains("toxigen, toxigen_generation"), "{err}");
        let err = lookup("zzzzzzzz").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
        assert_eq!(lookup("toxigen").unwrap().name, "toxigen");
        assert!(lookup("tofu_forget_quality")
            .unwrap()
            .needs_oracle
            .is_some());
    }

    #[test]
    fn registry_is_sorted_and_unique() {
        for w in METRICS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }
}
