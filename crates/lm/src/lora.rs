//! LoRA adapters (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models"):
//! a targeted linear weight W (out × in) is used as W + s·B·A, with A (r × in) and B (out × r)
//! the only trained parameters and s = alpha / r.
//!
//! Conventions follow Hugging Face PEFT, so that adapters written here load there:
//!
//! - `targets` are module names matched as PEFT's `target_modules` list: a module matches when
//!   its full name equals a target or ends with `.` + target (`"q_proj"` selects every
//!   layer's `self_attn.q_proj`). Only linear weights (2-D `….weight` tensors other than the
//!   token embedding) can be targeted; a target that matches none is an error naming it.
//! - initialisation: A ~ U(−1/√in, 1/√in) (PEFT's default, `kaiming_uniform_(a=√5)`), B = 0,
//!   so an adapted model starts as the base model exactly. The values come from a ChaCha8
//!   stream seeded by the training seed (deterministic on every device).
//! - files ([`save_adapter`]): `adapter_model.safetensors` with tensors
//!   `base_model.model.<module>.lora_A.weight` / `lora_B.weight` (f32), and
//!   `adapter_config.json` (`peft_type = "LORA"`, `r`, `lora_alpha`, `target_modules`, …).
//!   `model_state::LowRankDelta` reads them back without candle, for the streaming arithmetic.
//!
//! The model applies an adapter by merging it into the weight at every forward
//! (`W + s·B·A` as a differentiable tensor expression, [`crate::CausalLm`]); the fused CPU
//! block and candle's composed operations then run unchanged, and the backward reaches A and
//! B through the merge. The merged weight is transient (one per targeted tensor, held by the
//! graph until the backward), which the memory plan counts ([`crate::memory`]). Training
//! memory falls because gradients and AdamW moments exist for the adapters only.

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The linear projections of a Llama / Qwen2 / OLMo-2 block: the default targets.
pub const DEFAULT_TARGETS: &[&str] = &["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// File names of a PEFT adapter folder.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// The prefix PEFT gives tensor names in `adapter_model.safetensors`.
pub const PEFT_PREFIX: &str = "base_model.model.";

/// `lora = { rank = 16, alpha = 32, targets = ["q_proj", "v_proj"] }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// r, the rank of B·A.
    pub rank: usize,
    /// The scale numerator: the update is (alpha / rank)·B·A.
    pub alpha: f64,
    /// Module names (PEFT's `target_modules`); default [`DEFAULT_TARGETS`].
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
}

fn default_targets() -> Vec<String> {
    DEFAULT_TARGETS.iter().map(|s| s.to_string()).collect()
}

/// The largest rank accepted (a typo guard; PEFT users go up to a few hundred).
pub const MAX_RANK: usize = 4096;

impl LoraConfig {
    /// Checks the values; errors name the field (`lora.rank`, …).
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_RANK).contains(&self.rank) {
            bail!("lora.rank = {}: expected an integer in 1..={MAX_RANK}", self.rank);
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            bail!("lora.alpha = {}: expected a positive number", self.alpha);
        }
        if self.targets.is_empty() {
            bail!("lora.targets is empty: name at least one module (e.g. \"q_proj\")");
        }
        for (i, t) in self.targets.iter().enumerate() {
            if t.is_empty() || t.starts_with('.') || t.ends_with('.') {
                bail!("lora.targets[{i}] = {t:?}: expected a module name such as \"q_proj\" or \"mlp.down_proj\"");
            }
            if self.targets[..i].contains(t) {
                bail!("lora.targets lists {t:?} twice");
            }
        }
        Ok(())
    }

    /// s = alpha / rank.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether `module` (a weight name without `.weight`) is targeted.
    pub fn matches(&self, module: &str) -> bool {
        self.targets.iter().any(|t| module == t || module.strip_suffix(t.as_str()).is_some_and(|p| p.ends_with('.')))
    }
}

/// The module of a weight name (`….q_proj.weight` → `….q_proj`).
pub fn module_of(weight: &str) -> Option<&str> {
    weight.strip_suffix(".weight")
}

/// The variable names of a weight's adapters, as PEFT names them (without its prefix).
pub fn adapter_names(weight: &str) -> (String, String) {
    let m = module_of(weight).unwrap_or(weight);
    (format!("{m}.lora_A.weight"), format!("{m}.lora_B.weight"))
}

