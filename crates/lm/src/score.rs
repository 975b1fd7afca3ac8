//! Scoring with lm-evaluation-harness semantics (EleutherAI, `lm_eval/models/huggingface.py`).
//!
//! - `loglikelihood(context, continuation)` (lm-eval's `_encode_pair`): trailing whitespace of
//!   the context (Python's `str.rstrip()`) moves to the continuation; both are encoded with the
//!   tokenizer's default special tokens ([`Tok::encode_for_eval`]: BOS when the tokenizer adds
//!   one, as lm-eval 0.4.13 does), and the continuation's tokens are `encode(context +
//!   continuation)` minus the first `len(encode(context))`. An empty context is replaced by the
//!   prefix token (BOS, else EOS), or by the continuation's first token when that already is
//!   the prefix token. Returns the summed log-probability and whether greedy decoding gives
//!   the continuation.
//! - `loglikelihood_rolling(text)`: disjoint windows of `max_length` tokens, the first
//!   conditioned on the prefix token, the next ones on the preceding tokens. The text is
//!   encoded without special tokens (lm-eval 0.4.13 encodes it with them, so with a BOS-adding
//!   tokenizer it also scores P(BOS | prefix); we do not).
//! - `generate_until(context, stop, max_new_tokens)`: greedy from the context encoded with the
//!   tokenizer's default special tokens; the text is cut at the first stop string. Prompts are
//!   left-padded per batch and decoded through a key/value cache (each new token costs one
//!   column, not the whole prefix).
//!
//! Requests are sorted by descending token length, batched, and answered in their original
//! order; padding is on the right, so padded and unpadded rows score identically.

use crate::model::{log_softmax_last, CausalLm};
use crate::tok::Tok;
use anyhow::{bail, Result};
use candle_core::{Tensor, D};

/// The result of one `loglikelihood` request.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLik {
    pub logprob: f64,
    pub is_greedy: bool,
    /// Number of continuation tokens.
    pub n_tokens: usize,
}

/// A scorer over a model and its tokenizer.
pub struct Scorer<'a> {
    pub model: &'a CausalLm,
    pub tok: &'a Tok,
    pub batch_size: usize,
    /// Longest sequence fed to the model (defaults to max_position_embeddings).
    pub max_length: usize,
    /// Prepend BOS to every non-empty context that does not start with it already (lm-eval's
    /// `add_bos_token=True`). Without it a context has BOS only when the tokenizer adds one by
    /// default (lm-eval's default); the testbed's models are trained with BOS at each document
    /// start and their tokenizers add none, so they set it.
    pub add_bos: bool,
}

/// A request reduced to tokens: score `cont` given `ctx`.
struct TokReq {
    ctx: Vec<u32>,
    cont: Vec<u32>,
}

/// Per-token log-probs of a continuation plus greedy flags.
struct TokResult {
    logprobs: Vec<f32>,
    greedy: bool,
}

