//! End-to-end: each gradient method, built from the registry, lowers the forget
//! log-likelihood of a tiny model that learned eight synthetic facts; gradient difference keeps
//! the retain NLL within a stated bound; a diverging run fails cleanly.

mod common;
use common::*;
use unlearn::Context;

fn table(s: &str) -> toml::Table {
    s.parse().unwrap()
}

#[test]
fn gradient_methods_forget_and_gradient_difference_keeps_retain() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = std::time::Instant::now();
    let theta_d = trained_world(dir.path());
    eprintln!("world trained in {:.1}s", t0.elapsed().as_secs_f64());
    let forget = facts(0..2);
    let retain = facts(2..8);
    let (f0, r0) = (mean_nll(&theta_d, &forget), mean_nll(&theta_d, &retain));
    eprintln!("theta_D: forget NLL {f0:.3}, retain NLL {r0:.3}");
    assert!(f0 < 0.5 && r0 < 0.5, "the world model must know its facts first: {f0} {r0}");
    let cases = [
        ("gradient_ascent", "lr = 1e-3\nepochs = 30"),
        ("gradient_difference", "lr = 1e-3\nepochs = 30\nlambda = 1.0"),
        ("gradient_difference", "lr = 1e-3\nepochs = 30\nlambda = 1.0\nretain_loss = \"kl\""),
        ("npo", "lr = 1e-3\nepochs = 30\nbeta = 0.1"),
        ("npo", "lr = 1e-3\nepochs = 30\nbeta = 0.1\nlambda = 1.0"),
        ("simnpo", "lr = 1e-3\nepochs = 30\nlambda = 1.0"),
        ("msa", "alpha = 2.0\nlr = 1e-2\nepochs = 30"),
        ("task_negation", "alpha = 2.0\nlr = 1e-2\nepochs = 30"),
    ];
    // θ_D's initialisation is the world's clean checkpoint (step 0) for MSA
    let ledger = [unlearn::CheckpointInfo { step: 0, path: dir.path().join("init"), clean: true }];
    let mut ga_retain = f64::NAN;
    for (i, (kind, params)) in cases.iter().enumerate() {
        let (m, train) = build(kind, params).unwrap();
        let out = dir.path().join(format!("out{i}"));
        let cache = dir.path().join("cache");
        let c = Context { train, ..ctx(&theta_d, &ledger, &forget, &retain, &cache, &out) };
        let t = std::time::Instant::now();
        let rep = m.run(&c).unwrap();
        let (f, r) = (mean_nll(&out, &forget), mean_nll(&out, &retain));
        eprintln!(
            "{kind} {params:?}: forget NLL {f0:.3} -> {f:.3}, retain {r0:.3} -> {r:.3} ({} steps, {:.2}s)",
            rep.loss_curve.len(),
            t.elapsed().as_secs_f64()
        );
        assert!(f > f0 + 1.0, "{kind} ({params}): forget NLL only went {f0} -> {f}");
        if *kind == "gradient_ascent" {
            ga_retain = r;
        }
        // compute accounting: every method records the tokens it trained on; a gradient
        // method without a retain term trains on the forget set once per epoch (30 epochs)
        let tokens = rep.timings["count/finetune_tokens"];
        let forget_tokens: usize = forget.iter().map(|e| e.tokens.len()).sum();
        if !params.contains("lambda") && !matches!(*kind, "msa" | "task_negation") {
            assert_eq!(tokens, (30 * forget_tokens) as f64, "{kind} ({params})");
        } else {
            assert!(
                tokens > (30 * forget_tokens) as f64 - 0.5 || matches!(*kind, "msa" | "task_negation"),
                "{kind} ({params}): {tokens}"
            );
            assert!(tokens > 0.0, "{kind} ({params})");
        }
        if params.contains("lambda") {
            // stated bound: with a retain term the retain NLL stays within 0.5 nat/token of
            // θ_D's, and below half of what plain gradient ascent leaves
            assert!(r < r0 + 0.5 && r < 0.5 * ga_retain, "{kind} ({params}): retain NLL {r0} -> {r} (GA: {ga_retain})");
        }
    }
}

