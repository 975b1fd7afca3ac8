//! Training: batches with loss masks, objectives, AdamW (decoupled weight decay, Loshchilov &
//! Hutter 2019), warm-up then constant / linear / cosine decay, clipping by global gradient
//! norm, gradient accumulation, and detection of non-finite losses and gradients.
//!
//! Every training run in the project — pretraining the testbed, MSA's fine-tunes, gradient
//! ascent, NPO — goes through [`Trainer::step`]; methods only supply an [`Objective`].

use crate::model::CausalLm;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One training sequence: tokens plus a per-token loss weight. `loss_mask[i]` weighs the
/// prediction of `tokens[i]` from `tokens[..i]` (so `loss_mask[0]` is never used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub loss_mask: Vec<f32>,
}

impl Example {
    /// Train on every token.
    pub fn full(tokens: Vec<u32>) -> Example {
        let loss_mask = vec![1.0; tokens.len()];
        Example { tokens, loss_mask }
    }

    /// Train only on `answer` (e.g. an answer given a question).
    pub fn prompt_answer(prompt: &[u32], answer: &[u32]) -> Example {
        let mut tokens = prompt.to_vec();
        tokens.extend_from_slice(answer);
        let mut loss_mask = vec![0.0; prompt.len()];
        loss_mask.extend(std::iter::repeat_n(1.0, answer.len()));
        Example { tokens, loss_mask }
    }

    /// Number of tokens that carry loss.
    pub fn n_target_tokens(&self) -> usize {
        self.loss_mask.iter().skip(1).filter(|m| **m != 0.0).count()
    }
}

/// A right-padded batch, already shifted for next-token prediction.
pub struct Batch {
    /// (b, t) u32: tokens[..n-1].
    pub inputs: Tensor,
    /// (b, t) u32: tokens[1..].
    pub targets: Tensor,
    /// (b, t) f32: loss weights of the targets (0 on padding).
    pub mask: Tensor,
    /// (b, t) f32: 1 on real input tokens.
    pub attention: Tensor,
    /// Index of each row in the data set it came from.
    pub ids: Vec<usize>,
}

/// Build a batch from examples; rows are padded on the right with `pad`.
pub fn collate(examples: &[&Example], ids: Vec<usize>, pad: u32, device: &Device) -> Result<Batch> {
    if examples.is_empty() {
        bail!("cannot build an empty batch");
    }
    let t = examples.iter().map(|e| e.tokens.len().saturating_sub(1)).max().unwrap_or(0).max(1);
    let b = examples.len();
    let mut inputs = vec![pad; b * t];
    let mut targets = vec![pad; b * t];
    let mut mask = vec![0f32; b * t];
    let mut att = vec![0f32; b * t];
    for (r, e) in examples.iter().enumerate() {
        if e.tokens.len() != e.loss_mask.len() {
            bail!("example {} has {} tokens but {} loss weights", ids[r], e.tokens.len(), e.loss_mask.len());
        }
        let n = e.tokens.len().saturating_sub(1);
        for i in 0..n {
            inputs[r * t + i] = e.tokens[i];
            targets[r * t + i] = e.tokens[i + 1];
            mask[r * t + i] = e.loss_mask[i + 1];
            att[r * t + i] = 1.0;
        }
    }
    Ok(Batch {
        inputs: Tensor::from_vec(inputs, (b, t), device)?,
        targets: Tensor::from_vec(targets, (b, t), device)?,
        mask: Tensor::from_vec(mask, (b, t), device)?,
        attention: Tensor::from_vec(att, (b, t), device)?,
        ids,
    })
}

/// Per-row sums of masked target log-probabilities, and per-row masked token counts: (b,), (b,).
pub fn sequence_logprobs(model: &CausalLm, batch: &Batch) -> Result<(Tensor, Tensor)> {
    let hidden = model.hidden(&batch.inputs, Some(&batch.attention))?;
    let lp = model.hidden_target_logprobs(&hidden, &batch.targets)?;
    let sum = (lp * &batch.mask)?.sum(D::Minus1)?;
    let count = batch.mask.sum(D::Minus1)?;
    Ok((sum, count))
}

/// Mean negative log-likelihood over the masked tokens of a batch (a scalar).
pub fn masked_nll(model: &CausalLm, batch: &Batch) -> Result<Tensor> {
    let (sum, count) = sequence_logprobs(model, batch)?;
    let total = count.sum_all()?.to_scalar::<f32>()?;
    if total <= 0.0 {
        bail!("batch has no target tokens after masking");
    }
    Ok((sum.sum_all()?.neg()? / total as f64)?)
}

