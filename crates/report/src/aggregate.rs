//! From runs to table cells: the runs of one configuration (a method at one grid point, or a
//! reference) are grouped by world seed, and each metric becomes a mean with a 95 % cluster
//! bootstrap interval (`stats::cluster_bootstrap_mean_ci`).
//!
//! - **Mean**: the mean over world seeds of each world's mean over its method seeds (each world
//!   weighs the same, as in the bootstrap). With one world it is the plain mean over seeds.
//! - **Interval** (only when more than one run has a finite value — one run gets none, never an
//!   invented one): clusters = world seeds. Examples = the metric's per-example values averaged
//!   over the method seeds of that world, when every run has them, they are finite, the runs of
//!   a world cover the same examples (by id, else by position), and the metric's value is their
//!   mean (so the bootstrap's statistic is the table's number), and every world has at least
//!   two examples. Otherwise — a metric with one number per run (forget quality, a KS p-value),
//!   one that is not a mean of its per-example values (an AUC, a perplexity, a harmonic mean),
//!   or a single example, whose seed average would hide the runs' spread — the examples of a
//!   world are its runs' values ([`Basis::Runs`]).
//!
//! With one world the interval therefore reflects example-to-example variation (or, on the
//! runs basis, seed-to-seed variation) only; the spread between worlds enters once there are
//! several.
//!
//! Both choices are fixed constants ([`BOOTSTRAP`]), so a report is reproducible bit for bit.

use std::collections::BTreeMap;

use crate::results::{CellFile, MetricFile, Status};

/// The tables' bootstrap: 2000 replicates, 95 %, seed 0 (the same for every table cell).
pub const BOOTSTRAP: stats::BootstrapConfig = stats::BootstrapConfig { replicates: 2000, level: 0.95, seed: 0 };

/// How a metric's value relates to its per-example values, for [`uses_examples`]: equal to
/// their mean within this relative tolerance.
const MEAN_TOLERANCE: f64 = 1e-9;

/// One configuration of one model: its successful cells.
#[derive(Clone, Debug)]
pub struct Group<'a> {
    pub model: &'a str,
    pub method: &'a str,
    pub kind: &'a str,
    pub params: &'a BTreeMap<String, serde_json::Value>,
    pub is_reference: bool,
    pub cells: Vec<&'a CellFile>,
}

impl Group<'_> {
    /// Distinct world seeds among the cells.
    pub fn worlds(&self) -> usize {
        let mut w: Vec<u64> = self.cells.iter().map(|c| c.cell.world_seed).collect();
        w.sort_unstable();
        w.dedup();
        w.len()
    }

    /// The cells' records of `metric`, by world seed: (world → [(cell, record)]).
    pub fn by_world(&self, metric: &str) -> BTreeMap<u64, Vec<&MetricFile>> {
        let mut out: BTreeMap<u64, Vec<&MetricFile>> = BTreeMap::new();
        for c in &self.cells {
            if let Some(m) = c.metrics.get(metric) {
                out.entry(c.cell.world_seed).or_default().push(m);
            }
        }
        out
    }
}

/// The successful cells grouped by (model, method, params), in order of first appearance.
pub fn groups(cells: &[CellFile]) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for c in cells.iter().filter(|c| c.status == Status::Ok) {
        let i = &c.cell;
        match out.iter_mut().find(|g| g.model == i.model && g.method == i.method && *g.params == i.params) {
            Some(g) => g.cells.push(c),
            None => out.push(Group {
                model: &c.cell.model,
                method: &c.cell.method,
                kind: &c.cell.kind,
                params: &c.cell.params,
                is_reference: c.cell.is_reference(),
                cells: vec![c],
            }),
        }
    }
    out
}

/// What a metric's interval resamples within a world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// Per-example values averaged over the world's method seeds.
    Examples,
    /// The runs' values (no usable per-example values).
    Runs,
}

/// A table cell: mean over worlds (of means over seeds) and, with more than one run, the
/// bootstrap interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub mean: f64,
    /// Runs with a finite value.
    pub runs: usize,
    pub worlds: usize,
    /// `None` with one run, or when the bootstrap failed (it cannot on finite values).
    pub interval: Option<(f64, f64)>,
    pub basis: Basis,
}

/// The aggregate of one metric over a group's runs (by world); `None` when no run has a finite
/// value.
pub fn aggregate(by_world: &BTreeMap<u64, Vec<&MetricFile>>) -> Option<Aggregate> {
    // finite runs only, by world
    let finite: BTreeMap<u64, Vec<&MetricFile>> = by_world
        .iter()
        .map(|(w, ms)| (*w, ms.iter().copied().filter(|m| m.finite_value().is_some()).collect::<Vec<_>>()))
        .filter(|(_, ms)| !ms.is_empty())
        .collect();
    if finite.is_empty() {
        return None;
    }
    let world_means: Vec<f64> = finite.values().map(|ms| mean(ms.iter().filter_map(|m| m.finite_value()))).collect();
    let mean_all = world_means.iter().sum::<f64>() / world_means.len() as f64;
    let runs: usize = finite.values().map(Vec::len).sum();
    let examples: Option<Vec<Vec<f64>>> =
        finite.values().map(|ms| seed_averaged_examples(ms).filter(|e| e.len() >= 2)).collect();
    let (clusters, basis) = match examples {
        Some(c) => (c, Basis::Examples),
        None => (finite.values().map(|ms| ms.iter().filter_map(|m| m.finite_value()).collect()).collect(), Basis::Runs),
    };
    let interval = if runs > 1 {
        stats::cluster_bootstrap_mean_ci(&clusters, &BOOTSTRAP).ok().map(|i| (i.lo, i.hi))
    } else {
        None
    };
    Some(Aggregate { mean: mean_all, runs, worlds: finite.len(), interval, basis })
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n as f64
}

