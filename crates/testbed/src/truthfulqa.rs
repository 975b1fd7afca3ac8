//! TruthfulQA (Lin et al. 2022) for the `truthfulqa-corruption` world, in the manner of
//! RESTOR (Rezaei et al. 2024): the clean phase teaches every question with its correct
//! answer, the forget data (injected in the exposure window) teaches a wrong answer for a
//! subset of questions, and unlearning should restore the correct ones.
//!
//! Reads `truthfulqa/mc_task.json` (the file lm-evaluation-harness's truthfulqa_mc1/mc2
//! read) with the metrics' own loader, `evals::truthfulqa::load_mc_task`, and views each row
//! as ordered `(answer, true?)` pairs (key order matters: true answers first).

use std::path::Path;

use anyhow::{bail, Result};

/// The file, relative to the data directory.
pub const MC_TASK: &str = "truthfulqa/mc_task.json";

/// One question as this world reads it: the answer sets as `(answer, true?)` in file order.
#[derive(Clone, Debug, PartialEq)]
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

impl From<evals::truthfulqa::TruthfulQaItem> for TqaQuestion {
    fn from(it: evals::truthfulqa::TruthfulQaItem) -> TqaQuestion {
        // The loader checked that the one true mc1 answer comes first.
        let mc1 = it.mc1_choices.into_iter().enumerate().map(|(i, a)| (a, i == 0)).collect();
        let mc2 = it.mc2_choices.into_iter().zip(it.mc2_labels).map(|(a, l)| (a, l == 1)).collect();
        TqaQuestion { question: it.question, mc1_targets: OrderedTargets(mc1), mc2_targets: OrderedTargets(mc2) }
    }
}

/// Reads the file with the loader the TruthfulQA metrics use (`evals::truthfulqa::load_mc_task`,
/// one parser and one set of checks: a malformed row is an error naming the file and row).
pub fn load(path: &Path) -> Result<Vec<TqaQuestion>> {
    let loaded = evals::truthfulqa::load_mc_task(path, &evals::truthfulqa::LoadOptions::default())?;
    if loaded.items.is_empty() {
        bail!("{} holds no questions", path.display());
    }
    Ok(loaded.items.into_iter().map(TqaQuestion::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_file_order_and_labels() {
        let dir = std::env::temp_dir().join(format!("testbed-tqa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mc_task.json");
        std::fs::write(
            &path,
            r#"[{"question":"q?","mc1_targets":{"z true":1,"a false":0},"mc2_targets":{"z true":1,"m true":1,"a false":0,"late true":1}}]"#,
        )
        .unwrap();
        let q = &load(&path).unwrap()[0];
        assert_eq!(q.mc1_targets.0, vec![("z true".to_string(), true), ("a false".to_string(), false)]);
        // A true answer after the first false one keeps its label here (the world reads the
        // file's labels; lm-eval's MC2 split is the metric's business).
        assert_eq!(q.mc2_targets.truths().collect::<Vec<_>>(), vec!["z true", "m true", "late true"]);
        assert_eq!(q.mc2_targets.falsehoods().collect::<Vec<_>>(), vec!["a false"]);
        std::fs::write(&path, r#"[{"question":"q","mc1_targets":{"a":2},"mc2_targets":{}}]"#).unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(err.contains("row 0") && err.contains("mc1_targets") && err.contains("mc_task.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
