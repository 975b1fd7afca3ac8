//! Reading a sweep's results: `RESULTS_DIR/cells/*.json` as written by the `runner` crate's
//! result store (schema version 1), and the world-quality files
//! `RESULTS_DIR/world_quality/*.json` when there are any. This crate does not depend on
//! `runner`, so the layouts are mirrored here — only the fields the report needs; unknown
//! fields are ignored and fields added later have serde defaults (`world_seed` 0, no
//! per-example values), so that additions to the schema do not break old reports and old
//! results still load.
//!
//! A report never mixes results made under different configurations: [`load_cells`] refuses a
//! folder whose cells' fingerprints (what made each result, recorded by the runner; see
//! [`Fingerprint`]) disagree where they must agree — the same cell key twice (e.g. merged
//! folders), the cells of one model and world seed on anything but their method and training
//! config, the cells of one table row (model, method, parameters) on those two — and a folder
//! that mixes cells with and without a fingerprint. The message names the cells, their files and
//! the first differing field. Folders written before fingerprints (none has one) still load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The cell JSON layout this crate reads.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Deserialize)]
pub struct CellFile {
    pub schema_version: u32,
    #[serde(default)]
    pub sweep: String,
    pub cell: CellInfo,
    pub status: Status,
    #[serde(default)]
    pub error_chain: Vec<String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricFile>,
    /// (step, loss); a non-finite loss is stored as null.
    #[serde(default)]
    pub loss_curves: BTreeMap<String, Vec<(u64, Option<f64>)>>,
    /// What made the result; `None` in files written before results recorded it.
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    /// Seconds per stage (`unlearn`: the method's own work; `evaluate`; `world_build`).
    #[serde(default)]
    pub timings: Timings,
    /// The configuration the cell ran with; the report reads its world (see [`ResolvedConfig`]).
    #[serde(default, deserialize_with = "default_for_null")]
    pub resolved_config: ResolvedConfig,
    /// The file it was read from (set by [`load_cells`]).
    #[serde(skip)]
    pub path: PathBuf,
}

/// The parts of a cell's `resolved_config` the report reads: its world, kept as JSON (each
/// world kind has its own fields); see [`CellFile::world_kind`] and [`CellFile::world_split`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ResolvedConfig {
    #[serde(default)]
    pub world: serde_json::Value,
}

impl CellFile {
    /// `resolved_config.world.kind` (`facts`, `tofu`, …); `None` in files without it.
    pub fn world_kind(&self) -> Option<&str> {
        self.resolved_config.world.get("kind")?.as_str()
    }

    /// `resolved_config.world.forget`, the forget split as configured (`forget01`, `7.5%`);
    /// `None` when absent or not a string.
    pub fn world_split(&self) -> Option<&str> {
        self.resolved_config.world.get("forget")?.as_str()
    }
}

fn default_for_null<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A cell's wall times.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Timings {
    #[serde(default)]
    pub stages: BTreeMap<String, f64>,
}

/// What made a cell's result, as `runner::fingerprint` records it: named fields (short values
/// or 16 hex digits of a hash) and their combined hash.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Fingerprint {
    pub hash: String,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// The fingerprint's fields in the order the runner compares them (`runner::fingerprint::FIELDS`).
pub const FINGERPRINT_FIELDS: &[&str] =
    &["format", "smoke", "data_files", "world", "model", "dtype", "metrics", "method", "train"];

/// The fields in which the rows of one table (one model and world seed) may differ: each row is
/// a method with its own parameters and training config. Every other field is the world's.
pub const ROW_FIELDS: &[&str] = &["method", "train"];

#[derive(Clone, Debug, Deserialize)]
pub struct CellInfo {
    pub id: String,
    #[serde(default)]
    pub key: String,
    pub method: String,
    pub kind: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub model: String,
    /// The method's seed.
    pub seed: u64,
    /// The world (training history) the cell ran in; 0 in files written before worlds had
    /// seeds.
    #[serde(default)]
    pub world_seed: u64,
}

