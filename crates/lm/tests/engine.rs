//! Engine tests: gradients against finite differences, every parameter trained, lm-eval
//! scoring semantics against a direct computation, batching invariance, checkpoints, errors.

use candle_core::{DType, Device, Tensor, D};
use lm::config::Arch;
use lm::model::{log_softmax_last, CausalLm};
use lm::score::{rolling_windows, Scorer};
use lm::testing::{char_tokenizer_json, tiny_config, write_tiny_checkpoint};
use lm::train::{collate, fit, masked_nll, Example, NextToken, Objective, Step, TrainConfig, Trainer};
use lm::Tok;

const ARCHS: [Arch; 3] = [Arch::Llama, Arch::Qwen2, Arch::Olmo2];

fn tok_for(cfg: &lm::LmConfig) -> Tok {
    let inner = tokenizers::Tokenizer::from_bytes(char_tokenizer_json().as_bytes()).unwrap();
    Tok::new(inner, cfg).unwrap()
}

fn batch_for(model: &CausalLm, tok: &Tok, texts: &[&str]) -> lm::train::Batch {
    let ex: Vec<Example> = texts
        .iter()
        .map(|t| {
            let mut ids = vec![0u32];
            ids.extend(tok.encode(t).unwrap());
            Example::full(ids)
        })
        .collect();
    let refs: Vec<&Example> = ex.iter().collect();
    collate(&refs, (0..ex.len()).collect(), tok.pad, &model.device).unwrap()
}

/// Backward against central finite differences in f64-accumulated f32 losses, for EVERY
/// parameter tensor of every architecture: per tensor the entry with the largest gradient, the
/// one with the smallest non-zero gradient, and three more at fixed pseudo-random positions
/// (small gradients included), each within a relative-plus-absolute tolerance.
#[test]
fn gradients_match_finite_differences() {
    for arch in ARCHS {
        let cfg = tiny_config(arch);
        let model = CausalLm::init(cfg.clone(), 7, &Device::Cpu, true).unwrap();
        let tok = tok_for(&cfg);
        let batch = batch_for(&model, &tok, &["the cat sat.", "a dog ran far away"]);
        let loss = masked_nll(&model, &batch).unwrap();
        let grads = loss.backward().unwrap();
        let mut checked = 0;
        for (t, (name, var)) in model.vars().iter().enumerate() {
            let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let n = g.len();
            let largest = (0..n).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
            let smallest = (0..n).filter(|&i| g[i] != 0.0).min_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()));
            let mut entries = vec![largest];
            entries.extend(smallest);
            // fixed pseudo-random positions (a multiplicative hash of tensor and draw)
            entries.extend(
                (1..=3u64).map(|k| ((t as u64 * 7919 + k * 104_729).wrapping_mul(2_654_435_761) % n as u64) as usize),
            );
            entries.sort_unstable();
            entries.dedup();
            let orig = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let eps = 1e-2f32;
            for idx in entries {
                let eval = |delta: f32| {
                    let mut v = orig.clone();
                    v[idx] += delta;
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
                    masked_nll(&model, &batch).unwrap().to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps as f64);
                var.set(&Tensor::from_vec(orig.clone(), var.shape(), &Device::Cpu).unwrap()).unwrap();
                // The loss is an f32 ≈ 4 (one ulp 4.8e-7); central differences over 2ε = 0.02
                // resolve a gradient to ≈ 2.4e-5 per ulp of rounding in each evaluation, and
                // measured noise reaches 5e-5: 3 % relative plus 1e-4 absolute.
                let err = (fd - g[idx] as f64).abs();
                assert!(
                    err < 0.03 * (g[idx] as f64).abs() + 1e-4,
                    "{arch:?} {name}[{idx}]: backward {} vs finite difference {fd}",
                    g[idx]
                );
                checked += 1;
            }
        }
        assert!(checked >= 3 * model.vars().len(), "{arch:?}: only {checked} entries checked");
    }
}

#[test]
fn every_parameter_receives_a_nonzero_gradient() {
    for arch in ARCHS {
        let cfg = tiny_config(arch);
        let model = CausalLm::init(cfg.clone(), 3, &Device::Cpu, true).unwrap();
        let tok = tok_for(&cfg);
        let batch = batch_for(&model, &tok, &["hello world", "unlearning is hard"]);
        let grads = masked_nll(&model, &batch).unwrap().backward().unwrap();
        assert_eq!(model.vars().len(), cfg.parameter_shapes().unwrap().len());
        for (name, var) in model.vars() {
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{arch:?}: {name} got no gradient"));
            let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(n > 0.0, "{arch:?}: {name} got an all-zero gradient");
        }
    }
}

