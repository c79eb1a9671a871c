//! Adam and AdamW on LibTorch through LibTorch's own fused kernels (`at::_fused_adam_`,
//! `at::_fused_adamw_`, bound by `csrc/fused_adam.cpp`): one call per parameter tensor, where
//! burn's Adam issues about 13 LibTorch ops (on an H200 the optimizer was 41 % of a ResNet18
//! step). The state is burn's own ([`AdamState`], [`AdamWState`]), so checkpoints read and write
//! as with burn's optimizers and runs resume across the two. Tensors of other backends take
//! burn's optimizer unchanged.
// burn marks its LibTorch backend deprecated; it is still the one that reaches CUDA offline.
#![allow(deprecated)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState,
    LearningRate,
};
use burn::optim::{ModuleOptimizer, Optimizer};
use burn::tensor::{DType, Device, Tensor};

unsafe extern "C" {
    fn instrec_fused_adam(
        params: *const *const c_void,
        grads: *const *const c_void,
        exp_avgs: *const *const c_void,
        exp_avg_sqs: *const *const c_void,
        steps: *const *const c_void,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Parameter tensors stepped by the fused kernels so far in this process (a check that they, not
/// burn's fallback, took the steps).
static FUSED_STEPS: AtomicU64 = AtomicU64::new(0);

/// How many parameter-tensor steps LibTorch's fused kernels have taken in this process.
pub fn fused_steps() -> u64 {
    FUSED_STEPS.load(Ordering::Relaxed)
}

/// The hyper-parameters both kernels take.
#[derive(Debug, Clone, Copy)]
struct Hyper {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    weight_decay: f64,
    /// AdamW's decoupled decay (else Adam's L2 term added to the gradient).
    decoupled: bool,
}

/// Adam (L2 weight decay added to the gradient, as PyTorch's `Adam`) fused on LibTorch.
#[derive(Clone)]
pub struct FusedAdam {
    hyper: Hyper,
    burn: Adam,
}

/// AdamW (decoupled weight decay) fused on LibTorch.
#[derive(Clone)]
pub struct FusedAdamW {
    hyper: Hyper,
    burn: AdamW,
}

/// PyTorch's β (0.9, 0.999), ε 1e-8 and `weight_decay` as L2 (Adam) or decoupled (AdamW): the
/// fused optimizer, whole-module.
pub fn adam(weight_decay: f32, decoupled: bool) -> ModuleOptimizer {
    // burn's β and ε are f32: the kernel gets the same rounded values (1 − β₂ differs from
    // PyTorch's double 0.999 by 1.3e-5 relative), so both optimizers take the same steps.
    let hyper = Hyper {
        beta_1: 0.9f32 as f64,
        beta_2: 0.999f32 as f64,
        epsilon: 1e-8f32 as f64,
        weight_decay: weight_decay as f64,
        decoupled,
    };
    // burn's optimizer for other backends, with the same numbers.
    if decoupled {
        let burn = AdamWConfig::new()
            .with_beta_1(hyper.beta_1 as f32)
            .with_beta_2(hyper.beta_2 as f32)
            .with_epsilon(hyper.epsilon as f32)
            .with_weight_decay(weight_decay)
            .build();
        FusedAdamW { hyper, burn }.into()
    } else {
        let burn = AdamConfig::new()
            .with_beta_1(hyper.beta_1 as f32)
            .with_beta_2(hyper.beta_2 as f32)
            .with_epsilon(hyper.epsilon as f32)
            .with_weight_decay(Some(burn::optim::decay::WeightDecayConfig::new(
                weight_decay,
            )))
            .build();
        FusedAdam { hyper, burn }.into()
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let momentum = state.map(|s| s.momentum);
        match fused_step(&self.hyper, lr, tensor, grad, momentum) {
            Ok((t, m)) => (t, Some(AdamState::new(m))),
            Err(declined) => {
                let (t, g, m) = *declined;
                self.burn.step(lr, t, g, m.map(AdamState::new))
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        Adam::to_device(state, device)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let momentum = state.map(|s| s.momentum);
        match fused_step(&self.hyper, lr, tensor, grad, momentum) {
            Ok((t, m)) => (t, Some(AdamWState { momentum: m })),
            Err(declined) => {
                let (t, g, m) = *declined;
                self.burn
                    .step(lr, t, g, m.map(|momentum| AdamWState { momentum }))
            }
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamW::to_device(state, device)
    }
}

type Momentum<const D: usize> = AdaptiveMomentumState<D>;
/// What goes back to burn's optimizer when the fused kernel does not apply.
type Declined<const D: usize> = Box<(Tensor<D>, Tensor<D>, Option<Momentum<D>>)>;

/// Whether `t` is an f32 tensor of plain LibTorch (the optimizer sees parameters without
/// autodiff).
fn on_libtorch<const D: usize>(t: &Tensor<D>) -> bool {
    use burn::backend::DispatchDevice;
    let device = t.device();
    t.dtype() == DType::F32
        && !device.is_autodiff()
        && matches!(device.inner().as_dispatch(), DispatchDevice::LibTorch(_))
}

/// `t`'s LibTorch tensor, copied unless burn holds no other reference to its storage (the kernel
/// writes in place).
fn writable<const D: usize>(t: Tensor<D>) -> Option<TchTensor> {
    let t = t.try_into_primitive::<LibTorch>().ok()?;
    Some(if t.can_mut() && t.tensor.is_contiguous() {
        t
    } else {
        TchTensor::new(t.tensor.contiguous().copy())
    })
}

fn burn_tensor<const D: usize>(t: TchTensor) -> Tensor<D> {
    Tensor::from_primitive::<LibTorch>(t)
}

/// One fused step of one parameter: its new value and state, or everything handed back when
/// this is not an f32 LibTorch tensor, the state is AMSGrad's, or LibTorch refused.
fn fused_step<const D: usize>(
    hyper: &Hyper,
    lr: LearningRate,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    momentum: Option<Momentum<D>>,
) -> Result<(Tensor<D>, Momentum<D>), Declined<D>> {
    let applies = on_libtorch(&tensor)
        && on_libtorch(&grad)
        && momentum.as_ref().is_none_or(|m| {
            m.max_moment_2.is_none() && on_libtorch(&m.moment_1) && on_libtorch(&m.moment_2)
        });
    if !applies {
        return Err(Box::new((tensor, grad, momentum)));
    }
    let (param, g) = match (writable(tensor), writable(grad)) {
        (Some(p), Some(g)) => (p, g),
        // Unreachable after `on_libtorch`; nothing was consumed that matters.
        _ => unreachable_declined(),
    };
    let time = momentum.as_ref().map_or(0, |m| m.time) + 1;
    let (m, v) = match momentum {
        Some(s) => match (writable(s.moment_1), writable(s.moment_2)) {
            (Some(m), Some(v)) => (m, v),
            _ => unreachable_declined(),
        },
        None => (
            TchTensor::new(param.tensor.zeros_like()),
            TchTensor::new(param.tensor.zeros_like()),
        ),
    };
    // PyTorch's fused Adam reads the step after incrementing it: `time` is this step's.
    let step = tch::Tensor::full(
        [] as [i64; 0],
        time as f64,
        (tch::Kind::Float, param.tensor.device()),
    );
    let ptrs = |t: &tch::Tensor| [t.as_ptr() as *const c_void];
    let mut err = [0 as c_char; 512];
    // SAFETY: each pointer is a live `torch::Tensor *` owned by a tch handle held across the
    // call; n = 1 matches the one-element arrays; `err` is writable for its length.
    let rc = unsafe {
        instrec_fused_adam(
            ptrs(&param.tensor).as_ptr(),
            ptrs(&g.tensor).as_ptr(),
            ptrs(&m.tensor).as_ptr(),
            ptrs(&v.tensor).as_ptr(),
            ptrs(&step).as_ptr(),
            1,
            lr,
            hyper.beta_1,
            hyper.beta_2,
            hyper.weight_decay,
            hyper.epsilon,
            c_int::from(hyper.decoupled),
            err.as_mut_ptr(),
            err.len(),
        )
    };
    if rc != 0 {
        // LibTorch checks its inputs before writing: burn's optimizer redoes the step.
        let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) }.to_string_lossy();
        tracing::warn!("LibTorch's fused Adam refused a step ({msg}); burn's Adam takes it");
        let momentum = (time > 1).then(|| Momentum::new(time - 1, burn_tensor(m), burn_tensor(v)));
        return Err(Box::new((burn_tensor(param), burn_tensor(g), momentum)));
    }
    FUSED_STEPS.fetch_add(1, Ordering::Relaxed);
    Ok((
        burn_tensor(param),
        Momentum::new(time, burn_tensor(m), burn_tensor(v)),
    ))
}

fn unreachable_declined() -> ! {
    unreachable!("a tensor on LibTorch converts to LibTorch's primitive")
}
