//! Caps on how many items of each kind a suite scores.

use serde::{Deserialize, Serialize};

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
