//! The Llama transformer block as one fused CPU operation with a hand-written backward pass.
//!
//! [`llama_block`] computes, for the residual stream x (b, t, h),
//!
//! ```text
//! a   = x + Wo · attention(Wqkv · rms_norm(x, n₁))
//! out = a + Wd · (silu(Wg · ĥ) ⊙ Wu · ĥ),   ĥ = rms_norm(a, n₂)
//! ```
//!
//! as one graph node instead of about twelve (two norms, two weight concatenations, four
//! linear layers, the attention, the SwiGLU, two residual additions). candle's backward
//! allocates a zero tensor and adds into it for every input of every node, and in a block
//! those inputs are activations: ≈ 24 (b, t, h)-sized zero-fills and additions per layer
//! (the packed gate|up gradient alone is 8 of them), ≈ 7 % of a training step at the
//! `large` benchmark shape. Here the backward runs the same kernels as the separate
//! operations ([`crate::fused`], [`crate::attention`]) on slices, adds the residual
//! gradients in place, and hands candle three gradients: the stream's and two flat weight
//! packs (which candle splits back into the nine parameters):
//!
//! - attention pack: n₁ (h) | Wq | Wk | Wv (rows stacked: the packed q|k|v projection) | Wo
//!   [| bq | bk | bv when the q/k/v projections have biases, as in Qwen2],
//! - MLP pack: n₂ (h) | Wg | Wu (rows stacked: the packed gate|up projection) | Wd.
//!
//! The activations the backward needs (the normalised inputs, q|k|v, the attention's rotated
//! q/k and probabilities, its output, the mid-block stream, gate|up and the SwiGLU output)
//! are kept from the forward, and only when a gradient can flow (for scoring nothing is
//! kept). An output-projection bias and OLMo-2's norm placement are not covered: those
//! models take the separate operations. Results do not depend on the number of threads.

use crate::attention::{check_layout, Attention, Heads, Saved as AttnSaved};
use crate::fused::{self, linear_bwd_into, linear_fwd, linear_into, output_buffer, rms_norm_rows, rms_norm_rows_bwd, silu_mul_packed_rows, silu_mul_packed_rows_bwd, slice, with_data};
use anyhow::{bail, Result};
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// The nine parameters of one Llama block (Hugging Face layout: a linear weight is
/// (out features, in features)).
#[derive(Clone, Copy)]
pub struct BlockWeights<'a> {
    pub attn_norm: &'a Tensor,
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub o: &'a Tensor,
    pub mlp_norm: &'a Tensor,
    pub gate: &'a Tensor,
    pub up: &'a Tensor,
    pub down: &'a Tensor,
    /// The q, k and v projections' biases (Qwen2), or none.
    pub qkv_bias: Option<[&'a Tensor; 3]>,
}

/// Whether [`llama_block`] runs fused for these tensors (f32 on the CPU, fused kernels
/// enabled); elsewhere the caller composes the block from separate operations.
pub fn applies(x: &Tensor, w: &BlockWeights) -> bool {
    let biases = w.qkv_bias.map(|b| b.to_vec()).unwrap_or_default();
    fused::is_fast(&[x, w.attn_norm, w.q, w.k, w.v, w.o, w.mlp_norm, w.gate, w.up, w.down]) && fused::is_fast(&biases)
}

