//! `bench`: the unlearn-bench command line. It parses flags and dispatches; the work lives in
//! the library crates (see ARCHITECTURE.md).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

mod progress;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "bench",
    version,
    about = "unlearn-bench: measure machine unlearning for language models against an exact retrain oracle"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a sweep: build the world, run every method at every grid point, score every cell
    /// against the oracle, write one result file per cell, then write the report. A method of
    /// kind = "external" is a command the sweep runs (e.g. a PyTorch script; its output goes to
    /// RESULTS/logs/CELL_ID.log): see README, "Adding your own method, without Rust".
    Sweep {
        /// The sweep config (TOML), e.g. configs/tiny.toml.
        config: PathBuf,
        /// Redo cells that are already finished.
        #[arg(long)]
        force: bool,
        /// Run only shard I of N (0-based), e.g. --shard 0/4, for job arrays.
        #[arg(long, default_value = "0/1")]
        shard: runner::Shard,
        /// List the cells and whether they are done, stale (made under another config: the first
        /// differing field is named), failed or pending; run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Swap every model for a tiny random checkpoint of its family and cut the data to a few
        /// examples: exercises a real-model config end to end on CPU.
        #[arg(long)]
        smoke: bool,
        /// Data directory (else $UNLEARN_DATA_DIR, else the config's `data_dir`, else `data`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Keep unlearned checkpoints under RESULTS/models/ (deleted after scoring by default).
        #[arg(long)]
        keep_models: bool,
        /// Do not write the report after the sweep.
        #[arg(long)]
        no_report: bool,
    },
    /// Write the report of a results folder: index.html (one self-contained page: world quality,
    /// headline, claims, figures, appendix), index.md, tables.md/.tex, long.csv/.parquet and
    /// plots/. Reads RESULTS/report.json (the sweep's [report] table: utility gate, headline
    /// points) when there is one. A folder whose cells were made under different configurations
    /// (their fingerprints disagree) is refused.
    Report {
        /// A sweep's results folder (results/NAME) or a folder of several.
        results: PathBuf,
        /// Output folder (default reports/NAME).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Read the report options ([report]: utility gate, headline points) from this sweep
        /// config instead of RESULTS/report.json.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Evaluate any checkpoint folder on benchmark metrics that need no oracle
    /// (truthfulqa_mc1, truthfulqa_mc2, toxigen, toxigen_likelihood, toxigen_generation).
    Eval {
        #[arg(long)]
        model: PathBuf,
        /// A metric name; repeat for several.
        #[arg(long = "metric", required = true)]
        metrics: Vec<String>,
        /// Data directory (else $UNLEARN_DATA_DIR, else `data`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Use at most this many TruthfulQA questions / ToxiGen statements (evenly spaced).
        #[arg(long)]
        limit: Option<usize>,
        /// Prepend BOS to every context that lacks it (lm-eval's add_bos_token=True). Without it a
        /// context starts with BOS only when the tokenizer adds one by default, as in lm-eval 0.4.13.
        #[arg(long)]
        add_bos: bool,
        /// A Hugging Face RoBERTa sequence-classifier folder (config.json, model.safetensors,
        /// tokenizer.json), e.g. tomh/toxigen_roberta, for toxigen_generation (skipped without one).
        #[arg(long)]
        toxicity_classifier: Option<PathBuf>,
        /// Write the metrics (with per-example values) as JSON here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Import a llama2.c checkpoint (e.g. stories260K.bin + tok512.bin) as a Hugging Face folder.
    ImportLlama2c {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        tokenizer: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Score a text file: token count and mean per-token NLL (BOS prepended), as JSON.
    Score {
        /// A Hugging Face checkpoint folder (config.json, model.safetensors, tokenizer.json).
        #[arg(long)]
        model: PathBuf,
        /// The text file to score (scored whole, in rolling windows if longer than the context).
        #[arg(long)]
        text: PathBuf,
    },
    /// Greedy generation from a prompt (BOS prepended).
    Generate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value = "")]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
    },
    /// Dump per-position logits of [BOS] + tokens(text) as JSON (for scripts/check_against_transformers.py).
    Logits {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Model-state arithmetic: write Σ coef_i·θ_i, streaming tensor by tensor.
    Arith {
        /// Output checkpoint folder (config and tokenizer are copied from the first term).
        #[arg(long)]
        out: PathBuf,
        /// A term COEF=DIR; repeat for each term, e.g. --term 1=final --term -1=ft --term 1=base.
        #[arg(long = "term", required = true, allow_hyphen_values = true)]
        terms: Vec<String>,
        /// Replace an existing output folder.
        #[arg(long)]
        overwrite: bool,
    },
    /// Round-to-nearest weight quantization (quantize, then dequantize back to the input's
    /// dtype), streamed tensor by tensor: the quantization attack on an unlearned checkpoint.
    /// Quantizes the 2-D linear weights of the transformer blocks; embeddings, norms and (by
    /// default, as transformers' bitsandbytes loading does) lm_head stay as they are.
    Quantize {
        #[arg(long)]
        model: PathBuf,
        /// int8 (symmetric, per output channel) or int4 / int4:gN (asymmetric, groups of N
        /// inputs, default 128).
        #[arg(long)]
        scheme: String,
        #[arg(long)]
        out: PathBuf,
        /// Quantize lm_head too.
        #[arg(long)]
        lm_head: bool,
        /// Replace an existing output folder.
        #[arg(long)]
        overwrite: bool,
    },
    /// Build (or load from cache) the world of a sweep config, for each world seed: tokenizer,
    /// θ_D with checkpoints, exposure ledger, the retrain oracle (and the second oracle with
    /// `world.noise_floor`); measure and print its quality and fail when it misses the gate.
    World {
        /// A sweep config (its [world] and [[models]] sections are used).
        config: PathBuf,
        /// Override the sweep's data directory (else $UNLEARN_DATA_DIR, else the config's `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        lm::keep_freed_memory();
    }
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Sweep { config, force, shard, dry_run, smoke, data_dir, keep_models, no_report } => {
            let opts = runner::exec::ExecOptions { force, shard, dry_run, smoke, data_dir, keep_models };
            sweep(&config, &opts, !no_report && !dry_run)
        }
        Cmd::Report { results, out, config } => report(&results, out, config.as_deref()),
        Cmd::Eval { model, metrics, data_dir, limit, add_bos, toxicity_classifier, out } => {
            eval(&model, &metrics, data_dir, limit, add_bos, toxicity_classifier.as_deref(), &out)
        }
        Cmd::ImportLlama2c { model, tokenizer, out } => {
            let r = llama2c::import(&model, &tokenizer, &out)?;
            println!("imported {} parameters into {}", r.n_params, r.out.display());
            Ok(())
        }
        Cmd::Score { model, text } => score(&model, &text),
        Cmd::Generate { model, prompt, max_new_tokens } => generate(&model, &prompt, max_new_tokens),
        Cmd::Logits { model, text, out } => logits(&model, &text, &out),
        Cmd::Arith { out, terms, overwrite } => arith(&out, &terms, overwrite),
        Cmd::World { config, data_dir } => world(&config, data_dir),
        Cmd::Quantize { model, scheme, out, lm_head, overwrite } => quantize(&model, &scheme, &out, lm_head, overwrite),
    }
}

