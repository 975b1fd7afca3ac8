//! The arithmetic of MSA and its variants (issue 19) on checkpoint folders, given the
//! fine-tunes: no training here, only streaming passes over model states.
//!
//! With E base points θ_0⁽ⁱ⁾ (E = 1 unless `ensemble` is given), their forget fine-tunes
//! θ_1⁽ⁱ⁾ and retain fine-tunes θ_2⁽ⁱ⁾, for every float tensor t (per element, in f64):
//!
//! * τ_f = (1/E)·Σᵢ (θ_1⁽ⁱ⁾ − θ_0⁽ⁱ⁾),  τ_r = (1/E)·Σᵢ (θ_2⁽ⁱ⁾ − θ_0⁽ⁱ⁾)  (checkpoint ensemble);
//! * `variant = "orthogonal"`: τ_f' = τ_f − c_t·τ_r with c_t = ⟨τ_f, τ_r⟩_t / ‖τ_r‖²_t, inner
//!   product and norm over tensor t alone (c_t = 0 when ‖τ_r‖_t = 0, so such a tensor keeps
//!   τ_f); `"plain"`: τ_f' = τ_f. *Per tensor*, not over the whole model: one global
//!   coefficient would leave τ_f' orthogonal to τ_r only as a whole, while each tensor could
//!   still move along its own part of τ_r; per tensor, ⟨τ_f', τ_r⟩_t = 0 for every t, which
//!   also gives global orthogonality (the sum of zeros), and it is the granularity of the
//!   other variants (per-tensor α, per-tensor trim);
//! * `sparsity = f < 1`: τ_f'' keeps, in each tensor of n entries, the k = ⌈f·n⌉ entries of
//!   largest |τ_f'| and zeroes the rest (TIES-merging's trim, Yadav et al. 2023); among equal
//!   magnitudes at the threshold the lower indices are kept, so exactly k entries survive
//!   (f·n within 1e-9 relative of an integer counts as that integer: 0.3 × 10 keeps 3). The
//!   k-th largest magnitude is found exactly by selection over the tensor's |τ_f'| (one
//!   tensor's magnitudes in memory at a time); `sparsity = 1`: τ_f'' = τ_f';
//! * `alpha_scaling = "norm_share"`: α_t = α·√T·‖τ_f''‖_t / ‖τ_f''‖, with T the number of
//!   float tensors and ‖τ_f''‖² = Σ_t ‖τ_f''‖²_t, the norms of the vector actually
//!   subtracted (after projection and trim). Then Σ_t α_t² = T·α², the mean α_t² is α²: the
//!   step is redistributed toward the tensors holding more of τ_f, not rescaled on average
//!   (a tensor with τ_f'' = 0 gets α_t = 0; it would not change anyway). `"uniform"`: α_t = α;
//! * θ = θ_D − α_t·τ_f'' + β·τ_r, rounded once from f64 to the tensor's dtype.
//!
//! Passes: the orthogonal variant first streams ⟨τ_f, τ_r⟩_t and ‖τ_r‖²_t; a trim or
//! norm-share scaling then streams τ_f' for per-tensor thresholds and norms; the last pass
//! writes θ ([`model_state::map_chunks`]). Each reads every input once; memory is a chunk of
//! each input, plus, for a trim, one f64 magnitude per entry of the current tensor.
//!
//! Without any of these transforms (the defaults) θ is a linear combination of checkpoints
//! and is written by ONE [`model_state::combine`] over
//! [(1, θ_D), (−α/E, θ_1⁽ⁱ⁾)…, (β/E, θ_2⁽ⁱ⁾)…, ((α − β)/E, θ_0⁽ⁱ⁾)…] with zero coefficients
//! dropped: for E = 1 exactly the terms (and so the bytes) of MSA before issue 19. The same
//! holds for α = 0, where every transform of τ_f is void.

use anyhow::{bail, ensure, Context as _, Result};
use model_state::{Chunk, StreamOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How τ_f is projected (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Plain,
    Orthogonal,
}

/// How α is spread over tensors (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlphaScaling {
    Uniform,
    NormShare,
}

