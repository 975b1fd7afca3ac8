//! The fused CPU kernels against their compositions from candle's differentiable primitives:
//! forward values and every input's gradient (candle's autograd on the composed graph is the
//! independent reference), on random inputs with a random upstream gradient.

use candle_core::{DType, Device, Tensor, Var};
use lm::fused;

fn rand(shape: &[usize], seed: u64) -> Tensor {
    // a small deterministic LCG, so the test does not depend on candle's RNG
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    d.to_scalar::<f32>().unwrap()
}

/// Runs `f` on fresh variables made from `inputs`, backpropagates Σ f(..)⊙upstream and
/// returns the output and each input's gradient.
fn grads(inputs: &[Tensor], upstream_seed: u64, f: impl Fn(&[Tensor]) -> Tensor) -> (Tensor, Vec<Tensor>) {
    let vars: Vec<Var> = inputs.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = f(&ts);
    let up = rand(y.dims(), upstream_seed);
    let loss = (&y * &up).unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    let gs = ts.iter().map(|t| g.get(t).unwrap().clone()).collect();
    (y, gs)
}

fn check(
    name: &str,
    inputs: &[Tensor],
    fast: impl Fn(&[Tensor]) -> Tensor,
    reference: impl Fn(&[Tensor]) -> Tensor,
    tol: f32,
) {
    let (yf, gf) = grads(inputs, 99, fast);
    let (yr, gr) = grads(inputs, 99, reference);
    let d = max_diff(&yf, &yr);
    assert!(d < tol, "{name}: forward differs by {d}");
    for (i, (a, b)) in gf.iter().zip(&gr).enumerate() {
        let d = max_diff(a, b);
        assert!(d < tol, "{name}: gradient of input {i} differs by {d}");
    }
}

/// The additive attention bias the model builds, (b, 1, t, t): causal (−∞ above the
/// diagonal), and in the second sequence the last `padded` keys masked (−1e9) as padding.
fn causal_bias(b: usize, t: usize, padded: usize) -> Tensor {
    let mut bias = vec![0f32; b * t * t];
    for bi in 0..b {
        for i in 0..t {
            for j in 0..t {
                if j > i {
                    bias[(bi * t + i) * t + j] = f32::NEG_INFINITY;
                } else if bi == 1 && j >= t - padded {
                    bias[(bi * t + i) * t + j] = -1e9;
                }
            }
        }
    }
    Tensor::from_vec(bias, (b, 1, t, t), &Device::Cpu).unwrap()
}

#[test]
fn rms_norm_matches_composition() {
    let x = (rand(&[3, 5, 16], 1) * 3.0).unwrap();
    let w = rand(&[16], 2);
    check(
        "rms_norm",
        &[x, w],
        |t| fused::rms_norm(&t[0], &t[1], 1e-5).unwrap(),
        |t| fused::rms_norm_composed(&t[0], &t[1], 1e-5).unwrap(),
        1e-5,
    );
}

#[test]
fn masked_softmax_matches_composition() {
    let (b, h, t) = (2, 3, 6);
    let scores = (rand(&[b, h, t, t], 3) * 4.0).unwrap();
    // causal plus a padded last key in the second sequence, as the model builds it
    let bias = causal_bias(b, t, 1);
    let shared = bias.narrow(0, 0, 1).unwrap().contiguous().unwrap();
    for bias in [bias, shared] {
        let bias2 = bias.clone();
        check(
            "masked_softmax",
            std::slice::from_ref(&scores),
            move |x| fused::masked_softmax(&x[0], &bias, 0.35).unwrap(),
            move |x| fused::masked_softmax_composed(&x[0], &bias2, 0.35).unwrap(),
            1e-5,
        );
    }
}

