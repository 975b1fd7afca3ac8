//! The causal language model: one implementation of Hugging Face's `LlamaForCausalLM`,
//! `Qwen2ForCausalLM` and `Olmo2ForCausalLM` (Touvron et al. 2023; Qwen team 2024; OLMo team 2024).
//!
//! Unlike candle-transformers' models, [`CausalLm::forward`] is stateless and returns logits
//! for every position, and every operation it uses has a backward pass, so the same model is
//! scored and fine-tuned. On the CPU in f32 the layer runs as a handful of fused kernels with
//! hand-written backward passes: RMSNorm, one matmul against the stacked q/k/v weights, the
//! whole causal attention ([`crate::attention`]), one against the stacked gate/up weights, the
//! packed SwiGLU, and every projection as a single-node [`fused::linear`] ([`crate::fused`]).
//! Elsewhere (CUDA, other dtypes, [`Engine::COMPOSED`] or `UNLEARN_NO_FUSED=1`, the key/value
//! cache) the same computation is composed from candle's differentiable primitives. Both
//! paths read the block from one description ([`block::BlockLayout`]); a frozen model's block
//! weights are packed once at load ([`crate::weights::Packs`]).

use crate::attention::Heads;
use crate::block::{self, BlockLayout, NormPlace};
use crate::config::{Arch, LmConfig};
use crate::engine::{self, Engine};
use crate::weights::{self, Params};
use crate::{attention, fused};
use anyhow::{bail, Context, Result};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Tensor, Var, D};
use std::path::Path;

/// A loaded model: config, parameters (frozen or trainable) and rotary tables.
pub struct CausalLm {
    pub cfg: LmConfig,
    pub arch: Arch,
    pub params: Params,
    pub device: Device,
    /// The block of this architecture, described once (both paths read it).
    pub layout: BlockLayout,
    cos: Tensor,
    sin: Tensor,
    /// Activation checkpointing: each block keeps only its input for the backward and
    /// recomputes its activations there ([`CausalLm::set_activation_checkpointing`]).
    checkpointing: std::sync::atomic::AtomicBool,
    /// The [`Engine`] the graph-building methods run with ([`CausalLm::set_engine`]).
    engine: std::sync::atomic::AtomicU8,
}

impl CausalLm {
    /// Load a Hugging Face checkpoint folder (config.json + safetensors) in f32.
    pub fn load(dir: &Path, device: &Device, trainable: bool) -> Result<CausalLm> {
        CausalLm::load_dtype(dir, device, DType::F32, trainable)
    }

    /// Load a checkpoint folder with its weights converted to `dtype` (f32, bf16 or f16).
    /// Outside f32 on the CPU the model runs candle's composed operations; logits and
    /// log-probabilities are returned in f32 whatever the weights' dtype.
    pub fn load_dtype(dir: &Path, device: &Device, dtype: DType, trainable: bool) -> Result<CausalLm> {
        let cfg = LmConfig::from_file(&dir.join("config.json"))?;
        if dtype == DType::BF16 && !supports_bf16(device) {
            bail!("{}: dtype bf16 requested, but the device {device:?} has no bf16 support", dir.display());
        }
        let params = weights::load(&cfg, dir, device, dtype, trainable)?;
        CausalLm::from_params(cfg, params, device)
    }

    /// The dtype of the weights in memory.
    pub fn dtype(&self) -> DType {
        self.params.dtype()
    }

    /// A copy of this model with its weights converted to `dtype`: the parameters trainable
    /// here are trainable (new variables) there, the others frozen. The copy shares nothing
    /// with this model (a compute copy for mixed precision).
    pub fn cast(&self, dtype: DType) -> Result<CausalLm> {
        let trainable: std::collections::BTreeSet<&str> = self.params.vars.iter().map(|(n, _)| n.as_str()).collect();
        // a fresh storage even when the dtype is unchanged
        let fresh = |t: &Tensor| -> Result<Tensor> {
            let c = t.detach().to_dtype(dtype)?;
            Ok(if c.dtype() == t.dtype() { c.copy()? } else { c })
        };
        let mut tensors = std::collections::BTreeMap::new();
        let mut new_vars = std::collections::BTreeMap::new();
        for (name, t) in &self.params.tensors {
            let c = fresh(t)?;
            if trainable.contains(name.as_str()) {
                let v = Var::from_tensor(&c)?;
                tensors.insert(name.clone(), v.as_tensor().clone());
                new_vars.insert(name.clone(), v);
            } else {
                tensors.insert(name.clone(), c);
            }
        }
        let lora = match &self.params.lora {
            None => None,
            Some(l) => {
                let mut pairs = std::collections::BTreeMap::new();
                for (w, (a, b)) in &l.pairs {
                    let (va, vb) =
                        (Var::from_tensor(&fresh(a.as_tensor())?)?, Var::from_tensor(&fresh(b.as_tensor())?)?);
                    let (an, bn) = crate::lora::adapter_names(w);
                    if trainable.contains(an.as_str()) {
                        new_vars.insert(an, va.clone());
                    }
                    if trainable.contains(bn.as_str()) {
                        new_vars.insert(bn, vb.clone());
                    }
                    pairs.insert(w.clone(), (va, vb));
                }
                Some(crate::lora::Adapters { cfg: l.cfg.clone(), pairs })
            }
        };
        // keep the variables in this model's order
        let vars = self
            .params
            .vars
            .iter()
            .map(|(n, _)| (n.clone(), new_vars.remove(n).expect("every variable is a tensor or an adapter")))
            .collect();
        let params = Params { tensors, vars, source_dtype: self.params.source_dtype, lora, packs: Default::default() };
        let m = CausalLm::from_params(self.cfg.clone(), params, &self.device)?;
        m.set_activation_checkpointing(self.activation_checkpointing());
        m.set_engine(self.engine());
        Ok(m)
    }

