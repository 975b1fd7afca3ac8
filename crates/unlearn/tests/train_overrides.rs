//! `split_train_overrides`: a method table as a config writes it splits into the method's own
//! parameters and the trainer configuration, and bad values name their field.

use lm::train::TrainConfig;
use unlearn::split_train_overrides;

fn table(s: &str) -> toml::Table {
    s.parse().unwrap()
}

#[test]
fn lr_and_epochs_go_to_the_trainer_and_the_rest_to_the_method() {
    let base = TrainConfig { lr: 1e-3, epochs: 10, batch_size: 4, ..Default::default() };
    let (own, cfg) = split_train_overrides(&table("alpha = 1.5\nlr = 2e-4\nepochs = 3"), &base).unwrap();
    assert_eq!(own, table("alpha = 1.5"));
    assert_eq!((cfg.lr, cfg.epochs, cfg.batch_size), (2e-4, 3, 4));
    // nothing to split: the base as it is
    let (own, cfg) = split_train_overrides(&table("beta = 0.5"), &base).unwrap();
    assert_eq!(own, table("beta = 0.5"));
    assert_eq!(cfg, base);
    // an integer learning rate is a number too
    assert_eq!(split_train_overrides(&table("lr = 1"), &base).unwrap().1.lr, 1.0);
}

#[test]
fn bad_values_name_the_field() {
    let base = TrainConfig::default();
    for (text, field) in [
        ("lr = -1e-3", "lr"),
        ("lr = 0.0", "lr"),
        ("lr = nan", "lr"),
        ("lr = \"fast\"", "lr"),
        ("epochs = 0", "epochs"),
        ("epochs = 2.5", "epochs"),
    ] {
        let e = format!("{:#}", split_train_overrides(&table(text), &base).unwrap_err());
        assert!(e.starts_with(&format!("{field} = ")) && e.contains("invalid"), "{text}: {e}");
    }
}
