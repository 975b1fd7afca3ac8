//! llama2.c's `tok512.bin` (Karpathy, llama2.c `tokenizer.py` export of a sentencepiece BPE model)
//! to a Hugging Face `tokenizer.json` in the Llama-2 layout.
//!
//! File format: i32 `max_token_length`, then per token `f32 score, i32 len, len bytes`, little endian,
//! to the end of the file. The export replaced sentencepiece's "▁" by a plain space in every piece
//! and wrote BOS/EOS as "\n<s>\n" / "\n</s>\n"; byte-fallback pieces are spelled "<0xXX>".
//!
//! llama2.c's `encode` (run.c): prepend the piece " " when the text is non-empty (dummy prefix),
//! look every UTF-8 code point up as a piece (else one byte token per byte), then repeatedly merge
//! the adjacent pair whose concatenation is a piece with the highest score (leftmost on ties).
//! The Hugging Face equivalent, as `transformers`' `LlamaConverter` builds it:
//! - normalizer: prepend "▁" (only to non-empty text), replace " " by "▁" (pieces get "▁" back);
//! - no pre-tokenizer: the whole text is one BPE word;
//! - BPE with `byte_fallback`, merges = every split (l, r) of every piece m with l, r pieces,
//!   ranked by m's score, highest first (`SentencePieceExtractor`), so BPE's lowest-rank-first,
//!   leftmost-on-ties rule is llama2.c's highest-score-first rule;
//! - decoder: "▁" -> " ", byte fallback, fuse, strip one leading space;
//! - no post-processor: callers add BOS themselves.
//!
//! Known differences, by construction: the literal strings `<unk>`, `<s>`, `</s>` in a text become
//! the special ids (Hugging Face extracts added tokens first) where llama2.c spells them out, and a
//! literal "▁" in a text acts as a space. [`llama2c_merge_ambiguities`] lists the pieces for which
//! the two tie rules could disagree (none for stories260K's tok512.bin).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokenizers::Tokenizer;

/// sentencepiece's word-boundary mark.
const SPACE_MARK: char = '\u{2581}';
/// The specials of a sentencepiece Llama vocabulary, as Hugging Face spells them.
const SPECIALS: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// A parsed llama2.c tokenizer file.
#[derive(Debug, Clone, PartialEq)]
pub struct Llama2cVocab {
    /// Longest piece in bytes, as stored in the header.
    pub max_token_length: u32,
    /// Raw piece bytes, by id (spaces as plain spaces, BOS as "\n<s>\n").
    pub pieces: Vec<Vec<u8>>,
    /// Merge scores, by id: higher merges first.
    pub scores: Vec<f32>,
}

/// Reads a llama2.c tokenizer file (`tok512.bin`, `tokenizer.bin`); the token count is read to the end of the file.
pub fn read_tok512(path: &Path) -> Result<Llama2cVocab> {
    let bytes = std::fs::read(path).with_context(|| format!("reading llama2.c tokenizer {}", path.display()))?;
    parse_tok512(&bytes).with_context(|| format!("parsing llama2.c tokenizer {}", path.display()))
}

fn parse_tok512(bytes: &[u8]) -> Result<Llama2cVocab> {
    let word = |at: usize| -> Option<[u8; 4]> { bytes.get(at..at + 4).and_then(|s| s.try_into().ok()) };
    let Some(head) = word(0) else {
        bail!("file is {} bytes, shorter than the 4-byte max_token_length header", bytes.len());
    };
    let max_len = i32::from_le_bytes(head);
    if max_len <= 0 {
        bail!("max_token_length is {max_len}, expected a positive length");
    }
    let (mut pieces, mut scores) = (Vec::new(), Vec::new());
    let mut at = 4;
    while at < bytes.len() {
        let id = pieces.len();
        let (Some(s), Some(l)) = (word(at), word(at + 4)) else {
            bail!("token {id} at byte {at}: truncated score/length (file is {} bytes)", bytes.len());
        };
        let score = f32::from_le_bytes(s);
        let len = i32::from_le_bytes(l);
        if !score.is_finite() {
            bail!("token {id} at byte {at}: score {score} is not finite");
        }
        if len < 0 || len > max_len {
            bail!("token {id} at byte {at}: length {len} outside 0..={max_len} (max_token_length)");
        }
        let start = at + 8;
        let Some(piece) = bytes.get(start..start + len as usize) else {
            bail!("token {id} at byte {at}: {len} piece bytes run past the end of the file ({} bytes)", bytes.len());
        };
        pieces.push(piece.to_vec());
        scores.push(score);
        at = start + len as usize;
    }
    if pieces.is_empty() {
        bail!("no tokens after the header");
    }
    Ok(Llama2cVocab { max_token_length: max_len as u32, pieces, scores })
}

/// The vocabulary as Hugging Face strings: "▁" for spaces, specials without their newlines.
struct HfVocab {
    /// Piece string by id.
    strings: Vec<String>,
    /// Whether the id is `<unk>`, `<s>` or `</s>`.
    special: Vec<bool>,
    /// Id by piece string.
    ids: HashMap<String, u32>,
}

