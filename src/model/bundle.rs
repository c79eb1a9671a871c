//! The saved model: one directory holding `model.safetensors` (the weights, BatchNorm running
//! statistics included) and `config.json` (architecture, classes in order, feature settings,
//! channel mode, thresholds, provenance), so `tag` and `evaluate` need nothing else.

use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{Arch, Model};
use crate::features::{ChannelMode, FeatureSettings};
use crate::util::write_atomic;

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
const FORMAT_VERSION: u32 = 1;

/// Decision thresholds on the aggregated sigmoid scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// One threshold for every class.
    pub global: f32,
    /// Per-class thresholds, in the order of `classes`, when tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<Vec<f32>>,
    /// How they were chosen (`fixed`, `validation-tuned`, ...).
    pub source: String,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            global: 0.5,
            per_class: None,
            source: "fixed".into(),
        }
    }
}

/// Where a model came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The training data (a path or a description).
    pub data: String,
    /// Weight initialisation: `imagenet`, `random`, or a file.
    pub init: String,
    pub seed: u64,
    /// Epochs trained, and the epoch whose weights were kept.
    pub epochs: usize,
    pub best_epoch: usize,
    pub instrec_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleConfig {
    pub format_version: u32,
    pub arch: Arch,
    pub classes: Vec<String>,
    pub features: FeatureSettings,
    pub channels: ChannelMode,
    pub thresholds: Thresholds,
    pub provenance: Provenance,
}

impl BundleConfig {
    pub fn new(arch: Arch, channels: ChannelMode) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            arch,
            classes: crate::CLASSES.iter().map(|c| c.to_string()).collect(),
            features: FeatureSettings::default(),
            channels,
            thresholds: Thresholds::default(),
            provenance: Provenance {
                instrec_version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct BundleError {
    pub path: String,
    pub reason: String,
}

fn err(path: &Path, reason: impl Into<String>) -> BundleError {
    BundleError {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// Serialises a model's tensors as safetensors bytes.
pub fn model_to_safetensors(model: &Model) -> Result<Vec<u8>, String> {
    let mut store = SafetensorsStore::from_bytes(None);
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    store.get_bytes().map_err(|e| e.to_string())
}

/// Loads safetensors bytes into `model`; every tensor of the model must be present, with its
/// shape.
pub fn model_from_safetensors(model: Model, bytes: Vec<u8>) -> Result<Model, String> {
    let mut model = model;
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(false)
        .allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| e.to_string())?;
    if let Some(e) = result.errors.first() {
        return Err(e.to_string());
    }
    if let Some((k, _)) = result.missing.first() {
        return Err(format!("missing tensor {k}"));
    }
    if let Some(k) = result.unused.first() {
        return Err(format!("unexpected tensor {k}"));
    }
    Ok(model)
}

/// Writes the bundle into `dir` (created if needed). Each file is written atomically, the config
/// last, so a bundle with a config is complete.
pub fn save_bundle(dir: &Path, model: &Model, config: &BundleConfig) -> Result<(), BundleError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let weights = model_to_safetensors(model).map_err(|e| err(dir, e))?;
    let wpath = dir.join(WEIGHTS_FILE);
    write_atomic(&wpath, &weights).map_err(|e| err(&wpath, e.to_string()))?;
    let cpath = dir.join(CONFIG_FILE);
    let json = serde_json::to_vec_pretty(config).map_err(|e| err(&cpath, e.to_string()))?;
    write_atomic(&cpath, &json).map_err(|e| err(&cpath, e.to_string()))
}

/// Reads a bundle's config alone.
pub fn read_config(dir: &Path) -> Result<BundleConfig, BundleError> {
    let cpath = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| {
        err(
            &cpath,
            if e.kind() == std::io::ErrorKind::NotFound {
                "no such file (is this a model bundle directory?)".to_string()
            } else {
                e.to_string()
            },
        )
    })?;
    let config: BundleConfig =
        serde_json::from_str(&text).map_err(|e| err(&cpath, format!("invalid config: {e}")))?;
    if config.format_version != FORMAT_VERSION {
        return Err(err(
            &cpath,
            format!("bundle format {} is not supported", config.format_version),
        ));
    }
    Ok(config)
}

/// Loads a bundle onto `device`.
pub fn load_bundle(dir: &Path, device: &Device) -> Result<(Model, BundleConfig), BundleError> {
    let config = read_config(dir)?;
    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| err(&wpath, e.to_string()))?;
    let model = Model::new(config.arch, config.classes.len(), device);
    let model = model_from_safetensors(model, bytes).map_err(|e| err(&wpath, e))?;
    Ok((model, config))
}
