//! The evaluation suite on a real (micro) testbed world: the LmScorer answers mixed requests in
//! request order, exactly as the engine's own calls do; the oracle scored against itself gives
//! KL 0, parameter distance 0 and forget quality 1 (identical truth-ratio distributions: KS p =
//! 1); θ_D is at relative parameter distance 1; every requested metric has a value or a skip
//! reason; one model's evaluation is one scorer call.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::Device;
use evals::{Request, Response, Scorer as _};
use runner::scoring::LmScorer;
use runner::suite::{default_metrics, EvalLimits, EvalSuite, McAccuracy, McItem, OracleRefs};
use testbed::train::{build_or_load, BuiltWorld, ScratchModel};
use testbed::{ExposureConfig, WorldConfig, WorldKind};

/// A facts world with a micro model, trained in seconds and cached under the target folder.
fn world() -> &'static BuiltWorld {
    static W: OnceLock<BuiltWorld> = OnceLock::new();
    W.get_or_init(|| {
        let cfg = WorldConfig {
            n_entities: Some(20),
            attributes: Some(3),
            bio_paraphrases: Some(1),
            forget: Some("20%".into()),
            steps: Some(20),
            batch_size: Some(4),
            seq_len: Some(64),
            checkpoints: Some(4),
            exposure: Some(ExposureConfig { start_checkpoint: Some(1), ..Default::default() }),
            ..WorldConfig::new(WorldKind::Facts)
        };
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("runner-suite-worlds");
        let model = ScratchModel::preset("micro").unwrap();
        build_or_load(&cfg, Path::new("/nonexistent/unlearn-data"), &cache, &model, None).unwrap()
    })
}

fn data_dir() -> PathBuf {
    std::env::var_os("UNLEARN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"))
}

fn suite(names: &[String], limits: &EvalLimits) -> EvalSuite {
    let w = world();
    EvalSuite::from_world(&w.world, names, limits, &data_dir(), &w.final_model).unwrap()
}

fn limits() -> EvalLimits {
    EvalLimits {
        max_qa: 8,
        max_passages: 6,
        max_kl_texts: 3,
        answer_new_tokens: 6,
        verbmem_new_tokens: 8,
        ..EvalLimits::default()
    }
}

/// Oracle references for `s`, computed once per suite configuration.
fn refs(s: &EvalSuite) -> OracleRefs {
    s.oracle_pass(&world().oracle, &Device::Cpu).unwrap()
}

#[test]
fn lm_scorer_answers_mixed_requests_in_order_like_the_engine() {
    let w = world();
    let mut scorer = LmScorer::load(&w.final_model, &Device::Cpu, true).unwrap();
    scorer.batch_size = 3;
    let q = &w.world.qa[0];
    let doc = &w.world.corpus.docs[0].text;
    let reqs = vec![
        Request::loglik(q.prompt(), testbed::qa_continuation(&q.answer)),
        Request::Rolling { text: doc.clone() },
        Request::generate(q.prompt(), &["\n"], 5),
        Request::TokenLogprobs { text: doc.clone() },
        Request::Distributions { text: "Question: Who".into() },
        Request::loglik("", "Question"),
        Request::Rolling { text: "Answer: no".into() },
        Request::loglik(q.prompt(), testbed::qa_continuation(&q.perturbed_answers[0])),
        Request::generate("Question:", &[], 3),
    ];
    let got = scorer.run(&reqs).unwrap();
    assert_eq!(got.len(), reqs.len());

    // The engine called directly, kind by kind, in the same grouping.
    let engine = scorer.engine();
    let ll = engine
        .loglikelihood(&[
            (q.prompt(), testbed::qa_continuation(&q.answer)),
            ("".into(), "Question".into()),
            (q.prompt(), testbed::qa_continuation(&q.perturbed_answers[0])),
        ])
        .unwrap();
    let tl = engine.token_logprobs(&[doc.clone(), doc.clone(), "Answer: no".into()]).unwrap();
    let dist = engine.distributions(&["Question: Who".into()]).unwrap();
    let gen = engine.generate_until(&[(q.prompt(), vec!["\n".into()], 5), ("Question:".into(), vec![], 3)]).unwrap();
    let llr =
        |l: &lm::score::LogLik| Response::LogLik { logprob: l.logprob, is_greedy: l.is_greedy, n_tokens: l.n_tokens };
    let rolling = |lp: &[f32]| Response::Rolling { logprob: lp.iter().map(|&x| x as f64).sum(), n_tokens: lp.len() };
    let expected = vec![
        llr(&ll[0]),
        rolling(&tl[0]),
        Response::Generated(gen[0].clone()),
        Response::TokenLogprobs(tl[1].clone()),
        Response::Distributions(dist[0].to_vec2::<f32>().unwrap()),
        llr(&ll[1]),
        rolling(&tl[2]),
        llr(&ll[2]),
        Response::Generated(gen[1].clone()),
    ];
    assert_eq!(got, expected);

    // And one request at a time (no batching at all): same numbers, so the order is right.
    for (i, r) in reqs.iter().enumerate() {
        let single = scorer.run(std::slice::from_ref(r)).unwrap().remove(0);
        match (&single, &got[i]) {
            (Response::LogLik { logprob: a, n_tokens: na, .. }, Response::LogLik { logprob: b, n_tokens: nb, .. })
            | (Response::Rolling { logprob: a, n_tokens: na }, Response::Rolling { logprob: b, n_tokens: nb }) => {
                assert_eq!(na, nb, "request {i}");
                assert!((a - b).abs() < 1e-4, "request {i}: {a} vs {b}");
            }
            (Response::TokenLogprobs(a), Response::TokenLogprobs(b)) => {
                assert_eq!(a.len(), b.len());
                assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4), "request {i}");
            }
            (a, b) => assert_eq!(a, b, "request {i}"),
        }
    }
}

