//! Sweep config parsing and validation: every shipped config in `configs/` is valid; bad
//! configs give errors that name the file and the key path, with "did you mean".

use std::path::{Path, PathBuf};

use runner::{expand, load_sweep, parse_sweep, ModelSource, Registry, Shard};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

/// A small valid config; tests replace parts of it.
const BASE: &str = r#"
name = "t"
seeds = [0, 1]
metrics = ["tofu_forget_quality", "tofu_model_utility"]

[world]
kind = "facts"
forget = "forget10"

[[models]]
name = "tiny"
scratch = "tiny"

[methods.msa]
kind = "msa"
alpha = [1.0, 1.5, 2.0]
beta = [0.0, 1.0]
checkpoint = ["latest-clean", "distance:2"]

[methods.ga]
kind = "gradient_ascent"
lr = [1e-4, 1e-3]
epochs = 2
"#;

#[track_caller]
fn check_err(text: &str, expected_fragments: &[&str]) {
    let err = parse_sweep(text, Path::new("configs/bad.toml"), &Registry::DEFAULT)
        .expect_err("config should be rejected");
    let msg = format!("{err:#}");
    for frag in expected_fragments {
        assert!(msg.contains(frag), "error {msg:?} lacks {frag:?}");
    }
}

#[test]
fn every_shipped_config_parses_and_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir(configs_dir()).expect("configs/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let sweep = load_sweep(&path).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(!expand(&sweep).is_empty(), "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 1, "no configs found in {}", configs_dir().display());
}

#[test]
fn tiny_config_has_the_documented_contents() {
    let sweep = load_sweep(&configs_dir().join("tiny.toml")).unwrap();
    assert_eq!(sweep.name, "tiny");
    assert_eq!(sweep.world_kind, "facts");
    assert_eq!(sweep.models.len(), 1);
    assert_eq!(sweep.models[0].source, ModelSource::Scratch("tiny".into()));
    let kinds: Vec<&str> = sweep.methods.values().map(|m| m.kind.as_str()).collect();
    for k in runner::KNOWN_METHOD_KINDS {
        assert!(kinds.contains(k), "tiny.toml lacks method kind {k}");
    }
    for m in ["tofu_forget_quality", "tofu_model_utility", "tofu_truth_ratio_forget", "kl_to_oracle", "param_distance_to_oracle"] {
        assert!(sweep.metrics.iter().any(|x| x == m), "tiny.toml lacks metric {m}");
    }
    let msa = &sweep.methods["msa"];
    assert_eq!(msa.grid["alpha"].len(), 3);
    assert_eq!(msa.grid["beta"].len(), 2);
    assert_eq!(msa.grid["checkpoint"].len(), 2);
    // 1 model × 1 seed: final + retrain + msa 12 + task_negation and 5 more single-point methods.
    assert_eq!(expand(&sweep).len(), 2 + 12 + 1 + 5);
}

#[test]
fn base_config_expands_to_the_cross_product() {
    let sweep = parse_sweep(BASE, Path::new("t.toml"), &Registry::DEFAULT).unwrap();
    let cells = expand(&sweep);
    // per seed (2): final + retrain (2) + msa 3·2·2 (12) + ga 2 = 16 → 32 cells.
    assert_eq!(cells.len(), 32);
    assert_eq!(cells.iter().filter(|c| c.is_reference()).count(), 4);
    assert_eq!(cells.iter().filter(|c| c.method == "msa").count(), 24);
    // Order: references first, then methods by name ("ga" < "msa"), seeds innermost.
    let keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys[0], "final/seed=0/model=tiny");
    assert_eq!(keys[1], "final/seed=1/model=tiny");
    assert_eq!(keys[2], "retrain/seed=0/model=tiny");
    assert_eq!(keys[4], "ga/epochs=2,lr=0.0001/seed=0/model=tiny");
    assert_eq!(keys[8], "msa/alpha=1,beta=0,checkpoint=latest-clean/seed=0/model=tiny");
    assert_eq!(keys[10], "msa/alpha=1,beta=0,checkpoint=distance:2/seed=0/model=tiny");
    assert_eq!(keys[31], "msa/alpha=2,beta=1,checkpoint=distance:2/seed=1/model=tiny");
    // Ids are unique and the expansion is deterministic.
    let ids: std::collections::BTreeSet<&str> = cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), cells.len());
    assert_eq!(expand(&sweep), cells);
    // The ga cells carry the training override.
    let ga = cells.iter().find(|c| c.method == "ga").unwrap();
    let train = sweep.train.with_overrides(&ga.params).unwrap();
    assert_eq!((train.lr, train.epochs), (1e-4, 2));
}

#[test]
fn shards_partition_the_cells_exactly() {
    let sweep = parse_sweep(BASE, Path::new("t.toml"), &Registry::DEFAULT).unwrap();
    let cells = expand(&sweep);
    for n in [1, 2, 3, 5, 7, 32, 40] {
        let mut seen = vec![0usize; cells.len()];
        let mut sizes = Vec::new();
        for i in 0..n {
            let shard = Shard::new(i, n).unwrap();
            let part = shard.select(&cells);
            sizes.push(part.len());
            for c in part {
                let pos = cells.iter().position(|x| x.id == c.id).unwrap();
                seen[pos] += 1;
            }
        }
        assert!(seen.iter().all(|&k| k == 1), "N={n}: some cell not in exactly one shard: {seen:?}");
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(max - min <= 1, "N={n}: unbalanced shards {sizes:?}");
    }
    // The same shard selects the same cells every time.
    let s = Shard::new(1, 3).unwrap();
    let ids = |v: Vec<&runner::Cell>| v.into_iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    let again = expand(&sweep);
    assert_eq!(ids(s.select(&cells)), ids(s.select(&again)));
}

