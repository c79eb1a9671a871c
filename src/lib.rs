//! # instrec
//!
//! Predominant instrument recognition in polyphonic music, after Zhong, Saito & Minematsu,
//! "Fine-tuning ImageNet pre-trained models to be transferred for predominant instrument
//! recognition in polyphonic music".
//!
//! The modules follow the pipeline, each handing a narrow type to the next and importing only
//! the ones above it in this list:
//!
//! - [`audio`]: the one decoding boundary — decode, downmix, resample ([`audio::Audio`],
//!   [`audio::AudioStream`]);
//! - [`features`]: log-mels, windows, channel modes ([`features::LogMel`],
//!   [`features::ClipFeatures`]);
//! - [`data`]: the IRMAS reader, validation splits, the feature cache, the synthetic corpus and
//!   mixtures of clips ([`data::Irmas`], [`data::mix::Mixture`]);
//! - [`model`]: ResNet18/50 and the Han CNN, weight import and export, model bundles
//!   ([`model::Model`], [`model::bundle::BundleConfig`]);
//! - [`eval`]: window scoring, s1/s2, thresholds and metrics, reports ([`eval::EvalReport`]);
//! - [`train`]: the paper's recipe ([`train::PAPER`]), checkpoints, start and resume, threshold
//!   tuning ([`train::TrainSummary`]);
//! - [`tag`]: user audio and whole libraries → labels and timelines ([`tag::TagResult`]);
//! - [`experiment`]: grids of runs and their tables; [`demo`]: the whole pipeline on a small
//!   synthetic corpus.
//!
//! Beneath them all: [`error`] (the crate's one error type), [`util`] (atomic writes, the seeded
//! generator), [`check`] (the range rule of every setting), [`backend`] (a name → a device),
//! [`report`] (PNG plots of plain data), [`npy`]. On top: [`bench`](mod@bench) (the throughput measurements of `instrec bench`). Nothing in
//! the library parses arguments or prints; the binary (`main.rs` with its `cli` and `progress`
//! modules) does.

// Beneath the pipeline.
pub mod backend;
pub mod check;
pub mod error;
pub mod npy;
pub mod report;
pub mod util;
pub mod walk;

// The pipeline, in order (blank lines keep rustfmt from sorting it).
// Decode, downmix, resample.
pub mod audio;

// Log-mels, windows, channel modes.
pub mod features;

// Data sets, splits, the feature cache, the synthetic corpus, mixtures.
pub mod data;

// Networks, weight import and export, bundles.
pub mod model;

// Scoring, aggregation, thresholds, metrics.
pub mod eval;

// The training recipe.
pub mod train;

// Tagging files and libraries.
pub mod tag;

// Grids of runs.
pub mod experiment;

// The pipeline on a small synthetic corpus.
pub mod demo;

// Throughput measurements for `instrec bench`.
pub mod bench;

/// The 11 IRMAS instruments, in the order of every model output.
pub const CLASSES: [&str; 11] = [
    "cel", "cla", "flu", "gac", "gel", "org", "pia", "sax", "tru", "vio", "voi",
];

/// A small clip bundled in the binary (a stereo chord at 44.1 kHz, FLAC), so the CLI has something
/// to analyse on a machine with no audio at hand.
pub const EXAMPLE_CLIP: &[u8] = include_bytes!("../tests/data/chord_stereo_44k.flac");

#[cfg(test)]
mod names {
    use clap::ValueEnum;
    use serde::{Serialize, de::DeserializeOwned};

    /// clap and serde derive each value's name from the variant: they must agree, and
    /// `Display` must print the same name.
    fn agree<T: ValueEnum + Serialize + DeserializeOwned + std::fmt::Display + PartialEq>() {
        for v in T::value_variants() {
            let name = v.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{name}\""));
            assert!(serde_json::from_str::<T>(&format!("\"{name}\"")).unwrap() == *v);
            assert!(T::from_str(&name, false).unwrap() == *v);
            assert_eq!(v.to_string(), name);
        }
    }

    #[test]
    fn every_enum_has_one_name_per_value() {
        agree::<crate::model::Arch>();
        agree::<crate::backend::Backend>();
        agree::<crate::features::ChannelMode>();
        agree::<crate::audio::Channel>();
        agree::<crate::data::SplitMode>();
        agree::<crate::eval::metrics::Aggregation>();
        agree::<crate::train::OptimizerKind>();
        agree::<crate::data::mix::Partners>();
        assert_eq!(
            crate::model::Arch::value_variants()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["resnet18", "resnet50", "han"]
        );
        // The paper's names for the channel modes still work on the command line.
        assert!(crate::features::ChannelMode::from_str("duplication", false).is_ok());
    }
}