fn hf_vocab(v: &Llama2cVocab) -> Result<HfVocab> {
    let mut strings = Vec::with_capacity(v.pieces.len());
    let mut special = Vec::with_capacity(v.pieces.len());
    let mut ids = HashMap::new();
    for (id, raw) in v.pieces.iter().enumerate() {
        let s = std::str::from_utf8(raw).with_context(|| format!("token {id}: piece {raw:?} is not UTF-8"))?;
        let trimmed = s.trim_matches('\n');
        let (s, is_special) = if SPECIALS.contains(&trimmed) {
            (trimmed.to_string(), true)
        } else {
            if s.contains(SPACE_MARK) {
                bail!("token {id}: piece {s:?} contains U+2581, which the conversion uses for spaces");
            }
            (s.replace(' ', &SPACE_MARK.to_string()), false)
        };
        if let Some(prev) = ids.insert(s.clone(), id as u32) {
            bail!("tokens {prev} and {id} are both {s:?}");
        }
        strings.push(s);
        special.push(is_special);
    }
    for s in SPECIALS {
        if !ids.contains_key(s) {
            bail!("vocabulary has no {s:?} piece");
        }
    }
    for b in 0..=255u8 {
        let s = byte_piece(b);
        if !ids.contains_key(&s) {
            bail!("vocabulary has no byte-fallback piece {s:?}");
        }
    }
    Ok(HfVocab { strings, special, ids })
}

/// sentencepiece's spelling of a byte-fallback piece (also `tokenizers`' `format!("<{b:#04X}>")`).
fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// One merge candidate: `left + right = merged`.
struct Merge {
    merged: u32,
    left: u32,
    right: u32,
    /// Split point in chars.
    split: usize,
}

/// Every split of every non-special piece into two non-special pieces, ordered as
/// `SentencePieceExtractor` orders them: merged score descending, then merged id, left id, right id.
fn merges(v: &Llama2cVocab, hf: &HfVocab) -> Vec<Merge> {
    let mut out = Vec::new();
    for (m, s) in hf.strings.iter().enumerate() {
        if hf.special[m] {
            continue;
        }
        let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).skip(1).collect();
        for (k, &b) in bounds.iter().enumerate() {
            let (l, r) = (&s[..b], &s[b..]);
            if let (Some(&li), Some(&ri)) = (hf.ids.get(l), hf.ids.get(r)) {
                if !hf.special[li as usize] && !hf.special[ri as usize] {
                    out.push(Merge { merged: m as u32, left: li, right: ri, split: k + 1 });
                }
            }
        }
    }
    // Scores are finite (checked on read); partial_cmp treats -0.0 and 0.0 as equal, as C's `>` does.
    out.sort_by(|a, b| {
        let (sa, sb) = (v.scores[a.merged as usize], v.scores[b.merged as usize]);
        sb.partial_cmp(&sa)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.merged.cmp(&b.merged))
            .then(a.left.cmp(&b.left))
            .then(a.right.cmp(&b.right))
    });
    out
}

/// Pieces for which Hugging Face BPE (lowest merge rank, then leftmost) can merge differently from
/// llama2.c (highest score, then leftmost), as human-readable descriptions; empty means the
/// conversion encodes every text exactly as llama2.c does (up to the known differences in the module docs).
///
/// Two cases: (a) two different mergeable pieces share a score (llama2.c takes the leftmost pair,
/// BPE the lower rank); (b) a piece `m` with splits at `k1` (ranked first) and `k2`, `k1 + k2 = |m|`,
/// `m[k2..] == m[..k1]`: symbols `m[..k2], m[k2..], m[k1..]` offer `m` at two overlapping positions
/// and BPE takes the right one where llama2.c takes the left one.
pub fn llama2c_merge_ambiguities(v: &Llama2cVocab) -> Result<Vec<String>> {
    let hf = hf_vocab(v)?;
    let merges = merges(v, &hf);
    let mut out = Vec::new();
    // (a) equal scores across different merged pieces.
    let mut by_score: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for m in &merges {
        let bits = (v.scores[m.merged as usize] + 0.0).to_bits(); // +0.0 folds -0.0 into 0.0
        let ids = by_score.entry(bits).or_default();
        if !ids.contains(&m.merged) {
            ids.push(m.merged);
        }
    }
    for (bits, ids) in &by_score {
        if ids.len() > 1 {
            let names: Vec<&str> = ids.iter().map(|&i| hf.strings[i as usize].as_str()).collect();
            out.push(format!("pieces {names:?} (ids {ids:?}) share score {}", f32::from_bits(*bits)));
        }
    }
    // (b) overlapping splits of one piece.
    for (rank1, a) in merges.iter().enumerate() {
        for b in merges.iter().skip(rank1 + 1).filter(|b| b.merged == a.merged) {
            let chars: Vec<char> = hf.strings[a.merged as usize].chars().collect();
            let (k1, k2) = (a.split, b.split);
            if k1 + k2 == chars.len() && chars[k2..] == chars[..k1] {
                out.push(format!(
                    "piece {:?} (id {}): splits at {k1} and {k2} overlap; BPE prefers the split at {k1}, llama2.c the leftmost pair",
                    hf.strings[a.merged as usize], a.merged
                ));
            }
        }
    }
    Ok(out)
}

