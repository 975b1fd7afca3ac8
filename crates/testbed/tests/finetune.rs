//! The `finetune` world on a tiny random base model: θ_D learns the forget answers and the
//! oracle does not; the ledger agrees with the batches; the oracle never saw a forget
//! document and saw every retain document at θ_D's steps; a rebuild is a cache hit.

use std::path::{Path, PathBuf};

use lm::score::Scorer;
use lm::{CausalLm, LmConfig, Tok};
use testbed::finetune::{build_or_load_finetune, finetune_schedule, FinetuneSpec};
use testbed::{smoke, Role, World, WorldConfig, WorldKind};

fn empty_data_dir() -> PathBuf {
    PathBuf::from("/nonexistent/unlearn-data")
}

fn world_config(base: &Path) -> WorldConfig {
    WorldConfig {
        n_entities: Some(10),
        attributes: Some(3),
        forget: Some("20%".into()),
        base_model: Some(base.display().to_string()),
        ..WorldConfig::new(WorldKind::Finetune)
    }
}

fn spec() -> FinetuneSpec {
    FinetuneSpec { lr: 1e-2, epochs: 12, batch_size: 4, seed: 0, weight_decay: 0.0, max_seq_len: 128 }
}

/// Mean negative log-likelihood per answer token of the world's QA items with `role`.
fn answer_nll(model_dir: &Path, world: &World, role: Role) -> f64 {
    let cfg = LmConfig::from_file(&model_dir.join("config.json")).unwrap();
    let tok = Tok::load(model_dir, &cfg).unwrap();
    let model = CausalLm::load(model_dir, &candle_core::Device::Cpu, false).unwrap();
    let mut scorer = Scorer::new(&model, &tok);
    scorer.add_bos = true;
    let reqs: Vec<(String, String)> =
        world.qa_with(role).map(|q| (q.prompt(), testbed::qa_continuation(&q.answer))).collect();
    assert!(!reqs.is_empty());
    let out = scorer.loglikelihood(&reqs).unwrap();
    let lp: f64 = out.iter().map(|l| l.logprob).sum();
    let n: usize = out.iter().map(|l| l.n_tokens).sum();
    -lp / n as f64
}

