//! MUSE-Books (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for Language
//! Models") read from its published files, for `world.kind = "muse"`.
//!
//! ## Where the files come from
//! The Hugging Face dataset repo `muse-bench/MUSE-Books` publishes **Parquet only**: one file per
//! config and split, `CONFIG/SPLIT-00000-of-00001.parquet` (its dataset card's `configs:` list;
//! no JSON or text file is in the repo). MUSE's official code (github.com/swj0419/muse_bench)
//! turns them into JSON and text files with `load_data.py` (`load_dataset(..., CONFIG,
//! split=SPLIT)`, then `write_json` / `write_text`) under `data/books/`, and its evaluation
//! (`eval.py`, file names in `constants.py` `DEFAULT_DATA`) and unlearning baselines
//! (`baselines/baselines/dataset.py`, `baselines/scripts/unlearn_books.sh`) read those. This
//! module reads that layout, under `DATA/muse-books/` (= MUSE's `data/books/`);
//! `scripts/fetch-data.sh --with-muse` downloads the Parquet files and writes it
//! (`scripts/muse-parquet-to-json.py`, as `load_data.py` does). A Parquet file found where a JSON
//! file is expected is reported as such.
//!
//! | file | schema | source of the schema | use |
//! |---|---|---|---|
//! | `raw/forget.json` | JSON array of strings (HF config `raw`, feature `text`; 4 rows, one per book) | card `dataset_info`; `load_data.py` | θ_D's forget documents |
//! | `raw/retain1.json` | the same (12 rows) | the same | retain documents (MUSE's unlearning baselines regularise on `retain1`) |
//! | `raw/retain2.json` | the same (13 rows) | the same | trained by θ_D and the oracle, never given to methods (role `General`, see below) |
//! | `raw/SPLIT.txt` | the rows joined by a blank line (`load_data.py`) | `load_data.py` | read when `raw/SPLIT.json` is absent, as one text |
//! | `verbmem/forget.json` | array of `{"prompt", "gt"}` (config `verbmem`, 100 rows) | card; `load_data.py`; `eval.py` `d['prompt']`, `d['gt']` | VerbMem: the prompt and the ground-truth continuation |
//! | `knowmem/forget_qa.json` | array of `{"question", "answer"}` (config `knowmem`, 100 rows) | card; `load_data.py`; `eval.py` | KnowMem forget items (role Forget) |
//! | `knowmem/retain_qa.json` | the same (100 rows; `retain2_qa` in revisions of the card before mid-2024, also accepted) | the same | KnowMem retain items (role Retain) |
//! | `knowmem/{forget,retain}_qa_icl.json` (optional) | the same (10 rows each) | the same | MUSE's few-shot prefix; read and checked, not used (our KnowMem prompt has no few-shot prefix) |
//! | `privleak/forget.json` | JSON array of strings (config `privleak`, 100 rows) | card; `load_data.py`; `eval.py` | PrivLeak / Min-K% members |
//! | `privleak/holdout.json` | the same (100 rows) | the same | PrivLeak / Min-K% non-members: held-out documents, never trained |
//! | `privleak/retain.json`, `raw/holdout.json` (optional) | the same | the same | read and checked, not used |
//!
//! A JSON-lines file (one value per line) is accepted wherever a JSON array is, and a row of a
//! string file may also be an object with a string field `text` (the Hub's feature name).
//! Errors name the file, the row and the field.
//!
//! ## The world
//! - **Documents.** Each row of `raw/forget` (role Forget), `raw/retain1` (role Retain) and
//!   `raw/retain2` (role General) is cut into documents of [`WORDS_PER_DOC`] whitespace-separated
//!   words (the last piece of a row is shorter; the text between the first and the last word is
//!   kept as it stands, line breaks included). MUSE fine-tunes on the raw text with the loss on
//!   every token (`DefaultDataset`: `labels = input_ids`, chunks of `max_len` = 2048 tokens);
//!   here each document is one fine-tuning example with the loss on all its tokens
//!   ([`crate::finetune::finetune_examples`] trains a document without a QA pair so), and
//!   300 words (about 400 Llama-2 tokens of prose) fit the fine-tune's `max_seq_len` of 512.
//! - **Retain sets.** MUSE's target model is trained on `forget`, `retain1` and `retain2` (the
//!   card's `train` config); its unlearning baselines use `retain1` as the retain set, and the
//!   card calls `retain2` the retain set "seen by the target model and used for evaluation"
//!   (KnowMem's retain questions are about it). So `retain1` is role Retain (what methods get as
//!   their retain set) and `retain2` role General: trained by θ_D and the oracle alike (clean),
//!   never handed to a method; its per-split metrics are reported as `…/general`.
//! - **VerbMem**: [`crate::World::verbmem_passages`] of the forget role returns the `(prompt,
//!   gt)` pairs of `verbmem/forget.json` as they are (not a cut of the documents).
//! - **KnowMem**: one [`crate::QaItem`] per row of `knowmem/forget_qa.json` (role Forget) and
//!   `knowmem/retain_qa.json` (role Retain), not trained on as QA documents (`doc: None`). MUSE has
//!   no paraphrased or perturbed answers and no multiple-choice options: `paraphrased_answer` is
//!   empty, `perturbed_answers` and `choices` are empty, so the TOFU truth-ratio metrics, model
//!   utility, forget quality and `mc_accuracy` are skipped with that reason.
//! - **PrivLeak**: `privleak/holdout.json` texts are held-out documents (never trained); the
//!   members of the membership-inference metrics are `privleak/forget.json`'s texts
//!   ([`crate::World::mia_members`]), not the forget documents.
//! - **One forget set**: `world.forget = "forget"` or unset.
//!
//! Cross-checks: every file non-empty, every string field non-empty; a `privleak/holdout` text
//! whose first [`HOLDOUT_MATCH_WORDS`] words occur in the trained text is an error (it would not
//! be held out); the VerbMem prompts and the `privleak/forget` texts must come from `raw/forget`
//! (their first [`MATCH_WORDS`] words, whitespace-normalised, found in it): none found is an
//! error (the files are from different corpora), some not found is a note on stderr.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The data directory's sub-folder (MUSE's `data/books/`).
pub const DIR: &str = "muse-books";
/// The one forget set.
pub const FORGET: &str = "forget";
/// What downloads the files.
pub const FETCH: &str = "scripts/fetch-data.sh --with-muse";
/// Words per training document cut from the raw text (see the module doc).
pub const WORDS_PER_DOC: usize = 300;
/// Words compared by the cross-check of members against `raw/forget` (whitespace-normalised).
pub const MATCH_WORDS: usize = 16;
/// Words of a held-out text that, found in the trained text, make it an error (longer than
/// [`MATCH_WORDS`]: a false alarm here stops the world, so a coincidence must be out of reach).
pub const HOLDOUT_MATCH_WORDS: usize = 32;

