//! One description per architecture and weights packed once (issue 18, item 6): a frozen
//! model's block weights live in two flat packs per layer, its named tensors are views into
//! them, and every path computes exactly what it computed from separate tensors — checked
//! bit for bit against the same weights in a trainable model (which is never packed), on each
//! engine, for Llama, Qwen2, OLMo-2 and a Llama with biases (a layout the fused block does
//! not cover).

use candle_core::{DType, Device, Tensor};
use lm::block::{BlockLayout, NormPlace};
use lm::config::{Arch, LmConfig};
use lm::testing::tiny_config;
use lm::{CausalLm, Engine};

fn configs() -> Vec<(&'static str, LmConfig)> {
    let mut biased = tiny_config(Arch::Llama);
    biased.attention_bias = true;
    vec![
        ("llama", tiny_config(Arch::Llama)),
        ("qwen2", tiny_config(Arch::Qwen2)),
        ("olmo2", tiny_config(Arch::Olmo2)),
        ("llama+bias", biased),
    ]
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

fn ids(cfg: &LmConfig, b: usize, t: usize, salt: u32) -> Tensor {
    let v = cfg.vocab_size as u32;
    let x: Vec<u32> = (0..(b * t) as u32).map(|i| (i * 7 + salt * 13 + 3) % v).collect();
    Tensor::from_vec(x, (b, t), &Device::Cpu).unwrap()
}

/// Greedy-free incremental decoding: a prompt of 5 columns, then 3 single columns, returning
/// every step's hidden states.
fn decode(m: &CausalLm, cfg: &LmConfig) -> Vec<Tensor> {
    let mut cache = m.new_cache();
    let mut out = vec![];
    let prompt = ids(cfg, 2, 5, 1);
    let mut valid = vec![vec![true; 5], vec![false, true, true, true, true]];
    out.push(m.forward_cached(&prompt, &[0, 0], &valid, &mut cache).unwrap());
    for s in 0..3 {
        for v in valid.iter_mut() {
            v.push(true);
        }
        out.push(
            m.forward_cached(&ids(cfg, 2, 1, 10 + s), &[5 + s as usize, 4 + s as usize], &valid, &mut cache).unwrap(),
        );
    }
    out
}

#[test]
fn the_layout_names_each_architectures_block() {
    let layout = |c: &LmConfig| BlockLayout::of(c).unwrap();
    let all: Vec<BlockLayout> = configs().iter().map(|(_, c)| layout(c)).collect();
    let [llama, qwen, olmo, biased] = [all[0], all[1], all[2], all[3]];
    assert_eq!((llama.norm, llama.qkv_bias, llama.o_bias, llama.qk_norm), (NormPlace::Pre, false, false, false));
    assert_eq!((qwen.norm, qwen.qkv_bias, qwen.o_bias, qwen.qk_norm), (NormPlace::Pre, true, false, false));
    assert_eq!((olmo.norm, olmo.qkv_bias, olmo.o_bias, olmo.qk_norm), (NormPlace::Post, false, false, true));
    assert!(llama.fusable() && qwen.fusable() && olmo.fusable() && !biased.fusable());
    assert_eq!(llama.attn_pack()[0], "input_layernorm.weight");
    assert_eq!(llama.mlp_pack()[0], "post_attention_layernorm.weight");
    assert_eq!(olmo.attn_pack()[0], "post_attention_layernorm.weight");
    assert_eq!(olmo.mlp_pack()[0], "post_feedforward_layernorm.weight");
    assert_eq!(&qwen.attn_pack()[5..], ["self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias"]);
    assert_eq!(&olmo.attn_pack()[5..], ["self_attn.q_norm.weight", "self_attn.k_norm.weight"]);
    // every tensor of a block is in exactly one pack (the biased Llama's o_proj bias is not
    // packed: the composed path reads it by name)
    for (name, cfg) in configs() {
        let l = layout(&cfg);
        let mut packed: Vec<String> =
            l.attn_pack().iter().chain(l.mlp_pack().iter()).map(|n| format!("model.layers.0.{n}")).collect();
        let mut expected: Vec<String> = cfg
            .parameter_shapes()
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("model.layers.0.") && !n.ends_with("o_proj.bias"))
            .collect();
        packed.sort();
        expected.sort();
        assert_eq!(packed, expected, "{name}");
    }
}

#[test]
fn frozen_models_pack_their_blocks_and_compute_the_same_bits() {
    for (name, cfg) in configs() {
        let frozen = CausalLm::init(cfg.clone(), 5, &Device::Cpu, false).unwrap();
        let trainable = CausalLm::init(cfg.clone(), 5, &Device::Cpu, true).unwrap();
        assert!(!frozen.params.packs.is_empty(), "{name}: a frozen model is packed");
        assert!(trainable.params.packs.is_empty(), "{name}: a trainable model is not");
        // the named tensors hold the same values (views into the packs)
        for (n, t) in frozen.state() {
            assert_eq!(bits(t), bits(&trainable.state()[n]), "{name}: {n}");
        }
        for l in 0..cfg.num_hidden_layers {
            let (wa, wm) = frozen.params.block_packs(&frozen.layout, l).expect("every layer packed");
            let sum = |ns: Vec<&str>| -> usize {
                ns.iter().map(|n| frozen.state()[&format!("model.layers.{l}.{n}")].elem_count()).sum()
            };
            assert_eq!(wa.elem_count(), sum(frozen.layout.attn_pack()), "{name}: layer {l}'s attention pack");
            assert_eq!(wm.elem_count(), sum(frozen.layout.mlp_pack().to_vec()), "{name}: layer {l}'s MLP pack");
        }
        let x = ids(&cfg, 2, 9, 0);
        let mask =
            Tensor::from_vec([vec![1u32; 9], [vec![1u32; 6], vec![0; 3]].concat()].concat(), (2, 9), &Device::Cpu)
                .unwrap();
        for engine in [Engine::FUSED, Engine::FUSED_OPS, Engine::COMPOSED] {
            frozen.set_engine(engine);
            trainable.set_engine(engine);
            let (a, b) = (frozen.forward(&x, Some(&mask)).unwrap(), trainable.forward(&x, Some(&mask)).unwrap());
            assert_eq!(bits(&a), bits(&b), "{name} {engine:?}: logits of the packed model");
            for (s, (a, b)) in decode(&frozen, &cfg).iter().zip(decode(&trainable, &cfg)).enumerate() {
                assert_eq!(bits(a), bits(&b), "{name} {engine:?}: decoding step {s}");
            }
        }
    }
}

