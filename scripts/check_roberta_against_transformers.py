#!/usr/bin/env python3
"""Reference logits for crates/roberta (issue 5, item 3): transformers'
RobertaForSequenceClassification (eager attention, f32) on the tiny random fixture that
`roberta::testing::write_tiny_roberta(dir, 7)` writes, for roberta::testing::REFERENCE_TEXTS as
one right-padded batch. The printed logits are pasted into crates/roberta/tests/roberta.rs.

    cargo run -q -p roberta --example write_tiny_roberta -- /tmp/tiny_roberta 7
    .venv/bin/python scripts/check_roberta_against_transformers.py /tmp/tiny_roberta

Also checks that the tokenizer.json gives, in transformers, the ids our tokenizer gives, and
that every checkpoint tensor was used (no missing / unexpected keys).
"""

import sys

import torch
from transformers import PreTrainedTokenizerFast, RobertaForSequenceClassification

TEXTS = [
    "They should not live here, and we hate them all!",
    "Good neighbours",
    "The women in this group are always kind to friends.",
]
# Printed by the example above (our tokenizer).
OUR_IDS = [
    [0, 15, 21, 8, 34, 35, 41, 9, 16, 25, 39, 19, 42, 2],
    [0, 22, 3, 2],
    [0, 4, 28, 13, 37, 27, 7, 32, 24, 12, 30, 40, 2],
]

d = sys.argv[1]
tok = PreTrainedTokenizerFast(tokenizer_file=f"{d}/tokenizer.json", pad_token="<pad>")
batch = tok(TEXTS, padding=True, return_tensors="pt")
ids = [[int(i) for i, m in zip(r, mk) if m] for r, mk in zip(batch["input_ids"], batch["attention_mask"])]
assert ids == OUR_IDS, ids
model, info = RobertaForSequenceClassification.from_pretrained(
    d, attn_implementation="eager", torch_dtype=torch.float32, output_loading_info=True
)
assert not any(info.values()), info
model.eval()
with torch.no_grad():
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
torch.set_printoptions(precision=8)
for row in logits.tolist():
    print("[" + ", ".join(f"{x:.8f}" for x in row) + "],")