/// What one optimizer step sees: a batch of the data being trained on, and optionally a batch
/// of a second data set (e.g. the retain set of gradient difference).
pub struct Step<'a> {
    pub primary: &'a Batch,
    pub secondary: Option<&'a Batch>,
}

/// A training objective: the scalar loss of one (micro-)batch.
pub trait Objective {
    fn loss(&self, model: &CausalLm, step: &Step) -> Result<Tensor>;
}

/// Plain next-token cross-entropy on the primary batch.
pub struct NextToken;

impl Objective for NextToken {
    fn loss(&self, model: &CausalLm, step: &Step) -> Result<Tensor> {
        masked_nll(model, step.primary)
    }
}

/// The learning rate over the optimizer steps after warm-up (not the testbed's data
/// `Schedule`, which orders a world's documents into batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    Constant,
    Linear,
    Cosine,
}

/// Optimizer and schedule settings. Defaults follow the MSA paper's fine-tuning recipe
/// (AdamW, weight decay 0.01, one warm-up epoch, linear decay) with a learning rate for
/// small models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Warm-up steps; `warmup_ratio` is used when this is `None`.
    pub warmup_steps: Option<usize>,
    pub warmup_ratio: f64,
    pub schedule: LrSchedule,
    /// Final learning rate as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this (None: no clipping).
    pub max_grad_norm: Option<f64>,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub epochs: usize,
    /// Stop after this many optimizer steps (overrides `epochs` when smaller).
    pub max_steps: Option<usize>,
    pub seed: u64,
    /// Numeric precision of the training computation (see [`Precision`]). Left out of the
    /// serialised form at its default, so configs hashed before it existed hash the same.
    #[serde(skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// Recompute each block's activations in the backward instead of keeping them
    /// ([`CausalLm::set_activation_checkpointing`]); same gradients, less memory.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub activation_checkpointing: bool,
    /// Train LoRA adapters instead of the weights ([`crate::lora`]; [`load_for_training`]
    /// attaches them). Left out of the serialised form when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<crate::lora::LoraConfig>,
}

/// How a training step computes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// Everything in the model's dtype (f32 weights: f32 throughout).
    #[default]
    #[serde(rename = "f32")]
    F32,
    /// f32 master weights and AdamW moments; the forward and backward run on a bf16 copy of
    /// the weights (refreshed after every update), whose gradients are converted to f32
    /// before clipping and the update (as PyTorch autocast / apex O2).
    #[serde(rename = "bf16-mixed")]
    Bf16Mixed,
    /// Weights, gradients and AdamW moments all in bf16, as Hugging Face's Trainer with a
    /// model loaded in bf16 (the MSA paper's code). A model loaded in f32 is trained through a
    /// bf16 copy whose values are written back after every step (exactly: bf16 ⊂ f32).
    #[serde(rename = "bf16")]
    Bf16,
}

