//! The registry of unlearning methods: a method name and its TOML parameter table become a
//! `Box<dyn Unlearner>`. [`SPECS`] is the one list: each method crate exports its
//! [`unlearn::MethodSpec`] (kind, hyperparameter names, builder) next to its parameter struct,
//! and [`KINDS`], [`PARAMS`] and [`build`] are read from it; the runner's config checks read
//! them from here. Adding a method is one crate plus one line in [`SPECS`] (ARCHITECTURE.md,
//! "Adding a method"); `tests/registry.rs` checks that each spec's `params` are exactly the
//! fields its parameter struct accepts.

use anyhow::{bail, Result};
use unlearn::{MethodSpec, Unlearner};

/// Every method, in the order reports list them.
pub const SPECS: &[MethodSpec] = &[
    msa::SPEC,
    task_negation::SPEC,
    grad_ascent::ASCENT_SPEC,
    grad_ascent::DIFFERENCE_SPEC,
    npo::NPO_SPEC,
    npo::SIMNPO_SPEC,
    rmu::SPEC,
];

const N: usize = SPECS.len();

const KIND_ARRAY: [&str; N] = {
    let mut a = [""; N];
    let mut i = 0;
    while i < N {
        a[i] = SPECS[i].kind;
        i += 1;
    }
    a
};

const PARAM_ARRAY: [(&str, &[&str]); N] = {
    let mut a: [(&str, &[&str]); N] = [("", &[]); N];
    let mut i = 0;
    while i < N {
        a[i] = (SPECS[i].kind, SPECS[i].params);
        i += 1;
    }
    a
};

/// Every known method name, in the order of [`SPECS`].
pub const KINDS: &[&str] = &KIND_ARRAY;

/// Each method kind's own hyperparameters (the training budget, `lr`, `epochs`, …, is the
/// trainer's, `unlearn::Context::train`, never a method's), in the order of [`SPECS`].
pub const PARAMS: &[(&str, &[&str])] = &PARAM_ARRAY;

/// The spec of method `kind` (`None`: not a built-in method, e.g. an external one).
pub fn spec(kind: &str) -> Option<&'static MethodSpec> {
    SPECS.iter().find(|s| s.kind == kind)
}

/// Builds the method `kind` from its parameter table (unknown fields are errors).
pub fn build(kind: &str, params: &toml::Table) -> Result<Box<dyn Unlearner>> {
    match spec(kind) {
        Some(spec) => (spec.build)(params),
        None => bail!("{}", unknown_kind(kind)),
    }
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
