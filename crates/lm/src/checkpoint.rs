//! Writing Hugging Face checkpoint folders (`config.json`, `model.safetensors`,
//! `tokenizer.json`), atomically: at every instant the destination holds either the complete
//! old checkpoint or the complete new one, except between the two renames of a replacement,
//! when the old one sits complete under its sibling name `.<name>.old-<pid>-<n>` (see
//! [`write_atomically`]).

use crate::model::CausalLm;
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Files copied along with the weights when present.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// Save `model` to `dir` (replacing it), copying tokenizer files from `tokenizer_from`. The
/// weights are written in the dtype of the checkpoint the model was loaded from (f32 for a
/// freshly initialised one), whatever dtype they had in memory; `torch_dtype` says which.
/// LoRA adapters are merged into the weights they adapt (write the adapters themselves with
/// [`crate::lora::save_adapter`]).
pub fn save(model: &CausalLm, dir: &Path, tokenizer_from: Option<&Path>) -> Result<()> {
    save_as(model, dir, tokenizer_from, model.params.source_dtype)
}

/// [`save`] with the weights written in `dtype` (f32, bf16 or f16).
pub fn save_as(model: &CausalLm, dir: &Path, tokenizer_from: Option<&Path>, dtype: candle_core::DType) -> Result<()> {
    if !matches!(dtype, candle_core::DType::F32 | candle_core::DType::BF16 | candle_core::DType::F16) {
        bail!("{}: checkpoints are written in f32, bf16 or f16, not {dtype:?}", dir.display());
    }
    write_atomically(dir, |tmp| {
        let mut cfg = model.cfg.clone();
        cfg.torch_dtype = Some(crate::weights::torch_dtype_name(dtype).into());
        cfg.model_type = Some(model.arch.model_type().into());
        std::fs::write(tmp.join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
        // LoRA adapters merged into their weights (W + s·B·A): a plain dense checkpoint
        let tensors: HashMap<String, Tensor> = model
            .merged_state()?
            .into_iter()
            .map(|(k, v)| Ok((k, v.detach().to_dtype(dtype)?)))
            .collect::<Result<_>>()?;
        // `__metadata__ = {"format": "pt"}` as `transformers` writes it: its
        // `from_pretrained` reads the format from there and fails on a file without it.
        let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
        safetensors::serialize_to_file(tensors.iter(), Some(metadata), &tmp.join("model.safetensors"))
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .context("serializing model.safetensors")?;
        if let Some(src) = tokenizer_from {
            copy_tokenizer_files(src, tmp)?;
        }
        Ok(())
    })
    .with_context(|| format!("{}: cannot write checkpoint", dir.display()))
}

/// Builds a checkpoint folder with `build` and puts it at `dir`, replacing what is there,
/// so that a reader of `dir` (or a crash) never sees a half-written or half-deleted folder:
///
/// 1. `build` fills a fresh sibling folder `.<name>.tmp-<pid>-<n>`; every file in it and the
///    folder itself are then fsynced. On any error it is removed and `dir` is untouched.
/// 2. An existing `dir` is renamed to `.<name>.old-<pid>-<n>`, the new folder is renamed to
///    `dir`, the parent folder is fsynced, and only then the old folder is removed. Should the
///    second rename fail, the old folder is renamed back.
///
/// Only between the two renames is nothing at `dir`; a process killed there leaves the
/// complete old checkpoint at `.<name>.old-<pid>-<n>` and the complete new one at
/// `.<name>.tmp-<pid>-<n>` (either can be renamed to `dir` by hand).
pub fn write_atomically(dir: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    write_atomically_with(dir, build, &|from, to| std::fs::rename(from, to))
}

/// [`write_atomically`] with the renames of step 2 done by `rename` (tests inject failures
/// and observe the folder between the steps).
fn write_atomically_with(
    dir: &Path,
    build: impl FnOnce(&Path) -> Result<()>,
    rename: &dyn Fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<()> {
    let (tmp, old) = siblings(dir)?;
    if dir.exists() && !dir.is_dir() {
        bail!("{} exists and is not a folder; not replacing it", dir.display());
    }
    if tmp.exists() {
        // left by a killed process whose id this one reuses
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove stale {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    if let Err(e) = build(&tmp).and_then(|()| sync_folder(&tmp)) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let parent = tmp.parent().expect("a sibling has a parent");
    if !dir.exists() {
        if let Err(e) = rename(&tmp, dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e).with_context(|| format!("cannot rename {} to {}", tmp.display(), dir.display()));
        }
        return sync_dir(parent);
    }
    if let Err(e) = rename(dir, &old) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e).with_context(|| format!("cannot move the old {} aside to {}", dir.display(), old.display()));
    }
    if let Err(e) = rename(&tmp, dir) {
        let e = anyhow::Error::new(e).context(format!("cannot rename {} to {}", tmp.display(), dir.display()));
        return match rename(&old, dir) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
            Err(back) => Err(e.context(format!(
                "and cannot put the old checkpoint back ({back}): it is complete at {}, the new one at {}",
                old.display(),
                tmp.display()
            ))),
        };
    }
    sync_dir(parent)?;
    std::fs::remove_dir_all(&old).with_context(|| {
        format!(
            "the new checkpoint is in place at {}, but the old one could not be removed from {}",
            dir.display(),
            old.display()
        )
    })
}

