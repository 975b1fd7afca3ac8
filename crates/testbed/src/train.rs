//! Building a world's models: a byte-level BPE tokenizer trained on the world's corpus, θ_D
//! pretrained from scratch along the exposure schedule with checkpoints, and the exact retrain
//! oracle: the identical run (same initialisation, same seed, same order of every other
//! document) with the forget documents left out.
//!
//! The oracle follows [`Schedule::without`]: θ_D's batches with the forget documents removed.
//! Before the exposure window the two schedules are identical, so the oracle's prefix *is*
//! θ_D's: the oracle restarts from θ_D's last clean checkpoint with the optimizer state saved
//! there (`optimizer.safetensors`), and continues bit for bit as a run from scratch would (a
//! test trains the oracle from scratch and compares).
//!
//! A built world lives in `CACHE/<kind>-<hash>-<model>/`; the file `COMPLETE` is written last,
//! so a folder without it (a build that was killed) is deleted and rebuilt, never used.

use crate::{World, WorldConfig};
use anyhow::{bail, Context, Result};
use candle_core::Device;
use lm::train::{Example, NextToken, TrainConfig, Trainer};
use lm::{Arch, CausalLm, LmConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The architecture and optimizer of a model pretrained from scratch by the testbed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScratchModel {
    pub name: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub init_seed: u64,
}

impl ScratchModel {
    /// Named presets: `tiny` (the default testbed model, 1.3M parameters: hidden 128, 4
    /// layers, FFN 512, a 2048-token BPE, tied embeddings) and `micro` (for tests).
    pub fn preset(name: &str) -> Result<ScratchModel> {
        match name {
            "tiny" => Ok(ScratchModel {
                name: name.into(),
                vocab_size: 2048,
                hidden_size: 128,
                intermediate_size: 512,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                lr: 3e-3,
                warmup_steps: 30,
                weight_decay: 0.01,
                init_seed: 0,
            }),
            "micro" => Ok(ScratchModel {
                name: name.into(),
                vocab_size: 320,
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 2,
                num_attention_heads: 4,
                lr: 1e-2,
                warmup_steps: 5,
                weight_decay: 0.01,
                init_seed: 0,
            }),
            other => bail!("unknown scratch model {other:?} (known: tiny, micro)"),
        }
    }

    pub fn lm_config(&self, max_positions: usize, bos: u32, eos: u32, pad: u32) -> LmConfig {
        let mut cfg = LmConfig::small(
            Arch::Llama,
            self.vocab_size,
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.num_attention_heads,
            max_positions,
        );
        cfg.tie_word_embeddings = true;
        cfg.bos_token_id = Some(bos);
        cfg.eos_token_id = Some(serde_json::json!(eos));
        cfg.pad_token_id = Some(pad);
        cfg
    }
}

/// One saved checkpoint of θ_D.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub index: usize,
    pub step: usize,
    pub path: PathBuf,
    /// No forget document was in any batch before this checkpoint.
    pub clean: bool,
}

/// What a build records in `COMPLETE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildInfo {
    pub world_hash: String,
    pub model: ScratchModel,
    pub seconds_theta_d: f64,
    pub seconds_oracle: f64,
    pub tokens_per_second: f64,
    pub final_loss: f64,
    pub oracle_final_loss: f64,
    pub loss_curve: Vec<(usize, f64)>,
    pub oracle_loss_curve: Vec<(usize, f64)>,
}

/// A built world: data, tokenizer, θ_D with its checkpoints, and the oracle.
pub struct BuiltWorld {
    pub dir: PathBuf,
    pub world: World,
    pub checkpoints: Vec<Checkpoint>,
    pub final_model: PathBuf,
    pub oracle: PathBuf,
    pub info: BuildInfo,
}

/// A progress report: (stage, step, total, loss).
pub use lm::train::StageProgress as Progress;

