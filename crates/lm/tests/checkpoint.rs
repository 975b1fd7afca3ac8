//! Writing checkpoint folders (issue 18): replacing one leaves the complete new checkpoint and
//! nothing else; a write that fails leaves the old one as it was. (The steps of the swap
//! itself, and a failing rename, are tested inside `lm::checkpoint` with injected renames.)

use candle_core::Device;
use lm::checkpoint::{is_complete, save, write_atomically};
use lm::config::Arch;
use lm::testing::{tiny_config, write_tiny_checkpoint};
use lm::CausalLm;
use std::collections::BTreeMap;
use std::path::Path;

fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn weights(m: &CausalLm) -> Vec<f32> {
    m.state().values().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect()
}

#[test]
fn overwriting_a_checkpoint_leaves_the_new_one_and_no_temporary_siblings() {
    let root = tempfile::tempdir().unwrap();
    let ck = root.path().join("ck");
    write_tiny_checkpoint(&ck, tiny_config(Arch::Llama), 1).unwrap();
    let tokenizer = std::fs::read(ck.join("tokenizer.json")).unwrap();
    // a different architecture and seed, tokenizer files copied from the checkpoint itself
    let new = CausalLm::init(tiny_config(Arch::Qwen2), 2, &Device::Cpu, false).unwrap();
    let tok_src = root.path().join("tok");
    std::fs::create_dir(&tok_src).unwrap();
    std::fs::write(tok_src.join("tokenizer.json"), &tokenizer).unwrap();
    save(&new, &ck, Some(&tok_src)).unwrap();
    assert!(is_complete(&ck));
    let loaded = CausalLm::load(&ck, &Device::Cpu, false).unwrap();
    assert_eq!(loaded.arch, Arch::Qwen2);
    assert_eq!(weights(&loaded), weights(&new));
    assert_eq!(std::fs::read(ck.join("tokenizer.json")).unwrap(), tokenizer);
    assert_eq!(listing(root.path()), ["ck", "tok"], "temporary folders left behind");
    // and once more, without tokenizer files: the old folder's files do not survive
    save(&new, &ck, None).unwrap();
    assert_eq!(listing(&ck), ["config.json", "model.safetensors"]);
    assert_eq!(listing(root.path()), ["ck", "tok"]);
}

#[test]
fn a_failed_write_leaves_the_old_checkpoint_untouched() {
    let root = tempfile::tempdir().unwrap();
    let ck = root.path().join("ck");
    write_tiny_checkpoint(&ck, tiny_config(Arch::Llama), 1).unwrap();
    let before = snapshot(&ck);
    let new = CausalLm::init(tiny_config(Arch::Olmo2), 2, &Device::Cpu, false).unwrap();
    // the writer fails after writing a complete-looking checkpoint into its folder
    let e = write_atomically(&ck, |tmp| {
        save(&new, &tmp.join("x"), None)?;
        for f in ["config.json", "model.safetensors"] {
            std::fs::rename(tmp.join("x").join(f), tmp.join(f))?;
        }
        std::fs::remove_dir(tmp.join("x"))?;
        assert_eq!(snapshot(&ck), before, "the destination changed while the new checkpoint was written");
        anyhow::bail!("simulated writer failure")
    })
    .unwrap_err();
    assert!(format!("{e:#}").contains("simulated writer failure"), "{e:#}");
    assert_eq!(snapshot(&ck), before, "the old checkpoint changed");
    assert_eq!(listing(root.path()), ["ck"], "temporary folders left behind");
    CausalLm::load(&ck, &Device::Cpu, false).unwrap();
    // a destination that is a file is not replaced
    let file = root.path().join("file");
    std::fs::write(&file, "keep").unwrap();
    let e = format!("{:#}", save(&new, &file, None).unwrap_err());
    assert!(e.contains("not a folder"), "{e}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    assert_eq!(listing(root.path()), ["ck", "file"]);
}
