//! The exposure schedule: which documents are in the batch of every optimizer step, the
//! ledger of forget exposures and clean checkpoints, and the oracle schedule.
//!
//! The ground truth of the testbed lives here. Rules:
//! - Clean documents (roles `retain` and `general`) form one stream: every epoch is a fresh
//!   permutation of all of them (ChaCha8, stream 1 of the seed), epochs follow each other.
//! - Forget documents appear only in steps of the exposure window `[start, end)`: `repeats`
//!   rounds (by default as many as a clean document gets over the same window, so that inside
//!   the window forget and retain documents are seen at the same rate per step), each a fresh permutation of the forget documents (ChaCha8, stream 2), laid out
//!   as one list of occurrences, and occurrence `k` of `N` goes to step `start + k·W/N`
//!   (W = window length), so they are spread evenly over the window. Two copies of a
//!   document can share a step only when `N > W`, at a round boundary.
//! - Each step holds at most `tokens_per_step` tokens (by the lengths given): its forget
//!   documents first take their share, then clean documents are taken from the stream in
//!   order while the next one fits. A step's batch lists its clean documents (in stream
//!   order) followed by its forget documents.
//! - The oracle ([`Schedule::without`]) is the same list of batches with the forget
//!   documents deleted: every step keeps exactly the same clean documents in the same order,
//!   and batches inside the window simply become smaller (they are not refilled). Hence the
//!   oracle's steps before the window are identical to θ_D's, and it may restart from the
//!   last clean checkpoint.
//!
//! Packing, for the trainer: tokenize every document and append EOS; `lengths[id]` must be
//! that token count. For a step, concatenate its documents' tokens in batch order and cut
//! them into rows of `seq_len` (a document may continue into the next row of the same
//! step, never into another step); the last row is padded, and the padded positions are
//! masked out of the loss. Normalise the loss by the number of real tokens, so that the
//! oracle's smaller window batches weigh each clean token as θ_D's do.
//!
//! Step convention: steps are 0-based; the checkpoint at step `s` is the state after `s`
//! optimizer updates, i.e. after the batches of steps `0..s`. It is clean when none of
//! those batches holds a forget document; so with the window starting at `s`, the
//! checkpoint at `s` is the last clean one, and a window starting at 0 leaves only the
//! initialisation clean.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Corpus, DocId, ResolvedWorld, Role};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ScheduleConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Token capacity of one step: batch_size × seq_len.
    pub tokens_per_step: usize,
    /// Exposure window `[window_start, window_end)` in steps.
    pub window_start: usize,
    pub window_end: usize,
    /// How often each forget document is seen; None = as often as a clean document is seen
    /// over the *window* (the same exposure rate per step inside it):
    /// round(window steps · tokens_per_step / (clean tokens + forget tokens)), at least 1.
    pub forget_repeats: Option<usize>,
    /// Checkpoint steps (see the module doc for the convention), for the ledger.
    pub checkpoint_steps: Vec<usize>,
}

impl ScheduleConfig {
    pub fn from_resolved(r: &ResolvedWorld) -> ScheduleConfig {
        ScheduleConfig {
            steps: r.steps,
            tokens_per_step: r.tokens_per_step(),
            window_start: r.window_start,
            window_end: r.window_end,
            forget_repeats: r.forget_repeats,
            checkpoint_steps: r.checkpoint_steps.clone(),
        }
    }
}

/// Document ids per optimizer step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Schedule {
    pub config: ScheduleConfig,
    pub seed: u64,
    /// The repeats actually used.
    pub forget_repeats: usize,
    /// The world's forget documents, whose exposure the ledger tracks (also kept in the
    /// oracle schedule, where they never occur).
    pub tracked: Vec<DocId>,
    /// Documents deleted by [`Schedule::without`]; empty for θ_D's schedule.
    pub removed: Vec<DocId>,
    /// `batches[step]` = the documents of that step, in packing order.
    pub batches: Vec<Vec<DocId>>,
}

/// For one forget document, the steps whose batch held it (sorted; a step repeats if the
/// document was in that batch twice).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ForgetExposure {
    pub doc: DocId,
    pub steps: Vec<usize>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CheckpointStatus {
    /// 0 = initialisation.
    pub index: usize,
    /// Optimizer updates before this checkpoint.
    pub step: usize,
    /// No forget document was in any batch of steps `0..step`.
    pub clean: bool,
}

