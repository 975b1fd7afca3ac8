//! Paired two-sided tests of "a and b have the same centre", each reproducing one scipy call:
//!
//! - [`paired_t_test`]`(a, b)` = `scipy.stats.ttest_rel(a, b)` (alternative='two-sided'):
//!   d = a − b, t = mean(d) / (sd(d; n − 1) / √n), ν = n − 1, p = P(|T_ν| ≥ |t|).
//! - [`wilcoxon_signed_rank`]`(a, b)` = `scipy.stats.wilcoxon(a, b, zero_method='wilcox',
//!   correction=False, method='approx', alternative='two-sided')` (scipy 1.17, against which
//!   it is tested, spells the method 'asymptotic'; 'approx' is its older name): zero differences are
//!   dropped; the n remaining |d| are ranked with average ranks for ties; R⁺ = Σ ranks of
//!   positive d, R⁻ likewise; z = (R⁺ − n(n+1)/4) / σ with
//!   σ² = (n(n+1)(2n+1) − Σ_g (t_g³ − t_g)/2) / 24 over the tie groups g of size t_g;
//!   p = 2·P(Z > |z|); the reported statistic is min(R⁺, R⁻).
//! - [`wilcoxon_signed_rank_exact`]`(a, b)` = the same call with `method='exact'`, for
//!   n ≤ [`WILCOXON_EXACT_MAX_N`] differences with no zeros and no ties (the only case where
//!   scipy's exact null distribution is exact): p = min(1, 2·min(P(W ≥ R⁺), P(W ≤ R⁺))) with W
//!   the sum of a random subset of the ranks 1..n, each subset equally likely (counted exactly
//!   in integers).
//! - [`wilcoxon_signed_rank_auto`]: the exact test when it applies, the normal approximation
//!   otherwise. (Not scipy's `method='auto'`, which goes exact up to n = 50 and permutes for
//!   small samples with ties.)
//!
//! All take the two samples as equally long slices of finite numbers, paired by position; an
//! empty sample, different lengths or a non-finite value is an error. So is a test whose
//! statistic is undefined (all differences zero), where scipy returns NaN.

use anyhow::{bail, ensure, Result};

use crate::special::{normal_sf, student_t_two_sided};

/// The largest number of non-zero differences [`wilcoxon_signed_rank_exact`] accepts.
pub const WILCOXON_EXACT_MAX_N: usize = 25;

/// The result of [`paired_t_test`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TTest {
    /// t = mean(d) / (sd(d) / √n); ±∞ when all differences are equal and non-zero.
    pub statistic: f64,
    /// Degrees of freedom n − 1.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// mean(a − b).
    pub mean_difference: f64,
    pub n: usize,
}

/// How a Wilcoxon p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WilcoxonMethod {
    /// Normal approximation with the tie correction, no continuity correction.
    Approx,
    /// Exact null distribution (no ties, no zeros, small n).
    Exact,
}

impl WilcoxonMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            WilcoxonMethod::Approx => "normal approx.",
            WilcoxonMethod::Exact => "exact",
        }
    }
}

/// The result of a Wilcoxon signed-rank test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wilcoxon {
    /// min(R⁺, R⁻), as scipy reports for the two-sided test.
    pub statistic: f64,
    pub r_plus: f64,
    pub r_minus: f64,
    /// z = (R⁺ − n(n+1)/4)/σ (normal approximation only).
    pub z: Option<f64>,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Non-zero differences (those ranked).
    pub n: usize,
    /// Zero differences, dropped ('wilcox' zero method).
    pub n_zero: usize,
    /// Whether some non-zero |d| are tied.
    pub has_ties: bool,
    pub method: WilcoxonMethod,
}

fn differences(a: &[f64], b: &[f64], what: &str) -> Result<Vec<f64>> {
    ensure!(!a.is_empty(), "{what}: empty sample");
    ensure!(a.len() == b.len(), "{what}: {} values paired with {}", a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        ensure!(x.is_finite() && y.is_finite(), "{what}: pair {i} has a non-finite value ({x}, {y})");
    }
    Ok(a.iter().zip(b).map(|(x, y)| x - y).collect())
}

/// Student's paired t-test, two-sided; as `scipy.stats.ttest_rel(a, b)`. Needs n ≥ 2. Errors
/// when all differences are zero (t = 0/0).
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<TTest> {
    let d = differences(a, b, "paired t-test")?;
    let n = d.len();
    ensure!(n >= 2, "paired t-test: needs at least 2 pairs, got {n}");
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let se = (var / n as f64).sqrt();
    if se == 0.0 && mean == 0.0 {
        bail!("paired t-test: all {n} differences are zero, the t statistic is undefined");
    }
    let t = mean / se;
    let df = (n - 1) as f64;
    Ok(TTest { statistic: t, df, p_value: student_t_two_sided(t, df), mean_difference: mean, n })
}

