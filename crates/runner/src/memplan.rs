//! The memory plan of a sweep: for every model and training method, the peak memory of its
//! training step ([`lm::memory::estimate`]: weights, gradients, optimizer state, activations
//! at the batch size and sequence length, precision, activation checkpointing), printed by
//! `bench sweep --dry-run` and checked against the device before any work: a run that cannot
//! fit fails at once with the numbers and what to change.

use crate::config::{ModelSource, Sweep};
use crate::exec::ExecOptions;
use anyhow::{bail, Context, Result};
use lm::memory::{estimate, gb, MemoryPlan, StepShape};
use lm::train::Precision;

/// One row of the plan.
#[derive(Debug, Clone)]
pub struct PlanRow {
    pub model: String,
    pub method: String,
    pub batch_size: usize,
    pub seq_len: usize,
    pub precision: Precision,
    pub checkpointing: bool,
    pub plan: MemoryPlan,
}

/// The model's config, when it can be read without work (`None`: a hub model not yet in the
/// cache, or a `--smoke` stand-in).
fn model_config(sweep: &Sweep, m: &crate::config::ModelSpec, opts: &ExecOptions) -> Result<Option<lm::LmConfig>> {
    match &m.source {
        ModelSource::Scratch(preset) => {
            let preset = if opts.smoke { "micro" } else { preset.as_str() };
            let spec = testbed::train::ScratchModel::preset(preset)?;
            let seq = sweep.world_config.seq_len.unwrap_or(128);
            Ok(Some(spec.lm_config((seq + 1).max(256), 0, 1, 2)))
        }
        _ if opts.smoke => Ok(None),
        ModelSource::Path(p) => Ok(Some(lm::LmConfig::from_file(&p.join("config.json"))?)),
        ModelSource::Hub { id, revision } => {
            let env = hub::ResolveOptions::from_env();
            let offline = hub::ResolveOptions { offline: Some(true), progress: false, ..env };
            Ok(hub::resolve(id, revision.as_deref(), &offline)
                .ok()
                .and_then(|d| lm::LmConfig::from_file(&d.join("config.json")).ok()))
        }
    }
}

/// The plan of every (model, training method) pair of the sweep.
pub fn plan(sweep: &Sweep, opts: &ExecOptions) -> Result<Vec<PlanRow>> {
    let fused = lm::Engine::from_env().fused_kernels && lm::default_device().map(|d| d.is_cpu()).unwrap_or(true);
    let mut rows = vec![];
    for m in &sweep.models {
        let Some(cfg) = model_config(sweep, m, opts).with_context(|| format!("memory plan: model {}", m.name))? else {
            rows.push(PlanRow {
                model: m.name.clone(),
                method: "*".into(),
                batch_size: 0,
                seq_len: 0,
                precision: sweep.train.precision_for(m.dtype),
                checkpointing: sweep.train.activation_checkpointing,
                plan: MemoryPlan::default(),
            });
            continue;
        };
        for (name, spec) in &sweep.methods {
            // an external method trains in its own process: nothing to plan here
            let Some(method) = methods::spec(&spec.kind) else {
                continue;
            };
            // the largest batch of the method's grid
            let mut params = spec.fixed.clone();
            if let Some(values) = spec.grid.get("batch_size") {
                if let Some(max) = values.iter().filter_map(|v| v.as_integer()).max() {
                    params.insert("batch_size".into(), toml::Value::Integer(max));
                }
            }
            let tc = crate::exec::cell_train_config(sweep, &m.name, &params, 0)?;
            let seq_len = (sweep.train.max_seq_len as usize).min(cfg.max_position_embeddings);
            let two = method.retain_batch;
            let shape = StepShape {
                batch_size: tc.batch_size * if two { 2 } else { 1 },
                seq_len,
                // methods load θ_D in f32 and train bf16 through a bf16 copy
                weights: candle_core::DType::F32,
                precision: tc.precision,
                activation_checkpointing: tc.activation_checkpointing,
                fused,
                reference_model: method.frozen_reference,
                lora: match &tc.lora {
                    None => None,
                    Some(l) => Some(
                        lm::memory::LoraShape::of(&cfg, l).with_context(|| format!("train.lora, model {}", m.name))?,
                    ),
                },
            };
            rows.push(PlanRow {
                model: m.name.clone(),
                method: name.clone(),
                batch_size: tc.batch_size,
                seq_len,
                precision: tc.precision,
                checkpointing: tc.activation_checkpointing,
                plan: estimate(&cfg, &shape)?,
            });
        }
    }
    Ok(rows)
}

/// The memory a run may use: `[train] memory_limit_gb`, else what the device has available.
pub fn available(sweep: &Sweep) -> Option<u64> {
    if let Some(g) = sweep.train.memory_limit_gb {
        return Some((g * (1u64 << 30) as f64) as u64);
    }
    let device = lm::default_device().ok()?;
    lm::memory::available_bytes(&device)
}

/// The plan as text, one line per row, with the memory available.
pub fn format(rows: &[PlanRow], available: Option<u64>) -> String {
    let mut out = String::from("memory plan (peak of a training step):\n");
    for r in rows {
        if r.plan.total() == 0 {
            out.push_str(&format!(
                "  {}: not planned (a hub model not yet downloaded, or a --smoke stand-in)\n",
                r.model
            ));
            continue;
        }
        out.push_str(&format!(
            "  {} / {}: batch {} × {} tokens, {}{}: {}\n",
            r.model,
            r.method,
            r.batch_size,
            r.seq_len,
            r.precision.as_str(),
            if r.checkpointing { ", activation checkpointing" } else { "" },
            r.plan.describe()
        ));
    }
    match available {
        Some(a) => out.push_str(&format!("  available: {}\n", gb(a))),
        None => out.push_str("  available: unknown\n"),
    }
    out
}

