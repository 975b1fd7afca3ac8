//! Weighted gradient ascent: L(θ) = Σ_t m_t·p_θ(y_t)^γ·log p_θ(y_t) / Σ_t m_t (weight detached).
use lm::train::{Objective, Step};
pub struct WgaLoss { pub gamma: f64 }
impl Objective for WgaLoss {
    fn loss(&self, model: &lm::CausalLm, step: &Step) -> anyhow::Result<candle_core::Tensor> {
        let b = step.primary;
        let logits = model.forward(&b.inputs, Some(&b.attention))?;          // (b, t, vocab)
        let lp = lm::CausalLm::target_logprobs(&logits, &b.targets)?;        // (b, t)
        let w = (lp.detach() * self.gamma)?.exp()?;                          // p^γ, no gradient
        let total = b.mask.sum_all()?.to_scalar::<f32>()? as f64;
        Ok(((lp * w)? * &b.mask)?.sum_all()?.affine(1.0 / total, 0.0)?)
    }
}
#[derive(serde::Deserialize)] #[serde(deny_unknown_fields)]
pub struct WgaParams {
    #[serde(default)] pub gamma: f64, // lr, epochs, ...: the trainer's, ctx.train
}
pub struct Wga { pub params: WgaParams }
impl Wga {
    pub fn from_params(params: &toml::Table) -> anyhow::Result<Wga> {
        let p: WgaParams = unlearn::parse_params("wga", params)?; // errors name the field
        unlearn::check_coefficient("wga", "gamma", p.gamma)?;
        Ok(Wga { params: p })
    }
}
/// The registry entry: kind, the method's own hyperparameters, builder, and for the
/// memory plan whether a step also runs a retain batch or holds a frozen copy of θ_D.
pub const SPEC: unlearn::MethodSpec = unlearn::MethodSpec {
    kind: "wga",
    params: &["gamma"],
    build: |p| Ok(Box::new(Wga::from_params(p)?)),
    retain_batch: false,
    frozen_reference: false,
};
impl unlearn::Unlearner for Wga {
    fn name(&self) -> &str { "wga" }
    fn run(&self, ctx: &unlearn::Context) -> anyhow::Result<unlearn::RunReport> {
        unlearn::train_gradient_method("wga", ctx, &WgaLoss { gamma: self.params.gamma }, false, &ctx.train)
    }
}
