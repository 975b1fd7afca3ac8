//! TOFU metrics (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs") over generic
//! question–answer items, following locuslab/open-unlearning `src/evals/metrics/memorization.py`
//! and `utility.py`:
//!
//! - probability: mean over items of P(a|q)^(1/|a|) (length-normalised, |a| in tokens);
//! - ROUGE: ROUGE-L recall of the greedy answer against the true answer (TOFU's `rougeL_recall`,
//!   `rouge_score` with `use_stemmer=True`, see [`crate::rouge`]);
//! - truth ratio R = P̄(perturbed) / P(paraphrased)^(1/|ã|), where P̄(perturbed) is the geometric
//!   mean over perturbed answers of P(â|q)^(1/|â|): open-unlearning and the original TOFU code
//!   average the per-token *losses* of the perturbed answers before exponentiating
//!   (`aggregate_to_1D` then `np.exp(-loss)`), which is the geometric mean. The paper's formula
//!   uses the arithmetic mean; [`PerturbedMean::Arithmetic`] gives that. Aggregates:
//!   forget side `mean(min(R, 1/R))` (`closer_to_1_better`), retain side `mean(max(0, 1 − R))`
//!   (`true_better`);
//! - forget quality: p-value of `scipy.stats.ks_2samp` between the unlearned model's and the
//!   oracle's (retain model's) forget-set truth ratios. The oracle's ratios come from running
//!   [`TruthRatio`] on the oracle: see [`truth_ratios_of`];
//! - model utility: harmonic mean of retain probability, retain ROUGE-L recall and retain truth
//!   ratio (`true_better`), and the same three numbers on each [`UtilitySet`] given (TOFU's real
//!   authors and world facts: 9 numbers in all, as TOFU's `aggregate_eval_stat.py`), plus any
//!   extra components the caller passes, each of which must be in [0, 1]. On a utility set the
//!   probability is normalised over the options, mean of P(a)/(P(a) + Σ P(wrong)), and the
//!   truth ratio's base is the answer itself (TOFU's `base_answer_key: answer` for these sets),
//!   each P length-normalised as above.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::metric::{expect_len, Direction, Metric, MetricOutput, MetricValue};
use crate::rouge::rouge_l_with;
use crate::scorer::{normalised_prob, Request, Response};
use crate::stats::{harmonic_mean, ks_2samp, mean};

/// One question with its answer variants. `paraphrased_answer` and `perturbed_answers` are needed
/// only by the truth ratio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QaItem {
    pub question: String,
    pub answer: String,
    #[serde(default)]
    pub paraphrased_answer: Option<String>,
    #[serde(default)]
    pub perturbed_answers: Vec<String>,
}

/// How a question becomes a context and an answer a continuation:
/// context = `question_prefix + question + answer_prefix`, continuation = `delimiter + answer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QaTemplate {
    pub question_prefix: String,
    pub answer_prefix: String,
    /// Goes in front of the answer (the word-boundary space belongs to the continuation).
    pub delimiter: String,
}

impl Default for QaTemplate {
    fn default() -> Self {
        QaTemplate { question_prefix: "Question: ".into(), answer_prefix: "\nAnswer:".into(), delimiter: " ".into() }
    }
}

impl QaTemplate {
    /// No prompt around the question and a space before the answer: for questions that carry
    /// their own prompt (RESTOR's in-context examples followed by the question, answered on the
    /// same line, as its official evaluation asks).
    pub fn raw() -> Self {
        QaTemplate { question_prefix: String::new(), answer_prefix: String::new(), delimiter: " ".into() }
    }
    pub fn context(&self, question: &str) -> String {
        format!("{}{}{}", self.question_prefix, question, self.answer_prefix)
    }
    pub fn continuation(&self, answer: &str) -> String {
        format!("{}{}", self.delimiter, answer)
    }
    pub fn loglik(&self, question: &str, answer: &str) -> Request {
        Request::loglik(self.context(question), self.continuation(answer))
    }
}

/// Which TOFU split a metric is computed on; it decides direction and aggregation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Side {
    Forget,
    Retain,
}

impl Side {
    fn suffix(self) -> &'static str {
        match self {
            Side::Forget => "forget",
            Side::Retain => "retain",
        }
    }
}

