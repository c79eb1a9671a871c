//! BatchNorm2d with PyTorch's semantics.
//!
//! burn's `BatchNorm` updates `running_var` with the biased batch variance; PyTorch uses the
//! unbiased one (`n / (n - 1)`). Fine-tuned ImageNet weights carry PyTorch statistics, and a
//! model trained here must behave like the one the paper trained, so this module follows PyTorch:
//! `running = (1 - momentum) · running + momentum · batch` with the unbiased variance for
//! `running_var`, normalisation by the biased variance + eps. Field names are torchvision's
//! (`weight`, `bias`, `running_mean`, `running_var`), so `.pth` files load without renaming.

use burn::backend::Flex;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::Ops;
use burn::backend::flex::FlexTensor;
use burn::module::{Flag, Module, Param, RunningState};
use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Module, Debug)]
pub struct BatchNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    pub training: Param<Flag>,
    pub momentum: f64,
    pub epsilon: f64,
    /// Folded into the preceding convolution ([`fold`]): the identity from then on.
    pub folded: bool,
}

impl BatchNorm2d {
    pub const MOMENTUM: f64 = 0.1;
    pub const EPSILON: f64 = 1e-5;

    /// γ = 1, β = 0, running mean 0 and variance 1, as `torch.nn.BatchNorm2d(num_features)`.
    pub fn new(num_features: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([num_features], device)),
            bias: Param::from_tensor(Tensor::zeros([num_features], device)),
            running_mean: RunningState::new(Tensor::zeros([num_features], device)),
            running_var: RunningState::new(Tensor::ones([num_features], device)),
            training: Param::from_bool(true),
            momentum: Self::MOMENTUM,
            epsilon: Self::EPSILON,
            folded: false,
        }
    }

    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        self.forward_with(input, None, false)
    }

    /// `bn(input)`, plus `residual` if given, then ReLU if `relu`: a residual block's glue. In
    /// training on Flex all of it is one autodiff node (no separate add and ReLU passes, nor
    /// their tensors); elsewhere the three ops run one after the other.
    pub fn forward_with(
        &self,
        input: Tensor<4>,
        residual: Option<Tensor<4>>,
        relu: bool,
    ) -> Tensor<4> {
        if !self.folded && input.device().is_autodiff() && self.training.is_enabled() {
            return self.forward_train(input, residual, relu);
        }
        let y = if self.folded {
            input
        } else {
            let device = input.device();
            burn::tensor::module::batch_norm(
                input,
                self.weight.val(),
                self.bias.val(),
                self.running_mean.value().to_device(&device),
                self.running_var.value().to_device(&device),
                self.epsilon,
            )
        };
        epilogue(y, residual, relu)
    }

    fn forward_train(
        &self,
        input: Tensor<4>,
        residual: Option<Tensor<4>>,
        relu: bool,
    ) -> Tensor<4> {
        let [b, _, h, w] = input.dims();
        let n = (b * h * w) as f64;
        let device = input.device();
        let result = match fused_train(
            input.clone(),
            self.weight.val(),
            self.bias.val(),
            self.epsilon,
            residual.clone(),
            relu,
        ) {
            Some(r) => r,
            None => {
                let r = burn::tensor::module::batch_norm_train(
                    input,
                    self.weight.val(),
                    self.bias.val(),
                    self.epsilon,
                );
                (epilogue(r.output, residual, relu), r.mean, r.variance)
            }
        };
        let result = Train {
            output: result.0,
            mean: result.1,
            variance: result.2,
        };
        let unbiased = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
        let m = self.momentum;
        let mean = self
            .running_mean
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(result.mean.detach().mul_scalar(m));
        let var = self
            .running_var
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - m)
            .add(result.variance.detach().mul_scalar(m * unbiased));
        set_running(&self.running_mean, mean.detach());
        set_running(&self.running_var, var.detach());
        result.output
    }
}

/// `y + residual` (if any), then ReLU if `relu`, as separate ops.
fn epilogue(y: Tensor<4>, residual: Option<Tensor<4>>, relu: bool) -> Tensor<4> {
    let y = match residual {
        Some(r) => y + r,
        None => y,
    };
    if relu {
        burn::tensor::activation::relu(y)
    } else {
        y
    }
}

