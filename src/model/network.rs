//! The networks as one type: [`Arch`] names them, [`Model`] holds any of them; the loss and the
//! thread a forward pass runs on.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::backend::Precision;

use super::han::HanCnn;
use super::resnet::{ResNet, ResNetDepth};

/// The architectures of the paper's Tables 1 and 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Arch {
    ResNet18,
    ResNet50,
    /// Han et al. 2016 (1-channel input: channel 0 of the 3-channel window).
    Han,
}

impl Arch {
    pub fn resnet_depth(self) -> Option<ResNetDepth> {
        match self {
            Self::ResNet18 => Some(ResNetDepth::ResNet18),
            Self::ResNet50 => Some(ResNetDepth::ResNet50),
            Self::Han => None,
        }
    }
}

crate::util::display_as_value!(Arch);

/// burn's random generator is process-wide: whatever seeds it or draws from it (initial weights,
/// dropout) holds this lock, so runs trained side by side in one process (tests, a library user)
/// each draw their own seed's weights (two Han runs side by side still share one dropout stream).
pub fn backend_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Any of the three networks.
// Built once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Model {
    ResNet(ResNet),
    Han(HanCnn),
}

impl Model {
    /// Draws every lazily initialised parameter now. burn draws a parameter's random values on
    /// its first use, from the backend's process-wide generator; drawing them all at once lets a
    /// caller seed and initialise under one lock. ResNets draw in forward order (the same weights
    /// as on first use); Han's declaration order skips the dropout draws that used to fall between.
    pub fn materialize(&self) {
        struct Touch;
        impl burn::module::ModuleVisitor for Touch {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let _ = param.val();
            }
        }
        match self {
            Self::ResNet(r) => r.materialize(),
            Self::Han(h) => h.visit(&mut Touch),
        }
    }

    /// A randomly initialised network (torchvision's init for ResNets, Glorot for Han).
    pub fn new(arch: Arch, num_classes: usize, device: &Device) -> Self {
        match arch.resnet_depth() {
            Some(depth) => Self::ResNet(ResNet::new(depth, num_classes, device)),
            None => Self::Han(HanCnn::new(num_classes, device)),
        }
    }

    /// A randomly initialised network with every weight drawn now, under [`backend_rng`]: a
    /// random model (benchmarks, tests) that does not take draws from a seeded run beside it.
    /// ([`Model::new`] draws lazily, on a weight's first use, whenever that comes.)
    pub fn random(arch: Arch, num_classes: usize, device: &Device) -> Self {
        let _guard = backend_rng();
        let model = Self::new(arch, num_classes, device);
        Self::materialize(&model);
        model
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

    /// The network for inference: a ResNet's BatchNorms folded into its convolutions (exact to
    /// float rounding; see [`ResNet::fold_batchnorm`]); Han as it is. Not for training.
    pub fn fold_batchnorm(self) -> Self {
        match self {
            Self::ResNet(r) => Self::ResNet(r.fold_batchnorm()),
            han => han,
        }
    }

    /// Logits `[batch, classes]` for windows `[batch, 3, frames, mels]` (Han reads channel 0).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        on_kernel_pool(&x.device(), || match self {
            Self::ResNet(m) => m.forward(x),
            Self::Han(m) => {
                let [b, _, t, f] = x.dims();
                m.forward(x.slice([0..b, 0..1, 0..t, 0..f]))
            }
        })
    }
}

/// Runs `f` on a rayon worker thread (inline when already on one) if `device` is Flex, whose
/// kernels are rayon loops: called from outside the pool, each loop wakes the workers and puts
/// the caller to sleep (thousands of context switches per training step, and a third runnable
/// thread on two cores), while from a worker they split work in place (ResNet18 on 2 cores:
/// training +8 %, inference +4 %). Elsewhere `f` runs here: LibTorch's OpenMP keeps a thread
/// team per calling thread, and calls from changing workers cost it a third of its speed.
pub fn on_kernel_pool<R: Send>(device: &Device, f: impl FnOnce() -> R + Send) -> R {
    use burn::backend::DispatchDevice;
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Flex(_) => rayon::scope(|_| f()),
        #[allow(unreachable_patterns)]
        _ => f(),
    }
}

thread_local! {
    /// The precision of training convolutions on this thread (see [`with_precision`]).
    static PRECISION: std::cell::Cell<Precision> = const { std::cell::Cell::new(Precision::Fp32) };
}