/// The folder a world with this config and model is built in.
pub fn world_dir(cache: &Path, world: &World, model: &ScratchModel) -> PathBuf {
    let mut h = Sha256::new();
    h.update(world.hash.as_bytes());
    h.update(serde_json::to_string(model).expect("model spec serialises").as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    cache.join(format!("{}-{}-{hex}", world.resolved.kind.name(), model.name))
}

/// Load the world built for `cfg` under `cache`, building it first if needed.
pub fn build_or_load(
    cfg: &WorldConfig,
    data_dir: &Path,
    cache: &Path,
    model: &ScratchModel,
    progress: Option<Progress>,
) -> Result<BuiltWorld> {
    let mut world = World::from_config(cfg, data_dir)?;
    let dir = world_dir(cache, &world, model);
    let complete = dir.join("COMPLETE");
    if complete.is_file() {
        return load(&dir);
    }
    if dir.exists() {
        eprintln!("note: {} is a half-written world (no COMPLETE marker); rebuilding it", dir.display());
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let device = lm::default_device()?;

    // 1. Tokenizer, trained on every document, held-out ones included: forget and held-out
    //    entities are then tokenized alike, so a model that saw neither (the oracle) cannot
    //    tell them apart by how their names split (Min-K% forget vs held-out ≈ 0.5).
    let tokenizer = world_tokenizer(&world, model.vocab_size)?;
    let ids = tokenize::SpecialIds::from_tokenizer(&tokenizer)?;
    let tok_dir = dir.join("tokenizer");
    std::fs::create_dir_all(&tok_dir)?;
    tokenizer.save(tok_dir.join("tokenizer.json"), false).map_err(|e| anyhow::anyhow!("cannot save tokenizer: {e}"))?;

    // 2. Token sequences of every document: [BOS] text [EOS].
    let docs_tokens = tokenize_docs(&world, &tokenizer, ids)?;
    let tokens_per_step = world.resolved.batch_size * world.resolved.seq_len;
    let lengths: Vec<usize> = docs_tokens.iter().map(|t| t.len().min(tokens_per_step)).collect();
    world.make_schedule(&lengths)?;
    world.save(&dir.join("world"))?;
    let sched = world.schedule.clone().context("schedule was just made")?;
    let ledger = world.ledger.clone().context("ledger was just made")?;
    let oracle_sched = world.oracle_schedule()?;

    let max_pos = (world.resolved.seq_len + 1).max(256);
    let lmcfg = model.lm_config(max_pos, ids.bos, ids.eos, ids.pad);
    let r = &world.resolved;
    let tc = pretrain_config(r, model);

    // 3. θ_D with checkpoints.
    let ckpt_dir = dir.join("checkpoints");
    let mut checkpoints = vec![];
    for (i, &s) in r.checkpoint_steps.iter().enumerate() {
        let clean = ledger.checkpoint(i).map(|c| c.clean).unwrap_or(false);
        checkpoints.push(Checkpoint { index: i, step: s, path: ckpt_dir.join(format!("step-{s:06}")), clean });
    }
    // The last clean checkpoint: the oracle's prefix up to here is θ_D's, so the oracle restarts
    // from it (weights and optimizer state), which halves its cost when exposure starts midway.
    let window_ckpt = checkpoints.iter().filter(|c| c.clean).map(|c| c.step).max().unwrap_or(0);
    let window_dir = checkpoints.iter().find(|c| c.step == window_ckpt).context("no clean checkpoint")?.path.clone();
    let t0 = std::time::Instant::now();
    let (curve, tokens) = pretrain(
        &lmcfg,
        model.init_seed,
        &device,
        &tc,
        &|step| sched.batch(step).to_vec(),
        r.steps,
        &docs_tokens,
        r.seq_len,
        ids.pad,
        &|step| checkpoints.iter().find(|c| c.step == step).map(|c| c.path.clone()),
        &tok_dir,
        "pretrain θ_D",
        progress,
        Resume { from: None, save_state_at: Some(window_ckpt) },
    )?;
    let seconds_theta_d = t0.elapsed().as_secs_f64();

    // 4. The oracle: the same run without the forget documents.
    let oracle = dir.join("oracle");
    let t1 = std::time::Instant::now();
    let (oracle_curve, _) = pretrain(
        &lmcfg,
        model.init_seed,
        &device,
        &tc,
        &|step| oracle_sched.batch(step).to_vec(),
        r.steps,
        &docs_tokens,
        r.seq_len,
        ids.pad,
        &|step| if step == r.steps { Some(oracle.clone()) } else { None },
        &tok_dir,
        "pretrain oracle",
        progress,
        Resume { from: Some((window_dir.clone(), window_ckpt)), save_state_at: None },
    )?;
    let seconds_oracle = t1.elapsed().as_secs_f64();
    let info = BuildInfo {
        world_hash: world.hash.clone(),
        model: model.clone(),
        seconds_theta_d,
        seconds_oracle,
        tokens_per_second: tokens as f64 / seconds_theta_d.max(1e-9),
        final_loss: curve.last().map(|c| c.1).unwrap_or(f64::NAN),
        oracle_final_loss: oracle_curve.last().map(|c| c.1).unwrap_or(f64::NAN),
        loss_curve: curve,
        oracle_loss_curve: oracle_curve,
    };
    std::fs::write(dir.join("checkpoints.json"), serde_json::to_string_pretty(&checkpoints)?)?;
    std::fs::write(&complete, serde_json::to_string_pretty(&info)?)?;
    load(&dir)
}

/// The world's byte-level BPE tokenizer: trained on every document of the corpus (retain,
/// forget, general and held-out alike, each once), with the world seed.
pub fn world_tokenizer(world: &World, vocab_size: usize) -> Result<tokenize::Tokenizer> {
    let texts: Vec<&str> = world.corpus.docs.iter().map(|d| d.text.as_str()).collect();
    tokenize::train_bpe(&texts, vocab_size, world.resolved.seed)
}

fn tokenize_docs(world: &World, tokenizer: &tokenize::Tokenizer, ids: tokenize::SpecialIds) -> Result<Vec<Vec<u32>>> {
    let mut docs_tokens = Vec::with_capacity(world.corpus.docs.len());
    for d in &world.corpus.docs {
        let enc = tokenizer
            .encode(d.text.as_str(), false)
            .map_err(|e| anyhow::anyhow!("tokenizing document {}: {e}", d.id))?;
        let mut t = vec![ids.bos];
        t.extend_from_slice(enc.get_ids());
        t.push(ids.eos);
        docs_tokens.push(t);
    }
    Ok(docs_tokens)
}

fn pretrain_config(r: &crate::ResolvedWorld, model: &ScratchModel) -> TrainConfig {
    TrainConfig {
        lr: model.lr,
        weight_decay: model.weight_decay,
        warmup_steps: Some(model.warmup_steps.min(r.steps / 4)),
        schedule: lm::train::LrSchedule::Cosine,
        min_lr_ratio: 0.1,
        max_grad_norm: Some(1.0),
        batch_size: r.batch_size,
        grad_accum: 1,
        epochs: 1,
        max_steps: Some(r.steps),
        seed: r.seed,
        ..Default::default()
    }
}

/// Train the oracle of a built world from scratch (from the initialisation, along the
/// oracle schedule) into `out`. The build restarts the oracle from θ_D's last clean
/// checkpoint instead; this is the reference that restart must equal.
pub fn oracle_from_scratch(built: &BuiltWorld, out: &Path) -> Result<()> {
    let sched = built.world.oracle_schedule()?;
    let (docs_tokens, ids) = built_docs_tokens(built)?;
    retrain_from_scratch(built, &sched, (&docs_tokens, ids), out, "oracle from scratch", None)
}

/// The data-order seed of the second oracle: the world seed with its bits mixed, so that the
/// clean documents come in another order (ChaCha8 streams 1 and 2 of this seed).
pub fn noise_floor_order_seed(world_seed: u64) -> u64 {
    world_seed ^ 0x9E37_79B9_7F4A_7C15
}

/// The second oracle of a built world, for the noise floor: trained from the same
/// initialisation on the same clean documents (retain and general; no forget document), but
/// in another order ([`noise_floor_order_seed`]), from scratch. Built once into
/// `DIR/oracle_alt/` (with its own `COMPLETE` marker) and reused; returns its folder.
pub fn build_or_load_noise_oracle(built: &BuiltWorld, progress: Option<Progress>) -> Result<PathBuf> {
    let out = built.dir.join("oracle_alt");
    let complete = out.join("COMPLETE");
    if complete.is_file() {
        return Ok(out);
    }
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("cannot remove half-written {}", out.display()))?;
    }
    let world = &built.world;
    let (docs_tokens, ids) = built_docs_tokens(built)?;
    let cap = world.resolved.batch_size * world.resolved.seq_len;
    let lengths: Vec<usize> = docs_tokens.iter().map(|t| t.len().min(cap)).collect();
    let theta_d = crate::schedule::schedule(
        &world.corpus,
        &lengths,
        &world.schedule_config(),
        noise_floor_order_seed(world.resolved.seed),
    )?;
    let sched = theta_d.without(&world.splits.forget_docs);
    let t = std::time::Instant::now();
    retrain_from_scratch(built, &sched, (&docs_tokens, ids), &out, "pretrain second oracle (noise floor)", progress)?;
    std::fs::write(&complete, format!("{{\"seconds\": {}}}\n", t.elapsed().as_secs_f64()))?;
    Ok(out)
}

