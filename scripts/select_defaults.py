#!/usr/bin/env python3
"""Choose each unlearning method's hyperparameters on the validation world (issue 13).

Reads the long table of a configs/study-validation.toml sweep (`bench report` writes it as
long.csv) and prints Markdown: the rule, the trial budget per method, the chosen setting per
method, and every setting's numbers as evidence.

    cargo run --release -p bench -- sweep configs/study-validation.toml
    python3 scripts/select_defaults.py [--budget METHOD=N ...] reports/study-validation/long.csv > reports/validation/selection.md

`--budget METHOD=N` declares a method that ran fewer trials than the others (N, checked), e.g. a
method whose own search replaces a grid axis; it is printed as an exception.

The rule was fixed before the sweep ran (it is also stated in configs/study-validation.toml):
- the same budget for every method (the script refuses unequal trial counts, except those
  declared with --budget, which may only have fewer);
- utility gate: TOFU model utility >= 90 % of theta_D's on the validation world;
- among the settings that pass, the highest forget quality (the KS test of the forget truth
  ratios against the oracle's: a distance to the oracle); ties by the smaller
  |forget MC accuracy - the oracle's|, then the higher model utility;
- if none passes, the setting with the highest model utility, marked "failed the gate".
Standard library only.
"""
import csv
import math
import sys
from collections import defaultdict

FQ, MU, MC, KL = "tofu_forget_quality", "tofu_model_utility", "mc_accuracy/forget", "kl_to_oracle/forget"
SHOWN = [FQ, MU, "tofu_prob_forget", "tofu_prob_retain", MC, "mc_accuracy/retain", KL]
GATE = 0.9


def fmt(v):
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"


def main(path, exceptions):
    cells = defaultdict(dict)  # (method, params) -> metric -> value
    for row in csv.DictReader(open(path, newline="")):
        v = float(row["value"]) if row["value"] not in ("", "nan") else float("nan")
        cells[(row["method"], row["params"])][row["metric"]] = v
    final = next(m for (meth, _), m in cells.items() if meth == "final")
    oracle = next(m for (meth, _), m in cells.items() if meth == "retrain")
    by_method = defaultdict(list)
    for (meth, params), m in cells.items():
        if meth not in ("final", "retrain", "retrain_alt"):
            by_method[meth].append((params, m))
    budgets = {meth: len(rows) for meth, rows in by_method.items()}
    for meth, n in exceptions.items():
        if budgets.get(meth) != n:
            sys.exit(f"--budget {meth}={n}: the long table has {budgets.get(meth, 0)} trials of {meth}")
    equal = {meth: n for meth, n in budgets.items() if meth not in exceptions}
    if len(set(equal.values())) != 1:
        sys.exit(f"unequal trial budgets, the rule needs the same number for every method: {budgets}")
    for meth, n in exceptions.items():
        if n >= next(iter(equal.values())):
            sys.exit(f"--budget {meth}={n}: an exception may only have fewer trials than the others")

    def mc_gap(m):
        return abs(m.get(MC, float("nan")) - oracle.get(MC, float("nan")))

    out = ["# Hyperparameters chosen on the validation world\n"]
    out.append(f"Source: `{path}` (configs/study-validation.toml: the study's `facts` recipe with world seed 100; "
               "the test worlds of configs/study.toml are seeds 0, 1 and 2, so no test number took part in the choice).\n")
    out.append(f"Budget: {next(iter(equal.values()))} trials for every method ({', '.join(sorted(equal))}).\n")
    for meth, n in sorted(exceptions.items()):
        out.append(f"Declared exception: {meth} has {n} trials (`--budget {meth}={n}`), fewer than the others: "
                   "a handicap for it, never an advantage; stated in configs/study-validation.toml.\n")
    out.append("Rule (fixed before the sweep): utility gate = model utility ≥ 90 % of θ_D's; among the settings that "
               "pass, the highest forget quality (KS test against the oracle's truth ratios); ties by the smaller "
               "|forget MC accuracy − the oracle's|, then the higher model utility. If none passes, the highest model "
               "utility, marked as failing the gate.\n")
    out.append(f"θ_D: forget quality {fmt(final.get(FQ))}, model utility {fmt(final.get(MU))}, forget MC accuracy "
               f"{fmt(final.get(MC))}; oracle: forget quality {fmt(oracle.get(FQ))}, model utility {fmt(oracle.get(MU))}, "
               f"forget MC accuracy {fmt(oracle.get(MC))}.\n")
    chosen_rows, detail = [], []
    for meth in sorted(by_method):
        rows = by_method[meth]
        ok = [r for r in rows if r[1].get(MU, 0) >= GATE * final[MU]]
        if ok:
            pick = max(ok, key=lambda r: (r[1].get(FQ, 0), -mc_gap(r[1]), r[1].get(MU, 0)))
        else:
            pick = max(rows, key=lambda r: (r[1].get(MU, 0), r[1].get(FQ, 0)))
        chosen_rows.append((meth, pick, bool(ok), len(ok)))
        detail.append(f"\n## {meth}\n")
        detail.append("| params | passes gate | " + " | ".join(SHOWN) + " |")
        detail.append("| --- | --- |" + " ---: |" * len(SHOWN))
        for params, m in sorted(rows, key=lambda r: -r[1].get(FQ, 0)):
            mark = " **(chosen)**" if params == pick[0] else ""
            gate = "yes" if m.get(MU, 0) >= GATE * final[MU] else "no"
            detail.append(f"| `{params}`{mark} | {gate} | " + " | ".join(fmt(m.get(k)) for k in SHOWN) + " |")
    out.append("\n## Chosen\n")
    out.append("| method | params | gate (passing / trials) | forget quality | model utility | forget MC acc (oracle "
               f"{fmt(oracle.get(MC))}) | KL to oracle (forget) |")
    out.append("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for meth, (params, m), passed, n_ok in chosen_rows:
        gate = f"passed ({n_ok}/{budgets[meth]})" if passed else f"**failed** (0/{budgets[meth]}): highest utility"
        out.append(f"| {meth} | `{params}` | {gate} | {fmt(m.get(FQ))} | {fmt(m.get(MU))} | {fmt(m.get(MC))} | {fmt(m.get(KL))} |")
    print("\n".join(out + detail))


if __name__ == "__main__":
    args = sys.argv[1:]
    exceptions = {}
    while args and args[0] == "--budget":
        meth, _, n = args[1].partition("=")
        exceptions[meth] = int(n)
        args = args[2:]
    main(args[0] if args else "reports/study-validation/long.csv", exceptions)
