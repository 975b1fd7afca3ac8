//! A tiny random RoBERTa sequence classifier in Hugging Face format, for tests and the
//! runner's `--smoke` mode: hidden 32, 2 layers, 4 heads, intermediate 64, 2 labels
//! (`LABEL_0`, `LABEL_1`), over a word-level tokenizer of [`TINY_WORDS`] built with the
//! `tokenizers` crate (lowercasing, whitespace/punctuation split, RoBERTa's `<s> … </s>`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::roberta::RobertaProcessing;

/// Adds one random tensor: (name, shape, mean, spread).
type AddTensor<'a> = dyn FnMut(String, &[usize], f32, f32) -> Result<()> + 'a;
use tokenizers::{AddedToken, Tokenizer};

/// Special tokens, in RoBERTa's order: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3.
pub const SPECIALS: [&str; 4] = ["<s>", "<pad>", "</s>", "<unk>"];

/// The words of the tiny vocabulary, ids 4.. in this order.
pub const TINY_WORDS: &[&str] = &[
    "the", "a", "is", "are", "not", "and", "or", "of", "to", "in", "people", "they", "we", "you", "i", "all", "be",
    "should", "good", "bad", "kind", "hate", "love", "group", "women", "men", "friends", "never", "always", "work",
    "live", "here", "there", "this", "that", "them", ".", ",", "!", "?",
];

pub const HIDDEN: usize = 32;
pub const LAYERS: usize = 2;
pub const HEADS: usize = 4;
pub const INTERMEDIATE: usize = 64;
/// Positions 0..34: with padding index 1, texts keep at most 32 tokens.
pub const MAX_POSITIONS: usize = 34;

pub fn tiny_vocab_size() -> usize {
    SPECIALS.len() + TINY_WORDS.len()
}

/// The tiny word-level tokenizer.
pub fn tiny_tokenizer() -> Result<Tokenizer> {
    let vocab = SPECIALS.iter().chain(TINY_WORDS).enumerate().map(|(i, w)| (w.to_string(), i as u32)).collect();
    let model = WordLevel::builder()
        .vocab(vocab)
        .unk_token("<unk>".into())
        .build()
        .map_err(anyhow::Error::msg)
        .context("building the tiny word-level model")?;
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(Lowercase))
        .map_err(anyhow::Error::msg)?
        .with_pre_tokenizer(Some(Whitespace {}))
        .with_post_processor(Some(RobertaProcessing::new(("</s>".into(), 2), ("<s>".into(), 0))));
    let specials: Vec<AddedToken> = SPECIALS.iter().map(|s| AddedToken::from(s.to_string(), true)).collect();
    tok.add_special_tokens(specials).map_err(anyhow::Error::msg)?;
    Ok(tok)
}

/// Writes `config.json`, `model.safetensors` and `tokenizer.json` of a tiny random
/// `RobertaForSequenceClassification` into `dir` (created if missing). Same `seed` ⇒ same files.
pub fn write_tiny_roberta(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (h, v) = (HIDDEN, tiny_vocab_size());
    let config = serde_json::json!({
        "architectures": ["RobertaForSequenceClassification"],
        "model_type": "roberta",
        "vocab_size": v,
        "hidden_size": h,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "position_embedding_type": "absolute",
        "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
        "label2id": {"LABEL_0": 0, "LABEL_1": 1},
        "problem_type": "single_label_classification",
    });
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config)?)
        .with_context(|| format!("writing {}", path.display()))?;

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Uniform(-a, a); insertion order is fixed, so the same seed gives the same weights.
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut add = |name: String, shape: &[usize], centre: f32, a: f32| -> Result<()> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| centre + a * (2.0 * rng.random::<f32>() - 1.0)).collect();
        tensors.push((name, Tensor::from_vec(data, shape, &Device::Cpu)?));
        Ok(())
    };
    let lin = |add: &mut AddTensor, p: String, d_in: usize, d_out: usize| -> Result<()> {
        let a = 1.0 / (d_in as f32).sqrt();
        add(format!("{p}.weight"), &[d_out, d_in], 0.0, a)?;
        add(format!("{p}.bias"), &[d_out], 0.0, a)
    };
    let norm = |add: &mut AddTensor, p: String| -> Result<()> {
        add(format!("{p}.weight"), &[h], 1.0, 0.2)?;
        add(format!("{p}.bias"), &[h], 0.0, 0.2)
    };
    let e = "roberta.embeddings";
    add(format!("{e}.word_embeddings.weight"), &[v, h], 0.0, 1.0)?;
    add(format!("{e}.position_embeddings.weight"), &[MAX_POSITIONS, h], 0.0, 1.0)?;
    add(format!("{e}.token_type_embeddings.weight"), &[1, h], 0.0, 1.0)?;
    norm(&mut add, format!("{e}.LayerNorm"))?;
    for i in 0..LAYERS {
        let p = format!("roberta.encoder.layer.{i}");
        for m in ["query", "key", "value"] {
            lin(&mut add, format!("{p}.attention.self.{m}"), h, h)?;
        }
        lin(&mut add, format!("{p}.attention.output.dense"), h, h)?;
        norm(&mut add, format!("{p}.attention.output.LayerNorm"))?;
        lin(&mut add, format!("{p}.intermediate.dense"), h, INTERMEDIATE)?;
        lin(&mut add, format!("{p}.output.dense"), INTERMEDIATE, h)?;
        norm(&mut add, format!("{p}.output.LayerNorm"))?;
    }
    lin(&mut add, "classifier.dense".into(), h, h)?;
    // A larger head so the two logits differ visibly.
    add("classifier.out_proj.weight".into(), &[2, h], 0.0, 1.0)?;
    add("classifier.out_proj.bias".into(), &[2], 0.0, 0.5)?;
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    let path = dir.join("model.safetensors");
    candle_core::safetensors::save(&map, &path).with_context(|| format!("writing {}", path.display()))?;

    let path = dir.join("tokenizer.json");
    tiny_tokenizer()?
        .save(&path, true)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Three texts of different lengths (one has an unknown word) for the reference test against
/// transformers (`scripts/check_roberta_against_transformers.py`).
pub const REFERENCE_TEXTS: [&str; 3] = [
    "They should not live here, and we hate them all!",
    "Good neighbours",
    "The women in this group are always kind to friends.",
];
