//! Building a `finetune` world on a given pretrained model, following TOFU's protocol (Maini et
//! al. 2024): θ_0 is a Hugging Face folder (e.g. Llama-2-7b), θ_D is θ_0 fine-tuned on the
//! forget and retain QA pairs, and the oracle is θ_0 fine-tuned on the retain pairs only.
//!
//! - Every trained document (the finetune kind has QA documents only, plus general text when
//!   `general_fraction > 0`) is tokenised with θ_0's own `tokenizer.json`: `[BOS]` (when the
//!   model's config has a `bos_token_id`) + the prompt [`qa_prompt`] + the answer
//!   [`qa_continuation`] + `[EOS]`, with the loss on the answer and EOS only. The answer's
//!   tokens are taken from the encoding of the whole text, after the prompt's tokens, as
//!   lm-evaluation-harness splits context and continuation.
//! - θ_D's order: every epoch is a fresh permutation of the trained documents (ChaCha8 seeded
//!   with the spec's seed), cut into batches of `batch_size`. The batches of document ids are
//!   the world's [`Schedule`], so the ledger records every step at which each forget document
//!   was in a batch (once per epoch).
//! - The oracle is trained along [`World::oracle_schedule`]: the same steps with the forget
//!   documents deleted from every batch, so every retain document is seen at exactly the same
//!   step and in the same order as by θ_D (the testbed's convention, see [`crate::schedule`]).
//!   A step whose batch held only forget documents is skipped by the oracle (its learning-rate
//!   schedule still advances, so the two runs stay aligned step for step).
//! - Checkpoints: index 0 is θ_0 itself (its folder; clean), index 1 is θ_D (unclean). MSA's
//!   "latest-clean" is therefore θ_0, and any other clean θ_0 (e.g. an intermediate
//!   pretraining checkpoint) is given as `checkpoint = "path:…"`.
//!
//! - With `world.chat_template = true` a QA document is instead the pair in θ_0's chat
//!   template ([`ChatQa`]; the system prompt from `world.system_prompt`), the loss on the
//!   answer's tokens after the rendered prompt (which ends with the assistant header).
//!
//! The world's own training fields (`steps`, `batch_size`, `seq_len`, `checkpoints`) are not
//! used by this kind: the fine-tune is described by [`FinetuneSpec`].
//!
//! The built world has the layout of [`crate::train`] (`world/`, `checkpoints.json`,
//! `oracle/`, `COMPLETE` written last), so [`crate::train::load`] loads it. Its folder is
//! `CACHE/finetune-<base folder name>-<hash>`, the hash covering the world, the base model's
//! path and `config.json`, and the spec.

use crate::schedule::{Schedule, ScheduleConfig};
use crate::train::{BuildInfo, BuiltWorld, Checkpoint, Progress, ScratchModel};
use crate::{qa_continuation, qa_prompt, DocId, Role, World, WorldConfig};
use anyhow::{bail, Context, Result};
use lm::train::{Example, NextToken, TrainConfig, Trainer};
use lm::{LmConfig, Tok};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The fine-tuning recipe of θ_D and the oracle: AdamW (weight decay `weight_decay`), a
/// linear warm-up over the first epoch then linear decay to 0, gradient clipping at 1.0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneSpec {
    /// Peak learning rate: 1e-5 for models of a billion parameters and more (TOFU); tiny
    /// random models need about 1e-3.
    pub lr: f64,
    pub epochs: usize,
    /// Documents per optimizer step.
    pub batch_size: usize,
    /// Seed of the document order.
    pub seed: u64,
    pub weight_decay: f64,
    /// Longer documents are cut to this many tokens.
    pub max_seq_len: usize,
}

impl Default for FinetuneSpec {
    fn default() -> Self {
        FinetuneSpec { lr: 1e-5, epochs: 5, batch_size: 16, seed: 0, weight_decay: 0.01, max_seq_len: 512 }
    }
}

impl FinetuneSpec {
    /// Largest model (in parameters) that gets the small-model learning rate.
    pub const SMALL_MODEL_PARAMS: usize = 100_000_000;

