//! The membership-inference table (issue 17): per headline row each MIA AUC with its gap to
//! the oracle's AUC in the same world, and the strongest attack (largest |gap|) with its
//! interval over worlds — checked by hand on constructed results.

mod common;

use common::{line_of, write_cell};
use serde_json::json;

#[test]
fn mia_aucs_against_the_oracles_and_the_strongest_attack() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("cells");
    // (world, method, Min-K% AUC, LOSS AUC)
    let rows: [(u64, &str, f64, f64); 6] = [
        (0, "final", 0.90, 0.80),
        (0, "retrain", 0.55, 0.50),
        (0, "npo", 0.60, 0.70),
        (1, "final", 0.95, 0.85),
        (1, "retrain", 0.45, 0.50),
        (1, "npo", 0.50, 0.62),
    ];
    for (w, method, mink, loss) in rows {
        let kind = if method == "npo" { "npo" } else { "reference" };
        let recs = [("mink_auc".to_owned(), mink), ("mia_loss_auc".to_owned(), loss)];
        write_cell(&cells, method, kind, w, &recs, json!({ "closer_to": 0.5 }));
    }
    let out = tmp.path().join("out");
    report::build(tmp.path(), &out).unwrap();
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    let start = index.find("### Model `m`, membership inference").unwrap_or_else(|| panic!("no table in\n{index}"));
    let table = &index[start..];
    // npo: Min-K% gaps 0.05, 0.05 → +0.050; LOSS gaps 0.20, 0.12 → +0.160, the strongest,
    // interval over the two worlds [0.12, 0.20]
    let npo = line_of(table, "| npo |");
    assert!(npo.contains("(+0.050)") && npo.contains("(+0.160)"), "{npo}");
    assert!(npo.ends_with("+0.160 [+0.120, +0.200] |"), "{npo}");
    // θ_D: Min-K% gaps 0.35, 0.50 → +0.425 beats LOSS (0.30, 0.35 → +0.325)
    let fin = line_of(table, "| *final (θ_D)* |");
    assert!(fin.ends_with("+0.425 [+0.350, +0.500] |"), "{fin}");
    // the oracle against itself
    assert!(line_of(table, "| *retrain (oracle)* |").contains("(0)"), "{table}");
}
