//! Models: torchvision's ResNet18/50 and the Han et al. 2016 baseline, generic over the backend
//! (the device picks it), with torchvision weight import and a self-contained model bundle.

pub mod bundle;
pub mod han;
pub mod import;
pub mod norm;
pub mod resnet;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

pub use han::HanCnn;
pub use resnet::{ResNet, ResNetDepth};

/// The architectures of the paper's Tables 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    ResNet18,
    ResNet50,
    /// Han et al. 2016 (1-channel input: channel 0 of the 3-channel window).
    Han,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Self::ResNet18 => "resnet18",
            Self::ResNet50 => "resnet50",
            Self::Han => "han",
        }
    }

    pub fn resnet_depth(self) -> Option<ResNetDepth> {
        match self {
            Self::ResNet18 => Some(ResNetDepth::ResNet18),
            Self::ResNet50 => Some(ResNetDepth::ResNet50),
            Self::Han => None,
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "resnet18" => Ok(Self::ResNet18),
            "resnet50" => Ok(Self::ResNet50),
            "han" => Ok(Self::Han),
            _ => Err(format!(
                "unknown architecture '{s}' (expected resnet18, resnet50 or han)"
            )),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Any of the three networks.
#[derive(Module, Debug)]
pub enum Model {
    ResNet(ResNet),
    Han(HanCnn),
}

impl Model {
    /// A randomly initialised network (torchvision's init for ResNets, Glorot for Han).
    pub fn new(arch: Arch, num_classes: usize, device: &Device) -> Self {
        match arch.resnet_depth() {
            Some(depth) => Self::ResNet(ResNet::new(depth, num_classes, device)),
            None => Self::Han(HanCnn::new(num_classes, device)),
        }
    }

    /// Learnable parameters, as PyTorch counts them (`p.numel()` over `model.parameters()`):
    /// BatchNorm running statistics are buffers, not parameters.
    pub fn num_trainable_params(&self) -> usize {
        use burn::store::ModuleSnapshot;
        self.collect(None, None, true)
            .iter()
            .filter(|t| !t.name.ends_with("running_mean") && !t.name.ends_with("running_var"))
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }

    /// Logits `[batch, classes]` for windows `[batch, 3, frames, mels]` (Han reads channel 0).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Self::ResNet(m) => m.forward(x),
            Self::Han(m) => {
                let [b, _, t, f] = x.dims();
                m.forward(x.slice([0..b, 0..1, 0..t, 0..f]))
            }
        }
    }
}
