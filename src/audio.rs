//! Audio input: decoding (symphonia), channel selection, and resampling to 22,050 Hz with
//! torchaudio's windowed-sinc kernel.
//!
//! Samples are `f32` in [-1, 1); integer PCM is scaled as torchaudio does (int16 / 32768,
//! int24 / 2^23, ...).

use crate::error::{FileError, Reason};
use std::fs::File;
use std::io::{Cursor, ErrorKind};
use std::path::Path;

use symphonia::core::audio::{AudioBuffer, Signal};
use symphonia::core::codecs::{CODEC_TYPE_FLAC, CODEC_TYPE_NULL, CodecType, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The sample rate of every feature computed by instrec (the paper's 22,050 Hz).
pub const TARGET_RATE: u32 = 22_050;
/// Sample rates outside these are refused: the resampler's tables grow with the rate.
pub const MIN_RATE: u32 = 1_000;
pub const MAX_RATE: u32 = 384_000;
/// More channels than this is no music recording (and would only multiply memory).
pub const MAX_CHANNELS: usize = 64;

/// Which signal of a (possibly multi-channel) recording to analyse.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Channel {
    /// The mean of all channels.
    Mono,
    /// Channel 0 (a mono file repeats its one channel).
    Left,
    /// Channel 1 (a mono file repeats its one channel).
    Right,
}

crate::util::display_as_value!(Channel);

/// Decoded audio: one `Vec<f32>` per channel, all of the same length.
#[derive(Debug, Clone)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Samples per channel.
    pub fn len(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn duration_s(&self) -> f64 {
        self.len() as f64 / self.sample_rate as f64
    }

    /// The requested signal at the file's own rate.
    pub fn channel(&self, which: Channel) -> Vec<f32> {
        select_channel(&self.channels, which)
    }

    /// The requested signal resampled to `rate`.
    pub fn channel_at(&self, which: Channel, rate: u32) -> Vec<f32> {
        resample(&self.channel(which), self.sample_rate, rate)
    }
}

/// Refuses sample rates outside [`MIN_RATE`, `MAX_RATE`].
fn check_rate(rate: u32) -> Result<(), Reason> {
    if (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(
            format!("sample rate {rate} Hz is outside the {MIN_RATE}–{MAX_RATE} Hz instrec reads")
                .into(),
        )
    }
}

/// One signal of planar channels (all of one length): their mean, the first, or the second (a
/// mono recording repeats its one channel).
pub fn select_channel(channels: &[Vec<f32>], which: Channel) -> Vec<f32> {
    match which {
        Channel::Mono if channels.len() == 1 => channels[0].clone(),
        Channel::Mono => {
            // Channel by channel (vectorised), summed in channel order as before.
            if let [a, b] = channels {
                return a.iter().zip(b).map(|(a, b)| (a + b) / 2.0).collect();
            }
            let mut out = channels[0].clone();
            for c in &channels[1..] {
                for (o, v) in out.iter_mut().zip(c) {
                    *o += v;
                }
            }
            let n = channels.len() as f32;
            out.iter_mut().for_each(|o| *o /= n);
            out
        }
        Channel::Left => channels[0].clone(),
        Channel::Right => channels[1.min(channels.len() - 1)].clone(),
    }
}

/// Decodes a file of any format symphonia knows (WAV, FLAC, OGG/Vorbis, MP3, AIFF, M4A/AAC, ...).
pub fn decode_file(path: &Path) -> Result<Audio, FileError> {
    AudioStream::open(path)?.collect()
}

/// Decodes an in-memory file; `ext` is a format hint such as `"wav"`, `name` names it in errors.
pub fn decode_bytes(bytes: Vec<u8>, ext: Option<&str>, name: &str) -> Result<Audio, FileError> {
    AudioStream::from_bytes(bytes, ext, name)?.collect()
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound => "no such file".into(),
        ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// File extensions of the formats instrec decodes (through symphonia): WAV, FLAC, Ogg Vorbis or
/// FLAC, MP3, AAC and ALAC in MP4, AIFF, CAF, and Matroska audio with one of those codecs.
pub const DECODED_EXTENSIONS: [&str; 12] = [
    "wav", "flac", "ogg", "mp3", "m4a", "aac", "aif", "aiff", "oga", "caf", "mka", "webm",
];

/// File extensions of audio formats that no decoder here reads: such a file is refused with
/// `format not supported: EXT` before anything is read, and a library walk lists it.
pub const UNSUPPORTED_EXTENSIONS: [&str; 11] = [
    "opus", "wma", "ape", "wv", "mpc", "ac3", "dts", "dsf", "dff", "tta", "spx",
];

/// The names of codecs that a container may hold but no decoder here reads.
fn unsupported_codec(codec: CodecType) -> Option<&'static str> {
    use symphonia::core::codecs as c;
    [
        (c::CODEC_TYPE_OPUS, "opus"),
        (c::CODEC_TYPE_SPEEX, "speex"),
        (c::CODEC_TYPE_MUSEPACK, "musepack"),
        (c::CODEC_TYPE_WMA, "wma"),
        (c::CODEC_TYPE_WAVPACK, "wavpack"),
        (c::CODEC_TYPE_MONKEYS_AUDIO, "ape"),
        (c::CODEC_TYPE_TTA, "tta"),
        (c::CODEC_TYPE_EAC3, "eac3"),
        (c::CODEC_TYPE_AC4, "ac4"),
        (c::CODEC_TYPE_DCA, "dts"),
        (c::CODEC_TYPE_ATRAC1, "atrac"),
        (c::CODEC_TYPE_ATRAC3, "atrac3"),
        (c::CODEC_TYPE_ATRAC3PLUS, "atrac3plus"),
        (c::CODEC_TYPE_ATRAC9, "atrac9"),
    ]
    .into_iter()
    .find_map(|(t, name)| (t == codec).then_some(name))
}

/// `format not supported: EXT` for a name whose extension is a known undecodable format.
fn unsupported_extension(ext: Option<&str>) -> Option<String> {
    let ext = ext?.to_ascii_lowercase();
    UNSUPPORTED_EXTENSIONS
        .contains(&ext.as_str())
        .then(|| format!("format not supported: {ext}"))
}

/// Lossless codecs whose header states the exact number of frames, so a shortfall means the
/// file was truncated.
fn frame_count_is_exact(codec: CodecType) -> bool {
    codec == CODEC_TYPE_FLAC
        || symphonia::default::get_codecs()
            .get_codec(codec)
            .is_some_and(|d| d.short_name.starts_with("pcm"))
}

/// symphonia's AIFF reader counts the 8 bytes of the SSND chunk's offset and block-size fields as
/// samples, so a complete AIFF declares up to 8 bytes' worth of frames more than it holds (2 for
/// 16-bit stereo); so many missing PCM frames are not a truncation. FLAC's count is exact.
fn pcm_header_slack(params: &symphonia::core::codecs::CodecParameters) -> u64 {
    if params.codec == CODEC_TYPE_FLAC {
        return 0;
    }
    let channels = params.channels.map_or(1, |c| c.count().max(1)) as u64;
    let bits = params
        .bits_per_coded_sample
        .or(params.bits_per_sample)
        .unwrap_or(8)
        .max(8) as u64;
    8u64.div_ceil(channels * bits.div_ceil(8))
}

/// The lowest level this crate reports, dBFS (digital silence, or nothing decoded).
pub const LEVEL_FLOOR_DBFS: f64 = -120.0;

/// A mean square (full scale ±1) in dBFS, floored at [`LEVEL_FLOOR_DBFS`].
pub fn power_dbfs(mean_square: f64) -> f64 {
    if mean_square.is_finite() && mean_square > 0.0 {
        (10.0 * mean_square.log10()).max(LEVEL_FLOOR_DBFS)
    } else {
        LEVEL_FLOOR_DBFS
    }
}

/// A recording's loudness: the RMS and the peak of its samples, dBFS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub rms_dbfs: f64,
    pub peak_dbfs: f64,
}

