//! Hugging Face hub model ids → local checkpoint folders, in the cache that `huggingface_hub`
//! (python) and `huggingface-cli download` use, so a model fetched by either side is found by
//! the other. Only safetensors checkpoints are resolved: no pickle (`*.bin`, `*.pt`, `*.pth`,
//! `*.ckpt`) is ever downloaded or read, whatever the repository holds.
//!
//! # Cache layout (identical to `huggingface_hub`'s)
//!
//! ```text
//! CACHE/models--{org}--{name}/
//!     refs/{revision}            text file holding the 40-hex commit the branch/tag pointed at
//!     snapshots/{commit}/{file}  the files of that commit; in python's layout symlinks to ↓
//!     blobs/{etag}               file contents, named by their etag (sha256 for LFS files)
//! ```
//!
//! A revision that is itself a 40-hex commit hash names its snapshot folder directly (no ref is
//! read or written for it). Files are read through the symlinks, so folders made by python,
//! by `hf-hub` (this crate's downloader) or copied by hand with real files all work.
//!
//! A snapshot is *complete* when it holds `config.json`, `tokenizer.json` and the weights:
//! every shard named in `model.safetensors.index.json` when that index exists, else
//! `model.safetensors`. A complete snapshot is returned without touching the network.
//!
//! # Environment (read by [`ResolveOptions::from_env`], and by [`resolve`] for fields left `None`)
//!
//! | variable | meaning |
//! | --- | --- |
//! | `HF_HUB_CACHE` | the cache folder itself (legacy name `HUGGINGFACE_HUB_CACHE` also read) |
//! | `HF_HOME` | cache is `$HF_HOME/hub`, token file `$HF_HOME/token` |
//! | `XDG_CACHE_HOME`, `HOME` | default `HF_HOME` is `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` |
//! | `HF_HUB_OFFLINE` | `1`/`true`/`yes`/`on`: never download; a cache miss is an error saying what to run elsewhere |
//! | `HF_TOKEN` | bearer token for gated/private repositories (else the file `$HF_TOKEN_PATH` or `$HF_HOME/token`) |
//! | `HF_ENDPOINT` | hub base URL, default `https://huggingface.co` |
//!
//! # Downloading
//!
//! On a miss, and not offline, the missing files are fetched with the `hf-hub` crate's blocking
//! API (ureq + rustls): `config.json`, `tokenizer.json`, the optional `tokenizer_config.json`,
//! `generation_config.json` and `special_tokens_map.json`, then `model.safetensors.index.json`
//! and its shards, or `model.safetensors`. Each file is written to `blobs/{etag}.part`, renamed
//! to `blobs/{etag}` only once complete, and only then linked into `snapshots/{commit}/`, so a
//! killed download leaves a `.part` file (resumed by the next attempt) and never a file that
//! looks complete. Shard names taken from the index must end in `.safetensors` and be plain
//! relative paths; anything else is refused before any request is made.

mod cache;
mod download;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use cache::{is_commit_hash, missing_files, repo_folder, snapshot_dir};

/// Default hub endpoint when neither [`ResolveOptions::endpoint`] nor `HF_ENDPOINT` is set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A model on the hub: `org/name` (or a bare `name`) and an optional branch, tag or commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubModel {
    pub id: String,
    /// Branch, tag or 40-hex commit; `None` means `main`.
    pub revision: Option<String>,
}

impl HubModel {
    /// [`resolve`] this model.
    pub fn resolve(&self, opts: &ResolveOptions) -> Result<PathBuf> {
        resolve(&self.id, self.revision.as_deref(), opts)
    }
}

/// How [`resolve`] looks models up. `None` fields are read from the environment when
/// [`resolve`] runs (see the crate docs); [`ResolveOptions::from_env`] fills them all at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolveOptions {
    /// The hub cache folder (the one holding `models--*`), not `HF_HOME`.
    pub cache_dir: Option<PathBuf>,
    /// `Some(true)`: never download.
    pub offline: Option<bool>,
    /// Bearer token for gated or private repositories.
    pub token: Option<String>,
    /// Draw a progress bar on stderr while downloading.
    pub progress: bool,
    /// Hub base URL such as `https://huggingface.co` (no trailing `/`).
    pub endpoint: Option<String>,
}