#[test]
fn rope_heads_matches_composition() {
    let (b, t, h, d) = (2, 5, 3, 8);
    let x = rand(&[b, t, h * d], 4);
    let ang: Vec<f32> = (0..t).flat_map(|p| (0..d).map(move |j| p as f32 * 0.3 / (1 + j % (d / 2)) as f32)).collect();
    let ang = Tensor::from_vec(ang, (t, d), &Device::Cpu).unwrap();
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    let (c2, s2) = (cos.clone(), sin.clone());
    check(
        "rope_heads",
        std::slice::from_ref(&x),
        move |x| fused::rope_heads(&x[0], h, Some((&cos, &sin))).unwrap(),
        move |x| fused::rope_heads_composed(&x[0], h, Some((&c2, &s2))).unwrap(),
        1e-5,
    );
    // per-row tables (b, t, d): row 1 shifted by 3 positions
    let ang_b: Vec<f32> = (0..b)
        .flat_map(|r| {
            (0..t).flat_map(move |p| (0..d).map(move |j| (p + 3 * r) as f32 * 0.3 / (1 + j % (d / 2)) as f32))
        })
        .collect();
    let ang_b = Tensor::from_vec(ang_b, (b, t, d), &Device::Cpu).unwrap();
    let (cb, sb) = (ang_b.cos().unwrap(), ang_b.sin().unwrap());
    let (cb2, sb2) = (cb.clone(), sb.clone());
    check(
        "rope_heads per row",
        std::slice::from_ref(&x),
        move |x| fused::rope_heads(&x[0], h, Some((&cb, &sb))).unwrap(),
        move |x| fused::rope_heads_composed(&x[0], h, Some((&cb2, &sb2))).unwrap(),
        1e-5,
    );
    check(
        "split_heads",
        &[x],
        |x| fused::rope_heads(&x[0], h, None).unwrap(),
        |x| fused::rope_heads_composed(&x[0], h, None).unwrap(),
        0.0 + f32::MIN_POSITIVE,
    );
}

#[test]
fn silu_mul_matches_composition() {
    let g = (rand(&[4, 7, 12], 5) * 4.0).unwrap();
    let u = rand(&[4, 7, 12], 6);
    check(
        "silu_mul",
        &[g, u],
        |t| fused::silu_mul(&t[0], &t[1]).unwrap(),
        |t| (t[0].silu().unwrap() * &t[1]).unwrap(),
        1e-5,
    );
}

#[test]
fn fallback_for_other_dtypes() {
    // f64 inputs take the composed path and agree with the f32 fused kernel
    let x = rand(&[2, 3, 8], 7);
    let w = rand(&[8], 8);
    let a = fused::rms_norm(&x, &w, 1e-6).unwrap();
    let b = fused::rms_norm(&x.to_dtype(DType::F64).unwrap(), &w.to_dtype(DType::F64).unwrap(), 1e-6).unwrap();
    assert!(max_diff(&a, &b.to_dtype(DType::F32).unwrap()) < 1e-5);
}

