//! The saved model: one directory holding `model.safetensors` (the weights, BatchNorm running
//! statistics included) and `config.json` (architecture, classes in order, feature settings,
//! channel mode, thresholds, provenance), so `tag` and `evaluate` need nothing else.

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::network::{Arch, Model};
use super::safetensors;
use crate::data::synth::{LibraryRecord, library_records};
use crate::error::{FileError, Reason, SettingError};
use crate::features::{ChannelMode, FeatureSettings};
use crate::util::{sha256_hex, write_atomic};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
const FORMAT_VERSION: u32 = 1;

/// How window sigmoids become one score per class for a clip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Aggregation {
    /// The mean of the window sigmoids (the paper's choice).
    #[default]
    S1,
    /// The sum of the window sigmoids divided by its largest class value (the top class scores 1).
    S2,
}

crate::util::display_as_value!(Aggregation);

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
    /// Thresholds calibrated on validation mixtures (bundles trained since they exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixture: Option<MixtureThresholds>,
}

/// Thresholds tuned on seeded mixtures of validation clips (1–3 instruments), the kind of music
/// the test set holds, instead of on single clips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MixtureThresholds {
    pub global: f32,
    pub per_class: Vec<f32>,
    /// How the mixtures were built, and their seed.
    pub calibration: crate::data::mix::CalibrationConfig,
    pub seed: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            global: 0.5,
            per_class: None,
            source: "fixed".into(),
            mixture: None,
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
    /// The sample libraries of a synthetic training corpus, with their licences and the digests
    /// of every file they read (from its manifest; empty for other data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<LibraryRecord>,
    /// The validation corpus when it was not a split of `data` (`train --val-data`), and its
    /// sample libraries: they chose the kept epoch and the thresholds, not the weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_sources: Vec<LibraryRecord>,
    /// Where the weights started from another bundle (`train --init DIR`, a fine-tune): that
    /// bundle's own provenance, so the sources its weights learnt from stay on record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_provenance: Option<Box<Provenance>>,
    /// Where the weights are the element-wise mean of several bundles' (a "model soup",
    /// `experiments/soup.py`): the records of the bundles averaged after the first, whose record
    /// this one otherwise is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub averaged_with: Vec<Provenance>,
}

impl Provenance {
    /// This provenance and those of the bundles its weights started from, newest first.
    pub fn chain(&self) -> impl Iterator<Item = &Provenance> {
        std::iter::successors(Some(self), |p| p.init_provenance.as_deref())
    }

    /// Every library recorded in the chain and in the bundles averaged into it, trained or
    /// validated on.
    pub fn all_sources(&self) -> Vec<&LibraryRecord> {
        let mut out = Vec::new();
        for p in self.chain() {
            out.extend(p.sources.iter().chain(&p.validation_sources));
            for a in &p.averaged_with {
                out.extend(a.all_sources());
            }
        }
        out
    }
}

