//! The paper's front end (Section 4.2): log-mel spectrogram exactly as torchaudio computes it,
//! 1-s windows over it, and the conversion of a window into the 3-channel input of an ImageNet model
//! (Section 3.2).
//!
//! `MelSpectrogram(sample_rate=22050, n_fft=2048, hop_length=512, n_mels=128)` with torchaudio's
//! defaults: periodic Hann window of 2048, `center=True` with reflect padding, power 2, HTK mel
//! scale from 0 Hz to Nyquist, no filter normalisation; then `ln(mel + 1e-6)`.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::audio::{Audio, AudioStream, Channel, StreamResampler, TARGET_RATE, select_channel};
use crate::error::{FileError, Reason};

/// Frames per analysis window: 43 hops of 512 samples at 22,050 Hz ≈ 1 s.
pub const WINDOW_FRAMES: usize = 43;

/// The fewest frames a clip must have to be scored (half a window, ≈ 0.51 s): below it most of
/// every window would be padding, and a score would reflect the padding more than the audio.
pub const MIN_CLIP_FRAMES: usize = WINDOW_FRAMES / 2 + 1;

/// The policy for short clips, one message for every command: shorter than half a window is an
/// error (training, evaluation and tagging skip and report the file).
pub fn check_clip_frames(
    frames: usize,
    duration_s: f64,
    settings: &FeatureSettings,
) -> Result<(), Reason> {
    if frames >= MIN_CLIP_FRAMES {
        return Ok(());
    }
    let min_s = MIN_CLIP_FRAMES as f64 * settings.hop_length as f64 / settings.sample_rate as f64;
    Err(format!(
        "too short to score: {duration_s:.2} s of audio, at least {min_s:.2} s (half an analysis window) is needed"
    ).into())
}

/// Every setting that changes the numbers a feature holds. Stored in model bundles and used as
/// part of the feature-cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSettings {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    pub f_min: f64,
    pub f_max: f64,
    /// Added before the natural log.
    pub log_offset: f64,
    /// Frames per window (43 ≈ 1 s).
    pub window_frames: usize,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        Self {
            sample_rate: TARGET_RATE,
            n_fft: 2048,
            hop_length: 512,
            n_mels: 128,
            f_min: 0.0,
            f_max: TARGET_RATE as f64 / 2.0,
            log_offset: 1e-6,
            window_frames: WINDOW_FRAMES,
        }
    }
}

impl FeatureSettings {
    /// Number of frames for `n` samples with `center=True`: `1 + n / hop`.
    pub fn frames_for(&self, n: usize) -> usize {
        1 + n / self.hop_length
    }

    /// The value a silent (all-zero) frame takes: `ln(log_offset)`.
    pub fn silence(&self) -> f32 {
        self.log_offset.ln() as f32
    }
}

/// A log-mel spectrogram laid out `[n_mels, frames]` (row-major), as torchaudio returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    pub fn at(&self, mel: usize, frame: usize) -> f32 {
        self.data[mel * self.frames + frame]
    }

    /// Copies frames `start..start + len` into `out` laid out `[len, n_mels]` (frames × mels, the
    /// paper's 43×128 image), padding frames past the end with `pad`.
    pub fn window_into(&self, start: usize, len: usize, pad: f32, out: &mut [f32]) {
        assert_eq!(out.len(), len * self.n_mels);
        for t in 0..len {
            let row = &mut out[t * self.n_mels..(t + 1) * self.n_mels];
            let f = start + t;
            if f < self.frames {
                for (m, v) in row.iter_mut().enumerate() {
                    *v = self.data[m * self.frames + f];
                }
            } else {
                row.fill(pad);
            }
        }
    }
}

