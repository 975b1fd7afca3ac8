#!/usr/bin/env python3
"""Gradient ascent on the forget set, in PyTorch with `transformers`: a worked example of an
unlearn-bench `external` method (configs/external-example.toml runs it).

The harness calls it as
    python3 scripts/external/grad_ascent.py --model {model} --forget {forget} --out {out}
        --seed {seed} --lr {lr} --epochs {epochs} --batch-size {batch_size} --max-seq-len {max_seq_len}

and reads back the Hugging Face folder written at --out (config.json, model.safetensors,
θ_D's tokenizer files). Input: --forget is JSONL, one {"id": ..., "text": ...} per line; θ_D
was trained on [BOS] text [EOS], so that is what is unlearned here (loss on every token).
Self-contained: torch and transformers only, CPU or one GPU.
"""
import argparse
import json
import os
import random
import shutil
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def load_model(folder):
    """θ_D as a transformers model: the harness writes Hugging Face folders (config.json,
    model.safetensors with `__metadata__ = {"format": "pt"}`, tokenizer files), which
    from_pretrained reads as they are."""
    return AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="θ_D: a Hugging Face folder")
    p.add_argument("--forget", required=True, help="forget.jsonl")
    p.add_argument("--out", required=True, help="where to write the unlearned model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-seq-len", type=int, default=128)
    a = p.parse_args()

    random.seed(a.seed)
    torch.manual_seed(a.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(a.model)
    model = load_model(a.model).to(device)
    model.train()
    bos, eos = model.config.bos_token_id, model.config.eos_token_id
    if isinstance(eos, list):
        eos = eos[0]

    def encode(text):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        ids = ([bos] if bos is not None else []) + ids + ([eos] if eos is not None else [])
        return ids[: a.max_seq_len]

    with open(a.forget, encoding="utf-8") as f:
        examples = [encode(json.loads(line)["text"]) for line in f if line.strip()]
    if not examples:
        sys.exit(f"{a.forget}: no documents")
    pad = tok.pad_token_id if tok.pad_token_id is not None else (eos if eos is not None else 0)

    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    step = 0
    for epoch in range(a.epochs):
        order = list(range(len(examples)))
        random.shuffle(order)
        for i in range(0, len(order), a.batch_size):
            batch = [examples[j] for j in order[i : i + a.batch_size]]
            width = max(len(x) for x in batch)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x in batch], device=device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch], device=device)
            labels = ids.masked_fill(mask == 0, -100)
            nll = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            (-nll).backward()  # gradient *ascent* on the forget set's NLL
            opt.step()
            opt.zero_grad()
            step += 1
            print(f"epoch {epoch} step {step} forget_nll {nll.item():.4f}", flush=True)

    # Write atomically: a half-written folder is never taken for a result.
    tmp = a.out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    for name in TOKENIZER_FILES:  # θ_D's tokenizer, unchanged (the harness checks the vocabulary)
        if os.path.exists(os.path.join(a.model, name)):
            shutil.copy(os.path.join(a.model, name), os.path.join(tmp, name))
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)
    print(f"wrote {a.out} after {step} steps", flush=True)


if __name__ == "__main__":
    main()
