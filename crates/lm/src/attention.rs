//! Causal self-attention as one fused CPU operation with a hand-written backward pass.
//!
//! [`causal_attention`] takes the packed output of the q/k/v projection, (b, t, (h + 2·h_kv)·d),
//! and returns the heads' outputs merged back to (b, t, h·d): the split into heads, the rotary
//! embedding (Hugging Face's rotate-half layout), grouped-query sharing of keys and values,
//! scaled scores plus the additive mask, softmax and the weighted sum of values, all in one
//! graph node. Composed from candle primitives (see [`causal_attention_composed`], the
//! reference the tests compare against) the same computation is about fifteen nodes, and
//! candle's backward allocates a zero tensor and adds into it for each of them, several the
//! size of the (b, h, t, t) score matrix; candle's batched matmul also runs the b·h small
//! products one after another, each split over threads. Here the work is split over threads
//! by (batch, head), each product is a single-threaded `gemm` call, the rotated queries and
//! keys and the attention probabilities are kept from the forward for the backward:
//!
//! - dV_g = Σ_h Pₕᵀ·dOₕ, dPₕ = dOₕ·V_gᵀ, dSₕ = scale · Pₕ ⊙ (dPₕ − rowsum(dPₕ ⊙ Pₕ)),
//!   dQₕ = dSₕ·K_g, dK_g = Σ_h dSₕᵀ·Qₕ (h over the heads sharing key/value head g),
//! - then the inverse rotation of dQ and dK, written back into the packed layout.
//!
//! Results do not depend on the number of threads (each (batch, head) is computed whole by
//! one thread, in a fixed order).

use crate::fused::{self, matmul, output_buffer, par_rows, slice, with_data, Mat};
use anyhow::{bail, Result};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, D};
use std::sync::{Arc, Mutex};

/// Head counts and size of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    /// Query heads.
    pub q: usize,
    /// Key/value heads (divides `q`).
    pub kv: usize,
    /// Features per head (even, for the rotary embedding).
    pub dim: usize,
}

impl Heads {
    /// Features of the packed q|k|v projection: (q + 2·kv)·dim.
    pub(crate) fn width(&self) -> usize {
        (self.q + 2 * self.kv) * self.dim
    }
}

/// Causal self-attention over a packed q|k|v projection.
///
/// `qkv`: (b, t, (q + 2·kv)·dim) — queries, then keys, then values, heads contiguous within
/// each. `cos`/`sin`: (t, dim) rotary tables for positions 0..t. `bias`: (b or 1, 1, t, t),
/// additive (0, −inf for the future, a large negative number for padded keys); it receives no
/// gradient. Returns (b, t, q·dim). Fused on the CPU in f32, composed elsewhere.
pub fn causal_attention(
    qkv: &Tensor,
    heads: Heads,
    cos: &Tensor,
    sin: &Tensor,
    bias: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, t, w) = qkv.dims3()?;
    if w != heads.width() {
        bail!("causal_attention: {w} packed features do not fit {heads:?}");
    }
    check_layout("causal_attention", b, t, heads, cos, sin, bias)?;
    if !fused::is_fast(&[qkv, cos, sin, bias]) {
        return causal_attention_composed(qkv, heads, cos, sin, bias, scale);
    }
    Ok(qkv.contiguous()?.apply_op1(Attention::new(heads, cos, sin, bias, scale)?)?)
}

/// Checks, for `who`'s error messages, that the heads are usable (key/value heads divide the
/// query heads, even head size), the rotary tables are (t, dim) and the bias is
/// (1 or b, 1, t, t).
pub(crate) fn check_layout(
    who: &str,
    b: usize,
    t: usize,
    heads: Heads,
    cos: &Tensor,
    sin: &Tensor,
    bias: &Tensor,
) -> Result<()> {
    if heads.q == 0 || heads.kv == 0 || !heads.q.is_multiple_of(heads.kv) || !heads.dim.is_multiple_of(2) {
        bail!("{who}: {heads:?} is not a usable head layout (key/value heads must divide the query heads, head size even)");
    }
    if cos.dims() != [t, heads.dim] || sin.dims() != [t, heads.dim] {
        bail!("{who}: rotary tables are {:?}/{:?}, expected ({t}, {})", cos.dims(), sin.dims(), heads.dim);
    }
    let bd = bias.dims();
    if bd.len() != 4 || !(bd[0] == 1 || bd[0] == b) || bd[1] != 1 || bd[2] != t || bd[3] != t {
        bail!("{who}: the attention bias is {bd:?}, expected (1 or {b}, 1, {t}, {t})");
    }
    Ok(())
}

