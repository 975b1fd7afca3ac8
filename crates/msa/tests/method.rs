//! The `msa` method with its issue-19 parameters, on tiny random Llama checkpoints: the
//! defaults write the old formula's bytes, an ensemble caches one fine-tune per base point and
//! reruns identically, compute counts, and parameter errors that name the parameter.

use candle_core::Device;
use lm::config::Arch;
use lm::testing::{tiny_config, write_tiny_checkpoint};
use lm::train::{Example, TrainConfig};
use msa::{cache_dir, retain_sample, FineTune, Msa};
use std::path::{Path, PathBuf};
use unlearn::{CheckpointInfo, Context, RunReport, Unlearner};

struct Setup {
    dir: tempfile::TempDir,
    theta_d: PathBuf,
    ledger: Vec<CheckpointInfo>,
    forget: Vec<Example>,
    retain: Vec<Example>,
    held_out: Vec<Example>,
}

fn tiny(dir: &Path, seed: u64) -> PathBuf {
    write_tiny_checkpoint(dir, tiny_config(Arch::Llama), seed).unwrap();
    dir.to_path_buf()
}

/// Token sequences of different lengths (ids inside the tiny vocabulary).
fn examples(range: std::ops::Range<u32>) -> Vec<Example> {
    range.map(|i| Example::full((0..4 + i % 5).map(|t| 3 + (i * 7 + t * 3) % 20).collect())).collect()
}

/// θ_D, clean checkpoints at steps 0 and 5, an unclean one at step 10.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let theta_d = tiny(&dir.path().join("theta_d"), 1);
    let ledger = vec![
        CheckpointInfo { step: 0, path: tiny(&dir.path().join("ckpt0"), 2), clean: true },
        CheckpointInfo { step: 5, path: tiny(&dir.path().join("ckpt5"), 3), clean: true },
        CheckpointInfo { step: 10, path: tiny(&dir.path().join("ckpt10"), 4), clean: false },
    ];
    Setup { dir, theta_d, ledger, forget: examples(0..3), retain: examples(3..9), held_out: examples(9..12) }
}

fn train() -> TrainConfig {
    TrainConfig { batch_size: 4, warmup_ratio: 0.0, ..Default::default() }
}

fn ctx<'a>(s: &'a Setup, train: TrainConfig, cache: &'a Path, out: &'a Path) -> Context<'a> {
    Context {
        final_model: &s.theta_d,
        checkpoints: &s.ledger,
        forget: &s.forget,
        retain: &s.retain,
        held_out: &s.held_out,
        train,
        seed: 7,
        cache,
        out,
        device: &Device::Cpu,
        pad: 0,
        progress: None,
    }
}

fn build(params: &str) -> anyhow::Result<Msa> {
    Msa::from_params(&params.parse::<toml::Table>().unwrap())
}

fn run_with(s: &Setup, train: TrainConfig, params: &str, out: &str, cache: &str) -> anyhow::Result<RunReport> {
    let (out, cache) = (s.dir.path().join(out), s.dir.path().join(cache));
    // lr / epochs in the table are the trainer's, as the runner resolves them for a cell
    let (own, train) = unlearn::split_train_overrides(&params.parse()?, &train)?;
    Msa::from_params(&own)?.run(&ctx(s, train, &cache, &out))
}

fn run(s: &Setup, params: &str, out: &str, cache: &str) -> anyhow::Result<RunReport> {
    run_with(s, train(), params, out, cache)
}

fn weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

fn count(r: &RunReport, key: &str) -> usize {
    r.timings[&format!("count/{key}")] as usize
}

fn tokens(ex: &[Example]) -> usize {
    ex.iter().map(|e| e.tokens.len()).sum()
}

