//! Negative Preference Optimization and its reference-free variant.
//!
//! * **NPO** (Zhang, Lin, Bai, Mei 2024, "Negative Preference Optimization: From Catastrophic
//!   Collapse to Effective Unlearning", eq. 3):
//!   L_NPO(θ) = −(2/β)·E_forget[log σ(−β·(log π_θ(y|x) − log π_ref(y|x)))] + λ·NLL_retain(θ),
//!   with π_ref the frozen θ_D, log π(y|x) the sum of the log-probabilities of the loss-masked
//!   tokens of an example, and the retain term optional (λ = 0 by default: plain NPO; λ > 0 is
//!   "NPO+RT"). β = 0.1 by default, as in the paper and open-unlearning's `configs/trainer/NPO.yaml`.
//!   The reference log-probabilities are computed once per forget example before training
//!   ([`reference_logprobs`]) and looked up by [`lm::train::Batch::ids`] every epoch.
//! * **SimNPO** (Fan, Liu, Lin, Jia, Zhang, Mei, Liu 2024, "Simplicity Prevails: Rethinking
//!   Negative Preference Optimization for LLM Unlearning"):
//!   L_SimNPO(θ) = −(2/β)·E_forget[log σ(−(β/|y|)·log π_θ(y|x) − γ)] + λ·NLL_retain(θ),
//!   with |y| the number of loss-masked tokens. Defaults β = 4.5, γ = 0 follow open-unlearning's
//!   `configs/trainer/SimNPO.yaml` for TOFU (`beta: 4.5`, `delta: 0.0`); open-unlearning writes
//!   the margin inside the product, β·(NLL/|y| − δ), i.e. γ = β·δ.
//!
//! log σ is computed stably from differentiable ops: log σ(x) = −(relu(−x) + log(1 + exp(−|x|))).
//! The expectation is the mean over the rows of a batch that have target tokens.
//!
//! Learning rate and epochs are the trainer's ([`unlearn::Context::train`], set by the runner
//! from `[train]` and the method table's overrides). The testbed's chosen values were selected
//! on the validation world, never on test metrics (configs/study-validation.toml, 12 trials per
//! method; rule and every setting's numbers in reports/validation/selection.md) and are written
//! into configs/tiny.toml and configs/study.toml.

use anyhow::{bail, Context as _, Result};
use candle_core::{DType, Tensor};
use lm::train::{collate, masked_nll, sequence_logprobs, Example, Objective, Step};
use lm::CausalLm;
use serde::Deserialize;
use unlearn::{check_coefficient, check_positive, parse_params, Context, RunReport, Unlearner};

/// log σ(x), elementwise, without overflow: −(relu(−x) + log(1 + exp(−|x|))).
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let soft = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.neg()?.relu()? + soft)?.neg()?)
}