/// Whether a tensor can carry an adapter: a 2-D `….weight` other than the token embedding.
fn is_linear(name: &str, dims: &[usize]) -> bool {
    dims.len() == 2 && name.ends_with(".weight") && !name.ends_with("embed_tokens.weight")
}

/// The weights `cfg` targets among `shapes` (name → dims), in name order. Errors when a
/// target selects no linear weight (naming it and the modules there are) or nothing at all.
pub fn select(shapes: &BTreeMap<String, Vec<usize>>, cfg: &LoraConfig) -> Result<Vec<String>> {
    cfg.validate()?;
    let linear: Vec<&String> = shapes.iter().filter(|(n, d)| is_linear(n, d)).map(|(n, _)| n).collect();
    for t in &cfg.targets {
        let one = LoraConfig { targets: vec![t.clone()], ..cfg.clone() };
        if !linear.iter().any(|n| one.matches(module_of(n).unwrap_or(n))) {
            let mut kinds: Vec<&str> =
                linear.iter().filter_map(|n| module_of(n)).map(|m| m.rsplit('.').next().unwrap_or(m)).collect();
            kinds.sort_unstable();
            kinds.dedup();
            bail!(
                "lora.targets: {t:?} matches no linear weight of the model (its linear modules: {})",
                kinds.join(", ")
            );
        }
    }
    Ok(linear.into_iter().filter(|n| cfg.matches(module_of(n).unwrap_or(n))).cloned().collect())
}

/// The adapters attached to a model.
pub struct Adapters {
    pub cfg: LoraConfig,
    /// Targeted weight name → (A (r × in), B (out × r)); the same variables are the model's
    /// trainable variables, named by [`adapter_names`].
    pub pairs: BTreeMap<String, (Var, Var)>,
}

impl Adapters {
    /// Trainable values: Σ r·(in + out).
    pub fn n_params(&self) -> usize {
        self.pairs.values().map(|(a, b)| a.elem_count() + b.elem_count()).sum()
    }

    /// `base` + s·B·A for a targeted weight (differentiable in A and B), `base` otherwise.
    pub fn apply(&self, name: &str, base: &Tensor) -> Result<Tensor> {
        let Some((a, b)) = self.pairs.get(name) else { return Ok(base.clone()) };
        // B·(s·A): the scale on the small factor, so one dense temporary, not two
        let delta = b.as_tensor().matmul(&(a.as_tensor() * self.cfg.scale())?)?;
        Ok((base + delta)?)
    }
}

/// Writes `adapters` as a PEFT adapter folder at `dir` (atomically, replacing it):
/// `adapter_model.safetensors` (f32) and `adapter_config.json` naming `base` as the base model.
pub fn save_adapter(adapters: &Adapters, dir: &Path, base: &Path) -> Result<()> {
    crate::checkpoint::write_atomically(dir, |tmp| {
        let mut tensors = std::collections::HashMap::new();
        for (w, (a, b)) in &adapters.pairs {
            let (an, bn) = adapter_names(w);
            tensors.insert(format!("{PEFT_PREFIX}{an}"), a.as_tensor().detach().to_dtype(candle_core::DType::F32)?);
            tensors.insert(format!("{PEFT_PREFIX}{bn}"), b.as_tensor().detach().to_dtype(candle_core::DType::F32)?);
        }
        let metadata: std::collections::HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        safetensors::serialize_to_file(tensors.iter(), Some(metadata), &tmp.join(ADAPTER_WEIGHTS))
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .context("serializing adapter_model.safetensors")?;
        let alpha = adapters.cfg.alpha;
        let alpha_json = if alpha.fract() == 0.0 && alpha < 1e9 {
            serde_json::Value::from(alpha as i64)
        } else {
            serde_json::Value::from(alpha)
        };
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base.display().to_string(),
            "r": adapters.cfg.rank,
            "lora_alpha": alpha_json,
            "target_modules": adapters.cfg.targets,
            "lora_dropout": 0.0,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": false,
            "init_lora_weights": true,
            "inference_mode": true,
        });
        std::fs::write(tmp.join(ADAPTER_CONFIG), serde_json::to_string_pretty(&config)?)?;
        Ok(())
    })
    .with_context(|| format!("{}: cannot write the LoRA adapter", dir.display()))
}

/// Whether `dir` holds a complete adapter folder written by [`save_adapter`] (or by PEFT).
pub fn is_adapter(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).is_file() && dir.join(ADAPTER_WEIGHTS).is_file()
}
