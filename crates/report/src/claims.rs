//! The claims table: each claim about MSA as a row, tested on the results — the MSA paper's
//! (Rezaei et al., ICLR 2026) and the widely read summary's — with the metric used, the effect
//! and its 95 % interval, the p-value (Holm-corrected over every p-value of the table) and a
//! verdict. Generated from the results; nothing is written by hand.
//!
//! Rows use the headline points ([`crate::tables::SummaryRow::headline`]) of the MSA method
//! (kind `msa`) and the baselines, except the dose–response claims (b, d), which use every MSA
//! grid point. The forget-side statistic is the per-example distance to the oracle
//! ([`crate::compare`]: |value − the oracle's value on the same example, same world|, averaged
//! over a world's method seeds; KL to the oracle is itself a distance), on each of
//! [`CLAIM_METRICS`] the results have.
//!
//! | claim | effect | verdict rule (fixed before looking) |
//! |---|---|---|
//! | (a) MSA forgets as well as or better than the best baseline at equal utility | MSA − best gate-passing baseline (smallest Δ), paired | supported: MSA passes the gate and the interval's upper end < δ (non-inferiority, margin δ = the column's noise floor, 0 without one); not supported: MSA fails the gate, or the lower end > δ; else inconclusive |
//! | (b) the closer θ_0 is to the exposure, the better | Spearman ρ of checkpoint distance vs the run's Δ, strata = (world, seed, other parameters) | supported: ρ > 0 and Holm p ≤ 0.05; not supported: ρ < 0 and Holm p ≤ 0.05; else inconclusive |
//! | (c) MSA beats task negation | MSA − task negation, paired | supported: effect < 0 and Holm p ≤ 0.05; not supported: effect > 0 and Holm p ≤ 0.05; else inconclusive |
//! | (d) larger α forgets more; β > 0 keeps utility | ρ of α vs forget MC accuracy (expected < 0); ρ of β vs model utility (expected > 0) | as (b), in the expected direction |
//! | (s) the summary: MSA forgets 12.7–28.4 % better than the best baseline | relative Δ reduction 1 − Δ_MSA / Δ_best, paired ratio bootstrap | supported: lower end ≥ 12.7 %; not supported: upper end < 12.7 %; else inconclusive |
//!
//! p-values: Wilcoxon signed-rank over the pooled (world, example) pairs for paired effects;
//! a permutation test within strata for ρ (`stats::stratified_spearman`, 2000 permutations).
//! A claim the results cannot test (no MSA grid over α, one checkpoint, no task negation row)
//! is listed as "not tested" with the reason.

use std::collections::BTreeMap;

use crate::aggregate::{groups, Group, BOOTSTRAP};
use crate::compare::{paired_distances, wilcoxon_against_zero};
use crate::fmt_num;
use crate::plots::checkpoint_distance;
use crate::render::{Cell, Emphasis, Table};
use crate::results::{is_paper_msa, CellFile, Scale, REFERENCE_RETRAIN};
use crate::tables::{params_text, scaled_distance, Summary, SummaryRow};

/// Forget-side records the paired claims are tested on (each that is present).
pub const CLAIM_METRICS: &[&str] = &["mc_accuracy/forget", "kl_to_oracle/forget"];

/// Permutations of the Spearman tests.
pub const PERMUTATIONS: usize = 2000;

const NO_SHARED_EXAMPLES: &str = "no per-example values shared by both rows and the oracle";

/// The family-wise error rate of the verdicts.
pub const ALPHA: f64 = 0.05;

/// The summary's range of relative improvement (12.7–28.4 %): its lower end.
pub const SUMMARY_LOW: f64 = 0.127;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Supported,
    NotSupported,
    Inconclusive,
    NotTested,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::NotSupported => "not supported",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotTested => "not tested",
        }
    }
}

/// How a verdict is reached from the numbers (applied after Holm's correction).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    /// Non-inferiority with margin δ: supported when hi < δ, not supported when lo > δ.
    NonInferior { margin: f64 },
    /// A difference expected below 0 (or a ρ expected with `sign`): decided by Holm p.
    Directional { sign: f64 },
    /// A relative reduction expected at least `low`.
    AtLeast { low: f64 },
}

