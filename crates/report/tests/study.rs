//! The report on multi-world studies: results folders built here, with the expected numbers
//! recomputed independently of the report's code (from the generating formulas, through the
//! `stats` crate's documented functions and configuration, or by hand):
//! - 3 world seeds × 2 method seeds: table intervals (per-example and per-run bases), the
//!   comparisons' paired intervals, Wilcoxon p-values (checked against scipy, numbers from
//!   `scripts/stats_reference.py`) and Holm decisions — one comparison obviously significant,
//!   one obviously not;
//! - one run per row: the value alone and "1 run: no interval";
//! - a second oracle: the noise-floor row;
//! - `world_quality/*.json`: the World quality table and its WARNING line;
//! - cell files without `world_seed`, `per_example` or `example_ids` still load.

use std::path::Path;

use report::fmt_num;
use serde_json::{json, Value};
use stats::BootstrapConfig;

const WORLDS: [u64; 3] = [0, 1, 2];
const SEEDS: [u64; 2] = [0, 1];
const EXAMPLES: usize = 10;

/// A metric record: per-example values with ids `q0…`, value = their mean.
fn per_example(values: &[f64]) -> Value {
    let ids: Vec<String> = (0..values.len()).map(|e| format!("q{e}")).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    json!({ "direction": "lower_is_better", "value": mean, "per_example": values, "example_ids": ids })
}

#[allow(clippy::too_many_arguments)]
fn write_cell(dir: &Path, method: &str, kind: &str, params: Value, world: u64, seed: u64, metrics: Value) {
    let id = format!("{method}-w{world}-s{seed}");
    let body = json!({
        "schema_version": 1,
        "sweep": "study",
        "cell": { "id": id, "key": id, "method": method, "kind": kind, "params": params, "model": "m",
                  "seed": seed, "world_seed": world },
        "status": "ok",
        "metrics": metrics,
        "resolved_config": {},
        "provenance": { "crate_version": "0.0.0", "git_commit": null },
        "timings": { "started_unix": 0.0, "finished_unix": 1.0, "stages": {} },
    });
    std::fs::write(dir.join(format!("{id}.json")), serde_json::to_string(&body).unwrap()).unwrap();
}

// The generating formulas. mc = per-example multiple-choice correctness (0/1), kl = per-example
// KL to the oracle. MSA matches the oracle's answers; gradient ascent gets every answer the
// other way and is far in KL (obviously worse); NPO differs from MSA by two flipped answers and
// by KL offsets of both signs in equal measure (no real difference).
fn oracle_mc(w: u64, e: usize) -> f64 {
    ((w as usize + e) % 2) as f64
}
fn msa_mc(w: u64, e: usize, _s: u64) -> f64 {
    oracle_mc(w, e)
}
fn ga_mc(w: u64, e: usize, _s: u64) -> f64 {
    1.0 - oracle_mc(w, e)
}
fn npo_mc(w: u64, e: usize, s: u64) -> f64 {
    let flipped = matches!((w, e, s), (1, 3, 0) | (2, 7, 1));
    if flipped {
        1.0 - oracle_mc(w, e)
    } else {
        oracle_mc(w, e)
    }
}
fn msa_kl(w: u64, e: usize, s: u64) -> f64 {
    0.01 * (e + 1) as f64 + 0.001 * w as f64 + 0.0001 * s as f64
}
fn ga_kl(w: u64, e: usize, s: u64) -> f64 {
    1.0 + 0.1 * e as f64 + 0.01 * w as f64 + 0.001 * s as f64
}
fn npo_kl(w: u64, e: usize, s: u64) -> f64 {
    // examples 2k and 2k+1 get offsets of equal size and opposite sign
    let sign = if e & 1 == 0 { 1.0 } else { -1.0 };
    msa_kl(w, e, s) + sign * 0.002 * (1 + (e / 2) % 4) as f64
}

type Gen = fn(u64, usize, u64) -> f64;
/// Per world, (example id, value).
type Clusters = Vec<Vec<(String, f64)>>;

