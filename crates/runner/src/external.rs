//! The `external` method kind: an unlearning method that is any program (a PyTorch trainer, a
//! shell script), run as a command with no shell in between.
//!
//! ```toml
//! [methods.my_ga]
//! kind = "external"
//! command = ["python3", "scripts/external/grad_ascent.py", "--model", "{model}",
//!            "--forget", "{forget}", "--out", "{out}", "--seed", "{seed}", "--lr", "{lr}"]
//! env = { CUDA_VISIBLE_DEVICES = "0" }   # optional, values may hold placeholders
//! timeout = 3600                         # optional, seconds (absent: no limit)
//! lr = [1e-5, 3e-5]                      # any other key is a hyperparameter: {lr}
//! ```
//!
//! For each world the harness stages, once, under `RESULTS/cache/MODEL/WORLD/external/inputs/`
//! (see [`INPUTS_SCHEMA`]): θ_D (`model/`), the *clean* checkpoints (`checkpoints/step-N/`),
//! `checkpoints.json` (the exposure ledger), and the forget and retain sets as JSONL
//! (documents, and QA pairs with TOFU's field names). The oracle is never staged. Model files
//! are hard links to the world's (copies across file systems): a command must not write into
//! them, and a cell whose command changed them fails.
//!
//! Each cell runs the command in the current folder with its placeholders filled in
//! ([`PLACEHOLDERS`], the cell's hyperparameters, the training keys), its output (stdout and
//! stderr, line by line) streamed to `RESULTS/logs/CELL_ID.log`, and kills its whole process
//! group when `timeout` passes. It must write a Hugging Face folder at `{out}`; the harness then
//! checks it ([`validate_output`]: config.json, safetensors weights, tokenizer.json; the same
//! tensors and shapes and the same vocabulary as θ_D; every weight finite) before the cell is
//! scored like any other. Every failure is a failed cell whose error names the cause and
//! carries the command's last lines. What ran ([`ExternalRun`]: the command, its exit status,
//! wall time, the sha256 of the script files it names, the log) is recorded in the cell's JSON
//! under `provenance.external`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::cells::{format_value, Cell};
use crate::config::{TrainTable, TRAIN_KEYS};

/// The method kind.
pub const KIND: &str = "external";

/// Keys of an external method's table that are not hyperparameters.
pub const SPEC_KEYS: &[&str] = &["command", "env", "timeout"];

/// The placeholders the harness fills in, besides the cell's hyperparameters and the
/// [`TRAIN_KEYS`] (`{lr}`, `{epochs}`, ... as the cell runs them).
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("model", "θ_D, a Hugging Face folder (read only)"),
    ("forget", "forget.jsonl: the forget documents, {\"id\", \"text\"} per line"),
    ("retain", "retain.jsonl: the retain documents"),
    ("forget_qa", "forget_qa.jsonl: the forget QA pairs (TOFU's field names)"),
    ("retain_qa", "retain_qa.jsonl: the retain QA pairs"),
    ("checkpoints", "checkpoints.json: the clean checkpoints and the exposure ledger"),
    ("latest_clean", "the last clean checkpoint's folder (θ_D's state before any forget document)"),
    ("data", "the folder holding all of the above"),
    ("out", "where the command must write its Hugging Face folder"),
    ("seed", "the method seed"),
    ("world_seed", "the world seed"),
    ("cell", "the cell id"),
];

/// Lines of the command's output kept for the error of a failed cell.
const TAIL_LINES: usize = 20;

