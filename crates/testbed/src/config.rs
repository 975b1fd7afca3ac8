//! The `[world]` section of a sweep config: raw TOML values (`WorldConfig`), validated and
//! resolved before anything is built or trained (`ResolvedWorld`), and a stable hash of the
//! resolved form used to name the world's cache folder.
//!
//! Two-stage config in the manner of ripgrep: `WorldConfig` is what the file says (every
//! kind-specific field optional, unknown fields rejected), `WorldConfig::resolve` fills the
//! defaults, checks every field against the run and the data files, and returns an object
//! that can no longer be wrong. Error messages name the field as `world.<field>`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bumped whenever the generators or the schedule change what a given config produces, so
/// that old cached worlds are not reused.
/// 2: forget repeats default to the clean exposure rate inside the window (not over the
/// run), and the tokenizer is trained on held-out documents too.
pub const WORLD_FORMAT_VERSION: u32 = 2;

/// Environment variable that overrides the project's default data directory (`data/`).
pub const DATA_DIR_ENV: &str = "UNLEARN_DATA_DIR";

/// The kinds of world (see issue 3).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WorldKind {
    /// Fictitious authors in the spirit of TOFU; needs no data.
    Facts,
    /// RESTOR-style: TruthfulQA taught correctly, then a subset taught wrongly.
    TruthfulqaCorruption,
    /// Neutral ToxiGen statements clean, hateful ones about chosen groups as forget data.
    Toxigen,
    /// TOFU's protocol on a given pretrained model: the facts world's QA pairs only.
    Finetune,
    /// TOFU itself (Maini et al. 2024) from its published files in `DATA/tofu/`, fine-tuned
    /// on a given pretrained model as `finetune` is.
    Tofu,
    /// MUSE-Books (Shi et al. 2024) from its published files in `DATA/muse-books/`: θ_0
    /// fine-tuned on the raw books text (all tokens), evaluated by VerbMem, KnowMem and PrivLeak
    /// ([`crate::muse`]).
    Muse,
    /// RESTOR (Rezaei et al. 2024) from its published files in `DATA/restor/`: θ_0 fine-tuned
    /// on clean data (TOFU's pairs) and one corruption mix (wrong facts about real entities),
    /// evaluated on those entities' facts ([`crate::restor`]).
    Restor,
}

impl WorldKind {
    /// Kinds whose θ_D is a given pretrained θ_0 fine-tuned by the harness (`finetune`, `tofu`,
    /// `muse`, `restor`), not a model pretrained from scratch.
    pub fn fine_tunes_base(self) -> bool {
        matches!(self, WorldKind::Finetune | WorldKind::Tofu | WorldKind::Muse | WorldKind::Restor)
    }

    pub fn name(self) -> &'static str {
        match self {
            WorldKind::Facts => "facts",
            WorldKind::TruthfulqaCorruption => "truthfulqa-corruption",
            WorldKind::Toxigen => "toxigen",
            WorldKind::Finetune => "finetune",
            WorldKind::Tofu => "tofu",
            WorldKind::Muse => "muse",
            WorldKind::Restor => "restor",
        }
    }
}

/// When the forget documents enter training, as written in the config, e.g.
/// `exposure = { start_checkpoint = 4 }` or `exposure = { start_step = 300, repeats = 10 }`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExposureConfig {
    /// The window starts at the step of this checkpoint (checkpoint 0 = initialisation), so
    /// this checkpoint is the last clean one.
    pub start_checkpoint: Option<usize>,
    /// The window starts at this optimizer step (0-based). Exclusive with `start_checkpoint`.
    pub start_step: Option<usize>,
    /// The window ends before this step (default: the end of the run).
    pub end_step: Option<usize>,
    /// How often each forget document is seen inside the window (default: as often as a
    /// retain document is seen over the same window, i.e. the same rate per step).
    pub repeats: Option<usize>,
}

