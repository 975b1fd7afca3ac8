//! Reading the `huggingface_hub` cache layout: repository folder names, `refs/{revision}` →
//! `snapshots/{commit}`, and which checkpoint files a snapshot still lacks. Reads only; all
//! paths are followed through symlinks (python's snapshots link into `blobs/`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Files every resolved folder must hold besides the weights.
pub(crate) const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];
pub(crate) const INDEX: &str = "model.safetensors.index.json";
pub(crate) const SINGLE: &str = "model.safetensors";

/// `models--{org}--{name}`, the folder name python gives a model repository.
pub(crate) fn repo_folder_name(id: &str) -> String {
    format!("models--{}", id.replace('/', "--"))
}

/// `CACHE/models--{org}--{name}`.
pub fn repo_folder(cache_root: &Path, id: &str) -> PathBuf {
    cache_root.join(repo_folder_name(id))
}

/// Whether `rev` is a full commit hash (40 lowercase hex digits), which names a snapshot folder
/// directly.
pub fn is_commit_hash(rev: &str) -> bool {
    rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The snapshot folder for `rev`: `snapshots/{rev}` when `rev` is a commit hash, else the commit
/// read from `refs/{rev}`. `Ok(None)` when the ref does not exist; an error when it exists but
/// does not hold a commit hash. The folder itself may be absent or incomplete.
pub fn snapshot_dir(cache_root: &Path, id: &str, rev: &str) -> Result<Option<PathBuf>> {
    let repo = repo_folder(cache_root, id);
    if is_commit_hash(rev) {
        return Ok(Some(repo.join("snapshots").join(rev)));
    }
    let ref_path = repo.join("refs").join(rev);
    let text = match std::fs::read_to_string(&ref_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", ref_path.display())),
    };
    let commit = text.trim();
    if !is_commit_hash(commit) {
        bail!("{} should hold a 40-hex commit hash, found {commit:?}", ref_path.display());
    }
    Ok(Some(repo.join("snapshots").join(commit)))
}

/// The checkpoint files `dir` lacks, in a fixed order: `config.json`, `tokenizer.json`, then
/// every shard named by `model.safetensors.index.json` (when the index exists) or
/// `model.safetensors`. Empty means complete. A malformed index is an error naming it.
pub fn missing_files(dir: &Path) -> Result<Vec<String>> {
    let mut missing: Vec<String> = REQUIRED.iter().filter(|f| !dir.join(f).is_file()).map(|f| f.to_string()).collect();
    let index = dir.join(INDEX);
    if index.is_file() {
        for shard in shard_names(&index)? {
            if !dir.join(&shard).is_file() {
                missing.push(shard);
            }
        }
    } else if !dir.join(SINGLE).is_file() {
        missing.push(format!("{SINGLE} (or {INDEX})"));
    }
    Ok(missing)
}

/// The distinct shard files of a safetensors index (its `weight_map` values), sorted. Each must
/// be a plain relative path ending in `.safetensors`, so a hostile or broken index can neither
/// escape the snapshot folder nor make us fetch a pickle.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).with_context(|| format!("reading {}", index.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{}: expected an object field `weight_map`", index.display()))?;
    let mut shards = BTreeSet::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .with_context(|| format!("{}: weight_map[{tensor:?}] should be a file name", index.display()))?;
        check_shard_name(file).with_context(|| format!("{}: weight_map[{tensor:?}]", index.display()))?;
        shards.insert(file.to_string());
    }
    if shards.is_empty() {
        bail!("{}: weight_map is empty", index.display());
    }
    Ok(shards.into_iter().collect())
}

fn check_shard_name(file: &str) -> Result<()> {
    let plain = !file.starts_with('/')
        && !file.contains('\\')
        && file.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if !plain || !file.ends_with(".safetensors") {
        bail!("shard {file:?} is not a relative `*.safetensors` file name (pickled weights are never loaded)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_hashes() {
        assert!(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_hash("0123456789ABCDEF0123456789abcdef01234567"), "python's hashes are lowercase");
        assert!(!is_commit_hash("main"));
        assert!(!is_commit_hash("0123456789abcdef0123456789abcdef0123456"), "39 digits");
    }

    #[test]
    fn folder_names_follow_python() {
        assert_eq!(repo_folder_name("Qwen/Qwen2.5-0.5B"), "models--Qwen--Qwen2.5-0.5B");
        assert_eq!(repo_folder_name("gpt2"), "models--gpt2");
    }

    #[test]
    fn shard_names_refuse_pickles_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join(INDEX);
        let write = |map: &str| std::fs::write(&index, format!(r#"{{"metadata":{{}},"weight_map":{map}}}"#)).unwrap();

        write(r#"{"a":"m-2.safetensors","b":"m-1.safetensors","c":"m-2.safetensors"}"#);
        assert_eq!(shard_names(&index).unwrap(), ["m-1.safetensors", "m-2.safetensors"]);

        for bad in [
            r#"{"a":"pytorch_model-1.bin"}"#,
            r#"{"a":"../x.safetensors"}"#,
            r#"{"a":"/x.safetensors"}"#,
            r#"{}"#,
            r#"{"a":3}"#,
        ] {
            write(bad);
            let err = format!("{:#}", shard_names(&index).unwrap_err());
            assert!(err.contains(INDEX), "error names the index: {err}");
        }
        std::fs::write(&index, "{not json").unwrap();
        assert!(format!("{:#}", shard_names(&index).unwrap_err()).contains("not valid JSON"));
    }

    #[test]
    fn ref_with_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let refs = repo_folder(dir.path(), "o/n").join("refs");
        std::fs::create_dir_all(&refs).unwrap();
        assert_eq!(snapshot_dir(dir.path(), "o/n", "main").unwrap(), None, "no ref yet");
        std::fs::write(refs.join("main"), "not-a-hash\n").unwrap();
        let err = format!("{:#}", snapshot_dir(dir.path(), "o/n", "main").unwrap_err());
        assert!(err.contains("refs/main") && err.contains("not-a-hash"), "{err}");
    }
}
