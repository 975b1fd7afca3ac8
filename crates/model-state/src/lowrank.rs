//! Low-rank task vectors: a LoRA adapter folder (Hugging Face PEFT's layout) read as the
//! update Δ = s·B·A it makes to each weight, for [`crate::combine_low_rank`].
//!
//! A folder holds `adapter_config.json` (`r`, `lora_alpha`, `use_rslora`, `fan_in_fan_out`)
//! and `adapter_model.safetensors` with tensors `base_model.model.<module>.lora_A.weight`
//! (r × in) and `….lora_B.weight` (out × r); the adapted weight is `<module>.weight`
//! (out × in) and s = lora_alpha / r (lora_alpha / √r with `use_rslora`). Only the factors
//! are held in memory (r·(in + out) values per weight); Δ is produced chunk by chunk, never
//! as a dense tensor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::elem::{decode_f32, is_arith_float};

/// File names of a PEFT adapter folder.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
const PEFT_PREFIX: &str = "base_model.model.";

/// One adapted weight: Δ[i, j] = s · Σ_q B[i, q]·A[q, j].
#[derive(Debug, Clone)]
pub struct LowRankPair {
    pub rows: usize,
    pub cols: usize,
    pub rank: usize,
    /// B, row-major (rows × rank).
    pub b: Vec<f32>,
    /// A transposed, row-major (cols × rank), so each element's dot product reads two
    /// contiguous rows.
    pub a_t: Vec<f32>,
}

impl LowRankPair {
    /// (B·A)[i, j] in f64.
    pub fn product_at(&self, i: usize, j: usize) -> f64 {
        let b = &self.b[i * self.rank..(i + 1) * self.rank];
        let a = &self.a_t[j * self.rank..(j + 1) * self.rank];
        b.iter().zip(a).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    /// `acc[k] += coef · (B·A)[start + k]` (row-major element index), in f64 then rounded.
    pub fn add_to(&self, coef: f64, start: usize, acc: &mut [f32]) {
        for (k, slot) in acc.iter_mut().enumerate() {
            let e = start + k;
            *slot += (coef * self.product_at(e / self.cols, e % self.cols)) as f32;
        }
    }
}

/// A LoRA adapter folder: its scale and its factors by adapted weight name.
#[derive(Debug, Clone)]
pub struct LowRankDelta {
    pub dir: PathBuf,
    /// s: lora_alpha / r (or / √r with rsLoRA).
    pub scale: f64,
    /// `<module>.weight` → its factors.
    pub pairs: BTreeMap<String, LowRankPair>,
}

impl LowRankDelta {
    /// Whether `dir` looks like an adapter folder (both files present).
    pub fn is_adapter_dir(dir: &Path) -> bool {
        dir.join(ADAPTER_CONFIG).is_file() && dir.join(ADAPTER_WEIGHTS).is_file()
    }

    /// Reads an adapter folder; errors name the file, the tensor or the field.
    pub fn open(dir: &Path) -> Result<LowRankDelta> {
        let cfg_path = dir.join(ADAPTER_CONFIG);
        let text =
            std::fs::read_to_string(&cfg_path).with_context(|| format!("{}: cannot read", cfg_path.display()))?;
        let cfg: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", cfg_path.display()))?;
        let field = |k: &str| cfg.get(k).filter(|v| !v.is_null());
        if let Some(t) = field("peft_type").and_then(|v| v.as_str()) {
            ensure!(
                t == "LORA",
                "{}: peft_type is {t:?}; only LORA adapters are low-rank task vectors",
                cfg_path.display()
            );
        }
        let r = field("r")
            .and_then(|v| v.as_u64())
            .filter(|&r| r > 0)
            .with_context(|| format!("{}: field \"r\" missing or not a positive integer", cfg_path.display()))?
            as usize;
        let alpha =
            field("lora_alpha").and_then(|v| v.as_f64()).filter(|a| a.is_finite() && *a > 0.0).with_context(|| {
                format!("{}: field \"lora_alpha\" missing or not a positive number", cfg_path.display())
            })?;
        if field("fan_in_fan_out").and_then(|v| v.as_bool()) == Some(true) {
            bail!("{}: fan_in_fan_out = true (Conv1D weights, GPT-2 style) is not supported", cfg_path.display());
        }
        if field("bias").and_then(|v| v.as_str()).is_some_and(|b| b != "none") {
            bail!(
                "{}: bias = {} (trained biases) is not supported; expected \"none\"",
                cfg_path.display(),
                cfg["bias"]
            );
        }
        let rslora = field("use_rslora").and_then(|v| v.as_bool()).unwrap_or(false);
        let scale = if rslora { alpha / (r as f64).sqrt() } else { alpha / r as f64 };

        let path = dir.join(ADAPTER_WEIGHTS);
        let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: not a safetensors file: {e:?}", path.display()))?;
        // module → (A, B) as (dims, values)
        type Factor = (Vec<usize>, Vec<f32>);
        let mut factors: BTreeMap<String, (Option<Factor>, Option<Factor>)> = BTreeMap::new();
        for (name, view) in st.tensors() {
            let short = name.strip_prefix(PEFT_PREFIX).unwrap_or(&name);
            let (module, is_a) = if let Some(m) = short.strip_suffix(".lora_A.weight") {
                (m, true)
            } else if let Some(m) = short.strip_suffix(".lora_B.weight") {
                (m, false)
            } else {
                bail!(
                    "{}: tensor {name} is not a LoRA factor (expected names ending in .lora_A.weight / .lora_B.weight)",
                    path.display()
                );
            };
            ensure!(
                is_arith_float(view.dtype()),
                "{}: tensor {name} has dtype {}, expected F32, BF16 or F16",
                path.display(),
                view.dtype()
            );
            ensure!(
                view.shape().len() == 2,
                "{}: tensor {name} has shape {:?}, expected 2-D",
                path.display(),
                view.shape()
            );
            let mut values = vec![];
            decode_f32(view.dtype(), view.data(), &mut values);
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                bail!("{}: tensor {name} holds a non-finite value at element {bad}", path.display());
            }
            let slot = factors.entry(module.to_string()).or_default();
            let f = Some((view.shape().to_vec(), values));
            if is_a {
                slot.0 = f;
            } else {
                slot.1 = f;
            }
        }
        ensure!(!factors.is_empty(), "{}: holds no LoRA factors", path.display());
        let mut pairs = BTreeMap::new();
        for (module, (a, b)) in factors {
            let (Some((ad, av)), Some((bd, bv))) = (a, b) else {
                bail!("{}: module {module} has only one of lora_A / lora_B", path.display());
            };
            ensure!(
                ad[0] == r && bd[1] == r,
                "{}: module {module}: lora_A is {ad:?} and lora_B {bd:?}, expected (r, in) and (out, r) with r = {r}",
                path.display()
            );
            let (rows, cols) = (bd[0], ad[1]);
            let mut a_t = vec![0f32; cols * r];
            for q in 0..r {
                for j in 0..cols {
                    a_t[j * r + q] = av[q * cols + j];
                }
            }
            pairs.insert(format!("{module}.weight"), LowRankPair { rows, cols, rank: r, b: bv, a_t });
        }
        Ok(LowRankDelta { dir: dir.to_path_buf(), scale, pairs })
    }
}
