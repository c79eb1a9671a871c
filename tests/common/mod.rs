//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The small fixtures vendored under `tests/fixtures` (made by `tests/fixtures/make_fixtures.py`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn frontend_fixtures() -> PathBuf {
    let p = fixtures().join("frontend");
    assert!(
        p.join("index.json").is_file(),
        "{} is missing",
        p.join("index.json").display()
    );
    p
}

/// `../shared` (the project's full-size ground truth) when it sits beside the repository. Tests
/// that use it are extras: a user's clone has no `../shared`, so without it they say so and pass,
/// unless `INSTREC_REQUIRE_SHARED=1` (set by `.ci/run` where it is there) makes that a failure.
pub fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if p.is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var_os("INSTREC_REQUIRE_SHARED").is_none(),
        "INSTREC_REQUIRE_SHARED is set but {} is missing",
        p.display()
    );
    eprintln!("extra test skipped: {} is not there", p.display());
    None
}

/// Every file below `dir`, sorted.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Writes `secs` seconds of the chord fixture (3 s, 44.1 kHz stereo) repeated: a long clip for
/// the streaming paths without a large file in the repository.
pub fn long_chord(path: &Path, secs: f64) {
    let audio = instrec::audio::decode_file(&frontend_fixtures().join("chord_stereo_44k.wav"))
        .expect("chord fixture");
    let n = (secs * audio.sample_rate as f64).round() as usize;
    let channels: Vec<Vec<f32>> = audio
        .channels
        .iter()
        .map(|c| c.iter().copied().cycle().take(n).collect())
        .collect();
    instrec::audio::write_wav_i16(path, audio.sample_rate, &channels).expect("write long clip");
}

/// Sample formats a test WAV can be written in.
#[derive(Debug, Clone, Copy)]
pub enum WavFormat {
    U8,
    I16,
    I24,
    I32,
    F32,
    F64,
}

/// Writes interleaved samples in [-1, 1) as a WAV file (WAVE_FORMAT_PCM or IEEE_FLOAT).
pub fn wav_bytes(channels: u16, rate: u32, format: WavFormat, interleaved: &[f32]) -> Vec<u8> {
    let (bits, tag): (u16, u16) = match format {
        WavFormat::U8 => (8, 1),
        WavFormat::I16 => (16, 1),
        WavFormat::I24 => (24, 1),
        WavFormat::I32 => (32, 1),
        WavFormat::F32 => (32, 3),
        WavFormat::F64 => (64, 3),
    };
    let mut data = Vec::new();
    for &s in interleaved {
        let s = s as f64;
        match format {
            WavFormat::U8 => data.push(((s * 128.0).round() as i32 + 128).clamp(0, 255) as u8),
            WavFormat::I16 => data.extend_from_slice(
                &((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16).to_le_bytes(),
            ),
            WavFormat::I24 => {
                let v = (s * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
                data.extend_from_slice(&v.to_le_bytes()[..3]);
            }
            WavFormat::I32 => data.extend_from_slice(
                &((s * 2_147_483_648.0)
                    .round()
                    .clamp(-2_147_483_648.0, 2_147_483_647.0) as i32)
                    .to_le_bytes(),
            ),
            WavFormat::F32 => data.extend_from_slice(&(s as f32).to_le_bytes()),
            WavFormat::F64 => data.extend_from_slice(&s.to_le_bytes()),
        }
    }
    let block_align = channels * bits / 8;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * block_align as u32).to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    out
}

/// Differences between two equally long slices: (max, mean, 99th percentile) of |a - b| over
/// the positions where `mask` holds.
pub fn diff_stats(a: &[f32], b: &[f32], mask: impl Fn(usize) -> bool) -> (f64, f64, f64) {
    assert_eq!(a.len(), b.len());
    let mut d: Vec<f64> = (0..a.len())
        .filter(|&i| mask(i))
        .map(|i| (a[i] as f64 - b[i] as f64).abs())
        .collect();
    assert!(!d.is_empty(), "no values to compare");
    d.sort_by(f64::total_cmp);
    let max = *d.last().unwrap();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let p99 = d[((d.len() as f64 * 0.99).ceil() as usize).min(d.len()) - 1];
    (max, mean, p99)
}

/// A tensor's values as f32.
pub fn values<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// max |a − b| over max |b|.
pub fn rel_err(ours: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(ours.len(), expected.len());
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30) as f64;
    let max = ours
        .iter()
        .zip(expected)
        .fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
    max / scale
}

/// A convolution to test: (batch, c_in, h, w, c_out, kernel, stride, pad).
pub type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);

/// ResNet18's convolutions on a 43×128 window (small batches): the stem, stage 1, the 3×3 and
/// 1×1 downsamplings, stage 4.
pub const RESNET18_CONVS: &[ConvCase] = &[
    (3, 3, 43, 128, 64, 7, 2, 3),
    (2, 64, 11, 32, 64, 3, 1, 1),
    (2, 64, 11, 32, 128, 3, 2, 1),
    (2, 64, 11, 32, 128, 1, 2, 0),
    (4, 512, 2, 4, 512, 3, 1, 1),
];

/// Runs the `instrec` binary of this build with `args`, to the end.
pub fn instrec(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_instrec"))
        .args(args)
        .output()
        .expect("the instrec binary runs")
}

/// A finished command's stderr as text.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A ResNet18 bundle with random weights in `dir` (tagging mechanics do not need a trained
/// model). Drawn under the backend generator's lock: tests that train seeded runs run beside it.
pub fn random_bundle(dir: &Path) -> PathBuf {
    use instrec::features::ChannelMode;
    use instrec::model::bundle::{BundleConfig, save_bundle};
    use instrec::model::{Arch, Model};
    let model = Model::random(Arch::ResNet18, 11, &burn::tensor::Device::flex());
    save_bundle(
        dir,
        &model,
        &BundleConfig::new(Arch::ResNet18, ChannelMode::Dup),
    )
    .unwrap();
    dir.to_path_buf()
}

/// The records of a JSON-lines file.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