/// θ_D's reference row.
pub const REFERENCE_FINAL: &str = "final";
/// The exact retrain oracle's reference row.
pub const REFERENCE_RETRAIN: &str = "retrain";
/// A second oracle trained with another data-order seed: its distance to the oracle is the
/// noise floor of every "distance to the oracle".
pub const REFERENCE_RETRAIN_ALT: &str = "retrain_alt";

impl CellInfo {
    /// The reference rows: "final" (θ_D), "retrain" (the oracle) and "retrain_alt" (the
    /// second oracle).
    pub fn is_reference(&self) -> bool {
        self.kind == "reference"
    }
}

/// Whether a row of kind `kind` with parameters `params` is MSA as the paper defines it (one α
/// for every tensor, a fixed α, dense τ_f from one θ_0, no repair), so that the paper's claims
/// and the MSA figures are read on it alone, not on the variants of `msa/src/variants.rs` and
/// `msa/src/calibrate.rs` (`variant`, `alpha_scaling`, `sparsity`, `ensemble`, `repair_steps`,
/// `alpha = "calibrated"`), which are methods of their own in the tables.
pub fn is_paper_msa(kind: &str, params: &BTreeMap<String, serde_json::Value>) -> bool {
    use serde_json::Value;
    if kind != "msa" {
        return false;
    }
    let set = |k: &str, default: &dyn Fn(&Value) -> bool| params.get(k).is_some_and(|v| !default(v));
    !(set("variant", &|v| v.as_str() == Some("plain"))
        || set("alpha_scaling", &|v| v.as_str() == Some("uniform"))
        || set("sparsity", &|v| v.as_f64() == Some(1.0))
        || set("ensemble", &|_| false)
        || set("repair_steps", &|v| v.as_f64() == Some(0.0))
        || params.get("alpha").is_some_and(|v| v.is_string()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Failed,
}

/// Which way a metric improves (the one definition, in `evals`).
pub use evals::Direction;

#[derive(Clone, Debug, Deserialize)]
pub struct MetricFile {
    pub direction: Direction,
    /// null (non-finite) becomes `None`.
    pub value: Option<f64>,
    /// The metric's per-example values (null, a non-finite value, becomes NaN); empty when the
    /// metric has none or the file predates them.
    #[serde(default, deserialize_with = "nan_for_null")]
    pub per_example: Vec<f64>,
    /// The ids of the examples `per_example` refers to, when the metric gives them.
    #[serde(default)]
    pub example_ids: Vec<String>,
    /// How the number is judged, as its metric declared it when the cell ran; `None` in files
    /// written before targets were recorded (the report then asks `evals::registry`).
    #[serde(default)]
    pub target: Option<Target>,
    #[serde(default)]
    pub scale: Option<Scale>,
}

pub use evals::registry::{Scale, Target};

fn nan_for_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    let v = Vec::<Option<f64>>::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

/// Every cell result under `results_dir`: `results_dir/cells/*.json` if that folder exists;
/// otherwise `results_dir/*/cells/*.json` (several sweeps merged); otherwise
/// `results_dir/*.json`. Temporary files of interrupted writes (`.NAME.tmp…`) are skipped.
/// Sorted by (sweep, cell id).
pub fn load_cells(results_dir: &Path) -> Result<Vec<CellFile>> {
    if !results_dir.is_dir() {
        bail!("{}: no such results folder", results_dir.display());
    }
    let mut dirs = Vec::new();
    if results_dir.join("cells").is_dir() {
        dirs.push(results_dir.join("cells"));
    } else {
        for sub in sorted_entries(results_dir)? {
            if sub.join("cells").is_dir() {
                dirs.push(sub.join("cells"));
            }
        }
        if dirs.is_empty() {
            dirs.push(results_dir.to_path_buf());
        }
    }
    let mut cells = Vec::new();
    for dir in dirs {
        for path in sorted_entries(&dir)? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") || !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let mut cell: CellFile = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a cell result (schema {SCHEMA_VERSION})", path.display()))?;
            cell.path = path.clone();
            if cell.schema_version != SCHEMA_VERSION {
                bail!(
                    "{}: schema_version {} (this report reads {SCHEMA_VERSION})",
                    path.display(),
                    cell.schema_version
                );
            }
            cells.push(cell);
        }
    }
    cells.sort_by(|a, b| (&a.sweep, &a.cell.id).cmp(&(&b.sweep, &b.cell.id)));
    check_one_configuration(&cells).with_context(|| {
        format!("{}: the results were made under different configurations; no report is written", results_dir.display())
    })?;
    Ok(cells)
}

