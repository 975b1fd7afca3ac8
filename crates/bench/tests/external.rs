//! `bench sweep` with `external` methods (issue 21), needing nothing but the harness: a shell
//! script that calls `bench arith` (θ = θ_D − w·(θ_D − θ_clean)) writes a folder the sweep
//! scores; commands that fail, time out, do not exist, write nothing, or write a model with
//! another architecture or vocabulary or non-finite weights, or write into their inputs, are
//! failed cells whose errors say why, and the sweep goes on. Then the PyTorch example (configs/external-example.toml), only
//! where `python3 -c "import torch, transformers"` works.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data_dir() -> PathBuf {
    match std::env::var_os("UNLEARN_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

fn bench(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bench"));
    c.current_dir(dir).env("UNLEARN_DATA_DIR", data_dir()).env("RAYON_NUM_THREADS", "1");
    c
}

const MIX_SH: &str = r#"#!/bin/sh
# θ = θ_D − w·(θ_D − θ_clean), with bench arith: usage mix.sh MODEL CLEAN W OUT
set -e
echo "mixing $1 and $2 with w = $3"
exec "$BENCH" arith --out "$4" --term 1="$1" --term "-$3"="$1" --term "$3"="$2"
"#;

fn config(bench_bin: &str) -> String {
    format!(
        r#"
name = "ext"
output_dir = "results"
seeds = [0]
metrics = ["tofu_prob_forget", "param_distance_to_oracle"]

[world]
kind = "facts"
seed = 0
quality_gate = false

[[models]]
name = "tiny"
scratch = "tiny"

[train]
lr = 1e-3

[methods.mix]
kind = "external"
command = ["sh", "mix.sh", "{{model}}", "{{latest_clean}}", "{{w}}", "{{out}}"]
env = {{ BENCH = "{bench_bin}" }}
w = [0.5, 1.0]

[methods.fails]
kind = "external"
command = ["sh", "-c", "echo working; echo boom >&2; exit 3"]

[methods.slow]
kind = "external"
command = ["sh", "-c", "echo started; sleep 60; echo never"]
timeout = 1

[methods.missing]
kind = "external"
command = ["./no-such-program-xyz", "{{out}}"]

[methods.nothing]
kind = "external"
command = ["sh", "-c", "echo done"]

[methods.inf]
kind = "external"
command = ["sh", "-c", "exec \"$BENCH\" arith --out \"$0\" --term 1e300=\"$1\"", "{{out}}", "{{model}}"]
env = {{ BENCH = "{bench_bin}" }}

[methods.arch]
kind = "external"
command = ["sh", "-c", "cp -r \"$1\" \"$0\" && sed -i 's/\"num_hidden_layers\": *[0-9]*/\"num_hidden_layers\": 99/' \"$0/config.json\"", "{{out}}", "{{model}}"]

[methods.vocab]
kind = "external"
command = ["sh", "-c", "cp -r \"$1\" \"$0\" && sed -i 's/\"vocab_size\": *[0-9]*/\"vocab_size\": 7/' \"$0/config.json\"", "{{out}}", "{{model}}"]

# (last by name: it touches θ_D's staged files, which are the world's)
[methods.zz_tamper]
kind = "external"
command = ["sh", "-c", "touch \"$1/config.json\" && cp -r \"$1\" \"$0\"", "{{out}}", "{{model}}"]
"#
    )
}

fn results(dir: &Path) -> Vec<serde_json::Value> {
    let cells = dir.join("results/ext/cells");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cells)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files.iter().map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()).collect()
}

fn by_method<'a>(rs: &'a [serde_json::Value], method: &str) -> Vec<&'a serde_json::Value> {
    rs.iter().filter(|r| r["cell"]["method"] == method).collect()
}

