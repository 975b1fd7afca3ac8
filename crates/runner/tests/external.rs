//! The `external` method kind (issue 21) without running a sweep: its config (command, env,
//! timeout, placeholders; errors naming `methods.X.command[i]`), its fingerprint (the scripts
//! the command names are hashed: editing one makes its results stale; other methods' cells keep
//! their fingerprints), and the checks of the folder a command writes (architecture,
//! vocabulary, finite weights, files). `crates/bench/tests/external.rs` runs commands in sweeps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use runner::exec::{validate_worlds, ExecOptions};
use runner::external::{placeholders, substitute, validate_output};
use runner::{expand, parse_sweep, Registry, Sweep, SweepFingerprints};

const BASE: &str = r#"
name = "ext"
seeds = [0]
metrics = ["tofu_forget_quality"]

[world]
kind = "facts"
n_entities = 100

[train]
lr = 1e-3

[[models]]
name = "tiny"
scratch = "tiny"

[methods.ga]
kind = "gradient_ascent"
lr = [1e-4, 1e-3]
"#;

fn parse(text: &str) -> anyhow::Result<Sweep> {
    parse_sweep(text, Path::new("configs/ext.toml"), &Registry::DEFAULT)
}

#[track_caller]
fn check_err(extra: &str, fragments: &[&str]) {
    let err = match parse(&format!("{BASE}{extra}")) {
        Ok(_) => panic!("accepted:\n{extra}"),
        Err(e) => format!("{e:#}"),
    };
    for f in fragments {
        assert!(err.contains(f), "error {err:?} lacks {f:?}");
    }
}

#[test]
fn an_external_method_table_is_a_command_and_hyperparameters() {
    let sweep = parse(&format!(
        "{BASE}\n[methods.mine]\nkind = \"external\"\ncommand = [\"python3\", \"my.py\", \"--model\", \"{{model}}\", \
         \"--lr={{lr}}\", \"--alpha\", \"{{alpha}}\", \"{{{{literal}}}}\"]\nenv = {{ A = \"{{seed}}\", B = 2 }}\n\
         timeout = 90\nalpha = [0.5, 1.0]\nlr = 1e-5\n"
    ))
    .unwrap();
    let m = &sweep.methods["mine"];
    let spec = m.external.as_ref().unwrap();
    assert_eq!(spec.command[0], "python3");
    assert_eq!(spec.env["A"], "{seed}");
    assert_eq!(spec.env["B"], "2");
    assert_eq!(spec.timeout, Some(90.0));
    // command, env and timeout are not hyperparameters: not in cell keys
    assert_eq!(m.grid.keys().collect::<Vec<_>>(), ["alpha"]);
    assert_eq!(m.fixed.keys().collect::<Vec<_>>(), ["lr"]);
    let cells: Vec<_> = expand(&sweep).into_iter().filter(|c| c.method == "mine").collect();
    assert_eq!(cells.len(), 2);
    assert_eq!(cells[0].key, "mine/alpha=0.5,lr=1e-5/world=0/seed=0/model=tiny");
    // other kinds never get a spec
    assert!(sweep.methods["ga"].external.is_none());
}

#[test]
fn bad_external_tables_name_the_key() {
    let m = "\n[methods.mine]\nkind = \"external\"\n";
    check_err(m, &["configs/ext.toml", "methods.mine.command", "missing"]);
    check_err(
        &format!("{m}command = \"python3 x.py\"\n"),
        &["methods.mine.command", "array of strings", "without a shell"],
    );
    check_err(&format!("{m}command = []\n"), &["methods.mine.command", "empty"]);
    check_err(&format!("{m}command = [\"x\", 3]\n"), &["methods.mine.command[1]", "expected a string"]);
    check_err(
        &format!("{m}command = [\"x\", \"--model\", \"{{model}}\", \"--lr\", \"{{lrr}}\"]\n"),
        &["methods.mine.command[4]", "{lrr}", "unknown placeholder", "did you mean `lr`"],
    );
    check_err(
        &format!("{m}command = [\"x\", \"{{alpha}}\"]\n"),
        &["methods.mine.command[1]", "{alpha}", "unknown placeholder"],
    );
    check_err(&format!("{m}command = [\"x\", \"{{out\"]\n"), &["methods.mine.command[1]", "without a closing"]);
    check_err(&format!("{m}command = [\"x\", \"{{max_steps}}\"]\n"), &["methods.mine.command[1]", "{max_steps}"]);
    check_err(&format!("{m}command = [\"x\"]\nenv = {{ A = \"{{nope}}\" }}\n"), &["methods.mine.env.A", "{nope}"]);
    check_err(&format!("{m}command = [\"x\"]\nenv = \"A=1\"\n"), &["methods.mine.env", "table"]);
    check_err(&format!("{m}command = [\"x\"]\ntimeout = 0\n"), &["methods.mine.timeout", "seconds > 0"]);
    check_err(&format!("{m}command = [\"x\"]\ntimeout = \"1h\"\n"), &["methods.mine.timeout"]);
    check_err(
        "\n[methods.mine]\nkind = \"extrenal\"\ncommand = [\"x\"]\n",
        &["methods.mine.kind", "did you mean `external`"],
    );
    // `command` is not a hyperparameter of the built-in kinds
    check_err("\n[methods.g2]\nkind = \"npo\"\ncommand = [\"x\"]\n", &["methods.g2.command"]);
    // a set max_steps, and a hyperparameter of the table, are placeholders
    parse(&format!("{BASE}{m}command = [\"x\", \"{{max_steps}}\", \"{{beta}}\"]\nmax_steps = 5\nbeta = 1\n")).unwrap();
}

