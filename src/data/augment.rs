//! Acoustic augmentation of rendered clips, so a model learns the instrument rather than one
//! sample library's recording chain: microphone and EQ colour, amplifier distortion (mostly for
//! electric guitar), dynamics processing, a room (early reflections and a decaying diffuse tail),
//! band limits, a lossy-codec path (coarse spectral quantisation with holes and a low-pass, as
//! low-bitrate MP3/AAC leave) and background noise. Every choice comes from the clip's own seeded
//! generator: the same seed gives the same samples.

use realfft::RealFftPlanner;
use realfft::num_complex::Complex;
use serde::{Deserialize, Serialize};

use crate::util::Rng;

/// The electric guitar's index in [`crate::CLASSES`]: distortion is likely for it, rare otherwise.
const GEL: usize = 4;

/// What was applied to one clip (recorded beside the corpus).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    pub steps: Vec<String>,
}

/// A biquad section (RBJ cookbook), run in direct form I.
#[derive(Debug, Clone, Copy)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
}

impl Biquad {
    fn new(b0: f64, b1: f64, b2: f64, a0: f64, a1: f64, a2: f64) -> Self {
        Self {
            b: [b0 / a0, b1 / a0, b2 / a0],
            a: [a1 / a0, a2 / a0],
        }
    }

    fn peaking(rate: f64, f: f64, q: f64, db: f64) -> Self {
        let (a, w) = (10f64.powf(db / 40.0), std::f64::consts::TAU * f / rate);
        let alpha = w.sin() / (2.0 * q);
        Self::new(
            1.0 + alpha * a,
            -2.0 * w.cos(),
            1.0 - alpha * a,
            1.0 + alpha / a,
            -2.0 * w.cos(),
            1.0 - alpha / a,
        )
    }

    fn shelf(rate: f64, f: f64, db: f64, high: bool) -> Self {
        let (a, w) = (10f64.powf(db / 40.0), std::f64::consts::TAU * f / rate);
        let (cw, alpha) = (w.cos(), w.sin() / 2.0 * std::f64::consts::SQRT_2);
        let s = 2.0 * a.sqrt() * alpha;
        let sign = if high { -1.0 } else { 1.0 };
        Self::new(
            a * ((a + 1.0) - sign * (a - 1.0) * cw + s),
            sign * 2.0 * a * ((a - 1.0) - sign * (a + 1.0) * cw),
            a * ((a + 1.0) - sign * (a - 1.0) * cw - s),
            (a + 1.0) + sign * (a - 1.0) * cw + s,
            -sign * 2.0 * ((a - 1.0) + sign * (a + 1.0) * cw),
            (a + 1.0) + sign * (a - 1.0) * cw - s,
        )
    }

    fn pass(rate: f64, f: f64, high: bool) -> Self {
        let w = std::f64::consts::TAU * f.min(0.45 * rate) / rate;
        let (cw, alpha) = (w.cos(), w.sin() / 2.0 * std::f64::consts::SQRT_2);
        let (b0, b1) = if high {
            ((1.0 + cw) / 2.0, -(1.0 + cw))
        } else {
            ((1.0 - cw) / 2.0, 1.0 - cw)
        };
        Self::new(b0, b1, b0, 1.0 + alpha, -2.0 * cw, 1.0 - alpha)
    }

    fn run(&self, x: &mut [f32]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
        for v in x.iter_mut() {
            let x0 = *v as f64;
            let y0 =
                self.b[0] * x0 + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            (x2, x1, y2, y1) = (x1, x0, y1, y0);
            *v = y0 as f32;
        }
    }
}

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.f64()
}

/// Log-uniform in `lo..hi` (frequencies, times).
fn log_uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    (lo.ln() + (hi.ln() - lo.ln()) * rng.f64()).exp()
}

