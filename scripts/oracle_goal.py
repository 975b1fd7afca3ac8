#!/usr/bin/env python3
"""Issue 19's goal, run by run: does a method land on the oracle?

Reads a report's long.csv (one row per cell × record) and, for every method run (world seed ×
method seed) at its headline point, checks the four conditions of the goal, each against the
same world's references:

  1. forget MC accuracy within the noise floor: |acc − oracle's| ≤ |second oracle's − oracle's|;
  2. KL to the oracle on forget text within the noise floor: KL ≤ the second oracle's KL;
  3. TOFU forget quality (KS test of the forget truth ratios against the oracle's) p ≥ 0.05;
  4. model utility ≥ 90 % of θ_D's.

Prints a markdown table (one row per method: how many runs meet each condition and all four)
and the per-run numbers of every method that meets all four at least once.

    python3 scripts/oracle_goal.py reports/study/long.csv --headline msa=checkpoint=distance:0 \
        > reports/study/goal.md

A method with several parameter points in the file needs --headline METHOD=SUBSTRING (a
substring of its `params` column) to pick one; the script stops otherwise.
"""

import argparse
import collections
import csv
import math
import sys

REFS = ("final", "retrain", "retrain_alt")
NEEDED = ("mc_accuracy/forget", "kl_to_oracle/forget", "tofu_forget_quality", "tofu_model_utility")


def load(path):
    cells = collections.defaultdict(dict)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["model"], row["method"], row["params"], row["world_seed"], row["seed"])
            try:
                value = float(row["value"])
            except ValueError:
                value = math.nan
            cells[key][row["metric"]] = value
    return cells


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("long_csv")
    ap.add_argument("--headline", action="append", default=[], metavar="METHOD=SUBSTRING")
    args = ap.parse_args()
    picks = {}
    for h in args.headline:
        if "=" not in h:
            sys.exit(f"--headline {h!r}: expected METHOD=SUBSTRING")
        m, sub = h.split("=", 1)
        picks[m] = sub
    cells = load(args.long_csv)

    refs = {}
    for (model, method, _params, world, _seed), v in cells.items():
        if method in REFS:
            refs[(model, method, world)] = v
    points = collections.defaultdict(set)
    for (model, method, params, _w, _s) in cells:
        if method not in REFS and (method not in picks or picks[method] in params):
            points[(model, method)].add(params)
    for (model, method), ps in sorted(points.items()):
        if len(ps) != 1:
            sys.exit(f"{model}/{method}: {len(ps)} parameter points; pick one with --headline {method}=SUBSTRING")

    rows = collections.defaultdict(list)
    for (model, method, params, world, seed), v in sorted(cells.items()):
        if method in REFS or (method in picks and picks[method] not in params):
            continue
        try:
            o, alt, d = (refs[(model, r, world)] for r in ("retrain", "retrain_alt", "final"))
        except KeyError as e:
            sys.exit(f"{model}/{method}, world {world}: reference row {e} missing (the goal needs the second oracle)")
        for name, rec in (("run", v), ("oracle", o), ("second oracle", alt), ("θ_D", d)):
            missing = [k for k in NEEDED if k not in rec and not (name != "run" and k == "kl_to_oracle/forget")]
            if missing:
                sys.exit(f"{model}/{method}, world {world}: {name} has no {', '.join(missing)}")
        floor_mc = abs(alt["mc_accuracy/forget"] - o["mc_accuracy/forget"])
        floor_kl = alt["kl_to_oracle/forget"]
        dmc = abs(v["mc_accuracy/forget"] - o["mc_accuracy/forget"])
        kl = v["kl_to_oracle/forget"]
        fq = v["tofu_forget_quality"]
        util = v["tofu_model_utility"] / d["tofu_model_utility"]
        ok = (dmc <= floor_mc, kl <= floor_kl, fq >= 0.05, util >= 0.9)
        rows[(model, method)].append((world, seed, dmc, floor_mc, kl, floor_kl, fq, util, ok))

    print("| model | method | runs | forget MC within floor | forget KL within floor | forget quality p ≥ 0.05 "
          "| utility ≥ 0.9 × θ_D's | all four | worlds where every run meets all four |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for (model, method), rs in sorted(rows.items()):
        n = [sum(r[8][i] for r in rs) for i in range(4)]
        both = sum(all(r[8]) for r in rs)
        by_world = collections.defaultdict(list)
        for r in rs:
            by_world[r[0]].append(all(r[8]))
        good = [w for w, oks in sorted(by_world.items()) if all(oks)]
        print(f"| {model} | {method} | {len(rs)} | {n[0]} | {n[1]} | {n[2]} | {n[3]} | **{both}** | "
              f"{', '.join(good) if good else 'none'} of {len(by_world)} |")
    print()
    print("Per run, for the methods that meet all four at least once (the distance to the oracle on forget MC accuracy and the KL, "
          "with the world's noise floor in parentheses):")
    print()
    print("| model | method | world | seed | forget MC Δ (floor) | forget KL (floor) | forget quality p | utility ÷ θ_D's |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (model, method), rs in sorted(rows.items()):
        if not any(all(r[8]) for r in rs):
            continue
        for world, seed, dmc, fmc, kl, fkl, fq, util, ok in rs:
            mark = lambda good, s: f"**{s}**" if good else s
            print(f"| {model} | {method} | {world} | {seed} | {mark(ok[0], f'{dmc:.3f}')} ({fmc:.3f}) | "
                  f"{mark(ok[1], f'{kl:.3f}')} ({fkl:.3f}) | {mark(ok[2], f'{fq:.3g}')} | {mark(ok[3], f'{util:.3f}')} |")


if __name__ == "__main__":
    main()
