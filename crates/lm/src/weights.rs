//! Model weights: loading Hugging Face safetensors (single file or sharded; a tensor with NaN
//! or infinite values is an error naming it), random
//! initialisation, and the frozen / trainable distinction.
//!
//! Pickle checkpoints (`pytorch_model.bin`, `*.pt`) are never loaded: they can run code.

use crate::config::LmConfig;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The named parameters of a model. For a trainable model every tensor is backed by a
/// [`Var`] (the tensor and the var share storage, so optimizer updates are seen by forward).
pub struct Params {
    pub tensors: BTreeMap<String, Tensor>,
    pub vars: Vec<(String, Var)>,
    /// The dtype the weights were stored in (the checkpoint's; f32 for fresh weights):
    /// [`crate::checkpoint::save`] writes them back in it.
    pub source_dtype: DType,
    /// LoRA adapters ([`crate::CausalLm::attach_lora`]): then `vars` are the adapters' and
    /// every tensor of `tensors` is frozen.
    pub lora: Option<crate::lora::Adapters>,
    /// A frozen model's block weights packed once ([`Params::pack`]): the tensors of `tensors`
    /// are then views into these packs.
    pub packs: Packs,
}

/// Each block's weights of a frozen model in two flat tensors per layer (the attention pack
/// and the MLP pack of [`crate::block::BlockLayout`]), in the order the fused block reads them, so
/// neither the fused block nor the stacked q|k|v and gate|up projections concatenate weights
/// on every forward (a decoding step of the composed path would otherwise copy gate|up, as
/// many values as it multiplies). The named tensors are views into the packs (no second copy).
/// A view replaced in `tensors` (a test perturbing a weight, a variable made of it) is noticed
/// by its tensor id, and the packs are then not used for that layer.
#[derive(Clone, Default)]
pub struct Packs {
    packs: Vec<Tensor>,
    /// Name -> (pack index, offset and length in the pack, the view's tensor id).
    index: std::collections::HashMap<String, (usize, usize, usize, candle_core::TensorId)>,
}

impl Packs {
    pub fn is_empty(&self) -> bool {
        self.packs.is_empty()
    }