impl Level {
    /// The level of samples in memory (non-finite ones count in neither).
    pub fn of(samples: &[f32]) -> Self {
        let finite = || samples.iter().filter(|v| v.is_finite()).map(|&v| v as f64);
        let sum_sq: f64 = finite().map(|v| v * v).sum();
        let peak = finite().fold(0f64, |p, v| p.max(v.abs()));
        Level {
            rms_dbfs: power_dbfs(sum_sq / samples.len().max(1) as f64),
            peak_dbfs: power_dbfs(peak * peak),
        }
    }
}

/// A decoder that hands out the audio block by block (planar, one `Vec` per channel), so a long
/// file can be processed in constant memory. `decode_file` collects it.
pub struct AudioStream {
    name: String,
    format: Box<dyn symphonia::core::formats::FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::Decoder>,
    track_id: u32,
    pub sample_rate: u32,
    pub channels: usize,
    expected_frames: Option<u64>,
    /// Frames of `expected_frames` that may be missing without truncation (see
    /// [`pcm_header_slack`]).
    frame_slack: u64,
    decoded: u64,
    bad_packets: usize,
    pending: Option<Vec<Vec<f32>>>,
    buf: Option<AudioBuffer<f32>>,
    finished: bool,
}

impl AudioStream {
    pub fn open(path: &Path) -> Result<Self, FileError> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| FileError::new(&name, io_reason(&e)))?;
        if meta.is_dir() {
            return Err(FileError::new(&name, "is a directory, not an audio file"));
        }
        // A pipe or device has no length to check and cannot be read twice (quiet files are).
        if !meta.is_file() {
            return Err(FileError::new(
                &name,
                "not a regular file (a pipe, socket or device): save the audio to a file first",
            ));
        }
        if meta.len() == 0 {
            return Err(FileError::new(&name, "empty file (0 bytes)"));
        }
        let ext = path.extension().and_then(|e| e.to_str());
        if let Some(reason) = unsupported_extension(ext) {
            return Err(FileError::new(&name, reason));
        }
        let file = File::open(path).map_err(|e| FileError::new(&name, io_reason(&e)))?;
        Self::from_source(Box::new(file), ext, &name)
    }

    /// A stream over an in-memory file; `ext` is a format hint, `name` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, ext: Option<&str>, name: &str) -> Result<Self, FileError> {
        if bytes.is_empty() {
            return Err(FileError::new(name, "empty file (0 bytes)"));
        }
        Self::from_source(Box::new(Cursor::new(bytes)), ext, name)
    }

    fn err(&self, reason: impl Into<String>) -> FileError {
        FileError::new(&self.name, reason)
    }

    fn from_source(
        source: Box<dyn MediaSource>,
        ext: Option<&str>,
        name: &str,
    ) -> Result<Self, FileError> {
        contain_panics(name, || Self::open_source(source, ext, name))?
    }

    fn open_source(
        source: Box<dyn MediaSource>,
        ext: Option<&str>,
        name: &str,
    ) -> Result<Self, FileError> {
        let err = |reason: String| FileError::new(name, reason);
        let mss = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = ext {
            hint.with_extension(ext);
        }
        let format_opts = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let probed = symphonia::default::get_probe()
            .format(&hint, mss, &format_opts, &MetadataOptions::default())
            .map_err(|e| match e {
                SymError::Unsupported(_) => {
                    err("not a recognised audio file (unknown format)".into())
                }
                SymError::IoError(ref io) if io.kind() == ErrorKind::UnexpectedEof => {
                    err("truncated or not an audio file (ended inside its header)".into())
                }
                other => err(format!("cannot read audio header: {other}")),
            })?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| err("contains no audio track".into()))?;
        let track_id = track.id;
        let params = track.codec_params.clone();
        if let Some(ch) = params.channels
            && ch.count() == 0
        {
            return Err(err("has zero channels".into()));
        }
        // Checked before decoding (a decoder sizes its buffers by the header) and after.
        if let Some(rate) = params.sample_rate {
            check_rate(rate).map_err(|e| err(e.into()))?;
        }
        if let Some(ch) = params.channels
            && ch.count() > MAX_CHANNELS
        {
            return Err(err(format!(
                "has {} channels, more than {MAX_CHANNELS}",
                ch.count()
            )));
        }
        if let Some(codec) = unsupported_codec(params.codec) {
            return Err(err(format!("format not supported: {codec}")));
        }
        let decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| err(format!("unsupported codec: {e}")))?;
        let mut stream = Self {
            name: name.to_string(),
            format,
            decoder,
            track_id,
            sample_rate: params.sample_rate.unwrap_or(0),
            channels: params.channels.map_or(0, |c| c.count()),
            expected_frames: params
                .n_frames
                .filter(|_| frame_count_is_exact(params.codec)),
            frame_slack: pcm_header_slack(&params),
            decoded: 0,
            bad_packets: 0,
            pending: None,
            buf: None,
            finished: false,
        };
        // Decode up to the first samples: they fix the channel count and rate, and a file
        // without any audio fails here, at open.
        match stream.decode_next()? {
            Some(block) => stream.pending = Some(block),
            None => {
                return Err(stream.err(if stream.bad_packets > 0 {
                    format!(
                        "no audio could be decoded ({} corrupt packets)",
                        stream.bad_packets
                    )
                } else {
                    "contains no audio samples".to_string()
                }));
            }
        }
        check_rate(stream.sample_rate).map_err(|e| stream.err(e))?;
        Ok(stream)
    }

    /// Reads the whole stream into memory.
    pub fn collect(mut self) -> Result<Audio, FileError> {
        let mut channels = vec![Vec::new(); self.channels];
        while let Some(block) = self.next_block()? {
            for (c, b) in channels.iter_mut().zip(block) {
                c.extend(b);
            }
        }
        Ok(Audio {
            sample_rate: self.sample_rate,
            channels,
        })
    }

    /// The next block of samples, or `None` at the end of the stream.
    pub fn next_block(&mut self) -> Result<Option<Vec<Vec<f32>>>, FileError> {
        if let Some(b) = self.pending.take() {
            return Ok(Some(b));
        }
        self.decode_next()
    }

    /// The next decoded block: a decoder panic becomes an error naming the file, and a block
    /// with NaN or infinite samples is rejected, so nothing non-finite reaches the features.
    fn decode_next(&mut self) -> Result<Option<Vec<Vec<f32>>>, FileError> {
        let name = self.name.clone();
        let block = match contain_panics(&name, || self.decode_raw()) {
            Ok(r) => r?,
            Err(e) => {
                self.finished = true;
                return Err(e);
            }
        };
        if let Some(b) = &block {
            let bad = b.iter().flatten().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                self.finished = true;
                let first = b
                    .iter()
                    .filter_map(|c| c.iter().position(|v| !v.is_finite()))
                    .min()
                    .unwrap_or(0);
                let at = (self.decoded - b[0].len() as u64 + first as u64) as f64
                    / self.sample_rate.max(1) as f64;
                return Err(self.err(format!(
                    "{bad} non-finite samples (NaN/Inf) at t = {at:.3} s"
                )));
            }
        }
        Ok(block)
    }

    fn decode_raw(&mut self) -> Result<Option<Vec<Vec<f32>>>, FileError> {
        while !self.finished {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    self.finished = true;
                    break;
                }
                Err(SymError::ResetRequired) => {
                    self.finished = true;
                    break;
                }
                Err(e) => {
                    if self.decoded == 0 {
                        return Err(self.err(format!("no audio could be decoded ({e})")));
                    }
                    self.finished = true;
                    break;
                }
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            match self.decoder.decode(&packet) {
                Ok(decoded) => {
                    let spec = *decoded.spec();
                    let n_ch = spec.channels.count();
                    if n_ch == 0 {
                        return Err(self.err("has zero channels"));
                    }
                    if self.decoded == 0 && self.pending.is_none() {
                        self.channels = n_ch;
                    } else if self.channels != n_ch {
                        return Err(self.err(format!(
                            "channel count changes mid-stream ({} then {n_ch})",
                            self.channels
                        )));
                    }
                    if self.sample_rate == 0 {
                        self.sample_rate = spec.rate;
                    }
                    if decoded.frames() == 0 {
                        continue;
                    }
                    // Planar f32 (i16 → s / 32768, as torchaudio): each channel is one copy.
                    let b = match &mut self.buf {
                        Some(b) if b.capacity() >= decoded.capacity() && *b.spec() == spec => b,
                        _ => self
                            .buf
                            .insert(AudioBuffer::new(decoded.capacity() as u64, spec)),
                    };
                    decoded.convert(b);
                    let block: Vec<Vec<f32>> = (0..n_ch).map(|c| b.chan(c).to_vec()).collect();
                    self.decoded += block[0].len() as u64;
                    return Ok(Some(block));
                }
                Err(SymError::DecodeError(_)) | Err(SymError::IoError(_)) => self.bad_packets += 1,
                Err(e) => return Err(self.err(format!("decoding failed: {e}"))),
            }
        }
        if let Some(expected) = self.expected_frames
            && self.decoded > 0
            && self.decoded + self.frame_slack < expected
        {
            return Err(self.err(format!(
                "truncated: the header declares {expected} samples per channel, only {} could be read",
                self.decoded
            )));
        }
        Ok(None)
    }
}

