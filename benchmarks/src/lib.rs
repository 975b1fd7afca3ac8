//! Shared fixtures of the unlearn-bench benchmarks (issue 7): the model shapes, synthetic
//! batches, a tokenizer that covers a benchmark vocabulary, the four checkpoint folders of the
//! model-state arithmetic benchmark, and peak resident memory.
//!
//! The PyTorch side (`scripts/bench_pytorch.py`) mirrors every shape defined here; change both
//! together.

use anyhow::{Context, Result};
use lm::config::{Arch, LmConfig};
use lm::train::{collate, Batch, Example};
use lm::Tok;
use model_state::{Dtype, SafetensorsWriter};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A model shape and the batch it is trained or scored on.
#[derive(Debug, Clone)]
pub struct Shape {
    pub name: &'static str,
    pub cfg: LmConfig,
    pub batch: usize,
    /// Input tokens per row.
    pub seq: usize,
}

impl Shape {
    pub fn tokens_per_batch(&self) -> usize {
        self.batch * self.seq
    }
}

/// A Llama config with tied embeddings, no EOS (so generation always runs to its length).
pub fn llama(vocab: usize, hidden: usize, ffn: usize, layers: usize, heads: usize) -> LmConfig {
    let mut cfg = LmConfig::small(Arch::Llama, vocab, hidden, ffn, layers, heads, heads, 256);
    cfg.tie_word_embeddings = true;
    cfg.eos_token_id = None;
    cfg
}

/// The testbed's default model: Llama, hidden 128, 4 layers, 4 heads, FFN 512, vocab 2048,
/// tied embeddings (0.79 M parameters), trained on batches of 32 × 128 tokens.
pub fn default_shape() -> Shape {
    Shape { name: "default", cfg: llama(2048, 128, 512, 4, 4), batch: 32, seq: 128 }
}

/// The shape measured in issue 7: Llama, hidden 256, 4 layers, 4 heads, FFN 1024, vocab 4096,
/// tied embeddings (4.2 M parameters), batches of 16 × 128 tokens.
pub fn large_shape() -> Shape {
    Shape { name: "large", cfg: llama(4096, 256, 1024, 4, 4), batch: 16, seq: 128 }
}

/// A batch of `shape.batch` rows of `shape.seq + 1` uniformly random tokens (ids ≥ 3, the
/// specials excluded), shifted for next-token prediction: `shape.seq` inputs per row.
pub fn random_batch(shape: &Shape, seed: u64) -> Result<Batch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v = shape.cfg.vocab_size as u32;
    let ex: Vec<Example> =
        (0..shape.batch).map(|_| Example::full((0..=shape.seq).map(|_| rng.random_range(3..v)).collect())).collect();
    let refs: Vec<&Example> = ex.iter().collect();
    collate(&refs, (0..ex.len()).collect(), 0, &candle_core::Device::Cpu)
}

/// [`lm::testing::char_tokenizer_json`] with its vocabulary padded to `vocab` entries by
/// tokens `<|i|>` that encoding never produces but decoding prints, so that every id a random
/// model can generate decodes.
pub fn padded_char_tokenizer_json(vocab: usize) -> Result<String> {
    let mut j: serde_json::Value = serde_json::from_str(&lm::testing::char_tokenizer_json())?;
    let map = j["model"]["vocab"].as_object_mut().context("char tokenizer has no model.vocab")?;
    for i in map.len()..vocab {
        map.insert(format!("<|{i}|>"), i.into());
    }
    Ok(j.to_string())
}

/// The tokenizer of the scoring and generation benchmarks for `cfg`.
pub fn bench_tok(cfg: &LmConfig) -> Result<Tok> {
    let json = padded_char_tokenizer_json(cfg.vocab_size)?;
    let inner = tokenizers::Tokenizer::from_bytes(json.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot build the benchmark tokenizer: {e}"))?;
    Tok::new(inner, cfg)
}

/// Deterministic ASCII text of `n` characters from the char tokenizer's alphabet.
pub fn random_text(rng: &mut ChaCha8Rng, n: usize) -> String {
    let chars: Vec<char> = "abcdefghijklmnopqrstuvwxyz      ".chars().collect();
    (0..n).map(|_| chars[rng.random_range(0..chars.len())]).collect()
}

/// The loglikelihood workload: `n` requests of a 96-character context and a 32-character
/// continuation (128 tokens each with the character tokenizer).
pub fn loglikelihood_requests(n: usize, seed: u64) -> Vec<(String, String)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut ctx = random_text(&mut rng, 95);
            ctx.push('x'); // no trailing space: the split stays 96 + 32
            let mut cont = String::from("y");
            cont.push_str(&random_text(&mut rng, 31));
            (ctx, cont)
        })
        .collect()
}