/// TOFU probability P(a|q)^(1/|a|), averaged over items.
pub struct Probability {
    pub items: Vec<QaItem>,
    pub template: QaTemplate,
    pub side: Side,
    name: String,
}

impl Probability {
    pub fn new(items: Vec<QaItem>, template: QaTemplate, side: Side) -> Self {
        Probability { name: format!("tofu_prob_{}", side.suffix()), items, template, side }
    }
}

fn probabilities(responses: &[Response]) -> Result<Vec<f64>> {
    responses.iter().enumerate().map(|(i, r)| normalised_prob(r).with_context(|| format!("item {i}"))).collect()
}

impl Metric for Probability {
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        match self.side {
            Side::Forget => Direction::LowerIsBetter,
            Side::Retain => Direction::HigherIsBetter,
        }
    }
    fn requests(&self) -> Vec<Request> {
        self.items.iter().map(|it| self.template.loglik(&it.question, &it.answer)).collect()
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.items.len(), &self.name)?;
        let p = probabilities(responses)?;
        let per_example = p.iter().map(|p| json!({ "prob": p })).collect();
        Ok(MetricValue::scalar(mean(&p)).with_examples(per_example))
    }
}

/// ROUGE-L of the greedy answer against the true answer; headline = recall (TOFU), `f1` too.
pub struct AnswerRouge {
    pub items: Vec<QaItem>,
    pub template: QaTemplate,
    pub side: Side,
    pub max_new_tokens: usize,
    name: String,
}

impl AnswerRouge {
    pub fn new(items: Vec<QaItem>, template: QaTemplate, side: Side, max_new_tokens: usize) -> Self {
        AnswerRouge { name: format!("tofu_rouge_{}", side.suffix()), items, template, side, max_new_tokens }
    }
}

/// Greedy-answer requests shared by TOFU ROUGE, MUSE KnowMem and model utility: stop at a newline.
pub(crate) fn answer_requests(items: &[QaItem], template: &QaTemplate, max_new_tokens: usize) -> Vec<Request> {
    items.iter().map(|it| Request::generate(template.context(&it.question), &["\n"], max_new_tokens)).collect()
}

/// TOFU, MUSE (via open-unlearning) and this crate score ROUGE with the Porter stemmer.
pub const USE_STEMMER: bool = true;

/// (recall, f1) per item, and per-example JSON (ROUGE-L with [`USE_STEMMER`]).
pub(crate) fn rouge_scores(
    targets: impl Iterator<Item = String>,
    responses: &[Response],
) -> Result<(Vec<f64>, Vec<f64>, Vec<serde_json::Value>)> {
    let (mut recall, mut f1, mut per_example) = (Vec::new(), Vec::new(), Vec::new());
    for (target, r) in targets.zip(responses) {
        let generated = r.generated()?;
        let s = rouge_l_with(&target, generated, USE_STEMMER);
        recall.push(s.recall);
        f1.push(s.f1);
        per_example
            .push(json!({ "generation": generated, "target": target, "rougeL_recall": s.recall, "rougeL_f1": s.f1 }));
    }
    Ok((recall, f1, per_example))
}

impl Metric for AnswerRouge {
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        match self.side {
            Side::Forget => Direction::LowerIsBetter,
            Side::Retain => Direction::HigherIsBetter,
        }
    }
    fn requests(&self) -> Vec<Request> {
        answer_requests(&self.items, &self.template, self.max_new_tokens)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.items.len(), &self.name)?;
        let (recall, f1, per_example) = rouge_scores(self.items.iter().map(|it| it.answer.clone()), responses)?;
        Ok(MetricValue::scalar(mean(&recall)).with("f1", mean(&f1)).with_examples(per_example))
    }
}

/// How the perturbed answers' normalised probabilities are averaged (see module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PerturbedMean {
    /// exp(mean log P) — open-unlearning and the TOFU code.
    #[default]
    Geometric,
    /// mean P — the TOFU paper's formula.
    Arithmetic,
}

impl PerturbedMean {
    /// The mean of the perturbed answers' normalised probabilities.
    fn of(self, probs: &[f64]) -> f64 {
        match self {
            PerturbedMean::Geometric => mean(&probs.iter().map(|p| p.ln()).collect::<Vec<_>>()).exp(),
            PerturbedMean::Arithmetic => mean(probs),
        }
    }
}