    /// The pack holding `names` in this order, back to back, as the slice of the pack
    /// they cover — when every one of them is still the view made at packing time in `tensors`.
    fn span(&self, tensors: &BTreeMap<String, Tensor>, names: &[String]) -> Option<Tensor> {
        let (first, start, _, _) = *self.index.get(names.first()?)?;
        let mut at = start;
        for n in names {
            let &(p, off, len, id) = self.index.get(n)?;
            if p != first || off != at || tensors.get(n)?.id() != id {
                return None;
            }
            at += len;
        }
        self.packs[first].narrow(0, start, at - start).ok()
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).with_context(|| format!("tensor {name:?} missing from the model weights"))
    }

    pub fn is_trainable(&self) -> bool {
        !self.vars.is_empty()
    }

    pub(crate) fn from_tensors(tensors: BTreeMap<String, Tensor>, trainable: bool) -> Result<Params> {
        if !trainable {
            return Ok(Params { tensors, vars: vec![], source_dtype: DType::F32, lora: None, packs: Packs::default() });
        }
        let mut vars = Vec::with_capacity(tensors.len());
        let mut out = BTreeMap::new();
        for (name, t) in tensors {
            let v = Var::from_tensor(&t)?;
            out.insert(name.clone(), v.as_tensor().clone());
            vars.push((name, v));
        }
        Ok(Params { tensors: out, vars, source_dtype: DType::F32, lora: None, packs: Packs::default() })
    }

    /// Packs every block's weights ([`Packs`]) when the model is frozen (no variables, no
    /// adapters): each layer's attention pack and MLP pack become one tensor each and the
    /// named tensors views into them. A trainable model is left as is (its variables are
    /// separate tensors; the fused block concatenates them in its graph, which is how their
    /// gradients reach them). Values are unchanged, bit for bit.
    pub fn pack(&mut self, layout: &crate::block::BlockLayout, layers: usize) -> Result<()> {
        self.packs = Packs::default();
        if !self.vars.is_empty() || self.lora.is_some() {
            return Ok(());
        }
        let mut packs = Packs::default();
        for l in 0..layers {
            let attn = layout.attn_pack();
            for names in [&attn[..], &layout.mlp_pack()[..]] {
                let names: Vec<String> = names.iter().map(|n| format!("model.layers.{l}.{n}")).collect();
                let tensors = names.iter().map(|n| self.get(n).cloned()).collect::<Result<Vec<_>>>()?;
                let shapes: Vec<_> = tensors.iter().map(|t| t.shape().clone()).collect();
                let parts = tensors.iter().map(|t| t.flatten_all()).collect::<candle_core::Result<Vec<_>>>()?;
                let pack = Tensor::cat(&parts, 0)?;
                drop((parts, tensors));
                let mut off = 0;
                for (n, shape) in names.into_iter().zip(shapes) {
                    let len = shape.elem_count();
                    let view = pack.narrow(0, off, len)?.reshape(shape)?;
                    packs.index.insert(n.clone(), (packs.packs.len(), off, len, view.id()));
                    self.tensors.insert(n, view);
                    off += len;
                }
                packs.packs.push(pack);
            }
        }
        self.packs = packs;
        Ok(())
    }

    /// The weights `names` (full names) stacked along their first dimension, as one tensor
    /// of `rows` × the rest of the first one's shape: a view into the packs when they hold
    /// them back to back (a frozen model), else their concatenation. Without LoRA adapters
    /// (with them, the caller merges each weight first).
    pub fn stacked(&self, names: &[String]) -> Result<Tensor> {
        let first = self.get(names.first().context("stacked: no tensor names")?)?;
        if let Some(span) = self.packs.span(&self.tensors, names).filter(|_| self.lora.is_none()) {
            let mut dims = first.dims().to_vec();
            let rest: usize = dims[1..].iter().product();
            dims[0] = span.elem_count() / rest.max(1);
            return Ok(span.reshape(dims)?);
        }
        let parts = names.iter().map(|n| self.get(n).cloned()).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Layer `l`'s attention and MLP packs, when the model holds them and every tensor in
    /// them is still the view made at packing time.
    pub fn block_packs(&self, layout: &crate::block::BlockLayout, l: usize) -> Option<(Tensor, Tensor)> {
        // with adapters, the weights are W + s·B·A, not what the packs hold
        if self.packs.is_empty() || self.lora.is_some() {
            return None;
        }
        let full = |ns: &[&str]| ns.iter().map(|n| format!("model.layers.{l}.{n}")).collect::<Vec<_>>();
        let attn = self.packs.span(&self.tensors, &full(&layout.attn_pack()))?;
        let mlp = self.packs.span(&self.tensors, &full(&layout.mlp_pack()))?;
        Some((attn, mlp))
    }

    /// The dtype of the parameters in memory (of the embedding; all share one).
    pub fn dtype(&self) -> DType {
        self.tensors.values().next().map(|t| t.dtype()).unwrap_or(DType::F32)
    }
}

/// The name Hugging Face's `config.json` gives a dtype (`torch_dtype`).
pub fn torch_dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        DType::F64 => "float64",
        _ => "float32",
    }
}

/// The safetensors files of a checkpoint folder, in load order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{}: model folder does not exist", dir.display());
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).with_context(|| format!("{}: cannot read", index.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{}: no \"weight_map\" object", index.display()))?;
        let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(String::from)).collect();
        files.sort();
        files.dedup();
        let mut out = vec![];
        for f in files {
            let p = dir.join(&f);
            if !p.is_file() {
                bail!("{}: names shard {f:?}, which is missing from {}", index.display(), dir.display());
            }
            out.push(p);
        }
        return Ok(out);
    }
    for pickle in ["pytorch_model.bin", "model.pt", "pytorch_model.bin.index.json"] {
        if dir.join(pickle).exists() {
            bail!(
                "{}: only a pickle checkpoint ({pickle}) is present; pickle files are never loaded \
                 (they can execute code) — convert it to model.safetensors (e.g. `save_pretrained(..., safe_serialization=True)`)",
                dir.display()
            );
        }
    }
    bail!(
        "{}: no model.safetensors or model.safetensors.index.json (expected a Hugging Face checkpoint folder)",
        dir.display()
    )
}

