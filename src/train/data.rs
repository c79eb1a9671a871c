//! A run's data: the training set split into training and validation clips, their features
//! from the cache, and batches of (possibly mixed) windows as tensors.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use crate::data::mix::{self, Mixture, SourceInfo};
use crate::data::{Irmas, cache, split_validation};
use crate::error::{Result, fail};
use crate::features::{ClipFeatures, FeatureSettings, Windowing};

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

/// Reads the data set, splits it and loads (or builds) the feature cache.
pub fn load_run_data(config: &TrainConfig, obs: &dyn Observer) -> Result<RunData> {
    let set = Irmas::read(&config.data)?;
    for i in &set.issues {
        obs.message(&format!("warning: {i}"));
    }
    if set.train.is_empty() {
        fail!("{}: no training clips", config.data.display());
    }
    let files = set.all_files();
    obs.message(&format!(
        "features for {} clips (cached after the first run)",
        files.len()
    ));
    // Only the training clips' features are held in memory.
    let wanted: std::collections::HashSet<&Path> =
        set.train.iter().map(|c| c.path.as_path()).collect();
    let (mut features, _) = cache::prepare_subset(
        &files,
        &FeatureSettings::default(),
        config.channels,
        &config.cache_dir,
        &|_, _| {},
        &|p| wanted.contains(p),
    )?;
    for f in &features.failures {
        obs.message(&format!("warning: skipped {f}"));
    }
    let split = split_validation(
        &set.train,
        config.recipe.val_fraction,
        config.seed,
        config.recipe.split,
    );
    // Moved out of the cache, not copied: training holds each clip's features once.
    type Picked = (Vec<(ClipFeatures, Vec<usize>)>, Vec<(PathBuf, SourceInfo)>);
    let mut pick = |idx: &[usize]| -> Picked {
        idx.iter()
            .filter_map(|&i| {
                let clip = &set.train[i];
                let info = SourceInfo {
                    label: clip.label,
                    genre: clip.genre.clone(),
                    drums: clip.drums,
                };
                features
                    .take(&clip.path)
                    .map(|f| ((f, vec![clip.label]), (clip.path.clone(), info)))
            })
            .unzip()
    };
    let (train, train_meta) = pick(&split.train);
    let (valid, valid_meta) = pick(&split.valid);
    let (train_paths, train_info) = train_meta.into_iter().unzip();
    let (valid_paths, valid_info) = valid_meta.into_iter().unzip();
    if train.is_empty() || valid.is_empty() {
        fail!(
            "{}: too few training clips for a validation split ({} train, {} validation)",
            config.data.display(),
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

pub(super) fn windows_of(clips: &[(ClipFeatures, Vec<usize>)], w: Windowing) -> Vec<WindowRef> {
    clips
        .iter()
        .enumerate()
        .flat_map(|(i, (f, _))| w.starts(f.frames()).into_iter().map(move |s| (i, s)))
        .collect()
}

/// The inputs and targets of a batch of training examples (single windows or mixtures).
pub(super) fn batch_tensors(
    clips: &[(ClipFeatures, Vec<usize>)],
    batch: &[Mixture],
    n_classes: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<2>) {
    let settings = FeatureSettings::default();
    let len = crate::features::WINDOW_FRAMES;
    let n_mels = clips[0].0.mels[0].n_mels;
    let mut x = Vec::with_capacity(batch.len() * 3 * len * n_mels);
    let mut y = vec![0f32; batch.len() * n_classes];
    for (b, m) in batch.iter().enumerate() {
        let parts: Vec<&ClipFeatures> = m.sources.iter().map(|&(c, _)| &clips[c].0).collect();
        let starts: Vec<usize> = m.sources.iter().map(|&(_, s)| s).collect();
        x.extend(mix::mixture_input(
            &parts,
            &starts,
            &m.weights,
            len,
            settings.silence(),
            settings.log_offset,
        ));
        for &l in &m.labels {
            y[b * n_classes + l] = 1.0;
        }
    }
    (
        Tensor::from_data(TensorData::new(x, [batch.len(), 3, len, n_mels]), device),
        Tensor::from_data(TensorData::new(y, [batch.len(), n_classes]), device),
    )
}
