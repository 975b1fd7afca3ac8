//! The reporter on a fixed results folder written by hand: the Markdown table has the expected
//! rows and values (means and bootstrap intervals worked out by hand below), the best
//! method per column is marked according to each metric's direction, failed cells are listed
//! separately, and every promised file is written: long.parquet read back equals long.csv, and
//! every plot's PNG is a valid, non-blank image of the promised size.

use std::path::Path;

use serde_json::{json, Value};

const HIGHER: &str = "higher_is_better";
const LOWER: &str = "lower_is_better";

/// metrics: [(name, direction, value)]
fn cell(dir: &Path, id: &str, method: &str, kind: &str, params: Value, seed: u64, metrics: &[(&str, Value, Value)]) {
    let mut m = serde_json::Map::new();
    for (name, direction, value) in metrics {
        m.insert((*name).into(), json!({ "direction": direction, "value": value, "per_example": [value] }));
    }
    let body = json!({
        "schema_version": 1,
        "sweep": "s",
        "cell": { "id": id, "key": id, "method": method, "kind": kind, "params": params, "model": "m", "seed": seed },
        "status": "ok",
        "metrics": m,
        "resolved_config": {},
        "provenance": { "crate_version": "0.0.0", "git_commit": null },
        "timings": { "started_unix": 0.0, "finished_unix": 1.0, "stages": {} },
        "loss_curves": if method == "gradient_ascent" { json!({ "unlearn": [[0, 2.0], [1, 2.5], [2, null]] }) } else { json!({}) },
    });
    std::fs::write(dir.join(format!("{id}.json")), serde_json::to_string_pretty(&body).unwrap()).unwrap();
}

/// (tofu_forget_quality ↑, kl_to_oracle/forget → oracle, tofu_model_utility ↑, muse_privleak → oracle)
fn four(fq: f64, kl: f64, mu: f64, pl: f64) -> Vec<(&'static str, Value, Value)> {
    vec![
        ("tofu_forget_quality", json!(HIGHER), json!(fq)),
        ("kl_to_oracle/forget", json!(LOWER), json!(kl)),
        ("tofu_model_utility", json!(HIGHER), json!(mu)),
        ("muse_privleak", json!({ "closer_to": 0.0 }), json!(pl)),
    ]
}

fn fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("results/s/cells");
    std::fs::create_dir_all(&cells).unwrap();
    let d = cells.as_path();
    let msa = |alpha: f64, ck: &str| json!({ "alpha": alpha, "beta": 0.0, "checkpoint": ck });
    cell(d, "final-0", "final", "reference", json!({}), 0, &four(0.01, 0.5, 0.60, 20.0));
    cell(d, "final-1", "final", "reference", json!({}), 1, &four(0.03, 0.7, 0.62, 22.0));
    cell(d, "retrain-0", "retrain", "reference", json!({}), 0, &four(1.0, 0.0, 0.58, 0.0));
    cell(d, "retrain-1", "retrain", "reference", json!({}), 1, &four(1.0, 0.0, 0.60, 0.0));
    cell(d, "msa-a1-0", "msa", "msa", msa(1.0, "latest-clean"), 0, &four(0.2, 0.2, 0.55, -5.0));
    cell(d, "msa-a1-1", "msa", "msa", msa(1.0, "latest-clean"), 1, &four(0.4, 0.4, 0.57, -7.0));
    cell(d, "msa-a2-0", "msa", "msa", msa(2.0, "latest-clean"), 0, &four(0.5, 0.1, 0.40, 10.0));
    cell(d, "msa-a2-1", "msa", "msa", msa(2.0, "latest-clean"), 1, &four(0.7, 0.3, 0.44, 12.0));
    cell(d, "msa-d2-0", "msa", "msa", msa(1.0, "distance:2"), 0, &four(0.1, 0.35, 0.5, 8.0));
    cell(d, "msa-d2-1", "msa", "msa", msa(1.0, "distance:2"), 1, &four(0.1, 0.35, 0.5, 8.0));
    cell(d, "ga-0", "gradient_ascent", "gradient_ascent", json!({}), 0, &four(0.05, 0.9, 0.3, -3.0));
    // seed 1 of gradient ascent failed
    let failed = json!({
        "schema_version": 1, "sweep": "s",
        "cell": { "id": "ga-1", "key": "ga-1", "method": "gradient_ascent", "kind": "gradient_ascent", "params": {}, "model": "m", "seed": 1 },
        "status": "failed",
        "error_chain": ["unlearning with gradient_ascent", "loss is NaN at step 3"],
        "resolved_config": {}, "provenance": { "crate_version": "0.0.0", "git_commit": null },
        "timings": { "started_unix": 0.0, "finished_unix": 1.0, "stages": {} }
    });
    std::fs::write(d.join("ga-1.json"), failed.to_string()).unwrap();
    // an interrupted write: must be ignored
    std::fs::write(d.join(".msa-a3-0.json.tmp.77.0"), "{\"schema_version\": 1, \"swe").unwrap();
    // the headline point of msa (three grid points)
    std::fs::write(
        tmp.path().join("results/s/report.json"),
        json!({ "headline": { "msa": { "alpha": 1, "checkpoint": "latest-clean" } } }).to_string(),
    )
    .unwrap();
    tmp
}

