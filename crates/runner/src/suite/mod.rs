//! The evaluation suite of a sweep: which metrics, on which items of a testbed world, scored
//! in one pass per model (issue 5).
//!
//! [`EvalSuite::from_world`] picks the items once (deterministically, evenly spaced when a
//! split is capped by [`EvalLimits`]); [`EvalSuite::oracle_pass`] scores the oracle once for
//! what the two-model metrics need ([`OracleRefs`], cacheable as JSON); [`EvalSuite::evaluate`]
//! then scores any model with ONE `evals::evaluate` call (one `Scorer::run`, lm-eval style),
//! plus the parameter distance to the oracle, which needs no forward pass.
//!
//! Which items each metric uses:
//! - TOFU (`tofu_*`) and MUSE KnowMem: the world's QA items with role Forget / Retain, in the
//!   format `"Question: {q}\nAnswer:"` + `" {a}"` (`testbed::qa_prompt`); forget quality = KS
//!   p-value of this model's forget truth ratios against the oracle's;
//! - `acc_forget`, `acc_recover` (forget QA items) and `acc_retain` (retain QA items), the MSA
//!   paper's judged accuracies (`evals::judge`): the model's greedy answer (the prompt, stop
//!   string and `answer_new_tokens` of TOFU ROUGE and KnowMem) against the candidates ground
//!   truth, the oracle's greedy answer to the same prompt and the wrong answers in the ground
//!   truth's form (the perturbed answers, or the wrong options where those are in the answer's
//!   form: [`EvalSuite::judged_qa`]), closest by ROUGE-L F1; the oracle's answers are generated once per world in the oracle pass
//!   ([`OracleRefs::forget_answers`], [`OracleRefs::retain_answers`]);
//! - MUSE VerbMem: `world.verbmem_passages(Role::Forget)` (biographies cut in half; in a muse
//!   world, MUSE's own `verbmem/forget` prompts and ground-truth continuations);
//! - Min-K% AUC and PrivLeak: `world.mia_members()` (the forget documents; in a muse world,
//!   MUSE's `privleak/forget` texts) vs held-out documents (never trained);
//! - QA items without paraphrased and perturbed answers (muse: MUSE's KnowMem has question and
//!   answer only) skip the truth-ratio metrics (`tofu_truth_ratio_*`, `tofu_forget_quality`,
//!   `tofu_model_utility`); items without options skip `mc_accuracy`;
//! - `kl_to_oracle` and `perplexity`: forget, retain and general documents (records `NAME/forget`,
//!   `NAME/retain`, `NAME/general`; the record `NAME` is the forget value);
//! - `mc_accuracy` (defined here): multiple choice over the QA items' `choices`, scored by the
//!   log-likelihood of `" " + choice` after the QA prompt; argmax (first of ties) = correct;
//!   records `mc_accuracy/forget`, `mc_accuracy/retain`, `mc_accuracy` = forget;
//! - RESTOR (`restor_*`, truthfulqa-corruption): the corrupted questions, clean vs taught answer;
//! - `truthfulqa_mc1/2`: `truthfulqa/mc_task.json` from the data directory, on the corrupted
//!   questions in a truthfulqa-corruption world, on all 817 (or `max_truthfulqa`) otherwise;
//!   `toxigen*`: `toxigen/` of the data directory (lm-eval's test split, ids below 940);
//! - `param_distance_to_oracle` = ‖θ − θ_oracle‖ / ‖θ_D − θ_oracle‖ (`model_state::distance`).
//!
//! A metric that cannot be computed in this world (e.g. VerbMem without biographies, or
//! `toxigen_generation` without a classifier) is recorded with value NaN and its reason in
//! `MetricRecord::skipped`. Sub-values of a metric become records `NAME/SUB` (counts, standard
//! errors and confidence bounds stay in the per-metric JSON only).
//!
//! Layout: this file holds [`EvalSuite`] and its passes; `items` chooses what is scored,
//! `plan` builds each pass's metric objects, `records` turns outputs into stored records,
//! `refs` holds the oracle's cached values, `limits` the caps, `mc` the `mc_accuracy` metric.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use evals::judge::{self, Acc, JudgedAccuracy};
use evals::metric::{Metric, MetricOutput};
use evals::muse::{KnowMem, MinKAuc, Passage, PrivLeak, VerbMem};
use evals::recovery::{CleanAnswerAccuracy, CorruptedQa, Recovery};
use evals::tofu::{self, AnswerRouge, ForgetQuality, ModelUtility, Probability, QaTemplate, Side, TruthRatio};
use evals::toxigen::{Classifier, GenerationToxicity, Toxigen, ToxigenConfig, ToxigenLikelihood, ToxigenStatement};
use evals::truthfulqa::{TruthfulQaItem, TruthfulQaMc1, TruthfulQaMc2};
use evals::Request;
use serde::Serialize;
use sha2::{Digest, Sha256};
use testbed::{Role, World, WorldKind};

