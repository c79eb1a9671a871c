//! The files below a folder, walked the same way by every command that takes one (`tag`,
//! `prepare`, `dataset check`, `train`, `evaluate`), on walkdir: symbolic links are not followed
//! unless asked (and then a loop is reported once, not walked), hidden entries and macOS
//! resource forks (`._song.mp3`) are skipped unless asked, and every entry that cannot be read
//! is reported by path instead of being passed over.

use std::path::{Path, PathBuf};

/// How a folder is walked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkOptions {
    /// Follow symbolic links to folders and files (loops are detected and reported).
    pub follow: bool,
    /// Include hidden files and folders (names starting with `.`, which covers `._*` forks).
    pub hidden: bool,
}

/// Something the walk could not do, naming the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkProblem {
    pub path: PathBuf,
    pub reason: String,
    /// A symbolic-link loop (not walked twice) rather than an entry that could not be read.
    pub is_loop: bool,
}

impl std::fmt::Display for WalkProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// What a walk found.
#[derive(Debug, Clone, Default)]
pub struct Walked {
    /// Regular files (and, with `follow`, files behind links), sorted by path.
    pub files: Vec<PathBuf>,
    pub problems: Vec<WalkProblem>,
    /// Entries passed over: symbolic links without `follow`, hidden entries without `hidden`.
    pub skipped_links: usize,
    pub skipped_hidden: usize,
}

impl Walked {
    /// Adds another walk's findings.
    pub fn extend(&mut self, other: Walked) {
        self.files.extend(other.files);
        self.problems.extend(other.problems);
        self.skipped_links += other.skipped_links;
        self.skipped_hidden += other.skipped_hidden;
    }

    /// What the walk passed over and the flag that includes it, or `None` when nothing was.
    pub fn skipped_summary(&self) -> Option<String> {
        let mut skipped = Vec::new();
        if self.skipped_hidden > 0 {
            skipped.push(format!(
                "{} hidden file(s) or folder(s) (--hidden includes them)",
                self.skipped_hidden
            ));
        }
        if self.skipped_links > 0 {
            skipped.push(format!(
                "{} symbolic link(s) (--follow follows them)",
                self.skipped_links
            ));
        }
        (!skipped.is_empty()).then(|| skipped.join(" and "))
    }
}

/// Whether a file or folder name is hidden: it starts with `.` (so do `._*` resource forks).
pub fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Every file below `root` (`root` itself when it is a file), by `opts`. `root` itself is always
/// followed and walked, hidden or not: the user named it.
pub fn walk(root: &Path, opts: WalkOptions) -> Walked {
    walk_to(root, opts, usize::MAX)
}

/// [`walk`] of the files directly in `dir`, not below its subfolders.
pub fn walk_flat(dir: &Path, opts: WalkOptions) -> Walked {
    walk_to(dir, opts, 1)
}

fn walk_to(root: &Path, opts: WalkOptions, max_depth: usize) -> Walked {
    let mut out = Walked::default();
    let mut it = walkdir::WalkDir::new(root)
        .max_depth(max_depth)
        .follow_links(opts.follow)
        .follow_root_links(true)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = it.next() {
        let e = match entry {
            Ok(e) => e,
            Err(e) => {
                out.problems.push(problem(e));
                continue;
            }
        };
        if e.depth() > 0 && !opts.hidden && is_hidden(e.file_name()) {
            out.skipped_hidden += 1;
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let kind = e.file_type();
        if kind.is_file() {
            out.files.push(e.into_path());
        } else if kind.is_symlink() {
            // walkdir resolves links when it follows them: one left here points nowhere.
            if opts.follow {
                out.problems.push(WalkProblem {
                    path: e.into_path(),
                    reason: "broken symbolic link".into(),
                    is_loop: false,
                });
            } else {
                out.skipped_links += 1;
            }
        }
    }
    out.files.sort();
    out
}

fn problem(e: walkdir::Error) -> WalkProblem {
    let path = e.path().map(Path::to_path_buf).unwrap_or_default();
    if let Some(ancestor) = e.loop_ancestor() {
        return WalkProblem {
            path,
            reason: format!(
                "symbolic link loop back to {} (not followed again)",
                ancestor.display()
            ),
            is_loop: true,
        };
    }
    let reason = match e.io_error() {
        Some(io) => format!("cannot read: {io}"),
        None => e.to_string(),
    };
    WalkProblem {
        path,
        reason,
        is_loop: false,
    }
}