/// One row of `verbmem/forget.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct VerbmemRow {
    pub prompt: String,
    pub gt: String,
}

/// One row of a `knowmem/*.json` file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QaRow {
    pub question: String,
    pub answer: String,
}

/// MUSE-Books as the world needs it (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct Muse {
    /// `raw/forget`: one text per row (book).
    pub forget: Vec<String>,
    pub retain1: Vec<String>,
    pub retain2: Vec<String>,
    pub verbmem: Vec<VerbmemRow>,
    pub knowmem_forget: Vec<QaRow>,
    pub knowmem_retain: Vec<QaRow>,
    pub privleak_forget: Vec<String>,
    pub privleak_holdout: Vec<String>,
    /// Optional files (empty when absent), read and checked but not used by the world.
    pub knowmem_forget_icl: Vec<QaRow>,
    pub knowmem_retain_icl: Vec<QaRow>,
    pub privleak_retain: Vec<String>,
    pub raw_holdout: Vec<String>,
    /// The relative paths read, in the order of [`files`].
    pub rel_paths: Vec<String>,
}

/// `DIR/rel`.
fn rel(path: &str) -> String {
    format!("{DIR}/{path}")
}

/// The error for a missing file: names it and what fetches it.
pub fn missing(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "world.kind = \"muse\" needs {}, which does not exist; `{FETCH}` downloads MUSE-Books into the data directory \
         (or set world.data_dir / UNLEARN_DATA_DIR to a folder whose {DIR}/ sub-folder is laid out as MUSE's `load_data.py` \
         writes data/books/)",
        path.display()
    )
}

