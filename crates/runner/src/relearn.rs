//! The relearning attack (`[attacks] relearn = { … }`, issue 17): is the forgotten knowledge
//! gone, or only hidden? A few steps of fine-tuning on *part* of the forget set bring back
//! knowledge that was suppressed rather than removed — including knowledge of the part the
//! attack did not train on (Hu et al. 2024, "Jogging the memory of unlearned LLMs"; Lynch et
//! al. 2024; Łucki et al. 2024).
//!
//! The forget entities are split once per world by `relearn.seed` ([`split_units`]): a
//! `fraction` of them is *taught* (the attack fine-tunes on all their forget documents), the
//! rest is *held* (only their QA items and documents are scored). The entities of a facts world
//! are independent invented authors, so fine-tuning on the taught ones cannot teach the held
//! ones' facts: what comes back on the held part was still in the weights. The oracle, which
//! never saw any forget document, shows what the attack does to a model that truly does not
//! know (≈ chance), and θ_D what it does to one that never forgot.
//!
//! The attack: plain next-token NLL ([`lm::train::NextToken`]), AdamW at a constant `lr`
//! without warm-up, no weight decay, global gradient norm clipped to 1, `batch_size` sequences
//! per step, batch order from `relearn.seed` — identical for every cell of a world, reference
//! rows included. The held part is scored before the attack (records `attack/relearn@0/…`) and
//! after each step in `eval_at` (`attack/relearn@K/…`); the relearned copies are written to a
//! temporary folder beside the cell's models and deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::config::Relearn;
use crate::store::MetricRecord;
use crate::suite::EvalSuite;

/// Bumped when the attack's procedure changes (it is part of the cells' fingerprint).
pub const VERSION: u32 = 1;

/// The attack name in records: `relearn@K` after K optimizer steps.
pub fn attack_name(step: usize) -> String {
    format!("relearn@{step}")
}

/// The taught and held forget entities: `units` (sorted or not) ordered by SHA-256 of
/// (`seed`, unit) — a permutation fixed by the seed and independent of everything else — and
/// the first round(`fraction` · n) taught. Errors when either part would be empty.
pub fn split_units(units: &[u32], fraction: f64, seed: u64) -> Result<(BTreeSet<u32>, BTreeSet<u32>)> {
    let n = units.len();
    let taught_n = (fraction * n as f64).round() as usize;
    if taught_n == 0 || taught_n >= n {
        bail!(
            "attacks.relearn.fraction = {fraction}: of the world's {n} forget entities it would teach {taught_n}; \
             the attack needs at least one entity to teach and one to score (choose a fraction nearer 0.5 or a \
             larger forget split)"
        );
    }
    let key = |u: u32| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(u.to_le_bytes());
        h.finalize().into()
    };
    let mut order: Vec<u32> = units.to_vec();
    order.sort_by_key(|&u| (key(u), u));
    let taught: BTreeSet<u32> = order[..taught_n].iter().copied().collect();
    let held: BTreeSet<u32> = order[taught_n..].iter().copied().collect();
    Ok((taught, held))
}

/// What the attack needs from the cell's world.
pub struct RelearnInputs<'a> {
    pub world: &'a testbed::World,
    /// The world's forget documents tokenised as the methods train on them, in the order of
    /// `world.splits.forget_docs`.
    pub forget: &'a [lm::train::Example],
    pub pad: u32,
    pub suite: &'a EvalSuite,
    /// Where the temporary relearned copies go (`DIR/CELL_ID.relearn-K`).
    pub models_dir: &'a Path,
    pub cell_id: &'a str,
}

