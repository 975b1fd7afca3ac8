//! Membership-inference attacks (MIA): the suite open-unlearning ships
//! (`src/evals/metrics/mia/`), each as a [`Metric`] whose value is the ROC AUC of the attack's
//! score separating forget documents (members of θ_D's training set, positives) from held-out
//! documents of the same kind (never trained on, negatives). A higher score means "more likely
//! a member"; the AUC is the Mann–Whitney U / (|forget|·|holdout|), ties counted ½
//! ([`roc_auc`]). An AUC is judged by its distance to the oracle's AUC (the retrained model
//! never saw the forget set either), as [`crate::muse::MinKAuc`] is. open-unlearning scores
//! with the loss and labels the held-out texts 1, which gives the same AUC.
//!
//! NLL̄ below is a text's mean token negative log-likelihood, −`Rolling.logprob` /
//! `Rolling.n_tokens`: every token of the text given the prefix token (BOS) and the tokens
//! before it (see [`crate::scorer`]); the prefix token itself is not scored.
//!
//! | metric | score per text (higher = member) | requests per text |
//! |---|---|---|
//! | `mia_loss_auc` ([`MiaLoss`]) | −NLL̄ | `Rolling` |
//! | `mia_zlib_auc` ([`MiaZlib`]) | −NLL̄ / zlib(text) | `Rolling` |
//! | `mink_auc` ([`crate::muse::MinKAuc`]) | mean of the lowest k of log p(x_t) | `TokenLogprobs` |
//! | `mia_minkpp_auc` ([`MiaMinKpp`]) | mean of the lowest k of (log p(x_t) − μ_t)/σ_t | `TokenLogprobs`, `Distributions` |
//! | `mia_reference_auc` ([`MiaReference`]) | NLL̄_reference − NLL̄ | `Rolling`, plus the reference model's NLL̄ |
//! | `mia_gradnorm_auc` ([`MiaGradNorm`]) | −mean over parameter tensors θ_i of ‖∂NLL̄/∂θ_i‖₂ | `GradNorm` (a backward pass) |
//!
//! - LOSS (Yeom et al. 2018, "Privacy Risk in Machine Learning: Analyzing the Connection to
//!   Overfitting"): score = −NLL̄. open-unlearning: `LOSSAttack`, `avg_loss`.
//! - ZLib (Carlini et al. 2021, "Extracting Training Data from Large Language Models", §6.1:
//!   "the ratio of the (log) perplexity … and the zlib entropy"): score = −NLL̄ / L, where
//!   NLL̄ is the log-perplexity (the MEAN token NLL, not the total) and L the length in bytes
//!   of `zlib.compress(text.encode("utf-8"))` at Python's default level 6
//!   ([`crate::zlib::compressed_len`], byte-exact with zlib). open-unlearning: `ZLIBAttack`,
//!   `avg_loss / len(zlib.compress(text))`.
//! - Min-K% Prob (Shi et al. 2024, ICLR): [`crate::muse::MinKAuc`], not repeated here.
//! - Min-K%++ (Zhang et al., ICLR 2025, "Min-K%++: Improved Baseline for Detecting
//!   Pre-Training Data from Large Language Models"): for each scored token x_t with
//!   next-token distribution p(·|x_<t), z_t = (log p(x_t) − μ_t)/σ_t with
//!   μ_t = Σ_z p(z) log p(z) and σ_t² = Σ_z p(z) (log p(z))² − μ_t² over the whole vocabulary;
//!   score = mean of the lowest max(1, floor(n·k)) of the z_t, k = 40% by default (the k of
//!   `mink_auc` and of open-unlearning's MUSE config). σ_t² is clamped below at 1e-6 as in
//!   open-unlearning's `MinKPlusPlusAttack` (a one-hot distribution has σ = 0); vocabulary
//!   entries with log p = −∞ contribute 0 to μ and σ². Computed in f64.
//! - Reference (Carlini et al. 2021, §6.1 "comparing to other neural language models";
//!   Carlini et al. 2022, "Membership Inference Attacks From First Principles", the
//!   reference-model calibration): score = −(NLL̄_target − NLL̄_reference). The reference
//!   model's NLL̄ per text is computed in the reference model's pass and given to
//!   [`MiaReference::new`] (as [`crate::muse::PrivLeak`] takes the oracle's AUC); open-unlearning
//!   uses the retrained model as reference (`reference_model_path: …_retrain`). Build the
//!   values with [`MiaReference::reference_requests`] in that pass and
//!   [`mean_nlls_of`] on its responses. Both NLL̄s are per token of each model's own
//!   tokeniser: use a reference that shares the target's tokeniser (θ_0, the oracle).
//! - GradNorm (the gradient-norm attack as open-unlearning cites it: Wang et al. 2024,
//!   arXiv:2402.17012; open-unlearning: `GradNormAttack`, `src/evals/metrics/mia/gradnorm.py`,
//!   with `p: 2` in its TOFU and MUSE configs, read at commit d3d7cf9): a member sits nearer a
//!   minimum of the training loss, so its loss has a smaller gradient. Per text, the loss is
//!   NLL̄ (the MEAN token NLL, as open-unlearning's `-torch.mean(lps)`), differentiated with
//!   respect to every parameter tensor θ_i of the model (PyTorch's `model.parameters()`: tied
//!   weights once, the rotary tables are no parameters), one text per backward pass; then
//!   score = −(1/T) Σ_i ‖∂NLL̄/∂θ_i‖₂, the MEAN over the T tensors of each tensor's L2 norm —
//!   open-unlearning's `torch.stack([param.grad.norm(p=2) ...]).mean()`, not the L2 norm of
//!   the whole gradient vector. The whole vector's norm, ‖∇_θ NLL̄‖₂ = sqrt(Σ_i ‖∂NLL̄/∂θ_i‖₂²)
//!   (the definition of the gradient-norm attack papers), is kept per text (`grad_norm`) and its
//!   AUC is the sub-value `global_l2`. Sign: open-unlearning returns the positive norm and
//!   labels the held-out texts 1, which gives the same AUC as −norm with the forget texts
//!   positive. What differs from open-unlearning, by construction: the tokens are `Rolling`'s
//!   (the text after the prefix token, without an appended EOS; open-unlearning's collator
//!   appends EOS and `tokenwise_logprobs` leaves its prediction out, so the scored tokens are
//!   the same), a text longer than the model's length is scored over `Rolling`'s windows (the
//!   gradients of the windows summed, each window's token NLLs divided by the text's token
//!   count), and there is no dropout to switch on (open-unlearning calls `model.train()`; the
//!   engine's models have none). Norms are summed in f64 from f32 gradients.
//!
//! Which distribution predicts which token (Min-K%++). `Distributions { text }` returns one
//! log-softmax row per token of `text`: `rows[i]` is the model's output after
//! `[prefix] + tokens[..i]`, i.e. the distribution that predicts `tokens[i]` (row 0 is the
//! output at the prefix token and predicts the text's first token; no row predicts the prefix
//! token, and the output after the last token, which predicts nothing in the text, is not
//! returned). `TokenLogprobs { text }` returns `lp[i] = log p(tokens[i] | prefix, tokens[..i])`,
//! which is `rows[i][tokens[i]]`. So z_i pairs `lp[i]` with the moments of `rows[i]`: the same
//! index, no shift. Both requests use the same tokenisation (no special tokens; the engine
//! prepends its prefix token, BOS else EOS). The engine cuts `Distributions` at the model's
//! maximal length, while `TokenLogprobs` continues in rolling windows, so a longer text is
//! scored on its first `rows.len()` tokens (reported as `n_tokens`). open-unlearning's
//! `tokenwise_vocab_logprobs` pairs the same way (the logits at position t − 1 with label t)
//! and leaves out the last labelled position ("ignore eos prediction").
//!
//! Cost of Min-K%++: a `Distributions` response holds n_tokens × vocabulary f32 values per
//! text (2 000 tokens × 32 000 = 256 MB), and the evaluator keeps every response of a pass
//! until the metrics compute; keep its text sets small or short. A request returning only
//! (log p(x_t), μ_t, σ_t) per position would make it as cheap as `mink_auc`, but needs a new
//! `Request` kind that every `Scorer` (the runner's included) would have to answer.
//!
//! Cost of GradNorm: one forward and one backward pass per text (f32, one text per backward,
//! the gradient dropped once its norms are taken), about three forward passes' worth, plus, in
//! the engine, one f32 gradient the size of the model at a time. The metric is opt-in (the
//! runner's default metric lists leave it out; a config names it).

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::metric::{expect_len, Direction, Metric, MetricValue};
use crate::muse::DEFAULT_MIN_K;
use crate::scorer::{Request, Response};
use crate::stats::{mean_of_lowest, roc_auc};
use crate::zlib::compressed_len;