/// One row of the claims table.
#[derive(Clone, Debug)]
pub struct Claim {
    pub model: String,
    /// "(a)", "(b)", …
    pub id: String,
    pub claim: String,
    /// Where the claim is from ("paper", "summary").
    pub source: &'static str,
    /// The metric and the rows compared.
    pub metric: String,
    /// The effect: estimate and interval; `None` when not tested.
    pub effect: Option<stats::Interval>,
    /// How the effect reads ("MSA − npo (Δ)", "ρ").
    pub effect_name: String,
    pub p_value: Option<f64>,
    pub holm: Option<f64>,
    pub verdict: Verdict,
    /// Why, in a sentence (the rule applied, or why it was not tested).
    pub reason: String,
    rule: Option<Rule>,
    /// MSA failed the utility gate (claim a).
    msa_fails_gate: bool,
}

impl Claim {
    fn untested(model: &str, id: &str, claim: &str, source: &'static str, metric: &str, reason: String) -> Claim {
        Claim {
            model: model.into(),
            id: id.into(),
            claim: claim.into(),
            source,
            metric: metric.into(),
            effect: None,
            effect_name: String::new(),
            p_value: None,
            holm: None,
            verdict: Verdict::NotTested,
            reason,
            rule: None,
            msa_fails_gate: false,
        }
    }
}

const CLAIM_A: &str = "MSA forgets as well as or better than the best baseline at equal utility";
const CLAIM_B: &str = "the closer θ_0 is to the exposure, the better MSA forgets";
const CLAIM_C: &str = "MSA beats task negation (same fine-tuning budget)";
const CLAIM_D1: &str = "larger α forgets more (forget accuracy falls with α)";
const CLAIM_D2: &str = "β > 0 (the retain vector) keeps utility (utility rises with β)";
const CLAIM_S: &str = "MSA forgets 12.7–28.4 % better than the best baseline";

