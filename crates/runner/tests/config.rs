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
    let err =
        parse_sweep(text, Path::new("configs/bad.toml"), &Registry::DEFAULT).expect_err("config should be rejected");
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
            // and every method builds at every grid point, as its cells will
            runner::exec::validate_methods(&sweep).unwrap_or_else(|e| panic!("{e:#}"));
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
    for m in [
        "tofu_forget_quality",
        "tofu_model_utility",
        "tofu_truth_ratio_forget",
        "kl_to_oracle",
        "param_distance_to_oracle",
    ] {
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
    // final + retrain once (2), then per seed (2): msa 3·2·2 (12) + ga 2 = 14 → 30 cells.
    assert_eq!(cells.len(), 30);
    assert_eq!(cells.iter().filter(|c| c.is_reference()).count(), 2);
    assert_eq!(cells.iter().filter(|c| c.method == "msa").count(), 24);
    // Order: references first, then methods by name ("ga" < "msa"), seeds innermost.
    let keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys[0], "final/world=0/seed=0/model=tiny");
    assert_eq!(keys[1], "retrain/world=0/seed=0/model=tiny");
    assert_eq!(keys[2], "ga/epochs=2,lr=0.0001/world=0/seed=0/model=tiny");
    assert_eq!(keys[6], "msa/alpha=1,beta=0,checkpoint=latest-clean/world=0/seed=0/model=tiny");
    assert_eq!(keys[8], "msa/alpha=1,beta=0,checkpoint=distance:2/world=0/seed=0/model=tiny");
    assert_eq!(keys[29], "msa/alpha=2,beta=1,checkpoint=distance:2/world=0/seed=1/model=tiny");
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
        &[
            "configs/bad.toml: methods.ga.kind",
            "did you mean `gradient_ascent`?",
            "msa, task_negation, gradient_ascent",
        ],
    );
    // a missing kind lists every kind, `external` included
    let text = BASE.replace("kind = \"gradient_ascent\"\n", "");
    check_err(&text, &["methods.ga.kind", "missing; known kinds: msa, task_negation", "rmu, external"]);
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
    check_err(
        &BASE.replace("beta = [0.0, 1.0]", "beta = [1, 1.0]"),
        &["methods.msa.beta[1]", "duplicate grid value 1"],
    );
    check_err(&BASE.replace("beta = [0.0, 1.0]", "beta = [[0.0], [1.0]]"), &["methods.msa.beta[0]", "nested arrays"]);
    check_err(&BASE.replace("lr = [1e-4, 1e-3]", "lr = [1e-4, -1.0]"), &["methods.ga.lr[1]", "> 0"]);
    check_err(&BASE.replace("epochs = 2", "epochs = \"two\""), &["methods.ga.epochs", "expected an integer"]);
    check_err(
        &BASE.replace("scratch = \"tiny\"", "scratch = \"tiny\"\nhub = \"x/y\""),
        &["models[0]", "exactly one of"],
    );
    check_err(&BASE.replace("[methods.ga]", "[methods.final]"), &["methods.final", "reserved"]);
    check_err(&format!("{BASE}\n[train]\nlr = -1.0\n"), &["train: lr", "> 0"]);
    check_err(&format!("{BASE}\n[train]\nlr = \"fast\"\n"), &["configs/bad.toml", "lr"]);
    check_err("this is = not toml", &["configs/bad.toml", "invalid TOML"]);
}

#[test]
fn registry_can_be_replaced() {
    let registry =
        Registry { metrics: &["tofu_forget_quality", "tofu_model_utility", "my_metric"], ..Registry::DEFAULT };
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
    assert_eq!(
        parse("toxicity_classifier = \"models/toxigen_roberta\""),
        Some(PathBuf::from("configs/models/toxigen_roberta"))
    );
    assert_eq!(parse("toxicity_classifier = \"/abs/clf\""), Some(PathBuf::from("/abs/clf")));
    check_err(
        &format!("toxicity_clasifier = \"x\"\n{BASE}"),
        &["toxicity_clasifier", "did you mean `toxicity_classifier`?"],
    );
}

