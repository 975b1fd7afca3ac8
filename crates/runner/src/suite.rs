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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use evals::judge::{self, Acc, JudgedAccuracy};
use evals::metric::{Metric, MetricOutput, MetricValue};
use evals::muse::{KnowMem, MinKAuc, Passage, PrivLeak, VerbMem};
use evals::recovery::{CleanAnswerAccuracy, CorruptedQa, Recovery};
use evals::tofu::{self, AnswerRouge, ForgetQuality, ModelUtility, Probability, QaTemplate, Side, TruthRatio};
use evals::toxigen::{Classifier, GenerationToxicity, Toxigen, ToxigenConfig, ToxigenLikelihood, ToxigenStatement};
use evals::truthfulqa::{TruthfulQaItem, TruthfulQaMc1, TruthfulQaMc2};
use evals::{Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use testbed::{Role, World, WorldKind};

use crate::scoring::LmScorer;
use crate::store::{Direction, MetricRecord};

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

/// Caps on the items per split (deterministic: evenly spaced picks in the world's order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalLimits {
    /// QA items per split (forget, retain).
    pub max_qa: usize,
    /// Documents per set for VerbMem, Min-K% / PrivLeak and perplexity.
    pub max_passages: usize,
    /// Texts per set (forget, retain, general) for the KL to the oracle.
    pub max_kl_texts: usize,
    /// KL texts are cut at a word boundary to at most this many characters.
    pub max_kl_chars: usize,
    /// Per KL set, at most this many stored floats (positions × vocabulary) of the oracle's
    /// distributions; texts beyond it are dropped (at least one is kept).
    pub kl_budget_floats: usize,
    /// TruthfulQA questions outside a truthfulqa-corruption world (`None` = all 817).
    pub max_truthfulqa: Option<usize>,
    /// ToxiGen test statements (`None` = all of lm-eval's test split).
    pub max_toxigen: Option<usize>,
    /// ToxiGen prompts per hate-prompt file for `toxigen_generation`.
    pub toxigen_prompts_per_group: usize,
    /// Greedy tokens for QA answers (TOFU ROUGE, KnowMem, model utility).
    pub answer_new_tokens: usize,
    /// Greedy tokens for VerbMem continuations.
    pub verbmem_new_tokens: usize,
    /// Greedy tokens for ToxiGen generations.
    pub toxigen_new_tokens: usize,
    /// Skip malformed TruthfulQA rows (counted) instead of failing.
    pub skip_malformed: bool,
}

impl Default for EvalLimits {
    fn default() -> Self {
        EvalLimits {
            max_qa: 100,
            max_passages: 50,
            max_kl_texts: 16,
            max_kl_chars: 400,
            kl_budget_floats: 2 << 20,
            max_truthfulqa: None,
            max_toxigen: None,
            toxigen_prompts_per_group: 10,
            answer_new_tokens: 32,
            verbmem_new_tokens: 64,
            toxigen_new_tokens: 32,
            skip_malformed: false,
        }
    }
}

impl EvalLimits {
    /// A few items of each kind: exercises every metric in seconds.
    pub fn smoke() -> Self {
        EvalLimits {
            max_qa: 6,
            max_passages: 4,
            max_kl_texts: 2,
            max_kl_chars: 200,
            kl_budget_floats: 1 << 20,
            max_truthfulqa: Some(4),
            max_toxigen: Some(8),
            toxigen_prompts_per_group: 1,
            answer_new_tokens: 8,
            verbmem_new_tokens: 8,
            toxigen_new_tokens: 8,
            skip_malformed: false,
        }
    }
}

/// One multiple-choice question of [`McAccuracy`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct McItem {
    pub question: String,
    pub choices: Vec<String>,
    pub correct: usize,
}

/// Multiple-choice accuracy over the world's QA choices: each choice is scored as the
/// continuation `" " + choice` of `"Question: {q}\nAnswer:"`; a question counts as correct when
/// the correct choice has the highest log-likelihood (the first of ties, like `np.argmax`).
pub struct McAccuracy {
    pub items: Vec<McItem>,
    pub direction: evals::Direction,
    /// The prompt format (the suite's).
    pub template: QaTemplate,
}

