//! Each loss on a fixed tiny batch against a hand computation from per-sequence
//! log-probabilities (or, for KL, from the full log-softmax), log σ's numerical stability, and
//! NPO's gradient tending to (scaled) gradient ascent's as β → 0.

mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use grad_ascent::{kl_to_reference, AscentLoss, DifferenceLoss, RetainTerm};
use lm::config::Arch;
use lm::model::log_softmax_last;
use lm::testing::tiny_config;
use lm::train::{collate, sequence_logprobs, Batch, Example, Objective, Step, TrainConfig, Trainer};
use lm::CausalLm;
use npo::{log_sigmoid, reference_logprobs, NpoLoss, SimNpoLoss};
use rmu::{random_direction, RmuLoss};

fn model(seed: u64) -> CausalLm {
    CausalLm::init(tiny_config(Arch::Llama), seed, &Device::Cpu, true).unwrap()
}

fn batch(examples: &[Example], ids: Vec<usize>) -> Batch {
    let refs: Vec<&Example> = examples.iter().collect();
    collate(&refs, ids, tok().pad, &Device::Cpu).unwrap()
}

/// (per-row Σ log p, per-row target count) as f64, computed by hand from the model's raw
/// logits: log p(target) = logit[target] − log Σ exp(logit), in f64, weighted by the mask —
/// independently of the engine's fused `sequence_logprobs` (which the test below checks too).
fn seq(m: &CausalLm, b: &Batch) -> (Vec<f64>, Vec<f64>) {
    let logits =
        m.forward(&b.inputs, Some(&b.attention)).unwrap().to_dtype(DType::F64).unwrap().to_vec3::<f64>().unwrap();
    let targets = b.targets.to_vec2::<u32>().unwrap();
    let mask = b.mask.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap();
    let (mut sums, mut counts) = (vec![], vec![]);
    for r in 0..mask.len() {
        let (mut s, mut n) = (0.0, 0.0);
        for t in 0..mask[r].len() {
            if mask[r][t] == 0.0 {
                continue;
            }
            let row = &logits[r][t];
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
            s += mask[r][t] * (row[targets[r][t] as usize] - lse);
            n += mask[r][t];
        }
        sums.push(s);
        counts.push(n);
    }
    (sums, counts)
}

/// The engine's `sequence_logprobs` (fused on CPU) against the hand computation above.
#[test]
fn sequence_logprobs_match_a_hand_computation_from_logits() {
    let m = model(1);
    let fb = batch(&forget(), vec![0, 1, 2]);
    let (hand_s, hand_n) = seq(&m, &fb);
    let (s, n) = sequence_logprobs(&m, &fb).unwrap();
    let v = |t: Tensor| t.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(v(n), hand_n);
    for (got, want) in v(s).into_iter().zip(hand_s) {
        close(got, want, "Σ log p of a row");
    }
}

fn scalar(t: Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn ln_sigmoid(x: f64) -> f64 {
    -(1.0 + (-x).exp()).ln()
}

#[track_caller]
fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{what}: {got} vs hand computation {want}");
}

fn forget() -> Vec<Example> {
    facts(0..3)
}
fn retain() -> Vec<Example> {
    facts(3..7)
}

#[test]
fn gradient_ascent_and_difference_losses_match_hand_computations() {
    let m = model(1);
    let (fb, rb) = (batch(&forget(), vec![0, 1, 2]), batch(&retain(), vec![0, 1, 2, 3]));
    let step = Step { primary: &fb, secondary: Some(&rb) };
    let (sf, nf) = seq(&m, &fb);
    let (sr, nr) = seq(&m, &rb);
    let nll_f = -sf.iter().sum::<f64>() / nf.iter().sum::<f64>();
    let nll_r = -sr.iter().sum::<f64>() / nr.iter().sum::<f64>();
    assert_eq!(nf, vec![9.0, 10.0, 11.0], "answer tokens only: \" red tea.\", \" blue jam.\", \" gold fish.\"");
    close(scalar(AscentLoss.loss(&m, &step).unwrap()), -nll_f, "GA");
    let gd = DifferenceLoss { lambda: 0.7, retain: RetainTerm::Nll };
    close(scalar(gd.loss(&m, &step).unwrap()), -nll_f + 0.7 * nll_r, "GD (NLL)");
}

