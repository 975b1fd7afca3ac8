//! Times [`model_state::combine`] on existing checkpoint folders against a `cat`-like read of
//! the same files (issue 7): the quick loop behind the numbers in the crate docs.
//!
//! `cargo run --release -p model-state --example combine_timing -- [FIXTURE_DIR] [OUT] [RUNS]`
//! with FIXTURE_DIR holding `theta_D theta_0 theta_f theta_r` (the benchmark's
//! `target/bench-fixtures/arith`, written by `cargo bench -p benchmarks --bench arith`), MSA
//! coefficients α = 1, β = 0.5. `UNLEARN_ARITH_THREADS` and `UNLEARN_ARITH_CHUNK` (elements)
//! override the defaults.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use model_state::{combine, CombineOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().map_or("target/bench-fixtures/arith", String::as_str));
    let out = PathBuf::from(args.get(1).map_or("target/bench-fixtures/arith-out", String::as_str));
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let (alpha, beta) = (1.0, 0.5);
    let terms: Vec<(f64, PathBuf)> =
        [("theta_D", 1.0), ("theta_0", alpha - beta), ("theta_f", -alpha), ("theta_r", beta)]
            .iter()
            .map(|(n, c)| (*c, dir.join(n)))
            .collect();
    let mut opts = CombineOptions { overwrite: true, ..Default::default() };
    opts.sync = std::env::var_os("NO_SYNC").is_none();
    if let Some(c) = std::env::var("UNLEARN_ARITH_CHUNK").ok().and_then(|v| v.parse().ok()) {
        opts.chunk_elems = c;
    }
    for _ in 0..runs {
        // cat: read(2) of each file in 128 KiB blocks, as coreutils does.
        let t = Instant::now();
        let mut buf = vec![0u8; 128 << 10];
        let mut cat_bytes = 0u64;
        for (_, d) in terms.iter().filter(|_| std::env::var_os("NO_CAT").is_none()) {
            let mut f = std::fs::File::open(d.join("model.safetensors"))?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                cat_bytes += n as u64;
            }
        }
        let cat_s = t.elapsed().as_secs_f64();
        let r = combine(&terms, &out, &opts)?;
        let gbs = r.bytes_read as f64 / 1e9 / r.seconds;
        let cat_gbs = cat_bytes as f64 / 1e9 / cat_s;
        println!(
            "combine {:.3} s {:.2} GB/s | cat {:.3} s {:.2} GB/s | ratio {:.2}",
            r.seconds,
            gbs,
            cat_s,
            cat_gbs,
            gbs / cat_gbs
        );
    }
    Ok(())
}
