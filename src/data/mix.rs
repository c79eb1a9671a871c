//! Mixtures of single-instrument clips (beyond the paper, opt-in): mixing augmentation for
//! training (`--mix`) and the seeded validation mixtures that thresholds are calibrated on.
//!
//! IRMAS trains on clips with one predominant instrument and tests on music with one to three, so
//! a threshold tuned on single clips is far too high for the test set. Mixing happens in the
//! power-mel domain, on cached log-mels: a log-mel is `ln(P + ε)`, and a mixture with power
//! weights `w_i` is `ln(Σ w_i (e^{x_i} − ε) + ε)`, the log-mel of the summed mel power. It differs
//! from the log-mel of the summed waveforms only by the sources' cross terms (zero on average for
//! unrelated sources), and it needs no audio: the feature cache stays the only input.

use serde::{Deserialize, Serialize};

use crate::features::ClipFeatures;
use crate::util::Rng;

/// Which clips may join a training window in a mixture. Partners are always of an instrument not
/// yet in the mixture; with `genre` or `drums` they also share the first clip's tag, and when no
/// clip does, any other instrument's clip is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Partners {
    #[default]
    Any,
    /// The same genre tag (`[cla]`, `[pop_roc]`, ...).
    Genre,
    /// The same drum tag (`[dru]` / `[nod]`).
    Drums,
}

crate::util::display_as_value!(Partners);

/// Mixing augmentation (`--mix`). The defaults: half the training windows are mixtures, of 2 or 3
/// instruments (IRMAS test clips have 1–3 predominant ones), each at a gain drawn from −6…0 dB, so
/// no source is buried more than 6 dB below another and each stays predominant, as in the test
/// set's labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MixConfig {
    /// Probability that a training window becomes a mixture.
    pub prob: f64,
    /// Most instruments in one mixture (at least 2; the number is uniform in 2..=this).
    pub max_sources: usize,
    /// Range of each source's gain in dB (uniform; the powers are then scaled to sum to 1, so a
    /// mixture is as loud as a single clip and loudness does not give the count away).
    pub gain_db: [f64; 2],
    pub partners: Partners,
    /// Bring every source's window to the first one's mel power before its gain, so the gains are
    /// the sources' relative levels (as `evaluate --recordings` mixes loudness-matched parts)
    /// rather than gains on top of the clips' own loudness differences.
    pub match_level: bool,
}

impl Default for MixConfig {
    fn default() -> Self {
        Self {
            prob: 0.5,
            max_sources: 3,
            gain_db: [-6.0, 0.0],
            partners: Partners::Any,
            match_level: false,
        }
    }
}

use crate::check::{self, MAX_MIX_SOURCES as MAX_SOURCES};
use crate::error::SettingError;

impl MixConfig {
    /// The flags' rules (`check`), for settings read from a TOML or a run's `train.json`.
    pub fn check(&self) -> Result<(), SettingError> {
        check::probability("mix.prob", self.prob)?;
        check::mix_sources("mix.max_sources", self.max_sources)?;
        check::db_range("mix.gain_db", self.gain_db).map(|_| ())
    }
}

/// How the validation mixtures that thresholds are calibrated on are built. The default shares
/// of 1-, 2- and 3-instrument examples are equal: nothing about the test set is assumed (IRMAS's
/// own test proportions are never used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrationConfig {
    /// Number of validation examples (mixtures and single clips).
    pub mixtures: usize,
    /// Relative shares of examples with 1, 2, 3, ... instruments.
    pub shares: Vec<f64>,
    /// Range of each source's gain in dB, as for [`MixConfig::gain_db`].
    pub gain_db: [f64; 2],
    /// Loudness-matched sources, as for [`MixConfig::match_level`] (over the mixed frames).
    pub match_level: bool,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            mixtures: 400,
            shares: vec![1.0, 1.0, 1.0],
            gain_db: [-6.0, 0.0],
            match_level: false,
        }
    }
}

impl CalibrationConfig {
    pub fn check(&self) -> Result<(), SettingError> {
        check::within("calibration.mixtures", self.mixtures, 1, 100_000)?;
        if self.shares.is_empty() || self.shares.len() > MAX_SOURCES {
            return Err(SettingError::new(
                "calibration.shares",
                format!(
                    "list 1 to {MAX_SOURCES} shares (of 1, 2, ... instruments), got {}",
                    self.shares.len()
                ),
            ));
        }
        for &s in &self.shares {
            check::share("calibration.shares", s)?;
        }
        if self.shares.iter().sum::<f64>() <= 0.0 {
            return Err(SettingError::new("calibration.shares", "not all be 0"));
        }
        check::db_range("calibration.gain_db", self.gain_db).map(|_| ())
    }
}

