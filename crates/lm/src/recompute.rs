//! Activation checkpointing for composed (candle autograd) computations.
//!
//! [`checkpoint`] runs `y = f(x, w₁…wₙ)` without recording its graph: only `x` and `y` stay
//! alive until the backward, which runs `f` again on leaves and differentiates that copy
//! (Chen et al. 2016, "Training deep nets with sublinear memory cost"). candle's custom ops
//! return gradients for at most three arguments, so the weights' gradients travel on a side
//! path:
//!
//! ```text
//! s₀ = 0 (scalar),  sₖ = Carry(wₖ, sₖ₋₁)      forward: sₖ = sₖ₋₁; backward: dwₖ from the store
//! y  = Recompute(x, y₀, sₙ)                   forward: y = y₀ (f run on detached inputs)
//!                                             backward: f again on leaves, one backward of
//!                                             ⟨f(x, w), dy⟩, dx returned, dw₁…dwₙ stored
//! ```
//!
//! The backward visits `Recompute` before the `Carry` nodes (they are its ancestors), so
//! every `Carry` finds its weight's gradient stored. The forward ops only copy a tensor's
//! storage, so they run on every device. The fused CPU block has its own, cheaper variant
//! ([`crate::block::llama_block_with`]).

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, Var};
use std::sync::{Arc, Mutex};

/// The recomputed function: (input, weights) → output.
pub type Recomputable = Arc<dyn Fn(&Tensor, &[Tensor]) -> Result<Tensor> + Send + Sync>;

type Store = Arc<Mutex<Vec<Option<Tensor>>>>;

/// `f(x, weights)` with activation checkpointing (see the module documentation). When no
/// gradient can flow (scoring) this is `f(x, weights)` itself.
pub fn checkpoint(x: &Tensor, weights: &[Tensor], f: Recomputable) -> Result<Tensor> {
    if !(x.track_op() || weights.iter().any(|w| w.track_op())) {
        return f(x, weights);
    }
    let detached: Vec<Tensor> = weights.iter().map(|w| w.detach()).collect();
    let y0 = f(&x.detach(), &detached)?.contiguous()?;
    let store: Store = Arc::new(Mutex::new(vec![None; weights.len()]));
    let mut s = Tensor::zeros((), y0.dtype(), y0.device())?;
    for (i, w) in weights.iter().enumerate() {
        // frozen weights get no gradient, so no carrier
        if w.track_op() {
            s = w.apply_op2(&s, Carry { index: i, store: store.clone() })?;
        }
    }
    let op = Recompute { f, weights: weights.to_vec(), store };
    Ok(x.apply_op3(&y0, &s, op)?)
}

fn lock<T>(m: &Mutex<T>) -> candle_core::Result<std::sync::MutexGuard<'_, T>> {
    m.lock().map_err(|_| candle_core::Error::Msg("activation checkpointing: poisoned lock".into()))
}

/// A copy of the (contiguous) data a layout selects.
fn copy_cpu(s: &CpuStorage, l: &Layout) -> candle_core::Result<CpuStorage> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("activation checkpointing: a non-contiguous tensor");
    };
    Ok(match s {
        CpuStorage::F32(v) => CpuStorage::F32(v[a..b].to_vec()),
        CpuStorage::BF16(v) => CpuStorage::BF16(v[a..b].to_vec()),
        CpuStorage::F16(v) => CpuStorage::F16(v[a..b].to_vec()),
        CpuStorage::F64(v) => CpuStorage::F64(v[a..b].to_vec()),
        _ => candle_core::bail!("activation checkpointing: unsupported dtype"),
    })
}

struct Carry {
    index: usize,
    store: Store,
}

impl CustomOp2 for Carry {
    fn name(&self) -> &'static str {
        "checkpoint-carry"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        s: &CpuStorage,
        l: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((copy_cpu(s, l)?, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        s: &candle_core::CudaStorage,
        l: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((s.try_clone(l)?, l.shape().clone()))
    }

    fn bwd(
        &self,
        w: &Tensor,
        _s: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dw = lock(&self.store)?[self.index].take();
        let dw = match dw {
            Some(d) => d,
            None => w.zeros_like()?,
        };
        Ok((Some(dw), Some(g.clone())))
    }
}

struct Recompute {
    f: Recomputable,
    weights: Vec<Tensor>,
    store: Store,
}

impl CustomOp3 for Recompute {
    fn name(&self) -> &'static str {
        "checkpoint-recompute"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        y0: &CpuStorage,
        l: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        Ok((copy_cpu(y0, l)?, l.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &Layout,
        y0: &candle_core::CudaStorage,
        l: &Layout,
        _: &candle_core::CudaStorage,
        _: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        Ok((y0.try_clone(l)?, l.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _y0: &Tensor,
        s: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let err =
            |e: anyhow::Error| candle_core::Error::Msg(format!("activation checkpointing: recomputing a block: {e:#}"));
        // the input as a fresh leaf; the weights are the model's own (tracked) tensors, so
        // this inner backward reaches exactly them and copies none
        let xl = Var::from_tensor(&x.detach())?;
        let y = (self.f)(xl.as_tensor(), &self.weights).map_err(err)?;
        let grads = (y * g.detach())?.sum_all()?.backward()?;
        {
            let mut store = lock(&self.store)?;
            for (i, w) in self.weights.iter().enumerate() {
                store[i] = grads.get(w).cloned();
            }
        }
        let dx = match grads.get(xl.as_tensor()) {
            Some(d) => d.clone(),
            None => x.zeros_like()?,
        };
        Ok((Some(dx), None, Some(s.zeros_like()?)))
    }
}
