//! The interface every unlearning method implements, and what the methods share.
//!
//! One [`Unlearner`] trait fits both families (following the shape of open-unlearning's
//! `UnlearnTrainer`, but without forcing training-free methods into a trainer):
//!
//! * arithmetic methods (MSA, task negation) fine-tune and combine checkpoints on disk;
//! * gradient methods (gradient ascent/difference, NPO, SimNPO) only supply an
//!   [`lm::train::Objective`] to the one shared loop, [`train_gradient_method`].
//!
//! Invariant: methods never choose file names or read data sets; they get everything through a
//! [`Context`] and write exactly one Hugging Face checkpoint folder at `ctx.out`, atomically
//! (on error nothing is left there).
//!
//! Hyperparameters come from a `toml::Table` of scalars, parsed by [`parse_params`] into a
//! method's `deny_unknown_fields` struct; [`check_coefficient`] validates α/β-like values.
//! The training budget (learning rate, epochs, batch size, …) is not a method's parameter: it
//! is [`Context::train`], resolved by the caller (the runner: `[train]` with the method
//! table's overrides, one trainer configuration per cell, recorded as run). A method table
//! written as a config writes it (`lr`, `epochs` beside the method's own keys) is split by
//! [`split_train_overrides`].

use anyhow::{bail, Context as _, Result};
use lm::train::{Example, Objective, TrainConfig};
use lm::CausalLm;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One intermediate checkpoint of the world's training run, from the exposure ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Optimizer steps taken before this checkpoint was saved.
    pub step: usize,
    /// Hugging Face checkpoint folder.
    pub path: PathBuf,
    /// True when no forget document had been trained on by this step.
    pub clean: bool,
}

/// A progress callback: (stage, step, total, loss).
pub use lm::train::StageProgress as ProgressFn;

/// Everything a method needs for one run.
pub struct Context<'a> {
    /// θ_D, the model trained on all data (a Hugging Face folder).
    pub final_model: &'a Path,
    /// The world's checkpoints, ordered by step (may be empty).
    pub checkpoints: &'a [CheckpointInfo],
    /// Tokenised, loss-masked forget examples (e.g. loss on answer tokens only).
    pub forget: &'a [Example],
    pub retain: &'a [Example],
    /// Held-out examples of the forget set's kind that no model saw (the world's held-out
    /// documents, tokenised like `forget`); a reference for stopping rules that need no oracle
    /// (MSA's calibrated α). May be empty.
    pub held_out: &'a [Example],
    /// The trainer configuration of this run, learning rate and epochs included (methods
    /// train with it as given; MSA's fine-tunes add the paper's warm-up and decay, see
    /// `msa::FineTune`).
    pub train: TrainConfig,
    pub seed: u64,
    /// Shared across the cells of one world and model (MSA caches fine-tuned models here).
    pub cache: &'a Path,
    /// Where to write the unlearned checkpoint folder.
    pub out: &'a Path,
    pub device: &'a candle_core::Device,
    /// Padding id for batches.
    pub pad: u32,
    pub progress: Option<ProgressFn<'a>>,
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The unlearned checkpoint folder (= `ctx.out`).
    pub out: PathBuf,
    /// (optimizer step, loss) of every training step the run did (empty on a cache hit).
    pub loss_curve: Vec<(usize, f64)>,
    /// Seconds per stage ("train", "save", "finetune_forget", "combine", ...).
    pub timings: BTreeMap<String, f64>,
    /// Anything else worth recording (cache hits, the chosen base checkpoint, ablation labels).
    pub notes: BTreeMap<String, serde_json::Value>,
}

/// An unlearning method.
pub trait Unlearner {
    /// The registry name (e.g. "msa", "npo").
    fn name(&self) -> &str;
    /// Unlearn `ctx.forget` from `ctx.final_model`, writing the result to `ctx.out`.
    fn run(&self, ctx: &Context) -> Result<RunReport>;
}