thread_local! {
    static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside a decoder call whose panic instrec turns into an error (a panic
/// hook can stay quiet then).
pub fn panic_is_contained() -> bool {
    CONTAINING.with(|c| c.get())
}

/// Runs a decoder call; a panic in it (a decoder bug on a hostile file) becomes an error that
/// names the file instead of ending the process.
fn contain_panics<T>(name: &str, f: impl FnOnce() -> T) -> Result<T, FileError> {
    let before = CONTAINING.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(before));
    r.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        FileError::new(name, format!("the decoder failed on this file ({msg})"))
    })
}

/// torchaudio's resampler over a stream: push blocks, then `finish`; the output equals
/// [`resample`] of the whole signal, sample for sample.
pub struct StreamResampler {
    kernel: Option<Resampler>,
    /// Input from absolute index `base` on.
    buf: Vec<f32>,
    base: usize,
    received: usize,
    step: usize,
    produced: usize,
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Self {
        Self {
            kernel: (from != to).then(|| Resampler::new(from, to)),
            buf: Vec::new(),
            base: 0,
            received: 0,
            step: 0,
            produced: 0,
        }
    }

    /// Adds input and appends every output sample that no later input can change.
    pub fn push(&mut self, x: &[f32], out: &mut Vec<f32>) {
        let Some(r) = &self.kernel else {
            out.extend_from_slice(x);
            return;
        };
        let (orig, taps, width) = (r.orig, r.taps, r.width);
        self.buf.extend_from_slice(x);
        self.received += x.len();
        // A step is final once its whole filter span has arrived.
        while self.step * orig + taps - width <= self.received {
            if self.emit_halving_run(out) == 0 {
                self.emit_step(out, usize::MAX);
            }
        }
        self.trim();
    }

