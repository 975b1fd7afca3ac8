#!/usr/bin/env python3
"""Print the ours-vs-PyTorch table of scripts/compare.sh (standard library only).

    python3 scripts/compare_table.py CRITERION_DIR PYTORCH_JSONL CAT_JSONL CARGO_BENCH_TXT [DD_JSONL]

Ours: criterion's mean time per iteration (target/criterion/<group>/<bench>/new/estimates.json)
and its declared throughput (benchmark.json). Model FLOP utilisation (MFU) of a training step
is tokens/s x FLOPs per token / the measured f32 matmul FLOP/s, with FLOPs per token =
6 x (matmul parameters, lm head included) + 12 x layers x hidden x sequence (PaLM, appendix B).
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


def main():
    crit, pt_path, cat_path, cargo_txt = sys.argv[1:5]
    dd = json.loads(open(sys.argv[5]).read()) if len(sys.argv) > 5 else None
    us = ours(crit)
    pt = {}
    for line in open(pt_path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            pt[r["workload"]] = r
    cat = json.loads(open(cat_path).read())
    rss = None
    for line in open(cargo_txt):
        if line.startswith('{"workload": "arith"'):
            rss = json.loads(line)["peak_rss_bytes"]
    gflops = pt.get("matmul", {}).get("gflops")

    print(f"{'workload':<26}{'ours':>14}{'PyTorch':>14}{'ratio':>8}   note")
    rows = [
        ("train/default", "train/default", ""),
        ("train/large", "train/large", ""),
        ("score/loglikelihood", "score/loglikelihood", ""),
        ("generate/greedy", "generate/greedy", "PyTorch with KV cache"),
        ("generate/greedy", "generate/greedy_nocache", "PyTorch without KV cache"),
    ]
    for mine, theirs, note in rows:
        a = us.get(mine, {}).get("per_s")
        b = pt.get(theirs, {}).get("tokens_per_s")
        if mine in TRAIN_SHAPES and gflops:
            f = flops_per_token(*TRAIN_SHAPES[mine])
            note = f"MFU ours {a * f / gflops / 1e9:.1%}, PyTorch {b * f / gflops / 1e9:.1%} of {gflops:.0f} GFLOP/s" if a and b else note
        fmt = lambda x: f"{x:,.0f} tok/s" if x else "-"
        ratio = f"{a / b:.2f}x" if a and b else "-"
        print(f"{theirs:<26}{fmt(a):>14}{fmt(b):>14}{ratio:>8}   {note}")
    a = us.get("arith/msa_combine_page_cache", {}).get("per_s")
    durable = us.get("arith/msa_combine", {}).get("per_s")
    gb = lambda x: f"{x / 1e9:.2f} GB/s" if x else "-"
    for theirs in ["arith/f32", "arith/bf16"]:
        r = pt.get(theirs, {})
        b = r.get("gb_per_s")
        b = b * 1e9 if b else None
        note = f"page cache; peak RSS ours {rss / 2**20:,.0f} MiB, PyTorch {r['peak_rss_bytes'] / 2**20:,.0f} MiB" if rss and b else r.get("skipped", "")
        print(f"{theirs:<26}{gb(a):>14}{gb(b):>14}{(f'{a / b:.2f}x' if a and b else '-'):>8}   {note}")
    c = cat["gb_per_s"] * 1e9
    print(f"{'arith vs cat (bound)':<26}{gb(a):>14}{gb(c):>14}{(f'{a / c:.2f}x' if a else '-'):>8}   "
          "output left in the page cache; cat of the four inputs, page cache warm")
    if dd:
        # the durable call must read the inputs (cat's time) and put the output on disk (dd's time)
        bound = cat["bytes"] / (cat["seconds"] + dd["seconds"])
        print(f"{'arith fsync vs cat+dd':<26}{gb(durable):>14}{gb(bound):>14}{(f'{durable / bound:.2f}x' if durable else '-'):>8}   "
              f"output fsynced; disk writes {dd['gb_per_s']:.2f} GB/s (dd conv=fsync of {dd['bytes'] / 1e6:.0f} MB)")
    if gflops:
        print(f"{'matmul 1024^3 f32':<26}{'':>14}{f'{gflops:.0f} GFLOP/s':>14}")


if __name__ == "__main__":
    main()
