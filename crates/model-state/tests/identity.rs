//! A single term with coefficient 1 returns its input bit for bit, negative zeros included
//! (MSA with α = β = 0 must return θ_D unchanged).

use std::collections::HashMap;

#[test]
fn one_term_with_coefficient_one_is_the_identity_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("theta");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("config.json"), "{}").unwrap();
    let vals: Vec<f32> = vec![-0.0, 0.0, 1.5, -2.25, f32::MIN_POSITIVE, -1e-30, 3.0e38];
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![vals.len()], &bytes).unwrap();
    let mut map = HashMap::new();
    map.insert("w".to_string(), view);
    safetensors::serialize_to_file(&map, None, &src.join("model.safetensors")).unwrap();
    let out = tmp.path().join("out");
    model_state::combine(&[(1.0, src.clone())], &out, &Default::default()).unwrap();
    let data = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&data).unwrap();
    let got: Vec<u32> =
        st.tensor("w").unwrap().data().chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    let want: Vec<u32> = vals.iter().map(|v| v.to_bits()).collect();
    assert_eq!(got, want, "identity combine changed some bits (negative zero?)");
}