#[test]
fn kl_retain_term_matches_a_hand_computation() {
    let (m, r) = (model(1), model(2));
    let rb = batch(&retain(), vec![0, 1, 2, 3]);
    let lp = log_softmax_last(&m.forward(&rb.inputs, Some(&rb.attention)).unwrap()).unwrap().to_vec3::<f32>().unwrap();
    let lq = log_softmax_last(&r.forward(&rb.inputs, Some(&rb.attention)).unwrap()).unwrap().to_vec3::<f32>().unwrap();
    let mask = rb.mask.to_vec2::<f32>().unwrap();
    let (mut num, mut den) = (0f64, 0f64);
    for b in 0..mask.len() {
        for t in 0..mask[b].len() {
            if mask[b][t] == 0.0 {
                continue;
            }
            let kl: f64 = (0..lp[b][t].len())
                .map(|v| (lq[b][t][v] as f64).exp() * (lq[b][t][v] as f64 - lp[b][t][v] as f64))
                .sum();
            num += mask[b][t] as f64 * kl;
            den += mask[b][t] as f64;
        }
    }
    let want = num / den;
    assert!(want > 1e-3, "the two models must differ: KL {want}");
    close(scalar(kl_to_reference(&m, &r, &rb).unwrap()), want, "KL(ref ‖ θ)");
    assert!(scalar(kl_to_reference(&m, &m, &rb).unwrap()).abs() < 1e-5, "KL of a model to itself");
    // inside gradient difference
    let fb = batch(&forget(), vec![0, 1, 2]);
    let (sf, nf) = seq(&m, &fb);
    let gd = DifferenceLoss { lambda: 2.0, retain: RetainTerm::Kl(Box::new(model(2))) };
    let got = scalar(gd.loss(&m, &Step { primary: &fb, secondary: Some(&rb) }).unwrap());
    close(got, sf.iter().sum::<f64>() / nf.iter().sum::<f64>() + 2.0 * want, "GD (KL)");
}

#[test]
fn npo_loss_matches_a_hand_computation_and_indexes_references_by_id() {
    let (m, r) = (model(1), model(2));
    let ex = forget();
    let reference = reference_logprobs(&r, &ex, 2, tok().pad).unwrap();
    // rows 2 and 0 of the data set, in that order: references must follow Batch::ids
    let sub = vec![ex[2].clone(), ex[0].clone()];
    let fb = batch(&sub, vec![2, 0]);
    let (s, _) = seq(&m, &fb);
    let (sref, _) = seq(&r, &batch(&ex, vec![0, 1, 2]));
    for (a, b) in reference.iter().zip(&sref) {
        close(*a, *b, "reference log-probs");
    }
    for beta in [0.1, 1.0] {
        let rows = [(s[0], reference[2]), (s[1], reference[0])];
        let want = -(2.0 / beta) * rows.iter().map(|(lp, lr)| ln_sigmoid(-beta * (lp - lr))).sum::<f64>() / 2.0;
        let loss = NpoLoss { beta, lambda: 0.0, reference: reference.clone() };
        close(scalar(loss.loss(&m, &Step { primary: &fb, secondary: None }).unwrap()), want, "NPO");
        // with a retain term
        let rb = batch(&retain(), vec![0, 1, 2, 3]);
        let (sr, nr) = seq(&m, &rb);
        let loss = NpoLoss { beta, lambda: 0.5, reference: reference.clone() };
        let got = scalar(loss.loss(&m, &Step { primary: &fb, secondary: Some(&rb) }).unwrap());
        close(got, want - 0.5 * sr.iter().sum::<f64>() / nr.iter().sum::<f64>(), "NPO + retain NLL");
    }
    // at θ = π_ref the loss is (2/β)·ln 2 whatever the data
    let at_ref = NpoLoss { beta: 0.1, lambda: 0.0, reference: reference.clone() };
    close(
        scalar(at_ref.loss(&r, &Step { primary: &fb, secondary: None }).unwrap()),
        20.0 * std::f64::consts::LN_2,
        "NPO at the reference",
    );
}

#[test]
fn simnpo_loss_matches_a_hand_computation() {
    let m = model(1);
    let fb = batch(&forget(), vec![0, 1, 2]);
    let rb = batch(&retain(), vec![0, 1, 2, 3]);
    let (s, n) = seq(&m, &fb);
    let (sr, nr) = seq(&m, &rb);
    let nll_r = -sr.iter().sum::<f64>() / nr.iter().sum::<f64>();
    for (beta, gamma, lambda) in [(4.5, 0.0, 0.0), (2.5, 0.5, 1.0)] {
        let f = -(2.0 / beta) * (0..3).map(|i| ln_sigmoid(-(beta / n[i]) * s[i] - gamma)).sum::<f64>() / 3.0;
        let loss = SimNpoLoss { beta, gamma, lambda };
        let got = scalar(loss.loss(&m, &Step { primary: &fb, secondary: Some(&rb) }).unwrap());
        close(got, f + lambda * nll_r, "SimNPO");
    }
}

