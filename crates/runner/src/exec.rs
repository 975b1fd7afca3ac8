//! Running a sweep: for each model and world seed, build (or load) the world, check its quality
//! (the gate of [`crate::quality`]: a `facts` world whose θ_D did not learn its facts, or whose
//! oracle knows them, stops the sweep with the numbers), compute the oracle's reference scores
//! once, then run every pending cell of this shard — the reference rows "final" (θ_D),
//! "retrain" (the oracle) and, with `world.noise_floor`, "retrain_alt" (a second oracle with
//! another data order), and each method at each grid point — evaluating the result and writing
//! the cell's JSON atomically as soon as it finishes. A failing cell is recorded with its error
//! chain and the sweep goes on; a rerun skips finished cells and reruns stale ones (results made
//! under another [`crate::fingerprint::Fingerprint`]). Before any work, every world seed's world
//! and every model source are checked ([`validate_worlds`], [`validate_models`]), and every
//! method is built at every grid point ([`validate_methods`]).

use crate::cells::{expand, format_value, Cell, REFERENCE_FINAL, REFERENCE_RETRAIN, REFERENCE_RETRAIN_ALT};
use crate::config::{resolve_data_dir, ModelSource, Sweep, TRAIN_KEYS};
use crate::fingerprint::{Fingerprint, SweepFingerprints};
use crate::shard::Shard;
use crate::store::{resolved_config, CellCheck, CellResult, CellState, CellStatus, Provenance, ResultStore, Timings};
use crate::suite::{EvalSuite, OracleRefs};
use anyhow::{bail, Context, Result};
use evals::toxigen::Classifier;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How to run a sweep.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Redo finished cells.
    pub force: bool,
    pub shard: Shard,
    /// List the cells and their state; run nothing.
    pub dry_run: bool,
    /// Swap every model for a tiny random checkpoint of the same family and cut the data to a
    /// few examples (exercises the whole path on CPU in minutes).
    pub smoke: bool,
    /// Overrides the sweep's data directory (and $UNLEARN_DATA_DIR).
    pub data_dir: Option<PathBuf>,
    /// Keep the unlearned checkpoints under `RESULTS/models/` (default: deleted after scoring).
    pub keep_models: bool,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            force: false,
            shard: Shard::ALL,
            dry_run: false,
            smoke: false,
            data_dir: None,
            keep_models: false,
        }
    }
}

/// A progress report: (stage, step, total, loss).
pub type Progress<'a> = &'a dyn Fn(&str, usize, usize, f64);

/// What a sweep run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub ran: usize,
    /// Of the cells run, those whose earlier result was stale.
    pub stale: usize,
    pub skipped: usize,
    pub failed: usize,
    pub results_dir: PathBuf,
    pub seconds: f64,
}

/// Run (this shard of) a sweep.
/// The `[report]` table of the sweep config, saved in the results folder by [`run`].
pub const REPORT_OPTIONS_FILE: &str = "report.json";