#[test]
fn default_params_write_the_old_formula_bit_for_bit() {
    let s = setup();
    let rep = run(&s, "alpha = 1.5\nbeta = 0.5\nepochs = 1", "out", "cache").unwrap();
    // The formula before issue 19, rebuilt from the public pieces: θ_0 = latest clean
    // checkpoint, θ_1/θ_2 its cached fine-tunes, one combine over these four terms.
    let theta0 = &s.ledger[1].path;
    let ft = FineTune { lr: train().lr, epochs: 1 };
    let cache = s.dir.path().join("cache");
    let theta1 = cache_dir(&cache, "forget", theta0, &s.forget, &ft.train_config(&train(), s.forget.len(), 7)).unwrap();
    let sample = retain_sample(&s.retain, s.forget.len(), 7);
    let theta2 = cache_dir(&cache, "retain", theta0, &sample, &ft.train_config(&train(), sample.len(), 7)).unwrap();
    let terms = vec![(1.0, s.theta_d.clone()), (-1.5, theta1), (0.5, theta2), (1.0, theta0.clone())];
    let old = s.dir.path().join("old");
    model_state::combine(&terms, &old, &model_state::CombineOptions::default()).unwrap();
    assert_eq!(weights(&rep.out), weights(&old), "default MSA differs from the old formula");
    assert_ne!(weights(&rep.out), weights(&s.theta_d));
    assert_eq!((rep.notes["forget_cache"].as_str(), rep.notes["retain_cache"].as_str()), (Some("miss"), Some("miss")));
    assert_eq!(rep.notes["base_step"], 5);

    // The defaults spelled out, and an ensemble of that one checkpoint, give the same bytes.
    for (i, extra) in [
        "variant = \"plain\"\nalpha_scaling = \"uniform\"\nsparsity = 1.0",
        "ensemble = [\"latest-clean\"]",
        "ensemble = \"distance:0\"",
    ]
    .iter()
    .enumerate()
    {
        let r = run(&s, &format!("alpha = 1.5\nbeta = 0.5\nepochs = 1\n{extra}"), &format!("out{i}"), "cache").unwrap();
        assert_eq!(weights(&r.out), weights(&old), "{extra}");
        assert_eq!(r.notes["forget_cache"], "hit", "{extra}");
    }

    // compute accounting: two fine-tunes of one epoch each, one arithmetic pass
    assert_eq!(count(&rep, "finetunes"), 2);
    assert_eq!(count(&rep, "finetune_tokens_forget"), tokens(&s.forget));
    assert_eq!(count(&rep, "finetune_tokens_retain"), tokens(&sample));
    assert_eq!(count(&rep, "finetune_tokens"), tokens(&s.forget) + tokens(&sample));
    assert_eq!(count(&rep, "arithmetic_passes"), 1);
}

#[test]
fn an_ensemble_caches_each_base_and_reruns_identically() {
    let s = setup();
    let params = "alpha = 0.8\nbeta = 0.5\nepochs = 1\nensemble = \"distance:0 + distance:1\"\n\
                  variant = \"orthogonal\"\nalpha_scaling = \"norm_share\"\nsparsity = 0.5";
    let a = run(&s, params, "a", "cache").unwrap();
    assert_eq!(a.notes["forget_cache"], serde_json::json!(["miss", "miss"]));
    assert_eq!(a.notes["retain_cache"], serde_json::json!(["miss", "miss"]));
    assert_eq!(a.notes["base_step"], serde_json::json!([5, 0]));
    let b = run(&s, params, "b", "cache").unwrap();
    assert_eq!(b.notes["forget_cache"], serde_json::json!(["hit", "hit"]));
    assert!(b.loss_curve.is_empty() && !b.timings.contains_key("finetune_forget"));
    assert_eq!(weights(&a.out), weights(&b.out), "a rerun from the cache must write the same bytes");

    // The method's output is the arithmetic on the cached fine-tunes, members in ensemble order.
    let list = |k: &str| -> Vec<PathBuf> {
        a.notes[k].as_array().unwrap().iter().map(|v| PathBuf::from(v.as_str().unwrap())).collect()
    };
    let (bases, forget, retain) = (list("base"), list("forget_models"), list("retain_models"));
    assert_eq!(bases, vec![s.ledger[1].path.clone(), s.ledger[0].path.clone()]);
    assert!(forget[0] != forget[1] && retain[0] != retain[1], "one fine-tune per base point");
    let members: Vec<msa::Member> = (0..2)
        .map(|i| msa::Member {
            base: bases[i].clone(),
            forget: Some(forget[i].clone()),
            retain: Some(retain[i].clone()),
        })
        .collect();
    let direct = s.dir.path().join("direct");
    let b = build(&params.replace("epochs = 1\n", "")).unwrap();
    msa::variants::apply(&s.theta_d, &members, 0.8, 0.5, &b.shaping, &direct).unwrap();
    assert_eq!(weights(&a.out), weights(&direct));
    assert!(a.notes["shaping"]["projection_removed"].as_f64().unwrap() > 0.0);

    let sample = retain_sample(&s.retain, s.forget.len(), 7);
    for r in [&a, &run(&s, params, "c", "cache").unwrap()] {
        assert_eq!(count(r, "finetunes"), 4);
        assert_eq!(count(r, "finetune_tokens_forget"), 2 * tokens(&s.forget));
        assert_eq!(count(r, "finetune_tokens_retain"), 2 * tokens(&sample));
        assert_eq!(count(r, "arithmetic_passes"), 3, "projection, trim/norms, write");
    }
}

