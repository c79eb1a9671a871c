//! An SFZ instrument as a SoundFont in memory, so that rustysynth plays it like any General-MIDI
//! library: one instrument whose zones are the SFZ regions, under a preset at each given
//! program. Sample files are decoded once each, mixed to mono and kept at their own rate.

use std::collections::HashMap;
use std::path::PathBuf;

use super::sfz::{Instrument, LoopMode};
use crate::audio::decode_file;
use crate::error::FileError;

/// Most sample frames one instrument may hold (1 GiB of 16-bit mono).
const MAX_FRAMES: usize = 1 << 29;
/// Zero frames after each sample, as the SoundFont format asks.
const GUARD: usize = 46;

/// SoundFont generator numbers used here.
mod generator {
    pub const PAN: u16 = 17;
    pub const DELAY_VOL_ENV: u16 = 33;
    pub const ATTACK_VOL_ENV: u16 = 34;
    pub const HOLD_VOL_ENV: u16 = 35;
    pub const DECAY_VOL_ENV: u16 = 36;
    pub const SUSTAIN_VOL_ENV: u16 = 37;
    pub const RELEASE_VOL_ENV: u16 = 38;
    pub const INSTRUMENT: u16 = 41;
    pub const KEY_RANGE: u16 = 43;
    pub const VEL_RANGE: u16 = 44;
    pub const INITIAL_ATTENUATION: u16 = 48;
    pub const COARSE_TUNE: u16 = 51;
    pub const FINE_TUNE: u16 = 52;
    pub const SAMPLE_ID: u16 = 53;
    pub const SAMPLE_MODES: u16 = 54;
    pub const SCALE_TUNING: u16 = 56;
    pub const OVERRIDING_ROOT_KEY: u16 = 58;
}

/// Seconds as SoundFont timecents (1,200 × log2 s), the format's floor for 0.
fn timecents(s: f64) -> i16 {
    if s <= 0.0 {
        -12_000
    } else {
        (1200.0 * s.log2()).round().clamp(-12_000.0, 8_000.0) as i16
    }
}

