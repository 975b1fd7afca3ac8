//! Peak memory of `combine`: not a timing test, a bound on how much the process's resident
//! set grows while combining 3 × 64 MiB checkpoints made of 16 MiB tensors.
//!
//! We read VmHWM (peak resident set) from /proc/self/status, after resetting it by writing
//! "5" to /proc/self/clear_refs (Linux ≥ 4.0; if that is refused, the inputs are generated
//! in small chunks so the earlier peak stays low anyway). VmHWM counts file-backed pages of
//! memory maps that have been touched, so without `madvise(MADV_DONTNEED)` after each chunk
//! the 192 MiB of mapped inputs would all count; the control at the end shows that touching
//! the inputs without releasing does raise VmHWM by about their size, so the bound is a real
//! check of the streaming, not of an allocator detail. Linux only.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::values_from;
use half::bf16;
use model_state::{combine, CombineOptions, Dtype, SafetensorsWriter, StateFiles};

const MIB: usize = 1 << 20;
const TENSOR_BYTES: usize = 16 * MIB;

/// (name, dtype, shape): four 16 MiB tensors, 64 MiB per model.
fn layout() -> Vec<(String, Dtype, Vec<usize>)> {
    vec![
        ("a.weight".into(), Dtype::F32, vec![4096, 1024]),
        ("b.weight".into(), Dtype::F32, vec![4 * MIB]),
        ("c.weight".into(), Dtype::BF16, vec![2048, 4096]),
        ("d.weight".into(), Dtype::BF16, vec![8 * MIB]),
    ]
}

fn seed(model: u64, tensor: &str) -> u64 {
    model * 100 + tensor.as_bytes()[0] as u64
}

/// Element `i` of `tensor` in `model`, as stored.
fn stored(model: u64, tensor: &str, dtype: Dtype, i: usize) -> f32 {
    let v = values_from(seed(model, tensor), i, 1)[0];
    if dtype == Dtype::BF16 {
        bf16::from_f32(v).to_f32()
    } else {
        v
    }
}

/// Streams a 64 MiB checkpoint to `dir` with at most 1 Mi elements in memory.
fn write_big_state(dir: &Path, model: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    let specs = layout();
    let mut w = SafetensorsWriter::create(&dir.join("model.safetensors"), &specs, &BTreeMap::new()).unwrap();
    for name in w.order().to_vec() {
        let (_, dtype, shape) = specs.iter().find(|s| s.0 == name).unwrap();
        let numel: usize = shape.iter().product();
        for start in (0..numel).step_by(MIB) {
            let chunk = values_from(seed(model, &name), start, MIB.min(numel - start));
            let bytes: Vec<u8> = match dtype {
                Dtype::F32 => chunk.iter().flat_map(|v| v.to_le_bytes()).collect(),
                _ => chunk.iter().flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes()).collect(),
            };
            w.write(&bytes).unwrap();
        }
    }
    let len = w.finish().unwrap();
    assert_eq!(len, std::fs::metadata(dir.join("model.safetensors")).unwrap().len());
    assert_eq!((len - 64 * MIB as u64) % 8, 0, "8-byte length + header padded to 8");
}

/// A field of /proc/self/status in bytes ("VmHWM:   123 kB").
fn status_bytes(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets VmHWM to the current RSS when the kernel allows; returns the peak to compare with.
fn reset_peak() -> usize {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_bytes("VmHWM:").unwrap()
}

#[test]
fn combine_peak_rss_grows_by_a_few_tensors_at_most() {
    if !cfg!(target_os = "linux") || status_bytes("VmHWM:").is_none() {
        println!("SKIPPED: needs Linux /proc/self/status");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let coefs = [1.0, -1.5, 0.5];
    let terms: Vec<_> = (0..3u64)
        .map(|m| {
            let dir = root.path().join(format!("m{m}"));
            write_big_state(&dir, m);
            (coefs[m as usize], dir)
        })
        .collect();
    let out = root.path().join("out");

    let before = reset_peak();
    let report = combine(&terms, &out, &CombineOptions::default()).unwrap();
    let growth = status_bytes("VmHWM:").unwrap().saturating_sub(before);
    eprintln!(
        "combine of 3 x 64 MiB: VmHWM grew by {:.1} MiB (bound {} MiB), {:.2} s, peak accumulator {:.2} MiB",
        growth as f64 / MIB as f64,
        (4 * TENSOR_BYTES + 32 * MIB) / MIB,
        report.seconds,
        report.peak_accumulator_bytes as f64 / MIB as f64
    );
    assert_eq!(report.bytes_read, 3 * 64 * MIB as u64);
    assert_eq!(report.peak_accumulator_bytes, model_state::COMBINE_CHUNK_ELEMS * 4);
    assert!(growth < 4 * TENSOR_BYTES + 32 * MIB, "peak RSS grew by {growth} bytes");

    // Spot-check values (first, chunk-boundary and last elements of every tensor).
    let state = StateFiles::open(&out).unwrap();
    for (name, dtype, shape) in layout() {
        let numel: usize = shape.iter().product();
        let bytes = state.tensor_bytes(&name).unwrap();
        for i in [0, 1, MIB - 1, MIB, numel - 1] {
            let mut acc = 0.0f32;
            for (m, c) in coefs.iter().enumerate() {
                acc += (*c as f32) * stored(m as u64, &name, dtype, i);
            }
            let got = match dtype {
                Dtype::F32 => f32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()),
                _ => bf16::from_bits(u16::from_le_bytes(bytes[2 * i..2 * i + 2].try_into().unwrap())).to_f32(),
            };
            let want = if dtype == Dtype::BF16 { bf16::from_f32(acc).to_f32() } else { acc };
            assert_eq!(got, want, "{name}[{i}]");
        }
    }
    drop(state);

    // Control: touching every page of the mapped inputs without releasing them does count.
    let before = reset_peak();
    let states: Vec<_> = terms.iter().map(|(_, d)| StateFiles::open(d).unwrap()).collect();
    let mut checksum = 0u64;
    for s in &states {
        for name in s.tensors().keys() {
            checksum += s.tensor_bytes(name).unwrap().iter().step_by(4096).map(|&b| b as u64).sum::<u64>();
        }
    }
    let touched = status_bytes("VmHWM:").unwrap().saturating_sub(before);
    eprintln!(
        "control: touching the inputs raised VmHWM by {:.1} MiB (checksum {checksum})",
        touched as f64 / MIB as f64
    );
    assert!(touched > 150 * MIB, "control: touching 192 MiB of mapped inputs raised VmHWM by only {touched} bytes");
}