/// Every claim for every model, Holm-adjusted, with verdicts.
pub fn claims(cells: &[CellFile], summaries: &[Summary]) -> Vec<Claim> {
    let all_groups = groups(cells);
    let mut out = Vec::new();
    for s in summaries {
        let of_model: Vec<&Group> = all_groups.iter().filter(|g| g.model == s.model).collect();
        let find = |r: &SummaryRow| of_model.iter().copied().find(|g| g.method == r.method && *g.params == r.params);
        let oracle = of_model.iter().copied().find(|g| g.is_reference && g.method == REFERENCE_RETRAIN);
        let headline: Vec<&SummaryRow> = s.rows.iter().filter(|r| r.headline && !r.is_reference).collect();
        let msa = headline.iter().copied().find(|r| is_paper_msa(&r.kind, &r.params));
        let model = s.model.as_str();
        let Some(oracle) = oracle else {
            out.push(Claim::untested(model, "(a–d)", "every claim", "paper", "–", "no oracle (retrain) row".into()));
            continue;
        };
        let Some(msa_row) = msa else {
            out.push(Claim::untested(
                model,
                "(a–d)",
                "every claim",
                "paper",
                "–",
                "no MSA headline row (declare [report] headline.msa)".into(),
            ));
            continue;
        };
        let msa_group = find(msa_row);
        let metrics: Vec<&str> = CLAIM_METRICS.iter().copied().filter(|m| s.column(m).is_some()).collect();
        if metrics.is_empty() {
            out.push(Claim::untested(
                model,
                "(a, c, s)",
                CLAIM_A,
                "paper",
                "–",
                format!("none of {} scored", CLAIM_METRICS.join(", ")),
            ));
        }
        for &metric in &metrics {
            let floor = s.noise_floor.as_ref().and_then(|nf| nf.values.get(metric)).copied();
            // (a) and (s): the best gate-passing baseline by Δ
            let best = headline
                .iter()
                .copied()
                .filter(|r| r.kind != "msa" && r.gate.passes())
                .filter_map(|r| Some((r, r.stats.get(metric)?.distance?)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match (best, msa_group) {
                (Some((b, _)), Some(mg)) => {
                    if let Some(bg) = find(b) {
                        let mut c = paired(model, "(a)", CLAIM_A, metric, mg, bg, oracle, &b.method);
                        c.rule = Some(Rule::NonInferior { margin: floor.unwrap_or(0.0) });
                        c.msa_fails_gate = !msa_row.gate.passes();
                        out.push(c);
                        out.push(reduction(model, metric, mg, bg, oracle, &b.method, msa_row, b));
                    }
                }
                _ => out.push(Claim::untested(
                    model,
                    "(a)",
                    CLAIM_A,
                    "paper",
                    metric,
                    "no baseline headline row passes the utility gate".into(),
                )),
            }
            // (c) task negation
            match (headline.iter().find(|r| r.kind == "task_negation").and_then(|r| find(r)), msa_group) {
                (Some(tg), Some(mg)) => {
                    let mut c = paired(model, "(c)", CLAIM_C, metric, mg, tg, oracle, tg.method);
                    c.rule = Some(Rule::Directional { sign: -1.0 });
                    let budget =
                        |p: &BTreeMap<String, serde_json::Value>| (p.get("lr").cloned(), p.get("epochs").cloned());
                    if budget(mg.params) != budget(tg.params) {
                        c.reason = format!(
                            "note: fine-tuning budgets differ (MSA {}, task negation {}); ",
                            params_text(mg.params, ", "),
                            params_text(tg.params, ", ")
                        );
                    }
                    out.push(c);
                }
                _ => out.push(Claim::untested(
                    model,
                    "(c)",
                    CLAIM_C,
                    "paper",
                    metric,
                    "no task negation headline row".into(),
                )),
            }
        }
        // (b) checkpoint distance: every MSA row with a parsable checkpoint
        let primary = metrics.first().copied().unwrap_or("mc_accuracy/forget");
        let scale = s.column(primary).map_or(Scale::Linear, |c| c.scale);
        let msa_groups: Vec<&Group> =
            of_model.iter().copied().filter(|g| !g.is_reference && is_paper_msa(g.kind, g.params)).collect();
        out.push(dose(
            model,
            "(b)",
            CLAIM_B,
            primary,
            &msa_groups,
            "checkpoint",
            &|v| checkpoint_distance(v),
            1.0,
            &|c: &CellFile, w: u64| {
                let v = c.metrics.get(primary)?.finite_value()?;
                let o = oracle_world_mean(oracle, primary, w)?;
                if primary.starts_with("kl_to_oracle") {
                    Some(v)
                } else {
                    scaled_distance(scale, v, o)
                }
            },
            "ρ(checkpoint distance, Δ)",
        ));
        out.push(dose(
            model,
            "(d)",
            CLAIM_D1,
            "mc_accuracy/forget",
            &msa_groups,
            "alpha",
            &|v| v.as_f64(),
            -1.0,
            &|c: &CellFile, _| c.metrics.get("mc_accuracy/forget")?.finite_value(),
            "ρ(α, forget MC accuracy)",
        ));
        out.push(dose(
            model,
            "(d)",
            CLAIM_D2,
            "tofu_model_utility",
            &msa_groups,
            "beta",
            &|v| v.as_f64(),
            1.0,
            &|c: &CellFile, _| c.metrics.get("tofu_model_utility")?.finite_value(),
            "ρ(β, model utility)",
        ));
    }
    // claims in order (a), (b), (c), (d), (s) within each model; Holm over every p-value
    out.sort_by(|a, b| a.model.cmp(&b.model).then_with(|| a.id.cmp(&b.id)));
    let tested: Vec<usize> = (0..out.len()).filter(|&i| out[i].p_value.is_some()).collect();
    let p: Vec<f64> = tested.iter().filter_map(|&i| out[i].p_value).collect();
    if let Ok(adjusted) = stats::holm(&p) {
        for (&i, q) in tested.iter().zip(adjusted) {
            out[i].holm = Some(q);
        }
    }
    for c in &mut out {
        decide(c);
    }
    out
}

fn oracle_world_mean(oracle: &Group, metric: &str, world: u64) -> Option<f64> {
    let runs = oracle.by_world(metric);
    let v: Vec<f64> = runs.get(&world)?.iter().filter_map(|m| m.finite_value()).filter(|v| v.is_finite()).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// A paired comparison MSA − other on per-example distances to the oracle.
#[allow(clippy::too_many_arguments)]
fn paired(
    model: &str,
    id: &str,
    claim: &str,
    metric: &str,
    msa: &Group,
    other: &Group,
    oracle: &Group,
    other_name: &str,
) -> Claim {
    let mut c = Claim::untested(model, id, claim, "paper", metric, String::new());
    c.effect_name = format!("MSA − {other_name} (Δ)");
    let Some((a, b)) = paired_distances(msa, other, oracle, metric) else {
        c.reason = NO_SHARED_EXAMPLES.into();
        return c;
    };
    match (stats::paired_differences(&a, &b), stats::paired_cluster_bootstrap_mean_ci(&a, &b, &BOOTSTRAP)) {
        (Ok(d), Ok(i)) => {
            c.effect = Some(i);
            c.p_value = wilcoxon_against_zero(&d).map(|w| w.p_value);
            c.verdict = Verdict::Inconclusive;
        }
        (Err(e), _) | (_, Err(e)) => c.reason = format!("cannot pair the examples: {e:#}"),
    }
    c
}

/// Paired values of one stratum: (MSA's, the baseline's).
type Paired = (Vec<f64>, Vec<f64>);

/// (s): the relative Δ reduction of MSA against the best baseline.
#[allow(clippy::too_many_arguments)] // each is a distinct input of the one job; a struct would only rename them
fn reduction(
    model: &str,
    metric: &str,
    msa: &Group,
    best: &Group,
    oracle: &Group,
    best_name: &str,
    msa_row: &SummaryRow,
    best_row: &SummaryRow,
) -> Claim {
    let mut c = Claim::untested(model, "(s)", CLAIM_S, "summary", metric, String::new());
    c.effect_name = format!("1 − Δ_MSA / Δ_{best_name}");
    let Some((a, b)) = paired_distances(msa, best, oracle, metric) else {
        c.reason = NO_SHARED_EXAMPLES.into();
        return c;
    };
    match stats::paired_cluster_bootstrap_reduction_ci(&a, &b, &BOOTSTRAP) {
        Ok(i) => {
            c.effect = Some(i);
            c.rule = Some(Rule::AtLeast { low: SUMMARY_LOW });
            c.verdict = Verdict::Inconclusive;
            let u = |r: &SummaryRow| r.stats.get("tofu_model_utility").map(|s| s.mean);
            if let (Some(x), Some(y)) = (u(msa_row), u(best_row)) {
                c.reason =
                    format!("model utility MSA {} vs {best_name} {} (the summary: +0.3 %); ", fmt_num(x), fmt_num(y));
            }
        }
        Err(e) => c.reason = format!("{e:#}"),
    }
    c
}

/// A dose–response claim: stratified Spearman ρ of a parameter against a per-run value.
#[allow(clippy::too_many_arguments)]
fn dose(
    model: &str,
    id: &str,
    claim: &str,
    metric: &str,
    msa: &[&Group],
    param: &str,
    x_of: &dyn Fn(&serde_json::Value) -> Option<f64>,
    sign: f64,
    y_of: &dyn Fn(&CellFile, u64) -> Option<f64>,
    effect_name: &str,
) -> Claim {
    let mut c = Claim::untested(model, id, claim, "paper", metric, String::new());
    c.effect_name = effect_name.into();
    // cluster = world; stratum = (seed, the other parameters)
    let mut by_world: BTreeMap<u64, BTreeMap<String, Paired>> = BTreeMap::new();
    let mut xs = Vec::new();
    for g in msa {
        let Some(x) = g.params.get(param).and_then(x_of) else { continue };
        xs.push(x);
        let mut others = g.params.clone();
        others.remove(param);
        for cell in &g.cells {
            let w = cell.cell.world_seed;
            let Some(y) = y_of(cell, w).filter(|y| y.is_finite()) else { continue };
            let key = format!("seed={};{}", cell.cell.seed, params_text(&others, ","));
            let e = by_world.entry(w).or_default().entry(key).or_default();
            e.0.push(x);
            e.1.push(y);
        }
    }
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.len() < 2 {
        c.reason = format!("the MSA rows take {} value(s) of `{param}`; the claim needs at least two", xs.len());
        return c;
    }
    if by_world.is_empty() {
        c.reason = format!("the MSA rows have no `{metric}` values");
        return c;
    }
    let clusters: Vec<Vec<stats::Stratum>> = by_world.into_values().map(|m| m.into_values().collect()).collect();
    match stats::stratified_spearman(&clusters, &BOOTSTRAP, PERMUTATIONS) {
        Ok(r) => {
            c.effect = Some(r.interval);
            c.p_value = Some(r.p_value);
            c.rule = Some(Rule::Directional { sign });
            c.verdict = Verdict::Inconclusive;
            c.reason = format!("{} strata in {} world(s); ", r.strata, r.clusters);
        }
        Err(e) => c.reason = format!("{e:#}"),
    }
    c
}

fn decide(c: &mut Claim) {
    let (Some(rule), Some(e)) = (c.rule, c.effect) else {
        return;
    };
    let significant = c.holm.is_some_and(|q| q <= ALPHA);
    let (verdict, why) = match rule {
        Rule::NonInferior { margin } => {
            if c.msa_fails_gate {
                (Verdict::NotSupported, "MSA's headline row fails the utility gate".to_owned())
            } else if e.hi < margin {
                (
                    Verdict::Supported,
                    format!("upper end {} < margin δ = {} (noise floor)", fmt_num(e.hi), fmt_num(margin)),
                )
            } else if e.lo > margin {
                (
                    Verdict::NotSupported,
                    format!(
                        "lower end {} > margin δ = {}: MSA is farther from the oracle",
                        fmt_num(e.lo),
                        fmt_num(margin)
                    ),
                )
            } else {
                (Verdict::Inconclusive, format!("the interval contains the margin δ = {}", fmt_num(margin)))
            }
        }
        Rule::Directional { sign } => {
            let expected = e.mean * sign > 0.0;
            match (significant, expected) {
                (true, true) => (Verdict::Supported, format!("Holm p ≤ {ALPHA}, in the claimed direction")),
                (true, false) => (Verdict::NotSupported, format!("Holm p ≤ {ALPHA}, against the claimed direction")),
                (false, _) => (Verdict::Inconclusive, format!("Holm p > {ALPHA}")),
            }
        }
        Rule::AtLeast { low } => {
            if e.lo >= low {
                (Verdict::Supported, format!("lower end ≥ {:.1} %", low * 100.0))
            } else if e.hi < low {
                (Verdict::NotSupported, format!("upper end {:.1} % < {:.1} %", e.hi * 100.0, low * 100.0))
            } else {
                (Verdict::Inconclusive, format!("the interval contains {:.1} %", low * 100.0))
            }
        }
    };
    c.verdict = verdict;
    c.reason.push_str(&why);
}

/// The claims table (all models).
pub fn table(claims: &[Claim]) -> Table {
    let models: std::collections::BTreeSet<&str> = claims.iter().map(|c| c.model.as_str()).collect();
    let with_model = models.len() > 1;
    let mut header = vec!["claim", "source", "metric", "effect [95 % CI]", "p (Holm)", "verdict", "why"];
    if with_model {
        header.insert(0, "model");
    }
    let right: Vec<bool> = header.iter().map(|h| matches!(*h, "effect [95 % CI]" | "p (Holm)")).collect();
    let mut t = Table::new(&header, &right);
    for c in claims {
        let effect = match &c.effect {
            Some(e) if c.effect_name.starts_with("1 −") => {
                format!("{}: {:.1} % [{:.1}, {:.1}]", c.effect_name, e.mean * 100.0, e.lo * 100.0, e.hi * 100.0)
            }
            // a ρ's interval resamples worlds: with one world there is none
            Some(e) if c.effect_name.starts_with('ρ') && e.n_clusters < 2 => {
                format!("{}: {} (1 world: no interval)", c.effect_name, fmt_num(e.mean))
            }
            Some(e) => format!("{}: {} [{}, {}]", c.effect_name, fmt_num(e.mean), fmt_num(e.lo), fmt_num(e.hi)),
            None => "–".into(),
        };
        let p = match (c.p_value, c.holm) {
            (Some(p), Some(q)) => format!("{} ({})", fmt_num(p), fmt_num(q)),
            (Some(p), None) => fmt_num(p),
            _ => "–".into(),
        };
        let emphasis = match c.verdict {
            Verdict::Supported => Emphasis::Strong,
            Verdict::NotSupported => Emphasis::Alert,
            _ => Emphasis::None,
        };
        let mut line = vec![
            Cell::plain(format!("{} {}", c.id, c.claim)),
            Cell::plain(c.source),
            Cell::plain(c.metric.clone()),
            Cell::plain(effect),
            Cell::plain(p),
            Cell::with(c.verdict.as_str(), emphasis),
            Cell::plain(c.reason.clone()),
        ];
        if with_model {
            line.insert(0, Cell::plain(c.model.clone()));
        }
        t.rows.push(line);
    }
    t.note = format!(
        "Each claim tested on these results by a rule fixed in advance (crates/report/src/claims.rs). Δ: per-example \
         distance to the oracle (|value − oracle's| on the same example and world; KL is itself a distance), MSA − \
         other < 0 means MSA is closer to retraining. Paired effects: two-level bootstrap over worlds × examples \
         ({:.0} %, {} replicates), Wilcoxon signed-rank p; ρ: stratified Spearman (strata: world, seed and the other \
         parameters), cluster bootstrap over worlds, permutation p ({} permutations). Holm's correction over the {} \
         p-values of this table, α = {ALPHA}. Source \"paper\": Rezaei et al., ICLR 2026; \"summary\": the widely read \
         summary of it.",
        BOOTSTRAP.level * 100.0,
        BOOTSTRAP.replicates,
        PERMUTATIONS,
        claims.iter().filter(|c| c.p_value.is_some()).count()
    );
    t
}