/// Fails when a row does not fit in `available`, with the numbers and what to change.
pub fn check(rows: &[PlanRow], available: Option<u64>) -> Result<()> {
    let Some(avail) = available else { return Ok(()) };
    let over: Vec<&PlanRow> = rows.iter().filter(|r| r.plan.total() > avail).collect();
    if over.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = over
        .iter()
        .map(|r| {
            format!(
                "{} / {}: needs {} ({}), {} available",
                r.model,
                r.method,
                gb(r.plan.total()),
                r.plan.describe(),
                gb(avail)
            )
        })
        .collect();
    bail!(
        "the memory plan does not fit:\n  - {}\nLower [train] batch_size or max_seq_len, set [train] precision = \"bf16\" (or \"bf16-mixed\"), \
         set [train] activation_checkpointing = true, or use a machine with more memory ([train] memory_limit_gb overrides the detected amount)",
        lines.join("\n  - ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(train: &str) -> Sweep {
        let text = format!(
            "metrics = [\"tofu_model_utility\"]\nseeds = [0]\n[world]\nkind = \"facts\"\n[[models]]\nname = \"m\"\nscratch = \"tiny\"\n\
             [train]\n{train}\n[methods.ga]\nkind = \"gradient_ascent\"\nbatch_size = [4, 16]\n[methods.msa]\nkind = \"msa\"\n"
        );
        crate::config::parse_sweep(&text, std::path::Path::new("t.toml"), &crate::config::Registry::DEFAULT).unwrap()
    }

    #[test]
    fn the_plan_follows_batch_precision_checkpointing_and_the_limit() {
        let opts = ExecOptions::default();
        let base = plan(&sweep(""), &opts).unwrap();
        assert_eq!(base.len(), 2);
        let ga = base.iter().find(|r| r.method == "ga").unwrap();
        assert_eq!(ga.batch_size, 16, "the grid's largest batch is planned");
        let text = format(&base, Some(1 << 40));
        assert!(
            text.contains("m / ga: batch 16") && text.contains("weights") && text.contains("activations"),
            "{text}"
        );
        let total =
            |train: &str| plan(&sweep(train), &opts).unwrap().iter().find(|r| r.method == "msa").unwrap().plan.total();
        let t0 = total("");
        assert!(total("batch_size = 32") > t0, "a larger batch needs more");
        assert!(total("max_seq_len = 16") < t0, "shorter sequences need less");
        assert!(total("activation_checkpointing = true") < t0, "checkpointing needs less");
        assert_ne!(total("precision = \"bf16\""), t0);
        // a limit it cannot fit: an error with the numbers and what to change
        let s = sweep("memory_limit_gb = 0.001");
        let e = check(&plan(&s, &opts).unwrap(), available(&s)).unwrap_err().to_string();
        assert!(
            e.contains("m / ga: needs")
                && e.contains("available")
                && e.contains("batch_size")
                && e.contains("activation_checkpointing"),
            "{e}"
        );
        let s = sweep("memory_limit_gb = 1000");
        check(&plan(&s, &opts).unwrap(), available(&s)).unwrap();
        // LoRA: no optimizer state for the frozen weights
        let opt = |train: &str| plan(&sweep(train), &opts).unwrap().iter().find(|r| r.method == "msa").unwrap().plan;
        let (full, lora) = (opt(""), opt("lora = { rank = 4, alpha = 8 }"));
        assert!(lora.optimizer * 10 < full.optimizer, "{lora:?} vs {full:?}");
        assert!(lora.total() < full.total());
        // a target no weight has: refused at planning, before any work, naming it
        let e = plan(&sweep("lora = { rank = 4, alpha = 8, targets = [\"c_attn\"] }"), &opts).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("train.lora") && e.contains("\"c_attn\" matches no linear weight"), "{e}");
    }

    /// Every `[[models]]` key changes what runs: `name` the cells, `scratch`/`path`/`hub`/
    /// `revision` the weights (here: the planned shapes or the source), `dtype` the precision
    /// (`exec::tests::model_dtype_changes_the_training_precision`).
    #[test]
    fn every_model_key_changes_what_runs() {
        let parse = |model: &str| {
            let text = format!(
                "metrics = [\"tofu_model_utility\"]\nseeds = [0]\n[world]\nkind = \"facts\"\n[[models]]\n{model}\n[methods.ga]\nkind = \"gradient_ascent\"\n"
            );
            crate::config::parse_sweep(&text, std::path::Path::new("t.toml"), &crate::config::Registry::DEFAULT)
                .unwrap()
        };
        let opts = ExecOptions::default();
        let a = parse("name = \"m\"\nscratch = \"tiny\"");
        let b = parse("name = \"m\"\nscratch = \"micro\"");
        assert_ne!(plan(&a, &opts).unwrap()[0].plan.total(), plan(&b, &opts).unwrap()[0].plan.total(), "scratch");
        let c = parse("name = \"other\"\nscratch = \"tiny\"");
        assert_ne!(crate::cells::expand(&a)[0].id, crate::cells::expand(&c)[0].id, "name");
        let h1 = parse("name = \"m\"\nhub = \"org/model\"");
        let h2 = parse("name = \"m\"\nhub = \"org/model\"\nrevision = \"v2\"");
        let h3 = parse("name = \"m\"\nhub = \"org/other\"");
        assert_ne!(h1.models[0].source, h2.models[0].source, "revision");
        assert_ne!(h1.models[0].source, h3.models[0].source, "hub");
        let p = parse("name = \"m\"\npath = \"some/folder\"");
        assert_eq!(p.models[0].source, crate::config::ModelSource::Path("some/folder".into()), "path");
    }
}