#[test]
fn log_sigmoid_is_stable() {
    let x = Tensor::new(&[-1000f32, -10.0, 0.0, 10.0, 1000.0], &Device::Cpu).unwrap();
    let y = log_sigmoid(&x).unwrap().to_vec1::<f32>().unwrap();
    // python3: [-math.log1p(math.exp(-x)) if x > -700 else x for x in [-1000, -10, 0, 10, 1000]]
    // -> [-1000.0, -10.000045398899218, -0.6931471805599453, -4.539889921686465e-05, -0.0]
    let want = [-1000.0, -10.000045398899218, -std::f64::consts::LN_2, -4.539889921686465e-05, 0.0];
    for (g, w) in y.iter().zip(want) {
        assert!((*g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()), "log σ: {g} vs {w}");
    }
}

/// As β → 0, NPO's gradient tends to gradient ascent's, scaled.
///
/// With r_i = log π_θ(y_i|x_i) − log π_ref(y_i|x_i) and N rows,
///   L_NPO = −(2/β)·(1/N)·Σ_i log σ(−β·r_i).
/// Since d/dz log σ(z) = σ(−z),
///   ∇L_NPO = −(2/β)·(1/N)·Σ_i σ(β·r_i)·(−β)·∇r_i = (2/N)·Σ_i σ(β·r_i)·∇log π_θ(y_i|x_i),
/// and σ(β·r_i) → 1/2 as β → 0, so ∇L_NPO → (1/N)·Σ_i ∇log π_θ(y_i|x_i).
/// Our gradient ascent loss is −NLL = Σ_i log π_θ(y_i|x_i) / T with T the target tokens of the
/// batch, so ∇L_GA = (1/T)·Σ_i ∇log π_θ(y_i|x_i) and ∇L_NPO → (T/N)·∇L_GA. The error is
/// O(β·|r|): σ(β·r) = 1/2 + β·r/4 + O(β³r³).
#[test]
fn npo_gradient_tends_to_scaled_gradient_ascent_as_beta_goes_to_zero() {
    let (m, r) = (model(1), model(2));
    let ex = forget();
    // a reference that knows the forget set, so that r is far from 0
    let cfg = TrainConfig { lr: 1e-2, epochs: 10, batch_size: 4, warmup_ratio: 0.0, ..Default::default() };
    lm::train::fit(&r, &ex, None, &cfg, &lm::train::NextToken, tok().pad, None).unwrap();
    let fb = batch(&ex, vec![0, 1, 2]);
    let reference = reference_logprobs(&r, &ex, 8, tok().pad).unwrap();
    let (s, n) = seq(&m, &fb);
    let rmax = s.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(rmax > 1.0, "the policy must differ from the reference (|r| = {rmax}) or the limit is trivial");
    let scale = n.iter().sum::<f64>() / n.len() as f64; // T / N
    let t = Trainer::new(&m, TrainConfig::default(), 1).unwrap();
    let step = [Step { primary: &fb, secondary: None }];
    let (ga, _) = t.gradients(&AscentLoss, &step).unwrap();
    let worst = |beta: f64| {
        let (g, _) = t.gradients(&NpoLoss { beta, lambda: 0.0, reference: reference.clone() }, &step).unwrap();
        let mut worst = 0f64;
        for (a, b) in g.iter().zip(&ga) {
            let b = (b * scale).unwrap();
            let d = scalar((a - &b).unwrap().abs().unwrap().max_all().unwrap());
            let s = scalar(b.abs().unwrap().max_all().unwrap());
            worst = worst.max(d / s.max(1e-8));
        }
        worst
    };
    let small = worst(1e-4);
    let large = worst(1.0);
    eprintln!("max relative gradient difference: β = 1e-4: {small:.2e}, β = 1: {large:.2e} (|r| ≤ {rmax:.1})");
    // first-order bound: each row's weight 2σ(β·r_i) is within β·|r_i|/2 of 1; 2e-4 for f32 noise
    let bound = 1e-4 * rmax / 2.0 * 1.5 + 2e-4;
    assert!(small < bound, "β = 1e-4: NPO's gradient differs from (T/N)·GA's by {small} (relative), bound {bound}");
    assert!(large > 1e-2, "β = 1: the gradients should differ clearly, got {large}");
}

