//! Model State Arithmetic (Rezaei, Saberi, Ravichander, Feizi 2025, "Model State Arithmetic
//! for Machine Unlearning").
//!
//! From a checkpoint θ_0 saved before the forget data was seen (by default the latest clean
//! one in the world's exposure ledger):
//!
//! 1. fine-tune θ_0 on the forget set → θ_1, the forget vector τ_f = θ_1 − θ_0;
//! 2. when β ≠ 0, fine-tune θ_0 on a seeded retain sample of about the forget set's size
//!    → θ_2, the retain vector τ_r = θ_2 − θ_0;
//! 3. θ = θ_D − α·τ_f + β·τ_r, written as ONE streaming [`model_state::combine`] over
//!    [(1, θ_D), (−α, θ_1), (β, θ_2), (α − β, θ_0)] with zero coefficients dropped (so
//!    α = β = 0 returns θ_D's tensors bit for bit).
//!
//! The fine-tuned θ_1 / θ_2 are cached under `ctx.cache`, keyed by a hash of (θ_0 path,
//! training examples, trainer configuration, seed), so a grid over α and β costs one
//! fine-tune per vector plus one arithmetic pass per point. The fine-tune follows the paper's
//! recipe (AdamW, weight decay 0.01, one warm-up epoch, linear decay) with defaults for the
//! testbed's small model (lr 1e-3, 5 epochs), to be tuned on a validation split.
//!
//! A θ_0 the ledger marks as having seen forget data is refused unless `allow_unclean = true`,
//! which labels the run `notes["ablation"] = "unclean-checkpoint"`. Task negation (Ilharco et
//! al. 2023) is [`arithmetic`] with θ_0 = θ_D.

use anyhow::{bail, ensure, Context as _, Result};
use lm::train::{Example, NextToken, Schedule, TrainConfig};
use lm::{CausalLm, LmConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;
use unlearn::{check_coefficient, check_positive, parse_params, CheckpointInfo, Context, RunReport, Unlearner};

/// Fallback learning rate and epochs when neither the method's table nor `[train]` sets them.
///
/// The testbed's chosen values were selected on the validation world, never on test metrics
/// (configs/study-validation.toml, 12 trials per method; rule and every setting's numbers in
/// reports/validation/selection.md) and are written into configs/tiny.toml and configs/study.toml:
/// MSA from the latest clean checkpoint with lr 1e-3, 5 epochs, α = 0.5, β = 0.5 (only 2 of the
/// 12 α/β points kept 90 % of θ_D's model utility: τ_f from a half-trained θ_0 carries general
/// skill as well as the forget facts).
pub const DEFAULT_LR: f64 = 1e-3;
pub const DEFAULT_EPOCHS: usize = 5;

/// Which checkpoint is θ_0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BasePoint {
    /// The latest checkpoint whose ledger entry is clean.
    LatestClean,
    /// The checkpoint saved at this step.
    Step(usize),
    /// `k` checkpoints before the latest clean one: `distance:0` is the latest clean checkpoint,
    /// `distance:2` with checkpoints 0..=4 clean is checkpoint 2 (every checkpoint before the
    /// first exposure is clean, so these are the clean ones counted back).
    Distance(usize),
    /// An explicit folder.
    Path(PathBuf),
}

impl BasePoint {
    /// Parses "latest-clean", "step:N", "distance:k" or "path:/some/folder".
    pub fn parse(s: &str) -> Result<BasePoint> {
        let bad = || format!("checkpoint = {s:?} is invalid (expected \"latest-clean\", \"step:N\", \"distance:k\" with k ≥ 0 or \"path:/folder\")");
        if s == "latest-clean" {
            return Ok(BasePoint::LatestClean);
        }
        let (kind, arg) = s.split_once(':').with_context(bad)?;
        match kind {
            "step" => Ok(BasePoint::Step(arg.trim().parse().ok().with_context(bad)?)),
            "distance" => {
                let k: usize = arg.trim().parse().ok().with_context(bad)?;
                Ok(BasePoint::Distance(k))
            }
            "path" if !arg.is_empty() => Ok(BasePoint::Path(PathBuf::from(arg))),
            _ => bail!(bad()),
        }
    }
}

/// The chosen θ_0: its folder and, when it is in the ledger, its step and cleanliness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub path: PathBuf,
    pub ledger: Option<CheckpointInfo>,
}

