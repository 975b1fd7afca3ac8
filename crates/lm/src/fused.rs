//! Fused CPU kernels with hand-written backward passes for the transformer block.
//!
//! candle's autograd allocates a zero tensor and adds into it for every input of every graph
//! node, so a step's backward cost scales with the number of nodes times their size, not
//! with FLOPs (reports/performance.md has the profile). Each operation here replaces a chain
//! of differentiable primitives by one node whose backward is written out:
//!
//! | op | replaces | backward |
//! | --- | --- | --- |
//! | [`rms_norm`] | sqr, mean, add, sqrt, recip, mul, mul | dx = r·(g⊙w) − x·r³/d·Σ(g⊙w⊙x); dw = Σ_rows g⊙x·r |
//! | [`masked_softmax`] | mul, add, max, sub, exp, sum, div | ds = scale·p⊙(g − Σ g⊙p) |
//! | [`rope_heads`] | reshape, transpose, copy, mul, narrow×2, neg, cat, mul, add | the inverse rotation, transposed back |
//! | [`silu_mul`] | silu, mul | dg = gy⊙u⊙σ(g)(1 + g(1 − σ(g))); du = gy⊙g⊙σ(g) |
//! | [`silu_mul_packed`] | narrow×2, silu, mul | as [`silu_mul`], into the two halves of one gradient |
//! | [`linear`] | reshape, transpose, matmul, reshape | dx = g·w; dw = gᵀ·x |
//!
//! The whole causal attention is one such operation too: [`crate::attention`]; and for
//! every block of Llama, Qwen2 and OLMo-2, the whole block: [`crate::block`], built from the slice-level
//! kernels here (`rms_norm_rows`, `linear_into`, `linear_bwd_into`, `silu_mul_packed_rows`).
//!
//! Every function takes the fast path only for contiguous f32 CPU tensors and otherwise
//! falls back to the composed primitives (so CUDA and other dtypes keep working, through
//! candle's own kernels). Tests compare values and gradients of both paths.

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Storage, Tensor, D};

/// Whether the engine of the graph being built ([`crate::engine::current`]: the model's
/// [`crate::Engine`], by default on unless `UNLEARN_NO_FUSED` is set) runs the fused kernels;
/// off, every operation takes its composed path.
pub fn enabled() -> bool {
    crate::engine::current().fused_kernels
}

/// Whether the fused kernels apply: enabled, and every tensor f32 on the CPU.
pub(crate) fn is_fast(ts: &[&Tensor]) -> bool {
    enabled() && ts.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// A contiguous slice of a CPU storage (for custom ops' `cpu_fwd`).
pub(crate) fn slice<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

/// Runs `f` on the contiguous f32 data of a CPU tensor (errors for other devices/dtypes).
pub(crate) fn with_data<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(c) => Ok(f(slice(c, l, what)?)),
        _ => candle_core::bail!("{what}: fused kernels run on the CPU only"),
    }
}

/// A buffer of `n` values for an output that is written in full before anything reads it
/// (a `gemm` product without accumulation, or a kernel that assigns every element).
///
/// The buffer is initialised: zeros in release builds (`calloc`, which skips the `memset`
/// when the allocator hands out fresh pages), and NaN in builds with debug assertions (tests
/// included), so that an element a kernel forgets to write shows up as NaN in the
/// fused-against-composed tests instead of passing as a plausible 0. It used to be
/// `Vec::with_capacity` + `set_len` over uninitialised memory (undefined behaviour, issue 18);
/// callers overwrite every element either way, so results are bit-identical. Never use it for
/// a buffer that is accumulated into or only partly written.
pub(crate) fn output_buffer(n: usize) -> Vec<f32> {
    vec![OUTPUT_FILL; n]
}

/// The value [`output_buffer`] fills with (see there).
pub(crate) const OUTPUT_FILL: f32 = if cfg!(debug_assertions) { f32::NAN } else { 0.0 };

/// A raw pointer that may cross threads: [`par_chunks3`] derives disjoint slices from it.
struct SendPtr<T>(*mut T);
// SAFETY: only used to rebuild disjoint sub-slices of a `&mut [T]` with `T: Send`.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

