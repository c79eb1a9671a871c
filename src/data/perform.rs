//! Melodies played, not listed (`instrec synth --perform`): phrases with an articulation
//! (legato, normal, staccato), a dynamic shape and per-note swells through expression (CC 11),
//! vibrato and scoops through pitch bend on sustained instruments, chords on keyboards and
//! guitars, leaps as well as steps. Everything is drawn from the clip's seed.

use super::synth::{Event, note};
use crate::util::Rng;

/// Classes by how they sound a note (indices of [`crate::CLASSES`]).
const BOWED_BLOWN_SUNG: [usize; 7] = [0, 1, 2, 7, 8, 9, 10]; // cel cla flu sax tru vio voi
const CHORDAL: [usize; 4] = [3, 4, 5, 6]; // gac gel org pia
const PLUCKED_STRUCK: [usize; 3] = [3, 4, 6]; // gac gel pia
const SCOOPING: [usize; 4] = [4, 7, 9, 10]; // gel sax vio voi

/// Pitch-bend steps (and expression steps) per second.
const CONTROL_RATE: f64 = 50.0;
/// The synthesizer's default bend range: ±2 semitones.
const BEND_RANGE_CENTS: f64 = 200.0;

fn bend(events: &mut Vec<Event>, channel: i32, at: f64, cents: f64) {
    let v = (8192.0 + cents / BEND_RANGE_CENTS * 8192.0)
        .round()
        .clamp(0.0, 16383.0) as i32;
    events.push(Event {
        at: super::synth::secs(at),
        channel,
        command: 0xE0,
        data1: v & 0x7F,
        data2: v >> 7,
    });
}

fn expression(events: &mut Vec<Event>, channel: i32, at: f64, value: f64) {
    events.push(Event {
        at: super::synth::secs(at),
        channel,
        command: 0xB0,
        data1: 11,
        data2: value.round().clamp(1.0, 127.0) as i32,
    });
}

/// A performed line of `class` on `channel` over `0..length` seconds, on `keys` (the scale's
/// keys in the line's range), at `beat_s` seconds per beat; `rests` is the chance of a rest.
#[allow(clippy::too_many_arguments)]
pub(super) fn line(
    events: &mut Vec<Event>,
    rng: &mut Rng,
    class: usize,
    keys: &[u8],
    beat_s: f64,
    channel: i32,
    length: f64,
    rests: f64,
) {
    if keys.is_empty() {
        return;
    }
    let sustained = BOWED_BLOWN_SUNG.contains(&class);
    let ringing = PLUCKED_STRUCK.contains(&class);
    let mut i = (keys.len() / 2 + rng.range(0, 7))
        .saturating_sub(3)
        .min(keys.len() - 1);
    let mut t = 0.0;
    bend(events, channel, 0.0, 0.0);
    while t < length {
        // A phrase: 3–8 notes, one articulation, a dynamic line from one level to another.
        let notes = rng.range(3, 9);
        let articulation = match rng.range(0, 10) {
            0..=3 => 1.02, // legato: the next note starts before this one ends
            4..=7 => 0.85,
            _ => 0.35 + 0.2 * rng.f64(), // staccato
        };
        let (v0, v1) = (45.0 + 80.0 * rng.f64(), 45.0 + 80.0 * rng.f64());
        let vibrato_hz = 4.5 + 2.0 * rng.f64();
        let vibrato_cents = if sustained {
            8.0 + 30.0 * rng.f64()
        } else {
            0.0
        };
        for n in 0..notes {
            if t >= length {
                break;
            }
            let dur = beat_s * *rng.choose(&[0.5, 0.5, 1.0, 1.0, 1.5, 2.0, 3.0]);
            let step = if rng.f64() < 0.15 {
                rng.range(0, 9) as isize - 4 // a leap
            } else {
                rng.range(0, 5) as isize - 2
            };
            i = (i as isize + step).clamp(0, keys.len() as isize - 1) as usize;
            let level = v0 + (v1 - v0) * n as f64 / notes as f64 + 8.0 * (rng.f64() - 0.5);
            let vel = level.round().clamp(20.0, 127.0) as i32;
            let held = if ringing {
                dur * (0.9 + 0.6 * rng.f64())
            } else {
                dur * articulation
            };
            let end = (t + held).min(length);
            if rng.f64() >= rests {
                note(events, channel, keys[i], vel, t, end);
                if CHORDAL.contains(&class) && rng.f64() < 0.4 {
                    // A dyad or triad on the scale below the melody note.
                    for down in [2usize, 4].iter().take(rng.range(1, 3)) {
                        if let Some(k) = i.checked_sub(*down) {
                            note(events, channel, keys[k], (vel - 10).max(20), t, end);
                        }
                    }
                }
                if sustained {
                    shape_note(
                        events,
                        rng,
                        class,
                        channel,
                        t,
                        end,
                        vibrato_hz,
                        vibrato_cents,
                    );
                }
            }
            t += dur;
        }
        t += beat_s * *rng.choose(&[0.0, 0.0, 0.5, 1.0]); // a breath between phrases
    }
}

/// Expression swell, vibrato after an onset delay, and sometimes a scoop into the pitch.
#[allow(clippy::too_many_arguments)]
fn shape_note(
    events: &mut Vec<Event>,
    rng: &mut Rng,
    class: usize,
    channel: i32,
    start: f64,
    end: f64,
    hz: f64,
    depth: f64,
) {
    let scoop = if SCOOPING.contains(&class) && rng.f64() < 0.3 {
        -(50.0 + 100.0 * rng.f64())
    } else {
        0.0
    };
    let scoop_s = 0.06 + 0.1 * rng.f64();
    let onset = 0.15 + 0.25 * rng.f64();
    let (e0, peak) = (60.0 + 40.0 * rng.f64(), 100.0 + 27.0 * rng.f64());
    let dur = (end - start).max(1e-3);
    let steps = ((dur * CONTROL_RATE) as usize).max(1);
    for k in 0..steps {
        let t = start + k as f64 / CONTROL_RATE;
        let u = (t - start) / dur;
        // A swell: up to the peak at 40 % of the note, then easing back.
        let swell = if u < 0.4 {
            u / 0.4
        } else {
            1.0 - 0.5 * (u - 0.4) / 0.6
        };
        expression(events, channel, t, e0 + (peak - e0) * swell);
        let mut cents = 0.0;
        if t - start < scoop_s {
            cents += scoop * (1.0 - (t - start) / scoop_s);
        }
        if t - start > onset {
            let ramp = ((t - start - onset) / 0.3).min(1.0);
            cents += ramp * depth * (2.0 * std::f64::consts::PI * hz * (t - start)).sin();
        }
        bend(events, channel, t, cents);
    }
}