/// Resolves `spec` against the ledger's checkpoints (any order; sorted by step here).
pub fn select_base(spec: &BasePoint, checkpoints: &[CheckpointInfo]) -> Result<Base> {
    let mut cps: Vec<&CheckpointInfo> = checkpoints.iter().collect();
    cps.sort_by_key(|c| c.step);
    let found = |c: &CheckpointInfo| Base { path: c.path.clone(), ledger: Some(c.clone()) };
    let none = || {
        if cps.is_empty() {
            " (the world lists no checkpoints; give checkpoint = \"path:/folder\")".to_string()
        } else {
            format!(" (steps: {})", cps.iter().map(|c| format!("{}{}", c.step, if c.clean { "" } else { "*" })).collect::<Vec<_>>().join(", "))
                + "; * = unclean"
        }
    };
    match spec {
        BasePoint::LatestClean => match cps.iter().rev().find(|c| c.clean) {
            Some(c) => Ok(found(c)),
            None => bail!("no clean checkpoint in the ledger{}", none()),
        },
        BasePoint::Step(n) => match cps.iter().find(|c| c.step == *n) {
            Some(c) => Ok(found(c)),
            None => bail!("no checkpoint at step {n}{}", none()),
        },
        BasePoint::Distance(k) => {
            let first_unclean = cps.iter().position(|c| !c.clean).unwrap_or(cps.len());
            let clean: Vec<&&CheckpointInfo> = cps[..first_unclean].iter().filter(|c| c.clean).collect();
            match clean.len().checked_sub(*k + 1) {
                Some(i) => Ok(found(clean[i])),
                None => bail!(
                    "distance:{k} asks for the checkpoint {k} before the latest clean one, but there are {} clean checkpoints (distance:0..={}){}",
                    clean.len(),
                    clean.len().saturating_sub(1),
                    none()
                ),
            }
        }
        BasePoint::Path(p) => {
            let canon = p.canonicalize().ok();
            let ledger = cps.iter().find(|c| c.path == *p || (canon.is_some() && c.path.canonicalize().ok() == canon));
            Ok(Base { path: p.clone(), ledger: ledger.map(|c| (*c).clone()) })
        }
    }
}

/// Errors unless `base` has θ_D's architecture, vocabulary and tensor names/shapes/dtypes.
pub fn check_compatible(base: &Path, final_model: &Path) -> Result<()> {
    let both = || format!("θ_0 {} and θ_D {}", base.display(), final_model.display());
    let a = LmConfig::from_file(&base.join("config.json")).with_context(|| format!("θ_0 {}", base.display()))?;
    let b = LmConfig::from_file(&final_model.join("config.json")).with_context(|| format!("θ_D {}", final_model.display()))?;
    ensure!(a.architectures == b.architectures, "{} have different architectures: {:?} vs {:?}", both(), a.architectures, b.architectures);
    ensure!(a.vocab_size == b.vocab_size, "{} have different vocabularies: vocab_size {} vs {}", both(), a.vocab_size, b.vocab_size);
    let ta = model_state::tensor_names_and_shapes(base)?;
    let tb = model_state::tensor_names_and_shapes(final_model)?;
    for (name, (dt, shape)) in &ta {
        match tb.get(name) {
            None => bail!("{}: tensor {name} is in θ_0 but not in θ_D", both()),
            Some((dt2, shape2)) if dt2 != dt || shape2 != shape => {
                bail!("{}: tensor {name} is {dt:?} {shape:?} in θ_0 but {dt2:?} {shape2:?} in θ_D", both())
            }
            _ => {}
        }
    }
    if let Some(name) = tb.keys().find(|n| !ta.contains_key(*n)) {
        bail!("{}: tensor {name} is in θ_D but not in θ_0", both());
    }
    Ok(())
}

/// The fine-tuning recipe of the task vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct FineTune {
    pub lr: f64,
    pub epochs: usize,
}

impl FineTune {
    /// `base` with the paper's recipe: this lr and epochs, one warm-up epoch, linear decay.
    pub fn train_config(&self, base: &TrainConfig, n_examples: usize, seed: u64) -> TrainConfig {
        let mut cfg = base.clone();
        cfg.lr = self.lr;
        cfg.epochs = self.epochs;
        cfg.warmup_steps = Some(n_examples.div_ceil((cfg.batch_size * cfg.grad_accum).max(1)));
        cfg.schedule = Schedule::Linear;
        cfg.seed = seed;
        cfg
    }
}