/// The exposure ledger, stored as `ledger.json` beside the checkpoints.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Ledger {
    pub steps: usize,
    pub window_start: usize,
    pub window_end: usize,
    pub forget_repeats: usize,
    /// One entry per tracked forget document, by doc id.
    pub exposures: Vec<ForgetExposure>,
    pub checkpoints: Vec<CheckpointStatus>,
    /// Index of the last clean checkpoint (MSA's θ_0, the oracle's restart point).
    pub last_clean_checkpoint: usize,
    /// First step whose batch holds a forget document; None if none does (the oracle).
    pub first_exposure_step: Option<usize>,
}

impl Ledger {
    pub fn checkpoint(&self, index: usize) -> Option<&CheckpointStatus> {
        self.checkpoints.get(index)
    }
}

/// Builds θ_D's schedule. `lengths[id]` is the token count of document `id` including EOS
/// (all documents, held-out ones too; those are never scheduled).
pub fn schedule(corpus: &Corpus, lengths: &[usize], cfg: &ScheduleConfig, seed: u64) -> Result<Schedule> {
    let cap = cfg.tokens_per_step;
    if lengths.len() != corpus.docs.len() {
        bail!("lengths has {} entries but the corpus has {} documents", lengths.len(), corpus.docs.len());
    }
    if cfg.steps == 0 || cap == 0 {
        bail!("a schedule needs steps ≥ 1 and tokens_per_step ≥ 1 (got {} and {cap})", cfg.steps);
    }
    if !(cfg.window_start < cfg.window_end && cfg.window_end <= cfg.steps) {
        bail!(
            "exposure window [{}, {}) is not a non-empty part of the run's {} steps",
            cfg.window_start,
            cfg.window_end,
            cfg.steps
        );
    }
    let clean: Vec<DocId> =
        corpus.docs.iter().filter(|d| matches!(d.role, Role::Retain | Role::General)).map(|d| d.id).collect();
    let forget = corpus.ids(Role::Forget);
    if clean.is_empty() {
        bail!("the corpus has no clean (retain or general) documents to train on");
    }
    for &id in clean.iter().chain(&forget) {
        let len = lengths[id as usize];
        if len == 0 || len > cap {
            bail!("document {id} has {len} tokens; each must have 1..={cap} (tokens_per_step)");
        }
    }
    let clean_tokens: usize = clean.iter().map(|&i| lengths[i as usize]).sum();
    let forget_tokens: usize = forget.iter().map(|&i| lengths[i as usize]).sum();
    let repeats = match cfg.forget_repeats {
        Some(0) => bail!("world.exposure.repeats must be at least 1"),
        Some(r) => r,
        None => {
            let window = (cfg.window_end - cfg.window_start) as f64 * cap as f64;
            ((window / (clean_tokens + forget_tokens) as f64).round() as usize).max(1)
        }
    };

    // Forget occurrences, spread evenly over the window.
    let mut forget_rng = ChaCha8Rng::seed_from_u64(seed);
    forget_rng.set_stream(2);
    let mut occurrences = Vec::with_capacity(forget.len() * repeats);
    if !forget.is_empty() {
        for _ in 0..repeats {
            let mut round = forget.clone();
            round.shuffle(&mut forget_rng);
            occurrences.extend(round);
        }
    }
    let width = (cfg.window_end - cfg.window_start) as u128;
    let n_occ = occurrences.len() as u128;
    let mut forget_at: Vec<Vec<DocId>> = vec![Vec::new(); cfg.steps];
    for (k, &doc) in occurrences.iter().enumerate() {
        let step = cfg.window_start + (k as u128 * width / n_occ) as usize;
        forget_at[step].push(doc);
    }

    let mut stream = CleanStream::new(clean, seed);
    let mut batches = Vec::with_capacity(cfg.steps);
    for (step, forget_here) in forget_at.into_iter().enumerate() {
        let used: usize = forget_here.iter().map(|&i| lengths[i as usize]).sum();
        if used > cap {
            bail!(
                "world.exposure.repeats: {repeats} repeats of {} forget documents over a window of {width} steps put \
                 {used} forget tokens into step {step}, more than a step holds ({cap} = batch_size × seq_len); \
                 lower the repeats or widen the window",
                forget.len()
            );
        }
        let mut budget = cap - used;
        let mut batch = Vec::new();
        while lengths[stream.peek() as usize] <= budget {
            let id = stream.next();
            budget -= lengths[id as usize];
            batch.push(id);
        }
        batch.extend(forget_here);
        batches.push(batch);
    }
    Ok(Schedule { config: cfg.clone(), seed, forget_repeats: repeats, tracked: forget, removed: Vec::new(), batches })
}

