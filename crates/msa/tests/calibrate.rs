//! Calibrated α and retain repair: the bisection on constructed loss curves, the loss it
//! matches against a second computation, and the whole method on a tiny world whose θ_D has
//! learned its forget set (α in range, forget loss = held-out loss within the tolerance,
//! determinism), the repair's token count and parameter errors.

use candle_core::Device;
use lm::config::Arch;
use lm::testing::{tiny_config, write_tiny_checkpoint};
use lm::train::{Example, NextToken, TrainConfig};
use lm::CausalLm;
use msa::calibrate::{loss_gap, mean_loss, repair_config};
use msa::{bisect, Msa, Outcome};
use std::path::{Path, PathBuf};
use unlearn::{CheckpointInfo, Context, RunReport, Unlearner};

// ------------------------------------------------------------------ bisection

/// A monotone curve with its root at the real solution of a³ + a = 2.5 (Newton in f64).
fn cubic(a: f64) -> f64 {
    a * a * a + a - 2.5
}

fn cubic_root() -> f64 {
    let mut x = 1.0f64;
    for _ in 0..60 {
        x -= cubic(x) / (3.0 * x * x + 1.0);
    }
    x
}

#[test]
fn bisection_finds_the_root_of_a_monotone_curve() {
    let c = bisect(|a| Ok(cubic(a)), 0.0, 4.0, 1, 40, 1e-9).unwrap();
    assert_eq!(c.outcome, Outcome::Converged);
    assert!((c.alpha - cubic_root()).abs() < 1e-9, "{} vs {}", c.alpha, cubic_root());
    assert!(c.gap.abs() <= 1e-9);
    // the ends first, then midpoints of the bracket: 2 (gap > 0) → 1 (< 0) → 1.5 (> 0) → 1.25 …
    let alphas: Vec<f64> = c.trace.iter().map(|t| t.0).collect();
    assert_eq!(&alphas[..6], &[0.0, 4.0, 2.0, 1.0, 1.5, 1.25]);
    assert!(c.trace.len() <= 42);
    for &(a, g) in &c.trace {
        assert_eq!(g, cubic(a));
    }
}

#[test]
fn bisection_with_few_iterations_keeps_the_best_point() {
    // 0, 4, 2, 1, 1.5: |gap| = 2.5, 65.5, 7.5, 0.5, 0.875 → α = 1
    let c = bisect(|a| Ok(cubic(a)), 0.0, 4.0, 1, 3, 1e-9).unwrap();
    assert_eq!(c.outcome, Outcome::IterationLimit);
    assert_eq!(c.trace.len(), 5);
    assert_eq!((c.alpha, c.gap), (1.0, -0.5));
    // a loose tolerance stops at the first point inside it
    let c = bisect(|a| Ok(cubic(a)), 0.0, 4.0, 1, 10, 0.6).unwrap();
    assert_eq!((c.outcome, c.alpha, c.trace.len()), (Outcome::Converged, 1.0, 4));
}

#[test]
fn bisection_chooses_an_end_when_the_root_is_outside() {
    let c = bisect(|a| Ok(cubic(a) + 10.0), 0.0, 4.0, 1, 8, 1e-3).unwrap();
    assert_eq!((c.outcome, c.alpha, c.trace.len()), (Outcome::AtLower, 0.0, 1));
    let c = bisect(|a| Ok(cubic(a) - 100.0), 0.0, 4.0, 1, 8, 1e-3).unwrap();
    assert_eq!((c.outcome, c.alpha, c.trace.len()), (Outcome::NoRoot, 4.0, 2));
    let e = format!("{:#}", bisect(|a| Ok(if a > 1.0 { f64::NAN } else { -1.0 }), 0.0, 4.0, 1, 8, 1e-3).unwrap_err());
    assert!(e.contains("alpha = 4") && e.contains("not finite"), "{e}");
    let e = format!("{:#}", bisect(|_| anyhow::bail!("no model"), 0.0, 4.0, 1, 8, 1e-3).unwrap_err());
    assert!(e.contains("alpha = 0") && e.contains("no model"), "{e}");
    assert!(bisect(Ok, 1.0, 1.0, 1, 8, 1e-3).is_err());
    assert!(bisect(Ok, 0.0, 1.0, 0, 8, 1e-3).is_err());
}

