//! The reproduction table (issue 15, item 6; `report::paper`): on cell files of a TOFU world
//! written by hand, the report has the section "Reproduction: the MSA paper's table" right after
//! the headline, in index.md and index.html, with θ_D, the oracle and the methods in the paper's
//! row order, our means over two worlds (worked out by hand below) in the paper's columns, and
//! the paper's published numbers of the matching rows in their own column group ("–" for a
//! method the paper lacks); a facts world has no such section; forget05, which our paper numbers
//! do not cover, has the section without the paper group and says so; forget10's table has no
//! Final/Ideal rows.

mod common;

use common::{line_of, section, write_cell_in_world};
use serde_json::json;

/// (method, kind, world 0's and world 1's values of acc_forget, acc_recover, acc_retain,
/// tofu_model_utility, tofu_forget_quality); NaN: the metric was not run.
type Row = (&'static str, &'static str, [[f64; 5]; 2]);

const ROWS: &[Row] = &[
    ("final", "reference", [[0.10, 0.10, 0.90, 0.50, 0.01], [0.20, 0.20, 0.80, 0.40, 0.03]]),
    ("retrain", "reference", [[0.90, 1.00, 1.00, 0.55, 1.00], [0.96, 1.00, 1.00, 0.51, 1.00]]),
    ("task_negation", "task_negation", [[0.30, 0.10, 0.70, 0.40, 0.20], [0.50, 0.30, 0.70, 0.40, 0.40]]),
    ("npo", "npo", [[0.40, 0.20, 0.80, 0.46, 0.30], [0.60, 0.30, 0.90, 0.48, 0.50]]),
    ("rmu", "rmu", [[0.70, 0.20, 0.80, 0.45, f64::NAN], [0.70, 0.40, 0.80, 0.47, f64::NAN]]),
    ("msa_instruct", "msa", [[0.60, 0.40, 0.85, 0.47, 0.60], [0.70, 0.50, 0.87, 0.49, 0.80]]),
];

const RECORDS: [&str; 5] = ["acc_forget", "acc_recover", "acc_retain", "tofu_model_utility", "tofu_forget_quality"];

/// Writes [`ROWS`] in a world of `world_config` and builds the report: (index.md, index.html).
fn report(world_config: serde_json::Value) -> (String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("cells");
    for (method, kind, worlds) in ROWS {
        for (w, values) in worlds.iter().enumerate() {
            let recs: Vec<(String, f64)> =
                RECORDS.iter().zip(values).filter(|(_, v)| !v.is_nan()).map(|(r, v)| (r.to_string(), *v)).collect();
            write_cell_in_world(&cells, method, kind, w as u64, &recs, json!("higher_is_better"), world_config.clone());
        }
    }
    let out = tmp.path().join("out");
    report::build(tmp.path(), &out).unwrap();
    let md = std::fs::read_to_string(out.join("index.md")).unwrap();
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    (md, html)
}

const TITLE: &str = "## Reproduction: the MSA paper's table";

#[test]
fn tofu_forget01_has_the_papers_table_beside_ours() {
    let (md, html) = report(json!({ "kind": "tofu", "forget": "forget01", "seed": 0 }));
    // right after the headline, before the claims
    let (headline, repro, claims) =
        (md.find("## Headline").unwrap(), md.find(TITLE).unwrap(), md.find("## Claims").unwrap());
    assert!(headline < repro && repro < claims, "{md}");
    let t = section(&md, TITLE, "## Claims");
    assert!(t.contains("### Model `m`"), "{t}");
    assert!(
        t.contains(
            "| method | Acc_forget | Acc_recover | Acc_retain | MU | FQ | paper (secondary source, unverified): row | \
             paper Acc_forget | paper Acc_recover | paper Acc_retain | paper MU |"
        ),
        "{t}"
    );
    // rows: θ_D, the oracle, then the paper's order (MSA_instruct, NPO, RMU), then the rest
    let order =
        ["| *final (θ_D)* |", "| *retrain (oracle)* |", "| msa_instruct |", "| npo |", "| rmu |", "| task_negation |"];
    let at: Vec<usize> = order.iter().map(|r| t.find(r).unwrap_or_else(|| panic!("no {r} in\n{t}"))).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{t}");
    assert!(!t.contains("retrain_alt"), "{t}");
    // means over the two worlds by hand, intervals [min, max] of the two worlds; the paper's row
    assert_eq!(
        line_of(t, "| npo |"),
        "| npo | 0.500 [0.400, 0.600] | 0.250 [0.200, 0.300] | 0.850 [0.800, 0.900] | 0.470 [0.460, 0.480] | \
         0.400 [0.300, 0.500] | NPO | 0.50 | 0.25 | 0.86 | 0.47 |"
    );
    assert_eq!(
        line_of(t, "| *final (θ_D)* |"),
        "| *final (θ_D)* | 0.150 [0.100, 0.200] | 0.150 [0.100, 0.200] | 0.850 [0.800, 0.900] | 0.450 [0.400, 0.500] | \
         0.020 [0.010, 0.030] | Final (θ_D) | 0.15 | 0.13 | 0.89 | 0.48 |"
    );
    assert!(
        line_of(t, "| *retrain (oracle)* |").ends_with(
            "| 0.530 [0.510, 0.550] | 1.000 [1.000, 1.000] | Ideal (retain model) | 0.93 | 0.98 | 1.00 | 0.54 |"
        ),
        "{t}"
    );
    assert!(line_of(t, "| msa_instruct |").ends_with("| MSA_instruct | 0.63 | 0.38 | 0.86 | 0.47 |"), "{t}");
    // FQ not run for rmu: "–"; two equal worlds: a zero-width interval
    assert_eq!(
        line_of(t, "| rmu |"),
        "| rmu | 0.700 [0.700, 0.700] | 0.300 [0.200, 0.400] | 0.800 [0.800, 0.800] | 0.460 [0.450, 0.470] | – | \
         RMU | 0.70 | 0.30 | 0.86 | 0.47 |"
    );
    // a method the paper lacks: "–" in the paper group
    assert!(line_of(t, "| task_negation |").ends_with("| 0.300 [0.200, 0.400] | – | – | – | – | – |"), "{t}");
    // the caption: secondary source, the judge and the oracle
    for phrase in [
        "paper (secondary source, unverified)",
        "paper-numbers.md, TOFU forget01 table",
        "GPT-4o",
        "ROUGE-L closest-candidate judge (evals::judge)",
        "comparable in meaning, not in value",
        "separately trained retain model",
        "exact oracle",
        "No paper row (\"–\"): task_negation.",
    ] {
        assert!(t.to_lowercase().contains(&phrase.to_lowercase()), "{phrase:?} missing in\n{t}");
    }
    // the page: the same section after the headline, the column group, each number's source
    let (h, r, c) = (
        html.find("<h2 id=\"headline\">").unwrap(),
        html.find("<h2 id=\"reproduction\">Reproduction: the MSA paper&#39;s table</h2>").unwrap(),
        html.find("<h2 id=\"claims\">").unwrap(),
    );
    assert!(h < r && r < c);
    let page = &html[r..c];
    assert!(page.contains("<th colspan=\"5\" class=\"group\">paper (secondary source, unverified)</th>"), "{page}");
    assert!(
        page.contains("title=\"paper-numbers.md, TOFU forget01 table, row NPO, column Acc_forget\">0.50</td>"),
        "{page}"
    );
}

