//! Tagging user audio: per file, the predominant instruments with their clip scores and a
//! per-window timeline (start, end, 11 scores), with the bundle's own feature settings, channel
//! mode and thresholds.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Serialize;

use crate::audio::{AudioError, decode_file};
use crate::eval::metrics::{Aggregation, aggregate};
use crate::eval::score_windows;
use crate::features::{ClipFeatures, MelExtractor, Windowing};
use crate::model::Model;
use crate::model::bundle::{BundleConfig, BundleError, load_bundle};

/// One analysis window's scores.
#[derive(Debug, Clone, Serialize)]
pub struct WindowScores {
    pub start_s: f64,
    pub end_s: f64,
    pub scores: Vec<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagResult {
    pub path: PathBuf,
    pub duration_s: f64,
    /// Aggregated score per class, in the order of the bundle's classes.
    pub scores: Vec<f32>,
    /// The classes at or above their threshold, best first.
    pub predominant: Vec<(String, f32)>,
    pub timeline: Vec<WindowScores>,
}

/// A loaded model ready to tag files.
pub struct Tagger {
    pub model: Model,
    pub config: BundleConfig,
    extractor: MelExtractor,
    device: Device,
    pub windowing: Windowing,
    pub aggregation: Aggregation,
    pub thresholds: Vec<f32>,
    pub batch_size: usize,
}

impl Tagger {
    /// Loads a bundle; thresholds are the bundle's per-class ones when tuned, else its global one.
    pub fn load(model_dir: &Path, device: &Device) -> Result<Self, BundleError> {
        let (model, config) = load_bundle(model_dir, device)?;
        let n = config.classes.len();
        let thresholds = config
            .thresholds
            .per_class
            .clone()
            .filter(|p| p.len() == n)
            .unwrap_or_else(|| vec![config.thresholds.global; n]);
        Ok(Self {
            extractor: MelExtractor::new(config.features.clone()),
            model,
            config,
            device: device.clone(),
            windowing: Windowing::analysis(),
            aggregation: Aggregation::S1,
            thresholds,
            batch_size: 64,
        })
    }

    /// Uses one threshold for every class.
    pub fn with_threshold(mut self, t: f32) -> Self {
        self.thresholds = vec![t; self.config.classes.len()];
        self
    }

    pub fn tag_file(&self, path: &Path) -> Result<TagResult, AudioError> {
        let audio = decode_file(path)?;
        let features = ClipFeatures::extract(&self.extractor, &audio, self.config.channels);
        let windows = score_windows(
            &self.model,
            &features,
            self.windowing,
            &self.device,
            self.batch_size,
        );
        let scores = aggregate(&windows, self.aggregation);
        let frame_s =
            self.config.features.hop_length as f64 / self.config.features.sample_rate as f64;
        let duration_s = audio.duration_s();
        let timeline = self
            .windowing
            .starts(features.frames())
            .into_iter()
            .zip(windows)
            .map(|(start, scores)| WindowScores {
                start_s: start as f64 * frame_s,
                end_s: ((start + self.windowing.length) as f64 * frame_s).min(duration_s),
                scores,
            })
            .collect();
        let mut predominant: Vec<(String, f32)> = scores
            .iter()
            .enumerate()
            .filter(|&(k, &s)| s >= self.thresholds[k])
            .map(|(k, &s)| (self.config.classes[k].clone(), s))
            .collect();
        predominant.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(TagResult {
            path: path.to_path_buf(),
            duration_s,
            scores,
            predominant,
            timeline,
        })
    }
}

/// Audio file extensions `collect_audio_files` picks up in directories.
pub const AUDIO_EXTENSIONS: [&str; 9] = [
    "wav", "flac", "ogg", "mp3", "m4a", "aac", "aif", "aiff", "oga",
];

/// Expands files and directories (recursively, audio extensions only) into a sorted file list.
/// Explicitly named files are kept whatever their extension, so a bad one is reported.
pub fn collect_audio_files(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut found = Vec::new();
            while let Some(d) = stack.pop() {
                if let Ok(entries) = std::fs::read_dir(&d) {
                    for e in entries.flatten() {
                        let path = e.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                            AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
                        }) {
                            found.push(path);
                        }
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    out
}
