//! Small helpers shared by every stage.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: into a temporary file in the same directory, flushed to
/// disk, then renamed over the target, so a crash never leaves a half-written file. A target that
/// is not a regular file (a directory, a device, a symbolic link) is refused, never replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for content produced piece by piece (`write` fills a buffered writer).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = prepare_target(path)?;
    let result = (|| {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Before an atomic write to `path`: refuses a target that is not a regular file, removes the
/// temporary files that dead processes left beside it, and returns this process's temporary path.
pub fn prepare_target(path: &Path) -> std::io::Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            let what = if m.file_type().is_symlink() {
                "a symbolic link"
            } else if m.is_dir() {
                "a directory"
            } else {
                "not a regular file (a device, pipe or socket)"
            };
            return Err(std::io::Error::other(format!(
                "is {what}: refusing to replace it (write to a regular file's path)"
            )));
        }
        _ => {}
    }
    remove_stale_temps(path);
    Ok(temp_sibling(path))
}

/// Maps an I/O error to one whose message starts with the path it happened at.
pub fn io_at(path: &Path) -> impl Fn(std::io::Error) -> std::io::Error + '_ {
    move |e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// A temporary path next to `path` (same directory, so a rename is atomic), unique per process.
pub fn temp_sibling(path: &Path) -> PathBuf {
    path.with_file_name(format!(".{}.{}.tmp", file_name(path), std::process::id()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into())
}

/// Removes `.NAME.PID.tmp` (or `.NAME.PID.EXT`) siblings of `path` whose process is gone (a crash or `kill -9`
/// mid-write); a live writer's file is left alone.
pub fn remove_stale_temps(path: &Path) {
    let prefix = format!(".{}.", file_name(path));
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // `.NAME.PID.tmp`, or `.NAME.PID.EXT` where a writer needs the extension (PNG plots).
        let pid = name
            .strip_prefix(&prefix)
            .and_then(|r| r.split_once('.'))
            .filter(|(_, ext)| {
                *ext == "tmp" || Some(*ext) == path.extension().and_then(|e| e.to_str())
            })
            .and_then(|(p, _)| p.parse::<i32>().ok());
        if let Some(pid) = pid
            && pid as u32 != std::process::id()
            && !process_alive(pid)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Bytes (a digest) in lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes` in lowercase hexadecimal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// The cores this process may use (1 when unknown): the default of every thread-count setting.
pub fn all_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether a process with this id exists (signal 0 checks without sending anything).
fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for the process; it has no effect on it.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_write_refuses_what_is_not_a_regular_file_and_clears_dead_temps() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(
            write_atomic(&sub, b"x")
                .unwrap_err()
                .to_string()
                .contains("directory")
        );
        let target = dir.path().join("t.bin");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link.bin");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(
            write_atomic(&link, b"x")
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
        assert!(write_atomic(Path::new("/dev/null"), b"x").is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        // A dead writer's temporary file goes; a live one's (this process's parent) stays.
        let dead = dir.path().join(".t.bin.999999999.tmp");
        let live = dir.path().join(format!(
            ".t.bin.{}.tmp",
            std::os::unix::process::parent_id()
        ));
        std::fs::write(&dead, b"x").unwrap();
        std::fs::write(&live, b"x").unwrap();
        write_atomic(&target, b"new").unwrap();
        assert!(!dead.exists() && live.exists());
    }

    #[test]
    fn atomic_write_into_missing_dir_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("a.bin");
        assert!(write_atomic(&p, b"x").is_err());
    }
}

/// `Display` for an enum as clap and serde name its values: both derive the names from the
/// variants (lowercased), so each name is written once, in the variant.
macro_rules! display_as_value {
    ($t:ty) => {
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let v = clap::ValueEnum::to_possible_value(self).expect("no value is skipped");
                f.write_str(v.get_name())
            }
        }
    };
}
pub(crate) use display_as_value;

/// A small, fast, seedable random number generator (SplitMix64). Its output is fixed by this code,
/// not by a dependency's version, so a seed means the same split and the same corpus forever.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// A generator for item `index` of a stream seeded by `seed` (independent of other items).
    pub fn derive(seed: u64, index: u64) -> Self {
        let mut r = Self::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ index);
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        assert!(hi > lo, "empty range {lo}..{hi}");
        lo + (self.next_u64() % (hi - lo) as u64) as usize
    }

    pub fn choose<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len())]
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.range(0, i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod rng_tests {
    use super::Rng;

    #[test]
    fn same_seed_same_stream_and_shuffles_are_permutations() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(3);
                move |_| r.next_u64()
            })
            .collect();
        let mut r = Rng::new(3);
        assert_eq!(a, (0..5).map(|_| r.next_u64()).collect::<Vec<_>>());
        let mut v: Vec<usize> = (0..100).collect();
        Rng::new(1).shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
        let x = Rng::new(9).f64();
        assert!((0.0..1.0).contains(&x));
    }
}

/// `Σ a[i]·b[i]` over the shorter slice, in f32 with eight independent partial sums (which the
/// compiler turns into one SIMD register; a single running sum cannot be vectorised).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Paths in JSON without loss, as ripgrep's `--json` writes them: a path that is UTF-8 is its
/// text (a plain string, as instrec always wrote), any other is `{"bytes": BASE64}` of its raw
/// bytes. Reading takes a string, `{"text": …}` or `{"bytes": …}`. For `#[serde(with = …)]`.
pub mod path_json {
    use std::path::{Path, PathBuf};

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::error::Reason;

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Tagged {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            text: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            bytes: Option<String>,
        },
    }

    pub fn serialize<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
        match p.to_str() {
            Some(t) => Repr::Text(t.to_owned()),
            None => Repr::Tagged {
                text: None,
                bytes: Some(STANDARD.encode(raw_bytes(p))),
            },
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        use serde::de::Error;
        match Repr::deserialize(d)? {
            Repr::Text(t) | Repr::Tagged { text: Some(t), .. } => Ok(PathBuf::from(t)),
            Repr::Tagged { bytes: Some(b), .. } => {
                let raw = STANDARD.decode(b).map_err(D::Error::custom)?;
                from_raw_bytes(raw).map_err(D::Error::custom)
            }
            Repr::Tagged { .. } => Err(D::Error::custom("a path needs \"text\" or \"bytes\"")),
        }
    }

    /// A path's bytes as the OS holds them (on Unix, exactly; elsewhere its UTF-8 form).
    pub fn raw_bytes(p: &Path) -> Vec<u8> {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            p.as_os_str().as_bytes().to_vec()
        }
        #[cfg(not(unix))]
        {
            p.to_string_lossy().into_owned().into_bytes()
        }
    }

    /// The path of [`raw_bytes`]; elsewhere than Unix, only UTF-8 bytes make a path.
    pub fn from_raw_bytes(raw: Vec<u8>) -> Result<PathBuf, Reason> {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            Ok(PathBuf::from(std::ffi::OsString::from_vec(raw)))
        }
        #[cfg(not(unix))]
        {
            String::from_utf8(raw)
                .map(PathBuf::from)
                .map_err(|_| Reason::from("a non-UTF-8 path from another system"))
        }
    }

    /// The same with the base64 text of the bytes.
    pub fn from_base64(b: &str) -> Result<PathBuf, Reason> {
        from_raw_bytes(STANDARD.decode(b).map_err(|e| Reason(e.to_string()))?)
    }

    /// The base64 text of a path's raw bytes.
    pub fn to_base64(p: &Path) -> String {
        STANDARD.encode(raw_bytes(p))
    }
}