#[test]
fn linear_matches_composition() {
    let x = rand(&[3, 5, 16], 9);
    let w = rand(&[24, 16], 10);
    check(
        "linear",
        &[x, w],
        |t| fused::linear(&t[0], &t[1]).unwrap(),
        |t| fused::linear_composed(&t[0], &t[1]).unwrap(),
        1e-5,
    );
    // 300 rows: blocks of 128 rows over the threads, the last one shorter
    let x = rand(&[2, 150, 16], 14);
    let w = rand(&[24, 16], 15);
    check(
        "linear, uneven row blocks",
        &[x, w],
        |t| fused::linear(&t[0], &t[1]).unwrap(),
        |t| fused::linear_composed(&t[0], &t[1]).unwrap(),
        1e-5,
    );
    // a hand-computed 1×2 · (3×2)ᵀ
    let x = Tensor::new(&[[[1f32, 2.0]]], &Device::Cpu).unwrap();
    let w = Tensor::new(&[[1f32, 0.0], [0.5, -1.0], [3.0, 4.0]], &Device::Cpu).unwrap();
    let y = fused::linear(&x, &w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(y, vec![1.0, -1.5, 11.0]);
    assert!(fused::linear(&x, &w.t().unwrap()).is_err(), "a (2, 3) weight takes 3 features, the input has 2");
}

#[test]
fn silu_mul_packed_matches_composition() {
    let gu = (rand(&[4, 7, 24], 11) * 4.0).unwrap();
    check(
        "silu_mul_packed",
        &[gu],
        |t| fused::silu_mul_packed(&t[0]).unwrap(),
        |t| (t[0].narrow(2, 0, 12).unwrap().silu().unwrap() * t[0].narrow(2, 12, 12).unwrap()).unwrap(),
        1e-5,
    );
}

/// The fused attention (rotary split, GQA, mask, softmax, values, merge) against its
/// composition, values and the packed input's gradient, with multi-head and grouped-query
/// heads and a shared or per-sequence (padding) mask.
#[test]
fn causal_attention_matches_composition() {
    use lm::attention::{causal_attention, causal_attention_composed, Heads};
    let (b, t, d) = (2, 7, 8);
    let ang: Vec<f32> = (0..t).flat_map(|p| (0..d).map(move |j| p as f32 * 0.7 / (1 + j % (d / 2)) as f32)).collect();
    let ang = Tensor::from_vec(ang, (t, d), &Device::Cpu).unwrap();
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    let bias = causal_bias(b, t, 2);
    let shared = bias.narrow(0, 0, 1).unwrap().contiguous().unwrap();
    for heads in [Heads { q: 3, kv: 3, dim: d }, Heads { q: 4, kv: 2, dim: d }, Heads { q: 4, kv: 1, dim: d }] {
        let qkv = (rand(&[b, t, (heads.q + 2 * heads.kv) * d], 12) * 2.0).unwrap();
        for bias in [bias.clone(), shared.clone()] {
            let (c, s, m) = (cos.clone(), sin.clone(), bias.clone());
            let (c2, s2, m2) = (cos.clone(), sin.clone(), bias);
            check(
                &format!("causal_attention {heads:?}"),
                std::slice::from_ref(&qkv),
                move |x| causal_attention(&x[0], heads, &c, &s, &m, 0.4).unwrap(),
                move |x| causal_attention_composed(&x[0], heads, &c2, &s2, &m2, 0.4).unwrap(),
                2e-5,
            );
        }
    }
    // shapes that do not fit are errors, not panics
    let qkv = rand(&[b, t, 5 * d], 13);
    assert!(causal_attention(&qkv, Heads { q: 4, kv: 2, dim: d }, &cos, &sin, &bias, 0.4).is_err());
}

/// The fused Llama block (norms, packed q|k|v, attention, output projection, residuals,
/// packed SwiGLU) against the block composed from candle's primitives: values and the
/// gradients of the stream and all nine weights (twelve with Qwen2's q/k/v biases), with
/// multi-head and grouped-query heads and a per-sequence (padding) or shared mask. Then:
/// without any variable no activations are kept and the values are the same; weights of the
/// wrong shape and unusable head layouts are errors naming them.
#[test]
fn llama_block_matches_composition() {
    use lm::attention::{causal_attention_composed, Heads};
    use lm::block::{llama_block, BlockWeights};
    let (b, t, h, d, f) = (2, 6, 32, 8, 48);
    let ang: Vec<f32> = (0..t).flat_map(|p| (0..d).map(move |j| p as f32 * 0.9 / (1 + j % (d / 2)) as f32)).collect();
    let ang = Tensor::from_vec(ang, (t, d), &Device::Cpu).unwrap();
    let (cos, sin) = (ang.cos().unwrap(), ang.sin().unwrap());
    let padded = causal_bias(b, t, 2);
    let shared = padded.narrow(0, 0, 1).unwrap().contiguous().unwrap();
    let eps = 1e-5;
    fn weights(w: &[Tensor], biased: bool, olmo2: bool) -> BlockWeights<'_> {
        let n = if biased { 12 } else { 9 };
        BlockWeights {
            attn_norm: &w[0],
            q: &w[1],
            k: &w[2],
            v: &w[3],
            o: &w[4],
            mlp_norm: &w[5],
            gate: &w[6],
            up: &w[7],
            down: &w[8],
            qkv_bias: if biased { Some([&w[9], &w[10], &w[11]]) } else { None },
            olmo2_qk_norm: if olmo2 { Some([&w[n], &w[n + 1]]) } else { None },
        }
    }
    let (mha, gqa) = (Heads { q: 4, kv: 4, dim: d }, Heads { q: 4, kv: 2, dim: d });
    for (heads, biased, olmo2) in [(mha, false, false), (gqa, false, false), (gqa, true, false), (gqa, false, true)] {
        let (qd, kvd) = (heads.q * d, heads.kv * d);
        let mut shapes: Vec<Vec<usize>> = vec![
            vec![b, t, h],
            vec![h],
            vec![qd, h],
            vec![kvd, h],
            vec![kvd, h],
            vec![h, qd],
            vec![h],
            vec![f, h],
            vec![f, h],
            vec![h, f],
        ];
        if biased {
            shapes.extend([vec![qd], vec![kvd], vec![kvd]]);
        }
        let first_qk_norm = shapes.len();
        if olmo2 {
            shapes.extend([vec![qd], vec![kvd]]);
        }
        let inputs: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let r = rand(s, 40 + i as u64);
                // norms around 1, biases and projections ~ 1/sqrt(fan-in)
                match (i, s.len()) {
                    (0, _) => r,
                    (1 | 6, _) => r.affine(0.3, 1.0).unwrap(),
                    (i, _) if i >= first_qk_norm => r.affine(0.3, 1.0).unwrap(),
                    (_, 1) => (r * 0.3).unwrap(),
                    _ => (r * (2.0 / (s[1] as f64).sqrt())).unwrap(),
                }
            })
            .collect();
        for bias in [padded.clone(), shared.clone()] {
            let (c, s, m) = (cos.clone(), sin.clone(), bias.clone());
            let fast = move |x: &[Tensor]| {
                llama_block(&x[0], &weights(&x[1..], biased, olmo2), heads, &c, &s, &m, eps).unwrap()
            };
            let (c, s, m) = (cos.clone(), sin.clone(), bias.clone());
            let reference = move |x: &[Tensor]| {
                let (w, rms) = (&x[1..], fused::rms_norm_composed);
                let hn = if olmo2 { x[0].clone() } else { rms(&x[0], &w[0], eps).unwrap() };
                let wqkv = Tensor::cat(&[&w[1], &w[2], &w[3]], 0).unwrap();
                let mut qkv = fused::linear_composed(&hn, &wqkv).unwrap();
                if biased {
                    qkv = qkv.broadcast_add(&Tensor::cat(&[&w[9], &w[10], &w[11]], 0).unwrap()).unwrap();
                }
                if olmo2 {
                    let (qn, kn) = (&x[first_qk_norm], &x[first_qk_norm + 1]);
                    let q = rms(&qkv.narrow(2, 0, qd).unwrap(), qn, eps).unwrap();
                    let k = rms(&qkv.narrow(2, qd, kvd).unwrap(), kn, eps).unwrap();
                    qkv = Tensor::cat(&[q, k, qkv.narrow(2, qd + kvd, kvd).unwrap()], 2).unwrap();
                }
                let ao = causal_attention_composed(&qkv, heads, &c, &s, &m, 1.0 / (d as f64).sqrt()).unwrap();
                let o = fused::linear_composed(&ao, &w[4]).unwrap();
                let a = (&x[0] + if olmo2 { rms(&o, &w[0], eps).unwrap() } else { o }).unwrap();
                let hn2 = if olmo2 { a.clone() } else { rms(&a, &w[5], eps).unwrap() };
                let g = fused::linear_composed(&hn2, &w[6]).unwrap();
                let u = fused::linear_composed(&hn2, &w[7]).unwrap();
                let act = (g.silu().unwrap() * u).unwrap();
                let mo = fused::linear_composed(&act, &w[8]).unwrap();
                (&a + if olmo2 { rms(&mo, &w[5], eps).unwrap() } else { mo }).unwrap()
            };
            check(
                &format!("llama_block {heads:?} biases {biased} olmo2 {olmo2} mask {:?}", bias.dims()),
                &inputs,
                &fast,
                &reference,
                2e-4,
            );
            // plain tensors (nothing to differentiate): the same values
            let (yf, _) = grads(&inputs, 99, &fast);
            let plain = fast(&inputs);
            assert_eq!(max_diff(&plain, &yf), 0.0, "llama_block without variables computes different values");
            // one graph differentiated twice gives the same gradients
            let vars: Vec<candle_core::Var> =
                inputs.iter().map(|t| candle_core::Var::from_tensor(t).unwrap()).collect();
            let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
            let loss = fast(&ts).sqr().unwrap().sum_all().unwrap();
            let (g1, g2) = (loss.backward().unwrap(), loss.backward().unwrap());
            for t in &ts {
                assert_eq!(max_diff(g1.get(t).unwrap(), g2.get(t).unwrap()), 0.0, "second backward differs");
            }
        }
        let mut bad = inputs.clone();
        bad[8] = rand(&[f + 1, h], 3);
        let err = llama_block(&bad[0], &weights(&bad[1..], biased, olmo2), heads, &cos, &sin, &padded, eps)
            .unwrap_err()
            .to_string();
        assert!(err.contains("up_proj"), "{err}");
        let odd = Heads { q: 4, kv: 3, dim: d };
        let err = llama_block(&inputs[0], &weights(&inputs[1..], biased, olmo2), odd, &cos, &sin, &padded, eps)
            .unwrap_err()
            .to_string();
        assert!(err.contains("head layout"), "{err}");
        if biased {
            let mut bad = inputs.clone();
            bad[11] = rand(&[kvd + 1], 3);
            let err = llama_block(&bad[0], &weights(&bad[1..], true, olmo2), heads, &cos, &sin, &padded, eps)
                .unwrap_err()
                .to_string();
            assert!(err.contains("k_proj bias"), "{err}");
        }
        if olmo2 {
            let mut bad = inputs.clone();
            bad[first_qk_norm + 1] = rand(&[kvd + 2], 3);
            let err = llama_block(&bad[0], &weights(&bad[1..], biased, true), heads, &cos, &sin, &padded, eps)
                .unwrap_err()
                .to_string();
            assert!(err.contains("k_norm"), "{err}");
        }
    }
}

