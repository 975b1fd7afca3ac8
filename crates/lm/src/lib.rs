//! The language-model engine of unlearn-bench.
//!
//! - [`config`]: Hugging Face `config.json` for Llama, Qwen2 and OLMo-2.
//! - [`weights`]: safetensors loading (single or sharded), initialisation.
//! - [`model`]: [`CausalLm`], a stateless forward returning logits for every position.
//! - [`checkpoint`]: writing Hugging Face checkpoint folders.
//! - [`tok`]: tokenizer loading.
//! - [`train`]: AdamW, schedules, clipping, accumulation, loss masks, NaN detection.
//! - [`score`]: lm-evaluation-harness's `loglikelihood`, `loglikelihood_rolling`,
//!   `generate_until`, and per-token log-probabilities.

pub mod checkpoint;
pub mod config;
pub mod fused;
pub mod model;
pub mod score;
pub mod tok;
pub mod train;
pub mod testing;
pub mod weights;

pub use config::{Arch, LmConfig};
pub use model::CausalLm;
pub use tok::Tok;

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
