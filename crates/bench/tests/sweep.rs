//! End-to-end tests of `bench sweep`: the real-model configs in smoke mode, and a sweep that
//! is killed mid-run and resumed (no missing or duplicate cell, the same numbers as an
//! uninterrupted run).

use std::path::{Path, PathBuf};
use std::process::Command;

fn data_dir() -> PathBuf {
    match std::env::var_os("UNLEARN_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Copy `configs/NAME.toml` into `dir` with its results going to `dir/results`.
fn local_config(name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("configs").join(format!("{name}.toml"))).unwrap();
    let mut out = String::from("output_dir = \"results\"\n");
    for line in text.lines() {
        if !line.trim_start().starts_with("output_dir") {
            out.push_str(line);
            out.push('\n');
        }
    }
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, out).unwrap();
    p
}

fn bench(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bench"));
    c.current_dir(dir).env("UNLEARN_DATA_DIR", data_dir());
    c
}

fn cell_files(results: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(results)
        .map(|r| {
            r.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn metrics_of(file: &Path) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(v["status"], "ok", "{}: {}", file.display(), v["error_chain"]);
    v["metrics"].clone()
}

#[test]
fn real_model_configs_run_end_to_end_in_smoke_mode() {
    if !data_dir().join("truthfulqa/mc_task.json").is_file() {
        println!(
            "SKIPPED: the real-model configs score TruthfulQA/ToxiGen, whose data is missing under {}",
            data_dir().display()
        );
        // Outside CI a missing data file skips; with the data directory set (CI) it fails, so a
        // broken data path never passes green.
        assert!(
            std::env::var_os("UNLEARN_DATA_DIR").is_none(),
            "the reference data above is missing although UNLEARN_DATA_DIR is set"
        );
        return;
    }
    for name in
        ["llama2", "qwen", "olmo2", "tofu-llama3.2-1b", "tofu-llama3.1-8b", "olmo2-checkpoints", "muse-books", "restor"]
    {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = local_config(name, tmp.path());
        let out = bench(tmp.path()).args(["sweep", cfg.to_str().unwrap(), "--smoke"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{name}: bench sweep --smoke failed:\n{}",
            &stderr[stderr.len().saturating_sub(3000)..]
        );
        let dry = bench(tmp.path()).args(["sweep", cfg.to_str().unwrap(), "--smoke", "--dry-run"]).output().unwrap();
        let listing = String::from_utf8_lossy(&dry.stderr);
        let n_cells = listing
            .lines()
            .filter(|l| l.starts_with("done ") || l.starts_with("pending ") || l.starts_with("failed "))
            .count();
        let files = cell_files(&tmp.path().join("results").join(name).join("cells"));
        assert_eq!(files.len(), n_cells, "{name}: one result per cell");
        for f in &files {
            let m = metrics_of(f);
            assert!(m.as_object().is_some_and(|o| !o.is_empty()), "{}: no metrics", f.display());
        }
        assert!(tmp.path().join("reports").join(name).join("index.md").is_file(), "{name}: no report");
        if name.starts_with("tofu") || name == "olmo2-checkpoints" {
            // the paper's protocol: a TOFU world from the fixture (chat template for the Llama
            // configs), MSA from a hub: θ_0 (base model, pretraining revision), the judged
            // accuracies in [0, 1]
            let msa_base = files
                .iter()
                .find(|f| f.to_string_lossy().contains("checkpoint=hub_"))
                .expect("an MSA cell whose θ_0 is a hub: checkpoint");
            let m = metrics_of(msa_base);
            for k in ["acc_forget", "acc_recover", "acc_retain", "tofu_model_utility", "tofu_forget_quality"] {
                let v =
                    m[k]["value"].as_f64().unwrap_or_else(|| panic!("{name}: {k} missing in {}", msa_base.display()));
                assert!((0.0..=1.0).contains(&v), "{name}: {k} = {v}");
            }
        }
    }
}

#[test]
fn a_killed_sweep_resumes_without_missing_or_duplicate_cells_and_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = local_config("tiny", tmp.path());
    let cells = tmp.path().join("results/tiny/cells");
    // The number of cells, from the dry-run listing ("N cells: 0 done, 0 failed, N pending").
    let dry = bench(tmp.path()).args(["sweep", cfg.to_str().unwrap(), "--smoke", "--dry-run"]).output().unwrap();
    let listing = String::from_utf8_lossy(&dry.stdout).to_string() + &String::from_utf8_lossy(&dry.stderr);
    let total: usize = listing
        .lines()
        .find_map(|l| l.split_once(" cells: ").and_then(|(n, _)| n.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no cell count in the dry-run listing: {listing}"));
    assert!(total >= 8, "configs/tiny.toml has only {total} cells");
    // Run until a few cells are written, then kill the process.
    let mut child = bench(tmp.path())
        .args(["sweep", cfg.to_str().unwrap(), "--smoke", "--no-report"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while cell_files(&cells).len() < 4 && start.elapsed().as_secs() < 600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let done_before = cell_files(&cells).len();
    assert!(done_before >= 4, "the sweep wrote {done_before} cells before it was killed");
    assert!(done_before < total, "the sweep finished before it could be killed");
    // Resume.
    let out = bench(tmp.path()).args(["sweep", cfg.to_str().unwrap(), "--smoke", "--no-report"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "resume failed: {log}");
    assert!(log.contains(&format!("{} already done", done_before)), "resume did not skip the finished cells: {log}");
    let resumed = cell_files(&cells);
    assert_eq!(resumed.len(), total, "every cell exactly once");
    // An uninterrupted run gives the same numbers, cell by cell.
    let tmp2 = tempfile::tempdir().unwrap();
    let cfg2 = local_config("tiny", tmp2.path());
    let out = bench(tmp2.path()).args(["sweep", cfg2.to_str().unwrap(), "--smoke", "--no-report"]).output().unwrap();
    assert!(out.status.success());
    let fresh = cell_files(&tmp2.path().join("results/tiny/cells"));
    assert_eq!(fresh.len(), total);
    for (a, b) in resumed.iter().zip(&fresh) {
        assert_eq!(a.file_name(), b.file_name());
        assert_eq!(metrics_of(a), metrics_of(b), "{}: resumed and uninterrupted runs differ", a.display());
    }
    // what this build's runner writes, the shared schema reads back and writes again byte for byte,
    // in the runner's view (TOML hyperparameters) and the report's (JSON)
    for f in &fresh {
        let text = std::fs::read_to_string(f).unwrap();
        let as_toml: results_schema::CellResult<toml::Value> = results_schema::CellResult::from_json(&text, f).unwrap();
        let as_json: results_schema::CellResult = results_schema::CellResult::from_json(&text, f).unwrap();
        assert_eq!(serde_json::to_string_pretty(&as_toml).unwrap() + "\n", text, "{}", f.display());
        assert_eq!(serde_json::to_string_pretty(&as_json).unwrap() + "\n", text, "{}", f.display());
    }
    // configs/tiny.toml's [attacks] ran: every cell, references included, was scored again after
    // each quantization, into records that carry the attacked record's declared target
    for f in &fresh {
        let m = metrics_of(f);
        for attack in ["quantize:int8", "quantize:int4:g128"] {
            let r = &m[format!("attack/{attack}/mc_accuracy/forget")];
            assert_eq!(r["target"], "toward_oracle", "{}: no {attack} record: {r}", f.display());
        }
    }
}

/// Every numeric metric value of every cell, by (cell id without its hash, record).
fn all_values(results: &Path) -> std::collections::BTreeMap<(String, String), f64> {
    let mut out = std::collections::BTreeMap::new();
    for f in cell_files(results) {
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let cell = name.rsplit_once('-').map_or(name.clone(), |(c, _)| c.to_string());
        let m = metrics_of(&f);
        for (k, v) in m.as_object().unwrap() {
            if let Some(x) = v["value"].as_f64() {
                out.insert((cell.clone(), k.clone()), x);
            }
        }
    }
    out
}

/// Rank statistics over a handful of examples (AUCs, KS statistics and p-values, PrivLeak,
/// accuracies, ROUGE): a last-bit difference can move one example across another, so they are
/// compared by the size of one step, not by a tolerance on the value.
fn is_rank_statistic(record: &str) -> bool {
    [
        "auc",
        "privleak",
        "forget_quality",
        "ks_statistic",
        "accuracy",
        "rouge",
        "acc_",
        "knowmem",
        "verbmem",
        "extraction",
        "exact_memorization",
    ]
    .iter()
    .any(|s| record.contains(s))
}

/// The path CUDA takes (candle's composed ops, no fused CPU kernel) through the whole
/// `configs/tiny.toml` sweep (`--smoke`: the same cells, world and attacks at smoke sizes), in
/// f32 (`UNLEARN_NO_FUSED=1`) and in bf16-mixed (composed by construction), against the fused
/// f32 run. Stated tolerances, |a − b| ≤ atol + rtol·|a| on continuous values: f32 atol 2e-3,
/// rtol 2e-2 (measured in the release build at most 8e-4 absolute, KL to the oracle, and in the
/// test build 0.9 % on NPO's parameter distance to the oracle: 3.915 vs 3.879), 3 % on the
/// quantization attack's continuous values (a last-bit difference crosses a rounding boundary:
/// 0.6 % measured); bf16-mixed atol 2e-2, rtol 0.1 (measured: perplexity 1.2 %, KL 0.006
/// absolute), parameter distance to the oracle within 20 % (a whole rounded trajectory: up to
/// 11 % measured, NPO). Rank statistics over a few examples may move by
/// a step (AUC 1/16, KS 1/6): at most 0.25 (PrivLeak, in percent of the oracle's AUC: 25
/// points). Every cell and every record must be present in all three runs.
#[test]
fn the_composed_gpu_path_matches_the_fused_run_over_the_whole_tiny_sweep() {
    let run = |env: Option<(&str, &str)>, precision: Option<&str>| {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = local_config("tiny", tmp.path());
        if let Some(p) = precision {
            let text = std::fs::read_to_string(&cfg).unwrap();
            assert!(text.contains("\n[train]\n"));
            std::fs::write(&cfg, text.replace("\n[train]\n", &format!("\n[train]\nprecision = \"{p}\"\n"))).unwrap();
        }
        let mut cmd = bench(tmp.path());
        cmd.args(["sweep", cfg.to_str().unwrap(), "--smoke", "--no-report"]);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{env:?} {precision:?}: {}", &log[log.len().saturating_sub(3000)..]);
        all_values(&tmp.path().join("results/tiny/cells"))
    };
    let fused = run(None, None);
    assert!(fused.len() > 100, "{} values", fused.len());
    for (label, other, atol, rtol) in [
        ("f32, fused kernels off", run(Some(("UNLEARN_NO_FUSED", "1")), None), 2e-3, 2e-2),
        ("bf16-mixed", run(None, Some("bf16-mixed")), 2e-2, 0.1),
    ] {
        assert_eq!(
            fused.keys().collect::<Vec<_>>(),
            other.keys().collect::<Vec<_>>(),
            "{label}: the same cells and records"
        );
        for ((cell, record), a) in &fused {
            let b = other[&(cell.clone(), record.clone())];
            // bf16-mixed rounds every step: the weights' distance to the oracle (a whole
            // trajectory) moved by up to 11 % (NPO, 5 epochs); the scores keep the tolerances
            // below
            if label == "bf16-mixed" && record.contains("param_distance_to_oracle") {
                assert!(b.is_finite() && (a - b).abs() <= 0.2 * a.abs(), "{label}: {cell} {record}: fused {a} vs {b}");
                continue;
            }
            let ok = if record.contains("privleak") {
                (a - b).abs() <= 25.0 + 0.25 * a.abs()
            } else if record.starts_with("attack/quantize") && !is_rank_statistic(record) {
                // round-to-nearest int4/int8: a last-bit difference moves weights across a
                // rounding boundary (f32: 0.6 % on the parameter distance); at least 3 % relative
                (a - b).abs() <= atol + f64::max(rtol, 0.03) * a.abs()
            } else if is_rank_statistic(record) {
                (a - b).abs() <= 0.25 + 1e-9
            } else {
                (a - b).abs() <= atol + rtol * a.abs()
            };
            assert!(ok, "{label}: {cell} {record}: fused {a} vs {b}");
        }
    }
}