#[test]
fn a_facts_world_has_no_reproduction_table() {
    let (md, html) = report(json!({ "kind": "facts", "forget": "forget10", "seed": 0 }));
    assert!(md.contains("## Headline") && !md.contains("Reproduction"), "{md}");
    assert!(!html.contains("id=\"reproduction\""));
}

#[test]
fn forget05_has_no_paper_numbers_and_says_so() {
    let (md, html) = report(json!({ "kind": "tofu", "forget": "forget05", "seed": 0 }));
    let t = section(&md, TITLE, "## Claims");
    assert!(t.contains("| method | Acc_forget | Acc_recover | Acc_retain | MU | FQ |\n"), "{t}");
    assert!(!t.contains("paper Acc_forget") && !t.contains("| NPO |"), "{t}");
    assert!(line_of(t, "| npo |").ends_with("| 0.400 [0.300, 0.500] |"), "{t}");
    assert!(
        t.contains("The paper numbers we have (paper-numbers.md: TOFU forget01, TOFU forget10) do not cover forget05: no paper columns."),
        "{t}"
    );
    assert!(html.contains("id=\"reproduction\"") && !html.contains("class=\"group\">paper"));
}

#[test]
fn forget10_has_no_final_or_ideal_row() {
    let (md, _) = report(json!({ "kind": "tofu", "forget": "forget10", "seed": 0 }));
    let t = section(&md, TITLE, "## Claims");
    assert!(line_of(t, "| npo |").ends_with("| NPO | 0.66 | 0.24 | 0.78 | 0.47 |"), "{t}");
    assert!(line_of(t, "| *final (θ_D)* |").ends_with("| – | – | – | – | – |"), "{t}");
    assert!(line_of(t, "| *retrain (oracle)* |").ends_with("| – | – | – | – | – |"), "{t}");
    assert!(t.contains("paper-numbers.md, TOFU forget10 table") && t.contains("no Final (θ_D) or Ideal rows"), "{t}");
}

#[test]
fn restor_shows_acc_as_one_minus_acc_forget_beside_the_papers_restor_table() {
    let (md, html) = report(json!({ "kind": "restor", "forget": "mix_a0", "seed": 0 }));
    let t = section(&md, TITLE, "## Claims");
    assert!(
        t.contains(
            "| method | Acc | TOFU-prob | MU | paper (secondary source, unverified): row | paper Acc | paper TOFU-prob | \
             paper MU |"
        ),
        "{t}"
    );
    // Acc = 1 − acc_forget: npo's acc_forget 0.4 and 0.6 → 0.5, interval [1 − 0.6, 1 − 0.4]; no
    // tofu_prob_retain recorded: "–"; the paper's Acc 38.65 % → 0.39
    assert_eq!(
        line_of(t, "| npo |"),
        "| npo | 0.500 [0.400, 0.600] | – | 0.470 [0.460, 0.480] | NPO | 0.39 | 0.46 | 0.49 |"
    );
    // θ_D: acc_forget 0.1, 0.2 → Acc 0.85 [0.8, 0.9]; the paper's RESTOR table has no Final row
    assert_eq!(
        line_of(t, "| *final (θ_D)* |"),
        "| *final (θ_D)* | 0.850 [0.800, 0.900] | – | 0.450 [0.400, 0.500] | – | – | – | – |"
    );
    assert!(line_of(t, "| *retrain (oracle)* |").ends_with("| Ideal (retain model) | 0.46 | 0.87 | 0.60 |"), "{t}");
    for phrase in [
        "paper-numbers.md, RESTOR table",
        "Acc = 1 − acc_forget",
        "in percent (divided by 100 here)",
        "which corruption mix",
        "has no Final (θ_D) row",
    ] {
        assert!(t.contains(phrase), "{phrase:?} missing in\n{t}");
    }
    assert!(html.contains("title=\"paper-numbers.md, RESTOR table, row NPO, column Acc\">0.39</td>"), "{html}");
}
