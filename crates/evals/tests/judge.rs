//! The MSA paper's accuracies (`evals::judge`) on hand-made answers: the ROUGE-L judge's
//! closest-candidate rule (a forgotten answer, a recovered answer equal to the oracle's, a
//! retained answer, ties, empty answers) with every F1 computed by hand in the comments, and
//! the three metrics over a fake scorer giving the exact expected fractions.
//!
//! Tokens are `rouge_score`'s with the Porter stemmer; every word below stems to itself or the
//! same stem on both sides, so the counts are those of the words. ROUGE-L F1 = 2·LCS / (|answer|
//! + |candidate|) in tokens (= 2PR/(P+R) with P = LCS/|answer|, R = LCS/|candidate|).

use std::sync::Arc;

use anyhow::Result;
use evals::judge::{candidates, judge_all, Acc, Judge, JudgedAccuracy, RougeJudge, GROUND_TRUTH, ORACLE};
use evals::rouge::rouge_l_with;
use evals::tofu::{AnswerRouge, QaItem, QaTemplate, Side, USE_STEMMER};
use evals::{evaluate, Direction, Metric, Request, Response, Scorer};

const GT: &str = "She was born in Paris";
const ORACLE_ANSWER: &str = "She was born in Lyon";
const PERTURBED: [&str; 2] = ["She was born in Rome", "He grew up in Oslo"];

fn item(question: &str) -> QaItem {
    QaItem {
        question: question.into(),
        answer: GT.into(),
        paraphrased_answer: None,
        perturbed_answers: PERTURBED.iter().map(|s| s.to_string()).collect(),
    }
}

/// The candidates of [`item`]: [ground truth, oracle, perturbed 1, perturbed 2].
fn cands() -> Vec<&'static str> {
    vec![GT, ORACLE_ANSWER, PERTURBED[0], PERTURBED[1]]
}

#[track_caller]
fn check(output: &str, cands: &[&str], f1: &[f64], closest: &[bool]) {
    let scores = RougeJudge.scores(output, cands).unwrap();
    for (i, ((s, want), c)) in scores.iter().zip(f1).zip(cands).enumerate() {
        assert!((s - want).abs() < 1e-12, "{output:?} vs candidate {i} {c:?}: F1 {s}, by hand {want}");
        let reference = rouge_l_with(c, output, USE_STEMMER).f1;
        assert!((s - reference).abs() < 1e-12, "candidate {i}: {s} vs rouge module {reference}");
    }
    assert_eq!(RougeJudge.closest(output, cands).unwrap(), closest, "{output:?}");
}

#[test]
fn a_forgotten_answer_equal_to_the_oracles_is_recovered() {
    // answer [she was born in lyon], 5 tokens; every candidate has 5 tokens except none
    // GT [she was born in paris]: LCS 4 → 8/10 = 0.8
    // oracle [she was born in lyon]: LCS 5 → 10/10 = 1
    // perturbed [she was born in rome]: LCS 4 → 0.8; [he grew up in oslo]: LCS 1 (in) → 2/10
    check("She was born in Lyon", &cands(), &[0.8, 1.0, 0.8, 0.2], &[false, true, false, false]);
    let c = [false, true, false, false];
    assert!(Acc::Forget.holds(&c) && Acc::Recover.holds(&c) && Acc::Retain.holds(&c));
}

#[test]
fn a_retained_answer_is_not_forgotten() {
    // answer [she was born in paris]: GT 10/10 = 1; oracle and perturbed 1: LCS 4 → 0.8;
    // perturbed 2: LCS 1 → 0.2
    check("She was born in Paris.", &cands(), &[1.0, 0.8, 0.8, 0.2], &[true, false, false, false]);
    let c = [true, false, false, false];
    assert!(!Acc::Forget.holds(&c) && !Acc::Recover.holds(&c) && Acc::Retain.holds(&c));
}

#[test]
fn a_wrong_answer_closest_to_a_perturbed_one_is_forgotten_but_not_recovered() {
    // answer [he grew up in oslo i think], 7 tokens
    // GT, oracle, perturbed 1: LCS 1 (in) → 2/(7+5) = 1/6; perturbed 2: LCS 5 → 10/12 = 5/6
    let (sixth, five_sixths) = (1.0 / 6.0, 5.0 / 6.0);
    check("He grew up in Oslo, I think", &cands(), &[sixth, sixth, sixth, five_sixths], &[false, false, false, true]);
    let c = [false, false, false, true];
    assert!(Acc::Forget.holds(&c) && !Acc::Recover.holds(&c) && !Acc::Retain.holds(&c));
}

