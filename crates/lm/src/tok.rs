//! Tokenizer loading: a Hugging Face `tokenizer.json` through the `tokenizers` crate, with the
//! model's BOS/EOS ids from `config.json`.

use crate::config::LmConfig;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// A tokenizer plus the special ids the model was trained with.
#[derive(Clone)]
pub struct Tok {
    pub inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Vec<u32>,
    /// The id used to pad batches (its logits are never read).
    pub pad: u32,
}

impl Tok {
    /// Load `dir/tokenizer.json` and check it fits the model's vocabulary.
    pub fn load(dir: &Path, cfg: &LmConfig) -> Result<Tok> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            bail!("{}: tokenizer.json is missing (expected a Hugging Face tokenizer file)", dir.display());
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow::anyhow!("{}: cannot load tokenizer: {e}", path.display()))?;
        Tok::new(inner, cfg).with_context(|| format!("{}", path.display()))
    }

    pub fn new(inner: tokenizers::Tokenizer, cfg: &LmConfig) -> Result<Tok> {
        let n = inner.get_vocab_size(true);
        if n > cfg.vocab_size {
            bail!(
                "tokenizer has {n} tokens but the model's vocab_size is {} (tokenizer does not fit the model)",
                cfg.vocab_size
            );
        }
        let eos = cfg.eos_ids();
        let pad = cfg.pad_token_id.or(eos.first().copied()).or(cfg.bos_token_id).unwrap_or(0);
        Ok(Tok { inner, bos: cfg.bos_token_id, eos, pad })
    }

    /// Encode without special tokens (lm-evaluation-harness's default for causal models).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenizer failed on {:?}: {e}", truncate(text)))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(|e| anyhow::anyhow!("cannot decode {} tokens: {e}", ids.len()))
    }

    /// The token that starts a document: BOS, else EOS (lm-eval's prefix token).
    pub fn prefix_token(&self) -> u32 {
        self.bos.or(self.eos.first().copied()).unwrap_or(0)
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
