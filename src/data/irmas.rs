//! Reader for the official IRMAS layout (Bosch et al. 2012; Zenodo record 1290750):
//!
//! - `IRMAS-TrainingData/<inst>/*.wav`: 3-s clips, one predominant instrument. The label comes
//!   from the folder and the first bracket of the name; the other brackets hold the drum tag
//!   (`[dru]`/`[nod]`, not on every class) and the genre tag, e.g. `[cel][cla]0001__1.wav`,
//!   `[gel][dru][pop_roc]0829__2.wav`. Clips of one song share the name before `__N`.
//! - `IRMAS-TestingData-Part{1,2,3}/**/NAME.wav` with `NAME.txt` listing one instrument code per
//!   line (tabs and other whitespace tolerated): 5–20-s clips with one or more labels.
//!
//! The reader never panics: every file it cannot use becomes an [`Issue`] naming the file and the
//! reason, and the rest of the set still loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::CLASSES;
use crate::error::{FileError, Reason};
use crate::walk::{WalkOptions, Walked, is_hidden, walk, walk_flat};

pub const TRAIN_DIR: &str = "IRMAS-TrainingData";
pub const TEST_DIR_PREFIX: &str = "IRMAS-TestingData-Part";

/// The official counts (for `instrec dataset check`).
pub const OFFICIAL_TRAIN_COUNTS: [usize; 11] =
    [388, 505, 451, 637, 760, 682, 721, 626, 577, 580, 778];
pub const OFFICIAL_TRAIN_TOTAL: usize = 6705;
pub const OFFICIAL_TEST_LABELS: [usize; 11] =
    [111, 62, 163, 535, 942, 361, 995, 326, 167, 211, 1044];
pub const OFFICIAL_TEST_CLIPS: usize = 2874;
pub const OFFICIAL_TEST_LABEL_TOTAL: usize = 4917;

/// The index of an instrument code in [`CLASSES`].
pub fn class_index(code: &str) -> Option<usize> {
    CLASSES.iter().position(|c| *c == code)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrainClip {
    pub path: PathBuf,
    /// Index into [`CLASSES`].
    pub label: usize,
    /// `Some(true)` for `[dru]`, `Some(false)` for `[nod]`, `None` without a drum tag.
    pub drums: Option<bool>,
    /// The genre tag (`cla`, `pop_roc`, `jaz_blu`, `cou_fol`, `lat_sou`, ...), when present.
    pub genre: Option<String>,
    /// The song: the file name without `__N.wav` and the class folder in front.
    pub song: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestClip {
    pub path: PathBuf,
    /// Indices into [`CLASSES`], sorted, without repeats.
    pub labels: Vec<usize>,
}

/// A file the reader could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Irmas {
    pub root: PathBuf,
    pub train: Vec<TrainClip>,
    pub test: Vec<TestClip>,
    pub issues: Vec<Issue>,
}

/// What the brackets of a training file name say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    pub instrument: String,
    pub drums: Option<bool>,
    pub genre: Option<String>,
    pub song: String,
}

/// Parses a training clip's file name, e.g. `[gel][dru][pop_roc]0829__2.wav`.
pub fn parse_train_name(file_name: &str) -> Result<ParsedName, Reason> {
    let stem = file_name.strip_suffix(".wav").ok_or("not a .wav file")?;
    let mut tags = Vec::new();
    let mut rest = stem;
    // Some official names carry a prefix before the first bracket (e.g. `008__[cel]...`).
    let first = rest.find('[').ok_or("no [instrument] tag in the name")?;
    let prefix = &rest[..first];
    rest = &rest[first..];
    while let Some(r) = rest.strip_prefix('[') {
        let end = r.find(']').ok_or("unclosed '[' in the name")?;
        let tag = &r[..end];
        if tag.is_empty() {
            return Err("empty [] tag in the name".into());
        }
        if tag.contains('[') {
            return Err("unclosed '[' in the name".into());
        }
        tags.push(tag.to_string());
        rest = &r[end + 1..];
    }
    let instrument = tags
        .first()
        .ok_or("no [instrument] tag in the name")?
        .clone();
    let mut drums = None;
    let mut genre = None;
    for t in &tags[1..] {
        match t.as_str() {
            "dru" => drums = Some(true),
            "nod" => drums = Some(false),
            g if genre.is_none() => genre = Some(g.to_string()),
            other => return Err(format!("unexpected extra tag [{other}]").into()),
        }
    }
    if rest.is_empty() {
        return Err("no song number after the tags".into());
    }
    // The song is everything but the excerpt number `__N`.
    let song_tail = match rest.rfind("__") {
        Some(i) if rest[i + 2..].chars().all(|c| c.is_ascii_digit()) && i + 2 < rest.len() => {
            &rest[..i]
        }
        _ => rest,
    };
    let tag_text: String = tags.iter().map(|t| format!("[{t}]")).collect();
    Ok(ParsedName {
        instrument,
        drums,
        genre,
        song: format!("{prefix}{tag_text}{song_tail}"),
    })
}

