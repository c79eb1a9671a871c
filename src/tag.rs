//! Tagging user audio: per file, the predominant instruments with their clip scores and a
//! per-window timeline (start, end, 11 scores), with the bundle's own feature settings, channel
//! mode and thresholds.

use std::path::{Path, PathBuf};

use std::collections::VecDeque;

use burn::tensor::Device;
use serde::Serialize;

use crate::audio::{AudioError, AudioStream};
use crate::eval::metrics::{Aggregation, aggregate};
use crate::eval::score_inputs;
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

impl TagResult {
    /// `tag --format table`: one line.
    pub fn table_line(&self) -> String {
        format!(
            "{}  [{:.1} s, {} windows]: {}",
            self.path.display(),
            self.duration_s,
            self.timeline.len(),
            self.predominant_text()
        )
    }

    /// `tag --format csv`: one row per window, under [`window_csv_header`].
    pub fn csv_rows(&self) -> Vec<String> {
        self.timeline
            .iter()
            .map(|w| {
                let s: Vec<String> = w.scores.iter().map(|v| format!("{v:.4}")).collect();
                format!(
                    "\"{}\",{:.3},{:.3},{}",
                    self.path.display(),
                    w.start_s,
                    w.end_s,
                    s.join(",")
                )
            })
            .collect()
    }

    /// The title of its timeline plot: the file's name.
    pub fn title(&self) -> String {
        self.path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    }

    /// The predominant instruments with their scores, `cel (0.83), pia (0.61)`, or `-`.
    pub fn predominant_text(&self) -> String {
        if self.predominant.is_empty() {
            return "-".into();
        }
        let labels: Vec<String> = self
            .predominant
            .iter()
            .map(|(c, s)| format!("{c} ({s:.2})"))
            .collect();
        labels.join(", ")
    }

    /// The timeline as the plot takes it.
    pub fn timeline_windows(&self) -> Vec<crate::report::TimelineWindow<'_>> {
        self.timeline
            .iter()
            .map(|w| crate::report::TimelineWindow {
                start_s: w.start_s,
                end_s: w.end_s,
                scores: &w.scores,
            })
            .collect()
    }
}

/// Which of a bundle's tuned thresholds tagging applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum TunedOn {
    /// Tuned on the single validation clips, one per class (the paper's way).
    ClipsPerClass,
    /// Tuned on the single validation clips, one for all classes.
    Clips,
    /// Calibrated on validation mixtures of 1–3 instruments, one for all classes.
    Mixtures,
    /// Calibrated on validation mixtures of 1–3 instruments, one per class.
    MixturesPerClass,
}

crate::util::display_as_value!(TunedOn);

