//! Shared test fixtures: the character tokenizer, question/answer examples, tiny checkpoints,
//! a small trained "world", and a [`unlearn::Context`] over them.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use lm::config::Arch;
use lm::testing::{char_tokenizer_json, tiny_config, write_tiny_checkpoint};
use lm::train::{fit, Example, NextToken, TrainConfig};
use lm::{CausalLm, Tok};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use unlearn::{CheckpointInfo, Context};

pub fn tok() -> Tok {
    let inner = tokenizers::Tokenizer::from_bytes(char_tokenizer_json().as_bytes()).unwrap();
    Tok::new(inner, &tiny_config(Arch::Llama)).unwrap()
}

/// BOS + question, loss on the answer only.
pub fn qa(q: &str, a: &str) -> Example {
    let t = tok();
    let mut p = vec![0u32];
    p.extend(t.encode(q).unwrap());
    Example::prompt_answer(&p, &t.encode(a).unwrap())
}

/// Eight synthetic facts; the first `n_forget` are the forget set.
pub const FACTS: [(&str, &str); 8] = [
    ("ann likes", " red tea."),
    ("bob likes", " blue jam."),
    ("cat likes", " gold fish."),
    ("dan likes", " pink ham."),
    ("eve likes", " gray owls."),
    ("fay likes", " dark rye."),
    ("gus likes", " warm soup."),
    ("hal likes", " cold milk."),
];

pub fn facts(range: std::ops::Range<usize>) -> Vec<Example> {
    FACTS[range].iter().map(|(q, a)| qa(q, a)).collect()
}

pub fn fast_train() -> TrainConfig {
    TrainConfig { batch_size: 4, warmup_ratio: 0.0, ..Default::default() }
}

/// A method from a table as a config writes it: the method built from its own parameters,
/// and [`fast_train`] with the table's `lr` / `epochs` applied, for [`Context::train`] (what the
/// runner resolves for a cell).
pub fn build(kind: &str, params: &str) -> anyhow::Result<(Box<dyn unlearn::Unlearner>, TrainConfig)> {
    let table: toml::Table = params.parse()?;
    let (own, train) = unlearn::split_train_overrides(&table, &fast_train())?;
    Ok((methods::build(kind, &own)?, train))
}

/// A tiny random checkpoint (Llama, char vocabulary) at `dir`.
pub fn tiny(dir: &Path, seed: u64) -> PathBuf {
    write_tiny_checkpoint(dir, tiny_config(Arch::Llama), seed).unwrap();
    dir.to_path_buf()
}

/// Builds a context; `out` and `cache` are given by the test.
pub fn ctx<'a>(
    final_model: &'a Path,
    checkpoints: &'a [CheckpointInfo],
    forget: &'a [Example],
    retain: &'a [Example],
    cache: &'a Path,
    out: &'a Path,
) -> Context<'a> {
    Context {
        final_model,
        checkpoints,
        forget,
        retain,
        held_out: &[],
        train: fast_train(),
        seed: 7,
        cache,
        out,
        device: &Device::Cpu,
        pad: tok().pad,
        progress: None,
    }
}

/// Every tensor of a checkpoint folder.
pub fn tensors(dir: &Path) -> BTreeMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap().into_iter().collect()
}

pub fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Asserts two checkpoint folders hold bit-identical tensors.
#[track_caller]
pub fn assert_same_bits(a: &Path, b: &Path) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, x) in &ta {
        let xa: Vec<u32> = flat(x).iter().map(|v| v.to_bits()).collect();
        let xb: Vec<u32> = flat(&tb[name]).iter().map(|v| v.to_bits()).collect();
        assert!(xa == xb, "tensor {name} differs between {} and {}", a.display(), b.display());
    }
}

/// θ_D: a tiny model trained on all eight facts until it knows them (writes `dir`).
pub fn trained_world(dir: &Path) -> PathBuf {
    let init = dir.join("init");
    tiny(&init, 3);
    let model = CausalLm::load(&init, &Device::Cpu, true).unwrap();
    let all = facts(0..8);
    let cfg = TrainConfig { lr: 1e-2, epochs: 150, batch_size: 8, warmup_ratio: 0.05, ..Default::default() };
    fit(&model, &all, None, &cfg, &NextToken, tok().pad, None).unwrap();
    let out = dir.join("theta_d");
    lm::checkpoint::save(&model, &out, Some(&init)).unwrap();
    out
}

/// Mean NLL per target token of `examples` under the model at `dir`.
pub fn mean_nll(dir: &Path, examples: &[Example]) -> f64 {
    let m = CausalLm::load(dir, &Device::Cpu, false).unwrap();
    let refs: Vec<&Example> = examples.iter().collect();
    let b = lm::train::collate(&refs, (0..examples.len()).collect(), tok().pad, &Device::Cpu).unwrap();
    lm::train::masked_nll(&m, &b).unwrap().to_scalar::<f32>().unwrap() as f64
}
