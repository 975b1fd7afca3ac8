//! Sweep configuration: the TOML file a user hands to `bench sweep`.
//!
//! Two stages, as in ripgrep: the file is first read into raw structs that mirror it
//! (`deny_unknown_fields` everywhere), then validated into a [`Sweep`]. Every error names the
//! file and the key path, e.g. `configs/tiny.toml: methods.msa.alpha: empty grid`, and unknown
//! names (world kinds, method kinds, hyperparameters, metrics, keys) get "did you mean …?" and the
//! list of known names. `configs/tiny.toml` is the commented example of the whole schema.
//!
//! The `[world]` table stays opaque here (only its `kind` is checked): the testbed crate owns
//! its schema. In a `[methods.NAME]` table every key other than `kind` is a hyperparameter; an
//! array value is a grid axis, a scalar is fixed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cells::{format_value, REFERENCE_FINAL, REFERENCE_RETRAIN};
use crate::suite::EvalLimits;
use suggest::unknown_name_message;

/// World kinds the testbed builds (issue 3).
pub const KNOWN_WORLD_KINDS: &[&str] =
    &["facts", "truthfulqa-corruption", "toxigen", "finetune", "tofu", "muse", "restor"];

/// Unlearning method kinds: the `methods` registry's list (plus `external`, which this crate
/// runs itself: [`crate::external`]).
pub const KNOWN_METHOD_KINDS: &[&str] = methods::KINDS;

/// Hyperparameters each method kind accepts besides the [`TRAIN_KEYS`] (which every method may
/// override): the `methods` registry's table, checked there against the parameter structs.
pub const KNOWN_METHOD_PARAMS: &[(&str, &[&str])] = methods::PARAMS;

/// Metric names (lm-evaluation-harness names where they exist): the names of `evals`' registry,
/// the one list of metrics (sorted there).
pub const KNOWN_METRICS: &[&str] = &evals::registry::METRIC_NAMES;

/// Keys of the `[train]` table; each may also appear in a method table (fixed or as a grid axis)
/// to override the default for that method.
pub const TRAIN_KEYS: &[&str] =
    &["lr", "epochs", "batch_size", "weight_decay", "warmup_epochs", "grad_clip", "max_steps", "max_seq_len"];

/// Keys of the `[train]` table that only `[train]` sets (one value for the whole sweep; not
/// method hyperparameters).
pub const TRAIN_ONLY_KEYS: &[&str] = &["precision", "activation_checkpointing", "memory_limit_gb", "lora"];

const TOP_KEYS: &[&str] = &[
    "name",
    "output_dir",
    "data_dir",
    "world",
    "models",
    "methods",
    "metrics",
    "seeds",
    "train",
    "toxicity_classifier",
    "report",
    "attacks",
    "eval",
];
const MODEL_KEYS: &[&str] = &["name", "path", "hub", "revision", "scratch", "dtype"];
const DTYPES: &[&str] = &["f32", "f16", "bf16"];

/// The names a sweep config is checked against. [`Registry::DEFAULT`] uses this module's
/// consts; the binary can point it at the real method and metric registries instead.
#[derive(Clone, Copy, Debug)]
pub struct Registry<'a> {
    pub world_kinds: &'a [&'a str],
    pub method_kinds: &'a [&'a str],
    /// Per method kind, the hyperparameters it accepts besides [`TRAIN_KEYS`]. A kind not
    /// listed here accepts any key.
    pub method_params: &'a [(&'a str, &'a [&'a str])],
    pub metrics: &'a [&'a str],
}

impl Registry<'static> {
    pub const DEFAULT: Self = Registry {
        world_kinds: KNOWN_WORLD_KINDS,
        method_kinds: KNOWN_METHOD_KINDS,
        method_params: KNOWN_METHOD_PARAMS,
        metrics: KNOWN_METRICS,
    };
}

// ---------------------------------------------------------------- raw stage

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    name: Option<String>,
    output_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    world: toml::Table,
    models: Vec<RawModel>,
    #[serde(default)]
    methods: BTreeMap<String, toml::Table>,
    metrics: Vec<String>,
    seeds: Vec<u64>,
    #[serde(default)]
    train: RawTrain,
    toxicity_classifier: Option<PathBuf>,
    #[serde(default)]
    report: Option<toml::Table>,
    #[serde(default)]
    attacks: Option<RawAttacks>,
    #[serde(default)]
    eval: Option<RawEval>,
}

