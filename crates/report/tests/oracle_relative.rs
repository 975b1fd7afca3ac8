//! Issue 14's checks: a results folder built here with a collapsed row and an oracle-like row
//! (the collapsed row is never best and fails the gate; the oracle-like row is marked
//! indistinguishable from retraining); claims on constructed results give the verdicts a hand
//! computation gives; the HTML page parses and contains every headline number; bad input
//! (no oracle, one seed, failed cells, targets that disagree) gives messages, not a crash.

use std::path::Path;

use serde_json::{json, Value};

/// Per-example values with ids e0, e1, …
fn examples(v: &[f64]) -> (Value, Value) {
    (json!(v), json!((0..v.len()).map(|i| format!("e{i}")).collect::<Vec<_>>()))
}

struct Rec<'a> {
    name: &'a str,
    value: f64,
    per_example: Vec<f64>,
}

fn rec(name: &str, value: f64) -> Rec<'_> {
    Rec { name, value, per_example: vec![] }
}

fn rec_ex(name: &str, per_example: Vec<f64>) -> Rec<'_> {
    let value = per_example.iter().sum::<f64>() / per_example.len() as f64;
    Rec { name, value, per_example }
}

#[allow(clippy::too_many_arguments)]
fn write_cell(dir: &Path, model: &str, method: &str, kind: &str, params: Value, world: u64, seed: u64, recs: &[Rec]) {
    let mut m = serde_json::Map::new();
    for r in recs {
        let (pe, ids) = examples(&r.per_example);
        m.insert(
            r.name.into(),
            json!({ "direction": "lower_is_better", "value": r.value, "per_example": pe, "example_ids": ids }),
        );
    }
    let id = format!("{model}-{method}-{}-w{world}-s{seed}", params.to_string().replace(['{', '}', '"', ':', ','], ""));
    let body = json!({
        "schema_version": 1, "sweep": "t",
        "cell": { "id": id, "key": id, "method": method, "kind": kind, "params": params, "model": model, "seed": seed, "world_seed": world },
        "status": "ok", "metrics": m, "resolved_config": {},
        "provenance": { "crate_version": "0.0.0", "git_commit": null },
        // npo records its trained tokens (the runner's `method/count/finetune_tokens`); the
        // other methods do not, as runs made before compute accounting
        "timings": { "started_unix": 0.0, "finished_unix": 1.0, "stages": if method == "npo" {
            json!({ "unlearn": 2.0, "method/count/finetune_tokens": 17180.0 })
        } else {
            json!({ "unlearn": 2.0 })
        } },
    });
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(format!("{id}.json")), body.to_string()).unwrap();
}

/// Forget MC accuracy per example (10 questions) for a row whose share of correct answers is
/// `k`/10 (the first k correct).
fn mc(k: usize) -> Vec<f64> {
    (0..10).map(|i| if i < k { 1.0 } else { 0.0 }).collect()
}

/// Two worlds; references final (θ_D), retrain (oracle), retrain_alt (second oracle); a
/// collapsed method (gradient_ascent) and an oracle-like one (npo); msa and task negation.
fn tradeoff_fixture(dir: &Path) {
    let cells = dir.join("cells");
    for w in 0..2u64 {
        let row = |method: &str, kind: &str, mc_k: usize, ppl_f: f64, mu: f64, ppl_g: f64| {
            write_cell(
                &cells,
                "m",
                method,
                kind,
                json!({}),
                w,
                0,
                &[
                    rec_ex("mc_accuracy/forget", mc(mc_k)),
                    rec("perplexity/forget", ppl_f),
                    rec("tofu_model_utility", mu),
                    rec("perplexity/general", ppl_g),
                ],
            )
        };
        row("final", "reference", 10, 1.5, 0.60, 10.0);
        row("retrain", "reference", 2, 8.0, 0.60, 10.0);
        row("retrain_alt", "reference", 3, 9.0, 0.58, 10.2);
        row("gradient_ascent", "gradient_ascent", 0, 1e5, 0.04, 900.0);
        row("npo", "npo", 2, 8.2, 0.59, 10.1);
        row("msa", "msa", 6, 4.0, 0.57, 10.5);
        row("task_negation", "task_negation", 9, 2.0, 0.50, 11.0);
    }
}