/// Runs `f(first_item, a, b, c)` over disjoint ranges of `items` work items, where a range
/// `r` owns `a[r.start·na .. r.end·na]` and likewise `b` (`nb` per item) and `c` (`nc`;
/// sizes may be 0); the last item may be shorter than the others (the buffers end there).
/// The ranges run on candle's persistent worker pool (the one its own
/// element-wise kernels use), so there is no thread start-up per call and no second set of
/// threads competing with its spinning workers for the cores. Which thread runs a range
/// does not change what is computed, so results do not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub(crate) fn par_chunks3<T: Send>(
    items: usize,
    a: &mut [T],
    na: usize,
    b: &mut [T],
    nb: usize,
    c: &mut [T],
    nc: usize,
    f: impl Fn(usize, &mut [T], &mut [T], &mut [T]) + Sync,
) {
    let fits = |len: usize, per: usize| items.saturating_sub(1) * per <= len && len <= items * per;
    assert!(fits(a.len(), na) && fits(b.len(), nb) && fits(c.len(), nc), "par_chunks3: outputs do not match the items");
    if items <= 1 || candle_core::utils::get_num_threads() <= 1 {
        f(0, a, b, c);
        return;
    }
    let (la, lb, lc) = (a.len(), b.len(), c.len());
    let (pa, pb, pc) = (SendPtr(a.as_mut_ptr()), SendPtr(b.as_mut_ptr()), SendPtr(c.as_mut_ptr()));
    candle_core::utils::barrier_pool().execute_chunked(items, |r: std::ops::Range<usize>| {
        let (pa, pb, pc) = (&pa, &pb, &pc);
        // the range's part of a buffer of `len` elements, `per` per item
        let part = |len: usize, per: usize| ((r.start * per).min(len), (r.end * per).min(len));
        let ((a0, a1), (b0, b1), (c0, c1)) = (part(la, na), part(lb, nb), part(lc, nc));
        // SAFETY: `execute_chunked` hands out disjoint ranges of 0..items, so these slices
        // never overlap, and they lie inside a, b and c (clamped to their lengths); the
        // borrows of a, b and c outlive the call, which returns only when every range is done.
        let (ca, cb, cc) = unsafe {
            (
                std::slice::from_raw_parts_mut(pa.0.add(a0), a1 - a0),
                std::slice::from_raw_parts_mut(pb.0.add(b0), b1 - b0),
                std::slice::from_raw_parts_mut(pc.0.add(c0), c1 - c0),
            )
        };
        f(r.start, ca, cb, cc)
    });
}

/// Splits `out` into chunks of whole rows (`n` elements each) over candle's threads and
/// calls `f(first_row, chunk)` on each.
pub(crate) fn par_rows<T: Send>(out: &mut [T], n: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let n = n.max(1);
    par_chunks3(out.len().div_ceil(n), out, n, &mut [], 0, &mut [], 0, |r0, o, _, _| f(r0, o));
}

/// Runs `f(first, a, b, c)` over fixed 16 Ki-element chunks of three outputs of one length
/// (the last chunk shorter), on the worker pool: for element-wise passes such as AdamW.
pub(crate) fn par_elems3(
    a: &mut [f32],
    b: &mut [f32],
    c: &mut [f32],
    f: impl Fn(usize, &mut [f32], &mut [f32], &mut [f32]) + Sync,
) {
    const CHUNK: usize = 1 << 14;
    let n = a.len().min(b.len()).min(c.len());
    par_chunks3(n.div_ceil(CHUNK), &mut a[..n], CHUNK, &mut b[..n], CHUNK, &mut c[..n], CHUNK, |i0, a, b, c| {
        for (k, ((a, b), c)) in a.chunks_mut(CHUNK).zip(b.chunks_mut(CHUNK)).zip(c.chunks_mut(CHUNK)).enumerate() {
            f((i0 + k) * CHUNK, a, b, c);
        }
    });
}

/// Σ xᵢ² in f64 over eight independent partial sums (vectorises; fixed order, so
/// deterministic), for the global gradient norm.
pub(crate) fn sum_sq_f64(xs: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = xs.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&x| x as f64 * x as f64).sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i] as f64 * c[i] as f64;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// [`par_rows`] over two outputs of the same length, split at the same rows.
fn par_rows2(a: &mut [f32], b: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync) {
    let n = n.max(1);
    par_chunks3(a.len().div_ceil(n), a, n, b, n, &mut [], 0, |r0, ca, cb, _| f(r0, ca, cb));
}

// ---------------------------------------------------------------------------------------
// Matrix products on slices

/// A matrix in a flat slice: element (i, j) at `off + i·rs + j·cs`.
#[derive(Clone, Copy)]
pub(crate) struct Mat {
    pub(crate) off: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl Mat {
    pub(crate) fn rows(off: usize, rs: usize) -> Mat {
        Mat { off, rs, cs: 1 }
    }

    pub(crate) fn t(self) -> Mat {
        Mat { off: self.off, rs: self.cs, cs: self.rs }
    }

    /// Panics (an internal invariant, not user input) when an (m, n) view leaves `len`.
    fn check(&self, m: usize, n: usize, len: usize) {
        assert!(
            m == 0 || n == 0 || self.off + (m - 1) * self.rs + (n - 1) * self.cs < len,
            "matmul: matrix view out of bounds"
        );
    }
}

/// dst (m×n) = [dst +] a (m×k) · b (k×n) · beta, single-threaded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dm: Mat,
    accumulate: bool,
    a: &[f32],
    am: Mat,
    b: &[f32],
    bm: Mat,
    beta: f32,
) {
    dm.check(m, n, dst.len());
    am.check(m, k, a.len());
    bm.check(k, n, b.len());
    // SAFETY: the three views were checked to lie inside their slices; `dst` is borrowed
    // mutably, so it does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(dm.off),
            dm.cs as isize,
            dm.rs as isize,
            accumulate,
            a.as_ptr().add(am.off),
            am.cs as isize,
            am.rs as isize,
            b.as_ptr().add(bm.off),
            bm.cs as isize,
            bm.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

// ---------------------------------------------------------------------------------------
// RMSNorm

/// RMSNorm in float32: x / sqrt(mean(x²) + eps) · w, over the last dimension.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if is_fast(&[x, w]) && w.rank() == 1 && x.dim(D::Minus1)? == w.dim(0)? {
        return Ok(x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 })?);
    }
    rms_norm_composed(x, w, eps)
}

