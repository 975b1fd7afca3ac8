//! `mc_accuracy`: multiple choice over a world's QA options (defined here, not in `evals`,
//! because its items are the testbed's).

use anyhow::{bail, Context, Result};
use evals::metric::{Metric, MetricValue};
use evals::tofu::QaTemplate;
use evals::{Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// One multiple-choice question of [`McAccuracy`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McItem {
    pub question: String,
    pub choices: Vec<String>,
    pub correct: usize,
}

/// Multiple-choice accuracy over the world's QA choices: each choice is scored as the
/// continuation `" " + choice` of `"Question: {q}\nAnswer:"`; a question counts as correct when
/// the correct choice has the highest log-likelihood (the first of ties, like `np.argmax`).
pub struct McAccuracy {
    pub items: Vec<McItem>,
    pub direction: evals::Direction,
    /// The prompt format (the suite's).
    pub template: QaTemplate,
}

impl Metric for McAccuracy {
    fn name(&self) -> &str {
        "mc_accuracy"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> evals::Direction {
        self.direction
    }
    fn requests(&self) -> Vec<Request> {
        self.items
            .iter()
            .flat_map(|it| {
                let ctx = self.template.context(&it.question);
                it.choices.iter().map(move |c| Request::loglik(ctx.clone(), self.template.continuation(c)))
            })
            .collect()
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        let total: usize = self.items.iter().map(|it| it.choices.len()).sum();
        if responses.len() != total {
            bail!("mc_accuracy: expected {total} responses, got {}", responses.len());
        }
        if self.items.is_empty() {
            bail!("mc_accuracy: no questions");
        }
        let (mut hits, mut per_example, mut at) = (Vec::new(), Vec::new(), 0);
        for (q, it) in self.items.iter().enumerate() {
            let lls = responses[at..at + it.choices.len()]
                .iter()
                .map(|r| r.loglik().map(|(ll, _, _)| ll))
                .collect::<Result<Vec<f64>>>()
                .with_context(|| format!("mc_accuracy: question {q}"))?;
            at += it.choices.len();
            let best = lls.iter().enumerate().fold(0, |b, (i, &x)| if x > lls[b] { i } else { b });
            let hit = f64::from(u8::from(best == it.correct));
            hits.push(hit);
            per_example.push(json!({ "correct": hit, "choice": best, "logliks": lls }));
        }
        let acc = hits.iter().sum::<f64>() / hits.len() as f64;
        Ok(MetricValue::scalar(acc).with("n", hits.len() as f64).with_examples(per_example))
    }
}