    /// Switches activation checkpointing on or off: with it on, every block of a forward
    /// that can be differentiated keeps only its input; the backward recomputes the block's
    /// activations (one more block forward per block) before differentiating it. Gradients are
    /// the same; the activation memory of a step falls from all layers' to one layer's.
    pub fn set_activation_checkpointing(&self, on: bool) {
        self.checkpointing.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn activation_checkpointing(&self) -> bool {
        self.checkpointing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Chooses the implementation this model's forward passes (and the optimizer steps of
    /// [`crate::train`] on it) run: [`Engine::FUSED`], [`Engine::FUSED_OPS`] or
    /// [`Engine::COMPOSED`]. The default is [`Engine::from_env`]. A graph keeps the engine it
    /// was built with (its backward included).
    pub fn set_engine(&self, engine: Engine) {
        self.engine.store(engine.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn engine(&self) -> Engine {
        Engine::from_bits(self.engine.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Runs `f` with this model's engine as the thread's current one ([`engine::with`]).
    fn run<R>(&self, f: impl FnOnce() -> R) -> R {
        engine::with(self.engine(), f)
    }

    /// Packs a frozen model's block weights ([`crate::weights::Packs`]; done at load). Call it
    /// again after replacing the tensors of a frozen model (a trainable one is left as is).
    pub fn pack_weights(&mut self) -> Result<()> {
        self.params.pack(&self.layout, self.cfg.num_hidden_layers)
    }

    /// A freshly initialised model.
    pub fn init(cfg: LmConfig, seed: u64, device: &Device, trainable: bool) -> Result<CausalLm> {
        cfg.validate()?;
        let params = weights::init(&cfg, seed, device, trainable)?;
        CausalLm::from_params(cfg, params, device)
    }

    /// A model of these parameters; a frozen model's block weights are packed here
    /// ([`CausalLm::pack_weights`]).
    pub fn from_params(cfg: LmConfig, mut params: Params, device: &Device) -> Result<CausalLm> {
        let arch = cfg.arch()?;
        let layout = BlockLayout::of(&cfg)?;
        let (cos, sin) = rope_tables(&cfg, device)?;
        params.pack(&layout, cfg.num_hidden_layers)?;
        Ok(CausalLm {
            cfg,
            arch,
            params,
            device: device.clone(),
            layout,
            cos,
            sin,
            checkpointing: false.into(),
            engine: Engine::from_env().to_bits().into(),
        })
    }

    /// The trainable variables, in a stable order (empty for a frozen model).
    pub fn vars(&self) -> &[(String, Var)] {
        &self.params.vars
    }

    /// Freezes every parameter whose name `keep` rejects, so that gradients, clipping and
    /// the optimizer see only the rest (methods that update a few layers, such as RMU). The
    /// frozen tensors share their storage with the former variables (no copy). Errors when
    /// the model is frozen already or when nothing would be left to train; returns the
    /// names still trainable.
    pub fn train_only(&mut self, keep: impl Fn(&str) -> bool) -> Result<Vec<String>> {
        if !self.params.is_trainable() {
            bail!("train_only: the model was loaded frozen");
        }
        // with LoRA, an adapter is kept when the weight it adapts is
        let adapted: std::collections::BTreeMap<String, String> = match &self.params.lora {
            None => Default::default(),
            Some(l) => l
                .pairs
                .keys()
                .flat_map(|w| {
                    let (a, b) = crate::lora::adapter_names(w);
                    [(a, w.clone()), (b, w.clone())]
                })
                .collect(),
        };
        let vars = std::mem::take(&mut self.params.vars);
        let mut kept = vec![];
        for (name, var) in vars {
            if keep(adapted.get(&name).unwrap_or(&name)) {
                kept.push((name, var));
            } else if adapted.contains_key(&name) {
                // an adapter left out of training keeps its values (B = 0: its weight unchanged)
            } else {
                self.params.tensors.insert(name, var.as_tensor().detach());
            }
        }
        if kept.is_empty() {
            if self.params.lora.is_some() {
                bail!(
                    "train_only: no LoRA adapter selected (lora.targets adapt {} weights, none of the ones to train)",
                    self.params.lora.as_ref().map_or(0, |l| l.pairs.len())
                );
            }
            bail!("train_only: no parameter selected (the model has {} tensors)", self.params.tensors.len());
        }
        let names = kept.iter().map(|(n, _)| n.clone()).collect();
        self.params.vars = kept;
        Ok(names)
    }

    /// A weight by name, with its LoRA adapter merged in when it has one.
    fn w(&self, name: &str) -> Result<Tensor> {
        let base = self.params.get(name)?;
        match &self.params.lora {
            None => Ok(base.clone()),
            Some(l) => l.apply(name, base),
        }
    }

    /// Attaches LoRA adapters ([`crate::lora`]) to the weights `cfg.targets` select: every
    /// parameter of the model is frozen, and the adapters (A random, B = 0, seeded by `seed`)
    /// become its only trainable variables. Returns the adapted weights' names. Errors when
    /// adapters are attached already or a target selects nothing.
    pub fn attach_lora(&mut self, cfg: &crate::lora::LoraConfig, seed: u64) -> Result<Vec<String>> {
        use rand::{Rng, SeedableRng};
        if self.params.lora.is_some() {
            bail!("LoRA adapters are attached to this model already");
        }
        let shapes: std::collections::BTreeMap<String, Vec<usize>> =
            self.params.tensors.iter().map(|(n, t)| (n.clone(), t.dims().to_vec())).collect();
        let names = crate::lora::select(&shapes, cfg)?;
        // the weights are now W + s·B·A: a frozen model's packs no longer hold them
        self.params.packs = Default::default();
        for (name, var) in std::mem::take(&mut self.params.vars) {
            self.params.tensors.insert(name, var.as_tensor().detach());
        }
        let dtype = self.dtype();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x4c6f_5241_5f69_6e69); // "LoRA_ini"
        let r = cfg.rank;
        let mut pairs = std::collections::BTreeMap::new();
        for name in &names {
            let (out, inp) = (shapes[name][0], shapes[name][1]); // selected weights are 2-D
            let bound = 1.0 / (inp as f64).sqrt();
            let a: Vec<f32> = (0..r * inp).map(|_| rng.random_range(-bound..bound) as f32).collect();
            let a = Var::from_tensor(&Tensor::from_vec(a, (r, inp), &self.device)?.to_dtype(dtype)?)?;
            let b = Var::from_tensor(&Tensor::zeros((out, r), dtype, &self.device)?)?;
            let (an, bn) = crate::lora::adapter_names(name);
            self.params.vars.push((an, a.clone()));
            self.params.vars.push((bn, b.clone()));
            pairs.insert(name.clone(), (a, b));
        }
        self.params.lora = Some(crate::lora::Adapters { cfg: cfg.clone(), pairs });
        Ok(names)
    }

    /// The dense weights with every LoRA adapter merged (W + s·B·A), as a checkpoint holds
    /// them; the parameters themselves without adapters.
    pub fn merged_state(&self) -> Result<std::collections::BTreeMap<String, Tensor>> {
        let mut out = self.params.tensors.clone();
        if let Some(l) = &self.params.lora {
            for name in l.pairs.keys() {
                out.insert(name.clone(), self.w(name)?.detach());
            }
        }
        Ok(out)
    }

    /// Full-sequence logits.
    ///
    /// `input_ids`: (batch, time) u32. `attention_mask`: optional (batch, time), 1 for real
    /// tokens and 0 for padding; padded keys are never attended to. Positions count from 0 at
    /// the first column, so pad on the right. Returns (batch, time, vocab) f32.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        self.run(|| {
            let x = self.hidden(input_ids, attention_mask)?;
            self.logits(&x)
        })
    }

    /// The final (normalised) hidden states, (batch, time, hidden): [`CausalLm::forward`]
    /// without the output projection, for callers that need logits at a few positions only.
    /// In f32 (converted from the weights' dtype).
    pub fn hidden(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        self.run(|| {
            let x = self.stream(input_ids, attention_mask, self.cfg.num_hidden_layers)?;
            Ok(rms_norm(&x, &self.w("model.norm.weight")?, self.cfg.rms_norm_eps)?.to_dtype(DType::F32)?)
        })
    }

    /// The residual stream after the first `layers` blocks (no final norm), (batch, time,
    /// hidden): the activations representation-level methods such as RMU read (Hugging
    /// Face's `output_hidden_states[layers]`). `layers` = 0 gives the embeddings.
    /// In f32 (converted from the weights' dtype).
    pub fn residual_stream(
        &self,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        layers: usize,
    ) -> Result<Tensor> {
        self.run(|| Ok(self.stream(input_ids, attention_mask, layers)?.to_dtype(DType::F32)?))
    }

    /// [`CausalLm::residual_stream`] in the weights' dtype.
    fn stream(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, layers: usize) -> Result<Tensor> {
        if layers > self.cfg.num_hidden_layers {
            bail!("residual stream after {layers} blocks requested, the model has {}", self.cfg.num_hidden_layers);
        }
        let (b, t) = input_ids.dims2().context("input_ids must be (batch, time)")?;
        if t > self.cfg.max_position_embeddings {
            bail!("sequence of {t} tokens exceeds max_position_embeddings ({})", self.cfg.max_position_embeddings);
        }
        let h = self.cfg.hidden_size;
        let emb = self.w("model.embed_tokens.weight")?;
        let mut x = emb.index_select(&input_ids.flatten_all()?, 0)?.reshape((b, t, h))?;
        let dt = x.dtype();
        let mask = attention_bias(t, attention_mask, &self.device)?; // (b or 1, 1, t, t)
        let mask = to_compute_dtype(&mask, dt)?;
        let cos = self.cos.narrow(0, 0, t)?.to_dtype(dt)?;
        let sin = self.sin.narrow(0, 0, t)?.to_dtype(dt)?;
        for l in 0..layers {
            x = self.block(l, &x, &mask, &cos, &sin, None)?;
        }
        Ok(x)
    }

    /// The output projection's weight (vocab, hidden): the embedding when tied.
    fn head(&self) -> Result<Tensor> {
        self.w(if self.cfg.tie_word_embeddings { "model.embed_tokens.weight" } else { "lm_head.weight" })
    }

    /// The output projection: (..., hidden) -> (..., vocab), in f32 (computed in the
    /// weights' dtype, then converted, as Hugging Face's `logits.float()`).
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.cfg.hidden_size;
        let head = self.head()?;
        if x.dim(D::Minus1)? != h {
            bail!("logits: hidden states have {} features, the model {h}", x.dim(D::Minus1)?);
        }
        self.run(|| Ok(fused::linear(&x.to_dtype(head.dtype())?, &head)?.to_dtype(DType::F32)?))
    }

    /// An empty key/value cache for [`CausalLm::forward_cached`].
    pub fn new_cache(&self) -> KvCache {
        KvCache { layers: vec![None; self.cfg.num_hidden_layers], len: 0 }
    }

    /// Incremental inference (no gradients needed): runs `input_ids` (batch, t) as the next
    /// `t` columns after the `cache.len()` columns already in `cache`, appends their keys and
    /// values to it, and returns the final hidden states (batch, t, hidden).
    ///
    /// `positions[r]` is the rotary position of row `r`'s first new column (rows may be left
    /// padded, so positions differ per row); `key_valid[r]` says for each of the
    /// `cache.len() + t` columns whether it is a real token (padding is never attended to).
    pub fn forward_cached(
        &self,
        input_ids: &Tensor,
        positions: &[usize],
        key_valid: &[Vec<bool>],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        self.run(|| self.forward_cached_now(input_ids, positions, key_valid, cache))
    }

    fn forward_cached_now(
        &self,
        input_ids: &Tensor,
        positions: &[usize],
        key_valid: &[Vec<bool>],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t) = input_ids.dims2().context("input_ids must be (batch, time)")?;
        let total = cache.len + t;
        if positions.len() != b || key_valid.len() != b || key_valid.iter().any(|k| k.len() != total) {
            bail!("forward_cached: need {b} positions and {b} key masks of {total} columns");
        }
        if cache.layers.len() != self.cfg.num_hidden_layers {
            bail!(
                "forward_cached: the cache has {} layers, the model {}",
                cache.layers.len(),
                self.cfg.num_hidden_layers
            );
        }
        let max_pos = positions.iter().max().copied().unwrap_or(0) + t;
        if max_pos > self.cfg.max_position_embeddings {
            bail!("position {max_pos} exceeds max_position_embeddings ({})", self.cfg.max_position_embeddings);
        }
        let h = self.cfg.hidden_size;
        let emb = self.w("model.embed_tokens.weight")?;
        let mut x = emb.index_select(&input_ids.flatten_all()?, 0)?.reshape((b, t, h))?;
        let pos: Vec<u32> = positions.iter().flat_map(|&p| (p..p + t).map(|q| q as u32)).collect();
        let pos = Tensor::from_vec(pos, b * t, &self.device)?;
        let hd = self.cfg.head_dim();
        let dt = x.dtype();
        let cos = self.cos.index_select(&pos, 0)?.reshape((b, t, hd))?.to_dtype(dt)?;
        let sin = self.sin.index_select(&pos, 0)?.reshape((b, t, hd))?.to_dtype(dt)?;
        let mut bias = vec![0f32; b * t * total];
        for r in 0..b {
            for i in 0..t {
                for j in 0..total {
                    bias[(r * t + i) * total + j] = if j > cache.len + i {
                        f32::NEG_INFINITY
                    } else if !key_valid[r][j] {
                        -1e9
                    } else {
                        0.0
                    };
                }
            }
        }
        let bias = to_compute_dtype(&Tensor::from_vec(bias, (b, 1, t, total), &self.device)?, dt)?;
        for l in 0..self.cfg.num_hidden_layers {
            x = self.block(l, &x, &bias, &cos, &sin, Some(&mut cache.layers[l]))?;
        }
        cache.len = total;
        Ok(rms_norm(&x, &self.w("model.norm.weight")?, self.cfg.rms_norm_eps)?.to_dtype(DType::F32)?)
    }