/// What partner rules need to know of a clip.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub label: usize,
    /// Other classes heard in the clip that count as its labels too (`train --label-chords`: the
    /// instrument of its chords); empty for the paper's one-label clips.
    pub also: Vec<usize>,
    pub genre: Option<String>,
    pub drums: Option<bool>,
}

impl SourceInfo {
    /// The clip's label and the classes it also counts as heard.
    fn labels(&self) -> impl Iterator<Item = usize> + '_ {
        std::iter::once(self.label).chain(self.also.iter().copied())
    }

    /// The clip's label set, sorted: its line's class and those it also counts as heard.
    pub fn label_set(&self) -> Vec<usize> {
        let mut labels: Vec<usize> = self.labels().collect();
        labels.sort_unstable();
        labels.dedup();
        labels
    }
}

/// One example: windows of clips (clip index, start frame), their power weights and the labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    pub sources: Vec<(usize, usize)>,
    /// Power weights, summing to 1 (a single source has weight 1).
    pub weights: Vec<f64>,
    /// The union of the sources' labels, sorted.
    pub labels: Vec<usize>,
}

impl Mixture {
    /// One window on its own, with its clip's labels: the paper's training example.
    pub fn single(clip: usize, start: usize, info: &SourceInfo) -> Self {
        Self {
            sources: vec![(clip, start)],
            weights: vec![1.0],
            labels: info.label_set(),
        }
    }
}

/// Power weights for `n` sources: gains uniform in `gain_db`, scaled to sum to 1.
pub fn draw_weights(rng: &mut Rng, n: usize, gain_db: [f64; 2]) -> Vec<f64> {
    let p: Vec<f64> = (0..n)
        .map(|_| {
            let db = gain_db[0] + (gain_db[1] - gain_db[0]) * rng.f64();
            10f64.powf(db / 10.0)
        })
        .collect();
    let sum: f64 = p.iter().sum();
    p.iter().map(|v| v / sum).collect()
}

/// A clip of an instrument not in `labels` (and, under `rule`, with `anchor`'s tag), uniformly;
/// `None` when no clip of another instrument exists.
fn partner(
    rng: &mut Rng,
    info: &[SourceInfo],
    anchor: usize,
    labels: &[usize],
    rule: Partners,
) -> Option<usize> {
    let other = |i: &usize| !labels.contains(&info[*i].label);
    let same_tag = |i: &usize| match rule {
        Partners::Any => true,
        Partners::Genre => info[*i].genre == info[anchor].genre,
        Partners::Drums => info[*i].drums == info[anchor].drums,
    };
    let mut pool: Vec<usize> = (0..info.len())
        .filter(|i| other(i) && same_tag(i))
        .collect();
    if pool.is_empty() {
        pool = (0..info.len()).filter(other).collect();
    }
    (!pool.is_empty()).then(|| *rng.choose(&pool))
}

/// Adds partners to `anchor` until the mixture has `n` instruments (or no other instrument is
/// left); `start_of(clip, rng)` picks a partner's window.
fn build(
    rng: &mut Rng,
    info: &[SourceInfo],
    anchor: (usize, usize),
    n: usize,
    gain_db: [f64; 2],
    rule: Partners,
    start_of: &dyn Fn(usize, &mut Rng) -> usize,
) -> Mixture {
    let mut sources = vec![anchor];
    let mut labels: Vec<usize> = info[anchor.0].labels().collect();
    while sources.len() < n {
        let Some(p) = partner(rng, info, anchor.0, &labels, rule) else {
            break;
        };
        sources.push((p, start_of(p, rng)));
        labels.extend(info[p].labels());
    }
    labels.sort_unstable();
    labels.dedup();
    let weights = if sources.len() == 1 {
        vec![1.0]
    } else {
        draw_weights(rng, sources.len(), gain_db)
    };
    Mixture {
        sources,
        weights,
        labels,
    }
}

