//! A sung-vowel sample library made by instrec itself (`instrec synth-voices`), because no open
//! library of sung vowels or syllables was found: a glottal source (Rosenberg pulses with vibrato,
//! drift, jitter, shimmer and breath noise) through five parallel formant resonators per vowel, for
//! four voice types (bass, tenor, alto, soprano; the formant table of Csound's FOF examples, after
//! Dodge & Jerse). Half the notes begin with a voiced consonant (m, n, l, d) whose formants glide
//! into the vowel. Each voice type becomes an SFZ instrument of the voice class: WAV notes every
//! two semitones over its range, the vowel turning with the key so that every range holds all
//! five. The notes are seeded: the same seed writes the same bytes.

use std::f64::consts::{PI, TAU};
use std::path::{Path, PathBuf};

use crate::error::{FileError, Result};
use crate::util::Rng;

/// The sample rate of the notes.
pub const RATE: u32 = 44_100;
/// Each note's length in seconds (the SFZ plays it once, without a loop).
const NOTE_S: f64 = 3.0;

/// One formant: centre (Hz), level (dB) and bandwidth (Hz).
type Formant = (f64, f64, f64);

/// A voice type: its name, its keys (inclusive) and the five formants of a, e, i, o, u.
pub struct VoiceType {
    pub name: &'static str,
    pub keys: (u8, u8),
    formants: [[Formant; 5]; 5],
}

/// Bass, tenor, alto and soprano.
pub const VOICES: [VoiceType; 4] = [
    VoiceType {
        name: "bass",
        keys: (38, 64),
        formants: [
            [
                (600., 0., 60.),
                (1040., -7., 70.),
                (2250., -9., 110.),
                (2450., -9., 120.),
                (2750., -20., 130.),
            ],
            [
                (400., 0., 40.),
                (1620., -12., 80.),
                (2400., -9., 100.),
                (2800., -12., 120.),
                (3100., -18., 120.),
            ],
            [
                (250., 0., 60.),
                (1750., -30., 90.),
                (2600., -16., 100.),
                (3050., -22., 120.),
                (3340., -28., 120.),
            ],
            [
                (400., 0., 40.),
                (750., -11., 80.),
                (2400., -21., 100.),
                (2600., -20., 120.),
                (2900., -40., 120.),
            ],
            [
                (350., 0., 40.),
                (600., -20., 80.),
                (2400., -32., 100.),
                (2675., -28., 120.),
                (2950., -36., 120.),
            ],
        ],
    },
    VoiceType {
        name: "tenor",
        keys: (46, 72),
        formants: [
            [
                (650., 0., 80.),
                (1080., -6., 90.),
                (2650., -7., 120.),
                (2900., -8., 130.),
                (3250., -22., 140.),
            ],
            [
                (400., 0., 70.),
                (1700., -14., 80.),
                (2600., -12., 100.),
                (3200., -14., 120.),
                (3580., -20., 120.),
            ],
            [
                (290., 0., 40.),
                (1870., -15., 90.),
                (2800., -18., 100.),
                (3250., -20., 120.),
                (3540., -30., 120.),
            ],
            [
                (400., 0., 40.),
                (800., -10., 80.),
                (2600., -12., 100.),
                (2800., -12., 120.),
                (3000., -26., 120.),
            ],
            [
                (350., 0., 40.),
                (600., -20., 60.),
                (2700., -17., 100.),
                (2900., -14., 120.),
                (3300., -26., 120.),
            ],
        ],
    },
    VoiceType {
        name: "alto",
        keys: (52, 79),
        formants: [
            [
                (800., 0., 80.),
                (1150., -4., 90.),
                (2800., -20., 120.),
                (3500., -36., 130.),
                (4950., -60., 140.),
            ],
            [
                (400., 0., 60.),
                (1600., -24., 80.),
                (2700., -30., 120.),
                (3300., -35., 150.),
                (4950., -60., 200.),
            ],
            [
                (350., 0., 50.),
                (1700., -20., 100.),
                (2700., -30., 120.),
                (3700., -36., 150.),
                (4950., -60., 200.),
            ],
            [
                (450., 0., 70.),
                (800., -9., 80.),
                (2830., -16., 100.),
                (3500., -28., 130.),
                (4950., -55., 135.),
            ],
            [
                (325., 0., 50.),
                (700., -12., 60.),
                (2530., -30., 170.),
                (3500., -40., 180.),
                (4950., -64., 200.),
            ],
        ],
    },
    VoiceType {
        name: "soprano",
        keys: (58, 88),
        formants: [
            [
                (800., 0., 80.),
                (1150., -6., 90.),
                (2900., -32., 120.),
                (3900., -20., 130.),
                (4950., -50., 140.),
            ],
            [
                (350., 0., 60.),
                (2000., -20., 100.),
                (2800., -15., 120.),
                (3600., -40., 150.),
                (4950., -56., 200.),
            ],
            [
                (270., 0., 60.),
                (2140., -12., 90.),
                (2950., -26., 100.),
                (3900., -26., 120.),
                (4950., -44., 120.),
            ],
            [
                (450., 0., 70.),
                (800., -11., 80.),
                (2830., -22., 100.),
                (3800., -22., 130.),
                (4950., -50., 135.),
            ],
            [
                (325., 0., 50.),
                (700., -16., 60.),
                (2700., -35., 170.),
                (3800., -40., 180.),
                (4950., -60., 200.),
            ],
        ],
    },
];

