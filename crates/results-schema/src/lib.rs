//! The cell result file, `RESULTS/SWEEP/cells/CELL_ID.json`: the one definition of its layout.
//! The `runner` writes it (`runner::store`, atomically, one file per cell) and the `report`
//! reads it (`report::results`); both use these types, so the layout cannot drift between them.
//!
//! Layout version [`SCHEMA_VERSION`]. Compatibility rules, which the types encode:
//! - every field added after the first files were written has a serde default (`key`,
//!   `world_seed`, per-example values, targets, fingerprints, provenance, timings), so files
//!   written before the addition still load; unknown fields are ignored, so a file written by a
//!   newer build loads in an older report as far as that report understands it;
//! - non-finite numbers (a diverged loss, an undefined metric) are written as `null` and read
//!   back as NaN ([`MetricRecord::finite_value`] gives `None` for them);
//! - a change that old readers would misread bumps [`SCHEMA_VERSION`], and readers refuse
//!   other versions ([`CellResult::from_json`]).
//!
//! A cell's hyperparameters are kept as the reader chooses to hold them: the runner reads
//! `Cell<toml::Value>` (the config's own values, which build methods and cell keys), the
//! report `Cell<serde_json::Value>` (the default); both are the same JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use evals::registry::{Scale, Target};
/// Which way a metric improves (the one definition, in `evals`).
pub use evals::Direction;

/// Version of the cell JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

/// Method name of the θ_D reference cells.
pub const REFERENCE_FINAL: &str = "final";
/// Method name of the oracle reference cells.
pub const REFERENCE_RETRAIN: &str = "retrain";
/// Method name of the second oracle's reference cells (another data order; the noise floor).
pub const REFERENCE_RETRAIN_ALT: &str = "retrain_alt";
/// The `kind` of the reference cells.
pub const REFERENCE_KIND: &str = "reference";

/// Everything recorded about one cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "V: Serialize", deserialize = "V: Deserialize<'de>"))]
pub struct CellResult<V = serde_json::Value> {
    pub schema_version: u32,
    /// The sweep's name (its results folder).
    #[serde(default)]
    pub sweep: String,
    pub cell: Cell<V>,
    pub status: CellStatus,
    /// For a failed cell, the error and its causes, outermost first (anyhow's chain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_chain: Vec<String>,
    /// By metric name; a metric reported per split is stored as `NAME/SPLIT`.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricRecord>,
    /// The exact configuration the cell ran with (`runner::store::resolved_config`): world,
    /// model, metrics, method and the trainer configuration as run. `null` in some old files.
    #[serde(default)]
    pub resolved_config: serde_json::Value,
    /// Everything that determined this result (see [`Fingerprint`]); `None` in files written
    /// before results recorded it (such a result is stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    #[serde(default)]
    pub provenance: Provenance,
    #[serde(default)]
    pub timings: Timings,
    /// Training / unlearning loss curves by name (e.g. "unlearn", "msa_forget_finetune"):
    /// (optimizer step, loss); a non-finite loss is NaN.
    #[serde(default, with = "curves_nan_as_null")]
    pub loss_curves: BTreeMap<String, Vec<(u64, f64)>>,
}

impl<V: for<'de> Deserialize<'de>> CellResult<V> {
    /// Parses a cell file's text; errors name `path` and refuse another [`SCHEMA_VERSION`].
    pub fn from_json(text: &str, path: &Path) -> Result<CellResult<V>> {
        let r: CellResult<V> = serde_json::from_str(text)
            .with_context(|| format!("{}: not a cell result (schema {SCHEMA_VERSION})", path.display()))?;
        if r.schema_version != SCHEMA_VERSION {
            bail!("{}: schema_version {} (this build reads {SCHEMA_VERSION})", path.display(), r.schema_version);
        }
        Ok(r)
    }
}

impl<V> CellResult<V> {
    /// `resolved_config.world.kind` (`facts`, `tofu`, …); `None` in files without it.
    pub fn world_kind(&self) -> Option<&str> {
        self.resolved_config.get("world")?.get("kind")?.as_str()
    }