/// The composed reference for [`causal_attention`] (and its path off the CPU).
pub fn causal_attention_composed(
    qkv: &Tensor,
    heads: Heads,
    cos: &Tensor,
    sin: &Tensor,
    bias: &Tensor,
    scale: f64,
) -> Result<Tensor> {
    let (b, t, _) = qkv.dims3()?;
    let (hq, hkv, d) = (heads.q, heads.kv, heads.dim);
    let q = qkv.narrow(D::Minus1, 0, hq * d)?;
    let k = qkv.narrow(D::Minus1, hq * d, hkv * d)?;
    let v = qkv.narrow(D::Minus1, (hq + hkv) * d, hkv * d)?;
    let q = fused::rope_heads_composed(&q, hq, Some((cos, sin)))?;
    let k = repeat_kv(fused::rope_heads_composed(&k, hkv, Some((cos, sin)))?, hq / hkv)?;
    let v = repeat_kv(fused::rope_heads_composed(&v, hkv, None)?, hq / hkv)?;
    let p = fused::masked_softmax_composed(&q.matmul(&k.t()?)?, bias, scale)?;
    let o = p.matmul(&v)?; // (b, hq, t, d)
    Ok(o.transpose(1, 2)?.contiguous()?.reshape((b, t, hq * d))?)
}

/// (b, kv, t, d) → (b, kv·n_rep, t, d), each key/value head repeated for its query heads.
pub(crate) fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, nkv, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.broadcast_as((b, nkv, n_rep, t, d))?.contiguous()?.reshape((b, nkv * n_rep, t, d))?)
}

/// What the backward needs from the forward: rotated queries (b, q, t, d) and keys
/// (b, kv, t, d), and the attention probabilities (b, q, t, t).
pub(crate) struct Saved {
    q: Vec<f32>,
    k: Vec<f32>,
    p: Vec<f32>,
}

/// The attention of one layer on the CPU: a graph node of its own ([`causal_attention`]) or
/// a part of the fused transformer block ([`crate::block`]), through [`Attention::forward`]
/// and [`Attention::backward`].
pub(crate) struct Attention {
    heads: Heads,
    scale: f32,
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    /// (b or 1, t, t).
    bias: Arc<Vec<f32>>,
    saved: Mutex<Option<Arc<Saved>>>,
}

/// Runs `f(item, a, b, c)` for `items` work items over candle's threads, where item `i` owns
/// `a[i·na..(i+1)·na]` (`na` > 0), `b[i·nb..]` and `c[i·nc..]` (`nb`, `nc` may be 0).
#[allow(clippy::too_many_arguments)]
fn par_items(
    items: usize,
    a: &mut [f32],
    na: usize,
    b: &mut [f32],
    nb: usize,
    c: &mut [f32],
    nc: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32], &mut [f32]) + Sync,
) {
    assert!(na > 0, "par_items: every item owns part of the first output");
    fused::par_chunks3(items, a, na, b, nb, c, nc, |first, a, b, c| {
        for i in 0..a.len() / na {
            f(first + i, &mut a[i * na..(i + 1) * na], &mut b[i * nb..(i + 1) * nb], &mut c[i * nc..(i + 1) * nc]);
        }
    });
}

impl Attention {
    /// `cos`/`sin` (t, dim) and `bias` (b or 1, 1, t, t) are copied out of the tensors.
    pub(crate) fn new(heads: Heads, cos: &Tensor, sin: &Tensor, bias: &Tensor, scale: f64) -> Result<Attention> {
        let flat =
            |x: &Tensor| -> Result<Arc<Vec<f32>>> { Ok(Arc::new(x.contiguous()?.flatten_all()?.to_vec1::<f32>()?)) };
        Ok(Attention {
            heads,
            scale: scale as f32,
            cos: flat(cos)?,
            sin: flat(sin)?,
            bias: flat(bias)?,
            saved: Mutex::new(None),
        })
    }