/// RMSNorm from differentiable primitives (the reference and the non-CPU path).
/// In bf16/f16 the statistics are computed in f32 and the normalised values converted back
/// before the weight multiplies them (Hugging Face's `LlamaRMSNorm`).
pub fn rms_norm_composed(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let dt = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.to_dtype(dt)?.broadcast_mul(w)?)
}

struct RmsNorm {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let ss = dot(row, row);
    1.0 / (ss / row.len() as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s1, l1, "rms_norm input")?;
        let w = slice::<f32>(s2, l2, "rms_norm weight")?;
        Ok((CpuStorage::F32(rms_norm_rows(x, w, self.eps)), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = with_data(x, "rms_norm input", |x| {
            with_data(w, "rms_norm weight", |w| {
                with_data(g, "rms_norm gradient", |g| {
                    let mut dx = output_buffer(x.len());
                    let dw = rms_norm_rows_bwd(x, w, g, self.eps, &mut dx, false);
                    (dx, dw)
                })
            })
        })???;
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = Tensor::from_vec(dw, w.shape(), w.device())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// RMSNorm of every row of `x` (rows of `w.len()` values): x·r·w with r = 1/√(mean(x²) + eps).
pub(crate) fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut out = output_buffer(x.len());
    par_rows(&mut out, d, |r0, o| {
        for (k, orow) in o.chunks_mut(d).enumerate() {
            let row = &x[(r0 + k) * d..(r0 + k + 1) * d];
            let r = inv_rms(row, eps);
            for ((o, &xv), &wv) in orow.iter_mut().zip(row).zip(w) {
                *o = xv * r * wv;
            }
        }
    });
    out
}

/// The backward of [`rms_norm_rows`] for the output gradient `g`: writes dx into `dx` (adds
/// it to what is there when `accumulate`) and returns dw.
pub(crate) fn rms_norm_rows_bwd(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    eps: f32,
    dx: &mut [f32],
    accumulate: bool,
) -> Vec<f32> {
    let d = w.len();
    par_rows(dx, d, |r0, o| {
        for (k, orow) in o.chunks_mut(d).enumerate() {
            let i = (r0 + k) * d;
            let (xr, gr) = (&x[i..i + d], &g[i..i + d]);
            let r = inv_rms(xr, eps);
            let dot: f32 = xr.iter().zip(gr).zip(w).map(|((&a, &b), &c)| a * b * c).sum();
            let c = dot * r * r * r / d as f32;
            for (((o, &xv), &gv), &wv) in orow.iter_mut().zip(xr).zip(gr).zip(w) {
                let v = r * gv * wv - xv * c;
                *o = if accumulate { *o + v } else { v };
            }
        }
    });
    let mut dw = vec![0f32; d];
    for (xr, gr) in x.chunks(d).zip(g.chunks(d)) {
        let r = inv_rms(xr, eps);
        for ((o, &xv), &gv) in dw.iter_mut().zip(xr).zip(gr) {
            *o += gv * xv * r;
        }
    }
    dw
}

// ---------------------------------------------------------------------------------------
// Attention softmax

/// softmax(scale · scores + bias) over the last dimension, for attention.
///
/// `scores`: (b, h, t, s); `bias`: (b or 1, 1, t, s), additive (0, −inf or a large negative
/// number). The bias receives no gradient.
pub fn masked_softmax(scores: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let sd = scores.dims();
    let bd = bias.dims();
    if is_fast(&[scores, bias])
        && sd.len() == 4
        && bd.len() == 4
        && bd[1] == 1
        && bd[2..] == sd[2..]
        && (bd[0] == 1 || bd[0] == sd[0])
    {
        return Ok(scores.contiguous()?.apply_op2(&bias.contiguous()?, MaskedSoftmax { scale: scale as f32 })?);
    }
    masked_softmax_composed(scores, bias, scale)
}

/// The composed reference for [`masked_softmax`].
/// In bf16/f16 the softmax is computed in f32 and its result converted back (Hugging Face's
/// eager attention).
pub fn masked_softmax_composed(scores: &Tensor, bias: &Tensor, scale: f64) -> Result<Tensor> {
    let dt = scores.dtype();
    let x = (scores.to_dtype(DType::F32)? * scale)?.broadcast_add(&bias.to_dtype(DType::F32)?)?;
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&s)?.to_dtype(dt)?)
}

