//! Training-step throughput (issue 7): one `lm::train::Trainer::step` = forward, backward,
//! global-norm clipping and AdamW, on random tokens, reported in tokens/s (input tokens of the
//! batch per second).
//!
//! Shapes (f32, CPU, candle's thread pool as configured by `RAYON_NUM_THREADS`):
//! - `train/default`: Llama, hidden 128, 4 layers, 4 heads (head dim 32), FFN 512, vocab 2048,
//!   tied embeddings (0.79 M parameters); batch 32 × sequence 128 = 4096 tokens per step.
//! - `train/large`: Llama, hidden 256, 4 layers, 4 heads (head dim 64), FFN 1024, vocab 4096,
//!   tied embeddings (4.2 M parameters); batch 16 × sequence 128 = 2048 tokens per step
//!   (the shape measured in issue 7).
//!
//! `scripts/bench_pytorch.py` runs the same steps in PyTorch.

use benchmarks::{default_shape, large_shape, random_batch};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lm::train::{NextToken, Step, TrainConfig, Trainer};
use lm::CausalLm;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn train(c: &mut Criterion) {
    lm::keep_freed_memory();
    let mut g = c.benchmark_group("train");
    g.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(12));
    for shape in [default_shape(), large_shape()] {
        let model = CausalLm::init(shape.cfg.clone(), 0, &candle_core::Device::Cpu, true).expect("init");
        let batch = random_batch(&shape, 1).expect("batch");
        let cfg = TrainConfig { lr: 1e-4, warmup_steps: Some(0), ..Default::default() };
        let mut trainer = Trainer::new(&model, cfg, 1_000_000).expect("trainer");
        g.throughput(Throughput::Elements(shape.tokens_per_batch() as u64));
        g.bench_function(shape.name, |b| {
            b.iter(|| trainer.step(&NextToken, &[Step { primary: &batch, secondary: None }]).expect("step"))
        });
    }
    g.finish();
}

criterion_group!(benches, train);
criterion_main!(benches);
