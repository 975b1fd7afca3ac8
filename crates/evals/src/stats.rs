//! Statistics behind the metrics: the two-sample Kolmogorov–Smirnov test (TOFU's forget quality),
//! ROC AUC (MUSE's PrivLeak), Min-K% Prob (Shi et al. 2024), harmonic mean (TOFU's model utility),
//! normal-approximation confidence intervals and KL divergence of log-softmax rows.
//!
//! `ks_2samp` ports scipy.stats.ks_2samp (scipy 1.17, `alternative='two-sided'`, `method='auto'`):
//! the statistic, then the exact p-value when max(n, m) <= 10000 via `_compute_prob_outside_square`
//! (n == m) or `_compute_outer_prob_inside_method` (Hodges 1958, with Viehmann 2021's 1 − p
//! recursion). Where scipy would use the asymptotic distribution — samples over 10000, or the exact
//! computation failing — scipy evaluates `kstwo.sf(d, round(n·m/(n+m)))` (the finite-n
//! Kolmogorov distribution, Simard & L'Ecuyer 2011); we use its limit, Kolmogorov's
//! `kstwobign.sf(sqrt(round(n·m/(n+m)))·d)`, which is what `method` = `Asymptotic` reports.
//! The two differ by O(1/sqrt(n)) relative; for the sample sizes where it applies (> 10000) the
//! p-values are tiny or close to scipy's.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// How a KS p-value was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KsMethod {
    Exact,
    Asymptotic,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KsResult {
    pub statistic: f64,
    pub pvalue: f64,
    pub method: KsMethod,
}

/// scipy's `MAX_AUTO_N`: exact p-values up to this sample size.
const MAX_EXACT_N: usize = 10_000;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn check_finite(xs: &[f64], what: &str) -> Result<()> {
    if xs.is_empty() {
        bail!("{what}: sample is empty");
    }
    if let Some(i) = xs.iter().position(|x| !x.is_finite()) {
        bail!("{what}: value {} at index {i} is not finite", xs[i]);
    }
    Ok(())
}

/// Number of elements of sorted `xs` that are `<= v` (numpy `searchsorted(side='right')`).
fn count_le(xs: &[f64], v: f64) -> usize {
    xs.partition_point(|&x| x <= v)
}

/// Two-sided two-sample KS test, as `scipy.stats.ks_2samp(a, b)`.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Result<KsResult> {
    check_finite(a, "ks_2samp first sample")?;
    check_finite(b, "ks_2samp second sample")?;
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (n1, n2) = (a.len(), b.len());
    let mut max_s = f64::NEG_INFINITY;
    let mut min_s = f64::INFINITY;
    for &v in a.iter().chain(&b) {
        let diff = count_le(&a, v) as f64 / n1 as f64 - count_le(&b, v) as f64 / n2 as f64;
        max_s = max_s.max(diff);
        min_s = min_s.min(diff);
    }
    let min_s = (-min_s).clamp(0.0, 1.0);
    let d = if min_s > max_s { min_s } else { max_s };

    let g = gcd(n1 as u64, n2 as u64);
    if n1.max(n2) <= MAX_EXACT_N {
        if let Some((d_exact, p)) = exact_two_sided(n1 as u64, n2 as u64, g, d) {
            return Ok(KsResult { statistic: d_exact, pvalue: p.clamp(0.0, 1.0), method: KsMethod::Exact });
        }
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even();
    let p = kolmogorov_sf(en.sqrt() * d);
    Ok(KsResult { statistic: d, pvalue: p.clamp(0.0, 1.0), method: KsMethod::Asymptotic })
}

/// scipy's `_attempt_exact_2kssamp` for the two-sided alternative: `None` when the computation
/// is not numerically trustworthy (scipy then falls back to the asymptotic distribution).
fn exact_two_sided(n1: u64, n2: u64, g: u64, d: f64) -> Option<(f64, f64)> {
    let lcm = (n1 / g) * n2;
    let h = (d * lcm as f64).round_ties_even() as u64;
    let d = h as f64 / lcm as f64;
    if h == 0 {
        return Some((d, 1.0));
    }
    let p = if n1 == n2 { prob_outside_square(n1, h) } else { outer_prob_inside(n1, n2, g, h) };
    if !p.is_finite() || !(0.0..=1.0).contains(&p) {
        return None;
    }
    Some((d, p))
}