struct MaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s1, l1, "attention scores")?;
        let bias = slice::<f32>(s2, l2, "attention bias")?;
        let dims = l1.dims();
        let (h, t, s) = (dims[1], dims[2], dims[3]);
        let per_batch_bias = l2.dims()[0] > 1;
        let mut out = vec![0f32; x.len()];
        par_rows(&mut out, s, |r0, o| {
            for (k, orow) in o.chunks_mut(s).enumerate() {
                let r = r0 + k;
                let (b, i) = (r / (h * t), r % t);
                let bo = if per_batch_bias { (b * t + i) * s } else { i * s };
                let (xr, br) = (&x[r * s..(r + 1) * s], &bias[bo..bo + s]);
                for ((o, &xv), &bv) in orow.iter_mut().zip(xr).zip(br) {
                    *o = xv * self.scale + bv;
                }
                softmax_in_place(orow);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        scores: &Tensor,
        _bias: &Tensor,
        p: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let s = scores.dim(D::Minus1)?;
        let ds = with_data(p, "softmax output", |p| {
            with_data(g, "softmax gradient", |g| {
                let mut ds = vec![0f32; p.len()];
                par_rows(&mut ds, s, |r0, o| {
                    for (k, orow) in o.chunks_mut(s).enumerate() {
                        let i = (r0 + k) * s;
                        let (pr, gr) = (&p[i..i + s], &g[i..i + s]);
                        let dot = dot(pr, gr);
                        for ((o, &pv), &gv) in orow.iter_mut().zip(pr).zip(gr) {
                            *o = self.scale * pv * (gv - dot);
                        }
                    }
                });
                ds
            })
        })??;
        Ok((Some(Tensor::from_vec(ds, scores.shape(), scores.device())?), None))
    }
}

// ---------------------------------------------------------------------------------------
// Rotary embedding fused with the split into heads

/// (b, t, heads·d) → (b, heads, t, d), rotated by Hugging Face's rotary embedding
/// (rotate-half layout) when `cos`/`sin` are given — (t, d) each, shared by the batch, or
/// (b, t, d) for per-row positions — else only split into heads.
pub fn rope_heads(x: &Tensor, heads: usize, rot: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    let (b, t, hd_all) = x.dims3()?;
    if heads == 0 || hd_all % heads != 0 {
        anyhow::bail!("rope_heads: {hd_all} features do not split into {heads} heads");
    }
    let d = hd_all / heads;
    let mut fast = is_fast(&[x]);
    if let Some((c, s)) = rot {
        let ok = |x: &Tensor| x.dims() == [t, d] || x.dims() == [b, t, d];
        fast &= is_fast(&[c, s]) && ok(c) && c.dims() == s.dims() && d.is_multiple_of(2);
    }
    if fast {
        let rot = match rot {
            Some((c, s)) => Some((
                c.contiguous()?.flatten_all()?.to_vec1::<f32>()?,
                s.contiguous()?.flatten_all()?.to_vec1::<f32>()?,
            )),
            None => None,
        };
        return Ok(x.contiguous()?.apply_op1(RopeHeads { heads, rot: std::sync::Arc::new(rot) })?);
    }
    rope_heads_composed(x, heads, rot)
}

/// The composed reference for [`rope_heads`].
pub fn rope_heads_composed(x: &Tensor, heads: usize, rot: Option<(&Tensor, &Tensor)>) -> Result<Tensor> {
    let (b, t, hd_all) = x.dims3()?;
    let d = hd_all / heads;
    let x = x.reshape((b, t, heads, d))?.transpose(1, 2)?.contiguous()?;
    match rot {
        None => Ok(x),
        Some((cos, sin)) => {
            let (cos, sin) =
                if cos.rank() == 3 { (cos.unsqueeze(1)?, sin.unsqueeze(1)?) } else { (cos.clone(), sin.clone()) };
            let (cos, sin) = (&cos, &sin);
            let x1 = x.narrow(D::Minus1, 0, d / 2)?;
            let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
            let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
            Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
        }
    }
}

/// Hugging Face's rotary embedding of one head's row (rotate-half layout): forward
/// `out = x·cos + rotate_half(x)·sin`; with `forward = false` its transpose (the backward).
#[inline(always)]
pub(crate) fn rotate(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32], forward: bool) {
    let half = x.len() / 2;
    let (x1, x2) = x.split_at(half);
    let (c1, c2) = cos.split_at(half);
    let (s1, s2) = sin.split_at(half);
    let (o1, o2) = out.split_at_mut(half);
    let (x2, c1, c2, s1, s2, o2) = (&x2[..half], &c1[..half], &c2[..half], &s1[..half], &s2[..half], &mut o2[..half]);
    if forward {
        for j in 0..half {
            o1[j] = x1[j] * c1[j] - x2[j] * s1[j];
            o2[j] = x2[j] * c2[j] + x1[j] * s2[j];
        }
    } else {
        for j in 0..half {
            o1[j] = x1[j] * c1[j] + x2[j] * s2[j];
            o2[j] = x2[j] * c2[j] - x1[j] * s1[j];
        }
    }
}