impl ResolveOptions {
    /// Every field from the environment: `HF_HUB_CACHE`/`HF_HOME`, `HF_HUB_OFFLINE`, `HF_TOKEN`,
    /// `HF_ENDPOINT`; progress bars on.
    pub fn from_env() -> Self {
        Self::from_lookup(&env_lookup)
    }

    fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Self {
        ResolveOptions {
            cache_dir: Some(cache_root_with(var)),
            offline: Some(offline_with(var)),
            token: token_with(var),
            progress: true,
            endpoint: Some(endpoint_with(var)),
        }
    }
}

/// The hub cache folder as `huggingface_hub` computes it: `$HF_HUB_CACHE`, else `$HF_HOME/hub`,
/// else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_root_from_env() -> PathBuf {
    cache_root_with(&env_lookup)
}

/// Local folder with `config.json`, the safetensors weights (+ index) and `tokenizer.json` for
/// hub model `id` at `revision` (`None` = `main`): the cached snapshot when complete, else
/// downloaded into the cache first — unless offline, which is then an error that names the
/// missing files, the cache folder and the `huggingface-cli` command to run elsewhere.
pub fn resolve(id: &str, revision: Option<&str>, opts: &ResolveOptions) -> Result<PathBuf> {
    check_repo_id(id)?;
    let rev = revision.unwrap_or("main");
    check_revision(rev).with_context(|| format!("hub model {id}"))?;
    let root = match &opts.cache_dir {
        Some(dir) => dir.clone(),
        None => cache_root_from_env(),
    };

    let missing = match snapshot_dir(&root, id, rev)? {
        Some(dir) => {
            let missing = missing_files(&dir)?;
            if missing.is_empty() {
                return Ok(dir);
            }
            missing
        }
        None => vec![format!("refs/{rev} (no snapshot of this revision)")],
    };

    let offline = opts.offline.unwrap_or_else(|| offline_with(&env_lookup));
    if offline {
        bail!(
            "hub model {id} (revision {rev}) is not complete in the local Hugging Face cache {}: missing {}; \
             offline mode is on (HF_HUB_OFFLINE=1 or offline = true), so nothing is downloaded. \
             On a machine with network run `{}` and copy its {} folder into this cache, \
             or set the model's `path` to a local checkpoint folder",
            repo_folder(&root, id).display(),
            missing.join(", "),
            cli_command(id, rev),
            cache::repo_folder_name(id),
        );
    }

    let endpoint = match &opts.endpoint {
        Some(e) => e.trim_end_matches('/').to_string(),
        None => endpoint_with(&env_lookup),
    };
    let token = opts.token.clone().or_else(|| token_with(&env_lookup));
    let dl = download::Downloader { root: &root, id, rev, endpoint: &endpoint, token, progress: opts.progress };
    dl.fetch()
}

/// The shell command that fills the cache for `id` at `rev` on a machine with network.
pub fn cli_command(id: &str, rev: &str) -> String {
    format!("huggingface-cli download {id} --revision {rev} --include '*.json' '*.safetensors'")
}

fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn hf_home_with(var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(home) = var("HF_HOME") {
        return PathBuf::from(home);
    }
    let xdg = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    xdg.join("huggingface")
}

fn cache_root_with(var: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    var("HF_HUB_CACHE")
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_home_with(var).join("hub"))
}

