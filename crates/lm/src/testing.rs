//! Helpers for tests across the workspace: tiny random checkpoints and a character-level
//! tokenizer that needs no training.

use crate::checkpoint;
use crate::config::{Arch, LmConfig};
use crate::model::CausalLm;
use anyhow::Result;
use candle_core::Device;
use std::path::Path;

/// The characters of [`char_tokenizer_json`], after the three special tokens.
pub const CHARS: &str = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;?!'\"-\n";

/// A character-level tokenizer (a BPE with no merges): `<s>`=0, `</s>`=1, `<unk>`=2, then [`CHARS`].
pub fn char_tokenizer_json() -> String {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<s>".into(), 0.into());
    vocab.insert("</s>".into(), 1.into());
    vocab.insert("<unk>".into(), 2.into());
    for (i, c) in CHARS.chars().enumerate() {
        vocab.insert(c.to_string(), (i + 3).into());
    }
    let special = |id: u32, s: &str| {
        serde_json::json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<s>"), special(1, "</s>"), special(2, "<unk>")],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
    .to_string()
}

/// Vocabulary size of [`char_tokenizer_json`].
pub fn char_vocab_size() -> usize {
    3 + CHARS.chars().count()
}

/// A tiny config of the given architecture over the character tokenizer.
pub fn tiny_config(arch: Arch) -> LmConfig {
    let mut cfg = LmConfig::small(arch, char_vocab_size(), 32, 64, 2, 4, 2, 128);
    if arch == Arch::Llama {
        cfg.tie_word_embeddings = false;
    }
    cfg
}

/// Write a tiny random checkpoint folder (config, weights, tokenizer) and return the model.
pub fn write_tiny_checkpoint(dir: &Path, cfg: LmConfig, seed: u64) -> Result<CausalLm> {
    let model = CausalLm::init(cfg, seed, &Device::Cpu, false)?;
    let tokdir = tempfile_dir(dir)?;
    std::fs::write(tokdir.join("tokenizer.json"), char_tokenizer_json())?;
    checkpoint::save(&model, dir, Some(&tokdir))?;
    std::fs::remove_dir_all(&tokdir)?;
    Ok(model)
}

fn tempfile_dir(near: &Path) -> Result<std::path::PathBuf> {
    let parent = near.parent().unwrap_or(Path::new("."));
    let d = parent.join(format!(
        ".tok-{}-{}",
        std::process::id(),
        near.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