pub fn run(sweep: &Sweep, opts: &ExecOptions, progress: Option<Progress>, log: &dyn Fn(&str)) -> Result<Summary> {
    let start = std::time::Instant::now();
    let cells = expand(sweep);
    let mine: Vec<&Cell> = opts.shard.select(&cells);
    let store = ResultStore::for_sweep(sweep);
    let data_dir = opts.data_dir.clone().unwrap_or_else(|| resolve_data_dir(sweep));
    validate_methods(sweep)?;
    let worlds = validate_worlds(sweep, opts, &data_dir)?;
    validate_models(sweep, opts)?;
    let fingerprints = SweepFingerprints::new(sweep, opts.smoke, &worlds)?;
    let mut planned: Vec<(&Cell, Fingerprint, CellCheck)> = Vec::new();
    for &cell in &mine {
        let fp = fingerprints.of(cell)?;
        let check = store.check(cell, &fp, &resolved_config(sweep, cell)?)?;
        planned.push((cell, fp, check));
    }
    let known: std::collections::BTreeSet<&str> = cells.iter().map(|c| c.id.as_str()).collect();
    let orphans: Vec<String> = store.result_ids()?.into_iter().filter(|id| !known.contains(id.as_str())).collect();
    if let Some(first) = orphans.first() {
        log(&format!(
            "{} result file(s) in {} belong to no cell of this config (e.g. {first}.json); the report will include \
             them: delete them if they are left from an earlier config",
            orphans.len(),
            store.cells_dir().display()
        ));
    }
    // the memory plan, before any work: printed with --dry-run, enforced otherwise
    let mem_rows = crate::memplan::plan(sweep, opts)?;
    let mem_avail = crate::memplan::available(sweep);
    if opts.dry_run {
        let states: Vec<(&Cell, CellCheck)> = planned.iter().map(|(c, _, k)| (*c, k.clone())).collect();
        log(&crate::store::format_dry_run(&states));
        log(&crate::memplan::format(&mem_rows, mem_avail));
        if let Err(e) = crate::memplan::check(&mem_rows, mem_avail) {
            log(&format!("warning: {e:#}"));
        }
        return Ok(Summary { results_dir: store.dir().to_path_buf(), ..Default::default() });
    }
    if planned.iter().any(|(c, _, k)| !c.is_reference() && k.needs_run(opts.force)) {
        crate::memplan::check(&mem_rows, mem_avail).with_context(|| format!("{}", sweep.source.display()))?;
    }
    let stale: Vec<&(&Cell, Fingerprint, CellCheck)> =
        planned.iter().filter(|(_, _, k)| k.state == CellState::Stale).collect();
    if !stale.is_empty() {
        let mut why: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, _, k) in &stale {
            *why.entry(k.change.as_ref().map_or("?", |c| c.field.as_str())).or_default() += 1;
        }
        let why: Vec<String> = why.iter().map(|(field, n)| format!("{field} {n}")).collect();
        log(&format!(
            "{} stale cell(s), made under another config, will be rerun and overwritten (first differing field: {})",
            stale.len(),
            why.join(", ")
        ));
    }
    // The report's options ([report] of the config) beside the results, for `bench report`.
    let report_json = serde_json::to_vec_pretty(&sweep.report).context("[report] as JSON")?;
    crate::store::write_atomic(&store.dir().join(REPORT_OPTIONS_FILE), &report_json)?;
    let removed = store.remove_stale_temp_files()?;
    if removed > 0 {
        log(&format!("removed {removed} half-written result file(s) of an interrupted run"));
    }
    let mut summary = Summary { results_dir: store.dir().to_path_buf(), ..Default::default() };
    let provenance = crate::store::detect_provenance(env!("CARGO_PKG_VERSION"), Path::new("."));
    let device = lm::default_device()?;
    let classifier = toxicity_classifier(sweep, opts, log)?;
    let judge = lm_judge(sweep, opts, &device, log)?;
    for model in &sweep.models {
        for &world_seed in &sweep.world_seeds {
            let here = |c: &Cell| c.model == model.name && c.world_seed == world_seed;
            let todo: Vec<&(&Cell, Fingerprint, CellCheck)> =
                planned.iter().filter(|(c, _, k)| here(c) && k.needs_run(opts.force)).collect();
            summary.skipped += planned.iter().filter(|(c, _, _)| here(c)).count() - todo.len();
            let what = format!("model {}, world seed {world_seed}", model.name);
            if todo.is_empty() {
                log(&format!("{what}: every cell of this shard is done"));
                continue;
            }
            log(&format!("{what}: {} cell(s) to run", todo.len()));
            let needs_alt = todo.iter().any(|(c, _, _)| c.method == REFERENCE_RETRAIN_ALT && c.is_reference());
            let ctx = match prepare_model(
                sweep,
                model,
                world_seed,
                needs_alt,
                opts,
                &data_dir,
                &device,
                classifier.as_ref(),
                judge.as_ref(),
                progress,
                log,
            ) {
                Ok(c) => c,
                Err(e) if e.is::<QualityGateFailed>() => return Err(e),
                Err(e) => {
                    // Every cell of this world fails with the same error; record it and go on.
                    for (cell, fp, _) in &todo {
                        let outcome = Err(anyhow::anyhow!("{e:#}"));
                        record(
                            &store,
                            sweep,
                            cell,
                            fp,
                            outcome,
                            &provenance,
                            crate::store::now_unix(),
                            BTreeMap::new(),
                        )?;
                        summary.failed += 1;
                    }
                    log(&format!("{what}: cannot prepare: {e:#}"));
                    continue;
                }
            };
            for (i, (cell, fp, check)) in todo.iter().enumerate() {
                match &check.change {
                    Some(change) => log(&format!("[{}/{}] {} (stale: {change})", i + 1, todo.len(), cell.key)),
                    None => log(&format!("[{}/{}] {}", i + 1, todo.len(), cell.key)),
                }
                let t0 = crate::store::now_unix();
                let mut stages = BTreeMap::new();
                let mut external_run = None;
                let outcome = run_cell(sweep, cell, &ctx, opts, &device, progress, &mut stages, &mut external_run);
                match &outcome {
                    Ok(_) => {
                        summary.ran += 1;
                        summary.stale += usize::from(check.state == CellState::Stale);
                    }
                    Err(e) => {
                        summary.failed += 1;
                        log(&format!("cell {} failed: {e:#}", cell.id));
                    }
                }
                // an external method's command, exit status, wall time and script hashes
                let provenance = Provenance { external: external_run, ..provenance.clone() };
                record(&store, sweep, cell, fp, outcome, &provenance, t0, stages)?;
            }
        }
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// A method cell's parameters split in two: the method's own (returned) build the method; the
/// [train] keys (lr, epochs, ...) only the one trainer configuration of the cell
/// ([`cell_train_config`]), which the method trains with (`unlearn::Context::train`).
fn own_params(params: &BTreeMap<String, toml::Value>) -> toml::Table {
    params.iter().filter(|(k, _)| !TRAIN_KEYS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Builds every built-in method at every grid point of the sweep, as its cells will (without
/// running it), so that a value the method refuses (α < 0, an unknown variant, a malformed
/// checkpoint selector) fails at once with the config file, the method and the point, before
/// any world is built or model trained. A `hub:` checkpoint stands for the folder it resolves to
/// at run time.
pub fn validate_methods(sweep: &Sweep) -> Result<()> {
    let file = sweep.source.display();
    let mut seen = std::collections::BTreeSet::new();
    for cell in expand(sweep) {
        if cell.is_reference() || cell.kind == crate::external::KIND {
            continue;
        }
        let mut params = own_params(&cell.params);
        if !seen.insert((cell.method.clone(), params.to_string())) {
            continue;
        }
        if let Some(toml::Value::String(c)) = params.get("checkpoint") {
            if let Some(spec) = c.strip_prefix("hub:") {
                params.insert("checkpoint".into(), toml::Value::String(format!("path:{spec}")));
            }
        }
        if let Err(e) = methods::build(&cell.kind, &params) {
            let point: Vec<String> = cell.params.iter().map(|(k, v)| format!("{k}={}", format_value(v))).collect();
            bail!("{file}: methods.{} ({}): {e:#}", cell.method, point.join(", "));
        }
    }
    Ok(())
}

/// Resolves the world of every world seed (each field checked against the run and the data
/// files) and checks MSA's checkpoint selectors (`checkpoint`, or each `ensemble` entry, at
/// every grid point, as the method parses them) against the checkpoints the world will have, so
/// that a config that cannot run fails at once with one message, before any training. Returns
/// the resolved worlds by world seed (smoke-shrunk with `--smoke`), for the cells' fingerprints.
pub fn validate_worlds(
    sweep: &Sweep,
    opts: &ExecOptions,
    data_dir: &Path,
) -> Result<BTreeMap<u64, testbed::ResolvedWorld>> {
    let file = sweep.source.display();
    let scratch = sweep.models.iter().any(|m| matches!(m.source, ModelSource::Scratch(_)));
    // every MSA grid point as the method parses it (checkpoint or ensemble selectors, typed)
    let mut msa_points: Vec<(String, msa::Msa)> = vec![];
    let mut seen = std::collections::BTreeSet::new();
    for cell in expand(sweep).into_iter().filter(|c| c.kind == msa::Msa::NAME) {
        let params = own_params(&cell.params);
        if !seen.insert((cell.method.clone(), params.to_string())) {
            continue;
        }
        if let Some(toml::Value::String(c)) = params.get("checkpoint") {
            if let Some(spec) = c.strip_prefix("hub:") {
                let key = format!("{file}: methods.{}.checkpoint", cell.method);
                parse_hub_checkpoint(spec).map_err(|e| anyhow::anyhow!("{key}: {e:#}"))?;
                continue; // a model of its own, not a checkpoint of the world
            }
        }
        let msa = msa::Msa::from_params(&params).with_context(|| format!("{file}: methods.{}", cell.method))?;
        msa_points.push((cell.method.clone(), msa));
    }
    let mut worlds = BTreeMap::new();
    for &seed in &sweep.world_seeds {
        let mut wcfg = sweep.world_config.for_seed(seed);
        if opts.smoke {
            smoke_world(&mut wcfg, sweep)?;
        }
        let resolved = wcfg.resolve(data_dir).map_err(|e| anyhow::anyhow!("{file}: {e:#}"))?;
        let resolved = worlds.entry(seed).or_insert(resolved);
        if !scratch || resolved.kind.fine_tunes_base() {
            continue;
        }
        let last_clean = resolved.last_clean_checkpoint();
        let steps = &resolved.checkpoint_steps;
        for (method, msa) in &msa_points {
            let field = if msa.params.ensemble.is_some() { "ensemble" } else { "checkpoint" };
            let key = format!("{file}: methods.{method}.{field}");
            for (text, base) in &msa.bases {
                match base {
                    msa::BasePoint::LatestClean if last_clean == 0 => bail!(
                        "{key}: \"latest-clean\" is the initialisation: the exposure window starts at step {} \
                         (world.exposure), so no trained checkpoint is clean; start the window later",
                        resolved.window_start
                    ),
                    msa::BasePoint::Distance(k) if *k > last_clean => bail!(
                        "{key}: \"{text}\" asks for the checkpoint {k} before the latest clean one, but the world \
                         has clean checkpoints 0..={last_clean} (steps {:?}; the window starts at step {}): use \
                         distance:0..={last_clean}",
                        &steps[..=last_clean],
                        resolved.window_start
                    ),
                    msa::BasePoint::Step(n) if !steps.contains(n) => bail!(
                        "{key}: \"{text}\": the world has no checkpoint at step {n} (checkpoints at steps {steps:?})"
                    ),
                    msa::BasePoint::Step(n) if *n > resolved.window_start && !msa.params.allow_unclean => bail!(
                        "{key}: \"{text}\": the checkpoint at step {n} has seen forget documents (the window starts \
                         at step {}); choose a clean one or set allow_unclean = true",
                        resolved.window_start
                    ),
                    _ => {}
                }
            }
        }
    }
    Ok(worlds)
}

/// Checks every model source before any work: a scratch preset must exist; a local `path` must
/// be a Hugging Face folder with a readable `config.json` and safetensors weights (with
/// `--smoke` the folder is not used, but its family must be known); a hub id and revision must
/// be well-formed, and offline (`HF_HUB_OFFLINE=1`) the model must be complete in the Hugging
/// Face cache (online, the network is not consulted here: a missing model is downloaded when
/// its world is prepared). Errors name the config
/// file and the field, e.g. `configs/x.toml: models[0].path: ...`.
pub fn validate_models(sweep: &Sweep, opts: &ExecOptions) -> Result<()> {
    let file = sweep.source.display();
    for (i, m) in sweep.models.iter().enumerate() {
        let at = |field: &str| format!("{file}: models[{i}].{field} (model `{}`)", m.name);
        if opts.smoke && !matches!(m.source, ModelSource::Scratch(_)) {
            if testbed::smoke::family_of(&model_label(&m.source, &m.name)).is_none() {
                let field = if matches!(m.source, ModelSource::Hub { .. }) { "hub" } else { "path" };
                bail!(
                    "{}: --smoke cannot tell the architecture family (llama, qwen, olmo) from the name or source",
                    at(field)
                );
            }
            continue;
        }
        match &m.source {
            ModelSource::Scratch(preset) => {
                testbed::train::ScratchModel::preset(preset)
                    .map_err(|e| anyhow::anyhow!("{}: {e:#}", at("scratch")))?;
            }
            ModelSource::Path(p) => {
                let shown = p.display();
                if !p.exists() {
                    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
                    bail!(
                        "{}: {shown} does not exist (a relative path is read from the current folder, {cwd})",
                        at("path")
                    );
                }
                if !lm::checkpoint::is_complete(p) {
                    bail!(
                        "{}: {shown} is not a Hugging Face checkpoint folder (config.json and model.safetensors or \
                         model.safetensors.index.json)",
                        at("path")
                    );
                }
                lm::LmConfig::from_file(&p.join("config.json"))
                    .map_err(|e| anyhow::anyhow!("{}: {e:#}", at("path")))?;
            }
            ModelSource::Hub { id, revision } => {
                hub::check_repo_id(id).map_err(|e| anyhow::anyhow!("{}: {e:#}", at("hub")))?;
                if let Some(rev) = revision {
                    hub::check_revision(rev).map_err(|e| anyhow::anyhow!("{}: {e:#}", at("revision")))?;
                }
                // Offline (HF_HUB_OFFLINE=1), a model that is not complete in the cache can never
                // be had: say so now. Online it is downloaded when its world is prepared.
                let env = hub::ResolveOptions::from_env();
                if env.offline == Some(true) {
                    let opts = hub::ResolveOptions { progress: false, ..env };
                    hub::resolve(id, revision.as_deref(), &opts)
                        .map_err(|e| anyhow::anyhow!("{}: {e:#}", at("hub")))?;
                }
            }
        }
    }
    Ok(())
}

/// A world that missed the quality thresholds (with the gate on): stops the sweep.
#[derive(Debug)]
pub struct QualityGateFailed(pub String);

impl std::fmt::Display for QualityGateFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QualityGateFailed {}

/// Everything shared by the cells of one model and world seed.
struct ModelContext {
    world: testbed::train::BuiltWorld,
    /// The second oracle (another data order), when a "retrain_alt" cell is to run.
    oracle_alt: Option<PathBuf>,
    suite: EvalSuite,
    oracle_refs: OracleRefs,
    forget: Vec<lm::train::Example>,
    retain: Vec<lm::train::Example>,
    /// The world's held-out documents, tokenised like `forget` (MSA's calibrated α).
    held_out: Vec<lm::train::Example>,
    pad: u32,
    cache: PathBuf,
    models_dir: PathBuf,
    /// In smoke mode for real models: (family, tokenizer texts, folder) to make stand-ins for
    /// `checkpoint = "path:..."` folders that only exist on a machine with the real model.
    smoke_family: Option<(&'static str, Vec<String>, PathBuf)>,
}

#[allow(clippy::too_many_arguments)]
fn prepare_model(
    sweep: &Sweep,
    model: &crate::config::ModelSpec,
    world_seed: u64,
    needs_alt: bool,
    opts: &ExecOptions,
    data_dir: &Path,
    device: &candle_core::Device,
    classifier: Option<&Arc<dyn Classifier>>,
    judge: Option<&Arc<crate::judge::LmJudge>>,
    progress: Option<Progress>,
    log: &dyn Fn(&str),
) -> Result<ModelContext> {
    let mut wcfg = sweep.world_config.for_seed(world_seed);
    if opts.smoke {
        smoke_world(&mut wcfg, sweep)?;
    }
    let worlds = sweep.output_dir.join("worlds");
    let t = std::time::Instant::now();
    let mut smoke_family = None;
    let world = match &model.source {
        ModelSource::Scratch(preset) => {
            let preset = if opts.smoke { "micro" } else { preset.as_str() };
            let spec = testbed::train::ScratchModel::preset(preset)
                .with_context(|| format!("models.{}: scratch", model.name))?;
            testbed::train::build_or_load(&wcfg, data_dir, &worlds, &spec, progress)?
        }
        ModelSource::Path(_) | ModelSource::Hub { .. } => {
            let base = if opts.smoke {
                let family =
                    testbed::smoke::family_of(&model_label(&model.source, &model.name)).with_context(|| {
                        format!(
                            "models.{}: cannot tell the architecture family (llama, qwen, olmo) for --smoke",
                            model.name
                        )
                    })?;
                let texts = vec!["Question: Where was the author born?\nAnswer: Orlen".to_string()];
                let dir = worlds.join(format!("smoke-base-{}-{family}", model.name));
                let base = testbed::smoke::tiny_like(family, &dir, 0, &texts)?;
                smoke_family = Some((family, texts, worlds.join(format!("smoke-standins-{}", model.name))));
                base
            } else {
                locate_model(&model.source, &model.name)?
            };
            let mut spec = testbed::finetune::FinetuneSpec::default_for(&base, opts.smoke);
            if let (false, Some(o)) = (opts.smoke, &wcfg.finetune) {
                spec = spec.with_overrides(o);
            }
            testbed::finetune::build_or_load_finetune(&wcfg, data_dir, &worlds, &base, &spec, progress)?
        }
    };
    log(&format!("world ready in {:.1}s: {}", t.elapsed().as_secs_f64(), world.dir.display()));
    let results_dir = ResultStore::for_sweep(sweep).dir().to_path_buf();
    check_quality(sweep, model, &world, opts, data_dir, device, &results_dir, log)?;
    let oracle_alt = if needs_alt {
        let t = std::time::Instant::now();
        let dir = testbed::train::build_or_load_noise_oracle(&world, progress)?;
        log(&format!("second oracle (noise floor) ready in {:.1}s: {}", t.elapsed().as_secs_f64(), dir.display()));
        Some(dir)
    } else {
        None
    };
    let limits = sweep.limits(opts.smoke);
    let mut suite = EvalSuite::from_world(&world.world, &sweep.metrics, &limits, data_dir, &world.final_model)?;
    if let Some(c) = classifier {
        suite.set_toxicity_classifier(c.clone());
    }
    if let Some(j) = judge {
        suite.set_judge(j.clone());
    } else if opts.smoke && wants_lm_judge(sweep) {
        // --smoke: θ_D's tiny stand-in judges, so the path runs (one per world: it is θ_D)
        suite.set_judge(Arc::new(load_lm_judge(&world.final_model, device, log)?));
    }
    if sweep.metrics.iter().any(|m| m == "mia_reference_auc") {
        // the reference model of the reference MIA: θ_0 = the latest clean checkpoint
        if let Some(c) = world.checkpoints.iter().rev().find(|c| c.clean) {
            suite.set_mia_reference(&c.path, &format!("latest clean checkpoint, step {}", c.step))?;
        }
    }
    let cache = results_dir.join("cache").join(&model.name).join(short(&world.dir));
    std::fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    let refs_path = cache.join("oracle_refs.json");
    let cached: Option<OracleRefs> =
        std::fs::read_to_string(&refs_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let oracle_refs = match cached.filter(|r| suite.refs_are_current(r)) {
        Some(r) => r,
        None => {
            let r = suite.oracle_pass(&world.oracle, device)?;
            crate::store::write_atomic(&refs_path, serde_json::to_string(&r)?.as_bytes())?;
            r
        }
    };
    let MethodData { forget, retain, held_out, pad } = method_data(&world, sweep.train.max_seq_len as usize)?;
    let models_dir = results_dir.join("models");
    Ok(ModelContext {
        world,
        oracle_alt,
        suite,
        oracle_refs,
        forget,
        retain,
        held_out,
        pad,
        cache,
        models_dir,
        smoke_family,
    })
}

/// Measures (or reads the cached) world quality, prints it, copies it into
/// `RESULTS/world_quality/MODEL-worldSEED.json` for the report, and stops the sweep with
/// [`QualityGateFailed`] when the gate is on and a threshold is missed. `--smoke` worlds are
/// far too small to pass: their gate is off.
#[allow(clippy::too_many_arguments)]
fn check_quality(
    sweep: &Sweep,
    model: &crate::config::ModelSpec,
    world: &testbed::train::BuiltWorld,
    opts: &ExecOptions,
    data_dir: &Path,
    device: &candle_core::Device,
    results_dir: &Path,
    log: &dyn Fn(&str),
) -> Result<()> {
    let gate_on = sweep.quality_gate && !opts.smoke;
    let Some(q) = crate::quality::of_world(world, &model.name, gate_on, data_dir, device)? else {
        return Ok(());
    };
    log(&q.summary());
    let dir = results_dir.join("world_quality");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join(format!("{}-world{}.json", model.name, q.world_seed));
    crate::store::write_atomic(&file, serde_json::to_string_pretty(&q)?.as_bytes())?;
    if q.gate == "failed" {
        return Err(QualityGateFailed(format!(
            "{}: the world of model {} with world seed {} failed the quality gate ({}):\n  - {}\n\
             Train it longer or bigger ([world] steps, batch_size), or set world.quality_gate = false to run \
             anyway (the report then carries a warning)",
            sweep.source.display(),
            model.name,
            q.world_seed,
            world.dir.display(),
            q.failures.join("\n  - ")
        ))
        .into());
    }
    Ok(())
}

/// The toxicity classifier for `toxigen_generation`, loaded once per run when that metric is
/// requested: the config's `toxicity_classifier`, or with `--smoke` a tiny random RoBERTa
/// written under `OUTPUT_DIR/worlds/` (so the whole path runs on CPU). `None` when the metric
/// is not requested, or no classifier is configured (the metric is then skipped).
fn toxicity_classifier(sweep: &Sweep, opts: &ExecOptions, log: &dyn Fn(&str)) -> Result<Option<Arc<dyn Classifier>>> {
    if !evals::registry::needs_classifier(&sweep.metrics) {
        return Ok(None);
    }
    let dir = if opts.smoke {
        let dir = sweep.output_dir.join("worlds").join("smoke-toxicity-classifier");
        roberta::testing::write_tiny_roberta(&dir, 0)?;
        dir
    } else {
        match &sweep.toxicity_classifier {
            Some(d) => d.clone(),
            None => {
                log("toxigen_generation: no toxicity_classifier configured; the metric will be skipped");
                return Ok(None);
            }
        }
    };
    let clf = roberta::RobertaClassifier::load(&dir, None)
        .with_context(|| format!("{}: toxicity_classifier", sweep.source.display()))?;
    log(&format!("toxicity classifier: {} (toxic class {:?})", dir.display(), clf.labels[clf.toxic_index]));
    Ok(Some(Arc::new(clf)))
}

/// Whether the judged accuracies (`acc_*`) are requested with `[eval] judge` set.
fn wants_lm_judge(sweep: &Sweep) -> bool {
    sweep.judge.is_some() && sweep.metrics.iter().any(|m| m.starts_with("acc_"))
}

/// The judged accuracies' LM judge, loaded once per run (not once per world: a judge may be
/// a large model) when [`wants_lm_judge`]; with `--smoke`, `None` (each world's θ_D stand-in
/// judges instead, [`prepare_model`]).
fn lm_judge(
    sweep: &Sweep,
    opts: &ExecOptions,
    device: &candle_core::Device,
    log: &dyn Fn(&str),
) -> Result<Option<Arc<crate::judge::LmJudge>>> {
    match &sweep.judge {
        Some(dir) if !opts.smoke && wants_lm_judge(sweep) => Ok(Some(Arc::new(load_lm_judge(dir, device, log)?))),
        _ => Ok(None),
    }
}

fn load_lm_judge(dir: &Path, device: &candle_core::Device, log: &dyn Fn(&str)) -> Result<crate::judge::LmJudge> {
    let scorer = crate::scoring::LmScorer::load(dir, device, false)
        .with_context(|| format!("[eval] judge: loading the judge model {}", dir.display()))?;
    let label = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "judge".into());
    log(&format!("judged accuracies: LM judge {}", dir.display()));
    Ok(crate::judge::LmJudge::new(scorer, &label))
}

fn short(p: &Path) -> String {
    p.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "world".into())
}

pub(crate) fn model_label(src: &ModelSource, name: &str) -> String {
    match src {
        ModelSource::Path(p) => format!("{name} {}", p.display()),
        ModelSource::Hub { id, .. } => format!("{name} {id}"),
        ModelSource::Scratch(s) => format!("{name} {s}"),
    }
}

/// A local folder for a model: its path, or for a hub id the Hugging Face cache snapshot.
fn locate_model(src: &ModelSource, name: &str) -> Result<PathBuf> {
    match src {
        ModelSource::Path(p) => {
            if lm::checkpoint::is_complete(p) {
                Ok(p.clone())
            } else {
                bail!(
                    "models.{name}: {} is not a Hugging Face checkpoint folder (config.json + model.safetensors)",
                    p.display()
                )
            }
        }
        ModelSource::Hub { id, revision } => hub::resolve(id, revision.as_deref(), &hub::ResolveOptions::from_env())
            .with_context(|| format!("models.{name}: hub model {id}")),
        ModelSource::Scratch(_) => unreachable!("scratch models are built by the testbed"),
    }
}

/// `hub:ORG/NAME[@REVISION]` (an MSA `checkpoint`): the hub id and the revision (a branch, tag
/// or commit, e.g. an OLMo-2 pretraining checkpoint `stage1-step…`).
pub(crate) fn parse_hub_checkpoint(spec: &str) -> Result<(&str, Option<&str>)> {
    let (id, revision) = match spec.split_once('@') {
        Some((id, rev)) if !rev.is_empty() => (id, Some(rev)),
        Some(_) => bail!(
            "checkpoint = \"hub:{spec}\": empty revision after '@' (expected hub:ORG/NAME or hub:ORG/NAME@REVISION)"
        ),
        None => (spec, None),
    };
    if id.split('/').count() != 2 || id.split('/').any(str::is_empty) {
        bail!("checkpoint = \"hub:{spec}\": expected hub:ORG/NAME or hub:ORG/NAME@REVISION");
    }
    Ok((id, revision))
}

/// The local folder of a `hub:` checkpoint (downloaded into the Hugging Face cache when the
/// network allows, else found there).
pub(crate) fn resolve_hub_checkpoint(spec: &str) -> Result<PathBuf> {
    let (id, revision) = parse_hub_checkpoint(spec)?;
    hub::resolve(id, revision, &hub::ResolveOptions::from_env())
}

/// Shrinks a world for `--smoke`; a `tofu`, `muse` or `restor` world reads the compiled-in
/// fixture (written under the sweep's `worlds/smoke-data/`) instead of the data directory.
fn smoke_world(w: &mut testbed::WorldConfig, sweep: &Sweep) -> Result<()> {
    if matches!(w.kind, testbed::WorldKind::Tofu | testbed::WorldKind::Muse | testbed::WorldKind::Restor) {
        let dir = sweep.output_dir.join("worlds").join("smoke-data");
        match w.kind {
            testbed::WorldKind::Tofu => testbed::tofu::write_fixture(&dir)?,
            testbed::WorldKind::Restor => testbed::restor::write_fixture(&dir)?,
            _ => testbed::muse::write_fixture(&dir)?,
        }
        w.data_dir = Some(dir);
    }
    if matches!(w.kind, testbed::WorldKind::Facts | testbed::WorldKind::Finetune) {
        w.n_entities = Some(w.n_entities.unwrap_or(200).min(20));
    }
    w.steps = Some(w.steps.unwrap_or(750).min(24));
    w.batch_size = Some(w.batch_size.unwrap_or(32).min(8));
    w.seq_len = Some(w.seq_len.unwrap_or(128).min(128));
    if w.checkpoint_every.is_none() {
        w.checkpoints = Some(w.checkpoints.unwrap_or(8).min(8));
    }
    Ok(())
}

/// The forget set (every forget document, [BOS] text [EOS], all tokens; in a chat world the
/// pairs in the chat template with the loss on the answer, as θ_D trained on them) and the
/// retain set (retain documents) as the methods train on them, tokenised with θ_D's tokenizer.
/// What methods train on: the forget and retain sets, the held-out documents (same
/// tokenisation), and the padding id.
struct MethodData {
    forget: Vec<lm::train::Example>,
    retain: Vec<lm::train::Example>,
    held_out: Vec<lm::train::Example>,
    pad: u32,
}

/// How many tokens of a document the methods train on.
fn seq_cut(max_seq_len: usize, max_position_embeddings: usize) -> usize {
    max_seq_len.min(max_position_embeddings)
}

/// Sequences are cut to min(`[train] max_seq_len`, the model's `max_position_embeddings`)
/// tokens.
fn method_data(world: &testbed::train::BuiltWorld, max_seq_len: usize) -> Result<MethodData> {
    let cfg = lm::LmConfig::from_file(&world.final_model.join("config.json"))?;
    let cut = seq_cut(max_seq_len, cfg.max_position_embeddings);
    let tok = lm::Tok::load(&world.final_model, &cfg)?;
    let enc = |ids: &[u32]| -> Result<Vec<lm::train::Example>> {
        ids.iter()
            .map(|&id| {
                let d = world.world.corpus.get(id).with_context(|| format!("document {id} missing"))?;
                let mut t = Vec::new();
                if let Some(b) = tok.bos {
                    t.push(b);
                }
                t.extend(tok.encode(&d.text)?);
                if let Some(e) = tok.eos.first() {
                    t.push(*e);
                }
                t.truncate(cut);
                Ok(lm::train::Example::full(t))
            })
            .collect()
    };
    let (forget, retain) = match testbed::finetune::ChatQa::for_world(&world.world, &world.final_model)? {
        // A chat world: the methods train on the pairs as θ_D did, in the chat template with
        // the loss on the answer (MSA's official code fine-tunes θ_0 on the forget set so).
        Some(chat) => {
            let examples = testbed::finetune::finetune_examples(&world.world, &tok, cut, Some(&chat))?;
            let pick = |ids: &[u32]| -> Result<Vec<lm::train::Example>> {
                ids.iter()
                    .map(|&id| {
                        examples[id as usize].clone().with_context(|| format!("document {id} is not trained on"))
                    })
                    .collect()
            };
            (pick(&world.world.splits.forget_docs)?, pick(&world.world.splits.retain_docs)?)
        }
        None => (enc(&world.world.splits.forget_docs)?, enc(&world.world.splits.retain_docs)?),
    };
    let held_out = enc(&world.world.splits.held_out_docs)?;
    if forget.is_empty() {
        bail!("the world's forget set is empty");
    }
    Ok(MethodData { forget, retain, held_out, pad: tok.pad })
}

/// The trainer settings a method cell runs with: [train] with the cell's overrides (its own
/// `lr`, `epochs`, ...). The warm-up is `warmup_epochs` of the epochs the method runs (its own
/// `epochs` when its table sets one), not of [train].epochs (the warm-up fix of issue 18).
pub(crate) fn method_train_config(
    sweep: &Sweep,
    params: &BTreeMap<String, toml::Value>,
    seed: u64,
) -> Result<lm::train::TrainConfig> {
    let train_params: BTreeMap<String, toml::Value> =
        params.iter().filter(|(k, _)| TRAIN_KEYS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    let tc = sweep.train.with_overrides(&train_params)?;
    Ok(lm::train::TrainConfig {
        lr: tc.lr,
        weight_decay: tc.weight_decay,
        warmup_ratio: (tc.warmup_epochs / tc.epochs.max(1) as f64).min(1.0),
        max_grad_norm: tc.grad_clip,
        batch_size: tc.batch_size as usize,
        epochs: tc.epochs as usize,
        max_steps: tc.max_steps.map(|m| m as usize),
        seed,
        precision: tc.precision.unwrap_or_default(),
        activation_checkpointing: tc.activation_checkpointing,
        lora: tc.lora.clone(),
        ..Default::default()
    })
}

/// [`method_train_config`] for a cell of `model`: the precision follows the model's `dtype`
/// when `[train] precision` is unset ([`crate::config::TrainTable::precision_for`]).
pub(crate) fn cell_train_config(
    sweep: &Sweep,
    model: &str,
    params: &BTreeMap<String, toml::Value>,
    seed: u64,
) -> Result<lm::train::TrainConfig> {
    let mut tc = method_train_config(sweep, params, seed)?;
    let spec =
        sweep.models.iter().find(|m| m.name == model).with_context(|| format!("cell of unknown model {model:?}"))?;
    tc.precision = sweep.train.precision_for(spec.dtype);
    Ok(tc)
}

/// What a cell that ran produced: its metric records and its loss curves.
type CellOutcome = (BTreeMap<String, crate::store::MetricRecord>, BTreeMap<String, Vec<(u64, f64)>>);

#[allow(clippy::too_many_arguments)] // each is a distinct input of the one job; a struct would only rename them
fn run_cell(
    sweep: &Sweep,
    cell: &Cell,
    ctx: &ModelContext,
    opts: &ExecOptions,
    device: &candle_core::Device,
    progress: Option<Progress>,
    stages: &mut BTreeMap<String, f64>,
    external_run: &mut Option<crate::external::ExternalRun>,
) -> Result<CellOutcome> {
    let mut curves = BTreeMap::new();
    let t = std::time::Instant::now();
    let (model_dir, temp) = match cell.method.as_str() {
        REFERENCE_FINAL if cell.kind == crate::cells::REFERENCE_KIND => (ctx.world.final_model.clone(), false),
        REFERENCE_RETRAIN if cell.kind == crate::cells::REFERENCE_KIND => (ctx.world.oracle.clone(), false),
        REFERENCE_RETRAIN_ALT if cell.kind == crate::cells::REFERENCE_KIND => {
            (ctx.oracle_alt.clone().context("the second oracle was not built")?, false)
        }
        // a command the harness runs (crate::external): stage inputs, run, validate its folder
        _ if cell.kind == crate::external::KIND => {
            let spec = sweep.methods.get(&cell.method).and_then(|m| m.external.as_ref());
            let spec = spec.with_context(|| format!("methods.{}: no command", cell.method))?;
            let train = sweep.train.with_overrides(&cell.params)?;
            let out = ctx.models_dir.join(&cell.id);
            let log = ResultStore::for_sweep(sweep).dir().join("logs").join(format!("{}.log", cell.id));
            let run = crate::external::CellRun {
                spec,
                cell,
                train: &train,
                world: &ctx.world,
                cache: &ctx.cache,
                out: &out,
                log: &log,
            };
            let (result, ran) = crate::external::run(&run);
            if let Some(r) = &ran {
                stages.insert("method/command".into(), r.wall_seconds);
            }
            *external_run = ran;
            (result.with_context(|| format!("method {} ({})", cell.method, cell.kind))?, !opts.keep_models)
        }
        _ => {
            let mut method_params = own_params(&cell.params);
            if let (None, Some(toml::Value::String(c))) = (&ctx.smoke_family, method_params.get("checkpoint")) {
                if let Some(spec) = c.strip_prefix("hub:") {
                    let dir = resolve_hub_checkpoint(spec)
                        .with_context(|| format!("methods.{}: checkpoint = {c:?}", cell.method))?;
                    method_params.insert("checkpoint".into(), toml::Value::String(format!("path:{}", dir.display())));
                }
            }
            if let (Some((family, texts, dir)), Some(toml::Value::String(c))) =
                (&ctx.smoke_family, method_params.get("checkpoint"))
            {
                if let Some(path) = c.strip_prefix("path:").or_else(|| c.strip_prefix("hub:")) {
                    // a tiny stand-in of the same family and tokenizer, seeded by the path
                    let seed = path.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
                    let standin = dir.join(format!("{seed:016x}"));
                    if !lm::checkpoint::is_complete(&standin) {
                        testbed::smoke::tiny_like(family, &standin, seed, texts)?;
                    }
                    method_params
                        .insert("checkpoint".into(), toml::Value::String(format!("path:{}", standin.display())));
                }
            }
            let unlearner =
                methods::build(&cell.kind, &method_params).with_context(|| format!("methods.{}", cell.method))?;
            let lm_train = cell_train_config(sweep, &cell.model, &cell.params, cell.seed)?;
            let out = ctx.models_dir.join(&cell.id);
            let ckpts: Vec<unlearn::CheckpointInfo> = ctx
                .world
                .checkpoints
                .iter()
                .map(|c| unlearn::CheckpointInfo { step: c.step, path: c.path.clone(), clean: c.clean })
                .collect();
            let uctx = unlearn::Context {
                final_model: &ctx.world.final_model,
                checkpoints: &ckpts,
                forget: &ctx.forget,
                retain: &ctx.retain,
                held_out: &ctx.held_out,
                train: lm_train,
                seed: cell.seed,
                cache: &ctx.cache,
                out: &out,
                device,
                pad: ctx.pad,
                progress,
            };
            let report = unlearner.run(&uctx).with_context(|| format!("method {} ({})", cell.method, cell.kind))?;
            stages.extend(report.timings.iter().map(|(k, v)| (format!("method/{k}"), *v)));
            curves.insert("unlearn".to_string(), report.loss_curve.iter().map(|&(s, l)| (s as u64, l)).collect());
            (report.out, !opts.keep_models)
        }
    };
    stages.insert("unlearn".into(), t.elapsed().as_secs_f64());
    // what building this cell's world cost (once per world; cached afterwards)
    stages.insert("world_build".into(), ctx.world.info.seconds_theta_d + ctx.world.info.seconds_oracle);
    let t = std::time::Instant::now();
    let metrics = ctx.suite.evaluate(&model_dir, &ctx.oracle_refs, &ctx.world.oracle, device);
    stages.insert("evaluate".into(), t.elapsed().as_secs_f64());
    let attacked = match metrics {
        Ok(m) => run_attacks(sweep, cell, ctx, &model_dir, device, stages).map(|a| (m, a)),
        Err(e) => Err(e),
    };
    if temp {
        let _ = std::fs::remove_dir_all(&model_dir);
    }
    let (mut metrics, attacked) = attacked?;
    metrics.extend(attacked);
    if cell.method == REFERENCE_FINAL {
        curves.insert("pretrain".into(), ctx.world.info.loss_curve.iter().map(|&(s, l)| (s as u64, l)).collect());
    }
    if cell.method == REFERENCE_RETRAIN {
        curves
            .insert("pretrain".into(), ctx.world.info.oracle_loss_curve.iter().map(|&(s, l)| (s as u64, l)).collect());
    }
    Ok((metrics, curves))
}

/// The `[attacks]` stage: each attack applied to the cell's model (quantization: a
/// quantize-then-dequantize copy, streamed by `model_state`), scored with the same suite, its
/// records renamed `attack/NAME/RECORD`; the attacked copy is deleted afterwards.
fn run_attacks(
    sweep: &Sweep,
    cell: &Cell,
    ctx: &ModelContext,
    model_dir: &Path,
    device: &candle_core::Device,
    stages: &mut BTreeMap<String, f64>,
) -> Result<BTreeMap<String, crate::store::MetricRecord>> {
    let mut out = BTreeMap::new();
    for (scheme, name) in sweep.attacks.quantize.iter().zip(sweep.attacks.names()) {
        let t = std::time::Instant::now();
        let dir = ctx.models_dir.join(format!("{}.{}", cell.id, name.replace(':', "-")));
        let opts = model_state::QuantizeOptions {
            overwrite: true,
            lm_head: sweep.attacks.quantize_lm_head,
            ..Default::default()
        };
        model_state::quantize_checkpoint_with(model_dir, &dir, *scheme, &opts)
            .with_context(|| format!("attack {name}: quantizing {}", model_dir.display()))?;
        let scored = ctx.suite.evaluate(&dir, &ctx.oracle_refs, &ctx.world.oracle, device);
        let _ = std::fs::remove_dir_all(&dir);
        for (record, r) in scored.with_context(|| format!("attack {name}: scoring the quantized model"))? {
            out.insert(format!("attack/{name}/{record}"), r);
        }
        stages.insert(format!("attack/{name}"), t.elapsed().as_secs_f64());
    }
    if let Some(relearn) = &sweep.attacks.relearn {
        // the relearning attack (crate::relearn): fine-tune on the taught forget entities,
        // score the held ones at step 0 and at each eval_at step
        let t = std::time::Instant::now();
        let input = crate::relearn::RelearnInputs {
            world: &ctx.world.world,
            forget: &ctx.forget,
            pad: ctx.pad,
            suite: &ctx.suite,
            models_dir: &ctx.models_dir,
            cell_id: &cell.id,
        };
        out.extend(crate::relearn::run(relearn, &input, model_dir, device).context("attack relearn")?);
        stages.insert("attack/relearn".into(), t.elapsed().as_secs_f64());
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn record(
    store: &ResultStore,
    sweep: &Sweep,
    cell: &Cell,
    fingerprint: &Fingerprint,
    outcome: Result<CellOutcome>,
    provenance: &Provenance,
    started: f64,
    stages: BTreeMap<String, f64>,
) -> Result<()> {
    let timings = Timings { started_unix: started, finished_unix: crate::store::now_unix(), stages };
    let resolved = resolved_config(sweep, cell)?;
    match outcome {
        Ok((metrics, loss_curves)) => {
            let r = CellResult {
                schema_version: crate::store::SCHEMA_VERSION,
                sweep: sweep.name.clone(),
                cell: cell.clone(),
                status: CellStatus::Ok,
                error_chain: vec![],
                metrics,
                resolved_config: resolved,
                fingerprint: Some(fingerprint.clone()),
                provenance: provenance.clone(),
                timings,
                loss_curves,
            };
            store.write(&r)?;
        }
        Err(e) => {
            store.record_failure(cell, &e, resolved, fingerprint.clone(), provenance.clone(), timings)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(methods: &str) -> Sweep {
        let text = format!(
            "metrics = [\"tofu_model_utility\"]\nseeds = [0]\n[world]\nkind = \"facts\"\n[[models]]\nname = \"m\"\nscratch = \"micro\"\n\
             [train]\nepochs = 5\nwarmup_epochs = 1.0\nlr = 1e-3\n{methods}"
        );
        crate::config::parse_sweep(&text, Path::new("t.toml"), &crate::config::Registry::DEFAULT).unwrap()
    }

    /// The warm-up is `warmup_epochs` of the method's own epochs (issue 18): gradient ascent
    /// with `epochs = 1` warms up over its whole (single) epoch, not over 1/5 of it.
    #[test]
    fn warmup_is_a_fraction_of_the_methods_own_epochs() {
        let s = sweep("[methods.ga]\nkind = \"gradient_ascent\"\nepochs = 1\nlr = 3e-4\n");
        let params = s.methods["ga"].fixed.clone();
        let t = method_train_config(&s, &params, 7).unwrap();
        assert_eq!((t.epochs, t.warmup_ratio, t.lr, t.seed), (1, 1.0, 3e-4, 7));
        let s = sweep("[methods.ga]\nkind = \"gradient_ascent\"\nepochs = 2\n");
        let t = method_train_config(&s, &s.methods["ga"].fixed.clone(), 7).unwrap();
        assert_eq!((t.epochs, t.warmup_ratio, t.lr), (2, 0.5, 1e-3));
        // without an override, [train]'s 5 epochs: 1/5
        let s = sweep("[methods.ga]\nkind = \"gradient_ascent\"\n");
        let t = method_train_config(&s, &s.methods["ga"].fixed.clone(), 7).unwrap();
        assert_eq!((t.epochs, t.warmup_ratio), (5, 0.2));
    }

    /// Every `[train]` key changes what runs: the trainer settings of a cell, the sequence
    /// cut, or the memory plan (issue 16: no accepted setting without an effect).
    #[test]
    fn every_train_key_changes_what_runs() {
        let base = sweep("[methods.ga]\nkind = \"gradient_ascent\"\n");
        let t0 = cell_train_config(&base, "m", &base.methods["ga"].fixed.clone(), 7).unwrap();
        let changed = [
            ("lr", "lr = 5e-2"),
            ("epochs", "epochs = 9"),
            ("batch_size", "batch_size = 3"),
            ("weight_decay", "weight_decay = 0.5"),
            ("warmup_epochs", "warmup_epochs = 0.0"),
            ("grad_clip", "grad_clip = 0.5"),
            ("max_steps", "max_steps = 4"),
            ("precision", "precision = \"bf16-mixed\""),
            ("activation_checkpointing", "activation_checkpointing = true"),
            ("lora", "lora = { rank = 2, alpha = 4.0 }"),
        ];
        for (key, line) in changed {
            let text = format!(
                "metrics = [\"tofu_model_utility\"]\nseeds = [0]\n[world]\nkind = \"facts\"\n[[models]]\nname = \"m\"\nscratch = \"micro\"\n\
                 [train]\n{}\n[methods.ga]\nkind = \"gradient_ascent\"\n",
                ["epochs = 5", "warmup_epochs = 1.0", "lr = 1e-3", line]
                    .iter()
                    .filter(|l| !(l.split('=').next() == line.split('=').next() && **l != line))
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let s = crate::config::parse_sweep(&text, Path::new("t.toml"), &crate::config::Registry::DEFAULT).unwrap();
            let t = cell_train_config(&s, "m", &s.methods["ga"].fixed.clone(), 7).unwrap();
            assert_ne!(t, t0, "[train] {key}: changing it changed nothing the trainer sees");
        }
        // max_seq_len: the methods' sequences are cut at it (below max_position_embeddings)
        assert_eq!(seq_cut(128, 256), 128);
        assert_eq!(seq_cut(512, 256), 256);
        let s = sweep("max_seq_len = 64\n[methods.ga]\nkind = \"gradient_ascent\"\n");
        assert_eq!(s.train.max_seq_len, 64);
        // every [train] key is covered above or here
        for key in crate::config::TRAIN_KEYS.iter().chain(crate::config::TRAIN_ONLY_KEYS) {
            assert!(
                changed.iter().any(|(k, _)| k == key) || ["max_seq_len", "memory_limit_gb"].contains(key),
                "[train] {key} has no test that it changes what runs"
            );
        }
    }

    /// `[[models]] dtype` decides the precision a model trains in when `[train]` leaves it unset.
    #[test]
    fn model_dtype_changes_the_training_precision() {
        use lm::train::Precision;
        let text = |dtype: &str, precision: &str| {
            format!(
                "metrics = [\"tofu_model_utility\"]\nseeds = [0]\n[world]\nkind = \"facts\"\n[[models]]\nname = \"m\"\nscratch = \"micro\"\ndtype = \"{dtype}\"\n\
                 [train]\n{precision}\n[methods.ga]\nkind = \"gradient_ascent\"\n"
            )
        };
        let parse = |t: &str| crate::config::parse_sweep(t, Path::new("t.toml"), &crate::config::Registry::DEFAULT);
        let prec = |dtype: &str, p: &str| {
            let s = parse(&text(dtype, p)).unwrap();
            cell_train_config(&s, "m", &s.methods["ga"].fixed.clone(), 0).unwrap().precision
        };
        assert_eq!(prec("f32", ""), Precision::F32);
        assert_eq!(prec("bf16", ""), Precision::Bf16);
        assert_eq!(prec("f32", "precision = \"bf16-mixed\""), Precision::Bf16Mixed);
        assert_eq!(prec("f32", "precision = \"bf16\""), Precision::Bf16);
        let e = format!("{:#}", parse(&text("bf16", "precision = \"bf16-mixed\"")).unwrap_err());
        assert!(e.contains("models[0].dtype") && e.contains("bf16-mixed"), "{e}");
        let e = format!("{:#}", parse(&text("f32", "precision = \"fp8\"")).unwrap_err());
        assert!(e.contains("train.precision") && e.contains("fp8"), "{e}");
    }

    /// Results made before precision, activation checkpointing and the memory limit existed
    /// keep their fingerprints: the default `[train]` serialises exactly as it did.
    #[test]
    fn the_default_train_config_serialises_as_before() {
        let json = serde_json::to_string(&crate::config::TrainTable::default()).unwrap();
        assert_eq!(
            json,
            r#"{"lr":0.00001,"epochs":10,"batch_size":8,"weight_decay":0.01,"warmup_epochs":1.0,"grad_clip":null,"max_steps":null,"max_seq_len":512}"#
        );
    }
}