/// A stable hash of examples (tokens and loss weights).
pub fn examples_hash(examples: &[Example]) -> String {
    let mut h = Sha256::new();
    h.update((examples.len() as u64).to_le_bytes());
    for e in examples {
        h.update((e.tokens.len() as u64).to_le_bytes());
        for t in &e.tokens {
            h.update(t.to_le_bytes());
        }
        for m in &e.loss_mask {
            h.update(m.to_bits().to_le_bytes());
        }
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The cache folder of θ_0 fine-tuned on `examples` with `cfg` (which includes the seed).
pub fn cache_dir(cache: &Path, role: &str, base: &Path, examples: &[Example], cfg: &TrainConfig) -> Result<PathBuf> {
    let base = base.canonicalize().with_context(|| format!("θ_0 {} does not exist", base.display()))?;
    let key = serde_json::json!({
        "version": 1,
        "role": role,
        "base": base.to_string_lossy(),
        "examples": examples_hash(examples),
        "train": cfg,
    });
    let digest = hex(&Sha256::digest(key.to_string().as_bytes()));
    Ok(cache.join(format!("msa-{role}-{}", &digest[..16])))
}

/// θ_0 fine-tuned on `examples`, from the cache or trained and cached (atomically).
/// Returns the folder and whether it was a cache hit.
fn fine_tuned(ctx: &Context, role: &str, base: &Path, examples: &[Example], cfg: &TrainConfig, report: &mut RunReport) -> Result<PathBuf> {
    let dir = cache_dir(ctx.cache, role, base, examples, cfg)?;
    if lm::checkpoint::is_complete(&dir) {
        report.notes.insert(format!("{role}_cache"), "hit".into());
        return Ok(dir);
    }
    let t0 = Instant::now();
    let model = CausalLm::load(base, ctx.device, true)?;
    let stage = format!("msa:finetune-{role}");
    let mut cb = |step: usize, total: usize, loss: f64| {
        if let Some(p) = ctx.progress {
            p(&stage, step, total, loss);
        }
    };
    let log = lm::train::fit(&model, examples, None, cfg, &NextToken, ctx.pad, Some(&mut cb))
        .with_context(|| format!("fine-tuning θ_0 {} on the {role} set", base.display()))?;
    unlearn::check_finite_weights(&model).with_context(|| format!("fine-tuning θ_0 on the {role} set"))?;
    lm::checkpoint::save(&model, &dir, Some(base))?;
    report.loss_curve.extend(log.steps.iter().map(|s| (s.step, s.loss)));
    report.timings.insert(format!("finetune_{role}"), t0.elapsed().as_secs_f64());
    report.notes.insert(format!("{role}_cache"), "miss".into());
    Ok(dir)
}

/// A seeded sample of `n` retain examples (all of them when there are fewer), in data order.
pub fn retain_sample(retain: &[Example], n: usize, seed: u64) -> Vec<Example> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4d53_415f_7265_7461); // "MSA_reta"
    let mut idx = rand::seq::index::sample(&mut rng, retain.len(), n.min(retain.len())).into_vec();
    idx.sort_unstable();
    idx.into_iter().map(|i| retain[i].clone()).collect()
}