use crate::scoring::LmScorer;
use crate::store::{Direction, MetricRecord};

mod items;
mod limits;
mod mc;
mod plan;
mod records;
mod refs;

use self::items::{lacks_truth_ratio_answers, load_benchmarks, select_world_items, texts, Items, Shared, Text};
pub use self::limits::EvalLimits;
pub use self::mc::{McAccuracy, McItem};
use self::plan::Plan;
pub use self::records::declare_targets;
use self::records::{insert_output, nominal_direction, skipped};
pub use self::refs::{KlReference, OracleRefs};

/// Every metric name the suite accepts: the names of `evals::registry::METRICS` (sorted there).
pub fn known_metrics() -> Vec<&'static str> {
    evals::registry::METRICS.iter().map(|m| m.name).collect()
}

/// The metrics a sweep on a world of this kind reports when none are named.
pub fn default_metrics(kind: WorldKind) -> Vec<String> {
    let qa = [
        "tofu_prob_forget",
        "tofu_prob_retain",
        "tofu_rouge_forget",
        "tofu_rouge_retain",
        "tofu_truth_ratio_forget",
        "tofu_truth_ratio_retain",
        "tofu_forget_quality",
        "tofu_model_utility",
        "muse_knowmem_forget",
        "muse_knowmem_retain",
        "mc_accuracy",
    ];
    // The MSA paper's judged accuracies: the QA items of facts, finetune and tofu worlds have
    // the ground truth and perturbed answers they need (not truthfulqa-corruption, whose
    // forget "ground truth" is the clean answer the forget data corrupted).
    let acc = ["acc_forget", "acc_recover", "acc_retain"];
    let oracle = ["perplexity", "kl_to_oracle", "param_distance_to_oracle"];
    let names: Vec<&str> = match kind {
        WorldKind::Facts => qa
            .iter()
            .chain(&acc)
            .chain(&["muse_verbmem", "mink_auc", "muse_privleak"])
            .chain(&oracle)
            .copied()
            .collect(),
        WorldKind::Finetune | WorldKind::Tofu => {
            qa.iter().chain(&acc).chain(&["mink_auc", "muse_privleak"]).chain(&oracle).copied().collect()
        }
        WorldKind::TruthfulqaCorruption => qa
            .iter()
            .chain(&["restor_clean_acc", "restor_recovery", "truthfulqa_mc1", "truthfulqa_mc2"])
            .chain(&oracle)
            .copied()
            .collect(),
        WorldKind::Toxigen => ["toxigen", "toxigen_likelihood", "toxigen_generation", "mink_auc", "muse_privleak"]
            .iter()
            .chain(&oracle)
            .copied()
            .collect(),
        // MUSE's own metrics: its KnowMem items have no paraphrased or perturbed answers and no
        // options, so the TOFU truth-ratio metrics and mc_accuracy do not apply.
        WorldKind::Muse => ["muse_verbmem", "muse_knowmem_forget", "muse_knowmem_retain", "muse_privleak", "mink_auc"]
            .iter()
            .chain(&oracle)
            .copied()
            .collect(),
        // RESTOR: facts about the corrupted entities (no perturbed answers or options: the truth
        // ratio and mc_accuracy are skipped on the forget side) and TOFU's retain questions.
        WorldKind::Restor => qa.iter().chain(&acc).chain(&oracle).copied().collect(),
    };
    names.into_iter().map(String::from).collect()
}

