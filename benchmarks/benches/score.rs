//! Log-likelihood scoring throughput (issue 7): `lm::score::Scorer::loglikelihood` on 64
//! requests of a 96-token context and a 32-token continuation (character tokenizer padded to
//! the model's vocabulary), batch size 16, reported in tokens/s (64 × 128 = 8192 tokens fed).
//!
//! Model: the testbed's default, Llama, hidden 128, 4 layers, 4 heads, FFN 512, vocab 2048,
//! tied embeddings, random weights, f32 on CPU. `scripts/bench_pytorch.py` mirrors it.
//!
//! `loglikelihood/unpacked` is the same model without the block-weight packs a frozen model gets at
//! load (`lm::weights::Packs`): each forward then concatenates a layer's weights again, as
//! before issue 18 item 6 — the A/B of the packs, in one binary.

use benchmarks::{bench_tok, default_shape, loglikelihood_requests};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lm::score::Scorer;
use lm::CausalLm;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn score(c: &mut Criterion) {
    lm::keep_freed_memory();
    let shape = default_shape();
    let model = CausalLm::init(shape.cfg.clone(), 0, &candle_core::Device::Cpu, false).expect("init");
    let tok = bench_tok(&shape.cfg).expect("tokenizer");
    let reqs = loglikelihood_requests(64, 2);
    let tokens: usize = reqs.iter().map(|(c, x)| c.len() + x.len()).sum();
    let mut s = Scorer::new(&model, &tok);
    s.batch_size = 16;
    let mut g = c.benchmark_group("score");
    g.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(tokens as u64));
    g.bench_function("loglikelihood", |b| b.iter(|| s.loglikelihood(&reqs).expect("score")));
    let mut unpacked = CausalLm::init(shape.cfg.clone(), 0, &candle_core::Device::Cpu, false).expect("init");
    unpacked.params.packs = Default::default();
    let mut s = Scorer::new(&unpacked, &tok);
    s.batch_size = 16;
    g.bench_function("loglikelihood/unpacked", |b| b.iter(|| s.loglikelihood(&reqs).expect("score")));
    g.finish();
}

criterion_group!(benches, score);
criterion_main!(benches);
