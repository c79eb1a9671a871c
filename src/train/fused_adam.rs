//! Adam and AdamW on LibTorch through LibTorch's own fused kernels (`at::_fused_adam_`,
//! `at::_fused_adamw_`, bound by `csrc/fused_adam.cpp`), where burn's Adam issues about 13
//! LibTorch ops per parameter tensor (on an H200 the optimizer was 41 % of a ResNet18 step).
//! burn's optimizer visits one parameter at a time: each visit here only queues the step (the
//! tensors it will update in place), and [`Queue::flush`] then steps all of them in one kernel
//! call per device, learning rate and step number: one call per step for a model. The state is burn's own (`AdamState`, `AdamWState`),
//! so checkpoints read and write as with burn's optimizers and runs resume across the two.
//! Tensors of other backends take burn's optimizer (flex's in one pass, `one_pass_adam`).
// burn marks its LibTorch backend deprecated; it is still the one that reaches CUDA offline.
#![allow(deprecated)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use burn::backend::LibTorch;
use burn::backend::libtorch::TchTensor;
use burn::optim::{LearningRate, ModuleOptimizer};
use burn::tensor::Tensor;

use crate::model::channels_last;
use crate::model::torch::call_shim;

use super::one_pass_adam::{Hyper, Momentum, StepKernel, WithKernel, with_one_pass};
use super::optim::{adam_config, adamw_config};

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

/// One parameter's step, waiting for [`Queue::flush`]: handles on the tensors it updates.
struct Pending {
    param: tch::Tensor,
    grad: tch::Tensor,
    m: tch::Tensor,
    v: tch::Tensor,
    /// This step's number (from 1).
    time: usize,
    lr: f64,
}

/// The steps queued since the last flush (shared by an optimizer and its clones), and the
/// hyper-parameters they are taken with.
#[derive(Clone)]
pub struct Queue {
    pending: Arc<Mutex<Vec<Pending>>>,
    hyper: Hyper,
    /// Kernel calls, and parameter tensors stepped by them (a check that the kernels, not
    /// burn's fallback, took the steps, and in how many calls).
    counts: Arc<(AtomicU64, AtomicU64)>,
}

// SAFETY: tch handles are reference-counted LibTorch tensors; the queue only moves them between
// threads under its lock, as burn-tch does with its own (it marks `TchTensor` Send and Sync).
unsafe impl Send for Pending {}

impl Queue {
    fn new(hyper: Hyper) -> Self {
        Self {
            pending: Arc::default(),
            hyper,
            counts: Arc::default(),
        }
    }

    /// (kernel calls, parameter-tensor steps they took) so far.
    pub fn counts(&self) -> (u64, u64) {
        let (calls, steps) = &*self.counts;
        (calls.load(Ordering::Relaxed), steps.load(Ordering::Relaxed))
    }

