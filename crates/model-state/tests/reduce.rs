//! `distance` and `dot_and_norms` against hand computations.

mod common;

use std::collections::BTreeMap;

use common::*;
use model_state::{combine, distance, dot_and_norms, CombineOptions, Dtype};

fn state(dir: &std::path::Path, w: &[f32], v: &[f32], ids: &[i64]) -> std::path::PathBuf {
    let mut m = BTreeMap::new();
    m.insert("w".to_string(), T::float(Dtype::F32, &[3], w.to_vec()));
    m.insert("v".to_string(), T::float(Dtype::BF16, &[2], v.to_vec()));
    m.insert("ids".to_string(), T::i64s(&[2], ids));
    write_state(dir, &m, "x")
}

#[test]
fn distance_and_dot_match_hand_computation() {
    let root = tempfile::tempdir().unwrap();
    // Integer tensors are skipped even when they differ.
    let a = state(&root.path().join("a"), &[1.0, 2.0, 3.0], &[1.5, -2.0], &[0, 1]);
    let b = state(&root.path().join("b"), &[4.0, 6.0, 3.0], &[0.5, 0.0], &[7, 9]);
    // a − b = (−3, −4, 0, 1, −2): ‖·‖² = 9 + 16 + 0 + 1 + 4 = 30.
    assert_eq!(distance(&a, &b).unwrap(), 30f64.sqrt());
    assert_eq!(distance(&a, &a).unwrap(), 0.0);
    // ⟨a, b⟩ = 4 + 12 + 9 + 0.75 + 0 = 25.75; ‖a‖² = 1 + 4 + 9 + 2.25 + 4 = 20.25;
    // ‖b‖² = 16 + 36 + 9 + 0.25 + 0 = 61.25.
    let d = dot_and_norms(&a, &b).unwrap();
    assert_eq!(d.dot, 25.75);
    assert_eq!(d.norm_a, 4.5);
    assert_eq!(d.norm_b, 61.25f64.sqrt());
    assert!((d.cosine() - 25.75 / (4.5 * 61.25f64.sqrt())).abs() < 1e-15);
}

#[test]
fn distance_to_a_combination_is_its_coefficient_times_the_difference() {
    // θ_out = θ_a + 0.5·(θ_b − θ_a) lies halfway: ‖θ_out − θ_a‖ = ½‖θ_b − θ_a‖ (values chosen
    // so that every intermediate is exact in f32 and bf16).
    let root = tempfile::tempdir().unwrap();
    let a = state(&root.path().join("a"), &[1.0, 2.0, 3.0], &[1.5, -2.0], &[0, 1]);
    let b = state(&root.path().join("b"), &[5.0, 6.0, 3.0], &[0.5, 0.0], &[0, 1]);
    let out = root.path().join("mid");
    combine(&[(0.5, a.clone()), (0.5, b.clone())], &out, &CombineOptions::default()).unwrap();
    // b − a = (4, 4, 0, −1, 2): ‖·‖² = 37.
    assert_eq!(distance(&a, &b).unwrap(), 37f64.sqrt());
    assert_eq!(distance(&a, &out).unwrap(), 37f64.sqrt() / 2.0);
}

#[test]
fn layout_mismatch_is_an_error() {
    let root = tempfile::tempdir().unwrap();
    let a = state(&root.path().join("a"), &[1.0, 2.0, 3.0], &[1.5, -2.0], &[0, 1]);
    let mut m = BTreeMap::new();
    m.insert("w".to_string(), T::float(Dtype::F32, &[3], vec![0.0; 3]));
    let b = write_state(&root.path().join("b"), &m, "b");
    let msg = format!("{:#}", distance(&a, &b).unwrap_err());
    assert!(msg.contains("cannot compare") && msg.contains("tensor ids") && msg.contains("missing from"), "{msg}");
}
