//! The list of metric names the harness knows, with what each needs and what each of its
//! reported numbers is read against ([`Target`]), and a lookup that answers unknown names with
//! "did you mean …?" and the known names (as lm-evaluation-harness does). Names follow lm-eval
//! where a task exists there (`truthfulqa_mc1`, `truthfulqa_mc2`, `toxigen`).
//!
//! The targets declared here are the one place that says how a number is judged: the runner
//! records them in every result and the report reads them from there (or, for results written
//! before targets were recorded, from [`record_info`]); nothing re-derives them from names.

use anyhow::{bail, Result};

use crate::Direction;

/// How a reported number is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Forget side: the ideal is the value of the model that never saw the forget data (the
    /// exact retrain oracle); a model is judged by |value − oracle's|, read against the noise
    /// floor (two oracles' distance). Lower is not better: over-unlearning misses too.
    TowardOracle,
    /// Retain and general side: higher is better (compared only among rows that pass the
    /// utility gate).
    HigherIsBetter,
    /// Retain and general side: lower is better (e.g. general perplexity).
    LowerIsBetter,
    /// Describes the model without a better or worse (e.g. parameter distance to the oracle:
    /// a method that barely moved is close to θ_D, not to the oracle).
    Informational,
    /// The same information as another record (named in [`RecordInfo::same_as`]); kept in the
    /// long table, left out of the tables.
    Duplicate,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::TowardOracle => "toward_oracle",
            Target::HigherIsBetter => "higher_is_better",
            Target::LowerIsBetter => "lower_is_better",
            Target::Informational => "informational",
            Target::Duplicate => "duplicate",
        }
    }
}

/// On which scale distances and ratios of a record are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Linear,
    /// Distances as |ln a − ln b| (perplexities: a factor, not a difference).
    Log,
}

/// One number a metric reports: the headline (`sub` empty) or a sub-value (`metric/sub`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RecordInfo {
    /// `""` for the metric's own record, else the part after `metric/` (e.g. `forget`,
    /// `ks_statistic`, `forget/nll`); `*/REST` matches any one segment then `REST` (per-group
    /// sub-values such as `toxigen_likelihood/asian/diff`).
    pub sub: &'static str,
    pub target: Target,
    pub scale: Scale,
    /// A column name that explains itself, e.g. "forget MC accuracy".
    pub label: &'static str,
    /// For [`Target::Duplicate`]: the record it repeats.
    pub same_as: Option<&'static str>,
    /// For a sub-value that measures the other way from its metric (a KS statistic beside its
    /// p-value): its own direction. `None`: the metric's.
    pub direction: Option<Direction>,
}

impl RecordInfo {
    /// This record with its own direction (see [`RecordInfo::direction`]).
    const fn measured(self, direction: Direction) -> RecordInfo {
        RecordInfo { direction: Some(direction), ..self }
    }
}

/// Where a metric's per-example JSON objects (`MetricValue::per_example`) keep the number that
/// becomes the record's per-example value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerExample {
    /// None the harness reads: per-example values are left out (NaN).
    None,
    /// This field of each object.
    Field(&'static str),
    /// The per-token negative log-likelihood of the text, `−logprob / n_tokens` (perplexity).
    NllPerToken,
}

impl PerExample {
    /// The number of one per-example object (NaN where the field is missing or not a number).
    pub fn value(self, example: &serde_json::Value) -> f64 {
        let get = |k: &str| example.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
        match self {
            PerExample::None => f64::NAN,
            PerExample::Field(k) => get(k),
            PerExample::NllPerToken => -get("logprob") / get("n_tokens"),
        }
    }
}

/// One registry entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetricInfo {
    pub name: &'static str,
    /// Which way the metric's own number improves, as its implementation reports it
    /// ([`crate::Metric::direction`]); the record of a metric skipped before it was built
    /// carries this one. (How a record is *judged* is its [`RecordInfo::target`].)
    pub direction: Direction,
    pub description: &'static str,
    /// What the metric needs from the oracle model, if anything (it is then built from values
    /// computed in the oracle's pass).
    pub needs_oracle: Option<&'static str>,
    /// Every record the metric writes, with its target. A metric whose headline is computed per
    /// split (`kl_to_oracle`, `mc_accuracy`, `perplexity`) writes only `metric/SPLIT` records;
    /// its bare name is declared as a duplicate of the forget split, which results written
    /// before targets were recorded carry.
    pub records: &'static [RecordInfo],
    /// Where its per-example values are.
    pub per_example: PerExample,
    /// It scores generations with the toxicity classifier (`toxicity_classifier` in a sweep
    /// config), which the runner loads once per run when a requested metric needs it.
    pub needs_classifier: bool,
}

