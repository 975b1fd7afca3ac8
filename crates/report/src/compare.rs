//! The "Comparisons" section: is MSA closer to the oracle than each other method, beyond noise?
//!
//! For every non-reference row that is not MSA (kind ≠ "msa") and every MSA row (kind "msa")
//! of the same model, and every metric of [`COMPARISON_METRICS`] that both rows and the oracle
//! ("retrain") carry with per-example values:
//!
//! - **statistic**: per (world, example), the distance to the oracle |value − oracle's value on
//!   the same example in the same world|, computed for each run and averaged over the method
//!   seeds of that world (the oracle's value averaged over its own runs of that world). For
//!   `kl_to_oracle` the value is already a divergence from the oracle and is used as it is.
//!   Lower = closer to retraining.
//! - **difference** MSA − other, with its paired two-level bootstrap interval
//!   (`stats::paired_cluster_bootstrap_mean_ci`: clusters = worlds present in both rows,
//!   examples matched by id; [`crate::aggregate::BOOTSTRAP`]). Negative: MSA is closer.
//! - **p-value**: Wilcoxon signed-rank over all pooled (world, example) pairs
//!   (`stats::wilcoxon_signed_rank_auto`: exact for ≤ 25 pairs without zeros or ties, else the
//!   normal approximation with tie correction; zero differences dropped).
//! - **Holm** (`stats::holm`) over every p-value of the section (all models), and the decision
//!   "significant (Holm, 0.05)" = adjusted p ≤ 0.05. A comparison whose differences are all zero
//!   has no p-value ("–") and is not part of the family.

use crate::aggregate::{example_keys, groups, Group, BOOTSTRAP};
use crate::fmt_num;
use crate::render::{Cell, Table};
use crate::results::{CellFile, REFERENCE_RETRAIN};
use crate::tables::params_text;
use std::collections::BTreeMap;

/// Forget-side metrics compared (those present, with per-example values).
pub const COMPARISON_METRICS: &[&str] =
    &["mc_accuracy/forget", "kl_to_oracle/forget", "tofu_prob_forget", "tofu_rouge_forget"];

/// The family-wise error rate of the section's decisions.
pub const ALPHA: f64 = 0.05;

/// One MSA row against one other row on one metric.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub model: String,
    pub msa: String,
    pub other: String,
    pub metric: String,
    /// Worlds in the comparison.
    pub worlds: usize,
    /// (world, example) pairs.
    pub pairs: usize,
    /// Mean distance to the oracle (mean over worlds of the mean over examples).
    pub msa_distance: f64,
    pub other_distance: f64,
    /// MSA − other: mean and interval.
    pub difference: stats::Interval,
    /// `None` when every difference is zero.
    pub wilcoxon: Option<stats::Wilcoxon>,
    /// Holm-adjusted p-value (set by [`comparisons`]).
    pub holm: Option<f64>,
}

impl Comparison {
    pub fn significant(&self) -> bool {
        self.holm.is_some_and(|p| p <= ALPHA)
    }
}

/// Per world, per example (by key): the distance to the oracle averaged over the group's runs
/// of that world. Worlds where a run lacks usable per-example values, or has an example the
/// oracle does not, are left out.
fn distances(group: &Group, oracle: &Group, metric: &str) -> BTreeMap<u64, Vec<(String, f64)>> {
    let already_distance = metric.starts_with("kl_to_oracle");
    let oracle_by_world = oracle.by_world(metric);
    let mut out = BTreeMap::new();
    'world: for (world, runs) in group.by_world(metric) {
        let reference: BTreeMap<String, f64> = if already_distance {
            BTreeMap::new()
        } else {
            let Some(oruns) = oracle_by_world.get(&world) else { continue };
            let mut sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
            for m in oruns {
                if !usable(m) {
                    continue 'world;
                }
                for (k, v) in example_keys(m).into_iter().zip(&m.per_example) {
                    let e = sum.entry(k).or_insert((0.0, 0));
                    e.0 += v;
                    e.1 += 1;
                }
            }
            sum.into_iter().map(|(k, (s, n))| (k, s / n as f64)).collect()
        };
        let mut acc: Vec<(String, f64)> = Vec::new();
        for (r, m) in runs.iter().enumerate() {
            if !usable(m) {
                continue 'world;
            }
            let keys = example_keys(m);
            if r == 0 {
                acc = keys.iter().map(|k| (k.clone(), 0.0)).collect();
            }
            let mine: BTreeMap<&str, f64> =
                keys.iter().map(String::as_str).zip(m.per_example.iter().copied()).collect();
            if mine.len() != acc.len() {
                continue 'world;
            }
            for (k, total) in acc.iter_mut() {
                let Some(v) = mine.get(k.as_str()) else { continue 'world };
                let o = if already_distance {
                    0.0
                } else {
                    match reference.get(k) {
                        Some(o) => *o,
                        None => continue 'world,
                    }
                };
                *total += (v - o).abs();
            }
        }
        if acc.is_empty() {
            continue;
        }
        let n = runs.len() as f64;
        out.insert(world, acc.into_iter().map(|(k, s)| (k, s / n)).collect());
    }
    out
}

