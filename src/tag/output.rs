//! The formats of a run without `--out`: a table line per file, per-window CSV rows, the JSON
//! report, and where each file's timeline plot goes.

use std::path::{Path, PathBuf};

use super::tagger::{QUIET_DBFS, TagResult, Tagger};

impl TagResult {
    /// `tag --format table`: one line; a quiet file says so, with its level.
    pub fn table_line(&self) -> String {
        let quiet = match (self.is_quiet(), self.gain_db > 0.0) {
            (false, _) => String::new(),
            (true, false) => format!(", quiet: {:.1} dBFS", self.level_dbfs),
            (true, true) => format!(
                ", quiet: {:.1} dBFS, raised {:.1} dB",
                self.level_dbfs, self.gain_db
            ),
        };
        format!(
            "{}  [{:.1} s, {} windows{quiet}]: {}",
            self.path.display(),
            self.duration_s,
            self.timeline.len(),
            self.predominant_text()
        )
    }

    /// Whether the file's level lies below [`QUIET_DBFS`], where the model hears worse.
    pub fn is_quiet(&self) -> bool {
        self.level_dbfs < QUIET_DBFS
    }

    /// `tag --format csv`: one row per window, under [`window_csv_header`].
    pub fn csv_rows(&self) -> Vec<String> {
        self.timeline
            .iter()
            .map(|w| {
                let s: Vec<String> = w.scores.iter().map(|v| format!("{v:.4}")).collect();
                format!(
                    "\"{}\",{:.3},{:.3},{}",
                    self.path.display(),
                    w.start_s,
                    w.end_s,
                    s.join(",")
                )
            })
            .collect()
    }

    /// The title of its timeline plot: the file's name.
    pub fn title(&self) -> String {
        self.path
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    }

    /// The predominant instruments with their scores, `cel (0.83), pia (0.61)`, or `-`.
    pub fn predominant_text(&self) -> String {
        if self.predominant.is_empty() {
            return "-".into();
        }
        let labels: Vec<String> = self
            .predominant
            .iter()
            .map(|(c, s)| format!("{c} ({s:.2})"))
            .collect();
        labels.join(", ")
    }

    /// The timeline as the plot takes it.
    pub fn timeline_windows(&self) -> Vec<crate::report::TimelineWindow<'_>> {
        self.timeline
            .iter()
            .map(|w| crate::report::TimelineWindow {
                start_s: w.start_s,
                end_s: w.end_s,
                scores: &w.scores,
            })
            .collect()
    }
}

/// The header of `tag --format csv` (one row per window).
pub fn window_csv_header(classes: &[String]) -> String {
    format!("file,start_s,end_s,{}", classes.join(","))
}

/// `tag --format json`: the classes, the aggregation and thresholds applied, each file's result and
/// the failures.
pub fn json_report(
    tagger: &Tagger,
    results: &[TagResult],
    failures: &[String],
) -> serde_json::Value {
    serde_json::json!({
        "classes": tagger.config.classes,
        "aggregation": tagger.aggregation,
        "thresholds": tagger.thresholds,
        "files": results,
        "failures": failures,
    })
}

/// Where `--timeline OUT.png` puts a file's plot: `OUT.png` itself for one file, else
/// `OUT-STEM.png` per file.
pub fn timeline_path(out: &Path, file: &Path, many: bool) -> PathBuf {
    if !many {
        return out.to_path_buf();
    }
    let stem = file
        .file_stem()
        .map_or("clip".into(), |s| s.to_string_lossy().into_owned());
    let base = out
        .file_stem()
        .map_or("timeline".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{base}-{stem}.png"))
}