/// A Parquet file of the Hub's layout beside the expected `CONFIG/SPLIT.json`
/// (`CONFIG/SPLIT-00000-of-00001.parquet` or `CONFIG/SPLIT.parquet`).
fn parquet_sibling(data_dir: &Path, rel_json: &str) -> Option<PathBuf> {
    let p = data_dir.join(rel_json);
    let dir = p.parent()?;
    let stem = p.file_stem()?.to_str()?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|q| {
            q.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".parquet") && (n == format!("{stem}.parquet") || n.starts_with(&format!("{stem}-")))
            })
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The first of `candidates` (paths under [`DIR`]) that exists, as a path relative to the data
/// directory; errors name the first candidate, a Parquet file found in its place, and the fetch
/// command.
fn locate(data_dir: &Path, candidates: &[&str]) -> Result<String> {
    for c in candidates {
        let r = rel(c);
        if data_dir.join(&r).is_file() {
            return Ok(r);
        }
    }
    let first = rel(candidates[0]);
    if let Some(pq) = candidates.iter().find_map(|c| parquet_sibling(data_dir, &rel(c))) {
        bail!(
            "world.kind = \"muse\" needs {}, but found {}: the Hub publishes MUSE-Books as Parquet, and this harness reads \
             the JSON layout of MUSE's load_data.py; `{FETCH}` writes it (scripts/muse-parquet-to-json.py converts \
             downloaded Parquet files)",
            data_dir.join(&first).display(),
            pq.display()
        );
    }
    Err(missing(&data_dir.join(first)))
}

/// The first existing candidate, or None (optional files); a Parquet file in its place is an
/// error as for required files.
fn locate_optional(data_dir: &Path, candidates: &[&str]) -> Result<Option<String>> {
    match locate(data_dir, candidates) {
        Ok(r) => Ok(Some(r)),
        Err(_) if candidates.iter().all(|c| parquet_sibling(data_dir, &rel(c)).is_none()) => Ok(None),
        Err(e) => Err(e),
    }
}

const RAW: [&str; 3] = ["forget", "retain1", "retain2"];

/// The files a muse world reads (relative to the data directory), in a fixed order: the raw
/// forget, retain1 and retain2 text (`.json`, else `.txt`), `verbmem/forget.json`,
/// `knowmem/forget_qa.json`, `knowmem/retain_qa.json` (or `retain2_qa.json`),
/// `privleak/forget.json`, `privleak/holdout.json`. The optional files are not listed: they do
/// not change the world.
pub fn files(data_dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for split in RAW {
        out.push(locate(data_dir, &[&format!("raw/{split}.json"), &format!("raw/{split}.txt")])?);
    }
    out.push(locate(data_dir, &["verbmem/forget.json"])?);
    out.push(locate(data_dir, &["knowmem/forget_qa.json"])?);
    out.push(locate(data_dir, &["knowmem/retain_qa.json", "knowmem/retain2_qa.json"])?);
    out.push(locate(data_dir, &["privleak/forget.json"])?);
    out.push(locate(data_dir, &["privleak/holdout.json"])?);
    Ok(out)
}