#[test]
fn a_replaced_tensor_is_seen_not_its_stale_pack() {
    for (name, cfg) in configs() {
        let mut frozen = CausalLm::init(cfg.clone(), 6, &Device::Cpu, false).unwrap();
        let trainable = CausalLm::init(cfg.clone(), 6, &Device::Cpu, true).unwrap();
        for w in ["model.layers.1.self_attn.k_proj.weight", "model.layers.0.mlp.up_proj.weight"] {
            let t = frozen.state()[w].clone();
            let changed = ((&t * 1.5).unwrap() + 0.01).unwrap();
            frozen.params.tensors.insert(w.to_string(), changed.clone());
            let var = trainable.vars().iter().find(|(n, _)| n == w).unwrap().1.clone();
            var.set(&changed).unwrap();
        }
        let x = ids(&cfg, 1, 7, 2);
        for engine in [Engine::FUSED, Engine::FUSED_OPS, Engine::COMPOSED] {
            frozen.set_engine(engine);
            trainable.set_engine(engine);
            let (a, b) = (frozen.forward(&x, None).unwrap(), trainable.forward(&x, None).unwrap());
            assert_eq!(bits(&a), bits(&b), "{name} {engine:?}: the replaced weights are used");
        }
        // packing again takes the new tensors in
        frozen.pack_weights().unwrap();
        assert!(
            frozen.params.block_packs(&frozen.layout, 0).is_some()
                && frozen.params.block_packs(&frozen.layout, 1).is_some()
        );
        frozen.set_engine(Engine::FUSED);
        trainable.set_engine(Engine::FUSED);
        assert_eq!(
            bits(&frozen.forward(&x, None).unwrap()),
            bits(&trainable.forward(&x, None).unwrap()),
            "{name}: repacked"
        );
    }
}

#[test]
fn a_packed_model_saves_the_same_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg) in configs() {
        let frozen = CausalLm::init(cfg.clone(), 8, &Device::Cpu, false).unwrap();
        let trainable = CausalLm::init(cfg.clone(), 8, &Device::Cpu, true).unwrap();
        let (a, b) = (dir.path().join(format!("{name}-frozen")), dir.path().join(format!("{name}-trainable")));
        lm::checkpoint::save(&frozen, &a, None).unwrap();
        lm::checkpoint::save(&trainable, &b, None).unwrap();
        let read = |d: &std::path::Path| std::fs::read(d.join("model.safetensors")).unwrap();
        assert!(read(&a) == read(&b), "{name}: model.safetensors differs");
        // and loads back packed, with the same values
        let back = CausalLm::load(&a, &Device::Cpu, false).unwrap();
        assert!(!back.params.packs.is_empty());
        for (n, t) in back.state() {
            assert_eq!(bits(t), bits(&frozen.state()[n]), "{name}: {n} after a round trip");
        }
    }
}

#[test]
fn a_pack_of_the_wrong_size_is_an_error() {
    let cfg = tiny_config(Arch::Llama);
    let m = CausalLm::init(cfg.clone(), 9, &Device::Cpu, false).unwrap();
    let (wa, wm) = m.params.block_packs(&m.layout, 0).unwrap();
    let short = wa.narrow(0, 0, wa.elem_count() - 1).unwrap();
    let heads = lm::attention::Heads { q: cfg.num_attention_heads, kv: cfg.num_kv_heads(), dim: cfg.head_dim() };
    let t = 4;
    let x = Tensor::zeros((1, t, cfg.hidden_size), DType::F32, &Device::Cpu).unwrap();
    let cos = Tensor::ones((t, cfg.head_dim()), DType::F32, &Device::Cpu).unwrap();
    let sin = Tensor::zeros((t, cfg.head_dim()), DType::F32, &Device::Cpu).unwrap();
    let bias = Tensor::zeros((1, 1, t, t), DType::F32, &Device::Cpu).unwrap();
    let run = |wa: &Tensor| {
        lm::engine::with(Engine::FUSED, || {
            lm::block::llama_block_packed(
                &x,
                wa,
                &wm,
                &m.layout,
                cfg.intermediate_size,
                heads,
                &cos,
                &sin,
                &bias,
                1e-5,
                false,
            )
        })
    };
    assert!(run(&wa).is_ok());
    let err = run(&short).unwrap_err().to_string();
    assert!(err.contains("weight packs of") && err.contains("expected"), "{err}");
    // the layout the fused block does not cover is refused, not run wrongly
    let mut biased = cfg.clone();
    biased.attention_bias = true;
    let lb = BlockLayout::of(&biased).unwrap();
    let err = lm::engine::with(Engine::FUSED, || {
        lm::block::llama_block_packed(&x, &wa, &wm, &lb, cfg.intermediate_size, heads, &cos, &sin, &bias, 1e-5, false)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("does not cover"), "{err}");
}