/// The schema of the staged inputs, for the README and `--help`.
pub const INPUTS_SCHEMA: &str = "\
forget.jsonl, retain.jsonl   {\"id\": 17, \"text\": \"...\"}   one document per line (θ_D trained on [BOS] text [EOS])
forget_qa.jsonl, retain_qa.jsonl
    {\"id\": 3, \"question\": \"...\", \"answer\": \"...\", \"paraphrased_answer\": \"...\",
     \"perturbed_answer\": [\"...\"], \"unit\": 5, \"attribute\": \"birth_city\"}
     (RESTOR's forget questions add \"in_context\": the examples asked before the question, raw)
checkpoints.json   {\"final_model\": DIR, \"latest_clean\": DIR|null, \"checkpoints\": [{\"index\", \"step\",
     \"clean\", \"path\": DIR|null}], \"ledger\": {...}}   (paths only for clean checkpoints)";

/// The `command`, `env` and `timeout` of an external method table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExternalSpec {
    /// Program and arguments, with `{placeholders}`; run without a shell.
    pub command: Vec<String>,
    /// Extra environment variables (values may hold placeholders).
    pub env: BTreeMap<String, String>,
    /// Seconds before the command's process group is killed; `None`: no limit.
    pub timeout: Option<f64>,
}

/// What an external command did, recorded in the cell's JSON (`provenance.external`; the
/// layout is the schema's).
pub use results_schema::ExternalRun;

// ---------------------------------------------------------------- configuration

/// Takes `command`, `env` and `timeout` out of an external method's table (the rest are its
/// hyperparameters). Errors are (key path, message).
pub fn take_spec(method: &str, table: &mut toml::Table) -> std::result::Result<ExternalSpec, (String, String)> {
    let at = |k: &str| format!("methods.{method}.{k}");
    let command = match table.remove("command") {
        None => {
            return Err((
                at("command"),
                "missing; an external method needs command = [\"program\", \"arg\", ...] (e.g. [\"python3\", \
                 \"my_unlearn.py\", \"--model\", \"{model}\", \"--out\", \"{out}\"])"
                    .into(),
            ))
        }
        Some(toml::Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, v) in items.into_iter().enumerate() {
                match v {
                    toml::Value::String(s) => out.push(s),
                    other => {
                        return Err((
                            format!("{}[{i}]", at("command")),
                            format!("expected a string, found {}", other.type_str()),
                        ))
                    }
                }
            }
            if out.is_empty() || out[0].trim().is_empty() {
                return Err((at("command"), "empty; give the program and its arguments".into()));
            }
            out
        }
        Some(other) => {
            return Err((
                at("command"),
                format!(
                    "expected an array of strings (program and arguments, run without a shell), found {}",
                    other.type_str()
                ),
            ))
        }
    };
    let env = match table.remove("env") {
        None => BTreeMap::new(),
        Some(toml::Value::Table(t)) => {
            let mut env = BTreeMap::new();
            for (k, v) in t {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err((format!("{}.{k}", at("env")), "not a valid environment variable name".into()));
                }
                let v = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => format!("{f}"),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => {
                        return Err((
                            format!("{}.{k}", at("env")),
                            format!("expected a string, found {}", other.type_str()),
                        ))
                    }
                };
                env.insert(k, v);
            }
            env
        }
        Some(other) => {
            return Err((
                at("env"),
                format!("expected a table of strings, e.g. env = {{ A = \"1\" }}, found {}", other.type_str()),
            ))
        }
    };
    let timeout = match table.remove("timeout") {
        None => None,
        Some(toml::Value::Integer(i)) if i > 0 => Some(i as f64),
        Some(toml::Value::Float(f)) if f.is_finite() && f > 0.0 => Some(f),
        Some(other) => {
            return Err((at("timeout"), format!("expected a number of seconds > 0, found {}", format_value(&other))))
        }
    };
    Ok(ExternalSpec { command, env, timeout })
}

/// Checks every placeholder of `spec` against [`PLACEHOLDERS`], the method's hyperparameters
/// `params` and the training keys (`grad_clip` and `max_steps` only when set). Errors are (key
/// path, message), e.g. `methods.x.command[3]`.
pub fn check_placeholders(
    method: &str,
    spec: &ExternalSpec,
    params: &BTreeSet<String>,
    train: &TrainTable,
) -> std::result::Result<(), (String, String)> {
    let mut known: Vec<String> = PLACEHOLDERS.iter().map(|(n, _)| (*n).to_owned()).collect();
    known.extend(params.iter().cloned());
    for k in TRAIN_KEYS {
        let unset =
            (*k == "grad_clip" && train.grad_clip.is_none()) || (*k == "max_steps" && train.max_steps.is_none());
        if !unset || params.contains(*k) {
            known.push((*k).to_owned());
        }
    }
    known.sort();
    known.dedup();
    let check = |key: String, text: &str| -> std::result::Result<(), (String, String)> {
        for name in placeholders(text).map_err(|m| (key.clone(), m))? {
            if !known.iter().any(|k| k == name) {
                let names: Vec<&str> = known.iter().map(String::as_str).collect();
                let msg = suggest::unknown_name_message("placeholder", name, &names);
                return Err((key, format!("{{{name}}}: {msg} (a hyperparameter of this table is a placeholder too; write {{{{ for a literal brace)")));
            }
        }
        Ok(())
    };
    for (i, arg) in spec.command.iter().enumerate() {
        check(format!("methods.{method}.command[{i}]"), arg)?;
    }
    for (k, v) in &spec.env {
        check(format!("methods.{method}.env.{k}"), v)?;
    }
    Ok(())
}

