//! The registry of unlearning methods: a method name and its TOML parameter table become a
//! `Box<dyn Unlearner>`. Adding a method is one crate plus one line in [`build`] and [`KINDS`]
//! (see `ADDING_A_METHOD.md`).

use anyhow::{bail, Result};
use unlearn::Unlearner;

/// Every known method name, in the order reports list them.
pub const KINDS: &[&str] = &["msa", "task_negation", "gradient_ascent", "gradient_difference", "npo", "simnpo", "rmu"];

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
