//! What made a cell's result: a [`Fingerprint`] of everything that determines it, recorded in
//! the cell's JSON. A result counts as done only when its stored fingerprint equals the one the
//! current config gives; otherwise it is *stale* and a sweep reruns it (issue 22). A result
//! written before fingerprints existed has none and is stale too.
//!
//! A fingerprint is a map of named fields plus a combined hash. Fields, compared in [`FIELDS`]
//! order so that a diff names the first that differs (the most telling first: a `--smoke` run
//! also has another world and model):
//! - `format`: [`RESULT_FORMAT`], bumped when what a cell records changes;
//! - `smoke`: `true` / `false`;
//! - `data_files`: the world's data files (relative path and sha256, `ResolvedWorld::data_files`);
//! - `world`: `ResolvedWorld::short_hash()` of the cell's world seed (the smoke-shrunk world
//!   with `--smoke`), the hash in the world's cache folder name;
//! - `model`: the model source — a scratch preset's name and `ScratchModel` spec (`micro` with
//!   `--smoke`); a local folder's path and content (`config.json`, the weights index, and for
//!   each safetensors file its header, its length and its first and last MiB of data: a sampled
//!   content hash, cheap for a 7B model and changed by any retraining); a hub id and revision
//!   (not the commit a branch points at: pin a commit to catch a moved branch); with `--smoke`
//!   for a real model, the stand-in's family;
//! - `dtype`: as configured;
//! - `metrics`: the metric names with their `Metric::version()`, the [`EvalLimits`] in force
//!   and, for `toxigen_generation`, the toxicity classifier (path and `config.json`);
//! - `method`: the method's kind and parameters (and the content of a `checkpoint = "path:DIR"`
//!   folder);
//! - `train`: the cell's training config after its overrides, exactly as run (`none` for the
//!   reference rows, which train nothing). A cell whose method sets its own `epochs` also
//!   hashes a marker of the warm-up fix (the warm-up is `warmup_epochs` of the method's epochs;
//!   before, of [train].epochs), so its results from before the fix are stale.
//!
//! Values are short (`f32`, `true`) or 16 hex digits of a SHA-256. Not in the fingerprint: the
//! code's version apart from the metric versions and [`RESULT_FORMAT`] (the git commit is
//! provenance only, so a commit does not make every result stale).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cells::Cell;
use crate::config::{ModelSource, ModelSpec, Sweep};

/// Version of what a cell records (metric records, their names and sub-records): bump it when
/// that changes, so that results written before are rerun.
pub const RESULT_FORMAT: u32 = 1;

/// The fields of a fingerprint, in the order a diff reports them (the schema's list).
pub use results_schema::FIELDS;

/// Bytes read from each end of a safetensors file's data for the model's content hash.
const SAMPLE_BYTES: u64 = 1 << 20;

/// Everything that determines a cell's result (the layout is the schema's).
pub use results_schema::Fingerprint;

/// How a stored result's fingerprint (`None` for a file written before fingerprints) differs
/// from `current`: the first field in [`FIELDS`] order, then any other field by name (the
/// hash when only it differs). `None` when they are equal.
pub fn change_from(current: &Fingerprint, stored: Option<&Fingerprint>) -> Option<FieldChange> {
    let Some(stored) = stored else {
        return Some(FieldChange { field: "fingerprint".into(), stored: None, current: None, detail: None });
    };
    if stored == current {
        return None;
    }
    let field = stored.first_difference(current, |_| true).unwrap_or_else(|| "hash".to_owned());
    let get = |f: &Fingerprint| if field == "hash" { Some(f.hash.clone()) } else { f.fields.get(&field).cloned() };
    Some(FieldChange { stored: get(stored), current: get(current), field, detail: None })
}
/// The first field in which a stored result's fingerprint differs from the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// A name from [`FIELDS`]; `fingerprint` when the result has none at all.
    pub field: String,
    pub stored: Option<String>,
    pub current: Option<String>,
    /// What changed in the readable config behind the field, when that can be told from the
    /// stored `resolved_config`, e.g. `n_entities: 100 → 120`.
    pub detail: Option<String>,
}