/// burn-flex's ReLU and its gradient mask: keeps positive values and NaN (as PyTorch does).
#[inline(always)]
fn kept(v: f32) -> bool {
    v.is_nan() || v > 0.0
}

/// Sets a running statistic. burn's `RunningState` keeps one pending value per thread and
/// averages them at the next read *on a thread that has one*; training steps run on whichever
/// rayon worker takes them, so the update is merged at once, on the thread that made it.
pub(super) fn set_running(state: &RunningState<Tensor<1>>, value: Tensor<1>) {
    state.update(value);
    let _ = state.value_sync();
}

/// Folds an eval-mode BatchNorm into the bias-free convolution before it:
/// `W' = W·s`, `b' = β − μ·s` with `s = γ / √(var + ε)` per output channel, computed in f64.
/// The convolution then gives what conv → BN gave, and the BatchNorm becomes the identity.
pub fn fold(conv: &mut Conv2d, bn: &mut BatchNorm2d) {
    if bn.folded {
        return;
    }
    let host = |t: Tensor<1>| -> Vec<f64> {
        let v = super::kernels::host_f32(t).expect("converted to f32");
        v.into_iter().map(f64::from).collect()
    };
    let device = conv.weight.device();
    let (gamma, beta) = (host(bn.weight.val()), host(bn.bias.val()));
    let (mean, var) = (host(bn.running_mean.value()), host(bn.running_var.value()));
    let scale: Vec<f64> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + bn.epsilon).sqrt())
        .collect();
    let old_bias = conv.bias.as_ref().map(|b| host(b.val()));
    let bias: Vec<f32> = (0..scale.len())
        .map(|c| {
            let b0 = old_bias.as_ref().map_or(0.0, |b| b[c]);
            ((b0 - mean[c]) * scale[c] + beta[c]) as f32
        })
        .collect();
    let w = conv.weight.val();
    let dims = w.dims();
    let per_out = dims[1] * dims[2] * dims[3];
    let w = super::kernels::host_f32(w).expect("converted to f32");
    let w: Vec<f32> = w
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 * scale[i / per_out]) as f32)
        .collect();
    conv.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, dims), &device));
    conv.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(bias, [dims[0]]),
        &device,
    )));
    bn.folded = true;
}

/// A training-mode BatchNorm's output and its batch statistics (biased variance).
struct Train {
    output: Tensor<4>,
    mean: Tensor<1>,
    variance: Tensor<1>,
}

/// Per channel of `[b][c][hw]`: mean and biased variance (two passes: the mean, then both
/// deviation sums; f32 SIMD sums within a plane, f64 across planes).
fn channel_stats(x: &[f32], b: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
    use rayon::prelude::*;
    let n = (b * hw) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..b).map(move |i| &x[(i * c + ch) * hw..][..hw]);
            let mean = planes().map(|p| sum8(p) as f64).sum::<f64>() / n;
            let m = mean as f32;
            // Σ (x − m)² about the f32 mean, corrected for that mean's rounding (m − mean).
            let (dev, sq) = planes().fold((0f64, 0f64), |(d, q), p| {
                let (pd, pq) = pair_sums8(p, p, |v, _| (v - m, (v - m) * (v - m)));
                (d + pd as f64, q + pq as f64)
            });
            let var = (sq - dev * dev / n) / n;
            (mean, var.max(0.0))
        })
        .collect()
}

/// `Σ x[i]` in f32 with eight independent partial sums, which the compiler keeps in one SIMD
/// register (a single running sum, let alone an f64 one, is a serial chain of adds). Used
/// within one plane (≤ a few thousand values); planes are summed in f64.
#[inline(always)]
fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `(Σ f(x[i], y[i]).0, Σ f(x[i], y[i]).1)` over one plane in one pass, in f32 with eight
/// partial sums each, as [`sum8`].
#[inline(always)]
fn pair_sums8(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> (f32, f32)) -> (f32, f32) {
    let (mut s0, mut s1) = ([0f32; 8], [0f32; 8]);
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .fold((0f32, 0f32), |(a, b), (&u, &v)| {
            let (p, q) = f(u, v);
            (a + p, b + q)
        });
    for (xv, yv) in xc.zip(yc) {
        for i in 0..8 {
            let (p, q) = f(xv[i], yv[i]);
            s0[i] += p;
            s1[i] += q;
        }
    }
    (
        s0.iter().sum::<f32>() + tail.0,
        s1.iter().sum::<f32>() + tail.1,
    )
}

