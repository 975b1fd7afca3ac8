//! The language-model engine of unlearn-bench.
//!
//! - [`config`]: Hugging Face `config.json` for Llama, Qwen2 and OLMo-2.
//! - [`weights`]: safetensors loading (single or sharded), initialisation.
//! - [`attention`]: causal self-attention as one fused CPU op with a hand-written backward.
//! - [`block`]: each architecture's block described once ([`block::BlockLayout`]), and the whole
//!   block as one fused CPU op (training's fast path).
//! - [`engine`]: [`Engine`], the explicit choice between the fused kernels and candle's
//!   composed operations (per model; environment variables override the default).
//! - [`model`]: [`CausalLm`], a stateless forward returning logits for every position.
//! - [`checkpoint`]: writing Hugging Face checkpoint folders.
//! - [`lora`]: LoRA adapters (PEFT conventions) for fine-tuning and low-rank task vectors.
//! - [`tok`]: tokenizer loading.
//! - [`train`]: AdamW, schedules, clipping, accumulation, loss masks, NaN detection.
//! - [`gradnorm`]: per-example gradient norms of a text's mean token NLL (the GradNorm
//!   membership-inference attack).
//! - [`score`]: lm-evaluation-harness's `loglikelihood`, `loglikelihood_rolling`,
//!   `generate_until`, and per-token log-probabilities.

pub mod attention;
pub mod block;
pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod fused;
pub mod gradnorm;
pub mod lora;
pub mod memory;
pub mod model;
pub mod recompute;
pub mod score;
pub mod testing;
pub mod tok;
pub mod train;
pub mod weights;

pub use config::{Arch, LmConfig};
pub use engine::Engine;
pub use model::CausalLm;
pub use tok::Tok;

/// Keeps memory that mimalloc frees instead of returning it to the kernel (mimalloc v3's
/// `purge_delay` = −1, index 15 of `mi_option_e` in mimalloc.h). Training allocates and frees
/// the same large buffers every step, and returned pages come back zero-filled by the kernel's
/// page-fault handler (10–15 % of a step in the profile, reports/performance.md). Binaries that
/// use mimalloc as their global allocator (`bench`, the benchmarks) call this first in `main`;
/// elsewhere it only sets an option of a library nobody allocates from.
pub fn keep_freed_memory() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a process-wide allocator option; mimalloc reads it on every purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// The device to run on: CUDA when built with `--features cuda` and a GPU is present.
pub fn default_device() -> anyhow::Result<candle_core::Device> {
    #[cfg(feature = "cuda")]
    {
        if candle_core::utils::cuda_is_available() {
            return Ok(candle_core::Device::new_cuda(0)?);
        }
    }
    Ok(candle_core::Device::Cpu)
}
