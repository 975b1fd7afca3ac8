//! `combine_low_rank`: LoRA task vectors merged into the streaming combination (issue 16).
//! Reference: θ_D + Σ c·(alpha/r)·B·A computed densely in float64 from the stored values,
//! rounded once to each tensor's dtype. Adapter files are written with the reference
//! `safetensors` crate in PEFT's layout.

mod common;

use common::*;
use model_state::{combine, combine_low_rank, CombineOptions, Dtype, LowRankDelta};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A PEFT adapter folder for `modules` (module → (out, in)), factors in `dtype`.
fn write_adapter(
    dir: &Path,
    modules: &[(&str, usize, usize)],
    r: usize,
    alpha: f64,
    seed: u64,
    dtype: Dtype,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut t = BTreeMap::new();
    for (i, (m, out, inp)) in modules.iter().enumerate() {
        let s = seed * 100 + i as u64 * 2;
        t.insert(format!("base_model.model.{m}.lora_A.weight"), T::float(dtype, &[r, *inp], values(s, r * inp)));
        t.insert(format!("base_model.model.{m}.lora_B.weight"), T::float(dtype, &[*out, r], values(s + 1, out * r)));
    }
    write_safetensors(&dir.join("adapter_model.safetensors"), &t);
    let cfg = serde_json::json!({"peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": ["mlp"],
        "bias": "none", "fan_in_fan_out": false, "use_rslora": false});
    std::fs::write(dir.join("adapter_config.json"), cfg.to_string()).unwrap();
    dir.to_path_buf()
}

/// The stored factors back as f64 (A: r × in, B: out × r).
fn factors(dir: &Path, module: &str) -> (Vec<f64>, Vec<f64>) {
    let out = read_output_file(&dir.join("adapter_model.safetensors"));
    let get = |k: &str| -> Vec<f64> {
        let (dtype, _, bytes) = &out[&format!("base_model.model.{module}.{k}")];
        decode(*dtype, bytes)
    };
    (get("lora_A.weight"), get("lora_B.weight"))
}

fn read_output_file(path: &Path) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let buf = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&buf).unwrap();
    st.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect()
}

fn decode(dtype: Dtype, bytes: &[u8]) -> Vec<f64> {
    match dtype {
        Dtype::F32 => bytes.chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(),
        Dtype::BF16 => {
            bytes.chunks(2).map(|b| half::bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()).collect()
        }
        Dtype::F16 => {
            bytes.chunks(2).map(|b| half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()).collect()
        }
        other => panic!("{other}"),
    }
}

/// θ_D with two adaptable weights (f32 and bf16) and an untouched one.
fn theta() -> BTreeMap<String, T> {
    let mut m = BTreeMap::new();
    m.insert("model.layers.0.mlp.down_proj.weight".into(), T::float(Dtype::F32, &[6, 10], values(1, 60)));
    m.insert("model.layers.0.self_attn.q_proj.weight".into(), T::float(Dtype::BF16, &[8, 6], values(2, 48)));
    m.insert("model.norm.weight".into(), T::float(Dtype::F32, &[6], values(3, 6)));
    m
}

