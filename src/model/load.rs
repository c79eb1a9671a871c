//! Where a model's weights come from: random, torchvision's ImageNet files, or a file or bundle
//! of ours; and `instrec forward`'s check of ported weights.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};

use super::bundle;
use super::import::{self, Checkpoint, Head, fetch_checkpoint, load_resnet_pth};
use super::network::{Arch, Model};
use super::safetensors;
use crate::error::{Error, FileError};

/// How a model's weights start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// Random (torchvision's initialisation; Glorot for Han).
    Random,
    /// torchvision's ImageNet weights (IMAGENET1K_V1, or ResNet50's V2), all but `fc`.
    ImageNet { v2: bool },
    /// A `.pth` state dict (all but `fc`), a `.safetensors` file or a model bundle directory
    /// written by instrec (everything).
    File(PathBuf),
}

impl std::str::FromStr for Init {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "random" => Self::Random,
            "imagenet" => Self::ImageNet { v2: false },
            "imagenet-v2" => Self::ImageNet { v2: true },
            path => Self::File(PathBuf::from(path)),
        })
    }
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Random => f.write_str("random"),
            Self::ImageNet { v2: false } => f.write_str("imagenet"),
            Self::ImageNet { v2: true } => f.write_str("imagenet-v2"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Builds a model and initialises it as asked. `progress(done, total)` reports a download.
pub fn build_model(
    arch: Arch,
    num_classes: usize,
    init: &Init,
    device: &Device,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<Model, Error> {
    let model = Model::new(arch, num_classes, device);
    match init {
        Init::Random => Ok(model),
        Init::ImageNet { v2 } => {
            let depth = arch.resnet_depth().ok_or_else(|| {
                FileError::new(
                    "imagenet",
                    format!("there are no ImageNet weights for {arch}"),
                )
            })?;
            let ckpt = Checkpoint::for_arch(depth, *v2)
                .map_err(|reason| FileError::new(init.to_string(), reason))?;
            let path = fetch_checkpoint(&ckpt, progress)?;
            load_into(model, &path, Head::Fresh)
        }
        Init::File(path) => load_into(model, path, Head::Fresh),
    }
}

/// `instrec forward`: the eval-mode output of a model with `weights` for a `.npy` batch
/// `[batch, 3, frames, mels]`, written as `.npy` (`pooled`: a ResNet's 512/2048 pooled features
/// instead of the logits). Returns the output's shape.
pub fn forward_npy(
    arch: Arch,
    num_classes: usize,
    weights: &Path,
    input: &Path,
    out: &Path,
    pooled: bool,
    device: &Device,
) -> Result<Vec<usize>, Error> {
    use crate::npy::NpyArray;
    use burn::tensor::TensorData;
    let x = NpyArray::read(input)?;
    let shape: [usize; 4] = x.shape.clone().try_into().map_err(|_| {
        FileError::at(
            input,
            format!(
                "expected a 4-D array [batch, 3, frames, mels], got shape {:?}",
                x.shape
            ),
        )
    })?;
    if shape[1] != 3 {
        return Err(FileError::at(input, format!("expected 3 channels, got {}", shape[1])).into());
    }
    if shape[2] == 0 || shape[3] == 0 {
        let reason = format!("expected at least one frame and one mel band, got shape {shape:?}");
        return Err(FileError::at(input, reason).into());
    }
    if arch == Arch::Han && shape[2].min(shape[3]) < super::han::MIN_SIDE {
        let reason = format!(
            "the Han network needs at least {0} frames and {0} mel bands, got shape {shape:?}",
            super::han::MIN_SIDE
        );
        return Err(FileError::at(input, reason).into());
    }
    let model = load_into(Model::new(arch, num_classes, device), weights, Head::Load)?;
    let x = Tensor::<4>::from_data(TensorData::new(x.data, shape), device);
    let y = match (&model, pooled) {
        (Model::ResNet(r), true) => r.features(x),
        (Model::Han(_), true) => {
            return Err(FileError::new("--pooled", "is only defined for ResNets").into());
        }
        (m, false) => m.forward(x),
    };
    let dims = y.dims().to_vec();
    let data = y
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| FileError::at(out, format!("{e:?}")))?;
    NpyArray::new(dims.clone(), data).write(out)?;
    Ok(dims)
}

/// Loads weights from a file into `model`: `.pth` (torchvision layout; `head` says whether `fc`
/// loads), `.safetensors` or a bundle directory (the whole model).
pub fn load_into(model: Model, path: &Path, head: Head) -> Result<Model, Error> {
    let fail = |reason: String| Error::File(FileError::at(path, reason));
    let weights = if path.is_dir() {
        path.join(bundle::WEIGHTS_FILE)
    } else {
        path.to_path_buf()
    };
    match weights.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let bytes = std::fs::read(&weights).map_err(|e| fail(e.to_string()))?;
            match model {
                // A plain torchvision state dict; a bundle's weights load whole (head included).
                Model::ResNet(r)
                    if safetensors::is_torchvision(&bytes)
                        && !bundle::is_bundle_weights(&bytes) =>
                {
                    Ok(Model::ResNet(import::load_resnet_safetensors(
                        r,
                        bytes,
                        &weights.display().to_string(),
                        head,
                    )?))
                }
                model => Ok(bundle::model_from_safetensors(model, bytes, &weights)?),
            }
        }
        Some("pth") | Some("pt") => match model {
            Model::ResNet(r) => Ok(Model::ResNet(load_resnet_pth(r, &weights, head)?)),
            Model::Han(_) => Err(fail(
                "torchvision .pth files hold ResNets, not the Han CNN".into(),
            )),
        },
        _ => Err(fail(
            "unknown weight format (expected .pth, .safetensors or a model bundle directory)"
                .into(),
        )),
    }
}
