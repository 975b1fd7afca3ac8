//! Calibrated α and retain repair (issue 19, items 1 and 4).
//!
//! **Calibrated α** (`alpha = "calibrated"`): a stopping rule that needs no retrained oracle.
//! A model that never saw the forget set has, on it, about the loss it has on held-out text of
//! the same kind (the world's held-out documents: same generator, same tokenizer, never
//! trained on). So α is chosen per run as the root of
//!
//! ```text
//! gap(α) = L̄_forget(θ(α)) − L̄_held_out(θ(α)),   θ(α) = θ_D − α·τ_f + β·τ_r (with the run's shaping)
//! ```
//!
//! where L̄ is the mean next-token loss per target token (total NLL / target tokens, in f64).
//! θ_D has learned the forget set, so gap(0) < 0; subtracting τ_f raises the forget loss faster
//! than the held-out loss, so gap grows with α — until the model breaks, when the held-out loss
//! can rise faster again. [`bisect`] scans [`alpha_min`, `alpha_max`] upward for the first
//! crossing and bisects it, with a bounded number of evaluations, each one streaming combine plus two loss passes
//! (seconds on the testbed's models). Every evaluation is recorded in the run's notes
//! (`calibration.trace`).
//!
//! **Repair** (`repair_steps = N`): after the arithmetic, N optimizer steps of plain
//! next-token fine-tuning on the retain set ([`repair`]), at `repair_lr` with a constant
//! schedule and no warm-up; its tokens are counted like the task vectors' fine-tunes.

use anyhow::{bail, ensure, Context as _, Result};
use lm::train::{collate, fit, sequence_logprobs, Example, LrSchedule, NextToken, TrainConfig};
use lm::CausalLm;
use serde::Deserialize;
use std::path::Path;

/// α as written in the method's table: a number, or "calibrated".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Alpha {
    Fixed(f64),
    Calibrated,
}

impl Default for Alpha {
    fn default() -> Self {
        Alpha::Fixed(1.0)
    }
}

impl<'de> Deserialize<'de> for Alpha {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Alpha, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::Float(x) => Ok(Alpha::Fixed(x)),
            toml::Value::Integer(i) => Ok(Alpha::Fixed(i as f64)),
            toml::Value::String(s) if s == "calibrated" => Ok(Alpha::Calibrated),
            other => Err(D::Error::custom(format!(
                "alpha = {other} is invalid (expected a number, or \"calibrated\" to choose α per run by matching the forget loss to the held-out loss)"
            ))),
        }
    }
}

/// How the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// |gap| ≤ tolerance at the chosen α.
    Converged,
    /// The iteration limit was reached inside a bracket; the chosen α is the evaluated point
    /// with the smallest |gap|.
    IterationLimit,
    /// gap(lo) > tolerance already: the lower end is chosen.
    AtLower,
    /// The gap stays below −tolerance at every scanned α (no root in the range, or the curve
    /// turns down again): the scanned α with the largest gap is chosen.
    NoRoot,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Converged => "converged",
            Outcome::IterationLimit => "iteration-limit",
            Outcome::AtLower => "at-lower-bound",
            Outcome::NoRoot => "no-root",
        }
    }
}

/// The result of [`bisect`]: the chosen α, its gap, every (α, gap) evaluated in order, and
/// how the search ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub alpha: f64,
    pub gap: f64,
    pub trace: Vec<(f64, f64)>,
    pub outcome: Outcome,
}

/// Finds the smallest α in [lo, hi] with gap(α) ≈ 0 for a gap that starts negative: a scan
/// of `grid` + 1 evenly spaced points from lo upward, stopped at the first point with
/// |gap| ≤ `tol` (chosen) or gap > 0 (a bracket with the point before), then at most
/// `max_iters` bisection steps in that bracket, keeping the half whose ends have opposite
/// signs. The scan makes the rule safe for a gap that is not monotone (subtracting too much
/// of τ_f breaks the model, and the held-out loss can then rise faster than the forget loss):
/// the first crossing is found, and when there is none the scanned α with the largest gap is
/// chosen ([`Outcome::NoRoot`]). With `grid` = 1 this is plain bisection on [lo, hi]. When
/// the bisection does not meet the tolerance, the bracket point with the smallest |gap| is
/// chosen (ties: the smaller α). At most `grid + 1 + max_iters` evaluations; deterministic
/// for a deterministic `gap`. A non-finite gap is an error naming α.
pub fn bisect(
    mut gap: impl FnMut(f64) -> Result<f64>,
    lo: f64,
    hi: f64,
    grid: usize,
    max_iters: usize,
    tol: f64,
) -> Result<Calibration> {
    ensure!(
        lo.is_finite() && hi.is_finite() && lo < hi,
        "calibration range [{lo}, {hi}] is invalid (expected finite alpha_min < alpha_max)"
    );
    ensure!(grid >= 1, "calibration scan of {grid} intervals is invalid (expected at least 1)");
    ensure!(tol.is_finite() && tol >= 0.0, "calibration tolerance {tol} is invalid (expected a finite number ≥ 0)");
    let mut trace: Vec<(f64, f64)> = vec![];
    let mut eval = |a: f64, trace: &mut Vec<(f64, f64)>| -> Result<f64> {
        let g = gap(a).with_context(|| format!("calibration: evaluating alpha = {a}"))?;
        ensure!(g.is_finite(), "calibration: the loss gap at alpha = {a} is {g} (not finite)");
        trace.push((a, g));
        Ok(g)
    };
    let done = |alpha: f64, gap: f64, trace: Vec<(f64, f64)>, outcome| Ok(Calibration { alpha, gap, trace, outcome });
    let point = |k: usize| if k == grid { hi } else { lo + (hi - lo) * k as f64 / grid as f64 };
    let mut bracket = None;
    for k in 0..=grid {
        let a = point(k);
        let g = eval(a, &mut trace)?;
        if g.abs() <= tol {
            return done(a, g, trace, Outcome::Converged);
        }
        if g > 0.0 {
            if k == 0 {
                return done(a, g, trace, Outcome::AtLower);
            }
            bracket = Some((point(k - 1), a));
            break;
        }
    }
    let Some((mut a, mut b)) = bracket else {
        let &(alpha, g) =
            trace.iter().max_by(|x, y| x.1.total_cmp(&y.1).then(y.0.total_cmp(&x.0))).expect("at least one evaluation");
        return done(alpha, g, trace, Outcome::NoRoot);
    };
    let first = trace.len() - 2; // the bracket's two ends
    for _ in 0..max_iters {
        let m = 0.5 * (a + b);
        let g = eval(m, &mut trace)?;
        if g.abs() <= tol {
            return done(m, g, trace, Outcome::Converged);
        }
        if g < 0.0 {
            a = m;
        } else {
            b = m;
        }
    }
    let &(alpha, g) = trace[first..]
        .iter()
        .min_by(|x, y| x.1.abs().total_cmp(&y.1.abs()).then(x.0.total_cmp(&y.0)))
        .expect("the bracket's ends");
    done(alpha, g, trace, Outcome::IterationLimit)
}

