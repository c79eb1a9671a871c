//! The General-MIDI SoundFont the synthetic corpus is rendered with: built into the binary, or a
//! file the user names. No system path is ever looked up, so a seed renders the same bytes on
//! every machine.
//!
//! The built-in one holds only the presets and notes `instrec synth` plays, cut from FluidR3_GM
//! (MIT licence, `assets/FluidR3_GM.LICENSE`) by `tools/cut_soundfont.rs`, its samples at
//! 22,050 Hz. It is stored packed ([`pack`]): the sample data as byte planes of second-order
//! differences, the whole file deflated — lossless, and a third smaller than the raw file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustysynth::SoundFont;

use crate::error::{FileError, Reason};

/// The packed built-in SoundFont (see the module doc).
const EMBEDDED: &[u8] = include_bytes!("../../assets/instrec-gm.sf2.z");

/// Where a SoundFont comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoundFontSource {
    /// The one built into the binary.
    Embedded,
    File(PathBuf),
}

impl std::fmt::Display for SoundFontSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("built-in General-MIDI SoundFont (FluidR3_GM subset)"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The explicit path, else `$INSTREC_SOUNDFONT`, else the built-in SoundFont.
pub fn find_soundfont(explicit: Option<&Path>) -> Result<SoundFontSource, FileError> {
    let (path, from) = match (explicit, std::env::var_os("INSTREC_SOUNDFONT")) {
        (Some(p), _) => (p.to_path_buf(), ""),
        (None, Some(p)) => (PathBuf::from(p), " (from INSTREC_SOUNDFONT)"),
        (None, None) => return Ok(SoundFontSource::Embedded),
    };
    if path.is_file() {
        Ok(SoundFontSource::File(path))
    } else {
        Err(FileError::new(
            format!("{}{from}", path.display()),
            "no such SoundFont file",
        ))
    }
}

/// The built-in SoundFont as a plain `.sf2` file's bytes.
pub fn embedded_bytes() -> Result<Vec<u8>, FileError> {
    unpack(EMBEDDED).map_err(|e| {
        FileError::new(
            SoundFontSource::Embedded.to_string(),
            format!("damaged in this build ({e})"),
        )
    })
}

pub fn load_soundfont(source: &SoundFontSource) -> Result<Arc<SoundFont>, FileError> {
    read_soundfont(source).map(|(font, _)| font)
}

/// A SoundFont and the bytes it was read from (a library hashes them).
pub fn read_soundfont(source: &SoundFontSource) -> Result<(Arc<SoundFont>, Vec<u8>), FileError> {
    let bytes = match source {
        SoundFontSource::Embedded => embedded_bytes()?,
        SoundFontSource::File(p) => std::fs::read(p).map_err(|e| FileError::at(p, e))?,
    };
    let font = SoundFont::new(&mut &bytes[..]).map(Arc::new).map_err(|e| {
        FileError::new(
            source.to_string(),
            format!("not a readable SoundFont ({e:?})"),
        )
    })?;
    Ok((font, bytes))
}

/// Byte range of the `smpl` chunk's data in a SoundFont (RIFF `sfbk` → LIST `sdta` → `smpl`).
fn smpl_range(sf2: &[u8]) -> Result<std::ops::Range<usize>, Reason> {
    let u32_at = |i: usize| -> Result<usize, Reason> {
        sf2.get(i..i + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or_else(|| Reason::from("truncated"))
    };
    if sf2.get(..4) != Some(b"RIFF") || sf2.get(8..12) != Some(b"sfbk") {
        return Err("not a SoundFont (RIFF sfbk)".into());
    }
    let mut i = 12;
    while i + 12 <= sf2.len() {
        let n = u32_at(i + 4)?;
        if &sf2[i..i + 4] == b"LIST" && &sf2[i + 8..i + 12] == b"sdta" {
            let (mut j, end) = (i + 12, (i + 8 + n).min(sf2.len()));
            while j + 8 <= end {
                let m = u32_at(j + 4)?;
                if &sf2[j..j + 4] == b"smpl" && j + 8 + m <= end && m % 2 == 0 {
                    return Ok(j + 8..j + 8 + m);
                }
                j += 8 + m + (m & 1);
            }
        }
        i += 8 + n + (n & 1);
    }
    Err("no sample data (smpl chunk)".into())
}

/// Packs a SoundFont losslessly: its 16-bit samples as second differences, high bytes then low
/// bytes (smooth audio makes both planes compressible), the whole file deflated.
pub fn pack(sf2: &[u8]) -> Result<Vec<u8>, Reason> {
    let r = smpl_range(sf2)?;
    let mut raw = sf2.to_vec();
    let x: Vec<i16> = sf2[r.clone()]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let n = x.len();
    let (mut prev, mut prev_d) = (0i16, 0i16);
    for (k, &v) in x.iter().enumerate() {
        let d = v.wrapping_sub(prev);
        let dd = d.wrapping_sub(prev_d).to_le_bytes();
        (prev, prev_d) = (v, d);
        raw[r.start + k] = dd[1];
        raw[r.start + n + k] = dd[0];
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&raw).map_err(|e| e.to_string())?;
    z.finish().map_err(|e| Reason(e.to_string()))
}

/// Undoes [`pack`].
pub fn unpack(packed: &[u8]) -> Result<Vec<u8>, Reason> {
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(packed)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not a packed SoundFont: {e}"))?;
    let r = smpl_range(&raw)?;
    let n = r.len() / 2;
    let planes = raw[r.clone()].to_vec();
    let (mut prev, mut prev_d) = (0i16, 0i16);
    for k in 0..n {
        let dd = i16::from_le_bytes([planes[n + k], planes[k]]);
        let d = prev_d.wrapping_add(dd);
        let v = prev.wrapping_add(d);
        (prev, prev_d) = (v, d);
        raw[r.start + 2 * k..r.start + 2 * k + 2].copy_from_slice(&v.to_le_bytes());
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_is_lossless_and_the_built_in_soundfont_loads() {
        let sf2 = unpack(EMBEDDED).unwrap();
        assert_eq!(unpack(&pack(&sf2).unwrap()).unwrap(), sf2);
        let font = load_soundfont(&SoundFontSource::Embedded).unwrap();
        assert!(font.get_presets().len() >= 30);
        assert!(unpack(b"not deflate").is_err());
    }
}
