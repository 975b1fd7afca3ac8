//! The sweep runner's data side: sweep configs (TOML, validated, with "did you mean"), the
//! expansion of a sweep into cells (models × methods × grid × seeds, plus the "final" and
//! "retrain" reference cells), `--shard I/N` partitioning, and the atomic per-cell result store
//! that makes a sweep resumable.
//!
//! Invariant: this crate runs no model and no method; it knows nothing of candle or of the
//! other project crates. Execution lives in the `bench` binary, which walks the cells this
//! crate gives it and writes each result through [`store::ResultStore`].

pub mod cells;
pub mod config;
pub mod exec;
pub mod fingerprint;
pub mod quality;
pub mod scoring;
pub mod shard;
pub mod store;
pub mod suite;

pub use cells::{expand, Cell, REFERENCE_FINAL, REFERENCE_KIND, REFERENCE_RETRAIN};
pub use config::{
    load_sweep, load_sweep_with, parse_sweep, resolve_data_dir, Dtype, MethodSpec, ModelSource, ModelSpec, Registry,
    Sweep, TrainConfig, KNOWN_METHOD_KINDS, KNOWN_METHOD_PARAMS, KNOWN_METRICS, KNOWN_WORLD_KINDS, TRAIN_KEYS,
};
pub use fingerprint::{FieldChange, Fingerprint, SweepFingerprints};
pub use shard::Shard;
pub use store::{
    format_dry_run, resolved_config, write_atomic, CellCheck, CellResult, CellState, CellStatus, Direction,
    MetricRecord, Provenance, ResultStore, Timings, SCHEMA_VERSION,
};