    /// The default recipe for θ_0 = `base`: TOFU's (lr 1e-5, 5 epochs) for models of
    /// [`Self::SMALL_MODEL_PARAMS`] parameters and more (or when the size cannot be read),
    /// lr 1e-3 below. `smoke`: the recipe for tiny random smoke models (lr 1e-2, 5 epochs,
    /// batches of 4, sequences of at most 128 tokens), which makes them learn in seconds.
    pub fn default_for(base: &Path, smoke: bool) -> FinetuneSpec {
        if smoke {
            return FinetuneSpec { lr: 1e-2, epochs: 5, batch_size: 4, max_seq_len: 128, ..FinetuneSpec::default() };
        }
        let params = LmConfig::from_file(&base.join("config.json")).ok().and_then(|c| c.num_parameters().ok());
        match params {
            Some(n) if n < Self::SMALL_MODEL_PARAMS => FinetuneSpec { lr: 1e-3, ..FinetuneSpec::default() },
            _ => FinetuneSpec::default(),
        }
    }

    /// This recipe with the fields `o` sets replaced.
    pub fn with_overrides(&self, o: &crate::FinetuneOverrides) -> FinetuneSpec {
        FinetuneSpec {
            lr: o.lr.unwrap_or(self.lr),
            epochs: o.epochs.unwrap_or(self.epochs),
            batch_size: o.batch_size.unwrap_or(self.batch_size),
            seed: o.seed.unwrap_or(self.seed),
            weight_decay: o.weight_decay.unwrap_or(self.weight_decay),
            max_seq_len: o.max_seq_len.unwrap_or(self.max_seq_len),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            bail!("finetune.lr must be a positive number, got {}", self.lr);
        }
        if self.epochs == 0 || self.batch_size == 0 {
            bail!(
                "finetune.epochs and finetune.batch_size must be at least 1 (got {} and {})",
                self.epochs,
                self.batch_size
            );
        }
        if self.max_seq_len < 8 {
            bail!("finetune.max_seq_len must be at least 8, got {}", self.max_seq_len);
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!("finetune.weight_decay must be ≥ 0, got {}", self.weight_decay);
        }
        Ok(())
    }

    /// Optimizer steps for `n_docs` trained documents.
    pub fn total_steps(&self, n_docs: usize) -> usize {
        n_docs.div_ceil(self.batch_size) * self.epochs
    }
}

/// The folder a finetune world with this config, base model and spec is built in.
pub fn finetune_dir(cache: &Path, world: &World, base_model_dir: &Path, ft: &FinetuneSpec) -> Result<PathBuf> {
    let base = base_model_dir.canonicalize().unwrap_or_else(|_| base_model_dir.to_path_buf());
    let cfg_path = base_model_dir.join("config.json");
    let cfg_bytes = std::fs::read(&cfg_path)
        .with_context(|| format!("θ_0 {}: cannot read config.json", base_model_dir.display()))?;
    let mut h = Sha256::new();
    h.update(world.hash.as_bytes());
    h.update(base.to_string_lossy().as_bytes());
    h.update(Sha256::digest(&cfg_bytes));
    h.update(serde_json::to_string(ft)?.as_bytes());
    if world.resolved.chat.is_some() {
        // the template is read from θ_0's folder: its text is part of the data
        for f in ["tokenizer_config.json", "chat_template.jinja", "chat_template.json"] {
            if let Ok(bytes) = std::fs::read(base_model_dir.join(f)) {
                h.update(f.as_bytes());
                h.update(Sha256::digest(&bytes));
            }
        }
    }
    let hex: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let name: String = base
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "base".into())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    Ok(cache.join(format!("finetune-{name}-{hex}")))
}

/// QA pairs in a model's chat template ([`crate::ChatSpec`]), as MSA's official code formats
/// TOFU: prompt = the template rendered on `[system?, user: q]` with the generation prompt,
/// full = rendered on `[system?, user: q, assistant: a]`; the trained answer is what follows
/// the prompt.
#[derive(Clone, Debug)]
pub struct ChatQa {
    pub template: tokenize::ChatTemplate,
    pub system_prompt: Option<String>,
}

impl ChatQa {
    /// The chat format of `world` for the model in `model_dir`: None when the world does not
    /// ask for one; an error naming the folder when it does and the model has no template.
    pub fn for_world(world: &World, model_dir: &Path) -> Result<Option<ChatQa>> {
        let Some(spec) = &world.resolved.chat else { return Ok(None) };
        let template = tokenize::ChatTemplate::from_model_dir(model_dir)
            .with_context(|| format!("reading the chat template of {}", model_dir.display()))?
            .with_context(|| {
                format!(
                    "world.chat_template = true, but {} has no chat template (no chat_template in tokenizer_config.json, \
                     no chat_template.jinja); use an instruct model or set world.chat_template = false",
                    model_dir.display()
                )
            })?;
        Ok(Some(ChatQa { template, system_prompt: spec.system_prompt.clone() }))
    }

