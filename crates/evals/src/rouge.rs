//! ROUGE-L (longest common subsequence) as computed by Google's `rouge_score` package
//! (`rouge_scorer.RougeScorer(['rougeL'], use_stemmer=...)`), the implementation TOFU
//! (ROUGE-L recall) and MUSE (ROUGE-L F1) report.
//!
//! Tokenisation follows `rouge_score.tokenize.tokenize`: lowercase, replace every run of
//! characters outside `[a-z0-9]` by a space, split on whitespace, drop empty tokens; with
//! `use_stemmer`, tokens longer than 3 characters go through NLTK's Porter stemmer
//! ([`crate::porter`]). TOFU and open-unlearning score with `use_stemmer=True`.

use serde::{Deserialize, Serialize};

/// ROUGE-L precision, recall and F1 of a prediction against a target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RougeL {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// `rouge_score`'s default tokenizer (without stemming).
pub fn tokenize(text: &str) -> Vec<String> {
    tokenize_with(text, false)
}

/// `rouge_score.tokenize.tokenize(text, stemmer)`: with `use_stemmer`, tokens longer than 3
/// characters are Porter-stemmed.
pub fn tokenize_with(text: &str, use_stemmer: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    lower
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| if use_stemmer && t.len() > 3 { crate::porter::stem(t) } else { t.to_string() })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Length of the longest common subsequence of two token lists (O(len_a * len_b), one row kept).
pub fn lcs_len(a: &[String], b: &[String]) -> usize {
    if a.is_empty() || b.is_empty() {
        return 0;
    }
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L of `prediction` against `target` without stemming (argument order of
/// `RougeScorer.score(target, prediction)`).
pub fn rouge_l(target: &str, prediction: &str) -> RougeL {
    rouge_l_with(target, prediction, false)
}

/// ROUGE-L with or without the Porter stemmer. Either side without tokens gives all zeros, as
/// in `rouge_score`.
pub fn rouge_l_with(target: &str, prediction: &str, use_stemmer: bool) -> RougeL {
    let t = tokenize_with(target, use_stemmer);
    let p = tokenize_with(prediction, use_stemmer);
    if t.is_empty() || p.is_empty() {
        return RougeL { precision: 0.0, recall: 0.0, f1: 0.0 };
    }
    let lcs = lcs_len(&t, &p) as f64;
    let precision = lcs / p.len() as f64;
    let recall = lcs / t.len() as f64;
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    RougeL { precision, recall, f1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(target: &str, prediction: &str, expected: (f64, f64, f64)) {
        let r = rouge_l(target, prediction);
        let got = (r.precision, r.recall, r.f1);
        assert!(
            (got.0 - expected.0).abs() < 1e-12
                && (got.1 - expected.1).abs() < 1e-12
                && (got.2 - expected.2).abs() < 1e-12,
            "rouge_l({target:?}, {prediction:?}) = {got:?}, expected {expected:?}"
        );
    }

    #[test]
    fn stemmed_matches_rouge_score_package() {
        // rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True).score(target, prediction)['rougeL']
        let cases = [
            (
                "The authors were writing studies about generalizations.",
                "An author writes a study on generalization",
                (0.5714285714285714, 0.5714285714285714, 0.5714285714285714),
            ),
            (
                "Jaime Vasquez was born in Santiago, Chile in 1958.",
                "He was born in Chile, in the year 1958",
                (0.6666666666666666, 0.6666666666666666, 0.6666666666666666),
            ),
            ("The cats are running happily", "the cat runs happy", (0.75, 0.6, 0.6666666666666665)),
            (
                "His books explore themes of identity and belonging.",
                "His book explored the theme of identities",
                (0.8571428571428571, 0.75, 0.7999999999999999),
            ),
        ];
        for (t, p, e) in cases {
            let r = rouge_l_with(t, p, true);
            assert!(
                (r.precision - e.0).abs() < 1e-12 && (r.recall - e.1).abs() < 1e-12 && (r.f1 - e.2).abs() < 1e-12,
                "{t:?} / {p:?}: {r:?} vs {e:?}"
            );
        }
        // rouge_score.tokenize.tokenize(..., porter.PorterStemmer())
        assert_eq!(
            tokenize_with("The authors were writing studies about generalizations.", true),
            vec!["the", "author", "were", "write", "studi", "about", "gener"]
        );
    }

    #[test]
    fn tokenizer_matches_rouge_score() {
        // rouge_score.tokenize.tokenize("Hello, World! It's 3.14 -- ÉTÉ_x", None)
        // -> ['hello', 'world', 'it', 's', '3', '14', 't', 'x']
        assert_eq!(
            tokenize("Hello, World! It's 3.14 -- ÉTÉ_x"),
            vec!["hello", "world", "it", "s", "3", "14", "t", "x"]
        );
        assert!(tokenize("  ... !!").is_empty());
    }

    #[test]
    fn matches_rouge_score_package() {
        // Reference values from rouge_score 0.1.2:
        //   from rouge_score import rouge_scorer
        //   s = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=False)
        //   r = s.score(target, prediction)['rougeL']; (r.precision, r.recall, r.fmeasure)
        check(
            "The cat sat on the mat.",
            "the cat is on the mat",
            (0.8333333333333334, 0.8333333333333334, 0.8333333333333334),
        );
        check(
            "Jaime Vasquez was born in Santiago, Chile in 1958.",
            "He was born in Chile, in the year 1958",
            (0.6666666666666666, 0.6666666666666666, 0.6666666666666666),
        );
        check("a b c d e f", "f e d c b a", (0.16666666666666666, 0.16666666666666666, 0.16666666666666666));
        check("police killed the gunman", "the gunman police killed", (0.5, 0.5, 0.5));
        check("anything", "", (0.0, 0.0, 0.0));
        check("", "anything", (0.0, 0.0, 0.0));
        check("Hello!!", "hello", (1.0, 1.0, 1.0));
        check("one two three four five", "one three five seven", (0.75, 0.6, 0.6666666666666665));
    }
}