/// Computes log-mel spectrograms; holds the FFT plan, the window and the filter bank, so build it
/// once and reuse it (it is `Sync`: share one across threads).
pub struct MelExtractor {
    settings: FeatureSettings,
    /// In f32, as torch.stft computes for a float32 signal.
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// For each mel band: the first FFT bin with a non-zero weight and the weights from there
    /// (each bin feeds at most two HTK triangles, so this is the whole sparse filter bank).
    filters: Vec<(usize, Vec<f32>)>,
}

impl std::fmt::Debug for MelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelExtractor")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn hz_to_mel_htk(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz_htk(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// The centre frequency of mel band `m` (fractional `m` allowed), as [`mel_filterbank`] places it.
pub fn band_centre_hz(settings: &FeatureSettings, m: f64) -> f64 {
    let (lo, hi) = (hz_to_mel_htk(settings.f_min), hz_to_mel_htk(settings.f_max));
    mel_to_hz_htk(lo + (hi - lo) * (m + 1.0) / (settings.n_mels + 1) as f64)
}

/// Where `hz` falls on the mel bands' axis: the fractional band whose centre it is.
pub fn band_position(settings: &FeatureSettings, hz: f64) -> f64 {
    let (lo, hi) = (hz_to_mel_htk(settings.f_min), hz_to_mel_htk(settings.f_max));
    (hz_to_mel_htk(hz.max(0.0)) - lo) / (hi - lo) * (settings.n_mels + 1) as f64 - 1.0
}

/// torchaudio's `melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate, norm=None,
/// mel_scale="htk")`, as `[n_freqs][n_mels]`.
pub fn mel_filterbank(settings: &FeatureSettings) -> Vec<Vec<f64>> {
    let n_freqs = settings.n_fft / 2 + 1;
    let n_mels = settings.n_mels;
    // torch.linspace(0, sample_rate // 2, n_freqs)
    let nyquist = (settings.sample_rate / 2) as f64;
    let all_freqs: Vec<f64> = (0..n_freqs)
        .map(|i| nyquist * i as f64 / (n_freqs - 1) as f64)
        .collect();
    // The triangles' corners: the band centres, with one more at each end (f_min and f_max).
    let f_pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| band_centre_hz(settings, i as f64 - 1.0))
        .collect();
    let mut fb = vec![vec![0.0; n_mels]; n_freqs];
    for (f, row) in fb.iter_mut().enumerate() {
        for (m, w) in row.iter_mut().enumerate() {
            let down = (all_freqs[f] - f_pts[m]) / (f_pts[m + 1] - f_pts[m]);
            let up = (f_pts[m + 2] - all_freqs[f]) / (f_pts[m + 2] - f_pts[m + 1]);
            *w = down.min(up).max(0.0);
        }
    }
    fb
}

