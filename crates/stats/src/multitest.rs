//! Multiple-testing correction: Holm–Bonferroni step-down adjusted p-values.
//!
//! [`holm`]`(p)` = `statsmodels.stats.multitest.multipletests(p, method='holm')[1]`: with the
//! m p-values sorted ascending, p₍₁₎ ≤ … ≤ p₍ₘ₎, the adjusted value of the j-th (1-based) is
//! min(1, max_{i ≤ j} (m − i + 1)·p₍ᵢ₎) — monotone in the sorted order, capped at 1 — returned
//! in the input order. Rejecting where the adjusted p-value is ≤ α controls the family-wise
//! error rate at α under any dependence between the tests (Holm 1979).

use anyhow::{ensure, Result};

/// Holm-adjusted p-values, in input order (see the module documentation). Errors: no
/// p-values, or one that is NaN or outside [0, 1].
pub fn holm(p: &[f64]) -> Result<Vec<f64>> {
    ensure!(!p.is_empty(), "holm: no p-values");
    for (i, &x) in p.iter().enumerate() {
        ensure!((0.0..=1.0).contains(&x), "holm: p-value {i} = {x} is not in [0, 1]");
    }
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    // stable: ties keep input order (their adjusted values are equal either way)
    order.sort_by(|&i, &j| p[i].total_cmp(&p[j]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max((m - rank) as f64 * p[i]);
        adjusted[i] = running.min(1.0);
    }
    Ok(adjusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // sorted 0.01, 0.02, 0.04 → 3·0.01 = 0.03, 2·0.02 = 0.04, max(0.04, 1·0.04) = 0.04
        let got = holm(&[0.04, 0.01, 0.02]).unwrap();
        let want = [0.04, 0.03, 0.04];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-15, "{got:?}");
        }
        // sorted 0.3, 0.4 → 2·0.3 = 0.6; 1·0.4 = 0.4 is raised to 0.6 (monotone)
        assert_eq!(holm(&[0.4, 0.3]).unwrap(), vec![0.6, 0.6]);
        assert_eq!(holm(&[0.9, 0.6]).unwrap(), vec![1.0, 1.0]);
        assert_eq!(holm(&[0.5]).unwrap(), vec![0.5]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(holm(&[]).is_err());
        assert!(format!("{:#}", holm(&[0.1, f64::NAN]).unwrap_err()).contains("p-value 1 = NaN"));
        assert!(holm(&[1.5]).is_err() && holm(&[-0.1]).is_err());
    }
}