    fn push(&self, p: Pending) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(p);
    }

    /// Applies every queued step: one kernel call per (device, learning rate, step number),
    /// i.e. one per step for a whole model on one device. The parameters, moments and gradients
    /// burn holds change in place. An error names LibTorch's reason; the queue is empty after.
    pub fn flush(&self) -> Result<(), String> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut groups: Vec<Vec<Pending>> = Vec::new();
        for p in pending {
            let key = |q: &Pending| (q.param.device(), q.lr.to_bits(), q.time);
            match groups.iter_mut().find(|g| key(&g[0]) == key(&p)) {
                Some(g) => g.push(p),
                None => groups.push(vec![p]),
            }
        }
        for group in groups {
            run_kernel(&self.hyper, &group)?;
            self.counts.0.fetch_add(1, Ordering::Relaxed);
            self.counts
                .1
                .fetch_add(group.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// One kernel call over `group` (one device, learning rate and step number).
fn run_kernel(hyper: &Hyper, group: &[Pending]) -> Result<(), String> {
    let (first, n) = (&group[0], group.len());
    // PyTorch's fused Adam reads each step after incrementing it: `time` is this step's. One
    // fill for the group, seen through views.
    let steps = tch::Tensor::f_full(
        [n as i64],
        first.time as f64,
        (tch::Kind::Float, first.param.device()),
    )
    .and_then(|t| t.f_unbind(0))
    .map_err(|e| e.to_string())?;
    let ptrs = |f: &dyn Fn(&Pending) -> &tch::Tensor| -> Vec<*const c_void> {
        group
            .iter()
            .map(|p| f(p).as_ptr() as *const c_void)
            .collect()
    };
    let (params, grads) = (ptrs(&|p| &p.param), ptrs(&|p| &p.grad));
    let (ms, vs) = (ptrs(&|p| &p.m), ptrs(&|p| &p.v));
    let steps: Vec<*const c_void> = steps.iter().map(|t| t.as_ptr() as *const c_void).collect();
    // SAFETY: every pointer is a live `torch::Tensor *` owned by a tch handle in `group` or
    // `steps`, held across the call; each array has n entries; `err` is writable for `len` bytes.
    call_shim(|err, len| unsafe {
        instrec_fused_adam(
            params.as_ptr(),
            grads.as_ptr(),
            ms.as_ptr(),
            vs.as_ptr(),
            steps.as_ptr(),
            n,
            first.lr,
            hyper.beta_1 as f64,
            hyper.beta_2 as f64,
            hyper.weight_decay as f64,
            hyper.epsilon as f64,
            c_int::from(hyper.decoupled),
            err,
            len,
        )
    })
    .map_err(|msg| format!("LibTorch's fused Adam: {msg}"))
}

/// PyTorch's β (0.9, 0.999), ε 1e-8 and `weight_decay` as L2 (Adam) or decoupled (AdamW): the
/// fused optimizer (burn's state; burn's Adam with flex's one pass for other tensors),
/// whole-module, and the queue that [`Queue::flush`] must empty after each of its steps.
pub fn adam(weight_decay: f32, decoupled: bool) -> (ModuleOptimizer, Queue) {
    // burn's β and ε (those of `adam_config`) are f32: the kernel gets the same rounded values
    // (1 − β₂ differs from PyTorch's double 0.999 by 1.3e-5 relative), so both optimizers take
    // the same steps.
    let hyper = Hyper::new(weight_decay, decoupled);
    let kernel = Queue::new(hyper);
    let optim = if decoupled {
        let burn = with_one_pass(adamw_config(weight_decay).build(), hyper);
        ModuleOptimizer::from(WithKernel {
            burn,
            kernel: kernel.clone(),
        })
    } else {
        let burn = with_one_pass(adam_config(weight_decay).build(), hyper);
        ModuleOptimizer::from(WithKernel {
            burn,
            kernel: kernel.clone(),
        })
    };
    (optim, kernel)
}

/// Steps of f32 LibTorch tensors: queued, taken by [`Queue::flush`].
impl StepKernel for Queue {
    fn takes(device: &burn::backend::DispatchDevice) -> bool {
        matches!(device, burn::backend::DispatchDevice::LibTorch(_))
    }

    /// Queues one parameter's step and returns its tensors (updated in place by the flush).
    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        momentum: Option<Momentum<D>>,
    ) -> (Tensor<D>, Momentum<D>) {
        let param = writable_param(tensor).unwrap_or_else(|| unreachable_declined());
        let like = |t: Tensor<D>| writable_like(t, &param.tensor);
        let g = like(grad).unwrap_or_else(|| unreachable_declined());
        let time = momentum.as_ref().map_or(0, |m| m.time) + 1;
        let (m, v) = match momentum {
            Some(s) => match (like(s.moment_1), like(s.moment_2)) {
                (Some(m), Some(v)) => (m, v),
                _ => unreachable_declined(),
            },
            None => (
                TchTensor::new(param.tensor.zeros_like()),
                TchTensor::new(param.tensor.zeros_like()),
            ),
        };
        self.push(Pending {
            param: param.tensor.shallow_clone(),
            grad: g.tensor.shallow_clone(),
            m: m.tensor.shallow_clone(),
            v: v.tensor.shallow_clone(),
            time,
            lr,
        });
        (
            burn_tensor(param),
            Momentum::new(time, burn_tensor(m), burn_tensor(v)),
        )
    }
}

/// The parameter's LibTorch tensor, updated in place by the kernel: copied where burn holds
/// another reference to its storage, and a convolution's kernel once into channels-last
/// (`model::channels_last`), so that the training convolutions need not convert it each step.
fn writable_param<const D: usize>(t: Tensor<D>) -> Option<TchTensor> {
    let t = t.try_into_primitive::<LibTorch>().ok()?;
    let nhwc = D == 4 && channels_last::enabled();
    let in_layout = if nhwc {
        channels_last::is(&t.tensor)
    } else {
        t.tensor.is_contiguous()
    };
    Some(if t.can_mut() && in_layout {
        t
    } else if nhwc {
        TchTensor::new(channels_last::to(&t.tensor).ok()?.copy())
    } else {
        TchTensor::new(t.tensor.contiguous().copy())
    })
}

/// `t`'s LibTorch tensor with the strides of `param`, which the kernel needs (it walks all of a
/// step's tensors in memory order), copied unless it has them and burn holds no other reference
/// to its storage.
fn writable_like<const D: usize>(t: Tensor<D>, param: &tch::Tensor) -> Option<TchTensor> {
    let t = t.try_into_primitive::<LibTorch>().ok()?;
    if t.can_mut() && same_order(&t.tensor, param) {
        return Some(t);
    }
    let mut out = param.f_empty_like().ok()?;
    out.f_copy_(&t.tensor).ok()?;
    Some(TchTensor::new(out))
}

/// Whether `a` and `b` (dense, of one shape) hold their elements in the same memory order: equal
/// strides but along dimensions of size 1, which LibTorch strides either way (a 1×1 kernel's
/// gradient comes back strided as channels-last, the kernel itself as NCHW).
fn same_order(a: &tch::Tensor, b: &tch::Tensor) -> bool {
    let size = a.size();
    size == b.size()
        && (a.stride().iter().zip(b.stride()).zip(&size)).all(|((x, y), &n)| n == 1 || *x == y)
}

fn burn_tensor<const D: usize>(t: TchTensor) -> Tensor<D> {
    Tensor::from_primitive::<LibTorch>(t)
}

/// A tensor `takes` accepted is not LibTorch's after all, or LibTorch failed to allocate a
/// copy of it (out of memory): burn's optimizer interface has no error to return.
fn unreachable_declined() -> ! {
    panic!(
        "the fused optimizer could not take a LibTorch tensor (not LibTorch's primitive, or \
         LibTorch could not allocate a copy: out of memory?)"
    )
}