/// The SoundFont bytes of `inst`, with presets (bank 0) at `programs`, named `name`.
pub fn build(inst: &Instrument, name: &str, programs: &[u8]) -> Result<Vec<u8>, FileError> {
    // Sample data: each file decoded once; each distinct (file, start, end, loop) a header.
    let mut data: Vec<i16> = Vec::new();
    let mut files: HashMap<PathBuf, (usize, usize, u32)> = HashMap::new();
    let mut headers: Vec<[u32; 5]> = Vec::new(); // start, end, loop start, loop end, rate
    let mut header_of: HashMap<[u32; 5], usize> = HashMap::new();
    let mut zones: Vec<Vec<(u16, u16)>> = Vec::new();
    // SoundFont attenuation cannot boost: the loudest region sits at 0 dB.
    let top_db = inst
        .regions
        .iter()
        .map(|r| r.gain_db)
        .fold(f64::NEG_INFINITY, f64::max);
    for r in &inst.regions {
        let (start, len, rate) = match files.get(&r.sample) {
            Some(&f) => f,
            None => {
                let audio = match &r.audio {
                    Some(a) => a.clone(),
                    None => std::sync::Arc::new(decode_file(&r.sample)?),
                };
                let n = audio.len();
                if data.len() + n + GUARD > MAX_FRAMES {
                    return Err(FileError::at(
                        &inst.path,
                        format!("samples over {MAX_FRAMES} frames in all"),
                    ));
                }
                let k = audio.channels.len().max(1) as f32;
                let start = data.len();
                data.extend((0..n).map(|i| {
                    let v: f32 = audio.channels.iter().map(|c| c[i]).sum::<f32>() / k;
                    (v.clamp(-1.0, 1.0) * 32767.0).round() as i16
                }));
                data.extend(std::iter::repeat_n(0, GUARD));
                let f = (start, n, audio.sample_rate);
                files.insert(r.sample.clone(), f);
                f
            }
        };
        let first = (r.offset as usize).min(len.saturating_sub(1));
        let last = r.end.map_or(len, |e| (e as usize).min(len)).max(first + 1);
        let (ls, le) = match r.loop_points {
            Some((a, b)) if (b as usize) <= last && (a as usize) >= first => {
                (a as usize, b as usize)
            }
            _ => (first, last),
        };
        let key = [
            (start + first) as u32,
            (start + last) as u32,
            (start + ls) as u32,
            (start + le) as u32,
            rate,
        ];
        let id = *header_of.entry(key).or_insert_with(|| {
            headers.push(key);
            headers.len() - 1
        });
        let looped = r
            .loop_points
            .is_some_and(|(a, b)| a as usize >= first && b as usize <= last);
        let mode = match (looped, r.loop_mode) {
            (true, LoopMode::Continuous) => 1,
            (true, LoopMode::Sustain) => 3,
            _ => 0,
        };
        let [delay, attack, hold, decay, sustain, release] = r.envelope;
        let sustain_cb = if sustain <= 0.0 {
            1440.0
        } else {
            (-200.0 * (sustain / 100.0).log10()).clamp(0.0, 1440.0)
        };
        let attenuation = (10.0 * (top_db - r.gain_db)).round().clamp(0.0, 1440.0);
        let cents = r.tune_cents.clamp(-12_000, 12_000);
        let (coarse, fine) = (cents / 100, cents % 100);
        use generator::*;
        zones.push(vec![
            (KEY_RANGE, u16::from_le_bytes([r.keys.0, r.keys.1])),
            (
                VEL_RANGE,
                u16::from_le_bytes([r.velocities.0, r.velocities.1]),
            ),
            (PAN, ((r.pan * 5.0).round() as i16) as u16),
            (DELAY_VOL_ENV, timecents(delay) as u16),
            (ATTACK_VOL_ENV, timecents(attack) as u16),
            (HOLD_VOL_ENV, timecents(hold) as u16),
            (DECAY_VOL_ENV, timecents(decay) as u16),
            (SUSTAIN_VOL_ENV, sustain_cb as u16),
            (RELEASE_VOL_ENV, timecents(release) as u16),
            (INITIAL_ATTENUATION, attenuation as u16),
            (COARSE_TUNE, (coarse as i16) as u16),
            (FINE_TUNE, (fine as i16) as u16),
            (SCALE_TUNING, r.keytrack.clamp(0, 1200) as u16),
            (OVERRIDING_ROOT_KEY, u16::from(r.root_key)),
            (SAMPLE_MODES, mode),
            (SAMPLE_ID, id as u16),
        ]);
        if headers.len() > u16::MAX as usize {
            return Err(FileError::at(&inst.path, "more than 65,535 sample headers"));
        }
    }
    Ok(write(name, &data, &headers, &zones, programs))
}

/// RIFF chunk: id, little-endian size, data, a pad byte to even length.
pub fn riff_chunk(id: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 9);
    out.extend(id);
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
    out
}

/// RIFF `LIST` of `kind` holding `parts`.
pub fn riff_list(kind: &[u8; 4], parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = kind.to_vec();
    for p in parts {
        body.extend(p);
    }
    riff_chunk(b"LIST", &body)
}

/// A zero-terminated, even-length INFO string.
pub fn info_string(id: &[u8; 4], s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    if b.len() % 2 == 1 {
        b.push(0);
    }
    riff_chunk(id, &b)
}

/// A name field of `n` bytes, zero-padded.
fn name_field(s: &str, n: usize) -> Vec<u8> {
    let mut b: Vec<u8> = s.bytes().filter(u8::is_ascii).take(n - 1).collect();
    b.resize(n, 0);
    b
}

