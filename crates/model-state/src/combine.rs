//! Linear combination of model states, Σ cᵢ·θᵢ, streamed chunk by chunk from memory maps.
//!
//! This is the arithmetic under Model State Arithmetic (θ_D − α·(θ_f − θ_0) + β·(θ_r − θ_0)
//! is a combination of four checkpoints) and task negation (Ilharco et al., 2023). Every term
//! must have the same tensor names, shapes and dtypes. Float tensors (F32, BF16, F16) are
//! accumulated in f32 as `acc += (cᵢ as f32) · xᵢ`, in term order, and stored in the inputs'
//! dtype (rounded to nearest even). Other tensors (integer buffers, F64, ...) are copied from
//! the first term when all terms hold identical bytes, and are an error otherwise.
//!
//! Output: always ONE `model.safetensors` (even for sharded inputs; `transformers`, candle and
//! `safetensors` all load single files of any size), plus the config and tokenizer files of
//! the first term. It is written into a sibling temporary folder `.<name>.tmp-<pid>` and renamed
//! into place, so `out` never exists half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use safetensors::Dtype;

#[cfg(unix)]
use crate::elem::f32_bytes_mut;
use crate::elem::{axpy_f32, elem_bytes, encoded, is_arith_float};
use crate::files::{StateFiles, SINGLE_FILE};
use crate::lowrank::LowRankDelta;
use crate::output::{copy_side_files, write_folder_atomically};
use crate::writer::SafetensorsWriter;

/// Default elements per chunk of [`combine`]: 256 Ki, so a term's chunk (1 MiB of f32) and
/// the accumulator stay in the core's cache between the read and the arithmetic. Measured
/// on the issue 7 benchmark: 4 Mi-element chunks were ~1.5× slower in the compute phase.
pub const COMBINE_CHUNK_ELEMS: usize = 1 << 18;

/// How [`combine`] writes its output.
#[derive(Debug, Clone)]
pub struct CombineOptions {
    /// Replace `out` if it already exists (otherwise that is an error).
    pub overwrite: bool,
    /// Elements per streamed chunk; peak accumulator memory is 4 bytes times this (per thread).
    pub chunk_elems: usize,
    /// Threads (0: `UNLEARN_ARITH_THREADS`, else the available cores, at most 8). The output
    /// is bit-identical for any number.
    pub threads: usize,
    /// Flush the output file to disk (`fsync`) before renaming it into place (default). Off,
    /// a crash soon after `combine` returns can leave `out` with missing data, but the call
    /// no longer waits for the disk: on the issue 7 benchmark the fsync of 268 MB took
    /// ~0.45 s, more than the arithmetic itself.
    pub sync: bool,
    /// Extra `__metadata__` entries for the output file (`"format": "pt"` is always set).
    pub metadata: BTreeMap<String, String>,
}

impl Default for CombineOptions {
    fn default() -> Self {
        Self { overwrite: false, chunk_elems: COMBINE_CHUNK_ELEMS, threads: 0, sync: true, metadata: BTreeMap::new() }
    }
}

/// What [`combine`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct CombineReport {
    /// Tensor data bytes read from all terms.
    pub bytes_read: u64,
    /// Size of the written `model.safetensors` (header included).
    pub bytes_written: u64,
    /// Number of tensors written.
    pub tensors: usize,
    /// Wall-clock seconds for the whole call.
    pub seconds: f64,
    /// Largest f32 accumulator used, in bytes.
    pub peak_accumulator_bytes: usize,
}

/// Writes the model state Σ `coef`·θ(`dir`) over `terms` into the folder `out`.
///
/// Errors name the offending term, file and tensor. On error nothing is left at `out`
/// (an existing `out` is untouched unless the call succeeds with `opts.overwrite`).
pub fn combine(terms: &[(f64, PathBuf)], out: &Path, opts: &CombineOptions) -> Result<CombineReport> {
    combine_low_rank(terms, &[], out, opts)
}