#[test]
fn world_seeds_cross_every_cell_and_the_noise_floor_adds_a_reference_row() {
    let text = BASE.replace("kind = \"facts\"\n", "kind = \"facts\"\nseeds = [3, 1, 2]\nnoise_floor = true\n");
    let sweep = parse_sweep(&text, Path::new("t.toml"), &Registry::DEFAULT).unwrap();
    assert_eq!(sweep.world_seeds, vec![3, 1, 2]);
    assert!(sweep.noise_floor && sweep.quality_gate);
    let cells = expand(&sweep);
    // per world seed (3): final + retrain + retrain_alt once (the references do not depend on the
    // method seed), then per method seed (2): msa 12 + ga 2
    assert_eq!(cells.len(), 3 * (3 + 2 * (12 + 2)));
    let keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys[0], "final/world=3/seed=0/model=tiny");
    assert_eq!(keys[2], "retrain_alt/world=3/seed=0/model=tiny");
    assert_eq!(keys[31], "final/world=1/seed=0/model=tiny");
    for w in [3, 1, 2] {
        assert_eq!(cells.iter().filter(|c| c.world_seed == w).count(), 31);
        assert_eq!(cells.iter().filter(|c| c.world_seed == w && c.method == "retrain_alt").count(), 1);
    }
    let ids: std::collections::BTreeSet<&str> = cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), cells.len());
    // without noise_floor: no retrain_alt row
    let plain = parse_sweep(BASE, Path::new("t.toml"), &Registry::DEFAULT).unwrap();
    assert!(!plain.noise_floor);
    assert!(expand(&plain).iter().all(|c| c.method != "retrain_alt" && c.world_seed == 0));
}

#[test]
fn bad_world_seed_lists_name_the_field() {
    let with = |line: &str| BASE.replace("kind = \"facts\"\n", &format!("kind = \"facts\"\n{line}\n"));
    check_err(&with("seeds = []"), &["configs/bad.toml", "world.seeds = []"]);
    check_err(&with("seeds = [0, 1, 0]"), &["world.seeds[2] = 0 is a duplicate"]);
    check_err(&with("seed = 4\nseeds = [1, 2]"), &["world.seed = 4 and world.seeds are exclusive"]);
    check_err(&with("sedes = [1]"), &["configs/bad.toml", "world", "sedes"]);
    check_err(&with("quality_gate = \"no\""), &["world", "quality_gate"]);
}

/// `validate_worlds` runs before any work (and with `--dry-run`): bad world fields and
/// checkpoint selectors the world cannot satisfy are one clear error naming the field.
#[test]
fn worlds_and_checkpoint_selectors_are_checked_before_any_work() {
    use runner::exec::{validate_worlds, ExecOptions};
    let opts = ExecOptions::default();
    let data = Path::new("/nonexistent/unlearn-data");
    let check = |text: &str, fragments: &[&str]| {
        let sweep = parse_sweep(text, Path::new("configs/bad.toml"), &Registry::DEFAULT).unwrap();
        let msg = format!("{:#}", validate_worlds(&sweep, &opts, data).expect_err("should be rejected"));
        for f in fragments {
            assert!(msg.contains(f), "error {msg:?} lacks {f:?}");
        }
    };
    let world = |extra: &str| BASE.replace("forget = \"forget10\"\n", &format!("forget = \"forget10\"\n{extra}\n"));
    // the base config (8 checkpoints, window from checkpoint 4 by default) is fine
    let ok = parse_sweep(&world("checkpoints = 8"), Path::new("t.toml"), &Registry::DEFAULT).unwrap();
    validate_worlds(&ok, &opts, data).unwrap();
    check(&world("attributes = 50"), &["configs/bad.toml", "world.attributes must be in 2..=10, got 50"]);
    check(&world("n_entities = 0"), &["world.n_entities must be at least 1"]);
    check(&world("steps = 0"), &["world.steps must be at least 1"]);
    check(&world("exposure = { start_checkpoint = 9 }"), &["world.exposure.start_checkpoint = 9 is outside the run"]);
    let far = world("").replace("\"distance:2\"", "\"distance:99\"");
    check(&far, &["methods.msa.checkpoint", "distance:99", "clean checkpoints 0..=4", "distance:0..=4"]);
    check(
        &world("exposure = { start_step = 0 }"),
        &["methods.msa.checkpoint", "\"latest-clean\" is the initialisation", "start the window later"],
    );
    let step = world("").replace("\"distance:2\"", "\"step:7\"");
    check(&step, &["methods.msa.checkpoint", "no checkpoint at step 7"]);
    let unclean = world("").replace("\"distance:2\"", "\"step:750\"");
    check(&unclean, &["step:750", "has seen forget documents", "allow_unclean"]);
    // an ensemble's entries are checked as a checkpoint is (each grid point, as MSA parses it)
    let ensemble = world("").replace(
        "checkpoint = [\"latest-clean\", \"distance:2\"]",
        "ensemble = [\"distance:0 + distance:1\", \"distance:0 + distance:9\"]",
    );
    check(&ensemble, &["methods.msa.ensemble", "distance:9", "clean checkpoints 0..=4"]);
    // every world seed is resolved
    let bad_seed = parse_sweep(
        &world("seeds = [0, 1]\nforget = \"0%\"").replace("forget = \"forget10\"\n", ""),
        Path::new("configs/bad.toml"),
        &Registry::DEFAULT,
    )
    .unwrap();
    let msg = format!("{:#}", validate_worlds(&bad_seed, &opts, data).unwrap_err());
    assert!(msg.contains("world.forget") && msg.contains("empty"), "{msg}");
}