/// Variance floor of Min-K%++ (open-unlearning's `torch.clamp(sigma, min=1e-6)`).
pub const MINKPP_MIN_VARIANCE: f64 = 1e-6;

fn check_sets(what: &str, forget: &[String], holdout: &[String]) -> Result<()> {
    if forget.is_empty() || holdout.is_empty() {
        bail!("{what} needs forget and holdout texts, got {} and {}", forget.len(), holdout.len());
    }
    Ok(())
}

fn rolling_requests(forget: &[String], holdout: &[String]) -> Vec<Request> {
    forget.iter().chain(holdout).map(|t| Request::Rolling { text: t.clone() }).collect()
}

/// Mean token NLL of a `Rolling` response.
fn mean_nll(r: &Response) -> Result<f64> {
    let (logprob, n) = r.rolling()?;
    if n == 0 {
        bail!("the text has no tokens");
    }
    let nll = -logprob / n as f64;
    if !nll.is_finite() {
        bail!("mean NLL {nll} is not finite");
    }
    Ok(nll)
}

/// Mean token NLL of every text from the `Rolling` responses to
/// [`MiaReference::reference_requests`] (or any `Rolling` requests).
pub fn mean_nlls_of(responses: &[Response]) -> Result<Vec<f64>> {
    responses.iter().enumerate().map(|(i, r)| mean_nll(r).with_context(|| format!("text {i}"))).collect()
}