impl fmt::Display for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == "fingerprint" {
            return f.write_str("fingerprint: none, written before results recorded what made them");
        }
        use results_schema::ShortValue;
        write!(f, "{}: {} → {}", self.field, ShortValue(self.stored.as_deref()), ShortValue(self.current.as_deref()))?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// The key of `resolved_config` (see [`crate::store::resolved_config`]) behind a field, for
/// [`FieldChange::detail`].
pub fn config_key(field: &str) -> Option<&'static str> {
    match field {
        "world" => Some("world"),
        "model" | "dtype" => Some("model"),
        "metrics" => Some("metrics"),
        "method" => Some("method"),
        "train" => Some("train"),
        _ => None,
    }
}

/// The first difference between two JSON values, as `path: old → new` (keys in order; arrays
/// shown whole), or `None` when they are equal.
pub fn json_difference(stored: &serde_json::Value, current: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    fn walk(path: &str, a: Option<&Value>, b: Option<&Value>) -> Option<String> {
        if a == b {
            return None;
        }
        if let (Some(Value::Object(x)), Some(Value::Object(y))) = (a, b) {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            return keys.into_iter().find_map(|k| {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(&p, x.get(k), y.get(k))
            });
        }
        let show = |v: Option<&Value>| {
            let s = v.map_or("(none)".to_owned(), |v| v.to_string());
            if s.chars().count() > 60 {
                format!("{}…", s.chars().take(60).collect::<String>())
            } else {
                s
            }
        };
        let name = if path.is_empty() { "value" } else { path };
        Some(format!("{name}: {} → {}", show(a), show(b)))
    }
    walk("", Some(stored), Some(current))
}

/// The fingerprints of a sweep's cells. The parts shared by many cells (model content, worlds,
/// metrics) are computed once, in [`SweepFingerprints::new`]; no model is loaded.
pub struct SweepFingerprints {
    smoke: bool,
    /// By model name: (`model`, `dtype`).
    models: BTreeMap<String, (String, String)>,
    /// By world seed: (`data_files`, `world`).
    worlds: BTreeMap<u64, (String, String)>,
    metrics: String,
    train: crate::config::TrainTable,
    /// By method name, for `external` methods: [`crate::external::fingerprint_part`] (the
    /// command, env and the content of the scripts it names).
    externals: BTreeMap<String, String>,
}

impl SweepFingerprints {
    /// `worlds`: the resolved world of every world seed, as [`crate::exec::validate_worlds`]
    /// returns them (smoke-shrunk when `smoke`).
    pub fn new(
        sweep: &Sweep,
        smoke: bool,
        worlds: &BTreeMap<u64, testbed::ResolvedWorld>,
    ) -> Result<SweepFingerprints> {
        let mut models = BTreeMap::new();
        for m in &sweep.models {
            let source = model_fingerprint(m, smoke).with_context(|| format!("models.{}: fingerprint", m.name))?;
            models.insert(m.name.clone(), (source, m.dtype.as_str().to_owned()));
        }
        let worlds = worlds
            .iter()
            .map(|(&seed, w)| Ok((seed, (hash_json(&w.data_files)?, w.short_hash()))))
            .collect::<Result<_>>()?;
        Ok(SweepFingerprints {
            smoke,
            models,
            worlds,
            metrics: metrics_fingerprint(sweep, smoke)?,
            train: sweep.train.clone(),
            externals: sweep
                .methods
                .iter()
                .filter_map(|(name, m)| m.external.as_ref().map(|e| (name, e)))
                .map(|(name, e)| Ok((name.clone(), crate::external::fingerprint_part(e)?)))
                .collect::<Result<_>>()?,
        })
    }