/// The checkpoints of the arithmetic benchmark: Llama-shaped f32 folders (hidden 1024,
/// FFN 4096, 3 layers, vocab 16384, tied: 67.1 M parameters, 268 MB each, 1.07 GB for four).
pub fn arith_config() -> LmConfig {
    llama(16384, 1024, 4096, 3, 16)
}

/// Names of the four arithmetic inputs: the model trained on D, the base, and the forget and
/// retain fine-tunes of the base.
pub const ARITH_TERMS: [&str; 4] = ["theta_D", "theta_0", "theta_f", "theta_r"];

/// MSA's θ_D − α·τ_f + β·τ_r with τ_x = θ_x − θ_0, as coefficients on [`ARITH_TERMS`].
pub fn msa_terms(dir: &Path, alpha: f64, beta: f64) -> Vec<(f64, PathBuf)> {
    let c = [1.0, alpha - beta, -alpha, beta];
    ARITH_TERMS.iter().zip(c).map(|(n, c)| (c, dir.join(n))).collect()
}

/// Write the four arithmetic checkpoints under `dir` once (kept across runs: a `.done` marker
/// says a folder is complete). Values are deterministic pseudo-random numbers of size ~0.02.
pub fn ensure_arith_fixture(dir: &Path) -> Result<Vec<PathBuf>> {
    let cfg = arith_config();
    let shapes = cfg.parameter_shapes()?;
    let mut out = vec![];
    for (k, name) in ARITH_TERMS.iter().enumerate() {
        let d = dir.join(name);
        out.push(d.clone());
        if d.join(".done").is_file() {
            continue;
        }
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        std::fs::write(d.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
        let list: Vec<(String, Dtype, Vec<usize>)> =
            shapes.iter().map(|(n, s)| (n.clone(), Dtype::F32, s.clone())).collect();
        let mut w = SafetensorsWriter::create(&d.join("model.safetensors"), &list, &BTreeMap::new())?;
        let order: Vec<String> = w.order().to_vec();
        let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (k as u64 + 1);
        for n in &order {
            let numel: usize = shapes.iter().find(|(m, _)| m == n).map(|(_, s)| s.iter().product()).unwrap_or(0);
            let mut left = numel;
            let mut buf = Vec::with_capacity(4 << 20);
            while left > 0 {
                let m = left.min(1 << 20);
                buf.clear();
                for _ in 0..m {
                    // xorshift64*: fast, deterministic
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
                    let x = ((r >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04;
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                w.write(&buf)?;
                left -= m;
            }
        }
        w.finish()?;
        std::fs::write(d.join(".done"), b"")?;
    }
    Ok(out)
}

/// The folder holding the arithmetic fixture: `$UNLEARN_BENCH_DIR` or `target/bench-fixtures`.
pub fn fixture_dir() -> PathBuf {
    match std::env::var_os("UNLEARN_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-fixtures"),
    }
}

/// Peak resident set size of this process so far (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kb("VmHWM:").map(|kb| kb * 1024)
}

/// Current resident set size (VmRSS), in bytes.
pub fn rss_bytes() -> Option<u64> {
    proc_status_kb("VmRSS:").map(|kb| kb * 1024)
}

/// Reset the peak resident set size to the current one (Linux ≥ 4.0).
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", b"5").is_ok()
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_have_the_documented_parameter_counts() {
        // default: emb 2048·128 + 4·(4·128² + 3·128·512) + norms = 262144 + 1048576 + 1152
        assert_eq!(default_shape().cfg.num_parameters().unwrap(), 262_144 + 4 * (65_536 + 196_608) + 9 * 128);
        // large: 4096·256 + 4·(4·256² + 3·256·1024) + 9·256
        assert_eq!(large_shape().cfg.num_parameters().unwrap(), 1_048_576 + 4 * (262_144 + 786_432) + 9 * 256);
        assert_eq!(
            arith_config().num_parameters().unwrap(),
            16384 * 1024 + 3 * (4 * 1024 * 1024 + 3 * 1024 * 4096) + 7 * 1024
        );
    }

    #[test]
    fn padded_tokenizer_decodes_every_id_and_encodes_chars() {
        let cfg = default_shape().cfg;
        let tok = bench_tok(&cfg).unwrap();
        assert_eq!(tok.inner.get_vocab_size(true), 2048);
        assert_eq!(tok.decode(&[2047]).unwrap(), "<|2047|>");
        assert_eq!(tok.encode("ab").unwrap(), vec![4, 5]);
        let (c, x) = &loglikelihood_requests(1, 0)[0];
        assert_eq!(tok.encode(c).unwrap().len() + tok.encode(x).unwrap().len(), 128);
    }
}
