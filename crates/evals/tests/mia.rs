//! The membership-inference suite (`evals::mia`) on hand-built responses: every score and AUC
//! below is computed by hand in the comments; the Python zlib lengths and the numpy
//! recomputation (scripts/mia_reference.py) are independent references.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::Result;
use evals::mia::{
    grad_norm_scores, mean_nlls_of, minkpp_token_scores, MiaGradNorm, MiaLoss, MiaMinKpp, MiaReference, MiaZlib,
};
use evals::muse::MinKAuc;
use evals::zlib::compressed_len;
use evals::{evaluate, evaluate_with_extra, Direction, Metric, MetricValue, Request, Response, Scorer};
use serde_json::json;

/// A scorer answering each request with a function of the request; counts `run` calls.
struct Fake<F: Fn(&Request) -> Response> {
    answer: F,
    calls: usize,
}

impl<F: Fn(&Request) -> Response> Scorer for Fake<F> {
    fn run(&mut self, requests: &[Request]) -> Result<Vec<Response>> {
        self.calls += 1;
        Ok(requests.iter().map(&self.answer).collect())
    }
}

fn fake<F: Fn(&Request) -> Response>(answer: F) -> Fake<F> {
    Fake { answer, calls: 0 }
}

#[track_caller]
fn close(got: f64, expected: f64, tol: f64) {
    assert!((got - expected).abs() <= tol, "got {got}, expected {expected}");
}

fn value(m: &dyn Metric, scorer: &mut dyn Scorer) -> MetricValue {
    evaluate(scorer, &[m]).unwrap().remove(0).value
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|s| s.to_string()).collect()
}

fn text_of(r: &Request) -> &str {
    match r {
        Request::Rolling { text }
        | Request::TokenLogprobs { text }
        | Request::Distributions { text }
        | Request::GradNorm { text } => text,
        other => panic!("unexpected request {other:?}"),
    }
}

/// `Rolling` with mean NLL `nll` over `n` tokens.
fn rolling(nll: f64, n: usize) -> Response {
    Response::Rolling { logprob: -nll * n as f64, n_tokens: n }
}

fn scores(v: &MetricValue) -> Vec<f64> {
    v.per_example.iter().map(|e| e["score"].as_f64().unwrap()).collect()
}

