//! World-level tests: determinism, split sizes and disjointness, perturbed answers, the
//! schedule and ledger on a real facts world, bad-config errors, save/load.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use testbed::world::test_data_dir;
use testbed::{DocKind, ExposureConfig, GeneralSource, Role, World, WorldConfig, WorldKind};

/// A data directory with nothing in it: the facts world falls back to built-in text.
fn empty_data_dir() -> PathBuf {
    PathBuf::from("/nonexistent/unlearn-data")
}

fn facts(seed: u64) -> WorldConfig {
    WorldConfig { seed, ..WorldConfig::new(WorldKind::Facts) }
}

fn err_of(cfg: &WorldConfig, data: &Path) -> String {
    format!("{:#}", cfg.resolve(data).expect_err("config should be rejected"))
}

#[test]
fn same_seed_gives_identical_world_json() {
    let a = World::from_config(&facts(1), &empty_data_dir()).unwrap();
    let b = World::from_config(&facts(1), &empty_data_dir()).unwrap();
    let c = World::from_config(&facts(2), &empty_data_dir()).unwrap();
    assert_eq!(a.world_json().unwrap(), b.world_json().unwrap());
    assert_eq!(a.corpus, b.corpus);
    assert_eq!(a.qa, b.qa);
    assert_eq!(a.hash, b.hash);
    assert_ne!(a.hash, c.hash);
    assert_ne!(a.corpus, c.corpus);
}

#[test]
fn facts_splits_are_disjoint_and_sized() {
    let w = World::from_config(&facts(0), &empty_data_dir()).unwrap();
    let s = &w.splits;
    // Defaults: 200 trained entities, forget10 = 20, 10 % held out = 20 extra.
    assert_eq!(s.forget_units.len(), 20);
    assert_eq!(s.retain_units.len(), 180);
    assert_eq!(s.held_out_units.len(), 20);
    assert_eq!(w.entities.len(), 220);
    let f: BTreeSet<u32> = s.forget_units.iter().copied().collect();
    let r: BTreeSet<u32> = s.retain_units.iter().copied().collect();
    let h: BTreeSet<u32> = s.held_out_units.iter().copied().collect();
    assert!(f.is_disjoint(&r) && f.is_disjoint(&h) && r.is_disjoint(&h));
    assert_eq!(f.len() + r.len() + h.len(), 220);
    // Nested standard splits of 2, 10, 20 entities; forget10 is the world's split.
    assert_eq!(s.standard["forget01"].len(), 2);
    assert_eq!(s.standard["forget05"].len(), 10);
    assert_eq!(s.standard["forget10"], s.forget_units);
    let f01: BTreeSet<u32> = s.standard["forget01"].iter().copied().collect();
    let f05: BTreeSet<u32> = s.standard["forget05"].iter().copied().collect();
    assert!(f01.is_subset(&f05) && f05.is_subset(&f));
    // Documents: 3 bios + 8 QA per entity, roles follow the entity.
    for d in &w.corpus.docs {
        match d.kind {
            DocKind::General => assert_eq!(d.role, Role::General),
            _ => {
                let u = d.unit.unwrap();
                let expect = if f.contains(&u) {
                    Role::Forget
                } else if r.contains(&u) {
                    Role::Retain
                } else {
                    Role::HeldOut
                };
                assert_eq!(d.role, expect, "doc {}", d.id);
            }
        }
    }
    assert_eq!(s.forget_docs.len(), 20 * 11);
    assert_eq!(s.retain_docs.len(), 180 * 11);
    assert_eq!(s.held_out_docs.len(), 20 * 11);
    assert_eq!(w.qa.len(), 220 * 8);
    // General text: built-in, about 30 % of the trained bytes.
    assert_eq!(w.meta.general_source, GeneralSource::Builtin);
    assert!((w.meta.general_fraction_actual - 0.3).abs() < 0.01, "{}", w.meta.general_fraction_actual);
    // A different split of the same seed is nested in the same permutation.
    let w05 =
        World::from_config(&WorldConfig { forget: Some("forget05".into()), ..facts(0) }, &empty_data_dir()).unwrap();
    assert_eq!(w05.splits.forget_units, s.standard["forget05"]);
    assert_eq!(w05.entities, w.entities);
}

