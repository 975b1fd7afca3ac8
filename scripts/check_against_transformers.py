#!/usr/bin/env python3
"""Cross-check our per-position logits against Hugging Face transformers (issue 2, item 3).

Loads a checkpoint folder with `transformers.AutoModelForCausalLM.from_pretrained` in f32
(eager attention), scores a text with tokens = [bos] + tokenizer(text, add_special_tokens=False),
obtains our logits of the same text from a command that writes
{"tokens": [...], "logits": [[f32; vocab] per position]}, checks the tokens agree, and prints
the max |delta logit| as one JSON line. Exits 1 when it exceeds --tol.

    python scripts/check_against_transformers.py --model DIR [--text TEXT] [--tol 1e-4]
        [--ours "cargo run --release -q -p bench -- logits"]

`--ours` is a command prefix; `--model DIR --text TEXT --out FILE` is appended. Until
`bench logits` exists, use "cargo run --release -q -p benchmarks --example dump_logits --".
The script needs torch, transformers and safetensors (scripts/compare.sh makes .venv with them).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

DEFAULT_TEXT = "The cat sat on the mat. Then it ran far away, and nobody saw it again!"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--text", default=DEFAULT_TEXT)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--ours", default="cargo run --release -q -p bench -- logits")
    a = ap.parse_args()

    torch.set_grad_enabled(False)
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(a.model, "tokenizer.json"))
    bos = model.config.bos_token_id
    if bos is None:
        eos = model.config.eos_token_id
        bos = eos[0] if isinstance(eos, list) else eos
    tokens = [bos] + tok(a.text, add_special_tokens=False)["input_ids"]
    theirs = model(input_ids=torch.tensor([tokens])).logits[0].float()

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.json")
        cmd = shlex.split(a.ours) + ["--model", a.model, "--text", a.text, "--out", out]
        subprocess.run(cmd, check=True)
        with open(out) as f:
            mine = json.load(f)
    if mine["tokens"] != tokens:
        print(json.dumps({"model": a.model, "error": "token mismatch", "ours": mine["tokens"], "transformers": tokens}))
        sys.exit(1)
    ours = torch.tensor(mine["logits"], dtype=torch.float32)
    if ours.shape != theirs.shape:
        print(json.dumps({"model": a.model, "error": f"shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"}))
        sys.exit(1)
    d = (ours - theirs).abs()
    worst = int(d.max(dim=-1).values.argmax())
    res = {
        "model": a.model,
        "architecture": model.config.architectures[0],
        "positions": len(tokens),
        "max_abs_delta_logit": float(d.max()),
        "worst_position": worst,
        "max_abs_logit": float(theirs.abs().max()),
        "transformers": __import__("transformers").__version__,
        "ok": bool(d.max() < a.tol),
    }
    print(json.dumps(res))
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()
