//! Writes the tiny random RoBERTa classifier fixture (`roberta::testing::write_tiny_roberta`)
//! and prints its token ids and logits for the reference texts, as input for
//! `scripts/check_roberta_against_transformers.py`.
//!
//! `cargo run -p roberta --example write_tiny_roberta -- DIR [SEED]`

use std::path::PathBuf;

use anyhow::{Context, Result};
use roberta::RobertaClassifier;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().context("usage: write_tiny_roberta DIR [SEED]")?);
    let seed: u64 = args.next().map_or(Ok(7), |s| s.parse()).context("SEED: expected an integer")?;
    roberta::testing::write_tiny_roberta(&dir, seed)?;
    let clf = RobertaClassifier::load(&dir, None)?;
    let texts: Vec<String> = roberta::testing::REFERENCE_TEXTS.iter().map(|s| s.to_string()).collect();
    for (t, row) in texts.iter().zip(clf.logits(&texts)?) {
        println!("{:?} ids={:?} logits={:?}", t, clf.encode(t)?, row);
    }
    Ok(())
}
