//! The output of a library run: JSON lines or CSV, one flushed record per file, that a resumed run
//! reads back.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::tagger::{TagResult, WindowScores};

/// What identifies a file's version: its size and modification time (ns since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
}

impl FileStamp {
    pub fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        let mtime_ns = m
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Some(Self {
            size: m.len(),
            mtime_ns,
        })
    }
}

/// One line of a JSON-lines tag file: a file's result, or why it failed.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TagLine {
    #[serde(with = "crate::util::path_json")]
    pub path: PathBuf,
    #[serde(flatten)]
    pub stamp: FileStamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// The file's RMS level before any gain, dBFS ([`TagResult::level_dbfs`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level_dbfs: Option<f64>,
    /// The gain applied before tagging, dB (`tag --boost-quiet`; absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gain_db: Option<f64>,
    /// Aggregated score per class, by class code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<std::collections::BTreeMap<String, f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predominant: Option<Vec<(String, f32)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<Vec<WindowScores>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TagLine {
    pub fn result(r: &TagResult, classes: &[String], stamp: FileStamp, timeline: bool) -> Self {
        Self {
            path: r.path.clone(),
            stamp,
            duration_s: Some(r.duration_s),
            level_dbfs: Some(r.level_dbfs),
            gain_db: (r.gain_db > 0.0).then_some(r.gain_db),
            scores: Some(
                classes
                    .iter()
                    .cloned()
                    .zip(r.scores.iter().copied())
                    .collect(),
            ),
            predominant: Some(r.predominant.clone()),
            timeline: timeline.then(|| r.timeline.clone()),
            error: None,
        }
    }

    pub fn failure(path: &Path, stamp: FileStamp, error: String) -> Self {
        Self {
            path: path.to_path_buf(),
            stamp,
            duration_s: None,
            level_dbfs: None,
            gain_db: None,
            scores: None,
            predominant: None,
            timeline: None,
            error: Some(error),
        }
    }
}

/// A tag file that grows one flushed record per file, so a run that dies loses at most the record
/// it was writing; reopened with `resume`, it says which files are done. JSON lines, or CSV (one
/// row per file: path, size, mtime_ns, duration_s, error, predominant, one score per class; no
/// timeline) when the name ends in `.csv`.
pub struct TagLog {
    file: std::fs::File,
    path: PathBuf,
    /// The class order of CSV rows; `None` for JSON lines.
    csv: Option<Vec<String>>,
}