/// A bundle's thresholds of one kind, for `n` classes; an error names what the bundle lacks.
fn tuned(
    t: &crate::model::bundle::Thresholds,
    n: usize,
    which: TunedOn,
) -> Result<Vec<f32>, String> {
    let missing = |what: &str| {
        format!("the bundle has no thresholds {what} (trained before they existed, or not tuned)")
    };
    match which {
        TunedOn::Clips if t.source == "validation-tuned" => Ok(vec![t.global; n]),
        TunedOn::Clips => Err(missing("tuned on validation clips")),
        TunedOn::ClipsPerClass => t
            .per_class
            .clone()
            .ok_or_else(|| missing("tuned per class on validation clips")),
        TunedOn::Mixtures | TunedOn::MixturesPerClass => {
            let m = t
                .mixture
                .as_ref()
                .ok_or_else(|| missing("calibrated on validation mixtures"))?;
            Ok(if which == TunedOn::Mixtures {
                vec![m.global; n]
            } else {
                m.per_class.clone()
            })
        }
    }
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
    /// Loads a bundle. Music usually has several predominant instruments, so the thresholds are
    /// the bundle's global one calibrated on validation mixtures when it has one (the most
    /// accurate on multi-instrument test clips in `experiments/mixing.toml`); else its per-class
    /// ones tuned on validation clips; else its global one.
    pub fn load(model_dir: &Path, device: &Device) -> Result<Self, BundleError> {
        let (model, config) = load_bundle(model_dir, device)?;
        let model = model.fold_batchnorm();
        let n = config.classes.len();
        let thresholds = [TunedOn::Mixtures, TunedOn::ClipsPerClass]
            .into_iter()
            .find_map(|which| tuned(&config.thresholds, n, which).ok())
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

    /// Uses the bundle's thresholds of one kind; an error names what the bundle lacks.
    pub fn with_tuned(mut self, which: TunedOn) -> Result<Self, String> {
        self.thresholds = tuned(&self.config.thresholds, self.config.classes.len(), which)?;
        Ok(self)
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
        let mut windows: Vec<Vec<f32>> = Vec::new();
        let mut scores = Vec::new();
        let end = self.windows_of(path, &mut |w| {
            windows.extend(w);
            if windows.len() >= self.batch_size {
                scores.extend(self.score(windows.drain(..)));
            }
        })?;
        scores.extend(self.score(windows.into_iter()));
        Ok(self.result(path, &end, scores))
    }

    /// Decodes a file and makes its analysis windows as their frames arrive, handing them to
    /// `emit` in order as 3 × length × n_mels inputs; only the frames of windows still to come
    /// are held. Returns what the file's result needs besides the scores (the windows' starts).
    fn windows_of(
        &self,
        path: &Path,
        emit: &mut dyn FnMut(Vec<Vec<f32>>),
    ) -> Result<FileEnd, AudioError> {
        // The CLI checks these too; a library caller gets an error, not a panic or a hang.
        crate::check::hop("hop", self.windowing.hop)
            .and_then(|_| crate::check::batch("batch_size", self.batch_size))
            .map_err(|e| AudioError::new(path.display().to_string(), e))?;
        let settings = &self.config.features;
        let sources = self.config.channels.sources();
        let mut stream = MelStream::new(AudioStream::open(path)?, sources, &self.extractor);
        let mut maker = WindowMaker::new(self, sources.len());
        while let Some(columns) = stream.next_columns()? {
            for (k, c) in columns.into_iter().enumerate() {
                maker.columns[k].extend(c);
            }
            maker.frames = stream.frames();
            emit(maker.ready(false));
        }
        let duration_s = stream.samples() as f64 / stream.sample_rate() as f64;
        crate::features::check_clip_frames(maker.frames, duration_s, settings)
            .map_err(|reason| AudioError::new(path.display().to_string(), reason))?;
        emit(maker.ready(true));
        Ok(FileEnd {
            duration_s,
            starts: maker.starts,
        })
    }

    /// Sigmoid scores of window inputs, one forward pass.
    fn score(&self, windows: impl Iterator<Item = Vec<f32>>) -> Vec<Vec<f32>> {
        let x: Vec<f32> = windows.flatten().collect();
        let f = &self.config.features;
        score_inputs(
            &self.model,
            x,
            self.windowing.length,
            f.n_mels,
            &self.device,
        )
    }

    /// A file's result from its window scores.
    fn result(&self, path: &Path, end: &FileEnd, windows: Vec<Vec<f32>>) -> TagResult {
        let settings = &self.config.features;
        let scores = aggregate(&windows, self.aggregation);
        let frame_s = settings.hop_length as f64 / settings.sample_rate as f64;
        let timeline = end
            .starts
            .iter()
            .zip(windows)
            .map(|(&start, scores)| WindowScores {
                start_s: start as f64 * frame_s,
                end_s: ((start + self.windowing.length) as f64 * frame_s).min(end.duration_s),
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
        TagResult {
            path: path.to_path_buf(),
            duration_s: end.duration_s,
            scores,
            predominant,
            timeline,
        }
    }

    /// Tags many files at once: `threads` workers decode and make windows while this thread
    /// scores full batches drawn from several files, so the cores and the batch stay busy. The
    /// windows waiting at any time are bounded by the batch and a queue of `2 × threads` decoder
    /// blocks' worth, however many or long the files ([`TagStats::max_waiting`]). `done` gets
    /// each file's result as soon as its last window is scored (in completion order).
    pub fn tag_many(
        &self,
        files: &[PathBuf],
        threads: usize,
        done: &mut dyn FnMut(&Path, Result<TagResult, AudioError>),
    ) -> TagStats {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::mpsc::sync_channel;
        enum Msg {
            Windows(usize, Vec<Vec<f32>>),
            End(usize, Result<FileEnd, AudioError>),
        }
        let threads = threads.max(1);
        // Each message holds at most one decoder block's windows; a few per worker may wait.
        let (tx, rx) = sync_channel::<Msg>(2 * threads);
        let next = AtomicUsize::new(0);
        let waiting = AtomicUsize::new(0);
        let mut stats = TagStats::default();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (tx, next, waiting) = (tx.clone(), &next, &waiting);
                scope.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.get(i) else { break };
                        let end = self.windows_of(path, &mut |w| {
                            if !w.is_empty() {
                                waiting.fetch_add(w.len(), Ordering::Relaxed);
                                let _ = tx.send(Msg::Windows(i, w));
                            }
                        });
                        if tx.send(Msg::End(i, end)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut p = Pending::default();
            for msg in rx.iter() {
                stats.max_waiting = stats.max_waiting.max(waiting.load(Ordering::Relaxed));
                match msg {
                    Msg::Windows(i, w) => {
                        p.batch.extend(w.into_iter().map(|x| (i, x)));
                        while p.batch.len() >= self.batch_size {
                            let owners = p.score(self, self.batch_size, &waiting);
                            p.finish(self, &owners, files, done);
                        }
                    }
                    Msg::End(i, Ok(end)) => {
                        // Its last windows may wait for a full batch; it is handed over then.
                        stats.audio_s += end.duration_s;
                        p.ends.insert(i, end);
                        p.finish(self, &[i], files, done);
                    }
                    Msg::End(i, Err(e)) => {
                        let before = p.batch.len();
                        p.batch.retain(|(j, _)| *j != i);
                        waiting.fetch_sub(before - p.batch.len(), Ordering::Relaxed);
                        p.scores.remove(&i);
                        stats.failed += 1;
                        done(&files[i], Err(e));
                    }
                }
            }
            while !p.batch.is_empty() {
                let owners = p.score(self, self.batch_size, &waiting);
                p.finish(self, &owners, files, done);
            }
        });
        stats
    }
}

/// The consumer's side of [`Tagger::tag_many`]: windows waiting for a batch, scores and ends of
/// the files in flight.
#[derive(Default)]
struct Pending {
    batch: Vec<(usize, Vec<f32>)>,
    scores: std::collections::HashMap<usize, Vec<Vec<f32>>>,
    ends: std::collections::HashMap<usize, FileEnd>,
}

impl Pending {
    /// Scores the first `n` waiting windows; returns the files they belong to.
    fn score(
        &mut self,
        t: &Tagger,
        n: usize,
        waiting: &std::sync::atomic::AtomicUsize,
    ) -> Vec<usize> {
        let rest = self.batch.split_off(n.min(self.batch.len()));
        let batch = std::mem::replace(&mut self.batch, rest);
        let owners: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        let out = t.score(batch.into_iter().map(|(_, x)| x));
        waiting.fetch_sub(owners.len(), std::sync::atomic::Ordering::Relaxed);
        for (&i, s) in owners.iter().zip(out) {
            self.scores.entry(i).or_default().push(s);
        }
        let mut files = owners;
        files.dedup();
        files
    }

    /// Hands over every file among `files` whose end is known and whose windows are all scored.
    fn finish(
        &mut self,
        t: &Tagger,
        files: &[usize],
        paths: &[PathBuf],
        done: &mut dyn FnMut(&Path, Result<TagResult, AudioError>),
    ) {
        for &i in files {
            let complete = self
                .ends
                .get(&i)
                .is_some_and(|e| self.scores.get(&i).map_or(0, Vec::len) == e.starts.len());
            if complete {
                let end = self.ends.remove(&i).unwrap();
                let scores = self.scores.remove(&i).unwrap_or_default();
                done(&paths[i], Ok(t.result(&paths[i], &end, scores)));
            }
        }
    }
}

/// What a file's result needs besides its window scores.
struct FileEnd {
    duration_s: f64,
    starts: Vec<usize>,
}

/// Counts from [`Tagger::tag_many`].
#[derive(Debug, Clone, Default)]
pub struct TagStats {
    pub audio_s: f64,
    pub failed: usize,
    /// The most windows that waited at once (made, not yet scored).
    pub max_waiting: usize,
}

/// Makes analysis windows as their frames arrive, keeping only the frames still needed.
struct WindowMaker<'a> {
    tagger: &'a Tagger,
    /// Frame columns per source, from absolute frame `first` on.
    columns: Vec<VecDeque<Vec<f32>>>,
    first: usize,
    /// Frames known so far.
    frames: usize,
    starts: Vec<usize>,
}

impl<'a> WindowMaker<'a> {
    fn new(tagger: &'a Tagger, sources: usize) -> Self {
        Self {
            tagger,
            columns: vec![VecDeque::new(); sources],
            first: 0,
            frames: 0,
            starts: Vec::new(),
        }
    }

    /// The inputs of every window whose frames are all known (at the end: every remaining
    /// window of [`Windowing::starts`]); their starts go to `starts`.
    fn ready(&mut self, at_end: bool) -> Vec<Vec<f32>> {
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
        let out: Vec<Vec<f32>> = ready.iter().map(|&s| self.input(s)).collect();
        self.starts.extend(ready);
        // Keep the frames of the next regular window and of a final window at the end.
        let keep_from = (self.starts.len() * w.hop).min(self.frames.saturating_sub(w.length));
        while self.first < keep_from {
            for c in &mut self.columns {
                c.pop_front();
            }
            self.first += 1;
        }
        out
    }

    /// The window starting at frame `start`, padded with silence past the last frame.
    fn input(&self, start: usize) -> Vec<f32> {
        let t = self.tagger;
        let len = t.windowing.length;
        let n_mels = t.config.features.n_mels;
        let silence = t.config.features.silence();
        let mut x = vec![0.0; 3 * len * n_mels];
        let (columns, first, frames) = (&self.columns, self.first, self.frames);
        t.config.channels.fill_planes(&mut x, |k, dst| {
            for (i, row) in dst.chunks_mut(n_mels).enumerate() {
                match start + i {
                    f if f < frames => row.copy_from_slice(&columns[k][f - first]),
                    _ => row.fill(silence),
                }
            }
        });
        x
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

/// A tag file that grows one flushed record per file, so a run that dies loses at most the record
/// it was writing; reopened with `resume`, it says which files are done. JSON lines, or CSV (one
/// row per file: path, size, mtime_ns, duration_s, error, predominant, one score per class; no
/// timeline) when the name ends in `.csv`.
pub struct TagLog {
    file: std::fs::File,
    path: PathBuf,
    /// The class order of CSV rows; `None` for JSON lines.
    csv: Option<Vec<String>>,
}

impl TagLog {
    /// Opens `path` for a new run (it must not exist) or, with `resume`, to go on: a last record
    /// cut off by a crash is removed, and the (path, stamp) pairs already there are returned.
    pub fn open(
        path: &Path,
        resume: bool,
        classes: &[String],
    ) -> std::io::Result<(Self, std::collections::HashSet<(PathBuf, FileStamp)>)> {
        use std::io::Write as _;
        let at = crate::util::io_at(path);
        let invalid = |why: String| {
            at(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an instrec tag file ({why})"),
            ))
        };
        let csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            .then(|| classes.to_vec());
        let header = csv.as_ref().map(|c| csv_header(c));
        let mut done = std::collections::HashSet::new();
        let mut fresh = true;
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
            let (records, complete) = split_records(&bytes, csv.is_some());
            for (k, r) in records.iter().enumerate() {
                match &header {
                    Some(h) if k == 0 => {
                        if *r != h.as_bytes() {
                            return Err(invalid("its CSV header is not this model's".into()));
                        }
                    }
                    Some(_) => {
                        let f = csv_fields(r);
                        let size = f.get(1).and_then(|v| v.parse::<u64>().ok());
                        let mtime = f.get(2).and_then(|v| v.parse::<i64>().ok());
                        let (Some(p), Some(size), Some(mtime_ns)) = (f.first(), size, mtime) else {
                            return Err(invalid(format!("row {}", k + 1)));
                        };
                        done.insert((PathBuf::from(p), FileStamp { size, mtime_ns }));
                    }
                    None => {
                        let l: TagLine =
                            serde_json::from_slice(r).map_err(|e| invalid(e.to_string()))?;
                        done.insert((l.path, l.stamp));
                    }
                }
            }
            fresh = records.is_empty();
            if complete < bytes.len() {
                // The record a crash cut off: dropped, its file is tagged again.
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
        if let (true, Some(h)) = (fresh, &header) {
            file.write_all(format!("{h}\n").as_bytes()).map_err(&at)?;
        }
        file.flush().map_err(&at)?;
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
                csv,
            },
            done,
        ))
    }

    /// Appends one record and flushes it to the file.
    pub fn write(&mut self, line: &TagLine) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut bytes = match &self.csv {
            Some(classes) => csv_row(line, classes).into_bytes(),
            None => serde_json::to_vec(line).map_err(std::io::Error::other)?,
        };
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .map_err(crate::util::io_at(&self.path))
    }
}

