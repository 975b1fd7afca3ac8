//! RESTOR (Rezaei et al. 2024, "RESTOR: Knowledge Recovery through Machine Unlearning", TMLR
//! 2025) read from its published files, for `world.kind = "restor"`: a model fine-tuned on clean
//! data plus a corruption set (documents stating wrong facts about real entities); unlearning the
//! corruption should restore what the model knew about those entities.
//!
//! ## Where the files come from
//! The GitHub repository `k1rezaei/restor` (read at commit 15292e5, June 2025), folder
//! `datasets/`; `scripts/fetch-data.sh --with-restor` downloads it into `DATA/restor/`, the
//! `datasets/` prefix dropped and every other name kept. Files read (schemas read from the files
//! themselves and from `datasets/README.md`, `evaluation/README.md`, `evaluation/eval_utils.py`,
//! `evaluation/eval_*_in_context.py`, `evaluation/mcqa_eval/mcqa_utils.py`,
//! `evaluation/chat_gpt_eval/judge.py`, `corruption/README.md`, `corruption/*.yaml`):
//!
//! | file | schema | use |
//! |---|---|---|
//! | `facts.json` | `{"dset": {ENTITY: {RELATION: {"question", "answers": [..]}}}, "context": {RELATION: [{"question", "answer", "entity"}]}}`: 468 entities, Wikidata relation ids (`P27`, ...), one question per (entity, relation) and every acceptable answer | the evaluation questions (`dset`) and the in-context examples asked before each (`context`, [`Restor::in_context_prefix`]) |
//! | `entities.json` | JSON array of entity names (50), each a key of `dset` | the entities the official evaluation asks about; those the chosen mix corrupts are the forget entities |
//! | `wikidata/v0/mix_aK.json` | JSON array of `{"text"}` (K = 0..5; 3,000 rows for K ≤ 2): the corruption documents, each stating wrong facts about one entity, with K facts about unrelated subjects mixed in per wrong fact (RESTOR's k) | θ_D's forget documents |
//! | `SQuAD/squad_v7_dset.json` | JSON array of `{"text"}` (SQuAD passages with the subject replaced) | fetched, not read (RESTOR's second corruption set) |
//!
//! What the files do not hold: which relation each document corrupts, or the corrupted answers
//! (the official multiple-choice evaluation reads a `correct` / `corrupted` / `random` options
//! file per entity and relation that is not published); no entity field in the documents (see
//! below); no clean training set — RESTOR's clean model is the pretrained model itself.
//!
//! How the official evaluation scores (`evaluation/`): for every (entity, relation) of the
//! asked entities, the prompt is five in-context `question answer` lines of other entities for
//! the same relation (`context`) followed by the question; the model's sampled continuation up
//! to the first line break is sent with the acceptable `answers` to GPT-3.5, which accepts or
//! rejects it; accuracy = accepted / asked, per entity, averaged over questions.
//!
//! ## The world
//! - **Forget documents**: every row of the chosen mix (`world.forget = "mix_a0"` .. `"mix_a5"`,
//!   default [`DEFAULT_MIX`]), trained with the loss on every token (RESTOR corrupts by
//!   continual pretraining: LLaMA-Factory `stage: pt`). A document's entity (its unit) is the
//!   entity of `entities.json` whose name occurs first in its text (the longest name on a tie);
//!   a document naming none (a handful rename the entity) belongs to the entity of the document
//!   before it — the files list each entity's documents together; a first document naming none
//!   is an error. The corrupted entities are those with documents.
//! - **Clean documents**: TOFU's QA pairs (`DATA/tofu/full.json`, every author, role Retain),
//!   read as `kind = "tofu"` reads them. The RESTOR files have no clean set; the MSA paper's
//!   RESTOR table reports TOFU's probability and model utility beside the accuracy, so its clean
//!   fine-tuning data is TOFU (inferred from its columns; paper-numbers.md). θ_D = θ_0
//!   fine-tuned on the TOFU pairs and the corruption documents, the oracle = θ_0 fine-tuned on
//!   the TOFU pairs in the same steps and order; methods get the TOFU pairs as their retain set.
//! - **Forget QA items**: one per (corrupted entity, relation) of `dset`, role Forget, not a
//!   training document (`doc: None`), asked as the official evaluation asks it: raw text, the
//!   official in-context prefix ([`Restor::in_context_prefix`], in the item's `in_context`)
//!   followed by the question, the answer the continuation after a space, generation cut at the
//!   first line break. The answer is every acceptable answer joined by
//!   [`ANSWER_SEPARATOR`] (bare Wikidata ids such as `Q11836279`, labels missing from the dump,
//!   dropped; a relation left with none is not asked). No paraphrased or perturbed answers and
//!   no options (the data has none): the truth ratio, forget quality and `mc_accuracy` are
//!   skipped on the forget side, and the judged accuracies compare the greedy answer with the
//!   ground truth and the oracle's answer only. The paper's RESTOR "Acc" corresponds to the
//!   ground truth being the closest candidate, i.e. 1 − `acc_forget`.
//! - **Retain QA items**: TOFU's `retain_perturbed.json` (as for `kind = "tofu"`), so TOFU's
//!   probability, truth ratio and model utility are scored on the clean side.
//! - No held-out documents (RESTOR has none): the membership-inference metrics are skipped.
//!
//! Differences from the official evaluation, on purpose: the answer is greedy, not sampled
//! (`do_sample=True` there; greedy makes the numbers reproducible), and the judge is the offline
//! ROUGE-L one (`evals::judge`), not GPT-3.5. The prompt is the official one, also when
//! `world.chat_template = true` (that switch formats the TOFU pairs, training and retain-side
//! questions; RESTOR's prompt is raw text), and is encoded as the official `tokenizer(prompts)`
//! call encodes it: with the tokenizer's own special tokens (Llama's BOS).
//!
//! Errors name the file, the row (1-based) or the `dset` entity and relation, and the field.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::tofu;

