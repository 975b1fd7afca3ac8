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
//! recipe (AdamW, weight decay 0.01, one warm-up epoch, linear decay) at the trainer's learning
//! rate and epochs ([`unlearn::Context::train`]: the runner's `[train]` with the method table's
//! overrides; [`FineTune::of`]). The testbed's values were selected on the validation world,
//! never on test metrics (configs/study-validation.toml, 12 trials per method; rule and every
//! setting's numbers in reports/validation/selection.md) and are written into
//! configs/tiny.toml and configs/study.toml.
//!
//! A θ_0 the ledger marks as having seen forget data is refused unless `allow_unclean = true`,
//! which labels the run `notes["ablation"] = "unclean-checkpoint"`. Task negation (Ilharco et
//! al. 2023) is [`arithmetic`] with θ_0 = θ_D.
//!
//! Variants (issue 19; every one off by default, and the defaults write the bytes of the
//! formula above): `variant = "orthogonal"` (τ_f minus its projection on τ_r, per tensor),
//! `alpha_scaling = "norm_share"` (α_t = α·√T·‖τ_f‖_t/‖τ_f‖), `sparsity = f` (TIES-style trim
//! keeping the largest ⌈f·n⌉ entries of each tensor of τ_f) and `ensemble = [...]` (τ_f and τ_r
//! averaged over several θ_0, each fine-tune cached as above). Formulas, order and passes are
//! in [`variants`]. Each run records its cost in `RunReport::timings` under `count/…` keys
//! (fine-tunes, fine-tuning tokens, streaming arithmetic passes; see [`arithmetic_with`]).

use anyhow::{bail, ensure, Context as _, Result};
use lm::train::{Example, LrSchedule, NextToken, TrainConfig};
use lm::LmConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;
use unlearn::{check_coefficient, check_positive, parse_params, CheckpointInfo, Context, RunReport, Unlearner};