/// `[eval]`: the evaluation's item caps and generation lengths ([`EvalLimits`], every field
/// optional) and the judge of the judged accuracies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEval {
    judge: Option<PathBuf>,
    max_qa: Option<i64>,
    max_passages: Option<i64>,
    max_kl_texts: Option<i64>,
    max_kl_chars: Option<i64>,
    kl_budget_floats: Option<i64>,
    max_truthfulqa: Option<i64>,
    max_toxigen: Option<i64>,
    toxigen_prompts_per_group: Option<i64>,
    answer_new_tokens: Option<i64>,
    verbmem_new_tokens: Option<i64>,
    toxigen_new_tokens: Option<i64>,
    skip_malformed: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAttacks {
    quantize: Option<Vec<String>>,
    quantize_lm_head: Option<bool>,
    relearn: Option<RawRelearn>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelearn {
    fraction: Option<f64>,
    steps: Option<i64>,
    lr: Option<f64>,
    eval_at: Option<Vec<i64>>,
    batch_size: Option<i64>,
    seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    path: Option<PathBuf>,
    hub: Option<String>,
    revision: Option<String>,
    scratch: Option<String>,
    dtype: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrain {
    lr: Option<f64>,
    epochs: Option<u32>,
    batch_size: Option<u32>,
    weight_decay: Option<f64>,
    warmup_epochs: Option<f64>,
    grad_clip: Option<f64>,
    max_steps: Option<u64>,
    max_seq_len: Option<u32>,
    precision: Option<String>,
    activation_checkpointing: Option<bool>,
    memory_limit_gb: Option<f64>,
    lora: Option<toml::Value>,
}

// ---------------------------------------------------------------- validated stage

/// A validated sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Sweep {
    /// Names the results folder `OUTPUT_DIR/NAME/`; defaults to the file stem.
    pub name: String,
    /// The file it was read from (for messages and provenance).
    pub source: PathBuf,
    /// The `[world]` table as written; the testbed crate parses it. `kind` is checked here.
    pub world: toml::Table,
    pub world_kind: String,
    /// The `[world]` table read with the testbed's schema (once, here; every world seed is
    /// `world_config.for_seed(seed)`).
    pub world_config: testbed::WorldConfig,
    /// `world.seeds` (or `[world.seed]`): one world per seed, every cell run on each.
    pub world_seeds: Vec<u64>,
    /// `world.noise_floor`: also train and score a second oracle ("retrain_alt").
    pub noise_floor: bool,
    /// `world.quality_gate` (default true): stop when a world misses the quality thresholds.
    pub quality_gate: bool,
    pub models: Vec<ModelSpec>,
    /// By method name (the `NAME` in `[methods.NAME]`), so in name order.
    pub methods: BTreeMap<String, MethodSpec>,
    pub metrics: Vec<String>,
    pub seeds: Vec<u64>,
    pub train: TrainTable,
    pub output_dir: PathBuf,
    /// As written in the config (default `data`); see [`resolve_data_dir`].
    pub data_dir: PathBuf,
    /// `toxicity_classifier`: a Hugging Face RoBERTa sequence-classifier folder (e.g.
    /// `tomh/toxigen_roberta`) for `toxigen_generation`; a relative path is resolved against
    /// the config file's folder.
    pub toxicity_classifier: Option<PathBuf>,
    /// The `[report]` table (utility gate, headline grid points), as JSON; `{}` when absent.
    /// The `report` crate reads and checks it (`bench` checks it before any work); the runner
    /// only saves it as `RESULTS/report.json` so that a later `bench report` reads the same.
    pub report: serde_json::Value,
    /// `[attacks]`: what every cell (references included) is also scored after.
    pub attacks: Attacks,
    /// `[eval]`'s caps and lengths over [`EvalLimits::default`] (without `--smoke`; a smoke run
    /// uses [`EvalLimits::smoke`]).
    pub eval_limits: EvalLimits,
    /// `[eval] judge`: a causal LM folder judging `acc_forget` / `acc_recover` / `acc_retain`
    /// ([`crate::judge`]; relative to the config's folder); none: the ROUGE-L judge.
    pub judge: Option<PathBuf>,
}

impl Sweep {
    /// The evaluation limits a run uses.
    pub fn limits(&self, smoke: bool) -> EvalLimits {
        if smoke {
            EvalLimits::smoke()
        } else {
            self.eval_limits.clone()
        }
    }
}

/// The `[attacks]` table: attacks run on every cell's model after it is scored, each scored
/// again with the same metrics into records `attack/NAME/RECORD` (e.g.
/// `attack/quantize:int4/mc_accuracy/forget`). The same attack on the oracle gives the gap the
/// report shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Attacks {
    /// `quantize = ["int8", "int4"]`: round-to-nearest weight quantization
    /// (`model_state::Scheme`), quantize-then-dequantize (Zhang et al. 2025).
    #[serde(serialize_with = "schemes_as_strings")]
    pub quantize: Vec<model_state::Scheme>,
    /// `quantize_lm_head` (default false: lm_head stays in full precision, as transformers'
    /// bitsandbytes loading — the attack paper's code — leaves it).
    pub quantize_lm_head: bool,
    /// `relearn = { fraction, steps, lr, eval_at, batch_size, seed }`: the relearning attack
    /// (`crate::relearn`).
    pub relearn: Option<Relearn>,
}