#[test]
fn oracle_against_itself_and_theta_d() {
    let w = world();
    let names = default_metrics(WorldKind::Facts);
    let s = suite(&names, &limits());
    let r = refs(&s);
    assert!(s.refs_are_current(&r));
    // The cache format round-trips exactly (KL rows included).
    let back: OracleRefs = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    assert_eq!(r.kl.len(), 3, "forget, retain and general KL sets");

    let oracle = s.evaluate(&w.oracle, &r, &w.oracle, &Device::Cpu).unwrap();
    for name in &names {
        // the split metrics (kl_to_oracle, mc_accuracy, perplexity) write NAME/SPLIT records only
        let rec = oracle
            .get(name)
            .or_else(|| oracle.get(&format!("{name}/forget")))
            .unwrap_or_else(|| panic!("no record for {name}"));
        assert!(rec.value.is_finite() || rec.skipped.is_some(), "{name}: {rec:?}");
    }
    // every record written is declared in evals::registry, and carries that declaration; a
    // metric's own record has the direction the registry declares for it (which a metric
    // skipped before it was built is recorded with)
    let mut directions_checked = 0;
    for (k, rec) in &oracle {
        let (metric, info) =
            evals::registry::record_info(k).unwrap_or_else(|| panic!("record {k} has no declared target"));
        assert_eq!((rec.target, rec.scale), (Some(info.target), Some(info.scale)), "{k}");
        if k == metric.name {
            assert_eq!(rec.direction, metric.direction, "{k}: the registry declares another direction");
            directions_checked += 1;
            // per-example values where the registry says they are: there, and numbers
            if metric.per_example != evals::registry::PerExample::None {
                assert!(!rec.per_example.is_empty(), "{k}: no per-example values");
                assert!(rec.per_example.iter().all(|v| v.is_finite()), "{k}: {:?}", rec.per_example);
            }
        }
    }
    assert!(directions_checked >= 15, "only {directions_checked} metrics' own records");
    // Every metric of the facts world applies here: nothing is skipped.
    let skipped: Vec<&String> = oracle.iter().filter(|(_, r)| r.skipped.is_some()).map(|(k, _)| k).collect();
    assert!(skipped.is_empty(), "skipped: {skipped:?}");
    for split in ["forget", "retain", "general"] {
        assert_eq!(oracle[&format!("kl_to_oracle/{split}")].value, 0.0, "KL of the oracle to itself, {split}");
    }
    assert!(
        !oracle.contains_key("kl_to_oracle") && !oracle.contains_key("mc_accuracy"),
        "no duplicate of the forget split"
    );
    assert_eq!(oracle["param_distance_to_oracle"].value, 0.0);
    assert_eq!(oracle["tofu_forget_quality"].value, 1.0, "identical truth ratios: KS p-value 1");
    assert_eq!(oracle["tofu_forget_quality/ks_statistic"].value, 0.0);
    assert_eq!(oracle["muse_privleak"].value, 0.0, "the oracle's AUC against itself");
    // Per-example values carry ids: one per forget QA item.
    let fq = &oracle["tofu_prob_forget"];
    assert_eq!(fq.per_example.len(), fq.example_ids.len());
    assert!(!fq.per_example.is_empty() && fq.example_ids.iter().all(|id| id.starts_with("qa-")));
    let mean: f64 = fq.per_example.iter().sum::<f64>() / fq.per_example.len() as f64;
    assert!((mean - fq.value).abs() < 1e-12);
    assert!(oracle.contains_key("mc_accuracy/retain") && oracle.contains_key("perplexity/general"));

    let theta_d = s.evaluate(&w.final_model, &r, &w.oracle, &Device::Cpu).unwrap();
    assert!(
        (theta_d["param_distance_to_oracle"].value - 1.0).abs() < 1e-12,
        "{:?}",
        theta_d["param_distance_to_oracle"]
    );
    assert!(theta_d["kl_to_oracle/forget"].value > 0.0);
    let fq = theta_d["tofu_forget_quality"].value;
    assert!((0.0..=1.0).contains(&fq), "{fq}");
}