fn check_truth_ratio_items(items: &[QaItem]) -> Result<()> {
    for (i, it) in items.iter().enumerate() {
        if it.paraphrased_answer.is_none() {
            bail!("truth ratio: item {i} ({:?}) has no paraphrased_answer", it.question);
        }
        if it.perturbed_answers.is_empty() {
            bail!("truth ratio: item {i} ({:?}) has no perturbed_answers", it.question);
        }
    }
    Ok(())
}

fn truth_ratio_requests(items: &[QaItem], template: &QaTemplate) -> Vec<Request> {
    let mut reqs = Vec::new();
    for it in items {
        let para = it.paraphrased_answer.as_deref().unwrap_or(&it.answer);
        reqs.push(template.loglik(&it.question, para));
        for p in &it.perturbed_answers {
            reqs.push(template.loglik(&it.question, p));
        }
    }
    reqs
}

fn truth_ratio_len(items: &[QaItem]) -> usize {
    items.iter().map(|it| 1 + it.perturbed_answers.len()).sum()
}

/// Per-item truth ratios R from the responses to `truth_ratio_requests`.
fn truth_ratios(items: &[QaItem], responses: &[Response], mean_kind: PerturbedMean) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(items.len());
    let mut at = 0;
    for (i, it) in items.iter().enumerate() {
        let para = normalised_prob(&responses[at]).with_context(|| format!("item {i}: paraphrased answer"))?;
        let perturbed = probabilities(&responses[at + 1..at + 1 + it.perturbed_answers.len()])
            .with_context(|| format!("item {i}: perturbed answers"))?;
        at += 1 + it.perturbed_answers.len();
        let wrong = mean_kind.of(&perturbed);
        if para <= 0.0 {
            bail!("item {i}: paraphrased answer has probability 0; truth ratio undefined");
        }
        out.push(wrong / para);
    }
    Ok(out)
}

/// Aggregates truth ratios as TOFU does for each side.
pub fn aggregate_truth_ratios(ratios: &[f64], side: Side) -> f64 {
    match side {
        Side::Forget => mean(&ratios.iter().map(|r| r.min(1.0 / r)).collect::<Vec<_>>()),
        Side::Retain => mean(&ratios.iter().map(|r| (1.0 - r).max(0.0)).collect::<Vec<_>>()),
    }
}

/// TOFU truth ratio; per-example values carry `truth_ratio` (R) for forget quality.
pub struct TruthRatio {
    pub items: Vec<QaItem>,
    pub template: QaTemplate,
    pub side: Side,
    pub perturbed_mean: PerturbedMean,
    name: String,
}

impl TruthRatio {
    /// Errors when an item lacks a paraphrased answer or perturbed answers.
    pub fn new(items: Vec<QaItem>, template: QaTemplate, side: Side) -> Result<Self> {
        check_truth_ratio_items(&items)?;
        Ok(TruthRatio {
            name: format!("tofu_truth_ratio_{}", side.suffix()),
            items,
            template,
            side,
            perturbed_mean: PerturbedMean::default(),
        })
    }
}

impl Metric for TruthRatio {
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::HigherIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        truth_ratio_requests(&self.items, &self.template)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, truth_ratio_len(&self.items), &self.name)?;
        let ratios = truth_ratios(&self.items, responses, self.perturbed_mean)?;
        let per_example = ratios.iter().map(|r| json!({ "truth_ratio": r })).collect();
        Ok(MetricValue::scalar(aggregate_truth_ratios(&ratios, self.side))
            .with("mean_ratio", mean(&ratios))
            .with_examples(per_example))
    }
}

/// The per-example truth ratios of a [`TruthRatio`] (or [`ForgetQuality`]) output — what the
/// oracle contributes to forget quality.
pub fn truth_ratios_of(output: &MetricOutput) -> Result<Vec<f64>> {
    output
        .value
        .per_example
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.get("truth_ratio")
                .and_then(|x| x.as_f64())
                .with_context(|| format!("{}: example {i} has no truth_ratio", output.name))
        })
        .collect()
}