/// scipy `_compute_prob_outside_square(n, h)`: P(D_{n,n} >= h/n), Horner-like evaluation of
/// 2·Σ(−1)^(k−1) binom(2n, n−kh)/binom(2n, n).
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as i64, h as i64);
    let mut p = 0.0f64;
    let mut k = n / h;
    while k >= 0 {
        let mut p1 = 1.0f64;
        for j in 0..h {
            p1 = (n - k * h - j) as f64 * p1 / (n + k * h + j + 1) as f64;
        }
        p = p1 * (1.0 - p);
        k -= 1;
    }
    2.0 * p
}

/// scipy `_compute_outer_prob_inside_method(m, n, g, h)`: proportion of lattice paths from (0,0)
/// to (m,n) that leave the band |x/m − y/n| < h/lcm(m,n), computed as 1 − p column by column.
fn outer_prob_inside(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m < n { (n, m) } else { (m, n) };
    let (m, n, g, h) = (m as i64, n as i64, g as i64, h as i64);
    let mg = m / g;
    let ng = n / g;
    let ceil_div = |x: i64, y: i64| -(-x).div_euclid(y);
    let mut minj: i64 = 0;
    let mut maxj: i64 = ceil_div(h, mg).min(n + 1);
    let mut curlen = maxj - minj;
    let len_a = (2 * maxj + 2).min(n + 1) as usize;
    let mut a = vec![1.0f64; len_a];
    for v in a.iter_mut().take(maxj as usize).skip(minj as usize) {
        *v = 0.0;
    }
    for i in 1..=m {
        let (lastminj, lastlen) = (minj, curlen);
        minj = ((ng * i - h).div_euclid(mg) + 1).max(0).min(n);
        maxj = ceil_div(ng * i + h, mg).min(n + 1);
        if maxj <= minj {
            return 1.0;
        }
        let mut val = if minj == 0 { 0.0 } else { 1.0 };
        for jj in 0..(maxj - minj) {
            let j = (jj + minj) as f64;
            let src = (jj + minj - lastminj) as usize;
            val = (a[src] * i as f64 + val * j) / (i as f64 + j);
            a[jj as usize] = val;
        }
        curlen = maxj - minj;
        if lastlen > curlen {
            let lo = ((maxj - minj) as usize).min(len_a);
            let hi = ((maxj - minj + (lastlen - curlen)) as usize).min(len_a);
            for v in &mut a[lo..hi] {
                *v = 1.0;
            }
        }
    }
    a[(maxj - minj - 1) as usize]
}

/// Survival function of Kolmogorov's limiting distribution (scipy `kstwobign.sf`).
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x < 1.0 {
        // CDF = sqrt(2π)/x · Σ_k exp(−(2k−1)²π²/(8x²)), converges fast for small x.
        let mut cdf = 0.0;
        for k in 1..=20 {
            let t = (2 * k - 1) as f64;
            cdf += (-(t * t) * std::f64::consts::PI.powi(2) / (8.0 * x * x)).exp();
        }
        1.0 - (2.0 * std::f64::consts::PI).sqrt() / x * cdf
    } else {
        // SF = 2 Σ_k (−1)^(k−1) exp(−2k²x²), converges fast for x >= 1.
        let mut sf = 0.0;
        for k in 1..=100 {
            let kf = k as f64;
            let term = (-2.0 * kf * kf * x * x).exp();
            sf += if k % 2 == 1 { term } else { -term };
            if term < 1e-300 {
                break;
            }
        }
        2.0 * sf
    }
}

/// ROC AUC of `positive` vs `negative` scores (higher score = more likely positive), ties counted
/// 0.5: the Mann–Whitney U statistic divided by |pos|·|neg|. O((n+m) log(n+m)).
pub fn roc_auc(positive: &[f64], negative: &[f64]) -> Result<f64> {
    check_finite(positive, "roc_auc positive scores")?;
    check_finite(negative, "roc_auc negative scores")?;
    let mut neg = negative.to_vec();
    neg.sort_by(f64::total_cmp);
    let mut wins = 0.0f64;
    for &p in positive {
        let below = neg.partition_point(|&x| x < p);
        let le = neg.partition_point(|&x| x <= p);
        wins += below as f64 + 0.5 * (le - below) as f64;
    }
    Ok(wins / (positive.len() as f64 * negative.len() as f64))
}