    fn block(
        &self,
        l: usize,
        x: &Tensor,
        mask: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Result<Tensor> {
        let p = format!("model.layers.{l}");
        let eps = self.cfg.rms_norm_eps;
        let layout = self.layout;
        let recompute = self.activation_checkpointing();
        // `block::applies` needs the stream itself fused-fast too: checked first, so the weights
        // (LoRA-merged ones included) are not looked up twice on the composed path
        if cache.is_none() && layout.fusable() && block::enabled() && fused::is_fast(&[x]) {
            // the whole block as one fused op (CPU, f32)
            let heads =
                Heads { q: self.cfg.num_attention_heads, kv: self.cfg.num_kv_heads(), dim: self.cfg.head_dim() };
            if let Some((wa, wm)) = self.params.block_packs(&layout, l) {
                // a frozen model: its weights packed at load
                if fused::is_fast(&[&wa, &wm]) {
                    let f = self.cfg.intermediate_size;
                    return block::llama_block_packed(x, &wa, &wm, &layout, f, heads, cos, sin, mask, eps, recompute);
                }
            }
            // owned, as a LoRA adapter's weight is merged here (W + s·B·A)
            let names = layout.attn_pack().into_iter().chain(layout.mlp_pack());
            let ws = names.map(|n| self.w(&format!("{p}.{n}"))).collect::<Result<Vec<_>>>()?;
            let bw = layout.weights(&ws)?;
            if block::applies(x, &bw) {
                return block::llama_block_with(x, &bw, heads, cos, sin, mask, eps, recompute);
            }
        }
        if recompute && cache.is_none() {
            // the composed block, its activations recomputed in the backward (with the engine
            // it was built with: the backward runs outside this model's `run`)
            let prefix = format!("{p}.");
            let names: Vec<String> = self.params.tensors.keys().filter(|n| n.starts_with(&prefix)).cloned().collect();
            let weights = names.iter().map(|n| self.w(n)).collect::<Result<Vec<_>>>()?;
            let (cfg, mask, cos, sin) = (self.cfg.clone(), mask.clone(), cos.clone(), sin.clone());
            let engine = engine::current();
            let f: crate::recompute::Recomputable = std::sync::Arc::new(move |x: &Tensor, ws: &[Tensor]| {
                let map: std::collections::HashMap<&str, &Tensor> = names.iter().map(String::as_str).zip(ws).collect();
                let get = |n: &str| -> Result<Tensor> {
                    map.get(n)
                        .map(|t| (*t).clone())
                        .with_context(|| format!("tensor {n:?} missing from the block's weights"))
                };
                let stack = |ns: &[String]| -> Result<Tensor> {
                    Ok(Tensor::cat(&ns.iter().map(|n| get(n)).collect::<Result<Vec<_>>>()?, 0)?)
                };
                let ws = BlockGet { get: &get, stack: &stack };
                engine::with(engine, || composed_block(&cfg, &layout, &ws, &p, x, &mask, &cos, &sin, None))
            });
            return crate::recompute::checkpoint(x, &weights, f);
        }
        let get = |n: &str| self.w(n);
        let stack = |ns: &[String]| -> Result<Tensor> {
            if self.params.lora.is_some() {
                Ok(Tensor::cat(&ns.iter().map(|n| self.w(n)).collect::<Result<Vec<_>>>()?, 0)?)
            } else {
                self.params.stacked(ns)
            }
        };
        composed_block(&self.cfg, &layout, &BlockGet { get: &get, stack: &stack }, &p, x, mask, cos, sin, cache)
    }

    /// Log-probabilities of `targets` under `logits`: (b, t, v) x (b, t) -> (b, t).
    ///
    /// On the CPU with f32 logits this is one fused operation with a hand-written backward
    /// (`g · (onehot − softmax)`), instead of a chain of full-vocabulary temporaries.
    pub fn target_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        if logits.device().is_cpu() && logits.dtype() == DType::F32 && targets.dtype() == DType::U32 {
            let (b, t, _) = logits.dims3().context("logits must be (batch, time, vocab)")?;
            if targets.dims() != [b, t] {
                bail!("targets have shape {:?}, logits {:?}", targets.dims(), logits.dims());
            }
            return Ok(logits.contiguous()?.apply_op2(&targets.contiguous()?, TargetLogProbs)?);
        }
        let lp = log_softmax_last(logits)?;
        Ok(lp.gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?.squeeze(D::Minus1)?)
    }

