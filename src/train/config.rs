//! What defines a run: the paper's recipe ([`PAPER`]), the optimizer, and the whole
//! [`TrainConfig`] saved as a run's `train.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, DeviceSpec, Precision};
use crate::data::SplitMode;
use crate::data::cache;
use crate::data::mix::{CalibrationConfig, MixConfig};
use crate::data::spec_augment::SpecAugmentConfig;
use crate::error::Result;
use crate::error::{FileError, SettingError};
use crate::features::ChannelMode;
use crate::model::{Arch, asymmetric_loss, bce_with_logits};
use crate::walk::WalkOptions;
use burn::tensor::Tensor;

use super::layout::CONFIG_FILE;
use super::optim::RunOptimizer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum OptimizerKind {
    /// Adam with L2 weight decay added to the gradient (PyTorch's `Adam(weight_decay=...)`).
    Adam,
    /// AdamW (decoupled weight decay).
    AdamW,
}

crate::util::display_as_value!(OptimizerKind);

/// The training loss (`--loss`), which the validation loss, early stopping and the kept epoch
/// use too (a run trained on one loss and judged by another keeps the wrong epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Loss {
    /// Binary cross-entropy over the sigmoids (the paper's).
    #[default]
    Bce,
    /// The asymmetric loss (Ridnik et al. 2021; γ− 4, γ+ 0, probability margin 0.05): easy
    /// negatives weigh less, so one loud instrument does not teach the network to silence the rest.
    Asl,
}

crate::util::display_as_value!(Loss);

impl Loss {
    /// `asl`'s settings, the asymmetric-loss paper's for multi-label tagging.
    pub const ASL_GAMMA_NEG: f32 = 4.0;
    pub const ASL_CLIP: f32 = 0.05;

    pub fn is_bce(&self) -> bool {
        *self == Loss::Bce
    }

    /// The loss of a batch's logits against its 0/1 targets (a mean over the cells).
    pub fn of(self, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
        match self {
            Loss::Bce => bce_with_logits(logits, targets),
            Loss::Asl => asymmetric_loss(logits, targets, Self::ASL_GAMMA_NEG, Self::ASL_CLIP),
        }
    }
}

/// The training hyper-parameters (Section 4.3); missing ones in a TOML `[train]` section are the
/// paper's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Recipe {
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub optimizer: OptimizerKind,
    pub warmup_epochs: usize,
    pub max_epochs: usize,
    pub patience: usize,
    pub val_fraction: f64,
    pub split: SplitMode,
}

/// The paper's recipe: the one place its numbers are written (the CLI's defaults, experiment
/// TOMLs and the demo start from it).
pub const PAPER: Recipe = Recipe {
    batch_size: 64,
    lr: 5e-4,
    weight_decay: 5e-4,
    optimizer: OptimizerKind::Adam,
    warmup_epochs: 5,
    max_epochs: 300,
    patience: 25,
    val_fraction: 0.15,
    // Whole songs on one side: the paper's random 15 % would let a song's clips straddle it.
    split: SplitMode::Song,
};

impl Default for Recipe {
    fn default() -> Self {
        PAPER
    }
}

/// Everything that defines a training run; saved as `train.json` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: PathBuf,
    /// Another IRMAS-layout corpus whose training clips are the validation set (`--val-data`:
    /// e.g. clips of libraries left out of training); `None` splits `data` (the paper's way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_data: Option<PathBuf>,
    pub arch: Arch,
    /// `imagenet`, `imagenet-v2`, `random`, or a weights file, bundle or run directory.
    pub init: String,
    pub channels: ChannelMode,
    pub seed: u64,
    /// The hyper-parameters (flat in `train.json`, as before they had a type of their own).
    #[serde(flatten)]
    pub recipe: Recipe,
    pub backend: Backend,
    /// The backend's device (`--device`); `None` is its default (the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceSpec>,
    /// Feature cache folder.
    pub cache_dir: PathBuf,
    /// Mixing augmentation (`--mix`); `None` is the paper's recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix: Option<MixConfig>,
    /// Log-mel augmentation of training windows (`--spec-augment`); `None` is the paper's recipe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_augment: Option<SpecAugmentConfig>,
    /// The validation mixtures that the mixture-calibrated thresholds are tuned on.
    #[serde(default)]
    pub calibration: CalibrationConfig,
    /// The arithmetic of the training steps (`--precision`; bf16 on LibTorch only).
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
    /// Label a synthetic clip's chords too where a class's instrument plays them
    /// (`--label-chords`; IRMAS, like the paper, labels the predominant instrument only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub label_chords: bool,
    /// The training loss (`--loss`; BCE is the paper's).
    #[serde(default, skip_serializing_if = "Loss::is_bce")]
    pub loss: Loss,
    /// `--follow`: symbolic links inside the data folders are followed (a loop is walked once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
    /// `--hidden`: hidden files and folders inside the data folders are read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
}

impl TrainConfig {
    /// Refuses settings that would panic or poison training, wherever they were read from (flags,
    /// an experiment TOML, a run's train.json); the message names the setting.
    pub fn check(&self) -> Result<(), SettingError> {
        use crate::check as c;
        c::batch("batch_size", self.recipe.batch_size)?;
        c::lr("lr", self.recipe.lr)?;
        c::weight_decay("weight_decay", self.recipe.weight_decay)?;
        c::count("max_epochs", self.recipe.max_epochs)?;
        c::count0("warmup_epochs", self.recipe.warmup_epochs)?;
        c::count("patience", self.recipe.patience)?;
        c::val_fraction("val_fraction", self.recipe.val_fraction)?;
        if let Some(m) = &self.mix {
            m.check()?;
        }
        if let Some(a) = &self.spec_augment {
            a.check()?;
        }
        self.precision.check(self.backend)?;
        self.calibration.check()
    }

    /// A fresh optimizer of the recipe's kind (one pass on flex, fused on LibTorch).
    pub fn optimizer(&self) -> RunOptimizer {
        RunOptimizer::new(self.recipe.optimizer, self.recipe.weight_decay as f32, true)
    }

    /// The paper's settings for a data set, architecture, initialisation and channel mode.
    pub fn paper(data: PathBuf, arch: Arch, init: &str, channels: ChannelMode, seed: u64) -> Self {
        Self {
            data,
            val_data: None,
            arch,
            init: init.to_string(),
            channels,
            seed,
            recipe: PAPER,
            backend: Backend::Flex,
            device: None,
            cache_dir: cache::default_cache_dir(),
            mix: None,
            spec_augment: None,
            calibration: CalibrationConfig::default(),
            precision: Precision::Fp32,
            label_chords: false,
            loss: Loss::Bce,
            follow: false,
            hidden: false,
        }
    }

    /// How the data folders are walked.
    pub fn walk(&self) -> WalkOptions {
        WalkOptions {
            follow: self.follow,
            hidden: self.hidden,
        }
    }
}

/// A run's `train.json`, checked like flags.
pub fn read_config(run_dir: &Path) -> Result<TrainConfig> {
    let p = run_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| FileError::at(&p, format!("cannot resume, no run here ({e})")))?;
    let c = serde_json::from_str::<TrainConfig>(&text)
        .map_err(|e| FileError::at(&p, format!("invalid run config: {e}")))?;
    c.check().map_err(|e| FileError::at(&p, e))?;
    Ok(c)
}