    /// Flushes the tail (zero padding past the end, as torchaudio pads).
    pub fn finish(&mut self, out: &mut Vec<f32>) {
        let Some(r) = &self.kernel else {
            return;
        };
        let target = r.output_len(self.received);
        while self.produced < target {
            self.emit_step(out, target);
        }
    }

    fn emit_step(&mut self, out: &mut Vec<f32>, target: usize) {
        let r = self.kernel.as_ref().expect("resampling");
        let start = (self.step * r.orig) as isize - r.width as isize;
        let at = |i: isize| -> f32 {
            if i < 0 || i as usize >= self.received {
                0.0
            } else {
                self.buf[i as usize - self.base]
            }
        };
        // Whole padded spans inside the buffer take the fast path.
        let inside = start >= 0 && (start as usize + r.padded) <= self.buf.len() + self.base;
        let mut edge = Vec::new();
        for phase in 0..r.new {
            if self.produced == target {
                break;
            }
            let k = &r.kernel[phase * r.padded..][..r.padded];
            // In f32, as torchaudio's conv1d; the same sum at the edges, where the span is copied
            // out with zeros past either end, so a stream equals the whole signal bit for bit.
            let acc = if r.is_halving() {
                // The order emit_halving_run sums in.
                (0..r.taps).fold(0f32, |acc, j| acc + k[j] * at(start + j as isize))
            } else if inside {
                crate::util::dot(&self.buf[start as usize - self.base..][..r.padded], k)
            } else {
                edge.clear();
                edge.extend((0..r.padded as isize).map(|j| at(start + j)));
                crate::util::dot(&edge, k)
            };
            out.push(acc);
            self.produced += 1;
        }
        self.step += 1;
    }