/// An epoch's training examples: each window of `order` on its own or, with probability
/// `config.prob`, mixed with windows of other instruments. The same `rng` state gives the same
/// examples, so a resumed epoch is the epoch it replaces.
pub fn training_examples(
    order: &[(usize, usize)],
    info: &[SourceInfo],
    window_starts: &[Vec<usize>],
    config: &MixConfig,
    rng: &mut Rng,
) -> Vec<Mixture> {
    let start_of = |clip: usize, rng: &mut Rng| *rng.choose(&window_starts[clip]);
    order
        .iter()
        .map(|&(clip, start)| {
            if rng.f64() >= config.prob {
                return Mixture::single(clip, start, &info[clip]);
            }
            let n = rng.range(2, config.max_sources + 1);
            build(
                rng,
                info,
                (clip, start),
                n,
                config.gain_db,
                config.partners,
                &start_of,
            )
        })
        .collect()
}

/// The calibration set: `config.mixtures` examples of whole validation clips, the number of
/// instruments drawn by `config.shares`, partners of other instruments at random. Fixed by `seed`;
/// only indices into `info` (the validation clips) are used.
pub fn calibration_set(info: &[SourceInfo], config: &CalibrationConfig, seed: u64) -> Vec<Mixture> {
    if info.is_empty() {
        return Vec::new();
    }
    // Its own stream: the calibration set does not move when training's draws change.
    let mut rng = Rng::derive(seed, 0xCA11_B4A7);
    let total: f64 = config.shares.iter().sum();
    (0..config.mixtures)
        .map(|_| {
            let mut u = rng.f64() * total;
            let mut n = config.shares.len();
            for (k, &s) in config.shares.iter().enumerate() {
                if u < s {
                    n = k + 1;
                    break;
                }
                u -= s;
            }
            let anchor = rng.range(0, info.len());
            build(
                &mut rng,
                info,
                (anchor, 0),
                n,
                config.gain_db,
                Partners::Any,
                &|_, _| 0,
            )
        })
        .collect()
}

/// The mean mel power of a clip's window (its first channel's plane; frames past the end count
/// as silence), the level that [`MixConfig::match_level`] equalises.
fn window_power(clip: &ClipFeatures, start: usize, length: usize, offset: f64) -> f64 {
    let mel = &clip.mels[0];
    let end = (start + length).min(mel.frames);
    let cells = &mel.data[(start * mel.n_mels).min(mel.data.len())..end * mel.n_mels];
    let sum: f64 = cells
        .iter()
        .map(|&x| ((x as f64).exp() - offset).max(0.0))
        .sum();
    sum / (length * mel.n_mels).max(1) as f64
}

/// Rescales a mixture's power weights so that each source enters at the first source's level
/// times its drawn weight: the mixture is then as loud as the first window alone. A silent
/// window (power at or below `floor`) keeps its weight.
fn match_levels(m: &mut Mixture, powers: &[f64], floor: f64) {
    let Some(&reference) = powers.first() else {
        return;
    };
    if reference <= floor {
        return;
    }
    for (w, &p) in m.weights.iter_mut().zip(powers) {
        if p > floor {
            *w *= reference / p;
        }
    }
}

/// Loudness-matches a mixture ([`MixConfig::match_level`]): each source's power is taken over
/// `length` frames from its start (`clip(i)` is source clip `i`'s features). One source: as is.
pub fn match_mixture<'a>(
    m: &mut Mixture,
    clip: impl Fn(usize) -> &'a ClipFeatures,
    length: usize,
    offset: f64,
) {
    if m.sources.len() < 2 {
        return;
    }
    let powers: Vec<f64> = m
        .sources
        .iter()
        .map(|&(c, start)| window_power(clip(c), start, length, offset))
        .collect();
    match_levels(m, &powers, offset);
}

/// `ln(Σ w_i (e^{x_i} − ε) + ε)` elementwise: the log-mel of the weighted sum of the parts' mel
/// powers (`ε` = the log offset). Computed in f64; a power that rounding leaves below 0 counts as 0.
pub fn mix_log_mels(parts: &[&[f32]], weights: &[f64], offset: f64, out: &mut [f32]) {
    debug_assert_eq!(parts.len(), weights.len());
    for (i, o) in out.iter_mut().enumerate() {
        let p: f64 = parts
            .iter()
            .zip(weights)
            .map(|(x, w)| w * ((x[i] as f64).exp() - offset).max(0.0))
            .sum();
        *o = (p + offset).ln() as f32;
    }
}

