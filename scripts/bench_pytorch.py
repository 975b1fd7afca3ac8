#!/usr/bin/env python3
"""The PyTorch side of the unlearn-bench benchmarks (issue 7), one JSON line per workload.

Same model definition, shapes, dtype (f32) and thread count as `benchmarks/` (see
benchmarks/src/lib.rs and the headers of benchmarks/benches/*.rs):

- train/default: LlamaForCausalLM, hidden 128, 4 layers, 4 heads, FFN 512, vocab 2048, tied
  embeddings; batch 32 x 128 input tokens; forward + cross-entropy + backward + clip to norm
  1.0 + torch.optim.AdamW (lr 1e-4, wd 0.01), as a user would write the loop.
- train/large: hidden 256, 4 layers, 4 heads, FFN 1024, vocab 4096, tied; batch 16 x 128.
- score/loglikelihood: 64 requests of 128 tokens (96 context + 32 continuation) in batches of
  16: forward of 127 inputs, log_softmax, gather of the continuation's log-probs.
- generate/greedy: 8 prompts of 32 tokens, 32 new tokens each, batch 8, `model.generate`
  (greedy, KV cache: what a user gets); generate/greedy_nocache recomputes the whole prefix
  each step as `lm::score::Scorer::generate_until` does today.
- arith/f32 and arith/bf16: the reference MSA script's approach over the four checkpoint
  folders of the Rust benchmark: load all four state dicts fully, combine in place
  (theta_D + (a-b) theta_0 - a theta_f + b theta_r), save; in f32, and converted to bf16 at
  load as the reference does. Each runs in a child process so its peak RSS is its own.
- matmul: f32 1024^3 GEMM GFLOP/s, the training bound.

It installs nothing; scripts/compare.sh makes the virtual environment.

    python scripts/bench_pytorch.py [--threads 2] [--only NAME ...] [--arith-dir DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

ALPHA, BETA = 1.0, 0.5
TERMS = ["theta_D", "theta_0", "theta_f", "theta_r"]


def llama(vocab, hidden, ffn, layers, heads):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=ffn,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=None,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).float()


SHAPES = {
    "default": dict(model=(2048, 128, 512, 4, 4), batch=32, seq=128),
    "large": dict(model=(4096, 256, 1024, 4, 4), batch=16, seq=128),
}


def timed(fn, min_s, min_iters, warmup=2):
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if n >= min_iters and el >= min_s:
            return el / n


def bench_train(name, min_s):
    s = SHAPES[name]
    vocab = s["model"][0]
    model = llama(*s["model"])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(3, vocab, (s["batch"], s["seq"] + 1), generator=g)
    inp, tgt = tokens[:, :-1], tokens[:, 1:]
    att = torch.ones_like(inp)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=inp, attention_mask=att).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tgt.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    sec = timed(step, min_s, 5)
    tok = s["batch"] * s["seq"]
    return {"workload": f"train/{name}", "tokens_per_s": tok / sec, "seconds_per_iter": sec, "tokens_per_iter": tok}


def bench_score(min_s):
    model = llama(*SHAPES["default"]["model"]).eval()
    g = torch.Generator().manual_seed(2)
    n_req, ctx, cont, bs = 64, 96, 32, 16
    reqs = torch.randint(3, 80, (n_req, ctx + cont), generator=g)

    def run():
        with torch.inference_mode():
            out = []
            for i in range(0, n_req, bs):
                full = reqs[i : i + bs]
                inp, tgt = full[:, :-1], full[:, 1:]
                lp = torch.log_softmax(model(input_ids=inp).logits, dim=-1)
                picked = lp[:, ctx - 1 :].gather(-1, tgt[:, ctx - 1 :].unsqueeze(-1)).squeeze(-1)
                greedy = (lp[:, ctx - 1 :].argmax(-1) == tgt[:, ctx - 1 :]).all(-1)
                out.append((picked.sum(-1), greedy))
            return out

    sec = timed(run, min_s, 3)
    tok = n_req * (ctx + cont)
    return {"workload": "score/loglikelihood", "tokens_per_s": tok / sec, "seconds_per_iter": sec, "tokens_per_iter": tok}


def bench_generate(min_s, use_cache):
    model = llama(*SHAPES["default"]["model"]).eval()
    g = torch.Generator().manual_seed(3)
    prompts, plen, new = 8, 32, 32
    ids = torch.randint(3, 80, (prompts, plen), generator=g)

    def run():
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
                use_cache=use_cache,
                pad_token_id=0,
            )
        assert out.shape[1] == plen + new, out.shape

    sec = timed(run, min_s, 3)
    tok = prompts * new
    name = "generate/greedy" if use_cache else "generate/greedy_nocache"
    return {"workload": name, "tokens_per_s": tok / sec, "seconds_per_iter": sec, "tokens_per_iter": tok}


def bench_matmul(min_s):
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    sec = timed(lambda: a @ b, min_s, 10)
    return {"workload": "matmul", "gflops": 2 * n**3 / sec / 1e9, "seconds_per_iter": sec}


def arith_child(dtype_name, arith_dir):
    """Run in a child process: the reference MSA approach, all four models in memory."""
    from safetensors.torch import load_file, save_file

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    coefs = [1.0, ALPHA - BETA, -ALPHA, BETA]
    t0 = time.perf_counter()
    sds = [load_file(os.path.join(arith_dir, t, "model.safetensors")) for t in TERMS]
    sds = [{k: v.to(dtype) for k, v in sd.items()} for sd in sds]
    out = sds[0]
    for k in out:
        for c, sd in zip(coefs[1:], sds[1:]):
            out[k].add_(sd[k], alpha=c)
    with tempfile.TemporaryDirectory(dir=arith_dir) as tmp:
        save_file(out, os.path.join(tmp, "model.safetensors"))
    sec = time.perf_counter() - t0
    nbytes = sum(os.path.getsize(os.path.join(arith_dir, t, "model.safetensors")) for t in TERMS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "workload": f"arith/{dtype_name}",
        "gb_per_s": nbytes / sec / 1e9,
        "seconds_per_iter": sec,
        "bytes_read": nbytes,
        "peak_rss_bytes": peak,
    }


def bench_arith(dtype_name, arith_dir, threads):
    if not all(os.path.isfile(os.path.join(arith_dir, t, "model.safetensors")) for t in TERMS):
        return {"workload": f"arith/{dtype_name}", "skipped": f"no checkpoints under {arith_dir} (run cargo bench -p benchmarks --bench arith first)"}
    cmd = [sys.executable, __file__, "--threads", str(threads), "--arith-child", dtype_name, "--arith-dir", arith_dir]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=8.0, help="minimum timed seconds per workload")
    ap.add_argument("--only", nargs="*", help="workload name prefixes to run (default: all)")
    ap.add_argument("--arith-dir", default=os.path.join(os.path.dirname(__file__), "..", "target", "bench-fixtures", "arith"))
    ap.add_argument("--arith-child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.arith_child:
        print(json.dumps(arith_child(a.arith_child, a.arith_dir)), flush=True)
        return
    jobs = [
        ("matmul", lambda: bench_matmul(min(a.min_seconds, 3))),
        ("train/default", lambda: bench_train("default", a.min_seconds)),
        ("train/large", lambda: bench_train("large", a.min_seconds)),
        ("score/loglikelihood", lambda: bench_score(a.min_seconds)),
        ("generate/greedy", lambda: bench_generate(a.min_seconds, True)),
        ("generate/greedy_nocache", lambda: bench_generate(a.min_seconds, False)),
        ("arith/f32", lambda: bench_arith("f32", a.arith_dir, a.threads)),
        ("arith/bf16", lambda: bench_arith("bf16", a.arith_dir, a.threads)),
    ]
    for name, fn in jobs:
        if a.only and not any(name.startswith(p) for p in a.only):
            continue
        r = fn()
        r.update(threads=a.threads, torch=torch.__version__)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