/// RMU's loss against a hand computation in f64 from the layer-ℓ activations: the forget
/// term's squared distance to c·u and the retain term's to the reference's activations,
/// both averaged over the non-padding tokens and the features.
#[test]
fn rmu_loss_matches_a_hand_computation() {
    let (m, r) = (model(1), model(2));
    let (fb, rb) = (batch(&forget(), vec![0, 1, 2]), batch(&retain(), vec![0, 1, 2, 3]));
    let h = m.cfg.hidden_size;
    let u = random_direction(h, 5);
    let norm: f64 = u.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6 && u.iter().all(|&x| x >= 0.0), "u is a unit vector in the positive orthant");
    assert_ne!(u, random_direction(h, 6), "u depends on the seed");
    let (c, alpha, layer) = (3.0f64, 400.0, 0usize);
    let acts = |model: &CausalLm, b: &Batch| {
        model.residual_stream(&b.inputs, Some(&b.attention), layer + 1).unwrap().to_vec3::<f32>().unwrap()
    };
    let mse = |a: &Vec<Vec<Vec<f32>>>, target: &dyn Fn(usize, usize, usize) -> f64, att: &Tensor| {
        let att = att.to_vec2::<f32>().unwrap();
        let (mut num, mut n) = (0f64, 0f64);
        for b in 0..att.len() {
            for t in 0..att[b].len() {
                if att[b][t] == 0.0 {
                    continue;
                }
                num += (0..h).map(|j| (a[b][t][j] as f64 - target(b, t, j)).powi(2)).sum::<f64>();
                n += 1.0;
            }
        }
        num / (n * h as f64)
    };
    let af = acts(&m, &fb);
    let forget_term = mse(&af, &|_, _, j| c * u[j] as f64, &fb.attention);
    let (ar, aref) = (acts(&m, &rb), acts(&r, &rb));
    let retain_term = mse(&ar, &|b, t, j| aref[b][t][j] as f64, &rb.attention);
    assert!(retain_term > 1e-4, "the two models must differ: {retain_term}");
    let control = (Tensor::from_vec(u.clone(), h, &Device::Cpu).unwrap() * c).unwrap();
    let loss = RmuLoss { layer, control: control.clone(), alpha, reference: model(2) };
    let got = scalar(loss.loss(&m, &Step { primary: &fb, secondary: Some(&rb) }).unwrap());
    close(got, forget_term + alpha * retain_term, "RMU");
    // α = 0: the forget term alone, no retain batch needed
    let alone = RmuLoss { layer, control, alpha: 0.0, reference: model(2) };
    close(scalar(alone.loss(&m, &Step { primary: &fb, secondary: None }).unwrap()), forget_term, "RMU forget term");
    assert!(
        loss.loss(&m, &Step { primary: &fb, secondary: None }).is_err(),
        "α > 0 without a retain batch is an error"
    );
}

/// Which block RMU steers and which tensors it trains: `depth` scales with the model
/// (WMDP's block 7 of 32 is depth 0.22), the default is a third of the depth, the trained
/// blocks end at ℓ and stop at block 0.
#[test]
fn rmu_plan_resolves_the_layer_and_the_trained_tensors() {
    let names: Vec<String> = (0..32).map(|l| format!("model.layers.{l}.mlp.down_proj.weight")).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let plan = |params: &str, layers: usize| {
        rmu::Rmu::from_params(&params.parse().unwrap()).unwrap().plan(layers, &names).unwrap()
    };
    let down = |ls: &[usize]| ls.iter().map(|l| format!("model.layers.{l}.mlp.down_proj.weight")).collect::<Vec<_>>();
    assert_eq!(plan("depth = 0.22", 32), (7, down(&[5, 6, 7])));
    assert_eq!(plan("depth = 0.22", 2), (0, down(&[0])));
    assert_eq!(plan("", 4), (1, down(&[0, 1])));
    assert_eq!(plan("layer = 3\nupdate_layers = 1", 4), (3, down(&[3])));
    let e = rmu::Rmu::from_params(&"layer = 4".parse().unwrap()).unwrap().plan(4, &names).unwrap_err().to_string();
    assert!(e.contains("layer = 4") && e.contains("4 blocks"), "{e}");
}