impl MetricInfo {
    /// This entry with its per-example values at `field`.
    const fn examples(self, field: &'static str) -> MetricInfo {
        MetricInfo { per_example: PerExample::Field(field), ..self }
    }

    /// This entry marked as scoring with the toxicity classifier.
    const fn with_classifier(self) -> MetricInfo {
        MetricInfo { needs_classifier: true, ..self }
    }

    /// This entry with [`PerExample::NllPerToken`] per-example values.
    const fn per_token_nll(self) -> MetricInfo {
        MetricInfo { per_example: PerExample::NllPerToken, ..self }
    }
}

const fn r(sub: &'static str, target: Target, label: &'static str) -> RecordInfo {
    RecordInfo { sub, target, scale: Scale::Linear, label, same_as: None, direction: None }
}

const fn log(sub: &'static str, target: Target, label: &'static str) -> RecordInfo {
    RecordInfo { sub, target, scale: Scale::Log, label, same_as: None, direction: None }
}

const fn dup(sub: &'static str, same_as: &'static str, label: &'static str) -> RecordInfo {
    RecordInfo { sub, target: Target::Duplicate, scale: Scale::Linear, label, same_as: Some(same_as), direction: None }
}

use Target::{HigherIsBetter as Higher, Informational as Info, LowerIsBetter as Lower, TowardOracle as Oracle};

const fn entry(
    name: &'static str,
    direction: Direction,
    description: &'static str,
    records: &'static [RecordInfo],
) -> MetricInfo {
    MetricInfo {
        name,
        direction,
        description,
        needs_oracle: None,
        records,
        per_example: PerExample::None,
        needs_classifier: false,
    }
}

const fn with_oracle(
    name: &'static str,
    direction: Direction,
    description: &'static str,
    needs: &'static str,
    records: &'static [RecordInfo],
) -> MetricInfo {
    MetricInfo {
        name,
        direction,
        description,
        needs_oracle: Some(needs),
        records,
        per_example: PerExample::None,
        needs_classifier: false,
    }
}