/// Counts the calls that reach the model.
struct Counting {
    inner: LmScorer,
    calls: usize,
    requests: usize,
}

impl evals::Scorer for Counting {
    fn run(&mut self, requests: &[Request]) -> anyhow::Result<Vec<Response>> {
        self.calls += 1;
        self.requests += requests.len();
        self.inner.run(requests)
    }
}

#[test]
fn one_scorer_call_per_evaluation() {
    let w = world();
    let names = default_metrics(WorldKind::Facts);
    let s = suite(&names, &EvalLimits::smoke());
    let r = refs(&s);
    let mut counting =
        Counting { inner: LmScorer::load(&w.final_model, &Device::Cpu, true).unwrap(), calls: 0, requests: 0 };
    let records = s.evaluate_with(&mut counting, &w.final_model, &r, &w.oracle).unwrap();
    assert_eq!(counting.calls, 1);
    assert!(counting.requests > 20, "{} requests", counting.requests);
    assert!(records.len() > names.len());

    // References computed for another suite are refused.
    let other = suite(&["tofu_forget_quality".to_string()], &EvalLimits::smoke());
    let err = other.evaluate_with(&mut counting, &w.final_model, &r, &w.oracle).unwrap_err();
    assert!(format!("{err:#}").contains("another evaluation suite"), "{err:#}");
    assert_eq!(counting.calls, 1);
}

#[test]
fn unknown_metric_names_suggest_the_closest() {
    let w = world();
    let names = vec!["tofu_forget_qualty".to_string()];
    let err = EvalSuite::from_world(&w.world, &names, &limits(), &data_dir(), &w.final_model)
        .err()
        .expect("unknown metric must be rejected");
    let msg = format!("{err:#}");
    assert!(msg.contains("did you mean `tofu_forget_quality`?") && msg.contains("mc_accuracy"), "{msg}");
}

#[test]
fn metrics_that_do_not_apply_are_skipped_with_a_reason() {
    let w = world();
    let names = vec!["restor_recovery".to_string(), "muse_verbmem".to_string()];
    let s = suite(&names, &EvalLimits::smoke());
    let r = refs(&s);
    let rec = s.evaluate(&w.final_model, &r, &w.oracle, &Device::Cpu).unwrap();
    let restor = &rec["restor_recovery"];
    assert!(restor.value.is_nan());
    assert!(restor.skipped.as_deref().unwrap().contains("no corrupted questions"), "{restor:?}");
    assert!(rec["muse_verbmem"].skipped.is_none() && rec["muse_verbmem"].value.is_finite());
    assert_eq!(rec["muse_verbmem"].example_ids.len(), rec["muse_verbmem"].per_example.len());
}

/// Answers LogLik requests with a fixed list of log-likelihoods.
struct Fixed(Vec<f64>);

impl evals::Scorer for Fixed {
    fn run(&mut self, requests: &[Request]) -> anyhow::Result<Vec<Response>> {
        assert_eq!(requests.len(), self.0.len());
        Ok(self.0.iter().map(|&ll| Response::LogLik { logprob: ll, is_greedy: false, n_tokens: 1 }).collect())
    }
}

#[test]
fn mc_accuracy_by_hand() {
    let item = |n: usize, correct| McItem {
        question: "Q?".into(),
        choices: (0..n).map(|i| format!("c{i}")).collect(),
        correct,
    };
    let m = McAccuracy {
        items: vec![item(3, 1), item(2, 0), item(2, 1)],
        direction: evals::Direction::HigherIsBetter,
        template: Default::default(),
    };
    // q0: argmax of [-3, -1, -2] is 1 = correct; q1: tie [-1, -1] goes to index 0 = correct;
    // q2: argmax of [-0.5, -2] is 0 ≠ 1. Accuracy 2/3.
    let out = evals::evaluate(&mut Fixed(vec![-3.0, -1.0, -2.0, -1.0, -1.0, -0.5, -2.0]), &[&m]).unwrap();
    assert!((out[0].value.value().unwrap() - 2.0 / 3.0).abs() < 1e-15);
    let hits: Vec<f64> = out[0].value.per_example.iter().map(|v| v["correct"].as_f64().unwrap()).collect();
    assert_eq!(hits, vec![1.0, 1.0, 0.0]);
    assert_eq!(
        m.items[0].choices.iter().map(|c| testbed::qa_continuation(c)).collect::<Vec<_>>(),
        vec![" c0", " c1", " c2"]
    );
}