/// Min-K% Prob (Shi et al. 2024): mean of the lowest `k` fraction of token log-probs. The number
/// of tokens kept is max(1, floor(n·k)), as in open-unlearning's `mink` attack.
pub fn min_k_prob(token_logprobs: &[f32], k: f64) -> Result<f64> {
    if token_logprobs.is_empty() {
        bail!("min_k_prob: no token log-probs");
    }
    let lp: Vec<f64> = token_logprobs.iter().map(|&x| x as f64).collect();
    mean_of_lowest(&lp, k)
}

/// Mean of the lowest max(1, floor(n·k)) of `values` (the Min-K% selection, also used by
/// Min-K%++ on its per-token z-scores). Errors on empty input or k outside (0, 1].
pub fn mean_of_lowest(values: &[f64], k: f64) -> Result<f64> {
    if values.is_empty() {
        bail!("min-k: no values");
    }
    if !(k > 0.0 && k <= 1.0) {
        bail!("min-k: k = {k} must be in (0, 1]");
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let keep = ((v.len() as f64 * k).floor() as usize).max(1);
    Ok(v[..keep].iter().sum::<f64>() / keep as f64)
}

/// Harmonic mean (scipy `hmean`): 0 when any value is 0; errors on negative or empty input.
pub fn harmonic_mean(xs: &[f64]) -> Result<f64> {
    check_finite(xs, "harmonic_mean")?;
    if let Some(x) = xs.iter().find(|&&x| x < 0.0) {
        bail!("harmonic_mean: negative value {x}");
    }
    if xs.contains(&0.0) {
        return Ok(0.0);
    }
    Ok(xs.len() as f64 / xs.iter().map(|x| 1.0 / x).sum::<f64>())
}

pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample variance (ddof = 1); NaN for fewer than two values.
pub fn sample_variance(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64
}

/// z_{0.975}, the 95% two-sided normal quantile.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Difference of means `mean(a) − mean(b)` with a 95% normal-approximation confidence interval,
/// standard error sqrt(var_a/n_a + var_b/n_b) (unpooled, sample variances).
pub fn mean_diff_ci95(a: &[f64], b: &[f64]) -> Result<(f64, f64, f64)> {
    if a.len() < 2 || b.len() < 2 {
        bail!("mean_diff_ci95 needs at least two values per group, got {} and {}", a.len(), b.len());
    }
    let diff = mean(a) - mean(b);
    let se = (sample_variance(a) / a.len() as f64 + sample_variance(b) / b.len() as f64).sqrt();
    Ok((diff, diff - Z95 * se, diff + Z95 * se))
}

/// KL(p || q) = Σ_v p(v)·(log p(v) − log q(v)) for two log-softmax rows of the same vocabulary.
pub fn kl_logsoftmax(log_p: &[f32], log_q: &[f32]) -> Result<f64> {
    if log_p.len() != log_q.len() {
        bail!("kl: distributions over {} and {} classes", log_p.len(), log_q.len());
    }
    let mut kl = 0.0f64;
    for (&lp, &lq) in log_p.iter().zip(log_q) {
        let (lp, lq) = (lp as f64, lq as f64);
        if lp == f64::NEG_INFINITY {
            continue; // 0 · log 0 = 0
        }
        kl += lp.exp() * (lp - lq);
    }
    Ok(kl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_ks(a: &[f64], b: &[f64], stat: f64, p: f64) {
        let r = ks_2samp(a, b).unwrap();
        assert!((r.statistic - stat).abs() < 1e-12, "statistic {} vs scipy {stat}", r.statistic);
        let rel = ((r.pvalue - p) / p.max(1e-300)).abs();
        assert!(rel < 1e-9, "p-value {:e} vs scipy {p:e} (rel err {rel:e})", r.pvalue);
    }

    /// Deterministic pseudo-random sample (LCG), mirrored in the python snippet below.
    fn lcg(seed: u64, n: usize, scale: f64, shift: f64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = (s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407)) % (1 << 63);
                ((s >> 11) as f64 / (1u64 << 52) as f64) * scale + shift
            })
            .collect()
    }

    #[test]
    fn ks_matches_scipy() {
        // Reference values from scipy 1.17 (see KS_REFERENCE_PY at the bottom of this file).
        check_ks(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0], 1.0, 0.007936507936507936);
        check_ks(&[1.0, 2.0, 2.0, 3.0, 3.0, 3.0], &[2.0, 3.0, 4.0, 4.0], 0.5, 0.5523809523809524);
        check_ks(&[0.1, 0.5, 0.9], &[0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 1.0], 0.3333333333333333, 0.9333333333333332);
        check_ks(&[1.0, 1.0, 1.0], &[1.0, 1.0], 0.0, 1.0);
        let a = lcg(1, 40, 1.0, 0.0);
        let b = lcg(2, 40, 1.0, 0.3);
        check_ks(&a, &b, KS_40_40.0, KS_40_40.1);
        let c = lcg(3, 400, 1.0, 0.0);
        let d = lcg(4, 113, 1.2, 0.1);
        check_ks(&c, &d, KS_400_113.0, KS_400_113.1);
        let e = lcg(5, 200, 1.0, 0.0);
        let f = lcg(6, 300, 1.0, 0.05);
        check_ks(&e, &f, KS_200_300.0, KS_200_300.1);
    }

    const KS_40_40: (f64, f64) = (0.5, 6.5768913245274e-05);
    const KS_400_113: (f64, f64) = (0.2731858407079646, 2.6719657954264367e-06);
    const KS_200_300: (f64, f64) = (0.11, 0.10406407399422825);

    #[test]
    fn ks_matches_scipy_on_larger_and_tied_samples() {
        // scipy 1.17: ks_2samp(lcg(21,1000,1,0), lcg(22,999,1,.02)) etc. (same lcg as below);
        // the tied case rounds lcg values to quarters: [float(round(x*4)) for x in lcg(...)]
        check_ks(&lcg(21, 1000, 1.0, 0.0), &lcg(22, 999, 1.0, 0.02), 0.05590790790790791, 0.08205009104624261);
        check_ks(&lcg(23, 3000, 1.0, 0.0), &lcg(24, 3000, 1.0, 0.03), 0.036, 0.04096434513384709);
        check_ks(&lcg(25, 5, 1.0, 0.0), &lcg(26, 10000, 1.0, 0.0), 0.3657, 0.41412837725870505);
        let q = |v: Vec<f64>| v.into_iter().map(|x| (x * 4.0).round_ties_even()).collect::<Vec<_>>();
        check_ks(&q(lcg(27, 7, 1.0, 0.0)), &q(lcg(28, 13, 1.0, 0.2)), 0.46153846153846156, 0.23111455108359139);
    }

    #[test]
    fn ks_large_samples_use_the_kolmogorov_limit() {
        // Above 10000 samples scipy switches to kstwo.sf(d, round(en)); we use kstwobign (see the
        // module docs). scipy 1.17 gives: statistic 0.01459615086281818, p 0.23477737045186908,
        // and kstwobign.sf(sqrt(round(en)) * d) = 0.23706279931014754 (what we return).
        let a = lcg(9, 10001, 1.0, 0.0);
        let b = lcg(10, 10002, 1.0, 0.01);
        let r = ks_2samp(&a, &b).unwrap();
        assert_eq!(r.method, KsMethod::Asymptotic);
        assert!((r.statistic - 0.01459615086281818).abs() < 1e-12);
        assert!((r.pvalue - 0.23706279931014754).abs() < 1e-9, "{}", r.pvalue);
        assert!((r.pvalue - 0.23477737045186908).abs() < 3e-3);
    }

    #[test]
    fn kolmogorov_sf_matches_scipy() {
        // scipy.stats.kstwobign.sf([0.3, 0.8, 1.0, 1.5])
        for (x, p) in [
            (0.3, 0.9999906941986655),
            (0.8, 0.5441424115741981),
            (1.0, 0.26999967167735456),
            (1.5, 0.022217962616525127),
        ] {
            assert!((kolmogorov_sf(x) - p).abs() < 1e-12, "kstwobign.sf({x}) = {} vs {p}", kolmogorov_sf(x));
        }
    }

    #[test]
    fn auc_matches_brute_force_pairs() {
        let pos = [0.9, 0.5, 0.5, 0.1, 0.7];
        let neg = [0.5, 0.2, 0.8, 0.5];
        let mut wins = 0.0;
        for p in pos {
            for n in neg {
                wins += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        assert!((roc_auc(&pos, &neg).unwrap() - wins / 20.0).abs() < 1e-15);
        // Hand count: 0.9 beats 4; each 0.5 beats 1 and ties 2 -> 2 (x2); 0.1 beats 0; 0.7 beats 3.
        assert!((roc_auc(&pos, &neg).unwrap() - 11.0 / 20.0).abs() < 1e-15);
        let big_pos = lcg(7, 300, 1.0, 0.1);
        let big_neg = lcg(8, 250, 1.0, 0.0);
        let mut w = 0.0;
        for p in &big_pos {
            for n in &big_neg {
                w += if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                };
            }
        }
        assert!((roc_auc(&big_pos, &big_neg).unwrap() - w / 75000.0).abs() < 1e-12);
    }

    #[test]
    fn min_k_takes_lowest_fraction() {
        // 10 tokens, k = 0.4 -> the 4 lowest: -5, -4, -3, -2 -> mean -3.5
        let lp = [-1.0f32, -5.0, -0.5, -2.0, -3.0, -0.1, -4.0, -0.2, -1.5, -0.3];
        assert!((min_k_prob(&lp, 0.4).unwrap() + 3.5).abs() < 1e-12);
        // 2 tokens, k = 0.4 -> floor(0.8) = 0 -> keep 1 -> the lowest
        assert_eq!(min_k_prob(&[-1.0, -2.0], 0.4).unwrap(), -2.0);
        assert!(min_k_prob(&[], 0.4).is_err());
    }

    #[test]
    fn harmonic_mean_and_ci() {
        // 3 / (1/1 + 1/2 + 1/4) = 12/7
        assert!((harmonic_mean(&[1.0, 2.0, 4.0]).unwrap() - 12.0 / 7.0).abs() < 1e-15);
        assert_eq!(harmonic_mean(&[1.0, 0.0]).unwrap(), 0.0);
        assert!(harmonic_mean(&[-1.0]).is_err());
        // a = [1,2,3]: mean 2, var 1; b = [0,0,3,1]: mean 1, var 2 -> diff 1, se = sqrt(1/3 + 2/4)
        let (d, lo, hi) = mean_diff_ci95(&[1.0, 2.0, 3.0], &[0.0, 0.0, 3.0, 1.0]).unwrap();
        let se = (1.0f64 / 3.0 + 0.5).sqrt();
        assert!((d - 1.0).abs() < 1e-15);
        assert!((lo - (1.0 - Z95 * se)).abs() < 1e-12 && (hi - (1.0 + Z95 * se)).abs() < 1e-12);
    }

    #[test]
    fn kl_of_two_coin_distributions() {
        // p = (0.5, 0.5), q = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3)
        let p = [0.5f32.ln(), 0.5f32.ln()];
        let q = [0.25f32.ln(), 0.75f32.ln()];
        let expected = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kl_logsoftmax(&p, &q).unwrap() - expected).abs() < 1e-7);
        assert!(kl_logsoftmax(&p, &p).unwrap().abs() < 1e-12);
        assert!(kl_logsoftmax(&p, &q[..1]).is_err());
    }
}

// KS_REFERENCE_PY (scipy 1.17.x):
// import numpy as np; from scipy.stats import ks_2samp, kstwobign
// def lcg(seed, n, scale, shift):
//     s, out = seed, []
//     for _ in range(n):
//         s = (s * 6364136223846793005 + 1442695040888963407) % 2**64 % 2**63
//         out.append((s >> 11) / 2**52 * scale + shift)
//     return out
// for a, b in [([1,2,3,4,5],[6,7,8,9,10]), ([1,2,2,3,3,3],[2,3,4,4]), ([.1,.5,.9],[.2,.3,.4,.6,.7,.8,1.]),
//              ([1,1,1],[1,1]), (lcg(1,40,1,0), lcg(2,40,1,.3)), (lcg(3,400,1,0), lcg(4,113,1.2,.1)),
//              (lcg(5,200,1,0), lcg(6,300,1,.05))]:
//     r = ks_2samp(a, b); print(repr(r.statistic), repr(r.pvalue))
// print([repr(x) for x in kstwobign.sf([0.3, 0.8, 1.0, 1.5])])
