//! Rank correlation: Spearman's ρ (`scipy.stats.spearmanr`: Pearson's correlation of the
//! average ranks, ties sharing the mean of their positions) and a stratified version for
//! designed experiments, with a cluster bootstrap interval and a permutation p-value.
//!
//! [`stratified_spearman`] answers "does y rise with x?" when x was varied inside strata (e.g.
//! MSA's θ_0 checkpoint varied at fixed world, seed, α and β) and strata are grouped in
//! clusters (world seeds, the unit of replication):
//!
//! - **statistic**: the mean over strata of each stratum's ρ (strata whose x or y is constant
//!   have no ρ and are left out; [`StratifiedSpearman::strata`] counts those used);
//! - **interval**: percentile bootstrap over clusters — each replicate draws K clusters with
//!   replacement and takes the mean ρ of all their strata (within a cluster the design is fixed,
//!   so strata are not resampled); `ChaCha8Rng::seed_from_u64(config.seed)`, numpy's linear
//!   quantile, as in [`crate::bootstrap`];
//! - **p-value**: two-sided permutation test of "no association": x shuffled within every
//!   stratum (Fisher–Yates with the same seeded generator, seed + 1), p = (1 + #{|ρ*| ≥ |ρ|}) /
//!   (1 + permutations), the usual unbiased Monte Carlo estimate (Phipson & Smyth 2010).

use anyhow::{bail, ensure, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::bootstrap::{quantile_sorted, BootstrapConfig, Interval};

/// Average ranks, 1-based (ties get the mean of the positions they span), as
/// `scipy.stats.rankdata(method="average")`. NaN is an error.
pub fn ranks(x: &[f64]) -> Result<Vec<f64>> {
    if let Some(i) = x.iter().position(|v| v.is_nan()) {
        bail!("ranks: value {i} is NaN");
    }
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut out = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = r;
        }
        i = j + 1;
    }
    Ok(out)
}

/// Spearman's ρ of paired samples; `None` when fewer than two pairs or when x or y is constant
/// (scipy returns NaN there). Errors: different lengths, a NaN.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<Option<f64>> {
    ensure!(x.len() == y.len(), "spearman: {} x values but {} y values", x.len(), y.len());
    if x.len() < 2 {
        return Ok(None);
    }
    let (rx, ry) = (ranks(x)?, ranks(y)?);
    Ok(pearson(&rx, &ry))
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// One stratum: paired x and y values.
pub type Stratum = (Vec<f64>, Vec<f64>);

/// The result of [`stratified_spearman`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StratifiedSpearman {
    /// Mean ρ over usable strata, with its cluster bootstrap interval (`interval.mean` = `rho`).
    pub rho: f64,
    pub interval: Interval,
    /// Two-sided permutation p-value.
    pub p_value: f64,
    pub permutations: usize,
    /// Strata with a defined ρ, and all strata given.
    pub strata: usize,
    pub strata_given: usize,
    /// Clusters with at least one usable stratum.
    pub clusters: usize,
}

