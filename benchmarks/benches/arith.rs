//! Streaming model-state arithmetic throughput (issue 7): `model_state::combine` of MSA's
//! θ_D − α·τ_f + β·τ_r (τ_x = θ_x − θ_0; α = 1, β = 0.5) over four f32 checkpoint folders
//! (Llama-shaped, hidden 1024, FFN 4096, 3 layers, vocab 16384: 268 MB each, 1.07 GB read and
//! 268 MB written per call), reported in GB/s of input read, plus the peak resident memory.
//!
//! The folders are written once under `$UNLEARN_BENCH_DIR` (default `target/bench-fixtures`)
//! and reused; the page cache is warm after the first call. Two variants:
//!
//! - `arith/msa_combine_page_cache` (`sync: false`): the output stays in the page cache, as
//!   `cat`'s reads do, so this is the arithmetic against `cat` of the same inputs (the bound
//!   `scripts/compare.sh` times). The PyTorch reference (`save_file`) does not fsync either.
//! - `arith/msa_combine` (the default, `sync: true`): the output is flushed to disk before it
//!   is renamed into place, so it also pays the disk's write speed for 268 MB and, when
//!   overwriting, the unlink of the previous flushed output; `scripts/compare.sh` states the
//!   bound as `cat` plus `dd … conv=fsync` of the output's size.

use benchmarks::{ensure_arith_fixture, fixture_dir, msa_terms, peak_rss_bytes, reset_peak_rss, rss_bytes};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use model_state::{combine, CombineOptions};
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arith(c: &mut Criterion) {
    lm::keep_freed_memory();
    let dir = fixture_dir().join("arith");
    let inputs = ensure_arith_fixture(&dir).expect("fixture");
    let bytes: u64 =
        inputs.iter().map(|d| std::fs::metadata(d.join("model.safetensors")).map(|m| m.len()).unwrap_or(0)).sum();
    let terms = msa_terms(&dir, 1.0, 0.5);
    let out = fixture_dir().join("arith-out");
    let opts = CombineOptions { overwrite: true, ..Default::default() };
    let before = rss_bytes().unwrap_or(0);
    reset_peak_rss();
    let report = combine(&terms, &out, &opts).expect("combine");
    let peak = peak_rss_bytes().unwrap_or(0);
    eprintln!(
        "arith: {:.2} GB read in {:.2} s ({:.2} GB/s); RSS before {:.1} MiB, peak during one combine {:.1} MiB \
         (mapped input pages count towards RSS; largest tensor {:.1} MiB)",
        report.bytes_read as f64 / 1e9,
        report.seconds,
        report.bytes_read as f64 / 1e9 / report.seconds,
        before as f64 / (1 << 20) as f64,
        peak as f64 / (1 << 20) as f64,
        (benchmarks::arith_config().vocab_size * benchmarks::arith_config().hidden_size * 4) as f64 / (1 << 20) as f64,
    );
    println!(
        "{{\"workload\": \"arith\", \"bytes_read\": {bytes}, \"seconds\": {:.4}, \"peak_rss_bytes\": {peak}}}",
        report.seconds
    );
    let mut g = c.benchmark_group("arith");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(15));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("msa_combine", |b| b.iter(|| combine(&terms, &out, &opts).expect("combine")));
    let cached = CombineOptions { sync: false, ..opts.clone() };
    let out2 = fixture_dir().join("arith-out-page-cache");
    g.bench_function("msa_combine_page_cache", |b| b.iter(|| combine(&terms, &out2, &cached).expect("combine")));
    g.finish();
}

criterion_group!(benches, arith);
criterion_main!(benches);
