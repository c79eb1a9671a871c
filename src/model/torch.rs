//! Training on the LibTorch backend: conv → BatchNorm (→ ReLU) as one autodiff node whose
//! backward is LibTorch's own autograd (oneDNN's or cuDNN's convolution backward, the native
//! batch-norm backward), i.e. what a PyTorch training step runs. The loss is one such node too
//! ([`bce_with_logits_train`]), and under `--precision bf16` the convolutions of these graphs
//! run in bf16 as `torch.autocast` does. Each node's backward seeds LibTorch's autograd with
//! burn's output gradient itself ([`grad`], through `csrc/autograd.cpp`), not with a dot product
//! of it that tch's `run_backward` would need (one reduction forward, one multiply backward).
//!
//! Why: burn differentiates a convolution generically (the weight gradient as a convolution over
//! batch↔channel-swapped tensors, the input gradient as a transposed convolution) and builds
//! BatchNorm from a dozen elementwise ops. On LibTorch that made a ResNet18 training step 0.73×
//! PyTorch's on a 2-core CPU and 0.44× on an H200.
// burn marks its LibTorch backend deprecated; it is still the one that reaches CUDA offline.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::libtorch::TchTensor;
use burn::backend::{Autodiff, LibTorch};
use burn::nn::conv::Conv2d;
use burn::tensor::{DType, Tensor};

use super::norm::BatchNorm2d;

type Ad = Autodiff<LibTorch, NoCheckpointing>;
type AdTensor = <Ad as burn::backend::BackendTypes>::FloatTensorPrimitive;

/// A LibTorch autograd graph kept for the backward pass: its output and its leaves. Holding
/// burn's storage handles of the leaves and of the output keeps burn from reusing their memory
/// in place while LibTorch's graph still reads it.
#[derive(Clone, Debug)]
struct Graph<const N: usize> {
    output: TchTensor,
    leaves: [TchTensor; N],
}

#[derive(Debug)]
struct TorchBackward;

impl<const N: usize> Backward<LibTorch, N> for TorchBackward {
    type State = Graph<N>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<LibTorch>(&ops.node);
        let Graph { output, leaves } = ops.state;
        let wanted: Vec<_> = ops
            .parents
            .iter()
            .zip(&leaves)
            .filter_map(|(p, l)| p.as_ref().map(|p| (p.id, &l.tensor)))
            .collect();
        let inputs: Vec<&tch::Tensor> = wanted.iter().map(|(_, t)| *t).collect();
        let computed = grad(&output.tensor, &dy.tensor, &inputs)
            .unwrap_or_else(|e| panic!("LibTorch's autograd failed: {e}"));
        for ((id, _), g) in wanted.into_iter().zip(computed) {
            grads.register::<LibTorch>(id, TchTensor::new(g));
        }
    }
}

unsafe extern "C" {
    fn instrec_grad(
        output: *const std::ffi::c_void,
        grad_output: *const std::ffi::c_void,
        inputs: *const *const std::ffi::c_void,
        n: usize,
        grads: *mut *mut std::ffi::c_void,
        err: *mut std::ffi::c_char,
        err_len: usize,
    ) -> std::ffi::c_int;
}

/// Calls a `csrc` shim with a buffer for its error message (`csrc/report.h`'s convention: 0, or
/// 1 and a NUL-terminated message): that message on failure.
pub(crate) fn call_shim(
    call: impl FnOnce(*mut std::ffi::c_char, usize) -> std::ffi::c_int,
) -> Result<(), String> {
    let mut err = [0 as std::ffi::c_char; 512];
    if call(err.as_mut_ptr(), err.len()) == 0 {
        return Ok(());
    }
    // The shims write a NUL-terminated message within the buffer; the last byte stays 0 anyway.
    err[err.len() - 1] = 0;
    // SAFETY: `err` holds a NUL byte (just set), so the read stays inside it.
    let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
    Err(msg.to_string_lossy().into_owned())
}

/// The gradients of `inputs` for `output`'s gradient `dy` (`csrc/autograd.cpp`): LibTorch's
/// autograd seeded with `dy` itself, which tch's `run_backward` cannot do.
fn grad(
    output: &tch::Tensor,
    dy: &tch::Tensor,
    inputs: &[&tch::Tensor],
) -> Result<Vec<tch::Tensor>, String> {
    use std::ffi::c_void;
    let ins: Vec<*const c_void> = inputs.iter().map(|t| t.as_ptr() as *const c_void).collect();
    let mut outs: Vec<*mut c_void> = vec![std::ptr::null_mut(); inputs.len()];
    // SAFETY: the handles are live tch tensors held across the call; `ins` and `outs` have
    // `inputs.len()` entries; `err` is writable for `len` bytes.
    call_shim(|err, len| unsafe {
        instrec_grad(
            output.as_ptr() as *const c_void,
            dy.as_ptr() as *const c_void,
            ins.as_ptr(),
            ins.len(),
            outs.as_mut_ptr(),
            err,
            len,
        )
    })?;
    // SAFETY: on success each entry is a new `at::Tensor*` that this side now owns.
    Ok(outs
        .into_iter()
        .map(|p| unsafe { tch::Tensor::from_ptr(p as *mut torch_sys::C_tensor) })
        .collect())
}

