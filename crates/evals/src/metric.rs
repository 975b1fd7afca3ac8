//! The `Metric` trait and the one-pass evaluator.
//!
//! A metric is split in two halves so that one model is scored in a single batched pass
//! (lm-evaluation-harness style): [`Metric::requests`] says what the model must compute,
//! [`Metric::compute`] turns the answers into numbers. [`evaluate`] concatenates the requests of
//! all metrics, calls [`Scorer::run`] once, and hands each metric its own slice of responses.
//!
//! Metrics that compare two models (forget quality, PrivLeak, KL to the oracle, recovery) do not
//! run the second model themselves: they take the oracle's values, computed earlier by running the
//! matching one-model metric (or [`evaluate_with_extra`]'s extra requests) in the oracle's pass.
//! Like open-unlearning, every metric states its direction and returns an aggregate plus
//! per-example values.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::scorer::{Request, Response, Scorer};

/// Which way a metric improves — the one definition: metrics declare it, the runner stores it
/// in each record (`"higher_is_better"`, `"lower_is_better"`, `{"closer_to": t}`), the report
/// reads it back.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
    /// Closest to this value is best (e.g. PrivLeak: 0, truth ratio on the forget set: 1).
    CloserTo(f64),
}

impl Direction {
    /// Distance from the ideal: smaller is better.
    pub fn badness(self, v: f64) -> f64 {
        match self {
            Direction::HigherIsBetter => -v,
            Direction::LowerIsBetter => v,
            Direction::CloserTo(t) => (v - t).abs(),
        }
    }

    /// `higher_is_better`, `lower_is_better` or `closer_to:t`.
    pub fn as_str(self) -> String {
        match self {
            Direction::HigherIsBetter => "higher_is_better".into(),
            Direction::LowerIsBetter => "lower_is_better".into(),
            Direction::CloserTo(t) => format!("closer_to:{t}"),
        }
    }
}

/// What a metric returns: `aggregate["value"]` is the headline number, other keys are
/// sub-values; `per_example` holds one JSON object per example (empty when not meaningful).
/// `skipped` is set (and `aggregate` has no `"value"`) when the metric could not be computed for
/// a reason that is not an error, e.g. no toxicity classifier was configured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub aggregate: BTreeMap<String, f64>,
    pub per_example: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl MetricValue {
    /// A value with only a headline number.
    pub fn scalar(value: f64) -> Self {
        let mut aggregate = BTreeMap::new();
        aggregate.insert("value".to_string(), value);
        MetricValue { aggregate, per_example: Vec::new(), skipped: None }
    }

    pub fn skipped(reason: impl Into<String>) -> Self {
        MetricValue { skipped: Some(reason.into()), ..Default::default() }
    }

    /// Adds a sub-value (builder style).
    pub fn with(mut self, key: &str, value: f64) -> Self {
        self.aggregate.insert(key.to_string(), value);
        self
    }

    pub fn with_examples(mut self, per_example: Vec<serde_json::Value>) -> Self {
        self.per_example = per_example;
        self
    }

    /// The headline number, `aggregate["value"]`.
    pub fn value(&self) -> Option<f64> {
        self.aggregate.get("value").copied()
    }
}

/// An evaluation metric over one model's responses.
pub trait Metric {
    /// Registry name (lm-eval's task name where one exists, e.g. `truthfulqa_mc2`).
    fn name(&self) -> &str;
    /// Bumped whenever the definition changes, so stored results are not compared across versions.
    fn version(&self) -> u32;
    fn direction(&self) -> Direction;
    /// The model calls this metric needs, in an order `compute` understands.
    fn requests(&self) -> Vec<Request>;
    /// Computes the metric from the responses to exactly `self.requests()`, in the same order.
    fn compute(&self, responses: &[Response]) -> Result<MetricValue>;
}

/// One metric's result, as written to the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricOutput {
    pub name: String,
    pub version: u32,
    pub direction: Direction,
    pub n_requests: usize,
    pub value: MetricValue,
}

/// Scores `metrics` with one call to `scorer.run` and returns one output per metric, in order.
pub fn evaluate(scorer: &mut dyn Scorer, metrics: &[&dyn Metric]) -> Result<Vec<MetricOutput>> {
    Ok(evaluate_with_extra(scorer, metrics, &[])?.0)
}

/// Like [`evaluate`], but also runs `extra` requests in the same pass and returns their responses
/// (used to collect the oracle's values for two-model metrics, e.g. its next-token distributions).
pub fn evaluate_with_extra(
    scorer: &mut dyn Scorer,
    metrics: &[&dyn Metric],
    extra: &[Request],
) -> Result<(Vec<MetricOutput>, Vec<Response>)> {
    let per_metric: Vec<Vec<Request>> = metrics.iter().map(|m| m.requests()).collect();
    let mut all: Vec<Request> = per_metric.iter().flatten().cloned().collect();
    all.extend_from_slice(extra);
    let responses = if all.is_empty() { Vec::new() } else { scorer.run(&all).context("scorer failed")? };
    if responses.len() != all.len() {
        bail!("scorer returned {} responses for {} requests", responses.len(), all.len());
    }
    for (i, (req, resp)) in all.iter().zip(&responses).enumerate() {
        if !req.matches(resp) {
            bail!("scorer answered request {i} ({}) with a {} response", req.kind(), resp.kind());
        }
    }
    let mut outputs = Vec::with_capacity(metrics.len());
    let mut start = 0;
    for (metric, reqs) in metrics.iter().zip(&per_metric) {
        let slice = &responses[start..start + reqs.len()];
        start += reqs.len();
        let value = metric
            .compute(slice)
            .with_context(|| format!("computing metric {} (v{})", metric.name(), metric.version()))?;
        outputs.push(MetricOutput {
            name: metric.name().to_string(),
            version: metric.version(),
            direction: metric.direction(),
            n_requests: reqs.len(),
            value,
        });
    }
    let extra_responses = responses[start..].to_vec();
    Ok((outputs, extra_responses))
}

/// Checks that a metric received as many responses as it asked for.
pub(crate) fn expect_len(responses: &[Response], expected: usize, metric: &str) -> Result<()> {
    if responses.len() != expected {
        bail!("{metric}: expected {expected} responses, got {}", responses.len());
    }
    Ok(())
}