impl Precision {
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::Bf16 => "bf16",
        }
    }

    /// Parses a config value; the error names the accepted ones.
    pub fn parse(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16-mixed" => Ok(Precision::Bf16Mixed),
            "bf16" => Ok(Precision::Bf16),
            other => bail!("unknown precision {other:?}: expected \"f32\", \"bf16-mixed\" or \"bf16\""),
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 1e-3,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_steps: None,
            warmup_ratio: 0.1,
            schedule: LrSchedule::Linear,
            min_lr_ratio: 0.0,
            max_grad_norm: Some(1.0),
            batch_size: 16,
            grad_accum: 1,
            epochs: 10,
            max_steps: None,
            seed: 0,
            precision: Precision::F32,
            activation_checkpointing: false,
            lora: None,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let checks: [(&str, bool); 7] = [
            ("lr", self.lr.is_finite() && self.lr >= 0.0),
            ("weight_decay", self.weight_decay.is_finite() && self.weight_decay >= 0.0),
            ("beta1", (0.0..1.0).contains(&self.beta1)),
            ("beta2", (0.0..1.0).contains(&self.beta2)),
            ("warmup_ratio", (0.0..=1.0).contains(&self.warmup_ratio)),
            ("batch_size", self.batch_size > 0),
            ("grad_accum", self.grad_accum > 0),
        ];
        for (field, ok) in checks {
            if !ok {
                bail!("train.{field}: invalid value in {self:?}");
            }
        }
        if let Some(c) = self.max_grad_norm {
            if !(c.is_finite() && c > 0.0) {
                bail!("train.max_grad_norm must be positive, got {c}");
            }
        }
        if let Some(l) = &self.lora {
            l.validate().context("train")?;
        }
        Ok(())
    }

    /// Learning rate at optimizer step `step` (0-based) of `total`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let warm = self.warmup_steps.unwrap_or((self.warmup_ratio * total as f64).round() as usize);
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let span = total.saturating_sub(warm).max(1) as f64;
        let progress = ((step - warm) as f64 / span).min(1.0);
        let min = self.lr * self.min_lr_ratio;
        match self.schedule {
            LrSchedule::Constant => self.lr,
            LrSchedule::Linear => min + (self.lr - min) * (1.0 - progress),
            LrSchedule::Cosine => min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

/// Loads a checkpoint for training with `cfg`: in bf16 for `precision = "bf16"` (no f32 copy
/// is ever held: the memory of Hugging Face's Trainer on a bf16 model), in f32 otherwise (the
/// masters of bf16-mixed). Checkpoints are written back in the dtype they were read in.
///
/// With `cfg.lora`, the weights are loaded frozen and LoRA adapters are attached
/// ([`CausalLm::attach_lora`], seeded by `cfg.seed`): the adapters are what trains.
pub fn load_for_training(dir: &Path, device: &Device, cfg: &TrainConfig) -> Result<CausalLm> {
    let dtype = if cfg.precision == Precision::Bf16 { DType::BF16 } else { DType::F32 };
    match &cfg.lora {
        None => CausalLm::load_dtype(dir, device, dtype, true),
        Some(lora) => {
            let mut model = CausalLm::load_dtype(dir, device, dtype, false)?;
            model.attach_lora(lora, cfg.seed).with_context(|| format!("{}: train.lora", dir.display()))?;
            Ok(model)
        }
    }
}

/// Statistics of one optimizer step.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct StepStats {
    pub step: usize,
    pub loss: f64,
    pub grad_norm: f64,
    pub lr: f64,
}

/// An optimizer bound to a trainable model.
pub struct Trainer<'m> {
    pub model: &'m CausalLm,
    /// The bf16 copy the forward and backward run on, when the precision asks for one the
    /// model is not in (see [`Precision`]).
    compute: Option<CausalLm>,
    pub cfg: TrainConfig,
    /// AdamW's first and second moments, one per variable (order of [`CausalLm::vars`]).
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: usize,
    pub total_steps: usize,
}

/// File name of the optimizer state saved beside a checkpoint by [`Trainer::save_state`].
pub const OPTIMIZER_STATE_FILE: &str = "optimizer.safetensors";

impl<'m> Trainer<'m> {
    pub fn new(model: &'m CausalLm, cfg: TrainConfig, total_steps: usize) -> Result<Trainer<'m>> {
        cfg.validate()?;
        if !model.params.is_trainable() {
            bail!("model was loaded frozen; load it trainable to fine-tune");
        }
        let dtype = model.dtype();
        let compute = match cfg.precision {
            Precision::F32 => None,
            Precision::Bf16Mixed => {
                if dtype != DType::F32 {
                    bail!("train.precision = \"bf16-mixed\" keeps f32 master weights, but the model is loaded in {dtype:?}: load it in f32 (dtype = \"f32\") or use precision = \"bf16\"");
                }
                Some(model.cast(DType::BF16)?)
            }
            Precision::Bf16 => match dtype {
                DType::BF16 => None,
                DType::F32 => Some(model.cast(DType::BF16)?),
                other => {
                    bail!("train.precision = \"bf16\" needs bf16 or f32 weights, the model is loaded in {other:?}")
                }
            },
        };
        model.set_activation_checkpointing(cfg.activation_checkpointing);
        if let Some(c) = &compute {
            c.set_activation_checkpointing(cfg.activation_checkpointing);
        }
        // the moments live beside the weights the update is applied to: the f32 masters for
        // bf16-mixed, the bf16 weights for bf16
        let opt_model = match (cfg.precision, &compute) {
            (Precision::Bf16, Some(c)) => c,
            _ => model,
        };
        let zeros = || -> Result<Vec<Tensor>> {
            opt_model.vars().iter().map(|(_, v)| Ok(v.as_tensor().zeros_like()?)).collect()
        };
        let (m, v) = (zeros()?, zeros()?);
        Ok(Trainer { model, compute, cfg, m, v, step: 0, total_steps })
    }

    /// The model the forward and backward run on (the model itself, or its bf16 copy).
    pub fn compute_model(&self) -> &CausalLm {
        self.compute.as_ref().unwrap_or(self.model)
    }

    /// The model whose variables AdamW updates (the f32 masters, or the bf16 weights).
    fn updated_model(&self) -> &CausalLm {
        match (self.cfg.precision, &self.compute) {
            (Precision::Bf16, Some(c)) => c,
            _ => self.model,
        }
    }

    /// After an update: the copy that did not receive it takes the new values.
    fn sync_copies(&self) -> Result<()> {
        let Some(c) = &self.compute else { return Ok(()) };
        let (from, to) = match self.cfg.precision {
            Precision::Bf16 => (c, self.model),
            _ => (self.model, c),
        };
        for ((_, src), (_, dst)) in from.vars().iter().zip(to.vars()) {
            dst.set(&src.as_tensor().to_dtype(dst.dtype())?)?;
        }
        Ok(())
    }

    /// Save the optimizer state (moments and step) to `dir/optimizer.safetensors`, so that a
    /// run restarted from the checkpoint in `dir` continues bit for bit.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        let mut map = std::collections::HashMap::new();
        for (i, (name, _)) in self.model.vars().iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        map.insert("step".to_string(), Tensor::new(&[self.step as u32], &self.model.device)?);
        let path = dir.join(OPTIMIZER_STATE_FILE);
        candle_core::safetensors::save(&map, &path).with_context(|| format!("{}: cannot write", path.display()))
    }

