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
    let mut shape = if which == "large" { large_shape() } else { default_shape() };
    let arch = std::env::args().nth(3).unwrap_or_else(|| "llama".into());
    let arch = match arch.as_str() {
        "llama" => lm::Arch::Llama,
        "qwen2" => lm::Arch::Qwen2,
        "olmo2" => lm::Arch::Olmo2,
        other => anyhow::bail!("unknown architecture {other:?} (llama, qwen2 or olmo2)"),
    };
    if arch != lm::Arch::Llama {
        let c = &shape.cfg;
        let heads = c.num_attention_heads;
        let mut cfg = lm::LmConfig::small(
            arch,
            c.vocab_size,
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers,
            heads,
            heads,
            c.max_position_embeddings,
        );
        cfg.tie_word_embeddings = true;
        cfg.eos_token_id = None;
        shape.cfg = cfg;
    }
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
        "{{\"shape\": \"{}\", \"arch\": \"{arch:?}\", \"steps\": {steps}, \"median_s\": {med:.4}, \"tokens_per_s\": {:.1}, \"last_loss\": {loss:.6}}}",
        shape.name,
        shape.tokens_per_batch() as f64 / med
    );
    Ok(())
}
