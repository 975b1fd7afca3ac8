//! Knowledge recovery after unlearning corrupted data, in the spirit of RESTOR (Rezaei et al.
//! 2024, "RESTOR: Knowledge Recovery through Machine Unlearning"): a model θ_D trained on
//! corrupted facts should, after unlearning the corruption, prefer the clean answer again.
//!
//! Accuracy on one question = the clean answer has a higher length-normalised probability
//! P(a|q)^(1/|a|) than the corrupted one (a two-way multiple choice; RESTOR itself grades greedy
//! generations, which needs an answer matcher). Recovery = (acc − acc_θD) / (acc_oracle − acc_θD):
//! 0 = no better than the corrupted model, 1 = as good as the oracle (clean model). θ_D's and the
//! oracle's accuracies come from running [`CleanAnswerAccuracy`] on those models.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::metric::{expect_len, Direction, Metric, MetricValue};
use crate::scorer::{normalised_prob, Request, Response};
use crate::stats::mean;
use crate::tofu::QaTemplate;

/// A question with its clean (true) answer and the corrupted answer θ_D was trained on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptedQa {
    pub question: String,
    pub clean_answer: String,
    pub corrupted_answer: String,
}

fn requests(items: &[CorruptedQa], template: &QaTemplate) -> Vec<Request> {
    items
        .iter()
        .flat_map(|it| {
            [template.loglik(&it.question, &it.clean_answer), template.loglik(&it.question, &it.corrupted_answer)]
        })
        .collect()
}

fn accuracy(items: &[CorruptedQa], responses: &[Response], metric: &str) -> Result<(f64, Vec<serde_json::Value>)> {
    expect_len(responses, 2 * items.len(), metric)?;
    if items.is_empty() {
        bail!("{metric}: no questions");
    }
    let mut hits = Vec::with_capacity(items.len());
    let mut per_example = Vec::with_capacity(items.len());
    for (i, pair) in responses.chunks(2).enumerate() {
        let clean = normalised_prob(&pair[0]).with_context(|| format!("question {i}: clean answer"))?;
        let corrupted = normalised_prob(&pair[1]).with_context(|| format!("question {i}: corrupted answer"))?;
        let hit = f64::from(u8::from(clean > corrupted));
        hits.push(hit);
        per_example.push(json!({ "p_clean": clean, "p_corrupted": corrupted, "correct": hit }));
    }
    Ok((mean(&hits), per_example))
}

/// Fraction of questions where the clean answer beats the corrupted one.
pub struct CleanAnswerAccuracy {
    pub items: Vec<CorruptedQa>,
    pub template: QaTemplate,
}

impl Metric for CleanAnswerAccuracy {
    fn name(&self) -> &str {
        "restor_clean_acc"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::HigherIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        requests(&self.items, &self.template)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        let (acc, per_example) = accuracy(&self.items, responses, self.name())?;
        Ok(MetricValue::scalar(acc).with_examples(per_example))
    }
}

/// Recovery relative to the corrupted model θ_D and the oracle.
pub struct Recovery {
    pub items: Vec<CorruptedQa>,
    pub template: QaTemplate,
    pub corrupted_acc: f64,
    pub oracle_acc: f64,
}

impl Recovery {
    pub fn new(items: Vec<CorruptedQa>, template: QaTemplate, corrupted_acc: f64, oracle_acc: f64) -> Self {
        Recovery { items, template, corrupted_acc, oracle_acc }
    }
}

impl Metric for Recovery {
    fn name(&self) -> &str {
        "restor_recovery"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::HigherIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        requests(&self.items, &self.template)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        let (acc, per_example) = accuracy(&self.items, responses, self.name())?;
        let gap = self.oracle_acc - self.corrupted_acc;
        if gap.abs() < 1e-12 {
            return Ok(MetricValue::skipped(format!(
                "oracle and corrupted model have the same accuracy ({}): recovery is undefined",
                self.oracle_acc
            ))
            .with("acc", acc)
            .with_examples(per_example));
        }
        Ok(MetricValue::scalar((acc - self.corrupted_acc) / gap)
            .with("acc", acc)
            .with("corrupted_acc", self.corrupted_acc)
            .with("oracle_acc", self.oracle_acc)
            .with_examples(per_example))
    }
}
