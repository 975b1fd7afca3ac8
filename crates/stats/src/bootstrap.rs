//! Two-level (hierarchical) percentile bootstrap of a mean over *clusters × examples*.
//!
//! The data are clusters (in this project one per world seed: each world is its own training
//! history, so its examples are not independent of each other), each a list of per-example
//! values (possibly already averaged over method seeds). One bootstrap replicate:
//!
//! 1. draws K clusters with replacement from the K clusters;
//! 2. inside each drawn cluster of n_k examples, draws n_k examples with replacement;
//! 3. takes the mean of each drawn cluster's resampled examples, then the mean of those K
//!    means.
//!
//! The statistic is therefore the **mean of cluster means, each cluster weighted equally**
//! whatever its number of examples (a world is the unit of replication; a world scored on more
//! examples is not more of a world). The point estimate [`Interval::mean`] is the same
//! statistic on the data as given. The interval is the percentile interval of B replicates:
//! the (1 − level)/2 and (1 + level)/2 quantiles of the replicate statistics, with linear
//! interpolation between order statistics (numpy's default `method="linear"`: position
//! (B − 1)·q in the sorted replicates).
//!
//! With one cluster this is the ordinary bootstrap over examples; with one example per cluster,
//! the bootstrap over clusters. Resampling both levels is the standard two-stage scheme (Davison
//! & Hinkley 1997, §3.8); it errs on the wide side when clusters are few.
//!
//! Random draws come from `ChaCha8Rng::seed_from_u64(config.seed)`, in the order: for each
//! replicate, for each of the K draws, the cluster index, then that cluster's n_k example
//! indices (each `rng.random_range(0..n)`). Same data, configuration and seed ⇒ the same
//! interval, bit for bit.

use anyhow::{bail, ensure, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How a bootstrap interval is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BootstrapConfig {
    /// Number of bootstrap replicates B (default 2000).
    pub replicates: usize,
    /// Coverage of the interval, in (0, 1) (default 0.95).
    pub level: f64,
    /// Seed of the `ChaCha8Rng` that draws the resamples (default 0).
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig { replicates: 2000, level: 0.95, seed: 0 }
    }
}

/// A point estimate with its bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Mean of the cluster means (equal weight per cluster).
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
    /// The configuration's level and replicates, for captions.
    pub level: f64,
    pub replicates: usize,
    pub n_clusters: usize,
    /// Examples over all clusters.
    pub n_examples: usize,
}

/// The two-level percentile bootstrap interval of the mean of cluster means (see the module
/// documentation). Errors: no clusters, an empty cluster, a non-finite value, no replicates, a
/// level outside (0, 1).
pub fn cluster_bootstrap_mean_ci(clusters: &[Vec<f64>], config: &BootstrapConfig) -> Result<Interval> {
    ensure!(!clusters.is_empty(), "bootstrap: no clusters");
    ensure!(config.replicates > 0, "bootstrap: replicates must be at least 1");
    ensure!(config.level > 0.0 && config.level < 1.0, "bootstrap: level {} is not in (0, 1)", config.level);
    for (k, c) in clusters.iter().enumerate() {
        ensure!(!c.is_empty(), "bootstrap: cluster {k} has no values");
        if let Some(i) = c.iter().position(|v| !v.is_finite()) {
            bail!("bootstrap: cluster {k}, value {i} is not finite ({})", c[i]);
        }
    }
    let k = clusters.len();
    let mean = clusters.iter().map(|c| mean_of(c)).sum::<f64>() / k as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut stats = Vec::with_capacity(config.replicates);
    for _ in 0..config.replicates {
        let mut total = 0.0;
        for _ in 0..k {
            let c = &clusters[rng.random_range(0..k)];
            let n = c.len();
            let mut sum = 0.0;
            for _ in 0..n {
                sum += c[rng.random_range(0..n)];
            }
            total += sum / n as f64;
        }
        stats.push(total / k as f64);
    }
    stats.sort_by(f64::total_cmp);
    let alpha = 1.0 - config.level;
    Ok(Interval {
        mean,
        lo: quantile_sorted(&stats, alpha / 2.0),
        hi: quantile_sorted(&stats, 1.0 - alpha / 2.0),
        level: config.level,
        replicates: config.replicates,
        n_clusters: k,
        n_examples: clusters.iter().map(Vec::len).sum(),
    })
}

