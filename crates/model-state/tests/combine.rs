//! `combine` against an in-memory reference: f32 accumulation in term order, rounded to the
//! stored dtype; single and sharded inputs; every documented error; atomic output.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use model_state::{combine, tensor_names_and_shapes, CombineOptions, Dtype, StateFiles};

const COEFS: [f64; 3] = [1.0, -1.5, 0.5];

fn three_states(root: &Path, sharded_first: bool) -> Vec<(f64, PathBuf)> {
    (0..3)
        .map(|i| {
            let dir = root.join(format!("m{i}"));
            let m = model(i as u64 + 1);
            let path = if i == 0 && sharded_first {
                write_sharded_state(&dir, &m, &format!("m{i}"))
            } else {
                write_state(&dir, &m, &format!("m{i}"))
            };
            (COEFS[i], path)
        })
        .collect()
}

/// Compares the output folder element by element with the reference combination.
#[track_caller]
fn check_output(out: &Path) {
    let models: Vec<_> = (1..=3).map(model).collect();
    let expected = reference_combination(&COEFS, &models);
    let got = read_output(out);
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    for (name, t) in &expected {
        let (dtype, shape, bytes) = &got[name];
        assert_eq!((*dtype, shape), (t.dtype, &t.shape), "{name}");
        assert_eq!(bytes, &t.bytes(), "{name}: values differ from f32 reference rounded to {:?}", t.dtype);
    }
    // The math really mixed the terms (the reference is not just term 1).
    assert_ne!(expected["model.norm.weight"].values, models[0]["model.norm.weight"].values);
}

fn assert_no_output(root: &Path, out_name: &str) {
    let names = listing(root);
    assert!(!names.iter().any(|n| n == out_name || n.contains(".tmp-")), "leftovers in {names:?}");
}

#[test]
fn combine_matches_reference_for_f32_bf16_f16_and_copies_int_buffers() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let out = root.path().join("out");
    let report = combine(&terms, &out, &CombineOptions::default()).unwrap();
    check_output(&out);

    // Side files come from the first term; nothing else is left behind.
    let config = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(config.contains("\"m0\""), "{config}");
    assert!(std::fs::read_to_string(out.join("tokenizer.json")).unwrap().contains("m0"));
    assert_eq!(listing(&out), ["config.json", "model.safetensors", "tokenizer.json"]);
    assert_eq!(listing(root.path()), ["m0", "m1", "m2", "out"]);

    // Report: 7 tensors; data = 15*4 + 24*2 + 6*2 + 7*4 + 4 + 6*2 + 4*8 = 196 bytes per model.
    assert_eq!(report.tensors, 7);
    assert_eq!(report.bytes_read, 3 * 196);
    let file_len = std::fs::metadata(out.join("model.safetensors")).unwrap().len();
    assert_eq!(report.bytes_written, file_len);
    assert_eq!(report.peak_accumulator_bytes, 24 * 4);

    // Header: 8-byte LE length, JSON padded to 8 bytes, __metadata__ {"format": "pt"},
    // tensors laid out by dtype size (largest first) then name, like safetensors.serialize.
    let buf = std::fs::read(out.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0);
    let header: serde_json::Value = serde_json::from_str(std::str::from_utf8(&buf[8..8 + n]).unwrap()).unwrap();
    assert_eq!(header["__metadata__"], serde_json::json!({"format": "pt"}));
    assert_eq!(header["model.position_ids"]["data_offsets"], serde_json::json!([0, 32]));
    assert_eq!(header["model.embed_tokens.weight"]["data_offsets"], serde_json::json!([32, 92]));
    assert_eq!(header["model.scale"]["shape"], serde_json::json!([]));
}

#[test]
fn combine_is_identical_with_tiny_chunks_and_deterministic() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    combine(&terms, &a, &CombineOptions::default()).unwrap();
    // Chunks of 5 elements split every tensor at odd places.
    let opts = CombineOptions { chunk_elems: 5, ..Default::default() };
    let report = combine(&terms, &b, &opts).unwrap();
    assert_eq!(report.peak_accumulator_bytes, 5 * 4);
    check_output(&b);
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap()
    );
    // 1, 3 and 7 threads over odd chunks: the same bytes
    for threads in [1, 3, 7] {
        let c = root.path().join(format!("t{threads}"));
        let opts = CombineOptions { chunk_elems: 7, threads, ..Default::default() };
        combine(&terms, &c, &opts).unwrap();
        check_output(&c);
        assert_eq!(
            std::fs::read(a.join("model.safetensors")).unwrap(),
            std::fs::read(c.join("model.safetensors")).unwrap(),
            "{threads} threads"
        );
    }
}

