//! Pretraining a scratch world: determinism, the oracle restart equals a run from scratch
//! (prefix identity), half-written worlds are rebuilt, the ledger marks clean checkpoints,
//! and θ_D has learned the forget facts that the oracle has not.

use std::path::Path;
use testbed::train::{build_or_load, oracle_from_scratch, ScratchModel};
use testbed::{ExposureConfig, Role, WorldConfig, WorldKind};

fn config() -> WorldConfig {
    WorldConfig {
        n_entities: Some(20),
        attributes: Some(3),
        bio_paraphrases: Some(1),
        forget: Some("20%".into()),
        steps: Some(40),
        batch_size: Some(8),
        seq_len: Some(64),
        checkpoints: Some(4),
        exposure: Some(ExposureConfig { start_checkpoint: Some(2), ..Default::default() }),
        ..WorldConfig::new(WorldKind::Facts)
    }
}

fn bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

#[test]
fn pretraining_is_deterministic_and_the_oracle_restart_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let nodata = Path::new("/nonexistent/unlearn-data");
    let model = ScratchModel::preset("micro").unwrap();
    let a = build_or_load(&config(), nodata, &tmp.path().join("a"), &model, None).unwrap();
    let b = build_or_load(&config(), nodata, &tmp.path().join("b"), &model, None).unwrap();
    // same config + seed ⇒ bit-identical checkpoints, θ_D and oracle
    for (ca, cb) in a.checkpoints.iter().zip(&b.checkpoints) {
        assert_eq!(bytes(&ca.path), bytes(&cb.path), "checkpoint at step {} differs between runs", ca.step);
    }
    assert_eq!(bytes(&a.oracle), bytes(&b.oracle));
    // the ledger: checkpoints up to the window start are clean, later ones are not
    let clean: Vec<bool> = a.checkpoints.iter().map(|c| c.clean).collect();
    assert_eq!(
        clean,
        vec![true, true, true, false, false],
        "steps {:?}",
        a.checkpoints.iter().map(|c| c.step).collect::<Vec<_>>()
    );
    let ledger = a.world.ledger.as_ref().unwrap();
    let window = a.checkpoints[2].step;
    assert!(ledger.exposures.iter().all(|e| !e.steps.is_empty() && e.steps.iter().all(|&s| s >= window)));
    // the oracle restarted from the last clean checkpoint equals one trained from scratch
    let scratch = tmp.path().join("oracle-from-scratch");
    oracle_from_scratch(&a, &scratch).unwrap();
    assert_eq!(bytes(&scratch), bytes(&a.oracle), "restarted oracle differs from the oracle trained from scratch");
    // the oracle differs from θ_D (it never saw the forget documents)
    assert_ne!(bytes(&a.oracle), bytes(&a.final_model));
    // a half-written world (no COMPLETE marker) is rebuilt, never used
    std::fs::remove_file(a.dir.join("COMPLETE")).unwrap();
    std::fs::write(a.final_model.join("model.safetensors"), b"garbage").unwrap();
    let rebuilt = build_or_load(&config(), nodata, &tmp.path().join("a"), &model, None).unwrap();
    assert_eq!(bytes(&rebuilt.final_model), bytes(&b.final_model));
}

#[test]
fn theta_d_knows_the_forget_answers_better_than_the_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.steps = Some(120);
    cfg.checkpoints = Some(4);
    let model = ScratchModel::preset("micro").unwrap();
    let w = build_or_load(&cfg, Path::new("/nonexistent/unlearn-data"), tmp.path(), &model, None).unwrap();
    let nll = |dir: &Path, role: Role| -> f64 {
        let m = lm::CausalLm::load(dir, &candle_core::Device::Cpu, false).unwrap();
        let tok = lm::Tok::load(dir, &m.cfg).unwrap();
        let mut s = lm::score::Scorer::new(&m, &tok);
        s.add_bos = true;
        let reqs: Vec<(String, String)> =
            w.world.qa_with(role).map(|q| (q.prompt(), testbed::qa_continuation(&q.answer))).collect();
        let ll = s.loglikelihood(&reqs).unwrap();
        -ll.iter().map(|l| l.logprob).sum::<f64>() / ll.iter().map(|l| l.n_tokens).sum::<usize>() as f64
    };
    let (d_forget, o_forget) = (nll(&w.final_model, Role::Forget), nll(&w.oracle, Role::Forget));
    let (d_retain, o_retain) = (nll(&w.final_model, Role::Retain), nll(&w.oracle, Role::Retain));
    println!("answer NLL per token: θ_D forget {d_forget:.3} retain {d_retain:.3}; oracle forget {o_forget:.3} retain {o_retain:.3}");
    assert!(d_forget + 0.3 < o_forget, "θ_D should know the forget answers better: {d_forget} vs oracle {o_forget}");
    assert!((d_retain - o_retain).abs() < 0.5, "retain knowledge should match: {d_retain} vs {o_retain}");
}
