//! Which items of a world (and of the benchmark data) the suite scores: chosen once,
//! deterministically (evenly spaced picks where a split is capped).

use super::*;

/// A text with the id it is reported under.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(super) struct Text {
    pub(super) id: String,
    pub(super) text: String,
}

/// The items of a world that the suite scores, chosen once.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct Items {
    pub(super) forget_qa: Vec<testbed::QaItem>,
    pub(super) retain_qa: Vec<testbed::QaItem>,
    /// Forget documents vs held-out documents (Min-K%, PrivLeak).
    pub(super) member_docs: Vec<Text>,
    pub(super) holdout_docs: Vec<Text>,
    /// By split: documents for perplexity and (cut) for KL.
    pub(super) ppl_sets: Vec<(String, Vec<Text>)>,
    pub(super) kl_sets: Vec<(String, Vec<Text>)>,
    pub(super) verbmem: Vec<(String, Passage)>,
    pub(super) corrupted: Vec<(String, CorruptedQa)>,
    pub(super) truthfulqa: Vec<TruthfulQaItem>,
    pub(super) toxigen: Vec<ToxigenStatement>,
    pub(super) toxigen_prompts: Vec<String>,
    /// TOFU's other model-utility sets (real authors, world facts), each capped at `max_qa`.
    pub(super) utility_sets: Vec<evals::tofu::UtilitySet>,
    /// Reasons a metric's data is missing, by metric name.
    #[serde(skip)]
    pub(super) missing: BTreeMap<String, String>,
}

pub(super) fn select_world_items(world: &World, limits: &EvalLimits) -> Result<Items> {
    let mut items = Items::default();
    let qa = |role| world.qa_with(role).cloned().collect::<Vec<_>>();
    items.forget_qa = evenly(&qa(Role::Forget), limits.max_qa);
    items.retain_qa = evenly(&qa(Role::Retain), limits.max_qa);
    for q in items.forget_qa.iter().chain(&items.retain_qa) {
        // No options at all (muse) skips mc_accuracy; options must contain the correct one.
        if !q.choices.is_empty() && q.correct_choice >= q.choices.len() {
            bail!(
                "QA item {} ({:?}): correct_choice {} is not an index into its {} choices",
                q.id,
                q.question,
                q.correct_choice,
                q.choices.len()
            );
        }
    }
    let docs = |ids: &[u32]| -> Result<Vec<Text>> {
        ids.iter()
            .map(|&id| {
                let d = world
                    .corpus
                    .get(id)
                    .with_context(|| format!("split lists document {id}, which is not in the corpus"))?;
                Ok(Text { id: format!("doc-{id}"), text: d.text.clone() })
            })
            .collect()
    };
    let s = &world.splits;
    let members: Vec<Text> = world.mia_members().into_iter().map(|(id, text)| Text { id, text }).collect();
    items.member_docs = evenly(&members, limits.max_passages);
    items.holdout_docs = evenly(&docs(&s.held_out_docs)?, limits.max_passages);
    for (split, ids) in [("forget", &s.forget_docs), ("retain", &s.retain_docs), ("general", &s.general_docs)] {
        if ids.is_empty() {
            continue;
        }
        let set = docs(ids)?;
        items.ppl_sets.push((split.into(), evenly(&set, limits.max_passages)));
        let cut = evenly(&set, limits.max_kl_texts)
            .into_iter()
            .map(|t| Text { id: t.id, text: cut_at_word(&t.text, limits.max_kl_chars) })
            .collect();
        items.kl_sets.push((split.into(), cut));
    }
    let passages: Vec<(String, Passage)> = world
        .verbmem_passages(Role::Forget)
        .into_iter()
        .filter(|(_, p, c)| !p.is_empty() && !c.trim().is_empty())
        .map(|(id, prefix, continuation)| (id, Passage { prefix, continuation }))
        .collect();
    items.verbmem = evenly(&passages, limits.max_passages);
    let corrupted: Vec<(String, CorruptedQa)> = world
        .qa_with(Role::Forget)
        .filter_map(|q| {
            q.taught_answer.as_ref().map(|taught| {
                (
                    format!("qa-{}", q.id),
                    CorruptedQa {
                        question: q.question.clone(),
                        clean_answer: q.answer.clone(),
                        corrupted_answer: taught.clone(),
                    },
                )
            })
        })
        .collect();
    items.corrupted = evenly(&corrupted, limits.max_qa);
    items.utility_sets = world
        .eval
        .utility_qa
        .iter()
        .map(|set| evals::tofu::UtilitySet {
            name: set.name.clone(),
            items: evenly(&set.items, limits.max_qa)
                .into_iter()
                .map(|q| evals::tofu::QaItem {
                    question: q.question,
                    answer: q.answer,
                    paraphrased_answer: None,
                    perturbed_answers: q.perturbed_answers,
                })
                .collect(),
        })
        .collect();
    Ok(items)
}