/// The vectorised exp against f64 `exp` (the exact value rounded once): at most 2 ulp
/// relative error over the finite range, exact zeros and infinities at the ends, NaN kept.
#[test]
fn vectorised_exp_is_within_two_ulp() {
    let mut xs: Vec<f32> = (0..200_001).map(|i| -87.3 + (88.7 + 87.3) * i as f32 / 200_000.0).collect();
    xs.extend([0.0, -0.0, 1.0, -1.0, 1e-8, -1e-8, 0.5 * std::f32::consts::LN_2, 88.72, -87.33]);
    let mut ys = xs.clone();
    fused::exp_in_place(&mut ys);
    let mut worst = 0f64;
    for (&x, &y) in xs.iter().zip(&ys) {
        let want = (x as f64).exp();
        let rel = ((y as f64) - want).abs() / want;
        worst = worst.max(rel);
    }
    assert!(worst < 2.0 * f32::EPSILON as f64, "worst relative error {worst:e} (2 ulp = {:e})", 2.0 * f32::EPSILON);
    let mut ends = vec![f32::NEG_INFINITY, -1000.0, -88.0, 89.0, 1000.0, f32::INFINITY, f32::NAN];
    fused::exp_in_place(&mut ends);
    assert_eq!(&ends[..6], &[0.0, 0.0, 0.0, f32::INFINITY, f32::INFINITY, f32::INFINITY]);
    assert!(ends[6].is_nan());
    assert_eq!(ys[200_001], 1.0, "e^0 = 1 exactly");
}