    /// `(prompt, full)` of one pair.
    pub fn pair(&self, question: &str, answer: &str) -> Result<(String, String)> {
        self.template.qa_pair(self.system_prompt.as_deref(), question, answer)
    }

    /// The prompt as `prefix + question + suffix`, for scoring with a fixed template: the
    /// template rendered around a sentinel question, checked against a full rendering of every
    /// question in `questions` (a template that rewrites the question, e.g. trims it, fails here
    /// by name).
    pub fn affixes<'a>(&self, questions: impl IntoIterator<Item = &'a str>) -> Result<(String, String)> {
        const SENTINEL: &str = "\u{1}QUESTION\u{1}";
        let (prompt, _) = self.pair(SENTINEL, "")?;
        let (prefix, suffix) = prompt.split_once(SENTINEL).with_context(|| {
            format!("the chat template {} does not place the question verbatim", self.template.name())
        })?;
        for q in questions {
            let (p, _) = self.pair(q, "")?;
            if p != format!("{prefix}{q}{suffix}") {
                bail!(
                    "the chat template {} rewrites the question {q:?} (its prompt is not prefix + question + suffix)",
                    self.template.name()
                );
            }
        }
        Ok((prefix.to_string(), suffix.to_string()))
    }
}

/// Tokenises the trained documents of `world` for fine-tuning with `tok`: one example per
/// document id (None for documents that are not trained on), the loss on the answer of QA
/// documents and on the whole text of general ones. With `chat`, a QA document is the chat
/// rendering of its pair (special tokens as the template writes them, no BOS added), the loss on
/// the tokens after the prompt's, and EOS appended unless the rendering already ends in an EOS
/// id — as MSA's official `preprocess_chat_instance` does.
pub fn finetune_examples(
    world: &World,
    tok: &Tok,
    max_seq_len: usize,
    chat: Option<&ChatQa>,
) -> Result<Vec<Option<Example>>> {
    let mut by_doc: BTreeMap<DocId, (&str, &str)> =
        world.qa.iter().filter_map(|q| q.doc.map(|d| (d, (q.question.as_str(), q.answer.as_str())))).collect();
    for d in &world.corpus.docs {
        if let Some(p) = &d.pair {
            by_doc.insert(d.id, (p.question.as_str(), p.answer.as_str()));
        }
    }
    let mut out = Vec::with_capacity(world.corpus.docs.len());
    for d in &world.corpus.docs {
        if !matches!(d.role, Role::Retain | Role::Forget | Role::General) {
            out.push(None);
            continue;
        }
        if let (Some(chat), Some(&(q, a))) = (chat, by_doc.get(&d.id)) {
            let (p, full) = chat.pair(q, a).with_context(|| format!("document {}", d.id))?;
            let whole = tok.encode(&full)?;
            let penc = tok.encode(&p)?;
            if !whole.starts_with(&penc) || whole.len() == penc.len() {
                bail!("document {}: the chat rendering's tokens do not extend the prompt's", d.id);
            }
            let mut answer = whole[penc.len()..].to_vec();
            if !answer.last().is_some_and(|t| tok.eos.contains(t)) {
                answer.extend(tok.eos.first().copied());
            }
            let mut ex = Example::prompt_answer(&penc, &answer);
            ex.tokens.truncate(max_seq_len);
            ex.loss_mask.truncate(max_seq_len);
            if ex.n_target_tokens() == 0 {
                bail!(
                    "document {}: no answer token fits in finetune.max_seq_len = {max_seq_len} (chat prompt of {} tokens)",
                    d.id,
                    penc.len()
                );
            }
            out.push(Some(ex));
            continue;
        }
        let mut prompt: Vec<u32> = tok.bos.into_iter().collect();
        let answer: Vec<u32> = match by_doc.get(&d.id) {
            Some(&(q, a)) => {
                let p = qa_prompt(q);
                let whole = tok.encode(&(p.clone() + &qa_continuation(a)))?;
                let penc = tok.encode(&p)?;
                let ans = if whole.starts_with(&penc) {
                    whole[penc.len()..].to_vec()
                } else {
                    tok.encode(&qa_continuation(a))?
                };
                if ans.is_empty() {
                    bail!("document {}: the answer {a:?} encodes to no tokens", d.id);
                }
                prompt.extend(penc);
                ans
            }
            None => tok.encode(&d.text).with_context(|| format!("document {}", d.id))?,
        };
        let mut answer = answer;
        answer.extend(tok.eos.first().copied());
        let mut ex = Example::prompt_answer(&prompt, &answer);
        ex.tokens.truncate(max_seq_len);
        ex.loss_mask.truncate(max_seq_len);
        if ex.n_target_tokens() == 0 {
            bail!(
                "document {}: no answer token fits in finetune.max_seq_len = {max_seq_len} (prompt of {} tokens)",
                d.id,
                prompt.len()
            );
        }
        out.push(Some(ex));
    }
    Ok(out)
}