impl MelExtractor {
    pub fn new(settings: FeatureSettings) -> Self {
        let n = settings.n_fft;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        // Periodic Hann window (torch.hann_window(n, periodic=True)).
        let window = (0..n)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()) as f32)
            .collect();
        let fb = mel_filterbank(&settings);
        let filters = (0..settings.n_mels)
            .map(|m| {
                let nz: Vec<usize> = (0..fb.len()).filter(|&f| fb[f][m] > 0.0).collect();
                match (nz.first(), nz.last()) {
                    (Some(&a), Some(&b)) => (a, (a..=b).map(|f| fb[f][m] as f32).collect()),
                    _ => (0, Vec::new()),
                }
            })
            .collect();
        Self {
            settings,
            fft,
            window,
            filters,
        }
    }

    pub fn settings(&self) -> &FeatureSettings {
        &self.settings
    }

    /// The log-mel spectrogram of a signal already at `settings.sample_rate`.
    pub fn log_mel(&self, signal: &[f32]) -> LogMel {
        let s = &self.settings;
        let frames = s.frames_for(signal.len());
        let mut data = vec![0f32; s.n_mels * frames];
        let mut work = self.workspace();
        let mut column = vec![0f32; s.n_mels];
        for t in 0..frames {
            self.load_frame(signal, 0, signal.len(), t, &mut work.frame);
            self.frame(&mut work, &mut column);
            for (m, v) in column.iter().enumerate() {
                data[m * frames + t] = *v;
            }
        }
        LogMel {
            n_mels: s.n_mels,
            frames,
            data,
        }
    }

    /// The mel power spectrogram (before the log), `[n_mels, frames]` row-major, in f64: what
    /// [`MelExtractor::log_mel`] takes the log of.
    pub fn mel_power(&self, signal: &[f32]) -> Vec<f64> {
        let s = &self.settings;
        let frames = s.frames_for(signal.len());
        let mut data = vec![0f64; s.n_mels * frames];
        let mut work = self.workspace();
        for t in 0..frames {
            self.load_frame(signal, 0, signal.len(), t, &mut work.frame);
            self.frame_power(&mut work);
            for (m, v) in work.mel.iter().enumerate() {
                data[m * frames + t] = *v as f64;
            }
        }
        data
    }

    fn workspace(&self) -> Workspace {
        Workspace {
            frame: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            scratch: self.fft.make_scratch_vec(),
            power: vec![0f32; self.settings.n_fft / 2 + 1],
            mel: vec![0f32; self.settings.n_mels],
        }
    }

    /// The samples of frame `t` (before the window) into `frame`: indices `t·hop − n_fft/2 ..
    /// t·hop + n_fft/2` of a signal of `n` samples, reflect-padded, read from `buf`, which holds
    /// the signal from index `base` on. Frames inside the signal are one copy.
    fn load_frame(&self, buf: &[f32], base: usize, n: usize, t: usize, frame: &mut [f32]) {
        let s = &self.settings;
        let start = (t * s.hop_length) as isize - (s.n_fft / 2) as isize;
        if start >= base as isize && start as usize + s.n_fft <= n {
            frame.copy_from_slice(&buf[start as usize - base..][..s.n_fft]);
        } else {
            for (k, v) in frame.iter_mut().enumerate() {
                *v = buf[reflect(start + k as isize, n) - base];
            }
        }
    }

    /// The log-mel column of the frame loaded into `w.frame`.
    fn frame(&self, w: &mut Workspace, column: &mut [f32]) {
        self.frame_power(w);
        let offset = self.settings.log_offset;
        for (c, &e) in column.iter_mut().zip(&w.mel) {
            *c = (e as f64 + offset).ln() as f32;
        }
    }

    /// The mel power of the frame loaded into `w.frame` into `w.mel` (the frame is windowed in
    /// place).
    fn frame_power(&self, w: &mut Workspace) {
        for (v, win) in w.frame.iter_mut().zip(&self.window) {
            *v *= win;
        }
        self.fft
            .process_with_scratch(&mut w.frame, &mut w.spectrum, &mut w.scratch)
            .expect("FFT buffers have the planned sizes");
        for (p, c) in w.power.iter_mut().zip(&w.spectrum) {
            *p = c.norm_sqr();
        }
        for (m, (first, weights)) in self.filters.iter().enumerate() {
            w.mel[m] = crate::util::dot(weights, &w.power[*first..]);
        }
    }

    /// Decoded audio → the log-mel of one of its channels at the target rate.
    pub fn log_mel_of(&self, audio: &Audio, channel: Channel) -> LogMel {
        self.log_mel(&audio.channel_at(channel, self.settings.sample_rate))
    }
}

struct Workspace {
    frame: Vec<f32>,
    spectrum: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    power: Vec<f32>,
    mel: Vec<f32>,
}

/// Reflect padding (torch.nn.functional.pad mode="reflect": the edge sample is not repeated) of a
/// signal of `n` samples at index `i`.
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut j = i.rem_euclid(period);
    if j >= n {
        j = period - j;
    }
    j as usize
}