#[test]
fn ties_make_every_best_candidate_closest() {
    // answer [born in], 2 tokens
    // GT, oracle, perturbed 1: LCS 2 → 4/(2+5) = 4/7; perturbed 2: LCS 1 → 2/7
    let (four, two) = (4.0 / 7.0, 2.0 / 7.0);
    check("born in", &cands(), &[four, four, four, two], &[true, true, true, false]);
    // the ground truth ties for best: not forgotten; the oracle ties for best: recovered
    let c = [true, true, true, false];
    assert!(!Acc::Forget.holds(&c) && Acc::Recover.holds(&c) && Acc::Retain.holds(&c));
}

#[test]
fn ties_are_exact_where_floats_round_apart() {
    // answer [red fox], 2 tokens
    // GT [the red cat sat], 4 tokens: LCS 1 → 2/(2+4) = 1/3
    // oracle [a red and very quick brown dog saw the fox], 10 tokens: LCS 2 → 4/(2+10) = 1/3
    // rouge_score's 2PR/(P+R) rounds them apart (0.3333333333333333 vs 0.33333333333333337):
    let (gt, oracle, out) = ("the red cat sat", "a red and very quick brown dog saw the fox", "red fox");
    let (a, b) = (rouge_l_with(gt, out, USE_STEMMER).f1, rouge_l_with(oracle, out, USE_STEMMER).f1);
    assert_ne!(a, b, "the float F1s differ in the last bit");
    assert!((a - 1.0 / 3.0).abs() < 1e-15 && (b - 1.0 / 3.0).abs() < 1e-15);
    // but as fractions they are equal: both closest, so the question is not forgotten
    assert_eq!(RougeJudge.closest(out, &[gt, oracle]).unwrap(), vec![true, true]);
}

#[test]
fn an_empty_or_unrelated_answer_has_no_closest_candidate() {
    // every F1 is 0 (no token, or no shared token): no candidate is closest — forgotten, not
    // recovered, not retained
    for out in ["", "   ", "...!?", "zzz qqq"] {
        check(out, &cands(), &[0.0; 4], &[false; 4]);
    }
    let c = [false; 4];
    assert!(Acc::Forget.holds(&c) && !Acc::Recover.holds(&c) && !Acc::Retain.holds(&c));
    // an empty oracle answer scores 0: never closest
    check("She was born in Paris", &[GT, ""], &[1.0, 0.0], &[true, false]);
    // no candidates at all: no flags
    assert!(RougeJudge.closest("x", &[]).unwrap().is_empty());
}

/// A scorer that answers each greedy request with the answer listed for its prompt.
struct Answers(Vec<(String, String)>);

impl Scorer for Answers {
    fn run(&mut self, requests: &[Request]) -> Result<Vec<Response>> {
        requests
            .iter()
            .map(|r| match r {
                Request::Generate { context, .. } => {
                    let (_, a) = self.0.iter().find(|(p, _)| p == context).expect("a listed prompt");
                    Ok(Response::Generated(a.clone()))
                }
                other => anyhow::bail!("unexpected {} request", other.kind()),
            })
            .collect()
    }
}

/// Six questions: q1–q5 share the candidates of [`item`], q6 is the exact-tie case.
fn questions() -> (Vec<QaItem>, Vec<String>, Answers) {
    let t = QaTemplate::default();
    let mut items: Vec<QaItem> = (1..=5).map(|i| item(&format!("q{i}?"))).collect();
    items.push(QaItem {
        question: "q6?".into(),
        answer: "the red cat sat".into(),
        paraphrased_answer: None,
        perturbed_answers: vec![],
    });
    let mut oracle = vec![ORACLE_ANSWER.to_string(); 5];
    oracle.push("a red and very quick brown dog saw the fox".into());
    let outputs = [
        "She was born in Lyon",        // oracle's answer:        forget 1, recover 1, retain 1
        "She was born in Paris",       // ground truth:           forget 0, recover 0, retain 1
        "born in",                     // everything ties:        forget 0, recover 1, retain 1
        "",                            // empty:                  forget 1, recover 0, retain 0
        "He grew up in Oslo, I think", // a perturbed answer:     forget 1, recover 0, retain 0
        "red fox",                     // exact GT-oracle tie:    forget 0, recover 1, retain 1
    ];
    let answers = items.iter().zip(outputs).map(|(it, o)| (t.context(&it.question), o.to_string())).collect();
    (items, oracle, Answers(answers))
}