/// AUC of `scores` (forget first, then holdout) and the per-example records: one JSON object
/// per text, forget first, each `{"set": "forget"|"holdout", "score": s, ...extra}`.
fn auc_value(n_forget: usize, scores: &[f64], mut extra: Vec<Value>) -> Result<MetricValue> {
    let (f, h) = scores.split_at(n_forget);
    let auc = roc_auc(f, h)?;
    for (i, (e, s)) in extra.iter_mut().zip(scores).enumerate() {
        let obj = e.as_object_mut().expect("per-example values are JSON objects");
        obj.insert("set".into(), json!(if i < n_forget { "forget" } else { "holdout" }));
        obj.insert("score".into(), json!(s));
    }
    Ok(MetricValue::scalar(auc).with_examples(extra))
}

/// LOSS attack (Yeom et al. 2018): score = −NLL̄. Per example: `score`, `nll` (= NLL̄).
#[derive(Clone, Debug)]
pub struct MiaLoss {
    pub forget: Vec<String>,
    pub holdout: Vec<String>,
}

impl MiaLoss {
    pub fn new(forget: Vec<String>, holdout: Vec<String>) -> Result<Self> {
        check_sets("mia_loss_auc", &forget, &holdout)?;
        Ok(MiaLoss { forget, holdout })
    }
}

impl Metric for MiaLoss {
    fn name(&self) -> &str {
        "mia_loss_auc"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::CloserTo(0.5)
    }
    fn requests(&self) -> Vec<Request> {
        rolling_requests(&self.forget, &self.holdout)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.forget.len() + self.holdout.len(), self.name())?;
        let nll = mean_nlls_of(responses)?;
        let scores: Vec<f64> = nll.iter().map(|x| -x).collect();
        let extra = nll.iter().map(|x| json!({ "nll": x })).collect();
        auc_value(self.forget.len(), &scores, extra)
    }
}

