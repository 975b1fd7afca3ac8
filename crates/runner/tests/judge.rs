//! The local LM judge of the judged accuracies (issue 15): its verdicts are the argmax of the
//! option letters' log-likelihoods after the documented prompt, checked against the engine's own
//! `loglikelihood` on the same strings; an empty answer reveals nothing; ties all count; too
//! many candidates is an error; and `JudgedAccuracy` uses it when given.

use std::sync::Arc;

use candle_core::Device;
use evals::judge::{Acc, Judge, JudgedAccuracy};
use evals::tofu::{QaItem, QaTemplate};
use evals::{Metric, Response, Scorer};
use lm::testing::{tiny_config, write_tiny_checkpoint};
use runner::judge::{argmax_flags, option, prompt, LmJudge};
use runner::scoring::LmScorer;

fn judge() -> (tempfile::TempDir, LmJudge, LmScorer) {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("judge");
    write_tiny_checkpoint(&m, tiny_config(lm::Arch::Llama), 4).unwrap();
    let j = LmJudge::new(LmScorer::load(&m, &Device::Cpu, false).unwrap(), "judge");
    let reference = LmScorer::load(&m, &Device::Cpu, false).unwrap();
    (dir, j, reference)
}

#[test]
fn the_prompt_is_the_documented_text() {
    let p = prompt("  the cat ", &["a dog", "the cat"]).unwrap();
    assert_eq!(
        p,
        "Which candidate answer is closest in meaning to the given answer?\n\nGiven answer: the cat\n\n\
         Candidates:\nA. a dog\nB. the cat\n\nThe closest candidate is"
    );
    assert_eq!((option(0), option(25)), (" A".to_string(), " Z".to_string()));
    let many: Vec<String> = (0..27).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = prompt("x", &refs).unwrap_err().to_string();
    assert!(err.contains("27 candidates"), "{err}");
    assert_eq!(argmax_flags(&[-3.0, -1.0, -1.0, -2.0]), [false, true, true, false], "ties all count");
    assert!(argmax_flags(&[]).is_empty());
}

#[test]
fn verdicts_are_the_argmax_of_the_option_letters() {
    let (_dir, j, reference) = judge();
    let questions: Vec<(&str, Vec<&str>)> = vec![
        ("born in Orlen", vec!["born in Orlen", "born in Medlin", "a poet"]),
        ("writes poetry", vec!["writes novels", "writes poetry"]),
        ("", vec!["anything", "else"]),
        ("   ", vec!["blank"]),
    ];
    let verdicts = j.closest_all(&questions).unwrap();
    let engine = reference.engine();
    for ((out, cands), got) in questions.iter().zip(&verdicts) {
        if out.trim().is_empty() {
            assert_eq!(got, &vec![false; cands.len()], "an empty answer: no candidate is closest");
            continue;
        }
        let p = prompt(out, cands).unwrap();
        let reqs: Vec<(String, String)> = (0..cands.len()).map(|k| (p.clone(), option(k))).collect();
        let ll: Vec<f64> = engine.loglikelihood(&reqs).unwrap().iter().map(|r| r.logprob).collect();
        let best = ll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let want: Vec<bool> = ll.iter().map(|&x| x == best).collect();
        assert_eq!(got, &want, "{out:?}: scores {ll:?}");
        assert_eq!(got.iter().filter(|&&b| b).count(), 1, "random weights: no exact tie expected");
        // one question alone gives the same verdict as in the batch
        assert_eq!(&j.closest(out, cands).unwrap(), got);
    }
    assert!(j.name().starts_with("lm:judge:prompt-v"));
}

/// `JudgedAccuracy` with the LM judge: per question, Acc_forget holds exactly when the ground
/// truth (candidate A) is not among the judge's closest.
#[test]
fn judged_accuracy_uses_the_lm_judge() {
    let (_dir, j, _) = judge();
    let j = Arc::new(j);
    let items: Vec<QaItem> = ["q1", "q2", "q3"]
        .iter()
        .map(|q| QaItem {
            question: q.to_string(),
            answer: format!("truth of {q}"),
            paraphrased_answer: None,
            perturbed_answers: vec![format!("wrong {q}"), format!("other {q}")],
        })
        .collect();
    let oracle: Vec<String> = items.iter().map(|i| format!("oracle says {}", i.question)).collect();
    let m = JudgedAccuracy::new(Acc::Forget, items.clone(), oracle.clone(), QaTemplate::default(), 8)
        .unwrap()
        .with_judge(j.clone());
    let answers = ["truth of q1", "oracle says q2", "wrong q3"];
    struct Fixed(Vec<String>);
    impl Scorer for Fixed {
        fn run(&mut self, requests: &[evals::Request]) -> anyhow::Result<Vec<Response>> {
            Ok(requests.iter().zip(&self.0).map(|(_, a)| Response::Generated(a.clone())).collect())
        }
    }
    let mut s = Fixed(answers.iter().map(|a| a.to_string()).collect());
    let responses = s.run(&m.requests()).unwrap();
    let v = m.compute(&responses).unwrap();
    let mut forgotten = 0;
    for (it, (a, o)) in items.iter().zip(answers.iter().zip(&oracle)) {
        let mut cands = vec![it.answer.as_str(), o.as_str()];
        cands.extend(it.perturbed_answers.iter().map(String::as_str));
        forgotten += usize::from(!j.closest(a, &cands).unwrap()[0]);
    }
    assert_eq!(v.value().unwrap(), forgotten as f64 / 3.0);
}
