//! The crate against scipy 1.17.1 and statsmodels 0.15.0: every expected number below was
//! printed by `python3 scripts/stats_reference.py`; the comment above each assert quotes the
//! expression (the label the script prints) that computed it. The data sets are the script's,
//! copied verbatim.

use stats::*;

// scripts/stats_reference.py, the data sets
const A_X: [f64; 12] = [2.31, 1.87, 3.05, 2.64, 1.12, 2.98, 3.41, 2.07, 1.76, 2.55, 3.12, 2.29];
const A_Y: [f64; 12] = [1.95, 2.02, 2.41, 2.60, 1.49, 2.11, 2.78, 2.19, 1.31, 2.58, 2.30, 1.69];
const B_X: [f64; 20] = [1., 0., 1., 1., 0., 1., 1., 1., 0., 1., 2., 1., 1., 0., 1., 1., 2., 1., 0., 1.];
const B_Y: [f64; 20] = [0., 0., 0., 1., 1., 0., 0., 1., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0., 1., 0.];
const C_X: [f64; 30] = [
    0.12, -0.35, 0.48, 0.05, -0.22, 0.31, -0.09, 0.27, -0.41, 0.18, 0.02, -0.15, 0.36, -0.28, 0.11, 0.07, -0.33, 0.24,
    -0.06, 0.15, -0.19, 0.29, -0.02, 0.08, -0.25, 0.21, 0.04, -0.12, 0.17, -0.07,
];
const C_Y: [f64; 30] = [0.0; 30];
const D_X: [f64; 8] = [1.5, 2.5, 0.5, 3.5, 1.25, 2.75, 0.75, 4.0];
const D_Y: [f64; 8] = [0.0; 8];
const HOLM_P: [f64; 8] = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.5, 0.001];

/// |got − want| ≤ rel·|want| (or ≤ rel when want is 0).
#[track_caller]
fn close(got: f64, want: f64, rel: f64) {
    let tol = rel * want.abs().max(if want == 0.0 { 1.0 } else { 0.0 });
    assert!((got - want).abs() <= tol, "got {got:e}, want {want:e} (rel. error {:e})", (got - want).abs() / want.abs());
}

#[test]
fn student_t_cdf_matches_scipy() {
    let cases = [
        // stats.t.cdf(-30.0, 1000.0) = 7.687343722021547e-142
        (-30.0, 1000.0, 7.687343722021547e-142, 1e-11),
        // stats.t.cdf(-3.0, 4.0) = 0.019970984035859413
        (-3.0, 4.0, 0.019970984035859413, 1e-13),
        // stats.t.cdf(-1.0, 2.5) = 0.20203051363913682
        (-1.0, 2.5, 0.20203051363913682, 1e-13),
        // stats.t.cdf(0.5, 10.0) = 0.6860531971285135
        (0.5, 10.0, 0.6860531971285135, 1e-13),
        // stats.t.cdf(2.0, 30.0) = 0.9726874775185085
        (2.0, 30.0, 0.9726874775185085, 1e-13),
        // stats.t.cdf(10.0, 3.0) = 0.9989358004707929
        (10.0, 3.0, 0.9989358004707929, 1e-13),
        // stats.t.cdf(-0.2, 0.7) = 0.44199766927095957
        (-0.2, 0.7, 0.44199766927095957, 1e-13),
        // stats.t.cdf(1.7, 100000.0) = 0.9554329823756685
        (1.7, 1e5, 0.9554329823756685, 1e-13),
        // stats.t.cdf(-2.5, 1000000.0) = 0.006209744751081627
        // (ν/2 = 5·10⁵, x = ν/(ν+t²) within 10⁻⁵ of 1: the continued fraction loses digits
        // there; measured 3.5e-11)
        (-2.5, 1e6, 0.006209744751081627, 1e-10),
        // stats.t.cdf(-8.0, 250.0) = 2.326400759458774e-14
        (-8.0, 250.0, 2.326400759458774e-14, 1e-12),
    ];
    for (t, df, want, rel) in cases {
        close(student_t_cdf(t, df).unwrap(), want, rel);
    }
}

#[test]
fn special_functions_match_scipy() {
    // special.betainc(0.5, 0.5, 0.3) = 0.36901011956554536
    close(beta_inc(0.5, 0.5, 0.3).unwrap(), 0.36901011956554536, 1e-13);
    // special.betainc(2.0, 3.0, 0.4) = 0.5247999999999999
    close(beta_inc(2.0, 3.0, 0.4).unwrap(), 0.5247999999999999, 1e-13);
    // special.betainc(10.0, 0.5, 0.99) = 0.6579281751567845
    close(beta_inc(10.0, 0.5, 0.99).unwrap(), 0.6579281751567845, 1e-13);
    // special.betainc(50.0, 0.5, 0.9) = 0.001204149832559813
    close(beta_inc(50.0, 0.5, 0.9).unwrap(), 0.001204149832559813, 1e-12);
    // special.betainc(0.5, 200.0, 0.001) = 0.4727558929747644
    close(beta_inc(0.5, 200.0, 0.001).unwrap(), 0.4727558929747644, 1e-12);
    // special.betainc(50000.0, 0.5, 0.99997) = 0.08326297483725621
    // (large a, x near 1: measured 2.5e-12, see special.rs)
    close(beta_inc(50000.0, 0.5, 0.99997).unwrap(), 0.08326297483725621, 1e-11);
    // special.betainc(0.5, 300000.0, 2e-06) = 0.7266783616814875
    close(beta_inc(0.5, 300000.0, 2e-06).unwrap(), 0.7266783616814875, 1e-12);

    // special.gammaln(0.1) = 2.252712651734206
    close(ln_gamma(0.1), 2.252712651734206, 1e-14);
    // special.gammaln(0.5) = 0.5723649429247
    close(ln_gamma(0.5), 0.5723649429247, 1e-14);
    // special.gammaln(3.7) = 1.428072326665388
    close(ln_gamma(3.7), 1.428072326665388, 1e-14);
    // special.gammaln(25.0) = 54.78472939811232
    close(ln_gamma(25.0), 54.78472939811232, 1e-14);
    // special.gammaln(171.5) = 709.1431630309283
    close(ln_gamma(171.5), 709.1431630309283, 1e-14);

    // stats.norm.sf(0.0) = 0.5
    close(normal_sf(0.0), 0.5, 1e-15);
    // stats.norm.sf(1.0) = 0.15865525393145707
    close(normal_sf(1.0), 0.15865525393145707, 1e-14);
    // stats.norm.sf(1.959963984540054) = 0.025
    close(normal_sf(1.959963984540054), 0.025, 1e-14);
    // stats.norm.sf(3.5) = 0.00023262907903552502
    close(normal_sf(3.5), 0.00023262907903552502, 1e-13);
    // stats.norm.sf(8.0) = 6.22096057427174e-16
    close(normal_sf(8.0), 6.22096057427174e-16, 1e-13);
    // stats.norm.sf(-2.0) = 0.9772498680518208
    close(normal_sf(-2.0), 0.9772498680518208, 1e-15);
}

