//! The causal language model: one implementation of Hugging Face's `LlamaForCausalLM`,
//! `Qwen2ForCausalLM` and `Olmo2ForCausalLM` (Touvron et al. 2023; Qwen team 2024; OLMo team 2024).
//!
//! Unlike candle-transformers' models, [`CausalLm::forward`] is stateless and returns logits
//! for every position, and every operation it uses has a backward pass (RMSNorm, softmax and
//! rotary embeddings are written out from differentiable primitives), so the same model is
//! scored and fine-tuned.

use crate::config::{Arch, LmConfig};
use crate::weights::{self, Params};
use anyhow::{bail, Context, Result};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Device, Layout, Shape, Tensor, Var, D};
use std::path::Path;

/// A loaded model: config, parameters (frozen or trainable) and rotary tables.
pub struct CausalLm {
    pub cfg: LmConfig,
    pub arch: Arch,
    pub params: Params,
    pub device: Device,
    cos: Tensor,
    sin: Tensor,
}

impl CausalLm {
    /// Load a Hugging Face checkpoint folder (config.json + safetensors).
    pub fn load(dir: &Path, device: &Device, trainable: bool) -> Result<CausalLm> {
        let cfg = LmConfig::from_file(&dir.join("config.json"))?;
        let params = weights::load(&cfg, dir, device, DType::F32, trainable)?;
        CausalLm::from_params(cfg, params, device)
    }

    /// A freshly initialised model.
    pub fn init(cfg: LmConfig, seed: u64, device: &Device, trainable: bool) -> Result<CausalLm> {
        cfg.validate()?;
        let params = weights::init(&cfg, seed, device, trainable)?;
        CausalLm::from_params(cfg, params, device)
    }

    pub fn from_params(cfg: LmConfig, params: Params, device: &Device) -> Result<CausalLm> {
        let arch = cfg.arch()?;
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(CausalLm { cfg, arch, params, device: device.clone(), cos, sin })
    }

    /// The trainable variables, in a stable order (empty for a frozen model).
    pub fn vars(&self) -> &[(String, Var)] {
        &self.params.vars
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        self.params.get(name)
    }

    /// Full-sequence logits.
    ///
    /// `input_ids`: (batch, time) u32. `attention_mask`: optional (batch, time), 1 for real
    /// tokens and 0 for padding; padded keys are never attended to. Positions count from 0 at
    /// the first column, so pad on the right. Returns (batch, time, vocab) f32.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t) = input_ids.dims2().context("input_ids must be (batch, time)")?;
        if t > self.cfg.max_position_embeddings {
            bail!(
                "sequence of {t} tokens exceeds max_position_embeddings ({})",
                self.cfg.max_position_embeddings
            );
        }
        let h = self.cfg.hidden_size;
        let emb = self.w("model.embed_tokens.weight")?;
        let mut x = emb.index_select(&input_ids.flatten_all()?, 0)?.reshape((b, t, h))?;
        let mask = attention_bias(t, attention_mask, &self.device)?; // (b or 1, 1, t, t)
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        for l in 0..self.cfg.num_hidden_layers {
            x = self.block(l, &x, &mask, &cos, &sin)?;
        }
        let x = rms_norm(&x, self.w("model.norm.weight")?, self.cfg.rms_norm_eps)?;
        let head = if self.cfg.tie_word_embeddings {
            emb
        } else {
            self.w("lm_head.weight")?
        };
        let logits = x.reshape((b * t, h))?.matmul(&head.t()?)?;
        Ok(logits.reshape((b, t, self.cfg.vocab_size))?)
    }

    fn block(&self, l: usize, x: &Tensor, mask: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let p = format!("model.layers.{l}");
        let eps = self.cfg.rms_norm_eps;
        let w = |n: &str| self.w(&format!("{p}.{n}"));
        match self.arch {
            Arch::Llama | Arch::Qwen2 => {
                let hn = rms_norm(x, w("input_layernorm.weight")?, eps)?;
                let x = (x + self.attention(&p, &hn, mask, cos, sin)?)?;
                let hn = rms_norm(&x, w("post_attention_layernorm.weight")?, eps)?;
                Ok((&x + self.mlp(&p, &hn)?)?)
            }
            Arch::Olmo2 => {
                let a = self.attention(&p, x, mask, cos, sin)?;
                let x = (x + rms_norm(&a, w("post_attention_layernorm.weight")?, eps)?)?;
                let m = self.mlp(&p, &x)?;
                Ok((&x + rms_norm(&m, w("post_feedforward_layernorm.weight")?, eps)?)?)
            }
        }
    }

    fn linear(&self, x: &Tensor, name: &str, bias: bool) -> Result<Tensor> {
        let w = self.w(&format!("{name}.weight"))?;
        let (b, t, d) = x.dims3()?;
        let y = x.reshape((b * t, d))?.matmul(&w.t()?)?;
        let y = if bias { y.broadcast_add(self.w(&format!("{name}.bias"))?)? } else { y };
        Ok(y.reshape((b, t, w.dim(0)?))?)
    }

    fn attention(&self, p: &str, x: &Tensor, mask: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (self.cfg.num_attention_heads, self.cfg.num_kv_heads(), self.cfg.head_dim());
        let qkv_bias = self.cfg.qkv_bias();
        let mut q = self.linear(x, &format!("{p}.self_attn.q_proj"), qkv_bias)?;
        let mut k = self.linear(x, &format!("{p}.self_attn.k_proj"), qkv_bias)?;
        let v = self.linear(x, &format!("{p}.self_attn.v_proj"), qkv_bias)?;
        if self.arch == Arch::Olmo2 {
            let eps = self.cfg.rms_norm_eps;
            q = rms_norm(&q, self.w(&format!("{p}.self_attn.q_norm.weight"))?, eps)?;
            k = rms_norm(&k, self.w(&format!("{p}.self_attn.k_norm.weight"))?, eps)?;
        }
        // (b, t, heads*hd) -> (b, heads, t, hd)
        let q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let q = apply_rope(&q, cos, sin)?;
        let k = apply_rope(&k, cos, sin)?;
        let k = repeat_kv(k, nh / nkv)?;
        let v = repeat_kv(v, nh / nkv)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?; // (b, nh, t, t)
        let probs = softmax_last(&scores)?;
        let out = probs.matmul(&v)?; // (b, nh, t, hd)
        let out = out.transpose(1, 2)?.contiguous()?.reshape((b, t, nh * hd))?;
        self.linear(&out, &format!("{p}.self_attn.o_proj"), self.cfg.o_bias())
    }

    fn mlp(&self, p: &str, x: &Tensor) -> Result<Tensor> {
        let g = self.linear(x, &format!("{p}.mlp.gate_proj"), false)?;
        let u = self.linear(x, &format!("{p}.mlp.up_proj"), false)?;
        self.linear(&(g.silu()? * u)?, &format!("{p}.mlp.down_proj"), false)
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

    /// The parameters as a name -> tensor map, ready to save.
    pub fn state(&self) -> &std::collections::BTreeMap<String, Tensor> {
        &self.params.tensors
    }
}

