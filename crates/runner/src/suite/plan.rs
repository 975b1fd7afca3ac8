//! What one model's pass scores: the metric objects of the requested names, built over the
//! suite's items (or skipped, with the reason), in the order requested.

use super::*;

/// One record to produce in a pass.
pub(super) enum Plan {
    Run { record: String, metric: Box<dyn Metric>, ids: Vec<String>, direction: Option<Direction> },
    Skip { record: String, direction: Direction, reason: String },
}

impl EvalSuite {
    /// The metrics of one model's pass, in the order requested.
    pub(super) fn plan(&self, oracle: &OracleRefs) -> Result<Vec<Plan>> {
        let it = &self.items;
        let t = || self.qa_template.clone();
        let t_of = |v: &[testbed::QaItem]| self.template_of(v);
        let qa_ids = |v: &[testbed::QaItem]| v.iter().map(|q| format!("qa-{}", q.id)).collect::<Vec<_>>();
        let mut plans = Vec::new();
        for name in &self.names {
            let name = name.as_str();
            let run = |metric: Box<dyn Metric>, ids: Vec<String>| Plan::Run {
                record: name.into(),
                metric,
                ids,
                direction: None,
            };
            let skip = |reason: String| Plan::Skip { record: name.into(), direction: nominal_direction(name), reason };
            if let Some(reason) = it.missing.get(name) {
                plans.push(skip(reason.clone()));
                continue;
            }
            let (fq, rq) = (&it.forget_qa, &it.retain_qa);
            let need = |v: &[testbed::QaItem], side: &str| {
                if v.is_empty() {
                    Some(format!("the world has no {side} QA items"))
                } else {
                    None
                }
            };
            let n = self.limits.answer_new_tokens;
            // The truth ratio (and what is built on it) needs paraphrased and perturbed answers.
            let truth_ratio_skip = |v: &[testbed::QaItem]| {
                matches!(
                    name,
                    "tofu_truth_ratio_forget"
                        | "tofu_forget_quality"
                        | "tofu_truth_ratio_retain"
                        | "tofu_model_utility"
                )
                .then(|| lacks_truth_ratio_answers(v))
                .flatten()
            };
            let plan = match name {
                "tofu_prob_forget"
                | "tofu_rouge_forget"
                | "tofu_truth_ratio_forget"
                | "muse_knowmem_forget"
                | "tofu_forget_quality" => match need(fq, "forget").or_else(|| truth_ratio_skip(fq)) {
                    Some(r) => skip(r),
                    None => {
                        let items = self.qa(fq);
                        let m: Box<dyn Metric> = match name {
                            "tofu_prob_forget" => Box::new(Probability::new(items, t_of(fq), Side::Forget)),
                            "tofu_rouge_forget" => Box::new(AnswerRouge::new(items, t_of(fq), Side::Forget, n)),
                            "tofu_truth_ratio_forget" => Box::new(TruthRatio::new(items, t_of(fq), Side::Forget)?),
                            "muse_knowmem_forget" => Box::new(KnowMem::new(items, t_of(fq), Side::Forget, n)),
                            _ => match &oracle.forget_truth_ratios {
                                Some(r) => Box::new(ForgetQuality::new(items, t_of(fq), r.clone())?),
                                None => bail!("tofu_forget_quality: the oracle references have no truth ratios"),
                            },
                        };
                        run(m, qa_ids(fq))
                    }
                },
                "tofu_prob_retain"
                | "tofu_rouge_retain"
                | "tofu_truth_ratio_retain"
                | "muse_knowmem_retain"
                | "tofu_model_utility" => match need(rq, "retain").or_else(|| truth_ratio_skip(rq)) {
                    Some(r) => skip(r),
                    None => {
                        let items = self.qa(rq);
                        let m: Box<dyn Metric> = match name {
                            "tofu_prob_retain" => Box::new(Probability::new(items, t_of(rq), Side::Retain)),
                            "tofu_rouge_retain" => Box::new(AnswerRouge::new(items, t_of(rq), Side::Retain, n)),
                            "tofu_truth_ratio_retain" => Box::new(TruthRatio::new(items, t_of(rq), Side::Retain)?),
                            "muse_knowmem_retain" => Box::new(KnowMem::new(items, t_of(rq), Side::Retain, n)),
                            // with TOFU's real authors and world facts when the world has them
                            _ => Box::new(
                                ModelUtility::new(items, t_of(rq), n, BTreeMap::new())?
                                    .with_sets(self.items.utility_sets.clone())?,
                            ),
                        };
                        run(m, qa_ids(rq))
                    }
                },
                "acc_forget" | "acc_recover" | "acc_retain" => {
                    let (acc, v, answers, side) = match name {
                        "acc_forget" => (Acc::Forget, fq, &oracle.forget_answers, "forget"),
                        "acc_recover" => (Acc::Recover, fq, &oracle.forget_answers, "forget"),
                        _ => (Acc::Retain, rq, &oracle.retain_answers, "retain"),
                    };
                    match (need(v, side), answers) {
                        (Some(r), _) => skip(r),
                        (None, Some(a)) if a.len() == v.len() => {
                            let mut m = JudgedAccuracy::new(acc, self.judged_qa(v), a.clone(), t_of(v), n)?;
                            if let Some(j) = &self.judge {
                                m = m.with_judge(j.clone());
                            }
                            run(Box::new(m), qa_ids(v))
                        }
                        (None, _) => bail!(
                            "{name}: the oracle references lack the oracle's greedy answers to the {side} questions \
                             (recompute them with oracle_pass)"
                        ),
                    }
                }
                "muse_verbmem" => {
                    if it.verbmem.is_empty() {
                        skip("the world has no forget passages (biographies, or MUSE's verbmem/forget)".into())
                    } else {
                        let passages = it.verbmem.iter().map(|(_, p)| p.clone()).collect();
                        let ids = it.verbmem.iter().map(|(id, _)| id.clone()).collect();
                        run(Box::new(VerbMem { passages, max_new_tokens: self.limits.verbmem_new_tokens }), ids)
                    }
                }
                "mink_auc" | "muse_privleak" => {
                    if it.member_docs.is_empty() || it.holdout_docs.is_empty() {
                        skip(format!(
                            "Min-K% needs forget and held-out documents; the world has {} and {}",
                            it.member_docs.len(),
                            it.holdout_docs.len()
                        ))
                    } else {
                        let (f, h) = (texts(&it.member_docs), texts(&it.holdout_docs));
                        let ids = it.member_docs.iter().chain(&it.holdout_docs).map(|t| t.id.clone()).collect();
                        if name == "mink_auc" {
                            run(Box::new(MinKAuc::new(f, h)?), ids)
                        } else {
                            let auc =
                                oracle.mink_auc.context("muse_privleak: the oracle references have no Min-K% AUC")?;
                            match PrivLeak::new(f, h, auc) {
                                Ok(m) => run(Box::new(m), vec![]),
                                Err(e) => skip(format!("{e:#}")),
                            }
                        }
                    }
                }
                "kl_to_oracle" => {
                    for (split, _) in &it.kl_sets {
                        let record = format!("kl_to_oracle/{split}");
                        plans.push(match oracle.kl.get(split) {
                            Some(r) if !r.texts.is_empty() => Plan::Run {
                                record,
                                metric: Box::new(evals::lm::NextTokenKl {
                                    texts: r.texts.clone(),
                                    oracle_rows: r.rows.clone(),
                                }),
                                ids: r.ids.clone(),
                                direction: None,
                            },
                            _ => Plan::Skip {
                                record,
                                direction: Direction::LowerIsBetter,
                                reason: format!("no oracle distributions for the {split} split"),
                            },
                        });
                    }
                    continue;
                }
                "perplexity" => {
                    for (split, set) in &it.ppl_sets {
                        plans.push(Plan::Run {
                            record: format!("perplexity/{split}"),
                            metric: Box::new(evals::lm::Perplexity::new("perplexity", texts(set))),
                            ids: set.iter().map(|t| t.id.clone()).collect(),
                            // Unlearning should raise the forget set's perplexity.
                            direction: (split == "forget").then_some(Direction::HigherIsBetter),
                        });
                    }
                    continue;
                }
                "mc_accuracy" => {
                    for (split, v) in [("forget", fq), ("retain", rq)] {
                        let record = format!("mc_accuracy/{split}");
                        let reason = if v.is_empty() {
                            Some(format!("the world has no {split} QA items"))
                        } else if v.iter().any(|q| q.choices.is_empty()) {
                            Some(format!(
                                "the world's {split} QA items have no multiple-choice options (MUSE's KnowMem has \
                                 question and answer only)"
                            ))
                        } else {
                            None
                        };
                        if let Some(reason) = reason {
                            plans.push(Plan::Skip { record, direction: Direction::HigherIsBetter, reason });
                            continue;
                        }
                        // Forgetting lowers forget accuracy, except where the forget data was a
                        // corruption and the correct choice is the clean answer.
                        let direction = if split == "forget" && self.kind != WorldKind::TruthfulqaCorruption {
                            evals::Direction::LowerIsBetter
                        } else {
                            evals::Direction::HigherIsBetter
                        };
                        let items = v
                            .iter()
                            .map(|q| McItem {
                                question: q.question_with_context(),
                                choices: q.choices.clone(),
                                correct: q.correct_choice,
                            })
                            .collect();
                        plans.push(Plan::Run {
                            record,
                            metric: Box::new(McAccuracy { items, direction, template: self.template_of(v) }),
                            ids: qa_ids(v),
                            direction: None,
                        });
                    }
                    continue;
                }
                "restor_clean_acc" | "restor_recovery" => {
                    if it.corrupted.is_empty() {
                        skip("the world has no corrupted questions (truthfulqa-corruption worlds only)".into())
                    } else {
                        let ids = it.corrupted.iter().map(|(id, _)| id.clone()).collect();
                        if name == "restor_clean_acc" {
                            run(Box::new(CleanAnswerAccuracy { items: self.corrupted(), template: t() }), ids)
                        } else {
                            match (oracle.restor_theta_d_acc, oracle.restor_oracle_acc) {
                                (Some(d), Some(o)) => run(Box::new(Recovery::new(self.corrupted(), t(), d, o)), ids),
                                _ => {
                                    bail!("restor_recovery: the oracle references lack θ_D's or the oracle's accuracy")
                                }
                            }
                        }
                    }
                }
                "truthfulqa_mc1" | "truthfulqa_mc2" => {
                    if it.truthfulqa.is_empty() {
                        skip("no TruthfulQA questions selected".into())
                    } else {
                        let ids = it.truthfulqa.iter().map(|q| format!("tqa-{}", q.index)).collect();
                        let items = it.truthfulqa.clone();
                        if name == "truthfulqa_mc1" {
                            run(Box::new(TruthfulQaMc1 { items }), ids)
                        } else {
                            run(Box::new(TruthfulQaMc2 { items }), ids)
                        }
                    }
                }
                "toxigen" | "toxigen_likelihood" => {
                    if it.toxigen.is_empty() {
                        skip("no ToxiGen statements selected".into())
                    } else {
                        let ids = it.toxigen.iter().map(|s| format!("toxigen-{}", s.id)).collect();
                        let statements = it.toxigen.clone();
                        if name == "toxigen" {
                            run(Box::new(Toxigen { statements, config: ToxigenConfig::default() }), ids)
                        } else {
                            run(Box::new(ToxigenLikelihood { statements }), vec![])
                        }
                    }
                }
                "toxigen_generation" => run(
                    Box::new(GenerationToxicity {
                        prompts: it.toxigen_prompts.clone(),
                        max_new_tokens: self.limits.toxigen_new_tokens,
                        classifier: self.classifier.clone().map(|c| Box::new(Shared(c)) as Box<dyn Classifier>),
                    }),
                    vec![],
                ),
                "param_distance_to_oracle" => continue,
                "mia_loss_auc" | "mia_zlib_auc" | "mia_minkpp_auc" | "mia_gradnorm_auc" => {
                    if it.member_docs.is_empty() || it.holdout_docs.is_empty() {
                        skip(format!(
                            "membership inference needs forget and held-out documents; the world has {} and {}",
                            it.member_docs.len(),
                            it.holdout_docs.len()
                        ))
                    } else {
                        let (f, h) = (texts(&it.member_docs), texts(&it.holdout_docs));
                        let ids = it.member_docs.iter().chain(&it.holdout_docs).map(|t| t.id.clone()).collect();
                        let m: Box<dyn Metric> = match name {
                            "mia_loss_auc" => Box::new(evals::mia::MiaLoss::new(f, h)?),
                            "mia_zlib_auc" => Box::new(evals::mia::MiaZlib::new(f, h)?),
                            "mia_gradnorm_auc" => Box::new(evals::mia::MiaGradNorm::new(f, h)?),
                            _ => Box::new(evals::mia::MiaMinKpp::new(f, h)?),
                        };
                        run(m, ids)
                    }
                }
                "exact_memorization" => {
                    if it.member_docs.is_empty() {
                        skip("the world has no forget documents".into())
                    } else {
                        let ids = it.member_docs.iter().map(|t| t.id.clone()).collect();
                        run(Box::new(evals::memorisation::ExactMemorisation { texts: texts(&it.member_docs) }), ids)
                    }
                }
                "mia_reference_auc" => match (&oracle.mia_reference_nll, &self.mia_reference) {
                    _ if it.member_docs.is_empty() || it.holdout_docs.is_empty() => skip(format!(
                        "membership inference needs forget and held-out documents; the world has {} and {}",
                        it.member_docs.len(),
                        it.holdout_docs.len()
                    )),
                    (Some(nll), Some(_)) if nll.len() == it.member_docs.len() + it.holdout_docs.len() => {
                        let (f, h) = (texts(&it.member_docs), texts(&it.holdout_docs));
                        let ids = it.member_docs.iter().chain(&it.holdout_docs).map(|t| t.id.clone()).collect();
                        let (rf, rh) = nll.split_at(f.len());
                        run(Box::new(evals::mia::MiaReference::new(f, h, rf.to_vec(), rh.to_vec())?), ids)
                    }
                    (_, None) => skip(
                        "the reference attack needs a reference model (θ_0, the latest clean checkpoint); \
                         this world has none"
                            .into(),
                    ),
                    _ => bail!(
                        "mia_reference_auc: the oracle references lack the reference model's NLLs (recompute them)"
                    ),
                },
                other => bail!("metric `{other}` is known but the suite does not build it"),
            };
            plans.push(plan);
        }
        Ok(plans)
    }
}
