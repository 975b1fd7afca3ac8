//! The cell file layout: real result files (`tests/fixtures/cells`: cells of
//! `bench sweep configs/tiny.toml --smoke`, written by the runner and kept as they were written,
//! so files of an earlier build keep loading) read back and written again byte for byte, with
//! TOML hyperparameters (the runner's view) and JSON ones (the report's); old, minimal files load
//! with their defaults; non-finite numbers go through null; the fingerprint hash against a hand
//! computation (Python's hashlib, in the comment).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use results_schema::{CellResult, CellStatus, Fingerprint, ShortValue, SCHEMA_VERSION};

fn tiny_cells() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cells");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (runner-written cell files kept as fixtures)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn runner_files_round_trip_byte_for_byte_in_both_views() {
    let files = tiny_cells();
    // the four committed fixtures: retrain, gradient ascent, RMU, MSA
    assert!(files.len() >= 4, "{files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let as_toml: CellResult<toml::Value> = CellResult::from_json(&text, &path).unwrap();
        let as_json: CellResult = CellResult::from_json(&text, &path).unwrap();
        for written in
            [serde_json::to_string_pretty(&as_toml).unwrap(), serde_json::to_string_pretty(&as_json).unwrap()]
        {
            assert_eq!(written + "\n", text, "{} does not round-trip", path.display());
        }
        assert_eq!(as_toml.cell.params.len(), as_json.cell.params.len());
        assert_eq!(as_json.status, CellStatus::Ok);
        assert!(as_json.fingerprint.is_some() && !as_json.metrics.is_empty());
        assert_eq!(as_json.world_kind(), Some("facts"), "{}", path.display());
    }
}

#[test]
fn a_minimal_old_file_loads_with_defaults_and_nulls_are_nan() {
    let text = r#"{
        "schema_version": 1,
        "cell": {"id": "ga-1", "method": "ga", "kind": "gradient_ascent", "model": "tiny", "seed": 0},
        "status": "ok",
        "metrics": {"mc_accuracy": {"direction": "higher_is_better", "value": null, "per_example": [0.5, null]}},
        "loss_curves": {"unlearn": [[0, 2.0], [1, null]]},
        "resolved_config": null,
        "some_field_from_a_newer_build": 3
    }"#;
    let r: CellResult = CellResult::from_json(text, Path::new("old.json")).unwrap();
    assert_eq!((r.cell.key.as_str(), r.cell.name(), r.cell.world_seed), ("", "ga-1", 0));
    assert!(r.cell.params.is_empty() && r.fingerprint.is_none() && r.sweep.is_empty());
    let m = &r.metrics["mc_accuracy"];
    assert!(m.value.is_nan() && m.finite_value().is_none());
    assert_eq!(m.per_example[0], 0.5);
    assert!(m.per_example[1].is_nan());
    assert!(r.loss_curves["unlearn"][1].1.is_nan());
    assert_eq!(r.world_kind(), None);
    assert_eq!(r.timings.stages.len(), 0);
    // written again, NaN is null once more
    let back = serde_json::to_value(&r).unwrap();
    assert_eq!(back["metrics"]["mc_accuracy"]["value"], serde_json::Value::Null);
    assert_eq!(back["metrics"]["mc_accuracy"]["per_example"][1], serde_json::Value::Null);
    assert_eq!(back["loss_curves"]["unlearn"][1][1], serde_json::Value::Null);
}

#[test]
fn another_schema_version_or_a_missing_field_is_refused_naming_the_file() {
    let text = r#"{"schema_version": 2, "cell": {"id": "a", "method": "m", "kind": "k", "model": "t", "seed": 0}, "status": "ok"}"#;
    let e = format!("{:#}", CellResult::<serde_json::Value>::from_json(text, Path::new("x/a.json")).unwrap_err());
    assert!(e.contains("x/a.json") && e.contains("schema_version 2") && e.contains(&SCHEMA_VERSION.to_string()), "{e}");
    let e = format!(
        "{:#}",
        CellResult::<serde_json::Value>::from_json(r#"{"schema_version": 1}"#, Path::new("b.json")).unwrap_err()
    );
    assert!(e.contains("b.json") && e.contains("cell"), "{e}");
}

#[test]
fn fingerprint_hash_and_first_difference() {
    // python3: F = [format, smoke, data_files, world, model, dtype, metrics, method, train];
    // f = {world: 0123456789abcdef, extra: x};
    // sha256("".join(f"{n}={f.get(n, '')}\n" for n in F + ["extra"])).hexdigest()[:16]
    let fields = BTreeMap::from([("world".to_owned(), "0123456789abcdef".to_owned()), ("extra".into(), "x".into())]);
    let a = Fingerprint::new(fields.clone());
    assert_eq!(a.hash, "f40fb4dce5d0c453");
    // differences are reported in FIELDS order, then other fields by name
    let mut f2 = fields.clone();
    f2.insert("train".into(), "t".into());
    f2.insert("smoke".into(), "true".into());
    f2.insert("aaa".into(), "1".into());
    let b = Fingerprint::new(f2);
    assert_eq!(a.first_difference(&b, |_| true).as_deref(), Some("smoke"));
    assert_eq!(a.first_difference(&b, |f| f != "smoke").as_deref(), Some("train"));
    assert_eq!(a.first_difference(&b, |f| !["smoke", "train"].contains(&f)).as_deref(), Some("aaa"));
    assert_eq!(a.first_difference(&a, |_| true), None);
    assert_eq!(ShortValue(Some("0123456789abcdef")).to_string(), "01234567…");
    assert_eq!(ShortValue(Some("f32")).to_string(), "f32");
    assert_eq!(ShortValue(None).to_string(), "(none)");
}