/// What configs/tiny.toml says about its checkpoints is what MSA picks: "latest-clean" =
/// "distance:0" is checkpoint 4 and "distance:2" is checkpoint 2 (issue 13; the selector once
/// counted the latest clean checkpoint as distance 1 and took checkpoint 3).
#[test]
fn tiny_config_checkpoint_distances_mean_what_its_comments_say() {
    let sweep = load_sweep(&configs_dir().join("tiny.toml")).unwrap();
    let text = std::fs::read_to_string(configs_dir().join("tiny.toml")).unwrap();
    assert!(text.contains("\"distance:2\" is checkpoint 2"), "the comment this test pins has changed");
    let world = testbed::WorldConfig::from_sweep_toml(&text).unwrap().resolve(Path::new("/nonexistent")).unwrap();
    let infos: Vec<unlearn::CheckpointInfo> = world
        .checkpoint_steps
        .iter()
        .map(|&step| unlearn::CheckpointInfo {
            step,
            path: PathBuf::from(format!("/c/{step}")),
            clean: step <= world.window_start,
        })
        .collect();
    let pick = |s: &str| msa::select_base(&msa::BasePoint::parse(s).unwrap(), &infos).unwrap().ledger.unwrap().step;
    let steps = &world.checkpoint_steps;
    assert_eq!(world.last_clean_checkpoint(), 4);
    assert_eq!(pick("latest-clean"), steps[4]);
    assert_eq!(pick("distance:0"), steps[4]);
    assert_eq!(pick("distance:2"), steps[2]);
    assert_eq!(pick("distance:4"), steps[0]);
    assert!(sweep.methods["msa"]
        .grid
        .get("checkpoint")
        .is_some_and(|v| v.iter().any(|c| c.as_str() == Some("distance:2"))));
}

#[test]
fn attacks_table_is_checked() {
    let s = parse_sweep(
        &format!("{BASE}\n[attacks]\nquantize = [\"int8\", \"int4:g64\"]\n"),
        Path::new("configs/a.toml"),
        &Registry::DEFAULT,
    )
    .unwrap();
    assert_eq!(s.attacks.names(), vec!["quantize:int8", "quantize:int4:g64"]);
    assert!(!s.attacks.quantize_lm_head);
    assert!(parse_sweep(BASE, Path::new("configs/a.toml"), &Registry::DEFAULT).unwrap().attacks.is_empty());
    check_err(
        &format!("{BASE}\n[attacks]\nquantize = [\"int3\"]\n"),
        &["configs/bad.toml: attacks.quantize[0]", "int3"],
    );
    check_err(
        &format!("{BASE}\n[attacks]\nquantize = [\"int8\", \"int8\"]\n"),
        &["attacks.quantize[1]", "listed twice"],
    );
    check_err(&format!("{BASE}\n[attacks]\nrelearn = 1\n"), &["relearn"]);
}