struct RopeHeads {
    heads: usize,
    /// cos and sin, (t, d) or (b, t, d) row-major.
    rot: std::sync::Arc<Option<(Vec<f32>, Vec<f32>)>>,
}

impl RopeHeads {
    /// Maps between (b, t, heads, d) rows `src` and (b, heads, t, d) rows `dst`. `forward`
    /// rotates by +angle (x·cos + rotate_half(x)·sin); the backward applies the transpose.
    fn apply(&self, src: &[f32], dims_bthd: (usize, usize, usize, usize), forward: bool) -> Vec<f32> {
        let (_b, t, h, d) = dims_bthd;
        let mut out = vec![0f32; src.len()];
        // rows of `out`: for the forward (b, h, t) rows of d; for the backward (b, t, h) rows.
        par_rows(&mut out, d, |r0, o| {
            for (k, orow) in o.chunks_mut(d).enumerate() {
                let r = r0 + k;
                let (bi, hi, ti) =
                    if forward { (r / (h * t), (r / t) % h, r % t) } else { (r / (t * h), r % h, (r / h) % t) };
                // the other side's row index
                let other = if forward { (bi * t + ti) * h + hi } else { (bi * h + hi) * t + ti };
                let xr = &src[other * d..(other + 1) * d];
                match &*self.rot {
                    None => orow.copy_from_slice(xr),
                    Some((cos, sin)) => {
                        let row = if cos.len() == t * d { ti } else { bi * t + ti };
                        let (c, s) = (&cos[row * d..(row + 1) * d], &sin[row * d..(row + 1) * d]);
                        rotate(xr, c, s, orow, forward);
                    }
                }
            }
        });
        out
    }
}

