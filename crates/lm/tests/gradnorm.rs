//! `lm::gradnorm` (the GradNorm membership-inference attack's per-example gradient norms)
//! against two references built without it: central finite differences of the forward-only
//! `loglikelihood_rolling` loss, tensor by tensor, and the training path's gradients
//! (`Trainer::gradients` on an `Example::full` batch of a model loaded trainable).

use candle_core::{DType, Device, Tensor};
use lm::config::Arch;
use lm::gradnorm::grad_norms;
use lm::model::CausalLm;
use lm::score::Scorer;
use lm::testing::{char_tokenizer_json, tiny_config};
use lm::train::{collate, Example, NextToken, Step, TrainConfig, Trainer};
use lm::Tok;

const ARCHS: [Arch; 3] = [Arch::Llama, Arch::Qwen2, Arch::Olmo2];
const TEXT: &str = "the cat sat on the mat, far away.";

fn tok_for(cfg: &lm::LmConfig) -> Tok {
    let inner = tokenizers::Tokenizer::from_bytes(char_tokenizer_json().as_bytes()).unwrap();
    Tok::new(inner, cfg).unwrap()
}

/// Mean token NLL of `text` by the forward-only scorer (f32 log-probs summed in f64).
fn rolling_nll(model: &CausalLm, tok: &Tok, text: &str, max_length: usize) -> f64 {
    let mut s = Scorer::new(model, tok);
    s.max_length = max_length;
    let (lp, n) = s.loglikelihood_rolling(&[text.to_string()]).unwrap()[0];
    -lp / n as f64
}

/// The norm of a tensor's gradient by central differences of the rolling NLL, entry by entry.
fn finite_difference_norm(model: &mut CausalLm, tok: &Tok, name: &str, max_length: usize) -> f64 {
    let orig = model.params.tensors[name].clone();
    let values = orig.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let eps = 1e-2f32;
    let mut sq = 0.0;
    for i in 0..values.len() {
        let mut eval = |delta: f32| {
            let mut v = values.clone();
            v[i] += delta;
            model.params.tensors.insert(name.to_string(), Tensor::from_vec(v, orig.shape(), &Device::Cpu).unwrap());
            rolling_nll(model, tok, TEXT, max_length)
        };
        let d = (eval(eps) - eval(-eps)) / (2.0 * eps as f64);
        sq += d * d;
    }
    model.params.tensors.insert(name.to_string(), orig);
    sq.sqrt()
}

/// Every tensor norm of a small-enough tensor against central differences, for one window
/// (max_length 128) and for the text cut into five windows of at most 8 tokens (the windows'
/// gradients added, each over the text's token count); the NLL against the forward-only
/// scorer; the model frozen again afterwards and scoring as before.
#[test]
fn tensor_norms_match_finite_differences_of_the_rolling_nll() {
    let cfg = tiny_config(Arch::Llama);
    let mut model = CausalLm::init(cfg.clone(), 5, &Device::Cpu, false).unwrap();
    let tok = tok_for(&cfg);
    let before = rolling_nll(&model, &tok, TEXT, 128);
    let names =
        ["model.norm.weight", "model.layers.1.input_layernorm.weight", "model.layers.0.self_attn.k_proj.weight"];
    for max_length in [128, 8] {
        let g = grad_norms(&mut model, &tok, &[TEXT.to_string()], max_length).unwrap().remove(0);
        assert!(model.vars().is_empty(), "the model is frozen again");
        assert_eq!(g.n_tokens, TEXT.len());
        assert_eq!(g.tensor_norms.len(), cfg.parameter_shapes().unwrap().len(), "every parameter tensor");
        let nll = rolling_nll(&model, &tok, TEXT, max_length);
        assert!((g.nll - nll).abs() < 1e-5, "max_length {max_length}: NLL {} vs the scorer's {nll}", g.nll);
        // the 512-entry matrix once (1 024 forward passes), the norms in both cases
        for name in names.iter().filter(|n| max_length == 8 || !n.contains("proj")) {
            let ours = g.tensor_norms.iter().find(|(n, _)| n == name).unwrap().1;
            let fd = finite_difference_norm(&mut model, &tok, name, max_length);
            // per entry the central difference is good to ≈ 5e-5 (f32 losses over 2ε = 0.02,
            // see engine.rs); over a tensor's norm it stays under 1e-3 relative here
            assert!(
                (ours - fd).abs() <= 0.01 * fd && fd > 1e-4,
                "max_length {max_length}, {name}: GradNorm {ours} vs finite differences {fd}"
            );
        }
        let global = g.tensor_norms.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
        assert_eq!(g.global(), global);
        assert!(g.mean_tensor() < g.global() && g.mean_tensor() > 0.0);
    }
    assert_eq!(rolling_nll(&model, &tok, TEXT, 128), before, "scores unchanged after the gradients");
}