    /// Restore the optimizer state written by [`Trainer::save_state`].
    pub fn load_state(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(OPTIMIZER_STATE_FILE);
        let map = candle_core::safetensors::load(&path, &self.model.device)
            .with_context(|| format!("{}: cannot read optimizer state", path.display()))?;
        let get = |k: &str| map.get(k).with_context(|| format!("{}: tensor {k:?} missing", path.display()));
        for (i, (name, var)) in self.model.vars().iter().enumerate() {
            let (m, v) = (get(&format!("m.{name}"))?, get(&format!("v.{name}"))?);
            if m.dims() != var.dims() || v.dims() != var.dims() {
                bail!(
                    "{}: moments of {name} have shape {:?}, the parameter {:?}",
                    path.display(),
                    m.dims(),
                    var.dims()
                );
            }
            crate::weights::ensure_finite(m, &path, &format!("m.{name}"))?;
            crate::weights::ensure_finite(v, &path, &format!("v.{name}"))?;
            self.m[i] = m.clone();
            self.v[i] = v.clone();
        }
        self.step = get("step")?.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }

    /// AdamW with decoupled weight decay (Loshchilov & Hutter 2019), bias-corrected moments,
    /// applied to `grads` multiplied by `gscale` (the clipping factor).
    ///
    /// On the CPU in f32 this is one pass per parameter over its data, its gradient and its
    /// moments (three allocations), instead of a dozen tensor operations; elsewhere it is
    /// written with tensor operations. Both compute the same formula in f32.
    fn adamw(&mut self, grads: &[Tensor], lr: f64, gscale: f64) -> Result<()> {
        let t = (self.step + 1) as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let scale_m = 1.0 / (1.0 - b1.powi(t));
        let scale_v = 1.0 / (1.0 - b2.powi(t));
        let decay = 1.0 - lr * self.cfg.weight_decay;
        let eps = self.cfg.eps;
        let vars: Vec<candle_core::Var> = self.updated_model().vars().iter().map(|(_, v)| v.clone()).collect();
        for (i, var) in vars.iter().enumerate() {
            let g = &grads[i];
            let theta = var.as_tensor();
            if crate::fused::is_fast(&[theta, g]) {
                let (b1, b2, sm, sv, dec, lr, gs, eps) = (
                    b1 as f32,
                    b2 as f32,
                    scale_m as f32,
                    scale_v as f32,
                    decay as f32,
                    lr as f32,
                    gscale as f32,
                    eps as f32,
                );
                let (m, v, th) = crate::fused::with_data(&self.m[i], "AdamW first moment", |m| {
                    crate::fused::with_data(&self.v[i], "AdamW second moment", |v| {
                        crate::fused::with_data(theta, "parameter", |th| {
                            crate::fused::with_data(g, "gradient", |g| {
                                let n = th.len();
                                let (mut mo, mut vo, mut to) = (
                                    crate::fused::output_buffer(n),
                                    crate::fused::output_buffer(n),
                                    crate::fused::output_buffer(n),
                                );
                                // element-wise, so split over the worker pool in fixed chunks
                                crate::fused::par_elems3(&mut mo, &mut vo, &mut to, |j0, mo, vo, to| {
                                    for k in 0..mo.len() {
                                        let j = j0 + k;
                                        let gj = g[j] * gs;
                                        let mj = m[j] * b1 + gj * (1.0 - b1);
                                        let vj = v[j] * b2 + gj * gj * (1.0 - b2);
                                        let upd = (mj * sm) / ((vj * sv).sqrt() + eps);
                                        mo[k] = mj;
                                        vo[k] = vj;
                                        to[k] = th[j] * dec - upd * lr;
                                    }
                                });
                                (mo, vo, to)
                            })
                        })
                    })
                })????;
                let shape = theta.shape();
                var.set(&Tensor::from_vec(th, shape, theta.device())?)?;
                self.m[i] = Tensor::from_vec(m, shape, theta.device())?;
                self.v[i] = Tensor::from_vec(v, shape, theta.device())?;
                continue;
            }
            let g = if gscale != 1.0 { (g * gscale)? } else { g.clone() };
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + eps)?)?;
            let theta = ((theta * decay)? - (update * lr)?)?;
            var.set(&theta)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Gradients of the objective averaged over `micro` micro-batches, one per variable (in
    /// the order of [`CausalLm::vars`]), and the mean loss. Errors on a non-finite loss and on
    /// a parameter that received no gradient.
    ///
    /// Runs with the compute model's [`crate::Engine`] (also for an objective that calls the
    /// fused kernels itself).
    pub fn gradients(&self, objective: &dyn Objective, micro: &[Step]) -> Result<(Vec<Tensor>, f64)> {
        crate::engine::with(self.compute_model().engine(), || self.gradients_now(objective, micro))
    }

    fn gradients_now(&self, objective: &dyn Objective, micro: &[Step]) -> Result<(Vec<Tensor>, f64)> {
        if micro.is_empty() {
            bail!("optimizer step {} got no batches", self.step);
        }
        let model = self.compute_model();
        let vars = model.vars();
        // bf16-mixed: the bf16 gradients are converted to the masters' f32
        let grad_dtype = self.updated_model().dtype();
        let mut acc: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut loss_sum = 0.0;
        for s in micro {
            let loss = objective.loss(model, s)?;
            let lv =
                loss.to_dtype(DType::F64)?.to_scalar::<f64>().context("the objective must return a scalar loss")?;
            if !lv.is_finite() {
                bail!("non-finite loss ({lv}) at optimizer step {}", self.step);
            }
            loss_sum += lv;
            let grads = loss.backward()?;
            for (i, (name, v)) in vars.iter().enumerate() {
                let g = grads.get(v.as_tensor()).with_context(|| {
                    format!("parameter {name} received no gradient at step {} (graph is broken)", self.step)
                })?;
                let g = &g.to_dtype(grad_dtype)?;
                acc[i] = Some(match acc[i].take() {
                    None => g.clone(),
                    Some(a) => (a + g)?,
                });
            }
        }
        let n = micro.len() as f64;
        let mut grads: Vec<Tensor> = acc.into_iter().map(|g| g.expect("every var has a gradient")).collect();
        if micro.len() > 1 {
            grads = grads.into_iter().map(|g| g / n).collect::<candle_core::Result<_>>()?;
        }
        Ok((grads, loss_sum / n))
    }

    /// One optimizer step over `micro` micro-batches (gradients averaged over them), with the
    /// model's [`crate::Engine`] (the fused AdamW kernel or candle's operations).
    pub fn step(&mut self, objective: &dyn Objective, micro: &[Step]) -> Result<StepStats> {
        let engine = self.compute_model().engine();
        crate::engine::with(engine, || self.step_now(objective, micro))
    }

    fn step_now(&mut self, objective: &dyn Objective, micro: &[Step]) -> Result<StepStats> {
        let (grads, loss) = self.gradients_now(objective, micro)?;
        let vars = self.model.vars();
        let mut sq = 0f64;
        for g in &grads {
            sq += if g.device().is_cpu() && g.dtype() == DType::F32 {
                crate::fused::with_data(g, "gradient", crate::fused::sum_sq_f64)?
            } else {
                g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?
            };
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            let bad = vars
                .iter()
                .zip(&grads)
                .find(|(_, g)| {
                    g.to_dtype(DType::F32)
                        .and_then(|g| g.sqr())
                        .and_then(|s| s.sum_all())
                        .and_then(|s| s.to_scalar::<f32>())
                        .map(|v| !v.is_finite())
                        .unwrap_or(true)
                })
                .map(|((n, _), _)| n.as_str())
                .unwrap_or("?");
            bail!("non-finite gradient norm at optimizer step {} (first bad parameter: {bad})", self.step);
        }
        let scale = match self.cfg.max_grad_norm {
            Some(c) if norm > c => c / (norm + 1e-6),
            _ => 1.0,
        };
        let lr = self.cfg.lr_at(self.step, self.total_steps.max(1));
        self.adamw(&grads, lr, scale)?;
        self.sync_copies()?;
        let stats = StepStats { step: self.step, loss, grad_norm: norm, lr };
        self.step += 1;
        Ok(stats)
    }
}

/// The log of a training run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TrainLog {
    pub steps: Vec<StepStats>,
    pub seconds: f64,
    pub tokens: usize,
}

