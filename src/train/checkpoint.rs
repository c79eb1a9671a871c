//! A run's files besides its config: the checkpoint written after every epoch (model, optimizer,
//! schedule position, early-stopping state, log), the best model's bundle and the epoch log.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::FileError;
use crate::error::Result;
use crate::model::Model;
use crate::model::bundle::{BundleConfig, Provenance, save_bundle};
use crate::util::write_atomic;

use super::config::TrainConfig;
use super::early_stop::EarlyStopping;
use super::layout::{CHECKPOINT_DIR, LOG_FILE, MODEL_DIR};

/// One line of the per-epoch log (`log.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// Learning rate of the epoch's last batch.
    pub lr: f64,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Clip-level micro-F1 on the validation clips (s1, threshold 0.5).
    pub val_micro_f1: f64,
    pub seconds: f64,
    /// Training windows per second.
    pub samples_per_s: f64,
}

/// What the checkpoint holds besides the model and optimizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct CheckpointState {
    pub(super) epochs_done: usize,
    pub(super) steps_done: usize,
    pub(super) early: EarlyStopping,
    pub(super) log: Vec<EpochLog>,
    pub(super) stopped: bool,
}

impl CheckpointState {
    /// A run before its first epoch.
    pub(super) fn new(patience: usize) -> Self {
        Self {
            epochs_done: 0,
            steps_done: 0,
            early: EarlyStopping::new(patience),
            log: Vec::new(),
            stopped: false,
        }
    }
}

/// The checkpoint folder of a run.
pub(super) fn checkpoint_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_DIR)
}

/// The run's last checkpoint (model on `device`, optimizer, state), when it has one. A crash
/// between the two renames of [`save_checkpoint`] leaves only the previous one: it is taken.
pub(super) fn restore(
    config: &TrainConfig,
    run_dir: &Path,
    device: &Device,
) -> Result<Option<(Model, super::RunOptimizer, CheckpointState)>> {
    let ckpt = checkpoint_dir(run_dir);
    let old = ckpt.with_extension("old");
    if !ckpt.exists() && old.join("state.json").is_file() {
        std::fs::rename(&old, &ckpt)?;
    }
    if !ckpt.join("state.json").is_file() {
        return Ok(None);
    }
    let state: CheckpointState = serde_json::from_slice(&std::fs::read(ckpt.join("state.json"))?)?;
    let mut model = Model::new(config.arch, crate::CLASSES.len(), device);
    let mut store = BurnpackStore::from_file(ckpt.join("model.bpk"));
    model
        .load_from(&mut store)
        .map_err(|e| FileError::at(&ckpt.join("model.bpk"), e))?;
    let record = OptimizerRecord::load(ckpt.join("optim.bpk"))
        .map_err(|e| FileError::at(&ckpt.join("optim.bpk"), format!("{e:?}")))?;
    let optim = config.optimizer().load_record(record);
    Ok(Some((model, optim, state)))
}

pub(super) fn save_best(
    config: &TrainConfig,
    run_dir: &Path,
    model: &Model,
    epoch: usize,
) -> Result<()> {
    let mut bundle = BundleConfig::new(config.arch, config.channels);
    bundle.provenance = Provenance {
        data: config.data.display().to_string(),
        init: config.init.clone(),
        seed: config.seed,
        epochs: epoch,
        best_epoch: epoch,
        instrec_version: env!("CARGO_PKG_VERSION").into(),
        sources: crate::data::synth::library_records(&config.data),
        validation: config.val_data.as_ref().map(|d| d.display().to_string()),
        validation_sources: config
            .val_data
            .as_deref()
            .map_or_else(Vec::new, crate::data::synth::library_records),
        init_provenance: init_record(config, run_dir)?,
        averaged_with: Vec::new(),
    };
    save_bundle(&run_dir.join(MODEL_DIR), &model.valid(), &bundle)?;
    Ok(())
}

/// The start bundle's provenance; where it no longer reads from `--init` (a resumed run whose
/// start bundle has moved), what this run recorded from it at an earlier best epoch.
fn init_record(config: &TrainConfig, run_dir: &Path) -> Result<Option<Box<Provenance>>> {
    let Some(dir) = super::layout::init_bundle(&config.init) else {
        return Ok(None);
    };
    Ok(match crate::model::bundle::init_provenance(&dir)? {
        Some(p) => Some(p),
        None => crate::model::bundle::read_config(&run_dir.join(MODEL_DIR))
            .ok()
            .and_then(|c| c.provenance.init_provenance),
    })
}

pub(super) fn write_log(run_dir: &Path, log: &[EpochLog]) -> Result<()> {
    let mut text = String::new();
    for l in log {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    write_atomic(&run_dir.join(LOG_FILE), text.as_bytes())?;
    Ok(())
}

/// Writes the checkpoint into a fresh folder and swaps it in, so a crash leaves either the old
/// checkpoint or the new one, never a mixture.
pub(super) fn save_checkpoint(
    run_dir: &Path,
    model: &Model,
    optim: &super::RunOptimizer,
    state: &CheckpointState,
) -> Result<()> {
    let dir = &checkpoint_dir(run_dir);
    let tmp = dir.with_extension("tmp");
    let old = dir.with_extension("old");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut store = BurnpackStore::from_file(tmp.join("model.bpk")).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| FileError::at(&tmp.join("model.bpk"), e))?;
    optim
        .to_record()
        .save(tmp.join("optim.bpk"))
        .map_err(|e| FileError::at(&tmp.join("optim.bpk"), format!("{e:?}")))?;
    write_atomic(&tmp.join("state.json"), &serde_json::to_vec(state)?)?;
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&tmp, dir)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}
