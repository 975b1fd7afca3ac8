//! `hub::resolve` against caches in python's layout and against a fake hub on 127.0.0.1: cache
//! hits need no network, offline misses explain what to run, unreachable hubs fail fast naming
//! the URL, and downloads land in python's layout, pickles untouched, resumable after a cut.

mod fake_hub;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fake_hub::{python_cache, sha256_hex, sharded_repo, FakeHub, COMMIT};
use hub::{resolve, HubModel, ResolveOptions};

const ID: &str = "acme/tiny-llama";

/// An endpoint nothing listens on: a port the OS just handed out and we closed again.
fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

/// Options that never read the environment. `endpoint` defaults to a dead one, so any test that
/// expects a cache hit would fail if resolve touched the network.
fn opts(cache: &Path, offline: bool, endpoint: Option<&str>) -> ResolveOptions {
    ResolveOptions {
        cache_dir: Some(cache.to_path_buf()),
        offline: Some(offline),
        token: None,
        progress: false,
        endpoint: Some(endpoint.map(str::to_string).unwrap_or_else(dead_endpoint)),
    }
}

fn err_text(r: anyhow::Result<PathBuf>) -> String {
    format!("{:#}", r.expect_err("resolve should fail"))
}

/// ureq 2 ignores NO_PROXY, so with a proxy configured the loopback server is unreachable.
fn proxy_set() -> bool {
    ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

fn weights_only(files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files.iter().filter(|(k, _)| !k.starts_with("pytorch_model")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn python_cache_hit_for_branch_default_and_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let snap = python_cache(tmp.path(), ID, COMMIT, &weights_only(&sharded_repo()), &["main"]);
    let o = opts(tmp.path(), false, None);
    for rev in [None, Some("main"), Some(COMMIT)] {
        let dir = resolve(ID, rev, &o).unwrap_or_else(|e| panic!("revision {rev:?}: {e:#}"));
        assert_eq!(dir, snap, "revision {rev:?}");
    }
    let model = HubModel { id: ID.into(), revision: None };
    let dir = model.resolve(&o).unwrap();
    assert!(
        std::fs::symlink_metadata(dir.join("config.json")).unwrap().file_type().is_symlink(),
        "fixture is python's layout"
    );
    assert_eq!(
        std::fs::read(dir.join("config.json")).unwrap(),
        sharded_repo()["config.json"],
        "read through the symlink"
    );
    // A branch the cache never saw is a miss, not a silent fallback to main.
    let e = err_text(resolve(ID, Some("dev"), &opts(tmp.path(), true, None)));
    assert!(e.contains("revision dev") && e.contains("refs/dev"), "{e}");
}

#[test]
fn single_file_checkpoint_is_a_hit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = BTreeMap::new();
    files.insert("config.json".to_string(), b"{}".to_vec());
    files.insert("tokenizer.json".to_string(), b"{}".to_vec());
    files.insert("model.safetensors".to_string(), vec![1, 2, 3]);
    let snap = python_cache(tmp.path(), "gpt2", COMMIT, &files, &["main"]);
    assert_eq!(resolve("gpt2", None, &opts(tmp.path(), true, None)).unwrap(), snap);
}

#[test]
fn missing_shard_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let files = weights_only(&sharded_repo());
    let snap = python_cache(tmp.path(), ID, COMMIT, &files, &["main"]);
    // Delete the blob behind shard 2: its snapshot symlink now dangles, as after a pruned blob.
    let blob = sha256_hex(&files["model-00002-of-00002.safetensors"]);
    std::fs::remove_file(tmp.path().join("models--acme--tiny-llama/blobs").join(blob)).unwrap();
    assert!(std::fs::symlink_metadata(snap.join("model-00002-of-00002.safetensors")).is_ok());
    for rev in [None, Some(COMMIT)] {
        let e = err_text(resolve(ID, rev, &opts(tmp.path(), true, None)));
        assert!(e.contains("missing model-00002-of-00002.safetensors"), "{e}");
        assert!(!e.contains("model-00001-of-00002.safetensors"), "shard 1 is present: {e}");
    }
    assert_eq!(hub::missing_files(&snap).unwrap(), ["model-00002-of-00002.safetensors"]);
}