pub const VARIANTS: &[&str] = &["plain", "orthogonal"];
pub const ALPHA_SCALINGS: &[&str] = &["uniform", "norm_share"];

impl Variant {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Plain => "plain",
            Variant::Orthogonal => "orthogonal",
        }
    }

    /// Parses `"plain"` or `"orthogonal"`; unknown names get "did you mean".
    pub fn parse(s: &str) -> Result<Variant> {
        match s {
            "plain" => Ok(Variant::Plain),
            "orthogonal" => Ok(Variant::Orthogonal),
            _ => bail!("{}", suggest::unknown_name_message("variant", s, VARIANTS)),
        }
    }
}

impl AlphaScaling {
    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            AlphaScaling::Uniform => "uniform",
            AlphaScaling::NormShare => "norm_share",
        }
    }

    /// Parses `"uniform"` or `"norm_share"`; unknown names get "did you mean".
    pub fn parse(s: &str) -> Result<AlphaScaling> {
        match s {
            "uniform" => Ok(AlphaScaling::Uniform),
            "norm_share" => Ok(AlphaScaling::NormShare),
            _ => bail!("{}", suggest::unknown_name_message("alpha_scaling", s, ALPHA_SCALINGS)),
        }
    }
}

/// The transforms of τ_f before it is subtracted. The default is plain MSA.
#[derive(Debug, Clone, PartialEq)]
pub struct Shaping {
    pub variant: Variant,
    pub alpha_scaling: AlphaScaling,
    /// Fraction of each tensor's τ_f entries kept, in (0, 1].
    pub sparsity: f64,
}

impl Default for Shaping {
    fn default() -> Self {
        Shaping { variant: Variant::Plain, alpha_scaling: AlphaScaling::Uniform, sparsity: 1.0 }
    }
}

impl Shaping {
    /// Whether θ is a linear combination of the checkpoints (no per-tensor transform).
    pub fn is_linear(&self) -> bool {
        self.variant == Variant::Plain && self.alpha_scaling == AlphaScaling::Uniform && self.sparsity == 1.0
    }

    /// Errors unless `sparsity` is a fraction in (0, 1].
    pub fn check(&self, method: &str) -> Result<()> {
        check_sparsity(method, self.sparsity)
    }
}

/// Errors unless `f` is a finite fraction in (0, 1].
pub fn check_sparsity(method: &str, f: f64) -> Result<()> {
    if !(f.is_finite() && f > 0.0 && f <= 1.0) {
        bail!(
            "method {method}: parameter sparsity = {f} is invalid (expected a fraction 0 < f ≤ 1 of each tensor's \
             forget-vector entries to keep; 1 keeps them all)"
        );
    }
    Ok(())
}

/// The number of entries a trim keeps of a tensor of `n`: ⌈f·n⌉, with f·n within 1e-9
/// relative of an integer taken as that integer (so floating-point noise such as
/// 0.3 × 10 = 3.0000000000000004 does not keep one more), and at least 1 when n > 0.
pub fn kept_count(f: f64, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let x = f * n as f64;
    let r = x.round();
    let k = if (x - r).abs() <= 1e-9 * x.max(1.0) { r } else { x.ceil() };
    (k as usize).clamp(1, n)
}

/// One base point θ_0 and its fine-tunes (θ_1 on the forget set, θ_2 on the retain sample).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub base: PathBuf,
    pub forget: Option<PathBuf>,
    pub retain: Option<PathBuf>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Streaming passes over the model states (1 for a linear combination).
    pub passes: usize,
    /// Tensor data bytes read over all passes.
    pub bytes_read: u64,
    /// The linear combination written, when θ was one (coefficient, folder).
    pub terms: Option<Vec<(f64, PathBuf)>>,
    /// With LoRA fine-tunes: the low-rank terms of the combination (coefficient, adapter).
    pub low_rank_terms: Vec<(f64, PathBuf)>,
    /// Orthogonal variant: ‖τ_f − τ_f'‖ / ‖τ_f‖, the share of τ_f's norm removed.
    pub projection_removed: Option<f64>,
    /// Trim: ‖τ_f''‖ / ‖τ_f'‖, the share of the norm kept.
    pub trim_kept_norm: Option<f64>,
    /// Norm-share scaling: the smallest and largest α_t.
    pub alpha_range: Option<(f64, f64)>,
}

