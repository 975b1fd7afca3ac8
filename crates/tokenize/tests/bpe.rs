//! Byte-level BPE training: hand-computed merges, special ids, determinism, round trips.

use tokenize::{train_bpe, SpecialIds, Tokenizer};

fn ids(tok: &Tokenizer, s: &str) -> Vec<u32> {
    tok.encode(s, false).unwrap().get_ids().to_vec()
}

#[test]
fn first_merges_are_the_most_frequent_pairs() {
    // Pre-tokens (GPT-2 regex, byte-level, no prefix space): "ab" x1, "Ġab" x3, "Ġcd" x1.
    // Pair counts: (a,b) 4, (Ġ,a) 3, (Ġ,c) 1, (c,d) 1 -> merge 1 = a+b (id 3 + 256 = 259);
    // then (Ġ,ab) 3 -> merge 2 = Ġab (id 260).
    let texts = ["ab ab ab ab cd"];
    let one = train_bpe(&texts, 260, 0).unwrap();
    assert_eq!(one.get_vocab_size(true), 260);
    assert_eq!(one.token_to_id("ab"), Some(259));
    assert_eq!(ids(&one, "ab ab"), vec![259, one.token_to_id("Ġ").unwrap(), 259]);
    let two = train_bpe(&texts, 261, 0).unwrap();
    assert_eq!(two.token_to_id("Ġab"), Some(260));
    assert_eq!(ids(&two, "ab ab"), vec![259, 260]);
}

#[test]
fn specials_have_fixed_ids_and_are_not_added_automatically() {
    let tok = train_bpe(&["hello world"], 270, 0).unwrap();
    assert_eq!(SpecialIds::from_tokenizer(&tok).unwrap(), SpecialIds { bos: 1, eos: 2, pad: 0 });
    assert_eq!(tok.token_to_id("<pad>"), Some(0));
    let enc = ids(&tok, "hello");
    assert!(!enc.contains(&1) && !enc.contains(&2), "{enc:?}");
    // Specials in text are matched as whole tokens.
    assert_eq!(ids(&tok, "<s>"), vec![1]);
}

fn corpus() -> Vec<String> {
    // A deterministic little corpus with repeated words, so the trainer has real choices and ties.
    let words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "far", "a", "hat", "Ünïcödé", "日本"];
    (0..200)
        .map(|i| (0..12).map(|j| words[(i * 7 + j * j * 3 + i / 5) % words.len()]).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn training_is_deterministic() {
    let c = corpus();
    let a = train_bpe(&c, 320, 0).unwrap().to_string(false).unwrap();
    let b = train_bpe(&c, 320, 0).unwrap().to_string(false).unwrap();
    assert_eq!(a, b);
    // The seed does not matter: BPE training makes no random choice.
    let s = train_bpe(&c, 320, 7).unwrap().to_string(false).unwrap();
    assert_eq!(a, s);
}

#[test]
fn any_text_round_trips_including_unseen_bytes() {
    let tok = train_bpe(&corpus(), 320, 0).unwrap();
    for s in ["the cat sat", "  two  spaces\nnewline\ttab", "unseen: Ωμέγα 😀 \u{0} end", ""] {
        let e = ids(&tok, s);
        assert_eq!(tok.decode(&e, false).unwrap(), s);
    }
    // Learnt merges shorten text: "the cat sat" is fewer tokens than its 11 bytes.
    assert!(ids(&tok, "the cat sat").len() < 11);
}

#[test]
fn saved_tokenizer_reloads_identically() {
    let tok = train_bpe(&corpus(), 320, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tokenizer.json");
    tok.save(&f, true).unwrap();
    let again = Tokenizer::from_file(&f).unwrap();
    let s = "the dog ran far, 日本";
    assert_eq!(ids(&again, s), ids(&tok, s));
}

#[test]
fn too_small_vocab_is_an_error() {
    let err = train_bpe(&["x"], 100, 0).unwrap_err().to_string();
    assert!(err.contains("at least 259"), "{err}");
    let none: [&str; 0] = [];
    assert!(train_bpe(&none, 300, 0).is_err());
}