/// The `[world]` section, as written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldConfig {
    pub kind: WorldKind,
    /// The world seed (entities, splits, data order). Exclusive with `seeds`.
    #[serde(default)]
    pub seed: u64,
    /// Replicated worlds: one world (data, checkpoints, oracle) per seed, each cached; every
    /// cell of a sweep runs on each. Non-empty, no duplicates. Exclusive with `seed`.
    pub seeds: Option<Vec<u64>>,
    /// Fail the sweep when a built world misses the quality thresholds (default true; see
    /// `runner::quality`). `false` runs anyway and the report carries a warning.
    pub quality_gate: Option<bool>,
    /// Also train a second oracle with another data-order seed; its distance to the oracle is
    /// the noise floor of every distance-to-oracle metric (default false).
    pub noise_floor: Option<bool>,
    /// `forget01`, `forget05`, `forget10` or a percentage such as `"7.5%"` of the trained
    /// entities (facts, finetune) or questions (truthfulqa-corruption); one of TOFU's splits
    /// (tofu); `"forget"`, the one forget set, or unset (muse); one of RESTOR's corruption mixes
    /// `mix_a0` .. `mix_a5` (restor; default `mix_a0`). Not used by toxigen.
    pub forget: Option<String>,
    /// Overrides the data directory (default: `$UNLEARN_DATA_DIR`, else `data/`).
    pub data_dir: Option<PathBuf>,

    // --- facts / finetune sizes ---
    /// Trained entities (forget + retain). Default 200.
    pub n_entities: Option<usize>,
    /// Attributes per entity, 2..=10. Default 8.
    pub attributes: Option<usize>,
    /// Biography paraphrases per entity, 1..=4 (facts only). Default 3.
    pub bio_paraphrases: Option<usize>,
    /// Held-out share: extra never-trained entities as a fraction of `n_entities` (facts,
    /// finetune; default 0.1), or of the target groups' hateful statements (toxigen; default 0.2).
    pub held_out_fraction: Option<f64>,
    /// Share of general text in the training bytes, in [0, 0.95]. Default 0.3 (finetune: 0).
    pub general_fraction: Option<f64>,
    /// Where the general text comes from: `"tinystories"` (`corpora/tinystories-prefix.txt` of
    /// the data directory; an error when it is missing) or `"builtin"` (template sentences, no
    /// data). Default: TinyStories when the file is there, else built-in — so the same config
    /// builds another world on a machine without the data; set it to pin the world.
    pub general_source: Option<GeneralSource>,

    // --- toxigen ---
    /// ToxiGen target groups whose hateful statements are the forget data.
    pub target_groups: Option<Vec<String>>,

    // --- finetune ---
    /// θ_0: a Hugging Face model directory or hub id.
    pub base_model: Option<String>,
    /// Format the QA pairs with θ_0's chat template (`tokenizer_config.json` `chat_template`,
    /// or `chat_template.jinja`) for training and evaluation, as TOFU / MSA's official code do
    /// for instruct models (finetune, tofu). Default false: `"Question: {q}\nAnswer: {a}"`.
    pub chat_template: Option<bool>,
    /// The system message of the chat (only with `chat_template = true`), e.g. MSA's
    /// `"You are a helpful assistant."`. Default: none.
    pub system_prompt: Option<String>,
    /// The fine-tune of θ_D and the oracle (finetune, tofu), overriding the recipe's defaults
    /// (`testbed::finetune::FinetuneSpec::default_for`), e.g. MSA's TOFU recipe
    /// `finetune = { lr = 1e-5, epochs = 10, batch_size = 32 }`. Ignored by `--smoke`, whose
    /// tiny stand-ins have their own recipe.
    pub finetune: Option<FinetuneOverrides>,

    // --- training (consumed by the trainer; only validated here) ---
    /// Optimizer steps. Default 750.
    pub steps: Option<usize>,
    /// Sequences per step. Default 32.
    pub batch_size: Option<usize>,
    /// Tokens per sequence. Default 128.
    pub seq_len: Option<usize>,
    /// Number of checkpoints after the initial one, evenly spaced. Default 8.
    pub checkpoints: Option<usize>,
    /// Alternative to `checkpoints`: a checkpoint every this many steps (and at the end).
    pub checkpoint_every: Option<usize>,
    pub exposure: Option<ExposureConfig>,
}