    /// Log-probabilities of `targets` (b, t) at the final hidden states `hidden` (b, t, h):
    /// [`CausalLm::logits`] and [`CausalLm::target_logprobs`] in one.
    ///
    /// On the CPU in f32 this is a single op: the logits are computed by row blocks, kept
    /// for the backward, and turned in place into their gradient there (no separate
    /// (b, t, vocab) gradient tensor for candle to allocate, zero and add into).
    pub fn hidden_target_logprobs(&self, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
        self.run(|| self.hidden_target_logprobs_now(hidden, targets))
    }

    fn hidden_target_logprobs_now(&self, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let head = self.head()?;
        let (b, t, h) = hidden.dims3().context("hidden states must be (batch, time, hidden)")?;
        if h != self.cfg.hidden_size || targets.dims() != [b, t] {
            bail!(
                "hidden states {:?} and targets {:?} do not fit a model of hidden size {}",
                hidden.dims(),
                targets.dims(),
                self.cfg.hidden_size
            );
        }
        if !(fused::is_fast(&[hidden, &head]) && targets.dtype() == DType::U32) {
            return CausalLm::target_logprobs(&self.logits(hidden)?, targets);
        }
        let tg = targets.flatten_all()?.to_vec1::<u32>()?;
        let v = self.cfg.vocab_size;
        if let Some(bad) = tg.iter().find(|&&x| x as usize >= v) {
            bail!("target id {bad} is outside the vocabulary of {v}");
        }
        let op = HeadLogProbs { targets: tg, saved: std::sync::Mutex::new(None) };
        Ok(hidden.contiguous()?.apply_op2(&head.contiguous()?, op)?.reshape((b, t))?)
    }

