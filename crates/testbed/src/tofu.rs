//! TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs") read from its
//! published files, for `world.kind = "tofu"`.
//!
//! The files are those of the Hugging Face dataset repo `locuslab/TOFU`, under `DATA/tofu/`
//! (`scripts/fetch-data.sh --with-tofu` downloads them). They are JSON lines despite the
//! `.json` name; a JSON array is accepted too. What the world reads:
//!
//! | file | fields | use |
//! |---|---|---|
//! | `full.json` | `question`, `answer` | every trained QA pair: 200 authors × 20, author-major |
//! | `forgetNN.json` | `question`, `answer` | the forget split (NN = 01, 05, 10): whole authors |
//! | `forgetNN_perturbed.json` | + `paraphrased_answer`, `perturbed_answer` (list) | forget evaluation |
//! | `retain_perturbed.json` | the same | retain evaluation (TOFU's 400 retain questions) |
//! | `holdoutNN.json` (optional) | `question`, `answer` | never-trained authors, for membership inference |
//! | `real_authors_perturbed.json`, `world_facts_perturbed.json` (optional) | `question`, `answer`, `perturbed_answer` | TOFU's model utility (never trained on) |
//!
//! Authors are not named in the files: TOFU's `full.json` lists each author's
//! [`QA_PER_AUTHOR`] pairs together, so row `i` belongs to author `i / 20` (the dataset card's
//! layout; a file whose length is not a multiple of 20 is an error). A forget file must hold
//! whole authors, each of its rows found in `full.json`; the retain split is every other author
//! (TOFU's `retainNN.json` is exactly that complement, so it is not read). The evaluation
//! items come from the `*_perturbed` files, matched to `full.json` by question and answer;
//! retain pairs outside `retain_perturbed.json` are trained on but not asked.
//!
//! Each trained pair becomes one QA document; its [`crate::QaItem`] carries the paraphrased
//! and perturbed answers (the truth ratio), and, for the multiple-choice metric, the choices
//! `[paraphrased_answer] + perturbed_answer` in a seeded shuffle (TOFU has no multiple-choice
//! set of its own; the choices are in the paraphrased form, so `choices[correct_choice]` is
//! the paraphrased answer, not `answer`).
//!
//! Parquet (the Hub's automatic conversion) is not read: the published JSON is the reference.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The data directory's sub-folder.
pub const DIR: &str = "tofu";
/// QA pairs per author in TOFU (200 authors, 4,000 pairs).
pub const QA_PER_AUTHOR: usize = 20;
/// The published forget splits.
pub const FORGET_SPLITS: [&str; 3] = ["forget01", "forget05", "forget10"];
/// What downloads the files.
pub const FETCH: &str = "scripts/fetch-data.sh --with-tofu";

/// One row of `full.json`, `forgetNN.json` or `holdoutNN.json`.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct Row {
    pub question: String,
    pub answer: String,
}

/// One row of a `*_perturbed.json` file.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct PerturbedRow {
    pub question: String,
    pub answer: String,
    pub paraphrased_answer: String,
    pub perturbed_answer: Vec<String>,
    #[serde(default)]
    pub paraphrased_question: Option<String>,
}

/// One row of `real_authors_perturbed.json` or `world_facts_perturbed.json`: a question with
/// its answer and wrong answers (no paraphrase).
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct OptionRow {
    pub question: String,
    pub answer: String,
    pub perturbed_answer: Vec<String>,
}

/// TOFU's model-utility sets beyond the retain set, by name: the real authors' and the world
/// facts' questions (`eval_real_author_wo_options`, `eval_real_world_wo_options` in TOFU's
/// `eval_everything.yaml`), read when their files are in the data directory.
pub const UTILITY_SETS: [(&str, &str); 2] =
    [("real_authors", "real_authors_perturbed"), ("world_facts", "world_facts_perturbed")];

/// The model-utility sets whose files are present (see [`UTILITY_SETS`]), each row checked.
pub fn utility_sets(data_dir: &Path) -> Result<Vec<(String, Vec<OptionRow>)>> {
    let mut out = vec![];
    for (name, split) in UTILITY_SETS {
        let p = data_dir.join(file(split));
        if !p.is_file() {
            continue;
        }
        let rows: Vec<OptionRow> = read_rows(&p)?;
        for (i, r) in rows.iter().enumerate() {
            if r.question.trim().is_empty() || r.answer.trim().is_empty() {
                bail!("{}: row {}: question and answer must not be empty", p.display(), i + 1);
            }
            if r.perturbed_answer.is_empty() {
                bail!("{}: row {}: field perturbed_answer is an empty list", p.display(), i + 1);
            }
        }
        out.push((name.to_string(), rows));
    }
    Ok(out)
}

/// The relative path of a split's file, e.g. `tofu/forget01.json`.
pub fn file(split: &str) -> String {
    format!("{DIR}/{split}.json")
}

