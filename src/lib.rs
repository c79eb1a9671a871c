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
