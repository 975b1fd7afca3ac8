//! The MSA paper's judged accuracies (Rezaei et al., ICLR 2026, "Revisiting the Past: Data
//! Unlearning with Model State History"), per question, from the model's greedy answer:
//!
//! - **Acc_forget** (`acc_forget`, forget questions): the ground-truth answer is *not* the
//!   closest candidate to the model's answer;
//! - **Acc_recover** (`acc_recover`, forget questions): the ideal model's answer *is* the
//!   closest; the ideal model is our exact retrain oracle (the paper trained a separate
//!   retain-only model), its greedy answer to the same prompt computed once in the oracle pass;
//! - **Acc_retain** (`acc_retain`, retain questions): the ground truth *or* the ideal model's
//!   answer is the closest.
//!
//! Each accuracy is the share of questions for which this holds.
//!
//! **Candidates** of a question, in this order ([`candidates`]): the ground-truth answer
//! ([`GROUND_TRUTH`]), the oracle's greedy answer ([`ORACLE`]), then the item's perturbed
//! (plausible but wrong) answers. The same list serves all three accuracies.
//!
//! **Judge.** Which candidates are "the closest" is a [`Judge`]'s call. The paper asked GPT-4o;
//! the default here, [`RougeJudge`], is deterministic and offline: the score of a candidate is
//! its ROUGE-L F1 against the model's answer, `rouge_score`'s tokenisation with the Porter
//! stemmer as TOFU and MUSE compute it ([`crate::rouge`], [`crate::tofu::USE_STEMMER`]).
//!
//! **Tie rule** (exact, [`RougeJudge::closest`]):
//! - a candidate is *closest* when its score equals the maximum score over all candidates, so
//!   several candidates can be closest at once. Scores are compared exactly, as the fractions
//!   F1 = 2·LCS / (|answer| + |candidate|) (token counts), never as rounded floats;
//! - when the maximum score is 0 — the answer shares no token with any candidate, in particular
//!   an empty answer or one of punctuation only — *no* candidate is closest.
//!
//! Hence: a forget question counts as forgotten when the ground truth's score is strictly below
//! the best other candidate's, or when the answer shares no token with any candidate (it reveals
//! nothing); it counts as recovered when the oracle's answer has a positive score equal to the
//! maximum (a tie with the ground truth counts: e.g. the oracle itself knows the answer); a retain
//! question counts as retained when the ground truth or the oracle's answer has a positive score
//! equal to the maximum. An empty or unrelated answer is therefore forgotten, but neither
//! recovered nor retained: degenerate output earns Acc_forget only, and Acc_recover and
//! Acc_retain catch it. An empty oracle answer is a candidate of score 0: it is never closest.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::metric::{expect_len, Direction, Metric, MetricValue};
use crate::rouge::{lcs_len, tokenize_with};
use crate::scorer::{Request, Response};
use crate::tofu::{QaItem, QaTemplate, USE_STEMMER};

/// Index of the ground-truth answer among a question's [`candidates`].
pub const GROUND_TRUTH: usize = 0;
/// Index of the oracle's (ideal model's) greedy answer among a question's [`candidates`].
pub const ORACLE: usize = 1;

/// The candidates a model's answer to `item` is judged against: the ground truth, the oracle's
/// greedy answer, then the perturbed answers.
pub fn candidates<'a>(item: &'a QaItem, oracle_answer: &'a str) -> Vec<&'a str> {
    let mut c = vec![item.answer.as_str(), oracle_answer];
    c.extend(item.perturbed_answers.iter().map(String::as_str));
    c
}

/// Decides which candidate answers are closest to a model's answer.
pub trait Judge: Send + Sync {
    /// A short name (recorded with each per-example verdict).
    fn name(&self) -> &str;
    /// One flag per candidate, in order: whether it is (one of) the closest to `output`. Any
    /// number of flags may be set, none included (see the module docs for the default rule).
    fn closest(&self, output: &str, candidates: &[&str]) -> Result<Vec<bool>>;
    /// [`Judge::closest`] of many questions (`(output, candidates)` each) at once; a judge
    /// that runs a model overrides it to batch.
    fn closest_all(&self, questions: &[(&str, Vec<&str>)]) -> Result<Vec<Vec<bool>>> {
        questions
            .iter()
            .enumerate()
            .map(|(i, (out, c))| self.closest(out, c).with_context(|| format!("question {i}")))
            .collect()
    }
    /// The per-candidate scores behind the verdict, when the judge has them (kept in the
    /// per-example values for inspection).
    fn scores(&self, _output: &str, _candidates: &[&str]) -> Option<Vec<f64>> {
        None
    }
}

/// The default judge: closest = highest ROUGE-L F1 to the answer (stemmed, as TOFU/MUSE), exact
/// ties all closest, none when every score is 0. See the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RougeJudge;