/// Refuses cells made under different configurations (see the module docs): the first pair of
/// cells that should agree and do not, with their files and the first differing field.
pub fn check_one_configuration(cells: &[CellFile]) -> Result<()> {
    let (with, without): (Vec<&CellFile>, Vec<&CellFile>) = cells.iter().partition(|c| c.fingerprint.is_some());
    if let (Some(new), Some(old)) = (with.first(), without.first()) {
        bail!(
            "{} cell(s) have no fingerprint (written before results recorded what made them; e.g. {}) and {} have \
             one (e.g. {}), so they may come from different configurations: rerun the sweep (it reruns cells \
             without one) or delete the old files",
            without.len(),
            old.path.display(),
            with.len(),
            new.path.display()
        );
    }
    let world_field = |f: &str| !ROW_FIELDS.contains(&f);
    let row_field = |f: &str| ROW_FIELDS.contains(&f);
    let mut keys: BTreeMap<&str, &CellFile> = BTreeMap::new();
    let mut worlds: BTreeMap<(&str, u64), &CellFile> = BTreeMap::new();
    let mut rows: BTreeMap<(&str, &str, &str, String), &CellFile> = BTreeMap::new();
    for &c in &with {
        let key = if c.cell.key.is_empty() { c.cell.id.as_str() } else { c.cell.key.as_str() };
        let first = *keys.entry(key).or_insert(c);
        if let Some(d) = difference(first, c, |_| true) {
            bail!("cell {key} has two results made under different configurations: {d}");
        }
        let first = *worlds.entry((c.cell.model.as_str(), c.cell.world_seed)).or_insert(c);
        if let Some(d) = difference(first, c, world_field) {
            bail!(
                "the cells of model {} and world seed {} were made under different configurations: {d}",
                c.cell.model,
                c.cell.world_seed
            );
        }
        let params = serde_json::to_string(&c.cell.params).unwrap_or_default();
        let row = (c.cell.model.as_str(), c.cell.method.as_str(), c.cell.kind.as_str(), params.clone());
        let first = *rows.entry(row).or_insert(c);
        if let Some(d) = difference(first, c, row_field) {
            bail!(
                "the runs of one table row (model {}, {} {params}) were made under different configurations: {d}",
                c.cell.model,
                c.cell.method
            );
        }
    }
    Ok(())
}

/// The first field (in [`FINGERPRINT_FIELDS`] order, then by name) among those `consider`
/// accepts in which two fingerprinted cells differ, described with both cells and files.
fn difference(a: &CellFile, b: &CellFile, consider: impl Fn(&str) -> bool) -> Option<String> {
    let (fa, fb) = (a.fingerprint.as_ref()?, b.fingerprint.as_ref()?);
    if fa == fb {
        return None;
    }
    let mut names: Vec<&str> = FINGERPRINT_FIELDS.to_vec();
    let mut others: Vec<&str> = fa
        .fields
        .keys()
        .chain(fb.fields.keys())
        .map(String::as_str)
        .filter(|k| !FINGERPRINT_FIELDS.contains(k))
        .collect();
    others.sort();
    others.dedup();
    names.extend(others);
    let field = names.into_iter().filter(|f| consider(f)).find(|f| fa.fields.get(*f) != fb.fields.get(*f))?;
    let show = |f: &Fingerprint| match f.fields.get(field) {
        None => "(none)".to_owned(),
        Some(v) if v.chars().count() > 8 => format!("{}…", v.chars().take(8).collect::<String>()),
        Some(v) => v.clone(),
    };
    let who = |c: &CellFile| if c.cell.key.is_empty() { c.cell.id.clone() } else { c.cell.key.clone() };
    Some(format!(
        "`{field}` is {} in {} ({}) but {} in {} ({}); rerun the sweep (it reruns stale cells), delete the stale \
         files, or report the folders separately",
        show(fa),
        who(a),
        a.path.display(),
        show(fb),
        who(b),
        b.path.display()
    ))
}

