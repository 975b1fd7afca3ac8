//! Per-example gradient norms, for the GradNorm membership-inference attack (open-unlearning's
//! `GradNormAttack`; `evals::mia::MiaGradNorm` has the definition and the sources).
//!
//! For each text: the mean token NLL of `loglikelihood_rolling` — the text encoded without
//! special tokens, every token scored given the prefix token (BOS, else EOS) and the tokens
//! before it, in the same disjoint windows of at most `max_length` tokens as
//! [`crate::score::Scorer::token_logprobs`] — is differentiated with respect to every parameter
//! tensor of the model, one text per backward pass, and the L2 norm of each tensor's gradient
//! is returned (summed in f64 from the f32 gradient). A text longer than `max_length` takes
//! one backward per window, each window's summed token NLL divided by the text's token count,
//! the windows' gradients added. The gradients are dropped once their norms are taken.
//!
//! A scorer's model is frozen: [`grad_norms`] turns its tensors into variables for the
//! duration (each copied into a variable and the frozen copy released, so the model is never
//! held twice) and back afterwards (the variables' storage kept, no copy). Memory at the peak:
//! the model, one f32 gradient the size of the model (two for a text of several windows), and
//! one window's activations.

use crate::model::CausalLm;
use crate::tok::Tok;
use crate::train::{collate, sequence_logprobs, Example};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor, Var};

/// The gradient norms of one text.
#[derive(Clone, Debug, PartialEq)]
pub struct GradNorms {
    /// The differentiated loss: the text's mean token NLL.
    pub nll: f64,
    /// Tokens scored (the prefix token is not one).
    pub n_tokens: usize,
    /// (parameter name, ‖∂nll/∂θ‖₂) of every parameter tensor, in the order of
    /// [`CausalLm::vars`] (by name).
    pub tensor_norms: Vec<(String, f64)>,
}

impl GradNorms {
    /// L2 norm of the whole gradient: sqrt(Σ ‖∂nll/∂θ_i‖₂²).
    pub fn global(&self) -> f64 {
        self.tensor_norms.iter().map(|(_, x)| x * x).sum::<f64>().sqrt()
    }

    /// Mean over the parameter tensors of ‖∂nll/∂θ_i‖₂ (open-unlearning's GradNorm statistic).
    pub fn mean_tensor(&self) -> f64 {
        self.tensor_norms.iter().map(|(_, x)| x).sum::<f64>() / self.tensor_norms.len().max(1) as f64
    }
}

/// Gradient norms of each text's mean token NLL with respect to every parameter of `model`
/// (see the module docs). A frozen model is made trainable for the call and frozen again
/// afterwards, also when the call fails; a trainable model must train every tensor. The
/// weights must be f32. Errors on a text without tokens, naming it.
pub fn grad_norms(model: &mut CausalLm, tok: &Tok, texts: &[String], max_length: usize) -> Result<Vec<GradNorms>> {
    if model.dtype() != DType::F32 {
        bail!("GradNorm: per-example gradients are computed in f32, the model is loaded in {:?}", model.dtype());
    }
    if model.params.lora.is_some() {
        bail!(
            "GradNorm: the model carries LoRA adapters; score its merged checkpoint (lm::checkpoint::save writes it)"
        );
    }
    let thawed = if model.params.is_trainable() {
        let (n_vars, n) = (model.params.vars.len(), model.params.tensors.len());
        if n_vars != n {
            bail!(
                "GradNorm needs the gradient of every parameter, but {} of the model's {n} tensors are frozen",
                n - n_vars
            );
        }
        false
    } else {
        thaw(model)?;
        true
    };
    let out = texts
        .iter()
        .enumerate()
        .map(|(i, t)| text_grad_norms(model, tok, t, max_length).with_context(|| format!("GradNorm text {i}")))
        .collect();
    if thawed {
        freeze(model);
        // frozen again: its block weights packed again, as at load
        model.pack_weights().context("GradNorm: packing the frozen weights again")?;
    }
    out
}

/// Turns every frozen tensor into a variable, one at a time (the frozen tensor is released
/// after its copy).
fn thaw(model: &mut CausalLm) -> Result<()> {
    // the packs go first, so each layer's pack is freed once its tensors are copied
    model.params.packs = Default::default();
    let tensors = std::mem::take(&mut model.params.tensors);
    let mut vars = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let v = Var::from_tensor(&t)?;
        drop(t);
        model.params.tensors.insert(name.clone(), v.as_tensor().clone());
        vars.push((name, v));
    }
    model.params.vars = vars;
    Ok(())
}

/// Turns the variables back into frozen tensors sharing their storage.
fn freeze(model: &mut CausalLm) {
    for (name, v) in std::mem::take(&mut model.params.vars) {
        model.params.tensors.insert(name, v.as_tensor().detach());
    }
}

fn text_grad_norms(model: &CausalLm, tok: &Tok, text: &str, max_length: usize) -> Result<GradNorms> {
    let tokens = tok.encode(text)?;
    if tokens.is_empty() {
        bail!("the text {text:?} has no tokens: the gradient of a mean NLL needs at least one");
    }
    let n = tokens.len();
    let windows = crate::score::rolling_windows(&tokens, tok.prefix_token(), max_length);
    let vars = model.vars();
    let mut acc: Vec<Option<Tensor>> = vec![None; vars.len()];
    let mut logprob = 0.0f64;
    for (w, (ctx, cont)) in windows.iter().enumerate() {
        // the context tokens carry no loss; the window predicts exactly `cont`
        let example = Example::prompt_answer(ctx, cont);
        let batch = collate(&[&example], vec![0], tok.prefix_token(), &model.device)?;
        let (sum, _) = sequence_logprobs(model, &batch)?;
        let sum = sum.sum_all()?;
        let lp = sum.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !lp.is_finite() {
            bail!("window {w}: log-likelihood {lp} is not finite (NaN/inf in the model's weights or activations)");
        }
        logprob += lp;
        let loss = (sum.neg()? / n as f64)?;
        let grads = loss.backward()?;
        for (i, (name, v)) in vars.iter().enumerate() {
            let g = grads
                .get(v.as_tensor())
                .with_context(|| format!("parameter {name} received no gradient (the graph is broken)"))?;
            acc[i] = Some(match acc[i].take() {
                None => g.clone(),
                Some(a) => (a + g)?,
            });
        }
    }
    let mut tensor_norms = Vec::with_capacity(vars.len());
    for ((name, _), g) in vars.iter().zip(acc) {
        let g = g.expect("every window gives every parameter a gradient");
        let norm = g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
        if !norm.is_finite() {
            bail!("the gradient of parameter {name} has norm {norm}");
        }
        tensor_norms.push((name.clone(), norm));
    }
    Ok(GradNorms { nll: -logprob / n as f64, n_tokens: n, tensor_norms })
}
