#!/usr/bin/env python3
"""Print the ours-vs-PyTorch table of scripts/compare.sh (standard library only).

    python3 scripts/compare_table.py ROUND_DIR [ROUND_DIR ...]

Each ROUND_DIR holds one round: criterion/ (a copy of target/criterion), pytorch.jsonl,
cat.jsonl, dd.jsonl and cargo-bench.txt. Ours: criterion's mean time per iteration
(criterion/<group>/<bench>/new/estimates.json) and its declared throughput (benchmark.json).
With several rounds every figure is the median over the rounds, and the ratio column is the
median of the per-round ratios with its range (min–max) after it. Model FLOP utilisation (MFU)
of a training step is tokens/s x FLOPs per token / the measured f32 matmul FLOP/s, with FLOPs
per token = 6 x (matmul parameters, lm head included) + 12 x layers x hidden x sequence (PaLM,
appendix B).
"""

import json
import os
import sys

# (vocab, hidden, ffn, layers, seq) of the training shapes, as in benchmarks/src/lib.rs
TRAIN_SHAPES = {"train/default": (2048, 128, 512, 4, 128), "train/large": (4096, 256, 1024, 4, 128)}


def flops_per_token(vocab, hidden, ffn, layers, seq):
    p_mm = layers * (4 * hidden * hidden + 3 * hidden * ffn) + vocab * hidden
    return 6 * p_mm + 12 * layers * hidden * seq


def ours(crit_dir):
    out = {}
    for group in sorted(os.listdir(crit_dir)) if os.path.isdir(crit_dir) else []:
        gdir = os.path.join(crit_dir, group)
        for bench in sorted(os.listdir(gdir)):
            new = os.path.join(gdir, bench, "new")
            try:
                est = json.load(open(os.path.join(new, "estimates.json")))
                meta = json.load(open(os.path.join(new, "benchmark.json")))
            except (OSError, ValueError):
                continue
            sec = est["mean"]["point_estimate"] / 1e9
            thr = meta.get("throughput") or {}
            n = thr.get("Elements") or thr.get("Bytes") or 0
            out[f"{group}/{bench}"] = {"seconds_per_iter": sec, "per_s": n / sec, "unit": "B" if "Bytes" in thr else "tok"}
    return out


def load_round(d):
    us = ours(os.path.join(d, "criterion"))
    pt = {}
    for line in open(os.path.join(d, "pytorch.jsonl")):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            pt[r["workload"]] = r
    cat = json.loads(open(os.path.join(d, "cat.jsonl")).read())
    dd_path = os.path.join(d, "dd.jsonl")
    dd = json.loads(open(dd_path).read()) if os.path.exists(dd_path) else None
    rss = None
    for line in open(os.path.join(d, "cargo-bench.txt")):
        if line.startswith('{"workload": "arith"'):
            rss = json.loads(line)["peak_rss_bytes"]
    return us, pt, cat, dd, rss


def rows_of_round(us, pt, cat, dd, rss):
    """(label, ours, theirs, unit, note) per table row of one round; rates in tokens/s or B/s."""
    gflops = pt.get("matmul", {}).get("gflops")
    rows = []
    for mine, theirs, note in [
        ("train/default", "train/default", ""),
        ("train/large", "train/large", ""),
        ("score/loglikelihood", "score/loglikelihood", ""),
        ("generate/greedy", "generate/greedy", "PyTorch with KV cache"),
        ("generate/greedy", "generate/greedy_nocache", "PyTorch without KV cache"),
    ]:
        a = us.get(mine, {}).get("per_s")
        b = pt.get(theirs, {}).get("tokens_per_s")
        if mine in TRAIN_SHAPES and gflops and a and b:
            f = flops_per_token(*TRAIN_SHAPES[mine])
            note = (f"MFU ours {a * f / gflops / 1e9:.1%}, PyTorch {b * f / gflops / 1e9:.1%} "
                    f"of {gflops:.0f} GFLOP/s")
        rows.append((theirs, a, b, "tok", note))
    a = us.get("arith/msa_combine_page_cache", {}).get("per_s")
    durable = us.get("arith/msa_combine", {}).get("per_s")
    for theirs in ["arith/f32", "arith/bf16"]:
        r = pt.get(theirs, {})
        b = r.get("gb_per_s")
        b = b * 1e9 if b else None
        note = (f"page cache; peak RSS ours {rss / 2**20:,.0f} MiB, PyTorch {r['peak_rss_bytes'] / 2**20:,.0f} MiB"
                if rss and b else r.get("skipped", ""))
        rows.append((theirs, a, b, "B", note))
    rows.append(("arith vs cat (bound)", a, cat["gb_per_s"] * 1e9, "B",
                 "output left in the page cache; cat of the four inputs, page cache warm"))
    if dd:
        # the durable call must read the inputs (cat's time) and put the output on disk (dd's time)
        bound = cat["bytes"] / (cat["seconds"] + dd["seconds"])
        rows.append(("arith fsync vs cat+dd", durable, bound, "B",
                     f"output fsynced; disk writes {dd['gb_per_s']:.2f} GB/s (dd conv=fsync of {dd['bytes'] / 1e6:.0f} MB)"))
    if gflops:
        rows.append(("matmul 1024^3 f32", None, gflops, "GFLOP", ""))
    return rows


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def fmt(x, unit):
    if not x:
        return "-"
    return {"tok": f"{x:,.0f} tok/s", "B": f"{x / 1e9:.2f} GB/s", "GFLOP": f"{x:.0f} GFLOP/s"}[unit]


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: compare_table.py ROUND_DIR [ROUND_DIR ...]  (written by scripts/compare.sh)")
    rounds = [rows_of_round(*load_round(d)) for d in sys.argv[1:]]
    n = len(rounds)
    print(f"{'workload':<26}{'ours':>14}{'PyTorch':>14}{'ratio':>8}{'range' if n > 1 else '':>14}   note"
          + (f"  ({n} rounds, medians)" if n > 1 else ""))
    for i, (label, _, _, unit, note) in enumerate(rounds[0]):
        ours_ = [r[i][1] for r in rounds if r[i][1]]
        theirs = [r[i][2] for r in rounds if r[i][2]]
        ratios = [r[i][1] / r[i][2] for r in rounds if r[i][1] and r[i][2]]
        a = median(ours_) if ours_ else None
        b = median(theirs) if theirs else None
        ratio = f"{median(ratios):.2f}x" if ratios else "-"
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if n > 1 and ratios else ""
        gflops = [r[-1][2] for r in rounds if r[-1][0].startswith("matmul") and r[-1][2]]
        if label in TRAIN_SHAPES and a and b and gflops:
            f, g = flops_per_token(*TRAIN_SHAPES[label]), median(gflops)
            note = f"MFU ours {a * f / g / 1e9:.1%}, PyTorch {b * f / g / 1e9:.1%} of {g:.0f} GFLOP/s"
        print(f"{label:<26}{fmt(a, unit):>14}{fmt(b, unit):>14}{ratio:>8}{spread:>14}   {note}")


if __name__ == "__main__":
    main()
