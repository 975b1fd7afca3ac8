//! LoRA adapters (issue 16, item 5): an adapted model starts as its base model, only the
//! adapters train, their gradients follow the chain rule through the merged weight
//! (dL/dB = s·G·Aᵀ, dL/dA = s·Bᵀ·G with G = dL/dW' computed on a dense model holding the merged
//! weights — an independent reference), the fused block, the composed block with activation
//! checkpointing and bf16-mixed all train it, the saved checkpoint is the merged dense model,
//! and bad settings are errors naming the field.

use candle_core::{DType, Device, Tensor};
use lm::config::Arch;
use lm::lora::LoraConfig;
use lm::model::CausalLm;
use lm::testing::{char_tokenizer_json, tiny_config, write_tiny_checkpoint};
use lm::train::{collate, fit, Batch, Example, NextToken, Precision, Step, TrainConfig, Trainer};
use lm::Tok;

fn lora(targets: &[&str]) -> LoraConfig {
    LoraConfig { rank: 3, alpha: 6.0, targets: targets.iter().map(|s| s.to_string()).collect() }
}

fn batch(model: &CausalLm) -> Batch {
    let inner = tokenizers::Tokenizer::from_bytes(char_tokenizer_json().as_bytes()).unwrap();
    let tok = Tok::new(inner, &model.cfg).unwrap();
    let ex: Vec<Example> = ["abcabcabc", "the cat sat", "xyz xyz"]
        .iter()
        .map(|t| {
            let mut ids = vec![0];
            ids.extend(tok.encode(t).unwrap());
            Example::full(ids)
        })
        .collect();
    let refs: Vec<&Example> = ex.iter().collect();
    collate(&refs, (0..ex.len()).collect(), tok.pad, &Device::Cpu).unwrap()
}

fn vec2(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_dtype(DType::F64).unwrap().to_vec2::<f64>().unwrap()
}

fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn an_adapted_model_starts_as_its_base_and_only_the_adapters_train() {
    let dir = tempfile::tempdir().unwrap();
    let base = write_tiny_checkpoint(&dir.path().join("m"), tiny_config(Arch::Qwen2), 1).unwrap();
    let mut m = CausalLm::load(&dir.path().join("m"), &Device::Cpu, true).unwrap();
    let adapted = m.attach_lora(&lora(&["q_proj", "mlp.down_proj"]), 5).unwrap();
    assert_eq!(
        adapted,
        [
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.mlp.down_proj.weight",
            "model.layers.1.self_attn.q_proj.weight"
        ]
    );
    let names: Vec<&str> = m.vars().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 8);
    assert!(names.iter().all(|n| n.ends_with(".lora_A.weight") || n.ends_with(".lora_B.weight")), "{names:?}");
    let (h, f) = (m.cfg.hidden_size, m.cfg.intermediate_size);
    let q = m.cfg.num_attention_heads * m.cfg.head_dim();
    assert_eq!(m.params.lora.as_ref().unwrap().n_params(), 2 * 3 * ((h + q) + (f + h)));
    // B = 0: the logits are the base model's, bit for bit
    let b = batch(&m);
    let l0 = base.forward(&b.inputs, Some(&b.attention)).unwrap();
    let l1 = m.forward(&b.inputs, Some(&b.attention)).unwrap();
    assert_eq!(
        l0.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        l1.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    // train: the merged weights change only where adapted
    let tc = TrainConfig { lr: 5e-2, epochs: 4, batch_size: 2, warmup_ratio: 0.0, ..Default::default() };
    let ex: Vec<Example> = (0..4).map(|i| Example::full((0..8).map(|t| 3 + (i * 5 + t * 3) % 20).collect())).collect();
    let log = fit(&m, &ex, None, &tc, &NextToken, 0, None).unwrap();
    assert!(log.steps.last().unwrap().loss < log.steps[0].loss, "the adapters learn: {:?}", log.steps);
    let merged = m.merged_state().unwrap();
    for (name, t) in base.state() {
        let d = max_abs(&merged[name], t);
        if adapted.contains(name) {
            assert!(d > 1e-4, "{name} is adapted and trained, yet unchanged");
        } else {
            assert_eq!(d, 0.0, "{name} is not adapted, yet changed");
        }
    }
    // the checkpoint is the merged dense model: same logits, no adapter tensors
    lm::checkpoint::save(&m, &dir.path().join("out"), Some(&dir.path().join("m"))).unwrap();
    let back = CausalLm::load(&dir.path().join("out"), &Device::Cpu, false).unwrap();
    assert_eq!(back.state().len(), base.state().len());
    let lb = back.forward(&b.inputs, Some(&b.attention)).unwrap();
    let lm_ = m.forward(&b.inputs, Some(&b.attention)).unwrap();
    assert!(max_abs(&lb, &lm_) < 1e-5, "saved merged model scores as the adapted one");
    // and the adapter folder, in PEFT's layout
    let adir = dir.path().join("adapter");
    lm::lora::save_adapter(m.params.lora.as_ref().unwrap(), &adir, &dir.path().join("m")).unwrap();
    assert!(lm::lora::is_adapter(&adir));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(adir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(
        (cfg["peft_type"].as_str(), cfg["r"].as_u64(), cfg["lora_alpha"].as_i64()),
        (Some("LORA"), Some(3), Some(6))
    );
    let bytes = std::fs::read(adir.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.names().contains(&"base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"), "{:?}", st.names());
}

/// The adapters' gradients against the chain rule applied by hand to the gradient of a dense
/// model that holds the merged weights, on the fused block and on the composed block with
/// activation checkpointing (OLMo-2 runs the composed path with its q/k norms).
#[test]
fn adapter_gradients_follow_the_chain_rule_through_the_merged_weight() {
    let dir = tempfile::tempdir().unwrap();
    for (arch, checkpointing) in [(Arch::Llama, false), (Arch::Llama, true), (Arch::Olmo2, true)] {
        let path = dir.path().join(format!("{arch:?}-{checkpointing}"));
        write_tiny_checkpoint(&path, tiny_config(arch), 2).unwrap();
        let mut m = CausalLm::load(&path, &Device::Cpu, false).unwrap();
        let cfg = lora(&["v_proj", "gate_proj"]);
        m.attach_lora(&cfg, 9).unwrap();
        m.set_activation_checkpointing(checkpointing);
        // B ≠ 0, so that dL/dA is not zero
        for (i, (name, var)) in m.vars().iter().enumerate() {
            if name.ends_with("lora_B.weight") {
                let n = var.elem_count();
                let v: Vec<f32> = (0..n).map(|k| (((k * 7 + i * 3) % 11) as f32 - 5.0) * 0.02).collect();
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
            }
        }
        let b = batch(&m);
        let t = Trainer::new(&m, TrainConfig::default(), 1).unwrap();
        let (grads, _) = t.gradients(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
        let got: std::collections::BTreeMap<String, Tensor> =
            m.vars().iter().map(|(n, _)| n.clone()).zip(grads.iter().cloned()).collect();
        // the reference: a dense trainable model of the merged weights
        let dense_dir = dir.path().join(format!("dense-{arch:?}-{checkpointing}"));
        lm::checkpoint::save(&m, &dense_dir, Some(&path)).unwrap();
        let dense = CausalLm::load(&dense_dir, &Device::Cpu, true).unwrap();
        dense.set_activation_checkpointing(checkpointing);
        let td = Trainer::new(&dense, TrainConfig::default(), 1).unwrap();
        let (dgrads, _) = td.gradients(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
        let dense_grad: std::collections::BTreeMap<&str, &Tensor> =
            dense.vars().iter().map(|(n, _)| n.as_str()).zip(&dgrads).collect();
        let s = cfg.scale();
        let adapters = m.params.lora.as_ref().unwrap();
        assert_eq!(adapters.pairs.len(), 4);
        for (w, (a, bv)) in &adapters.pairs {
            let g = vec2(dense_grad[w.as_str()]);
            let (a, bm) = (vec2(a.as_tensor()), vec2(bv.as_tensor()));
            let (out, inp, r) = (g.len(), g[0].len(), a.len());
            let (an, bn) = lm::lora::adapter_names(w);
            let (ga, gb) = (vec2(&got[&an]), vec2(&got[&bn]));
            let mut worst = 0f64;
            let mut scale = 0f64;
            // dL/dB[i][q] = s Σ_j G[i][j] A[q][j]
            for i in 0..out {
                for q in 0..r {
                    let want: f64 = s * (0..inp).map(|j| g[i][j] * a[q][j]).sum::<f64>();
                    worst = worst.max((gb[i][q] - want).abs());
                    scale = scale.max(want.abs());
                }
            }
            // dL/dA[q][j] = s Σ_i B[i][q] G[i][j]
            for q in 0..r {
                for j in 0..inp {
                    let want: f64 = s * (0..out).map(|i| bm[i][q] * g[i][j]).sum::<f64>();
                    worst = worst.max((ga[q][j] - want).abs());
                    scale = scale.max(want.abs());
                }
            }
            assert!(scale > 1e-6, "{arch:?} {w}: the reference gradient is zero");
            assert!(worst <= 1e-4 * scale + 1e-7, "{arch:?} ckpt={checkpointing} {w}: off by {worst} (scale {scale})");
        }
    }
}

#[test]
fn bf16_mixed_trains_the_adapters_and_keeps_f32_masters() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("m"), tiny_config(Arch::Llama), 3).unwrap();
    let tc = TrainConfig {
        lr: 5e-2,
        epochs: 4,
        batch_size: 2,
        warmup_ratio: 0.0,
        precision: Precision::Bf16Mixed,
        lora: Some(lora(&["q_proj", "up_proj"])),
        ..Default::default()
    };
    let m = lm::train::load_for_training(&dir.path().join("m"), &Device::Cpu, &tc).unwrap();
    assert!(m.vars().iter().all(|(n, v)| n.contains(".lora_") && v.dtype() == DType::F32));
    let ex: Vec<Example> = (0..4).map(|i| Example::full((0..8).map(|t| 3 + (i * 5 + t * 3) % 20).collect())).collect();
    let log = fit(&m, &ex, None, &tc, &NextToken, 0, None).unwrap();
    assert!(log.steps.iter().all(|s| s.loss.is_finite()));
    assert!(log.steps.last().unwrap().loss < log.steps[0].loss, "{:?}", log.steps);
}

#[test]
fn bad_lora_settings_are_errors_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_checkpoint(&dir.path().join("m"), tiny_config(Arch::Llama), 4).unwrap();
    let load = || CausalLm::load(&dir.path().join("m"), &Device::Cpu, false).unwrap();
    let err = |cfg: LoraConfig| format!("{:#}", load().attach_lora(&cfg, 0).unwrap_err());
    let e = err(lora(&["q_proj", "c_attn"]));
    assert!(e.contains("\"c_attn\"") && e.contains("q_proj") && e.contains("down_proj"), "{e}");
    let e = err(lora(&["embed_tokens"]));
    assert!(e.contains("\"embed_tokens\" matches no linear weight"), "{e}");
    let e = err(LoraConfig { rank: 0, ..lora(&["q_proj"]) });
    assert!(e.contains("lora.rank"), "{e}");
    let e = err(LoraConfig { alpha: f64::NAN, ..lora(&["q_proj"]) });
    assert!(e.contains("lora.alpha"), "{e}");
    let e = err(lora(&["q_proj", "q_proj"]));
    assert!(e.contains("twice"), "{e}");
    let mut m = load();
    m.attach_lora(&lora(&["q_proj"]), 0).unwrap();
    assert!(format!("{:#}", m.attach_lora(&lora(&["v_proj"]), 0).unwrap_err()).contains("already"));
    // training only some weights (RMU): the adapters of those weights
    let kept = m.train_only(|n| n == "model.layers.1.self_attn.q_proj.weight").unwrap();
    assert_eq!(
        kept,
        ["model.layers.1.self_attn.q_proj.lora_A.weight", "model.layers.1.self_attn.q_proj.lora_B.weight"]
    );
    let e = format!("{:#}", m.train_only(|n| n.contains("down_proj")).unwrap_err());
    assert!(e.contains("no LoRA adapter selected"), "{e}");
}
