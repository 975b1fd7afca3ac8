//! RTN quantization (`quantize_checkpoint`): hand-computed rows for both schemes, properties
//! on random matrices (error ≤ scale/2, values on the 16-level grid), the tensor selection,
//! end to end on a tiny checkpoint (copied tensors byte-identical, dtypes kept, checked bit
//! for bit against an independent numpy implementation when numpy is available), the chunked
//! streaming, and every documented error.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use model_state::{
    quantize_checkpoint, quantize_checkpoint_with, quantize_selection, Dtype, Outcome, QuantizeOptions, Scheme,
    SkipReason,
};

const INT4_G4: Scheme = Scheme::Int4PerGroup { group: 4 };

fn fake_quant(scheme: Scheme, row: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; row.len()];
    scheme.quantize_dequantize(row, &mut out);
    out
}

#[track_caller]
fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "element {i}: got {g}, want {w} (tolerance {tol}); all: {got:?}");
    }
}

// ---------------------------------------------------------------- (a) by hand

#[test]
fn int8_per_channel_by_hand() {
    // Row 0: max|w| = 1.984375 = 127/64, so scale = 1/64 exactly. w/scale = 127, −64,
    // 0.64 → 1, 32.5 → 32 (a tie: round half to even). w' = q/64.
    let row0 = [1.984375f32, -1.0, 0.01, 0.507_812_5];
    assert_eq!(fake_quant(Scheme::Int8PerChannel, &row0), [1.984375, -1.0, 0.015625, 0.5]);
    // Row 1: max|w| = 0.25, scale = 0.25/127, w/scale = 508·w: −127, 50.8 → 51,
    // 101.6 → 102, 15.24 → 15.
    let row1 = [-0.25f32, 0.1, 0.2, 0.03];
    let s = 0.25f32 / 127.0;
    let want1 = [-127.0 * s, 51.0 * s, 102.0 * s, 15.0 * s];
    assert_close(&fake_quant(Scheme::Int8PerChannel, &row1), &want1, 1e-7);
    assert!((want1[1] - 0.100_393_7).abs() < 1e-7, "51·0.25/127 = 0.1003937");
    // Row 2: all zeros (scale 0) is kept bit for bit, negative zero included.
    let row2 = [0.0f32, -0.0, 0.0, 0.0];
    let got: Vec<u32> = fake_quant(Scheme::Int8PerChannel, &row2).iter().map(|v| v.to_bits()).collect();
    assert_eq!(got, row2.map(f32::to_bits));
}

#[test]
fn int4_per_group_by_hand() {
    // Group size 4 on rows of 7: groups of 4 and 3.
    // Row 0, group [−1.5, 0.25, 2.2, 6.0]: scale = 7.5/15 = 0.5, zero = round(1.5/0.5) = 3;
    // q = round(w/0.5) + 3 = 0, 3 (0.5 is a tie → 0), 7 (4.4 → 4), 15;
    // w' = (q − 3)·0.5 = −1.5, 0, 2, 6. Group [0.7, 0.7, 0.7]: max == min, kept.
    let row0 = [-1.5f32, 0.25, 2.2, 6.0, 0.7, 0.7, 0.7];
    assert_eq!(fake_quant(INT4_G4, &row0), [-1.5, 0.0, 2.0, 6.0, 0.7, 0.7, 0.7]);
    // Row 1, group [1, 2, 3, 4] (all positive): scale = 3/15 = 0.2, zero = round(−1/0.2) = −5
    // (pure min–max: the zero point lies outside 0..=15), q = 5w − 5 = 0, 5, 10, 15,
    // w' = (q + 5)·0.2 = 1, 2, 3, 4.
    // Group [−0.3, 0.13, 0.45]: scale = 0.75/15 = 0.05, zero = round(0.3/0.05) = 6,
    // q = 0, 9 (2.6 → 3, + 6), 15, w' = (q − 6)·0.05 = −0.3, 0.15, 0.45.
    let row1 = [1.0f32, 2.0, 3.0, 4.0, -0.3, 0.13, 0.45];
    assert_close(&fake_quant(INT4_G4, &row1), &[1.0, 2.0, 3.0, 4.0, -0.3, 0.15, 0.45], 1e-6);
    // The default group (128) on a row of 3 is one group: [−1, 0, 0.5] → scale 0.1, zero 10,
    // q = 0, 10, 15 → exact.
    let g128 = Scheme::Int4PerGroup { group: 128 };
    assert_close(&fake_quant(g128, &[-1.0, 0.0, 0.5]), &[-1.0, 0.0, 0.5], 1e-7);
    // A last group of one element has max == min and is kept.
    assert_eq!(fake_quant(INT4_G4, &[0.3, -0.1, 0.2, 0.25, 0.123])[4], 0.123);
}

