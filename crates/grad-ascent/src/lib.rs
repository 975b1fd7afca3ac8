//! Gradient ascent and gradient difference, the simplest unlearning baselines (as in TOFU,
//! Maini et al. 2024, and open-unlearning's `GradAscent` / `GradDiff` trainers).
//!
//! * **Gradient ascent** minimises L_GA(θ) = −NLL_forget(θ), where NLL is the mean negative
//!   log-likelihood over the loss-masked tokens of a forget batch.
//! * **Gradient difference** minimises L_GD(θ) = −NLL_forget(θ) + λ·L_retain(θ) with
//!   L_retain = NLL_retain(θ) (`retain_loss = "nll"`, default) or
//!   L_retain = KL(π_θD ‖ π_θ) = mean over the loss-masked retain tokens of
//!   Σ_v π_θD(v|x<t)·(log π_θD(v|x<t) − log π_θ(v|x<t)), with the frozen θ_D run forward on
//!   every retain batch (`retain_loss = "kl"`).
//!
//! Both go through [`unlearn::train_gradient_method`]; this crate only defines the losses.
//! Learning rate and epochs are the trainer's ([`unlearn::Context::train`], set by the runner
//! from `[train]` and the method table's overrides), not the methods' own parameters. The
//! testbed's chosen values were selected on the validation world, never on test metrics
//! (configs/study-validation.toml, 12 trials per method; rule and every setting's numbers in
//! reports/validation/selection.md) and are written into configs/tiny.toml and
//! configs/study.toml.

use anyhow::{bail, Result};
use candle_core::{Tensor, D};
use lm::model::log_softmax_last;
use lm::train::{masked_nll, Batch, Objective, Step};
use lm::CausalLm;
use serde::Deserialize;
use unlearn::{check_coefficient, parse_params, Context, RunReport, Unlearner};

/// L = −NLL on the forget batch.
pub struct AscentLoss;

impl Objective for AscentLoss {
    fn loss(&self, model: &CausalLm, step: &Step) -> Result<Tensor> {
        Ok(masked_nll(model, step.primary)?.neg()?)
    }
}

/// The retain term of gradient difference.
pub enum RetainTerm {
    /// NLL on the retain batch.
    Nll,
    /// KL(π_ref ‖ π_θ) on the retain batch, with the frozen reference model.
    Kl(Box<CausalLm>),
}

/// L = −NLL_forget + λ·L_retain.
pub struct DifferenceLoss {
    pub lambda: f64,
    pub retain: RetainTerm,
}

impl Objective for DifferenceLoss {
    fn loss(&self, model: &CausalLm, step: &Step) -> Result<Tensor> {
        let Some(retain) = step.secondary else {
            bail!("gradient difference needs a retain batch with every forget batch");
        };
        let forget = masked_nll(model, step.primary)?.neg()?;
        let r = match &self.retain {
            RetainTerm::Nll => masked_nll(model, retain)?,
            RetainTerm::Kl(reference) => kl_to_reference(model, reference, retain)?,
        };
        Ok((forget + (r * self.lambda)?)?)
    }
}

/// Mean over the loss-masked tokens of `batch` of KL(π_ref ‖ π_θ) at each position (a scalar);
/// the reference is detached.
pub fn kl_to_reference(model: &CausalLm, reference: &CausalLm, batch: &Batch) -> Result<Tensor> {
    let lp = log_softmax_last(&model.forward(&batch.inputs, Some(&batch.attention))?)?; // (b, t, v)
    let lq = log_softmax_last(&reference.forward(&batch.inputs, Some(&batch.attention))?)?.detach();
    let kl = (lq.exp()? * (lq - lp)?)?.sum(D::Minus1)?; // (b, t)
    let total = batch.mask.sum_all()?.to_scalar::<f32>()?;
    if total <= 0.0 {
        bail!("retain batch has no target tokens after masking");
    }
    Ok(((kl * &batch.mask)?.sum_all()? / total as f64)?)
}

fn default_lambda() -> f64 {
    1.0
}

/// Parameters of `gradient_ascent`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AscentParams {}

pub struct GradientAscent {
    pub params: AscentParams,
}

impl GradientAscent {
    pub const NAME: &'static str = "gradient_ascent";

    pub fn from_params(params: &toml::Table) -> Result<GradientAscent> {
        let p: AscentParams = parse_params(Self::NAME, params)?;
        Ok(GradientAscent { params: p })
    }
}

/// The registry entry of gradient ascent (`methods::SPECS`).
pub const ASCENT_SPEC: unlearn::MethodSpec = unlearn::MethodSpec {
    kind: GradientAscent::NAME,
    params: &[],
    build: |p| Ok(Box::new(GradientAscent::from_params(p)?)),
    retain_batch: false,
    frozen_reference: false,
};

impl Unlearner for GradientAscent {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, ctx: &Context) -> Result<RunReport> {
        unlearn::train_gradient_method(Self::NAME, ctx, &AscentLoss, false, &ctx.train)
    }
}

/// Which retain loss gradient difference uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetainLossKind {
    Nll,
    Kl,
}

/// Parameters of `gradient_difference`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DifferenceParams {
    /// λ, the weight of the retain term (open-unlearning's GradDiff `alpha`, default 1).
    #[serde(default = "default_lambda")]
    pub lambda: f64,
    #[serde(default = "default_retain_loss")]
    pub retain_loss: RetainLossKind,
}

fn default_retain_loss() -> RetainLossKind {
    RetainLossKind::Nll
}

pub struct GradientDifference {
    pub params: DifferenceParams,
}

impl GradientDifference {
    pub const NAME: &'static str = "gradient_difference";

    pub fn from_params(params: &toml::Table) -> Result<GradientDifference> {
        let p: DifferenceParams = parse_params(Self::NAME, params)?;
        check_coefficient(Self::NAME, "lambda", p.lambda)?;
        Ok(GradientDifference { params: p })
    }
}

/// The registry entry of gradient difference (`methods::SPECS`).
pub const DIFFERENCE_SPEC: unlearn::MethodSpec = unlearn::MethodSpec {
    kind: GradientDifference::NAME,
    params: &["lambda", "retain_loss"],
    build: |p| Ok(Box::new(GradientDifference::from_params(p)?)),
    retain_batch: true,
    frozen_reference: true,
};

impl Unlearner for GradientDifference {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, ctx: &Context) -> Result<RunReport> {
        let retain = match self.params.retain_loss {
            RetainLossKind::Nll => RetainTerm::Nll,
            RetainLossKind::Kl => RetainTerm::Kl(Box::new(CausalLm::load(ctx.final_model, ctx.device, false)?)),
        };
        let objective = DifferenceLoss { lambda: self.params.lambda, retain };
        unlearn::train_gradient_method(Self::NAME, ctx, &objective, true, &ctx.train)
    }
}