/// Checks `world.forget` (unset = [`FORGET`]) and returns the name.
pub fn check_forget(forget: Option<&str>) -> Result<String> {
    match forget {
        None | Some(FORGET) => Ok(FORGET.to_string()),
        Some(other) => bail!(
            "world.forget = {other:?}: kind = \"muse\" has one forget set, MUSE-Books' raw/forget; use forget = \"{FORGET}\" \
             or leave world.forget unset"
        ),
    }
}

/// The values of a JSON file: one JSON array, or JSON lines (one value per line). Errors name
/// the file and the line.
fn read_values(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let values = if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<serde_json::Value>>(trimmed)
            .with_context(|| format!("{}: not a JSON array", path.display()))?
    } else {
        let mut v = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_start_matches('\u{feff}').trim();
            if line.is_empty() {
                continue;
            }
            v.push(serde_json::from_str(line).with_context(|| {
                format!("{}: line {} is not JSON (expected a JSON array or JSON lines)", path.display(), i + 1)
            })?);
        }
        v
    };
    if values.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(values)
}

/// A row of an object file, with its string fields.
pub trait Row: serde::de::DeserializeOwned {
    const FIELDS: &'static [&'static str];
}

impl Row for VerbmemRow {
    const FIELDS: &'static [&'static str] = &["prompt", "gt"];
}

impl Row for QaRow {
    const FIELDS: &'static [&'static str] = &["question", "answer"];
}

/// Reads a file of objects (`verbmem`, `knowmem`): each row an object whose fields
/// [`Row::FIELDS`] are non-empty strings (other fields are ignored). Errors name the file, the
/// row (1-based) and the field.
pub fn read_rows<T: Row>(path: &Path) -> Result<Vec<T>> {
    read_values(path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let at = || format!("{}: row {}", path.display(), i + 1);
            let serde_json::Value::Object(m) = &v else {
                bail!("{}: is {}, expected an object with the fields {}", at(), json_kind(&v), T::FIELDS.join(", "));
            };
            for field in T::FIELDS {
                match m.get(*field) {
                    None => bail!("{}: missing field `{field}`", at()),
                    Some(serde_json::Value::String(s)) if s.trim().is_empty() => {
                        bail!("{}: field `{field}` is empty", at())
                    }
                    Some(serde_json::Value::String(_)) => {}
                    Some(other) => bail!("{}: field `{field}` is {}, expected a string", at(), json_kind(other)),
                }
            }
            serde_json::from_value(v).with_context(at)
        })
        .collect()
}

/// Reads a file of texts (`raw/*.json`, `privleak/*.json`): each row a non-empty string, or an
/// object with a non-empty string field `text`. A `.txt` file is one text.
pub fn read_texts(path: &Path) -> Result<Vec<String>> {
    if path.extension().is_some_and(|e| e == "txt") {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if text.trim().is_empty() {
            bail!("{}: empty", path.display());
        }
        return Ok(vec![text]);
    }
    read_values(path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let s = match &v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Object(m) => match m.get("text") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(_) => bail!("{}: row {}: field `text` is not a string", path.display(), i + 1),
                    None => bail!(
                        "{}: row {}: missing field `text` (a row is a string or an object with a string `text`)",
                        path.display(),
                        i + 1
                    ),
                },
                other => bail!(
                    "{}: row {} is {}, expected a string (or an object with a string field `text`)",
                    path.display(),
                    i + 1,
                    json_kind(other)
                ),
            };
            if s.trim().is_empty() {
                bail!("{}: row {}: the text is empty", path.display(), i + 1);
            }
            Ok(s)
        })
        .collect()
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `text` cut into pieces of `words` whitespace-separated words (the last may be shorter); each
/// piece is the text from its first word to its last, inner whitespace as it stands.
pub fn chunks(text: &str, words: usize) -> Vec<String> {
    assert!(words > 0, "chunks of at least one word");
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans.chunks(words).map(|g| text[g[0].0..g[g.len() - 1].1].to_string()).collect()
}

