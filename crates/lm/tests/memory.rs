//! The memory plan against the measured peak resident memory (VmHWM) of a training run, in a
//! child process per shape (this test binary run again on one test), so that nothing else
//! in the process counts.

use candle_core::{DType, Device};
use lm::config::{Arch, LmConfig};
use lm::lora::LoraConfig;
use lm::memory::{estimate, peak_rss_bytes, rss_bytes, LoraShape, StepShape};
use lm::train::{collate, Example, NextToken, Precision, Step, TrainConfig, Trainer};
use lm::CausalLm;

struct Case {
    name: &'static str,
    cfg: LmConfig,
    batch: usize,
    seq: usize,
    precision: Precision,
    checkpointing: bool,
    lora: Option<LoraConfig>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "f32",
            cfg: LmConfig::small(Arch::Llama, 8192, 64, 256, 4, 4, 2, 512),
            batch: 8,
            seq: 256,
            precision: Precision::F32,
            checkpointing: false,
            lora: None,
        },
        Case {
            name: "f32-checkpointed",
            cfg: LmConfig::small(Arch::Qwen2, 4096, 128, 512, 6, 8, 4, 512),
            batch: 4,
            seq: 512,
            precision: Precision::F32,
            checkpointing: true,
            lora: None,
        },
        // weights dominate: what LoRA saves (gradients, moments) and adds (merged weights)
        Case {
            name: "f32-lora",
            cfg: LmConfig::small(Arch::Llama, 4096, 512, 1536, 4, 8, 8, 512),
            batch: 2,
            seq: 64,
            precision: Precision::F32,
            checkpointing: false,
            lora: Some(LoraConfig {
                rank: 16,
                alpha: 32.0,
                targets: vec!["q_proj".into(), "v_proj".into(), "down_proj".into()],
            }),
        },
    ]
}

fn shape(c: &Case) -> StepShape {
    StepShape {
        batch_size: c.batch,
        seq_len: c.seq,
        weights: DType::F32,
        precision: c.precision,
        activation_checkpointing: c.checkpointing,
        fused: std::env::var_os("UNLEARN_NO_FUSED").is_none(),
        reference_model: false,
        lora: c.lora.as_ref().map(|l| LoraShape::of(&c.cfg, l).unwrap()),
    }
}

/// The child: train two steps of one case, print the peak.
#[test]
fn memory_child() {
    let Ok(name) = std::env::var("LM_MEMORY_CHILD") else { return };
    let case = cases().into_iter().find(|c| c.name == name).unwrap();
    let ex: Vec<Example> = (0..case.batch)
        .map(|r| {
            Example::full((0..=case.seq as u32).map(|i| (i * 7 + r as u32 * 13) % case.cfg.vocab_size as u32).collect())
        })
        .collect();
    let refs: Vec<&Example> = ex.iter().collect();
    let batch = collate(&refs, (0..ex.len()).collect(), 0, &Device::Cpu).unwrap();
    let base = rss_bytes().unwrap();
    let mut model = CausalLm::init(case.cfg.clone(), 1, &Device::Cpu, case.lora.is_none()).unwrap();
    if let Some(l) = &case.lora {
        model.attach_lora(l, 1).unwrap();
    }
    let tc = TrainConfig {
        precision: case.precision,
        activation_checkpointing: case.checkpointing,
        warmup_steps: Some(0),
        ..Default::default()
    };
    let mut t = Trainer::new(&model, tc, 3).unwrap();
    for _ in 0..3 {
        t.step(&NextToken, &[Step { primary: &batch, secondary: None }]).unwrap();
    }
    println!("MEMORY base={base} peak={}", peak_rss_bytes().unwrap());
}

#[test]
fn the_estimate_is_within_25_percent_of_the_measured_peak() {
    if std::env::var_os("LM_MEMORY_CHILD").is_some() || peak_rss_bytes().is_none() {
        println!("SKIPPED: child process, or no /proc/self/status");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for case in cases() {
        let out = std::process::Command::new(&exe)
            .args(["--exact", "memory_child", "--nocapture", "--test-threads", "1"])
            .env("LM_MEMORY_CHILD", case.name)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains("MEMORY base=")).unwrap_or_else(|| {
            panic!("{}: child printed no measurement:\n{text}\n{}", case.name, String::from_utf8_lossy(&out.stderr))
        });
        let num =
            |k: &str| -> u64 { line.split(k).nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap() };
        let (base, peak) = (num("base="), num("peak="));
        let mut plan = estimate(&case.cfg, &shape(&case)).unwrap();
        plan.runtime = base; // the process before the model: measured, not the planning allowance
        let est = plan.total() as f64;
        let ratio = est / peak as f64;
        println!(
            "{}: estimate {} vs measured peak {} (ratio {ratio:.3}; {})",
            case.name,
            lm::memory::gb(est as u64),
            lm::memory::gb(peak),
            plan.describe()
        );
        assert!(
            (0.75..=1.25).contains(&ratio),
            "{}: estimate {est} vs measured peak {peak} (ratio {ratio:.3})",
            case.name
        );
    }
}
