//! How a report reads its results: the `[report]` table of a sweep config, which the runner
//! saves as `RESULTS_DIR/report.json` (`runner::exec::REPORT_OPTIONS_FILE`) so that a later
//! `bench report RESULTS_DIR` reads the same.
//!
//! ```toml
//! [report]
//! # Rows marked best must pass every criterion, each a ratio to θ_D's value in the same world
//! # (mean over worlds). A criterion whose metric the results lack is reported as not measured.
//! gate = [
//!     { metric = "tofu_model_utility", min_ratio = 0.9 },
//!     { metric = "perplexity/general", max_ratio = 1.5 },
//! ]
//! # The headline row of a method with several grid points: the point chosen on the validation
//! # world, as parameter = value (a subset of the parameters that picks exactly one row).
//! headline = { msa = { checkpoint = "distance:0" } }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The file the runner writes the `[report]` table to, in the results folder.
pub const OPTIONS_FILE: &str = "report.json";

/// The report's options (see the module documentation).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The utility gate; default [`default_gate`].
    #[serde(default = "default_gate")]
    pub gate: Vec<GateCriterion>,
    /// Method name → the parameters of its headline grid point.
    #[serde(default)]
    pub headline: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
}

impl Default for Options {
    fn default() -> Self {
        Options { gate: default_gate(), headline: BTreeMap::new() }
    }
}

/// One criterion of the utility gate: `metric`'s value over θ_D's, in the same world, at least
/// `min_ratio` or at most `max_ratio` (exactly one of the two).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateCriterion {
    pub metric: String,
    #[serde(default)]
    pub min_ratio: Option<f64>,
    #[serde(default)]
    pub max_ratio: Option<f64>,
}

impl GateCriterion {
    /// "model utility ≥ 0.9 × θ_D's".
    pub fn describe(&self) -> String {
        match (self.min_ratio, self.max_ratio) {
            (Some(r), _) => format!("{} ≥ {} × θ_D's", self.metric, r),
            (_, Some(r)) => format!("{} ≤ {} × θ_D's", self.metric, r),
            _ => self.metric.clone(),
        }
    }

    /// Whether a ratio to θ_D's passes.
    pub fn passes(&self, ratio: f64) -> bool {
        match (self.min_ratio, self.max_ratio) {
            (Some(r), _) => ratio >= r,
            (_, Some(r)) => ratio <= r,
            _ => true,
        }
    }
}

/// Model utility ≥ 90 % of θ_D's and general perplexity ≤ 1.5 × θ_D's.
pub fn default_gate() -> Vec<GateCriterion> {
    vec![
        GateCriterion { metric: "tofu_model_utility".into(), min_ratio: Some(0.9), max_ratio: None },
        GateCriterion { metric: "perplexity/general".into(), min_ratio: None, max_ratio: Some(1.5) },
    ]
}

impl Options {
    /// Reads and checks options from JSON (the `[report]` table); `origin` names where it came
    /// from in messages (a file, `configs/x.toml [report]`).
    pub fn from_json(value: &serde_json::Value, origin: &str) -> Result<Options> {
        let o: Options = serde_json::from_value(value.clone()).with_context(|| {
            format!("{origin}: not a valid [report] table (keys: gate = [{{ metric, min_ratio | max_ratio }}], headline = {{ METHOD = {{ PARAM = VALUE }} }})")
        })?;
        for (i, c) in o.gate.iter().enumerate() {
            let field = format!("{origin}: gate[{i}] ({})", c.metric);
            match (c.min_ratio, c.max_ratio) {
                (Some(_), Some(_)) | (None, None) => bail!("{field}: give exactly one of min_ratio and max_ratio"),
                (Some(r), None) | (None, Some(r)) if !(r.is_finite() && r > 0.0) => {
                    bail!("{field}: the ratio must be a positive number, got {r}")
                }
                _ => {}
            }
            if evals::registry::record_info(&c.metric).is_none() {
                bail!(
                    "{field}: no metric declares the record `{}` (a metric name, or metric/sub-value such as perplexity/general)",
                    c.metric
                );
            }
        }
        for (method, params) in &o.headline {
            if params.is_empty() {
                bail!("{origin}: headline.{method}: name at least one parameter");
            }
            for (k, v) in params {
                if v.is_object() || v.is_array() || v.is_null() {
                    bail!("{origin}: headline.{method}.{k}: expected a number, string or boolean, got {v}");
                }
            }
        }
        Ok(o)
    }

    /// `results_dir/report.json` when there is one, else the defaults.
    pub fn load(results_dir: &Path) -> Result<Options> {
        let path = results_dir.join(OPTIONS_FILE);
        if !path.is_file() {
            return Ok(Options::default());
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        Options::from_json(&value, &path.display().to_string())
    }

    /// Whether `params` is the headline point declared for `method` (every declared parameter
    /// equal; numbers compared as numbers). `None` when nothing is declared for the method.
    pub fn is_headline(&self, method: &str, params: &BTreeMap<String, serde_json::Value>) -> Option<bool> {
        let want = self.headline.get(method)?;
        Some(want.iter().all(|(k, v)| params.get(k).is_some_and(|p| same_value(p, v))))
    }
}

fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_checks() {
        let o = Options::from_json(&json!({}), "x").unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(o.gate.len(), 2);
        let e = |v| format!("{:#}", Options::from_json(&v, "cfg [report]").unwrap_err());
        assert!(e(json!({"gate": [{"metric": "tofu_model_utility"}]}))
            .contains("gate[0] (tofu_model_utility): give exactly one"));
        assert!(e(json!({"gate": [{"metric": "tofu_model_utility", "min_ratio": -1}]})).contains("positive"));
        assert!(e(json!({"gate": [{"metric": "utility", "min_ratio": 0.9}]}))
            .contains("no metric declares the record `utility`"));
        assert!(e(json!({"headline": {"msa": {}}})).contains("headline.msa: name at least one"));
        assert!(e(json!({"colour": 1})).contains("not a valid [report] table"));
        let o =
            Options::from_json(&json!({"headline": {"msa": {"alpha": 0.5, "checkpoint": "distance:0"}}}), "x").unwrap();
        let p = |a: serde_json::Value, c: &str| {
            BTreeMap::from([
                ("alpha".to_owned(), a),
                ("checkpoint".to_owned(), json!(c)),
                ("lr".to_owned(), json!(1e-3)),
            ])
        };
        assert_eq!(o.is_headline("msa", &p(json!(0.5), "distance:0")), Some(true));
        assert_eq!(o.is_headline("msa", &p(json!(1), "distance:0")), Some(false));
        assert_eq!(o.is_headline("npo", &p(json!(1), "distance:0")), None);
    }
}