const VOWELS: [&str; 5] = ["a", "e", "i", "o", "u"];

/// Voiced consonants a note may begin with: their F1 and F2 (Hz) and level (dB) against the
/// vowel, held for the consonant and then glided into the vowel.
const CONSONANTS: [(&str, f64, f64, f64); 4] = [
    ("m", 250., 1000., -14.),
    ("n", 250., 1600., -14.),
    ("l", 360., 1100., -8.),
    ("d", 300., 1700., -10.),
];

/// A two-pole resonator with unit gain at its centre.
#[derive(Default, Clone, Copy)]
struct Resonator {
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn step(&mut self, x: f64, f: f64, bw: f64) -> f64 {
        let r = (-PI * bw / RATE as f64).exp();
        let theta = TAU * f / RATE as f64;
        let (a1, a2) = (2.0 * r * theta.cos(), -r * r);
        // |H| at the centre of 1/(1 - a1 z^-1 - a2 z^-2) is 1/((1-r)·sqrt(1-2r·cos2θ+r²)).
        let g = (1.0 - r) * (1.0 - 2.0 * r * (2.0 * theta).cos() + r * r).sqrt();
        let y = g * x + a1 * self.y1 + a2 * self.y2;
        (self.y2, self.y1) = (self.y1, y);
        y
    }
}

/// Low-passed noise in about ±1: a slow random curve (`smooth` near 1 is slower).
fn wander(rng: &mut Rng, n: usize, smooth: f64) -> Vec<f64> {
    let (mut v, mut out) = (0.0, Vec::with_capacity(n));
    let scale = (1.0 - smooth * smooth).sqrt() * 1.7;
    for _ in 0..n {
        v = smooth * v + scale * (rng.f64() * 2.0 - 1.0);
        out.push(v);
    }
    out
}

/// A Rosenberg glottal pulse at phase `p` in [0, 1): opening for `tp`, closing for `tn`, shut.
fn glottal(p: f64, tp: f64, tn: f64) -> f64 {
    if p < tp {
        0.5 * (1.0 - (PI * p / tp).cos())
    } else if p < tp + tn {
        (0.5 * PI * (p - tp) / tn).cos()
    } else {
        0.0
    }
}

