//! Augmentation of training windows in the log-mel domain (beyond the paper; `train
//! --spec-augment`): each window gets its own level, a random spectral colour (a tilt and two
//! broad bumps) and SpecAugment's frequency and time masks, and optionally (`--spec-warp`) its
//! frequency axis scaled, as vocal-tract-length perturbation does for speech. The corpus's
//! acoustic chain ([`super::augment`]) colours each clip once when it is rendered; this draws a
//! new colour every epoch, so the network cannot learn one clip's recording chain as its
//! instrument.

use serde::{Deserialize, Serialize};

use crate::check;
use crate::error::SettingError;
use crate::features::{self, ChannelMode, FeatureSettings};
use crate::util::Rng;

/// One decibel of power in natural-log units (the features are ln(power + 1e-6)).
const DB: f64 = std::f64::consts::LN_10 / 10.0;

/// How strongly windows are augmented (recorded in the run's config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecAugmentConfig {
    /// The window's level moves by up to ± this many dB.
    pub level_db: f64,
    /// The tilt from the lowest to the highest band, and each bump's height, up to ± this many dB.
    pub colour_db: f64,
    /// Frequency masks per window, each up to `freq_width` bands wide.
    pub freq_masks: usize,
    pub freq_width: usize,
    /// Time masks per window, each up to `time_width` frames long.
    pub time_masks: usize,
    pub time_width: usize,
    /// Every frequency is scaled by one factor per window, drawn from 1 ± this (0: none): a
    /// larger or smaller instrument body, so no library's resonances become its class.
    #[serde(default)]
    pub warp: f64,
}

impl Default for SpecAugmentConfig {
    fn default() -> Self {
        Self {
            level_db: 10.0,
            colour_db: 6.0,
            freq_masks: 2,
            freq_width: 12,
            time_masks: 2,
            time_width: 5,
            warp: 0.0,
        }
    }
}

impl SpecAugmentConfig {
    /// The flags' rules, for settings read from a run's `train.json`.
    pub fn check(&self) -> Result<(), SettingError> {
        check::db_bound("spec_augment.level_db", self.level_db)?;
        check::db_bound("spec_augment.colour_db", self.colour_db)?;
        check::masks("spec_augment.freq_masks", self.freq_masks)?;
        check::masks("spec_augment.time_masks", self.time_masks)?;
        check::within("spec_augment.freq_width", self.freq_width, 0, 128)?;
        check::within("spec_augment.time_width", self.time_width, 0, 43)?;
        check::warp("spec_augment.warp", self.warp)?;
        Ok(())
    }
}