/// The relearning attack: fine-tune the cell's model (plain next-token NLL, AdamW at a constant
/// `lr`, gradient norm clipped to 1) for `steps` optimizer steps on the forget documents of a
/// `fraction` of the forget entities (chosen by `seed`, the same for every cell of a world),
/// then score the forget metrics on the *other* entities only, before the attack (step 0) and
/// after each step in `eval_at`: records `attack/relearn@K/RECORD`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Relearn {
    pub fraction: f64,
    pub steps: usize,
    pub lr: f64,
    /// Strictly increasing, each in 1..=steps, ending at `steps`.
    pub eval_at: Vec<usize>,
    pub batch_size: usize,
    pub seed: u64,
}

impl Attacks {
    pub fn is_empty(&self) -> bool {
        self.quantize.is_empty() && self.relearn.is_none()
    }

    /// The attack names, as in records (`quantize:int8`).
    pub fn names(&self) -> Vec<String> {
        self.quantize.iter().map(|s| format!("quantize:{s}")).collect()
    }
}

fn schemes_as_strings<S: serde::Serializer>(v: &[model_state::Scheme], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| x.to_string()))
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSpec {
    pub name: String,
    pub source: ModelSource,
    pub dtype: Dtype,
}

/// Where a model's weights come from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// A local Hugging Face folder.
    Path(PathBuf),
    /// A hub id, optionally pinned to a revision (branch, tag or commit).
    Hub { id: String, revision: Option<String> },
    /// Pretrained from scratch by the world with the named built-in architecture (e.g. "tiny").
    Scratch(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    /// candle's dtype.
    pub fn candle(self) -> candle_core::DType {
        match self {
            Dtype::F32 => candle_core::DType::F32,
            Dtype::F16 => candle_core::DType::F16,
            Dtype::Bf16 => candle_core::DType::BF16,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }
}

/// One `[methods.NAME]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodSpec {
    pub name: String,
    pub kind: String,
    /// Scalar hyperparameters.
    pub fixed: BTreeMap<String, toml::Value>,
    /// Grid axes: key → the values in the order written (never empty).
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// For kind `external`: its `command`, `env` and `timeout` (not hyperparameters: they are
    /// not in cell keys; the fingerprint hashes them with the scripts the command names).
    pub external: Option<crate::external::ExternalSpec>,
}

/// The sweep's `[train]` table: training defaults as a config states them (epochs, warm-up in
/// epochs, the paper recipe's defaults); a method table may override any field. Not the
/// optimizer's settings: each cell resolves it, with the method's overrides and its data size,
/// into one [`lm::train::TrainConfig`] (`exec::method_train_config`), recorded as run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainTable {
    pub lr: f64,
    pub epochs: u32,
    pub batch_size: u32,
    pub weight_decay: f64,
    /// Linear warm-up length, in epochs (may be fractional).
    pub warmup_epochs: f64,
    /// Global gradient-norm clip; `None` = no clipping.
    pub grad_clip: Option<f64>,
    /// Stop after this many optimizer steps even if epochs remain.
    pub max_steps: Option<u64>,
    /// Training sequences are cut to min(max_seq_len, the model's max_position_embeddings)
    /// tokens.
    pub max_seq_len: u32,
    /// `precision = "f32" | "bf16-mixed" | "bf16"` ([`lm::train::Precision`]); unset, it
    /// follows each model's `dtype` ([`TrainTable::precision_for`]). Left out of the
    /// serialised form (and so of fingerprints) when unset, like the fields below at their
    /// defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<lm::train::Precision>,
    /// Recompute each block's activations in the backward ([`lm::train::TrainConfig`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub activation_checkpointing: bool,
    /// The memory a run may use, in GB (default: what the machine has available); the
    /// memory plan refuses a run whose estimate exceeds it. Not part of what runs.
    #[serde(skip)]
    pub memory_limit_gb: Option<f64>,
    /// `lora = { rank, alpha, targets }`: every fine-tune and gradient method trains LoRA
    /// adapters ([`lm::lora`]); MSA and task negation combine them as low-rank task vectors.
    /// Left out of the serialised form (and so of fingerprints) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<lm::lora::LoraConfig>,
}

impl Default for TrainTable {
    /// MSA's reference recipe (AdamW, lr 1e-5, weight decay 0.01, 10 epochs, one warm-up epoch).
    fn default() -> Self {
        TrainTable {
            lr: 1e-5,
            epochs: 10,
            batch_size: 8,
            weight_decay: 0.01,
            warmup_epochs: 1.0,
            grad_clip: None,
            max_steps: None,
            max_seq_len: 512,
            precision: None,
            activation_checkpointing: false,
            memory_limit_gb: None,
            lora: None,
        }
    }
}

