//! The audio front end against torchaudio's own numbers (tests/fixtures/frontend, and the full set
//! in ../shared/fixtures/frontend when it is there) and across codecs and sample formats.

mod common;

use std::path::{Path, PathBuf};

use common::{WavFormat, diff_stats, frontend_fixtures, wav_bytes};
use instrec::audio::{Channel, TARGET_RATE, decode_bytes, decode_file};
use instrec::features::{FeatureSettings, LogMel, MelExtractor};
use instrec::npy::NpyArray;

/// ln(1e-4): values below it are near-silence and excluded from the resampled-file statistics.
const LOUD: f32 = -9.210_340_4;

fn read_npy(path: &Path) -> NpyArray {
    NpyArray::read(path).unwrap_or_else(|e| panic!("{e}"))
}

/// The vendored fixtures, and the full set in ../shared when it is there.
fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![frontend_fixtures()];
    dirs.extend(common::shared().map(|s| s.join("fixtures/frontend")));
    dirs
}

fn fixture_names(dir: &Path) -> Vec<(String, u32)> {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let mut names: Vec<(String, u32)> = index
        .as_object()
        .expect("index.json is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v["sample_rate"].as_u64().unwrap() as u32))
        .collect();
    names.sort();
    assert!(
        names.len() >= 5,
        "{}: expected at least five fixture clips, found {}",
        dir.display(),
        names.len()
    );
    names
}

fn check_against(mel: &LogMel, expected: &NpyArray, rate: u32, what: &str) -> (f64, f64, f64) {
    assert_eq!(expected.shape.len(), 2, "{what}: fixture is not 2-D");
    assert_eq!(expected.shape[0], 128, "{what}: fixture mel count");
    assert_eq!(mel.frames, expected.shape[1], "{what}: frame count differs");
    if rate == TARGET_RATE {
        let stats = diff_stats(&mel.data, &expected.data, |_| true);
        assert!(stats.0 <= 1e-3, "{what}: max |Δ| {:.3e} > 1e-3", stats.0);
        stats
    } else {
        let stats = diff_stats(&mel.data, &expected.data, |i| expected.data[i] > LOUD);
        assert!(stats.1 <= 0.01, "{what}: mean |Δ| {:.4} > 0.01", stats.1);
        assert!(stats.2 <= 0.1, "{what}: p99 |Δ| {:.4} > 0.1", stats.2);
        stats
    }
}

#[test]
fn log_mel_matches_torchaudio_on_every_fixture_and_channel() {
    let ex = MelExtractor::new(FeatureSettings::default());
    for dir in fixture_dirs() {
        for (name, rate) in fixture_names(&dir) {
            let audio = decode_file(&dir.join(&name)).unwrap();
            assert_eq!(audio.sample_rate, rate, "{name}");
            let stem = name.trim_end_matches(".wav");
            for (channel, suffix) in [
                (Channel::Mono, "logmel"),
                (Channel::Left, "logmel_left"),
                (Channel::Right, "logmel_right"),
            ] {
                let expected = read_npy(&dir.join(format!("{stem}.{suffix}.npy")));
                let mel = ex.log_mel_of(&audio, channel);
                let (max, mean, p99) =
                    check_against(&mel, &expected, rate, &format!("{name} {suffix}"));
                eprintln!(
                    "{name:<26} {suffix:<13} rate {rate:>5}  frames {:>4}  max|Δ| {max:.2e}  mean|Δ| {mean:.2e}  p99|Δ| {p99:.2e}",
                    mel.frames
                );
            }
        }
    }
}

#[test]
fn mono_22k_signal_matches_torchaudio_resample() {
    for dir in fixture_dirs() {
        for (name, rate) in fixture_names(&dir) {
            let audio = decode_file(&dir.join(&name)).unwrap();
            let ours = audio.channel_at(Channel::Mono, TARGET_RATE);
            let stem = name.trim_end_matches(".wav");
            let expected = read_npy(&dir.join(format!("{stem}.mono22k.npy")));
            assert_eq!(ours.len(), expected.data.len(), "{name}: sample count");
            let (max, mean, _) = diff_stats(&ours, &expected.data, |_| true);
            eprintln!("{name:<26} rate {rate:>5}  waveform max|Δ| {max:.2e}  mean|Δ| {mean:.2e}");
            assert!(max <= 1e-4, "{name}: waveform max |Δ| {max:.2e}");
        }
    }
}

/// A lossy codec changes the signal, above all its quiet parts: compare the loud part of the
/// log-mel, with a tolerance that a wrong channel, gain, rate or time offset breaks by far
/// (see `codec_tolerance_catches_a_wrong_channel`).
fn codec_mean_diff(path: &Path, fixture: &str, channel: Channel, suffix: &str) -> f64 {
    let dir = frontend_fixtures();
    let expected = read_npy(&dir.join(format!("{fixture}.{suffix}.npy")));
    let ex = MelExtractor::new(FeatureSettings::default());
    let audio = decode_file(path).unwrap_or_else(|e| panic!("{e}"));
    let mel = ex.log_mel_of(&audio, channel);
    let frames = expected.shape[1];
    assert!(
        mel.frames.abs_diff(frames) <= 2,
        "{}: {} frames, WAV has {frames}",
        path.display(),
        mel.frames
    );
    // Compare the common frames.
    let n = mel.frames.min(frames);
    let cut = |data: &[f32], f: usize| -> Vec<f32> {
        (0..128)
            .flat_map(|m| data[m * f..m * f + n].to_vec())
            .collect()
    };
    let a = cut(&mel.data, mel.frames);
    let b = cut(&expected.data, frames);
    // The part a listener hears: bins within 40 dB (ln 10^4) of the clip's loudest.
    let top = b.iter().copied().fold(f32::MIN, f32::max);
    let (max, mean, p99) = diff_stats(&a, &b, |i| b[i] > top - 9.21);
    eprintln!(
        "{:<28} {suffix:<13} mean|Δ| {mean:.4}  p99|Δ| {p99:.3}  max|Δ| {max:.2}",
        path.file_name().unwrap().to_string_lossy()
    );
    mean
}

/// Mean |Δ| allowed on the loud part of a lossy file's log-mel.
const LOSSY_TOL: f64 = 0.2;

fn codec_check(path: &Path, fixture: &str, channel: Channel, suffix: &str, mean_tol: f64) {
    let mean = codec_mean_diff(path, fixture, channel, suffix);
    assert!(
        mean <= mean_tol,
        "{}: mean |Δ| {mean:.4} > {mean_tol}",
        path.display()
    );
}

#[test]
fn codec_tolerance_catches_a_wrong_channel_or_gain() {
    // The right channel of the lossy files compared with the left channel's log-mel.
    for f in ["chord_stereo_44k.ogg", "chord_stereo_44k.mp3"] {
        let mean = codec_mean_diff(&data(f), "chord_stereo_44k", Channel::Right, "logmel_left");
        assert!(
            mean > 2.0 * LOSSY_TOL,
            "{f}: wrong channel only {mean:.3} away"
        );
    }
    // Half the amplitude is ln 4 ≈ 1.39 away everywhere.
    let dir = frontend_fixtures();
    let wav = decode_file(&dir.join("voice_22k.wav")).unwrap();
    let half: Vec<f32> = wav.channels[0].iter().map(|v| v * 0.5).collect();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("half.wav");
    std::fs::write(&p, wav_bytes(1, 22_050, WavFormat::F32, &half)).unwrap();
    let mean = codec_mean_diff(&p, "voice_22k", Channel::Mono, "logmel");
    assert!(mean > 2.0 * LOSSY_TOL, "half gain only {mean:.3} away");
}

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

#[test]
fn flac_decodes_losslessly() {
    for (ch, suffix) in [
        (Channel::Mono, "logmel"),
        (Channel::Left, "logmel_left"),
        (Channel::Right, "logmel_right"),
    ] {
        codec_check(
            &data("chord_stereo_44k.flac"),
            "chord_stereo_44k",
            ch,
            suffix,
            0.01,
        );
    }
    // Lossless: the samples themselves are identical to the WAV's.
    let wav = decode_file(&frontend_fixtures().join("chord_stereo_44k.wav")).unwrap();
    let flac = decode_file(&data("chord_stereo_44k.flac")).unwrap();
    assert_eq!(wav.channels, flac.channels);
}

#[test]
fn ogg_vorbis_decodes_within_codec_tolerance() {
    for (ch, suffix) in [
        (Channel::Mono, "logmel"),
        (Channel::Left, "logmel_left"),
        (Channel::Right, "logmel_right"),
    ] {
        codec_check(
            &data("chord_stereo_44k.ogg"),
            "chord_stereo_44k",
            ch,
            suffix,
            LOSSY_TOL,
        );
    }
    codec_check(
        &data("voice_22k.ogg"),
        "voice_22k",
        Channel::Mono,
        "logmel",
        LOSSY_TOL,
    );
}

#[test]
fn mp3_decodes_within_codec_tolerance() {
    for (ch, suffix) in [
        (Channel::Mono, "logmel"),
        (Channel::Left, "logmel_left"),
        (Channel::Right, "logmel_right"),
    ] {
        codec_check(
            &data("chord_stereo_44k.mp3"),
            "chord_stereo_44k",
            ch,
            suffix,
            LOSSY_TOL,
        );
    }
    codec_check(
        &data("voice_22k.mp3"),
        "voice_22k",
        Channel::Mono,
        "logmel",
        LOSSY_TOL,
    );
}

#[test]
fn wav_sample_formats_scale_like_torchaudio() {
    // The voice fixture is 16-bit: every wider format holds its samples exactly.
    let dir = frontend_fixtures();
    let reference = decode_file(&dir.join("voice_22k.wav")).unwrap();
    let x = &reference.channels[0];
    for format in [
        WavFormat::I24,
        WavFormat::I32,
        WavFormat::F32,
        WavFormat::F64,
    ] {
        let bytes = wav_bytes(1, 22_050, format, x);
        let a = decode_bytes(bytes, Some("wav"), "test").unwrap();
        assert_eq!(a.sample_rate, 22_050);
        let (max, _, _) = diff_stats(&a.channels[0], x, |_| true);
        assert!(max == 0.0, "{format:?}: max |Δ| {max:e}");
    }
    let a = decode_bytes(wav_bytes(1, 22_050, WavFormat::U8, x), Some("wav"), "t").unwrap();
    let (max, _, _) = diff_stats(&a.channels[0], x, |_| true);
    assert!(max <= 1.0 / 256.0 + 1e-6, "8-bit max |Δ| {max}");
    // int16 / 32768, exactly.
    let b = decode_bytes(
        wav_bytes(1, 8_000, WavFormat::I16, &[-1.0, 0.5, 32767.0 / 32768.0]),
        Some("wav"),
        "t",
    )
    .unwrap();
    assert_eq!(b.channels[0], vec![-1.0, 0.5, 32767.0 / 32768.0]);
}

#[test]
fn many_channels_average_to_mono() {
    // Four channels with constant values: mono is their mean; left/right are channels 0/1.
    let frames = 2_000;
    let vals = [0.5f32, -0.25, 0.125, 0.0];
    let interleaved: Vec<f32> = (0..frames).flat_map(|_| vals).collect();
    let a = decode_bytes(
        wav_bytes(4, 16_000, WavFormat::F32, &interleaved),
        Some("wav"),
        "t",
    )
    .unwrap();
    assert_eq!(a.channels.len(), 4);
    assert!(
        a.channel(Channel::Mono)
            .iter()
            .all(|&v| (v - 0.09375).abs() < 1e-7)
    );
    assert!(a.channel(Channel::Left).iter().all(|&v| v == 0.5));
    assert!(a.channel(Channel::Right).iter().all(|&v| v == -0.25));
}

/// Feeds `x` in blocks of varying sizes.
fn blocks(x: &[f32]) -> Vec<&[f32]> {
    let sizes = [1usize, 7, 1000, 4096, 333, 70_000, 12];
    let mut out = Vec::new();
    let mut i = 0;
    let mut k = 0;
    while i < x.len() {
        let n = sizes[k % sizes.len()].min(x.len() - i);
        out.push(&x[i..i + n]);
        i += n;
        k += 1;
    }
    out
}

#[test]
fn streaming_resampler_and_mel_equal_the_whole_signal_versions() {
    use instrec::audio::{StreamResampler, resample};
    use instrec::features::StreamMel;
    let dir = frontend_fixtures();
    let ex = MelExtractor::new(FeatureSettings::default());
    for (name, rate) in fixture_names(&dir) {
        let audio = decode_file(&dir.join(&name)).unwrap();
        let x = audio.channel(Channel::Mono);
        let whole = resample(&x, rate, TARGET_RATE);
        let mut r = StreamResampler::new(rate, TARGET_RATE);
        let mut streamed = Vec::new();
        for b in blocks(&x) {
            r.push(b, &mut streamed);
        }
        r.finish(&mut streamed);
        assert_eq!(streamed, whole, "{name}: streamed resampling differs");

        let mel = ex.log_mel(&whole);
        let mut m = StreamMel::new(&ex);
        let mut cols = Vec::new();
        for b in blocks(&whole) {
            m.push(b, &mut cols);
        }
        m.finish(&mut cols);
        assert_eq!(cols.len(), mel.frames, "{name}");
        for (t, c) in cols.iter().enumerate() {
            for (k, v) in c.iter().enumerate() {
                assert_eq!(*v, mel.at(k, t), "{name}: frame {t} mel {k}");
            }
        }
    }
    // Signals shorter than one FFT window.
    for n in [1usize, 2, 300, 1024, 1025, 2047] {
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5)
            .collect();
        let mel = ex.log_mel(&x);
        let mut m = StreamMel::new(&ex);
        let mut cols = Vec::new();
        for b in blocks(&x) {
            m.push(b, &mut cols);
        }
        m.finish(&mut cols);
        assert_eq!(cols.len(), mel.frames, "n = {n}");
        assert!(
            cols.iter()
                .enumerate()
                .all(|(t, c)| c.iter().enumerate().all(|(k, v)| *v == mel.at(k, t))),
            "n = {n}"
        );
    }
}
