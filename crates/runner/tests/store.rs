//! The result store: atomic writes, resume after a kill (a half-written temporary file is
//! never taken for a result), `--force`, failures with their error chain, the dry-run listing.
//! (Stale results, made under another fingerprint, are tested in `fingerprint.rs`.)

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use runner::{
    expand, format_dry_run, parse_sweep, resolved_config, CellCheck, CellResult, CellState, CellStatus, Direction,
    Fingerprint, MetricRecord, Provenance, Registry, ResultStore, Timings, SCHEMA_VERSION,
};

const CONFIG: &str = r#"
name = "store-test"
seeds = [0, 1]
metrics = ["tofu_forget_quality"]
[world]
kind = "facts"
[[models]]
name = "tiny"
scratch = "tiny"
[methods.msa]
kind = "msa"
alpha = [1.0, 2.0]
"#;

/// The same fingerprint for every cell: these tests are about the store, not about staleness.
fn fingerprint() -> Fingerprint {
    Fingerprint::new(BTreeMap::from([("world".to_owned(), "0123456789abcdef".to_owned())]))
}

fn check(store: &ResultStore, sweep: &runner::Sweep, cell: &runner::Cell) -> CellCheck {
    store.check(cell, &fingerprint(), &resolved_config(sweep, cell).unwrap()).unwrap()
}

fn ok_result(sweep: &runner::Sweep, cell: &runner::Cell, value: f64) -> CellResult {
    CellResult {
        schema_version: SCHEMA_VERSION,
        sweep: sweep.name.clone(),
        cell: cell.clone(),
        status: CellStatus::Ok,
        error_chain: vec![],
        metrics: BTreeMap::from([(
            "forget_quality".to_owned(),
            MetricRecord {
                direction: Direction::HigherIsBetter,
                value,
                per_example: vec![value, f64::NAN, 0.25],
                example_ids: vec!["a".into(), "b".into(), "c".into()],
                version: Some("1".into()),
                skipped: None,
                target: Some(evals::registry::Target::HigherIsBetter),
                scale: None,
            },
        )]),
        resolved_config: resolved_config(sweep, cell).unwrap(),
        fingerprint: Some(fingerprint()),
        provenance: Provenance { crate_version: "0.0.0".into(), git_commit: None, external: None, cpu: None },
        timings: Timings { started_unix: 1.0, finished_unix: 3.5, stages: BTreeMap::from([("eval".into(), 2.5)]) },
        loss_curves: BTreeMap::from([("unlearn".to_owned(), vec![(0, 2.0), (10, 1.5), (20, f64::NAN)])]),
    }
}

#[test]
fn write_and_resume_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = parse_sweep(CONFIG, Path::new("store-test.toml"), &Registry::DEFAULT).unwrap();
    let cells = expand(&sweep);
    assert_eq!(cells.len(), 6); // final, retrain (first seed only), (msa α=1, msa α=2) × 2 seeds
    let store = ResultStore::new(tmp.path(), &sweep.name);
    assert!(store.load_all().unwrap().is_empty(), "a missing folder is an empty store");

    // "Run" the first three cells; the fourth is killed mid-write: only its temporary file exists.
    for (i, cell) in cells[..3].iter().enumerate() {
        let path = store.write(&ok_result(&sweep, cell, i as f64 / 10.0)).unwrap();
        assert_eq!(path, tmp.path().join("store-test/cells").join(format!("{}.json", cell.id)));
    }
    let killed = store.cells_dir().join(format!(".{}.json.tmp.999.0", cells[3].id));
    std::fs::write(&killed, b"{\"schema_version\": 1, \"sweep\": \"store-te").unwrap();

    // A fresh store object (a new process) sees exactly the finished cells.
    let reopened = ResultStore::new(tmp.path(), "store-test");
    let loaded = reopened.load_all().unwrap();
    let mut loaded_ids: Vec<&str> = loaded.iter().map(|r| r.cell.id.as_str()).collect();
    let mut expected: Vec<&str> = cells[..3].iter().map(|c| c.id.as_str()).collect();
    loaded_ids.sort();
    expected.sort();
    assert_eq!(loaded_ids, expected);
    let states: Vec<CellState> = cells.iter().map(|c| check(&reopened, &sweep, c).state).collect();
    assert_eq!(&states[..3], &[CellState::Done; 3]);
    assert!(states[3..].iter().all(|&s| s == CellState::Pending));
    let to_run: Vec<&str> =
        cells.iter().filter(|c| check(&reopened, &sweep, c).needs_run(false)).map(|c| c.id.as_str()).collect();
    assert_eq!(to_run, cells[3..].iter().map(|c| c.id.as_str()).collect::<Vec<_>>());
    assert_eq!(cells.iter().filter(|c| check(&reopened, &sweep, c).needs_run(true)).count(), 6, "--force redoes all");

    // The stale temporary file is found and can be cleaned up.
    assert_eq!(reopened.stale_temp_files().unwrap(), vec![killed.clone()]);
    assert_eq!(reopened.remove_stale_temp_files().unwrap(), 1);
    assert!(!killed.exists());

    // Round trip, NaN included (written as null).
    let back = reopened.load(&cells[1].id).unwrap().unwrap();
    let want = ok_result(&sweep, &cells[1], 0.1);
    assert_eq!(back.cell, want.cell);
    assert_eq!(back.metrics["forget_quality"].value, 0.1);
    let pe = &back.metrics["forget_quality"].per_example;
    assert_eq!((pe[0], pe[2]), (0.1, 0.25));
    assert!(pe[1].is_nan());
    assert!(back.loss_curves["unlearn"][2].1.is_nan());
    assert_eq!(back.loss_curves["unlearn"][1], (10, 1.5));
    assert_eq!(back.resolved_config["method"]["kind"], "reference");
    assert_eq!(back.resolved_config["world"]["kind"], "facts");
    let text = std::fs::read_to_string(reopened.cell_path(&cells[1].id)).unwrap();
    assert!(text.contains("\"higher_is_better\""), "{text}");
    assert!(text.contains("null"), "NaN is stored as null");

    // Rewriting a cell replaces it and leaves no temporary file.
    reopened.write(&ok_result(&sweep, &cells[1], 0.9)).unwrap();
    assert_eq!(reopened.load(&cells[1].id).unwrap().unwrap().metrics["forget_quality"].value, 0.9);
    assert!(reopened.stale_temp_files().unwrap().is_empty());
    assert_eq!(reopened.load_all().unwrap().len(), 3);
}

