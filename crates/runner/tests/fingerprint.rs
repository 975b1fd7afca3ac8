//! Results know what made them (issue 22): a result written under one config is `done` only
//! while the config gives the same fingerprint; a change to the world, the training config, the
//! metric list or the model's content makes it `stale`, and `--dry-run` names the first field
//! that differs. Model sources that cannot exist are one error before any work. Hand-written
//! results and `--dry-run` only: nothing here builds a world or trains a model.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runner::exec::{validate_models, validate_worlds, ExecOptions};
use runner::{
    expand, parse_sweep, resolved_config, CellResult, CellStatus, Provenance, Registry, ResultStore, Sweep,
    SweepFingerprints, Timings, SCHEMA_VERSION,
};

/// A small sweep; `{out}` is the results folder.
const BASE: &str = r#"
name = "fp"
output_dir = "{out}"
seeds = [0]
metrics = ["tofu_forget_quality", "tofu_model_utility"]

[world]
kind = "facts"
n_entities = 100

[train]
lr = 1e-3

[[models]]
name = "tiny"
scratch = "tiny"

[methods.msa]
kind = "msa"
alpha = [1.0, 2.0]
"#;

fn data_dir() -> PathBuf {
    PathBuf::from("/nonexistent/unlearn-data")
}

fn opts() -> ExecOptions {
    ExecOptions { dry_run: true, data_dir: Some(data_dir()), ..Default::default() }
}

fn sweep(text: &str, out: &Path) -> Sweep {
    let text = text.replace("{out}", &out.display().to_string());
    parse_sweep(&text, Path::new("configs/fp.toml"), &Registry::DEFAULT).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Writes an `ok` result for every cell of `sweep`, with the fingerprint it has now (`None`:
/// as files written before fingerprints were).
fn write_results(sweep: &Sweep, with_fingerprint: bool) -> usize {
    let worlds = validate_worlds(sweep, &opts(), &data_dir()).unwrap();
    let fps = SweepFingerprints::new(sweep, false, &worlds).unwrap();
    let store = ResultStore::for_sweep(sweep);
    let cells = expand(sweep);
    for cell in &cells {
        store
            .write(&CellResult {
                schema_version: SCHEMA_VERSION,
                sweep: sweep.name.clone(),
                cell: cell.clone(),
                status: CellStatus::Ok,
                error_chain: vec![],
                metrics: BTreeMap::new(),
                resolved_config: resolved_config(sweep, cell).unwrap(),
                fingerprint: with_fingerprint.then(|| fps.of(cell).unwrap()),
                provenance: Provenance { crate_version: "0.0.0".into(), git_commit: None, external: None, cpu: None },
                timings: Timings::default(),
                loss_curves: BTreeMap::new(),
            })
            .unwrap();
    }
    cells.len()
}

/// The `--dry-run` log of `sweep`.
fn dry_run(sweep: &Sweep) -> String {
    let log = RefCell::new(String::new());
    runner::exec::run(sweep, &opts(), None, &|m| log.borrow_mut().push_str(&format!("{m}\n")))
        .unwrap_or_else(|e| panic!("{e:#}"));
    log.into_inner()
}

/// The listing's lines that start with `state`.
fn lines<'a>(listing: &'a str, state: &str) -> Vec<&'a str> {
    listing.lines().filter(|l| l.starts_with(&format!("{state} "))).collect()
}

#[test]
fn an_unchanged_config_finds_every_cell_done() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sweep(BASE, tmp.path());
    let n = write_results(&s, true);
    assert_eq!(n, 4); // final, retrain, msa α=1, msa α=2
    let listing = dry_run(&s);
    assert_eq!(lines(&listing, "done").len(), n, "{listing}");
    assert!(listing.contains(&format!("{n} cells: {n} done, 0 stale, 0 failed, 0 pending")), "{listing}");
    // the same config read again (a new process) gives the same fingerprints
    assert_eq!(dry_run(&sweep(BASE, tmp.path())), listing);
}