/// Augments a stereo clip in place at `rate` Hz; `class` is the predominant instrument, if one.
/// The clip's peak is restored to what it was, so levels stay those the renderer chose.
pub fn augment(
    channels: &mut [Vec<f32>; 2],
    rate: u32,
    class: Option<usize>,
    rng: &mut Rng,
) -> Applied {
    let rate_f = rate as f64;
    let peak_before = peak(channels);
    let mut applied = Applied::default();
    // Microphone and EQ colour: two shelves and a bell.
    if rng.f64() < 0.8 {
        let lo = (log_uniform(rng, 60.0, 400.0), uniform(rng, -8.0, 8.0));
        let mid = (
            log_uniform(rng, 300.0, 5000.0),
            uniform(rng, 0.5, 2.5),
            uniform(rng, -8.0, 8.0),
        );
        let hi = (log_uniform(rng, 2000.0, 9000.0), uniform(rng, -10.0, 6.0));
        let chain = [
            Biquad::shelf(rate_f, lo.0, lo.1, false),
            Biquad::peaking(rate_f, mid.0, mid.1, mid.2),
            Biquad::shelf(rate_f, hi.0, hi.1, true),
        ];
        for c in channels.iter_mut() {
            chain.iter().for_each(|b| b.run(c));
        }
        applied.steps.push(format!(
            "eq low {:.0} Hz {:+.1} dB, bell {:.0} Hz Q {:.1} {:+.1} dB, high {:.0} Hz {:+.1} dB",
            lo.0, lo.1, mid.0, mid.1, mid.2, hi.0, hi.1
        ));
    }
    // Amplifier distortion and a speaker cabinet's low-pass.
    let p_drive = if class == Some(GEL) { 0.5 } else { 0.05 };
    if rng.f64() < p_drive {
        let drive = log_uniform(rng, 2.0, 30.0);
        let cab = log_uniform(rng, 2500.0, 6000.0);
        let lp = Biquad::pass(rate_f, cab, false);
        for c in channels.iter_mut() {
            let scale = 1.0 / peak_of(c).max(1e-9) as f64;
            for v in c.iter_mut() {
                *v = ((*v as f64 * scale * drive).tanh() / drive.tanh()) as f32;
            }
            lp.run(c);
            lp.run(c);
        }
        applied
            .steps
            .push(format!("amp drive {drive:.1}, cabinet {cab:.0} Hz"));
    }
    // Dynamics: a feed-forward compressor on the stereo level.
    if rng.f64() < 0.4 {
        let ratio = uniform(rng, 2.0, 8.0);
        let threshold_db = uniform(rng, -24.0, -8.0);
        compress(channels, rate_f, ratio, threshold_db);
        applied
            .steps
            .push(format!("compressor {ratio:.1}:1 at {threshold_db:.1} dB"));
    }
    // A room.
    if rng.f64() < 0.7 {
        let rt60 = log_uniform(rng, 0.15, 2.5);
        let wet = uniform(rng, 0.1, 0.6);
        let ir = room_response(rate_f, rt60, rng);
        let mut wet_out = [
            convolve(&channels[0], &ir[0]),
            convolve(&channels[1], &ir[1]),
        ];
        let (pd, pw) = (peak(channels), peak(&wet_out).max(1e-9));
        for (c, w) in channels.iter_mut().zip(wet_out.iter_mut()) {
            for (v, x) in c.iter_mut().zip(w.iter()) {
                *v = (1.0 - wet as f32) * *v + wet as f32 * x * pd / pw;
            }
        }
        applied
            .steps
            .push(format!("room RT60 {rt60:.2} s, wet {wet:.2}"));
    }
    // Band limits (a small speaker, a phone, an old recording).
    if rng.f64() < 0.3 {
        let hp = log_uniform(rng, 30.0, 300.0);
        let lp = log_uniform(rng, 3000.0, 11000.0);
        for c in channels.iter_mut() {
            for f in [
                Biquad::pass(rate_f, hp, true),
                Biquad::pass(rate_f, lp, false),
            ] {
                f.run(c);
                f.run(c);
            }
        }
        applied.steps.push(format!("band {hp:.0}–{lp:.0} Hz"));
    }
    // A lossy codec.
    if rng.f64() < 0.25 {
        let depth_db = uniform(rng, 25.0, 50.0);
        let cutoff = log_uniform(rng, 8000.0, 16000.0);
        for c in channels.iter_mut() {
            *c = lossy(c, rate_f, depth_db, cutoff);
        }
        applied.steps.push(format!(
            "codec: {depth_db:.0} dB range, cut at {cutoff:.0} Hz"
        ));
    }
    // Background noise (white or pink).
    if rng.f64() < 0.5 {
        let snr_db = uniform(rng, 12.0, 45.0);
        let pink = rng.f64() < 0.5;
        let level = rms(channels) / 10f64.powf(snr_db / 20.0);
        for c in channels.iter_mut() {
            let n = noise(c.len(), pink, rng);
            let nr = (n.iter().map(|v| v * v).sum::<f64>() / n.len().max(1) as f64)
                .sqrt()
                .max(1e-12);
            for (v, x) in c.iter_mut().zip(n) {
                *v += (x * level / nr) as f32;
            }
        }
        let kind = if pink { "pink" } else { "white" };
        applied
            .steps
            .push(format!("{kind} noise at {snr_db:.0} dB SNR"));
    }
    // Back to the renderer's peak; anything non-finite (never expected) becomes silence.
    let gain = peak_before / peak(channels).max(1e-9);
    for c in channels.iter_mut() {
        for v in c.iter_mut() {
            *v = if v.is_finite() { *v * gain } else { 0.0 };
        }
    }
    applied
}