fn load_frozen(dir: &Path) -> Result<(lm::CausalLm, lm::Tok)> {
    let device = lm::default_device()?;
    let model = lm::CausalLm::load(dir, &device, false)?;
    let tok = lm::Tok::load(dir, &model.cfg)?;
    Ok((model, tok))
}

fn score(model_dir: &Path, text_file: &Path) -> Result<()> {
    let (model, tok) = load_frozen(model_dir)?;
    let text = std::fs::read_to_string(text_file).with_context(|| format!("{}: cannot read", text_file.display()))?;
    let scorer = lm::score::Scorer::new(&model, &tok);
    let lp = scorer.token_logprobs(&[text])?.remove(0);
    if lp.is_empty() {
        bail!("{}: the text has no tokens", text_file.display());
    }
    let sum: f64 = lp.iter().map(|&x| x as f64).sum();
    let mean_nll = -sum / lp.len() as f64;
    if !mean_nll.is_finite() {
        bail!(
            "{}: the mean NLL of {} is not finite ({mean_nll}); the model's weights or activations have NaN/inf",
            text_file.display(),
            model_dir.display()
        );
    }
    let out = serde_json::json!({
        "model": model_dir, "file": text_file, "tokens": lp.len(),
        "sum_logprob": sum, "mean_nll": mean_nll, "perplexity": mean_nll.exp(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn generate(model_dir: &Path, prompt: &str, max_new: usize) -> Result<()> {
    let (model, tok) = load_frozen(model_dir)?;
    let mut scorer = lm::score::Scorer::new(&model, &tok);
    scorer.add_bos = true;
    let out = scorer.generate_until(&[(prompt.to_string(), vec![], max_new)])?;
    println!("{prompt}{}", out[0]);
    Ok(())
}

fn logits(model_dir: &Path, text: &str, out: &Path) -> Result<()> {
    let (model, tok) = load_frozen(model_dir)?;
    let mut ids = vec![tok.prefix_token()];
    ids.extend(tok.encode(text)?);
    let n = ids.len();
    let input = candle_core::Tensor::from_vec(ids.clone(), (1, n), &model.device)?;
    let logits = model.forward(&input, None)?.squeeze(0)?.to_vec2::<f32>()?;
    let json = serde_json::json!({ "tokens": ids, "logits": logits });
    std::fs::write(out, serde_json::to_string(&json)?).with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}

fn arith(out: &Path, terms: &[String], overwrite: bool) -> Result<()> {
    let mut parsed = vec![];
    for t in terms {
        let (c, d) =
            t.split_once('=').with_context(|| format!("--term {t:?}: expected COEF=DIR, e.g. -1.5=checkpoints/ft"))?;
        let coef: f64 = c.trim().parse().with_context(|| format!("--term {t:?}: coefficient {c:?} is not a number"))?;
        parsed.push((coef, PathBuf::from(d)));
    }
    let opts = model_state::CombineOptions { overwrite, ..Default::default() };
    let report = model_state::combine(&parsed, out, &opts)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "out": out, "tensors": report.tensors, "bytes_read": report.bytes_read,
            "bytes_written": report.bytes_written, "seconds": report.seconds,
            "read_gb_per_s": report.bytes_read as f64 / report.seconds.max(1e-9) / 1e9,
            "peak_accumulator_bytes": report.peak_accumulator_bytes,
        }))?
    );
    Ok(())
}