/// `tensor`'s LibTorch autodiff primitive.
fn primitive<const D: usize>(tensor: Tensor<D>) -> Option<AdTensor> {
    tensor.try_into_primitive::<Ad>().ok()
}

/// A detached copy of a running statistic, which LibTorch then updates in place.
fn running_copy(t: Tensor<1>) -> Option<tch::Tensor> {
    match t.clone().try_into_primitive::<Ad>() {
        Ok(a) => a.primitive().tensor.f_detach_copy().ok(),
        Err(_) => t
            .try_into_primitive::<LibTorch>()
            .ok()?
            .tensor
            .f_detach_copy()
            .ok(),
    }
}

/// `relu(bn(conv(x)) + residual)` (the residual if given, ReLU if `relu`) in training mode as
/// one LibTorch autograd graph; BN's running statistics are updated by LibTorch, i.e. exactly as
/// PyTorch does (unbiased variance, `momentum`). `None` where this does not apply (not LibTorch
/// autodiff, BN in eval mode, a conv with bias, groups or dilation) or LibTorch refused the
/// shapes: the caller then runs burn's ops.
pub fn conv_bn_train(
    conv: &Conv2d,
    bn: &BatchNorm2d,
    x: &Tensor<4>,
    residual: Option<&Tensor<4>>,
    relu: bool,
) -> Option<Tensor<4>> {
    if !libtorch_training(x, &conv.weight.val())
        || !bn.training.is_enabled()
        || bn.folded
        || conv.bias.is_some()
        || conv.groups != 1
    {
        return None;
    }
    let padding = super::kernels::symmetric_padding(&conv.padding)?;
    let bf16 = super::network::precision() == crate::backend::Precision::Bf16;
    let device = x.device();
    let xa = primitive(x.clone())?;
    let wa = primitive(conv.weight.val())?;
    let ga = primitive(bn.weight.val())?;
    let ba = primitive(bn.bias.val())?;
    let ra = match residual {
        Some(r) => Some(primitive(r.clone())?),
        None => None,
    };
    let mean = running_copy(bn.running_mean.value_sync().to_device(&device))?;
    let var = running_copy(bn.running_var.value_sync().to_device(&device))?;
    let mut leaves = vec![leaf(&xa), leaf(&wa), leaf(&ga), leaf(&ba)];
    leaves.extend(ra.as_ref().map(leaf));
    let to_i64 = |v: [usize; 2]| v.map(|u| u as i64);
    let out = tch::with_grad(|| {
        let [x, w, g, b] = [0, 1, 2, 3].map(|i| &leaves[i].tensor);
        // Channels-last from the first block on (later blocks' inputs have it already); the
        // weights once, until the optimizer keeps them so (`train::fused_adam`).
        let (xc, wc);
        let (x, w) = if super::channels_last::enabled() {
            (xc, wc) = (super::channels_last::to(x)?, super::channels_last::to(w)?);
            (&xc, &wc)
        } else {
            (x, w)
        };
        let conv2d = |x: &tch::Tensor, w: &tch::Tensor| {
            x.f_conv2d(
                w,
                None::<tch::Tensor>,
                to_i64(conv.stride),
                to_i64(padding),
                to_i64(conv.dilation),
                1,
            )
        };
        // As autocast: the convolution in bf16 on bf16 copies (the weight's gradient comes back
        // in fp32 through the cast), BatchNorm (fp32 parameters and statistics) on its bf16
        // output, and the block's output, which the next block takes as it is, in bf16.
        let bf = tch::Kind::BFloat16;
        let y = if bf16 {
            conv2d(&x.f_to_kind(bf)?, &w.f_to_kind(bf)?)?
        } else {
            conv2d(x, w)?
        };
        let y = y.f_batch_norm(
            Some(g),
            Some(b),
            Some(&mean),
            Some(&var),
            true,
            bn.momentum,
            bn.epsilon,
            true,
        )?;
        let y = match leaves.get(4) {
            // In y's precision: bf16 + f32 would promote to f32.
            Some(r) => y.f_add(&r.tensor.f_to_kind(y.kind())?)?,
            None => y,
        };
        if relu { y.f_relu() } else { Ok(y) }
    })
    .ok()?;
    let (output, result) = output_and_result(out);
    let nodes = [xa.node(), wa.node(), ga.node(), ba.node()];
    let y = match ra {
        None => record(nodes, leaves, output, result)?,
        Some(ra) => {
            let [x, w, g, b] = nodes;
            record([x, w, g, b, ra.node()], leaves, output, result)?
        }
    };
    // Copies: LibTorch's graph saved these tensors, and burn may update its own in place.
    let stat = |t: &tch::Tensor| {
        Tensor::<1>::from_primitive::<Ad>(AdTensor::new(TchTensor::new(t.copy())))
    };
    super::norm::set_running(&bn.running_mean, stat(&mean));
    super::norm::set_running(&bn.running_var, stat(&var));
    Some(Tensor::from_primitive::<Ad>(y))
}

