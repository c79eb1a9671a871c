//! Tagging user audio: per file, the predominant instruments with their clip scores and a
//! per-window timeline (start, end, 11 scores), with the bundle's own feature settings, channel
//! mode and thresholds.
//!
//! - [`tagger`]: a loaded bundle that tags one file, streaming ([`Tagger`], [`TagResult`]);
//! - `windows`: analysis windows made as the decoder's frames arrive;
//! - [`pipeline`]: many files at once, decoder threads feeding full batches ([`Tagger::tag_many`]);
//! - [`walk`]: the audio files below the paths a user names;
//! - [`library`]: library runs into one output, resumable and sharded ([`tag_library`]);
//! - [`log`]: that output, JSON lines or CSV, one flushed record per file ([`TagLog`]);
//! - [`output`]: the single-run formats (table, JSON report, per-window CSV, timeline paths);
//! - [`recordings`]: how a bundle does on real solo recordings and on mixtures of them.

pub mod library;
pub mod log;
pub mod output;
pub mod pipeline;
pub mod recordings;
pub mod tagger;
pub mod walk;
mod windows;

pub use library::{LibraryOptions, LibraryProgress, LibrarySummary, shard, tag_library};
pub use log::{FileStamp, TagLine, TagLog};
pub use output::{json_report, timeline_path, window_csv_header};
pub use pipeline::TagStats;
pub use tagger::{
    BOOST_MAX_DB, BOOST_TARGET_DBFS, QUIET_DBFS, TagResult, Tagger, TunedOn, WindowScores, boost_db,
};
pub use walk::{AUDIO_EXTENSIONS, collect_audio_files, collect_files_with};
