//! Testbed "worlds": training corpora whose forget data is known exactly, with the exposure
//! schedule that says at which optimizer step each document is trained on, the ledger of
//! forget exposures and clean checkpoints, and the oracle schedule without the forget data.
//!
//! The data side generates documents, QA items and splits ([`world`], one module per kind) and
//! decides batches as lists of document ids ([`schedule`]). [`train`] builds a world's models:
//! it trains the world's tokenizer, tokenizes the documents, packs each step's documents into
//! `batch_size × seq_len` tokens, pretrains θ_D with its checkpoints and the exact retrain
//! oracle on the `lm` engine, and caches them on disk.
//!
//! Kinds: `facts` (fictitious authors in the spirit of TOFU, Maini et al. 2024),
//! `truthfulqa-corruption` (RESTOR, Rezaei et al. 2024), `toxigen` (Hartvigsen et al. 2022),
//! `finetune` (TOFU's protocol on a pretrained θ_0), `tofu` (TOFU itself, from its published
//! files, on a pretrained θ_0; [`tofu`]), `muse` (MUSE-Books from its published files, on a
//! pretrained θ_0; [`muse`]), `restor` (RESTOR's corruption sets from its published files beside
//! TOFU as clean data, on a pretrained θ_0; [`restor`]).
//!
//! ## The QA format
//! One format for training documents and evaluation prompts, in every kind:
//! ```text
//! Question: Where was Mara Velkin born?
//! Answer: Orlen
//! ```
//! i.e. `"Question: {q}\nAnswer: {a}"`. For scoring, the prompt is [`qa_prompt`]
//! (`"Question: {q}\nAnswer:"`) and the continuation is `" {a}"` ([`qa_continuation`]): the
//! word-boundary space belongs to the continuation, as in lm-evaluation-harness.

pub mod config;
pub mod facts;
pub mod finetune;
pub mod general;
pub mod muse;
pub mod restor;
pub mod schedule;
pub mod smoke;
pub mod tofu;
pub mod toxigen;
pub mod train;
pub mod truthfulqa;
pub mod world;

use serde::{Deserialize, Serialize};

pub use config::{
    default_data_dir, ChatSpec, DataFile, ExposureConfig, FinetuneOverrides, ForgetSplit, GeneralSource, ResolvedWorld,
    WorldConfig, WorldKind,
};
pub use schedule::{schedule, CheckpointStatus, ForgetExposure, Ledger, Schedule, ScheduleConfig};
pub use world::{EvalTexts, Splits, UtilityQa, UtilitySet, World, WorldMeta};

/// A document's index in [`Corpus::docs`].
pub type DocId = u32;

/// What a document (or QA item) is to the world's forget split.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Trained on by θ_D and by the oracle.
    Retain,
    /// Trained on by θ_D only, and only inside the exposure window.
    Forget,
    /// General text, trained on by both (counts as clean, like retain).
    General,
    /// Never trained on: held-out entities or statements, for privacy / generalisation.
    HeldOut,
}

/// What a document's text is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    /// A biography passage of an entity (facts).
    Bio,
    /// One question–answer pair in the QA format.
    Qa,
    /// General text (TinyStories paragraph or built-in sentences).
    General,
    /// One ToxiGen statement.
    Statement,
    /// A piece of raw text (MUSE's books and articles, RESTOR's corruption documents), trained on
    /// every token.
    Passage,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Document {
    pub id: DocId,
    pub role: Role,
    pub kind: DocKind,
    /// The entity (facts, finetune), question index (truthfulqa), statement id (toxigen), row
    /// of the raw file it was cut from (muse) or author / corrupted entity (tofu, restor).
    pub unit: Option<u32>,
    pub text: String,
    /// For a QA document without an evaluation item (TOFU's retain pairs outside
    /// `retain_perturbed.json`): its question and answer, so that it can be formatted like the
    /// others (chat template). Absent otherwise; the QA item's fields are the pair then.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pair: Option<QaPair>,
}

/// A question and its answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QaPair {
    pub question: String,
    pub answer: String,
}

impl Document {
    /// Splits the text at the word boundary nearest to `fraction` of its words, for MUSE's
    /// verbatim-memorisation metric: the model is given the prefix and its continuation is
    /// compared with the rest. The continuation keeps its leading space.
    pub fn verbmem_split(&self, fraction: f64) -> (String, String) {
        let starts: Vec<usize> =
            self.text.char_indices().filter(|&(i, c)| i > 0 && c.is_whitespace()).map(|(i, _)| i).collect();
        if starts.is_empty() {
            return (self.text.clone(), String::new());
        }
        let k = ((starts.len() + 1) as f64 * fraction.clamp(0.0, 1.0)).round() as usize;
        let cut = starts[k.clamp(1, starts.len()) - 1];
        (self.text[..cut].to_string(), self.text[cut..].to_string())
    }
}

/// All documents of a world, trained and held out; `docs[i].id == i`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Corpus {
    pub docs: Vec<Document>,
}

impl Corpus {
    /// Appends a document, assigning the next id.
    pub fn push(&mut self, role: Role, kind: DocKind, unit: Option<u32>, text: String) -> DocId {
        let id = self.docs.len() as DocId;
        self.docs.push(Document { id, role, kind, unit, text, pair: None });
        id
    }

