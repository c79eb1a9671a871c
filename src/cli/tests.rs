//! The flags map onto the library's settings, defaults included.

use std::path::PathBuf;

use clap::Parser;
use instrec::data::mix::{CalibrationConfig, MixConfig};
use instrec::features::ChannelMode;
use instrec::model::Arch;

use super::*;

fn train_config(flags: &[&str]) -> instrec::train::TrainConfig {
    let mut args = vec!["instrec", "train", "--data", "d", "--out", "o"];
    args.extend(flags);
    let Command::Train(a) = Cli::try_parse_from(args).unwrap().command else {
        panic!("not train")
    };
    a.config("d".into())
}

/// The flags' defaults are the library's: a run from bare flags is the paper's recipe, and
/// `--mix` alone gives the default mixing and calibration.
#[test]
fn flag_defaults_are_the_library_defaults() {
    let paper = instrec::train::TrainConfig::paper(
        "d".into(),
        Arch::ResNet18,
        "imagenet",
        ChannelMode::Dup,
        1,
    );
    assert_eq!(train_config(&[]), paper);
    let mixed = train_config(&["--mix"]);
    assert_eq!(mixed.mix, Some(MixConfig::default()));
    assert_eq!(mixed.calibration, CalibrationConfig::default());
    assert_eq!(
        train_config(&["--spec-augment"]).spec_augment,
        Some(instrec::data::spec_augment::SpecAugmentConfig::default())
    );
}

/// Every training flag lands in its own setting.
#[test]
fn each_train_flag_sets_its_setting() {
    let c = train_config(&[
        "--arch",
        "han",
        "--init",
        "random",
        "--channels",
        "stereo",
        "--seed",
        "9",
        "--batch-size",
        "32",
        "--lr",
        "0.001",
        "--weight-decay",
        "0.01",
        "--optimizer",
        "adamw",
        "--warmup-epochs",
        "2",
        "--max-epochs",
        "40",
        "--patience",
        "7",
        "--val-fraction",
        "0.2",
        "--split",
        "random",
        "--val-data",
        "v",
        "--cache-dir",
        "cc",
        "--mix",
        "--mix-prob",
        "0.3",
        "--mix-sources",
        "2",
        "--mix-gain-db=-3,0",
        "--mix-partners",
        "genre",
        "--mix-match-level",
        "--calib-mixtures",
        "50",
        "--calib-shares",
        "1,2",
        "--calib-gain-db=-9,-1",
        "--calib-match-level",
        "--label-chords",
        "--loss",
        "asl",
        "--spec-augment",
        "--spec-level-db",
        "12",
        "--spec-colour-db",
        "0",
        "--spec-freq-masks",
        "0",
        "--spec-time-masks",
        "1",
        "--spec-warp",
        "0.08",
        "--follow",
        "--hidden",
    ]);
    let want = instrec::train::Recipe {
        batch_size: 32,
        lr: 0.001,
        weight_decay: 0.01,
        optimizer: instrec::train::OptimizerKind::AdamW,
        warmup_epochs: 2,
        max_epochs: 40,
        patience: 7,
        val_fraction: 0.2,
        split: instrec::data::SplitMode::Random,
    };
    assert_eq!(c.recipe, want);
    assert_eq!(
        (c.arch, c.init.as_str(), c.channels, c.seed),
        (Arch::Han, "random", ChannelMode::Stereo, 9)
    );
    assert_eq!(c.cache_dir, PathBuf::from("cc"));
    assert_eq!(c.val_data, Some(PathBuf::from("v")));
    assert!(c.label_chords);
    assert_eq!(c.loss, instrec::train::Loss::Asl);
    assert_eq!(
        c.walk(),
        instrec::walk::WalkOptions {
            follow: true,
            hidden: true
        }
    );
    assert_eq!(
        c.mix,
        Some(MixConfig {
            prob: 0.3,
            max_sources: 2,
            gain_db: [-3.0, 0.0],
            partners: instrec::data::mix::Partners::Genre,
            match_level: true,
        })
    );
    assert_eq!(
        c.calibration,
        CalibrationConfig {
            mixtures: 50,
            shares: vec![1.0, 2.0],
            gain_db: [-9.0, -1.0],
            match_level: true,
        }
    );
    assert_eq!(
        c.spec_augment,
        Some(instrec::data::spec_augment::SpecAugmentConfig {
            level_db: 12.0,
            colour_db: 0.0,
            freq_masks: 0,
            time_masks: 1,
            warp: 0.08,
            ..Default::default()
        })
    );
}

/// `evaluate --follow --hidden` walks the test folders (and `--recordings`) that way.
#[test]
fn evaluate_walk_flags_reach_its_options() {
    let parse = |extra: &[&str]| {
        let mut args = vec!["instrec", "evaluate", "--model", "m", "--data", "d"];
        args.extend(extra);
        let Command::Evaluate(a) = Cli::try_parse_from(args).unwrap().command else {
            panic!("not evaluate")
        };
        a.options().walk
    };
    assert_eq!(parse(&[]), instrec::walk::WalkOptions::default());
    let w = parse(&["--follow", "--hidden"]);
    assert!(w.follow && w.hidden);
}
