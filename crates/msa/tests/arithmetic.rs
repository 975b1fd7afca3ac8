//! The arithmetic of MSA's variants (`msa::variants::apply`) on tiny checkpoints written here
//! with candle: the retain-orthogonal projection, the top-k trim (with ties) and the per-tensor
//! α by hand on 2×2 examples, every combination against a float64 reference written in this
//! file, and determinism. Inputs and outputs go through candle's safetensors reader, not
//! through `model-state`.

use candle_core::{DType, Device, Tensor};
use msa::variants::{apply, kept_count, AlphaScaling, Member, Shaping, Variant};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

type Values = BTreeMap<String, Vec<f64>>;

/// One tensor to write: name, dtype, shape, values (rounded to the dtype by candle).
struct Spec<'a>(&'a str, DType, &'a [usize], Vec<f64>);

fn write(dir: &Path, specs: &[Spec]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    let mut map = HashMap::new();
    for Spec(name, dtype, shape, v) in specs {
        let t = if *dtype == DType::I64 {
            Tensor::from_vec(v.iter().map(|&x| x as i64).collect::<Vec<_>>(), *shape, &Device::Cpu).unwrap()
        } else {
            Tensor::from_vec(v.clone(), *shape, &Device::Cpu).unwrap().to_dtype(*dtype).unwrap()
        };
        map.insert(name.to_string(), t);
    }
    candle_core::safetensors::save(&map, dir.join("model.safetensors")).unwrap();
    dir.to_path_buf()
}

/// Every tensor of a folder as stored: (dtype, values as f64).
fn read(dir: &Path) -> BTreeMap<String, (DType, Vec<f64>)> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            (n, (t.dtype(), t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()))
        })
        .collect()
}

fn values(dir: &Path) -> Values {
    read(dir).into_iter().map(|(n, (_, v))| (n, v)).collect()
}

/// Half a unit in the last place of `x` in `dtype`.
fn half_ulp(dtype: DType, x: f64) -> f64 {
    let bits = match dtype {
        DType::F32 => 23,
        DType::BF16 => 7,
        DType::F16 => 10,
        _ => return 0.0,
    };
    if x == 0.0 {
        return 0.0;
    }
    2f64.powi(x.abs().log2().floor() as i32 - bits) / 2.0
}

/// `got` is `want` rounded to `dtype`: within `half_ulps` half-units in the last place (1 for
/// one correct rounding) plus `slack` (relative, for f64 noise in the reference).
#[track_caller]
fn assert_rounded(what: &str, dtype: DType, got: &[f64], want: &[f64], half_ulps: f64, slack: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = half_ulps * half_ulp(dtype, *w) * (1.0 + 1e-9) + slack * (1.0 + w.abs());
        assert!((g - w).abs() <= tol, "{what}[{j}]: got {g}, want {w} ({dtype:?}, tolerance {tol:e})");
    }
}

fn member(base: &Path, forget: &Path, retain: Option<&Path>) -> Member {
    Member { base: base.to_path_buf(), forget: Some(forget.to_path_buf()), retain: retain.map(Path::to_path_buf) }
}

fn shaping(variant: Variant, alpha_scaling: AlphaScaling, sparsity: f64) -> Shaping {
    Shaping { variant, alpha_scaling, sparsity }
}

const DTYPES: [DType; 2] = [DType::F32, DType::BF16];