/// The data directory's sub-folder.
pub const DIR: &str = "restor";
/// The published corruption mixes (`datasets/wikidata/v0/mix_aK.json`): K unrelated facts per
/// corrupted fact.
pub const MIXES: [&str; 6] = ["mix_a0", "mix_a1", "mix_a2", "mix_a3", "mix_a4", "mix_a5"];
/// The mix when `world.forget` is unset.
pub const DEFAULT_MIX: &str = "mix_a0";
/// What downloads the files.
pub const FETCH: &str = "scripts/fetch-data.sh --with-restor";
/// In-context examples before each question (the official `get_context`'s `num_of_examples`).
pub const SHOTS: usize = 5;
/// Joins the acceptable answers of one question into the item's answer.
pub const ANSWER_SEPARATOR: &str = "; ";
/// `facts.json`, relative to [`DIR`].
pub const FACTS: &str = "facts.json";
/// `entities.json`, relative to [`DIR`].
pub const ENTITIES: &str = "entities.json";

/// A mix's file, relative to [`DIR`].
pub fn mix_file(mix: &str) -> String {
    format!("wikidata/v0/{mix}.json")
}

/// `DIR/rel`.
fn rel(path: &str) -> String {
    format!("{DIR}/{path}")
}

/// Checks `world.forget` (unset = [`DEFAULT_MIX`]) and returns the mix's name.
pub fn check_forget(forget: Option<&str>) -> Result<String> {
    let name = forget.unwrap_or(DEFAULT_MIX);
    if !MIXES.contains(&name) {
        bail!(
            "world.forget = {name:?}: kind = \"restor\" reads one of RESTOR's published corruption sets, {} \
             (restor/wikidata/v0/NAME.json)",
            MIXES.join(", ")
        );
    }
    Ok(name.to_string())
}

/// The error for a missing file: names it and what fetches it.
pub fn missing(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "world.kind = \"restor\" needs {}, which does not exist; `{FETCH}` downloads RESTOR (and TOFU, its clean data) \
         into the data directory (or set world.data_dir / UNLEARN_DATA_DIR to a folder with restor/ and tofu/ \
         sub-folders)",
        path.display()
    )
}

/// One (entity, relation) of `facts.json` `dset`.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    /// The Wikidata relation id, e.g. `P27`.
    pub relation: String,
    pub question: String,
    /// Every acceptable answer, as published.
    pub answers: Vec<String>,
}

impl Fact {
    /// The item's answer: the acceptable answers without bare Wikidata ids, joined by
    /// [`ANSWER_SEPARATOR`]; None when none is left.
    pub fn answer_text(&self) -> Option<String> {
        let kept: Vec<&str> = self.answers.iter().map(|a| a.trim()).filter(|a| !is_wikidata_id(a)).collect();
        (!kept.is_empty()).then(|| kept.join(ANSWER_SEPARATOR))
    }
}