// Hand computation. One world (the fixture's cells have no world_seed: 0), so each mean is the
// mean over the two seeds, and each metric has one per-example value per run, so the interval
// resamples the two runs' values: of the 2000 replicate means (a, (a+b)/2 or b, with
// probabilities 1/4, 1/2, 1/4) the 2.5 % quantile is the smaller value and the 97.5 % the
// larger, i.e. the interval is [min, max] of the two seeds:
//   final      fq 0.020 [0.010, 0.030]   kl 0.600 [0.500, 0.700]   mu 0.610   pl 21 [20, 22]
//   retrain    fq 1 [1, 1]               kl 0 [0, 0]               mu 0.590   pl 0 [0, 0]
//   ga         (one seed) 0.05, 0.9, 0.3, −3: no interval
//   msa d2     fq 0.1, kl 0.35, mu 0.5, pl 8
//   msa a1     fq 0.300 [0.200, 0.400]   kl 0.300 [0.200, 0.400]   mu 0.560 [0.550, 0.570]   pl −6 [−7, −5]
//   msa a2     fq 0.600 [0.500, 0.700]   kl 0.200 [0.100, 0.300]   mu 0.420                  pl 11 [10, 12]
// Utility gate (default; perplexity/general is not in the results, so model utility alone):
// mu / θ_D's 0.61 ≥ 0.9 → msa a1 0.918 passes; msa a2 0.689, msa d2 0.820, ga 0.492 fail.
// So msa a1 is the only row that can be marked best, and it is in every column with a target
// although msa a2 has the larger forget quality and the smaller KL: a row that fails the gate
// never wins. Δ to the oracle (0 for KL and PrivLeak): KL's Δ is its value (not repeated);
// PrivLeak's Δ of msa a1 is |−6| = 6. Headline: references, ga (one grid point), msa a1
// (declared); msa a2 and d2 are in the appendix only.

