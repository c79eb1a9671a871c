//! Which kernels a tensor takes (Flex, Flex under autodiff, LibTorch under autodiff, or burn's
//! own ops), and the small conversions every kernel needs.

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Tensor, TensorData};

/// `[rows, columns]` of a padding that is the same on both sides of each axis (all the kernels
/// here take); `None` for any other.
pub(crate) fn symmetric_padding(p: &burn::nn::PaddingConfig2d) -> Option<[usize; 2]> {
    match p {
        burn::nn::PaddingConfig2d::Explicit(top, left, bottom, right)
            if top == bottom && left == right =>
        {
            Some([*top, *left])
        }
        burn::nn::PaddingConfig2d::Valid => Some([0, 0]),
        _ => None,
    }
}

/// A tensor's values as f32 on the host (`None` only if conversion fails).
pub(crate) fn host_f32<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.into_data().convert::<f32>().try_to_vec().ok()
}

pub(crate) fn flex_tensor<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

/// Flex under autodiff without checkpointing: the backend this module's autodiff nodes are for.
pub(crate) type FlexAd = Autodiff<Flex, NoCheckpointing>;

/// Where an f32 tensor lives, for choosing a kernel: Flex for inference, Flex or LibTorch under
/// autodiff without checkpointing (the nodes here and in `model::torch` keep their own state),
/// or elsewhere (burn's own ops).
pub(crate) enum Route {
    Flex,
    FlexAutodiff,
    #[cfg(feature = "tch")]
    TchAutodiff,
    Other,
}

pub(crate) fn route<const D: usize>(x: &Tensor<D>) -> Route {
    use burn::backend::{DispatchDevice, GradientCheckpointingStrategy};
    if x.dtype() != DType::F32 {
        return Route::Other;
    }
    let device = x.device();
    let autodiff = device.is_autodiff();
    let strategy = device.gradient_checkpointing_strategy();
    let unchecked = strategy == Some(GradientCheckpointingStrategy::Disabled);
    match device.inner().as_dispatch() {
        DispatchDevice::Flex(_) if !autodiff => Route::Flex,
        DispatchDevice::Flex(_) if unchecked => Route::FlexAutodiff,
        #[cfg(feature = "tch")]
        DispatchDevice::LibTorch(_) if autodiff && unchecked => Route::TchAutodiff,
        #[allow(unreachable_patterns)]
        _ => Route::Other,
    }
}