/// One pre-norm Llama block (q/k/v biases optional, as in Qwen2) on the CPU in f32: see the
/// module documentation.
///
/// `x`: (b, t, h). `cos`/`sin`: (t, heads.dim) rotary tables; `bias`: (b or 1, 1, t, t)
/// additive attention bias (causal, padded keys), as for [`crate::attention::causal_attention`].
/// Returns (b, t, h).
#[allow(clippy::too_many_arguments)]
pub fn llama_block(x: &Tensor, w: &BlockWeights, heads: Heads, cos: &Tensor, sin: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let (b, t, h) = x.dims3()?;
    check_layout("llama_block", b, t, heads, cos, sin, bias)?;
    let f = w.gate.dim(0)?;
    let (qd, kvd) = (heads.q * heads.dim, heads.kv * heads.dim);
    let expect = [
        ("input_layernorm", w.attn_norm, vec![h]),
        ("q_proj", w.q, vec![qd, h]),
        ("k_proj", w.k, vec![kvd, h]),
        ("v_proj", w.v, vec![kvd, h]),
        ("o_proj", w.o, vec![h, qd]),
        ("post_attention_layernorm", w.mlp_norm, vec![h]),
        ("gate_proj", w.gate, vec![f, h]),
        ("up_proj", w.up, vec![f, h]),
        ("down_proj", w.down, vec![h, f]),
    ];
    for (name, tensor, dims) in &expect {
        if tensor.dims() != dims.as_slice() {
            bail!("llama_block: {name} weight is {:?}, expected {dims:?} for hidden size {h} and {heads:?}", tensor.dims());
        }
    }
    if let Some(bs) = &w.qkv_bias {
        for (name, b, n) in [("q_proj", bs[0], qd), ("k_proj", bs[1], kvd), ("v_proj", bs[2], kvd)] {
            if b.dims() != [n] {
                bail!("llama_block: {name} bias is {:?}, expected [{n}]", b.dims());
            }
        }
    }
    if !applies(x, w) {
        bail!("llama_block: runs on f32 CPU tensors only (check `block::applies` first)");
    }
    let pack = |ts: &[&Tensor]| -> Result<Tensor> {
        let flat = ts.iter().map(|t| t.flatten_all()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&flat, 0)?)
    };
    let mut attn_parts = vec![w.attn_norm, w.q, w.k, w.v, w.o];
    attn_parts.extend(w.qkv_bias.iter().flatten());
    let wa = pack(&attn_parts)?;
    let wm = pack(&[w.mlp_norm, w.gate, w.up, w.down])?;
    let keep = x.track_op() || wa.track_op() || wm.track_op();
    let scale = 1.0 / (heads.dim as f64).sqrt();
    let attn = Attention::new(heads, cos, sin, bias, scale)?;
    let op = Block { h, f, heads, eps: eps as f32, attn, qkv_bias: w.qkv_bias.is_some(), keep, saved: Mutex::new(None) };
    Ok(x.contiguous()?.apply_op3(&wa, &wm, op)?)
}

struct Block {
    h: usize,
    f: usize,
    heads: Heads,
    eps: f32,
    attn: Attention,
    /// Whether the attention pack ends with the q/k/v biases.
    qkv_bias: bool,
    /// Whether to keep the activations for a backward pass.
    keep: bool,
    /// Kept (not taken) by the backward, so the same graph can be differentiated twice;
    /// freed with the graph.
    saved: Mutex<Option<Arc<Saved>>>,
}

/// The forward's activations, (b·t) rows each.
struct Saved {
    hn1: Vec<f32>,
    qkv: Vec<f32>,
    attn: AttnSaved,
    ao: Vec<f32>,
    mid: Vec<f32>,
    hn2: Vec<f32>,
    gu: Vec<f32>,
    act: Vec<f32>,
}

/// The parts of the two weight packs.
struct Parts<'a> {
    n1: &'a [f32],
    wqkv: &'a [f32],
    wo: &'a [f32],
    /// Empty without biases.
    bqkv: &'a [f32],
    n2: &'a [f32],
    wgu: &'a [f32],
    wd: &'a [f32],
}

impl Block {
    fn width(&self) -> usize {
        (self.heads.q + 2 * self.heads.kv) * self.heads.dim
    }

    fn bias_len(&self) -> usize {
        if self.qkv_bias {
            self.width()
        } else {
            0
        }
    }

    fn attn_pack_len(&self) -> usize {
        self.h + self.width() * self.h + self.h * self.heads.q * self.heads.dim + self.bias_len()
    }

    fn mlp_pack_len(&self) -> usize {
        self.h + 3 * self.f * self.h
    }

    fn parts<'a>(&self, wa: &'a [f32], wm: &'a [f32]) -> candle_core::Result<Parts<'a>> {
        if wa.len() != self.attn_pack_len() || wm.len() != self.mlp_pack_len() {
            candle_core::bail!(
                "llama block: weight packs of {} and {} values, expected {} and {}",
                wa.len(),
                wm.len(),
                self.attn_pack_len(),
                self.mlp_pack_len()
            );
        }
        let h = self.h;
        let (n1, rest) = wa.split_at(h);
        let (wqkv, rest) = rest.split_at(self.width() * h);
        let (wo, bqkv) = rest.split_at(rest.len() - self.bias_len());
        let (n2, rest) = wm.split_at(h);
        let (wgu, wd) = rest.split_at(2 * self.f * h);
        Ok(Parts { n1, wqkv, wo, bqkv, n2, wgu, wd })
    }
}

fn lock<T>(m: &Mutex<T>) -> candle_core::Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| candle_core::Error::Msg("llama block: poisoned lock".into()))
}