// ---------------------------------------------------------------- (b) properties

/// splitmix64 step, for shapes and scales.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random row: uniform in [−2, 2) times 10^k, k in −4..=3, sometimes with a run of zeros
/// or of one repeated value.
fn random_row(seed: u64, len: usize) -> Vec<f32> {
    let k = (mix(seed) % 8) as i32 - 4;
    let mut row: Vec<f32> = values(seed, len).into_iter().map(|v| v * 10f32.powi(k)).collect();
    match mix(seed ^ 1) % 4 {
        0 if len > 8 => row[2..8].fill(0.0),
        1 if len > 8 => {
            let v = row[0];
            row[..8].fill(v);
        }
        _ => {}
    }
    row
}

#[test]
fn int8_error_is_at_most_half_a_step_and_values_are_on_the_grid() {
    for case in 0..400u64 {
        let len = 1 + (mix(case) % 700) as usize;
        let row = random_row(case * 7 + 3, len);
        let out = fake_quant(Scheme::Int8PerChannel, &row);
        let absmax = row.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        if absmax == 0.0 {
            assert_eq!(out, row);
            continue;
        }
        let scale = absmax / 127.0;
        for (i, (&w, &o)) in row.iter().zip(&out).enumerate() {
            let err = (o as f64 - w as f64).abs();
            assert!(
                err <= scale / 2.0 * (1.0 + 1e-5),
                "case {case}, element {i}: |{o} − {w}| > scale/2 = {}",
                scale / 2.0
            );
            let q = o as f64 / scale;
            assert!(q.abs() <= 127.0 + 1e-4, "case {case}, element {i}: level {q} outside ±127");
            assert!((q - q.round()).abs() < 1e-4, "case {case}, element {i}: {o} is not a multiple of scale {scale}");
        }
    }
}

#[test]
fn int4_values_lie_on_their_groups_16_level_grid() {
    for case in 0..400u64 {
        let len = 1 + (mix(case) % 700) as usize;
        let group = [1usize, 3, 8, 32, 128, 200][(mix(case ^ 5) % 6) as usize];
        let row = random_row(case * 11 + 5, len);
        let out = fake_quant(Scheme::Int4PerGroup { group }, &row);
        for (g, (ws, os)) in row.chunks(group).zip(out.chunks(group)).enumerate() {
            let min = ws.iter().fold(f64::INFINITY, |m, &v| m.min(v as f64));
            let max = ws.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            if max == min {
                assert_eq!(os, ws, "case {case}, group {g}: a constant group is kept");
                continue;
            }
            // The grid {(k − z)·s : k = 0..=15}, computed here in f64; z may differ by one
            // from the f32 computation when −min/s is within rounding of a tie.
            let s = (max - min) / 15.0;
            let z = (-min / s).round();
            // f32 rounding of w/s, +z and (q − z)·s, each relative to magnitudes ≤ (|z| + 16)·s.
            let tol = 1e-6 * (z.abs() + 16.0) * s;
            let mut levels = std::collections::BTreeSet::new();
            for (i, (&w, &o)) in ws.iter().zip(os).enumerate() {
                let o = o as f64;
                let on_grid = [z - 1.0, z, z + 1.0].iter().find_map(|&zz| {
                    let k = (o / s + zz).round();
                    ((0.0..=15.0).contains(&k) && (o - (k - zz) * s).abs() <= tol).then_some(k as i64 - zz as i64)
                });
                let Some(level) = on_grid else {
                    panic!("case {case}, group {g}, element {i}: {o} is not on the grid (k − {z})·{s}, k = 0..=15");
                };
                levels.insert(level);
                let err = (o - w as f64).abs();
                assert!(
                    err <= s / 2.0 + tol,
                    "case {case}, group {g}, element {i}: |{o} − {w}| > scale/2 = {}",
                    s / 2.0
                );
            }
            assert!(levels.len() <= 16, "case {case}, group {g}: {} levels", levels.len());
        }
    }
}

