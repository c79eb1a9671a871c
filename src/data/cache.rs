//! The feature cache: every clip's log-mel(s) extracted once, in parallel, into one file keyed by
//! the feature settings, the channel sources and the file list (path, size, modification time).
//! A changed setting or file gives a new key and so a rebuild; a second run with the same inputs
//! reads the file and does no work. The file ends with the SHA-256 of its contents and is written
//! atomically, so a truncated or corrupt cache is detected and rebuilt, never trusted.
//!
//! Layout: `INSTRECF`, format version (u32 LE), header length (u64 LE), header (JSON), the
//! log-mels of the clips that decoded (f32 LE, `[n_mels, frames]` per source channel, in header
//! order), SHA-256 of everything before it.

use crate::error::Reason;
use std::collections::HashMap;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::irmas::Issue;
use crate::audio::decode_file;
use crate::features::{ChannelMode, ClipFeatures, FeatureSettings, LogMel, MelExtractor};

const MAGIC: &[u8; 8] = b"INSTRECF";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Header {
    key: String,
    settings: FeatureSettings,
    mode: ChannelMode,
    clips: Vec<HeaderClip>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct HeaderClip {
    path: PathBuf,
    /// Frames of each log-mel; `None` when the clip could not be decoded.
    frames: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The cached features of a set of files, in the order given to [`prepare`].
#[derive(Debug, Clone)]
pub struct FeatureCache {
    pub path: PathBuf,
    pub settings: FeatureSettings,
    pub mode: ChannelMode,
    /// `None` for a file that failed to decode (see [`FeatureCache::failures`]) or was not
    /// asked for.
    pub clips: Vec<(PathBuf, Option<ClipFeatures>)>,
    pub failures: Vec<Issue>,
    index: HashMap<PathBuf, usize>,
}

impl FeatureCache {
    fn new(
        path: PathBuf,
        settings: FeatureSettings,
        mode: ChannelMode,
        clips: Vec<(PathBuf, Option<ClipFeatures>)>,
        failures: Vec<Issue>,
    ) -> Self {
        let index = clips
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (p.clone(), i))
            .collect();
        Self {
            path,
            settings,
            mode,
            clips,
            failures,
            index,
        }
    }

    /// The features of `path`, if it is in the cache and decoded.
    pub fn get(&self, path: &Path) -> Option<&ClipFeatures> {
        self.index.get(path).and_then(|&i| self.clips[i].1.as_ref())
    }

    /// Moves the features of `path` out of the cache (a later `get` or `take` finds none), so
    /// a caller that keeps them holds them once.
    pub fn take(&mut self, path: &Path) -> Option<ClipFeatures> {
        self.index.get(path).and_then(|&i| self.clips[i].1.take())
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The cache was valid and was read.
    Reused,
    /// There was no cache for these inputs.
    Built,
    /// A cache file for these inputs was unreadable; it was rebuilt.
    Rebuilt { reason: String },
}

impl std::fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reused => f.write_str("up to date, nothing to do"),
            Self::Built => f.write_str("built"),
            Self::Rebuilt { reason } => write!(f, "rebuilt ({reason})"),
        }
    }
}

/// The key of a set of inputs: SHA-256 over the settings, the channel mode and each file's path,
/// size and modification time.
pub fn cache_key(files: &[PathBuf], settings: &FeatureSettings, mode: ChannelMode) -> String {
    let mut h = Sha256::new();
    h.update(format!("instrec-cache-v{VERSION}\n").as_bytes());
    h.update(serde_json::to_vec(settings).expect("settings serialise"));
    h.update(format!("\n{:?}\n", mode.sources()).as_bytes());
    for f in files {
        let (size, mtime) = std::fs::metadata(f)
            .map(|m| {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                (m.len(), t)
            })
            .unwrap_or((u64::MAX, 0));
        h.update(format!("{}\t{size}\t{mtime}\n", f.display()).as_bytes());
    }
    crate::util::hex(&h.finalize())
}

/// The cache file for a key inside `dir`.
pub fn cache_file(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("features-{}.bin", &key[..16]))
}

/// Reads the cache for `files` from `dir`, or extracts the features (in parallel, calling
/// `progress(done, total)`) and writes it. Files that fail to decode are recorded, not fatal.
pub fn prepare(
    files: &[PathBuf],
    settings: &FeatureSettings,
    mode: ChannelMode,
    dir: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> std::io::Result<(FeatureCache, CacheOutcome)> {
    prepare_subset(files, settings, mode, dir, progress, &|_| true)
}

/// [`prepare`], holding in memory only the features of the files `keep` accepts (the others'
/// entries are `None`): training needs the training clips, evaluation the test clips, and the
/// cache (keyed by all of them) is shared.
pub fn prepare_subset(
    files: &[PathBuf],
    settings: &FeatureSettings,
    mode: ChannelMode,
    dir: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
    keep: &dyn Fn(&Path) -> bool,
) -> std::io::Result<(FeatureCache, CacheOutcome)> {
    let key = cache_key(files, settings, mode);
    let path = cache_file(dir, &key);
    let mut outcome = CacheOutcome::Built;
    if path.exists() {
        match read_cache(&path, &key, keep) {
            Ok(cache) => return Ok((cache, CacheOutcome::Reused)),
            Err(reason) => {
                outcome = CacheOutcome::Rebuilt {
                    reason: reason.into(),
                }
            }
        }
    }
    let extractor = MelExtractor::new(settings.clone());
    let done = AtomicUsize::new(0);
    let results: Vec<Result<ClipFeatures, String>> = files
        .par_iter()
        .map(|f| {
            let r = decode_file(f).map_err(|e| e.reason).and_then(|audio| {
                let c = ClipFeatures::extract(&extractor, &audio, mode);
                crate::features::check_clip_frames(c.frames(), audio.duration_s(), settings)
                    .map(|_| c)
                    .map_err(String::from)
            });
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, files.len());
            r
        })
        .collect();
    // I/O errors name the path they happened at.
    std::fs::create_dir_all(dir).map_err(crate::util::io_at(dir))?;
    write_cache(&path, &key, settings, mode, files, &results).map_err(crate::util::io_at(&path))?;
    let failures = files
        .iter()
        .zip(&results)
        .filter_map(|(p, r)| {
            r.as_ref().err().map(|e| Issue {
                path: p.clone(),
                reason: e.clone(),
            })
        })
        .collect();
    let clips = files
        .iter()
        .cloned()
        .zip(results.into_iter().map(Result::ok))
        .map(|(p, f)| {
            let f = f.filter(|_| keep(&p));
            (p, f)
        })
        .collect();
    Ok((
        FeatureCache::new(path, settings.clone(), mode, clips, failures),
        outcome,
    ))
}

