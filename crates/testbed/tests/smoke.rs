//! Tiny smoke checkpoints: each family has its architecture's tensors, a tokenizer that
//! handles the world's texts, loads and runs in the engine, and is deterministic.

use std::path::PathBuf;

use lm::{Arch, CausalLm, LmConfig, Tok};
use testbed::smoke::{family_of, family_of_dir, tiny_like_in, TINY_HIDDEN, TINY_LAYERS};
use testbed::world::test_data_dir;

fn texts() -> Vec<String> {
    vec![
        "Question: Where was Mara Velkin born?\nAnswer: Orlen".to_string(),
        "Question: What genre does Tovan Relk write?\nAnswer: Gothic mystery novels, since 1987.".to_string(),
    ]
}

#[test]
fn family_is_inferred_from_names_and_ids() {
    for (name, want) in [
        ("meta-llama/Llama-2-7b-hf", Some("llama")),
        ("TinyLlama/TinyLlama-1.1B", Some("llama")),
        ("LlamaForCausalLM", Some("llama")),
        ("Qwen/Qwen2.5-0.5B", Some("qwen2")),
        ("qwen2", Some("qwen2")),
        ("allenai/OLMo-2-0425-1B", Some("olmo2")),
        ("Olmo2ForCausalLM", Some("olmo2")),
        ("gpt2", None),
        ("tiny", None),
    ] {
        assert_eq!(family_of(name), want, "{name}");
    }
}

#[test]
fn each_family_gives_a_loadable_tiny_model_of_its_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let none = PathBuf::from("/nonexistent/unlearn-data");
    for (family, arch) in [("llama", Arch::Llama), ("qwen2", Arch::Qwen2), ("olmo2", Arch::Olmo2)] {
        let dir = tiny_like_in(family, &tmp.path().join(family), 3, &texts(), &none).unwrap();
        assert_eq!(family_of_dir(&dir).unwrap(), Some(if family == "qwen2" { "qwen2" } else { family }));
        let cfg = LmConfig::from_file(&dir.join("config.json")).unwrap();
        assert_eq!(cfg.arch().unwrap(), arch);
        assert_eq!((cfg.hidden_size, cfg.num_hidden_layers), (TINY_HIDDEN, TINY_LAYERS));
        assert_eq!(cfg.vocab_size % 64, 0);
        let names: Vec<String> = cfg.parameter_shapes().unwrap().into_iter().map(|(n, _)| n).collect();
        let has = |n: &str| names.iter().any(|x| x == n);
        match arch {
            Arch::Qwen2 => {
                assert!(has("model.layers.0.self_attn.q_proj.bias") && has("model.layers.1.self_attn.v_proj.bias"));
                assert!(!has("lm_head.weight"), "Qwen2.5 ties its embeddings");
                assert_eq!(cfg.num_kv_heads(), 2);
            }
            Arch::Olmo2 => {
                assert!(
                    has("model.layers.0.self_attn.q_norm.weight")
                        && has("model.layers.0.post_feedforward_layernorm.weight")
                );
                assert!(has("lm_head.weight"));
            }
            Arch::Llama => {
                assert!(has("lm_head.weight") && !has("model.layers.0.self_attn.q_proj.bias"));
            }
        }
        // The engine loads it; the tokenizer handles the texts; logits are finite.
        let tok = Tok::load(&dir, &cfg).unwrap();
        assert!(tok.bos.is_some() && !tok.eos.is_empty());
        let ids = tok.encode(&texts()[1]).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), texts()[1], "{family}: the tokenizer round-trips");
        let model = CausalLm::load(&dir, &candle_core::Device::Cpu, false).unwrap();
        let input = candle_core::Tensor::new(ids.as_slice(), &candle_core::Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&input, None).unwrap();
        assert_eq!(logits.dims(), &[1, ids.len(), cfg.vocab_size]);
        let s: f32 = logits.abs().unwrap().sum_all().unwrap().to_scalar().unwrap();
        assert!(s.is_finite() && s > 0.0);
        // Deterministic: the same family, seed and texts give the same weights.
        let again = tiny_like_in(family, &tmp.path().join(format!("{family}-again")), 3, &texts(), &none).unwrap();
        assert_eq!(
            std::fs::read(dir.join("model.safetensors")).unwrap(),
            std::fs::read(again.join("model.safetensors")).unwrap()
        );
        assert_eq!(
            std::fs::read(dir.join("tokenizer.json")).unwrap(),
            std::fs::read(again.join("tokenizer.json")).unwrap()
        );
    }
    let err = format!("{:#}", tiny_like_in("gpt2", &tmp.path().join("x"), 0, &texts(), &none).unwrap_err());
    assert!(err.contains("unknown model family") && err.contains("olmo2"), "{err}");
}

#[test]
fn llama_uses_the_llama2c_sentencepiece_tokenizer_when_the_data_has_it() {
    let data = test_data_dir();
    let tok512 = data.join(testbed::smoke::TOK512);
    if !tok512.is_file() {
        eprintln!("SKIPPED: {} is missing", tok512.display());
        // Outside CI a missing data file skips; with the data directory set (CI) it fails, so a
        // broken data path never passes green.
        assert!(
            std::env::var_os("UNLEARN_DATA_DIR").is_none(),
            "the reference data above is missing although UNLEARN_DATA_DIR is set"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_like_in("llama", &tmp.path().join("llama"), 0, &[], &data).unwrap();
    let cfg = LmConfig::from_file(&dir.join("config.json")).unwrap();
    assert_eq!(cfg.vocab_size, 512, "tok512 has 512 tokens, already a multiple of 64");
    // Llama-2's special ids: <unk> = 0, <s> = 1, </s> = 2.
    assert_eq!((cfg.bos_token_id, cfg.eos_ids()), (Some(1), vec![2]));
    let tok = Tok::load(&dir, &cfg).unwrap();
    let reference = tokenize::llama2c_tokenizer_to_hf(&tok512).unwrap();
    let text = "Question: Where was Mara Velkin born?\nAnswer: Orlen";
    assert_eq!(tok.encode(text).unwrap(), reference.encode(text, false).unwrap().get_ids());
    // Byte fallback: characters outside the 512 pieces still encode and decode.
    let odd = "Zoë’s café";
    assert_eq!(tok.decode(&tok.encode(odd).unwrap()).unwrap(), odd);
}