impl TrainTable {
    /// This config with every [`TRAIN_KEYS`] entry of `params` applied (other keys are ignored:
    /// they belong to the method). Errors name the key and the expected type.
    pub fn with_overrides(&self, params: &BTreeMap<String, toml::Value>) -> Result<TrainTable> {
        let mut t = self.clone();
        for (key, value) in params {
            match key.as_str() {
                "lr" => t.lr = positive_f64(key, value)?,
                "epochs" => t.epochs = positive_int(key, value)?,
                "batch_size" => t.batch_size = positive_int(key, value)?,
                "weight_decay" => t.weight_decay = non_negative_f64(key, value)?,
                "warmup_epochs" => t.warmup_epochs = non_negative_f64(key, value)?,
                "grad_clip" => t.grad_clip = Some(positive_f64(key, value)?),
                "max_steps" => t.max_steps = Some(positive_int(key, value)?),
                "max_seq_len" => t.max_seq_len = positive_int(key, value)?,
                _ => {}
            }
        }
        Ok(t)
    }

    /// The precision a model loaded in `dtype` trains with: `[train] precision`, or unset,
    /// bf16 for bf16 weights (Hugging Face's Trainer on a model loaded in bf16) and the
    /// weights' own dtype otherwise.
    pub fn precision_for(&self, dtype: Dtype) -> lm::train::Precision {
        match (self.precision, dtype) {
            (Some(p), _) => p,
            (None, Dtype::Bf16) => lm::train::Precision::Bf16,
            (None, _) => lm::train::Precision::F32,
        }
    }

    fn validate(&self) -> Result<()> {
        check_positive("lr", self.lr)?;
        check_non_negative("weight_decay", self.weight_decay)?;
        check_non_negative("warmup_epochs", self.warmup_epochs)?;
        if let Some(c) = self.grad_clip {
            check_positive("grad_clip", c)?;
        }
        for (key, v) in [("epochs", self.epochs), ("batch_size", self.batch_size), ("max_seq_len", self.max_seq_len)] {
            if v == 0 {
                bail!("{key}: must be at least 1");
            }
        }
        if self.max_steps == Some(0) {
            bail!("max_steps: must be at least 1");
        }
        Ok(())
    }
}

fn as_f64(key: &str, value: &toml::Value) -> Result<f64> {
    match value {
        toml::Value::Float(f) => Ok(*f),
        toml::Value::Integer(i) => Ok(*i as f64),
        other => bail!("{key}: expected a number, found {}", other.type_str()),
    }
}

fn check_positive(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        bail!("{key}: expected a finite number > 0, found {v}");
    }
    Ok(())
}

fn check_non_negative(key: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        bail!("{key}: expected a finite number >= 0, found {v}");
    }
    Ok(())
}

fn positive_f64(key: &str, value: &toml::Value) -> Result<f64> {
    let v = as_f64(key, value)?;
    check_positive(key, v)?;
    Ok(v)
}

fn non_negative_f64(key: &str, value: &toml::Value) -> Result<f64> {
    let v = as_f64(key, value)?;
    check_non_negative(key, v)?;
    Ok(v)
}

fn positive_int<T: TryFrom<i64>>(key: &str, value: &toml::Value) -> Result<T> {
    match value {
        toml::Value::Integer(i) if *i >= 1 => T::try_from(*i).map_err(|_| anyhow::anyhow!("{key}: {i} is too large")),
        toml::Value::Integer(i) => bail!("{key}: expected an integer >= 1, found {i}"),
        other => bail!("{key}: expected an integer, found {}", other.type_str()),
    }
}

// ---------------------------------------------------------------- loading

/// Reads and validates a sweep config against [`Registry::DEFAULT`].
pub fn load_sweep(path: &Path) -> Result<Sweep> {
    load_sweep_with(path, &Registry::DEFAULT)
}

/// Reads and validates a sweep config against `registry`.
pub fn load_sweep_with(path: &Path, registry: &Registry) -> Result<Sweep> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read sweep config", path.display()))?;
    parse_sweep(&text, path, registry)
}