#[test]
fn orthogonal_projection_by_hand_on_a_2x2_tensor() {
    // θ_0 = 1, τ_f = [[1, 2], [3, 4]], τ_r = I: ⟨τ_f, τ_r⟩ = 5, ‖τ_r‖² = 2, c = 2.5,
    // τ_f' = τ_f − 2.5·I = [[−1.5, 2], [3, 1.5]] (⟨τ_f', τ_r⟩ = −1.5 + 1.5 = 0).
    // θ = θ_D − 1·τ_f' + 0.5·τ_r with θ_D = 10: [[12, 8], [7, 9]].
    // Tensor b has τ_r = 0 (θ_2 = θ_0), so it keeps τ_f = [1, 1]: θ = [1, 2] − [1, 1] = [0, 1].
    for dtype in DTYPES {
        let root = tempfile::tempdir().unwrap();
        let st = |name: &str, a: [f64; 4], b: [f64; 2]| {
            write(&root.path().join(name), &[Spec("a", dtype, &[2, 2], a.to_vec()), Spec("b", dtype, &[2], b.to_vec())])
        };
        let d = st("d", [10.0; 4], [1.0, 2.0]);
        let t0 = st("t0", [1.0; 4], [0.0, 0.0]);
        let t1 = st("t1", [2.0, 3.0, 4.0, 5.0], [1.0, 1.0]);
        let t2 = st("t2", [2.0, 1.0, 1.0, 2.0], [0.0, 0.0]);
        let out = root.path().join("out");
        let s = shaping(Variant::Orthogonal, AlphaScaling::Uniform, 1.0);
        let a = apply(&d, &[member(&t0, &t1, Some(&t2))], 1.0, 0.5, &s, &out).unwrap();
        let got = read(&out);
        assert_eq!(got["a"], (dtype, vec![12.0, 8.0, 7.0, 9.0]), "{dtype:?}");
        assert_eq!(got["b"], (dtype, vec![0.0, 1.0]), "{dtype:?}");
        assert_eq!(a.passes, 2, "projection coefficients, then the write");
        // ‖τ_f − τ_f'‖ = ‖2.5·I‖ = 2.5·√2; ‖τ_f‖² = 30 + 2 = 32
        assert!((a.projection_removed.unwrap() - 2.5 * 2f64.sqrt() / 32f64.sqrt()).abs() < 1e-15);
        // β = 0: θ_2 still shapes τ_f (it is needed even then)
        let a = apply(&d, &[member(&t0, &t1, Some(&t2))], 1.0, 0.0, &s, &out).unwrap();
        assert_eq!(read(&out)["a"].1, vec![11.5, 8.0, 7.0, 8.5]);
        assert_eq!(a.passes, 2);
        let e = format!("{:#}", apply(&d, &[member(&t0, &t1, None)], 1.0, 0.0, &s, &out).unwrap_err());
        assert!(e.contains("retain fine-tune"), "{e}");
    }
}

#[test]
fn top_k_trim_by_hand_with_ties_broken_by_index() {
    // sparsity 0.3: a (n = 4) keeps ⌈1.2⌉ = 2 entries, b (n = 10) keeps 3 (0.3·10 is
    // 3.0000000000000004 in floating point), c (n = 4, all equal) keeps 2.
    // a: τ_f = [[2, −3], [2, 1]] keeps −3 and the FIRST 2 (index 0 before index 2).
    // b: τ_f = [1, −2, 3, …, −10]·0.5 keeps the three largest |·|: indices 7, 8, 9.
    // c: τ_f = [5, −5, 5, −5] keeps indices 0 and 1.
    assert_eq!(kept_count(0.3, 10), 3);
    assert_eq!(kept_count(0.3, 4), 2);
    assert_eq!(kept_count(1e-9, 4), 1);
    assert_eq!(kept_count(0.5, 7), 4);
    assert_eq!(kept_count(1.0, 7), 7);
    assert_eq!(kept_count(0.5, 0), 0);
    for dtype in DTYPES {
        let root = tempfile::tempdir().unwrap();
        let b_tau: Vec<f64> = (1..=10).map(|i| if i % 2 == 0 { -0.5 * i as f64 } else { 0.5 * i as f64 }).collect();
        let st = |name: &str, a: Vec<f64>, b: Vec<f64>, c: Vec<f64>| {
            write(
                &root.path().join(name),
                &[Spec("a", dtype, &[2, 2], a), Spec("b", dtype, &[10], b), Spec("c", dtype, &[4], c)],
            )
        };
        let d = st("d", vec![10.0; 4], vec![0.0; 10], vec![1.0; 4]);
        let t0 = st("t0", vec![0.0; 4], vec![0.0; 10], vec![0.0; 4]);
        let t1 = st("t1", vec![2.0, -3.0, 2.0, 1.0], b_tau.clone(), vec![5.0, -5.0, 5.0, -5.0]);
        let out = root.path().join("out");
        let s = shaping(Variant::Plain, AlphaScaling::Uniform, 0.3);
        let a = apply(&d, &[member(&t0, &t1, None)], 1.0, 0.0, &s, &out).unwrap();
        let got = values(&out);
        assert_eq!(got["a"], vec![8.0, 13.0, 10.0, 10.0], "{dtype:?}");
        let mut want_b = vec![0.0; 10];
        for i in 7..10 {
            want_b[i] = -b_tau[i];
        }
        assert_eq!(got["b"], want_b, "{dtype:?}");
        assert_eq!(got["c"], vec![-4.0, 6.0, 1.0, 1.0], "{dtype:?}");
        assert_eq!(a.passes, 2, "thresholds, then the write");
        // kept ‖·‖² = (9 + 4) + (16 + 20.25 + 25) + 50 over all = 18 + 96.25 + 100
        let kept = (13.0f64 + 61.25 + 50.0) / (18.0 + 96.25 + 100.0);
        assert!((a.trim_kept_norm.unwrap() - kept.sqrt()).abs() < 1e-15);
    }
}