/// Augments one model input in place: `x` is `[3, length, n_mels]` as
/// [`crate::features::ClipFeatures::input`] lays it out. The planes that carry features (all three
/// but for `zero`, whose last two stay 0) get the same change, so `dup` stays three copies.
/// Values never fall below `silence`, the log floor the front end can produce.
pub fn augment_window(
    x: &mut [f32],
    mode: ChannelMode,
    length: usize,
    n_mels: usize,
    silence: f32,
    config: &SpecAugmentConfig,
    rng: &mut Rng,
) {
    let plane = length * n_mels;
    debug_assert_eq!(x.len(), 3 * plane);
    let span = |rng: &mut Rng, db: f64| (rng.f64() * 2.0 - 1.0) * db * DB;
    // Drawn only when asked for, so that runs without it keep their random stream.
    let warp = (config.warp > 0.0).then(|| {
        let factor = 1.0 + (rng.f64() * 2.0 - 1.0) * config.warp;
        warp_sources(n_mels, factor)
    });
    // The colour: a level, a tilt across the bands, and two Gaussian bumps on the mel axis.
    let level = span(rng, config.level_db);
    let tilt = span(rng, config.colour_db);
    let bumps: Vec<(f64, f64, f64)> = (0..2)
        .map(|_| {
            let centre = rng.f64() * n_mels as f64;
            let width = 4.0 + rng.f64() * 20.0;
            (centre, width, span(rng, config.colour_db))
        })
        .collect();
    let curve: Vec<f32> = (0..n_mels)
        .map(|m| {
            let pos = if n_mels > 1 {
                m as f64 / (n_mels - 1) as f64 - 0.5
            } else {
                0.0
            };
            let bump: f64 = bumps
                .iter()
                .map(|&(c, w, g)| g * (-0.5 * ((m as f64 - c) / w).powi(2)).exp())
                .sum();
            (level + tilt * pos + bump) as f32
        })
        .collect();
    let masks = |rng: &mut Rng, count: usize, width: usize, size: usize| -> Vec<(usize, usize)> {
        (0..count)
            .map(|_| {
                let w = rng.range(0, width.min(size) + 1);
                let start = rng.range(0, size - w + 1);
                (start, start + w)
            })
            .collect()
    };
    let freq = masks(rng, config.freq_masks, config.freq_width, n_mels);
    let time = masks(rng, config.time_masks, config.time_width, length);
    let planes = if mode == ChannelMode::Zero { 1 } else { 3 };
    let mut source = vec![0f32; n_mels];
    for p in x.chunks_mut(plane).take(planes) {
        for row in p.chunks_mut(n_mels) {
            if let Some(warp) = &warp {
                source.copy_from_slice(row);
                for (v, &(i, f)) in row.iter_mut().zip(warp) {
                    *v = source[i] + (source[(i + 1).min(n_mels - 1)] - source[i]) * f;
                }
            }
            for (v, &c) in row.iter_mut().zip(&curve) {
                *v = (*v + c).max(silence);
            }
        }
        // Masked cells take the window's mean, as SpecAugment's zero is the mean of normalised input.
        let mean = (p.iter().map(|&v| v as f64).sum::<f64>() / plane as f64) as f32;
        for (t, row) in p.chunks_mut(n_mels).enumerate() {
            if time.iter().any(|&(a, b)| (a..b).contains(&t)) {
                row.fill(mean);
                continue;
            }
            for &(a, b) in &freq {
                row[a..b].fill(mean);
            }
        }
    }
}

