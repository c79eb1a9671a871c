//! A loaded model bundle that tags one file at a time, streaming.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde::Serialize;

use crate::audio::AudioStream;
use crate::error::{FileError, Reason};
use crate::eval::metrics::{Aggregation, aggregate};
use crate::eval::{score_inputs, thresholds_for};
use crate::features::{MelExtractor, MelStream, Windowing};
use crate::model::Model;
use crate::model::bundle::{BundleConfig, load_bundle};

use super::windows::{FileEnd, WindowMaker};

/// The RMS level (dBFS) below which a file is flagged quiet: 5 dB under the 5th percentile of the
/// built-in model's training clips (−25.5 dBFS); real recordings brought 20 dB below their own
/// level (−27 to −40 dBFS) lost a fifth of its correct solos (MODEL.md, "Quiet recordings").
pub const QUIET_DBFS: f64 = -30.0;

/// Where [`Tagger::with_boost_quiet`] raises a quiet file to: the median RMS of the built-in
/// model's training clips, dBFS.
pub const BOOST_TARGET_DBFS: f64 = -18.7;

/// The most [`boost_db`] raises a file: a file quieter still is mostly silence or noise, which
/// a larger gain would only make loud.
pub const BOOST_MAX_DB: f64 = 30.0;

/// The gain in dB that brings a quiet file to [`BOOST_TARGET_DBFS`] with its peak at 0 dBFS at
/// most and by [`BOOST_MAX_DB`] at most; 0 for a file at or above [`QUIET_DBFS`].
pub fn boost_db(level: crate::audio::Level) -> f64 {
    if level.rms_dbfs >= QUIET_DBFS {
        return 0.0;
    }
    (BOOST_TARGET_DBFS - level.rms_dbfs)
        .min(-level.peak_dbfs)
        .clamp(0.0, BOOST_MAX_DB)
}

