//! Import of a llama2.c legacy checkpoint (Karpathy's llama2.c, `run.c` / `export.py --version 0`;
//! e.g. `stories260K.bin` + `tok512.bin`) into a Hugging Face Llama folder: `config.json`,
//! `model.safetensors` (f32, HF key names), `tokenizer.json` (via [`tokenize::llama2c_tokenizer_to_hf`]).
//!
//! Legacy file layout: 7 little-endian i32 `dim, hidden_dim, n_layers, n_heads, n_kv_heads,
//! vocab_size, seq_len` (a negative vocab size means an unshared classifier), then f32 arrays:
//! token_embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kv_dim, dim],
//! wv [L, kv_dim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, hidden, dim],
//! w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim], freq_cis_real and freq_cis_imag
//! [seq_len, head_size / 2] (ignored), then wcls [vocab, dim] only when unshared.
//!
//! Rotary layout: llama2.c rotates interleaved pairs (x[2i], x[2i+1]) of each head, HF Llama
//! rotates halves (x[i], x[i + head_size/2]). The rows of wq and wk are permuted per head exactly as
//! `transformers`' `convert_llama_weights_to_hf.py` does:
//! `w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)` ([`permute_rotary`]).

// `is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

/// Bytes of the legacy header (7 i32).
const HEADER_BYTES: usize = 7 * 4;

/// The hyper-parameters of a llama2.c checkpoint, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Llama2cConfig {
    pub dim: usize,
    pub hidden_dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab_size: usize,
    pub seq_len: usize,
    /// Output layer shares the token embedding (header vocab size positive).
    pub shared_classifier: bool,
}

impl Llama2cConfig {
    pub fn head_size(&self) -> usize {
        self.dim / self.n_heads
    }

    pub fn kv_dim(&self) -> usize {
        self.head_size() * self.n_kv_heads
    }

    /// Parses and validates the 28-byte header.
    pub fn from_header(bytes: &[u8]) -> Result<Self> {
        let Some(head) = bytes.get(..HEADER_BYTES) else {
            bail!("{} bytes, shorter than the {HEADER_BYTES}-byte header", bytes.len());
        };
        let f: Vec<i32> = head.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"];
        for (i, (&v, name)) in f.iter().zip(names).enumerate() {
            if v == 0 || (v < 0 && i != 5) || v == i32::MIN {
                bail!("header field {name} = {v}, expected a positive integer");
            }
        }
        let u = |i: usize| f[i].unsigned_abs() as usize;
        let c = Self {
            dim: u(0),
            hidden_dim: u(1),
            n_layers: u(2),
            n_heads: u(3),
            n_kv_heads: u(4),
            vocab_size: u(5),
            seq_len: u(6),
            shared_classifier: f[5] > 0,
        };
        if c.dim % c.n_heads != 0 || c.head_size() % 2 != 0 {
            bail!("dim {} must split into {} heads of even size", c.dim, c.n_heads);
        }
        if c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0 {
            bail!("n_heads {} must be a multiple of n_kv_heads {}", c.n_heads, c.n_kv_heads);
        }
        Ok(c)
    }

    /// The exact file size this header implies, in bytes.
    pub fn file_bytes(&self) -> u64 {
        let floats: u64 = self.arrays().iter().map(|a| a.numel() as u64).sum();
        HEADER_BYTES as u64 + 4 * floats
    }

    /// The f32 arrays of the file, in order, with their llama2.c names and shapes.
    fn arrays(&self) -> Vec<Array> {
        let (d, h, l, v, kv) = (self.dim, self.hidden_dim, self.n_layers, self.vocab_size, self.kv_dim());
        let half = self.head_size() / 2;
        let mut a = vec![
            Array::new("token_embedding", &[v, d]),
            Array::new("rms_att", &[l, d]),
            Array::new("wq", &[l, d, d]),
            Array::new("wk", &[l, kv, d]),
            Array::new("wv", &[l, kv, d]),
            Array::new("wo", &[l, d, d]),
            Array::new("rms_ffn", &[l, d]),
            Array::new("w1", &[l, h, d]),
            Array::new("w2", &[l, d, h]),
            Array::new("w3", &[l, h, d]),
            Array::new("rms_final", &[d]),
            Array::new("freq_cis_real", &[self.seq_len, half]),
            Array::new("freq_cis_imag", &[self.seq_len, half]),
        ];
        if !self.shared_classifier {
            a.push(Array::new("wcls", &[v, d]));
        }
        a
    }

