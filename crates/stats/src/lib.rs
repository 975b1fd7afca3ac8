//! Statistics for a study whose conclusions hold: interval estimates and paired tests for
//! comparing unlearning methods across world seeds, each function reproducing a named
//! scipy/statsmodels call (tests: `tests/scipy.rs`, numbers from `scripts/stats_reference.py`).
//!
//! - [`bootstrap`]: [`cluster_bootstrap_mean_ci`], the two-level percentile bootstrap over
//!   clusters (world seeds) × examples, and its paired version
//!   [`paired_cluster_bootstrap_mean_ci`] (examples matched by id); deterministic from a seed.
//! - [`paired`]: [`paired_t_test`] (`scipy.stats.ttest_rel`), [`wilcoxon_signed_rank`]
//!   (`scipy.stats.wilcoxon`, normal approximation with tie correction) and
//!   [`wilcoxon_signed_rank_exact`] (its exact distribution for small n).
//! - [`multitest`]: [`holm`] (`statsmodels` `multipletests(method='holm')`).
//! - [`rank`]: [`spearman`] (`scipy.stats.spearmanr`) and [`stratified_spearman`], the mean ρ
//!   over strata with a cluster bootstrap interval and a permutation p-value.
//! - [`special`]: ln Γ, incomplete beta and gamma functions, Student t and normal tails.
//!
//! Invariant: pure Rust, no I/O; bad input (empty, non-finite, mismatched pairs) is an error,
//! never a panic; every random draw comes from a seeded `ChaCha8Rng`.

pub mod bootstrap;
pub mod multitest;
pub mod paired;
pub mod rank;
pub mod special;

pub use bootstrap::{
    cluster_bootstrap_mean_ci, paired_cluster_bootstrap_mean_ci, paired_cluster_bootstrap_reduction_ci,
    paired_differences, BootstrapConfig, Interval,
};
pub use multitest::holm;
pub use paired::{
    paired_t_test, wilcoxon_signed_rank, wilcoxon_signed_rank_auto, wilcoxon_signed_rank_exact, TTest, Wilcoxon,
    WilcoxonMethod, WILCOXON_EXACT_MAX_N,
};
pub use rank::{ranks, spearman, stratified_spearman, StratifiedSpearman, Stratum};
pub use special::{beta_inc, gamma_q, ln_gamma, normal_cdf, normal_sf, student_t_cdf};