#[test]
fn loglikelihood_matches_a_direct_computation_and_batching() {
    for arch in ARCHS {
        let cfg = tiny_config(arch);
        let model = CausalLm::init(cfg.clone(), 11, &Device::Cpu, false).unwrap();
        let tok = tok_for(&cfg);
        let reqs: Vec<(String, String)> = vec![
            ("Q: who? A:".into(), " the cat".into()),
            ("Q: who? A: ".into(), "the cat".into()), // trailing space moves to the continuation
            ("".into(), "abc".into()),                // empty context: prefix token
            ("a much longer context with words".into(), " x".into()),
            ("hi".into(), " there, friend.".into()),
        ];
        let mut s = Scorer::new(&model, &tok);
        s.batch_size = 8;
        let batched = s.loglikelihood(&reqs).unwrap();
        s.batch_size = 1;
        let single = s.loglikelihood(&reqs).unwrap();
        for (a, b) in batched.iter().zip(&single) {
            assert!((a.logprob - b.logprob).abs() < 1e-5, "{arch:?}: batched {a:?} vs single {b:?}");
            assert_eq!(a.is_greedy, b.is_greedy);
        }
        assert!((batched[0].logprob - batched[1].logprob).abs() < 1e-6, "trailing space must move to the continuation");
        // Direct: tokens of context, then of continuation (char tokenizer: encode is per char).
        for (k, (c, x)) in reqs.iter().enumerate() {
            let (c, x) =
                if c.ends_with(' ') { (c.trim_end().to_string(), format!(" {x}")) } else { (c.clone(), x.clone()) };
            let mut ids = if c.is_empty() { vec![0u32] } else { tok.encode(&c).unwrap() };
            let cont = tok.encode(&x).unwrap();
            ids.extend(&cont);
            let n = ids.len() - 1;
            let input = Tensor::from_vec(ids[..n].to_vec(), (1, n), &Device::Cpu).unwrap();
            let lp = log_softmax_last(&model.forward(&input, None).unwrap()).unwrap().squeeze(0).unwrap();
            let lp = lp.to_vec2::<f32>().unwrap();
            let mut want = 0f64;
            let mut greedy = true;
            for j in 0..cont.len() {
                let row = &lp[n - cont.len() + j];
                want += row[cont[j] as usize] as f64;
                let am = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
                greedy &= am == cont[j];
            }
            assert!(
                (batched[k].logprob - want).abs() < 1e-4,
                "{arch:?} request {k}: {} vs direct {want}",
                batched[k].logprob
            );
            assert_eq!(batched[k].is_greedy, greedy);
            assert_eq!(batched[k].n_tokens, cont.len());
        }
    }
}

#[test]
fn rolling_windows_cover_every_token_once() {
    let toks: Vec<u32> = (10..20).collect();
    let w = rolling_windows(&toks, 0, 4);
    assert_eq!(w[0], (vec![0], vec![10, 11, 12, 13]));
    // second window: input tokens[3..7] predicting tokens[4..8]; disjoint context = tokens[3..4]
    assert_eq!(w[1], (vec![13], vec![14, 15, 16, 17]));
    // last window predicts 2 tokens with max_len inputs: tokens[5..9], context tokens[5..8]
    assert_eq!(w[2], (vec![15, 16, 17], vec![18, 19]));
    let covered: Vec<u32> = w.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(covered, toks);
}

#[test]
fn token_logprobs_in_windows_equal_the_sum_when_short() {
    let cfg = tiny_config(Arch::Llama);
    let model = CausalLm::init(cfg.clone(), 5, &Device::Cpu, false).unwrap();
    let tok = tok_for(&cfg);
    let text = "the quick brown fox".to_string();
    let mut s = Scorer::new(&model, &tok);
    let full = s.token_logprobs(std::slice::from_ref(&text)).unwrap().remove(0);
    assert_eq!(full.len(), text.len());
    s.max_length = 6; // forces rolling windows
    let win = s.token_logprobs(std::slice::from_ref(&text)).unwrap().remove(0);
    assert_eq!(win.len(), text.len());
    // the first window is identical; later ones see less context, so they differ
    for j in 0..6 {
        assert!((full[j] - win[j]).abs() < 1e-5);
    }
    let (sum, n) = s.loglikelihood_rolling(std::slice::from_ref(&text)).unwrap()[0];
    assert_eq!(n, text.len());
    assert!((sum - win.iter().map(|&x| x as f64).sum::<f64>()).abs() < 1e-4);
}