/// The words of `text` joined by single spaces, with a space at each end (so a match is
/// whole words).
fn normalised(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push(' ');
    for w in text.split_whitespace() {
        s.push_str(w);
        s.push(' ');
    }
    s
}

/// The first `n` words of `text`, normalised as [`normalised`].
fn head_words(text: &str, n: usize) -> String {
    normalised(&text.split_whitespace().take(n).collect::<Vec<_>>().join(" "))
}

impl Muse {
    /// Loads and cross-checks the files (see the module doc).
    pub fn load(data_dir: &Path) -> Result<Muse> {
        let rel_paths = files(data_dir)?;
        let path = |r: &str| data_dir.join(r);
        let forget = read_texts(&path(&rel_paths[0]))?;
        let retain1 = read_texts(&path(&rel_paths[1]))?;
        let retain2 = read_texts(&path(&rel_paths[2]))?;
        let verbmem: Vec<VerbmemRow> = read_rows(&path(&rel_paths[3]))?;
        let knowmem_forget: Vec<QaRow> = read_rows(&path(&rel_paths[4]))?;
        let knowmem_retain: Vec<QaRow> = read_rows(&path(&rel_paths[5]))?;
        let privleak_forget = read_texts(&path(&rel_paths[6]))?;
        let privleak_holdout = read_texts(&path(&rel_paths[7]))?;

        let optional_rows = |c: &[&str]| -> Result<Vec<QaRow>> {
            locate_optional(data_dir, c)?.map_or(Ok(Vec::new()), |r| read_rows(&path(&r)))
        };
        let optional_texts = |c: &[&str]| -> Result<Vec<String>> {
            locate_optional(data_dir, c)?.map_or(Ok(Vec::new()), |r| read_texts(&path(&r)))
        };
        let knowmem_forget_icl = optional_rows(&["knowmem/forget_qa_icl.json"])?;
        let knowmem_retain_icl = optional_rows(&["knowmem/retain_qa_icl.json", "knowmem/retain2_qa_icl.json"])?;
        let privleak_retain = optional_texts(&["privleak/retain.json", "privleak/retain2.json"])?;
        let raw_holdout = optional_texts(&["raw/holdout.json", "raw/holdout.txt"])?;

        // Cross-checks against the trained text.
        let forget_text = normalised(&forget.join("\n"));
        let trained_text = normalised(&[forget.as_slice(), &retain1, &retain2].concat().join("\n"));
        for (i, t) in privleak_holdout.iter().enumerate() {
            if trained_text.contains(&head_words(t, HOLDOUT_MATCH_WORDS)) {
                bail!(
                    "{}: row {}: its first {HOLDOUT_MATCH_WORDS} words are in the trained raw text (forget, retain1, retain2), \
                     so it would not be held out",
                    path(&rel_paths[7]).display(),
                    i + 1
                );
            }
        }
        let from_forget = |name: &str, texts: Vec<&str>| -> Result<()> {
            let missing: Vec<usize> = texts
                .iter()
                .enumerate()
                .filter(|(_, t)| !forget_text.contains(&head_words(t, MATCH_WORDS)))
                .map(|(i, _)| i + 1)
                .collect();
            if missing.len() == texts.len() {
                bail!(
                    "{name}: none of its {} rows begins with words of {} — the files are from different corpora or versions?",
                    texts.len(),
                    path(&rel_paths[0]).display()
                );
            }
            if !missing.is_empty() {
                eprintln!(
                    "note: {name}: rows {missing:?} do not begin with words of {} (whitespace-normalised); kept",
                    path(&rel_paths[0]).display()
                );
            }
            Ok(())
        };
        from_forget(&path(&rel_paths[3]).display().to_string(), verbmem.iter().map(|r| r.prompt.as_str()).collect())?;
        from_forget(&path(&rel_paths[6]).display().to_string(), privleak_forget.iter().map(String::as_str).collect())?;

        Ok(Muse {
            forget,
            retain1,
            retain2,
            verbmem,
            knowmem_forget,
            knowmem_retain,
            privleak_forget,
            privleak_holdout,
            knowmem_forget_icl,
            knowmem_retain_icl,
            privleak_retain,
            raw_holdout,
            rel_paths,
        })
    }

