//! The world quality gate: before any method runs on a world, measure whether θ_D has learned
//! its facts and whether the oracle has not, and stop when it misses the thresholds — a study
//! that rests on a world that did not learn cannot rank methods.
//!
//! Measured on the world's QA items and documents with the same metrics the cells use
//! (`mc_accuracy` forget/retain, `tofu_rouge_forget`/`tofu_rouge_retain` — TOFU's ROUGE-L recall
//! of greedy answers — and `mink_auc`, Min-K% AUC of forget vs held-out documents), for θ_D and
//! the oracle. The summary is written as `quality.json` beside the world (so a cached world is
//! not measured twice) and copied into `RESULTS/world_quality/MODEL-worldSEED.json`, where the
//! report reads it.
//!
//! The thresholds ([`Thresholds::FACTS`]) are those of the default `facts` world, and only
//! `facts` worlds are measured. `world.quality_gate = false` (and `--smoke`) records the
//! summary with the gate "disabled", and the report shows a warning.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::store::MetricRecord;
use crate::suite::{EvalLimits, EvalSuite};

/// Version of the measurement: a cached `quality.json` of another version is measured again.
pub const QUALITY_VERSION: u32 = 1;

/// The quality thresholds a world must meet.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// θ_D's multiple-choice accuracy on forget and on retain questions, at least.
    pub theta_d_mc_min: f64,
    /// θ_D's greedy-answer ROUGE-L recall on forget and on retain questions, at least.
    pub theta_d_rouge_min: f64,
    /// The oracle's multiple-choice accuracy on retain questions, at least.
    pub oracle_retain_mc_min: f64,
    /// The oracle's multiple-choice accuracy on forget questions, at most (chance is 0.2).
    pub oracle_forget_mc_max: f64,
    /// The oracle's Min-K% AUC (forget vs held-out) must lie within 0.5 ± this.
    pub oracle_mink_auc_tolerance: f64,
}

impl Thresholds {
    /// Issue 13's thresholds for the default `facts` world.
    pub const FACTS: Thresholds = Thresholds {
        theta_d_mc_min: 0.95,
        theta_d_rouge_min: 0.8,
        oracle_retain_mc_min: 0.95,
        oracle_forget_mc_max: 0.30,
        oracle_mink_auc_tolerance: 0.08,
    };
}

/// One model's scores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelQuality {
    pub mc_forget: f64,
    pub mc_retain: f64,
    pub rouge_forget: f64,
    pub rouge_retain: f64,
    /// Min-K% AUC, forget vs held-out documents (0.5 = indistinguishable).
    pub mink_auc: f64,
}

/// What `quality.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldQuality {
    pub version: u32,
    pub model: String,
    pub world_seed: u64,
    pub world_hash: String,
    pub theta_d: ModelQuality,
    pub oracle: ModelQuality,
    /// Tokens θ_D was trained on.
    pub tokens_trained: u64,
    /// Wall time of the world's build (θ_D and the oracle), seconds.
    pub seconds: f64,
    pub thresholds: Thresholds,
    /// "passed", "failed" or "disabled" (the gate was switched off).
    pub gate: String,
    /// Each threshold missed, as a sentence naming the number and the threshold.
    pub failures: Vec<String>,
}

impl WorldQuality {
    pub fn passed(&self) -> bool {
        self.gate == "passed"
    }

    /// A short multi-line summary for the terminal.
    pub fn summary(&self) -> String {
        let (d, o) = (&self.theta_d, &self.oracle);
        let mut s = format!(
            "world quality (model {}, world seed {}): gate {}\n\
             \x20 θ_D:    MC forget {:.3}, MC retain {:.3}, ROUGE-L forget {:.3}, retain {:.3}\n\
             \x20 oracle: MC forget {:.3}, MC retain {:.3}, ROUGE-L forget {:.3}, retain {:.3}, Min-K% AUC {:.3}\n\
             \x20 {} tokens, {:.0} s",
            self.model,
            self.world_seed,
            self.gate,
            d.mc_forget,
            d.mc_retain,
            d.rouge_forget,
            d.rouge_retain,
            o.mc_forget,
            o.mc_retain,
            o.rouge_forget,
            o.rouge_retain,
            o.mink_auc,
            self.tokens_trained,
            self.seconds
        );
        for f in &self.failures {
            s.push_str(&format!("\n  - {f}"));
        }
        s
    }
}

/// The thresholds `q` misses, each as a sentence naming the number and the threshold.
pub fn failures(theta_d: &ModelQuality, oracle: &ModelQuality, t: &Thresholds) -> Vec<String> {
    let mut out = Vec::new();
    let mut at_least = |what: &str, v: f64, min: f64| {
        if v.is_nan() || v < min {
            out.push(format!("{what} is {v:.3}, below the threshold {min}"));
        }
    };
    at_least("θ_D's forget MC accuracy", theta_d.mc_forget, t.theta_d_mc_min);
    at_least("θ_D's retain MC accuracy", theta_d.mc_retain, t.theta_d_mc_min);
    at_least("θ_D's forget ROUGE-L recall", theta_d.rouge_forget, t.theta_d_rouge_min);
    at_least("θ_D's retain ROUGE-L recall", theta_d.rouge_retain, t.theta_d_rouge_min);
    at_least("the oracle's retain MC accuracy", oracle.mc_retain, t.oracle_retain_mc_min);
    if oracle.mc_forget.is_nan() || oracle.mc_forget > t.oracle_forget_mc_max {
        out.push(format!(
            "the oracle's forget MC accuracy is {:.3}, above the threshold {} (it should not know the forget facts)",
            oracle.mc_forget, t.oracle_forget_mc_max
        ));
    }
    let dev = (oracle.mink_auc - 0.5).abs();
    if dev.is_nan() || dev > t.oracle_mink_auc_tolerance {
        out.push(format!(
            "the oracle's Min-K% AUC (forget vs held-out) is {:.3}, outside 0.5 ± {} (forget and held-out text must look alike to a model that saw neither)",
            oracle.mink_auc, t.oracle_mink_auc_tolerance
        ));
    }
    out
}