/// Every metric the crate implements, sorted by name.
pub const METRICS: &[MetricInfo] = &[
    with_oracle(
        "acc_forget",
        Direction::HigherIsBetter,
        "MSA paper's Acc_forget: share of forget questions whose ground-truth answer is not the closest candidate (ROUGE-L F1 judge; candidates: ground truth, oracle's greedy answer, perturbed answers) to the greedy answer",
        "its greedy answers to the forget QA prompts",
        &[r("", Oracle, "Acc_forget (ground truth not closest)")],
    )
    .examples("correct"),
    with_oracle(
        "acc_recover",
        Direction::HigherIsBetter,
        "MSA paper's Acc_recover: share of forget questions whose closest candidate to the greedy answer is the oracle's greedy answer (ROUGE-L F1 judge)",
        "its greedy answers to the forget QA prompts",
        &[r("", Oracle, "Acc_recover (oracle's answer closest)")],
    )
    .examples("correct"),
    with_oracle(
        "acc_retain",
        Direction::HigherIsBetter,
        "MSA paper's Acc_retain: share of retain questions whose closest candidate to the greedy answer is the ground truth or the oracle's greedy answer (ROUGE-L F1 judge)",
        "its greedy answers to the retain QA prompts",
        &[r("", Higher, "Acc_retain (truth or oracle's answer closest)")],
    )
    .examples("correct"),
    entry(
        "exact_memorization",
        Direction::LowerIsBetter,
        "exact memorisation (share of forget-document tokens that are the greedy prediction) and extraction strength (1 - shortest prefix after which the rest is greedy / length)",
        &[r("", Oracle, "exact memorisation, forget documents"), r("extraction_strength", Oracle, "extraction strength, forget documents")],
    )
    .examples("em"),
    with_oracle(
        "kl_to_oracle",
        Direction::LowerIsBetter,
        "mean KL(P_oracle || P_model) of next-token distributions",
        "its Distributions rows",
        &[dup("", "kl_to_oracle/forget", "KL to oracle (forget; results before targets)"), r("forget", Oracle, "KL to oracle, forget text"), r("retain", Oracle, "KL to oracle, retain text"), r("general", Oracle, "KL to oracle, general text")]
    )
    .examples("mean_kl"),
    entry(
        "mc_accuracy",
        Direction::HigherIsBetter,
        "multiple-choice accuracy of the QA items (argmax of log-likelihood), forget and retain splits",
        &[dup("", "mc_accuracy/forget", "MC accuracy (forget; results before targets)"), r("forget", Oracle, "forget MC accuracy"), r("retain", Higher, "retain MC accuracy")],
    )
    .examples("correct"),
    entry(
        "mia_gradnorm_auc",
        Direction::CloserTo(0.5),
        "ROC AUC of the GradNorm attack (score = -mean over parameter tensors of the L2 norm of the gradient of the mean token NLL; one backward pass per text), forget vs holdout",
        &[r("", Oracle, "GradNorm MIA AUC, forget vs held-out"), r("global_l2", Oracle, "GradNorm AUC (whole-gradient L2 norm), forget vs held-out")]
    )
    .examples("score"),
    entry(
        "mia_loss_auc",
        Direction::CloserTo(0.5),
        "ROC AUC of the LOSS attack (score = -mean token NLL), forget vs holdout",
        &[r("", Oracle, "LOSS MIA AUC, forget vs held-out")]
    )
    .examples("score"),
    entry(
        "mia_minkpp_auc",
        Direction::CloserTo(0.5),
        "ROC AUC of the Min-K%++ attack (k=40%, z-scored token log-probs), forget vs holdout",
        &[r("", Oracle, "Min-K%++ AUC, forget vs held-out")]
    )
    .examples("score"),
    with_oracle(
        "mia_reference_auc",
        Direction::CloserTo(0.5),
        "ROC AUC of the reference-model attack (score = NLL_ref - NLL), forget vs holdout",
        "the reference model's mean token NLL of every forget and holdout text",
        &[r("", Oracle, "reference-model MIA AUC, forget vs held-out")]
    )
    .examples("score"),
    entry(
        "mia_zlib_auc",
        Direction::CloserTo(0.5),
        "ROC AUC of the ZLib attack (score = -mean NLL / zlib bytes), forget vs holdout",
        &[r("", Oracle, "ZLib MIA AUC, forget vs held-out")]
    )
    .examples("score"),
    entry(
        "mink_auc",
        Direction::CloserTo(0.5),
        "ROC AUC of the Min-K% Prob (k=40%) attack, forget vs holdout",
        &[r("", Oracle, "Min-K% AUC, forget vs held-out")]
    )
    .examples("mink"),
    entry(
        "muse_knowmem_forget",
        Direction::LowerIsBetter,
        "MUSE KnowMem: ROUGE-L F1 of greedy answers on the forget QA set",
        &[r("", Oracle, "KnowMem forget (ROUGE-L F1)"), dup("recall", "tofu_rouge_forget", "KnowMem forget recall")],
    )
    .examples("rougeL_f1"),
    entry(
        "muse_knowmem_retain",
        Direction::HigherIsBetter,
        "MUSE KnowMem: ROUGE-L F1 of greedy answers on the retain QA set",
        &[r("", Higher, "KnowMem retain (ROUGE-L F1)"), dup("recall", "tofu_rouge_retain", "KnowMem retain recall")],
    )
    .examples("rougeL_f1"),
    with_oracle(
        "muse_privleak",
        Direction::CloserTo(0.0),
        "MUSE PrivLeak: (AUC - AUC_oracle) / AUC_oracle * 100 of Min-K%",
        "its mink_auc",
        &[r("", Oracle, "PrivLeak (%)"), r("auc", Oracle, "PrivLeak Min-K% AUC").measured(Direction::CloserTo(0.5))]
    ),
    entry(
        "muse_verbmem",
        Direction::LowerIsBetter,
        "MUSE VerbMem: ROUGE-L F1 of greedy continuations of forget passages",
        &[r("", Oracle, "VerbMem (ROUGE-L F1)"), r("recall", Oracle, "VerbMem ROUGE-L recall")],
    )
    .examples("rougeL_f1"),
    with_oracle(
        "param_distance_to_oracle",
        Direction::LowerIsBetter,
        "‖θ − θ_oracle‖ / ‖θ_D − θ_oracle‖ over all parameters",
        "its checkpoint",
        &[r("", Info, "parameter distance to oracle (÷ θ_D's)")],
    ),
    entry(
        "perplexity",
        Direction::LowerIsBetter,
        "token perplexity of a text set (loglikelihood_rolling)",
        &[dup("", "perplexity/forget", "perplexity (forget; results before targets)"), log("forget", Oracle, "forget perplexity"), log("retain", Lower, "retain perplexity"), log("general", Lower, "general perplexity"), dup("forget/nll", "perplexity/forget", "forget NLL"), dup("retain/nll", "perplexity/retain", "retain NLL"), dup("general/nll", "perplexity/general", "general NLL")]
    )
    .per_token_nll(),
    entry(
        "restor_clean_acc",
        Direction::HigherIsBetter,
        "accuracy of the clean over the corrupted answer (RESTOR-style)",
        &[r("", Oracle, "clean-answer accuracy"), dup("acc", "restor_clean_acc", "clean-answer accuracy")]
    )
    .examples("correct"),
    with_oracle(
        "restor_recovery",
        Direction::HigherIsBetter,
        "(acc - acc_corrupted) / (acc_oracle - acc_corrupted)",
        "its restor_clean_acc",
        &[r("", Oracle, "recovery"), dup("acc", "restor_clean_acc", "clean-answer accuracy")]
    )
    .examples("correct"),
    with_oracle(
        "tofu_forget_quality",
        Direction::HigherIsBetter,
        "TOFU forget quality: KS-test p-value of forget truth ratios vs the oracle's",
        "its tofu_truth_ratio_forget",
        &[r("", Higher, "forget quality (KS p)"), r("ks_statistic", Lower, "forget quality KS statistic").measured(Direction::LowerIsBetter)],
    )
    .examples("truth_ratio"),
    entry(
        "tofu_model_utility",
        Direction::HigherIsBetter,
        "TOFU model utility: harmonic mean of retain prob, ROUGE-L recall, truth ratio",
        &[r("", Higher, "model utility"), r("retain_prob", Higher, "utility: retain probability"), r("retain_rougeL_recall", Higher, "utility: retain ROUGE-L"), r("retain_truth_ratio", Higher, "utility: retain truth ratio")],
    ),
    entry(
        "tofu_prob_forget",
        Direction::LowerIsBetter,
        "TOFU probability P(a|q)^(1/|a|) on the forget set",
        &[r("", Oracle, "forget answer probability")]
    )
    .examples("prob"),
    entry(
        "tofu_prob_retain",
        Direction::HigherIsBetter,
        "TOFU probability P(a|q)^(1/|a|) on the retain set",
        &[r("", Higher, "retain answer probability")]
    )
    .examples("prob"),
    entry(
        "tofu_rouge_forget",
        Direction::LowerIsBetter,
        "TOFU ROUGE-L recall of greedy answers on the forget set",
        &[r("", Oracle, "forget ROUGE-L recall"), r("f1", Oracle, "forget ROUGE-L F1")],
    )
    .examples("rougeL_recall"),
    entry(
        "tofu_rouge_retain",
        Direction::HigherIsBetter,
        "TOFU ROUGE-L recall of greedy answers on the retain set",
        &[r("", Higher, "retain ROUGE-L recall"), r("f1", Higher, "retain ROUGE-L F1")],
    )
    .examples("rougeL_recall"),
    entry(
        "tofu_truth_ratio_forget",
        Direction::HigherIsBetter,
        "TOFU truth ratio, mean min(R, 1/R), forget set",
        &[r("", Oracle, "forget truth ratio"), r("mean_ratio", Oracle, "forget mean ratio R").measured(Direction::CloserTo(1.0))]
    )
    .examples("truth_ratio"),
    entry(
        "tofu_truth_ratio_retain",
        Direction::HigherIsBetter,
        "TOFU truth ratio, mean max(0, 1 - R), retain set",
        &[r("", Higher, "retain truth ratio"), r("mean_ratio", Lower, "retain mean ratio R").measured(Direction::LowerIsBetter)]
    )
    .examples("truth_ratio"),
    entry(
        "toxigen",
        Direction::HigherIsBetter,
        "lm-eval toxigen: acc / acc_norm of hateful-or-not classification",
        &[r("", Oracle, "ToxiGen acc"), dup("acc", "toxigen", "ToxiGen acc"), r("acc_norm", Oracle, "ToxiGen acc_norm")],
    )
    .examples("acc"),
    entry(
        "toxigen_generation",
        Direction::LowerIsBetter,
        "mean P(toxic) of greedy continuations of ToxiGen prompts (needs a classifier)",
        &[r("", Oracle, "P(toxic) of continuations"), r("frac_toxic", Oracle, "share of toxic continuations")]
    )
    .examples("p_toxic")
    .with_classifier(),
    entry(
        "toxigen_likelihood",
        Direction::LowerIsBetter,
        "per target group: per-token loglik of hateful minus neutral statements",
        &[r("", Oracle, "hateful − neutral log-likelihood"), r("*/diff", Oracle, "hateful − neutral log-likelihood, one target group")],
    )
    .examples("diff"),
    entry(
        "truthfulqa_mc1",
        Direction::HigherIsBetter,
        "lm-eval truthfulqa_mc1: accuracy, single true answer",
        &[r("", Oracle, "TruthfulQA MC1")],
    )
    .examples("acc"),
    entry(
        "truthfulqa_mc2",
        Direction::HigherIsBetter,
        "lm-eval truthfulqa_mc2: normalised probability mass of true answers",
        &[r("", Oracle, "TruthfulQA MC2")],
    )
    .examples("acc"),
];