/// The lane-parallel reductions against f64 sums (lengths with and without a remainder),
/// and softmax rows against the f64 definition, fully masked rows giving zeros.
#[test]
fn vectorised_reductions_and_softmax_match_f64() {
    for n in [0usize, 1, 15, 16, 17, 100, 2048, 2051] {
        let a = rand(&[n.max(1)], n as u64 + 20).flatten_all().unwrap().to_vec1::<f32>().unwrap()[..n].to_vec();
        let b = rand(&[n.max(1)], n as u64 + 40).flatten_all().unwrap().to_vec1::<f32>().unwrap()[..n].to_vec();
        let s: f64 = a.iter().map(|&x| x as f64).sum();
        let d: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let m = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert!((fused::sum(&a) as f64 - s).abs() < 1e-5 * (n as f64).max(1.0), "sum of {n}");
        assert!((fused::dot(&a, &b) as f64 - d).abs() < 1e-5 * (n as f64).max(1.0), "dot of {n}");
        assert_eq!(fused::max(&a), m, "max of {n}");
        let mut p = a.iter().map(|x| x * 5.0).collect::<Vec<f32>>();
        fused::softmax_in_place(&mut p);
        let z: f64 = a.iter().map(|&x| (5.0 * x as f64).exp()).sum();
        for (&x, &pv) in a.iter().zip(&p) {
            assert!(((5.0 * x as f64).exp() / z - pv as f64).abs() < 1e-6, "softmax of {n}");
        }
    }
    let mut masked = vec![f32::NEG_INFINITY; 20];
    fused::softmax_in_place(&mut masked);
    assert!(masked.iter().all(|&v| v == 0.0));
    let mut one = vec![f32::NEG_INFINITY; 37];
    one[33] = -4.0;
    fused::softmax_in_place(&mut one);
    assert_eq!(one[33], 1.0);
    assert_eq!(fused::sum(&one), 1.0);
}

