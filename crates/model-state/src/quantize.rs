//! Round-to-nearest (RTN) weight quantization of a model state: every linear weight is
//! quantized and dequantized again ("fake quantization"), and the result is written as an
//! ordinary checkpoint folder in the input's dtypes. This is the quantization attack on
//! unlearning of Zhang et al. (ICLR 2025, "Catastrophic Failure of LLM Unlearning via
//! Quantization"): an unlearned model whose small weight updates fall inside one quantization
//! step collapses back to the grid point of the original model, and "forgotten" knowledge
//! returns. The dequantized checkpoint, run with the ordinary full-precision model code,
//! computes with exactly the weights of a deployment quantized with the same scheme (weights
//! only: activations stay in full precision).
//!
//! # Schemes (all arithmetic in f32; `round` is round half to even, as `torch.round` and
//! `numpy.round`)
//!
//! * [`Scheme::Int8PerChannel`]: symmetric, one scale per output channel (row `r` of a
//!   `[out, in]` weight): `scale = max_j |w_rj| / 127`, `q = clamp(round(w / scale), −127, 127)`,
//!   `w' = q · scale`. This is how bitsandbytes' LLM.int8() stores weights (row-wise absmax
//!   int8, computed there as `round(w · 127 / absmax)`, which can differ in the last bit of a
//!   tie); its outlier decomposition is about activations, which this weight-only transform
//!   does not model.
//! * [`Scheme::Int4PerGroup`]: asymmetric min–max over each group of `group` consecutive
//!   elements of a row (the last group of a row is shorter when `group` does not divide the
//!   row length), as in the common w4/g128 RTN baseline (GPTQ's reference `Quantizer`, AWQ's
//!   `pseudo_quantize_tensor`):
//!   `scale = (max − min) / 15`, `zero = round(−min / scale)`,
//!   `q = clamp(round(w / scale) + zero, 0, 15)`, `w' = (q − zero) · scale`. A group with
//!   `max == min` (scale 0, e.g. a group of one element) is kept exactly.
//!
//!   When a group straddles 0 (min ≤ 0 ≤ max: every group of real LLM weights), `zero` lies
//!   in `0..=15` and is storable in 4 bits, and this equals those two (AWQ also floors the
//!   range at 10⁻⁵, which only matters for near-constant groups). For a group entirely of
//!   one sign they differ: GPTQ first widens the range to include 0 and AWQ clamps `zero` to
//!   `0..=15` (both lose accuracy), while the pure min–max here keeps the tightest grid (with
//!   a zero point outside `0..=15`). Either way every dequantized value lies on the group's
//!   16-level grid.
//!
//! In both schemes a row or group whose scale is 0 (all equal, or so small that `/127` or
//! `/15` underflows) or whose range overflows f32 (|w| ≈ 10³⁸) is kept exactly.
//! Away from such groups, `|w' − w| ≤ scale / 2` for every element (before the final rounding
//! to the stored dtype).
//!
//! # Relation to NF4 and GPTQ
//!
//! * NF4 (QLoRA, bitsandbytes `bnb_4bit_quant_type="nf4"`) also rounds to nearest, but onto a
//!   fixed non-uniform 16-value code book (quantiles of a normal distribution, scaled to
//!   [−1, 1]) with one absmax scale per block of 64 consecutive elements of the flattened
//!   tensor; bitsandbytes' `"fp4"` (the `transformers` default for `load_in_4bit`) is the
//!   same with a 4-bit float code book. Same data-free, deterministic attack; a different grid.
//! * GPTQ quantizes the columns one at a time and spreads each column's rounding error over
//!   the columns not yet quantized, weighted by the inverse Hessian (X·Xᵀ) of the layer's
//!   inputs on calibration data; its grid is the same uniform per-group grid as here. It is
//!   more accurate, but needs data and forward passes through the model, and its result
//!   depends on the calibration set.
//!
//! RTN is the reference here because it is deterministic and data-free (no calibration set,
//! no model code: a pure function of the checkpoint, testable bit for bit) and so assumes the
//! least of an attacker: anyone holding the weights can do it. The paper's public code
//! (github.com/zzwjames/FailureLLMUnlearning, `utils.py::load_model`) quantizes with
//! bitsandbytes through `transformers` (`load_in_8bit`; `load_in_4bit` with the default FP4
//! type), i.e. data-free round to nearest as well, onto bitsandbytes' grids. We could not
//! read the paper's text here, so which quantizer each of its tables uses is not checked.
//!
//! # Which tensors
//!
//! [`quantize_selection`] decides from the name and shape alone: 2-D `*.weight` tensors inside
//! numbered transformer blocks (`….layers.<i>.…`) and `lm_head.weight`. Embeddings, norms,
//! biases and every tensor that is not 2-D are copied byte for byte. With tied embeddings
//! there is no `lm_head.weight`: the embedding matrix, which is also the output projection,
//! stays in full precision. `transformers`' bitsandbytes integration (the paper's code) also
//! keeps `lm_head` in full precision, as do GPTQ and AWQ by default: set
//! [`QuantizeOptions::lm_head`] to false for that setting.
//!
//! # Streaming
//!
//! Tensors are processed one at a time, in file order, and within a tensor in chunks of
//! whole rows (rows are the unit of the per-channel scale and contain whole groups): at most
//! [`QuantizeOptions::chunk_elems`] elements, or one row when a row is longer. Only that
//! chunk is decoded (as f32, plus its quantized copy and the encoded bytes), so memory does
//! not grow with the tensor or model size; [`QuantizeReport::peak_chunk_elems`] reports the
//! largest chunk. Tensors that are not quantized are copied straight from the memory map.
//! The output does not depend on the chunk size (rows are independent).
//!
//! Output: ONE `model.safetensors` (also for sharded inputs) with the input's tensor names,
//! shapes and dtypes, plus the input's config and tokenizer files
//! ([`crate::COPIED_FILES`]), written atomically like [`crate::combine`]'s output.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, ensure, Result};
use safetensors::Dtype;