    /// The packed q|k|v rows `x` (b·t rows of `heads.width()`) → merged heads' outputs (b·t
    /// rows of q·dim), and what the backward needs.
    pub(crate) fn forward(&self, x: &[f32], b: usize, t: usize) -> candle_core::Result<(Vec<f32>, Saved)> {
        let w = self.heads.width();
        let Heads { q: nh, kv: nkv, dim: d } = self.heads;
        let rep = nh / nkv;
        if x.len() != b * t * w {
            candle_core::bail!("attention: {} packed values, expected {b}×{t}×{w}", x.len());
        }
        if self.bias.len() != t * t && self.bias.len() != b * t * t {
            candle_core::bail!("attention bias holds {} values, expected {t}×{t} or {b}×{t}×{t}", self.bias.len());
        }
        let q = self.rope_split(x, b, t, 0, nh);
        let k = self.rope_split(x, b, t, nh * d, nkv);
        let mut p = output_buffer(b * nh * t * t);
        let mut oh = output_buffer(b * nh * t * d);
        par_items(b * nh, &mut p, t * t, &mut oh, t * d, &mut [], 0, |item, p, o, _| {
            let (bi, hi) = (item / nh, item % nh);
            let g = bi * nkv + hi / rep;
            // S = scale · Q Kᵀ
            matmul(
                t,
                t,
                d,
                p,
                Mat::rows(0, t),
                false,
                &q,
                Mat::rows(item * t * d, d),
                &k,
                Mat::rows(g * t * d, d).t(),
                self.scale,
            );
            let bias = if self.bias.len() == t * t { &self.bias[..] } else { &self.bias[bi * t * t..(bi + 1) * t * t] };
            for (row, brow) in p.chunks_mut(t).zip(bias.chunks(t)) {
                for (v, &bv) in row.iter_mut().zip(brow) {
                    *v += bv;
                }
                fused::softmax_in_place(row);
            }
            // O = P V, V read in place from the packed input
            let v = Mat::rows(bi * t * w + (nh + nkv) * d + (hi / rep) * d, w);
            matmul(t, d, t, o, Mat::rows(0, d), false, p, Mat::rows(0, t), x, v, 1.0);
        });
        // (b, nh, t, d) → (b, t, nh·d)
        let mut out = output_buffer(b * t * nh * d);
        par_rows(&mut out, nh * d, |r0, o| {
            for (k, orow) in o.chunks_mut(nh * d).enumerate() {
                let (bi, ti) = ((r0 + k) / t, (r0 + k) % t);
                for (hi, dst) in orow.chunks_mut(d).enumerate() {
                    dst.copy_from_slice(&oh[((bi * nh + hi) * t + ti) * d..][..d]);
                }
            }
        });
        Ok((out, Saved { q, k, p }))
    }