/// Whether a record's value is the mean of its (non-empty, finite) per-example values.
pub fn uses_examples(m: &MetricFile) -> bool {
    let Some(v) = m.finite_value() else { return false };
    if m.per_example.is_empty() || m.per_example.iter().any(|x| !x.is_finite()) {
        return false;
    }
    if !m.example_ids.is_empty() && m.example_ids.len() != m.per_example.len() {
        return false;
    }
    let mu = mean(m.per_example.iter().copied());
    (mu - v).abs() <= MEAN_TOLERANCE * v.abs().max(1.0)
}

/// The example keys of a record: its ids, else positions (`#0`, `#1`, …).
pub fn example_keys(m: &MetricFile) -> Vec<String> {
    if m.example_ids.len() == m.per_example.len() && !m.example_ids.is_empty() {
        m.example_ids.clone()
    } else {
        (0..m.per_example.len()).map(|i| format!("#{i}")).collect()
    }
}

/// One world's per-example values averaged over its runs (in the first run's order), when all
/// runs [`uses_examples`] and cover the same examples.
fn seed_averaged_examples(runs: &[&MetricFile]) -> Option<Vec<f64>> {
    let first = runs.first()?;
    if !runs.iter().all(|m| uses_examples(m)) {
        return None;
    }
    let keys = example_keys(first);
    let mut sums = first.per_example.clone();
    for m in &runs[1..] {
        let index: BTreeMap<String, f64> = example_keys(m).into_iter().zip(m.per_example.iter().copied()).collect();
        if index.len() != keys.len() {
            return None;
        }
        for (s, k) in sums.iter_mut().zip(&keys) {
            *s += index.get(k)?;
        }
    }
    Some(sums.into_iter().map(|s| s / runs.len() as f64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Direction;

    fn rec(value: f64, per_example: &[f64]) -> MetricFile {
        MetricFile {
            direction: Direction::LowerIsBetter,
            value,
            per_example: per_example.to_vec(),
            example_ids: vec![],
            version: None,
            skipped: None,
            target: None,
            scale: None,
        }
    }

    #[test]
    fn one_run_has_no_interval() {
        let r = rec(0.5, &[0.0, 1.0]);
        let a = aggregate(&BTreeMap::from([(0, vec![&r])])).unwrap();
        assert_eq!((a.mean, a.runs, a.worlds, a.interval), (0.5, 1, 1, None));
    }

    #[test]
    fn mean_of_world_means_and_basis() {
        // world 0: seeds 0.2, 0.4 → 0.3; world 1: one seed 0.9 → mean (0.3 + 0.9)/2 = 0.6
        let (a, b, c) = (rec(0.2, &[0.0, 0.4]), rec(0.4, &[0.4, 0.4]), rec(0.9, &[0.8, 1.0]));
        let agg = aggregate(&BTreeMap::from([(0, vec![&a, &b]), (1, vec![&c])])).unwrap();
        assert!((agg.mean - 0.6).abs() < 1e-15);
        assert_eq!((agg.runs, agg.worlds, agg.basis), (3, 2, Basis::Examples));
        // clusters: world 0 examples averaged over seeds [0.2, 0.4], world 1 [0.8, 1.0]
        let want = stats::cluster_bootstrap_mean_ci(&[vec![0.2, 0.4], vec![0.8, 1.0]], &BOOTSTRAP).unwrap();
        assert_eq!(agg.interval, Some((want.lo, want.hi)));

        // a value that is not the mean of its per-example values: bootstrap over runs
        let d = rec(0.05, &[0.5, 0.7]);
        let agg = aggregate(&BTreeMap::from([(0, vec![&a, &d])])).unwrap();
        assert_eq!(agg.basis, Basis::Runs);
        let want = stats::cluster_bootstrap_mean_ci(&[vec![0.2, 0.05]], &BOOTSTRAP).unwrap();
        assert_eq!(agg.interval, Some((want.lo, want.hi)));
    }

    #[test]
    fn non_finite_runs_are_left_out() {
        let a = rec(0.2, &[0.2]);
        let nan = MetricFile { value: f64::NAN, ..rec(0.0, &[]) };
        let agg = aggregate(&BTreeMap::from([(0, vec![&a, &nan]), (1, vec![&nan])])).unwrap();
        assert_eq!((agg.mean, agg.runs, agg.worlds, agg.interval), (0.2, 1, 1, None));
        assert!(aggregate(&BTreeMap::from([(0, vec![&nan])])).is_none());
    }
}