/// One world's quality record, `RESULTS_DIR/world_quality/*.json`, written by the runner after
/// building a world: how well θ_D learned the data and how the oracle behaves, and whether the
/// world passed its quality gate. A missing or null number is `None`.
#[derive(Clone, Debug, Deserialize)]
pub struct WorldQuality {
    pub model: String,
    pub world_seed: u64,
    #[serde(default)]
    pub world_hash: String,
    pub theta_d: ModelQuality,
    pub oracle: ModelQuality,
    #[serde(default)]
    pub tokens_trained: Option<u64>,
    #[serde(default)]
    pub seconds: Option<f64>,
    /// "passed", "failed" or "disabled".
    pub gate: String,
    #[serde(default)]
    pub failures: Vec<String>,
}

/// Multiple-choice accuracy and ROUGE of one model of a world (and, for the oracle, Min-K% AUC).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ModelQuality {
    #[serde(default)]
    pub mc_forget: Option<f64>,
    #[serde(default)]
    pub mc_retain: Option<f64>,
    #[serde(default)]
    pub rouge_forget: Option<f64>,
    #[serde(default)]
    pub rouge_retain: Option<f64>,
    #[serde(default)]
    pub mink_auc: Option<f64>,
}

impl WorldQuality {
    /// A gate that did not pass: "failed" or "disabled" (anything but "passed").
    pub fn gate_warning(&self) -> bool {
        self.gate != "passed"
    }
}

/// The world-quality files of `results_dir`: `results_dir/world_quality/*.json`, and, when
/// `results_dir` holds several sweeps (`results_dir/*/cells`), each sweep's
/// `world_quality/*.json`. No folder, no records. Sorted by (model, world seed).
pub fn load_world_quality(results_dir: &Path) -> Result<Vec<WorldQuality>> {
    let mut dirs = vec![results_dir.join("world_quality")];
    if !results_dir.join("cells").is_dir() && results_dir.is_dir() {
        for sub in sorted_entries(results_dir)? {
            if sub.join("cells").is_dir() {
                dirs.push(sub.join("world_quality"));
            }
        }
    }
    let mut out = Vec::new();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        for path in sorted_entries(&dir)? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") || !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let q: WorldQuality = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a world-quality record", path.display()))?;
            out.push(q);
        }
    }
    out.sort_by(|a, b| (&a.model, a.world_seed).cmp(&(&b.model, b.world_seed)));
    Ok(out)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}: cannot list", dir.display()))? {
        out.push(entry.with_context(|| format!("{}: cannot list", dir.display()))?.path());
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod paper_msa_tests {
    use super::is_paper_msa;
    use serde_json::json;

    fn p(v: serde_json::Value) -> std::collections::BTreeMap<String, serde_json::Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn variants_are_not_the_papers_msa() {
        assert!(is_paper_msa("msa", &p(json!({"alpha": 1.0, "beta": 0.5, "checkpoint": "distance:0"}))));
        // defaults written out are still the paper's MSA
        assert!(is_paper_msa("msa", &p(json!({"alpha": 1.0, "variant": "plain", "sparsity": 1.0, "repair_steps": 0}))));
        assert!(!is_paper_msa("task_negation", &p(json!({"alpha": 1.0}))));
        for variant in [
            json!({"alpha": "calibrated"}),
            json!({"alpha": 1.0, "variant": "orthogonal"}),
            json!({"alpha": 1.0, "alpha_scaling": "norm_share"}),
            json!({"alpha": 1.0, "sparsity": 0.2}),
            json!({"alpha": 1.0, "ensemble": "distance:0+distance:1"}),
            json!({"alpha": 1.0, "repair_steps": 10}),
        ] {
            assert!(!is_paper_msa("msa", &p(variant.clone())), "{variant}");
        }
    }
}