#[test]
fn a_changed_world_makes_every_cell_stale_and_names_world() {
    let tmp = tempfile::tempdir().unwrap();
    let n = write_results(&sweep(BASE, tmp.path()), true);
    let changed = sweep(&BASE.replace("n_entities = 100", "n_entities = 120"), tmp.path());
    let listing = dry_run(&changed);
    let stale = lines(&listing, "stale");
    assert_eq!(stale.len(), n, "{listing}");
    for l in stale {
        assert!(l.contains("(world: ") && l.contains("n_entities: 100 → 120"), "{l}");
    }
    assert!(listing.contains(&format!("{n} cells: 0 done, {n} stale, 0 failed, 0 pending")), "{listing}");
}

#[test]
fn a_changed_training_config_makes_the_method_cells_stale_and_names_train() {
    let tmp = tempfile::tempdir().unwrap();
    write_results(&sweep(BASE, tmp.path()), true);
    let changed = sweep(&BASE.replace("lr = 1e-3", "lr = 5e-4"), tmp.path());
    let listing = dry_run(&changed);
    let stale = lines(&listing, "stale");
    assert_eq!(stale.len(), 2, "the two msa cells: {listing}");
    for l in &stale {
        assert!(l.contains("msa__") && l.contains("(train: ") && l.contains("lr: 0.001 → 0.0005"), "{l}");
    }
    // the reference rows (θ_D and the oracle) train nothing: still done
    let done = lines(&listing, "done");
    assert_eq!(done.len(), 2, "{listing}");
    assert!(done.iter().all(|l| l.contains("final__") || l.contains("retrain__")), "{listing}");
    assert!(listing.contains("4 cells: 2 done, 2 stale, 0 failed, 0 pending"), "{listing}");
}

#[test]
fn a_changed_metric_list_makes_every_cell_stale_and_names_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let n = write_results(&sweep(BASE, tmp.path()), true);
    let changed =
        sweep(&BASE.replace("\"tofu_model_utility\"]", "\"tofu_model_utility\", \"kl_to_oracle\"]"), tmp.path());
    let listing = dry_run(&changed);
    let stale = lines(&listing, "stale");
    assert_eq!(stale.len(), n, "{listing}");
    assert!(stale.iter().all(|l| l.contains("(metrics: ") && l.contains("kl_to_oracle")), "{listing}");
}

#[test]
fn smoke_results_are_stale_for_a_real_run() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sweep(BASE, tmp.path());
    let mut smoke = opts();
    smoke.smoke = true;
    let worlds = validate_worlds(&s, &smoke, &data_dir()).unwrap();
    let fps = SweepFingerprints::new(&s, true, &worlds).unwrap();
    let real = SweepFingerprints::new(&s, false, &validate_worlds(&s, &opts(), &data_dir()).unwrap()).unwrap();
    let cell = &expand(&s)[0];
    let change = runner::fingerprint::change_from(&real.of(cell).unwrap(), Some(&fps.of(cell).unwrap())).unwrap();
    assert_eq!(change.to_string(), "smoke: true → false");
}

#[test]
fn an_old_result_without_a_fingerprint_is_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let s = sweep(BASE, tmp.path());
    let n = write_results(&s, false);
    let listing = dry_run(&s);
    let stale = lines(&listing, "stale");
    assert_eq!(stale.len(), n, "{listing}");
    assert!(stale.iter().all(|l| l.contains("(fingerprint: none")), "{listing}");
    // and a rerun overwrites them with one: the stored file says what made it
    write_results(&s, true);
    assert_eq!(lines(&dry_run(&s), "done").len(), n);
    let r = ResultStore::for_sweep(&s).load(&expand(&s)[0].id).unwrap().unwrap();
    let fp = r.fingerprint.expect("a fingerprint");
    for field in runner::fingerprint::FIELDS {
        assert!(fp.fields.contains_key(*field), "{field}");
    }
    assert_eq!(fp.fields["smoke"], "false");
    assert_eq!(fp.fields["dtype"], "f32");
    assert_eq!(fp.fields["train"], "none", "a reference cell trains nothing");
}

#[test]
fn result_files_of_no_cell_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    write_results(&sweep(&BASE.replace("alpha = [1.0, 2.0]", "alpha = [1.0, 2.0, 3.0]"), tmp.path()), true);
    let listing = dry_run(&sweep(BASE, tmp.path()));
    assert!(
        listing.contains("1 result file(s) in") && listing.contains("belong to no cell of this config"),
        "{listing}"
    );
}