/// Parses and validates `text`; `source` is the file name used in messages (and, without a
/// `name` key, the sweep name: its stem).
pub fn parse_sweep(text: &str, source: &Path, registry: &Registry) -> Result<Sweep> {
    let file = source.display().to_string();
    let fail = |key: &str, msg: String| -> anyhow::Error {
        if key.is_empty() {
            anyhow::anyhow!("{file}: {msg}")
        } else {
            anyhow::anyhow!("{file}: {key}: {msg}")
        }
    };

    // Stage 0: TOML syntax, then unknown keys with "did you mean" (serde's own message for
    // `deny_unknown_fields` has no key path and no suggestion).
    let table: toml::Table = text.parse().map_err(|e| fail("", format!("invalid TOML: {e}")))?;
    check_keys(&table, TOP_KEYS, "", "key").map_err(|m| fail("", m))?;
    if let Some(toml::Value::Array(models)) = table.get("models") {
        for (i, m) in models.iter().enumerate() {
            if let toml::Value::Table(t) = m {
                check_keys(t, MODEL_KEYS, &format!("models[{i}]."), "model key").map_err(|m| fail("", m))?;
            }
        }
    }
    if let Some(toml::Value::Table(t)) = table.get("train") {
        let keys: Vec<&str> = TRAIN_KEYS.iter().chain(TRAIN_ONLY_KEYS).copied().collect();
        check_keys(t, &keys, "train.", "train key").map_err(|m| fail("", m))?;
    }

    // Stage 1: raw structs (types; toml's message carries line and column).
    let raw: RawSweep = toml::from_str(text).map_err(|e| fail("", format!("{e}")))?;

    // Stage 2: validation.
    let name = match raw.name {
        Some(n) => n,
        None => source
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_owned)
            .ok_or_else(|| fail("name", "no `name` key and the file name has no usable stem".into()))?,
    };
    check_ident(&name).map_err(|m| fail("name", m))?;

    let world_kind = match raw.world.get("kind") {
        Some(toml::Value::String(k)) => k.clone(),
        Some(other) => return Err(fail("world.kind", format!("expected a string, found {}", other.type_str()))),
        None => return Err(fail("world.kind", format!("missing; known kinds: {}", registry.world_kinds.join(", ")))),
    };
    if !registry.world_kinds.contains(&world_kind.as_str()) {
        return Err(fail("world.kind", unknown_name_message("world kind", &world_kind, registry.world_kinds)));
    }
    // The testbed owns the world's schema; read the table with it now, so that a typo or a bad
    // seed list is reported before anything runs.
    let world_cfg: testbed::WorldConfig =
        toml::Value::Table(raw.world.clone()).try_into().map_err(|e| fail("world", format!("{e}")))?;
    let world_seeds = world_cfg.world_seeds().map_err(|e| fail("", format!("{e:#}")))?;

    if raw.models.is_empty() {
        return Err(fail("models", "no models; add at least one [[models]] table".into()));
    }
    let mut models = Vec::new();
    let mut model_names = BTreeSet::new();
    for (i, m) in raw.models.into_iter().enumerate() {
        let key = format!("models[{i}]");
        check_ident(&m.name).map_err(|msg| fail(&format!("{key}.name"), msg))?;
        if !model_names.insert(m.name.clone()) {
            return Err(fail(&format!("{key}.name"), format!("duplicate model name `{}`", m.name)));
        }
        let source = match (m.path, m.hub, m.scratch) {
            (Some(p), None, None) => ModelSource::Path(p),
            (None, Some(id), None) => ModelSource::Hub { id, revision: m.revision.clone() },
            (None, None, Some(arch)) => ModelSource::Scratch(arch),
            _ => {
                return Err(fail(
                    &key,
                    "set exactly one of `path` (local folder), `hub` (hub id) or `scratch` (built-in architecture the world pretrains)".into(),
                ))
            }
        };
        if m.revision.is_some() && !matches!(source, ModelSource::Hub { .. }) {
            return Err(fail(&format!("{key}.revision"), "only meaningful with `hub`".into()));
        }
        let dtype = match m.dtype.as_deref().unwrap_or("f32") {
            "f32" => Dtype::F32,
            "f16" => Dtype::F16,
            "bf16" => Dtype::Bf16,
            other => return Err(fail(&format!("{key}.dtype"), unknown_name_message("dtype", other, DTYPES))),
        };
        models.push(ModelSpec { name: m.name, source, dtype });
    }

    let mut train = TrainTable::default()
        .with_overrides(&raw_train_table(&raw.train))
        .and_then(|t| t.validate().map(|()| t))
        .map_err(|e| fail("train", format!("{e:#}")))?;
    if let Some(p) = &raw.train.precision {
        train.precision = Some(lm::train::Precision::parse(p).map_err(|e| fail("train.precision", format!("{e:#}")))?);
    }
    train.activation_checkpointing = raw.train.activation_checkpointing.unwrap_or(false);
    if let Some(v) = &raw.train.lora {
        let lora: lm::lora::LoraConfig = v.clone().try_into().map_err(|e: toml::de::Error| {
            fail(
                "train.lora",
                format!(
                    "{}; expected a table such as {{ rank = 16, alpha = 32, targets = [\"q_proj\", \"v_proj\"] }}",
                    e.to_string().trim()
                ),
            )
        })?;
        lora.validate().map_err(|e| fail("train.lora", format!("{e:#}")))?;
        train.lora = Some(lora);
    }
    if let Some(g) = raw.train.memory_limit_gb {
        if !(g.is_finite() && g > 0.0) {
            return Err(fail("train.memory_limit_gb", format!("expected a positive number of GB, got {g}")));
        }
        train.memory_limit_gb = Some(g);
    }
    for (i, m) in models.iter().enumerate() {
        // bf16-mixed keeps f32 masters: the weights must load in f32
        if train.precision == Some(lm::train::Precision::Bf16Mixed) && m.dtype != Dtype::F32 {
            return Err(fail(
                &format!("models[{i}].dtype"),
                format!(
                    "\"{}\" with train.precision = \"bf16-mixed\", which keeps f32 master weights: set dtype = \"f32\", or precision = \"bf16\" to train in bf16 throughout",
                    m.dtype.as_str()
                ),
            ));
        }
        if train.precision == Some(lm::train::Precision::Bf16) && m.dtype == Dtype::F16 {
            return Err(fail(
                &format!("models[{i}].dtype"),
                "\"f16\" with train.precision = \"bf16\": load the model in bf16 or f32".into(),
            ));
        }
    }

    let mut methods = BTreeMap::new();
    for (mname, table) in raw.methods {
        let spec = validate_method(&mname, table, registry, &train).map_err(|(key, msg)| fail(&key, msg))?;
        // the methods' data is tokenised and cut once per model and world
        if spec.fixed.contains_key("max_seq_len") || spec.grid.contains_key("max_seq_len") {
            return Err(fail(
                &format!("methods.{mname}.max_seq_len"),
                "set max_seq_len in [train] (every method of a model trains on the same cut sequences)".into(),
            ));
        }
        methods.insert(mname, spec);
    }

    if raw.metrics.is_empty() {
        return Err(fail("metrics", "no metrics; list at least one".into()));
    }
    let mut seen = BTreeSet::new();
    for (i, m) in raw.metrics.iter().enumerate() {
        if !registry.metrics.contains(&m.as_str()) {
            return Err(fail(&format!("metrics[{i}]"), unknown_name_message("metric", m, registry.metrics)));
        }
        if !seen.insert(m) {
            return Err(fail(&format!("metrics[{i}]"), format!("duplicate metric `{m}`")));
        }
    }

    if raw.seeds.is_empty() {
        return Err(fail("seeds", "no seeds; list at least one, e.g. seeds = [0]".into()));
    }
    let mut seen = BTreeSet::new();
    for (i, s) in raw.seeds.iter().enumerate() {
        if !seen.insert(s) {
            return Err(fail(&format!("seeds[{i}]"), format!("duplicate seed {s}")));
        }
    }

    Ok(Sweep {
        name,
        source: source.to_path_buf(),
        world: raw.world,
        world_kind,
        world_seeds,
        noise_floor: world_cfg.noise_floor.unwrap_or(false),
        quality_gate: world_cfg.quality_gate.unwrap_or(true),
        world_config: world_cfg,
        models,
        methods,
        metrics: raw.metrics,
        seeds: raw.seeds,
        train,
        output_dir: raw.output_dir.unwrap_or_else(|| PathBuf::from("results")),
        data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from("data")),
        toxicity_classifier: raw.toxicity_classifier.map(|p| match source.parent() {
            Some(folder) if p.is_relative() => folder.join(p),
            _ => p,
        }),
        report: serde_json::to_value(raw.report.unwrap_or_default())
            .with_context(|| format!("{}: [report] cannot be read", source.display()))?,
        attacks: attacks(raw.attacks.unwrap_or_default(), source)?,
        eval_limits: eval_limits(raw.eval.as_ref(), source)?,
        judge: raw.eval.and_then(|e| e.judge).map(|p| match source.parent() {
            Some(folder) if p.is_relative() => folder.join(p),
            _ => p,
        }),
    })
}