impl<'a> Scorer<'a> {
    pub fn new(model: &'a CausalLm, tok: &'a Tok) -> Scorer<'a> {
        Scorer { model, tok, batch_size: 16, max_length: model.cfg.max_position_embeddings, add_bos: false }
    }

    fn encode_pair(&self, context: &str, continuation: &str) -> Result<TokReq> {
        if context.is_empty() {
            // lm-eval: the continuation without special tokens after the prefix token, unless
            // it already starts with that token
            let cont = self.tok.encode(continuation)?;
            let prefix = self.tok.prefix_token();
            return Ok(match cont.split_first() {
                Some((&first, rest)) if first == prefix => TokReq { ctx: vec![first], cont: rest.to_vec() },
                _ => TokReq { ctx: vec![prefix], cont },
            });
        }
        let trimmed = context.trim_end_matches(is_python_space);
        let (ctx, cont) = (trimmed.to_string(), format!("{}{continuation}", &context[trimmed.len()..]));
        let whole = self.tok.encode_for_eval(&format!("{ctx}{cont}"))?;
        let mut ctx_enc = self.tok.encode_for_eval(&ctx)?;
        let cont_enc = whole[ctx_enc.len().min(whole.len())..].to_vec();
        if self.add_bos {
            if let Some(b) = self.tok.bos {
                if ctx_enc.first() != Some(&b) {
                    ctx_enc.insert(0, b);
                }
            }
        }
        Ok(TokReq { ctx: ctx_enc, cont: cont_enc })
    }

    /// lm-eval's `loglikelihood`.
    pub fn loglikelihood(&self, requests: &[(String, String)]) -> Result<Vec<LogLik>> {
        let reqs = requests.iter().map(|(c, x)| self.encode_pair(c, x)).collect::<Result<Vec<_>>>()?;
        let res = self.run(&reqs)?;
        for (i, r) in res.iter().enumerate() {
            ensure_finite("loglikelihood request", i, &r.logprobs)?;
        }
        Ok(res
            .into_iter()
            .map(|r| LogLik {
                logprob: r.logprobs.iter().map(|&x| x as f64).sum(),
                is_greedy: r.greedy,
                n_tokens: r.logprobs.len(),
            })
            .collect())
    }

    /// Log-probability of every token of each text given the preceding ones, with the prefix
    /// token (BOS) prepended. Texts longer than `max_length` are scored in rolling windows.
    pub fn token_logprobs(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut reqs = vec![];
        let mut owner = vec![];
        for (i, t) in texts.iter().enumerate() {
            let toks = self.tok.encode(t)?;
            for (ctx, cont) in rolling_windows(&toks, self.tok.prefix_token(), self.max_length) {
                reqs.push(TokReq { ctx, cont });
                owner.push(i);
            }
        }
        let res = self.run(&reqs)?;
        let mut out = vec![vec![]; texts.len()];
        for (r, i) in res.into_iter().zip(owner) {
            out[i].extend(r.logprobs);
        }
        for (i, lp) in out.iter().enumerate() {
            ensure_finite("token_logprobs text", i, lp)?;
        }
        Ok(out)
    }

    /// lm-eval's `loglikelihood_rolling`: (sum of log-probs, token count) per text.
    pub fn loglikelihood_rolling(&self, texts: &[String]) -> Result<Vec<(f64, usize)>> {
        Ok(self.token_logprobs(texts)?.into_iter().map(|lp| (lp.iter().map(|&x| x as f64).sum(), lp.len())).collect())
    }

    /// Full next-token log-distributions at every position of `[prefix] + text` predicting each
    /// text token: one (n_tokens, vocab) matrix per text (for KL to a reference model).
    pub fn distributions(&self, texts: &[String]) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(texts.len());
        for t in texts {
            let mut toks = vec![self.tok.prefix_token()];
            toks.extend(self.tok.encode(t)?);
            toks.truncate(self.max_length + 1);
            let n = toks.len() - 1;
            let input = Tensor::from_vec(toks[..n].to_vec(), (1, n), &self.model.device)?;
            let logits = self.model.forward(&input, None)?;
            let lp = log_softmax_last(&logits)?.squeeze(0)?;
            let bad = crate::weights::count_non_finite(&lp)?;
            if bad > 0 {
                bail!("distributions text {}: {bad} of {} log-probabilities are not finite (NaN/inf in the model's weights or activations)", out.len(), lp.elem_count());
            }
            out.push(lp);
        }
        Ok(out)
    }

    /// lm-eval's `generate_until`, greedy: (context, stop strings, max new tokens) -> text.
    pub fn generate_until(&self, requests: &[(String, Vec<String>, usize)]) -> Result<Vec<String>> {
        let mut out = vec![String::new(); requests.len()];
        let mut order: Vec<usize> = (0..requests.len()).collect();
        let encoded = requests
            .iter()
            .map(|(c, _, _)| {
                let mut ids = self.tok.encode_for_eval(c)?;
                let prefix = self.tok.prefix_token();
                if ids.is_empty() || (self.add_bos && ids.first() != Some(&prefix)) {
                    ids.insert(0, prefix);
                }
                Ok(ids)
            })
            .collect::<Result<Vec<_>>>()?;
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].len()));
        for chunk in order.chunks(self.batch_size.max(1)) {
            let mut rows: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&i| {
                    let keep = self.max_length.saturating_sub(requests[i].2).max(1);
                    let e = &encoded[i];
                    e[e.len().saturating_sub(keep)..].to_vec()
                })
                .collect();
            let starts: Vec<usize> = rows.iter().map(|r| r.len()).collect();
            let mut done = vec![false; rows.len()];
            let max_new = chunk.iter().map(|&i| requests[i].2).max().unwrap_or(0);
            if max_new == 0 {
                continue;
            }
            // Prefill: prompts left-padded to a common width, each row's positions from 0 at
            // its first real token; then one column per step through the key/value cache.
            let width = starts.iter().copied().max().unwrap_or(1);
            let pads: Vec<usize> = starts.iter().map(|&n| width - n).collect();
            let mut ids = vec![self.tok.pad; rows.len() * width];
            let mut valid: Vec<Vec<bool>> = Vec::with_capacity(rows.len());
            for (r, row) in rows.iter().enumerate() {
                ids[r * width + pads[r]..(r + 1) * width].copy_from_slice(row);
                valid.push((0..width).map(|j| j >= pads[r]).collect());
            }
            let mut cache = self.model.new_cache();
            let input = Tensor::from_vec(ids, (rows.len(), width), &self.model.device)?;
            let zeros = vec![0usize; rows.len()];
            let mut hidden = self.model.forward_cached(&input, &zeros, &valid, &mut cache)?.narrow(1, width - 1, 1)?;
            for _ in 0..max_new {
                let next = self.model.logits(&hidden)?.squeeze(1)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
                for r in 0..rows.len() {
                    if done[r] {
                        continue;
                    }
                    let (_, stops, max_i) = &requests[chunk[r]];
                    if self.tok.eos.contains(&next[r]) {
                        done[r] = true;
                        continue;
                    }
                    rows[r].push(next[r]);
                    let text = self.tok.decode(&rows[r][starts[r]..])?;
                    if stops.iter().any(|s| !s.is_empty() && text.contains(s.as_str()))
                        || rows[r].len() - starts[r] >= *max_i
                        || rows[r].len() >= self.max_length
                    {
                        done[r] = true;
                    }
                }
                if done.iter().all(|&d| d) {
                    break;
                }
                // finished rows keep a (masked, ignored) pad column so the batch stays rectangular
                let col: Vec<u32> = (0..rows.len())
                    .map(|r| if done[r] { self.tok.pad } else { *rows[r].last().unwrap_or(&self.tok.pad) })
                    .collect();
                let positions: Vec<usize> = (0..rows.len()).map(|r| cache.len() - pads[r]).collect();
                for (r, v) in valid.iter_mut().enumerate() {
                    v.push(!done[r]);
                }
                let input = Tensor::from_vec(col, (rows.len(), 1), &self.model.device)?;
                hidden = self.model.forward_cached(&input, &positions, &valid, &mut cache)?;
            }
            for (r, &i) in chunk.iter().enumerate() {
                let mut text = self.tok.decode(&rows[r][starts[r]..])?;
                for s in &requests[i].1 {
                    if s.is_empty() {
                        continue;
                    }
                    if let Some(p) = text.find(s.as_str()) {
                        text.truncate(p);
                    }
                }
                out[i] = text;
            }
        }
        Ok(out)
    }

    /// Score token requests in batches sorted by descending length.
    fn run(&self, reqs: &[TokReq]) -> Result<Vec<TokResult>> {
        let max_len = self.max_length;
        // (input tokens, index of first continuation position in the input outputs, cont)
        let prepared: Vec<(Vec<u32>, usize, &[u32])> = reqs
            .iter()
            .map(|r| {
                if r.cont.is_empty() {
                    return (vec![], 0, &r.cont[..]);
                }
                let mut full: Vec<u32> = r.ctx.iter().chain(r.cont.iter()).copied().collect();
                if full.len() > max_len + 1 {
                    full.drain(..full.len() - (max_len + 1));
                }
                let input = full[..full.len() - 1].to_vec();
                let n_cont = r.cont.len().min(input.len());
                let first = input.len() - n_cont;
                (input, first, &r.cont[r.cont.len() - n_cont..])
            })
            .collect();
        let mut order: Vec<usize> = (0..reqs.len()).collect();
        order.sort_by(|&a, &b| {
            let la = prepared[a].0.len() + prepared[a].2.len();
            let lb = prepared[b].0.len() + prepared[b].2.len();
            lb.cmp(&la).then_with(|| prepared[a].0.cmp(&prepared[b].0))
        });
        let mut out: Vec<Option<TokResult>> = (0..reqs.len()).map(|_| None).collect();
        let nonempty: Vec<usize> = order.iter().copied().filter(|&i| !prepared[i].0.is_empty()).collect();
        for &i in order.iter().filter(|&&i| prepared[i].0.is_empty()) {
            out[i] = Some(TokResult { logprobs: vec![], greedy: true });
        }
        for chunk in nonempty.chunks(self.batch_size.max(1)) {
            let t = chunk.iter().map(|&i| prepared[i].0.len()).max().unwrap_or(1);
            let mut ids = vec![self.tok.pad; chunk.len() * t];
            for (k, &i) in chunk.iter().enumerate() {
                ids[k * t..k * t + prepared[i].0.len()].copy_from_slice(&prepared[i].0);
            }
            let input = Tensor::from_vec(ids, (chunk.len(), t), &self.model.device)?;
            // Logits only at the continuation positions: the output projection and the
            // log-softmax cost vocab × hidden per position, so skip the context positions.
            let hidden = self.model.hidden(&input, None)?; // (b, t, h)
            let mut at: Vec<u32> = vec![];
            for (k, &i) in chunk.iter().enumerate() {
                let (_, first, cont) = &prepared[i];
                at.extend((0..cont.len()).map(|j| (k * t + first + j) as u32));
            }
            let h = hidden.dim(2)?;
            let rows = hidden
                .reshape((chunk.len() * t, h))?
                .index_select(&Tensor::from_vec(at.clone(), at.len(), &self.model.device)?, 0)?;
            let logits = self.model.logits(&rows)?.flatten_all()?.to_vec1::<f32>()?;
            let v = logits.len() / at.len().max(1);
            let mut row = 0;
            for &i in chunk.iter() {
                let (_, _, cont) = &prepared[i];
                let mut picked = Vec::with_capacity(cont.len());
                let mut is_greedy = true;
                let mut scratch = Vec::with_capacity(v);
                for &target in cont.iter() {
                    let z = &logits[row * v..(row + 1) * v];
                    row += 1;
                    // first index of the maximum, as argmax
                    let (arg, _) =
                        z.iter()
                            .enumerate()
                            .fold((0, f32::NEG_INFINITY), |(a, m), (j, &x)| if x > m { (j, x) } else { (a, m) });
                    let lse = crate::fused::log_sum_exp(z, &mut scratch);
                    picked.push(z[target as usize] - lse);
                    is_greedy &= arg == target as usize;
                }
                out[i] = Some(TokResult { logprobs: picked, greedy: is_greedy });
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, r)| r.ok_or_else(|| anyhow::anyhow!("request {i} was not scored")))
            .collect::<Result<Vec<_>>>()
            .and_then(|v| if v.len() == reqs.len() { Ok(v) } else { bail!("scorer lost requests") })
    }
}

