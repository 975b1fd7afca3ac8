//! Model states: Hugging Face checkpoint folders seen as named tensors on disk.
//!
//! A model state is a folder holding `config.json`, weights as `model.safetensors` or as
//! shards `model-0000X-of-0000N.safetensors` listed by `model.safetensors.index.json`
//! (`weight_map`), and tokenizer files. This crate opens such folders by memory-mapping the
//! weights ([`StateFiles`]), writes new ones incrementally ([`SafetensorsWriter`]), and does
//! arithmetic on them without ever holding a whole model in memory:
//!
//! * [`combine`] writes Σ cᵢ·θᵢ, the primitive behind Model State Arithmetic
//!   (θ_unlearn = θ_D − α·τ_f + β·τ_r with τ = θ_ft − θ_base expands to a linear combination of
//!   checkpoints) and task negation (Ilharco et al., 2023, "Editing models with task arithmetic");
//! * [`distance`] and [`dot_and_norms`] are streaming reductions for evaluation.
//!
//! Invariant: this crate knows nothing about models or devices (no candle); it reads and writes
//! bytes in the safetensors format (<https://github.com/huggingface/safetensors>) and never
//! loads pickle checkpoints. Work is done chunk by chunk, so peak memory is a few MiB
//! whatever the model size.

mod combine;
mod elem;
mod files;
mod reduce;
mod writer;

pub use combine::{combine, CombineOptions, CombineReport, COPIED_FILES};
pub use files::{tensor_names_and_shapes, StateFiles, TensorEntry};
pub use reduce::{distance, dot_and_norms, DotAndNorms};
pub use safetensors::Dtype;
pub use writer::SafetensorsWriter;

/// Elements processed per chunk by default (4 MiB of f32 accumulator).
pub const DEFAULT_CHUNK_ELEMS: usize = 1 << 20;