    /// The parameters as a name -> tensor map, ready to save (without LoRA adapters; see
    /// [`CausalLm::merged_state`]).
    pub fn state(&self) -> &std::collections::BTreeMap<String, Tensor> {
        &self.params.tensors
    }
}

pub use crate::fused::rms_norm;

/// A block's weight lookups by full parameter name: one tensor, and several stacked along
/// their first dimension (the packed q|k|v and gate|up projections; a view into a frozen
/// model's packs, else a concatenation).
struct BlockGet<'a> {
    get: &'a dyn Fn(&str) -> Result<Tensor>,
    stack: &'a dyn Fn(&[String]) -> Result<Tensor>,
}

/// One block from separate (composed or per-op fused) operations: the path off the fused
/// block (other dtypes and devices, the key/value cache, a layout the fused op does not
/// cover), read from the same [`BlockLayout`].
#[allow(clippy::too_many_arguments)]
fn composed_block(
    cfg: &LmConfig,
    layout: &BlockLayout,
    w: &BlockGet,
    p: &str,
    x: &Tensor,
    mask: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    cache: Option<&mut Option<(Tensor, Tensor)>>,
) -> Result<Tensor> {
    let eps = cfg.rms_norm_eps;
    let norm = |t: &Tensor, n: &str| -> Result<Tensor> { rms_norm(t, &(w.get)(&format!("{p}.{n}"))?, eps) };
    match layout.norm {
        NormPlace::Pre => {
            let hn = norm(x, layout.attn_norm())?;
            let x = (x + attention(cfg, layout, w, p, &hn, mask, cos, sin, cache)?)?;
            let hn = norm(&x, layout.mlp_norm())?;
            Ok((&x + mlp(w, p, &hn)?)?)
        }
        NormPlace::Post => {
            let a = attention(cfg, layout, w, p, x, mask, cos, sin, cache)?;
            let x = (x + norm(&a, layout.attn_norm())?)?;
            let m = mlp(w, p, &x)?;
            Ok((&x + norm(&m, layout.mlp_norm())?)?)
        }
    }
}

