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

/// `bytes` seen as little-endian f32 values without copying: `Some` on little-endian targets
/// when `bytes` is 4-byte aligned and a whole number of values (always true of the buffers
/// `combine` reads into, and of safetensors files, whose data starts 8-byte aligned).
pub(crate) fn as_f32s(bytes: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "big") {
        return None;
    }
    // SAFETY: every bit pattern is a valid f32; `align_to` only yields properly aligned values.
    match unsafe { bytes.align_to::<f32>() } {
        ([], xs, []) => Some(xs),
        _ => None,
    }
}

/// The native bytes of `values` (their little-endian encoding on little-endian targets).
pub(crate) fn f32_bytes(values: &[f32]) -> &[u8] {
    // SAFETY: u8 has no alignment or validity requirement; the length covers exactly `values`.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// The native bytes of `values`, writable (so a read can fill an f32 buffer directly).
#[cfg(unix)]
pub(crate) fn f32_bytes_mut(values: &mut [f32]) -> &mut [u8] {
    // SAFETY: as `f32_bytes`; any bytes written form a valid f32.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

/// `acc[i] += coef * x[i]` where `x` is `bytes` decoded as `dtype` (F32, BF16 or F16).
///
/// The F32 case reads aligned little-endian bytes in place ([`as_f32s`]), so the loop
/// vectorizes; the per-element `from_le_bytes` fallback computes the same values.
pub(crate) fn axpy_f32(dtype: Dtype, coef: f32, bytes: &[u8], acc: &mut [f32]) {
    match dtype {
        Dtype::F32 => match as_f32s(bytes) {
            Some(xs) => {
                for (a, x) in acc.iter_mut().zip(xs) {
                    *a += coef * *x;
                }
            }
            None => {
                for (a, b) in acc.iter_mut().zip(bytes.chunks_exact(4)) {
                    *a += coef * f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        },
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

/// The bytes of `values` stored as `dtype` (F32, BF16 or F16): F32 on a little-endian target
/// is `values` itself, seen as bytes; otherwise the encoding goes into `scratch`.
pub(crate) fn encoded<'a>(dtype: Dtype, values: &'a [f32], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if dtype == Dtype::F32 && cfg!(target_endian = "little") {
        return f32_bytes(values);
    }
    encode_f32(dtype, values, scratch);
    scratch
}

/// Encodes `values` as `dtype` (F32, BF16 or F16) into `out` (resized to fit).
pub(crate) fn encode_f32(dtype: Dtype, values: &[f32], out: &mut Vec<u8>) {
    out.clear();
    match dtype {
        Dtype::F32 => {
            out.resize(values.len() * 4, 0);
            for (o, v) in out.chunks_exact_mut(4).zip(values) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
        Dtype::BF16 => {
            out.resize(values.len() * 2, 0);
            for (o, v) in out.chunks_exact_mut(2).zip(values) {
                o.copy_from_slice(&bf16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
        Dtype::F16 => {
            out.resize(values.len() * 2, 0);
            for (o, v) in out.chunks_exact_mut(2).zip(values) {
                o.copy_from_slice(&f16::from_f32(*v).to_bits().to_le_bytes());
            }
        }
        other => unreachable!("encode_f32 called on {other}"),
    }
}

/// Decodes `bytes` of an arithmetic float dtype (F32, BF16, F16) into `out` as f32 (cleared
/// first). Exact: every BF16 and F16 value is an f32.
pub(crate) fn decode_f32(dtype: Dtype, bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    match dtype {
        Dtype::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        Dtype::BF16 => {
            out.extend(bytes.chunks_exact(2).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()))
        }
        Dtype::F16 => {
            out.extend(bytes.chunks_exact(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()))
        }
        other => unreachable!("decode_f32 called on {other}"),
    }
}

/// `v` rounded to `dtype` (F32, BF16 or F16; nearest, ties to even) and back to f32: the
/// value a reader of the stored tensor sees.
pub(crate) fn stored_value(dtype: Dtype, v: f32) -> f32 {
    match dtype {
        Dtype::BF16 => bf16::from_f32(v).to_f32(),
        Dtype::F16 => f16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// Decodes `bytes` of a float dtype (F32, BF16, F16, F64) into `out` as f64 (cleared first).
pub(crate) fn decode_f64(dtype: Dtype, bytes: &[u8], out: &mut Vec<f64>) {
    out.clear();
    match dtype {
        Dtype::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)),
        Dtype::BF16 => {
            out.extend(bytes.chunks_exact(2).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()))
        }
        Dtype::F16 => {
            out.extend(bytes.chunks_exact(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()))
        }
        Dtype::F64 => out.extend(
            bytes.chunks_exact(8).map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])),
        ),
        other => unreachable!("decode_f64 called on {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn le_bytes(xs: &[f32]) -> Vec<u8> {
        xs.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn f32_in_place_and_byte_by_byte_paths_match_a_hand_computation() {
        // acc = −0 + 2·x − 1·y, by hand: 2·1.5 − 0.5 = 2.5, 2·(−0.25) − 0 = −0.5,
        // 2·(−0) − 0 = −0 + (−0) + (−0) = −0, 2·3 − 6 = 0 (+0).
        let (x, y) = ([1.5f32, -0.25, -0.0, 3.0], [0.5f32, 0.0, 0.0, 6.0]);
        let want = [2.5f32, -0.5, -0.0, 0.0];
        let aligned: Vec<f32> = x.iter().chain(&y).copied().collect();
        let aligned = f32_bytes(&aligned);
        assert!(as_f32s(aligned).is_some() == cfg!(target_endian = "little"));
        // The same bytes one byte off an 8-aligned start: never 4-aligned, so decoded per element.
        let mut storage = vec![0u64; 5];
        let shifted = &mut f32_bytes_mut_u64(&mut storage)[1..33];
        shifted.copy_from_slice(&[le_bytes(&x), le_bytes(&y)].concat());
        assert!(as_f32s(shifted).is_none());
        for bytes in [aligned, &*shifted] {
            let mut acc = vec![-0.0f32; 4];
            axpy_f32(Dtype::F32, 2.0, &bytes[..16], &mut acc);
            axpy_f32(Dtype::F32, -1.0, &bytes[16..], &mut acc);
            assert_eq!(bits(&acc), bits(&want));
        }
    }

    /// `u64` storage seen as bytes (8-aligned), for building misaligned views.
    fn f32_bytes_mut_u64(v: &mut [u64]) -> &mut [u8] {
        // SAFETY: u8 has no alignment or validity requirement.
        unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), v.len() * 8) }
    }

    /// Bit patterns, so −0 and +0 differ.
    fn bits(xs: &[f32]) -> Vec<u32> {
        xs.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn bf16_and_f16_decode_then_round_to_nearest_even() {
        // bf16 1.5 = 0x3FC0, −0.25 = 0xBE80; 0.5·1.5 = 0.75, 0.5·(−0.25) = −0.125.
        let bytes = [0xC0, 0x3F, 0x80, 0xBE];
        let mut acc = vec![-0.0f32; 2];
        axpy_f32(Dtype::BF16, 0.5, &bytes, &mut acc);
        assert_eq!(acc, [0.75, -0.125]);
        // f16 1.5 = 0x3E00, −0.25 = 0xB400.
        let mut acc = vec![-0.0f32; 2];
        axpy_f32(Dtype::F16, 0.5, &[0x00, 0x3E, 0x00, 0xB4], &mut acc);
        assert_eq!(acc, [0.75, -0.125]);
        // bf16 keeps 7 mantissa bits: 1 + 2⁻⁸ is a tie between 1 (0x3F80, even) and 1 + 2⁻⁷;
        // 1 + 3·2⁻⁸ is a tie between 0x3F81 and 0x3F82 (even).
        let mut scratch = vec![];
        let ties = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8)];
        assert_eq!(encoded(Dtype::BF16, &ties, &mut scratch), [0x80, 0x3F, 0x82, 0x3F]);
        // f16: 1 + 2⁻¹¹ ties to 1 (0x3C00).
        let tie = [1.0 + 2f32.powi(-11)];
        assert_eq!(encoded(Dtype::F16, &tie, &mut scratch), [0x00, 0x3C]);
    }

    #[test]
    fn f32_output_in_place_equals_the_byte_by_byte_encoding() {
        let values = [1.5f32, -0.0, f32::MIN_POSITIVE, -3.25e7, f32::INFINITY];
        let mut scratch = vec![];
        let mut reference = vec![];
        encode_f32(Dtype::F32, &values, &mut reference);
        assert_eq!(reference, le_bytes(&values));
        assert_eq!(encoded(Dtype::F32, &values, &mut scratch), &reference[..]);
    }
}