/// BatchNorm in training mode on Flex as one autodiff node, with its [`epilogue`]: statistics
/// in one parallel pass per channel, the output in one more, and the backward in two (burn
/// composes it of a dozen elementwise and reduction ops, and the add and ReLU of two more).
/// `None` off Flex autodiff, where burn's own ops run.
fn fused_train(
    x: Tensor<4>,
    weight: Tensor<1>,
    bias: Tensor<1>,
    eps: f64,
    residual: Option<Tensor<4>>,
    relu: bool,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    use super::kernels::{FlexAd as Ad, Route, flex_tensor, route};
    use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
    use burn::backend::autodiff::ops::{Backward, OpsKind};
    use rayon::prelude::*;
    if !matches!(route(&x), Route::FlexAutodiff)
        || residual.as_ref().is_some_and(|r| r.dims() != x.dims())
    {
        return None;
    }
    let [b, c, h, w] = x.dims();
    let hw = h * w;
    let device = x.device();
    let (Ok(xa), Ok(wa), Ok(ba)) = (
        x.try_into_primitive::<Ad>(),
        weight.try_into_primitive::<Ad>(),
        bias.try_into_primitive::<Ad>(),
    ) else {
        return None;
    };
    let ra = match residual.map(|r| r.try_into_primitive::<Ad>()) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(_)) => return None,
    };
    let (xp, wp, bp) = (
        xa.primitive().to_contiguous(),
        wa.primitive().to_contiguous(),
        ba.primitive().to_contiguous(),
    );
    let rp = ra.as_ref().map(|r| r.primitive().to_contiguous());
    let (xs, gamma, beta) = (
        xp.storage::<f32>(),
        wp.storage::<f32>(),
        bp.storage::<f32>(),
    );
    let rs = rp.as_ref().map(|r| r.storage::<f32>());
    let stats = channel_stats(xs, b, c, hw);
    let mean: Vec<f32> = stats.iter().map(|s| s.0 as f32).collect();
    let var: Vec<f32> = stats.iter().map(|s| s.1 as f32).collect();
    let inv: Vec<f32> = stats
        .iter()
        .map(|s| (1.0 / (s.1 + eps).sqrt()) as f32)
        .collect();
    let mut y = super::kernels::zeroed(xs.len());
    y.par_chunks_mut(hw)
        .zip(xs.par_chunks(hw))
        .enumerate()
        .for_each(|(plane, (out, inp))| {
            let ch = plane % c;
            let (m, s, g, bb) = (mean[ch], inv[ch], gamma[ch], beta[ch]);
            for (o, &v) in out.iter_mut().zip(inp) {
                *o = (v - m) * s * g + bb;
            }
            if let Some(r) = rs {
                out.iter_mut()
                    .zip(&r[plane * hw..][..hw])
                    .for_each(|(o, r)| *o += r);
            }
            if relu {
                out.iter_mut()
                    .for_each(|o| *o = if kept(*o) { *o } else { 0.0 });
            }
        });
    let y = flex_tensor(y, [b, c, h, w]);

    /// The state: x's and γ's checkpoints, the batch mean and 1/σ, the shape, and the output
    /// if a ReLU masks the gradient.
    type State = (
        NodeId,
        NodeId,
        Vec<f32>,
        Vec<f32>,
        [usize; 4],
        Option<FlexTensor>,
    );

    /// Parents x, γ, β, and the residual when there is one (N = 4).
    #[derive(Debug)]
    struct BnBackward<const N: usize>;
    impl<const N: usize> Backward<Flex, N> for BnBackward<N> {
        type State = State;
        fn backward(
            self,
            ops: Ops<Self::State, N>,
            grads: &mut Gradients,
            ckpt: &mut Checkpointer,
        ) {
            let (x_state, w_state, mean, inv, [b, c, h, w], out) = ops.state;
            let dy = grads.consume::<Flex>(&ops.node).to_contiguous();
            // Through the ReLU: the gradient where the output was kept, else 0, in place (in
            // a ResNet step this node holds the gradient alone; the output is shared).
            let dy = match out {
                Some(out) => {
                    let (out, mut dy) = (out.to_contiguous(), dy);
                    dy.storage_mut::<f32>()
                        .par_chunks_mut(1 << 14)
                        .zip(out.storage::<f32>().par_chunks(1 << 14))
                        .for_each(|(d, o)| {
                            // A select, not a branch: half the outputs are cut, at random.
                            for (d, &o) in d.iter_mut().zip(o) {
                                *d = if kept(o) { *d } else { 0.0 };
                            }
                        });
                    dy
                }
                None => dy,
            };
            let x = ckpt
                .retrieve_node_output::<FlexTensor>(x_state)
                .to_contiguous();
            let gamma = ckpt
                .retrieve_node_output::<FlexTensor>(w_state)
                .to_contiguous();
            let (xs, dys, gamma) = (
                x.storage::<f32>(),
                dy.storage::<f32>(),
                gamma.storage::<f32>(),
            );
            let hw = h * w;
            // Per channel: Σ dy and Σ dy·x̂ (f32 within a plane, f64 across planes).
            let sums: Vec<(f64, f64)> = (0..c)
                .into_par_iter()
                .map(|ch| {
                    let (sd, sdx) = (0..b).fold((0f64, 0f64), |(sd, sdx), i| {
                        let at = (i * c + ch) * hw;
                        let m = mean[ch];
                        let (x, dy) = (&xs[at..at + hw], &dys[at..at + hw]);
                        // Σ dy and Σ dy·(x − m)
                        let (d, dx) = pair_sums8(x, dy, |v, d| (d, d * (v - m)));
                        (sd + d as f64, sdx + dx as f64)
                    });
                    (sd, sdx * inv[ch] as f64)
                })
                .collect();
            let n = (b * hw) as f32;
            let [node_x, node_w, node_b] = [0, 1, 2].map(|i| ops.parents[i].clone());
            if let Some(node) = node_x {
                let mut dx = super::kernels::zeroed(xs.len());
                dx.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
                    let ch = plane % c;
                    let at = plane * hw;
                    let (m, s) = (mean[ch], inv[ch]);
                    let (sd, sdx) = (sums[ch].0 as f32 / n, sums[ch].1 as f32 / n);
                    let k = gamma[ch] * s;
                    for ((o, &v), &d) in out.iter_mut().zip(&xs[at..at + hw]).zip(&dys[at..at + hw])
                    {
                        let xhat = (v - m) * s;
                        *o = k * (d - sd - xhat * sdx);
                    }
                });
                grads.register::<Flex>(node.id, flex_tensor(dx, [b, c, h, w]));
            }
            if let Some(node) = node_w {
                let dg: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
                grads.register::<Flex>(node.id, flex_tensor(dg, [c]));
            }
            if let Some(node) = node_b {
                let db: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
                grads.register::<Flex>(node.id, flex_tensor(db, [c]));
            }
            // The residual's gradient is the (masked) output gradient itself.
            if let Some(Some(node)) = ops.parents.get(3) {
                grads.register::<Flex>(node.id, dy);
            }
        }
    }

    let kept_out = relu.then(|| y.clone());
    let state = |x_state, w_state| (x_state, w_state, mean.clone(), inv, [b, c, h, w], kept_out);
    // The node over these parents (x and γ checkpointed), or the plain output when untracked.
    macro_rules! node {
        ($parents:expr) => {
            match BnBackward
                .prepare::<NoCheckpointing>($parents)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&xa);
                    let w_state = prep.checkpoint(&wa);
                    prep.finish(state(x_state, w_state), y)
                }
                OpsKind::UnTracked(prep) => prep.finish(y),
            }
        };
    }
    let out = match &ra {
        None => node!([xa.node(), wa.node(), ba.node()]),
        Some(ra) => node!([xa.node(), wa.node(), ba.node(), ra.node()]),
    };
    let inner = device.clone().inner();
    Some((
        Tensor::from_primitive::<Ad>(out),
        Tensor::<1>::from_data(TensorData::new(mean, [c]), &inner).to_device(&device),
        Tensor::<1>::from_data(TensorData::new(var, [c]), &inner).to_device(&device),
    ))
}