    /// 44.1 → 22.05 kHz (every IRMAS file): the outputs of the steps whose span lies inside
    /// the buffer, eight at a time across outputs from the even and odd samples, each summed
    /// over the taps in order (as `emit_step` sums a single one). Returns the steps emitted.
    fn emit_halving_run(&mut self, out: &mut Vec<f32>) -> usize {
        let Some(r) = self.kernel.as_ref().filter(|r| r.is_halving()) else {
            return 0;
        };
        let (taps, width) = (r.taps, r.width);
        let first = self.step;
        if 2 * first < width + self.base || self.received + width < taps {
            return 0;
        }
        // Steps s with 2s − width + taps ≤ received.
        let end = (self.received + width - taps) / 2 + 1;
        if end < first + 8 {
            return 0;
        }
        let m = end - first;
        let x = &self.buf[2 * first - width - self.base..];
        let lanes = m + taps / 2;
        let (mut even, mut odd) = (vec![0f32; lanes], vec![0f32; lanes]);
        for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(x.chunks(2)) {
            *e = pair[0];
            *o = pair.get(1).copied().unwrap_or(0.0);
        }
        let k = &r.kernel[..taps];
        let tap = |i: usize, j: usize| {
            if j.is_multiple_of(2) {
                even[i + j / 2]
            } else {
                odd[i + j / 2]
            }
        };
        out.reserve(m);
        let mut i = 0;
        while i + 8 <= m {
            let mut acc = [0f32; 8];
            let lane =
                |v: &[f32], at: usize| -> [f32; 8] { v[at..at + 8].try_into().expect("8 lanes") };
            for (q, pair) in k.chunks(2).enumerate() {
                let e = lane(&even, i + q);
                for l in 0..8 {
                    acc[l] += pair[0] * e[l];
                }
                if let Some(&k1) = pair.get(1) {
                    let o = lane(&odd, i + q);
                    for l in 0..8 {
                        acc[l] += k1 * o[l];
                    }
                }
            }
            out.extend_from_slice(&acc);
            i += 8;
        }
        for i in i..m {
            out.push((0..taps).fold(0f32, |acc, j| acc + k[j] * tap(i, j)));
        }
        self.step += m;
        self.produced += m;
        m
    }

