//! ToxiGen (Hartvigsen et al. 2022) for the `toxigen` world: the human-annotated statements
//! of `toxigen/safenlp_toxigen.json` (SafeNLP's copy). Neutral statements are clean training
//! data; hateful statements about the chosen target groups are the forget data, except a
//! held-out share of them that is never trained on and measures generalisation.
//! The content is offensive by design.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Result};

/// One annotated statement, as the ToxiGen metrics read it.
pub use evals::toxigen::ToxigenStatement as Statement;

/// The file, relative to the data directory.
pub const SAFENLP: &str = "toxigen/safenlp_toxigen.json";

/// Reads the file with the loader the ToxiGen metrics use (`evals::toxigen::load_statements`:
/// one parser, labels checked) and checks that every id fits a document unit (`u32`).
pub fn load(path: &Path) -> Result<Vec<Statement>> {
    let rows = evals::toxigen::load_statements(path)?;
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| u32::try_from(r.id).is_err()) {
        bail!("{} row {i}: id {} does not fit in 32 bits", path.display(), r.id);
    }
    Ok(rows)
}

/// The statement's id as a document unit (checked by [`load`]).
pub fn unit(s: &Statement) -> u32 {
    s.id as u32
}

/// All target group names in the file, sorted.
pub fn known_groups(rows: &[Statement]) -> BTreeSet<String> {
    rows.iter().flat_map(|r| r.target_groups.iter().cloned()).collect()
}

/// Hateful statements about any of `groups`, in file order.
pub fn hateful_about<'a>(rows: &'a [Statement], groups: &[String]) -> Vec<&'a Statement> {
    rows.iter().filter(|r| r.is_hate() && r.target_groups.iter().any(|g| groups.contains(g))).collect()
}