/// Writes θ = θ_D − α_t·τ_f'' + β·τ_r into `out` (see the module docs). `members` must
/// carry a forget fine-tune when α ≠ 0 and a retain fine-tune when β ≠ 0 or the variant is
/// orthogonal; `out` is replaced if it exists.
pub fn apply(
    final_model: &Path,
    members: &[Member],
    alpha: f64,
    beta: f64,
    shaping: &Shaping,
    out: &Path,
) -> Result<Applied> {
    ensure!(!members.is_empty(), "no base checkpoint given");
    shaping.check("msa")?;
    let need_retain = beta != 0.0 || (alpha != 0.0 && shaping.variant == Variant::Orthogonal);
    for m in members {
        ensure!(
            alpha == 0.0 || m.forget.is_some(),
            "alpha = {alpha} needs the forget fine-tune of {}",
            m.base.display()
        );
        ensure!(!need_retain || m.retain.is_some(), "the retain fine-tune of {} is needed", m.base.display());
    }
    if shaping.is_linear() || alpha == 0.0 {
        linear(final_model, members, alpha, beta, out)
    } else {
        let lora =
            members.iter().flat_map(|m| [m.forget.as_deref(), m.retain.as_deref()]).flatten().find(|p| is_lora(p));
        if let Some(p) = lora {
            bail!(
                "the fine-tune {} is a LoRA adapter: LoRA task vectors support the linear arithmetic (α, β, ensembles, \
                 calibrated α, repair), but variant = {:?}, alpha_scaling = {:?} and sparsity = {} reshape τ_f tensor by \
                 tensor from dense checkpoints; train without [train] lora, or use the linear arithmetic",
                p.display(),
                shaping.variant.name(),
                shaping.alpha_scaling.name(),
                shaping.sparsity
            );
        }
        shaped(final_model, members, alpha, beta, shaping, need_retain, out)
    }
}

/// Whether a fine-tune's folder is a LoRA adapter (its τ = s·B·A) rather than a checkpoint.
pub fn is_lora(dir: &Path) -> bool {
    model_state::LowRankDelta::is_adapter_dir(dir)
}

/// θ_D − α·mean τ_f + β·mean τ_r as one streaming combination. A dense fine-tune θ_k
/// contributes θ_k − θ_0 (two checkpoint terms); a LoRA fine-tune contributes its adapter's
/// s·B·A as a low-rank term ([`model_state::combine_low_rank`]), with no θ_0 term.
fn linear(final_model: &Path, members: &[Member], alpha: f64, beta: f64, out: &Path) -> Result<Applied> {
    let e = members.len() as f64;
    let mut terms: Vec<(f64, PathBuf)> = vec![(1.0, final_model.to_path_buf())];
    let mut low_rank: Vec<(f64, PathBuf)> = vec![];
    let mut push = |c: f64, dir: &Path, terms: &mut Vec<(f64, PathBuf)>| {
        if is_lora(dir) {
            low_rank.push((c, dir.to_path_buf()));
        } else {
            terms.push((c, dir.to_path_buf()));
        }
    };
    // θ_0's coefficient per member: α for a dense forget fine-tune, −β for a dense retain one
    let mut base_alpha = vec![0.0; members.len()];
    let mut base_beta = vec![0.0; members.len()];
    if alpha != 0.0 {
        for (i, m) in members.iter().enumerate() {
            let f = m.forget.as_deref().expect("checked");
            push(-alpha / e, f, &mut terms);
            base_alpha[i] = if is_lora(f) { 0.0 } else { alpha };
        }
    }
    if beta != 0.0 {
        for (i, m) in members.iter().enumerate() {
            let r = m.retain.as_deref().expect("checked");
            push(beta / e, r, &mut terms);
            base_beta[i] = if is_lora(r) { 0.0 } else { beta };
        }
    }
    for (i, m) in members.iter().enumerate() {
        let c = base_alpha[i] - base_beta[i];
        if c != 0.0 {
            terms.push((c / e, m.base.clone()));
        }
    }
    let opts = model_state::CombineOptions { overwrite: true, ..Default::default() };
    let combined = model_state::combine_low_rank(&terms, &low_rank, out, &opts)?;
    Ok(Applied {
        passes: 1,
        bytes_read: combined.bytes_read,
        terms: Some(terms),
        low_rank_terms: low_rank,
        ..Default::default()
    })
}