/// Mean next-token loss per target token of `model` on `examples` (Σ NLL / Σ
/// target tokens, accumulated in f64), in batches of `batch_size`. Errors when there is no
/// target token.
pub fn mean_loss(
    model: &CausalLm,
    examples: &[Example],
    pad: u32,
    batch_size: usize,
    device: &candle_core::Device,
) -> Result<f64> {
    let (mut nll, mut count) = (0f64, 0f64);
    let refs: Vec<&Example> = examples.iter().collect();
    for (c, chunk) in refs.chunks(batch_size.max(1)).enumerate() {
        let ids = (c * batch_size.max(1)..c * batch_size.max(1) + chunk.len()).collect();
        let batch = collate(chunk, ids, pad, device)?;
        let (sum, n) = sequence_logprobs(model, &batch)?;
        nll -= sum.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?.iter().sum::<f64>();
        count += n.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?.iter().sum::<f64>();
    }
    if count <= 0.0 {
        bail!("no target tokens to score ({} examples)", examples.len());
    }
    Ok(nll / count)
}

/// (L̄_forget − L̄_held_out, tokens scored) for the checkpoint folder `dir`.
pub fn loss_gap(
    dir: &Path,
    forget: &[Example],
    held_out: &[Example],
    pad: u32,
    batch_size: usize,
    device: &candle_core::Device,
) -> Result<(f64, usize)> {
    let model = CausalLm::load(dir, device, false)?;
    let f = mean_loss(&model, forget, pad, batch_size, device).context("the forget set")?;
    let h = mean_loss(&model, held_out, pad, batch_size, device).context("the held-out set")?;
    let tokens = forget.iter().chain(held_out).map(|e| e.tokens.len()).sum();
    Ok((f - h, tokens))
}

/// The trainer settings of a repair: `base` with this lr, `steps` optimizer steps (epochs
/// enough to reach them over `n_examples`), a constant schedule without warm-up, and `seed`.
pub fn repair_config(base: &TrainConfig, lr: f64, steps: usize, n_examples: usize, seed: u64) -> TrainConfig {
    let mut cfg = base.clone();
    cfg.lr = lr;
    let per_epoch = n_examples.div_ceil((cfg.batch_size * cfg.grad_accum).max(1)).max(1);
    cfg.epochs = steps.div_ceil(per_epoch).max(1);
    cfg.max_steps = Some(steps);
    cfg.warmup_steps = Some(0);
    cfg.warmup_ratio = 0.0;
    cfg.schedule = LrSchedule::Constant;
    cfg.seed = seed;
    cfg
}

/// What a repair did: (step, loss) of each step and the tokens it processed.
pub struct Repaired {
    pub loss_curve: Vec<(usize, f64)>,
    pub tokens: usize,
    pub seconds: f64,
}

/// Fine-tunes the checkpoint at `src` on `retain` with `cfg` (next-token loss) and saves it to
/// `dst` (with `tokenizer_from`'s tokenizer files). Errors when the weights become non-finite.
#[allow(clippy::too_many_arguments)] // each is a distinct input of the one job; a struct would only rename them
pub fn repair(
    src: &Path,
    dst: &Path,
    tokenizer_from: &Path,
    retain: &[Example],
    cfg: &TrainConfig,
    pad: u32,
    device: &candle_core::Device,
    progress: Option<unlearn::ProgressFn>,
) -> Result<Repaired> {
    let t0 = std::time::Instant::now();
    let model = lm::train::load_for_training(src, device, cfg)?;
    let mut cb = |step: usize, total: usize, loss: f64| {
        if let Some(p) = progress {
            p("msa:repair", step, total, loss);
        }
    };
    let log =
        fit(&model, retain, None, cfg, &NextToken, pad, Some(&mut cb)).context("repair fine-tune on the retain set")?;
    unlearn::check_finite_weights(&model).context("repair fine-tune on the retain set")?;
    lm::checkpoint::save(&model, dst, Some(tokenizer_from))?;
    Ok(Repaired {
        loss_curve: log.steps.iter().map(|s| (s.step, s.loss)).collect(),
        tokens: log.tokens,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