fn peak_of(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |m, v| m.max(v.abs()))
}

fn peak(c: &[Vec<f32>; 2]) -> f32 {
    peak_of(&c[0]).max(peak_of(&c[1]))
}

fn rms(c: &[Vec<f32>; 2]) -> f64 {
    let n = (c[0].len() + c[1].len()).max(1) as f64;
    (c.iter().flatten().map(|v| (*v as f64).powi(2)).sum::<f64>() / n).sqrt()
}

fn compress(c: &mut [Vec<f32>; 2], rate: f64, ratio: f64, threshold_db: f64) {
    let attack = (-1.0 / (0.005 * rate)).exp();
    let release = (-1.0 / (0.1 * rate)).exp();
    let full = peak(c).max(1e-9) as f64;
    let mut env = 0.0f64;
    for i in 0..c[0].len().min(c[1].len()) {
        let level = (c[0][i].abs().max(c[1][i].abs()) as f64) / full;
        let k = if level > env { attack } else { release };
        env = k * env + (1.0 - k) * level;
        let db = 20.0 * env.max(1e-9).log10();
        let over = (db - threshold_db).max(0.0);
        let gain = 10f64.powf(-over * (1.0 - 1.0 / ratio) / 20.0) as f32;
        c[0][i] *= gain;
        c[1][i] *= gain;
    }
}

/// A stereo room impulse response: the direct sound, 4–12 early reflections in the first 50 ms,
/// then decorrelated noise decaying by 60 dB in `rt60` seconds, darker as it decays.
fn room_response(rate: f64, rt60: f64, rng: &mut Rng) -> [Vec<f32>; 2] {
    let len = ((rt60 * 1.2).min(3.0) * rate) as usize;
    let decay = 6.9 / (rt60 * rate); // e^(-6.9) = -60 dB
    let reflections = rng.range(4, 13);
    let mut out = [vec![0f32; len.max(1)], vec![0f32; len.max(1)]];
    for ir in out.iter_mut() {
        ir[0] = 1.0;
        for _ in 0..reflections {
            let at = ((0.002 + 0.048 * rng.f64()) * rate) as usize;
            if at < ir.len() {
                ir[at] +=
                    (uniform(rng, 0.2, 0.7) * if rng.f64() < 0.5 { -1.0 } else { 1.0 }) as f32;
            }
        }
        let start = (0.01 * rate) as usize;
        let mut lp = 0.0f64;
        for (i, v) in ir.iter_mut().enumerate().skip(start) {
            let t = (i - start) as f64;
            let white = 2.0 * rng.f64() - 1.0;
            // Air absorbs highs faster: a one-pole low-pass that closes as the tail decays.
            let k = (0.1 + 0.8 * (-(t * decay) / 3.0).exp()).min(0.95);
            lp = k * white + (1.0 - k) * lp;
            *v += (0.3 * lp * (-t * decay).exp()) as f32;
        }
    }
    out
}

/// `x * h`, cut to `x`'s length, through the FFT.
fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    let n = (x.len() + h.len()).next_power_of_two();
    let mut planner = RealFftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let spectrum = |v: &[f32]| {
        let mut buf = vec![0f32; n];
        buf[..v.len()].copy_from_slice(v);
        let mut s = fwd.make_output_vec();
        fwd.process(&mut buf, &mut s).expect("sizes from the plan");
        s
    };
    let (a, b) = (spectrum(x), spectrum(h));
    let mut prod: Vec<Complex<f32>> = a.iter().zip(&b).map(|(p, q)| p * q).collect();
    let mut out = inv.make_output_vec();
    inv.process(&mut prod, &mut out)
        .expect("sizes from the plan");
    out.truncate(x.len());
    for v in out.iter_mut() {
        *v /= n as f32;
    }
    out
}

