//! scripts/oracle_goal.py (issue 19's goal, run by run) on a hand-made long table whose
//! verdicts are worked out by hand below.

use std::path::Path;
use std::process::Command;

const HEADER: &str = "sweep,cell,method,kind,params,model,world_seed,seed,metric,value,direction,target\n";

fn row(method: &str, params: &str, seed: u32, metric: &str, value: f64) -> String {
    format!("s,c,{method},k,{params},tiny,0,{seed},{metric},{value},d,t\n")
}

fn run(csv: &str, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.csv");
    std::fs::write(&path, csv).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oracle_goal.py");
    Command::new("python3").arg(script).arg(&path).args(args).output().expect("python3 runs")
}

fn table() -> String {
    let mut s = HEADER.to_string();
    // World 0. Oracle: MC 0.2; second oracle: MC 0.3 (floor |0.3 − 0.2| = 0.1), KL 0.5 (floor);
    // θ_D: utility 0.8 (the gate: ≥ 0.72).
    for (m, mc, kl, fq, util) in
        [("retrain", 0.2, 0.0, 1.0, 0.8), ("retrain_alt", 0.3, 0.5, 0.4, 0.8), ("final", 1.0, 2.0, 1e-6, 0.8)]
    {
        s += &row(m, "", 0, "mc_accuracy/forget", mc);
        s += &row(m, "", 0, "kl_to_oracle/forget", kl);
        s += &row(m, "", 0, "tofu_forget_quality", fq);
        s += &row(m, "", 0, "tofu_model_utility", util);
    }
    // Seed 0 meets all four: Δ 0.05 ≤ 0.1, KL 0.4 ≤ 0.5, p 0.1 ≥ 0.05, 0.75 / 0.8 = 0.9375 ≥ 0.9.
    // Seed 1 meets none: Δ 0.15, KL 0.6, p 0.01, 0.7 / 0.8 = 0.875.
    for (seed, mc, kl, fq, util) in [(0, 0.25, 0.4, 0.1, 0.75), (1, 0.35, 0.6, 0.01, 0.7)] {
        s += &row("a", "x=1", seed, "mc_accuracy/forget", mc);
        s += &row("a", "x=1", seed, "kl_to_oracle/forget", kl);
        s += &row("a", "x=1", seed, "tofu_forget_quality", fq);
        s += &row("a", "x=1", seed, "tofu_model_utility", util);
    }
    s
}

#[test]
fn the_goal_is_counted_run_by_run() {
    let out = run(&table(), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // 2 runs; each condition met once; all four once; world 0 not met by every run.
    assert!(stdout.contains("| tiny | a | 2 | 1 | 1 | 1 | 1 | **1** | none of 1 |"), "{stdout}");
    // Per-run rows, met conditions in bold.
    assert!(
        stdout.contains("| tiny | a | 0 | 0 | **0.050** (0.100) | **0.400** (0.500) | **0.1** | **0.938** |"),
        "{stdout}"
    );
    assert!(stdout.contains("| tiny | a | 0 | 1 | 0.150 (0.100) | 0.600 (0.500) | 0.01 | 0.875 |"), "{stdout}");
}

#[test]
fn several_points_need_a_headline() {
    let mut csv = table();
    csv += &row("a", "x=2", 0, "mc_accuracy/forget", 0.2);
    let out = run(&csv, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tiny/a: 2 parameter points") && err.contains("--headline a="), "{err}");
    let picked = run(&csv, &["--headline", "a=x=1"]);
    assert!(picked.status.success(), "{}", String::from_utf8_lossy(&picked.stderr));
}