    /// The fingerprint of `cell` (a cell of the sweep this was made for).
    pub fn of(&self, cell: &Cell) -> Result<Fingerprint> {
        let (model, dtype) = self
            .models
            .get(&cell.model)
            .with_context(|| format!("cell {}: model `{}` is not in the sweep", cell.key, cell.model))?;
        let (data_files, world) = self
            .worlds
            .get(&cell.world_seed)
            .with_context(|| format!("cell {}: world seed {} was not resolved", cell.key, cell.world_seed))?;
        let train = if cell.is_reference() {
            "none".to_owned()
        } else {
            let t = self
                .train
                .with_overrides(&cell.params)
                .with_context(|| format!("cell {}: training overrides", cell.key))?;
            let h = hash_json(&t)?;
            if t.epochs != self.train.epochs && t.warmup_epochs > 0.0 {
                // Before the warm-up fix (issue 18) a cell whose method set its own `epochs` ran
                // the warm-up as a fraction of [train].epochs; such results are stale. Cells run
                // with [train]'s epochs ran the same schedule before and after, and keep their hash.
                hash_json(&(h, "warmup: warmup_epochs of the method's own epochs"))?
            } else {
                h
            }
        };
        let fields = [
            ("format", RESULT_FORMAT.to_string()),
            ("smoke", self.smoke.to_string()),
            ("data_files", data_files.clone()),
            ("world", world.clone()),
            ("model", model.clone()),
            ("dtype", dtype.clone()),
            ("metrics", self.metrics.clone()),
            (
                "method",
                method_fingerprint(
                    cell,
                    self.smoke,
                    self.externals.get(&cell.method).filter(|_| cell.kind == crate::external::KIND),
                )?,
            ),
            ("train", train),
        ];
        Ok(Fingerprint::new(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    }
}

/// The `method` field: kind and parameters, plus the content of a `checkpoint = "path:DIR"`
/// folder (with `--smoke` a stand-in is made from the path, so the path alone counts); for an
/// `external` method, `external` (its command, env and the content of the scripts it names).
fn method_fingerprint(cell: &Cell, smoke: bool, external: Option<&String>) -> Result<String> {
    let mut h = Sha256::new();
    h.update(serde_json::to_string(&serde_json::json!({ "kind": cell.kind, "params": cell.params }))?.as_bytes());
    if let Some(e) = external {
        h.update(format!("external={e}").as_bytes());
    }
    let checkpoint = cell.params.get("checkpoint").and_then(|v| v.as_str());
    if let Some(spec) = checkpoint.and_then(|c| c.strip_prefix("hub:")) {
        // a pinned revision is named by the parameters; an unpinned one follows the folder
        // the hub cache holds now
        if !smoke && !spec.contains('@') {
            match crate::exec::resolve_hub_checkpoint(spec) {
                Ok(dir) => h.update(folder_content_hash(&dir)?.as_bytes()),
                Err(_) => h.update(b"missing"),
            }
        }
    }
    if let Some(dir) = checkpoint.and_then(|c| c.strip_prefix("path:")) {
        if !smoke {
            let dir = Path::new(dir);
            if dir.is_dir() {
                h.update(folder_content_hash(dir)?.as_bytes());
            } else {
                h.update(b"missing");
            }
        }
    }
    Ok(hex16(&h.finalize()))
}

/// The `metrics` field: names (sorted) with their versions, the evaluation limits in force and,
/// for `toxigen_generation`, the classifier.
fn metrics_fingerprint(sweep: &Sweep, smoke: bool) -> Result<String> {
    let mut names: Vec<(&str, u32)> = Vec::new();
    for (i, n) in sweep.metrics.iter().enumerate() {
        let v = metric_version(n)
            .with_context(|| format!("{}: metrics[{i}]: unknown metric `{n}`", sweep.source.display()))?;
        names.push((n, v));
    }
    names.sort();
    let limits = sweep.limits(smoke);
    let classifier = if !evals::registry::needs_classifier(&sweep.metrics) {
        None
    } else if smoke {
        Some("smoke: tiny random RoBERTa, seed 0".to_owned())
    } else {
        sweep.toxicity_classifier.as_ref().map(|dir| {
            let config = std::fs::read(dir.join("config.json")).map(|b| hex16(&Sha256::digest(&b)));
            format!("{} {}", dir.display(), config.unwrap_or_else(|_| "no config.json".into()))
        })
    };
    let mut what = serde_json::json!({ "metrics": names, "limits": limits, "toxicity_classifier": classifier });
    // (only when a judged accuracy has an LM judge, so ROUGE-judged results stay current)
    if let Some(dir) = sweep.judge.as_ref().filter(|_| sweep.metrics.iter().any(|m| m.starts_with("acc_"))) {
        what["judge"] = serde_json::json!({
            "model": if smoke { "smoke: θ_D's stand-in".to_owned() } else { format!("{} {}", dir.display(), folder_content_hash(dir)?) },
            "prompt": crate::judge::PROMPT_VERSION,
        });
    }
    // (only when there are attacks, so results made before attacks existed stay current)
    if !sweep.attacks.is_empty() {
        what["attacks"] = serde_json::json!({
            "quantize": sweep.attacks.quantize.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "quantize_lm_head": sweep.attacks.quantize_lm_head,
        });
        // (only when set, so quantize-only results stay current)
        if let Some(r) = &sweep.attacks.relearn {
            what["attacks"]["relearn"] = serde_json::json!({ "config": r, "version": crate::relearn::VERSION });
        }
    }
    hash_json(&what)
}

/// The `model` field (see the module docs).
fn model_fingerprint(model: &ModelSpec, smoke: bool) -> Result<String> {
    match &model.source {
        ModelSource::Scratch(preset) => {
            let preset = if smoke { "micro" } else { preset.as_str() };
            let spec = testbed::train::ScratchModel::preset(preset)?;
            hash_json(&serde_json::json!({ "scratch": preset, "spec": spec }))
        }
        ModelSource::Path(_) | ModelSource::Hub { .. } if smoke => {
            let family = testbed::smoke::family_of(&crate::exec::model_label(&model.source, &model.name));
            hash_json(&serde_json::json!({ "smoke_stand_in": family }))
        }
        ModelSource::Hub { id, revision } => {
            hash_json(&serde_json::json!({ "hub": id, "revision": revision.as_deref().unwrap_or("main") }))
        }
        ModelSource::Path(p) => {
            let content = folder_content_hash(p)?;
            hash_json(&serde_json::json!({ "path": p.display().to_string(), "content": content }))
        }
    }
}

/// A sampled content hash of a Hugging Face folder: `config.json`, `model.safetensors.index.json`
/// when there is one, and each safetensors file (the index's shards, else `model.safetensors`):
/// its header, its length, and the first and last [`SAMPLE_BYTES`] of its data.
pub fn folder_content_hash(dir: &Path) -> Result<String> {
    let mut h = Sha256::new();
    let read =
        |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("cannot read {}", dir.join(name).display()));
    h.update(read("config.json")?);
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<String> = if index.is_file() {
        let text = read("model.safetensors.index.json")?;
        h.update(&text);
        let v: serde_json::Value =
            serde_json::from_slice(&text).with_context(|| format!("{}: not JSON", index.display()))?;
        let mut shards: Vec<String> = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .with_context(|| format!("{}: no weight_map", index.display()))?
            .values()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        shards.sort();
        shards.dedup();
        shards
    } else {
        vec!["model.safetensors".to_owned()]
    };
    for name in files {
        let path = dir.join(&name);
        h.update(name.as_bytes());
        h.update(safetensors_sample(&path).with_context(|| format!("{}: content hash", path.display()))?);
    }
    Ok(hex16(&h.finalize()))
}

/// A safetensors file's header, its length, and the first and last [`SAMPLE_BYTES`] of its data.
fn safetensors_sample(path: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).context("cannot open")?;
    let len = f.metadata().context("cannot stat")?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).context("too short for a safetensors header")?;
    let header_len = u64::from_le_bytes(n);
    if header_len > len.saturating_sub(8) || header_len > 100 << 20 {
        bail!("header length {header_len} does not fit a file of {len} bytes");
    }
    let mut out = len.to_le_bytes().to_vec();
    let data_start = 8 + header_len;
    let mut take = |from: u64, n: u64| -> Result<()> {
        let mut buf = vec![0u8; n as usize];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut buf)?;
        out.extend_from_slice(&buf);
        Ok(())
    };
    take(8, header_len)?;
    let data = len - data_start;
    take(data_start, data.min(SAMPLE_BYTES))?;
    if data > SAMPLE_BYTES {
        take(len - data.min(SAMPLE_BYTES), data.min(SAMPLE_BYTES))?;
    }
    Ok(out)
}

