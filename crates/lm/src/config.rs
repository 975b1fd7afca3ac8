//! The model configuration, read straight from a Hugging Face `config.json`.
//!
//! One struct covers `LlamaForCausalLM`, `Qwen2ForCausalLM` and `Olmo2ForCausalLM`; the
//! differences between the three are captured by [`Arch`]. Unknown keys are kept in `extra`
//! so that a config we read and write back loses nothing.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The supported Hugging Face architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama-2/3, TinyLlama: pre-norm blocks, optional GQA and llama3 rope scaling.
    Llama,
    /// Qwen2 / Qwen2.5: Llama blocks with biases on q, k and v.
    Qwen2,
    /// OLMo-2: post-norm blocks (norm after attention and MLP), RMSNorm on q and k.
    Olmo2,
}

impl Arch {
    pub const KNOWN: &'static [&'static str] = &["LlamaForCausalLM", "Qwen2ForCausalLM", "Olmo2ForCausalLM"];

    pub fn from_hf(name: &str) -> Option<Arch> {
        match name {
            "LlamaForCausalLM" => Some(Arch::Llama),
            "Qwen2ForCausalLM" => Some(Arch::Qwen2),
            "Olmo2ForCausalLM" => Some(Arch::Olmo2),
            _ => None,
        }
    }

    pub fn hf_name(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Olmo2 => "Olmo2ForCausalLM",
        }
    }

    pub fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Olmo2 => "olmo2",
        }
    }
}

/// `rope_scaling` as Hugging Face writes it; only `llama3` changes the frequencies here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default = "one")]
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_orig_ctx")]
    pub original_max_position_embeddings: usize,
}

