//! A report never mixes results made under different configurations (issue 22): cells whose
//! fingerprints disagree — the same cell key in two merged folders, one world's cells on a world
//! field, one row's runs on the training config, old cells beside fingerprinted ones — are
//! refused with a message naming the cell, the files and the field; cells that agree load.

use std::path::Path;

use serde_json::{json, Value};

const WORLD_A: &str = "3fa2000000000000";
const WORLD_B: &str = "9c01000000000000";

fn fingerprint(world: &str, train: &str) -> Value {
    let fields = json!({
        "format": "1", "smoke": "false", "data_files": "d0", "world": world, "model": "m0", "dtype": "f32",
        "metrics": "x0", "method": "k0", "train": train,
    });
    json!({ "hash": format!("{world}-{train}"), "fields": fields })
}

/// One `ok` cell of method `method` with seed `seed`; `fp` null for an old file.
fn cell(dir: &Path, method: &str, seed: u64, fp: Value) {
    std::fs::create_dir_all(dir).unwrap();
    let key = format!("{method}/world=0/seed={seed}/model=m");
    let id = key.replace('/', "__");
    let mut body = json!({
        "schema_version": 1,
        "sweep": dir.parent().unwrap().file_name().unwrap().to_str().unwrap(),
        "cell": { "id": id, "key": key, "method": method, "kind": method, "params": {}, "model": "m", "seed": seed },
        "status": "ok",
        "metrics": { "tofu_forget_quality": { "direction": "higher_is_better", "value": 0.5 } },
        "resolved_config": {},
        "provenance": { "crate_version": "0.0.0", "git_commit": null },
        "timings": { "started_unix": 0.0, "finished_unix": 1.0, "stages": {} },
    });
    if !fp.is_null() {
        body["fingerprint"] = fp;
    }
    std::fs::write(dir.join(format!("{id}.json")), serde_json::to_string_pretty(&body).unwrap()).unwrap();
}

#[track_caller]
fn refused(results: &Path, fragments: &[&str]) {
    let msg = format!("{:#}", report::results::load_cells(results).expect_err("should be refused"));
    for f in fragments {
        assert!(msg.contains(f), "error {msg:?} lacks {f:?}");
    }
    let out = results.join("../report");
    assert!(report::build(results, &out).is_err());
    assert!(!out.join("index.md").exists(), "no report is written");
}

#[test]
fn cells_of_one_configuration_load() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("results/s/cells");
    cell(&cells, "msa", 0, fingerprint(WORLD_A, "t1"));
    cell(&cells, "msa", 1, fingerprint(WORLD_A, "t1"));
    cell(&cells, "ga", 0, fingerprint(WORLD_A, "t2")); // another row: its own training config
    let loaded = report::results::load_cells(&tmp.path().join("results/s")).unwrap();
    assert_eq!(loaded.len(), 3);
    assert!(loaded[0].path.ends_with("ga__world=0__seed=0__model=m.json"));
    assert_eq!(loaded[0].fingerprint.as_ref().unwrap().fields["train"], "t2");
    // folders written before fingerprints (none has one) still load
    let old = tmp.path().join("old/s/cells");
    cell(&old, "msa", 0, Value::Null);
    cell(&old, "msa", 1, Value::Null);
    assert_eq!(report::results::load_cells(&tmp.path().join("old/s")).unwrap().len(), 2);
}

#[test]
fn the_same_cell_key_with_another_world_in_merged_folders_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    cell(&tmp.path().join("merged/a/cells"), "msa", 0, fingerprint(WORLD_A, "t1"));
    cell(&tmp.path().join("merged/b/cells"), "msa", 0, fingerprint(WORLD_B, "t1"));
    refused(
        &tmp.path().join("merged"),
        &["msa/world=0/seed=0/model=m", "`world`", "3fa20000…", "9c010000…", "a/cells/msa__", "b/cells/msa__"],
    );
}

#[test]
fn one_world_built_twice_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("results/s/cells");
    cell(&cells, "final", 0, fingerprint(WORLD_A, "none"));
    cell(&cells, "msa", 0, fingerprint(WORLD_B, "t1"));
    refused(&tmp.path().join("results/s"), &["model m and world seed 0", "`world`", "final/world=0", "msa/world=0"]);
}

#[test]
fn the_runs_of_one_row_under_two_training_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("results/s/cells");
    cell(&cells, "msa", 0, fingerprint(WORLD_A, "t1"));
    cell(&cells, "msa", 1, fingerprint(WORLD_A, "t2"));
    refused(&tmp.path().join("results/s"), &["one table row", "msa", "`train`", "t1", "t2"]);
}

#[test]
fn old_cells_beside_fingerprinted_ones_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("results/s/cells");
    cell(&cells, "msa", 0, fingerprint(WORLD_A, "t1"));
    cell(&cells, "msa", 1, Value::Null);
    refused(&tmp.path().join("results/s"), &["1 cell(s) have no fingerprint", "seed=1", "rerun the sweep"]);
}
