//! Element conversions between stored little-endian float bytes and f32/f64 working values.
//!
//! Decoding BF16/F16 to f32 is exact; encoding f32 to BF16/F16 rounds to nearest, ties to
//! even (the `half` crate, same as PyTorch's `.to(torch.bfloat16)`).

use half::{bf16, f16};
use safetensors::Dtype;

/// Float dtypes that arithmetic is done on.
pub(crate) fn is_arith_float(dtype: Dtype) -> bool {
    matches!(dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16)
}

/// Float dtypes the reductions read (F64 as well).
pub(crate) fn is_reduce_float(dtype: Dtype) -> bool {
    is_arith_float(dtype) || dtype == Dtype::F64
}

/// Bytes per element of a whole-byte dtype.
pub(crate) fn elem_bytes(dtype: Dtype) -> usize {
    dtype.bitsize() / 8
}

/// `acc[i] += coef * x[i]` where `x` is `bytes` decoded as `dtype` (F32, BF16 or F16).
pub(crate) fn axpy_f32(dtype: Dtype, coef: f32, bytes: &[u8], acc: &mut [f32]) {
    match dtype {
        Dtype::F32 => {
            for (a, b) in acc.iter_mut().zip(bytes.chunks_exact(4)) {
                *a += coef * f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Dtype::BF16 => {
            for (a, b) in acc.iter_mut().zip(bytes.chunks_exact(2)) {
                *a += coef * bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        Dtype::F16 => {
            for (a, b) in acc.iter_mut().zip(bytes.chunks_exact(2)) {
                *a += coef * f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        other => unreachable!("axpy_f32 called on {other}"),
    }
}

/// Encodes `values` as `dtype` (F32, BF16 or F16) into `out` (cleared first).
pub(crate) fn encode_f32(dtype: Dtype, values: &[f32], out: &mut Vec<u8>) {
    out.clear();
    match dtype {
        Dtype::F32 => {
            out.reserve(values.len() * 4);
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Dtype::BF16 => {
            out.reserve(values.len() * 2);
            for v in values {
                out.extend_from_slice(&bf16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
        Dtype::F16 => {
            out.reserve(values.len() * 2);
            for v in values {
                out.extend_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
        other => unreachable!("encode_f32 called on {other}"),
    }
}

/// Decodes `bytes` of a float dtype (F32, BF16, F16, F64) into `out` as f64 (cleared first).
pub(crate) fn decode_f64(dtype: Dtype, bytes: &[u8], out: &mut Vec<f64>) {
    out.clear();
    match dtype {
        Dtype::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64),
        ),
        Dtype::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()),
        ),
        Dtype::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()),
        ),
        Dtype::F64 => out.extend(
            bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
        ),
        other => unreachable!("decode_f64 called on {other}"),
    }
}
