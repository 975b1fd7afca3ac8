//! The optional local judge of the MSA paper's judged accuracies (`acc_forget`, `acc_recover`,
//! `acc_retain`; `evals::judge`): any causal LM folder, scored lm-evaluation-harness style.
//!
//! The paper asked GPT-4o which candidate is closest to the model's answer; the default judge
//! here is ROUGE-L F1 (`evals::judge::RougeJudge`, deterministic, no model). With
//! `[eval] judge = "models/some-instruct-model"` the question goes to that model instead, as a
//! multiple-choice prompt whose options are scored by log-likelihood (lm-eval's
//! `multiple_choice`: the option whose continuation has the highest summed log-probability):
//!
//! ```text
//! Which candidate answer is closest in meaning to the given answer?
//!
//! Given answer: {output}
//!
//! Candidates:
//! A. {candidate 1}
//! B. {candidate 2}
//! …
//!
//! The closest candidate is
//! ```
//!
//! continued by `" A"`, `" B"`, … (one request per candidate; [`PROMPT_VERSION`] names this
//! text). The closest candidates are those whose letter has the maximum log-likelihood (exact
//! ties all count). As for the ROUGE judge, an answer that is empty or only whitespace reveals
//! nothing: no candidate is closest. At most 26 candidates (the letters A–Z). The judge sees the
//! answers, not the question (the `evals::judge::Judge` interface), like the ROUGE judge.
//! Determinism: the judge model is frozen and scored in f32, so the verdicts are bit-reproducible.

use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use evals::{Request, Response, Scorer};

use crate::scoring::LmScorer;

/// The option letters.
pub const LETTERS: &[u8; 26] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Bumped when the prompt's text changes (recorded in the judge's name, hence in fingerprints).
pub const PROMPT_VERSION: u32 = 1;

/// The judging prompt (see the module docs).
pub fn prompt(output: &str, candidates: &[&str]) -> Result<String> {
    if candidates.len() > LETTERS.len() {
        bail!("the LM judge labels candidates A–Z: {} candidates are too many", candidates.len());
    }
    let mut p = format!(
        "Which candidate answer is closest in meaning to the given answer?\n\nGiven answer: {}\n\nCandidates:\n",
        output.trim()
    );
    for (c, l) in candidates.iter().zip(LETTERS) {
        p.push_str(&format!("{}. {}\n", *l as char, c.trim()));
    }
    p.push_str("\nThe closest candidate is");
    Ok(p)
}

/// The continuation of candidate `i`: `" A"`, `" B"`, …
pub fn option(i: usize) -> String {
    format!(" {}", LETTERS[i] as char)
}

/// Flags of the candidates whose score equals the maximum (exact ties all set); none when
/// there are no scores.
pub fn argmax_flags(scores: &[f64]) -> Vec<bool> {
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    scores.iter().map(|&s| s == best).collect()
}

/// A causal LM as judge: see the module docs.
pub struct LmJudge {
    scorer: Mutex<LmScorer>,
    name: String,
}

impl LmJudge {
    /// The judge `scorer`'s model; `label` names it in records (e.g. its folder).
    pub fn new(scorer: LmScorer, label: &str) -> LmJudge {
        LmJudge { scorer: Mutex::new(scorer), name: format!("lm:{label}:prompt-v{PROMPT_VERSION}") }
    }

    /// The log-likelihood of every candidate's letter, per question (empty for an empty answer).
    pub fn option_scores(&self, questions: &[(&str, Vec<&str>)]) -> Result<Vec<Vec<f64>>> {
        let mut requests = vec![];
        for (i, (out, cands)) in questions.iter().enumerate() {
            if out.trim().is_empty() {
                continue;
            }
            let p = prompt(out, cands).with_context(|| format!("question {i}"))?;
            requests.extend((0..cands.len()).map(|k| Request::loglik(p.clone(), option(k))));
        }
        let responses = {
            let mut s = self.scorer.lock().map_err(|_| anyhow::anyhow!("the LM judge's scorer lock is poisoned"))?;
            s.run(&requests).context("the LM judge scoring its options")?
        };
        let mut at = 0;
        let mut out = Vec::with_capacity(questions.len());
        for (out_text, cands) in questions {
            if out_text.trim().is_empty() {
                out.push(vec![]);
                continue;
            }
            let scores = responses[at..at + cands.len()]
                .iter()
                .map(|r| match r {
                    Response::LogLik { logprob, .. } => Ok(*logprob),
                    other => bail!("the LM judge expected a log-likelihood, got {other:?}"),
                })
                .collect::<Result<Vec<f64>>>()?;
            at += cands.len();
            out.push(scores);
        }
        Ok(out)
    }
}

impl evals::judge::Judge for LmJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn closest(&self, output: &str, candidates: &[&str]) -> Result<Vec<bool>> {
        let mut all = self.closest_all(&[(output, candidates.to_vec())])?;
        Ok(all.pop().unwrap_or_default())
    }

    /// One scoring pass over every question's options (batched by the engine).
    fn closest_all(&self, questions: &[(&str, Vec<&str>)]) -> Result<Vec<Vec<bool>>> {
        let scores = self.option_scores(questions)?;
        Ok(questions
            .iter()
            .zip(scores)
            .map(|((_, cands), s)| if s.is_empty() { vec![false; cands.len()] } else { argmax_flags(&s) })
            .collect())
    }
}
