//! `Scorer::loglikelihood` against lm-evaluation-harness (HFLM over transformers) per request,
//! for each architecture (issue 20: an OLMo-2 checkpoint written by transformers 5 disagreed).
//!
//! The three tiny checkpoints are written here exactly as `scripts/scorer_reference.py` writes
//! them: a config.json in transformers 5's format (`rope_parameters`, no top-level
//! `rope_theta`; θ = 10 000, 1 000 000 and 500 000), the byte-level tokenizer
//! `tests/data/byte_tokenizer.json` (the OLMo-2 copy with a post-processor that prepends BOS,
//! as Llama-2's does), and weights from a 64-bit LCG keyed by the tensor name (`weight_values`, the
//! same arithmetic as the script's). The expected values below are the script's output
//! (torch 2.15.0, transformers 5.25.0, lm-eval 0.4.13, CPU, f32); it checks lm-eval's HFLM
//! against a direct transformers computation before printing them.

use candle_core::{Device, Tensor};
use lm::score::Scorer;
use lm::{CausalLm, LmConfig, Tok};
use std::collections::HashMap;
use std::path::Path;

const TOKENIZER: &str = include_str!("data/byte_tokenizer.json");

/// (context, continuation): the script's `REQUESTS`.
const REQUESTS: [(&str, &str); 8] = [
    ("Is the following statement hateful? Respond with either Yes or No. Statement: 'they are people' Answer:", " No"),
    ("Is the following statement hateful? Respond with either Yes or No. Statement: 'they are people' Answer:", " Yes"),
    ("Q: What is the capital of France?\nA:", " Paris is the capital of France."),
    ("a", "b"),
    ("The cat sat on the ", "mat."),
    ("", "hello world"),
    ("Q: who?\n", "A: me"),
    ("Once upon a time, there was a little girl who loved to read books about science and the stars.", "!"),
];

// scripts/scorer_reference.py: (log-likelihood, is_greedy, continuation tokens) per request
// llama: 21 tensors; lm-eval HFLM agrees within 1e-4
const LLAMA: [(f64, bool, usize); 8] = [
    (-20.680990, false, 3),
    (-30.132189, false, 4),
    (-218.520187, false, 32),
    (-4.122132, false, 1),
    (-32.115044, false, 5),
    (-69.902267, false, 11),
    (-38.054543, false, 6),
    (-9.678579, false, 1),
];
// qwen2: 26 tensors; lm-eval HFLM agrees within 1e-4
const QWEN2: [(f64, bool, usize); 8] = [
    (-19.820988, false, 3),
    (-21.381405, false, 4),
    (-208.776566, false, 32),
    (-4.043603, false, 1),
    (-33.432564, false, 5),
    (-76.345917, false, 11),
    (-40.711475, false, 6),
    (-5.501413, false, 1),
];
// olmo2: 25 tensors; lm-eval HFLM agrees within 1e-4
const OLMO2: [(f64, bool, usize); 8] = [
    (-18.785540, false, 3),
    (-26.458069, false, 4),
    (-211.788498, false, 32),
    (-4.712203, false, 1),
    (-32.556313, false, 5),
    (-69.098083, false, 11),
    (-38.263821, false, 6),
    (-6.674673, false, 1),
];

/// The script's `config`.
fn config_json(arch: &str, theta: f64, tied: bool) -> serde_json::Value {
    let model_type = match arch {
        "LlamaForCausalLM" => "llama",
        "Qwen2ForCausalLM" => "qwen2",
        _ => "olmo2",
    };
    serde_json::json!({
        "architectures": [arch], "model_type": model_type, "vocab_size": 258, "hidden_size": 32,
        "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": theta, "rope_type": "default"},
        "tie_word_embeddings": tied, "attention_bias": false, "hidden_act": "silu",
        "bos_token_id": null, "eos_token_id": 257, "pad_token_id": 257, "dtype": "float32",
    })
}

/// The script's `tokenizer_config`.
fn tokenizer_config(bos: bool) -> serde_json::Value {
    if bos {
        serde_json::json!({"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": true, "add_eos_token": false,
                           "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    } else {
        serde_json::json!({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "</s>", "unk_token": "<unk>"})
    }
}

/// The script's tokenizer.json: `TOKENIZER`, with `BOS_POST_PROCESSOR` for the BOS variant.
fn tokenizer_json(bos: bool) -> String {
    let mut v: serde_json::Value = serde_json::from_str(TOKENIZER).unwrap();
    if bos {
        v["post_processor"] = serde_json::json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [256], "tokens": ["<s>"]}},
        });
    }
    v.to_string()
}

/// The script's `weight_values`: an LCG seeded with the FNV-1a hash of the name; norms around
/// 1, biases ±0.2, matrices ±0.4, computed in f64 and rounded once to f32.
fn weight_values(name: &str, n: usize) -> Vec<f32> {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
    }
    (0..n)
        .map(|_| {
            h = h.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let u = (h >> 40) as f64 / (1u64 << 24) as f64;
            let v = if name.ends_with("norm.weight") {
                1.0 + (u - 0.5) * 0.5
            } else if name.ends_with(".bias") {
                (2.0 * u - 1.0) * 0.2
            } else {
                (2.0 * u - 1.0) * 0.4
            };
            v as f32
        })
        .collect()
}

