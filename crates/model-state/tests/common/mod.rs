//! Test helpers: tiny Hugging Face–style checkpoint folders written with the reference
//! `safetensors` crate (not with this crate's writer), and deterministic pseudo-random values.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use model_state::Dtype;
use safetensors::tensor::TensorView;

/// One tensor as the test knows it: values kept as f32 (exactly representable in `dtype`).
#[derive(Clone, Debug)]
pub struct T {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Float values (already rounded to `dtype`), or raw bytes for non-float dtypes.
    pub values: Vec<f32>,
    pub raw: Vec<u8>,
}

impl T {
    pub fn float(dtype: Dtype, shape: &[usize], values: Vec<f32>) -> T {
        let values = values.into_iter().map(|v| round_to(dtype, v)).collect();
        T { dtype, shape: shape.to_vec(), values, raw: Vec::new() }
    }
    pub fn i64s(shape: &[usize], v: &[i64]) -> T {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        T { dtype: Dtype::I64, shape: shape.to_vec(), values: Vec::new(), raw }
    }
    pub fn bytes(&self) -> Vec<u8> {
        match self.dtype {
            Dtype::F32 => self.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::BF16 => self.values.iter().flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes()).collect(),
            Dtype::F16 => self.values.iter().flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes()).collect(),
            _ => self.raw.clone(),
        }
    }
}

pub fn round_to(dtype: Dtype, v: f32) -> f32 {
    match dtype {
        Dtype::BF16 => bf16::from_f32(v).to_f32(),
        Dtype::F16 => f16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// splitmix64-based uniform values in [-2, 2).
pub fn values(seed: u64, n: usize) -> Vec<f32> {
    values_from(seed, 0, n)
}

/// The tensors of test model number `seed` (same layout for every seed).
pub fn model(seed: u64) -> BTreeMap<String, T> {
    let mut m = BTreeMap::new();
    m.insert("model.embed_tokens.weight".into(), T::float(Dtype::F32, &[5, 3], values(seed * 10 + 1, 15)));
    m.insert("model.layers.0.mlp.weight".into(), T::float(Dtype::BF16, &[4, 6], values(seed * 10 + 2, 24)));
    m.insert("model.layers.0.mlp.bias".into(), T::float(Dtype::BF16, &[6], values(seed * 10 + 3, 6)));
    m.insert("model.norm.weight".into(), T::float(Dtype::F32, &[7], values(seed * 10 + 4, 7)));
    m.insert("model.scale".into(), T::float(Dtype::F32, &[], values(seed * 10 + 5, 1)));
    m.insert("lm_head.weight".into(), T::float(Dtype::F16, &[3, 2], values(seed * 10 + 6, 6)));
    m.insert("model.position_ids".into(), T::i64s(&[1, 4], &[0, 1, 2, 3]));
    m
}

/// Writes `dir/config.json`, `dir/tokenizer.json` (contents tagged with `tag`).
pub fn write_side_files(dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), format!("{{\"model_type\":\"llama\",\"tag\":\"{tag}\"}}")).unwrap();
    std::fs::write(dir.join("tokenizer.json"), format!("{{\"tokenizer\":\"{tag}\"}}")).unwrap();
}

/// Serializes `tensors` to `path` with the reference safetensors crate.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, T>) {
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.dtype, t.shape.clone(), t.bytes())).collect();
    let views: Vec<(String, TensorView<'_>)> =
        bytes.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    let mut meta = std::collections::HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    safetensors::serialize_to_file(views, Some(meta), path).unwrap();
}

/// A single-file checkpoint folder.
pub fn write_state(dir: &Path, tensors: &BTreeMap<String, T>, tag: &str) -> PathBuf {
    write_side_files(dir, tag);
    write_safetensors(&dir.join("model.safetensors"), tensors);
    dir.to_path_buf()
}

/// A checkpoint folder with two shards and an index; tensors alternate between shards.
pub fn write_sharded_state(dir: &Path, tensors: &BTreeMap<String, T>, tag: &str) -> PathBuf {
    write_side_files(dir, tag);
    let mut shards = [BTreeMap::new(), BTreeMap::new()];
    let mut weight_map = serde_json::Map::new();
    for (i, (n, t)) in tensors.iter().enumerate() {
        shards[i % 2].insert(n.clone(), t.clone());
        let file = format!("model-0000{}-of-00002.safetensors", i % 2 + 1);
        weight_map.insert(n.clone(), serde_json::Value::String(file));
    }
    for (i, shard) in shards.iter().enumerate() {
        write_safetensors(&dir.join(format!("model-0000{}-of-00002.safetensors", i + 1)), shard);
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), serde_json::to_string_pretty(&index).unwrap()).unwrap();
    dir.to_path_buf()
}

/// Reference Σ cᵢ·θᵢ: f32 accumulation in term order, rounded to each tensor's dtype.
pub fn reference_combination(coefs: &[f64], models: &[BTreeMap<String, T>]) -> BTreeMap<String, T> {
    let mut out = BTreeMap::new();
    for (name, t0) in &models[0] {
        if t0.values.is_empty() && !t0.raw.is_empty() {
            out.insert(name.clone(), t0.clone());
            continue;
        }
        let mut acc = vec![0.0f32; t0.values.len()];
        for (c, m) in coefs.iter().zip(models) {
            for (a, x) in acc.iter_mut().zip(&m[name].values) {
                *a += (*c as f32) * x;
            }
        }
        let values = acc.into_iter().map(|v| round_to(t0.dtype, v)).collect();
        out.insert(name.clone(), T { dtype: t0.dtype, shape: t0.shape.clone(), values, raw: Vec::new() });
    }
    out
}

/// Reads `dir/model.safetensors` with the reference parser, as raw bytes per tensor.
pub fn read_output(dir: &Path) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let buf = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&buf).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect()
}

/// Entries of `dir` (file names), sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// `values(seed, ..)` elements `start..start + n`, without generating the prefix.
pub fn values_from(seed: u64, start: usize, n: usize) -> Vec<f32> {
    (start as u64..(start + n) as u64)
        .map(|i| {
            let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(i.wrapping_mul(0xBF58_476D_1CE4_E5B9));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}