// ---------------------------------------------------------------- selection and parsing

#[track_caller]
fn check_selection(name: &str, shape: &[usize], want: Result<(), SkipReason>) {
    assert_eq!(quantize_selection(name, shape), want, "{name} {shape:?}");
}

#[test]
fn selection_takes_the_2d_linear_weights_of_blocks_and_lm_head() {
    let l = "model.layers.12";
    check_selection(&format!("{l}.self_attn.q_proj.weight"), &[64, 64], Ok(()));
    check_selection(&format!("{l}.self_attn.o_proj.weight"), &[64, 64], Ok(()));
    check_selection(&format!("{l}.mlp.down_proj.weight"), &[64, 172], Ok(()));
    check_selection("transformer.h.0.attn.c_proj.weight", &[64, 64], Ok(()));
    check_selection("lm_head.weight", &[1000, 64], Ok(()));
    check_selection("model.embed_tokens.weight", &[1000, 64], Err(SkipReason::Embedding));
    check_selection("transformer.wte.weight", &[1000, 64], Err(SkipReason::Embedding));
    check_selection("model.norm.weight", &[64], Err(SkipReason::Norm));
    check_selection(&format!("{l}.input_layernorm.weight"), &[64], Err(SkipReason::Norm));
    check_selection(&format!("{l}.self_attn.q_norm.weight"), &[64], Err(SkipReason::Norm));
    check_selection("transformer.h.0.ln_1.weight", &[64], Err(SkipReason::Norm));
    check_selection(&format!("{l}.self_attn.q_proj.bias"), &[64], Err(SkipReason::NotWeight));
    check_selection(&format!("{l}.self_attn.rotary_emb.inv_freq"), &[32], Err(SkipReason::NotWeight));
    check_selection("model.position_ids", &[1, 4], Err(SkipReason::NotWeight));
    check_selection(&format!("{l}.mlp.experts.weight"), &[4, 64, 64], Err(SkipReason::NotMatrix(3)));
    check_selection(&format!("{l}.scale.weight"), &[64], Err(SkipReason::NotMatrix(1)));
    check_selection("model.projector.weight", &[64, 64], Err(SkipReason::OutsideBlocks));
    check_selection("model.layers.x.mlp.weight", &[64, 64], Err(SkipReason::OutsideBlocks));
}