/// A progress callback: (steps done, total steps, last loss).
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize, f64);

/// A progress report of a staged job (world building, unlearning): (stage, step, total, loss).
/// The one definition: `testbed::train::Progress` and `unlearn::ProgressFn` are this type.
pub type StageProgress<'a> = &'a dyn Fn(&str, usize, usize, f64);

/// Train for `cfg.epochs` over `primary` (shuffled each epoch with `cfg.seed`), pairing each
/// primary batch with a batch of `secondary` when given (cycled, shuffled with its own stream).
pub fn fit(
    model: &CausalLm,
    primary: &[Example],
    secondary: Option<&[Example]>,
    cfg: &TrainConfig,
    objective: &dyn Objective,
    pad: u32,
    progress: Option<Progress>,
) -> Result<TrainLog> {
    cfg.validate()?;
    if primary.is_empty() {
        bail!("training set is empty");
    }
    if primary.iter().all(|e| e.n_target_tokens() == 0) {
        bail!("training set has no target tokens after masking");
    }
    if let Some(s) = secondary {
        if s.is_empty() {
            bail!("secondary (retain) set is empty");
        }
    }
    let per_step = cfg.batch_size * cfg.grad_accum;
    let steps_per_epoch = primary.len().div_ceil(per_step);
    let mut total = steps_per_epoch * cfg.epochs;
    if let Some(m) = cfg.max_steps {
        total = total.min(m);
    }
    let mut trainer = Trainer::new(model, cfg.clone(), total)?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut rng2 = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5eed_5eed);
    let mut sec_order: Vec<usize> = vec![];
    let mut sec_pos = 0usize;
    let mut log = TrainLog::default();
    let start = std::time::Instant::now();
    let mut progress = progress;
    'outer: for _epoch in 0..cfg.epochs {
        let mut order: Vec<usize> = (0..primary.len()).collect();
        order.shuffle(&mut rng);
        for chunk in order.chunks(per_step) {
            if trainer.step >= total {
                break 'outer;
            }
            let mut batches = vec![];
            for mb in chunk.chunks(cfg.batch_size) {
                let ex: Vec<&Example> = mb.iter().map(|&i| &primary[i]).collect();
                log.tokens += ex.iter().map(|e| e.tokens.len()).sum::<usize>();
                let pb = collate(&ex, mb.to_vec(), pad, &model.device)?;
                let sb = match secondary {
                    None => None,
                    Some(sec) => {
                        let mut ids = vec![];
                        for _ in 0..mb.len() {
                            if sec_pos == sec_order.len() {
                                sec_order = (0..sec.len()).collect();
                                sec_order.shuffle(&mut rng2);
                                sec_pos = 0;
                            }
                            ids.push(sec_order[sec_pos]);
                            sec_pos += 1;
                        }
                        let ex: Vec<&Example> = ids.iter().map(|&i| &sec[i]).collect();
                        log.tokens += ex.iter().map(|e| e.tokens.len()).sum::<usize>();
                        Some(collate(&ex, ids, pad, &model.device)?)
                    }
                };
                batches.push((pb, sb));
            }
            let steps: Vec<Step> = batches.iter().map(|(p, s)| Step { primary: p, secondary: s.as_ref() }).collect();
            let st = trainer.step(objective, &steps)?;
            if let Some(p) = progress.as_mut() {
                p(trainer.step, total, st.loss);
            }
            log.steps.push(st);
        }
    }
    log.seconds = start.elapsed().as_secs_f64();
    Ok(log)
}