    /// Drops input no future step reads.
    fn trim(&mut self) {
        let r = self.kernel.as_ref().expect("resampling");
        let keep_from = (self.step * r.orig).saturating_sub(r.width);
        if keep_from > self.base + 65_536 {
            self.buf.drain(..keep_from - self.base);
            self.base = keep_from;
        }
    }
}

/// Resamples `x` from `from` Hz to `to` Hz exactly as `torchaudio.functional.resample` does with its
/// defaults (`sinc_interp_hann`, `lowpass_filter_width=6`, `rolloff=0.99`): a polyphase windowed-sinc
/// filter over the rates divided by their GCD, output length `ceil(len * to / from)`.
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    let mut r = StreamResampler::new(from, to);
    let mut out = Vec::with_capacity(x.len() * to as usize / from as usize + 1);
    r.push(x, &mut out);
    r.finish(&mut out);
    out
}

/// torchaudio's resampling kernel, built once for a pair of rates.
#[derive(Debug, Clone)]
pub struct Resampler {
    /// Input step per group of output samples (`from / gcd`).
    orig: usize,
    /// Output samples per group (`to / gcd`).
    new: usize,
    /// Half-width of the filter in input samples.
    width: usize,
    /// `new` phases × `padded` coefficients: `taps` of them, then zeros up to a multiple of 8 so
    /// that each output is whole 8-lane products (a zero tap adds an exact 0).
    kernel: Vec<f32>,
    taps: usize,
    padded: usize,
}