/// Per world, per example (id, distance to the oracle): the clusters of two rows over the
/// worlds both have, in world order; `None` when they share no world.
pub(crate) type Clusters = Vec<Vec<(String, f64)>>;

pub(crate) fn paired_distances(a: &Group, b: &Group, oracle: &Group, metric: &str) -> Option<(Clusters, Clusters)> {
    let (da, db) = (distances(a, oracle, metric), distances(b, oracle, metric));
    let worlds: Vec<u64> = da.keys().filter(|w| db.contains_key(w)).copied().collect();
    if worlds.is_empty() {
        return None;
    }
    Some((worlds.iter().map(|w| da[w].clone()).collect(), worlds.iter().map(|w| db[w].clone()).collect()))
}

/// Wilcoxon signed-rank of paired differences (all clusters pooled) against zero; `None` when
/// every difference is zero.
pub(crate) fn wilcoxon_against_zero(differences: &[Vec<f64>]) -> Option<stats::Wilcoxon> {
    let pooled = differences.concat();
    stats::wilcoxon_signed_rank_auto(&pooled, &vec![0.0; pooled.len()]).ok()
}

fn usable(m: &crate::results::MetricFile) -> bool {
    !m.per_example.is_empty() && m.per_example.iter().all(|v| v.is_finite())
}

fn label(g: &Group) -> String {
    if g.params.is_empty() {
        g.method.to_owned()
    } else {
        format!("{} ({})", g.method, params_text(g.params, ", "))
    }
}

/// Every comparison of the section (see the module documentation), Holm-adjusted.
pub fn comparisons(cells: &[CellFile]) -> Vec<Comparison> {
    let groups = groups(cells);
    let mut out = Vec::new();
    let mut models: Vec<&str> = groups.iter().map(|g| g.model).collect();
    models.sort_unstable();
    models.dedup();
    for model in models {
        let of_model: Vec<&Group> = groups.iter().filter(|g| g.model == model).collect();
        let Some(oracle) = of_model.iter().find(|g| g.is_reference && g.method == REFERENCE_RETRAIN) else { continue };
        let mut msa: Vec<&&Group> = of_model.iter().filter(|g| !g.is_reference && g.kind == "msa").collect();
        let mut others: Vec<&&Group> = of_model.iter().filter(|g| !g.is_reference && g.kind != "msa").collect();
        let order = |a: &&&Group, b: &&&Group| {
            a.method.cmp(b.method).then_with(|| crate::tables::cmp_params(a.params, b.params))
        };
        msa.sort_by(order);
        others.sort_by(order);
        for m in &msa {
            for o in &others {
                for &metric in COMPARISON_METRICS {
                    let Some((a, b)) = paired_distances(m, o, oracle, metric) else { continue };
                    let (Ok(d), Ok(difference)) = (
                        stats::paired_differences(&a, &b),
                        stats::paired_cluster_bootstrap_mean_ci(&a, &b, &BOOTSTRAP),
                    ) else {
                        continue;
                    };
                    let mean_of_means = |c: &[Vec<(String, f64)>]| {
                        c.iter().map(|w| w.iter().map(|(_, v)| v).sum::<f64>() / w.len() as f64).sum::<f64>()
                            / c.len() as f64
                    };
                    out.push(Comparison {
                        model: model.to_owned(),
                        msa: label(m),
                        other: label(o),
                        metric: metric.to_owned(),
                        worlds: a.len(),
                        pairs: d.iter().map(Vec::len).sum(),
                        msa_distance: mean_of_means(&a),
                        other_distance: mean_of_means(&b),
                        difference,
                        wilcoxon: wilcoxon_against_zero(&d),
                        holm: None,
                    });
                }
            }
        }
    }
    let tested: Vec<usize> = (0..out.len()).filter(|&i| out[i].wilcoxon.is_some()).collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| out[i].wilcoxon.map(|w| w.p_value)).collect();
    if let Ok(adjusted) = stats::holm(&p) {
        for (&i, q) in tested.iter().zip(adjusted) {
            out[i].holm = Some(q);
        }
    }
    out
}