/// `huggingface_hub`'s truth test for environment flags.
fn is_true(value: &str) -> bool {
    matches!(value.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

fn offline_with(var: &dyn Fn(&str) -> Option<String>) -> bool {
    var("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v))
}

fn endpoint_with(var: &dyn Fn(&str) -> Option<String>) -> String {
    var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()).trim_end_matches('/').to_string()
}

fn token_with(var: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(t) = var("HF_TOKEN") {
        return Some(t.trim().to_string());
    }
    let path = var("HF_TOKEN_PATH").map(PathBuf::from).unwrap_or_else(|| hf_home_with(var).join("token"));
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// `org/name` or `name`, each part of `[A-Za-z0-9._-]`, without `--` or `..` (python's rules,
/// which also keep the id safe to splice into a folder name).
pub fn check_repo_id(id: &str) -> Result<()> {
    let parts: Vec<&str> = id.split('/').collect();
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !p.starts_with(['.', '-'])
            && !p.ends_with(['.', '-'])
    };
    if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) || id.contains("--") || id.contains("..") {
        bail!("hub model id {id:?} is not of the form `org/name` (letters, digits, `.`, `_`, `-`; no `--` or `..`)");
    }
    Ok(())
}

/// A branch, tag or commit: a relative path without `.`/`..` parts (it becomes `refs/{rev}`).
pub fn check_revision(rev: &str) -> Result<()> {
    let bad = rev.is_empty()
        || rev.starts_with('/')
        || rev.contains('\\')
        || rev.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        bail!("revision {rev:?} is not a branch, tag or commit name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[track_caller]
    fn check_root(env: &[(&str, &str)], expected: &str) {
        assert_eq!(cache_root_with(&lookup(env)), PathBuf::from(expected), "env {env:?}");
    }

    #[test]
    fn cache_root_precedence_matches_huggingface_hub() {
        check_root(&[("HOME", "/h")], "/h/.cache/huggingface/hub");
        check_root(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")], "/x/huggingface/hub");
        check_root(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/hf")], "/hf/hub");
        check_root(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")], "/legacy");
        check_root(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy"), ("HF_HUB_CACHE", "/c")], "/c");
    }

    #[test]
    fn offline_flag_values() {
        for (v, expected) in
            [("1", true), ("TRUE", true), ("yes", true), ("on", true), ("0", false), ("false", false), ("no", false)]
        {
            assert_eq!(offline_with(&lookup(&[("HF_HUB_OFFLINE", v)])), expected, "HF_HUB_OFFLINE={v}");
        }
        assert!(!offline_with(&lookup(&[])));
    }

    #[test]
    fn from_lookup_fills_every_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file_token\n").unwrap();
        let home = dir.path().to_str().unwrap();
        let o = ResolveOptions::from_lookup(&lookup(&[
            ("HF_HOME", home),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_ENDPOINT", "http://h:1/"),
        ]));
        assert_eq!(o.cache_dir, Some(dir.path().join("hub")));
        assert_eq!(o.offline, Some(true));
        assert_eq!(o.token.as_deref(), Some("hf_file_token"), "token file under HF_HOME");
        assert_eq!(o.endpoint.as_deref(), Some("http://h:1"));
        let o = ResolveOptions::from_lookup(&lookup(&[("HF_HOME", home), ("HF_TOKEN", "hf_env")]));
        assert_eq!(o.token.as_deref(), Some("hf_env"), "HF_TOKEN wins over the token file");
        assert_eq!(o.offline, Some(false));
        assert_eq!(o.endpoint.as_deref(), Some(DEFAULT_ENDPOINT));
    }

    #[test]
    fn repo_ids_and_revisions_are_validated() {
        for ok in ["gpt2", "Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B", "a_b/c.d"] {
            assert!(check_repo_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/x", "a/b/c", "a/../b", "a--b/c", "a/b c", "../etc", "a/.b", "a/b-"] {
            assert!(check_repo_id(bad).is_err(), "{bad:?} should be rejected");
        }
        for ok in ["main", "v1.0", "refs/pr/1", "0123456789abcdef0123456789abcdef01234567"] {
            assert!(check_revision(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/main", "a/../b", "..", "a//b", "a\\b"] {
            assert!(check_revision(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