/// Writes the checkpoint folder; returns the number of tensors.
fn write_checkpoint(dir: &Path, arch: &str, theta: f64, tied: bool, bos: bool) -> usize {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config_json(arch, theta, tied)).unwrap())
        .unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json(bos)).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config(bos).to_string()).unwrap();
    // names and shapes: the engine's own parameter set for this config
    let cfg = LmConfig::from_file(&dir.join("config.json")).unwrap();
    let shapes = CausalLm::init(cfg, 0, &Device::Cpu, false).unwrap();
    let tensors: HashMap<String, Tensor> = shapes
        .state()
        .iter()
        .map(|(name, t)| {
            let v = weight_values(name, t.elem_count());
            (name.clone(), Tensor::from_vec(v, t.shape(), &Device::Cpu).unwrap())
        })
        .collect();
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    tensors.len()
}

#[test]
fn loglikelihood_matches_lm_eval_per_request_for_each_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    // (name, architecture, rope θ, tied, tokenizer adds BOS, tensors, expected)
    type Model<'a> = (&'a str, &'a str, f64, bool, bool, usize, &'a [(f64, bool, usize); 8]);
    let models: [Model; 3] = [
        ("llama", "LlamaForCausalLM", 10_000.0, false, false, 21, &LLAMA),
        ("qwen2", "Qwen2ForCausalLM", 1_000_000.0, true, false, 26, &QWEN2),
        ("olmo2", "Olmo2ForCausalLM", 500_000.0, false, true, 25, &OLMO2),
    ];
    let reqs: Vec<(String, String)> = REQUESTS.iter().map(|(c, x)| (c.to_string(), x.to_string())).collect();
    for (name, arch, theta, tied, bos, n_tensors, want) in models {
        let dir = tmp.path().join(name);
        assert_eq!(write_checkpoint(&dir, arch, theta, tied, bos), n_tensors, "{name}: the script's tensor count");
        let model = CausalLm::load(&dir, &Device::Cpu, false).unwrap();
        assert_eq!(model.cfg.rope_theta, theta, "{name}: rope_theta from rope_parameters");
        let tok = Tok::load(&dir, &model.cfg).unwrap();
        let mut s = Scorer::new(&model, &tok);
        // one padded batch of mixed lengths, then batches of three
        for batch_size in [16, 3] {
            s.batch_size = batch_size;
            let got = s.loglikelihood(&reqs).unwrap();
            for (k, (g, &(ll, greedy, n))) in got.iter().zip(want.iter()).enumerate() {
                assert_eq!(g.n_tokens, n, "{name} request {k} {:?}: continuation tokens", reqs[k]);
                assert!(
                    (g.logprob - ll).abs() < 1e-4,
                    "{name} request {k} {:?} (batch {batch_size}): ours {} vs lm-eval {ll}",
                    reqs[k],
                    g.logprob
                );
                assert_eq!(g.is_greedy, greedy, "{name} request {k}: is_greedy");
            }
        }
    }
}

#[test]
fn the_tokenizer_json_post_processor_decides_bos_as_in_transformers_5() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_checkpoint(dir, "Olmo2ForCausalLM", 500_000.0, false, true);
    let cfg = LmConfig::from_file(&dir.join("config.json")).unwrap();
    let tok = Tok::load(dir, &cfg).unwrap();
    // bytes of "hi" are their own ids; <s> = 256, </s> = 257
    assert_eq!(tok.encode("hi").unwrap(), vec![104, 105], "encode never adds special tokens");
    assert_eq!(tok.encode_for_eval("hi").unwrap(), vec![256, 104, 105], "the post-processor's BOS");
    assert_eq!(tok.bos, Some(256), "the tokenizer's BOS is the prefix token (config.json has none)");
    assert_eq!(tok.encode_for_eval("<s>hi").unwrap(), vec![256, 104, 105], "text starting with BOS: not added twice");
    // without the post-processor, add_bos_token in tokenizer_config.json changes nothing
    // (transformers 5 drops it when tokenizer.json exists)
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json(false)).unwrap();
    let tok = Tok::load(dir, &cfg).unwrap();
    assert_eq!(tok.encode_for_eval("hi").unwrap(), vec![104, 105]);
    // no BOS anywhere: EOS is the prefix token
    std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config(false).to_string()).unwrap();
    assert_eq!(Tok::load(dir, &cfg).unwrap().prefix_token(), 257);
}

#[test]
fn transformers_5_rope_parameters_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("config.json");
    let mut v = config_json("LlamaForCausalLM", 500_000.0, false);
    std::fs::write(&p, v.to_string()).unwrap();
    assert_eq!(LmConfig::from_file(&p).unwrap().rope_theta, 500_000.0);
    // llama3 scaling inside rope_parameters becomes rope_scaling
    v["rope_parameters"] = serde_json::json!({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    std::fs::write(&p, v.to_string()).unwrap();
    let cfg = LmConfig::from_file(&p).unwrap();
    let rs = cfg.rope_scaling.expect("rope_scaling from rope_parameters");
    assert_eq!((rs.rope_type.as_str(), rs.factor, rs.original_max_position_embeddings), ("llama3", 32.0, 8192));
    // a scaling we do not implement is an error, not a silently different model
    v["rope_parameters"]["rope_type"] = "yarn".into();
    std::fs::write(&p, v.to_string()).unwrap();
    assert!(format!("{:#}", LmConfig::from_file(&p).unwrap_err()).contains("yarn"));
    // a top-level rope_theta (transformers 4) wins
    v["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1.0});
    v["rope_theta"] = 20_000.0.into();
    std::fs::write(&p, v.to_string()).unwrap();
    assert_eq!(LmConfig::from_file(&p).unwrap().rope_theta, 20_000.0);
}
