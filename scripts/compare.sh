#!/usr/bin/env bash
# Run the unlearn-bench benchmarks and the same workloads in PyTorch back to back, and print
# the ratio (ours / PyTorch) per workload (issue 7). Also: the raw read bandwidth of the
# arithmetic's input files (`cat` to /dev/null, page cache warm: nothing is dropped), the disk's
# write bandwidth for the output (`dd conv=fsync`, the bound of the durable variant) and the
# CPU's f32 matmul GFLOP/s, from which model FLOP utilisation is stated.
#
#   scripts/compare.sh [THREADS] [ROUNDS]      (defaults 2 and 1)
#
# With ROUNDS > 1 the two sides alternate (ours, PyTorch, ours, PyTorch, …) and the table
# gives each workload's median ratio over the rounds with its range: on a shared VM the
# speed of the whole machine drifts by ±15 % over minutes, and a ratio is only meaningful
# between measurements taken close together.
#
# Makes .venv (gitignored) with `pip install torch transformers safetensors numpy` from PyPI
# on first use (several GB: PyPI's Linux torch wheel pulls the CUDA libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${1:-2}"
ROUNDS="${2:-1}"
export RAYON_NUM_THREADS="$THREADS"
OUT="target/bench-compare"
rm -rf "$OUT"
mkdir -p "$OUT"

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import torch, transformers, safetensors' 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q torch transformers safetensors numpy
fi

ARITH_DIR="${UNLEARN_BENCH_DIR:-target/bench-fixtures}/arith"
json_rate() { # name bytes start end
    python3 -c "import json; print(json.dumps({'workload': '$1', 'bytes': $2, 'seconds': $4 - $3, 'gb_per_s': $2 / ($4 - $3) / 1e9}))"
}
ROUND_DIRS=()
for r in $(seq 1 "$ROUNDS"); do
    R="$OUT/round$r"
    mkdir -p "$R"
    ROUND_DIRS+=("$R")
    echo "== round $r/$ROUNDS, ours: cargo bench -p benchmarks (RAYON_NUM_THREADS=$THREADS)" >&2
    rm -rf target/criterion
    cargo bench -p benchmarks 2>&1 | tee "$R/cargo-bench.txt" | grep -E '^(train|score|generate|arith)/|thrpt|time:|^arith:' >&2
    cp -r target/criterion "$R/criterion"

    echo "== raw read bandwidth of the arithmetic's inputs (cat > /dev/null, warm page cache)" >&2
    FILES=$(ls "$ARITH_DIR"/theta_*/model.safetensors)
    BYTES=$(cat $FILES | wc -c)
    START=$(date +%s.%N); cat $FILES > /dev/null; END=$(date +%s.%N)
    json_rate cat "$BYTES" "$START" "$END" | tee "$R/cat.jsonl" >&2

    echo "== disk write bandwidth: dd of the output's size with conv=fsync" >&2
    OUT_BYTES=$(wc -c < "${UNLEARN_BENCH_DIR:-target/bench-fixtures}/arith-out/model.safetensors")
    START=$(date +%s.%N); dd if=/dev/zero of="$R/dd.bin" bs=1M count=$((OUT_BYTES / 1048576)) conv=fsync status=none; END=$(date +%s.%N)
    rm -f "$R/dd.bin"
    json_rate dd "$OUT_BYTES" "$START" "$END" | tee "$R/dd.jsonl" >&2

    echo "== round $r/$ROUNDS, PyTorch: scripts/bench_pytorch.py --threads $THREADS" >&2
    .venv/bin/python scripts/bench_pytorch.py --threads "$THREADS" --arith-dir "$ARITH_DIR" | tee "$R/pytorch.jsonl" >&2
done

python3 scripts/compare_table.py "${ROUND_DIRS[@]}"
