//! RobertaClassifier against transformers' RobertaForSequenceClassification on the tiny random
//! fixture, plus padding invariance, truncation, weight-loading errors and the toxic-label rule.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use evals::toxigen::Classifier;
use roberta::testing::{write_tiny_roberta, REFERENCE_TEXTS};
use roberta::{toxic_label_index, RobertaClassifier};

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn fixture(seed: u64) -> (tempfile::TempDir, RobertaClassifier) {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_roberta(dir.path(), seed).unwrap();
    let clf = RobertaClassifier::load(dir.path(), None).unwrap();
    (dir, clf)
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// Our tokenizer's ids for REFERENCE_TEXTS; the script asserts transformers gives the same.
const REFERENCE_IDS: [&[u32]; 3] = [
    &[0, 15, 21, 8, 34, 35, 41, 9, 16, 25, 39, 19, 42, 2],
    &[0, 22, 3, 2],
    &[0, 4, 28, 13, 37, 27, 7, 32, 24, 12, 30, 40, 2],
];

// transformers 5.24 / torch 2.15, scripts/check_roberta_against_transformers.py (abridged):
//     tok = PreTrainedTokenizerFast(tokenizer_file=f"{d}/tokenizer.json", pad_token="<pad>")
//     batch = tok(TEXTS, padding=True, return_tensors="pt")          # right padding, pad id 1
//     model = RobertaForSequenceClassification.from_pretrained(
//         d, attn_implementation="eager", torch_dtype=torch.float32)   # no missing/unexpected keys
//     logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
// with d = the fixture `write_tiny_roberta(d, 7)` and TEXTS = REFERENCE_TEXTS.
#[allow(clippy::excessive_precision)] // as PyTorch printed them, to compare by eye
const TRANSFORMERS_LOGITS: [[f32; 2]; 3] =
    [[-0.51358312, -1.75520563], [-0.14287505, -1.75769925], [-0.37779790, -1.84386635]];

#[test]
fn logits_match_transformers_on_a_padded_batch() {
    let (_dir, clf) = fixture(7);
    let texts = strings(&REFERENCE_TEXTS);
    for (t, want) in texts.iter().zip(REFERENCE_IDS) {
        assert_eq!(clf.encode(t).unwrap(), want, "token ids of {t:?}");
    }
    let ours = clf.logits(&texts).unwrap();
    let reference: Vec<Vec<f32>> = TRANSFORMERS_LOGITS.iter().map(|r| r.to_vec()).collect();
    let d = max_abs_diff(&ours, &reference);
    eprintln!("max |Δlogit| vs transformers = {d:e}");
    // Measured 3.6e-7. The bound is tighter than the 1e-4 asked for because tanh-approximated
    // GELU instead of the exact erf GELU moves these logits by only 6.2e-5.
    assert!(d < 1e-5, "max |Δlogit| = {d}, ours {ours:?}");

    // p_toxic is the softmax probability of LABEL_1: 1 / (1 + exp(l0 - l1)).
    let p = clf.p_toxic(&texts).unwrap();
    for (pi, [l0, l1]) in p.iter().zip(TRANSFORMERS_LOGITS) {
        let want = 1.0 / (1.0 + ((l0 - l1) as f64).exp());
        assert!((pi - want).abs() < 1e-5, "p_toxic {pi} vs {want}");
    }
}

#[test]
fn a_text_scores_the_same_alone_and_in_a_padded_batch() {
    let (_dir, mut clf) = fixture(3);
    let texts = strings(&[
        "good",
        "They should not live here, and we hate them all!",
        "you are kind",
        "the people of this group never work and they are bad .",
    ]);
    let batched = clf.logits(&texts).unwrap();
    clf.batch_size = 1;
    let alone = clf.logits(&texts).unwrap();
    let d = max_abs_diff(&batched, &alone);
    assert!(d < 1e-5, "padding changed logits by {d}: {batched:?} vs {alone:?}");
    // Different texts give different logits (the comparison above is not vacuous).
    assert!((batched[0][0] - batched[1][0]).abs() > 1e-3, "{batched:?}");
}

#[test]
fn long_texts_are_truncated_to_max_positions_minus_two() {
    let (_dir, clf) = fixture(5);
    // 40 words: <s> + 30 words + </s> = 32 = max_position_embeddings (34) - 2 tokens are kept.
    let words: Vec<&str> = roberta::testing::TINY_WORDS.iter().copied().cycle().take(40).collect();
    let long = words.join(" ");
    let cut = words[..30].join(" ");
    assert_eq!(clf.encode(&long).unwrap().len(), 32);
    assert_eq!(clf.encode(&long).unwrap().last(), Some(&2), "</s> is kept after truncation");
    let l = clf.logits(&[long, cut, "good".into()]).unwrap();
    let d = max_abs_diff(&l[..1], &l[1..2]);
    assert!(d < 1e-6, "truncated text differs from its first 30 words by {d}");
}

#[test]
fn same_seed_writes_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_tiny_roberta(a.path(), 11).unwrap();
    write_tiny_roberta(b.path(), 11).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        let (x, y) = (std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap());
        assert!(x == y, "{f} differs between two writes with the same seed");
    }
}

