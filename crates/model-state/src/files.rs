//! Opening a model-state folder: resolve single or sharded safetensors weights, mmap every
//! file and list its tensors.
//!
//! Follows the Hugging Face `transformers` conventions: `model.safetensors` is preferred when
//! present, otherwise `model.safetensors.index.json` with a `weight_map` from tensor name to
//! shard file. Pickle checkpoints (`pytorch_model.bin`, `*.pt`, ...) are refused, never loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

/// Single-file weights name.
pub(crate) const SINGLE_FILE: &str = "model.safetensors";
/// Shard index name.
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

/// Extensions of pickle checkpoints, which we refuse to load.
const PICKLE_EXTENSIONS: &[&str] = &["bin", "pt", "pth", "ckpt", "pkl"];

/// One tensor of a model state: where it lives and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Index into [`StateFiles::shard_paths`].
    pub shard: usize,
    /// Byte range of the data inside the shard file (absolute, header included).
    pub file_range: Range<usize>,
}

impl TensorEntry {
    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of data bytes.
    pub fn byte_len(&self) -> usize {
        self.file_range.len()
    }
}

struct Shard {
    path: PathBuf,
    file: File,
    mmap: Mmap,
}

/// A model-state folder with its weight files memory-mapped.
///
/// Opening checks every file's safetensors header against its length, so a truncated or
/// corrupt file is reported (by name) here rather than half-way through a computation.
pub struct StateFiles {
    dir: PathBuf,
    sharded: bool,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, TensorEntry>,
}

impl std::fmt::Debug for StateFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateFiles")
            .field("dir", &self.dir)
            .field("shards", &self.shard_paths())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl StateFiles {
    /// Opens the model state in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        ensure!(dir.exists(), "model state folder {} does not exist", dir.display());
        ensure!(dir.is_dir(), "model state {} is not a folder", dir.display());
        let config = dir.join("config.json");
        ensure!(
            config.is_file(),
            "no config.json in model state folder {} (expected a Hugging Face checkpoint folder)",
            dir.display()
        );

        let single = dir.join(SINGLE_FILE);
        let index = dir.join(INDEX_FILE);
        if single.is_file() {
            let shard = open_shard(&single)?;
            let mut tensors = BTreeMap::new();
            for (name, entry) in read_entries(&shard, 0)? {
                tensors.insert(name, entry);
            }
            return Ok(Self { dir: dir.to_path_buf(), sharded: false, shards: vec![shard], tensors });
        }
        if index.is_file() {
            return Self::open_sharded(dir, &index);
        }
        bail!("{}", missing_weights_message(dir))
    }

    fn open_sharded(dir: &Path, index: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(index).with_context(|| format!("cannot read shard index {}", index.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("shard index {} is not valid JSON", index.display()))?;
        let weight_map = json
            .get("weight_map")
            .and_then(|v| v.as_object())
            .with_context(|| format!("shard index {} has no \"weight_map\" object", index.display()))?;

        // tensor name -> shard file name, in name order.
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for (name, file) in weight_map {
            let file = file
                .as_str()
                .with_context(|| format!("shard index {}: weight_map[{name:?}] is not a file name", index.display()))?;
            ensure!(
                !file.contains('/') && !file.contains('\\') && file != ".." && file != ".",
                "shard index {}: weight_map[{name:?}] = {file:?} is not a plain file name in the folder",
                index.display()
            );
            wanted.insert(name.clone(), file.to_string());
        }
        let files: BTreeSet<&String> = wanted.values().collect();

        let mut shards = Vec::with_capacity(files.len());
        let mut tensors = BTreeMap::new();
        for file in files {
            let path = dir.join(file);
            ensure!(
                path.is_file(),
                "shard index {} names shard {file} which does not exist in {}",
                index.display(),
                dir.display()
            );
            let shard = open_shard(&path)?;
            let shard_id = shards.len();
            for (name, entry) in read_entries(&shard, shard_id)? {
                match wanted.get(&name) {
                    Some(f) if f == file => {}
                    Some(f) => bail!(
                        "tensor {name} is in shard {} but the index {} places it in {f}",
                        path.display(),
                        index.display()
                    ),
                    None => bail!(
                        "tensor {name} is in shard {} but not listed in the index {}",
                        path.display(),
                        index.display()
                    ),
                }
                tensors.insert(name, entry);
            }
            shards.push(shard);
        }
        for (name, file) in &wanted {
            ensure!(
                tensors.contains_key(name),
                "shard index {} places tensor {name} in {file}, but that shard does not contain it",
                index.display()
            );
        }
        Ok(Self { dir: dir.to_path_buf(), sharded: true, shards, tensors })
    }

    /// The folder this state was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the weights are sharded (an index file) rather than one `model.safetensors`.
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    /// All tensors, by name.
    pub fn tensors(&self) -> &BTreeMap<String, TensorEntry> {
        &self.tensors
    }

    /// One tensor's entry.
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// Paths of the weight files, indexed by [`TensorEntry::shard`].
    pub fn shard_paths(&self) -> Vec<&Path> {
        self.shards.iter().map(|s| s.path.as_path()).collect()
    }

    /// Path of the weight file holding `entry`.
    pub fn path_of(&self, entry: &TensorEntry) -> &Path {
        &self.shards[entry.shard].path
    }

    /// Total bytes of tensor data (headers excluded).
    pub fn data_bytes(&self) -> u64 {
        self.tensors.values().map(|e| e.byte_len() as u64).sum()
    }

    /// The raw little-endian bytes of tensor `name`, straight from the memory map.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let entry = self
            .tensors
            .get(name)
            .with_context(|| format!("no tensor {name} in model state {}", self.dir.display()))?;
        Ok(self.bytes(entry, 0..entry.byte_len()))
    }

    /// Bytes `range` (relative to the tensor's data start) of `entry`.
    pub(crate) fn bytes(&self, entry: &TensorEntry, range: Range<usize>) -> &[u8] {
        let start = entry.file_range.start + range.start;
        let end = entry.file_range.start + range.end;
        &self.shards[entry.shard].mmap[start..end]
    }

    /// Reads bytes `range` of `entry` into `buf` (of the same length) with positional reads,
    /// like `cat` does: no page faults and nothing added to this process's resident set, and
    /// safe to call from several threads at once.
    #[cfg(unix)]
    pub(crate) fn read_into(&self, entry: &TensorEntry, range: Range<usize>, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let shard = &self.shards[entry.shard];
        let start = (entry.file_range.start + range.start) as u64;
        shard
            .file
            .read_exact_at(buf, start)
            .with_context(|| format!("cannot read {} bytes at {start} of {}", buf.len(), shard.path.display()))
    }

    /// Drops the pages of bytes `range` of `entry` from this process's resident set.
    ///
    /// Pages of a file mapping that have been read count in the process RSS until unmapped;
    /// streaming a 15 GB model would otherwise leave it all "resident" (reclaimable, but
    /// alarming and counted by cgroups). Best effort: errors are ignored.
    pub(crate) fn release(&self, entry: &TensorEntry, range: Range<usize>) {
        #[cfg(unix)]
        {
            let len = range.len();
            if len == 0 {
                return;
            }
            let start = entry.file_range.start + range.start;
            // SAFETY: the map is a read-only private file mapping we never write through.
            // MADV_DONTNEED only drops its pages; a later access faults them back in from the
            // file with identical contents, so no live slice observes a change.
            let _ = unsafe {
                self.shards[entry.shard].mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, len)
            };
        }
        #[cfg(not(unix))]
        let _ = (entry, range);
    }
}

