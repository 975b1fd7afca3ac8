//! Write tiny random Hugging Face checkpoint folders, one per architecture variant, for the
//! transformers cross-check (`scripts/check_against_transformers.py`, issue 2 item 3):
//!
//! `cargo run --release -p benchmarks --example tiny_checkpoints -- OUT_DIR`
//!
//! - `llama`: Llama with GQA (4 heads, 2 KV heads), untied head;
//! - `llama3-rope`: the same with `rope_scaling` of type llama3 (factor 8, original context
//!   64, so all three frequency bands of the scaling are used at head dim 8);
//! - `qwen2`: q/k/v biases, tied embeddings;
//! - `olmo2`: post-norm blocks, q/k RMSNorm.
//!
//! Weights are N(0, 0.1) (larger than the usual init so that logits are O(1) and a wrong
//! operation shows), norm weights 1 + N(0, 0.1), biases N(0, 0.1). The tokenizer is
//! `lm::testing::char_tokenizer_json()`.

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use lm::config::{Arch, RopeScaling};
use lm::testing::{char_tokenizer_json, tiny_config};
use lm::weights::Params;
use lm::{CausalLm, LmConfig};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).context("usage: tiny_checkpoints OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    let tokdir = out.join(".tokenizer");
    std::fs::create_dir_all(&tokdir)?;
    std::fs::write(tokdir.join("tokenizer.json"), char_tokenizer_json())?;
    let mut llama3 = tiny_config(Arch::Llama);
    llama3.rope_scaling = Some(RopeScaling {
        rope_type: "llama3".into(),
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    });
    let variants: [(&str, LmConfig); 4] = [
        ("llama", tiny_config(Arch::Llama)),
        ("llama3-rope", llama3),
        ("qwen2", tiny_config(Arch::Qwen2)),
        ("olmo2", tiny_config(Arch::Olmo2)),
    ];
    for (i, (name, mut cfg)) in variants.into_iter().enumerate() {
        // transformers' Qwen2 and OLMo-2 fail on `"head_dim": null` (they read the key when it
        // is present), which lm's config writes when head_dim is unset: write it explicitly.
        cfg.head_dim = Some(cfg.head_dim());
        let dir = out.join(name);
        write(&dir, cfg, 100 + i as u64, &tokdir)?;
        println!("{}", dir.display());
    }
    std::fs::remove_dir_all(&tokdir)?;
    Ok(())
}

fn write(dir: &Path, cfg: LmConfig, seed: u64, tokdir: &Path) -> Result<()> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = BTreeMap::new();
    for (name, shape) in cfg.parameter_shapes()? {
        let n: usize = shape.iter().product();
        let (mean, std) = if name.ends_with("norm.weight") { (1.0, 0.1) } else { (0.0, 0.1) };
        let data: Vec<f32> = (0..n).map(|_| mean + std * normal(&mut rng)).collect();
        tensors.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
    }
    let model = CausalLm::from_params(
        cfg,
        Params { tensors, vars: vec![], source_dtype: candle_core::DType::F32, lora: None, packs: Default::default() },
        &Device::Cpu,
    )?;
    lm::checkpoint::save(&model, dir, Some(tokdir))
}

fn normal(rng: &mut rand_chacha::ChaCha8Rng) -> f32 {
    use rand::Rng;
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}