/// One sung note: `key` on `vowel` (an index of a, e, i, o, u) of `voice`, mono, 3 s long.
pub fn sing(voice: &VoiceType, key: u8, vowel: usize, rng: &mut Rng) -> Vec<f32> {
    let rate = RATE as f64;
    let n = (NOTE_S * rate) as usize;
    let f_key = 440.0 * 2f64.powf((key as f64 - 69.0) / 12.0);
    // Per note: vibrato, its onset, an onset scoop, breath, the pulse shape, a consonant.
    let vib_rate = 4.8 + rng.f64() * 1.8;
    let vib_depth = 20.0 + rng.f64() * 45.0; // cents
    let vib_onset = 0.15 + rng.f64() * 0.5;
    let vib_phase = rng.f64() * TAU;
    let scoop = if rng.f64() < 0.5 {
        -(20.0 + rng.f64() * 80.0)
    } else {
        0.0
    };
    let breath = 10f64.powf(-(18.0 + rng.f64() * 14.0) / 20.0);
    let brightness = rng.f64();
    let tp = 0.3 + rng.f64() * 0.15;
    let tn = 0.1 + rng.f64() * 0.12;
    let consonant = (rng.f64() < 0.5).then(|| CONSONANTS[rng.range(0, CONSONANTS.len())]);
    let (cons_s, glide_s) = (0.04 + rng.f64() * 0.06, 0.04 + rng.f64() * 0.06);
    let attack_s = 0.04 + rng.f64() * 0.15;
    let drift = wander(rng, n, 0.9995);
    let shimmer = wander(rng, n, 0.999);
    let mut formants = voice.formants[vowel];
    // A high voice tunes its first formant above its pitch, as sopranos do.
    formants[0].0 = formants[0].0.max(f_key * 1.1);
    let gains = formants.map(|(_, db, _)| 10f64.powf(db / 20.0));
    let mut bank = [Resonator::default(); 5];
    let (mut phase, mut prev_pulse, mut prev_derivative) = (0.0f64, 0.0f64, 0.0f64);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / rate;
        let vib = vib_depth * ((t / vib_onset).min(1.0)) * (TAU * vib_rate * t + vib_phase).sin();
        let scoop_now = scoop * (1.0 - (t / 0.08).min(1.0));
        let jitter = (rng.f64() * 2.0 - 1.0) * 3.0;
        let cents = vib + scoop_now + 8.0 * drift[i] + jitter;
        phase += f_key * 2f64.powf(cents / 1200.0) / rate;
        phase -= phase.floor();
        let pulse = glottal(phase, tp, tn);
        // The lips radiate the flow's derivative. The table's formant levels are those of trained
        // voices with a flat source; a note's brightness blends in the second difference (equal
        // to the derivative at 1 kHz), from a dark voice (0) to the table's (1). Breath noise
        // rides on the open glottis.
        let derivative = (pulse - prev_pulse) * rate / (f_key * 4.0);
        let second = (derivative - prev_derivative) * rate / (TAU * 1000.0);
        let source = (1.0 - brightness) * derivative
            + brightness * second
            + breath * (0.3 + pulse) * (rng.f64() * 2.0 - 1.0);
        (prev_pulse, prev_derivative) = (pulse, derivative);
        // The consonant's formants, held, then glided into the vowel's.
        let (blend, level_db) = match consonant {
            Some((_, _, _, db)) if t < cons_s => (0.0, db),
            Some((_, _, _, db)) if t < cons_s + glide_s => {
                let a = (t - cons_s) / glide_s;
                (a, db * (1.0 - a))
            }
            _ => (1.0, 0.0),
        };
        let mut y = 0.0;
        for (k, ((res, &(f, _, bw)), gain)) in bank.iter_mut().zip(&formants).zip(gains).enumerate()
        {
            let f_now = match (consonant, k) {
                (Some((_, f1, _, _)), 0) => f1 + (f - f1) * blend,
                (Some((_, _, f2, _)), 1) => f2 + (f - f2) * blend,
                _ => f,
            };
            y += gain * res.step(source, f_now, bw);
        }
        let env =
            (t / attack_s).min(1.0).powi(2) * (1.0 - ((t - (NOTE_S - 0.1)) / 0.1).clamp(0.0, 1.0));
        let amp = env * 10f64.powf((level_db + 0.8 * shimmer[i]) / 20.0);
        out.push(y * amp);
    }
    let peak = out.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gain = if peak > 0.0 { 0.5 / peak } else { 0.0 };
    out.into_iter().map(|v| (v * gain) as f32).collect()
}