fn sets(v: &MetricValue) -> Vec<String> {
    v.per_example.iter().map(|e| e["set"].as_str().unwrap().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// ZLib lengths

#[test]
fn zlib_lengths_equal_pythons() {
    // python3 -c "import zlib; print(len(zlib.compress(s.encode('utf-8'))))" for each s:
    for (s, python) in [
        ("", 8),
        ("a", 9),
        ("hello world", 19),
        ("Harry Potter and the Philosopher's Stone", 48),
        ("the cat sat on the mat; the cat sat on the mat; the cat sat on the mat.", 33),
        ("Zoë’s naïve café — 日本語のテキスト", 61), // a stored block: 50 bytes + 5 + 6
    ] {
        assert_eq!(compressed_len(s.as_bytes()), python, "{s:?}");
    }
    // python3 -c "import zlib; print(len(zlib.compress(b'abc' * 1000)))"
    assert_eq!(compressed_len("abc".repeat(1000).as_bytes()), 29);
}

// ---------------------------------------------------------------------------------------------
// LOSS

#[test]
fn loss_auc_by_hand() {
    let m = MiaLoss::new(strings(&["f1", "f2"]), strings(&["h1", "h2"])).unwrap();
    // mean NLLs f1 0.5, f2 2, h1 2, h2 3 -> scores -0.5, -2, -2, -3.
    // pairs: f1 beats h1 and h2 (2); f2 ties h1 (0.5), beats h2 (1) -> 3.5 / 4
    let mut s = fake(|r: &Request| match text_of(r) {
        "f1" => Response::Rolling { logprob: -2.0, n_tokens: 4 },
        "f2" => Response::Rolling { logprob: -6.0, n_tokens: 3 },
        "h1" => Response::Rolling { logprob: -4.0, n_tokens: 2 },
        "h2" => Response::Rolling { logprob: -9.0, n_tokens: 3 },
        _ => unreachable!(),
    });
    let v = value(&m, &mut s);
    close(v.value().unwrap(), 0.875, 1e-15);
    assert_eq!(scores(&v), vec![-0.5, -2.0, -2.0, -3.0]);
    assert_eq!(sets(&v), vec!["forget", "forget", "holdout", "holdout"]);
    assert_eq!(v.per_example[3]["nll"], json!(3.0));
    assert_eq!(v.aggregate.len(), 1, "only the headline: {:?}", v.aggregate);
    assert_eq!(m.direction(), Direction::CloserTo(0.5));
    assert!(m.requests().iter().all(|r| matches!(r, Request::Rolling { .. })));
    // A text without tokens is an error, not a NaN score.
    let mut empty = fake(|_: &Request| Response::Rolling { logprob: 0.0, n_tokens: 0 });
    assert!(evaluate(&mut empty, &[&m]).is_err());
    assert!(MiaLoss::new(vec![], strings(&["h"])).is_err());
}

// ---------------------------------------------------------------------------------------------
// ZLib

const HARRY: &str = "Harry Potter and the Philosopher's Stone"; // zlib 48 bytes
const CAT: &str = "the cat sat on the mat; the cat sat on the mat; the cat sat on the mat."; // 33

#[test]
fn zlib_auc_by_hand() {
    // forget "hello world" (zlib 19 bytes), "a" (9); holdout HARRY (48), CAT (33).
    // mean NLLs 3.8, 2.7, 4.8, 13.2 -> ZLib scores -3.8/19 = -0.2, -2.7/9 = -0.3,
    // -4.8/48 = -0.1, -13.2/33 = -0.4.
    // pairs: -0.2 loses to -0.1, beats -0.4; -0.3 likewise -> AUC 2/4 = 0.5
    // (LOSS on the same NLLs: -3.8 and -2.7 beat -4.8 and -13.2 -> AUC 1).
    let forget = strings(&["hello world", "a"]);
    let holdout = strings(&[HARRY, CAT]);
    let answer = |r: &Request| {
        let nll = match text_of(r) {
            "hello world" => 3.8,
            "a" => 2.7,
            HARRY => 4.8,
            CAT => 13.2,
            _ => unreachable!(),
        };
        rolling(nll, 10)
    };
    let v = value(&MiaZlib::new(forget.clone(), holdout.clone()).unwrap(), &mut fake(answer));
    close(v.value().unwrap(), 0.5, 1e-15);
    for (got, expected) in scores(&v).into_iter().zip([-0.2, -0.3, -0.1, -0.4]) {
        close(got, expected, 1e-12);
    }
    let bytes: Vec<u64> = v.per_example.iter().map(|e| e["zlib_bytes"].as_u64().unwrap()).collect();
    assert_eq!(bytes, vec![19, 9, 48, 33]);
    let loss = value(&MiaLoss::new(forget, holdout).unwrap(), &mut fake(answer));
    close(loss.value().unwrap(), 1.0, 1e-15);
}

// ---------------------------------------------------------------------------------------------
// GradNorm

/// A `GradNorm` response with the given per-tensor L2 norms (mean NLL 1 over 5 tokens).
fn grad(norms: &[f64]) -> Response {
    Response::GradNorm { nll: 1.0, n_tokens: 5, tensor_norms: norms.to_vec() }
}

#[test]
fn gradnorm_auc_by_hand() {
    let m = MiaGradNorm::new(strings(&["f1", "f2"]), strings(&["h1", "h2"])).unwrap();
    // per-tensor norms -> mean over tensors (open-unlearning's score, sign flipped) and the
    // whole gradient's L2 norm sqrt(sum of squares):
    //   f1 [1, 3]  mean 2  global sqrt(10) = 3.162
    //   f2 [4, 0]  mean 2  global 4
    //   h1 [3, 3]  mean 3  global sqrt(18) = 4.243
    //   h2 [2, 2]  mean 2  global sqrt(8)  = 2.828
    // headline scores -2, -2 | -3, -2: each forget text beats h1 (1) and ties h2 (1/2)
    //   -> (1 + 1/2 + 1 + 1/2) / 4 = 0.75
    // global_l2 scores -3.162, -4 | -4.243, -2.828: each forget text beats h1, loses to h2 -> 0.5
    let mut s = fake(|r: &Request| match text_of(r) {
        "f1" => grad(&[1.0, 3.0]),
        "f2" => grad(&[4.0, 0.0]),
        "h1" => grad(&[3.0, 3.0]),
        "h2" => grad(&[2.0, 2.0]),
        _ => unreachable!(),
    });
    let v = value(&m, &mut s);
    close(v.value().unwrap(), 0.75, 1e-15);
    close(v.aggregate["global_l2"], 0.5, 1e-15);
    assert_eq!(v.aggregate.len(), 2, "{:?}", v.aggregate);
    assert_eq!(scores(&v), vec![-2.0, -2.0, -3.0, -2.0]);
    assert_eq!(sets(&v), vec!["forget", "forget", "holdout", "holdout"]);
    let global: Vec<f64> = v.per_example.iter().map(|e| e["grad_norm"].as_f64().unwrap()).collect();
    for (g, e) in global.iter().zip([10f64.sqrt(), 4.0, 18f64.sqrt(), 8f64.sqrt()]) {
        close(*g, e, 1e-12);
    }
    assert_eq!(v.per_example[1]["mean_tensor_norm"], json!(2.0));
    assert_eq!(v.per_example[1]["n_tokens"], json!(5));
    assert_eq!(v.per_example[1]["nll"], json!(1.0));
    assert_eq!(m.direction(), Direction::CloserTo(0.5));
    assert_eq!(m.requests()[3], Request::GradNorm { text: "h2".into() });
    assert_eq!(m.requests().len(), 4);

    // members with smaller gradients than every non-member: AUC 1 on both scores
    let mut s = fake(|r: &Request| if text_of(r).starts_with('f') { grad(&[0.1, 0.2]) } else { grad(&[1.0, 0.5]) });
    let v = value(&m, &mut s);
    assert_eq!((v.value(), v.aggregate["global_l2"]), (Some(1.0), 1.0));
    assert_eq!(grad_norm_scores(&grad(&[3.0, 4.0])).unwrap(), (3.5, 5.0));
}

#[test]
fn gradnorm_bad_input_is_an_error_naming_it() {
    let err = MiaGradNorm::new(strings(&["f1", ""]), strings(&["h1"])).unwrap_err().to_string();
    assert!(err.contains("mia_gradnorm_auc") && err.contains("forget text 1 is empty"), "{err}");
    let err = MiaGradNorm::new(strings(&["f1"]), vec![]).unwrap_err().to_string();
    assert!(err.contains("mia_gradnorm_auc needs forget and holdout texts"), "{err}");
    let m = MiaGradNorm::new(strings(&["f1"]), strings(&["h1"])).unwrap();
    let fails = |answer: Response| {
        let mut s = fake(move |_: &Request| answer.clone());
        format!("{:#}", evaluate(&mut s, &[&m]).unwrap_err())
    };
    let err = fails(Response::GradNorm { nll: 0.0, n_tokens: 0, tensor_norms: vec![1.0] });
    assert!(err.contains("mia_gradnorm_auc") && err.contains("text 0") && err.contains("no tokens"), "{err}");
    assert!(fails(grad(&[])).contains("no parameter tensors"));
    assert!(fails(grad(&[1.0, f64::NAN])).contains("parameter tensor 1 is NaN"));
    assert!(fails(grad(&[-1.0])).contains("parameter tensor 0 is -1"));
    let err = fails(Response::Rolling { logprob: -1.0, n_tokens: 1 });
    assert!(err.contains("request 0 (GradNorm) with a Rolling response"), "{err}");
    assert!(grad(&[1.0]).rolling().is_err() && Response::Generated("x".into()).grad_norm().is_err());
}

// ---------------------------------------------------------------------------------------------
// Min-K%++

fn ln(p: f64) -> f32 {
    (p as f32).ln()
}

/// Row A: p = (1/2, 1/4, 1/4). μ = ½(−ln 2) + ½(−2 ln 2) = −1.5 ln 2;
/// E[(log p)²] = ½ ln²2 + ½·4 ln²2 = 2.5 ln²2; σ² = 2.5 ln²2 − 2.25 ln²2 = ¼ ln²2, σ = ½ ln 2.
/// z(token 0) = (−ln 2 + 1.5 ln 2) / (½ ln 2) = 1; z(token 1) = (−2 ln 2 + 1.5 ln 2) / (½ ln 2) = −1.
fn row_a() -> Vec<f32> {
    vec![ln(0.5), ln(0.25), ln(0.25)]
}

/// Row D: p = (0.9, 0.1, 0), the last entry −∞. A two-point variable: μ = 0.9 ln 0.9 + 0.1 ln 0.1,
/// σ² = 0.9·0.1·(ln 0.9 − ln 0.1)² = 0.09 ln²9, σ = 0.3 ln 9.
/// z(token 0) = (ln 0.9 − μ)/σ = 0.1 (ln 0.9 − ln 0.1)/σ = 0.1 ln 9 / (0.3 ln 9) = 1/3;
/// z(token 1) = 0.9 (ln 0.1 − ln 0.9)/σ = −0.9 ln 9 / (0.3 ln 9) = −3.
fn row_d() -> Vec<f32> {
    vec![ln(0.9), ln(0.1), f32::NEG_INFINITY]
}

/// Row U: uniform (1/3 each): σ² = 0, clamped to 1e-6; z = (ln ⅓ − ln ⅓)/1e-3 = 0 (up to f32
/// rounding of the row: |z| < 1e-3).
fn row_u() -> Vec<f32> {
    vec![ln(1.0 / 3.0); 3]
}

/// (rows, token ids) of each text; TokenLogprobs answers rows[i][token[i]].
fn minkpp_text(text: &str) -> (Vec<Vec<f32>>, Vec<usize>) {
    let (a, d, u) = (row_a(), row_d(), row_u());
    match text {
        // z = [1, 1, 1/3, 1/3, 0] -> lowest 2 (k = 40% of 5): 0, 1/3 -> mean 1/6
        "f1" => (vec![a.clone(), a, d.clone(), d, u], vec![0, 0, 0, 0, 2]),
        // z = [1, -3, -1, 0, 0] -> lowest 2: -3, -1 -> -2
        "f2" => (vec![a.clone(), d, a, u.clone(), u], vec![0, 1, 1, 0, 1]),
        // z = [-1, -1, -1, -1, 1] -> -1
        "h1" => (vec![a; 5], vec![1, 1, 1, 1, 0]),
        // z = [1/3, 1/3, 1/3, 1, 1] -> 1/3
        "h2" => (vec![d.clone(), d.clone(), d, a.clone(), a], vec![0; 5]),
        _ => unreachable!(),
    }
}

fn minkpp_answer(r: &Request) -> Response {
    let (rows, tokens) = minkpp_text(text_of(r));
    match r {
        Request::TokenLogprobs { .. } => {
            Response::TokenLogprobs(rows.iter().zip(&tokens).map(|(row, &t)| row[t]).collect())
        }
        Request::Distributions { .. } => Response::Distributions(rows),
        _ => unreachable!(),
    }
}

#[test]
fn minkpp_token_scores_on_a_three_token_vocabulary() {
    let (a, d, u) = (row_a(), row_d(), row_u());
    let rows = vec![a.clone(), a.clone(), d.clone(), d.clone(), u.clone()];
    let lp = [a[0], a[1], d[0], d[1], u[2]];
    let z = minkpp_token_scores(&lp, &rows).unwrap();
    for (got, expected) in z.iter().zip([1.0, -1.0, 1.0 / 3.0, -3.0, 0.0]) {
        close(*got, expected, 1e-3); // f32 rows; row U's σ is 1e-3
    }
    for (got, expected) in z[..4].iter().zip([1.0, -1.0, 1.0 / 3.0, -3.0]) {
        close(*got, expected, 1e-6);
    }
    // Off-by-one guard: more rows than token log-probs is an error; fewer rows (the engine
    // cuts Distributions at the model's length) scores the first rows.len() tokens.
    assert!(minkpp_token_scores(&lp[..4], &rows).is_err());
    assert_eq!(minkpp_token_scores(&lp, &rows[..2]).unwrap().len(), 2);
    assert!(minkpp_token_scores(&[], &[]).is_err());
    // Logits instead of log-softmax rows are refused.
    assert!(minkpp_token_scores(&[0.0], &[vec![0.0, 1.0, 2.0]]).is_err());
}

#[test]
fn minkpp_auc_by_hand() {
    let m = MiaMinKpp::new(strings(&["f1", "f2"]), strings(&["h1", "h2"])).unwrap();
    // scores f1 1/6, f2 -2, h1 -1, h2 1/3: f1 beats h1 only, f2 beats neither -> AUC 1/4
    let reqs = m.requests();
    assert_eq!(reqs.len(), 8);
    assert_eq!(reqs[0], Request::TokenLogprobs { text: "f1".into() });
    assert_eq!(reqs[1], Request::Distributions { text: "f1".into() });
    assert_eq!(reqs[7], Request::Distributions { text: "h2".into() });
    let v = value(&m, &mut fake(minkpp_answer));
    close(v.value().unwrap(), 0.25, 1e-15);
    for (got, expected) in scores(&v).into_iter().zip([1.0 / 6.0, -2.0, -1.0, 1.0 / 3.0]) {
        close(got, expected, 1e-3);
    }
    assert_eq!(v.per_example[0]["n_tokens"], json!(5));
    assert_eq!(v.aggregate.get("k"), Some(&0.4));
    // Plain Min-K% on the same log-probs (lowest 2 of 5):
    // f1 [ln .5, ln .5, ln .9, ln .9, ln 1/3] -> (ln 1/3 + ln .5)/2 = -0.896
    // f2 [ln .5, ln .1, ln .25, ln 1/3, ln 1/3] -> (ln .1 + ln .25)/2 = -1.844
    // h1 [ln .25 x4, ln .5] -> ln .25 = -1.386;  h2 [ln .9 x3, ln .5 x2] -> ln .5 = -0.693
    // f1 beats h1 only, f2 beats neither -> 1/4 as well
    let mink = MinKAuc::new(strings(&["f1", "f2"]), strings(&["h1", "h2"])).unwrap();
    let v = value(&mink, &mut fake(minkpp_answer));
    close(v.value().unwrap(), 0.25, 1e-15);
    let mink_scores: Vec<f64> = v.per_example.iter().map(|e| e["mink"].as_f64().unwrap()).collect();
    let l = |p: f64| p.ln();
    for (got, expected) in
        mink_scores.into_iter().zip([(l(1.0 / 3.0) + l(0.5)) / 2.0, (l(0.1) + l(0.25)) / 2.0, l(0.25), l(0.5)])
    {
        close(got, expected, 1e-6);
    }
}

// ---------------------------------------------------------------------------------------------
// Reference model

#[test]
fn reference_auc_by_hand() {
    let (forget, holdout) = (strings(&["f1", "f2"]), strings(&["h1", "h2"]));
    // target NLLs 1.0, 2.0, 1.5, 3.0; reference NLLs 1.5, 2.2, 1.4, 3.5
    // scores = ref - target: 0.5, 0.2, -0.1, 0.5
    // f1 beats h1, ties h2 (1.5); f2 beats h1, loses to h2 (1) -> 2.5/4 = 0.625
    let target = |r: &Request| {
        let nll = match text_of(r) {
            "f1" => 1.0,
            "f2" => 2.0,
            "h1" => 1.5,
            "h2" => 3.0,
            _ => unreachable!(),
        };
        rolling(nll, 4)
    };
    let m = MiaReference::new(forget.clone(), holdout.clone(), vec![1.5, 2.2], vec![1.4, 3.5]).unwrap();
    let v = value(&m, &mut fake(target));
    close(v.value().unwrap(), 0.625, 1e-15);
    for (got, expected) in scores(&v).into_iter().zip([0.5, 0.2, -0.1, 0.5]) {
        close(got, expected, 1e-12);
    }
    assert_eq!(v.per_example[1]["reference_nll"], json!(2.2));
    assert_eq!(v.per_example[1]["nll"], json!(2.0));

    // The reference values from the reference model's own pass give the same metric.
    let reference = |r: &Request| {
        let nll = match text_of(r) {
            "f1" => 1.5,
            "f2" => 2.2,
            "h1" => 1.4,
            "h2" => 3.5,
            _ => unreachable!(),
        };
        rolling(nll, 5)
    };
    let (_, extra) =
        evaluate_with_extra(&mut fake(reference), &[], &MiaReference::reference_requests(&forget, &holdout)).unwrap();
    let nll = mean_nlls_of(&extra).unwrap();
    for (got, expected) in nll.iter().zip([1.5, 2.2, 1.4, 3.5]) {
        close(*got, expected, 1e-12);
    }
    let m2 = MiaReference::from_reference_responses(forget.clone(), holdout.clone(), &extra).unwrap();
    close(value(&m2, &mut fake(target)).value().unwrap(), 0.625, 1e-15);

    // Length mismatches and non-finite values are clear errors.
    let err = MiaReference::new(forget.clone(), holdout.clone(), vec![1.0], vec![1.0, 2.0]).unwrap_err();
    assert!(err.to_string().contains("2 forget texts but 1 reference NLLs"), "{err}");
    let err = MiaReference::new(forget.clone(), holdout.clone(), vec![1.0, 2.0], vec![1.0; 3]).unwrap_err();
    assert!(err.to_string().contains("2 holdout texts but 3 reference NLLs"), "{err}");
    assert!(MiaReference::new(forget.clone(), holdout.clone(), vec![1.0, f64::NAN], vec![1.0, 2.0]).is_err());
    assert!(MiaReference::from_reference_responses(forget, holdout, &extra[..3]).is_err());
}

// ---------------------------------------------------------------------------------------------
// The suite in one pass, against the numpy recomputation

/// Deterministic pseudo-random numbers in [0, 1).
fn lcg(seed: &mut u64) -> f64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

struct World {
    texts: Vec<String>,
    rows: Vec<Vec<Vec<f32>>>,
    lp: Vec<Vec<f32>>,
    reference_nll: Vec<f64>,
    /// Per-parameter-tensor gradient norms of each text (3 tensors; members' smaller on average).
    grad_norms: Vec<Vec<f64>>,
}

/// 7 forget and 6 holdout texts of 1 to 12 tokens over a 5-token vocabulary; forget texts'
/// tokens are drawn to be likelier (members), so the AUCs are away from 0.5 but not 0 or 1.
fn world() -> World {
    let mut seed = 11u64;
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"];
    let (mut texts, mut rows, mut lp, mut reference_nll, mut grad_norms) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..13 {
        let n = 1 + (lcg(&mut seed) * 12.0) as usize;
        let mut text = format!("doc {i}:");
        let (mut r, mut l) = (vec![], vec![]);
        for _ in 0..n {
            let logits: Vec<f64> = (0..5).map(|_| 3.0 * lcg(&mut seed)).collect();
            let lse = logits.iter().map(|x| x.exp()).sum::<f64>().ln();
            let row: Vec<f32> = logits.iter().map(|x| (x - lse) as f32).collect();
            // members pick the argmax more often
            let pick = if i < 7 && lcg(&mut seed) < 0.3 {
                (0..5).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap()
            } else {
                (lcg(&mut seed) * 5.0) as usize
            };
            text.push(' ');
            text.push_str(words[(pick + i) % words.len()]);
            l.push(row[pick]);
            r.push(row);
        }
        texts.push(text);
        rows.push(r);
        lp.push(l);
        reference_nll.push(0.5 + 1.5 * lcg(&mut seed));
        let scale = if i < 7 { 0.7 } else { 1.0 };
        grad_norms.push((0..3).map(|_| scale * (0.2 + lcg(&mut seed))).collect());
    }
    World { texts, rows, lp, reference_nll, grad_norms }
}

#[test]
fn the_suite_in_one_pass_matches_the_numpy_recomputation() {
    let w = world();
    let (forget, holdout) = (w.texts[..7].to_vec(), w.texts[7..].to_vec());
    let idx = |t: &str| w.texts.iter().position(|x| x == t).unwrap();
    let answer = |r: &Request| {
        let i = idx(text_of(r));
        match r {
            Request::Rolling { .. } => {
                Response::Rolling { logprob: w.lp[i].iter().map(|&x| x as f64).sum(), n_tokens: w.lp[i].len() }
            }
            Request::TokenLogprobs { .. } => Response::TokenLogprobs(w.lp[i].clone()),
            Request::Distributions { .. } => Response::Distributions(w.rows[i].clone()),
            Request::GradNorm { .. } => Response::GradNorm {
                nll: -w.lp[i].iter().map(|&x| x as f64).sum::<f64>() / w.lp[i].len() as f64,
                n_tokens: w.lp[i].len(),
                tensor_norms: w.grad_norms[i].clone(),
            },
            _ => unreachable!(),
        }
    };
    let loss = MiaLoss::new(forget.clone(), holdout.clone()).unwrap();
    let zlib = MiaZlib::new(forget.clone(), holdout.clone()).unwrap();
    let mink = MinKAuc::new(forget.clone(), holdout.clone()).unwrap();
    let minkpp = MiaMinKpp::new(forget.clone(), holdout.clone()).unwrap();
    let gradnorm = MiaGradNorm::new(forget.clone(), holdout.clone()).unwrap();
    let reference =
        MiaReference::new(forget, holdout, w.reference_nll[..7].to_vec(), w.reference_nll[7..].to_vec()).unwrap();
    let metrics: [&dyn Metric; 6] = [&loss, &zlib, &mink, &minkpp, &gradnorm, &reference];
    let mut s = fake(answer);
    let out = evaluate(&mut s, &metrics).unwrap();
    assert_eq!(s.calls, 1);
    for o in &out {
        let auc = o.value.value().unwrap();
        assert!(auc > 0.0 && auc < 1.0 && auc != 0.5, "{}: {auc}", o.name);
        assert_eq!(o.value.per_example.len(), 13, "{}", o.name);
    }

    let dump = json!({
        "n_forget": 7,
        "k": 0.4,
        "texts": w.texts,
        "rolling": w.lp.iter().map(|l| json!([l.iter().map(|&x| x as f64).sum::<f64>(), l.len()])).collect::<Vec<_>>(),
        "token_logprobs": w.lp,
        "rows": w.rows,
        "reference_nll": w.reference_nll,
        "grad_norms": w.grad_norms,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mia_reference.py");
    let numpy = Command::new("python3").args(["-c", "import numpy"]).output();
    if !matches!(numpy, Ok(ref o) if o.status.success()) {
        // CI (UNLEARN_DATA_DIR set, numpy installed by .ci/run) must run the reference check.
        assert!(
            std::env::var_os("UNLEARN_DATA_DIR").is_none(),
            "python3 with numpy is required for the numpy recomputation when UNLEARN_DATA_DIR is set"
        );
        println!("SKIPPED: the numpy recomputation needs python3 with numpy");
        return;
    }
    let mut child = Command::new("python3").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(dump.to_string().as_bytes()).unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(res.status.success(), "scripts/mia_reference.py failed");
    let reference: serde_json::Value = serde_json::from_slice(&res.stdout).unwrap();
    for o in &out {
        let r = &reference[&o.name];
        close(o.value.value().unwrap(), r["auc"].as_f64().unwrap(), 1e-12);
        let ours =
            o.value.per_example.iter().map(|e| e.get("score").or_else(|| e.get("mink")).unwrap().as_f64().unwrap());
        for (i, (a, b)) in ours.zip(r["scores"].as_array().unwrap()).enumerate() {
            let b = b.as_f64().unwrap();
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{} text {i}: {a} vs numpy {b}", o.name);
        }
    }
}
