//! The files of a run directory.

use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "train.json";
pub const LOG_FILE: &str = "log.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
pub const MODEL_DIR: &str = "model";
/// The last epoch's checkpoint (model, optimizer, state), swapped in whole after each epoch.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// A run directory holding `model/`, or a bundle directory itself: the bundle either names.
pub fn bundle_dir(p: &Path) -> PathBuf {
    let inner = p.join(MODEL_DIR);
    if inner.join(crate::model::bundle::CONFIG_FILE).is_file() {
        inner
    } else {
        p.to_path_buf()
    }
}

/// The bundle a `--init` value names, when it names a path rather than random or ImageNet weights
/// (a run directory names the bundle in its model/).
pub fn init_bundle(init: &str) -> Option<PathBuf> {
    match init.parse::<crate::model::Init>() {
        Ok(crate::model::Init::File(p)) => Some(bundle_dir(&p)),
        Ok(_) => None,
    }
}