/// The arithmetic shared by MSA and task negation: θ = θ_D − α·(θ_1 − θ_0) + β·(θ_2 − θ_0),
/// with θ_1 / θ_2 = `base` fine-tuned on the forget set / a retain sample of `retain_size`
/// examples (default: the forget set's size). Errors are prefixed with `method`; on error
/// nothing is left at `ctx.out`.
pub fn arithmetic(
    method: &str,
    ctx: &Context,
    base: &Path,
    alpha: f64,
    beta: f64,
    ft: &FineTune,
    retain_size: Option<usize>,
) -> Result<RunReport> {
    let run = || -> Result<RunReport> {
        unlearn::clear_out(ctx.out)?;
        check_coefficient(method, "alpha", alpha)?;
        check_coefficient(method, "beta", beta)?;
        unlearn::check_has_targets(method, "forget", ctx.forget)?;
        check_compatible(base, ctx.final_model)?;
        let mut report = RunReport { out: ctx.out.to_path_buf(), ..Default::default() };
        report.notes.insert("base".into(), base.display().to_string().into());
        let mut terms: Vec<(f64, PathBuf)> = vec![(1.0, ctx.final_model.to_path_buf())];
        if alpha != 0.0 {
            let cfg = ft.train_config(&ctx.train, ctx.forget.len(), ctx.seed);
            terms.push((-alpha, fine_tuned(ctx, "forget", base, ctx.forget, &cfg, &mut report)?));
        }
        if beta != 0.0 {
            let n = retain_size.unwrap_or(ctx.forget.len());
            ensure!(n > 0, "method {method}: retain_size must be positive when beta ≠ 0");
            let sample = retain_sample(ctx.retain, n, ctx.seed);
            unlearn::check_has_targets(method, "retain", &sample)
                .with_context(|| format!("method {method}: beta = {beta} needs retain examples"))?;
            report.notes.insert("retain_sample".into(), sample.len().into());
            let cfg = ft.train_config(&ctx.train, sample.len(), ctx.seed);
            terms.push((beta, fine_tuned(ctx, "retain", base, &sample, &cfg, &mut report)?));
        }
        if alpha - beta != 0.0 {
            terms.push((alpha - beta, base.to_path_buf()));
        }
        report.notes.insert(
            "terms".into(),
            terms.iter().map(|(c, p)| serde_json::json!([c, p.display().to_string()])).collect::<Vec<_>>().into(),
        );
        let t0 = Instant::now();
        let opts = model_state::CombineOptions { overwrite: true, ..Default::default() };
        let combined = model_state::combine(&terms, ctx.out, &opts)?;
        report.timings.insert("combine".into(), t0.elapsed().as_secs_f64());
        report.notes.insert("combine_bytes_read".into(), combined.bytes_read.into());
        Ok(report)
    };
    let result = run().with_context(|| format!("method {method}: unlearning {} failed", ctx.final_model.display()));
    if result.is_err() {
        let _ = unlearn::clear_out(ctx.out);
    }
    result
}

fn default_alpha() -> f64 {
    1.0
}
fn default_checkpoint() -> String {
    "latest-clean".into()
}
fn default_lr() -> f64 {
    DEFAULT_LR
}
fn default_epochs() -> usize {
    DEFAULT_EPOCHS
}

/// Parameters of `msa`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsaParams {
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub beta: f64,
    /// "latest-clean", "step:N", "distance:k" or "path:/folder".
    #[serde(default = "default_checkpoint")]
    pub checkpoint: String,
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Accept a θ_0 the ledger marks as having seen forget data (an ablation).
    #[serde(default)]
    pub allow_unclean: bool,
    /// Size of the retain sample for τ_r (default: the forget set's size).
    #[serde(default)]
    pub retain_size: Option<usize>,
}

pub struct Msa {
    pub params: MsaParams,
    pub base: BasePoint,
}

impl Msa {
    pub const NAME: &'static str = "msa";

    pub fn from_params(params: &toml::Table) -> Result<Msa> {
        let p: MsaParams = parse_params(Self::NAME, params)?;
        check_coefficient(Self::NAME, "alpha", p.alpha)?;
        check_coefficient(Self::NAME, "beta", p.beta)?;
        check_positive(Self::NAME, "lr", p.lr)?;
        let base = BasePoint::parse(&p.checkpoint).with_context(|| format!("method {}", Self::NAME))?;
        Ok(Msa { params: p, base })
    }
}

impl Unlearner for Msa {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, ctx: &Context) -> Result<RunReport> {
        let base = select_base(&self.base, ctx.checkpoints)
            .with_context(|| format!("method {}: checkpoint = {:?}", Self::NAME, self.params.checkpoint))?;
        let unclean = base.ledger.as_ref().is_some_and(|c| !c.clean);
        if unclean && !self.params.allow_unclean {
            let c = base.ledger.as_ref().map(|c| c.step).unwrap_or_default();
            unlearn::clear_out(ctx.out)?;
            bail!(
                "method {}: checkpoint = {:?} selects step {c} ({}), which the exposure ledger marks as having seen forget data; \
                 set allow_unclean = true to run this as a labelled ablation",
                Self::NAME,
                self.params.checkpoint,
                base.path.display()
            );
        }
        let ft = FineTune { lr: self.params.lr, epochs: self.params.epochs };
        let mut report = arithmetic(Self::NAME, ctx, &base.path, self.params.alpha, self.params.beta, &ft, self.params.retain_size)?;
        if let Some(c) = &base.ledger {
            report.notes.insert("base_step".into(), c.step.into());
            report.notes.insert("base_clean".into(), c.clean.into());
        }
        if unclean {
            report.notes.insert("ablation".into(), "unclean-checkpoint".into());
        }
        Ok(report)
    }
}
