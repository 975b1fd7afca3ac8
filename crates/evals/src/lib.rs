//! Evaluation metrics for unlearning: TOFU (Maini et al. 2024), MUSE (Shi et al. 2024),
//! lm-evaluation-harness's TruthfulQA MC1/MC2 and ToxiGen, perplexity, KL to an oracle,
//! membership-inference attacks (LOSS, ZLib, Min-K%, Min-K%++, reference model, GradNorm) and the MSA
//! paper's judged accuracies (Acc_forget, Acc_recover, Acc_retain; [`judge`]).
//!
//! Invariant: this crate never runs a model and depends on no model crate. Metrics emit
//! [`Request`]s; the caller's [`Scorer`] answers all requests of all metrics of one model in a
//! single batched pass ([`evaluate`]); each metric then computes from its own responses.
//! Two-model metrics (forget quality, PrivLeak, KL to the oracle, recovery) take the oracle's
//! values, computed in the oracle's own pass, as constructor arguments.
//!
//! ```
//! use evals::tofu::{truth_ratios_of, ForgetQuality, QaItem, QaTemplate, Side, TruthRatio};
//! use evals::{evaluate, Request, Response, Scorer};
//!
//! /// Stand-in for the engine: every continuation token has probability 1/2.
//! struct Coin;
//! impl Scorer for Coin {
//!     fn run(&mut self, requests: &[Request]) -> anyhow::Result<Vec<Response>> {
//!         Ok(requests.iter().map(|_| Response::LogLik { logprob: -2.0 * 2f64.ln(), is_greedy: false, n_tokens: 2 }).collect())
//!     }
//! }
//!
//! let forget = vec![QaItem {
//!     question: "Who wrote it?".into(),
//!     answer: "Ann".into(),
//!     paraphrased_answer: Some("It was Ann".into()),
//!     perturbed_answers: vec!["Bob".into(), "Cy".into()],
//! }];
//! // Oracle pass: its truth ratios on the forget set.
//! let tr = TruthRatio::new(forget.clone(), QaTemplate::default(), Side::Forget)?;
//! let oracle = evaluate(&mut Coin, &[&tr])?;
//! // Unlearned model's pass: every metric in one scorer call.
//! let fq = ForgetQuality::new(forget.clone(), QaTemplate::default(), truth_ratios_of(&oracle[0])?)?;
//! let out = evaluate(&mut Coin, &[&fq, &tr])?;
//! assert_eq!(out[0].value.value(), Some(1.0)); // identical distributions: p-value 1
//! # anyhow::Ok(())
//! ```

pub mod judge;
pub mod lm;
pub mod memorisation;
pub mod metric;
pub mod mia;
pub mod muse;
pub mod porter;
pub mod recovery;
pub mod registry;
pub mod rouge;
pub mod scorer;
pub mod stats;
pub mod tofu;
pub mod toxigen;
pub mod truthfulqa;
pub mod zlib;

pub use metric::{evaluate, evaluate_with_extra, Direction, Metric, MetricOutput, MetricValue};
pub use scorer::{Request, Response, Scorer};
