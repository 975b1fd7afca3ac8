//! A Llama-family transformer block as one fused CPU operation with a hand-written backward
//! pass.
//!
//! [`llama_block`] computes, for the residual stream x (b, t, h), either the pre-norm block of
//! Llama and Qwen2 or OLMo-2's post-norm block:
//!
//! ```text
//! Llama, Qwen2:  a   = x + Wo · attention(Wqkv · rms_norm(x, n₁) [+ b_qkv])
//!                out = a + mlp(rms_norm(a, n₂)),        mlp(ĥ) = Wd · (silu(Wg · ĥ) ⊙ Wu · ĥ)
//! OLMo-2:        a   = x + rms_norm(Wo · attention(qk_norm(Wqkv · x)), n₁)
//!                out = a + rms_norm(mlp(a), n₂)
//! ```
//!
//! (OLMo-2's qk_norm: RMSNorm over the whole q projection and over the whole k projection,
//! each with its own weight.) One graph node instead of about twelve (two norms, two weight
//! concatenations, four linear layers, the attention, the SwiGLU, two residual additions).
//! candle's backward allocates a zero tensor and adds into it for every input of every node,
//! and in a block those inputs are activations: ≈ 24 (b, t, h)-sized zero-fills and
//! additions per layer (the packed gate|up gradient alone is 8 of them), ≈ 7 % of a training
//! step at the `large` benchmark shape. Here the backward runs the same kernels as the
//! separate operations ([`crate::fused`], [`crate::attention`]) on slices, adds the residual
//! gradients in place, and hands candle three gradients: the stream's and two flat weight
//! packs (which candle splits back into the parameters):
//!
//! - attention pack: n₁ (h) | Wq | Wk | Wv (rows stacked: the packed q|k|v projection) | Wo
//!   [| bq | bk | bv when the q/k/v projections have biases, as in Qwen2]
//!   [| q_norm | k_norm for OLMo-2],
//! - MLP pack: n₂ (h) | Wg | Wu (rows stacked: the packed gate|up projection) | Wd.
//!
//! The activations the backward needs (the norms' inputs, q|k|v, the attention's rotated q/k
//! and probabilities, its output, the mid-block stream, gate|up and the SwiGLU output) are
//! kept from the forward, and only when a gradient can flow (for scoring nothing is kept).
//! An output-projection bias is not covered (such a model takes the separate operations).
//! Results do not depend on the number of threads.

use crate::attention::{check_layout, Attention, Heads, Saved as AttnSaved};
use crate::fused::{
    self, linear_bwd_into, linear_fwd, linear_into, output_buffer, rms_norm_rows, rms_norm_rows_bwd,
    silu_mul_packed_rows, silu_mul_packed_rows_bwd, slice, with_data,
};
use anyhow::{bail, Result};
use candle_core::{CpuStorage, CustomOp3, Layout as StorageLayout, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// Where a block's two RMSNorms sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormPlace {
    /// On the stream before the attention and before the MLP (Llama, Qwen2).
    Pre,
    /// On the attention's and the MLP's outputs, before each residual addition (OLMo-2).
    Post,
}

/// One architecture's block, described once: the composed path ([`crate::model`]), the fused
/// op ([`llama_block`]) and the weight packs ([`BlockLayout::attn_pack`], [`BlockLayout::mlp_pack`]) all
/// read this, so a new architecture is one more arm of [`BlockLayout::of`] (and, if its block has a
/// shape the fused op does not cover, [`BlockLayout::fusable`] says so and the composed path runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    pub norm: NormPlace,
    /// Biases on the q, k and v projections (Qwen2; Llama's `attention_bias`).
    pub qkv_bias: bool,
    /// A bias on the output projection (Llama's `attention_bias`).
    pub o_bias: bool,
    /// RMSNorms over the whole q projection and the whole k projection (OLMo-2's q_norm,
    /// k_norm).
    pub qk_norm: bool,
}

impl BlockLayout {
    pub fn of(cfg: &crate::LmConfig) -> Result<BlockLayout> {
        let (norm, qk_norm) = match cfg.arch()? {
            crate::Arch::Llama | crate::Arch::Qwen2 => (NormPlace::Pre, false),
            crate::Arch::Olmo2 => (NormPlace::Post, true),
        };
        Ok(BlockLayout { norm, qkv_bias: cfg.qkv_bias(), o_bias: cfg.o_bias(), qk_norm })
    }