/// Positions of a member's folders among the streamed inputs: [θ_D, (θ_0, θ_1, θ_2?)…].
struct Layout {
    members: usize,
    stride: usize,
    retain: bool,
}

impl Layout {
    fn inputs<'a>(&self, final_model: &'a Path, members: &'a [Member]) -> Vec<&'a Path> {
        let mut v = vec![final_model];
        for m in members {
            v.push(&m.base);
            v.push(m.forget.as_deref().expect("checked"));
            if self.retain {
                v.push(m.retain.as_deref().expect("checked"));
            }
        }
        v
    }

    /// (τ_f, τ_r) of element `j` of the chunk; τ_r = 0 without retain fine-tunes.
    fn taus(&self, c: &Chunk, j: usize) -> (f64, f64) {
        let (mut f, mut r) = (0.0, 0.0);
        for i in 0..self.members {
            let b = 1 + i * self.stride;
            let x0 = c.inputs[b][j];
            f += c.inputs[b + 1][j] - x0;
            if self.retain {
                r += c.inputs[b + 2][j] - x0;
            }
        }
        let e = self.members as f64;
        (f / e, r / e)
    }
}

/// What the passes learn about one tensor.
#[derive(Debug, Default, Clone)]
struct TensorStats {
    /// ⟨τ_f, τ_r⟩, ‖τ_f‖², ‖τ_r‖² (orthogonal variant).
    fr: f64,
    ff: f64,
    rr: f64,
    /// c_t, the projection coefficient.
    coef: f64,
    /// ‖τ_f'‖² and ‖τ_f''‖².
    proj_sq: f64,
    kept_sq: f64,
    /// Trim: the k-th largest |τ_f'| and how many entries equal to it are kept (the first ones).
    threshold: Option<(f64, usize)>,
    alpha: f64,
}