#[test]
fn report_on_a_fixed_results_folder() {
    let tmp = fixture();
    let out = tmp.path().join("report");
    let summary = report::build(&tmp.path().join("results/s"), &out).unwrap();
    assert_eq!((summary.cells_ok, summary.cells_failed), (11, 1));

    let tables = std::fs::read_to_string(out.join("tables.md")).unwrap();
    let full = &tables[tables.find("## All metrics").unwrap()..tables.find("## Comparisons").unwrap()];
    let row = |label: &str| -> String {
        let start = full.find(&format!("| {label} |")).unwrap_or_else(|| panic!("no row {label}:\n{full}"));
        full[start..].lines().next().unwrap().to_owned()
    };
    // the full table (the appendix)
    assert!(tables.contains(
        "| method | worlds | runs | utility gate | KL to oracle, forget text (→ oracle 0) | PrivLeak (%) (→ oracle 0) | forget quality (KS p) ↑ | model utility ↑ |"
    ), "{tables}");
    assert_eq!(
        row("msa (alpha=1, beta=0, checkpoint=latest-clean)"),
        "| msa (alpha=1, beta=0, checkpoint=latest-clean) | 1 | 2 | pass | **0.300 [0.200, 0.400]** | **-6.000 [-7.000, -5.000] · Δ 6.000** | **0.300 [0.200, 0.400]** | **0.560 [0.550, 0.570]** |"
    );
    assert_eq!(
        row("msa (alpha=2, beta=0, checkpoint=latest-clean)"),
        "| msa (alpha=2, beta=0, checkpoint=latest-clean) | 1 | 2 | **✗ fail** | 0.200 [0.100, 0.300] | 11.000 [10.000, 12.000] | 0.600 [0.500, 0.700] | 0.420 [0.400, 0.440] |"
    );
    assert_eq!(
        row("gradient_ascent"),
        "| gradient_ascent | 1 | 1 | **✗ fail** | 0.900 | -3.000 · Δ 3.000 | 0.050 | 0.300 |"
    );
    assert_eq!(
        row("*final (θ_D)*"),
        "| *final (θ_D)* | 1 | 2 |  | 0.600 [0.500, 0.700] | 21.000 [20.000, 22.000] | 0.020 [0.010, 0.030] | 0.610 [0.600, 0.620] |"
    );
    assert!(tables.contains("1 run: no interval (gradient_ascent)"), "{tables}");
    assert!(
        tables.contains("1 failed cell(s):\n\n- `ga-1` — unlearning with gradient_ascent: loss is NaN at step 3\n"),
        "{tables}"
    );

    // the headline: one row per method, the declared msa point only
    let index = std::fs::read_to_string(out.join("index.md")).unwrap();
    let headline = &index[index.find("## Headline").unwrap()..index.find("## Claims").unwrap()];
    assert!(headline.contains("| msa | pass |"), "{headline}");
    assert!(headline.contains("Headline points: msa (alpha=1, beta=0, checkpoint=latest-clean)."), "{headline}");
    assert!(!headline.contains("alpha=2") && !headline.contains("distance:2"), "{headline}");
    assert!(headline.contains("| gradient_ascent | **✗ fail** |"), "{headline}");
    assert!(index.contains("12 cells, 11 ok, 1 failed"), "{index}");
    assert!(
        index.contains("utility gate criteria not measured (not in the results): perplexity/general ≤ 1.5 × θ_D's"),
        "{index}"
    );
    assert!(index.contains("no second oracle"), "{index}");

    for f in &summary.files {
        assert!(f.is_file(), "{} listed but not written", f.display());
    }
    for png in summary.files.iter().filter(|f| f.extension().is_some_and(|e| e == "png")) {
        check_png(png);
    }

    let csv = std::fs::read_to_string(out.join("long.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "sweep,cell,method,kind,params,model,world_seed,seed,metric,value,direction,target");
    assert_eq!(lines.len(), 1 + 11 * 4);
    assert!(lines.contains(
        &"s,msa-a2-1,msa,msa,alpha=2;beta=0;checkpoint=latest-clean,m,0,1,kl_to_oracle/forget,0.3,lower_is_better,toward_oracle"
    ));
    assert!(lines.contains(&"s,ga-0,gradient_ascent,gradient_ascent,,m,0,0,muse_privleak,-3,closer_to:0,toward_oracle"));
    assert!(!csv.contains("ga-1"), "failed cells have no metric rows");
    assert_eq!(parquet_as_csv(&out.join("long.parquet")), csv);

    let tex = std::fs::read_to_string(out.join("tables.tex")).unwrap();
    assert!(
        tex.contains("\\emph{final ($\\theta$\\_D)} & 1 & 2 &  & 0.600 [0.500, 0.700] & 21.000 [20.000, 22.000]"),
        "{tex}"
    );
    assert!(tex.contains("\\textbf{0.560 [0.550, 0.570]}"), "{tex}");
}

/// A PNG file's signature and IHDR (read by hand, PNG spec §5.2–5.3, §11.2.2), then its pixels
/// (decoded with `png`): 800 × 520, 8-bit RGB, not all one colour, with dark (text, axis) pixels.
#[track_caller]
fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}: no PNG signature", path.display());
    // chunk length 13, type IHDR, width, height (big-endian), bit depth 8, colour type 2 (RGB)
    assert_eq!(&bytes[8..16], b"\0\0\0\x0dIHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!((be(16), be(20), bytes[24], bytes[25]), (800, 520, 8, 2), "{}", path.display());

    let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut rgb).unwrap();
    assert_eq!(rgb.len(), 800 * 520 * 3);
    let pixels: Vec<&[u8]> = rgb.chunks(3).collect();
    assert_eq!(pixels[0], [255, 255, 255], "{}: background is white", path.display());
    let non_white = pixels.iter().filter(|p| **p != [255, 255, 255]).count();
    let dark = pixels.iter().filter(|p| p.iter().all(|&c| c < 100)).count();
    let coloured = pixels.iter().filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 60).count();
    // Axes, tick labels and the title alone cover well over a thousand pixels.
    assert!(
        dark > 1000 && coloured > 20,
        "{}: {non_white} non-white, {dark} dark, {coloured} coloured pixels",
        path.display()
    );
}

