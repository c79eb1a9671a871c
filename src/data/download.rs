//! Downloading a data set described by a manifest (file name, URL, MD5), IRMAS's built in:
//! resumable (HTTP range requests onto a `.part` file that survives a kill), each file checked
//! against its MD5 before it is used (a damaged one is kept aside, never unpacked), and each zip
//! unpacked beside a temporary folder and moved into place in one rename.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};
use serde::Deserialize;

use crate::error::{Error, FileError, Result};

/// The built-in manifest of IRMAS (`datasets/irmas.toml`).
pub const IRMAS_MANIFEST: &str = include_str!("../../datasets/irmas.toml");

/// Where a manifest's files go, inside the target folder.
pub const DOWNLOADS_DIR: &str = "downloads";

/// Attempts per file: a connection cut halfway is resumed from where it stopped.
const ATTEMPTS: usize = 5;
/// Entries and bytes one archive may unpack to (IRMAS's largest holds 6,705 files, 3 GB).
const MAX_ENTRIES: usize = 200_000;
const MAX_UNPACKED_BYTES: u64 = 64 << 30;

/// What to download.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub files: Vec<RemoteFile>,
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteFile {
    /// A plain file name (no folders): the name it is saved under.
    pub name: String,
    pub url: String,
    /// 32 hexadecimal digits.
    pub md5: String,
}

impl Manifest {
    /// Reads and checks a manifest's TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, FileError> {
        let m: Self = toml::from_str(text)
            .map_err(|e| FileError::new(origin, format!("invalid manifest: {e}")))?;
        if m.files.is_empty() {
            return Err(FileError::new(origin, "the manifest lists no files"));
        }
        for f in &m.files {
            let plain = !f.name.is_empty()
                && !f.name.starts_with('.')
                && !f.name.contains(['/', '\\'])
                && Path::new(&f.name).file_name() == Some(std::ffi::OsStr::new(&f.name));
            if !plain {
                return Err(FileError::new(
                    origin,
                    format!("file name '{}' must be a plain file name", f.name),
                ));
            }
            if f.md5.len() != 32 || !f.md5.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FileError::new(
                    origin,
                    format!("{}: md5 must be 32 hexadecimal digits", f.name),
                ));
            }
        }
        Ok(m)
    }

    /// IRMAS from its Zenodo record.
    pub fn irmas() -> Self {
        Self::parse(IRMAS_MANIFEST, "datasets/irmas.toml").expect("the built-in manifest is valid")
    }

    /// The same files from another server: `BASE/NAME` for each.
    pub fn with_mirror(mut self, base: &str) -> Self {
        let base = base.trim_end_matches('/');
        for f in &mut self.files {
            f.url = format!("{base}/{}", f.name);
        }
        self
    }
}

/// Progress of a download; the CLI draws bars.
pub trait DownloadObserver: Sync {
    /// A file's transfer starts (`resumed_from` bytes are already on disk; `total` when known).
    fn transfer(&self, _name: &str, _resumed_from: u64, _total: Option<u64>) {}
    /// Bytes of the current file on disk so far.
    fn bytes(&self, _done: u64) {}
    fn message(&self, _text: &str) {}
}

/// An observer that reports nothing.
pub struct Silent;
impl DownloadObserver for Silent {}

/// What happened to one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileOutcome {
    pub name: String,
    /// Bytes received over the network in this run.
    pub fetched: u64,
    /// Bytes that were already on disk from an earlier, interrupted run.
    pub resumed_from: u64,
    /// The file's size, MD5 checked.
    pub size: u64,
    /// Already downloaded and checked by an earlier run.
    pub was_complete: bool,
    /// Unpacked in this run (else it was already).
    pub unpacked: bool,
}

/// Downloads, checks and unpacks every file of `manifest` into `to`. Files go to
/// `to/downloads/`; each zip's contents are moved into `to` when complete. A run that was
/// interrupted goes on where it stopped; a file already checked is not fetched again.
pub fn download(
    manifest: &Manifest,
    to: &Path,
    obs: &dyn DownloadObserver,
) -> Result<Vec<FileOutcome>> {
    let dir = to.join(DOWNLOADS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| FileError::at(&dir, e))?;
    let mut outcomes = Vec::new();
    for f in &manifest.files {
        let done = dir.join(&f.name);
        let mut o = FileOutcome {
            name: f.name.clone(),
            ..Default::default()
        };
        // A run that died between the rename and the marker left a checked file: check it again
        // rather than fetch it again.
        let checked = done.is_file()
            && (checked_marker(&done).is_file() || md5_file(&done)?.eq_ignore_ascii_case(&f.md5));
        if checked {
            o.was_complete = true;
            std::fs::write(checked_marker(&done), &f.md5)
                .map_err(|e| FileError::at(&checked_marker(&done), e))?;
        } else {
            let part = dir.join(format!("{}.part", f.name));
            let (fetched, resumed_from) = fetch(f, &part, obs)?;
            (o.fetched, o.resumed_from) = (fetched, resumed_from);
            verify(f, &part, &done)?;
            std::fs::write(checked_marker(&done), &f.md5)
                .map_err(|e| FileError::at(&checked_marker(&done), e))?;
        }
        o.size = std::fs::metadata(&done)
            .map_err(|e| FileError::at(&done, e))?
            .len();
        if !unpacked_marker(&done).is_file() {
            obs.message(&format!("unpacking {}", f.name));
            unpack(&done, to)?;
            std::fs::write(unpacked_marker(&done), b"")
                .map_err(|e| FileError::at(&unpacked_marker(&done), e))?;
            o.unpacked = true;
        }
        outcomes.push(o);
    }
    Ok(outcomes)
}