/// [`combine`] plus low-rank terms: writes Σ `coef`·θ(`dir`) + Σ `c`·Δ(`adapter`), where
/// each `adapter` is a LoRA adapter folder ([`LowRankDelta`]: Δ = s·B·A on the weights it
/// adapts, zero elsewhere). This is MSA with LoRA task vectors: θ_D − α·τ_f + β·τ_r with
/// τ = s·B·A read from the fine-tunes' adapters, so no dense τ (nor θ_1, θ_2) ever exists.
///
/// Per element, the dense terms are accumulated first (as in [`combine`], so without
/// low-rank terms the bytes are [`combine`]'s), then each low-rank term in order, its
/// (B·A)[i, j] computed in f64 and `c·s·(B·A)[i, j]` added to the f32 accumulator. Only the
/// factors are held in memory. Errors name the adapter folder and the weight when an adapted
/// weight is missing from the states or has another shape.
pub fn combine_low_rank(
    terms: &[(f64, PathBuf)],
    low_rank: &[(f64, PathBuf)],
    out: &Path,
    opts: &CombineOptions,
) -> Result<CombineReport> {
    let started = Instant::now();
    ensure!(!terms.is_empty(), "nothing to combine: no terms given");
    ensure!(opts.chunk_elems > 0, "chunk_elems must be positive");
    for (i, (coef, dir)) in terms.iter().enumerate() {
        ensure!(coef.is_finite(), "term {} ({}): coefficient {coef} is not a finite number", i + 1, dir.display());
    }
    let states = terms
        .iter()
        .enumerate()
        .map(|(i, (_, dir))| StateFiles::open(dir).with_context(|| format!("term {}", i + 1)))
        .collect::<Result<Vec<_>>>()?;
    check_same_layout(&states)?;
    let mut low = vec![];
    for (i, (coef, dir)) in low_rank.iter().enumerate() {
        ensure!(
            coef.is_finite(),
            "low-rank term {} ({}): coefficient {coef} is not a finite number",
            i + 1,
            dir.display()
        );
        let delta = LowRankDelta::open(dir).with_context(|| format!("low-rank term {}", i + 1))?;
        for (name, pair) in &delta.pairs {
            let Some(entry) = states[0].tensor(name) else {
                bail!(
                    "low-rank term {} ({}): adapts {name}, which {} does not have",
                    i + 1,
                    dir.display(),
                    states[0].dir().display()
                );
            };
            ensure!(
                is_arith_float(entry.dtype) && entry.shape == [pair.rows, pair.cols],
                "low-rank term {} ({}): {name} is {} {:?} in {}, the adapter's B·A is [{}, {}]",
                i + 1,
                dir.display(),
                entry.dtype,
                entry.shape,
                states[0].dir().display(),
                pair.rows,
                pair.cols
            );
        }
        low.push((*coef * delta.scale, delta));
    }

    let mut inputs: Vec<&Path> = terms.iter().map(|(_, d)| d.as_path()).collect();
    inputs.extend(low_rank.iter().map(|(_, d)| d.as_path()));
    let coefs: Vec<f64> = terms.iter().map(|(c, _)| *c).collect();
    let mut report = write_folder_atomically(out, opts.overwrite, &inputs, "an input term", |tmp| {
        write_combination(&states, &coefs, &low, tmp, opts)
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Checks every state has the tensors, shapes and dtypes of the first one.
pub(crate) fn check_same_layout(states: &[StateFiles]) -> Result<()> {
    let first = &states[0];
    for other in &states[1..] {
        for (name, a) in first.tensors() {
            let Some(b) = other.tensor(name) else {
                bail!("tensor {name} is in {} but missing from {}", first.path_of(a).display(), other.dir().display());
            };
            if a.shape != b.shape || a.dtype != b.dtype {
                bail!(
                    "tensor {name} differs: {} {:?} in {} but {} {:?} in {}",
                    a.dtype,
                    a.shape,
                    first.path_of(a).display(),
                    b.dtype,
                    b.shape,
                    other.path_of(b).display()
                );
            }
        }
        if let Some((name, b)) = other.tensors().iter().find(|(n, _)| first.tensor(n).is_none()) {
            bail!("tensor {name} is in {} but missing from {}", other.path_of(b).display(), first.dir().display());
        }
    }
    Ok(())
}

/// Streams the combination into `dir/model.safetensors` and copies the side files.
/// Low-rank terms: (coefficient × the adapter's scale, the adapter).
type LowRank = [(f64, LowRankDelta)];

fn write_combination(
    states: &[StateFiles],
    coefs: &[f64],
    low: &LowRank,
    dir: &Path,
    opts: &CombineOptions,
) -> Result<CombineReport> {
    let first = &states[0];
    let specs: Vec<(String, Dtype, Vec<usize>)> =
        first.tensors().iter().map(|(n, e)| (n.clone(), e.dtype, e.shape.clone())).collect();
    let writer = SafetensorsWriter::create(&dir.join(SINGLE_FILE), &specs, &opts.metadata)?;
    #[cfg(not(unix))]
    let mut writer = writer;
    let order = writer.order().to_vec();
    #[cfg(unix)]
    let (bytes_read, peak_acc) = write_parallel(states, coefs, low, &writer, &order, opts)?;
    #[cfg(not(unix))]
    let (bytes_read, peak_acc) = write_sequential(states, coefs, low, &mut writer, &order, opts)?;
    let bytes_written = writer.finish_with(opts.sync)?;

    copy_side_files(first.dir(), dir)?;
    Ok(CombineReport {
        bytes_read,
        bytes_written,
        tensors: order.len(),
        seconds: 0.0,
        peak_accumulator_bytes: peak_acc,
    })
}

/// Adds the low-rank terms' values of elements `start..start + acc.len()` of tensor `name`.
fn add_low_rank(low: &LowRank, name: &str, start: usize, acc: &mut [f32]) {
    for (c, delta) in low {
        if let Some(pair) = delta.pairs.get(name) {
            pair.add_to(*c, start, acc);
        }
    }
}

/// Threads for [`write_parallel`]: `opts.threads`, else `UNLEARN_ARITH_THREADS`, else the
/// available cores (at most 8).
#[cfg(unix)]
fn arith_threads(opts: &CombineOptions) -> usize {
    if opts.threads > 0 {
        return opts.threads;
    }
    std::env::var("UNLEARN_ARITH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(8))
        .max(1)
}

/// The combination with positional reads and writes: the tensors are cut into chunks of
/// `opts.chunk_elems` elements, dealt round-robin to threads; each thread reads its chunk
/// of every term, one term at a time, into one f32 buffer (no memory maps, so no page
/// faults; F32 data is then used in place), accumulates in f32 and writes the encoded chunk
/// at its offset (an F32 accumulator is written as is). Every element is computed by the
/// same sequence of operations as in the sequential path, so the output is bit-identical to
/// it for any number of threads. Memory: per thread, one chunk of input plus the
/// accumulator (see the crate docs for the strategies measured).
#[cfg(unix)]
fn write_parallel(
    states: &[StateFiles],
    coefs: &[f64],
    low: &LowRank,
    writer: &SafetensorsWriter,
    order: &[String],
    opts: &CombineOptions,
) -> Result<(u64, usize)> {
    let first = &states[0];
    let coefs32: Vec<f32> = coefs.iter().map(|&c| c as f32).collect();
    // (tensor index, element/byte start, length): chunks of float tensors are elements,
    // chunks of other tensors (copied, must be identical in all terms) are bytes.
    let mut items: Vec<(usize, usize, usize)> = vec![];
    for (ti, name) in order.iter().enumerate() {
        let entry = &first.tensors()[name];
        let (n, step) = if is_arith_float(entry.dtype) {
            (entry.numel(), opts.chunk_elems)
        } else {
            (entry.byte_len(), opts.chunk_elems.saturating_mul(4))
        };
        let mut start = 0;
        while start < n {
            let len = step.min(n - start);
            items.push((ti, start, len));
            start += len;
        }
    }
    let threads = arith_threads(opts).min(items.len().max(1));
    let read = std::sync::atomic::AtomicU64::new(0);
    let peak = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let work = |tid: usize| -> Result<()> {
        let mut bufs: Vec<Vec<u8>> = vec![vec![]; states.len()];
        let mut acc: Vec<f32> = vec![];
        let mut fbuf: Vec<f32> = vec![];
        let mut scratch: Vec<u8> = vec![];
        for &(ti, start, len) in items.iter().skip(tid).step_by(threads) {
            if failed.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(()); // another thread failed; its error is reported
            }
            let name = &order[ti];
            let entries: Vec<_> = states.iter().map(|s| &s.tensors()[name]).collect();
            let dtype = entries[0].dtype;
            let offset = writer.data_range(ti).start;
            if is_arith_float(dtype) {
                let esz = elem_bytes(dtype);
                let range = start * esz..(start + len) * esz;
                acc.clear();
                acc.resize(len, -0.0);
                peak.fetch_max(len * 4, std::sync::atomic::Ordering::Relaxed);
                for ((state, entry), &c) in states.iter().zip(&entries).zip(&coefs32) {
                    // An f32 buffer, so F32 data lands aligned and is used in place.
                    fbuf.resize(range.len().div_ceil(4), 0.0);
                    let buf = &mut f32_bytes_mut(&mut fbuf)[..range.len()];
                    state.read_into(entry, range.clone(), buf)?;
                    axpy_f32(dtype, c, buf, &mut acc);
                }
                add_low_rank(low, name, start, &mut acc);
                writer.write_at(offset + range.start as u64, encoded(dtype, &acc, &mut scratch))?;
                read.fetch_add((range.len() * states.len()) as u64, std::sync::atomic::Ordering::Relaxed);
            } else {
                let range = start..start + len;
                for ((state, entry), buf) in states.iter().zip(&entries).zip(bufs.iter_mut()) {
                    buf.resize(range.len(), 0);
                    state.read_into(entry, range.clone(), buf)?;
                }
                if let Some(i) = (1..states.len()).find(|&i| bufs[i] != bufs[0]) {
                    bail!(
                        "tensor {name} has dtype {dtype}, which is not combined arithmetically, \
                         and differs between {} and {} (term {}); such tensors must be identical in all terms",
                        first.path_of(entries[0]).display(),
                        states[i].path_of(entries[i]).display(),
                        i + 1
                    );
                }
                writer.write_at(offset + start as u64, &bufs[0])?;
                read.fetch_add((range.len() * states.len()) as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    };
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|tid| {
                let work = &work;
                let failed = &failed;
                s.spawn(move || {
                    let r = work(tid);
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("an arithmetic thread panicked"))))
            .collect()
    });
    for r in results {
        r?;
    }
    Ok((read.into_inner(), peak.into_inner()))
}

/// The combination read through the memory maps and written sequentially (non-Unix).
#[cfg(any(test, not(unix)))]
fn write_sequential(
    states: &[StateFiles],
    coefs: &[f64],
    low: &LowRank,
    writer: &mut SafetensorsWriter,
    order: &[String],
    opts: &CombineOptions,
) -> Result<(u64, usize)> {
    let first = &states[0];

    let coefs32: Vec<f32> = coefs.iter().map(|&c| c as f32).collect();
    let mut acc: Vec<f32> = Vec::new();
    let mut scratch: Vec<u8> = Vec::new();
    let mut bytes_read = 0u64;
    let mut peak_acc = 0usize;
    for name in order {
        let entries: Vec<_> = states.iter().map(|s| &s.tensors()[name]).collect();
        let dtype = entries[0].dtype;
        if is_arith_float(dtype) {
            let esz = elem_bytes(dtype);
            let numel = entries[0].numel();
            let mut start = 0;
            while start < numel {
                let len = opts.chunk_elems.min(numel - start);
                let range = start * esz..(start + len) * esz;
                acc.clear();
                // −0.0 is the additive identity for every float (+0.0 is not: +0 + −0 = +0),
                // so a single term with coefficient 1 reproduces its input bit for bit.
                acc.resize(len, -0.0);
                peak_acc = peak_acc.max(len * 4);
                for ((state, entry), &c) in states.iter().zip(&entries).zip(&coefs32) {
                    axpy_f32(dtype, c, state.bytes(entry, range.clone()), &mut acc);
                    state.release(entry, range.clone());
                    bytes_read += range.len() as u64;
                }
                add_low_rank(low, name, start, &mut acc);
                writer.write(encoded(dtype, &acc, &mut scratch))?;
                start += len;
            }
        } else {
            // Integer buffers and dtypes we do no arithmetic on: identical in all terms, copied.
            let total = entries[0].byte_len();
            let step = opts.chunk_elems.saturating_mul(4);
            let mut start = 0;
            while start < total {
                let range = start..total.min(start + step);
                let reference = first.bytes(entries[0], range.clone());
                for (i, (state, entry)) in states.iter().zip(&entries).enumerate().skip(1) {
                    if state.bytes(entry, range.clone()) != reference {
                        bail!(
                            "tensor {name} has dtype {dtype}, which is not combined arithmetically, \
                             and differs between {} and {} (term {}); such tensors must be identical in all terms",
                            first.path_of(entries[0]).display(),
                            state.path_of(entry).display(),
                            i + 1
                        );
                    }
                    state.release(entry, range.clone());
                }
                writer.write(reference)?;
                first.release(entries[0], range.clone());
                bytes_read += (range.len() * states.len()) as u64;
                start = range.end;
            }
        }
    }
    Ok((bytes_read, peak_acc))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// Writes a model state of F32, BF16, F16 and I64 tensors with odd sizes; `seed` varies
    /// the float values (the I64 buffer is the same in every state).
    fn state(dir: &Path, seed: u32) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        let specs = vec![
            ("a".to_string(), Dtype::F32, vec![1001]),
            ("b".to_string(), Dtype::BF16, vec![7, 111]),
            ("c".to_string(), Dtype::F16, vec![33]),
            ("d".to_string(), Dtype::I64, vec![5]),
        ];
        let mut w = SafetensorsWriter::create(&dir.join(SINGLE_FILE), &specs, &BTreeMap::new()).unwrap();
        for name in w.order().to_vec() {
            let (_, dtype, shape) = specs.iter().find(|s| s.0 == name).unwrap();
            let n: usize = shape.iter().product();
            let x = |i: usize| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / u32::MAX as f32 - 0.5;
            let bytes: Vec<u8> = match dtype {
                Dtype::F32 => (0..n).flat_map(|i| x(i).to_le_bytes()).collect(),
                Dtype::BF16 => (0..n).flat_map(|i| half::bf16::from_f32(x(i)).to_le_bytes()).collect(),
                Dtype::F16 => (0..n).flat_map(|i| half::f16::from_f32(x(i)).to_le_bytes()).collect(),
                _ => (0..n as i64).flat_map(|i| (i * 3 - 7).to_le_bytes()).collect(),
            };
            w.write(&bytes).unwrap();
        }
        w.finish().unwrap();
    }

    /// The threaded `pread` path (f32 data used in place) against the sequential memory-map
    /// path (the code before issue 7's speed-up, still the non-unix path): same bytes for any
    /// chunk size and thread count.
    #[test]
    fn parallel_path_writes_the_bytes_of_the_sequential_path() {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..4).map(|i| root.path().join(format!("m{i}"))).collect();
        for (i, d) in dirs.iter().enumerate() {
            state(d, (i as u32).wrapping_mul(0x9E37_79B9));
        }
        let states: Vec<StateFiles> = dirs.iter().map(|d| StateFiles::open(d).unwrap()).collect();
        let coefs = [1.0, 0.5, -1.0, 0.5];
        let specs: Vec<(String, Dtype, Vec<usize>)> =
            states[0].tensors().iter().map(|(n, e)| (n.clone(), e.dtype, e.shape.clone())).collect();
        for (chunk_elems, threads) in [(1, 2), (64, 3), (1000, 1), (COMBINE_CHUNK_ELEMS, 2)] {
            let opts = CombineOptions { chunk_elems, threads, ..Default::default() };
            let seq = root.path().join(format!("seq-{chunk_elems}"));
            let mut w = SafetensorsWriter::create(&seq, &specs, &BTreeMap::new()).unwrap();
            let order = w.order().to_vec();
            write_sequential(&states, &coefs, &[], &mut w, &order, &opts).unwrap();
            w.finish().unwrap();
            let par = root.path().join(format!("par-{chunk_elems}"));
            let w = SafetensorsWriter::create(&par, &specs, &BTreeMap::new()).unwrap();
            write_parallel(&states, &coefs, &[], &w, &order, &opts).unwrap();
            w.finish().unwrap();
            assert_eq!(
                std::fs::read(&seq).unwrap(),
                std::fs::read(&par).unwrap(),
                "chunk {chunk_elems}, {threads} threads"
            );
        }
    }
}
