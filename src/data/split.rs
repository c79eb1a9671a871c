//! The validation split (paper Section 4.3: 15 % of the training set held out), seeded and
//! stratified by class.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::irmas::TrainClip;
use crate::util::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum SplitMode {
    /// Clips of one song (the same name before `__N`) stay on one side, so no song leaks from
    /// training into validation.
    Song,
    /// Clips are drawn independently (as a random 15 % would be).
    Random,
}

crate::util::display_as_value!(SplitMode);

/// Indices into the training clips: those kept for training and those held out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
}

/// Holds out `fraction` of each class (rounded to the nearest clip). With [`SplitMode::Song`],
/// whole songs are moved, in a seeded random order, skipping a song that would overshoot the
/// class's target by more than one clip, so each class lands within one clip of its target
/// whenever its songs allow it.
pub fn split_validation(clips: &[TrainClip], fraction: f64, seed: u64, mode: SplitMode) -> Split {
    assert!((0.0..1.0).contains(&fraction), "fraction must be in [0, 1)");
    // class → song → clip indices (BTreeMaps: a stable order before shuffling).
    let mut by_class: BTreeMap<usize, BTreeMap<String, Vec<usize>>> = BTreeMap::new();
    for (i, c) in clips.iter().enumerate() {
        let key = match mode {
            SplitMode::Song => c.song.clone(),
            SplitMode::Random => format!("{i}"),
        };
        by_class
            .entry(c.label)
            .or_default()
            .entry(key)
            .or_default()
            .push(i);
    }
    let mut valid = Vec::new();
    for (class, songs) in by_class {
        let total: usize = songs.values().map(Vec::len).sum();
        let target = (total as f64 * fraction).round() as usize;
        let mut groups: Vec<Vec<usize>> = songs.into_values().collect();
        Rng::derive(seed, class as u64).shuffle(&mut groups);
        let mut taken = 0;
        for g in groups {
            if taken >= target {
                break;
            }
            if taken + g.len() <= target + 1 {
                taken += g.len();
                valid.extend(g);
            }
        }
    }
    valid.sort_unstable();
    let held: std::collections::HashSet<usize> = valid.iter().copied().collect();
    let train = (0..clips.len()).filter(|i| !held.contains(i)).collect();
    Split { train, valid }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn clips() -> Vec<TrainClip> {
        // 3 classes; songs of 1–4 clips.
        let mut v = Vec::new();
        for label in 0..3 {
            for song in 0..40 {
                for k in 0..(1 + (song * 7 + label) % 4) {
                    v.push(TrainClip {
                        path: PathBuf::from(format!("{label}/{song}__{k}.wav")),
                        label,
                        drums: None,
                        genre: None,
                        song: format!("{label}/{song}"),
                    });
                }
            }
        }
        v
    }

    #[test]
    fn song_split_keeps_songs_whole_and_hits_15_percent_per_class() {
        let c = clips();
        for seed in 0..5 {
            let s = split_validation(&c, 0.15, seed, SplitMode::Song);
            assert_eq!(s.train.len() + s.valid.len(), c.len());
            let valid_songs: std::collections::HashSet<&str> =
                s.valid.iter().map(|&i| c[i].song.as_str()).collect();
            assert!(
                s.train
                    .iter()
                    .all(|&i| !valid_songs.contains(c[i].song.as_str()))
            );
            for label in 0..3 {
                let total = c.iter().filter(|x| x.label == label).count();
                let held = s.valid.iter().filter(|&&i| c[i].label == label).count();
                let target = (total as f64 * 0.15).round() as usize;
                assert!(
                    held.abs_diff(target) <= 1,
                    "class {label}: {held} vs {target}"
                );
            }
        }
    }

    #[test]
    fn seeds_change_the_split_and_repeat_it() {
        let c = clips();
        let a = split_validation(&c, 0.15, 1, SplitMode::Random);
        assert_eq!(a, split_validation(&c, 0.15, 1, SplitMode::Random));
        assert_ne!(a, split_validation(&c, 0.15, 2, SplitMode::Random));
    }
}
