//! RoBERTa encoder and sequence-classification head: the forward of transformers'
//! `RobertaForSequenceClassification` (`models/roberta/modeling_roberta.py`, eager attention),
//! in f32 on the CPU.
//!
//! - Embeddings: `word[id] + position[pos] + token_type[0]`, then LayerNorm. RoBERTa's position
//!   ids start after the padding index: `pos = cumsum(id != pad) * (id != pad) + pad`
//!   (`create_position_ids_from_input_ids`), so the first real token has position `pad + 1`
//!   and padding tokens sit at `pad`.
//! - Encoder layers are post-LayerNorm BERT layers: `x = LN(x + attn(x))`,
//!   `x = LN(x + W2·act(W1·x))`, with `act` = exact (erf) GELU for `hidden_act = "gelu"`.
//! - Attention adds `f32::MIN` to the scores of padded keys (transformers' additive mask).
//! - Head (`RobertaClassificationHead`): the `<s>` (first) token's state → dense → tanh →
//!   out_proj. There is no pooler in `RobertaForSequenceClassification`; a checkpoint's
//!   `roberta.pooler.*` tensors are ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear};
use serde::Deserialize;

/// The fields of a Hugging Face RoBERTa `config.json` that the forward uses; defaults are
/// transformers' `RobertaConfig` defaults.
#[derive(Clone, Debug, Deserialize)]
pub struct RobertaConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// Class index (as a string, as transformers writes it) → label name.
    #[serde(default)]
    pub id2label: Option<BTreeMap<String, String>>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pad() -> u32 {
    1
}
fn default_position_type() -> String {
    "absolute".into()
}

impl RobertaConfig {
    /// Reads and checks `config.json`.
    pub fn load(path: &Path) -> Result<RobertaConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: RobertaConfig = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: expected a RoBERTa config.json (vocab_size, hidden_size, num_hidden_layers, \
                 num_attention_heads, intermediate_size, max_position_embeddings, ...)",
                path.display()
            )
        })?;
        cfg.check().with_context(|| path.display().to_string())?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        if let Some(t) = &self.model_type {
            if t != "roberta" && t != "xlm-roberta" {
                bail!("model_type {t:?}, expected \"roberta\" or \"xlm-roberta\"");
            }
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if self.position_embedding_type != "absolute" {
            bail!("position_embedding_type {:?}, only \"absolute\" is supported", self.position_embedding_type);
        }
        activation(&self.hidden_act)?;
        self.max_tokens()?;
        self.labels()?;
        Ok(())
    }

    /// The most tokens (specials included) one text may have: positions run up to
    /// `max_tokens + pad_token_id`, which must stay below `max_position_embeddings`
    /// (for RoBERTa, `pad_token_id = 1`, so this is `max_position_embeddings - 2`).
    pub fn max_tokens(&self) -> Result<usize> {
        match self.max_position_embeddings.checked_sub(self.pad_token_id as usize + 1) {
            Some(n) if n > 0 => Ok(n),
            _ => bail!(
                "max_position_embeddings {} leaves no room for tokens after the padding index {}",
                self.max_position_embeddings,
                self.pad_token_id
            ),
        }
    }

    /// Label names by class index, from `id2label` (indices must be 0..n without gaps);
    /// transformers' default without `id2label` is two classes `LABEL_0`, `LABEL_1`.
    pub fn labels(&self) -> Result<Vec<String>> {
        let Some(map) = &self.id2label else {
            return Ok(vec!["LABEL_0".into(), "LABEL_1".into()]);
        };
        let mut by_index = BTreeMap::new();
        for (k, v) in map {
            let i: usize = k.trim().parse().with_context(|| format!("id2label key {k:?}: expected a class index"))?;
            by_index.insert(i, v.clone());
        }
        if by_index.keys().copied().ne(0..by_index.len()) {
            bail!("id2label keys {:?}: expected 0..{}", by_index.keys().collect::<Vec<_>>(), by_index.len());
        }
        if by_index.len() < 2 {
            bail!("id2label has {} label(s), expected at least 2 classes", by_index.len());
        }
        Ok(by_index.into_values().collect())
    }
}

#[derive(Clone, Copy, Debug)]
enum Act {
    GeluErf,
    GeluTanh,
    Relu,
}

fn activation(name: &str) -> Result<Act> {
    Ok(match name {
        "gelu" => Act::GeluErf,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Act::GeluTanh,
        "relu" => Act::Relu,
        other => bail!("hidden_act {other:?}, expected \"gelu\", \"gelu_new\", \"gelu_pytorch_tanh\" or \"relu\""),
    })
}

