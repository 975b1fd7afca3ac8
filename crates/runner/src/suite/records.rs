//! From metric outputs to stored records: directions, targets, sub-values and per-example
//! values.

use super::*;

/// The direction of metric `name` as the registry declares it (`evals::registry::MetricInfo::
/// direction`), for the record of a metric skipped before it was built; higher-is-better for a
/// name the registry does not know (config validation refuses those before a run).
pub(super) fn nominal_direction(name: &str) -> Direction {
    evals::registry::lookup(name).map_or(Direction::HigherIsBetter, |m| m.direction)
}

/// Records each record's target and scale as the `evals` registry declares them. A record no
/// metric declares is recorded as informational (the cell's numbers are kept; the report lists
/// it in the appendix only) — `oracle_against_itself_and_theta_d` in `tests/suite.rs` keeps
/// the declarations complete for the records the test world produces.
pub fn declare_targets(records: &mut BTreeMap<String, MetricRecord>) -> Result<()> {
    for (name, rec) in records.iter_mut() {
        match evals::registry::record_info(name) {
            Some((_, info)) => {
                rec.target = Some(info.target);
                rec.scale = Some(info.scale);
            }
            None => {
                rec.target = Some(evals::registry::Target::Informational);
                rec.scale = Some(evals::registry::Scale::Linear);
            }
        }
    }
    Ok(())
}

pub(super) fn skipped(direction: Direction, reason: String) -> MetricRecord {
    MetricRecord {
        direction,
        value: f64::NAN,
        per_example: vec![],
        example_ids: vec![],
        version: None,
        skipped: Some(reason),
        target: None,
        scale: None,
    }
}

/// Sub-values that describe the computation rather than score the model: kept out of the records.
pub(super) fn is_informational(key: &str) -> bool {
    let last = key.rsplit('/').next().unwrap_or(key);
    last == "n"
        || last.starts_with("n_")
        || matches!(last, "k" | "positions" | "exact" | "corrupted_acc")
        || last.starts_with("oracle_")
        || last.contains("stderr")
        || last.starts_with("ci95")
}

/// The direction of sub-value `key` of `metric`: the parent's unless the registry declares the
/// sub-value measures the other way (`evals::registry::RecordInfo::direction`).
pub(super) fn sub_direction(metric: &str, key: &str, parent: Direction) -> Direction {
    evals::registry::record_info(&format!("{metric}/{key}")).and_then(|(_, r)| r.direction).unwrap_or(parent)
}

/// The per-example number of one of `metric`'s per-example JSON objects, where the registry
/// says it is (`evals::registry::MetricInfo::per_example`).
pub(super) fn example_value(metric: &str, v: &serde_json::Value) -> f64 {
    evals::registry::lookup(metric).map_or(f64::NAN, |m| m.per_example.value(v))
}

/// Adds the records of one metric output: `record` and its sub-values `record/SUB`.
pub(super) fn insert_output(
    records: &mut BTreeMap<String, MetricRecord>,
    record: &str,
    o: &MetricOutput,
    ids: Vec<String>,
    direction: Option<Direction>,
) {
    let direction = direction.unwrap_or(o.direction);
    let per_example: Vec<f64> = o.value.per_example.iter().map(|v| example_value(&o.name, v)).collect();
    let example_ids = if o.value.per_example.iter().all(|v| v.get("group").is_some()) && !o.value.per_example.is_empty()
    {
        o.value.per_example.iter().map(|v| v["group"].as_str().unwrap_or("").to_string()).collect()
    } else if ids.len() == per_example.len() {
        ids
    } else {
        vec![]
    };
    let version = Some(o.version.to_string());
    records.insert(
        record.to_string(),
        MetricRecord {
            direction,
            value: o.value.value().unwrap_or(f64::NAN),
            per_example,
            example_ids,
            version: version.clone(),
            skipped: o.value.skipped.clone(),
            target: None,
            scale: None,
        },
    );
    for (key, &x) in &o.value.aggregate {
        if key == "value" || is_informational(key) {
            continue;
        }
        records.insert(
            format!("{record}/{key}"),
            MetricRecord {
                direction: sub_direction(&o.name, key, direction),
                value: x,
                per_example: vec![],
                example_ids: vec![],
                version: version.clone(),
                skipped: None,
                target: None,
                scale: None,
            },
        );
    }
}