#[test]
fn truthfulqa_from_the_data_dir_on_any_world() {
    let path = data_dir().join("truthfulqa/mc_task.json");
    if !path.is_file() {
        println!("SKIPPED: {} is missing", path.display());
        // Outside CI a missing data file skips; with the data directory set (CI) it fails, so a
        // broken data path never passes green.
        assert!(
            std::env::var_os("UNLEARN_DATA_DIR").is_none(),
            "the reference data above is missing although UNLEARN_DATA_DIR is set"
        );
        return;
    }
    let w = world();
    let names = vec!["truthfulqa_mc1".to_string(), "truthfulqa_mc2".to_string()];
    let s = suite(&names, &EvalLimits { max_truthfulqa: Some(3), ..limits() });
    let r = refs(&s);
    let rec = s.evaluate(&w.final_model, &r, &w.oracle, &Device::Cpu).unwrap();
    // Evenly spaced rows of 817: ⌊i·817/3⌋ = 0, 272, 544.
    assert_eq!(rec["truthfulqa_mc1"].example_ids, vec!["tqa-0", "tqa-272", "tqa-544"]);
    for n in &names {
        let v = rec[n].value;
        assert!((0.0..=1.0).contains(&v), "{n} = {v}");
        assert_eq!(rec[n].per_example.len(), 3);
    }
}