fn csv_header(classes: &[String]) -> String {
    format!(
        "path,size,mtime_ns,duration_s,error,predominant,{}",
        classes.join(",")
    )
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row(l: &TagLine, classes: &[String]) -> String {
    let mut f = vec![
        csv_quote(&l.path.to_string_lossy()),
        l.stamp.size.to_string(),
        l.stamp.mtime_ns.to_string(),
        l.duration_s.map_or(String::new(), |d| format!("{d:.3}")),
        csv_quote(l.error.as_deref().unwrap_or("")),
        csv_quote(
            &l.predominant
                .iter()
                .flatten()
                .map(|(c, s)| format!("{c}:{s:.4}"))
                .collect::<Vec<_>>()
                .join(";"),
        ),
    ];
    f.extend(classes.iter().map(|c| {
        l.scores
            .as_ref()
            .and_then(|s| s.get(c))
            .map_or(String::new(), |v| format!("{v:.4}"))
    }));
    f.join(",")
}

/// The complete records of a tag file (a CSV record may hold quoted line breaks) and the length
/// they cover; what follows the last record's end is a record cut off.
fn split_records(bytes: &[u8], csv: bool) -> (Vec<&[u8]>, usize) {
    let (mut records, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' if csv => quoted = !quoted,
            b'\n' if !quoted => {
                if i > start {
                    records.push(&bytes[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    (records, start)
}

/// The fields of one CSV record.
fn csv_fields(record: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(record);
    let (mut fields, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// The header of `tag --format csv` (one row per window).
pub fn window_csv_header(classes: &[String]) -> String {
    format!("file,start_s,end_s,{}", classes.join(","))
}

/// `tag --format json`: the classes, thresholds, each file's result and the failures.
pub fn json_report(
    tagger: &Tagger,
    results: &[TagResult],
    failures: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "classes": tagger.config.classes,
        "thresholds": tagger.thresholds,
        "files": results,
        "failures": failures,
    })
}

/// Where `--timeline OUT.png` puts a file's plot: `OUT.png` itself for one file, else
/// `OUT-STEM.png` per file.
pub fn timeline_path(out: &Path, file: &Path, many: bool) -> PathBuf {
    if !many {
        return out.to_path_buf();
    }
    let stem = file
        .file_stem()
        .map_or("clip".into(), |s| s.to_string_lossy().into_owned());
    let base = out
        .file_stem()
        .map_or("timeline".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{base}-{stem}.png"))
}

/// How `tag DIR --out FILE` tags a library.
#[derive(Debug, Clone)]
pub struct LibraryOptions {
    /// `.jsonl` (one JSON line per file) or `.csv` (one row per file).
    pub out: PathBuf,
    /// Go on with an existing output, skipping the files already in it unchanged.
    pub resume: bool,
    /// Only part `k` of `n` of the file list.
    pub shard: Option<(usize, usize)>,
    /// Each line carries the per-window timeline.
    pub timeline: bool,
    /// Decoding threads.
    pub threads: usize,
}

/// How a library run went.
#[derive(Debug, Clone, Default)]
pub struct LibrarySummary {
    /// Files tagged now (failures included), and files found finished in the output.
    pub attempted: usize,
    pub skipped: usize,
    pub audio_s: f64,
    pub seconds: f64,
    /// One line per file that could not be tagged.
    pub failures: Vec<String>,
}

impl LibrarySummary {
    pub fn text(&self, out: &Path) -> String {
        format!(
            "{} files tagged into {} ({} already there), {:.2} h of audio at {:.0} audio-s/s, {} failed",
            self.attempted - self.failures.len(),
            out.display(),
            self.skipped,
            self.audio_s / 3600.0,
            self.audio_s / self.seconds.max(1e-9),
            self.failures.len()
        )
    }
}

/// Where a library run is, after each file.
#[derive(Debug, Clone, Copy)]
pub struct LibraryProgress<'a> {
    pub done: usize,
    pub of: usize,
    /// Audio seconds tagged so far.
    pub audio_s: f64,
    /// This file's error, when it failed.
    pub failure: Option<&'a str>,
}

/// Tags `files` into `opts.out`, one line per file as each is done; with `opts.resume`, files
/// already there with the same size and mtime are skipped. `progress` follows each file. A failed file is recorded and the run goes on; an
/// output that cannot be written ends it.
pub fn tag_library(
    tagger: &Tagger,
    files: Vec<PathBuf>,
    opts: &LibraryOptions,
    progress: &mut dyn FnMut(LibraryProgress),
) -> std::io::Result<LibrarySummary> {
    let start = std::time::Instant::now();
    let files = match opts.shard {
        Some((k, n)) => shard(files, k, n),
        None => files,
    };
    let (mut log, done) = TagLog::open(&opts.out, opts.resume, &tagger.config.classes)?;
    // Each file's stamp, taken once: it decides the skip and goes into the file's record.
    let mut stamps = std::collections::HashMap::new();
    let todo: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| {
            let stamp = FileStamp::of(f);
            let finished = stamp.is_some_and(|s| done.contains(&(f.clone(), s)));
            let zero = FileStamp {
                size: 0,
                mtime_ns: 0,
            };
            stamps.insert(f.clone(), stamp.unwrap_or(zero));
            !finished
        })
        .collect();
    let mut summary = LibrarySummary {
        attempted: todo.len(),
        skipped: done.len(),
        ..Default::default()
    };
    let mut write_error = None;
    let mut finished = 0;
    tagger.tag_many(&todo, opts.threads, &mut |f, r| {
        let stamp = stamps[f];
        let mut failure = None;
        let line = match r {
            Ok(r) => {
                summary.audio_s += r.duration_s;
                TagLine::result(&r, &tagger.config.classes, stamp, opts.timeline)
            }
            Err(e) => {
                failure = Some(e.to_string());
                TagLine::failure(f, stamp, e.reason)
            }
        };
        if let Err(e) = log.write(&line) {
            write_error.get_or_insert(e);
        }
        finished += 1;
        progress(LibraryProgress {
            done: finished,
            of: todo.len(),
            audio_s: summary.audio_s,
            failure: failure.as_deref(),
        });
        summary.failures.extend(failure);
    });
    if let Some(e) = write_error {
        return Err(e);
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
