//! The audio files below the paths a user names.

use std::path::PathBuf;

/// Audio file extensions `collect_audio_files` picks up in directories.
pub const AUDIO_EXTENSIONS: [&str; 9] = [
    "wav", "flac", "ogg", "mp3", "m4a", "aac", "aif", "aiff", "oga",
];

/// Expands files and directories (recursively, audio extensions only) into a sorted file list.
/// Explicitly named files are kept whatever their extension, so a bad one is reported.
pub fn collect_audio_files(inputs: &[PathBuf]) -> Vec<PathBuf> {
    let exts: Vec<String> = AUDIO_EXTENSIONS.iter().map(|e| e.to_string()).collect();
    collect_files_with(inputs, &exts)
}

/// [`collect_audio_files`] with another list of extensions (lowercase, without the dot).
pub fn collect_files_with(inputs: &[PathBuf], extensions: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            let mut found = Vec::new();
            while let Some(d) = stack.pop() {
                if let Ok(entries) = std::fs::read_dir(&d) {
                    for e in entries.flatten() {
                        let path = e.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else if path
                            .extension()
                            .and_then(|e| e.to_str())
                            .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase()))
                        {
                            found.push(path);
                        }
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    out
}