#[test]
fn unknown_top_level_key_is_named_with_a_suggestion() {
    check_err(&format!("sedes = [0]\n{BASE}"), &["configs/bad.toml", "sedes", "did you mean `seeds`?"]);
}

#[test]
fn unknown_model_key_is_named_with_its_path() {
    let text = BASE.replace("scratch = \"tiny\"", "scratch = \"tiny\"\nrevison = \"main\"");
    check_err(&text, &["configs/bad.toml", "models[0].revison", "did you mean `revision`?"]);
}

#[test]
fn unknown_train_key() {
    check_err(&format!("{BASE}\n[train]\nbatchsize = 4\n"), &["train.batchsize", "did you mean `batch_size`?"]);
}

#[test]
fn unknown_method_kind_suggests_and_lists() {
    let text = BASE.replace("kind = \"gradient_ascent\"", "kind = \"gradient_ascnet\"");
    check_err(
        &text,
        &["configs/bad.toml: methods.ga.kind", "did you mean `gradient_ascent`?", "msa, task_negation, gradient_ascent"],
    );
}

#[test]
fn unknown_hyperparameter_for_kind() {
    let text = BASE.replace("alpha = [1.0, 1.5, 2.0]", "alhpa = [1.0, 1.5, 2.0]");
    check_err(&text, &["methods.msa.alhpa", "did you mean `alpha`?"]);
}

#[test]
fn unknown_metric_suggests() {
    let text = BASE.replace("\"tofu_model_utility\"", "\"tofu_model_utilty\"");
    check_err(&text, &["configs/bad.toml: metrics[1]", "did you mean `tofu_model_utility`?", "truthfulqa_mc1"]);
}

#[test]
fn unknown_world_kind_suggests() {
    check_err(&BASE.replace("kind = \"facts\"", "kind = \"fact\""), &["world.kind", "did you mean `facts`?"]);
}

#[test]
fn empty_grid_names_file_and_key() {
    let text = BASE.replace("beta = [0.0, 1.0]", "beta = []");
    check_err(&text, &["configs/bad.toml: methods.msa.beta: empty grid"]);
}

#[test]
fn other_bad_values() {
    check_err(&BASE.replace("seeds = [0, 1]", "seeds = []"), &["seeds", "no seeds"]);
    check_err(&BASE.replace("seeds = [0, 1]", "seeds = [0, 0]"), &["seeds[1]", "duplicate seed 0"]);
    check_err(&BASE.replace("beta = [0.0, 1.0]", "beta = [1, 1.0]"), &["methods.msa.beta[1]", "duplicate grid value 1"]);
    check_err(&BASE.replace("beta = [0.0, 1.0]", "beta = [[0.0], [1.0]]"), &["methods.msa.beta[0]", "nested arrays"]);
    check_err(&BASE.replace("lr = [1e-4, 1e-3]", "lr = [1e-4, -1.0]"), &["methods.ga.lr[1]", "> 0"]);
    check_err(&BASE.replace("epochs = 2", "epochs = \"two\""), &["methods.ga.epochs", "expected an integer"]);
    check_err(&BASE.replace("scratch = \"tiny\"", "scratch = \"tiny\"\nhub = \"x/y\""), &["models[0]", "exactly one of"]);
    check_err(&BASE.replace("[methods.ga]", "[methods.final]"), &["methods.final", "reserved"]);
    check_err(&format!("{BASE}\n[train]\nlr = -1.0\n"), &["train: lr", "> 0"]);
    check_err(&format!("{BASE}\n[train]\nlr = \"fast\"\n"), &["configs/bad.toml", "lr"]);
    check_err("this is = not toml", &["configs/bad.toml", "invalid TOML"]);
}

#[test]
fn registry_can_be_replaced() {
    let registry = Registry { metrics: &["tofu_forget_quality", "tofu_model_utility", "my_metric"], ..Registry::DEFAULT };
    let text = BASE.replace("\"tofu_model_utility\"]", "\"tofu_model_utility\", \"my_metric\"]");
    assert!(parse_sweep(&text, Path::new("t.toml"), &registry).is_ok());
    assert!(parse_sweep(&text, Path::new("t.toml"), &Registry::DEFAULT).is_err());
}

#[test]
fn toxicity_classifier_is_resolved_against_the_config_folder() {
    let parse = |line: &str| {
        let text = format!("{line}\n{BASE}");
        parse_sweep(&text, Path::new("configs/t.toml"), &Registry::DEFAULT).unwrap().toxicity_classifier
    };
    assert_eq!(parse(""), None);
    assert_eq!(parse("toxicity_classifier = \"models/toxigen_roberta\""), Some(PathBuf::from("configs/models/toxigen_roberta")));
    assert_eq!(parse("toxicity_classifier = \"/abs/clf\""), Some(PathBuf::from("/abs/clf")));
    check_err(&format!("toxicity_clasifier = \"x\"\n{BASE}"), &["toxicity_clasifier", "did you mean `toxicity_classifier`?"]);
}
