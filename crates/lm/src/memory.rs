//! Memory planning: the peak memory of a training run, estimated before any work from the
//! model's shapes, the batch, the sequence length, the precision and activation
//! checkpointing, and the memory the device has.
//!
//! The terms follow what [`crate::train::Trainer`] and the model keep alive at the peak of
//! a step (the end of the forward, when every block's activations are held, plus the
//! gradients and optimizer state of the previous step):
//!
//! - weights: P × bytes of the loaded dtype, plus the bf16 compute copy (bf16-mixed, and
//!   bf16 when the weights were loaded in f32), plus, on the fused f32 CPU path, the per-block
//!   weight packs the fused block op holds for its backward (one more copy of the block
//!   weights);
//! - gradients: one per trainable parameter in the compute dtype (bf16-mixed: also their f32
//!   conversion);
//! - optimizer: AdamW's two moments in the dtype of the updated weights;
//! - activations: per block and row (b·t rows) what the block keeps for its backward
//!   (normalised inputs, q|k|v, rotated q/k, attention output, mid stream, gate|up, SwiGLU
//!   output, output: ≈ 6h + 2·(q+kv widths) + 3f values) plus the attention probabilities
//!   (heads × t per row); with activation checkpointing one (b, t, h) stream per block and one
//!   block's activations; plus the logits (b·t·vocab; twice off the fused path);
//! - with LoRA ([`crate::lora`]): gradients and AdamW moments for the adapters only, plus the
//!   adapters themselves, and per adapted weight the product B·(s·A) and the merged weight the
//!   forward keeps for the backward (two dense copies of the adapted weights), plus dense
//!   gradients of the frozen weights: candle's backward stores a gradient for every argument
//!   of a differentiated op, tracked or not (`GradStore::or_insert`), and frees them only at
//!   the end of the backward. LoRA therefore saves the AdamW moments and the masters'
//!   gradients here, not the dense gradient (measured in `tests/memory.rs`).

use crate::config::LmConfig;
use crate::train::Precision;
use anyhow::Result;
use candle_core::DType;
use serde::Serialize;

/// What a training step looks like, for the estimate.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    pub batch_size: usize,
    pub seq_len: usize,
    /// The dtype the weights are loaded in.
    pub weights: DType,
    pub precision: Precision,
    pub activation_checkpointing: bool,
    /// Whether the fused f32 CPU kernels run (the block op keeps weight packs).
    pub fused: bool,
    /// A second forward pass per step with a frozen copy of the model (NPO's and KL's
    /// reference model), counted as weights only.
    pub reference_model: bool,
    /// LoRA adapters instead of full fine-tuning ([`LoraShape::of`]).
    pub lora: Option<LoraShape>,
}

/// What LoRA changes in a step's memory: the adapters' values and the adapted weights' size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoraShape {
    /// Trainable values, Σ r·(in + out) over the adapted weights.
    pub params: u64,
    /// Values of the adapted (dense) weights, Σ out·in.
    pub adapted: u64,
}

impl LoraShape {
    /// The shape of `lora` on a model of `cfg`; errors as [`crate::lora::select`] (a target
    /// that matches no linear weight).
    pub fn of(cfg: &LmConfig, lora: &crate::lora::LoraConfig) -> Result<LoraShape> {
        let shapes: std::collections::BTreeMap<String, Vec<usize>> = cfg.parameter_shapes()?.into_iter().collect();
        let names = crate::lora::select(&shapes, lora)?;
        let r = lora.rank as u64;
        let (mut params, mut adapted) = (0, 0);
        for n in &names {
            let (out, inp) = (shapes[n][0] as u64, shapes[n][1] as u64);
            params += r * (out + inp);
            adapted += out * inp;
        }
        Ok(LoraShape { params, adapted })
    }
}

/// An estimate in bytes, by term.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemoryPlan {
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
    pub activations: u64,
    /// The process itself (runtime, tokenizer, data): a fixed allowance.
    pub runtime: u64,
}

/// Allowance for the process outside the model (binary, allocator, tokenizer, data sets).
pub const RUNTIME_BYTES: u64 = 256 << 20;

impl MemoryPlan {
    pub fn total(&self) -> u64 {
        self.weights + self.gradients + self.optimizer + self.activations + self.runtime
    }