impl Resampler {
    pub const LOWPASS_FILTER_WIDTH: f64 = 6.0;
    pub const ROLLOFF: f64 = 0.99;

    pub fn new(from: u32, to: u32) -> Self {
        assert!(from > 0 && to > 0, "sample rates must be positive");
        let g = gcd(from as u64, to as u64);
        let orig = (from as u64 / g) as usize;
        let new = (to as u64 / g) as usize;
        let lpw = Self::LOWPASS_FILTER_WIDTH;
        let base_freq = orig.min(new) as f64 * Self::ROLLOFF;
        let width = (lpw * orig as f64 / base_freq).ceil() as usize;
        let taps = 2 * width + orig;
        let padded = taps.next_multiple_of(8);
        let scale = base_freq / orig as f64;
        let mut kernel = Vec::with_capacity(new * padded);
        for phase in 0..new {
            for k in 0..taps {
                let idx = (k as f64 - width as f64) / orig as f64;
                let mut t = (-(phase as f64) / new as f64 + idx) * base_freq;
                t = t.clamp(-lpw, lpw);
                let window = (t * std::f64::consts::PI / lpw / 2.0).cos().powi(2);
                let tp = t * std::f64::consts::PI;
                let sinc = if tp == 0.0 { 1.0 } else { tp.sin() / tp };
                // torchaudio builds the kernel in the input's dtype (float32).
                kernel.push((sinc * window * scale) as f32);
            }
            kernel.resize((phase + 1) * padded, 0.0);
        }
        Self {
            orig,
            new,
            width,
            kernel,
            taps,
            padded,
        }
    }

    /// Exactly 2:1 (44.1 → 22.05 kHz), which has its own vectorised loop.
    fn is_halving(&self) -> bool {
        self.orig == 2 && self.new == 1
    }

    /// Output length for `n` input samples.
    pub fn output_len(&self, n: usize) -> usize {
        (self.new * n).div_ceil(self.orig)
    }
}