#[test]
fn sharded_input_is_read_through_its_index() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), true);
    let state = StateFiles::open(&terms[0].1).unwrap();
    assert!(state.is_sharded());
    assert_eq!(state.shard_paths().len(), 2);
    assert_eq!(state.tensors().len(), 7);
    let shard_of = |n: &str| state.path_of(state.tensor(n).unwrap()).file_name().unwrap().to_owned();
    // BTreeMap order: lm_head, embed_tokens, layers.0.mlp.bias, ... alternate between shards.
    assert_eq!(shard_of("lm_head.weight"), "model-00001-of-00002.safetensors");
    assert_eq!(shard_of("model.embed_tokens.weight"), "model-00002-of-00002.safetensors");

    let out = root.path().join("out");
    combine(&terms, &out, &CombineOptions::default()).unwrap();
    check_output(&out);
    // Output is always one file.
    assert_eq!(listing(&out), ["config.json", "model.safetensors", "tokenizer.json"]);

    let shapes = tensor_names_and_shapes(&terms[0].1).unwrap();
    assert_eq!(shapes["model.layers.0.mlp.weight"], (Dtype::BF16, vec![4, 6]));
    assert_eq!(shapes["model.scale"], (Dtype::F32, vec![]));
}

#[test]
fn tensor_bytes_are_the_stored_bytes() {
    let root = tempfile::tempdir().unwrap();
    let m = model(7);
    let dir = write_state(&root.path().join("m"), &m, "m");
    let state = StateFiles::open(&dir).unwrap();
    for (name, t) in &m {
        assert_eq!(state.tensor_bytes(name).unwrap(), t.bytes().as_slice(), "{name}");
    }
    assert!(format!("{:#}", state.tensor_bytes("nope").unwrap_err()).contains("no tensor nope"));
}

/// Runs `combine` on `terms`, expects an error containing every `needle`, and checks that
/// no output or temporary folder was left.
#[track_caller]
fn expect_error(root: &Path, terms: &[(f64, PathBuf)], needles: &[&str]) {
    let out = root.join("out");
    let err = combine(terms, &out, &CombineOptions::default()).unwrap_err();
    let msg = format!("{err:#}");
    for needle in needles {
        assert!(msg.contains(needle), "error {msg:?} lacks {needle:?}");
    }
    assert_no_output(root, "out");
}

#[test]
fn shape_mismatch_names_tensor_files_and_shapes() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let mut m = model(3);
    m.insert("model.layers.0.mlp.weight".into(), T::float(Dtype::BF16, &[6, 4], values(9, 24)));
    write_state(&terms[2].1, &m, "m2");
    let f0 = terms[0].1.join("model.safetensors");
    let f2 = terms[2].1.join("model.safetensors");
    expect_error(
        root.path(),
        &terms,
        &["model.layers.0.mlp.weight", "[4, 6]", "[6, 4]", &f0.display().to_string(), &f2.display().to_string()],
    );
}

#[test]
fn dtype_mismatch_names_both_dtypes() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let mut m = model(2);
    m.insert("model.norm.weight".into(), T::float(Dtype::F16, &[7], values(9, 7)));
    write_state(&terms[1].1, &m, "m1");
    expect_error(root.path(), &terms, &["model.norm.weight", "F32 [7]", "F16 [7]"]);
}

#[test]
fn missing_tensor_is_named_either_way() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let mut m = model(2);
    m.remove("model.norm.weight");
    write_state(&terms[1].1, &m, "m1");
    expect_error(root.path(), &terms, &["tensor model.norm.weight", "missing from", &terms[1].1.display().to_string()]);
    // An extra tensor in a later term is as much an error.
    let mut m = model(2);
    m.insert("extra.weight".into(), T::float(Dtype::F32, &[2], vec![1.0, 2.0]));
    write_state(&terms[1].1, &m, "m1");
    expect_error(root.path(), &terms, &["tensor extra.weight", "missing from", &terms[0].1.display().to_string()]);
}

#[test]
fn differing_integer_buffers_are_an_error() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let mut m = model(3);
    m.insert("model.position_ids".into(), T::i64s(&[1, 4], &[0, 1, 2, 4]));
    write_state(&terms[2].1, &m, "m2");
    expect_error(root.path(), &terms, &["model.position_ids", "I64", "not combined arithmetically"]);
}

#[test]
fn truncated_file_is_named() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let file = terms[2].1.join("model.safetensors");
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 10).unwrap();
    expect_error(root.path(), &terms, &["term 3", &file.display().to_string(), "truncated or corrupt"]);
    // Garbage header.
    std::fs::write(&file, b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!").unwrap();
    expect_error(root.path(), &terms, &[&file.display().to_string(), "not a valid safetensors file"]);
}

#[test]
fn non_finite_coefficients_are_rejected() {
    let root = tempfile::tempdir().unwrap();
    let mut terms = three_states(root.path(), false);
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        terms[1].0 = bad;
        expect_error(root.path(), &terms, &["term 2", "coefficient", "not a finite number"]);
    }
    expect_error(root.path(), &[], &["no terms"]);
}