/// The sibling folders of `dir` that [`write_atomically`] uses: (new, old). Unique within the
/// process (a counter) and across processes (the process id).
fn siblings(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = dir.file_name().context("checkpoint path has no folder name")?.to_string_lossy();
    let tag = format!("{}-{}", std::process::id(), SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    Ok((parent.join(format!(".{name}.tmp-{tag}")), parent.join(format!(".{name}.old-{tag}"))))
}

/// fsync every file in `dir` (not recursing), then `dir` itself, so that after a crash the
/// renamed folder has its full contents.
fn sync_folder(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_file() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
    }
    sync_dir(dir)
}

/// fsync a folder (its entries: files created or renamed in it). A no-op where folders
/// cannot be opened as files (Windows).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Copy the tokenizer files that exist in `src` to `dst`.
pub fn copy_tokenizer_files(src: &Path, dst: &Path) -> Result<()> {
    for f in TOKENIZER_FILES {
        let p = src.join(f);
        if p.is_file() {
            std::fs::copy(&p, dst.join(f)).with_context(|| format!("cannot copy {}", p.display()))?;
        }
    }
    Ok(())
}

/// Whether `dir` looks like a complete checkpoint folder.
pub fn is_complete(dir: &Path) -> bool {
    dir.join("config.json").is_file()
        && (dir.join("model.safetensors").is_file() || dir.join("model.safetensors.index.json").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tiny_config;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    /// Every file of a folder with its bytes.
    fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
            .collect()
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    /// File name → bytes.
    type Files = BTreeMap<String, Vec<u8>>;

    /// A parent folder with the checkpoint `ck` of model seed 1 in it, and the files of the
    /// checkpoint of seed 2 (what the tests then write over it).
    fn setup() -> (tempfile::TempDir, PathBuf, Files, Files) {
        let root = tempfile::tempdir().unwrap();
        let new = root.path().join("new");
        save(
            &CausalLm::init(tiny_config(crate::Arch::Llama), 2, &candle_core::Device::Cpu, false).unwrap(),
            &new,
            None,
        )
        .unwrap();
        let new_files = snapshot(&new);
        std::fs::remove_dir_all(&new).unwrap();
        let dir = root.path().join("ck");
        save(
            &CausalLm::init(tiny_config(crate::Arch::Llama), 1, &candle_core::Device::Cpu, false).unwrap(),
            &dir,
            None,
        )
        .unwrap();
        let old_files = snapshot(&dir);
        assert_ne!(old_files, new_files);
        (root, dir, old_files, new_files)
    }

    fn write_files(files: &BTreeMap<String, Vec<u8>>) -> impl FnOnce(&Path) -> Result<()> + '_ {
        move |tmp: &Path| {
            for (name, bytes) in files {
                std::fs::write(tmp.join(name), bytes)?;
            }
            Ok(())
        }
    }

    /// Issue 18: the old checkpoint was deleted before the new one was renamed into place, so
    /// a failing rename lost both. Now the old one is moved aside and put back.
    #[test]
    fn a_failing_final_rename_puts_the_old_checkpoint_back() {
        let (root, dir, old_files, new_files) = setup();
        let rename = |from: &Path, to: &Path| {
            if to == dir && from.file_name().unwrap().to_string_lossy().starts_with(".ck.tmp-") {
                return Err(std::io::Error::other("injected rename failure"));
            }
            std::fs::rename(from, to)
        };
        let e = format!("{:#}", write_atomically_with(&dir, write_files(&new_files), &rename).unwrap_err());
        assert!(e.contains("injected rename failure"), "{e}");
        assert_eq!(snapshot(&dir), old_files, "the old checkpoint is not intact");
        assert_eq!(listing(root.path()), ["ck"], "temporary folders left behind");
    }

    /// Issue 18: before and after each rename of a replacement, `ck` holds the complete old
    /// or the complete new checkpoint, or (between the two) nothing while the complete old
    /// one is at `.ck.old-<pid>-<n>`; afterwards only the new one is left.
    #[test]
    fn at_every_step_of_a_replacement_a_complete_checkpoint_is_at_the_destination_or_its_old_sibling() {
        let (root, dir, old_files, new_files) = setup();
        let steps = Mutex::new(vec![]);
        let check = |when: &str| {
            let at_dir = dir.exists().then(|| snapshot(&dir));
            let old_sibling: Vec<String> =
                listing(root.path()).into_iter().filter(|n| n.starts_with(".ck.old-")).collect();
            match at_dir {
                Some(files) => {
                    assert!(files == old_files || files == new_files, "{when}: ck holds a mix of the checkpoints")
                }
                None => {
                    assert_eq!(old_sibling.len(), 1, "{when}: nothing at ck and no old sibling");
                    assert_eq!(
                        snapshot(&root.path().join(&old_sibling[0])),
                        old_files,
                        "{when}: the old sibling is incomplete"
                    );
                }
            }
        };
        let rename = |from: &Path, to: &Path| {
            let name = |p: &Path| p.file_name().unwrap().to_string_lossy().split('-').next().unwrap().to_string();
            steps.lock().unwrap().push(format!("{} -> {}", name(from), name(to)));
            check("before a rename");
            let r = std::fs::rename(from, to);
            check("after a rename");
            r
        };
        write_atomically_with(&dir, write_files(&new_files), &rename).unwrap();
        assert_eq!(*steps.lock().unwrap(), ["ck -> .ck.old", ".ck.tmp -> ck"]);
        assert_eq!(snapshot(&dir), new_files);
        assert_eq!(listing(root.path()), ["ck"], "temporary folders left behind");
    }
}