/// Metrics on a world, with the items they use. See the module docs.
pub struct EvalSuite {
    /// Requested metric names, in the order given.
    pub names: Vec<String>,
    pub kind: WorldKind,
    /// Prepend BOS when scoring: true for the testbed's scratch models, false for fine-tuned
    /// Hugging Face models (lm-evaluation-harness semantics).
    pub add_bos: bool,
    pub batch_size: usize,
    pub limits: EvalLimits,
    theta_d: PathBuf,
    items: Items,
    fingerprint: String,
    classifier: Option<Arc<dyn Classifier>>,
    /// The judge of the judged accuracies (`[eval] judge`); none: ROUGE-L F1.
    judge: Option<Arc<dyn judge::Judge>>,
    /// The reference model of `mia_reference_auc` (θ_0), when set.
    mia_reference: Option<PathBuf>,
    /// How QA items become prompts and continuations: `"Question: {q}\nAnswer:"` + `" {a}"`, or
    /// θ_D's chat template around the question (`world.chat_template`; no delimiter).
    qa_template: QaTemplate,
}

impl EvalSuite {
    /// Chooses the items of `world` for the metrics `names`. `data_dir` holds TruthfulQA and
    /// ToxiGen (read only when such a metric is named); `theta_d` is θ_D's checkpoint folder.
    pub fn from_world(
        world: &World,
        names: &[String],
        limits: &EvalLimits,
        data_dir: &Path,
        theta_d: &Path,
    ) -> Result<EvalSuite> {
        let known = known_metrics();
        for (i, n) in names.iter().enumerate() {
            if !known.contains(&n.as_str()) {
                bail!("metrics[{i}]: {}", suggest::unknown_name_message("metric", n, &known));
            }
            if names[..i].contains(n) {
                bail!("metrics[{i}]: metric `{n}` is listed twice");
            }
        }
        let kind = world.resolved.kind;
        let qa_template = match testbed::finetune::ChatQa::for_world(world, theta_d)? {
            Some(chat) => {
                let (prefix, suffix) = chat.affixes(world.qa.iter().map(|q| q.question.as_str()))?;
                QaTemplate { question_prefix: prefix, answer_prefix: suffix, delimiter: String::new() }
            }
            None => QaTemplate::default(),
        };
        check_in_context(world)?;
        let mut items = select_world_items(world, limits)?;
        load_benchmarks(&mut items, names, limits, data_dir, kind, &world.splits.forget_units)?;
        let mut suite = EvalSuite {
            names: names.to_vec(),
            kind,
            add_bos: !kind.fine_tunes_base(),
            batch_size: crate::scoring::DEFAULT_BATCH_SIZE,
            limits: limits.clone(),
            theta_d: theta_d.to_path_buf(),
            items,
            fingerprint: String::new(),
            classifier: None,
            judge: None,
            mia_reference: None,
            qa_template,
        };
        suite.fingerprint = suite.compute_fingerprint(&world.hash)?;
        Ok(suite)
    }

    /// Uses `classifier` for `toxigen_generation` (without one the metric is skipped).
    pub fn set_toxicity_classifier(&mut self, classifier: Arc<dyn Classifier>) {
        self.classifier = Some(classifier);
    }

    /// Judges `acc_forget`, `acc_recover` and `acc_retain` with `judge` instead of ROUGE-L F1
    /// (e.g. [`crate::judge::LmJudge`]).
    pub fn set_judge(&mut self, judge: Arc<dyn judge::Judge>) {
        self.judge = Some(judge);
    }

    /// Uses the checkpoint `dir` (θ_0: the latest clean checkpoint, which never saw the forget
    /// data but shares θ_D's tokenizer and training up to the exposure) as the reference model
    /// of `mia_reference_auc`, computed in the oracle pass. `label` names it in the suite's
    /// fingerprint (so cached references of another reference are not reused). Errors when its
    /// tokenizer differs from θ_D's (the NLLs per token would not compare).
    pub fn set_mia_reference(&mut self, dir: &Path, label: &str) -> Result<()> {
        let tok = |d: &Path| {
            std::fs::read(d.join("tokenizer.json")).with_context(|| format!("{}: no tokenizer.json", d.display()))
        };
        if tok(dir)? != tok(&self.theta_d)? {
            bail!(
                "mia_reference_auc: the reference model {} has another tokenizer than θ_D ({}); \
                 per-token NLLs of two tokenizers do not compare",
                dir.display(),
                self.theta_d.display()
            );
        }
        self.mia_reference = Some(dir.to_path_buf());
        let mut h = Sha256::new();
        h.update(self.fingerprint.as_bytes());
        h.update(b"mia_reference:");
        h.update(label.as_bytes());
        self.fingerprint = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
        Ok(())
    }