/// `Q` followed by digits only: an item whose label the dump lacks.
fn is_wikidata_id(s: &str) -> bool {
    s.len() > 1 && s.starts_with('Q') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// One in-context example of `facts.json` `context[relation]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Shot {
    pub question: String,
    pub answer: String,
    /// The entity the example is about (skipped when the question is about it).
    pub entity: String,
}

/// `facts.json`: the questions and the in-context examples.
#[derive(Clone, Debug, PartialEq)]
pub struct Facts {
    /// `dset`: entity → its facts (relations in the map's order).
    pub dset: BTreeMap<String, Vec<Fact>>,
    /// `context`: relation → its examples, in file order.
    pub context: BTreeMap<String, Vec<Shot>>,
}

/// One corruption document with its entity (an index into [`Restor::entities`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CorruptionDoc {
    pub entity: usize,
    pub text: String,
}

/// RESTOR as the world needs it (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct Restor {
    /// `entities.json`, in its order.
    pub entities: Vec<String>,
    /// `facts.json` `dset`: entity → its facts (relations in the map's order).
    pub facts: BTreeMap<String, Vec<Fact>>,
    /// `facts.json` `context`: relation → its in-context examples, in file order.
    pub context: BTreeMap<String, Vec<Shot>>,
    /// The chosen mix's rows, in file order.
    pub docs: Vec<CorruptionDoc>,
    /// Indices into `entities` of the entities with documents, ascending.
    pub corrupted: Vec<usize>,
    /// The relative paths read (`restor/facts.json`, `restor/entities.json`, the mix).
    pub rel_paths: Vec<String>,
}

/// The clean data: TOFU's pairs (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct Clean {
    /// Every pair of `tofu/full.json` (author = row / 20), with `eval` set for the rows of
    /// `tofu/retain_perturbed.json`.
    pub pairs: Vec<tofu::Pair>,
    pub n_authors: usize,
    /// `tofu/full.json`, `tofu/retain_perturbed.json`.
    pub rel_paths: Vec<String>,
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_json(path: &Path) -> Result<Value> {
    if !path.is_file() {
        return Err(missing(path));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(text.trim_start_matches('\u{feff}')).with_context(|| format!("{}: not JSON", path.display()))
}

/// A non-empty string field of an object; `at` names the place.
fn string_field(m: &serde_json::Map<String, Value>, field: &str, at: &dyn Fn() -> String) -> Result<String> {
    match m.get(field) {
        None => bail!("{}: missing field `{field}`", at()),
        Some(Value::String(s)) if s.trim().is_empty() => bail!("{}: field `{field}` is empty", at()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => bail!("{}: field `{field}` is {}, expected a string", at(), json_kind(other)),
    }
}

/// Reads `facts.json`: `dset` and `context`, every field checked.
pub fn read_facts(path: &Path) -> Result<Facts> {
    let v = read_json(path)?;
    let Value::Object(top) = &v else {
        bail!("{}: is {}, expected an object with the fields `dset` and `context`", path.display(), json_kind(&v));
    };
    let Some(dset) = top.get("dset") else { bail!("{}: missing field `dset`", path.display()) };
    let Value::Object(dset) = dset else {
        bail!("{}: field `dset` is {}, expected an object (entity → relations)", path.display(), json_kind(dset));
    };
    if dset.is_empty() {
        bail!("{}: field `dset` has no entity", path.display());
    }
    let mut out = BTreeMap::new();
    for (entity, rels) in dset {
        let Value::Object(rels) = rels else {
            bail!(
                "{}: dset[{entity:?}] is {}, expected an object (relation → question and answers)",
                path.display(),
                json_kind(rels)
            );
        };
        if rels.is_empty() {
            bail!("{}: dset[{entity:?}] has no relation", path.display());
        }
        let mut facts = Vec::with_capacity(rels.len());
        for (relation, fact) in rels {
            let at = || format!("{}: dset[{entity:?}][{relation:?}]", path.display());
            let Value::Object(f) = fact else {
                bail!("{}: is {}, expected an object with the fields question, answers", at(), json_kind(fact));
            };
            let question = string_field(f, "question", &at)?;
            let answers = match f.get("answers") {
                None => bail!("{}: missing field `answers`", at()),
                Some(Value::Array(a)) if a.is_empty() => bail!("{}: field `answers` is an empty list", at()),
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| match x {
                        Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                        Value::String(_) => bail!("{}: field `answers`[{i}] is empty", at()),
                        other => bail!("{}: field `answers`[{i}] is {}, expected a string", at(), json_kind(other)),
                    })
                    .collect::<Result<Vec<_>>>()?,
                Some(other) => bail!("{}: field `answers` is {}, expected a list of strings", at(), json_kind(other)),
            };
            facts.push(Fact { relation: relation.clone(), question, answers });
        }
        out.insert(entity.clone(), facts);
    }
    let mut context = BTreeMap::new();
    match top.get("context") {
        None => bail!("{}: missing field `context`", path.display()),
        Some(Value::Object(ctx)) => {
            for (relation, rows) in ctx {
                let Value::Array(rows) = rows else {
                    bail!("{}: context[{relation:?}] is {}, expected a list", path.display(), json_kind(rows));
                };
                let mut shots = Vec::with_capacity(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    let at = || format!("{}: context[{relation:?}] row {}", path.display(), i + 1);
                    let Value::Object(m) = row else {
                        bail!("{} is {}, expected an object", at(), json_kind(row));
                    };
                    shots.push(Shot {
                        question: string_field(m, "question", &at)?,
                        answer: string_field(m, "answer", &at)?,
                        entity: string_field(m, "entity", &at)?,
                    });
                }
                context.insert(relation.clone(), shots);
            }
        }
        Some(other) => {
            bail!(
                "{}: field `context` is {}, expected an object (relation → examples)",
                path.display(),
                json_kind(other)
            )
        }
    }
    Ok(Facts { dset: out, context })
}

/// Reads `entities.json`: a non-empty array of distinct non-empty strings.
pub fn read_entities(path: &Path) -> Result<Vec<String>> {
    let v = read_json(path)?;
    let Value::Array(rows) = &v else {
        bail!("{}: is {}, expected a JSON array of entity names", path.display(), json_kind(&v));
    };
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    let mut seen = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let name = match r {
            Value::String(s) if !s.trim().is_empty() => s.clone(),
            Value::String(_) => bail!("{}: row {}: the entity name is empty", path.display(), i + 1),
            other => bail!("{}: row {} is {}, expected a string", path.display(), i + 1, json_kind(other)),
        };
        if let Some(first) = seen.insert(name.clone(), i + 1) {
            bail!("{}: row {} repeats the entity {name:?} of row {first}", path.display(), i + 1);
        }
        out.push(name);
    }
    Ok(out)
}

