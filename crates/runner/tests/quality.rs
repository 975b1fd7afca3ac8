//! The world quality gate (issue 13).
//!
//! - On a micro world (seconds): the measurement runs end to end, is cached beside the world,
//!   the micro θ_D fails the thresholds and the gate says which, by number; with the gate off
//!   the same world is "disabled", never "passed"; the second oracle (noise floor) is built from
//!   scratch in another data order, differs from the oracle and is reused once built.
//! - `default_world_meets_the_quality_thresholds` (`#[ignore]`: about 10 minutes on 2 cores; run
//!   it with `cargo test --release -p runner --test quality -- --ignored`): the default `facts`
//!   world (200 entities, 8 attributes, forget10, 750 steps of 32 × 128 tokens) passes every
//!   threshold — θ_D ≥ 0.95 MC accuracy and ≥ 0.8 ROUGE-L recall on forget and retain
//!   questions, the oracle ≥ 0.95 on retain and ≤ 0.30 on forget, its Min-K% AUC within
//!   0.5 ± 0.08.

use std::path::{Path, PathBuf};

use candle_core::Device;
use runner::quality::{of_world, Thresholds};
use testbed::train::{build_or_load, build_or_load_noise_oracle, ScratchModel};
use testbed::{ExposureConfig, WorldConfig, WorldKind};

fn no_data() -> PathBuf {
    PathBuf::from("/nonexistent/unlearn-data")
}

#[test]
fn the_gate_measures_a_micro_world_and_names_every_missed_threshold() {
    let cfg = WorldConfig {
        n_entities: Some(20),
        attributes: Some(3),
        bio_paraphrases: Some(1),
        forget: Some("20%".into()),
        held_out_fraction: Some(0.2),
        steps: Some(16),
        batch_size: Some(4),
        seq_len: Some(64),
        checkpoints: Some(4),
        exposure: Some(ExposureConfig { start_checkpoint: Some(2), ..Default::default() }),
        ..WorldConfig::new(WorldKind::Facts)
    };
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runner-quality-worlds");
    let model = ScratchModel::preset("micro").unwrap();
    let world = build_or_load(&cfg, &no_data(), &cache, &model, None).unwrap();
    let _ = std::fs::remove_file(world.dir.join("quality.json"));

    let q = of_world(&world, "micro", true, &no_data(), &Device::Cpu).unwrap().expect("facts worlds are measured");
    eprintln!("{}", q.summary());
    assert_eq!(q.gate, "failed", "a 16-step micro world cannot have learned its facts");
    assert!(!q.failures.is_empty());
    assert!(q
        .failures
        .iter()
        .any(|f| f.contains("θ_D's retain MC accuracy") && f.contains("below the threshold 0.95")));
    for v in [q.theta_d.mc_forget, q.theta_d.mc_retain, q.oracle.mc_forget, q.oracle.mink_auc] {
        assert!((0.0..=1.0).contains(&v), "{v}");
    }
    assert_eq!(q.thresholds, Thresholds::FACTS);
    assert_eq!(q.world_seed, 0);
    assert!(world.dir.join("quality.json").is_file());
    // cached: the same numbers, gate off → disabled with the reason first
    let off = of_world(&world, "micro", false, &no_data(), &Device::Cpu).unwrap().unwrap();
    assert_eq!((off.theta_d.clone(), off.oracle.clone()), (q.theta_d.clone(), q.oracle.clone()));
    assert_eq!(off.gate, "disabled");
    assert!(off.failures[0].contains("world.quality_gate = false"));

    // the second oracle: from scratch, other data order, never the forget documents
    let alt = build_or_load_noise_oracle(&world, None).unwrap();
    assert!(alt.join("COMPLETE").is_file());
    let d = model_state::distance(&alt, &world.oracle).unwrap();
    assert!(d > 0.0, "the second oracle equals the first");
    let stamp = std::fs::read_to_string(alt.join("COMPLETE")).unwrap();
    assert_eq!(build_or_load_noise_oracle(&world, None).unwrap(), alt);
    assert_eq!(std::fs::read_to_string(alt.join("COMPLETE")).unwrap(), stamp, "rebuilt instead of reused");
}

#[test]
#[ignore = "builds the default facts world: about 10 minutes on 2 cores"]
fn default_world_meets_the_quality_thresholds() {
    let cfg = WorldConfig {
        exposure: Some(ExposureConfig { start_checkpoint: Some(4), ..Default::default() }),
        ..WorldConfig::new(WorldKind::Facts)
    };
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runner-quality-default-world");
    let model = ScratchModel::preset("tiny").unwrap();
    let world = build_or_load(&cfg, &no_data(), &cache, &model, None).unwrap();
    let q = of_world(&world, "tiny", true, &no_data(), &Device::Cpu).unwrap().unwrap();
    eprintln!("{}", q.summary());
    assert_eq!(q.gate, "passed", "{}", q.summary());
}
