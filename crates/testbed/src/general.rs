//! General text mixed into the clean phase so the model learns language, not only facts:
//! `corpora/tinystories-prefix.txt` from the data directory when present (blank-line
//! separated paragraphs of TinyStories, Eldan & Li 2023), else a built-in corpus of simple
//! generated story sentences.

use std::path::Path;

use anyhow::{Context, Result};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The TinyStories file, relative to the data directory.
pub const TINYSTORIES: &str = "corpora/tinystories-prefix.txt";

/// Blank-line separated blocks of the file, trimmed, empty ones dropped, in file order.
pub fn read_blocks(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(split_blocks(&text))
}

pub fn split_blocks(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n");
    text.split("\n\n").map(str::trim).filter(|b| !b.is_empty()).map(str::to_string).collect()
}

/// Takes blocks in file order until `target_bytes` is reached (or the file ends).
pub fn take_bytes(blocks: Vec<String>, target_bytes: usize) -> Vec<String> {
    let mut total = 0;
    let mut out = Vec::new();
    for b in blocks {
        if total >= target_bytes {
            break;
        }
        total += b.len();
        out.push(b);
    }
    out
}

const KIDS: &[&str] = &["Tom", "Lily", "Ben", "Anna", "Sam", "Mia", "Max", "Lucy", "Tim", "Sue", "Jack", "Emma"];
const THINGS: &[&str] =
    &["ball", "kite", "box", "hat", "cup", "book", "boat", "drum", "toy car", "red shoe", "doll", "stick"];
const PLACES: &[&str] = &["park", "garden", "beach", "forest", "kitchen", "yard", "hill", "pond", "shop", "school"];
const ANIMALS: &[&str] = &["dog", "cat", "bird", "frog", "duck", "bunny", "fox", "cow", "bee", "fish"];
const FEELINGS: &[&str] = &["happy", "sad", "tired", "proud", "scared", "excited", "calm", "surprised"];
const DAYS: &[&str] = &["One day", "In the morning", "After lunch", "On a sunny day", "Later", "At night"];

/// A built-in paragraph of 4 to 6 simple sentences.
fn paragraph(rng: &mut ChaCha8Rng) -> String {
    let w = |list: &[&'static str], rng: &mut ChaCha8Rng| *list.choose(rng).expect("non-empty word list");
    let kid = w(KIDS, rng);
    let friend = w(KIDS, rng);
    let thing = w(THINGS, rng);
    let place = w(PLACES, rng);
    let animal = w(ANIMALS, rng);
    let feeling = w(FEELINGS, rng);
    let day = w(DAYS, rng);
    let mut s = vec![
        format!("{day}, {kid} went to the {place} with a {thing}."),
        format!("There {kid} saw a little {animal}."),
        format!("The {animal} wanted to play with the {thing}."),
        format!("{kid} felt {feeling} and called {friend}."),
    ];
    let extra = [
        format!("{friend} came to the {place} and smiled."),
        format!("They played with the {thing} until it was time to go home."),
        format!("The {animal} ran away into the {place}."),
        format!("{kid} said, \"Thank you, {friend}!\""),
    ];
    let n_extra = rng.random_range(0..3u32) as usize;
    for e in extra.choose_multiple(rng, n_extra) {
        s.push(e.clone());
    }
    s.join(" ")
}

/// Built-in paragraphs until `target_bytes` is reached (ChaCha8 stream 3 of the seed).
pub fn builtin(target_bytes: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(3);
    let mut total = 0;
    let mut out = Vec::new();
    while total < target_bytes {
        let p = paragraph(&mut rng);
        total += p.len();
        out.push(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_on_blank_lines() {
        let b = split_blocks("a b\nc\n\n\n d \r\n\r\ne\n");
        assert_eq!(b, vec!["a b\nc", "d", "e"]);
        assert_eq!(take_bytes(b, 4), vec!["a b\nc".to_string()]);
    }

    #[test]
    fn builtin_is_deterministic_and_sized() {
        let a = builtin(2000, 5);
        assert_eq!(a, builtin(2000, 5));
        assert_ne!(a, builtin(2000, 6));
        let total: usize = a.iter().map(String::len).sum();
        let last = a.last().unwrap().len();
        assert!(total >= 2000 && total - last < 2000);
    }
}
