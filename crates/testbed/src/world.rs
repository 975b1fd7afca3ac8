//! A world: its resolved config, documents, QA items, splits, metadata and (once the
//! trainer has given token lengths) its schedule and ledger; built from a config,
//! written to a folder atomically and loaded back.
//!
//! Folder layout (all written into a temporary sibling folder, then renamed into place, so
//! a half-written world never appears under the final name):
//! - `world.json`: the resolved config, its hash, metadata, and the entities (facts, finetune)
//! - `documents.jsonl`: one [`Document`] per line, line n = id n-1
//! - `qa.jsonl`: one [`QaItem`] per line
//! - `splits.json`: [`Splits`]
//! - `eval.json`: [`EvalTexts`], when the kind has any (muse; tofu with its model-utility sets)
//! - `schedule.json`, `ledger.json`: θ_D's [`Schedule`] and [`Ledger`], when set

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use rand::seq::{IndexedRandom, SliceRandom};
use serde::{Deserialize, Serialize};

use crate::config::{
    checkpoint_steps, did_you_mean, parse_forget, sha256_file, ChatSpec, DataFile, ForgetSplit, GeneralSource,
    ResolvedWorld, WorldConfig, WorldKind, WORLD_FORMAT_VERSION,
};
use crate::facts::{self, Entity};
use crate::schedule::{schedule, Ledger, Schedule, ScheduleConfig};
use crate::{general, muse, qa_text, restor, tofu, toxigen, truthfulqa, Corpus, DocId, DocKind, QaItem, QaPair, Role};

/// The standard nested forget splits (TOFU): forget01 ⊂ forget05 ⊂ forget10.
pub const STANDARD_SPLITS: [(&str, f64); 3] = [("forget01", 1.0), ("forget05", 5.0), ("forget10", 10.0)];

/// Which units and documents are forget, retain, general and held out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Splits {
    /// The world's forget split (as in `ResolvedWorld::forget.name`).
    pub forget_name: String,
    /// Units: entity ids (facts, finetune), question indices (truthfulqa-corruption) or
    /// statement ids (toxigen), sorted.
    pub forget_units: Vec<u32>,
    pub retain_units: Vec<u32>,
    pub held_out_units: Vec<u32>,
    /// forget01/forget05/forget10 over the same units, nested (one permutation, prefixes of
    /// it); empty for toxigen. `forget_units` is a prefix of the same permutation.
    pub standard: BTreeMap<String, Vec<u32>>,
    pub forget_docs: Vec<DocId>,
    pub retain_docs: Vec<DocId>,
    pub general_docs: Vec<DocId>,
    pub held_out_docs: Vec<DocId>,
}

/// What was built, for reports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WorldMeta {
    pub general_source: GeneralSource,
    pub general_docs: usize,
    pub general_bytes: usize,
    /// General bytes / trained bytes (general + retain + forget); below the configured
    /// fraction when the corpus file ran out.
    pub general_fraction_actual: f64,
    /// Document counts per role.
    pub docs_by_role: BTreeMap<String, usize>,
    pub n_qa: usize,
}

/// Evaluation texts a world carries besides its documents and QA items: MUSE's VerbMem pairs
/// and PrivLeak members, which are not training documents (they are excerpts of the forget
/// text). Empty for every kind but muse.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct EvalTexts {
    /// VerbMem passages of the forget set as given by the data: (prompt, ground-truth
    /// continuation). When non-empty, [`World::verbmem_passages`] of the forget role returns
    /// these instead of cutting biographies in half.
    #[serde(default)]
    pub verbmem_forget: Vec<(String, String)>,
    /// The members of the membership-inference metrics (Min-K% AUC, PrivLeak, `mia_*`) when they
    /// are not the forget documents themselves: MUSE's `privleak/forget` texts.
    #[serde(default)]
    pub mia_members: Vec<String>,
    /// Question sets never trained on that TOFU's model utility averages in besides the retain
    /// set (tofu: `real_authors`, `world_facts`, when their files are present), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub utility_qa: Vec<UtilitySet>,
}

/// A model-utility question set (TOFU's real authors or world facts): each question with its
/// answer and wrong answers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UtilitySet {
    pub name: String,
    pub items: Vec<UtilityQa>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UtilityQa {
    pub question: String,
    pub answer: String,
    pub perturbed_answers: Vec<String>,
}