fn shaped(
    final_model: &Path,
    members: &[Member],
    alpha: f64,
    beta: f64,
    shaping: &Shaping,
    retain: bool,
    out: &Path,
) -> Result<Applied> {
    let layout = Layout { members: members.len(), stride: if retain { 3 } else { 2 }, retain };
    let inputs = layout.inputs(final_model, members);
    let chunk = model_state::COMBINE_CHUNK_ELEMS;
    let mut stats: BTreeMap<String, TensorStats> = BTreeMap::new();
    let mut applied = Applied::default();

    // Pass 1: projection coefficients.
    if shaping.variant == Variant::Orthogonal {
        let rep = model_state::for_each_chunk(&inputs, chunk, |c| {
            let s = stats.entry(c.name.to_string()).or_default();
            for j in 0..c.len() {
                let (f, r) = layout.taus(c, j);
                s.fr += f * r;
                s.ff += f * f;
                s.rr += r * r;
            }
            if c.is_last() {
                s.coef = if s.rr > 0.0 { s.fr / s.rr } else { 0.0 };
            }
            Ok(())
        })?;
        applied.passes += 1;
        applied.bytes_read += rep.bytes_read;
        let ff: f64 = stats.values().map(|s| s.ff).sum();
        let removed: f64 = stats.values().map(|s| s.coef * s.coef * s.rr).sum();
        applied.projection_removed = Some(if ff > 0.0 { (removed / ff).sqrt() } else { 0.0 });
    }
    let proj = |s: &TensorStats, f: f64, r: f64| if s.coef != 0.0 { f - s.coef * r } else { f };

    // Pass 2: trim thresholds and the norms of τ_f' and τ_f''.
    let sparse = shaping.sparsity < 1.0;
    let mut float_tensors = 0;
    if sparse || shaping.alpha_scaling == AlphaScaling::NormShare {
        let mut mags: Vec<f64> = Vec::new();
        let rep = model_state::for_each_chunk(&inputs, chunk, |c| {
            let s = stats.entry(c.name.to_string()).or_default();
            for j in 0..c.len() {
                let (f, r) = layout.taus(c, j);
                let x = proj(s, f, r);
                ensure!(
                    x.is_finite(),
                    "tensor {}: the forget vector has a non-finite entry at {}",
                    c.name,
                    c.start + j
                );
                s.proj_sq += x * x;
                if sparse {
                    mags.push(x.abs());
                }
            }
            if c.is_last() {
                if sparse {
                    let k = kept_count(shaping.sparsity, c.numel);
                    let (threshold, kept_sq) = trim_threshold(&mut mags, k);
                    s.threshold = threshold;
                    s.kept_sq = kept_sq;
                    mags.clear();
                } else {
                    s.kept_sq = s.proj_sq;
                }
            }
            Ok(())
        })?;
        applied.passes += 1;
        applied.bytes_read += rep.bytes_read;
        float_tensors = rep.float_tensors;
        if sparse {
            let (kept, all): (f64, f64) = stats.values().fold((0.0, 0.0), |(k, a), s| (k + s.kept_sq, a + s.proj_sq));
            applied.trim_kept_norm = Some(if all > 0.0 { (kept / all).sqrt() } else { 1.0 });
        }
    }

    // Per-tensor α.
    match shaping.alpha_scaling {
        AlphaScaling::Uniform => stats.values_mut().for_each(|s| s.alpha = alpha),
        AlphaScaling::NormShare => {
            let total: f64 = stats.values().map(|s| s.kept_sq).sum();
            let t = (float_tensors as f64).sqrt();
            for s in stats.values_mut() {
                s.alpha = if total > 0.0 { alpha * t * (s.kept_sq / total).sqrt() } else { 0.0 };
            }
            let lo = stats.values().map(|s| s.alpha).fold(f64::INFINITY, f64::min);
            let hi = stats.values().map(|s| s.alpha).fold(f64::NEG_INFINITY, f64::max);
            applied.alpha_range = Some((lo, hi));
        }
    }

    // Last pass: θ = θ_D − α_t·τ_f'' + β·τ_r.
    let opts = StreamOptions { overwrite: true, chunk_elems: chunk, ..Default::default() };
    let uniform = TensorStats { alpha, ..Default::default() };
    let mut ties_seen = 0usize;
    let rep = model_state::map_chunks(&inputs, out, &opts, |c, y| {
        let s = stats.get(c.name).unwrap_or(&uniform);
        if c.start == 0 {
            ties_seen = 0;
        }
        for (j, y) in y.iter_mut().enumerate() {
            let (f, r) = layout.taus(c, j);
            let mut x = proj(s, f, r);
            if let Some((v, keep_ties)) = s.threshold {
                let a = x.abs();
                let kept = if a > v {
                    true
                } else if a == v && ties_seen < keep_ties {
                    ties_seen += 1;
                    true
                } else {
                    false
                };
                if !kept {
                    x = 0.0;
                }
            }
            *y = c.inputs[0][j] - s.alpha * x + beta * r;
            ensure!(y.is_finite(), "element {} is not finite ({})", c.start + j, y);
        }
        Ok(())
    })
    .context("writing the unlearned model")?;
    applied.passes += 1;
    applied.bytes_read += rep.bytes_read;
    Ok(applied)
}

/// The trim of a tensor whose |τ_f'| are `mags` (reordered here): keeping the `k` largest,
/// returns the k-th largest value v and how many entries equal to v are kept (`None` when
/// all are kept), and the sum of squares of the kept values.
fn trim_threshold(mags: &mut [f64], k: usize) -> (Option<(f64, usize)>, f64) {
    let n = mags.len();
    if k >= n {
        return (None, mags.iter().map(|m| m * m).sum());
    }
    // After the selection mags[..k] are the k largest (as a multiset), mags[k - 1] the k-th.
    mags.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let v = mags[k - 1];
    let above = mags[..k].iter().filter(|&&m| m > v).count();
    let kept_sq = mags[..k].iter().map(|m| m * m).sum();
    (Some((v, k - above)), kept_sq)
}
