//! ARCHITECTURE.md's "Adding a method" example, compiled and used: its code block is
//! `adding_a_method/wga.rs` byte for byte (checked below), its `SPEC` builds through a
//! registry that appends it to `methods::SPECS`, and `SPEC.params` are exactly the fields
//! `WgaParams` accepts — so the documented edits are the ones a method needs.

#[rustfmt::skip]
#[path = "adding_a_method/wga.rs"]
mod wga;

use std::collections::BTreeSet;
use std::path::Path;

/// The first ```rust block of ARCHITECTURE.md's "Adding a method" section, de-indented.
fn documented_example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let section = &doc[doc.find("## Adding a method").expect("the section")..];
    let mut lines = section.lines().skip_while(|l| l.trim() != "```rust").skip(1);
    let mut out = String::new();
    for l in lines.by_ref() {
        if l.trim() == "```" {
            return out;
        }
        out += l.strip_prefix("   ").unwrap_or(l);
        out += "\n";
    }
    panic!("unterminated code block");
}

#[test]
fn the_documented_example_is_the_compiled_one() {
    let compiled =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/adding_a_method/wga.rs")).unwrap();
    assert_eq!(documented_example(), compiled, "ARCHITECTURE.md's example and tests/adding_a_method/wga.rs differ");
}

/// `methods::SPECS` plus the new spec: the one line the documentation asks for.
fn registry() -> Vec<unlearn::MethodSpec> {
    methods::SPECS.iter().copied().chain([wga::SPEC]).collect()
}

fn table(text: &str) -> toml::Table {
    text.parse().unwrap()
}

#[test]
fn the_new_method_builds_from_the_registry_and_checks_its_fields() {
    let reg = registry();
    let spec = reg.iter().find(|s| s.kind == "wga").expect("wga in the registry");
    let m = (spec.build)(&table("gamma = 0.5")).unwrap();
    assert_eq!(m.name(), "wga");
    // a bad coefficient names the method and the field
    let e = format!("{:#}", (spec.build)(&table("gamma = -1.0")).err().expect("refused"));
    assert!(e.contains("wga") && e.contains("gamma"), "{e}");
    // an unknown field is refused, and serde's list of accepted fields is SPEC.params
    let e = format!("{:#}", (spec.build)(&table("gama = 1.0")).err().expect("refused"));
    let at = e.find("expected").expect("serde lists the fields");
    let accepted: BTreeSet<&str> = e[at..].split('`').skip(1).step_by(2).collect();
    let declared: BTreeSet<&str> = spec.params.iter().copied().collect();
    assert_eq!(accepted, declared);
    // the training budget is the trainer's, not the method's: lr in its table is refused
    let e = format!("{:#}", (spec.build)(&table("gamma = 0.5\nlr = 1e-4")).err().expect("refused"));
    assert!(e.contains("unknown field `lr`"), "{e}");
    // and the built-in methods are unchanged by the addition
    assert_eq!(reg.len(), methods::SPECS.len() + 1);
    assert!(reg.iter().zip(methods::KINDS).all(|(s, k)| s.kind == *k));
}
