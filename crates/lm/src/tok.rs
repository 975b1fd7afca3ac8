//! Tokenizer loading: a Hugging Face `tokenizer.json` through the `tokenizers` crate, with the
//! model's BOS/EOS ids from `config.json` (BOS from `tokenizer_config.json` when it names one).
//!
//! Two encodings. [`Tok::encode`] never adds special tokens: training data, rolling windows and
//! per-token scores build their own `[prefix] + tokens`. [`Tok::encode_for_eval`] adds them as
//! the tokenizer does by default, which is what lm-evaluation-harness's HFLM (0.4.13, checked;
//! `add_bos_token` unset) feeds the model for `loglikelihood` and `generate_until`: a tokenizer
//! whose post-processor prepends BOS (Llama-2's, for one) is scored with BOS, one without it
//! (Qwen2's, GPT-2-style byte-level BPEs) without. `tokenizer.json`'s post-processor decides
//! alone: `transformers` 5 drops `add_bos_token` / `add_eos_token` from `tokenizer_config.json`
//! when a `tokenizer.json` exists.

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
    /// Load `dir/tokenizer.json` (and `dir/tokenizer_config.json` when present) and check it
    /// fits the model's vocabulary.
    pub fn load(dir: &Path, cfg: &LmConfig) -> Result<Tok> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            bail!("{}: tokenizer.json is missing (expected a Hugging Face tokenizer file)", dir.display());
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow::anyhow!("{}: cannot load tokenizer: {e}", path.display()))?;
        let tc = dir.join("tokenizer_config.json");
        let tc: Option<serde_json::Value> = if tc.is_file() {
            let text = std::fs::read_to_string(&tc).with_context(|| format!("{}: cannot read", tc.display()))?;
            Some(serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", tc.display()))?)
        } else {
            None
        };
        let mut tok = Tok::new(inner, cfg).with_context(|| format!("{}", path.display()))?;
        // lm-eval's prefix token is the tokenizer's BOS (OLMo-2's config.json has none, its
        // tokenizer_config.json names one)
        if let Some(id) = tc.as_ref().and_then(|v| special_token(&tok.inner, v, "bos_token")) {
            tok.bos = Some(id.1);
        }
        Ok(tok)
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

    /// Encode without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_impl(text, false)
    }

    /// Encode as lm-evaluation-harness's HFLM `tok_encode` does: with the tokenizer's default
    /// special tokens (its post-processor), unless the text already starts with the text of the
    /// prefix token (lm-eval's `has_bos_prefix`).
    pub fn encode_for_eval(&self, text: &str) -> Result<Vec<u32>> {
        let starts_with_prefix =
            self.inner.id_to_token(self.prefix_token()).is_some_and(|p| !p.is_empty() && text.starts_with(p.as_str()));
        self.encode_impl(text, !starts_with_prefix)
    }

    fn encode_impl(&self, text: &str, special: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, special)
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

/// A special token named in `tokenizer_config.json` (a string or `{"content": ...}`) and its id.
fn special_token(tk: &tokenizers::Tokenizer, cfg: &serde_json::Value, key: &str) -> Option<(String, u32)> {
    let v = cfg.get(key)?;
    let s = v.as_str().or_else(|| v.get("content").and_then(|c| c.as_str()))?;
    Some((s.to_string(), tk.token_to_id(s)?))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