/// A crude transform codec: 1024-point Hann frames at 50 % overlap; bins more than `depth_db`
/// below the frame's loudest bin, or above `cutoff` Hz, are dropped, the rest quantised to
/// 1.5-dB steps; overlap-added back.
fn lossy(x: &[f32], rate: f64, depth_db: f64, cutoff: f64) -> Vec<f32> {
    const N: usize = 1024;
    let hop = N / 2;
    let mut planner = RealFftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(N), planner.plan_fft_inverse(N));
    let window: Vec<f32> = (0..N)
        .map(|i| {
            (std::f64::consts::PI * (i as f64 + 0.5) / N as f64)
                .sin()
                .powi(2) as f32
        })
        .collect();
    let cut_bin = ((cutoff / rate) * N as f64) as usize;
    let floor = 10f64.powf(-depth_db / 20.0) as f32;
    let step = 10f32.powf(1.5 / 20.0).ln();
    let mut out = vec![0f32; x.len() + N];
    let mut frame = vec![0f32; N];
    let mut start = 0;
    while start < x.len() {
        for (i, f) in frame.iter_mut().enumerate() {
            *f = x.get(start + i).copied().unwrap_or(0.0) * window[i];
        }
        let mut s = fwd.make_output_vec();
        fwd.process(&mut frame, &mut s)
            .expect("sizes from the plan");
        let top = s.iter().fold(0f32, |m, c| m.max(c.norm()));
        for (k, c) in s.iter_mut().enumerate() {
            let m = c.norm();
            if k > cut_bin || m < top * floor || m == 0.0 {
                *c = Complex::new(0.0, 0.0);
            } else {
                let q = ((m.ln() / step).round() * step).exp();
                *c *= q / m;
            }
        }
        let mut y = inv.make_output_vec();
        inv.process(&mut s, &mut y).expect("sizes from the plan");
        // Hann² at 50 % overlap sums to 1 (sin² + cos²): the synthesis needs no window.
        for (i, v) in y.iter().enumerate() {
            out[start + i] += v / N as f32;
        }
        start += hop;
    }
    out.truncate(x.len());
    out
}

/// White noise, or pink (Paul Kellet's economy filter) noise.
fn noise(n: usize, pink: bool, rng: &mut Rng) -> Vec<f64> {
    let (mut b0, mut b1, mut b2) = (0.0, 0.0, 0.0);
    (0..n)
        .map(|_| {
            let w = 2.0 * rng.f64() - 1.0;
            if !pink {
                return w;
            }
            b0 = 0.99765 * b0 + w * 0.0990460;
            b1 = 0.96300 * b1 + w * 0.2965164;
            b2 = 0.57000 * b2 + w * 1.0526913;
            b0 + b1 + b2 + w * 0.1848
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize) -> [Vec<f32>; 2] {
        let x: Vec<f32> = (0..n)
            .map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin())
            .collect();
        [x.clone(), x]
    }

    #[test]
    fn augmentation_is_seeded_finite_and_keeps_the_peak() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..40 {
            let mut a = tone(44_100);
            let mut b = tone(44_100);
            let ra = augment(
                &mut a,
                44_100,
                Some(seed as usize % 11),
                &mut Rng::new(seed),
            );
            let rb = augment(
                &mut b,
                44_100,
                Some(seed as usize % 11),
                &mut Rng::new(seed),
            );
            assert_eq!(a, b, "seed {seed}");
            assert_eq!(ra, rb);
            assert!(a.iter().flatten().all(|v| v.is_finite()));
            assert!(
                (peak(&a) - 0.5).abs() < 1e-3,
                "seed {seed}: peak {}",
                peak(&a)
            );
            for s in ra.steps {
                seen.insert(s.split_whitespace().next().unwrap().to_string());
            }
        }
        // Over 40 seeds every kind of step is drawn.
        for kind in [
            "eq",
            "amp",
            "compressor",
            "room",
            "band",
            "codec:",
            "white",
            "pink",
        ] {
            assert!(seen.contains(kind), "{kind} never drawn: {seen:?}");
        }
    }

    #[test]
    fn a_room_lengthens_the_sound_and_the_codec_cuts_the_highs() {
        // A click through a 1-s room: energy after 0.2 s.
        let mut x = vec![0f32; 44_100];
        x[100] = 1.0;
        let ir = room_response(44_100.0, 1.0, &mut Rng::new(3));
        let y = convolve(&x, &ir[0]);
        let late: f32 = y[9_000..].iter().map(|v| v * v).sum();
        assert!(late > 1e-3, "late energy {late}");
        // A 15-kHz tone is removed by a codec cut at 10 kHz; a 1-kHz tone survives.
        let t = |f: f32| -> Vec<f32> {
            (0..44_100)
                .map(|i| (i as f32 * f * std::f32::consts::TAU / 44_100.0).sin())
                .collect()
        };
        let energy = |v: &[f32]| v[2_000..40_000].iter().map(|x| x * x).sum::<f32>();
        let hi = lossy(&t(15_000.0), 44_100.0, 40.0, 10_000.0);
        let lo = lossy(&t(1_000.0), 44_100.0, 40.0, 10_000.0);
        assert!(energy(&hi) < 1e-3 * energy(&t(15_000.0)));
        assert!((energy(&lo) / energy(&t(1_000.0)) - 1.0).abs() < 0.1);
    }
}
