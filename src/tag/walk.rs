//! The audio files below the paths a user names.

use std::path::PathBuf;

use crate::audio::{DECODED_EXTENSIONS, UNSUPPORTED_EXTENSIONS};
use crate::walk::{WalkOptions, Walked, walk};

/// Audio file extensions picked up in directories by default (the formats instrec decodes).
pub const AUDIO_EXTENSIONS: [&str; 12] = DECODED_EXTENSIONS;

/// Expands files and directories (recursively, audio extensions only, by the default walk rules)
/// into a sorted file list. Explicitly named files are kept whatever their extension, so a bad
/// one is reported.
pub fn collect_audio_files(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let exts: Vec<String> = AUDIO_EXTENSIONS.iter().map(|e| e.to_string()).collect();
    collect_files_with(inputs, &exts, WalkOptions::default()).files
}

/// [`collect_audio_files`] with another list of extensions (lowercase, without the dot) and walk
/// rules; what could not be walked comes back with the files. Files of the known undecodable
/// formats ([`UNSUPPORTED_EXTENSIONS`]) are listed too, so each is reported as not supported
/// rather than silently left out.
pub fn collect_files_with(inputs: &[PathBuf], extensions: &[String], opts: WalkOptions) -> Walked {
    let wanted = |p: &std::path::Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .is_some_and(|e| {
                extensions.contains(&e) || UNSUPPORTED_EXTENSIONS.contains(&e.as_str())
            })
    };
    let mut out = Walked::default();
    for p in inputs {
        if p.is_dir() {
            let mut w = walk(p, opts);
            w.files.retain(|f| wanted(f));
            out.extend(w);
        } else {
            out.files.push(p.clone());
        }
    }
    out
}
