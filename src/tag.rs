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
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    let exts: Vec<String> = AUDIO_EXTENSIONS.iter().map(|e| e.to_string()).collect();
    collect_files_with(inputs, &exts)
}

/// [`collect_audio_files`] with another list of extensions (lowercase, without the dot).
pub fn collect_files_with(inputs: &[PathBuf], extensions: &[String]) -> Vec<PathBuf> {
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
                        } else if path
                            .extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase()))
                        {
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

/// The part `k` of `n` (1-based) of a file list: the files whose path hashes to it (FNV-1a of the
/// path as listed), so N processes given the same inputs tag disjoint parts that together are
/// the whole list, whatever order each one sees.
pub fn shard(files: Vec<PathBuf>, k: usize, n: usize) -> Vec<PathBuf> {
    let hash = |p: &Path| {
        p.to_string_lossy()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
            })
    };
    files
        .into_iter()
        .filter(|p| (hash(p) % n as u64) as usize == k - 1)
        .collect()
}

/// What identifies a file's version: its size and modification time (ns since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
}

impl FileStamp {
    pub fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        let mtime_ns = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Some(Self {
            size: m.len(),
            mtime_ns,
        })
    }
}

/// One line of a JSON-lines tag file: a file's result, or why it failed.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TagLine {
    pub path: PathBuf,
    #[serde(flatten)]
    pub stamp: FileStamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Aggregated score per class, by class code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<std::collections::BTreeMap<String, f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predominant: Option<Vec<(String, f32)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<WindowScores>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TagLine {
    pub fn result(r: &TagResult, classes: &[String], stamp: FileStamp, timeline: bool) -> Self {
        Self {
            path: r.path.clone(),
            stamp,
            duration_s: Some(r.duration_s),
            scores: Some(
                classes
                    .iter()
                    .cloned()
                    .zip(r.scores.iter().copied())
                    .collect(),
            ),
            predominant: Some(r.predominant.clone()),
            timeline: timeline.then(|| r.timeline.clone()),
            error: None,
        }
    }

    pub fn failure(path: &Path, stamp: FileStamp, error: String) -> Self {
        Self {
            path: path.to_path_buf(),
            stamp,
            duration_s: None,
            scores: None,
            predominant: None,
            timeline: None,
            error: Some(error),
        }
    }
}

/// A JSON-lines tag file that grows one flushed line per file, so a run that dies loses at most
/// the line it was writing; reopened with `resume`, it says which files are done.
pub struct TagLog {
    file: std::fs::File,
    path: PathBuf,
}

impl TagLog {
    /// Opens `path` for a new run (it must not exist) or, with `resume`, to go on: a last line cut
    /// off by a crash is removed, and the (path, stamp) pairs already there are returned.
    pub fn open(
        path: &Path,
        resume: bool,
    ) -> std::io::Result<(Self, std::collections::HashSet<(PathBuf, FileStamp)>)> {
        use std::io::Write as _;
        let at = crate::util::io_at(path);
        let mut done = std::collections::HashSet::new();
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_file() {
                return Err(at(std::io::Error::other("is not a regular file")));
            }
            if !resume {
                return Err(at(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists (add --resume to go on with it, or remove it)",
                )));
            }
            let bytes = std::fs::read(path).map_err(&at)?;
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in bytes[..complete]
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
            {
                let l: TagLine = serde_json::from_slice(line).map_err(|e| {
                    at(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("not an instrec tag file ({e})"),
                    ))
                })?;
                done.insert((l.path, l.stamp));
            }
            if complete < bytes.len() {
                // The line a crash cut off: dropped, its file is tagged again.
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(&at)?;
                f.set_len(complete as u64).map_err(&at)?;
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(&at)?;
        file.flush().map_err(&at)?;
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
            },
            done,
        ))
    }

    /// Appends one line and flushes it to the file.
    pub fn write(&mut self, line: &TagLine) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut bytes = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .map_err(crate::util::io_at(&self.path))
    }
}