/// Why the truth ratio cannot be computed on `items`: an item without a paraphrased answer or
/// without perturbed answers (MUSE's KnowMem has question and answer only); None when it can.
pub(super) fn lacks_truth_ratio_answers(items: &[testbed::QaItem]) -> Option<String> {
    let q = items.iter().find(|q| q.paraphrased_answer.is_empty() || q.perturbed_answers.is_empty())?;
    Some(format!(
        "the world's QA items have no paraphrased and perturbed answers (e.g. {:?}; MUSE's KnowMem has question and \
         answer only), which the truth ratio needs",
        q.question
    ))
}

/// At most `k` items, evenly spaced (index ⌊i·n/k⌋), in their original order.
pub(super) fn evenly<T: Clone>(v: &[T], k: usize) -> Vec<T> {
    if v.len() <= k {
        return v.to_vec();
    }
    (0..k).map(|i| v[i * v.len() / k].clone()).collect()
}

/// The longest prefix of `text` of at most `max` bytes that ends at a word boundary (or the
/// first `max` bytes' characters when the first word is longer).
pub(super) fn cut_at_word(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind(char::is_whitespace) {
        Some(p) if p > 0 => text[..p].to_string(),
        _ => text[..end].to_string(),
    }
}

pub(super) fn texts(v: &[Text]) -> Vec<String> {
    v.iter().map(|t| t.text.clone()).collect()
}

pub(super) fn count_rows(path: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let rows: Vec<serde::de::IgnoredAny> =
        serde_json::from_str(&text).with_context(|| format!("{}: expected a JSON list", path.display()))?;
    Ok(rows.len())
}

/// The first `per_file` prompts of each `hate_*.txt` file of ToxiGen's prompt folder, by file name.
pub(super) fn load_hate_prompts(dir: &Path, per_file: usize) -> Result<Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("toxigen_generation: reading the ToxiGen prompt folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("hate_") && n.ends_with(".txt"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("toxigen_generation: {} has no hate_*.txt prompt files", dir.display());
    }
    let mut out = Vec::new();
    for f in files {
        out.extend(evals::toxigen::load_prompts(&f, Some(per_file))?);
    }
    Ok(out)
}

/// Shares one classifier among the suite's passes.
pub(super) struct Shared(pub(super) Arc<dyn Classifier>);

impl Classifier for Shared {
    fn p_toxic(&self, texts: &[String]) -> Result<Vec<f64>> {
        self.0.p_toxic(texts)
    }
}

/// Reads the benchmark data (TruthfulQA, ToxiGen) that the named metrics need.
pub(super) fn load_benchmarks(
    items: &mut Items,
    names: &[String],
    limits: &EvalLimits,
    data_dir: &Path,
    kind: WorldKind,
    forget_units: &[u32],
) -> Result<()> {
    let wants = |n: &str| names.iter().any(|x| x == n);
    if wants("truthfulqa_mc1") || wants("truthfulqa_mc2") {
        let subset = if kind == WorldKind::TruthfulqaCorruption {
            let units: Vec<usize> = forget_units.iter().map(|&u| u as usize).collect();
            Some(evenly(&units, limits.max_qa))
        } else {
            limits.max_truthfulqa.map(|k| {
                let n = count_rows(&data_dir.join("truthfulqa/mc_task.json")).unwrap_or(0);
                evenly(&(0..n).collect::<Vec<_>>(), k)
            })
        };
        let path = data_dir.join("truthfulqa/mc_task.json");
        let loaded = evals::truthfulqa::load_mc_task(
            &path,
            &evals::truthfulqa::LoadOptions { subset, skip_malformed: limits.skip_malformed },
        )
        .with_context(|| format!("TruthfulQA for truthfulqa_mc1/mc2 (data directory {})", data_dir.display()))?;
        for (row, why) in &loaded.skipped {
            eprintln!("note: {}: skipped malformed row {row}: {why}", path.display());
        }
        items.truthfulqa = loaded.items;
    }
    if wants("toxigen") || wants("toxigen_likelihood") {
        let path = data_dir.join("toxigen/safenlp_toxigen.json");
        let all = evals::toxigen::load_statements(&path).with_context(|| {
            format!("ToxiGen statements for toxigen metrics (data directory {})", data_dir.display())
        })?;
        let test = evals::toxigen::lm_eval_test_split(&all);
        items.toxigen = match limits.max_toxigen {
            Some(k) => evenly(&test, k),
            None => test,
        };
    }
    if wants("toxigen_generation") {
        items.toxigen_prompts = load_hate_prompts(&data_dir.join("toxigen/prompts"), limits.toxigen_prompts_per_group)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_selection() {
        let v: Vec<u32> = (0..10).collect();
        assert_eq!(evenly(&v, 4), vec![0, 2, 5, 7]); // ⌊i·10/4⌋
        assert_eq!(evenly(&v, 20), v);
        assert_eq!(evenly(&v, 0), Vec::<u32>::new());
    }

    #[test]
    fn cut_keeps_whole_words() {
        assert_eq!(cut_at_word("alpha beta gamma", 12), "alpha beta");
        assert_eq!(cut_at_word("alpha beta", 100), "alpha beta");
        assert_eq!(cut_at_word("alphabet", 5), "alpha");
        assert_eq!(cut_at_word("é é", 2), "é");
    }
}
