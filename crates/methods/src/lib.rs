//! The registry of unlearning methods: a method name and its TOML parameter table become a
//! `Box<dyn Unlearner>`. This is the one list of method kinds and of their hyperparameters:
//! the runner's config checks read [`KINDS`] and [`PARAMS`] from here. Adding a method is one
//! crate plus one line in each of [`build`], [`KINDS`] and [`PARAMS`] (README, "Adding a
//! method"); `tests/registry.rs` checks that the three agree and that [`PARAMS`] lists exactly
//! the fields each parameter struct accepts.

use anyhow::{bail, Result};
use unlearn::Unlearner;

/// Every known method name, in the order reports list them.
pub const KINDS: &[&str] = &["msa", "task_negation", "gradient_ascent", "gradient_difference", "npo", "simnpo", "rmu"];

/// Hyperparameters each method kind accepts besides `lr` and `epochs` (every method's training
/// budget, which the runner passes from `[train]` or the method's own table). Same order as
/// [`KINDS`].
pub const PARAMS: &[(&str, &[&str])] = &[
    // θ = θ_D − α·τ_f + β·τ_r with τ from checkpoint θ_0 ("latest-clean", "distance:k", "step:N"
    // or "path:DIR"); variant / alpha_scaling / sparsity / ensemble shape τ; alpha = "calibrated"
    // searches α in [alpha_min, alpha_max] matching the forget loss to the held-out loss;
    // repair_*: a retain fine-tune after the arithmetic
    (
        "msa",
        &[
            "alpha",
            "beta",
            "checkpoint",
            "variant",
            "alpha_scaling",
            "sparsity",
            "ensemble",
            "allow_unclean",
            "retain_size",
            "alpha_min",
            "alpha_max",
            "calibrate_iters",
            "calibrate_grid",
            "calibrate_tol",
            "repair_steps",
            "repair_lr",
        ],
    ),
    ("task_negation", &["alpha"]),
    ("gradient_ascent", &[]),
    ("gradient_difference", &["lambda", "retain_loss"]),
    ("npo", &["beta", "lambda"]),
    ("simnpo", &["beta", "gamma", "lambda"]),
    // steer block `layer`'s output on forget text to steering_coeff·u, keep retain activations
    // (weight alpha)
    ("rmu", &["layer", "depth", "update_layers", "params", "steering_coeff", "alpha"]),
];

/// Builds the method `kind` from its parameter table (unknown fields are errors).
pub fn build(kind: &str, params: &toml::Table) -> Result<Box<dyn Unlearner>> {
    Ok(match kind {
        "msa" => Box::new(msa::Msa::from_params(params)?),
        "task_negation" => Box::new(task_negation::TaskNegation::from_params(params)?),
        "gradient_ascent" => Box::new(grad_ascent::GradientAscent::from_params(params)?),
        "gradient_difference" => Box::new(grad_ascent::GradientDifference::from_params(params)?),
        "npo" => Box::new(npo::Npo::from_params(params)?),
        "simnpo" => Box::new(npo::SimNpo::from_params(params)?),
        "rmu" => Box::new(rmu::Rmu::from_params(params)?),
        _ => bail!("{}", unknown_kind(kind)),
    })
}

/// "unknown method "x" (did you mean "y"?); known methods: ...".
fn unknown_kind(kind: &str) -> String {
    let best = KINDS.iter().map(|k| (suggest::edit_distance(&kind.to_lowercase(), k), *k)).min();
    let hint = match best {
        Some((d, k)) if d <= (k.len() / 3).max(2) => format!(" (did you mean {k:?}?)"),
        _ => String::new(),
    };
    format!("unknown method {kind:?}{hint}; known methods: {}", KINDS.join(", "))
}
