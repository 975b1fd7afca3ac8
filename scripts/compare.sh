#!/usr/bin/env bash
# Run the unlearn-bench benchmarks and the same workloads in PyTorch back to back, and print
# the ratio (ours / PyTorch) per workload (issue 7). Also: the raw read bandwidth of the
# arithmetic's input files (`cat` to /dev/null, page cache warm: nothing is dropped), the disk's
# write bandwidth for the output (`dd conv=fsync`, the bound of the durable variant) and the
# CPU's f32 matmul GFLOP/s, from which model FLOP utilisation is stated.
#
#   scripts/compare.sh [THREADS]      (default 2)
#
# Makes .venv (gitignored) with `pip install torch transformers safetensors numpy` from PyPI
# on first use (several GB: PyPI's Linux torch wheel pulls the CUDA libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
export RAYON_NUM_THREADS="$THREADS"
OUT="target/bench-compare"
mkdir -p "$OUT"

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import torch, transformers, safetensors' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q torch transformers safetensors numpy
fi

echo "== ours: cargo bench -p benchmarks (RAYON_NUM_THREADS=$THREADS)" >&2
cargo bench -p benchmarks 2>&1 | tee "$OUT/cargo-bench.txt" | grep -E '^(train|score|generate|arith)/|thrpt|time:|^arith:' >&2

echo "== raw read bandwidth of the arithmetic's inputs (cat > /dev/null, warm page cache)" >&2
ARITH_DIR="${UNLEARN_BENCH_DIR:-target/bench-fixtures}/arith"
FILES=$(ls "$ARITH_DIR"/theta_*/model.safetensors)
BYTES=$(cat $FILES | wc -c)
START=$(date +%s.%N); cat $FILES > /dev/null; END=$(date +%s.%N)
python3 -c "import json; print(json.dumps({'workload': 'cat', 'bytes': $BYTES, 'seconds': $END - $START, 'gb_per_s': $BYTES / ($END - $START) / 1e9}))" > "$OUT/cat.jsonl"
cat "$OUT/cat.jsonl" >&2

echo "== disk write bandwidth: dd of the output's size (268 MB) with conv=fsync" >&2
OUT_BYTES=$(wc -c < "${UNLEARN_BENCH_DIR:-target/bench-fixtures}/arith-out/model.safetensors")
START=$(date +%s.%N); dd if=/dev/zero of="$OUT/dd.bin" bs=1M count=$((OUT_BYTES / 1048576)) conv=fsync status=none; END=$(date +%s.%N)
rm -f "$OUT/dd.bin"
python3 -c "import json; print(json.dumps({'workload': 'dd', 'bytes': $OUT_BYTES, 'seconds': $END - $START, 'gb_per_s': $OUT_BYTES / ($END - $START) / 1e9}))" > "$OUT/dd.jsonl"
cat "$OUT/dd.jsonl" >&2

echo "== PyTorch: scripts/bench_pytorch.py --threads $THREADS" >&2
.venv/bin/python scripts/bench_pytorch.py --threads "$THREADS" --arith-dir "$ARITH_DIR" | tee "$OUT/pytorch.jsonl" >&2

python3 scripts/compare_table.py target/criterion "$OUT/pytorch.jsonl" "$OUT/cat.jsonl" "$OUT/cargo-bench.txt" "$OUT/dd.jsonl"