/// Stratified Spearman correlation (see the module documentation): `clusters[k]` is the list of
/// strata of cluster k. Errors: no stratum with a defined ρ, a NaN, mismatched lengths, a bad
/// configuration.
pub fn stratified_spearman(
    clusters: &[Vec<Stratum>],
    config: &BootstrapConfig,
    permutations: usize,
) -> Result<StratifiedSpearman> {
    ensure!(config.replicates > 0, "spearman: replicates must be at least 1");
    ensure!(config.level > 0.0 && config.level < 1.0, "spearman: level {} is not in (0, 1)", config.level);
    ensure!(permutations > 0, "spearman: permutations must be at least 1");
    let strata_given = clusters.iter().map(Vec::len).sum();
    // usable strata, by cluster, with their ρ
    let mut usable: Vec<Vec<(&Stratum, f64)>> = Vec::new();
    for c in clusters {
        let mut u = Vec::new();
        for s in c {
            if let Some(r) = spearman(&s.0, &s.1)? {
                u.push((s, r));
            }
        }
        if !u.is_empty() {
            usable.push(u);
        }
    }
    let strata: usize = usable.iter().map(Vec::len).sum();
    ensure!(strata > 0, "spearman: none of the {strata_given} strata has two distinct x and y values");
    let mean_rho = |cs: &[&Vec<(&Stratum, f64)>]| {
        let (s, n) = cs.iter().flat_map(|c| c.iter()).fold((0.0, 0usize), |(s, n), (_, r)| (s + r, n + 1));
        s / n as f64
    };
    let all: Vec<&Vec<(&Stratum, f64)>> = usable.iter().collect();
    let rho = mean_rho(&all);

    let k = usable.len();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut reps = Vec::with_capacity(config.replicates);
    for _ in 0..config.replicates {
        let draw: Vec<&Vec<(&Stratum, f64)>> = (0..k).map(|_| &usable[rng.random_range(0..k)]).collect();
        reps.push(mean_rho(&draw));
    }
    reps.sort_by(f64::total_cmp);
    let alpha = 1.0 - config.level;
    let interval = Interval {
        mean: rho,
        lo: quantile_sorted(&reps, alpha / 2.0),
        hi: quantile_sorted(&reps, 1.0 - alpha / 2.0),
        level: config.level,
        replicates: config.replicates,
        n_clusters: k,
        n_examples: strata,
    };

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(1));
    let mut extreme = 0usize;
    for _ in 0..permutations {
        let mut sum = 0.0;
        for (s, _) in usable.iter().flatten() {
            let mut x = s.0.clone();
            for i in (1..x.len()).rev() {
                x.swap(i, rng.random_range(0..=i));
            }
            sum += spearman(&x, &s.1)?.unwrap_or(0.0);
        }
        if (sum / strata as f64).abs() >= rho.abs() - 1e-12 {
            extreme += 1;
        }
    }
    Ok(StratifiedSpearman {
        rho,
        interval,
        p_value: (1 + extreme) as f64 / (1 + permutations) as f64,
        permutations,
        strata,
        strata_given,
        clusters: k,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        // scipy.stats.rankdata([3, 1, 4, 1, 5]) = [3, 1.5, 4, 1.5, 5]
        assert_eq!(ranks(&[3.0, 1.0, 4.0, 1.0, 5.0]).unwrap(), vec![3.0, 1.5, 4.0, 1.5, 5.0]);
        assert!(ranks(&[f64::NAN]).is_err());
    }

    #[test]
    fn spearman_matches_scipy() {
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]).statistic = 0.8207826816681233
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap().unwrap();
        assert!((r - 0.8207826816681233).abs() < 1e-14, "{r}");
        // scipy.stats.spearmanr([0, 0, 1, 1], [0.3, 0.1, 0.9, 0.5]).statistic = 0.8944271909999159
        let r = spearman(&[0.0, 0.0, 1.0, 1.0], &[0.3, 0.1, 0.9, 0.5]).unwrap().unwrap();
        assert!((r - 0.8944271909999159).abs() < 1e-14, "{r}");
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]).unwrap(), None);
        assert_eq!(spearman(&[1.0], &[1.0]).unwrap(), None);
        assert!(spearman(&[1.0, 2.0], &[1.0]).is_err());
    }

    #[test]
    fn stratified_statistic_interval_and_p() {
        // two clusters, perfectly monotone strata: ρ = 1 everywhere, every replicate is 1
        let up = (vec![0.0, 1.0, 2.0, 3.0], vec![0.1, 0.2, 0.5, 0.9]);
        let s = stratified_spearman(&[vec![up.clone()], vec![up.clone()]], &BootstrapConfig::default(), 2000).unwrap();
        assert_eq!((s.rho, s.interval.lo, s.interval.hi, s.strata, s.clusters), (1.0, 1.0, 1.0, 2, 2));
        // the permutation null: P(|mean ρ| = 1) for two independent 4-point strata is
        // (2/24)² = 1/144, so p ≈ 1/144 + 1/2001 ≈ 0.0074 (Monte Carlo: within 0.01)
        assert!(s.p_value < 0.02 && s.p_value > 0.0, "{}", s.p_value);
        // a constant stratum is left out; opposite strata cancel
        let down = (vec![0.0, 1.0, 2.0, 3.0], vec![0.9, 0.5, 0.2, 0.1]);
        let flat = (vec![0.0, 1.0, 2.0], vec![0.3, 0.3, 0.3]);
        let s = stratified_spearman(&[vec![up, flat.clone()], vec![down]], &BootstrapConfig::default(), 500).unwrap();
        assert_eq!((s.rho, s.strata, s.strata_given), (0.0, 2, 3));
        assert!(s.p_value > 0.5, "{}", s.p_value);
        assert!(stratified_spearman(&[vec![flat]], &BootstrapConfig::default(), 10).is_err());
    }
}