    /// `resolved_config.world.forget`, the forget split as configured (`forget01`, `7.5%`);
    /// `None` when absent or not a string.
    pub fn world_split(&self) -> Option<&str> {
        self.resolved_config.get("world")?.get("forget")?.as_str()
    }
}

/// One unit of work: a model, a method at one grid point, a seed. Its `id` (file name) and
/// `key` are made by `runner::cells::cell`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "V: Serialize", deserialize = "V: Deserialize<'de>"))]
pub struct Cell<V = serde_json::Value> {
    /// Filename-safe, stable id.
    pub id: String,
    /// Readable key the id is made from, `METHOD[/k=v,…]/world=W/seed=S/model=M` (empty in the
    /// oldest files: readers fall back to the id).
    #[serde(default)]
    pub key: String,
    /// Method name (`[methods.NAME]`), or a reference row's ([`REFERENCE_FINAL`], …).
    pub method: String,
    /// Method kind, or [`REFERENCE_KIND`].
    pub kind: String,
    /// Every hyperparameter of this cell, fixed and grid, by name.
    #[serde(default = "BTreeMap::new")]
    pub params: BTreeMap<String, V>,
    pub model: String,
    /// The world seed (which replicate of the world this cell runs on; 0 in files written
    /// before world seeds).
    #[serde(default)]
    pub world_seed: u64,
    /// The method seed.
    pub seed: u64,
}

impl<V> Cell<V> {
    /// True for the reference rows: θ_D, the oracle and the second oracle.
    pub fn is_reference(&self) -> bool {
        self.kind == REFERENCE_KIND
    }

    /// The key, or the id in files without one.
    pub fn name(&self) -> &str {
        if self.key.is_empty() {
            &self.id
        } else {
            &self.key
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    Ok,
    Failed,
}

/// A metric's aggregate and per-example values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub direction: Direction,
    /// NaN when undefined (written as `null`).
    #[serde(with = "f64_nan_as_null")]
    pub value: f64,
    /// Per-example values (non-finite ones are NaN); empty when the metric has none or the file
    /// predates them.
    #[serde(default, with = "vec_nan_as_null")]
    pub per_example: Vec<f64>,
    /// Ids of the examples `per_example` refers to, when the metric gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub example_ids: Vec<String>,
    /// The metric implementation's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why the metric has no value (`value` is then NaN), e.g. no classifier was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// How the number is judged, as its metric declared it when the cell ran
    /// (`evals::registry`); `None` in files written before targets were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The scale its distances and ratios are taken on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
}

impl MetricRecord {
    /// The value when it is a finite number.
    pub fn finite_value(&self) -> Option<f64> {
        self.value.is_finite().then_some(self.value)
    }
}

/// What made the numbers, besides the fingerprint: the binary, the commit, the CPU.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Version of the binary that ran the cell.
    #[serde(default)]
    pub crate_version: String,
    /// `git rev-parse HEAD` of the working tree, when there is one.
    #[serde(default)]
    pub git_commit: Option<String>,
    /// For a cell of an `external` method: the command that made it, its exit status, wall
    /// time, the hashes of the scripts it names and its log (absent for every other cell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRun>,
    /// The machine's CPU as the numbers depend on it (`runner::store::cpu_description`):
    /// results are bit-reproducible on the same CPU; on another one they can differ in the last
    /// bits, since `gemm` (candle's CPU matrix multiply) sizes its blocks — and so the order of
    /// its sums — by the caches it detects, and picks its kernels by instruction set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// What an external command did (`provenance.external`; `runner::external`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExternalRun {
    /// The command as run (placeholders filled in).
    pub command: Vec<String>,
    /// The configured environment variables as set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The exit code; `None` when it did not start, was killed, or died of a signal.
    pub exit_status: Option<i32>,
    /// The signal that ended it, if any (Unix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub wall_seconds: f64,
    /// sha256 of each file named in the command (e.g. the script), by the name as written.
    pub scripts: BTreeMap<String, String>,
    /// Where its output went.
    pub log: PathBuf,
}