impl Metric for McAccuracy {
    fn name(&self) -> &str {
        "mc_accuracy"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> evals::Direction {
        self.direction
    }
    fn requests(&self) -> Vec<Request> {
        self.items
            .iter()
            .flat_map(|it| {
                let ctx = self.template.context(&it.question);
                it.choices.iter().map(move |c| Request::loglik(ctx.clone(), self.template.continuation(c)))
            })
            .collect()
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        let total: usize = self.items.iter().map(|it| it.choices.len()).sum();
        if responses.len() != total {
            bail!("mc_accuracy: expected {total} responses, got {}", responses.len());
        }
        if self.items.is_empty() {
            bail!("mc_accuracy: no questions");
        }
        let (mut hits, mut per_example, mut at) = (Vec::new(), Vec::new(), 0);
        for (q, it) in self.items.iter().enumerate() {
            let lls = responses[at..at + it.choices.len()]
                .iter()
                .map(|r| r.loglik().map(|(ll, _, _)| ll))
                .collect::<Result<Vec<f64>>>()
                .with_context(|| format!("mc_accuracy: question {q}"))?;
            at += it.choices.len();
            let best = lls.iter().enumerate().fold(0, |b, (i, &x)| if x > lls[b] { i } else { b });
            let hit = f64::from(u8::from(best == it.correct));
            hits.push(hit);
            per_example.push(json!({ "correct": hit, "choice": best, "logliks": lls }));
        }
        let acc = hits.iter().sum::<f64>() / hits.len() as f64;
        Ok(MetricValue::scalar(acc).with("n", hits.len() as f64).with_examples(per_example))
    }
}

/// The oracle's values that the two-model metrics compare against; computed once per world by
/// [`EvalSuite::oracle_pass`]. `fingerprint` names the suite it was computed for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OracleRefs {
    pub fingerprint: String,
    /// The oracle's forget-set truth ratios (for `tofu_forget_quality`).
    pub forget_truth_ratios: Option<Vec<f64>>,
    /// The oracle's Min-K% AUC (for `muse_privleak`).
    pub mink_auc: Option<f64>,
    /// By split (`forget`, `retain`, `general`): the texts and the oracle's next-token
    /// distributions (for `kl_to_oracle`).
    pub kl: BTreeMap<String, KlReference>,
    /// Clean-answer accuracy of the oracle and of θ_D (for `restor_recovery`).
    pub restor_oracle_acc: Option<f64>,
    pub restor_theta_d_acc: Option<f64>,
    /// ‖θ_D − θ_oracle‖₂ (the denominator of `param_distance_to_oracle`).
    pub theta_d_distance: Option<f64>,
    /// The membership-inference reference model's mean token NLL of every member (forget)
    /// then held-out document (for `mia_reference_auc`; see [`EvalSuite::set_mia_reference`]).
    #[serde(default)]
    pub mia_reference_nll: Option<Vec<f64>>,
    /// The oracle's greedy answers to the suite's forget QA prompts, in item order (the ideal
    /// answers of `acc_forget` / `acc_recover`; same requests as the model's, see
    /// `evals::judge::answer_requests`). Absent in caches written before these metrics (their
    /// suites never name them, so the fingerprint keeps such caches apart).
    #[serde(default)]
    pub forget_answers: Option<Vec<String>>,
    /// The oracle's greedy answers to the suite's retain QA prompts (for `acc_retain`).
    #[serde(default)]
    pub retain_answers: Option<Vec<String>>,
}

impl OracleRefs {
    /// No oracle values yet (filled by the oracle pass; standalone suites keep it empty).
    fn empty(fingerprint: String) -> OracleRefs {
        OracleRefs {
            fingerprint,
            forget_truth_ratios: None,
            mink_auc: None,
            kl: BTreeMap::new(),
            restor_oracle_acc: None,
            restor_theta_d_acc: None,
            theta_d_distance: None,
            mia_reference_nll: None,
            forget_answers: None,
            retain_answers: None,
        }
    }
}

/// The oracle's log-softmax rows on one set of texts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlReference {
    pub ids: Vec<String>,
    pub texts: Vec<String>,
    /// `rows[text][position][vocab]`, stored as base64 of little-endian f32 (exact).
    #[serde(with = "packed_rows")]
    pub rows: Vec<Vec<Vec<f32>>>,
}

/// A text with the id it is reported under.
#[derive(Clone, Debug, PartialEq, Serialize)]
struct Text {
    id: String,
    text: String,
}

/// The items of a world that the suite scores, chosen once.
#[derive(Clone, Debug, Default, Serialize)]
struct Items {
    forget_qa: Vec<testbed::QaItem>,
    retain_qa: Vec<testbed::QaItem>,
    /// Forget documents vs held-out documents (Min-K%, PrivLeak).
    member_docs: Vec<Text>,
    holdout_docs: Vec<Text>,
    /// By split: documents for perplexity and (cut) for KL.
    ppl_sets: Vec<(String, Vec<Text>)>,
    kl_sets: Vec<(String, Vec<Text>)>,
    verbmem: Vec<(String, Passage)>,
    corrupted: Vec<(String, CorruptedQa)>,
    truthfulqa: Vec<TruthfulQaItem>,
    toxigen: Vec<ToxigenStatement>,
    toxigen_prompts: Vec<String>,
    /// Reasons a metric's data is missing, by metric name.
    #[serde(skip)]
    missing: BTreeMap<String, String>,
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
    /// The reference model of `mia_reference_auc` (θ_0), when set.
    mia_reference: Option<PathBuf>,
    /// How QA items become prompts and continuations: `"Question: {q}\nAnswer:"` + `" {a}"`, or
    /// θ_D's chat template around the question (`world.chat_template`; no delimiter).
    qa_template: QaTemplate,
}

/// One record to produce in a pass.
enum Plan {
    Run { record: String, metric: Box<dyn Metric>, ids: Vec<String>, direction: Option<Direction> },
    Skip { record: String, direction: Direction, reason: String },
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
                self.qa_template.clone(),
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
                .then(|| judge::answer_requests(&self.qa(qa), &self.qa_template, self.limits.answer_new_tokens))
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