    /// Identifies the metric names and chosen items; [`OracleRefs`] computed for another suite
    /// do not fit this one.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether cached oracle references were computed for this suite.
    pub fn refs_are_current(&self, refs: &OracleRefs) -> bool {
        refs.fingerprint == self.fingerprint
    }

    fn compute_fingerprint(&self, world_hash: &str) -> Result<String> {
        let mut h = Sha256::new();
        h.update(world_hash.as_bytes());
        h.update(serde_json::to_string(&self.names)?.as_bytes());
        h.update(serde_json::to_string(&self.limits)?.as_bytes());
        h.update(serde_json::to_string(&self.items)?.as_bytes());
        h.update([u8::from(self.add_bos)]);
        if self.qa_template != QaTemplate::default() {
            h.update(serde_json::to_string(&self.qa_template)?.as_bytes());
        }
        Ok(h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect())
    }

    fn wants(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    fn load_scorer(&self, dir: &Path, device: &Device) -> Result<LmScorer> {
        let mut s = LmScorer::load(dir, device, self.add_bos)?;
        s.batch_size = self.batch_size;
        Ok(s)
    }

    /// Scores the oracle once for the two-model metrics (and θ_D for `restor_recovery`).
    pub fn oracle_pass(&self, oracle_dir: &Path, device: &Device) -> Result<OracleRefs> {
        let mut scorer = self.load_scorer(oracle_dir, device)?;
        let mut refs = self.oracle_pass_with(&mut scorer)?;
        if self.wants("restor_recovery") && !self.items.corrupted.is_empty() {
            drop(scorer);
            let mut theta_d = self.load_scorer(&self.theta_d, device)?;
            let acc = CleanAnswerAccuracy { items: self.corrupted(), template: self.qa_template.clone() };
            let out = evals::evaluate(&mut theta_d, &[&acc]).context("θ_D's clean-answer accuracy")?;
            refs.restor_theta_d_acc = out[0].value.value();
        }
        if let (true, Some(dir)) = (self.wants("mia_reference_auc"), &self.mia_reference) {
            let (f, h) = (texts(&self.items.member_docs), texts(&self.items.holdout_docs));
            if !f.is_empty() && !h.is_empty() {
                let mut reference = self.load_scorer(dir, device)?;
                let requests = evals::mia::MiaReference::reference_requests(&f, &h);
                let (_, responses) = evals::evaluate_with_extra(&mut reference, &[], &requests)
                    .with_context(|| format!("mia_reference_auc: the reference model {}'s pass", dir.display()))?;
                refs.mia_reference_nll =
                    Some(evals::mia::mean_nlls_of(&responses).context("mia_reference_auc: reference model")?);
            }
        }
        if self.wants("param_distance_to_oracle") {
            refs.theta_d_distance = Some(model_state::distance(&self.theta_d, oracle_dir).with_context(|| {
                format!("‖θ_D − θ_oracle‖: {} vs {}", self.theta_d.display(), oracle_dir.display())
            })?);
        }
        Ok(refs)
    }

    /// The oracle's part of [`EvalSuite::oracle_pass`], with a loaded oracle scorer (one
    /// scoring pass). θ_D's values (`restor_theta_d_acc`, `theta_d_distance`) are left unset.
    pub fn oracle_pass_with(&self, oracle: &mut LmScorer) -> Result<OracleRefs> {
        let mut metrics: Vec<Box<dyn Metric>> = Vec::new();
        let mut slots = Vec::new();
        if self.wants("tofu_forget_quality")
            && !self.items.forget_qa.is_empty()
            && lacks_truth_ratio_answers(&self.items.forget_qa).is_none()
        {
            metrics.push(Box::new(TruthRatio::new(
                self.qa(&self.items.forget_qa),
                self.template_of(&self.items.forget_qa),
                Side::Forget,
            )?));
            slots.push("truth_ratio");
        }
        if self.wants("muse_privleak") && !self.items.member_docs.is_empty() && !self.items.holdout_docs.is_empty() {
            metrics.push(Box::new(MinKAuc::new(texts(&self.items.member_docs), texts(&self.items.holdout_docs))?));
            slots.push("mink");
        }
        if self.wants("restor_recovery") && !self.items.corrupted.is_empty() {
            metrics.push(Box::new(CleanAnswerAccuracy { items: self.corrupted(), template: self.qa_template.clone() }));
            slots.push("restor");
        }
        // KL: keep texts while the stored rows fit the budget.
        let vocab = oracle.model.cfg.vocab_size.max(1);
        let mut kl_sets: Vec<(String, Vec<Text>)> = Vec::new();
        if self.wants("kl_to_oracle") {
            for (split, set) in &self.items.kl_sets {
                let mut kept = Vec::new();
                let mut floats = 0usize;
                for t in set {
                    let n = oracle.tok.encode(&t.text)?.len().min(oracle.max_length);
                    if !kept.is_empty() && floats + n * vocab > self.limits.kl_budget_floats {
                        break;
                    }
                    floats += n * vocab;
                    kept.push(t.clone());
                }
                kl_sets.push((split.clone(), kept));
            }
        }
        let mut extra: Vec<Request> = kl_sets
            .iter()
            .flat_map(|(_, s)| s.iter().map(|t| Request::Distributions { text: t.text.clone() }))
            .collect();
        let n_kl = extra.len();
        // The oracle's greedy answers for the judged accuracies, asked as the model's are.
        let answers_for = |wanted: bool, qa: &[testbed::QaItem]| -> Option<Vec<Request>> {
            (wanted && !qa.is_empty())
                .then(|| judge::answer_requests(&self.qa(qa), &self.template_of(qa), self.limits.answer_new_tokens))
        };
        let forget_answers = answers_for(self.wants("acc_forget") || self.wants("acc_recover"), &self.items.forget_qa);
        let retain_answers = answers_for(self.wants("acc_retain"), &self.items.retain_qa);
        for r in [&forget_answers, &retain_answers].into_iter().flatten() {
            extra.extend(r.iter().cloned());
        }
        let refs: Vec<&dyn Metric> = metrics.iter().map(|m| m.as_ref()).collect();
        let (outputs, responses) = evals::evaluate_with_extra(oracle, &refs, &extra).context("the oracle's pass")?;
        let (rows, mut generated) = responses.split_at(n_kl);
        let mut out = OracleRefs::empty(self.fingerprint.clone());
        for (slot, o) in slots.iter().zip(&outputs) {
            match *slot {
                "truth_ratio" => out.forget_truth_ratios = Some(tofu::truth_ratios_of(o)?),
                "mink" => out.mink_auc = Some(PrivLeak::oracle_auc_of(o)?),
                _ => out.restor_oracle_acc = o.value.value(),
            }
        }
        let mut at = 0;
        for (split, set) in kl_sets {
            let r = rows[at..at + set.len()]
                .iter()
                .map(|r| r.distributions().map(<[Vec<f32>]>::to_vec))
                .collect::<Result<Vec<_>>>()?;
            at += set.len();
            out.kl.insert(
                split,
                KlReference { ids: set.iter().map(|t| t.id.clone()).collect(), texts: texts(&set), rows: r },
            );
        }
        let mut take = |requests: Option<Vec<Request>>, side: &str| -> Result<Option<Vec<String>>> {
            let Some(requests) = requests else { return Ok(None) };
            let (mine, rest) = generated.split_at(requests.len());
            generated = rest;
            judge::generated_texts(mine).map(Some).with_context(|| format!("the oracle's {side} answers"))
        };
        out.forget_answers = take(forget_answers, "forget")?;
        out.retain_answers = take(retain_answers, "retain")?;
        Ok(out)
    }

    /// Scores the model in `model_dir`: one scoring pass for all metrics, plus the parameter
    /// distance to the oracle. Keys are metric names, `NAME/SPLIT` and `NAME/SUB`.
    pub fn evaluate(
        &self,
        model_dir: &Path,
        oracle: &OracleRefs,
        oracle_dir: &Path,
        device: &Device,
    ) -> Result<BTreeMap<String, MetricRecord>> {
        let mut scorer = self.load_scorer(model_dir, device)?;
        self.evaluate_with(&mut scorer, model_dir, oracle, oracle_dir)
    }

    /// [`EvalSuite::evaluate`] with a given scorer (called exactly once).
    pub fn evaluate_with(
        &self,
        scorer: &mut dyn evals::Scorer,
        model_dir: &Path,
        oracle: &OracleRefs,
        oracle_dir: &Path,
    ) -> Result<BTreeMap<String, MetricRecord>> {
        if !self.refs_are_current(oracle) {
            bail!(
                "the oracle references were computed for another evaluation suite (fingerprint {}, this suite {}): \
                 recompute them with oracle_pass",
                oracle.fingerprint,
                self.fingerprint
            );
        }
        let plans = self.plan(oracle)?;
        let metrics: Vec<&dyn Metric> = plans
            .iter()
            .filter_map(|p| match p {
                Plan::Run { metric, .. } => Some(metric.as_ref()),
                Plan::Skip { .. } => None,
            })
            .collect();
        let outputs = evals::evaluate(scorer, &metrics)?;
        let mut records = BTreeMap::new();
        let mut outputs = outputs.into_iter();
        for p in plans {
            match p {
                Plan::Run { record, ids, direction, .. } => {
                    let o = outputs.next().context("evals::evaluate returned too few outputs")?;
                    insert_output(&mut records, &record, &o, ids, direction);
                }
                Plan::Skip { record, direction, reason } => {
                    records.insert(record, skipped(direction, reason));
                }
            }
        }
        if self.wants("param_distance_to_oracle") {
            records.insert("param_distance_to_oracle".into(), self.param_distance(model_dir, oracle, oracle_dir)?);
        }
        declare_targets(&mut records)?;
        Ok(records)
    }

    fn param_distance(&self, model_dir: &Path, oracle: &OracleRefs, oracle_dir: &Path) -> Result<MetricRecord> {
        let denom = match oracle.theta_d_distance {
            Some(d) => d,
            None => model_state::distance(&self.theta_d, oracle_dir)
                .with_context(|| format!("‖θ_D − θ_oracle‖: {} vs {}", self.theta_d.display(), oracle_dir.display()))?,
        };
        if denom <= 0.0 {
            return Ok(skipped(
                Direction::LowerIsBetter,
                "θ_D equals the oracle: the relative distance is undefined".into(),
            ));
        }
        let d = model_state::distance(model_dir, oracle_dir)
            .with_context(|| format!("‖θ − θ_oracle‖: {} vs {}", model_dir.display(), oracle_dir.display()))?;
        Ok(MetricRecord {
            direction: Direction::LowerIsBetter,
            value: d / denom,
            per_example: vec![],
            example_ids: vec![],
            version: Some("1".into()),
            skipped: None,
            target: None,
            scale: None,
        })
    }

    /// The items as the QA metrics see them; an item asked after in-context examples
    /// (`in_context`, RESTOR) has them in front of its question, for [`Self::template_of`]'s raw
    /// template.
    fn qa(&self, items: &[testbed::QaItem]) -> Vec<tofu::QaItem> {
        items
            .iter()
            .map(|q| tofu::QaItem {
                question: q.question_with_context(),
                answer: q.answer.clone(),
                // empty = the data has none (muse)
                paraphrased_answer: (!q.paraphrased_answer.is_empty()).then(|| q.paraphrased_answer.clone()),
                perturbed_answers: q.perturbed_answers.clone(),
            })
            .collect()
    }

    /// The items as the judged accuracies see them: the wrong candidates must be in the form of
    /// the ground truth, so when an item's multiple-choice options are in the answer's form
    /// (`choices[correct_choice] == answer`: facts and finetune, whose answers are short and
    /// whose perturbed answers are sentences) its wrong options replace the perturbed answers;
    /// otherwise (TOFU: answer, paraphrase and perturbed answers are all sentences) the
    /// perturbed answers are kept.
    fn judged_qa(&self, items: &[testbed::QaItem]) -> Vec<tofu::QaItem> {
        let mut out = self.qa(items);
        for (o, q) in out.iter_mut().zip(items) {
            if q.choices.get(q.correct_choice) == Some(&q.answer) {
                o.perturbed_answers = q
                    .choices
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != q.correct_choice)
                    .map(|(_, c)| c.clone())
                    .collect();
            }
        }
        out
    }