/// ZLib attack (Carlini et al. 2021): score = −NLL̄ / zlib bytes. Per example: `score`, `nll`,
/// `zlib_bytes`.
#[derive(Clone, Debug)]
pub struct MiaZlib {
    pub forget: Vec<String>,
    pub holdout: Vec<String>,
}

impl MiaZlib {
    pub fn new(forget: Vec<String>, holdout: Vec<String>) -> Result<Self> {
        check_sets("mia_zlib_auc", &forget, &holdout)?;
        Ok(MiaZlib { forget, holdout })
    }
}

impl Metric for MiaZlib {
    fn name(&self) -> &str {
        "mia_zlib_auc"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::CloserTo(0.5)
    }
    fn requests(&self) -> Vec<Request> {
        rolling_requests(&self.forget, &self.holdout)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.forget.len() + self.holdout.len(), self.name())?;
        let nll = mean_nlls_of(responses)?;
        let mut scores = Vec::with_capacity(nll.len());
        let mut extra = Vec::with_capacity(nll.len());
        for (text, x) in self.forget.iter().chain(&self.holdout).zip(&nll) {
            let z = compressed_len(text.as_bytes());
            scores.push(-x / z as f64);
            extra.push(json!({ "nll": x, "zlib_bytes": z }));
        }
        auc_value(self.forget.len(), &scores, extra)
    }
}

/// Min-K%++ z-scores (log p(x_i) − μ_i)/σ_i of the first `rows.len()` tokens; `lp[i]` is the
/// log-probability of token i, `rows[i]` the log-softmax row that predicts it (see the
/// module docs).
pub fn minkpp_token_scores(lp: &[f32], rows: &[Vec<f32>]) -> Result<Vec<f64>> {
    if rows.is_empty() {
        bail!("Min-K%++: no next-token distributions (empty text?)");
    }
    if rows.len() > lp.len() {
        bail!(
            "Min-K%++: {} distribution rows but {} token log-probs; rows[i] must predict token i",
            rows.len(),
            lp.len()
        );
    }
    rows.iter()
        .zip(lp)
        .enumerate()
        .map(|(i, (row, &x))| {
            let (mut mass, mut mu, mut m2) = (0.0f64, 0.0f64, 0.0f64);
            for &l in row {
                if l == f32::NEG_INFINITY {
                    continue; // p = 0
                }
                let (l, p) = (l as f64, (l as f64).exp());
                mass += p;
                mu += p * l;
                m2 += p * l * l;
            }
            if mass.is_nan() || (mass - 1.0).abs() > 1e-2 {
                bail!("Min-K%++: row {i} sums to probability {mass}, not a log-softmax");
            }
            let var = (m2 - mu * mu).max(MINKPP_MIN_VARIANCE);
            let z = (x as f64 - mu) / var.sqrt();
            if !z.is_finite() {
                bail!("Min-K%++: token {i}: z-score {z} is not finite (log p = {x})");
            }
            Ok(z)
        })
        .collect()
}

/// Min-K%++ attack (Zhang et al. 2025). Requests per text, forget then holdout:
/// `TokenLogprobs`, `Distributions` (interleaved). Per example: `score`, `n_tokens` (tokens
/// scored).
#[derive(Clone, Debug)]
pub struct MiaMinKpp {
    pub forget: Vec<String>,
    pub holdout: Vec<String>,
    pub k: f64,
}

impl MiaMinKpp {
    pub fn new(forget: Vec<String>, holdout: Vec<String>) -> Result<Self> {
        check_sets("mia_minkpp_auc", &forget, &holdout)?;
        Ok(MiaMinKpp { forget, holdout, k: DEFAULT_MIN_K })
    }
}