impl TagLog {
    /// Opens `path` for a new run (it must not exist) or, with `resume`, to go on: a last record
    /// cut off by a crash is removed, and the (path, stamp) pairs already there are returned.
    pub fn open(
        path: &Path,
        resume: bool,
        classes: &[String],
    ) -> std::io::Result<(Self, std::collections::HashSet<(PathBuf, FileStamp)>)> {
        use std::io::Write as _;
        let at = crate::util::io_at(path);
        let invalid = |why: String| {
            at(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an instrec tag file ({why})"),
            ))
        };
        let csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            .then(|| classes.to_vec());
        let header = csv.as_ref().map(|c| csv_header(c));
        let mut done = std::collections::HashSet::new();
        let mut fresh = true;
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_file() {
                return Err(at(std::io::Error::other("is not a regular file")));
            }
            if !resume {
                return Err(at(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists (add --resume to go on with it, or remove it)",
                )));
            }
            let bytes = std::fs::read(path).map_err(&at)?;
            let (records, complete) = split_records(&bytes, csv.is_some());
            for (k, r) in records.iter().enumerate() {
                match &header {
                    Some(h) if k == 0 => {
                        if *r == legacy_csv_header(classes).as_bytes() {
                            return Err(invalid(
                                "written by an older instrec, without the path_base64 column: \
                                 tag into a new file"
                                    .into(),
                            ));
                        }
                        if *r != h.as_bytes() {
                            return Err(invalid("its CSV header is not this model's".into()));
                        }
                    }
                    Some(_) => {
                        let f = csv_fields(r);
                        let path = match f.get(1).map(String::as_str) {
                            Some("") => f.first().map(PathBuf::from),
                            Some(b) => crate::util::path_json::from_base64(b).ok(),
                            None => None,
                        };
                        let size = f.get(2).and_then(|v| v.parse::<u64>().ok());
                        let mtime = f.get(3).and_then(|v| v.parse::<i64>().ok());
                        let (Some(p), Some(size), Some(mtime_ns)) = (path, size, mtime) else {
                            return Err(invalid(format!("row {}", k + 1)));
                        };
                        done.insert((p, FileStamp { size, mtime_ns }));
                    }
                    None => {
                        let l: TagLine =
                            serde_json::from_slice(r).map_err(|e| invalid(e.to_string()))?;
                        done.insert((l.path, l.stamp));
                    }
                }
            }
            fresh = records.is_empty();
            if complete < bytes.len() {
                // The record a crash cut off: dropped, its file is tagged again.
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(&at)?;
                f.set_len(complete as u64).map_err(&at)?;
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(&at)?;
        if let (true, Some(h)) = (fresh, &header) {
            file.write_all(format!("{h}\n").as_bytes()).map_err(&at)?;
        }
        file.flush().map_err(&at)?;
        Ok((
            Self {
                file,
                path: path.to_path_buf(),
                csv,
            },
            done,
        ))
    }

    /// Appends one record and flushes it to the file.
    pub fn write(&mut self, line: &TagLine) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut bytes = match &self.csv {
            Some(classes) => csv_row(line, classes).into_bytes(),
            None => serde_json::to_vec(line).map_err(std::io::Error::other)?,
        };
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .map_err(crate::util::io_at(&self.path))
    }
}

/// The CSV header: `path` is the path's text (lossy when it is not UTF-8), and `path_base64` its
/// raw bytes in base64 in that case only (empty otherwise), so a resume finds the file again.
fn csv_header(classes: &[String]) -> String {
    format!(
        "path,path_base64,size,mtime_ns,duration_s,error,predominant,{}",
        classes.join(",")
    )
}

/// The header before `path_base64`.
fn legacy_csv_header(classes: &[String]) -> String {
    format!(
        "path,size,mtime_ns,duration_s,error,predominant,{}",
        classes.join(",")
    )
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_row(l: &TagLine, classes: &[String]) -> String {
    let raw = match l.path.to_str() {
        Some(_) => String::new(),
        None => crate::util::path_json::to_base64(&l.path),
    };
    let mut f = vec![
        csv_quote(&l.path.to_string_lossy()),
        raw,
        l.stamp.size.to_string(),
        l.stamp.mtime_ns.to_string(),
        l.duration_s.map_or(String::new(), |d| format!("{d:.3}")),
        csv_quote(l.error.as_deref().unwrap_or("")),
        csv_quote(
            &l.predominant
                .iter()
                .flatten()
                .map(|(c, s)| format!("{c}:{s:.4}"))
                .collect::<Vec<_>>()
                .join(";"),
        ),
    ];
    f.extend(classes.iter().map(|c| {
        l.scores
            .as_ref()
            .and_then(|s| s.get(c))
            .map_or(String::new(), |v| format!("{v:.4}"))
    }));
    f.join(",")
}

/// The complete records of a tag file (a CSV record may hold quoted line breaks) and the length
/// they cover; what follows the last record's end is a record cut off.
fn split_records(bytes: &[u8], csv: bool) -> (Vec<&[u8]>, usize) {
    let (mut records, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' if csv => quoted = !quoted,
            b'\n' if !quoted => {
                if i > start {
                    records.push(&bytes[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    (records, start)
}

/// The fields of one CSV record.
fn csv_fields(record: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(record);
    let (mut fields, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}
