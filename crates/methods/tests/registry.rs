//! The registry is the one source of truth for method kinds and hyperparameters: `KINDS`,
//! `PARAMS` and `build` agree, and `PARAMS` lists exactly the fields each method's
//! `deny_unknown_fields` parameter struct accepts (read back from serde's "expected one of"
//! message), so a config the runner accepts is one the method accepts, and the reverse; the
//! training budget (`lr`, `epochs`) is none of them.

use std::collections::BTreeSet;

/// The backticked names after "expected one of" (or "expected `x`") in a serde error; none
/// when it says "there are no fields".
fn expected_fields(message: &str) -> BTreeSet<String> {
    if message.contains("there are no fields") {
        return BTreeSet::new();
    }
    let Some(at) = message.find("expected") else { panic!("no 'expected' in {message:?}") };
    message[at..].split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

#[test]
fn kinds_params_and_build_agree() {
    let kinds: Vec<&str> = methods::PARAMS.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, methods::KINDS, "PARAMS must list every kind of KINDS, in the same order");
    for kind in methods::KINDS {
        assert_eq!(methods::build(kind, &toml::Table::new()).unwrap().name(), *kind);
    }
}

#[test]
fn params_are_exactly_the_fields_each_method_accepts() {
    for (kind, params) in methods::PARAMS {
        let mut table = toml::Table::new();
        table.insert("no_such_parameter".into(), toml::Value::Integer(1));
        let err = match methods::build(kind, &table) {
            Ok(_) => panic!("{kind}: an unknown parameter was accepted"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("no_such_parameter"), "{kind}: {err}");
        let accepted = expected_fields(&err);
        let declared: BTreeSet<String> = params.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            accepted, declared,
            "{kind}: the parameter struct accepts {accepted:?}, PARAMS declares {declared:?}"
        );
    }
}

/// The training budget is the trainer's (`Context::train`), never a method's parameter: no
/// method accepts `lr` or `epochs` (the runner resolves them from `[train]` and the method
/// table into the one trainer configuration of the cell).
#[test]
fn no_method_takes_the_training_budget() {
    for kind in methods::KINDS {
        for key in ["lr", "epochs"] {
            let table: toml::Table = format!("{key} = 1").parse().unwrap();
            let err =
                format!("{:#}", methods::build(kind, &table).err().unwrap_or_else(|| panic!("{kind} took {key}")));
            assert!(err.contains(&format!("unknown field `{key}`")), "{kind}: {err}");
        }
    }
}