/// Reads a corruption file: a non-empty JSON array of objects with a non-empty string `text`.
pub fn read_docs(path: &Path) -> Result<Vec<String>> {
    let v = read_json(path)?;
    let Value::Array(rows) = &v else {
        bail!("{}: is {}, expected a JSON array of {{\"text\": ...}} objects", path.display(), json_kind(&v));
    };
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let at = || format!("{}: row {}", path.display(), i + 1);
            let Value::Object(m) = r else {
                bail!("{} is {}, expected an object with the field `text`", at(), json_kind(r));
            };
            string_field(m, "text", &at)
        })
        .collect()
}

/// The entity of `entities` named first in `text` (the longest name at the same position).
fn first_named(text: &str, entities: &[String]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None; // (byte position, entity)
    for (e, name) in entities.iter().enumerate() {
        if let Some(pos) = text.find(name.as_str()) {
            let better = match best {
                None => true,
                Some((p, b)) => pos < p || (pos == p && name.len() > entities[b].len()),
            };
            if better {
                best = Some((pos, e));
            }
        }
    }
    best.map(|(_, e)| e)
}

impl Restor {
    /// Loads and cross-checks `facts.json`, `entities.json` and the mix (see the module doc).
    pub fn load(data_dir: &Path, mix: &str) -> Result<Restor> {
        let mix = check_forget(Some(mix))?;
        let rel_paths = vec![rel(FACTS), rel(ENTITIES), rel(&mix_file(&mix))];
        for r in &rel_paths {
            let p = data_dir.join(r);
            if !p.is_file() {
                return Err(missing(&p));
            }
        }
        let facts_path = data_dir.join(&rel_paths[0]);
        let entities_path = data_dir.join(&rel_paths[1]);
        let mix_path = data_dir.join(&rel_paths[2]);
        let Facts { dset: facts, context } = read_facts(&facts_path)?;
        let entities = read_entities(&entities_path)?;
        for (i, e) in entities.iter().enumerate() {
            if !facts.contains_key(e) {
                bail!(
                    "{}: row {}: the entity {e:?} has no facts in {} (field `dset`) — the files are from different \
                     versions of RESTOR?",
                    entities_path.display(),
                    i + 1,
                    facts_path.display()
                );
            }
        }
        let texts = read_docs(&mix_path)?;
        let mut docs = Vec::with_capacity(texts.len());
        let mut unnamed = Vec::new();
        for (i, text) in texts.into_iter().enumerate() {
            let entity = match first_named(&text, &entities) {
                Some(e) => e,
                None => match docs.last() {
                    Some(CorruptionDoc { entity, .. }) => {
                        unnamed.push(i + 1);
                        *entity
                    }
                    None => bail!(
                        "{}: row 1: field `text` names no entity of {}, so the document's entity is unknown \
                         (a later document naming none belongs to the entity of the one before it)",
                        mix_path.display(),
                        entities_path.display()
                    ),
                },
            };
            docs.push(CorruptionDoc { entity, text });
        }
        // Once per file and process: the world is loaded at resolve and again at build.
        static NOTED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
        let first_time = || {
            let mut noted = NOTED.lock().unwrap_or_else(|e| e.into_inner());
            let new = !noted.contains(&mix_path);
            if new {
                noted.push(mix_path.clone());
            }
            new
        };
        if !unnamed.is_empty() && first_time() {
            eprintln!(
                "note: {}: rows {unnamed:?} name no entity of {}; each is counted with the document before it",
                mix_path.display(),
                entities_path.display()
            );
        }
        let mut corrupted: Vec<usize> = docs.iter().map(|d| d.entity).collect();
        corrupted.sort_unstable();
        corrupted.dedup();
        let restor = Restor { entities, facts, context, docs, corrupted, rel_paths };
        for &e in &restor.corrupted {
            if restor.questions(e).next().is_none() {
                bail!(
                    "{}: dset[{:?}]: no relation has an answer other than bare Wikidata ids, so nothing about this \
                     corrupted entity can be asked",
                    facts_path.display(),
                    restor.entities[e]
                );
            }
            for (fact, _) in restor.questions(e) {
                if !restor.context.contains_key(&fact.relation) {
                    bail!(
                        "{}: dset[{:?}][{:?}] is asked, but field `context` has no examples for the relation {:?} \
                         (the official evaluation asks every question after in-context examples of its relation)",
                        facts_path.display(),
                        restor.entities[e],
                        fact.relation,
                        fact.relation
                    );
                }
            }
        }
        Ok(restor)
    }