/// The Llama-2-style `tokenizer.json` for a llama2.c tokenizer file, as JSON.
pub fn llama2c_tokenizer_json(tok_bin: &Path) -> Result<Value> {
    let v = read_tok512(tok_bin)?;
    let hf = hf_vocab(&v).with_context(|| format!("converting llama2.c tokenizer {}", tok_bin.display()))?;
    let merges = merges(&v, &hf);
    let vocab: serde_json::Map<String, Value> =
        hf.strings.iter().enumerate().map(|(i, s)| (s.clone(), json!(i))).collect();
    let merges: Vec<Value> =
        merges.iter().map(|m| json!([hf.strings[m.left as usize], hf.strings[m.right as usize]])).collect();
    let mut added: Vec<Value> = SPECIALS
        .iter()
        .map(|s| {
            json!({"id": hf.ids[*s], "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    added.sort_by_key(|t| t["id"].as_u64());
    let mark = SPACE_MARK.to_string();
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": mark},
            {"type": "Replace", "pattern": {"String": " "}, "content": mark},
        ]},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": mark}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": "<unk>",
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": true,
            "byte_fallback": true,
            "ignore_merges": false,
            "vocab": vocab,
            "merges": merges,
        },
    }))
}

/// Converts a llama2.c tokenizer file into an equivalent Hugging Face tokenizer (see the module docs).
pub fn llama2c_tokenizer_to_hf(tok512_bin: &Path) -> Result<Tokenizer> {
    let json = llama2c_tokenizer_json(tok512_bin)?;
    let text = serde_json::to_string(&json).context("serializing the converted tokenizer.json")?;
    text.parse::<Tokenizer>()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("loading the tokenizer.json converted from {}", tok512_bin.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(max: i32, toks: &[(f32, &[u8])]) -> Vec<u8> {
        let mut b = max.to_le_bytes().to_vec();
        for (s, p) in toks {
            b.extend(s.to_le_bytes());
            b.extend((p.len() as i32).to_le_bytes());
            b.extend(*p);
        }
        b
    }

    #[test]
    fn parse_reads_every_token_and_rejects_truncation() {
        let b = file(3, &[(0.0, b"<a>"), (-1.5, b" t")]);
        let v = parse_tok512(&b).unwrap();
        assert_eq!(v.pieces, vec![b"<a>".to_vec(), b" t".to_vec()]);
        assert_eq!(v.scores, vec![0.0, -1.5]);
        let err = parse_tok512(&b[..b.len() - 1]).unwrap_err().to_string();
        assert!(err.contains("token 1") && err.contains("past the end"), "{err}");
        let err = parse_tok512(&file(1, &[(0.0, b"ab")])).unwrap_err().to_string();
        assert!(err.contains("length 2 outside"), "{err}");
    }

    #[test]
    fn ambiguity_finder_flags_overlapping_splits_and_equal_scores() {
        // Pieces: specials, bytes, then "a", "b", "ab", "ba", "aba" — "aba" splits as ab|a and a|ba,
        // and the symbols [ab, a, ba] would offer it at two overlapping positions.
        let mut toks: Vec<(f32, Vec<u8>)> =
            vec![(0.0, b"<unk>".to_vec()), (0.0, b"\n<s>\n".to_vec()), (0.0, b"\n</s>\n".to_vec())];
        toks.extend((0..=255u8).map(|b| (0.0, byte_piece(b).into_bytes())));
        // "a" gets a lower id than "ab", so (a, ba) outranks (ab, a) and BPE takes the right position.
        for (s, p) in [(-4.0, "a"), (-5.0, "b"), (-1.0, "ab"), (-2.0, "ba"), (-3.0, "aba")] {
            toks.push((s, p.as_bytes().to_vec()));
        }
        let refs: Vec<(f32, &[u8])> = toks.iter().map(|(s, p)| (*s, p.as_slice())).collect();
        let v = parse_tok512(&file(6, &refs)).unwrap();
        let amb = llama2c_merge_ambiguities(&v).unwrap();
        assert_eq!(amb.len(), 1, "{amb:?}");
        assert!(amb[0].contains("\"aba\""), "{amb:?}");
        // Give "ba" the score of "ab": now two merged pieces share a score as well.
        let mut v2 = v.clone();
        let ba = v2.pieces.iter().position(|p| p == b"ba").unwrap();
        v2.scores[ba] = -1.0;
        assert_eq!(llama2c_merge_ambiguities(&v2).unwrap().len(), 2);
    }
}