pub mod calibrate;
pub mod variants;
pub use calibrate::{bisect, Alpha, Calibration, Outcome};
pub use variants::{AlphaScaling, Member, Shaping, Variant};

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
        let bad = || {
            format!("checkpoint = {s:?} is invalid (expected \"latest-clean\", \"step:N\", \"distance:k\" with k ≥ 0 or \"path:/folder\")")
        };
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
            format!(
                " (steps: {})",
                cps.iter()
                    .map(|c| format!("{}{}", c.step, if c.clean { "" } else { "*" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            ) + "; * = unclean"
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
    let b = LmConfig::from_file(&final_model.join("config.json"))
        .with_context(|| format!("θ_D {}", final_model.display()))?;
    ensure!(
        a.architectures == b.architectures,
        "{} have different architectures: {:?} vs {:?}",
        both(),
        a.architectures,
        b.architectures
    );
    ensure!(
        a.vocab_size == b.vocab_size,
        "{} have different vocabularies: vocab_size {} vs {}",
        both(),
        a.vocab_size,
        b.vocab_size
    );
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
    /// The trainer's learning rate and epochs (what the runner resolved for the cell).
    pub fn of(train: &TrainConfig) -> FineTune {
        FineTune { lr: train.lr, epochs: train.epochs }
    }

    /// `base` with the paper's recipe: this lr and epochs, one warm-up epoch, linear decay.
    pub fn train_config(&self, base: &TrainConfig, n_examples: usize, seed: u64) -> TrainConfig {
        let mut cfg = base.clone();
        cfg.lr = self.lr;
        cfg.epochs = self.epochs;
        cfg.warmup_steps = Some(n_examples.div_ceil((cfg.batch_size * cfg.grad_accum).max(1)));
        cfg.schedule = LrSchedule::Linear;
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

/// One fine-tune of θ_0: its folder, whether it came from the cache, and its cost.
struct Tuned {
    dir: PathBuf,
    hit: bool,
    /// Seconds spent training and saving (0 on a cache hit).
    seconds: f64,
    /// Tokens the fine-tune processes (see [`finetune_tokens`]).
    tokens: usize,
}

/// θ_0 fine-tuned on `examples`, from the cache or trained and cached (atomically). A
/// training run's loss curve is appended to `report`.
fn fine_tuned(
    ctx: &Context,
    role: &str,
    base: &Path,
    examples: &[Example],
    cfg: &TrainConfig,
    report: &mut RunReport,
) -> Result<Tuned> {
    let dir = cache_dir(ctx.cache, role, base, examples, cfg)?;
    // with LoRA the cache holds the adapter (τ = s·B·A), not a dense θ_1
    let complete = if cfg.lora.is_some() { lm::lora::is_adapter(&dir) } else { lm::checkpoint::is_complete(&dir) };
    if complete {
        return Ok(Tuned { dir, hit: true, seconds: 0.0, tokens: finetune_tokens(examples, cfg) });
    }
    let t0 = Instant::now();
    let model = lm::train::load_for_training(base, ctx.device, cfg)?;
    let stage = format!("msa:finetune-{role}");
    let mut cb = |step: usize, total: usize, loss: f64| {
        if let Some(p) = ctx.progress {
            p(&stage, step, total, loss);
        }
    };
    let log = lm::train::fit(&model, examples, None, cfg, &NextToken, ctx.pad, Some(&mut cb))
        .with_context(|| format!("fine-tuning θ_0 {} on the {role} set", base.display()))?;
    unlearn::check_finite_weights(&model).with_context(|| format!("fine-tuning θ_0 on the {role} set"))?;
    match &model.params.lora {
        Some(adapters) => lm::lora::save_adapter(adapters, &dir, base)?,
        None => lm::checkpoint::save(&model, &dir, Some(base))?,
    }
    report.loss_curve.extend(log.steps.iter().map(|s| (s.step, s.loss)));
    Ok(Tuned { dir, hit: false, seconds: t0.elapsed().as_secs_f64(), tokens: log.tokens })
}

/// The tokens `lm::train::fit` processes fine-tuning on `examples` with `cfg` (each example's
/// full length, every time it is in a batch; `max_steps` can end the last epoch early, and
/// then the epoch's shuffle, seeded by `cfg.seed` as in `fit`, decides which examples were
/// seen). Used for compute accounting when a fine-tune comes from the cache; a fresh
/// fine-tune reports `fit`'s own count, and a test checks the two agree.
pub fn finetune_tokens(examples: &[Example], cfg: &TrainConfig) -> usize {
    use rand::seq::SliceRandom;
    let n = examples.len();
    let per_step = (cfg.batch_size * cfg.grad_accum).max(1);
    let steps_per_epoch = n.div_ceil(per_step);
    if steps_per_epoch == 0 {
        return 0;
    }
    let mut total = steps_per_epoch * cfg.epochs;
    if let Some(m) = cfg.max_steps {
        total = total.min(m);
    }
    let per_epoch: usize = examples.iter().map(|e| e.tokens.len()).sum();
    let (full, rest) = (total / steps_per_epoch, total % steps_per_epoch);
    let mut tokens = full * per_epoch;
    if rest > 0 {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut order: Vec<usize> = vec![];
        for _ in 0..=full {
            order = (0..n).collect();
            order.shuffle(&mut rng);
        }
        tokens += order.chunks(per_step).take(rest).flatten().map(|&i| examples[i].tokens.len()).sum::<usize>();
    }
    tokens
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
/// nothing is left at `ctx.out`. [`arithmetic_with`] with one base and plain shaping.
pub fn arithmetic(
    method: &str,
    ctx: &Context,
    base: &Path,
    alpha: f64,
    beta: f64,
    ft: &FineTune,
    retain_size: Option<usize>,
) -> Result<RunReport> {
    arithmetic_with(method, ctx, &[base.to_path_buf()], alpha, beta, ft, retain_size, &Shaping::default())
}

/// MSA with the variants of [`variants`]: τ_f and τ_r averaged over the base points `bases`
/// (each fine-tuned and cached as in [`arithmetic`]; the same retain sample for all), τ_f
/// shaped by `shaping`, then θ = θ_D − α_t·τ_f'' + β·τ_r.
///
/// Compute accounting goes into the report's `timings` map (the only numeric map of
/// [`RunReport`]), under `count/…` keys that are counts, not seconds:
/// `count/finetunes`, `count/finetune_tokens_forget`, `count/finetune_tokens_retain`,
/// `count/finetune_tokens` (their sum) and `count/arithmetic_passes`. Fine-tunes are counted
/// whether trained now or read from the cache (a cache hit is a saving of the sweep, not of
/// the method; the `*_cache` notes say which).
#[allow(clippy::too_many_arguments)]
pub fn arithmetic_with(
    method: &str,
    ctx: &Context,
    bases: &[PathBuf],
    alpha: f64,
    beta: f64,
    ft: &FineTune,
    retain_size: Option<usize>,
    shaping: &Shaping,
) -> Result<RunReport> {
    let run = || -> Result<RunReport> {
        unlearn::clear_out(ctx.out)?;
        check_coefficient(method, "alpha", alpha)?;
        check_coefficient(method, "beta", beta)?;
        shaping.check(method)?;
        ensure!(!bases.is_empty(), "method {method}: no base checkpoint");
        unlearn::check_has_targets(method, "forget", ctx.forget)?;
        for base in bases {
            check_compatible(base, ctx.final_model)?;
        }
        let single = bases.len() == 1;
        let mut report = RunReport { out: ctx.out.to_path_buf(), ..Default::default() };
        let paths = |ps: &[PathBuf]| -> serde_json::Value {
            if single {
                ps[0].display().to_string().into()
            } else {
                ps.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().into()
            }
        };
        report.notes.insert("base".into(), paths(bases));
        let orthogonal = alpha != 0.0 && shaping.variant == Variant::Orthogonal;
        let mut members: Vec<Member> =
            bases.iter().map(|b| Member { base: b.clone(), forget: None, retain: None }).collect();
        let mut finetunes = 0usize;
        let mut tokens: BTreeMap<&str, usize> = BTreeMap::from([("forget", 0), ("retain", 0)]);
        let mut tune = |role: &'static str, examples: &[Example], report: &mut RunReport| -> Result<Vec<PathBuf>> {
            let cfg = ft.train_config(&ctx.train, examples.len(), ctx.seed);
            let mut dirs = vec![];
            let (mut hits, mut seconds, mut trained) = (vec![], 0.0, false);
            for base in bases {
                let t = fine_tuned(ctx, role, base, examples, &cfg, report)?;
                finetunes += 1;
                *tokens.get_mut(role).expect("role") += t.tokens;
                hits.push(serde_json::Value::from(if t.hit { "hit" } else { "miss" }));
                seconds += t.seconds;
                trained |= !t.hit;
                dirs.push(t.dir);
            }
            let note = if single { hits.pop().expect("one") } else { hits.into() };
            report.notes.insert(format!("{role}_cache"), note);
            if trained {
                report.timings.insert(format!("finetune_{role}"), seconds);
            }
            Ok(dirs)
        };
        if alpha != 0.0 {
            for (m, dir) in members.iter_mut().zip(tune("forget", ctx.forget, &mut report)?) {
                m.forget = Some(dir);
            }
        }
        if beta != 0.0 || orthogonal {
            let n = retain_size.unwrap_or(ctx.forget.len());
            ensure!(n > 0, "method {method}: retain_size must be positive when beta ≠ 0 or variant = \"orthogonal\"");
            let sample = retain_sample(ctx.retain, n, ctx.seed);
            let why = if beta != 0.0 { format!("beta = {beta}") } else { "variant = \"orthogonal\"".to_string() };
            unlearn::check_has_targets(method, "retain", &sample)
                .with_context(|| format!("method {method}: {why} needs retain examples"))?;
            report.notes.insert("retain_sample".into(), sample.len().into());
            for (m, dir) in members.iter_mut().zip(tune("retain", &sample, &mut report)?) {
                m.retain = Some(dir);
            }
        }
        let t0 = Instant::now();
        let applied = variants::apply(ctx.final_model, &members, alpha, beta, shaping, ctx.out)?;
        report.timings.insert("combine".into(), t0.elapsed().as_secs_f64());
        match &applied.terms {
            Some(terms) => {
                report.notes.insert(
                    "terms".into(),
                    terms
                        .iter()
                        .map(|(c, p)| serde_json::json!([c, p.display().to_string()]))
                        .collect::<Vec<_>>()
                        .into(),
                );
            }
            None => {
                let shape = serde_json::json!({
                    "variant": shaping.variant.name(),
                    "alpha_scaling": shaping.alpha_scaling.name(),
                    "sparsity": shaping.sparsity,
                    "projection_removed": applied.projection_removed,
                    "trim_kept_norm": applied.trim_kept_norm,
                    "alpha_range": applied.alpha_range.map(|(lo, hi)| [lo, hi]),
                });
                report.notes.insert("shaping".into(), shape);
                report.notes.insert(
                    "forget_models".into(),
                    paths(&members.iter().filter_map(|m| m.forget.clone()).collect::<Vec<_>>()),
                );
                if let Some(r) = members.iter().map(|m| m.retain.clone()).collect::<Option<Vec<_>>>() {
                    report.notes.insert("retain_models".into(), paths(&r));
                }
            }
        }
        if !applied.low_rank_terms.is_empty() {
            report.notes.insert(
                "lora_terms".into(),
                applied
                    .low_rank_terms
                    .iter()
                    .map(|(c, p)| serde_json::json!([c, p.display().to_string()]))
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        report.notes.insert("combine_bytes_read".into(), applied.bytes_read.into());
        let count = |k: &str, v: usize| (format!("count/{k}"), v as f64);
        report.timings.extend([
            count("finetunes", finetunes),
            count("finetune_tokens_forget", tokens["forget"]),
            count("finetune_tokens_retain", tokens["retain"]),
            count("finetune_tokens", tokens["forget"] + tokens["retain"]),
            count("arithmetic_passes", applied.passes),
        ]);
        Ok(report)
    };
    let result = run().with_context(|| format!("method {method}: unlearning {} failed", ctx.final_model.display()));
    if result.is_err() {
        let _ = unlearn::clear_out(ctx.out);
    }
    result
}

fn default_alpha_max() -> f64 {
    4.0
}
fn default_calibrate_iters() -> usize {
    8
}
fn default_calibrate_grid() -> usize {
    8
}
fn default_calibrate_tol() -> f64 {
    0.01
}
fn default_repair_lr() -> f64 {
    1e-4
}
fn default_checkpoint() -> String {
    "latest-clean".into()
}
fn default_variant() -> String {
    "plain".into()
}
fn default_alpha_scaling() -> String {
    "uniform".into()
}
fn default_sparsity() -> f64 {
    1.0
}

/// `ensemble` as written: an array of selectors, or one string of selectors separated by `+`
/// or `,` (the form a sweep config can give, where every array is a grid axis; `+` keeps the
/// sweep's cell keys, which separate parameters with `,`, readable).
fn selectors<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Vec<String>>, D::Error> {
    use serde::de::Error;
    let bad = || {
        D::Error::custom(
            "ensemble must be a string of checkpoint selectors separated by '+' (or ',') or an array of selectors",
        )
    };
    match toml::Value::deserialize(d)? {
        toml::Value::String(s) => Ok(Some(s.split(['+', ',']).map(|p| p.trim().to_string()).collect())),
        toml::Value::Array(items) => items
            .into_iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(bad()),
    }
}

/// Parameters of `msa`. The defaults are MSA as published (and as before issue 19, bit for bit).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsaParams {
    /// A number, or "calibrated": chosen per run by bisection on [alpha_min, alpha_max] so that
    /// the forget loss matches the held-out loss (see [`calibrate`]).
    #[serde(default)]
    pub alpha: Alpha,
    #[serde(default)]
    pub beta: f64,
    /// "latest-clean", "step:N", "distance:k" or "path:/folder".
    #[serde(default = "default_checkpoint")]
    pub checkpoint: String,
    /// Accept a θ_0 the ledger marks as having seen forget data (an ablation).
    #[serde(default)]
    pub allow_unclean: bool,
    /// Size of the retain sample for τ_r (default: the forget set's size).
    #[serde(default)]
    pub retain_size: Option<usize>,
    /// "plain", or "orthogonal": τ_f minus its projection on τ_r, tensor by tensor (the retain
    /// vector is then fine-tuned even when beta = 0). See [`variants`].
    #[serde(default = "default_variant")]
    pub variant: String,
    /// "uniform" (one α), or "norm_share": α_t = α·√T·‖τ_f‖_t/‖τ_f‖ per tensor (mean α_t² = α²).
    #[serde(default = "default_alpha_scaling")]
    pub alpha_scaling: String,
    /// Fraction 0 < f ≤ 1 of each tensor's τ_f entries kept (largest |·|; 1 = dense).
    #[serde(default = "default_sparsity")]
    pub sparsity: f64,
    /// Several θ_0 (selectors as in `checkpoint`): τ_f and τ_r are averaged over them. An
    /// array, or one string with the selectors separated by `+` or `,` (in a sweep config,
    /// where an array is a grid axis: `ensemble = "distance:0+distance:1"`). Excludes
    /// `checkpoint`.
    #[serde(default, deserialize_with = "selectors")]
    pub ensemble: Option<Vec<String>>,
    /// Calibration range and budget (only with alpha = "calibrated"): α ∈ [alpha_min,
    /// alpha_max], scanned at calibrate_grid + 1 points for the first crossing, then at most
    /// calibrate_iters bisection steps in it; stop when
    /// |L̄_forget − L̄_held_out| ≤ calibrate_tol (nats per token).
    #[serde(default)]
    pub alpha_min: f64,
    #[serde(default = "default_alpha_max")]
    pub alpha_max: f64,
    #[serde(default = "default_calibrate_iters")]
    pub calibrate_iters: usize,
    /// Intervals of the upward scan before the bisection (1 = plain bisection on the range).
    #[serde(default = "default_calibrate_grid")]
    pub calibrate_grid: usize,
    #[serde(default = "default_calibrate_tol")]
    pub calibrate_tol: f64,
    /// Optimizer steps of retain-only fine-tuning after the arithmetic (0 = none), at
    /// repair_lr with a constant schedule (see [`calibrate::repair`]).
    #[serde(default)]
    pub repair_steps: usize,
    #[serde(default = "default_repair_lr")]
    pub repair_lr: f64,
}

/// The calibration parameters, which only `alpha = "calibrated"` reads.
const CALIBRATION_PARAMS: [&str; 5] = ["alpha_min", "alpha_max", "calibrate_iters", "calibrate_grid", "calibrate_tol"];

/// The most scan intervals accepted (each is one combine and two loss passes).
pub const MAX_CALIBRATE_GRID: usize = 64;

/// The most bisection steps accepted (2⁻³⁰ of the range is far below any useful resolution).
pub const MAX_CALIBRATE_ITERS: usize = 30;

pub struct Msa {
    pub params: MsaParams,
    /// θ_0, from `checkpoint` (the first of `ensemble` when that is given).
    pub base: BasePoint,
    /// Every θ_0 with the selector it came from: `checkpoint` alone, or the `ensemble`.
    pub bases: Vec<(String, BasePoint)>,
    pub shaping: Shaping,
}

impl Msa {
    pub const NAME: &'static str = "msa";

    pub fn from_params(params: &toml::Table) -> Result<Msa> {
        let p: MsaParams = parse_params(Self::NAME, params)?;
        let name = Self::NAME;
        match p.alpha {
            Alpha::Fixed(a) => {
                check_coefficient(name, "alpha", a)?;
                if let Some(k) = CALIBRATION_PARAMS.iter().find(|k| params.contains_key(**k)) {
                    bail!("method {name}: parameter {k} only applies to alpha = \"calibrated\" (alpha is {a})");
                }
            }
            Alpha::Calibrated => {
                check_coefficient(name, "alpha_min", p.alpha_min)?;
                check_coefficient(name, "alpha_max", p.alpha_max)?;
                ensure!(
                    p.alpha_min < p.alpha_max,
                    "method {name}: parameters alpha_min = {} and alpha_max = {} are invalid (expected alpha_min < alpha_max)",
                    p.alpha_min,
                    p.alpha_max
                );
                ensure!(
                    p.calibrate_iters <= MAX_CALIBRATE_ITERS,
                    "method {name}: parameter calibrate_iters = {} is invalid (expected at most {MAX_CALIBRATE_ITERS})",
                    p.calibrate_iters
                );
                ensure!(
                    (1..=MAX_CALIBRATE_GRID).contains(&p.calibrate_grid),
                    "method {name}: parameter calibrate_grid = {} is invalid (expected 1..={MAX_CALIBRATE_GRID})",
                    p.calibrate_grid
                );
                check_positive(name, "calibrate_tol", p.calibrate_tol)?;
            }
        }
        check_coefficient(name, "beta", p.beta)?;
        check_positive(name, "repair_lr", p.repair_lr)?;
        if params.contains_key("repair_lr") && p.repair_steps == 0 {
            bail!("method {name}: parameter repair_lr is given but repair_steps is 0 (set repair_steps = N to repair)");
        }
        let variant = Variant::parse(&p.variant)
            .with_context(|| format!("method {name}: parameter variant = {:?} is invalid", p.variant))?;
        let alpha_scaling = AlphaScaling::parse(&p.alpha_scaling)
            .with_context(|| format!("method {name}: parameter alpha_scaling = {:?} is invalid", p.alpha_scaling))?;
        variants::check_sparsity(name, p.sparsity)?;
        let shaping = Shaping { variant, alpha_scaling, sparsity: p.sparsity };
        let bases = match &p.ensemble {
            None => {
                vec![(p.checkpoint.clone(), BasePoint::parse(&p.checkpoint).with_context(|| format!("method {name}"))?)]
            }
            Some(_) if params.contains_key("checkpoint") => bail!(
                "method {name}: parameters ensemble and checkpoint are both given; ensemble lists every θ_0 \
                 (e.g. ensemble = \"distance:0+distance:1\"), so drop checkpoint"
            ),
            Some(list) => {
                ensure!(
                    !list.is_empty(),
                    "method {name}: parameter ensemble is empty (list at least one checkpoint selector)"
                );
                let mut bases = vec![];
                for (i, sel) in list.iter().enumerate() {
                    let b = BasePoint::parse(sel)
                        .with_context(|| format!("method {name}: parameter ensemble, entry {} ({sel:?})", i + 1))?;
                    if let Some((first, _)) = bases.iter().find(|(_, q)| *q == b) {
                        bail!("method {name}: parameter ensemble lists {first:?} twice");
                    }
                    bases.push((sel.clone(), b));
                }
                bases
            }
        };
        Ok(Msa { base: bases[0].1.clone(), bases, shaping, params: p })
    }
}

/// The registry entry (`methods::SPECS`). θ = θ_D − α·τ_f + β·τ_r with τ from checkpoint θ_0
/// ("latest-clean", "distance:k", "step:N" or "path:DIR"); variant / alpha_scaling / sparsity /
/// ensemble shape τ; alpha = "calibrated" searches α in [alpha_min, alpha_max] matching the
/// forget loss to the held-out loss; repair_*: a retain fine-tune after the arithmetic.
pub const SPEC: unlearn::MethodSpec = unlearn::MethodSpec {
    kind: Msa::NAME,
    params: &[
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
    build: |p| Ok(Box::new(Msa::from_params(p)?)),
    retain_batch: false,
    frozen_reference: false,
};

impl Unlearner for Msa {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn run(&self, ctx: &Context) -> Result<RunReport> {
        let name = Self::NAME;
        let ensemble = self.params.ensemble.is_some();
        let mut chosen: Vec<Base> = vec![];
        for (sel, spec) in &self.bases {
            let key = if ensemble { "ensemble entry" } else { "checkpoint =" };
            let base = select_base(spec, ctx.checkpoints).with_context(|| format!("method {name}: {key} {sel:?}"))?;
            if let Some(c) = base.ledger.as_ref().filter(|c| !c.clean) {
                if !self.params.allow_unclean {
                    unlearn::clear_out(ctx.out)?;
                    bail!(
                        "method {name}: {key} {sel:?} selects step {} ({}), which the exposure ledger marks as having seen forget data; \
                         set allow_unclean = true to run this as a labelled ablation",
                        c.step,
                        base.path.display()
                    );
                }
            }
            if let Some((other, _)) = self.bases.iter().zip(&chosen).find(|(_, b)| same_folder(&b.path, &base.path)) {
                unlearn::clear_out(ctx.out)?;
                bail!(
                    "method {name}: ensemble entries {:?} and {sel:?} select the same checkpoint {}",
                    other.0,
                    base.path.display()
                );
            }
            chosen.push(base);
        }
        let unclean = chosen.iter().any(|b| b.ledger.as_ref().is_some_and(|c| !c.clean));
        let ft = FineTune::of(&ctx.train);
        let paths: Vec<PathBuf> = chosen.iter().map(|b| b.path.clone()).collect();
        let mut report = self.arithmetic_calibrated_repaired(ctx, &paths, &ft)?;
        if ensemble {
            let steps: Vec<serde_json::Value> =
                chosen.iter().map(|b| b.ledger.as_ref().map(|c| c.step).into()).collect();
            let clean: Vec<serde_json::Value> =
                chosen.iter().map(|b| b.ledger.as_ref().map(|c| c.clean).into()).collect();
            report.notes.insert("base_step".into(), steps.into());
            report.notes.insert("base_clean".into(), clean.into());
        } else if let Some(c) = &chosen[0].ledger {
            report.notes.insert("base_step".into(), c.step.into());
            report.notes.insert("base_clean".into(), c.clean.into());
        }
        if unclean {
            report.notes.insert("ablation".into(), "unclean-checkpoint".into());
        }
        Ok(report)
    }
}

impl Msa {
    /// [`arithmetic_with`] at the fixed or calibrated α, then the repair when asked for.
    /// Intermediate folders are siblings of `ctx.out` (`….calibrate`, `….arith`), removed
    /// afterwards; on error nothing is left at `ctx.out`.
    fn arithmetic_calibrated_repaired(&self, ctx: &Context, bases: &[PathBuf], ft: &FineTune) -> Result<RunReport> {
        let name = Self::NAME;
        let p = &self.params;
        let sibling = |suffix: &str| {
            let mut s = ctx.out.as_os_str().to_owned();
            s.push(suffix);
            PathBuf::from(s)
        };
        let (probe_dir, arith_dir) = (sibling(".calibrate"), sibling(".arith"));
        let run = || -> Result<RunReport> {
            unlearn::clear_out(ctx.out)?;
            let t0 = Instant::now();
            let (alpha, calibration) = match p.alpha {
                Alpha::Fixed(a) => (a, None),
                Alpha::Calibrated => {
                    unlearn::check_has_targets(name, "held-out", ctx.held_out).with_context(|| {
                        format!("method {name}: alpha = \"calibrated\" matches the forget loss to the held-out loss and needs held-out examples")
                    })?;
                    let probe = with_out(ctx, &probe_dir);
                    let (mut passes, mut tokens, mut evals) = (0usize, 0usize, 0usize);
                    let cal = bisect(
                        |a| {
                            let r = arithmetic_with(name, &probe, bases, a, p.beta, ft, p.retain_size, &self.shaping)?;
                            passes += r.timings.get("count/arithmetic_passes").copied().unwrap_or(0.0) as usize;
                            let (gap, n) = calibrate::loss_gap(
                                &probe_dir,
                                ctx.forget,
                                ctx.held_out,
                                ctx.pad,
                                ctx.train.batch_size,
                                ctx.device,
                            )?;
                            tokens += n;
                            evals += 1;
                            if let Some(prog) = ctx.progress {
                                prog("msa:calibrate", evals, p.calibrate_grid + 1 + p.calibrate_iters, gap);
                            }
                            Ok(gap)
                        },
                        p.alpha_min,
                        p.alpha_max,
                        p.calibrate_grid,
                        p.calibrate_iters,
                        p.calibrate_tol,
                    )?;
                    unlearn::clear_out(&probe_dir)?;
                    (cal.alpha, Some((cal, passes, tokens, t0.elapsed().as_secs_f64())))
                }
            };
            let repairing = p.repair_steps > 0;
            let arith_ctx = with_out(ctx, if repairing { &arith_dir } else { ctx.out });
            let mut report = arithmetic_with(name, &arith_ctx, bases, alpha, p.beta, ft, p.retain_size, &self.shaping)?;
            report.out = ctx.out.to_path_buf();
            if let Some((cal, passes, tokens, seconds)) = calibration {
                report.notes.insert(
                    "calibration".into(),
                    serde_json::json!({
                        "alpha": cal.alpha,
                        "gap": cal.gap,
                        "outcome": cal.outcome.name(),
                        "range": [p.alpha_min, p.alpha_max],
                        "tol": p.calibrate_tol,
                        "max_iters": p.calibrate_iters,
                        "grid": p.calibrate_grid,
                        "trace": cal.trace.iter().map(|(a, g)| [*a, *g]).collect::<Vec<_>>(),
                    }),
                );
                report.notes.insert("alpha".into(), cal.alpha.into());
                // The runner keeps only the numeric `timings` of a report (as `method/…` stages),
                // so the choice and its trace are there too, under `calibration/…` (not seconds).
                report.timings.insert("calibration/alpha".into(), cal.alpha);
                report.timings.insert("calibration/gap".into(), cal.gap);
                for (i, (a, g)) in cal.trace.iter().enumerate() {
                    report.timings.insert(format!("calibration/trace{i:02}/alpha"), *a);
                    report.timings.insert(format!("calibration/trace{i:02}/gap"), *g);
                }
                report.timings.insert("calibrate".into(), seconds);
                report.timings.insert("count/calibration_evals".into(), cal.trace.len() as f64);
                report.timings.insert("count/calibration_tokens".into(), tokens as f64);
                *report.timings.entry("count/arithmetic_passes".into()).or_insert(0.0) += passes as f64;
            }
            if repairing {
                unlearn::check_has_targets(name, "retain", ctx.retain).with_context(|| {
                    format!("method {name}: repair_steps = {} needs retain examples", p.repair_steps)
                })?;
                let cfg = calibrate::repair_config(&ctx.train, p.repair_lr, p.repair_steps, ctx.retain.len(), ctx.seed);
                let r = calibrate::repair(
                    &arith_dir,
                    ctx.out,
                    ctx.final_model,
                    ctx.retain,
                    &cfg,
                    ctx.pad,
                    ctx.device,
                    ctx.progress,
                )
                .with_context(|| format!("method {name}: repair_steps = {}", p.repair_steps))?;
                unlearn::clear_out(&arith_dir)?;
                report.loss_curve.extend(r.loss_curve.iter().copied());
                report.timings.insert("repair".into(), r.seconds);
                report.notes.insert("repair_steps".into(), r.loss_curve.len().into());
                let add = |report: &mut RunReport, k: &str, v: f64| {
                    *report.timings.entry(format!("count/{k}")).or_insert(0.0) += v
                };
                add(&mut report, "finetunes", 1.0);
                add(&mut report, "finetune_tokens_repair", r.tokens as f64);
                add(&mut report, "finetune_tokens", r.tokens as f64);
            }
            Ok(report)
        };
        let result = run().with_context(|| format!("method {name}: unlearning {} failed", ctx.final_model.display()));
        let _ = unlearn::clear_out(&probe_dir);
        let _ = unlearn::clear_out(&arith_dir);
        if result.is_err() {
            let _ = unlearn::clear_out(ctx.out);
        }
        result
    }
}

/// `ctx` writing to `out` instead (the calibration probes and the pre-repair arithmetic).
fn with_out<'b>(ctx: &'b Context<'_>, out: &'b Path) -> Context<'b> {
    Context {
        final_model: ctx.final_model,
        checkpoints: ctx.checkpoints,
        forget: ctx.forget,
        retain: ctx.retain,
        held_out: ctx.held_out,
        train: ctx.train.clone(),
        seed: ctx.seed,
        cache: ctx.cache,
        out,
        device: ctx.device,
        pad: ctx.pad,
        progress: ctx.progress,
    }
}

/// Whether two paths name the same folder.
fn same_folder(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}