/// Every document of a built world as the model is trained on it, with the special ids.
fn built_docs_tokens(built: &BuiltWorld) -> Result<(Vec<Vec<u32>>, tokenize::SpecialIds)> {
    let tok_dir = built.dir.join("tokenizer");
    let tokenizer = tokenize::Tokenizer::from_file(tok_dir.join("tokenizer.json"))
        .map_err(|e| anyhow::anyhow!("{}: {e}", tok_dir.display()))?;
    let ids = tokenize::SpecialIds::from_tokenizer(&tokenizer)?;
    Ok((tokenize_docs(&built.world, &tokenizer, ids)?, ids))
}

/// Trains θ_D's architecture from its initialisation along `sched` into `out`.
fn retrain_from_scratch(
    built: &BuiltWorld,
    sched: &crate::Schedule,
    (docs_tokens, ids): (&[Vec<u32>], tokenize::SpecialIds),
    out: &Path,
    stage: &str,
    progress: Option<Progress>,
) -> Result<()> {
    let tok_dir = built.dir.join("tokenizer");
    let lmcfg = LmConfig::from_file(&built.final_model.join("config.json"))?;
    let r = &built.world.resolved;
    let tc = pretrain_config(r, &built.info.model);
    let device = lm::default_device()?;
    let out = out.to_path_buf();
    pretrain(
        &lmcfg,
        built.info.model.init_seed,
        &device,
        &tc,
        &|step| sched.batch(step).to_vec(),
        r.steps,
        docs_tokens,
        r.seq_len,
        ids.pad,
        &|step| if step == r.steps { Some(out.clone()) } else { None },
        &tok_dir,
        stage,
        progress,
        Resume::default(),
    )?;
    Ok(())
}