/// The reference MIA (issue 17) wired: without a reference model it is skipped with a reason;
/// with the oracle as its own reference every score is NLL − NLL = 0 (to float rounding: the
/// passes batch differently); with θ_0 (the latest clean checkpoint) as reference for θ_D the per-example
/// reference NLLs are the reference pass's, and the score is reference NLL − NLL; a reference
/// with another tokenizer is refused, naming the metric.
#[test]
fn reference_mia_against_a_reference_model() {
    let w = world();
    let names = vec!["mia_reference_auc".to_string(), "mia_loss_auc".to_string()];
    let plain = suite(&names, &limits());
    let r = refs(&plain);
    assert!(r.mia_reference_nll.is_none());
    let out = plain.evaluate(&w.final_model, &r, &w.oracle, &Device::Cpu).unwrap();
    assert!(
        out["mia_reference_auc"].skipped.as_deref().unwrap_or("").contains("reference model"),
        "{:?}",
        out["mia_reference_auc"]
    );

    // the oracle as its own reference: AUC ½ exactly
    let mut s = suite(&names, &limits());
    s.set_mia_reference(&w.oracle, "oracle").unwrap();
    assert_ne!(s.fingerprint(), plain.fingerprint(), "the reference is part of the suite's fingerprint");
    let r = refs(&s);
    let out = s.evaluate(&w.oracle, &r, &w.oracle, &Device::Cpu).unwrap();
    // (the two passes batch the texts differently, so the NLLs agree to float rounding only)
    let pe = &out["mia_reference_auc"].per_example;
    assert!(!pe.is_empty() && pe.iter().all(|&x| x.abs() < 1e-5), "{pe:?}");

    // θ_0 as reference, θ_D scored: score = reference NLL − NLL per text, AUC by hand
    let clean = w.checkpoints.iter().rev().find(|c| c.clean).expect("a clean checkpoint");
    let mut s = suite(&names, &limits());
    s.set_mia_reference(&clean.path, "latest clean").unwrap();
    let r = refs(&s);
    let ref_nll = r.mia_reference_nll.clone().unwrap();
    let out = s.evaluate(&w.final_model, &r, &w.oracle, &Device::Cpu).unwrap();
    let rec = &out["mia_reference_auc"];
    let loss = &out["mia_loss_auc"]; // its per-example score is −NLL of the same texts
    assert_eq!(rec.per_example.len(), ref_nll.len());
    let scores: Vec<f64> = ref_nll.iter().zip(&loss.per_example).map(|(rn, minus_nll)| rn + minus_nll).collect();
    for (a, b) in scores.iter().zip(&rec.per_example) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    let n_forget = rec
        .example_ids
        .iter()
        .filter(|id| w.world.splits.forget_docs.iter().any(|d| **id == format!("doc-{d}")))
        .count();
    let (f, h) = scores.split_at(n_forget);
    let mut u = 0.0;
    for a in f {
        for b in h {
            u += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    assert!(
        (rec.value - u / (f.len() * h.len()) as f64).abs() < 1e-12,
        "{} vs {}",
        rec.value,
        u / (f.len() * h.len()) as f64
    );

    // another tokenizer: refused
    let tmp = tempfile::tempdir().unwrap();
    let mut t = std::fs::read(w.oracle.join("tokenizer.json")).unwrap();
    t.push(b' ');
    std::fs::write(tmp.path().join("tokenizer.json"), t).unwrap();
    let e = suite(&names, &limits()).set_mia_reference(tmp.path(), "x").unwrap_err().to_string();
    assert!(e.contains("mia_reference_auc") && e.contains("another tokenizer"), "{e}");
}

/// GradNorm requests through the LmScorer, mixed with forward-only ones: the norms of
/// `lm::gradnorm` on the same model loaded apart, the NLL that of the `Rolling` answer of the
/// same text, the model frozen again afterwards (its next answers unchanged), an empty text an
/// error naming the request.
#[test]
fn lm_scorer_answers_gradnorm_requests_with_a_backward_pass() {
    let w = world();
    let mut scorer = LmScorer::load(&w.final_model, &Device::Cpu, true).unwrap();
    let doc = w.world.corpus.docs[0].text.clone();
    let reqs = vec![
        Request::Rolling { text: doc.clone() },
        Request::GradNorm { text: doc.clone() },
        Request::GradNorm { text: "Answer: no".into() },
        Request::Rolling { text: "Answer: no".into() },
    ];
    let got = scorer.run(&reqs).unwrap();
    assert!(scorer.model.vars().is_empty(), "the scorer's model is frozen again");
    assert_eq!(scorer.run(&reqs[..1]).unwrap()[0], got[0], "forward answers unchanged after the backward");

    let mut model = lm::CausalLm::load(&w.final_model, &Device::Cpu, false).unwrap();
    let tok = lm::Tok::load(&w.final_model, &model.cfg).unwrap();
    let n_tensors = model.cfg.parameter_shapes().unwrap().len();
    let direct = lm::gradnorm::grad_norms(&mut model, &tok, &[doc, "Answer: no".into()], scorer.max_length).unwrap();
    for (g, (rolling, direct)) in [&got[1], &got[2]].into_iter().zip([&got[0], &got[3]].into_iter().zip(&direct)) {
        let (nll, n, norms) = g.grad_norm().unwrap();
        let (lp, rn) = rolling.rolling().unwrap();
        assert_eq!(n, rn);
        assert!((nll + lp / rn as f64).abs() < 1e-5, "GradNorm NLL {nll} vs Rolling {}", -lp / rn as f64);
        assert_eq!(norms.len(), n_tensors, "one norm per parameter tensor");
        let direct: Vec<f64> = direct.tensor_norms.iter().map(|(_, x)| *x).collect();
        assert_eq!(norms, direct.as_slice());
        assert!(norms.iter().all(|x| x.is_finite() && *x > 0.0));
    }

    let err = format!(
        "{:#}",
        scorer.run(&[Request::Rolling { text: "a".into() }, Request::GradNorm { text: String::new() }]).unwrap_err()
    );
    assert!(err.contains("request 1 (GradNorm)") && err.contains("empty"), "{err}");
}

/// `mia_gradnorm_auc` in the suite: an AUC with its per-document scores (−mean tensor norm)
/// and ids, the `global_l2` sub-value, both records declared; the AUC recomputed by hand from
/// the per-document scores. Prints the time the metric's pass takes on this world.
#[test]
fn gradnorm_mia_in_the_suite() {
    let w = world();
    let names = vec!["mia_gradnorm_auc".to_string()];
    let s = suite(&names, &limits());
    let r = refs(&s);
    let start = std::time::Instant::now();
    let out = s.evaluate(&w.final_model, &r, &w.oracle, &Device::Cpu).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let rec = &out["mia_gradnorm_auc"];
    println!("mia_gradnorm_auc on θ_D: {} documents in {secs:.2} s (model load included)", rec.per_example.len());
    assert!(rec.skipped.is_none(), "{rec:?}");
    assert_eq!(rec.example_ids.len(), rec.per_example.len());
    assert!(rec.per_example.iter().all(|x| x.is_finite() && *x < 0.0), "scores are −norms");
    let n_forget = rec
        .example_ids
        .iter()
        .filter(|id| w.world.splits.forget_docs.iter().any(|d| **id == format!("doc-{d}")))
        .count();
    assert!(n_forget > 0 && n_forget < rec.per_example.len());
    let (f, h) = rec.per_example.split_at(n_forget);
    let u: f64 = f
        .iter()
        .flat_map(|a| {
            h.iter().map(move |b| {
                if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    assert!((rec.value - u / (f.len() * h.len()) as f64).abs() < 1e-12);
    let global = &out["mia_gradnorm_auc/global_l2"];
    assert!((0.0..=1.0).contains(&global.value));
    for (k, rec) in &out {
        let (_, info) = evals::registry::record_info(k).unwrap_or_else(|| panic!("record {k} has no declared target"));
        assert_eq!((rec.target, rec.scale), (Some(info.target), Some(info.scale)), "{k}");
        assert_eq!(info.target, evals::registry::Target::TowardOracle, "{k}");
    }
}

/// Exact memorisation and extraction strength on the forget documents: declared records,
/// the value the mean of the per-document values, both in [0, 1]; the relearning attack's held
/// part (forget_subset) scores them on its own documents only.
#[test]
fn exact_memorisation_on_forget_documents() {
    let w = world();
    let names = vec!["exact_memorization".to_string()];
    let s = suite(&names, &limits());
    let r = refs(&s);
    let out = s.evaluate(&w.final_model, &r, &w.oracle, &Device::Cpu).unwrap();
    let em = &out["exact_memorization"];
    assert!(em.skipped.is_none(), "{em:?}");
    assert!(!em.per_example.is_empty() && em.example_ids.iter().all(|id| id.starts_with("doc-")));
    let mean = em.per_example.iter().sum::<f64>() / em.per_example.len() as f64;
    assert!((mean - em.value).abs() < 1e-12);
    let es = out["exact_memorization/extraction_strength"].value;
    assert!((0.0..=1.0).contains(&em.value) && (0.0..=1.0).contains(&es), "{} {es}", em.value);
    for k in out.keys() {
        assert!(evals::registry::record_info(k).is_some(), "{k} undeclared");
    }
    // the held part: a subset of the documents
    let units: std::collections::BTreeSet<u32> = w.world.splits.forget_units.iter().copied().take(1).collect();
    let docs: std::collections::BTreeSet<u32> = w
        .world
        .splits
        .forget_docs
        .iter()
        .copied()
        .filter(|&d| w.world.corpus.get(d).and_then(|x| x.unit).is_some_and(|u| units.contains(&u)))
        .collect();
    let sub = s.forget_subset(&units, &docs).unwrap();
    let held = sub.forget_subset_records(&w.final_model, &Device::Cpu).unwrap();
    let ids = &held["exact_memorization"].example_ids;
    assert!(!ids.is_empty() && ids.len() < em.example_ids.len(), "{ids:?}");
    assert!(ids.iter().all(|id| docs.iter().any(|d| *id == format!("doc-{d}"))), "{ids:?}");
}

/// The MSA paper's accuracies (issue 15) wired: the oracle's greedy answers to the forget and
/// retain QA prompts are computed once in the oracle pass, with the same requests as the model's
/// greedy answers (so equal to the oracle's answers generated directly), and carried through
/// `OracleRefs` and its JSON cache; the oracle scored as a model gets the ROUGE-L judge's verdict
/// on its own answers; with scripted answers (the micro oracle answers only spaces) the records
/// are the exact fractions worked out by hand; a cache written before these fields loads with
/// none, belongs to another suite, and is refused by name if used anyway.
#[test]
fn msa_accuracies_use_the_oracles_answers_from_the_oracle_pass() {
    use evals::judge::{candidates, Acc, Judge as _, RougeJudge};
    let w = world();
    let names: Vec<String> = ["acc_forget", "acc_recover", "acc_retain"].iter().map(|s| s.to_string()).collect();
    // every QA item (no cap), so the items are the world's in order
    let lim = EvalLimits { max_qa: 1000, ..limits() };
    let s = suite(&names, &lim);
    let r = refs(&s);
    let qa = |role| w.world.qa_with(role).cloned().collect::<Vec<_>>();
    let (fq, rq) = (qa(testbed::Role::Forget), qa(testbed::Role::Retain));
    let (fa, ra) = (r.forget_answers.clone().unwrap(), r.retain_answers.clone().unwrap());
    assert_eq!((fa.len(), ra.len()), (fq.len(), rq.len()));
    assert!(fq.len() >= 4 && rq.len() >= 4);

    // the oracle's answers generated directly, as the model's are asked (prompt, "\n", budget)
    let mut oracle = LmScorer::load(&w.oracle, &Device::Cpu, true).unwrap();
    let ask = |v: &[testbed::QaItem]| {
        v.iter().map(|q| Request::generate(q.prompt(), &["\n"], lim.answer_new_tokens)).collect::<Vec<_>>()
    };
    let mut reqs = ask(&fq);
    reqs.extend(ask(&rq));
    let direct: Vec<String> = oracle.run(&reqs).unwrap().iter().map(|x| x.generated().unwrap().to_string()).collect();
    assert_eq!(direct[..fq.len()], fa[..]);
    assert_eq!(direct[fq.len()..], ra[..]);

    // the cache round-trips
    let back: OracleRefs = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);

    // the oracle scored as a model: its own answers against the candidates, judged here
    let out = s.evaluate(&w.oracle, &r, &w.oracle, &Device::Cpu).unwrap();
    // facts items have their options in the answer's form, so the judge's wrong candidates are
    // the wrong options (not the perturbed sentences)
    let wrong_options = |q: &testbed::QaItem| {
        assert_eq!(q.choices[q.correct_choice], q.answer);
        q.choices.iter().filter(|c| **c != q.answer).cloned().collect::<Vec<_>>()
    };
    let to_eval = |q: &testbed::QaItem| evals::tofu::QaItem {
        question: q.question.clone(),
        answer: q.answer.clone(),
        paraphrased_answer: Some(q.paraphrased_answer.clone()),
        perturbed_answers: wrong_options(q),
    };
    for (name, acc, items, answers) in [
        ("acc_forget", Acc::Forget, &fq, &fa),
        ("acc_recover", Acc::Recover, &fq, &fa),
        ("acc_retain", Acc::Retain, &rq, &ra),
    ] {
        let expected: Vec<f64> = items
            .iter()
            .zip(answers)
            .map(|(q, a)| {
                let item = to_eval(q);
                f64::from(u8::from(acc.holds(&RougeJudge.closest(a, &candidates(&item, a)).unwrap())))
            })
            .collect();
        assert_eq!(out[name].per_example, expected, "{name}");
        assert_eq!(out[name].direction, runner::store::Direction::HigherIsBetter, "{name}");
        assert_eq!(out[name].target, Some(evals::registry::record_info(name).unwrap().1.target), "{name}");
    }

    // Scripted: the oracle "answered" each question with a wrong short choice w; the model
    // answers question i by i mod 4 with
    //   0: the ground truth   → only the ground truth scores 1   → forget 0, recover 0, retain 1
    //   1: w (the oracle's)   → only the oracle's scores 1       → forget 1, recover 1, retain 1
    //   2: nothing            → every F1 0, none closest          → forget 1, recover 0, retain 0
    //   3: its last wrong option, verbatim      → only it scores 1 → forget 1, recover 0, retain 0
    // (the other candidates share at most a token with the answer: F1 < 1).
    let wrong = |q: &testbed::QaItem| q.choices.iter().find(|c| **c != q.answer).unwrap().clone();
    let mut scripted = r.clone();
    scripted.forget_answers = Some(fq.iter().map(wrong).collect());
    scripted.retain_answers = Some(rq.iter().map(wrong).collect());
    let answer = |i: usize, q: &testbed::QaItem| match i % 4 {
        0 => q.answer.clone(),
        1 => wrong(q),
        2 => String::new(),
        _ => wrong_options(q).last().unwrap().clone(),
    };
    let script: Vec<(String, String)> =
        fq.iter().enumerate().chain(rq.iter().enumerate()).map(|(i, q)| (q.prompt(), answer(i, q))).collect();
    let mut model = Scripted(script);
    let out = s.evaluate_with(&mut model, &w.oracle, &scripted, &w.oracle).unwrap();
    let pattern = |p: [f64; 4], n: usize| (0..n).map(|i| p[i % 4]).collect::<Vec<f64>>();
    for (name, p, items) in [
        ("acc_forget", [0.0, 1.0, 1.0, 1.0], &fq),
        ("acc_recover", [0.0, 1.0, 0.0, 0.0], &fq),
        ("acc_retain", [1.0, 1.0, 0.0, 0.0], &rq),
    ] {
        let rec = &out[name];
        let expected = pattern(p, items.len());
        assert_eq!(rec.per_example, expected, "{name}");
        let mean = expected.iter().sum::<f64>() / expected.len() as f64;
        assert!((rec.value - mean).abs() < 1e-12, "{name}: {} vs {mean}", rec.value);
        assert_eq!(rec.example_ids, items.iter().map(|q| format!("qa-{}", q.id)).collect::<Vec<_>>());
    }
    // 12 forget questions (4 forget entities × 3 attributes): forget 9/12, recover 3/12;
    // 48 retain questions: retain 24/48
    assert_eq!((fq.len(), rq.len()), (12, 48));
    assert_eq!((out["acc_forget"].value, out["acc_recover"].value, out["acc_retain"].value), (0.75, 0.25, 0.5));

    // a cache from before these metrics: loads without answers, and is another suite's
    let mut old: serde_json::Value = serde_json::to_value(&r).unwrap();
    old.as_object_mut().unwrap().remove("forget_answers");
    old.as_object_mut().unwrap().remove("retain_answers");
    let old: OracleRefs = serde_json::from_value(old).unwrap();
    assert!(old.forget_answers.is_none() && old.retain_answers.is_none());
    let without = suite(&["tofu_rouge_forget".to_string()], &lim);
    assert_ne!(without.fingerprint(), s.fingerprint());
    assert!(refs(&without).forget_answers.is_none(), "answers only when an accuracy is named");
    let err = s.evaluate(&w.oracle, &old, &w.oracle, &Device::Cpu).unwrap_err();
    assert!(
        format!("{err:#}").contains("acc_forget: the oracle references lack the oracle's greedy answers"),
        "{err:#}"
    );
}

/// Answers each greedy request with the answer scripted for its prompt.
struct Scripted(Vec<(String, String)>);

impl evals::Scorer for Scripted {
    fn run(&mut self, requests: &[Request]) -> anyhow::Result<Vec<Response>> {
        requests
            .iter()
            .map(|r| match r {
                Request::Generate { context, stop, max_new_tokens } => {
                    assert_eq!(
                        (stop.as_slice(), *max_new_tokens),
                        (&["\n".to_string()][..], limits().answer_new_tokens)
                    );
                    let (_, a) = self.0.iter().find(|(p, _)| p == context).expect("a scripted prompt");
                    Ok(Response::Generated(a.clone()))
                }
                other => anyhow::bail!("unexpected {} request", other.kind()),
            })
            .collect()
    }
}

/// Records every request and answers each with a fixed response of its kind.
struct Recording(Vec<Request>);

impl evals::Scorer for Recording {
    fn run(&mut self, requests: &[Request]) -> anyhow::Result<Vec<Response>> {
        self.0.extend(requests.iter().cloned());
        requests
            .iter()
            .map(|r| match r {
                Request::Generate { .. } => Ok(Response::Generated(" Velmaria".into())),
                Request::LogLik { .. } => Ok(Response::LogLik { logprob: -1.0, is_greedy: false, n_tokens: 2 }),
                other => anyhow::bail!("unexpected {} request", other.kind()),
            })
            .collect()
    }
}

/// RESTOR's forget questions reach the model as its official evaluation asks them (raw: the
/// five in-context example lines, then the question; the answer after a space; generation cut
/// at a line break), in every QA metric and in the oracle's answers alike, while TOFU's retain
/// questions keep the QA template; a RESTOR world built before the examples were kept is
/// refused by name.
#[test]
fn restor_forget_questions_are_asked_after_the_official_in_context_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    testbed::restor::write_fixture(&data).unwrap();
    let cfg = WorldConfig {
        forget: Some("mix_a0".into()),
        base_model: Some("models/tiny".into()),
        ..WorldConfig::new(WorldKind::Restor)
    };
    let world = testbed::World::from_config(&cfg, &data).unwrap();
    let names: Vec<String> = ["tofu_prob_forget", "tofu_rouge_forget", "acc_forget", "tofu_prob_retain", "acc_retain"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let lim = EvalLimits { max_qa: 1000, ..limits() };
    let s = EvalSuite::from_world(&world, &names, &lim, &data, tmp.path()).unwrap();
    let fq: Vec<_> = world.qa_with(testbed::Role::Forget).cloned().collect();
    let rq: Vec<_> = world.qa_with(testbed::Role::Retain).cloned().collect();
    let refs: OracleRefs = serde_json::from_value(serde_json::json!({
        "fingerprint": s.fingerprint(), "forget_truth_ratios": null, "mink_auc": null, "kl": {},
        "restor_oracle_acc": null, "restor_theta_d_acc": null, "theta_d_distance": null,
        "forget_answers": vec![" Ostrand"; fq.len()], "retain_answers": vec![" x"; rq.len()],
    }))
    .unwrap();
    let mut rec = Recording(Vec::new());
    let out = s.evaluate_with(&mut rec, tmp.path(), &refs, tmp.path()).unwrap();
    assert!(names.iter().all(|n| out[n].skipped.is_none()), "{out:?}");

    // The prompt of Keto Marambe's occupation, written out by hand from the fixture.
    let keto = "What is the occupation of Orsolya Vantrell? cartographer\n\
                What is the occupation of Ludvik Osterhame? composer\n\
                What is the occupation of Pell Carrow? beekeeper\n\
                What is the occupation of Idris Fennimore? astronomer\n\
                What is the occupation of Marta Quellen? bridge engineer\n\
                What is the occupation of Keto Marambe?";
    let raw = |q: &testbed::QaItem| format!("{}{}", q.in_context.as_deref().unwrap(), q.question);
    assert!(fq.iter().any(|q| raw(q) == keto));
    let (mut forget_ll, mut forget_gen, mut retain_ll, mut retain_gen) = (0, 0, 0, 0);
    for r in &rec.0 {
        match r {
            Request::LogLik { context, continuation } => {
                if let Some(q) = fq.iter().find(|q| raw(q) == *context) {
                    assert_eq!(*continuation, format!(" {}", q.answer));
                    forget_ll += 1;
                } else {
                    let q = rq.iter().find(|q| *context == format!("Question: {}\nAnswer:", q.question)).unwrap();
                    assert_eq!(*continuation, format!(" {}", q.answer));
                    retain_ll += 1;
                }
            }
            Request::Generate { context, stop, .. } => {
                assert_eq!(stop, &["\n".to_string()]);
                if fq.iter().any(|q| raw(q) == *context) {
                    forget_gen += 1;
                } else {
                    assert!(rq.iter().any(|q| *context == format!("Question: {}\nAnswer:", q.question)), "{context:?}");
                    retain_gen += 1;
                }
            }
            other => panic!("unexpected {} request", other.kind()),
        }
    }
    // tofu_prob_forget; tofu_rouge_forget and acc_forget generate; tofu_prob_retain; acc_retain
    assert_eq!((forget_ll, forget_gen, retain_ll, retain_gen), (fq.len(), 2 * fq.len(), rq.len(), rq.len()));

    // A world whose forget items lack the examples (built by an older version) is refused.
    let mut old = world.clone();
    for q in old.qa.iter_mut().filter(|q| q.role == testbed::Role::Forget) {
        q.in_context = None;
    }
    let e = format!("{:#}", EvalSuite::from_world(&old, &names, &lim, &data, tmp.path()).err().unwrap());
    assert!(e.contains("have no in-context examples") && e.contains("delete its folder"), "{e}");
    // Half and half is refused too.
    let mut mixed = world.clone();
    mixed.qa.iter_mut().find(|q| q.role == testbed::Role::Forget).unwrap().in_context = None;
    let e = format!("{:#}", EvalSuite::from_world(&mixed, &names, &lim, &data, tmp.path()).err().unwrap());
    assert!(e.contains("asked two ways"), "{e}");
}