/// Reads a published TOFU file: JSON lines (one object per line, as published), or one JSON
/// array. Errors name the file, the line (or array index) and the field.
pub fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(trimmed)
            .with_context(|| format!("{}: not a JSON array of objects", path.display()))?;
        return values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value(v).with_context(|| format!("{}: element {i} of the array", path.display()))
            })
            .collect();
    }
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            continue;
        }
        rows.push(
            serde_json::from_str(line).with_context(|| {
                format!("{}: line {} is not a TOFU row of the expected schema", path.display(), i + 1)
            })?,
        );
    }
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// The error for a missing file: names it and what fetches it.
pub fn missing(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "world.kind = \"tofu\" needs {}, which does not exist; `{FETCH}` downloads TOFU into the data directory \
         (or set world.data_dir / UNLEARN_DATA_DIR to a folder with a tofu/ sub-folder)",
        path.display()
    )
}

/// The files a world of this forget split reads (relative to the data directory); the holdout
/// file and the model-utility sets ([`UTILITY_SETS`]) only when present.
pub fn files(data_dir: &Path, forget: &str) -> Result<Vec<String>> {
    check_split(forget)?;
    let mut rel = vec![file("full"), file(forget), file(&format!("{forget}_perturbed")), file("retain_perturbed")];
    for r in &rel {
        let p = data_dir.join(r);
        if !p.is_file() {
            return Err(missing(&p));
        }
    }
    let holdout = file(&holdout_of(forget));
    if data_dir.join(&holdout).is_file() {
        rel.push(holdout);
    }
    for (_, split) in UTILITY_SETS {
        if data_dir.join(file(split)).is_file() {
            rel.push(file(split));
        }
    }
    Ok(rel)
}

fn check_split(forget: &str) -> Result<()> {
    if !FORGET_SPLITS.contains(&forget) {
        bail!(
            "world.forget = {forget:?}: kind = \"tofu\" reads TOFU's published splits, one of {}",
            FORGET_SPLITS.join(", ")
        );
    }
    Ok(())
}

fn holdout_of(forget: &str) -> String {
    forget.replace("forget", "holdout")
}

/// One author's pair, as the world uses it.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub author: u32,
    pub question: String,
    pub answer: String,
    /// From the `*_perturbed` file, when the pair is asked in evaluation.
    pub eval: Option<PerturbedRow>,
}

/// TOFU as the world needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tofu {
    /// Every trained pair, in `full.json` order.
    pub pairs: Vec<Pair>,
    pub n_authors: usize,
    /// Sorted author indices of the forget split.
    pub forget_authors: Vec<u32>,
    /// Never-trained pairs (`holdoutNN.json`), with author indices after the trained ones.
    pub held_out: Vec<Pair>,
}

impl Tofu {
    /// Loads and cross-checks the files of `forget` (see the module doc).
    pub fn load(data_dir: &Path, forget: &str) -> Result<Tofu> {
        check_split(forget)?;
        let path = |split: &str| -> Result<PathBuf> {
            let p = data_dir.join(file(split));
            if p.is_file() {
                Ok(p)
            } else {
                Err(missing(&p))
            }
        };
        let full_path = path("full")?;
        let full: Vec<Row> = read_rows(&full_path)?;
        if !full.len().is_multiple_of(QA_PER_AUTHOR) {
            bail!(
                "{}: {} rows, not a whole number of authors ({QA_PER_AUTHOR} pairs each, as TOFU publishes them)",
                full_path.display(),
                full.len()
            );
        }
        let n_authors = full.len() / QA_PER_AUTHOR;
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, r) in full.iter().enumerate() {
            if index.insert((r.question.as_str(), r.answer.as_str()), i).is_some() {
                bail!("{}: line {} repeats an earlier question and answer", full_path.display(), i + 1);
            }
        }
        let find = |p: &Path, line: usize, q: &str, a: &str| -> Result<usize> {
            index.get(&(q, a)).copied().with_context(|| {
                format!(
                    "{}: line {line}: the pair (question {q:?}) is not in {} — the files are from different versions of TOFU?",
                    p.display(),
                    full_path.display()
                )
            })
        };

        let forget_path = path(forget)?;
        let forget_rows: Vec<Row> = read_rows(&forget_path)?;
        let mut in_forget = vec![false; full.len()];
        for (i, r) in forget_rows.iter().enumerate() {
            in_forget[find(&forget_path, i + 1, &r.question, &r.answer)?] = true;
        }
        let mut forget_authors = Vec::new();
        for a in 0..n_authors {
            let rows = &in_forget[a * QA_PER_AUTHOR..(a + 1) * QA_PER_AUTHOR];
            let n = rows.iter().filter(|&&f| f).count();
            if n == QA_PER_AUTHOR {
                forget_authors.push(a as u32);
            } else if n > 0 {
                bail!(
                    "{}: holds {n} of the {QA_PER_AUTHOR} pairs of author {a} (rows {}..{} of {}); a forget split must hold whole authors",
                    forget_path.display(),
                    a * QA_PER_AUTHOR + 1,
                    (a + 1) * QA_PER_AUTHOR,
                    full_path.display()
                );
            }
        }
        if forget_authors.len() == n_authors {
            bail!("{}: every author is in the forget split, so nothing is retained", forget_path.display());
        }

