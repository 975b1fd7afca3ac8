//! Cell expansion: a sweep's cross product models × world seeds × methods × each method's grid
//! × method seeds, plus the reference cells every sweep has — "final" (θ_D), "retrain" (the
//! oracle) and, with `world.noise_floor`, "retrain_alt" (a second oracle with another data
//! order: the noise floor) — per model and world seed (a reference model does not depend on
//! the method seed: it runs once, under the first one).
//!
//! Order is deterministic: models in config order; for each, world seeds in config order; for
//! each, the reference cells (final, retrain, retrain_alt), then methods by
//! name, grid points in odometer order (axes by key, values as written, the last axis fastest),
//! method seeds innermost.
//!
//! A cell's readable key is `METHOD[/k=v,k=v…]/world=W/seed=S/model=M` (all hyperparameters,
//! fixed and grid, by key); its id — used as its file name — is the key made filename-safe plus the first
//! 8 hex digits of the key's SHA-256, so two keys that sanitise alike still get distinct ids.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::Sweep;

pub use results_schema::{REFERENCE_FINAL, REFERENCE_KIND, REFERENCE_RETRAIN, REFERENCE_RETRAIN_ALT};

/// One unit of work: a model, a method at one grid point, a seed (the layout of
/// `results_schema::Cell`, with the config's TOML values as hyperparameters). Made by [`cell`].
pub type Cell = results_schema::Cell<toml::Value>;

/// The cell of `method` (of `kind`) at `params` on `model`, world seed `world_seed`, method
/// seed `seed`, with its key and id (see the module docs).
pub fn cell(
    method: &str,
    kind: &str,
    params: BTreeMap<String, toml::Value>,
    model: &str,
    world_seed: u64,
    seed: u64,
) -> Cell {
    let key = cell_key(method, &params, world_seed, seed, model);
    Cell {
        id: cell_id(&key),
        key,
        method: method.to_owned(),
        kind: kind.to_owned(),
        params,
        model: model.to_owned(),
        world_seed,
        seed,
    }
}

/// All cells of a sweep, in the deterministic order described in the module docs.
pub fn expand(sweep: &Sweep) -> Vec<Cell> {
    let mut cells = Vec::new();
    let references: &[&str] = if sweep.noise_floor {
        &[REFERENCE_FINAL, REFERENCE_RETRAIN, REFERENCE_RETRAIN_ALT]
    } else {
        &[REFERENCE_FINAL, REFERENCE_RETRAIN]
    };
    for model in &sweep.models {
        for &world in &sweep.world_seeds {
            // A reference model does not depend on the method seed (its scoring is
            // deterministic): one cell per world, under the first method seed.
            for reference in references {
                cells.push(cell(reference, REFERENCE_KIND, BTreeMap::new(), &model.name, world, sweep.seeds[0]));
            }
            for method in sweep.methods.values() {
                for point in grid_points(&method.grid) {
                    let mut params = method.fixed.clone();
                    params.extend(point);
                    for &seed in &sweep.seeds {
                        cells.push(cell(&method.name, &method.kind, params.clone(), &model.name, world, seed));
                    }
                }
            }
        }
    }
    cells
}

/// The cross product of the axes, odometer order (last key fastest). No axes → one empty point.
pub fn grid_points(grid: &BTreeMap<String, Vec<toml::Value>>) -> Vec<BTreeMap<String, toml::Value>> {
    let mut points = vec![BTreeMap::new()];
    for (key, values) in grid {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.insert(key.clone(), v.clone());
                    q
                })
            })
            .collect();
    }
    points
}

/// `METHOD[/k=v,…]/world=W/seed=S/model=M`.
pub fn cell_key(
    method: &str,
    params: &BTreeMap<String, toml::Value>,
    world_seed: u64,
    seed: u64,
    model: &str,
) -> String {
    let mut key = method.to_owned();
    if !params.is_empty() {
        let kv: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", format_value(v))).collect();
        key.push('/');
        key.push_str(&kv.join(","));
    }
    key.push_str(&format!("/world={world_seed}/seed={seed}/model={model}"));
    key
}

/// The key made filename-safe (`/` → `__`, anything but ASCII letters, digits and `.=,-_`
/// → `_`, at most 160 characters) plus `-` and 8 hex digits of SHA-256(key).
pub fn cell_id(key: &str) -> String {
    let mut safe = String::new();
    for c in key.chars() {
        match c {
            '/' => safe.push_str("__"),
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '=' | ',' | '-' | '_') => safe.push(c),
            _ => safe.push('_'),
        }
    }
    safe.truncate(160);
    format!("{safe}-{}", short_hash(key))
}

pub(crate) fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// How a hyperparameter value appears in a key: integers and whole floats without a decimal
/// point (`0`, `2`), other floats in Rust's shortest round-trip form (`1.5`, `1e-5`), strings
/// raw, booleans as `true`/`false`.
pub fn format_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_id_of_an_msa_cell() {
        let params = BTreeMap::from([
            ("alpha".to_owned(), toml::Value::Float(1.5)),
            ("beta".to_owned(), toml::Value::Float(0.0)),
            ("checkpoint".to_owned(), toml::Value::String("latest-clean".into())),
        ]);
        let cell = cell("msa", "msa", params, "tiny", 2, 0);
        assert_eq!(cell.key, "msa/alpha=1.5,beta=0,checkpoint=latest-clean/world=2/seed=0/model=tiny");
        // python: hashlib.sha256(b"msa/alpha=1.5,beta=0,checkpoint=latest-clean/world=2/seed=0/model=tiny").hexdigest()[:8]
        assert_eq!(cell.id, "msa__alpha=1.5,beta=0,checkpoint=latest-clean__world=2__seed=0__model=tiny-065e5e68");
    }

    #[test]
    fn ids_differ_when_keys_sanitise_alike() {
        let a = cell_id("m/checkpoint=distance:2/seed=0/model=x");
        let b = cell_id("m/checkpoint=distance;2/seed=0/model=x");
        assert_ne!(a, b);
        assert!(a.starts_with("m__checkpoint=distance_2__seed=0__model=x-"));
    }

    #[test]
    fn value_formatting() {
        assert_eq!(format_value(&toml::Value::Float(0.0)), "0");
        assert_eq!(format_value(&toml::Value::Float(2.0)), "2");
        assert_eq!(format_value(&toml::Value::Float(1e-5)), "1e-5");
        assert_eq!(format_value(&toml::Value::Float(0.1)), "0.1");
        assert_eq!(format_value(&toml::Value::Integer(-3)), "-3");
        assert_eq!(format_value(&toml::Value::Boolean(true)), "true");
    }

    #[test]
    fn grid_points_are_in_odometer_order() {
        let grid = BTreeMap::from([
            ("a".to_owned(), vec![toml::Value::Integer(1), toml::Value::Integer(2)]),
            ("b".to_owned(), vec![toml::Value::String("x".into()), toml::Value::String("y".into())]),
        ]);
        let got: Vec<String> = grid_points(&grid)
            .iter()
            .map(|p| p.iter().map(|(k, v)| format!("{k}={}", format_value(v))).collect::<Vec<_>>().join(","))
            .collect();
        assert_eq!(got, ["a=1,b=x", "a=1,b=y", "a=2,b=x", "a=2,b=y"]);
        assert_eq!(grid_points(&BTreeMap::new()).len(), 1);
    }
}
