//! The paper's training recipe (Section 4.3): batch 64, Adam (lr 5e-4, weight decay 5e-4), linear
//! warm-up for 5 epochs then cosine annealing stepped per batch, at most 300 epochs, early stopping
//! with patience 25 on the validation loss, sigmoid + binary cross-entropy, 15 % of the training
//! clips held out, the best-validation-loss model kept. Every epoch ends with a checkpoint (model,
//! optimizer, schedule position, early-stopping state, log) so `--resume` continues exactly.
//!
//! - [`config`]: the recipe and everything else that defines a run ([`TrainConfig`]);
//! - [`data`]: the training and validation clips and their batches;
//! - `run`: the loop — restore or start, one epoch at a time, finish;
//! - `checkpoint`: what is saved after each epoch, and read back on resume;
//! - `optim`: the optimizer a run steps; `one_pass_adam`: Adam in one pass on flex;
//!   `fused_adam` (feature `tch`): Adam through LibTorch's fused kernels;
//! - [`early_stop`] and [`schedule`]: when to stop, and the learning rate of each step;
//! - [`layout`]: the files of a run directory; [`observer`]: progress reports;
//! - [`thresholds`]: the decision thresholds tuned on validation data at the end.

mod checkpoint;
pub mod config;
pub mod data;
pub mod early_stop;
#[cfg(feature = "tch")]
pub mod fused_adam;
pub mod layout;
pub mod observer;
mod one_pass_adam;
mod optim;
mod run;
pub mod schedule;
pub mod thresholds;

use std::path::Path;

use crate::error::FileError;
use crate::error::Result;
use crate::util::write_atomic;

pub use checkpoint::EpochLog;
pub use config::{Loss, OptimizerKind, PAPER, Recipe, TrainConfig, read_config};
pub use data::{RunData, load_run_data};
pub use early_stop::EarlyStopping;
pub use layout::{CONFIG_FILE, LOG_FILE, MODEL_DIR, SUMMARY_FILE, bundle_dir};
pub use observer::{Observer, Quiet};
pub use optim::RunOptimizer;
pub use run::{Outcome, TrainSummary};
pub use thresholds::{calibration_clips, recalibrate, tune_all_thresholds};

/// Starts a new run in `run_dir` (its `train.json` is written first).
pub fn start(config: &TrainConfig, run_dir: &Path, obs: &dyn Observer) -> Result<Outcome> {
    config.check()?;
    std::fs::create_dir_all(run_dir).map_err(|e| FileError::at(run_dir, e))?;
    write_atomic(
        &run_dir.join(CONFIG_FILE),
        &serde_json::to_vec_pretty(config)?,
    )?;
    run::run(config, run_dir, false, obs)
}

/// Continues the run in `run_dir` from its last checkpoint, with the settings of its `train.json`
/// (from the beginning when it stopped before its first checkpoint).
pub fn resume(run_dir: &Path, obs: &dyn Observer) -> Result<Outcome> {
    let config = read_config(run_dir)?;
    run::run(&config, run_dir, true, obs)
}

/// Resumes the run in `run_dir` when it has been started, else starts it with `config`.
pub fn start_or_resume(
    config: &TrainConfig,
    run_dir: &Path,
    obs: &dyn Observer,
) -> Result<Outcome> {
    if run_dir.join(CONFIG_FILE).is_file() {
        resume(run_dir, obs)
    } else {
        start(config, run_dir, obs)
    }
}