#[test]
fn the_scan_finds_the_first_crossing_of_a_curve_that_turns_down() {
    // 1 − (α − 2)²: crosses zero at α = 1 and again at α = 3. The scan 0, 2 (gap 1 > 0) brackets
    // [0, 2]; bisection 1 → exactly 0.
    let hump = |a: f64| Ok(1.0 - (a - 2.0) * (a - 2.0));
    let c = bisect(hump, 0.0, 8.0, 4, 20, 1e-12).unwrap();
    assert_eq!((c.outcome, c.alpha), (Outcome::Converged, 1.0));
    assert_eq!(c.trace.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0.0, 2.0, 1.0]);
    // Plain bisection on [0, 8] would see gap(8) = −35 < 0 and give up at the upper end.
    assert_eq!(bisect(hump, 0.0, 8.0, 1, 20, 1e-12).unwrap().outcome, Outcome::NoRoot);
    // A curve that never reaches zero: the scanned α with the largest gap.
    let c = bisect(|a| Ok(-(a - 2.0) * (a - 2.0) - 0.5), 0.0, 4.0, 8, 20, 1e-3).unwrap();
    assert_eq!((c.outcome, c.alpha, c.gap, c.trace.len()), (Outcome::NoRoot, 2.0, -0.5, 9));
    // scan then bisection on the cubic: scan 0, 0.5, 1, 1.5 (> 0) → bracket [1, 1.5]
    let c = bisect(|a| Ok(cubic(a)), 0.0, 4.0, 8, 40, 1e-9).unwrap();
    assert_eq!(c.trace.iter().take(5).map(|t| t.0).collect::<Vec<_>>(), vec![0.0, 0.5, 1.0, 1.5, 1.25]);
    assert!((c.alpha - cubic_root()).abs() < 1e-9 && c.outcome == Outcome::Converged);
}

// ------------------------------------------------------------------ the method on a tiny world

struct World {
    dir: tempfile::TempDir,
    theta_d: PathBuf,
    ledger: Vec<CheckpointInfo>,
    forget: Vec<Example>,
    retain: Vec<Example>,
    held_out: Vec<Example>,
}

/// Sequences of one kind: different lengths, pseudo-random ids inside the tiny vocabulary (so
/// a model knows one only by having trained on it).
fn examples(range: std::ops::Range<u32>) -> Vec<Example> {
    range
        .map(|i| {
            let mut x = 0x9e37_79b9u32.wrapping_mul(i + 1);
            Example::full(
                (0..8 + i % 5)
                    .map(|_| {
                        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        3 + (x >> 16) % 20
                    })
                    .collect(),
            )
        })
        .collect()
}

fn train() -> TrainConfig {
    TrainConfig { batch_size: 4, warmup_ratio: 0.0, ..Default::default() }
}

/// θ_0 a tiny random model (the clean checkpoint); θ_D = θ_0 trained on forget ∪ retain, so it
/// has learned the forget set and not the held-out one.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let theta0 = dir.path().join("ckpt0");
    write_tiny_checkpoint(&theta0, tiny_config(Arch::Llama), 3).unwrap();
    let (forget, retain, held_out) = (examples(0..4), examples(4..12), examples(12..16));
    let all: Vec<Example> = forget.iter().chain(&retain).cloned().collect();
    let model = CausalLm::load(&theta0, &Device::Cpu, true).unwrap();
    let cfg = TrainConfig { lr: 1e-2, epochs: 30, ..train() };
    lm::train::fit(&model, &all, None, &cfg, &NextToken, 0, None).unwrap();
    let theta_d = dir.path().join("theta_d");
    lm::checkpoint::save(&model, &theta_d, Some(&theta0)).unwrap();
    let ledger = vec![CheckpointInfo { step: 0, path: theta0, clean: true }];
    World { dir, theta_d, ledger, forget, retain, held_out }
}