/// Load a completely built world folder.
pub fn load(dir: &Path) -> Result<BuiltWorld> {
    let complete = dir.join("COMPLETE");
    let text = std::fs::read_to_string(&complete)
        .with_context(|| format!("{}: not a completely built world (no COMPLETE marker)", dir.display()))?;
    let info: BuildInfo = serde_json::from_str(&text).with_context(|| format!("{}: malformed", complete.display()))?;
    let world = World::load(&dir.join("world"))?;
    let cj = dir.join("checkpoints.json");
    let checkpoints: Vec<Checkpoint> =
        serde_json::from_str(&std::fs::read_to_string(&cj).with_context(|| format!("{}: cannot read", cj.display()))?)
            .with_context(|| format!("{}: malformed", cj.display()))?;
    let final_model = checkpoints.last().context("world has no checkpoints")?.path.clone();
    Ok(BuiltWorld { dir: dir.to_path_buf(), world, checkpoints, final_model, oracle: dir.join("oracle"), info })
}

/// Where a pretraining run starts, and at which step it saves its optimizer state.
#[derive(Default)]
struct Resume {
    /// A checkpoint folder with `optimizer.safetensors`, and its step.
    from: Option<(PathBuf, usize)>,
    save_state_at: Option<usize>,
}

/// Pack the documents of one step into `rows` of `seq_len` tokens: documents are concatenated
/// in batch order; a document may continue into the next row of the same step.
pub fn pack(doc_ids: &[u32], docs_tokens: &[Vec<u32>], seq_len: usize) -> Vec<Example> {
    let mut stream: Vec<u32> = vec![];
    for &d in doc_ids {
        stream.extend_from_slice(&docs_tokens[d as usize]);
    }
    // rows overlap by one token so that every token of the stream is predicted once
    let mut rows = vec![];
    let mut start = 0;
    while start + 1 < stream.len() {
        let end = (start + seq_len + 1).min(stream.len());
        rows.push(Example::full(stream[start..end].to_vec()));
        start = end - 1;
    }
    rows
}

