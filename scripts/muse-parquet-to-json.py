#!/usr/bin/env python3
"""Converts MUSE-Books as the Hugging Face Hub publishes it into the layout MUSE's code reads.

The dataset repo muse-bench/MUSE-Books holds Parquet only: CONFIG/SPLIT-00000-of-00001.parquet
per config and split. MUSE's official `load_data.py` (github.com/swj0419/muse_bench) loads each
with `datasets.load_dataset` and writes JSON and text files under `data/books/`; this script
writes the same files, with the same content, from the downloaded Parquet files (no `datasets`
needed, only `pyarrow`):

    knowmem/{forget_qa,retain_qa,forget_qa_icl,retain_qa_icl}.json   [{"question", "answer"}]
    verbmem/forget.json                                              [{"prompt", "gt"}]
    privleak/{forget,retain,holdout}.json                            [text, ...]
    raw/{forget,holdout,retain1,retain2}.json                        [text, ...]
    raw/{forget,holdout,retain1,retain2}.txt                         the texts joined by "\\n\\n"

    python3 scripts/muse-parquet-to-json.py PARQUET_DIR OUT_DIR

PARQUET_DIR holds CONFIG/SPLIT-*.parquet (several shards of a split are read in name order).
`scripts/fetch-data.sh --with-muse` runs it on DATA/muse-books/parquet -> DATA/muse-books.
"""
import glob
import json
import os
import sys

# (config, split, columns): columns None = the `text` column as a list of strings.
SPLITS = [
    ("knowmem", "forget_qa", ["question", "answer"]),
    ("knowmem", "retain_qa", ["question", "answer"]),
    ("knowmem", "forget_qa_icl", ["question", "answer"]),
    ("knowmem", "retain_qa_icl", ["question", "answer"]),
    ("verbmem", "forget", ["prompt", "gt"]),
    ("privleak", "forget", None),
    ("privleak", "retain", None),
    ("privleak", "holdout", None),
    ("raw", "forget", None),
    ("raw", "holdout", None),
    ("raw", "retain1", None),
    ("raw", "retain2", None),
]


def read_split(src, config, split, columns):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        sys.exit("muse-parquet-to-json.py needs pyarrow (pip install pyarrow); or run MUSE's load_data.py "
                 "(github.com/swj0419/muse_bench) and copy its data/books/ to DATA/muse-books/")
    files = sorted(glob.glob(os.path.join(src, config, f"{split}-*.parquet"))
                   + glob.glob(os.path.join(src, config, f"{split}.parquet")))
    if not files:
        raise FileNotFoundError(f"no {config}/{split}-*.parquet under {src}")
    want = columns or ["text"]
    rows = {c: [] for c in want}
    for f in files:
        table = pq.read_table(f)
        for c in want:
            if c not in table.column_names:
                sys.exit(f"{f}: no column {c!r} (columns: {table.column_names})")
            rows[c].extend(table.column(c).to_pylist())
    if columns is None:
        return rows["text"]
    return [dict(zip(columns, values)) for values in zip(*(rows[c] for c in columns))]


def write(path, write_fn):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    with open(tmp, "w") as f:
        write_fn(f)
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    for config, split, columns in SPLITS:
        data = read_split(src, config, split, columns)
        # as load_data.py: json.dump (compact, ASCII-escaped), raw also as text joined by "\n\n"
        write(os.path.join(out, config, f"{split}.json"), lambda f: json.dump(data, f))
        if config == "raw":
            write(os.path.join(out, config, f"{split}.txt"), lambda f: f.write("\n\n".join(data)))
        print(f"wrote {config}/{split}.json ({len(data)} rows)")


if __name__ == "__main__":
    main()