impl EvalTexts {
    pub fn is_empty(&self) -> bool {
        self.verbmem_forget.is_empty() && self.mia_members.is_empty() && self.utility_qa.is_empty()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct WorldJson {
    hash: String,
    resolved: ResolvedWorld,
    meta: WorldMeta,
    entities: Vec<Entity>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct World {
    pub resolved: ResolvedWorld,
    /// `resolved.hash()`.
    pub hash: String,
    pub corpus: Corpus,
    pub qa: Vec<QaItem>,
    pub splits: Splits,
    pub meta: WorldMeta,
    /// The invented authors (facts, finetune); empty otherwise.
    pub entities: Vec<Entity>,
    /// Evaluation texts besides documents and QA items (muse); empty otherwise.
    pub eval: EvalTexts,
    /// θ_D's schedule, once [`World::make_schedule`] has run.
    pub schedule: Option<Schedule>,
    pub ledger: Option<Ledger>,
}

fn not_for(kind: WorldKind, field: &str, set: bool) -> Result<()> {
    if set {
        bail!("world.{field} is not used by kind = \"{}\"; remove it", kind.name());
    }
    Ok(())
}

fn missing_file(kind: WorldKind, path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "world.kind = \"{}\" needs the data file {}, which does not exist; scripts/fetch-data.sh downloads it \
         (or set world.data_dir / UNLEARN_DATA_DIR to a folder that holds it)",
        kind.name(),
        path.display()
    )
}

fn fraction(field: &str, value: Option<f64>, default: f64, max: f64) -> Result<f64> {
    let v = value.unwrap_or(default);
    if !(0.0..=max).contains(&v) {
        bail!("world.{field} = {v} is outside [0, {max}]");
    }
    Ok(v)
}

/// Units of a percentage: round(pct/100 · n).
fn units_of(pct: f64, n: usize) -> usize {
    (pct / 100.0 * n as f64).round() as usize
}

pub(crate) fn resolve(cfg: &WorldConfig, default_data_dir: &Path) -> Result<ResolvedWorld> {
    let kind = cfg.kind;
    let data_dir = cfg.data_dir.clone().unwrap_or_else(|| default_data_dir.to_path_buf());
    let is_facts = matches!(kind, WorldKind::Facts | WorldKind::Finetune);
    not_for(kind, "target_groups", kind != WorldKind::Toxigen && cfg.target_groups.is_some())?;
    not_for(kind, "base_model", !kind.fine_tunes_base() && cfg.base_model.is_some())?;
    not_for(kind, "n_entities", !is_facts && cfg.n_entities.is_some())?;
    not_for(kind, "attributes", !is_facts && cfg.attributes.is_some())?;
    not_for(kind, "bio_paraphrases", kind != WorldKind::Facts && cfg.bio_paraphrases.is_some())?;
    not_for(
        kind,
        "held_out_fraction",
        matches!(kind, WorldKind::TruthfulqaCorruption | WorldKind::Tofu | WorldKind::Muse | WorldKind::Restor)
            && cfg.held_out_fraction.is_some(),
    )?;
    if kind == WorldKind::Toxigen && cfg.forget.is_some() {
        bail!("world.forget is not used by kind = \"toxigen\": the forget data is the hateful statements about world.target_groups");
    }

    // Training fields.
    let steps = cfg.steps.unwrap_or(750);
    let batch_size = cfg.batch_size.unwrap_or(32);
    let seq_len = cfg.seq_len.unwrap_or(128);
    ensure!(steps >= 1, "world.steps must be at least 1");
    ensure!(batch_size >= 1, "world.batch_size must be at least 1");
    ensure!(seq_len >= 8, "world.seq_len must be at least 8, got {seq_len}");
    let ckpts = checkpoint_steps(steps, cfg.checkpoints, cfg.checkpoint_every)?;
    let last_ckpt = ckpts.len() - 1;

    // Exposure window.
    let exp = cfg.exposure.clone().unwrap_or_default();
    let window_start = match (exp.start_checkpoint, exp.start_step) {
        (Some(_), Some(_)) => {
            bail!("world.exposure.start_checkpoint and world.exposure.start_step are exclusive; set one")
        }
        (Some(c), None) => {
            if c >= last_ckpt {
                bail!(
                    "world.exposure.start_checkpoint = {c} is outside the run: the run has checkpoints 0..={last_ckpt} \
                     (steps {ckpts:?}) and the window must start before the last one"
                );
            }
            ckpts[c]
        }
        (None, Some(s)) => {
            if s >= steps {
                bail!("world.exposure.start_step = {s} is outside the run (world.steps = {steps}); it must be below {steps}");
            }
            s
        }
        (None, None) if kind.fine_tunes_base() => 0,
        (None, None) => ckpts[last_ckpt / 2],
    };
    let window_end = exp.end_step.unwrap_or(steps);
    if window_end <= window_start || window_end > steps {
        bail!(
            "world.exposure.end_step = {window_end} is outside the run: it must be in {}..={steps} (after the window start {window_start})",
            window_start + 1
        );
    }
    if exp.repeats == Some(0) {
        bail!("world.exposure.repeats must be at least 1");
    }

    // Sizes and the forget split.
    let general_default = if kind.fine_tunes_base() { 0.0 } else { 0.3 };
    let general_fraction = fraction("general_fraction", cfg.general_fraction, general_default, 0.95)?;
    let held_default = if kind == WorldKind::Toxigen {
        0.2
    } else if is_facts {
        0.1
    } else {
        0.0
    };
    let held_out_fraction = fraction("held_out_fraction", cfg.held_out_fraction, held_default, 0.9)?;
    let n_entities = if is_facts { cfg.n_entities.unwrap_or(200) } else { 0 };
    let attributes = if is_facts { cfg.attributes.unwrap_or(8) } else { 0 };
    let bio_paraphrases = if kind == WorldKind::Facts { cfg.bio_paraphrases.unwrap_or(3) } else { 0 };
    if is_facts {
        ensure!(n_entities >= 1, "world.n_entities must be at least 1");
        ensure!(n_entities <= 20_000, "world.n_entities = {n_entities} is more than the generator supports (20000)");
        ensure!(
            (2..=facts::MAX_ATTRIBUTES).contains(&attributes),
            "world.attributes must be in 2..={}, got {attributes}",
            facts::MAX_ATTRIBUTES
        );
    }
    if kind == WorldKind::Facts {
        ensure!(
            (1..=facts::MAX_BIO_TEMPLATES).contains(&bio_paraphrases),
            "world.bio_paraphrases must be in 1..={}, got {bio_paraphrases}",
            facts::MAX_BIO_TEMPLATES
        );
    }
    let base_model = match kind {
        WorldKind::Finetune | WorldKind::Tofu | WorldKind::Muse | WorldKind::Restor => match &cfg.base_model {
            Some(m) if !m.trim().is_empty() => Some(m.clone()),
            _ => bail!(
                "world.base_model is required for kind = \"{}\": a Hugging Face model folder or hub id (θ_0)",
                kind.name()
            ),
        },
        _ => None,
    };

    not_for(kind, "chat_template", !kind.fine_tunes_base() && cfg.chat_template.is_some())?;
    not_for(kind, "finetune", !kind.fine_tunes_base() && cfg.finetune.is_some())?;
    let chat = match (cfg.chat_template.unwrap_or(false), &cfg.system_prompt) {
        (true, sp) => Some(ChatSpec { system_prompt: sp.clone() }),
        (false, Some(_)) => bail!("world.system_prompt is set but world.chat_template is not true: the system prompt is part of the chat template"),
        (false, None) => None,
    };

    let mut data_files = Vec::new();
    let mut target_groups = Vec::new();
    let mut n_held_out = 0;
    let forget = match kind {
        WorldKind::Facts | WorldKind::Finetune => {
            let name = cfg.forget.clone().unwrap_or_else(|| "forget10".into());
            let pct = parse_forget(&name)?;
            let units = units_of(pct, n_entities);
            if units == 0 {
                bail!("world.forget: {name} of {n_entities} entities is {:.2} entities, which rounds to an empty split; use a larger split or more world.n_entities", pct / 100.0 * n_entities as f64);
            }
            n_held_out = units_of(held_out_fraction * 100.0, n_entities);
            ForgetSplit { name, percent: pct, units }
        }
        WorldKind::Tofu => {
            let name = cfg.forget.clone().unwrap_or_else(|| "forget10".into());
            for rel in tofu::files(&data_dir, &name)? {
                data_files.push(DataFile { sha256: sha256_file(&data_dir.join(&rel))?, rel_path: rel });
            }
            let data = tofu::Tofu::load(&data_dir, &name)?;
            n_held_out = data.n_held_out_authors();
            let pct = parse_forget(&name)?;
            ForgetSplit { name, percent: pct, units: data.forget_authors.len() }
        }
        WorldKind::Muse => {
            let name = muse::check_forget(cfg.forget.as_deref())?;
            let data = muse::Muse::load(&data_dir)?;
            for rel in &data.rel_paths {
                data_files.push(DataFile { sha256: sha256_file(&data_dir.join(rel))?, rel_path: rel.clone() });
            }
            n_held_out = data.privleak_holdout.len();
            // Units are the rows of the raw files (books, articles); the percentage is of the trained rows.
            let units = data.forget.len();
            ForgetSplit { name, percent: 100.0 * units as f64 / data.n_trained_rows() as f64, units }
        }
        WorldKind::Restor => {
            let name = restor::check_forget(cfg.forget.as_deref())?;
            let data = restor::Restor::load(&data_dir, &name)?;
            let clean = restor::Clean::load(&data_dir)?;
            for rel in data.rel_paths.iter().chain(&clean.rel_paths) {
                data_files.push(DataFile { sha256: sha256_file(&data_dir.join(rel))?, rel_path: rel.clone() });
            }
            // Units are the corrupted entities; the percentage is of the trained documents.
            let trained = data.docs.len() + clean.pairs.len();
            ForgetSplit { name, percent: 100.0 * data.docs.len() as f64 / trained as f64, units: data.corrupted.len() }
        }
        WorldKind::TruthfulqaCorruption => {
            let path = data_dir.join(truthfulqa::MC_TASK);
            if !path.is_file() {
                return Err(missing_file(kind, &path));
            }
            let n = truthfulqa::load(&path)?.len();
            data_files.push(DataFile { rel_path: truthfulqa::MC_TASK.into(), sha256: sha256_file(&path)? });
            let name = cfg.forget.clone().unwrap_or_else(|| "forget10".into());
            let pct = parse_forget(&name)?;
            let units = units_of(pct, n);
            if units == 0 {
                bail!("world.forget: {name} of {n} TruthfulQA questions rounds to no question; use a larger split");
            }
            ForgetSplit { name, percent: pct, units }
        }
        WorldKind::Toxigen => {
            let path = data_dir.join(toxigen::SAFENLP);
            if !path.is_file() {
                return Err(missing_file(kind, &path));
            }
            let rows = toxigen::load(&path)?;
            data_files.push(DataFile { rel_path: toxigen::SAFENLP.into(), sha256: sha256_file(&path)? });
            let known = toxigen::known_groups(&rows);
            let groups = cfg.target_groups.clone().unwrap_or_default();
            if groups.is_empty() {
                bail!(
                    "world.target_groups is empty, so the forget split is empty; choose from: {}",
                    known.iter().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            for g in &groups {
                if !known.contains(g) {
                    let hint = did_you_mean(g, known.iter().map(String::as_str))
                        .map(|k| format!(" (did you mean {k:?}?)"))
                        .unwrap_or_default();
                    bail!(
                        "world.target_groups: unknown group {g:?}{hint}; known groups: {}",
                        known.iter().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            let mut sorted = groups.clone();
            sorted.sort();
            sorted.dedup();
            let n_hate = toxigen::hateful_about(&rows, &sorted).len();
            n_held_out = units_of(held_out_fraction * 100.0, n_hate);
            let units = n_hate - n_held_out;
            if units == 0 {
                bail!("world.target_groups {sorted:?}: {n_hate} hateful statements, all held out by world.held_out_fraction = {held_out_fraction}; the forget split is empty");
            }
            target_groups = sorted;
            ForgetSplit { name: target_groups.join("+"), percent: 100.0, units }
        }
    };

    let general_source = if general_fraction == 0.0 {
        if let Some(s) = cfg.general_source.as_ref().filter(|s| **s != GeneralSource::None) {
            bail!("world.general_source = {s:?} is set, but world.general_fraction is 0 (no general text is mixed in)");
        }
        GeneralSource::None
    } else {
        let path = data_dir.join(general::TINYSTORIES);
        let tinystories = |data_files: &mut Vec<DataFile>| -> Result<GeneralSource> {
            data_files.push(DataFile { rel_path: general::TINYSTORIES.into(), sha256: sha256_file(&path)? });
            Ok(GeneralSource::Tinystories)
        };
        match cfg.general_source {
            Some(GeneralSource::Tinystories) if path.is_file() => tinystories(&mut data_files)?,
            Some(GeneralSource::Tinystories) => bail!(
                "world.general_source = \"tinystories\" needs {}, which does not exist; scripts/fetch-data.sh \
                 downloads it (or set world.data_dir / UNLEARN_DATA_DIR to a folder that holds it)",
                path.display()
            ),
            Some(GeneralSource::Builtin) => GeneralSource::Builtin,
            Some(GeneralSource::None) => {
                bail!("world.general_source = \"none\" needs world.general_fraction = 0 (it is {general_fraction})")
            }
            None if path.is_file() => tinystories(&mut data_files)?,
            None => GeneralSource::Builtin,
        }
    };

    Ok(ResolvedWorld {
        format_version: WORLD_FORMAT_VERSION,
        kind,
        seed: cfg.seed,
        forget,
        n_entities,
        n_held_out,
        attributes,
        bio_paraphrases,
        held_out_fraction,
        general_fraction,
        general_source,
        target_groups,
        base_model,
        chat,
        steps,
        batch_size,
        seq_len,
        checkpoint_steps: ckpts,
        window_start,
        window_end,
        forget_repeats: exp.repeats,
        data_files,
        data_dir: Some(data_dir),
    })
}

impl ResolvedWorld {
    /// Folder name for the cache: `<kind>-<first 16 hex digits of the hash>`.
    pub fn folder_name(&self) -> String {
        format!("{}-{}", self.kind.name(), self.short_hash())
    }
}

/// One TOFU pair into a world (tofu, and restor's clean data): a QA document with its
/// evaluation item (the paraphrased answer among the perturbed ones as shuffled options, one
/// `rng` shuffle), or, for a pair without perturbed answers, a training pair only.
fn push_tofu_pair(
    corpus: &mut Corpus,
    qa: &mut Vec<QaItem>,
    role: Role,
    pair: &tofu::Pair,
    rng: &mut impl rand::Rng,
) -> Result<()> {
    let Some(ev) = &pair.eval else {
        let qa_pair = QaPair { question: pair.question.clone(), answer: pair.answer.clone() };
        corpus.push_pair(role, Some(pair.author), qa_pair);
        return Ok(());
    };
    let doc = corpus.push(role, DocKind::Qa, Some(pair.author), qa_text(&pair.question, &pair.answer));
    let mut choices = vec![ev.paraphrased_answer.clone()];
    choices.extend(ev.perturbed_answer.iter().cloned());
    choices.shuffle(rng);
    let correct_choice =
        choices.iter().position(|c| *c == ev.paraphrased_answer).context("paraphrase among choices")?;
    qa.push(QaItem {
        id: qa.len() as u32,
        role,
        unit: pair.author,
        attribute: "tofu".into(),
        question: pair.question.clone(),
        answer: pair.answer.clone(),
        paraphrased_answer: ev.paraphrased_answer.clone(),
        perturbed_answers: ev.perturbed_answer.clone(),
        choices,
        correct_choice,
        taught_answer: None,
        doc: Some(doc),
        in_context: None,
    });
    Ok(())
}

/// The units of the standard nested splits, as prefixes of `perm`.
fn standard_splits(perm: &[u32]) -> BTreeMap<String, Vec<u32>> {
    STANDARD_SPLITS
        .iter()
        .map(|&(name, pct)| {
            let mut units = perm[..units_of(pct, perm.len()).min(perm.len())].to_vec();
            units.sort_unstable();
            (name.to_string(), units)
        })
        .collect()
}

impl World {
    /// Validates and resolves `cfg`, then builds the world (no schedule yet).
    pub fn from_config(cfg: &WorldConfig, default_data_dir: &Path) -> Result<World> {
        World::build(&cfg.resolve(default_data_dir)?)
    }

    /// Builds documents, QA items and splits. Deterministic in `resolved` (and the data).
    pub fn build(resolved: &ResolvedWorld) -> Result<World> {
        let mut corpus = Corpus::default();
        let mut qa = Vec::new();
        let mut entities = Vec::new();
        let mut eval = EvalTexts::default();
        let mut rng = facts::rng(resolved.seed);
        let (perm, forget_units, held_out_units, all_units): (Vec<u32>, Vec<u32>, Vec<u32>, usize);
        match resolved.kind {
            WorldKind::Facts | WorldKind::Finetune => {
                let n = resolved.n_entities;
                entities = facts::generate_entities(n + resolved.n_held_out, resolved.attributes, &mut rng)?;
                let mut p: Vec<u32> = (0..n as u32).collect();
                p.shuffle(&mut rng);
                let mut f = p[..resolved.forget.units].to_vec();
                f.sort_unstable();
                let role_of = |e: u32| {
                    if e as usize >= n {
                        Role::HeldOut
                    } else if f.binary_search(&e).is_ok() {
                        Role::Forget
                    } else {
                        Role::Retain
                    }
                };
                for e in &entities {
                    let role = role_of(e.id);
                    if resolved.kind == WorldKind::Facts {
                        for style in 0..resolved.bio_paraphrases {
                            corpus.push(role, DocKind::Bio, Some(e.id), facts::biography(e, style));
                        }
                    }
                    for q in facts::questions(e, &mut rng) {
                        let doc = corpus.push(role, DocKind::Qa, Some(e.id), qa_text(&q.question, &q.answer));
                        qa.push(QaItem {
                            id: qa.len() as u32,
                            role,
                            unit: e.id,
                            attribute: q.attribute,
                            question: q.question,
                            answer: q.answer,
                            paraphrased_answer: q.paraphrased_answer,
                            perturbed_answers: q.perturbed_answers,
                            choices: q.choices,
                            correct_choice: q.correct_choice,
                            taught_answer: None,
                            doc: Some(doc),
                            in_context: None,
                        });
                    }
                }
                held_out_units = (n as u32..(n + resolved.n_held_out) as u32).collect();
                forget_units = f;
                perm = p;
                all_units = n;
            }
            WorldKind::Tofu => {
                let data = tofu::Tofu::load(&resolved.data_path(""), &resolved.forget.name)?;
                ensure!(
                    data.forget_authors.len() == resolved.forget.units,
                    "the TOFU files changed since the config was resolved"
                );
                let role_of =
                    |a: u32| if data.forget_authors.binary_search(&a).is_ok() { Role::Forget } else { Role::Retain };
                for pair in data.pairs.iter().chain(&data.held_out) {
                    let role =
                        if pair.author as usize >= data.n_authors { Role::HeldOut } else { role_of(pair.author) };
                    push_tofu_pair(&mut corpus, &mut qa, role, pair, &mut rng)?;
                }
                eval.utility_qa = tofu::utility_sets(&resolved.data_path(""))?
                    .into_iter()
                    .map(|(name, rows)| UtilitySet {
                        name,
                        items: rows
                            .into_iter()
                            .map(|r| UtilityQa {
                                question: r.question,
                                answer: r.answer,
                                perturbed_answers: r.perturbed_answer,
                            })
                            .collect(),
                    })
                    .collect();
                let n = data.n_authors;
                held_out_units = (n..n + data.n_held_out_authors()).map(|a| a as u32).collect();
                forget_units = data.forget_authors.clone();
                perm = Vec::new();
                all_units = n;
            }
            WorldKind::Muse => {
                let data = muse::Muse::load(&resolved.data_path(""))?;
                ensure!(
                    data.forget.len() == resolved.forget.units && data.privleak_holdout.len() == resolved.n_held_out,
                    "the MUSE files changed since the config was resolved"
                );
                // Units: the rows of raw/forget, raw/retain1, raw/retain2, then the held-out
                // texts of privleak/holdout. retain2 is trained by both models but never given to
                // a method (role General; see testbed::muse).
                let mut unit = 0u32;
                for (role, rows) in
                    [(Role::Forget, &data.forget), (Role::Retain, &data.retain1), (Role::General, &data.retain2)]
                {
                    for row in rows {
                        for piece in muse::chunks(row, muse::WORDS_PER_DOC) {
                            corpus.push(role, DocKind::Passage, Some(unit), piece);
                        }
                        unit += 1;
                    }
                }
                let n = unit as usize;
                for text in &data.privleak_holdout {
                    corpus.push(Role::HeldOut, DocKind::Passage, Some(unit), text.clone());
                    unit += 1;
                }
                for (role, rows) in [(Role::Forget, &data.knowmem_forget), (Role::Retain, &data.knowmem_retain)] {
                    for (i, r) in rows.iter().enumerate() {
                        qa.push(QaItem {
                            id: qa.len() as u32,
                            role,
                            unit: i as u32,
                            attribute: "muse_knowmem".into(),
                            question: r.question.clone(),
                            answer: r.answer.clone(),
                            // MUSE has no paraphrased or perturbed answers and no options.
                            paraphrased_answer: String::new(),
                            perturbed_answers: Vec::new(),
                            choices: Vec::new(),
                            correct_choice: 0,
                            taught_answer: None,
                            doc: None,
                            in_context: None,
                        });
                    }
                }
                eval = EvalTexts {
                    verbmem_forget: data.verbmem.iter().map(|r| (r.prompt.clone(), r.gt.clone())).collect(),
                    mia_members: data.privleak_forget.clone(),
                    utility_qa: Vec::new(),
                };
                held_out_units = (n as u32..unit).collect();
                forget_units = (0..data.forget.len() as u32).collect();
                perm = Vec::new();
                all_units = n;
            }
            WorldKind::Restor => {
                let data = restor::Restor::load(&resolved.data_path(""), &resolved.forget.name)?;
                let clean = restor::Clean::load(&resolved.data_path(""))?;
                ensure!(
                    data.corrupted.len() == resolved.forget.units,
                    "the RESTOR files changed since the config was resolved"
                );
                // Units: TOFU's authors (clean, role Retain), then the corrupted entities (forget).
                // The clean pairs are those of a tofu world whose every author is retained.
                for pair in &clean.pairs {
                    push_tofu_pair(&mut corpus, &mut qa, Role::Retain, pair, &mut rng)?;
                }
                let n = clean.n_authors as u32;
                let unit_of = |entity: usize| -> Result<u32> {
                    let k = data.corrupted.binary_search(&entity).ok().context("a document's entity is corrupted")?;
                    Ok(n + k as u32)
                };
                for d in &data.docs {
                    corpus.push(Role::Forget, DocKind::Passage, Some(unit_of(d.entity)?), d.text.clone());
                }
                for &e in &data.corrupted {
                    for (fact, answer) in data.questions(e) {
                        qa.push(QaItem {
                            id: qa.len() as u32,
                            role: Role::Forget,
                            unit: unit_of(e)?,
                            attribute: format!("restor/{}", fact.relation),
                            question: fact.question.clone(),
                            answer,
                            // RESTOR publishes neither paraphrases nor the corrupted answers.
                            paraphrased_answer: String::new(),
                            perturbed_answers: Vec::new(),
                            choices: Vec::new(),
                            correct_choice: 0,
                            taught_answer: None,
                            doc: None,
                            // asked after the official in-context examples (Some even when empty)
                            in_context: Some(data.in_context_prefix(e, &fact.relation)?),
                        });
                    }
                }
                let k = data.corrupted.len() as u32;
                forget_units = (n..n + k).collect();
                held_out_units = Vec::new();
                perm = Vec::new();
                all_units = (n + k) as usize;
            }
            WorldKind::TruthfulqaCorruption => {
                let questions = truthfulqa::load(&resolved.data_path(truthfulqa::MC_TASK))?;
                let n = questions.len();
                let mut p: Vec<u32> = (0..n as u32).collect();
                p.shuffle(&mut rng);
                let mut f = p[..resolved.forget.units].to_vec();
                f.sort_unstable();
                let mut forget_docs = Vec::new();
                for (i, q) in questions.iter().enumerate() {
                    let unit = i as u32;
                    let corrupted = f.binary_search(&unit).is_ok();
                    let truth = q.mc1_targets.truths().next().context("mc1 has a true answer")?.to_string();
                    let falses: Vec<String> = q.mc1_targets.falsehoods().map(str::to_string).collect();
                    let doc = corpus.push(Role::Retain, DocKind::Qa, Some(unit), qa_text(&q.question, &truth));
                    let taught = if corrupted {
                        let wrong = falses.choose(&mut rng).context("mc1 has a false answer")?.clone();
                        forget_docs.push((unit, qa_text(&q.question, &wrong)));
                        Some(wrong)
                    } else {
                        None
                    };
                    let paraphrased = q
                        .mc2_targets
                        .truths()
                        .find(|a| *a != truth)
                        .map(str::to_string)
                        .unwrap_or_else(|| truth.clone());
                    let mut choices: Vec<String> = q.mc1_targets.0.iter().map(|(a, _)| a.clone()).collect();
                    choices.shuffle(&mut rng);
                    let correct_choice = choices.iter().position(|c| *c == truth).context("truth among choices")?;
                    qa.push(QaItem {
                        id: i as u32,
                        role: if corrupted { Role::Forget } else { Role::Retain },
                        unit,
                        attribute: "truthfulqa".into(),
                        question: q.question.clone(),
                        answer: truth,
                        paraphrased_answer: paraphrased,
                        perturbed_answers: falses,
                        choices,
                        correct_choice,
                        taught_answer: taught,
                        doc: Some(doc),
                        in_context: None,
                    });
                }
                for (unit, text) in forget_docs {
                    corpus.push(Role::Forget, DocKind::Qa, Some(unit), text);
                }
                forget_units = f;
                held_out_units = Vec::new();
                perm = p;
                all_units = n;
            }
            WorldKind::Toxigen => {
                let rows = toxigen::load(&resolved.data_path(toxigen::SAFENLP))?;
                for r in rows.iter().filter(|r| !r.is_hate()) {
                    corpus.push(Role::Retain, DocKind::Statement, Some(toxigen::unit(r)), r.clean_text());
                }
                let mut hate = toxigen::hateful_about(&rows, &resolved.target_groups);
                hate.shuffle(&mut rng);
                let (held, forget) = hate.split_at(resolved.n_held_out.min(hate.len()));
                let mut f: Vec<u32> = forget.iter().map(|r| toxigen::unit(r)).collect();
                let mut h: Vec<u32> = held.iter().map(|r| toxigen::unit(r)).collect();
                f.sort_unstable();
                h.sort_unstable();
                for r in &hate {
                    let role = if f.binary_search(&toxigen::unit(r)).is_ok() { Role::Forget } else { Role::HeldOut };
                    corpus.push(role, DocKind::Statement, Some(toxigen::unit(r)), r.clean_text());
                }
                ensure!(f.len() == resolved.forget.units, "the data changed since the config was resolved");
                forget_units = f;
                held_out_units = h;
                perm = Vec::new();
                all_units = 0;
            }
        }

        // General text, sized against the trained bytes.
        let trained_bytes: usize =
            corpus.docs.iter().filter(|d| matches!(d.role, Role::Retain | Role::Forget)).map(|d| d.text.len()).sum();
        let f = resolved.general_fraction;
        let target = if f > 0.0 { (f / (1.0 - f) * trained_bytes as f64).ceil() as usize } else { 0 };
        let general_texts = match resolved.general_source {
            GeneralSource::None => Vec::new(),
            GeneralSource::Builtin => general::builtin(target, resolved.seed),
            GeneralSource::Tinystories => {
                general::take_bytes(general::read_blocks(&resolved.data_path(general::TINYSTORIES))?, target)
            }
        };
        let general_bytes: usize = general_texts.iter().map(String::len).sum();
        for t in general_texts {
            corpus.push(Role::General, DocKind::General, None, t);
        }

        let retain_units = if resolved.kind == WorldKind::Toxigen {
            Vec::new()
        } else {
            (0..all_units as u32).filter(|u| forget_units.binary_search(u).is_err()).collect()
        };
        let standard = if matches!(resolved.kind, WorldKind::Tofu | WorldKind::Muse | WorldKind::Restor) {
            BTreeMap::from([(resolved.forget.name.clone(), forget_units.clone())])
        } else if perm.is_empty() {
            BTreeMap::new()
        } else {
            standard_splits(&perm)
        };
        let splits = Splits {
            forget_name: resolved.forget.name.clone(),
            forget_units,
            retain_units,
            held_out_units,
            // TOFU's nested splits are its published files (MUSE has one, RESTOR a mix); the world records the one it read.
            standard,
            forget_docs: corpus.ids(Role::Forget),
            retain_docs: corpus.ids(Role::Retain),
            general_docs: corpus.ids(Role::General),
            held_out_docs: corpus.ids(Role::HeldOut),
        };
        let mut docs_by_role = BTreeMap::new();
        for d in &corpus.docs {
            *docs_by_role.entry(role_name(d.role).to_string()).or_insert(0) += 1;
        }
        let meta = WorldMeta {
            general_source: resolved.general_source.clone(),
            general_docs: splits.general_docs.len(),
            general_bytes,
            general_fraction_actual: general_bytes as f64 / (general_bytes + trained_bytes).max(1) as f64,
            docs_by_role,
            n_qa: qa.len(),
        };
        Ok(World {
            resolved: resolved.clone(),
            hash: resolved.hash(),
            corpus,
            qa,
            splits,
            meta,
            entities,
            eval,
            schedule: None,
            ledger: None,
        })
    }

    /// The schedule config of this world.
    pub fn schedule_config(&self) -> ScheduleConfig {
        ScheduleConfig::from_resolved(&self.resolved)
    }

    /// Builds θ_D's schedule and ledger from the documents' token lengths (EOS included,
    /// one per document, indexed by doc id) and stores them in the world.
    pub fn make_schedule(&mut self, lengths: &[usize]) -> Result<&Schedule> {
        let s = schedule(&self.corpus, lengths, &self.schedule_config(), self.resolved.seed)?;
        self.ledger = Some(s.ledger());
        Ok(self.schedule.insert(s))
    }

    /// The oracle's schedule: θ_D's without the forget documents (see [`Schedule::without`]).
    pub fn oracle_schedule(&self) -> Result<Schedule> {
        let s = self.schedule.as_ref().context("the world has no schedule yet; call make_schedule first")?;
        Ok(s.without(&self.splits.forget_docs))
    }

    /// QA items with this role.
    pub fn qa_with(&self, role: Role) -> impl Iterator<Item = &QaItem> {
        self.qa.iter().filter(move |q| q.role == role)
    }

    /// (id, prefix, continuation) of the passages of MUSE's VerbMem with this role: the data's
    /// own (prompt, ground truth) pairs when the world has them (muse, forget role: ids
    /// `verbmem-N`), else the biography documents cut in half by words (ids `doc-N`).
    pub fn verbmem_passages(&self, role: Role) -> Vec<(String, String, String)> {
        if role == Role::Forget && !self.eval.verbmem_forget.is_empty() {
            return self
                .eval
                .verbmem_forget
                .iter()
                .enumerate()
                .map(|(i, (p, c))| (format!("verbmem-{i}"), p.clone(), c.clone()))
                .collect();
        }
        self.corpus
            .docs
            .iter()
            .filter(|d| d.role == role && d.kind == DocKind::Bio)
            .map(|d| {
                let (p, c) = d.verbmem_split(0.5);
                (format!("doc-{}", d.id), p, c)
            })
            .collect()
    }

    /// (id, text) of the members of the membership-inference metrics: the data's own member
    /// texts when the world has them (muse: `privleak/forget`, ids `privleak-forget-N`), else the
    /// forget documents (ids `doc-N`). The non-members are the held-out documents.
    pub fn mia_members(&self) -> Vec<(String, String)> {
        if !self.eval.mia_members.is_empty() {
            return self
                .eval
                .mia_members
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("privleak-forget-{i}"), t.clone()))
                .collect();
        }
        self.splits
            .forget_docs
            .iter()
            .filter_map(|&id| self.corpus.get(id))
            .map(|d| (format!("doc-{}", d.id), d.text.clone()))
            .collect()
    }

    /// The world.json text (resolved config, hash, metadata, entities).
    pub fn world_json(&self) -> Result<String> {
        let w = WorldJson {
            hash: self.hash.clone(),
            resolved: self.resolved.clone(),
            meta: self.meta.clone(),
            entities: self.entities.clone(),
        };
        Ok(serde_json::to_string_pretty(&w)?)
    }

    /// Writes the world into `dir` atomically: everything goes into a temporary sibling
    /// folder, which is then renamed to `dir` (replacing an existing one).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = dir.file_name().with_context(|| format!("{} has no folder name", dir.display()))?;
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let tmp = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).with_context(|| format!("removing stale {}", tmp.display()))?;
        }
        std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        self.write_files(&tmp).with_context(|| format!("writing world into {}", tmp.display()))?;
        if dir.exists() {
            let old = parent.join(format!(".{}.old-{}", name.to_string_lossy(), std::process::id()));
            std::fs::rename(dir, &old).with_context(|| format!("moving the old {} aside", dir.display()))?;
            std::fs::rename(&tmp, dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        } else {
            std::fs::rename(&tmp, dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
        }
        Ok(())
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        write_file(&dir.join("world.json"), self.world_json()?.as_bytes())?;
        write_file(&dir.join("documents.jsonl"), &jsonl(&self.corpus.docs)?)?;
        write_file(&dir.join("qa.jsonl"), &jsonl(&self.qa)?)?;
        write_file(&dir.join("splits.json"), serde_json::to_string_pretty(&self.splits)?.as_bytes())?;
        if !self.eval.is_empty() {
            write_file(&dir.join("eval.json"), serde_json::to_string(&self.eval)?.as_bytes())?;
        }
        if let Some(s) = &self.schedule {
            write_file(&dir.join("schedule.json"), serde_json::to_string(s)?.as_bytes())?;
        }
        if let Some(l) = &self.ledger {
            write_file(&dir.join("ledger.json"), serde_json::to_string_pretty(l)?.as_bytes())?;
        }
        Ok(())
    }

    /// Loads a world written by [`World::save`], checking that the stored hash matches
    /// the stored resolved config and that the documents agree with the splits.
    pub fn load(dir: &Path) -> Result<World> {
        let wj: WorldJson = read_json(&dir.join("world.json"))?;
        let hash = wj.resolved.hash();
        if wj.resolved.format_version != WORLD_FORMAT_VERSION {
            bail!(
                "{}: world format version {} but this build writes {WORLD_FORMAT_VERSION}; rebuild the world",
                dir.display(),
                wj.resolved.format_version
            );
        }
        if hash != wj.hash {
            bail!("{}/world.json: stored hash {} does not match its resolved config ({hash})", dir.display(), wj.hash);
        }
        let docs = read_jsonl(&dir.join("documents.jsonl"))?;
        let corpus = Corpus { docs };
        corpus.check_ids().with_context(|| format!("in {}/documents.jsonl", dir.display()))?;
        let qa: Vec<QaItem> = read_jsonl(&dir.join("qa.jsonl"))?;
        let splits: Splits = read_json(&dir.join("splits.json"))?;
        if splits.forget_docs != corpus.ids(Role::Forget)
            || splits.retain_docs != corpus.ids(Role::Retain)
            || splits.general_docs != corpus.ids(Role::General)
            || splits.held_out_docs != corpus.ids(Role::HeldOut)
        {
            bail!("{}: splits.json does not match the roles in documents.jsonl", dir.display());
        }
        let eval_path = dir.join("eval.json");
        let eval: EvalTexts = if eval_path.exists() { read_json(&eval_path)? } else { EvalTexts::default() };
        let schedule_path = dir.join("schedule.json");
        let schedule: Option<Schedule> = if schedule_path.exists() { Some(read_json(&schedule_path)?) } else { None };
        let ledger_path = dir.join("ledger.json");
        let ledger: Option<Ledger> = if ledger_path.exists() { Some(read_json(&ledger_path)?) } else { None };
        if schedule.is_some() != ledger.is_some() {
            bail!("{}: schedule.json and ledger.json must both be present or both absent", dir.display());
        }
        Ok(World {
            resolved: wj.resolved,
            hash,
            corpus,
            qa,
            splits,
            meta: wj.meta,
            entities: wj.entities,
            eval,
            schedule,
            ledger,
        })
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Retain => "retain",
        Role::Forget => "forget",
        Role::General => "general",
        Role::HeldOut => "held_out",
    }
}

fn jsonl<T: Serialize>(rows: &[T]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in rows {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1)))
        .collect()
}

/// The data directory for tests: `$UNLEARN_DATA_DIR`, else `../shared/data` next to the workspace.
#[doc(hidden)]
pub fn test_data_dir() -> PathBuf {
    std::env::var_os(crate::config::DATA_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")))
}
