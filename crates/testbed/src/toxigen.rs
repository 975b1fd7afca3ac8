//! ToxiGen (Hartvigsen et al. 2022) for the `toxigen` world: the human-annotated statements
//! of `toxigen/safenlp_toxigen.json` (SafeNLP's copy). Neutral statements are clean training
//! data; hateful statements about the chosen target groups are the forget data, except a
//! held-out share of them that is never trained on and measures generalisation.
//! The content is offensive by design.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The file, relative to the data directory.
pub const SAFENLP: &str = "toxigen/safenlp_toxigen.json";

#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct Statement {
    pub id: u32,
    pub text: String,
    pub toxicity_score: f64,
    /// `hate` or `neutral`.
    pub label: String,
    pub target_groups: Vec<String>,
}

impl Statement {
    pub fn is_hate(&self) -> bool {
        self.label == "hate"
    }

    /// The text with the spreadsheet artefact `_x000D_` removed and whitespace collapsed.
    pub fn clean_text(&self) -> String {
        self.text.replace("_x000D_", " ").split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Reads the file and checks each label.
pub fn load(path: &Path) -> Result<Vec<Statement>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<Statement> =
        serde_json::from_str(&text).with_context(|| format!("parsing {} as SafeNLP ToxiGen JSON", path.display()))?;
    for (i, r) in rows.iter().enumerate() {
        if r.label != "hate" && r.label != "neutral" {
            bail!("{} row {i} (id {}): label {:?}, expected \"hate\" or \"neutral\"", path.display(), r.id, r.label);
        }
    }
    Ok(rows)
}

/// All target group names in the file, sorted.
pub fn known_groups(rows: &[Statement]) -> BTreeSet<String> {
    rows.iter().flat_map(|r| r.target_groups.iter().cloned()).collect()
}

/// Hateful statements about any of `groups`, in file order.
pub fn hateful_about<'a>(rows: &'a [Statement], groups: &[String]) -> Vec<&'a Statement> {
    rows.iter().filter(|r| r.is_hate() && r.target_groups.iter().any(|g| groups.contains(g))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_drops_artefacts() {
        let s = Statement {
            id: 3,
            text: " how to be a man_x000D_- how to  get over".into(),
            toxicity_score: 1.0,
            label: "neutral".into(),
            target_groups: vec!["women".into()],
        };
        assert_eq!(s.clean_text(), "how to be a man - how to get over");
    }
}