/// Load every parameter the config expects, checking shapes, converting to `dtype`.
pub fn load(cfg: &LmConfig, dir: &Path, device: &Device, dtype: DType, trainable: bool) -> Result<Params> {
    let files = weight_files(dir)?;
    let mut located: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut st = vec![];
    for f in &files {
        // SAFETY: the file is mapped read-only; we never write through the map. A file modified
        // under us would give garbage, as it would for any mmap reader (candle, transformers).
        let m = unsafe { candle_core::safetensors::MmapedSafetensors::new(f) }
            .with_context(|| format!("{}: not a valid safetensors file (truncated or corrupt?)", f.display()))?;
        for (name, _) in m.tensors() {
            located.insert(name, f.clone());
        }
        st.push((f.clone(), m));
    }
    if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
        bail!("{}: weights can be loaded as f32, bf16 or f16, not {dtype:?}", dir.display());
    }
    let mut tensors = BTreeMap::new();
    let mut source_dtype = None;
    for (name, shape) in cfg.parameter_shapes()? {
        let file = located.get(&name).with_context(|| {
            format!("{}: tensor {name:?} (shape {shape:?}) is missing from the weights", dir.display())
        })?;
        let m = &st.iter().find(|(p, _)| p == file).expect("file was indexed").1;
        let t = m.load(&name, device).with_context(|| format!("{}: cannot read tensor {name:?}", file.display()))?;
        if t.dims() != shape.as_slice() {
            bail!("{}: tensor {name:?} has shape {:?}, but config.json implies {shape:?}", file.display(), t.dims());
        }
        if source_dtype.is_none() && t.dtype().is_float() {
            source_dtype = Some(t.dtype());
        }
        let t = t.to_dtype(dtype)?;
        ensure_finite(&t, file, &name)?;
        tensors.insert(name, t);
    }
    let mut params = Params::from_tensors(tensors, trainable)?;
    params.source_dtype = source_dtype.unwrap_or(DType::F32);
    Ok(params)
}

/// How many elements of `t` are NaN or ±inf (0 for integer tensors). On the CPU in f32 this
/// reads the data in place; elsewhere it is computed on the device (x − x is 0 exactly when x
/// is finite).
pub fn count_non_finite(t: &Tensor) -> Result<usize> {
    if !t.dtype().is_float() {
        return Ok(0);
    }
    if t.device().is_cpu() && t.dtype() == DType::F32 {
        return Ok(crate::fused::with_data(t, "count_non_finite", |d| d.iter().filter(|x| !x.is_finite()).count())?);
    }
    let bad = t.sub(t)?.ne(0.0)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    Ok(bad as usize)
}

/// Errors when the tensor `name` read from `file` has NaN or infinite values (a diverged or
/// corrupted checkpoint would otherwise load, and every score computed from it would be NaN).
pub fn ensure_finite(t: &Tensor, file: &Path, name: &str) -> Result<()> {
    let bad = count_non_finite(t)?;
    if bad > 0 {
        bail!(
            "{}: tensor {name} has {bad} non-finite value{} (NaN/inf) out of {} (a diverged or corrupted checkpoint)",
            file.display(),
            if bad == 1 { "" } else { "s" },
            t.elem_count()
        );
    }
    Ok(())
}

/// Fresh weights: N(0, 0.02) for matrices and embeddings (output projections scaled by
/// 1/sqrt(2·layers) as in GPT-2), ones for norms, zeros for biases. Deterministic for a seed.
pub fn init(cfg: &LmConfig, seed: u64, device: &Device, trainable: bool) -> Result<Params> {
    use rand_distr_normal as normal;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = BTreeMap::new();
    let resid_scale = 1.0 / (2.0 * cfg.num_hidden_layers as f32).sqrt();
    for (name, shape) in cfg.parameter_shapes()? {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            let std = if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
                0.02 * resid_scale
            } else {
                0.02
            };
            (0..n).map(|_| normal(&mut rng) * std).collect()
        };
        tensors.insert(name, Tensor::from_vec(data, shape, device)?);
    }
    Params::from_tensors(tensors, trainable)
}

/// A standard normal sample (Box–Muller), so initialisation does not depend on the
/// algorithm choices of a distributions crate.
fn rand_distr_normal(rng: &mut ChaCha8Rng) -> f32 {
    use rand::Rng;
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