/// TOFU forget quality: KS-test p-value between this model's forget-set truth ratios and the
/// oracle's (from [`truth_ratios_of`] on the oracle's `tofu_truth_ratio_forget`).
pub struct ForgetQuality {
    pub items: Vec<QaItem>,
    pub template: QaTemplate,
    pub oracle_truth_ratios: Vec<f64>,
    pub perturbed_mean: PerturbedMean,
}

impl ForgetQuality {
    pub fn new(items: Vec<QaItem>, template: QaTemplate, oracle_truth_ratios: Vec<f64>) -> Result<Self> {
        check_truth_ratio_items(&items)?;
        if oracle_truth_ratios.is_empty() {
            bail!("forget quality: no oracle truth ratios");
        }
        Ok(ForgetQuality { items, template, oracle_truth_ratios, perturbed_mean: PerturbedMean::default() })
    }
}

impl Metric for ForgetQuality {
    fn name(&self) -> &str {
        "tofu_forget_quality"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::HigherIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        truth_ratio_requests(&self.items, &self.template)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, truth_ratio_len(&self.items), self.name())?;
        let ratios = truth_ratios(&self.items, responses, self.perturbed_mean)?;
        let ks = ks_2samp(&ratios, &self.oracle_truth_ratios)?;
        let per_example = ratios.iter().map(|r| json!({ "truth_ratio": r })).collect();
        Ok(MetricValue::scalar(ks.pvalue)
            .with("ks_statistic", ks.statistic)
            .with("exact", f64::from(u8::from(ks.method == crate::stats::KsMethod::Exact)))
            .with_examples(per_example))
    }
}

/// A model-utility question set beyond the retain set (TOFU's `real_authors`, `world_facts`):
/// each item's `answer` and `perturbed_answers` (its `paraphrased_answer` is not read: the
/// answer is the truth ratio's base). See the module docs for how it enters model utility.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UtilitySet {
    pub name: String,
    pub items: Vec<QaItem>,
}

/// TOFU model utility: harmonic mean of probability, ROUGE-L recall and truth ratio
/// (`true_better`) on the retain set and on each of `sets`, plus `extra` components (name ->
/// value in [0, 1]).
pub struct ModelUtility {
    pub items: Vec<QaItem>,
    pub template: QaTemplate,
    pub max_new_tokens: usize,
    pub extra: BTreeMap<String, f64>,
    pub perturbed_mean: PerturbedMean,
    /// TOFU's real authors and world facts (empty: the retain set alone).
    pub sets: Vec<UtilitySet>,
}

impl ModelUtility {
    pub fn new(
        items: Vec<QaItem>,
        template: QaTemplate,
        max_new_tokens: usize,
        extra: BTreeMap<String, f64>,
    ) -> Result<Self> {
        check_truth_ratio_items(&items)?;
        if let Some((k, v)) = extra.iter().find(|(_, v)| !(0.0..=1.0).contains(*v)) {
            bail!("model utility: extra component {k} = {v} is not in [0, 1]");
        }
        Ok(ModelUtility {
            items,
            template,
            max_new_tokens,
            extra,
            perturbed_mean: PerturbedMean::default(),
            sets: Vec::new(),
        })
    }

    /// Adds TOFU's other utility sets (real authors, world facts). Errors on an empty set, an
    /// item without wrong answers, a name given twice or taken by a retain component.
    pub fn with_sets(mut self, sets: Vec<UtilitySet>) -> Result<Self> {
        for (k, set) in sets.iter().enumerate() {
            if set.items.is_empty() {
                bail!("model utility: utility set {:?} has no items", set.name);
            }
            if let Some((i, it)) = set.items.iter().enumerate().find(|(_, it)| it.perturbed_answers.is_empty()) {
                bail!(
                    "model utility: utility set {:?}, item {i} ({:?}) has no perturbed_answers",
                    set.name,
                    it.question
                );
            }
            if set.name.is_empty() || set.name == "retain" || sets[..k].iter().any(|s| s.name == set.name) {
                bail!("model utility: utility set name {:?} is empty, \"retain\" or given twice", set.name);
            }
            if let Some(e) = self.extra.keys().find(|e| e.starts_with(&format!("{}_", set.name))) {
                bail!("model utility: extra component {e} collides with utility set {:?}", set.name);
            }
        }
        self.sets = sets;
        Ok(self)
    }
}

