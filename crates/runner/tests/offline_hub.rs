//! With `HF_HUB_OFFLINE=1`, a hub model that is not complete in the Hugging Face cache can never
//! be had: `validate_models` says so before any work, naming `models[i].hub`. Its own test
//! binary, because it sets environment variables (no other test of this process reads them).

use std::path::Path;

use runner::exec::{validate_models, ExecOptions};
use runner::{parse_sweep, Registry};

#[test]
fn offline_a_hub_model_missing_from_the_cache_is_an_error_naming_the_field() {
    let cache = tempfile::tempdir().unwrap();
    // the only test in this binary: nothing else reads the environment meanwhile
    std::env::set_var("HF_HUB_OFFLINE", "1");
    std::env::set_var("HF_HUB_CACHE", cache.path());
    let text = r#"
name = "hub"
seeds = [0]
metrics = ["truthfulqa_mc1"]
[world]
kind = "finetune"
base_model = "org/llama"
[[models]]
name = "llama"
hub = "org/llama"
"#;
    let sweep = parse_sweep(text, Path::new("configs/hub.toml"), &Registry::DEFAULT).unwrap();
    let msg = format!("{:#}", validate_models(&sweep, &ExecOptions::default()).unwrap_err());
    for f in ["configs/hub.toml", "models[0].hub", "org/llama", "offline", "huggingface-cli download"] {
        assert!(msg.contains(f), "error {msg:?} lacks {f:?}");
    }
    // --smoke needs no real model
    validate_models(&sweep, &ExecOptions { smoke: true, ..ExecOptions::default() }).unwrap();
}
