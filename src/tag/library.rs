//! A library run: every file into one output as each is done, resumable after a crash (files
//! already there unchanged are skipped) and split into shards for parallel jobs.

use std::path::{Path, PathBuf};

use super::log::{FileStamp, TagLine, TagLog};
use super::tagger::Tagger;

/// The part `k` of `n` (1-based) of a file list: the files whose path hashes to it (FNV-1a of the
/// path as listed), so N processes given the same inputs tag disjoint parts that together are
/// the whole list, whatever order each one sees.
pub fn shard(files: Vec<PathBuf>, k: usize, n: usize) -> Vec<PathBuf> {
    // The raw bytes: equal to the text of a UTF-8 path, and exact for any other.
    let hash = |p: &Path| {
        crate::util::path_json::raw_bytes(p)
            .into_iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
            })
    };
    files
        .into_iter()
        .filter(|p| (hash(p) % n as u64) as usize == k - 1)
        .collect()
}

/// How `tag DIR --out FILE` tags a library.
#[derive(Debug, Clone)]
pub struct LibraryOptions {
    /// `.jsonl` (one JSON line per file) or `.csv` (one row per file).
    pub out: PathBuf,
    /// Go on with an existing output, skipping the files already in it unchanged.
    pub resume: bool,
    /// Only part `k` of `n` of the file list.
    pub shard: Option<(usize, usize)>,
    /// Each line carries the per-window timeline.
    pub timeline: bool,
    /// Decoding threads.
    pub threads: usize,
}

/// How a library run went.
#[derive(Debug, Clone, Default)]
pub struct LibrarySummary {
    /// Files tagged now (failures included), and files found finished in the output.
    pub attempted: usize,
    pub skipped: usize,
    pub audio_s: f64,
    pub seconds: f64,
    /// Files tagged now whose level lies below [`super::QUIET_DBFS`], and of them those raised.
    pub quiet: usize,
    pub raised: usize,
    /// One line per file that could not be tagged.
    pub failures: Vec<String>,
}

impl LibrarySummary {
    pub fn text(&self, out: &Path) -> String {
        format!(
            "{} files tagged into {} ({} already there), {:.2} h of audio at {:.0} audio-s/s, {} failed",
            self.attempted - self.failures.len(),
            out.display(),
            self.skipped,
            self.audio_s / 3600.0,
            self.audio_s / self.seconds.max(1e-9),
            self.failures.len()
        ) + &match (self.quiet, self.raised) {
            (0, _) => String::new(),
            (q, 0) => format!("; {q} quiet (RMS below {} dBFS)", super::QUIET_DBFS),
            (q, r) => format!("; {q} quiet, {r} of them raised"),
        }
    }
}

/// Where a library run is, after each file.
#[derive(Debug, Clone, Copy)]
pub struct LibraryProgress<'a> {
    pub done: usize,
    pub of: usize,
    /// Audio seconds tagged so far.
    pub audio_s: f64,
    /// This file's error, when it failed.
    pub failure: Option<&'a str>,
}

/// Tags `files` into `opts.out`, one line per file as each is done; with `opts.resume`, files
/// already there with the same size and mtime are skipped. `progress` follows each file. A failed file is recorded and the run goes on; an
/// output that cannot be written ends it.
pub fn tag_library(
    tagger: &Tagger,
    files: Vec<PathBuf>,
    opts: &LibraryOptions,
    progress: &mut dyn FnMut(LibraryProgress),
) -> std::io::Result<LibrarySummary> {
    let start = std::time::Instant::now();
    let files = match opts.shard {
        Some((k, n)) => shard(files, k, n),
        None => files,
    };
    let (mut log, done) = TagLog::open(&opts.out, opts.resume, &tagger.config.classes)?;
    // Each file's stamp, taken once: it decides the skip and goes into the file's record.
    let mut stamps = std::collections::HashMap::new();
    let todo: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| {
            let stamp = FileStamp::of(f);
            let finished = stamp.is_some_and(|s| done.contains(&(f.clone(), s)));
            let zero = FileStamp {
                size: 0,
                mtime_ns: 0,
            };
            stamps.insert(f.clone(), stamp.unwrap_or(zero));
            !finished
        })
        .collect();
    let mut summary = LibrarySummary {
        attempted: todo.len(),
        skipped: done.len(),
        ..Default::default()
    };
    let mut write_error = None;
    let mut finished = 0;
    tagger.tag_many(&todo, opts.threads, &mut |f, r| {
        let stamp = stamps[f];
        let mut failure = None;
        let line = match r {
            Ok(r) => {
                summary.audio_s += r.duration_s;
                summary.quiet += usize::from(r.is_quiet());
                summary.raised += usize::from(r.gain_db > 0.0);
                TagLine::result(&r, &tagger.config.classes, stamp, opts.timeline)
            }
            Err(e) => {
                failure = Some(e.to_string());
                TagLine::failure(f, stamp, e.reason)
            }
        };
        if let Err(e) = log.write(&line) {
            write_error.get_or_insert(e);
        }
        finished += 1;
        progress(LibraryProgress {
            done: finished,
            of: todo.len(),
            audio_s: summary.audio_s,
            failure: failure.as_deref(),
        });
        summary.failures.extend(failure);
    });
    if let Some(e) = write_error {
        return Err(e);
    }
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}
