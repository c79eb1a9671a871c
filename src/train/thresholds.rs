//! Thresholds chosen at the end of a run, on validation data only: the single validation clips
//! and seeded mixtures of them, for s1 and for s2.

use std::path::Path;

use burn::tensor::Device;

use crate::data::mix::{self, CalibrationConfig};
use crate::error::Result;
use crate::eval::metrics::{self, Aggregation};
use crate::eval::score_windows;
use crate::features::{ClipFeatures, FeatureSettings, Windowing};
use crate::model::Model;
use crate::model::bundle::{
    BundleConfig, MixtureThresholds, Thresholds, load_bundle, write_config,
};

use super::data::{RunData, load_validation_clips};
use super::observer::Observer;

/// Every clip's window scores (analysis windows, as test clips are scored).
fn score_clips(
    model: &Model,
    clips: &[(ClipFeatures, Vec<usize>)],
    device: &Device,
    batch_size: usize,
) -> Vec<Vec<Vec<f32>>> {
    clips
        .iter()
        .map(|(f, _)| score_windows(model, f, Windowing::analysis(), device, batch_size))
        .collect()
}

/// The best global and per-class thresholds for clips' window scores under an aggregation.
fn best_thresholds(
    windows: &[Vec<Vec<f32>>],
    clips: &[(ClipFeatures, Vec<usize>)],
    aggregation: Aggregation,
) -> (f32, Vec<f32>) {
    let n = crate::CLASSES.len();
    let scores: Vec<Vec<f32>> = windows
        .iter()
        .map(|w| metrics::aggregate(w, aggregation))
        .collect();
    let labels: Vec<Vec<usize>> = clips.iter().map(|(_, l)| l.clone()).collect();
    let (global, _) = metrics::best_global_threshold(&scores, &labels, n);
    let per_class = metrics::best_per_class_thresholds(&scores, &labels, n, global);
    (global, per_class)
}

/// The seeded calibration examples of `calibration`, built from the validation clips only.
pub fn calibration_clips(
    data: &RunData,
    calibration: &CalibrationConfig,
    seed: u64,
) -> Vec<(ClipFeatures, Vec<usize>)> {
    let offset = FeatureSettings::default().log_offset;
    mix::calibration_set(&data.valid_info, calibration, seed)
        .into_iter()
        .map(|mut m| {
            let parts: Vec<&ClipFeatures> =
                m.sources.iter().map(|&(c, _)| &data.valid[c].0).collect();
            if calibration.match_level {
                // Over the frames the mixture keeps: the shortest source's.
                let frames = parts.iter().map(|c| c.frames()).min().unwrap_or(0);
                mix::match_mixture(&mut m, |c| &data.valid[c].0, frames, offset);
            }
            (mix::mix_clips(&parts, &m.weights, offset), m.labels.clone())
        })
        .collect()
}

/// Thresholds for s1 and for s2, each tuned on the single validation clips and on the validation
/// mixtures of `calibration`.
pub fn tune_all_thresholds(
    model: &Model,
    data: &RunData,
    calibration: &CalibrationConfig,
    seed: u64,
    device: &Device,
    batch_size: usize,
) -> (Thresholds, Thresholds) {
    let mixtures = calibration_clips(data, calibration, seed);
    let single_windows = score_clips(model, &data.valid, device, batch_size);
    let mixture_windows = score_clips(model, &mixtures, device, batch_size);
    let tune = |aggregation| {
        let (global, per_class) = best_thresholds(&single_windows, &data.valid, aggregation);
        let (m_global, m_per_class) = best_thresholds(&mixture_windows, &mixtures, aggregation);
        Thresholds {
            global,
            per_class: Some(per_class),
            source: "validation-tuned".into(),
            mixture: Some(MixtureThresholds {
                global: m_global,
                per_class: m_per_class,
                calibration: calibration.clone(),
                seed,
            }),
        }
    };
    (tune(Aggregation::S1), tune(Aggregation::S2))
}

/// Re-tunes every threshold of the bundle in `dir` (s1 and s2; clips and `calibration`'s
/// mixtures) on the training clips of the corpus in `corpus`, e.g. rendered from sample libraries
/// the model never heard (`pack --calibrate-on`); the bundle then names that corpus and its
/// libraries as its validation data. The weights are not touched.
pub fn recalibrate(
    dir: &Path,
    corpus: &Path,
    calibration: &CalibrationConfig,
    seed: u64,
    cache_dir: &Path,
    device: &Device,
    obs: &dyn Observer,
) -> Result<BundleConfig> {
    calibration.check()?;
    let (model, mut config) = load_bundle(dir, device)?;
    let data = load_validation_clips(corpus, config.channels, cache_dir, obs)?;
    obs.message(&format!(
        "tuning thresholds on {} clips of {} and on {} mixtures of them",
        data.valid.len(),
        corpus.display(),
        calibration.mixtures
    ));
    let folded = model.fold_batchnorm();
    let (s1, s2) = tune_all_thresholds(
        &folded,
        &data,
        calibration,
        seed,
        device,
        super::PAPER.batch_size,
    );
    config.thresholds = s1;
    config.thresholds_s2 = Some(s2);
    config.provenance.validation = Some(corpus.display().to_string());
    config.provenance.validation_sources = crate::data::synth::library_records(corpus);
    write_config(dir, &config)?;
    Ok(config)
}