fn study_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("results/study/cells");
    std::fs::create_dir_all(&dir).unwrap();
    let ex = |f: &dyn Fn(usize) -> f64| per_example(&(0..EXAMPLES).map(f).collect::<Vec<_>>());
    for w in WORLDS {
        // references: one seed each
        let metrics = json!({
            "mc_accuracy/forget": ex(&|e| oracle_mc(w, e)),
            "kl_to_oracle/forget": ex(&|_| 0.0),
        });
        write_cell(&dir, "retrain", "reference", json!({}), w, 0, metrics);
        let metrics = json!({ "mc_accuracy/forget": ex(&|e| 1.0 - oracle_mc(w, e) * 0.5) });
        write_cell(&dir, "final", "reference", json!({}), w, 0, metrics);
        let methods: [(&str, &str, Value, Gen, Gen); 3] = [
            ("msa", "msa", json!({ "alpha": 1.0 }), msa_mc, msa_kl),
            ("gradient_ascent", "gradient_ascent", json!({}), ga_mc, ga_kl),
            ("npo", "npo", json!({}), npo_mc, npo_kl),
        ];
        for (method, kind, params, mc, kl) in methods {
            for s in SEEDS {
                let mut metrics = json!({
                    "mc_accuracy/forget": ex(&|e| mc(w, e, s)),
                    "kl_to_oracle/forget": ex(&|e| kl(w, e, s)),
                });
                if method == "msa" {
                    // one number per run, no per-example values
                    metrics["tofu_forget_quality"] =
                        json!({ "direction": "higher_is_better", "value": 0.1 * w as f64 + 0.01 * s as f64 });
                }
                write_cell(&dir, method, kind, params.clone(), w, s, metrics);
            }
        }
    }
    tmp
}

/// Per world, the per-example values of `f` averaged over the method seeds (as (id, value)).
fn seed_averaged(f: &dyn Fn(u64, usize, u64) -> f64) -> Clusters {
    WORLDS
        .iter()
        .map(|&w| {
            (0..EXAMPLES)
                .map(|e| (format!("q{e}"), SEEDS.iter().map(|&s| f(w, e, s)).sum::<f64>() / SEEDS.len() as f64))
                .collect()
        })
        .collect()
}

fn values(c: &[Vec<(String, f64)>]) -> Vec<Vec<f64>> {
    c.iter().map(|w| w.iter().map(|(_, v)| *v).collect()).collect()
}

fn interval_text(i: &stats::Interval) -> String {
    format!("{} [{}, {}]", fmt_num(i.mean), fmt_num(i.lo), fmt_num(i.hi))
}

