//! A run's data: the training set split into training and validation clips, their features
//! from the cache, and batches of (possibly mixed) windows as tensors.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::data::mix::{self, Mixture, SourceInfo};
use crate::data::spec_augment::{self, SpecAugmentConfig};
use crate::data::{Irmas, Split, cache, split_validation};
use crate::error::{Result, fail};
use crate::features::{ChannelMode, ClipFeatures, FeatureSettings, Windowing};
use crate::util::Rng;
use crate::walk::WalkOptions;

use super::config::TrainConfig;
use super::observer::Observer;

/// A window of a clip: (index into the clip list, start frame).
pub(super) type WindowRef = (usize, usize);

/// The data a run needs, read from the feature cache.
pub struct RunData {
    /// Clip features and label sets of the training and validation clips.
    pub train: Vec<(ClipFeatures, Vec<usize>)>,
    pub valid: Vec<(ClipFeatures, Vec<usize>)>,
    /// The files of `train` and `valid`, in the same order (to name them in errors).
    pub train_paths: Vec<PathBuf>,
    pub valid_paths: Vec<PathBuf>,
    /// Instrument and tags of each clip of `train` and `valid`, for choosing mixture partners.
    pub train_info: Vec<SourceInfo>,
    pub valid_info: Vec<SourceInfo>,
}

/// Reads the data set, splits it (or takes the validation clips from `config.val_data`) and
/// loads (or builds) the feature cache.
pub fn load_run_data(config: &TrainConfig, obs: &dyn Observer) -> Result<RunData> {
    let set = read_training_clips(&config.data, config.walk(), obs)?;
    let split = match &config.val_data {
        // Every clip trains: validation is another corpus (e.g. libraries left out of training).
        Some(_) => Split {
            train: (0..set.train.len()).collect(),
            valid: Vec::new(),
        },
        None => split_validation(
            &set.train,
            config.recipe.val_fraction,
            config.seed,
            config.recipe.split,
        ),
    };
    let mut features = load_features(&set, config.channels, &config.cache_dir, obs)?;
    let chords = chord_labels(&config.data, config.label_chords)?;
    let (train, train_meta) = take_clips(&set, &split.train, &mut features, &chords);
    let (valid, valid_meta) = match &config.val_data {
        Some(dir) => {
            let vset = read_training_clips(dir, config.walk(), obs)?;
            // Compared as canonical paths: the same corpus may be named two ways.
            let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.into());
            let trained: std::collections::HashSet<PathBuf> =
                set.train.iter().map(|c| canonical(&c.path)).collect();
            if let Some(c) = vset
                .train
                .iter()
                .find(|c| trained.contains(&canonical(&c.path)))
            {
                fail!(
                    "--val-data {}: {} is a training clip too; validation needs clips the run does not train on",
                    dir.display(),
                    c.path.display()
                );
            }
            let mut vfeatures = load_features(&vset, config.channels, &config.cache_dir, obs)?;
            let all: Vec<usize> = (0..vset.train.len()).collect();
            let vchords = chord_labels(dir, config.label_chords)?;
            take_clips(&vset, &all, &mut vfeatures, &vchords)
        }
        None => take_clips(&set, &split.valid, &mut features, &chords),
    };
    let (train_paths, train_info): (Vec<PathBuf>, Vec<SourceInfo>) = train_meta.into_iter().unzip();
    let (valid_paths, valid_info): (Vec<PathBuf>, Vec<SourceInfo>) = valid_meta.into_iter().unzip();
    if config.label_chords {
        let labelled = |info: &[SourceInfo]| info.iter().filter(|i| !i.also.is_empty()).count();
        obs.message(&format!(
            "--label-chords: {} of {} training and {} of {} validation clips also labelled with their chords' instrument",
            labelled(&train_info),
            train_info.len(),
            labelled(&valid_info),
            valid_info.len()
        ));
    }
    if train.is_empty() || valid.is_empty() {
        fail!(
            "{}: too few training clips for a validation split ({} train, {} validation)",
            config.val_data.as_ref().unwrap_or(&config.data).display(),
            train.len(),
            valid.len()
        );
    }
    Ok(RunData {
        train,
        valid,
        train_paths,
        valid_paths,
        train_info,
        valid_info,
    })
}

/// Every training clip of the corpus in `dir` as validation data, with no training clips
/// (`pack --calibrate-on` tunes a bundle's thresholds on them).
pub fn load_validation_clips(
    dir: &Path,
    channels: ChannelMode,
    cache_dir: &Path,
    obs: &dyn Observer,
) -> Result<RunData> {
    let set = read_training_clips(dir, WalkOptions::default(), obs)?;
    let mut features = load_features(&set, channels, cache_dir, obs)?;
    let all: Vec<usize> = (0..set.train.len()).collect();
    let (valid, meta) = take_clips(&set, &all, &mut features, &ChordLabels::default());
    if valid.is_empty() {
        fail!("{}: no usable training clips", dir.display());
    }
    let (valid_paths, valid_info) = meta.into_iter().unzip();
    Ok(RunData {
        train: Vec::new(),
        valid,
        train_paths: Vec::new(),
        valid_paths,
        train_info: Vec::new(),
        valid_info,
    })
}

/// An IRMAS-layout data set's training clips (warnings go to the observer).
fn read_training_clips(dir: &Path, walk: WalkOptions, obs: &dyn Observer) -> Result<Irmas> {
    let set = Irmas::read_with(dir, walk)?;
    for i in &set.issues {
        obs.message(&format!("warning: {i}"));
    }
    if set.train.is_empty() {
        fail!("{}: no training clips", dir.display());
    }
    Ok(set)
}

