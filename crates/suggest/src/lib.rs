//! "Did you mean …?" for unknown names (method kinds, metrics, world kinds, config keys),
//! in the manner of lm-evaluation-harness's task registry: the closest known name by
//! Levenshtein edit distance, and always the full list of known names.

/// Levenshtein distance (insert, delete, substitute; each costs 1) over Unicode scalar values.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // prev[j] = distance between the processed prefix of `a` and b[..j]
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The known name closest to `unknown`, if it is close enough to be a plausible typo:
/// at most a third of the longer name's length (and at least 2) edits away. Ties go to
/// the name listed first.
pub fn closest<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let lower = unknown.to_lowercase();
    known
        .iter()
        .map(|&k| (edit_distance(&lower, &k.to_lowercase()), k))
        .filter(|&(d, k)| d <= (lower.chars().count().max(k.chars().count()) / 3).max(2))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// `unknown WHAT `NAME` (did you mean `X`?); known WHATs: a, b, c` — the message used for
/// every unknown name in a sweep config.
pub fn unknown_name_message(what: &str, unknown: &str, known: &[&str]) -> String {
    let hint = match closest(unknown, known) {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    };
    format!("unknown {what} `{unknown}`{hint}; known: {}", known.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_distance(a: &str, b: &str, expected: usize) {
        assert_eq!(edit_distance(a, b), expected, "{a:?} vs {b:?}");
        assert_eq!(edit_distance(b, a), expected, "symmetry: {b:?} vs {a:?}");
    }

    #[test]
    fn edit_distance_matches_hand_counts() {
        check_distance("", "", 0);
        check_distance("", "abc", 3);
        check_distance("kitten", "sitting", 3); // k→s, e→i, +g
        check_distance("flaw", "lawn", 2); // -f, +n
        check_distance("msa", "msa", 0);
        check_distance("npo", "simnpo", 3);
        check_distance("gradient_ascnet", "gradient_ascent", 2); // transposition = 2 edits
    }

    #[test]
    fn closest_suggests_typos_but_not_unrelated_names() {
        let known = ["msa", "task_negation", "gradient_ascent", "gradient_difference", "npo", "simnpo"];
        assert_eq!(closest("mas", &known), Some("msa"));
        assert_eq!(closest("gradient_ascnet", &known), Some("gradient_ascent"));
        assert_eq!(closest("SimNPO", &known), Some("simnpo"));
        assert_eq!(closest("taskneg", &known), None);
        assert_eq!(closest("rmu_completely_different", &known), None);
    }

    #[test]
    fn message_lists_known_names() {
        let m = unknown_name_message("metric", "forget_qualty", &["forget_quality", "model_utility"]);
        assert_eq!(
            m,
            "unknown metric `forget_qualty` (did you mean `forget_quality`?); known: forget_quality, model_utility"
        );
    }
}