/// Names, dtypes and shapes of every tensor in the model state in `dir`.
pub fn tensor_names_and_shapes(dir: &Path) -> Result<BTreeMap<String, (Dtype, Vec<usize>)>> {
    let state = StateFiles::open(dir)?;
    Ok(state.tensors.iter().map(|(n, e)| (n.clone(), (e.dtype, e.shape.clone()))).collect())
}

fn open_shard(path: &Path) -> Result<Shard> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: the usual caveat of memory-mapped files applies: another process truncating or
    // rewriting the file while it is mapped is undefined behaviour. Checkpoint folders are
    // treated as immutable inputs; outputs are always written to a fresh temporary folder.
    let mmap = unsafe { Mmap::map(&file) }.with_context(|| format!("cannot mmap {}", path.display()))?;
    Ok(Shard { path: path.to_path_buf(), file, mmap })
}

/// Parses and validates a shard's header; returns its tensors with absolute byte ranges.
fn read_entries(shard: &Shard, shard_id: usize) -> Result<Vec<(String, TensorEntry)>> {
    let (header_len, metadata) = SafeTensors::read_metadata(&shard.mmap).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a valid safetensors file ({} bytes; truncated or corrupt?): {e:?}",
            shard.path.display(),
            shard.mmap.len()
        )
    })?;
    let data_start = 8 + header_len;
    let mut entries: Vec<(String, TensorEntry)> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let (s, e) = info.data_offsets;
            let entry = TensorEntry {
                dtype: info.dtype,
                shape: info.shape.clone(),
                shard: shard_id,
                file_range: data_start + s..data_start + e,
            };
            (name, entry)
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// Explains why a folder has no usable weights.
fn missing_weights_message(dir: &Path) -> String {
    let mut safetensors = Vec::new();
    let mut pickles = Vec::new();
    if let Ok(listing) = std::fs::read_dir(dir) {
        for entry in listing.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            match path.extension().and_then(|e| e.to_str()) {
                Some("safetensors") => safetensors.push(name),
                Some(ext) if PICKLE_EXTENSIONS.contains(&ext) => pickles.push(name),
                _ => {}
            }
        }
    }
    safetensors.sort();
    pickles.sort();
    if !safetensors.is_empty() {
        format!(
            "model state folder {} has {} but neither {SINGLE_FILE} nor {INDEX_FILE}",
            dir.display(),
            safetensors.join(", ")
        )
    } else if !pickles.is_empty() {
        format!(
            "model state folder {} has only pickle weights ({}); pickle checkpoints are never \
             loaded; convert to safetensors",
            dir.display(),
            pickles.join(", ")
        )
    } else {
        format!("no weights in model state folder {}: expected {SINGLE_FILE} or {INDEX_FILE}", dir.display())
    }
}