#[test]
fn paired_t_test_matches_ttest_rel() {
    let a = paired_t_test(&A_X, &A_Y).unwrap();
    // stats.ttest_rel(A_X, A_Y).statistic = 2.57179857492142
    close(a.statistic, 2.57179857492142, 1e-12);
    // stats.ttest_rel(A_X, A_Y).pvalue = 0.025967045818615204
    close(a.p_value, 0.025967045818615204, 1e-12);
    assert_eq!((a.n, a.df), (12, 11.0));

    let c = paired_t_test(&C_X, &C_Y).unwrap();
    // stats.ttest_rel(C_X, C_Y).statistic = 0.4885048020570655
    close(c.statistic, 0.4885048020570655, 1e-12);
    // stats.ttest_rel(C_X, C_Y).pvalue = 0.6288660887299247
    close(c.p_value, 0.6288660887299247, 1e-12);
    // the sign follows a − b
    let swapped = paired_t_test(&C_Y, &C_X).unwrap();
    assert_eq!(swapped.statistic, -c.statistic);
    assert_eq!(swapped.p_value, c.p_value);
}

#[test]
fn wilcoxon_normal_approximation_matches_scipy() {
    let a = wilcoxon_signed_rank(&A_X, &A_Y).unwrap();
    // stats.wilcoxon(A_X, A_Y, zero_method='wilcox', correction=False, method='asymptotic').statistic = 14.0
    assert_eq!(a.statistic, 14.0);
    // stats.wilcoxon(A_X, A_Y, zero_method='wilcox', correction=False, method='asymptotic').pvalue = 0.04986020375690694
    close(a.p_value, 0.04986020375690694, 1e-13);
    assert_eq!((a.n, a.n_zero, a.has_ties, a.method), (12, 0, false, WilcoxonMethod::Approx));

    // zeros dropped, ties corrected
    let b = wilcoxon_signed_rank(&B_X, &B_Y).unwrap();
    // stats.wilcoxon(B_X, B_Y, zero_method='wilcox', correction=False, method='asymptotic').statistic = 14.0
    assert_eq!(b.statistic, 14.0);
    // stats.wilcoxon(B_X, B_Y, zero_method='wilcox', correction=False, method='asymptotic').pvalue = 0.007632881787792299
    close(b.p_value, 0.007632881787792299, 1e-13);
    assert_eq!((b.n, b.n_zero, b.has_ties), (14, 6, true));

    let c = wilcoxon_signed_rank(&C_X, &C_Y).unwrap();
    // stats.wilcoxon(C_X, C_Y, zero_method='wilcox', correction=False, method='asymptotic').statistic = 209.0
    assert_eq!(c.statistic, 209.0);
    // stats.wilcoxon(C_X, C_Y, zero_method='wilcox', correction=False, method='asymptotic').pvalue = 0.6288067045805301
    close(c.p_value, 0.6288067045805301, 1e-13);
    assert!(c.has_ties);
}

#[test]
fn wilcoxon_exact_matches_scipy() {
    let a = wilcoxon_signed_rank_exact(&A_X, &A_Y).unwrap();
    // stats.wilcoxon(A_X, A_Y, method='exact').statistic = 14.0
    assert_eq!(a.statistic, 14.0);
    // stats.wilcoxon(A_X, A_Y, method='exact').pvalue = 0.05224609375
    close(a.p_value, 0.05224609375, 1e-15);
    assert_eq!(wilcoxon_signed_rank_auto(&A_X, &A_Y).unwrap(), a);

    let d = wilcoxon_signed_rank_exact(&D_X, &D_Y).unwrap();
    // stats.wilcoxon(D_X, D_Y, method='exact').statistic = 0.0
    assert_eq!(d.statistic, 0.0);
    // stats.wilcoxon(D_X, D_Y, method='exact').pvalue = 0.0078125
    close(d.p_value, 0.0078125, 1e-15);
}

#[test]
fn holm_matches_statsmodels() {
    // multipletests(HOLM_P, method='holm')[1] = [0.06, 0.16, 0.15, 0.035, 0.4, 0.16, 0.5, 0.008]
    let want = [0.06, 0.16, 0.15, 0.035, 0.4, 0.16, 0.5, 0.008];
    let got = holm(&HOLM_P).unwrap();
    for (g, w) in got.iter().zip(want) {
        close(*g, w, 1e-14);
    }
}