    /// How `items` are asked: the suite's template (`"Question: {q}\nAnswer:"` + `" {a}"`, or
    /// the chat template), or, for items asked after in-context examples (`in_context`:
    /// RESTOR's forget questions), raw text — the examples and the question as they are, the
    /// answer after a space. A list holds one kind or the other ([`check_in_context`]).
    fn template_of(&self, items: &[testbed::QaItem]) -> QaTemplate {
        if items.first().is_some_and(|q| q.in_context.is_some()) {
            QaTemplate::raw()
        } else {
            self.qa_template.clone()
        }
    }

    fn corrupted(&self) -> Vec<CorruptedQa> {
        self.items.corrupted.iter().map(|(_, c)| c.clone()).collect()
    }
}

/// Metrics that need neither a world nor an oracle (`bench eval` scores any checkpoint on them).
pub const STANDALONE_METRICS: &[&str] =
    &["toxigen", "toxigen_generation", "toxigen_likelihood", "truthfulqa_mc1", "truthfulqa_mc2"];

impl EvalSuite {
    /// A suite over benchmark metrics only (see [`STANDALONE_METRICS`]), for any checkpoint:
    /// lm-evaluation-harness semantics (no BOS prepended unless `add_bos`).
    pub fn standalone(names: &[String], limits: &EvalLimits, data_dir: &Path, add_bos: bool) -> Result<EvalSuite> {
        for (i, n) in names.iter().enumerate() {
            if !STANDALONE_METRICS.contains(&n.as_str()) {
                let known = known_metrics();
                if known.contains(&n.as_str()) {
                    bail!(
                        "metric `{n}` needs a world and its oracle (use `bench sweep`); `bench eval` takes: {}",
                        STANDALONE_METRICS.join(", ")
                    );
                }
                bail!("metrics[{i}]: {}", suggest::unknown_name_message("metric", n, STANDALONE_METRICS));
            }
        }
        let mut items = Items::default();
        load_benchmarks(&mut items, names, limits, data_dir, WorldKind::Finetune, &[])?;
        let mut suite = EvalSuite {
            names: names.to_vec(),
            kind: WorldKind::Finetune,
            add_bos,
            batch_size: crate::scoring::DEFAULT_BATCH_SIZE,
            limits: limits.clone(),
            theta_d: PathBuf::new(),
            items,
            fingerprint: String::new(),
            classifier: None,
            judge: None,
            mia_reference: None,
            qa_template: QaTemplate::default(),
        };
        suite.fingerprint = suite.compute_fingerprint("standalone")?;
        Ok(suite)
    }