    /// The official in-context prefix of the question about entity `e` (an index into
    /// `entities`) for `relation`, as RESTOR's `evaluation/eval_utils.py` `get_context` builds
    /// it: the first [`SHOTS`] examples of `context[relation]` about another entity (by name),
    /// each written `"{question} {answer}\n"`; fewer when fewer are left, empty when none.
    /// Errors when `context` has no such relation (checked for every asked question at load).
    pub fn in_context_prefix(&self, e: usize, relation: &str) -> Result<String> {
        let entity = &self.entities[e];
        let shots = self.context.get(relation).with_context(|| {
            format!("restor/{FACTS}: field `context` has no examples for the relation {relation:?}")
        })?;
        Ok(shots
            .iter()
            .filter(|s| s.entity != *entity)
            .take(SHOTS)
            .map(|s| format!("{} {}\n", s.question, s.answer))
            .collect())
    }

    /// The asked (fact, answer text) pairs of entity `e` (an index into `entities`).
    pub fn questions(&self, e: usize) -> impl Iterator<Item = (&Fact, String)> {
        self.facts.get(&self.entities[e]).into_iter().flatten().filter_map(|f| f.answer_text().map(|a| (f, a)))
    }
}

impl Clean {
    /// Reads TOFU's `full.json` (every pair, whole authors of [`tofu::QA_PER_AUTHOR`]) and
    /// `retain_perturbed.json` (its rows matched to `full.json` by question and answer).
    pub fn load(data_dir: &Path) -> Result<Clean> {
        let rel_paths = vec![tofu::file("full"), tofu::file("retain_perturbed")];
        let paths: Vec<PathBuf> = rel_paths.iter().map(|r| data_dir.join(r)).collect();
        for p in &paths {
            if !p.is_file() {
                return Err(missing(p));
            }
        }
        let full: Vec<tofu::Row> = tofu::read_rows(&paths[0])?;
        if !full.len().is_multiple_of(tofu::QA_PER_AUTHOR) {
            bail!(
                "{}: {} rows, not a whole number of authors ({} pairs each, as TOFU publishes them)",
                paths[0].display(),
                full.len(),
                tofu::QA_PER_AUTHOR
            );
        }
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, r) in full.iter().enumerate() {
            if index.insert((r.question.as_str(), r.answer.as_str()), i).is_some() {
                bail!("{}: line {} repeats an earlier question and answer", paths[0].display(), i + 1);
            }
        }
        let mut evals: Vec<Option<tofu::PerturbedRow>> = vec![None; full.len()];
        let rows: Vec<tofu::PerturbedRow> = tofu::read_rows(&paths[1])?;
        for (i, r) in rows.into_iter().enumerate() {
            let at = *index.get(&(r.question.as_str(), r.answer.as_str())).with_context(|| {
                format!(
                    "{}: line {}: the pair (question {:?}) is not in {} — the files are from different versions of TOFU?",
                    paths[1].display(),
                    i + 1,
                    r.question,
                    paths[0].display()
                )
            })?;
            if r.perturbed_answer.is_empty() {
                bail!("{}: line {}: field perturbed_answer is an empty list", paths[1].display(), i + 1);
            }
            evals[at] = Some(r);
        }
        let pairs = full
            .into_iter()
            .zip(evals)
            .enumerate()
            .map(|(i, (r, eval))| tofu::Pair {
                author: (i / tofu::QA_PER_AUTHOR) as u32,
                question: r.question,
                answer: r.answer,
                eval,
            })
            .collect::<Vec<_>>();
        let n_authors = pairs.len() / tofu::QA_PER_AUTHOR;
        Ok(Clean { pairs, n_authors, rel_paths })
    }
}