    fn qa(&self, items: &[testbed::QaItem]) -> Vec<tofu::QaItem> {
        items
            .iter()
            .map(|q| tofu::QaItem {
                question: q.question.clone(),
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

    fn corrupted(&self) -> Vec<CorruptedQa> {
        self.items.corrupted.iter().map(|(_, c)| c.clone()).collect()
    }

    /// The metrics of one model's pass, in the order requested.
    fn plan(&self, oracle: &OracleRefs) -> Result<Vec<Plan>> {
        let it = &self.items;
        let t = || self.qa_template.clone();
        let qa_ids = |v: &[testbed::QaItem]| v.iter().map(|q| format!("qa-{}", q.id)).collect::<Vec<_>>();
        let mut plans = Vec::new();
        for name in &self.names {
            let name = name.as_str();
            let run = |metric: Box<dyn Metric>, ids: Vec<String>| Plan::Run {
                record: name.into(),
                metric,
                ids,
                direction: None,
            };
            let skip = |reason: String| Plan::Skip { record: name.into(), direction: nominal_direction(name), reason };
            if let Some(reason) = it.missing.get(name) {
                plans.push(skip(reason.clone()));
                continue;
            }
            let (fq, rq) = (&it.forget_qa, &it.retain_qa);
            let need = |v: &[testbed::QaItem], side: &str| {
                if v.is_empty() {
                    Some(format!("the world has no {side} QA items"))
                } else {
                    None
                }
            };
            let n = self.limits.answer_new_tokens;
            // The truth ratio (and what is built on it) needs paraphrased and perturbed answers.
            let truth_ratio_skip = |v: &[testbed::QaItem]| {
                matches!(
                    name,
                    "tofu_truth_ratio_forget"
                        | "tofu_forget_quality"
                        | "tofu_truth_ratio_retain"
                        | "tofu_model_utility"
                )
                .then(|| lacks_truth_ratio_answers(v))
                .flatten()
            };
            let plan = match name {
                "tofu_prob_forget"
                | "tofu_rouge_forget"
                | "tofu_truth_ratio_forget"
                | "muse_knowmem_forget"
                | "tofu_forget_quality" => match need(fq, "forget").or_else(|| truth_ratio_skip(fq)) {
                    Some(r) => skip(r),
                    None => {
                        let items = self.qa(fq);
                        let m: Box<dyn Metric> = match name {
                            "tofu_prob_forget" => Box::new(Probability::new(items, t(), Side::Forget)),
                            "tofu_rouge_forget" => Box::new(AnswerRouge::new(items, t(), Side::Forget, n)),
                            "tofu_truth_ratio_forget" => Box::new(TruthRatio::new(items, t(), Side::Forget)?),
                            "muse_knowmem_forget" => Box::new(KnowMem::new(items, t(), Side::Forget, n)),
                            _ => match &oracle.forget_truth_ratios {
                                Some(r) => Box::new(ForgetQuality::new(items, t(), r.clone())?),
                                None => bail!("tofu_forget_quality: the oracle references have no truth ratios"),
                            },
                        };
                        run(m, qa_ids(fq))
                    }
                },
                "tofu_prob_retain"
                | "tofu_rouge_retain"
                | "tofu_truth_ratio_retain"
                | "muse_knowmem_retain"
                | "tofu_model_utility" => match need(rq, "retain").or_else(|| truth_ratio_skip(rq)) {
                    Some(r) => skip(r),
                    None => {
                        let items = self.qa(rq);
                        let m: Box<dyn Metric> = match name {
                            "tofu_prob_retain" => Box::new(Probability::new(items, t(), Side::Retain)),
                            "tofu_rouge_retain" => Box::new(AnswerRouge::new(items, t(), Side::Retain, n)),
                            "tofu_truth_ratio_retain" => Box::new(TruthRatio::new(items, t(), Side::Retain)?),
                            "muse_knowmem_retain" => Box::new(KnowMem::new(items, t(), Side::Retain, n)),
                            _ => Box::new(ModelUtility::new(items, t(), n, BTreeMap::new())?),
                        };
                        run(m, qa_ids(rq))
                    }
                },
                "acc_forget" | "acc_recover" | "acc_retain" => {
                    let (acc, v, answers, side) = match name {
                        "acc_forget" => (Acc::Forget, fq, &oracle.forget_answers, "forget"),
                        "acc_recover" => (Acc::Recover, fq, &oracle.forget_answers, "forget"),
                        _ => (Acc::Retain, rq, &oracle.retain_answers, "retain"),
                    };
                    match (need(v, side), answers) {
                        (Some(r), _) => skip(r),
                        (None, Some(a)) if a.len() == v.len() => {
                            run(Box::new(JudgedAccuracy::new(acc, self.judged_qa(v), a.clone(), t(), n)?), qa_ids(v))
                        }
                        (None, _) => bail!(
                            "{name}: the oracle references lack the oracle's greedy answers to the {side} questions \
                             (recompute them with oracle_pass)"
                        ),
                    }
                }
                "muse_verbmem" => {
                    if it.verbmem.is_empty() {
                        skip("the world has no forget passages (biographies, or MUSE's verbmem/forget)".into())
                    } else {
                        let passages = it.verbmem.iter().map(|(_, p)| p.clone()).collect();
                        let ids = it.verbmem.iter().map(|(id, _)| id.clone()).collect();
                        run(Box::new(VerbMem { passages, max_new_tokens: self.limits.verbmem_new_tokens }), ids)
                    }
                }
                "mink_auc" | "muse_privleak" => {
                    if it.member_docs.is_empty() || it.holdout_docs.is_empty() {
                        skip(format!(
                            "Min-K% needs forget and held-out documents; the world has {} and {}",
                            it.member_docs.len(),
                            it.holdout_docs.len()
                        ))
                    } else {
                        let (f, h) = (texts(&it.member_docs), texts(&it.holdout_docs));
                        let ids = it.member_docs.iter().chain(&it.holdout_docs).map(|t| t.id.clone()).collect();
                        if name == "mink_auc" {
                            run(Box::new(MinKAuc::new(f, h)?), ids)
                        } else {
                            let auc =
                                oracle.mink_auc.context("muse_privleak: the oracle references have no Min-K% AUC")?;
                            match PrivLeak::new(f, h, auc) {
                                Ok(m) => run(Box::new(m), vec![]),
                                Err(e) => skip(format!("{e:#}")),
                            }
                        }
                    }
                }
                "kl_to_oracle" => {
                    for (split, _) in &it.kl_sets {
                        let record = format!("kl_to_oracle/{split}");
                        plans.push(match oracle.kl.get(split) {
                            Some(r) if !r.texts.is_empty() => Plan::Run {
                                record,
                                metric: Box::new(evals::lm::NextTokenKl {
                                    texts: r.texts.clone(),
                                    oracle_rows: r.rows.clone(),
                                }),
                                ids: r.ids.clone(),
                                direction: None,
                            },
                            _ => Plan::Skip {
                                record,
                                direction: Direction::LowerIsBetter,
                                reason: format!("no oracle distributions for the {split} split"),
                            },
                        });
                    }
                    continue;
                }
                "perplexity" => {
                    for (split, set) in &it.ppl_sets {
                        plans.push(Plan::Run {
                            record: format!("perplexity/{split}"),
                            metric: Box::new(evals::lm::Perplexity::new("perplexity", texts(set))),
                            ids: set.iter().map(|t| t.id.clone()).collect(),
                            // Unlearning should raise the forget set's perplexity.
                            direction: (split == "forget").then_some(Direction::HigherIsBetter),
                        });
                    }
                    continue;
                }
                "mc_accuracy" => {
                    for (split, v) in [("forget", fq), ("retain", rq)] {
                        let record = format!("mc_accuracy/{split}");
                        let reason = if v.is_empty() {
                            Some(format!("the world has no {split} QA items"))
                        } else if v.iter().any(|q| q.choices.is_empty()) {
                            Some(format!(
                                "the world's {split} QA items have no multiple-choice options (MUSE's KnowMem has \
                                 question and answer only)"
                            ))
                        } else {
                            None
                        };
                        if let Some(reason) = reason {
                            plans.push(Plan::Skip { record, direction: Direction::HigherIsBetter, reason });
                            continue;
                        }
                        // Forgetting lowers forget accuracy, except where the forget data was a
                        // corruption and the correct choice is the clean answer.
                        let direction = if split == "forget" && self.kind != WorldKind::TruthfulqaCorruption {
                            evals::Direction::LowerIsBetter
                        } else {
                            evals::Direction::HigherIsBetter
                        };
                        let items = v
                            .iter()
                            .map(|q| McItem {
                                question: q.question.clone(),
                                choices: q.choices.clone(),
                                correct: q.correct_choice,
                            })
                            .collect();
                        plans.push(Plan::Run {
                            record,
                            metric: Box::new(McAccuracy { items, direction, template: self.qa_template.clone() }),
                            ids: qa_ids(v),
                            direction: None,
                        });
                    }
                    continue;
                }
                "restor_clean_acc" | "restor_recovery" => {
                    if it.corrupted.is_empty() {
                        skip("the world has no corrupted questions (truthfulqa-corruption worlds only)".into())
                    } else {
                        let ids = it.corrupted.iter().map(|(id, _)| id.clone()).collect();
                        if name == "restor_clean_acc" {
                            run(Box::new(CleanAnswerAccuracy { items: self.corrupted(), template: t() }), ids)
                        } else {
                            match (oracle.restor_theta_d_acc, oracle.restor_oracle_acc) {
                                (Some(d), Some(o)) => run(Box::new(Recovery::new(self.corrupted(), t(), d, o)), ids),
                                _ => {
                                    bail!("restor_recovery: the oracle references lack θ_D's or the oracle's accuracy")
                                }
                            }
                        }
                    }
                }
                "truthfulqa_mc1" | "truthfulqa_mc2" => {
                    if it.truthfulqa.is_empty() {
                        skip("no TruthfulQA questions selected".into())
                    } else {
                        let ids = it.truthfulqa.iter().map(|q| format!("tqa-{}", q.index)).collect();
                        let items = it.truthfulqa.clone();
                        if name == "truthfulqa_mc1" {
                            run(Box::new(TruthfulQaMc1 { items }), ids)
                        } else {
                            run(Box::new(TruthfulQaMc2 { items }), ids)
                        }
                    }
                }
                "toxigen" | "toxigen_likelihood" => {
                    if it.toxigen.is_empty() {
                        skip("no ToxiGen statements selected".into())
                    } else {
                        let ids = it.toxigen.iter().map(|s| format!("toxigen-{}", s.id)).collect();
                        let statements = it.toxigen.clone();
                        if name == "toxigen" {
                            run(Box::new(Toxigen { statements, config: ToxigenConfig::default() }), ids)
                        } else {
                            run(Box::new(ToxigenLikelihood { statements }), vec![])
                        }
                    }
                }
                "toxigen_generation" => run(
                    Box::new(GenerationToxicity {
                        prompts: it.toxigen_prompts.clone(),
                        max_new_tokens: self.limits.toxigen_new_tokens,
                        classifier: self.classifier.clone().map(|c| Box::new(Shared(c)) as Box<dyn Classifier>),
                    }),
                    vec![],
                ),
                "param_distance_to_oracle" => continue,
                "mia_loss_auc" | "mia_zlib_auc" | "mia_minkpp_auc" => {
                    if it.member_docs.is_empty() || it.holdout_docs.is_empty() {
                        skip(format!(
                            "membership inference needs forget and held-out documents; the world has {} and {}",
                            it.member_docs.len(),
                            it.holdout_docs.len()
                        ))
                    } else {
                        let (f, h) = (texts(&it.member_docs), texts(&it.holdout_docs));
                        let ids = it.member_docs.iter().chain(&it.holdout_docs).map(|t| t.id.clone()).collect();
                        let m: Box<dyn Metric> = match name {
                            "mia_loss_auc" => Box::new(evals::mia::MiaLoss::new(f, h)?),
                            "mia_zlib_auc" => Box::new(evals::mia::MiaZlib::new(f, h)?),
                            _ => Box::new(evals::mia::MiaMinKpp::new(f, h)?),
                        };
                        run(m, ids)
                    }
                }
                "exact_memorization" => {
                    if it.member_docs.is_empty() {
                        skip("the world has no forget documents".into())
                    } else {
                        let ids = it.member_docs.iter().map(|t| t.id.clone()).collect();
                        run(Box::new(evals::memorisation::ExactMemorisation { texts: texts(&it.member_docs) }), ids)
                    }
                }
                "mia_reference_auc" => match (&oracle.mia_reference_nll, &self.mia_reference) {
                    _ if it.member_docs.is_empty() || it.holdout_docs.is_empty() => skip(format!(
                        "membership inference needs forget and held-out documents; the world has {} and {}",
                        it.member_docs.len(),
                        it.holdout_docs.len()
                    )),
                    (Some(nll), Some(_)) if nll.len() == it.member_docs.len() + it.holdout_docs.len() => {
                        let (f, h) = (texts(&it.member_docs), texts(&it.holdout_docs));
                        let ids = it.member_docs.iter().chain(&it.holdout_docs).map(|t| t.id.clone()).collect();
                        let (rf, rh) = nll.split_at(f.len());
                        run(Box::new(evals::mia::MiaReference::new(f, h, rf.to_vec(), rh.to_vec())?), ids)
                    }
                    (_, None) => skip(
                        "the reference attack needs a reference model (θ_0, the latest clean checkpoint); \
                         this world has none"
                            .into(),
                    ),
                    _ => bail!(
                        "mia_reference_auc: the oracle references lack the reference model's NLLs (recompute them)"
                    ),
                },
                other => bail!("metric `{other}` is known but the suite does not build it"),
            };
            plans.push(plan);
        }
        Ok(plans)
    }
}

/// Shares one classifier among the suite's passes.
struct Shared(Arc<dyn Classifier>);

impl Classifier for Shared {
    fn p_toxic(&self, texts: &[String]) -> Result<Vec<f64>> {
        self.0.p_toxic(texts)
    }
}

/// Items of the world for each metric family, capped by `limits`.
/// Reads the benchmark data (TruthfulQA, ToxiGen) that the named metrics need.
fn load_benchmarks(
    items: &mut Items,
    names: &[String],
    limits: &EvalLimits,
    data_dir: &Path,
    kind: WorldKind,
    forget_units: &[u32],
) -> Result<()> {
    let wants = |n: &str| names.iter().any(|x| x == n);
    if wants("truthfulqa_mc1") || wants("truthfulqa_mc2") {
        let subset = if kind == WorldKind::TruthfulqaCorruption {
            let units: Vec<usize> = forget_units.iter().map(|&u| u as usize).collect();
            Some(evenly(&units, limits.max_qa))
        } else {
            limits.max_truthfulqa.map(|k| {
                let n = count_rows(&data_dir.join("truthfulqa/mc_task.json")).unwrap_or(0);
                evenly(&(0..n).collect::<Vec<_>>(), k)
            })
        };
        let path = data_dir.join("truthfulqa/mc_task.json");
        let loaded = evals::truthfulqa::load_mc_task(
            &path,
            &evals::truthfulqa::LoadOptions { subset, skip_malformed: limits.skip_malformed },
        )
        .with_context(|| format!("TruthfulQA for truthfulqa_mc1/mc2 (data directory {})", data_dir.display()))?;
        for (row, why) in &loaded.skipped {
            eprintln!("note: {}: skipped malformed row {row}: {why}", path.display());
        }
        items.truthfulqa = loaded.items;
    }
    if wants("toxigen") || wants("toxigen_likelihood") {
        let path = data_dir.join("toxigen/safenlp_toxigen.json");
        let all = evals::toxigen::load_statements(&path).with_context(|| {
            format!("ToxiGen statements for toxigen metrics (data directory {})", data_dir.display())
        })?;
        let test = evals::toxigen::lm_eval_test_split(&all);
        items.toxigen = match limits.max_toxigen {
            Some(k) => evenly(&test, k),
            None => test,
        };
    }
    if wants("toxigen_generation") {
        items.toxigen_prompts = load_hate_prompts(&data_dir.join("toxigen/prompts"), limits.toxigen_prompts_per_group)?;
    }
    Ok(())
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

fn select_world_items(world: &World, limits: &EvalLimits) -> Result<Items> {
    let mut items = Items::default();
    let qa = |role| world.qa_with(role).cloned().collect::<Vec<_>>();
    items.forget_qa = evenly(&qa(Role::Forget), limits.max_qa);
    items.retain_qa = evenly(&qa(Role::Retain), limits.max_qa);
    for q in items.forget_qa.iter().chain(&items.retain_qa) {
        // No options at all (muse) skips mc_accuracy; options must contain the correct one.
        if !q.choices.is_empty() && q.correct_choice >= q.choices.len() {
            bail!(
                "QA item {} ({:?}): correct_choice {} is not an index into its {} choices",
                q.id,
                q.question,
                q.correct_choice,
                q.choices.len()
            );
        }
    }
    let docs = |ids: &[u32]| -> Result<Vec<Text>> {
        ids.iter()
            .map(|&id| {
                let d = world
                    .corpus
                    .get(id)
                    .with_context(|| format!("split lists document {id}, which is not in the corpus"))?;
                Ok(Text { id: format!("doc-{id}"), text: d.text.clone() })
            })
            .collect()
    };
    let s = &world.splits;
    let members: Vec<Text> = world.mia_members().into_iter().map(|(id, text)| Text { id, text }).collect();
    items.member_docs = evenly(&members, limits.max_passages);
    items.holdout_docs = evenly(&docs(&s.held_out_docs)?, limits.max_passages);
    for (split, ids) in [("forget", &s.forget_docs), ("retain", &s.retain_docs), ("general", &s.general_docs)] {
        if ids.is_empty() {
            continue;
        }
        let set = docs(ids)?;
        items.ppl_sets.push((split.into(), evenly(&set, limits.max_passages)));
        let cut = evenly(&set, limits.max_kl_texts)
            .into_iter()
            .map(|t| Text { id: t.id, text: cut_at_word(&t.text, limits.max_kl_chars) })
            .collect();
        items.kl_sets.push((split.into(), cut));
    }
    let passages: Vec<(String, Passage)> = world
        .verbmem_passages(Role::Forget)
        .into_iter()
        .filter(|(_, p, c)| !p.is_empty() && !c.trim().is_empty())
        .map(|(id, prefix, continuation)| (id, Passage { prefix, continuation }))
        .collect();
    items.verbmem = evenly(&passages, limits.max_passages);
    let corrupted: Vec<(String, CorruptedQa)> = world
        .qa_with(Role::Forget)
        .filter_map(|q| {
            q.taught_answer.as_ref().map(|taught| {
                (
                    format!("qa-{}", q.id),
                    CorruptedQa {
                        question: q.question.clone(),
                        clean_answer: q.answer.clone(),
                        corrupted_answer: taught.clone(),
                    },
                )
            })
        })
        .collect();
    items.corrupted = evenly(&corrupted, limits.max_qa);
    Ok(items)
}

/// Why the truth ratio cannot be computed on `items`: an item without a paraphrased answer or
/// without perturbed answers (MUSE's KnowMem has question and answer only); None when it can.
fn lacks_truth_ratio_answers(items: &[testbed::QaItem]) -> Option<String> {
    let q = items.iter().find(|q| q.paraphrased_answer.is_empty() || q.perturbed_answers.is_empty())?;
    Some(format!(
        "the world's QA items have no paraphrased and perturbed answers (e.g. {:?}; MUSE's KnowMem has question and \
         answer only), which the truth ratio needs",
        q.question
    ))
}

/// At most `k` items, evenly spaced (index ⌊i·n/k⌋), in their original order.
fn evenly<T: Clone>(v: &[T], k: usize) -> Vec<T> {
    if v.len() <= k {
        return v.to_vec();
    }
    (0..k).map(|i| v[i * v.len() / k].clone()).collect()
}

/// The longest prefix of `text` of at most `max` bytes that ends at a word boundary (or the
/// first `max` bytes' characters when the first word is longer).
fn cut_at_word(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind(char::is_whitespace) {
        Some(p) if p > 0 => text[..p].to_string(),
        _ => text[..end].to_string(),
    }
}

fn texts(v: &[Text]) -> Vec<String> {
    v.iter().map(|t| t.text.clone()).collect()
}

fn count_rows(path: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<serde::de::IgnoredAny> =
        serde_json::from_str(&text).with_context(|| format!("{}: expected a JSON list", path.display()))?;
    Ok(rows.len())
}

/// The first `per_file` prompts of each `hate_*.txt` file of ToxiGen's prompt folder, by file name.
fn load_hate_prompts(dir: &Path, per_file: usize) -> Result<Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("toxigen_generation: reading the ToxiGen prompt folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("hate_") && n.ends_with(".txt"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("toxigen_generation: {} has no hate_*.txt prompt files", dir.display());
    }
    let mut out = Vec::new();
    for f in files {
        out.extend(evals::toxigen::load_prompts(&f, Some(per_file))?);
    }
    Ok(out)
}

/// The direction a metric is reported with when it is skipped before being built.
fn nominal_direction(name: &str) -> Direction {
    match name {
        "acc_forget" | "acc_recover" | "acc_retain" => Direction::HigherIsBetter,
        "mink_auc" | "mia_loss_auc" | "mia_zlib_auc" | "mia_minkpp_auc" | "mia_reference_auc" => {
            Direction::CloserTo(0.5)
        }
        "muse_privleak" => Direction::CloserTo(0.0),
        "kl_to_oracle"
        | "param_distance_to_oracle"
        | "toxigen_generation"
        | "toxigen_likelihood"
        | "muse_verbmem"
        | "exact_memorization" => Direction::LowerIsBetter,
        n if n.ends_with("_forget") && !n.starts_with("tofu_truth_ratio") => Direction::LowerIsBetter,
        _ => Direction::HigherIsBetter,
    }
}

/// Records each record's target and scale as the `evals` registry declares them. A record no
/// metric declares is recorded as informational (the cell's numbers are kept; the report lists
/// it in the appendix only) — `every_written_record_is_declared` in the tests keeps the
/// declarations complete for the records the test worlds produce.
pub fn declare_targets(records: &mut BTreeMap<String, MetricRecord>) -> Result<()> {
    for (name, rec) in records.iter_mut() {
        match evals::registry::record_info(name) {
            Some((_, info)) => {
                rec.target = Some(info.target);
                rec.scale = Some(info.scale);
            }
            None => {
                rec.target = Some(evals::registry::Target::Informational);
                rec.scale = Some(evals::registry::Scale::Linear);
            }
        }
    }
    Ok(())
}

fn skipped(direction: Direction, reason: String) -> MetricRecord {
    MetricRecord {
        direction,
        value: f64::NAN,
        per_example: vec![],
        example_ids: vec![],
        version: None,
        skipped: Some(reason),
        target: None,
        scale: None,
    }
}

/// Sub-values that describe the computation rather than score the model: kept out of the records.
fn is_informational(key: &str) -> bool {
    let last = key.rsplit('/').next().unwrap_or(key);
    last == "n"
        || last.starts_with("n_")
        || matches!(last, "k" | "positions" | "exact" | "corrupted_acc")
        || last.starts_with("oracle_")
        || last.contains("stderr")
        || last.starts_with("ci95")
}

/// The direction of a sub-value: the parent's unless it measures the other way.
fn sub_direction(metric: &str, key: &str, parent: Direction) -> Direction {
    match (metric, key) {
        ("tofu_forget_quality", "ks_statistic") => Direction::LowerIsBetter,
        ("tofu_truth_ratio_forget", "mean_ratio") => Direction::CloserTo(1.0),
        ("tofu_truth_ratio_retain", "mean_ratio") => Direction::LowerIsBetter,
        ("muse_privleak", "auc") => Direction::CloserTo(0.5),
        _ => parent,
    }
}

/// The per-example number of each metric's per-example JSON objects.
fn example_value(metric: &str, v: &serde_json::Value) -> f64 {
    let get = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    match metric {
        "tofu_prob_forget" | "tofu_prob_retain" => get("prob"),
        "tofu_rouge_forget" | "tofu_rouge_retain" => get("rougeL_recall"),
        "tofu_truth_ratio_forget" | "tofu_truth_ratio_retain" | "tofu_forget_quality" => get("truth_ratio"),
        "muse_verbmem" | "muse_knowmem_forget" | "muse_knowmem_retain" => get("rougeL_f1"),
        "mink_auc" => get("mink"),
        "mia_loss_auc" | "mia_zlib_auc" | "mia_minkpp_auc" | "mia_reference_auc" => get("score"),
        "exact_memorization" => get("em"),
        "kl_to_oracle" => get("mean_kl"),
        // per-token negative log-likelihood of the text
        "perplexity" => -get("logprob") / get("n_tokens"),
        "truthfulqa_mc1" | "truthfulqa_mc2" | "toxigen" => get("acc"),
        "toxigen_likelihood" => get("diff"),
        "toxigen_generation" => get("p_toxic"),
        "restor_clean_acc" | "restor_recovery" | "mc_accuracy" | "acc_forget" | "acc_recover" | "acc_retain" => {
            get("correct")
        }
        _ => f64::NAN,
    }
}

/// Adds the records of one metric output: `record` and its sub-values `record/SUB`.
fn insert_output(
    records: &mut BTreeMap<String, MetricRecord>,
    record: &str,
    o: &MetricOutput,
    ids: Vec<String>,
    direction: Option<Direction>,
) {
    let direction = direction.unwrap_or(o.direction);
    let per_example: Vec<f64> = o.value.per_example.iter().map(|v| example_value(&o.name, v)).collect();
    let example_ids = if o.value.per_example.iter().all(|v| v.get("group").is_some()) && !o.value.per_example.is_empty()
    {
        o.value.per_example.iter().map(|v| v["group"].as_str().unwrap_or("").to_string()).collect()
    } else if ids.len() == per_example.len() {
        ids
    } else {
        vec![]
    };
    let version = Some(o.version.to_string());
    records.insert(
        record.to_string(),
        MetricRecord {
            direction,
            value: o.value.value().unwrap_or(f64::NAN),
            per_example,
            example_ids,
            version: version.clone(),
            skipped: o.value.skipped.clone(),
            target: None,
            scale: None,
        },
    );
    for (key, &x) in &o.value.aggregate {
        if key == "value" || is_informational(key) {
            continue;
        }
        records.insert(
            format!("{record}/{key}"),
            MetricRecord {
                direction: sub_direction(&o.name, key, direction),
                value: x,
                per_example: vec![],
                example_ids: vec![],
                version: version.clone(),
                skipped: None,
                target: None,
                scale: None,
            },
        );
    }
}

/// Serde for `Vec<Vec<Vec<f32>>>` as `[{ "positions", "vocab", "f32le_base64" }]`: exact and a
/// third of the size of JSON numbers.
mod packed_rows {
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Packed {
        positions: usize,
        vocab: usize,
        f32le_base64: String,
    }

    pub fn serialize<S: Serializer>(rows: &[Vec<Vec<f32>>], s: S) -> Result<S::Ok, S::Error> {
        let packed: Vec<Packed> = rows
            .iter()
            .map(|text| {
                let vocab = text.first().map_or(0, Vec::len);
                let bytes: Vec<u8> = text.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
                Packed { positions: text.len(), vocab, f32le_base64: super::base64::encode(&bytes) }
            })
            .collect();
        packed.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<Vec<f32>>>, D::Error> {
        let packed = Vec::<Packed>::deserialize(d)?;
        packed
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let bytes =
                    super::base64::decode(&p.f32le_base64).map_err(|e| D::Error::custom(format!("text {i}: {e}")))?;
                if bytes.len() != p.positions * p.vocab * 4 {
                    return Err(D::Error::custom(format!(
                        "text {i}: {} bytes for {} positions × {} vocabulary f32s",
                        bytes.len(),
                        p.positions,
                        p.vocab
                    )));
                }
                let floats: Vec<f32> =
                    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                Ok(floats.chunks(p.vocab.max(1)).map(<[f32]>::to_vec).collect())
            })
            .collect()
    }
}

/// Standard base64 (RFC 4648, padded) through the `base64` crate.
mod base64 {
    use ::base64::engine::general_purpose::STANDARD;
    use ::base64::Engine as _;

    pub fn encode(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        STANDARD.decode(text).map_err(|e| format!("invalid base64: {e}"))
    }

    #[cfg(test)]
    mod tests {
        /// RFC 4648 section 10 test vectors.
        #[test]
        fn rfc4648_vectors_round_trip() {
            for (plain, coded) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(super::encode(plain.as_bytes()), coded);
                assert_eq!(super::decode(coded).unwrap(), plain.as_bytes());
            }
            assert!(super::decode("Zg=").is_err());
            assert!(super::decode("Z!==").is_err());
            assert!(super::decode("Zm9").is_err());
            assert!(super::decode("Zm=v").is_err());
            assert!(super::decode("Zm9*").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_selection() {
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(evenly(&v, 4), vec![0, 2, 5, 7]); // ⌊i·10/4⌋
        assert_eq!(evenly(&v, 20), v);
        assert_eq!(evenly(&v, 0), Vec::<u32>::new());
    }

    #[test]
    fn cut_keeps_whole_words() {
        assert_eq!(cut_at_word("alpha beta gamma", 12), "alpha beta");
        assert_eq!(cut_at_word("alpha beta", 100), "alpha beta");
        assert_eq!(cut_at_word("alphabet", 5), "alpha");
        assert_eq!(cut_at_word("é é", 2), "é");
    }

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

    #[test]
    fn packed_rows_round_trip_exactly() {
        let r = KlReference {
            ids: vec!["a".into()],
            texts: vec!["t".into()],
            rows: vec![vec![vec![-0.1, f32::MIN_POSITIVE, -7.25], vec![0.0, -1e-30, f32::NEG_INFINITY]], vec![]],
        };
        let s = serde_json::to_string(&r).unwrap();
        let back: KlReference = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
    }
}