/// [`EvalLimits::default`] with `[eval]`'s values; each count must be ≥ 1.
fn eval_limits(raw: Option<&RawEval>, source: &Path) -> Result<EvalLimits> {
    let mut l = EvalLimits::default();
    let Some(e) = raw else { return Ok(l) };
    let count = |field: &str, v: i64| -> Result<usize> {
        if v < 1 {
            bail!("{}: eval.{field} = {v}: expected a count of at least 1", source.display());
        }
        Ok(v as usize)
    };
    for (field, value, slot) in [
        ("max_qa", e.max_qa, &mut l.max_qa),
        ("max_passages", e.max_passages, &mut l.max_passages),
        ("max_kl_texts", e.max_kl_texts, &mut l.max_kl_texts),
        ("max_kl_chars", e.max_kl_chars, &mut l.max_kl_chars),
        ("kl_budget_floats", e.kl_budget_floats, &mut l.kl_budget_floats),
        ("toxigen_prompts_per_group", e.toxigen_prompts_per_group, &mut l.toxigen_prompts_per_group),
        ("answer_new_tokens", e.answer_new_tokens, &mut l.answer_new_tokens),
        ("verbmem_new_tokens", e.verbmem_new_tokens, &mut l.verbmem_new_tokens),
        ("toxigen_new_tokens", e.toxigen_new_tokens, &mut l.toxigen_new_tokens),
    ] {
        if let Some(v) = value {
            *slot = count(field, v)?;
        }
    }
    if let Some(v) = e.max_truthfulqa {
        l.max_truthfulqa = Some(count("max_truthfulqa", v)?);
    }
    if let Some(v) = e.max_toxigen {
        l.max_toxigen = Some(count("max_toxigen", v)?);
    }
    if let Some(b) = e.skip_malformed {
        l.skip_malformed = b;
    }
    Ok(l)
}