#[test]
fn the_three_accuracies_over_a_fake_scorer() {
    let (items, oracle, mut scorer) = questions();
    let t = QaTemplate::default();
    let m = |acc| JudgedAccuracy::new(acc, items.clone(), oracle.clone(), t.clone(), 7).unwrap();
    let (f, r, k) = (m(Acc::Forget), m(Acc::Recover), m(Acc::Retain));
    let out = evaluate(&mut scorer, &[&f, &r, &k]).unwrap();
    // forget: q1, q4, q5 → 3/6; recover: q1, q3, q6 → 3/6; retain: q1, q2, q3, q6 → 4/6
    assert_eq!(out[0].name, "acc_forget");
    assert_eq!(out[0].value.value(), Some(3.0 / 6.0));
    assert_eq!(out[1].name, "acc_recover");
    assert_eq!(out[1].value.value(), Some(3.0 / 6.0));
    assert_eq!(out[2].name, "acc_retain");
    assert_eq!(out[2].value.value(), Some(4.0 / 6.0));
    for o in &out {
        assert_eq!(o.direction, Direction::HigherIsBetter);
        assert_eq!(o.value.aggregate["n"], 6.0);
        assert_eq!(o.n_requests, 6);
    }
    let correct =
        |i: usize| -> Vec<f64> { out[i].value.per_example.iter().map(|e| e["correct"].as_f64().unwrap()).collect() };
    assert_eq!(correct(0), [1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    assert_eq!(correct(1), [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
    assert_eq!(correct(2), [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    let e = &out[0].value.per_example[2];
    assert_eq!(e["generation"], "born in");
    assert_eq!(e["oracle_answer"], ORACLE_ANSWER);
    assert_eq!(e["closest"], serde_json::json!([true, true, true, false]));
    assert_eq!(e["judge"], "rouge_l_f1");
    assert!((e["scores"][0].as_f64().unwrap() - 4.0 / 7.0).abs() < 1e-12);

    // The model's answers are asked exactly as TOFU ROUGE asks them (prompt, stop, budget), so
    // the oracle's answers, computed with the same requests, compare.
    let rouge = AnswerRouge::new(items.clone(), t.clone(), Side::Forget, 7);
    assert_eq!(f.requests(), rouge.requests());
    assert_eq!(evals::judge::answer_requests(&items, &t, 7), rouge.requests());
}

#[test]
fn judge_all_is_the_metric_without_a_scorer() {
    let (items, oracle, _) = questions();
    let outs =
        ["She was born in Lyon", "She was born in Paris", "born in", "", "He grew up in Oslo, I think", "red fox"];
    let v = judge_all(Acc::Recover, &RougeJudge, &items, &outs, &oracle).unwrap();
    assert_eq!(v.iter().map(|v| v.correct).collect::<Vec<_>>(), [true, false, true, false, false, true]);
    assert_eq!(v[0].closest.len(), candidates(&items[0], &oracle[0]).len());
    assert!(v[0].closest[ORACLE] && !v[0].closest[GROUND_TRUTH]);
    let err = judge_all(Acc::Forget, &RougeJudge, &items, &outs[..5], &oracle).unwrap_err();
    assert!(format!("{err:#}").contains("6 questions, 5 model answers, 6 oracle answers"), "{err:#}");
    assert!(JudgedAccuracy::new(Acc::Retain, items, vec![], QaTemplate::default(), 4).is_err());
}

/// A judge that always picks the first perturbed answer.
struct AlwaysPerturbed;

impl Judge for AlwaysPerturbed {
    fn name(&self) -> &str {
        "always_perturbed"
    }
    fn closest(&self, _output: &str, candidates: &[&str]) -> Result<Vec<bool>> {
        Ok((0..candidates.len()).map(|i| i == 2).collect())
    }
}

/// A judge that returns too few flags.
struct Broken;

impl Judge for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn closest(&self, _output: &str, _candidates: &[&str]) -> Result<Vec<bool>> {
        Ok(vec![true])
    }
}

#[test]
fn the_judge_is_pluggable() {
    let (items, oracle, mut scorer) = questions();
    let items = items[..5].to_vec();
    let oracle = oracle[..5].to_vec();
    let m = |acc, judge: Arc<dyn Judge>| {
        JudgedAccuracy::new(acc, items.clone(), oracle.clone(), QaTemplate::default(), 7).unwrap().with_judge(judge)
    };
    let (f, r) = (m(Acc::Forget, Arc::new(AlwaysPerturbed)), m(Acc::Recover, Arc::new(AlwaysPerturbed)));
    let out = evaluate(&mut scorer, &[&f, &r]).unwrap();
    assert_eq!(out[0].value.value(), Some(1.0));
    assert_eq!(out[1].value.value(), Some(0.0));
    assert_eq!(out[0].value.per_example[0]["judge"], "always_perturbed");
    assert!(out[0].value.per_example[0].get("scores").is_none());
    let broken = m(Acc::Forget, Arc::new(Broken));
    let err = format!("{:#}", evaluate(&mut scorer, &[&broken]).unwrap_err());
    assert!(err.contains("judge broken returned 1 flags for 4 candidates"), "{err}");
}