    /// The weight of the norm around the attention (within the layer, e.g.
    /// `input_layernorm.weight`).
    pub fn attn_norm(&self) -> &'static str {
        match self.norm {
            NormPlace::Pre => "input_layernorm.weight",
            NormPlace::Post => "post_attention_layernorm.weight",
        }
    }

    /// The weight of the norm around the MLP.
    pub fn mlp_norm(&self) -> &'static str {
        match self.norm {
            NormPlace::Pre => "post_attention_layernorm.weight",
            NormPlace::Post => "post_feedforward_layernorm.weight",
        }
    }

    /// The attention pack's tensors in pack order (names within the layer): the norm, the
    /// q|k|v weights (rows stacked: the packed projection), the output projection, the q/k/v
    /// biases (stacked too) when present, q_norm and k_norm when present.
    pub fn attn_pack(&self) -> Vec<&'static str> {
        let mut v = vec![
            self.attn_norm(),
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
        ];
        if self.qkv_bias {
            v.extend(["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]);
        }
        if self.qk_norm {
            v.extend(["self_attn.q_norm.weight", "self_attn.k_norm.weight"]);
        }
        v
    }

    /// The MLP pack's tensors in pack order: the norm, gate|up (rows stacked), down.
    pub fn mlp_pack(&self) -> [&'static str; 4] {
        [self.mlp_norm(), "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"]
    }

    /// Whether [`llama_block`] covers this block: no output-projection bias, and the q/k norms
    /// exactly with the post-norm layout (the two shapes it implements).
    pub fn fusable(&self) -> bool {
        !self.o_bias && (self.norm == NormPlace::Post) == self.qk_norm
    }

    /// The [`BlockWeights`] of tensors given in the order of [`BlockLayout::attn_pack`] followed by
    /// [`BlockLayout::mlp_pack`].
    pub fn weights<'a>(&self, ws: &'a [Tensor]) -> Result<BlockWeights<'a>> {
        let n = self.attn_pack().len();
        if ws.len() != n + 4 {
            bail!("block weights: {} tensors given, the layout has {}", ws.len(), n + 4);
        }
        Ok(BlockWeights {
            attn_norm: &ws[0],
            q: &ws[1],
            k: &ws[2],
            v: &ws[3],
            o: &ws[4],
            mlp_norm: &ws[n],
            gate: &ws[n + 1],
            up: &ws[n + 2],
            down: &ws[n + 3],
            qkv_bias: self.qkv_bias.then(|| [&ws[5], &ws[6], &ws[7]]),
            olmo2_qk_norm: self.qk_norm.then(|| {
                let at = if self.qkv_bias { 8 } else { 5 };
                [&ws[at], &ws[at + 1]]
            }),
        })
    }
}

/// The parameters of one block (Hugging Face layout: a linear weight is (out features, in
/// features)).
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
    /// OLMo-2's layout, with the weights of its RMSNorms over the whole q and k projections
    /// (q_norm, k_norm): the block's norms then come after the attention and after the MLP,
    /// on their outputs (`attn_norm` = post_attention_layernorm, `mlp_norm` =
    /// post_feedforward_layernorm), and the stream enters both unnormalised.
    pub olmo2_qk_norm: Option<[&'a Tensor; 2]>,
}

/// Whether the engine of the graph being built ([`crate::engine::current`]) runs whole blocks
/// as this op; off ([`crate::Engine::FUSED_OPS`], or `UNLEARN_NO_FUSED_BLOCK` set), the model
/// runs its blocks as separate (still fused) operations.
pub fn enabled() -> bool {
    crate::engine::current().block()
}

/// Whether [`llama_block`] runs fused for these tensors (f32 on the CPU, fused kernels and
/// this op enabled); elsewhere the caller composes the block from separate operations.
pub fn applies(x: &Tensor, w: &BlockWeights) -> bool {
    if !enabled() {
        return false;
    }
    let mut extra = w.qkv_bias.map(|b| b.to_vec()).unwrap_or_default();
    extra.extend(w.olmo2_qk_norm.iter().flatten());
    fused::is_fast(&[x, w.attn_norm, w.q, w.k, w.v, w.o, w.mlp_norm, w.gate, w.up, w.down]) && fused::is_fast(&extra)
}