/// The clean documents as an endless sequence of per-epoch permutations.
struct CleanStream {
    docs: Vec<DocId>,
    order: Vec<DocId>,
    pos: usize,
    rng: ChaCha8Rng,
}

impl CleanStream {
    fn new(docs: Vec<DocId>, seed: u64) -> CleanStream {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        let mut order = docs.clone();
        order.shuffle(&mut rng);
        CleanStream { docs, order, pos: 0, rng }
    }

    fn peek(&self) -> DocId {
        self.order[self.pos]
    }

    fn next(&mut self) -> DocId {
        let id = self.order[self.pos];
        self.pos += 1;
        if self.pos == self.order.len() {
            self.order.clone_from(&self.docs);
            self.order.shuffle(&mut self.rng);
            self.pos = 0;
        }
        id
    }
}

impl Schedule {
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn batch(&self, step: usize) -> &[DocId] {
        &self.batches[step]
    }

    /// The oracle's schedule: every batch with `forget` deleted, nothing refilled.
    pub fn without(&self, forget: &[DocId]) -> Schedule {
        let drop: BTreeSet<DocId> = forget.iter().copied().collect();
        let batches = self.batches.iter().map(|b| b.iter().copied().filter(|d| !drop.contains(d)).collect()).collect();
        let mut removed: BTreeSet<DocId> = self.removed.iter().copied().collect();
        removed.extend(drop);
        Schedule { batches, removed: removed.into_iter().collect(), ..self.clone() }
    }

    /// How many times each document occurs over the run, indexed by doc id (`n_docs` long).
    pub fn occurrences(&self, n_docs: usize) -> Vec<usize> {
        let mut out = vec![0; n_docs];
        for b in &self.batches {
            for &d in b {
                if let Some(c) = out.get_mut(d as usize) {
                    *c += 1;
                }
            }
        }
        out
    }

    /// Token count of one step's batch, by `lengths`.
    pub fn tokens_in_step(&self, step: usize, lengths: &[usize]) -> usize {
        self.batches[step].iter().map(|&d| lengths[d as usize]).sum()
    }

