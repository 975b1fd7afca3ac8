//! Greedy generation throughput (issue 7): `lm::score::Scorer::generate_until` on 8 prompts of
//! 32 tokens, batch size 8, no stop strings and no EOS, 32 new tokens each, reported in
//! generated tokens/s (8 × 32 = 256 per call).
//!
//! Model: the testbed's default, Llama, hidden 128, 4 layers, 4 heads, FFN 512, vocab 2048,
//! tied embeddings, random weights, f32 on CPU. `scripts/bench_pytorch.py` mirrors it.
//!
//! `greedy/unpacked` is the same model without the block-weight packs a frozen model gets at
//! load (`lm::weights::Packs`): each forward then concatenates a layer's weights again, as
//! before issue 18 item 6 — the A/B of the packs, in one binary.

use benchmarks::{bench_tok, default_shape, random_text};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lm::score::Scorer;
use lm::CausalLm;
use rand::SeedableRng;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROMPTS: usize = 8;
const NEW: usize = 32;

fn generate(c: &mut Criterion) {
    lm::keep_freed_memory();
    let shape = default_shape();
    let model = CausalLm::init(shape.cfg.clone(), 0, &candle_core::Device::Cpu, false).expect("init");
    let tok = bench_tok(&shape.cfg).expect("tokenizer");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let reqs: Vec<(String, Vec<String>, usize)> =
        (0..PROMPTS).map(|_| (format!("a{}", random_text(&mut rng, 31)), vec![], NEW)).collect();
    let mut s = Scorer::new(&model, &tok);
    s.batch_size = PROMPTS;
    // Every request generates exactly NEW tokens: the config has no EOS and there are no stop
    // strings. Each generated id decodes to one character or one `<|i|>` token.
    let out = s.generate_until(&reqs).expect("generate");
    assert!(out.iter().all(|o| !o.is_empty()), "generation produced nothing");
    let mut g = c.benchmark_group("generate");
    g.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements((PROMPTS * NEW) as u64));
    g.bench_function("greedy", |b| b.iter(|| s.generate_until(&reqs).expect("generate")));
    let mut unpacked = CausalLm::init(shape.cfg.clone(), 0, &candle_core::Device::Cpu, false).expect("init");
    unpacked.params.packs = Default::default();
    let mut s = Scorer::new(&unpacked, &tok);
    s.batch_size = PROMPTS;
    g.bench_function("greedy/unpacked", |b| b.iter(|| s.generate_until(&reqs).expect("generate")));
    g.finish();
}

criterion_group!(benches, generate);
criterion_main!(benches);