#[test]
fn checkpoints_round_trip_and_training_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ARCHS {
        let cfg = tiny_config(arch);
        let path = dir.path().join(format!("{arch:?}"));
        let model = write_tiny_checkpoint(&path, cfg.clone(), 1).unwrap();
        let loaded = CausalLm::load(&path, &Device::Cpu, false).unwrap();
        let tok = Tok::load(&path, &loaded.cfg).unwrap();
        let b = batch_for(&model, &tok, &["round trip"]);
        let a = model.forward(&b.inputs, None).unwrap();
        let c = loaded.forward(&b.inputs, None).unwrap();
        let diff = (a - c).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0, "{arch:?}: logits changed after save/load");

        // training lowers the loss and is bit-for-bit deterministic
        let data: Vec<Example> = ["abcabcabcabc", "xyzxyzxyz", "abcxyzabc"]
            .iter()
            .map(|t| {
                let mut ids = vec![0];
                ids.extend(tok.encode(t).unwrap());
                Example::full(ids)
            })
            .collect();
        let tc = TrainConfig { lr: 1e-2, epochs: 30, batch_size: 2, seed: 4, ..Default::default() };
        let run = || {
            let m = CausalLm::load(&path, &Device::Cpu, true).unwrap();
            let log = fit(&m, &data, None, &tc, &NextToken, tok.pad, None).unwrap();
            let w: Vec<f32> =
                m.state().values().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
            (log, w)
        };
        let (l1, w1) = run();
        let (l2, w2) = run();
        assert_eq!(w1, w2, "{arch:?}: same seed must give identical weights");
        let first = l1.steps.first().unwrap().loss;
        let last = l1.steps.last().unwrap().loss;
        assert!(last < first * 0.5, "{arch:?}: loss {first} -> {last} did not drop");
        assert_eq!(
            l1.steps.iter().map(|s| s.loss).collect::<Vec<_>>(),
            l2.steps.iter().map(|s| s.loss).collect::<Vec<_>>()
        );
    }
}