/// Wall-clock times in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub started_unix: f64,
    #[serde(default)]
    pub finished_unix: f64,
    /// Seconds per stage (e.g. "unlearn", "eval", "method/train"), by name.
    #[serde(default)]
    pub stages: BTreeMap<String, f64>,
}

/// The fields of a fingerprint, in the order a difference reports them (the most telling
/// first: a `--smoke` run also has another world and model). What each holds and how the
/// runner computes it: `runner::fingerprint`.
pub const FIELDS: &[&str] = &["format", "smoke", "data_files", "world", "model", "dtype", "metrics", "method", "train"];

/// The fields in which the rows of one table (one model and world seed) may differ: each row
/// is a method with its own parameters and training config. Every other field is the world's.
pub const ROW_FIELDS: &[&str] = &["method", "train"];

/// Everything that determines a cell's result: named fields and a combined hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// SHA-256 over the fields in [`FIELDS`] order (then any other by name), 16 hex digits.
    pub hash: String,
    /// By field name.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl Fingerprint {
    /// A fingerprint of `fields`: the hash of `name=value\n` lines, [`FIELDS`] first (an absent
    /// one as empty), then any other field by name.
    pub fn new(fields: BTreeMap<String, String>) -> Fingerprint {
        let mut h = Sha256::new();
        for name in FIELDS.iter().copied().chain(fields.keys().map(String::as_str).filter(|k| !FIELDS.contains(k))) {
            h.update(format!("{name}={}\n", fields.get(name).map_or("", String::as_str)).as_bytes());
        }
        Fingerprint { hash: h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect(), fields }
    }

    /// The first field, in [`FIELDS`] order and then by name, among those `consider` accepts,
    /// in which the two differ; `None` when they agree on all of them.
    pub fn first_difference(&self, other: &Fingerprint, consider: impl Fn(&str) -> bool) -> Option<String> {
        let mut others: Vec<&str> =
            self.fields.keys().chain(other.fields.keys()).map(String::as_str).filter(|k| !FIELDS.contains(k)).collect();
        others.sort();
        others.dedup();
        FIELDS
            .iter()
            .copied()
            .chain(others)
            .filter(|f| consider(f))
            .find(|f| self.fields.get(*f) != other.fields.get(*f))
            .map(str::to_owned)
    }
}

/// A fingerprint value as messages show it: itself when short, else its first 8 characters
/// and an ellipsis; `(none)` when absent.
pub struct ShortValue<'a>(pub Option<&'a str>);

impl fmt::Display for ShortValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("(none)"),
            Some(v) if v.chars().count() > 8 => write!(f, "{}…", v.chars().take(8).collect::<String>()),
            Some(v) => f.write_str(v),
        }
    }
}

mod f64_nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        v.is_finite().then_some(*v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

mod vec_nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(|x| x.is_finite().then_some(*x)).collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    }
}

mod curves_nan_as_null {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    type Curves = BTreeMap<String, Vec<(u64, f64)>>;

    pub fn serialize<S: Serializer>(v: &Curves, s: S) -> Result<S::Ok, S::Error> {
        let out: BTreeMap<&String, Vec<(u64, Option<f64>)>> = v
            .iter()
            .map(|(k, pts)| (k, pts.iter().map(|&(step, x)| (step, x.is_finite().then_some(x))).collect()))
            .collect();
        out.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Curves, D::Error> {
        let raw = Option::<BTreeMap<String, Vec<(u64, Option<f64>)>>>::deserialize(d)?.unwrap_or_default();
        Ok(raw
            .into_iter()
            .map(|(k, pts)| (k, pts.into_iter().map(|(step, x)| (step, x.unwrap_or(f64::NAN))).collect()))
            .collect())
    }
}