/// A tiny Hugging Face folder: a valid config.json and a safetensors file of `weights` (f32).
fn model_folder(dir: &Path, weights: &[f32]) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = lm::LmConfig::small(lm::Arch::Llama, 64, 8, 16, 1, 2, 2, 32);
    std::fs::write(dir.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let header =
        format!(r#"{{"w":{{"dtype":"F32","shape":[{}],"data_offsets":[0,{}]}}}}"#, weights.len(), 4 * weights.len());
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(weights.iter().flat_map(|w| w.to_le_bytes()));
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
}

#[test]
fn a_model_folder_whose_weights_change_makes_its_cells_stale_and_names_model() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("my-llama");
    model_folder(&model, &[1.0, 2.0, 3.0]);
    let text = BASE.replace("scratch = \"tiny\"", &format!("path = \"{}\"", model.display()));
    let s = sweep(&text, tmp.path());
    validate_models(&s, &opts()).unwrap();
    let n = write_results(&s, true);
    assert_eq!(lines(&dry_run(&s), "done").len(), n);
    model_folder(&model, &[1.0, 2.0, 4.0]); // same header, other weights
    let listing = dry_run(&s);
    let stale = lines(&listing, "stale");
    assert_eq!(stale.len(), n, "{listing}");
    assert!(stale.iter().all(|l| l.contains("(model: ")), "{listing}");
}

#[test]
fn model_sources_that_cannot_run_are_one_error_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let check = |text: &str, fragments: &[&str]| {
        let s = sweep(text, tmp.path());
        let msg = format!("{:#}", validate_models(&s, &opts()).expect_err("should be rejected"));
        for f in fragments {
            assert!(msg.contains(f), "error {msg:?} lacks {f:?}");
        }
        // the dry run stops with the same message, before listing anything
        let log = RefCell::new(String::new());
        let err = runner::exec::run(&s, &opts(), None, &|m| log.borrow_mut().push_str(m)).unwrap_err();
        assert_eq!(format!("{err:#}"), msg);
        assert!(!log.borrow().contains(" cells: "), "{}", log.borrow());
    };
    let missing = tmp.path().join("no-such-model");
    check(
        &BASE.replace("scratch = \"tiny\"", &format!("path = \"{}\"", missing.display())),
        &["configs/fp.toml", "models[0].path", "model `tiny`", "no-such-model", "does not exist"],
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    check(
        &BASE.replace("scratch = \"tiny\"", &format!("path = \"{}\"", empty.display())),
        &["models[0].path", "is not a Hugging Face checkpoint folder"],
    );
    let bad_config = tmp.path().join("bad-config");
    model_folder(&bad_config, &[1.0]);
    std::fs::write(bad_config.join("config.json"), "{\"architectures\": []}").unwrap();
    check(
        &BASE.replace("scratch = \"tiny\"", &format!("path = \"{}\"", bad_config.display())),
        &["models[0].path", "config.json"],
    );
    check(&BASE.replace("scratch = \"tiny\"", "scratch = \"tinyy\""), &["models[0].scratch", "model `tiny`", "tinyy"]);
    check(
        &BASE.replace("scratch = \"tiny\"", "hub = \"meta-llama/../x\""),
        &["models[0].hub", "is not of the form `org/name`"],
    );
    check(&BASE.replace("scratch = \"tiny\"", "hub = \"a/b/c\""), &["models[0].hub", "org/name"]);
    check(&BASE.replace("scratch = \"tiny\"", "hub = \"org/llama\"\nrevision = \"../main\""), &["models[0].revision"]);
    // a well-formed hub id is not looked up (no cache, no network) before the run
    validate_models(&sweep(&BASE.replace("scratch = \"tiny\"", "hub = \"org/llama\""), tmp.path()), &opts()).unwrap();
    // with --smoke a real model is replaced by a stand-in: its folder need not exist, its family must be known
    let mut smoke = opts();
    smoke.smoke = true;
    let s = sweep(&BASE.replace("scratch = \"tiny\"", &format!("path = \"{}\"", missing.display())), tmp.path());
    let msg = format!("{:#}", validate_models(&s, &smoke).unwrap_err());
    assert!(msg.contains("models[0].path") && msg.contains("architecture family"), "{msg}");
    let s = sweep(&BASE.replace("scratch = \"tiny\"", "path = \"/nowhere/llama-7b\""), tmp.path());
    validate_models(&s, &smoke).unwrap();
}
