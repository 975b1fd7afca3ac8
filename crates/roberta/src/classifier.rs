//! [`RobertaClassifier`]: a Hugging Face RoBERTa sequence classifier folder (`config.json`,
//! `model.safetensors`, `tokenizer.json`) as a ToxiGen toxicity classifier
//! ([`evals::toxigen::Classifier`]), e.g. `tomh/toxigen_roberta` (Hartvigsen et al. 2022).
//!
//! Texts are tokenized with the folder's `tokenizer.json` (special tokens added, as
//! transformers' pipeline does), truncated to [`RobertaConfig::max_tokens`] tokens
//! (`max_position_embeddings - 2` for RoBERTa, specials included), sorted by length, batched
//! with right padding, and returned in the input order. `p_toxic` is the softmax probability
//! of the toxic class; [`toxic_label_index`] says which class that is.

use std::path::Path;

use anyhow::{bail, Context, Result};
use tokenizers::{Tokenizer, TruncationParams};

use crate::model::{softmax_f64, Roberta, RobertaConfig};

/// Label names (compared trimmed, case-insensitively) that mean "toxic".
pub const TOXIC_NAMES: &[&str] = &["toxic", "toxicity", "hate", "hateful", "hate speech", "offensive", "abusive"];

/// Which class of a classifier with these `labels` (from `id2label`) is toxic:
///
/// 1. `override_index`, when given (checked to be a class index);
/// 2. else the one label whose name is in [`TOXIC_NAMES`] (`"toxic"`, `"hate"`, ...; exact
///    names, so `"non-toxic"` or `"not hate"` never match);
/// 3. else, for two classes with transformers' generic names (`LABEL_0`/`LABEL_1` or
///    `0`/`1`), class 1, the positive class. For `tomh/toxigen_roberta` (generic labels)
///    `LABEL_1` is toxic, as its model card says;
/// 4. else an error listing the labels and asking for an explicit index.
pub fn toxic_label_index(labels: &[String], override_index: Option<usize>) -> Result<usize> {
    if let Some(i) = override_index {
        if i >= labels.len() {
            bail!("toxic label index {i} is out of range: the classifier has labels {labels:?}");
        }
        return Ok(i);
    }
    let norm: Vec<String> = labels.iter().map(|l| l.trim().to_lowercase()).collect();
    let named: Vec<usize> = (0..norm.len()).filter(|&i| TOXIC_NAMES.contains(&norm[i].as_str())).collect();
    match named.as_slice() {
        [i] => return Ok(*i),
        [] => {}
        _ => bail!("labels {labels:?}: several look toxic; give the toxic class index explicitly"),
    }
    let generic = |i: usize| norm[i] == format!("label_{i}") || norm[i] == i.to_string();
    if labels.len() == 2 && generic(0) && generic(1) {
        return Ok(1);
    }
    bail!(
        "labels {labels:?}: cannot tell which class is toxic (expected one of {TOXIC_NAMES:?}, \
         or two generic labels LABEL_0/LABEL_1); give the toxic class index explicitly"
    )
}

/// A RoBERTa sequence classifier used as a toxicity classifier.
pub struct RobertaClassifier {
    pub model: Roberta,
    pub tokenizer: Tokenizer,
    /// Label names by class index.
    pub labels: Vec<String>,
    /// The class whose probability is `p_toxic`.
    pub toxic_index: usize,
    /// Texts per forward pass.
    pub batch_size: usize,
}

impl RobertaClassifier {
    /// Loads a `RobertaForSequenceClassification` folder: `config.json`, `model.safetensors`
    /// (`pytorch_model.bin` is refused) and `tokenizer.json`. `toxic_label` overrides the
    /// [`toxic_label_index`] rule.
    pub fn load(dir: &Path, toxic_label: Option<usize>) -> Result<Self> {
        let model =
            Roberta::load(dir).with_context(|| format!("loading the RoBERTa classifier in {}", dir.display()))?;
        let labels = model.config.labels()?;
        let toxic_index = toxic_label_index(&labels, toxic_label)
            .with_context(|| format!("{}", dir.join("config.json").display()))?;
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            bail!(
                "{}: missing (expected the fast tokenizer; create it with \
                 `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`)",
                tok_path.display()
            );
        }
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{}: not a valid tokenizer.json", tok_path.display()))?;
        let max_length = model.config.max_tokens()?;
        tokenizer
            .with_truncation(Some(TruncationParams { max_length, ..Default::default() }))
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{}: setting truncation to {max_length}", tok_path.display()))?;
        tokenizer.with_padding(None);
        Ok(RobertaClassifier { model, tokenizer, labels, toxic_index, batch_size: 16 })
    }

    pub fn config(&self) -> &RobertaConfig {
        &self.model.config
    }

    /// Token ids of `text` as the model sees them (special tokens added, truncated).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("tokenizing {:?}", short(text)))?;
        let ids = enc.get_ids().to_vec();
        if ids.is_empty() {
            bail!("tokenizing {:?} gave no tokens (the tokenizer adds no <s> token?)", short(text));
        }
        Ok(ids)
    }

    /// Class logits of each text, in input order: `texts.len()` rows of `labels.len()` values.
    pub fn logits(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let encoded = texts.iter().map(|t| self.encode(t)).collect::<Result<Vec<_>>>()?;
        // Longest first, so the largest batch comes first; ties keep the input order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        let pad = self.model.config.pad_token_id;
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let t = chunk.iter().map(|&i| encoded[i].len()).max().unwrap_or(0);
            let rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| {
                    let mut r = encoded[i].clone();
                    r.resize(t, pad);
                    r
                })
                .collect();
            let lens: Vec<usize> = chunk.iter().map(|&i| encoded[i].len()).collect();
            let logits: Vec<Vec<f32>> = self.model.forward(&rows, &lens)?.to_vec2()?;
            for (&i, row) in chunk.iter().zip(logits) {
                out[i] = row;
            }
        }
        Ok(out)
    }
}

impl evals::toxigen::Classifier for RobertaClassifier {
    fn p_toxic(&self, texts: &[String]) -> Result<Vec<f64>> {
        Ok(self.logits(texts)?.iter().map(|row| softmax_f64(row)[self.toxic_index]).collect())
    }
}

fn short(text: &str) -> String {
    let s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s + "..."
    } else {
        s
    }
}