/// For each of `n_mels` bands, the band below the frequency that `factor` moves onto its centre
/// and the fraction of the way to the next (clamped to the edge bands): the log-mels are
/// interpolated between them, so what sat at f comes out at `factor` × f.
fn warp_sources(n_mels: usize, factor: f64) -> Vec<(usize, f32)> {
    let settings = FeatureSettings {
        n_mels,
        ..FeatureSettings::default()
    };
    let top = n_mels.saturating_sub(1) as f64;
    (0..n_mels)
        .map(|m| {
            let hz = features::band_centre_hz(&settings, m as f64) / factor;
            let pos = features::band_position(&settings, hz).clamp(0.0, top);
            (pos.floor() as usize, (pos - pos.floor()) as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(length: usize, n_mels: usize) -> Vec<f32> {
        let plane: Vec<f32> = (0..length * n_mels)
            .map(|i| ((i * 37 % 101) as f32 / 10.0) - 5.0)
            .collect();
        [plane.clone(), plane.clone(), plane].concat()
    }

    /// [`augment_window`] on a `dup` window.
    fn augment_dup(
        x: &mut [f32],
        length: usize,
        n_mels: usize,
        silence: f32,
        config: &SpecAugmentConfig,
        rng: &mut Rng,
    ) {
        augment_window(x, ChannelMode::Dup, length, n_mels, silence, config, rng);
    }

    #[test]
    fn augmentation_is_seeded_and_changes_the_window() {
        let (length, n_mels, silence) = (43, 128, (1e-6f64).ln() as f32);
        let config = SpecAugmentConfig::default();
        let original = window(length, n_mels);
        let run = |seed| {
            let mut x = original.clone();
            let mut rng = Rng::new(seed);
            augment_dup(&mut x, length, n_mels, silence, &config, &mut rng);
            x
        };
        let (a, b, c) = (run(7), run(7), run(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, original);
        let plane = length * n_mels;
        assert_eq!(a[..plane], a[plane..2 * plane]);
        assert_eq!(a[..plane], a[2 * plane..]);
        assert!(a.iter().all(|v| v.is_finite() && *v >= silence));
    }

    #[test]
    fn zero_mode_keeps_its_empty_planes_and_masks_stay_in_bounds() {
        let (length, n_mels, silence) = (43, 128, -13.8f32);
        let plane = length * n_mels;
        let config = SpecAugmentConfig {
            freq_width: 500,
            time_width: 500,
            ..SpecAugmentConfig::default()
        };
        for seed in 0..50 {
            let mut x = window(length, n_mels);
            x[plane..].fill(0.0);
            augment_window(
                &mut x,
                ChannelMode::Zero,
                length,
                n_mels,
                silence,
                &config,
                &mut Rng::new(seed),
            );
            assert!(x[plane..].iter().all(|&v| v == 0.0));
            assert!(x[..plane].iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn level_and_colour_stay_within_their_bounds() {
        let (length, n_mels) = (10, 16);
        let config = SpecAugmentConfig {
            freq_masks: 0,
            time_masks: 0,
            ..SpecAugmentConfig::default()
        };
        let bound =
            ((config.level_db + config.colour_db / 2.0 + 2.0 * config.colour_db) * DB) as f32;
        for seed in 0..100 {
            let mut x = vec![0f32; 3 * length * n_mels];
            augment_window(
                &mut x,
                ChannelMode::Stereo,
                length,
                n_mels,
                -100.0,
                &config,
                &mut Rng::new(seed),
            );
            assert!(x.iter().all(|v| v.abs() <= bound + 1e-5));
            // Every frame of a plane gets the same colour.
            assert!(
                x[..length * n_mels]
                    .chunks(n_mels)
                    .all(|r| r == &x[..n_mels])
            );
        }
    }

    /// Only the warp, so that a window's content moves and nothing else changes it.
    fn warp_only(warp: f64) -> SpecAugmentConfig {
        SpecAugmentConfig {
            level_db: 0.0,
            colour_db: 0.0,
            freq_masks: 0,
            time_masks: 0,
            warp,
            ..SpecAugmentConfig::default()
        }
    }

    #[test]
    fn warp_moves_a_partial_by_its_factor_and_keeps_the_planes_alike() {
        let (length, n_mels, silence) = (4, 128, -13.8f32);
        let settings = FeatureSettings::default();
        // One partial at 1 kHz: a peak between two bands, every frame.
        let at = features::band_position(&settings, 1000.0);
        let plane: Vec<f32> = (0..length * n_mels)
            .map(|i| silence + 10.0 * (-((i % n_mels) as f64 - at).powi(2) / 2.0).exp() as f32)
            .collect();
        let x0 = [plane.clone(), plane.clone(), plane].concat();
        let config = warp_only(0.2);
        let mut moved = 0;
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let mut x = x0.clone();
            augment_dup(&mut x, length, n_mels, silence, &config, &mut rng);
            // The factor this seed drew, drawn again the same way.
            let factor = 1.0 + (Rng::new(seed).f64() * 2.0 - 1.0) * config.warp;
            let want = features::band_position(&settings, 1000.0 * factor);
            let peak = (0..n_mels).max_by(|&a, &b| x[a].total_cmp(&x[b])).unwrap();
            assert!((peak as f64 - want).abs() <= 1.0, "{peak} vs {want}");
            moved += usize::from((peak as f64 - at).abs() > 1.0);
            let p = length * n_mels;
            assert_eq!(x[..p], x[p..2 * p]);
            assert!(x.iter().all(|v| v.is_finite() && *v >= silence));
        }
        assert!(moved > 10, "the warp left the partial in place");
    }

    #[test]
    fn no_warp_draws_nothing_and_changes_nothing() {
        let (length, n_mels) = (43, 128);
        let x0 = window(length, n_mels);
        let mut x = x0.clone();
        let mut rng = Rng::new(3);
        augment_dup(&mut x, length, n_mels, -100.0, &warp_only(0.0), &mut rng);
        // The level, tilt and bumps are drawn (and are 0), the warp is not.
        let mut fresh = Rng::new(3);
        for _ in 0..8 {
            fresh.f64();
        }
        assert_eq!(rng.f64(), fresh.f64());
        assert_eq!(x, x0);
    }
}