#[test]
fn norm_share_alpha_by_hand_with_two_tensors() {
    // τ_f,a = [3, 4] (norm 5), τ_f,b = [0, 0, 12, 0] (norm 12); ‖τ_f‖ = 13, T = 2, α = 1.3:
    // α_a = 1.3·√2·5/13 = 0.5·√2, α_b = 1.3·√2·12/13 = 1.2·√2; (α_a² + α_b²)/2 = 0.25 + 1.44 = 1.69 = α².
    // θ_D = 1, θ_0 = 0: θ_a = 1 − 0.5·√2·[3, 4], θ_b = 1 − 1.2·√2·[0, 0, 12, 0].
    for dtype in DTYPES {
        let root = tempfile::tempdir().unwrap();
        let st = |name: &str, a: Vec<f64>, b: Vec<f64>| {
            write(&root.path().join(name), &[Spec("a", dtype, &[2], a), Spec("b", dtype, &[2, 2], b)])
        };
        let d = st("d", vec![1.0; 2], vec![1.0; 4]);
        let t0 = st("t0", vec![0.0; 2], vec![0.0; 4]);
        let t1 = st("t1", vec![3.0, 4.0], vec![0.0, 0.0, 12.0, 0.0]);
        let out = root.path().join("out");
        let s = shaping(Variant::Plain, AlphaScaling::NormShare, 1.0);
        let a = apply(&d, &[member(&t0, &t1, None)], 1.3, 0.0, &s, &out).unwrap();
        let r2 = 2f64.sqrt();
        let got = values(&out);
        assert_rounded("a", dtype, &got["a"], &[1.0 - 0.5 * r2 * 3.0, 1.0 - 0.5 * r2 * 4.0], 1.0, 1e-15);
        assert_rounded("b", dtype, &got["b"], &[1.0, 1.0, 1.0 - 1.2 * r2 * 12.0, 1.0], 1.0, 1e-15);
        let (lo, hi) = a.alpha_range.unwrap();
        assert!((lo - 0.5 * r2).abs() < 1e-15 && (hi - 1.2 * r2).abs() < 1e-15, "{lo} {hi}");
        assert!(((lo * lo + hi * hi) / 2.0 - 1.3 * 1.3).abs() < 1e-14);
        assert_eq!(a.passes, 2);
    }
}

// ------------------------------------------------------------------ against a reference

/// Deterministic values in [-2, 2) on a grid of `step` (coarse steps make many ties).
fn pseudo(seed: u64, n: usize, step: f64) -> Vec<f64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            ((u * 4.0 - 2.0) / step).floor() * step
        })
        .collect()
}

const BIG: usize = 300_000; // more than one streaming chunk (2¹⁸ elements)

