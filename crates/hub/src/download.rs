//! Filling the cache for one model revision with the `hf-hub` crate's blocking API: only the
//! files a checkpoint folder needs (JSON configs, tokenizer, safetensors weights), each one
//! skipped when the current snapshot already has it. `hf-hub` writes `blobs/{etag}.part`,
//! renames it to `blobs/{etag}` when complete, then links `snapshots/{commit}/{file}` to it
//! and writes `refs/{revision}` — python's layout.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use crate::cache::{self, INDEX, REQUIRED, SINGLE};

/// Fetched when the repository has them; their absence (404) is not an error.
const OPTIONAL: [&str; 5] = [
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// Retries of an interrupted file body (resumed from the `.part` file with a `Range` request).
const RETRIES: usize = 3;

pub(crate) struct Downloader<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub rev: &'a str,
    pub endpoint: &'a str,
    pub token: Option<String>,
    pub progress: bool,
}

impl Downloader<'_> {
    /// Download what the snapshot of `rev` lacks and return the complete snapshot folder.
    pub(crate) fn fetch(&self) -> Result<PathBuf> {
        // hf-hub links blobs into snapshots with relative symlinks computed from both paths, which
        // it requires to be absolute or relative alike: give it an absolute root.
        let root = std::path::absolute(self.root).with_context(|| format!("resolving {}", self.root.display()))?;
        let api = ApiBuilder::from_cache(Cache::new(root.clone()))
            .with_endpoint(self.endpoint.to_string())
            .with_token(self.token.clone())
            .with_progress(self.progress)
            .with_retries(RETRIES)
            .build()
            .context("building the Hugging Face hub client")?;
        let repo = api.repo(Repo::with_revision(self.id.to_string(), RepoType::Model, self.rev.to_string()));

        // hf-hub records every revision in refs/, commits included; python does not write a ref
        // for a commit, so one we caused is removed again.
        let commit_ref =
            cache::is_commit_hash(self.rev).then(|| cache::repo_folder(&root, self.id).join("refs").join(self.rev));
        let ref_existed = commit_ref.as_ref().is_some_and(|p| p.exists());
        let result = self.fetch_with(&root, &repo);
        if let (Some(p), false) = (&commit_ref, ref_existed) {
            let _ = std::fs::remove_file(p);
        }
        result
    }

    fn fetch_with(&self, root: &Path, repo: &ApiRepo) -> Result<PathBuf> {
        // Each download links its file into the snapshot of the commit the hub names for it and
        // moves refs/{rev} there. If the branch moves mid-way, files fetched earlier sit in the old
        // snapshot and the final check fails; a second pass fills the new snapshot.
        let mut missing = Vec::new();
        for _pass in 0..2 {
            self.fetch_pass(root, repo)?;
            if let Some(dir) = cache::snapshot_dir(root, self.id, self.rev)? {
                missing = cache::missing_files(&dir)?;
                if missing.is_empty() {
                    return Ok(dir);
                }
            }
        }
        bail!(
            "hub model {} (revision {}): after downloading, the snapshot in {} still lacks {}",
            self.id,
            self.rev,
            cache::repo_folder(root, self.id).display(),
            missing.join(", ")
        )
    }

    fn fetch_pass(&self, root: &Path, repo: &ApiRepo) -> Result<()> {
        for file in REQUIRED {
            self.ensure(root, repo, file, true)?;
        }
        for file in OPTIONAL {
            self.ensure(root, repo, file, false)?;
        }
        if self.ensure(root, repo, INDEX, false)? {
            let dir = cache::snapshot_dir(root, self.id, self.rev)?
                .with_context(|| format!("hub model {}: no snapshot recorded after downloading {INDEX}", self.id))?;
            for shard in cache::shard_names(&dir.join(INDEX))? {
                self.ensure(root, repo, &shard, true)?;
            }
        } else if !self.ensure(root, repo, SINGLE, false)? {
            bail!(
                "hub model {} (revision {}) has neither {INDEX} nor {SINGLE} (looked at {}): only safetensors \
                 checkpoints are supported; pickled *.bin weights are never downloaded",
                self.id,
                self.rev,
                repo.url(SINGLE)
            );
        }
        Ok(())
    }

    /// Whether the current snapshot has `file` after this call, downloading it when absent.
    /// A 404 is `Ok(false)` for an optional file and an error for a required one.
    fn ensure(&self, root: &Path, repo: &ApiRepo, file: &str, required: bool) -> Result<bool> {
        if let Some(dir) = cache::snapshot_dir(root, self.id, self.rev)? {
            if dir.join(file).is_file() {
                return Ok(true);
            }
        }
        match repo.download(file) {
            Ok(_) => Ok(true),
            Err(e) if !required && status(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.explain(file, &repo.url(file), &e)),
        }
    }

    fn explain(&self, file: &str, url: &str, e: &ApiError) -> anyhow::Error {
        let hint = match status(e) {
            Some(401 | 403) => {
                "the repository may be gated, private or misspelt: accept its terms on the hub and set HF_TOKEN"
                    .to_string()
            }
            Some(404) => "the hub has no such file at this revision: check the model id and revision".to_string(),
            _ => format!(
                "if this machine has no network, set HF_HUB_OFFLINE=1 and fill the cache elsewhere with `{}` \
                 (then copy the {} folder here), or set the model's `path` to a local checkpoint folder",
                crate::cli_command(self.id, self.rev),
                cache::repo_folder_name(self.id)
            ),
        };
        anyhow!("downloading {file} of hub model {} (revision {}) from {url} failed: {e}; {hint}", self.id, self.rev)
    }
}

/// The HTTP status behind an hf-hub error, if the server answered at all.
fn status(e: &ApiError) -> Option<u16> {
    match e {
        ApiError::RequestError(inner) => match inner.as_ref() {
            ureq::Error::Status(code, _) => Some(*code),
            ureq::Error::Transport(_) => None,
        },
        ApiError::TooManyRetries(inner) => status(inner),
        _ => None,
    }
}
