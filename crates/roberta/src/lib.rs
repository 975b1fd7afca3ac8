//! A Hugging Face `RobertaForSequenceClassification` (Liu et al. 2019, "RoBERTa: A Robustly
//! Optimized BERT Pretraining Approach") in candle, on the CPU in f32, used to score the
//! toxicity of generations for ToxiGen (Hartvigsen et al. 2022; the `tomh/toxigen_roberta`
//! classifier).
//!
//! - [`model`]: `config.json`, safetensors weights and the exact transformers forward.
//! - [`classifier`]: [`RobertaClassifier`]: tokenizer, batching with right padding,
//!   truncation, the toxic-label rule, and [`evals::toxigen::Classifier`].
//! - [`testing`]: a tiny random classifier folder in Hugging Face format, for tests and
//!   `--smoke` runs.
//!
//! Invariant: reads a checkpoint folder and nothing else; never writes except in [`testing`].

pub mod classifier;
pub mod model;
pub mod testing;

pub use classifier::{toxic_label_index, RobertaClassifier};
pub use model::{Roberta, RobertaConfig};
