//! The bridge between the metrics and the engine: [`LmScorer`] answers `evals::Request`s with a
//! loaded, frozen [`lm::CausalLm`].
//!
//! lm-evaluation-harness style (`lm_eval/models/huggingface.py`): the requests of one pass are
//! grouped by kind and each kind goes to the engine in ONE call, which sorts by length and
//! batches (see [`lm::score`]); the responses are put back in request order. `Rolling` and
//! `TokenLogprobs` share one call, since a rolling log-likelihood is the sum of the per-token
//! log-probabilities (summed in f64, exactly as `lm::score::Scorer::loglikelihood_rolling`).
//! `GradNorm` requests (the GradNorm membership-inference attack) run a backward pass per text
//! through `lm::gradnorm::grad_norms`, which makes the frozen model trainable for their
//! duration (no second copy of the weights) and freezes it again.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use evals::{Request, Response};
use lm::{CausalLm, Tok};

/// A frozen model and its tokenizer, scoring `evals` requests.
pub struct LmScorer {
    pub model: CausalLm,
    pub tok: Tok,
    /// Sequences per forward pass.
    pub batch_size: usize,
    /// Prepend BOS to every context: true for the testbed's models (trained with BOS at each
    /// document start), false for lm-evaluation-harness semantics on Hugging Face models.
    pub add_bos: bool,
    /// Longest sequence fed to the model (default: the model's `max_position_embeddings`).
    pub max_length: usize,
}

/// Default sequences per forward pass.
pub const DEFAULT_BATCH_SIZE: usize = 16;

impl LmScorer {
    /// Loads the checkpoint folder `dir` (config.json, safetensors, tokenizer.json) frozen.
    pub fn load(dir: &Path, device: &Device, add_bos: bool) -> Result<LmScorer> {
        let model = CausalLm::load(dir, device, false)
            .with_context(|| format!("loading the model to evaluate from {}", dir.display()))?;
        let tok = Tok::load(dir, &model.cfg).with_context(|| format!("loading the tokenizer of {}", dir.display()))?;
        Ok(LmScorer::new(model, tok, add_bos))
    }

    pub fn new(model: CausalLm, tok: Tok, add_bos: bool) -> LmScorer {
        let max_length = model.cfg.max_position_embeddings;
        LmScorer { model, tok, batch_size: DEFAULT_BATCH_SIZE, add_bos, max_length }
    }

    /// The engine's scorer with this scorer's settings.
    pub fn engine(&self) -> lm::score::Scorer<'_> {
        let mut s = lm::score::Scorer::new(&self.model, &self.tok);
        s.batch_size = self.batch_size;
        s.add_bos = self.add_bos;
        s.max_length = self.max_length;
        s
    }
}

impl evals::Scorer for LmScorer {
    fn run(&mut self, requests: &[Request]) -> Result<Vec<Response>> {
        // Indices of each kind, in request order.
        let (mut ll, mut tokens, mut dist, mut gen, mut grad) = (vec![], vec![], vec![], vec![], vec![]);
        for (i, r) in requests.iter().enumerate() {
            match r {
                Request::LogLik { .. } => ll.push(i),
                Request::Rolling { .. } | Request::TokenLogprobs { .. } => tokens.push(i),
                Request::Distributions { .. } => dist.push(i),
                Request::Generate { .. } => gen.push(i),
                Request::GradNorm { .. } => grad.push(i),
            }
        }
        let mut out: Vec<Option<Response>> = vec![None; requests.len()];

        // first, while the model is not borrowed by the engine: it is made trainable for them
        if !grad.is_empty() {
            if let Some(&i) = grad.iter().find(|&&i| text_of(&requests[i]).is_empty()) {
                bail!("request {i} (GradNorm): the text is empty; the gradient of a mean NLL needs at least one token");
            }
            let texts: Vec<String> = grad.iter().map(|&i| text_of(&requests[i]).to_string()).collect();
            let res = lm::gradnorm::grad_norms(&mut self.model, &self.tok, &texts, self.max_length)
                .context("GradNorm: per-example gradient norms")?;
            check_len("grad_norms", res.len(), grad.len())?;
            for (&i, g) in grad.iter().zip(res) {
                out[i] = Some(Response::GradNorm {
                    nll: g.nll,
                    n_tokens: g.n_tokens,
                    tensor_norms: g.tensor_norms.into_iter().map(|(_, x)| x).collect(),
                });
            }
        }

        let engine = self.engine();

        if !ll.is_empty() {
            let pairs: Vec<(String, String)> = ll
                .iter()
                .map(|&i| match &requests[i] {
                    Request::LogLik { context, continuation } => (context.clone(), continuation.clone()),
                    _ => unreachable!("grouped as LogLik"),
                })
                .collect();
            let res = engine.loglikelihood(&pairs).context("scoring loglikelihood requests")?;
            check_len("loglikelihood", res.len(), ll.len())?;
            for (&i, r) in ll.iter().zip(res) {
                out[i] = Some(Response::LogLik { logprob: r.logprob, is_greedy: r.is_greedy, n_tokens: r.n_tokens });
            }
        }

        if !tokens.is_empty() {
            let texts: Vec<String> = tokens.iter().map(|&i| text_of(&requests[i]).to_string()).collect();
            let res = engine.token_logprobs(&texts).context("scoring per-token log-probabilities")?;
            check_len("token_logprobs", res.len(), tokens.len())?;
            for (&i, lp) in tokens.iter().zip(res) {
                out[i] = Some(match &requests[i] {
                    Request::Rolling { .. } => {
                        Response::Rolling { logprob: lp.iter().map(|&x| x as f64).sum(), n_tokens: lp.len() }
                    }
                    _ => Response::TokenLogprobs(lp),
                });
            }
        }

        if !dist.is_empty() {
            let texts: Vec<String> = dist.iter().map(|&i| text_of(&requests[i]).to_string()).collect();
            let res = engine.distributions(&texts).context("computing next-token distributions")?;
            check_len("distributions", res.len(), dist.len())?;
            for (&i, t) in dist.iter().zip(res) {
                let rows = t.to_vec2::<f32>().with_context(|| format!("request {i}: distributions to host"))?;
                out[i] = Some(Response::Distributions(rows));
            }
        }

        if !gen.is_empty() {
            let reqs: Vec<(String, Vec<String>, usize)> = gen
                .iter()
                .map(|&i| match &requests[i] {
                    Request::Generate { context, stop, max_new_tokens } => {
                        (context.clone(), stop.clone(), *max_new_tokens)
                    }
                    _ => unreachable!("grouped as Generate"),
                })
                .collect();
            let res = engine.generate_until(&reqs).context("greedy generation")?;
            check_len("generate_until", res.len(), gen.len())?;
            for (&i, text) in gen.iter().zip(res) {
                out[i] = Some(Response::Generated(text));
            }
        }

        out.into_iter()
            .enumerate()
            .map(|(i, r)| r.with_context(|| format!("request {i} ({}) got no response", requests[i].kind())))
            .collect()
    }
}

fn text_of(r: &Request) -> &str {
    match r {
        Request::Rolling { text }
        | Request::TokenLogprobs { text }
        | Request::Distributions { text }
        | Request::GradNorm { text } => text,
        Request::LogLik { context, .. } | Request::Generate { context, .. } => context,
    }
}

fn check_len(call: &str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        bail!("engine {call} returned {got} results for {expected} requests");
    }
    Ok(())
}
