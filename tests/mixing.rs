//! Power-domain mixing (issue 13): exact against the summed mel power, and how close it comes to
//! mixing the waveforms on real clips.

mod common;

use std::path::Path;

use instrec::audio::{Channel, decode_file};
use instrec::data::mix::mix_log_mels;
use instrec::features::{FeatureSettings, MelExtractor};

/// A file's mono signal at 22,050 Hz, cut to `len` samples when given.
fn mono(path: &Path, len: Option<usize>) -> Vec<f32> {
    let mut x = decode_file(path).unwrap().channel_at(Channel::Mono, 22_050);
    if let Some(n) = len {
        x.truncate(n);
    }
    x
}

#[test]
fn power_domain_mixing_is_the_log_mel_of_the_summed_power() {
    let dir = common::frontend_fixtures();
    let ex = MelExtractor::new(FeatureSettings::default());
    let eps = FeatureSettings::default().log_offset;
    let n = 60_000;
    let signals = [
        mono(&dir.join("irmas_train_cla.wav"), Some(n)),
        mono(&dir.join("voice_22k.wav"), Some(n)),
        mono(&dir.join("chord_stereo_44k.wav"), Some(n)),
    ];
    let powers: Vec<Vec<f64>> = signals.iter().map(|s| ex.mel_power(s)).collect();
    let logs: Vec<Vec<f32>> = signals.iter().map(|s| ex.log_mel(s).data).collect();
    // The log-mel is the log of that power, to the bit.
    for (p, l) in powers.iter().zip(&logs) {
        assert!(
            p.iter()
                .zip(l)
                .all(|(p, l)| ((p + eps).ln() as f32).to_bits() == l.to_bits())
        );
    }
    for weights in [vec![0.5, 0.5], vec![0.8, 0.2], vec![0.2, 0.3, 0.5]] {
        let k = weights.len();
        let parts: Vec<&[f32]> = logs[..k].iter().map(Vec::as_slice).collect();
        let mut got = vec![0f32; logs[0].len()];
        mix_log_mels(&parts, &weights, eps, &mut got);
        let mut worst = 0f64;
        for (i, g) in got.iter().enumerate() {
            let sum: f64 = (0..k).map(|j| weights[j] * powers[j][i]).sum();
            worst = worst.max((*g as f64 - (sum + eps).ln()).abs());
        }
        // Only the f32 rounding of the stored log-mels remains (|ln| ≤ 30: ≈ 2e-6 at most).
        assert!(worst < 4e-6, "{weights:?}: max |Δ| {worst:e}");
    }
}

/// Statistics of power-domain against waveform mixing: (correlation, mean |Δ| on bins within 40 dB
/// of the mixture's peak, mean |Δ| there between the mixture and the closer source alone).
fn compare(a: &[f32], b: &[f32], wa: f64) -> (f64, f64, f64) {
    let ex = MelExtractor::new(FeatureSettings::default());
    let eps = FeatureSettings::default().log_offset;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (ga, gb) = (wa.sqrt() as f32, (1.0 - wa).sqrt() as f32);
    let wave: Vec<f32> = a.iter().zip(b).map(|(x, y)| ga * x + gb * y).collect();
    let truth = ex.log_mel(&wave).data;
    let (la, lb) = (ex.log_mel(a).data, ex.log_mel(b).data);
    let mut mixed = vec![0f32; truth.len()];
    mix_log_mels(&[&la, &lb], &[wa, 1.0 - wa], eps, &mut mixed);
    let peak = truth.iter().copied().fold(f32::MIN, f32::max);
    let loud: Vec<usize> = (0..truth.len())
        .filter(|&i| truth[i] > peak - 9.2) // ln(10^4): 40 dB
        .collect();
    let mean_abs = |x: &[f32]| -> f64 {
        loud.iter()
            .map(|&i| (x[i] - truth[i]).abs() as f64)
            .sum::<f64>()
            / loud.len() as f64
    };
    let mean = |x: &[f32]| x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    let (mt, mm) = (mean(&truth), mean(&mixed));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (t, m) in truth.iter().zip(&mixed) {
        let (x, y) = (*t as f64 - mt, *m as f64 - mm);
        sxy += x * y;
        sxx += x * x;
        syy += y * y;
    }
    (
        sxy / (sxx * syy).sqrt(),
        mean_abs(&mixed),
        mean_abs(&la).min(mean_abs(&lb)),
    )
}

fn check_close(what: &str, a: &[f32], b: &[f32]) {
    for wa in [0.5, 0.8] {
        let (corr, d_mix, d_alone) = compare(a, b, wa);
        eprintln!(
            "{what}, weights {wa:.1}/{:.1}: correlation {corr:.4}, mean |Δ| on loud bins {d_mix:.3} ln units (the closer source alone: {d_alone:.3})",
            1.0 - wa
        );
        assert!(corr > 0.98, "{what}: correlation {corr}");
        assert!(
            d_mix < 0.5 * d_alone,
            "{what}: power mixing is not much closer to the waveform mixture than one source alone ({d_mix} vs {d_alone})"
        );
    }
}

#[test]
fn power_mixing_is_close_to_waveform_mixing_on_a_real_clip() {
    let dir = common::frontend_fixtures();
    // The vendored IRMAS training clip (cla) with the voice and chord fixtures.
    let cla = mono(&dir.join("irmas_train_cla.wav"), None);
    check_close(
        "IRMAS cla + voice",
        &cla,
        &mono(&dir.join("voice_22k.wav"), None),
    );
    check_close(
        "IRMAS cla + chord",
        &cla,
        &mono(&dir.join("chord_stereo_44k.wav"), None),
    );
}

#[test]
fn power_mixing_is_close_to_waveform_mixing_on_two_irmas_clips() {
    let Some(shared) = common::shared() else {
        return;
    };
    let root = shared.join("irmas-sample");
    let cla = mono(
        &root.join("IRMAS-TrainingData/cla/[cla][cla]0189__2.wav"),
        None,
    );
    let song = mono(
        &root.join("IRMAS-TestingData-Part1/Part1/02 - And The Body Will Die-8.wav"),
        None,
    );
    // Three 3-s stretches of the gel + voi test clip, each mixed with the cla clip.
    for k in 0..3 {
        let part = &song[k * 7 * 22_050..k * 7 * 22_050 + cla.len()];
        check_close(
            &format!("IRMAS cla + gel/voi test clip @{}s", k * 7),
            &cla,
            part,
        );
    }
}