    /// One line: `weights 1.2 GB + gradients … = total …`.
    pub fn describe(&self) -> String {
        format!(
            "weights {} + gradients {} + optimizer {} + activations {} + runtime {} = {}",
            gb(self.weights),
            gb(self.gradients),
            gb(self.optimizer),
            gb(self.activations),
            gb(self.runtime),
            gb(self.total())
        )
    }
}

/// Bytes as GB with two decimals (or MB below 1 GB).
pub fn gb(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MB", bytes as f64 / (1u64 << 20) as f64)
    }
}

fn size(dtype: DType) -> u64 {
    dtype.size_in_bytes() as u64
}

/// The peak memory of training `cfg` with `shape` (see the module documentation).
pub fn estimate(cfg: &LmConfig, shape: &StepShape) -> Result<MemoryPlan> {
    let shapes = cfg.parameter_shapes()?;
    let count = |pred: &dyn Fn(&str) -> bool| -> u64 {
        shapes.iter().filter(|(n, _)| pred(n)).map(|(_, s)| s.iter().product::<usize>() as u64).sum()
    };
    let p = count(&|_| true);
    let p_blocks = count(&|n| n.starts_with("model.layers."));
    let (h, f, v, l) =
        (cfg.hidden_size as u64, cfg.intermediate_size as u64, cfg.vocab_size as u64, cfg.num_hidden_layers as u64);
    let (nh, hd, nkv) = (cfg.num_attention_heads as u64, cfg.head_dim() as u64, cfg.num_kv_heads() as u64);
    let (qd, kvd) = (nh * hd, nkv * hd);
    let rows = (shape.batch_size * shape.seq_len) as u64;
    let t = shape.seq_len as u64;
    let w = size(shape.weights);
    let (compute, master) = match shape.precision {
        Precision::F32 => (shape.weights, shape.weights),
        Precision::Bf16Mixed => (DType::BF16, DType::F32),
        Precision::Bf16 => (DType::BF16, DType::BF16),
    };
    let c = size(compute);
    let mut weights = p * w;
    if compute != shape.weights {
        weights += p * c; // the bf16 compute copy
    }
    let fused = shape.fused && compute == DType::F32;
    if fused {
        weights += p_blocks * 4; // the fused block's weight packs
    }
    if shape.reference_model {
        weights += p * w;
    }
    // what trains: every parameter, or the LoRA adapters
    let trained = shape.lora.map_or(p, |l| l.params);
    if let Some(l) = shape.lora {
        weights += l.params * w; // the adapters
        if compute != shape.weights {
            weights += l.params * c;
        }
        // per adapted weight the forward merges W + B·(s·A): the product and the merged
        // weight are held by the graph until the backward
        weights += 2 * l.adapted * c;
    }
    let mut gradients = trained * c;
    if master != compute {
        gradients += trained * size(master);
    }
    if shape.lora.is_some() {
        // candle's backward also keeps a gradient for every frozen tensor that enters a
        // differentiated op (`GradStore::or_insert` on the arguments of cat, add and
        // index_select): dense gradients of all weights, though only the adapters' are used
        gradients += p * c;
    }
    let optimizer = 2 * trained * size(master);
    // per row and block: what the block keeps for its backward
    let per_row = 6 * h + 2 * (qd + 2 * kvd) + 3 * f + nh * t;
    let block = rows * per_row * c;
    let stream = rows * h * c;
    let mut activations = if shape.activation_checkpointing { l * 2 * stream + block } else { l * (block + stream) };
    // the logits (f32), kept by the fused output projection and turned into their gradient in
    // place (the composed path holds a second (b·t, vocab) tensor for the log-softmax)
    activations += if fused { 1 } else { 2 } * rows * v * 4;
    Ok(MemoryPlan { weights, gradients, optimizer, activations, runtime: RUNTIME_BYTES })
}

/// The memory available to this process: `MemAvailable` of /proc/meminfo (Linux), or on a
/// GPU its free memory when candle can tell. `None` when unknown.
pub fn available_bytes(device: &candle_core::Device) -> Option<u64> {
    if device.is_cpu() {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        return Some(kb * 1024);
    }
    None
}

/// The peak resident memory of this process so far (`VmHWM` of /proc/self/status), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The current resident memory of this process (`VmRSS`), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