impl RougeJudge {
    /// ROUGE-L F1 of each candidate against `output` as the fraction (2·LCS, |output| +
    /// |candidate|) in tokens; (0, 1) when either side has no token.
    fn fractions(output: &str, candidates: &[&str]) -> Vec<(u64, u64)> {
        let out = tokenize_with(output, USE_STEMMER);
        candidates
            .iter()
            .map(|c| {
                let c = tokenize_with(c, USE_STEMMER);
                if out.is_empty() || c.is_empty() {
                    return (0, 1);
                }
                (2 * lcs_len(&c, &out) as u64, (out.len() + c.len()) as u64)
            })
            .collect()
    }
}

impl Judge for RougeJudge {
    fn name(&self) -> &str {
        "rouge_l_f1"
    }

    fn closest(&self, output: &str, candidates: &[&str]) -> Result<Vec<bool>> {
        let f = RougeJudge::fractions(output, candidates);
        // a/b vs c/d as a·d vs c·b, exact in u128
        let cmp = |(a, b): (u64, u64), (c, d): (u64, u64)| {
            (u128::from(a) * u128::from(d)).cmp(&(u128::from(c) * u128::from(b)))
        };
        let Some(&best) = f.iter().max_by(|x, y| cmp(**x, **y)) else {
            return Ok(vec![]);
        };
        if best.0 == 0 {
            return Ok(vec![false; f.len()]);
        }
        Ok(f.iter().map(|&s| cmp(s, best).is_eq()).collect())
    }

    fn scores(&self, output: &str, candidates: &[&str]) -> Option<Vec<f64>> {
        let f = RougeJudge::fractions(output, candidates);
        Some(f.iter().map(|&(n, d)| n as f64 / d as f64).collect())
    }
}

/// Which of the three accuracies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Acc {
    /// Forget questions: the ground truth is not closest.
    Forget,
    /// Forget questions: the oracle's answer is closest.
    Recover,
    /// Retain questions: the ground truth or the oracle's answer is closest.
    Retain,
}

impl Acc {
    /// The registry name: `acc_forget`, `acc_recover`, `acc_retain`.
    pub fn name(self) -> &'static str {
        match self {
            Acc::Forget => "acc_forget",
            Acc::Recover => "acc_recover",
            Acc::Retain => "acc_retain",
        }
    }

    /// Whether a question with these closest-flags (over [`candidates`]) counts.
    pub fn holds(self, closest: &[bool]) -> bool {
        let is = |i: usize| closest.get(i).copied().unwrap_or(false);
        match self {
            Acc::Forget => !is(GROUND_TRUTH),
            Acc::Recover => is(ORACLE),
            Acc::Retain => is(GROUND_TRUTH) || is(ORACLE),
        }
    }
}

/// One question's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// One flag per candidate ([`candidates`] order).
    pub closest: Vec<bool>,
    /// Whether the question counts for the accuracy.
    pub correct: bool,
}

/// Judges every question: `outputs[i]` (the model's greedy answer) against the candidates of
/// `items[i]` with `oracle_answers[i]`. Errors when the lengths differ or the judge returns
/// a flag count other than the candidate count.
pub fn judge_all(
    acc: Acc,
    judge: &dyn Judge,
    items: &[QaItem],
    outputs: &[&str],
    oracle_answers: &[String],
) -> Result<Vec<Verdict>> {
    if outputs.len() != items.len() || oracle_answers.len() != items.len() {
        bail!(
            "{}: {} questions, {} model answers, {} oracle answers",
            acc.name(),
            items.len(),
            outputs.len(),
            oracle_answers.len()
        );
    }
    let questions: Vec<(&str, Vec<&str>)> = items
        .iter()
        .zip(outputs)
        .zip(oracle_answers)
        .map(|((item, out), oracle)| (*out, candidates(item, oracle)))
        .collect();
    let flags = judge.closest_all(&questions).with_context(|| format!("{}: judge {}", acc.name(), judge.name()))?;
    if flags.len() != questions.len() {
        bail!(
            "{}: judge {} returned {} verdicts for {} questions",
            acc.name(),
            judge.name(),
            flags.len(),
            questions.len()
        );
    }
    flags
        .into_iter()
        .zip(&questions)
        .enumerate()
        .map(|(i, (closest, (_, c)))| {
            if closest.len() != c.len() {
                bail!(
                    "{}: judge {} returned {} flags for {} candidates (question {i})",
                    acc.name(),
                    judge.name(),
                    closest.len(),
                    c.len()
                );
            }
            Ok(Verdict { correct: acc.holds(&closest), closest })
        })
        .collect()
}

/// Greedy-answer requests for `items`: the prompt, stop string (newline) and token budget of
/// TOFU ROUGE and MUSE KnowMem, so the oracle's answers (computed with these in its pass) and
/// the model's compare.
pub fn answer_requests(items: &[QaItem], template: &QaTemplate, max_new_tokens: usize) -> Vec<Request> {
    crate::tofu::answer_requests(items, template, max_new_tokens)
}

