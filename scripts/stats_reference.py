#!/usr/bin/env python3
"""Reference values for the `stats` crate's tests (crates/stats/tests/scipy.rs).

    pip install scipy statsmodels
    python3 scripts/stats_reference.py

Prints one line per value, `label = repr(value)`; the tests paste these numbers, each with the
line of this script that computed it quoted in a comment above its assert. Produced with
scipy 1.17.1 and statsmodels 0.15.0 (numpy 2.4). The data sets below are written out in the
tests too; keep the two in step.
"""

import numpy as np
import scipy
import statsmodels
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

# --- data sets (copied verbatim into the Rust tests) ---
# A: 12 continuous pairs, no ties, no zeros (exact Wilcoxon applies)
A_X = [2.31, 1.87, 3.05, 2.64, 1.12, 2.98, 3.41, 2.07, 1.76, 2.55, 3.12, 2.29]
A_Y = [1.95, 2.02, 2.41, 2.60, 1.49, 2.11, 2.78, 2.19, 1.31, 2.58, 2.30, 1.69]
# B: 20 pairs with zero differences and tied |differences| (0/1/2-valued, like per-example
#    accuracies' distances): normal approximation with tie correction
B_X = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 2, 1, 1, 0, 1, 1, 2, 1, 0, 1]
B_Y = [0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0]
# C: 30 pairs, small shift with mixed signs (not significant)
C_X = [0.12, -0.35, 0.48, 0.05, -0.22, 0.31, -0.09, 0.27, -0.41, 0.18,
       0.02, -0.15, 0.36, -0.28, 0.11, 0.07, -0.33, 0.24, -0.06, 0.15,
       -0.19, 0.29, -0.02, 0.08, -0.25, 0.21, 0.04, -0.12, 0.17, -0.07]
C_Y = [0.0] * 30
# D: 8 pairs, all differences positive (exact p = 2/256)
D_X = [1.5, 2.5, 0.5, 3.5, 1.25, 2.75, 0.75, 4.0]
D_Y = [0.0] * 8
# Holm: a family of p-values with a tie
HOLM_P = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.5, 0.001]


def show(label, value):
    print(f"{label} = {value!r}")


def main():
    print(f"# scipy {scipy.__version__}, statsmodels {statsmodels.__version__}, numpy {np.__version__}")

    for t, df in [(-30.0, 1000.0), (-3.0, 4.0), (-1.0, 2.5), (0.5, 10.0), (2.0, 30.0), (10.0, 3.0), (-0.2, 0.7), (1.7, 1e5), (-2.5, 1e6), (-8.0, 250.0)]:
        show(f"stats.t.cdf({t}, {df})", float(stats.t.cdf(t, df)))

    for a, b, x in [(0.5, 0.5, 0.3), (2.0, 3.0, 0.4), (10.0, 0.5, 0.99), (50.0, 0.5, 0.9), (0.5, 200.0, 0.001), (50000.0, 0.5, 0.99997), (0.5, 3e5, 2e-6)]:
        show(f"special.betainc({a}, {b}, {x})", float(special.betainc(a, b, x)))

    for x in [0.1, 0.5, 3.7, 25.0, 171.5]:
        show(f"special.gammaln({x})", float(special.gammaln(x)))

    for z in [0.0, 1.0, 1.959963984540054, 3.5, 8.0, -2.0]:
        show(f"stats.norm.sf({z})", float(stats.norm.sf(z)))

    for name, x, y in [("A", A_X, A_Y), ("C", C_X, C_Y)]:
        r = stats.ttest_rel(x, y)
        show(f"stats.ttest_rel({name}_X, {name}_Y).statistic", float(r.statistic))
        show(f"stats.ttest_rel({name}_X, {name}_Y).pvalue", float(r.pvalue))

    for name, x, y in [("A", A_X, A_Y), ("B", B_X, B_Y), ("C", C_X, C_Y)]:
        r = stats.wilcoxon(x, y, zero_method="wilcox", correction=False, method="asymptotic")
        show(f"stats.wilcoxon({name}_X, {name}_Y, zero_method='wilcox', correction=False, method='asymptotic').statistic", float(r.statistic))
        show(f"stats.wilcoxon({name}_X, {name}_Y, zero_method='wilcox', correction=False, method='asymptotic').pvalue", float(r.pvalue))

    for name, x, y in [("A", A_X, A_Y), ("D", D_X, D_Y)]:
        r = stats.wilcoxon(x, y, method="exact")
        show(f"stats.wilcoxon({name}_X, {name}_Y, method='exact').statistic", float(r.statistic))
        show(f"stats.wilcoxon({name}_X, {name}_Y, method='exact').pvalue", float(r.pvalue))

    show("multipletests(HOLM_P, method='holm')[1]", [float(p) for p in multipletests(HOLM_P, method="holm")[1]])

    # crates/report/tests/study.rs: the pooled differences of its fixture's comparisons
    for name, d in [("-np.ones(30)", -np.ones(30)), ("-np.arange(1, 31)", -np.arange(1, 31)),
                    ("[-0.5, -0.5] + [0] * 28", np.array([-0.5, -0.5] + [0.0] * 28))]:
        r = stats.wilcoxon(d, zero_method="wilcox", correction=False, method="asymptotic")
        show(f"stats.wilcoxon({name}, zero_method='wilcox', correction=False, method='asymptotic').pvalue", float(r.pvalue))


if __name__ == "__main__":
    main()
