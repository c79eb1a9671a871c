//! # instrec
//!
//! Predominant instrument recognition in polyphonic music, after Zhong, Saito & Minematsu,
//! "Fine-tuning ImageNet pre-trained models to be transferred for predominant instrument
//! recognition in polyphonic music".
//!
//! The modules follow the pipeline, each handing a narrow type to the next:
//! [`audio`] (decode, downmix, resample: [`audio::Audio`]) → [`features`] (log-mel, windows,
//! channel modes: [`features::LogMel`], [`features::ClipFeatures`]).

pub mod audio;
pub mod backend;
pub mod bench;
pub mod check;
pub mod data;
pub mod demo;
pub mod eval;
pub mod experiment;
pub mod features;
pub mod model;
pub mod npy;
pub mod report;
pub mod tag;
pub mod train;
pub mod util;

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