#[test]
fn orthogonal_needs_the_retain_vector_even_at_beta_zero() {
    let s = setup();
    let r = run(&s, "alpha = 1.0\nepochs = 1\nvariant = \"orthogonal\"", "o", "cache").unwrap();
    assert_eq!(r.notes["retain_cache"], "miss");
    assert_eq!(count(&r, "finetunes"), 2);
    assert_eq!(count(&r, "arithmetic_passes"), 2);
    // plain at β = 0 does not fine-tune on retain data
    let p = run(&s, "alpha = 1.0\nepochs = 1", "p", "cache").unwrap();
    assert!(!p.notes.contains_key("retain_cache"));
    assert_eq!((count(&p, "finetunes"), count(&p, "finetune_tokens_retain")), (1, 0));
    assert_ne!(weights(&r.out), weights(&p.out));
}

#[test]
fn token_counts_of_cached_fine_tunes_equal_those_of_training() {
    // 6 forget examples of different lengths, batch 4: 2 steps per epoch; 3 epochs cut to 3
    // steps by max_steps, so the second epoch stops after its first (shuffled) batch.
    let mut s = setup();
    s.forget = examples(0..6);
    let cut = TrainConfig { max_steps: Some(3), ..train() };
    let all = tokens(&s.forget);
    for (cfg, name) in [(cut, "cut"), (train(), "full")] {
        let trained = run_with(&s, cfg.clone(), "epochs = 3", &format!("{name}1"), name).unwrap();
        let cached = run_with(&s, cfg.clone(), "epochs = 3", &format!("{name}2"), name).unwrap();
        assert_eq!(
            (trained.notes["forget_cache"].as_str(), cached.notes["forget_cache"].as_str()),
            (Some("miss"), Some("hit"))
        );
        let n = count(&trained, "finetune_tokens_forget");
        assert_eq!(n, count(&cached, "finetune_tokens_forget"), "{name}: the cache's count differs from training's");
        if name == "cut" {
            assert!(n > all && n < 2 * all, "{n} vs {all} per epoch");
        } else {
            assert_eq!(n, 3 * all);
        }
    }
}

#[track_caller]
fn refused(params: &str, needles: &[&str]) {
    let e = format!("{:#}", build(params).err().unwrap_or_else(|| panic!("{params:?} must be refused")));
    for n in needles {
        assert!(e.contains(n), "{params:?}: {e:?} should contain {n:?}");
    }
}

#[test]
fn bad_params_name_the_param() {
    for bad in ["0.0", "1.5", "-0.25", "nan"] {
        refused(&format!("sparsity = {bad}"), &["method msa", "sparsity", "0 < f ≤ 1"]);
    }
    refused("variant = \"orthogonl\"", &["method msa", "variant", "did you mean `orthogonal`", "plain, orthogonal"]);
    refused("variant = \"ties\"", &["variant", "known: plain, orthogonal"]);
    refused("alpha_scaling = \"norm-share\"", &["method msa", "alpha_scaling", "did you mean `norm_share`"]);
    refused(
        "ensemble = [\"distance:0\"]\ncheckpoint = \"distance:0\"",
        &["method msa", "ensemble", "checkpoint", "both"],
    );
    refused("ensemble = []", &["method msa", "ensemble", "empty"]);
    refused("ensemble = 3", &["method msa", "ensemble"]);
    refused("ensemble = [\"distance:0\", 1]", &["method msa", "ensemble"]);
    refused("ensemble = \"distance:0,nearest:2\"", &["method msa", "ensemble", "entry 2", "nearest:2"]);
    refused("ensemble = [\"distance:1\", \"distance:1\"]", &["method msa", "ensemble", "twice"]);
    refused("sparsty = 0.5", &["method msa", "sparsty"]);
    // the accepted forms
    for ok in [
        "sparsity = 1",
        "sparsity = 0.01",
        "variant = \"orthogonal\"\nalpha_scaling = \"norm_share\"",
        "ensemble = \"step:0\"",
    ] {
        build(ok).unwrap_or_else(|e| panic!("{ok:?}: {e:#}"));
    }
}

#[test]
fn an_unclean_or_repeated_ensemble_entry_is_refused_before_any_work() {
    let s = setup();
    let out = s.dir.path().join("out");
    let e = format!("{:#}", run(&s, "ensemble = \"distance:0,step:10\"", "out", "cache").unwrap_err());
    assert!(e.contains("ensemble entry \"step:10\"") && e.contains("allow_unclean"), "{e}");
    assert!(!out.exists() && !s.dir.path().join("cache").exists());
    let e = format!("{:#}", run(&s, "ensemble = [\"latest-clean\", \"distance:0\"]", "out", "cache").unwrap_err());
    assert!(e.contains("\"latest-clean\" and \"distance:0\" select the same checkpoint"), "{e}");
    let e = format!("{:#}", run(&s, "ensemble = \"distance:0,distance:5\"", "out", "cache").unwrap_err());
    assert!(e.contains("ensemble entry \"distance:5\""), "{e}");
}