/// The version of the metric `name` (any name of [`crate::suite::known_metrics`]), read from its
/// implementation without data: each metric is built empty, as the suite builds it full.
pub fn metric_version(name: &str) -> Option<u32> {
    if name == "param_distance_to_oracle" {
        // computed by the suite itself (no `Metric`); its records say version "1"
        return Some(1);
    }
    metric_of(name).map(|m| m.version())
}

/// The metric type the suite uses for `name`, built without items (for its name and version).
fn metric_of(name: &str) -> Option<Box<dyn evals::Metric>> {
    use evals::muse::{KnowMem, MinKAuc, PrivLeak, VerbMem};
    use evals::recovery::{CleanAnswerAccuracy, Recovery};
    use evals::tofu::{
        AnswerRouge, ForgetQuality, ModelUtility, PerturbedMean, Probability, QaTemplate, Side, TruthRatio,
    };
    use evals::toxigen::{GenerationToxicity, Toxigen, ToxigenConfig, ToxigenLikelihood};
    use evals::truthfulqa::{TruthfulQaMc1, TruthfulQaMc2};
    let t = QaTemplate::default;
    let truth_ratio = |side| TruthRatio::new(vec![], t(), side).ok().map(|m| Box::new(m) as Box<dyn evals::Metric>);
    Some(match name {
        "tofu_prob_forget" => Box::new(Probability::new(vec![], t(), Side::Forget)),
        "tofu_prob_retain" => Box::new(Probability::new(vec![], t(), Side::Retain)),
        "tofu_rouge_forget" => Box::new(AnswerRouge::new(vec![], t(), Side::Forget, 0)),
        "tofu_rouge_retain" => Box::new(AnswerRouge::new(vec![], t(), Side::Retain, 0)),
        "tofu_truth_ratio_forget" => truth_ratio(Side::Forget)?,
        "tofu_truth_ratio_retain" => truth_ratio(Side::Retain)?,
        "tofu_forget_quality" => Box::new(ForgetQuality {
            items: vec![],
            template: t(),
            oracle_truth_ratios: vec![],
            perturbed_mean: PerturbedMean::default(),
        }),
        "tofu_model_utility" => Box::new(ModelUtility {
            items: vec![],
            template: t(),
            max_new_tokens: 0,
            extra: BTreeMap::new(),
            perturbed_mean: PerturbedMean::default(),
            // version 1; with TOFU's utility sets it is 2, and those sets' files are in the
            // world's hash (testbed::tofu::files), so such cells are told apart by the world
            sets: vec![],
        }),
        "acc_forget" | "acc_recover" | "acc_retain" => {
            let acc = match name {
                "acc_forget" => evals::judge::Acc::Forget,
                "acc_recover" => evals::judge::Acc::Recover,
                _ => evals::judge::Acc::Retain,
            };
            Box::new(evals::judge::JudgedAccuracy::new(acc, vec![], vec![], t(), 0).ok()?)
        }
        "muse_knowmem_forget" => Box::new(KnowMem::new(vec![], t(), Side::Forget, 0)),
        "muse_knowmem_retain" => Box::new(KnowMem::new(vec![], t(), Side::Retain, 0)),
        "muse_verbmem" => Box::new(VerbMem { passages: vec![], max_new_tokens: 0 }),
        "mink_auc" => Box::new(MinKAuc { forget: vec![], holdout: vec![], k: 0.0 }),
        "muse_privleak" => Box::new(PrivLeak { forget: vec![], holdout: vec![], k: 0.0, oracle_auc: 0.0 }),
        "kl_to_oracle" => Box::new(evals::lm::NextTokenKl { texts: vec![], oracle_rows: vec![] }),
        "perplexity" => Box::new(evals::lm::Perplexity::new("perplexity", vec![])),
        "mc_accuracy" => Box::new(crate::suite::McAccuracy {
            items: vec![],
            direction: evals::Direction::HigherIsBetter,
            template: Default::default(),
        }),
        "restor_clean_acc" => Box::new(CleanAnswerAccuracy { items: vec![], template: t() }),
        "restor_recovery" => Box::new(Recovery::new(vec![], t(), 0.0, 0.0)),
        "truthfulqa_mc1" => Box::new(TruthfulQaMc1 { items: vec![] }),
        "truthfulqa_mc2" => Box::new(TruthfulQaMc2 { items: vec![] }),
        "toxigen" => Box::new(Toxigen { statements: vec![], config: ToxigenConfig::default() }),
        "toxigen_likelihood" => Box::new(ToxigenLikelihood { statements: vec![] }),
        "toxigen_generation" => Box::new(GenerationToxicity { prompts: vec![], max_new_tokens: 0, classifier: None }),
        "mia_loss_auc" => Box::new(evals::mia::MiaLoss { forget: vec![], holdout: vec![] }),
        "mia_zlib_auc" => Box::new(evals::mia::MiaZlib { forget: vec![], holdout: vec![] }),
        "mia_minkpp_auc" => Box::new(evals::mia::MiaMinKpp { forget: vec![], holdout: vec![], k: 0.0 }),
        "mia_gradnorm_auc" => Box::new(evals::mia::MiaGradNorm { forget: vec![], holdout: vec![] }),
        "mia_reference_auc" => Box::new(evals::mia::MiaReference {
            forget: vec![],
            holdout: vec![],
            reference_forget_nll: vec![],
            reference_holdout_nll: vec![],
        }),
        "exact_memorization" => Box::new(evals::memorisation::ExactMemorisation { texts: vec![] }),
        _ => return None,
    })
}