/// The provenance of the bundle in `dir`, if `dir` is a bundle directory (not a weights file); a
/// config that does not read is an error, not a record silently dropped.
pub fn init_provenance(dir: &Path) -> Result<Option<Box<Provenance>>, FileError> {
    if !dir.join(CONFIG_FILE).is_file() {
        return Ok(None);
    }
    Ok(Some(Box::new(read_config(dir)?.provenance)))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleConfig {
    pub format_version: u32,
    pub arch: Arch,
    pub classes: Vec<String>,
    pub features: FeatureSettings,
    pub channels: ChannelMode,
    /// Thresholds for clip scores aggregated with s1 (the paper's mean).
    pub thresholds: Thresholds,
    /// The same kinds of threshold tuned for s2 aggregation (bundles trained since they exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds_s2: Option<Thresholds>,
    /// The aggregation `tag` uses unless told otherwise (s1 when absent), chosen at `pack` time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<Aggregation>,
    pub provenance: Provenance,
    /// SHA-256 of `model.safetensors`, written by [`save_bundle`] and checked on load (absent in
    /// bundles written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

impl BundleConfig {
    /// The classes are distinct and named, the thresholds finite in [0, 1], one per class.
    pub fn check(&self) -> Result<(), SettingError> {
        let n = self.classes.len();
        let mut sorted = self.classes.clone();
        sorted.sort();
        sorted.dedup();
        if n == 0 || sorted.len() != n || self.classes.iter().any(|c| c.is_empty()) {
            return Err(SettingError::new(
                "classes",
                format!("be distinct names, got {:?}", self.classes),
            ));
        }
        let per_class = |what: &str, p: &[f32]| -> Result<(), SettingError> {
            if p.len() != n {
                return Err(SettingError::new(
                    what,
                    format!(
                        "have one value per class, got {} values for {n} classes",
                        p.len()
                    ),
                ));
            }
            for (c, &t) in self.classes.iter().zip(p) {
                crate::check::threshold(&format!("{what}[{c}]"), t)?;
            }
            Ok(())
        };
        let sets = [
            ("thresholds", Some(&self.thresholds)),
            ("thresholds_s2", self.thresholds_s2.as_ref()),
        ];
        for (name, t) in sets {
            let Some(t) = t else { continue };
            crate::check::threshold(&format!("{name}.global"), t.global)?;
            if let Some(p) = &t.per_class {
                per_class(&format!("{name}.per_class"), p)?;
            }
            if let Some(m) = &t.mixture {
                crate::check::threshold(&format!("{name}.mixture.global"), m.global)?;
                per_class(&format!("{name}.mixture.per_class"), &m.per_class)?;
            }
        }
        Ok(())
    }

    pub fn new(arch: Arch, channels: ChannelMode) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            arch,
            classes: crate::CLASSES.iter().map(|c| c.to_string()).collect(),
            features: FeatureSettings::default(),
            channels,
            thresholds: Thresholds::default(),
            thresholds_s2: None,
            aggregation: None,
            provenance: Provenance {
                instrec_version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            },
            weights_sha256: None,
        }
    }
}

/// Why a bundle could not be read or written, naming the file.
fn err(path: &Path, reason: impl std::fmt::Display) -> FileError {
    FileError::at(path, reason)
}

/// Metadata key in `model.safetensors` that records the classes the weights were trained with.
const CLASSES_KEY: &str = "instrec_classes";

/// Whether safetensors bytes are an instrec bundle's weights (they record their classes).
pub fn is_bundle_weights(bytes: &[u8]) -> bool {
    safetensors::header(bytes).is_ok_and(|(h, _)| {
        h.get("__metadata__")
            .and_then(|m| m.get(CLASSES_KEY))
            .is_some()
    })
}

/// Serialises a model's tensors as safetensors bytes, deterministically, recording `classes`.
/// A ResNet is written exactly as torchvision's `state_dict()` (names, `[out, in]` linear
/// weights, `num_batches_tracked`), so `torchvision.models.resnet18(num_classes=11)
/// .load_state_dict(safetensors.torch.load_file(...))` takes it as it is; the Han CNN, which has
/// no PyTorch original, keeps burn's names.
pub fn model_to_safetensors(model: &Model, classes: &[String]) -> Result<Vec<u8>, Reason> {
    let mut store = SafetensorsStore::from_bytes(None);
    if let Model::ResNet(_) = model {
        store = store
            .with_to_adapter(BurnToPyTorchAdapter)
            .skip_enum_variants(true)
            .with_key_remapping(r"downsample\.conv\.", "downsample.0.")
            .with_key_remapping(r"downsample\.bn\.", "downsample.1.");
    }
    model.save_into(&mut store).map_err(|e| e.to_string())?;
    let bytes = store.get_bytes().map_err(|e| e.to_string())?;
    let (mut header, start) = safetensors::header(&bytes)?;
    let mut data = bytes[start..].to_vec();
    if let Model::ResNet(_) = model {
        add_batch_counters(&mut header, &mut data);
    }
    let mut meta: BTreeMap<String, String> =
        SafetensorsStore::default_metadata().into_iter().collect();
    meta.insert(CLASSES_KEY.into(), classes.join(","));
    header.insert("__metadata__".into(), serde_json::json!(meta));
    safetensors::write(&header, &data)
}

/// Adds torchvision's `num_batches_tracked` (int64, shape []) beside every BatchNorm's running
/// mean: instrec does not use it (momentum 0.1), PyTorch's strict loading wants it.
fn add_batch_counters(header: &mut BTreeMap<String, serde_json::Value>, data: &mut Vec<u8>) {
    let prefixes: Vec<String> = header
        .keys()
        .filter_map(|k| k.strip_suffix("running_mean").map(str::to_string))
        .collect();
    for p in prefixes {
        let (a, b) = (data.len(), data.len() + 8);
        data.extend(0i64.to_le_bytes());
        header.insert(
            format!("{p}num_batches_tracked"),
            serde_json::json!({"dtype": "I64", "shape": [], "data_offsets": [a, b]}),
        );
    }
}