/// RMU from the registry: only the down projections of the blocks up to ℓ change (every
/// other tensor is θ_D's, bit for bit), the forget activations at ℓ move towards c·u, the
/// retain activations stay near θ_D's, and the forget answers become unlikely.
#[test]
fn rmu_misdirects_forget_activations_and_trains_only_its_layers() {
    let dir = tempfile::tempdir().unwrap();
    let theta_d = trained_world(dir.path());
    let (forget, retain) = (facts(0..2), facts(2..8));
    let (m, train) =
        build("rmu", "lr = 1e-2\nepochs = 60\nlayer = 1\nupdate_layers = 2\nsteering_coeff = 5.0\nalpha = 10.0")
            .unwrap();
    let out = dir.path().join("out_rmu");
    let cache = dir.path().join("cache");
    let rep = m.run(&Context { train: train.clone(), ..ctx(&theta_d, &[], &forget, &retain, &cache, &out) }).unwrap();
    // same config and seed: the same model, bit for bit
    let again = dir.path().join("out_rmu_again");
    m.run(&Context { train, ..ctx(&theta_d, &[], &forget, &retain, &cache, &again) }).unwrap();
    assert_same_bits(&out, &again);
    let trained = ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"];
    assert_eq!(rep.notes["trained"], serde_json::json!(trained));
    let (before, after) = (tensors(&theta_d), tensors(&out));
    for (name, t) in &before {
        let same = flat(t).iter().zip(flat(&after[name])).all(|(a, b)| a.to_bits() == b.to_bits());
        assert_eq!(same, !trained.contains(&name.as_str()), "{name}: changed = {}", !same);
    }
    // activations at ℓ = 1, distance to c·u (forget) and to θ_D (retain), per token and feature
    let load = |d: &std::path::Path| lm::CausalLm::load(d, &candle_core::Device::Cpu, false).unwrap();
    let (m0, m1) = (load(&theta_d), load(&out));
    let acts = |m: &lm::CausalLm, ex: &[lm::train::Example]| {
        let refs: Vec<&lm::train::Example> = ex.iter().collect();
        let b = lm::train::collate(&refs, (0..ex.len()).collect(), tok().pad, &candle_core::Device::Cpu).unwrap();
        (m.residual_stream(&b.inputs, Some(&b.attention), 2).unwrap(), b.attention)
    };
    let u = rmu::random_direction(m0.cfg.hidden_size, 7); // ctx's seed
    let control =
        (candle_core::Tensor::from_vec(u, m0.cfg.hidden_size, &candle_core::Device::Cpu).unwrap() * 5.0).unwrap();
    let dist = |a: &candle_core::Tensor, target: &candle_core::Tensor, att: &candle_core::Tensor| {
        rmu::masked_mse(a, target, att).unwrap().to_scalar::<f32>().unwrap() as f64
    };
    let ((f0, fa), (f1, _)) = (acts(&m0, &forget), acts(&m1, &forget));
    let (d0, d1) = (dist(&f0, &control, &fa), dist(&f1, &control, &fa));
    let ((r0, ra), (r1, _)) = (acts(&m0, &retain), acts(&m1, &retain));
    let drift = dist(&r1, &r0, &ra);
    let (n0, n1) = (mean_nll(&theta_d, &forget), mean_nll(&out, &forget));
    let (k0, k1) = (mean_nll(&theta_d, &retain), mean_nll(&out, &retain));
    eprintln!("rmu: forget distance to c·u {d0:.3} -> {d1:.3}, retain drift {drift:.4}, forget NLL {n0:.3} -> {n1:.3}, retain NLL {k0:.3} -> {k1:.3}");
    assert!(k1 < k0 + 0.5, "retain NLL went {k0} -> {k1}");
    assert!(d1 < 0.5 * d0, "forget activations did not move towards c·u: {d0} -> {d1}");
    assert!(drift < 0.05 * d0, "retain activations drifted by {drift} (forget distance was {d0})");
    assert!(n1 > n0 + 1.0, "forget NLL only went {n0} -> {n1}");
    // what does not fit the model is an error naming it
    let bad = methods::build("rmu", &table("layer = 9")).unwrap();
    let e =
        format!("{:#}", bad.run(&ctx(&theta_d, &[], &forget, &retain, &cache, &dir.path().join("bad"))).unwrap_err());
    assert!(e.contains("layer = 9") && e.contains("blocks"), "{e}");
    let bad = methods::build("rmu", &table("params = [\"mlp.nope.weight\"]")).unwrap();
    let e =
        format!("{:#}", bad.run(&ctx(&theta_d, &[], &forget, &retain, &cache, &dir.path().join("bad"))).unwrap_err());
    assert!(e.contains("mlp.nope.weight"), "{e}");
}

#[test]
fn a_diverging_run_names_the_method_and_step_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let theta_d = tiny(&dir.path().join("theta_d"), 1);
    let (forget, retain) = (facts(0..4), facts(4..8));
    for (kind, params) in [
        ("gradient_ascent", "lr = 1e30\nepochs = 3"),
        ("npo", "lr = 1e30\nepochs = 3"),
        ("msa", "lr = 1e30\nepochs = 3\ncheckpoint = \"path:THETA\""),
    ] {
        let params = params.replace("THETA", &theta_d.to_string_lossy());
        let out = dir.path().join(format!("out_{kind}"));
        let cache = dir.path().join("cache");
        let (m, train) = build(kind, &params).unwrap();
        let c = Context { train, ..ctx(&theta_d, &[], &forget, &retain, &cache, &out) };
        let e = format!("{:#}", m.run(&c).unwrap_err());
        eprintln!("{kind}: {e}");
        assert!(e.contains(&format!("method {kind}")) && e.contains("non-finite") && e.contains("step"), "{kind}: {e}");
        assert!(!out.exists(), "{kind} left {}", out.display());
        // nor a half-trained vector in MSA's cache
        let leftovers: Vec<_> =
            std::fs::read_dir(&cache).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(leftovers.is_empty(), "{kind} left {leftovers:?} in the cache");
    }
}
