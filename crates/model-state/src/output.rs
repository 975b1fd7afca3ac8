//! Writing an output model-state folder atomically, shared by every transform that writes
//! one ([`crate::combine`], [`crate::quantize_checkpoint`]).
//!
//! The folder is built in a sibling temporary folder `.<name>.tmp-<pid>` and renamed into
//! place, so `out` never exists half-written; on error the temporary folder is removed and an
//! existing `out` is left untouched. The side files (config, tokenizer) are copied from one
//! input folder: the names in [`COPIED_FILES`], when present.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

/// Files copied from the (first) input folder into the output folder, when they exist.
pub const COPIED_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
];

/// Runs `build` on a fresh temporary folder next to `out`, then renames it to `out`.
///
/// `out` must not exist unless `overwrite`; it must not be one of `inputs` (named `what` in
/// the error: "an input term", "the input"). On any error, nothing is left at `out`.
pub(crate) fn write_folder_atomically<R>(
    out: &Path,
    overwrite: bool,
    inputs: &[&Path],
    what: &str,
    build: impl FnOnce(&Path) -> Result<R>,
) -> Result<R> {
    let name = out.file_name().with_context(|| format!("output path {} has no folder name", out.display()))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if out.exists() {
        ensure!(overwrite, "output folder {} already exists (refusing to replace it without overwrite)", out.display());
        let out_canon = out.canonicalize().with_context(|| format!("cannot resolve {}", out.display()))?;
        for dir in inputs {
            ensure!(
                dir.canonicalize().ok().as_ref() != Some(&out_canon),
                "output folder {} is also {what}; write to another folder",
                out.display()
            );
        }
    }
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create output parent folder {}", parent.display()))?;
    let tmp = parent.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("cannot remove stale temporary folder {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create temporary folder {}", tmp.display()))?;

    let result = build(&tmp).and_then(|r| replace_dir(&tmp, out, &parent, overwrite).map(|()| r));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Copies the [`COPIED_FILES`] that exist in `from` into `to`.
pub(crate) fn copy_side_files(from: &Path, to: &Path) -> Result<()> {
    for file in COPIED_FILES {
        let src = from.join(file);
        if src.is_file() {
            let dst = to.join(file);
            std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

fn replace_dir(tmp: &Path, out: &Path, parent: &Path, overwrite: bool) -> Result<()> {
    if !out.exists() {
        return std::fs::rename(tmp, out)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()));
    }
    ensure!(overwrite, "output folder {} appeared while it was being written; not replacing it", out.display());
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    std::fs::rename(out, &old)
        .with_context(|| format!("cannot move existing {} aside to {}", out.display(), old.display()))?;
    if let Err(e) = std::fs::rename(tmp, out) {
        let _ = std::fs::rename(&old, out);
        return Err(e).with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()));
    }
    if old.is_dir() {
        std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove old {}", old.display()))
    } else {
        std::fs::remove_file(&old).with_context(|| format!("cannot remove old {}", old.display()))
    }
}