/// The fused output projection + target log-probabilities against `logits` then
/// `target_logprobs`: values, and the gradients of every parameter (tied and untied heads),
/// with a zero upstream gradient on some positions (masked tokens).
#[test]
fn head_logprobs_match_logits_then_target_logprobs() {
    use lm::testing::tiny_config;
    use lm::{Arch, CausalLm};
    for arch in [Arch::Llama, Arch::Qwen2] {
        let cfg = tiny_config(arch);
        let model = CausalLm::init(cfg.clone(), 3, &Device::Cpu, true).unwrap();
        let (b, t) = (2, 6);
        let v = cfg.vocab_size as u32;
        let ids: Vec<u32> = (0..(b * t) as u32).map(|i| (i * 7 + 3) % v).collect();
        let tg: Vec<u32> = (0..(b * t) as u32).map(|i| (i * 5 + 1) % v).collect();
        let ids = Tensor::from_vec(ids, (b, t), &Device::Cpu).unwrap();
        let tg = Tensor::from_vec(tg, (b, t), &Device::Cpu).unwrap();
        let mut up = rand(&[b, t], 77).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        up[2] = 0.0;
        up[9] = 0.0;
        let up = Tensor::from_vec(up, (b, t), &Device::Cpu).unwrap();
        let run = |fused: bool| {
            let hidden = model.hidden(&ids, None).unwrap();
            let lp = if fused {
                model.hidden_target_logprobs(&hidden, &tg).unwrap()
            } else {
                CausalLm::target_logprobs(&model.logits(&hidden).unwrap(), &tg).unwrap()
            };
            let grads = (&lp * &up).unwrap().sum_all().unwrap().backward().unwrap();
            let gs: Vec<Tensor> =
                model.vars().iter().map(|(_, var)| grads.get(var.as_tensor()).unwrap().clone()).collect();
            (lp, gs)
        };
        let (a, ga) = run(true);
        let (r, gr) = run(false);
        assert!(max_diff(&a, &r) < 1e-5, "{arch:?}: log-probs differ by {}", max_diff(&a, &r));
        for ((name, _), (x, y)) in model.vars().iter().zip(ga.iter().zip(&gr)) {
            let d = max_diff(x, y);
            assert!(d < 1e-5, "{arch:?} {name}: gradients differ by {d}");
        }
    }
    // a target outside the vocabulary is an error, not a panic
    let model = CausalLm::init(tiny_config(Arch::Llama), 3, &Device::Cpu, false).unwrap();
    let ids = Tensor::from_vec(vec![1u32, 2], (1, 2), &Device::Cpu).unwrap();
    let bad = Tensor::from_vec(vec![1u32, 1_000_000], (1, 2), &Device::Cpu).unwrap();
    let hidden = model.hidden(&ids, None).unwrap();
    assert!(model.hidden_target_logprobs(&hidden, &bad).is_err());
}