#[track_caller]
fn failed_with(rs: &[serde_json::Value], method: &str, fragments: &[&str]) -> serde_json::Value {
    let r = by_method(rs, method);
    assert_eq!(r.len(), 1, "{method}");
    let r = r[0];
    assert_eq!(r["status"], "failed", "{method}: {r}");
    let err = r["error_chain"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect::<Vec<_>>().join(": ");
    for f in fragments {
        assert!(err.contains(f), "{method}: error {err:?} lacks {f:?}");
    }
    assert!(r["metrics"].as_object().is_none_or(|m| m.is_empty()), "{method}: a failed cell has no metrics");
    r["provenance"]["external"].clone()
}

#[test]
fn external_commands_are_run_validated_scored_or_failed_with_their_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bench_bin = env!("CARGO_BIN_EXE_bench");
    std::fs::write(dir.join("mix.sh"), MIX_SH).unwrap();
    let cfg = dir.join("ext.toml");
    std::fs::write(&cfg, config(bench_bin)).unwrap();
    let out = bench(dir).args(["sweep", cfg.to_str().unwrap(), "--smoke", "--no-report"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // the failed cells make the run exit non-zero, after every cell ran
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("8 cell(s) failed"), "{}", &stderr[stderr.len().saturating_sub(4000)..]);
    let rs = results(dir);
    assert_eq!(rs.len(), 2 + 2 + 8, "one result per cell");

    // the bench-arith method: scored like any other cell, with what ran recorded
    let finals = by_method(&rs, "final");
    let d_final = finals[0]["metrics"]["param_distance_to_oracle"]["value"].as_f64().unwrap();
    let mix = by_method(&rs, "mix");
    assert_eq!(mix.len(), 2);
    let mut distances = Vec::new();
    for r in &mix {
        assert_eq!(r["status"], "ok", "{}", r["error_chain"]);
        let d = r["metrics"]["param_distance_to_oracle"]["value"].as_f64().unwrap();
        assert!(d.is_finite() && d != d_final, "{d} vs θ_D's {d_final}");
        distances.push(d);
        assert!(r["metrics"]["tofu_prob_forget"]["value"].as_f64().is_some());
        let ext = &r["provenance"]["external"];
        assert_eq!(ext["exit_status"], 0);
        assert_eq!(ext["timed_out"], false);
        assert!(ext["wall_seconds"].as_f64().unwrap() > 0.0);
        let cmd: Vec<&str> = ext["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(cmd[..2], ["sh", "mix.sh"]);
        assert!(cmd[2].ends_with("external/inputs/model"), "{cmd:?}: θ_D is staged, not the world's folder");
        assert!(cmd[3].contains("external/inputs/checkpoints/step-"), "{cmd:?}");
        assert!(cmd[4] == "0.5" || cmd[4] == "1", "{{w}} is filled in: {cmd:?}");
        // sha256 of the script the command names
        let sum = Command::new("sha256sum").arg("mix.sh").current_dir(dir).output().unwrap();
        let want = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap_or_default().to_owned();
        assert_eq!(want.len(), 64);
        assert_eq!(ext["scripts"]["mix.sh"], want.as_str());
        assert_eq!(ext["env"]["BENCH"], bench_bin);
        // its output went to the cell's log
        let log = std::fs::read_to_string(ext["log"].as_str().map(|l| dir.join(l)).unwrap()).unwrap();
        assert!(log.contains("mixing") && log.contains("\"tensors\""), "{log}");
        // the resolved config names the command
        assert_eq!(r["resolved_config"]["method"]["external"]["command"][1], "mix.sh");
    }
    assert_ne!(distances[0], distances[1], "w is passed to the command");
    // the unlearned folders are deleted after scoring; the oracle is never staged
    let staged = std::fs::read_dir(dir.join("results/ext/cache/tiny")).unwrap().next().unwrap().unwrap().path();
    let inputs = staged.join("external/inputs");
    for f in
        ["forget.jsonl", "retain.jsonl", "forget_qa.jsonl", "retain_qa.jsonl", "checkpoints.json", "model/config.json"]
    {
        assert!(inputs.join(f).is_file(), "{f} not staged");
    }
    let forget = std::fs::read_to_string(inputs.join("forget.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(forget.lines().next().unwrap()).unwrap();
    assert!(first["id"].is_u64() && first["text"].is_string(), "{first}");
    let qa = std::fs::read_to_string(inputs.join("forget_qa.jsonl")).unwrap();
    let q: serde_json::Value = serde_json::from_str(qa.lines().next().unwrap()).unwrap();
    for k in ["question", "answer", "paraphrased_answer", "perturbed_answer"] {
        assert!(!q[k].is_null(), "forget_qa.jsonl lacks {k}: {q}");
    }
    let ledger: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(inputs.join("checkpoints.json")).unwrap()).unwrap();
    let ck = ledger["checkpoints"].as_array().unwrap();
    assert!(ck.iter().any(|c| c["clean"] == true) && ck.iter().any(|c| c["clean"] == false));
    assert!(ck.iter().all(|c| (c["clean"] == true) == c["path"].is_string()), "only clean checkpoints are given");
    let all_staged = walk(&inputs);
    assert!(!all_staged.iter().any(|p| p.to_string_lossy().contains("oracle")), "{all_staged:?}");

    // failures: each names its cause, carries the command's last lines, and is recorded
    let ext = failed_with(&rs, "fails", &["exited with status 3", "boom", "working"]);
    assert_eq!(ext["exit_status"], 3);
    let ext = failed_with(&rs, "slow", &["timed out after 1 s", "methods.slow.timeout", "started"]);
    assert_eq!(ext["timed_out"], true);
    assert!(ext["wall_seconds"].as_f64().unwrap() < 30.0, "the command was killed");
    failed_with(&rs, "missing", &["cannot start `./no-such-program-xyz`"]);
    failed_with(&rs, "nothing", &["exited 0 but wrote nothing", "done"]);
    failed_with(&rs, "inf", &["non-finite value"]);
    failed_with(&rs, "arch", &["another architecture than θ_D's"]);
    failed_with(&rs, "vocab", &["vocab_size 7", "vocabulary must stay θ_D's"]);
    failed_with(&rs, "zz_tamper", &["the command changed its input", "model/config.json"]);
    // no invalid folder is left behind
    let models = dir.join("results/ext/models");
    assert!(!models.exists() || std::fs::read_dir(&models).unwrap().next().is_none(), "{:?}", walk(&models));

    // a rerun skips the finished cells; editing the script makes them stale
    let dry = |d: &Path| {
        let o = bench(d).args(["sweep", cfg.to_str().unwrap(), "--smoke", "--dry-run"]).output().unwrap();
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let listing = dry(dir);
    assert_eq!(listing.lines().filter(|l| l.starts_with("done ") && l.contains("mix__")).count(), 2, "{listing}");
    std::fs::write(dir.join("mix.sh"), format!("{MIX_SH}# edited\n")).unwrap();
    let listing = dry(dir);
    assert_eq!(
        listing.lines().filter(|l| l.starts_with("stale ") && l.contains("mix__") && l.contains("method")).count(),
        2,
        "{listing}"
    );
    assert_eq!(listing.lines().filter(|l| l.starts_with("done ") && l.contains("final__")).count(), 1, "{listing}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}

/// The worked PyTorch example: configs/external-example.toml with --smoke, when torch and
/// transformers are installed.
#[test]
fn the_pytorch_example_runs_when_torch_is_installed() {
    let ok =
        Command::new("python3").args(["-c", "import torch, transformers"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: python3 cannot import torch and transformers; the PyTorch example (scripts/external/grad_ascent.py) was not run");
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join("configs/external-example.toml")).unwrap();
    let text = text.replace(
        "output_dir = \"results\"",
        &format!("output_dir = {:?}", tmp.path().join("results").display().to_string()),
    );
    let cfg = tmp.path().join("external-example.toml");
    std::fs::write(&cfg, text).unwrap();
    // run from the workspace root: the command names scripts/external/grad_ascent.py
    let out = bench(&root).args(["sweep", cfg.to_str().unwrap(), "--smoke", "--no-report"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", &stderr[stderr.len().saturating_sub(4000)..]);
    let cells = tmp.path().join("results/external-example/cells");
    let mut n = 0;
    for e in std::fs::read_dir(&cells).unwrap() {
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
        assert_eq!(r["status"], "ok", "{}", r["error_chain"]);
        if r["cell"]["kind"] == "external" {
            n += 1;
            assert_eq!(r["provenance"]["external"]["exit_status"], 0);
            assert!(r["provenance"]["external"]["scripts"]["scripts/external/grad_ascent.py"].is_string());
        }
    }
    assert!(n >= 1, "no external cell ran");
}
