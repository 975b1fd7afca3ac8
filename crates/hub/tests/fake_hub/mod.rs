//! Test fixtures: a cache folder in `huggingface_hub`'s layout (snapshots as relative symlinks
//! into blobs/, as python writes them), and a tiny HTTP server on 127.0.0.1 that answers
//! `/{id}/resolve/{revision}/{file}` the way huggingface.co does for hf-hub: `Range` requests,
//! `Content-Range`, `ETag` and `X-Repo-Commit` headers, 404 for absent files.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A sharded checkpoint's files (contents are arbitrary; resolution never parses weights), plus
/// pickles that must never be fetched.
pub fn sharded_repo() -> BTreeMap<String, Vec<u8>> {
    let index = r#"{"metadata":{"total_size":24},"weight_map":{
        "model.embed_tokens.weight":"model-00001-of-00002.safetensors",
        "model.norm.weight":"model-00002-of-00002.safetensors",
        "lm_head.weight":"model-00002-of-00002.safetensors"}}"#;
    let mut files = BTreeMap::new();
    files.insert("config.json".into(), br#"{"model_type":"llama","hidden_size":8}"#.to_vec());
    files.insert("tokenizer.json".into(), br#"{"version":"1.0","model":{"type":"BPE"}}"#.to_vec());
    files.insert("tokenizer_config.json".into(), br#"{"bos_token":"<s>"}"#.to_vec());
    files.insert("model.safetensors.index.json".into(), index.as_bytes().to_vec());
    files.insert("model-00001-of-00002.safetensors".into(), (0..=255u8).cycle().take(5000).collect());
    files.insert("model-00002-of-00002.safetensors".into(), (0..=255u8).rev().cycle().take(7001).collect());
    files.insert("pytorch_model.bin".into(), b"PICKLE".to_vec());
    files.insert("pytorch_model.bin.index.json".into(), br#"{"weight_map":{"a":"pytorch_model.bin"}}"#.to_vec());
    files
}

/// Lay `files` out under `cache_root` as python does: blobs/{sha256}, snapshots/{commit}/{file}
/// → `../../blobs/{sha256}`, and `refs/{name}` for each ref given. Returns the snapshot folder.
pub fn python_cache(
    cache_root: &Path,
    id: &str,
    commit: &str,
    files: &BTreeMap<String, Vec<u8>>,
    refs: &[&str],
) -> PathBuf {
    let repo = cache_root.join(format!("models--{}", id.replace('/', "--")));
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snap).unwrap();
    for (name, bytes) in files {
        let sha = sha256_hex(bytes);
        std::fs::write(repo.join("blobs").join(&sha), bytes).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{sha}"), snap.join(name)).unwrap();
    }
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    for r in refs {
        std::fs::write(repo.join("refs").join(r), commit).unwrap();
    }
    snap
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

pub struct FakeHub {
    pub endpoint: String,
    pub log: Arc<Mutex<Vec<Seen>>>,
    /// While set, bodies of `*.safetensors` files are cut off halfway (the connection closes
    /// before `Content-Length` bytes), as when a download is killed.
    pub truncate: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    /// Serve `files` of repository `id` at commit [`COMMIT`], for revisions `main` and the commit.
    /// `status`: answer every request with this error status instead.
    pub fn start(id: &str, files: BTreeMap<String, Vec<u8>>, status: Option<u16>) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let truncate = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let prefix = format!("/{id}/resolve/");
        let (log2, truncate2, stop2) = (log.clone(), truncate.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let _ = serve(stream, &prefix, &files, status, &log2, truncate2.load(Ordering::SeqCst));
            }
        });
        FakeHub { endpoint: format!("http://{addr}"), log, truncate, stop, addr, thread: Some(thread) }
    }

    pub fn paths(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(|s| s.path.clone()).collect()
    }

    /// Stop listening; the port is closed when this returns.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    stream: TcpStream,
    prefix: &str,
    files: &BTreeMap<String, Vec<u8>>,
    status: Option<u16>,
    log: &Mutex<Vec<Seen>>,
    truncate: bool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => authorization = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    log.lock().unwrap().push(Seen { path: path.clone(), range: range.clone(), authorization });
    let mut out = stream;

    if let Some(code) = status {
        return write!(out, "HTTP/1.1 {code} Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    let found = path
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('/'))
        .filter(|(rev, _)| *rev == "main" || *rev == COMMIT)
        .and_then(|(_, file)| files.get(file).map(|b| (file, b)));
    let Some((file, bytes)) = found else {
        return write!(
            out,
            "HTTP/1.1 404 Not Found\r\nX-Error-Code: EntryNotFound\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    let len = bytes.len();
    let (start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")).and_then(|r| r.split_once('-')) {
        Some((a, b)) => {
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = if b.is_empty() { len - 1 } else { b.parse::<usize>().unwrap_or(len - 1).min(len - 1) };
            (a, b)
        }
        None => (0, len - 1),
    };
    let body = &bytes[start..=end];
    write!(
        out,
        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{end}/{len}\r\nContent-Length: {}\r\n\
         ETag: \"{}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
        body.len(),
        sha256_hex(bytes)
    )?;
    let cut = truncate && file.ends_with(".safetensors") && body.len() > 1;
    out.write_all(if cut { &body[..body.len() / 2] } else { body })?;
    out.flush()
}