/// Loads the safetensors bytes of the file `path` into `model`; every tensor of the model must be
/// present, with its shape, and finite.
pub fn model_from_safetensors(
    model: Model,
    bytes: Vec<u8>,
    path: &Path,
) -> Result<Model, FileError> {
    // Compact bundles store weights as half floats; the model computes in f32.
    let bytes = if safetensors::has_f16(&bytes) {
        safetensors::widen_f16(&bytes).map_err(|e| FileError::at(path, e))?
    } else {
        bytes
    };
    let found = safetensors::first_non_finite(&bytes).map_err(|e| FileError::at(path, e))?;
    if let Some(name) = found {
        return Err(FileError::at(
            path,
            format!("tensor {name} holds NaN or infinite values (damaged weights)"),
        ));
    }
    // Bundles hold torchvision-layout ResNets; older ones, and the Han CNN, burn's names.
    match model {
        Model::ResNet(r) if safetensors::is_torchvision(&bytes) => {
            let name = path.display().to_string();
            super::import::load_resnet_safetensors(r, bytes, &name, super::import::Head::Load)
                .map(Model::ResNet)
        }
        model => burn_layout(model, bytes).map_err(|e| FileError::at(path, e)),
    }
}

/// Loads safetensors with burn's own names, every tensor present with its shape.
fn burn_layout(model: Model, bytes: Vec<u8>) -> Result<Model, Reason> {
    let mut model = model;
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .validate(false)
        .allow_partial(true);
    let result = model.load_from(&mut store).map_err(|e| e.to_string())?;
    if let Some(e) = result.errors.first() {
        return Err(Reason(e.to_string()));
    }
    if let Some((k, _)) = result.missing.first() {
        return Err(format!("missing tensor {k}").into());
    }
    if let Some(k) = result.unused.first() {
        return Err(format!("unexpected tensor {k}").into());
    }
    Ok(model)
}

/// Writes the bundle into `dir` (created if needed). Each file is written atomically, the config
/// last, so a bundle with a config is complete.
pub fn save_bundle(dir: &Path, model: &Model, config: &BundleConfig) -> Result<(), FileError> {
    let weights = model_to_safetensors(model, &config.classes).map_err(|e| err(dir, e))?;
    write_bundle(dir, &weights, config.clone()).map(|_| ())
}

/// Writes a bundle's weights, then its config with their digest (each atomically, the config
/// last, so a bundle with a config is complete); returns the config as written.
fn write_bundle(
    dir: &Path,
    weights: &[u8],
    mut config: BundleConfig,
) -> Result<BundleConfig, FileError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let wpath = dir.join(WEIGHTS_FILE);
    write_atomic(&wpath, weights).map_err(|e| err(&wpath, e.to_string()))?;
    config.weights_sha256 = Some(sha256_hex(weights));
    write_config(dir, &config)?;
    Ok(config)
}

/// Rewrites a bundle's config (atomically) and leaves its weights as they are: `config` must
/// keep their digest.
pub fn write_config(dir: &Path, config: &BundleConfig) -> Result<(), FileError> {
    let cpath = dir.join(CONFIG_FILE);
    let json = serde_json::to_vec_pretty(config).map_err(|e| err(&cpath, e.to_string()))?;
    write_atomic(&cpath, &json).map_err(|e| err(&cpath, e.to_string()))
}

/// Reads a bundle's config alone.
pub fn read_config(dir: &Path) -> Result<BundleConfig, FileError> {
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
    parse_config(&text, &cpath)
}

/// A bundle's config from its text (`cpath` names it in errors).
fn parse_config(text: &str, cpath: &Path) -> Result<BundleConfig, FileError> {
    let config: BundleConfig =
        serde_json::from_str(text).map_err(|e| err(cpath, format!("invalid config: {e}")))?;
    if config.format_version != FORMAT_VERSION {
        return Err(err(
            cpath,
            format!("bundle format {} is not supported", config.format_version),
        ));
    }
    config.check().map_err(|e| err(cpath, e))?;
    Ok(config)
}