/// Per cluster, `a − b` example by example, the examples matched by id: the paired data of two
/// methods scored on the same worlds (clusters, matched by position) and examples. The output
/// follows `a`'s order. Errors: different numbers of clusters, an id in one and not the other,
/// a repeated id, a non-finite value.
pub fn paired_differences(a: &[Vec<(String, f64)>], b: &[Vec<(String, f64)>]) -> Result<Vec<Vec<f64>>> {
    ensure!(!a.is_empty(), "paired: no clusters");
    ensure!(a.len() == b.len(), "paired: {} clusters against {}", a.len(), b.len());
    let mut out = Vec::with_capacity(a.len());
    for (k, (ca, cb)) in a.iter().zip(b).enumerate() {
        ensure!(!ca.is_empty(), "paired: cluster {k} has no examples");
        let mut by_id = std::collections::HashMap::with_capacity(cb.len());
        for (id, v) in cb {
            ensure!(
                by_id.insert(id.as_str(), *v).is_none(),
                "paired: cluster {k}: example id {id:?} repeated in the second sample"
            );
        }
        ensure!(
            ca.len() == cb.len(),
            "paired: cluster {k} has {} examples in the first sample and {} in the second",
            ca.len(),
            cb.len()
        );
        let mut seen = std::collections::HashSet::with_capacity(ca.len());
        let mut d = Vec::with_capacity(ca.len());
        for (id, x) in ca {
            ensure!(seen.insert(id.as_str()), "paired: cluster {k}: example id {id:?} repeated in the first sample");
            let y = by_id
                .get(id.as_str())
                .with_context(|| format!("paired: cluster {k}: example id {id:?} is not in the second sample"))?;
            ensure!(x.is_finite() && y.is_finite(), "paired: cluster {k}: example {id:?} has a non-finite value");
            d.push(x - y);
        }
        out.push(d);
    }
    Ok(out)
}

/// The paired version of [`cluster_bootstrap_mean_ci`]: the interval of the mean of `a − b`,
/// where `a[k]` and `b[k]` are the same cluster (world) and examples are matched by id (see
/// [`paired_differences`]). Resampling the differences resamples the pairs together.
pub fn paired_cluster_bootstrap_mean_ci(
    a: &[Vec<(String, f64)>],
    b: &[Vec<(String, f64)>],
    config: &BootstrapConfig,
) -> Result<Interval> {
    cluster_bootstrap_mean_ci(&paired_differences(a, b)?, config)
}

/// The relative reduction `1 − mean(a) / mean(b)` (each a mean of cluster means, as in
/// [`cluster_bootstrap_mean_ci`]) with its two-level percentile interval, the pairs (examples
/// matched by id within a cluster) resampled together: one replicate draws K clusters, then
/// n_k pairs inside each, exactly as the unpaired bootstrap draws examples. A replicate whose
/// `mean(b)` is 0 is left out; errors when the data's own `mean(b)` is 0 or no replicate is left.
pub fn paired_cluster_bootstrap_reduction_ci(
    a: &[Vec<(String, f64)>],
    b: &[Vec<(String, f64)>],
    config: &BootstrapConfig,
) -> Result<Interval> {
    paired_differences(a, b)?; // same checks: clusters, ids, finiteness
    ensure!(config.replicates > 0, "bootstrap: replicates must be at least 1");
    ensure!(config.level > 0.0 && config.level < 1.0, "bootstrap: level {} is not in (0, 1)", config.level);
    let pairs: Vec<Vec<(f64, f64)>> = a
        .iter()
        .zip(b)
        .map(|(ca, cb)| {
            let by_id: std::collections::HashMap<&str, f64> = cb.iter().map(|(id, v)| (id.as_str(), *v)).collect();
            ca.iter().map(|(id, x)| (*x, by_id[id.as_str()])).collect()
        })
        .collect();
    let reduction = |draw: &mut dyn FnMut(usize) -> usize, resample: bool| -> Option<f64> {
        let k = pairs.len();
        let (mut sa, mut sb) = (0.0, 0.0);
        for j in 0..k {
            let c = if resample { &pairs[draw(k)] } else { &pairs[j] };
            let n = c.len();
            let (mut ca, mut cb) = (0.0, 0.0);
            for i in 0..n {
                let (x, y) = if resample { c[draw(n)] } else { c[i] };
                ca += x;
                cb += y;
            }
            sa += ca / n as f64;
            sb += cb / n as f64;
        }
        (sb != 0.0).then(|| 1.0 - sa / sb)
    };
    let point =
        reduction(&mut |_| 0, false).context("bootstrap: the second sample's mean is 0: no relative reduction")?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut stats: Vec<f64> =
        (0..config.replicates).filter_map(|_| reduction(&mut |n| rng.random_range(0..n), true)).collect();
    ensure!(!stats.is_empty(), "bootstrap: every replicate had a zero denominator");
    stats.sort_by(f64::total_cmp);
    let alpha = 1.0 - config.level;
    Ok(Interval {
        mean: point,
        lo: quantile_sorted(&stats, alpha / 2.0),
        hi: quantile_sorted(&stats, 1.0 - alpha / 2.0),
        level: config.level,
        replicates: config.replicates,
        n_clusters: pairs.len(),
        n_examples: pairs.iter().map(Vec::len).sum(),
    })
}