/// RMSNorm in float32: x / sqrt(mean(x²) + eps) · w.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
}

/// Softmax over the last dimension from differentiable primitives (the max is detached:
/// softmax does not depend on it).
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?)
}

/// Log-softmax over the last dimension, differentiable.
pub fn log_softmax_last(x: &Tensor) -> Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    let z = x.broadcast_sub(&m)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(z.broadcast_sub(&lse)?)
}

fn rotate_half(x: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    Ok(Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?)
}

/// Hugging Face's rotary embedding (rotate-half layout). x: (b, h, t, d); cos/sin: (t, d).
fn apply_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    Ok((x.broadcast_mul(cos)? + rotate_half(x)?.broadcast_mul(sin)?)?)
}

fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, nkv, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.broadcast_as((b, nkv, n_rep, t, d))?.contiguous()?.reshape((b, nkv * n_rep, t, d))?)
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

/// Rows of `n` elements, split over candle's threads: `f(first_row, rows_slice)`.
fn par_rows<T: Send>(out: &mut [T], n: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let rows = out.len() / n.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (k, chunk) in out.chunks_mut(per * n).enumerate() {
            let f = &f;
            s.spawn(move || f(k * per, chunk));
        }
    });
}

fn contiguous_slice<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// log_softmax(logits)[target] per row, fused (CPU, f32). Backward: [`TargetLogProbsGrad`].
struct TargetLogProbs;

impl CustomOp2 for TargetLogProbs {
    fn name(&self) -> &'static str {
        "target-logprobs"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_slice::<f32>(s1, l1, "logits")?;
        let tg = contiguous_slice::<u32>(s2, l2, "targets")?;
        let v = *l1.dims().last().unwrap_or(&1);
        if tg.iter().any(|&t| t as usize >= v) {
            candle_core::bail!("a target id is outside the vocabulary of {v}");
        }
        let mut out = vec![0f32; tg.len()];
        par_rows(&mut out, 1, |r0, o| {
            for (k, o) in o.iter_mut().enumerate() {
                let r = r0 + k;
                let row = &x[r * v..(r + 1) * v];
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = row.iter().map(|&z| (z - m).exp()).sum();
                *o = row[tg[r] as usize] - m - s.ln();
            }
        });
        Ok((CpuStorage::F32(out), l2.shape().clone()))
    }

    fn bwd(&self, logits: &Tensor, targets: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
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
        let x = contiguous_slice::<f32>(s1, l1, "logits")?;
        let tg = contiguous_slice::<u32>(s2, l2, "targets")?;
        let g = contiguous_slice::<f32>(s3, l3, "gradient")?;
        let v = *l1.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, v, |r0, o| {
            for (k, orow) in o.chunks_mut(v).enumerate() {
                let r = r0 + k;
                let row = &x[r * v..(r + 1) * v];
                let gr = g[r];
                if gr == 0.0 {
                    continue; // masked position: zero gradient (already zero)
                }
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut s = 0f32;
                for (oj, &z) in orow.iter_mut().zip(row) {
                    let e = (z - m).exp();
                    *oj = e;
                    s += e;
                }
                let c = -gr / s;
                for oj in orow.iter_mut() {
                    *oj *= c;
                }
                orow[tg[r] as usize] += gr;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}