#[test]
fn finetune_world_builds_theta_d_and_the_exact_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let base_dir = tmp.path().join("base");
    let cache = tmp.path().join("cache");
    // The base model's tokenizer is a byte-level BPE trained on the world's texts.
    let probe = World::from_config(&world_config(&base_dir), &empty_data_dir()).unwrap();
    let texts: Vec<String> = probe.corpus.docs.iter().map(|d| d.text.clone()).collect();
    smoke::tiny_like_in("llama", &base_dir, 7, &texts, &empty_data_dir()).unwrap();

    let cfg = world_config(&base_dir);
    let ft = spec();
    let built = build_or_load_finetune(&cfg, &empty_data_dir(), &cache, &base_dir, &ft, None).unwrap();
    let w = &built.world;
    assert_eq!(w.splits.forget_units.len(), 2, "20% of 10 entities");
    let forget_docs = w.splits.forget_docs.clone();
    assert_eq!(forget_docs.len(), 2 * 3, "2 entities × 3 QA documents");

    // Checkpoints: θ_0 itself (clean), then θ_D (unclean).
    assert_eq!(built.checkpoints.len(), 2);
    assert_eq!(built.checkpoints[0].path, base_dir.canonicalize().unwrap());
    assert!(built.checkpoints[0].clean && !built.checkpoints[1].clean);
    assert_eq!(built.final_model, built.checkpoints[1].path);
    // 30 trained documents (10 entities × 3), batches of 4: 8 steps per epoch.
    assert_eq!(built.checkpoints[1].step, 8 * ft.epochs);

    // The ledger, against an independent scan of θ_D's batches.
    let sched = w.schedule.as_ref().unwrap();
    assert_eq!(sched, &finetune_schedule(w, &ft).unwrap(), "the stored schedule is the one trained on");
    let ledger = w.ledger.as_ref().unwrap();
    assert_eq!(ledger.exposures.len(), forget_docs.len());
    for e in &ledger.exposures {
        let expect: Vec<usize> = (0..sched.len()).filter(|&s| sched.batch(s).contains(&e.doc)).collect();
        assert_eq!(e.steps, expect, "doc {}", e.doc);
        assert_eq!(e.steps.len(), ft.epochs, "each forget document is seen once per epoch");
    }
    assert_eq!(ledger.first_exposure_step.map(|s| s < 8), Some(true), "forget data is in the first epoch");

    // The oracle's schedule: no forget document, every other document at the same step in
    // the same order.
    let oracle = w.oracle_schedule().unwrap();
    assert_eq!(oracle.len(), sched.len());
    for step in 0..sched.len() {
        let kept: Vec<u32> = sched.batch(step).iter().copied().filter(|d| !forget_docs.contains(d)).collect();
        assert_eq!(oracle.batch(step), kept.as_slice(), "step {step}");
    }
    assert!(oracle.ledger().exposures.iter().all(|e| e.steps.is_empty()));

    // θ_D knows the forget answers much better than the oracle, which never saw them; both
    // learned the retain answers (far below the untrained θ_0).
    let f_d = answer_nll(&built.final_model, w, Role::Forget);
    let f_o = answer_nll(&built.oracle, w, Role::Forget);
    let r_d = answer_nll(&built.final_model, w, Role::Retain);
    let r_o = answer_nll(&built.oracle, w, Role::Retain);
    let r_0 = answer_nll(&base_dir, w, Role::Retain);
    eprintln!("answer NLL: forget θ_D {f_d:.3} oracle {f_o:.3}; retain θ_D {r_d:.3} oracle {r_o:.3} θ_0 {r_0:.3}");
    assert!(f_d + 0.5 < f_o, "forget NLL θ_D {f_d} vs oracle {f_o}");
    assert!(r_d < 0.5 * r_0 && r_o < 0.5 * r_0, "retain NLL θ_D {r_d}, oracle {r_o}, θ_0 {r_0}");

    // A rebuild is a cache hit: nothing is rewritten.
    let marker = built.dir.join("COMPLETE");
    let weights = built.final_model.join("model.safetensors");
    let (m0, w0) = (
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        std::fs::metadata(&weights).unwrap().modified().unwrap(),
    );
    let again = build_or_load_finetune(&cfg, &empty_data_dir(), &cache, &base_dir, &ft, None).unwrap();
    assert_eq!(again.dir, built.dir);
    assert_eq!(std::fs::metadata(&marker).unwrap().modified().unwrap(), m0);
    assert_eq!(std::fs::metadata(&weights).unwrap().modified().unwrap(), w0);
    assert_eq!(again.checkpoints, built.checkpoints);
    // train::load reads the same folder.
    let loaded = testbed::train::load(&built.dir).unwrap();
    assert_eq!(loaded.world.ledger, w.ledger);

    // Another spec is another world folder.
    let other = FinetuneSpec { seed: 1, ..ft.clone() };
    assert_ne!(testbed::finetune::finetune_dir(&cache, w, &base_dir, &other).unwrap(), built.dir);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-model");
    let err = format!(
        "{:#}",
        build_or_load_finetune(&world_config(&missing), &empty_data_dir(), tmp.path(), &missing, &spec(), None)
            .err()
            .unwrap()
    );
    assert!(err.contains("not a Hugging Face model folder"), "{err}");
    let facts = WorldConfig::new(WorldKind::Facts);
    let err = format!(
        "{:#}",
        build_or_load_finetune(&facts, &empty_data_dir(), tmp.path(), &missing, &spec(), None).err().unwrap()
    );
    assert!(err.contains("kind = \"finetune\""), "{err}");
    let bad = FinetuneSpec { epochs: 0, ..spec() };
    let err = format!(
        "{:#}",
        build_or_load_finetune(&world_config(&missing), &empty_data_dir(), tmp.path(), &missing, &bad, None)
            .err()
            .unwrap()
    );
    assert!(err.contains("finetune.epochs"), "{err}");
}

#[test]
fn default_recipe_follows_the_model_size() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = smoke::tiny_like_in("qwen2", &tmp.path().join("q"), 0, &[], &empty_data_dir()).unwrap();
    assert_eq!(FinetuneSpec::default_for(&tiny, false).lr, 1e-3, "a tiny model gets the small-model lr");
    assert_eq!(FinetuneSpec::default_for(&tiny, true).lr, 1e-2);
    // A folder that cannot be read is treated as a large model (TOFU's recipe).
    let big = FinetuneSpec::default_for(&tmp.path().join("missing"), false);
    assert_eq!((big.lr, big.epochs), (1e-5, 5));
    // A Llama-2-7b config.json (the real file's sizes): 6.7B parameters, lr 1e-5.
    let l2 = tmp.path().join("llama2");
    std::fs::create_dir_all(&l2).unwrap();
    std::fs::write(
        l2.join("config.json"),
        r#"{"architectures":["LlamaForCausalLM"],"hidden_size":4096,"intermediate_size":11008,
            "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":32,"vocab_size":32000,
            "rms_norm_eps":1e-05,"max_position_embeddings":4096,"bos_token_id":1,"eos_token_id":2}"#,
    )
    .unwrap();
    assert_eq!(FinetuneSpec::default_for(&l2, false).lr, 1e-5);
}