/// The texts of `Generated` responses (e.g. the oracle's answers to [`answer_requests`]).
pub fn generated_texts(responses: &[Response]) -> Result<Vec<String>> {
    responses
        .iter()
        .enumerate()
        .map(|(i, r)| r.generated().map(str::to_string).with_context(|| format!("answer {i}")))
        .collect()
}

/// One of the MSA paper's accuracies over QA items, given the oracle's greedy answers.
pub struct JudgedAccuracy {
    pub acc: Acc,
    pub items: Vec<QaItem>,
    /// The oracle's greedy answer to each item's prompt (same order as `items`).
    pub oracle_answers: Vec<String>,
    pub template: QaTemplate,
    pub max_new_tokens: usize,
    pub judge: Arc<dyn Judge>,
}

impl JudgedAccuracy {
    /// With the default [`RougeJudge`]. Errors when `oracle_answers` and `items` differ in
    /// length.
    pub fn new(
        acc: Acc,
        items: Vec<QaItem>,
        oracle_answers: Vec<String>,
        template: QaTemplate,
        max_new_tokens: usize,
    ) -> Result<Self> {
        if oracle_answers.len() != items.len() {
            bail!("{}: {} oracle answers for {} questions", acc.name(), oracle_answers.len(), items.len());
        }
        Ok(JudgedAccuracy { acc, items, oracle_answers, template, max_new_tokens, judge: Arc::new(RougeJudge) })
    }

    /// Uses `judge` instead of the ROUGE-L judge.
    pub fn with_judge(mut self, judge: Arc<dyn Judge>) -> Self {
        self.judge = judge;
        self
    }
}

impl Metric for JudgedAccuracy {
    fn name(&self) -> &str {
        self.acc.name()
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::HigherIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        answer_requests(&self.items, &self.template, self.max_new_tokens)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.items.len(), self.name())?;
        if self.items.is_empty() {
            bail!("{}: no questions", self.name());
        }
        let outputs = responses.iter().map(Response::generated).collect::<Result<Vec<&str>>>()?;
        let verdicts = judge_all(self.acc, self.judge.as_ref(), &self.items, &outputs, &self.oracle_answers)?;
        let mut per_example = Vec::with_capacity(verdicts.len());
        for (((v, item), out), oracle) in verdicts.iter().zip(&self.items).zip(&outputs).zip(&self.oracle_answers) {
            let mut e = json!({
                "generation": out,
                "target": item.answer,
                "oracle_answer": oracle,
                "closest": v.closest,
                "judge": self.judge.name(),
                "correct": f64::from(u8::from(v.correct)),
            });
            if let Some(s) = self.judge.scores(out, &candidates(item, oracle)) {
                e["scores"] = json!(s);
            }
            per_example.push(e);
        }
        let hits = verdicts.iter().filter(|v| v.correct).count();
        Ok(MetricValue::scalar(hits as f64 / verdicts.len() as f64)
            .with("n", verdicts.len() as f64)
            .with_examples(per_example))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(answer: &str, perturbed: &[&str]) -> QaItem {
        QaItem {
            question: "q?".into(),
            answer: answer.into(),
            paraphrased_answer: None,
            perturbed_answers: perturbed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn candidates_are_ground_truth_oracle_then_perturbed() {
        let it = item("Paris", &["Rome", "Oslo"]);
        assert_eq!(candidates(&it, "Lyon"), vec!["Paris", "Lyon", "Rome", "Oslo"]);
    }

    #[test]
    fn scores_equal_rouge_l_f1_of_the_rouge_module() {
        let c = ["She was born in Paris in 1960", "He lived in Rome", "", "born Paris"];
        let out = "she was born in paris";
        let s = RougeJudge.scores(out, &c).unwrap();
        for (x, cand) in s.iter().zip(c) {
            let r = crate::rouge::rouge_l_with(cand, out, USE_STEMMER).f1;
            assert!((x - r).abs() < 1e-12, "{cand:?}: {x} vs {r}");
        }
    }

    #[test]
    fn acc_rules_on_flags() {
        // [ground truth, oracle, perturbed]
        let none = [false, false, false];
        assert!(Acc::Forget.holds(&none) && !Acc::Recover.holds(&none) && !Acc::Retain.holds(&none));
        let gt_and_oracle = [true, true, false];
        assert!(
            !Acc::Forget.holds(&gt_and_oracle)
                && Acc::Recover.holds(&gt_and_oracle)
                && Acc::Retain.holds(&gt_and_oracle)
        );
        let perturbed = [false, false, true];
        assert!(Acc::Forget.holds(&perturbed) && !Acc::Recover.holds(&perturbed) && !Acc::Retain.holds(&perturbed));
    }
}
