//! The model interface of the metrics: a batch of [`Request`]s in, one [`Response`] per request out.
//!
//! It follows lm-evaluation-harness's three model calls (`loglikelihood`, `loglikelihood_rolling`,
//! `generate_until`) plus three calls that unlearning metrics need (per-token log-probs for Min-K%
//! membership inference, full next-token distributions for KL to an oracle, and per-example
//! gradient norms for the GradNorm attack, the one call that runs a backward pass). This crate
//! never runs a model: the engine implements [`Scorer`], and [`crate::evaluate`] calls it once
//! per model.
//!
//! Semantics (identical to lm-eval's for its three calls):
//! - `LogLik { context, continuation }`: log P(continuation | context), summed over the
//!   continuation's tokens. The word-boundary space belongs to the continuation: callers pass
//!   `" Yes"`, never `"Yes"` after a context ending in a space (trailing whitespace of a context
//!   is moved to the continuation anyway). Tokenise context + continuation together, with the
//!   tokenizer's default special tokens (so BOS first when the tokenizer adds one, as lm-eval
//!   0.4.13 does), and score the tokens after those of the context alone; an empty context
//!   means the prefix token alone (the tokenizer's BOS, else EOS, as lm-eval). `is_greedy` is
//!   true when every continuation token is the argmax of its position; `n_tokens` is the
//!   number of continuation tokens.
//! - `Rolling { text }`: sum of log-probs of every token of `text` given BOS and the previous tokens
//!   (lm-eval's `loglikelihood_rolling`); `n_tokens` counts the scored tokens (BOS is not one).
//! - `TokenLogprobs { text }`: the per-token log-probs of `Rolling`, one per token of `text`.
//! - `Distributions { text }`: for every token position of `text` (BOS prepended), the full
//!   log-softmax row over the vocabulary predicting that token: `rows[i]` predicts token `i`.
//! - `Generate { context, stop, max_new_tokens }`: greedy decoding from `context`, cut before the
//!   first occurrence of any `stop` string; the returned text excludes the context.
//! - `GradNorm { text }` (white-box; for the GradNorm membership-inference attack,
//!   [`crate::mia::MiaGradNorm`]): the gradient of the text's mean token NLL — `Rolling`'s
//!   −logprob / n_tokens, the same tokens and windows — with respect to every parameter tensor
//!   of the model, one backward pass per text in f32. Answered with that mean NLL, `n_tokens`
//!   and the L2 norm of the gradient of each parameter tensor (`tensor_norms`, one per tensor,
//!   in the engine's order; tied weights are one tensor, as in PyTorch's `model.parameters()`).
//!   A text without tokens is an error.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// One model call. See the module docs for the exact semantics of each variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    LogLik { context: String, continuation: String },
    Rolling { text: String },
    TokenLogprobs { text: String },
    Distributions { text: String },
    Generate { context: String, stop: Vec<String>, max_new_tokens: usize },
    GradNorm { text: String },
}

/// The answer to one [`Request`], of the matching variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    LogLik {
        logprob: f64,
        is_greedy: bool,
        n_tokens: usize,
    },
    Rolling {
        logprob: f64,
        n_tokens: usize,
    },
    TokenLogprobs(Vec<f32>),
    /// `rows[position][vocab_id]`, each row a log-softmax.
    Distributions(Vec<Vec<f32>>),
    Generated(String),
    /// Per-parameter-tensor L2 norms of ∇_θ NLL̄(text), with the NLL̄ differentiated.
    GradNorm {
        /// Mean token NLL of the text (−`Rolling.logprob` / `n_tokens`).
        nll: f64,
        n_tokens: usize,
        /// ‖∂NLL̄/∂θ_i‖₂ of every parameter tensor θ_i.
        tensor_norms: Vec<f64>,
    },
}

/// A model that answers requests. Implementations should batch (lm-eval sorts by descending
/// length so an out-of-memory shows in the first batch) and must return responses in request order.
pub trait Scorer {
    fn run(&mut self, requests: &[Request]) -> Result<Vec<Response>>;
}