fn attacks(raw: RawAttacks, source: &Path) -> Result<Attacks> {
    let mut quantize = Vec::new();
    for (i, s) in raw.quantize.unwrap_or_default().iter().enumerate() {
        let scheme: model_state::Scheme =
            s.parse().with_context(|| format!("{}: attacks.quantize[{i}]", source.display()))?;
        if quantize.contains(&scheme) {
            bail!("{}: attacks.quantize[{i}]: {s:?} is listed twice", source.display());
        }
        quantize.push(scheme);
    }
    let relearn = raw.relearn.map(|r| relearn(r, source)).transpose()?;
    Ok(Attacks { quantize, quantize_lm_head: raw.quantize_lm_head.unwrap_or(false), relearn })
}

fn relearn(raw: RawRelearn, source: &Path) -> Result<Relearn> {
    let at = |field: &str| format!("{}: attacks.relearn.{field}", source.display());
    let fraction = raw.fraction.with_context(|| {
        format!("{}: the fraction of forget entities to relearn on, in (0, 1), is required", at("fraction"))
    })?;
    if !(fraction > 0.0 && fraction < 1.0) {
        bail!("{} = {fraction}: expected a fraction of the forget entities strictly between 0 and 1 (the attack teaches that part and scores the rest)", at("fraction"));
    }
    let steps =
        raw.steps.with_context(|| format!("{}: the number of optimizer steps (≥ 1) is required", at("steps")))?;
    if steps < 1 {
        bail!("{} = {steps}: expected at least 1 optimizer step", at("steps"));
    }
    let steps = steps as usize;
    let lr = raw.lr.with_context(|| format!("{}: the learning rate (> 0) is required", at("lr")))?;
    if !(lr.is_finite() && lr > 0.0) {
        bail!("{} = {lr}: expected a positive learning rate", at("lr"));
    }
    let eval_at = match raw.eval_at {
        None => vec![steps],
        Some(v) => {
            if v.is_empty() {
                bail!(
                    "{} = []: expected the steps to score at (omit it to score after the last step only)",
                    at("eval_at")
                );
            }
            let mut out: Vec<usize> = Vec::with_capacity(v.len());
            for (i, &k) in v.iter().enumerate() {
                if k < 1 || k as usize > steps {
                    bail!("{}[{i}] = {k}: expected a step in 1..={steps} (attacks.relearn.steps; step 0, the model itself, is always scored)", at("eval_at"));
                }
                if out.last().is_some_and(|&p| p >= k as usize) {
                    bail!("{}[{i}] = {k}: expected strictly increasing steps", at("eval_at"));
                }
                out.push(k as usize);
            }
            if out.last() != Some(&steps) {
                bail!("{}: the last step scored must be attacks.relearn.steps = {steps} (the gap is read there), got {:?}", at("eval_at"), out);
            }
            out
        }
    };
    let batch_size = match raw.batch_size {
        None => 8,
        Some(b) if b >= 1 => b as usize,
        Some(b) => bail!("{} = {b}: expected at least 1 sequence per step", at("batch_size")),
    };
    Ok(Relearn { fraction, steps, lr, eval_at, batch_size, seed: raw.seed.unwrap_or(0) })
}

/// The data directory to use: `UNLEARN_DATA_DIR` if set, else the config's `data_dir`
/// (default `data`).
pub fn resolve_data_dir(sweep: &Sweep) -> PathBuf {
    match std::env::var_os("UNLEARN_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => sweep.data_dir.clone(),
    }
}

fn raw_train_table(raw: &RawTrain) -> BTreeMap<String, toml::Value> {
    let mut t = BTreeMap::new();
    let mut put = |k: &str, v: Option<toml::Value>| {
        if let Some(v) = v {
            t.insert(k.to_owned(), v);
        }
    };
    put("lr", raw.lr.map(toml::Value::Float));
    put("epochs", raw.epochs.map(|v| toml::Value::Integer(v.into())));
    put("batch_size", raw.batch_size.map(|v| toml::Value::Integer(v.into())));
    put("weight_decay", raw.weight_decay.map(toml::Value::Float));
    put("warmup_epochs", raw.warmup_epochs.map(toml::Value::Float));
    put("grad_clip", raw.grad_clip.map(toml::Value::Float));
    put("max_steps", raw.max_steps.map(|v| toml::Value::Integer(v as i64)));
    put("max_seq_len", raw.max_seq_len.map(|v| toml::Value::Integer(v.into())));
    t
}