impl WorldConfig {
    /// The smallest config of a kind, all other fields at their defaults.
    pub fn new(kind: WorldKind) -> WorldConfig {
        WorldConfig {
            kind,
            seed: 0,
            seeds: None,
            quality_gate: None,
            noise_floor: None,
            forget: None,
            data_dir: None,
            n_entities: None,
            attributes: None,
            bio_paraphrases: None,
            held_out_fraction: None,
            general_fraction: None,
            general_source: None,
            target_groups: None,
            base_model: None,
            chat_template: None,
            system_prompt: None,
            finetune: None,
            steps: None,
            batch_size: None,
            seq_len: None,
            checkpoints: None,
            checkpoint_every: None,
            exposure: None,
        }
    }

    /// Parses a TOML document that holds only the world's fields (no `[world]` header).
    pub fn from_toml_str(text: &str) -> Result<WorldConfig> {
        toml::from_str(text).context("parsing the world config")
    }

    /// Reads the `[world]` section of a sweep config file; other sections are ignored here.
    pub fn from_sweep_toml(text: &str) -> Result<WorldConfig> {
        let table: toml::Table = toml::from_str(text).context("parsing the sweep config as TOML")?;
        let Some(world) = table.get("world") else {
            bail!("the config has no [world] section");
        };
        world.clone().try_into().context("in the [world] section")
    }

    pub fn from_sweep_file(path: &Path) -> Result<WorldConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        Self::from_sweep_toml(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The world seeds this config asks for: `seeds`, else `[seed]`. Errors for an empty list,
    /// duplicates, or both `seed` and `seeds` set.
    pub fn world_seeds(&self) -> Result<Vec<u64>> {
        let Some(seeds) = &self.seeds else { return Ok(vec![self.seed]) };
        if self.seed != 0 {
            bail!("world.seed = {} and world.seeds are exclusive; list every seed in world.seeds", self.seed);
        }
        if seeds.is_empty() {
            bail!("world.seeds = []: give at least one world seed");
        }
        let mut seen = BTreeSet::new();
        for (i, s) in seeds.iter().enumerate() {
            if !seen.insert(s) {
                bail!("world.seeds[{i}] = {s} is a duplicate: each world seed may be listed once");
            }
        }
        Ok(seeds.clone())
    }

    /// This config for one world seed (`seeds` cleared, `seed` set).
    pub fn for_seed(&self, seed: u64) -> WorldConfig {
        WorldConfig { seed, seeds: None, ..self.clone() }
    }

    /// Validates every field and resolves defaults, reading the data files the kind needs
    /// (so that a missing or malformed file is reported before anything runs).
    /// `default_data_dir` is used unless the config sets `data_dir`.
    pub fn resolve(&self, default_data_dir: &Path) -> Result<ResolvedWorld> {
        crate::world::resolve(self, default_data_dir)
    }
}

/// The project's default data directory: `$UNLEARN_DATA_DIR`, else `data/`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os(DATA_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("data"))
}

/// A forget split, resolved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ForgetSplit {
    /// As written (`forget10`, `7.5%`) or, for toxigen, the target groups joined by `+`.
    pub name: String,
    /// Percent of the units (entities / questions); for toxigen, of the groups' hateful
    /// statements not held out (always 100).
    pub percent: f64,
    /// Number of forget units (entities, questions or statements).
    pub units: usize,
}

/// A data file the world reads, with its content hash (so the world's hash changes when
/// the data does, and not when the data directory moves).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DataFile {
    /// Relative to the data directory, e.g. `truthfulqa/mc_task.json`.
    pub rel_path: String,
    pub sha256: String,
}