#[test]
fn placeholders_are_parsed_and_filled() {
    assert_eq!(placeholders("--lr={lr}/{seed}").unwrap(), ["lr", "seed"]);
    assert_eq!(placeholders("{{not}} }}").unwrap(), Vec::<&str>::new());
    assert!(placeholders("{a b}").is_err());
    assert!(placeholders("a}").is_err());
    let values = BTreeMap::from([("lr".to_owned(), "1e-5".to_owned()), ("out".to_owned(), "/o".to_owned())]);
    assert_eq!(substitute("--lr={lr} {{x}} {out}/m", &values).unwrap(), "--lr=1e-5 {x} /o/m");
    assert!(substitute("{nope}", &values).is_err());
}

fn fingerprints(sweep: &Sweep) -> BTreeMap<String, String> {
    let data = PathBuf::from("/nonexistent/unlearn-data");
    let opts = ExecOptions { dry_run: true, data_dir: Some(data.clone()), ..Default::default() };
    let worlds = validate_worlds(sweep, &opts, &data).unwrap();
    let fps = SweepFingerprints::new(sweep, false, &worlds).unwrap();
    expand(sweep).iter().map(|c| (c.id.clone(), fps.of(c).unwrap().hash)).collect()
}

#[test]
fn editing_the_script_makes_the_cells_stale_and_leaves_other_methods_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("method.sh");
    std::fs::write(&script, "echo one\n").unwrap();
    let s = script.display().to_string();
    let with = |cmd: &str| {
        parse(&format!("{BASE}\n[methods.mine]\nkind = \"external\"\ncommand = [\"sh\", {cmd:?}, \"{{out}}\"]\n"))
            .unwrap()
    };
    let before = fingerprints(&with(&s));
    let base_only = fingerprints(&parse(BASE).unwrap());
    // adding an external method changes no other cell's fingerprint
    for (id, fp) in &base_only {
        assert_eq!(before.get(id), Some(fp), "{id}");
    }
    let mine = |fps: &BTreeMap<String, String>| -> String {
        fps.iter().find(|(id, _)| id.starts_with("mine")).map(|(_, f)| f.clone()).unwrap()
    };
    assert_eq!(mine(&fingerprints(&with(&s))), mine(&before), "stable");
    std::fs::write(&script, "echo two\n").unwrap();
    let after = fingerprints(&with(&s));
    assert_ne!(mine(&after), mine(&before), "the script's content is in the fingerprint");
    for (id, fp) in &base_only {
        assert_eq!(after.get(id), Some(fp), "{id}");
    }
    // the command itself too
    let other = fingerprints(
        &parse(&format!(
            "{BASE}\n[methods.mine]\nkind = \"external\"\ncommand = [\"sh\", {s:?}, \"{{out}}\", \"-v\"]\n"
        ))
        .unwrap(),
    );
    assert_ne!(mine(&other), mine(&after));
    // and the record of a script's hash is in provenance-ready form
    let hashes = runner::external::script_hashes(&["sh".into(), s.clone(), "{out}".into()]);
    assert_eq!(hashes.len(), 1);
    assert_eq!(hashes[&s].len(), 64);
}

// ---------------------------------------------------------------- the output checks

fn texts() -> Vec<String> {
    vec!["Question: Where was the author born?\nAnswer: Orlen".to_string(), "The author writes poems.".into()]
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

#[track_caller]
fn invalid(out: &Path, base: &Path, fragments: &[&str]) {
    let err = format!("{:#}", validate_output(out, base).expect_err("accepted"));
    for f in fragments {
        assert!(err.contains(f), "error {err:?} lacks {f:?}");
    }
}

#[test]
fn only_a_finite_model_of_theta_ds_architecture_and_vocabulary_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let base = testbed::smoke::tiny_like("qwen", &tmp.path().join("base"), 0, &texts()).unwrap();

    // another seed of the same model: valid
    let same = testbed::smoke::tiny_like("qwen", &tmp.path().join("same"), 1, &texts()).unwrap();
    validate_output(&same, &base).unwrap();

    invalid(&tmp.path().join("absent"), &base, &["is not a folder"]);

    // NaN / inf weights (a coefficient that overflows f32)
    let inf = tmp.path().join("inf");
    model_state::combine(&[(1e300, base.clone())], &inf, &Default::default()).unwrap();
    invalid(&inf, &base, &["non-finite value"]);

    // another architecture
    let arch = tmp.path().join("arch");
    copy_dir(&base, &arch);
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(arch.join("config.json")).unwrap()).unwrap();
    cfg["num_hidden_layers"] = serde_json::json!(cfg["num_hidden_layers"].as_u64().unwrap() + 1);
    std::fs::write(arch.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    invalid(&arch, &base, &["another architecture than θ_D's"]);

    // another vocabulary: a tokenizer trained on other texts
    let vocab =
        testbed::smoke::tiny_like("qwen", &tmp.path().join("vocab"), 0, &["zzz qqq xxx other words entirely".into()])
            .unwrap();
    invalid(&vocab, &base, &["vocab"]);

    // missing files
    let notok = tmp.path().join("notok");
    copy_dir(&base, &notok);
    std::fs::remove_file(notok.join("tokenizer.json")).unwrap();
    invalid(&notok, &base, &["no tokenizer.json"]);
    let pickle = tmp.path().join("pickle");
    copy_dir(&base, &pickle);
    std::fs::rename(pickle.join("model.safetensors"), pickle.join("pytorch_model.bin")).unwrap();
    invalid(&pickle, &base, &["no safetensors weights", "safe_serialization=True"]);
}
