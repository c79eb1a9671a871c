//! Models: torchvision's ResNet18/50 and the Han et al. 2016 baseline, generic over the backend
//! (the device picks it), with torchvision weight import and a self-contained model bundle.
//!
//! A ResNet's forward pass takes one of four paths, chosen per call by `kernels::route` and
//! the model's state:
//! 1. **the packed inference network** ([`fast`]): a BatchNorm-folded ResNet on Flex outside
//!    autodiff (tagging, evaluation, validation) runs channels-last in plain buffers;
//! 2. **instrec's Flex kernels** ([`kernels`]): on Flex otherwise (training, or a layer `fast`
//!    does not pack), convolutions and max pooling are im2col + GEMM and argmax pooling, with
//!    their own autodiff nodes; BatchNorm is [`norm`]'s;
//! 3. **LibTorch's fused blocks** (`torch`, with `--features tch`): training on LibTorch runs
//!    each conv → BN (→ ReLU) and each residual end as one LibTorch autograd graph;
//! 4. **burn's own ops**: every other backend and dtype (CubeCL's CUDA, LibTorch inference,
//!    half precision), and the Han CNN everywhere.
//!
//! Files: [`network`] (the architectures as one [`Model`]), [`load`] (initial weights),
//! [`resnet`] (the topology, as torchvision's `resnet.py`), [`han`], [`norm`],
//! [`import`] / [`export`] / [`safetensors`] (weights in and out), [`bundle`] (a trained model
//! with its settings and thresholds).

pub mod bundle;
#[cfg(feature = "tch")]
pub mod channels_last;
pub mod default;
pub mod export;
pub mod fast;
pub mod han;
pub mod import;
pub mod kernels;
pub mod load;
pub mod network;
pub mod norm;
pub mod resnet;
pub mod safetensors;
#[cfg(feature = "tch")]
pub mod torch;

pub use han::HanCnn;
pub use load::{Init, build_model, forward_npy, load_into};
pub use network::{
    Arch, Model, asymmetric_loss, backend_rng, bce_with_logits, on_kernel_pool, with_precision,
};
pub use resnet::{ResNet, ResNetDepth};