    /// The Hugging Face `config.json` of the imported model.
    pub fn hf_config(&self) -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.dim,
            "intermediate_size": self.hidden_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads,
            "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_size(),
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.seq_len,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": self.shared_classifier,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "hidden_act": "silu",
            "attention_bias": false,
            "mlp_bias": false,
            "torch_dtype": "float32",
        })
    }
}

/// A named array of the llama2.c file.
struct Array {
    name: &'static str,
    shape: Vec<usize>,
}

impl Array {
    fn new(name: &'static str, shape: &[usize]) -> Self {
        Self { name, shape: shape.to_vec() }
    }
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// One tensor in Hugging Face layout (row-major f32).
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reorders the rows of a q/k projection `[dim1, dim2]` from llama2.c's interleaved rotary layout to
/// HF's rotate-half layout: within each of `n_heads` heads of `hs = dim1 / n_heads` rows, output row
/// `j * hs/2 + i` is input row `2 * i + j` (`j` in 0..2, `i` in 0..hs/2).
pub fn permute_rotary(w: &[f32], n_heads: usize, dim1: usize, dim2: usize) -> Result<Vec<f32>> {
    if w.len() != dim1 * dim2 || n_heads == 0 || dim1 % (2 * n_heads) != 0 {
        bail!("cannot permute {} values as [{dim1}, {dim2}] in {n_heads} heads of even size", w.len());
    }
    let hs = dim1 / n_heads;
    let half = hs / 2;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..n_heads {
        for j in 0..2 {
            for i in 0..half {
                let row = h * hs + 2 * i + j;
                out.extend_from_slice(&w[row * dim2..(row + 1) * dim2]);
            }
        }
    }
    Ok(out)
}

/// Reads a llama2.c legacy checkpoint into Hugging Face tensors (q/k permuted; `lm_head.weight`
/// only when the classifier is not shared), in file order.
pub fn read_checkpoint(model_bin: &Path) -> Result<(Llama2cConfig, Vec<HfTensor>)> {
    let bytes =
        std::fs::read(model_bin).with_context(|| format!("reading llama2.c checkpoint {}", model_bin.display()))?;
    let cfg = Llama2cConfig::from_header(&bytes)
        .with_context(|| format!("llama2.c checkpoint {}: bad header", model_bin.display()))?;
    let want = cfg.file_bytes();
    if bytes.len() as u64 != want {
        bail!(
            "llama2.c checkpoint {}: {} is {want} bytes for {cfg:?}, but the file has {} bytes",
            model_bin.display(),
            if (bytes.len() as u64) < want { "truncated: expected size" } else { "trailing bytes: expected size" },
            bytes.len()
        );
    }
    let mut at = HEADER_BYTES;
    let mut arrays: HashMap<&'static str, (Vec<usize>, Vec<f32>)> = HashMap::new();
    for a in cfg.arrays() {
        let n = a.numel();
        let data: Vec<f32> =
            bytes[at..at + 4 * n].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        at += 4 * n;
        arrays.insert(a.name, (a.shape, data));
    }
    let tensors = to_hf(&cfg, arrays).with_context(|| format!("converting {}", model_bin.display()))?;
    Ok((cfg, tensors))
}

fn to_hf(cfg: &Llama2cConfig, mut a: HashMap<&'static str, (Vec<usize>, Vec<f32>)>) -> Result<Vec<HfTensor>> {
    let mut take = |name: &str| a.remove(name).with_context(|| format!("array {name} missing"));
    let (d, h, kv) = (cfg.dim, cfg.hidden_dim, cfg.kv_dim());
    let mut out = Vec::new();
    let mut push = |name: String, shape: &[usize], data: Vec<f32>| {
        out.push(HfTensor { name, shape: shape.to_vec(), data });
    };
    push("model.embed_tokens.weight".into(), &[cfg.vocab_size, d], take("token_embedding")?.1);
    let layer = |w: &[f32], i: usize, n: usize| w[i * n..(i + 1) * n].to_vec();
    let (rms_att, wq, wk, wv, wo) = (take("rms_att")?.1, take("wq")?.1, take("wk")?.1, take("wv")?.1, take("wo")?.1);
    let (rms_ffn, w1, w2, w3) = (take("rms_ffn")?.1, take("w1")?.1, take("w2")?.1, take("w3")?.1);
    for i in 0..cfg.n_layers {
        let p = format!("model.layers.{i}");
        push(format!("{p}.input_layernorm.weight"), &[d], layer(&rms_att, i, d));
        let q = permute_rotary(&layer(&wq, i, d * d), cfg.n_heads, d, d).with_context(|| format!("layer {i} wq"))?;
        push(format!("{p}.self_attn.q_proj.weight"), &[d, d], q);
        let k =
            permute_rotary(&layer(&wk, i, kv * d), cfg.n_kv_heads, kv, d).with_context(|| format!("layer {i} wk"))?;
        push(format!("{p}.self_attn.k_proj.weight"), &[kv, d], k);
        push(format!("{p}.self_attn.v_proj.weight"), &[kv, d], layer(&wv, i, kv * d));
        push(format!("{p}.self_attn.o_proj.weight"), &[d, d], layer(&wo, i, d * d));
        push(format!("{p}.post_attention_layernorm.weight"), &[d], layer(&rms_ffn, i, d));
        push(format!("{p}.mlp.gate_proj.weight"), &[h, d], layer(&w1, i, h * d));
        push(format!("{p}.mlp.down_proj.weight"), &[d, h], layer(&w2, i, d * h));
        push(format!("{p}.mlp.up_proj.weight"), &[h, d], layer(&w3, i, h * d));
    }
    push("model.norm.weight".into(), &[d], take("rms_final")?.1);
    if !cfg.shared_classifier {
        push("lm_head.weight".into(), &[cfg.vocab_size, d], take("wcls")?.1);
    }
    Ok(out)
}

/// What [`import`] wrote.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The Hugging Face folder.
    pub out: PathBuf,
    pub config: Llama2cConfig,
    /// Name and shape of every tensor in `model.safetensors`, in file order.
    pub tensors: Vec<(String, Vec<usize>)>,
    /// Total parameter count (tied embedding counted once).
    pub n_params: usize,
}