/// A method as the registry knows it: each method crate exports one (next to its parameter
/// struct) and `methods::SPECS` lists them; the runner's config checks and the builder read
/// nothing else.
#[derive(Clone, Copy)]
pub struct MethodSpec {
    /// The `kind` a config names (also [`Unlearner::name`] of what `build` returns).
    pub kind: &'static str,
    /// The method's own hyperparameters: exactly the fields its parameter struct accepts (the
    /// training budget, `lr`, `epochs` and the rest, is [`Context::train`], not listed here).
    pub params: &'static [&'static str],
    /// Builds the method from its parameter table (unknown fields are errors).
    pub build: fn(&toml::Table) -> Result<Box<dyn Unlearner>>,
    /// For the runner's memory plan: a training step also runs a retain batch.
    pub retain_batch: bool,
    /// For the runner's memory plan: it holds a frozen copy of θ_D beside the trained model.
    pub frozen_reference: bool,
}

/// Parses a method's parameter table into its `deny_unknown_fields` struct; errors name the
/// method (and, from serde, the field).
pub fn parse_params<T: DeserializeOwned>(method: &str, params: &toml::Table) -> Result<T> {
    params
        .clone()
        .try_into::<T>()
        .map_err(|e| anyhow::anyhow!("method {method}: invalid parameters: {}", e.to_string().trim()))
}

/// The largest coefficient accepted (α, β, λ): anything above is surely a typo.
pub const MAX_COEFFICIENT: f64 = 100.0;

/// Checks a non-negative coefficient: finite, ≥ 0 and ≤ [`MAX_COEFFICIENT`].
pub fn check_coefficient(method: &str, field: &str, value: f64) -> Result<()> {
    check_coefficient_up_to(method, field, value, MAX_COEFFICIENT)
}

/// Checks a non-negative coefficient with its own bound: finite, ≥ 0 and ≤ `max` (for
/// coefficients whose scale is not the other methods', such as RMU's α).
pub fn check_coefficient_up_to(method: &str, field: &str, value: f64, max: f64) -> Result<()> {
    if !value.is_finite() || !(0.0..=max).contains(&value) {
        bail!("method {method}: parameter {field} = {value} is invalid (expected a number in [0, {max}])");
    }
    Ok(())
}

/// Checks a strictly positive finite value (learning rates, temperatures).
pub fn check_positive(method: &str, field: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value <= 0.0 {
        bail!("method {method}: parameter {field} = {value} is invalid (expected a positive finite number)");
    }
    Ok(())
}

/// Errors when a data set has no token left to train on after masking.
pub fn check_has_targets(method: &str, set: &str, examples: &[Example]) -> Result<()> {
    if examples.is_empty() {
        bail!("method {method}: the {set} set is empty");
    }
    if examples.iter().all(|e| e.n_target_tokens() == 0) {
        bail!("method {method}: the {set} set has no target tokens after masking ({} examples)", examples.len());
    }
    Ok(())
}

/// Removes a stale folder at `out`, so that a failed run never leaves an old result there
/// looking like a new one.
pub fn clear_out(out: &Path) -> Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("cannot remove stale output {}", out.display()))?;
    }
    Ok(())
}

/// Errors when any weight of `model` is NaN or infinite (naming the first such tensor).
pub fn check_finite_weights(model: &CausalLm) -> Result<()> {
    // LoRA adapters merged: a diverged adapter shows in the weight it adapts
    for (name, t) in &model.merged_state()? {
        let s = t.abs()?.sum_all()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        if !s.is_finite() {
            bail!("tensor {name} holds non-finite values after training (the run diverged)");
        }
    }
    Ok(())
}