/// θ_D's schedule: `epochs` permutations of the trained documents, cut into batches.
pub fn finetune_schedule(world: &World, ft: &FinetuneSpec) -> Result<Schedule> {
    let trained: Vec<DocId> = world
        .corpus
        .docs
        .iter()
        .filter(|d| matches!(d.role, Role::Retain | Role::Forget | Role::General))
        .map(|d| d.id)
        .collect();
    if trained.is_empty() {
        bail!("the finetune world has no documents to train on");
    }
    let forget = world.corpus.ids(Role::Forget);
    let mut rng = ChaCha8Rng::seed_from_u64(ft.seed);
    let mut batches = Vec::new();
    for _ in 0..ft.epochs {
        let mut order = trained.clone();
        order.shuffle(&mut rng);
        batches.extend(order.chunks(ft.batch_size).map(<[DocId]>::to_vec));
    }
    let steps = batches.len();
    let config = ScheduleConfig {
        steps,
        tokens_per_step: ft.batch_size * ft.max_seq_len,
        window_start: 0,
        window_end: steps,
        forget_repeats: Some(ft.epochs),
        checkpoint_steps: vec![0, steps],
    };
    Ok(Schedule { config, seed: ft.seed, forget_repeats: ft.epochs, tracked: forget, removed: vec![], batches })
}