#[test]
fn offline_miss_says_what_to_run() {
    let tmp = tempfile::tempdir().unwrap();
    let e = err_text(resolve(ID, None, &opts(tmp.path(), true, None)));
    for part in [
        "hub model acme/tiny-llama (revision main)",
        &tmp.path().join("models--acme--tiny-llama").display().to_string(),
        "HF_HUB_OFFLINE",
        "huggingface-cli download acme/tiny-llama --revision main",
        "`path`",
    ] {
        assert!(e.contains(part), "error should contain {part:?}: {e}");
    }
    let e = err_text(resolve(ID, Some("v2"), &opts(tmp.path(), true, None)));
    assert!(e.contains("huggingface-cli download acme/tiny-llama --revision v2"), "{e}");
}

#[test]
fn unreachable_hub_fails_fast_naming_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let endpoint = dead_endpoint();
    let t = Instant::now();
    let e = err_text(resolve(ID, None, &opts(tmp.path(), false, Some(&endpoint))));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    let url = format!("{endpoint}/acme/tiny-llama/resolve/main/config.json");
    for part in
        ["downloading config.json of hub model acme/tiny-llama (revision main)", &url, "HF_HUB_OFFLINE=1", "`path`"]
    {
        assert!(e.contains(part), "error should contain {part:?}: {e}");
    }
    // Nothing that looks like a snapshot was left behind.
    assert!(!tmp.path().join("models--acme--tiny-llama/snapshots").exists());
}