#[allow(clippy::too_many_arguments)]
fn pretrain(
    cfg: &LmConfig,
    init_seed: u64,
    device: &Device,
    tc: &TrainConfig,
    batch_of: &dyn Fn(usize) -> Vec<u32>,
    steps: usize,
    docs_tokens: &[Vec<u32>],
    seq_len: usize,
    pad: u32,
    save_at: &dyn Fn(usize) -> Option<PathBuf>,
    tok_dir: &Path,
    stage: &str,
    progress: Option<Progress>,
    resume: Resume,
) -> Result<(Vec<(usize, f64)>, usize)> {
    let (model, first) = match &resume.from {
        None => (CausalLm::init(cfg.clone(), init_seed, device, true)?, 0),
        Some((dir, step)) => (CausalLm::load(dir, device, true)?, *step),
    };
    let mut trainer = Trainer::new(&model, tc.clone(), steps)?;
    if let Some((dir, step)) = &resume.from {
        trainer.load_state(dir)?;
        if trainer.step != *step {
            bail!("{stage}: optimizer state in {} is at step {}, expected {step}", dir.display(), trainer.step);
        }
    }
    let mut curve = vec![];
    let mut tokens = 0usize;
    for step in first..=steps {
        if let Some(p) = save_at(step) {
            lm::checkpoint::save(&model, &p, Some(tok_dir))?;
            if resume.save_state_at == Some(step) {
                trainer.save_state(&p)?;
            }
        }
        if step == steps {
            break;
        }
        let rows = pack(&batch_of(step), docs_tokens, seq_len);
        if rows.is_empty() {
            bail!("{stage}: step {step} has no documents");
        }
        tokens += rows.iter().map(|r| r.tokens.len()).sum::<usize>();
        let refs: Vec<&Example> = rows.iter().collect();
        let batch = lm::train::collate(&refs, (0..rows.len()).collect(), pad, device)?;
        let st = trainer
            .step(&NextToken, &[lm::train::Step { primary: &batch, secondary: None }])
            .with_context(|| format!("{stage}: training failed"))?;
        curve.push((step, st.loss));
        if let Some(p) = progress {
            p(stage, step + 1, steps, st.loss);
        }
    }
    Ok((curve, tokens))
}
