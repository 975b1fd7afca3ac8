//! Exact memorisation and extraction strength (open-unlearning's `exact_memorization` and
//! `extraction_strength`; Tirumala et al. 2022, Carlini et al. 2021) on forget passages, by
//! teacher forcing: at every scored position t of a text the model's greedy prediction is
//! *correct* when the true token x_t is an argmax of p(·|x_<t).
//!
//! - exact memorisation EM = (1/n) Σ_t 1[x_t correct];
//! - extraction strength ES = 1 − k*/n, with k* the smallest k in 0..=n such that every
//!   position from k on is correct (k* = n, ES = 0, when the last token is wrong; ES = 1 when the
//!   whole text is predicted): how short a prefix suffices for the rest to come out greedily.
//!
//! Correctness is read from a `TokenLogprobs` and a `Distributions` response of the same text:
//! `lp[t] = rows[t][x_t]`, so x_t is an argmax iff lp[t] ≥ max(rows[t]) − [`ARGMAX_TOLERANCE`]
//! (the two requests may come from different batches, so equal values can differ by float
//! rounding; a tie counts as correct). A text longer than the rows is scored on its first
//! `rows.len()` tokens, as `mia_minkpp_auc`.
//!
//! The sweep metric `exact_memorization` (records `exact_memorization` = mean EM and
//! `exact_memorization/extraction_strength` = mean ES, both judged toward the oracle's) scores
//! the world's forget documents (capped like the membership-inference sets).

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::metric::{expect_len, Direction, Metric, MetricValue};
use crate::scorer::{Request, Response};

/// How far below the row's maximum a true token's log-probability may be and still count as
/// the argmax (float rounding between two passes).
pub const ARGMAX_TOLERANCE: f32 = 1e-4;

/// Per scored position: whether the true token is the greedy prediction.
pub fn token_hits(lp: &[f32], rows: &[Vec<f32>]) -> Result<Vec<bool>> {
    let n = lp.len().min(rows.len());
    if n == 0 {
        bail!("the text has no scored tokens");
    }
    (0..n)
        .map(|t| {
            let max = rows[t].iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if !lp[t].is_finite() && lp[t] != f32::NEG_INFINITY || max.is_nan() {
                bail!("position {t}: log-probability {} or row maximum {max} is not a number", lp[t]);
            }
            Ok(lp[t] >= max - ARGMAX_TOLERANCE)
        })
        .collect()
}

/// Exact memorisation: the share of correct positions.
pub fn exact_memorisation(hits: &[bool]) -> f64 {
    hits.iter().filter(|&&h| h).count() as f64 / hits.len().max(1) as f64
}

/// Extraction strength: 1 − k*/n (see the module docs).
pub fn extraction_strength(hits: &[bool]) -> f64 {
    let n = hits.len();
    let correct_suffix = hits.iter().rev().take_while(|&&h| h).count();
    let k = n - correct_suffix;
    1.0 - k as f64 / n.max(1) as f64
}

/// Both scores over a set of texts (forget passages): the value is the mean exact
/// memorisation, the sub-value `extraction_strength` the mean extraction strength; per
/// example `em`, `es`, `n_tokens`.
#[derive(Clone, Debug)]
pub struct ExactMemorisation {
    pub texts: Vec<String>,
}

impl Metric for ExactMemorisation {
    fn name(&self) -> &str {
        "exact_memorization"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::LowerIsBetter
    }
    fn requests(&self) -> Vec<Request> {
        self.texts
            .iter()
            .flat_map(|t| [Request::TokenLogprobs { text: t.clone() }, Request::Distributions { text: t.clone() }])
            .collect()
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, 2 * self.texts.len(), self.name())?;
        if self.texts.is_empty() {
            return Ok(MetricValue::skipped("no texts"));
        }
        let (mut em_sum, mut es_sum) = (0.0, 0.0);
        let mut extra = Vec::with_capacity(self.texts.len());
        for (i, pair) in responses.chunks(2).enumerate() {
            let hits =
                token_hits(pair[0].token_logprobs()?, pair[1].distributions()?).with_context(|| format!("text {i}"))?;
            let (em, es) = (exact_memorisation(&hits), extraction_strength(&hits));
            em_sum += em;
            es_sum += es;
            extra.push(json!({ "em": em, "es": es, "n_tokens": hits.len() }));
        }
        let n = self.texts.len() as f64;
        Ok(MetricValue::scalar(em_sum / n).with("extraction_strength", es_sum / n).with_examples(extra))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows over a three-token vocabulary (log-probabilities), and the true tokens' entries.
    fn text() -> (Vec<f32>, Vec<Vec<f32>>) {
        let ln = |p: f64| p.ln() as f32;
        let rows = vec![
            vec![ln(0.7), ln(0.2), ln(0.1)], // true token 0: argmax → correct
            vec![ln(0.2), ln(0.5), ln(0.3)], // true token 2: 0.3 < 0.5 → wrong
            vec![ln(0.1), ln(0.6), ln(0.3)], // true token 1: correct
            vec![ln(0.4), ln(0.4), ln(0.2)], // true token 1: tie with token 0 → correct
        ];
        let lp = vec![rows[0][0], rows[1][2], rows[2][1], rows[3][1]];
        (lp, rows)
    }

    #[test]
    fn scores_by_hand() {
        let (lp, rows) = text();
        let hits = token_hits(&lp, &rows).unwrap();
        assert_eq!(hits, vec![true, false, true, true]);
        // EM = 3/4; the correct suffix is positions 2..4, so k* = 2 and ES = 1 − 2/4
        assert_eq!(exact_memorisation(&hits), 0.75);
        assert_eq!(extraction_strength(&hits), 0.5);
        assert_eq!(extraction_strength(&[true, true, false]), 0.0);
        assert_eq!(extraction_strength(&[true, true, true]), 1.0);
        assert_eq!(extraction_strength(&[false, true, true, true, true]), 0.8);
    }

    #[test]
    fn metric_means_over_texts() {
        let (lp, rows) = text();
        let m = ExactMemorisation { texts: vec!["a".into(), "b".into()] };
        // text b: only its first two positions are scored (a shorter rows answer)
        let responses = vec![
            Response::TokenLogprobs(lp.clone()),
            Response::Distributions(rows.clone()),
            Response::TokenLogprobs(lp.clone()),
            Response::Distributions(rows[..2].to_vec()),
        ];
        let v = m.compute(&responses).unwrap();
        // a: EM 0.75, ES 0.5; b: hits [true, false] → EM 0.5, ES 0
        assert!((v.value().unwrap() - 0.625).abs() < 1e-12);
        assert!((v.aggregate["extraction_strength"] - 0.25).abs() < 1e-12);
        assert!(m.compute(&responses[..3]).is_err());
        assert!(token_hits(&[], &[]).is_err());
    }
}