/// The metrics the gate reads.
const GATE_METRICS: [&str; 4] = ["mc_accuracy", "tofu_rouge_forget", "tofu_rouge_retain", "mink_auc"];

/// Scores θ_D and the oracle of `world` on the gate's metrics.
pub fn measure(
    world: &testbed::train::BuiltWorld,
    data_dir: &Path,
    device: &Device,
) -> Result<(ModelQuality, ModelQuality)> {
    let names: Vec<String> = GATE_METRICS.iter().map(|s| s.to_string()).collect();
    let suite = EvalSuite::from_world(&world.world, &names, &EvalLimits::default(), data_dir, &world.final_model)
        .context("the world quality gate's metrics")?;
    let refs = suite.oracle_pass(&world.oracle, device)?;
    let score = |dir: &Path| -> Result<ModelQuality> {
        let m = suite.evaluate(dir, &refs, &world.oracle, device)?;
        let get = |k: &str| -> Result<f64> {
            let r: &MetricRecord = m.get(k).with_context(|| format!("the quality gate found no `{k}` record"))?;
            if let Some(reason) = &r.skipped {
                anyhow::bail!("the quality gate needs `{k}`, which was skipped: {reason}");
            }
            Ok(r.value)
        };
        Ok(ModelQuality {
            mc_forget: get("mc_accuracy/forget")?,
            mc_retain: get("mc_accuracy/retain")?,
            rouge_forget: get("tofu_rouge_forget")?,
            rouge_retain: get("tofu_rouge_retain")?,
            mink_auc: get("mink_auc")?,
        })
    };
    let theta_d = score(&world.final_model).context("θ_D")?;
    let oracle = score(&world.oracle).context("the oracle")?;
    Ok((theta_d, oracle))
}

/// The world's quality, measured once and cached in `WORLD_DIR/quality.json`; the gate is
/// judged against [`Thresholds::FACTS`] when `gate_on` (else "disabled"). Only `facts` worlds
/// are measured (the thresholds are theirs; other kinds have no held-out entities or no QA
/// items to measure them on): `None` for other kinds.
pub fn of_world(
    world: &testbed::train::BuiltWorld,
    model: &str,
    gate_on: bool,
    data_dir: &Path,
    device: &Device,
) -> Result<Option<WorldQuality>> {
    if world.world.resolved.kind != testbed::WorldKind::Facts {
        return Ok(None);
    }
    let path = world.dir.join("quality.json");
    let cached: Option<WorldQuality> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|q: &WorldQuality| q.version == QUALITY_VERSION && q.world_hash == world.world.hash);
    let (theta_d, oracle) = match cached {
        Some(q) => (q.theta_d, q.oracle),
        None => measure(world, data_dir, device)?,
    };
    let thresholds = Thresholds::FACTS;
    let mut missed = failures(&theta_d, &oracle, &thresholds);
    let gate = if !gate_on {
        missed.insert(0, "world.quality_gate = false: the thresholds were not enforced".into());
        "disabled"
    } else if missed.is_empty() {
        "passed"
    } else {
        "failed"
    };
    let info = &world.info;
    let q = WorldQuality {
        version: QUALITY_VERSION,
        model: model.to_string(),
        world_seed: world.world.resolved.seed,
        world_hash: world.world.hash.clone(),
        theta_d,
        oracle,
        tokens_trained: (info.tokens_per_second * info.seconds_theta_d).round() as u64,
        seconds: info.seconds_theta_d + info.seconds_oracle,
        thresholds,
        gate: gate.into(),
        failures: missed,
    };
    crate::store::write_atomic(&path, serde_json::to_string_pretty(&q)?.as_bytes())?;
    Ok(Some(q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(mc_f: f64, mc_r: f64, rouge: f64, auc: f64) -> ModelQuality {
        ModelQuality { mc_forget: mc_f, mc_retain: mc_r, rouge_forget: rouge, rouge_retain: rouge, mink_auc: auc }
    }

    #[test]
    fn a_world_that_learned_passes_and_each_miss_is_named() {
        let t = Thresholds::FACTS;
        assert!(failures(&q(0.99, 0.98, 0.9, 0.9), &q(0.2, 0.97, 0.1, 0.52), &t).is_empty());
        let f = failures(&q(0.637, 0.45, 0.5, 0.9), &q(0.31, 0.94, 0.1, 0.881), &t);
        let text = f.join("\n");
        for needle in [
            "θ_D's forget MC accuracy is 0.637, below the threshold 0.95",
            "θ_D's retain MC accuracy is 0.450",
            "θ_D's forget ROUGE-L recall is 0.500, below the threshold 0.8",
            "the oracle's retain MC accuracy is 0.940",
            "the oracle's forget MC accuracy is 0.310, above the threshold 0.3",
            "Min-K% AUC (forget vs held-out) is 0.881, outside 0.5 ± 0.08",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(f.len(), 7);
        // NaN never passes
        assert_eq!(failures(&q(f64::NAN, 1.0, 1.0, 0.5), &q(0.2, 1.0, 0.0, f64::NAN), &t).len(), 2);
    }
}