#[test]
fn schemes_parse_display_and_reject_with_the_accepted_forms() {
    assert_eq!("int8".parse::<Scheme>().unwrap(), Scheme::Int8PerChannel);
    assert_eq!("int4".parse::<Scheme>().unwrap(), Scheme::Int4PerGroup { group: 128 });
    assert_eq!("int4:g128".parse::<Scheme>().unwrap(), Scheme::Int4PerGroup { group: 128 });
    assert_eq!("int4:g64".parse::<Scheme>().unwrap(), Scheme::Int4PerGroup { group: 64 });
    for s in [Scheme::Int8PerChannel, Scheme::Int4PerGroup { group: 128 }, INT4_G4] {
        assert_eq!(s.to_string().parse::<Scheme>().unwrap(), s);
    }
    assert_eq!(Scheme::Int4PerGroup { group: 128 }.to_string(), "int4:g128");
    for bad in ["", "int3", "INT8", "int4:", "int4:g", "int4:g0", "int4:128", "int4:g+8", "int4:g12x", "nf4"] {
        let msg = format!("{:#}", bad.parse::<Scheme>().unwrap_err());
        assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        assert!(msg.contains("\"int8\"") && msg.contains("\"int4:g<N>\""), "{msg}");
    }
}

// ---------------------------------------------------------------- (c) end to end

/// A tiny Llama-style model: embedding, norms, a bias, an integer buffer and linear weights
/// in all three float dtypes; `up_proj` rows (300) are 2 groups of 128 and one of 44.
fn tiny_model(with_lm_head: bool) -> BTreeMap<String, T> {
    let mut m = BTreeMap::new();
    let mut add = |name: &str, dtype: Dtype, shape: &[usize], seed: u64| {
        let n = shape.iter().product();
        m.insert(name.to_string(), T::float(dtype, shape, values(seed, n)));
    };
    add("model.embed_tokens.weight", Dtype::BF16, &[16, 8], 1);
    add("model.layers.0.input_layernorm.weight", Dtype::BF16, &[8], 2);
    add("model.layers.0.self_attn.q_proj.weight", Dtype::BF16, &[8, 8], 3);
    add("model.layers.0.self_attn.q_proj.bias", Dtype::BF16, &[8], 4);
    add("model.layers.0.mlp.up_proj.weight", Dtype::F32, &[5, 300], 5);
    add("model.layers.0.mlp.down_proj.weight", Dtype::F16, &[300, 5], 6);
    add("model.norm.weight", Dtype::F32, &[8], 7);
    if with_lm_head {
        add("lm_head.weight", Dtype::F16, &[16, 8], 8);
    }
    m.insert("model.position_ids".into(), T::i64s(&[1, 4], &[0, 1, 2, 3]));
    m
}

const LINEAR: [&str; 3] = [
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.mlp.up_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
];
const COPIED: [&str; 5] = [
    "model.embed_tokens.weight",
    "model.layers.0.input_layernorm.weight",
    "model.layers.0.self_attn.q_proj.bias",
    "model.norm.weight",
    "model.position_ids",
];

fn decode(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
        Dtype::BF16 => bytes.chunks(2).map(|b| half::bf16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect(),
        Dtype::F16 => bytes.chunks(2).map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect(),
        d => panic!("not a float dtype: {d:?}"),
    }
}

