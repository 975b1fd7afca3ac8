//! `evals::zlib::compressed_len` against Python's `len(zlib.compress(data))` on many inputs:
//! corpus excerpts of 1 B to 300 KB (window slides, block splits) and synthetic bytes (random
//! bytes give stored blocks, runs give long matches). SKIPPED without python3.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use evals::zlib::compressed_len;

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

fn inputs() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![vec![], b"a".to_vec(), b"ab".to_vec(), b"abc".to_vec()];
    let mut seed = 7u64;
    let dir = std::env::var_os("UNLEARN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
        .join("corpora");
    for name in ["tinyshakespeare.txt", "tinystories-prefix.txt", "wikitext2-test.txt", "wikitext2-valid.txt"] {
        let Ok(text) = std::fs::read(dir.join(name)) else {
            continue;
        };
        for &n in &[5usize, 40, 120, 700, 3000, 20_000, 70_000, 300_000] {
            for _ in 0..3 {
                let n = n.min(text.len());
                let start = (lcg(&mut seed) as usize) % (text.len() - n + 1);
                out.push(text[start..start + n].to_vec());
            }
        }
    }
    for &(n, alphabet) in &[(100usize, 256u64), (5000, 256), (70_000, 256), (2000, 4), (100_000, 3), (300_000, 20)] {
        out.push((0..n).map(|_| (lcg(&mut seed) % alphabet) as u8).collect());
    }
    out.push(vec![b'x'; 100_000]);
    out.push(b"Harry Potter ".repeat(5000));
    // Long runs mixed with noise: matches across the window slide, lengths 258.
    let mut mixed = vec![];
    while mixed.len() < 200_000 {
        let run = (lcg(&mut seed) % 600) as usize;
        let b = (lcg(&mut seed) % 256) as u8;
        mixed.extend(std::iter::repeat_n(b, run));
        mixed.extend((0..(lcg(&mut seed) % 50)).map(|_| (lcg(&mut seed) % 256) as u8));
    }
    out.push(mixed);
    out
}

#[test]
fn zlib_len_matches_python_zlib() {
    let inputs = inputs();
    let hex: Vec<String> = inputs.iter().map(|b| b.iter().map(|x| format!("{x:02x}")).collect()).collect();
    let child = Command::new("python3")
        .args([
            "-c",
            "import sys, zlib; print(' '.join(str(len(zlib.compress(bytes.fromhex(l.strip())))) for l in sys.stdin))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED: python3 not found");
        return;
    };
    let mut stdin = child.stdin.take().unwrap();
    let body = hex.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(body.as_bytes()).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "python3 failed");
    let expected: Vec<usize> =
        String::from_utf8(out.stdout).unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(expected.len(), inputs.len());
    let mut bad = vec![];
    for (i, (data, &e)) in inputs.iter().zip(&expected).enumerate() {
        let got = compressed_len(data);
        if got != e {
            bad.push(format!("input {i} ({} bytes): {got} vs python {e}", data.len()));
        }
    }
    eprintln!("{} inputs, {} bytes in all", inputs.len(), inputs.iter().map(Vec::len).sum::<usize>());
    assert!(bad.is_empty(), "{} of {} differ:\n{}", bad.len(), inputs.len(), bad.join("\n"));
}