/// One analysis window's scores.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WindowScores {
    pub start_s: f64,
    pub end_s: f64,
    pub scores: Vec<f32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagResult {
    #[serde(with = "crate::util::path_json")]
    pub path: PathBuf,
    pub duration_s: f64,
    /// RMS level of the file as the model takes it (mono mean, or the first channel it takes),
    /// dBFS, before any gain; below [`QUIET_DBFS`] the built-in model hears worse (MODEL.md,
    /// "Quiet recordings").
    pub level_dbfs: f64,
    /// The gain applied before tagging, dB ([`Tagger::with_boost_quiet`]; else 0).
    pub gain_db: f64,
    /// Aggregated score per class, in the order of the bundle's classes.
    pub scores: Vec<f32>,
    /// The classes at or above their threshold, best first.
    pub predominant: Vec<(String, f32)>,
    pub timeline: Vec<WindowScores>,
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

/// A bundle's thresholds for an aggregation when nothing else is asked for: calibrated on
/// mixtures when it has them, else tuned per class on clips, else its global one.
fn default_thresholds(config: &BundleConfig, how: Aggregation) -> Vec<f32> {
    let set = thresholds_for(config, how);
    let n = config.classes.len();
    [TunedOn::Mixtures, TunedOn::ClipsPerClass]
        .into_iter()
        .find_map(|which| tuned(set, n, which).ok())
        .unwrap_or_else(|| vec![set.global; n])
}

/// A bundle's thresholds of one kind, for `n` classes; an error names what the bundle lacks.
fn tuned(
    t: &crate::model::bundle::Thresholds,
    n: usize,
    which: TunedOn,
) -> Result<Vec<f32>, Reason> {
    let missing = |what: &str| {
        Reason(format!(
            "the bundle has no thresholds {what} (trained before they existed, or not tuned)"
        ))
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
    /// Whether a quiet file is raised by [`boost_db`] and tagged again (on by default).
    pub boost_quiet: bool,
}

impl Tagger {
    /// Loads a bundle. Music usually has several predominant instruments, so the thresholds are
    /// the bundle's global one calibrated on validation mixtures when it has one (the most
    /// accurate on multi-instrument test clips in `experiments/mixing.toml`); else its per-class
    /// ones tuned on validation clips; else its global one.
    pub fn load(model_dir: &Path, device: &Device) -> Result<Self, FileError> {
        let (model, config) = load_bundle(model_dir, device)?;
        Ok(Self::new(model, config, device))
    }

    /// The built-in model ([`crate::model::default`]), as [`Tagger::load`] sets a bundle up.
    pub fn load_default(device: &Device) -> Result<Self, FileError> {
        let (model, config) = crate::model::default::load(device)?;
        Ok(Self::new(model, config, device))
    }

    /// A bundle (`dir`), else the built-in model.
    pub fn load_or_default(dir: Option<&Path>, device: &Device) -> Result<Self, FileError> {
        match dir {
            Some(d) => Self::load(d, device),
            None => Self::load_default(device),
        }
    }

    fn new(model: Model, config: BundleConfig, device: &Device) -> Self {
        let model = model.fold_batchnorm();
        let aggregation = config.aggregation.unwrap_or_default();
        Self {
            extractor: MelExtractor::new(config.features.clone()),
            model,
            thresholds: default_thresholds(&config, aggregation),
            config,
            device: device.clone(),
            windowing: Windowing::analysis(),
            aggregation,
            batch_size: 64,
            boost_quiet: true,
        }
    }

    /// Aggregates with `how`, and applies the bundle's default thresholds for it.
    pub fn with_aggregation(mut self, how: Aggregation) -> Self {
        self.aggregation = how;
        self.thresholds = default_thresholds(&self.config, how);
        self
    }

    /// Uses the bundle's thresholds of one kind; an error names what the bundle lacks.
    pub fn with_tuned(mut self, which: TunedOn) -> Result<Self, Reason> {
        let set = thresholds_for(&self.config, self.aggregation);
        self.thresholds = tuned(set, self.config.classes.len(), which)?;
        Ok(self)
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether each quiet file (below [`QUIET_DBFS`]) is raised by [`boost_db`] (on by default).
    /// A file's level is known only once it is decoded, so a quiet one is decoded and scored a
    /// second time with the gain; a file at a usual level costs nothing more.
    pub fn with_boost_quiet(mut self, on: bool) -> Self {
        self.boost_quiet = on;
        self
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
    pub fn tag_file(&self, path: &Path) -> Result<TagResult, FileError> {
        let (end, scores) = self.scored(path, 0.0)?;
        match self.boost_for(&end) {
            Some(gain_db) => {
                let (end, scores) = self.scored(path, gain_db)?;
                Ok(self.result(path, &end, scores))
            }
            None => Ok(self.result(path, &end, scores)),
        }
    }

    /// [`Tagger::windows_of`] with every window scored, in batches as they arrive.
    fn scored(&self, path: &Path, gain_db: f64) -> Result<(FileEnd, Vec<Vec<f32>>), FileError> {
        let mut windows: Vec<Vec<f32>> = Vec::new();
        let mut scores = Vec::new();
        let end = self.windows_of(path, gain_db, &mut |w| {
            windows.extend(w);
            if windows.len() >= self.batch_size {
                scores.extend(self.score(windows.drain(..)));
            }
        })?;
        scores.extend(self.score(windows.into_iter()));
        Ok((end, scores))
    }

    /// The gain for tagging a file again, when it was tagged without one, is quiet and
    /// [`Tagger::boost_quiet`] is on.
    pub(super) fn boost_for(&self, end: &FileEnd) -> Option<f64> {
        if end.gain_db != 0.0 {
            return None;
        }
        self.boost_at(|| crate::audio::Level {
            rms_dbfs: end.level_dbfs,
            peak_dbfs: end.peak_dbfs,
        })
    }

    /// The gain a recording at `level` is raised by before it is scored, when it is quiet and
    /// [`Tagger::boost_quiet`] is on (the level is measured only then).
    pub(super) fn boost_at(&self, level: impl FnOnce() -> crate::audio::Level) -> Option<f64> {
        if !self.boost_quiet {
            return None;
        }
        let gain_db = boost_db(level());
        (gain_db > 0.0).then_some(gain_db)
    }

    /// Decodes a file and makes its analysis windows as their frames arrive, handing them to
    /// `emit` in order as 3 × length × n_mels inputs; only the frames of windows still to come
    /// are held. Returns what the file's result needs besides the scores (the windows' starts).
    pub(super) fn windows_of(
        &self,
        path: &Path,
        gain_db: f64,
        emit: &mut dyn FnMut(Vec<Vec<f32>>),
    ) -> Result<FileEnd, FileError> {
        // The CLI checks these too; a library caller gets an error, not a panic or a hang.
        crate::check::hop("hop", self.windowing.hop)
            .and_then(|_| crate::check::batch("batch_size", self.batch_size))
            .map_err(|e| FileError::at(path, e))?;
        let settings = &self.config.features;
        let sources = self.config.channels.sources();
        let mut stream = MelStream::new(AudioStream::open(path)?, sources, &self.extractor)
            .with_gain(10f64.powf(gain_db / 20.0) as f32);
        let mut maker = WindowMaker::new(self.windowing, settings, self.config.channels);
        while let Some(columns) = stream.next_columns()? {
            for (k, c) in columns.into_iter().enumerate() {
                maker.columns[k].extend(c);
            }
            maker.frames = stream.frames();
            emit(maker.ready(false));
        }
        let duration_s = stream.samples() as f64 / stream.sample_rate() as f64;
        crate::features::check_clip_frames(maker.frames, duration_s, settings)
            .map_err(|reason| FileError::new(path.display().to_string(), reason))?;
        emit(maker.ready(true));
        Ok(FileEnd {
            duration_s,
            level_dbfs: (stream.level_dbfs() - gain_db).max(crate::audio::LEVEL_FLOOR_DBFS),
            peak_dbfs: (stream.peak_dbfs() - gain_db).max(crate::audio::LEVEL_FLOOR_DBFS),
            gain_db,
            starts: maker.starts,
        })
    }

    /// Sigmoid scores of window inputs, one forward pass.
    pub(super) fn score(&self, windows: impl Iterator<Item = Vec<f32>>) -> Vec<Vec<f32>> {
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

    /// The classes whose clip score is at or above their threshold, with the score, best first.
    pub fn predominant(&self, scores: &[f32]) -> Vec<(String, f32)> {
        let mut p: Vec<(String, f32)> = scores
            .iter()
            .enumerate()
            .filter(|&(k, &s)| s >= self.thresholds[k])
            .map(|(k, &s)| (self.config.classes[k].clone(), s))
            .collect();
        p.sort_by(|a, b| b.1.total_cmp(&a.1));
        p
    }

    /// A file's result from its window scores.
    pub(super) fn result(&self, path: &Path, end: &FileEnd, windows: Vec<Vec<f32>>) -> TagResult {
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
        let predominant = self.predominant(&scores);
        TagResult {
            path: path.to_path_buf(),
            duration_s: end.duration_s,
            level_dbfs: end.level_dbfs,
            gain_db: end.gain_db,
            scores,
            predominant,
            timeline,
        }
    }
}