/// Writes planar channels as a 16-bit PCM WAV file, atomically. Samples are clipped to [-1, 1)
/// and rounded (`round(x * 32768)`), the inverse of torchaudio's int16 / 32768.
pub fn write_wav_i16(path: &Path, rate: u32, channels: &[Vec<f32>]) -> std::io::Result<()> {
    let n_ch = channels.len() as u16;
    let frames = channels.first().map_or(0, Vec::len);
    let data_len = frames * channels.len() * 2;
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&n_ch.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2 * n_ch as u32).to_le_bytes());
    out.extend_from_slice(&(2 * n_ch).to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    for i in 0..frames {
        for c in channels {
            let v = (c[i] as f64 * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    crate::util::write_atomic(path, &out)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit AIFF as ffmpeg and most tools write it: COMM states the frames, SSND holds them
    /// after its 8 bytes of offset and block size.
    fn aiff(channels: u16, samples: &[i16]) -> Vec<u8> {
        let frames = (samples.len() / channels as usize) as u32;
        let mut comm = Vec::new();
        comm.extend(channels.to_be_bytes());
        comm.extend(frames.to_be_bytes());
        comm.extend(16u16.to_be_bytes());
        // 22,050 Hz as an 80-bit extended float.
        comm.extend([0x40, 0x0D, 0xAC, 0x44, 0, 0, 0, 0, 0, 0]);
        let mut ssnd = vec![0u8; 8];
        for v in samples {
            ssnd.extend(v.to_be_bytes());
        }
        let mut body = b"AIFF".to_vec();
        for (id, chunk) in [(b"COMM", comm), (b"SSND", ssnd)] {
            body.extend(id);
            body.extend((chunk.len() as u32).to_be_bytes());
            body.extend(chunk);
        }
        let mut out = b"FORM".to_vec();
        out.extend((body.len() as u32).to_be_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn a_complete_aiff_is_not_truncated_and_a_cut_one_is() {
        let x: Vec<i16> = (0..2 * 4000).map(|i| ((i * 37) % 2000) as i16).collect();
        let bytes = aiff(2, &x);
        let a = decode_bytes(bytes.clone(), Some("aiff"), "full.aiff").unwrap();
        assert_eq!(
            (a.sample_rate, a.channels.len(), a.channels[0].len()),
            (22_050, 2, 4000)
        );
        // 100 frames cut off the end: a truncation, named.
        let cut = bytes[..bytes.len() - 400].to_vec();
        let e = decode_bytes(cut, Some("aiff"), "cut.aiff").unwrap_err();
        assert!(e.to_string().contains("cut.aiff: truncated"), "{e}");
    }

    #[test]
    fn resample_lengths_follow_torchaudio() {
        // ceil(n * new / orig)
        assert_eq!(Resampler::new(44_100, 22_050).output_len(132_299), 66_150);
        assert_eq!(Resampler::new(16_000, 22_050).output_len(20_800), 28_665);
        assert_eq!(resample(&[0.0; 100], 22_050, 22_050).len(), 100);
    }

    #[test]
    fn resample_keeps_a_low_tone_and_removes_one_above_nyquist() {
        let tone = |f: f64, rate: u32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin() as f32)
                .collect()
        };
        let rms =
            |x: &[f32]| (x.iter().map(|v| (v * v) as f64).sum::<f64>() / x.len() as f64).sqrt();
        let low = resample(&tone(440.0, 48_000, 48_000), 48_000, 22_050);
        let mid = &low[2_000..20_000];
        assert!((rms(mid) - 0.5f64.sqrt()).abs() < 0.01, "rms {}", rms(mid));
        // A 16 kHz tone is above the new Nyquist (11,025 Hz): it must be filtered out.
        let high = resample(&tone(16_000.0, 48_000, 48_000), 48_000, 22_050);
        assert!(rms(&high[2_000..20_000]) < 1e-3);
    }

    #[test]
    fn mono_is_the_channel_mean_and_mono_files_repeat() {
        let a = Audio {
            sample_rate: 8_000,
            channels: vec![vec![1.0, 0.0], vec![0.0, -1.0]],
        };
        assert_eq!(a.channel(Channel::Mono), vec![0.5, -0.5]);
        assert_eq!(a.channel(Channel::Right), vec![0.0, -1.0]);
        let m = Audio {
            sample_rate: 8_000,
            channels: vec![vec![0.25, 0.5]],
        };
        assert_eq!(m.channel(Channel::Left), m.channel(Channel::Right));
    }
}