/// `[train] lora` (issue 16): parsed into the train config (and so into every method's
/// trainer), absent from the serialised config when unset (fingerprints unchanged), and bad
/// tables named by their key.
#[test]
fn train_lora_is_parsed_and_bad_tables_are_named() {
    let with = |lora: &str| format!("{BASE}\n[train]\n{lora}\n");
    let s = parse_sweep(
        &with("lora = { rank = 8, alpha = 16, targets = [\"q_proj\", \"v_proj\"] }"),
        Path::new("t.toml"),
        &Registry::DEFAULT,
    )
    .unwrap();
    let l = s.train.lora.as_ref().unwrap();
    assert_eq!((l.rank, l.alpha, l.targets.clone()), (8, 16.0, vec!["q_proj".to_string(), "v_proj".to_string()]));
    let json = serde_json::to_string(&s.train).unwrap();
    assert!(json.contains("\"lora\""), "{json}");
    let s = parse_sweep(&with("lora = { rank = 4, alpha = 8 }"), Path::new("t.toml"), &Registry::DEFAULT).unwrap();
    assert_eq!(s.train.lora.as_ref().unwrap().targets.len(), lm::lora::DEFAULT_TARGETS.len());
    let plain = parse_sweep(BASE, Path::new("t.toml"), &Registry::DEFAULT).unwrap();
    assert!(!serde_json::to_string(&plain.train).unwrap().contains("lora"), "unset: not serialised");
    check_err(&with("lora = { rank = 0, alpha = 8 }"), &["train.lora", "lora.rank"]);
    check_err(&with("lora = { rank = 4, alpha = 8, dropout = 0.1 }"), &["train.lora", "dropout"]);
    check_err(&with("lora = 16"), &["train.lora", "rank = 16"]);
    check_err(&with("lora = { rank = 4, alpha = 8, targets = [] }"), &["train.lora", "targets is empty"]);
}

/// `[eval]`: the caps and lengths over the defaults, the judge path relative to the config's
/// folder, `--smoke` keeping its own caps, and bad values named by their key.
#[test]
fn eval_limits_and_judge_are_parsed_and_bad_values_are_named() {
    let with = |eval: &str| format!("{BASE}\n[eval]\n{eval}\n");
    let plain = parse_sweep(BASE, Path::new("cfg/t.toml"), &Registry::DEFAULT).unwrap();
    assert_eq!(plain.eval_limits, runner::suite::EvalLimits::default());
    assert_eq!(plain.judge, None);
    let s = parse_sweep(
        &with("max_qa = 400\nanswer_new_tokens = 200\nmax_truthfulqa = 50\njudge = \"models/judge\""),
        Path::new("cfg/t.toml"),
        &Registry::DEFAULT,
    )
    .unwrap();
    let d = runner::suite::EvalLimits::default();
    assert_eq!(
        s.eval_limits,
        runner::suite::EvalLimits { max_qa: 400, answer_new_tokens: 200, max_truthfulqa: Some(50), ..d.clone() }
    );
    assert_eq!(s.limits(false).max_qa, 400);
    assert_eq!(s.limits(true), runner::suite::EvalLimits::smoke(), "--smoke keeps its own caps");
    assert_eq!(s.judge.as_deref(), Some(Path::new("cfg/models/judge")));
    check_err(&with("max_qa = 0"), &["eval.max_qa = 0", "at least 1"]);
    check_err(&with("max_items = 3"), &["max_items"]);
    check_err(&with("answer_new_tokens = \"long\""), &["answer_new_tokens"]);
}

/// A value the method itself refuses (names are checked at parse time, values by the method)
/// fails before any work: `exec::run` builds every method at every grid point first, and the
/// error names the file, the method, the grid point and the parameter.
#[test]
fn a_value_the_method_refuses_fails_before_any_work() {
    let out = tempfile::tempdir().unwrap();
    let text = format!(
        "output_dir = {:?}\n{}",
        out.path().display().to_string(),
        BASE.replace("alpha = [1.0, 1.5, 2.0]", "alpha = [1.0, -1.5]")
    );
    let sweep = parse_sweep(&text, Path::new("configs/bad.toml"), &Registry::DEFAULT).unwrap();
    let e = format!("{:#}", runner::exec::validate_methods(&sweep).unwrap_err());
    for frag in ["configs/bad.toml", "methods.msa", "alpha=-1.5", "method msa: parameter alpha = -1.5 is invalid"] {
        assert!(e.contains(frag), "{e:?} lacks {frag:?}");
    }
    // the run stops with it, before building a world (nothing is written)
    let opts = runner::exec::ExecOptions { dry_run: true, ..Default::default() };
    let e = format!("{:#}", runner::exec::run(&sweep, &opts, None, &|_| {}).unwrap_err());
    assert!(e.contains("alpha=-1.5"), "{e}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing written");
    // a `hub:` checkpoint is resolved at run time: it passes here
    let hub = BASE.replace("checkpoint = [\"latest-clean\", \"distance:2\"]", "checkpoint = \"hub:org/model\"");
    let sweep = parse_sweep(&hub, Path::new("configs/ok.toml"), &Registry::DEFAULT).unwrap();
    runner::exec::validate_methods(&sweep).unwrap();
}