#[test]
fn download_lands_in_python_layout_then_hits_cache_offline() {
    if proxy_set() {
        println!("SKIPPED: an HTTP proxy is configured and ureq 2 would send loopback requests to it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = sharded_repo();
    let mut server = FakeHub::start(ID, files.clone(), None);
    let dir = resolve(ID, None, &opts(tmp.path(), false, Some(&server.endpoint))).unwrap();

    let repo = tmp.path().join("models--acme--tiny-llama");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    assert_eq!(std::fs::read_to_string(repo.join("refs/main")).unwrap().trim(), COMMIT);
    for name in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let link = dir.join(name);
        let target = std::fs::read_link(&link).unwrap_or_else(|e| panic!("{name} should be a symlink: {e}"));
        assert_eq!(target, Path::new("../../blobs").join(sha256_hex(&files[name])), "{name} links to its blob by etag");
        assert_eq!(std::fs::read(&link).unwrap(), files[name], "{name} content");
    }
    let blobs: Vec<String> = std::fs::read_dir(repo.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!blobs.iter().any(|b| b.ends_with(".part")), "no partial downloads left: {blobs:?}");

    let paths = server.paths();
    assert!(
        paths
            .iter()
            .all(|p| p.ends_with(".json") || p.ends_with(".safetensors") || p.ends_with("/chat_template.jinja")),
        "only JSON, safetensors and the chat template requested: {paths:?}"
    );
    assert!(!paths.iter().any(|p| p.contains("pytorch_model")), "pickles never requested: {paths:?}");
    assert!(paths.iter().any(|p| p.ends_with("/generation_config.json")), "optional file was tried: {paths:?}");
    assert!(!dir.join("generation_config.json").exists(), "its 404 is not an error");

    server.stop();
    let again = resolve(ID, Some("main"), &opts(tmp.path(), false, Some(&server.endpoint))).unwrap();
    assert_eq!(again, dir, "second resolve is a cache hit with the server gone");
}

#[test]
fn commit_revision_download_writes_no_refs() {
    if proxy_set() {
        println!("SKIPPED: an HTTP proxy is configured and ureq 2 would send loopback requests to it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeHub::start(ID, sharded_repo(), None);
    let dir = resolve(ID, Some(COMMIT), &opts(tmp.path(), false, Some(&server.endpoint))).unwrap();
    let repo = tmp.path().join("models--acme--tiny-llama");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    assert!(server.paths().iter().all(|p| p.contains(&format!("/resolve/{COMMIT}/"))), "{:?}", server.paths());
    let refs: Vec<_> =
        std::fs::read_dir(repo.join("refs")).map(|d| d.map(|e| e.unwrap().file_name()).collect()).unwrap_or_default();
    assert!(refs.is_empty(), "python writes no ref for a commit revision, found {refs:?}");
}

#[test]
fn partial_cache_downloads_only_what_is_missing() {
    if proxy_set() {
        println!("SKIPPED: an HTTP proxy is configured and ureq 2 would send loopback requests to it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut present = weights_only(&sharded_repo());
    present.remove("model-00002-of-00002.safetensors");
    python_cache(tmp.path(), ID, COMMIT, &present, &["main"]);
    let server = FakeHub::start(ID, sharded_repo(), None);
    resolve(ID, None, &opts(tmp.path(), false, Some(&server.endpoint))).unwrap();
    let paths = server.paths();
    let fetched: Vec<&str> = paths.iter().map(|p| p.rsplit('/').next().unwrap()).collect();
    // Each download is a `bytes=0-0` metadata probe then the body; the optional files absent
    // from the snapshot are probed too (generation_config, special_tokens_map and the chat
    // template files 404).
    let mut distinct = fetched.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        [
            "generation_config.json",
            "special_tokens_map.json",
            "chat_template.jinja",
            "chat_template.json",
            "model-00002-of-00002.safetensors"
        ],
        "{paths:?}"
    );
}

#[test]
fn killed_download_is_never_complete_and_resumes() {
    if proxy_set() {
        println!("SKIPPED: an HTTP proxy is configured and ureq 2 would send loopback requests to it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files = sharded_repo();
    let server = FakeHub::start(ID, files.clone(), None);
    server.truncate.store(true, Ordering::SeqCst);
    let o = opts(tmp.path(), false, Some(&server.endpoint));
    let e = err_text(resolve(ID, None, &o));
    assert!(e.contains("model-00001-of-00002.safetensors") && e.contains(&server.endpoint), "{e}");

    let repo = tmp.path().join("models--acme--tiny-llama");
    let part = repo.join("blobs").join(format!("{}.part", sha256_hex(&files["model-00001-of-00002.safetensors"])));
    let part_len = std::fs::metadata(&part).unwrap_or_else(|e| panic!("{} should exist: {e}", part.display())).len();
    assert!(part_len > 0 && part_len < 5000, "partial length {part_len}");
    assert!(
        !repo.join("snapshots").join(COMMIT).join("model-00001-of-00002.safetensors").exists(),
        "no snapshot entry for a cut download"
    );
    let e = err_text(resolve(ID, None, &opts(tmp.path(), true, None)));
    assert!(e.contains("missing model-00001-of-00002.safetensors"), "offline sees it as missing: {e}");

    server.truncate.store(false, Ordering::SeqCst);
    let n_before = server.log.lock().unwrap().len();
    let dir = resolve(ID, None, &o).unwrap();
    assert_eq!(
        std::fs::read(dir.join("model-00001-of-00002.safetensors")).unwrap(),
        files["model-00001-of-00002.safetensors"]
    );
    let resumed = server.log.lock().unwrap()[n_before..].iter().any(|s| {
        s.path.ends_with("model-00001-of-00002.safetensors")
            && s.range.as_deref() == Some(&*format!("bytes={part_len}-"))
    });
    assert!(resumed, "the retry continues from the .part file: {:?}", &server.log.lock().unwrap()[n_before..]);
}

#[test]
fn pickle_only_repo_is_refused() {
    if proxy_set() {
        println!("SKIPPED: an HTTP proxy is configured and ureq 2 would send loopback requests to it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let files: BTreeMap<String, Vec<u8>> =
        sharded_repo().into_iter().filter(|(k, _)| !k.contains("safetensors")).collect();
    let server = FakeHub::start(ID, files, None);
    let e = err_text(resolve(ID, None, &opts(tmp.path(), false, Some(&server.endpoint))));
    assert!(
        e.contains("neither model.safetensors.index.json nor model.safetensors") && e.contains("never downloaded"),
        "{e}"
    );
    assert!(!server.paths().iter().any(|p| p.contains("pytorch_model")), "{:?}", server.paths());
}

#[test]
fn gated_repo_sends_token_and_explains_401() {
    if proxy_set() {
        println!("SKIPPED: an HTTP proxy is configured and ureq 2 would send loopback requests to it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = FakeHub::start(ID, sharded_repo(), Some(401));
    let mut o = opts(tmp.path(), false, Some(&server.endpoint));
    o.token = Some("hf_secret".into());
    let e = err_text(resolve(ID, None, &o));
    assert!(e.contains("config.json") && e.contains("HF_TOKEN") && e.contains("401"), "{e}");
    let seen = server.log.lock().unwrap().clone();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer hf_secret"));
}
