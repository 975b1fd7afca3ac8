//! Streaming reductions over pairs of model states, for evaluation: ‖θ_a − θ_b‖₂ and
//! ⟨θ_a, θ_b⟩ with both norms (cosine similarity of task vectors, distance of an unlearned
//! model from the retrained reference). Float tensors (F32, BF16, F16, F64) only, read chunk
//! by chunk and accumulated in f64; other tensors must match in layout but are skipped.

use std::path::Path;

use anyhow::{Context, Result};

use crate::combine::check_same_layout;
use crate::elem::{decode_f64, elem_bytes, is_reduce_float};
use crate::files::StateFiles;
use crate::DEFAULT_CHUNK_ELEMS;

/// Inner product and norms of two model states seen as flat vectors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DotAndNorms {
    /// ⟨θ_a, θ_b⟩.
    pub dot: f64,
    /// ‖θ_a‖₂.
    pub norm_a: f64,
    /// ‖θ_b‖₂.
    pub norm_b: f64,
}

impl DotAndNorms {
    /// ⟨a, b⟩ / (‖a‖·‖b‖); NaN when either norm is zero.
    pub fn cosine(&self) -> f64 {
        self.dot / (self.norm_a * self.norm_b)
    }
}

/// ‖θ_a − θ_b‖₂ over all float tensors of the model states in folders `a` and `b`.
pub fn distance(a: &Path, b: &Path) -> Result<f64> {
    let mut sum_sq = 0.0f64;
    for_each_float_chunk(a, b, |x, y| {
        for (p, q) in x.iter().zip(y) {
            let d = p - q;
            sum_sq += d * d;
        }
    })?;
    Ok(sum_sq.sqrt())
}

/// ⟨θ_a, θ_b⟩, ‖θ_a‖₂ and ‖θ_b‖₂ over all float tensors, in one pass.
pub fn dot_and_norms(a: &Path, b: &Path) -> Result<DotAndNorms> {
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for_each_float_chunk(a, b, |x, y| {
        for (p, q) in x.iter().zip(y) {
            dot += p * q;
            aa += p * p;
            bb += q * q;
        }
    })?;
    Ok(DotAndNorms { dot, norm_a: aa.sqrt(), norm_b: bb.sqrt() })
}

/// Calls `f` on matching chunks (as f64) of every float tensor of `a` and `b`, in name order.
fn for_each_float_chunk(a: &Path, b: &Path, mut f: impl FnMut(&[f64], &[f64])) -> Result<()> {
    let sa = StateFiles::open(a)?;
    let sb = StateFiles::open(b)?;
    let states = [sa, sb];
    check_same_layout(&states).with_context(|| format!("cannot compare {} with {}", a.display(), b.display()))?;
    let [sa, sb] = &states;
    let (mut xa, mut xb) = (Vec::new(), Vec::new());
    for (name, ea) in sa.tensors() {
        if !is_reduce_float(ea.dtype) {
            continue;
        }
        let eb = &sb.tensors()[name];
        let esz = elem_bytes(ea.dtype);
        let numel = ea.numel();
        let mut start = 0;
        while start < numel {
            let len = DEFAULT_CHUNK_ELEMS.min(numel - start);
            let range = start * esz..(start + len) * esz;
            decode_f64(ea.dtype, sa.bytes(ea, range.clone()), &mut xa);
            decode_f64(eb.dtype, sb.bytes(eb, range.clone()), &mut xb);
            sa.release(ea, range.clone());
            sb.release(eb, range);
            f(&xa, &xb);
            start += len;
        }
    }
    Ok(())
}