fn quantize(model: &Path, scheme: &str, out: &Path, lm_head: bool, overwrite: bool) -> Result<()> {
    let scheme: model_state::Scheme = scheme.parse().context("--scheme")?;
    let opts = model_state::QuantizeOptions { overwrite, lm_head, ..Default::default() };
    let r = model_state::quantize_checkpoint_with(model, out, scheme, &opts)?;
    let quantized: Vec<serde_json::Value> =
        r.quantized().map(|t| serde_json::json!({ "tensor": t.name, "relative_error": t.relative_error() })).collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "out": out, "scheme": scheme.to_string(), "tensors_quantized": quantized.len(),
            "tensors": r.tensors.len(), "relative_error": r.relative_error(), "seconds": r.seconds,
            "per_tensor": quantized,
        }))?
    );
    Ok(())
}

fn world(config: &Path, data_dir: Option<PathBuf>) -> Result<()> {
    let sweep = runner::load_sweep(config)?;
    let data_dir = data_dir.unwrap_or_else(|| runner::resolve_data_dir(&sweep));
    let device = lm::default_device()?;
    let mut failed = Vec::new();
    for m in &sweep.models {
        let runner::ModelSource::Scratch(preset) = &m.source else {
            bail!(
                "{}: models.{}: `bench world` builds worlds for scratch models; this one is {:?}",
                config.display(),
                m.name,
                m.source
            );
        };
        let spec = testbed::train::ScratchModel::preset(preset)?;
        for &seed in &sweep.world_seeds {
            let progress = progress::Progress::new();
            let update = |s: &str, i, n, l| progress.update(s, i, n, l);
            let built = testbed::train::build_or_load(
                &sweep.world_config.for_seed(seed),
                &data_dir,
                &sweep.output_dir.join("worlds"),
                &spec,
                Some(&update),
            )?;
            let oracle_alt = if sweep.noise_floor {
                Some(testbed::train::build_or_load_noise_oracle(&built, Some(&update))?)
            } else {
                None
            };
            progress.finish();
            let quality = runner::quality::of_world(&built, &m.name, sweep.quality_gate, &data_dir, &device)?;
            if let Some(q) = &quality {
                eprintln!("{}", q.summary());
                if q.gate == "failed" {
                    failed.push(format!("model {}, world seed {seed}:\n  - {}", m.name, q.failures.join("\n  - ")));
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "world_seed": seed,
                    "dir": built.dir, "final_model": built.final_model, "oracle": built.oracle, "oracle_alt": oracle_alt,
                    "seconds_theta_d": built.info.seconds_theta_d, "seconds_oracle": built.info.seconds_oracle,
                    "tokens_per_second": built.info.tokens_per_second, "final_loss": built.info.final_loss,
                    "oracle_final_loss": built.info.oracle_final_loss,
                    "checkpoints": built.checkpoints,
                    "quality": quality,
                }))?
            );
        }
    }
    if !failed.is_empty() {
        bail!(
            "{}: {} world(s) failed the quality gate (set world.quality_gate = false to use them anyway):\n{}",
            config.display(),
            failed.len(),
            failed.join("\n")
        );
    }
    Ok(())
}