/// Runs the numpy reference on `src` → `dst`, or says SKIPPED when numpy is missing (a
/// failure when `UNLEARN_DATA_DIR` is set: there the check must run).
fn check_against_numpy(src: &Path, dst: &Path, scheme: Scheme, quantized: &[&str]) {
    let has_numpy = Command::new("python3").args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    if !has_numpy {
        assert!(
            std::env::var_os("UNLEARN_DATA_DIR").is_none(),
            "python3 with numpy is required for the numpy reference check when UNLEARN_DATA_DIR is set"
        );
        println!("SKIPPED: numpy reference check for {scheme} (python3 with numpy not available)");
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/quantize_reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(src)
        .arg(dst)
        .arg(scheme.to_string())
        .args(quantized)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("numpy reference, {scheme}:\n{text}");
    assert!(out.status.success(), "numpy reference disagrees for {scheme}:\n{text}");
    assert_eq!(text.matches("bit for bit").count(), quantized.len(), "{text}");
}

#[test]
fn end_to_end_copies_what_is_not_quantized_and_matches_numpy_bit_for_bit() {
    let root = tempfile::tempdir().unwrap();
    let tensors = tiny_model(true);
    let src = write_state(&root.path().join("src"), &tensors, "tiny");
    for scheme in [Scheme::Int8PerChannel, Scheme::Int4PerGroup { group: 128 }, INT4_G4] {
        let dst = root.path().join(format!("q-{scheme}"));
        let report = quantize_checkpoint(&src, &dst, scheme).unwrap();
        assert_eq!(report.scheme, scheme);

        // Side files copied, no leftovers.
        assert_eq!(listing(&dst), ["config.json", "model.safetensors", "tokenizer.json"]);
        assert_eq!(std::fs::read(dst.join("config.json")).unwrap(), std::fs::read(src.join("config.json")).unwrap());
        assert!(!listing(root.path()).iter().any(|n| n.contains(".tmp-")));

        let got = read_output(&dst);
        assert_eq!(got.keys().collect::<Vec<_>>(), tensors.keys().collect::<Vec<_>>());
        for (name, t) in &tensors {
            let (dtype, shape, bytes) = &got[name];
            assert_eq!((*dtype, shape), (t.dtype, &t.shape), "{name}: dtype and shape are kept");
            let entry = report.tensors.iter().find(|e| &e.name == name).unwrap();
            if COPIED.contains(&name.as_str()) {
                assert_eq!(bytes, &t.bytes(), "{name} must be copied byte for byte");
                assert!(matches!(entry.outcome, Outcome::Skipped(_)), "{name}: {:?}", entry.outcome);
                continue;
            }
            assert!(LINEAR.contains(&name.as_str()) || name == "lm_head.weight");
            assert_ne!(bytes, &t.bytes(), "{name} must change under {scheme}");
            // The report's relative error, recomputed from the files.
            let new = decode(*dtype, bytes);
            let (mut n2, mut e2) = (0f64, 0f64);
            for (a, b) in t.values.iter().zip(&new) {
                n2 += (*a as f64).powi(2);
                e2 += (*b as f64 - *a as f64).powi(2);
            }
            let rel = (e2 / n2).sqrt();
            assert!(
                (entry.relative_error() - rel).abs() <= 1e-12 * rel.max(1.0),
                "{name}: {} vs {rel}",
                entry.relative_error()
            );
            assert!(rel > 0.0 && rel < 0.2, "{name}: relative error {rel}");
            assert_eq!(
                entry.outcome,
                match entry.outcome {
                    Outcome::Quantized { norm, error_norm, .. } => Outcome::Quantized { scheme, norm, error_norm },
                    _ => panic!("{name} not quantized"),
                }
            );
        }
        let skipped: BTreeMap<&str, SkipReason> = report
            .tensors
            .iter()
            .filter_map(|t| match &t.outcome {
                Outcome::Skipped(r) => Some((t.name.as_str(), r.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(skipped["model.embed_tokens.weight"], SkipReason::Embedding);
        assert_eq!(skipped["model.norm.weight"], SkipReason::Norm);
        assert_eq!(skipped["model.layers.0.self_attn.q_proj.bias"], SkipReason::NotWeight);
        assert_eq!(report.quantized().count(), 4);
        // int4 loses more than int8.
        let overall = report.relative_error();
        assert!(
            overall > 0.0 && overall < if scheme == Scheme::Int8PerChannel { 0.01 } else { 0.2 },
            "{scheme}: {overall}"
        );

        let mut quantized = LINEAR.to_vec();
        quantized.push("lm_head.weight");
        check_against_numpy(&src, &dst, scheme, &quantized);
    }
}

#[test]
fn bf16_output_is_the_f32_result_rounded_to_bf16() {
    let root = tempfile::tempdir().unwrap();
    let tensors = tiny_model(false);
    let src = write_state(&root.path().join("src"), &tensors, "tiny");
    let dst = root.path().join("q");
    quantize_checkpoint(&src, &dst, Scheme::Int8PerChannel).unwrap();
    let name = "model.layers.0.self_attn.q_proj.weight";
    let (dtype, _, bytes) = &read_output(&dst)[name];
    assert_eq!(*dtype, Dtype::BF16);
    let w = &tensors[name].values;
    let want: Vec<f32> =
        w.chunks(8).flat_map(|row| fake_quant(Scheme::Int8PerChannel, row)).map(|v| round_to(Dtype::BF16, v)).collect();
    assert_eq!(decode(Dtype::BF16, bytes), want);
}

#[test]
fn tied_embeddings_and_lm_head_option_keep_the_output_projection() {
    let root = tempfile::tempdir().unwrap();
    // Tied: no lm_head tensor, the embedding (also the output projection) is untouched.
    let tied = tiny_model(false);
    let src = write_state(&root.path().join("tied"), &tied, "tied");
    let report = quantize_checkpoint(&src, &root.path().join("tied-q"), Scheme::Int8PerChannel).unwrap();
    assert_eq!(report.quantized().count(), 3);
    assert_eq!(
        read_output(&root.path().join("tied-q"))["model.embed_tokens.weight"].2,
        tied["model.embed_tokens.weight"].bytes()
    );
    // Untied, with lm_head: false, lm_head is copied and reported as kept.
    let untied = tiny_model(true);
    let src = write_state(&root.path().join("untied"), &untied, "untied");
    let dst = root.path().join("untied-q");
    let opts = QuantizeOptions { lm_head: false, ..Default::default() };
    let report = quantize_checkpoint_with(&src, &dst, Scheme::Int8PerChannel, &opts).unwrap();
    let lm = report.tensors.iter().find(|t| t.name == "lm_head.weight").unwrap();
    assert_eq!(lm.outcome, Outcome::Skipped(SkipReason::LmHeadKept));
    assert_eq!(read_output(&dst)["lm_head.weight"].2, untied["lm_head.weight"].bytes());
    assert_eq!(report.quantized().count(), 3);
}

#[test]
fn sharded_input_gives_the_single_file_output() {
    let root = tempfile::tempdir().unwrap();
    let tensors = tiny_model(true);
    let single = write_state(&root.path().join("single"), &tensors, "m");
    let sharded = write_sharded_state(&root.path().join("sharded"), &tensors, "m");
    quantize_checkpoint(&single, &root.path().join("a"), INT4_G4).unwrap();
    quantize_checkpoint(&sharded, &root.path().join("b"), INT4_G4).unwrap();
    assert_eq!(
        std::fs::read(root.path().join("a/model.safetensors")).unwrap(),
        std::fs::read(root.path().join("b/model.safetensors")).unwrap()
    );
    assert!(!root.path().join("b/model.safetensors.index.json").exists());
}

// ---------------------------------------------------------------- (d) streaming

/// The transform holds one chunk of whole rows of one tensor at a time (never a whole
/// tensor, let alone the model): the report's largest chunk stays within `chunk_elems` (or
/// one row when a row is longer), and the output does not depend on the chunk size.
#[test]
fn tensors_are_streamed_in_chunks_of_whole_rows_with_the_same_result() {
    let root = tempfile::tempdir().unwrap();
    let mut tensors = tiny_model(true);
    // 64 × 300 = 19 200 elements in one tensor.
    tensors
        .insert("model.layers.1.mlp.gate_proj.weight".into(), T::float(Dtype::BF16, &[64, 300], values(9, 64 * 300)));
    let src = write_state(&root.path().join("src"), &tensors, "m");
    let mut outputs = vec![];
    // Largest chunks: the whole 64 × 300 tensor; 200 rows of down_proj's 5 (gate_proj's 3
    // rows are 900); one 300-element row.
    for (chunk_elems, peak) in [(1 << 20, 64 * 300), (1000, 1000), (1, 300)] {
        let dst = root.path().join(format!("q{chunk_elems}"));
        let opts = QuantizeOptions { chunk_elems, ..Default::default() };
        let report = quantize_checkpoint_with(&src, &dst, Scheme::Int4PerGroup { group: 128 }, &opts).unwrap();
        assert_eq!(report.peak_chunk_elems, peak, "chunk_elems {chunk_elems}");
        outputs.push(std::fs::read(dst.join("model.safetensors")).unwrap());
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "output depends on the chunk size");
}

// ---------------------------------------------------------------- errors

#[test]
fn a_non_finite_weight_is_an_error_naming_the_tensor_and_nothing_is_written() {
    let root = tempfile::tempdir().unwrap();
    for bad in [f32::NAN, f32::INFINITY] {
        let mut tensors = tiny_model(true);
        tensors.get_mut("model.layers.0.mlp.up_proj.weight").unwrap().values[2 * 300 + 7] = bad;
        let src = write_state(&root.path().join(format!("src-{bad}")), &tensors, "m");
        let dst = root.path().join(format!("out-{bad}"));
        let msg = format!("{:#}", quantize_checkpoint(&src, &dst, Scheme::Int8PerChannel).unwrap_err());
        assert!(msg.contains("model.layers.0.mlp.up_proj.weight") && msg.contains("[2, 7]"), "{msg}");
        assert!(msg.contains(&bad.to_string()) && msg.contains("finite"), "{msg}");
        assert!(!dst.exists());
    }
    assert!(!listing(root.path()).iter().any(|n| n.contains(".tmp-")));
    // A non-finite value in a tensor that is not quantized is copied like any other bytes.
    let mut tensors = tiny_model(true);
    tensors.get_mut("model.norm.weight").unwrap().values[0] = f32::NAN;
    let src = write_state(&root.path().join("nan-norm"), &tensors, "m");
    quantize_checkpoint(&src, &root.path().join("nan-norm-q"), INT4_G4).unwrap();
}

#[test]
fn folder_errors_name_the_path() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("no-such-model");
    let msg = format!("{:#}", quantize_checkpoint(&missing, &root.path().join("o"), INT4_G4).unwrap_err());
    assert!(msg.contains(&missing.display().to_string()) && msg.contains("does not exist"), "{msg}");
    assert!(!root.path().join("o").exists());

    let src = write_state(&root.path().join("src"), &tiny_model(true), "m");
    let dst = root.path().join("dst");
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(dst.join("keep"), "x").unwrap();
    let msg = format!("{:#}", quantize_checkpoint(&src, &dst, INT4_G4).unwrap_err());
    assert!(msg.contains("already exists"), "{msg}");
    assert_eq!(listing(&dst), ["keep"]);
    let opts = QuantizeOptions { overwrite: true, ..Default::default() };
    let msg = format!("{:#}", quantize_checkpoint_with(&src, &src, INT4_G4, &opts).unwrap_err());
    assert!(msg.contains("is also the input"), "{msg}");
    quantize_checkpoint_with(&src, &dst, INT4_G4, &opts).unwrap();
    assert_eq!(listing(&dst), ["config.json", "model.safetensors", "tokenizer.json"]);
}

#[test]
fn a_linear_weight_of_another_dtype_is_an_error_not_a_silent_skip() {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    write_side_files(&src, "m");
    let bytes: Vec<u8> = (0..4).flat_map(|i| (i as f64).to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(Dtype::F64, vec![2, 2], &bytes).unwrap();
    safetensors::serialize_to_file([("model.layers.0.mlp.up_proj.weight", view)], None, &src.join("model.safetensors"))
        .unwrap();
    let msg = format!("{:#}", quantize_checkpoint(&src, &root.path().join("o"), Scheme::Int8PerChannel).unwrap_err());
    assert!(msg.contains("model.layers.0.mlp.up_proj.weight") && msg.contains("F64"), "{msg}");
}
