//! Helpers shared by the report tests that build results by hand (`relearn.rs`,
//! `membership.rs`, `reproduction.rs`): one cell file per (method, world) with plain metric
//! records, and finding sections and table lines in the written Markdown.

use std::path::Path;

use serde_json::json;

/// Writes `DIR/m-METHOD-wWORLD.json`: an ok cell of model `m`, seed 0, with the records
/// `recs` (name, value), each with `direction` as the runner writes it.
#[allow(dead_code)] // not every test file uses every helper
pub fn write_cell(
    dir: &Path,
    method: &str,
    kind: &str,
    world: u64,
    recs: &[(String, f64)],
    direction: serde_json::Value,
) {
    write_cell_in_world(dir, method, kind, world, recs, direction, json!({}));
}

/// [`write_cell`] with `resolved_config.world` = `world_config` (e.g. `{"kind": "tofu",
/// "forget": "forget01"}`).
#[allow(dead_code)] // not every test file uses every helper
pub fn write_cell_in_world(
    dir: &Path,
    method: &str,
    kind: &str,
    world: u64,
    recs: &[(String, f64)],
    direction: serde_json::Value,
    world_config: serde_json::Value,
) {
    let mut m = serde_json::Map::new();
    for (name, value) in recs {
        m.insert(name.clone(), json!({ "direction": direction, "value": value, "per_example": [], "example_ids": [] }));
    }
    let id = format!("m-{method}-w{world}");
    let body = json!({
        "schema_version": 1, "sweep": "t",
        "cell": { "id": id, "key": id, "method": method, "kind": kind, "params": {}, "model": "m", "seed": 0, "world_seed": world },
        "status": "ok", "metrics": m, "resolved_config": { "world": world_config },
        "provenance": { "crate_version": "0.0.0", "git_commit": null },
        "timings": { "started_unix": 0.0, "finished_unix": 1.0, "stages": { "unlearn": 2.0 } },
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{id}.json")), body.to_string()).unwrap();
}

/// The text from the first `from` up to the next `to` (or the end).
#[allow(dead_code)] // not every test file uses every helper
pub fn section<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let start = text.find(from).unwrap_or_else(|| panic!("no {from:?} in\n{text}"));
    let rest = &text[start..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

/// The first line that starts with `start`.
pub fn line_of<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line {start:?} in\n{text}"))
}