fn write(
    name: &str,
    data: &[i16],
    headers: &[[u32; 5]],
    zones: &[Vec<(u16, u16)>],
    programs: &[u8],
) -> Vec<u8> {
    let ascii: String = name.chars().filter(char::is_ascii).take(255).collect();
    let info = riff_list(
        b"INFO",
        &[
            riff_chunk(b"ifil", &[2, 0, 1, 0]),
            info_string(b"isng", "EMU8000"),
            info_string(b"INAM", &ascii),
        ],
    );
    let smpl: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let sdta = riff_list(b"sdta", &[riff_chunk(b"smpl", &smpl)]);

    let (mut phdr, mut pbag, mut pgen) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &p) in programs.iter().enumerate() {
        phdr.extend(name_field(name, 20));
        phdr.extend(u16::from(p).to_le_bytes());
        phdr.extend(0u16.to_le_bytes()); // bank
        phdr.extend((i as u16).to_le_bytes()); // bag index
        phdr.extend([0u8; 12]);
        pbag.extend((i as u16).to_le_bytes());
        pbag.extend(0u16.to_le_bytes());
        pgen.extend(generator::INSTRUMENT.to_le_bytes());
        pgen.extend(0u16.to_le_bytes());
    }
    phdr.extend(name_field("EOP", 20));
    phdr.extend([0u8; 4]);
    phdr.extend((programs.len() as u16).to_le_bytes());
    phdr.extend([0u8; 12]);
    pbag.extend((programs.len() as u16).to_le_bytes());
    pbag.extend(0u16.to_le_bytes());
    pgen.extend([0u8; 4]);

    let (mut inst, mut ibag, mut igen) = (Vec::new(), Vec::new(), Vec::new());
    inst.extend(name_field(name, 20));
    inst.extend(0u16.to_le_bytes());
    inst.extend(name_field("EOI", 20));
    inst.extend((zones.len() as u16).to_le_bytes());
    let mut ngen = 0u16;
    for z in zones {
        ibag.extend(ngen.to_le_bytes());
        ibag.extend(0u16.to_le_bytes());
        for &(op, amount) in z {
            igen.extend(op.to_le_bytes());
            igen.extend(amount.to_le_bytes());
            ngen += 1;
        }
    }
    ibag.extend(ngen.to_le_bytes());
    ibag.extend(0u16.to_le_bytes());
    igen.extend([0u8; 4]);

    let mut shdr = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        shdr.extend(name_field(&format!("s{i}"), 20));
        for v in &h[..5] {
            shdr.extend(v.to_le_bytes());
        }
        shdr.extend([60u8, 0]); // original key (overridden per zone), correction
        shdr.extend(0u16.to_le_bytes()); // link
        shdr.extend(1u16.to_le_bytes()); // mono
    }
    shdr.extend(name_field("EOS", 20));
    shdr.extend([0u8; 26]);

    let pdta = riff_list(
        b"pdta",
        &[
            riff_chunk(b"phdr", &phdr),
            riff_chunk(b"pbag", &pbag),
            riff_chunk(b"pmod", &[0u8; 10]),
            riff_chunk(b"pgen", &pgen),
            riff_chunk(b"inst", &inst),
            riff_chunk(b"ibag", &ibag),
            riff_chunk(b"imod", &[0u8; 10]),
            riff_chunk(b"igen", &igen),
            riff_chunk(b"shdr", &shdr),
        ],
    );
    let mut body = b"sfbk".to_vec();
    body.extend(info);
    body.extend(sdta);
    body.extend(pdta);
    riff_chunk(b"RIFF", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};

    /// A sine sample at key 69 played through the SoundFont sounds at the played key's pitch.
    #[test]
    fn an_sfz_instrument_plays_at_pitch() {
        let d = std::env::temp_dir().join(format!("instrec-sf2-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let tone: Vec<f32> = (0..48_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 48_000.0).sin())
            .collect();
        crate::audio::write_wav_i16(&d.join("a4.wav"), 48_000, &[tone]).unwrap();
        std::fs::write(
            d.join("i.sfz"),
            "<region> sample=a4.wav lokey=60 hikey=84 pitch_keycenter=69 ampeg_release=0.1\n",
        )
        .unwrap();
        let inst = super::super::sfz::read(&d.join("i.sfz")).unwrap();
        let bytes = build(&inst, "test", &[65, 66]).unwrap();
        let font = std::sync::Arc::new(SoundFont::new(&mut &bytes[..]).unwrap());
        assert_eq!(font.get_presets().len(), 2);
        let mut synth = Synthesizer::new(&font, &SynthesizerSettings::new(44_100)).unwrap();
        synth.process_midi_message(0, 0xC0, 66, 0);
        synth.process_midi_message(0, 0x90, 81, 100); // an octave up: 880 Hz
        let (mut l, mut r) = (vec![0f32; 22_050], vec![0f32; 22_050]);
        synth.render(&mut l, &mut r);
        let tail = &l[4_410..];
        let crossings = tail
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        let hz = crossings as f64 / (tail.len() as f64 / 44_100.0);
        assert!((hz - 880.0).abs() < 10.0, "{hz} Hz");
        let _ = std::fs::remove_dir_all(&d);
    }
}