/// `transformers` 5 writes the rotary settings as `rope_parameters` (`{"rope_theta": ..,
/// "rope_type": "default" | "llama3" | ..}`) instead of top-level `rope_theta` and
/// `rope_scaling`; copy them to where 4.x put them, unless those are present already (the
/// `rope_parameters` object itself stays in `extra`, so a config read and written back is
/// unchanged).
fn lift_rope_parameters(v: &mut serde_json::Value) {
    let Some(obj) = v.as_object_mut() else { return };
    let Some(rp) = obj.get("rope_parameters").filter(|r| r.is_object()).cloned() else { return };
    if !obj.contains_key("rope_theta") {
        if let Some(theta) = rp.get("rope_theta").filter(|t| t.is_number()) {
            obj.insert("rope_theta".into(), theta.clone());
        }
    }
    let scaled = rp.get("rope_type").and_then(|t| t.as_str()).is_some_and(|t| t != "default");
    if scaled && obj.get("rope_scaling").is_none_or(|r| r.is_null()) {
        obj.insert("rope_scaling".into(), rp);
    }
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_orig_ctx() -> usize {
    8192
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}

/// A Hugging Face causal-LM config (the fields we use; everything else is kept in `extra`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LmConfig {
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    /// Llama and OLMo-2 may put biases on all attention projections; Qwen2 always has q/k/v biases.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// A single id or a list (Llama-3 lists several).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub torch_dtype: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl LmConfig {
    /// A small config for tests and the testbed.
    #[allow(clippy::too_many_arguments)]
    pub fn small(
        arch: Arch,
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
        max_position_embeddings: usize,
    ) -> LmConfig {
        LmConfig {
            architectures: vec![arch.hf_name().to_string()],
            model_type: Some(arch.model_type().to_string()),
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: Some(num_key_value_heads),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings,
            tie_word_embeddings: arch == Arch::Qwen2,
            rope_scaling: None,
            attention_bias: false,
            bos_token_id: Some(0),
            eos_token_id: Some(serde_json::json!(1)),
            pad_token_id: None,
            hidden_act: Some("silu".into()),
            torch_dtype: Some("float32".into()),
            extra: Default::default(),
        }
    }

    pub fn from_file(path: &Path) -> Result<LmConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the model config", path.display()))?;
        let mut v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
        lift_rope_parameters(&mut v);
        let cfg: LmConfig = serde_json::from_value(v)
            .with_context(|| format!("{}: not a valid Hugging Face causal-LM config.json", path.display()))?;
        cfg.validate().with_context(|| format!("{}: invalid model config", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        self.arch()?;
        let nh = self.num_attention_heads;
        let nkv = self.num_kv_heads();
        if nh == 0 || nkv == 0 || !nh.is_multiple_of(nkv) {
            bail!("num_attention_heads ({nh}) must be a positive multiple of num_key_value_heads ({nkv})");
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(nh) {
            bail!("hidden_size ({}) is not divisible by num_attention_heads ({nh})", self.hidden_size);
        }
        if !self.head_dim().is_multiple_of(2) {
            bail!("head_dim ({}) must be even for rotary embeddings", self.head_dim());
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
        ] {
            if v == 0 {
                bail!("{name} must be positive");
            }
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                bail!("hidden_act {act:?} is not supported (expected \"silu\")");
            }
        }
        if let Some(rs) = &self.rope_scaling {
            if !matches!(rs.rope_type.as_str(), "llama3" | "default") {
                bail!("rope_scaling type {:?} is not supported (expected \"llama3\")", rs.rope_type);
            }
        }
        Ok(())
    }

    pub fn arch(&self) -> Result<Arch> {
        let name = self.architectures.first().context(
            "`architectures` is empty (expected one of LlamaForCausalLM, Qwen2ForCausalLM, Olmo2ForCausalLM)",
        )?;
        Arch::from_hf(name)
            .with_context(|| format!("unsupported architecture {name:?} (supported: {})", Arch::KNOWN.join(", ")))
    }

    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The end-of-sequence ids (several for Llama-3).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_u64().map(|v| v as u32)).collect(),
            _ => vec![],
        }
    }

    /// Whether q/k/v projections carry a bias.
    pub fn qkv_bias(&self) -> bool {
        self.arch().map(|a| a == Arch::Qwen2).unwrap_or(false) || self.attention_bias
    }

    /// Whether the output projection of attention carries a bias.
    pub fn o_bias(&self) -> bool {
        self.attention_bias && self.arch().map(|a| a != Arch::Qwen2).unwrap_or(false)
    }

    /// Expected parameter names and shapes, in Hugging Face naming, in a stable order.
    pub fn parameter_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let arch = self.arch()?;
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let (hd, nh, nkv) = (self.head_dim(), self.num_attention_heads, self.num_kv_heads());
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..self.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut add = |n: &str, s: Vec<usize>| out.push((format!("{p}.{n}"), s));
            add("self_attn.q_proj.weight", vec![nh * hd, h]);
            add("self_attn.k_proj.weight", vec![nkv * hd, h]);
            add("self_attn.v_proj.weight", vec![nkv * hd, h]);
            add("self_attn.o_proj.weight", vec![h, nh * hd]);
            if self.qkv_bias() {
                add("self_attn.q_proj.bias", vec![nh * hd]);
                add("self_attn.k_proj.bias", vec![nkv * hd]);
                add("self_attn.v_proj.bias", vec![nkv * hd]);
            }
            if self.o_bias() {
                add("self_attn.o_proj.bias", vec![h]);
            }
            add("mlp.gate_proj.weight", vec![i, h]);
            add("mlp.up_proj.weight", vec![i, h]);
            add("mlp.down_proj.weight", vec![h, i]);
            match arch {
                Arch::Llama | Arch::Qwen2 => {
                    add("input_layernorm.weight", vec![h]);
                    add("post_attention_layernorm.weight", vec![h]);
                }
                Arch::Olmo2 => {
                    add("self_attn.q_norm.weight", vec![nh * hd]);
                    add("self_attn.k_norm.weight", vec![nkv * hd]);
                    add("post_attention_layernorm.weight", vec![h]);
                    add("post_feedforward_layernorm.weight", vec![h]);
                }
            }
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !self.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        Ok(out)
    }

    pub fn num_parameters(&self) -> Result<usize> {
        Ok(self.parameter_shapes()?.iter().map(|(_, s)| s.iter().product::<usize>()).sum())
    }
}