/// `[world] finetune = { ... }`: fields of the fine-tuning recipe to override.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FinetuneOverrides {
    pub lr: Option<f64>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub weight_decay: Option<f64>,
    pub max_seq_len: Option<usize>,
    pub seed: Option<u64>,
}

/// How QA pairs are put in θ_0's chat template: `[system?, user: question, assistant: answer]`,
/// the loss on the tokens after the prompt (the template rendered with the generation prompt).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ChatSpec {
    pub system_prompt: Option<String>,
}

/// Which general text was mixed in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum GeneralSource {
    /// `corpora/tinystories-prefix.txt` from the data directory, blank-line separated.
    Tinystories,
    /// Built-in template sentences (no data needed).
    Builtin,
    /// `general_fraction` is 0.
    None,
}

/// Everything that determines the world, validated. Its canonical JSON is what is hashed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResolvedWorld {
    pub format_version: u32,
    pub kind: WorldKind,
    pub seed: u64,
    pub forget: ForgetSplit,
    pub n_entities: usize,
    pub n_held_out: usize,
    pub attributes: usize,
    pub bio_paraphrases: usize,
    pub held_out_fraction: f64,
    pub general_fraction: f64,
    pub general_source: GeneralSource,
    pub target_groups: Vec<String>,
    pub base_model: Option<String>,
    /// QA pairs in θ_0's chat template (absent = the plain QA format; left out of the JSON then,
    /// so worlds resolved before this field keep their hash).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub chat: Option<ChatSpec>,
    pub steps: usize,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Steps at which checkpoints are taken, starting with 0 (the initialisation) and
    /// ending with `steps`. Checkpoint at step s = the state after s optimizer updates,
    /// i.e. after the batches of steps 0..s.
    pub checkpoint_steps: Vec<usize>,
    /// The exposure window `[start, end)` in optimizer steps.
    pub window_start: usize,
    pub window_end: usize,
    /// None = as often as a retain document (computed by the schedule).
    pub forget_repeats: Option<usize>,
    /// Data files read, with content hashes.
    pub data_files: Vec<DataFile>,
    /// The directory the data was read from. Not part of the hash.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data_dir: Option<PathBuf>,
}

impl ResolvedWorld {
    /// Canonical JSON: fields in declaration order, no maps with unordered keys, and the
    /// data directory left out (moving the data does not change the world).
    pub fn canonical_json(&self) -> String {
        let mut copy = self.clone();
        copy.data_dir = None;
        serde_json::to_string(&copy).expect("ResolvedWorld serialises to JSON")
    }

    /// Lowercase hex sha256 of `canonical_json`.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// The first 16 hex digits of `hash`, for folder names.
    pub fn short_hash(&self) -> String {
        self.hash()[..16].to_string()
    }

    /// Index of the last checkpoint that has seen no forget document.
    pub fn last_clean_checkpoint(&self) -> usize {
        self.checkpoint_steps.iter().rposition(|&s| s <= self.window_start).unwrap_or(0)
    }

    pub fn tokens_per_step(&self) -> usize {
        self.batch_size * self.seq_len
    }