fn linear(w: &BlockGet, x: &Tensor, name: &str, bias: bool) -> Result<Tensor> {
    let y = fused::linear(x, &(w.get)(&format!("{name}.weight"))?)?;
    Ok(if bias { y.broadcast_add(&(w.get)(&format!("{name}.bias"))?)? } else { y })
}

#[allow(clippy::too_many_arguments)]
fn attention(
    cfg: &LmConfig,
    layout: &BlockLayout,
    w: &BlockGet,
    p: &str,
    x: &Tensor,
    mask: &Tensor,
    cos: &Tensor,
    sin: &Tensor,
    cache: Option<&mut Option<(Tensor, Tensor)>>,
) -> Result<Tensor> {
    let (b, t, _) = x.dims3()?;
    let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim());
    let scale = 1.0 / (hd as f64).sqrt();
    let name = |n: &str| format!("{p}.self_attn.{n}_proj");
    if cache.is_none() && !layout.qk_norm && fused::is_fast(&[x]) {
        // One matmul against the stacked q/k/v weights, then the fused attention op.
        let stack = |suffix: &str| (w.stack)(&["q", "k", "v"].map(|n| format!("{}.{suffix}", name(n))));
        let mut qkv = fused::linear(x, &stack("weight")?)?;
        if layout.qkv_bias {
            qkv = qkv.broadcast_add(&stack("bias")?)?;
        }
        let heads = attention::Heads { q: nh, kv: nkv, dim: hd };
        let out = attention::causal_attention(&qkv, heads, cos, sin, mask, scale)?;
        return linear(w, &out, &name("o"), layout.o_bias);
    }
    let mut q = linear(w, x, &name("q"), layout.qkv_bias)?;
    let mut k = linear(w, x, &name("k"), layout.qkv_bias)?;
    let v = linear(w, x, &name("v"), layout.qkv_bias)?;
    if layout.qk_norm {
        let eps = cfg.rms_norm_eps;
        q = rms_norm(&q, &(w.get)(&format!("{p}.self_attn.q_norm.weight"))?, eps)?;
        k = rms_norm(&k, &(w.get)(&format!("{p}.self_attn.k_norm.weight"))?, eps)?;
    }
    // (b, t, heads*hd) -> (b, heads, t, hd), q and k rotated
    let q = fused::rope_heads(&q, nh, Some((cos, sin)))?;
    let k = fused::rope_heads(&k, nkv, Some((cos, sin)))?;
    let v = fused::rope_heads(&v, nkv, None)?;
    let (k, v) = match cache {
        None => (k, v),
        Some(slot) => {
            let kv = match slot.take() {
                None => (k, v),
                Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            };
            *slot = Some(kv.clone());
            kv
        }
    };
    let k = attention::repeat_kv(k, nh / nkv)?;
    let v = attention::repeat_kv(v, nh / nkv)?;
    let scores = q.matmul(&k.t()?)?; // (b, nh, t, keys)
    let probs = fused::masked_softmax(&scores, mask, scale)?;
    let out = probs.matmul(&v)?; // (b, nh, t, hd)
    let out = out.transpose(1, 2)?.contiguous()?.reshape((b, t, nh * hd))?;
    linear(w, &out, &name("o"), layout.o_bias)
}