    /// The exposure ledger of the tracked (forget) documents.
    pub fn ledger(&self) -> Ledger {
        let tracked: BTreeSet<DocId> = self.tracked.iter().copied().collect();
        let mut seen: BTreeMap<DocId, Vec<usize>> = tracked.iter().map(|&d| (d, Vec::new())).collect();
        let mut first = None;
        for (step, batch) in self.batches.iter().enumerate() {
            for d in batch {
                if let Some(steps) = seen.get_mut(d) {
                    steps.push(step);
                    first.get_or_insert(step);
                }
            }
        }
        let checkpoints: Vec<CheckpointStatus> = self
            .config
            .checkpoint_steps
            .iter()
            .enumerate()
            .map(|(index, &step)| CheckpointStatus { index, step, clean: first.is_none_or(|f| step <= f) })
            .collect();
        let last_clean_checkpoint = checkpoints.iter().rposition(|c| c.clean).unwrap_or(0);
        Ledger {
            steps: self.batches.len(),
            window_start: self.config.window_start,
            window_end: self.config.window_end,
            forget_repeats: self.forget_repeats,
            exposures: seen.into_iter().map(|(doc, steps)| ForgetExposure { doc, steps }).collect(),
            checkpoints,
            last_clean_checkpoint,
            first_exposure_step: first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DocKind;

    /// 12 retain docs of length 10, 4 general of length 20, 3 forget of length 5, 1 held out.
    fn small_corpus() -> (Corpus, Vec<usize>) {
        let mut c = Corpus::default();
        let mut lens = Vec::new();
        for i in 0..12 {
            c.push(Role::Retain, DocKind::Qa, Some(i), format!("retain {i}"));
            lens.push(10);
        }
        for i in 0..4 {
            c.push(Role::General, DocKind::General, None, format!("general {i}"));
            lens.push(20);
        }
        for i in 0..3 {
            c.push(Role::Forget, DocKind::Qa, Some(100 + i), format!("forget {i}"));
            lens.push(5);
        }
        c.push(Role::HeldOut, DocKind::Qa, Some(200), "held out".into());
        lens.push(7);
        (c, lens)
    }

    fn small_config() -> ScheduleConfig {
        ScheduleConfig {
            steps: 20,
            tokens_per_step: 40,
            window_start: 8,
            window_end: 16,
            forget_repeats: Some(4),
            checkpoint_steps: vec![0, 4, 8, 12, 16, 20],
        }
    }

    #[test]
    fn ledger_matches_the_batches() {
        let (corpus, lens) = small_corpus();
        let s = schedule(&corpus, &lens, &small_config(), 7).unwrap();
        let ledger = s.ledger();
        // Independent recomputation: for each forget doc, scan every batch.
        let forget: Vec<DocId> = vec![16, 17, 18];
        assert_eq!(s.tracked, forget);
        for (e, &doc) in ledger.exposures.iter().zip(&forget) {
            assert_eq!(e.doc, doc);
            let mut expect = Vec::new();
            for step in 0..s.len() {
                for &d in s.batch(step) {
                    if d == doc {
                        expect.push(step);
                    }
                }
            }
            assert_eq!(e.steps, expect, "doc {doc}");
            assert_eq!(e.steps.len(), 4, "each forget doc seen `repeats` times");
            assert!(e.steps.iter().all(|&t| (8..16).contains(&t)), "inside the window: {:?}", e.steps);
        }
        // 3 docs × 4 repeats = 12 occurrences over 8 steps: occurrence k at 8 + k*8/12,
        // so the first is at step 8.
        assert_eq!(ledger.first_exposure_step, Some(8));
        let clean: Vec<bool> = ledger.checkpoints.iter().map(|c| c.clean).collect();
        assert_eq!(clean, vec![true, true, true, false, false, false]);
        assert_eq!(ledger.last_clean_checkpoint, 2);
        // Capacity respected, held-out doc 19 never scheduled.
        for step in 0..s.len() {
            assert!(s.tokens_in_step(step, &lens) <= 40);
            assert!(!s.batch(step).contains(&19));
        }
    }

    #[test]
    fn steps_are_filled_greedily_in_stream_order() {
        let (corpus, lens) = small_corpus();
        let s = schedule(&corpus, &lens, &small_config(), 7).unwrap();
        // Concatenating the clean parts of all batches gives whole epochs, each a
        // permutation of the 16 clean docs.
        let clean: Vec<DocId> = s.batches.iter().flatten().copied().filter(|&d| d < 16).collect();
        for epoch in clean.chunks(16).filter(|c| c.len() == 16) {
            let mut e = epoch.to_vec();
            e.sort();
            assert_eq!(e, (0..16).collect::<Vec<_>>());
        }
        // Outside the window a step stops only when the next doc would not fit: 40 tokens
        // minus what is used is less than the next doc's length.
        let mut next = 0;
        for step in 0..8 {
            let used = s.tokens_in_step(step, &lens);
            next += s.batch(step).len();
            let following = clean[next];
            assert!(used + lens[following as usize] > 40, "step {step} had room for doc {following}");
        }
    }

    #[test]
    fn oracle_has_identical_prefix_and_no_forget_doc() {
        let (corpus, lens) = small_corpus();
        let s = schedule(&corpus, &lens, &small_config(), 7).unwrap();
        let oracle = s.without(&s.tracked);
        assert_eq!(oracle.len(), s.len());
        assert_eq!(oracle.batches[..8], s.batches[..8]);
        for (step, (a, b)) in s.batches.iter().zip(&oracle.batches).enumerate() {
            assert!(b.iter().all(|d| !s.tracked.contains(d)), "forget doc in oracle step {step}");
            let kept: Vec<DocId> = a.iter().copied().filter(|d| !s.tracked.contains(d)).collect();
            assert_eq!(&kept, b, "step {step}: same clean docs in the same order");
        }
        let ledger = oracle.ledger();
        assert!(ledger.exposures.iter().all(|e| e.steps.is_empty()));
        assert!(ledger.checkpoints.iter().all(|c| c.clean));
        assert_eq!(ledger.first_exposure_step, None);
        assert_eq!(ledger.last_clean_checkpoint, 5);
    }

    #[test]
    fn same_seed_same_schedule_other_seed_differs() {
        let (corpus, lens) = small_corpus();
        let a = schedule(&corpus, &lens, &small_config(), 7).unwrap();
        let b = schedule(&corpus, &lens, &small_config(), 7).unwrap();
        let c = schedule(&corpus, &lens, &small_config(), 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.batches, c.batches);
    }

    #[test]
    fn window_at_step_zero_leaves_only_the_initialisation_clean() {
        let (corpus, lens) = small_corpus();
        let cfg = ScheduleConfig { window_start: 0, ..small_config() };
        let ledger = schedule(&corpus, &lens, &cfg, 1).unwrap().ledger();
        assert_eq!(ledger.first_exposure_step, Some(0));
        assert_eq!(ledger.last_clean_checkpoint, 0);
        assert!(ledger.checkpoints[0].clean && !ledger.checkpoints[1].clean);
    }

    #[test]
    fn auto_repeats_match_clean_exposure_inside_the_window() {
        let (corpus, lens) = small_corpus();
        // clean tokens 12*10 + 4*20 = 200, forget 15; window 8 steps * 40 = 320 tokens
        // → round(320/215) = 1 repeat (a whole-run count would have been round(800/215) = 4).
        let cfg = ScheduleConfig { forget_repeats: None, ..small_config() };
        let s = schedule(&corpus, &lens, &cfg, 3).unwrap();
        assert_eq!(s.forget_repeats, 1);
        let occ = s.occurrences(corpus.docs.len());
        assert!(occ[16..19].iter().all(|&n| n == 1), "{occ:?}");
    }

    /// Exposure density: inside the window, a forget document is in as many batches per step
    /// as a retain document (counted independently from the batches, not from `repeats`).
    #[test]
    fn forget_and_retain_documents_are_seen_at_the_same_rate_inside_the_window() {
        // 40 retain docs of 12 tokens, 8 forget docs of 12 tokens; 6 docs per step;
        // 300 steps with the window over the second half.
        let mut c = Corpus::default();
        let mut lens = Vec::new();
        for i in 0..40 {
            c.push(Role::Retain, DocKind::Qa, Some(i), format!("retain {i}"));
            lens.push(12);
        }
        for i in 0..8 {
            c.push(Role::Forget, DocKind::Qa, Some(100 + i), format!("forget {i}"));
            lens.push(12);
        }
        let cfg = ScheduleConfig {
            steps: 300,
            tokens_per_step: 72,
            window_start: 150,
            window_end: 300,
            forget_repeats: None,
            checkpoint_steps: vec![0, 150, 300],
        };
        let s = schedule(&c, &lens, &cfg, 5).unwrap();
        let (mut retain, mut forget) = (0usize, 0usize);
        for step in 150..300 {
            for &d in s.batch(step) {
                if d < 40 {
                    retain += 1;
                } else {
                    forget += 1;
                }
            }
        }
        let per_doc_step = |n: usize, docs: usize| n as f64 / docs as f64 / 150.0;
        let (r, f) = (per_doc_step(retain, 40), per_doc_step(forget, 8));
        // 150 steps * 6 docs = 900 slots over 48 docs: 18.75 per doc → 19 repeats each.
        assert_eq!(s.forget_repeats, 19);
        assert!((f / r - 1.0).abs() < 0.05, "forget {f:.4} vs retain {r:.4} per document per step");
        // and never before the window
        assert!(s.batches[..150].iter().flatten().all(|&d| d < 40));
    }

    #[test]
    fn overfull_window_is_an_error_naming_repeats() {
        let (corpus, lens) = small_corpus();
        let cfg = ScheduleConfig { window_start: 15, window_end: 16, forget_repeats: Some(4), ..small_config() };
        let err = format!("{:#}", schedule(&corpus, &lens, &cfg, 1).unwrap_err());
        assert!(err.contains("world.exposure.repeats") && err.contains("step 15"), "{err}");
    }

    #[test]
    fn bad_lengths_are_errors() {
        let (corpus, mut lens) = small_corpus();
        assert!(schedule(&corpus, &lens[..5], &small_config(), 1).is_err());
        lens[3] = 41;
        let err = format!("{:#}", schedule(&corpus, &lens, &small_config(), 1).unwrap_err());
        assert!(err.contains("document 3"), "{err}");
    }
}
