//! Task negation (Ilharco, Ribeiro, Wortsman, Gururangan, Schmidt, Hajishirzi, Farhadi 2023,
//! "Editing Models with Task Arithmetic"), in MUSE's unlearning version (Shi et al. 2024):
//! fine-tune θ_D on the forget set → θ_ft, τ = θ_ft − θ_D, and return θ = θ_D − α·τ.
//!
//! This is Model State Arithmetic with θ_D itself as the base point and β = 0, so it calls
//! [`msa::arithmetic`] (same fine-tune recipe, cache and streaming combination) rather than
//! repeating it. No ledger check applies: θ_D is the model being unlearned.
//!
//! The fine-tune runs at the trainer's learning rate and epochs ([`unlearn::Context::train`]).
//! The testbed's values were chosen on the validation world (reports/validation/selection.md)
//! and are written into configs/tiny.toml and configs/study.toml.

use anyhow::Result;
use serde::Deserialize;
use unlearn::{check_coefficient, parse_params, Context, RunReport, Unlearner};

fn default_alpha() -> f64 {
    1.0
}

/// Parameters of `task_negation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskNegationParams {
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

pub struct TaskNegation {
    pub params: TaskNegationParams,
}

impl TaskNegation {
    pub const NAME: &'static str = "task_negation";

    pub fn from_params(params: &toml::Table) -> Result<TaskNegation> {
        let p: TaskNegationParams = parse_params(Self::NAME, params)?;
        check_coefficient(Self::NAME, "alpha", p.alpha)?;
        Ok(TaskNegation { params: p })
    }
}

/// The registry entry (`methods::SPECS`): θ = θ_D − α·(θ_ft − θ_D).
pub const SPEC: unlearn::MethodSpec = unlearn::MethodSpec {
    kind: TaskNegation::NAME,
    params: &["alpha"],
    build: |p| Ok(Box::new(TaskNegation::from_params(p)?)),
    retain_batch: false,
    frozen_reference: false,
};

impl Unlearner for TaskNegation {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, ctx: &Context) -> Result<RunReport> {
        let ft = msa::FineTune::of(&ctx.train);
        msa::arithmetic(Self::NAME, ctx, ctx.final_model, self.params.alpha, 0.0, &ft, None)
    }
}