fn run(w: &World, params: &str, out: &str, cache: &str) -> anyhow::Result<RunReport> {
    run_on(w, &w.held_out, params, out, cache)
}

fn run_on(w: &World, held_out: &[Example], params: &str, out: &str, cache: &str) -> anyhow::Result<RunReport> {
    let (out, cache) = (w.dir.path().join(out), w.dir.path().join(cache));
    // lr / epochs in the table are the trainer's, as the runner resolves them for a cell
    let (own, train) = unlearn::split_train_overrides(&params.parse()?, &train())?;
    let ctx = Context {
        final_model: &w.theta_d,
        checkpoints: &w.ledger,
        forget: &w.forget,
        retain: &w.retain,
        held_out,
        train,
        seed: 7,
        cache: &cache,
        out: &out,
        device: &Device::Cpu,
        pad: 0,
        progress: None,
    };
    Msa::from_params(&own)?.run(&ctx)
}

fn weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

const CALIBRATED: &str =
    "alpha = \"calibrated\"\nlr = 1e-2\nepochs = 10\nalpha_max = 4.0\ncalibrate_iters = 12\ncalibrate_tol = 0.02";

#[test]
fn mean_loss_matches_the_batch_loss_of_training() {
    let w = world();
    let model = CausalLm::load(&w.theta_d, &Device::Cpu, false).unwrap();
    // one batch of everything: lm's masked_nll (the training loss) is Σ NLL / Σ tokens too
    let refs: Vec<&Example> = w.forget.iter().collect();
    let batch = lm::train::collate(&refs, (0..refs.len()).collect(), 0, &Device::Cpu).unwrap();
    let reference = lm::train::masked_nll(&model, &batch).unwrap().to_scalar::<f32>().unwrap() as f64;
    for bs in [1, 3, 16] {
        let m = mean_loss(&model, &w.forget, 0, bs, &Device::Cpu).unwrap();
        assert!((m - reference).abs() < 1e-5 * reference.abs().max(1.0), "batch size {bs}: {m} vs {reference}");
    }
    // θ_D learned the forget set, not the held-out set
    let (gap, tokens) = loss_gap(&w.theta_d, &w.forget, &w.held_out, 0, 4, &Device::Cpu).unwrap();
    assert!(gap < -0.1, "gap at θ_D = {gap}");
    assert_eq!(tokens, w.forget.iter().chain(&w.held_out).map(|e| e.tokens.len()).sum::<usize>());
}

#[test]
fn calibrated_alpha_matches_forget_loss_to_held_out_loss_deterministically() {
    let w = world();
    let a = run(&w, CALIBRATED, "a", "cache").unwrap();
    let cal = &a.notes["calibration"];
    let alpha = cal["alpha"].as_f64().unwrap();
    let trace: Vec<(f64, f64)> =
        cal["trace"].as_array().unwrap().iter().map(|t| (t[0].as_f64().unwrap(), t[1].as_f64().unwrap())).collect();
    assert_eq!(cal["outcome"], "converged", "{cal}");
    assert!(alpha > 0.0 && alpha < 4.0, "α = {alpha}");
    assert!(trace[0].0 == 0.0 && trace[0].1 < 0.0, "θ_D has learned the forget set: {trace:?}");
    assert!(trace.iter().any(|t| t.1 > 0.0), "some scanned α overshoots: {trace:?}");
    assert!(trace.len() <= 9 + 12);
    // the output is the arithmetic at the chosen α, and its losses match within the tolerance
    let (gap, _) = loss_gap(&a.out, &w.forget, &w.held_out, 0, 4, &Device::Cpu).unwrap();
    assert_eq!(gap, cal["gap"].as_f64().unwrap());
    assert!(gap.abs() <= 0.02, "gap {gap}");
    let fixed = run(&w, &format!("alpha = {alpha:?}\nlr = 1e-2\nepochs = 10"), "fixed", "cache").unwrap();
    assert_eq!(weights(&a.out), weights(&fixed.out), "calibrated output = MSA at the chosen α");
    assert_eq!(a.timings["count/calibration_evals"] as usize, trace.len());
    assert_eq!(a.timings["count/arithmetic_passes"] as usize, trace.len() + 1);
    assert!(!w.dir.path().join("a.calibrate").exists());
    // determinism: a fresh cache and output give the same α, trace and bytes
    let b = run(&w, CALIBRATED, "b", "cache2").unwrap();
    assert_eq!(b.notes["calibration"], a.notes["calibration"]);
    assert_eq!(weights(&a.out), weights(&b.out));
}

