//! The result store: one JSON file per cell, `OUTPUT_DIR/SWEEP/cells/CELL_ID.json`, written
//! atomically (temporary file in the same folder, fsync, rename, fsync of the folder), so a
//! sweep killed at any moment leaves only whole results behind and loses at most the cell in
//! flight. A rerun skips cells whose file says `ok` and whose [`Fingerprint`] equals the
//! current one; stale cells (another fingerprint, or none) and failed cells are rerun; `--force`
//! redoes everything.
//!
//! The JSON layout (schema version [`SCHEMA_VERSION`]) is what the `report` crate reads; it
//! does not depend on this crate, so a change here must be mirrored there. Non-finite numbers
//! (a diverged loss, an undefined metric) are written as `null` and read back as NaN.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cells::Cell;
use crate::config::Sweep;
use crate::fingerprint::{config_key, json_difference, FieldChange, Fingerprint};

/// Version of the cell JSON layout.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything recorded about one cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub schema_version: u32,
    pub sweep: String,
    pub cell: Cell,
    pub status: CellStatus,
    /// For a failed cell, the error and its causes, outermost first (anyhow's chain).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_chain: Vec<String>,
    /// By metric name; a metric reported per split is stored as `NAME/SPLIT`.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricRecord>,
    /// The exact configuration the cell ran with (see [`resolved_config`]).
    pub resolved_config: serde_json::Value,
    /// Everything that determined this result (see [`crate::fingerprint`]); `None` in files
    /// written before results recorded it (such a result is stale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    pub provenance: Provenance,
    pub timings: Timings,
    /// Training / unlearning loss curves by name (e.g. "unlearn", "msa_forget_finetune"):
    /// (optimizer step, loss).
    #[serde(default, with = "curves_nan_as_null")]
    pub loss_curves: BTreeMap<String, Vec<(u64, f64)>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    Ok,
    Failed,
}

/// Which way a metric improves (the one definition, in `evals`).
pub use evals::Direction;

/// A metric's aggregate and per-example values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    pub direction: Direction,
    #[serde(with = "f64_nan_as_null")]
    pub value: f64,
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
    /// How the number is judged, as its metric declares it (`evals::registry`); `None` in files
    /// written before targets were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<evals::registry::Target>,
    /// The scale its distances and ratios are taken on (`evals::registry::Scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<evals::registry::Scale>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Version of the binary that ran the cell.
    pub crate_version: String,
    /// `git rev-parse HEAD` of the working tree, when there is one.
    pub git_commit: Option<String>,
    /// For a cell of an `external` method: the command that made it, its exit status, wall
    /// time, the hashes of the scripts it names and its log (absent for every other cell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<crate::external::ExternalRun>,
    /// The machine's CPU as the numbers depend on it ([`cpu_description`]): results are
    /// bit-reproducible on the same CPU; on another one they can differ in the last bits, since
    /// `gemm` (candle's CPU matrix multiply) sizes its blocks — and so the order of its sums —
    /// by the caches it detects, and picks its kernels by instruction set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// This machine's CPU: model name, instruction-set level and cache sizes (Linux; fields it
/// cannot read are left out), e.g. `Intel(R) Xeon(R) Processor; x86_64 avx2+fma; L1d 48K, L2
/// 2048K, L3 491520K`.
pub fn cpu_description() -> String {
    let mut parts = vec![];
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(name) =
            info.lines().find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':'])))
        {
            parts.push(name.trim().to_owned());
        }
    }
    #[cfg(target_arch = "x86_64")]
    parts.push(
        if std::arch::is_x86_feature_detected!("avx512f") {
            "x86_64 avx512f"
        } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            "x86_64 avx2+fma"
        } else {
            "x86_64 baseline"
        }
        .to_owned(),
    );
    #[cfg(not(target_arch = "x86_64"))]
    parts.push(std::env::consts::ARCH.to_owned());
    let caches: Vec<String> = (0..8)
        .filter_map(|i| {
            let dir = std::path::PathBuf::from(format!("/sys/devices/system/cpu/cpu0/cache/index{i}"));
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok().map(|s| s.trim().to_owned());
            let (level, kind, size) = (read("level")?, read("type")?, read("size")?);
            (kind != "Instruction").then(|| format!("L{level}{} {size}", if kind == "Data" { "d" } else { "" }))
        })
        .collect();
    if !caches.is_empty() {
        parts.push(caches.join(", "));
    }
    parts.join("; ")
}

impl Provenance {
    /// `crate_version` as given; the commit of the git work tree containing `repo_dir`, if any.
    pub fn detect(crate_version: &str, repo_dir: &Path) -> Provenance {
        let git_commit = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo_dir)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        Provenance { crate_version: crate_version.to_owned(), git_commit, external: None, cpu: Some(cpu_description()) }
    }
}

