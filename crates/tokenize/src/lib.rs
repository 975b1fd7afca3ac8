//! Tokenizers for the harness, all as Hugging Face `tokenizers` objects that save to a standard
//! `tokenizer.json` (loadable by Python `tokenizers` / `transformers`).
//!
//! - [`train_bpe`]: a GPT-2-style byte-level BPE trained offline with `tokenizers`' `BpeTrainer`.
//! - [`llama2c_tokenizer_to_hf`]: llama2.c's `tok512.bin` (a sentencepiece export) converted to the
//!   Llama-2 `tokenizer.json` layout (BPE + byte fallback, "▁" metaspace normalizer), following
//!   `transformers`' `LlamaConverter` / `SentencePieceExtractor`.
//! - [`SpecialIds`]: the BOS / EOS / PAD ids of either.
//! - [`ChatTemplate`] (`chat.rs`): a model's Hugging Face chat template rendered as
//!   `transformers`' `apply_chat_template(..., tokenize=False)` renders it (minijinja), with a
//!   fixed `date_string` so the text is reproducible; [`ChatTemplate::qa_pair`] formats TOFU /
//!   MSA question-answer pairs.
//!
//! Invariant: no tokenizer here adds BOS/EOS by itself (no post-processor template); callers add
//! BOS explicitly, so the same code path serves every model.

mod bpe;
pub mod chat;
mod llama2c;

pub use bpe::{train_bpe, BOS, EOS, PAD};
pub use chat::{ChatTemplate, Message, RaisedException, DEFAULT_DATE_STRING};
pub use llama2c::{
    llama2c_merge_ambiguities, llama2c_tokenizer_json, llama2c_tokenizer_to_hf, read_tok512, Llama2cVocab,
};
pub use tokenizers::Tokenizer;

use anyhow::{bail, Result};

/// Ids of the special tokens the harness needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    /// Beginning of sequence (`<s>`).
    pub bos: u32,
    /// End of sequence (`</s>`).
    pub eos: u32,
    /// Padding: `<pad>` when the vocabulary has one, else `<unk>`, else `eos` (the Llama-2
    /// vocabulary has no pad token; padded positions are masked, so only the id's validity matters).
    pub pad: u32,
}

impl SpecialIds {
    /// Looks the special tokens up by their strings (`<s>`, `</s>`, `<pad>`/`<unk>`).
    pub fn from_tokenizer(tok: &Tokenizer) -> Result<Self> {
        let id = |s: &str| tok.token_to_id(s);
        let (Some(bos), Some(eos)) = (id(BOS), id(EOS)) else {
            bail!(
                "tokenizer lacks special tokens: expected both {BOS:?} and {EOS:?} in its vocabulary (bos: {:?}, eos: {:?})",
                id(BOS),
                id(EOS)
            );
        };
        let pad = id(PAD).or_else(|| id("<unk>")).unwrap_or(eos);
        Ok(Self { bos, eos, pad })
    }
}