fn checked_marker(done: &Path) -> PathBuf {
    with_suffix(done, ".md5-ok")
}

fn unpacked_marker(done: &Path) -> PathBuf {
    with_suffix(done, ".unpacked")
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Fetches `f` onto `part`, resuming from its length, retrying a cut connection; returns the
/// bytes received and the bytes that were already there.
fn fetch(f: &RemoteFile, part: &Path, obs: &dyn DownloadObserver) -> Result<(u64, u64)> {
    let resumed_from = file_len(part);
    let mut fetched = 0;
    let mut last_error = String::new();
    for _ in 0..ATTEMPTS {
        let (n, why) = match fetch_once(f, part, obs) {
            Ok((n, true)) => return Ok((fetched + n, resumed_from)),
            Ok((n, false)) => (
                n,
                format!(
                    "the connection closed early ({} bytes on disk)",
                    file_len(part)
                ),
            ),
            Err(Attempt::Retry(n, why)) => (n, why),
            Err(Attempt::Fatal(e)) => return Err(e),
        };
        fetched += n;
        obs.message(&format!("{}: {why}; resuming", f.name));
        last_error = why;
    }
    Err(Error::Download {
        url: f.url.clone(),
        reason: format!(
            "{} after {ATTEMPTS} attempts; the {} bytes received are kept in {} and a new run \
             goes on from there",
            last_error,
            file_len(part),
            part.display()
        ),
    })
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Why an attempt stopped: worth another try (with the bytes it got), or not.
enum Attempt {
    Retry(u64, String),
    Fatal(Error),
}

/// One request for the rest of `f` after what `part` holds. Returns the bytes received and
/// whether the file is now complete.
fn fetch_once(
    f: &RemoteFile,
    part: &Path,
    obs: &dyn DownloadObserver,
) -> std::result::Result<(u64, bool), Attempt> {
    let fatal = |reason: String| {
        Attempt::Fatal(Error::Download {
            url: f.url.clone(),
            reason,
        })
    };
    let offset = file_len(part);
    let mut req = ureq::get(&f.url)
        .config()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .build();
    if offset > 0 {
        req = req.header("Range", format!("bytes={offset}-"));
    }
    let response = match req.call() {
        Ok(r) => r,
        Err(e) => {
            let why = format!("cannot reach the server ({e}); no network?");
            // A refused or unresolvable host will not answer on a second try either.
            return Err(match e {
                ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => fatal(why),
                ureq::Error::Io(ref io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    fatal(why)
                }
                _ => Attempt::Retry(0, why),
            });
        }
    };
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    // 206 continues the part; 200 is the whole file (the server ignored the range): start over;
    // 416 means there is nothing after the part: it is complete (the MD5 check decides).
    let (append, total) = match status {
        206 => {
            let total = header("content-range")
                .and_then(|v| v.rsplit('/').next().and_then(|t| t.parse::<u64>().ok()));
            (true, total)
        }
        200 => (false, length),
        416 if offset > 0 => return Ok((0, true)),
        _ => return Err(fatal(format!("the server answered HTTP {status}"))),
    };
    let start = if append { offset } else { 0 };
    obs.transfer(&f.name, start, total);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(part)
        .map_err(|e| Attempt::Fatal(FileError::at(part, e).into()))?;
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let (mut got, mut on_disk) = (0u64, start);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(Attempt::Retry(got, format!("the connection broke ({e})"))),
        };
        // A full disk ends the run with the file named; what was written stays for a resume.
        file.write_all(&buf[..n])
            .map_err(|e| Attempt::Fatal(FileError::at(part, e).into()))?;
        got += n as u64;
        on_disk += n as u64;
        obs.bytes(on_disk);
    }
    file.sync_all()
        .map_err(|e| Attempt::Fatal(FileError::at(part, e).into()))?;
    let complete = match (total, length) {
        (Some(t), _) => on_disk >= t,
        (None, Some(l)) => got >= l,
        (None, None) => true,
    };
    Ok((got, complete))
}