    /// Score one checkpoint with a standalone suite.
    pub fn evaluate_standalone(&self, model_dir: &Path, device: &Device) -> Result<BTreeMap<String, MetricRecord>> {
        let refs = OracleRefs::empty(self.fingerprint.clone());
        self.evaluate(model_dir, &refs, model_dir, device)
    }

    /// This suite's forget-side metrics ([`FORGET_SUBSET_METRICS`], those it has) restricted to
    /// the forget QA items of the entities `units` and the forget documents `docs` (ids):
    /// the relearning attack's "other part" (`crate::relearn`). Retain, general, membership and
    /// oracle-relative items are dropped, so it needs no oracle references: score it with
    /// [`EvalSuite::evaluate_standalone`]; its records are `mc_accuracy/forget`,
    /// `perplexity/forget`, `tofu_prob_forget`, … (`mc_accuracy/retain` comes out skipped;
    /// [`EvalSuite::forget_subset_records`] drops it).
    pub fn forget_subset(
        &self,
        units: &std::collections::BTreeSet<u32>,
        docs: &std::collections::BTreeSet<u32>,
    ) -> Result<EvalSuite> {
        let names: Vec<String> =
            self.names.iter().filter(|n| FORGET_SUBSET_METRICS.contains(&n.as_str())).cloned().collect();
        if names.is_empty() {
            bail!(
                "none of the sweep's metrics can be scored on a part of the forget set (the relearning attack scores {})",
                FORGET_SUBSET_METRICS.join(", ")
            );
        }
        let doc_id = |id: &str| id.strip_prefix("doc-").and_then(|d| d.parse::<u32>().ok());
        let keep_doc = |t: &Text| doc_id(&t.id).is_some_and(|d| docs.contains(&d));
        let it = &self.items;
        let forget_qa: Vec<testbed::QaItem> =
            it.forget_qa.iter().filter(|q| units.contains(&q.unit)).cloned().collect();
        let kept_qa: std::collections::BTreeSet<String> = forget_qa.iter().map(|q| format!("qa-{}", q.id)).collect();
        let items = Items {
            member_docs: it.member_docs.iter().filter(|t| keep_doc(t)).cloned().collect(),
            forget_qa,
            ppl_sets: it
                .ppl_sets
                .iter()
                .filter(|(split, _)| split == "forget")
                .map(|(split, set)| (split.clone(), set.iter().filter(|t| keep_doc(t)).cloned().collect()))
                .collect(),
            verbmem: it
                .verbmem
                .iter()
                .filter(|(id, _)| doc_id(id).is_some_and(|d| docs.contains(&d)))
                .cloned()
                .collect(),
            corrupted: it.corrupted.iter().filter(|(id, _)| kept_qa.contains(id)).cloned().collect(),
            missing: it.missing.clone(),
            ..Items::default()
        };
        let mut suite = EvalSuite {
            names,
            kind: self.kind,
            add_bos: self.add_bos,
            batch_size: self.batch_size,
            limits: self.limits.clone(),
            theta_d: self.theta_d.clone(),
            items,
            fingerprint: String::new(),
            classifier: None,
            judge: None,
            mia_reference: None,
            qa_template: self.qa_template.clone(),
        };
        suite.fingerprint = suite.compute_fingerprint(&format!("forget-subset of {}", self.fingerprint))?;
        Ok(suite)
    }

