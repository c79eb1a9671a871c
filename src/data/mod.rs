//! Data: the IRMAS reader, validation splits, the feature cache, the synthetic corpus and mixtures
//! of clips.

pub mod augment;
pub mod cache;
pub mod download;
pub mod gus;
pub mod irmas;
pub mod library;
pub mod mix;
pub mod perform;
pub mod sf2;
pub mod sfz;
pub mod soundfont;
pub mod spec_augment;
pub mod split;
pub mod synth;
pub mod voice;

pub use irmas::{Irmas, Issue, TestClip, TrainClip};
pub use split::{Split, SplitMode, split_validation};