#[test]
fn three_worlds_two_seeds_intervals_and_holm() {
    let tmp = study_fixture();
    let out = tmp.path().join("report");
    report::build(&tmp.path().join("results/study"), &out).unwrap();
    let tables = std::fs::read_to_string(out.join("tables.md")).unwrap();
    let cfg = BootstrapConfig::default(); // 2000 replicates, 95 %, seed 0: the report's
    assert_eq!(report::aggregate::BOOTSTRAP, cfg);

    // --- the full table (the appendix): MSA's row; θ_D has no model utility, so the gate is not
    // measured ---
    let full = &tables[tables.find("## All metrics and grid points").expect(&tables)..];
    let msa_row = full.lines().find(|l| l.starts_with("| msa (alpha=1) |")).unwrap();
    assert!(msa_row.starts_with("| msa (alpha=1) | 3 | 6 | not measured |"), "{msa_row}");
    // kl_to_oracle/forget: clusters = worlds, examples = per-example KL averaged over the seeds
    let kl = stats::cluster_bootstrap_mean_ci(&values(&seed_averaged(&msa_kl)), &cfg).unwrap();
    assert!(msa_row.contains(&interval_text(&kl)), "{msa_row} lacks {}", interval_text(&kl));
    // forget quality has one number per run: clusters = worlds, examples = the runs' values
    let fq_runs: Vec<Vec<f64>> =
        WORLDS.iter().map(|&w| SEEDS.iter().map(|&s| 0.1 * w as f64 + 0.01 * s as f64).collect()).collect();
    let fq = stats::cluster_bootstrap_mean_ci(&fq_runs, &cfg).unwrap();
    // mean of world means (0.005 + 0.105 + 0.205)/3 = 0.105
    assert!((fq.mean - 0.105).abs() < 1e-12);
    assert!(msa_row.contains(&interval_text(&fq)), "{msa_row} lacks {}", interval_text(&fq));
    assert!(tables.contains("Bootstrapped over run values (no usable per-example values"), "{tables}");
    assert!(tables.contains("tofu_forget_quality."));
    // every row with several runs has an interval; the references (one run per world, three
    // worlds) too
    assert!(!tables.contains("1 run: no interval"));
    let oracle_row = full.lines().find(|l| l.starts_with("| *retrain (oracle)* |")).unwrap();
    assert!(oracle_row.starts_with("| *retrain (oracle)* | 3 | 3 |"), "{oracle_row}");

    // --- the comparisons ---
    assert!(tables.contains("## Comparisons (every MSA grid point against every other row)\n\nStatistic: per (world, example), the distance to the oracle"), "{tables}");
    let distance = |f: Gen| -> Clusters { seed_averaged(&move |w, e, s| (f(w, e, s) - oracle_mc(w, e)).abs()) };
    let cases: [(&str, &str, Clusters, Clusters); 4] = [
        ("gradient_ascent", "mc_accuracy/forget", distance(msa_mc), distance(ga_mc)),
        ("gradient_ascent", "kl_to_oracle/forget", seed_averaged(&msa_kl), seed_averaged(&ga_kl)),
        ("npo", "mc_accuracy/forget", distance(msa_mc), distance(npo_mc)),
        ("npo", "kl_to_oracle/forget", seed_averaged(&msa_kl), seed_averaged(&npo_kl)),
    ];
    let mut p = Vec::new();
    let mut intervals = Vec::new();
    for (_, _, a, b) in &cases {
        intervals.push(stats::paired_cluster_bootstrap_mean_ci(a, b, &cfg).unwrap());
        let d: Vec<f64> = stats::paired_differences(a, b).unwrap().concat();
        p.push(stats::wilcoxon_signed_rank_auto(&d, &vec![0.0; d.len()]).unwrap().p_value);
    }
    // By hand / scipy (scripts/stats_reference.py):
    // gradient ascent, mc: all 30 differences are −1 (MSA 0 from the oracle, GA 1):
    // stats.wilcoxon(-np.ones(30), zero_method='wilcox', correction=False, method='asymptotic').pvalue = 4.320463057827488e-08
    assert!((p[0] / 4.320463057827488e-08 - 1.0).abs() < 1e-12, "{}", p[0]);
    // gradient ascent, KL: 30 distinct negative differences:
    // stats.wilcoxon(-np.arange(1, 31), zero_method='wilcox', correction=False, method='asymptotic').pvalue = 1.7343976283205784e-06
    assert!((p[1] / 1.7343976283205784e-06 - 1.0).abs() < 1e-12, "{}", p[1]);
    // NPO, mc: two differences of −0.5 (one flipped answer in one of two seeds), 28 zeros:
    // stats.wilcoxon([-0.5, -0.5] + [0] * 28, zero_method='wilcox', correction=False, method='asymptotic').pvalue = 0.15729920705028502
    assert!((p[2] - 0.15729920705028502).abs() < 1e-12, "{}", p[2]);
    // NPO, KL: offsets of equal size and opposite sign, R⁺ = R⁻: p = 1 (up to rounding ties)
    assert!(p[3] > 0.9, "{}", p[3]);
    // Holm over the four, by hand: 4·p₀, 3·p₁, 2·p₂ = 0.315, then max(0.315, p₃)
    let holm = stats::holm(&p).unwrap();
    assert!((holm[0] - 4.0 * p[0]).abs() < 1e-20 && (holm[1] - 3.0 * p[1]).abs() < 1e-18);
    assert!((holm[2] - 2.0 * p[2]).abs() < 1e-15 && (holm[3] - p[3].max(2.0 * p[2])).abs() < 1e-15);
    let decisions = ["yes", "yes", "no", "no"];
    for (i, (other, metric, a, b)) in cases.iter().enumerate() {
        let row = tables
            .lines()
            .find(|l| l.starts_with(&format!("| m | msa (alpha=1) | {other} | {metric} |")))
            .unwrap_or_else(|| panic!("no comparison row for {other} {metric}:\n{tables}"));
        let mean = |c: &[Vec<(String, f64)>]| {
            c.iter().map(|w| w.iter().map(|(_, v)| v).sum::<f64>() / w.len() as f64).sum::<f64>() / c.len() as f64
        };
        let want = format!(
            "| m | msa (alpha=1) | {other} | {metric} | 3 | 30 | {} | {} | {} | {} |",
            fmt_num(mean(a)),
            fmt_num(mean(b)),
            interval_text(&intervals[i]),
            fmt_num(p[i])
        );
        assert!(row.starts_with(&want), "{row}\nwant {want}");
        assert!(row.ends_with(&format!("| {} | {} |", fmt_num(holm[i]), decisions[i])), "{row}");
    }
    // the obviously different one: the interval excludes 0; the other: it includes 0
    assert!(intervals[1].hi < 0.0 && intervals[3].lo < 0.0 && intervals[3].hi > 0.0);
    assert!(tables.contains("Holm's correction over all 4 p-values"));

    // the same report twice: the same bytes (fixed bootstrap seed)
    let again = tmp.path().join("again");
    report::build(&tmp.path().join("results/study"), &again).unwrap();
    assert_eq!(std::fs::read_to_string(again.join("tables.md")).unwrap(), tables);
    // the page shows the comparisons too (in its appendix)
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<td>m</td><td>msa (alpha=1)</td><td>npo</td><td>kl_to_oracle/forget</td>"), "{html}");
}

