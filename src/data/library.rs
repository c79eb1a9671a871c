//! The sample libraries a corpus renders from: General-MIDI SoundFonts (every class, the
//! accompaniment and the drums) and instruments of one class (SFZ, played through
//! [`super::sf2`]). A library list (TOML) names each with its licence and source; a loaded
//! library carries the SHA-256 of every file it read, so a corpus records exactly what made it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustysynth::SoundFont;
use serde::{Deserialize, Serialize};

use super::sfz;
use super::soundfont::{SoundFontSource, read_soundfont};
use crate::CLASSES;
use crate::error::FileError;
use crate::util::sha256_hex;

/// Licences whose terms let trained weights ship with instrec (SPDX names).
pub const SHIPPABLE_LICENCES: &[&str] = &[
    "MIT",
    "CC0-1.0",
    "public-domain",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-or-later",
];

/// Whether weights trained on a library of this licence may ship.
pub fn licence_is_shippable(licence: &str) -> bool {
    SHIPPABLE_LICENCES.contains(&licence)
}

/// One file a library read, by its path relative to the library's root and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    pub sha256: String,
}

/// A sample library a corpus renders from, with what identifies it.
#[derive(Clone)]
pub struct Library {
    /// Where it came from (a path, or the built-in one).
    pub name: String,
    /// SHA-256 of its file (a SoundFont), or of its files' digests in order (an SFZ instrument).
    pub sha256: Option<String>,
    pub font: Arc<SoundFont>,
    /// `Some(class)`: an instrument of that class only, under that class's General-MIDI
    /// programs; `None`: a General-MIDI library.
    pub class: Option<usize>,
    /// The keys it plays (an instrument's regions), to keep melodies inside them.
    pub keys: Option<(u8, u8)>,
    pub licence: Option<String>,
    pub source: Option<String>,
    /// Every file an SFZ instrument read (its text, includes and samples).
    pub files: Vec<FileHash>,
}

impl Library {
    /// Reads a SoundFont and hashes its bytes.
    pub fn load(source: &SoundFontSource) -> Result<Self, FileError> {
        let (font, bytes) = read_soundfont(source)?;
        Ok(Self::general(
            source.to_string(),
            Some(sha256_hex(&bytes)),
            font,
        ))
    }

    /// A SoundFont already loaded (named by its bank name; no hash).
    pub fn from_font(font: &Arc<SoundFont>) -> Self {
        let name = font.get_info().get_bank_name().to_string();
        Self::general(name, None, font.clone())
    }

    /// A General-MIDI library, its licence and source not yet known.
    fn general(name: String, sha256: Option<String>, font: Arc<SoundFont>) -> Self {
        Self {
            name,
            sha256,
            font,
            class: None,
            keys: None,
            licence: None,
            source: None,
            files: Vec::new(),
        }
    }

    /// Reads an instrument of `class` (an SFZ file or a GUS patch) into a SoundFont with
    /// presets at the class's General-MIDI `programs`, hashing every file it reads.
    pub fn load_instrument(path: &Path, class: usize, programs: &[u8]) -> Result<Self, FileError> {
        let gus = path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("pat"));
        let inst = if gus {
            super::gus::read(path)?
        } else {
            sfz::read(path)?
        };
        let root = path.parent().unwrap_or(Path::new("."));
        let mut paths: Vec<PathBuf> = inst
            .regions
            .iter()
            .filter(|r| r.audio.is_none())
            .map(|r| r.sample.clone())
            .collect();
        paths.sort();
        paths.dedup();
        for (i, t) in inst.texts.iter().enumerate() {
            paths.insert(i, t.clone());
        }
        let mut files = Vec::with_capacity(paths.len());
        for p in &paths {
            let bytes = std::fs::read(p).map_err(|e| FileError::at(p, e))?;
            files.push(FileHash {
                path: relative(p, root),
                sha256: sha256_hex(&bytes),
            });
        }
        let digest: String = files
            .iter()
            .map(|f| format!("{}  {}\n", f.sha256, f.path))
            .collect();
        let name = path
            .file_stem()
            .map_or_else(|| "sfz".into(), |s| s.to_string_lossy().into_owned());
        let bytes = super::sf2::build(&inst, &name, programs)?;
        let font = SoundFont::new(&mut &bytes[..])
            .map(Arc::new)
            .map_err(|e| FileError::at(path, format!("converted instrument unreadable ({e:?})")))?;
        Ok(Self {
            name: path.display().to_string(),
            sha256: Some(sha256_hex(digest.as_bytes())),
            font,
            class: Some(class),
            keys: inst.key_span(),
            licence: None,
            source: None,
            files,
        })
    }
}

/// `path` relative to `root` with forward slashes, else as it is.
fn relative(path: &Path, root: &Path) -> String {
    let p = path.strip_prefix(root).unwrap_or(path);
    p.to_string_lossy().replace('\\', "/")
}