/// Errors are (key path, message).
fn validate_method(
    name: &str,
    mut table: toml::Table,
    registry: &Registry,
    train: &TrainTable,
) -> std::result::Result<MethodSpec, (String, String)> {
    let at = |k: &str| format!("methods.{name}.{k}");
    check_ident(name).map_err(|m| (format!("methods.{name}"), m))?;
    if name == REFERENCE_FINAL || name == REFERENCE_RETRAIN {
        return Err((
            format!("methods.{name}"),
            format!("`{name}` is reserved for the reference rows, which every sweep includes; pick another name"),
        ));
    }
    // `external` (a command the harness runs; crate::external) is always a known kind.
    let known: Vec<&str> = registry.method_kinds.iter().copied().chain([crate::external::KIND]).collect();
    let kind = match table.remove("kind") {
        Some(toml::Value::String(k)) => k,
        Some(other) => return Err((at("kind"), format!("expected a string, found {}", other.type_str()))),
        None => return Err((at("kind"), format!("missing; known kinds: {}", known.join(", ")))),
    };
    if !known.contains(&kind.as_str()) {
        return Err((at("kind"), unknown_name_message("method kind", &kind, &known)));
    }
    let external =
        if kind == crate::external::KIND { Some(crate::external::take_spec(name, &mut table)?) } else { None };
    let allowed: Option<Vec<&str>> = registry
        .method_params
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, params)| params.iter().chain(TRAIN_KEYS).copied().collect());

    let mut fixed = BTreeMap::new();
    let mut grid = BTreeMap::new();
    for (key, value) in table {
        if let Some(allowed) = &allowed {
            if !allowed.contains(&key.as_str()) {
                let what = format!("hyperparameter for kind `{kind}`");
                return Err((at(&key), unknown_name_message(&what, &key, allowed)));
            }
        }
        let is_axis = matches!(value, toml::Value::Array(_));
        let values = match value {
            toml::Value::Array(values) => {
                if values.is_empty() {
                    return Err((at(&key), "empty grid (give at least one value, or a scalar)".into()));
                }
                let mut seen = BTreeSet::new();
                for (i, v) in values.iter().enumerate() {
                    check_scalar(v).map_err(|m| (format!("{}[{i}]", at(&key)), m))?;
                    if !seen.insert(format_value(v)) {
                        return Err((
                            format!("{}[{i}]", at(&key)),
                            format!("duplicate grid value {}", format_value(v)),
                        ));
                    }
                }
                values
            }
            scalar => {
                check_scalar(&scalar).map_err(|m| (at(&key), m))?;
                vec![scalar]
            }
        };
        if TRAIN_KEYS.contains(&key.as_str()) {
            for (i, v) in values.iter().enumerate() {
                let one = BTreeMap::from([(key.clone(), v.clone())]);
                if let Err(e) = train.with_overrides(&one) {
                    let path = if is_axis { format!("{}[{i}]", at(&key)) } else { at(&key) };
                    // the override error already starts with the key
                    let msg = format!("{e:#}");
                    let msg = msg.strip_prefix(&format!("{key}: ")).unwrap_or(&msg).to_owned();
                    return Err((path, msg));
                }
            }
        }
        // Any array is a grid axis (even of one value: the user wrote a grid); scalars are fixed.
        if is_axis {
            grid.insert(key, values);
        } else {
            fixed.extend(values.into_iter().map(|v| (key.clone(), v)));
        }
    }
    if let Some(spec) = &external {
        let params: BTreeSet<String> = fixed.keys().chain(grid.keys()).cloned().collect();
        crate::external::check_placeholders(name, spec, &params, train)?;
    }
    Ok(MethodSpec { name: name.to_owned(), kind, fixed, grid, external })
}

fn check_scalar(v: &toml::Value) -> std::result::Result<(), String> {
    match v {
        toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Boolean(_) => Ok(()),
        toml::Value::Float(f) if f.is_finite() => Ok(()),
        toml::Value::Float(f) => Err(format!("{f} is not a finite number")),
        toml::Value::Array(_) => Err("nested arrays are not supported; a grid axis is one flat array".into()),
        toml::Value::Table(_) => Err("a table is not a hyperparameter value".into()),
        toml::Value::Datetime(_) => Err("a date is not a hyperparameter value".into()),
    }
}

/// Names used in cell ids and folder names: ASCII letters, digits, `.`, `_`, `-`.
fn check_ident(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("`{name}` contains {c:?}; use ASCII letters, digits, `.`, `_` or `-`"));
    }
    Ok(())
}

fn check_keys(table: &toml::Table, known: &[&str], prefix: &str, what: &str) -> std::result::Result<(), String> {
    for key in table.keys() {
        if !known.contains(&key.as_str()) {
            return Err(format!("{prefix}{key}: {}", unknown_name_message(what, key, known)));
        }
    }
    Ok(())
}
