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
//! * [`combine_low_rank`] adds low-rank terms c·s·B·A read from LoRA adapter folders
//!   ([`LowRankDelta`], PEFT's layout), element by element as the combination streams: MSA
//!   and task negation with LoRA task vectors, never a dense τ in memory;
//! * [`quantize_checkpoint`] writes the round-to-nearest int8 / int4 quantized-then-dequantized
//!   state (the quantization attack on unlearning, Zhang et al., ICLR 2025);
//! * [`distance`] and [`dot_and_norms`] are streaming reductions for evaluation;
//! * [`for_each_chunk`] and [`map_chunks`] stream the float tensors of several states chunk by
//!   chunk in a fixed order, for arithmetic that is not a fixed linear combination (per-tensor
//!   projections, scales and top-k trims of task vectors).
//!
//! Invariant: this crate knows nothing about models or devices (no candle); it reads and writes
//! bytes in the safetensors format (<https://github.com/huggingface/safetensors>) and never
//! loads pickle checkpoints. Work is done chunk by chunk, so peak memory is a few MiB
//! whatever the model size.
//!
//! # I/O strategy of `combine` (issue 7)
//!
//! Measured on the arithmetic benchmark (4 × 268 MB f32 checkpoints, 2 cores, ext4 on a
//! virtio disk, page cache warm; `examples/combine_timing.rs`): a call is three costs,
//! the arithmetic with its reads and writes through the page cache, the `fsync` of the
//! 268 MB output (disk bound, ~0.45 s at ~500–600 MB/s) and, when overwriting, unlinking the
//! previous fsynced output (~0.2 s, ext4). Only the first is ours to speed up:
//!
//! * inputs are read with `pread` into an f32 buffer of one chunk (256 Ki elements, so the
//!   chunk and the accumulator stay in cache); F32 bytes are used in place, not decoded one
//!   element at a time, and the f32 accumulator is written as is. Reading through the memory
//!   maps (`MADV_POPULATE_READ` per chunk, then `MADV_DONTNEED` to keep the resident set
//!   small) was no faster: it saves the copy but pays for page-table set-up and TLB
//!   shoot-downs between the threads;
//! * each thread writes its chunks with `pwrite`; the inode lock they share showed as ~1–2 %
//!   of the profile, not enough for a dedicated writer thread on 2 cores.
//!   `sync_file_range` after each chunk (to overlap the disk writes with the arithmetic) made
//!   the arithmetic ~2× slower for a shorter final `fsync`: no net gain, dropped.
//!
//! Result (noisy 2-core machine, best–typical of 5): the arithmetic phase went from ~0.6 s to
//! ~0.2–0.3 s. Whole calls with overwrite: 1.0 GB/s before, 1.3–1.5 GB/s now with the
//! default `fsync`, 3.1–5.1 GB/s with [`CombineOptions::sync`] off (unlinking the previous,
//! unsynced output is then cheap), against `cat` at ~6.7 GB/s; peak RSS ~7 MiB.

mod combine;
mod elem;
mod files;
mod lowrank;
mod output;
mod quantize;
mod reduce;
mod tensorwise;
mod writer;

pub use combine::{combine, combine_low_rank, CombineOptions, CombineReport, COMBINE_CHUNK_ELEMS};
pub use files::{tensor_names_and_shapes, StateFiles, TensorEntry};
pub use lowrank::{LowRankDelta, LowRankPair};
pub use output::COPIED_FILES;
pub use quantize::{
    quantize_checkpoint, quantize_checkpoint_with, quantize_selection, Outcome, QuantizeOptions, QuantizeReport,
    Scheme, SkipReason, TensorQuantization, INT4_DEFAULT_GROUP,
};
pub use reduce::{distance, dot_and_norms, DotAndNorms};
pub use safetensors::Dtype;
pub use tensorwise::{for_each_chunk, map_chunks, round_f64_to, Chunk, StreamOptions, StreamReport};
pub use writer::SafetensorsWriter;

/// Elements processed per chunk by default (4 MiB of f32 accumulator).
pub const DEFAULT_CHUNK_ELEMS: usize = 1 << 20;