/// One entry of a library list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryEntry {
    /// A General-MIDI SoundFont (`.sf2`), or an instrument of one class: SFZ (`.sfz`) or a GUS
    /// patch (`.pat`); relative to the list's folder.
    pub path: PathBuf,
    /// The class an instrument plays (required for `.sfz` and `.pat`).
    #[serde(default)]
    pub class: Option<String>,
    /// SPDX licence name.
    pub licence: String,
    /// Where it came from: package and version, or repository and commit.
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LibraryList {
    library: Vec<LibraryEntry>,
}

/// The most libraries one list may name.
const MAX_LIBRARIES: usize = 64;

/// Reads a library list (TOML, `[[library]]` entries) without loading its libraries.
pub fn read_list(list: &Path) -> Result<Vec<LibraryEntry>, FileError> {
    let text = std::fs::read_to_string(list).map_err(|e| FileError::at(list, e))?;
    let parsed: LibraryList =
        toml::from_str(&text).map_err(|e| FileError::at(list, e.to_string().trim_end()))?;
    if parsed.library.is_empty() || parsed.library.len() > MAX_LIBRARIES {
        return Err(FileError::at(
            list,
            format!("must name 1 to {MAX_LIBRARIES} libraries"),
        ));
    }
    Ok(parsed.library)
}

/// Reads a library list (TOML, `[[library]]` entries) and loads every library in it.
pub fn load_list(
    list: &Path,
    programs: impl Fn(usize) -> Vec<u8>,
) -> Result<Vec<Library>, FileError> {
    let entries = read_list(list)?;
    let base = list.parent().unwrap_or(Path::new("."));
    entries
        .iter()
        .map(|e| {
            let path = base.join(&e.path);
            let what = |reason: String| {
                FileError::new(format!("{} ({})", list.display(), e.path.display()), reason)
            };
            let sfz = path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("sfz") || x.eq_ignore_ascii_case("pat"));
            let mut lib = match (&e.class, sfz) {
                (Some(c), true) => {
                    let class = CLASSES.iter().position(|k| k == c).ok_or_else(|| {
                        what(format!("class '{c}' is not one of {}", CLASSES.join(" ")))
                    })?;
                    Library::load_instrument(&path, class, &programs(class))?
                }
                (None, true) => {
                    return Err(what(
                        "an instrument (SFZ, GUS patch) needs its class".into(),
                    ));
                }
                (Some(_), false) => {
                    return Err(what(
                        "class applies to SFZ instruments; a SoundFont is read as General MIDI"
                            .into(),
                    ));
                }
                (None, false) => {
                    if !path.is_file() {
                        return Err(what("no such file".into()));
                    }
                    Library::load(&SoundFontSource::File(path.clone()))?
                }
            };
            // Named as the list names it: the same on every machine.
            lib.name = e.path.display().to_string();
            lib.licence = Some(e.licence.clone());
            lib.source = Some(e.source.clone());
            Ok(lib)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shippable_licences() {
        assert!(licence_is_shippable("CC0-1.0"));
        assert!(licence_is_shippable("GPL-2.0-or-later"));
        assert!(!licence_is_shippable("CC-BY-NC-4.0"));
        assert!(!licence_is_shippable("CC-BY-ND-4.0"));
        assert!(!licence_is_shippable("unknown"));
    }

    /// The lists the built-in model and its experiments render from name only licences that
    /// let weights ship, and real classes.
    #[test]
    fn committed_lists_are_shippable() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let mut lists = 0;
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            lists += 1;
            for e in read_list(&p).unwrap() {
                let at = format!("{} ({})", p.display(), e.path.display());
                assert!(licence_is_shippable(&e.licence), "{at}: {}", e.licence);
                assert!(!e.source.is_empty(), "{at}: no source");
                if let Some(c) = &e.class {
                    assert!(CLASSES.contains(&c.as_str()), "{at}: class {c}");
                }
            }
        }
        assert!(lists >= 5, "{lists} lists in {}", dir.display());
    }

    #[test]
    fn lists_are_checked() {
        let d = std::env::temp_dir().join(format!("instrec-liblist-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let err = |text: &str| {
            std::fs::write(d.join("l.toml"), text).unwrap();
            match load_list(&d.join("l.toml"), |_| vec![0]) {
                Err(e) => e.to_string(),
                Ok(_) => "loaded".into(),
            }
        };
        let e = err("[[library]]\npath = \"x.sfz\"\nlicence = \"MIT\"\nsource = \"s\"\n");
        assert!(e.contains("needs its class"), "{e}");
        let e = err(
            "[[library]]\npath = \"x.sfz\"\nclass = \"kaz\"\nlicence = \"MIT\"\nsource = \"s\"\n",
        );
        assert!(e.contains("class 'kaz'"), "{e}");
        let e = err("[[library]]\npath = \"x.sf2\"\nlicence = \"MIT\"\nsource = \"s\"\n");
        assert!(e.contains("no such file"), "{e}");
        let e = err("[[library]]\npath = \"x.sf2\"\nlicense = \"MIT\"\n");
        assert!(e.contains("l.toml"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