/// Log-mels of one or more channels of an audio stream, computed block by block as it decodes:
/// memory does not grow with the file's length. The frames equal the whole-signal ones exactly.
pub struct MelStream<'a> {
    audio: AudioStream,
    sources: Vec<Channel>,
    resamplers: Vec<StreamResampler>,
    mels: Vec<StreamMel<'a>>,
    samples: usize,
    finished: bool,
    /// Σx² and the count of the first source's samples at the model's rate: its level.
    energy: (f64, usize),
    /// The largest finite |x| of those samples: its peak.
    peak: f32,
    /// What every decoded sample is multiplied by first.
    gain: f32,
}

impl<'a> MelStream<'a> {
    pub fn new(audio: AudioStream, sources: &[Channel], ex: &'a MelExtractor) -> Self {
        let rate = audio.sample_rate;
        Self {
            resamplers: sources
                .iter()
                .map(|_| StreamResampler::new(rate, ex.settings.sample_rate))
                .collect(),
            mels: sources.iter().map(|_| StreamMel::new(ex)).collect(),
            sources: sources.to_vec(),
            audio,
            samples: 0,
            finished: false,
            energy: (0.0, 0),
            peak: 0.0,
            gain: 1.0,
        }
    }

    /// The same stream with every sample multiplied by `gain` before anything else.
    pub fn with_gain(mut self, gain: f32) -> Self {
        self.gain = gain;
        self
    }

    /// The next frame columns (`n_mels` values each) of every source, or `None` after the last.
    pub fn next_columns(&mut self) -> Result<Option<Vec<Vec<Vec<f32>>>>, FileError> {
        if self.finished {
            return Ok(None);
        }
        let mut block = self.audio.next_block()?;
        if let (Some(b), true) = (&mut block, self.gain != 1.0) {
            b.iter_mut().flatten().for_each(|v| *v *= self.gain);
        }
        let mut out = vec![Vec::new(); self.sources.len()];
        let mut resampled = Vec::new();
        for (k, &src) in self.sources.iter().enumerate() {
            resampled.clear();
            match &block {
                Some(b) => self.resamplers[k].push(&select_channel(b, src), &mut resampled),
                None => self.resamplers[k].finish(&mut resampled),
            }
            if k == 0 {
                self.energy.0 += resampled
                    .iter()
                    .map(|&v| (v as f64) * (v as f64))
                    .sum::<f64>();
                self.energy.1 += resampled.len();
                self.peak = resampled
                    .iter()
                    .filter(|v| v.is_finite())
                    .fold(self.peak, |p, v| p.max(v.abs()));
            }
            self.mels[k].push(&resampled, &mut out[k]);
            if block.is_none() {
                self.mels[k].finish(&mut out[k]);
            }
        }
        match &block {
            Some(b) => self.samples += b[0].len(),
            None => self.finished = true,
        }
        Ok(Some(out))
    }

    /// Frames produced so far (the same for every source).
    pub fn frames(&self) -> usize {
        self.mels[0].frames()
    }

    /// The RMS level in dBFS of what the model hears of it so far (the first source at the
    /// model's rate, after the gain), floored at [`crate::audio::LEVEL_FLOOR_DBFS`].
    pub fn level_dbfs(&self) -> f64 {
        crate::audio::power_dbfs(self.energy.0 / self.energy.1.max(1) as f64)
    }

    /// The peak in dBFS of the same samples, floored likewise.
    pub fn peak_dbfs(&self) -> f64 {
        let p = self.peak as f64;
        crate::audio::power_dbfs(p * p)
    }

    /// Samples per channel decoded so far, at the file's own rate.
    pub fn samples(&self) -> usize {
        self.samples
    }

    pub fn sample_rate(&self) -> u32 {
        self.audio.sample_rate
    }

    pub fn channels(&self) -> usize {
        self.audio.channels
    }
}