fn rewrite_weights(dir: &Path, f: impl Fn(&mut HashMap<String, Tensor>)) {
    let path = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    f(&mut t);
    candle_core::safetensors::save(&t, &path).unwrap();
}

fn load_error(dir: &Path) -> String {
    match RobertaClassifier::load(dir, None) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_missing_tensor_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_roberta(dir.path(), 1).unwrap();
    rewrite_weights(dir.path(), |t| {
        t.remove("roberta.encoder.layer.1.attention.self.key.weight");
    });
    let e = load_error(dir.path());
    assert!(
        e.contains("`roberta.encoder.layer.1.attention.self.key.weight` is missing")
            && e.contains("[32, 32]")
            && e.contains("model.safetensors"),
        "{e}"
    );
}

#[test]
fn a_wrongly_shaped_tensor_is_named_with_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_roberta(dir.path(), 1).unwrap();
    rewrite_weights(dir.path(), |t| {
        t.insert("classifier.out_proj.weight".into(), Tensor::zeros((3, 32), DType::F32, &Device::Cpu).unwrap());
    });
    let e = load_error(dir.path());
    assert!(e.contains("`classifier.out_proj.weight` has shape [3, 32], expected [2, 32]"), "{e}");
}

#[test]
fn pytorch_bin_is_refused_with_a_conversion_hint() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_roberta(dir.path(), 1).unwrap();
    std::fs::rename(dir.path().join("model.safetensors"), dir.path().join("pytorch_model.bin")).unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("pytorch_model.bin") && e.contains("safe_serialization=True"), "{e}");
}

#[test]
fn bf16_weights_load_as_their_f32_values() {
    // The same bf16-rounded weights stored as bf16 and as f32 must give identical logits.
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_tiny_roberta(a.path(), 2).unwrap();
    write_tiny_roberta(b.path(), 2).unwrap();
    rewrite_weights(a.path(), |t| {
        for v in t.values_mut() {
            *v = v.to_dtype(DType::BF16).unwrap();
        }
    });
    rewrite_weights(b.path(), |t| {
        for v in t.values_mut() {
            *v = v.to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap();
        }
    });
    let texts = strings(&REFERENCE_TEXTS);
    let la = RobertaClassifier::load(a.path(), None).unwrap().logits(&texts).unwrap();
    let lb = RobertaClassifier::load(b.path(), None).unwrap().logits(&texts).unwrap();
    assert_eq!(la, lb);
}

#[test]
fn toxic_label_rule() {
    #[track_caller]
    fn check(labels: &[&str], over: Option<usize>, want: Option<usize>) {
        let got = toxic_label_index(&strings(labels), over).ok();
        assert_eq!(got, want, "labels {labels:?}, override {over:?}");
    }
    check(&["LABEL_0", "LABEL_1"], None, Some(1)); // tomh/toxigen_roberta
    check(&["0", "1"], None, Some(1));
    check(&["toxic", "non-toxic"], None, Some(0));
    check(&["neutral", "Hate"], None, Some(1));
    check(&["not hate", "hate"], None, Some(1));
    check(&["neutral", "offensive", "normal"], None, Some(1));
    check(&["LABEL_0", "LABEL_1"], Some(0), Some(0));
    check(&["LABEL_0", "LABEL_1"], Some(2), None);
    check(&["positive", "negative"], None, None);
    check(&["LABEL_0", "LABEL_1", "LABEL_2"], None, None);
    check(&["toxic", "hate"], None, None);
}

#[test]
fn an_out_of_range_override_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_roberta(dir.path(), 1).unwrap();
    let e = match RobertaClassifier::load(dir.path(), Some(5)) {
        Ok(_) => panic!("index 5 of 2 labels should fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("toxic label index 5") && e.contains("LABEL_1"), "{e}");
}