/// Writes `config.json`, `model.safetensors` and `tokenizer.json` for a llama2.c checkpoint and
/// tokenizer into the folder `out`. The folder is written as a sibling temporary folder and renamed
/// into place; an existing `out` is replaced only after the new one is complete.
pub fn import(model_bin: &Path, tok_bin: &Path, out: &Path) -> Result<ImportReport> {
    let (cfg, tensors) = read_checkpoint(model_bin)?;
    let tok = tokenize::llama2c_tokenizer_to_hf(tok_bin)?;
    let tok_vocab = tok.get_vocab_size(true);
    if tok_vocab != cfg.vocab_size {
        bail!(
            "tokenizer {} has {tok_vocab} tokens but checkpoint {} expects vocab_size {}",
            tok_bin.display(),
            model_bin.display(),
            cfg.vocab_size
        );
    }

    let name = out.file_name().with_context(|| format!("output folder {} has no name", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = write_folder(&tmp, &cfg, &tensors, &tok);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let old = parent.join(format!(".{}.old-{}", name.to_string_lossy(), std::process::id()));
    replace_dir(&tmp, &old, out)?;

    let n_params = tensors.iter().map(|t| t.data.len()).sum();
    Ok(ImportReport {
        out: out.to_path_buf(),
        config: cfg,
        tensors: tensors.into_iter().map(|t| (t.name, t.shape)).collect(),
        n_params,
    })
}

fn write_folder(dir: &Path, cfg: &Llama2cConfig, tensors: &[HfTensor], tok: &tokenize::Tokenizer) -> Result<()> {
    let config = serde_json::to_string_pretty(&cfg.hf_config()).context("serializing config.json")?;
    let path = dir.join("config.json");
    std::fs::write(&path, config + "\n").with_context(|| format!("writing {}", path.display()))?;

    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.data.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for (t, b) in tensors.iter().zip(&bytes) {
        let v = TensorView::new(Dtype::F32, t.shape.clone(), b)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("tensor {} {:?}", t.name, t.shape))?;
        views.push((t.name.clone(), v));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let path = dir.join("model.safetensors");
    let st = safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .context("serializing model.safetensors")?;
    std::fs::write(&path, st).with_context(|| format!("writing {}", path.display()))?;

    let path = dir.join("tokenizer.json");
    tok.save(&path, true).map_err(|e| anyhow::anyhow!("{e}")).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Renames `tmp` to `out`, moving an existing `out` aside to `old` first and deleting it afterwards.
fn replace_dir(tmp: &Path, old: &Path, out: &Path) -> Result<()> {
    let had_old = out.exists();
    if had_old {
        if old.exists() {
            std::fs::remove_dir_all(old).with_context(|| format!("removing stale {}", old.display()))?;
        }
        std::fs::rename(out, old).with_context(|| format!("moving the existing {} aside", out.display()))?;
    }
    if let Err(e) = std::fs::rename(tmp, out) {
        if had_old {
            let _ = std::fs::rename(old, out);
        }
        return Err(e).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()));
    }
    if had_old {
        std::fs::remove_dir_all(old).with_context(|| format!("removing the replaced {}", old.display()))?;
    }
    Ok(())
}