/// The model input (`[3, length, n_mels]`) of a mixture's windows. A single source is copied as
/// it is, so the paper's recipe sees exactly the inputs it saw before mixing existed.
pub fn mixture_input(
    clips: &[&ClipFeatures],
    starts: &[usize],
    weights: &[f64],
    length: usize,
    silence: f32,
    offset: f64,
) -> Vec<f32> {
    if clips.len() == 1 {
        return clips[0].input(starts[0], length, silence);
    }
    let first = clips[0];
    let plane = length * first.mels[0].n_mels;
    let mut out = vec![0f32; 3 * plane];
    let mut parts = vec![vec![0f32; plane]; clips.len()];
    first.mode.fill_planes(&mut out, |k, dst| {
        for ((c, &s), buf) in clips.iter().zip(starts).zip(parts.iter_mut()) {
            c.mels[k].window_into(s, length, silence, buf);
        }
        let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
        mix_log_mels(&refs, weights, offset, dst);
    });
    out
}

/// A whole-clip mixture (for calibration): the sources' log-mels mixed over the shortest one's
/// frames.
pub fn mix_clips(clips: &[&ClipFeatures], weights: &[f64], offset: f64) -> ClipFeatures {
    if clips.len() == 1 {
        return clips[0].clone();
    }
    let frames = clips.iter().map(|c| c.frames()).min().unwrap_or(0);
    let first = clips[0];
    let mels = (0..first.mels.len())
        .map(|k| {
            let n_mels = first.mels[k].n_mels;
            // Each source's first `frames` frames, [n_mels, frames] row-major.
            let parts: Vec<Vec<f32>> = clips
                .iter()
                .map(|c| {
                    let m = &c.mels[k];
                    (0..n_mels)
                        .flat_map(|r| m.data[r * m.frames..r * m.frames + frames].iter().copied())
                        .collect()
                })
                .collect();
            let refs: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
            let mut data = vec![0f32; n_mels * frames];
            mix_log_mels(&refs, weights, offset, &mut data);
            crate::features::LogMel {
                n_mels,
                frames,
                data,
            }
        })
        .collect();
    ClipFeatures {
        mode: first.mode,
        mels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(labels: &[usize]) -> Vec<SourceInfo> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &label)| SourceInfo {
                label,
                also: Vec::new(),
                genre: Some(if i % 2 == 0 { "cla" } else { "pop_roc" }.into()),
                drums: Some(i % 3 == 0),
            })
            .collect()
    }

    #[test]
    fn mixtures_hold_distinct_instruments_and_the_union_of_their_labels() {
        let info = info(&[0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let starts = vec![vec![0, 43, 86]; info.len()];
        let order: Vec<(usize, usize)> = (0..info.len()).map(|c| (c, 43)).collect();
        let config = MixConfig {
            prob: 1.0,
            ..MixConfig::default()
        };
        let mut counts = [0usize; 4];
        for seed in 0..50 {
            let ex = training_examples(&order, &info, &starts, &config, &mut Rng::new(seed));
            for (m, &(clip, start)) in ex.iter().zip(&order) {
                assert_eq!(m.sources[0], (clip, start), "the window itself comes first");
                let mut want: Vec<usize> = m.sources.iter().map(|&(c, _)| info[c].label).collect();
                want.sort_unstable();
                let before = want.len();
                want.dedup();
                assert_eq!(want.len(), before, "instruments repeat in {m:?}");
                assert_eq!(m.labels, want);
                counts[m.sources.len()] += 1;
                assert!((m.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
                for &(c, s) in &m.sources[1..] {
                    assert!(starts[c].contains(&s));
                }
            }
        }
        assert_eq!(counts[0] + counts[1], 0, "prob 1: every window is mixed");
        assert!(counts[2] > 200 && counts[3] > 200, "{counts:?}");
    }

    #[test]
    fn gains_stay_in_the_range_and_prob_is_the_share_mixed() {
        let mut rng = Rng::new(5);
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for _ in 0..2000 {
            let w = draw_weights(&mut rng, 3, [-6.0, 0.0]);
            // The relative gains are what the range sets (the sum is scaled to 1).
            for a in &w {
                for b in &w {
                    let db = 10.0 * (a / b).log10();
                    lo = lo.min(db);
                    hi = hi.max(db);
                }
            }
        }
        assert!(lo >= -6.0 - 1e-9 && hi <= 6.0 + 1e-9, "{lo} {hi}");
        assert!(lo < -5.5 && hi > 5.5, "the whole range is used: {lo} {hi}");
        let info = info(&[0, 1, 2, 3]);
        let starts = vec![vec![0]; 4];
        let order: Vec<(usize, usize)> = (0..4000).map(|i| (i % 4, 0)).collect();
        let ex = training_examples(
            &order,
            &info,
            &starts,
            &MixConfig::default(),
            &mut Rng::new(1),
        );
        let mixed = ex.iter().filter(|m| m.sources.len() > 1).count() as f64 / 4000.0;
        assert!((mixed - 0.5).abs() < 0.03, "{mixed}");
    }

    #[test]
    fn partner_rules_keep_the_tag_when_they_can() {
        let info = info(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0]);
        let starts = vec![vec![0]; info.len()];
        let order: Vec<(usize, usize)> = (0..info.len()).map(|c| (c, 0)).collect();
        for rule in [Partners::Genre, Partners::Drums] {
            let config = MixConfig {
                prob: 1.0,
                partners: rule,
                ..MixConfig::default()
            };
            let ex = training_examples(&order, &info, &starts, &config, &mut Rng::new(3));
            for m in ex {
                let a = &info[m.sources[0].0];
                for &(c, _) in &m.sources[1..] {
                    match rule {
                        Partners::Genre => assert_eq!(info[c].genre, a.genre),
                        _ => assert_eq!(info[c].drums, a.drums),
                    }
                }
            }
        }
    }

    #[test]
    fn the_calibration_set_is_fixed_by_its_seed_and_follows_the_shares() {
        let info = info(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2]);
        let c = CalibrationConfig::default();
        let a = calibration_set(&info, &c, 7);
        assert_eq!(a, calibration_set(&info, &c, 7));
        assert_ne!(a, calibration_set(&info, &c, 8));
        assert_eq!(a.len(), 400);
        let mut n = [0usize; 4];
        for m in &a {
            n[m.sources.len()] += 1;
            assert!(m.sources.iter().all(|&(c, s)| c < info.len() && s == 0));
        }
        assert!(n[1..].iter().all(|&k| (100..167).contains(&k)), "{n:?}");
        let only_pairs = CalibrationConfig {
            shares: vec![0.0, 1.0],
            ..c
        };
        assert!(
            calibration_set(&info, &only_pairs, 1)
                .iter()
                .all(|m| m.sources.len() == 2)
        );
    }

    #[test]
    fn matched_levels_make_the_gains_the_relative_levels() {
        let offset = 1e-6;
        // Two one-band windows of constant power 4 and 0.25 (16 times quieter).
        let clip = |p: f64| ClipFeatures {
            mode: crate::features::ChannelMode::Dup,
            mels: vec![crate::features::LogMel {
                n_mels: 1,
                frames: 3,
                data: vec![(p + offset).ln() as f32; 3],
            }],
        };
        let (a, b) = (clip(4.0), clip(0.25));
        let powers = [
            window_power(&a, 0, 3, offset),
            window_power(&b, 0, 3, offset),
        ];
        assert!((powers[0] - 4.0).abs() < 1e-5 && (powers[1] - 0.25).abs() < 1e-6);
        // A window running past the clip's end counts the missing frames as silence.
        assert!((window_power(&a, 1, 4, offset) - 2.0).abs() < 1e-5);
        let mut m = Mixture {
            sources: vec![(0, 0), (1, 0)],
            weights: vec![0.75, 0.25],
            labels: vec![0, 1],
        };
        let mut via_clips = m.clone();
        match_levels(&mut m, &powers, offset);
        let clips = [&a, &b];
        match_mixture(&mut via_clips, |c| clips[c], 3, offset);
        assert_eq!(via_clips, m);
        // Each source's power in the mix is now the first's level times its drawn weight.
        let mixed: Vec<f64> = m.weights.iter().zip(&powers).map(|(w, p)| w * p).collect();
        assert!((mixed[0] - 3.0).abs() < 1e-4 && (mixed[1] - 1.0).abs() < 1e-4);
        // A silent partner keeps its weight; a single window is left alone.
        let mut m2 = m.clone();
        match_levels(&mut m2, &[4.0, 0.0], offset);
        assert_eq!(m2.weights, m.weights);
        let mut one = Mixture::single(0, 0, &info(&[0])[0]);
        match_levels(&mut one, &[0.5], offset);
        assert_eq!(one.weights, vec![1.0]);
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        let bad = MixConfig {
            gain_db: [0.0, -6.0],
            ..MixConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().what, "mix.gain_db");
        let bad = MixConfig {
            max_sources: 1,
            ..MixConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().what, "mix.max_sources");
        let bad = CalibrationConfig {
            shares: vec![0.0, 0.0],
            ..CalibrationConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().what, "calibration.shares");
        assert!(MixConfig::default().check().is_ok());
        assert!(CalibrationConfig::default().check().is_ok());
    }
}