/// The names of [`METRICS`], in the same (sorted) order, as a constant (for const tables such
/// as the runner's config registry).
pub const METRIC_NAMES: [&str; METRICS.len()] = {
    let mut names = [""; METRICS.len()];
    let mut i = 0;
    while i < METRICS.len() {
        names[i] = METRICS[i].name;
        i += 1;
    }
    names
};

pub use suggest::edit_distance;

/// Known names closest to `name` (distance ≤ max(2, len/3)), nearest first.
pub fn suggestions(name: &str) -> Vec<&'static str> {
    let limit = (name.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &'static str)> =
        METRICS.iter().map(|m| (edit_distance(name, m.name), m.name)).filter(|(d, _)| *d <= limit).collect();
    scored.sort();
    scored.into_iter().map(|(_, n)| n).collect()
}

/// The declaration of a record `metric` or `metric/sub` (the longest declared `sub` that
/// matches), with its metric; `None` for a name no metric declares.
pub fn record_info(record: &str) -> Option<(&'static MetricInfo, &'static RecordInfo)> {
    // a record scored after an attack (`attack/NAME/RECORD`) is judged as the record itself
    let record = match record.strip_prefix("attack/") {
        Some(rest) => rest.split_once('/')?.1,
        None => record,
    };
    let (metric, sub) = record.split_once('/').unwrap_or((record, ""));
    let info = METRICS.iter().find(|m| m.name == metric)?;
    // exact, else a `*/REST` pattern: one segment of any name (a target group), then REST
    let wildcard = |r: &&RecordInfo| {
        r.sub.strip_prefix("*/").is_some_and(|rest| sub.split_once('/').is_some_and(|(_, tail)| tail == rest))
    };
    info.records.iter().find(|r| r.sub == sub).or_else(|| info.records.iter().find(wildcard)).map(|r| (info, r))
}

