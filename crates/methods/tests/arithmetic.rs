//! MSA and task negation: identities (α = β = 0 is θ_D; MSA from θ_D is task negation), the
//! streamed arithmetic against an in-memory computation, the fine-tune cache, checkpoint
//! selection from the ledger, and refusals (unclean checkpoint, other vocabulary, bad α).

mod common;
use common::*;
use lm::config::Arch;
use lm::testing::{tiny_config, write_tiny_checkpoint};
use msa::{select_base, BasePoint};
use std::path::PathBuf;
use unlearn::{CheckpointInfo, Context};

fn table(s: &str) -> toml::Table {
    s.parse().unwrap()
}

struct Setup {
    dir: tempfile::TempDir,
    theta_d: PathBuf,
    ledger: Vec<CheckpointInfo>,
}

/// θ_D (seed 1), a clean checkpoint at step 0 (seed 2) and an unclean one at step 10 (seed 3).
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let theta_d = tiny(&dir.path().join("theta_d"), 1);
    let ledger = vec![
        CheckpointInfo { step: 0, path: tiny(&dir.path().join("ckpt0"), 2), clean: true },
        CheckpointInfo { step: 10, path: tiny(&dir.path().join("ckpt10"), 3), clean: false },
    ];
    Setup { dir, theta_d, ledger }
}

fn run(s: &Setup, kind: &str, params: &str, out: &str, cache: &str) -> anyhow::Result<unlearn::RunReport> {
    let (forget, retain) = (facts(0..2), facts(2..8));
    let out = s.dir.path().join(out);
    let cache = s.dir.path().join(cache);
    let (method, train) = build(kind, params)?;
    let c = Context { train, ..ctx(&s.theta_d, &s.ledger, &forget, &retain, &cache, &out) };
    method.run(&c)
}

#[test]
fn msa_with_alpha_and_beta_zero_returns_theta_d_bit_for_bit() {
    let s = setup();
    let rep = run(&s, "msa", "alpha = 0.0\nbeta = 0.0", "out", "cache").unwrap();
    assert_same_bits(&rep.out, &s.theta_d);
    assert!(!rep.notes.contains_key("forget_cache"), "no fine-tune is needed when α = β = 0: {:?}", rep.notes);
}

#[test]
fn msa_from_theta_d_equals_task_negation() {
    let s = setup();
    let p = format!("checkpoint = \"path:{}\"\nalpha = 1.5\nepochs = 3", s.theta_d.display());
    let a = run(&s, "msa", &p, "msa_out", "cache_a").unwrap();
    let b = run(&s, "task_negation", "alpha = 1.5\nepochs = 3", "tn_out", "cache_b").unwrap();
    assert_eq!(a.notes["forget_cache"], "miss");
    assert_eq!(b.notes["forget_cache"], "miss");
    assert_same_bits(&a.out, &b.out);
    // and it is not θ_D (the test could fail)
    let d = tensors(&a.out);
    let t = tensors(&s.theta_d);
    assert!(d.iter().any(|(n, x)| flat(x) != flat(&t[n])), "task negation left θ_D unchanged");
}

/// The term folder of a coefficient in the report's "terms" note.
fn term(rep: &unlearn::RunReport, k: usize) -> PathBuf {
    PathBuf::from(rep.notes["terms"][k][1].as_str().unwrap())
}

