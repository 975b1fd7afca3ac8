//! The `tofu` world read from files in TOFU's published layout (the compiled-in fixture of
//! invented authors): every split and field, the perturbed-answer lists, the world's roles and
//! QA items, and clear errors for missing files and schema mismatches.

use std::path::{Path, PathBuf};

use testbed::tofu::{self, PerturbedRow, Row, Tofu, QA_PER_AUTHOR};
use testbed::{Role, World, WorldConfig, WorldKind};

fn fixture_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tofu::write_fixture(&data).unwrap();
    (tmp, data)
}

fn config(forget: &str) -> WorldConfig {
    WorldConfig {
        forget: Some(forget.into()),
        base_model: Some("models/tiny".into()),
        ..WorldConfig::new(WorldKind::Tofu)
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_split_loads_with_every_field() {
    let (_tmp, data) = fixture_dir();
    let full: Vec<Row> = tofu::read_rows(&data.join("tofu/full.json")).unwrap();
    assert_eq!(full.len(), 10 * QA_PER_AUTHOR);
    for (split, authors) in [("forget01", 1usize), ("forget05", 2), ("forget10", 3)] {
        let t = Tofu::load(&data, split).unwrap();
        assert_eq!(t.n_authors, 10);
        // TOFU's forget splits are the last authors.
        let expect: Vec<u32> = (10 - authors as u32..10).collect();
        assert_eq!(t.forget_authors, expect, "{split}");
        assert_eq!(t.pairs.len(), full.len());
        // Every forget pair is asked, with its paraphrase and five perturbed answers; of the
        // retain pairs, those of retain_perturbed.json (the first author).
        let perturbed: Vec<PerturbedRow> = tofu::read_rows(&data.join(format!("tofu/{split}_perturbed.json"))).unwrap();
        assert_eq!(perturbed.len(), authors * QA_PER_AUTHOR);
        for (i, p) in t.pairs.iter().enumerate() {
            assert_eq!(p.author as usize, i / QA_PER_AUTHOR);
            assert_eq!((&p.question, &p.answer), (&full[i].question, &full[i].answer));
            let forget = t.forget_authors.contains(&p.author);
            assert_eq!(p.eval.is_some(), forget || p.author == 0, "pair {i} of {split}");
            if let Some(e) = &p.eval {
                assert_eq!(e.perturbed_answer.len(), 5);
                assert!(e.paraphrased_question.is_some());
                assert_ne!(e.paraphrased_answer, p.answer);
            }
        }
        // holdoutNN.json: new authors after the trained ones.
        assert_eq!(t.held_out.len(), authors * QA_PER_AUTHOR);
        assert_eq!(t.n_held_out_authors(), authors);
        assert!(t.held_out.iter().all(|p| p.author >= 10));
    }
    // A perturbed row, field by field, against the raw JSON.
    let raw = lines(&data.join("tofu/forget01_perturbed.json"));
    let rows: Vec<PerturbedRow> = tofu::read_rows(&data.join("tofu/forget01_perturbed.json")).unwrap();
    assert_eq!(rows[3].question, raw[3]["question"].as_str().unwrap());
    assert_eq!(rows[3].paraphrased_answer, raw[3]["paraphrased_answer"].as_str().unwrap());
    let pert: Vec<&str> = raw[3]["perturbed_answer"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(rows[3].perturbed_answer, pert);
}

#[test]
fn a_json_array_reads_like_json_lines() {
    let (tmp, data) = fixture_dir();
    let path = data.join("tofu/forget05.json");
    let as_lines: Vec<Row> = tofu::read_rows(&path).unwrap();
    let array = tmp.path().join("array.json");
    std::fs::write(&array, serde_json::to_string(&lines(&path)).unwrap()).unwrap();
    assert_eq!(tofu::read_rows::<Row>(&array).unwrap(), as_lines);
}

#[test]
fn the_world_has_tofus_roles_and_items() {
    let (_tmp, data) = fixture_dir();
    let w = World::from_config(&config("forget05"), &data).unwrap();
    assert_eq!(w.resolved.kind, WorldKind::Tofu);
    assert_eq!(w.splits.forget_units, vec![8, 9]);
    assert_eq!(w.splits.retain_units, (0..8).collect::<Vec<u32>>());
    assert_eq!(w.splits.held_out_units, vec![10, 11]);
    assert_eq!(w.splits.standard["forget05"], vec![8, 9]);
    assert_eq!(w.splits.forget_docs.len(), 40);
    assert_eq!(w.splits.retain_docs.len(), 160);
    assert_eq!(w.splits.held_out_docs.len(), 40);
    assert!(w.splits.general_docs.is_empty(), "general_fraction defaults to 0, as in finetune");
    // The documents are the QA pairs in the QA format.
    let full: Vec<Row> = tofu::read_rows(&data.join("tofu/full.json")).unwrap();
    assert_eq!(w.corpus.docs[0].text, testbed::qa_text(&full[0].question, &full[0].answer));
    // QA items: the 40 forget pairs and the 20 of retain_perturbed, none held out.
    assert_eq!(w.qa_with(Role::Forget).count(), 40);
    assert_eq!(w.qa_with(Role::Retain).count(), 20);
    assert_eq!(w.qa.len(), 60);
    for q in &w.qa {
        assert_eq!(q.choices.len(), 6, "the paraphrase and five perturbed answers");
        assert_eq!(q.choices[q.correct_choice], q.paraphrased_answer);
        assert_eq!(q.perturbed_answers.len(), 5);
        let doc = &w.corpus.docs[q.doc.unwrap() as usize];
        assert_eq!(doc.text, testbed::qa_text(&q.question, &q.answer));
        assert_eq!(doc.role, q.role);
    }
    // The data files are recorded with their hashes (the world's hash follows the data).
    let rel: Vec<&str> = w.resolved.data_files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(
        rel,
        [
            "tofu/full.json",
            "tofu/forget05.json",
            "tofu/forget05_perturbed.json",
            "tofu/retain_perturbed.json",
            "tofu/holdout05.json",
            "tofu/real_authors_perturbed.json",
            "tofu/world_facts_perturbed.json"
        ]
    );
    // TOFU's other model-utility sets, row for row from their files (never trained on: no
    // document holds their answers)
    let names: Vec<&str> = w.eval.utility_qa.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["real_authors", "world_facts"]);
    for (set, file) in w.eval.utility_qa.iter().zip(["real_authors_perturbed", "world_facts_perturbed"]) {
        let raw = lines(&data.join(format!("tofu/{file}.json")));
        assert_eq!(set.items.len(), raw.len());
        for (it, r) in set.items.iter().zip(&raw) {
            assert_eq!(it.question, r["question"].as_str().unwrap());
            assert_eq!(it.answer, r["answer"].as_str().unwrap());
            let wrong: Vec<&str> =
                r["perturbed_answer"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert_eq!(it.perturbed_answers, wrong);
            assert!(!w.corpus.docs.iter().any(|d| d.text.contains(&it.answer)), "{:?} is in the corpus", it.answer);
        }
    }
    // Deterministic.
    assert_eq!(World::from_config(&config("forget05"), &data).unwrap(), w);
    // Another split is another world.
    assert_ne!(World::from_config(&config("forget01"), &data).unwrap().hash, w.hash);
}

#[test]
fn bad_inputs_name_the_file_row_and_field() {
    let (_tmp, data) = fixture_dir();
    let err = |data: &Path, forget: &str| format!("{:#}", World::from_config(&config(forget), data).err().unwrap());

    // A percentage is not one of TOFU's splits.
    assert!(err(&data, "7.5%").contains("forget01, forget05, forget10"), "{}", err(&data, "7.5%"));
    // base_model is required.
    let e = format!("{:#}", WorldConfig { base_model: None, ..config("forget01") }.resolve(&data).err().unwrap());
    assert!(e.contains("world.base_model is required for kind = \"tofu\""), "{e}");

    // A missing file: named, with the command that fetches it.
    std::fs::remove_file(data.join("tofu/forget10_perturbed.json")).unwrap();
    let e = err(&data, "forget10");
    assert!(e.contains("tofu/forget10_perturbed.json") && e.contains("scripts/fetch-data.sh --with-tofu"), "{e}");
    // The holdout file is optional.
    std::fs::remove_file(data.join("tofu/holdout01.json")).unwrap();
    let w = World::from_config(&config("forget01"), &data).unwrap();
    assert!(w.splits.held_out_docs.is_empty());
    // So are the model-utility sets (model utility is then the retain set's alone).
    std::fs::remove_file(data.join("tofu/world_facts_perturbed.json")).unwrap();
    let w = World::from_config(&config("forget01"), &data).unwrap();
    assert_eq!(w.eval.utility_qa.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["real_authors"]);
    // ... but one that is there must be well formed: file, row and field named.
    let p = data.join("tofu/real_authors_perturbed.json");
    let mut rows = lines(&p);
    rows[1]["perturbed_answer"] = serde_json::json!([]);
    std::fs::write(&p, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let e = err(&data, "forget01");
    assert!(e.contains("real_authors_perturbed.json: row 2") && e.contains("perturbed_answer"), "{e}");
    rows[1].as_object_mut().unwrap().remove("answer");
    std::fs::write(&p, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let e = err(&data, "forget01");
    assert!(e.contains("real_authors_perturbed.json: line 2") && e.contains("answer"), "{e}");

    // A schema mismatch: file, line and field.
    tofu::write_fixture(&data).unwrap();
    let p = data.join("tofu/forget05_perturbed.json");
    let mut rows = lines(&p);
    rows[6].as_object_mut().unwrap().remove("paraphrased_answer");
    std::fs::write(&p, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let e = err(&data, "forget05");
    assert!(e.contains("forget05_perturbed.json: line 7") && e.contains("paraphrased_answer"), "{e}");

    // A forget split that cuts an author in two.
    tofu::write_fixture(&data).unwrap();
    let p = data.join("tofu/forget01.json");
    let mut rows = lines(&p);
    rows.pop();
    std::fs::write(&p, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let e = err(&data, "forget01");
    assert!(e.contains("holds 19 of the 20 pairs of author 9") && e.contains("whole authors"), "{e}");

    // A pair that full.json does not have.
    tofu::write_fixture(&data).unwrap();
    let p = data.join("tofu/forget10.json");
    let mut rows = lines(&p);
    rows[0]["answer"] = serde_json::Value::String("something else".into());
    std::fs::write(&p, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let e = err(&data, "forget10");
    assert!(e.contains("forget10.json: line 1") && e.contains("is not in"), "{e}");

    // full.json cut mid-author.
    tofu::write_fixture(&data).unwrap();
    let p = data.join("tofu/full.json");
    let mut rows = lines(&p);
    rows.pop();
    std::fs::write(&p, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let e = err(&data, "forget05");
    assert!(e.contains("199 rows, not a whole number of authors"), "{e}");
}

/// A tiny Llama-family model whose tokenizer is trained on the fixture's texts, with the
/// smoke chat template.
fn tiny_chat_model(dir: &Path, world: &World) -> PathBuf {
    let texts: Vec<String> = world.corpus.docs.iter().map(|d| d.text.clone()).collect();
    testbed::smoke::tiny_like_in("llama", dir, 3, &texts, Path::new("/nonexistent")).unwrap()
}

#[test]
fn chat_worlds_train_on_the_chat_rendering_with_the_loss_on_the_answer() {
    use testbed::finetune::{finetune_examples, ChatQa};
    let (tmp, data) = fixture_dir();
    let cfg = WorldConfig {
        chat_template: Some(true),
        system_prompt: Some("You are a helpful assistant.".into()),
        ..config("forget01")
    };
    let w = World::from_config(&cfg, &data).unwrap();
    assert_eq!(w.resolved.chat.as_ref().unwrap().system_prompt.as_deref(), Some("You are a helpful assistant."));
    // The plain world has another hash; the chat field is absent from its resolved JSON (so
    // worlds resolved before it keep their hash).
    let plain = World::from_config(&config("forget01"), &data).unwrap();
    assert_ne!(plain.hash, w.hash);
    assert!(!plain.resolved.canonical_json().contains("chat"));

    let model = tiny_chat_model(&tmp.path().join("tiny"), &w);
    let chat = ChatQa::for_world(&w, &model).unwrap().unwrap();
    let q = &w.qa[0];
    let (prompt, full) = chat.pair(&q.question, &q.answer).unwrap();
    // The smoke template, rendered by hand.
    let expect_prompt =
        format!("<s><|system|>\nYou are a helpful assistant.</s><|user|>\n{}</s><|assistant|>\n", q.question);
    assert_eq!(prompt, expect_prompt);
    assert_eq!(full, format!("{expect_prompt}{}</s>", q.answer));
    let (prefix, suffix) = chat.affixes(w.qa.iter().map(|q| q.question.as_str())).unwrap();
    assert_eq!(format!("{prefix}{}{suffix}", q.question), prompt);
    // The smoke template trims the question: a question with a trailing space breaks the
    // prefix + question + suffix form, and says so.
    let e = format!("{:#}", chat.affixes(["Where? "]).unwrap_err());
    assert!(e.contains("rewrites the question"), "{e}");

    let lmcfg = lm::LmConfig::from_file(&model.join("config.json")).unwrap();
    let tok = lm::Tok::load(&model, &lmcfg).unwrap();
    let examples = finetune_examples(&w, &tok, 512, Some(&chat)).unwrap();
    let eos = tok.eos[0];
    // Every trained document, with or without an evaluation item (retain pairs outside
    // retain_perturbed.json keep their pair), is its chat rendering.
    let no_item = w.corpus.docs.iter().find(|d| d.pair.is_some() && d.role == Role::Retain).unwrap();
    let with_item = &w.corpus.docs[q.doc.unwrap() as usize];
    for (doc, (question, answer)) in [
        (with_item, (q.question.clone(), q.answer.clone())),
        (no_item, (no_item.pair.as_ref().unwrap().question.clone(), no_item.pair.as_ref().unwrap().answer.clone())),
    ] {
        let (p, f) = chat.pair(&question, &answer).unwrap();
        let ex = examples[doc.id as usize].as_ref().unwrap();
        let whole = tok.encode(&f).unwrap();
        let penc = tok.encode(&p).unwrap();
        assert_eq!(ex.tokens, whole, "doc {}: the rendering as it tokenises, no BOS added", doc.id);
        assert_eq!(*whole.last().unwrap(), eos, "the template ends the answer with EOS, which is not doubled");
        let masked: Vec<bool> = ex.loss_mask.iter().map(|m| *m != 0.0).collect();
        assert!(masked[..penc.len()].iter().all(|m| !m), "no loss on the prompt");
        assert!(masked[penc.len()..].iter().all(|m| *m), "loss on every answer token and EOS");
    }
    // Held-out documents are not trained on.
    assert!(w.splits.held_out_docs.iter().all(|&d| examples[d as usize].is_none()));

    // A model without a chat template: a clear error naming the folder.
    let bare = tmp.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::write(bare.join("tokenizer_config.json"), "{\"bos_token\": \"<s>\"}").unwrap();
    let e = format!("{:#}", ChatQa::for_world(&w, &bare).unwrap_err());
    assert!(e.contains("world.chat_template = true") && e.contains("bare"), "{e}");
    // chat_template is for the fine-tuning kinds; a system prompt needs the template.
    let e = format!(
        "{:#}",
        WorldConfig { chat_template: Some(true), ..WorldConfig::new(WorldKind::Facts) }.resolve(&data).unwrap_err()
    );
    assert!(e.contains("chat_template"), "{e}");
    let e = format!("{:#}", WorldConfig { chat_template: None, ..cfg.clone() }.resolve(&data).unwrap_err());
    assert!(e.contains("world.system_prompt is set but world.chat_template is not true"), "{e}");
}