impl CustomOp1 for RopeHeads {
    fn name(&self) -> &'static str {
        "rope-heads"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s, l, "rope input")?;
        let (b, t, hd_all) = l.shape().dims3()?;
        let (h, d) = (self.heads, hd_all / self.heads);
        if let Some((c, _)) = &*self.rot {
            if c.len() != t * d && c.len() != b * t * d {
                candle_core::bail!("rope tables hold {} values, the input needs {t}×{d} or {b}×{t}×{d}", c.len());
            }
        }
        Ok((CpuStorage::F32(self.apply(x, (b, t, h, d), true)), Shape::from((b, h, t, d))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (b, t, hd_all) = x.dims3()?;
        let d = hd_all / self.heads;
        let dx = with_data(g, "rope gradient", |g| self.apply(g, (b, t, self.heads, d), false))?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

// ---------------------------------------------------------------------------------------
// SwiGLU

/// silu(g) ⊙ u, the gated MLP's activation.
pub fn silu_mul(g: &Tensor, u: &Tensor) -> Result<Tensor> {
    if is_fast(&[g, u]) && g.dims() == u.dims() {
        return Ok(g.contiguous()?.apply_op2(&u.contiguous()?, SiluMul)?);
    }
    Ok((g.silu()? * u)?)
}

struct SiluMul;

/// σ(g) for every element of `g`, into `out` (resized), with the vectorised exp.
fn sigmoid_into(g: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend(g.iter().map(|&x| -x));
    exp_in_place(out);
    out.iter_mut().for_each(|e| *e = 1.0 / (1.0 + *e));
}

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "silu-mul"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = slice::<f32>(s1, l1, "gate")?;
        let u = slice::<f32>(s2, l2, "up")?;
        let n = *l1.dims().last().unwrap_or(&1);
        let mut out = vec![0f32; g.len()];
        par_rows(&mut out, n, |r0, o| {
            let i = r0 * n;
            let mut sg = vec![];
            sigmoid_into(&g[i..i + o.len()], &mut sg);
            for (((o, &gv), &uv), &s) in o.iter_mut().zip(&g[i..]).zip(&u[i..]).zip(&sg) {
                *o = gv * s * uv;
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        g: &Tensor,
        u: &Tensor,
        _res: &Tensor,
        gy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let n = g.dim(D::Minus1)?;
        let (dg, du) = with_data(g, "gate", |g| {
            with_data(u, "up", |u| {
                with_data(gy, "silu_mul gradient", |gy| {
                    let mut dg = vec![0f32; g.len()];
                    let mut du = vec![0f32; g.len()];
                    par_rows2(&mut dg, &mut du, n, |r0, dgc, duc| {
                        let i = r0 * n;
                        let mut sgs = vec![];
                        sigmoid_into(&g[i..i + dgc.len()], &mut sgs);
                        for (k, (a, b)) in dgc.iter_mut().zip(duc.iter_mut()).enumerate() {
                            let (gv, uv, yv) = (g[i + k], u[i + k], gy[i + k]);
                            let sg = sgs[k];
                            *a = yv * uv * sg * (1.0 + gv * (1.0 - sg));
                            *b = yv * gv * sg;
                        }
                    });
                    (dg, du)
                })
            })
        })???;
        Ok((Some(Tensor::from_vec(dg, g.shape(), g.device())?), Some(Tensor::from_vec(du, u.shape(), u.device())?)))
    }
}

// ---------------------------------------------------------------------------------------
// SwiGLU on a packed (gate | up) projection

/// silu(g) ⊙ u where `gu` = (…, 2n) holds the gate in its first n columns and the up
/// projection in the last n (one matmul against the concatenated weights). Returns (…, n).
pub fn silu_mul_packed(gu: &Tensor) -> Result<Tensor> {
    let n2 = gu.dim(D::Minus1)?;
    if n2 % 2 != 0 {
        anyhow::bail!("silu_mul_packed: the last dimension ({n2}) must hold gate and up halves");
    }
    if is_fast(&[gu]) {
        return Ok(gu.contiguous()?.apply_op1(SiluMulPacked)?);
    }
    let n = n2 / 2;
    silu_mul(&gu.narrow(D::Minus1, 0, n)?, &gu.narrow(D::Minus1, n, n)?)
}

struct SiluMulPacked;

impl CustomOp1 for SiluMulPacked {
    fn name(&self) -> &'static str {
        "silu-mul-packed"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s, l, "gate|up")?;
        let n = *l.dims().last().unwrap_or(&0) / 2;
        let mut dims = l.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = n;
        }
        Ok((CpuStorage::F32(silu_mul_packed_rows(x, n)), Shape::from(dims)))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, gy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let n = x.dim(D::Minus1)? / 2;
        let dx =
            with_data(x, "gate|up", |x| with_data(gy, "silu_mul gradient", |gy| silu_mul_packed_rows_bwd(x, gy, n)))??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// silu(g) ⊙ u for every row of `x`, rows of 2·`n` values (gate | up): rows of `n` values.
pub(crate) fn silu_mul_packed_rows(x: &[f32], n: usize) -> Vec<f32> {
    let n2 = 2 * n;
    let mut out = output_buffer(x.len() / 2);
    par_rows(&mut out, n, |r0, o| {
        let mut sg = vec![];
        for (k, orow) in o.chunks_mut(n).enumerate() {
            let row = &x[(r0 + k) * n2..(r0 + k + 1) * n2];
            let (g, u) = row.split_at(n);
            sigmoid_into(g, &mut sg);
            for (((o, &gv), &uv), &s) in orow.iter_mut().zip(g).zip(u).zip(&sg) {
                *o = gv * s * uv;
            }
        }
    });
    out
}

/// The backward of [`silu_mul_packed_rows`]: the gradient of the packed input for the
/// output gradient `gy`.
pub(crate) fn silu_mul_packed_rows_bwd(x: &[f32], gy: &[f32], n: usize) -> Vec<f32> {
    let n2 = 2 * n;
    let mut dx = output_buffer(x.len());
    par_rows(&mut dx, n2, |r0, o| {
        let mut sgs = vec![];
        for (k, orow) in o.chunks_mut(n2).enumerate() {
            let r = r0 + k;
            let (g, u) = x[r * n2..(r + 1) * n2].split_at(n);
            let y = &gy[r * n..(r + 1) * n];
            let (dg, du) = orow.split_at_mut(n);
            sigmoid_into(g, &mut sgs);
            for j in 0..n {
                let sg = sgs[j];
                dg[j] = y[j] * u[j] * sg * (1.0 + g[j] * (1.0 - sg));
                du[j] = y[j] * g[j] * sg;
            }
        }
    });
    dx
}

// ---------------------------------------------------------------------------------------
// Linear layer

/// x · wᵀ over the last dimension: (…, d) × (o, d) → (…, o), as one graph node.
///
/// The composed form (flatten, transpose the weight, matmul, unflatten) is four nodes, and
/// candle's backward allocates and accumulates a gradient for each; this one has a single
/// backward, dx = g·w and dw = gᵀ·x, both one matmul.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let (o, wd) = w.dims2()?;
    if wd != d {
        anyhow::bail!("linear: input has {d} features, the weight is {o}×{wd}");
    }
    if is_fast(&[x, w]) {
        return Ok(x.contiguous()?.apply_op2(&w.contiguous()?, Linear)?);
    }
    linear_composed(x, w)
}

/// The composed reference for [`linear`].
pub fn linear_composed(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let o = w.dim(0)?;
    let mut dims = x.dims().to_vec();
    let y = x.reshape((x.elem_count() / d, d))?.matmul(&w.t()?)?;
    if let Some(last) = dims.last_mut() {
        *last = o;
    }
    Ok(y.reshape(dims)?)
}

struct Linear;

/// Fewest rows per block of [`par_row_blocks`]: each block re-packs the shared operand of its
/// `gemm`, which costs ~1/rows of the product; for the weight gradient (rows = output
/// features, the shared operand the whole (tokens × features) input) 32-row blocks made the
/// `large` training step 10–20 % slower than 128-row ones (`train_steps large`, A/B).
const MIN_BLOCK_ROWS: usize = 128;

/// Splits `0..m` rows into contiguous blocks (about four per thread, at least
/// [`MIN_BLOCK_ROWS`]) and runs `f(rows, out_rows)` on candle's worker pool, `out` holding `n`
/// values per row. Several blocks per thread let a thread that is ahead take over a slower
/// one's work.
pub(crate) fn par_row_blocks(
    m: usize,
    out: &mut [f32],
    n: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync,
) {
    let threads = candle_core::utils::get_num_threads().max(1);
    let per = m.div_ceil(4 * threads).max(MIN_BLOCK_ROWS).min(m.max(1));
    par_chunks3(m.div_ceil(per), &mut out[..m * n], per * n, &mut [], 0, &mut [], 0, |b0, o, _, _| {
        for (k, ob) in o.chunks_mut(per * n).enumerate() {
            let r0 = (b0 + k) * per;
            f(r0..r0 + ob.len() / n.max(1), ob);
        }
    })
}

/// y (m×o) = x (m×d) · wᵀ, rows split over the threads.
pub(crate) fn linear_fwd(x: &[f32], w: &[f32], m: usize, d: usize, o: usize) -> Vec<f32> {
    let mut y = output_buffer(m * o);
    linear_into(x, w, m, d, o, &mut y, false);
    y
}

/// y (m×o) = [y +] x (m×d) · wᵀ, rows split over the threads.
pub(crate) fn linear_into(x: &[f32], w: &[f32], m: usize, d: usize, o: usize, y: &mut [f32], accumulate: bool) {
    par_row_blocks(m, y, o, |rows, yb| {
        let xb = &x[rows.start * d..rows.end * d];
        matmul(rows.len(), o, d, yb, Mat::rows(0, o), accumulate, xb, Mat::rows(0, d), w, Mat::rows(0, d).t(), 1.0);
    });
}

/// The backward of [`linear_fwd`] for the output gradient `g` (m×o): dx (m×d) = g·w and
/// dw (o×d) = gᵀ·x, both overwritten, each split by rows over the threads.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_bwd_into(
    x: &[f32],
    w: &[f32],
    g: &[f32],
    m: usize,
    d: usize,
    o: usize,
    dx: &mut [f32],
    dw: &mut [f32],
) {
    par_row_blocks(m, dx, d, |rows, db| {
        let gb = &g[rows.start * o..rows.end * o];
        matmul(rows.len(), d, o, db, Mat::rows(0, d), false, gb, Mat::rows(0, o), w, Mat::rows(0, d), 1.0);
    });
    par_row_blocks(o, dw, d, |rows, db| {
        let gt = Mat { off: rows.start, rs: 1, cs: o };
        matmul(rows.len(), d, m, db, Mat::rows(0, d), false, g, gt, x, Mat::rows(0, d), 1.0);
    });
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice::<f32>(s1, l1, "linear input")?;
        let w = slice::<f32>(s2, l2, "linear weight")?;
        let d = *l1.dims().last().unwrap_or(&1);
        let m = x.len() / d.max(1);
        let (o, _) = l2.shape().dims2()?;
        let y = linear_fwd(x, w, m, d, o);
        let mut dims = l1.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = o;
        }
        Ok((CpuStorage::F32(y), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (o, d) = w.dims2()?;
        let m = x.elem_count() / d.max(1);
        let (dx, dw) = with_data(x, "linear input", |x| {
            with_data(w, "linear weight", |w| {
                with_data(g, "linear gradient", |g| {
                    let (mut dx, mut dw) = (output_buffer(m * d), output_buffer(o * d));
                    linear_bwd_into(x, w, g, m, d, o, &mut dx, &mut dw);
                    (dx, dw)
                })
            })
        })???;
        Ok((Some(Tensor::from_vec(dx, x.shape(), x.device())?), Some(Tensor::from_vec(dw, w.shape(), w.device())?)))
    }
}