/// The MD5 of a file, in lowercase hex.
pub fn md5_file(path: &Path) -> Result<String, FileError> {
    let mut file = std::fs::File::open(path).map_err(|e| FileError::at(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| FileError::at(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::util::hex(&h.finalize()))
}

/// Checks `part` against the manifest's MD5: it becomes `done`, or is kept aside as
/// `NAME.corrupt` and the run stops.
fn verify(f: &RemoteFile, part: &Path, done: &Path) -> Result<()> {
    let got = md5_file(part)?;
    if got.eq_ignore_ascii_case(&f.md5) {
        std::fs::rename(part, done).map_err(|e| FileError::at(done, e))?;
        return Ok(());
    }
    let aside = with_suffix(done, ".corrupt");
    std::fs::rename(part, &aside).map_err(|e| FileError::at(&aside, e))?;
    Err(FileError::at(
        &aside,
        format!(
            "MD5 {got}, expected {}: the download is damaged and was not used (kept here); \
             run the command again to download it anew",
            f.md5
        ),
    )
    .into())
}

/// Unpacks the zip `archive` into `to`: into a temporary folder beside the target first, then
/// each top-level entry moved into `to` by one rename, so nothing half-unpacked is ever there.
fn unpack(archive: &Path, to: &Path) -> Result<()> {
    let name = archive
        .file_name()
        .map_or("archive".into(), |n| n.to_string_lossy().into_owned());
    let tmp = to.join(format!(".unpack-{name}.tmp"));
    if tmp.exists() {
        // Left by a run that died while unpacking.
        std::fs::remove_dir_all(&tmp).map_err(|e| FileError::at(&tmp, e))?;
    }
    let bad = |reason: String| Error::from(FileError::at(archive, reason));
    let file = std::fs::File::open(archive).map_err(|e| FileError::at(archive, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| bad(format!("not a complete zip archive (truncated?): {e}")))?;
    if zip.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "holds {} entries, more than {MAX_ENTRIES}",
            zip.len()
        )));
    }
    let result = (|| -> Result<()> {
        let mut total = 0u64;
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| bad(format!("entry {i}: {e}")))?;
            let ename = entry
                .name()
                .map_or_else(|_| format!("entry {i}"), |n| n.into_owned());
            let Some(rel) = entry.enclosed_name() else {
                return Err(bad(format!("entry '{ename}' points outside the folder")));
            };
            let dest = tmp.join(rel);
            if entry.is_dir() {
                std::fs::create_dir_all(&dest).map_err(|e| FileError::at(&dest, e))?;
                continue;
            }
            total = total.saturating_add(entry.size());
            if total > MAX_UNPACKED_BYTES {
                return Err(bad(format!(
                    "unpacks to more than {MAX_UNPACKED_BYTES} bytes"
                )));
            }
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(|e| FileError::at(parent, e))?;
            }
            let mut out = std::fs::File::create(&dest).map_err(|e| FileError::at(&dest, e))?;
            // At most the declared size (and a byte to notice more).
            let size = entry.size();
            let copied = std::io::copy(&mut (&mut entry).take(size + 1), &mut out)
                .map_err(|e| bad(format!("{ename}: {e}")))?;
            if copied != size {
                return Err(bad(format!("{ename}: size differs from its header")));
            }
        }
        let mut tops: Vec<PathBuf> = std::fs::read_dir(&tmp)
            .map_err(|e| FileError::at(&tmp, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        tops.sort();
        for t in &tops {
            let target = to.join(t.file_name().expect("an entry has a name"));
            if target.exists() {
                return Err(FileError::at(
                    &target,
                    format!(
                        "already exists, and {name} would unpack there: move it away (or remove \
                         it) and run again"
                    ),
                )
                .into());
            }
        }
        for t in tops {
            let target = to.join(t.file_name().expect("an entry has a name"));
            std::fs::rename(&t, &target).map_err(|e| FileError::at(&target, e))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_irmas_manifest_and_bad_manifests() {
        let m = Manifest::irmas();
        assert_eq!(m.files.len(), 4);
        assert_eq!(m.files[0].md5, "4fd9f5ed5a18d8e2687e6360b5f60afe");
        let mirrored = m.with_mirror("http://127.0.0.1:9/x/");
        assert_eq!(
            mirrored.files[3].url,
            "http://127.0.0.1:9/x/IRMAS-TestingData-Part3.zip"
        );
        let one = |name: &str, md5: &str| {
            format!("name = \"t\"\n[[files]]\nname = \"{name}\"\nurl = \"u\"\nmd5 = \"{md5}\"\n")
        };
        let ok = "0123456789abcdef0123456789ABCDEF";
        assert!(Manifest::parse(&one("a.zip", ok), "m").is_ok());
        for bad in ["../a.zip", "d/a.zip", ".hidden", ""] {
            let e = Manifest::parse(&one(bad, ok), "m.toml").unwrap_err();
            assert!(e.to_string().starts_with("m.toml: "), "{e}");
        }
        assert!(Manifest::parse(&one("a.zip", "abc"), "m").is_err());
        assert!(Manifest::parse("name = \"t\"\nfiles = []\n", "m").is_err());
        assert!(Manifest::parse("name = \"t\"\nextra = 1\nfiles = []\n", "m").is_err());
    }
}
