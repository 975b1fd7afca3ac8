#!/usr/bin/env python3
"""Renders the chat templates of crates/tokenize/tests/fixtures/chat/templates.json with
transformers' `apply_chat_template(..., tokenize=False)`, the reference the Rust renderer
(crates/tokenize/src/chat.rs) must match byte for byte, and writes expected.json beside it.

Offline: each template's `tokenizer_config` is written into a temporary model folder with a
tiny word-level tokenizer.json and loaded with `AutoTokenizer.from_pretrained`, so transformers
reads the template and the special tokens from the files as it would from a real model.
Every conversation is rendered with and without the generation prompt, with
`date_string="26 Jul 2024"` (the Rust renderer's fixed date; the Llama-3.1/3.2 templates would
otherwise insert today's date). A template that calls `raise_exception` records its message.

Needs transformers, tokenizers and jinja2 (the committed file: transformers 4.46.3, jinja2
3.1.4, as recorded in it):

    python3 scripts/chat-template-reference.py
"""

import json
import tempfile
from pathlib import Path

import jinja2
import tokenizers
import transformers
from transformers import AutoTokenizer

FIXTURES = Path(__file__).resolve().parent.parent / "crates/tokenize/tests/fixtures/chat"
DATE_STRING = "26 Jul 2024"

CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "user_only_non_ascii": [
        {"role": "user", "content": "Wie heißt die Hauptstadt Japans? 日本の首都は？ 🗼"},
    ],
    "system_user_assistant_newline": [
        {"role": "system", "content": "  Answer briefly.\n"},
        {"role": "user", "content": "Name a river in Paris."},
        {"role": "assistant", "content": "The Seine.\nIt flows through Paris."},
    ],
    "multi_turn": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "  Hello — how can I help?  "},
        {"role": "user", "content": "Tell me a fact.\n"},
        {"role": "assistant", "content": "Water boils at 100 °C."},
        {"role": "user", "content": "Another one?\u001f"},
    ],
    "non_alternating": [
        {"role": "user", "content": "First."},
        {"role": "user", "content": "Second."},
    ],
}


def special_token_strings(config):
    """Every token string the config names, for the tokenizer.json vocabulary."""
    out = []

    def add(value):
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value and value not in out:
            out.append(value)

    for key, value in config.items():
        if key.endswith("_token"):
            add(value)
        elif key == "additional_special_tokens":
            for item in value:
                add(item)
    return out


def load(config, folder):
    folder = Path(folder)
    vocab = {"[UNK]": 0}
    for token in special_token_strings(config):
        vocab.setdefault(token, len(vocab))
    tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]")).save(str(folder / "tokenizer.json"))
    config = {**config, "tokenizer_class": "PreTrainedTokenizerFast"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def main():
    spec = json.loads((FIXTURES / "templates.json").read_text())
    templates = []
    for entry in spec["templates"]:
        with tempfile.TemporaryDirectory() as folder:
            tokenizer = load(entry["tokenizer_config"], folder)
            cases = []
            for name, messages in CONVERSATIONS.items():
                for add_generation_prompt in (False, True):
                    case = {"conversation": name, "add_generation_prompt": add_generation_prompt}
                    try:
                        case["expected"] = tokenizer.apply_chat_template(
                            messages,
                            tokenize=False,
                            add_generation_prompt=add_generation_prompt,
                            date_string=DATE_STRING,
                        )
                    except jinja2.exceptions.TemplateError as err:
                        case["raises"] = str(err)
                    cases.append(case)
        templates.append({**entry, "cases": cases})
    out = {
        "about": "Written by scripts/chat-template-reference.py from templates.json; do not edit by hand.",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "date_string": DATE_STRING,
        "conversations": CONVERSATIONS,
        "templates": templates,
    }
    (FIXTURES / "expected.json").write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    n = sum(len(t["cases"]) for t in templates)
    print(f"wrote {FIXTURES / 'expected.json'}: {len(templates)} templates, {n} cases")


if __name__ == "__main__":
    main()