/// Wall-clock times in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Seconds since the Unix epoch.
    pub started_unix: f64,
    pub finished_unix: f64,
    /// Seconds per stage (e.g. "unlearn", "eval"), by name.
    #[serde(default)]
    pub stages: BTreeMap<String, f64>,
}

impl Timings {
    /// Seconds since the Unix epoch, now.
    pub fn now_unix() -> f64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }
}

/// What the store knows about a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellState {
    /// No result file.
    Pending,
    /// A result with status `ok` made under the current fingerprint.
    Done,
    /// A result with status `ok` made under another fingerprint, or none (a rerun redoes it).
    Stale,
    /// A result with status `failed` (a rerun retries it).
    Failed,
}

impl CellState {
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Pending => "pending",
            CellState::Done => "done",
            CellState::Stale => "stale",
            CellState::Failed => "failed",
        }
    }
}

/// A cell's state and, for a stale cell, the first field its result differs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CellCheck {
    pub state: CellState,
    pub change: Option<FieldChange>,
}

impl CellCheck {
    /// Whether a sweep runs the cell: always with `force`, else unless it is done.
    pub fn needs_run(&self, force: bool) -> bool {
        force || self.state != CellState::Done
    }
}

/// The exact configuration of one cell, stored in its result: sweep name and source, the world
/// table, the model, the method (name, kind, hyperparameters), the training config with the
/// cell's overrides applied, the metrics and the seed.
pub fn resolved_config(sweep: &Sweep, cell: &Cell) -> Result<serde_json::Value> {
    let model = sweep
        .models
        .iter()
        .find(|m| m.name == cell.model)
        .with_context(|| format!("cell {}: model `{}` is not in sweep {}", cell.key, cell.model, sweep.name))?;
    let train =
        sweep.train.with_overrides(&cell.params).with_context(|| format!("cell {}: training overrides", cell.key))?;
    let mut method = serde_json::json!({ "name": cell.method, "kind": cell.kind, "params": cell.params });
    // an external method's command, env and timeout (only for that kind: other cells unchanged)
    if let Some(spec) = sweep.methods.get(&cell.method).and_then(|m| m.external.as_ref()) {
        method["external"] = serde_json::to_value(spec)?;
    }
    Ok(serde_json::json!({
        "sweep": sweep.name,
        "source": sweep.source.display().to_string(),
        "world": sweep.world,
        "model": model,
        "method": method,
        "train": train,
        "metrics": sweep.metrics,
        "world_seed": cell.world_seed,
        "seed": cell.seed,
    }))
}

/// `OUTPUT_DIR/SWEEP/`: the results of one sweep.
#[derive(Clone, Debug)]
pub struct ResultStore {
    dir: PathBuf,
}

impl ResultStore {
    /// The store of sweep `sweep_name` under `output_dir` (no IO yet).
    pub fn new(output_dir: &Path, sweep_name: &str) -> ResultStore {
        ResultStore { dir: output_dir.join(sweep_name) }
    }