fn hash_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(hex16(&Sha256::digest(serde_json::to_string(value).context("fingerprint: cannot serialise")?.as_bytes())))
}

fn hex16(digest: &[u8]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric the suite knows has a version, read from the metric type whose name it is.
    #[test]
    fn every_known_metric_has_a_version_from_its_own_type() {
        for name in crate::suite::known_metrics() {
            assert!(metric_version(name).is_some(), "{name}");
            if name != "param_distance_to_oracle" {
                assert_eq!(metric_of(name).unwrap().name(), name);
            }
        }
        assert_eq!(metric_version("nope"), None);
    }

    #[test]
    fn the_first_differing_field_is_named_in_field_order() {
        let fp = |pairs: &[(&str, &str)]| {
            Fingerprint::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let a = fp(&[("world", "aaaaaaaaaaaaaaaa"), ("train", "1111"), ("smoke", "false")]);
        let b = fp(&[("world", "bbbbbbbbbbbbbbbb"), ("train", "2222"), ("smoke", "false")]);
        assert_eq!(change_from(&a, Some(&a)), None);
        let c = change_from(&b, Some(&a)).unwrap();
        assert_eq!(c.to_string(), "world: aaaaaaaa… → bbbbbbbb…");
        assert_eq!(change_from(&b, None).unwrap().field, "fingerprint");
        let d = fp(&[("world", "aaaaaaaaaaaaaaaa"), ("train", "1111"), ("smoke", "true")]);
        assert_eq!(change_from(&d, Some(&a)).unwrap().to_string(), "smoke: false → true");
        assert_ne!(a.hash, b.hash);
    }

    #[test]
    fn json_difference_names_the_first_differing_key() {
        let a = serde_json::json!({ "lr": 0.001, "epochs": 2, "inner": { "x": [1, 2] } });
        let b = serde_json::json!({ "lr": 0.0005, "epochs": 2, "inner": { "x": [1, 3] } });
        assert_eq!(json_difference(&a, &b).unwrap(), "inner.x: [1,2] → [1,3]");
        let c = serde_json::json!({ "lr": 0.0005, "epochs": 2, "inner": { "x": [1, 2] } });
        assert_eq!(json_difference(&a, &c).unwrap(), "lr: 0.001 → 0.0005");
        assert_eq!(json_difference(&a, &a), None);
        let d = serde_json::json!({ "lr": 0.001, "epochs": 2, "inner": { "x": [1, 2] }, "max_steps": 5 });
        assert_eq!(json_difference(&a, &d).unwrap(), "max_steps: (none) → 5");
    }
}