impl Request {
    /// The variant's name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::LogLik { .. } => "LogLik",
            Request::Rolling { .. } => "Rolling",
            Request::TokenLogprobs { .. } => "TokenLogprobs",
            Request::Distributions { .. } => "Distributions",
            Request::Generate { .. } => "Generate",
            Request::GradNorm { .. } => "GradNorm",
        }
    }

    /// Whether `response` is the variant that answers this request.
    pub fn matches(&self, response: &Response) -> bool {
        matches!(
            (self, response),
            (Request::LogLik { .. }, Response::LogLik { .. })
                | (Request::Rolling { .. }, Response::Rolling { .. })
                | (Request::TokenLogprobs { .. }, Response::TokenLogprobs(_))
                | (Request::Distributions { .. }, Response::Distributions(_))
                | (Request::Generate { .. }, Response::Generated(_))
                | (Request::GradNorm { .. }, Response::GradNorm { .. })
        )
    }

    /// Shorthand for a greedy generation request.
    pub fn generate(context: impl Into<String>, stop: &[&str], max_new_tokens: usize) -> Request {
        Request::Generate {
            context: context.into(),
            stop: stop.iter().map(|s| s.to_string()).collect(),
            max_new_tokens,
        }
    }

    pub fn loglik(context: impl Into<String>, continuation: impl Into<String>) -> Request {
        Request::LogLik { context: context.into(), continuation: continuation.into() }
    }
}

impl Response {
    pub fn kind(&self) -> &'static str {
        match self {
            Response::LogLik { .. } => "LogLik",
            Response::Rolling { .. } => "Rolling",
            Response::TokenLogprobs(_) => "TokenLogprobs",
            Response::Distributions(_) => "Distributions",
            Response::Generated(_) => "Generated",
            Response::GradNorm { .. } => "GradNorm",
        }
    }

    /// `(logprob, is_greedy, n_tokens)` of a `LogLik` response.
    pub fn loglik(&self) -> Result<(f64, bool, usize)> {
        match self {
            Response::LogLik { logprob, is_greedy, n_tokens } => Ok((*logprob, *is_greedy, *n_tokens)),
            other => bail!("expected a LogLik response, got {}", other.kind()),
        }
    }

    /// `(logprob, n_tokens)` of a `Rolling` response.
    pub fn rolling(&self) -> Result<(f64, usize)> {
        match self {
            Response::Rolling { logprob, n_tokens } => Ok((*logprob, *n_tokens)),
            other => bail!("expected a Rolling response, got {}", other.kind()),
        }
    }

    pub fn token_logprobs(&self) -> Result<&[f32]> {
        match self {
            Response::TokenLogprobs(v) => Ok(v),
            other => bail!("expected a TokenLogprobs response, got {}", other.kind()),
        }
    }

    pub fn distributions(&self) -> Result<&[Vec<f32>]> {
        match self {
            Response::Distributions(v) => Ok(v),
            other => bail!("expected a Distributions response, got {}", other.kind()),
        }
    }

    pub fn generated(&self) -> Result<&str> {
        match self {
            Response::Generated(s) => Ok(s),
            other => bail!("expected a Generated response, got {}", other.kind()),
        }
    }

    /// `(nll, n_tokens, tensor_norms)` of a `GradNorm` response.
    pub fn grad_norm(&self) -> Result<(f64, usize, &[f64])> {
        match self {
            Response::GradNorm { nll, n_tokens, tensor_norms } => Ok((*nll, *n_tokens, tensor_norms)),
            other => bail!("expected a GradNorm response, got {}", other.kind()),
        }
    }
}

/// Length-normalised probability P(continuation | context)^(1/n_tokens) of a `LogLik` response
/// (TOFU's "probability"). Errors when the continuation has no tokens.
pub fn normalised_prob(response: &Response) -> Result<f64> {
    let (logprob, _, n) = response.loglik()?;
    if n == 0 {
        bail!("LogLik response has n_tokens = 0: cannot length-normalise an empty continuation");
    }
    Ok((logprob / n as f64).exp())
}
