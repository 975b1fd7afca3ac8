//! The sweep runner: sweep configs (TOML, validated, with "did you mean"), the expansion of a
//! sweep into cells (models × methods × grid × seeds, plus the "final" and "retrain" reference
//! cells), `--shard I/N` partitioning, fingerprints that tell a fresh result from a stale one,
//! the atomic per-cell result store that makes a sweep resumable, and the execution of cells:
//! building or loading each world (`testbed`), running each method (`methods`) on the engine
//! (`lm`, candle), scoring it with the evaluation suite (`evals`, [`suite`]) and the `[attacks]`
//! stage. The `bench` binary is its command line.

pub mod cells;
pub mod config;
pub mod exec;
pub mod external;
pub mod fingerprint;
pub mod judge;
pub mod memplan;
pub mod quality;
pub mod relearn;
pub mod scoring;
pub mod shard;
pub mod store;
pub mod suite;

pub use cells::{expand, Cell, REFERENCE_FINAL, REFERENCE_KIND, REFERENCE_RETRAIN};
pub use config::{
    load_sweep, load_sweep_with, parse_sweep, resolve_data_dir, Dtype, MethodSpec, ModelSource, ModelSpec, Registry,
    Sweep, TrainTable, KNOWN_METHOD_KINDS, KNOWN_METHOD_PARAMS, KNOWN_METRICS, KNOWN_WORLD_KINDS, TRAIN_KEYS,
};
pub use fingerprint::{FieldChange, Fingerprint, SweepFingerprints};
pub use shard::Shard;
pub use store::{
    format_dry_run, resolved_config, write_atomic, CellCheck, CellResult, CellState, CellStatus, Direction,
    MetricRecord, Provenance, ResultStore, Timings, SCHEMA_VERSION,
};
