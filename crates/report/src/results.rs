//! Reading a sweep's results: `RESULTS_DIR/cells/*.json` as written by the `runner` crate's
//! result store, and the world-quality files `RESULTS_DIR/world_quality/*.json` when there are
//! any. The cell layout is the `results-schema` crate's, the one definition the runner writes
//! with (re-exported here under the report's names: [`CellInfo`], [`MetricFile`], [`Status`]);
//! its compatibility rules (fields added later have defaults, unknown fields are ignored, other
//! schema versions are refused) keep old results loadable.
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

/// The cell file layout (the `results-schema` crate, which the runner writes with), with a
/// cell's hyperparameters as JSON values.
pub use results_schema::{
    Cell as CellInfo, CellStatus as Status, Direction, Fingerprint, MetricRecord as MetricFile, Scale, Target, Timings,
    FIELDS as FINGERPRINT_FIELDS, REFERENCE_FINAL, REFERENCE_RETRAIN, REFERENCE_RETRAIN_ALT, ROW_FIELDS,
    SCHEMA_VERSION,
};

/// A cell's result as read, and the file it was read from (set by [`load_cells`]). Derefs to
/// the result, so `cell.metrics`, `cell.cell.method`, `cell.world_kind()` read the schema's
/// fields.
#[derive(Clone, Debug)]
pub struct CellFile {
    pub result: results_schema::CellResult,
    pub path: PathBuf,
}

impl std::ops::Deref for CellFile {
    type Target = results_schema::CellResult;
    fn deref(&self) -> &Self::Target {
        &self.result
    }
}

impl std::ops::DerefMut for CellFile {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.result
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
            let result = results_schema::CellResult::from_json(&text, &path)?;
            cells.push(CellFile { result, path: path.clone() });
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
        let key = c.cell.name();
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
    let field = fa.first_difference(fb, consider)?;
    let show = |f: &Fingerprint| results_schema::ShortValue(f.fields.get(&field).map(String::as_str)).to_string();
    let who = |c: &CellFile| c.cell.name().to_owned();
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