/// The taught documents' examples and the held part's suite.
pub fn prepare<'a>(cfg: &Relearn, input: &RelearnInputs<'a>) -> Result<(Vec<&'a lm::train::Example>, EvalSuite)> {
    let splits = &input.world.splits;
    if splits.forget_docs.len() != input.forget.len() {
        bail!(
            "relearn: {} tokenised forget examples for {} forget documents",
            input.forget.len(),
            splits.forget_docs.len()
        );
    }
    let (taught, held) = split_units(&splits.forget_units, cfg.fraction, cfg.seed)?;
    let mut examples = Vec::new();
    let mut held_docs = BTreeSet::new();
    for (&id, ex) in splits.forget_docs.iter().zip(input.forget) {
        let doc = input.world.corpus.get(id).with_context(|| format!("relearn: forget document {id} missing"))?;
        match doc.unit {
            Some(u) if taught.contains(&u) => examples.push(ex),
            Some(u) if held.contains(&u) => {
                held_docs.insert(id);
            }
            _ => {}
        }
    }
    if examples.is_empty() {
        bail!(
            "relearn: the taught forget entities {taught:?} have no forget documents (attacks.relearn.fraction = {})",
            cfg.fraction
        );
    }
    let suite = input.suite.forget_subset(&held, &held_docs)?;
    let (qa, docs) = suite.forget_counts();
    if qa == 0 && docs == 0 {
        bail!(
            "relearn: the held forget entities {held:?} have no scored QA items or documents \
             (attacks.relearn.fraction = {}; the suite's limits may have left them out)",
            cfg.fraction
        );
    }
    Ok((examples, suite))
}

/// The trainer settings of the attack (see the module docs).
pub fn train_config(cfg: &Relearn, n_examples: usize) -> lm::train::TrainConfig {
    let per_epoch = n_examples.div_ceil(cfg.batch_size).max(1);
    lm::train::TrainConfig {
        lr: cfg.lr,
        weight_decay: 0.0,
        warmup_steps: Some(0),
        schedule: lm::train::LrSchedule::Constant,
        max_grad_norm: Some(1.0),
        batch_size: cfg.batch_size,
        grad_accum: 1,
        epochs: cfg.steps.div_ceil(per_epoch),
        max_steps: Some(cfg.steps),
        seed: cfg.seed,
        ..Default::default()
    }
}