/// The tensors of model `seed`; `role` 1/2 (θ_1/θ_2) keep θ_0's values in one tensor each,
/// so τ_f is zero in `e.still` and τ_r is zero in `d.frozen`.
fn model(seed: u64, base: Option<&Values>, role: u8) -> Vec<Spec<'static>> {
    let v = |name: &'static str, dtype: DType, shape: &'static [usize], step: f64| {
        let n = shape.iter().product();
        let same = (role == 1 && name == "e.still") || (role == 2 && name == "d.frozen");
        let vals = match base {
            Some(b) if same => b[name].clone(),
            _ => pseudo(seed * 31 + name.len() as u64, n, step),
        };
        Spec(name, dtype, shape, vals)
    };
    vec![
        v("a.weight", DType::F32, &[4, 5], 1e-3),
        v("b.bias", DType::BF16, &[7], 1.0 / 64.0),
        v("c.big", DType::F32, &[BIG], 0.25),
        v("d.frozen", DType::F32, &[3], 1e-3),
        v("e.still", DType::BF16, &[2], 1.0 / 64.0),
        Spec("ids", DType::I64, &[3], vec![3.0, 1.0, 4.0]),
    ]
}

/// θ by the module's formulas, straight-line in f64 from the stored inputs.
fn reference(
    d: &Values,
    members: &[(Values, Values, Values)],
    alpha: f64,
    beta: f64,
    s: &Shaping,
    k_of: impl Fn(usize) -> usize,
) -> Values {
    let e = members.len() as f64;
    let floats: Vec<&String> = d.keys().filter(|n| *n != "ids").collect();
    let t = floats.len() as f64;
    let mut shaped: BTreeMap<&String, (Vec<f64>, Vec<f64>)> = BTreeMap::new(); // (τ_f'', τ_r)
    for name in &floats {
        let n = d[*name].len();
        let mut tf = vec![0.0; n];
        let mut tr = vec![0.0; n];
        for j in 0..n {
            for (m0, m1, m2) in members {
                tf[j] += m1[*name][j] - m0[*name][j];
                tr[j] += m2[*name][j] - m0[*name][j];
            }
            tf[j] /= e;
            tr[j] /= e;
        }
        if s.variant == Variant::Orthogonal {
            let fr: f64 = (0..n).map(|j| tf[j] * tr[j]).fold(0.0, |a, x| a + x);
            let rr: f64 = (0..n).map(|j| tr[j] * tr[j]).fold(0.0, |a, x| a + x);
            if rr > 0.0 {
                let c = fr / rr;
                tf.iter_mut().zip(&tr).for_each(|(f, r)| *f -= c * r);
            }
        }
        let k = k_of(n);
        let mut idx: Vec<usize> = (0..n).collect();
        idx.sort_by(|&i, &j| tf[j].abs().total_cmp(&tf[i].abs()).then(i.cmp(&j)));
        for &i in &idx[k..] {
            tf[i] = 0.0;
        }
        shaped.insert(name, (tf, tr));
    }
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let total = shaped.values().map(|(f, _)| norm(f).powi(2)).sum::<f64>().sqrt();
    let mut out = Values::new();
    for (name, (tf, tr)) in shaped {
        let a = match s.alpha_scaling {
            AlphaScaling::Uniform => alpha,
            AlphaScaling::NormShare if total == 0.0 => 0.0,
            AlphaScaling::NormShare => alpha * t.sqrt() * norm(&tf) / total,
        };
        out.insert(name.clone(), (0..tf.len()).map(|j| d[name][j] - a * tf[j] + beta * tr[j]).collect());
    }
    out
}

