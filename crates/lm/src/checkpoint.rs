//! Writing Hugging Face checkpoint folders (`config.json`, `model.safetensors`,
//! `tokenizer.json`), atomically: a folder is either complete or absent.

use crate::model::CausalLm;
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Files copied along with the weights when present.
pub const TOKENIZER_FILES: &[&str] =
    &["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

/// Save `model` to `dir` (replacing it), copying tokenizer files from `tokenizer_from`.
pub fn save(model: &CausalLm, dir: &Path, tokenizer_from: Option<&Path>) -> Result<()> {
    let tmp = temp_sibling(dir)?;
    let result = (|| -> Result<()> {
        std::fs::create_dir_all(&tmp)?;
        let mut cfg = model.cfg.clone();
        cfg.torch_dtype = Some("float32".into());
        cfg.model_type = Some(model.arch.model_type().into());
        std::fs::write(tmp.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
        let tensors: HashMap<String, Tensor> =
            model.state().iter().map(|(k, v)| (k.clone(), v.detach())).collect();
        candle_core::safetensors::save(&tensors, tmp.join("model.safetensors"))?;
        if let Some(src) = tokenizer_from {
            copy_tokenizer_files(src, &tmp)?;
        }
        Ok(())
    })();
    finish(result, &tmp, dir).with_context(|| format!("{}: cannot write checkpoint", dir.display()))
}

/// Copy the tokenizer files that exist in `src` to `dst`.
pub fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<()> {
    for f in TOKENIZER_FILES {
        let p = src.join(f);
        if p.is_file() {
            std::fs::copy(&p, dst.join(f)).with_context(|| format!("cannot copy {}", p.display()))?;
        }
    }
    Ok(())
}

/// A hidden sibling folder to write into before the final rename.
pub fn temp_sibling(dir: &Path) -> Result<PathBuf> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir.file_name().context("checkpoint path has no folder name")?.to_string_lossy();
    Ok(parent.join(format!(".{name}.tmp-{}", std::process::id())))
}

/// Rename `tmp` to `dir` on success; remove `tmp` on failure.
pub fn finish(result: Result<()>, tmp: &Path, dir: &Path) -> Result<()> {
    match result {
        Ok(()) => {
            if dir.exists() {
                std::fs::remove_dir_all(dir)?;
            }
            std::fs::rename(tmp, dir)?;
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(tmp);
            Err(e)
        }
    }
}

/// Whether `dir` looks like a complete checkpoint folder.
pub fn is_complete(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && (dir.join("model.safetensors").is_file() || dir.join("model.safetensors.index.json").is_file())
}