#[test]
fn folder_errors_say_what_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let mut terms = three_states(root.path(), false);
    let good = terms[1].1.clone();

    // Pickle-only folder.
    let pickle = root.path().join("pickle");
    write_side_files(&pickle, "p");
    std::fs::write(pickle.join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
    terms[1].1 = pickle.clone();
    expect_error(
        root.path(),
        &terms,
        &["pytorch_model.bin", "pickle checkpoints are never loaded; convert to safetensors"],
    );

    // Missing folder, missing config.json.
    terms[1].1 = root.path().join("nowhere");
    expect_error(root.path(), &terms, &["nowhere", "does not exist"]);
    let noconfig = root.path().join("noconfig");
    std::fs::create_dir(&noconfig).unwrap();
    write_safetensors(&noconfig.join("model.safetensors"), &model(2));
    terms[1].1 = noconfig;
    expect_error(root.path(), &terms, &["no config.json", "noconfig"]);

    // Shards without an index.
    let noindex = root.path().join("noindex");
    write_sharded_state(&noindex, &model(2), "x");
    std::fs::remove_file(noindex.join("model.safetensors.index.json")).unwrap();
    terms[1].1 = noindex;
    expect_error(root.path(), &terms, &["model-00001-of-00002.safetensors", "neither model.safetensors"]);

    // Index naming a shard that does not exist.
    let badindex = root.path().join("badindex");
    write_sharded_state(&badindex, &model(2), "x");
    std::fs::remove_file(badindex.join("model-00002-of-00002.safetensors")).unwrap();
    terms[1].1 = badindex;
    expect_error(root.path(), &terms, &["names shard model-00002-of-00002.safetensors which does not exist"]);

    // Index placing a tensor in the wrong shard.
    let moved = root.path().join("moved");
    write_sharded_state(&moved, &model(2), "x");
    let index_path = moved.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index_path).unwrap();
    let text = text.replacen("\"lm_head.weight\": \"model-00001", "\"lm_head.weight\": \"model-00002", 1);
    std::fs::write(&index_path, text).unwrap();
    terms[1].1 = moved;
    expect_error(
        root.path(),
        &terms,
        &["tensor lm_head.weight", "model-00001-of-00002.safetensors", "places it in model-00002"],
    );

    terms[1].1 = good;
    combine(&terms, &root.path().join("out"), &CombineOptions::default()).unwrap();
}

#[test]
fn existing_output_is_replaced_only_with_overwrite() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let out = root.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("old.txt"), b"keep me").unwrap();
    let err = combine(&terms, &out, &CombineOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("already exists"), "{err:#}");
    assert_eq!(listing(&out), ["old.txt"]);

    // A failing combine with overwrite leaves the old folder alone.
    let bad = vec![(f64::NAN, terms[0].1.clone())];
    combine(&bad, &out, &CombineOptions { overwrite: true, ..Default::default() }).unwrap_err();
    assert_eq!(listing(&out), ["old.txt"]);

    combine(&terms, &out, &CombineOptions { overwrite: true, ..Default::default() }).unwrap();
    check_output(&out);
    assert!(!out.join("old.txt").exists());
    let names = listing(root.path());
    assert!(!names.iter().any(|n| n.starts_with('.')), "{names:?}");

    // An input cannot be the output.
    let err = combine(&terms, &terms[0].1, &CombineOptions { overwrite: true, ..Default::default() }).unwrap_err();
    assert!(format!("{err:#}").contains("is also an input term"), "{err:#}");
    assert!(terms[0].1.join("model.safetensors").exists());
}

#[test]
fn extra_metadata_is_written_sorted() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let out = root.path().join("out");
    let mut opts = CombineOptions::default();
    opts.metadata.insert("zeta".into(), "1".into());
    opts.metadata.insert("alpha".into(), "x".into());
    combine(&terms, &out, &opts).unwrap();
    let buf = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::read_metadata(&buf).unwrap().1;
    let meta = st.metadata().clone().unwrap();
    assert_eq!(meta.len(), 3);
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["alpha"], "x");
    let text = String::from_utf8_lossy(&buf[8..200]).into_owned();
    assert!(text.starts_with(r#"{"__metadata__":{"alpha":"x","format":"pt","zeta":"1"}"#), "{text}");
}

#[test]
fn combine_without_sync_writes_the_same_bytes() {
    let root = tempfile::tempdir().unwrap();
    let terms = three_states(root.path(), false);
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    combine(&terms, &a, &CombineOptions::default()).unwrap();
    combine(&terms, &b, &CombineOptions { sync: false, ..Default::default() }).unwrap();
    check_output(&b);
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap()
    );
}