/// Runs `f` (a forward and backward pass) with training convolutions in `precision`, as
/// PyTorch's `torch.autocast` scopes it to a thread: LibTorch's fused conv → BN blocks then
/// convolve in bf16 (`model::torch`); other paths take no notice.
pub fn with_precision<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    let before = PRECISION.with(|p| p.replace(precision));
    let r = f();
    PRECISION.with(|p| p.set(before));
    r
}

/// The precision [`with_precision`] set on this thread.
#[cfg_attr(not(feature = "tch"), allow(dead_code))]
pub(crate) fn precision() -> Precision {
    PRECISION.with(|p| p.get())
}

/// Mean binary cross-entropy of sigmoid(logits) against 0/1 targets, in PyTorch's numerically
/// stable form (`BCEWithLogitsLoss`): `max(z, 0) - z·y + ln(1 + e^{-|z|})`.
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    #[cfg(feature = "tch")]
    if let Some(loss) = super::torch::bce_with_logits_train(&logits, &targets) {
        return loss;
    }
    let softplus = logits.clone().abs().neg().exp().log1p();
    (logits.clone().clamp_min(0.0) - logits * targets + softplus).mean()
}

/// The asymmetric loss of Ridnik et al. (ICCV 2021) with γ+ = 0, averaged like
/// [`bce_with_logits`]: a positive costs `−ln p` as in BCE; a negative costs
/// `p_m^γ · −ln(1 − p_m)` with `p_m = max(p − clip, 0)`, so negatives the network already scores
/// low stop pulling every other class down, and a negative under `clip` (perhaps an unlabelled
/// instrument that is there) costs nothing.
pub fn asymmetric_loss(
    logits: Tensor<2>,
    targets: Tensor<2>,
    gamma_neg: f32,
    clip: f32,
) -> Tensor<1> {
    // −ln p = softplus(−z), in the stable form of `bce_with_logits`.
    let softplus_neg =
        logits.clone().neg().clamp_min(0.0) + logits.clone().abs().neg().exp().log1p();
    let p_m = (burn::tensor::activation::sigmoid(logits) - clip).clamp_min(0.0);
    // 1 − p_m ≥ 1 − p, which f32 can round to 0 for a confident wrong negative.
    let neg_log = (p_m.clone().neg() + 1.0).clamp_min(1e-7).log().neg();
    let negatives = p_m.powf_scalar(gamma_neg) * neg_log;
    let ones = targets.ones_like();
    (targets.clone() * softplus_neg + (ones - targets) * negatives).mean()
}

#[cfg(test)]
mod tests {
    use burn::tensor::TensorData;

    use super::*;

    fn loss_of(f: fn(Tensor<2>, Tensor<2>) -> Tensor<1>, z: &[f32], y: &[f32]) -> f64 {
        let device = Device::flex();
        let t =
            |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [1, v.len()]), &device);
        f(t(z), t(y)).into_data().try_to_vec::<f32>().unwrap()[0] as f64
    }

    fn asl(z: Tensor<2>, y: Tensor<2>) -> Tensor<1> {
        asymmetric_loss(z, y, 4.0, 0.05)
    }

    #[test]
    fn asymmetric_loss_keeps_bce_for_positives_and_spares_easy_negatives() {
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        // Positives cost what BCE charges them, even far out.
        for z in [-30.0f32, -2.0, 0.0, 1.5, 30.0] {
            let (a, b) = (
                loss_of(asl, &[z], &[1.0]),
                loss_of(bce_with_logits, &[z], &[1.0]),
            );
            assert!((a - b).abs() < 1e-5 * b.max(1.0), "z {z}: {a} vs {b}");
        }
        // A negative scored under the margin costs nothing.
        assert_eq!(loss_of(asl, &[-4.0], &[0.0]), 0.0);
        // A confident wrong negative: (p − 0.05)^4 · −ln(1 − p + 0.05).
        let p = sigmoid(2.0);
        let want = (p - 0.05).powi(4) * -(1.0 - p + 0.05).ln();
        assert!((loss_of(asl, &[2.0], &[0.0]) - want).abs() < 1e-6);
        // Under half what BCE charges it, and finite where f32 rounds p to 1.
        assert!(want < 0.5 * loss_of(bce_with_logits, &[2.0], &[0.0]));
        assert!(loss_of(asl, &[60.0], &[0.0]).is_finite());
        // The mean over a batch's cells, as BCE's.
        let two = loss_of(asl, &[2.0, 1.5], &[0.0, 1.0]);
        let one = (want + loss_of(bce_with_logits, &[1.5], &[1.0])) / 2.0;
        assert!((two - one).abs() < 1e-5);
    }
}