/// Loads a bundle onto `device`.
pub fn load_bundle(dir: &Path, device: &Device) -> Result<(Model, BundleConfig), FileError> {
    let config = read_config(dir)?;
    let wpath = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| err(&wpath, e.to_string()))?;
    load_checked(dir, config, bytes, device)
}

/// Loads a bundle held in memory (its config's text and its weights), named `dir` in errors.
pub fn load_bundle_bytes(
    dir: &Path,
    config: &str,
    weights: Vec<u8>,
    device: &Device,
) -> Result<(Model, BundleConfig), FileError> {
    let config = parse_config(config, &dir.join(CONFIG_FILE))?;
    load_checked(dir, config, weights, device)
}

fn load_checked(
    dir: &Path,
    config: BundleConfig,
    bytes: Vec<u8>,
    device: &Device,
) -> Result<(Model, BundleConfig), FileError> {
    let wpath = dir.join(WEIGHTS_FILE);
    if let Some(expected) = &config.weights_sha256
        && sha256_hex(&bytes) != *expected
    {
        return Err(err(
            &wpath,
            format!("does not match the weights_sha256 in {CONFIG_FILE} (changed or damaged)"),
        ));
    }
    let (header, _) = safetensors::header(&bytes).map_err(|e| err(&wpath, e))?;
    if let Some(trained) = header
        .get("__metadata__")
        .and_then(|m| m.get(CLASSES_KEY))
        .and_then(|v| v.as_str())
        && trained != config.classes.join(",")
    {
        return Err(err(
            &dir.join(CONFIG_FILE),
            format!(
                "lists the classes {} but the weights were trained with {trained}",
                config.classes.join(",")
            ),
        ));
    }
    let model = Model::new(config.arch, config.classes.len(), device);
    let model = model_from_safetensors(model, bytes, &wpath)?;
    Ok((model, config))
}

/// `records` from the manifest of the corpus in `dir`, where it is at hand (it lists every
/// library's files); otherwise as the bundle had them.
fn refresh_records(records: &mut Vec<LibraryRecord>, dir: &str) {
    if dir.is_empty() {
        return;
    }
    let found = library_records(Path::new(dir));
    if !found.is_empty() {
        *records = found;
    }
}

/// Writes a compact copy of the bundle in `from` into `to`: conv and linear weights as half
/// floats (BatchNorm and biases stay f32), the config's weights digest updated, and the training
/// corpus's libraries (with every file's digest) recorded when its corpus is at hand, and the
/// aggregation `tag` uses by default set when one is given.
pub fn pack_bundle(
    from: &Path,
    to: &Path,
    aggregation: Option<Aggregation>,
) -> Result<BundleConfig, FileError> {
    let mut config = read_config(from)?;
    if aggregation.is_some() {
        config.aggregation = aggregation;
    }
    let wpath = from.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&wpath).map_err(|e| err(&wpath, e.to_string()))?;
    let small = safetensors::narrow_to_f16(&bytes).map_err(|e| err(&wpath, e))?;
    // The corpus's manifest, where it is at hand, has every library's files too.
    let mut p = Some(&mut config.provenance);
    while let Some(q) = p {
        refresh_records(&mut q.sources, &q.data);
        if let Some(v) = &q.validation {
            refresh_records(&mut q.validation_sources, v);
        }
        p = q.init_provenance.as_deref_mut();
    }
    write_bundle(to, &small, config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> LibraryRecord {
        LibraryRecord {
            name: name.into(),
            sha256: None,
            class: None,
            licence: None,
            source: None,
            files: Vec::new(),
        }
    }

    /// A soup's record keeps the libraries of every bundle averaged into it and of what they
    /// started from, and reads back as it was written.
    #[test]
    fn all_sources_follow_starts_and_averaged_bundles() {
        let start = Provenance {
            sources: vec![record("a")],
            ..Default::default()
        };
        let other = Provenance {
            sources: vec![record("b")],
            init_provenance: Some(Box::new(start.clone())),
            ..Default::default()
        };
        let p = Provenance {
            sources: vec![record("c")],
            validation_sources: vec![record("v")],
            init_provenance: Some(Box::new(start)),
            averaged_with: vec![other],
            ..Default::default()
        };
        let names: Vec<&str> = p.all_sources().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["c", "v", "b", "a", "a"]);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Provenance>(&json).unwrap(), p);
        let plain = serde_json::to_string(&Provenance::default()).unwrap();
        assert!(!plain.contains("averaged_with"), "{plain}");
    }
}
