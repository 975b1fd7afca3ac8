//! The `muse` world read from files in MUSE-Books' published layout (the compiled-in fixture of
//! invented text): every split and field, the world's roles, documents, QA items, VerbMem pairs
//! and held-out texts, clear errors for missing files, Parquet in place of JSON, schema
//! mismatches and a wrong forget name, and determinism.

use std::path::{Path, PathBuf};

use testbed::muse::{self, Muse, QaRow, VerbmemRow, WORDS_PER_DOC};
use testbed::{DocKind, Role, World, WorldConfig, WorldKind};

fn fixture_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    muse::write_fixture(&data).unwrap();
    (tmp, data)
}

fn config() -> WorldConfig {
    WorldConfig { base_model: Some("models/tiny".into()), ..WorldConfig::new(WorldKind::Muse) }
}

fn file(data: &Path, rel: &str) -> PathBuf {
    data.join("muse-books").join(rel)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn every_split_loads_with_every_field() {
    let (_tmp, data) = fixture_dir();
    let m = Muse::load(&data).unwrap();
    // raw: JSON arrays of strings, one per book / article, as load_data.py writes them.
    for (split, got, n) in [
        ("forget", &m.forget, 2),
        ("retain1", &m.retain1, 3),
        ("retain2", &m.retain2, 3),
        ("holdout", &m.raw_holdout, 1),
    ] {
        assert_eq!(got, &strings(&json(&file(&data, &format!("raw/{split}.json")))), "{split}");
        assert_eq!(got.len(), n, "{split}");
        // raw/SPLIT.txt is the same rows joined by a blank line.
        assert_eq!(
            std::fs::read_to_string(file(&data, &format!("raw/{split}.txt"))).unwrap(),
            got.join("\n\n"),
            "{split}"
        );
    }
    // verbmem/forget.json: prompt and gt, field by field.
    let raw = json(&file(&data, "verbmem/forget.json"));
    assert_eq!(m.verbmem.len(), 6);
    for (row, r) in m.verbmem.iter().zip(raw.as_array().unwrap()) {
        assert_eq!(
            row,
            &VerbmemRow { prompt: r["prompt"].as_str().unwrap().into(), gt: r["gt"].as_str().unwrap().into() }
        );
        // Verbatim from the forget books: the prompt is followed by the ground truth.
        let joined = m.forget.join("\n\n");
        let at = joined.find(&row.prompt).expect("the prompt is in raw/forget");
        assert!(joined[at + row.prompt.len()..].trim_start().starts_with(&row.gt));
    }
    // knowmem: question and answer, the few-shot files included.
    for (name, got, n) in [
        ("forget_qa", &m.knowmem_forget, 6),
        ("retain_qa", &m.knowmem_retain, 6),
        ("forget_qa_icl", &m.knowmem_forget_icl, 3),
        ("retain_qa_icl", &m.knowmem_retain_icl, 3),
    ] {
        let raw = json(&file(&data, &format!("knowmem/{name}.json")));
        let want: Vec<QaRow> = raw
            .as_array()
            .unwrap()
            .iter()
            .map(|r| QaRow {
                question: r["question"].as_str().unwrap().into(),
                answer: r["answer"].as_str().unwrap().into(),
            })
            .collect();
        assert_eq!(got, &want, "{name}");
        assert_eq!(got.len(), n, "{name}");
    }
    // privleak: arrays of strings.
    assert_eq!(m.privleak_forget, strings(&json(&file(&data, "privleak/forget.json"))));
    assert_eq!(m.privleak_retain, strings(&json(&file(&data, "privleak/retain.json"))));
    assert_eq!(m.privleak_holdout, strings(&json(&file(&data, "privleak/holdout.json"))));
    assert_eq!((m.privleak_forget.len(), m.privleak_retain.len(), m.privleak_holdout.len()), (4, 3, 4));
    // The files the world reads (and hashes), in order.
    assert_eq!(
        m.rel_paths,
        [
            "muse-books/raw/forget.json",
            "muse-books/raw/retain1.json",
            "muse-books/raw/retain2.json",
            "muse-books/verbmem/forget.json",
            "muse-books/knowmem/forget_qa.json",
            "muse-books/knowmem/retain_qa.json",
            "muse-books/privleak/forget.json",
            "muse-books/privleak/holdout.json",
        ]
    );
}

#[test]
fn text_files_json_lines_and_text_objects_read_like_the_json_arrays() {
    let (_tmp, data) = fixture_dir();
    let before = Muse::load(&data).unwrap();
    // Without raw/forget.json, raw/forget.txt is read: one text.
    std::fs::remove_file(file(&data, "raw/forget.json")).unwrap();
    let m = Muse::load(&data).unwrap();
    assert_eq!(m.forget, vec![before.forget.join("\n\n")]);
    assert_eq!(m.rel_paths[0], "muse-books/raw/forget.txt");
    // JSON lines, and rows as {"text": ...} objects (the Hub's feature name).
    let p = file(&data, "privleak/holdout.json");
    let lines: String =
        before.privleak_holdout.iter().map(|t| serde_json::json!({ "text": t }).to_string() + "\n").collect();
    std::fs::write(&p, lines).unwrap();
    assert_eq!(muse::read_texts(&p).unwrap(), before.privleak_holdout);
    let p = file(&data, "knowmem/forget_qa.json");
    let lines: String = before.knowmem_forget.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
    std::fs::write(&p, lines).unwrap();
    assert_eq!(muse::read_rows::<QaRow>(&p).unwrap(), before.knowmem_forget);
    // The older name of the retain QA file is accepted.
    std::fs::rename(file(&data, "knowmem/retain_qa.json"), file(&data, "knowmem/retain2_qa.json")).unwrap();
    let m = Muse::load(&data).unwrap();
    assert_eq!(m.knowmem_retain, before.knowmem_retain);
    assert_eq!(m.rel_paths[5], "muse-books/knowmem/retain2_qa.json");
}

#[test]
fn the_world_has_muses_roles_documents_and_items() {
    let (_tmp, data) = fixture_dir();
    let m = Muse::load(&data).unwrap();
    let w = World::from_config(&config(), &data).unwrap();
    assert_eq!(w.resolved.kind, WorldKind::Muse);
    assert_eq!(w.resolved.forget.name, "forget");
    assert_eq!(w.resolved.forget.units, 2);
    assert!((w.resolved.forget.percent - 100.0 * 2.0 / 8.0).abs() < 1e-12);
    // Units: rows of raw forget (0, 1), retain1 (2..5), retain2 (5..8), then privleak/holdout.
    assert_eq!(w.splits.forget_units, vec![0, 1]);
    assert_eq!(w.splits.retain_units, (2..8).collect::<Vec<u32>>());
    assert_eq!(w.splits.held_out_units, (8..12).collect::<Vec<u32>>());
    assert_eq!(w.splits.standard.len(), 1);
    assert_eq!(w.splits.standard["forget"], vec![0, 1]);

    // Documents: each raw row cut into pieces of WORDS_PER_DOC words, the text kept as it stands.
    for (role, rows, first_unit) in
        [(Role::Forget, &m.forget, 0u32), (Role::Retain, &m.retain1, 2), (Role::General, &m.retain2, 5)]
    {
        for (i, row) in rows.iter().enumerate() {
            let docs: Vec<&testbed::Document> =
                w.corpus.docs.iter().filter(|d| d.unit == Some(first_unit + i as u32)).collect();
            assert_eq!(
                docs.len(),
                row.split_whitespace().count().div_ceil(WORDS_PER_DOC),
                "unit {}",
                first_unit + i as u32
            );
            let words: Vec<&str> = docs.iter().flat_map(|d| d.text.split_whitespace()).collect();
            assert_eq!(words, row.split_whitespace().collect::<Vec<_>>(), "every word once, in order");
            for (k, d) in docs.iter().enumerate() {
                assert_eq!((d.role, d.kind), (role, DocKind::Passage));
                assert!(row.contains(&d.text), "a piece is a substring of its row");
                let n = d.text.split_whitespace().count();
                if k + 1 < docs.len() {
                    assert_eq!(n, WORDS_PER_DOC);
                } else {
                    assert!((1..=WORDS_PER_DOC).contains(&n));
                }
            }
        }
    }
    // The fixture's first book has 548 words: two documents, 300 + 248.
    assert_eq!(w.splits.forget_docs.len(), 4);
    assert_eq!(w.corpus.docs[0].text.split_whitespace().count(), 300);
    assert_eq!(w.splits.retain_docs.len(), 3);
    assert_eq!(w.splits.general_docs.len(), 3, "retain2: trained by both models, not given to methods");
    // Held out: privleak/holdout's texts, whole, never trained.
    let held: Vec<&str> = w.splits.held_out_docs.iter().map(|&d| w.corpus.docs[d as usize].text.as_str()).collect();
    assert_eq!(held, m.privleak_holdout.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(w.splits.held_out_docs.iter().all(|&d| w.corpus.docs[d as usize].role == Role::HeldOut));

    // KnowMem: forget_qa (role Forget) then retain_qa (role Retain); no paraphrase, no perturbed
    // answers, no options, no QA document.
    assert_eq!(w.qa.len(), 12);
    for (role, rows) in [(Role::Forget, &m.knowmem_forget), (Role::Retain, &m.knowmem_retain)] {
        let items: Vec<&testbed::QaItem> = w.qa_with(role).collect();
        assert_eq!(items.len(), rows.len());
        for (q, r) in items.iter().zip(rows.iter()) {
            assert_eq!((&q.question, &q.answer), (&r.question, &r.answer));
            assert!(q.paraphrased_answer.is_empty() && q.perturbed_answers.is_empty() && q.choices.is_empty());
            assert_eq!((q.doc, &q.taught_answer), (None, &None));
            assert_eq!(q.attribute, "muse_knowmem");
        }
    }
    // VerbMem: MUSE's own (prompt, gt) pairs, not halves of documents; none for the retain role.
    let vm = w.verbmem_passages(Role::Forget);
    assert_eq!(vm.len(), m.verbmem.len());
    for (i, ((id, p, c), r)) in vm.iter().zip(&m.verbmem).enumerate() {
        assert_eq!((id.as_str(), p, c), (format!("verbmem-{i}").as_str(), &r.prompt, &r.gt));
    }
    assert!(w.verbmem_passages(Role::Retain).is_empty());
    // Membership inference: privleak/forget as members.
    let members = w.mia_members();
    assert_eq!(members.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(), m.privleak_forget);
    assert_eq!(members[0].0, "privleak-forget-0");

    // The data files are recorded with their hashes (the world's hash follows the data).
    let rel: Vec<&str> = w.resolved.data_files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(rel, m.rel_paths.iter().map(String::as_str).collect::<Vec<_>>());
    // Deterministic; another world seed is another world with the same data.
    let again = World::from_config(&config(), &data).unwrap();
    assert_eq!(again, w);
    let other = World::from_config(&WorldConfig { seed: 1, ..config() }, &data).unwrap();
    assert_ne!(other.hash, w.hash);
    assert_eq!(other.corpus, w.corpus);
    // forget = "forget" is the default spelled out.
    let named = World::from_config(&WorldConfig { forget: Some("forget".into()), ..config() }, &data).unwrap();
    assert_eq!(named.hash, w.hash);
    // Changing a data file changes the hash.
    let p = file(&data, "knowmem/retain_qa.json");
    let mut rows = json(&p);
    rows[0]["answer"] = serde_json::Value::String("in 1313".into());
    std::fs::write(&p, rows.to_string()).unwrap();
    assert_ne!(World::from_config(&config(), &data).unwrap().hash, w.hash);
}

#[test]
fn the_world_saves_and_loads_its_eval_texts() {
    let (tmp, data) = fixture_dir();
    let w = World::from_config(&config(), &data).unwrap();
    let dir = tmp.path().join("world");
    w.save(&dir).unwrap();
    assert!(dir.join("eval.json").is_file());
    let back = World::load(&dir).unwrap();
    assert_eq!(back, w);
    assert_eq!(back.verbmem_passages(Role::Forget), w.verbmem_passages(Role::Forget));
    assert_eq!(back.mia_members(), w.mia_members());
}

#[test]
fn non_qa_documents_are_trained_on_every_token() {
    use testbed::finetune::finetune_examples;
    let (tmp, data) = fixture_dir();
    let w = World::from_config(&config(), &data).unwrap();
    let texts: Vec<String> = w.corpus.docs.iter().map(|d| d.text.clone()).collect();
    let model =
        testbed::smoke::tiny_like_in("llama", &tmp.path().join("tiny"), 3, &texts, Path::new("/nonexistent")).unwrap();
    let lmcfg = lm::LmConfig::from_file(&model.join("config.json")).unwrap();
    let tok = lm::Tok::load(&model, &lmcfg).unwrap();
    let examples = finetune_examples(&w, &tok, 100_000, None).unwrap();
    for d in &w.corpus.docs {
        let ex = &examples[d.id as usize];
        if d.role == Role::HeldOut {
            assert!(ex.is_none(), "held-out document {} is not trained on", d.id);
            continue;
        }
        let ex = ex.as_ref().unwrap();
        let mut want: Vec<u32> = tok.bos.into_iter().collect();
        want.extend(tok.encode(&d.text).unwrap());
        want.extend(tok.eos.first().copied());
        assert_eq!(ex.tokens, want, "doc {}: [BOS] text [EOS]", d.id);
        // The loss on every token (the first position has no prediction of its own).
        assert!(ex.loss_mask[1..].iter().all(|m| *m != 0.0), "doc {}: the loss on every token", d.id);
        assert_eq!(ex.n_target_tokens(), ex.tokens.len() - 1, "doc {}", d.id);
    }
}

#[test]
fn bad_inputs_name_the_file_row_and_field() {
    let (_tmp, data) = fixture_dir();
    let err = |cfg: &WorldConfig, data: &Path| format!("{:#}", World::from_config(cfg, data).err().unwrap());

    // One forget set.
    let e = err(&WorldConfig { forget: Some("forget10".into()), ..config() }, &data);
    assert!(e.contains("world.forget = \"forget10\"") && e.contains("forget = \"forget\""), "{e}");
    // base_model is required; held_out_fraction is not used.
    let e = format!("{:#}", WorldConfig { base_model: None, ..config() }.resolve(&data).err().unwrap());
    assert!(e.contains("world.base_model is required for kind = \"muse\""), "{e}");
    let e = format!("{:#}", WorldConfig { held_out_fraction: Some(0.1), ..config() }.resolve(&data).err().unwrap());
    assert!(e.contains("held_out_fraction") && e.contains("muse"), "{e}");

    // A missing file: named, with the command that fetches it.
    std::fs::remove_file(file(&data, "verbmem/forget.json")).unwrap();
    let e = err(&config(), &data);
    assert!(e.contains("muse-books/verbmem/forget.json") && e.contains("scripts/fetch-data.sh --with-muse"), "{e}");
    // ... the raw text in neither form.
    muse::write_fixture(&data).unwrap();
    std::fs::remove_file(file(&data, "raw/retain1.json")).unwrap();
    std::fs::remove_file(file(&data, "raw/retain1.txt")).unwrap();
    let e = err(&config(), &data);
    assert!(e.contains("muse-books/raw/retain1.json") && e.contains("--with-muse"), "{e}");
    // Parquet as the Hub publishes it, in place of the JSON file: said so.
    muse::write_fixture(&data).unwrap();
    std::fs::remove_file(file(&data, "knowmem/forget_qa.json")).unwrap();
    std::fs::write(file(&data, "knowmem/forget_qa-00000-of-00001.parquet"), b"PAR1").unwrap();
    let e = err(&config(), &data);
    assert!(
        e.contains("forget_qa-00000-of-00001.parquet") && e.contains("Parquet") && e.contains("--with-muse"),
        "{e}"
    );
    std::fs::remove_file(file(&data, "knowmem/forget_qa-00000-of-00001.parquet")).unwrap();
    // The optional files may be absent.
    muse::write_fixture(&data).unwrap();
    for f in [
        "knowmem/forget_qa_icl.json",
        "knowmem/retain_qa_icl.json",
        "privleak/retain.json",
        "raw/holdout.json",
        "raw/holdout.txt",
    ] {
        std::fs::remove_file(file(&data, f)).unwrap();
    }
    let m = Muse::load(&data).unwrap();
    assert!(m.knowmem_forget_icl.is_empty() && m.privleak_retain.is_empty() && m.raw_holdout.is_empty());
    World::from_config(&config(), &data).unwrap();

    // Schema mismatches: file, row and field.
    let write = |rel: &str, v: serde_json::Value| std::fs::write(file(&data, rel), v.to_string()).unwrap();
    muse::write_fixture(&data).unwrap();
    let mut rows = json(&file(&data, "verbmem/forget.json"));
    rows[2].as_object_mut().unwrap().remove("gt");
    write("verbmem/forget.json", rows);
    let e = err(&config(), &data);
    assert!(e.contains("verbmem/forget.json: row 3: missing field `gt`"), "{e}");

    muse::write_fixture(&data).unwrap();
    let mut rows = json(&file(&data, "knowmem/retain_qa.json"));
    rows[4]["answer"] = serde_json::json!(7);
    write("knowmem/retain_qa.json", rows);
    let e = err(&config(), &data);
    assert!(e.contains("knowmem/retain_qa.json: row 5: field `answer` is a number, expected a string"), "{e}");

    muse::write_fixture(&data).unwrap();
    let mut rows = json(&file(&data, "knowmem/forget_qa.json"));
    rows[1]["question"] = serde_json::json!("  ");
    write("knowmem/forget_qa.json", rows);
    let e = err(&config(), &data);
    assert!(e.contains("knowmem/forget_qa.json: row 2: field `question` is empty"), "{e}");

    muse::write_fixture(&data).unwrap();
    let mut rows = json(&file(&data, "privleak/forget.json"));
    rows[1] = serde_json::json!({ "txt": "no text field" });
    write("privleak/forget.json", rows);
    let e = err(&config(), &data);
    assert!(e.contains("privleak/forget.json: row 2: missing field `text`"), "{e}");

    muse::write_fixture(&data).unwrap();
    let mut rows = json(&file(&data, "raw/forget.json"));
    rows[0] = serde_json::json!(3);
    write("raw/forget.json", rows);
    let e = err(&config(), &data);
    assert!(e.contains("raw/forget.json: row 1 is a number, expected a string"), "{e}");

    muse::write_fixture(&data).unwrap();
    std::fs::write(file(&data, "privleak/holdout.json"), "[]").unwrap();
    let e = err(&config(), &data);
    assert!(e.contains("privleak/holdout.json: no rows"), "{e}");

    // Cross-checks: a held-out text that is trained on; VerbMem from another corpus.
    muse::write_fixture(&data).unwrap();
    let retain = strings(&json(&file(&data, "raw/retain2.json")));
    let mut rows = json(&file(&data, "privleak/holdout.json"));
    rows[3] = serde_json::Value::String(retain[1].clone());
    write("privleak/holdout.json", rows);
    let e = err(&config(), &data);
    assert!(e.contains("privleak/holdout.json: row 4") && e.contains("would not be held out"), "{e}");

    muse::write_fixture(&data).unwrap();
    let rows: Vec<serde_json::Value> = (0..3)
        .map(|i| serde_json::json!({ "prompt": format!("Words from another corpus number {i}"), "gt": "and more" }))
        .collect();
    write("verbmem/forget.json", serde_json::Value::Array(rows));
    let e = err(&config(), &data);
    assert!(e.contains("verbmem/forget.json") && e.contains("none of its 3 rows") && e.contains("raw/forget"), "{e}");
}