use crate::elem::{decode_f32, elem_bytes, encode_f32, is_arith_float, stored_value};
use crate::files::{StateFiles, TensorEntry, SINGLE_FILE};
use crate::output::{copy_side_files, write_folder_atomically};
use crate::writer::SafetensorsWriter;
use crate::COMBINE_CHUNK_ELEMS;

/// Group size of `"int4"` without an explicit `:g<N>`: the common w4/g128 setting.
pub const INT4_DEFAULT_GROUP: usize = 128;

/// A round-to-nearest quantization scheme (see the module docs for the formulas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Symmetric int8, one scale per output channel (row).
    Int8PerChannel,
    /// Asymmetric (min–max) uint4 with one scale and zero point per `group` consecutive
    /// elements of a row.
    Int4PerGroup { group: usize },
}

impl Scheme {
    /// The forms [`Scheme::from_str`] accepts, for messages and help texts.
    pub const ACCEPTED: &'static str = "\"int8\", \"int4\" (= \"int4:g128\") or \"int4:g<N>\" with N ≥ 1";

    /// Quantizes `row` (one output channel of a weight) and writes the dequantized values
    /// into `out` (same length).
    ///
    /// The values must be finite (the checkpoint transform checks this and names the tensor);
    /// a non-finite value poisons the scale of its row or group.
    pub fn quantize_dequantize(&self, row: &[f32], out: &mut [f32]) {
        assert_eq!(row.len(), out.len(), "quantize_dequantize: row and out differ in length");
        match *self {
            Scheme::Int8PerChannel => int8_symmetric(row, out),
            Scheme::Int4PerGroup { group } => {
                assert!(group > 0, "quantize_dequantize: group size 0");
                for (g, o) in row.chunks(group).zip(out.chunks_mut(group)) {
                    uint4_min_max(g, o);
                }
            }
        }
    }
}

/// `scale = max|w| / 127`, `w' = clamp(round(w / scale), −127, 127) · scale`.
fn int8_symmetric(row: &[f32], out: &mut [f32]) {
    let absmax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = absmax / 127.0;
    if scale == 0.0 || !scale.is_finite() {
        out.copy_from_slice(row);
        return;
    }
    for (o, &w) in out.iter_mut().zip(row) {
        *o = (w / scale).round_ties_even().clamp(-127.0, 127.0) * scale;
    }
}

/// `scale = (max − min) / 15`, `zero = round(−min / scale)`,
/// `w' = (clamp(round(w / scale) + zero, 0, 15) − zero) · scale`.
fn uint4_min_max(group: &[f32], out: &mut [f32]) {
    let (min, max) = group.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scale = (max - min) / 15.0;
    if scale == 0.0 || !scale.is_finite() {
        out.copy_from_slice(group);
        return;
    }
    let zero = (-min / scale).round_ties_even();
    for (o, &w) in out.iter_mut().zip(group) {
        let q = ((w / scale).round_ties_even() + zero).clamp(0.0, 15.0);
        *o = (q - zero) * scale;
    }
}