/// Mean `BCEWithLogits(logits, targets)` (PyTorch's `BCEWithLogitsLoss()`) as one LibTorch
/// autograd node: LibTorch's own loss kernel and its backward, where burn composes eight ops
/// forward and more backward (each a launch on a GPU). `None` where this is not LibTorch
/// autodiff: the caller then runs burn's ops.
pub fn bce_with_logits_train(logits: &Tensor<2>, targets: &Tensor<2>) -> Option<Tensor<1>> {
    if !matches!(
        super::kernels::route(logits),
        super::kernels::Route::TchAutodiff
    ) {
        return None;
    }
    let la = primitive(logits.clone())?;
    let target = primitive(targets.clone())?.primitive().tensor.detach();
    let leaf = leaf(&la);
    let out = tch::with_grad(|| {
        leaf.tensor
            .f_binary_cross_entropy_with_logits::<tch::Tensor>(
                &target,
                None,
                None,
                tch::Reduction::Mean,
            )?
            .f_reshape([1])
    })
    .ok()?;
    let (output, result) = output_and_result(out);
    let y = record([la.node()], vec![leaf], output, result)?;
    Some(Tensor::from_primitive::<Ad>(y))
}

/// ResNet's head in training, `fc(mean over the plane of x)`, as one LibTorch autograd node
/// (a mean and an `addmm`), where burn composes two means, a reshape, a matmul and an add, each
/// a launch on a GPU, forward and backward; bf16 activations are pooled in f32. `None` where
/// this is not LibTorch autodiff or the head has no bias: the caller then runs burn's ops.
pub fn pool_linear_train(x: &Tensor<4>, fc: &burn::nn::Linear) -> Option<Tensor<2>> {
    if !libtorch_training(x, &fc.weight.val()) {
        return None;
    }
    let xa = primitive(x.clone())?;
    let wa = primitive(fc.weight.val())?;
    let ba = primitive(fc.bias.as_ref()?.val())?;
    let leaves = vec![leaf(&xa), leaf(&wa), leaf(&ba)];
    let out = tch::with_grad(|| {
        let [x, w, b] = [0, 1, 2].map(|i| &leaves[i].tensor);
        let kind = tch::Kind::Float;
        let pooled = x
            .f_to_kind(kind)?
            .f_mean_dim([2i64, 3].as_slice(), false, kind)?;
        // burn's Linear keeps its weight [in, out]: b + pooled · w.
        b.f_addmm(&pooled, w)
    })
    .ok()?;
    let (output, result) = output_and_result(out);
    let y = record([xa.node(), wa.node(), ba.node()], leaves, output, result)?;
    Some(Tensor::from_primitive::<Ad>(y))
}

/// Whether a layer with this `weight` trains on LibTorch autodiff, taking activation `x`: the
/// weight's route decides, as under bf16 the layers hand each other bf16 activations.
fn libtorch_training<const D: usize>(x: &Tensor<4>, weight: &Tensor<D>) -> bool {
    matches!(x.dtype(), DType::F32 | DType::BF16)
        && matches!(
            super::kernels::route(weight),
            super::kernels::Route::TchAutodiff
        )
}

/// A graph leaf for `a`: its LibTorch tensor detached (tracked where burn tracks `a`), holding
/// burn's storage handle so that burn does not reuse the memory in place while the graph reads it.
fn leaf(a: &AdTensor) -> TchTensor {
    let p = a.primitive();
    let t = p.tensor.detach();
    let t = if a.is_tracked() {
        t.set_requires_grad(true)
    } else {
        t
    };
    TchTensor {
        tensor: t,
        storage: p.storage.clone(),
    }
}

/// A graph's output kept for the backward pass, and the detached value burn goes on with.
fn output_and_result(out: tch::Tensor) -> (TchTensor, TchTensor) {
    let output = TchTensor::new(out);
    let result = TchTensor {
        tensor: output.tensor.detach(),
        storage: output.storage.clone(),
    };
    (output, result)
}

/// The autodiff node of a graph with `N` leaves, or `None` if `leaves` does not hold `N`.
fn record<const N: usize>(
    nodes: [burn::backend::autodiff::ops::NodeGuard; N],
    leaves: Vec<TchTensor>,
    output: TchTensor,
    result: TchTensor,
) -> Option<AdTensor> {
    let leaves: [TchTensor; N] = leaves.try_into().ok()?;
    Some(
        match TorchBackward
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(Graph { output, leaves }, result),
            OpsKind::UnTracked(prep) => prep.finish(result),
        },
    )
}