impl CustomOp3 for Block {
    fn name(&self) -> &'static str {
        "llama-block"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s1, l1, "residual stream")?;
        let p = self.parts(slice::<f32>(s2, l2, "attention weights")?, slice::<f32>(s3, l3, "MLP weights")?)?;
        let (b, t, h) = l1.shape().dims3()?;
        let (m, f, qd) = (b * t, self.f, self.heads.q * self.heads.dim);
        let hn1 = rms_norm_rows(x, p.n1, self.eps);
        let mut qkv = linear_fwd(&hn1, p.wqkv, m, h, self.width());
        if self.qkv_bias {
            add_rows(&mut qkv, p.bqkv);
        }
        let (ao, attn) = self.attn.forward(&qkv, b, t)?;
        let mut mid = x.to_vec();
        linear_into(&ao, p.wo, m, qd, h, &mut mid, true);
        let hn2 = rms_norm_rows(&mid, p.n2, self.eps);
        let gu = linear_fwd(&hn2, p.wgu, m, h, 2 * f);
        let act = silu_mul_packed_rows(&gu, f);
        let mut out = mid.clone();
        linear_into(&act, p.wd, m, f, h, &mut out, true);
        if self.keep {
            *lock(&self.saved)? = Some(Arc::new(Saved { hn1, qkv, attn, ao, mid, hn2, gu, act }));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, wa: &Tensor, wm: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(s) = lock(&self.saved)?.clone() else {
            candle_core::bail!("llama block: backward without a saved forward");
        };
        let (b, t, h) = x.dims3()?;
        let (m, f, qd, wdt) = (b * t, self.f, self.heads.q * self.heads.dim, self.width());
        let (dx, dwa, dwm) = with_data(x, "residual stream", |x| {
            with_data(wa, "attention weights", |wa| {
                with_data(wm, "MLP weights", |wm| {
                    with_data(g, "block gradient", |g| -> candle_core::Result<_> {
                        let p = self.parts(wa, wm)?;
                        let (mut dwa, mut dwm) = (output_buffer(wa.len()), output_buffer(wm.len()));
                        let (dn1, rest) = dwa.split_at_mut(h);
                        let (dwqkv, rest) = rest.split_at_mut(wdt * h);
                        let (dwo, dbqkv) = rest.split_at_mut(rest.len() - self.bias_len());
                        let (dn2, rest) = dwm.split_at_mut(h);
                        let (dwgu, dwd) = rest.split_at_mut(2 * f * h);
                        // MLP: out = mid + act·Wdᵀ
                        let mut d_act = output_buffer(m * f);
                        linear_bwd_into(&s.act, p.wd, g, m, f, h, &mut d_act, dwd);
                        let d_gu = silu_mul_packed_rows_bwd(&s.gu, &d_act, f);
                        drop(d_act);
                        let mut d_hn2 = output_buffer(m * h);
                        linear_bwd_into(&s.hn2, p.wgu, &d_gu, m, h, 2 * f, &mut d_hn2, dwgu);
                        drop(d_gu);
                        let mut d_mid = g.to_vec();
                        dn2.copy_from_slice(&rms_norm_rows_bwd(&s.mid, p.n2, &d_hn2, self.eps, &mut d_mid, true));
                        drop(d_hn2);
                        // attention: mid = x + ao·Woᵀ
                        let mut d_ao = output_buffer(m * qd);
                        linear_bwd_into(&s.ao, p.wo, &d_mid, m, qd, h, &mut d_ao, dwo);
                        let d_qkv = self.attn.backward(&s.qkv, &s.attn, &d_ao, b, t);
                        drop(d_ao);
                        if self.qkv_bias {
                            column_sums(&d_qkv, dbqkv);
                        }
                        let mut d_hn1 = output_buffer(m * h);
                        linear_bwd_into(&s.hn1, p.wqkv, &d_qkv, m, h, wdt, &mut d_hn1, dwqkv);
                        drop(d_qkv);
                        let mut dx = d_mid;
                        dn1.copy_from_slice(&rms_norm_rows_bwd(x, p.n1, &d_hn1, self.eps, &mut dx, true));
                        Ok((dx, dwa, dwm))
                    })
                })
            })
        })?????;
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), x.device())?),
            Some(Tensor::from_vec(dwa, wa.shape(), wa.device())?),
            Some(Tensor::from_vec(dwm, wm.shape(), wm.device())?),
        ))
    }
}

/// Adds `b` to every row of `x` (rows of `b.len()` values), over the pool.
fn add_rows(x: &mut [f32], b: &[f32]) {
    fused::par_rows(x, b.len(), |_, rows| {
        for row in rows.chunks_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv);
        }
    });
}

/// `out` ← the sums of the columns of `x` (rows of `out.len()` values), rows added in order.
fn column_sums(x: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for row in x.chunks(out.len()) {
        out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
    }
}
