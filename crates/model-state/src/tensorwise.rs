//! Tensor-by-tensor streaming over aligned model states, for arithmetic that is not a fixed
//! linear combination: per-tensor projections, per-tensor scales, top-k sparsification
//! (the variants of Model State Arithmetic in issue 19).
//!
//! [`for_each_chunk`] reads; [`map_chunks`] reads and writes a new model-state folder. Both
//! visit the float tensors (F32, BF16, F16) of every input together, one chunk of one tensor
//! at a time, in a fixed order: tensors in the order of the output file (by dtype, descending
//! in safetensors' `Dtype` order, then by name, like [`crate::SafetensorsWriter`]), and within
//! a tensor the chunks in
//! element order. A caller can therefore collect per-tensor statistics in one pass and use
//! them in the next, and can rely on seeing elements in index order (e.g. to break ties by
//! index). Values are decoded exactly to f64; [`map_chunks`] rounds each output value once,
//! from f64 to the tensor's dtype (nearest, ties to even, see [`round_f64_to`]).
//!
//! Other tensors (integer buffers, F64, ...) are skipped by [`for_each_chunk`] and copied by
//! [`map_chunks`] when all inputs hold identical bytes (an error otherwise), as in
//! [`crate::combine`]. Every input must have the first one's tensor names, shapes and dtypes.
//!
//! Sequential, single-threaded: unlike `combine` this is not the fast path; its value is a
//! per-tensor hook with a fixed visiting order. Memory: per input one chunk of f64 values
//! (8 bytes × `chunk_elems`), the output chunk and its encoding; no whole tensor is held
//! unless the caller collects one.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use half::{bf16, f16};
use safetensors::Dtype;

use crate::combine::check_same_layout;
use crate::elem::{decode_f64, elem_bytes, is_arith_float};
use crate::files::{StateFiles, SINGLE_FILE};
use crate::output::{copy_side_files, write_folder_atomically};
use crate::writer::SafetensorsWriter;
use crate::COMBINE_CHUNK_ELEMS;

/// How [`map_chunks`] (and, for `chunk_elems`, [`for_each_chunk`]) works.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Replace `out` if it already exists (otherwise that is an error).
    pub overwrite: bool,
    /// Elements per chunk.
    pub chunk_elems: usize,
    /// `fsync` the output file before renaming it into place.
    pub sync: bool,
    /// Extra `__metadata__` entries for the output file (`"format": "pt"` is always set).
    pub metadata: BTreeMap<String, String>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self { overwrite: false, chunk_elems: COMBINE_CHUNK_ELEMS, sync: true, metadata: BTreeMap::new() }
    }
}

/// One chunk of one float tensor, read from every input.
#[derive(Debug)]
pub struct Chunk<'a> {
    pub name: &'a str,
    /// Position of this tensor among the float tensors, in visiting order (0-based).
    pub tensor: usize,
    pub dtype: Dtype,
    pub shape: &'a [usize],
    /// Elements in the whole tensor.
    pub numel: usize,
    /// Index (within the tensor) of the chunk's first element.
    pub start: usize,
    /// `inputs[i][j]` is element `start + j` of input `i`, decoded exactly.
    pub inputs: &'a [Vec<f64>],
}