/// One utility set's (probability normalised over the options, ROUGE-L recall, truth ratio
/// aggregated `true_better`) from its responses: n answer log-likelihoods, n greedy answers,
/// then every item's perturbed-answer log-likelihoods.
fn utility_set_parts(set: &UtilitySet, responses: &[Response], mean_kind: PerturbedMean) -> Result<(f64, f64, f64)> {
    let n = set.items.len();
    let truth = probabilities(&responses[..n]).with_context(|| format!("utility set {}: answers", set.name))?;
    let (recall, _, _) = rouge_scores(set.items.iter().map(|it| it.answer.clone()), &responses[n..2 * n])?;
    let mut at = 2 * n;
    let (mut normalised, mut ratios) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (i, (it, &p)) in set.items.iter().zip(&truth).enumerate() {
        let k = it.perturbed_answers.len();
        let wrong = probabilities(&responses[at..at + k])
            .with_context(|| format!("utility set {}, item {i}: perturbed answers", set.name))?;
        at += k;
        let total = p + wrong.iter().sum::<f64>();
        normalised.push(if total > 0.0 { p / total } else { 0.0 });
        if p <= 0.0 {
            bail!("utility set {}, item {i}: the answer has probability 0; truth ratio undefined", set.name);
        }
        ratios.push(mean_kind.of(&wrong) / p);
    }
    Ok((mean(&normalised), mean(&recall), aggregate_truth_ratios(&ratios, Side::Retain)))
}

impl Metric for ModelUtility {
    fn name(&self) -> &str {
        "tofu_model_utility"
    }
    fn version(&self) -> u32 {
        // 2: with TOFU's real-authors and world-facts sets (the retain set alone is still 1)
        if self.sets.is_empty() {
            1
        } else {
            2
        }
    }
    fn direction(&self) -> Direction {
        Direction::HigherIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        let mut r: Vec<Request> = self.items.iter().map(|it| self.template.loglik(&it.question, &it.answer)).collect();
        r.extend(answer_requests(&self.items, &self.template, self.max_new_tokens));
        r.extend(truth_ratio_requests(&self.items, &self.template));
        for set in &self.sets {
            r.extend(set.items.iter().map(|it| self.template.loglik(&it.question, &it.answer)));
            r.extend(answer_requests(&set.items, &self.template, self.max_new_tokens));
            for it in &set.items {
                r.extend(it.perturbed_answers.iter().map(|p| self.template.loglik(&it.question, p)));
            }
        }
        r
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        let n = self.items.len();
        let retain_len = 2 * n + truth_ratio_len(&self.items);
        let set_len =
            |s: &UtilitySet| 2 * s.items.len() + s.items.iter().map(|it| it.perturbed_answers.len()).sum::<usize>();
        expect_len(responses, retain_len + self.sets.iter().map(set_len).sum::<usize>(), self.name())?;
        let prob = mean(&probabilities(&responses[..n])?);
        let (recall, _, _) = rouge_scores(self.items.iter().map(|it| it.answer.clone()), &responses[n..2 * n])?;
        let rouge = mean(&recall);
        let ratios = truth_ratios(&self.items, &responses[2 * n..retain_len], self.perturbed_mean)?;
        let tr = aggregate_truth_ratios(&ratios, Side::Retain);
        let mut parts = vec![prob, rouge, tr];
        let mut named = vec![];
        let mut at = retain_len;
        for set in &self.sets {
            let (p, r, t) = utility_set_parts(set, &responses[at..at + set_len(set)], self.perturbed_mean)?;
            at += set_len(set);
            parts.extend([p, r, t]);
            named.push((set.name.as_str(), [p, r, t]));
        }
        parts.extend(self.extra.values());
        let mut v = MetricValue::scalar(harmonic_mean(&parts)?)
            .with("retain_prob", prob)
            .with("retain_rougeL_recall", rouge)
            .with("retain_truth_ratio", tr);
        for (name, [p, r, t]) in named {
            v = v
                .with(&format!("{name}_prob"), p)
                .with(&format!("{name}_rougeL_recall"), r)
                .with(&format!("{name}_truth_ratio"), t);
        }
        for (k, x) in &self.extra {
            v = v.with(k, *x);
        }
        Ok(v)
    }
}
