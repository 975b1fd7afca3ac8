//! The result store: one JSON file per cell, `OUTPUT_DIR/SWEEP/cells/CELL_ID.json`, written
//! atomically (temporary file in the same folder, fsync, rename, fsync of the folder), so a
//! sweep killed at any moment leaves only whole results behind and loses at most the cell in
//! flight. A rerun skips cells whose file says `ok` and whose [`Fingerprint`] equals the
//! current one; stale cells (another fingerprint, or none) and failed cells are rerun; `--force`
//! redoes everything.
//!
//! The JSON layout (schema version [`SCHEMA_VERSION`]) is defined once, in the
//! `results-schema` crate, which the `report` crate reads with too; the types are re-exported
//! here. Non-finite numbers (a diverged loss, an undefined metric) are written as `null` and
//! read back as NaN.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

use crate::cells::Cell;
use crate::config::Sweep;
use crate::fingerprint::{config_key, json_difference, FieldChange, Fingerprint};

/// The layout of a cell's file, with the cell's hyperparameters as the config's TOML values.
pub type CellResult = results_schema::CellResult<toml::Value>;
pub use results_schema::{CellStatus, Direction, MetricRecord, Provenance, Timings, SCHEMA_VERSION};

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

/// This build's provenance: `crate_version` as given, the commit of the git work tree
/// containing `repo_dir` (if any), this machine's CPU ([`cpu_description`]).
pub fn detect_provenance(crate_version: &str, repo_dir: &Path) -> Provenance {
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

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
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
        let Some(mut change) = crate::fingerprint::change_from(current, r.fingerprint.as_ref()) else {
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
    CellResult::from_json(text, path)
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
