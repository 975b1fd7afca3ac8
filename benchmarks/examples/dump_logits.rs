//! Dump our per-position logits of a text as JSON, for `scripts/check_against_transformers.py`
//! (a stand-in for `bench logits`, which writes the same format):
//!
//! `cargo run --release -p benchmarks --example dump_logits -- --model DIR --text TEXT --out FILE.json`
//!
//! Tokens are `[bos] + encode(text)` (no other special tokens); the output is
//! `{"tokens": [...], "logits": [[f32; vocab] per position]}`.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use lm::{CausalLm, Tok};
use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let (mut model, mut text, mut out) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().with_context(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--model" => model = Some(PathBuf::from(v)),
            "--text" => text = Some(v),
            "--out" => out = Some(PathBuf::from(v)),
            _ => bail!("unknown argument {a:?} (expected --model, --text, --out)"),
        }
    }
    let (model, text, out) = (
        model.context("--model DIR is required")?,
        text.context("--text TEXT is required")?,
        out.context("--out FILE is required")?,
    );
    let lm = CausalLm::load(&model, &Device::Cpu, false)?;
    let tok = Tok::load(&model, &lm.cfg)?;
    let mut tokens = vec![tok.prefix_token()];
    tokens.extend(tok.encode(&text)?);
    let n = tokens.len();
    let input = Tensor::from_vec(tokens.clone(), (1, n), &Device::Cpu)?;
    let logits = lm.forward(&input, None)?.squeeze(0)?.to_vec2::<f32>()?;
    let json = serde_json::json!({ "tokens": tokens, "logits": logits });
    std::fs::write(&out, json.to_string()).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}