impl fmt::Display for Scheme {
    /// The canonical form [`Scheme::from_str`] reads back: `int8`, `int4:g128`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Int8PerChannel => write!(f, "int8"),
            Scheme::Int4PerGroup { group } => write!(f, "int4:g{group}"),
        }
    }
}

impl FromStr for Scheme {
    type Err = anyhow::Error;

    /// `"int8"`, `"int4"` (group 128) or `"int4:g<N>"`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "int8" => return Ok(Scheme::Int8PerChannel),
            "int4" => return Ok(Scheme::Int4PerGroup { group: INT4_DEFAULT_GROUP }),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("int4:g") {
            if let Ok(group) = n.parse::<usize>() {
                if group > 0 && n.bytes().all(|b| b.is_ascii_digit()) {
                    return Ok(Scheme::Int4PerGroup { group });
                }
            }
        }
        bail!("unknown quantization scheme {s:?}: expected {}", Scheme::ACCEPTED)
    }
}

/// Why a tensor is not quantized (see [`quantize_selection`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A token or position embedding (`embed_tokens`, `wte`, ...).
    Embedding,
    /// A normalization weight (`*norm*`, `ln_*`).
    Norm,
    /// Not a `*.weight` (a bias or a buffer).
    NotWeight,
    /// A weight that is not 2-D (its number of dimensions).
    NotMatrix(usize),
    /// A 2-D weight outside the numbered transformer blocks that is not `lm_head`.
    OutsideBlocks,
    /// `lm_head.weight`, kept because [`QuantizeOptions::lm_head`] is false.
    LmHeadKept,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Embedding => write!(f, "embedding"),
            SkipReason::Norm => write!(f, "normalization weight"),
            SkipReason::NotWeight => write!(f, "not a .weight (bias or buffer)"),
            SkipReason::NotMatrix(n) => write!(f, "{n}-D, not a linear weight"),
            SkipReason::OutsideBlocks => write!(f, "2-D weight outside the transformer blocks"),
            SkipReason::LmHeadKept => write!(f, "lm_head kept in full precision (lm_head: false)"),
        }
    }
}

/// Whether RTN quantization applies to the tensor `name` of `shape`: `Ok(())` for the 2-D
/// weights of linear layers, else why not. Checked in this order:
///
/// 1. a dot-separated part of the name contains `embed`, or is `wte` / `wpe` → [`SkipReason::Embedding`];
/// 2. the name does not end in `.weight` → [`SkipReason::NotWeight`];
/// 3. a part contains `norm` or starts with `ln` (`ln_1`, `ln_f`) → [`SkipReason::Norm`];
/// 4. the tensor is not 2-D → [`SkipReason::NotMatrix`];
/// 5. the name is `lm_head.weight` (or ends in `.lm_head.weight`) → quantized;
/// 6. the name contains `<layers|layer|h|blocks|block>.<number>.` (inside a transformer
///    block: Llama/Qwen2/OLMo-2 `model.layers.3.mlp.up_proj.weight`, GPT-2 `h.3`) → quantized;
/// 7. otherwise → [`SkipReason::OutsideBlocks`].
///
/// The dtype is not looked at: a selected tensor that is not F32, BF16 or F16 is an error
/// of [`quantize_checkpoint`], not silently skipped.
pub fn quantize_selection(name: &str, shape: &[usize]) -> std::result::Result<(), SkipReason> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.iter().any(|p| p.contains("embed") || *p == "wte" || *p == "wpe") {
        return Err(SkipReason::Embedding);
    }
    if parts.len() < 2 || parts[parts.len() - 1] != "weight" {
        return Err(SkipReason::NotWeight);
    }
    if parts.iter().any(|p| p.contains("norm") || p.starts_with("ln")) {
        return Err(SkipReason::Norm);
    }
    if shape.len() != 2 {
        return Err(SkipReason::NotMatrix(shape.len()));
    }
    if is_lm_head(name) {
        return Ok(());
    }
    let in_block = parts.windows(3).any(|w| {
        matches!(w[0], "layers" | "layer" | "h" | "blocks" | "block")
            && !w[1].is_empty()
            && w[1].bytes().all(|b| b.is_ascii_digit())
    });
    if in_block {
        Ok(())
    } else {
        Err(SkipReason::OutsideBlocks)
    }
}

/// `lm_head.weight`, possibly under a prefix.
fn is_lm_head(name: &str) -> bool {
    name == "lm_head.weight" || name.ends_with(".lm_head.weight")
}