#[test]
fn msa_arithmetic_matches_an_in_memory_computation_and_reuses_the_cache() {
    let s = setup();
    let (alpha, beta) = (1.5f64, 0.5f64);
    let rep = run(&s, "msa", "alpha = 1.5\nbeta = 0.5\nepochs = 2", "out1", "cache").unwrap();
    assert_eq!(rep.notes["forget_cache"], "miss");
    assert_eq!(rep.notes["retain_cache"], "miss");
    assert_eq!(rep.notes["base_step"], 0);
    assert!(rep.timings.contains_key("finetune_forget") && rep.timings.contains_key("finetune_retain"));
    // terms: (1, θ_D), (−α, θ_1), (β, θ_2), (α − β, θ_0)
    let coefs: Vec<f64> = (0..4).map(|k| rep.notes["terms"][k][0].as_f64().unwrap()).collect();
    assert_eq!(coefs, vec![1.0, -alpha, beta, alpha - beta]);
    let (th1, th2, th0) = (term(&rep, 1), term(&rep, 2), term(&rep, 3));
    assert!(th1.starts_with(s.dir.path().join("cache")) && th2.starts_with(s.dir.path().join("cache")));
    assert_eq!(th0, s.ledger[0].path);
    let (d, t1, t2, t0, got) = (tensors(&s.theta_d), tensors(&th1), tensors(&th2), tensors(&th0), tensors(&rep.out));
    let mut checked = 0;
    for (name, x) in &d {
        let (xd, x1, x2, x0, y) = (flat(x), flat(&t1[name]), flat(&t2[name]), flat(&t0[name]), flat(&got[name]));
        for i in 0..xd.len() {
            let want = xd[i] as f64 - alpha * (x1[i] as f64 - x0[i] as f64) + beta * (x2[i] as f64 - x0[i] as f64);
            assert!((y[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "{name}[{i}]: {} vs {want}", y[i]);
        }
        // the fine-tunes actually moved this tensor away from θ_0 (the vectors are not zero)
        checked += usize::from(x1 != x0);
    }
    assert!(checked > d.len() / 2, "only {checked} tensors changed in the forget fine-tune");

    // a second grid point reuses both fine-tunes
    let t = std::time::Instant::now();
    let rep2 = run(&s, "msa", "alpha = 2.0\nbeta = 0.5\nepochs = 2", "out2", "cache").unwrap();
    eprintln!("grid point with cached vectors: {:.3}s (first point: {:?})", t.elapsed().as_secs_f64(), rep.timings);
    assert_eq!(rep2.notes["forget_cache"], "hit");
    assert_eq!(rep2.notes["retain_cache"], "hit");
    assert!(!rep2.timings.contains_key("finetune_forget") && rep2.loss_curve.is_empty());
    assert_eq!(term(&rep2, 1), th1);
    // a different training config is a different cache entry
    let rep3 = run(&s, "msa", "alpha = 2.0\nepochs = 3", "out3", "cache").unwrap();
    assert_eq!(rep3.notes["forget_cache"], "miss");
}

fn ck(step: usize, clean: bool) -> CheckpointInfo {
    CheckpointInfo { step, path: PathBuf::from(format!("/ckpts/step{step}")), clean }
}

#[track_caller]
fn pick(spec: &str, ledger: &[CheckpointInfo]) -> Result<usize, String> {
    let b = BasePoint::parse(spec).map_err(|e| format!("{e:#}"))?;
    select_base(&b, ledger).map(|b| b.ledger.unwrap().step).map_err(|e| format!("{e:#}"))
}

#[test]
fn checkpoint_selection_follows_the_ledger() {
    // deliberately out of order
    let ledger = vec![ck(20, true), ck(0, true), ck(40, false), ck(10, true), ck(30, false)];
    assert_eq!(pick("latest-clean", &ledger), Ok(20));
    // distance:k = k checkpoints before the latest clean one (what the configs say)
    assert_eq!(pick("distance:0", &ledger), Ok(20));
    assert_eq!(pick("distance:1", &ledger), Ok(10));
    assert_eq!(pick("distance:2", &ledger), Ok(0));
    let e = pick("distance:3", &ledger).unwrap_err();
    assert!(e.contains("there are 3 clean checkpoints (distance:0..=2)"), "{e}");
    assert_eq!(pick("step:30", &ledger), Ok(30)); // selectable; MSA refuses it unless allowed
    let e = pick("step:35", &ledger).unwrap_err();
    assert!(e.contains("step 35") && e.contains("0, 10, 20, 30*, 40*"), "{e}");
    for bad in ["distance:-1", "step:x", "latest", "path:", "nearest:3"] {
        assert!(pick(bad, &ledger).unwrap_err().contains("is invalid"), "{bad}");
    }
    assert!(pick("latest-clean", &[]).unwrap_err().contains("no checkpoints"));
    // an explicit folder: in the ledger or not
    let b = select_base(&BasePoint::parse("path:/ckpts/step30").unwrap(), &ledger).unwrap();
    assert_eq!(b.ledger.map(|c| c.clean), Some(false));
    let b = select_base(&BasePoint::parse("path:/elsewhere").unwrap(), &ledger).unwrap();
    assert_eq!((b.path, b.ledger), (PathBuf::from("/elsewhere"), None));
}

#[test]
fn an_unclean_checkpoint_is_refused_unless_allowed_and_then_labelled() {
    let s = setup();
    let out = s.dir.path().join("out");
    let e = format!("{:#}", run(&s, "msa", "checkpoint = \"step:10\"\nepochs = 1", "out", "cache").unwrap_err());
    assert!(e.contains("msa") && e.contains("step 10") && e.contains("allow_unclean"), "{e}");
    assert!(!out.exists());
    let rep = run(&s, "msa", "checkpoint = \"step:10\"\nepochs = 1\nallow_unclean = true", "out", "cache").unwrap();
    assert_eq!(rep.notes["ablation"], "unclean-checkpoint");
    assert!(lm::checkpoint::is_complete(&out));
    let rep = run(&s, "msa", "epochs = 1", "out", "cache").unwrap();
    assert!(!rep.notes.contains_key("ablation"));
}

#[test]
fn a_base_with_another_vocabulary_is_refused_naming_both_folders() {
    let s = setup();
    let other = s.dir.path().join("other_vocab");
    let mut cfg = tiny_config(Arch::Llama);
    cfg.vocab_size += 5;
    write_tiny_checkpoint(&other, cfg, 4).unwrap();
    let p = format!("checkpoint = \"path:{}\"", other.display());
    let e = format!("{:#}", run(&s, "msa", &p, "out", "cache").unwrap_err());
    assert!(
        e.contains("msa")
            && e.contains("vocab")
            && e.contains(&*other.to_string_lossy())
            && e.contains(&*s.theta_d.to_string_lossy()),
        "{e}"
    );
    assert!(!s.dir.path().join("out").exists());
    // another architecture
    let olmo = s.dir.path().join("olmo");
    write_tiny_checkpoint(&olmo, tiny_config(Arch::Olmo2), 4).unwrap();
    let p = format!("checkpoint = \"path:{}\"", olmo.display());
    let e = format!("{:#}", run(&s, "msa", &p, "out", "cache").unwrap_err());
    assert!(e.contains("architectures") && e.contains("Olmo2ForCausalLM"), "{e}");
}

#[track_caller]
fn build_err(kind: &str, params: &str) -> String {
    format!("{:#}", methods::build(kind, &table(params)).err().expect("must be refused"))
}

#[test]
fn bad_coefficients_name_the_method_and_field() {
    for (kind, params, field) in [
        ("msa", "alpha = -1.0", "alpha"),
        ("msa", "alpha = nan", "alpha"),
        ("msa", "beta = 1000.0", "beta"),
        ("msa", "beta = -inf", "beta"),
        ("task_negation", "alpha = -0.5", "alpha"),
        ("gradient_difference", "lambda = nan", "lambda"),
        ("npo", "beta = 0.0", "beta"),
        ("simnpo", "gamma = -1.0", "gamma"),
        ("rmu", "alpha = -1.0", "alpha"),
        ("rmu", "steering_coeff = 0.0", "steering_coeff"),
        ("rmu", "update_layers = 0", "update_layers"),
        ("rmu", "depth = 1.5", "depth"),
        ("rmu", "depth = 0.5\nlayer = 1", "depth"),
    ] {
        let e = build_err(kind, params);
        assert!(e.contains(&format!("method {kind}")) && e.contains(field), "{kind} {params}: {e}");
    }
    let e = build_err("msa", "checkpoint = \"distance:x\"");
    assert!(e.contains("msa") && e.contains("distance:x"), "{e}");
}

#[test]
fn an_empty_forget_set_is_an_error_and_leaves_nothing() {
    let s = setup();
    let masked: Vec<lm::train::Example> = facts(0..2)
        .into_iter()
        .map(|mut e| {
            e.loss_mask.iter_mut().for_each(|m| *m = 0.0);
            e
        })
        .collect();
    let retain = facts(2..8);
    for kind in ["msa", "task_negation", "gradient_ascent", "gradient_difference", "npo", "simnpo", "rmu"] {
        let out = s.dir.path().join(format!("out_{kind}"));
        std::fs::create_dir_all(&out).unwrap(); // a stale result must not survive a failed run
        let cache = s.dir.path().join("cache");
        let c = ctx(&s.theta_d, &s.ledger, &masked, &retain, &cache, &out);
        let e = format!("{:#}", methods::build(kind, &toml::Table::new()).unwrap().run(&c).unwrap_err());
        assert!(e.contains(&format!("method {kind}")) && e.contains("no target tokens"), "{kind}: {e}");
        assert!(!out.exists(), "{kind} left {}", out.display());
    }
}

#[test]
fn registry_suggests_and_rejects_unknown_fields() {
    let e = build_err("nop", "");
    assert!(e.contains("did you mean \"npo\"") && e.contains("gradient_difference"), "{e}");
    let e = build_err("gradient_acsent", "");
    assert!(e.contains("did you mean \"gradient_ascent\""), "{e}");
    let e = build_err("wmdp", "");
    assert!(!e.contains("did you mean") && e.contains("known methods: msa, task_negation") && e.contains("rmu"), "{e}");
    let e = build_err("msa", "alpah = 1.0");
    assert!(e.contains("method msa") && e.contains("alpah"), "{e}");
    let e = build_err("npo", "beta = \"big\"");
    assert!(e.contains("method npo") && e.contains("beta"), "{e}");
    for k in methods::KINDS {
        assert_eq!(methods::build(k, &toml::Table::new()).unwrap().name(), *k);
    }
}