fn mean_of(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The q-quantile of sorted, non-empty values, linear interpolation (numpy's default).
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    match sorted.get(i + 1) {
        Some(next) if frac > 0.0 => sorted[i] + frac * (next - sorted[i]),
        _ => sorted[i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        // np.quantile([1, 2, 3, 4], [0.025, 0.5, 0.975]) = [1.075, 2.5, 3.925]
        let v = [1.0, 2.0, 3.0, 4.0];
        assert!((quantile_sorted(&v, 0.025) - 1.075).abs() < 1e-12);
        assert!((quantile_sorted(&v, 0.5) - 2.5).abs() < 1e-12);
        assert!((quantile_sorted(&v, 0.975) - 3.925).abs() < 1e-12);
        assert_eq!(quantile_sorted(&[7.0], 0.3), 7.0);
    }

    #[test]
    fn equal_weight_per_cluster() {
        // cluster means 1 and 4: the mean of means is 2.5 (the pooled mean would be 3.25)
        let c = vec![vec![1.0], vec![3.0, 5.0, 4.0]];
        let i = cluster_bootstrap_mean_ci(&c, &BootstrapConfig::default()).unwrap();
        assert_eq!(i.mean, 2.5);
        assert_eq!((i.n_clusters, i.n_examples), (2, 4));
        assert!(i.lo <= i.mean && i.mean <= i.hi);
    }

    #[test]
    fn constant_data_gives_a_point_interval() {
        let c = vec![vec![0.25; 5], vec![0.25; 3]];
        let i = cluster_bootstrap_mean_ci(&c, &BootstrapConfig::default()).unwrap();
        assert_eq!((i.mean, i.lo, i.hi), (0.25, 0.25, 0.25));
    }

    #[test]
    fn reduction_point_and_interval() {
        let id = |v: &[f64]| v.iter().enumerate().map(|(i, x)| (format!("e{i}"), *x)).collect::<Vec<_>>();
        // hand computation: mean a = (0.1 + 0.3)/2 = 0.2, mean b = (0.4 + 0.4)/2 = 0.4 → 1 − 0.5 = 0.5
        let i =
            paired_cluster_bootstrap_reduction_ci(&[id(&[0.1, 0.3])], &[id(&[0.4, 0.4])], &BootstrapConfig::default())
                .unwrap();
        assert!((i.mean - 0.5).abs() < 1e-15);
        // resamples: a ∈ {0.1, 0.2, 0.3} over b = 0.4 → reductions in [0.25, 0.75]
        assert!(i.lo >= 0.25 - 1e-12 && i.hi <= 0.75 + 1e-12 && i.lo < 0.5 && i.hi > 0.5, "{i:?}");
        assert!(
            paired_cluster_bootstrap_reduction_ci(&[id(&[1.0])], &[id(&[0.0])], &BootstrapConfig::default()).is_err()
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let cfg = BootstrapConfig::default();
        let msg = |r: Result<Interval>| format!("{:#}", r.unwrap_err());
        assert_eq!(msg(cluster_bootstrap_mean_ci(&[], &cfg)), "bootstrap: no clusters");
        assert_eq!(msg(cluster_bootstrap_mean_ci(&[vec![1.0], vec![]], &cfg)), "bootstrap: cluster 1 has no values");
        assert!(
            msg(cluster_bootstrap_mean_ci(&[vec![1.0, f64::NAN]], &cfg)).contains("cluster 0, value 1 is not finite")
        );
        assert!(msg(cluster_bootstrap_mean_ci(&[vec![f64::INFINITY]], &cfg)).contains("not finite"));
        let bad_level = BootstrapConfig { level: 1.0, ..cfg };
        assert!(msg(cluster_bootstrap_mean_ci(&[vec![1.0]], &bad_level)).contains("level 1 is not in (0, 1)"));
        let no_reps = BootstrapConfig { replicates: 0, ..cfg };
        assert!(cluster_bootstrap_mean_ci(&[vec![1.0]], &no_reps).is_err());
    }

    #[test]
    fn pairs_are_matched_by_id() {
        let s = |v: &[(&str, f64)]| v.iter().map(|(i, x)| ((*i).to_owned(), *x)).collect::<Vec<_>>();
        let a = vec![s(&[("q1", 1.0), ("q2", 5.0)]), s(&[("q1", 2.0)])];
        let b = vec![s(&[("q2", 4.0), ("q1", 0.5)]), s(&[("q1", 2.0)])];
        assert_eq!(paired_differences(&a, &b).unwrap(), vec![vec![0.5, 1.0], vec![0.0]]);

        let err =
            |a: &[Vec<(String, f64)>], b: &[Vec<(String, f64)>]| format!("{:#}", paired_differences(a, b).unwrap_err());
        assert_eq!(err(&a, &b[..1]), "paired: 2 clusters against 1");
        assert!(err(&a, &[s(&[("q2", 4.0), ("q3", 0.5)]), s(&[("q1", 2.0)])])
            .contains("\"q1\" is not in the second sample"));
        assert!(err(&a, &[s(&[("q2", 4.0)]), s(&[("q1", 2.0)])]).contains("2 examples in the first sample and 1"));
        assert!(err(&a, &[s(&[("q2", 4.0), ("q2", 1.0)]), s(&[("q1", 2.0)])]).contains("repeated in the second"));
        assert!(
            err(&[s(&[("q1", 1.0), ("q1", 5.0)])], &[s(&[("q1", 4.0), ("q2", 1.0)])]).contains("repeated in the first")
        );
        assert!(err(&[s(&[("q1", f64::NAN)])], &[s(&[("q1", 4.0)])]).contains("non-finite"));
        assert_eq!(err(&[], &[]), "paired: no clusters");
    }
}
