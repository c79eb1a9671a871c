//! Gravis UltraSound patches (`.pat`, GF1PATCH110, as in Debian's freepats) read into the regions
//! [`super::sf2`] plays: each wave sample a region over its frequency range, rooted at its root
//! frequency, looped where the patch loops it. The patch's own envelopes, tremolo and vibrato are
//! left out (the corpus performs its own); a looped note ends with a short release.

use std::path::Path;
use std::sync::Arc;

use super::sfz::{Instrument, LoopMode, Region};
use crate::audio::Audio;
use crate::error::FileError;

/// Largest patch read (freepats' largest is a few MB).
const MAX_BYTES: u64 = 64 << 20;
const HEADER: usize = 129;
const INSTRUMENT: usize = 63;
const LAYER: usize = 47;
const SAMPLE: usize = 96;
/// Release of a looped note (s): the patch's envelope is not played.
const RELEASE_S: f64 = 0.15;

/// The MIDI key (fractional) of a frequency in milli-hertz.
fn key_of(milli_hz: u32) -> f64 {
    69.0 + 12.0 * (f64::from(milli_hz.max(1)) / 440_000.0).log2()
}

/// Reads a GUS patch: every wave sample of its first layer.
pub fn read(path: &Path) -> Result<Instrument, FileError> {
    let size = std::fs::metadata(path)
        .map_err(|e| FileError::at(path, e))?
        .len();
    if size > MAX_BYTES {
        return Err(FileError::at(
            path,
            format!("larger than {} MiB", MAX_BYTES >> 20),
        ));
    }
    let b = std::fs::read(path).map_err(|e| FileError::at(path, e))?;
    let bad = |why: &str| FileError::at(path, format!("not a readable GUS patch ({why})"));
    if b.get(..12) != Some(b"GF1PATCH110\0") && b.get(..12) != Some(b"GF1PATCH100\0") {
        return Err(bad("no GF1PATCH header"));
    }
    let u8_at = |i: usize| b.get(i).copied().ok_or_else(|| bad("truncated"));
    let u16_at = |i: usize| {
        b.get(i..i + 2)
            .map(|s| u16::from_le_bytes([s[0], s[1]]))
            .ok_or_else(|| bad("truncated"))
    };
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
            .ok_or_else(|| bad("truncated"))
    };
    if u8_at(82)? == 0 {
        return Err(bad("no instrument"));
    }
    let layer = HEADER + INSTRUMENT;
    let samples = u8_at(layer + 6)? as usize;
    let mut at = layer + LAYER;
    let mut regions: Vec<Region> = Vec::with_capacity(samples);
    for index in 0..samples {
        let wave_size = u32_at(at + 8)? as usize;
        let loop_start = u32_at(at + 12)? as usize;
        let loop_end = u32_at(at + 16)? as usize;
        let rate = u32::from(u16_at(at + 20)?);
        let (low, high, root) = (u32_at(at + 22)?, u32_at(at + 26)?, u32_at(at + 30)?);
        let modes = u8_at(at + 55)?;
        let scale_factor = u16_at(at + 58)?;
        let data = b
            .get(at + SAMPLE..at + SAMPLE + wave_size)
            .ok_or_else(|| bad("wave data past the end of the file"))?;
        at += SAMPLE + wave_size;
        if rate == 0 || wave_size == 0 {
            return Err(bad(&format!("sample {index} is empty or has no rate")));
        }
        let (wide, unsigned, looped) = (modes & 1 != 0, modes & 2 != 0, modes & 4 != 0);
        let frames: Vec<f32> = if wide {
            data.chunks_exact(2)
                .map(|c| {
                    let v = u16::from_le_bytes([c[0], c[1]]);
                    let v = if unsigned { v.wrapping_sub(0x8000) } else { v } as i16;
                    f32::from(v) / 32768.0
                })
                .collect()
        } else {
            data.iter()
                .map(|&v| {
                    let v = if unsigned { v.wrapping_sub(0x80) } else { v } as i8;
                    f32::from(v) / 128.0
                })
                .collect()
        };
        let per = if wide { 2 } else { 1 };
        let n = frames.len() as u64;
        let root_key = key_of(root);
        let base = root_key.round();
        let loop_points = (looped && loop_end > loop_start)
            .then(|| ((loop_start / per) as u64, ((loop_end / per) as u64).min(n)))
            .filter(|(a, b)| b > a);
        regions.push(Region {
            sample: path.with_extension(format!("pat#{index}")),
            audio: Some(Arc::new(Audio {
                sample_rate: rate,
                channels: vec![frames],
            })),
            keys: (
                key_of(low).round().clamp(0.0, 127.0) as u8,
                key_of(high).round().clamp(0.0, 127.0) as u8,
            ),
            velocities: (1, 127),
            root_key: base.clamp(0.0, 127.0) as u8,
            tune_cents: ((base - root_key) * 100.0).round() as i32,
            keytrack: if scale_factor == 0 || scale_factor == 1024 {
                100
            } else {
                (i32::from(scale_factor) * 100 / 1024).clamp(0, 1200)
            },
            gain_db: 0.0,
            pan: 0.0,
            offset: 0,
            end: None,
            loop_mode: if loop_points.is_some() {
                LoopMode::Continuous
            } else {
                LoopMode::None
            },
            loop_points,
            envelope: [0.0, 0.003, 0.0, 0.0, 100.0, RELEASE_S],
        });
    }
    // Neighbouring samples share their boundary frequency: each key goes to one region.
    regions.sort_by_key(|r| r.keys.0);
    let mut next_free = 0u8;
    regions.retain_mut(|r| {
        r.keys.0 = r.keys.0.max(next_free);
        if r.keys.0 > r.keys.1 {
            return false;
        }
        next_free = r.keys.1.saturating_add(1);
        true
    });
    if regions.is_empty() {
        return Err(bad("no wave sample"));
    }
    Ok(Instrument {
        path: path.to_path_buf(),
        texts: vec![path.to_path_buf()],
        regions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A patch of two 16-bit samples, built by hand: read back with its ranges, roots and loops.
    #[test]
    fn a_patch_reads_back() {
        let mut b = b"GF1PATCH110\0ID#000002\0".to_vec();
        b.resize(HEADER, 0);
        b[82] = 1;
        b.resize(HEADER + INSTRUMENT + LAYER, 0);
        b[HEADER + INSTRUMENT + 6] = 2;
        for (low, high, root, looped) in [
            (16_352u32, 261_626u32, 220_000u32, true),
            (261_626, 12_543_854, 440_000, false),
        ] {
            let mut h = vec![0u8; SAMPLE];
            let wave: Vec<u8> = (0..200i16).flat_map(|i| (i * 100).to_le_bytes()).collect();
            h[8..12].copy_from_slice(&(wave.len() as u32).to_le_bytes());
            h[12..16].copy_from_slice(&100u32.to_le_bytes());
            h[16..20].copy_from_slice(&300u32.to_le_bytes());
            h[20..22].copy_from_slice(&22_050u16.to_le_bytes());
            h[22..26].copy_from_slice(&low.to_le_bytes());
            h[26..30].copy_from_slice(&high.to_le_bytes());
            h[30..34].copy_from_slice(&root.to_le_bytes());
            h[55] = 1 | if looped { 4 } else { 0 };
            h[58..60].copy_from_slice(&1024u16.to_le_bytes());
            b.extend(h);
            b.extend(wave);
        }
        let d = tempfile_dir();
        let p = d.join("x.pat");
        std::fs::write(&p, &b).unwrap();
        let inst = read(&p).unwrap();
        let r = &inst.regions;
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].keys, r[0].root_key, r[0].tune_cents),
            ((12, 60), 57, 0)
        );
        assert_eq!(r[0].loop_points, Some((50, 150)));
        assert_eq!((r[1].keys, r[1].root_key), ((61, 127), 69));
        assert_eq!(r[1].loop_mode, LoopMode::None);
        assert_eq!(r[0].audio.as_ref().unwrap().channels[0][1], 100.0 / 32768.0);
        std::fs::write(&p, &b[..b.len() - 10]).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("x.pat") && e.contains("past the end"), "{e}");
        std::fs::write(&p, b"RIFF").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("GF1PATCH"));
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("instrec-gus-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
