//! Incremental safetensors writer: the header is computed up front from known dtypes and
//! shapes, then tensor bytes are streamed in, so no tensor need ever be whole in memory.
//!
//! Format (<https://github.com/huggingface/safetensors>): 8-byte little-endian header length
//! N, then N bytes of JSON `{"__metadata__": {...}, "name": {"dtype", "shape",
//! "data_offsets": [begin, end]}, ...}` padded with spaces to a multiple of 8, then the data.
//! Tensors are laid out like `safetensors.serialize`: by dtype alignment (largest first), then
//! by name, so every tensor starts aligned to its element size.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use safetensors::Dtype;

/// Writes one safetensors file; tensor data must arrive in [`SafetensorsWriter::order`].
pub struct SafetensorsWriter {
    path: PathBuf,
    out: BufWriter<File>,
    order: Vec<String>,
    /// End offset (in the data section) of each tensor in `order`.
    ends: Vec<u64>,
    /// Data bytes written so far (sequentially with `write`, or positionally with `write_at`).
    written: u64,
    positional: std::sync::atomic::AtomicU64,
    header_bytes: u64,
}

impl SafetensorsWriter {
    /// Creates `path` and writes the header for `tensors` (name, dtype, shape).
    ///
    /// `metadata` goes into `__metadata__` next to `"format": "pt"` (keys sorted, so the
    /// file is byte-for-byte deterministic).
    pub fn create(
        path: &Path,
        tensors: &[(String, Dtype, Vec<usize>)],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self> {
        let mut sorted: Vec<&(String, Dtype, Vec<usize>)> = tensors.iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for pair in sorted.windows(2) {
            ensure!(pair[0].0 != pair[1].0, "tensor {} listed twice for {}", pair[0].0, path.display());
        }

        let mut meta = metadata.clone();
        meta.entry("format".to_string()).or_insert_with(|| "pt".to_string());
        let mut header = String::from("{\"__metadata__\":");
        header.push_str(&serde_json::to_string(&meta)?);
        let mut offset: u64 = 0;
        let mut order = Vec::with_capacity(sorted.len());
        let mut ends = Vec::with_capacity(sorted.len());
        for (name, dtype, shape) in sorted {
            ensure!(name != "__metadata__", "a tensor cannot be named __metadata__");
            let numel = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
            let bits = numel.and_then(|n| n.checked_mul(dtype.bitsize() as u64));
            let bits = bits.with_context(|| format!("tensor {name}: shape {shape:?} overflows"))?;
            ensure!(bits % 8 == 0, "tensor {name}: {shape:?} of {dtype} is not a whole number of bytes");
            let end = offset + bits / 8;
            header.push(',');
            header.push_str(&serde_json::to_string(name)?);
            header.push_str(&format!(
                ":{{\"dtype\":\"{dtype}\",\"shape\":{},\"data_offsets\":[{offset},{end}]}}",
                serde_json::to_string(shape)?
            ));
            offset = end;
            order.push(name.clone());
            ends.push(end);
        }
        header.push('}');
        while header.len() % 8 != 0 {
            header.push(' ');
        }
        // Self-check against the reference parser (validates offsets and sizes).
        let _: safetensors::tensor::Metadata = serde_json::from_str(&header)
            .with_context(|| format!("internal error: invalid safetensors header for {}", path.display()))?;

        let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let header_bytes = 8 + header.len() as u64;
        out.write_all(&(header.len() as u64).to_le_bytes())
            .and_then(|()| out.write_all(header.as_bytes()))
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            order,
            ends,
            written: 0,
            positional: std::sync::atomic::AtomicU64::new(0),
            header_bytes,
        })
    }

    /// The order in which tensor data must be written.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// Appends data bytes (of the current tensor, continuing into the next ones).
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let total = self.ends.last().copied().unwrap_or(0);
        ensure!(
            self.written + bytes.len() as u64 <= total,
            "{}: {} more data bytes than the header declares",
            self.path.display(),
            self.written + bytes.len() as u64 - total
        );
        self.out.write_all(bytes).with_context(|| format!("cannot write {}", self.path.display()))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// The byte range of tensor `i` of [`SafetensorsWriter::order`] in the data section.
    pub(crate) fn data_range(&self, i: usize) -> std::ops::Range<u64> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    /// Writes `bytes` at `offset` of the data section with a positional write, from any
    /// thread. Must not be mixed with [`SafetensorsWriter::write`]; every data byte must be
    /// written exactly once (the count is checked by `finish`).
    #[cfg(unix)]
    pub(crate) fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let total = self.ends.last().copied().unwrap_or(0);
        ensure!(
            offset + bytes.len() as u64 <= total,
            "{}: write of {} bytes at {offset} is past the {total} data bytes the header declares",
            self.path.display(),
            bytes.len()
        );
        ensure!(self.written == 0, "{}: positional and sequential writes mixed", self.path.display());
        self.out
            .get_ref()
            .write_all_at(bytes, self.header_bytes + offset)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.positional.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Checks all declared data was written, flushes and syncs; returns the file size.
    pub fn finish(self) -> Result<u64> {
        self.finish_with(true)
    }

    /// [`SafetensorsWriter::finish`], with the `fsync` only when `sync`.
    pub(crate) fn finish_with(mut self, sync: bool) -> Result<u64> {
        self.written += self.positional.load(std::sync::atomic::Ordering::Relaxed);
        let total = self.ends.last().copied().unwrap_or(0);
        if self.written != total {
            let pos = self.ends.partition_point(|&e| e <= self.written);
            anyhow::bail!(
                "{}: only {} of {total} data bytes written (stopped in tensor {})",
                self.path.display(),
                self.written,
                self.order.get(pos).map_or("?", String::as_str)
            );
        }
        let file = self
            .out
            .into_inner()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {}", self.path.display(), e.error()))?;
        if sync {
            file.sync_all().with_context(|| format!("cannot sync {}", self.path.display()))?;
        }
        Ok(self.header_bytes + total)
    }
}