impl Metric for MiaMinKpp {
    fn name(&self) -> &str {
        "mia_minkpp_auc"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::CloserTo(0.5)
    }
    fn requests(&self) -> Vec<Request> {
        self.forget
            .iter()
            .chain(&self.holdout)
            .flat_map(|t| [Request::TokenLogprobs { text: t.clone() }, Request::Distributions { text: t.clone() }])
            .collect()
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        let n = self.forget.len() + self.holdout.len();
        expect_len(responses, 2 * n, self.name())?;
        let mut scores = Vec::with_capacity(n);
        let mut extra = Vec::with_capacity(n);
        for (i, pair) in responses.chunks(2).enumerate() {
            let z = minkpp_token_scores(pair[0].token_logprobs()?, pair[1].distributions()?)
                .with_context(|| format!("text {i}"))?;
            scores.push(mean_of_lowest(&z, self.k).with_context(|| format!("text {i}"))?);
            extra.push(json!({ "n_tokens": z.len() }));
        }
        Ok(auc_value(self.forget.len(), &scores, extra)?.with("k", self.k))
    }
}

/// Reference-model attack (Carlini et al. 2021, 2022): score = NLL̄_reference − NLL̄. Per
/// example: `score`, `nll`, `reference_nll`.
#[derive(Clone, Debug)]
pub struct MiaReference {
    pub forget: Vec<String>,
    pub holdout: Vec<String>,
    /// The reference model's NLL̄ of each forget text, in order.
    pub reference_forget_nll: Vec<f64>,
    /// The reference model's NLL̄ of each holdout text, in order.
    pub reference_holdout_nll: Vec<f64>,
}

impl MiaReference {
    /// `forget` are the members, `holdout` the non-members; the reference NLL̄s come from the
    /// reference model's pass, one per text of each set, in the same order.
    pub fn new(
        forget: Vec<String>,
        holdout: Vec<String>,
        reference_forget_nll: Vec<f64>,
        reference_holdout_nll: Vec<f64>,
    ) -> Result<Self> {
        check_sets("mia_reference_auc", &forget, &holdout)?;
        for (set, texts, nll) in
            [("forget", &forget, &reference_forget_nll), ("holdout", &holdout, &reference_holdout_nll)]
        {
            if texts.len() != nll.len() {
                bail!("mia_reference_auc: {} {set} texts but {} reference NLLs for them", texts.len(), nll.len());
            }
            if let Some(i) = nll.iter().position(|x| !x.is_finite()) {
                bail!("mia_reference_auc: reference NLL of {set} text {i} is {}", nll[i]);
            }
        }
        Ok(MiaReference { forget, holdout, reference_forget_nll, reference_holdout_nll })
    }

    /// The requests to put into the reference model's pass (`evaluate_with_extra`): one
    /// `Rolling` per text, forget then holdout. Read their answers with [`mean_nlls_of`] and
    /// split them at `forget.len()`.
    pub fn reference_requests(forget: &[String], holdout: &[String]) -> Vec<Request> {
        rolling_requests(forget, holdout)
    }

    /// Builds the metric from the reference model's responses to [`Self::reference_requests`].
    pub fn from_reference_responses(forget: Vec<String>, holdout: Vec<String>, reference: &[Response]) -> Result<Self> {
        if reference.len() != forget.len() + holdout.len() {
            bail!(
                "mia_reference_auc: {} reference responses for {} texts",
                reference.len(),
                forget.len() + holdout.len()
            );
        }
        let mut nll = mean_nlls_of(reference).context("reference model")?;
        let holdout_nll = nll.split_off(forget.len());
        Self::new(forget, holdout, nll, holdout_nll)
    }
}

impl Metric for MiaReference {
    fn name(&self) -> &str {
        "mia_reference_auc"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::CloserTo(0.5)
    }
    fn requests(&self) -> Vec<Request> {
        rolling_requests(&self.forget, &self.holdout)
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.forget.len() + self.holdout.len(), self.name())?;
        let nll = mean_nlls_of(responses)?;
        let reference = self.reference_forget_nll.iter().chain(&self.reference_holdout_nll);
        let mut scores = Vec::with_capacity(nll.len());
        let mut extra = Vec::with_capacity(nll.len());
        for (x, r) in nll.iter().zip(reference) {
            scores.push(-(x - r));
            extra.push(json!({ "nll": x, "reference_nll": r }));
        }
        auc_value(self.forget.len(), &scores, extra)
    }
}