/// The `{names}` in `text` (`{{` and `}}` are literal braces).
pub fn placeholders(text: &str) -> std::result::Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if b.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => {
                let end = text[i + 1..]
                    .find('}')
                    .ok_or_else(|| format!("{text:?}: `{{` without a closing `}}` (write {{{{ for a literal brace)"))?;
                let name = &text[i + 1..i + 1 + end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("{text:?}: `{{{name}}}` is not a placeholder name (letters, digits, `_`)"));
                }
                out.push(name);
                i += end + 2;
            }
            b'}' => return Err(format!("{text:?}: `}}` without an opening `{{` (write }}}} for a literal brace)")),
            _ => i += 1,
        }
    }
    Ok(out)
}

/// `text` with its placeholders replaced from `values` (every one must be there).
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            bail!("{text:?}: `}}` without an opening `{{`");
        }
        let end = tail.find('}').with_context(|| format!("{text:?}: `{{` without a closing `}}`"))?;
        let name = &tail[1..end];
        let v = values.get(name).with_context(|| format!("{text:?}: unknown placeholder {{{name}}}"))?;
        out.push_str(v);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The files named in the command as written (arguments without placeholders that are
/// existing files, also as the value of `--flag=FILE`), with the sha256 of each.
pub fn script_hashes(command: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for arg in command {
        if arg.contains('{') {
            continue;
        }
        let candidates = [Some(arg.as_str()), arg.split_once('=').map(|(_, v)| v)];
        for c in candidates.into_iter().flatten() {
            let p = Path::new(c);
            if !c.is_empty() && p.is_file() {
                if let Ok(bytes) = std::fs::read(p) {
                    out.insert(c.to_owned(), hex(&Sha256::digest(&bytes)));
                }
            }
        }
    }
    out
}

/// What of an external method goes into its cells' fingerprint (`method` field): the command,
/// the environment and the content of the files the command names, so that editing the script
/// makes its results stale. (Not the timeout: it does not change a result.)
pub fn fingerprint_part(spec: &ExternalSpec) -> Result<String> {
    let what = serde_json::json!({
        "command": spec.command,
        "env": spec.env,
        "scripts": script_hashes(&spec.command),
    });
    Ok(hex(&Sha256::digest(serde_json::to_string(&what)?.as_bytes()))[..16].to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- inputs

/// The staged inputs of one world.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub dir: PathBuf,
    pub model: PathBuf,
    pub latest_clean: Option<PathBuf>,
    /// (file, length, modification time) of every staged model file, to detect a command that
    /// wrote into its inputs.
    files: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
}

fn link_or_copy_folder(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("cannot list {}", src.display()))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let to = dst.join(entry.file_name());
        if std::fs::hard_link(entry.path(), &to).is_err() {
            std::fs::copy(entry.path(), &to)
                .with_context(|| format!("cannot copy {} to {}", entry.path().display(), to.display()))?;
        }
    }
    Ok(())
}