fn write_cache(
    path: &Path,
    key: &str,
    settings: &FeatureSettings,
    mode: ChannelMode,
    files: &[PathBuf],
    results: &[Result<ClipFeatures, String>],
) -> std::io::Result<()> {
    let header = Header {
        key: key.to_string(),
        settings: settings.clone(),
        mode,
        clips: files
            .iter()
            .zip(results)
            .map(|(p, r)| HeaderClip {
                path: p.clone(),
                frames: r.as_ref().ok().map(ClipFeatures::frames),
                error: r.as_ref().err().cloned(),
            })
            .collect(),
    };
    let header = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    let tmp = crate::util::prepare_target(path)?;
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = HashingWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            hasher: Sha256::new(),
        };
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(&header)?;
        let mut buf = Vec::new();
        for f in results.iter().flatten() {
            for mel in &f.mels {
                buf.clear();
                buf.extend(mel.data.iter().flat_map(|v| v.to_le_bytes()));
                w.write_all(&buf)?;
            }
        }
        let digest = w.hasher.finalize();
        let mut inner = w.inner;
        inner.write_all(&digest)?;
        let file = inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R: Read> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads and verifies a cache file in one streaming pass (memory: the kept features only); any
/// problem is returned as the reason to rebuild.
fn read_cache(
    path: &Path,
    key: &str,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<FeatureCache, Reason> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut r = HashingReader {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
    };
    let short = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            "checksum mismatch (truncated: file ends early)".to_string()
        }
        _ => format!("cannot read: {e}"),
    };
    let mut fixed = [0u8; 20];
    r.read_exact(&mut fixed)
        .map_err(|_| "not an instrec feature cache (too short)".to_string())?;
    if &fixed[..8] != MAGIC {
        return Err("not an instrec feature cache (bad magic)".into());
    }
    let version = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("cache format {version}, expected {VERSION}").into());
    }
    let hlen = u64::from_le_bytes(fixed[12..20].try_into().expect("8 bytes")) as usize;
    if hlen > 1 << 30 {
        return Err("header length is implausible (corrupt)".into());
    }
    let mut header = vec![0u8; hlen];
    r.read_exact(&mut header).map_err(short)?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|_| "header is not valid JSON (corrupt)".to_string())?;
    if header.key != key {
        return Err("key mismatch (inputs changed)".into());
    }
    let n_src = header.mode.sources().len();
    let n_mels = header.settings.n_mels;
    let mut clips = Vec::with_capacity(header.clips.len());
    let mut failures = Vec::new();
    let mut bytes = Vec::new();
    for c in &header.clips {
        let features = match c.frames {
            Some(frames) => {
                let wanted = keep(&c.path);
                let mut mels = Vec::with_capacity(n_src);
                for _ in 0..n_src {
                    bytes.resize(n_mels * frames * 4, 0);
                    r.read_exact(&mut bytes).map_err(short)?;
                    if wanted {
                        mels.push(LogMel {
                            n_mels,
                            frames,
                            data: bytes
                                .chunks_exact(4)
                                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                                .collect(),
                        });
                    }
                }
                wanted.then_some(ClipFeatures {
                    mode: header.mode,
                    mels,
                })
            }
            None => {
                failures.push(Issue {
                    path: c.path.clone(),
                    reason: c.error.clone().unwrap_or_else(|| "failed".into()),
                });
                None
            }
        };
        clips.push((c.path.clone(), features));
    }
    let digest = r.hasher.finalize();
    let mut stored = [0u8; 32];
    r.inner.read_exact(&mut stored).map_err(short)?;
    if digest.as_slice() != stored {
        return Err("checksum mismatch (corrupt)".into());
    }
    if r.inner.read(&mut [0u8; 1]).map_err(|e| e.to_string())? != 0 {
        return Err("data longer than the header says".into());
    }
    Ok(FeatureCache::new(
        path.to_path_buf(),
        header.settings,
        header.mode,
        clips,
        failures,
    ))
}

/// `$INSTREC_CACHE`, else `$XDG_CACHE_HOME/instrec`, else `~/.cache/instrec`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("INSTREC_CACHE") {
        return PathBuf::from(p);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("instrec")
}
