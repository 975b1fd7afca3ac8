//! The `restor` world read from files in RESTOR's published layout (the compiled-in fixture of
//! invented people): every file and field, the documents' entities, the world's roles, documents
//! and QA items, θ_D's and the oracle's training sets, clear errors for missing files, schema
//! mismatches and a wrong mix name, and determinism.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use testbed::finetune::{finetune_schedule, FinetuneSpec};
use testbed::restor::{self, Clean, Restor};
use testbed::{DocKind, Role, World, WorldConfig, WorldKind};

fn fixture_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    restor::write_fixture(&data).unwrap();
    (tmp, data)
}

fn config(mix: &str) -> WorldConfig {
    WorldConfig {
        forget: Some(mix.into()),
        base_model: Some("models/tiny".into()),
        ..WorldConfig::new(WorldKind::Restor)
    }
}

fn file(data: &Path, rel: &str) -> PathBuf {
    data.join("restor").join(rel)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_file_loads_with_every_field() {
    let (_tmp, data) = fixture_dir();
    let r = Restor::load(&data, "mix_a0").unwrap();
    // entities.json: the asked entities, in order.
    assert_eq!(r.entities, ["Orsolya Vantrell", "Keto Marambe", "Ludvik Osterhame", "Pell Carrow"]);
    // facts.json dset: every entity (asked or not), relation, question and answer, as published.
    let raw = json(&file(&data, "facts.json"));
    let dset = raw["dset"].as_object().unwrap();
    assert_eq!(r.facts.len(), dset.len());
    assert_eq!(r.facts.len(), 6);
    for (entity, facts) in &r.facts {
        let rels = dset[entity].as_object().unwrap();
        assert_eq!(facts.len(), rels.len(), "{entity}");
        for f in facts {
            assert_eq!(f.question, rels[&f.relation]["question"].as_str().unwrap());
            let answers: Vec<&str> =
                rels[&f.relation]["answers"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
            assert_eq!(f.answers, answers);
        }
    }
    // The mix: every row, in order; the entity named first, and the renamed document (row 9,
    // "Keto Marumbi") counted with the document before it.
    let rows = json(&file(&data, "wikidata/v0/mix_a0.json"));
    let rows = rows.as_array().unwrap();
    assert_eq!(r.docs.len(), rows.len());
    assert_eq!(r.docs.len(), 12);
    for (d, row) in r.docs.iter().zip(rows) {
        assert_eq!(d.text, row["text"].as_str().unwrap());
    }
    let entities: Vec<usize> = r.docs.iter().map(|d| d.entity).collect();
    assert_eq!(entities, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert!(!r.docs[8].text.contains("Keto Marambe"));
    assert_eq!(r.corrupted, [0, 1]);
    // The asked facts: bare Wikidata ids dropped, several answers joined.
    let asked: Vec<(String, String)> = r.questions(0).map(|(f, a)| (f.relation.clone(), a)).collect();
    assert!(asked.contains(&("P39".into(), "Keeper of the Velmarian Charts".into())), "{asked:?}");
    assert!(asked.contains(&("P106".into(), "cartographer; glassblower".into())), "{asked:?}");
    assert_eq!(asked.len(), 5);
    // mix_a1: the same documents with unrelated facts mixed in, the same entities.
    let r1 = Restor::load(&data, "mix_a1").unwrap();
    assert_eq!(r1.docs.iter().map(|d| d.entity).collect::<Vec<_>>(), entities);
    for (a, b) in r.docs.iter().zip(&r1.docs) {
        assert!(b.text.starts_with(&a.text) && b.text.len() > a.text.len());
    }
    // The clean data: TOFU's fixture, every author, the retain_perturbed rows asked.
    let c = Clean::load(&data).unwrap();
    assert_eq!(c.n_authors, 10);
    assert_eq!(c.pairs.len(), 200);
    assert_eq!(c.pairs.iter().filter(|p| p.eval.is_some()).count(), 20);
}

#[test]
fn the_world_trains_corruption_only_into_theta_d_and_clean_data_into_both() {
    let (_tmp, data) = fixture_dir();
    let mut w = World::from_config(&config("mix_a0"), &data).unwrap();
    assert_eq!(w.resolved.kind, WorldKind::Restor);
    // Units: TOFU's 10 authors (clean), then the 2 corrupted entities.
    assert_eq!(w.splits.forget_units, [10, 11]);
    assert_eq!(w.splits.retain_units, (0..10).collect::<Vec<u32>>());
    assert!(w.splits.held_out_units.is_empty() && w.splits.held_out_docs.is_empty());
    assert_eq!(w.splits.standard["mix_a0"], [10, 11]);
    assert_eq!(w.resolved.forget.units, 2);
    assert!((w.resolved.forget.percent - 100.0 * 12.0 / 212.0).abs() < 1e-12);
    // Forget documents: the mix's rows, raw text (trained on every token), with their entity.
    assert_eq!(w.splits.forget_docs.len(), 12);
    let mix = Restor::load(&data, "mix_a0").unwrap();
    for (&id, d) in w.splits.forget_docs.iter().zip(&mix.docs) {
        let doc = &w.corpus.docs[id as usize];
        assert_eq!((doc.role, doc.kind, &doc.text), (Role::Forget, DocKind::Passage, &d.text));
        assert_eq!(doc.unit, Some(10 + d.entity as u32));
    }
    // Clean documents: TOFU's 200 pairs in the QA format, role Retain.
    assert_eq!(w.splits.retain_docs.len(), 200);
    assert!(w.splits.retain_docs.iter().all(|&id| w.corpus.docs[id as usize].kind == DocKind::Qa));
    assert!(w.splits.general_docs.is_empty());
    // θ_D trains on both, the oracle on the clean documents only, in the same order.
    let s = finetune_schedule(&w, &FinetuneSpec::default()).unwrap();
    w.ledger = Some(s.ledger());
    w.schedule = Some(s);
    let seen = |batches: &[Vec<u32>]| batches.iter().flatten().copied().collect::<BTreeSet<u32>>();
    let theta_d = seen(&w.schedule.as_ref().unwrap().batches);
    let oracle_schedule = w.oracle_schedule().unwrap();
    let oracle = seen(&oracle_schedule.batches);
    let forget: BTreeSet<u32> = w.splits.forget_docs.iter().copied().collect();
    let retain: BTreeSet<u32> = w.splits.retain_docs.iter().copied().collect();
    assert_eq!(theta_d, forget.union(&retain).copied().collect());
    assert_eq!(oracle, retain);
    assert!(oracle.is_disjoint(&forget));
    // QA items: TOFU's 20 retain questions, then the corrupted entities' facts (5 + 4).
    let retain_qa: Vec<_> = w.qa_with(Role::Retain).collect();
    assert_eq!(retain_qa.len(), 20);
    assert!(retain_qa.iter().all(|q| q.perturbed_answers.len() == 5 && q.doc.is_some()));
    let forget_qa: Vec<_> = w.qa_with(Role::Forget).collect();
    assert_eq!(forget_qa.len(), 9);
    for q in &forget_qa {
        assert!(q.doc.is_none(), "the facts are asked, not trained");
        assert!(q.paraphrased_answer.is_empty() && q.perturbed_answers.is_empty() && q.choices.is_empty());
        assert!(q.attribute.starts_with("restor/P"), "{}", q.attribute);
        assert!(q.unit == 10 || q.unit == 11);
    }
    let q = forget_qa.iter().find(|q| q.question == "What is the occupation of Keto Marambe?").unwrap();
    assert_eq!((q.answer.as_str(), q.unit), ("ferry captain", 11));
    // Asked after RESTOR's official in-context prefix (evaluation/eval_utils.py `get_context`):
    // the first five examples of the relation about someone else, one "question answer" line
    // each, then the question itself, raw.
    let keto_p106 = "What is the occupation of Orsolya Vantrell? cartographer\n\
                     What is the occupation of Ludvik Osterhame? composer\n\
                     What is the occupation of Pell Carrow? beekeeper\n\
                     What is the occupation of Idris Fennimore? astronomer\n\
                     What is the occupation of Marta Quellen? bridge engineer\n";
    assert_eq!(q.in_context.as_deref(), Some(keto_p106));
    assert_eq!(q.prompt(), format!("{keto_p106}What is the occupation of Keto Marambe?"));
    // Every forget item, against get_context ported line by line over the raw JSON (fewer than
    // five examples where the relation has fewer about others).
    let raw = json(&file(&data, "facts.json"));
    let mut short = 0;
    for q in &forget_qa {
        let relation = q.attribute.strip_prefix("restor/").unwrap();
        let entity = raw["dset"].as_object().unwrap().keys().find(|e| q.question.contains(e.as_str())).unwrap();
        let mut expected = String::new();
        let mut left = 5;
        for entry in raw["context"][relation].as_array().unwrap() {
            if entry["entity"] == entity.as_str() {
                continue;
            }
            expected += &format!("{} {}\n", entry["question"].as_str().unwrap(), entry["answer"].as_str().unwrap());
            left -= 1;
            if left == 0 {
                break;
            }
        }
        short += usize::from(left > 0);
        assert_eq!(q.in_context.as_deref(), Some(expected.as_str()), "{}", q.question);
    }
    assert!(short > 0, "the fixture asks a relation with fewer than five examples about others");
    assert!(retain_qa.iter().all(|q| q.in_context.is_none()), "TOFU's questions keep the QA template");
    // The data files are recorded with their hashes.
    let rel: Vec<&str> = w.resolved.data_files.iter().map(|f| f.rel_path.as_str()).collect();
    assert_eq!(
        rel,
        [
            "restor/facts.json",
            "restor/entities.json",
            "restor/wikidata/v0/mix_a0.json",
            "tofu/full.json",
            "tofu/retain_perturbed.json"
        ]
    );
    // Deterministic; another mix is another world with the same units.
    let again = World::from_config(&config("mix_a0"), &data).unwrap();
    assert_eq!((&again.corpus, &again.qa, &again.splits), (&w.corpus, &w.qa, &w.splits));
    let a1 = World::from_config(&config("mix_a1"), &data).unwrap();
    assert_ne!(a1.hash, w.hash);
    assert_eq!(a1.splits.forget_units, w.splits.forget_units);
    // Unset, the mix is mix_a0.
    let unset = WorldConfig { forget: None, ..config("mix_a0") };
    assert_eq!(unset.resolve(&data).unwrap().hash(), w.resolved.hash());
}

#[test]
fn bad_inputs_name_the_file_row_and_field() {
    let (_tmp, data) = fixture_dir();
    let err = |data: &Path, mix: &str| format!("{:#}", World::from_config(&config(mix), data).err().unwrap());

    // An unknown mix, and the required base model.
    let e = err(&data, "forget10");
    assert!(e.contains("forget10") && e.contains("mix_a0, mix_a1"), "{e}");
    let e = format!("{:#}", WorldConfig { base_model: None, ..config("mix_a0") }.resolve(&data).err().unwrap());
    assert!(e.contains("world.base_model is required for kind = \"restor\""), "{e}");
    let e =
        format!("{:#}", WorldConfig { held_out_fraction: Some(0.1), ..config("mix_a0") }.resolve(&data).err().unwrap());
    assert!(e.contains("world.held_out_fraction is not used by kind = \"restor\""), "{e}");

    // A mix that is published but not fetched: named, with the command that fetches it.
    let e = err(&data, "mix_a3");
    assert!(e.contains("restor/wikidata/v0/mix_a3.json") && e.contains("scripts/fetch-data.sh --with-restor"), "{e}");

    let mix = file(&data, "wikidata/v0/mix_a0.json");
    let facts = file(&data, "facts.json");
    let entities = file(&data, "entities.json");
    // The fixture's version of a file (every other file restored too).
    let original = |p: &Path| {
        restor::write_fixture(&data).unwrap();
        json(p)
    };
    let with = |p: &Path, v: &serde_json::Value| std::fs::write(p, serde_json::to_string(v).unwrap()).unwrap();

    // A mix row without `text`: file, row (1-based) and field.
    let mut v = original(&mix);
    v[2] = serde_json::json!({"txt": "Orsolya Vantrell is a lighthouse keeper."});
    with(&mix, &v);
    let e = err(&data, "mix_a0");
    assert!(e.contains("mix_a0.json: row 3: missing field `text`"), "{e}");
    // A row that is not an object, and an empty text.
    v[2] = serde_json::json!("Orsolya Vantrell");
    with(&mix, &v);
    assert!(err(&data, "mix_a0").contains("row 3 is a string, expected an object with the field `text`"));
    v[2] = serde_json::json!({"text": "  "});
    with(&mix, &v);
    assert!(err(&data, "mix_a0").contains("row 3: field `text` is empty"));
    // A first document naming no entity.
    restor::write_fixture(&data).unwrap();
    let mut v = original(&mix);
    v[0] = serde_json::json!({"text": "Someone unknown keeps a lighthouse."});
    with(&mix, &v);
    let e = err(&data, "mix_a0");
    assert!(e.contains("mix_a0.json: row 1: field `text` names no entity of") && e.contains("entities.json"), "{e}");
    // write_fixture rewrites every file whose bytes differ from the fixture's.
    restor::write_fixture(&data).unwrap();

    // facts.json: a relation whose answers are not a list, a missing question, no dset.
    let mut v = original(&facts);
    v["dset"]["Keto Marambe"]["P19"]["answers"] = serde_json::json!("Dunmarrow");
    with(&facts, &v);
    let e = err(&data, "mix_a0");
    assert!(
        e.contains("facts.json: dset[\"Keto Marambe\"][\"P19\"]: field `answers` is a string, expected a list"),
        "{e}"
    );
    let mut v = original(&facts);
    v["dset"]["Keto Marambe"]["P19"].as_object_mut().unwrap().remove("question");
    with(&facts, &v);
    assert!(err(&data, "mix_a0").contains("dset[\"Keto Marambe\"][\"P19\"]: missing field `question`"));
    let mut v = original(&facts);
    v["dset"]["Keto Marambe"]["P19"]["answers"] = serde_json::json!(["Dunmarrow", 7]);
    with(&facts, &v);
    assert!(err(&data, "mix_a0").contains("field `answers`[1] is a number, expected a string"));
    let mut v = original(&facts);
    v["context"]["P27"][0].as_object_mut().unwrap().remove("entity");
    with(&facts, &v);
    assert!(err(&data, "mix_a0").contains("facts.json: context[\"P27\"] row 1: missing field `entity`"));
    // An asked relation without in-context examples: the official prompt cannot be built.
    let mut v = original(&facts);
    v["context"].as_object_mut().unwrap().remove("P106");
    with(&facts, &v);
    let e = err(&data, "mix_a0");
    assert!(
        e.contains("facts.json: dset[\"Orsolya Vantrell\"][\"P106\"] is asked, but field `context` has no examples for the relation \"P106\""),
        "{e}"
    );
    let mut v = original(&facts);
    v.as_object_mut().unwrap().remove("dset");
    with(&facts, &v);
    assert!(err(&data, "mix_a0").contains("facts.json: missing field `dset`"));
    // A corrupted entity whose every answer is a bare Wikidata id.
    let mut v = original(&facts);
    for rel in v["dset"]["Keto Marambe"].as_object_mut().unwrap().values_mut() {
        rel["answers"] = serde_json::json!(["Q1"]);
    }
    with(&facts, &v);
    assert!(err(&data, "mix_a0").contains("dset[\"Keto Marambe\"]: no relation has an answer"));
    restor::write_fixture(&data).unwrap();

    // entities.json: an entity without facts, a repeated one.
    let mut v = original(&entities);
    v[3] = serde_json::json!("Nobody Atall");
    with(&entities, &v);
    let e = err(&data, "mix_a0");
    assert!(e.contains("entities.json: row 4: the entity \"Nobody Atall\" has no facts in"), "{e}");
    v[3] = serde_json::json!("Orsolya Vantrell");
    with(&entities, &v);
    assert!(err(&data, "mix_a0").contains("entities.json: row 4 repeats the entity \"Orsolya Vantrell\" of row 1"));
    restor::write_fixture(&data).unwrap();
    World::from_config(&config("mix_a0"), &data).unwrap();

    // The clean data (TOFU) missing: named, with the command.
    std::fs::remove_file(data.join("tofu/retain_perturbed.json")).unwrap();
    let e = err(&data, "mix_a0");
    assert!(e.contains("tofu/retain_perturbed.json") && e.contains("--with-restor"), "{e}");
}