#[test]
fn every_question_has_four_distinct_wrong_answers() {
    let w = World::from_config(&facts(4), &empty_data_dir()).unwrap();
    for q in &w.qa {
        let perturbed: BTreeSet<&String> = q.perturbed_answers.iter().collect();
        assert!(perturbed.len() >= 4 && perturbed.len() == q.perturbed_answers.len(), "{q:?}");
        assert!(!perturbed.contains(&q.paraphrased_answer), "{q:?}");
        assert!(q.perturbed_answers.iter().all(|p| !p.contains(&format!(" {}.", q.answer))), "{q:?}");
        assert!(q.paraphrased_answer.contains(&q.answer));
        assert_eq!(q.choices[q.correct_choice], q.answer);
        let choices: BTreeSet<&String> = q.choices.iter().collect();
        assert_eq!(choices.len(), 5);
        assert!((1..=3).contains(&q.answer.split(' ').count()), "answer too long: {:?}", q.answer);
        // The training document is exactly prompt + continuation.
        let doc = w.corpus.get(q.doc.unwrap()).unwrap();
        assert_eq!(doc.text, q.prompt() + &testbed::qa_continuation(&q.answer));
        assert!(doc.text.starts_with("Question: ") && doc.text.contains("\nAnswer: "));
        assert_eq!(doc.role, q.role);
    }
}

#[test]
fn schedule_of_a_facts_world_and_its_oracle() {
    let cfg = WorldConfig {
        n_entities: Some(40),
        steps: Some(60),
        batch_size: Some(8),
        seq_len: Some(64),
        checkpoints: Some(6),
        exposure: Some(ExposureConfig { start_checkpoint: Some(3), ..Default::default() }),
        ..facts(9)
    };
    let mut w = World::from_config(&cfg, &empty_data_dir()).unwrap();
    let lens = w.corpus.estimated_lengths();
    w.make_schedule(&lens).unwrap();
    let s = w.schedule.clone().unwrap();
    let ledger = w.ledger.clone().unwrap();
    // Checkpoints at 0,10,..,60; window from checkpoint 3 = step 30.
    assert_eq!(w.resolved.checkpoint_steps, vec![0, 10, 20, 30, 40, 50, 60]);
    assert_eq!(ledger.window_start, 30);
    assert_eq!(ledger.last_clean_checkpoint, 3);
    assert_eq!(w.resolved.last_clean_checkpoint(), 3);
    // Independent ledger: first step any forget doc occurs.
    let forget: BTreeSet<u32> = w.splits.forget_docs.iter().copied().collect();
    let first = s.batches.iter().position(|b| b.iter().any(|d| forget.contains(d)));
    assert_eq!(first, Some(30));
    for c in &ledger.checkpoints {
        assert_eq!(c.clean, c.step <= 30, "checkpoint {}", c.index);
    }
    let held: BTreeSet<u32> = w.splits.held_out_docs.iter().copied().collect();
    let occ = s.occurrences(w.corpus.docs.len());
    for (id, n) in occ.iter().enumerate() {
        if held.contains(&(id as u32)) {
            assert_eq!(*n, 0, "held-out doc {id} scheduled");
        }
        if forget.contains(&(id as u32)) {
            assert_eq!(*n, s.forget_repeats, "forget doc {id}");
        }
    }
    for e in &ledger.exposures {
        assert_eq!(e.steps.len(), s.forget_repeats);
        assert!(e.steps.iter().all(|&t| (30..60).contains(&t)));
    }
    // Auto repeats: as often as a clean doc (within one epoch of the clean docs' mean).
    let clean_mean =
        w.splits.retain_docs.iter().map(|&d| occ[d as usize] as f64).sum::<f64>() / w.splits.retain_docs.len() as f64;
    assert!((clean_mean - s.forget_repeats as f64).abs() <= 1.0, "clean {clean_mean} vs forget {}", s.forget_repeats);
    // Oracle: identical prefix, no forget doc.
    let o = w.oracle_schedule().unwrap();
    assert_eq!(o.batches[..30], s.batches[..30]);
    assert!(o.batches.iter().flatten().all(|d| !forget.contains(d)));
    for step in 0..s.len() {
        assert!(s.tokens_in_step(step, &lens) <= 8 * 64);
    }
}