#[test]
fn repair_fine_tunes_on_retain_and_counts_its_tokens() {
    let w = world();
    let plain = run(&w, "alpha = 1.0\nlr = 1e-2\nepochs = 10", "plain", "cache").unwrap();
    let r = run(&w, "alpha = 1.0\nlr = 1e-2\nepochs = 10\nrepair_steps = 3\nrepair_lr = 1e-3", "rep", "cache").unwrap();
    let cfg = repair_config(&train(), 1e-3, 3, w.retain.len(), 7);
    let expected = msa::finetune_tokens(&w.retain, &cfg);
    assert_eq!(r.timings["count/finetune_tokens_repair"] as usize, expected);
    assert_eq!(r.timings["count/finetune_tokens"] as usize, plain.timings["count/finetune_tokens"] as usize + expected);
    assert_eq!(r.timings["count/finetunes"] as usize, plain.timings["count/finetunes"] as usize + 1);
    assert_eq!(r.notes["repair_steps"], 3);
    assert_ne!(weights(&r.out), weights(&plain.out));
    assert!(!w.dir.path().join("rep.arith").exists());
    // the repair lowers the retain loss of the arithmetic's output
    let retain_loss =
        |d: &Path| mean_loss(&CausalLm::load(d, &Device::Cpu, false).unwrap(), &w.retain, 0, 4, &Device::Cpu).unwrap();
    assert!(retain_loss(&r.out) < retain_loss(&plain.out));
    let again =
        run(&w, "alpha = 1.0\nlr = 1e-2\nepochs = 10\nrepair_steps = 3\nrepair_lr = 1e-3", "rep2", "cache").unwrap();
    assert_eq!(weights(&r.out), weights(&again.out));
}

#[test]
fn calibration_errors_name_the_parameter() {
    let refused = |params: &str, needles: &[&str]| {
        let e = format!(
            "{:#}",
            Msa::from_params(&params.parse::<toml::Table>().unwrap()).err().unwrap_or_else(|| panic!("{params:?}"))
        );
        for n in needles {
            assert!(e.contains(n), "{params:?}: {e:?} should contain {n:?}");
        }
    };
    refused("alpha = \"calibrate\"", &["method msa", "alpha", "\"calibrated\""]);
    refused("alpha = 0.5\nalpha_max = 2.0", &["alpha_max", "only applies to alpha = \"calibrated\""]);
    refused(
        "alpha = \"calibrated\"\nalpha_min = 2.0\nalpha_max = 1.0",
        &["alpha_min", "alpha_max", "alpha_min < alpha_max"],
    );
    refused("alpha = \"calibrated\"\ncalibrate_iters = 100", &["calibrate_iters", "at most 30"]);
    refused("alpha = \"calibrated\"\ncalibrate_tol = 0.0", &["calibrate_tol"]);
    refused("alpha = \"calibrated\"\ncalibrate_grid = 0", &["calibrate_grid", "1..=64"]);
    refused("repair_lr = 1e-3", &["repair_lr", "repair_steps"]);
    refused("repair_steps = 2\nrepair_lr = -1.0", &["repair_lr"]);
    let w = world();
    let e = format!("{:#}", run_on(&w, &[], CALIBRATED, "x", "cache").unwrap_err());
    assert!(e.contains("held-out") && e.contains("calibrated"), "{e}");
    assert!(!w.dir.path().join("x").exists());
}