/// The log-mel of a signal that arrives in blocks: push samples, collect finished frame columns
/// (`n_mels` values each), then `finish`. The frames equal [`MelExtractor::log_mel`]'s exactly;
/// memory stays bounded by one FFT window whatever the length.
pub struct StreamMel<'a> {
    ex: &'a MelExtractor,
    work: Workspace,
    /// Samples from absolute index `base` on.
    buf: Vec<f32>,
    base: usize,
    received: usize,
    next: usize,
}

impl<'a> StreamMel<'a> {
    pub fn new(ex: &'a MelExtractor) -> Self {
        Self {
            work: ex.workspace(),
            ex,
            buf: Vec::new(),
            base: 0,
            received: 0,
            next: 0,
        }
    }

    /// Adds samples; appends the columns of every frame that no later sample can change.
    pub fn push(&mut self, x: &[f32], out: &mut Vec<Vec<f32>>) {
        self.buf.extend_from_slice(x);
        self.received += x.len();
        let (hop, half) = (self.ex.settings.hop_length, self.ex.settings.n_fft / 2);
        // Frame t reads indices up to t·hop + half − 1 and, reflected at the start, up to half.
        while self.next * hop + half < self.received {
            self.emit(usize::MAX / 4, out);
        }
        let keep_from = (self.next * hop).saturating_sub(2 * half + 1);
        if keep_from > self.base + 65_536 {
            self.buf.drain(..keep_from - self.base);
            self.base = keep_from;
        }
    }

    /// The remaining frames, reflect-padded at the end.
    pub fn finish(&mut self, out: &mut Vec<Vec<f32>>) {
        let n = self.received;
        let frames = self.ex.settings.frames_for(n);
        while self.next < frames {
            self.emit(n, out);
        }
    }

    /// Frames emitted so far.
    pub fn frames(&self) -> usize {
        self.next
    }

    fn emit(&mut self, n: usize, out: &mut Vec<Vec<f32>>) {
        let mut column = vec![0f32; self.ex.settings.n_mels];
        self.ex
            .load_frame(&self.buf, self.base, n, self.next, &mut self.work.frame);
        self.ex.frame(&mut self.work, &mut column);
        out.push(column);
        self.next += 1;
    }
}

/// How windows are laid over a clip's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windowing {
    /// Frames per window.
    pub length: usize,
    /// Frames between window starts.
    pub hop: usize,
    /// When the regular windows stop short of the last frame, add one final window that ends at
    /// the last frame, so no audio is ignored.
    pub cover_end: bool,
}

/// The hop between analysis windows, in frames: 50 % overlap of [`WINDOW_FRAMES`].
pub const ANALYSIS_HOP: usize = 22;

impl Windowing {
    /// Analysis windows: 50 % overlap (hop 22 of 43) covering the whole clip.
    pub fn analysis() -> Self {
        Self {
            length: WINDOW_FRAMES,
            hop: ANALYSIS_HOP,
            cover_end: true,
        }
    }

    /// Training windows: the non-overlapping 1-s windows of a clip (3 for an IRMAS 3-s clip).
    pub fn training() -> Self {
        Self {
            length: WINDOW_FRAMES,
            hop: WINDOW_FRAMES,
            cover_end: false,
        }
    }

    /// Start frames of the windows over a clip of `frames` frames. A clip shorter than one window
    /// has one window at 0 (padded with silence by [`LogMel::window_into`]).
    pub fn starts(&self, frames: usize) -> Vec<usize> {
        assert!(
            self.length > 0 && self.hop > 0,
            "window length and hop must be positive"
        );
        if frames <= self.length {
            return vec![0];
        }
        let mut starts: Vec<usize> = (0..=frames - self.length).step_by(self.hop).collect();
        let last_end = starts.last().map_or(0, |s| s + self.length);
        if self.cover_end && last_end < frames {
            starts.push(frames - self.length);
        }
        starts
    }
}

/// Section 3.2: how a 1-channel log-mel window becomes the 3 channels of an ImageNet model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum ChannelMode {
    /// The mono log-mel three times.
    #[value(alias = "duplication")]
    Dup,
    /// The mono log-mel and two channels of zeros.
    #[value(alias = "zero-padding")]
    Zero,
    /// The log-mels of mono, left and right.
    Stereo,
}