fn mlp(w: &BlockGet, p: &str, x: &Tensor) -> Result<Tensor> {
    if fused::is_fast(&[x]) {
        // One matmul against the stacked gate/up weights, then the packed SwiGLU.
        let wgu = (w.stack)(&[format!("{p}.mlp.gate_proj.weight"), format!("{p}.mlp.up_proj.weight")])?;
        let act = fused::silu_mul_packed(&fused::linear(x, &wgu)?)?;
        return linear(w, &act, &format!("{p}.mlp.down_proj"), false);
    }
    let g = linear(w, x, &format!("{p}.mlp.gate_proj"), false)?;
    let u = linear(w, x, &format!("{p}.mlp.up_proj"), false)?;
    linear(w, &fused::silu_mul(&g, &u)?, &format!("{p}.mlp.down_proj"), false)
}

/// Keys and values of the columns seen so far, per layer ((batch, kv heads, columns, head
/// dim), after the rotary embedding), for incremental decoding with
/// [`CausalLm::forward_cached`].
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Number of columns cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Log-softmax over the last dimension, differentiable.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let z = x.broadcast_sub(&m)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(z.broadcast_sub(&lse)?)
}

/// The inverse frequencies, with llama3 rope scaling when configured.
pub fn inv_freqs(cfg: &LmConfig) -> Vec<f64> {
    let hd = cfg.head_dim();
    let base: Vec<f64> = (0..hd / 2).map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / hd as f64)).collect();
    match &cfg.rope_scaling {
        Some(rs) if rs.rope_type == "llama3" => {
            let old = rs.original_max_position_embeddings as f64;
            let low_wavelen = old / rs.low_freq_factor;
            let high_wavelen = old / rs.high_freq_factor;
            base.into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / rs.factor
                    } else {
                        let smooth = (old / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
                        (1.0 - smooth) * f / rs.factor + smooth * f
                    }
                })
                .collect()
        }
        _ => base,
    }
}

fn rope_tables(cfg: &LmConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv = inv_freqs(cfg);
    let hd = cfg.head_dim();
    let n = cfg.max_position_embeddings;
    let mut cos = Vec::with_capacity(n * hd);
    let mut sin = Vec::with_capacity(n * hd);
    for pos in 0..n {
        // HF computes the angles in float32: (inv_freq as f32) * (pos as f32).
        for _half in 0..2 {
            for f in &inv {
                let a = (*f as f32) * (pos as f32);
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    Ok((Tensor::from_vec(cos, (n, hd), device)?, Tensor::from_vec(sin, (n, hd), device)?))
}

/// The attention bias in the weights' dtype; in f16 the large negative bias of padded keys
/// (beyond f16's range) is clamped to −65 000, still a zero weight after the softmax.
fn to_compute_dtype(bias: &Tensor, dtype: DType) -> Result<Tensor> {
    if dtype == DType::F16 {
        return Ok(bias.maximum(-65000f64)?.to_dtype(dtype)?);
    }
    Ok(bias.to_dtype(dtype)?)
}

/// Whether the device computes in bf16 (every CPU does, in software; a CUDA GPU from compute
/// capability 8.0, which candle's bf16 kernels need).
pub fn supports_bf16(device: &Device) -> bool {
    match device {
        Device::Cpu => true,
        // candle's kernels compile for bf16 only where the hardware has it; a zero-size
        // probe tells.
        _ => {
            Tensor::zeros(2, DType::BF16, device).and_then(|t| t.sum_all()).and_then(|t| t.to_dtype(DType::F32)).is_ok()
        }
    }
}

/// The additive attention bias: causal, plus padded keys masked out. (b|1, 1, t, t).
fn attention_bias(t: usize, attention_mask: Option<&Tensor>, device: &Device) -> Result<Tensor> {
    let neg = f32::NEG_INFINITY;
    let causal: Vec<f32> = (0..t).flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { neg })).collect();
    let causal = Tensor::from_vec(causal, (1, 1, t, t), device)?;
    match attention_mask {
        None => Ok(causal),
        Some(m) => {
            let (b, mt) = m.dims2()?;
            if mt != t {
                bail!("attention_mask has {mt} columns, input_ids has {t}");
            }
            // Padded keys get a large negative bias (not -inf: a fully padded query row stays finite).
            let keys = ((m.to_dtype(DType::F32)?.affine(-1.0, 1.0)?) * -1e9)?.reshape((b, 1, 1, t))?;
            Ok(causal.broadcast_add(&keys)?)
        }
    }
}

use crate::fused::par_rows;

/// log_softmax(row)[target] for every row of `logits` (rows of `v` values), over the pool.
fn target_logprob_rows(logits: &[f32], v: usize, targets: &[u32]) -> Vec<f32> {
    let mut out = vec![0f32; targets.len()];
    par_rows(&mut out, 1, |r0, o| {
        let mut e = Vec::with_capacity(v);
        for (k, o) in o.iter_mut().enumerate() {
            let r = r0 + k;
            let row = &logits[r * v..(r + 1) * v];
            *o = row[targets[r] as usize] - fused::log_sum_exp(row, &mut e);
        }
    });
    out
}

/// Turns a row of logits, in place, into the gradient of gr · log_softmax(row)[target]:
/// gr · (onehot(target) − softmax(row)); all zeros when gr = 0 (a masked position).
fn logprob_grad_row(row: &mut [f32], target: usize, gr: f32) {
    if gr == 0.0 {
        row.fill(0.0);
        return;
    }
    let m = fused::max(row);
    row.iter_mut().for_each(|z| *z -= m);
    fused::exp_in_place(row);
    let c = -gr / fused::sum(row);
    row.iter_mut().for_each(|z| *z *= c);
    row[target] += gr;
}

/// log_softmax(logits)[target] per row, fused (CPU, f32). Backward: [`TargetLogProbsGrad`].
struct TargetLogProbs;

impl CustomOp2 for TargetLogProbs {
    fn name(&self) -> &'static str {
        "target-logprobs"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = fused::slice::<f32>(s1, l1, "logits")?;
        let tg = fused::slice::<u32>(s2, l2, "targets")?;
        let v = *l1.dims().last().unwrap_or(&1);
        if tg.iter().any(|&t| t as usize >= v) {
            candle_core::bail!("a target id is outside the vocabulary of {v}");
        }
        Ok((CpuStorage::F32(target_logprob_rows(x, v, tg)), l2.shape().clone()))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = logits.apply_op3_no_bwd(targets, &grad.contiguous()?, &TargetLogProbsGrad)?;
        Ok((Some(g), None))
    }
}

