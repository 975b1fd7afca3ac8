//! Arithmetic on bf16 checkpoints (MSA's θ_D + α·τ_f − β·τ_r and task negation on models
//! loaded and saved in bf16) against a float64 reference: every output value is the float64
//! combination of the stored bf16 values, rounded once to bf16, give or take the f32
//! accumulation (at most one bf16 step, and exact for nearly all values).

mod common;

use common::*;
use half::bf16;
use model_state::{combine, CombineOptions, Dtype};
use std::collections::BTreeMap;

fn bf16_model(seed: u64) -> BTreeMap<String, T> {
    let mut m = BTreeMap::new();
    m.insert("model.embed_tokens.weight".to_string(), T::float(Dtype::BF16, &[16, 8], values(seed, 128)));
    m.insert(
        "model.layers.0.mlp.down_proj.weight".to_string(),
        T::float(Dtype::BF16, &[8, 24], values(seed + 100, 192)),
    );
    m.insert("model.norm.weight".to_string(), T::float(Dtype::BF16, &[8], values(seed + 200, 8)));
    m
}

#[test]
fn bf16_combination_matches_a_float64_reference() {
    let root = tempfile::tempdir().unwrap();
    // θ_D, θ_f, θ_r, θ_0: out = θ_D + α(θ_0 − θ_f) − β(θ_r − θ_0) written as Σ cᵢ θᵢ
    let (alpha, beta) = (0.75f64, 0.3f64);
    let coefs = [1.0, -alpha, -beta, alpha + beta];
    let models: Vec<_> = (0..4).map(|i| bf16_model(10 + i as u64)).collect();
    let terms: Vec<(f64, std::path::PathBuf)> = models
        .iter()
        .enumerate()
        .map(|(i, m)| (coefs[i], write_state(&root.path().join(format!("m{i}")), m, &format!("m{i}"))))
        .collect();
    let out = root.path().join("out");
    combine(&terms, &out, &CombineOptions::default()).unwrap();
    let got = read_output(&out);
    let (mut exact, mut total) = (0usize, 0usize);
    for (name, t) in &models[0] {
        let (dtype, shape, bytes) = &got[name];
        assert_eq!((*dtype, shape), (Dtype::BF16, &t.shape), "{name}: the output keeps the inputs' dtype");
        let out_vals: Vec<f32> =
            bytes.chunks(2).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect();
        for (k, got) in out_vals.iter().enumerate() {
            let reference: f64 = models.iter().zip(coefs).map(|(m, c)| c * m[name].values[k] as f64).sum();
            let rounded = bf16::from_f64(reference).to_f32();
            total += 1;
            if *got == rounded {
                exact += 1;
                continue;
            }
            // f32 accumulation can land on the other side of a bf16 rounding boundary: one step
            let step = (bf16::from_f32(rounded).to_bits() as i32 - bf16::from_f32(*got).to_bits() as i32).abs();
            assert!(step <= 1, "{name}[{k}]: {got} vs float64 reference {reference} (bf16 {rounded})");
            assert!(((*got as f64) - reference).abs() <= reference.abs() * 2f64.powi(-7) + 1e-30, "{name}[{k}]");
        }
    }
    println!("{exact} of {total} values equal the float64 reference rounded to bf16");
    assert!(exact as f64 >= 0.97 * total as f64, "only {exact} of {total} exact");
}