fn sweep(config: &Path, opts: &runner::exec::ExecOptions, write_report: bool) -> Result<()> {
    let sweep = runner::load_sweep(config)?;
    // the [report] table is checked before any work
    report::options::Options::from_json(&sweep.report, &format!("{} [report]", config.display()))?;
    let progress = progress::Progress::new();
    let summary = runner::exec::run(&sweep, opts, Some(&|s, i, n, l| progress.update(s, i, n, l)), &|msg| {
        progress.finish();
        eprintln!("{msg}");
    })?;
    progress.finish();
    if opts.dry_run {
        return Ok(());
    }
    let stale = if summary.stale > 0 { format!(" ({} of them stale, rerun)", summary.stale) } else { String::new() };
    eprintln!(
        "sweep {}: {} cell(s) run{stale}, {} already done, {} failed, in {:.0}s; results in {}",
        sweep.name,
        summary.ran,
        summary.skipped,
        summary.failed,
        summary.seconds,
        summary.results_dir.display()
    );
    if write_report {
        report(&summary.results_dir, None, None)?;
    }
    if summary.failed > 0 {
        bail!("{} cell(s) failed; their errors are in the result files and the report", summary.failed);
    }
    Ok(())
}

fn report(results: &Path, out: Option<PathBuf>, config: Option<&Path>) -> Result<()> {
    let name = results.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "report".into());
    let out = out.unwrap_or_else(|| PathBuf::from("reports").join(name));
    let s = match config {
        Some(c) => {
            let sweep = runner::load_sweep(c)?;
            let options = report::options::Options::from_json(&sweep.report, &format!("{} [report]", c.display()))?;
            report::build_with(results, &out, &options)?
        }
        None => report::build(results, &out)?,
    };
    for note in &s.notes {
        eprintln!("report: note: {note}");
    }
    eprintln!(
        "report: {} ok cell(s), {} failed, written to {}/index.html (and index.md)",
        s.cells_ok,
        s.cells_failed,
        out.display()
    );
    Ok(())
}

fn eval(
    model: &Path,
    metrics: &[String],
    data_dir: Option<PathBuf>,
    limit: Option<usize>,
    add_bos: bool,
    toxicity_classifier: Option<&Path>,
    out: &Path,
) -> Result<()> {
    let data_dir = data_dir.unwrap_or_else(testbed::default_data_dir);
    let limits = runner::suite::EvalLimits { max_truthfulqa: limit, max_toxigen: limit, ..Default::default() };
    let mut suite = runner::suite::EvalSuite::standalone(metrics, &limits, &data_dir, add_bos)?;
    if let Some(dir) = toxicity_classifier {
        let clf = roberta::RobertaClassifier::load(dir, None).context("--toxicity-classifier")?;
        suite.set_toxicity_classifier(std::sync::Arc::new(clf));
    }
    let device = lm::default_device()?;
    let records = suite.evaluate_standalone(model, &device)?;
    let json = serde_json::json!({ "model": model, "data_dir": data_dir, "metrics": records });
    std::fs::write(out, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    for (name, r) in &records {
        match &r.skipped {
            Some(why) => println!("{name}: skipped ({why})"),
            None => println!("{name}: {:.4}", r.value),
        }
    }
    Ok(())
}