/// Load the finetune world built for `cfg` on θ_0 = `base_model_dir` under `cache`, building
/// it first if needed (see the module doc).
pub fn build_or_load_finetune(
    cfg: &WorldConfig,
    data_dir: &Path,
    cache: &Path,
    base_model_dir: &Path,
    ft: &FinetuneSpec,
    progress: Option<Progress>,
) -> Result<BuiltWorld> {
    if !cfg.kind.fine_tunes_base() {
        bail!("build_or_load_finetune needs world.kind = \"finetune\", got \"{}\"", cfg.kind.name());
    }
    ft.validate()?;
    if !lm::checkpoint::is_complete(base_model_dir) {
        bail!(
            "θ_0 {} is not a Hugging Face model folder (expected config.json and model.safetensors or an index)",
            base_model_dir.display()
        );
    }
    let mut world = World::from_config(cfg, data_dir)?;
    let dir = finetune_dir(cache, &world, base_model_dir, ft)?;
    let complete = dir.join("COMPLETE");
    if complete.is_file() {
        return crate::train::load(&dir);
    }
    if dir.exists() {
        eprintln!("note: {} is a half-written world (no COMPLETE marker); rebuilding it", dir.display());
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let device = lm::default_device()?;

    let lmcfg = LmConfig::from_file(&base_model_dir.join("config.json"))?;
    let tok = Tok::load(base_model_dir, &lmcfg).with_context(|| format!("θ_0 {}", base_model_dir.display()))?;
    let max_len = ft.max_seq_len.min(lmcfg.max_position_embeddings + 1);
    let chat = ChatQa::for_world(&world, base_model_dir)?;
    let examples = finetune_examples(&world, &tok, max_len, chat.as_ref())?;

    let sched = finetune_schedule(&world, ft)?;
    world.ledger = Some(sched.ledger());
    world.schedule = Some(sched.clone());
    world.save(&dir.join("world"))?;
    let oracle_sched = world.oracle_schedule()?;
    let total = sched.len();
    let steps_per_epoch = total / ft.epochs;
    let tc = TrainConfig {
        lr: ft.lr,
        weight_decay: ft.weight_decay,
        warmup_steps: Some(steps_per_epoch.min(total / 2)),
        schedule: lm::train::LrSchedule::Linear,
        min_lr_ratio: 0.0,
        max_grad_norm: Some(1.0),
        batch_size: ft.batch_size,
        grad_accum: 1,
        epochs: ft.epochs,
        max_steps: Some(total),
        seed: ft.seed,
        ..Default::default()
    };

    let final_model = dir.join("checkpoints").join("final");
    let t0 = std::time::Instant::now();
    let (curve, tokens) = finetune_along(
        base_model_dir,
        &device,
        &tc,
        &sched,
        &examples,
        tok.pad,
        &final_model,
        "finetune θ_D",
        progress,
    )?;
    let seconds_theta_d = t0.elapsed().as_secs_f64();
    let oracle = dir.join("oracle");
    let t1 = std::time::Instant::now();
    let (oracle_curve, _) = finetune_along(
        base_model_dir,
        &device,
        &tc,
        &oracle_sched,
        &examples,
        tok.pad,
        &oracle,
        "finetune oracle",
        progress,
    )?;
    let seconds_oracle = t1.elapsed().as_secs_f64();

    let base_abs = base_model_dir.canonicalize().unwrap_or_else(|_| base_model_dir.to_path_buf());
    let checkpoints = vec![
        Checkpoint { index: 0, step: 0, path: base_abs, clean: true },
        Checkpoint { index: 1, step: total, path: final_model, clean: false },
    ];
    let info = BuildInfo {
        world_hash: world.hash.clone(),
        model: ScratchModel {
            name: format!("finetune:{}", base_model_dir.display()),
            vocab_size: lmcfg.vocab_size,
            hidden_size: lmcfg.hidden_size,
            intermediate_size: lmcfg.intermediate_size,
            num_hidden_layers: lmcfg.num_hidden_layers,
            num_attention_heads: lmcfg.num_attention_heads,
            lr: ft.lr,
            warmup_steps: tc.warmup_steps.unwrap_or(0),
            weight_decay: ft.weight_decay,
            init_seed: ft.seed,
        },
        seconds_theta_d,
        seconds_oracle,
        tokens_per_second: tokens as f64 / seconds_theta_d.max(1e-9),
        final_loss: curve.last().map(|c| c.1).unwrap_or(f64::NAN),
        oracle_final_loss: oracle_curve.last().map(|c| c.1).unwrap_or(f64::NAN),
        loss_curve: curve,
        oracle_loss_curve: oracle_curve,
    };
    std::fs::write(dir.join("finetune.json"), serde_json::to_string_pretty(ft)?)?;
    std::fs::write(dir.join("checkpoints.json"), serde_json::to_string_pretty(&checkpoints)?)?;
    std::fs::write(&complete, serde_json::to_string_pretty(&info)?)?;
    crate::train::load(&dir)
}

/// Fine-tune θ_0 along `sched` (one example per document id) and save the result to `out`.
#[allow(clippy::too_many_arguments)]
fn finetune_along(
    base: &Path,
    device: &candle_core::Device,
    tc: &TrainConfig,
    sched: &Schedule,
    examples: &[Option<Example>],
    pad: u32,
    out: &Path,
    stage: &str,
    progress: Option<Progress>,
) -> Result<(Vec<(usize, f64)>, usize)> {
    let model = lm::train::load_for_training(base, device, tc).with_context(|| format!("{stage}: loading θ_0"))?;
    let mut trainer = Trainer::new(&model, tc.clone(), sched.len())?;
    let mut curve = vec![];
    let mut tokens = 0usize;
    for step in 0..sched.len() {
        let ids = sched.batch(step);
        if ids.is_empty() {
            // every document of θ_D's batch was a forget document: keep the steps aligned
            trainer.step += 1;
            continue;
        }
        let mut rows = Vec::with_capacity(ids.len());
        for &d in ids {
            let ex = examples
                .get(d as usize)
                .and_then(Option::as_ref)
                .with_context(|| format!("{stage}: step {step} schedules document {d}, which is not trained on"))?;
            rows.push(ex);
        }
        tokens += rows.iter().map(|r| r.tokens.len()).sum::<usize>();
        let batch = lm::train::collate(&rows, ids.iter().map(|&d| d as usize).collect(), pad, device)?;
        let st = trainer
            .step(&NextToken, &[lm::train::Step { primary: &batch, secondary: None }])
            .with_context(|| format!("{stage}: training failed"))?;
        curve.push((step, st.loss));
        if let Some(p) = progress {
            p(stage, step + 1, sched.len(), st.loss);
        }
    }
    lm::checkpoint::save(&model, out, Some(base))?;
    Ok((curve, tokens))
}
