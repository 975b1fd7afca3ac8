//! Language-modelling metrics: token perplexity (lm-eval's `loglikelihood_rolling`, aggregated
//! over tokens like its `weighted_perplexity`) and the mean KL divergence between the oracle's and
//! the evaluated model's next-token distributions.
//!
//! KL to the oracle is a two-model metric. The oracle's full log-softmax rows are collected in the
//! oracle's own pass: put [`NextTokenKl::oracle_requests`] into `evaluate_with_extra` for the
//! oracle, then build the metric with [`NextTokenKl::from_oracle_responses`]. We report
//! KL(P_oracle ‖ P_model), averaged over every token position of every text.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::metric::{expect_len, Direction, Metric, MetricValue};
use crate::scorer::{Request, Response};
use crate::stats::kl_logsoftmax;

/// Token-level perplexity exp(−Σ log p / Σ tokens) of a set of texts; `nll` = per-token NLL.
pub struct Perplexity {
    pub texts: Vec<String>,
    name: String,
}

impl Perplexity {
    /// `name` distinguishes sets, e.g. `perplexity` or `perplexity_wikitext2`.
    pub fn new(name: impl Into<String>, texts: Vec<String>) -> Self {
        Perplexity { texts, name: name.into() }
    }
}

impl Metric for Perplexity {
    fn name(&self) -> &str {
        &self.name
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::LowerIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        self.texts.iter().map(|t| Request::Rolling { text: t.clone() }).collect()
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.texts.len(), &self.name)?;
        let (mut lp, mut n) = (0.0f64, 0usize);
        let mut per_example = Vec::with_capacity(responses.len());
        for r in responses {
            let (l, k) = r.rolling()?;
            lp += l;
            n += k;
            per_example.push(json!({ "logprob": l, "n_tokens": k }));
        }
        if n == 0 {
            bail!("{}: the texts have no tokens", self.name);
        }
        let nll = -lp / n as f64;
        Ok(MetricValue::scalar(nll.exp()).with("nll", nll).with("n_tokens", n as f64).with_examples(per_example))
    }
}

/// Mean KL(P_oracle ‖ P_model) over all next-token positions of `texts`.
pub struct NextTokenKl {
    pub texts: Vec<String>,
    /// `oracle_rows[text][position][vocab]`, log-softmax.
    pub oracle_rows: Vec<Vec<Vec<f32>>>,
}

impl NextTokenKl {
    /// The requests to add to the oracle's pass.
    pub fn oracle_requests(texts: &[String]) -> Vec<Request> {
        texts.iter().map(|t| Request::Distributions { text: t.clone() }).collect()
    }

    pub fn from_oracle_responses(texts: Vec<String>, oracle: &[Response]) -> Result<Self> {
        if oracle.len() != texts.len() {
            bail!("KL: {} oracle responses for {} texts", oracle.len(), texts.len());
        }
        let oracle_rows = oracle.iter().map(|r| r.distributions().map(<[Vec<f32>]>::to_vec)).collect::<Result<_>>()?;
        Ok(NextTokenKl { texts, oracle_rows })
    }
}

impl Metric for NextTokenKl {
    fn name(&self) -> &str {
        "kl_to_oracle"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::LowerIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        Self::oracle_requests(&self.texts)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.texts.len(), self.name())?;
        let (mut total, mut count) = (0.0f64, 0usize);
        let mut per_example = Vec::with_capacity(responses.len());
        for (i, (r, oracle)) in responses.iter().zip(&self.oracle_rows).enumerate() {
            let rows = r.distributions()?;
            if rows.len() != oracle.len() {
                bail!("text {i}: model gave {} positions, oracle {}", rows.len(), oracle.len());
            }
            let mut text_kl = 0.0;
            for (pos, (q, p)) in rows.iter().zip(oracle).enumerate() {
                text_kl += kl_logsoftmax(p, q).with_context(|| format!("text {i}, position {pos}"))?;
            }
            total += text_kl;
            count += rows.len();
            per_example.push(json!({ "mean_kl": if rows.is_empty() { 0.0 } else { text_kl / rows.len() as f64 }, "positions": rows.len() }));
        }
        if count == 0 {
            bail!("KL: no token positions");
        }
        Ok(MetricValue::scalar(total / count as f64).with("positions", count as f64).with_examples(per_example))
    }
}
