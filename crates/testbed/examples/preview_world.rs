//! Prints a preview of a world: sample documents, a QA item, sizes, and the default
//! schedule with estimated lengths. `cargo run -p testbed --example preview_world [DATA_DIR]`

use std::path::PathBuf;

use testbed::{Role, World, WorldConfig, WorldKind};

fn main() -> anyhow::Result<()> {
    let data = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(testbed::default_data_dir);
    let mut w = World::from_config(&WorldConfig::new(WorldKind::Facts), &data)?;
    for d in w.corpus.docs.iter().take(4) {
        println!("--- doc {} {:?} {:?}\n{}", d.id, d.role, d.kind, d.text);
    }
    println!("--- qa\n{:#?}", w.qa[1]);
    println!("--- meta\n{:#?}", w.meta);
    let lens = w.corpus.estimated_lengths();
    let trained: usize = w.corpus.docs.iter().filter(|d| d.role != Role::HeldOut).map(|d| lens[d.id as usize]).sum();
    println!("estimated trained tokens per epoch: {trained}");
    let t = std::time::Instant::now();
    w.make_schedule(&lens)?;
    let s = w.schedule.as_ref().unwrap();
    println!(
        "schedule in {:?}: repeats {}, ledger last clean checkpoint {}",
        t.elapsed(),
        s.forget_repeats,
        w.ledger.as_ref().unwrap().last_clean_checkpoint
    );
    let fill: f64 = (0..s.len()).map(|i| s.tokens_in_step(i, &lens) as f64).sum::<f64>()
        / (s.len() * w.resolved.tokens_per_step()) as f64;
    println!("mean fill {fill:.4}; hash {}", w.hash);
    Ok(())
}