#[test]
fn one_run_shows_the_value_and_says_no_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cells");
    std::fs::create_dir_all(&dir).unwrap();
    let m = |v: f64| json!({ "mc_accuracy/retain": { "direction": "higher_is_better", "value": v, "per_example": [v - 0.1, v + 0.1] } });
    write_cell(&dir, "retrain", "reference", json!({}), 0, 0, m(0.5));
    write_cell(&dir, "msa", "msa", json!({}), 0, 0, m(0.25));
    let s = report::build(tmp.path(), &tmp.path().join("out")).unwrap();
    let tables = std::fs::read_to_string(tmp.path().join("out/tables.md")).unwrap();
    // no θ_D row: the gate cannot be applied, nothing is bold
    assert!(
        tables.contains("| *retrain (oracle)* | 1 | 1 |  | 0.500 |\n| msa | 1 | 1 | not measured | 0.250 |\n"),
        "{tables}"
    );
    assert!(tables.contains("Every row is one run: no intervals"), "{tables}");
    assert!(s.notes.iter().any(|n| n.contains("no θ_D (final) row")), "{:?}", s.notes);
    let tex = std::fs::read_to_string(tmp.path().join("out/tables.tex")).unwrap();
    assert!(tex.contains("msa & 1 & 1 & not measured & 0.250 \\\\") && tex.contains("no intervals"), "{tex}");
}

#[test]
fn second_oracle_gives_the_noise_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cells");
    std::fs::create_dir_all(&dir).unwrap();
    let m = |v: f64| json!({ "mc_accuracy/forget": { "direction": "lower_is_better", "value": v } });
    // world 0: oracle 0.4, second oracle 0.5 → 0.1; world 1: 0.5 vs 0.3 → 0.2; world 2 has no
    // second oracle and is left out: noise floor (0.1 + 0.2)/2 = 0.15 over 2 worlds
    for (w, oracle, alt) in [(0, 0.4, Some(0.5)), (1, 0.5, Some(0.3)), (2, 0.9, None)] {
        write_cell(&dir, "retrain", "reference", json!({}), w, 0, m(oracle));
        if let Some(alt) = alt {
            write_cell(&dir, "retrain_alt", "reference", json!({}), w, 0, m(alt));
        }
        write_cell(&dir, "msa", "msa", json!({}), w, 0, m(0.3));
    }
    report::build(tmp.path(), &tmp.path().join("out")).unwrap();
    let tables = std::fs::read_to_string(tmp.path().join("out/tables.md")).unwrap();
    let lines: Vec<&str> = tables.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("| *retrain_alt (second oracle)* | 2 | 2 |")).expect(&tables);
    assert!(lines[at - 1].starts_with("| *retrain (oracle)* | 3 | 3 |"), "{tables}");
    assert_eq!(lines[at + 1], "| *noise floor (two oracles)* | 2 | – |  | *0.150* |");
    assert!(tables.contains("forget MC accuracy (→ oracle 0.600, floor 0.150)"), "{tables}");
    assert!(tables.contains("noise floor (two oracles): Δ of the second oracle"), "{tables}");
    let tex = std::fs::read_to_string(tmp.path().join("out/tables.tex")).unwrap();
    assert!(tex.contains("\\emph{noise floor (two oracles)} & 2 & – &  & \\emph{0.150} \\\\"), "{tex}");

    // without a second oracle: no such row
    for w in 0..2 {
        std::fs::remove_file(dir.join(format!("retrain_alt-w{w}-s0.json"))).unwrap();
    }
    report::build(tmp.path(), &tmp.path().join("out2")).unwrap();
    let tables = std::fs::read_to_string(tmp.path().join("out2/tables.md")).unwrap();
    assert!(!tables.contains("| *noise floor (two oracles)*"), "{tables}");
    assert!(tables.contains("forget MC accuracy (→ oracle 0.600) |"), "{tables}");
}

