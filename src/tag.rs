//! Tagging user audio: per file, the predominant instruments with their clip scores and a
//! per-window timeline (start, end, 11 scores), with the bundle's own feature settings, channel
//! mode and thresholds.

use std::path::{Path, PathBuf};

use std::collections::VecDeque;

use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::audio::{AudioError, AudioStream};
use crate::eval::metrics::{Aggregation, aggregate};
use crate::eval::sigmoid_scores;
use crate::features::{MelExtractor, MelStream, Windowing};
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

    /// Tags one file, streaming: audio is decoded, resampled and analysed block by block, and
    /// windows are scored as soon as their frames exist, so memory does not grow with the length
    /// of the file (only the timeline, 11 scores per window, does). The scores equal those of
    /// scoring the whole clip at once.
    pub fn tag_file(&self, path: &Path) -> Result<TagResult, AudioError> {
        // The CLI checks these too; a library caller gets an error, not a panic or a hang.
        crate::check::hop("hop", self.windowing.hop)
            .and_then(|_| crate::check::batch("batch_size", self.batch_size))
            .map_err(|e| AudioError::new(path.display().to_string(), e))?;
        let settings = &self.config.features;
        let sources = self.config.channels.sources();
        let mut stream = MelStream::new(AudioStream::open(path)?, sources, &self.extractor);
        let rate = stream.sample_rate();
        let mut scorer = WindowScorer::new(self, sources.len());
        while let Some(columns) = stream.next_columns()? {
            for (k, c) in columns.into_iter().enumerate() {
                scorer.columns[k].extend(c);
            }
            scorer.frames = stream.frames();
            scorer.score_ready(false);
        }
        let samples = stream.samples();
        let duration_s = samples as f64 / rate as f64;
        crate::features::check_clip_frames(scorer.frames, duration_s, settings)
            .map_err(|reason| AudioError::new(path.display().to_string(), reason))?;
        scorer.score_ready(true);

        let windows = scorer.scores;
        let starts = scorer.starts;
        let scores = aggregate(&windows, self.aggregation);
        let frame_s = settings.hop_length as f64 / settings.sample_rate as f64;
        let timeline = starts
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

/// Scores windows as their frames arrive, keeping only the frames still needed.
struct WindowScorer<'a> {
    tagger: &'a Tagger,
    /// Frame columns per source, from absolute frame `first` on.
    columns: Vec<VecDeque<Vec<f32>>>,
    first: usize,
    /// Frames known so far.
    frames: usize,
    starts: Vec<usize>,
    scores: Vec<Vec<f32>>,
    batch: Vec<f32>,
    batch_len: usize,
}

impl<'a> WindowScorer<'a> {
    fn new(tagger: &'a Tagger, sources: usize) -> Self {
        Self {
            tagger,
            columns: vec![VecDeque::new(); sources],
            first: 0,
            frames: 0,
            starts: Vec::new(),
            scores: Vec::new(),
            batch: Vec::new(),
            batch_len: 0,
        }
    }

    /// Queues every window whose frames are all known (at the end: every remaining window of
    /// [`Windowing::starts`]) and scores full batches (at the end: everything).
    fn score_ready(&mut self, at_end: bool) {
        let w = self.tagger.windowing;
        let ready: Vec<usize> = if at_end {
            w.starts(self.frames)
                .into_iter()
                .skip(self.starts.len())
                .collect()
        } else {
            let mut v = Vec::new();
            let mut s = self.starts.len() * w.hop;
            while s + w.length <= self.frames {
                v.push(s);
                s += w.hop;
            }
            v
        };
        for s in ready {
            self.queue(s);
            if self.batch_len == self.tagger.batch_size {
                self.flush();
            }
        }
        if at_end {
            self.flush();
        }
        // Keep the frames of the next regular window and of a final window at the end.
        let keep_from = (self.starts.len() * w.hop).min(self.frames.saturating_sub(w.length));
        while self.first < keep_from {
            for c in &mut self.columns {
                c.pop_front();
            }
            self.first += 1;
        }
    }

    fn queue(&mut self, start: usize) {
        let t = self.tagger;
        let len = t.windowing.length;
        let n_mels = t.config.features.n_mels;
        let silence = t.config.features.silence();
        let plane = len * n_mels;
        let base = self.batch.len();
        self.batch.resize(base + 3 * plane, 0.0);
        let (columns, first, frames) = (&self.columns, self.first, self.frames);
        t.config
            .channels
            .fill_planes(&mut self.batch[base..], |k, dst| {
                for (i, row) in dst.chunks_mut(n_mels).enumerate() {
                    match start + i {
                        f if f < frames => row.copy_from_slice(&columns[k][f - first]),
                        _ => row.fill(silence),
                    }
                }
            });
        self.starts.push(start);
        self.batch_len += 1;
    }

    fn flush(&mut self) {
        if self.batch_len == 0 {
            return;
        }
        let t = self.tagger;
        let shape = [
            self.batch_len,
            3,
            t.windowing.length,
            t.config.features.n_mels,
        ];
        let x = Tensor::<4>::from_data(
            TensorData::new(std::mem::take(&mut self.batch), shape),
            &t.device,
        );
        self.scores.extend(sigmoid_scores(t.model.forward(x)));
        self.batch_len = 0;
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
