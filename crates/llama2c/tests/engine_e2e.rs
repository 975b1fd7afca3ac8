//! End to end: the imported stories260K behaves like the original in our engine — greedy
//! generation from BOS writes TinyStories text, and the first story scores a low NLL.

use std::path::PathBuf;

fn data_dir() -> PathBuf {
    match std::env::var_os("UNLEARN_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

#[test]
fn imported_stories260k_generates_and_scores() {
    let data = data_dir();
    let model_bin = data.join("models/stories260K/stories260K.bin");
    let tok_bin = data.join("models/stories260K/tok512.bin");
    let corpus = data.join("corpora/tinystories-prefix.txt");
    if !model_bin.is_file() || !tok_bin.is_file() || !corpus.is_file() {
        println!("SKIPPED: stories260K or tinystories-prefix.txt missing under {}", data.display());
        // Outside CI a missing data file skips; with the data directory set (CI) it fails, so a
        // broken data path never passes green.
        assert!(
            std::env::var_os("UNLEARN_DATA_DIR").is_none(),
            "the reference data above is missing although UNLEARN_DATA_DIR is set"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("stories260K");
    llama2c::import(&model_bin, &tok_bin, &out).unwrap();
    let device = candle_core::Device::Cpu;
    let model = lm::CausalLm::load(&out, &device, false).unwrap();
    let tok = lm::Tok::load(&out, &model.cfg).unwrap();
    let mut s = lm::score::Scorer::new(&model, &tok);
    s.add_bos = true;
    let text = s.generate_until(&[(String::new(), vec![], 64)]).unwrap().remove(0);
    println!("greedy from BOS: {text:?}");
    assert!(text.starts_with("Once upon a time"), "{text:?}");
    let first_story = std::fs::read_to_string(&corpus).unwrap().split("\n\n").next().unwrap().to_string();
    let lp = s.token_logprobs(std::slice::from_ref(&first_story)).unwrap().remove(0);
    let nll = -lp.iter().map(|&x| x as f64).sum::<f64>() / lp.len() as f64;
    println!("first story: {} tokens, mean NLL {nll:.4}", lp.len());
    // A 260K-parameter model on its own training distribution: well below uniform (ln 512 = 6.24).
    assert!(nll < 2.5, "mean NLL {nll}");
    // The numpy reference forward (llama2.c layout) gave 0.111 nats/token on this sentence.
    let short = s.token_logprobs(&["Once upon a time, there was a little girl".to_string()]).unwrap().remove(0);
    let short_nll = -short.iter().map(|&x| x as f64).sum::<f64>() / short.len() as f64;
    println!("short sentence NLL {short_nll:.4}");
    assert!((short_nll - 0.111).abs() < 0.01, "short sentence NLL {short_nll} vs numpy reference 0.111");
}
