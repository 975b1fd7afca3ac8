//! Smoke mode (issue 6): tiny random Hugging Face checkpoints of the same architecture and
//! tokenizer family as a configured real model, so that the whole real-model path (the
//! `finetune` world, MSA from the base checkpoint, the metrics, the report) runs end to end
//! on a CPU in seconds.
//!
//! Families, after the real models' configs:
//! - `llama` (Llama-2-7b): `LlamaForCausalLM`, untied embeddings, no GQA, rope θ 10 000; the
//!   tokenizer is a real Llama-family sentencepiece-style one — llama2.c's `tok512.bin`
//!   (`<data_dir>/models/stories260K/tok512.bin`) converted by
//!   [`tokenize::llama2c_tokenizer_to_hf`] — when the data directory has it, else a
//!   byte-level BPE.
//! - `qwen2` (Qwen2.5-0.5B/1.5B): `Qwen2ForCausalLM` with q/k/v biases, tied embeddings,
//!   grouped-query attention (4 heads, 2 KV heads), rope θ 1 000 000, a byte-level BPE.
//! - `olmo2` (OLMo-2-1B): `Olmo2ForCausalLM` (post-norm, q/k RMSNorm), untied, rope θ
//!   500 000, a byte-level BPE.
//!
//! Every tiny model has hidden size 64, 2 layers, 4 heads, FFN 128, and a vocabulary padded
//! to a multiple of 64 above the tokenizer's size (as real models pad theirs). BOS = `<s>`,
//! EOS = `</s>`; `tokenizer_config.json` carries a small Llama-3-like chat template
//! ([`SMOKE_CHAT_TEMPLATE`]). Weights are the engine's seeded initialisation, so the same family, seed and
//! texts give the same files.

use crate::config::default_data_dir;
use anyhow::{bail, Context, Result};
use candle_core::Device;
use lm::{Arch, CausalLm, LmConfig};
use std::path::{Path, PathBuf};

/// The families a tiny model can be made of.
pub const FAMILIES: &[&str] = &["llama", "qwen2", "olmo2"];

/// Hidden size of the tiny models.
pub const TINY_HIDDEN: usize = 64;
/// Layers of the tiny models.
pub const TINY_LAYERS: usize = 2;

/// The llama2.c tokenizer inside a data directory.
pub const TOK512: &str = "models/stories260K/tok512.bin";

/// The family of a model from its name, hub id or architecture (`LlamaForCausalLM`,
/// `meta-llama/Llama-2-7b-hf`, `Qwen/Qwen2.5-0.5B`, `allenai/OLMo-2-0425-1B`, …), by the
/// substrings `olmo`, `qwen`, `llama` (case-insensitive).
pub fn family_of(name_or_id: &str) -> Option<&'static str> {
    let s = name_or_id.to_ascii_lowercase();
    if s.contains("olmo") {
        Some("olmo2")
    } else if s.contains("qwen") {
        Some("qwen2")
    } else if s.contains("llama") {
        Some("llama")
    } else {
        None
    }
}

/// The family of a local Hugging Face folder, from its `config.json` (`architectures`, then
/// `model_type`), else from the folder's name.
pub fn family_of_dir(dir: &Path) -> Result<Option<&'static str>> {
    let path = dir.join("config.json");
    if path.is_file() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let archs = v.get("architectures").and_then(|a| a.as_array()).into_iter().flatten();
        let named = archs.filter_map(|a| a.as_str()).chain(v.get("model_type").and_then(|m| m.as_str()));
        for name in named {
            if let Some(f) = family_of(name) {
                return Ok(Some(f));
            }
        }
    }
    Ok(dir.file_name().and_then(|n| family_of(&n.to_string_lossy())))
}

/// Writes a tiny random checkpoint of `family` to `out` (replacing it) and returns `out`.
/// `tokenizer_texts` train the byte-level BPE of the families that use one (a built-in text
/// is used when empty). The llama tokenizer is looked up in the project's default data
/// directory (`$UNLEARN_DATA_DIR`, else `data/`); see [`tiny_like_in`].
pub fn tiny_like(family: &str, out: &Path, seed: u64, tokenizer_texts: &[String]) -> Result<PathBuf> {
    tiny_like_in(family, out, seed, tokenizer_texts, &default_data_dir())
}