#[test]
fn gradient_accumulation_equals_the_large_batch() {
    let cfg = tiny_config(Arch::Qwen2);
    let tok = tok_for(&cfg);
    // equal-length rows: the mean over two halves equals the mean over the whole batch
    let texts = ["abcd efg", "hijk lmn", "opqr stu", "vwxy zab"];
    let m = CausalLm::init(cfg.clone(), 9, &Device::Cpu, true).unwrap();
    let t = Trainer::new(&m, TrainConfig::default(), 1).unwrap();
    let b1 = batch_for(&m, &tok, &texts[..2]);
    let b2 = batch_for(&m, &tok, &texts[2..]);
    let b = batch_for(&m, &tok, &texts);
    let (ga, la) = t
        .gradients(&NextToken, &[Step { primary: &b1, secondary: None }, Step { primary: &b2, secondary: None }])
        .unwrap();
    let (gb, lb) = t.gradients(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
    assert!((la - lb).abs() < 1e-5, "loss {la} vs {lb}");
    for ((name, _), (a, b)) in m.vars().iter().zip(ga.iter().zip(&gb)) {
        let d = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let s = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(d <= 1e-4 * s.max(1e-3), "{name}: accumulated gradient differs by {d} (scale {s})");
    }
}

struct NanLoss;
impl Objective for NanLoss {
    fn loss(&self, model: &CausalLm, step: &Step) -> anyhow::Result<Tensor> {
        Ok((masked_nll(model, step.primary)? * f64::NAN)?)
    }
}

#[test]
fn non_finite_loss_stops_with_the_step() {
    let cfg = tiny_config(Arch::Llama);
    let m = CausalLm::init(cfg.clone(), 1, &Device::Cpu, true).unwrap();
    let tok = tok_for(&cfg);
    let b = batch_for(&m, &tok, &["abc"]);
    let mut t = Trainer::new(&m, TrainConfig::default(), 1).unwrap();
    let err = t.step(&NanLoss, &[Step { primary: &b, secondary: None }]).unwrap_err().to_string();
    assert!(err.contains("non-finite loss") && err.contains("step 0"), "{err}");
}

#[test]
fn greedy_generation_learns_a_pattern_and_stops() {
    let cfg = tiny_config(Arch::Llama);
    let tok = tok_for(&cfg);
    let m = CausalLm::init(cfg.clone(), 2, &Device::Cpu, true).unwrap();
    let mut ids = vec![0];
    ids.extend(tok.encode("abcdabcdabcdabcdabcdabcd").unwrap());
    let data = vec![Example::full(ids)];
    let tc = TrainConfig { lr: 2e-2, epochs: 150, batch_size: 1, warmup_ratio: 0.0, ..Default::default() };
    fit(&m, &data, None, &tc, &NextToken, tok.pad, None).unwrap();
    let mut s = Scorer::new(&m, &tok);
    s.add_bos = true;
    let out = s.generate_until(&[("abcdab".into(), vec![], 6), ("abcd".into(), vec!["d".into()], 10)]).unwrap();
    assert_eq!(out[0], "cdabcd");
    assert_eq!(out[1], "abc", "generation must stop before the stop string");
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = |p: &std::path::Path| CausalLm::load(p, &Device::Cpu, false).err().map(|e| format!("{e:#}")).unwrap();
    // missing folder
    assert!(err(&d.join("nope")).contains("config.json"));
    // malformed config
    std::fs::create_dir_all(d.join("bad")).unwrap();
    std::fs::write(d.join("bad/config.json"), "{ not json").unwrap();
    assert!(err(&d.join("bad")).contains("bad/config.json"));
    // unsupported architecture
    let mut cfg = tiny_config(Arch::Llama);
    cfg.architectures = vec!["GPT2LMHeadModel".into()];
    std::fs::create_dir_all(d.join("arch")).unwrap();
    std::fs::write(d.join("arch/config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let e = err(&d.join("arch"));
    assert!(e.contains("GPT2LMHeadModel") && e.contains("LlamaForCausalLM"), "{e}");
    // pickle only
    let good = d.join("good");
    write_tiny_checkpoint(&good, tiny_config(Arch::Llama), 0).unwrap();
    std::fs::create_dir_all(d.join("pickle")).unwrap();
    std::fs::copy(good.join("config.json"), d.join("pickle/config.json")).unwrap();
    std::fs::write(d.join("pickle/pytorch_model.bin"), b"PK").unwrap();
    let e = err(&d.join("pickle"));
    assert!(e.contains("pickle") && e.contains("safetensors"), "{e}");
    // truncated safetensors
    std::fs::create_dir_all(d.join("trunc")).unwrap();
    std::fs::copy(good.join("config.json"), d.join("trunc/config.json")).unwrap();
    let bytes = std::fs::read(good.join("model.safetensors")).unwrap();
    std::fs::write(d.join("trunc/model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = err(&d.join("trunc"));
    assert!(e.contains("trunc/model.safetensors"), "{e}");
    // shape mismatch: config says a bigger hidden size than the weights
    std::fs::create_dir_all(d.join("shape")).unwrap();
    std::fs::copy(good.join("model.safetensors"), d.join("shape/model.safetensors")).unwrap();
    let mut c2 = tiny_config(Arch::Llama);
    c2.intermediate_size = 96;
    std::fs::write(d.join("shape/config.json"), serde_json::to_string(&c2).unwrap()).unwrap();
    let e = err(&d.join("shape"));
    assert!(e.contains("mlp.gate_proj.weight") && e.contains("[96, 32]"), "{e}");
    // tokenizer larger than the vocabulary
    let mut small = tiny_config(Arch::Llama);
    small.vocab_size = 10;
    let inner = tokenizers::Tokenizer::from_bytes(char_tokenizer_json().as_bytes()).unwrap();
    let e = Tok::new(inner, &small).err().unwrap().to_string();
    assert!(e.contains("vocab_size"), "{e}");
}

#[test]
fn padded_rows_score_like_unpadded_ones() {
    let cfg = tiny_config(Arch::Olmo2);
    let model = CausalLm::init(cfg.clone(), 4, &Device::Cpu, false).unwrap();
    let tok = tok_for(&cfg);
    let b = batch_for(&model, &tok, &["short", "a much longer row"]);
    let lp = CausalLm::target_logprobs(&model.forward(&b.inputs, Some(&b.attention)).unwrap(), &b.targets).unwrap();
    let b1 = batch_for(&model, &tok, &["short"]);
    let lp1 = CausalLm::target_logprobs(&model.forward(&b1.inputs, None).unwrap(), &b1.targets).unwrap();
    let n = b1.inputs.dim(1).unwrap();
    let d = (lp.get(0).unwrap().narrow(0, 0, n).unwrap() - lp1.get(0).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max(D::Minus1)
        .unwrap();
    assert!(d.to_scalar::<f32>().unwrap() < 1e-5);
}

#[test]
fn a_run_restarted_from_a_checkpoint_and_optimizer_state_continues_bit_for_bit() {
    let cfg = tiny_config(Arch::Llama);
    let tok = tok_for(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let texts =
        [["one fish", "two fish"], ["red fish", "blue fish"], ["old fish", "new fish"], ["big fish", "sad fish"]];
    let tc = TrainConfig { lr: 1e-2, warmup_steps: Some(1), ..Default::default() };
    let weights = |m: &CausalLm| {
        m.state().values().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect::<Vec<f32>>()
    };
    // uninterrupted: 4 steps
    let a = CausalLm::init(cfg.clone(), 5, &Device::Cpu, true).unwrap();
    let mut ta = Trainer::new(&a, tc.clone(), 4).unwrap();
    for t in &texts {
        let b = batch_for(&a, &tok, t);
        ta.step(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
    }
    // interrupted after 2 steps: save weights and optimizer state, reload, continue
    let b0 = CausalLm::init(cfg.clone(), 5, &Device::Cpu, true).unwrap();
    let mut tb = Trainer::new(&b0, tc.clone(), 4).unwrap();
    for t in &texts[..2] {
        let b = batch_for(&b0, &tok, t);
        tb.step(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
    }
    let ck = dir.path().join("ck");
    lm::checkpoint::save(&b0, &ck, None).unwrap();
    // the header carries `__metadata__ = {"format": "pt"}`, which transformers'
    // from_pretrained requires of a safetensors file
    let bytes = std::fs::read(ck.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let format = meta.metadata().as_ref().and_then(|m| m.get("format").cloned());
    assert_eq!(format.as_deref(), Some("pt"), "model.safetensors lacks __metadata__.format = pt");
    tb.save_state(&ck).unwrap();
    let b1 = CausalLm::load(&ck, &Device::Cpu, true).unwrap();
    let mut tc1 = Trainer::new(&b1, tc.clone(), 4).unwrap();
    tc1.load_state(&ck).unwrap();
    assert_eq!(tc1.step, 2);
    for t in &texts[2..] {
        let b = batch_for(&b1, &tok, t);
        tc1.step(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
    }
    assert_eq!(weights(&a), weights(&b1), "restarted run diverged from the uninterrupted one");
    // and without the optimizer state it would not be identical
    let c1 = CausalLm::load(&ck, &Device::Cpu, true).unwrap();
    let mut tcc = Trainer::new(&c1, tc, 4).unwrap();
    tcc.step = 2;
    for t in &texts[2..] {
        let b = batch_for(&c1, &tok, t);
        tcc.step(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
    }
    assert_ne!(weights(&a), weights(&c1));
}

/// Two AdamW steps (with gradient clipping active, warm-up and weight decay) against the
/// textbook update computed here in f64 from the same gradients (Loshchilov & Hutter 2019,
/// PyTorch's `torch.optim.AdamW` semantics: decay multiplies θ by 1 − lr·wd before the step).
#[test]
fn adamw_steps_match_a_hand_computation() {
    let cfg = tiny_config(Arch::Llama);
    let tok = tok_for(&cfg);
    let m = CausalLm::init(cfg.clone(), 21, &Device::Cpu, true).unwrap();
    let tc = TrainConfig {
        lr: 3e-3,
        weight_decay: 0.1,
        warmup_steps: Some(1),
        max_grad_norm: Some(0.5),
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(&m, tc.clone(), 4).unwrap();
    let b = batch_for(&m, &tok, &["the cat sat.", "a dog ran far away"]);
    let flat = |x: &Tensor| {
        x.flatten_all().unwrap().to_vec1::<f32>().unwrap().into_iter().map(f64::from).collect::<Vec<f64>>()
    };
    let mut theta: Vec<Vec<f64>> = m.vars().iter().map(|(_, v)| flat(v.as_tensor())).collect();
    let mut mom: Vec<Vec<f64>> = theta.iter().map(|p| vec![0.0; p.len()]).collect();
    let mut vel = mom.clone();
    for step in 0..2 {
        let (g, _) = t.gradients(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
        let g: Vec<Vec<f64>> = g.iter().map(flat).collect();
        let norm = g.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
        let clip = if norm > 0.5 { 0.5 / (norm + 1e-6) } else { 1.0 };
        let lr = tc.lr_at(step, 4);
        let k = (step + 1) as i32;
        for i in 0..theta.len() {
            for j in 0..theta[i].len() {
                let gj = g[i][j] * clip;
                mom[i][j] = 0.9 * mom[i][j] + 0.1 * gj;
                vel[i][j] = 0.999 * vel[i][j] + 0.001 * gj * gj;
                let mh = mom[i][j] / (1.0 - 0.9f64.powi(k));
                let vh = vel[i][j] / (1.0 - 0.999f64.powi(k));
                theta[i][j] = theta[i][j] * (1.0 - lr * 0.1) - lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        let stats = t.step(&NextToken, &[Step { primary: &b, secondary: None }]).unwrap();
        assert!((stats.grad_norm - norm).abs() < 1e-4 * norm, "grad norm {} vs {norm}", stats.grad_norm);
        for ((name, v), want) in m.vars().iter().zip(&theta) {
            let got = flat(v.as_tensor());
            let d = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(d < 2e-6, "step {step} {name}: differs from the hand computation by {d}");
        }
    }
}

/// The key/value cache against the full forward: logits of every column fed one at a time
/// (and left padded) equal the full-sequence logits; batched cached generation equals a naive
/// greedy loop that recomputes the whole prefix with `forward` for each request alone.
#[test]
fn cached_decoding_equals_the_full_forward() {
    for arch in ARCHS {
        let cfg = tiny_config(arch);
        let tok = tok_for(&cfg);
        let m = CausalLm::init(cfg.clone(), 5, &Device::Cpu, false).unwrap();
        // 1. column by column, with row 1 left-padded by 2
        let a: Vec<u32> = tok.encode("the cat sat").unwrap();
        let b: Vec<u32> = tok.encode("a dog r").unwrap();
        let full = m.forward(&Tensor::new(a.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap(), None).unwrap();
        let full_b = m.forward(&Tensor::new(b.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap(), None).unwrap();
        let pad = a.len() - b.len();
        let mut cache = m.new_cache();
        let mut valid = vec![vec![], vec![]];
        for j in 0..a.len() {
            let bj = if j < pad { tok.pad } else { b[j - pad] };
            valid[0].push(true);
            valid[1].push(j >= pad);
            let input = Tensor::new(&[[a[j]], [bj]], &Device::Cpu).unwrap();
            let pos = [j, j.saturating_sub(pad)];
            let h = m.forward_cached(&input, &pos, &valid, &mut cache).unwrap();
            let lg = m.logits(&h).unwrap();
            let d = (lg.get(0).unwrap().get(0).unwrap() - full.get(0).unwrap().get(j).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(d.to_scalar::<f32>().unwrap() < 1e-4, "{arch:?} row 0 column {j}");
            if j >= pad {
                let want = full_b.get(0).unwrap().get(j - pad).unwrap();
                let d = (lg.get(1).unwrap().get(0).unwrap() - want).unwrap().abs().unwrap().max_all().unwrap();
                assert!(d.to_scalar::<f32>().unwrap() < 1e-4, "{arch:?} padded row 1 column {j}");
            }
        }
        // 2. batched cached generation vs a naive loop per request
        let prompts = ["the cat", "a dog ran far", "x", "sat on the mat"];
        let reqs: Vec<(String, Vec<String>, usize)> = prompts.iter().map(|p| (p.to_string(), vec![], 7)).collect();
        let mut s = Scorer::new(&m, &tok);
        s.add_bos = true;
        s.batch_size = 3;
        let got = s.generate_until(&reqs).unwrap();
        assert!(
            got.iter().all(|g| g.chars().count() >= 3),
            "{arch:?}: generations too short to test anything: {got:?}"
        );
        for (p, g) in prompts.iter().zip(&got) {
            let mut ids = vec![tok.prefix_token()];
            ids.extend(tok.encode(p).unwrap());
            let start = ids.len();
            for _ in 0..7 {
                let lg =
                    m.forward(&Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap(), None).unwrap();
                let next =
                    lg.get(0).unwrap().get(ids.len() - 1).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
                if tok.eos.contains(&next) {
                    break;
                }
                ids.push(next);
            }
            assert_eq!(g, &tok.decode(&ids[start..]).unwrap(), "{arch:?} prompt {p:?}");
        }
    }
}

/// `train_only` freezes everything it is not told to keep: after a step only the selected
/// tensor differs from before, the gradient norm covers it alone, and selecting nothing or
/// a frozen model are errors.
#[test]
fn train_only_updates_the_selected_parameters_and_nothing_else() {
    let cfg = tiny_config(Arch::Llama);
    let mut model = CausalLm::init(cfg.clone(), 7, &Device::Cpu, true).unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let before: Vec<(String, Vec<f32>)> = model.state().iter().map(|(n, t)| (n.clone(), flat(t))).collect();
    let keep = "model.layers.0.mlp.down_proj.weight";
    assert_eq!(model.train_only(|n| n == keep).unwrap(), vec![keep.to_string()]);
    assert_eq!(model.vars().len(), 1);
    let tok = tok_for(&cfg);
    let batch = batch_for(&model, &tok, &["the cat sat.", "a dog ran far away"]);
    let mut tr =
        Trainer::new(&model, TrainConfig { lr: 1e-2, warmup_steps: Some(0), ..Default::default() }, 10).unwrap();
    let (grads, _) = tr.gradients(&NextToken, &[Step { primary: &batch, secondary: None }]).unwrap();
    let norm = grads[0].sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt() as f64;
    let stats = tr.step(&NextToken, &[Step { primary: &batch, secondary: None }]).unwrap();
    assert!(
        (stats.grad_norm - norm).abs() <= 1e-5 * norm,
        "gradient norm {} is not the kept tensor's {norm}",
        stats.grad_norm
    );
    for (name, old) in &before {
        let now = flat(&model.state()[name]);
        let same = old.iter().zip(&now).all(|(a, b)| a.to_bits() == b.to_bits());
        assert_eq!(same, name != keep, "{name}: changed = {}", !same);
    }
    assert!(model.train_only(|_| false).unwrap_err().to_string().contains("no parameter selected"));
    let mut frozen = CausalLm::init(cfg, 7, &Device::Cpu, false).unwrap();
    assert!(frozen.train_only(|_| true).is_err());
}

/// The residual stream after 0 blocks is the embedding lookup; after every block, with the
/// final norm applied, it is `hidden`; past the last block it is an error.
#[test]
fn residual_stream_runs_from_the_embeddings_to_the_final_norm() {
    for arch in ARCHS {
        let cfg = tiny_config(arch);
        let model = CausalLm::init(cfg.clone(), 3, &Device::Cpu, false).unwrap();
        let tok = tok_for(&cfg);
        let batch = batch_for(&model, &tok, &["the cat sat.", "a dog ran far away"]);
        let att = Some(&batch.attention);
        let emb = model.state()["model.embed_tokens.weight"].to_vec2::<f32>().unwrap();
        let x0 = model.residual_stream(&batch.inputs, att, 0).unwrap().to_vec3::<f32>().unwrap();
        for (row, ids) in x0.iter().zip(batch.inputs.to_vec2::<u32>().unwrap()) {
            for (x, id) in row.iter().zip(ids) {
                assert_eq!(x, &emb[id as usize], "{arch:?}: stream 0 is not the embedding of {id}");
            }
        }
        let l = cfg.num_hidden_layers;
        let last = model.residual_stream(&batch.inputs, att, l).unwrap();
        let normed = lm::model::rms_norm(&last, &model.state()["model.norm.weight"], cfg.rms_norm_eps).unwrap();
        let hidden = model.hidden(&batch.inputs, att).unwrap();
        let d = (normed - hidden).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(d, 0.0, "{arch:?}");
        let mid = model.residual_stream(&batch.inputs, att, 1).unwrap();
        assert!(
            (&mid - &last).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() > 1e-3,
            "{arch:?}: blocks change the stream"
        );
        assert!(model.residual_stream(&batch.inputs, att, l + 1).is_err());
    }
}