    /// Appends a QA document of `pair` (text `qa_text(question, answer)`) that keeps its pair.
    pub fn push_pair(&mut self, role: Role, unit: Option<u32>, pair: QaPair) -> DocId {
        let id = self.push(role, DocKind::Qa, unit, qa_text(&pair.question, &pair.answer));
        self.docs[id as usize].pair = Some(pair);
        id
    }

    pub fn get(&self, id: DocId) -> Option<&Document> {
        self.docs.get(id as usize)
    }

    /// Ids of the documents with this role, in id order.
    pub fn ids(&self, role: Role) -> Vec<DocId> {
        self.docs.iter().filter(|d| d.role == role).map(|d| d.id).collect()
    }

    /// A tokenizer-free length estimate (one token per 4 UTF-8 bytes, plus one for EOS), for
    /// tests and previews; the trainer passes real token lengths to [`schedule`].
    pub fn estimated_lengths(&self) -> Vec<usize> {
        self.docs.iter().map(|d| d.text.len() / 4 + 2).collect()
    }

    /// Checks `docs[i].id == i`.
    pub fn check_ids(&self) -> anyhow::Result<()> {
        for (i, d) in self.docs.iter().enumerate() {
            if d.id as usize != i {
                anyhow::bail!("document at line {} has id {}, expected {i}", i + 1, d.id);
            }
        }
        Ok(())
    }
}

/// An evaluation question (TOFU / MUSE KnowMem / RESTOR).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QaItem {
    pub id: u32,
    pub role: Role,
    /// Entity or question index.
    pub unit: u32,
    /// Attribute name (facts), `truthfulqa` otherwise.
    pub attribute: String,
    pub question: String,
    /// The true answer, short; what the retain/clean documents teach.
    pub answer: String,
    /// A correct answer in other words (TOFU's paraphrased answer), for the truth ratio. Empty
    /// when the data has none (MUSE KnowMem): the truth-ratio metrics are skipped then.
    pub paraphrased_answer: String,
    /// Wrong but plausible answers in the same form as `paraphrased_answer` (TOFU's perturbed
    /// answers). At least 4 for facts; as many as TruthfulQA has for truthfulqa; none for muse.
    pub perturbed_answers: Vec<String>,
    /// Multiple-choice options in the form of `answer`; `choices[correct_choice] == answer`
    /// (tofu: the paraphrased form). Empty when the data has none (muse): `mc_accuracy` is
    /// skipped then.
    pub choices: Vec<String>,
    pub correct_choice: usize,
    /// truthfulqa-corruption: the wrong answer taught by the forget document, if corrupted.
    pub taught_answer: Option<String>,
    /// The training document that teaches this QA pair in the QA format (the retain/clean one);
    /// None when no document is the pair itself (muse: the knowledge is in the raw text).
    pub doc: Option<DocId>,
    /// When set, the question is asked as a benchmark's own evaluation asks it: this raw text
    /// (its in-context examples, possibly empty) followed by the question, with no QA template,
    /// the answer the continuation after a space (RESTOR: [`crate::restor::Restor::in_context_prefix`]).
    /// None for every other world; left out of the JSON then, so those worlds keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_context: Option<String>,
}

impl QaItem {
    /// The plain-format prompt: [`qa_prompt`], or [`Self::question_with_context`] when the item
    /// is asked after in-context examples; the answer follows as [`qa_continuation`] either way.
    pub fn prompt(&self) -> String {
        match &self.in_context {
            Some(_) => self.question_with_context(),
            None => qa_prompt(&self.question),
        }
    }

    /// The question as it is asked: `in_context + question` (the question alone when the item
    /// has no in-context examples), for a template to wrap — a raw one when `in_context` is set.
    pub fn question_with_context(&self) -> String {
        format!("{}{}", self.in_context.as_deref().unwrap_or(""), self.question)
    }
}

/// `"Question: {q}\nAnswer:"` — the evaluation prompt.
pub fn qa_prompt(question: &str) -> String {
    format!("Question: {question}\nAnswer:")
}

/// `" {a}"` — the continuation scored after [`qa_prompt`].
pub fn qa_continuation(answer: &str) -> String {
    format!(" {answer}")
}

/// `"Question: {q}\nAnswer: {a}"` — the training document, equal to prompt + continuation.
pub fn qa_text(question: &str, answer: &str) -> String {
    qa_prompt(question) + &qa_continuation(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qa_text_is_prompt_plus_continuation() {
        let t = qa_text("Where was Mara Velkin born?", "Orlen");
        assert_eq!(t, "Question: Where was Mara Velkin born?\nAnswer: Orlen");
        assert_eq!(t, qa_prompt("Where was Mara Velkin born?") + &qa_continuation("Orlen"));
    }

    #[test]
    fn verbmem_split_cuts_at_a_word_boundary() {
        let d = Document {
            id: 0,
            role: Role::Forget,
            kind: DocKind::Bio,
            unit: None,
            text: "a bb ccc dddd".into(),
            pair: None,
        };
        // 4 words, half = 2 words in the prefix.
        assert_eq!(d.verbmem_split(0.5), ("a bb".to_string(), " ccc dddd".to_string()));
        // never an empty prefix
        assert_eq!(d.verbmem_split(0.0), ("a".to_string(), " bb ccc dddd".to_string()));
        let (p, c) = d.verbmem_split(1.0);
        assert_eq!(p + &c, d.text);
    }
}