/// The shared gradient-training loop: load θ_D trainable, run [`lm::train::fit`] with the
/// forget set as the primary data (and the retain set as the secondary one when
/// `use_retain`), check the weights are finite, and save to `ctx.out` atomically with θ_D's
/// tokenizer files. The shuffling seed is `ctx.seed`. Errors are prefixed with `method`;
/// on error nothing is left at `ctx.out`.
pub fn train_gradient_method(
    method: &str,
    ctx: &Context,
    objective: &dyn Objective,
    use_retain: bool,
    train_cfg: &TrainConfig,
) -> Result<RunReport> {
    train_gradient_method_on(method, ctx, objective, use_retain, train_cfg, &|_| true)
}

/// [`train_gradient_method`] training only the parameters whose names `trainable` accepts
/// (the rest of θ_D stays as it is, bit for bit); see [`lm::CausalLm::train_only`].
pub fn train_gradient_method_on(
    method: &str,
    ctx: &Context,
    objective: &dyn Objective,
    use_retain: bool,
    train_cfg: &TrainConfig,
    trainable: &dyn Fn(&str) -> bool,
) -> Result<RunReport> {
    let run = || -> Result<RunReport> {
        clear_out(ctx.out)?;
        check_has_targets(method, "forget", ctx.forget)?;
        if use_retain {
            check_has_targets(method, "retain", ctx.retain)?;
        }
        let mut cfg = train_cfg.clone();
        cfg.seed = ctx.seed;
        let t0 = Instant::now();
        let mut model = lm::train::load_for_training(ctx.final_model, ctx.device, &cfg)?;
        model.train_only(trainable)?;
        let load_s = t0.elapsed().as_secs_f64();
        let mut cb = |step: usize, total: usize, loss: f64| {
            if let Some(p) = ctx.progress {
                p(method, step, total, loss);
            }
        };
        let secondary = if use_retain { Some(ctx.retain) } else { None };
        let log = lm::train::fit(&model, ctx.forget, secondary, &cfg, objective, ctx.pad, Some(&mut cb))?;
        check_finite_weights(&model)?;
        let t1 = Instant::now();
        lm::checkpoint::save(&model, ctx.out, Some(ctx.final_model))?;
        let mut report = RunReport { out: ctx.out.to_path_buf(), ..Default::default() };
        report.loss_curve = log.steps.iter().map(|s| (s.step, s.loss)).collect();
        report.timings.insert("load".into(), load_s);
        report.timings.insert("train".into(), log.seconds);
        report.timings.insert("save".into(), t1.elapsed().as_secs_f64());
        // compute accounting (issue 19): tokens through a forward and backward pass, forget and
        // retain batches together, as MSA counts its fine-tunes' tokens
        report.timings.insert("count/finetune_tokens".into(), log.tokens as f64);
        report.notes.insert("steps".into(), log.steps.len().into());
        report.notes.insert("tokens".into(), log.tokens.into());
        Ok(report)
    };
    let result = run().with_context(|| format!("method {method}: unlearning {} failed", ctx.final_model.display()));
    if result.is_err() {
        let _ = clear_out(ctx.out);
    }
    result
}

/// Splits a method table as a config writes it (the method's own parameters beside `lr` and
/// `epochs`) into the method's parameters and `base` with the table's `lr` (> 0) and `epochs`
/// (≥ 1) applied; errors name the field. For callers outside the runner (tests, scripts); the
/// runner resolves these and its other `[train]` keys itself.
pub fn split_train_overrides(table: &toml::Table, base: &TrainConfig) -> Result<(toml::Table, TrainConfig)> {
    let mut params = table.clone();
    let mut cfg = base.clone();
    if let Some(v) = params.remove("lr") {
        let lr = v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        match lr {
            Some(lr) if lr.is_finite() && lr > 0.0 => cfg.lr = lr,
            _ => bail!("lr = {v} is invalid (expected a number > 0)"),
        }
    }
    if let Some(v) = params.remove("epochs") {
        match v.as_integer() {
            Some(e) if e >= 1 => cfg.epochs = e as usize,
            _ => bail!("epochs = {v} is invalid (expected an integer ≥ 1)"),
        }
    }
    Ok((params, cfg))
}
