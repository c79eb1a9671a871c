//! BatchNorm2d with PyTorch's semantics.
//!
//! burn's `BatchNorm` updates `running_var` with the biased batch variance; PyTorch uses the
//! unbiased one (`n / (n - 1)`). Fine-tuned ImageNet weights carry PyTorch statistics, and a
//! model trained here must behave like the one the paper trained, so this module follows PyTorch:
//! `running = (1 - momentum) · running + momentum · batch` with the unbiased variance for
//! `running_var`, normalisation by the biased variance + eps. Field names are torchvision's
//! (`weight`, `bias`, `running_mean`, `running_var`), so `.pth` files load without renaming.

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
        if self.folded {
            return input;
        }
        if input.device().is_autodiff() && self.training.is_enabled() {
            self.forward_train(input)
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
        }
    }

    fn forward_train(&self, input: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = input.dims();
        let n = (b * h * w) as f64;
        let device = input.device();
        let result = burn::tensor::module::batch_norm_train(
            input,
            self.weight.val(),
            self.bias.val(),
            self.epsilon,
        );
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
        self.running_mean.update(mean.detach());
        self.running_var.update(var.detach());
        result.output
    }
}

/// Folds an eval-mode BatchNorm into the bias-free convolution before it:
/// `W' = W·s`, `b' = β − μ·s` with `s = γ / √(var + ε)` per output channel, computed in f64.
/// The convolution then gives what conv → BN gave, and the BatchNorm becomes the identity.
pub fn fold(conv: &mut Conv2d, bn: &mut BatchNorm2d) {
    if bn.folded {
        return;
    }
    let host = |t: Tensor<1>| -> Vec<f64> {
        let v: Vec<f32> = t
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .expect("converted to f32");
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
    let w: Vec<f32> = w
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .expect("converted to f32");
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
