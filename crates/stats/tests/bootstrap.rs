//! The cluster bootstrap: coverage of the 95 % interval on distributions with a known mean
//! (one level: 200 normal samples; two levels: 200 draws of a normal random-effects model),
//! agreement with a plain re-implementation of the documented draw order (which also pins the
//! one-cluster and one-example-per-cluster cases), determinism, and the paired version.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stats::{cluster_bootstrap_mean_ci, paired_cluster_bootstrap_mean_ci, BootstrapConfig};

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[test]
fn example_bootstrap_covers_a_normal_mean() {
    // 200 samples of 50 values from N(3, 2²); the 95 % interval should cover 3 about 95 % of
    // the time (the percentile bootstrap of a mean runs a little short at n = 50).
    let (mu, sigma, n, reps) = (3.0, 2.0, 50, 200);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut covered = 0;
    for rep in 0..reps {
        let sample: Vec<f64> = (0..n).map(|_| mu + sigma * normal(&mut rng)).collect();
        let cfg = BootstrapConfig { seed: rep, ..BootstrapConfig::default() };
        let i = cluster_bootstrap_mean_ci(&[sample], &cfg).unwrap();
        assert!(i.lo <= i.mean && i.mean <= i.hi);
        covered += usize::from(i.lo <= mu && mu <= i.hi);
    }
    assert!((180..=198).contains(&covered), "covered {covered} of {reps}");
}

#[test]
fn cluster_bootstrap_covers_a_two_level_normal_mean() {
    // y_ke = μ + u_k + e_ke, u_k ~ N(0, 0.5²) per cluster, e_ke ~ N(0, 1); 20 clusters of
    // 8 to 20 examples. The mean of cluster means has expectation μ.
    let (mu, tau, reps) = (1.0, 0.5, 200);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let mut covered = 0;
    let mut widths = Vec::new();
    for rep in 0..reps {
        let clusters: Vec<Vec<f64>> = (0..20)
            .map(|_| {
                let u = tau * normal(&mut rng);
                let n = rng.random_range(8..=20);
                (0..n).map(|_| mu + u + normal(&mut rng)).collect()
            })
            .collect();
        let cfg = BootstrapConfig { seed: rep, ..BootstrapConfig::default() };
        let i = cluster_bootstrap_mean_ci(&clusters, &cfg).unwrap();
        covered += usize::from(i.lo <= mu && mu <= i.hi);
        widths.push(i.hi - i.lo);
    }
    assert!((180..=198).contains(&covered), "covered {covered} of {reps}");
    // Ignoring the clusters would give about ±1.96·√(1/280) ≈ ±0.12; the cluster effects alone
    // make the standard error of the mean of 20 cluster means at least 0.5/√20 ≈ 0.11, so the
    // interval must be wider than the example-only one: ≈ ±1.96·√(0.25/20 + 1/(20·14)) ≈ ±0.25.
    let mean_width = widths.iter().sum::<f64>() / widths.len() as f64;
    assert!(mean_width > 0.4 && mean_width < 0.65, "mean width {mean_width}");
}

/// The documented algorithm, written out plainly: per replicate, per cluster draw, the cluster
/// index then the example indices, all from one ChaCha8 stream; numpy-style linear quantiles.
fn reference(clusters: &[Vec<f64>], cfg: &BootstrapConfig) -> (f64, f64, f64) {
    let k = clusters.len();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut reps = Vec::new();
    for _ in 0..cfg.replicates {
        let mut means = Vec::new();
        for _ in 0..k {
            let c = &clusters[rng.random_range(0..k)];
            let draws: Vec<f64> = (0..c.len()).map(|_| c[rng.random_range(0..c.len())]).collect();
            means.push(draws.iter().sum::<f64>() / draws.len() as f64);
        }
        reps.push(means.iter().sum::<f64>() / k as f64);
    }
    reps.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let h = p * (reps.len() - 1) as f64;
        let (i, f) = (h.floor() as usize, h - h.floor());
        if i + 1 < reps.len() {
            reps[i] + f * (reps[i + 1] - reps[i])
        } else {
            reps[i]
        }
    };
    let mean = clusters.iter().map(|c| c.iter().sum::<f64>() / c.len() as f64).sum::<f64>() / k as f64;
    let a = 1.0 - cfg.level;
    (mean, q(a / 2.0), q(1.0 - a / 2.0))
}

#[test]
fn follows_the_documented_algorithm_in_every_shape() {
    let cfg = BootstrapConfig { replicates: 500, level: 0.9, seed: 7 };
    let shapes: [Vec<Vec<f64>>; 3] = [
        // one cluster: the ordinary bootstrap over examples
        vec![vec![0.1, 0.9, 0.4, 0.35, 0.7]],
        // one example per cluster: the bootstrap over clusters
        vec![vec![1.0], vec![2.0], vec![4.0], vec![8.0]],
        // unequal clusters
        vec![vec![1.0, 2.0], vec![0.5, 0.25, 0.125], vec![3.0]],
    ];
    for clusters in shapes {
        let i = cluster_bootstrap_mean_ci(&clusters, &cfg).unwrap();
        let (mean, lo, hi) = reference(&clusters, &cfg);
        assert!((i.mean - mean).abs() < 1e-15, "{clusters:?}");
        assert!((i.lo - lo).abs() < 1e-12 && (i.hi - hi).abs() < 1e-12, "{clusters:?}: {i:?} vs ({lo}, {hi})");
        assert_eq!(i.n_clusters, clusters.len());
        assert_eq!(i.n_examples, clusters.iter().map(Vec::len).sum::<usize>());
        assert_eq!((i.level, i.replicates), (0.9, 500));
    }
}

#[test]
fn same_seed_same_interval() {
    let clusters = vec![vec![0.3, 0.1, 0.8], vec![0.5, 0.45], vec![0.9, 0.2, 0.6, 0.7]];
    let cfg = BootstrapConfig::default();
    let a = cluster_bootstrap_mean_ci(&clusters, &cfg).unwrap();
    let b = cluster_bootstrap_mean_ci(&clusters, &cfg).unwrap();
    assert_eq!(a, b);
    let c = cluster_bootstrap_mean_ci(&clusters, &BootstrapConfig { seed: 1, ..cfg }).unwrap();
    assert_eq!(a.mean, c.mean);
    assert_ne!((a.lo, a.hi), (c.lo, c.hi), "another seed draws other resamples");
}

#[test]
fn paired_interval_is_the_interval_of_the_differences() {
    let s = |v: &[(&str, f64)]| v.iter().map(|(i, x)| ((*i).to_owned(), *x)).collect::<Vec<_>>();
    let a = vec![s(&[("e1", 0.9), ("e2", 0.7), ("e3", 0.8)]), s(&[("e1", 0.6), ("e2", 0.95)])];
    // b lists the same examples in another order
    let b = vec![s(&[("e3", 0.3), ("e1", 0.2), ("e2", 0.4)]), s(&[("e2", 0.5), ("e1", 0.1)])];
    let cfg = BootstrapConfig::default();
    let paired = paired_cluster_bootstrap_mean_ci(&a, &b, &cfg).unwrap();
    let d = vec![vec![0.9 - 0.2, 0.7 - 0.4, 0.8 - 0.3], vec![0.6 - 0.1, 0.95 - 0.5]];
    assert_eq!(paired, cluster_bootstrap_mean_ci(&d, &cfg).unwrap());
    // all differences positive: the interval excludes 0
    assert!(paired.lo > 0.0);
}