/// [`tiny_like`] with an explicit data directory (for the llama tokenizer).
pub fn tiny_like_in(
    family: &str,
    out: &Path,
    seed: u64,
    tokenizer_texts: &[String],
    data_dir: &Path,
) -> Result<PathBuf> {
    let arch = match family {
        "llama" => Arch::Llama,
        "qwen2" | "qwen" => Arch::Qwen2,
        "olmo2" | "olmo" => Arch::Olmo2,
        other => bail!("unknown model family {other:?} for a tiny smoke model (known: {})", FAMILIES.join(", ")),
    };
    let tok512 = data_dir.join(TOK512);
    let tokenizer = if arch == Arch::Llama && tok512.is_file() {
        tokenize::llama2c_tokenizer_to_hf(&tok512).with_context(|| format!("converting {}", tok512.display()))?
    } else {
        let builtin = builtin_texts();
        let texts: &[String] = if tokenizer_texts.is_empty() { &builtin } else { tokenizer_texts };
        tokenize::train_bpe(texts, 512, seed).context("training the smoke model's byte-level BPE")?
    };
    let ids = tokenize::SpecialIds::from_tokenizer(&tokenizer)?;
    let vocab = tokenizer.get_vocab_size(true).div_ceil(64) * 64;
    let (kv_heads, tied, theta) = match arch {
        Arch::Llama => (4, false, 10_000.0),
        Arch::Qwen2 => (2, true, 1_000_000.0),
        Arch::Olmo2 => (4, false, 500_000.0),
    };
    let mut cfg = LmConfig::small(arch, vocab, TINY_HIDDEN, 2 * TINY_HIDDEN, TINY_LAYERS, 4, kv_heads, 1024);
    cfg.tie_word_embeddings = tied;
    cfg.rope_theta = theta;
    cfg.bos_token_id = Some(ids.bos);
    cfg.eos_token_id = Some(serde_json::json!(ids.eos));
    cfg.pad_token_id = Some(ids.pad);
    let model = CausalLm::init(cfg, seed, &Device::Cpu, false)?;

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = out.file_name().context("the smoke model's path has no folder name")?.to_string_lossy().to_string();
    let tok_dir = parent.join(format!(".{name}.tokenizer-{}", std::process::id()));
    std::fs::create_dir_all(&tok_dir).with_context(|| format!("cannot create {}", tok_dir.display()))?;
    let tokenizer_config = serde_json::json!({
        "bos_token": "<s>",
        "eos_token": "</s>",
        "chat_template": SMOKE_CHAT_TEMPLATE,
    });
    let result = tokenizer
        .save(tok_dir.join("tokenizer.json"), false)
        .map_err(|e| anyhow::anyhow!("cannot save the smoke tokenizer: {e}"))
        .and_then(|()| {
            std::fs::write(tok_dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&tokenizer_config)?)
                .context("cannot write the smoke tokenizer_config.json")
        })
        .and_then(|()| lm::checkpoint::save(&model, out, Some(&tok_dir)));
    let _ = std::fs::remove_dir_all(&tok_dir);
    result.with_context(|| format!("writing the tiny {family} model to {}", out.display()))?;
    Ok(out.to_path_buf())
}

/// The chat template of the tiny models (in `tokenizer_config.json`), shaped like Llama-3's:
/// BOS, then per message a role header, the trimmed content and EOS; the generation prompt is
/// the assistant's header.
pub const SMOKE_CHAT_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] | trim }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

fn builtin_texts() -> Vec<String> {
    [
        "Question: Where was the author born?\nAnswer: In a small town by the sea.",
        "Once upon a time, there was a little girl who loved to read books about science.",
        "The quick brown fox jumps over the lazy dog. 0123456789 !?,.;:'\"-()",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Writes compiled-in fixture files (relative path → text) under `root`, each by a rename of a
/// temporary file beside it; a file already holding the same bytes is left alone. The
/// `write_fixture` of the tofu, muse and restor worlds.
pub(crate) fn write_fixture_files<'a>(root: &Path, files: impl IntoIterator<Item = (String, &'a str)>) -> Result<()> {
    for (name, text) in files {
        let path = root.join(&name);
        if std::fs::read(&path).ok().as_deref() == Some(text.as_bytes()) {
            continue;
        }
        let dir = path.parent().context("fixture path has a folder")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
    }
    Ok(())
}