    /// The store at `sweep.output_dir/sweep.name`.
    pub fn for_sweep(sweep: &Sweep) -> ResultStore {
        ResultStore::new(&sweep.output_dir, &sweep.name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cells_dir(&self) -> PathBuf {
        self.dir.join("cells")
    }

    pub fn cell_path(&self, cell_id: &str) -> PathBuf {
        self.cells_dir().join(format!("{cell_id}.json"))
    }

    /// Reads a cell's result; `None` if it has none yet.
    pub fn load(&self, cell_id: &str) -> Result<Option<CellResult>> {
        let path = self.cell_path(cell_id);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read cell result", path.display())),
        };
        parse_result(&text, &path).map(Some)
    }

    /// The cell's state against the current fingerprint `current` of the cell. `config` is the
    /// cell's current [`resolved_config`]: a stale cell's change says what differs in it.
    pub fn check(&self, cell: &Cell, current: &Fingerprint, config: &serde_json::Value) -> Result<CellCheck> {
        let Some(r) = self.load(&cell.id)? else {
            return Ok(CellCheck { state: CellState::Pending, change: None });
        };
        if r.status == CellStatus::Failed {
            return Ok(CellCheck { state: CellState::Failed, change: None });
        }
        let Some(mut change) = current.change_from(r.fingerprint.as_ref()) else {
            return Ok(CellCheck { state: CellState::Done, change: None });
        };
        if let Some(key) = config_key(&change.field) {
            change.detail = json_difference(&r.resolved_config[key], &config[key]);
        }
        Ok(CellCheck { state: CellState::Stale, change: Some(change) })
    }

    /// Writes a result atomically, replacing any earlier one for the same cell.
    pub fn write(&self, result: &CellResult) -> Result<PathBuf> {
        let path = self.cell_path(&result.cell.id);
        let mut json = serde_json::to_vec_pretty(result)
            .with_context(|| format!("cell {}: cannot serialise result", result.cell.key))?;
        json.push(b'\n');
        write_atomic(&path, &json)?;
        Ok(path)
    }

    /// Records that a cell failed, with `error`'s whole chain; the sweep goes on.
    pub fn record_failure(
        &self,
        cell: &Cell,
        error: &anyhow::Error,
        resolved_config: serde_json::Value,
        fingerprint: Fingerprint,
        provenance: Provenance,
        timings: Timings,
    ) -> Result<PathBuf> {
        let sweep = self.dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.write(&CellResult {
            schema_version: SCHEMA_VERSION,
            sweep,
            cell: cell.clone(),
            status: CellStatus::Failed,
            error_chain: error.chain().map(|e| e.to_string()).collect(),
            metrics: BTreeMap::new(),
            resolved_config,
            fingerprint: Some(fingerprint),
            provenance,
            timings,
            loss_curves: BTreeMap::new(),
        })
    }

    /// Every finished result file (`*.json`; temporary files are ignored), sorted by cell id.
    pub fn load_all(&self) -> Result<Vec<CellResult>> {
        let mut out = Vec::new();
        for path in self.result_files()? {
            let text =
                fs::read_to_string(&path).with_context(|| format!("{}: cannot read cell result", path.display()))?;
            out.push(parse_result(&text, &path)?);
        }
        Ok(out)
    }

    /// Leftover temporary files of writes that were interrupted.
    pub fn stale_temp_files(&self) -> Result<Vec<PathBuf>> {
        Ok(self.list()?.into_iter().filter(|p| is_temp_name(p)).collect())
    }

    /// Deletes [`Self::stale_temp_files`] (call only when no other process writes to this
    /// store, e.g. not while other shards run); returns how many.
    pub fn remove_stale_temp_files(&self) -> Result<usize> {
        let stale = self.stale_temp_files()?;
        for p in &stale {
            fs::remove_file(p).with_context(|| format!("{}: cannot remove temporary file", p.display()))?;
        }
        Ok(stale.len())
    }

    /// The ids (file stems) of every finished result file, sorted: with [`crate::expand`], the
    /// results that belong to no cell of the current config.
    pub fn result_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .result_files()?
            .iter()
            .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_owned))
            .collect())
    }

    fn result_files(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|p| !is_temp_name(p) && p.extension().is_some_and(|e| e == "json"))
            .collect())
    }

    fn list(&self) -> Result<Vec<PathBuf>> {
        let dir = self.cells_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot list results", dir.display())),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("{}: cannot list results", dir.display()))?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                paths.push(entry.path());
            }
        }
        paths.sort();
        Ok(paths)
    }
}

/// The `--dry-run` listing: one line per cell, `done    ID`, `stale   ID  (FIELD: OLD → NEW)`,
/// `failed  ID` or `pending ID`, then the summary line `N cells: D done, S stale, F failed, P
/// pending`.
pub fn format_dry_run(states: &[(&Cell, CellCheck)]) -> String {
    let mut out = String::new();
    let mut counts = [0usize; 4];
    for (cell, check) in states {
        counts[check.state as usize] += 1;
        match &check.change {
            Some(change) => out.push_str(&format!("{:<7} {}  ({change})\n", check.state.as_str(), cell.id)),
            None => out.push_str(&format!("{:<7} {}\n", check.state.as_str(), cell.id)),
        }
    }
    out.push_str(&format!(
        "{} cells: {} done, {} stale, {} failed, {} pending\n",
        states.len(),
        counts[CellState::Done as usize],
        counts[CellState::Stale as usize],
        counts[CellState::Failed as usize],
        counts[CellState::Pending as usize]
    ));
    out
}

fn parse_result(text: &str, path: &Path) -> Result<CellResult> {
    let r: CellResult =
        serde_json::from_str(text).with_context(|| format!("{}: not a valid cell result", path.display()))?;
    if r.schema_version != SCHEMA_VERSION {
        bail!("{}: schema_version {} (this build reads {SCHEMA_VERSION})", path.display(), r.schema_version);
    }
    Ok(r)
}

fn is_temp_name(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') && n.contains(".tmp"))
}

/// Writes `bytes` to `path` so that readers see either the old file or the whole new one:
/// a temporary `.NAME.tmp.PID.N` in the same folder, fsync, rename over `path`, fsync the folder.
/// Creates the folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("{}: cannot create folder", dir.display()))?;
    let name = path.file_name().with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> Result<()> {
        let mut f = fs::File::create(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
        f.sync_all().with_context(|| format!("{}: cannot fsync", tmp.display()))?;
        drop(f);
        fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // Make the rename itself durable (directories can be opened and fsynced on Unix).
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
        let raw = BTreeMap::<String, Vec<(u64, Option<f64>)>>::deserialize(d)?;
        Ok(raw
            .into_iter()
            .map(|(k, pts)| (k, pts.into_iter().map(|(step, x)| (step, x.unwrap_or(f64::NAN))).collect()))
            .collect())
    }
}