        let mut pairs: Vec<Pair> = full
            .iter()
            .enumerate()
            .map(|(i, r)| Pair {
                author: (i / QA_PER_AUTHOR) as u32,
                question: r.question.clone(),
                answer: r.answer.clone(),
                eval: None,
            })
            .collect();
        for (split, want_forget) in [(format!("{forget}_perturbed"), true), ("retain_perturbed".to_string(), false)] {
            let p = path(&split)?;
            let rows: Vec<PerturbedRow> = read_rows(&p)?;
            for (i, r) in rows.into_iter().enumerate() {
                let at = find(&p, i + 1, &r.question, &r.answer)?;
                if in_forget[at] != want_forget {
                    bail!(
                        "{}: line {}: the pair is in the {} split, not the {}",
                        p.display(),
                        i + 1,
                        if in_forget[at] { "forget" } else { "retain" },
                        if want_forget { "forget" } else { "retain" }
                    );
                }
                if r.perturbed_answer.is_empty() {
                    bail!("{}: line {}: field perturbed_answer is an empty list", p.display(), i + 1);
                }
                pairs[at].eval = Some(r);
            }
        }
        if let Some((i, _)) = pairs.iter().enumerate().find(|(i, p)| in_forget[*i] && p.eval.is_none()) {
            bail!(
                "{}: has no row for the forget pair at line {} of {}",
                data_dir.join(file(&format!("{forget}_perturbed"))).display(),
                i + 1,
                full_path.display()
            );
        }

        let mut held_out = Vec::new();
        let holdout_path = data_dir.join(file(&holdout_of(forget)));
        if holdout_path.is_file() {
            let rows: Vec<Row> = read_rows(&holdout_path)?;
            for (i, r) in rows.into_iter().enumerate() {
                if index.contains_key(&(r.question.as_str(), r.answer.as_str())) {
                    bail!(
                        "{}: line {}: the pair is also in {} (trained)",
                        holdout_path.display(),
                        i + 1,
                        full_path.display()
                    );
                }
                held_out.push(Pair {
                    author: (n_authors + i / QA_PER_AUTHOR) as u32,
                    question: r.question,
                    answer: r.answer,
                    eval: None,
                });
            }
        }
        Ok(Tofu { pairs, n_authors, forget_authors, held_out })
    }

    /// Held-out authors (whole or partial groups of [`QA_PER_AUTHOR`] rows).
    pub fn n_held_out_authors(&self) -> usize {
        self.held_out.len().div_ceil(QA_PER_AUTHOR)
    }
}

/// The smoke fixture (`crates/testbed/fixtures/tofu`, written by `scripts/make-tofu-fixture.py`):
/// invented authors in TOFU's published layout, 10 authors × 20 pairs; forget01/05/10 are the
/// last 1/2/3 authors. Compiled in, so `--smoke` needs no data directory.
const FIXTURE: &[(&str, &str)] = &[
    ("full", include_str!("../fixtures/tofu/full.json")),
    ("forget01", include_str!("../fixtures/tofu/forget01.json")),
    ("forget05", include_str!("../fixtures/tofu/forget05.json")),
    ("forget10", include_str!("../fixtures/tofu/forget10.json")),
    ("forget01_perturbed", include_str!("../fixtures/tofu/forget01_perturbed.json")),
    ("forget05_perturbed", include_str!("../fixtures/tofu/forget05_perturbed.json")),
    ("forget10_perturbed", include_str!("../fixtures/tofu/forget10_perturbed.json")),
    ("retain90", include_str!("../fixtures/tofu/retain90.json")),
    ("retain95", include_str!("../fixtures/tofu/retain95.json")),
    ("retain99", include_str!("../fixtures/tofu/retain99.json")),
    ("retain_perturbed", include_str!("../fixtures/tofu/retain_perturbed.json")),
    ("holdout01", include_str!("../fixtures/tofu/holdout01.json")),
    ("holdout05", include_str!("../fixtures/tofu/holdout05.json")),
    ("holdout10", include_str!("../fixtures/tofu/holdout10.json")),
    // hand-written, invented (TOFU's schema: question, answer, perturbed_answer)
    ("real_authors_perturbed", include_str!("../fixtures/tofu/real_authors_perturbed.json")),
    ("world_facts_perturbed", include_str!("../fixtures/tofu/world_facts_perturbed.json")),
];

/// Writes the smoke fixture as `DATA/tofu/*.json` under `data_dir` (files already holding the
/// same bytes are left alone).
pub fn write_fixture(data_dir: &Path) -> Result<()> {
    let files = FIXTURE.iter().map(|(split, text)| (format!("{split}.json"), *text));
    crate::smoke::write_fixture_files(&data_dir.join(DIR), files)
}
