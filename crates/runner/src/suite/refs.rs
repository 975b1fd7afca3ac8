//! The oracle's reference values ([`OracleRefs`]), cached as JSON per world; the oracle's
//! distributions are stored exactly as base64 of little-endian f32.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The oracle's values that the two-model metrics compare against; computed once per world by
/// [`EvalSuite::oracle_pass`]. `fingerprint` names the suite it was computed for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OracleRefs {
    pub fingerprint: String,
    /// The oracle's forget-set truth ratios (for `tofu_forget_quality`).
    pub forget_truth_ratios: Option<Vec<f64>>,
    /// The oracle's Min-K% AUC (for `muse_privleak`).
    pub mink_auc: Option<f64>,
    /// By split (`forget`, `retain`, `general`): the texts and the oracle's next-token
    /// distributions (for `kl_to_oracle`).
    pub kl: BTreeMap<String, KlReference>,
    /// Clean-answer accuracy of the oracle and of θ_D (for `restor_recovery`).
    pub restor_oracle_acc: Option<f64>,
    pub restor_theta_d_acc: Option<f64>,
    /// ‖θ_D − θ_oracle‖₂ (the denominator of `param_distance_to_oracle`).
    pub theta_d_distance: Option<f64>,
    /// The membership-inference reference model's mean token NLL of every member (forget)
    /// then held-out document (for `mia_reference_auc`; see [`EvalSuite::set_mia_reference`]).
    #[serde(default)]
    pub mia_reference_nll: Option<Vec<f64>>,
    /// The oracle's greedy answers to the suite's forget QA prompts, in item order (the ideal
    /// answers of `acc_forget` / `acc_recover`; same requests as the model's, see
    /// `evals::judge::answer_requests`). Absent in caches written before these metrics (their
    /// suites never name them, so the fingerprint keeps such caches apart).
    #[serde(default)]
    pub forget_answers: Option<Vec<String>>,
    /// The oracle's greedy answers to the suite's retain QA prompts (for `acc_retain`).
    #[serde(default)]
    pub retain_answers: Option<Vec<String>>,
}

impl OracleRefs {
    /// No oracle values yet (filled by the oracle pass; standalone suites keep it empty).
    pub(super) fn empty(fingerprint: String) -> OracleRefs {
        OracleRefs {
            fingerprint,
            forget_truth_ratios: None,
            mink_auc: None,
            kl: BTreeMap::new(),
            restor_oracle_acc: None,
            restor_theta_d_acc: None,
            theta_d_distance: None,
            mia_reference_nll: None,
            forget_answers: None,
            retain_answers: None,
        }
    }
}

/// The oracle's log-softmax rows on one set of texts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KlReference {
    pub ids: Vec<String>,
    pub texts: Vec<String>,
    /// `rows[text][position][vocab]`, stored as base64 of little-endian f32 (exact).
    #[serde(with = "packed_rows")]
    pub rows: Vec<Vec<Vec<f32>>>,
}

/// Serde for `Vec<Vec<Vec<f32>>>` as `[{ "positions", "vocab", "f32le_base64" }]`: exact and a
/// third of the size of JSON numbers.
mod packed_rows {
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Packed {
        positions: usize,
        vocab: usize,
        f32le_base64: String,
    }

    pub fn serialize<S: Serializer>(rows: &[Vec<Vec<f32>>], s: S) -> Result<S::Ok, S::Error> {
        let packed: Vec<Packed> = rows
            .iter()
            .map(|text| {
                let vocab = text.first().map_or(0, Vec::len);
                let bytes: Vec<u8> = text.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
                Packed { positions: text.len(), vocab, f32le_base64: super::base64::encode(&bytes) }
            })
            .collect();
        packed.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<Vec<f32>>>, D::Error> {
        let packed = Vec::<Packed>::deserialize(d)?;
        packed
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let bytes =
                    super::base64::decode(&p.f32le_base64).map_err(|e| D::Error::custom(format!("text {i}: {e}")))?;
                if bytes.len() != p.positions * p.vocab * 4 {
                    return Err(D::Error::custom(format!(
                        "text {i}: {} bytes for {} positions × {} vocabulary f32s",
                        bytes.len(),
                        p.positions,
                        p.vocab
                    )));
                }
                let floats: Vec<f32> =
                    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                Ok(floats.chunks(p.vocab.max(1)).map(<[f32]>::to_vec).collect())
            })
            .collect()
    }
}

/// Standard base64 (RFC 4648, padded) through the `base64` crate.
mod base64 {
    use ::base64::engine::general_purpose::STANDARD;
    use ::base64::Engine as _;

    pub fn encode(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Vec<u8>, String> {
        STANDARD.decode(text).map_err(|e| format!("invalid base64: {e}"))
    }

    #[cfg(test)]
    mod tests {
        /// RFC 4648 section 10 test vectors.
        #[test]
        fn rfc4648_vectors_round_trip() {
            for (plain, coded) in [
                ("", ""),
                ("f", "Zg=="),
                ("fo", "Zm8="),
                ("foo", "Zm9v"),
                ("foob", "Zm9vYg=="),
                ("fooba", "Zm9vYmE="),
                ("foobar", "Zm9vYmFy"),
            ] {
                assert_eq!(super::encode(plain.as_bytes()), coded);
                assert_eq!(super::decode(coded).unwrap(), plain.as_bytes());
            }
            assert!(super::decode("Zg=").is_err());
            assert!(super::decode("Z!==").is_err());
            assert!(super::decode("Zm9").is_err());
            assert!(super::decode("Zm=v").is_err());
            assert!(super::decode("Zm9*").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_rows_round_trip_exactly() {
        let r = KlReference {
            ids: vec!["a".into()],
            texts: vec!["t".into()],
            rows: vec![vec![vec![-0.1, f32::MIN_POSITIVE, -7.25], vec![0.0, -1e-30, f32::NEG_INFINITY]], vec![]],
        };
        let s = serde_json::to_string(&r).unwrap();
        let back: KlReference = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
    }
}
