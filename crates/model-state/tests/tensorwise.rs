//! `for_each_chunk` and `map_chunks` against the reference safetensors reader: visiting order,
//! exact decoding, chunking that does not change the output, one correct rounding per value,
//! identical non-float tensors copied, errors leave nothing behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use half::{bf16, f16};
use model_state::{for_each_chunk, map_chunks, Dtype, StreamOptions};

fn states(root: &Path, n: u64) -> Vec<PathBuf> {
    (1..=n).map(|i| write_state(&root.join(format!("m{i}")), &model(i), &format!("m{i}"))).collect()
}

fn refs(v: &[PathBuf]) -> Vec<&Path> {
    v.iter().map(PathBuf::as_path).collect()
}

/// The stored value as f64, decoded by `half` (not by the crate under test).
fn decode(dtype: Dtype, bytes: &[u8]) -> Vec<f64> {
    match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|b| bf16::from_le_bytes(b.try_into().unwrap()).to_f64()).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes(b.try_into().unwrap()).to_f64()).collect(),
        _ => unreachable!(),
    }
}

/// The two stored neighbours of `x` in `dtype` (one step down and up in magnitude).
fn neighbours(dtype: Dtype, x: f64) -> [f64; 2] {
    match dtype {
        Dtype::F32 => {
            let b = (x as f32).to_bits();
            [f32::from_bits(b.wrapping_sub(1)) as f64, f32::from_bits(b + 1) as f64]
        }
        Dtype::BF16 => {
            let b = bf16::from_f64(x).to_bits();
            [bf16::from_bits(b.wrapping_sub(1)).to_f64(), bf16::from_bits(b + 1).to_f64()]
        }
        _ => {
            let b = f16::from_f64(x).to_bits();
            [f16::from_bits(b.wrapping_sub(1)).to_f64(), f16::from_bits(b + 1).to_f64()]
        }
    }
}

#[test]
fn chunks_arrive_in_file_order_and_decode_exactly() {
    let root = tempfile::tempdir().unwrap();
    let dirs = states(root.path(), 2);
    let models = [model(1), model(2)];
    let mut seen: BTreeMap<String, (usize, Vec<Vec<f64>>)> = BTreeMap::new();
    let mut order: Vec<String> = vec![];
    let rep = for_each_chunk(&refs(&dirs), 4, |c| {
        if c.start == 0 {
            assert_eq!(c.tensor, order.len(), "{}", c.name);
            order.push(c.name.to_string());
        }
        assert_eq!(order.last().map(String::as_str), Some(c.name), "a tensor's chunks are consecutive");
        let e = seen.entry(c.name.to_string()).or_insert((0, vec![vec![]; 2]));
        assert_eq!(c.start, e.0, "{}: chunks in element order", c.name);
        assert!(c.len() <= 4 && !c.is_empty());
        assert_eq!(c.is_last(), c.start + c.len() == c.numel);
        assert_eq!(c.numel, c.shape.iter().product::<usize>());
        e.0 += c.len();
        for (i, v) in c.inputs.iter().enumerate() {
            e.1[i].extend_from_slice(v);
        }
        Ok(())
    })
    .unwrap();
    // The file's layout (safetensors' `Dtype` order descending: F32, BF16, F16), then by
    // name; the I64 buffer is skipped.
    assert_eq!(
        order,
        [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "model.scale",
            "model.layers.0.mlp.bias",
            "model.layers.0.mlp.weight",
            "lm_head.weight"
        ]
    );
    assert_eq!(order.len(), 6);
    assert_eq!(rep.float_tensors, 6);
    for (name, (n, got)) in &seen {
        assert_eq!(*n, models[0][name].values.len());
        for (i, m) in models.iter().enumerate() {
            let want: Vec<f64> = m[name].values.iter().map(|&v| v as f64).collect();
            assert_eq!(got[i], want, "{name} input {i}");
        }
    }
}