    /// The gradient of the packed input `x` for the gradient `g` of the merged output.
    pub(crate) fn backward(&self, x: &[f32], saved: &Saved, g: &[f32], b: usize, t: usize) -> Vec<f32> {
        let w = self.heads.width();
        let Heads { q: nh, kv: nkv, dim: d } = self.heads;
        let rep = nh / nkv;
        let mut dq = output_buffer(b * nh * t * d);
        let mut dk = output_buffer(b * nkv * t * d);
        let mut dv = output_buffer(b * nkv * t * d);
        let gw = nh * d;
        par_items(b * nkv, &mut dq, rep * t * d, &mut dk, t * d, &mut dv, t * d, |item, dq, dk, dv| {
            let (bi, gi) = (item / nkv, item % nkv);
            let mut ds = output_buffer(t * t);
            let v = Mat::rows(bi * t * w + (nh + nkv) * d + gi * d, w);
            for r in 0..rep {
                let hi = gi * rep + r;
                let ph = &saved.p[(bi * nh + hi) * t * t..][..t * t];
                let go = Mat::rows(bi * t * gw + hi * d, gw);
                // dV += Pᵀ dO
                matmul(t, d, t, dv, Mat::rows(0, d), r > 0, ph, Mat::rows(0, t).t(), g, go, 1.0);
                // dP = dO Vᵀ
                matmul(t, t, d, &mut ds, Mat::rows(0, t), false, g, go, x, v.t(), 1.0);
                // dS = scale · P ⊙ (dP − rowsum(dP ⊙ P))
                for (drow, prow) in ds.chunks_mut(t).zip(ph.chunks(t)) {
                    let dot = fused::dot(drow, prow);
                    for (x, &pv) in drow.iter_mut().zip(prow) {
                        *x = self.scale * pv * (*x - dot);
                    }
                }
                // dQ = dS K ; dK += dSᵀ Q
                matmul(
                    t,
                    d,
                    t,
                    dq,
                    Mat::rows(r * t * d, d),
                    false,
                    &ds,
                    Mat::rows(0, t),
                    &saved.k,
                    Mat::rows(item * t * d, d),
                    1.0,
                );
                matmul(
                    t,
                    d,
                    t,
                    dk,
                    Mat::rows(0, d),
                    r > 0,
                    &ds,
                    Mat::rows(0, t).t(),
                    &saved.q,
                    Mat::rows((bi * nh + hi) * t * d, d),
                    1.0,
                );
            }
        });
        // back to the packed layout, undoing the rotation of dQ and dK
        let mut dx = output_buffer(b * t * w);
        par_rows(&mut dx, w, |r0, o| {
            for (k, orow) in o.chunks_mut(w).enumerate() {
                let (bi, ti) = ((r0 + k) / t, (r0 + k) % t);
                let (c, s) = (&self.cos[ti * d..(ti + 1) * d], &self.sin[ti * d..(ti + 1) * d]);
                for (hi, dst) in orow.chunks_mut(d).enumerate() {
                    let (src, rotated) = if hi < nh {
                        (&dq[((bi * nh + hi) * t + ti) * d..][..d], true)
                    } else if hi < nh + nkv {
                        (&dk[((bi * nkv + hi - nh) * t + ti) * d..][..d], true)
                    } else {
                        (&dv[((bi * nkv + hi - nh - nkv) * t + ti) * d..][..d], false)
                    };
                    if rotated {
                        fused::rotate(src, c, s, dst, false);
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
            }
        });
        dx
    }

    /// Rotates the `nh` heads starting at packed column `col0` of every (b, t) row of `x`
    /// (row width `w`) into (b, nh, t, d) rows.
    fn rope_split(&self, x: &[f32], b: usize, t: usize, col0: usize, nh: usize) -> Vec<f32> {
        let (d, w) = (self.heads.dim, self.heads.width());
        let mut out = output_buffer(b * nh * t * d);
        par_rows(&mut out, t * d, |bh0, o| {
            for (k, block) in o.chunks_mut(t * d).enumerate() {
                let (bi, hi) = ((bh0 + k) / nh, (bh0 + k) % nh);
                for (ti, orow) in block.chunks_mut(d).enumerate() {
                    let src = &x[(bi * t + ti) * w + col0 + hi * d..][..d];
                    fused::rotate(src, &self.cos[ti * d..][..d], &self.sin[ti * d..][..d], orow, true);
                }
            }
        });
        out
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s, l, "packed q|k|v")?;
        let (b, t, _) = l.shape().dims3()?;
        let nhd = self.heads.q * self.heads.dim;
        let (out, saved) = self.forward(x, b, t)?;
        *self.saved.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))? =
            Some(Arc::new(saved));
        Ok((CpuStorage::F32(out), Shape::from((b, t, nhd))))
    }

    fn bwd(&self, qkv: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (b, t, _) = qkv.dims3()?;
        let saved = self.saved.lock().map_err(|_| candle_core::Error::Msg("attention: poisoned lock".into()))?.clone();
        let Some(saved) = saved else {
            candle_core::bail!("attention: backward before forward");
        };
        let dqkv = with_data(qkv, "packed q|k|v", |x| {
            with_data(g, "attention gradient", |g| self.backward(x, &saved, g, b, t))
        })??;
        Ok(Some(Tensor::from_vec(dqkv, qkv.shape(), qkv.device())?))
    }
}
