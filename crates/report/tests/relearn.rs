//! The relearning attack in the report (issue 17): on constructed results with records
//! `attack/relearn@K/…` the robustness table shows the relearn gap after the last step against
//! the oracle after the same attack, with its interval over worlds and the held part's gap
//! before the attack (step 0), all by hand; the relearning curve is a figure with the oracle's
//! and θ_D's lines; the intermediate steps get no table of their own.

mod common;

use common::{line_of, section, write_cell};
use serde_json::json;

#[test]
fn relearn_gap_and_curve() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("cells");
    // (world, method) → held-part forget MC accuracy at relearning steps 0, 5, 10
    let table: [(u64, &str, [f64; 3]); 6] = [
        (0, "final", [1.0, 1.0, 1.0]),
        (0, "retrain", [0.2, 0.2, 0.3]),
        (0, "npo", [0.2, 0.6, 0.8]),
        (1, "final", [1.0, 1.0, 0.9]),
        (1, "retrain", [0.2, 0.3, 0.2]),
        (1, "npo", [0.3, 0.5, 0.6]),
    ];
    for (w, method, curve) in table {
        let kind = if method == "npo" { "npo" } else { "reference" };
        let mut recs = vec![("mc_accuracy/forget".to_owned(), curve[0])];
        for (k, v) in [0, 5, 10].into_iter().zip(curve) {
            recs.push((format!("attack/relearn@{k}/mc_accuracy/forget"), v));
        }
        write_cell(&cells, method, kind, w, &recs, json!("lower_is_better"));
    }
    let out = tmp.path().join("out");
    report::build(tmp.path(), &out).unwrap();
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    let robust = section(&index, "## Robustness", "## Figures");
    // one table, for the last step; none for relearn@0 or relearn@5
    assert!(robust.contains("### Model `m`, attack relearn@10"), "{robust}");
    assert!(!robust.contains("attack relearn@5") && !robust.contains("attack relearn@0"), "{robust}");
    // npo after 10 steps: (0.8 + 0.6)/2 = 0.7; gap per world 0.8 − 0.3 = 0.5, 0.6 − 0.2 = 0.4
    // → +0.450, interval over the two worlds [0.4, 0.5]; before (step 0): 0.0 and 0.1 → +0.050
    let npo = line_of(robust, "| npo |");
    assert!(npo.contains("(gap +0.450 [+0.400, +0.500]; before +0.050)"), "{npo}");
    // θ_D: gap (0.7 + 0.7)/2 = +0.700; before (0.8 + 0.8)/2 = +0.800
    assert!(line_of(robust, "| *final (θ_D)* |").contains("(gap +0.700 [+0.700, +0.700]; before +0.800)"), "{robust}");
    // the oracle against itself
    assert!(line_of(robust, "| *retrain (oracle)* |").contains("(gap 0 [0, 0]; before 0)"), "{robust}");
    assert!(robust.contains("OTHER forget entities"), "{robust}");
    // the curve: a paper figure, SVG and PNG, with the references in its legend
    let figures = section(&index, "## Figures", "\n## ");
    assert!(figures.contains("Relearning attack (m)"), "{figures}");
    let svg = std::fs::read_to_string(out.join("plots/relearn_m.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for label in ["final (θ_D)", "retrain (oracle)", "npo", "relearning steps"] {
        assert!(svg.contains(label), "{label} missing from the relearning figure");
    }
    assert!(out.join("plots/relearn_m.png").is_file());
    // the attack's columns stay out of the full table
    let tables = std::fs::read_to_string(out.join("tables.md")).unwrap();
    assert!(!tables.contains("after relearn@"), "{tables}");
}

#[test]
fn the_last_step_is_the_table_and_step_zero_the_before() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("cells");
    for (method, kind, v) in [("final", "reference", 1.0), ("retrain", "reference", 0.2), ("npo", "npo", 0.5)] {
        let recs = vec![
            ("mc_accuracy/forget".to_owned(), v),
            ("attack/relearn@0/mc_accuracy/forget".to_owned(), v),
            ("attack/relearn@7/mc_accuracy/forget".to_owned(), v + 0.1),
        ];
        write_cell(&cells, method, kind, 0, &recs, json!("lower_is_better"));
    }
    let out = tmp.path().join("out");
    report::build(tmp.path(), &out).unwrap();
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    // two steps (0 and 7) are a curve of two points: drawn
    assert!(index.contains("Relearning attack (m)"));
    let robust = section(&index, "## Robustness", "## Figures");
    // npo: 0.6 − 0.3 = +0.300 after, 0.5 − 0.2 = +0.300 before; one world, no interval
    assert!(line_of(robust, "| npo |").contains("(gap +0.300; before +0.300)"), "{robust}");
}