fn section<'a>(text: &'a str, from: &str, to: &str) -> &'a str {
    let a = text.find(from).unwrap_or_else(|| panic!("no {from}"));
    let b = text[a..].find(to).map_or(text.len(), |b| a + b);
    &text[a..b]
}

fn line_of<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line {start} in\n{text}"))
}

#[test]
fn collapsed_row_never_wins_and_oracle_like_row_is_indistinguishable() {
    let tmp = tempfile::tempdir().unwrap();
    tradeoff_fixture(tmp.path());
    let out = tmp.path().join("out");
    report::build(tmp.path(), &out).unwrap();
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    let headline = section(&index, "## Headline", "## Claims");
    // Hand computation (both worlds alike). Noise floor: |0.3 − 0.2| = 0.1 (MC), |ln 9 − ln 8| =
    // 0.118 (perplexity). npo: Δ 0 and |ln 8.2 − ln 8| = 0.025 ≤ floor → ≈ oracle, gate
    // 0.59/0.60 = 0.983 ≥ 0.9 and 10.1/10 ≤ 1.5 → pass. gradient_ascent: utility 0.04/0.6 =
    // 0.067 < 0.9, perplexity 90 × θ_D's → fail, never bold (its MC accuracy 0 would be "best"
    // under lower-is-better, its perplexity 1e5 under higher-is-better).
    let ga = line_of(headline, "| gradient_ascent |");
    assert!(ga.contains("**✗ fail**") && !ga.contains("**0") && !ga.contains("≈ oracle"), "{ga}");
    let npo = line_of(headline, "| npo |");
    // (the interval resamples the 10 questions of each world; every row took 2.0 s: a tie, all bold)
    assert!(npo.starts_with("| npo | pass | **0.200 [") && npo.contains("] · Δ 0 ≈ oracle** |"), "{npo}");
    // cost: seconds (ranked) · tokens trained (17,180 → "17.2k"; "–" when a run did not record them)
    assert!(npo.ends_with("| **0.983 [0.983, 0.983]** | **1.010 [1.010, 1.010]** | **2.0 · 17.2k** |"), "{npo}");
    assert!(line_of(headline, "| msa |").ends_with("| **2.0 · –** |"), "{}", line_of(headline, "| msa |"));
    assert!(headline.contains("unlearning cost: wall time (s) · tokens trained"), "{headline}");
    assert!(headline.contains("forget MC accuracy (→ oracle 0.200, floor 0.100)"), "{headline}");
    // msa: Δ 0.4 > floor: bold nowhere in the forget column
    let msa = line_of(headline, "| msa |");
    assert!(msa.starts_with("| msa | pass | 0.600 [") && msa.contains("] · Δ 0.400 |"), "{msa}");
    // task negation fails the gate: 0.5/0.6 = 0.833
    assert!(line_of(headline, "| task_negation |").contains("✗ fail"));
    // the full table: perplexity on a log scale, npo within the floor there too
    let tables = std::fs::read_to_string(out.join("tables.md")).unwrap();
    let full = section(&tables, "## All metrics", "## Comparisons");
    assert!(full.contains("forget perplexity (→ oracle 8.000, floor 0.118; log scale)"), "{full}");
    assert!(line_of(full, "| npo |").contains("**8.200 [8.200, 8.200] · Δln 0.025 ≈ oracle**"), "{full}");
    assert!(!line_of(full, "| gradient_ascent |").contains("**1.00e5"), "{full}");

    // the page parses and carries every headline number
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let dom = tl::parse(&html, tl::ParserOptions::default()).expect("index.html parses");
    let parser = dom.parser();
    let tables: Vec<_> = dom.query_selector("table.headline").unwrap().collect();
    assert_eq!(tables.len(), 1, "one headline table per model");
    let cells: Vec<String> = tables[0]
        .get(parser)
        .unwrap()
        .as_tag()
        .unwrap()
        .query_selector(parser, "td")
        .unwrap()
        .map(|td| unescape(&td.get(parser).unwrap().inner_text(parser)))
        .collect();
    let mut checked = 0;
    for row in headline.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| method")) {
        for cell in row.trim_matches('|').split(" | ").skip(1) {
            let cell = cell.trim().trim_matches('*');
            if cell.chars().any(|c| c.is_ascii_digit()) {
                assert!(cells.iter().any(|c| c == cell), "headline number {cell:?} missing from index.html");
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "{checked}");
    // self-contained: no scripts, no links, nothing fetched (the SVG namespace URI is a name, not a fetch)
    for bad in ["<script", "<link", "<img", "src=", "href=\"http", "url(", "@import", "@font-face"] {
        assert!(!html.contains(bad), "index.html contains {bad}");
    }
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    assert!(html.contains("prefers-color-scheme: dark"));
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// Claims on constructed results: MSA agrees with the oracle on every question, task negation
/// on none; one world, one seed each, 30 questions.
#[test]
fn claims_give_the_hand_computed_verdicts() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("cells");
    let oracle: Vec<f64> = (0..30).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
    let flipped: Vec<f64> = oracle.iter().map(|x| 1.0 - x).collect();
    let w = |method: &str, kind: &str, params: Value, acc: &[f64], mu: f64| {
        write_cell(
            &cells,
            "m",
            method,
            kind,
            params,
            0,
            0,
            &[rec_ex("mc_accuracy/forget", acc.to_vec()), rec("tofu_model_utility", mu)],
        )
    };
    w("final", "reference", json!({}), &[1.0; 30], 0.6);
    w("retrain", "reference", json!({}), &oracle, 0.6);
    w("msa", "msa", json!({ "alpha": 1.0, "lr": 1e-3, "epochs": 5 }), &oracle, 0.6);
    w("task_negation", "task_negation", json!({ "alpha": 1.0, "lr": 1e-3, "epochs": 5 }), &flipped, 0.6);
    let summaries = report::tables::summarise(
        &report::results::load_cells(tmp.path()).unwrap(),
        &report::options::Options::default(),
    );
    let claims = report::claims::claims(&report::results::load_cells(tmp.path()).unwrap(), &summaries);
    let find = |id: &str| claims.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no claim {id}"));
    // Per question, Δ_MSA = 0 and Δ_TN = 1: every paired difference is −1, so the effect is −1
    // with the interval [−1, −1]; Wilcoxon: 30 equal non-zero differences (normal approximation
    // with ties: z = −(n(n+1)/4)/sqrt(n(n+1)(2n+1)/24 − t-correction) … p = 1.7e-6 for n = 30 all
    // tied: T = 0, mean 232.5, the tie correction removes (30³ − 30)/48 from 2363.75 to leave
    // 2363.75 − 561.875 = 1801.875, z = −232.5/42.449 = −5.477, two-sided p = 4.32e-8).
    let a = find("(a)");
    let e = a.effect.unwrap();
    assert_eq!((e.mean, e.lo, e.hi), (-1.0, -1.0, -1.0));
    let p = a.p_value.unwrap();
    assert!((p - 4.32e-8).abs() < 0.01e-8, "{p}");
    // Holm over the two p-values (a, c), equal: both adjusted to 2p
    assert_eq!(a.holm, Some(2.0 * p));
    // no noise floor: margin 0; upper end −1 < 0 → supported
    assert_eq!(a.verdict, report::claims::Verdict::Supported);
    let c = find("(c)");
    assert_eq!((c.verdict, c.holm), (report::claims::Verdict::Supported, Some(2.0 * p)));
    // the summary's claim: 1 − 0/1 = 100 % ≥ 12.7 %
    let s = find("(s)");
    assert_eq!((s.effect.unwrap().mean, s.verdict), (1.0, report::claims::Verdict::Supported));
    // one checkpoint, one α, one β: not tested, saying why
    let b = find("(b)");
    assert_eq!(b.verdict, report::claims::Verdict::NotTested);
    assert!(b.reason.contains("the MSA rows take 0 value(s) of `checkpoint`"), "{}", b.reason);
    assert!(claims.iter().filter(|c| c.id == "(d)").all(|c| c.verdict == report::claims::Verdict::NotTested));

    // the reverse world: task negation agrees with the oracle, MSA does not → (c) not supported
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("cells");
    let w = |method: &str, kind: &str, acc: &[f64]| {
        write_cell(
            &cells,
            "m",
            method,
            kind,
            json!({}),
            0,
            0,
            &[rec_ex("mc_accuracy/forget", acc.to_vec()), rec("tofu_model_utility", 0.6)],
        )
    };
    w("final", "reference", &[1.0; 30]);
    w("retrain", "reference", &oracle);
    w("msa", "msa", &flipped);
    w("task_negation", "task_negation", &oracle);
    let loaded = report::results::load_cells(tmp.path()).unwrap();
    let summaries = report::tables::summarise(&loaded, &report::options::Options::default());
    let claims = report::claims::claims(&loaded, &summaries);
    let c = claims.iter().find(|c| c.id == "(c)").unwrap();
    assert_eq!((c.effect.unwrap().mean, c.verdict), (1.0, report::claims::Verdict::NotSupported));
    let a = claims.iter().find(|c| c.id == "(a)").unwrap();
    assert_eq!(a.verdict, report::claims::Verdict::NotSupported);
    let s = claims.iter().find(|c| c.id == "(s)").unwrap();
    assert!(s.effect.is_none() && s.reason.contains("mean is 0"), "{}", s.reason);
}

#[test]
fn bad_input_gives_messages_not_a_crash() {
    // no oracle, one seed, a failed cell, and a metric whose cells disagree on its target
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("cells");
    write_cell(
        &cells,
        "m",
        "final",
        "reference",
        json!({}),
        0,
        0,
        &[rec_ex("mc_accuracy/forget", mc(9)), rec("tofu_model_utility", 0.6)],
    );
    write_cell(
        &cells,
        "m",
        "npo",
        "npo",
        json!({}),
        0,
        0,
        &[rec_ex("mc_accuracy/forget", mc(3)), rec("tofu_model_utility", 0.6)],
    );
    // the two cells record different targets for tofu_model_utility
    for (f, target) in
        std::fs::read_dir(&cells).unwrap().map(|e| e.unwrap().path()).zip(["higher_is_better", "toward_oracle"])
    {
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        v["metrics"]["tofu_model_utility"]["target"] = json!(target);
        std::fs::write(&f, v.to_string()).unwrap();
    }
    let failed = json!({
        "schema_version": 1, "sweep": "t",
        "cell": { "id": "rmu-0", "method": "rmu", "kind": "rmu", "params": {}, "model": "m", "seed": 0 },
        "status": "failed", "error_chain": ["rmu", "loss is NaN at step 2"],
    });
    std::fs::write(cells.join("rmu-0.json"), failed.to_string()).unwrap();
    let out = tmp.path().join("out");
    let s = report::build(tmp.path(), &out).unwrap();
    let notes = s.notes.join("\n");
    assert!(notes.contains("no oracle (retrain) row"), "{notes}");
    assert!(notes.contains("one run per row"), "{notes}");
    assert!(notes.contains("1 cell(s) failed"), "{notes}");
    assert!(
        notes.contains("metric `tofu_model_utility` left out of the tables: its cells disagree on its target"),
        "{notes}"
    );
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    for n in &s.notes {
        assert!(index.contains(n.as_str()), "index.md lacks {n}");
    }
    // the gate metric is gone, so the gate is not measured and nothing is bold; the table is not empty
    let headline = section(&index, "## Headline", "## Claims");
    assert!(headline.contains("| npo | not measured | 0.300 |"), "{headline}");
    assert!(!headline.contains("**0"), "{headline}");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("no oracle (retrain) row") && html.contains("loss is NaN at step 2"));

    // an empty results folder: a report that says so
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("cells")).unwrap();
    let s = report::build(empty.path(), &empty.path().join("out")).unwrap();
    assert!(s.notes.iter().any(|n| n.contains("no cell results")), "{:?}", s.notes);
}