/// Runs the attack on the model in `model_dir`: records `attack/relearn@K/RECORD` for K = 0
/// and every step of `eval_at`, and the seconds spent.
pub fn run(
    cfg: &Relearn,
    input: &RelearnInputs,
    model_dir: &Path,
    device: &candle_core::Device,
) -> Result<BTreeMap<String, MetricRecord>> {
    let (examples, suite) = prepare(cfg, input)?;
    let mut out = BTreeMap::new();
    let mut put = |step: usize, records: BTreeMap<String, MetricRecord>| {
        for (k, r) in records {
            out.insert(format!("attack/{}/{k}", attack_name(step)), r);
        }
    };
    put(0, suite.forget_subset_records(model_dir, device).context("relearn: scoring the held part before the attack")?);
    let owned: Vec<lm::train::Example> = examples.into_iter().cloned().collect();
    let model = lm::CausalLm::load(model_dir, device, true)
        .with_context(|| format!("relearn: loading {} to fine-tune", model_dir.display()))?;
    let tc = train_config(cfg, owned.len());
    let mut scored: Vec<(usize, BTreeMap<String, MetricRecord>)> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    let mut at = cfg.eval_at.iter().peekable();
    {
        let model_ref = &model;
        let suite_ref = &suite;
        let mut cb = |step: usize, _total: usize, _loss: f64| {
            if failure.is_some() || at.peek() != Some(&&step) {
                return;
            }
            at.next();
            let dir = input.models_dir.join(format!("{}.relearn-{step}", input.cell_id));
            let r = lm::checkpoint::save(model_ref, &dir, Some(model_dir))
                .and_then(|_| suite_ref.forget_subset_records(&dir, device));
            let _ = std::fs::remove_dir_all(&dir);
            match r {
                Ok(records) => scored.push((step, records)),
                Err(e) => failure = Some(e.context(format!("relearn: scoring the held part after {step} steps"))),
            }
        };
        lm::train::fit(model_ref, &owned, None, &tc, &lm::train::NextToken, input.pad, Some(&mut cb))
            .context("relearn: fine-tuning on the taught forget entities")?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(&missing) = at.next() {
        bail!("relearn: training stopped before step {missing} of attacks.relearn.eval_at");
    }
    for (step, records) in scored {
        put(step, records);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_sweep, Registry};

    #[test]
    fn split_is_disjoint_deterministic_and_seeded() {
        let units: Vec<u32> = (10..20).collect();
        let (t, h) = split_units(&units, 0.5, 0).unwrap();
        assert_eq!((t.len(), h.len()), (5, 5));
        assert!(t.is_disjoint(&h));
        assert_eq!(t.union(&h).copied().collect::<Vec<_>>(), units);
        // the same seed gives the same split, whatever the input order
        let mut rev = units.clone();
        rev.reverse();
        assert_eq!(split_units(&rev, 0.5, 0).unwrap(), (t.clone(), h.clone()));
        // another seed another split (for these ten units and seeds 0..8 at least one differs)
        assert!((1..8).any(|s| split_units(&units, 0.5, s).unwrap().0 != t));
        // round(0.3 · 10) = 3 taught
        assert_eq!(split_units(&units, 0.3, 0).unwrap().0.len(), 3);
    }

    #[test]
    fn split_refuses_an_empty_part() {
        let e = split_units(&[1, 2, 3], 0.1, 0).unwrap_err().to_string();
        assert!(e.contains("attacks.relearn.fraction = 0.1") && e.contains("teach 0"), "{e}");
        let e = split_units(&[1, 2, 3], 0.9, 0).unwrap_err().to_string();
        assert!(e.contains("teach 3"), "{e}");
    }

    #[test]
    fn constant_lr_and_enough_epochs() {
        let cfg = Relearn { fraction: 0.5, steps: 7, lr: 1e-3, eval_at: vec![7], batch_size: 4, seed: 3 };
        let tc = train_config(&cfg, 10); // 3 steps per epoch → 3 epochs, stopped at 7
        assert_eq!((tc.epochs, tc.max_steps, tc.seed), (3, Some(7), 3));
        assert_eq!(tc.lr_at(0, 7), 1e-3);
        assert_eq!(tc.lr_at(6, 7), 1e-3);
    }

    fn parse(relearn: &str) -> Result<crate::config::Sweep> {
        let text = format!(
            "metrics = [\"mc_accuracy\"]\nseeds = [0]\n[world]\nkind = \"facts\"\n[[models]]\nname = \"m\"\nscratch = \"micro\"\n\
             [attacks]\nrelearn = {relearn}\n"
        );
        parse_sweep(&text, Path::new("t.toml"), &Registry::DEFAULT)
    }

    #[test]
    fn config_is_read_and_checked() {
        let s = parse("{ fraction = 0.5, steps = 10, lr = 1e-4, eval_at = [2, 5, 10] }").unwrap();
        let r = s.attacks.relearn.clone().unwrap();
        assert_eq!(r, Relearn { fraction: 0.5, steps: 10, lr: 1e-4, eval_at: vec![2, 5, 10], batch_size: 8, seed: 0 });
        assert!(!s.attacks.is_empty());
        let r = parse("{ fraction = 0.5, steps = 4, lr = 1e-4 }").unwrap().attacks.relearn.unwrap();
        assert_eq!(r.eval_at, vec![4]);
        for (bad, needle) in [
            ("{ fraction = 1.0, steps = 4, lr = 1e-4 }", "attacks.relearn.fraction = 1"),
            ("{ fraction = 0.0, steps = 4, lr = 1e-4 }", "attacks.relearn.fraction = 0"),
            ("{ fraction = 0.5, steps = 0, lr = 1e-4 }", "attacks.relearn.steps = 0"),
            ("{ fraction = 0.5, steps = 4, lr = -1.0 }", "attacks.relearn.lr = -1"),
            ("{ fraction = 0.5, steps = 4, lr = 1e-4, eval_at = [2, 5] }", "attacks.relearn.eval_at[1] = 5"),
            ("{ fraction = 0.5, steps = 4, lr = 1e-4, eval_at = [3, 2, 4] }", "strictly increasing"),
            ("{ fraction = 0.5, steps = 4, lr = 1e-4, eval_at = [2] }", "must be attacks.relearn.steps"),
            ("{ fraction = 0.5, steps = 4, lr = 1e-4, batch_size = 0 }", "attacks.relearn.batch_size = 0"),
            ("{ steps = 4, lr = 1e-4 }", "attacks.relearn.fraction"),
            ("{ fraction = 0.5, steps = 4, lr = 1e-4, stepz = 3 }", "stepz"),
        ] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