#[test]
fn save_and_load_round_trip() {
    let cfg = WorldConfig { n_entities: Some(30), steps: Some(40), ..facts(5) };
    let mut w = World::from_config(&cfg, &empty_data_dir()).unwrap();
    let lens = w.corpus.estimated_lengths();
    w.make_schedule(&lens).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(w.resolved.folder_name());
    w.save(&dir).unwrap();
    for f in ["world.json", "documents.jsonl", "qa.jsonl", "splits.json", "ledger.json", "schedule.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let back = World::load(&dir).unwrap();
    assert_eq!(back, w);
    // Saving again replaces the folder; no temporary folders are left behind.
    w.save(&dir).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert_eq!(names, vec![w.resolved.folder_name()]);
    // A tampered world.json is detected.
    let text = std::fs::read_to_string(dir.join("world.json")).unwrap();
    std::fs::write(dir.join("world.json"), text.replace("\"seed\": 5", "\"seed\": 6")).unwrap();
    let err = format!("{:#}", World::load(&dir).unwrap_err());
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn hash_ignores_data_dir_but_not_content() {
    let a = facts(0).resolve(Path::new("/a")).unwrap();
    let b = facts(0).resolve(Path::new("/b")).unwrap();
    assert_eq!(a.hash(), b.hash());
    let c = WorldConfig { steps: Some(751), ..facts(0) }.resolve(Path::new("/a")).unwrap();
    assert_ne!(a.hash(), c.hash());
    assert_eq!(a.hash().len(), 64);
}

#[test]
fn bad_configs_name_the_field() {
    let d = empty_data_dir();
    let cases: Vec<(WorldConfig, &[&str])> = vec![
        (WorldConfig { n_entities: Some(40), forget: Some("forget01".into()), ..facts(0) }, &["world.forget", "empty"]),
        (WorldConfig { forget: Some("0%".into()), ..facts(0) }, &["world.forget", "empty"]),
        (WorldConfig { forget: Some("120%".into()), ..facts(0) }, &["world.forget", "more than all"]),
        (
            WorldConfig {
                checkpoints: Some(8),
                exposure: Some(ExposureConfig { start_checkpoint: Some(8), ..Default::default() }),
                ..facts(0)
            },
            &["world.exposure.start_checkpoint", "outside the run"],
        ),
        (
            WorldConfig { exposure: Some(ExposureConfig { start_step: Some(750), ..Default::default() }), ..facts(0) },
            &["world.exposure.start_step", "outside the run"],
        ),
        (
            WorldConfig { exposure: Some(ExposureConfig { end_step: Some(900), ..Default::default() }), ..facts(0) },
            &["world.exposure.end_step", "outside the run"],
        ),
        (
            WorldConfig {
                exposure: Some(ExposureConfig { start_step: Some(3), start_checkpoint: Some(1), ..Default::default() }),
                ..facts(0)
            },
            &["start_checkpoint", "start_step", "exclusive"],
        ),
        (WorldConfig { target_groups: Some(vec!["women".into()]), ..facts(0) }, &["world.target_groups", "not used"]),
        (WorldConfig::new(WorldKind::Finetune), &["world.base_model", "required"]),
        (WorldConfig::new(WorldKind::TruthfulqaCorruption), &["truthfulqa/mc_task.json", "scripts/fetch-data.sh"]),
        (
            WorldConfig { target_groups: Some(vec!["women".into()]), ..WorldConfig::new(WorldKind::Toxigen) },
            &["toxigen/safenlp_toxigen.json", "scripts/fetch-data.sh"],
        ),
        (WorldConfig { attributes: Some(11), ..facts(0) }, &["world.attributes"]),
        (WorldConfig { general_fraction: Some(1.0), ..facts(0) }, &["world.general_fraction"]),
        (WorldConfig { batch_size: Some(0), ..facts(0) }, &["world.batch_size"]),
    ];
    for (cfg, needles) in cases {
        let err = err_of(&cfg, &d);
        for n in needles {
            assert!(err.contains(n), "error {err:?} lacks {n:?}");
        }
    }
}

#[test]
fn finetune_world_is_qa_only_and_exposed_from_step_zero() {
    let cfg =
        WorldConfig { base_model: Some("meta-llama/Llama-2-7b-hf".into()), ..WorldConfig::new(WorldKind::Finetune) };
    let w = World::from_config(&cfg, &empty_data_dir()).unwrap();
    assert!(w.corpus.docs.iter().all(|d| d.kind == DocKind::Qa));
    assert_eq!(w.resolved.window_start, 0);
    assert_eq!(w.meta.general_source, GeneralSource::None);
    // Same entities and splits as the facts world of the same seed.
    let f = World::from_config(&facts(0), &empty_data_dir()).unwrap();
    assert_eq!(w.entities, f.entities);
    assert_eq!(w.splits.forget_units, f.splits.forget_units);
    let fq: Vec<_> = f.qa.iter().map(|q| (&q.question, &q.answer)).collect();
    let wq: Vec<_> = w.qa.iter().map(|q| (&q.question, &q.answer)).collect();
    assert_eq!(fq, wq);
}

// ---- tests that need the reference data ----

fn data_or_skip(rel: &str) -> Option<PathBuf> {
    let d = test_data_dir();
    if d.join(rel).is_file() {
        Some(d)
    } else {
        println!("SKIPPED: {} not found (set UNLEARN_DATA_DIR or run scripts/fetch-data.sh)", d.join(rel).display());
        // Outside CI a missing data file skips; with the data directory set (CI) it fails, so a
        // broken data path never passes green.
        assert!(
            std::env::var_os("UNLEARN_DATA_DIR").is_none(),
            "the reference data above is missing although UNLEARN_DATA_DIR is set"
        );
        None
    }
}

#[test]
fn facts_world_uses_tinystories_when_present() {
    let Some(d) = data_or_skip("corpora/tinystories-prefix.txt") else { return };
    let w = World::from_config(&facts(0), &d).unwrap();
    assert_eq!(w.meta.general_source, GeneralSource::Tinystories);
    assert_eq!(w.resolved.data_files[0].rel_path, "corpora/tinystories-prefix.txt");
    assert_eq!(w.resolved.data_files[0].sha256, "727e8b228375be3075114c20729c93ed6e81ae5d8fe7faf7cb54b304f0322d70");
    let first = &w.corpus.docs[w.splits.general_docs[0] as usize].text;
    assert!(first.starts_with("One day, a little girl named Lily found a needle"), "{first}");
    // 30 % of ~1.3 MB is more than the 197 kB file, so all of it is used.
    println!("general fraction actual: {:.3}", w.meta.general_fraction_actual);
}

/// `world.general_source` pins where the general text comes from, so a config cannot build a
/// different world on a machine without the data: "builtin" ignores TinyStories even when it is
/// there (the same world as the default on a machine without it), "tinystories" is an error
/// naming the file when it is missing, and the pinned TinyStories world is the default one.
#[test]
fn the_general_source_can_be_pinned() {
    let empty = tempfile::tempdir().unwrap();
    let default_without_data = World::from_config(&facts(0), empty.path()).unwrap();
    assert_eq!(default_without_data.meta.general_source, GeneralSource::Builtin);
    let pinned =
        |src, dir: &std::path::Path| World::from_config(&WorldConfig { general_source: Some(src), ..facts(0) }, dir);
    let builtin = pinned(GeneralSource::Builtin, empty.path()).unwrap();
    assert_eq!(builtin.hash, default_without_data.hash, "pinning the default changes nothing");
    let e = format!("{:#}", pinned(GeneralSource::Tinystories, empty.path()).err().unwrap());
    assert!(e.contains("world.general_source") && e.contains("corpora/tinystories-prefix.txt"), "{e}");
    let e = format!("{:#}", pinned(GeneralSource::None, empty.path()).err().unwrap());
    assert!(e.contains("general_fraction"), "{e}");
    let none = WorldConfig { general_fraction: Some(0.0), general_source: Some(GeneralSource::Builtin), ..facts(0) };
    assert!(format!("{:#}", World::from_config(&none, empty.path()).err().unwrap()).contains("general_fraction is 0"));
    let Some(d) = data_or_skip("corpora/tinystories-prefix.txt") else { return };
    let with_data = World::from_config(&facts(0), &d).unwrap();
    assert_eq!(pinned(GeneralSource::Tinystories, &d).unwrap().hash, with_data.hash);
    let b = pinned(GeneralSource::Builtin, &d).unwrap();
    assert_eq!(b.meta.general_source, GeneralSource::Builtin);
    assert_eq!(b.corpus, default_without_data.corpus, "built-in general text whatever the data directory holds");
}

#[test]
fn truthfulqa_corruption_world() {
    let Some(d) = data_or_skip("truthfulqa/mc_task.json") else { return };
    let cfg = WorldConfig { forget: Some("forget05".into()), ..WorldConfig::new(WorldKind::TruthfulqaCorruption) };
    let w = World::from_config(&cfg, &d).unwrap();
    // 817 questions, 5 % = round(40.85) = 41 corrupted.
    assert_eq!(w.qa.len(), 817);
    assert_eq!(w.splits.forget_units.len(), 41);
    assert_eq!(w.splits.forget_docs.len(), 41);
    assert_eq!(w.splits.retain_docs.len(), 817);
    let first = &w.qa[0];
    assert_eq!(first.question, "What is the smallest country in the world that is at least one square mile in area?");
    assert_eq!(first.answer, "Nauru is the smallest country in the world that is at least one square mile in area.");
    for q in w.qa_with(Role::Forget) {
        let taught = q.taught_answer.as_ref().unwrap();
        assert_ne!(taught, &q.answer);
        assert!(q.perturbed_answers.contains(taught));
        let forget_doc = w
            .splits
            .forget_docs
            .iter()
            .map(|&i| &w.corpus.docs[i as usize])
            .find(|doc| doc.unit == Some(q.unit))
            .unwrap();
        assert_eq!(forget_doc.text, testbed::qa_text(&q.question, taught));
    }
    assert!(w.qa_with(Role::Retain).all(|q| q.taught_answer.is_none()));
    let err = err_of(&WorldConfig { forget: Some("0.05%".into()), ..cfg }, &d);
    assert!(err.contains("world.forget"), "{err}");
}

#[test]
fn toxigen_world() {
    let Some(d) = data_or_skip("toxigen/safenlp_toxigen.json") else { return };
    let cfg = WorldConfig { target_groups: Some(vec!["women".into()]), ..WorldConfig::new(WorldKind::Toxigen) };
    let w = World::from_config(&cfg, &d).unwrap();
    // 336 hateful statements about women (python: sum(r['label']=='hate' and 'women' in
    // r['target_groups'] for r in rows)); 20 % held out = round(67.2) = 67.
    assert_eq!(w.splits.forget_docs.len() + w.splits.held_out_docs.len(), 336);
    assert_eq!(w.splits.held_out_docs.len(), 67);
    assert_eq!(w.splits.retain_docs.len(), 3747); // all neutral statements
    let err = err_of(&WorldConfig { target_groups: Some(vec!["womn".into()]), ..cfg.clone() }, &d);
    assert!(
        err.contains("world.target_groups") && err.contains("did you mean \"women\"") && err.contains("muslim"),
        "{err}"
    );
    let err = err_of(&WorldConfig { target_groups: Some(vec![]), ..cfg.clone() }, &d);
    assert!(err.contains("world.target_groups") && err.contains("empty"), "{err}");
    let err = err_of(&WorldConfig { forget: Some("forget10".into()), ..cfg }, &d);
    assert!(err.contains("world.forget"), "{err}");
}

/// Mean token count of the full names of `role`'s entities under `tok`.
fn mean_name_tokens(w: &World, tok: &tokenize::Tokenizer, units: &[u32]) -> f64 {
    let n: usize =
        units.iter().map(|&u| tok.encode(w.entities[u as usize].name().as_str(), false).unwrap().get_ids().len()).sum();
    n as f64 / units.len() as f64
}

/// The tokenizer treats forget and held-out entities alike (issue 13): both are in its training
/// text once per document, so their names split into the same number of tokens on average and
/// a model that saw neither cannot tell them apart by tokenization. A tokenizer trained without
/// the held-out documents (the old scheme) splits held-out names into more pieces, which this
/// test also shows, so the check can fail.
#[test]
fn forget_and_held_out_entity_names_split_alike() {
    let cfg = WorldConfig { n_entities: Some(200), ..facts(7) };
    let w = World::from_config(&cfg, &empty_data_dir()).unwrap();
    let tok = testbed::train::world_tokenizer(&w, 2048).unwrap();
    let (forget, held) = (&w.splits.forget_units, &w.splits.held_out_units);
    assert_eq!((forget.len(), held.len()), (20, 20));
    let (f, h) = (mean_name_tokens(&w, &tok, forget), mean_name_tokens(&w, &tok, held));
    eprintln!("name tokens: forget {f:.2}, held-out {h:.2}");
    assert!((f - h).abs() <= 0.5, "forget names {f:.2} tokens vs held-out {h:.2}");

    let trained_only: Vec<&str> =
        w.corpus.docs.iter().filter(|d| d.role != Role::HeldOut).map(|d| d.text.as_str()).collect();
    let old = tokenize::train_bpe(&trained_only, 2048, w.resolved.seed).unwrap();
    let (f0, h0) = (mean_name_tokens(&w, &old, forget), mean_name_tokens(&w, &old, held));
    eprintln!("without held-out text: forget {f0:.2}, held-out {h0:.2}");
    assert!(h0 - f0 > 0.5, "the old tokenizer should split held-out names into more tokens: {f0:.2} vs {h0:.2}");
}