crate::util::display_as_value!(ChannelMode);

impl ChannelMode {
    /// Which signals must be analysed, in channel order.
    pub fn sources(self) -> &'static [Channel] {
        match self {
            Self::Dup | Self::Zero => &[Channel::Mono],
            Self::Stereo => &[Channel::Mono, Channel::Left, Channel::Right],
        }
    }

    /// Fills the three planes of a window (`out`, `3 × plane` values): `source(k, plane_k)` writes
    /// source `k` of [`ChannelMode::sources`] into a plane, then `dup` copies the mono plane into
    /// the other two and `zero` leaves them at 0 (`out` must start zeroed).
    pub fn fill_planes(self, out: &mut [f32], mut source: impl FnMut(usize, &mut [f32])) {
        let plane = out.len() / 3;
        for (k, dst) in out.chunks_mut(plane).take(self.sources().len()).enumerate() {
            source(k, dst);
        }
        if self == Self::Dup {
            let (first, rest) = out.split_at_mut(plane);
            rest[..plane].copy_from_slice(first);
            rest[plane..].copy_from_slice(first);
        }
    }
}

/// The log-mels a clip needs for a channel mode (one for dup/zero, three for stereo).
#[derive(Debug, Clone)]
pub struct ClipFeatures {
    pub mode: ChannelMode,
    /// In the order of [`ChannelMode::sources`].
    pub mels: Vec<LogMel>,
}

impl ClipFeatures {
    pub fn extract(extractor: &MelExtractor, audio: &Audio, mode: ChannelMode) -> Self {
        let mels = mode
            .sources()
            .iter()
            .map(|&c| extractor.log_mel_of(audio, c))
            .collect();
        Self { mode, mels }
    }

    pub fn frames(&self) -> usize {
        self.mels[0].frames
    }

    /// The model input for the window starting at `start`: `[3, length, n_mels]`, row-major.
    pub fn input(&self, start: usize, length: usize, silence: f32) -> Vec<f32> {
        let plane = length * self.mels[0].n_mels;
        let mut out = vec![0f32; 3 * plane];
        self.mode.fill_planes(&mut out, |k, dst| {
            self.mels[k].window_into(start, length, silence, dst)
        });
        out
    }
}

/// What [`write_log_mel`] wrote, and of what.
#[derive(Debug, Clone)]
pub struct LogMelFile {
    pub seconds: f64,
    pub sample_rate: u32,
    pub channels: usize,
    pub n_mels: usize,
    pub frames: usize,
}