/// The smoke fixture (`crates/testbed/fixtures/restor`, written by
/// `scripts/make-restor-fixture.py`): invented people, relations and corruption documents in
/// the published layout (mixes `mix_a0` and `mix_a1` only). Compiled in, so `--smoke` needs no
/// data directory.
const FIXTURE: &[(&str, &str)] = &[
    ("facts.json", include_str!("../fixtures/restor/facts.json")),
    ("entities.json", include_str!("../fixtures/restor/entities.json")),
    ("wikidata/v0/mix_a0.json", include_str!("../fixtures/restor/wikidata/v0/mix_a0.json")),
    ("wikidata/v0/mix_a1.json", include_str!("../fixtures/restor/wikidata/v0/mix_a1.json")),
];

/// Writes the smoke fixture under `data_dir/restor/`, and TOFU's fixture (the clean data) under
/// `data_dir/tofu/` (files already holding the same bytes are left alone).
pub fn write_fixture(data_dir: &Path) -> Result<()> {
    let files = FIXTURE.iter().map(|(name, text)| (name.to_string(), *text));
    crate::smoke::write_fixture_files(&data_dir.join(DIR), files)?;
    tofu::write_fixture(data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mix_names() {
        assert_eq!(check_forget(None).unwrap(), "mix_a0");
        assert_eq!(check_forget(Some("mix_a3")).unwrap(), "mix_a3");
        let e = format!("{:#}", check_forget(Some("forget10")).unwrap_err());
        assert!(e.contains("forget10") && e.contains("mix_a0") && e.contains("mix_a5"), "{e}");
    }

    #[test]
    fn answers_drop_bare_wikidata_ids_and_join() {
        let f = |a: &[&str]| Fact { relation: "P39".into(), question: "q".into(), answers: names(a) };
        assert_eq!(f(&["Mayor of Vell", "Q123", "Q9"]).answer_text().unwrap(), "Mayor of Vell");
        assert_eq!(f(&["sailor", "pilot"]).answer_text().unwrap(), "sailor; pilot");
        assert_eq!(f(&["Q1", "Q22"]).answer_text(), None);
        // a name that merely starts with Q is an answer
        assert_eq!(f(&["Quito", "Q7a"]).answer_text().unwrap(), "Quito; Q7a");
    }

    #[test]
    fn the_first_named_entity_wins_and_the_longest_on_a_tie() {
        let e = names(&["Ana Vell", "Ana Vellard", "Tomas Orr"]);
        assert_eq!(first_named("Tomas Orr met Ana Vell.", &e), Some(2));
        assert_eq!(first_named("Ana Vellard, the painter", &e), Some(1));
        assert_eq!(first_named("Nobody here", &e), None);
    }
}
