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

/// The direction of a sub-value: the parent's unless it measures the other way.
pub(super) fn sub_direction(metric: &str, key: &str, parent: Direction) -> Direction {
    match (metric, key) {
        ("tofu_forget_quality", "ks_statistic") => Direction::LowerIsBetter,
        ("tofu_truth_ratio_forget", "mean_ratio") => Direction::CloserTo(1.0),
        ("tofu_truth_ratio_retain", "mean_ratio") => Direction::LowerIsBetter,
        ("muse_privleak", "auc") => Direction::CloserTo(0.5),
        _ => parent,
    }
}

/// The per-example number of each metric's per-example JSON objects.
pub(super) fn example_value(metric: &str, v: &serde_json::Value) -> f64 {
    let get = |k: &str| v.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
    match metric {
        "tofu_prob_forget" | "tofu_prob_retain" => get("prob"),
        "tofu_rouge_forget" | "tofu_rouge_retain" => get("rougeL_recall"),
        "tofu_truth_ratio_forget" | "tofu_truth_ratio_retain" | "tofu_forget_quality" => get("truth_ratio"),
        "muse_verbmem" | "muse_knowmem_forget" | "muse_knowmem_retain" => get("rougeL_f1"),
        "mink_auc" => get("mink"),
        "mia_loss_auc" | "mia_zlib_auc" | "mia_minkpp_auc" | "mia_reference_auc" | "mia_gradnorm_auc" => get("score"),
        "exact_memorization" => get("em"),
        "kl_to_oracle" => get("mean_kl"),
        // per-token negative log-likelihood of the text
        "perplexity" => -get("logprob") / get("n_tokens"),
        "truthfulqa_mc1" | "truthfulqa_mc2" | "toxigen" => get("acc"),
        "toxigen_likelihood" => get("diff"),
        "toxigen_generation" => get("p_toxic"),
        "restor_clean_acc" | "restor_recovery" | "mc_accuracy" | "acc_forget" | "acc_recover" | "acc_retain" => {
            get("correct")
        }
        _ => f64::NAN,
    }
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