/// All tensor norms of every architecture (Qwen2's biases, OLMo-2's q/k norms, tied
/// embeddings as one tensor) against the norms of `Trainer::gradients` for the same text as a
/// one-row training batch: [prefix] + tokens, every token a target, the mean over them.
#[test]
fn tensor_norms_equal_the_trainers_gradient_norms() {
    for arch in ARCHS {
        let cfg = tiny_config(arch);
        let tok = tok_for(&cfg);
        let mut frozen = CausalLm::init(cfg.clone(), 9, &Device::Cpu, false).unwrap();
        let g = grad_norms(&mut frozen, &tok, &[TEXT.to_string(), "a dog".to_string()], 128).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].n_tokens, 5);

        let trainable = CausalLm::init(cfg.clone(), 9, &Device::Cpu, true).unwrap();
        let trainer = Trainer::new(&trainable, TrainConfig::default(), 1).unwrap();
        let mut ids = vec![tok.prefix_token()];
        ids.extend(tok.encode(TEXT).unwrap());
        let example = Example::full(ids);
        let batch = collate(&[&example], vec![0], tok.pad, &Device::Cpu).unwrap();
        let (grads, loss) = trainer.gradients(&NextToken, &[Step { primary: &batch, secondary: None }]).unwrap();
        assert!((g[0].nll - loss).abs() < 1e-5, "{arch:?}: NLL {} vs the trainer's loss {loss}", g[0].nll);
        assert_eq!(g[0].tensor_norms.len(), trainable.vars().len(), "{arch:?}");
        for (((name, ours), (tname, _)), grad) in g[0].tensor_norms.iter().zip(trainable.vars()).zip(&grads) {
            assert_eq!(name, tname);
            let reference = grad.to_dtype(DType::F64).unwrap().sqr().unwrap().sum_all().unwrap();
            let reference = reference.to_scalar::<f64>().unwrap().sqrt();
            assert!(
                (ours - reference).abs() <= 1e-4 * reference + 1e-9 && reference > 0.0,
                "{arch:?} {name}: GradNorm {ours} vs trainer {reference}"
            );
        }
    }
}

#[test]
fn an_empty_text_is_an_error_naming_it_and_the_model_stays_frozen() {
    let cfg = tiny_config(Arch::Llama);
    let tok = tok_for(&cfg);
    let mut model = CausalLm::init(cfg.clone(), 1, &Device::Cpu, false).unwrap();
    let texts = ["abc".to_string(), String::new()];
    let err = format!("{:#}", grad_norms(&mut model, &tok, &texts, 128).unwrap_err());
    assert!(err.contains("GradNorm text 1") && err.contains("has no tokens"), "{err}");
    assert!(model.vars().is_empty(), "frozen again after the error");
    // a model in another dtype: a clear error, not a silent bf16 gradient
    let mut half = model.cast(DType::F16).unwrap();
    let err = grad_norms(&mut half, &tok, &texts[..1], 128).unwrap_err().to_string();
    assert!(err.contains("f32") && err.contains("F16"), "{err}");
    // a partly frozen trainable model: refused
    let mut partial = CausalLm::init(cfg, 1, &Device::Cpu, true).unwrap();
    partial.train_only(|n| n.contains("mlp")).unwrap();
    let err = grad_norms(&mut partial, &tok, &texts[..1], 128).unwrap_err().to_string();
    assert!(err.contains("frozen"), "{err}");
}
