//! Analysis windows made as a file's frames arrive, holding only the frames still needed.

use std::collections::VecDeque;

use crate::features::{ChannelMode, FeatureSettings, Windowing};

/// What a file's result needs besides its window scores.
pub(super) struct FileEnd {
    pub(super) duration_s: f64,
    /// RMS level and peak of the file as the model takes it, dBFS, before `gain_db`.
    pub(super) level_dbfs: f64,
    pub(super) peak_dbfs: f64,
    pub(super) gain_db: f64,
    pub(super) starts: Vec<usize>,
}

/// Makes analysis windows as their frames arrive, keeping only the frames still needed.
pub(super) struct WindowMaker<'a> {
    windowing: Windowing,
    features: &'a FeatureSettings,
    channels: ChannelMode,
    /// Frame columns per source, from absolute frame `first` on.
    pub(super) columns: Vec<VecDeque<Vec<f32>>>,
    first: usize,
    /// Frames known so far.
    pub(super) frames: usize,
    pub(super) starts: Vec<usize>,
}

impl<'a> WindowMaker<'a> {
    /// A maker of `windowing`'s windows over the log-mels of `features`, for `channels`.
    pub(super) fn new(
        windowing: Windowing,
        features: &'a FeatureSettings,
        channels: ChannelMode,
    ) -> Self {
        let sources = channels.sources().len();
        Self {
            windowing,
            features,
            channels,
            columns: vec![VecDeque::new(); sources],
            first: 0,
            frames: 0,
            starts: Vec::new(),
        }
    }

    /// The inputs of every window whose frames are all known (at the end: every remaining
    /// window of [`crate::features::Windowing::starts`]); their starts go to `starts`.
    pub(super) fn ready(&mut self, at_end: bool) -> Vec<Vec<f32>> {
        let w = self.windowing;
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
        let len = self.windowing.length;
        let n_mels = self.features.n_mels;
        let silence = self.features.silence();
        let mut x = vec![0.0; 3 * len * n_mels];
        let (columns, first, frames) = (&self.columns, self.first, self.frames);
        self.channels.fill_planes(&mut x, |k, dst| {
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