/// How [`quantize_checkpoint_with`] works and writes.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    /// Replace the output folder if it already exists (otherwise that is an error).
    pub overwrite: bool,
    /// Quantize `lm_head.weight` (default true). `transformers`' bitsandbytes integration,
    /// GPTQ and AWQ keep it in full precision by default; false reproduces that.
    pub lm_head: bool,
    /// Elements per streamed chunk of whole rows (at least one row is read at a time).
    pub chunk_elems: usize,
    /// `fsync` the output file before renaming the folder into place (as [`crate::CombineOptions::sync`]).
    pub sync: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self { overwrite: false, lm_head: true, chunk_elems: COMBINE_CHUNK_ELEMS, sync: true }
    }
}

/// What happened to one tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Quantized and dequantized with `scheme`; the norms are over the whole tensor, of the
    /// input `w` and of the change `w' − w` (with `w'` as stored, i.e. after rounding to the
    /// tensor's dtype), accumulated in f64.
    Quantized { scheme: Scheme, norm: f64, error_norm: f64 },
    /// Copied byte for byte.
    Skipped(SkipReason),
}

/// One tensor of a [`QuantizeReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct TensorQuantization {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub outcome: Outcome,
}

impl TensorQuantization {
    /// ‖w' − w‖ / ‖w‖ (0 for a skipped or all-zero tensor).
    pub fn relative_error(&self) -> f64 {
        match self.outcome {
            Outcome::Quantized { norm, error_norm, .. } if norm > 0.0 => error_norm / norm,
            _ => 0.0,
        }
    }

    pub fn is_quantized(&self) -> bool {
        matches!(self.outcome, Outcome::Quantized { .. })
    }
}

/// What [`quantize_checkpoint`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeReport {
    pub scheme: Scheme,
    /// Every tensor of the input, in name order.
    pub tensors: Vec<TensorQuantization>,
    /// Largest number of elements decoded at once (one chunk of whole rows).
    pub peak_chunk_elems: usize,
    /// Size of the written `model.safetensors`.
    pub bytes_written: u64,
    /// Wall-clock seconds for the whole call.
    pub seconds: f64,
}

impl QuantizeReport {
    /// The tensors that were quantized.
    pub fn quantized(&self) -> impl Iterator<Item = &TensorQuantization> {
        self.tensors.iter().filter(|t| t.is_quantized())
    }

    /// ‖W' − W‖ / ‖W‖ over all quantized tensors together (0 when none was).
    pub fn relative_error(&self) -> f64 {
        let (mut n2, mut e2) = (0.0f64, 0.0f64);
        for t in &self.tensors {
            if let Outcome::Quantized { norm, error_norm, .. } = t.outcome {
                n2 += norm * norm;
                e2 += error_norm * error_norm;
            }
        }
        if n2 > 0.0 {
            (e2 / n2).sqrt()
        } else {
            0.0
        }
    }
}

/// Writes the RTN-quantized-then-dequantized model state of folder `src` into folder `dst`
/// (default [`QuantizeOptions`]: `dst` must not exist, `lm_head` is quantized).
pub fn quantize_checkpoint(src: &Path, dst: &Path, scheme: Scheme) -> Result<QuantizeReport> {
    quantize_checkpoint_with(src, dst, scheme, &QuantizeOptions::default())
}