/// The class of each corpus file's chords (`--label-chords`), keyed by the file's path.
#[derive(Default)]
struct ChordLabels {
    dir: PathBuf,
    classes: std::collections::HashMap<String, usize>,
}

impl ChordLabels {
    /// The chord class of a clip, if it has one to label.
    fn of(&self, path: &Path) -> Option<usize> {
        let rel = path.strip_prefix(&self.dir).ok()?;
        self.classes.get(&*rel.to_string_lossy()).copied()
    }
}

/// The chord classes of the corpus in `dir` when `wanted` (else none).
fn chord_labels(dir: &Path, wanted: bool) -> Result<ChordLabels> {
    if !wanted {
        return Ok(ChordLabels::default());
    }
    Ok(ChordLabels {
        dir: dir.to_path_buf(),
        classes: crate::data::synth::chord_classes(dir)?,
    })
}

/// Clips with their labels, and their files with instrument and tags (for mixture partners).
type Picked = (Vec<(ClipFeatures, Vec<usize>)>, Vec<(PathBuf, SourceInfo)>);

/// The features of a data set's training clips, from the cache (built where missing, for its
/// test clips too); clips whose audio fails are skipped with a warning.
fn load_features(
    set: &Irmas,
    channels: ChannelMode,
    cache_dir: &Path,
    obs: &dyn Observer,
) -> Result<cache::FeatureCache> {
    let files = set.all_files();
    obs.message(&format!(
        "features for {} clips (cached after the first run)",
        files.len()
    ));
    // Only the training clips' features are held in memory.
    let wanted: std::collections::HashSet<&Path> =
        set.train.iter().map(|c| c.path.as_path()).collect();
    let (features, _) = cache::prepare_subset(
        &files,
        &FeatureSettings::default(),
        channels,
        cache_dir,
        &|_, _| {},
        &|p| wanted.contains(p),
    )?;
    for f in &features.failures {
        obs.message(&format!("warning: skipped {f}"));
    }
    Ok(features)
}

/// The training clips `idx` of `set` with their labels (and their chords' class, where
/// `chords` has one), files and tags, moved out of the cache's features, not copied: training
/// holds each clip's features once.
fn take_clips(
    set: &Irmas,
    idx: &[usize],
    features: &mut cache::FeatureCache,
    chords: &ChordLabels,
) -> Picked {
    idx.iter()
        .filter_map(|&i| {
            let clip = &set.train[i];
            let also: Vec<usize> = chords
                .of(&clip.path)
                .filter(|&c| c != clip.label)
                .into_iter()
                .collect();
            let info = SourceInfo {
                label: clip.label,
                also,
                genre: clip.genre.clone(),
                drums: clip.drums,
            };
            let labels = info.label_set();
            features
                .take(&clip.path)
                .map(|f| ((f, labels), (clip.path.clone(), info)))
        })
        .unzip()
}

pub(super) fn windows_of(clips: &[(ClipFeatures, Vec<usize>)], w: Windowing) -> Vec<WindowRef> {
    clips
        .iter()
        .enumerate()
        .flat_map(|(i, (f, _))| w.starts(f.frames()).into_iter().map(move |s| (i, s)))
        .collect()
}

/// The inputs and targets of a batch of training examples (single windows or mixtures), each input
/// augmented in the log-mel domain when `augment` is given (training batches of `--spec-augment`).
pub(super) fn batch_tensors(
    clips: &[(ClipFeatures, Vec<usize>)],
    batch: &[Mixture],
    n_classes: usize,
    device: &Device,
    mut augment: Option<(&SpecAugmentConfig, &mut Rng)>,
) -> (Tensor<4>, Tensor<2>) {
    let settings = FeatureSettings::default();
    let len = crate::features::WINDOW_FRAMES;
    let n_mels = clips[0].0.mels[0].n_mels;
    let mut x = Vec::with_capacity(batch.len() * 3 * len * n_mels);
    let mut y = vec![0f32; batch.len() * n_classes];
    // The inputs side by side (a mixed window takes ~0.1 ms on one thread: a serial batch of
    // mixtures ran at about a GPU step's pace), then augmented in order, from one random stream.
    let inputs: Vec<Vec<f32>> = batch
        .par_iter()
        .map(|m| {
            let parts: Vec<&ClipFeatures> = m.sources.iter().map(|&(c, _)| &clips[c].0).collect();
            let starts: Vec<usize> = m.sources.iter().map(|&(_, s)| s).collect();
            mix::mixture_input(
                &parts,
                &starts,
                &m.weights,
                len,
                settings.silence(),
                settings.log_offset,
            )
        })
        .collect();
    for (b, (m, mut input)) in batch.iter().zip(inputs).enumerate() {
        if let Some((config, rng)) = augment.as_mut() {
            let mode = clips[m.sources[0].0].0.mode;
            spec_augment::augment_window(
                &mut input,
                mode,
                len,
                n_mels,
                settings.silence(),
                config,
                rng,
            );
        }
        x.extend(input);
        for &l in &m.labels {
            y[b * n_classes + l] = 1.0;
        }
    }
    (
        Tensor::from_data(TensorData::new(x, [batch.len(), 3, len, n_mels]), device),
        Tensor::from_data(TensorData::new(y, [batch.len(), n_classes]), device),
    )
}