fn quality(model: &str, world: u64, gate: &str, failures: &[&str]) -> Value {
    json!({
        "model": model, "world_seed": world, "world_hash": format!("h{world}"),
        "theta_d": { "mc_forget": 0.9, "mc_retain": 0.85, "rouge_forget": 0.7, "rouge_retain": 0.65 },
        "oracle": { "mc_forget": 0.3, "mc_retain": 0.84, "rouge_forget": 0.2, "rouge_retain": 0.6, "mink_auc": 0.52 },
        "tokens_trained": 1234567u64, "seconds": 98.76, "gate": gate, "failures": failures,
        "something_new": { "ignored": true },
    })
}

#[test]
fn world_quality_table_and_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("cells")).unwrap();
    write_cell(&root.join("cells"), "msa", "msa", json!({}), 0, 0, json!({}));
    let wq = root.join("world_quality");
    std::fs::create_dir_all(&wq).unwrap();
    let put = |name: &str, v: Value| std::fs::write(wq.join(name), v.to_string()).unwrap();
    put("tiny-1.json", quality("tiny", 1, "passed", &[]));
    put("tiny-0.json", quality("tiny", 0, "passed", &[]));

    report::build(root, &root.join("out")).unwrap();
    let index = std::fs::read_to_string(root.join("out/index.md")).unwrap();
    let top = index.find("## World quality").expect(&index);
    assert!(top < index.find("## Headline").unwrap(), "the world-quality table comes first");
    assert!(index.contains(
        "| tiny | 0 | 0.900 | 0.850 | 0.700 | 0.650 | 0.300 | 0.840 | 0.200 | 0.600 | 0.520 | 1234567 | 98.8 | passed |\n\
         | tiny | 1 |"
    ), "{index}");
    assert!(!index.contains("WARNING"), "{index}");

    put("tiny-2.json", quality("tiny", 2, "failed", &["oracle mc_forget 0.8 above 0.5"]));
    put("tiny-3.json", quality("tiny", 3, "disabled", &[]));
    report::build(root, &root.join("out")).unwrap();
    let index = std::fs::read_to_string(root.join("out/index.md")).unwrap();
    assert!(
        index.contains(
            "**WARNING: 2 of 4 world(s) did not pass the quality gate — `tiny` world 2 gate failed: oracle mc_forget \
             0.8 above 0.5; `tiny` world 3 gate disabled.**"
        ),
        "{index}"
    );
    assert!(index.contains("| 98.8 | **failed** |") && index.contains("| 98.8 | **disabled** |"));

    // a malformed file is an error naming it
    put("bad.json", json!({ "model": "tiny" }));
    let err = report::build(root, &root.join("out")).unwrap_err();
    assert!(format!("{err:#}").contains("bad.json: not a world-quality record"), "{err:#}");
}

#[test]
fn old_cell_files_still_load() {
    // no world_seed, no per_example, no example_ids (the layout before worlds had seeds)
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cells");
    std::fs::create_dir_all(&dir).unwrap();
    for seed in [0, 1] {
        let body = json!({
            "schema_version": 1, "sweep": "old",
            "cell": { "id": format!("msa-{seed}"), "method": "msa", "kind": "msa", "params": {}, "model": "m", "seed": seed },
            "status": "ok",
            "metrics": { "tofu_model_utility": { "direction": "higher_is_better", "value": 0.5 + seed as f64 } },
        });
        std::fs::write(dir.join(format!("msa-{seed}.json")), body.to_string()).unwrap();
    }
    let cells = report::results::load_cells(tmp.path()).unwrap();
    assert_eq!(cells.len(), 2);
    assert!(cells.iter().all(|c| c.cell.world_seed == 0 && c.metrics["tofu_model_utility"].per_example.is_empty()));
    report::build(tmp.path(), &tmp.path().join("out")).unwrap();
    let tables = std::fs::read_to_string(tmp.path().join("out/tables.md")).unwrap();
    // two runs of one world: bootstrap over the two values → [0.5, 1.5]
    assert!(tables.contains("| msa | 1 | 2 | not measured | 1.000 [0.500, 1.500] |"), "{tables}");
    let csv = std::fs::read_to_string(tmp.path().join("out/long.csv")).unwrap();
    assert!(csv.contains("old,msa-1,msa,msa,,m,0,1,tofu_model_utility,1.5,higher_is_better"), "{csv}");
}