/// d/dlogits of g · log_softmax(logits)[target] = g · (onehot(target) − softmax(logits)).
struct TargetLogProbsGrad;

impl CustomOp3 for TargetLogProbsGrad {
    fn name(&self) -> &'static str {
        "target-logprobs-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = fused::slice::<f32>(s1, l1, "logits")?;
        let tg = fused::slice::<u32>(s2, l2, "targets")?;
        let g = fused::slice::<f32>(s3, l3, "gradient")?;
        let v = *l1.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, v, |r0, o| {
            for (k, orow) in o.chunks_mut(v).enumerate() {
                let r = r0 + k;
                orow.copy_from_slice(&x[r * v..(r + 1) * v]);
                logprob_grad_row(orow, tg[r] as usize, g[r]);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The output projection fused with log_softmax(·)[target]: (n·, h) × (vocab, h) → (n·).
/// Forward keeps the logits; backward turns them into g·(onehot − softmax) in place and
/// runs the two products (dh = dz·W, dW = dzᵀ·h) on the worker pool.
struct HeadLogProbs {
    targets: Vec<u32>,
    saved: std::sync::Mutex<Option<Vec<f32>>>,
}

impl candle_core::CustomOp2 for HeadLogProbs {
    fn name(&self) -> &'static str {
        "head-logprobs"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = fused::slice::<f32>(s1, l1, "hidden states")?;
        let w = fused::slice::<f32>(s2, l2, "output projection")?;
        let (v, h) = l2.shape().dims2()?;
        let n = x.len() / h.max(1);
        if n != self.targets.len() {
            candle_core::bail!("{n} hidden rows for {} targets", self.targets.len());
        }
        let logits = fused::linear_fwd(x, w, n, h, v);
        let out = target_logprob_rows(&logits, v, &self.targets);
        *self.saved.lock().map_err(|_| candle_core::Error::Msg("head-logprobs: poisoned lock".into()))? = Some(logits);
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (v, h) = w.dims2()?;
        let n = self.targets.len();
        let saved =
            self.saved.lock().map_err(|_| candle_core::Error::Msg("head-logprobs: poisoned lock".into()))?.take();
        let (dx, dw) = fused::with_data(x, "hidden states", |x| {
            fused::with_data(w, "output projection", |w| {
                fused::with_data(g, "log-probability gradient", |g| {
                    // the logits of the forward, or recomputed if this graph is differentiated twice
                    let mut dz = saved.unwrap_or_else(|| fused::linear_fwd(x, w, n, h, v));
                    par_rows(&mut dz, v, |r0, o| {
                        for (k, row) in o.chunks_mut(v).enumerate() {
                            logprob_grad_row(row, self.targets[r0 + k] as usize, g[r0 + k]);
                        }
                    });
                    let (mut dx, mut dw) = (fused::output_buffer(n * h), fused::output_buffer(v * h));
                    fused::linear_bwd_into(x, w, &dz, n, h, v, &mut dx, &mut dw);
                    (dx, dw)
                })
            })
        })???;
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), Some(Tensor::from_vec(dw, w.shape(), w.device())?)))
    }
}