// ---------------------------------------------------------------------------------------
// Vectorised exp

/// `with_avx2!(body(x))` calls the `#[inline(always)]` function `body` on the slice `x`
/// through a copy compiled for AVX2 when the CPU has it (checked at run time), else through
/// the baseline build. Both copies run the same IEEE operations.
macro_rules! with_avx2 {
    ($body:ident($x:expr)) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(x: &mut [f32]) {
            $body(x)
        }
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present (checked just above).
                unsafe { avx2($x) }
            } else {
                $body($x)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $body($x)
        }
    }};
}

/// `x ← eˣ` for every element, vectorised (8 lanes with AVX2, else 4 with SSE2).
///
/// libm's `expf` is a scalar call, ~8 % of a training step in the profile (softmaxes over
/// the vocabulary and the keys, the SwiGLU's sigmoid). This is Cephes' `expf` (S. Moshier):
/// x = n·ln 2 + r with |r| ≤ ln 2 / 2, eʳ by a degree-7 polynomial, 2ⁿ put into the exponent
/// bits, written branch-free so it vectorises. Within 2 ulp of the exact value on
/// [−87.3, 88.7] (tested against f64 `exp`); below that the result is flushed to 0 (so
/// e^−∞ = 0 exactly, as masked attention needs), above it is +∞, and NaN stays NaN. The AVX2
/// and baseline paths run the same IEEE operations (no fused multiply-add), so results are
/// bit-identical on every x86-64 machine.
pub fn exp_in_place(xs: &mut [f32]) {
    with_avx2!(exp_loop(xs))
}