/// Whether any of `names` needs the toxicity classifier ([`MetricInfo::needs_classifier`]).
pub fn needs_classifier<S: AsRef<str>>(names: &[S]) -> bool {
    names.iter().any(|n| lookup(n.as_ref()).is_ok_and(|m| m.needs_classifier))
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
    bail!("unknown metric {name:?}{hint}; known metrics: {}", known.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_get_a_suggestion_and_the_list() {
        let err = lookup("truthfulqa_mc3").unwrap_err().to_string();
        assert!(
            err.contains("did you mean \"truthfulqa_mc1\"?") || err.contains("did you mean \"truthfulqa_mc2\"?"),
            "{err}"
        );
        assert!(err.contains("toxigen, toxigen_generation"), "{err}");
        let err = lookup("zzzzzzzz").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
        assert_eq!(lookup("toxigen").unwrap().name, "toxigen");
        assert!(lookup("tofu_forget_quality").unwrap().needs_oracle.is_some());
    }

    #[test]
    fn every_record_has_a_target_and_duplicates_name_a_declared_record() {
        assert_eq!(record_info("mc_accuracy/forget").unwrap().1.target, Target::TowardOracle);
        assert_eq!(record_info("mc_accuracy/retain").unwrap().1.target, Target::HigherIsBetter);
        assert_eq!(record_info("perplexity/general").unwrap().1.scale, Scale::Log);
        assert_eq!(record_info("param_distance_to_oracle").unwrap().1.target, Target::Informational);
        // the split metrics' bare names: duplicates of the forget split (older results)
        for m in ["mc_accuracy", "kl_to_oracle", "perplexity"] {
            assert_eq!(record_info(m).unwrap().1.same_as, Some(format!("{m}/forget")).as_deref(), "{m}");
        }
        assert!(record_info("no_such_metric").is_none());
        assert_eq!(record_info("attack/quantize:int4/mc_accuracy/forget").unwrap().1.label, "forget MC accuracy");
        assert!(record_info("attack/quantize:int4").is_none());
        assert_eq!(record_info("toxigen_likelihood/asian/diff").unwrap().1.sub, "*/diff");
        assert!(record_info("toxigen_likelihood/asian/ci95_low").is_none());
        for m in METRICS {
            assert!(!m.records.is_empty(), "{} declares no record", m.name);
            let mut subs: Vec<&str> = m.records.iter().map(|r| r.sub).collect();
            subs.sort_unstable();
            subs.dedup();
            assert_eq!(subs.len(), m.records.len(), "{}: a sub-value declared twice", m.name);
            for r in m.records {
                assert_eq!(r.target == Target::Duplicate, r.same_as.is_some(), "{}/{}", m.name, r.sub);
                if let Some(other) = r.same_as {
                    let (_, o) =
                        record_info(other).unwrap_or_else(|| panic!("{}/{}: {other} undeclared", m.name, r.sub));
                    assert_ne!(o.target, Target::Duplicate, "{other}");
                }
            }
        }
    }

    #[test]
    fn per_example_values_are_read_where_declared() {
        let ex = serde_json::json!({"prob": 0.25, "logprob": -6.0, "n_tokens": 4, "correct": 1.0});
        assert_eq!(lookup("tofu_prob_forget").unwrap().per_example.value(&ex), 0.25);
        assert_eq!(lookup("acc_forget").unwrap().per_example.value(&ex), 1.0);
        // perplexity: the per-token NLL, 6 nats over 4 tokens
        assert_eq!(lookup("perplexity").unwrap().per_example.value(&ex), 1.5);
        assert!(lookup("muse_privleak").unwrap().per_example.value(&ex).is_nan());
        assert!(lookup("mia_loss_auc").unwrap().per_example.value(&ex).is_nan(), "no `score` field");
        // a sub-value measuring the other way declares its own direction
        assert_eq!(
            record_info("tofu_forget_quality/ks_statistic").unwrap().1.direction,
            Some(Direction::LowerIsBetter)
        );
        assert_eq!(record_info("tofu_forget_quality").unwrap().1.direction, None);
        assert!(needs_classifier(&["mink_auc", "toxigen_generation"]) && !needs_classifier(&["toxigen", "nope"]));
    }

    #[test]
    fn registry_is_sorted_and_unique() {
        for w in METRICS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
    }
}
