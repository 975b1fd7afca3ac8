//! Byte-level BPE training, GPT-2 style (Radford et al. 2019; `tokenizers`' `ByteLevelBPETokenizer`):
//! ByteLevel pre-tokenizer (GPT-2 split regex, `add_prefix_space = false`), the full 256-symbol byte
//! alphabet, merges learnt by `tokenizers`' `BpeTrainer`, ByteLevel decoder.
//!
//! Special tokens and their ids: `<pad>` = 0, `<s>` = 1, `</s>` = 2 (the trainer places special tokens
//! first, in this order), so BOS = 1 and EOS = 2 as in Llama / llama2.c configs.

use anyhow::{bail, Context, Result};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, Tokenizer,
    TokenizerImpl,
};

/// Beginning-of-sequence token string.
pub const BOS: &str = "<s>";
/// End-of-sequence token string.
pub const EOS: &str = "</s>";
/// Padding token string (only [`train_bpe`]'s vocabularies have it).
pub const PAD: &str = "<pad>";

/// Number of byte symbols in the byte-level alphabet.
const N_BYTES: usize = 256;

/// Trains a byte-level BPE of `vocab_size` tokens (specials and the 256 byte symbols included) on `texts`.
///
/// Deterministic: the same texts and size give the same `tokenizer.json`, byte for byte (merge ties
/// are broken by symbol ids, which the trainer assigns in sorted order). BPE training has no random
/// choice; `seed` is accepted so every builder in the harness has the same signature, and is unused.
pub fn train_bpe<S: AsRef<str> + Sync>(texts: &[S], vocab_size: usize, seed: u64) -> Result<Tokenizer> {
    let _ = seed;
    let specials = [PAD, BOS, EOS];
    let min = specials.len() + N_BYTES;
    if vocab_size < min {
        bail!("vocab_size {vocab_size} is too small: a byte-level BPE needs at least {min} (3 specials + 256 bytes)");
    }
    if texts.is_empty() {
        bail!("cannot train a BPE tokenizer on no texts");
    }
    let trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(vocab_size)
        .min_frequency(0)
        .special_tokens(specials.iter().map(|s| AddedToken::from(*s, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = TrainerWrapper::BpeTrainer(trainer);

    let mut tk: TokenizerImpl<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerImpl::new(ModelWrapper::BPE(BPE::default()));
    // (add_prefix_space, trim_offsets, use_regex) as GPT-2.
    let byte_level = ByteLevel::new(false, true, true);
    tk.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(byte_level)));
    tk.with_decoder(Some(DecoderWrapper::ByteLevel(byte_level)));
    tk.with_post_processor(Some(PostProcessorWrapper::ByteLevel(byte_level)));
    tk.train(&mut trainer, texts.iter().map(|t| t.as_ref()))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("training a byte-level BPE of {vocab_size} tokens on {} texts", texts.len()))?;
    let tok = Tokenizer::from(tk);
    for (want, s) in specials.iter().enumerate() {
        let got = tok.token_to_id(s);
        if got != Some(want as u32) {
            bail!("trained tokenizer has {s:?} at id {got:?}, expected {want}");
        }
    }
    Ok(tok)
}
