"""Independent numpy implementation of model-state's RTN quantization, to check its output.

Usage: python3 quantize_reference.py SRC_DIR DST_DIR SCHEME NAME [NAME ...]

Reads SRC_DIR/model.safetensors and DST_DIR/model.safetensors with a small parser of its own
(not the safetensors package), quantizes-then-dequantizes each named 2-D tensor of SRC with
the formulas below in float32 (numpy's round is round-half-to-even, as torch.round), rounds
the result to the tensor's dtype and compares it bit for bit with DST. Every other tensor
must be byte-identical in SRC and DST. Prints one line per tensor; exits 1 on any mismatch.

  int8:       scale = max|w_row| / 127;  w' = clip(round(w / scale), -127, 127) * scale
  int4:g<N>:  per N consecutive elements of a row (last group shorter):
              scale = (max - min) / 15;  zero = round(-min / scale)
              w' = (clip(round(w / scale) + zero, 0, 15) - zero) * scale
  scale == 0 (or not finite): the row / group is kept as it is.
"""

import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], body[begin:end])
    return out


def to_f32(dtype, raw, shape):
    if dtype == "F32":
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    if dtype == "F16":
        return np.frombuffer(raw, dtype="<f2").reshape(shape).astype(np.float32)
    if dtype == "BF16":
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << np.uint32(16)
        return bits.view(np.float32).reshape(shape)
    raise ValueError(f"unsupported dtype {dtype}")


def from_f32(dtype, x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if dtype == "F32":
        return x.astype("<f4").tobytes()
    if dtype == "F16":
        return x.astype("<f2").tobytes()  # numpy rounds to nearest, ties to even
    if dtype == "BF16":
        bits = x.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # nearest, ties to even
        return rounded.astype("<u2").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def int8(w):
    absmax = np.abs(w).max(axis=1, keepdims=True)
    scale = absmax / np.float32(127)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.clip(np.round(w / scale), np.float32(-127), np.float32(127))
        deq = q * scale
    keep = (scale == 0) | ~np.isfinite(scale)
    return np.where(keep, w, deq)


def int4(w, group):
    out = np.empty_like(w)
    for j in range(0, w.shape[1], group):
        blk = w[:, j : j + group]
        mn = blk.min(axis=1, keepdims=True)
        mx = blk.max(axis=1, keepdims=True)
        scale = (mx - mn) / np.float32(15)
        with np.errstate(divide="ignore", invalid="ignore"):
            zero = np.round(-mn / scale)
            q = np.clip(np.round(blk / scale) + zero, np.float32(0), np.float32(15))
            deq = (q - zero) * scale
        keep = (scale == 0) | ~np.isfinite(scale)
        out[:, j : j + group] = np.where(keep, blk, deq)
    return out


def main():
    src_dir, dst_dir, scheme, *names = sys.argv[1:]
    if scheme == "int8":
        fake_quant = int8
    elif scheme.startswith("int4:g"):
        group = int(scheme[len("int4:g") :])
        fake_quant = lambda w: int4(w, group)  # noqa: E731
    else:
        raise SystemExit(f"unknown scheme {scheme}")
    src = read_safetensors(f"{src_dir}/model.safetensors")
    dst = read_safetensors(f"{dst_dir}/model.safetensors")
    if sorted(src) != sorted(dst):
        print(f"tensor names differ: {sorted(src)} vs {sorted(dst)}")
        return 1
    failures = 0
    for name in sorted(src):
        dtype, shape, raw = src[name]
        dtype_out, shape_out, raw_out = dst[name]
        if (dtype, shape) != (dtype_out, shape_out):
            print(f"{name}: {dtype} {shape} became {dtype_out} {shape_out}")
            failures += 1
            continue
        if name not in names:
            same = raw == raw_out
            print(f"{name}: copied, {'identical' if same else 'BYTES DIFFER'}")
            failures += not same
            continue
        w = to_f32(dtype, raw, shape)
        expected = from_f32(dtype, fake_quant(w))
        if expected == raw_out:
            changed = expected != raw
            print(f"{name}: {scheme} matches numpy bit for bit ({w.size} values, changed: {changed})")
        else:
            got = to_f32(dtype, raw_out, shape)
            want = to_f32(dtype, expected, shape)
            bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
            i = bad[0]
            print(
                f"{name}: {len(bad)} of {w.size} values differ from numpy; first at flat index "
                f"{i}: input {w.flat[i]!r}, numpy {want.flat[i]!r}, got {got.flat[i]!r}"
            )
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