/// The long table read back from Parquet with `parquet`'s record reader, printed as CSV the
/// way `long.csv` is (the fixture has no field that needs quoting); also checks each column's type.
fn parquet_as_csv(path: &Path) -> String {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let names: Vec<String> =
        reader.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_owned()).collect();
    let mut out = names.join(",") + "\n";
    for row in reader.get_row_iter(None).unwrap() {
        let fields: Vec<String> = row
            .unwrap()
            .get_column_iter()
            .map(|(name, f)| match (name.as_str(), f) {
                ("seed" | "world_seed", Field::ULong(u)) => u.to_string(),
                ("value", Field::Double(x)) => format!("{x}"),
                ("value", Field::Null) => String::new(),
                (_, Field::Str(s)) if !matches!(name.as_str(), "seed" | "world_seed" | "value") => s.clone(),
                other => panic!("unexpected column type {other:?}"),
            })
            .collect();
        out += &(fields.join(",") + "\n");
    }
    out
}

#[test]
fn long_parquet_keeps_nulls_types_and_large_seeds() {
    use report::tables::{long_rows, write_long_csv, write_long_parquet, LongRow};
    let row = |seed: u64, value: Option<f64>| LongRow {
        sweep: "s".into(),
        cell: format!("c{seed}"),
        method: "msa".into(),
        kind: "msa".into(),
        params: "alpha=1.5;beta=0".into(),
        model: "m".into(),
        world_seed: seed.wrapping_add(1),
        seed,
        metric: "privleak".into(),
        value,
        direction: "closer_to:0".into(),
        target: if seed == 7 { String::new() } else { "toward_oracle".into() },
    };
    // u64::MAX needs the unsigned annotation (as i64 it would read back as -1).
    let mut rows = vec![row(0, Some(-0.125)), row(u64::MAX, None), row(7, Some(2.5e-7)), row(8, None)];
    // a field that needs RFC 4180 quoting: a comma and a double quote
    rows[3].params = "checkpoint=path:a,\"b\"".into();
    let tmp = tempfile::tempdir().unwrap();
    let (csv, pq) = (tmp.path().join("l.csv"), tmp.path().join("l.parquet"));
    write_long_csv(&rows, &csv).unwrap();
    write_long_parquet(&rows, &pq).unwrap();
    let expected = "sweep,cell,method,kind,params,model,world_seed,seed,metric,value,direction,target\n\
                    s,c0,msa,msa,alpha=1.5;beta=0,m,1,0,privleak,-0.125,closer_to:0,toward_oracle\n\
                    s,c18446744073709551615,msa,msa,alpha=1.5;beta=0,m,0,18446744073709551615,privleak,,closer_to:0,toward_oracle\n\
                    s,c7,msa,msa,alpha=1.5;beta=0,m,8,7,privleak,0.00000025,closer_to:0,\n\
                    s,c8,msa,msa,\"checkpoint=path:a,\"\"b\"\"\",m,9,8,privleak,,closer_to:0,toward_oracle\n";
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), expected);
    // Parquet has no quoting: its fields printed as they are
    let unquoted = expected.replace("\"checkpoint=path:a,\"\"b\"\"\"", "checkpoint=path:a,\"b\"");
    assert_eq!(parquet_as_csv(&pq), unquoted);

    // No rows: a valid file with the schema and nothing in it.
    write_long_parquet(&long_rows(&[]), &pq).unwrap();
    assert_eq!(
        parquet_as_csv(&pq),
        "sweep,cell,method,kind,params,model,world_seed,seed,metric,value,direction,target\n"
    );
}

#[test]
fn results_root_with_several_sweeps_is_merged() {
    let tmp = fixture();
    let summary = report::build(&tmp.path().join("results"), &tmp.path().join("r2")).unwrap();
    assert_eq!(summary.cells_ok, 11);
}

#[test]
fn missing_results_folder_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let err = report::build(&tmp.path().join("nope"), &tmp.path().join("out")).unwrap_err();
    assert!(format!("{err:#}").contains("nope: no such results folder"));
}

#[test]
fn stats_ignore_non_finite_values() {
    let s = report::tables::Stat::of(&[1.0, f64::NAN, 3.0]).unwrap();
    // mean 2, sample std sqrt(((1-2)^2 + (3-2)^2) / 1) = sqrt(2)
    assert_eq!((s.mean, s.n), (2.0, 2));
    assert!((s.std.unwrap() - 2f64.sqrt()).abs() < 1e-15);
    assert!(report::tables::Stat::of(&[f64::NAN]).is_none());
}

#[test]
fn checkpoint_distance_parsing() {
    use report::plots::checkpoint_distance as d;
    assert_eq!(d(&json!("latest-clean")), Some(0.0));
    assert_eq!(d(&json!("distance:4")), Some(4.0));
    assert_eq!(d(&json!("step:300")), None);
    assert_eq!(d(&json!(2)), None);
}