    /// Scores `model_dir` with a [`EvalSuite::forget_subset`] suite; only forget-side records.
    pub fn forget_subset_records(&self, model_dir: &Path, device: &Device) -> Result<BTreeMap<String, MetricRecord>> {
        let mut records = self.evaluate_standalone(model_dir, device)?;
        records.retain(|k, _| k != "mc_accuracy/retain");
        Ok(records)
    }

    /// How many forget QA items and forget documents (perplexity) the suite scores.
    pub fn forget_counts(&self) -> (usize, usize) {
        let docs = self.items.ppl_sets.iter().find(|(s, _)| s == "forget").map_or(0, |(_, v)| v.len());
        (self.items.forget_qa.len(), docs)
    }
}

/// The metrics [`EvalSuite::forget_subset`] keeps: forget-side scores that need no oracle
/// values and are computed item by item, so that a part of the forget set scores alone.
pub const FORGET_SUBSET_METRICS: &[&str] = &[
    "exact_memorization",
    "mc_accuracy",
    "tofu_prob_forget",
    "tofu_rouge_forget",
    "tofu_truth_ratio_forget",
    "muse_knowmem_forget",
    "muse_verbmem",
    "perplexity",
    "restor_clean_acc",
];

/// Checks that the QA items of each role are asked one way: all after in-context examples
/// (`in_context`, RESTOR's forget questions) or none. A RESTOR world built before the examples
/// were kept has forget items without them: rebuilding the world (deleting its folder) fixes it.
fn check_in_context(world: &World) -> Result<()> {
    for role in [testbed::Role::Forget, testbed::Role::Retain] {
        let mut of_role = world.qa.iter().filter(|q| q.role == role);
        let Some(first) = of_role.next() else { continue };
        if let Some(other) = of_role.find(|q| q.in_context.is_some() != first.in_context.is_some()) {
            let (with, without) = if first.in_context.is_some() { (first, other) } else { (other, first) };
            bail!(
                "the world's {role:?} QA items are asked two ways: item {} after in-context examples, item {} without \
                 (a world asks all of one role the same way)",
                with.id,
                without.id
            );
        }
    }
    if world.resolved.kind == WorldKind::Restor
        && world.qa.iter().any(|q| q.role == testbed::Role::Forget && q.in_context.is_none())
    {
        bail!(
            "this RESTOR world's forget questions have no in-context examples: it was built by an older version \
             of the harness; delete its folder ({}) to rebuild it",
            world.resolved.folder_name()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_metrics_are_the_registry_plus_extras() {
        let k = known_metrics();
        assert_eq!(k, crate::config::KNOWN_METRICS, "config::KNOWN_METRICS must equal suite::known_metrics()");
        assert!(k.contains(&"mc_accuracy") && k.contains(&"param_distance_to_oracle") && k.contains(&"toxigen"));
        for kind in [
            WorldKind::Facts,
            WorldKind::Finetune,
            WorldKind::Tofu,
            WorldKind::Muse,
            WorldKind::Restor,
            WorldKind::TruthfulqaCorruption,
            WorldKind::Toxigen,
        ] {
            for m in default_metrics(kind) {
                assert!(k.contains(&m.as_str()), "{m}");
            }
        }
    }
}