#[test]
fn a_lora_task_vector_merged_by_the_streaming_combine_equals_the_dense_product() {
    let root = tempfile::tempdir().unwrap();
    let theta_d = write_state(&root.path().join("d"), &theta(), "d");
    let mods = [("model.layers.0.mlp.down_proj", 6, 10), ("model.layers.0.self_attn.q_proj", 8, 6)];
    let (r, alpha) = (3usize, 6.0f64);
    let forget = write_adapter(&root.path().join("f"), &mods, r, alpha, 7, Dtype::F32);
    let retain = write_adapter(&root.path().join("r"), &mods[..1], r, alpha, 8, Dtype::BF16);
    let (a_coef, b_coef) = (-1.5f64, 0.5f64);
    // small chunks and several threads: element indices cross chunk and row boundaries
    for (chunk_elems, threads) in [(7, 2), (1 << 18, 1)] {
        let out = root.path().join(format!("out-{chunk_elems}"));
        let opts = CombineOptions { chunk_elems, threads, ..Default::default() };
        combine_low_rank(&[(1.0, theta_d.clone())], &[(a_coef, forget.clone()), (b_coef, retain.clone())], &out, &opts)
            .unwrap();
        let got = read_output(&out);
        let base = theta();
        let s = alpha / r as f64;
        for (name, t) in &base {
            let (dtype, shape, bytes) = &got[name];
            assert_eq!((*dtype, shape), (t.dtype, &t.shape), "{name}");
            let got = decode(*dtype, bytes);
            let module = name.strip_suffix(".weight").unwrap();
            let mut reference: Vec<f64> = t.values.iter().map(|v| *v as f64).collect();
            for (c, dir) in [(a_coef, &forget), (b_coef, &retain)] {
                if !read_output_file(&dir.join("adapter_model.safetensors"))
                    .contains_key(&format!("base_model.model.{module}.lora_A.weight"))
                {
                    continue;
                }
                let (a, b) = factors(dir, module);
                let (rows, cols) = (t.shape[0], t.shape[1]);
                for i in 0..rows {
                    for j in 0..cols {
                        let dot: f64 = (0..r).map(|q| b[i * r + q] * a[q * cols + j]).sum();
                        reference[i * cols + j] += c * s * dot;
                    }
                }
            }
            for (k, (g, want)) in got.iter().zip(&reference).enumerate() {
                // one rounding to the stored dtype, plus f32 accumulation
                let tol = match dtype {
                    Dtype::BF16 => want.abs() * 2f64.powi(-8) + 1e-6,
                    _ => want.abs() * 1e-6 + 1e-6,
                };
                assert!((g - want).abs() <= tol, "{name}[{k}] (chunk {chunk_elems}): {g} vs float64 {want}");
            }
            if name == "model.norm.weight" {
                assert_eq!(got, t.values.iter().map(|v| *v as f64).collect::<Vec<_>>(), "untouched tensor copied");
            }
        }
    }
    // thread count and chunking do not change a byte
    assert_eq!(
        std::fs::read(root.path().join("out-7/model.safetensors")).unwrap(),
        std::fs::read(root.path().join("out-262144/model.safetensors")).unwrap()
    );
}

#[test]
fn without_low_rank_terms_the_bytes_are_combines() {
    let root = tempfile::tempdir().unwrap();
    let a = write_state(&root.path().join("a"), &theta(), "a");
    let terms = [(1.0, a.clone()), (-0.25, a.clone())];
    combine(&terms, &root.path().join("x"), &CombineOptions::default()).unwrap();
    combine_low_rank(&terms, &[], &root.path().join("y"), &CombineOptions::default()).unwrap();
    assert_eq!(
        std::fs::read(root.path().join("x/model.safetensors")).unwrap(),
        std::fs::read(root.path().join("y/model.safetensors")).unwrap()
    );
}

#[test]
fn adapters_that_do_not_fit_are_errors_naming_the_weight() {
    let root = tempfile::tempdir().unwrap();
    let theta_d = write_state(&root.path().join("d"), &theta(), "d");
    let opts = CombineOptions::default();
    // a module θ_D does not have
    let missing =
        write_adapter(&root.path().join("m"), &[("model.layers.0.mlp.up_proj", 6, 10)], 2, 4.0, 1, Dtype::F32);
    let e = combine_low_rank(&[(1.0, theta_d.clone())], &[(1.0, missing)], &root.path().join("o1"), &opts).unwrap_err();
    assert!(format!("{e:#}").contains("model.layers.0.mlp.up_proj.weight"), "{e:#}");
    // the wrong shape
    let shape =
        write_adapter(&root.path().join("s"), &[("model.layers.0.mlp.down_proj", 10, 6)], 2, 4.0, 1, Dtype::F32);
    let e = combine_low_rank(&[(1.0, theta_d.clone())], &[(1.0, shape)], &root.path().join("o2"), &opts).unwrap_err();
    assert!(format!("{e:#}").contains("down_proj.weight") && format!("{e:#}").contains("[10, 6]"), "{e:#}");
    assert!(!root.path().join("o2").exists(), "nothing written on error");
    // a config without r
    let bad = write_adapter(&root.path().join("b"), &[("model.layers.0.mlp.down_proj", 6, 10)], 2, 4.0, 1, Dtype::F32);
    std::fs::write(bad.join("adapter_config.json"), "{\"lora_alpha\": 4}").unwrap();
    let e = LowRankDelta::open(&bad).unwrap_err();
    assert!(format!("{e:#}").contains("\"r\""), "{e:#}");
    // rsLoRA's scale
    let rs = write_adapter(&root.path().join("rs"), &[("model.layers.0.mlp.down_proj", 6, 10)], 4, 8.0, 1, Dtype::F32);
    std::fs::write(rs.join("adapter_config.json"), "{\"r\": 4, \"lora_alpha\": 8, \"use_rslora\": true}").unwrap();
    assert_eq!(LowRankDelta::open(&rs).unwrap().scale, 4.0);
}