#[inline(always)]
fn exp_loop(xs: &mut [f32]) {
    for x in xs.iter_mut() {
        *x = expf(*x);
    }
}

#[inline(always)]
fn expf(x: f32) -> f32 {
    const HI: f32 = 88.722_84;
    const LO: f32 = -87.336_55;
    // comparisons written so that NaN passes through unchanged
    let xc = if x > HI { HI } else { x };
    let xc = if xc < LO { LO } else { xc };
    // n = round(x / ln 2) by the 1.5·2²³ trick: adding it leaves n in the low mantissa bits
    // (no libm call and no saturating float → int cast, so the loop vectorises)
    let t = xc * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let k = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    // r = x − n·ln 2, ln 2 split in two for precision (Cody–Waite)
    let r = (xc - n * 0.693_359_4) - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * (r * r) + r + 1.0;
    // 2ⁿ as two normal powers of two (n ∈ [−126, 128]; 2¹²⁸ alone is not a finite f32)
    let k1 = k >> 1;
    let k2 = k.wrapping_sub(k1);
    let pow2 = |e: i32| f32::from_bits((e.wrapping_add(127) << 23) as u32);
    let y = y * pow2(k1) * pow2(k2);
    let y = if x < LO { 0.0 } else { y };
    if x > HI {
        f32::INFINITY
    } else {
        y
    }
}

/// log Σ eˣ over `row` (max-shifted, vectorised exp), with `scratch` as working space.
pub(crate) fn log_sum_exp(row: &[f32], scratch: &mut Vec<f32>) -> f32 {
    let m = max_lanes(row);
    scratch.clear();
    scratch.extend(row.iter().map(|&z| z - m));
    exp_in_place(scratch);
    m + sum(scratch).ln()
}

// ---------------------------------------------------------------------------------------
// Vectorised reductions

/// Lanes of the reductions below: independent partial results, so the loops vectorise
/// (a plain `iter().sum()` is one sequential chain of adds, latency-bound). The order of
/// the additions is fixed, so results are deterministic; they differ from a sequential sum
/// in the last bits.
const LANES: usize = 16;

#[inline(always)]
fn sum_lanes(xs: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let full = n / LANES * LANES;
    for (ca, cb) in a[..full].chunks_exact(LANES).zip(b[..full].chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += ca[i] * cb[i];
        }
    }
    let rest: f32 = a[full..].iter().zip(&b[full..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + rest
}

/// The maximum (NaN entries are skipped, as with `f32::max`; −∞ for an empty slice).
#[inline(always)]
fn max_lanes(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder().iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().copied().fold(rest, f32::max)
}

/// Σ xᵢ, vectorised.
pub fn sum(xs: &[f32]) -> f32 {
    sum_lanes(xs)
}

/// The maximum, vectorised (NaN entries are skipped, as with `f32::max`).
pub fn max(xs: &[f32]) -> f32 {
    max_lanes(xs)
}

/// Σ aᵢ·bᵢ over the common length, vectorised.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

/// softmax in place over `row` (already scaled and masked); a row whose every entry is −∞
/// becomes all zeros (it attends to nothing).
pub fn softmax_in_place(row: &mut [f32]) {
    with_avx2!(softmax_body(row))
}

#[inline(always)]
fn softmax_body(row: &mut [f32]) {
    let m = max_lanes(row);
    if m == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    for v in row.iter_mut() {
        *v = expf(*v - m);
    }
    let inv = 1.0 / sum_lanes(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::{output_buffer, OUTPUT_FILL};

    /// Issue 18: `output_buffer` was `with_capacity` + `set_len`, so it handed out whatever the
    /// allocator recycled (here: the 7s of a buffer just freed). Now every element is defined.
    #[test]
    fn output_buffer_is_initialised_not_recycled_memory() {
        for n in [1, 7, 64, 1000, 4096, 1 << 16] {
            let old = std::hint::black_box(vec![7.0f32; n]);
            drop(old);
            let v = std::hint::black_box(output_buffer(n));
            assert_eq!(v.len(), n);
            let stale = v.iter().filter(|x| x.to_bits() != OUTPUT_FILL.to_bits()).count();
            assert_eq!(stale, 0, "output_buffer({n}): {stale} elements are not the fill value {OUTPUT_FILL}");
        }
    }
}