/// Errors when a log-probability of request `i` is NaN or infinite: the model's weights or
/// activations have NaN/inf (a finite logit row always gives finite log-probabilities), and a
/// score summed from it would silently become NaN (`null` in JSON).
fn ensure_finite(what: &str, i: usize, logprobs: &[f32]) -> Result<()> {
    let bad = logprobs.iter().filter(|x| !x.is_finite()).count();
    if let Some((j, x)) = logprobs.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        bail!(
            "{what} {i}: {bad} of {} log-probabilities are not finite (the first, of token {j}, is {x}); \
             the model's weights or activations have NaN/inf",
            logprobs.len()
        );
    }
    Ok(())
}

/// Python's `str.isspace()` for one character (what `str.rstrip()` strips): Unicode
/// White_Space plus the separators U+001C..U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// lm-eval's `get_rolling_token_windows` with context length 1, made disjoint: a list of
/// (context tokens, continuation tokens) covering every token exactly once.
pub fn rolling_windows(tokens: &[u32], prefix: u32, max_len: usize) -> Vec<(Vec<u32>, Vec<u32>)> {
    let mut out = vec![];
    if tokens.is_empty() {
        return out;
    }
    let max_len = max_len.max(1);
    let first = max_len.min(tokens.len());
    out.push((vec![prefix], tokens[..first].to_vec()));
    let mut predicted = first;
    while predicted < tokens.len() {
        let pred_len = (tokens.len() - predicted).min(max_len);
        let end = predicted + pred_len;
        let ctx_start = end.saturating_sub(max_len + 1);
        // The window is tokens[ctx_start .. end-1] predicting tokens[end-pred_len .. end];
        // disjoint: the context is the part of the window before the first predicted token.
        let ctx = tokens[ctx_start..end - pred_len].to_vec();
        out.push((ctx, tokens[end - pred_len..end].to_vec()));
        predicted = end;
    }
    out
}