impl Act {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Act::GeluErf => x.gelu_erf()?,
            Act::GeluTanh => x.gelu()?,
            Act::Relu => x.relu()?,
        })
    }
}

/// The tensors of `model.safetensors`, looked up by name with the shape the config implies.
struct Weights {
    file: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    fn load(dir: &Path) -> Result<Weights> {
        let file = dir.join("model.safetensors");
        if !file.exists() {
            if dir.join("pytorch_model.bin").exists() {
                bail!(
                    "{}: only pytorch_model.bin is present; pickled PyTorch weights are refused \
                     (they can execute code). Convert once with transformers: \
                     `RobertaForSequenceClassification.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`",
                    dir.display()
                );
            }
            if dir.join("model.safetensors.index.json").exists() {
                bail!(
                    "{}: sharded safetensors are not supported for RoBERTa classifiers, expected one model.safetensors",
                    dir.display()
                );
            }
            bail!(
                "{}: no model.safetensors (expected a Hugging Face RobertaForSequenceClassification folder)",
                dir.display()
            );
        }
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .with_context(|| format!("{}: not a valid safetensors file (truncated or corrupt?)", file.display()))?;
        Ok(Weights { file, tensors })
    }

    /// The tensor `name` as f32, checked to have `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(name).with_context(|| {
            format!(
                "{}: tensor `{name}` is missing (expected shape {shape:?} for RobertaForSequenceClassification)",
                self.file.display()
            )
        })?;
        if t.dims() != shape {
            bail!(
                "{}: tensor `{name}` has shape {:?}, expected {shape:?} (from config.json)",
                self.file.display(),
                t.dims()
            );
        }
        match t.dtype() {
            DType::F32 => Ok(t.clone()),
            DType::F16 | DType::BF16 | DType::F64 => Ok(t.to_dtype(DType::F32)?),
            other => bail!(
                "{}: tensor `{name}` has dtype {other:?}, expected a float type (f32, f16, bf16)",
                self.file.display()
            ),
        }
    }

    fn linear(&self, prefix: &str, d_in: usize, d_out: usize) -> Result<Linear> {
        let w = self.get(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let b = self.get(&format!("{prefix}.bias"), &[d_out])?;
        Ok(Linear::new(w, Some(b)))
    }

    fn layer_norm(&self, prefix: &str, d: usize, eps: f64) -> Result<LayerNorm> {
        let w = self.get(&format!("{prefix}.weight"), &[d])?;
        let b = self.get(&format!("{prefix}.bias"), &[d])?;
        Ok(LayerNorm::new(w, b, eps))
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// A loaded `RobertaForSequenceClassification`.
pub struct Roberta {
    pub config: RobertaConfig,
    word: Embedding,
    position: Embedding,
    /// Row 0 of `token_type_embeddings` (RoBERTa uses a single segment), shape (hidden,).
    token_type: Tensor,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    act: Act,
    head_dense: Linear,
    head_out: Linear,
    num_labels: usize,
}

impl Roberta {
    /// Loads `dir/config.json` and `dir/model.safetensors` (f16/bf16 weights become f32).
    pub fn load(dir: &Path) -> Result<Roberta> {
        let config = RobertaConfig::load(&dir.join("config.json"))?;
        let w = Weights::load(dir)?;
        let c = &config;
        let (h, eps) = (c.hidden_size, c.layer_norm_eps);
        let num_labels = c.labels()?.len();
        let e = "roberta.embeddings";
        let word = Embedding::new(w.get(&format!("{e}.word_embeddings.weight"), &[c.vocab_size, h])?, h);
        let position =
            Embedding::new(w.get(&format!("{e}.position_embeddings.weight"), &[c.max_position_embeddings, h])?, h);
        let token_type = w.get(&format!("{e}.token_type_embeddings.weight"), &[c.type_vocab_size, h])?.i(0)?;
        let embed_norm = w.layer_norm(&format!("{e}.LayerNorm"), h, eps)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let p = format!("roberta.encoder.layer.{i}");
                Ok(Layer {
                    query: w.linear(&format!("{p}.attention.self.query"), h, h)?,
                    key: w.linear(&format!("{p}.attention.self.key"), h, h)?,
                    value: w.linear(&format!("{p}.attention.self.value"), h, h)?,
                    attn_out: w.linear(&format!("{p}.attention.output.dense"), h, h)?,
                    attn_norm: w.layer_norm(&format!("{p}.attention.output.LayerNorm"), h, eps)?,
                    up: w.linear(&format!("{p}.intermediate.dense"), h, c.intermediate_size)?,
                    down: w.linear(&format!("{p}.output.dense"), c.intermediate_size, h)?,
                    out_norm: w.layer_norm(&format!("{p}.output.LayerNorm"), h, eps)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Roberta {
            act: activation(&c.hidden_act)?,
            head_dense: w.linear("classifier.dense", h, h)?,
            head_out: w.linear("classifier.out_proj", h, num_labels)?,
            word,
            position,
            token_type,
            embed_norm,
            layers,
            num_labels,
            config,
        })
    }

    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// Class logits for a right-padded batch: `rows` all have the same length, padded with
    /// `pad_token_id`; `lens[b]` is the number of real tokens of row `b`. Returns (batch, labels).
    pub fn forward(&self, rows: &[Vec<u32>], lens: &[usize]) -> Result<Tensor> {
        let c = &self.config;
        let b = rows.len();
        let t = rows.first().map_or(0, Vec::len);
        if b == 0 || t == 0 || lens.len() != b || rows.iter().any(|r| r.len() != t) {
            bail!("forward: expected a non-empty batch of equal-length rows with one length each");
        }
        let pad = c.pad_token_id;
        let mut positions = Vec::with_capacity(b * t);
        let mut mask_bias = Vec::with_capacity(b * t);
        for (row, &len) in rows.iter().zip(lens) {
            // transformers: cumsum(id != pad) * (id != pad) + pad.
            let mut count = 0u32;
            for (j, &id) in row.iter().enumerate() {
                if id as usize >= c.vocab_size {
                    bail!("token id {id} is outside the vocabulary (vocab_size {})", c.vocab_size);
                }
                let real = id != pad;
                count += real as u32;
                positions.push(if real { count + pad } else { pad });
                mask_bias.push(if j < len { 0f32 } else { f32::MIN });
            }
            if count as usize + pad as usize >= c.max_position_embeddings {
                bail!(
                    "a row has {count} tokens, more than max_position_embeddings {} allows",
                    c.max_position_embeddings
                );
            }
        }
        let dev = Device::Cpu;
        let ids = Tensor::from_vec(rows.concat(), (b, t), &dev)?;
        let positions = Tensor::from_vec(positions, (b, t), &dev)?;
        // (batch, 1, 1, time): added to every head's scores for every query.
        let mask = Tensor::from_vec(mask_bias, (b, 1, 1, t), &dev)?;

        let x = self.word.forward(&ids)?.add(&self.position.forward(&positions)?)?;
        let x = x.broadcast_add(&self.token_type)?;
        let mut x = self.embed_norm.forward(&x)?; // (batch, time, hidden)
        for layer in &self.layers {
            x = self.layer(layer, &x, &mask)?;
        }
        let first = x.i((.., 0, ..))?.contiguous()?; // (batch, hidden): the <s> token
        let y = self.head_dense.forward(&first)?.tanh()?;
        Ok(self.head_out.forward(&y)?) // (batch, labels)
    }

    fn layer(&self, l: &Layer, x: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let nh = self.config.num_attention_heads;
        let hd = h / nh;
        let heads = |lin: &Linear| -> Result<Tensor> {
            // (batch, time, hidden) -> (batch, heads, time, head_dim)
            Ok(lin.forward(x)?.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let (q, k, v) = (heads(&l.query)?, heads(&l.key)?, heads(&l.value)?);
        let scale = 1.0 / (hd as f64).sqrt();
        let kt = k.transpose(2, 3)?.contiguous()?;
        let scores = (q.matmul(&kt)? * scale)?.broadcast_add(mask)?; // (batch, heads, time, time)
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        let x = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + x)?)?;
        let ff = l.down.forward(&self.act.apply(&l.up.forward(&x)?)?)?;
        Ok(l.out_norm.forward(&(ff + &x)?)?)
    }
}

/// Softmax of one row of logits, in f64.
pub(crate) fn softmax_f64(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let e: Vec<f64> = logits.iter().map(|&x| (x as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_matches_hand_computation() {
        // softmax([0, ln 3]) = [1/4, 3/4]
        let p = softmax_f64(&[0.0, 3f32.ln()]);
        assert!((p[0] - 0.25).abs() < 1e-7 && (p[1] - 0.75).abs() < 1e-7, "{p:?}");
    }
}