/// Ranks of the non-zero differences: (R⁺, R⁻, n, n_zero, Σ(t³ − t), has_ties).
struct Ranked {
    r_plus: f64,
    r_minus: f64,
    n: usize,
    n_zero: usize,
    tie_term: f64,
    has_ties: bool,
}

fn rank(d: &[f64], what: &str) -> Result<Ranked> {
    let nonzero: Vec<f64> = d.iter().copied().filter(|&x| x != 0.0).collect();
    let n = nonzero.len();
    ensure!(n > 0, "{what}: all {} differences are zero, the test is undefined", d.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| nonzero[i].abs().total_cmp(&nonzero[j].abs()));
    let (mut r_plus, mut r_minus, mut tie_term, mut has_ties) = (0.0, 0.0, 0.0, false);
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && nonzero[order[end]].abs() == nonzero[order[start]].abs() {
            end += 1;
        }
        // positions start..end (0-based) share the average of ranks start+1..=end
        let t = (end - start) as f64;
        let avg = (start + 1 + end) as f64 / 2.0;
        if end - start > 1 {
            has_ties = true;
            tie_term += t * t * t - t;
        }
        for &i in &order[start..end] {
            if nonzero[i] > 0.0 {
                r_plus += avg;
            } else {
                r_minus += avg;
            }
        }
        start = end;
    }
    Ok(Ranked { r_plus, r_minus, n, n_zero: d.len() - n, tie_term, has_ties })
}

/// Wilcoxon signed-rank test, normal approximation, two-sided; as `scipy.stats.wilcoxon(a, b,
/// zero_method='wilcox', correction=False, method='approx')` (see the module documentation).
pub fn wilcoxon_signed_rank(a: &[f64], b: &[f64]) -> Result<Wilcoxon> {
    const WHAT: &str = "Wilcoxon signed-rank test";
    let r = rank(&differences(a, b, WHAT)?, WHAT)?;
    let n = r.n as f64;
    let mean = n * (n + 1.0) / 4.0;
    let var = (n * (n + 1.0) * (2.0 * n + 1.0) - r.tie_term / 2.0) / 24.0;
    // var > 0 whenever n ≥ 1: the tie term is at most n³ − n < n(n+1)(2n+1)·2.
    let z = (r.r_plus - mean) / var.sqrt();
    let p = (2.0 * normal_sf(z.abs())).min(1.0);
    Ok(Wilcoxon {
        statistic: r.r_plus.min(r.r_minus),
        r_plus: r.r_plus,
        r_minus: r.r_minus,
        z: Some(z),
        p_value: p,
        n: r.n,
        n_zero: r.n_zero,
        has_ties: r.has_ties,
        method: WilcoxonMethod::Approx,
    })
}

/// Wilcoxon signed-rank test with the exact null distribution, two-sided; as
/// `scipy.stats.wilcoxon(a, b, method='exact')`. Errors unless there are at most
/// [`WILCOXON_EXACT_MAX_N`] differences, none zero and no two of the same size.
pub fn wilcoxon_signed_rank_exact(a: &[f64], b: &[f64]) -> Result<Wilcoxon> {
    const WHAT: &str = "exact Wilcoxon signed-rank test";
    let r = rank(&differences(a, b, WHAT)?, WHAT)?;
    ensure!(r.n_zero == 0, "{WHAT}: {} zero difference(s); use the normal approximation", r.n_zero);
    ensure!(!r.has_ties, "{WHAT}: tied differences; use the normal approximation");
    ensure!(r.n <= WILCOXON_EXACT_MAX_N, "{WHAT}: n = {} > {WILCOXON_EXACT_MAX_N}; use the normal approximation", r.n);
    // counts[s] = number of subsets of {1..n} whose sum is s
    let max = r.n * (r.n + 1) / 2;
    let mut counts = vec![0u64; max + 1];
    counts[0] = 1;
    for k in 1..=r.n {
        for s in (k..=max).rev() {
            counts[s] += counts[s - k];
        }
    }
    let total = (1u64 << r.n) as f64;
    // without ties and zeros R⁺ is a whole number
    let w = r.r_plus.round() as usize;
    let le: u64 = counts[..=w].iter().sum();
    let ge: u64 = counts[w..].iter().sum();
    let p = (2.0 * le.min(ge) as f64 / total).min(1.0);
    Ok(Wilcoxon {
        statistic: r.r_plus.min(r.r_minus),
        r_plus: r.r_plus,
        r_minus: r.r_minus,
        z: None,
        p_value: p,
        n: r.n,
        n_zero: 0,
        has_ties: false,
        method: WilcoxonMethod::Exact,
    })
}