#[test]
fn identity_map_reproduces_input_zero_for_any_chunk_size() {
    let root = tempfile::tempdir().unwrap();
    let dirs = states(root.path(), 2);
    let mut outputs = vec![];
    for chunk_elems in [1, 5, 1 << 18] {
        let out = root.path().join(format!("out{chunk_elems}"));
        let opts = StreamOptions { chunk_elems, ..Default::default() };
        let rep = map_chunks(&refs(&dirs[..1]), &out, &opts, |_, _| Ok(())).unwrap();
        assert_eq!(rep.float_tensors, 6);
        let got = read_output(&out);
        for (name, t) in model(1) {
            assert_eq!(got[&name].2, t.bytes(), "{name}");
        }
        assert_eq!(
            std::fs::read_to_string(out.join("config.json")).unwrap(),
            std::fs::read_to_string(dirs[0].join("config.json")).unwrap()
        );
        outputs.push(std::fs::read(out.join("model.safetensors")).unwrap());
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn a_nonlinear_map_is_rounded_once_to_nearest() {
    let root = tempfile::tempdir().unwrap();
    let dirs = states(root.path(), 3);
    let out = root.path().join("out");
    // y = x0 − 0.3·x1 + x2²/7 (not a linear combination; not exact in any stored dtype)
    let y = |a: f64, b: f64, c: f64| a - 0.3 * b + c * c / 7.0;
    let opts = StreamOptions { chunk_elems: 3, ..Default::default() };
    map_chunks(&refs(&dirs), &out, &opts, |c, o| {
        for (j, v) in o.iter_mut().enumerate() {
            *v = y(c.inputs[0][j], c.inputs[1][j], c.inputs[2][j]);
        }
        Ok(())
    })
    .unwrap();
    let got = read_output(&out);
    let models = [model(1), model(2), model(3)];
    let mut inexact = 0;
    for (name, t) in &models[0] {
        let (dtype, shape, bytes) = &got[name];
        assert_eq!((dtype, shape), (&t.dtype, &t.shape));
        if t.values.is_empty() {
            assert_eq!(bytes, &t.raw, "{name}: copied");
            continue;
        }
        for (j, g) in decode(*dtype, bytes).into_iter().enumerate() {
            let v = y(t.values[j] as f64, models[1][name].values[j] as f64, models[2][name].values[j] as f64);
            for nb in neighbours(*dtype, g) {
                assert!(
                    (g - v).abs() <= (nb - v).abs(),
                    "{name}[{j}]: {g} is not the nearest {dtype} to {v} ({nb} is nearer)"
                );
            }
            inexact += usize::from(g != v);
        }
    }
    assert!(inexact > 20, "the test values must need rounding");
}

#[test]
fn errors_name_the_tensor_and_leave_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dirs = states(root.path(), 2);
    let out = root.path().join("out");
    let e = map_chunks(&refs(&dirs), &out, &StreamOptions::default(), |c, _| {
        anyhow::ensure!(c.name != "model.norm.weight", "refused");
        Ok(())
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("model.norm.weight") && format!("{e:#}").contains("refused"), "{e:#}");
    assert!(!listing(root.path()).iter().any(|n| n.contains("out")), "{:?}", listing(root.path()));

    // an integer buffer that differs between inputs
    let mut m = model(2);
    m.insert("model.position_ids".into(), T::i64s(&[1, 4], &[0, 1, 2, 4]));
    let other = write_state(&root.path().join("other"), &m, "o");
    let e = map_chunks(&[dirs[0].as_path(), &other], &out, &StreamOptions::default(), |_, _| Ok(())).unwrap_err();
    assert!(format!("{e:#}").contains("model.position_ids") && format!("{e:#}").contains("identical"), "{e:#}");
    assert!(!out.exists());

    // another shape
    let mut m = model(2);
    m.insert("model.norm.weight".into(), T::float(Dtype::F32, &[8], values(9, 8)));
    let other = write_state(&root.path().join("other2"), &m, "o");
    let e = for_each_chunk(&[dirs[0].as_path(), &other], 4, |_| Ok(())).unwrap_err();
    assert!(format!("{e:#}").contains("model.norm.weight"), "{e:#}");

    // out exists: refused unless overwrite
    map_chunks(&refs(&dirs[..1]), &out, &StreamOptions::default(), |_, _| Ok(())).unwrap();
    assert!(map_chunks(&refs(&dirs[..1]), &out, &StreamOptions::default(), |_, _| Ok(())).is_err());
    let opts = StreamOptions { overwrite: true, ..Default::default() };
    map_chunks(&refs(&dirs[..1]), &out, &opts, |_, _| Ok(())).unwrap();
}