/// Writes the library into `dir`: `<voice>/<key>.wav` and one `<voice>.sfz` per voice type.
/// Returns the SFZ files.
pub fn write_library(dir: &Path, seed: u64) -> Result<Vec<PathBuf>> {
    let mut sfz_files = Vec::new();
    for (v, voice) in VOICES.iter().enumerate() {
        let folder = dir.join(voice.name);
        std::fs::create_dir_all(&folder).map_err(|e| FileError::at(&folder, e))?;
        let mut sfz = format!(
            "// instrec synth-voices (seed {seed}): {} voice, sung vowels; CC0-1.0\n\
             <group> ampeg_attack=0.01 ampeg_release=0.15 amp_veltrack=60\n",
            voice.name
        );
        let (lo, hi) = voice.keys;
        for (j, key) in (lo..=hi).step_by(2).enumerate() {
            // The vowel turns with the key, shifted per voice so every range holds all five.
            let vowel = (j + v) % VOWELS.len();
            let mut rng = Rng::derive(seed ^ ((v as u64) << 32), key as u64);
            let note = sing(voice, key, vowel, &mut rng);
            let name = format!("{key:03}_{}.wav", VOWELS[vowel]);
            let path = folder.join(&name);
            crate::audio::write_wav_i16(&path, RATE, &[note])
                .map_err(|e| FileError::at(&path, e))?;
            sfz.push_str(&format!(
                "<region> sample={}/{name} lokey={key} hikey={} pitch_keycenter={key}\n",
                voice.name,
                (key + 1).min(hi)
            ));
        }
        let path = dir.join(format!("{}.sfz", voice.name));
        crate::util::write_atomic(&path, sfz.as_bytes()).map_err(|e| FileError::at(&path, e))?;
        sfz_files.push(path);
    }
    Ok(sfz_files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sung_note_is_seeded_finite_and_at_its_pitch() {
        let voice = &VOICES[1];
        let a = sing(voice, 57, 0, &mut Rng::new(3));
        assert_eq!(a, sing(voice, 57, 0, &mut Rng::new(3)));
        assert_ne!(a, sing(voice, 57, 0, &mut Rng::new(4)));
        assert!(a.iter().all(|v| v.is_finite() && v.abs() <= 0.5 + 1e-6));
        // The period (autocorrelation peak over 1 s mid-note) is that of A3, 220 Hz, within a
        // semitone of vibrato.
        let x: Vec<f64> = a[44_100..88_200].iter().map(|&v| v as f64).collect();
        let lag = (100..400)
            .max_by(|&p, &q| {
                let c = |l: usize| x.iter().zip(&x[l..]).map(|(a, b)| a * b).sum::<f64>();
                c(p).total_cmp(&c(q))
            })
            .unwrap();
        let f0 = RATE as f64 / lag as f64;
        assert!((f0 / 220.0).log2().abs() < 1.0 / 12.0, "f0 {f0}");
    }

    #[test]
    fn vowels_differ_in_their_spectra() {
        let voice = &VOICES[0];
        // The share of a second of the note's power above `hz`.
        let energy_above = |x: &[f32], hz: f64| {
            let mut buf: Vec<f64> = x[RATE as usize..2 * RATE as usize]
                .iter()
                .map(|&v| v as f64)
                .collect();
            let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(buf.len());
            let mut spectrum = fft.make_output_vec();
            fft.process(&mut buf, &mut spectrum).unwrap();
            // Bin k is k Hz: the transform is one second long.
            let power: Vec<f64> = spectrum.iter().map(|c| c.norm_sqr()).collect();
            power[hz as usize..].iter().sum::<f64>() / power.iter().sum::<f64>()
        };
        let a = sing(voice, 48, 0, &mut Rng::new(1));
        let u = sing(voice, 48, 4, &mut Rng::new(1));
        // "a" (F1 600, F2 1040) is far brighter than "u" (F1 350, F2 600, weak above).
        assert!(energy_above(&a, 800.0) > 10.0 * energy_above(&u, 800.0));
    }
}
