//! Issue 18: NaN and infinite values are errors where they enter (weights and optimizer state
//! on load) and where they leave (the scorer's log-probabilities), each naming what is broken,
//! instead of flowing through to `"mean_nll": null` in a result file.

use candle_core::{DType, Device, Tensor};
use lm::config::Arch;
use lm::model::CausalLm;
use lm::score::Scorer;
use lm::testing::{char_tokenizer_json, tiny_config, write_tiny_checkpoint, CHARS};
use lm::Tok;
use std::collections::HashMap;
use std::path::Path;

/// Rewrites `file`, setting the first values of tensor `name` to `poison`.
fn poison_tensor(file: &Path, name: &str, poison: &[f32]) {
    let mut map: HashMap<String, Tensor> = candle_core::safetensors::load(file, &Device::Cpu).unwrap();
    let t = &map[name];
    let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v[..poison.len()].copy_from_slice(poison);
    let t = Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap();
    map.insert(name.to_string(), t);
    candle_core::safetensors::save(&map, file).unwrap();
}

fn load_err(dir: &Path, trainable: bool) -> String {
    match CausalLm::load(dir, &Device::Cpu, trainable) {
        Ok(_) => panic!("{}: a checkpoint with non-finite weights loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_checkpoint_with_nan_or_inf_weights_fails_to_load_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    write_tiny_checkpoint(&ck, tiny_config(Arch::Llama), 0).unwrap();
    CausalLm::load(&ck, &Device::Cpu, false).expect("the clean checkpoint loads");
    let name = "model.layers.0.mlp.up_proj.weight";
    poison_tensor(&ck.join("model.safetensors"), name, &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
    let e = load_err(&ck, false);
    assert!(e.contains("model.safetensors") && e.contains(name) && e.contains("3 non-finite values (NaN/inf)"), "{e}");
    // trainable loading checks too, and a single value is enough
    let ck2 = dir.path().join("ck2");
    write_tiny_checkpoint(&ck2, tiny_config(Arch::Qwen2), 0).unwrap();
    poison_tensor(&ck2.join("model.safetensors"), "model.norm.weight", &[f32::NAN]);
    let e = load_err(&ck2, true);
    assert!(e.contains("model.norm.weight") && e.contains("1 non-finite value (NaN/inf)"), "{e}");
}

/// The optimizer state a run resumes from is checked like the weights.
#[test]
fn optimizer_state_with_nan_fails_to_load_naming_the_tensor() {
    use lm::train::{TrainConfig, Trainer};
    let dir = tempfile::tempdir().unwrap();
    let model = CausalLm::init(tiny_config(Arch::Llama), 1, &Device::Cpu, true).unwrap();
    let mut trainer = Trainer::new(&model, TrainConfig::default(), 10).unwrap();
    trainer.save_state(dir.path()).unwrap();
    trainer.load_state(dir.path()).expect("the clean state loads");
    let file = dir.path().join("optimizer.safetensors");
    let name = "v.model.layers.1.self_attn.q_proj.weight";
    poison_tensor(&file, name, &[f32::INFINITY]);
    let e = format!("{:#}", trainer.load_state(dir.path()).unwrap_err());
    assert!(e.contains("optimizer.safetensors") && e.contains(name) && e.contains("non-finite"), "{e}");
}

/// The counting helper on the in-place CPU path and on the generic (device-op) path.
#[test]
fn count_non_finite_counts_nan_and_both_infinities_in_every_float_dtype() {
    let v = [1.0f32, f32::NAN, -2.0, f32::INFINITY, 0.0, f32::NEG_INFINITY, 3.5];
    let t = Tensor::new(&v, &Device::Cpu).unwrap();
    for dt in [DType::F32, DType::F64, DType::BF16, DType::F16] {
        assert_eq!(lm::weights::count_non_finite(&t.to_dtype(dt).unwrap()).unwrap(), 3, "{dt:?}");
    }
    // a strided view
    let m = Tensor::new(&[[1.0f32, f32::NAN], [2.0, 3.0]], &Device::Cpu).unwrap().t().unwrap();
    assert_eq!(lm::weights::count_non_finite(&m).unwrap(), 1);
    assert_eq!(lm::weights::count_non_finite(&Tensor::new(&[1u32, 2], &Device::Cpu).unwrap()).unwrap(), 0);
}

/// A model whose embedding row of `c` is NaN: sequences without `c` score normally, those
/// with it give NaN log-probabilities.
fn model_broken_at(c: char) -> (CausalLm, Tok) {
    let cfg = tiny_config(Arch::Llama);
    let mut model = CausalLm::init(cfg.clone(), 2, &Device::Cpu, false).unwrap();
    let id = 3 + CHARS.chars().position(|x| x == c).unwrap();
    let name = "model.embed_tokens.weight";
    let mut emb = model.params.tensors[name].to_vec2::<f32>().unwrap();
    emb[id].iter_mut().for_each(|x| *x = f32::NAN);
    let emb = Tensor::new(emb, &Device::Cpu).unwrap();
    model.params.tensors.insert(name.to_string(), emb);
    let inner = tokenizers::Tokenizer::from_bytes(char_tokenizer_json().as_bytes()).unwrap();
    let tok = Tok::new(inner, &cfg).unwrap();
    (model, tok)
}

#[test]
fn scorer_errors_name_the_request_with_a_non_finite_log_probability() {
    let (model, tok) = model_broken_at('z');
    let mut s = Scorer::new(&model, &tok);
    s.batch_size = 2;
    // loglikelihood: request 2 has the broken token in its context, 3 in its continuation
    // (as an input: a broken token that is only predicted, never read, scores normally)
    let reqs: Vec<(String, String)> = [("ab", " cd"), ("ef", " gh"), ("jz", " kl"), ("mn", " zo"), ("pq", " rs")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let ok = s.loglikelihood(&[reqs[0].clone(), reqs[1].clone(), reqs[4].clone()]).unwrap();
    assert!(ok.iter().all(|r| r.logprob.is_finite()));
    let e = format!("{:#}", s.loglikelihood(&reqs).unwrap_err());
    assert!(e.contains("request 2") && e.contains("not finite"), "{e}");
    let e = format!("{:#}", s.loglikelihood(&reqs[3..]).unwrap_err());
    assert!(e.contains("request 0"), "{e}");
    // token_logprobs and loglikelihood_rolling: per text
    let texts: Vec<String> = ["hello world", "bye", "lazy dog", "ok"].iter().map(|t| t.to_string()).collect();
    for e in [
        s.token_logprobs(&texts).map(|_| ()).unwrap_err(),
        s.loglikelihood_rolling(&texts).map(|_| ()).unwrap_err(),
        s.distributions(&texts).map(|_| ()).unwrap_err(),
    ] {
        let e = format!("{e:#}");
        assert!(e.contains("text 2") && e.contains("not finite"), "{e}");
    }
    let clean: Vec<String> = vec![texts[0].clone(), texts[1].clone(), texts[3].clone()];
    assert!(s.token_logprobs(&clean).unwrap().iter().flatten().all(|x| x.is_finite()));
    s.distributions(&clean).unwrap();
}
