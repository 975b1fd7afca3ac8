#!/usr/bin/env python3
"""Independent recomputation of the membership-inference AUCs of `evals::mia` (and `mink_auc`),
written the way open-unlearning computes them (src/evals/metrics/mia/*.py), in numpy and
Python's zlib. Used by crates/evals/tests/mia.rs (SKIPPED there when numpy is absent).

    python3 scripts/mia_reference.py < dump.json

Input (JSON on stdin), one entry per text, forget texts first:
    n_forget        number of forget (member) texts
    k               Min-K% / Min-K%++ fraction
    texts           the texts
    rolling         [logprob, n_tokens] of each text (Rolling responses)
    token_logprobs  per-token log-probs of each text (TokenLogprobs responses)
    rows            per-token log-softmax rows of each text (Distributions responses)
    reference_nll   the reference model's mean token NLL of each text
    grad_norms      (optional) the L2 norm of each parameter tensor's gradient of each text's
                    mean token NLL (GradNorm responses)

Output (JSON on stdout): for each metric name, {"auc": float, "scores": [float, ...]} with
scores in evals' sign (higher = member). The AUC is computed as open-unlearning does: labels
0 for forget and 1 for holdout against open-unlearning's own score (a loss: higher = holdout),
ties counted 1/2 (average ranks), so it does not share code or conventions with the Rust side.
"""

import json
import sys
import zlib

import numpy as np


def auc_openunlearning(ou_scores, n_forget):
    """sklearn.metrics.roc_auc_score(labels, scores) with labels [0]*F + [1]*H, via average
    ranks (Mann-Whitney U of the holdout scores)."""
    s = np.asarray(ou_scores, dtype=np.float64)
    n_h = len(s) - n_forget
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[n_forget:].sum() - n_h * (n_h + 1) / 2.0
    return u / (n_forget * n_h)


def main():
    d = json.load(sys.stdin)
    n_f, k = d["n_forget"], d["k"]
    avg_loss = np.array([-lp / n for lp, n in d["rolling"]])
    out = {}

    def put(name, ou_scores):
        # evals' score is the negative of open-unlearning's (a loss)
        out[name] = {
            "auc": auc_openunlearning(ou_scores, n_f),
            "scores": [-float(x) for x in ou_scores],
        }

    # LOSSAttack: avg_loss
    put("mia_loss_auc", avg_loss)
    # ZLIBAttack: avg_loss / len(zlib.compress(text.encode("utf-8")))
    put("mia_zlib_auc", [l / len(zlib.compress(t.encode("utf-8"))) for l, t in zip(avg_loss, d["texts"])])
    # ReferenceAttack: target_loss - ref_loss
    put("mia_reference_auc", avg_loss - np.array(d["reference_nll"]))

    # MinKProbAttack: -mean(sorted(lp)[:max(1, int(len(lp) * k))])
    def mink(lp):
        lp = np.sort(np.asarray(lp, dtype=np.float64))
        return -np.mean(lp[: max(1, int(len(lp) * k))])

    put("mink_auc", [mink(lp) for lp in d["token_logprobs"]])

    # MinKPlusPlusAttack, with the token log-prob at each row's position
    def minkpp(lp, rows):
        rows = np.asarray(rows, dtype=np.float64)
        target = np.asarray(lp, dtype=np.float64)[: len(rows)]
        p = np.exp(rows)
        with np.errstate(invalid="ignore"):
            mu = np.nansum(p * rows, axis=-1)
            sigma = np.nansum(p * np.square(rows), axis=-1) - np.square(mu)
        sigma = np.clip(sigma, 1e-6, None)
        scores = (target - mu) / np.sqrt(sigma)
        return -np.mean(sorted(scores)[: max(1, int(len(scores) * k))])

    put("mia_minkpp_auc", [minkpp(lp, rows) for lp, rows in zip(d["token_logprobs"], d["rows"])])

    # GradNormAttack (p = 2): torch.stack([param.grad.norm(p=2) for each parameter]).mean()
    if "grad_norms" in d:
        put("mia_gradnorm_auc", [float(np.mean(np.asarray(g, dtype=np.float64))) for g in d["grad_norms"]])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