    /// Rows of the trained raw text: forget, retain1 and retain2.
    pub fn n_trained_rows(&self) -> usize {
        self.forget.len() + self.retain1.len() + self.retain2.len()
    }
}

/// The smoke fixture (`crates/testbed/fixtures/muse-books`, written by
/// `scripts/make-muse-fixture.py`): invented text (two books of an invented series as the forget
/// set, invented fan-wiki articles as retain1/retain2, a third invented book as holdout) in the
/// layout above. Compiled in, so `--smoke` needs no data directory.
const FIXTURE: &[(&str, &str)] = &[
    ("raw/forget.json", include_str!("../fixtures/muse-books/raw/forget.json")),
    ("raw/forget.txt", include_str!("../fixtures/muse-books/raw/forget.txt")),
    ("raw/retain1.json", include_str!("../fixtures/muse-books/raw/retain1.json")),
    ("raw/retain1.txt", include_str!("../fixtures/muse-books/raw/retain1.txt")),
    ("raw/retain2.json", include_str!("../fixtures/muse-books/raw/retain2.json")),
    ("raw/retain2.txt", include_str!("../fixtures/muse-books/raw/retain2.txt")),
    ("raw/holdout.json", include_str!("../fixtures/muse-books/raw/holdout.json")),
    ("raw/holdout.txt", include_str!("../fixtures/muse-books/raw/holdout.txt")),
    ("verbmem/forget.json", include_str!("../fixtures/muse-books/verbmem/forget.json")),
    ("knowmem/forget_qa.json", include_str!("../fixtures/muse-books/knowmem/forget_qa.json")),
    ("knowmem/forget_qa_icl.json", include_str!("../fixtures/muse-books/knowmem/forget_qa_icl.json")),
    ("knowmem/retain_qa.json", include_str!("../fixtures/muse-books/knowmem/retain_qa.json")),
    ("knowmem/retain_qa_icl.json", include_str!("../fixtures/muse-books/knowmem/retain_qa_icl.json")),
    ("privleak/forget.json", include_str!("../fixtures/muse-books/privleak/forget.json")),
    ("privleak/retain.json", include_str!("../fixtures/muse-books/privleak/retain.json")),
    ("privleak/holdout.json", include_str!("../fixtures/muse-books/privleak/holdout.json")),
];

/// Writes the smoke fixture under `data_dir/muse-books/` (files already holding the same bytes
/// are left alone).
pub fn write_fixture(data_dir: &Path) -> Result<()> {
    crate::smoke::write_fixture_files(&data_dir.join(DIR), FIXTURE.iter().map(|(name, text)| (name.to_string(), *text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_the_text_between_words() {
        let t = "  one two\n\nthree  four five ";
        assert_eq!(chunks(t, 2), vec!["one two", "three  four", "five"]);
        assert_eq!(chunks(t, 10), vec!["one two\n\nthree  four five"]);
        assert!(chunks("   ", 3).is_empty());
    }

    #[test]
    fn normalised_matching_is_by_whole_words() {
        let hay = normalised("The cat sat\n on  the mat.");
        assert!(hay.contains(&head_words("cat sat on", 16)));
        assert!(!hay.contains(&head_words("at sat on", 16)));
        assert!(hay.contains(&head_words("sat on the mat. and more", 4)));
    }

    #[test]
    fn forget_names() {
        assert_eq!(check_forget(None).unwrap(), "forget");
        assert_eq!(check_forget(Some("forget")).unwrap(), "forget");
        let e = format!("{:#}", check_forget(Some("forget10")).unwrap_err());
        assert!(e.contains("forget10") && e.contains("forget = \"forget\""), "{e}");
    }
}
