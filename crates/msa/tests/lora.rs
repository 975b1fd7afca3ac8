//! MSA and task negation with LoRA task vectors (issue 16, item 5), on tiny random Llama
//! checkpoints: the fine-tunes are cached as PEFT adapters, and the unlearned model written by
//! the streaming low-rank combination equals θ_D − α·(θ_1 − θ_0) + β·(θ_2 − θ_0) computed
//! densely in float64 from the merged fine-tunes (θ_k = θ_0 + s·B_k·A_k, written by the
//! engine); the shaped variants refuse adapters with a clear error.

use candle_core::{DType, Device};
use lm::config::Arch;
use lm::lora::LoraConfig;
use lm::testing::{tiny_config, write_tiny_checkpoint};
use lm::train::{Example, NextToken, TrainConfig};
use msa::{cache_dir, retain_sample, FineTune, Msa};
use std::collections::BTreeMap;
use std::path::Path;
use unlearn::{CheckpointInfo, Context, Unlearner};

fn examples(range: std::ops::Range<u32>) -> Vec<Example> {
    range.map(|i| Example::full((0..4 + i % 5).map(|t| 3 + (i * 7 + t * 3) % 20).collect())).collect()
}

fn train() -> TrainConfig {
    TrainConfig {
        batch_size: 4,
        warmup_ratio: 0.0,
        lora: Some(LoraConfig { rank: 2, alpha: 4.0, targets: vec!["q_proj".into(), "down_proj".into()] }),
        ..Default::default()
    }
}

fn read(dir: &Path) -> BTreeMap<String, Vec<f64>> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(n, t)| {
            assert_eq!(t.dtype(), DType::F32, "{n}");
            (n, t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap())
        })
        .collect()
}

/// θ_0 fine-tuned densely-merged the way the method's fine-tune ran (same config, same seed:
/// the engine is deterministic), written as a checkpoint.
fn merged_finetune(base: &Path, examples: &[Example], cfg: &TrainConfig, out: &Path) {
    let model = lm::train::load_for_training(base, &Device::Cpu, cfg).unwrap();
    lm::train::fit(&model, examples, None, cfg, &NextToken, 0, None).unwrap();
    lm::checkpoint::save(&model, out, Some(base)).unwrap();
}

#[test]
fn msa_with_lora_task_vectors_matches_the_dense_formula_in_float64() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    write_tiny_checkpoint(&p("theta_d"), tiny_config(Arch::Llama), 1).unwrap();
    write_tiny_checkpoint(&p("theta_0"), tiny_config(Arch::Llama), 2).unwrap();
    let ledger = vec![CheckpointInfo { step: 0, path: p("theta_0"), clean: true }];
    let (forget, retain, held_out) = (examples(0..3), examples(3..9), examples(9..12));
    let (cache, out) = (p("cache"), p("out"));
    let ctx = Context {
        final_model: &p("theta_d"),
        checkpoints: &ledger,
        forget: &forget,
        retain: &retain,
        held_out: &held_out,
        train: TrainConfig { lr: 0.05, epochs: 3, ..train() }, // the fine-tunes' recipe below
        seed: 7,
        cache: &cache,
        out: &out,
        device: &Device::Cpu,
        pad: 0,
        progress: None,
    };
    let (alpha, beta) = (1.5, 1.0);
    let params = format!("alpha = {alpha}\nbeta = {beta}\ncheckpoint = \"latest-clean\"");
    let report = Msa::from_params(&params.parse::<toml::Table>().unwrap()).unwrap().run(&ctx).unwrap();
    // the fine-tunes are cached as adapters, and combined as low-rank terms
    let ft = FineTune { lr: 0.05, epochs: 3 };
    let fcfg = ft.train_config(&train(), forget.len(), 7);
    let sample = retain_sample(&retain, forget.len(), 7);
    let rcfg = ft.train_config(&train(), sample.len(), 7);
    let fdir = cache_dir(&cache, "forget", &p("theta_0"), &forget, &fcfg).unwrap();
    let rdir = cache_dir(&cache, "retain", &p("theta_0"), &sample, &rcfg).unwrap();
    assert!(lm::lora::is_adapter(&fdir) && !fdir.join("model.safetensors").exists(), "{}", fdir.display());
    assert!(lm::lora::is_adapter(&rdir));
    let lora_terms = report.notes["lora_terms"].as_array().unwrap();
    assert_eq!(lora_terms.len(), 2, "{:?}", report.notes);
    assert_eq!(report.notes["terms"].as_array().unwrap().len(), 1, "θ_D only: no dense θ_0/θ_1/θ_2 terms");

    // the reference: the merged fine-tunes, combined densely in float64
    merged_finetune(&p("theta_0"), &forget, &fcfg, &p("theta_1"));
    merged_finetune(&p("theta_0"), &sample, &rcfg, &p("theta_2"));
    let (d, t0, t1, t2, got) =
        (read(&p("theta_d")), read(&p("theta_0")), read(&p("theta_1")), read(&p("theta_2")), read(&out));
    let mut adapted_changed = 0;
    for (name, g) in &got {
        let mut worst = 0f64;
        for k in 0..g.len() {
            let want = d[name][k] - alpha * (t1[name][k] - t0[name][k]) + beta * (t2[name][k] - t0[name][k]);
            // f32 rounding of the merged checkpoints and of the accumulation
            worst = worst.max((g[k] - want).abs() / (1e-6 + want.abs()).max(1e-3));
        }
        assert!(worst < 2e-3, "{name}: relative error {worst}");
        let changed = g.iter().zip(&d[name]).any(|(a, b)| a != b);
        let adapted = name.contains("q_proj") || name.contains("down_proj");
        assert_eq!(changed, adapted, "{name}: only adapted weights move");
        adapted_changed += changed as usize;
    }
    assert_eq!(adapted_changed, 4, "q_proj and down_proj of both layers");
    // deterministic: the rerun (cache hits) writes the same bytes
    let first = std::fs::read(out.join("model.safetensors")).unwrap();
    let out2 = p("out2");
    let ctx2 = Context { out: &out2, ..ctx };
    let r2 = Msa::from_params(&params.parse::<toml::Table>().unwrap()).unwrap().run(&ctx2).unwrap();
    assert_eq!(r2.notes["forget_cache"], "hit");
    assert_eq!(std::fs::read(out2.join("model.safetensors")).unwrap(), first);

    // task negation: θ_D − α·s·B·A with the fine-tune from θ_D itself
    let tn = p("tn");
    let ctx3 = Context { out: &tn, ..ctx2 };
    let r3 = msa::arithmetic("task_negation", &ctx3, &p("theta_d"), 1.0, 0.0, &ft, None).unwrap();
    assert_eq!(r3.notes["lora_terms"].as_array().unwrap().len(), 1);
    let m = lm::CausalLm::load(&tn, &Device::Cpu, false).unwrap();
    assert_eq!(m.dtype(), DType::F32);

    // the shaped variants refuse adapters
    let e = Msa::from_params(&format!("{params}\nvariant = \"orthogonal\"").parse::<toml::Table>().unwrap())
        .unwrap()
        .run(&Context { out: &p("orth"), ..ctx3 })
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("LoRA adapter") && e.contains("orthogonal"), "{e}");
    assert!(!p("orth").exists());
}