impl Chunk<'_> {
    /// Elements in this chunk.
    pub fn len(&self) -> usize {
        self.inputs.first().map_or(0, Vec::len)
    }

    /// Whether the chunk has no elements (never true of a visited chunk).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is the tensor's last chunk.
    pub fn is_last(&self) -> bool {
        self.start + self.len() == self.numel
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamReport {
    /// Float tensors visited (each once, whatever its number of chunks).
    pub float_tensors: usize,
    /// Tensor data bytes read from all inputs.
    pub bytes_read: u64,
    /// Size of the written `model.safetensors` (0 for [`for_each_chunk`]).
    pub bytes_written: u64,
    /// Wall-clock seconds for the whole call.
    pub seconds: f64,
}

/// Calls `f` on every chunk of every float tensor of the model states `inputs` (see the
/// module docs for the order). Other tensors are skipped; the layouts must match.
pub fn for_each_chunk(
    inputs: &[&Path],
    chunk_elems: usize,
    mut f: impl FnMut(&Chunk) -> Result<()>,
) -> Result<StreamReport> {
    let started = Instant::now();
    let states = open_all(inputs, chunk_elems)?;
    let mut report = StreamReport::default();
    let mut bufs: Vec<Vec<f64>> = vec![Vec::new(); states.len()];
    for name in visiting_order(&states[0]) {
        let entries: Vec<_> = states.iter().map(|s| &s.tensors()[&name]).collect();
        if !is_arith_float(entries[0].dtype) {
            continue;
        }
        let tensor = report.float_tensors;
        report.float_tensors += 1;
        visit_tensor(&states, &entries, &name, tensor, chunk_elems, &mut bufs, &mut report.bytes_read, |chunk| {
            f(chunk)
        })?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Writes a new model state into the folder `out`: every float tensor chunk is `f`'s output
/// (`f` receives a buffer pre-filled with input 0's values and may overwrite any of them),
/// rounded once to the tensor's dtype; other tensors are copied (identical in all inputs),
/// and the config and tokenizer files come from input 0. Always ONE `model.safetensors`.
///
/// On error (including one returned by `f`) nothing is left at `out`, as in
/// [`crate::combine`].
pub fn map_chunks(
    inputs: &[&Path],
    out: &Path,
    opts: &StreamOptions,
    mut f: impl FnMut(&Chunk, &mut [f64]) -> Result<()>,
) -> Result<StreamReport> {
    let started = Instant::now();
    let states = open_all(inputs, opts.chunk_elems)?;
    let mut report = write_folder_atomically(out, opts.overwrite, inputs, "an input", |tmp| {
        let first = &states[0];
        let specs: Vec<(String, Dtype, Vec<usize>)> =
            first.tensors().iter().map(|(n, e)| (n.clone(), e.dtype, e.shape.clone())).collect();
        let mut writer = SafetensorsWriter::create(&tmp.join(SINGLE_FILE), &specs, &opts.metadata)?;
        let order = visiting_order(first);
        ensure!(writer.order() == order.as_slice(), "internal error: visiting order is not the file's order");
        let mut report = StreamReport::default();
        let mut bufs: Vec<Vec<f64>> = vec![Vec::new(); states.len()];
        let mut values: Vec<f64> = Vec::new();
        let mut encoded: Vec<u8> = Vec::new();
        for name in &order {
            let entries: Vec<_> = states.iter().map(|s| &s.tensors()[name]).collect();
            let dtype = entries[0].dtype;
            if is_arith_float(dtype) {
                let tensor = report.float_tensors;
                report.float_tensors += 1;
                visit_tensor(
                    &states,
                    &entries,
                    name,
                    tensor,
                    opts.chunk_elems,
                    &mut bufs,
                    &mut report.bytes_read,
                    |chunk| {
                        values.clear();
                        values.extend_from_slice(&chunk.inputs[0]);
                        f(chunk, &mut values).with_context(|| format!("tensor {name}"))?;
                        encode_f64(dtype, &values, &mut encoded);
                        writer.write(&encoded)
                    },
                )?;
            } else {
                copy_identical(&states, &entries, name, opts.chunk_elems, &mut writer, &mut report.bytes_read)?;
            }
        }
        report.bytes_written = writer.finish_with(opts.sync)?;
        copy_side_files(first.dir(), tmp)?;
        Ok(report)
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `v` rounded to `dtype` (F32, BF16 or F16) to nearest, ties to even, in one rounding.
///
/// F32 is Rust's `as f32`. BF16 and F16 go through f32 with *round-to-odd* first: rounding
/// to odd into a format with at least two more bits, then to nearest, equals one rounding to
/// nearest (Boldo & Melquiond 2008), and f32's 24 bits exceed BF16's 8 and F16's 11 by more
/// than two. (`half`'s own `from_f64` drops the low 32 bits before rounding, so a value just
/// above a tie can round down.)
pub fn round_f64_to(dtype: Dtype, v: f64) -> f64 {
    match dtype {
        Dtype::F32 => v as f32 as f64,
        Dtype::BF16 => bf16::from_f32(to_f32_round_to_odd(v)).to_f64(),
        Dtype::F16 => f16::from_f32(to_f32_round_to_odd(v)).to_f64(),
        other => panic!("round_f64_to: {other} is not an arithmetic float dtype"),
    }
}

/// `v` as f32, rounded to odd: exact values stay; otherwise the one of the two neighbouring
/// f32 values whose last mantissa bit is 1.
fn to_f32_round_to_odd(v: f64) -> f32 {
    let nearest = v as f32;
    if nearest as f64 == v || v.is_nan() {
        return nearest;
    }
    let mut bits = nearest.to_bits();
    if (nearest as f64).abs() > v.abs() {
        bits -= 1; // truncate toward zero (sign-magnitude: one step down in magnitude)
    }
    f32::from_bits(bits | 1)
}

/// Encodes `values` as `dtype` (F32, BF16 or F16) into `out`, one rounding per value.
fn encode_f64(dtype: Dtype, values: &[f64], out: &mut Vec<u8>) {
    out.clear();
    match dtype {
        Dtype::F32 => out.extend(values.iter().flat_map(|&v| (v as f32).to_le_bytes())),
        Dtype::BF16 => out.extend(values.iter().flat_map(|&v| bf16::from_f32(to_f32_round_to_odd(v)).to_le_bytes())),
        Dtype::F16 => out.extend(values.iter().flat_map(|&v| f16::from_f32(to_f32_round_to_odd(v)).to_le_bytes())),
        other => unreachable!("encode_f64 called on {other}"),
    }
}

fn open_all(inputs: &[&Path], chunk_elems: usize) -> Result<Vec<StateFiles>> {
    ensure!(!inputs.is_empty(), "nothing to stream: no inputs given");
    ensure!(chunk_elems > 0, "chunk_elems must be positive");
    let states = inputs
        .iter()
        .enumerate()
        .map(|(i, dir)| StateFiles::open(dir).with_context(|| format!("input {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    check_same_layout(&states)?;
    Ok(states)
}

/// Tensor names in the order of the written file: dtype (descending `Dtype` order), then name.
fn visiting_order(state: &StateFiles) -> Vec<String> {
    let mut names: Vec<(&String, Dtype)> = state.tensors().iter().map(|(n, e)| (n, e.dtype)).collect();
    names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    names.into_iter().map(|(n, _)| n.clone()).collect()
}

/// Decodes one float tensor of every input chunk by chunk and hands each chunk to `f`.
#[allow(clippy::too_many_arguments)]
fn visit_tensor(
    states: &[StateFiles],
    entries: &[&crate::files::TensorEntry],
    name: &str,
    tensor: usize,
    chunk_elems: usize,
    bufs: &mut [Vec<f64>],
    bytes_read: &mut u64,
    mut f: impl FnMut(&Chunk) -> Result<()>,
) -> Result<()> {
    let dtype = entries[0].dtype;
    let esz = elem_bytes(dtype);
    let numel = entries[0].numel();
    let mut start = 0;
    while start < numel {
        let len = chunk_elems.min(numel - start);
        let range = start * esz..(start + len) * esz;
        for ((state, entry), buf) in states.iter().zip(entries).zip(bufs.iter_mut()) {
            decode_f64(dtype, state.bytes(entry, range.clone()), buf);
            state.release(entry, range.clone());
            *bytes_read += range.len() as u64;
        }
        let chunk = Chunk { name, tensor, dtype, shape: &entries[0].shape, numel, start, inputs: bufs };
        f(&chunk)?;
        start += len;
    }
    Ok(())
}

/// Copies a tensor we do no arithmetic on, after checking every input holds the same bytes.
fn copy_identical(
    states: &[StateFiles],
    entries: &[&crate::files::TensorEntry],
    name: &str,
    chunk_elems: usize,
    writer: &mut SafetensorsWriter,
    bytes_read: &mut u64,
) -> Result<()> {
    let first = &states[0];
    let total = entries[0].byte_len();
    let step = chunk_elems.saturating_mul(8);
    let mut start = 0;
    while start < total {
        let range = start..total.min(start + step);
        let reference = first.bytes(entries[0], range.clone());
        for (i, (state, entry)) in states.iter().zip(entries).enumerate().skip(1) {
            if state.bytes(entry, range.clone()) != reference {
                bail!(
                    "tensor {name} has dtype {}, which is not transformed arithmetically, and differs between {} and {} \
                     (input {}); such tensors must be identical in all inputs",
                    entries[0].dtype,
                    first.path_of(entries[0]).display(),
                    state.path_of(entry).display(),
                    i + 1
                );
            }
            state.release(entry, range.clone());
        }
        writer.write(reference)?;
        first.release(entries[0], range.clone());
        *bytes_read += (range.len() * states.len()) as u64;
        start = range.end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_to_odd_then_nearest_is_one_rounding() {
        // bf16 keeps 8 significant bits: 1 + 2⁻⁸ is a tie between 1 (0x3F80, even) and
        // 1 + 2⁻⁷ (0x3F81). Just above the tie must round up, even when the excess is below
        // f32's precision (2⁻⁴⁰); just below must round down; the exact tie goes to even.
        let up = 1.0 + 2f64.powi(-8) + 2f64.powi(-40);
        let down = 1.0 + 2f64.powi(-8) - 2f64.powi(-40);
        let tie = 1.0 + 2f64.powi(-8);
        assert_eq!(round_f64_to(Dtype::BF16, up), 1.0 + 2f64.powi(-7));
        assert_eq!(round_f64_to(Dtype::BF16, down), 1.0);
        assert_eq!(round_f64_to(Dtype::BF16, tie), 1.0);
        assert_eq!(round_f64_to(Dtype::BF16, -up), -(1.0 + 2f64.powi(-7)));
        // 1 + 3·2⁻⁸ ties between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even).
        assert_eq!(round_f64_to(Dtype::BF16, 1.0 + 3.0 * 2f64.powi(-8)), 1.0 + 2f64.powi(-6));
        // f16 keeps 11 bits: the tie 1 + 2⁻¹¹ goes to 1, a hair above goes up.
        assert_eq!(round_f64_to(Dtype::F16, 1.0 + 2f64.powi(-11)), 1.0);
        assert_eq!(round_f64_to(Dtype::F16, 1.0 + 2f64.powi(-11) + 2f64.powi(-45)), 1.0 + 2f64.powi(-10));
        // f32: Rust's `as`.
        assert_eq!(round_f64_to(Dtype::F32, 1.0 + 2f64.powi(-24)), 1.0);
        assert_eq!(round_f64_to(Dtype::F32, 1.0 + 2f64.powi(-24) + 2f64.powi(-50)), 1.0 + 2f64.powi(-23));
        // exact values and signed zeros pass through
        for v in [0.0, -0.0, 0.75, -3.5] {
            for d in [Dtype::F32, Dtype::BF16, Dtype::F16] {
                assert_eq!(round_f64_to(d, v).to_bits(), v.to_bits(), "{d} {v}");
            }
        }
        // against a brute-force nearest-even search over bf16 neighbours
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits((x & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000)
                * if x >> 63 == 1 { -1.0 } else { 1.0 };
            let lo = bf16::from_bits(bf16::from_f32(v as f32).to_bits().wrapping_sub(1));
            let mid = bf16::from_f32(v as f32);
            let hi = bf16::from_bits(mid.to_bits().wrapping_add(1));
            let best = [lo, mid, hi]
                .into_iter()
                .min_by(|a, b| {
                    let (da, db) = ((a.to_f64() - v).abs(), (b.to_f64() - v).abs());
                    da.total_cmp(&db).then((a.to_bits() & 1).cmp(&(b.to_bits() & 1)))
                })
                .unwrap();
            assert_eq!(round_f64_to(Dtype::BF16, v), best.to_f64(), "{v:e}");
        }
    }
}
