//! Channels-last memory (NHWC strides on NCHW-shaped tensors) for LibTorch training, as PyTorch's
//! `memory_format=torch.channels_last`: oneDNN's and cuDNN's convolutions and LibTorch's
//! BatchNorm and pooling run faster in it (a PyTorch ResNet18 step on this 2-core CPU: 138–140
//! against 119–128 samples/s). The values and shapes burn sees are unchanged; only strides differ.
// burn marks its LibTorch backend deprecated; it is still the one that reaches CUDA offline.
#![allow(deprecated)]

thread_local! {
    /// A layout [`with`] set on this thread, over the environment's.
    static OVERRIDE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Whether LibTorch training convolves channels-last: yes, unless [`with`] says otherwise on
/// this thread or `INSTREC_MEMORY_FORMAT=nchw` keeps LibTorch's default layout (for
/// side-by-side measurements).
pub fn enabled() -> bool {
    OVERRIDE
        .with(|o| o.get())
        .unwrap_or_else(|| std::env::var_os("INSTREC_MEMORY_FORMAT").is_none_or(|v| v != "nchw"))
}

/// Runs `f` (training steps: forward, backward and the optimizer) with channels-last on or off
/// on this thread, whatever the environment says.
pub fn with<R>(channels_last: bool, f: impl FnOnce() -> R) -> R {
    let before = OVERRIDE.with(|o| o.replace(Some(channels_last)));
    let r = f();
    OVERRIDE.with(|o| o.set(before));
    r
}

/// Whether the 4-D `t` is dense channels-last (LibTorch's `is_contiguous(ChannelsLast)`: a
/// dimension of size 1 may have any stride).
pub fn is(t: &tch::Tensor) -> bool {
    let (size, stride) = (t.size(), t.stride());
    if size.len() != 4 {
        return false;
    }
    // Innermost to outermost in NHWC order: C, W, H, N.
    let mut expected = 1;
    for d in [1, 3, 2, 0] {
        if size[d] != 1 && stride[d] != expected {
            return false;
        }
        expected *= size[d];
    }
    true
}

/// `t` (4-D) with channels-last strides, the same values: `t` itself where it has them already.
pub fn to(t: &tch::Tensor) -> Result<tch::Tensor, tch::TchError> {
    if is(t) {
        return Ok(t.shallow_clone());
    }
    t.f_permute([0, 2, 3, 1])?
        .f_contiguous()?
        .f_permute([0, 3, 1, 2])
}

/// An inference batch on LibTorch (no autodiff) in channels-last, which LibTorch's
/// convolutions, BatchNorm and pooling then keep; other tensors as they are.
pub fn inference_input(x: burn::tensor::Tensor<4>) -> burn::tensor::Tensor<4> {
    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;
    if !enabled() || x.device().is_autodiff() {
        return x;
    }
    match x.clone().try_into_primitive::<LibTorch>() {
        Ok(t) => match to(&t.tensor) {
            Ok(c) => burn::tensor::Tensor::from_primitive::<LibTorch>(TchTensor::new(c)),
            Err(_) => x,
        },
        Err(_) => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_keeps_values_and_sets_nhwc_strides() {
        let t = tch::Tensor::arange(2 * 3 * 4 * 5, (tch::Kind::Float, tch::Device::Cpu))
            .reshape([2, 3, 4, 5]);
        assert!(!is(&t));
        let c = to(&t).unwrap();
        assert!(is(&c));
        assert_eq!(c.stride(), vec![60, 1, 15, 3]);
        assert_eq!(c.size(), t.size());
        assert!(c.equal(&t));
        // 1×1 kernels [out, in, 1, 1] are both layouts at once.
        let k = tch::Tensor::zeros([8, 4, 1, 1], (tch::Kind::Float, tch::Device::Cpu));
        assert!(is(&k));
        assert!(!is(&tch::Tensor::zeros(
            [8, 4],
            (tch::Kind::Float, tch::Device::Cpu)
        )));
    }
}