#[test]
fn every_variant_matches_a_float64_reference_and_is_deterministic() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    let d = write(&p.join("d"), &model(1, None, 0));
    let mut dirs = vec![];
    for i in 0..2u64 {
        let t0 = write(&p.join(format!("t0_{i}")), &model(10 + i, None, 0));
        let v0 = values(&t0);
        let t1 = write(&p.join(format!("t1_{i}")), &model(20 + i, Some(&v0), 1));
        let t2 = write(&p.join(format!("t2_{i}")), &model(30 + i, Some(&v0), 2));
        dirs.push((t0, t1, t2));
    }
    let vd = values(&d);
    let vals: Vec<(Values, Values, Values)> = dirs.iter().map(|(a, b, c)| (values(a), values(b), values(c))).collect();
    let dtypes: BTreeMap<String, DType> = read(&d).into_iter().map(|(n, (t, _))| (n, t)).collect();
    let (alpha, beta) = (0.75, 0.5);
    let mut checked = 0;
    for variant in [Variant::Plain, Variant::Orthogonal] {
        for scaling in [AlphaScaling::Uniform, AlphaScaling::NormShare] {
            // 0.4 = 2/5: the reference counts ⌈2n/5⌉ with integers
            for (sparsity, k_of) in [(1.0, (|n| n) as fn(usize) -> usize), (0.4, |n: usize| (2 * n).div_ceil(5))] {
                for e in [1usize, 2] {
                    let s = shaping(variant, scaling, sparsity);
                    let members: Vec<Member> = dirs[..e].iter().map(|(a, b, c)| member(a, b, Some(c))).collect();
                    let out = p.join(format!("out-{checked}"));
                    let applied = apply(&d, &members, alpha, beta, &s, &out).unwrap();
                    let want = reference(&vd, &vals[..e], alpha, beta, &s, k_of);
                    let got = read(&out);
                    let what = format!("{variant:?} {scaling:?} sparsity {sparsity} E = {e}");
                    // The linear case is one combine accumulating in f32 (a few f32 roundings, then
                    // one to the dtype, which can land one unit off); the others round once from f64.
                    let (half_ulps, slack) = if s.is_linear() { (2.0, 1e-6) } else { (1.0, 1e-13) };
                    for (name, w) in &want {
                        let (dt, g) = &got[name];
                        assert_eq!(dt, &dtypes[name], "{what}: {name}");
                        assert_rounded(&format!("{what}: {name}"), *dt, g, w, half_ulps, slack);
                    }
                    assert_eq!(got["ids"], (DType::I64, vec![3.0, 1.0, 4.0]), "{what}: copied");
                    let passes = 1
                        + usize::from(variant == Variant::Orthogonal)
                        + usize::from(sparsity < 1.0 || scaling == AlphaScaling::NormShare);
                    assert_eq!(applied.passes, passes, "{what}");
                    assert_eq!(applied.terms.is_some(), s.is_linear(), "{what}");
                    // determinism: a second run writes the same bytes
                    let again = p.join(format!("again-{checked}"));
                    apply(&d, &members, alpha, beta, &s, &again).unwrap();
                    assert_eq!(
                        std::fs::read(out.join("model.safetensors")).unwrap(),
                        std::fs::read(again.join("model.safetensors")).unwrap(),
                        "{what}: not deterministic"
                    );
                    std::fs::remove_dir_all(&again).unwrap();
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 16);
    // The trim of c.big really cut through ties across the chunk boundary: at 0.25 steps
    // τ_f takes few distinct values, so the threshold value occurs many times.
    let tf: Vec<f64> = (0..BIG).map(|j| (vals[0].1["c.big"][j] - vals[0].0["c.big"][j]).abs()).collect();
    let mut sorted = tf.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let v = sorted[(2 * BIG).div_ceil(5) - 1];
    let ties = tf.iter().filter(|&&x| x == v).count();
    let last_tie = tf.iter().rposition(|&x| x == v).unwrap();
    assert!(ties > 1000 && last_tie > (1 << 18), "ties {ties}, last at {last_tie}");
}

#[test]
fn alpha_zero_is_theta_d_plus_beta_tau_r_whatever_the_shaping() {
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    let d = write(&p.join("d"), &model(1, None, 0));
    let t0 = write(&p.join("t0"), &model(2, None, 0));
    let t2 = write(&p.join("t2"), &model(3, None, 0));
    let plain = p.join("plain");
    let m = Member { base: t0.clone(), forget: None, retain: Some(t2.clone()) };
    apply(&d, std::slice::from_ref(&m), 0.0, 0.5, &Shaping::default(), &plain).unwrap();
    let s = shaping(Variant::Orthogonal, AlphaScaling::NormShare, 0.1);
    let shaped = p.join("shaped");
    let a = apply(&d, &[m], 0.0, 0.5, &s, &shaped).unwrap();
    assert_eq!(a.passes, 1);
    assert_eq!(
        std::fs::read(plain.join("model.safetensors")).unwrap(),
        std::fs::read(shaped.join("model.safetensors")).unwrap()
    );
}