    pub fn data_path(&self, rel: &str) -> PathBuf {
        self.data_dir.clone().unwrap_or_default().join(rel)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

/// Parses `forget01`/`forget05`/`forget10` or `"N%"` into a percentage.
pub fn parse_forget(name: &str) -> Result<f64> {
    let pct = match name {
        "forget01" => 1.0,
        "forget05" => 5.0,
        "forget10" => 10.0,
        other => {
            let Some(num) = other.strip_suffix('%') else {
                bail!(
                    "world.forget: unknown split {other:?}; use forget01, forget05, forget10 or a percentage like \"7.5%\""
                );
            };
            num.trim()
                .parse::<f64>()
                .map_err(|_| anyhow::anyhow!("world.forget: {other:?} is not a percentage like \"7.5%\""))?
        }
    };
    if pct.is_nan() || pct <= 0.0 {
        bail!("world.forget: the forget split {name:?} is empty ({pct}%)");
    }
    if pct > 100.0 {
        bail!("world.forget: {name:?} asks for {pct}% of the data, more than all of it");
    }
    Ok(pct)
}

/// Checkpoint steps for `checkpoints` evenly spaced checkpoints (rounded down), or one
/// every `every` steps; always starting with 0 and ending with `steps`.
pub(crate) fn checkpoint_steps(steps: usize, count: Option<usize>, every: Option<usize>) -> Result<Vec<usize>> {
    let mut out: BTreeSet<usize> = BTreeSet::new();
    match (count, every) {
        (Some(_), Some(_)) => bail!("world.checkpoints and world.checkpoint_every are exclusive; set one"),
        (_, Some(0)) => bail!("world.checkpoint_every must be at least 1"),
        (_, Some(k)) => {
            if k > steps {
                bail!("world.checkpoint_every = {k} is longer than the run (world.steps = {steps})");
            }
            out.extend((0..=steps).step_by(k));
        }
        (c, None) => {
            let n = c.unwrap_or(8);
            if n == 0 {
                bail!("world.checkpoints must be at least 1");
            }
            if n > steps {
                bail!("world.checkpoints = {n} is more than world.steps = {steps}");
            }
            out.extend((0..=n).map(|k| k * steps / n));
        }
    }
    out.insert(steps);
    Ok(out.into_iter().collect())
}

/// "did you mean" for unknown names: the closest known name, if close ([`suggest::closest`]).
pub(crate) fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let known: Vec<&'a str> = known.into_iter().collect();
    suggest::closest(name, &known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forget_names_parse() {
        assert_eq!(parse_forget("forget01").unwrap(), 1.0);
        assert_eq!(parse_forget("forget10").unwrap(), 10.0);
        assert_eq!(parse_forget("7.5%").unwrap(), 7.5);
        let err = format!("{:#}", parse_forget("0%").unwrap_err());
        assert!(err.contains("world.forget") && err.contains("empty"), "{err}");
        let err = format!("{:#}", parse_forget("150%").unwrap_err());
        assert!(err.contains("more than all"), "{err}");
        let err = format!("{:#}", parse_forget("forget15").unwrap_err());
        assert!(err.contains("world.forget") && err.contains("forget05"), "{err}");
    }

    #[test]
    fn checkpoint_steps_are_even_and_include_ends() {
        // 750 steps, 8 checkpoints: k*750/8 rounded down.
        assert_eq!(checkpoint_steps(750, Some(8), None).unwrap(), vec![0, 93, 187, 281, 375, 468, 562, 656, 750]);
        assert_eq!(checkpoint_steps(10, None, Some(4)).unwrap(), vec![0, 4, 8, 10]);
        assert!(checkpoint_steps(10, Some(2), Some(4)).is_err());
    }

    #[test]
    fn did_you_mean_finds_close_names() {
        assert_eq!(did_you_mean("womn", ["women", "black", "asian"]), Some("women"));
        assert_eq!(did_you_mean("zzzzzzzz", ["women", "black"]), None);
    }

    #[test]
    fn sweep_section_is_read_and_unknown_fields_rejected() {
        let cfg = WorldConfig::from_sweep_toml(
            "[world]\nkind = \"facts\"\nseed = 3\nexposure = { start_checkpoint = 4 }\n[other]\nx = 1\n",
        )
        .unwrap();
        assert_eq!(cfg.kind, WorldKind::Facts);
        assert_eq!(cfg.seed, 3);
        assert_eq!(cfg.exposure.unwrap().start_checkpoint, Some(4));
        let err =
            format!("{:#}", WorldConfig::from_sweep_toml("[world]\nkind = \"facts\"\nn_entites = 5\n").unwrap_err());
        assert!(err.contains("n_entites"), "{err}");
        let err = format!("{:#}", WorldConfig::from_sweep_toml("[world]\nkind = \"fact\"\n").unwrap_err());
        assert!(err.contains("fact") && err.contains("truthfulqa-corruption"), "{err}");
    }
}
