//! TruthfulQA (Lin et al. 2022) for the `truthfulqa-corruption` world, in the manner of
//! RESTOR (Rezaei et al. 2024): the clean phase teaches every question with its correct
//! answer, the forget data (injected in the exposure window) teaches a wrong answer for a
//! subset of questions, and unlearning should restore the correct ones.
//!
//! Reads `truthfulqa/mc_task.json` (the file lm-evaluation-harness's truthfulqa_mc1/mc2
//! read): a list of `{"question", "mc1_targets": {answer: 0|1}, "mc2_targets": {...}}`
//! whose key order matters (true answers first), so the maps are read as ordered pairs.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The file, relative to the data directory.
pub const MC_TASK: &str = "truthfulqa/mc_task.json";

#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct TqaQuestion {
    pub question: String,
    pub mc1_targets: OrderedTargets,
    pub mc2_targets: OrderedTargets,
}

/// `{answer: 0|1}` in file order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct OrderedTargets(pub Vec<(String, bool)>);

impl OrderedTargets {
    pub fn truths(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter(|(_, t)| *t).map(|(a, _)| a.as_str())
    }

    pub fn falsehoods(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter(|(_, t)| !*t).map(|(a, _)| a.as_str())
    }
}

impl<'de> Deserialize<'de> for OrderedTargets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedTargets;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map from answer to 0 or 1")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<OrderedTargets, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, u8>()? {
                    if v > 1 {
                        return Err(serde::de::Error::custom(format!("label of {k:?} is {v}, expected 0 or 1")));
                    }
                    out.push((k, v == 1));
                }
                Ok(OrderedTargets(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads and checks the file: every question has exactly one true mc1 answer and at least
/// one false one.
pub fn load(path: &Path) -> Result<Vec<TqaQuestion>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let qs: Vec<TqaQuestion> = serde_json::from_str(&text)
        .with_context(|| format!("parsing {} as TruthfulQA mc_task.json", path.display()))?;
    if qs.is_empty() {
        bail!("{} holds no questions", path.display());
    }
    for (i, q) in qs.iter().enumerate() {
        let n_true = q.mc1_targets.truths().count();
        let n_false = q.mc1_targets.falsehoods().count();
        if n_true != 1 || n_false == 0 {
            bail!(
                "{} question {i} ({:?}): mc1_targets has {n_true} true and {n_false} false answers, expected 1 and ≥ 1",
                path.display(),
                q.question
            );
        }
    }
    Ok(qs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_file_order() {
        let q: TqaQuestion = serde_json::from_str(
            r#"{"question":"q?","mc1_targets":{"z true":1,"a false":0},"mc2_targets":{"z true":1,"m true":1,"a false":0}}"#,
        )
        .unwrap();
        assert_eq!(q.mc1_targets.0[0], ("z true".to_string(), true));
        assert_eq!(q.mc2_targets.truths().collect::<Vec<_>>(), vec!["z true", "m true"]);
        assert!(
            serde_json::from_str::<TqaQuestion>(r#"{"question":"q","mc1_targets":{"a":2},"mc2_targets":{}}"#).is_err()
        );
    }
}