/// The GradNorm scores of one text from its `GradNorm` response: (mean over parameter tensors
/// of the tensor's L2 norm, L2 norm of the whole gradient). Errors on a response without
/// tokens or tensors, or with a negative or non-finite norm.
pub fn grad_norm_scores(r: &Response) -> Result<(f64, f64)> {
    let (nll, n, norms) = r.grad_norm()?;
    if n == 0 {
        bail!("GradNorm: the text has no tokens");
    }
    if norms.is_empty() {
        bail!("GradNorm: the response has no parameter tensors");
    }
    if !nll.is_finite() {
        bail!("GradNorm: mean NLL {nll} is not finite");
    }
    if let Some(i) = norms.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
        bail!("GradNorm: the gradient norm of parameter tensor {i} is {}", norms[i]);
    }
    let mean = norms.iter().sum::<f64>() / norms.len() as f64;
    let global = norms.iter().map(|x| x * x).sum::<f64>().sqrt();
    Ok((mean, global))
}

/// GradNorm attack (open-unlearning's `GradNormAttack`, p = 2; see the module docs): score =
/// −mean over parameter tensors of ‖∂NLL̄/∂θ_i‖₂; the sub-value `global_l2` is the AUC of
/// −‖∇_θ NLL̄‖₂ (the whole gradient's L2 norm). Per example: `score`, `mean_tensor_norm`,
/// `grad_norm` (the whole gradient's L2 norm), `nll`, `n_tokens`.
#[derive(Clone, Debug)]
pub struct MiaGradNorm {
    pub forget: Vec<String>,
    pub holdout: Vec<String>,
}

impl MiaGradNorm {
    /// Errors on an empty set and on an empty text (a gradient of a mean over no tokens).
    pub fn new(forget: Vec<String>, holdout: Vec<String>) -> Result<Self> {
        check_sets("mia_gradnorm_auc", &forget, &holdout)?;
        for (set, texts) in [("forget", &forget), ("holdout", &holdout)] {
            if let Some(i) = texts.iter().position(|t| t.is_empty()) {
                bail!("mia_gradnorm_auc: {set} text {i} is empty (a GradNorm request needs at least one token)");
            }
        }
        Ok(MiaGradNorm { forget, holdout })
    }
}

impl Metric for MiaGradNorm {
    fn name(&self) -> &str {
        "mia_gradnorm_auc"
    }
    fn version(&self) -> u32 {
        1
    }
    fn direction(&self) -> Direction {
        Direction::CloserTo(0.5)
    }
    fn requests(&self) -> Vec<Request> {
        self.forget.iter().chain(&self.holdout).map(|t| Request::GradNorm { text: t.clone() }).collect()
    }
    fn compute(&self, responses: &[Response]) -> Result<MetricValue> {
        expect_len(responses, self.forget.len() + self.holdout.len(), self.name())?;
        let mut scores = Vec::with_capacity(responses.len());
        let mut global_scores = Vec::with_capacity(responses.len());
        let mut extra = Vec::with_capacity(responses.len());
        for (i, r) in responses.iter().enumerate() {
            let (mean, global) = grad_norm_scores(r).with_context(|| format!("text {i}"))?;
            let (nll, n, _) = r.grad_norm()?;
            scores.push(-mean);
            global_scores.push(-global);
            extra.push(json!({ "mean_tensor_norm": mean, "grad_norm": global, "nll": nll, "n_tokens": n }));
        }
        let (f, h) = global_scores.split_at(self.forget.len());
        let global_auc = roc_auc(f, h)?;
        Ok(auc_value(self.forget.len(), &scores, extra)?.with("global_l2", global_auc))
    }
}