/// What [`whole_model_matches_the_composed_path`] compares, for one architecture and engine:
/// the logits of a right-padded batch, then the loss and every parameter's gradient of
/// next-token cross-entropy on it (names `logits`, `loss`, `grad.<parameter>`).
fn whole_model_outputs(arch: lm::Arch, engine: lm::Engine) -> std::collections::HashMap<String, Tensor> {
    use lm::train::{collate, Example, NextToken, Step, TrainConfig, Trainer};
    let cfg = lm::testing::tiny_config(arch);
    let model = lm::CausalLm::init(cfg.clone(), 11, &Device::Cpu, true).unwrap();
    model.set_engine(engine);
    let v = cfg.vocab_size as u32;
    let rows: Vec<Example> = [9usize, 6, 3]
        .iter()
        .enumerate()
        .map(|(r, &n)| Example::full((0..n as u32).map(|i| (i * 13 + r as u32 * 7 + 1) % v).collect()))
        .collect();
    let refs: Vec<&Example> = rows.iter().collect();
    let batch = collate(&refs, vec![0, 1, 2], 0, &Device::Cpu).unwrap();
    let mut out = std::collections::HashMap::new();
    out.insert("logits".to_string(), model.forward(&batch.inputs, Some(&batch.attention)).unwrap());
    let trainer = Trainer::new(&model, TrainConfig::default(), 1).unwrap();
    let (grads, loss) = trainer.gradients(&NextToken, &[Step { primary: &batch, secondary: None }]).unwrap();
    out.insert("loss".to_string(), Tensor::new(&[loss as f32], &Device::Cpu).unwrap());
    for ((name, _), g) in model.vars().iter().zip(grads) {
        out.insert(format!("grad.{name}"), g);
    }
    out
}

/// The whole tiny model through the fused CPU kernels — the whole-block op
/// ([`lm::Engine::FUSED`]) and the per-operation kernels ([`lm::Engine::FUSED_OPS`]) — against
/// the same model composed from candle's primitives ([`lm::Engine::COMPOSED`]), in one process
/// (the engine is an option of the model): logits, loss and all gradients, for Llama, Qwen2
/// and OLMo-2 (issue 18: the fused kernels' output buffers are no longer uninitialised memory;
/// a kernel that left an element unwritten would show here as NaN, the fill value of
/// [`fused`]'s buffers in test builds).
#[test]
fn whole_model_matches_the_composed_path() {
    for arch in [lm::Arch::Llama, lm::Arch::Qwen2, lm::Arch::Olmo2] {
        let composed = whole_model_outputs(arch, lm::Engine::COMPOSED);
        for engine in [lm::Engine::FUSED, lm::Engine::FUSED_OPS] {
            let fast = whole_model_outputs(arch, engine);
            assert_eq!(fast.len(), composed.len());
            let mut differing = 0;
            for (k, a) in &fast {
                let r = &composed[k];
                let all_finite = a.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|x| x.is_finite());
                assert!(all_finite, "{arch:?} {engine:?} {k}: the fused path gives non-finite values");
                let scale = r.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
                let d = max_diff(a, r);
                // relative to the tensor's largest value (gradients of a tiny model are ~1e-3)
                assert!(
                    d <= 1e-4 * scale.max(1e-6),
                    "{arch:?} {engine:?} {k}: fused and composed differ by {d} (largest |value| {scale})"
                );
                differing += usize::from(d > 0.0);
            }
            // the kernels round differently from candle's: identical outputs would mean the
            // engine option did not switch anything
            assert!(differing > 0, "{arch:?} {engine:?}: bit-identical to the composed path");
        }
    }
}