/// Parses a test clip's label file: one instrument code per line, whitespace tolerated.
pub fn parse_labels(text: &str) -> Result<Vec<usize>, Reason> {
    let mut labels = Vec::new();
    for token in text.split_whitespace() {
        let i = class_index(token).ok_or_else(|| format!("unknown instrument code '{token}'"))?;
        if !labels.contains(&i) {
            labels.push(i);
        }
    }
    if labels.is_empty() {
        return Err("the label file lists no instrument".into());
    }
    labels.sort_unstable();
    Ok(labels)
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn is_ext(p: &Path, ext: &str) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some(ext)
}

impl Irmas {
    /// Reads whatever of the official layout is present below `root`. It is an error only when
    /// neither the training folder nor a testing part is there.
    pub fn read(root: &Path) -> Result<Self, FileError> {
        Self::read_with(root, WalkOptions::default())
    }

    /// [`Irmas::read`] with the walk rules of `opts` (symbolic links, hidden entries).
    pub fn read_with(root: &Path, opts: WalkOptions) -> Result<Self, FileError> {
        if !root.is_dir() {
            return Err(FileError::at(root, "not a directory"));
        }
        let mut set = Irmas {
            root: root.to_path_buf(),
            ..Default::default()
        };
        let train_dir = root.join(TRAIN_DIR);
        let mut test_dirs: Vec<PathBuf> = sorted_entries(root)
            .map_err(|e| FileError::at(root, format!("cannot list: {e}")))?
            .into_iter()
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(TEST_DIR_PREFIX))
            })
            .collect();
        test_dirs.sort();
        if !train_dir.is_dir() && test_dirs.is_empty() {
            return Err(FileError::at(
                root,
                format!("no {TRAIN_DIR}/ or {TEST_DIR_PREFIX}N/ folder: not an IRMAS directory"),
            ));
        }
        if train_dir.is_dir() {
            set.read_train(&train_dir, opts);
        }
        for d in test_dirs {
            set.read_test(&d, opts);
        }
        Ok(set)
    }

    fn issue(&mut self, path: &Path, reason: impl Into<String>) {
        self.issues.push(Issue {
            path: path.to_path_buf(),
            reason: reason.into(),
        });
    }

    /// The walk's problems as issues of the data set, and the links it did not follow below
    /// `dir` (a clip behind a link is never left out without a word).
    fn walk_issues(&mut self, dir: &Path, w: &Walked) {
        for p in &w.problems {
            self.issue(&p.path, p.reason.clone());
        }
        if w.skipped_links > 0 {
            self.issue(
                dir,
                format!(
                    "{} symbolic link(s) not followed (skipped; --follow follows them)",
                    w.skipped_links
                ),
            );
        }
    }

    fn read_train(&mut self, dir: &Path, opts: WalkOptions) {
        let classes = match sorted_entries(dir) {
            Ok(v) => v,
            Err(e) => return self.issue(dir, format!("cannot list: {e}")),
        };
        for class_dir in classes {
            let Some(folder) = class_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_owned)
            else {
                continue;
            };
            if is_hidden(std::ffi::OsStr::new(&folder)) && !opts.hidden {
                continue;
            }
            if !class_dir.is_dir() {
                self.issue(
                    &class_dir,
                    "unexpected file in the training folder (skipped)",
                );
                continue;
            }
            let Some(label) = class_index(&folder) else {
                self.issue(
                    &class_dir,
                    format!("unknown instrument folder '{folder}' (skipped)"),
                );
                continue;
            };
            let walked = walk_flat(&class_dir, opts);
            self.walk_issues(&class_dir, &walked);
            for path in walked.files {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = name.as_str();
                if !is_ext(&path, "wav") {
                    self.issue(&path, "not a .wav file (skipped)");
                    continue;
                }
                match parse_train_name(name) {
                    Ok(p) if p.instrument == folder => self.train.push(TrainClip {
                        path: path.clone(),
                        label,
                        drums: p.drums,
                        genre: p.genre,
                        song: format!("{folder}/{}", p.song),
                    }),
                    Ok(p) => self.issue(
                        &path,
                        format!(
                            "the name says [{}] but the folder is {folder} (skipped)",
                            p.instrument
                        ),
                    ),
                    Err(e) => self.issue(&path, format!("unparseable name: {e} (skipped)")),
                }
            }
        }
    }

    fn read_test(&mut self, dir: &Path, opts: WalkOptions) {
        let walked = walk(dir, opts);
        self.walk_issues(dir, &walked);
        let files = walked.files;
        for path in &files {
            if is_ext(path, "wav") {
                let txt = path.with_extension("txt");
                match std::fs::read_to_string(&txt) {
                    Ok(text) => match parse_labels(&text) {
                        Ok(labels) => self.test.push(TestClip {
                            path: path.clone(),
                            labels,
                        }),
                        Err(e) => self.issue(&txt, format!("{e} (clip skipped)")),
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        self.issue(path, "no label file (.txt) beside it (skipped)")
                    }
                    Err(e) => self.issue(&txt, format!("cannot read: {e} (clip skipped)")),
                }
            } else if is_ext(path, "txt") {
                if !path.with_extension("wav").is_file() {
                    self.issue(path, "label file without its .wav (skipped)");
                }
            } else {
                self.issue(path, "neither .wav nor .txt (skipped)");
            }
        }
    }

    /// Every training clip's path, then every test clip's: the file list of the feature cache.
    pub fn all_files(&self) -> Vec<PathBuf> {
        self.train
            .iter()
            .map(|c| c.path.clone())
            .chain(self.test.iter().map(|c| c.path.clone()))
            .collect()
    }

    /// Training clips per class, in the order of [`CLASSES`].
    pub fn train_counts(&self) -> [usize; 11] {
        let mut c = [0; 11];
        for clip in &self.train {
            c[clip.label] += 1;
        }
        c
    }

    /// Test labels per class, in the order of [`CLASSES`].
    pub fn test_label_counts(&self) -> [usize; 11] {
        let mut c = [0; 11];
        for clip in &self.test {
            for &l in &clip.labels {
                c[l] += 1;
            }
        }
        c
    }

    /// How many test clips have 1, 2, 3, ... labels.
    pub fn labels_per_test_clip(&self) -> BTreeMap<usize, usize> {
        let mut m = BTreeMap::new();
        for clip in &self.test {
            *m.entry(clip.labels.len()).or_insert(0) += 1;
        }
        m
    }

    /// Training clips per genre tag (`-` for none).
    pub fn genre_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for clip in &self.train {
            *m.entry(clip.genre.clone().unwrap_or_else(|| "-".into()))
                .or_insert(0) += 1;
        }
        m
    }

    /// Training clips tagged `[dru]`, `[nod]`, and without a drum tag.
    pub fn drum_counts(&self) -> (usize, usize, usize) {
        let d = self.train.iter().filter(|c| c.drums == Some(true)).count();
        let n = self.train.iter().filter(|c| c.drums == Some(false)).count();
        (d, n, self.train.len() - d - n)
    }

    /// What `instrec dataset check` prints: counts per class, labels per test clip, genre and drum
    /// tags, the differences from the official counts and the files that could not be used.
    pub fn report(&self, dir: &Path) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let train = self.train_counts();
        let test = self.test_label_counts();
        let _ = writeln!(s, "IRMAS-layout data set at {}", dir.display());
        let _ = writeln!(
            s,
            "\n{:<6} {:>10} {:>12}",
            "class", "training", "test labels"
        );
        for (i, c) in crate::CLASSES.iter().enumerate() {
            let _ = writeln!(s, "{c:<6} {:>10} {:>12}", train[i], test[i]);
        }
        let total: usize = test.iter().sum();
        let _ = writeln!(s, "{:<6} {:>10} {:>12}", "total", self.train.len(), total);
        let _ = writeln!(s, "\ntest clips: {}", self.test.len());
        for (n, count) in self.labels_per_test_clip() {
            let _ = writeln!(s, "  with {n} label(s): {count}");
        }
        let _ = writeln!(s, "\ngenre tags (training):");
        for (g, n) in self.genre_counts() {
            let _ = writeln!(s, "  {g:<8} {n}");
        }
        let (dru, nod, none) = self.drum_counts();
        let _ = writeln!(
            s,
            "drum tags (training): [dru] {dru}, [nod] {nod}, none {none}"
        );
        let diffs = self.compare_with_official();
        if diffs.is_empty() {
            let _ = writeln!(
                s,
                "\nmatches the official IRMAS counts (6,705 training clips; 2,874 test clips, 4,917 labels)"
            );
        } else {
            let _ = writeln!(
                s,
                "\ndifferences from the official IRMAS counts ({}):",
                diffs.len()
            );
            for d in &diffs {
                let _ = writeln!(s, "  {d}");
            }
        }
        if !self.issues.is_empty() {
            let _ = writeln!(s, "\n{} file(s) could not be used:", self.issues.len());
            for i in &self.issues {
                let _ = writeln!(s, "  {i}");
            }
        }
        s
    }

    /// Differences from the official IRMAS counts (empty for a complete, official copy).
    pub fn compare_with_official(&self) -> Vec<String> {
        let mut diffs = Vec::new();
        let train = self.train_counts();
        for (i, c) in CLASSES.iter().enumerate() {
            if train[i] != OFFICIAL_TRAIN_COUNTS[i] {
                diffs.push(format!(
                    "training {c}: {} clips, official {}",
                    train[i], OFFICIAL_TRAIN_COUNTS[i]
                ));
            }
        }
        if self.test.len() != OFFICIAL_TEST_CLIPS {
            diffs.push(format!(
                "testing: {} clips, official {OFFICIAL_TEST_CLIPS}",
                self.test.len()
            ));
        }
        let test = self.test_label_counts();
        for (i, c) in CLASSES.iter().enumerate() {
            if test[i] != OFFICIAL_TEST_LABELS[i] {
                diffs.push(format!(
                    "testing {c}: {} labels, official {}",
                    test[i], OFFICIAL_TEST_LABELS[i]
                ));
            }
        }
        diffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_drum_tags_and_prefixes() {
        let p = parse_train_name("[cel][cla]0001__1.wav").unwrap();
        assert_eq!(
            (
                p.instrument.as_str(),
                p.drums,
                p.genre.as_deref(),
                p.song.as_str()
            ),
            ("cel", None, Some("cla"), "[cel][cla]0001")
        );
        let p = parse_train_name("[gel][dru][pop_roc]0829__2.wav").unwrap();
        assert_eq!(p.drums, Some(true));
        assert_eq!(p.genre.as_deref(), Some("pop_roc"));
        assert_eq!(p.song, "[gel][dru][pop_roc]0829");
        let p = parse_train_name("008__[cel][nod][cla]0058__1.wav").unwrap();
        assert_eq!(p.drums, Some(false));
        assert_eq!(p.song, "008__[cel][nod][cla]0058");
    }

    #[test]
    fn malformed_names_are_errors_not_panics() {
        for bad in [
            "nobrackets__1.wav",
            "[cel[cla]0001__1.wav",
            "[cel][cla]",
            "[cel][cla]0001__1.mp3",
            "[]0001__1.wav",
            "[cel][cla][jaz_blu][pop_roc]1__1.wav",
            "",
        ] {
            assert!(parse_train_name(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn label_files_tolerate_whitespace_and_reject_unknown_codes() {
        assert_eq!(parse_labels("gel\t\nvoi\t\n").unwrap(), vec![4, 10]);
        assert_eq!(parse_labels("  pia \r\n\r\npia\n").unwrap(), vec![6]);
        assert!(
            parse_labels("gel\ndrums\n")
                .unwrap_err()
                .contains("'drums'")
        );
        assert!(parse_labels("\n\t\n").is_err());
    }
}