/// log π(y|x) of every example (sum over its loss-masked tokens), in `batch_size` batches.
pub fn reference_logprobs(model: &CausalLm, examples: &[Example], batch_size: usize, pad: u32) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(examples.len());
    let ids: Vec<usize> = (0..examples.len()).collect();
    for chunk in ids.chunks(batch_size.max(1)) {
        let ex: Vec<&Example> = chunk.iter().map(|&i| &examples[i]).collect();
        let b = collate(&ex, chunk.to_vec(), pad, &model.device)?;
        let (sum, _) = sequence_logprobs(model, &b)?;
        out.extend(sum.to_dtype(DType::F64)?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// −(2/β)·mean over rows with targets of log σ(x); `count` is (b,) target tokens per row.
fn preference_loss(x: &Tensor, count: &Tensor, beta: f64) -> Result<Tensor> {
    let valid = count.gt(0f32)?.to_dtype(DType::F32)?;
    let n = valid.sum_all()?.to_scalar::<f32>()?;
    if n <= 0.0 {
        bail!("forget batch has no target tokens after masking");
    }
    let ls = (log_sigmoid(x)? * valid)?.sum_all()?;
    Ok((ls * (-2.0 / (beta * n as f64)))?)
}

fn retain_term(model: &CausalLm, step: &Step, lambda: f64) -> Result<Option<Tensor>> {
    if lambda == 0.0 {
        return Ok(None);
    }
    let Some(r) = step.secondary else {
        bail!("a retain weight λ = {lambda} needs a retain batch with every forget batch");
    };
    Ok(Some((masked_nll(model, r)? * lambda)?))
}

/// The NPO loss with precomputed reference log-probabilities (indexed by forget example).
pub struct NpoLoss {
    pub beta: f64,
    pub lambda: f64,
    pub reference: Vec<f64>,
}

impl Objective for NpoLoss {
    fn loss(&self, model: &CausalLm, step: &Step) -> Result<Tensor> {
        let b = step.primary;
        let (lp, count) = sequence_logprobs(model, b)?; // (b,), (b,)
        let mut r = Vec::with_capacity(b.ids.len());
        for &i in &b.ids {
            let Some(v) = self.reference.get(i) else {
                bail!("forget example {i} has no reference log-probability ({} computed)", self.reference.len());
            };
            r.push(*v as f32);
        }
        let r = Tensor::from_vec(r, b.ids.len(), &model.device)?;
        let x = ((lp - r)? * (-self.beta))?; // −β·(log π_θ − log π_ref)
        let loss = preference_loss(&x, &count, self.beta)?;
        Ok(match retain_term(model, step, self.lambda)? {
            Some(t) => (loss + t)?,
            None => loss,
        })
    }
}

/// The SimNPO loss.
pub struct SimNpoLoss {
    pub beta: f64,
    pub gamma: f64,
    pub lambda: f64,
}

impl Objective for SimNpoLoss {
    fn loss(&self, model: &CausalLm, step: &Step) -> Result<Tensor> {
        let (lp, count) = sequence_logprobs(model, step.primary)?;
        let len = count.clamp(1f32, f32::MAX)?; // rows without targets are excluded below
        let x = ((lp / len)? * (-self.beta))?.affine(1.0, -self.gamma)?; // −(β/|y|)·log π_θ − γ
        let loss = preference_loss(&x, &count, self.beta)?;
        Ok(match retain_term(model, step, self.lambda)? {
            Some(t) => (loss + t)?,
            None => loss,
        })
    }
}

fn default_npo_beta() -> f64 {
    0.1
}
fn default_simnpo_beta() -> f64 {
    4.5
}

/// Parameters of `npo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NpoParams {
    #[serde(default = "default_npo_beta")]
    pub beta: f64,
    /// Weight of the retain NLL term (0: plain NPO).
    #[serde(default)]
    pub lambda: f64,
}

pub struct Npo {
    pub params: NpoParams,
}

impl Npo {
    pub const NAME: &'static str = "npo";

    pub fn from_params(params: &toml::Table) -> Result<Npo> {
        let p: NpoParams = parse_params(Self::NAME, params)?;
        check_positive(Self::NAME, "beta", p.beta)?;
        check_coefficient(Self::NAME, "beta", p.beta)?;
        check_coefficient(Self::NAME, "lambda", p.lambda)?;
        Ok(Npo { params: p })
    }
}

/// The registry entry of NPO (`methods::SPECS`).
pub const NPO_SPEC: unlearn::MethodSpec = unlearn::MethodSpec {
    kind: Npo::NAME,
    params: &["beta", "lambda"],
    build: |p| Ok(Box::new(Npo::from_params(p)?)),
    retain_batch: true,
    frozen_reference: true,
};

impl Unlearner for Npo {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, ctx: &Context) -> Result<RunReport> {
        let cfg = &ctx.train;
        unlearn::clear_out(ctx.out)?;
        unlearn::check_has_targets(Self::NAME, "forget", ctx.forget)?;
        let t0 = std::time::Instant::now();
        let reference = (|| {
            let frozen = CausalLm::load(ctx.final_model, ctx.device, false)?;
            reference_logprobs(&frozen, ctx.forget, cfg.batch_size, ctx.pad)
        })()
        .with_context(|| format!("method {}: reference log-probabilities of θ_D", Self::NAME))?;
        let ref_s = t0.elapsed().as_secs_f64();
        let objective = NpoLoss { beta: self.params.beta, lambda: self.params.lambda, reference };
        let mut report = unlearn::train_gradient_method(Self::NAME, ctx, &objective, self.params.lambda > 0.0, cfg)?;
        report.timings.insert("reference_logprobs".into(), ref_s);
        Ok(report)
    }
}

/// Parameters of `simnpo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimNpoParams {
    #[serde(default = "default_simnpo_beta")]
    pub beta: f64,
    /// The reward margin γ.
    #[serde(default)]
    pub gamma: f64,
    /// Weight of the retain NLL term.
    #[serde(default)]
    pub lambda: f64,
}

pub struct SimNpo {
    pub params: SimNpoParams,
}

impl SimNpo {
    pub const NAME: &'static str = "simnpo";

    pub fn from_params(params: &toml::Table) -> Result<SimNpo> {
        let p: SimNpoParams = parse_params(Self::NAME, params)?;
        check_positive(Self::NAME, "beta", p.beta)?;
        check_coefficient(Self::NAME, "beta", p.beta)?;
        check_coefficient(Self::NAME, "gamma", p.gamma)?;
        check_coefficient(Self::NAME, "lambda", p.lambda)?;
        Ok(SimNpo { params: p })
    }
}

/// The registry entry of SimNPO (`methods::SPECS`).
pub const SIMNPO_SPEC: unlearn::MethodSpec = unlearn::MethodSpec {
    kind: SimNpo::NAME,
    params: &["beta", "gamma", "lambda"],
    build: |p| Ok(Box::new(SimNpo::from_params(p)?)),
    retain_batch: true,
    frozen_reference: false,
};

impl Unlearner for SimNpo {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, ctx: &Context) -> Result<RunReport> {
        let cfg = &ctx.train;
        let p = &self.params;
        let objective = SimNpoLoss { beta: p.beta, gamma: p.gamma, lambda: p.lambda };
        unlearn::train_gradient_method(Self::NAME, ctx, &objective, p.lambda > 0.0, cfg)
    }
}