/// Writes one signal of `stream` as a float32 `.npy` `[n_mels, frames]` (torchaudio's layout),
/// streamed: memory holds the output array and one decoder block, whatever the file's length.
pub fn write_log_mel(
    stream: AudioStream,
    channel: Channel,
    out: &std::path::Path,
) -> Result<LogMelFile, crate::error::FileError> {
    let extractor = MelExtractor::new(FeatureSettings::default());
    let mut stream = MelStream::new(stream, &[channel], &extractor);
    let mut columns = Vec::new();
    while let Some(c) = stream.next_columns()? {
        columns.extend(c.into_iter().flatten());
    }
    let n_mels = extractor.settings().n_mels;
    crate::npy::NpyArray::write_columns(out, n_mels, &columns)?;
    Ok(LogMelFile {
        seconds: stream.samples() as f64 / stream.sample_rate() as f64,
        sample_rate: stream.sample_rate(),
        channels: stream.channels(),
        n_mels,
        frames: columns.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_matches_center_true() {
        let s = FeatureSettings::default();
        assert_eq!(s.frames_for(64_358), 126);
        assert_eq!(s.frames_for(511), 1);
        assert_eq!(s.frames_for(512), 2);
    }

    #[test]
    fn silence_gives_the_log_floor() {
        let ex = MelExtractor::new(FeatureSettings::default());
        let m = ex.log_mel(&vec![0.0; 22_050]);
        assert_eq!(m.frames, 44);
        assert!(
            m.data
                .iter()
                .all(|&v| (v - 1e-6f64.ln() as f32).abs() < 1e-6)
        );
    }

    #[test]
    fn a_tone_lands_in_the_right_mel_band() {
        let ex = MelExtractor::new(FeatureSettings::default());
        let f = 1000.0;
        let x: Vec<f32> = (0..22_050)
            .map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / 22_050.0).sin() as f32)
            .collect();
        let m = ex.log_mel(&x);
        let t = 20;
        let best = (0..128)
            .max_by(|&a, &b| m.at(a, t).total_cmp(&m.at(b, t)))
            .unwrap();
        // Band centres on the HTK scale: the band whose centre is nearest 1 kHz.
        let m_max = hz_to_mel_htk(11_025.0);
        let centre = |b: usize| mel_to_hz_htk(m_max * (b + 1) as f64 / 129.0);
        let nearest = (0..128)
            .min_by(|&a, &b| (centre(a) - f).abs().total_cmp(&(centre(b) - f).abs()))
            .unwrap();
        assert!(
            best.abs_diff(nearest) <= 1,
            "peak in band {best}, expected ~{nearest}"
        );
    }

    #[test]
    fn filterbank_is_htk_triangles_without_normalisation() {
        let fb = mel_filterbank(&FeatureSettings::default());
        assert_eq!(fb.len(), 1025);
        assert_eq!(fb[0].len(), 128);
        // Unnormalised triangles peak at (nearly) 1.
        for m in 10..128 {
            let peak = fb.iter().map(|r| r[m]).fold(0.0, f64::max);
            assert!(peak > 0.5 && peak <= 1.0, "band {m} peak {peak}");
        }
    }

    #[test]
    fn analysis_windows_overlap_by_half_and_cover_the_end() {
        let w = Windowing::analysis();
        assert_eq!(w.starts(130), vec![0, 22, 44, 66, 87]);
        assert_eq!(w.starts(43), vec![0]);
        assert_eq!(w.starts(10), vec![0]);
        assert_eq!(w.starts(87), vec![0, 22, 44]);
        assert_eq!(w.starts(88), vec![0, 22, 44, 45]);
        let t = Windowing::training();
        assert_eq!(t.starts(130), vec![0, 43, 86]);
    }

    #[test]
    fn short_clips_are_padded_with_silence() {
        let mel = LogMel {
            n_mels: 2,
            frames: 1,
            data: vec![1.0, 2.0],
        };
        let mut out = vec![0.0; 6];
        mel.window_into(0, 3, -13.8, &mut out);
        assert_eq!(out, vec![1.0, 2.0, -13.8, -13.8, -13.8, -13.8]);
    }

    #[test]
    fn channel_modes_build_three_planes() {
        let mk = |v: f32| LogMel {
            n_mels: 2,
            frames: 2,
            data: vec![v; 4],
        };
        let f = ClipFeatures {
            mode: ChannelMode::Dup,
            mels: vec![mk(1.0)],
        };
        assert_eq!(f.input(0, 2, 0.0), vec![1.0; 12]);
        let f = ClipFeatures {
            mode: ChannelMode::Zero,
            mels: vec![mk(1.0)],
        };
        assert_eq!(f.input(0, 2, 0.0), [vec![1.0; 4], vec![0.0; 8]].concat());
        let f = ClipFeatures {
            mode: ChannelMode::Stereo,
            mels: vec![mk(1.0), mk(2.0), mk(3.0)],
        };
        assert_eq!(
            f.input(0, 2, 0.0),
            [vec![1.0; 4], vec![2.0; 4], vec![3.0; 4]].concat()
        );
    }
}
