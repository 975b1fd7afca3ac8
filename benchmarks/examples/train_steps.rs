//! Time a few training steps outside criterion, for profiling (`perf record`) and quick A/B
//! comparisons: `cargo run --release -p benchmarks --example train_steps -- [default|large] [STEPS]`.
//! Prints one JSON line with tokens/s (median step). Shapes as in `benches/train.rs`.

use benchmarks::{default_shape, large_shape, random_batch};
use lm::train::{NextToken, Step, TrainConfig, Trainer};
use lm::CausalLm;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        lm::keep_freed_memory();
    }
    let which = std::env::args().nth(1).unwrap_or_else(|| "default".into());
    let steps: usize = std::env::args().nth(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let shape = if which == "large" { large_shape() } else { default_shape() };
    let model = CausalLm::init(shape.cfg.clone(), 0, &candle_core::Device::Cpu, true)?;
    let batch = random_batch(&shape, 1)?;
    let cfg = TrainConfig { lr: 1e-4, warmup_steps: Some(0), ..Default::default() };
    let mut trainer = Trainer::new(&model, cfg, 1_000_000)?;
    let step = [Step { primary: &batch, secondary: None }];
    trainer.step(&NextToken, &step)?;
    let mut times = vec![];
    let mut loss = 0.0;
    for _ in 0..steps {
        let t = std::time::Instant::now();
        loss = trainer.step(&NextToken, &step)?.loss;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let med = times[times.len() / 2];
    println!(
        "{{\"shape\": \"{}\", \"steps\": {steps}, \"median_s\": {med:.4}, \"tokens_per_s\": {:.1}, \"last_loss\": {loss:.6}}}",
        shape.name,
        shape.tokens_per_batch() as f64 / med
    );
    Ok(())
}