/// The explanation of the section.
fn explanation(comparisons: &[Comparison]) -> String {
    format!(
        "Statistic: per (world, example), the distance to the oracle |value − the oracle's value on the same example \
         in the same world| (per run, averaged over a method's seeds; `kl_to_oracle` is itself that distance), so \
         lower is closer to retraining, and MSA − other < 0 means MSA is closer. Interval: paired two-level bootstrap \
         over worlds × examples ({:.0} %, {} replicates, seed {}); p: Wilcoxon signed-rank over the pooled \
         (world, example) pairs; Holm's correction over all {} p-values of this section.",
        BOOTSTRAP.level * 100.0,
        BOOTSTRAP.replicates,
        BOOTSTRAP.seed,
        comparisons.iter().filter(|c| c.wilcoxon.is_some()).count()
    )
}

/// The section's table, its explanation as the note (or why there is none).
pub fn table(comparisons: &[Comparison]) -> Table {
    let mut t = Table::new(
        &[
            "model",
            "MSA",
            "vs",
            "metric",
            "worlds",
            "pairs",
            "MSA distance",
            "other distance",
            "MSA − other [95 % CI]",
            "Wilcoxon p",
            "test",
            "Holm p",
            "significant (Holm, 0.05)",
        ],
        &[false, false, false, false, true, true, true, true, true, true, false, true, false],
    );
    for c in comparisons {
        let (p, test) = match &c.wilcoxon {
            Some(w) => (fmt_num(w.p_value), w.method.as_str()),
            None => ("–".to_owned(), "all differences 0"),
        };
        t.rows.push(
            [
                c.model.clone(),
                c.msa.clone(),
                c.other.clone(),
                c.metric.clone(),
                c.worlds.to_string(),
                c.pairs.to_string(),
                fmt_num(c.msa_distance),
                fmt_num(c.other_distance),
                format!("{} [{}, {}]", fmt_num(c.difference.mean), fmt_num(c.difference.lo), fmt_num(c.difference.hi)),
                p,
                test.to_owned(),
                c.holm.map_or("–".to_owned(), fmt_num),
                if c.holm.is_none() {
                    "–"
                } else if c.significant() {
                    "yes"
                } else {
                    "no"
                }
                .to_owned(),
            ]
            .into_iter()
            .map(Cell::plain)
            .collect(),
        );
    }
    t.note = if comparisons.is_empty() {
        let names: Vec<String> = COMPARISON_METRICS.iter().map(|m| format!("`{m}`")).collect();
        format!(
            "No comparisons: they need MSA rows, other method rows and the oracle with per-example values of at least \
             one of the metrics {}.",
            names.join(", ")
        )
    } else {
        explanation(comparisons)
    };
    t
}

/// The Markdown section (without its heading): the explanation and the table.
pub fn markdown(comparisons: &[Comparison]) -> String {
    if comparisons.is_empty() {
        return format!("{}\n", table(comparisons).note);
    }
    format!("{}\n\n{}", explanation(comparisons), Table { note: String::new(), ..table(comparisons) }.markdown())
}