/// [`quantize_checkpoint`] with options.
///
/// Errors: `src` is not a model-state folder (the message names the path); a selected tensor
/// holds a non-finite value or is not F32, BF16 or F16 (the message names the tensor and
/// file); `dst` exists without `opts.overwrite`, or is `src`. On error nothing is left at
/// `dst` and an existing `dst` is untouched.
pub fn quantize_checkpoint_with(
    src: &Path,
    dst: &Path,
    scheme: Scheme,
    opts: &QuantizeOptions,
) -> Result<QuantizeReport> {
    let started = Instant::now();
    ensure!(opts.chunk_elems > 0, "chunk_elems must be positive");
    if let Scheme::Int4PerGroup { group } = scheme {
        ensure!(group > 0, "int4 group size must be positive");
    }
    let state = StateFiles::open(src)?;
    let mut report = write_folder_atomically(dst, opts.overwrite, &[src], "the input", |tmp| {
        write_quantized(&state, scheme, tmp, opts)
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Streams the quantized state into `dir/model.safetensors` and copies the side files.
fn write_quantized(state: &StateFiles, scheme: Scheme, dir: &Path, opts: &QuantizeOptions) -> Result<QuantizeReport> {
    let specs: Vec<(String, Dtype, Vec<usize>)> =
        state.tensors().iter().map(|(n, e)| (n.clone(), e.dtype, e.shape.clone())).collect();
    let metadata = BTreeMap::from([("quantization".to_string(), format!("rtn {scheme} (dequantized)"))]);
    let mut writer = SafetensorsWriter::create(&dir.join(SINGLE_FILE), &specs, &metadata)?;
    let mut tensors = Vec::with_capacity(specs.len());
    let mut peak = 0usize;
    for name in writer.order().to_vec() {
        let entry = &state.tensors()[&name];
        let selection = quantize_selection(&name, &entry.shape).and_then(|()| {
            if !opts.lm_head && is_lm_head(&name) {
                Err(SkipReason::LmHeadKept)
            } else {
                Ok(())
            }
        });
        let outcome = match selection {
            Ok(()) => {
                let (norm, error_norm, chunk) = quantize_tensor(state, &name, entry, scheme, &mut writer, opts)?;
                peak = peak.max(chunk);
                Outcome::Quantized { scheme, norm, error_norm }
            }
            Err(reason) => {
                copy_tensor(state, entry, &mut writer, opts)?;
                Outcome::Skipped(reason)
            }
        };
        tensors.push(TensorQuantization { name, dtype: entry.dtype, shape: entry.shape.clone(), outcome });
    }
    let bytes_written = writer.finish_with(opts.sync)?;
    copy_side_files(state.dir(), dir)?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(QuantizeReport { scheme, tensors, peak_chunk_elems: peak, bytes_written, seconds: 0.0 })
}

/// Quantizes one 2-D tensor in chunks of whole rows and appends it to `writer`; returns
/// (‖w‖, ‖w' − w‖, largest chunk in elements).
fn quantize_tensor(
    state: &StateFiles,
    name: &str,
    entry: &TensorEntry,
    scheme: Scheme,
    writer: &mut SafetensorsWriter,
    opts: &QuantizeOptions,
) -> Result<(f64, f64, usize)> {
    let dtype = entry.dtype;
    ensure!(
        is_arith_float(dtype),
        "tensor {name} in {} is a linear weight of dtype {dtype}; quantization supports F32, BF16 and F16",
        state.path_of(entry).display()
    );
    let (rows, cols) = (entry.shape[0], entry.shape[1]);
    let esz = elem_bytes(dtype);
    let rows_per_chunk = (opts.chunk_elems / cols.max(1)).max(1);
    let (mut w, mut q, mut bytes) = (Vec::<f32>::new(), Vec::<f32>::new(), Vec::<u8>::new());
    let (mut w2, mut e2) = (0.0f64, 0.0f64);
    let mut peak = 0usize;
    let mut r0 = 0;
    while r0 < rows && cols > 0 {
        let r1 = rows.min(r0 + rows_per_chunk);
        let range = r0 * cols * esz..r1 * cols * esz;
        decode_f32(dtype, state.bytes(entry, range.clone()), &mut w);
        state.release(entry, range);
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            bail!(
                "tensor {name} in {}: element [{}, {}] is {}; quantization needs finite weights",
                state.path_of(entry).display(),
                r0 + i / cols,
                i % cols,
                w[i]
            );
        }
        peak = peak.max(w.len());
        q.resize(w.len(), 0.0);
        for (row, out) in w.chunks(cols).zip(q.chunks_mut(cols)) {
            scheme.quantize_dequantize(row, out);
        }
        for (a, b) in w.iter().zip(q.iter_mut()) {
            *b = stored_value(dtype, *b);
            let (a, d) = (*a as f64, *b as f64 - *a as f64);
            w2 += a * a;
            e2 += d * d;
        }
        encode_f32(dtype, &q, &mut bytes);
        writer.write(&bytes)?;
        r0 = r1;
    }
    Ok((w2.sqrt(), e2.sqrt(), peak))
}

/// Appends the bytes of `entry` to `writer` unchanged, in chunks from the memory map.
fn copy_tensor(
    state: &StateFiles,
    entry: &TensorEntry,
    writer: &mut SafetensorsWriter,
    opts: &QuantizeOptions,
) -> Result<()> {
    let total = entry.byte_len();
    let step = opts.chunk_elems.saturating_mul(4);
    let mut start = 0;
    while start < total {
        let range = start..total.min(start + step);
        writer.write(state.bytes(entry, range.clone()))?;
        state.release(entry, range.clone());
        start = range.end;
    }
    Ok(())
}