/// The page in headless Chromium at 1280 px (scripts/screenshot-report.sh): a PNG 1280 px wide
/// that is not blank. SKIPPED (passing) where no Chromium is installed.
#[test]
fn the_page_renders_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    tradeoff_fixture(tmp.path());
    let out = tmp.path().join("out");
    report::build(tmp.path(), &out).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/screenshot-report.sh");
    let shot = tmp.path().join("shot.png");
    let run = std::process::Command::new("bash")
        .arg(&script)
        .arg(&out)
        .arg(&shot)
        .env("HEIGHT", "2400")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    if stdout.starts_with("SKIPPED") {
        eprintln!("{stdout}");
        return;
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let (w, h) = (reader.info().width, reader.info().height);
    assert_eq!((w, h), (1280, 2400));
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let px = &buf[..frame.buffer_size()];
    let first = &px[..3];
    let differing = px.chunks(frame.buffer_size() / (w * h) as usize).filter(|p| &p[..3] != first).count();
    assert!(differing > 10_000, "the screenshot is nearly blank ({differing} pixels differ from the first)");
}

/// The robustness table on constructed results: the gap after an attack against the oracle
/// after the same attack, by hand.
#[test]
fn robustness_gap_against_the_attacked_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("cells");
    // (world, method) → (forget MC accuracy before, after quantize:int4)
    let table = [
        (0, "final", 1.0, 0.9),
        (0, "retrain", 0.2, 0.2),
        (0, "npo", 0.25, 0.5),
        (1, "final", 1.0, 1.0),
        (1, "retrain", 0.3, 0.3),
        (1, "npo", 0.35, 0.7),
    ];
    for (w, method, before, after) in table {
        let kind = if method == "npo" { "npo" } else { "reference" };
        write_cell(
            &cells,
            "m",
            method,
            kind,
            json!({}),
            w,
            0,
            &[rec("mc_accuracy/forget", before), rec("attack/quantize:int4/mc_accuracy/forget", after)],
        );
    }
    let out = tmp.path().join("out");
    report::build(tmp.path(), &out).unwrap();
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    let section = section(&index, "## Robustness", "## Figures");
    assert!(section.contains("### Model `m`, attack quantize:int4"), "{section}");
    // npo after: (0.5 + 0.7)/2 = 0.6; gap per world 0.3, 0.4 → +0.350, interval over the two
    // worlds [0.3, 0.4]; before: 0.05 in both worlds → +0.050
    let npo = line_of(section, "| npo |");
    assert!(npo.contains("0.600 [0.500, 0.700] (gap +0.350 [+0.300, +0.400]; before +0.050)"), "{npo}");
    // θ_D: after 0.95, gap (0.7 + 0.7)/2 = +0.700; before (0.8 + 0.7)/2 = +0.750
    assert!(
        line_of(section, "| *final (θ_D)* |").contains("(gap +0.700 [+0.700, +0.700]; before +0.750)"),
        "{section}"
    );
    // the attack's columns stay out of the full table
    let tables = std::fs::read_to_string(out.join("tables.md")).unwrap();
    let full = self::section(&tables, "## All metrics", "## Comparisons");
    assert!(!full.contains("after quantize:int4"), "{full}");
}