/// [`wilcoxon_signed_rank_exact`] when it applies (n ≤ [`WILCOXON_EXACT_MAX_N`], no zeros, no
/// ties), otherwise [`wilcoxon_signed_rank`]; [`Wilcoxon::method`] says which.
pub fn wilcoxon_signed_rank_auto(a: &[f64], b: &[f64]) -> Result<Wilcoxon> {
    let approx = wilcoxon_signed_rank(a, b)?;
    if approx.n_zero == 0 && !approx.has_ties && approx.n <= WILCOXON_EXACT_MAX_N {
        wilcoxon_signed_rank_exact(a, b)
    } else {
        Ok(approx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_distribution_small_n() {
        // n = 3: subset sums of {1,2,3}: 0,1,2,3,3,4,5,6 → P(W ≤ 0) = 1/8; two-sided p = 1/4
        let w = wilcoxon_signed_rank_exact(&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0]).unwrap();
        assert_eq!((w.r_plus, w.statistic, w.p_value), (6.0, 0.0, 0.25));
        // R⁺ = 3 sits in the middle: p capped at 1
        let w = wilcoxon_signed_rank_exact(&[1.0, 2.0, -3.0], &[0.0; 3]).unwrap();
        assert_eq!((w.r_plus, w.p_value), (3.0, 1.0));
    }

    #[test]
    fn ranks_with_ties_and_zeros() {
        // d = [0, 1, -2, 2, 3]: zero dropped; |d| 1, 2, 2, 3 → ranks 1, 2.5, 2.5, 4
        let a = [0.0, 1.0, -2.0, 2.0, 3.0];
        let w = wilcoxon_signed_rank(&a, &[0.0; 5]).unwrap();
        assert_eq!((w.r_plus, w.r_minus, w.n, w.n_zero, w.has_ties), (7.5, 2.5, 4, 1, true));
        // σ² = (4·5·9 − (8 − 2)/2)/24 = 177/24; z = (7.5 − 5)/σ
        let z = 2.5 / (177.0f64 / 24.0).sqrt();
        assert!((w.z.unwrap() - z).abs() < 1e-15);
        assert_eq!(wilcoxon_signed_rank_auto(&a, &[0.0; 5]).unwrap().method, WilcoxonMethod::Approx);
        assert!(wilcoxon_signed_rank_exact(&a, &[0.0; 5]).is_err());
        assert_eq!(wilcoxon_signed_rank_auto(&[1.0, 2.0, 3.0], &[0.0; 3]).unwrap().method, WilcoxonMethod::Exact);
    }

    #[test]
    fn bad_input_is_an_error() {
        let msg = |r: Result<Wilcoxon>| format!("{:#}", r.unwrap_err());
        assert!(msg(wilcoxon_signed_rank(&[], &[])).contains("empty sample"));
        assert!(msg(wilcoxon_signed_rank(&[1.0], &[1.0, 2.0])).contains("1 values paired with 2"));
        assert!(msg(wilcoxon_signed_rank(&[1.0, f64::NAN], &[1.0, 2.0])).contains("pair 1 has a non-finite value"));
        assert!(msg(wilcoxon_signed_rank(&[1.0, 2.0], &[1.0, 2.0])).contains("all 2 differences are zero"));
        let many: Vec<f64> = (1..=26).map(f64::from).collect();
        assert!(msg(wilcoxon_signed_rank_exact(&many, &[0.0; 26])).contains("n = 26 > 25"));
        assert_eq!(wilcoxon_signed_rank_auto(&many, &[0.0; 26]).unwrap().method, WilcoxonMethod::Approx);
        let t = |r: Result<TTest>| format!("{:#}", r.unwrap_err());
        assert!(t(paired_t_test(&[1.0], &[2.0])).contains("at least 2 pairs"));
        assert!(t(paired_t_test(&[1.0, 2.0], &[1.0, 2.0])).contains("all 2 differences are zero"));
        assert!(t(paired_t_test(&[1.0, f64::INFINITY], &[1.0, 2.0])).contains("non-finite"));
    }

    #[test]
    fn constant_nonzero_differences_give_infinite_t() {
        let r = paired_t_test(&[2.0, 3.0, 4.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((r.statistic, r.p_value, r.mean_difference), (f64::INFINITY, 0.0, 1.0));
    }
}