/// One Llama block (q/k/v biases optional, as in Qwen2; OLMo-2's norm layout optional) on
/// the CPU in f32: see the module documentation.
///
/// `x`: (b, t, h). `cos`/`sin`: (t, heads.dim) rotary tables; `bias`: (b or 1, 1, t, t)
/// additive attention bias (causal, padded keys), as for [`crate::attention::causal_attention`].
/// Returns (b, t, h).
#[allow(clippy::too_many_arguments)]
pub fn llama_block(
    x: &Tensor,
    w: &BlockWeights,
    heads: Heads,
    cos: &Tensor,
    sin: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    llama_block_with(x, w, heads, cos, sin, bias, eps, false)
}

/// [`llama_block`] with activation checkpointing when `recompute`: the forward keeps no
/// activations (only its inputs, as graph arguments), and the backward first runs the
/// forward again to get them. Gradients are bit-identical to [`llama_block`]'s.
#[allow(clippy::too_many_arguments)]
pub fn llama_block_with(
    x: &Tensor,
    w: &BlockWeights,
    heads: Heads,
    cos: &Tensor,
    sin: &Tensor,
    bias: &Tensor,
    eps: f64,
    recompute: bool,
) -> Result<Tensor> {
    let (b, t, h) = x.dims3()?;
    check_layout("llama_block", b, t, heads, cos, sin, bias)?;
    let f = w.gate.dim(0)?;
    let (qd, kvd) = (heads.q * heads.dim, heads.kv * heads.dim);
    let olmo2 = w.olmo2_qk_norm.is_some();
    // the layout these weights describe (the norm names come from it, as for the packs)
    let layout = BlockLayout {
        norm: if olmo2 { NormPlace::Post } else { NormPlace::Pre },
        qkv_bias: w.qkv_bias.is_some(),
        o_bias: false,
        qk_norm: olmo2,
    };
    let norm_name = |n: &'static str| n.trim_end_matches(".weight");
    let expect = [
        (norm_name(layout.attn_norm()), w.attn_norm, vec![h]),
        ("q_proj", w.q, vec![qd, h]),
        ("k_proj", w.k, vec![kvd, h]),
        ("v_proj", w.v, vec![kvd, h]),
        ("o_proj", w.o, vec![h, qd]),
        (norm_name(layout.mlp_norm()), w.mlp_norm, vec![h]),
        ("gate_proj", w.gate, vec![f, h]),
        ("up_proj", w.up, vec![f, h]),
        ("down_proj", w.down, vec![h, f]),
    ];
    for (name, tensor, dims) in &expect {
        if tensor.dims() != dims.as_slice() {
            bail!(
                "llama_block: {name} weight is {:?}, expected {dims:?} for hidden size {h} and {heads:?}",
                tensor.dims()
            );
        }
    }
    if let Some(bs) = &w.qkv_bias {
        for (name, b, n) in [("q_proj", bs[0], qd), ("k_proj", bs[1], kvd), ("v_proj", bs[2], kvd)] {
            if b.dims() != [n] {
                bail!("llama_block: {name} bias is {:?}, expected [{n}]", b.dims());
            }
        }
    }
    if let Some(ns) = &w.olmo2_qk_norm {
        for (name, n, len) in [("q_norm", ns[0], qd), ("k_norm", ns[1], kvd)] {
            if n.dims() != [len] {
                bail!("llama_block: {name} weight is {:?}, expected [{len}]", n.dims());
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
    attn_parts.extend(w.olmo2_qk_norm.iter().flatten());
    let wa = pack(&attn_parts)?;
    let wm = pack(&[w.mlp_norm, w.gate, w.up, w.down])?;
    run(x, &wa, &wm, layout.qkv_bias, olmo2, f, heads, cos, sin, bias, eps, recompute)
}

/// [`llama_block_with`] on weights already packed in the order of [`BlockLayout::attn_pack`] and
/// [`BlockLayout::mlp_pack`] (flat; a frozen model's packs, [`crate::weights::Packs`]): the same
/// op, without concatenating the weights. `f` is the MLP's intermediate size. The packs'
/// lengths are checked against the layout and the sizes.
#[allow(clippy::too_many_arguments)]
pub fn llama_block_packed(
    x: &Tensor,
    attn_pack: &Tensor,
    mlp_pack: &Tensor,
    layout: &BlockLayout,
    f: usize,
    heads: Heads,
    cos: &Tensor,
    sin: &Tensor,
    bias: &Tensor,
    eps: f64,
    recompute: bool,
) -> Result<Tensor> {
    let (b, t, _) = x.dims3()?;
    check_layout("llama_block", b, t, heads, cos, sin, bias)?;
    if !layout.fusable() {
        bail!("llama_block: the fused block does not cover the layout {layout:?}");
    }
    if !(enabled() && fused::is_fast(&[x, attn_pack, mlp_pack])) {
        bail!("llama_block: runs on f32 CPU tensors only (check `block::applies` first)");
    }
    for (name, p) in [("attention", attn_pack), ("MLP", mlp_pack)] {
        if p.rank() != 1 {
            bail!("llama_block: the {name} weight pack is {:?}, expected one flat dimension", p.dims());
        }
    }
    let olmo2 = layout.norm == NormPlace::Post;
    run(x, attn_pack, mlp_pack, layout.qkv_bias, olmo2, f, heads, cos, sin, bias, eps, recompute)
}

#[allow(clippy::too_many_arguments)]
fn run(
    x: &Tensor,
    wa: &Tensor,
    wm: &Tensor,
    qkv_bias: bool,
    olmo2: bool,
    f: usize,
    heads: Heads,
    cos: &Tensor,
    sin: &Tensor,
    bias: &Tensor,
    eps: f64,
    recompute: bool,
) -> Result<Tensor> {
    let h = x.dim(2)?;
    let keep = x.track_op() || wa.track_op() || wm.track_op();
    let scale = 1.0 / (heads.dim as f64).sqrt();
    let attn = Attention::new(heads, cos, sin, bias, scale)?;
    let op = Block {
        h,
        f,
        heads,
        eps: eps as f32,
        attn,
        qkv_bias,
        olmo2,
        keep: keep && !recompute,
        recompute,
        saved: Mutex::new(None),
    };
    let expect = (op.attn_pack_len(), op.mlp_pack_len());
    if (wa.elem_count(), wm.elem_count()) != expect {
        bail!(
            "llama_block: weight packs of {} and {} values, expected {} and {} for hidden size {h}, \
             intermediate size {f} and {heads:?}",
            wa.elem_count(),
            wm.elem_count(),
            expect.0,
            expect.1
        );
    }
    Ok(x.contiguous()?.apply_op3(wa, wm, op)?)
}

struct Block {
    h: usize,
    f: usize,
    heads: Heads,
    eps: f32,
    attn: Attention,
    /// Whether the attention pack holds the q/k/v biases.
    qkv_bias: bool,
    /// OLMo-2's layout (the attention pack then ends with q_norm and k_norm).
    olmo2: bool,
    /// Whether to keep the activations for a backward pass.
    keep: bool,
    /// Activation checkpointing: nothing kept; the backward recomputes the forward.
    recompute: bool,
    /// Kept (not taken) by the backward, so the same graph can be differentiated twice;
    /// freed with the graph.
    saved: Mutex<Option<Arc<Saved>>>,
}

/// The forward's activations, (b·t) rows each.
struct Saved {
    /// The q|k|v projection's input: the normalised stream (pre-norm; empty for OLMo-2,
    /// whose input is the stream itself).
    hn1: Vec<f32>,
    /// OLMo-2: the q|k|v projection before its q/k norms (else empty).
    qkv_raw: Vec<f32>,
    /// The attention's input.
    qkv: Vec<f32>,
    attn: AttnSaved,
    ao: Vec<f32>,
    /// OLMo-2: the output projection before its norm (else empty).
    o: Vec<f32>,
    mid: Vec<f32>,
    /// The MLP's input: the normalised mid-block stream (pre-norm; empty for OLMo-2).
    hn2: Vec<f32>,
    gu: Vec<f32>,
    act: Vec<f32>,
    /// OLMo-2: the MLP's output before its norm (else empty).
    mo: Vec<f32>,
}

/// The parts of the two weight packs.
struct Parts<'a> {
    n1: &'a [f32],
    wqkv: &'a [f32],
    wo: &'a [f32],
    /// Empty without biases.
    bqkv: &'a [f32],
    /// OLMo-2's q_norm and k_norm weights (else empty).
    qn: &'a [f32],
    kn: &'a [f32],
    n2: &'a [f32],
    wgu: &'a [f32],
    wd: &'a [f32],
}

impl Block {
    fn bias_len(&self) -> usize {
        if self.qkv_bias {
            self.heads.width()
        } else {
            0
        }
    }

    /// q_norm and k_norm values at the end of the attention pack.
    fn qk_norm_len(&self) -> usize {
        if self.olmo2 {
            (self.heads.q + self.heads.kv) * self.heads.dim
        } else {
            0
        }
    }

    fn attn_pack_len(&self) -> usize {
        self.h
            + self.heads.width() * self.h
            + self.h * self.heads.q * self.heads.dim
            + self.bias_len()
            + self.qk_norm_len()
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
        let (wqkv, rest) = rest.split_at(self.heads.width() * h);
        let (wo, rest) = rest.split_at(rest.len() - self.bias_len() - self.qk_norm_len());
        let (bqkv, qkn) = rest.split_at(self.bias_len());
        let (qn, kn) = qkn.split_at(if self.olmo2 { self.heads.q * self.heads.dim } else { 0 });
        let (n2, rest) = wm.split_at(h);
        let (wgu, wd) = rest.split_at(2 * self.f * h);
        Ok(Parts { n1, wqkv, wo, bqkv, qn, kn, n2, wgu, wd })
    }
}

impl Block {
    /// The weight-gradient packs split like the weights: (dn1, dWqkv, dWo, dbqkv, dqn, dkn)
    /// and (dn2, dWgu, dWd).
    #[allow(clippy::type_complexity)]
    fn grad_parts<'a>(
        &self,
        dwa: &'a mut [f32],
        dwm: &'a mut [f32],
    ) -> (
        (&'a mut [f32], &'a mut [f32], &'a mut [f32], &'a mut [f32], &'a mut [f32], &'a mut [f32]),
        (&'a mut [f32], &'a mut [f32], &'a mut [f32]),
    ) {
        let h = self.h;
        let (dn1, rest) = dwa.split_at_mut(h);
        let (dwqkv, rest) = rest.split_at_mut(self.heads.width() * h);
        let tail = self.bias_len() + self.qk_norm_len();
        let (dwo, rest) = rest.split_at_mut(rest.len() - tail);
        let (dbqkv, rest) = rest.split_at_mut(self.bias_len());
        let (dqn, dkn) = rest.split_at_mut(if self.olmo2 { self.heads.q * self.heads.dim } else { 0 });
        let (dn2, rest) = dwm.split_at_mut(h);
        let (dwgu, dwd) = rest.split_at_mut(2 * self.f * h);
        ((dn1, dwqkv, dwo, dbqkv, dqn, dkn), (dn2, dwgu, dwd))
    }

    /// Llama / Qwen2: mid = x + Wo·attn(Wqkv·rms(x) [+ b]), out = mid + mlp(rms(mid)).
    fn forward_pre_norm(&self, x: &[f32], p: &Parts, b: usize, t: usize) -> candle_core::Result<(Saved, Vec<f32>)> {
        let (m, h, f, qd) = (b * t, self.h, self.f, self.heads.q * self.heads.dim);
        let hn1 = rms_norm_rows(x, p.n1, self.eps);
        let mut qkv = linear_fwd(&hn1, p.wqkv, m, h, self.heads.width());
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
        let saved = Saved { hn1, qkv_raw: vec![], qkv, attn, ao, o: vec![], mid, hn2, gu, act, mo: vec![] };
        Ok((saved, out))
    }

    /// OLMo-2: qkv = qk_norm(Wqkv·x), mid = x + rms(Wo·attn(qkv)), out = mid + rms(mlp(mid)).
    fn forward_olmo2(&self, x: &[f32], p: &Parts, b: usize, t: usize) -> candle_core::Result<(Saved, Vec<f32>)> {
        let (m, h, f, qd, kvd, w) =
            (b * t, self.h, self.f, self.heads.q * self.heads.dim, self.heads.kv * self.heads.dim, self.heads.width());
        let mut qkv = linear_fwd(x, p.wqkv, m, h, w);
        if self.qkv_bias {
            add_rows(&mut qkv, p.bqkv);
        }
        let qkv_raw = qkv.clone();
        put_columns(&mut qkv, w, 0, &rms_norm_rows(&columns(&qkv_raw, w, 0, qd), p.qn, self.eps));
        put_columns(&mut qkv, w, qd, &rms_norm_rows(&columns(&qkv_raw, w, qd, kvd), p.kn, self.eps));
        let (ao, attn) = self.attn.forward(&qkv, b, t)?;
        let o = linear_fwd(&ao, p.wo, m, qd, h);
        let mut mid = rms_norm_rows(&o, p.n1, self.eps);
        add_into(&mut mid, x);
        let gu = linear_fwd(&mid, p.wgu, m, h, 2 * f);
        let act = silu_mul_packed_rows(&gu, f);
        let mo = linear_fwd(&act, p.wd, m, f, h);
        let mut out = rms_norm_rows(&mo, p.n2, self.eps);
        add_into(&mut out, &mid);
        let saved = Saved { hn1: vec![], qkv_raw, qkv, attn, ao, o, mid, hn2: vec![], gu, act, mo };
        Ok((saved, out))
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_pre_norm(
        &self,
        x: &[f32],
        p: &Parts,
        s: &Saved,
        g: &[f32],
        b: usize,
        t: usize,
        dwa: &mut [f32],
        dwm: &mut [f32],
    ) -> Vec<f32> {
        let (m, h, f, qd, wdt) = (b * t, self.h, self.f, self.heads.q * self.heads.dim, self.heads.width());
        let ((dn1, dwqkv, dwo, dbqkv, _, _), (dn2, dwgu, dwd)) = self.grad_parts(dwa, dwm);
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
        dx
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_olmo2(
        &self,
        x: &[f32],
        p: &Parts,
        s: &Saved,
        g: &[f32],
        b: usize,
        t: usize,
        dwa: &mut [f32],
        dwm: &mut [f32],
    ) -> Vec<f32> {
        let (m, h, f, qd, kvd, w) =
            (b * t, self.h, self.f, self.heads.q * self.heads.dim, self.heads.kv * self.heads.dim, self.heads.width());
        let ((dn1, dwqkv, dwo, dbqkv, dqn, dkn), (dn2, dwgu, dwd)) = self.grad_parts(dwa, dwm);
        // MLP: out = mid + rms(mo), mo = act·Wdᵀ, gu = mid·Wguᵀ
        let mut d_mo = output_buffer(m * h);
        dn2.copy_from_slice(&rms_norm_rows_bwd(&s.mo, p.n2, g, self.eps, &mut d_mo, false));
        let mut d_act = output_buffer(m * f);
        linear_bwd_into(&s.act, p.wd, &d_mo, m, f, h, &mut d_act, dwd);
        drop(d_mo);
        let d_gu = silu_mul_packed_rows_bwd(&s.gu, &d_act, f);
        drop(d_act);
        let mut d_mid = output_buffer(m * h);
        linear_bwd_into(&s.mid, p.wgu, &d_gu, m, h, 2 * f, &mut d_mid, dwgu);
        drop(d_gu);
        add_into(&mut d_mid, g);
        // attention: mid = x + rms(o), o = ao·Woᵀ
        let mut d_o = output_buffer(m * h);
        dn1.copy_from_slice(&rms_norm_rows_bwd(&s.o, p.n1, &d_mid, self.eps, &mut d_o, false));
        let mut d_ao = output_buffer(m * qd);
        linear_bwd_into(&s.ao, p.wo, &d_o, m, qd, h, &mut d_ao, dwo);
        drop(d_o);
        let mut d_qkv = self.attn.backward(&s.qkv, &s.attn, &d_ao, b, t);
        drop(d_ao);
        // through the q and k norms (v passes as it is)
        for (col0, n, weight, dweight) in [(0, qd, p.qn, dqn), (qd, kvd, p.kn, dkn)] {
            let mut d_raw = output_buffer(m * n);
            let dw = rms_norm_rows_bwd(
                &columns(&s.qkv_raw, w, col0, n),
                weight,
                &columns(&d_qkv, w, col0, n),
                self.eps,
                &mut d_raw,
                false,
            );
            dweight.copy_from_slice(&dw);
            put_columns(&mut d_qkv, w, col0, &d_raw);
        }
        if self.qkv_bias {
            column_sums(&d_qkv, dbqkv);
        }
        let mut dx = output_buffer(m * h);
        linear_bwd_into(x, p.wqkv, &d_qkv, m, h, w, &mut dx, dwqkv);
        add_into(&mut dx, &d_mid);
        dx
    }
}

fn lock<T>(m: &Mutex<T>) -> candle_core::Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| candle_core::Error::Msg("llama block: poisoned lock".into()))
}

impl CustomOp3 for Block {
    fn name(&self) -> &'static str {
        "llama-block"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &StorageLayout,
        s2: &CpuStorage,
        l2: &StorageLayout,
        s3: &CpuStorage,
        l3: &StorageLayout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s1, l1, "residual stream")?;
        let p = self.parts(slice::<f32>(s2, l2, "attention weights")?, slice::<f32>(s3, l3, "MLP weights")?)?;
        let (b, t, _) = l1.shape().dims3()?;
        let saved = if self.olmo2 { self.forward_olmo2(x, &p, b, t)? } else { self.forward_pre_norm(x, &p, b, t)? };
        let out = saved.1;
        if self.keep {
            *lock(&self.saved)? = Some(Arc::new(saved.0));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wa: &Tensor,
        wm: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, t, _) = x.dims3()?;
        let kept = lock(&self.saved)?.clone();
        let s = match kept {
            Some(s) => s,
            // activation checkpointing: the forward again, this time keeping its activations
            // (used for this backward only, freed after it)
            None if self.recompute => with_data(x, "residual stream", |xd| {
                with_data(wa, "attention weights", |wa| {
                    with_data(wm, "MLP weights", |wm| -> candle_core::Result<Arc<Saved>> {
                        let p = self.parts(wa, wm)?;
                        let saved = if self.olmo2 {
                            self.forward_olmo2(xd, &p, b, t)?
                        } else {
                            self.forward_pre_norm(xd, &p, b, t)?
                        };
                        Ok(Arc::new(saved.0))
                    })
                })
            })????,
            None => candle_core::bail!("llama block: backward without a saved forward"),
        };
        let (dx, dwa, dwm) = with_data(x, "residual stream", |x| {
            with_data(wa, "attention weights", |wa| {
                with_data(wm, "MLP weights", |wm| {
                    with_data(g, "block gradient", |g| -> candle_core::Result<_> {
                        let p = self.parts(wa, wm)?;
                        let (mut dwa, mut dwm) = (output_buffer(wa.len()), output_buffer(wm.len()));
                        let dx = if self.olmo2 {
                            self.backward_olmo2(x, &p, &s, g, b, t, &mut dwa, &mut dwm)
                        } else {
                            self.backward_pre_norm(x, &p, &s, g, b, t, &mut dwa, &mut dwm)
                        };
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

/// `x` ← `x` + `y`, element-wise.
fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, &b)| *a += b);
}

/// Columns `col0..col0 + n` of the rows of `x` (rows of `w` values), as contiguous rows.
fn columns(x: &[f32], w: usize, col0: usize, n: usize) -> Vec<f32> {
    x.chunks(w).flat_map(|row| &row[col0..col0 + n]).copied().collect()
}

/// Writes the rows of `cols` (rows of `n` values) into columns `col0..col0 + n` of `x`.
fn put_columns(x: &mut [f32], w: usize, col0: usize, cols: &[f32]) {
    let n = cols.len() / (x.len() / w).max(1);
    for (row, c) in x.chunks_mut(w).zip(cols.chunks(n)) {
        row[col0..col0 + n].copy_from_slice(c);
    }
}
