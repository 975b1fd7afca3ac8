#!/usr/bin/env python3
"""Choose each unlearning method's hyperparameters on the validation world (issue 4).

Reads the long table of a configs/tiny-validation.toml sweep (`bench report` writes it as
long.csv) and prints Markdown: the rule, the chosen setting per method, and every setting's
numbers as evidence.

    python3 scripts/select_defaults.py results/tiny-validation/long.csv > reports/validation/selection.md

The rule was fixed before the sweep ran (it is also stated in configs/tiny-validation.toml):
among the settings whose TOFU model utility is at least 90 % of θ_D's, take the highest
forget quality (ties: higher model utility, then lower KL to the oracle on forget text). If no
setting keeps 90 %, use a 75 % floor and say so. Standard library only.
"""
import csv
import sys
from collections import defaultdict

FQ, MU, KL = "tofu_forget_quality", "tofu_model_utility", "kl_to_oracle/forget"
SHOWN = [FQ, MU, "tofu_prob_forget", "tofu_prob_retain", "mc_accuracy/forget", "mc_accuracy/retain", KL]


def main(path):
    cells = defaultdict(dict)  # (method, params) -> metric -> value
    for row in csv.DictReader(open(path, newline="")):
        v = float(row["value"]) if row["value"] not in ("", "nan") else float("nan")
        cells[(row["method"], row["params"])][row["metric"]] = v
    final = next(m for (meth, _), m in cells.items() if meth == "final")
    oracle = next(m for (meth, _), m in cells.items() if meth == "retrain")
    by_method = defaultdict(list)
    for (meth, params), m in cells.items():
        if meth not in ("final", "retrain"):
            by_method[meth].append((params, m))

    out = []
    out.append("# Hyperparameters chosen on the validation world\n")
    out.append(f"Source: `{path}` (configs/tiny-validation.toml: the `facts` world with seed 1; the test "
               "world of configs/tiny.toml has seed 0, so no test number took part in the choice).\n")
    out.append("Rule (fixed before the sweep): among settings with model utility ≥ 90 % of θ_D's, the "
               "highest forget quality; ties by higher model utility, then lower KL to the oracle on "
               "forget text. If none keeps 90 %, the floor drops to 75 % (said below).\n")
    out.append(f"θ_D: forget quality {final.get(FQ, float('nan')):.3g}, model utility {final.get(MU, float('nan')):.3g}; "
               f"oracle: forget quality {oracle.get(FQ, float('nan')):.3g}, model utility {oracle.get(MU, float('nan')):.3g}.\n")
    chosen_rows = []
    detail = []
    for meth in sorted(by_method):
        rows = by_method[meth]
        pick, floor_used = None, None
        for floor in (0.9, 0.75):
            ok = [r for r in rows if r[1].get(MU, 0) >= floor * final[MU]]
            if ok:
                pick = max(ok, key=lambda r: (r[1].get(FQ, 0), r[1].get(MU, 0), -r[1].get(KL, 1e9)))
                floor_used = floor
                break
        if pick is None:
            pick = max(rows, key=lambda r: (r[1].get(MU, 0), r[1].get(FQ, 0)))
            floor_used = 0.0
        chosen_rows.append((meth, pick, floor_used))
        detail.append(f"\n## {meth}\n")
        detail.append("| params | " + " | ".join(SHOWN) + " |")
        detail.append("| --- |" + " ---: |" * len(SHOWN))
        for params, m in sorted(rows, key=lambda r: -r[1].get(FQ, 0)):
            mark = " **(chosen)**" if params == pick[0] else ""
            detail.append(f"| `{params}`{mark} | " + " | ".join(f"{m.get(k, float('nan')):.3g}" for k in SHOWN) + " |")
    out.append("\n## Chosen\n")
    out.append("| method | params | utility floor | forget quality | model utility | KL to oracle (forget) |")
    out.append("| --- | --- | ---: | ---: | ---: | ---: |")
    for meth, (params, m), floor in chosen_rows:
        note = f"{floor:.0%}" if floor else "none met 75 %: highest utility"
        out.append(f"| {meth} | `{params}` | {note} | {m.get(FQ, float('nan')):.3g} | {m.get(MU, float('nan')):.3g} | {m.get(KL, float('nan')):.3g} |")
    print("\n".join(out + detail))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/tiny-validation/long.csv")