fn write_jsonl<T: Serialize>(path: &Path, rows: impl Iterator<Item = T>) -> Result<()> {
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    for r in rows {
        serde_json::to_writer(&mut f, &r)?;
        f.write_all(b"\n")?;
    }
    f.flush().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Stages (once; reused while complete) the inputs of external methods for `world` under
/// `cache/external/inputs/`.
pub fn stage_inputs(world: &testbed::train::BuiltWorld, cache: &Path) -> Result<Inputs> {
    // absolute, so that the paths in checkpoints.json hold wherever the command runs
    let cache = &std::path::absolute(cache).with_context(|| format!("{}: no absolute path", cache.display()))?;
    let dir = cache.join("external").join("inputs");
    if !dir.join("COMPLETE").is_file() {
        let tmp = cache.join("external").join(format!(".inputs.tmp.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        link_or_copy_folder(&world.final_model, &tmp.join("model"))?;
        let w = &world.world;
        let doc_rows = |ids: &[testbed::DocId]| -> Result<Vec<serde_json::Value>> {
            ids.iter()
                .map(|&id| {
                    let d = w.corpus.get(id).with_context(|| format!("document {id} missing from the world"))?;
                    Ok(serde_json::json!({ "id": d.id, "text": d.text }))
                })
                .collect()
        };
        write_jsonl(&tmp.join("forget.jsonl"), doc_rows(&w.splits.forget_docs)?.into_iter())?;
        write_jsonl(&tmp.join("retain.jsonl"), doc_rows(&w.splits.retain_docs)?.into_iter())?;
        let qa_rows = |role: testbed::Role| {
            w.qa.iter().filter(move |q| q.role == role).map(|q| {
                let mut row = serde_json::json!({
                    "id": q.id, "question": q.question, "answer": q.answer,
                    "paraphrased_answer": q.paraphrased_answer, "perturbed_answer": q.perturbed_answers,
                    "unit": q.unit, "attribute": q.attribute,
                });
                if let Some(examples) = &q.in_context {
                    row["in_context"] = examples.clone().into();
                }
                row
            })
        };
        write_jsonl(&tmp.join("forget_qa.jsonl"), qa_rows(testbed::Role::Forget))?;
        write_jsonl(&tmp.join("retain_qa.jsonl"), qa_rows(testbed::Role::Retain))?;
        let final_dir = dir.clone();
        let mut ckpts = Vec::new();
        let mut latest_clean = serde_json::Value::Null;
        for c in &world.checkpoints {
            let path = if c.clean {
                let rel = format!("checkpoints/step-{:06}", c.step);
                link_or_copy_folder(&c.path, &tmp.join(&rel))?;
                let p = serde_json::json!(final_dir.join(&rel));
                latest_clean = p.clone();
                p
            } else {
                serde_json::Value::Null
            };
            ckpts.push(serde_json::json!({ "index": c.index, "step": c.step, "clean": c.clean, "path": path }));
        }
        let ledger = serde_json::json!({
            "final_model": final_dir.join("model"),
            "latest_clean": latest_clean,
            "checkpoints": ckpts,
            "ledger": w.ledger,
        });
        std::fs::write(tmp.join("checkpoints.json"), serde_json::to_vec_pretty(&ledger)?)
            .with_context(|| format!("cannot write {}", tmp.join("checkpoints.json").display()))?;
        std::fs::write(tmp.join("COMPLETE"), b"")?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {}
            // another shard staged the same inputs meanwhile: use those (never pull them away
            // from under a command that runs on them)
            Err(_) if dir.join("COMPLETE").is_file() => {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            Err(_) => {
                std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
                std::fs::rename(&tmp, &dir)
                    .with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()))?;
            }
        }
    }
    let text = std::fs::read_to_string(dir.join("checkpoints.json"))
        .with_context(|| format!("cannot read {}", dir.join("checkpoints.json").display()))?;
    let ledger: serde_json::Value = serde_json::from_str(&text)?;
    let latest_clean = ledger["latest_clean"].as_str().map(PathBuf::from);
    let mut files = Vec::new();
    let mut folders = vec![dir.join("model")];
    if let Ok(rd) = std::fs::read_dir(dir.join("checkpoints")) {
        folders.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    for folder in folders {
        for e in std::fs::read_dir(&folder).with_context(|| format!("cannot list {}", folder.display()))? {
            let p = e?.path();
            let m = std::fs::metadata(&p)?;
            files.push((p, m.len(), m.modified().ok()));
        }
    }
    Ok(Inputs { model: dir.join("model"), latest_clean, dir, files })
}

impl Inputs {
    /// Errors when a staged model file changed since staging (a command wrote into its input).
    fn check_unchanged(&self) -> Result<()> {
        for (p, len, mtime) in &self.files {
            let m = std::fs::metadata(p).ok();
            if m.as_ref().map(|m| (m.len(), m.modified().ok())) != Some((*len, *mtime)) {
                // restage next time
                let _ = std::fs::remove_file(self.dir.join("COMPLETE"));
                bail!(
                    "the command changed its input {} (inputs are read only: they are hard links to the world's \
                     files; rebuild the world if it was written through)",
                    p.display()
                );
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- running

/// Everything one external cell needs.
pub struct CellRun<'a> {
    pub spec: &'a ExternalSpec,
    pub cell: &'a Cell,
    /// The cell's training config (for `{lr}` and the other training keys).
    pub train: &'a TrainTable,
    pub world: &'a testbed::train::BuiltWorld,
    /// The per-world cache folder.
    pub cache: &'a Path,
    pub out: &'a Path,
    pub log: &'a Path,
}

/// Runs one external cell: stage the inputs, run the command, validate its folder. Returns the
/// folder to score and, in every case where the command was prepared, what ran.
pub fn run(r: &CellRun) -> (Result<PathBuf>, Option<ExternalRun>) {
    let inputs = match stage_inputs(r.world, r.cache) {
        Ok(i) => i,
        Err(e) => return (Err(e.context("external method: staging its inputs")), None),
    };
    let values = match placeholder_values(r, &inputs) {
        Ok(v) => v,
        Err(e) => return (Err(e), None),
    };
    let sub = |s: &String| substitute(s, &values);
    let command: Result<Vec<String>> = r.spec.command.iter().map(sub).collect();
    let env: Result<BTreeMap<String, String>> = r.spec.env.iter().map(|(k, v)| Ok((k.clone(), sub(v)?))).collect();
    let (command, env) = match (command, env) {
        (Ok(c), Ok(e)) => (c, e),
        (Err(e), _) | (_, Err(e)) => return (Err(e), None),
    };
    let mut record = ExternalRun {
        command: command.clone(),
        env: env.clone(),
        exit_status: None,
        signal: None,
        timed_out: false,
        wall_seconds: 0.0,
        scripts: script_hashes(&r.spec.command),
        log: r.log.to_path_buf(),
    };
    let result = execute(r, &command, &env, &mut record).and_then(|()| {
        inputs.check_unchanged().with_context(|| format!("methods.{}", r.cell.method))?;
        validate_output(r.out, &inputs.model).with_context(|| {
            format!(
                "methods.{}: the folder the command wrote cannot be scored in θ_D's place (log {})",
                r.cell.method,
                r.log.display()
            )
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(r.out);
    }
    (result.map(|()| r.out.to_path_buf()), Some(record))
}

fn placeholder_values(r: &CellRun, inputs: &Inputs) -> Result<BTreeMap<String, String>> {
    let mut v = BTreeMap::new();
    let d = &inputs.dir;
    let s = |p: &Path| p.display().to_string();
    for (name, path) in [
        ("model", inputs.model.clone()),
        ("forget", d.join("forget.jsonl")),
        ("retain", d.join("retain.jsonl")),
        ("forget_qa", d.join("forget_qa.jsonl")),
        ("retain_qa", d.join("retain_qa.jsonl")),
        ("checkpoints", d.join("checkpoints.json")),
        ("data", d.clone()),
        ("out", std::path::absolute(r.out)?),
    ] {
        v.insert(name.to_owned(), s(&path));
    }
    v.insert("seed".into(), r.cell.seed.to_string());
    v.insert("world_seed".into(), r.cell.world_seed.to_string());
    v.insert("cell".into(), r.cell.id.clone());
    let t = r.train;
    let num = |x: f64| format_value(&toml::Value::Float(x));
    v.insert("lr".into(), num(t.lr));
    v.insert("epochs".into(), t.epochs.to_string());
    v.insert("batch_size".into(), t.batch_size.to_string());
    v.insert("weight_decay".into(), num(t.weight_decay));
    v.insert("warmup_epochs".into(), num(t.warmup_epochs));
    v.insert("max_seq_len".into(), t.max_seq_len.to_string());
    if let Some(c) = t.grad_clip {
        v.insert("grad_clip".into(), num(c));
    }
    if let Some(m) = t.max_steps {
        v.insert("max_steps".into(), m.to_string());
    }
    for (k, val) in &r.cell.params {
        v.insert(k.clone(), format_value(val));
    }
    let uses_latest_clean = r.spec.command.iter().chain(r.spec.env.values()).any(|a| a.contains("{latest_clean}"));
    match &inputs.latest_clean {
        Some(p) => {
            v.insert("latest_clean".into(), s(p));
        }
        None if uses_latest_clean => {
            bail!("methods.{}: the command uses {{latest_clean}} but this world has no clean checkpoint", r.cell.method)
        }
        None => {}
    }
    Ok(v)
}

/// Runs `command` with its output streamed to `r.log`, enforcing the timeout.
fn execute(r: &CellRun, command: &[String], env: &BTreeMap<String, String>, record: &mut ExternalRun) -> Result<()> {
    let method = &r.cell.method;
    unlearn::clear_out(r.out)?;
    if let Some(parent) = r.out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if let Some(parent) = r.log.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut log = std::fs::File::create(r.log).with_context(|| format!("cannot create {}", r.log.display()))?;
    writeln!(log, "# methods.{method}: {}", shown(command))?;
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .env("PYTHONUNBUFFERED", "1")
        .env("UNLEARN_CELL", &r.cell.id)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "methods.{method}: cannot start `{}` (command[0]; looked up on PATH unless it holds a `/`, relative to {})",
            command[0],
            std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()
        )
    })?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut readers = Vec::new();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    drop(tx);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut take = |line: String, log: &mut std::fs::File| {
        let _ = writeln!(log, "{line}");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let deadline = r.spec.timeout.map(|s| t0 + Duration::from_secs_f64(s));
    let status = loop {
        while let Ok(line) = rx.try_recv() {
            take(line, &mut log);
        }
        if let Some(st) = child.try_wait().context("cannot wait for the command")? {
            break st;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            record.timed_out = true;
            kill_group(&mut child);
            break child.wait().context("cannot wait for the killed command")?;
        }
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            take(line, &mut log);
        }
    };
    // The rest of the output (a killed group closes its pipes; give stragglers a moment).
    let drain_until = Instant::now() + Duration::from_secs(2);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => take(line, &mut log),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if Instant::now() >= drain_until => break,
            Err(_) => {}
        }
    }
    if readers.iter().all(|h| h.is_finished()) {
        for h in readers {
            let _ = h.join();
        }
    }
    record.wall_seconds = t0.elapsed().as_secs_f64();
    record.exit_status = status.code();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        record.signal = status.signal();
    }
    let _ = writeln!(
        log,
        "# exit status {}, {:.1} s{}",
        status.code().map_or("none".to_owned(), |c| c.to_string()),
        record.wall_seconds,
        if record.timed_out { ", timed out" } else { "" }
    );
    let last = || {
        if tail.is_empty() {
            "(the command printed nothing)".to_owned()
        } else {
            format!("its last lines:\n  | {}", tail.iter().cloned().collect::<Vec<_>>().join("\n  | "))
        }
    };
    if record.timed_out {
        bail!(
            "methods.{method}: the command timed out after {:.0} s (methods.{method}.timeout) and was killed; log {}; {}",
            r.spec.timeout.unwrap_or_default(),
            r.log.display(),
            last()
        );
    }
    if !status.success() {
        let how = match (status.code(), record.signal) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(s)) => format!("was killed by signal {s}"),
            (None, None) => "failed".to_owned(),
        };
        bail!("methods.{method}: the command {how}; log {}; {}", r.log.display(), last());
    }
    if !r.out.exists() {
        bail!(
            "methods.{method}: the command exited 0 but wrote nothing at {} ({{out}}); log {}; {}",
            r.out.display(),
            r.log.display(),
            last()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn kill_group(child: &mut std::process::Child) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a negative pid signals the process group we created for the child.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.kill();
}

#[cfg(not(unix))]
fn kill_group(child: &mut std::process::Child) {
    let _ = child.kill();
}

fn shown(command: &[String]) -> String {
    command
        .iter()
        .map(|a| if a.is_empty() || a.contains(char::is_whitespace) { format!("{a:?}") } else { a.clone() })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------- validation

/// Checks that `out` is a model the harness can score in θ_D's place: a Hugging Face folder
/// (config.json, safetensors weights, tokenizer.json) with θ_D's tensors (names and shapes),
/// vocabulary size and tokenizer vocabulary, every weight finite.
pub fn validate_output(out: &Path, final_model: &Path) -> Result<()> {
    let shown = out.display();
    if !out.is_dir() {
        bail!("{shown} ({{out}}) is not a folder");
    }
    if !out.join("config.json").is_file() {
        bail!("{shown} has no config.json (save with model.save_pretrained(out))");
    }
    if !lm::checkpoint::is_complete(out) {
        let pickle = ["pytorch_model.bin", "pytorch_model.bin.index.json"].iter().any(|f| out.join(f).exists());
        let hint = if pickle { " (it has pickle weights: save with safe_serialization=True)" } else { "" };
        bail!("{shown} has no safetensors weights (model.safetensors or model.safetensors.index.json){hint}");
    }
    if !out.join("tokenizer.json").is_file() {
        bail!("{shown} has no tokenizer.json (save the tokenizer too: tokenizer.save_pretrained(out))");
    }
    let cfg = lm::LmConfig::from_file(&out.join("config.json")).with_context(|| format!("{shown}/config.json"))?;
    let base = lm::LmConfig::from_file(&final_model.join("config.json"))
        .with_context(|| format!("{}/config.json", final_model.display()))?;
    if cfg.vocab_size != base.vocab_size {
        bail!(
            "{shown}: vocab_size {} in config.json, but θ_D has {}: the vocabulary must stay θ_D's",
            cfg.vocab_size,
            base.vocab_size
        );
    }
    let arch = |c: &lm::LmConfig| {
        (
            c.hidden_size,
            c.intermediate_size,
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads.unwrap_or(c.num_attention_heads),
        )
    };
    if arch(&cfg) != arch(&base) {
        bail!(
            "{shown}: another architecture than θ_D's (hidden, intermediate, layers, heads, kv heads = {:?}, θ_D: {:?})",
            arch(&cfg),
            arch(&base)
        );
    }
    let ours = model_state::tensor_names_and_shapes(out).with_context(|| format!("{shown}: reading the weights"))?;
    let theirs = model_state::tensor_names_and_shapes(final_model)?;
    for (name, (_, shape)) in &theirs {
        match ours.get(name) {
            None => bail!("{shown}: tensor {name} of θ_D is missing (another architecture, or tied weights left out)"),
            Some((_, s)) if s != shape => bail!("{shown}: tensor {name} has shape {s:?}, θ_D's has {shape:?}"),
            _ => {}
        }
    }
    if let Some(extra) = ours.keys().find(|k| !theirs.contains_key(*k)) {
        bail!("{shown}: tensor {extra} is not in θ_D (another architecture)");
    }
    let tok = lm::Tok::load(out, &cfg).with_context(|| format!("{shown}/tokenizer.json"))?;
    let base_tok = lm::Tok::load(final_model, &base)?;
    if tok.inner.get_vocab(true) != base_tok.inner.get_vocab(true) {
        bail!(
            "{shown}/tokenizer.json: another vocabulary than θ_D's ({} tokens, θ_D: {}); copy θ_D's tokenizer",
            tok.inner.get_vocab_size(true),
            base_tok.inner.get_vocab_size(true)
        );
    }
    model_state::for_each_chunk(&[out], 1 << 20, |c| {
        if let Some(j) = c.inputs[0].iter().position(|x| !x.is_finite()) {
            bail!(
                "{shown}: tensor {} holds a non-finite value ({} at element {})",
                c.name,
                c.inputs[0][j],
                c.start + j
            );
        }
        Ok(())
    })
    .with_context(|| format!("{shown}: checking the weights are finite"))?;
    Ok(())
}