#[test]
fn a_failed_cell_is_recorded_with_its_chain_and_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = parse_sweep(CONFIG, Path::new("store-test.toml"), &Registry::DEFAULT).unwrap();
    let cells = expand(&sweep);
    let store = ResultStore::new(tmp.path(), &sweep.name);
    let err = Err::<(), _>(anyhow::anyhow!("loss is NaN at step 12")).context("unlearning with msa").unwrap_err();
    let cell = &cells[5];
    store
        .record_failure(
            cell,
            &err,
            resolved_config(&sweep, cell).unwrap(),
            fingerprint(),
            runner::store::detect_provenance("0.0.0", tmp.path()),
            Timings::default(),
        )
        .unwrap();
    let r = store.load(&cell.id).unwrap().unwrap();
    assert_eq!(r.status, CellStatus::Failed);
    assert_eq!(r.error_chain, ["unlearning with msa", "loss is NaN at step 12"]);
    assert_eq!(r.sweep, "store-test");
    assert_eq!(r.provenance.git_commit, None, "a temp dir is no git work tree");
    assert_eq!(r.fingerprint, Some(fingerprint()), "a failure records what it was run under");
    assert_eq!(check(&store, &sweep, cell).state, CellState::Failed);
    assert!(check(&store, &sweep, cell).needs_run(false), "failed cells are retried");

    store.write(&ok_result(&sweep, &cells[0], 0.5)).unwrap();
    let states: Vec<(&runner::Cell, CellCheck)> = cells.iter().map(|c| (c, check(&store, &sweep, c))).collect();
    let listing = format_dry_run(&states);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0], format!("done    {}", cells[0].id));
    assert_eq!(lines[1], format!("pending {}", cells[1].id));
    assert_eq!(lines[5], format!("failed  {}", cells[5].id));
    assert_eq!(lines[6], "6 cells: 1 done, 0 stale, 1 failed, 4 pending");
}

#[test]
fn a_corrupt_result_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ResultStore::new(tmp.path(), "s");
    std::fs::create_dir_all(store.cells_dir()).unwrap();
    std::fs::write(store.cells_dir().join("x.json"), "{ not json").unwrap();
    let msg = format!("{:#}", store.load_all().unwrap_err());
    assert!(msg.contains("x.json") && msg.contains("not a cell result"), "{msg}");
}

#[test]
fn write_atomic_creates_folders_and_replaces() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("a/b/c.txt");
    runner::write_atomic(&path, b"one").context("first write").unwrap();
    runner::write_atomic(&path, b"two").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
    let names: Vec<_> = std::fs::read_dir(tmp.path().join("a/b")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["c.txt"]);
}

/// A cell's provenance names the CPU (results are bit-reproducible on the same CPU only).
#[test]
fn provenance_names_the_cpu() {
    let p = runner::store::detect_provenance("0.0.0", Path::new("."));
    let cpu = p.cpu.expect("detect fills in the CPU");
    assert_eq!(cpu, runner::store::cpu_description());
    assert!(cpu.contains(std::env::consts::ARCH), "{cpu}");
    if cfg!(target_os = "linux") {
        assert!(cpu.contains("L1d ") || !Path::new("/sys/devices/system/cpu/cpu0/cache").exists(), "{cpu}");
    }
    // read back from a result written without it (older results): none
    let old: runner::store::Provenance =
        serde_json::from_str(r#"{"crate_version": "0.0.0", "git_commit": null}"#).unwrap();
    assert_eq!(old.cpu, None);
}
